//! WAV prompts and recordings.
//!
//! [`decode`] / [`load`] read RIFF/WAVE files (PCM 8/16/24/32-bit, IEEE
//! float 32/64, mu-law, A-law, WAVE_FORMAT_EXTENSIBLE of those; 1 to 8
//! channels; 1 kHz to 384 kHz) and convert once to 8 kHz mono i16: channels
//! are averaged, then a polyphase windowed-sinc low-pass resampler changes
//! the rate. They refuse files that are not RIFF/WAVE, lack `fmt ` or
//! `data`, have chunk sizes running past the file, inconsistent block
//! alignment, unsupported encodings, or more than [`MAX_BYTES`] of data.
//!
//! [`WavWriter`] streams 16-bit PCM to any `Write + Seek` and fixes the
//! header sizes on [`WavWriter::finish`]; [`Recorder`] writes two call legs
//! as stereo (one leg per channel) or mixed mono.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use thiserror::Error;

/// The rate everything is converted to.
pub const RATE: u32 = 8000;
/// Largest file we load (a prompt, not a recording archive): 256 MiB.
pub const MAX_BYTES: u64 = 256 << 20;

#[derive(Debug, Error)]
pub enum WavError {
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    #[error("WAV chunk `{chunk}` declares {declared} bytes but only {available} remain")]
    ChunkOverrun {
        chunk: String,
        declared: u64,
        available: u64,
    },
    #[error("WAV file has no `{0}` chunk")]
    Missing(&'static str),
    #[error("WAV `fmt ` chunk is malformed: {0}")]
    BadFormat(String),
    #[error("WAV encoding not supported: format tag {tag:#06x} with {bits} bits")]
    Unsupported { tag: u16, bits: u16 },
    #[error("WAV file too large: {0} bytes (limit {MAX_BYTES})")]
    TooLarge(u64),
    #[error("WAV recording exceeds the 4 GiB a RIFF header can describe")]
    Full,
    #[error("WAV I/O: {0}")]
    Io(#[from] io::Error),
}

/// What a loaded file held before conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFormat {
    pub tag: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits: u16,
}

/// Audio converted to 8 kHz mono.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<i16>,
    pub source: SourceFormat,
}

impl Audio {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / RATE as f64
    }
}

const PCM: u16 = 1;
const FLOAT: u16 = 3;
const ALAW: u16 = 6;
const ULAW: u16 = 7;
const EXTENSIBLE: u16 = 0xFFFE;

/// Loads a WAV file, refusing files over [`MAX_BYTES`] before reading them.
pub fn load(path: &Path) -> Result<Audio, WavError> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_BYTES + 1024 {
        return Err(WavError::TooLarge(size));
    }
    decode(&std::fs::read(path)?)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a WAV file held in memory to 8 kHz mono.
pub fn decode(bytes: &[u8]) -> Result<Audio, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav("missing RIFF/WAVE header"));
    }
    let mut fmt: Option<SourceFormat> = None;
    let mut data: Option<&[u8]> = None;
    let mut at = 12usize;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = le32(bytes, at + 4) as u64;
        let body_start = at + 8;
        let available = (bytes.len() - body_start) as u64;
        if size > available {
            return Err(WavError::ChunkOverrun {
                chunk: String::from_utf8_lossy(id).into_owned(),
                declared: size,
                available,
            });
        }
        let body = &bytes[body_start..body_start + size as usize];
        match id {
            b"fmt " => fmt = Some(parse_fmt(body)?),
            b"data" => {
                if size > MAX_BYTES {
                    return Err(WavError::TooLarge(size));
                }
                data = Some(body);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body_start + size as usize + (size as usize & 1);
    }
    let fmt = fmt.ok_or(WavError::Missing("fmt "))?;
    let data = data.ok_or(WavError::Missing("data"))?;
    let mono = to_mono(fmt, data)?;
    let resampled = resample(&mono, fmt.sample_rate, RATE);
    let samples = resampled
        .iter()
        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    Ok(Audio {
        samples,
        source: fmt,
    })
}

