//! Media end to end through real calls. The test makes its own PCMU pcap
//! (espeak-ng speech, mu-law by sox, packed here into Ethernet/IPv4/UDP/RTP
//! frames, 20 ms apart) and SIPp calls a number and plays it with
//! `play_pcap_audio`, then SIPp's RFC 2833 digit pcaps; the CDR's packet
//! count, the recording's length and energy and the `dtmf` events are held
//! to what was sent. Then what calls leave behind once hung up (UDP
//! sockets, file descriptors, tokio tasks, heap and RSS over 20 calls), and
//! bad media blasted at one call's RTP port while another call is in
//! progress (the other call's counts, recording and digits intact, no
//! panic, the first call ends cleanly).
//!
//! Heap: this module installs a counting global allocator for the test
//! binary (the system allocator, plus one relaxed atomic add per call), so
//! the bytes live in the test's process can be read exactly; RSS alone is
//! blurred by the allocator's caching. Under nextest each test runs in a
//! process of its own, so `/proc/self` and the counter are this test's.
//! Tasks are counted on the test's runtime, where the server's SIP and
//! media tasks run (actix's HTTP workers have runtimes of their own).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::media::rtp::RtpPacket;

use super::media::{need, read_pcap, run};
use crate::both_backends;
use crate::helpers::*;

const NUMBER: &str = "+442071838750";
const DTMF_PCAPS: &str = "/usr/share/sip-tester";
/// SIPp's digit pcaps hold 10 packets each (start, updates, 3 ends).
const DTMF_PACKETS: u64 = 10;

// ---------------------------------------------------------------------------
// Heap bytes live in this process.

static HEAP_LIVE: AtomicIsize = AtomicIsize::new(0);

struct CountingAlloc;

// SAFETY: every call goes to the system allocator unchanged; only sizes are
// added up.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HEAP_LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP_LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HEAP_LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP_LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn heap_live() -> isize {
    HEAP_LIVE.load(Ordering::Relaxed)
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

// ---------------------------------------------------------------------------
// Settings, numbers, interactions.

fn calls_on(s: &mut switchboard::config::Settings) {
    s.sip.enabled = true;
    s.sip.rtp_bind = "127.0.0.1".parse().unwrap();
    // Apart from the other SIP tests' ranges (they may run at once).
    s.sip.rtp_port_min = 44000;
    s.sip.rtp_port_max = 45999;
}

fn leak_calls(s: &mut switchboard::config::Settings) {
    calls_on(s);
    // Its own range: the test binds the ports its calls used again.
    s.sip.rtp_port_min = 46000;
    s.sip.rtp_port_max = 46999;
}

fn sip_addr(app: &TestApp) -> SocketAddr {
    app.state.sip.expect("SIP is enabled").udp
}

async fn add_number(app: &TestApp) {
    let admin = app.login("admin").await;
    let v = json_ok(app.get("/api/v1/queues", &admin).await, 200).await;
    let queue = v["items"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/api/v1/sip/numbers",
            &admin,
            &json!({ "number": NUMBER, "queue_id": queue }),
        )
        .await;
    json_ok(r, 201).await;
}

async fn voice_interactions(app: &TestApp, admin: &Creds) -> Vec<Value> {
    let v = json_ok(app.get("/api/v1/interactions?limit=100", admin).await, 200).await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["channel"] == "voice")
        .cloned()
        .collect()
}

/// Every event of an interaction, oldest first (paged: a call under attack
/// may have many).
async fn events(app: &TestApp, admin: &Creds, id: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out
            .last()
            .map(|e| format!("&after_seq={}", e["seq"]))
            .unwrap_or_default();
        let page = json_ok(
            app.get(
                &format!("/api/v1/interactions/{id}/events?limit=200{after}"),
                admin,
            )
            .await,
            200,
        )
        .await;
        let page = page.as_array().unwrap().clone();
        let full = page.len() == 200;
        out.extend(page);
        if !full {
            return out;
        }
    }
}

fn event<'a>(evs: &'a [Value], kind: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {evs:?}"))
}

