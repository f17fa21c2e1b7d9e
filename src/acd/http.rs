//! Routing over HTTP: agents' presence and answers, putting interactions in
//! queues, "why did this interaction go to that agent", and the live view.

use actix_web::{HttpResponse, get, post, put, web};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalog::agent;
use super::engine::{AgentSnapshot, Position, Presence, QueueSnapshot};
use super::service::{AcdError, decision};
use crate::error::{ApiError, ApiResult, Validator};
use crate::http::extract::{Json, Path};
use crate::iam::auth::{Auth, Principal};
use crate::iam::{Role, Staff, Supervisors};
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::state::AppState;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(desk)
        .service(set_presence)
        .service(end_wrap_up)
        .service(route)
        .service(request_callback)
        .service(accept)
        .service(reject)
        .service(hang_up)
        .service(routing_of)
        .service(live)
        .service(super::metrics::routing_metrics)
        .service(super::metrics::routing_stream);
}

fn actor(p: &Principal) -> Option<String> {
    Some(format!("{}:{}", p.actor.kind(), p.actor.id()))
}

/// The agent `id`, if the caller may act for them: their own user, or a
/// supervisor or admin (who may force an agent's presence).
async fn agent_for(
    state: &AppState,
    p: &Principal,
    id: AgentId,
    supervisors_too: bool,
) -> ApiResult<agent::Model> {
    let a = agent::Entity::find_by_id(id)
        .filter(agent::Column::TenantId.eq(p.tenant_id))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let own = p.user_id() == Some(a.user_id);
    let boss = supervisors_too && matches!(p.role, Role::Admin | Role::Supervisor);
    if own || boss {
        Ok(a)
    } else {
        Err(AcdError::NotAnAgent.into())
    }
}

/// 404 unless the interaction is the caller's tenant's.
async fn exists(state: &AppState, p: &Principal, id: InteractionId) -> ApiResult<()> {
    crate::interactions::service::find(&state.db.conn, p.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("interaction"))?;
    Ok(())
}

/// The caller's own agent.
async fn my_agent(state: &AppState, p: &Principal) -> ApiResult<agent::Model> {
    let user = p.user_id().ok_or(AcdError::NotAnAgent)?;
    Ok(agent::Entity::find()
        .filter(agent::Column::TenantId.eq(p.tenant_id))
        .filter(agent::Column::UserId.eq(user))
        .one(&state.db.conn)
        .await?
        .ok_or(AcdError::NotAnAgent)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceName {
    Available,
    Away,
    Offline,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    pub presence: PresenceName,
    /// Why away (a reason code such as `break`, `lunch`, `training`).
    pub reason: Option<String>,
}

/// Set an agent's presence: agents their own, supervisors and admins anyone's
/// (forcing it). Going away or offline takes back the agent's offers (the
/// interactions keep their places); calls in progress carry on.
#[utoipa::path(tag = "routing", request_body = PresenceRequest, responses((status = 200, body = AgentStateView), (status = 404, body = crate::error::ErrorBody)))]
#[put("/agents/{id}/presence")]
async fn set_presence(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: Path<AgentId>,
    body: Json<PresenceRequest>,
) -> ApiResult<web::Json<AgentStateView>> {
    let b = body.0;
    let mut v = Validator::new();
    if let Some(r) = &b.reason {
        v.length("reason", r, 1, 64);
        if !r
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            v.add("reason", "letters, digits, '_' and '-' only (e.g. lunch)");
        }
    }
    if b.presence != PresenceName::Away && b.reason.is_some() {
        v.add("reason", "only for away");
    }
    v.finish()?;
    let a = agent_for(&state, &auth, *id, true).await?;
    let p = match b.presence {
        PresenceName::Available => Presence::Available,
        PresenceName::Offline => Presence::Offline,
        PresenceName::Away => Presence::Away {
            reason: b.reason.unwrap_or_else(|| "away".into()),
        },
    };
    state
        .acd
        .set_presence(auth.tenant_id, a.id, p, actor(&auth))
        .await?;
    snapshot(&state, &auth, a.id).await
}

async fn snapshot(
    state: &AppState,
    p: &Principal,
    agent: AgentId,
) -> ApiResult<web::Json<AgentStateView>> {
    let s = state
        .acd
        .read(p.tenant_id, |e| e.agent_snapshot(agent))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(web::Json(AgentStateView { agent: s }))
}

/// An agent as the router sees them: presence, status, capacity and load,
/// offers, connected and wrap-up work, and the queues they serve.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentStateView {
    #[schema(value_type = Object)]
    pub agent: AgentSnapshot,
}

