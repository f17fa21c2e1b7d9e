//! Tenant-scoped persistence for identity: every function that reads or
//! writes a tenant's rows takes the `TenantId` and filters on it.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::Value;

use super::domain::{Email, Name, Slug};
use super::entity::{Role, api_key, audit, session, tenant, user};
use crate::crypto;
use crate::ids::{ApiKeyId, SessionId, TenantId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("a user with this email already exists in this tenant")]
    EmailTaken,
    #[error("a tenant with this slug already exists")]
    SlugTaken,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the tenant must keep at least one active admin")]
    LastAdmin,
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn is_unique_violation(e: &DbErr) -> bool {
    let s = e.to_string().to_lowercase();
    s.contains("unique") || s.contains("duplicate key")
}

// ---- tenants ---------------------------------------------------------------

pub async fn create_tenant(
    db: &impl ConnectionTrait,
    slug: &Slug,
    name: &str,
    timezone: &str,
    default_region: &str,
) -> Result<tenant::Model, IamError> {
    let m = tenant::ActiveModel {
        id: Set(TenantId::new()),
        slug: Set(slug.as_str().to_owned()),
        name: Set(name.to_owned()),
        timezone: Set(timezone.to_owned()),
        default_region: Set(default_region.to_owned()),
        settings: Set(serde_json::json!({})),
        created_at: Set(Utc::now()),
    };
    m.insert(db).await.map_err(|e| {
        if is_unique_violation(&e) {
            IamError::SlugTaken
        } else {
            e.into()
        }
    })
}

pub async fn tenant_by_slug(
    db: &impl ConnectionTrait,
    slug: &str,
) -> Result<Option<tenant::Model>, DbErr> {
    tenant::Entity::find()
        .filter(tenant::Column::Slug.eq(slug))
        .one(db)
        .await
}

pub async fn tenant(db: &impl ConnectionTrait, id: TenantId) -> Result<tenant::Model, IamError> {
    tenant::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(IamError::NotFound("tenant"))
}

pub async fn update_tenant(
    db: &impl ConnectionTrait,
    id: TenantId,
    name: Option<String>,
    timezone: Option<String>,
    default_region: Option<String>,
) -> Result<tenant::Model, IamError> {
    let current = tenant(db, id).await?;
    let mut m: tenant::ActiveModel = current.into();
    if let Some(n) = name {
        m.name = Set(n);
    }
    if let Some(tz) = timezone {
        m.timezone = Set(tz);
    }
    if let Some(r) = default_region {
        m.default_region = Set(r);
    }
    Ok(m.update(db).await?)
}

// ---- users -----------------------------------------------------------------

pub async fn create_user(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    email: &Email,
    display_name: Name,
    role: Role,
    password_hash: String,
) -> Result<user::Model, IamError> {
    let now = Utc::now();
    let m = user::ActiveModel {
        id: Set(UserId::new()),
        tenant_id: Set(tenant_id),
        email: Set(email.as_str().to_owned()),
        display_name: Set(display_name.into_inner()),
        role: Set(role),
        password_hash: Set(password_hash),
        active: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
        last_login_at: Set(None),
    };
    m.insert(db).await.map_err(|e| {
        if is_unique_violation(&e) {
            IamError::EmailTaken
        } else {
            e.into()
        }
    })
}

pub async fn user(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: UserId,
) -> Result<user::Model, IamError> {
    user::Entity::find_by_id(id)
        .filter(user::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?
        .ok_or(IamError::NotFound("user"))
}

pub async fn user_by_email(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    email: &str,
) -> Result<Option<user::Model>, DbErr> {
    user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant_id))
        .filter(user::Column::Email.eq(email.trim().to_lowercase()))
        .one(db)
        .await
}

pub async fn list_users(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    after: Option<UserId>,
    limit: u64,
) -> Result<Vec<user::Model>, DbErr> {
    let mut q = user::Entity::find().filter(user::Column::TenantId.eq(tenant_id));
    if let Some(a) = after {
        q = q.filter(user::Column::Id.gt(a));
    }
    q.order_by_asc(user::Column::Id).limit(limit).all(db).await
}

