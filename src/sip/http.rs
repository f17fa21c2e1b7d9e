//! `/sip/accounts*`: the tenant's SIP accounts (admins only). Passwords are
//! never stored: only the digest HA1s for MD5 and SHA-256 of
//! `username:<tenant SIP domain>:password`.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveModelTrait, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::digest::{Algorithm, ha1};
use super::numbers::number;
use super::store::{self, account, registration};
use crate::error::{ApiError, ApiResult, Validator};
use crate::http::extract::{Page, PageParams};
use crate::iam::{AdminOnly, Auth};
use crate::ids::{AgentId, TenantId};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_accounts)
        .service(create_account)
        .service(get_account)
        .service(delete_account)
        .service(list_numbers)
        .service(create_number)
        .service(get_number)
        .service(delete_number)
        .service(super::trunks::list_trunks)
        .service(super::trunks::create_trunk)
        .service(super::trunks::get_trunk)
        .service(super::trunks::update_trunk)
        .service(super::trunks::delete_trunk)
        .service(super::outbound::place_call)
        .service(super::outbound::hang_up_call);
}

/// The SIP domain (and digest realm) of a tenant: `<slug>.<sip.domain>`.
pub fn tenant_domain(slug: &str, sip_domain: &str) -> String {
    format!(
        "{}.{}",
        slug.to_ascii_lowercase(),
        sip_domain.to_ascii_lowercase()
    )
}

