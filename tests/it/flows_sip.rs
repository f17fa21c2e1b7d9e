//! IVR flows on real calls: a supervisor's flow, saved with its tests and
//! published through the API, answers SIPp calls to a number bound to it.
//! By DTMF (SIPp's RFC 2833 pcaps) the menu sends the caller to the
//! queue of the key pressed; by speech (Korean phrases spoken by
//! espeak-ng, sent as PCMU from a pcap the test makes, recognised by the
//! real Vosk model through `listen`) to the queue named. A flow that
//! fails mid-call hands the caller to the tenant's fallback queue; a live
//! call finishes on its version while another is published. While queued
//! the caller hears hold music and position announcements; a message is
//! recorded, stored and transcribed; HTTP lookups answer, and are cut at
//! 64 KiB and at their timeout. Recorded calls are transcribed when the
//! tenant asks. A flow's transfer goes out through the tenant's trunk to a
//! SIPp far end and bridges the caller.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::sip_calls::{events, voice_interactions};
use crate::sip_media_e2e::{
    Step, assert_sipp_ok, digit_pcap, sipp_to, speech_in, write_speech_pcap,
};

const NUMBER: &str = "+442071838760";

fn calls_on(s: &mut switchboard::config::Settings) {
    s.sip.enabled = true;
    s.sip.rtp_bind = "127.0.0.1".parse().unwrap();
    // Apart from the other SIP tests' ranges (they may run at once).
    s.sip.rtp_port_min = 47000;
    s.sip.rtp_port_max = 47999;
}

/// The Korean model `scripts/setup-vosk.sh` fetched (or
/// `SWITCHBOARD_TEST_VOSK_MODEL`): the test fails without it.
pub(crate) fn vosk_model() -> PathBuf {
    let dir = std::env::var_os("SWITCHBOARD_TEST_VOSK_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/vosk/model-ko"));
    assert!(
        dir.join("am").is_dir(),
        "no Vosk model at {}: run scripts/setup-vosk.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn speech_on(s: &mut switchboard::config::Settings) {
    calls_on(s);
    s.sip.rtp_port_min = 48000;
    s.sip.rtp_port_max = 48999;
    s.asr.model_dir = Some(vosk_model());
}