fn parse_fmt(b: &[u8]) -> Result<SourceFormat, WavError> {
    if b.len() < 16 {
        return Err(WavError::BadFormat(format!("{} bytes, needs 16", b.len())));
    }
    let mut tag = le16(b, 0);
    let channels = le16(b, 2);
    let sample_rate = le32(b, 4);
    let block_align = le16(b, 12);
    let bits = le16(b, 14);
    if tag == EXTENSIBLE {
        if b.len() < 40 {
            return Err(WavError::BadFormat(
                "extensible format without its extension".into(),
            ));
        }
        // The sub-format GUID starts with the plain format tag.
        tag = le16(b, 24);
    }
    if !(1..=8).contains(&channels) {
        return Err(WavError::BadFormat(format!(
            "{channels} channels (1 to 8 supported)"
        )));
    }
    if !(1000..=384_000).contains(&sample_rate) {
        return Err(WavError::BadFormat(format!("sample rate {sample_rate} Hz")));
    }
    let ok = match tag {
        PCM => matches!(bits, 8 | 16 | 24 | 32),
        FLOAT => matches!(bits, 32 | 64),
        ALAW | ULAW => bits == 8,
        _ => false,
    };
    if !ok {
        return Err(WavError::Unsupported { tag, bits });
    }
    if block_align as u32 != channels as u32 * (bits as u32 / 8) {
        return Err(WavError::BadFormat(format!(
            "block align {block_align} for {channels} channels of {bits} bits"
        )));
    }
    Ok(SourceFormat {
        tag,
        channels,
        sample_rate,
        bits,
    })
}

fn to_mono(fmt: SourceFormat, data: &[u8]) -> Result<Vec<f32>, WavError> {
    let width = fmt.bits as usize / 8;
    let channels = fmt.channels as usize;
    let frame = width * channels;
    let sample = |s: &[u8]| -> f32 {
        match (fmt.tag, width) {
            (PCM, 1) => (s[0] as f32 - 128.0) / 128.0,
            (PCM, 2) => i16::from_le_bytes([s[0], s[1]]) as f32 / 32768.0,
            (PCM, 3) => (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0,
            (PCM, _) => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0,
            (FLOAT, 4) => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            (FLOAT, _) => {
                f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) as f32
            }
            (ALAW, _) => super::g711::ALAW_DECODE[s[0] as usize] as f32 / 32768.0,
            _ => super::g711::ULAW_DECODE[s[0] as usize] as f32 / 32768.0,
        }
    };
    // A trailing partial frame (a truncated file) is dropped.
    Ok(data
        .chunks_exact(frame)
        .map(|f| {
            let sum: f32 = f.chunks_exact(width).map(&sample).sum();
            let v = sum / channels as f32;
            if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect())
}

/// Zero crossings of the sinc on each side of the centre.
const ZERO_CROSSINGS: usize = 16;
/// Fractional positions tabulated between input samples.
const PHASES: usize = 256;

/// Changes the sample rate with a windowed-sinc (Blackman) low-pass filter,
/// tabulated in [`PHASES`] phases with linear interpolation between them.
/// The cut-off sits at 95% of the lower Nyquist frequency.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let ratio = to as f64 / from as f64;
    // Cut-off in cycles per input sample.
    let cutoff = 0.5 * ratio.min(1.0) * 0.95;
    // Half-width of the kernel in input samples.
    let half = (ZERO_CROSSINGS as f64 / (2.0 * cutoff)).ceil() as usize;
    let taps = 2 * half;
    // table[p][k]: weight of input sample (base - half + 1 + k) at fraction p/PHASES.
    let mut table = vec![0f32; (PHASES + 1) * taps];
    for p in 0..=PHASES {
        let frac = p as f64 / PHASES as f64;
        let row = &mut table[p * taps..(p + 1) * taps];
        let mut sum = 0.0;
        for (k, w) in row.iter_mut().enumerate() {
            let d = (k as f64 - (half as f64 - 1.0)) - frac;
            let x = 2.0 * cutoff * d;
            let sinc = if x.abs() < 1e-12 {
                1.0
            } else {
                (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
            };
            let pos = (d + half as f64) / (2.0 * half as f64); // 0..1 across the window
            let win = if (0.0..=1.0).contains(&pos) {
                let a = 2.0 * std::f64::consts::PI * pos;
                0.42 - 0.5 * a.cos() + 0.08 * (2.0 * a).cos()
            } else {
                0.0
            };
            let v = 2.0 * cutoff * sinc * win;
            *w = v as f32;
            sum += v;
        }
        // Unity gain at DC for every phase.
        if sum.abs() > 1e-12 {
            row.iter_mut().for_each(|w| *w = (*w as f64 / sum) as f32);
        }
    }
    let out_len = (input.len() as u64 * to as u64 / from as u64) as usize;
    let mut out = Vec::with_capacity(out_len);
    let n = input.len() as i64;
    for i in 0..out_len as u64 {
        let pos = i * from as u64;
        let base = (pos / to as u64) as i64;
        let frac = (pos % to as u64) as f64 / to as f64 * PHASES as f64;
        let p = (frac as usize).min(PHASES - 1);
        let t = (frac - p as f64) as f32;
        let (r0, r1) = (
            &table[p * taps..(p + 1) * taps],
            &table[(p + 1) * taps..(p + 2) * taps],
        );
        let start = base - half as i64 + 1;
        let mut acc = 0f32;
        for k in 0..taps {
            let j = start + k as i64;
            if j < 0 || j >= n {
                continue;
            }
            let w = r0[k] + (r1[k] - r0[k]) * t;
            acc += w * input[j as usize];
        }
        out.push(acc);
    }
    out
}

/// Streams 16-bit PCM into a WAV file; sizes are fixed on [`finish`](Self::finish).
pub struct WavWriter<W: Write + Seek> {
    out: Option<W>,
    channels: u16,
    data_bytes: u64,
}

impl WavWriter<BufWriter<File>> {
    /// Creates (truncates) a file.
    pub fn create(path: &Path, channels: u16, sample_rate: u32) -> Result<Self, WavError> {
        WavWriter::new(BufWriter::new(File::create(path)?), channels, sample_rate)
    }
}

impl<W: Write + Seek> WavWriter<W> {
    pub fn new(mut out: W, channels: u16, sample_rate: u32) -> Result<Self, WavError> {
        if !(1..=8).contains(&channels) || !(1000..=384_000).contains(&sample_rate) {
            return Err(WavError::BadFormat(format!(
                "{channels} channels at {sample_rate} Hz"
            )));
        }
        let block = channels as u32 * 2;
        let mut h = Vec::with_capacity(44);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&36u32.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&PCM.to_le_bytes());
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&sample_rate.to_le_bytes());
        h.extend_from_slice(&(sample_rate * block).to_le_bytes());
        h.extend_from_slice(&(block as u16).to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&0u32.to_le_bytes());
        out.write_all(&h)?;
        Ok(WavWriter {
            out: Some(out),
            channels,
            data_bytes: 0,
        })
    }

    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Appends interleaved samples (a whole number of frames is the caller's business).
    pub fn write(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let bytes = samples.len() as u64 * 2;
        if 36 + self.data_bytes + bytes > u32::MAX as u64 {
            return Err(WavError::Full);
        }
        let out = self.out.as_mut().ok_or(WavError::Full)?;
        let mut buf = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            buf.extend_from_slice(&s.to_le_bytes());
        }
        out.write_all(&buf)?;
        self.data_bytes += bytes;
        Ok(())
    }

    /// Fixes the header sizes and returns the writer.
    pub fn finish(mut self) -> Result<W, WavError> {
        self.fix_header()?;
        self.out.take().ok_or(WavError::Full)
    }

    fn fix_header(&mut self) -> Result<(), WavError> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let data = self.data_bytes as u32;
        out.seek(SeekFrom::Start(4))?;
        out.write_all(&(36 + data).to_le_bytes())?;
        out.seek(SeekFrom::Start(40))?;
        out.write_all(&data.to_le_bytes())?;
        out.seek(SeekFrom::End(0))?;
        out.flush()?;
        Ok(())
    }
}