async fn active_admins(db: &impl ConnectionTrait, tenant_id: TenantId) -> Result<u64, DbErr> {
    user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant_id))
        .filter(user::Column::Role.eq(Role::Admin))
        .filter(user::Column::Active.eq(true))
        .count(db)
        .await
}

/// What may change on a user. `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub display_name: Option<Name>,
    pub role: Option<Role>,
    pub active: Option<bool>,
    pub password_hash: Option<String>,
}

/// Applies `changes`, refusing to remove the tenant's last active admin.
/// Deactivation and password changes end the user's sessions.
pub async fn update_user(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: UserId,
    changes: UserChanges,
) -> Result<(user::Model, user::Model), IamError> {
    let before = user(db, tenant_id, id).await?;
    let loses_admin = before.role == Role::Admin
        && before.active
        && (changes.role.is_some_and(|r| r != Role::Admin) || changes.active == Some(false));
    if loses_admin && active_admins(db, tenant_id).await? <= 1 {
        return Err(IamError::LastAdmin);
    }
    let end_sessions = changes.active == Some(false) || changes.password_hash.is_some();
    let mut m: user::ActiveModel = before.clone().into();
    if let Some(n) = changes.display_name {
        m.display_name = Set(n.into_inner());
    }
    if let Some(r) = changes.role {
        m.role = Set(r);
    }
    if let Some(a) = changes.active {
        m.active = Set(a);
    }
    if let Some(h) = changes.password_hash {
        m.password_hash = Set(h);
    }
    m.updated_at = Set(Utc::now());
    let after = m.update(db).await?;
    if end_sessions {
        delete_user_sessions(db, tenant_id, id).await?;
    }
    Ok((before, after))
}

