//! Skills, queues and agents: the routing catalogue of a tenant.

use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use sea_orm::{ActiveModelTrait, PaginatorTrait, Set};

use super::service::{AgentRouting, QueueRouting};
use crate::error::{ApiError, ApiResult, Validator};
use crate::http::extract::{Page, PageParams};
use crate::iam::{Auth, Staff, Supervisors};
use crate::ids::{AgentId, QueueId, SkillId, TenantId};
use crate::interactions::domain::{Channel, TransferTarget, Transition};
use crate::state::AppState;

pub mod skill {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "skills")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: SkillId,
        pub tenant_id: TenantId,
        pub name: String,
        pub description: String,
        pub created_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod queue {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "queues")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: QueueId,
        pub tenant_id: TenantId,
        pub name: String,
        pub description: String,
        pub strategy: String,
        pub priority: i32,
        pub sl_target_pct: i32,
        pub sl_threshold_secs: i32,
        pub config: Json,
        pub created_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod queue_skill {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "queue_skills")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub queue_id: QueueId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub skill_id: SkillId,
        pub tenant_id: TenantId,
        pub min_level: i32,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod agent {
    use super::*;
    use crate::ids::UserId;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: AgentId,
        pub tenant_id: TenantId,
        pub user_id: UserId,
        pub extension: Option<String>,
        /// Interactions the agent may handle at once per channel, e.g. `{"voice": 1, "chat": 3}`.
        pub capacity: Json,
        /// Routing settings (`crate::acd::service::AgentRouting`).
        pub routing: Json,
        pub created_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod agent_skill {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agent_skills")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub agent_id: AgentId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub skill_id: SkillId,
        pub tenant_id: TenantId,
        pub level: i32,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

/// Refuses transitions that name queues or agents the tenant does not have.
pub async fn check_refs(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    t: &Transition,
) -> ApiResult<()> {
    let (queue, agent) = match t {
        Transition::Enqueue { queue_id }
        | Transition::Transfer {
            target: TransferTarget::Queue { queue_id },
        } => (Some(*queue_id), None),
        Transition::Offer { agent_id }
        | Transition::Accept { agent_id }
        | Transition::Reject { agent_id }
        | Transition::OfferTimeout { agent_id }
        | Transition::Transfer {
            target: TransferTarget::Agent { agent_id },
        }
        | Transition::Connect {
            agent_id: Some(agent_id),
        } => (None, Some(*agent_id)),
        _ => (None, None),
    };
    if let Some(q) = queue {
        queue::Entity::find_by_id(q)
            .filter(queue::Column::TenantId.eq(tenant_id))
            .one(db)
            .await?
            .ok_or_else(|| ApiError::not_found("queue"))?;
    }
    if let Some(a) = agent {
        agent::Entity::find_by_id(a)
            .filter(agent::Column::TenantId.eq(tenant_id))
            .one(db)
            .await?
            .ok_or_else(|| ApiError::not_found("agent"))?;
    }
    Ok(())
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_skills)
        .service(create_skill)
        .service(get_skill)
        .service(update_skill)
        .service(delete_skill)
        .service(list_queues)
        .service(create_queue)
        .service(get_queue)
        .service(update_queue)
        .service(delete_queue)
        .service(list_agents)
        .service(create_agent)
        .service(get_agent)
        .service(update_agent)
        .service(delete_agent);
}

/// Queues with channels no agent could serve, as the tenant's router sees them.
async fn unservable_of(
    state: &AppState,
    t: TenantId,
) -> ApiResult<std::collections::HashMap<QueueId, Vec<Channel>>> {
    Ok(state
        .acd
        .read(t, |e| e.unservable_queues().into_iter().collect())
        .await?)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkillView {
    pub id: SkillId,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

impl From<skill::Model> for SkillView {
    fn from(s: skill::Model) -> Self {
        Self {
            id: s.id,
            name: s.name,
            description: s.description,
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkillRequirement {
    pub skill_id: SkillId,
    pub level: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    pub id: QueueId,
    pub name: String,
    pub description: String,
    pub strategy: String,
    pub priority: i32,
    /// Service-level target: `sl_target_pct` % answered within `sl_threshold_secs`.
    pub sl_target_pct: i32,
    pub sl_threshold_secs: i32,
    pub required_skills: Vec<SkillRequirement>,
    /// Channels, escalation, offer timeout, maximum wait and length, overflow.
    pub routing: QueueRouting,
    /// Channels the queue takes that no agent could ever serve with the
    /// skills and capacity configured now: they go to the overflow (or are
    /// refused when there is none) instead of waiting forever.
    pub unservable: Vec<Channel>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    pub id: AgentId,
    pub user_id: crate::ids::UserId,
    pub display_name: String,
    pub extension: Option<String>,
    #[schema(value_type = Object)]
    pub capacity: serde_json::Value,
    pub skills: Vec<SkillRequirement>,
    /// Calls blocking other channels, no-answer limit, wrap-up time.
    pub routing: AgentRouting,
    pub created_at: DateTime<Utc>,
}

async fn queue_view(
    db: &impl ConnectionTrait,
    q: queue::Model,
    unservable: Vec<Channel>,
) -> Result<QueueView, DbErr> {
    let reqs = queue_skill::Entity::find()
        .filter(queue_skill::Column::TenantId.eq(q.tenant_id))
        .filter(queue_skill::Column::QueueId.eq(q.id))
        .all(db)
        .await?;
    let routing = serde_json::from_value(q.config.clone()).unwrap_or_default();
    Ok(QueueView {
        id: q.id,
        name: q.name,
        description: q.description,
        strategy: q.strategy,
        priority: q.priority,
        sl_target_pct: q.sl_target_pct,
        sl_threshold_secs: q.sl_threshold_secs,
        required_skills: reqs
            .into_iter()
            .map(|r| SkillRequirement {
                skill_id: r.skill_id,
                level: r.min_level,
            })
            .collect(),
        routing,
        unservable,
        created_at: q.created_at,
    })
}

pub(crate) async fn agent_view(
    db: &impl ConnectionTrait,
    a: agent::Model,
) -> Result<AgentView, DbErr> {
    let skills = agent_skill::Entity::find()
        .filter(agent_skill::Column::TenantId.eq(a.tenant_id))
        .filter(agent_skill::Column::AgentId.eq(a.id))
        .all(db)
        .await?;
    let user = crate::iam::entity::user::Entity::find_by_id(a.user_id)
        .filter(crate::iam::entity::user::Column::TenantId.eq(a.tenant_id))
        .one(db)
        .await?;
    let routing = serde_json::from_value(a.routing.clone()).unwrap_or_default();
    Ok(AgentView {
        id: a.id,
        user_id: a.user_id,
        display_name: user.map(|u| u.display_name).unwrap_or_default(),
        extension: a.extension,
        capacity: a.capacity,
        skills: skills
            .into_iter()
            .map(|s| SkillRequirement {
                skill_id: s.skill_id,
                level: s.level,
            })
            .collect(),
        routing,
        created_at: a.created_at,
    })
}

/// The tenant's skills.
#[utoipa::path(tag = "routing", params(PageParams), responses((status = 200, body = Page<SkillView>)))]
#[get("/skills")]
async fn list_skills(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<SkillView>>> {
    let limit = page.limit()?;
    let mut q = skill::Entity::find().filter(skill::Column::TenantId.eq(auth.tenant_id));
    if let Some(c) = page.cursor::<SkillId>()? {
        q = q.filter(skill::Column::Id.gt(c));
    }
    let rows = q
        .order_by_asc(skill::Column::Id)
        .limit(limit + 1)
        .all(&state.db.conn)
        .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |s| s.id,
        SkillView::from,
    )))
}

/// One skill.
#[utoipa::path(tag = "routing", responses((status = 200, body = SkillView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/skills/{id}")]
async fn get_skill(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: crate::http::extract::Path<SkillId>,
) -> ApiResult<web::Json<SkillView>> {
    let s = skill::Entity::find_by_id(*id)
        .filter(skill::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("skill"))?;
    Ok(web::Json(s.into()))
}

/// The tenant's queues.
#[utoipa::path(tag = "routing", params(PageParams), responses((status = 200, body = Page<QueueView>)))]
#[get("/queues")]
async fn list_queues(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<QueueView>>> {
    let limit = page.limit()?;
    let mut q = queue::Entity::find().filter(queue::Column::TenantId.eq(auth.tenant_id));
    if let Some(c) = page.cursor::<QueueId>()? {
        q = q.filter(queue::Column::Id.gt(c));
    }
    let mut rows = q
        .order_by_asc(queue::Column::Id)
        .limit(limit + 1)
        .all(&state.db.conn)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let unservable = unservable_of(&state, auth.tenant_id).await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let u = unservable.get(&r.id).cloned().unwrap_or_default();
        items.push(queue_view(&state.db.conn, r, u).await?);
    }
    Ok(web::Json(Page::new(items, next)))
}

/// One queue.
#[utoipa::path(tag = "routing", responses((status = 200, body = QueueView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/queues/{id}")]
async fn get_queue(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: crate::http::extract::Path<QueueId>,
) -> ApiResult<web::Json<QueueView>> {
    let q = queue::Entity::find_by_id(*id)
        .filter(queue::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("queue"))?;
    let u = unservable_of(&state, auth.tenant_id)
        .await?
        .remove(&q.id)
        .unwrap_or_default();
    Ok(web::Json(queue_view(&state.db.conn, q, u).await?))
}

/// The tenant's agents.
#[utoipa::path(tag = "routing", params(PageParams), responses((status = 200, body = Page<AgentView>)))]
#[get("/agents")]
async fn list_agents(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<AgentView>>> {
    let limit = page.limit()?;
    let mut q = agent::Entity::find().filter(agent::Column::TenantId.eq(auth.tenant_id));
    if let Some(c) = page.cursor::<AgentId>()? {
        q = q.filter(agent::Column::Id.gt(c));
    }
    let mut rows = q
        .order_by_asc(agent::Column::Id)
        .limit(limit + 1)
        .all(&state.db.conn)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(agent_view(&state.db.conn, r).await?);
    }
    Ok(web::Json(Page::new(items, next)))
}

/// One agent.
#[utoipa::path(tag = "routing", responses((status = 200, body = AgentView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/agents/{id}")]
async fn get_agent(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: crate::http::extract::Path<AgentId>,
) -> ApiResult<web::Json<AgentView>> {
    let a = agent::Entity::find_by_id(*id)
        .filter(agent::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(web::Json(agent_view(&state.db.conn, a).await?))
}

// ---- changing the catalogue ---------------------------------------------------------
//
// A save is checked (shape, references, then the tenant's router, which
// refuses overflow cycles and reports channels nobody could serve), stored,
// then applied to the router, all under the service's configuration lock.

fn who(p: &crate::iam::auth::Principal) -> Option<String> {
    Some(format!("{}:{}", p.actor.kind(), p.actor.id()))
}

async fn audit(
    state: &AppState,
    p: &crate::iam::auth::Principal,
    meta: &crate::iam::auth::RequestMeta,
    action: &str,
    target: (&str, uuid::Uuid),
    details: serde_json::Value,
) -> ApiResult<()> {
    crate::iam::store::audit(
        &state.db.conn,
        crate::iam::store::AuditEntry {
            tenant_id: p.tenant_id,
            actor_type: p.actor.kind(),
            actor_id: Some(p.actor.id()),
            action,
            target_type: Some(target.0),
            target_id: Some(target.1),
            ip: meta.ip.clone(),
            request_id: meta.request_id.clone(),
            details,
        },
    )
    .await?;
    Ok(())
}

/// A skill and a level (1-5): what a queue requires, or what an agent has.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillLevel {
    pub skill_id: SkillId,
    /// 1 (some) to 5 (expert).
    pub level: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillRequest {
    /// 1-100 characters, unique in the workspace.
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    /// 1-100 characters, unique in the workspace.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `longest_idle`, `least_occupied`, `round_robin`, `best_proficiency` or `ring_all`.
    pub strategy: String,
    /// -1000 to 1000; agents serving several queues take the higher first.
    #[serde(default)]
    pub priority: i64,
    /// Service-level target: this % answered within `sl_threshold_secs` (default 80 % in 20 s).
    #[serde(default = "default_sl_pct")]
    pub sl_target_pct: i64,
    #[serde(default = "default_sl_secs")]
    pub sl_threshold_secs: i64,
    /// Skills an agent needs, at least at these levels (none: every agent).
    #[serde(default)]
    pub required_skills: Vec<SkillLevel>,
    #[serde(default)]
    pub routing: QueueRouting,
}

fn default_sl_pct() -> i64 {
    80
}
fn default_sl_secs() -> i64 {
    20
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRequest {
    /// The user who works as this agent (required when creating; cannot change).
    pub user_id: Option<crate::ids::UserId>,
    /// SIP extension, 1-32 characters.
    pub extension: Option<String>,
    #[serde(default)]
    pub skills: Vec<SkillLevel>,
    /// Interactions held at once per channel, 0-20 each.
    #[serde(default)]
    pub capacity: super::service::AgentCapacity,
    #[serde(default)]
    pub routing: AgentRouting,
}

/// Checks a list of skill levels: known skills of the tenant, levels 1-5,
/// each skill once.
fn check_levels(
    v: &mut Validator,
    path: &str,
    levels: &[SkillLevel],
    known: &std::collections::HashSet<SkillId>,
) {
    let mut seen = std::collections::HashSet::new();
    for (i, l) in levels.iter().enumerate() {
        if !known.contains(&l.skill_id) {
            v.add(format!("{path}[{i}].skill_id"), "no such skill");
        } else if !seen.insert(l.skill_id) {
            v.add(format!("{path}[{i}].skill_id"), "is listed twice");
        }
        if !(1..=5).contains(&l.level) {
            v.add(format!("{path}[{i}].level"), "must be between 1 and 5");
        }
    }
}

async fn known_skills(
    db: &impl ConnectionTrait,
    t: TenantId,
) -> Result<std::collections::HashSet<SkillId>, DbErr> {
    Ok(skill::Entity::find()
        .filter(skill::Column::TenantId.eq(t))
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect())
}

/// 409 if another skill of the tenant has this name.
async fn skill_name_free(
    db: &impl ConnectionTrait,
    t: TenantId,
    name: &str,
    except: Option<SkillId>,
) -> ApiResult<()> {
    let other = skill::Entity::find()
        .filter(skill::Column::TenantId.eq(t))
        .filter(skill::Column::Name.eq(name))
        .one(db)
        .await?;
    match other {
        Some(o) if Some(o.id) != except => {
            Err(ApiError::conflict(format!("a skill named {name:?} exists"))
                .with_details(serde_json::json!({ "field": "name" })))
        }
        _ => Ok(()),
    }
}

async fn find_skill(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: SkillId,
) -> ApiResult<skill::Model> {
    skill::Entity::find_by_id(id)
        .filter(skill::Column::TenantId.eq(t))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("skill"))
}

/// Add a skill.
#[utoipa::path(tag = "routing", request_body = SkillRequest, responses((status = 201, body = SkillView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/skills")]
async fn create_skill(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    body: crate::http::extract::Json<SkillRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let name = b.name.trim().to_owned();
    let mut v = Validator::new();
    v.length("name", &name, 1, 100);
    v.length("description", &b.description, 0, 1000);
    v.finish()?;
    let t = auth.tenant_id;
    let _g = state.acd.config_guard().await;
    skill_name_free(&state.db.conn, t, &name, None).await?;
    let m = skill::ActiveModel {
        id: Set(SkillId::new()),
        tenant_id: Set(t),
        name: Set(name),
        description: Set(b.description),
        created_at: Set(Utc::now()),
    }
    .insert(&state.db.conn)
    .await?;
    let id = m.id;
    state
        .acd
        .apply_config(t, who(&auth), move |e, _| {
            e.upsert_skill(id);
            Ok(Vec::new())
        })
        .await;
    audit(
        &state,
        &auth,
        &meta,
        "skill.created",
        ("skill", id.0),
        serde_json::json!({ "name": m.name }),
    )
    .await?;
    Ok(HttpResponse::Created().json(SkillView::from(m)))
}

/// Rename a skill or change its description.
#[utoipa::path(tag = "routing", request_body = SkillRequest, responses((status = 200, body = SkillView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[put("/skills/{id}")]
async fn update_skill(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<SkillId>,
    body: crate::http::extract::Json<SkillRequest>,
) -> ApiResult<web::Json<SkillView>> {
    let b = body.0;
    let t = auth.tenant_id;
    let existing = find_skill(&state.db.conn, t, *id).await?;
    let name = b.name.trim().to_owned();
    let mut v = Validator::new();
    v.length("name", &name, 1, 100);
    v.length("description", &b.description, 0, 1000);
    v.finish()?;
    let _g = state.acd.config_guard().await;
    skill_name_free(&state.db.conn, t, &name, Some(existing.id)).await?;
    let mut m: skill::ActiveModel = existing.into();
    m.name = Set(name);
    m.description = Set(b.description);
    let m = m.update(&state.db.conn).await?;
    audit(
        &state,
        &auth,
        &meta,
        "skill.updated",
        ("skill", m.id.0),
        serde_json::json!({ "name": m.name }),
    )
    .await?;
    Ok(web::Json(m.into()))
}

/// Delete a skill no queue and no agent uses (409 otherwise).
#[utoipa::path(tag = "routing", responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[delete("/skills/{id}")]
async fn delete_skill(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<SkillId>,
) -> ApiResult<HttpResponse> {
    let t = auth.tenant_id;
    let s = find_skill(&state.db.conn, t, *id).await?;
    let _g = state.acd.config_guard().await;
    let used_by_queue = queue_skill::Entity::find()
        .filter(queue_skill::Column::TenantId.eq(t))
        .filter(queue_skill::Column::SkillId.eq(s.id))
        .count(&state.db.conn)
        .await?;
    let used_by_agent = agent_skill::Entity::find()
        .filter(agent_skill::Column::TenantId.eq(t))
        .filter(agent_skill::Column::SkillId.eq(s.id))
        .count(&state.db.conn)
        .await?;
    if used_by_queue + used_by_agent > 0 {
        return Err(ApiError::conflict(format!(
            "the skill {:?} is in use by {used_by_queue} queue(s) and {used_by_agent} agent(s); take it off them first",
            s.name
        )));
    }
    // The router also knows escalation steps and interactions asking for it.
    let sid = s.id;
    state
        .acd
        .try_config(t, who(&auth), move |e, _| e.remove_skill(sid).map(|()| Vec::new()))
        .await
        .map_err(|e| match e {
            super::service::AcdError::Config(c) => ApiError::conflict(format!(
                "the skill {:?} is in use ({c}); take it off escalation steps and waiting interactions first",
                s.name
            )),
            e => e.into(),
        })?;
    if let Err(e) = skill::Entity::delete_by_id(sid)
        .filter(skill::Column::TenantId.eq(t))
        .exec(&state.db.conn)
        .await
    {
        state.acd.reload(t);
        return Err(e.into());
    }
    audit(
        &state,
        &auth,
        &meta,
        "skill.deleted",
        ("skill", sid.0),
        serde_json::json!({ "name": s.name }),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The router's refusal of a queue, as a field error.
fn queue_refusal(
    e: super::engine::ConfigError,
    b: &QueueRequest,
    names: &std::collections::HashMap<QueueId, String>,
) -> ApiError {
    use super::engine::ConfigError as C;
    let name = |q: &QueueId| names.get(q).cloned().unwrap_or_else(|| b.name.clone());
    let skill_path = |s: &SkillId| {
        b.required_skills
            .iter()
            .position(|r| r.skill_id == *s)
            .map(|i| format!("required_skills[{i}].skill_id"))
            .unwrap_or_else(|| "routing.escalation".into())
    };
    match &e {
        C::UnknownSkill(s) | C::DuplicateSkill(s) | C::LevelOutOfRange { skill: s, .. } => {
            ApiError::field(skill_path(s), e.to_string())
        }
        C::UnknownQueue(_) => ApiError::field("routing.overflow.queue", "no such queue"),
        C::UnknownStrategy(_) => ApiError::field("strategy", e.to_string()),
        C::OverflowCycle(ids) => {
            let path: Vec<String> = ids.iter().map(name).collect();
            ApiError::field(
                "routing.overflow",
                format!("overflow rules would form a cycle: {}", path.join(" → ")),
            )
        }
        C::OverflowChannels { to, .. } => ApiError::field(
            "routing.overflow",
            format!(
                "{:?} does not take every channel this queue takes",
                name(to)
            ),
        ),
        C::MissingOverflow => ApiError::field(
            "routing.overflow",
            "a maximum wait or length needs an overflow target",
        ),
        C::BadEscalation { step, problem } => ApiError::field(
            format!("routing.escalation[{}]", step.saturating_sub(1)),
            *problem,
        ),
        C::Invalid { field, problem } => {
            let path = match *field {
                "offer_timeout_ms" => "routing.offer_timeout_secs",
                "ring_all_max" => "routing.ring_all_max",
                "service_level.target_pct" => "sl_target_pct",
                "overflow" => "routing.overflow.flow",
                other => other,
            };
            ApiError::field(path, *problem)
        }
        _ => ApiError::conflict(e.to_string()),
    }
}

fn check_queue_request(
    v: &mut Validator,
    b: &QueueRequest,
    known: &std::collections::HashSet<SkillId>,
    queues: &std::collections::HashMap<QueueId, String>,
) {
    v.length("name", b.name.trim(), 1, 100);
    v.length("description", &b.description, 0, 1000);
    if b.strategy.parse::<super::engine::Strategy>().is_err() {
        v.add(
            "strategy",
            "must be one of longest_idle, least_occupied, round_robin, best_proficiency, ring_all",
        );
    }
    if !(-1000..=1000).contains(&b.priority) {
        v.add("priority", "must be between -1000 and 1000");
    }
    if !(1..=100).contains(&b.sl_target_pct) {
        v.add("sl_target_pct", "must be between 1 and 100");
    }
    if !(1..=3600).contains(&b.sl_threshold_secs) {
        v.add("sl_threshold_secs", "must be between 1 and 3600 seconds");
    }
    check_levels(v, "required_skills", &b.required_skills, known);
    let r = &b.routing;
    if r.escalation.len() > 10 {
        v.add("routing.escalation", "at most 10 steps");
    }
    for (i, step) in r.escalation.iter().enumerate() {
        if !(1..=86_400).contains(&step.after_secs) {
            v.add(
                format!("routing.escalation[{i}].after_secs"),
                "must be between 1 and 86400 seconds",
            );
        }
        for (s, l) in &step.skills {
            if !known.contains(s) {
                v.add(
                    format!("routing.escalation[{i}].skills.{s}"),
                    "no such skill",
                );
            }
            if !(1..=5).contains(l) {
                v.add(
                    format!("routing.escalation[{i}].skills.{s}"),
                    "level must be between 1 and 5",
                );
            }
        }
    }
    if let Some(t) = r.offer_timeout_secs
        && !(1..=600).contains(&t)
    {
        v.add(
            "routing.offer_timeout_secs",
            "must be between 1 and 600 seconds",
        );
    }
    if let Some(t) = r.max_wait_secs
        && !(1..=86_400).contains(&t)
    {
        v.add(
            "routing.max_wait_secs",
            "must be between 1 and 86400 seconds",
        );
    }
    if let Some(n) = r.max_length
        && !(1..=100_000).contains(&n)
    {
        v.add("routing.max_length", "must be between 1 and 100000");
    }
    if let Some(n) = r.ring_all_max
        && !(1..=50).contains(&n)
    {
        v.add("routing.ring_all_max", "must be between 1 and 50");
    }
    match &r.overflow {
        Some(super::service::OverflowSetting::Queue(q)) if !queues.contains_key(q) => {
            v.add("routing.overflow.queue", "no such queue");
        }
        Some(super::service::OverflowSetting::Flow(f)) => {
            v.length("routing.overflow.flow", f.trim(), 1, 100);
        }
        _ => {}
    }
}

/// Checks, stores and applies a queue (new when `existing` is `None`).
async fn save_queue(
    state: &AppState,
    auth: &crate::iam::auth::Principal,
    meta: &crate::iam::auth::RequestMeta,
    existing: Option<queue::Model>,
    b: QueueRequest,
) -> ApiResult<QueueView> {
    let t = auth.tenant_id;
    let db = &state.db.conn;
    let _g = state.acd.config_guard().await;
    let known = known_skills(db, t).await?;
    let names: std::collections::HashMap<QueueId, String> = queue::Entity::find()
        .filter(queue::Column::TenantId.eq(t))
        .all(db)
        .await?
        .into_iter()
        .map(|q| (q.id, q.name))
        .collect();
    let mut v = Validator::new();
    check_queue_request(&mut v, &b, &known, &names);
    v.finish()?;
    let name = b.name.trim().to_owned();
    let id = existing.as_ref().map_or_else(QueueId::new, |q| q.id);
    if names.iter().any(|(q, n)| *n == name && *q != id) {
        return Err(ApiError::conflict(format!("a queue named {name:?} exists"))
            .with_details(serde_json::json!({ "field": "name" })));
    }
    let model = queue::Model {
        id,
        tenant_id: t,
        name,
        description: b.description.clone(),
        strategy: b
            .strategy
            .parse::<super::engine::Strategy>()
            .expect("checked")
            .as_str()
            .to_owned(),
        priority: b.priority as i32,
        sl_target_pct: b.sl_target_pct as i32,
        sl_threshold_secs: b.sl_threshold_secs as i32,
        config: serde_json::to_value(&b.routing).expect("serialises"),
        created_at: existing.as_ref().map_or_else(Utc::now, |q| q.created_at),
    };
    let skills: Vec<queue_skill::Model> = b
        .required_skills
        .iter()
        .map(|r| queue_skill::Model {
            queue_id: id,
            skill_id: r.skill_id,
            tenant_id: t,
            min_level: r.level as i32,
        })
        .collect();
    let cfg = super::service::queue_config(&model, &skills)?;
    let mut names = names;
    names.insert(id, model.name.clone());
    let unservable = state
        .acd
        .read(t, |e| e.check_queue(&cfg))
        .await?
        .map_err(|e| queue_refusal(e, &b, &names))?;
    let txn = crate::db::begin_write(db).await?;
    // Every column written, on insert and on update alike.
    let am = queue::ActiveModel::from(model.clone()).reset_all();
    if existing.is_some() {
        am.update(&txn).await?;
    } else {
        am.insert(&txn).await?;
    }
    queue_skill::Entity::delete_many()
        .filter(queue_skill::Column::TenantId.eq(t))
        .filter(queue_skill::Column::QueueId.eq(id))
        .exec(&txn)
        .await?;
    if !skills.is_empty() {
        queue_skill::Entity::insert_many(skills.into_iter().map(queue_skill::ActiveModel::from))
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    state
        .acd
        .apply_config(t, who(auth), move |e, now| e.upsert_queue(now, cfg))
        .await;
    let action = if existing.is_some() {
        "queue.updated"
    } else {
        "queue.created"
    };
    audit(
        state,
        auth,
        meta,
        action,
        ("queue", id.0),
        serde_json::json!({ "name": model.name, "unservable": unservable }),
    )
    .await?;
    if !unservable.is_empty() {
        tracing::warn!(tenant_id = %t, queue_id = %id, ?unservable, "saved a queue no agent can serve on some channels");
    }
    Ok(queue_view(db, model, unservable).await?)
}

/// Add a queue. The answer's `unservable` lists the channels no agent
/// could serve as configured now (saved all the same: agents may follow).
#[utoipa::path(tag = "routing", request_body = QueueRequest, responses((status = 201, body = QueueView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/queues")]
async fn create_queue(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    body: crate::http::extract::Json<QueueRequest>,
) -> ApiResult<HttpResponse> {
    let view = save_queue(&state, &auth, &meta, None, body.0).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Replace a queue's settings. Interactions waiting keep their place.
#[utoipa::path(tag = "routing", request_body = QueueRequest, responses((status = 200, body = QueueView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[put("/queues/{id}")]
async fn update_queue(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<QueueId>,
    body: crate::http::extract::Json<QueueRequest>,
) -> ApiResult<web::Json<QueueView>> {
    let q = queue::Entity::find_by_id(*id)
        .filter(queue::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("queue"))?;
    Ok(web::Json(
        save_queue(&state, &auth, &meta, Some(q), body.0).await?,
    ))
}

/// Delete a queue: refused (409) while interactions wait in it and it has
/// no overflow, or while another queue overflows to it.
#[utoipa::path(tag = "routing", responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[delete("/queues/{id}")]
async fn delete_queue(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<QueueId>,
) -> ApiResult<HttpResponse> {
    let t = auth.tenant_id;
    let db = &state.db.conn;
    let q = queue::Entity::find_by_id(*id)
        .filter(queue::Column::TenantId.eq(t))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("queue"))?;
    let _g = state.acd.config_guard().await;
    let names: std::collections::HashMap<QueueId, String> = queue::Entity::find()
        .filter(queue::Column::TenantId.eq(t))
        .all(db)
        .await?
        .into_iter()
        .map(|q| (q.id, q.name))
        .collect();
    let qid = q.id;
    state
        .acd
        .try_config(t, who(&auth), move |e, now| e.remove_queue(now, qid))
        .await
        .map_err(|e| {
            use super::engine::ConfigError as C;
            match e {
                super::service::AcdError::Config(C::QueueInUse { by, .. }) => {
                    ApiError::conflict(format!(
                        "the queue {:?} overflows to this one; change its overflow first",
                        names.get(&by).cloned().unwrap_or_default()
                    ))
                }
                super::service::AcdError::Config(C::QueueNotEmpty(_)) => ApiError::conflict(
                    "interactions are waiting in this queue and it has no overflow to send them to",
                ),
                e => e.into(),
            }
        })?;
    let r = async {
        let txn = crate::db::begin_write(db).await?;
        queue_skill::Entity::delete_many()
            .filter(queue_skill::Column::TenantId.eq(t))
            .filter(queue_skill::Column::QueueId.eq(qid))
            .exec(&txn)
            .await?;
        queue::Entity::delete_by_id(qid)
            .filter(queue::Column::TenantId.eq(t))
            .exec(&txn)
            .await?;
        txn.commit().await
    }
    .await;
    if let Err(e) = r {
        state.acd.reload(t);
        return Err(e.into());
    }
    audit(
        &state,
        &auth,
        &meta,
        "queue.deleted",
        ("queue", qid.0),
        serde_json::json!({ "name": q.name }),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

fn check_agent_request(
    v: &mut Validator,
    b: &AgentRequest,
    known: &std::collections::HashSet<SkillId>,
) {
    if let Some(x) = &b.extension {
        v.length("extension", x, 1, 32);
        if x.chars().any(|c| c.is_control() || c.is_whitespace()) {
            v.add("extension", "must not contain spaces or control characters");
        }
    }
    check_levels(v, "skills", &b.skills, known);
    let c = &b.capacity;
    for (ch, n) in [
        ("voice", c.voice),
        ("chat", c.chat),
        ("sms", c.sms),
        ("email", c.email),
    ] {
        if n > 20 {
            v.add(format!("capacity.{ch}"), "must be between 0 and 20");
        }
    }
    if c.voice > 1 {
        v.add(
            "capacity.voice",
            "an agent takes one call at a time (0 or 1)",
        );
    }
    if let Some(n) = b.routing.max_no_answers
        && !(1..=100).contains(&n)
    {
        v.add("routing.max_no_answers", "must be between 1 and 100");
    }
    if let Some(n) = b.routing.wrap_up_secs
        && n > 3600
    {
        v.add("routing.wrap_up_secs", "must be at most 3600 seconds");
    }
}

/// Checks, stores and applies an agent (new when `existing` is `None`).
async fn save_agent(
    state: &AppState,
    auth: &crate::iam::auth::Principal,
    meta: &crate::iam::auth::RequestMeta,
    existing: Option<agent::Model>,
    b: AgentRequest,
) -> ApiResult<AgentView> {
    use crate::iam::entity::user;
    let t = auth.tenant_id;
    let db = &state.db.conn;
    let _g = state.acd.config_guard().await;
    let known = known_skills(db, t).await?;
    let mut v = Validator::new();
    check_agent_request(&mut v, &b, &known);
    let user_id = match (&existing, b.user_id) {
        (Some(a), Some(u)) if a.user_id != u => {
            v.add(
                "user_id",
                "cannot change; delete the agent and add the other user",
            );
            a.user_id
        }
        (Some(a), _) => a.user_id,
        (None, Some(u)) => u,
        (None, None) => {
            v.add("user_id", "is required");
            crate::ids::UserId::new()
        }
    };
    v.finish()?;
    if existing.is_none() {
        user::Entity::find_by_id(user_id)
            .filter(user::Column::TenantId.eq(t))
            .one(db)
            .await?
            .ok_or_else(|| ApiError::field("user_id", "no such user"))?;
        let taken = agent::Entity::find()
            .filter(agent::Column::TenantId.eq(t))
            .filter(agent::Column::UserId.eq(user_id))
            .one(db)
            .await?;
        if taken.is_some() {
            return Err(ApiError::conflict("this user is an agent already")
                .with_details(serde_json::json!({ "field": "user_id" })));
        }
    }
    let id = existing.as_ref().map_or_else(AgentId::new, |a| a.id);
    let model = agent::Model {
        id,
        tenant_id: t,
        user_id,
        extension: b.extension.clone(),
        capacity: serde_json::to_value(b.capacity).expect("serialises"),
        routing: serde_json::to_value(&b.routing).expect("serialises"),
        created_at: existing.as_ref().map_or_else(Utc::now, |a| a.created_at),
    };
    let skills: Vec<agent_skill::Model> = b
        .skills
        .iter()
        .map(|s| agent_skill::Model {
            agent_id: id,
            skill_id: s.skill_id,
            tenant_id: t,
            level: s.level as i32,
        })
        .collect();
    let cfg = super::service::agent_config(&model, &skills)?;
    let txn = crate::db::begin_write(db).await?;
    let am = agent::ActiveModel::from(model.clone()).reset_all();
    if existing.is_some() {
        am.update(&txn).await?;
    } else {
        am.insert(&txn).await?;
    }
    agent_skill::Entity::delete_many()
        .filter(agent_skill::Column::TenantId.eq(t))
        .filter(agent_skill::Column::AgentId.eq(id))
        .exec(&txn)
        .await?;
    if !skills.is_empty() {
        agent_skill::Entity::insert_many(skills.into_iter().map(agent_skill::ActiveModel::from))
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    state
        .acd
        .apply_config(t, who(auth), move |e, now| e.upsert_agent(now, cfg))
        .await;
    let action = if existing.is_some() {
        "agent.updated"
    } else {
        "agent.created"
    };
    audit(
        state,
        auth,
        meta,
        action,
        ("agent", id.0),
        serde_json::json!({ "user_id": user_id }),
    )
    .await?;
    Ok(agent_view(db, model).await?)
}

/// Make a user an agent: skills, capacity per channel, routing settings.
/// The agent starts offline.
#[utoipa::path(tag = "routing", request_body = AgentRequest, responses((status = 201, body = AgentView), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/agents")]
async fn create_agent(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    body: crate::http::extract::Json<AgentRequest>,
) -> ApiResult<HttpResponse> {
    let view = save_agent(&state, &auth, &meta, None, body.0).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Replace an agent's skills, capacity and routing settings; what they
/// hold now stays with them.
#[utoipa::path(tag = "routing", request_body = AgentRequest, responses((status = 200, body = AgentView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[put("/agents/{id}")]
async fn update_agent(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<AgentId>,
    body: crate::http::extract::Json<AgentRequest>,
) -> ApiResult<web::Json<AgentView>> {
    let a = agent::Entity::find_by_id(*id)
        .filter(agent::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(web::Json(
        save_agent(&state, &auth, &meta, Some(a), body.0).await?,
    ))
}

/// Stop routing to an agent: refused (409) while they hold interactions
/// or wrap-up work; offers ringing them go back to their place.
#[utoipa::path(tag = "routing", responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[delete("/agents/{id}")]
async fn delete_agent(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    id: crate::http::extract::Path<AgentId>,
) -> ApiResult<HttpResponse> {
    let t = auth.tenant_id;
    let db = &state.db.conn;
    let a = agent::Entity::find_by_id(*id)
        .filter(agent::Column::TenantId.eq(t))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let _g = state.acd.config_guard().await;
    let aid = a.id;
    state
        .acd
        .try_config(t, who(&auth), move |e, now| e.remove_agent(now, aid))
        .await
        .map_err(|e| match e {
            super::service::AcdError::Config(super::engine::ConfigError::AgentBusy(_)) => {
                ApiError::conflict(
                    "the agent holds interactions or wrap-up work; try again when they are done",
                )
            }
            e => e.into(),
        })?;
    let r = async {
        let txn = crate::db::begin_write(db).await?;
        agent_skill::Entity::delete_many()
            .filter(agent_skill::Column::TenantId.eq(t))
            .filter(agent_skill::Column::AgentId.eq(aid))
            .exec(&txn)
            .await?;
        super::service::presence::Entity::delete_many()
            .filter(super::service::presence::Column::TenantId.eq(t))
            .filter(super::service::presence::Column::AgentId.eq(aid))
            .exec(&txn)
            .await?;
        agent::Entity::delete_by_id(aid)
            .filter(agent::Column::TenantId.eq(t))
            .exec(&txn)
            .await?;
        txn.commit().await
    }
    .await;
    if let Err(e) = r {
        state.acd.reload(t);
        return Err(e.into());
    }
    audit(
        &state,
        &auth,
        &meta,
        "agent.deleted",
        ("agent", aid.0),
        serde_json::json!({ "user_id": a.user_id }),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