impl<W: Write + Seek> Drop for WavWriter<W> {
    /// A writer dropped without `finish` (a call torn down abruptly) still
    /// leaves a valid file, as far as the I/O allows.
    fn drop(&mut self) {
        let _ = self.fix_header();
    }
}

/// How a two-leg recording is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Leg A on the left channel, leg B on the right.
    Stereo,
    /// Both legs summed (with saturation) into one channel.
    Mixed,
}

/// Records two call legs at 8 kHz.
pub struct Recorder<W: Write + Seek> {
    writer: WavWriter<W>,
    layout: Layout,
    scratch: Vec<i16>,
}

impl Recorder<BufWriter<File>> {
    pub fn create(path: &Path, layout: Layout) -> Result<Self, WavError> {
        let channels = if layout == Layout::Stereo { 2 } else { 1 };
        Ok(Recorder {
            writer: WavWriter::create(path, channels, RATE)?,
            layout,
            scratch: Vec::new(),
        })
    }
}

impl<W: Write + Seek> Recorder<W> {
    pub fn new(out: W, layout: Layout) -> Result<Self, WavError> {
        let channels = if layout == Layout::Stereo { 2 } else { 1 };
        Ok(Recorder {
            writer: WavWriter::new(out, channels, RATE)?,
            layout,
            scratch: Vec::new(),
        })
    }

    /// Writes one stretch of both legs; the shorter is padded with silence.
    pub fn write(&mut self, leg_a: &[i16], leg_b: &[i16]) -> Result<(), WavError> {
        let n = leg_a.len().max(leg_b.len());
        let at = |leg: &[i16], i: usize| leg.get(i).copied().unwrap_or(0);
        self.scratch.clear();
        for i in 0..n {
            let (a, b) = (at(leg_a, i), at(leg_b, i));
            match self.layout {
                Layout::Stereo => self.scratch.extend_from_slice(&[a, b]),
                Layout::Mixed => self.scratch.push(a.saturating_add(b)),
            }
        }
        self.writer.write(&self.scratch)
    }

