//! Speech recognition benchmark: Switchboard's ASR pipeline against calling
//! libvosk directly on the same audio, in the same run.
//!
//! `cargo bench --bench asr` (or `scripts/bench/asr.sh`); `-- --rounds N`
//! changes the number of timed rounds (default 7, after one untimed warm-up
//! round). Needs the model at `.tools/vosk/model-ko` (or
//! `SWITCHBOARD_TEST_VOSK_MODEL`; scripts/setup-vosk.sh fetches it),
//! espeak-ng and sox.
//!
//! Audio: Korean phrases spoken by espeak-ng, converted to 8 kHz mono 16-bit
//! by sox (call audio), with 0.3 s of silence before and 1.0 s after (so
//! Vosk endpoints). Each path processes every utterance; a round's time is
//! the sum, and the real-time factor (RTF) is that time over the audio's
//! duration.
//!
//! Paths, grammar (menu phrases):
//! - ours: `Asr::stream(Some(phrases))`, every 20 ms frame `push`ed, then
//!   `finish().await`: recognizer creation, the queue, the thread, the
//!   8 to 16 kHz upsampler, n-best phrase choice.
//! - direct 16 kHz: `Recognizer::new_with_grammar` at 16 kHz with the same
//!   settings (10 alternatives), fed our upsampled audio (upsampled before
//!   the clock starts) in 20 ms frames, `result()` at each endpoint and
//!   `final_result()`: libvosk alone.
//! - direct 8 kHz: the same at 8 kHz fed the call audio (libvosk resamples
//!   inside).
//!
//! Free-form (voicemail): ours is `Asr::transcribe(..).await` (a pooled warm
//! recognizer, 100 ms chunks, on the blocking pool); direct is one warm
//! `Recognizer::new` (words on) reused with `reset()`, fed the same 100 ms
//! chunks at 16 kHz (upsampled beforehand) or 8 kHz.
//!
//! Direct lanes run on one long-lived thread of their own, as ours run on
//! long-lived threads (the stream workers, tokio's blocking pool);
//! `--direct-on-main` runs them on the main thread instead.
//!
//! Where the work runs matters at this scale, through glibc's per-thread
//! malloc arenas (Kaldi allocates a lot while decoding): with the default
//! allocator settings the same libvosk calls measured about 20 % slower on
//! the main thread (whose arena holds the 500 MB model) and about 7 %
//! slower on a fresh thread per utterance than on a reused thread, and
//! ours ranged from 0.85 to 1.09 of direct depending only on which arenas
//! the threads drew. With `MALLOC_ARENA_MAX=1` (one arena for all threads;
//! what scripts/bench/asr.sh sets unless told otherwise) those effects go
//! and the ratio measures the pipeline itself.
//!
//! The wall-time ratio ours/direct is computed per round (lanes rotate
//! order each round) and its median reported; the CPU ratio compares the
//! process's CPU time (all threads) summed over the rounds, which other
//! load on the machine disturbs less.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use switchboard::asr::{Asr, CALL_RATE, Upsampler};
use vosk::{CompleteResult, DecodingState, Recognizer};

const MENU: [&str; 3] = ["상담원 연결", "영업부", "고객 지원"];
/// Said to the menu: (phrase, espeak-ng speed).
const MENU_SAID: [(&str, u32); 4] = [
    ("상담원 연결", 140),
    ("고객 지원", 170),
    ("영업부", 170),
    ("상담원 연결", 170),
];
/// Voicemail-like sentences for free-form recognition.
const FREE_SAID: [&str; 2] = [
    "안녕하세요 고객 지원 센터입니다 무엇을 도와드릴까요",
    "상담원 연결을 원하시면 말씀해 주세요 감사합니다",
];
const ALTERNATIVES: u16 = 10;
/// 100 ms at 8 kHz, as `Asr::transcribe` feeds.
const CHUNK_8K: usize = 800;

struct Utterance {
    said: String,
    pcm8k: Vec<i16>,
    pcm16k: Vec<i16>,
}

impl Utterance {
    fn secs(&self) -> f64 {
        self.pcm8k.len() as f64 / f64::from(CALL_RATE)
    }
}

fn model_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_TEST_VOSK_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/vosk/model-ko"))
}