/// End the agent's wrap-up work (their own; supervisors and admins anyone's).
#[utoipa::path(tag = "routing", responses((status = 200, body = AgentStateView), (status = 409, body = crate::error::ErrorBody)))]
#[post("/agents/{id}/wrap-up/end")]
async fn end_wrap_up(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: Path<AgentId>,
) -> ApiResult<web::Json<AgentStateView>> {
    let a = agent_for(&state, &auth, *id, true).await?;
    state
        .acd
        .end_wrap_up(auth.tenant_id, a.id, actor(&auth))
        .await?;
    snapshot(&state, &auth, a.id).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    pub queue_id: QueueId,
    /// Higher is answered first within the queue (default 0).
    #[serde(default)]
    pub priority: i32,
    /// The customer waits for a call back, keeping their place.
    #[serde(default)]
    pub callback: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    /// The place in the queue (and estimated wait), unless an agent was
    /// offered it at once.
    #[schema(value_type = Option<Object>)]
    pub position: Option<Position>,
}

/// Put an interaction in a queue. It is offered at once if an eligible
/// agent is free; otherwise it waits at its place (see `position`).
#[utoipa::path(tag = "routing", request_body = RouteRequest, responses((status = 200, body = RouteView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/interactions/{id}/route")]
async fn route(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    id: Path<InteractionId>,
    body: Json<RouteRequest>,
) -> ApiResult<web::Json<RouteView>> {
    let b = body.0;
    if !(-1000..=1000).contains(&b.priority) {
        return Err(ApiError::field(
            "priority",
            "must be between -1000 and 1000",
        ));
    }
    let position = state
        .acd
        .route(
            auth.tenant_id,
            *id,
            b.queue_id,
            b.priority,
            b.callback,
            actor(&auth),
        )
        .await?;
    Ok(web::Json(RouteView { position }))
}

/// The waiting caller asked to be called back (an IVR option, say): the
/// interaction keeps its place in the queue and no longer overflows for
/// waiting; the agent it reaches sees `callback` and calls the customer.
#[utoipa::path(tag = "routing", responses((status = 200, body = RouteView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/interactions/{id}/callback")]
async fn request_callback(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    id: Path<InteractionId>,
) -> ApiResult<web::Json<RouteView>> {
    exists(&state, &auth, *id).await?;
    let position = state
        .acd
        .to_callback(auth.tenant_id, *id, actor(&auth))
        .await?;
    Ok(web::Json(RouteView { position }))
}

