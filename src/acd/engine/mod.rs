//! The routing engine: one tenant's agents, queues and waiting interactions,
//! and the decisions that pair them. Pure: no I/O, no clock (every call
//! takes the caller's `now`), no async; the service persists what the
//! returned [`Action`]s say.
//!
//! Rules the engine keeps (checked by [`Engine::check_invariants`] and the
//! property tests):
//! - an interaction is offered to one agent at a time, except ring-all voice;
//! - offers reserve capacity: an agent never holds more per channel than
//!   its capacity (unless a configuration change lowered the capacity below
//!   work already connected; then nothing more is offered on that channel);
//! - no interaction waits while a free agent is eligible for it (presence
//!   available, free capacity on its channel, not blocked by a call, the
//!   skills of the step in force plus the interaction's extras, and not one
//!   who already declined it);
//! - a rejected, timed-out or withdrawn interaction goes back to its
//!   original place (its key is its priority, first enqueue time and
//!   arrival sequence, which never change);
//! - every interaction is in exactly one state: waiting in one list,
//!   offered to its ringing agents, or connected to one agent.
//!
//! Time: every call first runs the timers due at or before `now`, in time
//! order (offer timeouts, wrap-up ends, escalation steps, maximum waits), as
//! if `tick` had been called at each deadline; a `now` earlier than one
//! already seen counts as that one. Actions produced by due timers before a
//! call is refused stay buffered and come with the next call's result (or
//! [`Engine::take_actions`]).
//!
//! Decisions go two ways. When an interaction starts waiting, the free
//! agents of its queue's current step are read in strategy order from an
//! ordered index (`BTreeSet`), so a decision costs O(log n), not a scan. When
//! an agent gets a free slot, the heads of the waiting lists of the groups it
//! is eligible for are compared (queue priority, then interaction priority,
//! then enqueue time; a bit per group skips the empty ones). An agent is in
//! its groups' free indexes only while it can take an offer; a changed agent
//! is matched against the waiting lists first and re-indexed after, only
//! where its key or channels changed, so a busy contact centre (interactions
//! waiting) touches almost no agent index at all.
//!
//! Groups: one per escalation step of each queue (its skill requirements);
//! an agent belongs to the groups whose skills it meets and whose channels
//! it has capacity for. Keys per strategy (smallest first): longest-idle and
//! ring-all (idle since, creation order); least-occupied (interactions in
//! hand, idle since); round-robin (creation order, read from the queue's
//! cursor on); best-proficiency (minus the level sum, idle since).

mod config;
mod events;
mod invariants;
mod queries;
mod routing;
mod state;
mod types;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use crate::interactions::domain::Channel;
pub use queries::EngineCounts;
pub use types::*;

use state::{Agent, Group, Ix, Map, Queue, Slab, TimerKey};

use crate::ids::{AgentId, InteractionId, QueueId, SkillId};

/// One tenant's routing state.
#[derive(Debug)]
pub struct Engine {
    now: Millis,
    skills: Map<SkillId, u16>,
    skill_ids: Vec<Option<SkillId>>,
    queues: Slab<Queue>,
    queue_slots: Map<QueueId, u32>,
    groups: Slab<Group>,
    agents: Slab<Agent>,
    agent_slots: Map<AgentId, u32>,
    ixs: Slab<Ix>,
    ix_slots: Map<InteractionId, u32>,
    timers: BTreeSet<TimerKey>,
    /// Bit per group slot: some interaction waits in the group (so a freed
    /// agent skips empty groups without reading them).
    has_waiting: Vec<u64>,
    next_seq: u64,
    next_agent_seq: u64,
    next_epoch: u64,
    dirty_agents: Vec<u32>,
    dirty_ixs: Vec<u32>,
    candidates_k: usize,
    out: Vec<Action>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Self {
        Self {
            now: 0,
            skills: Map::default(),
            skill_ids: Vec::new(),
            queues: Slab::default(),
            queue_slots: Map::default(),
            groups: Slab::default(),
            agents: Slab::default(),
            agent_slots: Map::default(),
            ixs: Slab::default(),
            ix_slots: Map::default(),
            timers: BTreeSet::new(),
            has_waiting: Vec::new(),
            next_seq: 0,
            // From 1: round-robin's cursor starts at 0, before everyone.
            next_agent_seq: 1,
            next_epoch: 0,
            dirty_agents: Vec::new(),
            dirty_ixs: Vec::new(),
            candidates_k: 3,
            out: Vec::new(),
        }
    }

    /// How many candidates a decision records (at least the winners). Default 3.
    pub fn set_decision_candidates(&mut self, k: usize) {
        self.candidates_k = k;
    }

    /// Actions buffered by due timers that ran before a refused call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// Runs the timers due by `now` and returns what they did.
    pub fn tick(&mut self, now: Millis) -> Vec<Action> {
        self.run_due(now);
        std::mem::take(&mut self.out)
    }

    /// When `tick` must run next (the earliest offer timeout, wrap-up end,
    /// escalation step or maximum wait).
    pub fn next_deadline(&self) -> Option<Millis> {
        self.timers.first().map(|t| t.0)
    }

    /// The engine's clock: the latest `now` seen.
    pub fn now(&self) -> Millis {
        self.now
    }

    fn finish<E>(&mut self, r: Result<(), E>) -> Result<Vec<Action>, E> {
        r?;
        let now = self.now;
        self.run_due(now);
        Ok(std::mem::take(&mut self.out))
    }
}
