//! Property tests: random interleavings of arrivals, answers, rejections,
//! timeouts (time passing), hang-ups, presence and configuration changes.
//! After every step: the engine's own brute-force invariants, and an
//! outside model built only from the returned actions must agree with the
//! engine's answers (every interaction in exactly one state; places kept).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::{
    ProptestConfig, Strategy as Gen, TestCaseError, any, prop_assert, prop_assert_eq, prop_oneof,
    proptest,
};

use super::tests::{aid, iid, qid, sid};
use super::*;

const SKILLS: u128 = 3;
const QUEUES: u8 = 4;
const AGENTS: u8 = 5;

#[derive(Clone, Debug)]
struct QueueGen {
    strategy: u8,
    priority: i32,
    channels: u8,
    reqs: Vec<(u8, u8)>,
    /// Steps: how many of the requirements to drop / levels to lower.
    steps: u8,
    max_wait: Option<u32>,
    max_length: Option<u8>,
    /// 0: none, 1: a flow, 2..: queue (n - 2) % QUEUES.
    overflow: u8,
    offer_timeout: u32,
    ring_all_max: u8,
}

#[derive(Clone, Debug)]
struct AgentGen {
    skills: Vec<(u8, u8)>,
    cap: [u8; 4],
    blocks: bool,
    max_no_answers: u32,
    wrap: u8,
}

#[derive(Clone, Debug)]
enum Op {
    Arrive {
        queue: u8,
        channel: u8,
        priority: i8,
        extra: Option<(u8, u8)>,
        callback: bool,
        back: u16,
    },
    Accept(u16, u8),
    Reject(u16, u8),
    HangUp(u16),
    EndWrapUp(u8),
    Presence(u8, u8),
    Advance(u32),
    UpsertAgent(u8, AgentGen),
    RemoveAgent(u8),
    UpsertQueue(u8, QueueGen),
    RemoveQueue(u8),
    ToCallback(u16),
}

fn queue_gen() -> impl Gen<Value = QueueGen> {
    (
        (0u8..5, 0i32..3, 1u8..16),
        proptest::collection::vec((0u8..SKILLS as u8, 1u8..=5), 0..3),
        (0u8..3, proptest::option::of(5_000u32..60_000)),
        (proptest::option::of(0u8..4), 0u8..8),
        (1_000u32..20_000, 1u8..4),
    )
        .prop_map(
            |(
                (strategy, priority, channels),
                reqs,
                (steps, max_wait),
                (max_length, overflow),
                (offer_timeout, ring_all_max),
            )| {
                QueueGen {
                    strategy,
                    priority,
                    channels,
                    reqs,
                    steps,
                    max_wait,
                    max_length,
                    overflow,
                    offer_timeout,
                    ring_all_max,
                }
            },
        )
}

fn agent_gen() -> impl Gen<Value = AgentGen> {
    (
        proptest::collection::vec((0u8..SKILLS as u8, 1u8..=5), 0..4),
        (0u8..2, 0u8..4, 0u8..2, 0u8..2),
        any::<bool>(),
        1u32..3,
        0u8..4,
    )
        .prop_map(
            |(skills, (v, c, s, e), blocks, max_no_answers, wrap)| AgentGen {
                skills,
                cap: [v, c, s, e],
                blocks,
                max_no_answers,
                wrap,
            },
        )
}

fn op() -> impl Gen<Value = Op> {
    prop_oneof![
        6 => (0..QUEUES, 0u8..4, -1i8..3, proptest::option::of((0u8..SKILLS as u8, 1u8..=5)), proptest::bool::weighted(0.1), 0u16..3)
            .prop_map(|(queue, channel, priority, extra, callback, back)| Op::Arrive { queue, channel, priority, extra: extra.filter(|_| priority == 2), callback, back }),
        5 => (any::<u16>(), any::<u8>()).prop_map(|(i, a)| Op::Accept(i, a)),
        2 => (any::<u16>(), any::<u8>()).prop_map(|(i, a)| Op::Reject(i, a)),
        3 => any::<u16>().prop_map(Op::HangUp),
        2 => (0..AGENTS).prop_map(Op::EndWrapUp),
        3 => (0..AGENTS, 0u8..4).prop_map(|(a, p)| Op::Presence(a, p)),
        4 => prop_oneof![0u32..2_000, 0u32..40_000].prop_map(Op::Advance),
        1 => (0..AGENTS, agent_gen()).prop_map(|(a, g)| Op::UpsertAgent(a, g)),
        1 => (0..AGENTS).prop_map(Op::RemoveAgent),
        1 => (0..QUEUES, queue_gen()).prop_map(|(q, g)| Op::UpsertQueue(q, g)),
        1 => (0..QUEUES).prop_map(Op::RemoveQueue),
        1 => any::<u16>().prop_map(Op::ToCallback),
    ]
}

