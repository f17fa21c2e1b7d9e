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

/// Resolves (once per request) who is calling.
pub async fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    if let Some(p) = req.extensions().get::<Principal>() {
        return Ok(p.clone());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered")
        .clone();
    let p = authenticate(req, &state).await?;
    req.extensions_mut().insert(p.clone());
    Ok(p)
}

async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    let now = Utc::now();
    if let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
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

    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Err(ApiError::unauthenticated(
            "sign in, or send an API key as `Authorization: Bearer`",
        ));
    };
    let sec = &state.settings.security;
    let (session, user) = store::session_by_token(
        &state.db.conn,
        cookie.value(),
        now,
        sec.session_idle_minutes,
    )
    .await?
    .ok_or_else(|| ApiError::unauthenticated("your session has expired; sign in again"))?;

    // Cookie-authenticated writes must carry the session's CSRF token.
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::crypto::ct_eq(sent.as_bytes(), session.csrf_token.as_bytes()) {
            return Err(ApiError::new(
                ErrorCode::CsrfFailed,
                "missing or wrong X-CSRF-Token header (get it from GET /api/v1/auth/me)",
            ));
        }
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
