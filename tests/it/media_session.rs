//! Media sessions on real UDP sockets: SIPp's pcaps replayed at a session,
//! prompts made by espeak-ng and sox played to a socket the test reads,
//! bridging with and without transcoding, inactivity, garbage datagrams,
//! and clean shutdown.

use super::media::{Datagram, need, read_pcap, run, snr_db};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use switchboard::media::bridge::Bridge;
use switchboard::media::dtmf::DtmfReceiver;
use switchboard::media::g711::{self, Law};
use switchboard::media::prompt::{Prompt, PromptCache};
use switchboard::media::rtcp::{self, RtcpPacket};
use switchboard::media::rtp::RtpPacket;
use switchboard::media::session::{DtmfSource, MediaEvent, PlayOutcome, RtpSession, SessionConfig};
use switchboard::media::wav::{self, Layout};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const PCAPS: &str = "/usr/share/sip-tester";

fn config(codec: Law) -> SessionConfig {
    SessionConfig {
        codec,
        ports: 30000..=39999,
        ..SessionConfig::default()
    }
}

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends captured datagrams at their capture pacing divided by `speed`.
async fn replay(from: &UdpSocket, to: SocketAddr, datagrams: &[Datagram], speed: f64) {
    let Some(first) = datagrams.first() else {
        return;
    };
    let start = Instant::now();
    for d in datagrams {
        let offset = Duration::from_micros(d.micros - first.micros).div_f64(speed);
        tokio::time::sleep_until(start + offset).await;
        from.send_to(&d.payload, to).await.unwrap();
    }
}

/// Every DTMF pcap in key order, renumbered into one continuous stream (as
/// one sender would send them: sequence and timestamp carry on, 200 ms
/// apart), each digit's packets keeping their own spacing.
fn dtmf_stream() -> (Vec<Datagram>, String) {
    let keys = [
        ("0", '0'),
        ("1", '1'),
        ("2", '2'),
        ("3", '3'),
        ("4", '4'),
        ("5", '5'),
        ("6", '6'),
        ("7", '7'),
        ("8", '8'),
        ("9", '9'),
        ("pound", '#'),
        ("star", '*'),
    ];
    let mut out = Vec::new();
    let (mut seq, mut ts, mut micros) = (1000u16, 8000u32, 0u64);
    for (name, _) in keys {
        let path = Path::new(PCAPS).join(format!("dtmf_2833_{name}.pcap"));
        let packets = read_pcap(&path);
        let first = RtpPacket::parse(&packets[0].payload).unwrap();
        let (s0, t0, m0) = (first.sequence, first.timestamp, packets[0].micros);
        let mut last = (seq, ts, micros);
        for d in &packets {
            let mut bytes = d.payload.clone();
            let p = RtpPacket::parse(&d.payload).unwrap();
            let s = seq.wrapping_add(p.sequence.wrapping_sub(s0));
            let t = ts.wrapping_add(p.timestamp.wrapping_sub(t0));
            bytes[2..4].copy_from_slice(&s.to_be_bytes());
            bytes[4..8].copy_from_slice(&t.to_be_bytes());
            let m = micros + (d.micros - m0);
            last = (s, t, m);
            out.push(Datagram {
                micros: m,
                payload: bytes,
            });
        }
        seq = last.0.wrapping_add(1);
        ts = last.1.wrapping_add(1600);
        micros = last.2 + 200_000;
    }
    (out, keys.iter().map(|k| k.1).collect())
}

/// Events until `until` is true of one, or the time runs out.
async fn events_until(
    rx: &mut mpsc::Receiver<MediaEvent>,
    wait: Duration,
    until: impl Fn(&MediaEvent) -> bool,
) -> Vec<MediaEvent> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while let Ok(Some(e)) = timeout(deadline - Instant::now(), rx.recv()).await {
        let stop = until(&e);
        out.push(e);
        if stop || Instant::now() >= deadline {
            break;
        }
    }
    out
}

