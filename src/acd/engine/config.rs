//! Configuration: skills, queues and agents, validated before anything
//! changes.

use std::collections::BTreeSet;

use super::state::*;
use super::*;

/// A queue configuration after validation, with skills as dense indexes.
struct ResolvedQueue {
    chmask: u8,
    /// Requirements per step (step 0 first).
    steps: Vec<Reqs>,
    step_after: Vec<Millis>,
}

impl Engine {
    /// Makes a skill known (idempotent).
    pub fn upsert_skill(&mut self, id: SkillId) {
        if !self.skills.contains_key(&id) {
            let idx = match self.skill_ids.iter().position(Option::is_none) {
                Some(i) => {
                    self.skill_ids[i] = Some(id);
                    i
                }
                None => {
                    self.skill_ids.push(Some(id));
                    self.skill_ids.len() - 1
                }
            };
            self.skills.insert(id, idx as u16);
        }
    }

    /// Forgets a skill no agent, queue or waiting interaction uses.
    pub fn remove_skill(&mut self, id: SkillId) -> Result<(), ConfigError> {
        let s = *self.skills.get(&id).ok_or(ConfigError::UnknownSkill(id))?;
        let used = self
            .agents
            .iter()
            .any(|(_, a)| a.skills.iter().any(|r| r.0 == s))
            || self
                .groups
                .iter()
                .any(|(_, g)| g.reqs.iter().any(|r| r.0 == s))
            || self
                .ixs
                .iter()
                .any(|(_, x)| x.extra.iter().any(|r| r.0 == s));
        if used {
            return Err(ConfigError::SkillInUse(id));
        }
        self.skills.remove(&id);
        self.skill_ids[s as usize] = None;
        Ok(())
    }

    fn resolve_reqs(&self, reqs: &[SkillReq]) -> Result<Reqs, ConfigError> {
        let mut out: Reqs = Vec::with_capacity(reqs.len());
        for r in reqs {
            let s = *self
                .skills
                .get(&r.skill)
                .ok_or(ConfigError::UnknownSkill(r.skill))?;
            if !(MIN_LEVEL..=MAX_LEVEL).contains(&r.min_level) {
                return Err(ConfigError::LevelOutOfRange {
                    skill: r.skill,
                    level: r.min_level,
                });
            }
            if out.iter().any(|(t, _)| *t == s) {
                return Err(ConfigError::DuplicateSkill(r.skill));
            }
            out.push((s, r.min_level));
        }
        out.sort_unstable();
        Ok(out)
    }