fn speak(dir: &Path, text: &str, speed: u32) -> Utterance {
    let raw = dir.join("raw.wav");
    let out = dir.join("8k.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "ko", "-s", &speed.to_string(), "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("sox")
            .arg(&raw)
            .args(["-r", "8000", "-c", "1", "-b", "16"])
            .arg(&out)
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("espeak-ng and sox are needed (apt-get install espeak-ng sox)");
        std::process::exit(2);
    }
    let audio = switchboard::media::wav::load(&out).expect("read the 8 kHz WAV");
    let mut pcm8k = vec![0i16; 2400];
    pcm8k.extend_from_slice(&audio.samples);
    pcm8k.extend(std::iter::repeat_n(0i16, 8000));
    // A line's noise floor (uniform, about -60 dBFS, same seed every run).
    // Without it the silences are digital zero and Kaldi's dither (random,
    // seeded from a process-wide sequence) is all the recognizer sees
    // there, so the same audio decodes differently from run to run and
    // lane to lane.
    let mut seed = 0x2545_f491u32;
    for s in &mut pcm8k {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = ((seed >> 16) % 61) as i16 - 30;
        *s = s.saturating_add(noise);
    }
    let mut pcm16k = Vec::new();
    Upsampler::new(2).process(&pcm8k, &mut pcm16k);
    Utterance {
        said: text.to_string(),
        pcm8k,
        pcm16k,
    }
}

/// The text of a result: the best alternative, or the words.
fn text_of(result: CompleteResult<'_>) -> String {
    match result {
        CompleteResult::Single(s) => s.text.to_string(),
        CompleteResult::Multiple(m) => m
            .alternatives
            .first()
            .map(|a| a.text.to_string())
            .unwrap_or_default(),
    }
}

/// Feeds `pcm` in `frame`-sample pieces, collecting results at endpoints
/// and the final one.
fn run_direct(rec: &mut Recognizer, pcm: &[i16], frame: usize) -> String {
    let mut texts = Vec::new();
    for piece in pcm.chunks(frame) {
        match rec.accept_waveform(piece).expect("accept") {
            DecodingState::Finalized => texts.push(text_of(rec.result())),
            DecodingState::Running => {}
            DecodingState::Failed => panic!("vosk failed"),
        }
    }
    texts.push(text_of(rec.final_result()));
    texts.retain(|t| !t.trim().is_empty());
    texts.join(" | ")
}

#[derive(Clone, Copy, PartialEq)]
enum Lane {
    GrammarOurs,
    GrammarDirect16,
    GrammarDirect8,
    FreeOurs,
    FreeDirect16,
    FreeDirect8,
}

const PATHS: [(Lane, &str); 6] = [
    (Lane::GrammarOurs, "grammar  ours: Upsampler + Stream"),
    (Lane::GrammarDirect16, "grammar  libvosk direct, 16 kHz"),
    (Lane::GrammarDirect8, "grammar  libvosk direct, 8 kHz"),
    (Lane::FreeOurs, "free     ours: transcribe"),
    (Lane::FreeDirect16, "free     libvosk direct, 16 kHz"),
    (Lane::FreeDirect8, "free     libvosk direct, 8 kHz"),
];

