//! Speech recognition on libvosk (Kaldi).
//!
//! One [`Asr`] holds one Vosk model (hundreds of MB, loaded once) shared by
//! every recognizer. Recognizers run on threads of their own, never on the
//! async workers (stream threads are kept for reuse a while: a fresh thread
//! per stream cost about 7 % more CPU):
//!
//! - [`Asr::stream`] starts a [`Stream`] for live call audio: the media task
//!   [`Stream::push`]es 8 kHz frames (a bounded queue: a recognizer that
//!   falls behind loses frames, counted, instead of stalling the call), a
//!   thread upsamples them to the model's rate ([`Upsampler`]) and feeds
//!   Vosk, and [`Stream::utterance`] resolves at each end of utterance Vosk
//!   detects (its endpointing: trailing silence). With a phrase list the
//!   recognizer is restricted to those phrases (a Vosk grammar: fast, about
//!   1 ms to create and RTF 0.02, and far more accurate for menus);
//!   without one it is free-form.
//!
//!   A Vosk grammar is a bigram language model over the phrases' words (see
//!   `UpdateGrammarFst` in vosk-api), not a list of whole phrases: its best
//!   hypothesis can be "영업부 연결" for the list 상담원 연결 / 영업부. So grammar
//!   recognizers return their 10-best hypotheses and the first that is a
//!   whole listed phrase wins; the result is always a listed phrase, or
//!   `""` when the speech matched none (a "no match").
//! - [`Asr::transcribe`] transcribes a whole recording (voicemail) free-form
//!   on the blocking pool.
//!
//! Free-form recognizers cost about 70 ms to create and run slowly on their
//! first utterance, so up to `pool` of them are kept warm and `reset()` on
//! return; grammar recognizers are created per stream.
//!
//! Results are [`Heard`]: the text (`""` when nothing was recognized;
//! marker words such as `[unk]` are dropped) and a confidence from 0 to 1:
//! free-form, the mean of the words' confidences (0.0 without words); with
//! phrases, the chosen phrase's share of the n-best likelihood.

mod upsample;
mod workers;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use tokio::sync::{mpsc, oneshot};
use vosk::{CompleteResult, DecodingState, Model, Recognizer};

pub use upsample::Upsampler;

/// The rate of call audio everywhere in Switchboard.
pub const CALL_RATE: u32 = 8000;
/// The rate of a model whose `conf/mfcc.conf` does not say.
pub const DEFAULT_MODEL_RATE: u32 = 16000;
/// Frames a stream queues before [`Stream::push`] drops (10 s of 20 ms).
pub const QUEUE_FRAMES: usize = 500;
/// Input fed to Vosk per call in [`Asr::transcribe`] (100 ms at 8 kHz):
/// endpoints are detected at these boundaries.
const TRANSCRIBE_CHUNK: usize = 800;
/// The word Vosk models with an unknown-word model use for "not in the list".
const UNK: &str = "[unk]";
/// Hypotheses a grammar recognizer returns (see [`Stream::utterance`]).
const ALTERNATIVES: u16 = 10;
/// Words whose lookup [`Asr::unknown_words`] remembers.
const VOCAB_CACHE: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error(
        "no Vosk model at {} (asr.model_dir): point it at an unpacked Vosk model folder (scripts/setup-vosk.sh fetches the small Korean one)",
        .0.display()
    )]
    NoModel(PathBuf),
    #[error(
        "Vosk could not load the model at {} (asr.model_dir): the folder is not a Vosk model or is damaged",
        .0.display()
    )]
    ModelLoad(PathBuf),
    #[error("the Vosk model path {} is not valid UTF-8 (asr.model_dir)", .0.display())]
    NonUtf8Path(PathBuf),
    #[error("the phrase list is empty: give at least one phrase to listen for")]
    EmptyGrammar,
    #[error("the phrase {0:?} contains '\"' or '\\', which a Vosk grammar cannot hold")]
    BadPhrase(String),
    #[error("the speech model does not know {}", word_list(.0))]
    UnknownWords(Vec<String>),
    #[error("Vosk could not create a {kind} recognizer at {rate} Hz")]
    Recognizer { kind: &'static str, rate: u32 },
    #[error("Vosk failed to decode the audio")]
    Decode,
    #[error("could not start a speech recognition thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the speech recognition task failed: {0}")]
    Task(String),
}

fn word_list(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    match quoted.len() {
        1 => format!("the word {}", quoted[0]),
        _ => format!("the words {}", quoted.join(", ")),
    }
}

/// What a recognizer heard (see the module notes).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Heard {
    /// Recognized words separated by single spaces (with phrases: the
    /// listed phrase, whitespace collapsed); `""` = nothing.
    pub text: String,
    /// 0 to 1; 0.0 when `text` is empty.
    pub confidence: f32,
}

