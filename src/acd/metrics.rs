//! Real-time routing figures per queue and per agent, for supervisors
//! (`GET /routing/metrics`, the `/routing/stream` push) and Prometheus.
//!
//! The service rebuilds a tenant's engine now and then (`Acd::reload`), so
//! the counters do not live in the engine: [`Store`] keeps them per tenant,
//! fed with every batch of engine actions the service carries out (and the
//! arrivals it routes). They count **since midnight UTC** (or since this
//! node started routing for the tenant, if later) and are **per node**:
//! in a cluster each node counts what it routed. Waiting, offered, free
//! agents, presence and load are the engine's live picture.
//!
//! Definitions (per queue):
//! * ASA: mean wait of the interactions answered in the queue;
//! * service level: answered within the queue's threshold over answered
//!   plus abandoned (as the engine's own figure);
//! * abandon rate: abandoned over answered plus abandoned;
//! * AHT: connected until the work is over (wrap-up ended, or the end of
//!   the conversation when there is no wrap-up), over the interactions
//!   whose work ended.
//!
//! Per agent: `handled` interactions whose work ended, their AHT, and
//! occupancy: time with work in hand (offered, connected or wrap-up: status
//! busy or wrap-up) over time signed in (idle, busy or wrap-up; away and
//! offline do not count).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use super::engine::{Action, AgentSnapshot, AgentStatus, Engine, Millis, Presence, QueueSnapshot};
use crate::error::ApiResult;
use crate::iam::Supervisors;
use crate::iam::auth::{Auth, Principal};
use crate::ids::{AgentId, InteractionId, QueueId, TenantId};
use crate::interactions::domain::Channel;
use crate::state::AppState;

const DAY_MS: Millis = 86_400_000;

fn midnight(now: Millis) -> Millis {
    now - now % DAY_MS
}

#[derive(Debug, Clone, Copy, Default)]
struct QueueCounters {
    arrived: u64,
    answered: u64,
    answered_within_sl: u64,
    abandoned: u64,
    overflowed: u64,
    answer_ms: u64,
    handled: u64,
    handle_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Out,
    Idle,
    Working,
}

fn kind_of(s: &AgentStatus) -> Kind {
    match s {
        AgentStatus::Offline | AgentStatus::Away { .. } => Kind::Out,
        AgentStatus::Idle => Kind::Idle,
        AgentStatus::Busy | AgentStatus::WrapUp => Kind::Working,
    }
}

#[derive(Debug, Clone, Copy)]
struct AgentCounters {
    handled: u64,
    handle_ms: u64,
    /// Closed intervals since `since` of the store.
    working_ms: u64,
    signed_in_ms: u64,
    kind: Kind,
    kind_since: Millis,
}

impl AgentCounters {
    fn new(kind: Kind, now: Millis) -> Self {
        Self {
            handled: 0,
            handle_ms: 0,
            working_ms: 0,
            signed_in_ms: 0,
            kind,
            kind_since: now,
        }
    }

    /// Adds the time in the current status up to `now` (not stored).
    fn totals(&self, now: Millis) -> (u64, u64) {
        let open = now.saturating_sub(self.kind_since);
        let (w, s) = match self.kind {
            Kind::Out => (0, 0),
            Kind::Idle => (0, open),
            Kind::Working => (open, open),
        };
        (self.working_ms + w, self.signed_in_ms + s)
    }

    fn observe(&mut self, kind: Kind, now: Millis) -> bool {
        if kind == self.kind {
            return false;
        }
        let (w, s) = self.totals(now);
        self.working_ms = w;
        self.signed_in_ms = s;
        self.kind = kind;
        self.kind_since = now;
        true
    }
}

/// An interaction between its answer and the end of its work.
#[derive(Debug, Clone, Copy)]
struct Work {
    queue: QueueId,
    agent: AgentId,
    connected_at: Millis,
    ended: bool,
    wrapping: bool,
}

