//! ACD engine benchmark: decisions per second, decision latency and memory
//! with 500 queues, 50 skills and mixed channels, at 1,000, 10,000 and
//! 100,000 agents.
//!
//! `cargo bench --bench acd` runs every size, each in a child process of its
//! own (so one size's freed memory does not blur the next one's RSS);
//! `cargo bench --bench acd -- 10000` runs one size in this process.
//!
//! Workload: Poisson arrivals (70 % of queues voice, 30 % chat) at 95 %
//! (busy) and 70 % (quiet) of the agents' capacity, measured after 15
//! minutes of virtual time, exponential handle times (voice 180 s, chat 300 s),
//! 5 s automatic wrap-up, offers accepted at once (2 % rejected first),
//! queue strategies in rotation (ring-all rings 3), one escalation step at
//! 30 s, maximum wait 120 s to a voicemail flow. Time is virtual (the
//! engine's clock), so only engine work is measured: every engine call is
//! timed, a decision's latency is its call's time (divided among the offers
//! when a call made several), and decisions per second is decisions over
//! the time spent in all engine calls, including the accepts, hang-ups and
//! ticks around them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use switchboard::acd::engine::*;
use switchboard::ids::{AgentId, InteractionId, QueueId, SkillId};
use uuid::Uuid;

const SKILLS: usize = 50;
const QUEUES: usize = 500;
/// Offered load: busy (interactions wait: most decisions are an agent
/// freeing up and taking the best waiting interaction) and quiet (agents
/// wait: most decisions read the free-agent indexes).
const LOADS: [(&str, f64); 2] = [("busy", 0.95), ("quiet", 0.70)];
/// Virtual time simulated before measuring (the system fills up).
const WARM_MS: u64 = 900_000;
const VOICE_AHT_MS: f64 = 180_000.0;
const CHAT_AHT_MS: f64 = 300_000.0;
const WRAP_MS: u64 = 5_000;

