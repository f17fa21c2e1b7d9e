//! Read-only views: positions, snapshots, interaction states.

use super::state::*;
use super::*;

/// Counts of what the engine holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EngineCounts {
    pub skills: usize,
    pub queues: usize,
    pub agents: usize,
    pub interactions: usize,
    pub waiting: usize,
}

impl Engine {
    /// A waiting interaction's place and estimated wait (`None` if it is not
    /// waiting). Counts the queue's waiting interactions of the same channel
    /// ahead of it, at every step: O(place).
    pub fn position(&self, i: InteractionId) -> Option<Position> {
        let x = *self.ix_slots.get(&i)?;
        let ix = self.ixs.get(x);
        if ix.state != IxState::Waiting {
            return None;
        }
        let q = self.queues.get(ix.queue);
        let key = ix.wait_key(x);
        let mut ahead = 0;
        let mut waiting = 0;
        for &g in &q.groups {
            let w = &self.groups.get(g).waiting[ix.c];
            ahead += w.range(..key).count();
            waiting += w.len();
        }
        let place = ahead + 1;
        Some(Position {
            queue: q.cfg.id,
            channel: ix.channel,
            place,
            waiting,
            step: ix.step,
            estimated_wait_ms: q.stats.ewma_gap_ms.map(|g| g * place as u64),
        })
    }

    pub fn interaction_state(&self, i: InteractionId) -> Option<InteractionState> {
        let ix = self.ixs.get(*self.ix_slots.get(&i)?);
        Some(match &ix.state {
            IxState::Waiting => InteractionState::Waiting {
                queue: ix.queue_id,
                step: ix.step,
                callback: ix.callback,
            },
            IxState::Offered { agents, expires_at } => InteractionState::Offered {
                queue: ix.queue_id,
                agents: agents.iter().map(|&a| self.agents.get(a).id).collect(),
                expires_at: *expires_at,
                callback: ix.callback,
            },
            IxState::Connected { agent } => InteractionState::Connected {
                queue: ix.queue_id,
                agent: self.agents.get(*agent).id,
            },
        })
    }

    pub fn queue_snapshot(&self, id: QueueId) -> Option<QueueSnapshot> {
        let q = self.queues.get(*self.queue_slots.get(&id)?);
        let g0 = self.groups.get(q.groups[0]);
        let oldest = q
            .groups
            .iter()
            .flat_map(|&g| self.groups.get(g).waiting.iter().flat_map(|w| w.iter()))
            .map(|k| self.ixs.get(k.3).queued_at)
            .min();
        let st = &q.stats;
        let finished = st.answered + st.abandoned;
        Some(QueueSnapshot {
            id,
            strategy: q.cfg.strategy,
            waiting: q.waiting,
            offered: q.offered,
            oldest_enqueued_at: oldest,
            free_agents: bits(q.chmask)
                .map(|c| (CHANNELS[c], g0.free[c].len()))
                .collect(),
            unservable: mask_channels(q.unservable),
            arrived: st.arrived,
            answered: st.answered,
            answered_within_sl: st.answered_within_sl,
            abandoned: st.abandoned,
            overflowed: st.overflowed,
            service_level: (finished > 0).then(|| st.answered_within_sl as f64 / finished as f64),
            service_level_target: q.cfg.service_level,
            average_answer_ms: (st.answered > 0).then(|| st.total_answer_ms / st.answered),
            average_handle_ms: (st.handled > 0).then(|| st.total_handle_ms / st.handled),
        })
    }

    pub fn agent_snapshot(&self, id: AgentId) -> Option<AgentSnapshot> {
        let ag = self.agents.get(*self.agent_slots.get(&id)?);
        let status = match &ag.presence {
            Presence::Offline => AgentStatus::Offline,
            Presence::Away { reason } => AgentStatus::Away {
                reason: reason.clone(),
            },
            Presence::Available if !ag.offers.is_empty() || !ag.connected.is_empty() => {
                AgentStatus::Busy
            }
            Presence::Available if !ag.wraps.is_empty() => AgentStatus::WrapUp,
            Presence::Available => AgentStatus::Idle,
        };
        let l = |c: usize| ag.load[c].min(u8::MAX as u16) as u8;
        let mut queues: Vec<QueueId> = ag
            .members
            .iter()
            .map(|m| self.queues.get(self.groups.get(m.group).queue).cfg.id)
            .collect();
        queues.sort_unstable();
        queues.dedup();
        Some(AgentSnapshot {
            id,
            presence: ag.presence.clone(),
            status,
            capacity: ag.cfg.capacity,
            load: Capacity {
                voice: l(0),
                chat: l(1),
                sms: l(2),
                email: l(3),
            },
            offers: ag.offers.iter().map(|&i| self.ixs.get(i).id).collect(),
            connected: ag.connected.iter().map(|&i| self.ixs.get(i).id).collect(),
            wrap_ups: ag.wraps.iter().map(|w| (w.interaction, w.until)).collect(),
            consecutive_no_answers: ag.no_answers,
            idle_since: ag.idle_since,
            queues,
        })
    }

    /// Queues with channels no agent could ever serve.
    pub fn unservable_queues(&self) -> Vec<(QueueId, Vec<Channel>)> {
        let mut v: Vec<_> = self
            .queues
            .iter()
            .filter(|(_, q)| q.unservable != 0)
            .map(|(_, q)| (q.cfg.id, mask_channels(q.unservable)))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    pub fn counts(&self) -> EngineCounts {
        EngineCounts {
            skills: self.skills.len(),
            queues: self.queues.len(),
            agents: self.agents.len(),
            interactions: self.ixs.len(),
            waiting: self.queues.iter().map(|(_, q)| q.waiting).sum(),
        }
    }

    /// Every interaction the engine holds, in no particular order.
    pub fn interactions(&self) -> Vec<InteractionId> {
        self.ixs.iter().map(|(_, x)| x.id).collect()
    }

    /// Every queue's id, in no particular order.
    pub fn queue_ids(&self) -> Vec<QueueId> {
        self.queues.iter().map(|(_, q)| q.cfg.id).collect()
    }

    /// Every agent's id, in no particular order.
    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.agents.iter().map(|(_, a)| a.cfg.id).collect()
    }
}
