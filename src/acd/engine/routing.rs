//! The mechanics under every call: indexes, matching both ways, offers,
//! requeues, overflows and timers.

use super::state::*;
use super::*;

impl Engine {
    // ----- indexes -------------------------------------------------------

    /// Queues the agent for re-matching and re-indexing. Call when anything
    /// its offerability or keys depend on changes (presence, load, idle
    /// time). Its index entries stay until then (decisions skip dirty
    /// agents), so an agent whose keys did not change costs no index work.
    pub(super) fn touch(&mut self, a: u32) {
        let ag = self.agents.get_mut(a);
        if !ag.dirty {
            ag.dirty = true;
            self.dirty_agents.push(a);
        }
    }

    /// Like `touch`, and takes the agent out of the indexes now: call before
    /// its memberships change.
    pub(super) fn touch_hard(&mut self, a: u32) {
        self.unindex(a);
        self.touch(a);
    }

    /// The agent's level sum if it is eligible for the group: the skills,
    /// and capacity on one of the group's channels.
    pub(super) fn eligible(&self, ag: &Agent, g: &Group) -> Option<u32> {
        if ag.capmask() & g.chmask == 0 {
            return None;
        }
        meets(&ag.skills, &g.reqs)
    }

    pub(super) fn unindex(&mut self, a: u32) {
        let ag = self.agents.get_mut(a);
        if ag.indexed == 0 {
            return;
        }
        let (idle, load) = ag.ix_key;
        for m in &ag.members {
            let g = self.groups.get_mut(m.group);
            let key = free_key(g.strategy, idle, load, m.score, ag.seq, a);
            for c in bits(ag.indexed & g.chmask) {
                g.free[c].remove(&key);
            }
        }
        ag.indexed = 0;
    }

    /// Brings the agent's index entries up to date, touching only the
    /// entries whose channel or key changed.
    fn reindex(&mut self, a: u32) {
        let ag = self.agents.get_mut(a);
        let (old_mask, old) = (ag.indexed, ag.ix_key);
        let mask = ag.offerable_mask();
        let new = (ag.idle_since, ag.total_load());
        if old_mask == mask && (mask == 0 || old == new) {
            return;
        }
        for m in &ag.members {
            let both = old_mask & mask & m.chmask;
            let either = (old_mask | mask) & m.chmask;
            if either == 0 {
                continue;
            }
            let g = self.groups.get_mut(m.group);
            let ok = free_key(g.strategy, old.0, old.1, m.score, ag.seq, a);
            let nk = free_key(g.strategy, new.0, new.1, m.score, ag.seq, a);
            for c in bits(either) {
                if both & (1 << c) != 0 && ok == nk {
                    continue;
                }
                if old_mask & (1 << c) != 0 {
                    g.free[c].remove(&ok);
                }
                if mask & (1 << c) != 0 {
                    g.free[c].insert(nk);
                }
            }
        }
        ag.indexed = mask;
        ag.ix_key = new;
    }

    // ----- settling ------------------------------------------------------

    /// Matches queued agents and interactions until nothing more can be
    /// offered: afterwards no waiting interaction has a free eligible agent.
    pub(super) fn settle(&mut self) {
        loop {
            if let Some(a) = self.dirty_agents.pop() {
                self.process_agent(a);
            } else if let Some(i) = self.dirty_ixs.pop() {
                self.process_ix(i);
            } else {
                break;
            }
        }
    }

    fn process_agent(&mut self, a: u32) {
        let Some(ag) = self.agents.try_get(a) else {
            return;
        };
        if !ag.dirty {
            return;
        }
        loop {
            let mask = self.agents.get(a).offerable_mask();
            if mask == 0 {
                break;
            }
            let Some((i, score)) = self.best_waiting_for(a, mask) else {
                break;
            };
            let decision = self.agent_decision(a, i, score);
            self.offer(i, vec![a], decision);
        }
        self.reindex(a);
        self.agents.get_mut(a).dirty = false;
    }

    /// The waiting interaction agent `a` should take on one of `mask`'s
    /// channels, and the agent's level sum for it.
    fn best_waiting_for(&self, a: u32, mask: u8) -> Option<(u32, u32)> {
        let ag = self.agents.get(a);
        // (-(queue priority), wait key), interaction, score
        let mut best: Option<((i64, WaitKey), u32, u32)> = None;
        for m in &ag.members {
            if mask & m.chmask == 0 || !self.group_has_waiting(m.group) {
                continue;
            }
            let g = self.groups.get(m.group);
            let qprio = -(m.qprio as i64);
            for c in bits(mask & m.chmask) {
                for key in &g.waiting[c] {
                    let rank = (qprio, *key);
                    if best.as_ref().is_some_and(|b| rank >= b.0) {
                        break;
                    }
                    let ix = self.ixs.get(key.3);
                    if ix.declined_by(a, ag) || meets(&ag.skills, &ix.extra).is_none() {
                        continue;
                    }
                    best = Some((rank, key.3, m.score));
                    break;
                }
            }
        }
        best.map(|(_, i, s)| (i, s))
    }

