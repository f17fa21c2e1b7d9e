//! The contact-centre simulator: a discrete-event simulation of calls
//! arriving at queues, waiting, being answered by agents or hanging up.
//!
//! * **Input.** Calls come from any iterator of [`Call`]s sorted by arrival:
//!   [`PoissonArrivals`] generates them (Poisson arrivals, exponential
//!   handle times, optional exponential patience, from a seed), or a
//!   recorded day is replayed as a slice of calls. Every random number is
//!   drawn when the call is generated, in arrival order, so two routers (two
//!   strategies) see exactly the same calls: common random numbers.
//! * **Routing** goes through a [`Router`]: [`EngineRouter`]
//!   drives the real routing engine, [`ReferenceRouter`] is a minimal FIFO /
//!   longest-idle router kept as a cross-check.
//! * **Time** is integer milliseconds, the engine's clock; the simulator is
//!   pure (no I/O, no wall clock), like the engine.
//! * **Output.** [`Report`]: per queue and in total, the calls offered,
//!   answered and abandoned, the probability of waiting, ASA, service level
//!   at each queue's threshold, abandonment and handle time; agent
//!   occupancy; and the same per interval of time (interval reports, and
//!   batch means for standard errors). An [`Observer`] can watch the state
//!   (calls waiting, talking, agents in wrap-up) over time.
//!
//! Statistics count the calls that *arrive* in the measured window
//! `[from, until)` (earlier calls warm the system up; later ones are still
//! simulated so the measured calls see a realistic system), and follow each
//! of them until it is answered or abandoned, however late that is.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

pub use crate::acd::engine::Millis;
use crate::acd::engine::{
    Action, AgentConfig, Arrival, ConfigError, Engine, EngineError, OverflowTarget, Presence,
    QueueConfig, Strategy,
};
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::interactions::domain::Channel;

/// The simulator's name for a call: its position in arrival order.
pub type CallId = u64;

/// One call of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub arrival: Millis,
    /// Index of the queue (in the router's set-up).
    pub queue: usize,
    /// Talk time once answered.
    pub handle: Millis,
    /// After-call work before the agent takes the next call.
    pub wrap_up: Millis,
    /// How long the caller waits before hanging up; `None`: forever.
    pub patience: Option<Millis>,
}

/// What routing did with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// `call` is connected to `agent` now (offered and accepted at once).
    Connected { call: CallId, agent: usize },
    /// `call` left routing without an agent (overflow to a flow, or refused
    /// because no agent could ever serve it).
    Left { call: CallId },
}

/// What the simulator needs from routing. Agents are `0..agents()`;
/// queues are the indices [`Call::queue`] uses. Each method appends what
/// it did to `out`.
pub trait Router {
    fn agents(&self) -> usize;
    /// A call arrives at its queue.
    fn arrive(
        &mut self,
        now: Millis,
        call: CallId,
        queue: usize,
        out: &mut Vec<Routed>,
    ) -> Result<(), SimError>;
    /// The caller of a waiting call hangs up.
    fn abandon(&mut self, now: Millis, call: CallId, out: &mut Vec<Routed>)
    -> Result<(), SimError>;
    /// A connected call ends; its agent goes into wrap-up.
    fn end(&mut self, now: Millis, call: CallId, out: &mut Vec<Routed>) -> Result<(), SimError>;
    /// The agent's wrap-up is over: they can take calls again.
    fn ready(&mut self, now: Millis, agent: usize, out: &mut Vec<Routed>) -> Result<(), SimError>;
    /// The next time the router needs [`Router::tick`], if any.
    fn next_deadline(&self) -> Option<Millis> {
        None
    }
    /// Timers that fall due at `now`.
    fn tick(&mut self, _now: Millis, _out: &mut Vec<Routed>) -> Result<(), SimError> {
        Ok(())
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("call {index} arrives at {arrival} ms, before the call before it")]
    Unsorted { index: u64, arrival: Millis },
    #[error("call {index} names queue {queue}, but there are {queues} queues")]
    UnknownQueue {
        index: u64,
        queue: usize,
        queues: usize,
    },
    #[error("the router routed call {call}, which is not waiting")]
    NotWaiting { call: CallId },
    #[error("the router asked for a tick at {deadline} ms and still wants one after it")]
    StuckDeadline { deadline: Millis },
    #[error("the engine refused: {0}")]
    Engine(#[from] EngineError),
    #[error("the engine's configuration was refused: {0}")]
    Config(#[from] ConfigError),
    #[error("the engine did something the simulator does not expect: {0}")]
    Unexpected(String),
}

/// A Poisson stream of calls for one queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoissonQueue {
    pub calls_per_hour: f64,
    /// Mean of the exponential handle time.
    pub mean_handle_secs: f64,
    /// Mean of the exponential patience; `None`: callers wait forever.
    pub mean_patience_secs: Option<f64>,
}

/// Generates calls for several queues, merged in arrival order, until
/// `until` (exclusive). Deterministic for a seed with a given build: the
/// generator is `rand`'s `SmallRng`, whose stream may change between `rand`
/// versions or platforms, so a run to be repeated later should be kept as
/// its list of calls.
pub struct PoissonArrivals {
    rng: SmallRng,
    queues: Vec<PoissonQueue>,
    /// Next arrival per queue, in seconds (kept in f64 so rounding to
    /// milliseconds does not accumulate).
    next: Vec<f64>,
    until: Millis,
}

/// A uniform draw in (0, 1]: 53 random bits.
fn unit_open0(rng: &mut SmallRng) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// An exponential draw with the given mean, by inversion.
fn exponential(rng: &mut SmallRng, mean: f64) -> f64 {
    -mean * unit_open0(rng).ln()
}

fn secs_to_millis(secs: f64) -> Millis {
    (secs * 1000.0).round() as Millis
}

impl PoissonArrivals {
    pub fn new(seed: u64, queues: Vec<PoissonQueue>, until: Millis) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let next = queues
            .iter()
            .map(|q| exponential(&mut rng, 3600.0 / q.calls_per_hour))
            .collect();
        Self {
            rng,
            queues,
            next,
            until,
        }
    }
}

impl Iterator for PoissonArrivals {
    type Item = Call;

    fn next(&mut self) -> Option<Call> {
        let (queue, &at) = self
            .next
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))?;
        let arrival = secs_to_millis(at);
        if arrival >= self.until {
            return None;
        }
        let q = self.queues[queue];
        let handle = secs_to_millis(exponential(&mut self.rng, q.mean_handle_secs));
        let patience = q
            .mean_patience_secs
            .map(|mean| secs_to_millis(exponential(&mut self.rng, mean)));
        self.next[queue] = at + exponential(&mut self.rng, 3600.0 / q.calls_per_hour);
        Some(Call {
            arrival,
            queue,
            handle,
            wrap_up: 0,
            patience,
        })
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measure {
    /// Calls arriving in `[from, until)` are counted; `from` is the warm-up.
    pub from: Millis,
    pub until: Millis,
    /// Service-level threshold per queue (the number of queues).
    pub thresholds: Vec<Millis>,
    /// Split the window into this many equal intervals (0: none).
    pub intervals: usize,
}

impl Measure {
    /// `queues` queues sharing one service-level threshold.
    pub fn new(queues: usize, from: Millis, until: Millis, threshold: Millis) -> Self {
        Self {
            from,
            until,
            thresholds: vec![threshold; queues],
            intervals: 0,
        }
    }

    pub fn with_intervals(mut self, intervals: usize) -> Self {
        self.intervals = intervals;
        self
    }

    /// The interval `at` falls in.
    fn interval_of(&self, at: Millis) -> Option<usize> {
        if self.intervals == 0 || at < self.from || at >= self.until {
            return None;
        }
        let span = u128::from(self.until - self.from);
        Some((u128::from(at - self.from) * self.intervals as u128 / span) as usize)
    }

