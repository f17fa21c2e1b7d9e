//! A small jitter buffer: reorders packets by sequence number within a
//! window, drops late and duplicate packets, follows sequence wrap-around and
//! source restarts, and keeps the per-leg statistics RTCP reports need
//! (received, expected, lost, interarrival jitter per RFC 3550 A.8).
//!
//! It holds no clock: the caller passes each packet's arrival time in
//! timestamp units (8 per millisecond for G.711) and pulls frames with
//! [`JitterBuffer::pop`] when its playout tick wants one.

use super::rtcp::ReportBlock;
use super::rtp::{SeqExtender, seq_diff};
use std::collections::BTreeMap;

/// A sequence jump larger than this starts a new stream (RFC 3550 A.1).
pub const MAX_DROPOUT: i32 = 3000;
/// A packet this far behind is from an old stream, not merely late.
pub const MAX_MISORDER: i32 = 100;

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Accepted,
    /// Already buffered or already played.
    Duplicate,
    /// Its turn has passed (played past, or skipped as lost).
    Late,
    /// Far outside the window; held back until a second packet confirms a restart.
    OutOfWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JitterStats {
    /// Distinct packets accepted.
    pub received: u64,
    /// Packets the sequence numbers say were sent (highest - first + 1).
    pub expected: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Packets skipped at playout because they never arrived in time.
    pub skipped: u64,
    /// Times the stream restarted (new SSRC or a big sequence jump).
    pub restarts: u64,
    /// Interarrival jitter estimate, timestamp units (RFC 3550 A.8).
    pub jitter: f64,
}

impl JitterStats {
    /// Packets lost: expected but never received (late ones count as received).
    pub fn lost(&self) -> i64 {
        self.expected as i64 - self.received as i64
    }
}

/// One packet's identity as the buffer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

/// A frame released for playout.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<T> {
    pub sequence: u16,
    pub timestamp: u32,
    /// Packets skipped (lost) just before this one.
    pub gap_before: u64,
    pub item: T,
}

#[derive(Debug)]
pub struct JitterBuffer<T> {
    depth: usize,
    ssrc: Option<u32>,
    ext: SeqExtender,
    first_ext: u64,
    /// Next extended sequence to play.
    next: Option<u64>,
    slots: BTreeMap<u64, (u16, u32, T)>,
    /// A far-away sequence that, if followed by its successor, restarts the stream.
    probation: Option<u16>,
    played: bool,
    last_transit: Option<i64>,
    stats: JitterStats,
    prior_expected: u64,
    prior_received: u64,
}

