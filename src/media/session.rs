//! One call leg's media on real sockets: [`RtpSession`].
//!
//! A session binds an RTP socket on an even port from a configured range
//! and its RTCP socket on the next port (RFC 3550 port+1; RTCP that a peer
//! multiplexes onto the RTP port is accepted too). It sends to the address
//! the SDP gave until RTP arrives, then to where RTP comes from (symmetric
//! RTP). Its tasks, all tracked and stopped by [`RtpSession::close`]:
//! - the receiver: parses RTP (anything else is counted and ignored), orders
//!   packets in a jitter buffer, decodes G.711 to 8 kHz PCM, reports RFC 4733
//!   digits (and in-band digits while no telephone-event was seen),
//!   speech/silence transitions and inactivity as [`MediaEvent`]s, feeds the
//!   recorder, and relays to a bridged leg;
//! - RTCP: a sender or receiver report with SDES every `rtcp_interval`, and
//!   reading the peer's reports;
//! - playback of one prompt at a time, paced by a 20 ms interval;
//! - the recorder while recording (one frame per 20 ms tick, so the file's
//!   length is the wall time, with silence where nothing arrived).
//!
//! Nothing received from the network can panic it: every parse is checked,
//! and bad datagrams only increment [`Stats::ignored`].

use super::dtmf::{self, Digit, DtmfDetector, DtmfReceiver};
use super::energy::EnergyDetector;
use super::g711::Law;
use super::jitter::{JitterBuffer, JitterStats, PacketMeta};
use super::prompt::Prompt;
use super::rtcp::{self, ReceiverReport, RtcpPacket, SenderReport};
use super::rtp::{self, RtpPacket};
use super::wav::{Layout, Recorder, WavError};
use std::collections::VecDeque;
use std::io::BufWriter;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Samples (and timestamp units) per 20 ms packet at 8 kHz.
pub const FRAME: usize = 160;
const PTIME: Duration = Duration::from_millis(20);
/// Largest datagram we accept; anything longer is counted and ignored.
const MAX_DATAGRAM: usize = 2048;
/// Most audio a recording leg buffers ahead of the recording clock (300 ms).
const RECORD_BACKLOG: usize = 2400;

/// Tasks of every session still running, process-wide (a leak shows here).
static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Media tasks running in this process, across all sessions.
pub fn live_tasks() -> usize {
    LIVE_TASKS.load(Ordering::SeqCst)
}

struct TaskGuard;

impl TaskGuard {
    fn new() -> Self {
        LIVE_TASKS.fetch_add(1, Ordering::SeqCst);
        TaskGuard
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("no free RTP/RTCP port pair in {0:?}")]
    NoFreePort(RangeInclusive<u16>),
    #[error("media socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wav(#[from] WavError),
    #[error("the session is closed")]
    Closed,
}

/// What one leg negotiated and how it behaves.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Local address to bind.
    pub bind: IpAddr,
    /// Ports to take the RTP port from (an even port; RTCP on the next).
    pub ports: RangeInclusive<u16>,
    /// The negotiated audio codec (PCMU 0 or PCMA 8).
    pub codec: Law,
    /// Payload type of telephone-event, when negotiated (101 usually).
    pub telephone_event: Option<u8>,
    /// Where the SDP says to send RTP, until RTP arrives from elsewhere.
    pub remote: Option<SocketAddr>,
    /// No RTP for this long raises [`MediaEvent::Inactive`].
    pub inactivity: Duration,
    pub rtcp_interval: Duration,
    /// Packets the jitter buffer holds waiting for a missing one.
    pub jitter_depth: usize,
    /// RTCP CNAME.
    pub cname: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            ports: 20000..=29999,
            codec: Law::Ulaw,
            telephone_event: Some(101),
            remote: None,
            inactivity: Duration::from_secs(30),
            rtcp_interval: Duration::from_secs(5),
            jitter_depth: 5,
            cname: "switchboard".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    Rfc4733,
    Inband,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    Dtmf {
        digit: Digit,
        source: DtmfSource,
    },
    /// The far end started talking.
    Speech,
    /// The far end went quiet.
    Silence,
    /// No RTP for the configured time (raised once per quiet spell).
    Inactive,
}

/// A snapshot of one leg's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Datagrams that were not RTP or RTCP we accept, or carried a payload
    /// type that was not negotiated.
    pub ignored: u64,
    pub rtcp_in: u64,
    pub rtcp_out: u64,
    /// Events dropped because nobody read the event channel.
    pub events_dropped: u64,
    pub lost: i64,
    pub late: u64,
    pub duplicates: u64,
    /// Interarrival jitter, milliseconds.
    pub jitter_ms: f64,
}