    fn process_ix(&mut self, i: u32) {
        let Some(ix) = self.ixs.try_get(i) else {
            return;
        };
        if ix.state != IxState::Waiting {
            return;
        }
        let q = self.queues.get(ix.queue);
        let strategy = q.cfg.strategy;
        let g = self.groups.get(q.groups[ix.step]);
        let set = &g.free[ix.c];
        if set.is_empty() {
            return;
        }
        let ring = strategy == Strategy::RingAll && ix.c == 0;
        let want = if ring { q.cfg.ring_all_max.max(1) } else { 1 };
        let k = self.candidates_k.max(want);
        let cursor = rr_key_after(q.rr_cursor);
        let iter: Box<dyn Iterator<Item = &FreeKey>> = if strategy == Strategy::RoundRobin {
            Box::new(set.range(cursor..).chain(set.range(..cursor)))
        } else {
            Box::new(set.iter())
        };
        let mut winners: Vec<u32> = Vec::new();
        let mut cands: Vec<Candidate> = Vec::new();
        for (pos, key) in iter.enumerate() {
            let a = key_slot(*key);
            let ag = self.agents.get(a);
            // A dirty agent's entry may be stale; it searches the waiting
            // lists itself when it is processed.
            if ag.dirty || ix.declined_by(a, ag) || meets(&ag.skills, &ix.extra).is_none() {
                continue;
            }
            if winners.len() < want {
                winners.push(a);
            }
            if cands.len() < k {
                let proficiency = ag
                    .members
                    .iter()
                    .find(|m| m.group == q.groups[ix.step])
                    .map_or(0, |m| m.score);
                let idle_ms = self.now.saturating_sub(ag.ix_key.0);
                let load = ag.ix_key.1;
                let score = match strategy {
                    Strategy::LongestIdle | Strategy::RingAll => idle_ms as i64,
                    Strategy::LeastOccupied => -(load as i64),
                    Strategy::RoundRobin => -(pos as i64),
                    Strategy::BestProficiency => proficiency as i64,
                };
                cands.push(Candidate {
                    agent: ag.id,
                    score,
                    idle_ms,
                    load,
                    proficiency,
                });
            }
            if winners.len() >= want && cands.len() >= k {
                break;
            }
        }
        if winners.is_empty() {
            return;
        }
        let eligible_free = set.len();
        let decision = Decision {
            interaction: ix.id,
            queue: q.cfg.id,
            channel: ix.channel,
            at: self.now,
            trigger: Trigger::InteractionWaiting,
            step: ix.step,
            strategy,
            required: self.reqs_in_force(ix),
            waited_ms: self.now.saturating_sub(ix.queued_at),
            eligible_free,
            candidates: cands,
            winners: winners.iter().map(|&a| self.agents.get(a).id).collect(),
        };
        if strategy == Strategy::RoundRobin {
            let seq = self.agents.get(winners[0]).seq;
            self.queues.get_mut(ix.queue).rr_cursor = seq;
        }
        self.offer(i, winners, decision);
    }

    fn agent_decision(&self, a: u32, i: u32, proficiency: u32) -> Decision {
        let ag = self.agents.get(a);
        let ix = self.ixs.get(i);
        let q = self.queues.get(ix.queue);
        let idle_ms = self.now.saturating_sub(ag.idle_since);
        let load = ag.total_load();
        let score = match q.cfg.strategy {
            Strategy::LongestIdle | Strategy::RingAll => idle_ms as i64,
            Strategy::LeastOccupied => -(load as i64),
            Strategy::RoundRobin => 0,
            Strategy::BestProficiency => proficiency as i64,
        };
        Decision {
            interaction: ix.id,
            queue: q.cfg.id,
            channel: ix.channel,
            at: self.now,
            trigger: Trigger::AgentAvailable,
            step: ix.step,
            strategy: q.cfg.strategy,
            required: self.reqs_in_force(ix),
            waited_ms: self.now.saturating_sub(ix.queued_at),
            eligible_free: 1,
            candidates: vec![Candidate {
                agent: ag.id,
                score,
                idle_ms,
                load,
                proficiency,
            }],
            winners: vec![ag.id],
        }
    }

