//! DTMF: RFC 4733 telephone-event payloads (decode, encode, a receiver that
//! yields one digit per key press, a sender that makes the packet sequence
//! for one press), in-band detection with the Goertzel algorithm on 8 kHz
//! linear PCM, and a tone generator.
//!
//! [`TelephoneEvent::parse`] refuses payloads shorter than 4 bytes.
//! Events other than the 16 DTMF ones are decoded but not reported as digits.

use thiserror::Error;

/// A DTMF key: `0`-`9`, `*`, `#`, `A`-`D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(char);

const KEYS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

impl Digit {
    pub fn from_char(c: char) -> Option<Digit> {
        let c = c.to_ascii_uppercase();
        KEYS.contains(&c).then_some(Digit(c))
    }

    /// The digit for an RFC 4733 event code (0-15).
    pub fn from_event(code: u8) -> Option<Digit> {
        KEYS.get(code as usize).map(|&c| Digit(c))
    }

    pub fn event(self) -> u8 {
        KEYS.iter().position(|&k| k == self.0).unwrap_or(0) as u8
    }

    pub fn as_char(self) -> char {
        self.0
    }

    /// Row (low) and column (high) frequencies in Hz.
    pub fn frequencies(self) -> (f64, f64) {
        let (r, c) = match self.0 {
            '1' => (0, 0),
            '2' => (0, 1),
            '3' => (0, 2),
            'A' => (0, 3),
            '4' => (1, 0),
            '5' => (1, 1),
            '6' => (1, 2),
            'B' => (1, 3),
            '7' => (2, 0),
            '8' => (2, 1),
            '9' => (2, 2),
            'C' => (2, 3),
            '*' => (3, 0),
            '0' => (3, 1),
            '#' => (3, 2),
            _ => (3, 3), // 'D'
        };
        (ROWS[r], COLS[c])
    }
}

impl std::fmt::Display for Digit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DtmfError {
    #[error("telephone-event payload is {0} bytes, needs 4")]
    TooShort(usize),
}

/// One RFC 4733 telephone-event payload (section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level as 0..=63 dBm0 below zero (larger is quieter).
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first 4 bytes of a payload (more are ignored: RFC 2198
    /// redundancy is not negotiated, so a payload holds one event).
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        if payload.len() < 4 {
            return Err(DtmfError::TooShort(payload.len()));
        }
        Ok(TelephoneEvent {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            ((self.end as u8) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    pub fn digit(self) -> Option<Digit> {
        Digit::from_event(self.event)
    }
}

/// A key press seen by a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Press {
    pub digit: Digit,
    /// RTP timestamp of the event (its start).
    pub timestamp: u32,
}

/// Turns a stream of telephone-event packets into one [`Press`] per key
/// press. A press is identified by its RTP timestamp (constant over the
/// event, RFC 4733 section 2.5.1), so updates, the repeated end packets and
/// retransmissions of an event already reported are ignored; a press is
/// reported on its first packet, so a lost start or lost end packets do not
/// lose the digit.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// Timestamps of recently reported events (a reordered straggler of an
    /// older event must not count again).
    recent: [Option<u32>; 8],
    next_slot: usize,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one packet's timestamp and parsed event.
    pub fn on_event(&mut self, timestamp: u32, event: TelephoneEvent) -> Option<Press> {
        let digit = event.digit()?;
        if self.recent.contains(&Some(timestamp)) {
            return None;
        }
        self.recent[self.next_slot] = Some(timestamp);
        self.next_slot = (self.next_slot + 1) % self.recent.len();
        Some(Press { digit, timestamp })
    }

    /// Feeds one packet's timestamp and raw payload; malformed payloads are ignored.
    pub fn on_payload(&mut self, timestamp: u32, payload: &[u8]) -> Option<Press> {
        TelephoneEvent::parse(payload)
            .ok()
            .and_then(|e| self.on_event(timestamp, e))
    }
}

/// One packet to send for a key press; the caller's RTP stream gives it the
/// next sequence number, this timestamp, this marker and payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub marker: bool,
    pub timestamp: u32,
    pub payload: [u8; 4],
}