#[derive(Default)]
struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    /// Payload octets sent (what an SR counts).
    payload_out: AtomicU64,
    ignored: AtomicU64,
    rtcp_in: AtomicU64,
    rtcp_out: AtomicU64,
    events_dropped: AtomicU64,
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// Outgoing stream state, shared by playback, DTMF and bridge relay.
struct Tx {
    ssrc: u32,
    /// Next sequence number.
    seq: u16,
    /// Timestamp of the next packet if it follows the last one without a gap.
    ts: u32,
    /// Timestamp and time of the last packet sent (for talkspurts and SR).
    last: Option<(u32, Instant)>,
}

impl Tx {
    /// Starts a talkspurt: the timestamp jumps by the time since the last
    /// packet, so the far end's playout sees the pause.
    fn begin_spurt(&mut self, now: Instant) {
        if let Some((last_ts, at)) = self.last {
            let elapsed = (now - at).as_micros() as u64 * 8 / 1000;
            let gap = elapsed.saturating_sub(FRAME as u64) / FRAME as u64 * FRAME as u64;
            let ts = last_ts.wrapping_add(FRAME as u32).wrapping_add(gap as u32);
            // Never step back (a relayed stream may have run ahead).
            if (ts.wrapping_sub(self.ts) as i32) > 0 {
                self.ts = ts;
            }
        }
    }

    /// The RTP timestamp that corresponds to `now`.
    fn ts_at(&self, now: Instant) -> u32 {
        match self.last {
            Some((ts, at)) => ts.wrapping_add(((now - at).as_micros() as u64 * 8 / 1000) as u32),
            None => self.ts,
        }
    }
}

/// Receive-side state, owned by the receive task, read by stats and RTCP.
struct Rx {
    jitter: JitterBuffer<(u8, Vec<u8>)>,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    source_ssrc: Option<u32>,
}

/// Two legs' audio waiting for the recording clock.
struct RecordQueues {
    rx: VecDeque<i16>,
    tx: VecDeque<i16>,
}

impl RecordQueues {
    fn push(queue: &mut VecDeque<i16>, samples: &[i16]) {
        queue.extend(samples.iter().copied());
        if queue.len() > RECORD_BACKLOG {
            let excess = queue.len() - RECORD_BACKLOG;
            queue.drain(..excess);
        }
    }
}

/// Stops a running recording; its task answers with the samples written.
type RecorderStop = (CancellationToken, oneshot::Receiver<Result<u64, WavError>>);

/// Relay of this leg's incoming RTP to a bridged leg, with the mapping of
/// sequence numbers and timestamps into the other leg's outgoing stream.
pub(crate) struct Relay {
    pub(crate) to: Weak<Inner>,
    pub(crate) map: Option<RelayMap>,
}

