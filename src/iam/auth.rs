//! Authentication and authorization as typed extractors.
//!
//! A handler that takes `Auth<AdminOnly>` cannot run for anyone but an
//! admin; there is no check for a handler to forget. Both session cookies
//! (the console) and `Authorization: Bearer` API keys (programs) resolve to
//! the same [`Principal`], which carries the tenant every query is scoped to.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chrono::Utc;
use futures_util::FutureExt;
use futures_util::future::Shared;

use super::entity::Role;
use super::store;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ApiKeyId, SessionId, TenantId, UserId};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "sb_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
}

impl Actor {
    pub fn kind(self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
        }
    }
    pub fn id(self) -> uuid::Uuid {
        match self {
            Actor::User(u) => u.0,
            Actor::ApiKey(k) => k.0,
        }
    }
}

/// Who is calling, for which tenant, with which role.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: TenantId,
    pub role: Role,
    pub actor: Actor,
    pub session: Option<SessionId>,
}

impl Principal {
    pub fn user_id(&self) -> Option<UserId> {
        match self.actor {
            Actor::User(u) => Some(u),
            Actor::ApiKey(_) => None,
        }
    }
}

/// Which roles a route admits.
pub trait Policy {
    const DESCRIPTION: &'static str;
    fn allows(role: Role) -> bool;
}

/// Any authenticated caller.
pub struct AnyRole;
impl Policy for AnyRole {
    const DESCRIPTION: &'static str = "any signed-in user";
    fn allows(_: Role) -> bool {
        true
    }
}

pub struct AdminOnly;
impl Policy for AdminOnly {
    const DESCRIPTION: &'static str = "an admin";
    fn allows(role: Role) -> bool {
        role == Role::Admin
    }
}

/// Admins and supervisors: routing configuration, interactions, webhooks.
pub struct Supervisors;
impl Policy for Supervisors {
    const DESCRIPTION: &'static str = "a supervisor or admin";
    fn allows(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Supervisor)
    }
}

/// Admins and marketers: contacts and campaigns.
pub struct Marketers;
impl Policy for Marketers {
    const DESCRIPTION: &'static str = "a marketer or admin";
    fn allows(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Marketer)
    }
}

/// Anyone who works interactions: agents, supervisors and admins.
pub struct Staff;
impl Policy for Staff {
    const DESCRIPTION: &'static str = "an agent, supervisor or admin";
    fn allows(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Supervisor | Role::Agent)
    }
}

/// An authenticated caller admitted by policy `P`.
pub struct Auth<P: Policy = AnyRole> {
    pub principal: Principal,
    _policy: PhantomData<P>,
}

impl<P: Policy> std::ops::Deref for Auth<P> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<P: Policy + 'static> FromRequest for Auth<P> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let principal = principal(&req).await?;
            if !P::allows(principal.role) {
                return Err(ApiError::forbidden(format!(
                    "this needs {}; you are signed in as {}",
                    P::DESCRIPTION,
                    principal.role.as_str()
                )));
            }
            Ok(Auth {
                principal,
                _policy: PhantomData,
            })
        })
    }
}

/// The credentials a request presented, copied out of it so that the
/// resolution kept in the request's extensions holds no reference to the
/// request itself.
struct Presented {
    /// The Authorization header: `Err` if it is not valid text.
    authorization: Option<Result<String, ()>>,
    cookie: Option<String>,
    csrf: String,
    safe_method: bool,
}

impl Presented {
    fn of(req: &HttpRequest) -> Self {
        Presented {
            authorization: req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .map(|v| v.to_str().map(str::to_owned).map_err(|_| ())),
            cookie: req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()),
            csrf: req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            safe_method: matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS),
        }
    }
}

/// The one resolution of a request's caller, shared by every extractor
/// that asks (see [`settle`]).
type Resolution = Shared<Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>>;

fn resolution(req: &HttpRequest) -> Option<Resolution> {
    let existing = req.extensions().get::<Resolution>().cloned();
    if existing.is_some() {
        return existing;
    }
    let state = req.app_data::<web::Data<AppState>>()?.clone();
    let presented = Presented::of(req);
    let fut: Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>> =
        Box::pin(async move { authenticate(presented, &state).await });
    let shared = fut.shared();
    req.extensions_mut().insert(shared.clone());
    Some(shared)
}

/// Resolves (once per request, however many extractors ask) who is calling.
pub async fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    resolution(req).expect("AppState is registered").await
}

/// Waits until the caller of `req` is resolved, whatever the outcome.
///
/// Body extractors call this before they report their own errors: actix
/// polls a handler's extractors side by side, so without it a malformed body
/// would be answered (400/413/415/422) before the credentials were checked,
/// and unauthenticated, CSRF-failing or forbidden callers would get
/// validation errors instead of 401/403. Once the shared resolution is done,
/// the `Auth` extractor (listed before the body) reports first.
pub async fn settle(req: &HttpRequest) {
    if let Some(r) = resolution(req) {
        let _ = r.await;
    }
}

async fn authenticate(req: Presented, state: &AppState) -> Result<Principal, ApiError> {
    let now = Utc::now();
    if let Some(header) = req.authorization {
        let value =
            header.map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be `Bearer <api key>`"))?;
        let key = store::api_key_by_token(&state.db.conn, token.trim(), now)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("invalid, expired or revoked API key"))?;
        return Ok(Principal {
            tenant_id: key.tenant_id,
            role: key.role,
            actor: Actor::ApiKey(key.id),
            session: None,
        });
    }

    let Some(cookie) = req.cookie else {
        return Err(ApiError::unauthenticated(
            "sign in, or send an API key as `Authorization: Bearer`",
        ));
    };
    let sec = &state.settings.security;
    let (session, user) =
        store::session_by_token(&state.db.conn, &cookie, now, sec.session_idle_minutes)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("your session has expired; sign in again"))?;

    // Cookie-authenticated writes must carry the session's CSRF token.
    if !req.safe_method && !crate::crypto::ct_eq(req.csrf.as_bytes(), session.csrf_token.as_bytes())
    {
        return Err(ApiError::new(
            ErrorCode::CsrfFailed,
            "missing or wrong X-CSRF-Token header (get it from GET /api/v1/auth/me)",
        ));
    }
    Ok(Principal {
        tenant_id: user.tenant_id,
        role: user.role,
        actor: Actor::User(user.id),
        session: Some(session.id),
    })
}

/// Where a request came from, for audit records and throttling. Uses the
/// socket's peer address: forwarded headers are not trusted.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl FromRequest for RequestMeta {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(RequestMeta::of(req)))
    }
}

impl RequestMeta {
    pub fn of(req: &HttpRequest) -> Self {
        let user_agent = req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        RequestMeta {
            ip: req.peer_addr().map(|a| a.ip().to_string()),
            user_agent,
            request_id: req
                .extensions()
                .get::<crate::telemetry::RequestId>()
                .map(|r| r.0.clone()),
        }
    }
}
