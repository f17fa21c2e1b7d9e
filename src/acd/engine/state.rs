//! The engine's internal state: slabs of agents, queues, groups and
//! interactions addressed by dense `u32` slots, and the indexes that keep a
//! decision from scanning every agent.
//!
//! A **group** is one escalation step of one queue: its skill requirements,
//! the free eligible agents per channel ordered by the queue strategy's key
//! (`free`), and the interactions waiting at that step per channel ordered by
//! (priority, enqueue time, arrival sequence) (`waiting`). An agent lists the
//! groups it is eligible for (`members`), so a change of the agent touches
//! only those groups, and a freed agent looks only at those waiting lists.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::types::*;
use crate::ids::{AgentId, InteractionId, QueueId};
use crate::interactions::domain::Channel;

/// A fast hasher for the engine's id maps. Ids are UUIDv7 made by the
/// server (not chosen by callers), and SipHash costs more than a decision's
/// other lookups.
#[derive(Default, Clone, Copy)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    /// murmur3's finaliser: the multiply-rotate above only carries entropy
    /// upwards, and the table indexes by the low bits.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

pub(super) type Map<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A vector of optional items with a free list: stable `u32` slots.
#[derive(Debug)]
pub(super) struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub fn insert(&mut self, t: T) -> u32 {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            self.items[i as usize] = Some(t);
            i
        } else {
            self.items.push(Some(t));
            (self.items.len() - 1) as u32
        }
    }
    pub fn remove(&mut self, i: u32) -> T {
        let t = self.items[i as usize].take().expect("slab slot in use");
        self.free.push(i);
        self.len -= 1;
        t
    }
    pub fn get(&self, i: u32) -> &T {
        self.items[i as usize].as_ref().expect("slab slot in use")
    }
    pub fn get_mut(&mut self, i: u32) -> &mut T {
        self.items[i as usize].as_mut().expect("slab slot in use")
    }
    pub fn try_get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize).and_then(|t| t.as_ref())
    }
    pub fn try_get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize).and_then(|t| t.as_mut())
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i as u32, t)))
    }
    pub fn slots(&self) -> Vec<u32> {
        self.iter().map(|(i, _)| i).collect()
    }
}

/// Skill requirements or an agent's skills: (dense skill index, level),
/// sorted by index.
pub(super) type Reqs = Vec<(u16, Level)>;

/// The sum of the agent's levels over `reqs` if the agent meets them all.
pub(super) fn meets(skills: &[(u16, Level)], reqs: &[(u16, Level)]) -> Option<u32> {
    let mut score = 0u32;
    let mut i = 0;
    for &(s, min) in reqs {
        while i < skills.len() && skills[i].0 < s {
            i += 1;
        }
        match skills.get(i) {
            Some(&(t, l)) if t == s && l >= min => score += l as u32,
            _ => return None,
        }
    }
    Some(score)
}

/// Free-agent index key, smallest first, packed in one integer (cheaper to
/// compare, and more per B-tree node than a tuple): 64 bits of the
/// strategy's primary key, 32 bits of the agent's creation order (ties),
/// 32 bits of the agent's slot.
pub(super) type FreeKey = u128;

pub(super) fn key_slot(k: FreeKey) -> u32 {
    k as u32
}

/// The round-robin key of the agent created at `seq`, and the first key
/// after it.
pub(super) fn rr_key_after(seq: u64) -> FreeKey {
    ((seq as u128) + 1) << 64
}
/// Waiting-list key: (-priority, enqueued_at, arrival sequence, slot), smallest first.
pub(super) type WaitKey = (i64, u64, u64, u32);