#[derive(Clone, Copy)]
pub(crate) struct RelayMap {
    in_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

struct Sockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

pub(crate) struct Inner {
    config: SessionConfig,
    /// Dropped by `close`, so the ports are free even while handles live.
    sockets: Mutex<Option<Arc<Sockets>>>,
    local: SocketAddr,
    started: Instant,
    cancel: CancellationToken,
    tasks: TaskTracker,
    counters: Counters,
    events: mpsc::Sender<MediaEvent>,
    tx: Mutex<Tx>,
    rx: Mutex<Rx>,
    /// Where RTP goes: the SDP address, then the latched source.
    remote: Mutex<Option<SocketAddr>>,
    latched: AtomicBool,
    rtcp_latched: AtomicBool,
    remote_rtcp: Mutex<Option<SocketAddr>>,
    playback: Mutex<Option<CancellationToken>>,
    recording: Mutex<Option<RecordQueues>>,
    recorder_stop: Mutex<Option<RecorderStop>>,
    relay: Mutex<Option<Relay>>,
    /// A copy of the decoded incoming audio (speech recognition, messages).
    tap: Mutex<Option<mpsc::Sender<Vec<i16>>>>,
    /// The source RTP is latched to, and when it last sent.
    source: Mutex<Option<(SocketAddr, Instant)>>,
    /// On hold: no RTP expected (inactivity is not reported).
    held: AtomicBool,
    /// The far end does not want our media (sendonly/inactive hold).
    mute: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One call leg's media. Dropping it stops its tasks; [`close`](Self::close)
/// also waits for them, so the ports are free when it returns.
pub struct RtpSession {
    inner: Arc<Inner>,
    events: Mutex<Option<mpsc::Receiver<MediaEvent>>>,
}

/// How a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayOutcome {
    Finished,
    /// Stopped on demand (barge-in), by another prompt, or by closing the session.
    Stopped,
}

/// A prompt being played.
pub struct Playback {
    cancel: CancellationToken,
    done: oneshot::Receiver<PlayOutcome>,
}

impl Playback {
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Waits for the end of the prompt (or its stop).
    pub async fn wait(self) -> PlayOutcome {
        self.done.await.unwrap_or(PlayOutcome::Stopped)
    }
}

async fn bind_pair(config: &SessionConfig) -> Result<(UdpSocket, UdpSocket), SessionError> {
    let (lo, hi) = (*config.ports.start(), *config.ports.end());
    let first = lo + (lo & 1);
    if hi <= first {
        return Err(SessionError::NoFreePort(config.ports.clone()));
    }
    let pairs = (hi - first) as u32 / 2;
    if pairs == 0 {
        return Err(SessionError::NoFreePort(config.ports.clone()));
    }
    // Start at a random pair so concurrent sessions rarely collide.
    let start = rand::random::<u32>() % pairs;
    for i in 0..pairs {
        let port = first + (((start + i) % pairs) * 2) as u16;
        let Ok(rtp) = UdpSocket::bind((config.bind, port)).await else {
            continue;
        };
        if let Ok(rtcp) = UdpSocket::bind((config.bind, port + 1)).await {
            return Ok((rtp, rtcp));
        }
    }
    Err(SessionError::NoFreePort(config.ports.clone()))
}

impl RtpSession {
    /// Binds the sockets and starts receiving and reporting.
    pub async fn start(config: SessionConfig) -> Result<RtpSession, SessionError> {
        let (rtp, rtcp) = bind_pair(&config).await?;
        let local = rtp.local_addr()?;
        let (events_tx, events_rx) = mpsc::channel(256);
        let inner = Arc::new(Inner {
            sockets: Mutex::new(Some(Arc::new(Sockets { rtp, rtcp }))),
            local,
            started: Instant::now(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            counters: Counters::default(),
            events: events_tx,
            tx: Mutex::new(Tx {
                ssrc: rand::random(),
                seq: rand::random(),
                ts: rand::random(),
                last: None,
            }),
            rx: Mutex::new(Rx {
                jitter: JitterBuffer::new(config.jitter_depth),
                last_sr: None,
                source_ssrc: None,
            }),
            remote: Mutex::new(config.remote),
            latched: AtomicBool::new(false),
            rtcp_latched: AtomicBool::new(false),
            remote_rtcp: Mutex::new(config.remote.map(rtcp_of)),
            playback: Mutex::new(None),
            recording: Mutex::new(None),
            tap: Mutex::new(None),
            recorder_stop: Mutex::new(None),
            source: Mutex::new(None),
            held: AtomicBool::new(false),
            mute: AtomicBool::new(false),
            relay: Mutex::new(None),
            config,
        });
        let i = inner.clone();
        inner.spawn(receive_loop(i));
        let i = inner.clone();
        inner.spawn(rtcp_loop(i));
        Ok(RtpSession {
            inner,
            events: Mutex::new(Some(events_rx)),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The RTP address (RTCP is on the next port).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    pub fn codec(&self) -> Law {
        self.inner.config.codec
    }

    pub fn ssrc(&self) -> u32 {
        lock(&self.inner.tx).ssrc
    }

    /// Where RTP is sent now.
    pub fn remote(&self) -> Option<SocketAddr> {
        *lock(&self.inner.remote)
    }

    /// A new SDP address (re-INVITE); symmetric latching starts over.
    pub fn set_remote(&self, addr: Option<SocketAddr>) {
        *lock(&self.inner.remote) = addr;
        *lock(&self.inner.remote_rtcp) = addr.map(rtcp_of);
        self.inner.latched.store(false, Ordering::SeqCst);
        self.inner.rtcp_latched.store(false, Ordering::SeqCst);
    }

    /// Hold (re-INVITE): while `held` no RTP is expected from the far end
    /// (inactivity is not reported); while `mute` nothing is sent to it
    /// (its offer was sendonly or inactive).
    pub fn set_hold(&self, held: bool, mute: bool) {
        self.inner.held.store(held, Ordering::SeqCst);
        self.inner.mute.store(mute, Ordering::SeqCst);
    }

    /// Whether the far end put this leg on hold.
    pub fn is_held(&self) -> bool {
        self.inner.held.load(Ordering::SeqCst)
    }

    /// The event stream; there is one, so the second call gets `None`.
    pub fn take_events(&self) -> Option<mpsc::Receiver<MediaEvent>> {
        lock(&self.events).take()
    }

    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Tasks of this session still running.
    pub fn running_tasks(&self) -> usize {
        self.inner.tasks.len()
    }

    /// Plays a prompt, stopping any prompt already playing.
    pub fn play(&self, prompt: Arc<Prompt>) -> Result<Playback, SessionError> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return Err(SessionError::Closed);
        }
        let cancel = inner.cancel.child_token();
        if let Some(old) = lock(&inner.playback).replace(cancel.clone()) {
            old.cancel();
        }
        let (done_tx, done) = oneshot::channel();
        let i = inner.clone();
        let c = cancel.clone();
        inner.spawn(async move {
            let outcome = play_loop(&i, &prompt, &c).await;
            let _ = done_tx.send(outcome);
        });
        Ok(Playback { cancel, done })
    }

    /// Stops the prompt playing, if any (barge-in).
    pub fn stop_playback(&self) {
        if let Some(c) = lock(&self.inner.playback).take() {
            c.cancel();
        }
    }

    /// Sends digits as RFC 4733 events (each `duration_ms` long, 20 ms
    /// packets, `gap_ms` between digits); returns when the last end packet
    /// is sent. Characters that are not DTMF keys are skipped.
    pub async fn send_dtmf(
        &self,
        digits: &str,
        duration_ms: u32,
        gap_ms: u64,
    ) -> Result<(), SessionError> {
        let inner = &self.inner;
        let Some(pt) = inner.config.telephone_event else {
            return Ok(());
        };
        let mut tick = tokio::time::interval(PTIME);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        for digit in digits.chars().filter_map(Digit::from_char) {
            tick.tick().await;
            let start_ts = {
                let mut tx = lock(&inner.tx);
                tx.begin_spurt(Instant::now());
                tx.ts
            };
            let packets = dtmf::event_packets(digit, start_ts, duration_ms * 8, FRAME as u32, 10);
            for p in packets {
                tokio::select! {
                    _ = inner.cancel.cancelled() => return Err(SessionError::Closed),
                    _ = tick.tick() => {}
                }
                inner.send_event(pt, p.marker, p.timestamp, &p.payload);
            }
            tokio::select! {
                _ = inner.cancel.cancelled() => return Err(SessionError::Closed),
                _ = tokio::time::sleep(Duration::from_millis(gap_ms)) => {}
            }
        }
        Ok(())
    }

    /// Records both directions to a WAV file: what the far end sends on the
    /// left (or mixed), what this leg sends on the right. One 20 ms frame is
    /// written per tick of the recording clock, silence where no audio came.
    pub fn start_recording(&self, path: &Path, layout: Layout) -> Result<(), SessionError> {
        let inner = &self.inner;
        if inner.cancel.is_cancelled() {
            return Err(SessionError::Closed);
        }
        let mut stop = lock(&inner.recorder_stop);
        if stop.is_some() {
            return Ok(());
        }
        let recorder = Recorder::create(path, layout)?;
        *lock(&inner.recording) = Some(RecordQueues {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
        });
        let cancel = inner.cancel.child_token();
        let (done_tx, done_rx) = oneshot::channel();
        let i = inner.clone();
        let c = cancel.clone();
        inner.spawn(async move {
            let r = record_loop(&i, recorder, &c).await;
            *lock(&i.recording) = None;
            let _ = done_tx.send(r);
        });
        *stop = Some((cancel, done_rx));
        Ok(())
    }

    /// Sends a copy of each decoded incoming frame (8 kHz, 20 ms) to `tap`
    /// (frames are dropped when it is full); `None` stops.
    pub fn set_tap(&self, tap: Option<mpsc::Sender<Vec<i16>>>) {
        *lock(&self.inner.tap) = tap;
    }

    /// Stops recording and closes the file; returns the samples per channel written.
    pub async fn stop_recording(&self) -> Result<u64, SessionError> {
        let Some((cancel, done)) = lock(&self.inner.recorder_stop).take() else {
            return Ok(0);
        };
        cancel.cancel();
        match done.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(SessionError::Closed),
        }
    }

    /// Stops every task (finishing a recording) and waits for them, so the
    /// sockets are released when this returns.
    pub async fn close(&self) {
        let inner = &self.inner;
        if let Some(relay) = lock(&inner.relay).take()
            && let Some(peer) = relay.to.upgrade()
        {
            lock(&peer.relay).take();
        }
        let stop = lock(&inner.recorder_stop).take();
        inner.cancel.cancel();
        if let Some((_, done)) = stop {
            let _ = done.await;
        }
        inner.tasks.close();
        inner.tasks.wait().await;
        lock(&inner.sockets).take();
    }
}

impl Drop for RtpSession {
    fn drop(&mut self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
    }
}

fn rtcp_of(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port().wrapping_add(1))
}

impl Inner {
    fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let guard = TaskGuard::new();
        self.tasks.spawn(async move {
            let _guard = guard;
            fut.await
        });
    }