/// The packets for one key press (RFC 4733 section 2.5): the first with the
/// marker bit, one update every `interval` timestamp units, then the end
/// packet three times; all carry the press's start `timestamp`.
/// `duration` is in timestamp units (800 = 100 ms at 8 kHz); it is capped
/// at 65535 (longer events need segments, which we never send).
pub fn event_packets(
    digit: Digit,
    timestamp: u32,
    duration: u32,
    interval: u32,
    volume: u8,
) -> Vec<EventPacket> {
    let interval = interval.max(1);
    let total = duration.clamp(1, u16::MAX as u32);
    let mut out = Vec::new();
    let mut elapsed = 0u32;
    let mut ev = TelephoneEvent {
        event: digit.event(),
        end: false,
        volume: volume.min(63),
        duration: 0,
    };
    loop {
        elapsed = (elapsed + interval).min(total);
        ev.duration = elapsed as u16;
        ev.end = elapsed >= total;
        let repeats = if ev.end { 3 } else { 1 };
        for _ in 0..repeats {
            out.push(EventPacket {
                marker: out.is_empty(),
                timestamp,
                payload: ev.to_bytes(),
            });
        }
        if ev.end {
            return out;
        }
    }
}

const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const RATE: f64 = 8000.0;
/// Samples per Goertzel block: 205 at 8 kHz (25.6 ms) resolves the DTMF
/// frequencies (bins about 39 Hz wide, neighbours at least 73 Hz apart).
pub const BLOCK: usize = 205;

/// Thresholds of the in-band detector.
#[derive(Debug, Clone, Copy)]
pub struct DetectorConfig {
    /// Minimum RMS of the block, dBFS.
    pub min_level_dbfs: f64,
    /// Share of the block's energy the two tones must carry.
    pub min_tone_ratio: f64,
    /// Most the column tone may be weaker than the row tone (normal twist), dB.
    pub max_normal_twist_db: f64,
    /// Most the row tone may be weaker than the column tone (reverse twist), dB.
    pub max_reverse_twist_db: f64,
    /// The strongest row (column) must beat the others by this much, dB.
    pub min_peak_ratio_db: f64,
    /// Consecutive blocks that must agree before a digit is reported.
    pub min_blocks: u32,
    /// Consecutive blocks without the digit that end it.
    pub release_blocks: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_level_dbfs: -40.0,
            min_tone_ratio: 0.75,
            max_normal_twist_db: 8.0,
            max_reverse_twist_db: 8.0,
            min_peak_ratio_db: 8.0,
            min_blocks: 2,
            release_blocks: 2,
        }
    }
}

/// In-band DTMF detector over 8 kHz linear PCM. A digit is reported once
/// when it has held for `min_blocks` blocks (about 40 ms or more) and not
/// again until it has been absent for `release_blocks` blocks.
#[derive(Debug)]
pub struct DtmfDetector {
    config: DetectorConfig,
    coeffs: [f64; 8],
    block: Vec<f64>,
    candidate: Option<Digit>,
    run: u32,
    reported: Option<Digit>,
    absent: u32,
    /// Samples consumed so far (for reporting positions).
    position: u64,
}

/// A digit detected in-band, with the sample offset of the block that confirmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    pub digit: Digit,
    pub sample: u64,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new(DetectorConfig::default())
    }
}

impl DtmfDetector {
    pub fn new(config: DetectorConfig) -> Self {
        let mut coeffs = [0.0; 8];
        for (c, f) in coeffs.iter_mut().zip(ROWS.iter().chain(COLS.iter())) {
            *c = 2.0 * (2.0 * std::f64::consts::PI * f / RATE).cos();
        }
        DtmfDetector {
            config,
            coeffs,
            block: Vec::with_capacity(BLOCK),
            candidate: None,
            run: 0,
            reported: None,
            absent: 0,
            position: 0,
        }
    }

