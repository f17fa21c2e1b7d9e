//! The engine's public vocabulary: configuration, events, actions, decision
//! records, queries and errors.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, InteractionId, QueueId, SkillId};
use crate::interactions::domain::Channel;

/// The caller's clock: milliseconds since any epoch, passed into every call.
pub type Millis = u64;
/// A skill proficiency, `MIN_LEVEL..=MAX_LEVEL`.
pub type Level = u8;
pub const MIN_LEVEL: Level = 1;
pub const MAX_LEVEL: Level = 5;

/// Every channel, in the engine's internal order.
pub const CHANNELS: [Channel; 4] = [Channel::Voice, Channel::Chat, Channel::Sms, Channel::Email];

pub(crate) fn ch(c: Channel) -> usize {
    match c {
        Channel::Voice => 0,
        Channel::Chat => 1,
        Channel::Sms => 2,
        Channel::Email => 3,
    }
}

pub(crate) fn channel_mask(cs: &[Channel]) -> u8 {
    cs.iter().fold(0, |m, c| m | 1 << ch(*c))
}

pub(crate) fn mask_channels(m: u8) -> Vec<Channel> {
    CHANNELS
        .iter()
        .copied()
        .filter(|c| m & (1 << ch(*c)) != 0)
        .collect()
}

/// How a queue picks among the free eligible agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent idle the longest (since their last slot freed or they became available).
    LongestIdle,
    /// The agent with the fewest interactions in hand (offered, connected or
    /// in wrap-up, all channels); ties go to the longest idle.
    LeastOccupied,
    /// The next agent after the last one this queue picked, in a fixed order
    /// (the order agents were added), wrapping around.
    RoundRobin,
    /// The highest sum of levels on the skills the queue requires at the
    /// current step; ties go to the longest idle.
    BestProficiency,
    /// Voice: offer to up to `ring_all_max` free agents at once, longest idle
    /// first; the first to accept wins. Other channels fall back to longest-idle.
    RingAll,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "longest_idle",
            Strategy::LeastOccupied => "least_occupied",
            Strategy::RoundRobin => "round_robin",
            Strategy::BestProficiency => "best_proficiency",
            Strategy::RingAll => "ring_all",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = ConfigError;
    /// Reads the catalogue's strategy names (`queues.strategy`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "longest_idle" => Strategy::LongestIdle,
            "least_occupied" | "fewest_interactions" => Strategy::LeastOccupied,
            "round_robin" => Strategy::RoundRobin,
            "best_proficiency" => Strategy::BestProficiency,
            "ring_all" => Strategy::RingAll,
            _ => return Err(ConfigError::UnknownStrategy(s.to_owned())),
        })
    }
}

/// A required skill and the lowest level that qualifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SkillReq {
    pub skill: SkillId,
    pub min_level: Level,
}

/// An agent's skill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentSkill {
    pub skill: SkillId,
    pub level: Level,
}

/// From `after_ms` of waiting in the queue on, `required` replaces the
/// previous step's requirements. Each step must be wider than the one before
/// (a subset of its skills, each at the same or a lower level), so every
/// agent eligible before stays eligible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationStep {
    pub after_ms: Millis,
    pub required: Vec<SkillReq>,
}

/// Where an interaction goes when it leaves a queue without an agent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "target", rename_all = "snake_case")]
pub enum OverflowTarget {
    Queue(QueueId),
    /// A flow (IVR, voicemail...) by name: the interaction leaves the engine.
    Flow(String),
}

/// `target_pct` % of interactions answered within `threshold_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLevel {
    pub target_pct: u8,
    pub threshold_ms: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub id: QueueId,
    pub strategy: Strategy,
    /// Higher first: an agent free for several queues takes the highest
    /// queue priority first, then the highest interaction priority, then the
    /// longest waiting.
    pub priority: i32,
    /// The channels the queue takes (empty: all).
    pub channels: Vec<Channel>,
    /// Step 0's requirements.
    pub required: Vec<SkillReq>,
    /// Steps 1.. (`after_ms` strictly increasing, each wider than the last).
    pub escalation: Vec<EscalationStep>,
    pub service_level: ServiceLevel,
    /// How long an offer rings before it times out (no answer).
    pub offer_timeout_ms: Millis,
    /// Waiting longer than this (callbacks excepted) overflows.
    pub max_wait_ms: Option<Millis>,
    /// An arrival that finds this many waiting overflows at once.
    pub max_length: Option<usize>,
    /// Needed when `max_wait_ms` or `max_length` is set; also where
    /// interactions go when no agent could ever serve them.
    pub overflow: Option<OverflowTarget>,
    /// Ring-all: how many agents ring at once (at least 1).
    pub ring_all_max: usize,
}

