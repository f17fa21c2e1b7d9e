//! Media primitives against real data: SIPp's shipped pcaps (PCMA audio and
//! RFC 2833 digits), prompts spoken by espeak-ng and converted by sox,
//! DTMF tones made by sox, recordings read back by sox.

use std::path::{Path, PathBuf};
use std::process::Command;
use switchboard::media::dtmf::{self, DtmfReceiver};
use switchboard::media::energy::{self, Kind};
use switchboard::media::g711;
use switchboard::media::jitter::{JitterBuffer, PacketMeta, Push};
use switchboard::media::rtp::RtpPacket;
use switchboard::media::wav::{self, Layout, Recorder};

const PCAPS: &str = "/usr/share/sip-tester";

pub(crate) fn need(tool: &str) {
    let ok = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        ok,
        "{tool} is not installed: run scripts/test.sh (it installs sox, espeak-ng, sip-tester)"
    );
}

/// One UDP payload from a capture, with its capture time in microseconds.
pub(crate) struct Datagram {
    pub(crate) micros: u64,
    pub(crate) payload: Vec<u8>,
}

/// A minimal libpcap reader: classic format, either byte order, Ethernet
/// link type, IPv4, UDP. Anything else is skipped.
pub(crate) fn read_pcap(path: &Path) -> Vec<Datagram> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= 24, "short pcap");
    let swapped = match &bytes[0..4] {
        [0xD4, 0xC3, 0xB2, 0xA1] => false,
        [0xA1, 0xB2, 0xC3, 0xD4] => true,
        m => panic!("not a pcap: magic {m:02x?}"),
    };
    let u32_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if swapped {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "link type must be Ethernet");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let (secs, usecs, incl) = (u32_at(at), u32_at(at + 4), u32_at(at + 8) as usize);
        let frame = &bytes[at + 16..(at + 16 + incl).min(bytes.len())];
        at += 16 + incl;
        // Ethernet: 14 bytes, EtherType 0x0800 = IPv4.
        if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let ihl = (ip[0] & 0x0F) as usize * 4;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let Some(udp) = ip.get(ihl..total.min(ip.len())) else {
            continue;
        };
        if udp.len() < 8 {
            continue;
        }
        let ulen = u16::from_be_bytes([udp[4], udp[5]]) as usize;
        let payload = udp[8..ulen.clamp(8, udp.len())].to_vec();
        out.push(Datagram {
            micros: secs as u64 * 1_000_000 + usecs as u64,
            payload,
        });
    }
    out
}

/// Payload type, marker, timestamp and payload of a packet in playout order.
type Played = (u8, bool, u32, Vec<u8>);

/// Parses every datagram as RTP and runs it through a jitter buffer,
/// returning the packets in playout order (payload type, timestamp, payload)
/// and the buffer's statistics.
fn play(datagrams: &[Datagram]) -> (Vec<Played>, switchboard::media::jitter::JitterStats) {
    let mut jb = JitterBuffer::new(5);
    let mut out = Vec::new();
    let t0 = datagrams.first().map_or(0, |d| d.micros);
    for d in datagrams {
        let p = RtpPacket::parse(&d.payload).expect("the capture holds valid RTP");
        let arrival = ((d.micros - t0) * 8 / 1000) as u32; // 8 kHz timestamp units
        let meta = PacketMeta {
            ssrc: p.ssrc,
            sequence: p.sequence,
            timestamp: p.timestamp,
        };
        let r = jb.push(
            meta,
            arrival,
            (p.payload_type, p.marker, p.payload.to_vec()),
        );
        // SIPp's RFC 2833 captures resend the end packet with the same
        // sequence number: once the first copy is played, the others are late.
        assert!(
            matches!(r, Push::Accepted | Push::Duplicate | Push::Late),
            "{r:?}"
        );
        while let Some(f) = jb.pop() {
            out.push((f.item.0, f.item.1, f.timestamp, f.item.2));
        }
    }
    for f in jb.drain() {
        out.push((f.item.0, f.item.1, f.timestamp, f.item.2));
    }
    (out, jb.stats())
}

