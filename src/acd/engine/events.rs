//! Runtime events: presence, arrivals, answers, hang-ups, wrap-up.

use super::state::*;
use super::*;

impl Engine {
    fn agent_slot(&self, id: AgentId) -> Result<u32, EngineError> {
        self.agent_slots
            .get(&id)
            .copied()
            .ok_or(EngineError::UnknownAgent(id))
    }

    fn ix_slot(&self, id: InteractionId) -> Result<u32, EngineError> {
        self.ix_slots
            .get(&id)
            .copied()
            .ok_or(EngineError::UnknownInteraction(id))
    }

    /// The agent's chosen presence. Going away or offline withdraws their
    /// offers (the interactions go back to their places); connected work
    /// and wrap-up carry on. Becoming available resets the no-answer count.
    pub fn set_presence(
        &mut self,
        now: Millis,
        agent: AgentId,
        p: Presence,
    ) -> Result<Vec<Action>, EngineError> {
        self.run_due(now);
        let r = self.agent_slot(agent).map(|a| {
            if self.agents.get(a).presence == p {
                return;
            }
            self.touch(a);
            let now = self.now;
            let epoch = self.new_epoch();
            let ag = self.agents.get_mut(a);
            ag.presence = p.clone();
            ag.epoch = epoch;
            if p == Presence::Available {
                ag.no_answers = 0;
                ag.idle_since = now;
            } else {
                self.withdraw_agent_offers(a, WithdrawReason::AgentUnavailable);
            }
        });
        self.finish(r)
    }

    /// An interaction starts waiting in a queue (and is offered at once if
    /// an agent is free). A queue that could never serve it sends it to its
    /// overflow; without one, the arrival is refused.
    pub fn arrive(&mut self, now: Millis, a: Arrival) -> Result<Vec<Action>, EngineError> {
        self.run_due(now);
        let r = self.do_arrive(a);
        self.finish(r)
    }

    fn do_arrive(&mut self, a: Arrival) -> Result<(), EngineError> {
        if self.ix_slots.contains_key(&a.interaction) {
            return Err(EngineError::DuplicateInteraction(a.interaction));
        }
        let q = *self
            .queue_slots
            .get(&a.queue)
            .ok_or(EngineError::UnknownQueue(a.queue))?;
        let queue = self.queues.get(q);
        let c = ch(a.channel);
        if queue.chmask & (1 << c) == 0 {
            return Err(EngineError::ChannelNotAccepted {
                queue: a.queue,
                channel: a.channel,
            });
        }
        let mut extra: Reqs = Vec::with_capacity(a.extra_skills.len());
        for r in &a.extra_skills {
            let s = *self
                .skills
                .get(&r.skill)
                .ok_or(EngineError::UnknownSkill(r.skill))?;
            if !(MIN_LEVEL..=MAX_LEVEL).contains(&r.min_level) {
                return Err(EngineError::LevelOutOfRange {
                    skill: r.skill,
                    level: r.min_level,
                });
            }
            match extra.iter_mut().find(|(t, _)| *t == s) {
                Some(e) => e.1 = e.1.max(r.min_level),
                None => extra.push((s, r.min_level)),
            }
        }
        extra.sort_unstable();
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = self.now;
        let i = self.ixs.insert(Ix {
            id: a.interaction,
            queue: q,
            queue_id: a.queue,
            channel: a.channel,
            c,
            priority: a.priority,
            enqueued_at: a.enqueued_at.unwrap_or(now),
            seq,
            queued_at: now,
            step: 0,
            extra,
            declined: Vec::new(),
            callback: a.callback,
            state: IxState::Waiting,
            timer: None,
            connected_at: 0,
        });
        if !self.servable(i) && self.queues.get(q).cfg.overflow.is_none() {
            self.ixs.remove(i);
            return Err(EngineError::Unservable(a.queue));
        }
        self.ix_slots.insert(a.interaction, i);
        self.queues.get_mut(q).stats.arrived += 1;
        self.enter_queue(i, q);
        Ok(())
    }

    /// The agent answers: the interaction connects; other ring-all agents'
    /// offers are withdrawn.
    pub fn accept(
        &mut self,
        now: Millis,
        agent: AgentId,
        i: InteractionId,
    ) -> Result<Vec<Action>, EngineError> {
        self.run_due(now);
        let r = self.do_accept(agent, i);
        self.finish(r)
    }

    fn offered_to(&self, agent: AgentId, i: InteractionId) -> Result<(u32, u32), EngineError> {
        let a = self.agent_slot(agent)?;
        let x = self.ix_slot(i)?;
        match &self.ixs.get(x).state {
            IxState::Offered { agents, .. } if agents.contains(&a) => Ok((a, x)),
            _ => Err(EngineError::NotOffered {
                agent,
                interaction: i,
            }),
        }
    }

