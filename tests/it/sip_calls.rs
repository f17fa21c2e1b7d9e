//! Inbound calls: numbers, SIPp calling in with audio and RFC 2833 DTMF
//! from its pcaps, refusals (404, 488), CANCEL before the answer, and the
//! interaction and CDR each call leaves.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::helpers::*;

const NUMBER: &str = "+442071838750";

fn calls_on(s: &mut switchboard::config::Settings) {
    s.sip.enabled = true;
    s.sip.rtp_bind = "127.0.0.1".parse().unwrap();
    s.sip.rtp_port_min = 41000;
    s.sip.rtp_port_max = 41999;
}

fn ringing_calls(s: &mut switchboard::config::Settings) {
    calls_on(s);
    s.sip.answer_after_ms = 3000;
}

pub(crate) fn sip_addr(app: &TestApp) -> SocketAddr {
    app.state.sip.expect("SIP is enabled").udp
}

async fn first_queue(app: &TestApp) -> String {
    let admin = app.login("admin").await;
    let v = json_ok(app.get("/api/v1/queues", &admin).await, 200).await;
    v["items"][0]["id"].as_str().unwrap().to_owned()
}

async fn add_number(app: &TestApp, number: &str) -> Value {
    let queue = first_queue(app).await;
    let admin = app.login("admin").await;
    let r = app
        .post(
            "/api/v1/sip/numbers",
            &admin,
            &json!({ "number": number, "queue_id": queue }),
        )
        .await;
    json_ok(r, 201).await
}

/// The interaction whose `sip_call_id` attribute is `call_id` (or the only voice one).
pub(crate) async fn voice_interactions(app: &TestApp) -> Vec<Value> {
    let admin = app.login("admin").await;
    let v = json_ok(app.get("/api/v1/interactions?limit=100", &admin).await, 200).await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["channel"] == "voice")
        .cloned()
        .collect()
}

pub(crate) async fn events(app: &TestApp, id: &str) -> Vec<Value> {
    let admin = app.login("admin").await;
    let v = json_ok(
        app.get(
            &format!("/api/v1/interactions/{id}/events?limit=200"),
            &admin,
        )
        .await,
        200,
    )
    .await;
    v.as_array().unwrap().clone()
}

async fn closed_call(app: &TestApp) -> (Value, Vec<Value>) {
    eventually(20, "the call's interaction is closed", || async {
        let all = voice_interactions(app).await;
        let i = all.first()?.clone();
        (i["state"] == "closed").then_some(())?;
        let evs = events(app, i["id"].as_str().unwrap()).await;
        Some((i, evs))
    })
    .await
}

pub(crate) fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn sdp(port: u16, formats: &str, rtpmap: &str) -> String {
    format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n{rtpmap}"
    )
}

pub(crate) fn invite(sock: &UdpSocket, to_user: &str, call_id: &str, body: &str) -> String {
    let local = sock.local_addr().unwrap();
    format!(
        "INVITE sip:{to_user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@127.0.0.1>;tag=abc123\r\nTo: <sip:{to_user}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
        b = uuid::Uuid::new_v4().simple(),
        len = body.len(),
    )
}

pub(crate) async fn recv_until(
    sock: &UdpSocket,
    secs: u64,
    want: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = want(&m);
        got.push(m);
        if done {
            break;
        }
    }
    got
}