pub(super) fn free_key(
    s: Strategy,
    idle_since: Millis,
    load: u32,
    score: u32,
    seq: u64,
    slot: u32,
) -> FreeKey {
    // Times below 2^48 ms (year 10889) share the word with a 16-bit count.
    const LOW48: u64 = (1 << 48) - 1;
    let idle48 = idle_since.min(LOW48);
    let primary = match s {
        Strategy::LongestIdle | Strategy::RingAll => idle_since,
        Strategy::LeastOccupied => ((load.min(0xffff) as u64) << 48) | idle48,
        Strategy::RoundRobin => seq,
        Strategy::BestProficiency => ((0xffff - score.min(0xffff) as u64) << 48) | idle48,
    };
    let tie = if s == Strategy::RoundRobin {
        0
    } else {
        seq as u32
    };
    ((primary as u128) << 64) | ((tie as u128) << 32) | slot as u128
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Member {
    pub group: u32,
    pub score: u32,
    /// The group's channels and queue priority, copied so a freed agent can
    /// skip groups without reading them.
    pub chmask: u8,
    pub qprio: i32,
}

#[derive(Debug, Clone)]
pub(super) struct Wrap {
    pub interaction: InteractionId,
    pub c: usize,
    pub until: Option<Millis>,
}

#[derive(Debug)]
pub(super) struct Agent {
    pub id: AgentId,
    /// Creation order: round-robin's fixed order.
    pub seq: u64,
    pub cfg: AgentConfig,
    pub skills: Reqs,
    pub cap: [u8; 4],
    pub presence: Presence,
    /// Offered + connected + wrap-up, per channel.
    pub load: [u16; 4],
    pub offers: Vec<u32>,
    pub connected: Vec<u32>,
    pub wraps: Vec<Wrap>,
    pub timer: Option<Millis>,
    pub no_answers: u32,
    pub idle_since: Millis,
    /// Changes with every presence change (unique across agents).
    pub epoch: u64,
    pub members: Vec<Member>,
    /// Channels under which the agent sits in its groups' `free` sets, and
    /// the (idle_since, load) its keys were made from.
    pub indexed: u8,
    pub ix_key: (Millis, u32),
    /// Queued for re-matching (and not indexed until then).
    pub dirty: bool,
}

impl Agent {
    /// Channels with capacity.
    pub fn capmask(&self) -> u8 {
        (0..4)
            .filter(|&c| self.cap[c] > 0)
            .fold(0, |m, c| m | 1 << c)
    }
    pub fn total_load(&self) -> u32 {
        self.load.iter().map(|&l| l as u32).sum()
    }
    /// Channels on which the agent can take an offer now.
    pub fn offerable_mask(&self) -> u8 {
        if self.presence != Presence::Available {
            return 0;
        }
        let voice_busy = self.cfg.voice_blocks_other && self.load[0] > 0;
        let mut m = 0;
        for c in 0..4 {
            if self.load[c] < self.cap[c] as u16 && !(c != 0 && voice_busy) {
                m |= 1 << c;
            }
        }
        m
    }
}

#[derive(Debug)]
pub(super) struct Group {
    pub queue: u32,
    pub step: usize,
    pub strategy: Strategy,
    /// The queue's channels.
    pub chmask: u8,
    pub reqs: Reqs,
    pub free: [BTreeSet<FreeKey>; 4],
    pub waiting: [BTreeSet<WaitKey>; 4],
    /// Members with capacity on each channel, whatever their presence.
    pub servers: [u32; 4],
}

#[derive(Debug, Default, Clone)]
pub(super) struct Stats {
    pub arrived: u64,
    pub answered: u64,
    pub answered_within_sl: u64,
    pub abandoned: u64,
    pub overflowed: u64,
    pub total_answer_ms: u64,
    pub handled: u64,
    pub total_handle_ms: u64,
    pub last_answer_at: Option<Millis>,
    pub ewma_gap_ms: Option<u64>,
}

#[derive(Debug)]
pub(super) struct Queue {
    pub cfg: QueueConfig,
    pub chmask: u8,
    /// One group per step.
    pub groups: Vec<u32>,
    /// When each step starts, in ms of waiting (step 0: 0).
    pub step_after: Vec<Millis>,
    pub rr_cursor: u64,
    pub stats: Stats,
    pub waiting: usize,
    pub offered: usize,
    /// Accepted channels no agent could ever serve.
    pub unservable: u8,
}

impl Queue {
    pub fn step_at(&self, waited: Millis) -> usize {
        self.step_after
            .iter()
            .rposition(|&a| a <= waited)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IxState {
    Waiting,
    Offered {
        agents: Vec<u32>,
        expires_at: Millis,
    },
    Connected {
        agent: u32,
    },
}

#[derive(Debug)]
pub(super) struct Ix {
    pub id: InteractionId,
    pub queue: u32,
    pub queue_id: QueueId,
    pub channel: Channel,
    pub c: usize,
    pub priority: i32,
    pub enqueued_at: Millis,
    pub seq: u64,
    pub queued_at: Millis,
    pub step: usize,
    pub extra: Reqs,
    /// Agents who rejected it or let it ring out, with their presence epoch
    /// then: not offered it again until their presence changes.
    pub declined: Vec<(u32, u64)>,
    pub callback: bool,
    pub state: IxState,
    pub timer: Option<Millis>,
    pub connected_at: Millis,
}

impl Ix {
    pub fn declined_by(&self, a: u32, ag: &Agent) -> bool {
        self.declined.contains(&(a, ag.epoch))
    }
    pub fn wait_key(&self, slot: u32) -> WaitKey {
        (-(self.priority as i64), self.enqueued_at, self.seq, slot)
    }
}

/// Timer keys: (due, kind, slot). Agents (wrap-up ends) sort before
/// interactions at the same instant, so a freed agent can still take an
/// interaction whose maximum wait ends at that moment.
pub(super) const TIMER_AGENT: u8 = 0;
pub(super) const TIMER_IX: u8 = 1;
pub(super) type TimerKey = (Millis, u8, u32);

pub(super) fn bits(mask: u8) -> impl Iterator<Item = usize> {
    (0..4).filter(move |c| mask & (1 << c) != 0)
}