fn digits(events: &[MediaEvent]) -> Vec<(char, DtmfSource)> {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Dtmf { digit, source } => Some((digit.as_char(), *source)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_dtmf_pcaps_over_udp_give_every_digit_once() {
    let session = RtpSession::start(config(Law::Alaw)).await.unwrap();
    let mut events = session.take_events().unwrap();
    let (stream, want) = dtmf_stream();
    let sender = socket().await;
    replay(&sender, session.local_addr(), &stream, 4.0).await;
    // Anything more would arrive within a moment of the last packet.
    let got = events_until(&mut events, Duration::from_millis(500), |_| false).await;
    let got = digits(&got);
    let keys: String = got.iter().map(|d| d.0).collect();
    assert_eq!(keys, want, "{got:?}");
    assert!(got.iter().all(|d| d.1 == DtmfSource::Rfc4733));
    let stats = session.stats();
    assert_eq!(stats.packets_in, stream.len() as u64, "{stats:?}");
    assert_eq!(stats.ignored, 0, "{stats:?}");
    assert_eq!(stats.lost, 0, "{stats:?}");
    // Symmetric RTP: the session now sends to the replaying socket.
    assert_eq!(session.remote(), Some(sender.local_addr().unwrap()));
    session.close().await;
    assert_eq!(session.running_tasks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_g711a_pcap_is_counted_and_recorded_at_wall_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("call.wav");
    let session = RtpSession::start(config(Law::Alaw)).await.unwrap();
    let mut events = session.take_events().unwrap();
    let packets = read_pcap(&Path::new(PCAPS).join("g711a.pcap"));
    let sender = socket().await;
    let started = Instant::now();
    session.start_recording(&file, Layout::Stereo).unwrap();
    // Half a second before the caller speaks and after: silence must be kept.
    tokio::time::sleep(Duration::from_millis(500)).await;
    replay(&sender, session.local_addr(), &packets, 1.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = session.stop_recording().await.unwrap();
    let wall = started.elapsed().as_secs_f64();

    let stats = session.stats();
    assert_eq!(stats.packets_in, packets.len() as u64, "{stats:?}");
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert_eq!(stats.late, 0, "{stats:?}");
    assert!(stats.jitter_ms < 10.0, "{stats:?}");

    let audio = wav::load(&file).unwrap();
    assert_eq!(audio.source.channels, 2);
    assert_eq!(audio.samples.len() as u64, written);
    let secs = audio.duration_secs();
    assert!(
        (secs / wall - 1.0).abs() < 0.05,
        "recording {secs:.2} s, call {wall:.2} s"
    );
    // The caller's channel holds the pcap's speech.
    let bytes = std::fs::read(&file).unwrap();
    let left: Vec<i16> = bytes[44..]
        .chunks_exact(4)
        .map(|f| i16::from_le_bytes([f[0], f[1]]))
        .collect();
    let speech: u64 = switchboard::media::energy::analyze(&left)
        .iter()
        .filter(|s| s.kind == switchboard::media::energy::Kind::Speech)
        .map(|s| s.duration_ms())
        .sum();
    assert!(speech >= 1000, "only {speech} ms of speech recorded");
    let got = events_until(&mut events, Duration::from_millis(100), |_| false).await;
    assert!(got.contains(&MediaEvent::Speech), "{got:?}");
    session.close().await;
}

pub(crate) fn espeak_prompt(dir: &Path, text: &str) -> std::path::PathBuf {
    need("espeak-ng");
    need("sox");
    let raw = dir.join("raw.wav");
    run(Command::new("espeak-ng").arg("-w").arg(&raw).arg(text));
    let out = dir.join("prompt.wav");
    run(Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-e", "u-law"])
        .arg(&out));
    out
}

/// Received RTP: arrival time, and the packet's header fields and payload.
struct Got {
    at: Instant,
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

/// Reads RTP from `socket` until nothing comes for `quiet`.
async fn collect(socket: &UdpSocket, quiet: Duration) -> Vec<Got> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) = timeout(quiet, socket.recv(&mut buf)).await {
        let p = RtpPacket::parse(&buf[..n]).expect("the session sends valid RTP");
        out.push(Got {
            at: Instant::now(),
            pt: p.payload_type,
            marker: p.marker,
            seq: p.sequence,
            ts: p.timestamp,
            ssrc: p.ssrc,
            payload: p.payload.to_vec(),
        });
    }
    out
}

fn median_gap_ms(got: &[Got]) -> f64 {
    let mut gaps: Vec<f64> = got
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64() * 1000.0)
        .collect();
    gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
    gaps[gaps.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_play_paced_numbered_and_decodable() {
    let dir = tempfile::tempdir().unwrap();
    let path = espeak_prompt(dir.path(), "Please enter your account number.");
    let cache = PromptCache::new();
    let prompt = cache.get(&path).await.unwrap();
    assert!(Arc::ptr_eq(&prompt, &cache.get(&path).await.unwrap()));
    assert_eq!(cache.len(), 1);

    let far = socket().await;
    let mut cfg = config(Law::Ulaw);
    cfg.remote = Some(far.local_addr().unwrap());
    let session = RtpSession::start(cfg).await.unwrap();
    let playback = session.play(prompt.clone()).unwrap();
    let (outcome, got) = tokio::join!(playback.wait(), collect(&far, Duration::from_millis(300)));
    assert_eq!(outcome, PlayOutcome::Finished);

    let want_packets = prompt.samples.len().div_ceil(160);
    assert_eq!(got.len(), want_packets);
    let median = median_gap_ms(&got);
    assert!((median - 20.0).abs() <= 2.0, "median gap {median:.2} ms");
    // No drift: the whole prompt takes its own length.
    let span = (got.last().unwrap().at - got[0].at).as_secs_f64() * 1000.0;
    let want_span = (want_packets - 1) as f64 * 20.0;
    assert!(
        (span - want_span).abs() < 40.0,
        "{span} ms vs {want_span} ms"
    );
    assert!(got[0].marker && got[1..].iter().all(|g| !g.marker));
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160));
        assert_eq!(w[1].ssrc, w[0].ssrc);
    }
    assert!(got.iter().all(|g| g.pt == 0 && g.ssrc == session.ssrc()));
    // The audio is the prompt, through mu-law.
    let mut sent = Vec::new();
    for g in &got {
        g711::decode_ulaw(&g.payload, &mut sent);
    }
    let mut codes = Vec::new();
    g711::encode_ulaw(&prompt.samples, &mut codes);
    let mut want = Vec::new();
    g711::decode_ulaw(&codes, &mut want);
    assert_eq!(&sent[..want.len()], &want[..]);
    assert!(sent[want.len()..].iter().all(|&s| s.abs() <= 8));

    // A second prompt continues the stream after a pause: next sequence
    // number, timestamp advanced by at least the pause, marker set.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let short = Arc::new(Prompt::from_samples(prompt.samples[..1600].to_vec()));
    let playback = session.play(short).unwrap();
    let (_, second) = tokio::join!(playback.wait(), collect(&far, Duration::from_millis(300)));
    assert_eq!(second.len(), 10);
    let last = got.last().unwrap();
    assert_eq!(second[0].seq, last.seq.wrapping_add(1));
    let advance = second[0].ts.wrapping_sub(last.ts);
    assert!(
        (160 * 10..160 * 40).contains(&advance),
        "ts advanced {advance}"
    );
    assert!(second[0].marker);

    // Barge-in: stopping a prompt stops its packets.
    let playback = session.play(prompt.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    session.stop_playback();
    assert_eq!(playback.wait().await, PlayOutcome::Stopped);
    let third = collect(&far, Duration::from_millis(200)).await;
    assert!((12..=19).contains(&third.len()), "{} packets", third.len());

    // RFC 4733 digits out, read back by our receiver.
    let (sent, got) = tokio::join!(
        session.send_dtmf("12#", 100, 60),
        collect(&far, Duration::from_millis(300))
    );
    sent.unwrap();
    let mut rx = DtmfReceiver::new();
    let keys: String = got
        .iter()
        .filter(|g| g.pt == 101)
        .filter_map(|g| rx.on_payload(g.ts, &g.payload))
        .map(|p| p.digit.as_char())
        .collect();
    assert_eq!(keys, "12#");
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
    }
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_relays_pcma_as_is_and_transcodes_to_pcmu() {
    let packets = read_pcap(&Path::new(PCAPS).join("g711a.pcap"));
    let caller = socket().await;
    let far_a = socket().await;
    let far_u = socket().await;
    let a = RtpSession::start(config(Law::Alaw)).await.unwrap();
    let mut cfg = config(Law::Alaw);
    cfg.remote = Some(far_a.local_addr().unwrap());
    let b = RtpSession::start(cfg).await.unwrap();
    let mut cfg = config(Law::Ulaw);
    cfg.remote = Some(far_u.local_addr().unwrap());
    cfg.telephone_event = Some(96);
    let c = RtpSession::start(cfg).await.unwrap();

    // Same codec: payloads relayed untouched under b's SSRC.
    let bridge = Bridge::connect(&a, &b);
    let (_, got) = tokio::join!(
        replay(&caller, a.local_addr(), &packets, 3.0),
        collect(&far_a, Duration::from_millis(300))
    );
    assert_eq!(got.len(), packets.len());
    for (g, d) in got.iter().zip(&packets) {
        let p = RtpPacket::parse(&d.payload).unwrap();
        assert_eq!(g.payload, p.payload);
        assert_eq!(g.pt, 8);
        assert_eq!(g.ssrc, b.ssrc());
    }
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(240));
    }
    bridge.disconnect();
    // Unbridged, nothing more is relayed.
    let (_, none) = tokio::join!(
        replay(&caller, a.local_addr(), &packets[..10], 3.0),
        collect(&far_a, Duration::from_millis(200))
    );
    assert!(none.is_empty());

    // Different codec: A-law in, mu-law out, within the transcoding bound.
    let _bridge = Bridge::connect(&a, &c);
    let (_, got) = tokio::join!(
        replay(&caller, a.local_addr(), &packets, 3.0),
        collect(&far_u, Duration::from_millis(300))
    );
    assert_eq!(got.len(), packets.len());
    let (mut want, mut heard) = (Vec::new(), Vec::new());
    for (g, d) in got.iter().zip(&packets) {
        assert_eq!(g.pt, 0);
        g711::decode_ulaw(&g.payload, &mut heard);
        g711::decode_alaw(RtpPacket::parse(&d.payload).unwrap().payload, &mut want);
    }
    let snr = snr_db(&want, &heard);
    assert!(snr > 30.0, "A->mu SNR {snr:.1} dB");

    // Telephone-events pass with the other leg's payload type.
    let (dtmf, keys) = dtmf_stream();
    let (_, got) = tokio::join!(
        replay(&caller, a.local_addr(), &dtmf, 4.0),
        collect(&far_u, Duration::from_millis(300))
    );
    let mut rx = DtmfReceiver::new();
    let relayed: String = got
        .iter()
        .filter(|g| g.pt == 96)
        .filter_map(|g| rx.on_payload(g.ts, &g.payload))
        .map(|p| p.digit.as_char())
        .collect();
    assert_eq!(relayed, keys);
    for s in [&a, &b, &c] {
        s.close().await;
        assert_eq!(s.running_tasks(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_on_the_wire_raises_inactive() {
    let mut cfg = config(Law::Alaw);
    cfg.inactivity = Duration::from_millis(400);
    let session = RtpSession::start(cfg).await.unwrap();
    let mut events = session.take_events().unwrap();
    // No RTP at all.
    let got = events_until(&mut events, Duration::from_secs(2), |e| {
        *e == MediaEvent::Inactive
    })
    .await;
    assert_eq!(got, vec![MediaEvent::Inactive]);
    // RTP for a while (no event), then it stops: one more Inactive.
    let packets = read_pcap(&Path::new(PCAPS).join("g711a.pcap"));
    let sender = socket().await;
    let started = Instant::now();
    replay(&sender, session.local_addr(), &packets[..30], 1.0).await;
    let got = events_until(&mut events, Duration::from_secs(2), |e| {
        *e == MediaEvent::Inactive
    })
    .await;
    let after = started.elapsed();
    assert_eq!(got.last(), Some(&MediaEvent::Inactive), "{got:?}");
    assert_eq!(
        got.iter().filter(|e| **e == MediaEvent::Inactive).count(),
        1
    );
    assert!(after >= Duration::from_millis(1200), "{after:?}");
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_counted_and_ignored() {
    let session = RtpSession::start(config(Law::Ulaw)).await.unwrap();
    let rtp_port = session.local_addr();
    let rtcp_port = SocketAddr::new(rtp_port.ip(), rtp_port.port() + 1);
    let sender = socket().await;
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        vec![0x80, 0x00, 0x00],
        // Version 1.
        [&[0x40u8, 0x00][..], &[0u8; 20]].concat(),
        // 15 CSRCs announced, none there.
        [&[0x8Fu8, 0x00][..], &[0u8; 14]].concat(),
        // Extension running past the end.
        [&[0x90u8, 0x00][..], &[0u8; 10], &[0xBE, 0xDE, 0xFF, 0xFF]].concat(),
        // Padding longer than the packet.
        [&[0xA0u8, 0x00][..], &[0u8; 12], &[200]].concat(),
        // A payload type nobody negotiated.
        RtpPacket::new(18, 1, 160, 7, &[0u8; 20])
            .to_bytes()
            .unwrap(),
        // Telephone-event too short to hold an event.
        RtpPacket::new(101, 1, 160, 7, &[1u8, 2])
            .to_bytes()
            .unwrap(),
        // Bigger than any RTP we read.
        vec![0x80; 4000],
    ];
    for n in 0..200usize {
        let len = (rand::random::<u32>() % 400) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        // Keep the random ones from being valid RTP of a negotiated type.
        if let Some(first) = b.first_mut() {
            *first &= 0x3F;
        }
        if n % 2 == 0 {
            b.truncate(11);
        }
        bad.push(b);
    }
    for b in &bad {
        sender.send_to(b, rtp_port).await.unwrap();
    }
    // Random bytes on the RTCP port too.
    let rtcp_garbage = [vec![0u8; 3], vec![0x80, 200, 0xFF, 0xFF], vec![0x40; 40]];
    for b in &rtcp_garbage {
        sender.send_to(b, rtcp_port).await.unwrap();
    }
    // Then real packets: still received.
    let packets = read_pcap(&Path::new(PCAPS).join("g711a.pcap"));
    let mut good = Vec::new();
    for d in &packets[..20] {
        let p = RtpPacket::parse(&d.payload).unwrap();
        let mut q = RtpPacket::new(0, p.sequence, p.timestamp, p.ssrc, p.payload);
        q.marker = p.marker;
        good.push(Datagram {
            micros: d.micros,
            payload: q.to_bytes().unwrap(),
        });
    }
    replay(&sender, rtp_port, &good, 4.0).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while session.stats().packets_in < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = session.stats();
    assert_eq!(stats.packets_in, 20, "{stats:?}");
    // The empty datagram is read as a zero-length one and refused too.
    assert_eq!(
        stats.ignored,
        (bad.len() + rtcp_garbage.len()) as u64,
        "{stats:?}"
    );
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_reports_go_to_the_peer() {
    let mut cfg = config(Law::Ulaw);
    cfg.rtcp_interval = Duration::from_millis(200);
    let far = socket().await;
    cfg.remote = Some(far.local_addr().unwrap());
    let session = RtpSession::start(cfg).await.unwrap();
    let rtcp_peer = socket().await;
    let rtcp_addr = SocketAddr::new(session.local_addr().ip(), session.local_addr().port() + 1);
    // The peer's own receiver report tells the session where RTCP goes.
    let rr = rtcp::build_compound(&[RtcpPacket::ReceiverReport(rtcp::ReceiverReport {
        ssrc: 42,
        reports: vec![],
    })])
    .unwrap();
    rtcp_peer.send_to(&rr, rtcp_addr).await.unwrap();
    let playback = session
        .play(Arc::new(Prompt::from_samples(vec![1000; 8000])))
        .unwrap();
    let mut buf = [0u8; 1500];
    let n = timeout(Duration::from_secs(2), rtcp_peer.recv(&mut buf))
        .await
        .expect("an RTCP report within 2 s")
        .unwrap();
    let packets = rtcp::parse_compound(&buf[..n]).unwrap();
    assert!(
        matches!(&packets[0], RtcpPacket::SenderReport(sr) if sr.ssrc == session.ssrc() && sr.packet_count > 0),
        "{packets:?}"
    );
    if let RtcpPacket::SenderReport(sr) = &packets[0] {
        // Payload octets only, as RFC 3550 counts them.
        // (A packet sent while the report is built may count in one and not yet the other.)
        let octets = sr.packet_count * 160;
        assert!((octets..=octets + 160).contains(&sr.octet_count), "{sr:?}");
    }
    assert!(matches!(
        &packets[1],
        RtcpPacket::Other {
            packet_type: 202,
            ..
        }
    ));
    assert_eq!(session.stats().rtcp_in, 1);
    playback.stop();
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_every_task_and_frees_the_ports() {
    let dir = tempfile::tempdir().unwrap();
    let far = socket().await;
    let mut cfg = config(Law::Ulaw);
    cfg.remote = Some(far.local_addr().unwrap());
    let a = RtpSession::start(cfg.clone()).await.unwrap();
    let b = RtpSession::start(cfg).await.unwrap();
    let _bridge = Bridge::connect(&a, &b);
    a.start_recording(&dir.path().join("a.wav"), Layout::Mixed)
        .unwrap();
    let playback = b
        .play(Arc::new(Prompt::from_samples(vec![500; 80_000])))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(a.running_tasks() >= 3);
    let ports = [a.local_addr(), b.local_addr()];
    let started = Instant::now();
    a.close().await;
    b.close().await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(a.running_tasks(), 0);
    assert_eq!(b.running_tasks(), 0);
    assert_eq!(playback.wait().await, PlayOutcome::Stopped);
    // The recording was closed as a valid file.
    assert!(wav::load(&dir.path().join("a.wav")).is_ok());
    // Both ports of both legs bind again at once.
    for addr in ports {
        UdpSocket::bind(addr).await.unwrap();
        UdpSocket::bind(SocketAddr::new(addr.ip(), addr.port() + 1))
            .await
            .unwrap();
    }
    assert!(
        a.play(Arc::new(Prompt::from_samples(vec![0; 160])))
            .is_err()
    );
}

/// Sends PCM as 20 ms RTP packets of `law`, paced at `speed` times real time.
async fn send_pcm(from: &UdpSocket, to: SocketAddr, law: Law, pcm: &[i16], speed: f64) {
    let mut datagrams = Vec::new();
    for (i, chunk) in pcm.chunks(160).enumerate() {
        let mut codes = Vec::new();
        law.encode(chunk, &mut codes);
        let p = RtpPacket::new(law.payload_type(), i as u16, i as u32 * 160, 99, &codes);
        datagrams.push(Datagram {
            micros: i as u64 * 20_000,
            payload: p.to_bytes().unwrap(),
        });
    }
    replay(from, to, &datagrams, speed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inband_tones_are_digits_until_telephone_events_arrive() {
    use switchboard::media::dtmf::{Digit, tone};
    let mut pcm = vec![0i16; 1600];
    for key in "159#".chars() {
        pcm.extend(tone(Digit::from_char(key).unwrap(), 800, 0.3));
        pcm.extend(std::iter::repeat_n(0, 800));
    }
    let sender = socket().await;
    let session = RtpSession::start(config(Law::Ulaw)).await.unwrap();
    let mut events = session.take_events().unwrap();
    send_pcm(&sender, session.local_addr(), Law::Ulaw, &pcm, 2.0).await;
    let got = events_until(&mut events, Duration::from_millis(300), |_| false).await;
    let got = digits(&got);
    assert_eq!(
        got,
        "159#"
            .chars()
            .map(|c| (c, DtmfSource::Inband))
            .collect::<Vec<_>>()
    );

    // Once telephone-events are seen, tones are no longer taken as digits
    // (a phone sending both must not press every key twice).
    let (dtmf, keys) = dtmf_stream();
    replay(&sender, session.local_addr(), &dtmf, 4.0).await;
    send_pcm(&sender, session.local_addr(), Law::Ulaw, &pcm, 2.0).await;
    let got = events_until(&mut events, Duration::from_millis(300), |_| false).await;
    let got = digits(&got);
    assert!(got.iter().all(|d| d.1 == DtmfSource::Rfc4733), "{got:?}");
    assert_eq!(got.iter().map(|d| d.0).collect::<String>(), keys);
    session.close().await;
}
