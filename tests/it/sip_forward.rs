//! Forwarded numbers: the B2BUA path caller -> Switchboard -> trunk, with
//! SIPp on both ends. A SIPp `uac_pcap` caller (PCMA audio and an RFC 2833
//! digit) is forwarded to a SIPp far end that sends early media (183 with
//! SDP), answers and echoes RTP: the caller hears the far end before the
//! answer, the audio crosses both ways packet by packet, the digit is
//! reported, both legs hang up and the CDR holds both legs. A number with a
//! greeting answers, plays it (espeak-ng speech, converted at load), then
//! forwards. A busy far end is relayed as 486. Mid-call: the caller's
//! re-INVITEs put the call on hold (answered `recvonly`) and take it off,
//! a caller's REFER is refused (403, no toll-fraud path), and the far
//! end's BYE ends the caller's leg. Numbers with bad forwarding settings
//! (another tenant's trunk, `forward_to` alone, a greeting that is a path)
//! are refused.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::helpers::*;
use crate::sip_calls::{events, invite, recv_until, sdp, sip_addr, status, voice_interactions};
use crate::sip_trunks::add_trunk;
use crate::sipp::{
    self, Final, HangsUp, PCMU, Sdp, assert_ok, early_media_then_answer, far_end, far_end_with,
    free_port, uas_scenario,
};

const NUMBER: &str = "+442071838790";
const FORWARD_TO: &str = "+442071838799";

fn forwarding_on(s: &mut switchboard::config::Settings) {
    s.sip.enabled = true;
    s.sip.rtp_bind = "127.0.0.1".parse().unwrap();
    // Apart from the other SIP tests' ports (they may run at once).
    s.sip.rtp_port_min = 53000;
    s.sip.rtp_port_max = 53999;
    // No OPTIONS keep-alive at the far end (SIPp would take it for a call).
    s.sip.trunk_keepalive_secs = 3600;
}

async fn forwarding_number(app: &TestApp, trunk: &str, extra: Value) -> Value {
    let admin = app.login("admin").await;
    let mut body = json!({ "number": NUMBER, "forward_trunk_id": trunk, "forward_to": FORWARD_TO });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    json_ok(app.post("/api/v1/sip/numbers", &admin, &body).await, 201).await
}

async fn closed_call(app: &TestApp) -> (Value, Vec<Value>) {
    eventually(30, "the call's interaction is closed", || async {
        let i = voice_interactions(app).await.first()?.clone();
        (i["state"] == "closed").then_some(())?;
        let evs = events(app, i["id"].as_str().unwrap()).await;
        evs.iter()
            .any(|e| e["kind"] == "hangup")
            .then_some((i, evs))
    })
    .await
}

fn kinds(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

fn event<'a>(evs: &'a [Value], kind: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {:?}", kinds(evs)))
}

/// The caller: SIPp's `uac_pcap` (PCMA, 7 s of speech and the digit 1).
async fn caller(app: &TestApp, dir: &std::path::Path) -> std::process::Output {
    std::os::unix::fs::symlink("/usr/share/sip-tester", dir.join("pcap")).unwrap();
    // SIPp's own uac_pcap, taking a 183 (early media) as well as a 180.
    let dumped = std::process::Command::new("sipp")
        .args(["-sd", "uac_pcap"])
        .output()
        .expect("sipp runs");
    let scenario = String::from_utf8(dumped.stdout).unwrap().replacen(
        "<recv response=\"180\" optional=\"true\">",
        "<recv response=\"183\" optional=\"true\">\n  </recv>\n  <recv response=\"180\" optional=\"true\">",
        1,
    );
    assert!(
        scenario.contains("response=\"183\""),
        "SIPp's uac_pcap changed"
    );
    let path = dir.join("caller.xml");
    std::fs::write(&path, scenario).unwrap();
    let (path, number) = (path.to_string_lossy(), NUMBER.trim_start_matches('+'));
    let media = free_udp_block(10);
    sipp::uac(dir, sip_addr(app), ["-sf", &path], number, media, 60)
        .await
        .unwrap()
}