#[test]
fn sipp_rfc2833_pcaps_yield_exactly_their_digit() {
    let names = [
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
    for (name, want) in names {
        let path = PathBuf::from(PCAPS).join(format!("dtmf_2833_{name}.pcap"));
        let (packets, stats) = play(&read_pcap(&path));
        assert!(!packets.is_empty());
        let mut rx = DtmfReceiver::new();
        let mut digits = String::new();
        for (pt, _, ts, payload) in &packets {
            assert_eq!(*pt, 101, "{name}");
            if let Some(press) = rx.on_payload(*ts, payload) {
                digits.push(press.digit.as_char());
            }
        }
        assert_eq!(digits, want.to_string(), "{name}");
        assert_eq!(stats.lost(), 0, "{name}");

        // Fed raw (duplicates and all, no jitter buffer) the answer is the same.
        let mut rx = DtmfReceiver::new();
        let raw: String = read_pcap(&path)
            .iter()
            .filter_map(|d| {
                let p = RtpPacket::parse(&d.payload).ok()?;
                rx.on_payload(p.timestamp, p.payload)
            })
            .map(|p| p.digit.as_char())
            .collect();
        assert_eq!(raw, want.to_string(), "{name} raw");
    }
}

fn decode_g711a_pcap() -> (Vec<u8>, Vec<i16>) {
    let (packets, stats) = play(&read_pcap(&Path::new(PCAPS).join("g711a.pcap")));
    assert_eq!(stats.lost(), 0, "{stats:?}");
    assert_eq!(stats.late + stats.skipped, 0, "{stats:?}");
    let mut codes = Vec::new();
    for (pt, _, _, payload) in &packets {
        assert_eq!(*pt, 8);
        codes.extend_from_slice(payload);
    }
    let mut pcm = Vec::new();
    g711::decode_alaw(&codes, &mut pcm);
    (codes, pcm)
}

#[test]
fn sipp_g711a_pcap_decodes_to_seven_seconds_of_sound() {
    let (_, pcm) = decode_g711a_pcap();
    let secs = pcm.len() as f64 / 8000.0;
    assert!((6.5..7.5).contains(&secs), "{secs} s");
    let segments = energy::analyze(&pcm);
    let speech: u64 = segments
        .iter()
        .filter(|s| s.kind == Kind::Speech)
        .map(|s| s.duration_ms())
        .sum();
    assert!(speech >= 1000, "only {speech} ms of sound in {segments:?}");
}

pub(crate) fn snr_db(reference: &[i16], test: &[i16]) -> f64 {
    let signal: f64 = reference.iter().map(|&x| (x as f64).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(test)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    10.0 * (signal / noise.max(1e-9)).log10()
}

/// Transcoding A-law to mu-law requantises each sample once more. A mu-law
/// step in segment s is 2^(s+3) for values of at least 16 steps, so the
/// error is at most 1/32 of the value; uniformly spread that is an SNR of
/// 20 log10(32 sqrt 3) = 34.8 dB, less for quiet samples in the linear
/// segment. We ask for 30 dB; back to A-law must stay above that too.
#[test]
fn mulaw_alaw_transcoding_keeps_the_pcap_signal() {
    let (codes, pcm) = decode_g711a_pcap();
    let mut ulaw = codes.clone();
    g711::alaw_to_ulaw_in_place(&mut ulaw);
    let mut via_ulaw = Vec::new();
    g711::decode_ulaw(&ulaw, &mut via_ulaw);
    let snr = snr_db(&pcm, &via_ulaw);
    assert!(snr > 30.0, "A->mu SNR {snr:.1} dB");
    let mut back = ulaw.clone();
    g711::ulaw_to_alaw_in_place(&mut back);
    let mut round = Vec::new();
    g711::decode_alaw(&back, &mut round);
    let snr = snr_db(&pcm, &round);
    assert!(snr > 30.0, "A->mu->A SNR {snr:.1} dB");
}

pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sox_duration(path: &Path) -> f64 {
    run(Command::new("sox").arg("--i").arg("-D").arg(path))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn espeak_prompts_in_any_format_load_alike_and_speech_is_found() {
    need("espeak-ng");
    need("sox");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.wav");
    run(Command::new("espeak-ng")
        .arg("-w")
        .arg(&raw)
        .arg("Thank you for calling. Please hold."));
    // One second of silence before and after what espeak spoke.
    let padded = dir.path().join("padded.wav");
    run(Command::new("sox")
        .arg(&raw)
        .arg(&padded)
        .args(["pad", "1", "1"]));
    let want = sox_duration(&padded);

    let variants: [(&str, &[&str]); 5] = [
        ("as_is.wav", &[]),
        ("ulaw8k.wav", &["-r", "8000", "-c", "1", "-e", "u-law"]),
        ("alaw8k.wav", &["-r", "8000", "-c", "1", "-e", "a-law"]),
        ("s24_44k.wav", &["-r", "44100", "-b", "24"]),
        (
            "f32_48k_stereo.wav",
            &["-r", "48000", "-c", "2", "-e", "floating-point", "-b", "32"],
        ),
    ];
    for (name, args) in variants {
        let path = dir.path().join(name);
        run(Command::new("sox").arg(&padded).args(args).arg(&path));
        let audio = wav::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = audio.duration_secs();
        assert!(
            (got / want - 1.0).abs() < 0.01,
            "{name}: {got} s vs {want} s"
        );

        let segments = energy::analyze(&audio.samples);
        let speech: Vec<_> = segments.iter().filter(|s| s.kind == Kind::Speech).collect();
        assert!(!speech.is_empty(), "{name}: no speech in {segments:?}");
        let total_ms = (want * 1000.0) as u64;
        // Speech only where espeak spoke (a frame of slack each side, plus hangover at the end).
        assert!(speech[0].start_ms >= 960, "{name}: {segments:?}");
        assert!(
            speech.last().unwrap().end_ms <= total_ms - 700,
            "{name}: {segments:?}"
        );
        let first = segments.first().unwrap();
        let last = segments.last().unwrap();
        assert!(
            first.kind == Kind::Silence && first.duration_ms() >= 960,
            "{name}: {segments:?}"
        );
        assert!(
            last.kind == Kind::Silence && last.duration_ms() >= 700,
            "{name}: {segments:?}"
        );
        // And no DTMF in speech.
        assert_eq!(dtmf::detect(&audio.samples), vec![], "{name}: false digits");
    }
}

#[test]
fn sox_dtmf_tones_with_gaps_and_noise_give_exactly_the_digits() {
    need("sox");
    let dir = tempfile::tempdir().unwrap();
    let digits = "159#*0D7";
    let mut parts = Vec::new();
    for (i, c) in digits.chars().enumerate() {
        let (r, col) = dtmf::tone_frequencies(c);
        let tone = dir.path().join(format!("t{i}.wav"));
        // Two sines, each at half scale, summed into one channel.
        run(Command::new("sox")
            .args(["-n", "-r", "8000", "-b", "16", "-c", "1"])
            .arg(&tone)
            .args([
                "synth",
                "0.08",
                "sine",
                &r.to_string(),
                "sine",
                &col.to_string(),
                "remix",
                "1,2",
                "vol",
                "0.4",
            ]));
        let gap = dir.path().join(format!("g{i}.wav"));
        run(Command::new("sox")
            .args(["-n", "-r", "8000", "-b", "16", "-c", "1"])
            .arg(&gap)
            .args(["trim", "0", "0.1"]));
        parts.push(tone);
        parts.push(gap);
    }
    let clean = dir.path().join("clean.wav");
    run(Command::new("sox").args(&parts).arg(&clean));
    // White noise about 20 dB under the tones, mixed in.
    let noise = dir.path().join("noise.wav");
    let len = sox_duration(&clean).to_string();
    run(Command::new("sox")
        .args(["-n", "-r", "8000", "-b", "16", "-c", "1"])
        .arg(&noise)
        .args(["synth", &len, "whitenoise", "vol", "0.03"]));
    let noisy = dir.path().join("noisy.wav");
    run(Command::new("sox")
        .arg("-m")
        .arg(&clean)
        .arg(&noise)
        .arg(&noisy));

    for path in [&clean, &noisy] {
        let audio = wav::load(path).unwrap();
        let got: String = dtmf::detect(&audio.samples)
            .iter()
            .map(|d| d.as_char())
            .collect();
        assert_eq!(got, digits, "{}", path.display());
    }
}

#[test]
fn recordings_read_back_with_sox_and_our_reader() {
    need("sox");
    let dir = tempfile::tempdir().unwrap();
    let leg_a = dtmf::tone(dtmf::Digit::from_char('1').unwrap(), 8000, 0.2);
    let leg_b = vec![1000i16; 4000];
    for (layout, channels) in [(Layout::Stereo, 2), (Layout::Mixed, 1)] {
        let path = dir.path().join(format!("{layout:?}.wav"));
        let mut rec = Recorder::create(&path, layout).unwrap();
        // Written 20 ms at a time, as a call would.
        for i in 0..50 {
            let a = &leg_a[i * 160..(i + 1) * 160];
            let b = leg_b.get(i * 160..(i + 1) * 160).unwrap_or(&[]);
            rec.write(a, b).unwrap();
        }
        rec.finish().unwrap();
        let channels_seen = run(Command::new("sox").arg("--i").arg("-c").arg(&path));
        assert_eq!(channels_seen.trim(), channels.to_string());
        let rate = run(Command::new("sox").arg("--i").arg("-r").arg(&path));
        assert_eq!(rate.trim(), "8000");
        assert!((sox_duration(&path) - 1.0).abs() < 1e-6);
        let audio = wav::load(&path).unwrap();
        assert_eq!(audio.samples.len(), 8000);
        assert_eq!(audio.source.channels, channels);
        let expect = |i: usize| {
            let b = leg_b.get(i).copied().unwrap_or(0) as i32;
            match layout {
                Layout::Stereo => ((leg_a[i] as i32 + b) as f64 / 2.0).round() as i32,
                Layout::Mixed => leg_a[i] as i32 + b,
            }
        };
        for i in [0, 100, 3999, 4000, 7999] {
            assert!(
                (audio.samples[i] as i32 - expect(i)).abs() <= 1,
                "{layout:?} sample {i}"
            );
        }
    }
}