    fn reqs_in_force(&self, ix: &Ix) -> Vec<SkillReq> {
        let q = self.queues.get(ix.queue);
        let g = self.groups.get(q.groups[ix.step]);
        g.reqs
            .iter()
            .chain(ix.extra.iter())
            .map(|&(s, l)| SkillReq {
                skill: self.skill_ids[s as usize].expect("skill in use"),
                min_level: l,
            })
            .collect()
    }

    // ----- interaction moves ---------------------------------------------

    pub(super) fn insert_waiting(&mut self, i: u32) {
        let ix = self.ixs.get(i);
        let q = self.queues.get_mut(ix.queue);
        let gslot = q.groups[ix.step];
        let g = self.groups.get_mut(gslot);
        g.waiting[ix.c].insert(ix.wait_key(i));
        q.waiting += 1;
        let word = gslot as usize / 64;
        if self.has_waiting.len() <= word {
            self.has_waiting.resize(word + 1, 0);
        }
        self.has_waiting[word] |= 1 << (gslot % 64);
    }

    pub(super) fn remove_waiting(&mut self, i: u32) {
        let ix = self.ixs.get(i);
        let q = self.queues.get_mut(ix.queue);
        let gslot = q.groups[ix.step];
        let g = self.groups.get_mut(gslot);
        let removed = g.waiting[ix.c].remove(&ix.wait_key(i));
        debug_assert!(removed);
        q.waiting -= 1;
        if g.waiting.iter().all(|w| w.is_empty()) {
            self.has_waiting[gslot as usize / 64] &= !(1 << (gslot % 64));
        }
    }

    pub(super) fn group_has_waiting(&self, g: u32) -> bool {
        self.has_waiting
            .get(g as usize / 64)
            .is_some_and(|w| w & (1 << (g % 64)) != 0)
    }

    fn offer(&mut self, i: u32, agents: Vec<u32>, decision: Decision) {
        self.remove_waiting(i);
        let c = self.ixs.get(i).c;
        for &a in &agents {
            self.touch(a);
            let ag = self.agents.get_mut(a);
            ag.offers.push(i);
            ag.load[c] += 1;
        }
        let ix = self.ixs.get(i);
        let q = self.queues.get_mut(ix.queue);
        q.offered += 1;
        let expires_at = self.now + q.cfg.offer_timeout_ms;
        let ids = agents.iter().map(|&a| self.agents.get(a).id).collect();
        let (id, callback) = (ix.id, ix.callback);
        self.ixs.get_mut(i).state = IxState::Offered { agents, expires_at };
        self.set_ix_timer(i, Some(expires_at));
        self.out.push(Action::Offer {
            interaction: id,
            agents: ids,
            callback,
            decision: Box::new(decision),
            expires_at,
        });
    }

    /// Drops agent `a`'s offer of `i` (load and lists); returns whether
    /// agents are still ringing.
    pub(super) fn drop_offer(&mut self, a: u32, i: u32) -> bool {
        self.touch(a);
        let c = self.ixs.get(i).c;
        let ag = self.agents.get_mut(a);
        ag.offers.retain(|&x| x != i);
        ag.load[c] -= 1;
        match &mut self.ixs.get_mut(i).state {
            IxState::Offered { agents, .. } => {
                agents.retain(|&x| x != a);
                !agents.is_empty()
            }
            s => unreachable!("drop_offer of an interaction in {s:?}"),
        }
    }

    /// Back to waiting at its original place, at the step its wait has reached.
    pub(super) fn requeue(&mut self, i: u32, reason: RequeueReason) {
        let now = self.now;
        let ix = self.ixs.get_mut(i);
        debug_assert!(matches!(&ix.state, IxState::Offered { agents, .. } if agents.is_empty()));
        ix.state = IxState::Waiting;
        let q = self.queues.get_mut(ix.queue);
        q.offered -= 1;
        ix.step = q.step_at(now.saturating_sub(ix.queued_at));
        self.out.push(Action::Requeued {
            interaction: ix.id,
            queue: q.cfg.id,
            reason,
        });
        self.insert_waiting(i);
        self.reset_ix_timer(i);
        self.dirty_ixs.push(i);
    }

    /// Withdraws every offer agent `a` holds (presence change, removal).
    pub(super) fn withdraw_agent_offers(&mut self, a: u32, reason: WithdrawReason) {
        let offers = self.agents.get(a).offers.clone();
        for i in offers {
            self.withdraw(a, i, reason);
        }
    }