/// The far end answers at once and hangs up after `pause` ms (its BYE
/// goes to `server`, To our tag taken from the ACK).
fn answers_then_hangs_up(pause: u32, server: SocketAddr) -> String {
    let sdp = Sdp {
        origin: "far 1 1",
        media: PCMU,
    };
    let hangs_up = HangsUp::FarEnd {
        after_ms: pause,
        server,
    };
    uas_scenario(
        "far end hangs up",
        &[],
        0,
        Final::Answered {
            sdp,
            then: "",
            hangs_up,
        },
    )
}

fn busy() -> String {
    uas_scenario("far end busy", &[], 0, Final::Refused("486 Busy Here", ""))
}

/// The value of a header in a message's text.
fn hv<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("")
}

/// A request in the dialog our 200 (`ok`) made, from the caller's side.
fn in_dialog(
    sock: &UdpSocket,
    ok: &str,
    method: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    let local = sock.local_addr().unwrap();
    let contact = hv(ok, "Contact");
    let target = contact.trim_start_matches('<').split('>').next().unwrap();
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {m}\r\nContact: <sip:caller@{local}>\r\n{extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
        b = uuid::Uuid::new_v4().simple(),
        from = hv(ok, "From"),
        to = hv(ok, "To"),
        cid = hv(ok, "Call-ID"),
        m = if method == "ACK" { "ACK" } else { method },
        len = body.len(),
    )
}

/// The ACK of a non-2xx answer: the INVITE's Via (same transaction), the
/// answer's To.
fn ack_of_refusal(invite: &str, answer: &str) -> String {
    let uri = invite
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    let cseq = hv(invite, "CSeq").split_whitespace().next().unwrap();
    format!(
        "ACK {uri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
        hv(invite, "Via"),
        hv(invite, "From"),
        hv(answer, "To"),
        hv(invite, "Call-ID"),
    )
}

async fn send(sock: &UdpSocket, to: SocketAddr, text: &str) {
    sock.send_to(text.as_bytes(), to).await.unwrap();
}

/// The final answer to the request with CSeq `cseq` (provisional ones skipped).
async fn final_answer(sock: &UdpSocket, cseq: u32) -> String {
    let got = recv_until(sock, 10, |m| {
        m.starts_with("SIP/2.0")
            && status(m) >= 200
            && hv(m, "CSeq").starts_with(&format!("{cseq} "))
    })
    .await;
    got.into_iter()
        .rev()
        .find(|m| {
            m.starts_with("SIP/2.0")
                && status(m) >= 200
                && hv(m, "CSeq").starts_with(&format!("{cseq} "))
        })
        .unwrap_or_else(|| panic!("no final answer to CSeq {cseq}"))
}

