//! `/sip/trunks*`: where a tenant's outbound calls go (admins only). A trunk
//! is a host, port and transport, optional digest credentials (the password
//! sealed with the master key, never returned), the caller id its calls
//! carry by default and a calls-per-second limit (a token bucket per trunk
//! on each node, [`Cps`]). Views carry the trunk's OPTIONS keep-alive
//! health on this node (`keepalive`). [`sweep`] is the background rounds
//! over every tenant's trunks that keep-alive and registration make.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveModelTrait, QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Validator};
use crate::http::extract::{Page, PageParams};
use crate::iam::{AdminOnly, Auth};
use crate::ids::TenantId;
use crate::state::AppState;

pub mod trunk {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sip_trunks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        pub name: String,
        pub host: String,
        pub port: i32,
        /// `udp` or `tcp`.
        pub transport: String,
        pub auth_username: Option<String>,
        /// Sealed with `crypto::Sealer`.
        pub auth_password_sealed: Option<String>,
        /// E.164.
        pub caller_id: String,
        pub cps_limit: i32,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        /// Whether we REGISTER with the trunk (`trunk_reg`).
        pub register: bool,
        /// The registration lifetime we ask for.
        pub register_expires_secs: i32,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

/// The tenant's trunk `id`, if it has one.
pub async fn find_trunk(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: Uuid,
) -> Result<Option<trunk::Model>, DbErr> {
    trunk::Entity::find_by_id(id)
        .filter(trunk::Column::TenantId.eq(t))
        .one(db)
        .await
}

/// Trunks a [`sweep`] round reads, at most (of all tenants).
const SWEPT_AT_MOST: u64 = 10_000;
/// Trunks a [`sweep`] round handles at once.
const SWEEP_CONCURRENCY: usize = 32;

/// Which enabled trunks a [`sweep`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Swept {
    /// Every enabled trunk.
    Enabled,
    /// The enabled trunks that REGISTER.
    Registering,
}

/// Background work on the trunks of every tenant (keep-alive,
/// registration): at each `tick` until `stop`, a round reads the `which`
/// trunks, `pick` chooses those to handle (and forgets the others), and
/// `handle` runs for each chosen, a few at a time. Should the trunks not
/// be read, the round is skipped and the failure logged as `what`'s.
pub(super) async fn sweep<F>(
    db: &DatabaseConnection,
    stop: &CancellationToken,
    mut tick: tokio::time::Interval,
    which: Swept,
    what: &str,
    mut pick: impl FnMut(Vec<trunk::Model>) -> Vec<trunk::Model>,
    handle: impl Fn(trunk::Model) -> F,
) where
    F: Future<Output = ()>,
{
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let round = async {
            let mut q = trunk::Entity::find().filter(trunk::Column::Enabled.eq(true));
            if which == Swept::Registering {
                q = q.filter(trunk::Column::Register.eq(true));
            }
            let trunks = match q.limit(SWEPT_AT_MOST).all(db).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: cannot read the trunks");
                    return;
                }
            };
            futures_util::stream::iter(pick(trunks))
                .for_each_concurrent(SWEEP_CONCURRENCY, &handle)
                .await;
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = round => {}
        }
    }
}