    pub(crate) fn set_relay(&self, relay: Option<Relay>) {
        *lock(&self.relay) = relay;
    }

    /// Stops relaying, if the relay goes to `to` (or to a leg that is gone).
    pub(crate) fn clear_relay_to(&self, to: &Weak<Inner>) {
        let mut r = lock(&self.relay);
        if r.as_ref()
            .is_some_and(|r| r.to.ptr_eq(to) || r.to.strong_count() == 0)
        {
            *r = None;
        }
    }

    pub(crate) fn codec(&self) -> Law {
        self.config.codec
    }

    pub(crate) fn telephone_event(&self) -> Option<u8> {
        self.config.telephone_event
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let j: JitterStats = lock(&self.rx).jitter.stats();
        Stats {
            packets_in: c.packets_in.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            packets_out: c.packets_out.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
            rtcp_in: c.rtcp_in.load(Ordering::Relaxed),
            rtcp_out: c.rtcp_out.load(Ordering::Relaxed),
            events_dropped: c.events_dropped.load(Ordering::Relaxed),
            lost: j.lost(),
            late: j.late,
            duplicates: j.duplicates,
            jitter_ms: j.jitter / 8.0,
        }
    }

    fn emit(&self, event: MediaEvent) {
        if self.events.try_send(event).is_err() {
            bump(&self.counters.events_dropped, 1);
        }
    }