/// One long-lived thread the direct lanes run on, as ours run on
/// long-lived threads (the stream workers, tokio's blocking pool).
struct DirectThread {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl DirectThread {
    fn new() -> DirectThread {
        let (jobs, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("direct".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawn");
        DirectThread { jobs }
    }

    fn exec<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .expect("direct thread");
        rx.recv().expect("direct lane panicked")
    }
}

struct Bench {
    asr: Arc<Asr>,
    rt: tokio::runtime::Runtime,
    menu: Arc<Vec<Utterance>>,
    free: Arc<Vec<Utterance>>,
    free16: Arc<Mutex<Recognizer>>,
    free8: Arc<Mutex<Recognizer>>,
    /// `None` with `--direct-on-main`.
    direct: Option<DirectThread>,
}

impl Bench {
    /// Runs one path over its utterances: (elapsed, what was heard).
    fn run(&mut self, path: Lane) -> (Duration, Vec<String>) {
        let phrases: Vec<String> = MENU.iter().map(|p| p.to_string()).collect();
        let mut heard = Vec::new();
        let start = Instant::now();
        match path {
            Lane::GrammarOurs => {
                for u in self.menu.iter() {
                    let stream = self.asr.stream(Some(phrases.clone())).expect("stream");
                    for frame in u.pcm8k.chunks(160) {
                        stream.push(frame);
                    }
                    assert_eq!(stream.dropped(), 0, "frames dropped");
                    heard.push(self.rt.block_on(stream.finish()).text);
                }
            }
            Lane::GrammarDirect16 | Lane::GrammarDirect8 => {
                let sixteen = path == Lane::GrammarDirect16;
                let (asr, menu) = (self.asr.clone(), self.menu.clone());
                heard = self.exec(move || {
                    let mut heard = Vec::new();
                    for u in menu.iter() {
                        let model = asr.model();
                        let (rate, pcm, frame) = if sixteen {
                            (16000.0, &u.pcm16k, 320)
                        } else {
                            (8000.0, &u.pcm8k, 160)
                        };
                        let mut rec = Recognizer::new_with_grammar(&model, rate, &phrases)
                            .expect("recognizer");
                        drop(model);
                        rec.set_max_alternatives(ALTERNATIVES);
                        heard.push(run_direct(&mut rec, pcm, frame));
                    }
                    heard
                });
            }
            Lane::FreeOurs => {
                for u in self.free.iter() {
                    let h = self
                        .rt
                        .block_on(self.asr.transcribe(u.pcm8k.clone()))
                        .expect("transcribe");
                    heard.push(h.text);
                }
            }
            Lane::FreeDirect16 | Lane::FreeDirect8 => {
                let sixteen = path == Lane::FreeDirect16;
                let free = self.free.clone();
                let rec = if sixteen {
                    self.free16.clone()
                } else {
                    self.free8.clone()
                };
                heard = self.exec(move || {
                    let mut rec = rec.lock().expect("recognizer");
                    let mut heard = Vec::new();
                    for u in free.iter() {
                        let (pcm, chunk) = if sixteen {
                            (&u.pcm16k, 2 * CHUNK_8K)
                        } else {
                            (&u.pcm8k, CHUNK_8K)
                        };
                        heard.push(run_direct(&mut rec, pcm, chunk));
                        rec.reset();
                    }
                    heard
                });
            }
        }
        (start.elapsed(), heard)
    }

    /// Runs a direct lane on the direct thread (or on the main thread with
    /// `--direct-on-main`).
    fn exec<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        match &self.direct {
            Some(thread) => thread.exec(work),
            None => work(),
        }
    }