/// Calls-per-second limits: a token bucket per trunk (capacity the limit,
/// refilled at the limit per second), in memory on each node.
#[derive(Debug, Default)]
pub struct Cps {
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl Cps {
    /// Takes a token for a call through `trunk`; `Err(secs)` is how long
    /// until one is available (rounded up, at least 1).
    pub fn take(&self, trunk: Uuid, limit: u32) -> Result<(), u64> {
        let limit = f64::from(limit.max(1));
        let now = Instant::now();
        let mut m = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Forget buckets that have been full for a while.
        if m.len() > 10_000 {
            m.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = m.entry(trunk).or_insert((limit, now));
        let refill = now.duration_since(*at).as_secs_f64() * limit;
        *tokens = (*tokens + refill).min(limit);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / limit;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrunkRequest {
    /// 1-100 characters, unique in the tenant.
    pub name: String,
    /// The trunk's hostname or IP address.
    pub host: String,
    /// Default 5060.
    pub port: Option<i64>,
    /// `udp` (default) or `tcp`.
    pub transport: Option<String>,
    /// Digest username, when the trunk asks for authentication.
    pub auth_username: Option<String>,
    /// Digest password (1-256): stored sealed, never returned. On PUT,
    /// leave it out to keep the stored one.
    pub password: Option<String>,
    /// E.164 (or a number in the tenant's region): the default From of
    /// calls through this trunk.
    pub caller_id: String,
    /// Calls per second through this trunk (1-1000, default 5).
    pub cps_limit: Option<i64>,
    /// Default true.
    pub enabled: Option<bool>,
    /// REGISTER with the trunk (answering its digest challenge with the
    /// credentials above), refreshed before expiry. Default false.
    pub register: Option<bool>,
    /// The registration lifetime asked for (60-86400 s, default 3600).
    pub register_expires_secs: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrunkView {
    pub id: uuid::Uuid,
    pub name: String,
    pub host: String,
    pub port: i32,
    pub transport: String,
    pub auth_username: Option<String>,
    /// Whether a password is stored (it is never returned).
    pub has_password: bool,
    pub caller_id: String,
    pub cps_limit: i32,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    /// The last OPTIONS keep-alive's outcome on this node (null until the
    /// trunk was checked, or when SIP is off). Calls through a `down` trunk
    /// still go out.
    pub health: Option<super::keepalive::TrunkHealth>,
    pub register: bool,
    pub register_expires_secs: i32,
    /// The last REGISTER's outcome on this node (null unless `register`
    /// and tried, or with SIP off).
    pub registration: Option<super::trunk_reg::TrunkRegistration>,
}

impl TrunkView {
    fn with_health(t: trunk::Model, state: &AppState) -> Self {
        let health = super::keepalive::health_of(state, t.id);
        let registration = if t.register {
            super::trunk_reg::registration_of(state, t.id)
        } else {
            None
        };
        Self {
            health,
            registration,
            ..Self::from(t)
        }
    }
}

impl From<trunk::Model> for TrunkView {
    fn from(t: trunk::Model) -> Self {
        Self {
            id: t.id,
            name: t.name,
            host: t.host,
            port: t.port,
            transport: t.transport,
            auth_username: t.auth_username,
            has_password: t.auth_password_sealed.is_some(),
            caller_id: t.caller_id,
            cps_limit: t.cps_limit,
            enabled: t.enabled,
            created_at: t.created_at,
            health: None,
            register: t.register,
            register_expires_secs: t.register_expires_secs,
            registration: None,
        }
    }
}

/// A hostname (RFC 1123 labels) or an IP address.
pub fn valid_host(h: &str) -> bool {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        // Not all digits and dots (a malformed IPv4 address).
        && !h.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn valid_auth_username(u: &str) -> bool {
    !u.is_empty()
        && u.chars().count() <= 64
        && u.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | ',' | ';' | '@' | ':'))
}

/// What a valid request becomes (the password still in clear).
struct Checked {
    name: String,
    host: String,
    port: i32,
    transport: String,
    auth_username: Option<String>,
    password: Option<String>,
    caller_id: String,
    cps_limit: i32,
    enabled: bool,
    register: bool,
    register_expires_secs: i32,
}

fn check(b: TrunkRequest, region: &str, has_stored_password: bool) -> ApiResult<Checked> {
    let mut v = Validator::new();
    let name = b.name.trim().to_owned();
    v.length("name", &name, 1, 100);
    if name.chars().any(char::is_control) {
        v.add("name", "must not contain control characters");
    }
    let host = b.host.trim().to_ascii_lowercase();
    if !valid_host(&host) {
        v.add("host", "must be a hostname or an IP address");
    }
    let port = b.port.unwrap_or(5060);
    if !(1..=65535).contains(&port) {
        v.add("port", "must be 1-65535");
    }
    let transport = b.transport.unwrap_or_else(|| "udp".into());
    if !matches!(transport.as_str(), "udp" | "tcp") {
        v.add("transport", "must be udp or tcp");
    }
    if let Some(u) = &b.auth_username
        && !valid_auth_username(u)
    {
        v.add(
            "auth_username",
            "must be 1-64 printable characters without quotes, '\\', ',', ';', '@' or ':'",
        );
    }
    if let Some(p) = &b.password {
        let n = p.chars().count();
        if !(1..=256).contains(&n) || p.chars().any(char::is_control) {
            v.add(
                "password",
                "must be 1-256 characters, no control characters",
            );
        }
        if b.auth_username.is_none() {
            v.add("password", "a password needs an auth_username");
        }
    } else if b.auth_username.is_some() && !has_stored_password {
        v.add("password", "an auth_username needs a password");
    }
    let caller_id = v
        .check(
            "caller_id",
            crate::contacts::domain::parse_phone(&b.caller_id, region),
        )
        .map(|p| p.e164)
        .unwrap_or_default();
    let cps = b.cps_limit.unwrap_or(5);
    if !(1..=1000).contains(&cps) {
        v.add("cps_limit", "must be 1-1000");
    }
    let expires = b.register_expires_secs.unwrap_or(3600);
    if !(60..=86400).contains(&expires) {
        v.add("register_expires_secs", "must be 60-86400");
    }
    v.finish()?;
    Ok(Checked {
        name,
        host,
        port: port as i32,
        transport,
        auth_username: b.auth_username,
        password: b.password,
        caller_id,
        cps_limit: cps as i32,
        enabled: b.enabled.unwrap_or(true),
        register: b.register.unwrap_or(false),
        register_expires_secs: expires as i32,
    })
}

async fn region_of(state: &AppState, t: TenantId) -> ApiResult<String> {
    Ok(crate::iam::entity::tenant::Entity::find_by_id(t)
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?
        .default_region)
}

fn conflict(name: &str) -> ApiError {
    ApiError::conflict(format!("a SIP trunk {name:?} already exists"))
}

async fn name_taken(
    state: &AppState,
    t: TenantId,
    name: &str,
    except: Option<Uuid>,
) -> ApiResult<bool> {
    let mut q = trunk::Entity::find()
        .filter(trunk::Column::TenantId.eq(t))
        .filter(trunk::Column::Name.eq(name));
    if let Some(id) = except {
        q = q.filter(trunk::Column::Id.ne(id));
    }
    Ok(q.one(&state.db.conn).await?.is_some())
}

async fn find(state: &AppState, t: TenantId, id: Uuid) -> ApiResult<trunk::Model> {
    find_trunk(&state.db.conn, t, id)
        .await?
        .ok_or_else(|| ApiError::not_found("SIP trunk"))
}

/// The tenant's SIP trunks.
#[utoipa::path(tag = "sip", params(PageParams), responses((status = 200, body = Page<TrunkView>)))]
#[get("/sip/trunks")]
pub(super) async fn list_trunks(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<TrunkView>>> {
    let limit = page.limit()?;
    let mut q = trunk::Entity::find().filter(trunk::Column::TenantId.eq(auth.tenant_id));
    if let Some(c) = page.cursor::<uuid::Uuid>()? {
        q = q.filter(trunk::Column::Id.gt(c));
    }
    let rows = q
        .order_by_asc(trunk::Column::Id)
        .limit(limit + 1)
        .all(&state.db.conn)
        .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |t| t.id,
        |t| TrunkView::with_health(t, &state),
    )))
}

/// One SIP trunk (its password is never returned).
#[utoipa::path(tag = "sip", responses((status = 200, body = TrunkView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/sip/trunks/{id}")]
pub(super) async fn get_trunk(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<uuid::Uuid>,
) -> ApiResult<web::Json<TrunkView>> {
    let t = find(&state, auth.tenant_id, *id).await?;
    Ok(web::Json(TrunkView::with_health(t, &state)))
}

/// Add a SIP trunk for outbound calls.
#[utoipa::path(tag = "sip", request_body = TrunkRequest, responses((status = 201, body = TrunkView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/sip/trunks")]
pub(super) async fn create_trunk(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: crate::iam::auth::RequestMeta,
    body: crate::http::extract::Json<TrunkRequest>,
) -> ApiResult<HttpResponse> {
    let t = auth.tenant_id;
    let region = region_of(&state, t).await?;
    let c = check(body.0, &region, false)?;
    if name_taken(&state, t, &c.name, None).await? {
        return Err(conflict(&c.name));
    }
    let m = trunk::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(t),
        name: Set(c.name.clone()),
        host: Set(c.host),
        port: Set(c.port),
        transport: Set(c.transport),
        auth_username: Set(c.auth_username),
        auth_password_sealed: Set(c.password.map(|p| state.sealer.seal(p.as_bytes()))),
        caller_id: Set(c.caller_id),
        cps_limit: Set(c.cps_limit),
        enabled: Set(c.enabled),
        created_at: Set(Utc::now()),
        register: Set(c.register),
        register_expires_secs: Set(c.register_expires_secs),
    }
    .insert(&state.db.conn)
    .await
    .map_err(|e| match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => conflict(&c.name),
        _ => e.into(),
    })?;
    super::http::audit_trunk(
        &state,
        &auth,
        &meta,
        "sip_trunk.created",
        m.id,
        serde_json::json!({ "name": m.name, "host": m.host }),
    )
    .await?;
    Ok(HttpResponse::Created().json(TrunkView::from(m)))
}