    fn send_datagram(&self, bytes: &[u8], payload_len: usize) {
        if self.mute.load(Ordering::Relaxed) {
            return;
        }
        let Some(to) = *lock(&self.remote) else {
            return;
        };
        let sent = match lock(&self.sockets).as_ref() {
            // A full socket buffer drops the packet, as the network would.
            Some(s) => s.rtp.try_send_to(bytes, to).is_ok(),
            None => false,
        };
        if sent {
            bump(&self.counters.packets_out, 1);
            bump(&self.counters.bytes_out, bytes.len() as u64);
            bump(&self.counters.payload_out, payload_len as u64);
        }
    }

    /// Sends one audio frame of our own (playback), numbering it.
    fn send_audio(&self, marker: bool, payload: &[u8], pcm: &[i16]) {
        let now = Instant::now();
        let bytes = {
            let mut tx = lock(&self.tx);
            if marker {
                tx.begin_spurt(now);
            }
            let mut p = RtpPacket::new(
                self.config.codec.payload_type(),
                tx.seq,
                tx.ts,
                tx.ssrc,
                payload,
            );
            p.marker = marker;
            let bytes = p.to_bytes().unwrap_or_default();
            tx.last = Some((tx.ts, now));
            tx.seq = tx.seq.wrapping_add(1);
            tx.ts = tx.ts.wrapping_add(FRAME.max(pcm.len()) as u32);
            bytes
        };
        self.send_datagram(&bytes, payload.len());
        self.record_tx(pcm);
    }

    /// Sends one telephone-event packet at the given (event start) timestamp.
    fn send_event(&self, pt: u8, marker: bool, timestamp: u32, payload: &[u8; 4]) {
        let now = Instant::now();
        let bytes = {
            let mut tx = lock(&self.tx);
            let mut p = RtpPacket::new(pt, tx.seq, timestamp, tx.ssrc, payload);
            p.marker = marker;
            let bytes = p.to_bytes().unwrap_or_default();
            tx.seq = tx.seq.wrapping_add(1);
            // The stream's clock runs on while the event lasts.
            let now_ts = tx.ts_at(now);
            tx.last = Some((now_ts, now));
            tx.ts = now_ts.wrapping_add(FRAME as u32);
            bytes
        };
        self.send_datagram(&bytes, payload.len());
    }

