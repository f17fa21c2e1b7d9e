//! The engine's invariants, checked by brute force (every agent against
//! every interaction), independently of the indexes the decisions use.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::state::*;
use super::*;

impl Engine {
    /// Checks every invariant the engine promises; the first violations found.
    /// O(agents × (groups + interactions)): for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut e = String::new();
        self.check_maps(&mut e);
        self.check_interactions(&mut e);
        self.check_agents(&mut e);
        self.check_groups(&mut e);
        self.check_no_idle_match(&mut e);
        self.check_timers(&mut e);
        self.check_overflow_acyclic(&mut e);
        if e.is_empty() { Ok(()) } else { Err(e) }
    }

    fn check_maps(&self, e: &mut String) {
        if !self.dirty_agents.is_empty() || !self.dirty_ixs.is_empty() {
            let _ = writeln!(e, "unsettled work left");
        }
        if self.ix_slots.len() != self.ixs.len() {
            let _ = writeln!(e, "interaction map and slab differ");
        }
        for (id, &x) in &self.ix_slots {
            if self.ixs.try_get(x).is_none_or(|ix| ix.id != *id) {
                let _ = writeln!(e, "interaction map entry {id} is stale");
            }
        }
        if self.agent_slots.len() != self.agents.len() {
            let _ = writeln!(e, "agent map and slab differ");
        }
        for (id, &a) in &self.agent_slots {
            if self.agents.try_get(a).is_none_or(|ag| ag.id != *id) {
                let _ = writeln!(e, "agent map entry {id} is stale");
            }
        }
        for (id, &q) in &self.queue_slots {
            if self.queues.try_get(q).is_none_or(|qq| qq.cfg.id != *id) {
                let _ = writeln!(e, "queue map entry {id} is stale");
            }
        }
    }

    /// Every interaction in exactly one state, and every list agreeing.
    fn check_interactions(&self, e: &mut String) {
        let mut listed: Vec<(u32, u32, usize)> = Vec::new(); // (ix, group, channel)
        for (g, grp) in self.groups.iter() {
            for (c, w) in grp.waiting.iter().enumerate() {
                for k in w {
                    listed.push((k.3, g, c));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for &(i, _, _) in &listed {
            if !seen.insert(i) {
                let _ = writeln!(e, "interaction slot {i} is in two waiting lists");
            }
        }
        let mut waiting_per_queue: Map<u32, usize> = Map::default();
        let mut offered_per_queue: Map<u32, usize> = Map::default();
        for (x, ix) in self.ixs.iter() {
            let in_list = listed.iter().find(|l| l.0 == x);
            match &ix.state {
                IxState::Waiting => {
                    *waiting_per_queue.entry(ix.queue).or_default() += 1;
                    let Some(q) = self
                        .queues
                        .try_get(ix.queue)
                        .filter(|q| q.cfg.id == ix.queue_id)
                    else {
                        let _ = writeln!(e, "{} waits in a queue that is gone", ix.id);
                        continue;
                    };
                    let want = q.groups.get(ix.step).copied();
                    match in_list {
                        Some(&(_, g, c)) if Some(g) == want && c == ix.c => {
                            let key = ix.wait_key(x);
                            if !self.groups.get(g).waiting[c].contains(&key) {
                                let _ = writeln!(e, "{} is listed under another key", ix.id);
                            }
                        }
                        _ => {
                            let _ = writeln!(e, "{} waits but is not in its step's list", ix.id);
                        }
                    }
                    let step = q.step_at(self.now.saturating_sub(ix.queued_at));
                    if step != ix.step {
                        let _ = writeln!(
                            e,
                            "{} is at step {} but has waited into {step}",
                            ix.id, ix.step
                        );
                    }
                    if q.chmask & (1 << ix.c) == 0 {
                        let _ = writeln!(
                            e,
                            "{} waits in a queue that does not take its channel",
                            ix.id
                        );
                    }
                }
                IxState::Offered { agents, expires_at } => {
                    *offered_per_queue.entry(ix.queue).or_default() += 1;
                    if in_list.is_some() {
                        let _ = writeln!(e, "{} is offered and waiting", ix.id);
                    }
                    if agents.is_empty() {
                        let _ = writeln!(e, "{} is offered to nobody", ix.id);
                    }
                    let ring = self
                        .queues
                        .try_get(ix.queue)
                        .is_some_and(|q| q.cfg.strategy == Strategy::RingAll)
                        && ix.c == 0;
                    if agents.len() > 1 && !ring {
                        let _ =
                            writeln!(e, "{} is offered to {} agents at once", ix.id, agents.len());
                    }
                    let distinct: BTreeSet<_> = agents.iter().collect();
                    if distinct.len() != agents.len() {
                        let _ = writeln!(e, "{} is offered twice to one agent", ix.id);
                    }
                    for &a in agents {
                        match self.agents.try_get(a) {
                            Some(ag) if ag.offers.contains(&x) => {}
                            _ => {
                                let _ = writeln!(
                                    e,
                                    "{} is offered to an agent who does not hold it",
                                    ix.id
                                );
                            }
                        }
                    }
                    if ix.timer != Some(*expires_at) {
                        let _ = writeln!(e, "{} rings without its timeout timer", ix.id);
                    }
                }
                IxState::Connected { agent } => {
                    if in_list.is_some() {
                        let _ = writeln!(e, "{} is connected and waiting", ix.id);
                    }
                    match self.agents.try_get(*agent) {
                        Some(ag) if ag.connected.contains(&x) => {}
                        _ => {
                            let _ = writeln!(
                                e,
                                "{} is connected to an agent who does not hold it",
                                ix.id
                            );
                        }
                    }
                    if ix.timer.is_some() {
                        let _ = writeln!(e, "{} is connected with a timer", ix.id);
                    }
                }
            }
        }
        for (q, queue) in self.queues.iter() {
            let w = waiting_per_queue.get(&q).copied().unwrap_or(0);
            let o = offered_per_queue.get(&q).copied().unwrap_or(0);
            if queue.waiting != w || queue.offered != o {
                let _ = writeln!(
                    e,
                    "queue {} counts {}/{} waiting/offered, holds {w}/{o}",
                    queue.cfg.id, queue.waiting, queue.offered
                );
            }
        }
    }

    /// Loads, capacity, and the agent side of every offer and call.
    fn check_agents(&self, e: &mut String) {
        for (a, ag) in self.agents.iter() {
            let mut load = [0u16; 4];
            let mut offered = [0u16; 4];
            for &i in &ag.offers {
                match self.ixs.try_get(i) {
                    Some(ix) => {
                        load[ix.c] += 1;
                        offered[ix.c] += 1;
                        if !matches!(&ix.state, IxState::Offered { agents, .. } if agents.contains(&a))
                        {
                            let _ = writeln!(
                                e,
                                "agent {} holds an offer of {} that is not offered to them",
                                ag.id, ix.id
                            );
                        }
                    }
                    None => {
                        let _ = writeln!(
                            e,
                            "agent {} holds an offer of a forgotten interaction",
                            ag.id
                        );
                    }
                }
            }
            for &i in &ag.connected {
                match self.ixs.try_get(i) {
                    Some(ix) => {
                        load[ix.c] += 1;
                        if ix.state != (IxState::Connected { agent: a }) {
                            let _ = writeln!(
                                e,
                                "agent {} holds {} which is not connected to them",
                                ag.id, ix.id
                            );
                        }
                    }
                    None => {
                        let _ = writeln!(e, "agent {} holds a forgotten interaction", ag.id);
                    }
                }
            }
            for w in &ag.wraps {
                load[w.c] += 1;
            }
            if load != ag.load {
                let _ = writeln!(
                    e,
                    "agent {} counts load {:?}, holds {load:?}",
                    ag.id, ag.load
                );
            }
            for c in 0..4 {
                // Over capacity only after a lowered capacity, never by an offer.
                if load[c] > ag.cap[c] as u16 && offered[c] > 0 {
                    let _ = writeln!(
                        e,
                        "agent {} is over capacity on {:?} with offers",
                        ag.id, CHANNELS[c]
                    );
                }
            }
            if ag.presence != Presence::Available && !ag.offers.is_empty() {
                let _ = writeln!(e, "agent {} has offers while {:?}", ag.id, ag.presence);
            }
            let distinct: BTreeSet<_> = ag.offers.iter().chain(&ag.connected).collect();
            if distinct.len() != ag.offers.len() + ag.connected.len() {
                let _ = writeln!(e, "agent {} holds an interaction twice", ag.id);
            }
            // Memberships are exactly the groups whose requirements they meet.
            let want: BTreeSet<(u32, u32)> = self
                .groups
                .iter()
                .filter_map(|(g, grp)| self.eligible(ag, grp).map(|s| (g, s)))
                .collect();
            let have: BTreeSet<(u32, u32)> =
                ag.members.iter().map(|m| (m.group, m.score)).collect();
            if want != have || have.len() != ag.members.len() {
                let _ = writeln!(
                    e,
                    "agent {} has memberships {have:?}, should have {want:?}",
                    ag.id
                );
            }
            for m in &ag.members {
                if let Some(g) = self.groups.try_get(m.group) {
                    let qprio = self.queues.try_get(g.queue).map(|q| q.cfg.priority);
                    if m.chmask != g.chmask || Some(m.qprio) != qprio {
                        let _ = writeln!(e, "agent {} has a stale membership copy", ag.id);
                    }
                }
            }
            // Indexed exactly where they can take an offer, under the right key.
            let mask = ag.offerable_mask();
            if ag.indexed != mask {
                let _ = writeln!(
                    e,
                    "agent {} is indexed for {:#b}, offerable for {mask:#b}",
                    ag.id, ag.indexed
                );
            }
            if ag.indexed != 0 && ag.ix_key != (ag.idle_since, ag.total_load()) {
                let _ = writeln!(e, "agent {} is indexed under a stale key", ag.id);
            }
            for m in &ag.members {
                let g = self.groups.get(m.group);
                let key = free_key(g.strategy, ag.ix_key.0, ag.ix_key.1, m.score, ag.seq, a);
                for (c, channel) in CHANNELS.iter().enumerate() {
                    let should = mask & g.chmask & (1 << c) != 0;
                    if g.free[c].contains(&key) != should {
                        let _ = writeln!(
                            e,
                            "agent {} index entry wrong in a group on {channel:?}",
                            ag.id
                        );
                    }
                }
            }
            let want_timer = ag.wraps.iter().filter_map(|w| w.until).min();
            if ag.timer != want_timer {
                let _ = writeln!(
                    e,
                    "agent {} wrap-up timer {:?}, should be {want_timer:?}",
                    ag.id, ag.timer
                );
            }
            if ag.dirty {
                let _ = writeln!(e, "agent {} left dirty", ag.id);
            }
        }
    }

    /// Free indexes hold only members; server counts add up.
    fn check_groups(&self, e: &mut String) {
        for (g, grp) in self.groups.iter() {
            let Some(q) = self.queues.try_get(grp.queue) else {
                let _ = writeln!(e, "group {g} of a removed queue");
                continue;
            };
            if q.groups.get(grp.step) != Some(&g) {
                let _ = writeln!(e, "group {g} is not its queue's step {}", grp.step);
            }
            let nonempty = grp.waiting.iter().any(|w| !w.is_empty());
            if nonempty != self.group_has_waiting(g) {
                let _ = writeln!(
                    e,
                    "group {g}: waiting bit {} but lists say {nonempty}",
                    !nonempty
                );
            }
            let mut servers = [0u32; 4];
            let mut members = 0usize;
            for (_, ag) in self.agents.iter() {
                if ag.members.iter().any(|m| m.group == g) {
                    members += 1;
                    for (s, cap) in servers.iter_mut().zip(ag.cap) {
                        if cap > 0 {
                            *s += 1;
                        }
                    }
                }
            }
            if servers != grp.servers {
                let _ = writeln!(
                    e,
                    "group {g} counts servers {:?}, has {servers:?}",
                    grp.servers
                );
            }
            for (c, channel) in CHANNELS.iter().enumerate() {
                if grp.free[c].len() > members {
                    let _ = writeln!(e, "group {g} indexes more agents than it has");
                }
                for k in &grp.free[c] {
                    if self
                        .agents
                        .try_get(key_slot(*k))
                        .is_none_or(|ag| ag.indexed & (1 << c) == 0)
                    {
                        let _ = writeln!(
                            e,
                            "group {g} indexes an agent that is not free on {channel:?}"
                        );
                    }
                }
            }
        }
    }

    /// No interaction waits while a free agent is eligible for it.
    fn check_no_idle_match(&self, e: &mut String) {
        for (x, ix) in self.ixs.iter() {
            if ix.state != IxState::Waiting {
                continue;
            }
            let Some(q) = self.queues.try_get(ix.queue) else {
                continue;
            };
            let Some(&g) = q.groups.get(ix.step) else {
                continue;
            };
            let reqs = &self.groups.get(g).reqs;
            for (a, ag) in self.agents.iter() {
                if ag.offerable_mask() & (1 << ix.c) != 0
                    && meets(&ag.skills, reqs).is_some()
                    && meets(&ag.skills, &ix.extra).is_some()
                    && !ix.declined_by(a, ag)
                {
                    let _ = writeln!(
                        e,
                        "{} (slot {x}) waits while agent {} is free for it",
                        ix.id, ag.id
                    );
                }
            }
        }
    }

    fn check_timers(&self, e: &mut String) {
        for &(at, kind, slot) in &self.timers {
            if at <= self.now {
                let _ = writeln!(e, "timer due at {at} not run by {}", self.now);
            }
            let owned = match kind {
                TIMER_AGENT => self
                    .agents
                    .try_get(slot)
                    .is_some_and(|a| a.timer == Some(at)),
                _ => self.ixs.try_get(slot).is_some_and(|x| x.timer == Some(at)),
            };
            if !owned {
                let _ = writeln!(e, "timer ({at}, {kind}, {slot}) has no owner");
            }
        }
        let owners = self
            .agents
            .iter()
            .filter(|(_, a)| a.timer.is_some())
            .count()
            + self.ixs.iter().filter(|(_, x)| x.timer.is_some()).count();
        if owners != self.timers.len() {
            let _ = writeln!(e, "{owners} timer owners, {} timers", self.timers.len());
        }
        // Waiting interactions have the timer their queue implies.
        for (_, ix) in self.ixs.iter() {
            if ix.state != IxState::Waiting {
                continue;
            }
            let Some(q) = self.queues.try_get(ix.queue) else {
                continue;
            };
            let next_step = q.step_after.get(ix.step + 1).map(|a| ix.queued_at + a);
            let max_wait = match (ix.callback, q.cfg.max_wait_ms) {
                (false, Some(m)) if q.cfg.overflow.is_some() => Some(ix.queued_at + m),
                _ => None,
            };
            let want = [next_step, max_wait].into_iter().flatten().min();
            if ix.timer != want {
                let _ = writeln!(
                    e,
                    "{} has timer {:?}, should have {want:?}",
                    ix.id, ix.timer
                );
            }
        }
    }

    fn check_overflow_acyclic(&self, e: &mut String) {
        for (_, q) in self.queues.iter() {
            let mut seen = BTreeSet::from([q.cfg.id]);
            let mut next = q.cfg.overflow.clone();
            while let Some(OverflowTarget::Queue(t)) = next {
                if !seen.insert(t) {
                    let _ = writeln!(e, "overflow cycle through {}", q.cfg.id);
                    break;
                }
                next = match self.queue_slots.get(&t) {
                    Some(&s) => self.queues.get(s).cfg.overflow.clone(),
                    None => {
                        let _ = writeln!(e, "queue {} overflows to unknown {t}", q.cfg.id);
                        None
                    }
                };
            }
        }
    }
}
