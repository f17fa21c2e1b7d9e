//! Call audio (8 kHz) to the speech model's rate (16 kHz for most Vosk
//! models): a polyphase interpolator with a Kaiser-windowed sinc low-pass,
//! state kept across frames so 20 ms frames join without clicks.
//!
//! Zero-stuffing 8 kHz audio to 16 kHz leaves a mirror image of the
//! 0-4 kHz band at 4-8 kHz (a 1 kHz tone also appears at 7 kHz); the
//! low-pass removes it (about -80 dB) while the telephone band (up to
//! 3.4 kHz) passes flat. Cost: 48 multiply-adds per output sample.

/// Input samples of the sinc on each side of the centre.
const ZEROS: usize = 24;
/// Kaiser window shape (about 80 dB of stopband attenuation).
const BETA: f64 = 8.0;
/// Cut-off (-6 dB) as a fraction of the input rate: 3.8 kHz for 8 kHz input.
const CUTOFF: f64 = 0.475;

/// Integer-factor upsampler (8 kHz to 16 kHz for factor 2).
#[derive(Clone)]
pub struct Upsampler {
    factor: usize,
    /// Filter taps per phase (one per input sample in the window).
    taps: usize,
    /// `factor` phases of `taps` coefficients, each ordered oldest input
    /// first so a phase is a dot product with the window.
    phases: Vec<f32>,
    /// The last `taps - 1` inputs, then the frame being processed.
    work: Vec<f32>,
}

impl std::fmt::Debug for Upsampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upsampler")
            .field("factor", &self.factor)
            .field("taps", &self.taps)
            .finish()
    }
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..64 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Upsampler {
    /// An upsampler multiplying the rate by `factor` (at least 1; 1 copies).
    pub fn new(factor: usize) -> Upsampler {
        let factor = factor.max(1);
        let taps = 2 * ZEROS;
        let centre = (ZEROS * factor) as f64;
        let i0_beta = bessel_i0(BETA);
        // Causal prototype at the output rate, time in input samples.
        let proto: Vec<f64> = (0..taps * factor)
            .map(|i| {
                let t = (i as f64 - centre) / factor as f64;
                let x = 2.0 * CUTOFF * t;
                let sinc = if x.abs() < 1e-12 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                let r = t / ZEROS as f64;
                let window = bessel_i0(BETA * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
                2.0 * CUTOFF * sinc * window
            })
            .collect();
        let mut phases = Vec::with_capacity(taps * factor);
        for p in 0..factor {
            // y[n*L + p] = sum_j x[n - j] * proto[p + j*L]; window slot k
            // holds x[n - (taps - 1 - k)].
            let phase: Vec<f64> = (0..taps)
                .map(|k| proto[p + (taps - 1 - k) * factor])
                .collect();
            // Each phase passes DC with gain 1 (no level change, no ripple
            // between phases).
            let sum: f64 = phase.iter().sum();
            phases.extend(phase.iter().map(|c| (c / sum) as f32));
        }
        Upsampler {
            factor,
            taps,
            phases,
            work: vec![0.0; taps - 1],
        }
    }

    /// The upsampler from `from` Hz to `to` Hz, when `to` is a whole
    /// multiple of `from`.
    pub fn for_rates(from: u32, to: u32) -> Option<Upsampler> {
        (from > 0 && to >= from && to.is_multiple_of(from))
            .then(|| Upsampler::new((to / from) as usize))
    }

    pub fn factor(&self) -> usize {
        self.factor
    }

    /// Output samples by which the signal is late (the filter's centre):
    /// 24 input samples, 3 ms at 8 kHz.
    pub fn delay(&self) -> usize {
        ZEROS * self.factor
    }

    /// Forgets the previous frames (a new, unrelated signal follows).
    pub fn reset(&mut self) {
        self.work.clear();
        self.work.resize(self.taps - 1, 0.0);
    }

    /// Appends `input.len() * factor` samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.factor == 1 {
            out.extend_from_slice(input);
            return;
        }
        let keep = self.taps - 1;
        self.work.truncate(keep);
        self.work.extend(input.iter().map(|&s| f32::from(s)));
        out.reserve(input.len() * self.factor);
        for i in 0..input.len() {
            let window = &self.work[i..i + self.taps];
            for phase in self.phases.chunks_exact(self.taps) {
                let v = dot(window, phase);
                out.push(v.round().clamp(-32768.0, 32767.0) as i16);
            }
        }
        let len = self.work.len();
        self.work.copy_within(len - keep.., 0);
        self.work.truncate(keep);
    }
}