#[derive(Debug, Default)]
struct TenantCounters {
    since: Millis,
    version: u64,
    queues: HashMap<QueueId, QueueCounters>,
    agents: HashMap<AgentId, AgentCounters>,
    work: HashMap<InteractionId, Work>,
    /// The engine's picture at the last observation.
    queue_snaps: Vec<QueueSnapshot>,
    agent_snaps: Vec<AgentSnapshot>,
}

impl TenantCounters {
    /// A new day: counts start again; work in hand carries over.
    fn roll(&mut self, now: Millis) {
        let m = midnight(now);
        if self.since >= m {
            return;
        }
        self.since = m;
        self.queues.clear();
        for a in self.agents.values_mut() {
            *a = AgentCounters::new(a.kind, m.max(a.kind_since));
        }
        self.version += 1;
    }

    fn finish(&mut self, i: InteractionId, now: Millis) {
        if let Some(w) = self.work.remove(&i) {
            let ms = now.saturating_sub(w.connected_at);
            let q = self.queues.entry(w.queue).or_default();
            q.handled += 1;
            q.handle_ms += ms;
            if let Some(a) = self.agents.get_mut(&w.agent) {
                a.handled += 1;
                a.handle_ms += ms;
            }
        }
    }
}

/// The per-tenant counters of one node. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct Store {
    tenants: std::sync::Mutex<HashMap<TenantId, TenantCounters>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, t: TenantId, now: Millis, f: impl FnOnce(&mut TenantCounters) -> R) -> R {
        let mut map = self.tenants.lock().expect("not poisoned");
        let c = map.entry(t).or_insert_with(|| TenantCounters {
            since: now,
            ..Default::default()
        });
        c.roll(now);
        f(c)
    }

    /// An interaction entered `queue` (routed to it).
    pub fn arrived(&self, t: TenantId, queue: QueueId, now: Millis) {
        self.with(t, now, |c| {
            c.queues.entry(queue).or_default().arrived += 1;
            c.version += 1;
        });
    }

    /// Counts what the engine did (`actions`, in order) and observes its
    /// picture after it (queues, agents' status).
    pub fn record(&self, t: TenantId, engine: &Engine, actions: &[Action], now: Millis) {
        let queue_snaps: Vec<QueueSnapshot> = {
            let mut ids = engine.queue_ids();
            ids.sort_unstable();
            ids.into_iter()
                .filter_map(|q| engine.queue_snapshot(q))
                .collect()
        };
        let agent_snaps: Vec<AgentSnapshot> = {
            let mut ids = engine.agent_ids();
            ids.sort_unstable();
            ids.into_iter()
                .filter_map(|a| engine.agent_snapshot(a))
                .collect()
        };
        self.with(t, now, |c| {
            let mut changed = !actions.is_empty();
            for a in actions {
                match a {
                    Action::Connected {
                        interaction,
                        agent,
                        queue,
                        waited_ms,
                    } => {
                        let threshold = queue_snaps
                            .iter()
                            .find(|s| s.id == *queue)
                            .map(|s| s.service_level_target.threshold_ms);
                        let q = c.queues.entry(*queue).or_default();
                        q.answered += 1;
                        q.answer_ms += waited_ms;
                        if threshold.is_some_and(|th| *waited_ms <= th) {
                            q.answered_within_sl += 1;
                        }
                        c.work.insert(
                            *interaction,
                            Work {
                                queue: *queue,
                                agent: *agent,
                                connected_at: now,
                                ended: false,
                                wrapping: false,
                            },
                        );
                    }
                    Action::Abandoned { queue, .. } => {
                        c.queues.entry(*queue).or_default().abandoned += 1;
                    }
                    Action::Overflowed { from, to, .. } => {
                        c.queues.entry(*from).or_default().overflowed += 1;
                        if let super::engine::OverflowTarget::Queue(q) = to {
                            c.queues.entry(*q).or_default().arrived += 1;
                        }
                    }
                    Action::Ended { interaction, .. } => {
                        if let Some(w) = c.work.get_mut(interaction) {
                            w.ended = true;
                        }
                    }
                    Action::WrapUpStarted { interaction, .. } => {
                        if let Some(w) = c.work.get_mut(interaction) {
                            w.wrapping = true;
                        }
                    }
                    Action::WrapUpEnded { interaction, .. } => c.finish(*interaction, now),
                    _ => {}
                }
            }
            // Ended without wrap-up: the work is over now.
            let done: Vec<InteractionId> = c
                .work
                .iter()
                .filter(|(_, w)| w.ended && !w.wrapping)
                .map(|(i, _)| *i)
                .collect();
            for i in done {
                c.finish(i, now);
            }
            for s in &agent_snaps {
                let k = kind_of(&s.status);
                match c.agents.get_mut(&s.id) {
                    Some(a) => changed |= a.observe(k, now),
                    None => {
                        c.agents.insert(s.id, AgentCounters::new(k, now));
                        changed = true;
                    }
                }
            }
            if changed || c.queue_snaps != queue_snaps || c.agent_snaps != agent_snaps {
                c.version += 1;
            }
            c.queue_snaps = queue_snaps;
            c.agent_snaps = agent_snaps;
        });
    }

    /// Bumped whenever a figure may have changed.
    pub fn version(&self, t: TenantId) -> Option<u64> {
        let map = self.tenants.lock().expect("not poisoned");
        map.get(&t).map(|c| c.version)
    }

    /// Tenants this node has figures for.
    pub fn tenants(&self) -> Vec<TenantId> {
        let map = self.tenants.lock().expect("not poisoned");
        let mut v: Vec<TenantId> = map.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The figures at `now` (names left empty: see [`RoutingMetrics`]);
    /// `None` if this node has not routed for the tenant.
    pub fn view(&self, t: TenantId, now: Millis) -> Option<RoutingMetrics> {
        let mut map = self.tenants.lock().expect("not poisoned");
        let c = map.get_mut(&t)?;
        c.roll(now);
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let secs = |ms: u64, n: u64| (n > 0).then(|| ms as f64 / n as f64 / 1000.0);
        let queues = c
            .queue_snaps
            .iter()
            .map(|s| {
                let k = c.queues.get(&s.id).copied().unwrap_or_default();
                let finished = k.answered + k.abandoned;
                QueueMetrics {
                    queue_id: s.id,
                    name: String::new(),
                    waiting: s.waiting,
                    offered: s.offered,
                    longest_wait_secs: s
                        .oldest_enqueued_at
                        .map_or(0.0, |o| now.saturating_sub(o) as f64 / 1000.0),
                    arrived: k.arrived,
                    answered: k.answered,
                    abandoned: k.abandoned,
                    overflowed: k.overflowed,
                    asa_secs: secs(k.answer_ms, k.answered),
                    service_level: ratio(k.answered_within_sl, finished),
                    service_level_target_pct: s.service_level_target.target_pct,
                    sl_threshold_secs: s.service_level_target.threshold_ms / 1000,
                    abandon_rate: ratio(k.abandoned, finished),
                    aht_secs: secs(k.handle_ms, k.handled),
                    free_agents: s
                        .free_agents
                        .iter()
                        .map(|(ch, n)| (channel_name(*ch).to_owned(), *n))
                        .collect(),
                    unservable: s.unservable.clone(),
                }
            })
            .collect();
        let agents = c
            .agent_snaps
            .iter()
            .map(|s| {
                let k = c.agents.get(&s.id).copied();
                let (working, signed_in) = k.map_or((0, 0), |k| k.totals(now));
                let (presence, reason) = match &s.presence {
                    Presence::Offline => ("offline", None),
                    Presence::Available => ("available", None),
                    Presence::Away { reason } => ("away", Some(reason.clone())),
                };
                AgentMetrics {
                    agent_id: s.id,
                    display_name: String::new(),
                    presence: presence.to_owned(),
                    reason,
                    status: status_name(&s.status).to_owned(),
                    load: ChannelCounts::of(&s.load),
                    capacity: ChannelCounts::of(&s.capacity),
                    handled: k.map_or(0, |k| k.handled),
                    aht_secs: k.and_then(|k| secs(k.handle_ms, k.handled)),
                    occupancy: ratio(working, signed_in),
                }
            })
            .collect();
        Some(RoutingMetrics {
            generated_at: super::service::time_of(now),
            since: super::service::time_of(c.since),
            queues,
            agents,
        })
    }
}