async fn domain_of(state: &AppState, t: TenantId) -> ApiResult<String> {
    let tenant = crate::iam::entity::tenant::Entity::find_by_id(t)
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok(tenant_domain(&tenant.slug, &state.settings.sip.domain))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    /// The user part phones register with: letters, digits, `.`, `_`, `-`, `+`; 1-64.
    pub username: String,
    /// 12-256 characters; only its digests are kept.
    pub password: String,
    /// The agent who uses this phone, if any.
    pub agent_id: Option<AgentId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationView {
    pub contact: String,
    /// `ip:port` the REGISTER came from.
    pub source: String,
    /// `udp` or `tcp`.
    pub transport: String,
    pub user_agent: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<registration::Model> for RegistrationView {
    fn from(r: registration::Model) -> Self {
        Self {
            contact: r.contact,
            source: r.source,
            transport: r.transport,
            user_agent: r.user_agent,
            expires_at: r.expires_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: uuid::Uuid,
    pub username: String,
    /// The domain phones register to (also the digest realm).
    pub domain: String,
    pub agent_id: Option<AgentId>,
    pub created_at: DateTime<Utc>,
    /// Current registrations (only on `GET /sip/accounts/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registrations: Option<Vec<RegistrationView>>,
}

impl From<account::Model> for AccountView {
    fn from(a: account::Model) -> Self {
        Self {
            id: a.id,
            username: a.username,
            domain: a.realm,
            agent_id: a.agent_id,
            created_at: a.created_at,
            registrations: None,
        }
    }
}

fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// The tenant's SIP accounts.
#[utoipa::path(tag = "sip", params(PageParams), responses((status = 200, body = Page<AccountView>)))]
#[get("/sip/accounts")]
async fn list_accounts(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<AccountView>>> {
    let limit = page.limit()?;
    let mut q = account::Entity::find().filter(account::Column::TenantId.eq(auth.tenant_id));
    if let Some(c) = page.cursor::<uuid::Uuid>()? {
        q = q.filter(account::Column::Id.gt(c));
    }
    let rows = q
        .order_by_asc(account::Column::Id)
        .limit(limit + 1)
        .all(&state.db.conn)
        .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |a| a.id,
        AccountView::from,
    )))
}

async fn find(state: &AppState, t: TenantId, id: uuid::Uuid) -> ApiResult<account::Model> {
    account::Entity::find_by_id(id)
        .filter(account::Column::TenantId.eq(t))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("SIP account"))
}

/// One SIP account with its current registrations.
#[utoipa::path(tag = "sip", responses((status = 200, body = AccountView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/sip/accounts/{id}")]
async fn get_account(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<uuid::Uuid>,
) -> ApiResult<web::Json<AccountView>> {
    let a = find(&state, auth.tenant_id, *id).await?;
    let regs = store::live_registrations(&state.db.conn, auth.tenant_id, a.id, Utc::now()).await?;
    let mut v = AccountView::from(a);
    v.registrations = Some(regs.into_iter().map(Into::into).collect());
    Ok(web::Json(v))
}

/// Add a SIP account for a desk phone or softphone.
#[utoipa::path(tag = "sip", request_body = AccountRequest, responses((status = 201, body = AccountView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/sip/accounts")]
async fn create_account(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: crate::iam::auth::RequestMeta,
    body: crate::http::extract::Json<AccountRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let t = auth.tenant_id;
    let mut v = Validator::new();
    if !valid_username(&b.username) {
        v.add(
            "username",
            "must be 1-64 characters: letters, digits, '.', '_', '-', '+'",
        );
    }
    v.check("password", crate::iam::domain::Password::parse(&b.password));
    if let Some(agent) = b.agent_id {
        let found = crate::acd::catalog::agent::Entity::find_by_id(agent)
            .filter(crate::acd::catalog::agent::Column::TenantId.eq(t))
            .one(&state.db.conn)
            .await?;
        if found.is_none() {
            v.add("agent_id", "no such agent");
        }
    }
    v.finish()?;
    if store::find_account_by_username(&state.db.conn, t, &b.username)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "a SIP account {:?} already exists",
            b.username
        )));
    }
    let realm = domain_of(&state, t).await?;
    let m = account::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        tenant_id: Set(t),
        username: Set(b.username.clone()),
        agent_id: Set(b.agent_id),
        realm: Set(realm.clone()),
        ha1_md5: Set(ha1(Algorithm::Md5, &b.username, &realm, &b.password)),
        ha1_sha256: Set(ha1(Algorithm::Sha256, &b.username, &realm, &b.password)),
        created_at: Set(Utc::now()),
    }
    .insert(&state.db.conn)
    .await
    .map_err(|e| match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            ApiError::conflict(format!("a SIP account {:?} already exists", b.username))
        }
        _ => e.into(),
    })?;
    audit(
        &state,
        &auth,
        &meta,
        "sip_account.created",
        m.id,
        serde_json::json!({ "username": m.username }),
    )
    .await?;
    let mut view = AccountView::from(m);
    view.registrations = Some(Vec::new());
    Ok(HttpResponse::Created().json(view))
}