fn digits(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .filter(|e| e["kind"] == "dtmf")
        .map(|e| e["data"]["digit"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `n` voice interactions are closed; returns them with their
/// events.
async fn closed_calls(app: &TestApp, n: usize, secs: u64) -> Vec<(Value, Vec<Value>)> {
    let admin = app.login("admin").await;
    let closed = eventually(secs, &format!("{n} calls closed"), || async {
        let all = voice_interactions(app, &admin).await;
        (all.len() >= n && all.iter().all(|i| i["state"] == "closed")).then_some(all)
    })
    .await;
    let mut out = Vec::new();
    for i in closed {
        let evs = events(app, &admin, i["id"].as_str().unwrap()).await;
        out.push((i, evs));
    }
    out
}

/// The interaction answered that is not one of `known`, and its RTP address.
async fn next_answered(app: &TestApp, known: &[String]) -> (String, SocketAddr) {
    let admin = app.login("admin").await;
    eventually(20, "a new call is answered", || async {
        for i in voice_interactions(app, &admin).await {
            let id = i["id"].as_str().unwrap().to_owned();
            if known.contains(&id) {
                continue;
            }
            let evs = events(app, &admin, &id).await;
            if let Some(a) = evs.iter().find(|e| e["kind"] == "answered") {
                let rtp = a["data"]["rtp"].as_str().unwrap().parse().unwrap();
                return Some((id, rtp));
            }
        }
        None
    })
    .await
}

// ---------------------------------------------------------------------------
// The audio and the pcap.

/// Speech as G.711 mu-law (8 kHz), made by espeak-ng and sox, and the same
/// codes decoded back to PCM by sox: the reference the recording is held to.
pub(crate) struct Speech {
    pub(crate) ulaw: Vec<u8>,
    pcm: Vec<i16>,
}

impl Speech {
    fn packets(&self) -> u64 {
        (self.ulaw.len() / 160) as u64
    }

    fn millis(&self) -> u64 {
        self.packets() * 20
    }
}

fn speech(dir: &Path, text: &str) -> Speech {
    speech_in(dir, None, text)
}

/// [`speech`] in an espeak-ng voice (`ko`, say).
pub(crate) fn speech_in(dir: &Path, voice: Option<&str>, text: &str) -> Speech {
    need("espeak-ng");
    need("sox");
    let wav = dir.join("speech.wav");
    let mut espeak = Command::new("espeak-ng");
    if let Some(v) = voice {
        espeak.args(["-v", v, "-s", "140"]);
    }
    run(espeak.arg("-w").arg(&wav).arg(text));
    let ul = dir.join("speech.ul");
    run(Command::new("sox")
        .arg(&wav)
        .args(["-r", "8000", "-c", "1", "-t", "ul"])
        .arg(&ul));
    let raw = dir.join("speech.s16");
    run(Command::new("sox")
        .args(["-t", "ul", "-r", "8000", "-c", "1"])
        .arg(&ul)
        .args(["-t", "raw", "-e", "signed", "-b", "16", "-L"])
        .arg(&raw));
    let mut ulaw = std::fs::read(&ul).unwrap();
    let pcm: Vec<i16> = std::fs::read(&raw)
        .unwrap()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(pcm.len(), ulaw.len());
    // Whole 20 ms packets only.
    let whole = ulaw.len() / 160 * 160;
    ulaw.truncate(whole);
    let pcm = pcm[..whole].to_vec();
    assert!(whole >= 8000, "espeak-ng made only {whole} samples");
    Speech { ulaw, pcm }
}

/// The Internet checksum (RFC 1071) of the bytes of `parts` in a row;
/// only the last part may have an odd length.
fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for c in part.chunks(2) {
            let word = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += word as u32;
        }
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame holding an IPv4/UDP datagram from 127.0.0.1:`sport`
/// to 127.0.0.1:`dport`, both checksums computed.
fn frame(id: u16, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = ([127u8, 0, 0, 1], [127u8, 0, 0, 1]);
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend(sport.to_be_bytes());
    udp.extend(dport.to_be_bytes());
    udp.extend(udp_len.to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    let mut pseudo = Vec::new();
    pseudo.extend(src);
    pseudo.extend(dst);
    pseudo.extend([0, 17]);
    pseudo.extend(udp_len.to_be_bytes());
    let sum = match inet_checksum(&[&pseudo, &udp]) {
        0 => 0xFFFF,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    let total = 20 + udp_len;
    let mut ip = vec![0x45, 0];
    ip.extend(total.to_be_bytes());
    ip.extend(id.to_be_bytes());
    ip.extend([0x40, 0, 64, 17, 0, 0]);
    ip.extend(src);
    ip.extend(dst);
    let sum = inet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut f = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    f.extend(ip);
    f.extend(udp);
    f
}

/// A classic libpcap file (microsecond timestamps, Ethernet link type) of
/// the codes as PCMU RTP: 160 codes per packet, sequence +1 and timestamp
/// +160 each, captured 20 ms apart, the marker on the first.
fn pcmu_pcap(ulaw: &[u8], ssrc: u32, seq0: u16, ts0: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xA1B2_C3D4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0i32.to_le_bytes()); // GMT offset
    out.extend(0u32.to_le_bytes()); // timestamp accuracy
    out.extend(65535u32.to_le_bytes()); // snapshot length
    out.extend(1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    let t0: u64 = 1_700_000_000 * 1_000_000;
    for (i, codes) in ulaw.chunks(160).enumerate() {
        let mut p = RtpPacket::new(
            0,
            seq0.wrapping_add(i as u16),
            ts0.wrapping_add(i as u32 * 160),
            ssrc,
            codes,
        );
        p.marker = i == 0;
        let f = frame(i as u16, 16384, 6000, &p.to_bytes().unwrap());
        let t = t0 + i as u64 * 20_000;
        out.extend(((t / 1_000_000) as u32).to_le_bytes());
        out.extend(((t % 1_000_000) as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(f);
    }
    out
}

/// Writes the speech's pcap to `path`, after reading it back: every packet
/// PCMU, in sequence, 20 ms apart, the codes in order.
pub(crate) fn write_speech_pcap(path: &Path, speech: &Speech) {
    let (ssrc, seq0, ts0) = (0x5B0A_11CE, 65_500u16, 4_294_960_000u32);
    std::fs::write(path, pcmu_pcap(&speech.ulaw, ssrc, seq0, ts0)).unwrap();
    let back = read_pcap(path);
    assert_eq!(back.len() as u64, speech.packets());
    let mut codes = Vec::new();
    for (i, d) in back.iter().enumerate() {
        let p = RtpPacket::parse(&d.payload).unwrap();
        assert_eq!(
            (p.payload_type, p.ssrc, p.marker),
            (0, ssrc, i == 0),
            "packet {i}"
        );
        assert_eq!(p.sequence, seq0.wrapping_add(i as u16));
        assert_eq!(p.timestamp, ts0.wrapping_add(i as u32 * 160));
        assert_eq!(d.micros - back[0].micros, i as u64 * 20_000);
        codes.extend_from_slice(p.payload);
    }
    assert_eq!(codes, speech.ulaw);
}

fn energy(samples: &[i16]) -> f64 {
    samples.iter().map(|&s| (s as f64).powi(2)).sum()
}

fn speech_ms(samples: &[i16]) -> u64 {
    switchboard::media::energy::analyze(samples)
        .iter()
        .filter(|s| s.kind == switchboard::media::energy::Kind::Speech)
        .map(|s| s.duration_ms())
        .sum()
}

// ---------------------------------------------------------------------------
// SIPp.

pub(crate) enum Step {
    Play(PathBuf),
    Pause(u64),
}

pub(crate) fn digit_pcap(d: &str) -> Step {
    let name = match d {
        "#" => "pound",
        "*" => "star",
        d => d,
    };
    Step::Play(Path::new(DTMF_PCAPS).join(format!("dtmf_2833_{name}.pcap")))
}

/// How long the steps last, in milliseconds (pcaps play in the background).
fn scenario_millis(steps: &[Step]) -> u64 {
    steps
        .iter()
        .map(|s| match s {
            Step::Pause(ms) => *ms,
            Step::Play(_) => 0,
        })
        .sum()
}

/// A UAC: INVITE offering PCMU and telephone-event, ACK, the steps, BYE.
fn uac_scenario(steps: &[Step]) -> String {
    let mut body = String::new();
    for s in steps {
        match s {
            Step::Play(p) => body.push_str(&format!(
                "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n",
                p.display()
            )),
            Step::Pause(ms) => body.push_str(&format!("  <pause milliseconds=\"{ms}\"/>\n")),
        }
    }
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="PCMU caller">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
To: [service] <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

]]></send>
{body}  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
To: [service] <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#
    )
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs SIPp in `dir` placing `calls` calls of `steps`, one at a time.
fn sipp(
    app: &TestApp,
    dir: &Path,
    name: &str,
    steps: &[Step],
    calls: u32,
) -> tokio::task::JoinHandle<std::process::Output> {
    sipp_to(app, dir, name, NUMBER, steps, calls)
}

/// [`sipp`], calling `number`.
pub(crate) fn sipp_to(
    app: &TestApp,
    dir: &Path,
    name: &str,
    number: &str,
    steps: &[Step],
    calls: u32,
) -> tokio::task::JoinHandle<std::process::Output> {
    let scenario = dir.join(format!("{name}.xml"));
    std::fs::write(&scenario, uac_scenario(steps)).unwrap();
    let per_call = scenario_millis(steps) / 1000 + 20;
    let args: Vec<String> = vec![
        sip_addr(app).to_string(),
        "-sf".into(),
        scenario.to_string_lossy().into_owned(),
        "-s".into(),
        number.trim_start_matches('+').into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-mp".into(),
        free_udp_block(10).to_string(),
        "-m".into(),
        calls.to_string(),
        "-l".into(),
        "1".into(),
        "-timeout".into(),
        (per_call * calls as u64).to_string(),
        "-nostdin".into(),
        "-trace_err".into(),
    ];
    let cwd = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .current_dir(&cwd)
            .args(&args)
            .output()
            .expect("sipp runs")
    })
}

pub(crate) fn assert_sipp_ok(out: &std::process::Output, what: &str, dir: &Path) {
    let logs: String = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}\n{logs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// The recording.

struct Recording {
    secs: f64,
    /// The caller's channel.
    left: Vec<i16>,
}

fn recording(app: &TestApp, cdr: &Value) -> Recording {
    let path = app
        .dir
        .path()
        .join(cdr["recording"].as_str().expect("a recording"));
    let wav = std::fs::read(&path).expect("the recording exists");
    assert_eq!(&wav[0..4], b"RIFF");
    let audio = switchboard::media::wav::decode(&wav).expect("a valid WAV");
    assert_eq!(
        (
            audio.source.channels,
            audio.source.sample_rate,
            audio.source.bits
        ),
        (2, 8000, 16),
        "stereo 16-bit 8 kHz"
    );
    let data = wav
        .windows(4)
        .position(|w| w == b"data")
        .expect("a data chunk");
    let len = u32::from_le_bytes(wav[data + 4..data + 8].try_into().unwrap()) as usize;
    let frames = &wav[data + 8..data + 8 + len];
    let left: Vec<i16> = frames
        .chunks_exact(4)
        .map(|f| i16::from_le_bytes([f[0], f[1]]))
        .collect();
    Recording {
        secs: left.len() as f64 / 8000.0,
        left,
    }
}

/// The caller's audio arrived whole: the CDR counts `packets` (+-2), none
/// ignored, and the recording is the call's length with the speech's energy
/// in the caller's channel.
fn assert_audio_intact(app: &TestApp, cdr: &Value, speech: &Speech, packets: u64, call_ms: u64) {
    assert_eq!(cdr["codec"], "PCMU", "{cdr}");
    let got = cdr["packets_in"].as_u64().unwrap();
    assert!(
        got.abs_diff(packets) <= 2,
        "packets in {got}, sent {packets}: {cdr}"
    );
    assert_eq!(
        cdr["bytes_in"].as_u64().unwrap(),
        speech.packets() * 172 + (got - speech.packets()) * 16,
        "bytes in: {cdr}"
    );
    assert_eq!(cdr["ignored"], 0, "{cdr}");
    let rec = recording(app, cdr);
    let want = call_ms as f64 / 1000.0;
    let duration = cdr["duration_secs"].as_f64().unwrap();
    assert!(
        rec.secs > want - 0.2 && rec.secs < want + 2.5,
        "recording {:.2} s, scenario {want:.2} s",
        rec.secs
    );
    assert!(
        (rec.secs - duration).abs() < 0.6,
        "recording {:.2} s, call {duration:.2} s",
        rec.secs
    );
    assert!(
        (cdr["recording_secs"].as_f64().unwrap() - rec.secs).abs() < 0.001,
        "{cdr}"
    );
    // The caller's channel carries the speech: its energy (silence adds
    // none) is the speech's, and so is the time spent talking.
    let (got_e, want_e) = (energy(&rec.left), energy(&speech.pcm));
    let ratio = got_e / want_e;
    let (got_ms, want_ms) = (speech_ms(&rec.left), speech_ms(&speech.pcm));
    eprintln!(
        "recording {:.2} s (scenario {want:.2} s, call {duration:.2} s), energy ratio {ratio:.3}, speech {got_ms} ms of {want_ms} ms",
        rec.secs
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "caller channel energy {got_e:.3e}, sent {want_e:.3e} (ratio {ratio:.3})"
    );
    let rms = (got_e / (speech.pcm.len() as f64)).sqrt();
    assert!(
        rms > 500.0,
        "the caller's channel is near silent (RMS {rms:.0})"
    );
    assert!(
        got_ms as f64 >= want_ms as f64 * 0.8 && got_ms <= want_ms + 400,
        "{got_ms} ms of speech recorded, {want_ms} ms sent"
    );
}

both_backends! {
    async fn a_pcmu_pcap_made_here_arrives_whole_with_its_digits(app) configure(calls_on) {
        add_number(&app).await;
        let dir = tempfile::tempdir().unwrap();
        let speech = speech(
            dir.path(),
            "This is the switchboard media test. One, two, three, four, five.",
        );
        let pcap = dir.path().join("speech.pcap");
        write_speech_pcap(&pcap, &speech);
        // The digits in the order of SIPp's capture (sequence numbers and
        // timestamps grow from one to the next).
        let keys = ["1", "5", "9", "#"];
        let mut steps = vec![Step::Play(pcap), Step::Pause(speech.millis() + 400)];
        for k in keys {
            steps.push(digit_pcap(k));
            steps.push(Step::Pause(600));
        }
        let call_ms = scenario_millis(&steps);
        let out = sipp(&app, dir.path(), "caller", &steps, 1).await.unwrap();
        assert_sipp_ok(&out, "sipp", dir.path());

        let calls = closed_calls(&app, 1, 20).await;
        let (i, evs) = &calls[0];
        assert_eq!(i["subject"], NUMBER);
        let hangup = event(evs, "hangup");
        assert_eq!(hangup["data"]["cause"], "caller_bye", "{hangup}");
        let cdr = &hangup["data"]["cdr"];
        eprintln!("CDR {cdr}");
        assert_audio_intact(&app, cdr, &speech, speech.packets() + DTMF_PACKETS * keys.len() as u64, call_ms);
        assert_eq!(digits(evs), keys, "{evs:?}");
        for e in evs.iter().filter(|e| e["kind"] == "dtmf") {
            assert_eq!(e["data"]["source"], "rfc4733", "{e}");
        }
    }
}

// ---------------------------------------------------------------------------
// What a call leaves behind.

/// This process's open file descriptors, by what they are.
#[derive(Debug, Clone, PartialEq)]
struct Fds {
    total: usize,
    /// Local ports of this process's UDP sockets.
    udp: Vec<u16>,
    tcp: usize,
    /// Files open under the test's data directory, other than the database.
    data_files: Vec<String>,
    /// Everything else, by kind (`pipe`, `anon_inode:[eventpoll]`, files).
    other: BTreeMap<String, usize>,
}

/// Descriptors of the database files: the connection pool opens more
/// connections under load and keeps them (that is not a call's leak).
fn db_fds(f: &Fds) -> usize {
    f.other
        .iter()
        .filter(|(k, _)| k.contains("switchboard.db"))
        .map(|(_, n)| *n)
        .sum()
}

/// Socket inodes to local ports, from `/proc/net/<table>` and `<table>6`.
fn socket_table(table: &str) -> BTreeMap<u64, u16> {
    let mut out = BTreeMap::new();
    for t in [table.to_owned(), format!("{table}6")] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{t}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (cols.get(1), cols.get(9)) else {
                continue;
            };
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, inode.parse()) {
                out.insert(inode, port);
            }
        }
    }
    out
}

fn fds(data_dir: &Path) -> Fds {
    let udp_table = socket_table("udp");
    let tcp_table = socket_table("tcp");
    let mut f = Fds {
        total: 0,
        udp: Vec::new(),
        tcp: 0,
        data_files: Vec::new(),
        other: BTreeMap::new(),
    };
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return f;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue; // the directory's own fd, closed already
        };
        f.total += 1;
        let t = target.to_string_lossy().into_owned();
        if let Some(inode) = t
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            if let Some(port) = udp_table.get(&inode) {
                f.udp.push(*port);
            } else if tcp_table.contains_key(&inode) {
                f.tcp += 1;
            } else {
                *f.other.entry("socket".into()).or_default() += 1;
            }
        } else if target.starts_with(data_dir) && !t.contains("switchboard.db") {
            f.data_files.push(t);
        } else {
            let kind = if t.starts_with("pipe:") {
                "pipe".into()
            } else {
                t
            };
            *f.other.entry(kind).or_default() += 1;
        }
    }
    f.udp.sort_unstable();
    f
}