fn channel(n: u8) -> Channel {
    CHANNELS[n as usize % 4]
}

fn queue_config(n: u8, g: &QueueGen) -> QueueConfig {
    let strategy = [
        Strategy::LongestIdle,
        Strategy::LeastOccupied,
        Strategy::RoundRobin,
        Strategy::BestProficiency,
        Strategy::RingAll,
    ][g.strategy as usize % 5];
    let mut q = QueueConfig::new(qid(n as u128), strategy);
    q.priority = g.priority;
    q.channels = (0..4)
        .filter(|c| g.channels & (1 << c) != 0)
        .map(channel)
        .collect();
    let mut reqs: Vec<SkillReq> = Vec::new();
    for &(s, l) in &g.reqs {
        if !reqs.iter().any(|r| r.skill == sid(s as u128)) {
            reqs.push(SkillReq {
                skill: sid(s as u128),
                min_level: l,
            });
        }
    }
    q.required = reqs.clone();
    // Each step lowers every level by one, or drops the last skill.
    let mut prev = reqs;
    for k in 0..g.steps {
        let mut next = prev.clone();
        if k % 2 == 0 {
            for r in &mut next {
                r.min_level = (r.min_level - 1).max(1);
            }
        } else {
            next.pop();
        }
        q.escalation.push(EscalationStep {
            after_ms: 10_000 * (k as u64 + 1),
            required: next.clone(),
        });
        prev = next;
    }
    q.overflow = match g.overflow {
        0 => None,
        1 => Some(OverflowTarget::Flow("voicemail".into())),
        t => Some(OverflowTarget::Queue(qid(((t - 2) % QUEUES) as u128))),
    };
    if q.overflow.is_some() {
        q.max_wait_ms = g.max_wait.map(u64::from);
        q.max_length = g.max_length.map(usize::from);
    }
    q.offer_timeout_ms = g.offer_timeout as u64;
    q.ring_all_max = g.ring_all_max as usize;
    q
}

fn agent_config(n: u8, g: &AgentGen) -> AgentConfig {
    let mut skills: Vec<AgentSkill> = Vec::new();
    for &(s, l) in &g.skills {
        if !skills.iter().any(|x| x.skill == sid(s as u128)) {
            skills.push(AgentSkill {
                skill: sid(s as u128),
                level: l,
            });
        }
    }
    let mut a = AgentConfig::new(aid(n as u128), skills);
    a.capacity = Capacity {
        voice: g.cap[0],
        chat: g.cap[1],
        sms: g.cap[2],
        email: g.cap[3],
    };
    a.voice_blocks_other = g.blocks;
    a.max_no_answers = g.max_no_answers;
    a.wrap_up_ms = match g.wrap {
        0 => Some(0),
        1 => None,
        w => Some(3_000 * w as u64),
    };
    a
}

/// What the actions say about each interaction.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Waiting(QueueId),
    Offered(QueueId, BTreeSet<AgentId>),
    Connected(QueueId, AgentId),
}

struct Model {
    now: Millis,
    next: u128,
    seen: BTreeMap<InteractionId, Seen>,
    /// (priority, enqueued_at, arrival order): the place an interaction keeps.
    place: BTreeMap<InteractionId, (i32, Millis, u128)>,
    ring_all: BTreeSet<QueueId>,
    offers: usize,
}

impl Model {
    fn queue_of(s: &Seen) -> QueueId {
        match s {
            Seen::Waiting(q) | Seen::Offered(q, _) | Seen::Connected(q, _) => *q,
        }
    }