/// Delete a SIP account and its registrations.
#[utoipa::path(tag = "sip", responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/sip/accounts/{id}")]
async fn delete_account(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<uuid::Uuid>,
) -> ApiResult<HttpResponse> {
    let t = auth.tenant_id;
    let a = find(&state, t, *id).await?;
    store::remove_all(&state.db.conn, t, a.id).await?;
    account::Entity::delete_by_id(a.id)
        .filter(account::Column::TenantId.eq(t))
        .exec(&state.db.conn)
        .await?;
    audit(
        &state,
        &auth,
        &meta,
        "sip_account.deleted",
        a.id,
        serde_json::json!({ "username": a.username }),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberRequest {
    /// The number in any common format; numbers without a country code are
    /// read in the tenant's default region. Stored as E.164.
    pub number: String,
    /// The queue calls to this number wait in.
    pub queue_id: Option<crate::ids::QueueId>,
    /// A flow to run (flows come later).
    pub flow: Option<String>,
    /// Forward calls out through this trunk of the tenant (the B2BUA
    /// relays ringing, early media and the answer). One of `queue_id`,
    /// `flow` and `forward_trunk_id` is required.
    pub forward_trunk_id: Option<uuid::Uuid>,
    /// Where forwarded calls go (any common format, read in the tenant's
    /// region); absent: the number dialed.
    pub forward_to: Option<String>,
    /// A prompt played to callers once answered: the name of a WAV file
    /// in `<data.dir>/prompts/<tenant id>/` (without `.wav`).
    pub greeting: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberView {
    pub id: uuid::Uuid,
    /// E.164.
    pub number: String,
    pub queue_id: Option<crate::ids::QueueId>,
    pub flow: Option<String>,
    pub forward_trunk_id: Option<uuid::Uuid>,
    pub forward_to: Option<String>,
    pub greeting: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<number::Model> for NumberView {
    fn from(n: number::Model) -> Self {
        Self {
            id: n.id,
            number: n.number,
            queue_id: n.queue_id,
            flow: n.flow,
            forward_trunk_id: n.forward_trunk_id,
            forward_to: n.forward_to,
            greeting: n.greeting,
            created_at: n.created_at,
        }
    }
}

/// The tenant's inbound numbers.
#[utoipa::path(tag = "sip", params(PageParams), responses((status = 200, body = Page<NumberView>)))]
#[get("/sip/numbers")]
async fn list_numbers(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<NumberView>>> {
    let limit = page.limit()?;
    let mut q = number::Entity::find().filter(number::Column::TenantId.eq(auth.tenant_id));
    if let Some(c) = page.cursor::<uuid::Uuid>()? {
        q = q.filter(number::Column::Id.gt(c));
    }
    let rows = q
        .order_by_asc(number::Column::Id)
        .limit(limit + 1)
        .all(&state.db.conn)
        .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |n| n.id,
        NumberView::from,
    )))
}

async fn find_number(state: &AppState, t: TenantId, id: uuid::Uuid) -> ApiResult<number::Model> {
    number::Entity::find_by_id(id)
        .filter(number::Column::TenantId.eq(t))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("SIP number"))
}

/// One inbound number.
#[utoipa::path(tag = "sip", responses((status = 200, body = NumberView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/sip/numbers/{id}")]
async fn get_number(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<uuid::Uuid>,
) -> ApiResult<web::Json<NumberView>> {
    Ok(web::Json(
        find_number(&state, auth.tenant_id, *id).await?.into(),
    ))
}

/// Add an inbound number (unique across the service) with its entry point.
#[utoipa::path(tag = "sip", request_body = NumberRequest, responses((status = 201, body = NumberView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/sip/numbers")]
async fn create_number(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: crate::iam::auth::RequestMeta,
    body: crate::http::extract::Json<NumberRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let t = auth.tenant_id;
    let tenant = crate::iam::entity::tenant::Entity::find_by_id(t)
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let mut v = Validator::new();
    let e164 = v
        .check(
            "number",
            crate::contacts::domain::parse_phone(&b.number, &tenant.default_region),
        )
        .map(|p| p.e164);
    let entries = [
        b.queue_id.is_some(),
        b.flow.is_some(),
        b.forward_trunk_id.is_some(),
    ];
    match entries.iter().filter(|x| **x).count() {
        0 => v.add(
            "queue_id",
            "an entry point is required: queue_id, flow or forward_trunk_id",
        ),
        1 => {}
        _ => v.add(
            "flow",
            "give one entry point: queue_id, flow or forward_trunk_id",
        ),
    }
    let forward_to = match &b.forward_to {
        Some(_) if b.forward_trunk_id.is_none() => {
            v.add("forward_to", "only with forward_trunk_id");
            None
        }
        Some(f) => v
            .check(
                "forward_to",
                crate::contacts::domain::parse_phone(f, &tenant.default_region),
            )
            .map(|p| p.e164),
        None => None,
    };
    if let Some(g) = &b.greeting
        && !crate::prompts::name_ok(g)
    {
        v.add(
            "greeting",
            "must be a prompt name: 1-100 letters, digits, '.', '_', '-' (no '..')",
        );
    }
    if let Some(tr) = b.forward_trunk_id {
        match super::trunks::find_trunk(&state.db.conn, t, tr).await? {
            None => v.add("forward_trunk_id", "no such trunk"),
            Some(tr) if !tr.enabled => v.add("forward_trunk_id", "the trunk is disabled"),
            Some(_) => {}
        }
    }
    if let Some(f) = &b.flow {
        if !crate::ivr::store::name_ok(f) {
            v.add("flow", "must be a flow name: 1-64 of a-z, 0-9, '-' and '_'");
        } else if crate::ivr::store::find(&state.db.conn, t, f)
            .await?
            .is_none()
        {
            v.add(
                "flow",
                "no such flow (save and publish it under Flows first)",
            );
        }
    }
    if let Some(q) = b.queue_id {
        let found = crate::acd::catalog::queue::Entity::find_by_id(q)
            .filter(crate::acd::catalog::queue::Column::TenantId.eq(t))
            .one(&state.db.conn)
            .await?;
        if found.is_none() {
            v.add("queue_id", "no such queue");
        }
    }
    v.finish()?;
    let Some(e164) = e164 else {
        return Err(ApiError::not_found("number"));
    };
    let taken = || ApiError::conflict(format!("the number {e164} is already in use"));
    if super::numbers::find_by_number(&state.db.conn, &e164)
        .await?
        .is_some()
    {
        return Err(taken());
    }
    let m = number::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        tenant_id: Set(t),
        number: Set(e164.clone()),
        queue_id: Set(b.queue_id),
        flow: Set(b.flow.clone()),
        created_at: Set(Utc::now()),
        forward_trunk_id: Set(b.forward_trunk_id),
        forward_to: Set(forward_to),
        greeting: Set(b.greeting.clone()),
    }
    .insert(&state.db.conn)
    .await
    .map_err(|e| match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => taken(),
        _ => e.into(),
    })?;
    crate::iam::store::audit_principal(
        &state.db.conn,
        &auth,
        &meta,
        "sip_number.created",
        "sip_number",
        Some(m.id),
        serde_json::json!({ "number": m.number }),
    )
    .await?;
    Ok(HttpResponse::Created().json(NumberView::from(m)))
}