/// Vosk's marker words (`[unk]`, and noise or filler classes such as `[1]`
/// in some models): dropped from texts.
fn is_marker(word: &str) -> bool {
    word.starts_with('[') && word.ends_with(']')
}

/// Free-form results (several utterances of a recording) summed into one
/// [`Heard`]: the words, and the mean of their MBR confidences.
#[derive(Default)]
struct Collect {
    text: String,
    conf_sum: f32,
    words: usize,
}

impl Collect {
    fn push_word(&mut self, word: &str) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(word);
    }

    fn add(&mut self, result: CompleteResult<'_>) {
        match result {
            CompleteResult::Single(single) if !single.result.is_empty() => {
                for w in single.result.iter().filter(|w| !is_marker(w.word)) {
                    self.conf_sum += w.conf;
                    self.words += 1;
                    self.push_word(w.word);
                }
            }
            // No word details (nothing heard).
            CompleteResult::Single(single) => single
                .text
                .split_whitespace()
                .filter(|w| !is_marker(w))
                .for_each(|w| self.push_word(w)),
            // Only with alternatives, which free-form recognizers do not
            // ask for: the best one, without confidences.
            CompleteResult::Multiple(multiple) => {
                if let Some(best) = multiple.alternatives.first() {
                    best.text
                        .split_whitespace()
                        .filter(|w| !is_marker(w))
                        .for_each(|w| self.push_word(w));
                }
            }
        }
    }

    fn heard(self) -> Heard {
        let confidence = if self.words == 0 {
            0.0
        } else {
            self.conf_sum / self.words as f32
        };
        Heard {
            text: self.text,
            confidence,
        }
    }
}

/// How a recognizer's results become [`Heard`].
#[derive(Debug, Clone)]
enum Mode {
    Free,
    /// The listed phrases (normalised, without `[unk]`).
    Phrases(Vec<String>),
}

impl Mode {
    /// `None` when nothing was heard (silence or noise); for phrases,
    /// `Some` with `text == ""` when speech matched no phrase.
    ///
    /// A Vosk "grammar" is a bigram language model over the phrases' words,
    /// so its best hypothesis may mix phrases ("영업부 연결"). Grammar
    /// recognizers return the n-best list instead: the first alternative
    /// that is a whole listed phrase wins, and its confidence is its share
    /// of the alternatives' likelihood (softmax of the lattice scores; the
    /// shares of every alternative with that text are added).
    fn heard(&self, result: CompleteResult<'_>) -> Option<Heard> {
        let phrases = match self {
            Mode::Free => {
                let mut c = Collect::default();
                c.add(result);
                let heard = c.heard();
                return (!heard.text.is_empty()).then_some(heard);
            }
            Mode::Phrases(phrases) => phrases,
        };
        let normalise = |text: &str| {
            text.split_whitespace()
                .filter(|w| !is_marker(w))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let alternatives: Vec<(String, f32)> = match result {
            CompleteResult::Multiple(multiple) => {
                let first_is_silence = multiple
                    .alternatives
                    .first()
                    .is_none_or(|a| a.text.trim().is_empty());
                if first_is_silence {
                    return None;
                }
                multiple
                    .alternatives
                    .iter()
                    .map(|a| (normalise(a.text), a.confidence))
                    .collect()
            }
            // Alternatives were not given (cannot happen with our
            // settings): the single text, with its words' mean confidence.
            CompleteResult::Single(single) => {
                if single.text.trim().is_empty() {
                    return None;
                }
                let words: Vec<f32> = single
                    .result
                    .iter()
                    .filter(|w| !is_marker(w.word))
                    .map(|w| w.conf)
                    .collect();
                let conf = if words.is_empty() {
                    0.0
                } else {
                    words.iter().sum::<f32>() / words.len() as f32
                };
                let text = normalise(single.text);
                return Some(if phrases.contains(&text) {
                    Heard {
                        text,
                        confidence: conf,
                    }
                } else {
                    Heard::default()
                });
            }
        };
        let top = alternatives
            .iter()
            .map(|(_, score)| *score)
            .fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f64> = alternatives
            .iter()
            .map(|(_, score)| f64::from(score - top).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let chosen = alternatives.iter().find(|(text, _)| phrases.contains(text));
        tracing::debug!(
            best = alternatives.first().map(|a| a.0.as_str()),
            chosen = chosen.map(|a| a.0.as_str()),
            "grammar result"
        );
        let Some((text, _)) = chosen else {
            return Some(Heard::default());
        };
        let share: f64 = alternatives
            .iter()
            .zip(&weights)
            .filter(|((t, _), _)| t == text)
            .map(|(_, w)| w)
            .sum();
        Some(Heard {
            text: text.clone(),
            confidence: (share / total) as f32,
        })
    }
}

/// The sample rate a model's features are computed at: `--sample-frequency`
/// in `conf/mfcc.conf`, else [`DEFAULT_MODEL_RATE`].
pub fn model_rate(model_dir: &Path) -> u32 {
    std::fs::read_to_string(model_dir.join("conf/mfcc.conf"))
        .ok()
        .and_then(|conf| {
            conf.lines().find_map(|line| {
                let value = line.trim().strip_prefix("--sample-frequency=")?;
                value.trim().parse::<f64>().ok()
            })
        })
        .filter(|rate| *rate >= 1.0 && *rate <= 1e6)
        .map_or(DEFAULT_MODEL_RATE, |rate| rate as u32)
}

/// Keeps libvosk to warnings and errors (it logs every model file it reads
/// at the default level).
fn quiet_libvosk() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| vosk::set_log_level(vosk::LogLevel::Warn));
}