/// Calls before the baseline.
const WARM_UP: u32 = 2;
/// Heap growth allowed over 20 calls once warm (measured: 30 to 115 KB,
/// none of it growing with more calls). More than 12 KB kept per call
/// exceeds it: a call's decoded audio (32 KB for these 2 s calls), a media
/// task with its receive buffers, jitter buffer and recording queues (its
/// task would show in the task count too); a lost session without its
/// tasks (a few KB) would not.
const HEAP_BOUND: isize = 256 * 1024;
/// RSS is blurred by the allocators (SQLite's page cache, in C, grows with
/// the database: about 200 KB per 10 calls): only gross growth shows.
const RSS_BOUND: i64 = 6 * 1024 * 1024;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// What the process holds when no call is up.
#[derive(Debug)]
struct Baseline {
    fds: Fds,
    tasks: usize,
}

/// Waits until the process is back to `base`: no media task, no more tokio
/// tasks, the same UDP sockets, no more descriptors (TCP aside: HTTP and
/// database pools may open and close connections of their own), no file
/// under the data directory open.
async fn back_to(base: &Baseline, data_dir: &Path, secs: u64, what: &str) {
    let mut last = None;
    let settled = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let now = (
                switchboard::media::session::live_tasks(),
                alive_tasks(),
                fds(data_dir),
            );
            let ok = now.0 == 0
                && now.1 <= base.tasks
                && now.2.udp == base.fds.udp
                && now.2.data_files.is_empty()
                && now.2.total - now.2.tcp - db_fds(&now.2)
                    <= base.fds.total - base.fds.tcp - db_fds(&base.fds);
            last = Some(now);
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{what}: not back to the baseline within {secs} s\nbaseline {base:?}\nnow (media tasks, tasks, fds) {last:?}"
    );
}