    fn apply(&mut self, acts: &[Action]) -> Result<(), TestCaseError> {
        for a in acts {
            match a {
                Action::Offer {
                    interaction,
                    agents,
                    decision,
                    expires_at,
                    ..
                } => {
                    let s = self.seen.get(interaction).cloned();
                    let Some(Seen::Waiting(q)) = s else {
                        return Err(TestCaseError::fail(format!(
                            "offer of {interaction} in {s:?}"
                        )));
                    };
                    prop_assert_eq!(decision.interaction, *interaction);
                    prop_assert_eq!(decision.queue, q);
                    prop_assert_eq!(&decision.winners, agents);
                    prop_assert!(*expires_at > decision.at);
                    let ring = decision.strategy == Strategy::RingAll
                        && decision.channel == Channel::Voice;
                    prop_assert!(agents.len() == 1 || ring, "several agents without ring-all");
                    prop_assert!(!agents.is_empty());
                    let cands: BTreeSet<_> = decision.candidates.iter().map(|c| c.agent).collect();
                    prop_assert!(
                        agents.iter().all(|a| cands.contains(a)),
                        "winner not among candidates"
                    );
                    if decision.trigger == Trigger::InteractionWaiting
                        && matches!(
                            decision.strategy,
                            Strategy::LongestIdle
                                | Strategy::LeastOccupied
                                | Strategy::BestProficiency
                        )
                    {
                        prop_assert_eq!(decision.candidates[0].agent, agents[0]);
                        let scores: Vec<_> = decision.candidates.iter().map(|c| c.score).collect();
                        prop_assert!(
                            scores.windows(2).all(|w| w[0] >= w[1]),
                            "candidates out of order: {:?}",
                            scores
                        );
                    }
                    self.offers += 1;
                    self.seen.insert(
                        *interaction,
                        Seen::Offered(q, agents.iter().copied().collect()),
                    );
                }
                Action::OfferWithdrawn {
                    interaction, agent, ..
                } => match self.seen.get_mut(interaction) {
                    Some(Seen::Offered(_, agents)) => {
                        prop_assert!(agents.remove(agent), "withdrawn from an agent not ringing")
                    }
                    s => {
                        return Err(TestCaseError::fail(format!(
                            "withdrawal of {interaction} in {s:?}"
                        )));
                    }
                },
                Action::Requeued {
                    interaction, queue, ..
                } => {
                    let s = self.seen.get(interaction).cloned();
                    prop_assert!(
                        matches!(&s, Some(Seen::Offered(q, _)) if q == queue),
                        "requeue of {} in {:?}",
                        interaction,
                        s
                    );
                    self.seen.insert(*interaction, Seen::Waiting(*queue));
                }
                Action::Connected {
                    interaction,
                    agent,
                    queue,
                    ..
                } => {
                    let s = self.seen.get(interaction).cloned();
                    prop_assert!(
                        matches!(&s, Some(Seen::Offered(q, a)) if q == queue && a.contains(agent)),
                        "connect of {} in {:?}",
                        interaction,
                        s
                    );
                    self.seen
                        .insert(*interaction, Seen::Connected(*queue, *agent));
                }
                Action::Ended {
                    interaction, agent, ..
                } => {
                    let s = self.seen.remove(interaction);
                    prop_assert!(
                        matches!(&s, Some(Seen::Connected(_, a)) if a == agent),
                        "end of {} in {:?}",
                        interaction,
                        s
                    );
                }
                Action::Abandoned {
                    interaction, queue, ..
                } => {
                    let s = self.seen.remove(interaction);
                    prop_assert!(
                        matches!(&s, Some(Seen::Waiting(q) | Seen::Offered(q, _)) if q == queue),
                        "abandon of {} in {:?}",
                        interaction,
                        s
                    );
                }
                Action::Overflowed {
                    interaction,
                    from,
                    to,
                    ..
                } => {
                    let s = self.seen.remove(interaction);
                    prop_assert!(
                        matches!(&s, Some(Seen::Waiting(q)) if q == from),
                        "overflow of {} in {:?}",
                        interaction,
                        s
                    );
                    if let OverflowTarget::Queue(t) = to {
                        self.seen.insert(*interaction, Seen::Waiting(*t));
                    }
                }
                Action::Escalated {
                    interaction, queue, ..
                } => {
                    let s = self.seen.get(interaction);
                    prop_assert!(
                        matches!(s, Some(Seen::Waiting(q)) if q == queue),
                        "escalation of {} in {:?}",
                        interaction,
                        s
                    );
                }
                Action::AgentAway { .. }
                | Action::WrapUpStarted { .. }
                | Action::WrapUpEnded { .. }
                | Action::ServabilityChanged { .. } => {}
            }
        }
        Ok(())
    }