    fn validate_queue(&self, cfg: &QueueConfig) -> Result<ResolvedQueue, ConfigError> {
        let chmask = if cfg.channels.is_empty() {
            0b1111
        } else {
            channel_mask(&cfg.channels)
        };
        let mut steps = vec![self.resolve_reqs(&cfg.required)?];
        let mut step_after = vec![0];
        for (n, e) in cfg.escalation.iter().enumerate() {
            let step = n + 1;
            if e.after_ms <= *step_after.last().expect("step 0") {
                return Err(ConfigError::BadEscalation {
                    step,
                    problem: "after_ms must grow from step to step (and be above 0)",
                });
            }
            let reqs = self.resolve_reqs(&e.required)?;
            let prev = steps.last().expect("step 0");
            let wider = reqs
                .iter()
                .all(|&(s, l)| prev.iter().any(|&(p, pl)| p == s && l <= pl));
            if !wider {
                return Err(ConfigError::BadEscalation {
                    step,
                    problem: "each step must widen the last: a subset of its skills at the same or lower levels",
                });
            }
            steps.push(reqs);
            step_after.push(e.after_ms);
        }
        if cfg.offer_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "offer_timeout_ms",
                problem: "must be above 0",
            });
        }
        if cfg.ring_all_max == 0 {
            return Err(ConfigError::Invalid {
                field: "ring_all_max",
                problem: "must be at least 1",
            });
        }
        if cfg.service_level.target_pct > 100 {
            return Err(ConfigError::Invalid {
                field: "service_level.target_pct",
                problem: "must be at most 100",
            });
        }
        if (cfg.max_wait_ms.is_some() || cfg.max_length.is_some()) && cfg.overflow.is_none() {
            return Err(ConfigError::MissingOverflow);
        }
        if let Some(OverflowTarget::Flow(name)) = &cfg.overflow
            && name.trim().is_empty()
        {
            return Err(ConfigError::Invalid {
                field: "overflow",
                problem: "flow name is empty",
            });
        }
        // The overflow chain from this queue, with this configuration.
        if let Some(OverflowTarget::Queue(t)) = &cfg.overflow {
            let mut path = vec![cfg.id];
            let mut next = Some(*t);
            while let Some(t) = next {
                path.push(t);
                if t == cfg.id {
                    return Err(ConfigError::OverflowCycle(path));
                }
                let slot = *self
                    .queue_slots
                    .get(&t)
                    .ok_or(ConfigError::UnknownQueue(t))?;
                let tq = self.queues.get(slot);
                if path.len() == 2 && chmask & !tq.chmask != 0 {
                    return Err(ConfigError::OverflowChannels {
                        from: cfg.id,
                        to: t,
                    });
                }
                next = match &tq.cfg.overflow {
                    Some(OverflowTarget::Queue(n)) => Some(*n),
                    _ => None,
                };
            }
        }
        // Queues overflowing into this one must still fit its channels.
        for (_, q) in self.queues.iter() {
            if q.cfg.id != cfg.id
                && q.cfg.overflow == Some(OverflowTarget::Queue(cfg.id))
                && q.chmask & !chmask != 0
            {
                return Err(ConfigError::OverflowChannels {
                    from: q.cfg.id,
                    to: cfg.id,
                });
            }
        }
        // Interactions of a channel the queue would no longer take.
        if let Some(&slot) = self.queue_slots.get(&cfg.id) {
            let stray = self
                .ixs
                .iter()
                .any(|(_, x)| x.queue == slot && x.queue_id == cfg.id && chmask & (1 << x.c) == 0);
            if stray {
                return Err(ConfigError::Invalid {
                    field: "channels",
                    problem: "interactions of a dropped channel are in the queue",
                });
            }
        }
        Ok(ResolvedQueue {
            chmask,
            steps,
            step_after,
        })
    }

    /// Validates a queue configuration without applying it, and says which
    /// of its channels no current agent could ever serve (flag these).
    pub fn check_queue(&self, cfg: &QueueConfig) -> Result<Vec<Channel>, ConfigError> {
        let r = self.validate_queue(cfg)?;
        let last = r.steps.last().expect("step 0");
        let mut served = 0u8;
        for (_, a) in self.agents.iter() {
            if meets(&a.skills, last).is_some() {
                for c in 0..4 {
                    if a.cap[c] > 0 {
                        served |= 1 << c;
                    }
                }
            }
        }
        Ok(mask_channels(r.chmask & !served))
    }

    /// Adds or replaces a queue. Waiting interactions keep their places and
    /// move to the new steps; current offers stand.
    pub fn upsert_queue(
        &mut self,
        now: Millis,
        q: QueueConfig,
    ) -> Result<Vec<Action>, ConfigError> {
        self.run_due(now);
        let r = self.validate_queue(&q).map(|r| self.apply_queue(q, r));
        self.finish(r)
    }

    fn apply_queue(&mut self, cfg: QueueConfig, r: ResolvedQueue) {
        let existing = self.queue_slots.get(&cfg.id).copied();
        let mut waiting = Vec::new();
        let slot = match existing {
            Some(slot) => {
                waiting = self.drop_groups(slot);
                let q = self.queues.get_mut(slot);
                q.cfg = cfg;
                q.chmask = r.chmask;
                q.step_after = r.step_after;
                q.waiting = 0;
                slot
            }
            None => {
                let id = cfg.id;
                let slot = self.queues.insert(Queue {
                    cfg,
                    chmask: r.chmask,
                    groups: Vec::new(),
                    step_after: r.step_after,
                    rr_cursor: 0,
                    stats: Stats::default(),
                    waiting: 0,
                    offered: 0,
                    unservable: 0,
                });
                self.queue_slots.insert(id, slot);
                slot
            }
        };
        let strategy = self.queues.get(slot).cfg.strategy;
        let mut new_groups = Vec::with_capacity(r.steps.len());
        for (step, reqs) in r.steps.into_iter().enumerate() {
            new_groups.push(self.groups.insert(Group {
                queue: slot,
                step,
                strategy,
                chmask: r.chmask,
                reqs,
                free: Default::default(),
                waiting: Default::default(),
                servers: [0; 4],
            }));
        }
        self.queues.get_mut(slot).groups = new_groups.clone();
        for a in self.agents.slots() {
            let mut joined = false;
            for &g in &new_groups {
                if let Some(score) = self.eligible(self.agents.get(a), self.groups.get(g)) {
                    if !joined {
                        self.touch_hard(a);
                        joined = true;
                    }
                    self.join(a, g, score);
                }
            }
        }
        let now = self.now;
        for i in waiting {
            let q = self.queues.get(slot);
            let ix = self.ixs.get(i);
            let step = q.step_at(now.saturating_sub(ix.queued_at));
            self.ixs.get_mut(i).step = step;
            self.insert_waiting(i);
            self.reset_ix_timer(i);
            self.dirty_ixs.push(i);
        }
        // Offered interactions keep ringing; their step is re-read on requeue.
        self.clamp_offered_steps(slot);
        // No longer ring-all: only the first agent keeps ringing.
        if strategy != Strategy::RingAll {
            for i in self.ixs.slots() {
                let ix = self.ixs.get(i);
                if ix.queue != slot {
                    continue;
                }
                if let IxState::Offered { agents, .. } = &ix.state {
                    for a in agents.clone().into_iter().skip(1) {
                        self.withdraw(a, i, WithdrawReason::ConfigChanged);
                    }
                }
            }
        }
        self.recheck_servability();
    }

    /// Offered interactions of a queue whose steps changed: keep `step`
    /// within the new groups (it is recomputed on requeue anyway).
    fn clamp_offered_steps(&mut self, slot: u32) {
        let n = self.queues.get(slot).groups.len();
        for i in self.ixs.slots() {
            let ix = self.ixs.get_mut(i);
            if ix.queue == slot && ix.step >= n {
                ix.step = n - 1;
            }
        }
    }

    fn join(&mut self, a: u32, g: u32, score: u32) {
        let ag = self.agents.get_mut(a);
        let grp = self.groups.get_mut(g);
        for c in 0..4 {
            if ag.cap[c] > 0 {
                grp.servers[c] += 1;
            }
        }
        let qprio = self.queues.get(grp.queue).cfg.priority;
        ag.members.push(Member {
            group: g,
            score,
            chmask: grp.chmask,
            qprio,
        });
    }

    /// Removes a queue's groups (its members are touched first so their
    /// index entries go); returns the interactions that were waiting in them.
    fn drop_groups(&mut self, slot: u32) -> Vec<u32> {
        let groups = std::mem::take(&mut self.queues.get_mut(slot).groups);
        let gset: BTreeSet<u32> = groups.iter().copied().collect();
        for a in self.agents.slots() {
            if self
                .agents
                .get(a)
                .members
                .iter()
                .any(|m| gset.contains(&m.group))
            {
                self.touch_hard(a);
                self.agents
                    .get_mut(a)
                    .members
                    .retain(|m| !gset.contains(&m.group));
            }
        }
        let mut waiting = Vec::new();
        for g in groups {
            if let Some(w) = self.has_waiting.get_mut(g as usize / 64) {
                *w &= !(1 << (g % 64));
            }
            let grp = self.groups.remove(g);
            for w in grp.waiting.iter() {
                waiting.extend(w.iter().map(|k| k.3));
            }
        }
        self.queues.get_mut(slot).waiting = 0;
        waiting
    }

    /// Removes a queue. Its waiting and offered interactions go to its
    /// overflow (refused if it has none); refused while another queue
    /// overflows into it.
    pub fn remove_queue(&mut self, now: Millis, id: QueueId) -> Result<Vec<Action>, ConfigError> {
        self.run_due(now);
        let r = self.do_remove_queue(id);
        self.finish(r)
    }

    fn do_remove_queue(&mut self, id: QueueId) -> Result<(), ConfigError> {
        let slot = *self
            .queue_slots
            .get(&id)
            .ok_or(ConfigError::UnknownQueue(id))?;
        for (_, q) in self.queues.iter() {
            if q.cfg.id != id && q.cfg.overflow == Some(OverflowTarget::Queue(id)) {
                return Err(ConfigError::QueueInUse {
                    queue: id,
                    by: q.cfg.id,
                });
            }
        }
        let q = self.queues.get(slot);
        if q.waiting + q.offered > 0 && q.cfg.overflow.is_none() {
            return Err(ConfigError::QueueNotEmpty(id));
        }
        // Offered: withdraw (they requeue), then everything waiting overflows.
        for i in self.ixs.slots() {
            let ix = self.ixs.get(i);
            if ix.queue != slot || ix.queue_id != id {
                continue;
            }
            if let IxState::Offered { agents, .. } = ix.state.clone() {
                for a in agents {
                    self.withdraw(a, i, WithdrawReason::ConfigChanged);
                }
            }
        }
        for i in self.ixs.slots() {
            let ix = self.ixs.get(i);
            if ix.queue == slot && ix.queue_id == id && ix.state == IxState::Waiting {
                self.overflow_from(i, OverflowReason::QueueRemoved);
            }
        }
        let waiting = self.drop_groups(slot);
        debug_assert!(waiting.is_empty());
        self.queues.remove(slot);
        self.queue_slots.remove(&id);
        self.recheck_servability();
        Ok(())
    }

    fn resolve_agent(&self, cfg: &AgentConfig) -> Result<Reqs, ConfigError> {
        let reqs: Vec<SkillReq> = cfg
            .skills
            .iter()
            .map(|s| SkillReq {
                skill: s.skill,
                min_level: s.level,
            })
            .collect();
        let skills = self.resolve_reqs(&reqs)?;
        if cfg.max_no_answers == 0 {
            return Err(ConfigError::Invalid {
                field: "max_no_answers",
                problem: "must be at least 1",
            });
        }
        Ok(skills)
    }

    /// Adds an agent (offline) or replaces an agent's skills, capacity and
    /// rules. Lowering a capacity below the offers in hand withdraws the
    /// newest offers.
    pub fn upsert_agent(
        &mut self,
        now: Millis,
        a: AgentConfig,
    ) -> Result<Vec<Action>, ConfigError> {
        self.run_due(now);
        let r = self
            .resolve_agent(&a)
            .map(|skills| self.apply_agent(a, skills));
        self.finish(r)
    }

    fn apply_agent(&mut self, cfg: AgentConfig, skills: Reqs) {
        let now = self.now;
        let cap = cfg.capacity.as_array();
        let a = match self.agent_slots.get(&cfg.id).copied() {
            Some(a) => {
                self.touch_hard(a);
                self.leave_all(a);
                let ag = self.agents.get_mut(a);
                ag.cfg = cfg;
                ag.skills = skills;
                ag.cap = cap;
                a
            }
            None => {
                let id = cfg.id;
                let seq = self.next_agent_seq;
                self.next_agent_seq += 1;
                let epoch = self.new_epoch();
                let a = self.agents.insert(Agent {
                    id,
                    seq,
                    cfg,
                    skills,
                    cap,
                    presence: Presence::Offline,
                    load: [0; 4],
                    offers: Vec::new(),
                    connected: Vec::new(),
                    wraps: Vec::new(),
                    timer: None,
                    no_answers: 0,
                    idle_since: now,
                    epoch,
                    members: Vec::new(),
                    indexed: 0,
                    ix_key: (0, 0),
                    dirty: false,
                });
                self.agent_slots.insert(id, a);
                self.touch(a);
                a
            }
        };
        let joins: Vec<(u32, u32)> = self
            .groups
            .iter()
            .filter_map(|(g, grp)| self.eligible(self.agents.get(a), grp).map(|s| (g, s)))
            .collect();
        for (g, s) in joins {
            self.join(a, g, s);
        }
        // Offers beyond a lowered capacity go back to their places, newest first.
        for c in 0..4 {
            loop {
                let ag = self.agents.get(a);
                if ag.load[c] <= ag.cap[c] as u16 {
                    break;
                }
                let newest = ag
                    .offers
                    .iter()
                    .rev()
                    .copied()
                    .find(|&i| self.ixs.get(i).c == c);
                match newest {
                    Some(i) => self.withdraw(a, i, WithdrawReason::ConfigChanged),
                    None => break,
                }
            }
        }
        self.recheck_servability();
    }

    fn leave_all(&mut self, a: u32) {
        let ag = self.agents.get_mut(a);
        for m in std::mem::take(&mut ag.members) {
            let g = self.groups.get_mut(m.group);
            for c in 0..4 {
                if ag.cap[c] > 0 {
                    g.servers[c] -= 1;
                }
            }
        }
    }

    /// Removes an agent without connected or wrap-up work; their offers go
    /// back to their places.
    pub fn remove_agent(&mut self, now: Millis, id: AgentId) -> Result<Vec<Action>, ConfigError> {
        self.run_due(now);
        let r = self.do_remove_agent(id);
        self.finish(r)
    }

    fn do_remove_agent(&mut self, id: AgentId) -> Result<(), ConfigError> {
        let a = *self
            .agent_slots
            .get(&id)
            .ok_or(ConfigError::UnknownAgent(id))?;
        let ag = self.agents.get(a);
        if !ag.connected.is_empty() || !ag.wraps.is_empty() {
            return Err(ConfigError::AgentBusy(id));
        }
        self.withdraw_agent_offers(a, WithdrawReason::ConfigChanged);
        self.unindex(a);
        self.leave_all(a);
        let ag = self.agents.get_mut(a);
        if let Some(t) = ag.timer.take() {
            self.timers.remove(&(t, TIMER_AGENT, a));
        }
        self.agents.remove(a);
        self.agent_slots.remove(&id);
        self.dirty_agents.retain(|&d| d != a);
        for i in self.ixs.slots() {
            self.ixs.get_mut(i).declined.retain(|&d| d.0 != a);
        }
        self.recheck_servability();
        Ok(())
    }

    /// Flags queues whose unservable channels changed, and sends waiting
    /// interactions nobody could ever serve to their overflow.
    fn recheck_servability(&mut self) {
        for q in self.queues.slots() {
            let queue = self.queues.get(q);
            let last = self.groups.get(*queue.groups.last().expect("group"));
            let mut mask = 0;
            for c in bits(queue.chmask) {
                if last.servers[c] == 0 {
                    mask |= 1 << c;
                }
            }
            if mask != queue.unservable {
                self.out.push(Action::ServabilityChanged {
                    queue: queue.cfg.id,
                    unservable: mask_channels(mask),
                });
                self.queues.get_mut(q).unservable = mask;
            }
        }
        for i in self.ixs.slots() {
            let Some(ix) = self.ixs.try_get(i) else {
                continue;
            };
            if ix.state == IxState::Waiting
                && self.queues.get(ix.queue).cfg.overflow.is_some()
                && !self.servable(i)
            {
                self.overflow_from(i, OverflowReason::Unservable);
            }
        }
    }
}