both_backends! {
    async fn hung_up_calls_leave_no_socket_task_or_memory(app) configure(leak_calls) {
        add_number(&app).await;
        let data_dir = app.dir.path().to_path_buf();
        let dir = tempfile::tempdir().unwrap();
        let speech = speech(dir.path(), "One, two, three.");
        let pcap = dir.path().join("speech.pcap");
        write_speech_pcap(&pcap, &speech);
        let steps = [
            Step::Play(pcap.clone()),
            Step::Pause(speech.millis() + 200),
            digit_pcap("1"),
            Step::Pause(400),
        ];
        // Two calls first bring up what stays up (database and HTTP pools,
        // SIP transport state).
        let out = sipp(&app, dir.path(), "warm", &steps, WARM_UP).await.unwrap();
        assert_sipp_ok(&out, "the warm-up calls", dir.path());
        let warm: Vec<String> = closed_calls(&app, WARM_UP as usize, 30)
            .await
            .iter()
            .map(|(i, _)| i["id"].as_str().unwrap().to_owned())
            .collect();
        eventually(20, "no media task", || async {
            (switchboard::media::session::live_tasks() == 0).then_some(())
        })
        .await;
        let base = Baseline { fds: fds(&data_dir), tasks: alive_tasks() };
        eprintln!("baseline {base:?}");

        // One call, watched while it is up: the census sees its sockets
        // and tasks (so it would see them left behind).
        let long = [
            Step::Play(pcap.clone()),
            Step::Pause(speech.millis() + 3000),
            digit_pcap("1"),
            Step::Pause(400),
        ];
        let call = sipp(&app, dir.path(), "one", &long, 1);
        let (_, rtp) = next_answered(&app, &warm).await;
        // Its RTP and RTCP sockets, the recording open, the receive, RTCP
        // and recorder tasks.
        eventually(10, "the call's sockets, recording and tasks", || async {
            let f = fds(&data_dir);
            (f.udp.contains(&rtp.port())
                && f.udp.contains(&(rtp.port() + 1))
                && f.data_files.len() == 1
                && switchboard::media::session::live_tasks() >= 3)
                .then_some(())
        })
        .await;
        let tasks_up = alive_tasks();
        assert!(tasks_up > base.tasks, "{tasks_up} tasks during the call, {} before", base.tasks);
        let out = call.await.unwrap();
        assert_sipp_ok(&out, "the call", dir.path());
        let calls = closed_calls(&app, WARM_UP as usize + 1, 20).await;
        back_to(&base, &data_dir, 45, "after one call").await;
        std::net::UdpSocket::bind(rtp).expect("the RTP port can be bound again");
        std::net::UdpSocket::bind(SocketAddr::new(rtp.ip(), rtp.port() + 1)).expect("the RTCP port too");
        for (_, evs) in &calls {
            assert_eq!(event(evs, "hangup")["data"]["cause"], "caller_bye");
        }
        drop(calls);

        // Memory: ten calls more (the heap grows over the first few while
        // caches fill: the statements prepared on each pooled connection,
        // maps' capacity), then 20, one after the other; the heap is read
        // at the same point after each run (calls linger a while in SIP
        // transactions' timers).
        let out = sipp(&app, dir.path(), "ten", &steps, 10).await.unwrap();
        assert_sipp_ok(&out, "10 calls", dir.path());
        closed_calls(&app, WARM_UP as usize + 11, 60).await;
        back_to(&base, &data_dir, 45, "after 10 calls").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (heap0, rss0) = (heap_live(), rss());
        let out = sipp(&app, dir.path(), "twenty", &steps, 20).await.unwrap();
        assert_sipp_ok(&out, "20 calls", dir.path());
        let calls = closed_calls(&app, WARM_UP as usize + 31, 60).await;
        assert_eq!(calls.len(), WARM_UP as usize + 31);
        for (_, evs) in &calls {
            let cdr = &event(evs, "hangup")["data"]["cdr"];
            assert!(cdr["packets_in"].as_u64().unwrap() >= speech.packets(), "{cdr}");
        }
        // The test's own copy of the calls' events is heap too.
        drop(calls);
        back_to(&base, &data_dir, 45, "after 20 calls").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut last = (0, 0);
        let settled = tokio::time::timeout(Duration::from_secs(45), async {
            loop {
                last = (heap_live() - heap0, rss() as i64 - rss0 as i64);
                if last.0 <= HEAP_BOUND && last.1 <= RSS_BOUND {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        eprintln!("over 20 calls: heap {:+} B, RSS {:+} B", last.0, last.1);
        assert!(
            settled.is_ok(),
            "20 calls left {:+} B of heap (bound {HEAP_BOUND}) and {:+} B of RSS (bound {RSS_BOUND})",
            last.0,
            last.1
        );
    }
}

// ---------------------------------------------------------------------------
// Bad media at one call while another is in progress.

/// Records every panic of the process (server tasks included).
fn panics() -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        s.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.to_string());
        previous(info);
    }));
    seen
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    RtpPacket::new(pt, seq, ts, ssrc, payload)
        .to_bytes()
        .unwrap()
}