    /// Sends a relayed packet from a bridged leg, mapped into this leg's
    /// stream (our SSRC; the source's sequence and timestamp spacing kept).
    pub(crate) fn send_relayed(
        &self,
        map: &mut Option<RelayMap>,
        src: &RtpPacket<'_>,
        payload_type: u8,
        payload: &[u8],
    ) {
        let now = Instant::now();
        let bytes = {
            let mut tx = lock(&self.tx);
            let m = match *map {
                Some(m) if m.in_ssrc == src.ssrc => m,
                _ => {
                    tx.begin_spurt(now);
                    let m = RelayMap {
                        in_ssrc: src.ssrc,
                        seq_offset: tx.seq.wrapping_sub(src.sequence),
                        ts_offset: tx.ts.wrapping_sub(src.timestamp),
                    };
                    *map = Some(m);
                    m
                }
            };
            let seq = src.sequence.wrapping_add(m.seq_offset);
            let ts = src.timestamp.wrapping_add(m.ts_offset);
            let mut p = RtpPacket::new(payload_type, seq, ts, tx.ssrc, payload);
            p.marker = src.marker;
            let bytes = p.to_bytes().unwrap_or_default();
            if rtp::seq_newer(seq, tx.seq.wrapping_sub(1)) {
                tx.seq = seq.wrapping_add(1);
            }
            if (ts.wrapping_sub(tx.ts) as i32) >= 0 {
                let len = if Some(payload_type) == self.config.telephone_event {
                    FRAME
                } else {
                    payload.len()
                };
                tx.ts = ts.wrapping_add(len as u32);
                tx.last = Some((ts, now));
            }
            bytes
        };
        self.send_datagram(&bytes, payload.len());
        if Some(payload_type) != self.config.telephone_event {
            let mut pcm = Vec::with_capacity(payload.len());
            self.config.codec.decode(payload, &mut pcm);
            self.record_tx(&pcm);
        }
    }

    fn record_tx(&self, pcm: &[i16]) {
        if let Some(q) = lock(&self.recording).as_mut() {
            RecordQueues::push(&mut q.tx, pcm);
        }
    }

    fn record_rx(&self, pcm: &[i16]) {
        if let Some(q) = lock(&self.recording).as_mut() {
            RecordQueues::push(&mut q.rx, pcm);
        }
    }

    /// Arrival time in 8 kHz timestamp units since the session started.
    fn arrival(&self) -> u32 {
        ((Instant::now() - self.started).as_micros() as u64 * 8 / 1000) as u32
    }
}

/// Per-stream analysis state of the receive task.
struct Analysis {
    dtmf: DtmfReceiver,
    inband: DtmfDetector,
    telephone_events_seen: bool,
    energy: EnergyDetector,
    pcm: Vec<i16>,
}

async fn receive_loop(inner: Arc<Inner>) {
    let Some(sockets) = lock(&inner.sockets).clone() else {
        return;
    };
    // One byte more than we accept, so a longer datagram shows as truncated.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut analysis = Analysis {
        dtmf: DtmfReceiver::new(),
        inband: DtmfDetector::default(),
        telephone_events_seen: false,
        energy: EnergyDetector::default(),
        pcm: Vec::with_capacity(FRAME * 2),
    };
    let mut rtcp_buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut last_rtp = Instant::now();
    let mut inactive_reported = false;
    loop {
        let deadline = last_rtp + inner.config.inactivity;
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tokio::time::sleep_until(deadline), if !inactive_reported => {
                if inner.held.load(Ordering::SeqCst) {
                    last_rtp = Instant::now();
                    continue;
                }
                inactive_reported = true;
                let frames = lock(&inner.rx).jitter.drain();
                for f in frames {
                    handle_frame(&inner, &mut analysis, f.timestamp, f.item);
                }
                inner.emit(MediaEvent::Inactive);
            }
            r = sockets.rtp.recv_from(&mut buf) => {
                // Errors (ICMP port unreachable reported on Linux) are not fatal.
                let Ok((n, from)) = r else { continue };
                if n > MAX_DATAGRAM {
                    bump(&inner.counters.ignored, 1);
                    continue;
                }
                if on_rtp_datagram(&inner, &mut analysis, &buf[..n], from) {
                    last_rtp = Instant::now();
                    inactive_reported = false;
                }
            }
            r = sockets.rtcp.recv_from(&mut rtcp_buf) => {
                let Ok((n, from)) = r else { continue };
                if n > MAX_DATAGRAM {
                    bump(&inner.counters.ignored, 1);
                    continue;
                }
                on_rtcp(&inner, &rtcp_buf[..n], from);
            }
        }
    }
}

/// Handles one datagram on the RTP port; true when it was RTP we accept.
/// How long a latched RTP source must be silent before another takes over.
const RELATCH_AFTER: Duration = Duration::from_secs(2);

