//! The routing service around the pure engine: one [`Engine`] per tenant,
//! built from the catalogue, the agents' presence and the waiting
//! interactions the first time the tenant routes anything (so a restart
//! picks up where the last run left off), driven by API calls and a timer,
//! and carrying out the engine's actions on the interaction spine (each
//! becomes an event on the interaction's timeline) and in the decision log.
//!
//! Each tenant's engine sits behind its own async mutex: a tenant's routing
//! is sequential (the engine's actions are carried out before the next
//! call), tenants route side by side.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::catalog::{agent, agent_skill, queue, queue_skill, skill};
use super::engine::{
    Action, AgentConfig, AgentSkill, Arrival, Capacity, Engine, EngineError, EscalationStep,
    Millis, OverflowTarget, Position, Presence, QueueConfig, RequeueReason, ServiceLevel, SkillReq,
    Strategy,
};
use crate::bus::Bus;
use crate::ids::{AgentId, InteractionId, QueueId, SkillId, TenantId};
use crate::interactions::domain::{Channel, CloseReason, State, Transition};
use crate::interactions::service::{self as spine, InteractionError};

/// The service's clock for the engine: Unix milliseconds.
pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis().max(0) as Millis
}

pub fn time_of(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_else(Utc::now)
}

#[derive(Debug, thiserror::Error)]
pub enum AcdError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Config(#[from] super::engine::ConfigError),
    #[error("the routing configuration stored for {what} is not valid: {problem}")]
    Stored { what: String, problem: String },
    #[error("you are not an agent of this workspace")]
    NotAnAgent,
    #[error("interaction not found")]
    NoInteraction,
    #[error(transparent)]
    Interaction(#[from] InteractionError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

// ---- stored settings ------------------------------------------------------------

/// A queue's routing settings beyond its catalogue columns (`queues.config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QueueRouting {
    /// Channels the queue takes; empty: all.
    pub channels: Vec<Channel>,
    /// Wider requirements as the wait grows.
    pub escalation: Vec<EscalationSetting>,
    /// How long an offer rings (default 15 s).
    pub offer_timeout_secs: Option<u64>,
    /// Waiting longer overflows (needs `overflow`).
    pub max_wait_secs: Option<u64>,
    /// An arrival that finds this many waiting overflows (needs `overflow`).
    pub max_length: Option<usize>,
    pub overflow: Option<OverflowSetting>,
    /// Ring-all: how many agents ring at once (default 8).
    pub ring_all_max: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationSetting {
    /// From this many seconds of waiting on.
    pub after_secs: u64,
    /// Skill id to minimum level (1-5), replacing the previous step's.
    #[schema(value_type = Object)]
    pub skills: BTreeMap<SkillId, u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OverflowSetting {
    Queue(QueueId),
    Flow(String),
}

/// Interactions an agent may hold at once per channel (`agents.capacity`,
/// e.g. `{"voice": 1, "chat": 3}`; a channel left out: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgentCapacity {
    pub voice: u8,
    pub chat: u8,
    pub sms: u8,
    pub email: u8,
}

/// An agent's routing settings beyond capacity and skills (`agents.routing`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgentRouting {
    /// While on a call, nothing of another channel is offered (default true).
    pub voice_blocks_other: Option<bool>,
    /// Unanswered offers in a row before the agent is set away (default 1).
    pub max_no_answers: Option<u32>,
    /// Wrap-up time after each interaction; absent: until the agent ends it.
    pub wrap_up_secs: Option<u64>,
}

fn stored(what: impl Into<String>, problem: impl std::fmt::Display) -> AcdError {
    AcdError::Stored {
        what: what.into(),
        problem: problem.to_string(),
    }
}

/// The engine's view of a queue row.
pub fn queue_config(
    q: &queue::Model,
    skills: &[queue_skill::Model],
) -> Result<QueueConfig, AcdError> {
    let what = || format!("queue {:?}", q.name);
    let strategy: Strategy = q.strategy.parse().map_err(|e| stored(what(), e))?;
    let r: QueueRouting = if q.config.is_null() {
        QueueRouting::default()
    } else {
        serde_json::from_value(q.config.clone()).map_err(|e| stored(what(), e))?
    };
    let mut c = QueueConfig::new(q.id, strategy);
    c.priority = q.priority;
    c.channels = r.channels;
    c.required = skills
        .iter()
        .map(|s| SkillReq {
            skill: s.skill_id,
            min_level: s.min_level.clamp(0, 255) as u8,
        })
        .collect();
    c.escalation = r
        .escalation
        .into_iter()
        .map(|e| EscalationStep {
            after_ms: e.after_secs.saturating_mul(1000),
            required: e
                .skills
                .into_iter()
                .map(|(skill, min_level)| SkillReq { skill, min_level })
                .collect(),
        })
        .collect();
    c.service_level = ServiceLevel {
        target_pct: q.sl_target_pct.clamp(0, 100) as u8,
        threshold_ms: (q.sl_threshold_secs.max(0) as u64) * 1000,
    };
    if let Some(t) = r.offer_timeout_secs {
        c.offer_timeout_ms = t.saturating_mul(1000);
    }
    c.max_wait_ms = r.max_wait_secs.map(|s| s.saturating_mul(1000));
    c.max_length = r.max_length;
    c.overflow = r.overflow.map(|o| match o {
        OverflowSetting::Queue(q) => OverflowTarget::Queue(q),
        OverflowSetting::Flow(f) => OverflowTarget::Flow(f),
    });
    if let Some(n) = r.ring_all_max {
        c.ring_all_max = n;
    }
    Ok(c)
}

/// The engine's view of an agent row.
pub fn agent_config(
    a: &agent::Model,
    skills: &[agent_skill::Model],
) -> Result<AgentConfig, AcdError> {
    let what = || format!("agent {}", a.id);
    let c: AgentCapacity =
        serde_json::from_value(a.capacity.clone()).map_err(|e| stored(what(), e))?;
    let capacity = Capacity {
        voice: c.voice,
        chat: c.chat,
        sms: c.sms,
        email: c.email,
    };
    let r: AgentRouting = if a.routing.is_null() {
        AgentRouting::default()
    } else {
        serde_json::from_value(a.routing.clone()).map_err(|e| stored(what(), e))?
    };
    let mut c = AgentConfig::new(
        a.id,
        skills
            .iter()
            .map(|s| AgentSkill {
                skill: s.skill_id,
                level: s.level.clamp(0, 255) as u8,
            })
            .collect(),
    );
    c.capacity = capacity;
    if let Some(b) = r.voice_blocks_other {
        c.voice_blocks_other = b;
    }
    if let Some(n) = r.max_no_answers {
        c.max_no_answers = n;
    }
    c.wrap_up_ms = r.wrap_up_secs.map(|s| s.saturating_mul(1000));
    Ok(c)
}

// ---- presence rows ------------------------------------------------------------------

pub mod presence {
    use sea_orm::entity::prelude::*;

    use crate::ids::{AgentId, TenantId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agent_presence")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub agent_id: AgentId,
        pub tenant_id: TenantId,
        pub presence: String,
        pub reason: Option<String>,
        pub since: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

pub mod decision {
    use sea_orm::entity::prelude::*;

    use crate::ids::{InteractionId, QueueId, TenantId};

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "acd_decisions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: TenantId,
        pub interaction_id: InteractionId,
        pub queue_id: QueueId,
        pub agents: Json,
        pub decision: Json,
        pub decided_at: DateTimeUtc,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

fn presence_of(row: &presence::Model) -> Presence {
    match row.presence.as_str() {
        "available" => Presence::Available,
        "away" => Presence::Away {
            reason: row.reason.clone().unwrap_or_default(),
        },
        _ => Presence::Offline,
    }
}

async fn store_presence(
    db: &DatabaseConnection,
    t: TenantId,
    agent: AgentId,
    p: &Presence,
) -> Result<(), DbErr> {
    let (name, reason) = match p {
        Presence::Offline => ("offline", None),
        Presence::Available => ("available", None),
        Presence::Away { reason } => ("away", Some(reason.clone())),
    };
    presence::Entity::insert(presence::ActiveModel {
        agent_id: Set(agent),
        tenant_id: Set(t),
        presence: Set(name.into()),
        reason: Set(reason),
        since: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::column(presence::Column::AgentId)
            .update_columns([
                presence::Column::Presence,
                presence::Column::Reason,
                presence::Column::Since,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

// ---- the service ----------------------------------------------------------------------

struct Tenant {
    engine: Engine,
    /// Who each offer rings. A single-agent offer is also on the spine
    /// (`offered`); a ring-all offer stays `queued` there until someone
    /// answers.
    offers: HashMap<InteractionId, Vec<AgentId>>,
}

pub struct Acd {
    db: DatabaseConnection,
    bus: Bus,
    /// Real-time counters per tenant: outside the engines, so a rebuild
    /// keeps them (see `super::metrics`).
    metrics: Arc<super::metrics::Store>,
    tenants: std::sync::Mutex<HashMap<TenantId, Arc<Mutex<Tenant>>>>,
    /// Woken when a tenant's next deadline may have moved earlier.
    wake: tokio::sync::Notify,
    /// Held across a configuration save (check on the engine, write, apply),
    /// so two saves cannot each pass a check the pair would fail (an
    /// overflow cycle made of two saves).
    config: Mutex<()>,
    /// Told of each action once it is carried out (the SIP side rings
    /// agents' phones from it); see [`Acd::on_action`].
    hook: std::sync::OnceLock<ActionHook>,
}

/// A listener for carried-out routing actions. It runs under the tenant's
/// lock, so it must only hand the action on (a channel), never call back
/// into `Acd`.
pub type ActionHook = Box<dyn Fn(TenantId, &Action) + Send + Sync>;

impl std::fmt::Debug for Acd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acd").finish_non_exhaustive()
    }
}

/// Who asked, for the timeline.
fn by(actor: &Option<String>) -> Option<String> {
    actor.clone().or_else(|| Some("system:acd".into()))
}

impl Acd {
    pub fn new(db: DatabaseConnection, bus: Bus) -> Self {
        Self {
            db,
            bus,
            metrics: Default::default(),
            tenants: Default::default(),
            wake: tokio::sync::Notify::new(),
            config: Mutex::new(()),
            hook: std::sync::OnceLock::new(),
        }
    }

    /// Sets the one listener for carried-out actions (a second is ignored).
    pub fn on_action(&self, hook: ActionHook) {
        let _ = self.hook.set(hook);
    }

    /// Counting into `metrics` (shared with the Prometheus registry).
    pub fn with_metrics(
        db: DatabaseConnection,
        bus: Bus,
        metrics: Arc<super::metrics::Store>,
    ) -> Self {
        let mut acd = Self::new(db, bus);
        acd.metrics = metrics;
        acd
    }

    /// The real-time figures of the tenant (its engine built if needed),
    /// names left empty.
    pub async fn metrics(&self, t: TenantId) -> Result<super::metrics::RoutingMetrics, AcdError> {
        let tenant = self.tenant(t).await?;
        let g = tenant.lock().await;
        let now = now_ms();
        self.metrics.record(t, &g.engine, &[], now);
        drop(g);
        Ok(self.metrics.view(t, now).expect("recorded just now"))
    }

    /// Bumped whenever the tenant's figures may have changed (`None`: no
    /// figures yet).
    pub fn metrics_version(&self, t: TenantId) -> Option<u64> {
        self.metrics.version(t)
    }

    /// The tenant's engine, built on first use.
    async fn tenant(&self, t: TenantId) -> Result<Arc<Mutex<Tenant>>, AcdError> {
        if let Some(x) = self.tenants.lock().expect("not poisoned").get(&t) {
            return Ok(x.clone());
        }
        let (tenant, actions) = self.load(t).await?;
        let entry = {
            let mut map = self.tenants.lock().expect("not poisoned");
            map.entry(t)
                .or_insert_with(|| Arc::new(Mutex::new(tenant)))
                .clone()
        };
        if !actions.is_empty() {
            let mut g = entry.lock().await;
            self.carry_out(t, &mut g, actions, &None).await;
        }
        self.wake.notify_one();
        Ok(entry)
    }

    /// Builds a tenant's engine from the database: skills, queues, agents,
    /// presence, then the interactions waiting in queues (at their original
    /// place) and those connected to agents.
    async fn load(&self, t: TenantId) -> Result<(Tenant, Vec<Action>), AcdError> {
        let db = &self.db;
        let now = now_ms();
        let mut engine = Engine::new();
        let mut actions = Vec::new();
        for s in skill::Entity::find()
            .filter(skill::Column::TenantId.eq(t))
            .all(db)
            .await?
        {
            engine.upsert_skill(s.id);
        }
        let queues = queue::Entity::find()
            .filter(queue::Column::TenantId.eq(t))
            .all(db)
            .await?;
        let mut qskills: HashMap<QueueId, Vec<queue_skill::Model>> = HashMap::new();
        for s in queue_skill::Entity::find()
            .filter(queue_skill::Column::TenantId.eq(t))
            .all(db)
            .await?
        {
            qskills.entry(s.queue_id).or_default().push(s);
        }
        // Overflow targets must exist first: queues without overflow, then
        // the rest, until every queue is in (or a pass adds none).
        let mut configs = Vec::new();
        for q in &queues {
            configs.push(queue_config(
                q,
                qskills.get(&q.id).map(Vec::as_slice).unwrap_or(&[]),
            )?);
        }
        let mut pending = configs;
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for c in pending {
                let id = c.id;
                match engine.upsert_queue(now, c.clone()) {
                    Ok(a) => actions.extend(a),
                    Err(super::engine::ConfigError::UnknownQueue(_)) => rest.push(c),
                    Err(e) => return Err(stored(format!("queue {id}"), e)),
                }
            }
            if rest.len() == before {
                return Err(stored(
                    "queues",
                    "overflow targets that do not exist".to_owned(),
                ));
            }
            pending = rest;
        }
        let mut askills: HashMap<AgentId, Vec<agent_skill::Model>> = HashMap::new();
        for s in agent_skill::Entity::find()
            .filter(agent_skill::Column::TenantId.eq(t))
            .all(db)
            .await?
        {
            askills.entry(s.agent_id).or_default().push(s);
        }
        for a in agent::Entity::find()
            .filter(agent::Column::TenantId.eq(t))
            .all(db)
            .await?
        {
            let c = agent_config(&a, askills.get(&a.id).map(Vec::as_slice).unwrap_or(&[]))?;
            actions.extend(
                engine
                    .upsert_agent(now, c)
                    .map_err(|e| stored(format!("agent {}", a.id), e))?,
            );
        }
        // Interactions already with agents hold their capacity before
        // anyone becomes available.
        let live = crate::interactions::entity::interaction::Entity::find()
            .filter(crate::interactions::entity::interaction::Column::TenantId.eq(t))
            .filter(
                crate::interactions::entity::interaction::Column::State.is_in([
                    "queued",
                    "offered",
                    "connected",
                    "wrap_up",
                ]),
            )
            .order_by_asc(crate::interactions::entity::interaction::Column::CreatedAt)
            .all(db)
            .await?;
        let mut tenant = Tenant {
            engine,
            offers: HashMap::new(),
        };
        let mut waiting = Vec::new();
        for i in live {
            let Some(queue_id) = i.queue_id else { continue };
            let channel: Channel = spine::parse_enum(&i.channel);
            let state: State = spine::parse_enum(&i.state);
            match (state, i.agent_id) {
                (State::Connected | State::WrapUp, Some(agent)) => {
                    let arrival = Arrival::new(i.id, queue_id, channel);
                    if !restore_connected(&mut tenant.engine, now, agent, arrival, state) {
                        tracing::warn!(interaction_id = %i.id, agent_id = %agent, "could not restore a connected interaction: the agent no longer qualifies for its queue");
                    }
                }
                (State::Queued | State::Offered, _) => waiting.push(i),
                _ => {}
            }
        }
        for p in presence::Entity::find()
            .filter(presence::Column::TenantId.eq(t))
            .all(db)
            .await?
        {
            if let Ok(a) = tenant.engine.set_presence(now, p.agent_id, presence_of(&p)) {
                actions.extend(a);
            }
        }
        for i in waiting {
            let queue_id = i.queue_id.expect("queued interactions have a queue");
            // An offer made before the restart is void: the spine is told
            // (withdrawn) and the interaction waits again at its place.
            if let (State::Offered, Some(agent)) = (spine::parse_enum(&i.state), i.agent_id)
                && let Err(e) = spine::apply(
                    db,
                    &self.bus,
                    t,
                    i.id,
                    Transition::Withdraw { agent_id: agent },
                    Some("system:acd".into()),
                )
                .await
            {
                tracing::warn!(interaction_id = %i.id, error = %e, "could not withdraw an offer made before the restart");
            }
            let routed = routed_event(db, t, i.id).await?;
            let mut arrival = Arrival::new(i.id, queue_id, spine::parse_enum(&i.channel));
            arrival.priority = routed.priority;
            arrival.callback = routed.callback;
            arrival.enqueued_at = Some(
                routed
                    .enqueued_at
                    .unwrap_or_else(|| i.updated_at.timestamp_millis().max(0) as Millis),
            );
            match tenant.engine.arrive(now, arrival) {
                Ok(a) => actions.extend(a),
                Err(e) => {
                    tracing::warn!(interaction_id = %i.id, error = %e, "could not restore a waiting interaction")
                }
            }
        }
        Ok((tenant, actions))
    }

    /// Carries out the engine's actions, in order: spine transitions and
    /// notes, decision log rows, presence rows. A failure is logged and the
    /// rest goes on: the engine has moved on already.
    async fn carry_out(
        &self,
        t: TenantId,
        tenant: &mut Tenant,
        actions: Vec<Action>,
        actor: &Option<String>,
    ) {
        self.metrics.record(t, &tenant.engine, &actions, now_ms());
        for a in actions {
            if let Err(e) = self.carry_out_one(t, tenant, &a, actor).await {
                tracing::warn!(tenant_id = %t, action = ?a, error = %e, "could not record a routing action");
            }
            if let Some(hook) = self.hook.get() {
                hook(t, &a);
            }
        }
        self.wake.notify_one();
    }

    async fn carry_out_one(
        &self,
        t: TenantId,
        tenant: &mut Tenant,
        a: &Action,
        actor: &Option<String>,
    ) -> Result<(), AcdError> {
        let db = &self.db;
        let bus = &self.bus;
        let apply = |i: InteractionId, tr: Transition| spine::apply(db, bus, t, i, tr, by(actor));
        let note = |i: InteractionId, kind: &str, data: Value| {
            spine::annotate(db, bus, t, i, kind.to_owned(), data, by(actor))
        };
        match a {
            Action::Offer {
                interaction,
                agents,
                callback,
                decision: d,
                expires_at,
            } => {
                decision::Entity::insert(decision::ActiveModel {
                    id: sea_orm::NotSet,
                    tenant_id: Set(t),
                    interaction_id: Set(*interaction),
                    queue_id: Set(d.queue),
                    agents: Set(json!(agents)),
                    decision: Set(serde_json::to_value(d).expect("serialises")),
                    decided_at: Set(time_of(d.at)),
                })
                .exec_without_returning(db)
                .await?;
                tenant.offers.insert(*interaction, agents.clone());
                if let [agent] = agents.as_slice() {
                    apply(*interaction, Transition::Offer { agent_id: *agent }).await?;
                } else {
                    note(
                        *interaction,
                        "ringing",
                        json!({ "agents": agents, "callback": callback, "expires_at": time_of(*expires_at) }),
                    )
                    .await?;
                }
            }
            Action::OfferWithdrawn {
                interaction,
                agent,
                reason,
            } => {
                if let Some(ringing) = tenant.offers.get_mut(interaction) {
                    ringing.retain(|x| x != agent);
                }
                note(
                    *interaction,
                    "offer_withdrawn",
                    json!({ "agent_id": agent, "reason": reason }),
                )
                .await?;
            }
            Action::Requeued {
                interaction,
                reason,
                ..
            } => {
                let offered = spine::find(db, t, *interaction)
                    .await?
                    .filter(|m| m.state == "offered")
                    .and_then(|m| m.agent_id);
                tenant.offers.remove(interaction);
                if let Some(agent_id) = offered {
                    let tr = match reason {
                        RequeueReason::Rejected => Transition::Reject { agent_id },
                        RequeueReason::NoAnswer => Transition::OfferTimeout { agent_id },
                        RequeueReason::Withdrawn => Transition::Withdraw { agent_id },
                    };
                    apply(*interaction, tr).await?;
                } else {
                    note(*interaction, "ring_ended", json!({ "reason": reason })).await?;
                }
            }
            Action::Connected {
                interaction, agent, ..
            } => {
                let m = spine::find(db, t, *interaction)
                    .await?
                    .ok_or(AcdError::NoInteraction)?;
                if m.state != "offered" || m.agent_id != Some(*agent) {
                    // Ring-all: the spine learns who answered now.
                    apply(*interaction, Transition::Offer { agent_id: *agent }).await?;
                }
                tenant.offers.remove(interaction);
                apply(*interaction, Transition::Accept { agent_id: *agent }).await?;
            }
            Action::Escalated {
                interaction, step, ..
            } => {
                note(*interaction, "escalated", json!({ "step": step })).await?;
            }
            Action::Overflowed {
                interaction,
                to,
                reason,
                ..
            } => {
                note(
                    *interaction,
                    "overflowed",
                    json!({ "to": to, "reason": reason }),
                )
                .await?;
                match to {
                    OverflowTarget::Queue(q) => {
                        apply(*interaction, Transition::Enqueue { queue_id: *q }).await?;
                    }
                    OverflowTarget::Flow(f) => {
                        apply(*interaction, Transition::EnterFlow { flow: f.clone() }).await?;
                    }
                }
            }
            Action::Abandoned { interaction, .. } => {
                tenant.offers.remove(interaction);
                let m = spine::find(db, t, *interaction).await?;
                if m.is_some_and(|m| m.state != "closed") {
                    apply(*interaction, Transition::Abandon).await?;
                }
            }
            Action::Ended { interaction, .. } => {
                apply(*interaction, Transition::WrapUp).await?;
            }
            Action::WrapUpStarted { .. } => {}
            Action::WrapUpEnded { interaction, .. } => {
                let m = spine::find(db, t, *interaction).await?;
                if m.is_some_and(|m| m.state == "wrap_up") {
                    apply(
                        *interaction,
                        Transition::Close {
                            reason: CloseReason::Completed,
                        },
                    )
                    .await?;
                }
            }
            Action::AgentAway { agent, reason } => {
                store_presence(
                    db,
                    t,
                    *agent,
                    &Presence::Away {
                        reason: reason.clone(),
                    },
                )
                .await?;
            }
            Action::ServabilityChanged { queue, unservable } => {
                if !unservable.is_empty() {
                    tracing::warn!(tenant_id = %t, queue_id = %queue, ?unservable, "no agent can serve these channels of the queue; they overflow");
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on the tenant's engine and carries out what it returns.
    async fn with<R>(
        &self,
        t: TenantId,
        actor: &Option<String>,
        f: impl FnOnce(&mut Engine, Millis) -> Result<(R, Vec<Action>), AcdError>,
    ) -> Result<R, AcdError> {
        let tenant = self.tenant(t).await?;
        let mut g = tenant.lock().await;
        let now = now_ms();
        match f(&mut g.engine, now) {
            Ok((r, actions)) => {
                self.carry_out(t, &mut g, actions, actor).await;
                Ok(r)
            }
            Err(e) => {
                // Due timers may have run before the call was refused.
                let buffered = g.engine.take_actions();
                self.carry_out(t, &mut g, buffered, actor).await;
                Err(e)
            }
        }
    }

    /// The agent's chosen presence (stored, so it survives a restart).
    pub async fn set_presence(
        &self,
        t: TenantId,
        agent: AgentId,
        p: Presence,
        actor: Option<String>,
    ) -> Result<(), AcdError> {
        self.with(t, &actor, |e, now| {
            Ok(((), e.set_presence(now, agent, p.clone())?))
        })
        .await?;
        store_presence(&self.db, t, agent, &p).await?;
        Ok(())
    }

    /// Puts an interaction in a queue: the engine offers it at once if an
    /// agent is free, else it waits at its place.
    pub async fn route(
        &self,
        t: TenantId,
        interaction: InteractionId,
        queue: QueueId,
        priority: i32,
        callback: bool,
        actor: Option<String>,
    ) -> Result<Option<Position>, AcdError> {
        self.route_with(t, interaction, queue, priority, callback, Vec::new(), actor)
            .await
    }

    /// [`route`](Self::route), with skills the interaction needs beyond
    /// the queue's (an IVR flow's choice of language, say).
    #[allow(clippy::too_many_arguments)]
    pub async fn route_with(
        &self,
        t: TenantId,
        interaction: InteractionId,
        queue: QueueId,
        priority: i32,
        callback: bool,
        extra_skills: Vec<SkillReq>,
        actor: Option<String>,
    ) -> Result<Option<Position>, AcdError> {
        let m = spine::find(&self.db, t, interaction)
            .await?
            .ok_or(AcdError::NoInteraction)?;
        let channel: Channel = spine::parse_enum(&m.channel);
        // What the lifecycle would refuse is refused before the engine hears of it.
        spine::lifecycle_of(&m)
            .apply(&Transition::Enqueue { queue_id: queue })
            .map_err(InteractionError::from)?;
        let tenant = self.tenant(t).await?;
        let mut g = tenant.lock().await;
        let now = now_ms();
        // Timers due now first, so the arrival's actions are its own.
        let due = g.engine.tick(now);
        self.carry_out(t, &mut g, due, &actor).await;
        let mut arrival = Arrival::new(interaction, queue, channel);
        let skills_note: Vec<_> = extra_skills
            .iter()
            .map(|s| json!({ "skill": s.skill, "min_level": s.min_level }))
            .collect();
        arrival.extra_skills = extra_skills;
        arrival.priority = priority;
        arrival.callback = callback;
        let actions = g.engine.arrive(now, arrival)?;
        // The spine, then what the engine did (it may have offered at once);
        // the arrival's details are kept for a restart.
        let queued = async {
            spine::apply(
                &self.db,
                &self.bus,
                t,
                interaction,
                Transition::Enqueue { queue_id: queue },
                by(&actor),
            )
            .await?;
            spine::annotate(
                &self.db,
                &self.bus,
                t,
                interaction,
                "routed".into(),
                json!({ "queue_id": queue, "priority": priority, "callback": callback, "enqueued_at": now, "extra_skills": skills_note }),
                by(&actor),
            )
            .await?;
            Ok::<(), InteractionError>(())
        };
        if let Err(e) = queued.await {
            // It changed meanwhile: take it out of the engine again.
            let _ = g.engine.hang_up(now, interaction);
            g.engine.take_actions();
            return Err(e.into());
        }
        self.metrics.arrived(t, queue, now);
        self.carry_out(t, &mut g, actions, &actor).await;
        Ok(g.engine.position(interaction))
    }

    pub async fn accept(
        &self,
        t: TenantId,
        agent: AgentId,
        i: InteractionId,
        actor: Option<String>,
    ) -> Result<(), AcdError> {
        self.with(t, &actor, |e, now| Ok(((), e.accept(now, agent, i)?)))
            .await
    }

    pub async fn reject(
        &self,
        t: TenantId,
        agent: AgentId,
        i: InteractionId,
        actor: Option<String>,
    ) -> Result<(), AcdError> {
        self.with(t, &actor, |e, now| Ok(((), e.reject(now, agent, i)?)))
            .await
    }

    /// The customer hung up or the conversation ended.
    pub async fn hang_up(
        &self,
        t: TenantId,
        i: InteractionId,
        actor: Option<String>,
    ) -> Result<(), AcdError> {
        self.with(t, &actor, |e, now| Ok(((), e.hang_up(now, i)?)))
            .await
    }

    pub async fn end_wrap_up(
        &self,
        t: TenantId,
        agent: AgentId,
        actor: Option<String>,
    ) -> Result<(), AcdError> {
        self.with(t, &actor, |e, now| Ok(((), e.end_wrap_up(now, agent)?)))
            .await
    }

    /// A waiting caller asked to be called back: the interaction keeps its
    /// place (and no longer times out of the queue); the agent it reaches
    /// is told to call back. Recorded on the timeline, so a restart keeps it.
    pub async fn to_callback(
        &self,
        t: TenantId,
        i: InteractionId,
        actor: Option<String>,
    ) -> Result<Option<Position>, AcdError> {
        let tenant = self.tenant(t).await?;
        let mut g = tenant.lock().await;
        let now = now_ms();
        let due = g.engine.tick(now);
        self.carry_out(t, &mut g, due, &actor).await;
        let queue = match g.engine.interaction_state(i) {
            Some(super::engine::InteractionState::Waiting { queue, .. }) => queue,
            Some(_) => return Err(EngineError::NotWaiting(i).into()),
            None => return Err(EngineError::UnknownInteraction(i).into()),
        };
        let routed = routed_event(&self.db, t, i).await?;
        let actions = g.engine.to_callback(now, i)?;
        spine::annotate(
            &self.db,
            &self.bus,
            t,
            i,
            "callback_requested".into(),
            json!({ "queue_id": queue, "priority": routed.priority, "callback": true, "enqueued_at": routed.enqueued_at }),
            by(&actor),
        )
        .await?;
        self.carry_out(t, &mut g, actions, &actor).await;
        Ok(g.engine.position(i))
    }

    /// Reads the engine (built if needed).
    pub async fn read<R>(&self, t: TenantId, f: impl FnOnce(&Engine) -> R) -> Result<R, AcdError> {
        let tenant = self.tenant(t).await?;
        let g = tenant.lock().await;
        Ok(f(&g.engine))
    }

    /// Serialises configuration saves on this node (see `config`).
    pub async fn config_guard(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.config.lock().await
    }

    /// Applies a configuration change to the tenant's engine (after it was
    /// stored) and carries out what follows (offers to agents who now
    /// qualify, overflow of what can no longer be served). Refused: the
    /// engine is rebuilt from the database, which is the truth.
    pub async fn apply_config(
        &self,
        t: TenantId,
        actor: Option<String>,
        f: impl FnOnce(&mut Engine, Millis) -> Result<Vec<Action>, super::engine::ConfigError>,
    ) {
        let r = self.with(t, &actor, |e, now| Ok(((), f(e, now)?))).await;
        if let Err(e) = r {
            tracing::warn!(tenant_id = %t, error = %e, "a stored configuration change was refused by the router; rebuilding it");
            self.reload(t);
        }
    }

    /// Asks the tenant's engine for a change before it is stored (removals:
    /// refused if something depends on it); refused, nothing changed.
    pub async fn try_config(
        &self,
        t: TenantId,
        actor: Option<String>,
        f: impl FnOnce(&mut Engine, Millis) -> Result<Vec<Action>, super::engine::ConfigError>,
    ) -> Result<(), AcdError> {
        self.with(t, &actor, |e, now| Ok(((), f(e, now)?))).await
    }

    /// Forgets a tenant's engine: the next call rebuilds it from the
    /// database (after a catalogue change).
    pub fn reload(&self, t: TenantId) {
        self.tenants.lock().expect("not poisoned").remove(&t);
    }

    /// Runs every tenant's due timers (offer timeouts, wrap-up ends,
    /// escalation, maximum waits) until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let tenants: Vec<(TenantId, Arc<Mutex<Tenant>>)> = self
                .tenants
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            let mut next: Option<Millis> = None;
            for (t, tenant) in tenants {
                let mut g = tenant.lock().await;
                let now = now_ms();
                if g.engine.next_deadline().is_some_and(|d| d <= now) {
                    let actions = g.engine.tick(now);
                    self.carry_out(t, &mut g, actions, &None).await;
                }
                if let Some(d) = g.engine.next_deadline() {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
            let wait = next
                .map(|d| Duration::from_millis(d.saturating_sub(now_ms()).clamp(5, 1000)))
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

use Presence::Offline;

/// Puts back an interaction that was with `agent` before a restart, using
/// the engine's public API only: the agent alone is available while the
/// interaction arrives, takes the offer, and (for wrap-up) ends it. The
/// engine's actions are not carried out: the spine already says all this.
/// Run before anyone's presence or any waiting interaction is restored.
fn restore_connected(
    e: &mut Engine,
    now: Millis,
    agent: AgentId,
    arrival: Arrival,
    state: State,
) -> bool {
    let id = arrival.interaction;
    if e.set_presence(now, agent, Presence::Available).is_err() {
        return false;
    }
    let offered = e.arrive(now, arrival).is_ok_and(|actions| {
        actions.iter().any(|a| {
            matches!(a, Action::Offer { interaction, agents, .. } if *interaction == id && agents == &[agent])
        })
    });
    let restored = offered && e.accept(now, agent, id).is_ok();
    if !restored || state == State::WrapUp {
        let _ = e.hang_up(now, id);
    }
    let _ = e.set_presence(now, agent, Offline);
    e.take_actions();
    restored
}

/// What the last `routed` (or `callback_requested`) event of an interaction says.
struct Routed {
    priority: i32,
    callback: bool,
    enqueued_at: Option<Millis>,
}

async fn routed_event(
    db: &DatabaseConnection,
    t: TenantId,
    i: InteractionId,
) -> Result<Routed, DbErr> {
    use crate::interactions::entity::event;
    let e = event::Entity::find()
        .filter(event::Column::TenantId.eq(t))
        .filter(event::Column::InteractionId.eq(i))
        .filter(event::Column::Kind.is_in(["routed", "callback_requested"]))
        .order_by_desc(event::Column::Seq)
        .one(db)
        .await?;
    Ok(match e {
        Some(e) => Routed {
            priority: e.data["priority"].as_i64().unwrap_or(0) as i32,
            callback: e.data["callback"].as_bool().unwrap_or(false),
            enqueued_at: e.data["enqueued_at"].as_u64(),
        },
        None => Routed {
            priority: 0,
            callback: false,
            enqueued_at: None,
        },
    })
}
