//! Replay: a recorded period re-run through the simulator ([`super::sim`])
//! under the recorded routing configuration ("baseline") and under an
//! alternative (another strategy, or queue and agent overrides), compared
//! per queue and in total: offered, answered, abandoned %, service level %
//! and ASA.
//!
//! A period is extracted from the database ([`extract`]) for one tenant:
//! every interaction first routed (its `routed` event) in `[from, to)`
//! becomes a call with its queue, channel and arrival in queue; its talk
//! time (connected to wrap-up started), wrap-up time (wrap-up started to
//! closed) and, when it was abandoned before an answer, its patience (how
//! long it waited). Calls answered keep their patience unknown (censored:
//! they wait as long as it takes). Queues and agents come from the
//! catalogue as it is now; every agent is taken as signed in for the whole
//! period (presence history is not replayed). A [`RecordedDay`] can be saved
//! as JSON and replayed later without the database.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};

use super::engine::{AgentConfig, Engine, Millis, QueueConfig, Strategy};
use super::sim::{Call, EngineRouter, Measure, Stats, simulate};
use crate::ids::{AgentId, InteractionId, QueueId, SkillId, TenantId};
use crate::interactions::domain::Channel;

/// A recorded period: the configuration and the calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedDay {
    pub tenant_id: TenantId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub skills: Vec<SkillId>,
    pub queues: Vec<RecordedQueue>,
    pub agents: Vec<RecordedAgent>,
    /// Sorted by arrival.
    pub calls: Vec<RecordedCall>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedQueue {
    pub name: String,
    pub config: QueueConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedAgent {
    pub name: String,
    pub config: AgentConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedCall {
    pub interaction: Option<InteractionId>,
    pub queue: QueueId,
    pub channel: Channel,
    /// Milliseconds after `from` the call entered the queue.
    pub arrival_ms: Millis,
    /// Talk time once answered.
    pub handle_ms: Millis,
    pub wrap_up_ms: Millis,
    /// How long the caller waited before hanging up; `None`: answered (or
    /// still waiting at the end of the record).
    pub patience_ms: Option<Millis>,
}

/// Overrides for the alternative run (`--config FILE`): whole queue and
/// agent configurations replacing the recorded ones with the same id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    pub queues: Vec<QueueConfig>,
    pub agents: Vec<AgentConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Input(String),
    #[error("the simulation stopped: {0}")]
    Sim(#[from] super::sim::SimError),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
}

fn input(msg: impl Into<String>) -> ReplayError {
    ReplayError::Input(msg.into())
}

impl RecordedDay {
    /// Checks that every call names a recorded queue, calls are sorted and
    /// inside the period.
    pub fn check(&self) -> Result<(), ReplayError> {
        if self.from >= self.to {
            return Err(input(format!(
                "the period is empty: from {} is not before to {}",
                self.from, self.to
            )));
        }
        let span = (self.to - self.from).num_milliseconds().max(0) as Millis;
        let mut last = 0;
        for (i, c) in self.calls.iter().enumerate() {
            if !self.queues.iter().any(|q| q.config.id == c.queue) {
                return Err(input(format!(
                    "call {i} names queue {}, which is not recorded",
                    c.queue
                )));
            }
            if c.arrival_ms < last || c.arrival_ms >= span {
                return Err(input(format!(
                    "call {i} arrives at {} ms: calls must be sorted and inside the period",
                    c.arrival_ms
                )));
            }
            last = c.arrival_ms;
        }
        Ok(())
    }

    /// The alternative: `strategy` on `queues` (empty: all), then `overrides`.
    pub fn alternative(
        &self,
        strategy: Option<Strategy>,
        queues: &[QueueId],
        overrides: &Overrides,
    ) -> Result<RecordedDay, ReplayError> {
        let mut alt = self.clone();
        for q in queues {
            if !self.queues.iter().any(|r| r.config.id == *q) {
                return Err(input(format!(
                    "--queue {q} is not a queue of the recorded period"
                )));
            }
        }
        if let Some(s) = strategy {
            for q in &mut alt.queues {
                if queues.is_empty() || queues.contains(&q.config.id) {
                    q.config.strategy = s;
                }
            }
        }
        for o in &overrides.queues {
            let q = alt
                .queues
                .iter_mut()
                .find(|q| q.config.id == o.id)
                .ok_or_else(|| {
                    input(format!(
                        "the overrides name queue {}, which is not recorded",
                        o.id
                    ))
                })?;
            q.config = o.clone();
        }
        for o in &overrides.agents {
            let a = alt
                .agents
                .iter_mut()
                .find(|a| a.config.id == o.id)
                .ok_or_else(|| {
                    input(format!(
                        "the overrides name agent {}, which is not recorded",
                        o.id
                    ))
                })?;
            a.config = o.clone();
        }
        Ok(alt)
    }
}

/// One run's figures for a queue or the total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Figures {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Left without an agent otherwise (overflow to a flow, unservable).
    pub left: u64,
    /// Abandoned over offered, in %.
    pub abandoned_pct: Option<f64>,
    /// Answered within the queue's threshold over offered, in %.
    pub service_level_pct: Option<f64>,
    pub asa_secs: Option<f64>,
}

impl Figures {
    fn of(s: &Stats) -> Self {
        let pct = |n: u64| (s.offered > 0).then(|| 100.0 * n as f64 / s.offered as f64);
        Self {
            offered: s.offered,
            answered: s.answered,
            abandoned: s.abandoned,
            left: s.left,
            abandoned_pct: pct(s.abandoned),
            service_level_pct: pct(s.answered_within),
            asa_secs: (s.answered > 0)
                .then(|| s.wait_answered_ms as f64 / s.answered as f64 / 1000.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub abandoned_pct: Option<f64>,
    pub service_level_pct: Option<f64>,
    pub asa_secs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compared {
    /// The queue (absent for the total).
    pub queue_id: Option<QueueId>,
    pub name: String,
    pub baseline_strategy: Option<Strategy>,
    pub alternative_strategy: Option<Strategy>,
    pub baseline: Figures,
    pub alternative: Figures,
    /// Alternative minus baseline.
    pub difference: Difference,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub tenant_id: TenantId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub calls: usize,
    pub agents: usize,
    pub queues: Vec<Compared>,
    pub total: Compared,
}

fn add(a: &mut Stats, b: &Stats) {
    a.offered += b.offered;
    a.answered += b.answered;
    a.abandoned += b.abandoned;
    a.waited += b.waited;
    a.answered_within += b.answered_within;
    a.wait_answered_ms += b.wait_answered_ms;
    a.wait_abandoned_ms += b.wait_abandoned_ms;
    a.left += b.left;
    a.wait_left_ms += b.wait_left_ms;
    a.handle_ms += b.handle_ms;
}

/// Runs the day through the real engine: per-queue stats (by id) and total.
pub fn run(day: &RecordedDay) -> Result<(BTreeMap<QueueId, Stats>, Stats), ReplayError> {
    day.check()?;
    let mut engine = Engine::new();
    for s in &day.skills {
        engine.upsert_skill(*s);
    }
    // Overflow targets first, as the service loads them.
    let mut pending: Vec<&RecordedQueue> = day.queues.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for q in pending {
            match engine.upsert_queue(0, q.config.clone()) {
                Ok(_) => {}
                Err(super::engine::ConfigError::UnknownQueue(_)) => rest.push(q),
                Err(e) => return Err(input(format!("queue {:?}: {e}", q.name))),
            }
        }
        if rest.len() == before {
            return Err(input("queues overflow to queues that are not recorded"));
        }
        pending = rest;
    }
    for a in &day.agents {
        engine
            .upsert_agent(0, a.config.clone())
            .map_err(|e| input(format!("agent {:?}: {e}", a.name)))?;
    }
    // One simulator queue per (queue, channel) the calls use.
    let mut lanes: Vec<(QueueId, Channel)> = Vec::new();
    let mut calls = Vec::with_capacity(day.calls.len());
    for c in &day.calls {
        let lane = match lanes.iter().position(|l| *l == (c.queue, c.channel)) {
            Some(i) => i,
            None => {
                lanes.push((c.queue, c.channel));
                lanes.len() - 1
            }
        };
        calls.push(Call {
            arrival: c.arrival_ms,
            queue: lane,
            handle: c.handle_ms,
            wrap_up: c.wrap_up_ms,
            patience: c.patience_ms,
        });
    }
    let thresholds = lanes
        .iter()
        .map(|(q, _)| {
            day.queues
                .iter()
                .find(|r| r.config.id == *q)
                .map_or(0, |r| r.config.service_level.threshold_ms)
        })
        .collect();
    let until = (day.to - day.from).num_milliseconds().max(1) as Millis;
    let measure = Measure {
        thresholds,
        ..Measure::new(lanes.len(), 0, until, 0)
    };
    let agents = day.agents.iter().map(|a| a.config.id).collect();
    let mut router = EngineRouter::new(engine, lanes.clone(), agents)?;
    let report = simulate(&mut router, calls, &measure)?;
    let mut per: BTreeMap<QueueId, Stats> = day
        .queues
        .iter()
        .map(|q| (q.config.id, Stats::default()))
        .collect();
    for (i, (q, _)) in lanes.iter().enumerate() {
        add(per.entry(*q).or_default(), &report.queues[i]);
    }
    Ok((per, report.total))
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

fn compared(
    queue_id: Option<QueueId>,
    name: String,
    strategies: (Option<Strategy>, Option<Strategy>),
    a: &Stats,
    b: &Stats,
) -> Compared {
    let (fa, fb) = (Figures::of(a), Figures::of(b));
    Compared {
        queue_id,
        name,
        baseline_strategy: strategies.0,
        alternative_strategy: strategies.1,
        difference: Difference {
            abandoned_pct: diff(fa.abandoned_pct, fb.abandoned_pct),
            service_level_pct: diff(fa.service_level_pct, fb.service_level_pct),
            asa_secs: diff(fa.asa_secs, fb.asa_secs),
        },
        baseline: fa,
        alternative: fb,
    }
}

/// Runs both and compares them (same calls: common random numbers).
pub fn compare(
    baseline: &RecordedDay,
    alternative: &RecordedDay,
) -> Result<Comparison, ReplayError> {
    let (qa, ta) = run(baseline)?;
    let (qb, tb) = run(alternative)?;
    let strategy = |d: &RecordedDay, q: QueueId| {
        d.queues
            .iter()
            .find(|r| r.config.id == q)
            .map(|r| r.config.strategy)
    };
    let queues = baseline
        .queues
        .iter()
        .map(|q| {
            let id = q.config.id;
            compared(
                Some(id),
                q.name.clone(),
                (strategy(baseline, id), strategy(alternative, id)),
                &qa[&id],
                &qb[&id],
            )
        })
        .collect();
    Ok(Comparison {
        tenant_id: baseline.tenant_id,
        from: baseline.from,
        to: baseline.to,
        calls: baseline.calls.len(),
        agents: baseline.agents.len(),
        queues,
        total: compared(None, "total".into(), (None, None), &ta, &tb),
    })
}

/// The side-by-side table.
pub fn table(c: &Comparison) -> String {
    use std::fmt::Write;
    let f1 = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let d1 = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{v:+.1}"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Replay of {} to {}: {} calls, {} agents (baseline: recorded configuration; alternative: as asked)",
        c.from.to_rfc3339(),
        c.to.to_rfc3339(),
        c.calls,
        c.agents
    );
    let _ = writeln!(
        out,
        "{:<24} {:>17} {:>17} {:>23} {:>23} {:>23}",
        "queue (strategy)",
        "offered base/alt",
        "answered base/alt",
        "abandoned % base/alt/Δ",
        "SL % base/alt/Δ",
        "ASA s base/alt/Δ"
    );
    for r in c.queues.iter().chain(std::iter::once(&c.total)) {
        let name = match (r.baseline_strategy, r.alternative_strategy) {
            (Some(a), Some(b)) if a != b => format!("{} ({}→{})", r.name, a.as_str(), b.as_str()),
            (Some(a), _) => format!("{} ({})", r.name, a.as_str()),
            _ => r.name.clone(),
        };
        let trio = |a: Option<f64>, b: Option<f64>, d: Option<f64>| {
            format!("{}/{}/{}", f1(a), f1(b), d1(d))
        };
        let _ = writeln!(
            out,
            "{:<24} {:>17} {:>17} {:>23} {:>23} {:>23}",
            name,
            format!("{}/{}", r.baseline.offered, r.alternative.offered),
            format!("{}/{}", r.baseline.answered, r.alternative.answered),
            trio(
                r.baseline.abandoned_pct,
                r.alternative.abandoned_pct,
                r.difference.abandoned_pct
            ),
            trio(
                r.baseline.service_level_pct,
                r.alternative.service_level_pct,
                r.difference.service_level_pct
            ),
            trio(
                r.baseline.asa_secs,
                r.alternative.asa_secs,
                r.difference.asa_secs
            ),
        );
    }
    out
}

/// `2026-03-01` (midnight UTC; as `to`, the end of that day) or RFC 3339.
pub fn parse_time(s: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        format!("{s:?} is neither a date (2026-03-01) nor an RFC 3339 time (2026-03-01T08:00:00Z)")
    })?;
    let d = if end_of_day {
        d.succ_opt().unwrap_or(d)
    } else {
        d
    };
    Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}

/// Extracts a period of one tenant from the database (every query filtered
/// by the tenant).
pub async fn extract(
    db: &DatabaseConnection,
    tenant: TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<RecordedDay, ReplayError> {
    use super::catalog::{agent, agent_skill, queue, queue_skill, skill};
    use crate::interactions::entity::{event, interaction};
    if from >= to {
        return Err(input(format!("--from {from} must be before --to {to}")));
    }
    let skills: Vec<SkillId> = skill::Entity::find()
        .filter(skill::Column::TenantId.eq(tenant))
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut qskills: HashMap<QueueId, Vec<queue_skill::Model>> = HashMap::new();
    for s in queue_skill::Entity::find()
        .filter(queue_skill::Column::TenantId.eq(tenant))
        .all(db)
        .await?
    {
        qskills.entry(s.queue_id).or_default().push(s);
    }
    let mut queues = Vec::new();
    for q in queue::Entity::find()
        .filter(queue::Column::TenantId.eq(tenant))
        .order_by_asc(queue::Column::Name)
        .all(db)
        .await?
    {
        let c =
            super::service::queue_config(&q, qskills.get(&q.id).map(Vec::as_slice).unwrap_or(&[]))
                .map_err(|e| input(e.to_string()))?;
        queues.push(RecordedQueue {
            name: q.name,
            config: c,
        });
    }
    let mut askills: HashMap<AgentId, Vec<agent_skill::Model>> = HashMap::new();
    for s in agent_skill::Entity::find()
        .filter(agent_skill::Column::TenantId.eq(tenant))
        .all(db)
        .await?
    {
        askills.entry(s.agent_id).or_default().push(s);
    }
    let users: HashMap<crate::ids::UserId, String> = crate::iam::entity::user::Entity::find()
        .filter(crate::iam::entity::user::Column::TenantId.eq(tenant))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.display_name))
        .collect();
    let mut agents = Vec::new();
    for a in agent::Entity::find()
        .filter(agent::Column::TenantId.eq(tenant))
        .order_by_asc(agent::Column::CreatedAt)
        .all(db)
        .await?
    {
        let c =
            super::service::agent_config(&a, askills.get(&a.id).map(Vec::as_slice).unwrap_or(&[]))
                .map_err(|e| input(e.to_string()))?;
        agents.push(RecordedAgent {
            name: users.get(&a.user_id).cloned().unwrap_or_default(),
            config: c,
        });
    }
    // The interactions first routed in the period, then their timelines.
    let routed = event::Entity::find()
        .filter(event::Column::TenantId.eq(tenant))
        .filter(event::Column::Kind.eq("routed"))
        .filter(event::Column::OccurredAt.gte(from))
        .filter(event::Column::OccurredAt.lt(to))
        .order_by_asc(event::Column::Id)
        .all(db)
        .await?;
    let mut calls = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let ms = |t: DateTime<Utc>| t.timestamp_millis().max(0) as Millis;
    for r in routed {
        if !seen.insert(r.interaction_id) {
            continue;
        }
        let Some(queue) = r.data["queue_id"]
            .as_str()
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .map(QueueId)
        else {
            continue;
        };
        let Some(i) = interaction::Entity::find_by_id(r.interaction_id)
            .filter(interaction::Column::TenantId.eq(tenant))
            .one(db)
            .await?
        else {
            continue;
        };
        let timeline = event::Entity::find()
            .filter(event::Column::TenantId.eq(tenant))
            .filter(event::Column::InteractionId.eq(r.interaction_id))
            .filter(event::Column::Seq.gt(r.seq))
            .order_by_asc(event::Column::Seq)
            .all(db)
            .await?;
        let at = |kind: &str| {
            timeline
                .iter()
                .find(|e| e.kind == kind)
                .map(|e| ms(e.occurred_at))
        };
        let enqueued = r.data["enqueued_at"]
            .as_u64()
            .unwrap_or_else(|| ms(r.occurred_at));
        let (connected, wrap, closed, abandoned) = (
            at("connected"),
            at("wrap_up_started"),
            at("closed"),
            at("abandoned"),
        );
        let (handle, wrap_up, patience) = match connected {
            Some(c) => {
                let talk_end = wrap.or(closed).unwrap_or(c);
                let wrap_end = if wrap.is_some() {
                    closed.unwrap_or(talk_end)
                } else {
                    talk_end
                };
                (
                    talk_end.saturating_sub(c),
                    wrap_end.saturating_sub(talk_end),
                    None,
                )
            }
            None => (
                0,
                0,
                abandoned.or(closed).map(|a| a.saturating_sub(enqueued)),
            ),
        };
        let arrival = enqueued.saturating_sub(ms(from));
        calls.push(RecordedCall {
            interaction: Some(i.id),
            queue,
            channel: crate::interactions::service::parse_enum(&i.channel),
            arrival_ms: arrival,
            handle_ms: handle,
            wrap_up_ms: wrap_up,
            patience_ms: patience,
        });
    }
    calls.sort_by_key(|c| c.arrival_ms);
    let span = ms(to).saturating_sub(ms(from));
    calls.retain(|c| c.arrival_ms < span);
    Ok(RecordedDay {
        tenant_id: tenant,
        from,
        to,
        skills,
        queues,
        agents,
        calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::engine::{AgentSkill, SkillReq};

    fn u(n: u64) -> uuid::Uuid {
        uuid::Uuid::from_u64_pair(9, n)
    }

    /// Queue S needs skill X (agent A only), H needs Z (B only), G needs Y
    /// (A level 1, B level 5). Under longest-idle the long G call goes to A
    /// (idle longer: B just had an H call), and the S callers, who wait 20 s
    /// at most, abandon; best-proficiency sends it to B.
    pub fn day() -> RecordedDay {
        let (x, y, z) = (SkillId(u(1)), SkillId(u(2)), SkillId(u(3)));
        let q = |n: u64, name: &str, s: SkillId| RecordedQueue {
            name: name.into(),
            config: QueueConfig {
                required: vec![SkillReq {
                    skill: s,
                    min_level: 1,
                }],
                ..QueueConfig::new(QueueId(u(n)), Strategy::LongestIdle)
            },
        };
        let a = |n: u64, name: &str, skills: &[(SkillId, u8)]| RecordedAgent {
            name: name.into(),
            config: AgentConfig {
                wrap_up_ms: Some(0),
                ..AgentConfig::new(
                    AgentId(u(n)),
                    skills
                        .iter()
                        .map(|&(skill, level)| AgentSkill { skill, level })
                        .collect(),
                )
            },
        };
        let call = |queue: u64, at: u64, handle: u64, patience: Option<u64>| RecordedCall {
            interaction: None,
            queue: QueueId(u(queue)),
            channel: Channel::Voice,
            arrival_ms: at * 1000,
            handle_ms: handle * 1000,
            wrap_up_ms: 0,
            patience_ms: patience.map(|p| p * 1000),
        };
        let from: DateTime<Utc> = "2026-03-02T00:00:00Z".parse().unwrap();
        RecordedDay {
            tenant_id: TenantId(u(99)),
            from,
            to: from + chrono::Duration::hours(1),
            skills: vec![x, y, z],
            queues: vec![q(10, "S", x), q(11, "G", y), q(12, "H", z)],
            agents: vec![a(20, "A", &[(x, 5), (y, 1)]), a(21, "B", &[(y, 5), (z, 5)])],
            calls: vec![
                call(12, 0, 5, None),
                call(11, 10, 200, None),
                call(10, 11, 10, Some(20)),
                call(10, 12, 10, Some(20)),
                call(10, 13, 10, Some(20)),
                call(10, 14, 10, Some(20)),
                call(10, 15, 10, Some(20)),
            ],
        }
    }

    #[test]
    fn best_proficiency_keeps_the_specialist_free() {
        let base = day();
        let alt = base
            .alternative(Some(Strategy::BestProficiency), &[], &Overrides::default())
            .unwrap();
        let c = compare(&base, &alt).unwrap();
        assert_eq!(
            (c.total.baseline.offered, c.total.alternative.offered),
            (7, 7)
        );
        assert_eq!(
            (c.total.baseline.answered, c.total.baseline.abandoned),
            (2, 5)
        );
        // S1 at once, S2 after 9 s, S3 after 18 s; S4 and S5 give up.
        assert_eq!(
            (c.total.alternative.answered, c.total.alternative.abandoned),
            (5, 2)
        );
        let s = &c.queues[0];
        assert_eq!(s.name, "S");
        assert_eq!(s.alternative.asa_secs, Some(9.0));
        assert_eq!(s.alternative.service_level_pct, Some(60.0));
        assert_eq!(s.baseline.service_level_pct, Some(0.0));
        assert_eq!(s.difference.abandoned_pct, Some(-60.0));
        assert!(table(&c).contains("S (longest_idle→best_proficiency)"));
        // Only G changed: the same result.
        let g = base
            .alternative(
                Some(Strategy::BestProficiency),
                &[QueueId(u(11))],
                &Overrides::default(),
            )
            .unwrap();
        assert_eq!(
            compare(&base, &g).unwrap().total.alternative,
            c.total.alternative
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let base = day();
        assert!(
            base.alternative(None, &[QueueId(u(5))], &Overrides::default())
                .is_err()
        );
        let mut bad = base.clone();
        bad.calls.swap(0, 1);
        assert!(run(&bad).unwrap_err().to_string().contains("sorted"));
        let mut bad = base.clone();
        bad.to = bad.from;
        assert!(run(&bad).is_err());
        assert_eq!(
            parse_time("2026-03-02", true).unwrap().to_rfc3339(),
            "2026-03-03T00:00:00+00:00"
        );
        assert!(parse_time("yesterday", false).is_err());
        let json = serde_json::to_string(&base).unwrap();
        assert_eq!(serde_json::from_str::<RecordedDay>(&json).unwrap(), base);
    }
}