impl QueueConfig {
    /// A queue with defaults: priority 0, every channel, no skills, 80 % in
    /// 20 s, 15 s offer timeout, no maximum wait or length, ring-all over 8.
    pub fn new(id: QueueId, strategy: Strategy) -> Self {
        Self {
            id,
            strategy,
            priority: 0,
            channels: Vec::new(),
            required: Vec::new(),
            escalation: Vec::new(),
            service_level: ServiceLevel {
                target_pct: 80,
                threshold_ms: 20_000,
            },
            offer_timeout_ms: 15_000,
            max_wait_ms: None,
            max_length: None,
            overflow: None,
            ring_all_max: 8,
        }
    }
}

/// Interactions an agent may hold at once per channel (offers reserve a slot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub voice: u8,
    pub chat: u8,
    pub sms: u8,
    pub email: u8,
}

impl Capacity {
    pub fn get(&self, c: Channel) -> u8 {
        self.as_array()[ch(c)]
    }
    pub(crate) fn as_array(&self) -> [u8; 4] {
        [self.voice, self.chat, self.sms, self.email]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub id: AgentId,
    pub skills: Vec<AgentSkill>,
    pub capacity: Capacity,
    /// While the agent has a voice interaction (offered, connected or in
    /// wrap-up), nothing of another channel is offered to them.
    pub voice_blocks_other: bool,
    /// Consecutive offers left unanswered (timed out) after which the agent is
    /// set away with reason `no_answer`; at least 1. An accepted offer resets
    /// the count.
    pub max_no_answers: u32,
    /// Wrap-up after each interaction: `None` ends only by `end_wrap_up`,
    /// `Some(0)` means no wrap-up, `Some(t)` ends by itself after `t`.
    pub wrap_up_ms: Option<Millis>,
}

impl AgentConfig {
    /// An agent with defaults: one voice call, calls block chats, away at the
    /// first unanswered offer, wrap-up ended by the agent.
    pub fn new(id: AgentId, skills: Vec<AgentSkill>) -> Self {
        Self {
            id,
            skills,
            capacity: Capacity {
                voice: 1,
                ..Capacity::default()
            },
            voice_blocks_other: true,
            max_no_answers: 1,
            wrap_up_ms: None,
        }
    }
}

/// What the agent chose. (Busy and wrap-up are derived: see `AgentStatus`.)
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "presence", rename_all = "snake_case")]
pub enum Presence {
    Offline,
    Available,
    Away { reason: String },
}

/// Presence and work together, for consoles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AgentStatus {
    Offline,
    Away {
        reason: String,
    },
    /// Available with nothing in hand.
    Idle,
    /// Has offered or connected interactions (and may still have free slots).
    Busy,
    /// Only wrap-up work in hand.
    WrapUp,
}

/// An interaction entering a queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    pub interaction: InteractionId,
    pub queue: QueueId,
    pub channel: Channel,
    /// Higher first, within a queue.
    pub priority: i32,
    /// Skills this interaction needs beyond the queue's (e.g. a language).
    pub extra_skills: Vec<SkillReq>,
    /// The place to keep: the time the customer first queued (a callback or
    /// an interaction restored after a restart). Default: now.
    pub enqueued_at: Option<Millis>,
    /// A callback: the customer is not on the line, so there is no maximum
    /// wait; the offer says so, so the service dials out on accept.
    pub callback: bool,
}

impl Arrival {
    pub fn new(interaction: InteractionId, queue: QueueId, channel: Channel) -> Self {
        Self {
            interaction,
            queue,
            channel,
            priority: 0,
            extra_skills: Vec::new(),
            enqueued_at: None,
            callback: false,
        }
    }
}