    pub fn finish(self) -> Result<W, WavError> {
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn write_wav(channels: u16, rate: u32, samples: &[i16]) -> Vec<u8> {
        let mut w = WavWriter::new(Cursor::new(Vec::new()), channels, rate).unwrap();
        w.write(samples).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn writer_and_reader_round_trip_at_8k() {
        let samples: Vec<i16> = (0..800).map(|i| (i * 37 % 2000) as i16 - 1000).collect();
        let bytes = write_wav(1, 8000, &samples);
        assert_eq!(bytes.len(), 44 + 1600);
        assert_eq!(le32(&bytes, 4), 36 + 1600);
        assert_eq!(le32(&bytes, 40), 1600);
        let audio = decode(&bytes).unwrap();
        assert_eq!(audio.samples, samples);
    }

    #[test]
    fn stereo_is_averaged() {
        let bytes = write_wav(2, 8000, &[1000, 3000, -2000, 0]);
        assert_eq!(decode(&bytes).unwrap().samples, vec![2000, -1000]);
    }

    fn sine(rate: u32, freq: f64, secs: f64) -> Vec<i16> {
        let n = (rate as f64 * secs) as usize;
        (0..n)
            .map(|i| {
                (10000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin())
                    as i16
            })
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn resampler_keeps_the_passband_and_kills_aliases() {
        for rate in [11025, 16000, 22050, 44100, 48000] {
            // 1 kHz passes at its level.
            let a = decode(&write_wav(1, rate, &sine(rate, 1000.0, 1.0))).unwrap();
            assert!((a.samples.len() as i64 - 8000).abs() <= 1, "{rate}");
            let level = rms(&a.samples[400..7600]);
            assert!(
                (level / (10000.0 / 2f64.sqrt()) - 1.0).abs() < 0.02,
                "{rate}: {level}"
            );
            // 5 kHz is above the new Nyquist and must not fold back to 3 kHz.
            let b = decode(&write_wav(1, rate, &sine(rate, 5000.0, 1.0))).unwrap();
            let leak = rms(&b.samples[400..7600]);
            assert!(leak < 10000.0 * 0.01, "{rate}: alias at {leak}");
        }
    }

    #[test]
    fn refuses_malformed_headers() {
        let good = write_wav(1, 8000, &[0; 10]);
        let check = |bytes: &[u8], want: &str| {
            let err = decode(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        };
        check(b"RIFX", "not a WAV");
        check(&good[..12], "no `fmt ` chunk");
        check(&good[..36], "no `data` chunk");
        let mut long = good.clone();
        long[40..44].copy_from_slice(&1000u32.to_le_bytes());
        check(&long, "declares 1000 bytes");
        let mut huge = good.clone();
        huge[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        check(&huge, "declares 4294967295");
        let mut tag = good.clone();
        tag[20] = 2; // ADPCM
        check(&tag, "not supported");
        let mut ch = good.clone();
        ch[22] = 0;
        check(&ch, "0 channels");
        let mut align = good.clone();
        align[32] = 3;
        check(&align, "block align 3");
        let mut rate = good.clone();
        rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        check(&rate, "sample rate 0");
    }

    #[test]
    fn any_bytes_decode_or_error() {
        use proptest::prelude::*;
        let good = write_wav(1, 16000, &[100; 64]);
        proptest!(|(idx in 0usize..200, val: u8, cut in 0usize..200)| {
            let mut b = good.clone();
            let i = idx % b.len();
            b[i] = val;
            b.truncate(b.len() - cut % b.len());
            let _ = decode(&b);
        });
    }

    #[test]
    fn recorder_layouts() {
        let rec = |layout| {
            let mut r = Recorder::new(Cursor::new(Vec::new()), layout).unwrap();
            r.write(&[100, 200, 300], &[10, 20]).unwrap();
            r.write(&[i16::MAX], &[i16::MAX]).unwrap();
            r.finish().unwrap().into_inner()
        };
        let stereo = rec(Layout::Stereo);
        assert_eq!(le16(&stereo, 22), 2);
        let body: Vec<i16> = stereo[44..]
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(body, vec![100, 10, 200, 20, 300, 0, i16::MAX, i16::MAX]);
        let mixed = rec(Layout::Mixed);
        assert_eq!(
            decode(&mixed).unwrap().samples,
            vec![110, 220, 300, i16::MAX]
        );
    }

    #[test]
    fn dropped_writer_still_leaves_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.wav");
        {
            let mut w = WavWriter::create(&path, 1, 8000).unwrap();
            w.write(&[1, 2, 3]).unwrap();
        }
        assert_eq!(load(&path).unwrap().samples, vec![1, 2, 3]);
    }
}