    /// Where interval `i` starts: the first instant `interval_of` puts in
    /// it (rounded up, to agree with the rounding down there).
    fn interval_start(&self, i: usize) -> Millis {
        let span = u128::from(self.until - self.from);
        let n = self.intervals as u128;
        self.from + (span * i as u128).div_ceil(n) as Millis
    }
}

/// Counts for one queue, the total or one interval, over the calls that
/// arrived in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Calls that found no agent at once (queued on arrival).
    pub waited: u64,
    /// Answered with a wait at most the queue's threshold.
    pub answered_within: u64,
    pub wait_answered_ms: u64,
    pub wait_abandoned_ms: u64,
    /// Left routing without an agent (overflow to a flow, refused).
    pub left: u64,
    pub wait_left_ms: u64,
    pub handle_ms: u64,
}

impl Stats {
    fn ratio(num: u64, den: u64) -> f64 {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    }

    /// P(wait): the fraction of offered calls that had to queue.
    pub fn p_wait(&self) -> f64 {
        Self::ratio(self.waited, self.offered)
    }

    /// Average speed of answer over answered calls, in seconds.
    pub fn asa_secs(&self) -> f64 {
        Self::ratio(self.wait_answered_ms, self.answered) / 1000.0
    }

    /// Answered within the threshold, over offered calls (an abandoned
    /// call counts against the service level).
    pub fn service_level(&self) -> f64 {
        Self::ratio(self.answered_within, self.offered)
    }

    /// Abandoned over offered.
    pub fn abandon_rate(&self) -> f64 {
        Self::ratio(self.abandoned, self.offered)
    }

    /// Mean time in queue over every resolved call, answered or not.
    pub fn mean_wait_all_secs(&self) -> f64 {
        Self::ratio(
            self.wait_answered_ms + self.wait_abandoned_ms + self.wait_left_ms,
            self.answered + self.abandoned + self.left,
        ) / 1000.0
    }

    /// Average handle time of answered calls, in seconds.
    pub fn aht_secs(&self) -> f64 {
        Self::ratio(self.handle_ms, self.answered) / 1000.0
    }
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub total: Stats,
    pub queues: Vec<Stats>,
    /// Totals per interval, over the calls that arrived in it (see
    /// [`Measure::intervals`]).
    pub intervals: Vec<Stats>,
    /// Agent time busy per interval (by the clock, not by arrival).
    pub interval_busy_ms: Vec<u64>,
    /// Agent time busy (talking or in wrap-up) within the window, over
    /// agents × window length.
    pub occupancy: f64,
    /// Measured calls still waiting when nothing else could happen (no
    /// agent could ever take them).
    pub stranded: u64,
    /// Every call simulated, warm-up and after the window included.
    pub calls: u64,
    /// Events processed (arrivals, ends, wrap-up ends, abandons, ticks).
    pub events: u64,
}

impl Report {
    /// Batch means: the mean over intervals of `metric` and its standard
    /// error (sample standard deviation over √intervals). Valid when the
    /// intervals are long compared with the system's memory, so that they
    /// are close to independent.
    pub fn batch_mean(&self, metric: impl Fn(&Stats) -> f64) -> (f64, f64) {
        let n = self.intervals.len() as f64;
        let values: Vec<f64> = self.intervals.iter().map(metric).collect();
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, (var / n).sqrt())
    }
}

/// The system at some moment: what queueing theory calls the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Calls waiting for an agent (offers are accepted at once, so a call
    /// is either waiting or connected).
    pub waiting: usize,
    /// Calls connected to an agent.
    pub talking: usize,
    /// Agents in wrap-up.
    pub wrapping: usize,
}

/// Watches the state over time (queue-length charts, time-in-state
/// distributions, the variance-reduction controls of the Erlang tests).
pub trait Observer {
    /// Nothing changed during `[from, to)`, in which the system was in `state`.
    fn observe(&mut self, from: Millis, to: Millis, state: State);
}

impl Observer for () {
    fn observe(&mut self, _: Millis, _: Millis, _: State) {}
}

/// A call between arrival and its answer or abandonment.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    arrival: Millis,
    queue: usize,
    handle: Millis,
    wrap_up: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The call's talk time is over; the agent then wraps up.
    End {
        call: CallId,
        agent: usize,
        wrap_up: Millis,
    },
    /// The agent's wrap-up is over.
    Ready { agent: usize },
    /// The caller's patience runs out (if the call is still waiting).
    Patience { call: CallId },
}

struct Sim<'m> {
    measure: &'m Measure,
    /// Calls not yet answered or abandoned, from `base` on (a sliding
    /// window: calls resolve roughly in arrival order).
    waiting: VecDeque<Option<Waiting>>,
    base: CallId,
    events: BinaryHeap<Reverse<(Millis, u64, Event)>>,
    seq: u64,
    report: Report,
    busy_ms: u64,
    last_arrival: Millis,
    state: State,
    /// Up to when the observer has seen the state.
    observed: Millis,
}

impl Sim<'_> {
    /// Time moves on to `now`: show the observer the state until then.
    fn advance(&mut self, now: Millis, observer: &mut (impl Observer + ?Sized)) {
        if now > self.observed {
            observer.observe(self.observed, now, self.state);
            self.observed = now;
        }
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn slot(&mut self, call: CallId) -> Option<&mut Option<Waiting>> {
        let index = call.checked_sub(self.base)?;
        self.waiting.get_mut(usize::try_from(index).ok()?)
    }

    /// Removes a resolved call from the window.
    fn resolve(&mut self, call: CallId) -> Option<Waiting> {
        let taken = self.slot(call)?.take();
        while let Some(None) = self.waiting.front() {
            self.waiting.pop_front();
            self.base += 1;
        }
        taken
    }

    /// Every statistics record a call counts in.
    fn each_stats(&mut self, call: &Waiting, mut update: impl FnMut(&mut Stats)) {
        if call.arrival < self.measure.from || call.arrival >= self.measure.until {
            return;
        }
        update(&mut self.report.total);
        update(&mut self.report.queues[call.queue]);
        if let Some(i) = self.measure.interval_of(call.arrival) {
            update(&mut self.report.intervals[i]);
        }
    }

    /// An agent is busy over `[start, end)`: count what falls in the window.
    fn busy(&mut self, start: Millis, end: Millis) {
        let m = self.measure;
        let (start, end) = (start.max(m.from), end.min(m.until));
        if start >= end {
            return;
        }
        self.busy_ms += end - start;
        let Some(mut i) = m.interval_of(start) else {
            return;
        };
        let mut at = start;
        while at < end {
            let next = if i + 1 < m.intervals {
                m.interval_start(i + 1)
            } else {
                m.until
            };
            let stop = end.min(next);
            self.report.interval_busy_ms[i] += stop - at;
            at = stop;
            i += 1;
        }
    }

    /// Acts on what the router did.
    fn routed(&mut self, now: Millis, out: &mut Vec<Routed>) -> Result<(), SimError> {
        for routed in out.drain(..) {
            match routed {
                Routed::Connected { call, agent } => {
                    let waiting = self.resolve(call).ok_or(SimError::NotWaiting { call })?;
                    self.state.waiting -= 1;
                    self.state.talking += 1;
                    let wait = now - waiting.arrival;
                    let within = wait <= self.measure.thresholds[waiting.queue];
                    self.each_stats(&waiting, |s| {
                        s.answered += 1;
                        s.wait_answered_ms += wait;
                        s.answered_within += u64::from(within);
                        s.handle_ms += waiting.handle;
                    });
                    self.busy(now, now + waiting.handle + waiting.wrap_up);
                    let wrap_up = waiting.wrap_up;
                    self.schedule(
                        now + waiting.handle,
                        Event::End {
                            call,
                            agent,
                            wrap_up,
                        },
                    );
                }
                Routed::Left { call } => {
                    let waiting = self.resolve(call).ok_or(SimError::NotWaiting { call })?;
                    self.state.waiting -= 1;
                    let wait = now - waiting.arrival;
                    self.each_stats(&waiting, |s| {
                        s.left += 1;
                        s.wait_left_ms += wait;
                    });
                }
            }
        }
        Ok(())
    }
}