fn event_payload(code: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [code, ((end as u8) << 7) | (volume & 0x3F), d[0], d[1]]
}

/// Rounds of the blast (20 ms apart); each sends one telephone event.
const BLAST_ROUNDS: u32 = 100;

/// What the blast sent.
#[derive(Debug, Default)]
struct Blast {
    sent: u64,
    /// Datagrams no RTP receiver may take (wrong version, too long, too
    /// short, a payload type not negotiated).
    refusable: u64,
    /// Telephone-event packets, each a possible (spurious) digit.
    events: u64,
}

/// Sends bad media at `target` (an RTP port; RTCP on the next) for about
/// two seconds, paced so that the socket's buffer does not overflow.
fn blast(target: SocketAddr) -> Blast {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtcp = SocketAddr::new(target.ip(), target.port() + 1);
    let mut b = Blast::default();
    let send = |bytes: &[u8], to: SocketAddr, b: &mut Blast| {
        let _ = sock.send_to(bytes, to);
        b.sent += 1;
    };
    let r = |n: usize| -> Vec<u8> { (0..n).map(|_| rand::random()).collect() };
    let mut seq: u16 = rand::random();
    let ts: u32 = rand::random();
    for round in 0..BLAST_ROUNDS {
        // Random bytes, the version forced off 2.
        for _ in 0..5 {
            let mut d = r((rand::random::<u32>() % 1500) as usize + 1);
            d[0] &= 0x3F;
            send(&d, target, &mut b);
            b.refusable += 1;
        }
        // Random bytes as they come (some may look like RTCP or RTP).
        for _ in 0..3 {
            send(&r((rand::random::<u32>() % 300) as usize), target, &mut b);
        }
        // RTP of versions 0, 1 and 3, otherwise right.
        for v in [0u8, 1, 3] {
            let mut d = rtp(0, seq, ts, 7, &r(160));
            d[0] = (d[0] & 0x3F) | (v << 6);
            send(&d, target, &mut b);
            b.refusable += 1;
        }
        // A new SSRC on every packet, sequence and timestamp anywhere.
        for _ in 0..4 {
            let d = rtp(0, rand::random(), rand::random(), rand::random(), &r(160));
            send(&d, target, &mut b);
        }
        // Payload types not negotiated; a telephone-event too short; too
        // long for any RTP we read.
        for d in [
            rtp(8, seq, ts, 7, &r(160)),
            rtp(18, seq, ts, 7, &r(20)),
            rtp(101, seq, ts, 7, &[1, 2, 3]),
            r(4000),
        ] {
            send(&d, target, &mut b);
            b.refusable += 1;
        }
        // RFC 4733 events: durations 0 and 65535, a code past the digits,
        // then a storm of end packets of one event, all in sequence.
        let ev_ts = ts.wrapping_add(round * 8000);
        let code = (round % 16) as u8;
        let mut events = vec![
            event_payload(code, false, 10, 0),
            event_payload(code, false, 10, 65535),
            event_payload(200, false, 63, 100),
            event_payload(code, true, 0, 0),
        ];
        events.extend(std::iter::repeat_n(
            event_payload(code, true, 10, 65535),
            10,
        ));
        for p in &events {
            seq = seq.wrapping_add(1);
            send(&rtp(101, seq, ev_ts, 0xBAD, p), target, &mut b);
            b.events += 1;
        }
        // RTCP junk on both ports.
        send(&[0x80, 200, 0xFF, 0xFF], target, &mut b);
        send(&r(64), rtcp, &mut b);
        send(&[0x81, 201, 0, 7, 1, 2], rtcp, &mut b);
        std::thread::sleep(Duration::from_millis(20));
    }
    b
}