    /// Feeds samples; returns the digits confirmed within them.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Detection> {
        let mut out = Vec::new();
        for &s in samples {
            self.block.push(s as f64 / 32768.0);
            self.position += 1;
            if self.block.len() == BLOCK {
                let d = self.classify();
                self.block.clear();
                if let Some(det) = self.step(d) {
                    out.push(det);
                }
            }
        }
        out
    }

    fn step(&mut self, d: Option<Digit>) -> Option<Detection> {
        if d.is_some() && d == self.candidate {
            self.run += 1;
        } else {
            self.candidate = d;
            self.run = u32::from(d.is_some());
        }
        if self.reported.is_some() && d != self.reported {
            self.absent += 1;
            if self.absent >= self.config.release_blocks {
                self.reported = None;
            }
        } else {
            self.absent = 0;
        }
        if self.reported.is_none()
            && let Some(digit) = self.candidate
            && self.run >= self.config.min_blocks
        {
            self.reported = Some(digit);
            self.absent = 0;
            return Some(Detection {
                digit,
                sample: self.position,
            });
        }
        None
    }

    fn classify(&self) -> Option<Digit> {
        let c = &self.config;
        let energy: f64 = self.block.iter().map(|x| x * x).sum();
        let rms = (energy / BLOCK as f64).sqrt();
        if rms <= 0.0 || 20.0 * rms.log10() < c.min_level_dbfs {
            return None;
        }
        // Power of each frequency, normalised so a full-block sine at that
        // frequency carries its own energy: 2|X|^2 / N.
        let mut power = [0.0f64; 8];
        for (p, &coeff) in power.iter_mut().zip(self.coeffs.iter()) {
            let (mut s1, mut s2) = (0.0, 0.0);
            for &x in &self.block {
                let s0 = x + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let mag2 = s1 * s1 + s2 * s2 - coeff * s1 * s2;
            *p = 2.0 * mag2 / BLOCK as f64;
        }
        let (rows, cols) = power.split_at(4);
        let (ri, rp) = strongest(rows);
        let (ci, cp) = strongest(cols);
        if (rp + cp) < c.min_tone_ratio * energy {
            return None;
        }
        let db = |a: f64, b: f64| 10.0 * (a / b.max(1e-30)).log10();
        if db(rp, cp) > c.max_normal_twist_db || db(cp, rp) > c.max_reverse_twist_db {
            return None;
        }
        let others_ok = |group: &[f64], best: usize, p: f64| {
            group
                .iter()
                .enumerate()
                .all(|(i, &q)| i == best || db(p, q) >= c.min_peak_ratio_db)
        };
        if !others_ok(rows, ri, rp) || !others_ok(cols, ci, cp) {
            return None;
        }
        const GRID: [[char; 4]; 4] = [
            ['1', '2', '3', 'A'],
            ['4', '5', '6', 'B'],
            ['7', '8', '9', 'C'],
            ['*', '0', '#', 'D'],
        ];
        Digit::from_char(GRID[ri][ci])
    }
}

fn strongest(p: &[f64]) -> (usize, f64) {
    p.iter().copied().enumerate().fold(
        (0, f64::MIN),
        |best, (i, v)| if v > best.1 { (i, v) } else { best },
    )
}

/// Row and column frequencies of a key given as a character (for tests
/// and tone generators); `(0.0, 0.0)` for anything that is not a key.
pub fn tone_frequencies(key: char) -> (f64, f64) {
    Digit::from_char(key).map_or((0.0, 0.0), Digit::frequencies)
}

/// Runs the detector over a whole buffer.
pub fn detect(samples: &[i16]) -> Vec<Digit> {
    DtmfDetector::default()
        .push(samples)
        .into_iter()
        .map(|d| d.digit)
        .collect()
}