    pub(super) fn withdraw(&mut self, a: u32, i: u32, reason: WithdrawReason) {
        let ringing = self.drop_offer(a, i);
        self.out.push(Action::OfferWithdrawn {
            interaction: self.ixs.get(i).id,
            agent: self.agents.get(a).id,
            reason,
        });
        if !ringing {
            self.requeue(i, RequeueReason::Withdrawn);
        }
    }

    /// Puts a new or overflowing interaction (in no list) into queue `q` at
    /// step 0, or overflows it on if the queue can never serve it or is full.
    pub(super) fn enter_queue(&mut self, i: u32, q: u32) {
        let now = self.now;
        let queue = self.queues.get(q);
        let qid = queue.cfg.id;
        let ix = self.ixs.get_mut(i);
        ix.queue = q;
        ix.queue_id = qid;
        ix.queued_at = now;
        ix.step = 0;
        ix.state = IxState::Waiting;
        let has_overflow = queue.cfg.overflow.is_some();
        if has_overflow && !self.servable(i) {
            return self.overflow_from(i, OverflowReason::Unservable);
        }
        let queue = self.queues.get(q);
        if queue.cfg.max_length.is_some_and(|m| queue.waiting >= m) {
            return self.overflow_from(i, OverflowReason::MaxLength);
        }
        self.insert_waiting(i);
        self.reset_ix_timer(i);
        self.dirty_ixs.push(i);
    }

    /// Sends a waiting (or entering, in no list) interaction to its queue's
    /// overflow. The queue must have one.
    pub(super) fn overflow_from(&mut self, i: u32, reason: OverflowReason) {
        let ix = self.ixs.get(i);
        let slot = ix.queue;
        let q = self.queues.get(slot);
        let in_list = q
            .groups
            .get(ix.step)
            .is_some_and(|&g| self.groups.get(g).waiting[ix.c].contains(&ix.wait_key(i)));
        if in_list {
            self.remove_waiting(i);
        }
        self.set_ix_timer(i, None);
        let q = self.queues.get_mut(slot);
        q.stats.overflowed += 1;
        let to = q.cfg.overflow.clone().expect("overflow target");
        let from = q.cfg.id;
        let id = self.ixs.get(i).id;
        self.out.push(Action::Overflowed {
            interaction: id,
            from,
            to: to.clone(),
            reason,
        });
        match to {
            OverflowTarget::Flow(_) => self.forget_ix(i),
            OverflowTarget::Queue(t) => {
                let t = self.queue_slots[&t];
                self.enter_queue(i, t);
            }
        }
    }

    pub(super) fn forget_ix(&mut self, i: u32) {
        self.set_ix_timer(i, None);
        let ix = self.ixs.remove(i);
        self.ix_slots.remove(&ix.id);
    }

    /// Whether some agent (whatever their presence) could serve the
    /// interaction once its queue's widest step is in force.
    pub(super) fn servable(&self, i: u32) -> bool {
        let ix = self.ixs.get(i);
        let q = self.queues.get(ix.queue);
        let last = self
            .groups
            .get(*q.groups.last().expect("a group per queue"));
        if last.servers[ix.c] == 0 {
            return false;
        }
        if ix.extra.is_empty() {
            return true;
        }
        let gslot = *q.groups.last().expect("group");
        self.agents.iter().any(|(_, ag)| {
            ag.cap[ix.c] > 0
                && meets(&ag.skills, &ix.extra).is_some()
                && ag.members.iter().any(|m| m.group == gslot)
        })
    }

    // ----- timers --------------------------------------------------------

    pub(super) fn set_ix_timer(&mut self, i: u32, at: Option<Millis>) {
        let ix = self.ixs.get_mut(i);
        if let Some(old) = ix.timer.take() {
            self.timers.remove(&(old, TIMER_IX, i));
        }
        if let Some(at) = at {
            ix.timer = Some(at);
            self.timers.insert((at, TIMER_IX, i));
        }
    }