    /// The model and the engine agree on every interaction, and waiting
    /// interactions sit in the order of the places they keep.
    fn compare(&self, e: &Engine) -> Result<(), TestCaseError> {
        let held: BTreeSet<_> = e.interactions().into_iter().collect();
        let known: BTreeSet<_> = self.seen.keys().copied().collect();
        prop_assert_eq!(&held, &known);
        let mut lines: BTreeMap<(QueueId, usize), Vec<(usize, InteractionId)>> = BTreeMap::new();
        for (i, s) in &self.seen {
            let st = e.interaction_state(*i);
            match (s, &st) {
                (Seen::Waiting(q), Some(InteractionState::Waiting { queue, .. })) if q == queue => {
                    let p = e.position(*i).expect("waiting has a place");
                    lines
                        .entry((*q, ch(p.channel)))
                        .or_default()
                        .push((p.place, *i));
                }
                (Seen::Offered(q, a), Some(InteractionState::Offered { queue, agents, .. }))
                    if q == queue =>
                {
                    let engine: BTreeSet<_> = agents.iter().copied().collect();
                    prop_assert_eq!(a, &engine);
                }
                (Seen::Connected(q, a), Some(InteractionState::Connected { queue, agent }))
                    if q == queue && a == agent => {}
                _ => {
                    return Err(TestCaseError::fail(format!(
                        "{i}: model {s:?}, engine {st:?} (queue {})",
                        Model::queue_of(s)
                    )));
                }
            }
        }
        for ((q, c), mut line) in lines {
            line.sort();
            let places: Vec<usize> = line.iter().map(|l| l.0).collect();
            prop_assert_eq!(
                places,
                (1..=line.len()).collect::<Vec<_>>(),
                "places in {} {:?}",
                q,
                c
            );
            let keys: Vec<_> = line
                .iter()
                .map(|(_, i)| {
                    let (p, t, n) = self.place[i];
                    (-(p as i64), t, n)
                })
                .collect();
            prop_assert!(
                keys.windows(2).all(|w| w[0] < w[1]),
                "{} {:?} out of place order: {:?}",
                q,
                c,
                keys
            );
        }
        Ok(())
    }
}

fn pick_offer(m: &Model, i: u16, a: u8) -> Option<(AgentId, InteractionId)> {
    let offered: Vec<_> = m
        .seen
        .iter()
        .filter_map(|(id, s)| match s {
            Seen::Offered(_, agents) => Some((*id, agents.iter().copied().collect::<Vec<_>>())),
            _ => None,
        })
        .collect();
    if offered.is_empty() {
        return None;
    }
    let (id, agents) = &offered[i as usize % offered.len()];
    Some((agents[a as usize % agents.len()], *id))
}

fn pick_any(m: &Model, i: u16) -> Option<InteractionId> {
    let ids: Vec<_> = m.seen.keys().copied().collect();
    (!ids.is_empty()).then(|| ids[i as usize % ids.len()])
}

