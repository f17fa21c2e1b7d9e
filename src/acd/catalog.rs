//! Skills, queues and agents: the routing catalogue of a tenant.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ConnectionTrait, QueryOrder, QuerySelect};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{Page, PageParams};
use crate::iam::{Auth, Staff};
use crate::ids::{AgentId, QueueId, SkillId, TenantId};
use crate::interactions::domain::{TransferTarget, Transition};
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
        .service(get_skill)
        .service(list_queues)
        .service(get_queue)
        .service(list_agents)
        .service(get_agent);
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
}

async fn queue_view(db: &impl ConnectionTrait, q: queue::Model) -> Result<QueueView, DbErr> {
    let reqs = queue_skill::Entity::find()
        .filter(queue_skill::Column::TenantId.eq(q.tenant_id))
        .filter(queue_skill::Column::QueueId.eq(q.id))
        .all(db)
        .await?;
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
    })
}

async fn agent_view(db: &impl ConnectionTrait, a: agent::Model) -> Result<AgentView, DbErr> {
    let skills = agent_skill::Entity::find()
        .filter(agent_skill::Column::TenantId.eq(a.tenant_id))
        .filter(agent_skill::Column::AgentId.eq(a.id))
        .all(db)
        .await?;
    let user = crate::iam::entity::user::Entity::find_by_id(a.user_id)
        .filter(crate::iam::entity::user::Column::TenantId.eq(a.tenant_id))
        .one(db)
        .await?;
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
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(queue_view(&state.db.conn, r).await?);
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
    Ok(web::Json(queue_view(&state.db.conn, q).await?))
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