    fn audio_secs(&self, path: Lane) -> f64 {
        let list = match path {
            Lane::GrammarOurs | Lane::GrammarDirect16 | Lane::GrammarDirect8 => &self.menu,
            _ => &self.free,
        };
        list.iter().map(Utterance::secs).sum()
    }
}

/// CPU time of the whole process so far (every thread, including those
/// that ended), from /proc/self/stat, in seconds (10 ms resolution).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields after the command: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / 100.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let mut rounds = 7usize;
    let mut on_main = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--direct-on-main" {
            on_main = true;
        } else if arg == "--rounds" {
            rounds = args
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n >= 1)
                .expect("--rounds N");
        }
    }

    let dir = model_dir();
    if !dir.join("am").is_dir() {
        eprintln!(
            "no Vosk model at {}: run scripts/setup-vosk.sh (or set SWITCHBOARD_TEST_VOSK_MODEL)",
            dir.display()
        );
        std::process::exit(2);
    }
    let t = Instant::now();
    let asr = Asr::load(&dir, 1).expect("load the model");
    let load = t.elapsed();

    let tmp = tempfile::tempdir().expect("tempdir");
    let menu: Vec<Utterance> = MENU_SAID
        .iter()
        .map(|(p, speed)| speak(tmp.path(), p, *speed))
        .collect();
    let free: Vec<Utterance> = FREE_SAID
        .iter()
        .map(|p| speak(tmp.path(), p, 140))
        .collect();

    // Cold start of a free-form recognizer: creation, then its first
    // utterance against the same utterance once warm.
    let (create, cold, warm, free16, free8) = {
        let model = asr.model();
        let t = Instant::now();
        let mut rec = Recognizer::new(&model, 16000.0).expect("recognizer");
        let create = t.elapsed();
        let mut free8 = Recognizer::new(&model, 8000.0).expect("recognizer");
        drop(model);
        rec.set_words(true);
        free8.set_words(true);
        let t = Instant::now();
        run_direct(&mut rec, &free[0].pcm16k, 2 * CHUNK_8K);
        let cold = t.elapsed();
        rec.reset();
        let t = Instant::now();
        run_direct(&mut rec, &free[0].pcm16k, 2 * CHUNK_8K);
        let warm = t.elapsed();
        rec.reset();
        (create, cold, warm, rec, free8)
    };
    let mut bench = Bench {
        asr,
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        menu: Arc::new(menu),
        free: Arc::new(free),
        free16: Arc::new(Mutex::new(free16)),
        free8: Arc::new(Mutex::new(free8)),
        direct: (!on_main).then(DirectThread::new),
    };

    // Upsampler alone over all the audio.
    let all8: Vec<i16> = bench
        .menu
        .iter()
        .chain(bench.free.iter())
        .flat_map(|u| u.pcm8k.iter().copied())
        .collect();
    let t = Instant::now();
    let mut up = Upsampler::new(2);
    let mut out = Vec::with_capacity(all8.len() * 2);
    for frame in all8.chunks(160) {
        up.process(frame, &mut out);
    }
    let up_time = t.elapsed();
    let all_secs = all8.len() as f64 / 8000.0;

    println!(
        "allocator: {}",
        std::env::var("MALLOC_ARENA_MAX").map_or_else(
            |_| "glibc default (arena per thread)".to_string(),
            |v| format!("MALLOC_ARENA_MAX={v}")
        )
    );
    println!(
        "model {} loaded in {:.2} s; menu audio {:.1} s ({} utterances), free-form audio {:.1} s ({} utterances); {} rounds after 1 warm-up",
        dir.display(),
        load.as_secs_f64(),
        bench.audio_secs(Lane::GrammarOurs),
        bench.menu.len(),
        bench.audio_secs(Lane::FreeOurs),
        bench.free.len(),
        rounds
    );

    // Warm-up round, and what each path heard.
    println!("\nwhat each path heard (warm-up round):");
    for (path, name) in PATHS {
        let (_, heard) = bench.run(path);
        let said: Vec<&str> = match path {
            Lane::GrammarOurs | Lane::GrammarDirect16 | Lane::GrammarDirect8 => {
                bench.menu.iter().map(|u| u.said.as_str()).collect()
            }
            _ => bench.free.iter().map(|u| u.said.as_str()).collect(),
        };
        println!("  {name}");
        for (s, h) in said.iter().zip(&heard) {
            println!("    said {s:?} -> {h:?}");
        }
    }

    let mut times: Vec<Vec<f64>> = vec![Vec::new(); PATHS.len()];
    let mut cpu = vec![0.0f64; PATHS.len()];
    for round in 0..rounds {
        // Rotate the order so no path always runs first.
        for k in 0..PATHS.len() {
            let i = (k + round) % PATHS.len();
            let before = cpu_secs();
            let (elapsed, _) = bench.run(PATHS[i].0);
            cpu[i] += cpu_secs() - before;
            times[i].push(elapsed.as_secs_f64());
        }
    }

    let ratio = |ours: usize, direct: usize| -> (f64, f64, f64) {
        let mut r: Vec<f64> = times[ours]
            .iter()
            .zip(&times[direct])
            .map(|(a, b)| a / b)
            .collect();
        let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().copied().fold(0.0, f64::max);
        (median(&mut r), lo, hi)
    };

    println!(
        "\n{:<36} {:>9} {:>7} {:>7}   {:<30} ours/this: CPU",
        "path", "median s", "RTF", "CPU RTF", "ours/this: wall (min-max)"
    );
    for (i, (path, name)) in PATHS.iter().enumerate() {
        let med = median(&mut times[i].clone());
        let rtf = med / bench.audio_secs(*path);
        let ours = if i < 3 { 0 } else { 3 };
        let audio = bench.audio_secs(*path) * rounds as f64;
        let cpu_rtf = cpu[i] / audio;
        let (cmp, cmp_cpu) = if i == ours {
            (String::from("-"), String::from("-"))
        } else {
            let (m, lo, hi) = ratio(ours, i);
            (
                format!("{m:.3} ({lo:.3}-{hi:.3})"),
                format!("{:.3}", cpu[ours] / cpu[i]),
            )
        };
        println!("{name:<36} {med:>9.4} {rtf:>7.4} {cpu_rtf:>7.4}   {cmp:<30} {cmp_cpu}");
    }
    println!(
        "\nupsampler alone: {:.1} ms for {:.1} s of audio (RTF {:.5})",
        up_time.as_secs_f64() * 1000.0,
        all_secs,
        up_time.as_secs_f64() / all_secs
    );
    println!(
        "free-form recognizer: created in {:.0} ms; first utterance {:.3} s (RTF {:.3}) cold, {:.3} s (RTF {:.3}) warm",
        create.as_secs_f64() * 1000.0,
        cold.as_secs_f64(),
        cold.as_secs_f64() / bench.free[0].secs(),
        warm.as_secs_f64(),
        warm.as_secs_f64() / bench.free[0].secs()
    );
    println!(
        "(median of {rounds} rounds of wall time; CPU is the process's user+system time summed over the rounds, all threads; RTF = time / audio duration)"
    );
}
