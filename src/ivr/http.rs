//! `/flows*` and `/flow-settings`: the flow store, validation, the
//! simulator and flow tests for supervisors; the tenant's flow settings
//! (changed by admins: they decide which hosts flows may call).

use actix_web::{HttpResponse, get, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::engine::{Diagnostic, MAX_SOURCE_BYTES};
use super::store;
use super::testing::{self, CaseResult, Input, Outcome, Setting};
use crate::error::{ApiError, ApiResult, ErrorCode, Validator};
use crate::iam::{AdminOnly, Auth, Supervisors};
use crate::ids::TenantId;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_flows)
        .service(validate_flow)
        .service(simulate_flow)
        .service(test_flow)
        .service(save_version)
        .service(get_flow)
        .service(get_version)
        .service(publish_flow)
        .service(get_settings)
        .service(put_settings);
}

/// The longest a simulation or a test run may take on the server.
const RUN_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Serialize, ToSchema)]
pub struct FlowSummary {
    pub name: String,
    pub published_version: Option<i32>,
    pub latest_version: i32,
    pub published_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<store::flow::Model> for FlowSummary {
    fn from(f: store::flow::Model) -> Self {
        FlowSummary {
            name: f.name,
            published_version: f.published_version,
            latest_version: f.latest_version,
            published_at: f.published_at,
            updated_at: f.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlowList {
    pub items: Vec<FlowSummary>,
}

/// The tenant's flows.
#[utoipa::path(tag = "flows", responses((status = 200, body = FlowList)))]
#[get("/flows")]
async fn list_flows(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
) -> ApiResult<web::Json<FlowList>> {
    let items = store::list(&state.db.conn, auth.tenant_id).await?;
    Ok(web::Json(FlowList {
        items: items.into_iter().map(FlowSummary::from).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    /// The Rhai script.
    pub source: String,
    /// Flow test cases (TOML), checked too when given.
    pub tests: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Validation {
    /// False when a diagnostic is an error.
    pub ok: bool,
    pub diagnostics: Vec<Diagnostic>,
}

fn check_sizes(source: &str, tests: Option<&str>) -> ApiResult<()> {
    let mut v = Validator::new();
    if source.len() > MAX_SOURCE_BYTES {
        v.add(
            "source",
            format!("must be at most {} KiB", MAX_SOURCE_BYTES / 1024),
        );
    }
    if tests.is_some_and(|t| t.len() > 512 * 1024) {
        v.add("tests", "must be at most 512 KiB");
    }
    v.finish()
}

/// Checks a script (and its tests) without saving: compile errors with
/// line and column, unknown queues and skills, hosts not allowed, missing
/// prompts, words the speech model does not know.
#[utoipa::path(tag = "flows", request_body = SourceRequest, responses((status = 200, body = Validation)))]
#[post("/flows/validate")]
async fn validate_flow(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    body: crate::http::extract::Json<SourceRequest>,
) -> ApiResult<web::Json<Validation>> {
    let b = body.0;
    check_sizes(&b.source, b.tests.as_deref())?;
    let diagnostics = state
        .flows
        .validate(auth.tenant_id, &b.source, b.tests.as_deref())
        .await?;
    Ok(web::Json(Validation {
        ok: !diagnostics.iter().any(|d| d.severity == "error"),
        diagnostics,
    }))
}

fn invalid(diagnostics: Vec<Diagnostic>) -> ApiError {
    let first = diagnostics
        .iter()
        .find(|d| d.severity == "error")
        .map(|d| format!("line {}, column {}: {}", d.line, d.column, d.message))
        .unwrap_or_default();
    ApiError::new(
        ErrorCode::InvalidFlow,
        format!("the flow is not valid: {first}"),
    )
    .with_details(json!({ "diagnostics": diagnostics }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    pub source: String,
    /// Flow test cases (TOML).
    #[serde(default)]
    pub tests: String,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Saved {
    pub version: i32,
    /// What validation found: warnings, and errors that do not stop the
    /// script from running (a queue not created yet) but stop publishing.
    /// Compile errors refuse the save.
    pub diagnostics: Vec<Diagnostic>,
}

fn flow_name(name: &str) -> ApiResult<()> {
    if store::name_ok(name) {
        Ok(())
    } else {
        Err(ApiError::field(
            "name",
            "must be 1-64 of a-z, 0-9, '-' and '_'",
        ))
    }
}

/// Saves a new version of a flow (creating the flow). Versions never
/// change; publishing chooses which one callers get.
#[utoipa::path(tag = "flows", params(("name" = String, Path)), request_body = SaveRequest,
    responses((status = 201, body = Saved), (status = 422, description = "invalid_flow: compile errors, with line and column in details")))]
#[post("/flows/{name}/versions")]
async fn save_version(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    name: web::Path<String>,
    body: crate::http::extract::Json<SaveRequest>,
) -> ApiResult<HttpResponse> {
    let name = name.into_inner();
    flow_name(&name)?;
    let b = body.0;
    check_sizes(&b.source, Some(&b.tests))?;
    if b.comment.len() > 500 {
        return Err(ApiError::field("comment", "must be at most 500 characters"));
    }
    let t = auth.tenant_id;
    let diagnostics = state.flows.validate(t, &b.source, Some(&b.tests)).await?;
    // Only what stops the script from running blocks a save (a queue may
    // be created after the flow that uses it); publishing needs it all.
    let compile_errors: Vec<Diagnostic> = match state.flows.engine.compile(&name, 0, &b.source) {
        Err(d) => vec![d],
        Ok(_) => diagnostics
            .iter()
            .filter(|d| d.severity == "error" && d.message.starts_with("tests:"))
            .cloned()
            .collect(),
    };
    if !compile_errors.is_empty() {
        return Err(invalid(compile_errors));
    }
    let by = Some(format!("{}:{}", auth.actor.kind(), auth.actor.id()));
    let v = store::save(
        &state.db.conn,
        t,
        &name,
        &b.source,
        &b.tests,
        &b.comment,
        by,
    )
    .await?;
    audit(
        &state,
        &auth,
        &meta,
        "flow.version_saved",
        json!({ "flow": name, "version": v }),
    )
    .await?;
    Ok(HttpResponse::Created().json(Saved {
        version: v,
        diagnostics,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: i32,
    pub comment: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub published: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlowView {
    pub name: String,
    pub published_version: Option<i32>,
    pub published_at: Option<DateTime<Utc>>,
    /// Newest first.
    pub versions: Vec<VersionSummary>,
}

async fn found(state: &AppState, t: TenantId, name: &str) -> ApiResult<store::flow::Model> {
    // A name no flow could have names no flow.
    if !store::name_ok(name) {
        return Err(ApiError::not_found("flow"));
    }
    store::find(&state.db.conn, t, name)
        .await?
        .ok_or_else(|| ApiError::not_found("flow"))
}

/// A flow and its version history.
#[utoipa::path(tag = "flows", params(("name" = String, Path)), responses((status = 200, body = FlowView), (status = 404)))]
#[get("/flows/{name}")]
async fn get_flow(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    name: web::Path<String>,
) -> ApiResult<web::Json<FlowView>> {
    let f = found(&state, auth.tenant_id, &name).await?;
    let versions = store::versions(&state.db.conn, auth.tenant_id, f.id).await?;
    Ok(web::Json(FlowView {
        versions: versions
            .into_iter()
            .map(|v| VersionSummary {
                published: Some(v.version) == f.published_version,
                version: v.version,
                comment: v.comment,
                created_by: v.created_by,
                created_at: v.created_at,
            })
            .collect(),
        name: f.name,
        published_version: f.published_version,
        published_at: f.published_at,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub name: String,
    pub version: i32,
    pub source: String,
    pub tests: String,
    pub comment: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub published: bool,
}

/// One version's script and tests.
#[utoipa::path(tag = "flows", params(("name" = String, Path), ("version" = i32, Path)), responses((status = 200, body = VersionView), (status = 404)))]
#[get("/flows/{name}/versions/{version}")]
async fn get_version(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    path: web::Path<(String, i32)>,
) -> ApiResult<web::Json<VersionView>> {
    let (name, v) = path.into_inner();
    let f = found(&state, auth.tenant_id, &name).await?;
    let m = store::version(&state.db.conn, auth.tenant_id, f.id, v)
        .await?
        .ok_or_else(|| ApiError::not_found("flow version"))?;
    Ok(web::Json(VersionView {
        name: f.name,
        version: m.version,
        published: Some(m.version) == f.published_version,
        source: m.source,
        tests: m.tests,
        comment: m.comment,
        created_by: m.created_by,
        created_at: m.created_at,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub version: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedView {
    pub name: String,
    pub published_version: i32,
}

/// Publishes a version: new sessions run it, sessions in progress finish
/// on theirs. Publishing an older version rolls back. A version with
/// errors (unknown queues, hosts not allowed) or failing tests is refused.
#[utoipa::path(tag = "flows", params(("name" = String, Path)), request_body = PublishRequest,
    responses((status = 200, body = PublishedView), (status = 404), (status = 422, description = "invalid_flow: errors or failing tests, in details")))]
#[post("/flows/{name}/publish")]
async fn publish_flow(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    name: web::Path<String>,
    body: crate::http::extract::Json<PublishRequest>,
) -> ApiResult<web::Json<PublishedView>> {
    let t = auth.tenant_id;
    let f = found(&state, t, &name).await?;
    let v = body.0.version;
    let m = store::version(&state.db.conn, t, f.id, v)
        .await?
        .ok_or_else(|| ApiError::not_found("flow version"))?;
    let mut errors: Vec<Diagnostic> = state
        .flows
        .validate(t, &m.source, Some(&m.tests))
        .await?
        .into_iter()
        .filter(|d| d.severity == "error")
        .collect();
    if errors.is_empty() && !m.tests.trim().is_empty() {
        let results = run_tests_blocking(&state, m.source.clone(), m.tests.clone()).await?;
        for r in results.into_iter().filter(|r| !r.passed) {
            errors.push(Diagnostic::error(
                0,
                0,
                format!("test {:?} fails: {}", r.name, r.diff.unwrap_or_default()),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    if !store::publish(&state.db.conn, t, &f, v).await? {
        return Err(ApiError::not_found("flow version"));
    }
    audit(
        &state,
        &auth,
        &meta,
        "flow.published",
        json!({ "flow": f.name, "version": v, "previous": f.published_version }),
    )
    .await?;
    Ok(web::Json(PublishedView {
        name: f.name,
        published_version: v,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulateRequest {
    pub source: String,
    /// What the customer did so far: `digits:12#`, `speech:words`,
    /// `text:words`, `silence`, `hangup`.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Time of day, caller, channel, contact, attributes, HTTP answers.
    #[serde(default)]
    pub case: Option<Setting>,
}

/// Runs a script against scripted input, from the start, and stops where
/// it waits for more (the editor's simulator is stateless: it sends every
/// input so far).
#[utoipa::path(tag = "flows", request_body = SimulateRequest, responses((status = 200, body = Outcome), (status = 422)))]
#[post("/flows/simulate")]
async fn simulate_flow(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    body: crate::http::extract::Json<SimulateRequest>,
) -> ApiResult<web::Json<Outcome>> {
    let _ = auth;
    let b = body.0;
    check_sizes(&b.source, None)?;
    if b.inputs.len() > 300 {
        return Err(ApiError::field("inputs", "at most 300 inputs"));
    }
    let mut v = Validator::new();
    let mut inputs = Vec::with_capacity(b.inputs.len());
    for (i, s) in b.inputs.iter().enumerate() {
        if let Some(x) = v.check(&format!("inputs[{i}]"), Input::parse(s)) {
            inputs.push(x);
        }
    }
    let setting = b.case.unwrap_or_default();
    v.check("case", setting.context());
    v.finish()?;
    let flows = state.flows.clone();
    let out = tokio::task::spawn_blocking(move || {
        let flow = flows
            .engine
            .compile("simulation", 0, &b.source)
            .map_err(|d| invalid(vec![d]))?;
        testing::simulate_within(&flows.engine, &flow, &setting, &inputs, true, RUN_BUDGET)
            .map_err(|e| ApiError::field("case", e))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(web::Json(out))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    pub source: String,
    /// Flow test cases (TOML).
    pub tests: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestReport {
    pub passed: bool,
    pub cases: Vec<CaseResult>,
}

async fn run_tests_blocking(
    state: &AppState,
    source: String,
    tests: String,
) -> ApiResult<Vec<CaseResult>> {
    let flows = state.flows.clone();
    tokio::task::spawn_blocking(move || {
        flows
            .run_tests(&source, &tests)
            .map_err(|d| invalid(vec![d]))
    })
    .await
    .map_err(ApiError::internal)?
}

/// Runs flow test cases against a script (nothing is saved).
#[utoipa::path(tag = "flows", request_body = TestRequest, responses((status = 200, body = TestReport), (status = 422)))]
#[post("/flows/test")]
async fn test_flow(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    body: crate::http::extract::Json<TestRequest>,
) -> ApiResult<web::Json<TestReport>> {
    let _ = auth;
    let b = body.0;
    check_sizes(&b.source, Some(&b.tests))?;
    let cases = run_tests_blocking(&state, b.source, b.tests).await?;
    Ok(web::Json(TestReport {
        passed: cases.iter().all(|c| c.passed),
        cases,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowSettings {
    /// Where callers go when a flow fails: this queue (by name), or
    /// (without one) the apology prompt and a hang-up.
    pub fallback_queue: Option<String>,
    pub apology_prompt: Option<String>,
    /// Hosts `http_get` and `http_post` may reach (exact names).
    #[serde(default)]
    pub http_allowed_hosts: Vec<String>,
    /// Transcribe every recorded call when it ends (needs a speech model);
    /// the transcript is a `transcript` event on the interaction.
    #[serde(default)]
    pub transcribe_calls: bool,
}

impl From<store::settings::Model> for FlowSettings {
    fn from(m: store::settings::Model) -> Self {
        FlowSettings {
            http_allowed_hosts: store::hosts_of(&m),
            transcribe_calls: m.transcribe_calls,
            fallback_queue: m.fallback_queue,
            apology_prompt: m.apology_prompt,
        }
    }
}

/// The tenant's flow settings.
#[utoipa::path(tag = "flows", responses((status = 200, body = FlowSettings)))]
#[get("/flow-settings")]
async fn get_settings(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
) -> ApiResult<web::Json<FlowSettings>> {
    Ok(web::Json(
        store::settings(&state.db.conn, auth.tenant_id)
            .await?
            .into(),
    ))
}

fn host_ok(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Changes the tenant's flow settings (admins).
#[utoipa::path(tag = "flows", request_body = FlowSettings, responses((status = 200, body = FlowSettings), (status = 422)))]
#[put("/flow-settings")]
async fn put_settings(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: crate::iam::auth::RequestMeta,
    body: crate::http::extract::Json<serde_json::Value>,
) -> ApiResult<web::Json<FlowSettings>> {
    // Every field has a default: only an object may stand for them.
    if !body.0.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    let b: FlowSettings = crate::http::extract::parse_json(body.0.to_string().as_bytes())?;
    let t = auth.tenant_id;
    let mut v = Validator::new();
    if let Some(q) = &b.fallback_queue {
        use crate::acd::catalog::queue;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let exists = queue::Entity::find()
            .filter(queue::Column::TenantId.eq(t))
            .filter(queue::Column::Name.eq(q.as_str()))
            .one(&state.db.conn)
            .await?
            .is_some();
        if !exists {
            v.add("fallback_queue", "no such queue");
        }
    }
    if let Some(p) = &b.apology_prompt
        && !crate::prompts::name_ok(p)
    {
        v.add("apology_prompt", "must be a prompt name");
    }
    if b.http_allowed_hosts.len() > 50 {
        v.add("http_allowed_hosts", "at most 50 hosts");
    }
    let hosts: Vec<String> = b
        .http_allowed_hosts
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for (i, h) in hosts.iter().enumerate() {
        if !host_ok(h) {
            v.add(
                format!("http_allowed_hosts[{i}]"),
                "must be a host name (no scheme, port or path)",
            );
        }
    }
    v.finish()?;
    let m = store::put_settings(
        &state.db.conn,
        t,
        b.fallback_queue,
        b.apology_prompt,
        hosts,
        b.transcribe_calls,
    )
    .await?;
    let view = FlowSettings::from(m);
    audit(&state, &auth, &meta, "flow_settings.updated", json!(view)).await?;
    Ok(web::Json(view))
}

async fn audit(
    state: &AppState,
    auth: &crate::iam::auth::Principal,
    meta: &crate::iam::auth::RequestMeta,
    action: &str,
    details: serde_json::Value,
) -> ApiResult<()> {
    crate::iam::store::audit_principal(&state.db.conn, auth, meta, action, "flow", None, details)
        .await?;
    Ok(())
}