    /// A waiting interaction's next deadline: its next escalation step or
    /// its maximum wait (callbacks have none).
    pub(super) fn reset_ix_timer(&mut self, i: u32) {
        let ix = self.ixs.get(i);
        let q = self.queues.get(ix.queue);
        let next_step = q.step_after.get(ix.step + 1).map(|a| ix.queued_at + a);
        let max_wait = match (ix.callback, q.cfg.max_wait_ms) {
            (false, Some(m)) if q.cfg.overflow.is_some() => Some(ix.queued_at + m),
            _ => None,
        };
        let at = match (next_step, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.set_ix_timer(i, at);
    }

    pub(super) fn reset_agent_timer(&mut self, a: u32) {
        let ag = self.agents.get_mut(a);
        if let Some(old) = ag.timer.take() {
            self.timers.remove(&(old, TIMER_AGENT, a));
        }
        if let Some(at) = ag.wraps.iter().filter_map(|w| w.until).min() {
            ag.timer = Some(at);
            self.timers.insert((at, TIMER_AGENT, a));
        }
    }

    /// Runs every timer due by `now`, in time order, settling after each.
    /// The clock never goes back: a timer due before the last time the
    /// engine acted runs at that time.
    pub(super) fn run_due(&mut self, now: Millis) {
        let target = self.now.max(now);
        self.settle();
        while let Some(&(at, kind, slot)) = self.timers.first() {
            if at > target {
                break;
            }
            self.timers.pop_first();
            // Act as at the deadline, so offers and waits count from it.
            self.now = self.now.max(at);
            match kind {
                TIMER_AGENT => self.agent_timer(slot, self.now),
                _ => self.ix_timer(slot, self.now),
            }
            self.settle();
        }
        self.now = target;
    }

    fn agent_timer(&mut self, a: u32, at: Millis) {
        let ag = self.agents.get_mut(a);
        ag.timer = None;
        let due: Vec<Wrap> = ag
            .wraps
            .iter()
            .filter(|w| w.until.is_some_and(|u| u <= at))
            .cloned()
            .collect();
        ag.wraps.retain(|w| w.until.is_none_or(|u| u > at));
        self.end_wraps(a, due);
        self.reset_agent_timer(a);
    }

    pub(super) fn end_wraps(&mut self, a: u32, wraps: Vec<Wrap>) {
        if wraps.is_empty() {
            return;
        }
        self.touch(a);
        let now = self.now;
        let ag = self.agents.get_mut(a);
        ag.idle_since = now;
        for w in wraps {
            ag.load[w.c] -= 1;
            self.out.push(Action::WrapUpEnded {
                agent: ag.id,
                interaction: w.interaction,
            });
        }
    }

    fn ix_timer(&mut self, i: u32, at: Millis) {
        let ix = self.ixs.get_mut(i);
        ix.timer = None;
        match ix.state.clone() {
            IxState::Offered { agents, expires_at } => {
                debug_assert!(expires_at <= at);
                self.time_out(i, agents);
            }
            IxState::Waiting => {
                let q = self.queues.get(ix.queue);
                let max_wait_due = !ix.callback
                    && q.cfg.overflow.is_some()
                    && q.cfg.max_wait_ms.is_some_and(|m| ix.queued_at + m <= at);
                if max_wait_due {
                    return self.overflow_from(i, OverflowReason::MaxWait);
                }
                let step = q.step_at(at.saturating_sub(ix.queued_at));
                if step != ix.step {
                    let (id, qid) = (ix.id, q.cfg.id);
                    self.remove_waiting(i);
                    self.ixs.get_mut(i).step = step;
                    self.insert_waiting(i);
                    self.dirty_ixs.push(i);
                    self.out.push(Action::Escalated {
                        interaction: id,
                        queue: qid,
                        step,
                    });
                }
                self.reset_ix_timer(i);
            }
            IxState::Connected { .. } => {}
        }
    }

    /// Nobody answered: each ringing agent declined it by silence; an agent
    /// at their limit of consecutive no-answers is set away.
    fn time_out(&mut self, i: u32, agents: Vec<u32>) {
        for &a in &agents {
            self.drop_offer(a, i);
            let ag = self.agents.get_mut(a);
            self.ixs.get_mut(i).declined.push((a, ag.epoch));
            ag.no_answers += 1;
            if ag.no_answers >= ag.cfg.max_no_answers {
                self.set_away(a, "no_answer");
            }
        }
        self.requeue(i, RequeueReason::NoAnswer);
    }

    pub(super) fn new_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    pub(super) fn set_away(&mut self, a: u32, reason: &str) {
        self.touch(a);
        let epoch = self.new_epoch();
        let ag = self.agents.get_mut(a);
        ag.epoch = epoch;
        ag.presence = Presence::Away {
            reason: reason.to_owned(),
        };
        self.out.push(Action::AgentAway {
            agent: ag.id,
            reason: reason.to_owned(),
        });
        self.withdraw_agent_offers(a, WithdrawReason::AgentUnavailable);
    }
}