    fn do_accept(&mut self, agent: AgentId, i: InteractionId) -> Result<(), EngineError> {
        let (a, x) = self.offered_to(agent, i)?;
        let IxState::Offered { agents, .. } = self.ixs.get(x).state.clone() else {
            unreachable!()
        };
        for &o in agents.iter().filter(|&&o| o != a) {
            self.drop_offer(o, x);
            self.out.push(Action::OfferWithdrawn {
                interaction: i,
                agent: self.agents.get(o).id,
                reason: WithdrawReason::AnsweredElsewhere,
            });
        }
        let now = self.now;
        self.set_ix_timer(x, None);
        let ix = self.ixs.get_mut(x);
        ix.state = IxState::Connected { agent: a };
        ix.connected_at = now;
        let waited = now.saturating_sub(ix.queued_at);
        let q = self.queues.get_mut(ix.queue);
        q.offered -= 1;
        let st = &mut q.stats;
        st.answered += 1;
        st.total_answer_ms += waited;
        if waited <= q.cfg.service_level.threshold_ms {
            st.answered_within_sl += 1;
        }
        if let Some(last) = st.last_answer_at {
            let gap = now.saturating_sub(last);
            st.ewma_gap_ms = Some(st.ewma_gap_ms.map_or(gap, |e| (4 * e + gap) / 5));
        }
        st.last_answer_at = Some(now);
        let qid = q.cfg.id;
        // Load and keys do not change: the offer's slot becomes the call's.
        let ag = self.agents.get_mut(a);
        ag.offers.retain(|&o| o != x);
        ag.connected.push(x);
        ag.no_answers = 0;
        self.out.push(Action::Connected {
            interaction: i,
            agent,
            queue: qid,
            waited_ms: waited,
        });
        Ok(())
    }

    /// The agent declines: it is not offered to them again, and goes back to
    /// its place once no agent rings for it.
    pub fn reject(
        &mut self,
        now: Millis,
        agent: AgentId,
        i: InteractionId,
    ) -> Result<Vec<Action>, EngineError> {
        self.run_due(now);
        let r = self.offered_to(agent, i).map(|(a, x)| {
            let ringing = self.drop_offer(a, x);
            let epoch = self.agents.get(a).epoch;
            self.ixs.get_mut(x).declined.push((a, epoch));
            if !ringing {
                self.requeue(x, RequeueReason::Rejected);
            }
        });
        self.finish(r)
    }

    /// The customer (or the agent) ends it. Waiting or offered: abandoned.
    /// Connected: ended, and the agent wraps up.
    pub fn hang_up(&mut self, now: Millis, i: InteractionId) -> Result<Vec<Action>, EngineError> {
        self.run_due(now);
        let r = self.ix_slot(i).map(|x| self.do_hang_up(x));
        self.finish(r)
    }

    fn do_hang_up(&mut self, x: u32) {
        let now = self.now;
        match self.ixs.get(x).state.clone() {
            IxState::Waiting => {
                self.remove_waiting(x);
                self.abandon(x);
            }
            IxState::Offered { agents, .. } => {
                for a in agents {
                    self.drop_offer(a, x);
                    self.out.push(Action::OfferWithdrawn {
                        interaction: self.ixs.get(x).id,
                        agent: self.agents.get(a).id,
                        reason: WithdrawReason::HungUp,
                    });
                }
                self.queues.get_mut(self.ixs.get(x).queue).offered -= 1;
                self.abandon(x);
            }
            IxState::Connected { agent: a } => {
                let ix = self.ixs.get(x);
                let handled = now.saturating_sub(ix.connected_at);
                if let Some(q) = self
                    .queues
                    .try_get_mut(ix.queue)
                    .filter(|q| q.cfg.id == ix.queue_id)
                {
                    q.stats.handled += 1;
                    q.stats.total_handle_ms += handled;
                }
                let (id, c) = (ix.id, ix.c);
                let ag = self.agents.get_mut(a);
                ag.connected.retain(|&o| o != x);
                self.out.push(Action::Ended {
                    interaction: id,
                    agent: ag.id,
                    handled_ms: handled,
                });
                match ag.cfg.wrap_up_ms {
                    Some(0) => {
                        self.touch(a);
                        let ag = self.agents.get_mut(a);
                        ag.load[c] -= 1;
                        ag.idle_since = now;
                    }
                    w => {
                        let until = w.map(|t| now + t);
                        ag.wraps.push(Wrap {
                            interaction: id,
                            c,
                            until,
                        });
                        self.out.push(Action::WrapUpStarted {
                            agent: ag.id,
                            interaction: id,
                            until,
                        });
                        self.reset_agent_timer(a);
                    }
                }
                self.forget_ix(x);
            }
        }
    }

    fn abandon(&mut self, x: u32) {
        let now = self.now;
        let ix = self.ixs.get(x);
        let waited = now.saturating_sub(ix.queued_at);
        let q = self.queues.get_mut(ix.queue);
        q.stats.abandoned += 1;
        self.out.push(Action::Abandoned {
            interaction: ix.id,
            queue: q.cfg.id,
            waited_ms: waited,
        });
        self.forget_ix(x);
    }

    /// Ends all of the agent's wrap-up work.
    pub fn end_wrap_up(&mut self, now: Millis, agent: AgentId) -> Result<Vec<Action>, EngineError> {
        self.run_due(now);
        let r = self.agent_slot(agent).and_then(|a| {
            let wraps = std::mem::take(&mut self.agents.get_mut(a).wraps);
            if wraps.is_empty() {
                return Err(EngineError::NotInWrapUp(agent));
            }
            self.end_wraps(a, wraps);
            self.reset_agent_timer(a);
            Ok(())
        });
        self.finish(r)
    }

    /// A waiting caller chose to be called back: the interaction keeps its
    /// place, no longer has a maximum wait, and its offers say `callback`.
    pub fn to_callback(
        &mut self,
        now: Millis,
        i: InteractionId,
    ) -> Result<Vec<Action>, EngineError> {
        self.run_due(now);
        let r = self.ix_slot(i).and_then(|x| {
            if self.ixs.get(x).state != IxState::Waiting {
                return Err(EngineError::NotWaiting(i));
            }
            self.ixs.get_mut(x).callback = true;
            self.reset_ix_timer(x);
            Ok(())
        });
        self.finish(r)
    }
}