both_backends! {
    async fn numbers_are_validated_and_unique(app) configure(calls_on) {
        let admin = app.login("admin").await;
        let queue = first_queue(&app).await;
        let n = add_number(&app, "+44 20 7183 8750").await;
        assert_eq!(n["number"], NUMBER);
        assert_eq!(n["queue_id"], queue.as_str());
        let id = n["id"].as_str().unwrap().to_owned();
        let got = json_ok(app.get(&format!("/api/v1/sip/numbers/{id}"), &admin).await, 200).await;
        assert_eq!(got["number"], NUMBER);
        let list = json_ok(app.get("/api/v1/sip/numbers", &admin).await, 200).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        // The same number written another way is taken.
        let r = app.post("/api/v1/sip/numbers", &admin, &json!({ "number": "+442071838750", "queue_id": queue })).await;
        expect_error(r, 409, "conflict").await;
        for bad in [
            json!({ "number": "not a number", "queue_id": queue }),
            json!({ "number": "+442071838751" }),
            json!({ "number": "+442071838751", "queue_id": queue, "flow": "main" }),
            json!({ "number": "+442071838751", "queue_id": uuid::Uuid::now_v7() }),
            json!({ "number": "+442071838751", "flow": "bad flow name!" }),
        ] {
            let r = app.post("/api/v1/sip/numbers", &admin, &bad).await;
            assert_eq!(r.status().as_u16(), 422, "{bad}");
        }
        let r = app.delete(&format!("/api/v1/sip/numbers/{id}"), &admin).await;
        assert_eq!(r.status().as_u16(), 204);
        let r = app.get(&format!("/api/v1/sip/numbers/{id}"), &admin).await;
        assert_eq!(r.status().as_u16(), 404);
    }

    async fn sipp_calls_in_with_audio_and_dtmf(app) configure(calls_on) {
        add_number(&app, NUMBER).await;
        let server = sip_addr(&app);
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/usr/share/sip-tester", dir.path().join("pcap")).unwrap();
        let cwd = dir.path().to_path_buf();
        // Ports of its own (the two backends' calls may run at once).
        let sipp_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let media_port = free_udp_block(10).to_string();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("sipp")
                .current_dir(&cwd)
                .args([
                    &server.to_string(),
                    "-sn", "uac_pcap",
                    "-s", "442071838750",
                    "-i", "127.0.0.1",
                    "-p", &sipp_port,
                    "-mp", &media_port,
                    "-m", "1",
                    "-timeout", "30",
                    "-nostdin",
                    "-trace_err",
                ])
                .output()
                .expect("sipp runs")
        })
        .await
        .unwrap();
        let logs: String = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        assert!(
            out.status.success(),
            "sipp failed: {}\n{}\n{logs}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (i, evs) = closed_call(&app).await;
        assert_eq!(i["direction"], "inbound");
        assert_eq!(i["subject"], NUMBER);
        let kinds: Vec<&str> = evs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        for k in ["created", "ringing", "answered", "queued", "dtmf", "hangup"] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        let dtmf: Vec<&str> = evs.iter().filter(|e| e["kind"] == "dtmf").map(|e| e["data"]["digit"].as_str().unwrap()).collect();
        assert_eq!(dtmf, vec!["1"], "{evs:?}");
        let hangup = evs.iter().find(|e| e["kind"] == "hangup").unwrap();
        assert_eq!(hangup["data"]["cause"], "caller_bye");
        let cdr = &hangup["data"]["cdr"];
        assert_eq!(cdr["codec"], "PCMA");
        let packets = cdr["packets_in"].as_u64().unwrap();
        // g711a.pcap holds 236 RTP packets, dtmf_2833_1.pcap 10.
        assert!((200..=260).contains(&packets), "packets in: {cdr}");
        assert!(cdr["answer"].is_string() && cdr["end"].is_string(), "{cdr}");
        let rec = app.dir.path().join(cdr["recording"].as_str().expect("a recording"));
        let wav = std::fs::read(&rec).expect("the recording exists");
        // Stereo 16-bit at 8 kHz: 32 000 bytes per second.
        let secs = (wav.len() as f64 - 44.0) / 32000.0;
        let duration = cdr["duration_secs"].as_f64().unwrap();
        assert!(secs > 4.0 && (secs - duration).abs() < 1.5, "recording {secs} s, call {duration} s");
        let samples: Vec<i16> = wav[44..].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
        let loud = samples.iter().step_by(2).filter(|s| s.unsigned_abs() > 1000).count();
        assert!(loud > 8000, "the caller's channel is silent ({loud} loud samples)");
        // Nothing left: the RTP port is free again, no media task runs.
        let answered = evs.iter().find(|e| e["kind"] == "answered").unwrap();
        let rtp: SocketAddr = answered["data"]["rtp"].as_str().unwrap().parse().unwrap();
        std::net::UdpSocket::bind(rtp).expect("the RTP port can be bound again");
        std::net::UdpSocket::bind(SocketAddr::new(rtp.ip(), rtp.port() + 1)).expect("the RTCP port too");
    }

    async fn unknown_numbers_and_codecs_are_refused(app) configure(calls_on) {
        add_number(&app, NUMBER).await;
        let server = sip_addr(&app);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Unknown number: 404.
        let body = sdp(42200, "0", "");
        sock.send_to(invite(&sock, "442071838000", "c404@test", &body).as_bytes(), server).await.unwrap();
        let got = recv_until(&sock, 5, |m| status(m) >= 200).await;
        assert_eq!(got.last().map(|m| status(m)), Some(404), "{got:?}");
        // G.729 only: 488.
        let body = sdp(42200, "18", "a=rtpmap:18 G729/8000\r\n");
        sock.send_to(invite(&sock, "442071838750", "c488@test", &body).as_bytes(), server).await.unwrap();
        let got = recv_until(&sock, 5, |m| status(m) >= 200).await;
        assert_eq!(got.last().map(|m| status(m)), Some(488), "{got:?}");
        // Junk SDP: 400.
        sock.send_to(invite(&sock, "442071838750", "c400@test", "v=0\r\nm=audio x").as_bytes(), server).await.unwrap();
        let got = recv_until(&sock, 5, |m| status(m) >= 200).await;
        assert_eq!(got.last().map(|m| status(m)), Some(400), "{got:?}");
        // None of these made an interaction.
        assert!(voice_interactions(&app).await.is_empty());
    }

    async fn cancel_before_answer_is_487_and_abandoned(app) configure(ringing_calls) {
        add_number(&app, NUMBER).await;
        let server = sip_addr(&app);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let body = sdp(42300, "0 101", "a=rtpmap:101 telephone-event/8000\r\n");
        let inv = invite(&sock, "+442071838750", "cancel@test", &body);
        sock.send_to(inv.as_bytes(), server).await.unwrap();
        let got = recv_until(&sock, 5, |m| status(m) == 180).await;
        assert_eq!(got.last().map(|m| status(m)), Some(180), "{got:?}");
        // CANCEL: same Via branch, CSeq number, no To tag.
        let cancel = inv
            .replacen("INVITE sip:", "CANCEL sip:", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
        let cancel = format!("{}\r\n\r\n", cancel.split("\r\n\r\n").next().unwrap().replace(&format!("Content-Length: {}", body.len()), "Content-Length: 0"));
        sock.send_to(cancel.as_bytes(), server).await.unwrap();
        let got = recv_until(&sock, 5, |m| status(m) == 487).await;
        let statuses: Vec<u16> = got.iter().map(|m| status(m)).collect();
        assert!(statuses.contains(&200) && statuses.contains(&487), "{statuses:?}");
        let (i, evs) = closed_call(&app).await;
        assert_eq!(i["close_reason"], "abandoned", "{i}");
        let hangup = evs.iter().find(|e| e["kind"] == "hangup").unwrap();
        assert_eq!(hangup["data"]["cause"], "cancel");
        assert!(hangup["data"]["cdr"]["answer"].is_null());
        assert!(!evs.iter().any(|e| e["kind"] == "answered"));
    }
}