fn skill(n: usize) -> SkillId {
    SkillId(Uuid::from_u128(0x5_0000_0000 + n as u128))
}
fn queue_id(n: usize) -> QueueId {
    QueueId(Uuid::from_u128(0x9_0000_0000 + n as u128))
}
fn agent_id(n: usize) -> AgentId {
    AgentId(Uuid::from_u128(0xa_0000_0000 + n as u128))
}
fn ix_id(n: u64) -> InteractionId {
    InteractionId(Uuid::from_u128(0x1_0000_0000_0000 + n as u128))
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

struct World {
    agents: Vec<AgentConfig>,
    queues: Vec<QueueConfig>,
    /// Per channel (0 voice, 1 chat): agents with that capacity and the
    /// queues of that channel they serve at step 0 (arrivals are drawn
    /// agent first, so queues get traffic in proportion to their staff).
    pick: [Vec<(usize, Vec<usize>)>; 2],
    slots: [f64; 2],
}

fn world(n: usize, rng: &mut SmallRng) -> World {
    let mut agents = Vec::with_capacity(n);
    let mut slots = [0.0; 2];
    for a in 0..n {
        let k = rng.random_range(3..=6);
        let mut skills: Vec<AgentSkill> = Vec::new();
        while skills.len() < k {
            let s = skill(rng.random_range(0..SKILLS));
            if !skills.iter().any(|x| x.skill == s) {
                skills.push(AgentSkill {
                    skill: s,
                    level: rng.random_range(1..=5),
                });
            }
        }
        let mut cfg = AgentConfig::new(agent_id(a), skills);
        let kind = rng.random::<f64>();
        cfg.capacity = if kind < 0.60 {
            Capacity {
                voice: 1,
                ..Capacity::default()
            }
        } else if kind < 0.85 {
            Capacity {
                chat: 3,
                ..Capacity::default()
            }
        } else {
            Capacity {
                voice: 1,
                chat: 2,
                ..Capacity::default()
            }
        };
        cfg.voice_blocks_other = true;
        cfg.wrap_up_ms = Some(WRAP_MS);
        slots[0] += cfg.capacity.voice as f64;
        slots[1] += cfg.capacity.chat as f64;
        agents.push(cfg);
    }
    let strategies = [
        Strategy::LongestIdle,
        Strategy::LeastOccupied,
        Strategy::RoundRobin,
        Strategy::BestProficiency,
        Strategy::RingAll,
    ];
    let mut queues = Vec::with_capacity(QUEUES);
    for q in 0..QUEUES {
        let voice = rng.random::<f64>() < 0.7;
        let channel = if voice { Channel::Voice } else { Channel::Chat };
        // Requirements taken from an agent who has the channel: servable.
        let template = loop {
            let a = &agents[rng.random_range(0..n)];
            if a.capacity.get(channel) > 0 {
                break a;
            }
        };
        let k = rng.random_range(1..=2usize).min(template.skills.len());
        let required: Vec<SkillReq> = template.skills[..k]
            .iter()
            .map(|s| SkillReq {
                skill: s.skill,
                min_level: rng.random_range(1..=s.level),
            })
            .collect();
        let mut strategy = strategies[q % strategies.len()];
        if strategy == Strategy::RingAll && !voice {
            strategy = Strategy::LongestIdle;
        }
        let mut cfg = QueueConfig::new(queue_id(q), strategy);
        cfg.priority = rng.random_range(0..3);
        cfg.channels = vec![channel];
        cfg.escalation = vec![EscalationStep {
            after_ms: 30_000,
            required: required
                .iter()
                .map(|r| SkillReq {
                    skill: r.skill,
                    min_level: 1,
                })
                .collect(),
        }];
        cfg.required = required;
        cfg.max_wait_ms = Some(120_000);
        cfg.overflow = Some(OverflowTarget::Flow("voicemail".into()));
        cfg.ring_all_max = 3;
        queues.push(cfg);
    }
    let mut pick: [Vec<(usize, Vec<usize>)>; 2] = [Vec::new(), Vec::new()];
    for (a, cfg) in agents.iter().enumerate() {
        for (c, channel) in [Channel::Voice, Channel::Chat].into_iter().enumerate() {
            if cfg.capacity.get(channel) == 0 {
                continue;
            }
            let qs: Vec<usize> = queues
                .iter()
                .enumerate()
                .filter(|(_, q)| {
                    q.channels[0] == channel
                        && q.required.iter().all(|r| {
                            cfg.skills
                                .iter()
                                .any(|s| s.skill == r.skill && s.level >= r.min_level)
                        })
                })
                .map(|(i, _)| i)
                .collect();
            if !qs.is_empty() {
                pick[c].push((a, qs));
            }
        }
    }
    World {
        agents,
        queues,
        pick,
        slots,
    }
}

fn build(w: &World) -> Engine {
    let mut e = Engine::new();
    for s in 0..SKILLS {
        e.upsert_skill(skill(s));
    }
    for q in &w.queues {
        e.upsert_queue(0, q.clone()).expect("queue");
    }
    for a in &w.agents {
        e.upsert_agent(0, a.clone()).expect("agent");
        e.set_presence(0, a.id, Presence::Available)
            .expect("presence");
    }
    e
}

fn exp(rng: &mut SmallRng, mean: f64) -> u64 {
    (-(1.0 - rng.random::<f64>()).ln() * mean) as u64
}

#[derive(Default)]
struct Measure {
    calls: u64,
    engine_time: Duration,
    decisions: u64,
    agent_triggered: u64,
    samples: Vec<u32>,
    waiting_sum: u64,
    waiting_n: u64,
}

impl Measure {
    fn record(&mut self, dt: Duration, acts: &[Action]) {
        self.calls += 1;
        self.engine_time += dt;
        let offers = acts
            .iter()
            .filter(|a| matches!(a, Action::Offer { .. }))
            .count();
        for a in acts {
            if let Action::Offer { decision, .. } = a
                && decision.trigger == Trigger::AgentAvailable
            {
                self.agent_triggered += 1;
            }
        }
        if offers > 0 {
            self.decisions += offers as u64;
            let per = (dt.as_nanos() / offers as u128) as u32;
            self.samples.extend(std::iter::repeat_n(per, offers));
        }
    }
}

/// Runs the workload until `decisions` are measured (after `WARM_MS`).
fn run(e: &mut Engine, w: &World, rng: &mut SmallRng, load: f64, decisions: u64) -> Measure {
    let rate_per_ms = [
        load * w.slots[0] / (VOICE_AHT_MS + WRAP_MS as f64),
        load * w.slots[1] / (CHAT_AHT_MS + WRAP_MS as f64),
    ];
    let total_rate = rate_per_ms[0] + rate_per_ms[1];
    let mut now: u64 = 0;
    let mut next_arrival = exp(rng, 1.0 / total_rate);
    let mut hangups: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut channel_of: std::collections::HashMap<InteractionId, usize> = Default::default();
    let mut next_ix = 0u64;
    let mut m = Measure::default();
    let mut measuring = false;
    let mut todo: VecDeque<Action> = VecDeque::new();
    loop {
        if !measuring && now >= WARM_MS {
            m = Measure::default();
            measuring = true;
        }
        if measuring && m.decisions >= decisions {
            return m;
        }
        let deadline = e.next_deadline().unwrap_or(u64::MAX);
        let hang = hangups.peek().map_or(u64::MAX, |h| h.0.0);
        let t = deadline.min(hang).min(next_arrival);
        now = now.max(t);
        let (dt, acts) = if t == deadline {
            let s = Instant::now();
            let acts = e.tick(now);
            (s.elapsed(), acts)
        } else if t == hang {
            let Reverse((_, i)) = hangups.pop().expect("hang-up");
            let s = Instant::now();
            let acts = e.hang_up(now, ix_id(i)).expect("hang up");
            (s.elapsed(), acts)
        } else {
            next_arrival = now + exp(rng, 1.0 / total_rate).max(1);
            let c = usize::from(rng.random::<f64>() >= rate_per_ms[0] / total_rate);
            let (_, qs) = &w.pick[c][rng.random_range(0..w.pick[c].len())];
            let q = qs[rng.random_range(0..qs.len())];
            let id = ix_id(next_ix);
            next_ix += 1;
            channel_of.insert(id, c);
            let mut a = Arrival::new(id, w.queues[q].id, w.queues[q].channels[0]);
            a.priority = rng.random_range(0..2);
            let s = Instant::now();
            let acts = e.arrive(now, a).expect("arrive");
            (s.elapsed(), acts)
        };
        m.record(dt, &acts);
        todo.extend(acts);
        while let Some(act) = todo.pop_front() {
            match act {
                Action::Offer {
                    interaction,
                    agents,
                    ..
                } => {
                    let agent = agents[0];
                    let s = Instant::now();
                    let acts = if rng.random::<f64>() < 0.02 {
                        e.reject(now, agent, interaction)
                    } else {
                        e.accept(now, agent, interaction)
                    }
                    .expect("answer");
                    m.record(s.elapsed(), &acts);
                    todo.extend(acts);
                }
                Action::Connected { interaction, .. } => {
                    let aht = if channel_of[&interaction] == 0 {
                        VOICE_AHT_MS
                    } else {
                        CHAT_AHT_MS
                    };
                    let n = interaction.0.as_u128() - 0x1_0000_0000_0000;
                    hangups.push(Reverse((now + exp(rng, aht).max(1), n as u64)));
                }
                Action::Ended { interaction, .. }
                | Action::Overflowed { interaction, .. }
                | Action::Abandoned { interaction, .. } => {
                    channel_of.remove(&interaction);
                }
                _ => {}
            }
        }
        if measuring && m.calls % 64 == 0 {
            m.waiting_sum += e.counts().waiting as u64;
            m.waiting_n += 1;
        }
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn one(n: usize) {
    let mut rng = SmallRng::seed_from_u64(42 + n as u64);
    let w = world(n, &mut rng);
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    let e = build(&w);
    let build_time = t0.elapsed();
    let rss1 = rss_bytes();
    let per_agent = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    let queues_per_agent = w
        .agents
        .iter()
        .map(|a| e.agent_snapshot(a.id).map_or(0, |s| s.queues.len()))
        .sum::<usize>() as f64
        / n as f64;
    eprintln!("{n} agents: each eligible for {queues_per_agent:.1} queues on average");
    drop(e);

    let mut rows = Vec::new();
    for (name, load) in LOADS {
        let mut e = build(&w);
        let mut m = run(&mut e, &w, &mut rng, load, 300_000);
        m.samples.sort_unstable();
        rows.push((name, m));
    }

    // Memory per waiting interaction: everyone offline, then 200,000 arrivals.
    let mut e = build(&w);
    for a in &w.agents {
        e.set_presence(1, a.id, Presence::Offline).expect("offline");
    }
    let waiting = 200_000u64;
    let rss2 = rss_bytes();
    for i in 0..waiting {
        let (_, qs) = &w.pick[0][rng.random_range(0..w.pick[0].len())];
        let q = qs[rng.random_range(0..qs.len())];
        let a = Arrival::new(ix_id(10_000_000 + i), w.queues[q].id, Channel::Voice);
        e.arrive(2, a).expect("arrive");
    }
    let rss3 = rss_bytes();
    assert_eq!(e.counts().waiting as u64, waiting);
    let per_waiting = (rss3.saturating_sub(rss2)) as f64 / waiting as f64;

    for (name, m) in rows {
        let rate = m.decisions as f64 / m.engine_time.as_secs_f64();
        println!(
            "| {n} | {name} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0}% | {:.0} | {:.0} | {:.0} | {:.2} |",
            m.decisions,
            rate,
            pct(&m.samples, 0.5),
            pct(&m.samples, 0.99),
            pct(&m.samples, 0.999),
            *m.samples.last().unwrap_or(&0) as f64 / 1000.0,
            100.0 * m.agent_triggered as f64 / m.decisions.max(1) as f64,
            m.waiting_sum as f64 / m.waiting_n.max(1) as f64,
            per_agent,
            per_waiting,
            build_time.as_secs_f64(),
        );
    }
}

fn header() {
    println!(
        "| agents | load | decisions | decisions/s | p50 µs | p99 µs | p99.9 µs | max µs | agent-triggered | mean waiting | RSS/agent B | RSS/waiting B | build s |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

fn main() {
    // `cargo bench` passes `--bench`; a number selects one size.
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if let [n] = sizes[..] {
        if std::env::var_os("ACD_BENCH_CHILD").is_none() {
            header();
        }
        one(n);
        return;
    }
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    header();
    let exe = std::env::current_exe().expect("bench executable");
    for n in sizes {
        let status = std::process::Command::new(&exe)
            .arg(n.to_string())
            .env("ACD_BENCH_CHILD", "1")
            .status()
            .expect("run one size");
        assert!(status.success(), "size {n} failed");
    }
}
