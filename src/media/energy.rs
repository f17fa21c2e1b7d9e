//! Speech/silence detection over 20 ms frames of 8 kHz audio.
//!
//! Each frame's RMS level in dBFS is compared with a noise floor that
//! follows the quietest recent level (falls at once, rises slowly), so a
//! steady background is not taken for speech. A frame is speech when it is
//! `margin_db` above the floor and above an absolute minimum; speech begins
//! after `onset_frames` such frames in a row (dated from the first of them)
//! and ends after `hangover_frames` quiet frames, so the short pauses
//! between words do not split a phrase. The answering-machine detector of
//! the voice campaigns reads these segments. Nothing here can fail.

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// Level reported for digital silence.
pub const FLOOR_DBFS: f64 = -100.0;

#[derive(Debug, Clone, Copy)]
pub struct EnergyConfig {
    /// Speech must be this far above the noise floor, dB.
    pub margin_db: f64,
    /// And at least this loud, dBFS.
    pub min_speech_dbfs: f64,
    /// Rise of the noise floor per frame while the level is above it, dB.
    pub floor_rise_db: f64,
    pub onset_frames: u32,
    pub hangover_frames: u32,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        EnergyConfig {
            margin_db: 10.0,
            min_speech_dbfs: -50.0,
            floor_rise_db: 0.02,
            onset_frames: 2,
            hangover_frames: 15,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Speech,
    Silence,
}

/// A stretch of speech or silence, in milliseconds from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub kind: Kind,
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Segment {
    pub fn duration_ms(&self) -> u64 {
        self.end_ms - self.start_ms
    }
}

/// RMS level of a frame in dBFS ([`FLOOR_DBFS`] for digital silence).
pub fn level_dbfs(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return FLOOR_DBFS;
    }
    let sum: f64 = frame.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / frame.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        FLOOR_DBFS
    } else {
        (20.0 * rms.log10()).max(FLOOR_DBFS)
    }
}

/// Streaming detector: feed 20 ms frames, read closed segments as they happen.
#[derive(Debug)]
pub struct EnergyDetector {
    config: EnergyConfig,
    floor: Option<f64>,
    frames: u64,
    in_speech: bool,
    /// First frame of the current run of loud frames (while deciding onset).
    loud_run: u32,
    quiet_run: u32,
    segment_start: u64,
    partial: Vec<i16>,
    segments: Vec<Segment>,
}

impl Default for EnergyDetector {
    fn default() -> Self {
        Self::new(EnergyConfig::default())
    }
}

impl EnergyDetector {
    pub fn new(config: EnergyConfig) -> Self {
        EnergyDetector {
            config,
            floor: None,
            frames: 0,
            in_speech: false,
            loud_run: 0,
            quiet_run: 0,
            segment_start: 0,
            partial: Vec::with_capacity(FRAME),
            segments: Vec::new(),
        }
    }

    /// The current noise floor estimate, dBFS.
    pub fn noise_floor(&self) -> Option<f64> {
        self.floor
    }

    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Feeds samples of any length; whole frames are analysed.
    pub fn push(&mut self, samples: &[i16]) {
        for &s in samples {
            self.partial.push(s);
            if self.partial.len() == FRAME {
                let level = level_dbfs(&self.partial);
                self.partial.clear();
                self.frame(level);
            }
        }
    }

    fn close(&mut self, kind: Kind, end_frame: u64) {
        if end_frame > self.segment_start {
            self.segments.push(Segment {
                kind,
                start_ms: self.segment_start * 20,
                end_ms: end_frame * 20,
            });
        }
        self.segment_start = end_frame;
    }

    fn frame(&mut self, level: f64) {
        let c = self.config;
        let floor = match self.floor {
            None => level,
            Some(f) if level < f => level,
            Some(f) => f + c.floor_rise_db,
        };
        self.floor = Some(floor);
        let loud = level >= c.min_speech_dbfs && level >= floor + c.margin_db;
        let index = self.frames;
        self.frames += 1;
        if self.in_speech {
            if loud {
                self.quiet_run = 0;
            } else {
                self.quiet_run += 1;
                if self.quiet_run >= c.hangover_frames {
                    // Speech ended where the quiet run began.
                    let end = index + 1 - self.quiet_run as u64;
                    self.close(Kind::Speech, end);
                    self.in_speech = false;
                    self.quiet_run = 0;
                }
            }
        } else if loud {
            self.loud_run += 1;
            if self.loud_run >= c.onset_frames {
                let start = index + 1 - self.loud_run as u64;
                self.close(Kind::Silence, start);
                self.in_speech = true;
                self.loud_run = 0;
            }
        } else {
            self.loud_run = 0;
        }
    }

    /// Segments closed so far (the open one is not included).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Closes the open segment and returns them all.
    pub fn finish(mut self) -> Vec<Segment> {
        let kind = if self.in_speech {
            Kind::Speech
        } else {
            Kind::Silence
        };
        let end = self.frames;
        self.close(kind, end);
        self.segments
    }
}

/// Segments of a whole buffer with the default configuration.
pub fn analyze(samples: &[i16]) -> Vec<Segment> {
    let mut d = EnergyDetector::default();
    d.push(samples);
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, amp: f64, seed: &mut u32) -> Vec<i16> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((*seed >> 16) as f64 / 65536.0 * 2.0 - 1.0) * amp
            })
            .map(|v| v as i16)
            .collect()
    }

    fn burst(n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (i as f64 * 0.3).sin() * (i as f64 * 0.011).sin().abs()) as i16)
            .collect()
    }

    #[test]
    fn levels() {
        assert_eq!(level_dbfs(&[0; 160]), FLOOR_DBFS);
        assert!((level_dbfs(&[16384; 160]) + 6.02).abs() < 0.01);
        assert_eq!(level_dbfs(&[]), FLOOR_DBFS);
    }

    #[test]
    fn finds_speech_between_silences_over_noise() {
        let mut seed = 1;
        let mut s = noise(8000, 100.0, &mut seed); // 1 s of -50 dBFS-ish noise
        s.extend(burst(8000, 8000.0)); // 1 s loud
        s.extend(noise(8000, 100.0, &mut seed));
        let segs = analyze(&s);
        let kinds: Vec<_> = segs.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::Silence, Kind::Speech, Kind::Silence],
            "{segs:?}"
        );
        assert!((segs[1].start_ms as i64 - 1000).abs() <= 40, "{segs:?}");
        assert!((segs[1].end_ms as i64 - 2000).abs() <= 60, "{segs:?}");
        assert_eq!(segs[2].end_ms, 3000);
    }

    #[test]
    fn steady_background_is_not_speech_and_short_pauses_do_not_split() {
        let mut seed = 7;
        // Constant loud hum: the floor starts at it, so it never becomes speech.
        let hum = noise(16000, 3000.0, &mut seed);
        let segs = analyze(&hum);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].kind, Kind::Silence);
        // Two words with 100 ms between them are one speech segment.
        let mut s = vec![0i16; 4000];
        s.extend(burst(4000, 8000.0));
        s.extend(vec![0i16; 800]);
        s.extend(burst(4000, 8000.0));
        s.extend(vec![0i16; 8000]);
        let speech: Vec<_> = analyze(&s)
            .into_iter()
            .filter(|s| s.kind == Kind::Speech)
            .collect();
        assert_eq!(speech.len(), 1, "{speech:?}");
        // A single click is not speech.
        let mut click = vec![0i16; 4000];
        click.extend(burst(160, 20000.0));
        click.extend(vec![0i16; 4000]);
        assert!(analyze(&click).iter().all(|s| s.kind == Kind::Silence));
    }
}