impl<T> JitterBuffer<T> {
    /// A buffer that holds up to `depth` packets waiting for a missing one
    /// before giving it up as lost (at least 1).
    pub fn new(depth: usize) -> Self {
        JitterBuffer {
            depth: depth.max(1),
            ssrc: None,
            ext: SeqExtender::new(),
            first_ext: 0,
            next: None,
            slots: BTreeMap::new(),
            probation: None,
            played: false,
            last_transit: None,
            stats: JitterStats::default(),
            prior_expected: 0,
            prior_received: 0,
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Packets waiting in the buffer.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn restart(&mut self, meta: PacketMeta) {
        if self.ssrc.is_some() {
            self.stats.restarts += 1;
        }
        self.ssrc = Some(meta.ssrc);
        self.ext = SeqExtender::new();
        let e = self.ext.extend(meta.sequence);
        self.first_ext = e;
        self.next = Some(e);
        self.slots.clear();
        self.probation = None;
        self.played = false;
        self.last_transit = None;
        // Reception counts are per source (as RTCP reports them); the
        // duplicate, late, skipped and restart counters span the whole leg.
        self.stats.expected = 0;
        self.stats.received = 0;
        self.stats.jitter = 0.0;
        self.prior_received = 0;
        self.prior_expected = 0;
    }

    /// Offers one packet that arrived at `arrival` (timestamp units).
    pub fn push(&mut self, meta: PacketMeta, arrival: u32, item: T) -> Push {
        if self.ssrc != Some(meta.ssrc) {
            self.restart(meta);
        } else if let Some(high) = self.ext.highest() {
            let d = seq_diff(meta.sequence, high as u16) as i32;
            if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&d) {
                if self.probation == Some(meta.sequence) {
                    self.restart(meta);
                } else {
                    self.probation = Some(meta.sequence.wrapping_add(1));
                    return Push::OutOfWindow;
                }
            }
        }
        let ext = self.ext.extend(meta.sequence);
        let mut next = self.next.unwrap_or(ext);
        if ext < next && !self.played {
            // Nothing played yet: an earlier packet simply starts the stream sooner.
            next = ext;
            self.next = Some(ext);
            self.first_ext = self.first_ext.min(ext);
        }
        if ext < next {
            self.stats.late += 1;
            return Push::Late;
        }
        if self.slots.contains_key(&ext) {
            self.stats.duplicates += 1;
            return Push::Duplicate;
        }
        // RFC 3550 A.8: J += (|D| - J) / 16, with D the change in transit time.
        let transit = arrival as i64 - meta.timestamp as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.stats.jitter += (d - self.stats.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        self.stats.received += 1;
        self.stats.expected = self.ext.highest().unwrap_or(ext) - self.first_ext + 1;
        self.slots
            .insert(ext, (meta.sequence, meta.timestamp, item));
        Push::Accepted
    }

    /// The next frame in order, if it is here, or if the buffer is full enough
    /// that waiting longer for a missing one is pointless.
    pub fn pop(&mut self) -> Option<Frame<T>> {
        let next = self.next?;
        let (&first, _) = self.slots.first_key_value()?;
        if first != next && self.slots.len() < self.depth {
            return None;
        }
        self.take_first(next)
    }

    /// Releases everything still buffered, in order (end of stream).
    pub fn drain(&mut self) -> Vec<Frame<T>> {
        let mut out = Vec::new();
        while let Some(next) = self.next {
            match self.take_first(next) {
                Some(f) => out.push(f),
                None => break,
            }
        }
        out
    }

    fn take_first(&mut self, next: u64) -> Option<Frame<T>> {
        let (ext, (sequence, timestamp, item)) = self.slots.pop_first()?;
        let gap_before = ext - next;
        self.stats.skipped += gap_before;
        self.next = Some(ext + 1);
        self.played = true;
        Some(Frame {
            sequence,
            timestamp,
            gap_before,
            item,
        })
    }

    /// A reception report block for RTCP, updating the interval counters
    /// used for the fraction lost.
    pub fn report_block(&mut self) -> ReportBlock {
        let s = self.stats;
        let expected_interval = s.expected - self.prior_expected.min(s.expected);
        let received_interval = s.received.saturating_sub(self.prior_received);
        self.prior_expected = s.expected;
        self.prior_received = s.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        ReportBlock {
            ssrc: self.ssrc.unwrap_or(0),
            fraction_lost,
            cumulative_lost: s.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: self.ext.highest().map_or(0, |h| (h - (1 << 16)) as u32),
            jitter: s.jitter as u32,
            last_sr: 0,
            delay_since_last_sr: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u16) -> PacketMeta {
        PacketMeta {
            ssrc: 7,
            sequence: seq,
            timestamp: seq as u32 * 160,
        }
    }

    fn push(jb: &mut JitterBuffer<u16>, seq: u16) -> Push {
        jb.push(meta(seq), seq as u32 * 160, seq)
    }

    fn pop_all(jb: &mut JitterBuffer<u16>) -> Vec<u16> {
        std::iter::from_fn(|| jb.pop()).map(|f| f.item).collect()
    }

    #[test]
    fn reorders_within_the_window() {
        let mut jb = JitterBuffer::new(4);
        for s in [10, 12, 11, 13] {
            assert_eq!(push(&mut jb, s), Push::Accepted);
        }
        assert_eq!(pop_all(&mut jb), vec![10, 11, 12, 13]);
        assert_eq!(jb.stats().lost(), 0);
    }

    #[test]
    fn drops_duplicates_and_late_packets() {
        let mut jb = JitterBuffer::new(3);
        push(&mut jb, 1);
        assert_eq!(push(&mut jb, 1), Push::Duplicate);
        assert_eq!(pop_all(&mut jb), vec![1]);
        assert_eq!(push(&mut jb, 1), Push::Late);
        // 2 is missing; after 3 more the buffer gives it up.
        for s in [3, 4, 5] {
            push(&mut jb, s);
        }
        let frames: Vec<_> = std::iter::from_fn(|| jb.pop()).collect();
        assert_eq!(frames[0].item, 3);
        assert_eq!(frames[0].gap_before, 1);
        assert_eq!(push(&mut jb, 2), Push::Late);
        let s = jb.stats();
        assert_eq!((s.duplicates, s.late, s.skipped), (1, 2, 1));
        assert_eq!(s.expected, 5);
        assert_eq!(s.received, 4);
        assert_eq!(s.lost(), 1);
    }

    #[test]
    fn follows_wrap_around() {
        let mut jb = JitterBuffer::new(2);
        for s in [65534, 0, 65535, 1] {
            assert_eq!(push(&mut jb, s), Push::Accepted);
        }
        assert_eq!(pop_all(&mut jb), vec![65534, 65535, 0, 1]);
        assert_eq!(jb.stats().expected, 4);
    }

    #[test]
    fn restarts_on_new_ssrc_or_confirmed_jump() {
        let mut jb = JitterBuffer::new(2);
        push(&mut jb, 100);
        assert_eq!(jb.push(meta(30000), 0, 1), Push::OutOfWindow);
        assert_eq!(jb.push(meta(30001), 0, 2), Push::Accepted);
        assert_eq!(jb.stats().restarts, 1);
        let mut other = meta(5);
        other.ssrc = 8;
        assert_eq!(jb.push(other, 0, 3), Push::Accepted);
        assert_eq!(jb.stats().restarts, 2);
        assert_eq!(pop_all(&mut jb), vec![3]);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        // Packets every 160 ticks, arriving with alternating 0/80 ticks of delay.
        let mut jb = JitterBuffer::new(8);
        for i in 0..200u16 {
            let arrival = i as u32 * 160 + if i % 2 == 0 { 0 } else { 80 };
            jb.push(meta(i), arrival, i);
            jb.pop();
        }
        // |D| is always 80, so J converges to 80.
        assert!(
            (jb.stats().jitter - 80.0).abs() < 0.5,
            "{}",
            jb.stats().jitter
        );
        let rb = jb.report_block();
        assert_eq!(rb.jitter, 79);
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.highest_seq, 199);
    }

    #[test]
    fn fraction_lost_per_interval() {
        let mut jb = JitterBuffer::new(2);
        for s in (0..100u16).filter(|s| s % 4 != 3) {
            push(&mut jb, s);
        }
        let rb = jb.report_block();
        // 75 of 99 expected (0..=98): lost 24 -> 24*256/99 = 62.
        assert_eq!(rb.cumulative_lost, 24);
        assert_eq!(rb.fraction_lost, 62);
        for s in 100..110 {
            push(&mut jb, s);
        }
        // 99..=109: 11 expected, 10 received -> 256/11 = 23.
        assert_eq!(jb.report_block().fraction_lost, 23);
    }

    #[test]
    fn drain_releases_in_order() {
        let mut jb = JitterBuffer::new(10);
        for s in [5, 3, 4, 8] {
            push(&mut jb, s);
        }
        let f = jb.drain();
        assert_eq!(
            f.iter().map(|f| f.item).collect::<Vec<_>>(),
            vec![3, 4, 5, 8]
        );
        assert_eq!(f[3].gap_before, 2);
        assert!(jb.is_empty());
    }
}