/// Remove an inbound number: calls to it are refused from then on.
#[utoipa::path(tag = "sip", responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/sip/numbers/{id}")]
async fn delete_number(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<uuid::Uuid>,
) -> ApiResult<HttpResponse> {
    let t = auth.tenant_id;
    let n = find_number(&state, t, *id).await?;
    number::Entity::delete_by_id(n.id)
        .filter(number::Column::TenantId.eq(t))
        .exec(&state.db.conn)
        .await?;
    crate::iam::store::audit_principal(
        &state.db.conn,
        &auth,
        &meta,
        "sip_number.deleted",
        "sip_number",
        Some(n.id),
        serde_json::json!({ "number": n.number }),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn audit_trunk(
    state: &AppState,
    p: &crate::iam::auth::Principal,
    meta: &crate::iam::auth::RequestMeta,
    action: &str,
    target: uuid::Uuid,
    details: serde_json::Value,
) -> ApiResult<()> {
    crate::iam::store::audit_principal(
        &state.db.conn,
        p,
        meta,
        action,
        "sip_trunk",
        Some(target),
        details,
    )
    .await?;
    Ok(())
}

async fn audit(
    state: &AppState,
    p: &crate::iam::auth::Principal,
    meta: &crate::iam::auth::RequestMeta,
    action: &str,
    target: uuid::Uuid,
    details: serde_json::Value,
) -> ApiResult<()> {
    crate::iam::store::audit_principal(
        &state.db.conn,
        p,
        meta,
        action,
        "sip_account",
        Some(target),
        details,
    )
    .await?;
    Ok(())
}