both_backends! {
    async fn forwarded_calls_relay_early_media_answer_audio_and_digits(app) configure(forwarding_on) {
        let far_dir = tempfile::tempdir().unwrap();
        let far_port = free_port();
        let trunk = add_trunk(&app, far_port, json!({})).await;
        forwarding_number(&app, &trunk, json!({})).await;
        let far = far_end_with(far_dir.path(), Some(&early_media_then_answer()), far_port, 1, &["-rtp_echo"]).await;
        let dir = tempfile::tempdir().unwrap();
        let out = caller(&app, dir.path()).await;
        assert!(out.status.success(), "the caller (sipp uac_pcap) failed: {}\n{}", String::from_utf8_lossy(&out.stdout), sipp::logs(dir.path()));
        assert_ok(&far.await.unwrap(), far_dir.path());

        let (i, evs) = closed_call(&app).await;
        assert_eq!(i["direction"], "inbound");
        assert_eq!(i["subject"], NUMBER);
        let k = kinds(&evs);
        for want in ["ringing", "forwarding", "early_media", "answered", "connected", "bridged", "dtmf", "hangup"] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
        let pos = |w: &str| k.iter().position(|x| *x == w).unwrap();
        assert!(pos("early_media") < pos("answered") && pos("answered") < pos("bridged"), "{k:?}");
        assert_eq!(event(&evs, "forwarding")["data"]["to"], FORWARD_TO);
        assert_eq!(event(&evs, "dtmf")["data"]["digit"], "1");
        let hangup = &event(&evs, "hangup")["data"];
        assert_eq!(hangup["cause"], "caller_bye", "{hangup}");
        let cdr = &hangup["cdr"];
        assert_eq!(cdr["codec"], "PCMA");
        let fwd = &cdr["forwarded"];
        assert_eq!(fwd["to"], FORWARD_TO);
        assert_eq!(fwd["trunk_id"], trunk.as_str());
        // g711a.pcap is 236 packets and dtmf_2833_1.pcap 10: all of it came
        // in, was relayed to the far end, echoed, and relayed back.
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        assert!((200..=260).contains(&n(&cdr["packets_in"])), "caller -> us: {cdr}");
        assert!(n(&fwd["packets_out"]) >= 200, "us -> far end: {cdr}");
        assert!(n(&fwd["packets_in"]) >= 200, "far end (echo) -> us: {cdr}");
        assert!(n(&cdr["packets_out"]) >= 200, "us -> caller: {cdr}");
        assert_eq!(n(&fwd["lost"]), 0, "{cdr}");
        // Connected, then completed.
        assert_eq!(i["close_reason"], "completed", "{i}");
    }

    async fn a_greeting_plays_before_the_call_is_forwarded(app) configure(forwarding_on) {
        // The greeting is uploaded as supervisors do (espeak-ng's WAV, 22 kHz).
        let tmp = tempfile::tempdir().unwrap();
        let spoken = crate::media_session::espeak_prompt(tmp.path(), "Welcome to the demo company. Your call is being connected.");
        let sup = app.login("supervisor").await;
        let r = app
            .req(reqwest::Method::PUT, "/api/v1/prompts/welcome", &sup)
            .body(std::fs::read(&spoken).unwrap())
            .send()
            .await
            .unwrap();
        json_ok(r, 200).await;
        let far_dir = tempfile::tempdir().unwrap();
        let far_port = free_port();
        let trunk = add_trunk(&app, far_port, json!({})).await;
        forwarding_number(&app, &trunk, json!({ "greeting": "welcome" })).await;
        let far = far_end_with(far_dir.path(), Some(&early_media_then_answer()), far_port, 1, &["-rtp_echo"]).await;
        let dir = tempfile::tempdir().unwrap();
        let out = caller(&app, dir.path()).await;
        assert!(out.status.success(), "the caller failed: {}\n{}", String::from_utf8_lossy(&out.stdout), sipp::logs(dir.path()));
        assert_ok(&far.await.unwrap(), far_dir.path());
        // The whole path of a call: greeted, its digit reported, recorded,
        // bridged to the outbound leg, hung up cleanly and closed.
        let (i, evs) = closed_call(&app).await;
        assert_eq!(i["close_reason"], "completed", "{i}");
        assert_eq!(event(&evs, "dtmf")["data"]["digit"], "1");
        assert_eq!(event(&evs, "hangup")["data"]["cause"], "caller_bye");
        let k = kinds(&evs);
        let pos = |w: &str| k.iter().position(|x| *x == w).unwrap_or_else(|| panic!("{w} missing from {k:?}"));
        // Answered by us, greeted, then forwarded.
        assert!(pos("answered") < pos("prompt") && pos("prompt") < pos("forwarding") && pos("forwarding") < pos("bridged"), "{k:?}");
        let prompt_ms = event(&evs, "prompt")["data"]["duration_ms"].as_u64().unwrap();
        assert!(prompt_ms > 2000, "the greeting is speech of a few seconds: {prompt_ms} ms");
        let cdr = &event(&evs, "hangup")["data"]["cdr"];
        // The caller heard the greeting (one packet per 20 ms) and then the echo.
        let out_packets = cdr["packets_out"].as_u64().unwrap();
        assert!(out_packets >= prompt_ms / 20, "{out_packets} packets for a {prompt_ms} ms greeting: {cdr}");
        // The recording has the greeting on our channel (the right one).
        let rec = app.dir.path().join(cdr["recording"].as_str().expect("recorded"));
        let wav = std::fs::read(&rec).unwrap();
        let ours: Vec<i16> = wav[44..].chunks_exact(4).map(|c| i16::from_le_bytes([c[2], c[3]])).collect();
        let first = &ours[..(prompt_ms as usize * 8).min(ours.len())];
        let loud = first.iter().filter(|s| s.unsigned_abs() > 1000).count();
        assert!(loud > 2000, "the greeting is not in the recording ({loud} loud samples)");
    }

    async fn busy_far_ends_are_relayed_and_bad_settings_refused(app) configure(forwarding_on) {
        let far_dir = tempfile::tempdir().unwrap();
        let far_port = free_port();
        let trunk = add_trunk(&app, far_port, json!({})).await;
        let admin = app.login("admin").await;
        // Bad settings: nothing stored.
        for (body, field) in [
            (json!({ "number": NUMBER, "forward_trunk_id": uuid::Uuid::new_v4() }), "forward_trunk_id"),
            (json!({ "number": NUMBER, "forward_to": FORWARD_TO }), "forward_to"),
            (json!({ "number": NUMBER, "forward_trunk_id": trunk, "forward_to": "not a number" }), "forward_to"),
            (json!({ "number": NUMBER, "forward_trunk_id": trunk, "greeting": "../../etc/passwd" }), "greeting"),
            (json!({ "number": NUMBER, "forward_trunk_id": trunk, "flow": "main" }), "flow"),
        ] {
            let e = expect_error(app.post("/api/v1/sip/numbers", &admin, &body).await, 422, "validation_failed").await;
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
        // Another tenant's trunk is no trunk.
        let other = app.login_to("other", "admin@other.example", DEMO_PASSWORD).await;
        let e = expect_error(app.post("/api/v1/sip/numbers", &other, &json!({ "number": "+442071838791", "forward_trunk_id": trunk })).await, 422, "validation_failed").await;
        assert!(e.to_string().contains("no such trunk"), "{e}");
        let listed = json_ok(app.get("/api/v1/sip/numbers", &admin).await, 200).await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 0);

        let n = forwarding_number(&app, &trunk, json!({})).await;
        assert_eq!(n["forward_trunk_id"], trunk.as_str());
        assert_eq!(n["forward_to"], FORWARD_TO);
        let far = far_end(far_dir.path(), Some(&busy()), far_port, 1).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let body = sdp(sock.local_addr().unwrap().port() + 2, "0", "a=rtpmap:0 PCMU/8000\r\n");
        send(&sock, sip_addr(&app), &invite(&sock, NUMBER.trim_start_matches('+'), "fwd-busy@test", &body)).await;
        let answer = final_answer(&sock, 1).await;
        assert_eq!(status(&answer), 486, "{answer}");
        assert_ok(&far.await.unwrap(), far_dir.path());
        let (i, evs) = closed_call(&app).await;
        assert_eq!(i["close_reason"], "abandoned", "{i}");
        let hangup = &event(&evs, "hangup")["data"];
        assert_eq!(hangup["cause"], "busy");
        assert_eq!(hangup["cdr"]["forwarded"]["sip_status"], 486);
    }

    async fn hold_unhold_refused_refer_and_the_far_ends_bye(app) configure(forwarding_on) {
        let far_dir = tempfile::tempdir().unwrap();
        let far_port = free_port();
        let trunk = add_trunk(&app, far_port, json!({})).await;
        forwarding_number(&app, &trunk, json!({})).await;
        let server = sip_addr(&app);
        let far = far_end(far_dir.path(), Some(&answers_then_hangs_up(5000, server)), far_port, 1).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mport = media.local_addr().unwrap().port();
        let pcmu = "a=rtpmap:0 PCMU/8000\r\n";
        send(&sock, server, &invite(&sock, NUMBER.trim_start_matches('+'), "fwd-hold@test", &sdp(mport, "0", pcmu))).await;
        let ok = final_answer(&sock, 1).await;
        assert_eq!(status(&ok), 200, "{ok}");
        send(&sock, server, &in_dialog(&sock, &ok, "ACK", 1, "", "")).await;

        // Hold: sendonly -> recvonly.
        let hold = format!("{}a=sendonly\r\n", sdp(mport, "0", pcmu));
        send(&sock, server, &in_dialog(&sock, &ok, "INVITE", 2, "", &hold)).await;
        let held = final_answer(&sock, 2).await;
        assert_eq!(status(&held), 200, "{held}");
        assert!(held.contains("a=recvonly"), "{held}");
        send(&sock, server, &in_dialog(&sock, &ok, "ACK", 2, "", "")).await;
        // Off hold.
        send(&sock, server, &in_dialog(&sock, &ok, "INVITE", 3, "", &sdp(mport, "0", pcmu))).await;
        let resumed = final_answer(&sock, 3).await;
        assert_eq!(status(&resumed), 200, "{resumed}");
        assert!(resumed.contains("a=sendrecv"), "{resumed}");
        send(&sock, server, &in_dialog(&sock, &ok, "ACK", 3, "", "")).await;
        // A codec the call does not have: 488, nothing changes.
        let pcma_only = in_dialog(&sock, &ok, "INVITE", 4, "", &sdp(mport, "8", "a=rtpmap:8 PCMA/8000\r\n"));
        send(&sock, server, &pcma_only).await;
        assert_eq!(status(&final_answer(&sock, 4).await), 488);
        send(&sock, server, &ack_of_refusal(&pcma_only, &final_answer(&sock, 4).await)).await;
        // A caller may not make us call elsewhere.
        send(&sock, server, &in_dialog(&sock, &ok, "REFER", 5, "Refer-To: <sip:+19005550100@127.0.0.1>\r\n", "")).await;
        assert_eq!(status(&final_answer(&sock, 5).await), 403);
        // A REFER in no dialog of ours: 481.
        let stray = in_dialog(&sock, &ok, "REFER", 6, "Refer-To: <sip:+19005550100@127.0.0.1>\r\n", "").replace(hv(&ok, "Call-ID"), "no-such-call");
        send(&sock, server, &stray).await;
        assert_eq!(status(&final_answer(&sock, 6).await), 481);

        // The far end hangs up: we BYE the caller.
        let got = recv_until(&sock, 15, |m| m.starts_with("BYE ")).await;
        let Some(bye) = got.iter().find(|m| m.starts_with("BYE ")) else {
            let out = far.await.unwrap();
            panic!("the caller got no BYE: {got:?}\nfar end: {}\n{}", String::from_utf8_lossy(&out.stdout), sipp::logs(far_dir.path()));
        };
        let mut reply = String::from("SIP/2.0 200 OK\r\n");
        for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
            reply.push_str(&format!("{h}: {}\r\n", hv(bye, h)));
        }
        reply.push_str("Content-Length: 0\r\n\r\n");
        send(&sock, server, &reply).await;
        assert_ok(&far.await.unwrap(), far_dir.path());
        let (_, evs) = closed_call(&app).await;
        let k = kinds(&evs);
        let pos = |w: &str| k.iter().position(|x| *x == w).unwrap_or_else(|| panic!("{w} missing from {k:?}"));
        assert!(pos("bridged") < pos("held") && pos("held") < pos("resumed"), "{k:?}");
        assert_eq!(event(&evs, "held")["data"]["by"], "caller");
        assert_eq!(event(&evs, "hangup")["data"]["cause"], "callee_bye");
    }
}