/// Answer an offer (the agent it is offered to).
#[utoipa::path(tag = "routing", responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
#[post("/interactions/{id}/accept")]
async fn accept(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    exists(&state, &auth, *id).await?;
    let a = my_agent(&state, &auth).await?;
    state
        .acd
        .accept(auth.tenant_id, a.id, *id, actor(&auth))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Decline an offer: it goes back to its place, and is not offered to this
/// agent again.
#[utoipa::path(tag = "routing", responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
#[post("/interactions/{id}/reject")]
async fn reject(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    exists(&state, &auth, *id).await?;
    let a = my_agent(&state, &auth).await?;
    state
        .acd
        .reject(auth.tenant_id, a.id, *id, actor(&auth))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The conversation ended (or the customer left before an agent answered):
/// connected interactions go to wrap-up, waiting ones are abandoned.
#[utoipa::path(tag = "routing", responses((status = 204), (status = 409, body = crate::error::ErrorBody)))]
#[post("/interactions/{id}/hang-up")]
async fn hang_up(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let i = crate::interactions::service::find(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("interaction"))?;
    if auth.role == Role::Agent {
        // Agents end their own conversations only.
        let a = my_agent(&state, &auth).await?;
        if i.agent_id != Some(a.id) {
            return Err(ApiError::not_found("interaction"));
        }
    }
    state.acd.hang_up(auth.tenant_id, *id, actor(&auth)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingDecisionView {
    pub id: i64,
    pub queue_id: QueueId,
    /// Who it was offered to (several: ring-all).
    #[schema(value_type = Vec<String>)]
    pub agents: serde_json::Value,
    pub decided_at: chrono::DateTime<chrono::Utc>,
    /// The whole decision: trigger, escalation step, skills in force,
    /// strategy, candidates with their scores, winners.
    #[schema(value_type = Object)]
    pub decision: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingView {
    pub interaction_id: InteractionId,
    /// Oldest first.
    pub decisions: Vec<RoutingDecisionView>,
    /// Where it is now, if the engine is routing it.
    #[schema(value_type = Option<Object>)]
    pub now: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub position: Option<Position>,
}

/// Why an interaction went where it went: every routing decision made for
/// it (candidates, scores, rule step, winner), and where it is now.
#[utoipa::path(tag = "routing", responses((status = 200, body = RoutingView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/interactions/{id}/routing")]
async fn routing_of(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    id: Path<InteractionId>,
) -> ApiResult<web::Json<RoutingView>> {
    exists(&state, &auth, *id).await?;
    let rows = decision::Entity::find()
        .filter(decision::Column::TenantId.eq(auth.tenant_id))
        .filter(decision::Column::InteractionId.eq(*id))
        .order_by_asc(decision::Column::Id)
        .limit(500)
        .all(&state.db.conn)
        .await?;
    let (now, position) = state
        .acd
        .read(auth.tenant_id, |e| {
            (
                e.interaction_state(*id)
                    .map(|s| serde_json::to_value(s).expect("serialises")),
                e.position(*id),
            )
        })
        .await?;
    Ok(web::Json(RoutingView {
        interaction_id: *id,
        decisions: rows
            .into_iter()
            .map(|d| RoutingDecisionView {
                id: d.id,
                queue_id: d.queue_id,
                agents: d.agents,
                decided_at: d.decided_at,
                decision: d.decision,
            })
            .collect(),
        now,
        position,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveView {
    #[schema(value_type = Vec<Object>)]
    pub queues: Vec<QueueSnapshot>,
    #[schema(value_type = Vec<Object>)]
    pub agents: Vec<AgentSnapshot>,
}

/// Every queue and agent as the router sees them now: waiting, offered,
/// service level, answer and handle times; presence, status and load.
#[utoipa::path(tag = "routing", responses((status = 200, body = LiveView)))]
#[get("/routing/live")]
async fn live(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
) -> ApiResult<web::Json<LiveView>> {
    let queues: Vec<QueueId> = super::catalog::queue::Entity::find()
        .filter(super::catalog::queue::Column::TenantId.eq(auth.tenant_id))
        .all(&state.db.conn)
        .await?
        .into_iter()
        .map(|q| q.id)
        .collect();
    let agents: Vec<AgentId> = agent::Entity::find()
        .filter(agent::Column::TenantId.eq(auth.tenant_id))
        .all(&state.db.conn)
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    let view = state
        .acd
        .read(auth.tenant_id, |e| LiveView {
            queues: queues.iter().filter_map(|q| e.queue_snapshot(*q)).collect(),
            agents: agents.iter().filter_map(|a| e.agent_snapshot(*a)).collect(),
        })
        .await?;
    Ok(web::Json(view))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeskItem {
    pub interaction_id: InteractionId,
    pub channel: String,
    pub queue_id: Option<QueueId>,
    pub queue_name: Option<String>,
    pub customer_address: Option<String>,
    pub subject: Option<String>,
    /// When it last changed state (offered, connected).
    pub since: chrono::DateTime<chrono::Utc>,
    /// Offers: when the offer stops ringing. Wrap-ups: when the wrap-up
    /// ends by itself (absent: when the agent ends it).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Offers: the customer asked to be called back (call them).
    pub callback: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeskView {
    pub agent: super::catalog::AgentView,
    /// `offline`, `available` or `away`.
    pub presence: String,
    pub reason: Option<String>,
    /// `offline`, `away`, `idle`, `busy` or `wrap_up`.
    pub status: String,
    /// Ringing this agent now: accept or reject.
    pub offers: Vec<DeskItem>,
    pub connected: Vec<DeskItem>,
    pub wrap_ups: Vec<DeskItem>,
    #[schema(value_type = Object)]
    pub capacity: serde_json::Value,
    /// Offered + connected + wrap-up, per channel.
    #[schema(value_type = Object)]
    pub load: serde_json::Value,
    pub consecutive_no_answers: u32,
}

/// The caller's own desk, as an agent: presence, what rings, what is in
/// hand, what is in wrap-up. 403 if the caller is not an agent.
#[utoipa::path(tag = "routing", responses((status = 200, body = DeskView), (status = 403, body = crate::error::ErrorBody)))]
#[get("/agents/me/desk")]
async fn desk(state: web::Data<AppState>, auth: Auth<Staff>) -> ApiResult<web::Json<DeskView>> {
    use crate::interactions::entity::interaction;
    let me = my_agent(&state, &auth).await?;
    let t = auth.tenant_id;
    let (snap, offers) = state
        .acd
        .read(t, |e| {
            let snap = e.agent_snapshot(me.id);
            let offers: Vec<(InteractionId, Option<super::engine::Millis>, bool)> = snap
                .as_ref()
                .map(|s| {
                    s.offers
                        .iter()
                        .map(|i| match e.interaction_state(*i) {
                            Some(super::engine::InteractionState::Offered {
                                expires_at,
                                callback,
                                ..
                            }) => (*i, Some(expires_at), callback),
                            _ => (*i, None, false),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (snap, offers)
        })
        .await?;
    let snap = snap.ok_or_else(|| ApiError::not_found("agent"))?;
    let wanted: Vec<InteractionId> = offers
        .iter()
        .map(|o| o.0)
        .chain(snap.connected.iter().copied())
        .chain(snap.wrap_ups.iter().map(|w| w.0))
        .collect();
    let rows: std::collections::HashMap<InteractionId, interaction::Model> = if wanted.is_empty() {
        Default::default()
    } else {
        interaction::Entity::find()
            .filter(interaction::Column::TenantId.eq(t))
            .filter(interaction::Column::Id.is_in(wanted))
            .all(&state.db.conn)
            .await?
            .into_iter()
            .map(|i| (i.id, i))
            .collect()
    };
    let queues: std::collections::HashMap<QueueId, String> = super::catalog::queue::Entity::find()
        .filter(super::catalog::queue::Column::TenantId.eq(t))
        .all(&state.db.conn)
        .await?
        .into_iter()
        .map(|q| (q.id, q.name))
        .collect();
    let item = |id: InteractionId, until: Option<super::engine::Millis>, callback: bool| {
        let row = rows.get(&id)?;
        Some(DeskItem {
            interaction_id: id,
            channel: row.channel.clone(),
            queue_id: row.queue_id,
            queue_name: row.queue_id.and_then(|q| queues.get(&q).cloned()),
            customer_address: row.customer_address.clone(),
            subject: row.subject.clone(),
            since: row.updated_at,
            until: until.map(super::service::time_of),
            callback,
        })
    };
    let (presence, reason) = match &snap.presence {
        Presence::Offline => ("offline", None),
        Presence::Available => ("available", None),
        Presence::Away { reason } => ("away", Some(reason.clone())),
    };
    let status = serde_json::to_value(&snap.status).expect("serialises")["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(web::Json(DeskView {
        offers: offers
            .iter()
            .filter_map(|(i, u, c)| item(*i, *u, *c))
            .collect(),
        connected: snap
            .connected
            .iter()
            .filter_map(|i| item(*i, None, false))
            .collect(),
        wrap_ups: snap
            .wrap_ups
            .iter()
            .filter_map(|(i, u)| item(*i, *u, false))
            .collect(),
        agent: super::catalog::agent_view(&state.db.conn, me).await?,
        presence: presence.to_owned(),
        reason,
        status,
        capacity: serde_json::to_value(snap.capacity).expect("serialises"),
        load: serde_json::to_value(snap.load).expect("serialises"),
        consecutive_no_answers: snap.consecutive_no_answers,
    }))
}