fn on_rtp_datagram(
    inner: &Arc<Inner>,
    analysis: &mut Analysis,
    datagram: &[u8],
    from: SocketAddr,
) -> bool {
    if rtp::looks_like_rtcp(datagram) {
        on_rtcp(inner, datagram, from);
        return false;
    }
    let Ok(packet) = RtpPacket::parse(datagram) else {
        bump(&inner.counters.ignored, 1);
        return false;
    };
    let pt = packet.payload_type;
    let audio = pt == inner.config.codec.payload_type();
    let event = Some(pt) == inner.config.telephone_event;
    if !audio && !event {
        bump(&inner.counters.ignored, 1);
        return false;
    }
    if event && packet.payload.len() < 4 {
        bump(&inner.counters.ignored, 1);
        return false;
    }
    // Symmetric RTP: the first source is the peer. Another source is
    // ignored (no injected audio or digits) unless the peer has been silent
    // for RELATCH_AFTER (its NAT binding moved): then it takes over.
    let now = Instant::now();
    {
        let mut source = lock(&inner.source);
        let relatch = match *source {
            Some((addr, _)) if addr == from => false,
            Some((_, last)) if inner.latched.load(Ordering::SeqCst) => {
                if now.duration_since(last) < RELATCH_AFTER {
                    bump(&inner.counters.ignored, 1);
                    return false;
                }
                true
            }
            _ => true,
        };
        *source = Some((from, now));
        if relatch || !inner.latched.swap(true, Ordering::SeqCst) {
            inner.latched.store(true, Ordering::SeqCst);
            *lock(&inner.remote) = Some(from);
            if !inner.rtcp_latched.load(Ordering::SeqCst) {
                *lock(&inner.remote_rtcp) = Some(rtcp_of(from));
            }
        }
    }
    bump(&inner.counters.packets_in, 1);
    bump(&inner.counters.bytes_in, datagram.len() as u64);
    relay(inner, &packet, audio);

    let meta = PacketMeta {
        ssrc: packet.ssrc,
        sequence: packet.sequence,
        timestamp: packet.timestamp,
    };
    let arrival = inner.arrival();
    let frames = {
        let mut rx = lock(&inner.rx);
        rx.source_ssrc = Some(packet.ssrc);
        rx.jitter.push(meta, arrival, (pt, packet.payload.to_vec()));
        let mut frames = Vec::new();
        while let Some(f) = rx.jitter.pop() {
            frames.push(f);
        }
        frames
    };
    for f in frames {
        handle_frame(inner, analysis, f.timestamp, f.item);
    }
    true
}

fn relay(inner: &Arc<Inner>, packet: &RtpPacket<'_>, audio: bool) {
    let mut guard = lock(&inner.relay);
    let Some(relay) = guard.as_mut() else {
        return;
    };
    let Some(peer) = relay.to.upgrade() else {
        *guard = None;
        return;
    };
    if audio {
        let from = inner.config.codec;
        let to = peer.codec();
        if from == to {
            peer.send_relayed(&mut relay.map, packet, to.payload_type(), packet.payload);
        } else {
            let mut codes = packet.payload.to_vec();
            from.transcode_in_place(to, &mut codes);
            peer.send_relayed(&mut relay.map, packet, to.payload_type(), &codes);
        }
    } else if let Some(pt) = peer.telephone_event() {
        peer.send_relayed(&mut relay.map, packet, pt, packet.payload);
    }
}

fn handle_frame(inner: &Inner, a: &mut Analysis, timestamp: u32, (pt, payload): (u8, Vec<u8>)) {
    if Some(pt) == inner.config.telephone_event {
        a.telephone_events_seen = true;
        if let Some(press) = a.dtmf.on_payload(timestamp, &payload) {
            inner.emit(MediaEvent::Dtmf {
                digit: press.digit,
                source: DtmfSource::Rfc4733,
            });
        }
        return;
    }
    a.pcm.clear();
    inner.config.codec.decode(&payload, &mut a.pcm);
    inner.record_rx(&a.pcm);
    if let Some(tap) = lock(&inner.tap).as_ref() {
        // A slow reader loses audio rather than holding up the call.
        let _ = tap.try_send(a.pcm.clone());
    }
    if !a.telephone_events_seen {
        for d in a.inband.push(&a.pcm) {
            inner.emit(MediaEvent::Dtmf {
                digit: d.digit,
                source: DtmfSource::Inband,
            });
        }
    }
    let before = a.energy.in_speech();
    a.energy.push(&a.pcm);
    match (before, a.energy.in_speech()) {
        (false, true) => inner.emit(MediaEvent::Speech),
        (true, false) => inner.emit(MediaEvent::Silence),
        _ => {}
    }
}