/// How many timer ticks in a row, with nothing else left to happen, the
/// simulator allows before it stops (a router with a periodic timer and a
/// call no agent can ever take would otherwise tick forever).
const IDLE_TICKS: u32 = 100_000;

/// Runs `calls` (sorted by arrival) through `router` until nothing is left
/// to happen, and measures what `measure` asks for.
///
/// Order at equal times: the router's timers, then call ends, wrap-up ends
/// and abandonments (in the order they were scheduled), then arrivals.
pub fn simulate<R: Router + ?Sized>(
    router: &mut R,
    calls: impl IntoIterator<Item = Call>,
    measure: &Measure,
) -> Result<Report, SimError> {
    simulate_observed(router, calls, measure, &mut ())
}

/// [`simulate`], showing `observer` the state over time.
pub fn simulate_observed<R: Router + ?Sized, O: Observer + ?Sized>(
    router: &mut R,
    calls: impl IntoIterator<Item = Call>,
    measure: &Measure,
    observer: &mut O,
) -> Result<Report, SimError> {
    let queues = measure.thresholds.len();
    let mut sim = Sim {
        measure,
        waiting: VecDeque::new(),
        base: 0,
        events: BinaryHeap::new(),
        seq: 0,
        report: Report {
            total: Stats::default(),
            queues: vec![Stats::default(); queues],
            intervals: vec![Stats::default(); measure.intervals],
            interval_busy_ms: vec![0; measure.intervals],
            occupancy: 0.0,
            stranded: 0,
            calls: 0,
            events: 0,
        },
        busy_ms: 0,
        last_arrival: 0,
        state: State::default(),
        observed: 0,
    };
    let mut calls = calls.into_iter().peekable();
    let mut out = Vec::new();
    let mut now: Millis = 0;
    let mut idle_ticks = 0;
    loop {
        let next_event = sim.events.peek().map(|Reverse((at, ..))| *at);
        let next_call = calls.peek().map(|c| c.arrival);
        let next = match (next_event, next_call) {
            (Some(e), Some(c)) => Some(e.min(c)),
            (e, c) => e.or(c),
        };
        if let Some(deadline) = router.next_deadline()
            && next.is_none_or(|next| deadline <= next)
        {
            if next.is_none() {
                idle_ticks += 1;
                if sim.waiting.is_empty() || idle_ticks > IDLE_TICKS {
                    break;
                }
            }
            now = now.max(deadline);
            sim.advance(now, observer);
            sim.report.events += 1;
            router.tick(now, &mut out)?;
            sim.routed(now, &mut out)?;
            if router.next_deadline().is_some_and(|d| d <= now) {
                return Err(SimError::StuckDeadline { deadline: now });
            }
            continue;
        }
        let Some(at) = next else { break };
        now = at;
        sim.advance(now, observer);
        sim.report.events += 1;
        if next_event == Some(at) {
            let Some(Reverse((_, _, event))) = sim.events.pop() else {
                unreachable!("peeked")
            };
            match event {
                Event::End {
                    call,
                    agent,
                    wrap_up,
                } => {
                    sim.state.talking -= 1;
                    router.end(now, call, &mut out)?;
                    sim.routed(now, &mut out)?;
                    if wrap_up == 0 {
                        router.ready(now, agent, &mut out)?;
                    } else {
                        sim.state.wrapping += 1;
                        sim.schedule(now + wrap_up, Event::Ready { agent });
                    }
                }
                Event::Ready { agent } => {
                    sim.state.wrapping -= 1;
                    router.ready(now, agent, &mut out)?;
                }
                Event::Patience { call } => {
                    if let Some(waiting) = sim.resolve(call) {
                        sim.state.waiting -= 1;
                        let wait = now - waiting.arrival;
                        sim.each_stats(&waiting, |s| {
                            s.abandoned += 1;
                            s.wait_abandoned_ms += wait;
                        });
                        router.abandon(now, call, &mut out)?;
                    }
                }
            }
            sim.routed(now, &mut out)?;
            continue;
        }
        let Some(call) = calls.next() else {
            unreachable!("peeked")
        };
        let id = sim.report.calls;
        if call.queue >= queues {
            return Err(SimError::UnknownQueue {
                index: id,
                queue: call.queue,
                queues,
            });
        }
        if id > 0 && call.arrival < sim.last_arrival {
            return Err(SimError::Unsorted {
                index: id,
                arrival: call.arrival,
            });
        }
        sim.last_arrival = call.arrival;
        sim.report.calls += 1;
        let waiting = Waiting {
            arrival: call.arrival,
            queue: call.queue,
            handle: call.handle,
            wrap_up: call.wrap_up,
        };
        debug_assert_eq!(sim.base + sim.waiting.len() as u64, id);
        sim.waiting.push_back(Some(waiting));
        sim.state.waiting += 1;
        sim.each_stats(&waiting, |s| s.offered += 1);
        router.arrive(now, id, call.queue, &mut out)?;
        sim.routed(now, &mut out)?;
        if matches!(sim.slot(id), Some(Some(_))) {
            sim.each_stats(&waiting, |s| s.waited += 1);
            if let Some(patience) = call.patience {
                sim.schedule(now + patience, Event::Patience { call: id });
            }
        }
    }
    let stranded = sim
        .waiting
        .iter()
        .flatten()
        .filter(|w| w.arrival >= measure.from && w.arrival < measure.until)
        .count();
    let mut report = sim.report;
    report.stranded = stranded as u64;
    let capacity = router.agents() as f64 * measure.until.saturating_sub(measure.from) as f64;
    report.occupancy = if capacity > 0.0 {
        sim.busy_ms as f64 / capacity
    } else {
        0.0
    };
    Ok(report)
}

/// A minimal router: calls wait in FIFO order per queue; a free agent
/// takes the oldest call among the queues it serves; a call goes to the
/// longest-idle agent that serves its queue. Small enough to trust at a
/// glance; kept as an independent cross-check of the engine.
#[derive(Clone, Debug)]
pub struct ReferenceRouter {
    /// The queues each agent serves.
    serves: Vec<Vec<usize>>,
    /// Agents free to take a call, longest idle first.
    idle: VecDeque<usize>,
    /// Waiting calls per queue, oldest first.
    waiting: Vec<VecDeque<CallId>>,
}

impl ReferenceRouter {
    /// `serves[agent]` lists the queues the agent takes calls from; every
    /// agent starts idle, in index order.
    pub fn new(queues: usize, serves: Vec<Vec<usize>>) -> Self {
        Self {
            idle: (0..serves.len()).collect(),
            serves,
            waiting: vec![VecDeque::new(); queues],
        }
    }

    /// One queue, `agents` agents.
    pub fn single_queue(agents: usize) -> Self {
        Self::new(1, vec![vec![0]; agents])
    }
}

impl Router for ReferenceRouter {
    fn agents(&self) -> usize {
        self.serves.len()
    }

    fn arrive(
        &mut self,
        _now: Millis,
        call: CallId,
        queue: usize,
        out: &mut Vec<Routed>,
    ) -> Result<(), SimError> {
        let eligible = self
            .idle
            .iter()
            .position(|&agent| self.serves[agent].contains(&queue));
        match eligible.and_then(|i| self.idle.remove(i)) {
            Some(agent) => out.push(Routed::Connected { call, agent }),
            None => self.waiting[queue].push_back(call),
        }
        Ok(())
    }