/// Dot product with eight accumulators (vectorises; the taps are a
/// multiple of 8).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, ar) = (a.chunks_exact(8), a.chunks_exact(8).remainder());
    let (bc, br) = (b.chunks_exact(8), b.chunks_exact(8).remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        sum += x * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: f64, freq: f64, amplitude: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|n| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * n as f64 / rate).sin()) as i16
            })
            .collect()
    }

    /// Amplitude of the `freq` component (Goertzel, Hann window).
    fn amplitude_at(samples: &[i16], rate: f64, freq: f64) -> f64 {
        let n = samples.len() as f64;
        let (mut re, mut im, mut wsum) = (0.0, 0.0, 0.0);
        for (i, &s) in samples.iter().enumerate() {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n).cos();
            let ph = 2.0 * std::f64::consts::PI * freq * i as f64 / rate;
            re += w * f64::from(s) * ph.cos();
            im += w * f64::from(s) * ph.sin();
            wsum += w;
        }
        2.0 * (re * re + im * im).sqrt() / wsum
    }

    fn upsample_in_frames(input: &[i16], frame: usize) -> Vec<i16> {
        let mut up = Upsampler::for_rates(8000, 16000).expect("2x");
        let mut out = Vec::new();
        for chunk in input.chunks(frame) {
            up.process(chunk, &mut out);
        }
        out
    }

    #[test]
    fn a_1khz_tone_keeps_its_frequency_and_amplitude() {
        let input = tone(8000.0, 1000.0, 10000.0, 8000);
        let out = upsample_in_frames(&input, 160);
        assert_eq!(out.len(), 16000);
        // Past the filter's start-up.
        let steady = &out[1000..];
        let at_1k = amplitude_at(steady, 16000.0, 1000.0);
        assert!((at_1k - 10000.0).abs() < 50.0, "1 kHz amplitude {at_1k}");
        // Frequency: zero crossings over the steady part (2 per period).
        let crossings = steady
            .windows(2)
            .filter(|w| (w[0] < 0) != (w[1] < 0))
            .count();
        let freq = crossings as f64 / 2.0 / (steady.len() as f64 / 16000.0);
        assert!((freq - 1000.0).abs() < 5.0, "frequency {freq}");
        // Peak level close to the input's.
        let peak = steady.iter().map(|s| i32::from(*s).abs()).max().unwrap();
        assert!((9900..=10100).contains(&peak), "peak {peak}");
    }

    #[test]
    fn no_image_near_7khz() {
        let input = tone(8000.0, 1000.0, 10000.0, 8000);
        let out = upsample_in_frames(&input, 160);
        let steady = &out[1000..];
        let signal = amplitude_at(steady, 16000.0, 1000.0);
        let image = amplitude_at(steady, 16000.0, 7000.0);
        let db = 20.0 * (image / signal).log10();
        assert!(db < -70.0, "7 kHz image at {db:.1} dB");
        // Sample repetition would leave the image at about -17 dB; check
        // the measure would see it.
        let repeated: Vec<i16> = input.iter().flat_map(|&s| [s, s]).collect();
        let bad = amplitude_at(&repeated[1000..], 16000.0, 7000.0);
        assert!(20.0 * (bad / signal).log10() > -30.0);
    }

    #[test]
    fn telephone_band_is_flat_and_the_top_band_is_removed() {
        for (freq, lo, hi) in [
            (300.0, 0.99, 1.01),
            (3000.0, 0.98, 1.02),
            (3400.0, 0.9, 1.02),
        ] {
            let out = upsample_in_frames(&tone(8000.0, freq, 10000.0, 8000), 160);
            let a = amplitude_at(&out[1000..], 16000.0, freq) / 10000.0;
            assert!(a > lo && a < hi, "{freq} Hz gain {a}");
            let image = amplitude_at(&out[1000..], 16000.0, 8000.0 - freq) / 10000.0;
            assert!(image < 0.01, "{freq} Hz image gain {image}");
        }
    }

    #[test]
    fn frames_join_exactly() {
        let input = tone(8000.0, 440.0, 12000.0, 4000);
        let whole = upsample_in_frames(&input, input.len());
        for frame in [1, 7, 160, 333] {
            assert_eq!(upsample_in_frames(&input, frame), whole, "frame {frame}");
        }
    }

    #[test]
    fn delay_dc_and_reset() {
        let mut up = Upsampler::new(2);
        assert_eq!(up.delay(), 48);
        let mut out = Vec::new();
        up.process(&[1000; 200], &mut out);
        // Constant input comes out constant after the delay.
        assert!(
            out[100..].iter().all(|&s| (s - 1000).abs() <= 1),
            "{:?}",
            &out[100..110]
        );
        up.reset();
        out.clear();
        up.process(&[0; 10], &mut out);
        assert!(out.iter().all(|&s| s == 0));
        // Full-scale input does not wrap.
        out.clear();
        up.process(&[i16::MAX; 200], &mut out);
        up.process(&[i16::MIN; 200], &mut out);
        assert!(out.iter().skip(100).take(200).all(|&s| s > 30000));
        let mut same = Upsampler::new(1);
        out.clear();
        same.process(&[1, 2, 3], &mut out);
        assert_eq!(out, [1, 2, 3]);
        assert!(Upsampler::for_rates(8000, 22050).is_none());
        assert_eq!(Upsampler::for_rates(8000, 48000).unwrap().factor(), 6);
    }
}