/// What caused a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An interaction started waiting (arrival, requeue, escalation step,
    /// configuration change) and free agents were searched.
    InteractionWaiting,
    /// An agent got a free slot and the waiting interactions were searched.
    AgentAvailable,
}

/// A free eligible agent considered, in the strategy's order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub agent: AgentId,
    /// The strategy's score, higher is better: idle ms (longest-idle,
    /// ring-all), minus interactions in hand (least-occupied), minus the
    /// distance from the round-robin cursor (round-robin), the level sum
    /// (best-proficiency).
    pub score: i64,
    pub idle_ms: Millis,
    /// Interactions in hand over all channels.
    pub load: u32,
    /// The agent's level sum over the skills in force.
    pub proficiency: u32,
}

/// Why an interaction was offered to an agent: stored and shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub interaction: InteractionId,
    pub queue: QueueId,
    pub channel: Channel,
    pub at: Millis,
    pub trigger: Trigger,
    /// The escalation step in force (0: the queue's base requirements).
    pub step: usize,
    pub strategy: Strategy,
    /// The skills in force: the step's, plus the interaction's extras.
    pub required: Vec<SkillReq>,
    pub waited_ms: Millis,
    /// Free eligible agents at the time (before exclusions for agents who
    /// already declined this interaction).
    pub eligible_free: usize,
    /// The first few candidates in the strategy's order, winners first.
    pub candidates: Vec<Candidate>,
    /// One agent, or several for ring-all.
    pub winners: Vec<AgentId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    /// Ring-all: another agent accepted.
    AnsweredElsewhere,
    /// The customer left.
    HungUp,
    /// The agent went away or offline.
    AgentUnavailable,
    /// The agent's capacity was lowered, or the queue removed.
    ConfigChanged,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequeueReason {
    Rejected,
    NoAnswer,
    Withdrawn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowReason {
    MaxWait,
    MaxLength,
    /// No agent could ever serve it (skills or channel).
    Unservable,
    QueueRemoved,
}

/// What the caller must carry out (persist, notify, ring). In order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Reserve and ring: `agents` has several only for ring-all.
    Offer {
        interaction: InteractionId,
        agents: Vec<AgentId>,
        callback: bool,
        decision: Box<Decision>,
        expires_at: Millis,
    },
    OfferWithdrawn {
        interaction: InteractionId,
        agent: AgentId,
        reason: WithdrawReason,
    },
    Connected {
        interaction: InteractionId,
        agent: AgentId,
        queue: QueueId,
        waited_ms: Millis,
    },
    /// Back to waiting at its original place.
    Requeued {
        interaction: InteractionId,
        queue: QueueId,
        reason: RequeueReason,
    },
    /// The wait widened to the next escalation step.
    Escalated {
        interaction: InteractionId,
        queue: QueueId,
        step: usize,
    },
    Overflowed {
        interaction: InteractionId,
        from: QueueId,
        to: OverflowTarget,
        reason: OverflowReason,
    },
    /// The customer left before reaching an agent (or a callback was cancelled).
    Abandoned {
        interaction: InteractionId,
        queue: QueueId,
        waited_ms: Millis,
    },
    /// A connected interaction ended; the engine forgets it.
    Ended {
        interaction: InteractionId,
        agent: AgentId,
        handled_ms: Millis,
    },
    AgentAway {
        agent: AgentId,
        reason: String,
    },
    WrapUpStarted {
        agent: AgentId,
        interaction: InteractionId,
        until: Option<Millis>,
    },
    WrapUpEnded {
        agent: AgentId,
        interaction: InteractionId,
    },
    /// A queue's set of channels no agent could ever serve changed (flagged
    /// on every configuration change that changes it; empty: servable again).
    ServabilityChanged {
        queue: QueueId,
        unservable: Vec<Channel>,
    },
}

/// Place in queue, for announcements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Position {
    pub queue: QueueId,
    pub channel: Channel,
    /// 1-based among the queue's waiting interactions of the same channel.
    pub place: usize,
    pub waiting: usize,
    pub step: usize,
    /// `place` times the recent average gap between answers in this queue;
    /// `None` until the queue has answered twice.
    pub estimated_wait_ms: Option<Millis>,
}