    fn abandon(
        &mut self,
        _now: Millis,
        call: CallId,
        _out: &mut Vec<Routed>,
    ) -> Result<(), SimError> {
        for queue in &mut self.waiting {
            if let Some(i) = queue.iter().position(|&c| c == call) {
                queue.remove(i);
                return Ok(());
            }
        }
        Err(SimError::NotWaiting { call })
    }

    fn end(&mut self, _now: Millis, _call: CallId, _out: &mut Vec<Routed>) -> Result<(), SimError> {
        Ok(())
    }

    fn ready(&mut self, _now: Millis, agent: usize, out: &mut Vec<Routed>) -> Result<(), SimError> {
        let oldest = self.serves[agent]
            .iter()
            .filter_map(|&q| self.waiting[q].front().map(|&call| (call, q)))
            .min();
        match oldest {
            Some((call, queue)) => {
                self.waiting[queue].pop_front();
                out.push(Routed::Connected { call, agent });
            }
            None => self.idle.push_back(agent),
        }
        Ok(())
    }
}

/// Drives the real routing engine ([`Engine`]): every offer is accepted at
/// once by the first agent it rings, a connected call is hung up at the end
/// of its handle time, a waiting one when the caller's patience runs out,
/// and the engine's timers run when they fall due.
/// The strategy and everything else is the engine's configuration, which
/// the caller sets up (skills, queues, agents) before handing it over.
///
/// Wrap-up: give agents `wrap_up_ms: None` and each call its recorded
/// [`Call::wrap_up`]; the simulator ends it (`end_wrap_up`) when it is over
/// and counts it as busy time. An agent configured with a timed wrap-up
/// (`Some(t)`) is freed by the engine's timer instead, which routing
/// honours but the occupancy figure does not see.
#[derive(Debug)]
pub struct EngineRouter {
    engine: Engine,
    /// The engine queue and channel of each simulator queue.
    queues: Vec<(QueueId, Channel)>,
    agents: Vec<AgentId>,
    agent_index: HashMap<AgentId, usize>,
    /// Agents in a wrap-up that only `end_wrap_up` ends.
    wrapping: Vec<bool>,
}

/// The simulator's interaction ids: its call number under a fixed prefix.
const SIM_IDS: u64 = 0x5349_4d55_4c41_5445; // "SIMULATE"

fn interaction_id(call: CallId) -> InteractionId {
    InteractionId(uuid::Uuid::from_u64_pair(SIM_IDS, call))
}

fn call_of(id: InteractionId) -> CallId {
    id.0.as_u64_pair().1
}

impl EngineRouter {
    /// `engine` holds the configuration to simulate; `queues[i]` is where
    /// the simulator's queue `i` arrives (queue and channel); `agents` are
    /// the agents to simulate, made available at time 0.
    pub fn new(
        mut engine: Engine,
        queues: Vec<(QueueId, Channel)>,
        agents: Vec<AgentId>,
    ) -> Result<Self, SimError> {
        // Only the winner matters here: do not build candidate lists.
        engine.set_decision_candidates(1);
        let mut router = Self {
            agent_index: agents.iter().enumerate().map(|(i, &a)| (a, i)).collect(),
            wrapping: vec![false; agents.len()],
            engine,
            queues,
            agents,
        };
        let mut out = Vec::new();
        for i in 0..router.agents.len() {
            let actions = router
                .engine
                .set_presence(0, router.agents[i], Presence::Available)?;
            router.apply(0, actions, &mut out)?;
        }
        if !out.is_empty() {
            return Err(SimError::Unexpected(format!(
                "routing before any call: {out:?}"
            )));
        }
        Ok(router)
    }

    /// One voice queue with the given strategy and no skills; `agents`
    /// agents with one voice line each and no wrap-up (the engine frees them
    /// when the call ends).
    pub fn single_queue(agents: usize, strategy: Strategy) -> Result<Self, SimError> {
        let mut engine = Engine::new();
        let queue = QueueId(uuid::Uuid::from_u64_pair(SIM_IDS, u64::MAX));
        engine.upsert_queue(0, QueueConfig::new(queue, strategy))?;
        let ids: Vec<AgentId> = (0..agents as u64)
            .map(|i| AgentId(uuid::Uuid::from_u64_pair(SIM_IDS, i)))
            .collect();
        for &id in &ids {
            let agent = AgentConfig {
                wrap_up_ms: Some(0),
                ..AgentConfig::new(id, Vec::new())
            };
            engine.upsert_agent(0, agent)?;
        }
        Self::new(engine, vec![(queue, Channel::Voice)], ids)
    }

    /// The engine, for its own statistics and snapshots after a run.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn agent(&self, id: AgentId) -> Result<usize, SimError> {
        // Agents made by `single_queue` carry their index.
        let (prefix, index) = id.0.as_u64_pair();
        if prefix == SIM_IDS && self.agents.get(index as usize) == Some(&id) {
            return Ok(index as usize);
        }
        self.agent_index
            .get(&id)
            .copied()
            .ok_or_else(|| SimError::Unexpected(format!("agent {id} is not simulated")))
    }

    /// Carries out the engine's actions: accepts offers at once, reports
    /// connections and departures, follows wrap-ups.
    fn apply(
        &mut self,
        now: Millis,
        actions: Vec<Action>,
        out: &mut Vec<Routed>,
    ) -> Result<(), SimError> {
        for action in actions {
            match action {
                Action::Offer {
                    interaction,
                    agents,
                    ..
                } => {
                    let first = *agents
                        .first()
                        .ok_or_else(|| SimError::Unexpected("an offer to nobody".into()))?;
                    let more = self.engine.accept(now, first, interaction)?;
                    self.apply(now, more, out)?;
                }
                Action::Connected {
                    interaction, agent, ..
                } => {
                    let agent = self.agent(agent)?;
                    out.push(Routed::Connected {
                        call: call_of(interaction),
                        agent,
                    });
                }
                Action::Overflowed {
                    interaction,
                    to: OverflowTarget::Flow(_),
                    ..
                } => out.push(Routed::Left {
                    call: call_of(interaction),
                }),
                // A wrap-up with an end time ends by the engine's own timer.
                Action::WrapUpStarted {
                    agent, until: None, ..
                } => {
                    let agent = self.agent(agent)?;
                    self.wrapping[agent] = true;
                }
                Action::WrapUpEnded { agent, .. } => {
                    let agent = self.agent(agent)?;
                    self.wrapping[agent] = false;
                }
                // Offers are answered at once, so none times out and no
                // agent goes away; the rest needs nothing from us.
                Action::OfferWithdrawn { .. }
                | Action::Requeued { .. }
                | Action::Escalated { .. }
                | Action::Overflowed { .. }
                | Action::WrapUpStarted { .. }
                | Action::Abandoned { .. }
                | Action::Ended { .. }
                | Action::AgentAway { .. }
                | Action::ServabilityChanged { .. } => {}
            }
        }
        Ok(())
    }
}

impl Router for EngineRouter {
    fn agents(&self) -> usize {
        self.agents.len()
    }

