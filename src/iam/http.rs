//! HTTP routes of the identity context: login and sessions, users, API
//! keys, the tenant's settings and the audit log.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::auth::{AdminOnly, Auth, Principal, RequestMeta, SESSION_COOKIE};
use super::domain::{Email, Name, Password};
use super::entity::{Role, api_key, audit as audit_row, tenant, user};
use super::store::{self, AuditEntry, UserChanges};
use crate::error::{ApiError, ApiResult, ErrorCode, Validator};
use crate::http::extract::{Json, Page, PageParams};
use crate::ids::{ApiKeyId, TenantId, UserId};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(login)
        .service(logout)
        .service(me)
        .service(change_password)
        .service(get_tenant)
        .service(update_tenant)
        .service(list_users)
        .service(create_user)
        .service(get_user)
        .service(update_user)
        .service(list_api_keys)
        .service(create_api_key)
        .service(get_api_key)
        .service(revoke_api_key)
        .service(list_audit);
}

// ---- wire types ------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<user::Model> for UserView {
    fn from(u: user::Model) -> Self {
        Self {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            role: u.role,
            active: u.active,
            created_at: u.created_at,
            last_login_at: u.last_login_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub timezone: String,
    pub default_region: String,
}

impl From<tenant::Model> for TenantView {
    fn from(t: tenant::Model) -> Self {
        Self {
            id: t.id,
            slug: t.slug,
            name: t.name,
            timezone: t.timezone,
            default_region: t.default_region,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    /// The public part of the key (`sbk_<prefix>_...`), to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeyView {
    fn from(k: api_key::Model) -> Self {
        Self {
            id: k.id,
            name: k.name,
            role: k.role,
            prefix: k.prefix,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKeyView {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The whole key. It is shown only this once; store it safely.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub actor_type: String,
    pub actor_id: Option<uuid::Uuid>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<uuid::Uuid>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<audit_row::Model> for AuditView {
    fn from(a: audit_row::Model) -> Self {
        Self {
            id: a.id,
            actor_type: a.actor_type,
            actor_id: a.actor_id,
            action: a.action,
            target_type: a.target_type,
            target_id: a.target_id,
            ip: a.ip,
            request_id: a.request_id,
            details: a.details,
            created_at: a.created_at,
        }
    }
}

/// The caller: a signed-in user or an API key.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub tenant: TenantView,
    pub role: Role,
    pub user: Option<UserView>,
    pub api_key: Option<ApiKeyView>,
    /// Send as `X-CSRF-Token` on every write made with the session cookie.
    pub csrf_token: Option<String>,
    pub session_expires_at: Option<DateTime<Utc>>,
}

/// Records a security-relevant action by `p`.
async fn audit_by(
    state: &AppState,
    p: &Principal,
    meta: &RequestMeta,
    action: &str,
    target: Option<(&str, uuid::Uuid)>,
    details: serde_json::Value,
) -> ApiResult<()> {
    store::audit(
        &state.db.conn,
        AuditEntry {
            tenant_id: p.tenant_id,
            actor_type: p.actor.kind(),
            actor_id: Some(p.actor.id()),
            action,
            target_type: target.map(|t| t.0),
            target_id: target.map(|t| t.1),
            ip: meta.ip.clone(),
            request_id: meta.request_id.clone(),
            details,
        },
    )
    .await?;
    Ok(())
}

fn session_cookie(state: &AppState, value: String, max_age_minutes: i64) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .secure(state.settings.http.secure_cookies)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::minutes(max_age_minutes))
        .finish()
}

// ---- sessions --------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The tenant's short name (its "workspace").
    pub tenant: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserView,
    pub tenant: TenantView,
    /// Send as `X-CSRF-Token` on every write made with the session cookie.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Sign in to the console. Sets an HttpOnly, SameSite=Strict session cookie
/// (a new one at every sign-in) and returns the CSRF token for writes.
/// Repeated failures for an account or from an address are throttled (429).
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "wrong tenant, email or password", body = crate::error::ErrorBody),
        (status = 429, description = "too many failures; see Retry-After", body = crate::error::ErrorBody),
    )
)]
#[post("/auth/login")]
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    meta: RequestMeta,
    body: Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    let LoginRequest {
        tenant,
        email,
        password,
    } = body.0;
    let mut v = Validator::new();
    v.length("tenant", &tenant, 1, 64);
    v.length("email", &email, 1, 320);
    v.length("password", &password, 1, 4 * Password::MAX);
    v.finish()?;

    let addr = meta.ip.clone().unwrap_or_default();
    let now = std::time::Instant::now();
    if let Some(wait) = state.throttle.check(&tenant, &email, &addr, now) {
        state
            .metrics
            .login_attempts
            .get_or_create(&crate::metrics::OutcomeLabel::new("throttled"))
            .inc();
        return Err(ApiError::rate_limited(wait));
    }

    let t = store::tenant_by_slug(&state.db.conn, tenant.trim()).await?;
    let u = match &t {
        Some(t) => store::user_by_email(&state.db.conn, t.id, &email).await?,
        None => None,
    };
    let ok = state
        .hasher
        .verify(&password, u.as_ref().map(|u| u.password_hash.as_str()))
        .await;
    let u = match (ok, u) {
        (true, Some(u)) if u.active => u,
        (_, u) => {
            state.throttle.record_failure(&tenant, &email, &addr, now);
            state
                .metrics
                .login_attempts
                .get_or_create(&crate::metrics::OutcomeLabel::new("failed"))
                .inc();
            if let Some(t) = &t {
                store::audit(
                    &state.db.conn,
                    AuditEntry {
                        tenant_id: t.id,
                        actor_type: "anonymous",
                        actor_id: None,
                        action: "login.failed",
                        target_type: u.as_ref().map(|_| "user"),
                        target_id: u.as_ref().map(|u| u.id.0),
                        ip: meta.ip.clone(),
                        request_id: meta.request_id.clone(),
                        details: json!({ "email": email.trim().to_lowercase() }),
                    },
                )
                .await?;
            }
            return Err(ApiError::new(
                ErrorCode::InvalidCredentials,
                "wrong workspace, email or password",
            ));
        }
    };
    let t = t.expect("a user implies its tenant");
    state.throttle.record_success(&tenant, &email);

    // Rotate: whatever session this browser had is ended, and a new token issued.
    if let Some(old) = req.cookie(SESSION_COOKIE) {
        store::delete_session_by_token(&state.db.conn, old.value()).await?;
    }
    let ttl = state.settings.security.session_ttl_minutes as i64;
    let s = store::create_session(
        &state.db.conn,
        &u,
        chrono::Duration::minutes(ttl),
        meta.ip.clone(),
        meta.user_agent.clone(),
    )
    .await?;
    store::record_login(&state.db.conn, u.id).await?;
    store::audit(
        &state.db.conn,
        AuditEntry {
            tenant_id: t.id,
            actor_type: "user",
            actor_id: Some(u.id.0),
            action: "login.succeeded",
            target_type: Some("session"),
            target_id: Some(s.session.id.0),
            ip: meta.ip.clone(),
            request_id: meta.request_id.clone(),
            details: json!({ "user_agent": meta.user_agent }),
        },
    )
    .await?;
    state
        .metrics
        .login_attempts
        .get_or_create(&crate::metrics::OutcomeLabel::new("succeeded"))
        .inc();
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&state, s.token, ttl))
        .json(LoginResponse {
            user: u.into(),
            tenant: t.into(),
            csrf_token: s.csrf_token,
            expires_at: s.session.expires_at,
        }))
}