/// Runs the ops; returns how many offers were made.
fn run(setup: Vec<(QueueGen, AgentGen)>, ops: Vec<Op>) -> Result<usize, TestCaseError> {
    let mut e = Engine::new();
    for s in 0..SKILLS {
        e.upsert_skill(sid(s));
    }
    let mut m = Model {
        now: 0,
        next: 0,
        seen: BTreeMap::new(),
        place: BTreeMap::new(),
        ring_all: BTreeSet::new(),
        offers: 0,
    };
    for (n, (qg, ag)) in setup.iter().enumerate() {
        // Setup configs may be refused (e.g. an overflow to a queue not yet made).
        if let Ok(acts) = e.upsert_queue(0, queue_config(n as u8 % QUEUES, qg)) {
            m.apply(&acts)?;
        }
        let acts = e
            .upsert_agent(0, agent_config(n as u8 % AGENTS, ag))
            .unwrap();
        m.apply(&acts)?;
        let acts = e
            .set_presence(0, aid((n as u8 % AGENTS) as u128), Presence::Available)
            .unwrap();
        m.apply(&acts)?;
    }
    for op in ops {
        let now = m.now;
        let r: Result<Vec<Action>, String> = match &op {
            Op::Arrive {
                queue,
                channel: c,
                priority,
                extra,
                callback,
                back,
            } => {
                let id = iid(m.next);
                m.next += 1;
                let mut a = Arrival::new(id, qid(*queue as u128), channel(*c));
                a.priority = *priority as i32;
                a.callback = *callback;
                a.enqueued_at = Some(now.saturating_sub(*back as u64 * 1_000));
                a.extra_skills = extra
                    .iter()
                    .map(|&(s, l)| SkillReq {
                        skill: sid(s as u128),
                        min_level: l,
                    })
                    .collect();
                let r = e.arrive(now, a.clone()).map_err(|x| x.to_string());
                if r.is_ok() {
                    m.seen.insert(id, Seen::Waiting(a.queue));
                    m.place
                        .insert(id, (a.priority, a.enqueued_at.unwrap(), m.next));
                }
                r
            }
            Op::Accept(i, a) => match pick_offer(&m, *i, *a) {
                Some((agent, id)) => e.accept(now, agent, id).map_err(|x| x.to_string()),
                None => continue,
            },
            Op::Reject(i, a) => match pick_offer(&m, *i, *a) {
                Some((agent, id)) => {
                    let r = e.reject(now, agent, id).map_err(|x| x.to_string());
                    if r.is_ok()
                        && let Some(Seen::Offered(_, agents)) = m.seen.get_mut(&id)
                    {
                        agents.remove(&agent);
                    }
                    r
                }
                None => continue,
            },
            Op::HangUp(i) => match pick_any(&m, *i) {
                Some(id) => e.hang_up(now, id).map_err(|x| x.to_string()),
                None => continue,
            },
            Op::EndWrapUp(a) => e
                .end_wrap_up(now, aid(*a as u128))
                .map_err(|x| x.to_string()),
            Op::Presence(a, p) => {
                let p = match p {
                    0 => Presence::Offline,
                    1 | 2 => Presence::Available,
                    _ => Presence::Away {
                        reason: "break".into(),
                    },
                };
                e.set_presence(now, aid(*a as u128), p)
                    .map_err(|x| x.to_string())
            }
            Op::Advance(ms) => {
                m.now += *ms as u64;
                let acts = e.tick(m.now);
                prop_assert!(e.next_deadline().is_none_or(|d| d > m.now));
                Ok(acts)
            }
            Op::UpsertAgent(a, g) => e
                .upsert_agent(now, agent_config(*a, g))
                .map_err(|x| x.to_string()),
            Op::RemoveAgent(a) => e
                .remove_agent(now, aid(*a as u128))
                .map_err(|x| x.to_string()),
            Op::UpsertQueue(q, g) => {
                let cfg = queue_config(*q, g);
                let ring = cfg.strategy == Strategy::RingAll;
                let r = e.upsert_queue(now, cfg).map_err(|x| x.to_string());
                if r.is_ok() && ring {
                    m.ring_all.insert(qid(*q as u128));
                }
                r
            }
            Op::RemoveQueue(q) => e
                .remove_queue(now, qid(*q as u128))
                .map_err(|x| x.to_string()),
            Op::ToCallback(i) => match pick_any(&m, *i) {
                Some(id) => e.to_callback(now, id).map_err(|x| x.to_string()),
                None => continue,
            },
        };
        // A refused call may still have run due timers: their actions come now.
        let acts = match r {
            Ok(acts) => acts,
            Err(_) => e.take_actions(),
        };
        m.apply(&acts)?;
        if let Err(msg) = e.check_invariants() {
            return Err(TestCaseError::fail(format!("after {op:?}:\n{msg}")));
        }
        m.compare(&e)?;
    }
    Ok(m.offers)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 600,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold_under_random_interleavings(
        setup in proptest::collection::vec((queue_gen(), agent_gen()), 1..6),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(setup, ops)?;
    }
}

/// A busier fixed world: every queue servable, many agents, and only
/// runtime events (no configuration churn), so offers and answers dominate.
#[test]
fn busy_world_keeps_the_invariants_and_makes_offers() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 100,
        failure_persistence: None,
        ..Config::default()
    });
    let offers = std::cell::Cell::new(0usize);
    let runtime_op = op().prop_filter("runtime events only", |o| {
        !matches!(
            o,
            Op::UpsertAgent(..) | Op::RemoveAgent(_) | Op::UpsertQueue(..) | Op::RemoveQueue(_)
        )
    });
    runner
        .run(&proptest::collection::vec(runtime_op, 50..150), |ops| {
            let setup: Vec<(QueueGen, AgentGen)> = (0..QUEUES.max(AGENTS))
                .map(|n| {
                    (
                        QueueGen {
                            strategy: n % 5,
                            priority: (n % 2) as i32,
                            channels: 0b1111,
                            reqs: vec![],
                            steps: 0,
                            max_wait: None,
                            max_length: None,
                            overflow: 0,
                            offer_timeout: 5_000,
                            ring_all_max: 3,
                        },
                        AgentGen {
                            skills: vec![(0, 3), (1, 3), (2, 3)],
                            cap: [1, 2, 1, 1],
                            blocks: n % 2 == 0,
                            max_no_answers: 2,
                            wrap: n % 4,
                        },
                    )
                })
                .collect();
            offers.set(offers.get() + run(setup, ops)?);
            Ok(())
        })
        .unwrap();
    assert!(
        offers.get() > 100,
        "the busy world made only {} offers",
        offers.get()
    );
}