pub fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Voice => "voice",
        Channel::Chat => "chat",
        Channel::Sms => "sms",
        Channel::Email => "email",
    }
}

pub fn status_name(s: &AgentStatus) -> &'static str {
    match s {
        AgentStatus::Offline => "offline",
        AgentStatus::Away { .. } => "away",
        AgentStatus::Idle => "idle",
        AgentStatus::Busy => "busy",
        AgentStatus::WrapUp => "wrap_up",
    }
}

/// Real-time routing figures of the caller's tenant on this node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoutingMetrics {
    pub generated_at: DateTime<Utc>,
    /// Counters count from here: midnight UTC, or when this node started
    /// routing for the workspace if later. Per node.
    pub since: DateTime<Utc>,
    pub queues: Vec<QueueMetrics>,
    pub agents: Vec<AgentMetrics>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueMetrics {
    pub queue_id: QueueId,
    pub name: String,
    /// Waiting now (not offered).
    pub waiting: usize,
    /// Ringing an agent now.
    pub offered: usize,
    /// How long the longest-waiting interaction has waited (0: none waits).
    pub longest_wait_secs: f64,
    /// Entered the queue (routed to it, or overflowed into it).
    pub arrived: u64,
    pub answered: u64,
    /// Left before an agent answered.
    pub abandoned: u64,
    /// Sent on by the queue's overflow rules.
    pub overflowed: u64,
    /// Average speed of answer (null: nothing answered yet).
    pub asa_secs: Option<f64>,
    /// Answered within the threshold over answered plus abandoned, 0..1.
    pub service_level: Option<f64>,
    pub service_level_target_pct: u8,
    pub sl_threshold_secs: u64,
    /// Abandoned over answered plus abandoned, 0..1.
    pub abandon_rate: Option<f64>,
    /// Average handle time: answer to the end of wrap-up.
    pub aht_secs: Option<f64>,
    /// Free eligible agents per channel the queue takes (base requirements).
    #[schema(value_type = Object)]
    pub free_agents: BTreeMap<String, usize>,
    /// Channels the queue takes that no agent could ever serve.
    #[schema(value_type = Vec<String>)]
    pub unservable: Vec<Channel>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ChannelCounts {
    pub voice: u8,
    pub chat: u8,
    pub sms: u8,
    pub email: u8,
}

impl ChannelCounts {
    fn of(c: &super::engine::Capacity) -> Self {
        Self {
            voice: c.voice,
            chat: c.chat,
            sms: c.sms,
            email: c.email,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentMetrics {
    pub agent_id: AgentId,
    pub display_name: String,
    /// `available`, `away` or `offline`.
    pub presence: String,
    /// Why away.
    pub reason: Option<String>,
    /// `idle`, `busy`, `wrap_up`, `away` or `offline`.
    pub status: String,
    /// Offered + connected + wrap-up, per channel.
    pub load: ChannelCounts,
    pub capacity: ChannelCounts,
    /// Interactions whose work (talk and wrap-up) ended.
    pub handled: u64,
    pub aht_secs: Option<f64>,
    /// Time busy or in wrap-up over time signed in (idle, busy, wrap-up),
    /// 0..1; null before any time signed in.
    pub occupancy: Option<f64>,
}

// ---- over HTTP -------------------------------------------------------------------------

/// The figures with queue and agent names, for the caller's tenant only.
async fn named(state: &AppState, t: TenantId) -> ApiResult<RoutingMetrics> {
    use super::catalog::{agent, queue};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let mut m = state.acd.metrics(t).await?;
    let db = &state.db.conn;
    let queues: HashMap<QueueId, String> = queue::Entity::find()
        .filter(queue::Column::TenantId.eq(t))
        .all(db)
        .await?
        .into_iter()
        .map(|q| (q.id, q.name))
        .collect();
    let users: HashMap<crate::ids::UserId, String> = crate::iam::entity::user::Entity::find()
        .filter(crate::iam::entity::user::Column::TenantId.eq(t))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.display_name))
        .collect();
    let agents: HashMap<AgentId, String> = agent::Entity::find()
        .filter(agent::Column::TenantId.eq(t))
        .all(db)
        .await?
        .into_iter()
        .map(|a| (a.id, users.get(&a.user_id).cloned().unwrap_or_default()))
        .collect();
    m.queues.retain(|q| queues.contains_key(&q.queue_id));
    for q in &mut m.queues {
        q.name = queues[&q.queue_id].clone();
    }
    m.agents.retain(|a| agents.contains_key(&a.agent_id));
    for a in &mut m.agents {
        a.display_name = agents[&a.agent_id].clone();
    }
    Ok(m)
}

/// Real-time routing figures per queue (waiting, longest wait, ASA,
/// service level, abandon rate, AHT) and per agent (status, load, handled,
/// AHT, occupancy). Counters count since midnight UTC on the node that
/// answers (see `since`); waiting and presence are live.
#[utoipa::path(tag = "routing", responses((status = 200, body = RoutingMetrics), (status = 403, body = crate::error::ErrorBody)))]
#[get("/routing/metrics")]
pub async fn routing_metrics(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
) -> ApiResult<web::Json<RoutingMetrics>> {
    Ok(web::Json(named(&state, auth.tenant_id).await?))
}

/// How often the stream looks for changes and checks that its credentials
/// still hold, and how long it stays quiet before a keep-alive comment.
const STREAM_TICK: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The routing figures pushed (Server-Sent Events): an `event: metrics`
/// message with the body of `/routing/metrics` at once, then whenever a
/// figure changed (at most once a second), and a keep-alive comment after
/// 15 s of quiet. The stream ends when the credentials stop holding.
#[utoipa::path(tag = "routing", responses((status = 200, content_type = "text/event-stream", description = "`event: metrics` messages with RoutingMetrics as data"), (status = 403, body = crate::error::ErrorBody)))]
#[get("/routing/stream")]
pub async fn routing_stream(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
) -> ApiResult<HttpResponse> {
    struct Live {
        state: web::Data<AppState>,
        principal: Principal,
        sent: Option<u64>,
        quiet_since: std::time::Instant,
    }
    fn event(m: &RoutingMetrics) -> web::Bytes {
        let data = serde_json::to_string(m).expect("figures serialise");
        web::Bytes::from(format!("event: metrics\ndata: {data}\n\n"))
    }
    // The first message is built now, so a refusal is an error response.
    let t = auth.tenant_id;
    let version = state.acd.metrics_version(t);
    let first = named(&state, t).await?;
    let hello = [
        web::Bytes::from_static(b"retry: 2000\n: connected\n\n"),
        event(&first),
    ]
    .concat();
    let live = Live {
        state: state.clone(),
        principal: auth.principal.clone(),
        sent: version.or(Some(0)),
        quiet_since: std::time::Instant::now(),
    };
    let rest = futures_util::stream::unfold(live, |mut live| async move {
        loop {
            let stop = live.state.shutdown.clone();
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(STREAM_TICK) => {}
            }
            let sec = &live.state.settings.security;
            let ok = crate::iam::store::principal_is_live(
                &live.state.db.conn,
                &live.principal,
                Utc::now(),
                sec.session_idle_minutes,
            )
            .await
            .unwrap_or(false);
            if !ok {
                return None;
            }
            let t = live.principal.tenant_id;
            let v = live.state.acd.metrics_version(t);
            let chunk = if v != live.sent {
                let m = named(&live.state, t).await.ok()?;
                live.sent = v;
                event(&m)
            } else if live.quiet_since.elapsed() >= KEEP_ALIVE {
                web::Bytes::from_static(b": keep-alive\n\n")
            } else {
                continue;
            };
            live.quiet_since = std::time::Instant::now();
            return Some((Ok::<_, actix_web::Error>(chunk), live));
        }
    });
    let stream =
        futures_util::stream::once(
            async move { Ok::<_, actix_web::Error>(web::Bytes::from(hello)) },
        )
        .chain(rest);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::engine::{AgentConfig, Arrival, QueueConfig, Strategy};

    fn u(n: u64) -> uuid::Uuid {
        uuid::Uuid::from_u64_pair(7, n)
    }

    #[test]
    fn counts_an_answered_and_an_abandoned_call_and_occupancy() {
        let (t, q, a) = (TenantId(u(1)), QueueId(u(2)), AgentId(u(3)));
        let (i1, i2) = (InteractionId(u(4)), InteractionId(u(5)));
        let day = 20_000 * DAY_MS;
        let mut e = Engine::new();
        e.upsert_queue(day, QueueConfig::new(q, Strategy::LongestIdle))
            .unwrap();
        e.upsert_agent(day, AgentConfig::new(a, vec![])).unwrap();
        let s = Store::new();
        let mut at = day;
        let step = |s: &Store, e: &mut Engine, now: Millis, r: Vec<Action>| {
            s.record(t, e, &r, now);
        };
        let r = e.set_presence(at, a, Presence::Available).unwrap();
        step(&s, &mut e, at, r);
        at += 1_000;
        s.arrived(t, q, at);
        let r = e.arrive(at, Arrival::new(i1, q, Channel::Voice)).unwrap();
        step(&s, &mut e, at, r);
        at += 3_000;
        let r = e.accept(at, a, i1).unwrap();
        step(&s, &mut e, at, r);
        at += 1_000;
        s.arrived(t, q, at);
        let r = e.arrive(at, Arrival::new(i2, q, Channel::Voice)).unwrap();
        step(&s, &mut e, at, r);
        at += 2_000;
        let r = e.hang_up(at, i2).unwrap();
        step(&s, &mut e, at, r);
        let r = e.hang_up(at, i1).unwrap();
        step(&s, &mut e, at, r);
        at += 4_000;
        let r = e.end_wrap_up(at, a).unwrap();
        step(&s, &mut e, at, r);
        at += 1_000;
        let v = s.view(t, at).unwrap();
        let qm = &v.queues[0];
        assert_eq!((qm.arrived, qm.answered, qm.abandoned), (2, 1, 1));
        assert_eq!(qm.asa_secs, Some(3.0));
        assert_eq!(qm.service_level, Some(0.5));
        assert_eq!(qm.abandon_rate, Some(0.5));
        // Answered at +4 s, wrap-up ended at +11 s.
        assert_eq!(qm.aht_secs, Some(7.0));
        let am = &v.agents[0];
        assert_eq!((am.handled, am.aht_secs), (1, Some(7.0)));
        // Signed in 12 s, with work in hand from +1 s (offered) to +11 s.
        assert_eq!(am.occupancy, Some(10.0 / 12.0));
        assert_eq!(v.since, super::super::service::time_of(day));

        // Midnight: counts start again, the live picture stays.
        let next = day + DAY_MS + 5_000;
        let v = s.view(t, next).unwrap();
        assert_eq!(v.since, super::super::service::time_of(day + DAY_MS));
        assert_eq!((v.queues[0].arrived, v.agents[0].handled), (0, 0));
        assert_eq!(v.agents[0].occupancy, Some(0.0));
        assert_eq!(v.agents[0].status, "idle");
    }
}