/// Replace a SIP trunk's settings (leave `password` out to keep it; no
/// `auth_username` clears the credentials).
#[utoipa::path(tag = "sip", request_body = TrunkRequest, responses((status = 200, body = TrunkView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[put("/sip/trunks/{id}")]
pub(super) async fn update_trunk(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<uuid::Uuid>,
    body: crate::http::extract::Json<TrunkRequest>,
) -> ApiResult<web::Json<TrunkView>> {
    let t = auth.tenant_id;
    let old = find(&state, t, *id).await?;
    let region = region_of(&state, t).await?;
    let c = check(body.0, &region, old.auth_password_sealed.is_some())?;
    if name_taken(&state, t, &c.name, Some(old.id)).await? {
        return Err(conflict(&c.name));
    }
    let sealed = match (&c.auth_username, c.password) {
        (None, _) => None,
        (Some(_), Some(p)) => Some(state.sealer.seal(p.as_bytes())),
        (Some(_), None) => old.auth_password_sealed.clone(),
    };
    let mut a: trunk::ActiveModel = old.into();
    a.name = Set(c.name.clone());
    a.host = Set(c.host);
    a.port = Set(c.port);
    a.transport = Set(c.transport);
    a.auth_username = Set(c.auth_username);
    a.auth_password_sealed = Set(sealed);
    a.caller_id = Set(c.caller_id);
    a.cps_limit = Set(c.cps_limit);
    a.enabled = Set(c.enabled);
    a.register = Set(c.register);
    a.register_expires_secs = Set(c.register_expires_secs);
    let m = a
        .update(&state.db.conn)
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => conflict(&c.name),
            _ => e.into(),
        })?;
    super::http::audit_trunk(
        &state,
        &auth,
        &meta,
        "sip_trunk.updated",
        m.id,
        serde_json::json!({ "name": m.name, "host": m.host }),
    )
    .await?;
    Ok(web::Json(TrunkView::with_health(m, &state)))
}