/// An 8 kHz DTMF tone: both frequencies at `amplitude` (0..1 of full scale
/// each; keep the sum under 1).
pub fn tone(digit: Digit, samples: usize, amplitude: f64) -> Vec<i16> {
    let (r, c) = digit.frequencies();
    let w = 2.0 * std::f64::consts::PI / RATE;
    (0..samples)
        .map(|n| {
            let t = n as f64;
            let v = amplitude * ((w * r * t).sin() + (w * c * t).sin());
            (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digit {
        Digit::from_char(c).unwrap()
    }

    #[test]
    fn digits_and_events() {
        for (i, &k) in KEYS.iter().enumerate() {
            let digit = d(k);
            assert_eq!(digit.event() as usize, i);
            assert_eq!(Digit::from_event(i as u8), Some(digit));
        }
        assert_eq!(Digit::from_event(16), None);
        assert_eq!(Digit::from_char('x'), None);
        assert_eq!(d('a').as_char(), 'A');
    }

    #[test]
    fn payload_round_trips() {
        // From SIPp's dtmf_2833_1.pcap: event 1, end, volume 10, duration 2240.
        let bytes = [0x01, 0x8A, 0x08, 0xC0];
        let ev = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 1,
                end: true,
                volume: 10,
                duration: 2240
            }
        );
        assert_eq!(ev.to_bytes(), bytes);
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(DtmfError::TooShort(3))
        );
    }

    #[test]
    fn sender_makes_the_rfc_sequence() {
        let pkts = event_packets(d('5'), 1000, 800, 160, 10);
        // 5 updates (160..=800), the last being the end, sent three times.
        assert_eq!(pkts.len(), 7);
        assert!(pkts[0].marker);
        assert!(pkts[1..].iter().all(|p| !p.marker));
        assert!(pkts.iter().all(|p| p.timestamp == 1000));
        let evs: Vec<_> = pkts
            .iter()
            .map(|p| TelephoneEvent::parse(&p.payload).unwrap())
            .collect();
        assert_eq!(evs[0].duration, 160);
        assert!(!evs[3].end);
        assert!(evs[4..].iter().all(|e| e.end && e.duration == 800));
        assert!(evs.iter().all(|e| e.event == 5 && e.volume == 10));
    }

    #[test]
    fn receiver_reports_each_press_once() {
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        for (ts, digit) in [(1000, '1'), (3000, '1'), (5000, '#')] {
            for p in event_packets(d(digit), ts, 800, 160, 10) {
                got.extend(rx.on_payload(p.timestamp, &p.payload));
            }
            // A late retransmission of the end of an earlier press.
            got.extend(rx.on_payload(1000, &[1, 0x8A, 3, 0x20]));
        }
        let digits: String = got.iter().map(|p| p.digit.as_char()).collect();
        assert_eq!(digits, "11#");
        // Garbage and non-DTMF events are ignored.
        assert_eq!(rx.on_payload(9000, &[1]), None);
        assert_eq!(rx.on_payload(9000, &[16, 0, 0, 0]), None);
    }

    #[test]
    fn detects_generated_tones() {
        for &k in &KEYS {
            let mut s = vec![0i16; 400];
            s.extend(tone(d(k), 800, 0.3));
            s.extend(vec![0i16; 800]);
            assert_eq!(detect(&s), vec![d(k)], "digit {k}");
        }
    }

    #[test]
    fn rejects_single_tones_short_bursts_and_quiet() {
        let w = 2.0 * std::f64::consts::PI / RATE;
        let single: Vec<i16> = (0..1600)
            .map(|n| (8000.0 * (w * 697.0 * n as f64).sin()) as i16)
            .collect();
        assert!(detect(&single).is_empty());
        // 20 ms is too short to be a digit (Q.24 rejects under 23 ms).
        let mut short = tone(d('5'), 160, 0.3);
        short.extend(vec![0i16; 800]);
        assert!(detect(&short).is_empty());
        assert!(detect(&tone(d('5'), 1600, 0.003)).is_empty());
    }

    #[test]
    fn same_digit_twice_needs_a_pause() {
        let mut s = tone(d('7'), 800, 0.3);
        s.extend(vec![0i16; 800]);
        s.extend(tone(d('7'), 800, 0.3));
        assert_eq!(detect(&s), vec![d('7'), d('7')]);
        // A long tone is one press.
        assert_eq!(detect(&tone(d('7'), 8000, 0.3)), vec![d('7')]);
    }
}