const MENU: &str = r#"answer();
let c = menu(#{ prompt: "main_menu", options: "12", retries: 2, timeout: 6 });
set("choice", c);
if c == "1" {
    queue("Sales", #{ priority: 7 })
} else if c == "2" {
    queue("Support", #{ skills: ["english"] })
} else {
    hangup()
}
"#;

const MENU_TESTS: &str = r#"
[[case]]
name = "support by 2"
inputs = ["digits:2"]
[case.expect]
prompts = ["main_menu"]
queue = "Support"
skills = ["english"]
"#;

/// Saves and publishes a flow; returns its version.
async fn publish(app: &TestApp, name: &str, source: &str, tests: &str) -> i64 {
    let sup = app.login("supervisor").await;
    let saved = json_ok(
        app.post(
            &format!("/api/v1/flows/{name}/versions"),
            &sup,
            &json!({ "source": source, "tests": tests, "comment": "e2e" }),
        )
        .await,
        201,
    )
    .await;
    let v = saved["version"].as_i64().unwrap();
    json_ok(
        app.post(
            &format!("/api/v1/flows/{name}/publish"),
            &sup,
            &json!({ "version": v }),
        )
        .await,
        200,
    )
    .await;
    v
}

async fn bind_number(app: &TestApp, flow: &str) {
    let admin = app.login("admin").await;
    json_ok(
        app.post(
            "/api/v1/sip/numbers",
            &admin,
            &json!({ "number": NUMBER, "flow": flow }),
        )
        .await,
        201,
    )
    .await;
}

async fn put_prompt(app: &TestApp, name: &str, dir: &Path, text: &str) {
    let wav = dir.join(format!("{name}.wav"));
    let out = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .output()
        .expect("espeak-ng runs");
    assert!(out.status.success());
    let sup = app.login("supervisor").await;
    let r = app
        .req(
            reqwest::Method::PUT,
            &format!("/api/v1/prompts/{name}"),
            &sup,
        )
        .header("Content-Type", "audio/wav")
        .body(std::fs::read(&wav).unwrap())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "prompt upload: {}", r.status());
}

async fn queue_id(app: &TestApp, name: &str) -> String {
    let admin = app.login("admin").await;
    let v = json_ok(app.get("/api/v1/queues", &admin).await, 200).await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn kinds(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

/// The call's interaction once it has reached `kind` (and its events).
async fn call_with(app: &TestApp, kind: &str, secs: u64) -> (Value, Vec<Value>) {
    eventually(secs, &format!("the call has a {kind} event"), || async {
        let i = voice_interactions(app).await.first()?.clone();
        let evs = events(app, i["id"].as_str().unwrap()).await;
        evs.iter().any(|e| e["kind"] == kind).then_some((i, evs))
    })
    .await
}

fn steps_of<'a>(evs: &'a [Value], command: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["kind"] == "flow_step" && e["data"]["kind"] == command)
        .collect()
}

both_backends! {
    async fn a_published_flow_takes_a_call_by_dtmf_into_its_queue(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        put_prompt(&app, "main_menu", dir.path(), "For sales press one. For support press two.").await;
        let v = publish(&app, "ivr-e2e", MENU, MENU_TESTS).await;
        bind_number(&app, "ivr-e2e").await;
        // The caller presses 2 a second into the menu prompt, waits, hangs up.
        let sipp = sipp_to(&app, dir.path(), "dtmf", NUMBER, &[Step::Pause(1000), digit_pcap("2"), Step::Pause(4000)], 1);
        // `routed` is written just after `queued`: wait for the later one.
        let (i, evs) = call_with(&app, "routed", 30).await;
        let out = sipp.await.unwrap();
        assert_sipp_ok(&out, "the DTMF caller", dir.path());
        let k = kinds(&evs);
        for want in ["ringing", "answered", "flow_entered", "flow_step", "dtmf", "attributes_set", "flow_ended", "queued", "routed"] {
            assert!(k.contains(&want), "no {want} in {k:?}");
        }
        // The menu's prompt was played and collected the 2 (barge-in).
        let gathers = steps_of(&evs, "gather");
        assert_eq!(gathers.len(), 1, "{evs:?}");
        assert_eq!(gathers[0]["data"]["prompt"], "main_menu");
        assert_eq!(gathers[0]["data"]["answer"], "2");
        assert_eq!(gathers[0]["data"]["flow"], "ivr-e2e");
        assert_eq!(gathers[0]["data"]["version"], v);
        assert_eq!(gathers[0]["data"]["line"], 2);
        // Into Support with the english skill.
        let queued = evs.iter().find(|e| e["kind"] == "queued").unwrap();
        assert_eq!(queued["data"]["queue_id"], queue_id(&app, "Support").await);
        let routed = evs.iter().find(|e| e["kind"] == "routed").unwrap();
        assert_eq!(routed["data"]["extra_skills"].as_array().unwrap().len(), 1);
        let ended = evs.iter().find(|e| e["kind"] == "flow_ended").unwrap();
        assert_eq!(ended["data"]["end"]["queue"], "Support");
        // The attribute the flow set is on the interaction.
        let admin = app.login("admin").await;
        let id = i["id"].as_str().unwrap();
        let got = json_ok(app.get(&format!("/api/v1/interactions/{id}"), &admin).await, 200).await;
        assert_eq!(got["attributes"]["choice"], "2", "{got}");
        // Counted for Prometheus.
        let text = app.get("/metrics", &Creds::None).await.text().await.unwrap();
        assert!(text.contains("switchboard_flow_sessions_total{outcome=\"queue\"} 1"), "{text}");
        assert!(text.contains("switchboard_flow_step_duration_seconds_count"), "{text}");
    }

    async fn a_failing_flow_hands_the_caller_to_the_fallback_queue(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        let admin = app.login("admin").await;
        json_ok(
            app.req(reqwest::Method::PUT, "/api/v1/flow-settings", &admin)
                .json(&json!({ "fallback_queue": "Billing", "http_allowed_hosts": [] }))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        // Runs fine until the caller answers, then indexes out of range.
        let broken = "answer();\nlet d = gather(#{ timeout: 3 });\nlet x = [1, 2][5];\nqueue(\"Sales\");\n";
        publish(&app, "broken", broken, "").await;
        bind_number(&app, "broken").await;
        let sipp = sipp_to(&app, dir.path(), "fallback", NUMBER, &[Step::Pause(500), digit_pcap("1"), Step::Pause(3000)], 1);
        // The fallback is recorded once the call is queued: wait for it.
        let (_, evs) = call_with(&app, "flow_fallback", 30).await;
        assert_sipp_ok(&sipp.await.unwrap(), "the caller", dir.path());
        let err = evs.iter().find(|e| e["kind"] == "flow_error").expect("a flow_error event");
        assert_eq!(err["data"]["flow"], "broken");
        assert_eq!(err["data"]["line"], 3, "{err}");
        assert!(err["data"]["message"].as_str().unwrap().to_lowercase().contains("index"), "{err}");
        let queued = evs.iter().find(|e| e["kind"] == "queued").unwrap();
        assert_eq!(queued["data"]["queue_id"], queue_id(&app, "Billing").await);
        assert!(kinds(&evs).contains(&"flow_fallback"));
    }
}

both_backends! {
    async fn a_live_call_finishes_on_its_version_while_another_is_published(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        let v1 = "answer();\nlet d = gather(#{ timeout: 8 });\nqueue(\"Sales\");\n";
        publish(&app, "hot", v1, "").await;
        bind_number(&app, "hot").await;
        let sipp = sipp_to(&app, dir.path(), "hot", NUMBER, &[Step::Pause(3000), digit_pcap("5"), Step::Pause(2000)], 1);
        // The call is in version 1, waiting for a digit: publish version 2.
        call_with(&app, "flow_entered", 20).await;
        let v2 = publish(&app, "hot", "answer();\nqueue(\"Support\");\n", "").await;
        assert_eq!(v2, 2);
        let (_, evs) = call_with(&app, "queued", 30).await;
        assert_sipp_ok(&sipp.await.unwrap(), "the caller", dir.path());
        let ended = evs.iter().find(|e| e["kind"] == "flow_ended").unwrap();
        assert_eq!(ended["data"]["version"], 1, "{ended}");
        assert_eq!(ended["data"]["end"]["queue"], "Sales");
        let gather = steps_of(&evs, "gather");
        assert_eq!(gather[0]["data"]["answer"], "5");
        let queued = evs.iter().find(|e| e["kind"] == "queued").unwrap();
        assert_eq!(queued["data"]["queue_id"], queue_id(&app, "Sales").await);
    }

    async fn a_call_is_routed_by_what_the_caller_says(app) configure(speech_on) {
        let dir = tempfile::tempdir().unwrap();
        let flow = r#"answer();
let h = listen(#{ phrases: ["영업부", "고객 지원", "상담원 연결"], timeout: 10 });
set("heard", h.text);
if h.text == "고객 지원" { queue("Support") }
else if h.text == "영업부" { queue("Sales") }
else { hangup() }
"#;
        publish(&app, "speech-e2e", flow, "").await;
        bind_number(&app, "speech-e2e").await;
        // Whole calls are transcribed too, once they end.
        let admin = app.login("admin").await;
        json_ok(
            app.req(reqwest::Method::PUT, "/api/v1/flow-settings", &admin)
                .json(&json!({ "transcribe_calls": true }))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        // "고객 지원" (customer support) in espeak-ng's Korean voice, then
        // a second of silence (the recogniser hears the utterance end).
        let mut speech = speech_in(dir.path(), Some("ko"), "고객 지원");
        let ms = speech.ulaw.len() as u64 / 8 + 1000;
        speech.ulaw.extend(std::iter::repeat_n(0xFFu8, 8000));
        let pcap = dir.path().join("speech.pcap");
        write_speech_pcap(&pcap, &speech);
        let sipp = sipp_to(&app, dir.path(), "speech", NUMBER, &[Step::Pause(300), Step::Play(pcap), Step::Pause(ms + 2500)], 1);
        let (i, evs) = call_with(&app, "queued", 40).await;
        assert_sipp_ok(&sipp.await.unwrap(), "the speaking caller", dir.path());
        let listens = steps_of(&evs, "listen");
        assert_eq!(listens.len(), 1, "{:?}", kinds(&evs));
        let heard = &listens[0]["data"]["answer"];
        assert_eq!(heard["text"], "고객 지원", "{heard}");
        assert_eq!(heard["available"], true);
        assert!(heard["confidence"].as_f64().unwrap() > 0.3, "{heard}");
        let queued = evs.iter().find(|e| e["kind"] == "queued").unwrap();
        assert_eq!(queued["data"]["queue_id"], queue_id(&app, "Support").await);
        let admin = app.login("admin").await;
        let id = i["id"].as_str().unwrap();
        let got = json_ok(app.get(&format!("/api/v1/interactions/{id}"), &admin).await, 200).await;
        assert_eq!(got["attributes"]["heard"], "고객 지원");
        // The caller hung up: the recording's transcript follows the close.
        let (_, evs) = call_with(&app, "transcript", 60).await;
        let t = evs.iter().find(|e| e["kind"] == "transcript").unwrap();
        assert_eq!(t["data"]["source"], "call");
        assert!(t["data"]["secs"].as_f64().unwrap() > 1.0, "{t}");
        assert!(t["data"]["text"].is_string(), "{t}");
        assert_eq!(t["actor"], "asr");
        assert_eq!(evs.iter().filter(|e| e["kind"] == "hangup").count(), 1);
    }
}

/// A tiny HTTP server for flows' lookups: `/small` answers a short JSON
/// body, `/big` 100 KiB, `/slow` never answers.
async fn lookup_server() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if req.starts_with("GET /small") {
                    "{\"tier\":\"gold\"}".to_owned()
                } else if req.starts_with("GET /big") {
                    "x".repeat(100 * 1024)
                } else {
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    return;
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    port
}

both_backends! {
    async fn hold_music_and_position_announcements_while_queued(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        put_prompt(&app, "hold_music", dir.path(), "Please hold, your call is important to us.").await;
        put_prompt(&app, "queue_position_1", dir.path(), "You are first in line.").await;
        publish(&app, "held", "answer();\nqueue(\"Sales\", #{ hold: \"hold_music\", announce: 2 });\n", "").await;
        bind_number(&app, "held").await;
        // Nobody is available in the demo's Sales queue: the caller waits 7 s.
        let sipp = sipp_to(&app, dir.path(), "held", NUMBER, &[Step::Pause(7000)], 1);
        assert_sipp_ok(&sipp.await.unwrap(), "the waiting caller", dir.path());
        let (_, evs) = call_with(&app, "hangup", 30).await;
        let announced: Vec<_> = evs.iter().filter(|e| e["kind"] == "queue_position_announced").collect();
        assert!(!announced.is_empty(), "{:?}", kinds(&evs));
        assert_eq!(announced[0]["data"]["place"], 1);
        assert_eq!(announced[0]["data"]["prompt"], "queue_position_1");
        // The caller heard audio all along (hold music and announcements):
        // 7 s of 20 ms packets is 350; allow for the start.
        let cdr = &evs.iter().find(|e| e["kind"] == "hangup").unwrap()["data"]["cdr"];
        assert!(cdr["packets_out"].as_u64().unwrap() > 200, "{cdr}");
    }

    async fn a_message_is_recorded_stored_and_transcribed(app) configure(speech_on) {
        let dir = tempfile::tempdir().unwrap();
        let flow = "answer();\nlet m = record(#{ max_secs: 10 });\nset(\"secs\", m.secs);\nset(\"voicemail\", m.recording);\nqueue(\"Support\");\n";
        publish(&app, "voicemail", flow, "").await;
        bind_number(&app, "voicemail").await;
        let mut speech = speech_in(dir.path(), Some("ko"), "안녕하세요 내일 다시 전화 주세요");
        let ms = speech.ulaw.len() as u64 / 8;
        // Then the caller presses # to end the message.
        speech.ulaw.extend(std::iter::repeat_n(0xFFu8, 4000));
        let pcap = dir.path().join("message.pcap");
        write_speech_pcap(&pcap, &speech);
        let sipp = sipp_to(&app, dir.path(), "voicemail", NUMBER, &[Step::Pause(300), Step::Play(pcap), Step::Pause(ms + 600), digit_pcap("#"), Step::Pause(3000)], 1);
        let (_, evs) = call_with(&app, "queued", 40).await;
        assert_sipp_ok(&sipp.await.unwrap(), "the caller leaving a message", dir.path());
        let vm = evs.iter().find(|e| e["kind"] == "voicemail").expect("a voicemail event");
        let secs = vm["data"]["secs"].as_f64().unwrap();
        // The message is the speech (and the half second after it), ended by #.
        assert!(secs > ms as f64 / 1000.0 * 0.8 && secs < ms as f64 / 1000.0 + 3.0, "{vm}");
        let path = app.dir.path().join(vm["data"]["recording"].as_str().unwrap());
        let audio = switchboard::media::wav::load(&path).expect("the message is a WAV file");
        assert!((audio.duration_secs() - secs).abs() < 0.1, "{vm}");
        assert!(!vm["data"]["transcript"].as_str().unwrap().is_empty(), "the message was transcribed: {vm}");
        let rec = steps_of(&evs, "record");
        assert_eq!(rec[0]["data"]["answer"]["recording"], vm["data"]["recording"]);
    }

    async fn flow_http_lookups_are_limited_in_size_and_time(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        let port = lookup_server().await;
        let admin = app.login("admin").await;
        json_ok(
            app.req(reqwest::Method::PUT, "/api/v1/flow-settings", &admin)
                .json(&json!({ "http_allowed_hosts": ["127.0.0.1"] }))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        let flow = format!(
            "answer();\nlet a = http_get(\"http://127.0.0.1:{port}/small\");\nset(\"tier\", parse_json(a.body).tier);\nlet b = http_get(\"http://127.0.0.1:{port}/big\");\nset(\"big\", b.error);\nlet c = http_get(\"http://127.0.0.1:{port}/slow\", #{{ timeout: 1 }});\nset(\"slow\", c.status);\nqueue(\"Sales\");\n"
        );
        publish(&app, "lookups", &flow, "").await;
        bind_number(&app, "lookups").await;
        let sipp = sipp_to(&app, dir.path(), "lookups", NUMBER, &[Step::Pause(5000)], 1);
        let (i, evs) = call_with(&app, "queued", 30).await;
        assert_sipp_ok(&sipp.await.unwrap(), "the caller", dir.path());
        let id = i["id"].as_str().unwrap();
        let got = json_ok(app.get(&format!("/api/v1/interactions/{id}"), &admin).await, 200).await;
        assert_eq!(got["attributes"]["tier"], "gold", "{got}");
        assert!(got["attributes"]["big"].as_str().unwrap().contains("64 KiB"), "{got}");
        assert_eq!(got["attributes"]["slow"], 0, "{got}");
        assert_eq!(steps_of(&evs, "http").len(), 3);
    }
}

fn transfer_on(s: &mut switchboard::config::Settings) {
    calls_on(s);
    s.sip.rtp_port_min = 49000;
    s.sip.rtp_port_max = 49999;
    // No OPTIONS keep-alive at the far end (SIPp would take it for a call).
    s.sip.trunk_keepalive_secs = 3600;
}

both_backends! {
    async fn a_flow_transfers_the_caller_out_through_the_trunk(app) configure(transfer_on) {
        let far_dir = tempfile::tempdir().unwrap();
        let far_port = crate::sipp::free_port();
        let trunk = crate::sip_trunks::add_trunk(&app, far_port, json!({})).await;
        // SIPp's own UAS: rings, answers, waits for the BYE.
        let far = crate::sipp::far_end(far_dir.path(), None, far_port, 1).await;
        publish(&app, "out", "answer();\nlog(\"to the head office\");\ntransfer(\"+12024561414\");\n", "").await;
        bind_number(&app, "out").await;
        let dir = tempfile::tempdir().unwrap();
        let sipp = sipp_to(&app, dir.path(), "transferred", NUMBER, &[Step::Pause(4000)], 1);
        let (i, evs) = call_with(&app, "bridged", 30).await;
        assert_sipp_ok(&sipp.await.unwrap(), "the caller", dir.path());
        crate::sipp::assert_ok(&far.await.unwrap(), far_dir.path());
        let ended = evs.iter().find(|e| e["kind"] == "flow_ended").unwrap();
        assert_eq!(ended["data"]["end"]["kind"], "transfer");
        assert_eq!(ended["data"]["end"]["to"], "+12024561414");
        let bridged = evs.iter().find(|e| e["kind"] == "bridged").unwrap();
        assert_eq!(bridged["data"]["to"], "+12024561414");
        assert_eq!(bridged["data"]["trunk_id"], trunk.as_str());
        let k = kinds(&evs);
        let pos = |w: &str| k.iter().position(|x| *x == w).unwrap();
        assert!(pos("flow_ended") < pos("connected") && pos("connected") <= pos("bridged"), "{k:?}");
        // Both legs ended with the caller's BYE.
        let (_, evs) = call_with(&app, "hangup", 20).await;
        let hangup = evs.iter().find(|e| e["kind"] == "hangup").unwrap();
        assert_eq!(hangup["data"]["cdr"]["forwarded"]["to"], "+12024561414", "{hangup}");
        assert_eq!(i["direction"], "inbound");
    }
}