/// Where an interaction is, as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InteractionState {
    Waiting {
        queue: QueueId,
        step: usize,
        callback: bool,
    },
    Offered {
        queue: QueueId,
        agents: Vec<AgentId>,
        expires_at: Millis,
        /// The customer asked to be called back.
        callback: bool,
    },
    Connected {
        queue: QueueId,
        agent: AgentId,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueSnapshot {
    pub id: QueueId,
    pub strategy: Strategy,
    pub waiting: usize,
    pub offered: usize,
    pub oldest_enqueued_at: Option<Millis>,
    /// Free eligible agents per channel at step 0.
    pub free_agents: Vec<(Channel, usize)>,
    /// Accepted channels that no agent could ever serve.
    pub unservable: Vec<Channel>,
    pub arrived: u64,
    pub answered: u64,
    pub answered_within_sl: u64,
    pub abandoned: u64,
    pub overflowed: u64,
    /// Answered within the threshold over answered plus abandoned.
    pub service_level: Option<f64>,
    pub service_level_target: ServiceLevel,
    pub average_answer_ms: Option<Millis>,
    pub average_handle_ms: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentSnapshot {
    pub id: AgentId,
    pub presence: Presence,
    pub status: AgentStatus,
    pub capacity: Capacity,
    /// Offered + connected + wrap-up, per channel.
    pub load: Capacity,
    pub offers: Vec<InteractionId>,
    pub connected: Vec<InteractionId>,
    pub wrap_ups: Vec<(InteractionId, Option<Millis>)>,
    pub consecutive_no_answers: u32,
    pub idle_since: Millis,
    /// Queues the agent is eligible for at some step.
    pub queues: Vec<QueueId>,
}

/// A configuration change was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown skill {0}")]
    UnknownSkill(SkillId),
    #[error("skill {0} is listed twice")]
    DuplicateSkill(SkillId),
    #[error("skill {skill}: level {level} is outside 1..=5")]
    LevelOutOfRange { skill: SkillId, level: Level },
    #[error("skill {0} is in use")]
    SkillInUse(SkillId),
    #[error("unknown queue {0}")]
    UnknownQueue(QueueId),
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    #[error("unknown strategy {0:?}")]
    UnknownStrategy(String),
    #[error("overflow rules form a cycle: {0:?}")]
    OverflowCycle(Vec<QueueId>),
    #[error("queue {from} overflows to {to}, which does not take every channel it takes")]
    OverflowChannels { from: QueueId, to: QueueId },
    #[error("a maximum wait or length needs an overflow target")]
    MissingOverflow,
    #[error("escalation step {step}: {problem}")]
    BadEscalation { step: usize, problem: &'static str },
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
    #[error("queue {queue} is the overflow target of {by}")]
    QueueInUse { queue: QueueId, by: QueueId },
    #[error("queue {0} has interactions and no overflow to send them to")]
    QueueNotEmpty(QueueId),
    #[error("agent {0} has connected interactions or wrap-up work")]
    AgentBusy(AgentId),
}

/// A runtime event was refused; nothing changed (due timers did run).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    #[error("unknown queue {0}")]
    UnknownQueue(QueueId),
    #[error("unknown interaction {0}")]
    UnknownInteraction(InteractionId),
    #[error("unknown skill {0}")]
    UnknownSkill(SkillId),
    #[error("skill {skill}: level {level} is outside 1..=5")]
    LevelOutOfRange { skill: SkillId, level: Level },
    #[error("interaction {0} is already routed")]
    DuplicateInteraction(InteractionId),
    #[error("queue {queue} does not take {channel:?}")]
    ChannelNotAccepted { queue: QueueId, channel: Channel },
    #[error("no agent could ever serve this in queue {0}, and it has no overflow")]
    Unservable(QueueId),
    #[error("interaction {interaction} is not offered to agent {agent}")]
    NotOffered {
        agent: AgentId,
        interaction: InteractionId,
    },
    #[error("interaction {0} is not waiting")]
    NotWaiting(InteractionId),
    #[error("agent {0} is not in wrap-up")]
    NotInWrapUp(AgentId),
}