fn on_rtcp(inner: &Inner, datagram: &[u8], from: SocketAddr) {
    let Ok(packets) = rtcp::parse_compound(datagram) else {
        bump(&inner.counters.ignored, 1);
        return;
    };
    bump(&inner.counters.rtcp_in, 1);
    inner.rtcp_latched.store(true, Ordering::SeqCst);
    *lock(&inner.remote_rtcp) = Some(from);
    for p in packets {
        if let RtcpPacket::SenderReport(sr) = p {
            let middle = (sr.ntp_timestamp >> 16) as u32;
            lock(&inner.rx).last_sr = Some((middle, Instant::now()));
        }
    }
}

fn ntp_now() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

async fn rtcp_loop(inner: Arc<Inner>) {
    let period = inner.config.rtcp_interval.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tick.tick() => send_report(&inner),
        }
    }
}

fn send_report(inner: &Inner) {
    let Some(to) = *lock(&inner.remote_rtcp) else {
        return;
    };
    let now = Instant::now();
    let reports = {
        let mut rx = lock(&inner.rx);
        match rx.source_ssrc {
            Some(ssrc) => {
                let mut block = rx.jitter.report_block();
                block.ssrc = ssrc;
                if let Some((middle, at)) = rx.last_sr {
                    block.last_sr = middle;
                    block.delay_since_last_sr = ((now - at).as_micros() as u64 * 65536 / 1_000_000)
                        .min(u32::MAX as u64)
                        as u32;
                }
                vec![block]
            }
            None => Vec::new(),
        }
    };
    let (ssrc, rtp_ts, sent) = {
        let tx = lock(&inner.tx);
        (tx.ssrc, tx.ts_at(now), tx.last.is_some())
    };
    let c = &inner.counters;
    let first = if sent {
        RtcpPacket::SenderReport(SenderReport {
            ssrc,
            ntp_timestamp: ntp_now(),
            rtp_timestamp: rtp_ts,
            packet_count: c.packets_out.load(Ordering::Relaxed) as u32,
            octet_count: c.payload_out.load(Ordering::Relaxed) as u32,
            reports,
        })
    } else {
        RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports })
    };
    let Ok(bytes) = rtcp::build_compound(&[first, rtcp::sdes_cname(ssrc, &inner.config.cname)])
    else {
        return;
    };
    let sent = match lock(&inner.sockets).as_ref() {
        Some(s) => s.rtcp.try_send_to(&bytes, to).is_ok(),
        None => false,
    };
    if sent {
        bump(&inner.counters.rtcp_out, 1);
    }
}

async fn play_loop(inner: &Inner, prompt: &Prompt, cancel: &CancellationToken) -> PlayOutcome {
    let mut tick = tokio::time::interval(PTIME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut payload = Vec::with_capacity(FRAME);
    let mut frame = [0i16; FRAME];
    for (n, chunk) in prompt.samples.chunks(FRAME).enumerate() {
        tokio::select! {
            _ = cancel.cancelled() => return PlayOutcome::Stopped,
            _ = tick.tick() => {}
        }
        frame[..chunk.len()].copy_from_slice(chunk);
        frame[chunk.len()..].fill(0);
        payload.clear();
        inner.config.codec.encode(&frame, &mut payload);
        inner.send_audio(n == 0, &payload, &frame);
    }
    PlayOutcome::Finished
}

async fn record_loop(
    inner: &Inner,
    mut recorder: Recorder<BufWriter<std::fs::File>>,
    cancel: &CancellationToken,
) -> Result<u64, WavError> {
    let mut tick = tokio::time::interval(PTIME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut written = 0u64;
    let (mut a, mut b) = (Vec::with_capacity(FRAME), Vec::with_capacity(FRAME));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        {
            let mut q = lock(&inner.recording);
            let Some(q) = q.as_mut() else { break };
            a.clear();
            b.clear();
            let n = q.rx.len().min(FRAME);
            a.extend(q.rx.drain(..n));
            let n = q.tx.len().min(FRAME);
            b.extend(q.tx.drain(..n));
        }
        a.resize(FRAME, 0);
        b.resize(FRAME, 0);
        recorder.write(&a, &b)?;
        written += FRAME as u64;
    }
    recorder.finish()?;
    Ok(written)
}