/// End the current session.
#[utoipa::path(tag = "auth", responses((status = 204)))]
#[post("/auth/logout")]
async fn logout(
    state: web::Data<AppState>,
    auth: Auth,
    meta: RequestMeta,
) -> ApiResult<HttpResponse> {
    if let Some(sid) = auth.session {
        store::delete_session(&state.db.conn, auth.tenant_id, sid).await?;
        audit_by(
            &state,
            &auth,
            &meta,
            "logout",
            Some(("session", sid.0)),
            json!({}),
        )
        .await?;
    }
    let mut gone = session_cookie(&state, String::new(), 0);
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// Who am I? Returns the CSRF token for cookie-authenticated writes.
#[utoipa::path(tag = "auth", responses((status = 200, body = MeView), (status = 401, body = crate::error::ErrorBody)))]
#[get("/auth/me")]
async fn me(state: web::Data<AppState>, auth: Auth) -> ApiResult<web::Json<MeView>> {
    let db = &state.db.conn;
    let tenant = store::tenant(db, auth.tenant_id).await?.into();
    let (user, api_key, csrf_token, session_expires_at) = match auth.actor {
        super::auth::Actor::User(uid) => {
            let u = store::user(db, auth.tenant_id, uid).await?;
            let s = match auth.session {
                Some(sid) => {
                    use sea_orm::EntityTrait;
                    super::entity::session::Entity::find_by_id(sid)
                        .one(db)
                        .await?
                }
                None => None,
            };
            (
                Some(u.into()),
                None,
                s.as_ref().map(|s| s.csrf_token.clone()),
                s.map(|s| s.expires_at),
            )
        }
        super::auth::Actor::ApiKey(kid) => (
            None,
            Some(store::api_key(db, auth.tenant_id, kid).await?.into()),
            None,
            None,
        ),
    };
    Ok(web::Json(MeView {
        tenant,
        role: auth.role,
        user,
        api_key,
        csrf_token,
        session_expires_at,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

/// Change your own password. Ends all your sessions, including this one.
#[utoipa::path(tag = "auth", request_body = ChangePasswordRequest, responses((status = 204), (status = 422, body = crate::error::ErrorBody)))]
#[post("/auth/password")]
async fn change_password(
    state: web::Data<AppState>,
    auth: Auth,
    meta: RequestMeta,
    body: Json<ChangePasswordRequest>,
) -> ApiResult<HttpResponse> {
    let uid = auth
        .user_id()
        .ok_or_else(|| ApiError::forbidden("API keys have no password"))?;
    let mut v = Validator::new();
    let new = v.check("new_password", Password::parse(&body.0.new_password));
    v.finish()?;
    let u = store::user(&state.db.conn, auth.tenant_id, uid).await?;
    // Guessing the current password from a stolen session is throttled like
    // sign-in (its own count, keyed by the tenant id).
    let (scope, addr, now) = (
        format!("pw:{}", auth.tenant_id),
        meta.ip.clone().unwrap_or_default(),
        std::time::Instant::now(),
    );
    if let Some(wait) = state.throttle.check(&scope, &u.email, &addr, now) {
        return Err(ApiError::rate_limited(wait));
    }
    if !state
        .hasher
        .verify(&body.0.current_password, Some(&u.password_hash))
        .await
    {
        state.throttle.record_failure(&scope, &u.email, &addr, now);
        return Err(ApiError::field("current_password", "is wrong"));
    }
    state.throttle.record_success(&scope, &u.email);
    let hash = state.hasher.hash(&new.expect("validated")).await;
    store::update_user(
        &state.db.conn,
        auth.tenant_id,
        uid,
        UserChanges {
            password_hash: Some(hash),
            ..Default::default()
        },
    )
    .await?;
    audit_by(
        &state,
        &auth,
        &meta,
        "user.password_changed",
        Some(("user", uid.0)),
        json!({}),
    )
    .await?;
    let mut gone = session_cookie(&state, String::new(), 0);
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

// ---- tenant ----------------------------------------------------------------

/// The caller's tenant.
#[utoipa::path(tag = "tenant", responses((status = 200, body = TenantView)))]
#[get("/tenant")]
async fn get_tenant(state: web::Data<AppState>, auth: Auth) -> ApiResult<web::Json<TenantView>> {
    Ok(web::Json(
        store::tenant(&state.db.conn, auth.tenant_id).await?.into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    pub name: Option<String>,
    /// An IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    /// ISO 3166-1 alpha-2 region used to read local phone numbers, e.g. `US`.
    pub default_region: Option<String>,
}

/// Change the tenant's name, time zone or default phone region.
#[utoipa::path(tag = "tenant", request_body = UpdateTenantRequest, responses((status = 200, body = TenantView), (status = 422, body = crate::error::ErrorBody)))]
#[patch("/tenant")]
async fn update_tenant(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: RequestMeta,
    body: Json<UpdateTenantRequest>,
) -> ApiResult<web::Json<TenantView>> {
    let b = body.0;
    let mut v = Validator::new();
    let name = b
        .name
        .as_deref()
        .map(|n| v.check("name", Name::parse(n)).map(Name::into_inner));
    if let Some(tz) = &b.timezone
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        v.add("timezone", "is not an IANA time zone such as Europe/Berlin");
    }
    if let Some(r) = &b.default_region
        && (r.len() != 2 || !r.bytes().all(|c| c.is_ascii_uppercase()))
    {
        v.add(
            "default_region",
            "must be a two-letter upper-case region code such as US",
        );
    }
    v.finish()?;
    let t = store::update_tenant(
        &state.db.conn,
        auth.tenant_id,
        name.flatten(),
        b.timezone.clone(),
        b.default_region.clone(),
    )
    .await?;
    audit_by(
        &state,
        &auth,
        &meta,
        "tenant.updated",
        Some(("tenant", t.id.0)),
        json!({
            "timezone": b.timezone, "default_region": b.default_region
        }),
    )
    .await?;
    Ok(web::Json(t.into()))
}

// ---- users -----------------------------------------------------------------

/// Users of the tenant, in creation order.
#[utoipa::path(tag = "users", params(PageParams), responses((status = 200, body = Page<UserView>)))]
#[get("/users")]
async fn list_users(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<UserView>>> {
    let limit = page.limit()?;
    let rows = store::list_users(&state.db.conn, auth.tenant_id, page.cursor()?, limit + 1).await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |u| u.id,
        UserView::from,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// At least 12 characters.
    pub password: String,
}

/// Add a user to the tenant.
#[utoipa::path(tag = "users", request_body = CreateUserRequest, responses((status = 201, body = UserView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/users")]
async fn create_user(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: RequestMeta,
    body: Json<CreateUserRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let mut v = Validator::new();
    let email = v.check("email", Email::parse(&b.email));
    let name = v.check("display_name", Name::parse(&b.display_name));
    let pw = v.check("password", Password::parse(&b.password));
    v.finish()?;
    let (email, name, pw) = (
        email.expect("valid"),
        name.expect("valid"),
        pw.expect("valid"),
    );
    let hash = state.hasher.hash(&pw).await;
    let u = store::create_user(&state.db.conn, auth.tenant_id, &email, name, b.role, hash).await?;
    audit_by(
        &state,
        &auth,
        &meta,
        "user.created",
        Some(("user", u.id.0)),
        json!({
            "email": u.email, "role": u.role
        }),
    )
    .await?;
    Ok(HttpResponse::Created().json(UserView::from(u)))
}

/// One user.
#[utoipa::path(tag = "users", responses((status = 200, body = UserView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/users/{id}")]
async fn get_user(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<UserId>,
) -> ApiResult<web::Json<UserView>> {
    Ok(web::Json(
        store::user(&state.db.conn, auth.tenant_id, *id)
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    /// `false` deactivates the user and ends their sessions.
    pub active: Option<bool>,
    /// Set a new password (ends the user's sessions).
    pub password: Option<String>,
}

/// Change a user's name, role, password or whether they may sign in.
#[utoipa::path(tag = "users", request_body = UpdateUserRequest, responses((status = 200, body = UserView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[patch("/users/{id}")]
async fn update_user(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: RequestMeta,
    id: crate::http::extract::Path<UserId>,
    body: Json<UpdateUserRequest>,
) -> ApiResult<web::Json<UserView>> {
    let b = body.0;
    let mut v = Validator::new();
    let name = b
        .display_name
        .as_deref()
        .map(|n| v.check("display_name", Name::parse(n)));
    let pw = b
        .password
        .as_deref()
        .map(|p| v.check("password", Password::parse(p)));
    v.finish()?;
    let password_hash = match pw.flatten() {
        Some(p) => Some(state.hasher.hash(&p).await),
        None => None,
    };
    let changes = UserChanges {
        display_name: name.flatten(),
        role: b.role,
        active: b.active,
        password_hash,
    };
    let password_changed = changes.password_hash.is_some();
    let (before, after) = store::update_user(&state.db.conn, auth.tenant_id, *id, changes).await?;
    if before.role != after.role {
        audit_by(
            &state,
            &auth,
            &meta,
            "user.role_changed",
            Some(("user", after.id.0)),
            json!({
                "from": before.role, "to": after.role
            }),
        )
        .await?;
    }
    if before.active != after.active {
        let action = if after.active {
            "user.activated"
        } else {
            "user.deactivated"
        };
        audit_by(
            &state,
            &auth,
            &meta,
            action,
            Some(("user", after.id.0)),
            json!({}),
        )
        .await?;
    }
    if password_changed {
        audit_by(
            &state,
            &auth,
            &meta,
            "user.password_reset",
            Some(("user", after.id.0)),
            json!({}),
        )
        .await?;
    }
    Ok(web::Json(after.into()))
}

// ---- API keys --------------------------------------------------------------

/// API keys of the tenant (never their secrets).
#[utoipa::path(tag = "api-keys", params(PageParams), responses((status = 200, body = Page<ApiKeyView>)))]
#[get("/api-keys")]
async fn list_api_keys(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<ApiKeyView>>> {
    let limit = page.limit()?;
    let rows =
        store::list_api_keys(&state.db.conn, auth.tenant_id, page.cursor()?, limit + 1).await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |k| k.id,
        ApiKeyView::from,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    pub name: String,
    /// What the key may do.
    pub role: Role,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Create an API key. The response holds the whole key, shown only once.
#[utoipa::path(tag = "api-keys", request_body = CreateApiKeyRequest, responses((status = 201, body = NewApiKeyView), (status = 422, body = crate::error::ErrorBody)))]
#[post("/api-keys")]
async fn create_api_key(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: RequestMeta,
    body: Json<CreateApiKeyRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let mut v = Validator::new();
    let name = v.check("name", Name::parse(&b.name));
    if b.expires_at.is_some_and(|e| e <= Utc::now()) {
        v.add("expires_at", "must be in the future");
    }
    v.finish()?;
    let k = store::create_api_key(
        &state.db.conn,
        auth.tenant_id,
        name.expect("valid").into_inner(),
        b.role,
        auth.user_id(),
        b.expires_at,
    )
    .await?;
    audit_by(
        &state,
        &auth,
        &meta,
        "api_key.created",
        Some(("api_key", k.key.id.0)),
        json!({
            "name": k.key.name, "role": k.key.role
        }),
    )
    .await?;
    Ok(HttpResponse::Created().json(NewApiKeyView {
        token: k.token,
        key: k.key.into(),
    }))
}

/// One API key.
#[utoipa::path(tag = "api-keys", responses((status = 200, body = ApiKeyView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/api-keys/{id}")]
async fn get_api_key(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<ApiKeyId>,
) -> ApiResult<web::Json<ApiKeyView>> {
    Ok(web::Json(
        store::api_key(&state.db.conn, auth.tenant_id, *id)
            .await?
            .into(),
    ))
}

/// Revoke an API key. It stops working at once.
#[utoipa::path(tag = "api-keys", responses((status = 200, body = ApiKeyView), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/api-keys/{id}")]
async fn revoke_api_key(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: RequestMeta,
    id: crate::http::extract::Path<ApiKeyId>,
) -> ApiResult<web::Json<ApiKeyView>> {
    let k = store::revoke_api_key(&state.db.conn, auth.tenant_id, *id).await?;
    audit_by(
        &state,
        &auth,
        &meta,
        "api_key.revoked",
        Some(("api_key", k.id.0)),
        json!({ "name": k.name }),
    )
    .await?;
    Ok(web::Json(k.into()))
}

// ---- audit -----------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Only this action, e.g. `login.failed`.
    pub action: Option<String>,
}

/// The tenant's audit log, newest first.
#[utoipa::path(tag = "audit", params(AuditParams), responses((status = 200, body = Page<AuditView>)))]
#[get("/audit")]
async fn list_audit(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    q: crate::http::extract::Query<AuditParams>,
) -> ApiResult<web::Json<Page<AuditView>>> {
    let q = q.into_inner();
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let rows = store::list_audit(
        &state.db.conn,
        auth.tenant_id,
        page.cursor()?,
        q.action.as_deref(),
        limit + 1,
    )
    .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |a| a.id,
        AuditView::from,
    )))
}