/// A loaded Vosk model and the recognizers that share it.
pub struct Asr {
    /// Warm free-form recognizers at `feed_rate`, words enabled. (Declared
    /// before the model, so dropped first; libvosk reference-counts the
    /// model anyway.)
    pool: Mutex<Vec<Recognizer>>,
    pool_size: usize,
    /// Written only by [`Asr::unknown_words`] for words not yet in `vocab`:
    /// the vosk crate's `find_word` wants `&mut` (libvosk's lookup itself
    /// is read-only). Readers hold it while creating a recognizer (1 ms
    /// with a grammar, 70 ms free-form).
    model: RwLock<Model>,
    /// Words already looked up: known or not.
    vocab: Mutex<HashMap<String, bool>>,
    model_dir: PathBuf,
    /// The model's rate.
    rate: u32,
    /// The rate recognizers are created at: the model's when it is a whole
    /// multiple of 8 kHz (we upsample), else 8 kHz (libvosk resamples).
    feed_rate: u32,
    /// Whether the model has `[unk]` (added to grammars so that other
    /// speech is not forced onto a phrase).
    knows_unk: bool,
    /// Threads streams run on.
    workers: workers::Workers,
}

impl std::fmt::Debug for Asr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asr")
            .field("model_dir", &self.model_dir)
            .field("rate", &self.rate)
            .field("feed_rate", &self.feed_rate)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl Asr {
    /// Loads the model (1-3 s and about 500 MB for a small model; blocking:
    /// call it from `spawn_blocking`) and creates `pool` free-form
    /// recognizers (about 70 ms each) to keep. A recognizer's first
    /// utterances run 3-5 times slower than later ones (its share of the
    /// decoding graph is expanded lazily and cached), which is why they are
    /// pooled rather than created per call.
    pub fn load(model_dir: &Path, pool: usize) -> Result<Arc<Asr>, AsrError> {
        if !model_dir.is_dir() {
            return Err(AsrError::NoModel(model_dir.to_path_buf()));
        }
        let path = model_dir
            .to_str()
            .ok_or_else(|| AsrError::NonUtf8Path(model_dir.to_path_buf()))?;
        quiet_libvosk();
        let mut model =
            Model::new(path).ok_or_else(|| AsrError::ModelLoad(model_dir.to_path_buf()))?;
        let knows_unk = model.find_word(UNK).is_some();
        let rate = model_rate(model_dir);
        let feed_rate = if rate >= CALL_RATE && rate.is_multiple_of(CALL_RATE) {
            rate
        } else {
            CALL_RATE
        };
        let asr = Asr {
            pool: Mutex::new(Vec::with_capacity(pool)),
            pool_size: pool,
            model: RwLock::new(model),
            vocab: Mutex::new(HashMap::new()),
            model_dir: model_dir.to_path_buf(),
            rate,
            feed_rate,
            knows_unk,
            workers: workers::Workers::new("asr-stream"),
        };
        let warm = (0..pool)
            .map(|_| asr.new_free_form())
            .collect::<Result<Vec<_>, _>>()?;
        *asr.pool() = warm;
        tracing::info!(
            model_dir = %model_dir.display(),
            rate,
            pool,
            "speech recognition model loaded"
        );
        Ok(Arc::new(asr))
    }

    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }

    /// The model's sample rate (from `conf/mfcc.conf`, default 16 kHz).
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// The shared model, for code that drives libvosk itself (the
    /// benchmark's side-by-side baseline). Hold the guard briefly.
    pub fn model(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Free-form recognizers waiting in the pool.
    pub fn pooled(&self) -> usize {
        self.pool().len()
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Recognizer>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Words of `phrases` the model cannot recognize (in the order first
    /// met, each once). A grammar silently ignores such words, so flows
    /// should be checked with this when they are saved. Answers are
    /// cached; a word not met before takes the model's write lock, which
    /// can wait for a recognizer being created (up to about 70 ms).
    pub fn unknown_words(&self, phrases: &[String]) -> Vec<String> {
        let mut seen = HashSet::new();
        let words: Vec<&str> = phrases
            .iter()
            .flat_map(|p| p.split_whitespace())
            .filter(|w| *w != UNK && seen.insert(*w))
            .collect();
        let mut vocab = self.vocab.lock().unwrap_or_else(|e| e.into_inner());
        if words.iter().any(|w| !vocab.contains_key(*w)) {
            if vocab.len() + words.len() > VOCAB_CACHE {
                vocab.clear();
            }
            let mut model = self.model.write().unwrap_or_else(|e| e.into_inner());
            for word in &words {
                if !vocab.contains_key(*word) {
                    let known = model.find_word(word).is_some();
                    vocab.insert(word.to_string(), known);
                }
            }
        }
        words
            .into_iter()
            .filter(|w| vocab.get(*w) == Some(&false))
            .map(str::to_string)
            .collect()
    }

    /// Checks a phrase list and turns it into a Vosk grammar: whitespace
    /// collapsed, duplicates and blank phrases dropped, `[unk]` added when
    /// the model has it.
    pub fn grammar(&self, phrases: &[String]) -> Result<Vec<String>, AsrError> {
        let mut grammar: Vec<String> = Vec::with_capacity(phrases.len() + 1);
        for phrase in phrases {
            if phrase.contains(['"', '\\']) {
                return Err(AsrError::BadPhrase(phrase.clone()));
            }
            let phrase = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
            if !phrase.is_empty() && !grammar.contains(&phrase) {
                grammar.push(phrase);
            }
        }
        if grammar.is_empty() {
            return Err(AsrError::EmptyGrammar);
        }
        let unknown = self.unknown_words(&grammar);
        if !unknown.is_empty() {
            return Err(AsrError::UnknownWords(unknown));
        }
        if self.knows_unk && !grammar.iter().any(|p| p == UNK) {
            grammar.push(UNK.to_string());
        }
        Ok(grammar)
    }

    fn new_free_form(&self) -> Result<Recognizer, AsrError> {
        let mut rec =
            Recognizer::new(&self.model(), self.feed_rate as f32).ok_or(AsrError::Recognizer {
                kind: "free-form",
                rate: self.feed_rate,
            })?;
        rec.set_words(true);
        Ok(rec)
    }

    fn new_grammar(&self, grammar: &[String]) -> Result<Recognizer, AsrError> {
        let mut rec = Recognizer::new_with_grammar(&self.model(), self.feed_rate as f32, grammar)
            .ok_or(AsrError::Recognizer {
            kind: "grammar",
            rate: self.feed_rate,
        })?;
        rec.set_max_alternatives(ALTERNATIVES);
        Ok(rec)
    }

    /// A free-form recognizer from the pool, or a new one (70 ms: call on a
    /// blocking thread).
    fn take_free_form(&self) -> Result<Recognizer, AsrError> {
        match self.pool().pop() {
            Some(rec) => Ok(rec),
            None => self.new_free_form(),
        }
    }

    fn give_back(&self, mut rec: Recognizer) {
        rec.reset();
        let mut pool = self.pool();
        if pool.len() < self.pool_size {
            pool.push(rec);
        }
    }

    fn upsampler(&self) -> Option<Upsampler> {
        (self.feed_rate != CALL_RATE)
            .then(|| Upsampler::for_rates(CALL_RATE, self.feed_rate))
            .flatten()
    }

    /// Starts recognizing live 8 kHz audio on a thread of its own.
    /// `phrases`: `Some` restricts recognition to those phrases (refused
    /// with [`AsrError::BadPhrase`], [`AsrError::EmptyGrammar`] or
    /// [`AsrError::UnknownWords`]); `None` is free-form.
    pub fn stream(self: &Arc<Self>, phrases: Option<Vec<String>>) -> Result<Stream, AsrError> {
        let grammar = phrases.map(|p| self.grammar(&p)).transpose()?;
        let (audio_tx, audio_rx) = mpsc::channel(QUEUE_FRAMES);
        let (utterance_tx, utterance_rx) = mpsc::unbounded_channel();
        let (last_tx, last_rx) = oneshot::channel();
        let asr = Arc::clone(self);
        self.workers
            .run(move || asr.run_stream(grammar, audio_rx, utterance_tx, last_tx))
            .map_err(AsrError::Thread)?;
        Ok(Stream {
            audio: audio_tx,
            utterances: utterance_rx,
            last: last_rx,
            dropped: AtomicU64::new(0),
        })
    }

    /// A stream's thread: feeds frames until the sender goes, sending each
    /// endpointed utterance with words, then the final result.
    fn run_stream(
        &self,
        grammar: Option<Vec<String>>,
        mut audio: mpsc::Receiver<Vec<i16>>,
        utterances: mpsc::UnboundedSender<Heard>,
        last: oneshot::Sender<Heard>,
    ) {
        let (started, mode) = match &grammar {
            Some(grammar) => {
                let phrases = grammar.iter().filter(|p| *p != UNK).cloned().collect();
                (self.new_grammar(grammar), Mode::Phrases(phrases))
            }
            None => (self.take_free_form(), Mode::Free),
        };
        let mut rec = match started {
            Ok(rec) => rec,
            Err(error) => {
                tracing::error!(%error, "speech recognition stream could not start");
                return;
            }
        };
        let mut up = self.upsampler();
        let mut buf = Vec::new();
        let mut failed = false;
        while let Some(frame) = audio.blocking_recv() {
            let samples = match &mut up {
                Some(up) => {
                    buf.clear();
                    up.process(&frame, &mut buf);
                    &buf[..]
                }
                None => &frame[..],
            };
            match rec.accept_waveform(samples) {
                Ok(DecodingState::Running) => {}
                Ok(DecodingState::Finalized) => {
                    if let Some(heard) = mode.heard(rec.result()) {
                        let _ = utterances.send(heard);
                    }
                }
                Ok(DecodingState::Failed) | Err(_) => {
                    tracing::warn!("Vosk failed to decode call audio; recognition stopped");
                    failed = true;
                    break;
                }
            }
        }
        let result = if failed {
            None
        } else {
            mode.heard(rec.final_result())
        };
        // Results are sent before the final one, so `finish` sees them all.
        drop(utterances);
        let _ = last.send(result.unwrap_or_default());
        if grammar.is_none() && !failed {
            self.give_back(rec);
        }
    }

    /// Transcribes a whole 8 kHz recording free-form on the blocking pool.
    pub async fn transcribe(self: &Arc<Self>, pcm8k: Vec<i16>) -> Result<Heard, AsrError> {
        let asr = Arc::clone(self);
        tokio::task::spawn_blocking(move || asr.transcribe_blocking(&pcm8k))
            .await
            .map_err(|e| AsrError::Task(e.to_string()))?
    }

    /// [`Asr::transcribe`] on the calling thread (blocking).
    pub fn transcribe_blocking(&self, pcm8k: &[i16]) -> Result<Heard, AsrError> {
        let mut rec = self.take_free_form()?;
        let mut up = self.upsampler();
        let mut buf = Vec::new();
        let mut all = Collect::default();
        for chunk in pcm8k.chunks(TRANSCRIBE_CHUNK) {
            let samples = match &mut up {
                Some(up) => {
                    buf.clear();
                    up.process(chunk, &mut buf);
                    &buf[..]
                }
                None => chunk,
            };
            match rec.accept_waveform(samples) {
                Ok(DecodingState::Running) => {}
                Ok(DecodingState::Finalized) => all.add(rec.result()),
                // The recognizer is dropped, not pooled.
                Ok(DecodingState::Failed) | Err(_) => return Err(AsrError::Decode),
            }
        }
        all.add(rec.final_result());
        self.give_back(rec);
        Ok(all.heard())
    }
}

/// Live recognition of one call leg (see [`Asr::stream`]). Dropping it stops
/// the recognizer.
pub struct Stream {
    audio: mpsc::Sender<Vec<i16>>,
    utterances: mpsc::UnboundedReceiver<Heard>,
    last: oneshot::Receiver<Heard>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Queues 8 kHz samples (any length; 20 ms frames of 160 usually).
    /// Never blocks: when the recognizer is [`QUEUE_FRAMES`] behind, the
    /// frame is dropped and counted ([`Stream::dropped`]).
    pub fn push(&self, pcm8k: &[i16]) {
        if pcm8k.is_empty() {
            return;
        }
        match self.audio.try_send(pcm8k.to_vec()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n,
                        "speech recognizer is behind: audio frames dropped"
                    );
                }
            }
            // The recognizer stopped (it failed and said so).
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Frames dropped because the recognizer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The next utterance Vosk endpointed (speech then silence: 0.5 s to
    /// 2 s by the model's rules); a later call waits for the next one.
    /// Endpoints where nothing was heard are skipped. With phrases, the text
    /// is one of them, or `""` for speech that matched none (no match).
    /// `None` when the recognizer stopped (it failed to start or to decode;
    /// logged). Cancel-safe.
    pub async fn utterance(&mut self) -> Option<Heard> {
        self.utterances.recv().await
    }

    /// Ends the audio and waits for what was fed to be recognized: the
    /// first endpointed utterance not yet taken with
    /// [`Stream::utterance`] if there is one, else the final result of the
    /// audio since the last endpoint (`""` when nothing was heard or, with
    /// phrases, nothing matched).
    pub async fn finish(self) -> Heard {
        let Stream {
            audio,
            mut utterances,
            last,
            ..
        } = self;
        drop(audio);
        let last = last.await.unwrap_or_default();
        utterances.try_recv().unwrap_or(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::OnceLock;
    use std::time::Duration;

    const MENU: [&str; 3] = ["상담원 연결", "영업부", "고객 지원"];
    /// espeak-ng speeds (words per minute) tried for each phrase: its Korean
    /// is robotic and the small model hears some phrases only at some
    /// speeds (measured: 상담원 연결 at 140 and 170, 영업부 and 고객 지원 at
    /// 170; at 140 고객 지원 is heard as 영업부).
    const SPEEDS: [u32; 2] = [140, 170];

    fn model_dir() -> PathBuf {
        std::env::var_os("SWITCHBOARD_TEST_VOSK_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/vosk/model-ko"))
    }

    /// The model, loaded once for all tests (1-3 s, 500 MB).
    fn asr() -> Arc<Asr> {
        static ASR: OnceLock<Arc<Asr>> = OnceLock::new();
        ASR.get_or_init(|| {
            let dir = model_dir();
            assert!(
                dir.join("am").is_dir(),
                "no Vosk model at {}: run scripts/setup-vosk.sh (or set SWITCHBOARD_TEST_VOSK_MODEL to a Vosk model folder)",
                dir.display()
            );
            Asr::load(&dir, 2).expect("load the test model")
        })
        .clone()
    }

    /// `text` spoken by espeak-ng (Korean, `speed` words per minute) as
    /// 8 kHz mono, with `before` and `after` seconds of silence around it.
    fn speech(text: &str, speed: u32, before: f64, after: f64) -> Vec<i16> {
        for tool in ["espeak-ng", "sox"] {
            let found = Command::new(tool).arg("--version").output().is_ok();
            assert!(
                found,
                "{tool} is missing: the speech tests need it (apt-get install espeak-ng sox)"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("raw.wav");
        let out = dir.path().join("8k.wav");
        let status = Command::new("espeak-ng")
            .args(["-v", "ko", "-s", &speed.to_string(), "-w"])
            .arg(&raw)
            .arg(text)
            .status()
            .expect("run espeak-ng");
        assert!(status.success(), "espeak-ng failed for {text:?}");
        let status = Command::new("sox")
            .arg(&raw)
            .args(["-r", "8000", "-c", "1", "-b", "16"])
            .arg(&out)
            .status()
            .expect("run sox");
        assert!(status.success(), "sox failed");
        let audio = crate::media::wav::load(&out).expect("read the 8 kHz WAV");
        let mut samples = vec![0i16; (before * 8000.0) as usize];
        samples.extend_from_slice(&audio.samples);
        samples.extend(std::iter::repeat_n(0i16, (after * 8000.0) as usize));
        // A line's noise floor (about -60 dBFS, the same every run), as the
        // benchmark adds: on digital silence Kaldi's random dither alone
        // decides, and the same audio could be heard differently run to run.
        let mut seed: u32 = 0x5eed_1234;
        for s in &mut samples {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *s = s.saturating_add(((seed >> 16) % 61) as i16 - 30);
        }
        samples
    }

    fn phrases(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|p| p.to_string()).collect())
    }

    /// Pushes `samples` in 20 ms frames.
    fn feed(stream: &Stream, samples: &[i16]) {
        for frame in samples.chunks(160) {
            stream.push(frame);
        }
    }

    /// The next utterance. Generous: a cold free-form recognizer on a
    /// loaded 2-core machine (the whole suite runs beside it) is slow.
    async fn next(stream: &mut Stream) -> Option<Heard> {
        tokio::time::timeout(Duration::from_secs(90), stream.utterance())
            .await
            .expect("an utterance within 90 s")
    }

    #[tokio::test]
    async fn grammar_stream_recognizes_the_spoken_phrase() {
        let asr = asr();
        let mut recognized = HashSet::new();
        for phrase in MENU {
            for speed in SPEEDS {
                let audio = speech(phrase, speed, 0.3, 1.5);
                let mut stream = asr.stream(phrases(&MENU)).unwrap();
                feed(&stream, &audio);
                let heard = next(&mut stream).await.expect("an utterance");
                eprintln!("said {phrase:?} at {speed}, heard {heard:?}");
                assert_eq!(stream.dropped(), 0);
                // Always a listed phrase or a no match.
                assert!(heard.text.is_empty() || MENU.contains(&heard.text.as_str()));
                assert!((0.0..=1.0).contains(&heard.confidence), "{heard:?}");
                if heard.text == phrase {
                    assert!(heard.confidence > 0.0, "{heard:?}");
                    recognized.insert(phrase);
                }
            }
        }
        assert!(
            recognized.len() >= 2,
            "only {recognized:?} of {MENU:?} recognized"
        );
    }

    #[tokio::test]
    async fn utterances_come_one_after_another() {
        let asr = asr();
        let mut stream = asr.stream(phrases(&MENU)).unwrap();
        feed(&stream, &speech("상담원 연결", 140, 0.3, 1.5));
        feed(&stream, &speech("고객 지원", 170, 0.0, 1.5));
        assert_eq!(next(&mut stream).await.unwrap().text, "상담원 연결");
        assert_eq!(next(&mut stream).await.unwrap().text, "고객 지원");
        // Nothing else was said.
        assert_eq!(stream.finish().await, Heard::default());
    }

    #[tokio::test]
    async fn finish_returns_what_was_fed_without_an_endpoint() {
        let asr = asr();
        let stream = asr.stream(phrases(&MENU)).unwrap();
        // No trailing silence: Vosk has not endpointed yet.
        feed(&stream, &speech("상담원 연결", 140, 0.3, 0.0));
        let heard = stream.finish().await;
        assert_eq!(heard.text, "상담원 연결");
        // An endpointed utterance not taken is what finish returns.
        let stream = asr.stream(phrases(&MENU)).unwrap();
        feed(&stream, &speech("고객 지원", 170, 0.3, 1.5));
        assert_eq!(stream.finish().await.text, "고객 지원");
        // Silence only.
        let stream = asr.stream(phrases(&MENU)).unwrap();
        feed(&stream, &[0; 16000]);
        assert_eq!(stream.finish().await, Heard::default());
    }

    #[tokio::test]
    async fn a_wrong_grammar_does_not_yield_the_spoken_phrase() {
        let asr = asr();
        let audio = speech("상담원 연결", 140, 0.3, 1.5);
        let right = {
            let stream = asr.stream(phrases(&MENU)).unwrap();
            feed(&stream, &audio);
            stream.finish().await
        };
        let wrong = {
            let stream = asr.stream(phrases(&["영업부", "고객 지원"])).unwrap();
            feed(&stream, &audio);
            stream.finish().await
        };
        eprintln!("right grammar: {right:?}, wrong grammar: {wrong:?}");
        assert_eq!(right.text, "상담원 연결");
        assert_ne!(wrong.text, "상담원 연결");
        assert!(
            ["", "영업부", "고객 지원"].contains(&wrong.text.as_str()),
            "{wrong:?}"
        );
    }

    #[tokio::test]
    async fn free_form_stream_and_pool() {
        let asr = asr();
        let stream = asr.stream(None).unwrap();
        feed(&stream, &speech("상담원 연결", 140, 0.3, 1.5));
        // What was fed, whether or not the recognizer saw the utterance end
        // (free-form endpointing on synthetic speech is not dependable).
        let heard = tokio::time::timeout(Duration::from_secs(90), stream.finish())
            .await
            .expect("the stream finishes within 90 s");
        eprintln!("free-form stream heard {heard:?}");
        assert!(!heard.text.is_empty());
        assert!(
            !heard.text.contains('['),
            "marker words are dropped: {heard:?}"
        );
        // The recognizer goes back to the pool (at most `pool` kept).
        for _ in 0..100 {
            if asr.pooled() >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!((1..=2).contains(&asr.pooled()));
    }

    #[tokio::test]
    async fn transcribe_hears_speech_and_not_silence() {
        let asr = asr();
        let audio = speech(
            "안녕하세요 고객 지원 센터입니다 무엇을 도와드릴까요",
            140,
            0.5,
            1.0,
        );
        let heard = asr.transcribe(audio).await.unwrap();
        eprintln!("transcribed {heard:?}");
        assert!(!heard.text.is_empty(), "{heard:?}");
        assert!(heard.confidence > 0.0 && heard.confidence <= 1.0);
        let silence = asr.transcribe(vec![0; 8000 * 3]).await.unwrap();
        assert_eq!(silence, Heard::default());
        assert!(asr.pooled() <= 2);
    }

    #[tokio::test]
    async fn push_never_blocks_and_counts_what_it_drops() {
        let asr = asr();
        let stream = asr.stream(phrases(&MENU)).unwrap();
        let frame = [0i16; 160];
        let start = std::time::Instant::now();
        // 100 s of audio at once: far more than the queue holds.
        for _ in 0..5000 {
            stream.push(&frame);
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(stream.dropped() > 0);
        assert!(stream.dropped() <= 5000 - QUEUE_FRAMES as u64);
        drop(stream);
    }

    #[test]
    fn unknown_words_are_named() {
        let asr = asr();
        let list = |l: &[&str]| l.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert!(asr.unknown_words(&list(&MENU)).is_empty());
        assert_eq!(
            asr.unknown_words(&list(&["상담원 qzxvbnk", "qzxvbnk 연결", "뷁뷁뷁"])),
            ["qzxvbnk", "뷁뷁뷁"]
        );
        let err = asr.stream(phrases(&["상담원 qzxvbnk"])).unwrap_err();
        assert!(matches!(err, AsrError::UnknownWords(_)));
        assert_eq!(
            err.to_string(),
            "the speech model does not know the word \"qzxvbnk\""
        );
    }

    #[test]
    fn bad_phrase_lists_are_refused() {
        let asr = asr();
        for bad in ["상담원 \"연결", "영업부\\"] {
            let err = asr.stream(phrases(&[bad])).unwrap_err();
            assert!(matches!(err, AsrError::BadPhrase(_)), "{err}");
        }
        assert!(matches!(
            asr.stream(phrases(&[" ", ""])).unwrap_err(),
            AsrError::EmptyGrammar
        ));
        assert_eq!(
            asr.grammar(&[
                "  상담원   연결 ".into(),
                "영업부".into(),
                "상담원 연결".into()
            ])
            .unwrap(),
            ["상담원 연결", "영업부"]
        );
    }

    #[test]
    fn a_missing_or_broken_model_is_a_clear_error() {
        let err = Asr::load(Path::new("/nonexistent/vosk-model"), 1).unwrap_err();
        assert!(matches!(err, AsrError::NoModel(_)));
        assert!(
            err.to_string()
                .starts_with("no Vosk model at /nonexistent/vosk-model (asr.model_dir)"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = Asr::load(empty.path(), 1).unwrap_err();
        assert!(matches!(err, AsrError::ModelLoad(_)), "{err}");
        assert!(err.to_string().contains("asr.model_dir"));
    }

    #[test]
    fn model_rate_comes_from_mfcc_conf() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(model_rate(dir.path()), DEFAULT_MODEL_RATE);
        std::fs::create_dir(dir.path().join("conf")).unwrap();
        std::fs::write(
            dir.path().join("conf/mfcc.conf"),
            "--use-energy=false\n--sample-frequency=8000\n",
        )
        .unwrap();
        assert_eq!(model_rate(dir.path()), 8000);
        assert_eq!(model_rate(&model_dir()), 16000);
    }

    /// Phrase choice from an n-best list (no model needed).
    #[test]
    fn the_first_whole_phrase_in_the_n_best_list_wins() {
        let mode = Mode::Phrases(MENU.iter().map(|p| p.to_string()).collect());
        let json = |s: &str| s.to_string();
        let pick = |raw: String| mode.heard(serde_json::from_str(&raw).unwrap());
        // Best hypothesis mixes phrases; the second is a phrase.
        let heard = pick(json(
            r#"{"alternatives":[{"text":"영업부 연결","confidence":102.3},{"text":"상담원 연결","confidence":102.3},{"text":"연결","confidence":90.0}]}"#,
        ))
        .unwrap();
        assert_eq!(heard.text, "상담원 연결");
        assert!((heard.confidence - 0.5).abs() < 0.01, "{heard:?}");
        // No phrase among them: a no match.
        let heard = pick(json(
            r#"{"alternatives":[{"text":"상담원 지원 지원","confidence":114.2}]}"#,
        ));
        assert_eq!(heard, Some(Heard::default()));
        // Silence: nothing heard.
        assert_eq!(
            pick(json(r#"{"alternatives":[{"text":"","confidence":150.0}]}"#)),
            None
        );
        // Free-form: markers dropped, confidences averaged.
        let heard = Mode::Free
            .heard(
                serde_json::from_str(
                    r#"{"result":[{"conf":1.0,"start":0,"end":1,"word":"[2]"},{"conf":0.5,"start":1,"end":2,"word":"남"},{"conf":0.7,"start":2,"end":3,"word":"였다"}],"text":"[2] 남 였다"}"#,
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(heard.text, "남 였다");
        assert!((heard.confidence - 0.6).abs() < 1e-6);
    }
}