pub async fn record_login(db: &impl ConnectionTrait, id: UserId) -> Result<(), DbErr> {
    user::Entity::update_many()
        .col_expr(user::Column::LastLoginAt, Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

// ---- sessions --------------------------------------------------------------

pub struct NewSession {
    /// The cookie value. Only its hash is stored.
    pub token: String,
    pub csrf_token: String,
    pub session: session::Model,
}

pub async fn create_session(
    db: &impl ConnectionTrait,
    user: &user::Model,
    ttl: Duration,
    ip: Option<String>,
    user_agent: Option<String>,
) -> Result<NewSession, DbErr> {
    let token = crypto::random_token(32);
    let csrf_token = crypto::random_token(24);
    let now = Utc::now();
    let m = session::ActiveModel {
        id: Set(SessionId::new()),
        tenant_id: Set(user.tenant_id),
        user_id: Set(user.id),
        token_hash: Set(crypto::sha256_hex(token.as_bytes())),
        csrf_token: Set(csrf_token.clone()),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        last_seen_at: Set(now),
        ip: Set(ip),
        user_agent: Set(user_agent),
    }
    .insert(db)
    .await?;
    Ok(NewSession {
        token,
        csrf_token,
        session: m,
    })
}

/// The live session for a cookie value and its (active) user. Expired and
/// idle sessions are deleted on sight.
pub async fn session_by_token(
    db: &impl ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
    idle_minutes: u64,
) -> Result<Option<(session::Model, user::Model)>, DbErr> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let hash = crypto::sha256_hex(token.as_bytes());
    let Some(s) = session::Entity::find()
        .filter(session::Column::TokenHash.eq(hash))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let idle_limit = s.last_seen_at + Duration::minutes(idle_minutes as i64);
    if s.expires_at <= now || idle_limit <= now {
        session::Entity::delete_by_id(s.id).exec(db).await?;
        return Ok(None);
    }
    let Some(u) = user::Entity::find_by_id(s.user_id)
        .filter(user::Column::TenantId.eq(s.tenant_id))
        .filter(user::Column::Active.eq(true))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    // Sliding idle expiry, written at most once a minute.
    if now - s.last_seen_at > Duration::seconds(60) {
        session::Entity::update_many()
            .col_expr(session::Column::LastSeenAt, Expr::value(now))
            .filter(session::Column::Id.eq(s.id))
            .exec(db)
            .await?;
    }
    Ok(Some((s, u)))
}

pub async fn delete_session_by_token(db: &impl ConnectionTrait, token: &str) -> Result<(), DbErr> {
    session::Entity::delete_many()
        .filter(session::Column::TokenHash.eq(crypto::sha256_hex(token.as_bytes())))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn delete_session(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: SessionId,
) -> Result<(), DbErr> {
    session::Entity::delete_many()
        .filter(session::Column::TenantId.eq(tenant_id))
        .filter(session::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn delete_user_sessions(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    user_id: UserId,
) -> Result<(), DbErr> {
    session::Entity::delete_many()
        .filter(session::Column::TenantId.eq(tenant_id))
        .filter(session::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Removes expired sessions of every tenant (housekeeping).
pub async fn purge_expired_sessions(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(session::Entity::delete_many()
        .filter(session::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?
        .rows_affected)
}

// ---- API keys --------------------------------------------------------------

pub const API_KEY_PREFIX: &str = "sbk_";

pub struct NewApiKey {
    /// The whole token, shown to the caller once.
    pub token: String,
    pub key: api_key::Model,
}

pub async fn create_api_key(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    name: String,
    role: Role,
    created_by: Option<UserId>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<NewApiKey, DbErr> {
    let prefix = hex::encode(crypto::random_bytes(6));
    let secret = crypto::random_token(32);
    let token = format!("{API_KEY_PREFIX}{prefix}_{secret}");
    let key = api_key::ActiveModel {
        id: Set(ApiKeyId::new()),
        tenant_id: Set(tenant_id),
        name: Set(name),
        role: Set(role),
        prefix: Set(prefix),
        secret_hash: Set(crypto::sha256_hex(secret.as_bytes())),
        created_by: Set(created_by),
        created_at: Set(Utc::now()),
        expires_at: Set(expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(NewApiKey { token, key })
}

/// The live key for a bearer token, or `None` for anything else (malformed,
/// unknown, wrong secret, revoked, expired).
pub async fn api_key_by_token(
    db: &impl ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<api_key::Model>, DbErr> {
    let Some((prefix, secret)) = token
        .strip_prefix(API_KEY_PREFIX)
        .and_then(|r| r.split_once('_'))
    else {
        return Ok(None);
    };
    if prefix.len() != 12 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) || secret.len() > 128 {
        return Ok(None);
    }
    let Some(k) = api_key::Entity::find()
        .filter(api_key::Column::Prefix.eq(prefix))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let hash = crypto::sha256_hex(secret.as_bytes());
    if !crypto::ct_eq(hash.as_bytes(), k.secret_hash.as_bytes())
        || k.revoked_at.is_some()
        || k.expires_at.is_some_and(|e| e <= now)
    {
        return Ok(None);
    }
    if k.last_used_at
        .is_none_or(|t| now - t > Duration::seconds(60))
    {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(k.id))
            .exec(db)
            .await?;
    }
    Ok(Some(k))
}

pub async fn list_api_keys(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    after: Option<ApiKeyId>,
    limit: u64,
) -> Result<Vec<api_key::Model>, DbErr> {
    let mut q = api_key::Entity::find().filter(api_key::Column::TenantId.eq(tenant_id));
    if let Some(a) = after {
        q = q.filter(api_key::Column::Id.gt(a));
    }
    q.order_by_asc(api_key::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn api_key(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: ApiKeyId,
) -> Result<api_key::Model, IamError> {
    api_key::Entity::find_by_id(id)
        .filter(api_key::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?
        .ok_or(IamError::NotFound("API key"))
}

pub async fn revoke_api_key(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: ApiKeyId,
) -> Result<api_key::Model, IamError> {
    let k = api_key(db, tenant_id, id).await?;
    if k.revoked_at.is_some() {
        return Ok(k);
    }
    let mut m: api_key::ActiveModel = k.into();
    m.revoked_at = Set(Some(Utc::now()));
    Ok(m.update(db).await?)
}

// ---- audit -----------------------------------------------------------------

/// One security-relevant action.
pub struct AuditEntry<'a> {
    pub tenant_id: TenantId,
    pub actor_type: &'a str,
    pub actor_id: Option<uuid::Uuid>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<uuid::Uuid>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub details: Value,
}

pub async fn audit(db: &impl ConnectionTrait, e: AuditEntry<'_>) -> Result<(), DbErr> {
    audit::ActiveModel {
        id: sea_orm::NotSet,
        tenant_id: Set(e.tenant_id),
        actor_type: Set(e.actor_type.to_owned()),
        actor_id: Set(e.actor_id),
        action: Set(e.action.to_owned()),
        target_type: Set(e.target_type.map(str::to_owned)),
        target_id: Set(e.target_id),
        ip: Set(e.ip),
        request_id: Set(e.request_id),
        details: Set(e.details),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Audits what `principal` did in the request `meta` describes: `action`
/// on the `target_type` object `target_id` (None when it has no id, as a
/// prompt, which its name in `details` tells).
pub async fn audit_principal(
    db: &impl ConnectionTrait,
    principal: &super::auth::Principal,
    meta: &super::auth::RequestMeta,
    action: &str,
    target_type: &str,
    target_id: Option<uuid::Uuid>,
    details: Value,
) -> Result<(), DbErr> {
    audit(
        db,
        AuditEntry {
            tenant_id: principal.tenant_id,
            actor_type: principal.actor.kind(),
            actor_id: Some(principal.actor.id()),
            action,
            target_type: Some(target_type),
            target_id,
            ip: meta.ip.clone(),
            request_id: meta.request_id.clone(),
            details,
        },
    )
    .await
}

pub async fn list_audit(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    before: Option<i64>,
    action: Option<&str>,
    limit: u64,
) -> Result<Vec<audit::Model>, DbErr> {
    let mut q = audit::Entity::find().filter(audit::Column::TenantId.eq(tenant_id));
    if let Some(b) = before {
        q = q.filter(audit::Column::Id.lt(b));
    }
    if let Some(a) = action {
        q = q.filter(audit::Column::Action.eq(a));
    }
    q.order_by_desc(audit::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Whether a principal resolved earlier is still valid: its session still
/// exists, is not expired or idle, and its user is active; or its API key is
/// neither revoked nor expired. Long-lived responses (event streams) check
/// this periodically and end when it turns false.
pub async fn principal_is_live(
    db: &impl ConnectionTrait,
    p: &super::auth::Principal,
    now: DateTime<Utc>,
    idle_minutes: u64,
) -> Result<bool, DbErr> {
    match (p.actor, p.session) {
        (super::auth::Actor::User(uid), Some(sid)) => {
            let Some(s) = session::Entity::find_by_id(sid)
                .filter(session::Column::TenantId.eq(p.tenant_id))
                .one(db)
                .await?
            else {
                return Ok(false);
            };
            if s.expires_at <= now || s.last_seen_at + Duration::minutes(idle_minutes as i64) <= now
            {
                return Ok(false);
            }
            Ok(user::Entity::find_by_id(uid)
                .filter(user::Column::TenantId.eq(p.tenant_id))
                .filter(user::Column::Active.eq(true))
                .one(db)
                .await?
                .is_some_and(|u| u.role == p.role))
        }
        (super::auth::Actor::ApiKey(kid), _) => Ok(api_key::Entity::find_by_id(kid)
            .filter(api_key::Column::TenantId.eq(p.tenant_id))
            .one(db)
            .await?
            .is_some_and(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now))),
        (super::auth::Actor::User(_), None) => Ok(false),
    }
}
