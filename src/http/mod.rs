//! Route composition, middleware, the OpenAPI document, health and metrics
//! endpoints, and the embedded console.

pub mod extract;
mod ui;

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpResponse, get, web};
use serde_json::json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{AppExt, scope};

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "The Switchboard contact center API. Authenticate with an API key \
                       (`Authorization: Bearer sbk_...`) or, from the console, with the session \
                       cookie plus `X-CSRF-Token` on writes. Errors have one shape: \
                       `{\"error\": {\"code\", \"message\", \"details\"}}`. Lists are paged with \
                       `limit` and the `next_cursor` of the previous page."
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, ErrorCode, crate::error::FieldError)),
    tags(
        (name = "auth", description = "Sign-in and sessions"),
        (name = "users", description = "Users and roles"),
        (name = "api-keys", description = "API keys for programs"),
        (name = "audit", description = "Security audit log"),
        (name = "tenant", description = "Tenant settings"),
        (name = "interactions", description = "Interactions and their timelines"),
        (name = "events", description = "The tenant's event feed"),
        (name = "webhooks", description = "Signed event delivery to your endpoints"),
        (name = "jobs", description = "Long-running work"),
        (name = "routing", description = "Skills, queues and agents"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("sb_session"))),
        );
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
    }
}

/// Every `/api/v1` route, from every context.
fn api_v1(cfg: &mut ServiceConfig) {
    crate::iam::http::configure(cfg);
    crate::interactions::http::configure(cfg);
    crate::jobs::http::configure(cfg);
    crate::acd::catalog::configure(cfg);
}

/// The OpenAPI document of the routes above, generated from the code.
pub fn openapi() -> serde_json::Value {
    let (_, api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .service(scope::scope("/api/v1").configure(api_v1))
        .split_for_parts();
    let mut doc = serde_json::to_value(&api).expect("the OpenAPI document serialises");
    complete_openapi(&mut doc);
    doc
}

/// Fills in what the derive leaves out, so the document is valid and says
/// what the server enforces: every `{param}` of a path is declared (ids are
/// UUIDs), every response has a description, and `limit` shows its range.
fn complete_openapi(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let names: Vec<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for (_method, op) in ops.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let params = op.entry("parameters").or_insert_with(|| json!([]));
            if let Some(list) = params.as_array_mut() {
                for name in &names {
                    let declared = list
                        .iter()
                        .any(|p| p["name"] == name.as_str() && p["in"] == "path");
                    if !declared {
                        list.push(json!({
                            "name": name, "in": "path", "required": true,
                            "description": "The object's id (404 if it does not exist in your tenant).",
                            "schema": {"type": "string", "format": "uuid"}
                        }));
                    }
                }
                for p in list.iter_mut() {
                    if p["name"] == "limit" && p["in"] == "query" {
                        p["schema"] =
                            json!({"type": ["integer", "null"], "minimum": 1, "maximum": 200});
                        p["description"] = json!("Items per page, 1-200 (default 50).");
                    }
                }
                if list.is_empty() {
                    op.remove("parameters");
                }
            }
            if let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) {
                for (status, resp) in responses.iter_mut() {
                    if let Some(r) = resp.as_object_mut()
                        && r.get("description")
                            .and_then(|d| d.as_str())
                            .is_none_or(str::is_empty)
                    {
                        let reason = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|c| actix_web::http::StatusCode::from_u16(c).ok())
                            .and_then(|c| c.canonical_reason())
                            .unwrap_or("Response");
                        r.insert("description".into(), json!(reason));
                    }
                }
            }
        }
    }
}

/// The whole application, as each HTTP worker builds it.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = state.settings.http.max_body_bytes;
    let ui_dir = state.settings.http.ui_dir.clone();
    let api = scope::scope("/api/v1")
        .app_data(web::QueryConfig::default().error_handler(crate::error::query_error))
        .app_data(web::PathConfig::default().error_handler(crate::error::path_error))
        .app_data(web::PayloadConfig::new(limit))
        .configure(api_v1)
        .route("/openapi.json", web::get().to(openapi_json))
        .default_service(web::to(api_not_found));
    App::new()
        .into_utoipa_app()
        .app_data(state)
        .service(api)
        .into_app()
        .wrap(
            DefaultHeaders::new()
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "same-origin"))
                .add((
                    "Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                )),
        )
        .wrap(from_fn(crate::telemetry::observe))
        .service(healthz)
        .service(readyz)
        .service(metrics)
        .configure(|cfg| ui::configure(cfg, ui_dir))
}

async fn api_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such API route"))
}

async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi_json.clone())
}

/// Liveness: the process serves HTTP.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and the service is not shutting down.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.ping().await;
    let stopping = state.shutdown.is_cancelled();
    let body = json!({ "status": if db && !stopping { "ready" } else { "unavailable" }, "database": db, "shutting_down": stopping });
    if db && !stopping {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