/// Delete a SIP trunk (calls in progress through it go on).
#[utoipa::path(tag = "sip", responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/sip/trunks/{id}")]
pub(super) async fn delete_trunk(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<uuid::Uuid>,
) -> ApiResult<HttpResponse> {
    let t = auth.tenant_id;
    let old = find(&state, t, *id).await?;
    trunk::Entity::delete_by_id(old.id)
        .filter(trunk::Column::TenantId.eq(t))
        .exec(&state.db.conn)
        .await?;
    super::http::audit_trunk(
        &state,
        &auth,
        &meta,
        "sip_trunk.deleted",
        old.id,
        serde_json::json!({ "name": old.name }),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in ["sip.example.com", "127.0.0.1", "::1", "trunk-1", "a.b-c.d"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "-a.com", "a..b", "a b", "999.1.1.1", "a_b.com", "x@y"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn the_bucket_holds_the_limit() {
        let c = Cps::default();
        let id = Uuid::now_v7();
        assert!(c.take(id, 3).is_ok());
        assert!(c.take(id, 3).is_ok());
        assert!(c.take(id, 3).is_ok());
        assert_eq!(c.take(id, 3), Err(1));
        // Another trunk has its own bucket.
        assert!(c.take(Uuid::now_v7(), 1).is_ok());
    }
}