both_backends! {
    async fn bad_media_at_one_call_leaves_another_untouched(app) configure(calls_on) {
        let panicked = panics();
        add_number(&app).await;
        let dir = tempfile::tempdir().unwrap();
        let speech = speech(dir.path(), "Bad media must not reach the other call. Six, seven, eight.");
        let pcap = dir.path().join("speech.pcap");
        write_speech_pcap(&pcap, &speech);
        // The call under attack talks, then stays on well past the blast.
        let a_steps = [Step::Play(pcap.clone()), Step::Pause(speech.millis() + 10_000)];
        // The other call: the same speech and a digit.
        let b_steps = [
            Step::Play(pcap.clone()),
            Step::Pause(speech.millis() + 400),
            digit_pcap("5"),
            Step::Pause(600),
        ];
        let a_dir = dir.path().join("a");
        let b_dir = dir.path().join("b");
        std::fs::create_dir_all(&a_dir).unwrap();
        std::fs::create_dir_all(&b_dir).unwrap();
        let a_run = sipp(&app, &a_dir, "a", &a_steps, 1);
        let (a, a_rtp) = next_answered(&app, &[]).await;
        let b_run = sipp(&app, &b_dir, "b", &b_steps, 1);
        let (b, _) = next_answered(&app, std::slice::from_ref(&a)).await;
        // While B's speech plays, A's ports get the blast.
        let sent = tokio::task::spawn_blocking(move || blast(a_rtp)).await.unwrap();
        eprintln!("blast: {sent:?}");
        let out = b_run.await.unwrap();
        assert_sipp_ok(&out, "call B", &b_dir);
        let out = a_run.await.unwrap();
        assert_sipp_ok(&out, "call A (its BYE answered)", &a_dir);

        let calls = closed_calls(&app, 2, 30).await;
        let find = |id: &str| calls.iter().find(|(i, _)| i["id"] == id).unwrap();
        let (_, b_evs) = find(&b);
        let b_hangup = event(b_evs, "hangup");
        assert_eq!(b_hangup["data"]["cause"], "caller_bye", "{b_hangup}");
        let b_cdr = &b_hangup["data"]["cdr"];
        eprintln!("B {b_cdr}");
        assert_audio_intact(&app, b_cdr, &speech, speech.packets() + DTMF_PACKETS, scenario_millis(&b_steps));
        assert_eq!(digits(b_evs), ["5"], "B's digits");

        let (_, a_evs) = find(&a);
        let a_hangup = event(a_evs, "hangup");
        assert_eq!(a_hangup["data"]["cause"], "caller_bye", "A ended by its BYE: {a_hangup}");
        let a_cdr = &a_hangup["data"]["cdr"];
        eprintln!("A {a_cdr}, {} digits", digits(a_evs).len());
        // A's RTP is latched to its caller, who keeps talking: the blast
        // comes from elsewhere, so none of its forged events is a digit and
        // none of its packets counts as A's audio.
        assert!(digits(a_evs).is_empty(), "{} digits injected on A", digits(a_evs).len());
        // The blast reached A and was refused there.
        let ignored = a_cdr["ignored"].as_u64().unwrap();
        assert!(ignored >= sent.refusable + sent.events, "A ignored {ignored} of {sent:?}");
        let a_in = a_cdr["packets_in"].as_u64().unwrap();
        assert!(a_in >= speech.packets() && a_in <= speech.packets() + 2, "A's packets are its caller's only: {a_cdr}");
        assert!(a_cdr["recording"].is_string(), "{a_cdr}");
        let panics = panicked.lock().unwrap().clone();
        assert!(panics.is_empty(), "panics: {panics:?}");
        eventually(10, "no media task", || async {
            (switchboard::media::session::live_tasks() == 0).then_some(())
        })
        .await;
    }
}