    fn arrive(
        &mut self,
        now: Millis,
        call: CallId,
        queue: usize,
        out: &mut Vec<Routed>,
    ) -> Result<(), SimError> {
        let (queue, channel) = self.queues[queue];
        let arrival = Arrival::new(interaction_id(call), queue, channel);
        match self.engine.arrive(now, arrival) {
            Ok(actions) => self.apply(now, actions, out),
            // No agent could ever serve it and the queue has no overflow.
            Err(EngineError::Unservable(_)) => {
                let buffered = self.engine.take_actions();
                self.apply(now, buffered, out)?;
                out.push(Routed::Left { call });
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn abandon(
        &mut self,
        now: Millis,
        call: CallId,
        out: &mut Vec<Routed>,
    ) -> Result<(), SimError> {
        let actions = self.engine.hang_up(now, interaction_id(call))?;
        self.apply(now, actions, out)
    }

    fn end(&mut self, now: Millis, call: CallId, out: &mut Vec<Routed>) -> Result<(), SimError> {
        let actions = self.engine.hang_up(now, interaction_id(call))?;
        self.apply(now, actions, out)
    }

    fn ready(&mut self, now: Millis, agent: usize, out: &mut Vec<Routed>) -> Result<(), SimError> {
        if !self.wrapping[agent] {
            return Ok(());
        }
        let actions = self.engine.end_wrap_up(now, self.agents[agent])?;
        self.apply(now, actions, out)
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.engine.next_deadline()
    }

    fn tick(&mut self, now: Millis, out: &mut Vec<Routed>) -> Result<(), SimError> {
        let actions = self.engine.tick(now);
        self.apply(now, actions, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::engine::SkillReq;
    use crate::acd::erlang::{ErlangA, ErlangC};
    use crate::ids::SkillId;

    const AHT_SECS: f64 = 180.0;
    const SL_SECS: f64 = 20.0;
    const BATCHES: usize = 40;

    // ----- variance reduction ------------------------------------------------

    /// Zero-mean control variates for batch means (Henderson and Glynn's
    /// approximating martingales). With N = waiting + talking, for any f,
    /// f(N_t) - f(N_0) - ∫(𝒜f) dt is a martingale, where
    /// 𝒜f = λ·(f(N+1) - f(N)) + (μ·talking + θ·waiting)·(f(N-1) - f(N)):
    /// calls arrive at rate λ, each call talking ends at rate μ and each
    /// waiting caller hangs up at rate θ, whatever the router does (these are
    /// properties of the generated calls). So the time average of 𝒜f over a
    /// batch has mean (f(N_end) - f(N_start))/T, zero in steady state.
    /// Regressing a batch statistic on these averages removes the part of
    /// its noise they explain, the slow swings of the queue that dominate
    /// the error of plain batch means, and leaves the estimate unbiased
    /// (up to O(1/batches) from estimating the coefficients).
    /// The f used: n, (n-c)+, ((n-c)+)², n². Nothing here uses the Erlang
    /// formulas: only the rates the calls were generated with and the
    /// simulator's own state, so a router that kept a caller waiting next
    /// to an idle agent would still be measured as it is, and caught.
    ///
    /// Why: plain batch means would need about 3·10⁷ calls at 20 agents
    /// (80% load) and 8·10⁷ at 50 (90%) for a 0.5% standard error on ASA,
    /// minutes in a debug build; the controls cut the standard error 5 to
    /// 25 times, so 2-3·10⁵ calls do.
    ///
    /// With patience, one more: abandonments are counted per call, and their
    /// count has Poisson-like noise of its own that no function of N sees;
    /// but the number of abandonments minus θ∫(waiting)dt is a martingale
    /// too (θ·waiting is the rate of abandonment), so the batch's
    /// abandonments less θ∫(waiting)dt over it is another zero-mean control
    /// (up to calls that cross a batch boundary, which cancel on average).
    struct Controls {
        lambda: f64,
        mu: f64,
        theta: f64,
        c: f64,
        measure: Measure,
        /// Per batch: ∫𝒜f dt for each f, then ∫(waiting) dt.
        sums: Vec<[f64; 5]>,
    }

    impl Controls {
        fn new(s: &Steady, measure: &Measure) -> Self {
            Self {
                lambda: s.lambda(),
                mu: 1.0 / AHT_SECS,
                theta: s.patience_secs.map_or(0.0, |p| 1.0 / p),
                c: f64::from(s.agents),
                measure: measure.clone(),
                sums: vec![[0.0; 5]; measure.intervals],
            }
        }

        fn f(&self, k: usize, n: f64) -> f64 {
            let over = (n - self.c).max(0.0);
            [n, over, over * over, n * n][k]
        }

        fn batch_secs(&self, i: usize) -> f64 {
            let m = &self.measure;
            let end = if i + 1 < m.intervals {
                m.interval_start(i + 1)
            } else {
                m.until
            };
            (end - m.interval_start(i)) as f64 / 1000.0
        }

        /// Per control, its value for each batch (time averages).
        fn batch_averages(&self, report: &Report) -> Vec<Vec<f64>> {
            let batches = 0..self.measure.intervals;
            let mut controls: Vec<Vec<f64>> = (0..4)
                .map(|k| {
                    batches
                        .clone()
                        .map(|i| self.sums[i][k] / self.batch_secs(i))
                        .collect()
                })
                .collect();
            if self.theta > 0.0 {
                let abandons = batches.map(|i| {
                    let expected = self.theta * self.sums[i][4];
                    (report.intervals[i].abandoned as f64 - expected) / self.batch_secs(i)
                });
                controls.push(abandons.collect());
            }
            controls
        }
    }

    impl Observer for Controls {
        fn observe(&mut self, from: Millis, to: Millis, state: State) {
            let m = &self.measure;
            let (mut at, end) = (from.max(m.from), to.min(m.until));
            if at >= end {
                return;
            }
            let n = (state.waiting + state.talking) as f64;
            let down = self.mu * state.talking as f64 + self.theta * state.waiting as f64;
            let g: [f64; 5] = std::array::from_fn(|k| {
                if k == 4 {
                    return state.waiting as f64;
                }
                let here = self.f(k, n);
                let below = if n > 0.0 {
                    self.f(k, n - 1.0) - here
                } else {
                    0.0
                };
                self.lambda * (self.f(k, n + 1.0) - here) + down * below
            });
            while at < end {
                let i = m.interval_of(at).expect("inside the window");
                let next = if i + 1 < m.intervals {
                    m.interval_start(i + 1)
                } else {
                    m.until
                };
                let stop = end.min(next);
                let dt = (stop - at) as f64 / 1000.0;
                for (sum, g) in self.sums[i].iter_mut().zip(g) {
                    *sum += g * dt;
                }
                at = stop;
            }
        }
    }

    /// The mean of `y` over batches corrected by zero-mean `controls`
    /// (least squares of y on [1, controls]; the intercept), and its
    /// standard error. Controls the others already explain are dropped
    /// (with one agent, n² is a combination of the other three).
    fn controlled_mean(y: &[f64], controls: &[Vec<f64>]) -> (f64, f64) {
        let n = y.len();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        // Modified Gram-Schmidt: X = Q R, columns kept only if independent.
        let mut xs: Vec<Vec<f64>> = vec![vec![1.0; n]];
        for z in controls {
            let mean = z.iter().sum::<f64>() / n as f64;
            let sd = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            if sd > 0.0 {
                xs.push(z.iter().map(|v| v / sd).collect());
            }
        }
        let mut q: Vec<Vec<f64>> = Vec::new();
        let mut r: Vec<Vec<f64>> = Vec::new();
        for x in &xs {
            let mut v = x.clone();
            let mut col = Vec::new();
            for qi in &q {
                let d = dot(qi, &v);
                v.iter_mut().zip(qi).for_each(|(v, qi)| *v -= d * qi);
                col.push(d);
            }
            let norm = dot(&v, &v).sqrt();
            if norm < 1e-6 * dot(x, x).sqrt() {
                continue;
            }
            v.iter_mut().for_each(|v| *v /= norm);
            col.push(norm);
            q.push(v);
            r.push(col);
        }
        let p = q.len();
        // R is upper triangular: r[j][i] is row i, column j.
        let qty: Vec<f64> = q.iter().map(|qi| dot(qi, y)).collect();
        let mut beta = vec![0.0; p];
        for i in (0..p).rev() {
            let s: f64 = (i + 1..p).map(|j| r[j][i] * beta[j]).sum();
            beta[i] = (qty[i] - s) / r[i][i];
        }
        // The fitted values: the projection of y on the kept columns.
        let fitted: Vec<f64> = (0..n)
            .map(|t| q.iter().zip(&qty).map(|(qi, c)| qi[t] * c).sum())
            .collect();
        let sse: f64 = y.iter().zip(&fitted).map(|(y, f)| (y - f).powi(2)).sum();
        let s2 = sse / (n - p) as f64;
        // Var(β0) = s² Σ_j (R⁻¹)[0][j]²: row 0 of R⁻¹ by forward substitution.
        let mut row = vec![0.0; p];
        for j in 0..p {
            let s: f64 = (0..j).map(|k| row[k] * r[j][k]).sum();
            row[j] = ((if j == 0 { 1.0 } else { 0.0 }) - s) / r[j][j];
        }
        (
            beta[0],
            (s2 * row.iter().map(|v| v * v).sum::<f64>()).sqrt(),
        )
    }

    // ----- steady-state runs against queueing theory --------------------------

    /// One queue in steady state: Poisson arrivals, exponential handle
    /// times (mean `AHT_SECS`), optional exponential patience.
    #[derive(Clone, Copy, Debug)]
    struct Steady {
        agents: u32,
        /// Offered load per agent, A/c.
        load: f64,
        patience_secs: Option<f64>,
        /// Calls to measure (after a warm-up of 200 handle times).
        calls: f64,
        seed: u64,
    }

    impl Steady {
        fn lambda(&self) -> f64 {
            self.load * f64::from(self.agents) / AHT_SECS
        }

        fn arrivals(&self) -> (PoissonArrivals, Measure) {
            let from = secs_to_millis(200.0 * AHT_SECS);
            let until = from + secs_to_millis(self.calls / self.lambda());
            let queue = PoissonQueue {
                calls_per_hour: self.lambda() * 3600.0,
                mean_handle_secs: AHT_SECS,
                mean_patience_secs: self.patience_secs,
            };
            let measure =
                Measure::new(1, from, until, secs_to_millis(SL_SECS)).with_intervals(BATCHES);
            (PoissonArrivals::new(self.seed, vec![queue], until), measure)
        }

        /// Runs the calls through the engine (longest idle, every offer
        /// accepted at once), checks that the reference router does exactly
        /// the same with them, and returns the report and the controls.
        fn run(&self) -> (Report, Controls) {
            let (arrivals, measure) = self.arrivals();
            let mut controls = Controls::new(self, &measure);
            let mut engine =
                EngineRouter::single_queue(self.agents as usize, Strategy::LongestIdle).unwrap();
            let report = simulate_observed(&mut engine, arrivals, &measure, &mut controls).unwrap();
            let (arrivals, _) = self.arrivals();
            let mut reference = ReferenceRouter::single_queue(self.agents as usize);
            let expected = simulate(&mut reference, arrivals, &measure).unwrap();
            // Homogeneous agents, FIFO, no agent idle while a call waits:
            // every call waits exactly as long whoever answers it.
            assert_eq!(
                report, expected,
                "the engine and the reference router part ways"
            );
            // The engine's own counters saw every call, warm-up included.
            let queue = engine.engine().queue_snapshot(engine.queues[0].0).unwrap();
            assert_eq!(queue.arrived, report.calls);
            assert_eq!(queue.answered + queue.abandoned, report.calls);
            assert_eq!(report.stranded, 0);
            assert!(
                report.total.offered as f64 > 0.98 * self.calls,
                "{:?}",
                report.total
            );
            // The controls are zero-mean (this also checks the simulator's
            // state against its inputs): each within 4 standard errors.
            for z in controls.batch_averages(&report) {
                let (mean, se) = controlled_mean(&z, &[]);
                assert!(mean.abs() <= 4.0 * se, "control mean {mean} ± {se}");
            }
            (report, controls)
        }
    }

    /// A statistic's name, how to read it, and what theory expects.
    type Check = (&'static str, fn(&Stats) -> f64, f64);

    /// Compares batch statistics with theory: the controlled estimate must
    /// have a standard error well under 2% (at most 0.5%, so a 2% miss
    /// would be a 4-sigma event) and agree within 2%. Returns a table line.
    /// (Checked once over 30 seeds per scenario: the spread of the
    /// estimates matched their standard errors, the mean error stayed
    /// within 0.22% and the largest within 1.1%.)
    fn agrees(s: &Steady, report: &Report, controls: &Controls, checks: &[Check]) -> String {
        let z = controls.batch_averages(report);
        let mut line = format!(
            "c={:<3} load={:.2} calls={:<7}",
            s.agents, s.load, report.total.offered
        );
        for &(name, metric, expected) in checks {
            let y: Vec<f64> = report.intervals.iter().map(metric).collect();
            let (estimate, se) = controlled_mean(&y, &z);
            let (_, raw_se) = report.batch_mean(metric);
            let error = estimate / expected - 1.0;
            line += &format!(
                " | {name} theory {expected:.4} sim {estimate:.4} (raw {:.4}) err {:+.2}% se {:.2}% (raw {:.2}%)",
                metric(&report.total),
                100.0 * error,
                100.0 * se / expected,
                100.0 * raw_se / expected
            );
            assert!(
                se <= 0.005 * expected,
                "{name}: standard error {se} is not well under 2% of {expected}\n{line}"
            );
            assert!(
                error.abs() <= 0.02,
                "{name}: {estimate} is not within 2% of {expected}\n{line}"
            );
        }
        println!("{line}");
        line
    }

    fn erlang_c(s: Steady) {
        let theory = ErlangC::new(s.lambda(), AHT_SECS, s.agents);
        let (report, controls) = s.run();
        agrees(
            &s,
            &report,
            &controls,
            &[
                ("P(wait)", Stats::p_wait, theory.p_wait()),
                ("ASA", Stats::asa_secs, theory.asa()),
                ("SL", Stats::service_level, theory.service_level(SL_SECS)),
            ],
        );
        assert!(
            (report.occupancy / theory.occupancy() - 1.0).abs() < 0.01,
            "{}",
            report.occupancy
        );
        assert_eq!(report.total.abandoned, 0);
    }

    #[test]
    fn erlang_c_one_agent() {
        erlang_c(Steady {
            agents: 1,
            load: 0.5,
            patience_secs: None,
            calls: 1e5,
            seed: 1,
        });
    }

    #[test]
    fn erlang_c_five_agents() {
        erlang_c(Steady {
            agents: 5,
            load: 0.7,
            patience_secs: None,
            calls: 1e5,
            seed: 2,
        });
    }

    #[test]
    fn erlang_c_twenty_agents() {
        erlang_c(Steady {
            agents: 20,
            load: 0.8,
            patience_secs: None,
            calls: 2e5,
            seed: 3,
        });
    }

    #[test]
    fn erlang_c_fifty_agents() {
        erlang_c(Steady {
            agents: 50,
            load: 0.9,
            patience_secs: None,
            calls: 3e5,
            seed: 4,
        });
    }

    #[test]
    fn erlang_a_with_patience() {
        // Offered exactly the agents' capacity: without abandonment the
        // queue would grow for ever.
        let s = Steady {
            agents: 20,
            load: 1.0,
            patience_secs: Some(120.0),
            calls: 2e5,
            seed: 5,
        };
        let theory = ErlangA::new(s.lambda(), AHT_SECS, 120.0, s.agents);
        let m = theory.metrics();
        let (report, controls) = s.run();
        agrees(
            &s,
            &report,
            &controls,
            &[
                ("P(wait)", Stats::p_wait, m.p_wait),
                ("P(abandon)", Stats::abandon_rate, m.p_abandon),
                ("ASA", Stats::asa_secs, m.asa),
                ("SL", Stats::service_level, theory.service_level(SL_SECS)),
            ],
        );
        assert!(
            (report.occupancy / m.occupancy - 1.0).abs() < 0.01,
            "{}",
            report.occupancy
        );
    }

    // ----- mechanics ---------------------------------------------------------

    fn call(arrival: Millis, queue: usize, handle: Millis, patience: Option<Millis>) -> Call {
        Call {
            arrival,
            queue,
            handle,
            wrap_up: 0,
            patience,
        }
    }

    /// An engine with the given queues (voice) and agents, all available.
    fn engine_router(
        queues: Vec<QueueConfig>,
        agents: Vec<AgentConfig>,
        skills: &[SkillId],
    ) -> EngineRouter {
        let mut engine = Engine::new();
        for &skill in skills {
            engine.upsert_skill(skill);
        }
        let queue_ids = queues.iter().map(|q| (q.id, Channel::Voice)).collect();
        for q in queues {
            engine.upsert_queue(0, q).unwrap();
        }
        let agent_ids = agents.iter().map(|a| a.id).collect();
        for a in agents {
            engine.upsert_agent(0, a).unwrap();
        }
        EngineRouter::new(engine, queue_ids, agent_ids).unwrap()
    }

    fn agent(wrap_up_ms: Option<Millis>) -> AgentConfig {
        AgentConfig {
            wrap_up_ms,
            ..AgentConfig::new(AgentId::new(), Vec::new())
        }
    }

    #[test]
    fn poisson_arrivals_draw_what_was_asked() {
        let queues = vec![
            PoissonQueue {
                calls_per_hour: 120.0,
                mean_handle_secs: 180.0,
                mean_patience_secs: Some(60.0),
            },
            PoissonQueue {
                calls_per_hour: 360.0,
                mean_handle_secs: 60.0,
                mean_patience_secs: None,
            },
        ];
        let hours = 200.0;
        let calls: Vec<Call> =
            PoissonArrivals::new(9, queues.clone(), secs_to_millis(hours * 3600.0)).collect();
        assert!(calls.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        for (q, spec) in queues.iter().enumerate() {
            let mine: Vec<&Call> = calls.iter().filter(|c| c.queue == q).collect();
            let n = mine.len() as f64;
            let expected = spec.calls_per_hour * hours;
            assert!(
                (n - expected).abs() < 4.0 * expected.sqrt(),
                "queue {q}: {n} calls, {expected} expected"
            );
            // Exponential: mean m, standard deviation m.
            let handle = mine.iter().map(|c| c.handle as f64 / 1000.0).sum::<f64>() / n;
            let mean = spec.mean_handle_secs;
            assert!(
                (handle - mean).abs() < 4.0 * mean / n.sqrt(),
                "queue {q}: mean handle {handle}"
            );
            let longer = mine
                .iter()
                .filter(|c| c.handle as f64 > mean * 1000.0)
                .count() as f64
                / n;
            let p = (-1.0f64).exp();
            assert!(
                (longer - p).abs() < 4.0 * (p * (1.0 - p) / n).sqrt(),
                "queue {q}: P(handle > mean) {longer}"
            );
            match spec.mean_patience_secs {
                Some(mean) => {
                    let patience = mine
                        .iter()
                        .map(|c| c.patience.unwrap() as f64 / 1000.0)
                        .sum::<f64>()
                        / n;
                    assert!(
                        (patience - mean).abs() < 4.0 * mean / n.sqrt(),
                        "queue {q}: mean patience {patience}"
                    );
                }
                None => assert!(mine.iter().all(|c| c.patience.is_none())),
            }
        }
        // The same seed draws the same calls; another seed other calls.
        let again: Vec<Call> =
            PoissonArrivals::new(9, queues.clone(), secs_to_millis(3600.0)).collect();
        assert_eq!(again[..], calls[..again.len()]);
        let other: Vec<Call> = PoissonArrivals::new(10, queues, secs_to_millis(3600.0)).collect();
        assert_ne!(other[..10], calls[..10]);
    }

    #[test]
    fn same_seed_same_report() {
        let s = Steady {
            agents: 5,
            load: 0.85,
            patience_secs: Some(300.0),
            calls: 2e4,
            seed: 11,
        };
        let run = |s: Steady| {
            let (arrivals, measure) = s.arrivals();
            let mut router = EngineRouter::single_queue(5, Strategy::LongestIdle).unwrap();
            simulate(&mut router, arrivals, &measure).unwrap()
        };
        let first = run(s);
        assert!(first.total.abandoned > 0 && first.total.waited > 0);
        assert_eq!(run(s), first);
        assert_ne!(run(Steady { seed: 12, ..s }).total, first.total);
    }

    /// Five calls on two queues and two agents, worked out by hand:
    /// c0 and c1 are answered at once; c2 waits for c1's agent (4 s);
    /// c3 gives up after 2 s; c4 waits for c2's agent (5 s).
    fn recorded_day() -> (Vec<Call>, Measure) {
        let calls = vec![
            call(0, 0, 10_000, None),
            call(1_000, 0, 5_000, None),
            call(2_000, 0, 3_000, Some(30_000)),
            call(3_000, 1, 1_000, Some(2_000)),
            call(4_000, 1, 2_000, None),
        ];
        (calls, Measure::new(2, 0, 12_000, 4_000).with_intervals(2))
    }

    fn check_recorded_day(report: &Report) {
        let q0 = Stats {
            offered: 3,
            answered: 3,
            waited: 1,
            answered_within: 3,
            wait_answered_ms: 4_000,
            handle_ms: 18_000,
            ..Stats::default()
        };
        let q1 = Stats {
            offered: 2,
            answered: 1,
            abandoned: 1,
            waited: 2,
            answered_within: 0,
            wait_answered_ms: 5_000,
            wait_abandoned_ms: 2_000,
            handle_ms: 2_000,
            ..Stats::default()
        };
        assert_eq!(report.queues, vec![q0, q1]);
        assert_eq!(report.total.offered, 5);
        assert_eq!(report.total.wait_answered_ms, 9_000);
        assert_eq!(report.total.service_level(), 0.6);
        assert_eq!(report.total.asa_secs(), 2.25);
        assert_eq!(report.total.abandon_rate(), 0.2);
        assert_eq!(report.intervals, vec![report.total, Stats::default()]);
        // Agent 0: 0-10 s; agent 1: 1-6, 6-9, 9-11 s. Split at 6 s.
        assert_eq!(report.interval_busy_ms, vec![11_000, 9_000]);
        assert!((report.occupancy - 20.0 / 24.0).abs() < 1e-12);
        assert_eq!((report.calls, report.stranded), (5, 0));
    }

    #[test]
    fn recorded_day_replays_exactly() {
        let (calls, measure) = recorded_day();
        let mut reference = ReferenceRouter::new(2, vec![vec![0, 1]; 2]);
        let expected = simulate(&mut reference, calls.iter().copied(), &measure).unwrap();
        check_recorded_day(&expected);
        // Through the engine, agents ending their own wrap-up (at once).
        let queues = vec![
            QueueConfig::new(QueueId::new(), Strategy::LongestIdle),
            QueueConfig::new(QueueId::new(), Strategy::LongestIdle),
        ];
        let mut engine = engine_router(queues, vec![agent(None), agent(None)], &[]);
        let report = simulate(&mut engine, calls, &measure).unwrap();
        check_recorded_day(&report);
        assert_eq!(report, expected);
    }

    #[test]
    fn wrap_up_keeps_the_agent_from_the_next_call() {
        // c0 talks 1 s then wraps up 2 s; c1 (at 0.5 s) waits until 3 s.
        let calls = vec![
            Call {
                wrap_up: 2_000,
                ..call(0, 0, 1_000, None)
            },
            call(500, 0, 1_000, None),
        ];
        let measure = Measure::new(1, 0, 5_000, 20_000);
        let check = |r: &Report, occupancy: f64| {
            assert_eq!(r.total.answered, 2);
            assert_eq!(r.total.wait_answered_ms, 2_500);
            assert!((r.occupancy - occupancy).abs() < 1e-12, "{}", r.occupancy);
        };
        let reference = simulate(
            &mut ReferenceRouter::single_queue(1),
            calls.clone(),
            &measure,
        )
        .unwrap();
        check(&reference, 0.8);
        // The simulator ends the wrap-up: talk and wrap-up are busy time.
        let queue = || vec![QueueConfig::new(QueueId::new(), Strategy::LongestIdle)];
        let mut engine = engine_router(queue(), vec![agent(None)], &[]);
        let report = simulate(&mut engine, calls, &measure).unwrap();
        check(&report, 0.8);
        assert_eq!(report, reference);
        // The engine's own 2 s wrap-up timer frees the agent (a tick); the
        // calls carry none, so only talk time is busy time.
        let calls = vec![call(0, 0, 1_000, None), call(500, 0, 1_000, None)];
        let mut engine = engine_router(queue(), vec![agent(Some(2_000))], &[]);
        let report = simulate(&mut engine, calls, &measure).unwrap();
        check(&report, 0.4);
        assert_eq!(report.events, 5, "two arrivals, two ends, one tick");
    }

    #[test]
    fn calls_no_agent_takes_leave_routing() {
        // A queue needing a skill no agent has, and no overflow: refused.
        let skill = SkillId::new();
        let mut skilled = QueueConfig::new(QueueId::new(), Strategy::LongestIdle);
        skilled.required = vec![SkillReq {
            skill,
            min_level: 1,
        }];
        // A queue whose callers go to voicemail after 5 s of waiting.
        let mut voicemail = QueueConfig::new(QueueId::new(), Strategy::LongestIdle);
        voicemail.max_wait_ms = Some(5_000);
        voicemail.overflow = Some(OverflowTarget::Flow("voicemail".into()));
        let mut engine = engine_router(vec![skilled, voicemail], vec![agent(None)], &[skill]);
        let calls = vec![
            call(0, 1, 20_000, None),
            call(1_000, 1, 1_000, None),
            call(2_000, 1, 1_000, Some(1_000)),
            call(3_000, 0, 1_000, None),
        ];
        let measure = Measure::new(2, 0, 30_000, 20_000);
        let report = simulate(&mut engine, calls, &measure).unwrap();
        let expected = Stats {
            offered: 3,
            answered: 1,
            abandoned: 1,
            left: 1,
            waited: 2,
            answered_within: 1,
            wait_abandoned_ms: 1_000,
            wait_left_ms: 5_000,
            handle_ms: 20_000,
            ..Stats::default()
        };
        assert_eq!(report.queues[1], expected);
        assert_eq!(report.queues[1].mean_wait_all_secs(), 2.0);
        assert_eq!(
            report.queues[0],
            // Refused on arrival: it left without waiting.
            Stats {
                offered: 1,
                left: 1,
                ..Stats::default()
            }
        );
        assert_eq!(report.stranded, 0);
    }

    #[test]
    fn a_priority_queue_is_answered_first() {
        // Ten agents for two queues of 4 Erlangs each (occupancy 0.8).
        let spec = PoissonQueue {
            calls_per_hour: 80.0,
            mean_handle_secs: AHT_SECS,
            mean_patience_secs: None,
        };
        let until = secs_to_millis(2e4 / 160.0 * 3600.0);
        let from = secs_to_millis(100.0 * AHT_SECS);
        let measure = Measure::new(2, from, until, 20_000);
        let arrivals = || PoissonArrivals::new(21, vec![spec; 2], until);
        let mut vip = QueueConfig::new(QueueId::new(), Strategy::LongestIdle);
        vip.priority = 10;
        let standard = QueueConfig::new(QueueId::new(), Strategy::LongestIdle);
        let agents = (0..10).map(|_| agent(None)).collect();
        let mut engine = engine_router(vec![vip, standard], agents, &[]);
        let prioritised = simulate(&mut engine, arrivals(), &measure).unwrap();
        let mut fifo = ReferenceRouter::new(2, vec![vec![0, 1]; 10]);
        let shared = simulate(&mut fifo, arrivals(), &measure).unwrap();
        // The same calls either way.
        assert_eq!(prioritised.total.offered, shared.total.offered);
        let [vip, standard] = [0, 1].map(|q| prioritised.queues[q].asa_secs());
        assert!(vip < 0.3 * standard, "vip {vip} s, standard {standard} s");
        let [first, second] = [0, 1].map(|q| shared.queues[q].asa_secs());
        assert!(
            (first / second - 1.0).abs() < 0.25,
            "{first} s and {second} s"
        );
        assert!(prioritised.queues[0].service_level() > shared.queues[0].service_level());
    }

    #[test]
    fn strategies_that_choose_among_free_agents_give_the_same_waits() {
        // Identical agents: whoever answers, each call waits as long (the
        // same calls, FIFO, nobody idle while a call waits). Ring-all rings
        // several agents and the first answers.
        let s = Steady {
            agents: 5,
            load: 0.8,
            patience_secs: None,
            calls: 5e3,
            seed: 31,
        };
        let run = |strategy| {
            let (arrivals, measure) = s.arrivals();
            let mut router = EngineRouter::single_queue(5, strategy).unwrap();
            simulate(&mut router, arrivals, &measure).unwrap()
        };
        let longest_idle = run(Strategy::LongestIdle);
        assert!(longest_idle.total.waited > 0);
        for strategy in [
            Strategy::LeastOccupied,
            Strategy::RoundRobin,
            Strategy::BestProficiency,
            Strategy::RingAll,
        ] {
            assert_eq!(run(strategy), longest_idle, "{strategy:?}");
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let measure = Measure::new(1, 0, 10_000, 1_000);
        let mut router = ReferenceRouter::single_queue(1);
        let unsorted = vec![call(5_000, 0, 1, None), call(4_000, 0, 1, None)];
        assert_eq!(
            simulate(&mut router, unsorted, &measure),
            Err(SimError::Unsorted {
                index: 1,
                arrival: 4_000
            })
        );
        let mut router = ReferenceRouter::single_queue(1);
        assert_eq!(
            simulate(&mut router, vec![call(0, 3, 1, None)], &measure),
            Err(SimError::UnknownQueue {
                index: 0,
                queue: 3,
                queues: 1
            })
        );
    }

    #[test]
    fn intervals_tile_the_window() {
        for (from, len, n) in [(1_000, 999, 7), (0, 10, 10), (5, 1_000_003, 40)] {
            let m = Measure::new(1, from, from + len, 0).with_intervals(n);
            assert_eq!(m.interval_start(0), from);
            for i in 0..n {
                let start = m.interval_start(i);
                assert_eq!(m.interval_of(start), Some(i));
                if i > 0 {
                    assert_eq!(m.interval_of(start - 1), Some(i - 1));
                }
            }
            assert_eq!(m.interval_of(from + len - 1), Some(n - 1));
            assert_eq!(m.interval_of(from + len), None);
            assert_eq!(m.interval_of(from.wrapping_sub(1)), None);
        }
    }

    #[test]
    fn controlled_mean_is_the_regression_intercept() {
        // No controls: the plain mean and its standard error.
        let y = [1.0, 2.0, 3.0, 6.0];
        let (mean, se) = controlled_mean(&y, &[]);
        assert_eq!(mean, 3.0);
        assert!((se - (14.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12);
        // y = 3 + 2z exactly: the intercept, with no error left.
        let z = vec![-1.5, 0.5, 2.0, -0.5];
        let y: Vec<f64> = z.iter().map(|z| 3.0 + 2.0 * z).collect();
        let (estimate, se) = controlled_mean(&y, std::slice::from_ref(&z));
        assert!(
            (estimate - 3.0).abs() < 1e-12 && se < 1e-12,
            "{estimate} {se}"
        );
        // A control that repeats another is dropped, not singular.
        let (estimate, _) = controlled_mean(&y, &[z.clone(), z.iter().map(|v| 2.0 * v).collect()]);
        assert!((estimate - 3.0).abs() < 1e-12);
    }
}
