//! The B2BUA's agent leg: a SIPp caller (`uac_pcap`) reaches a queue, the
//! offered agent's registered phone (a SIPp `uas` with a scenario written
//! here, registered by a raw REGISTER from the test) rings, answers and is
//! bridged to the caller; the caller's BYE ends both legs. A phone that
//! answers 486 rejects the offer and the caller keeps waiting.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::sip::digest::{self, Algorithm};
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::helpers::*;
use crate::sip_calls::{events, sip_addr, status, voice_interactions};
use crate::sipp::Provisional::{Ringing, RingingWithContact};
use crate::sipp::{
    self, Final, HangsUp, PCMA, Sdp, assert_ran, free_port, play_pcap, uas_scenario,
};

const NUMBER: &str = "+442071838750";
pub(crate) const PASSWORD: &str = "desk-phone-secret-1";

pub(crate) fn calls_on(s: &mut switchboard::config::Settings) {
    s.sip.enabled = true;
    s.sip.rtp_bind = "127.0.0.1".parse().unwrap();
    // Apart from the other SIP tests' ports (they may run at once).
    s.sip.rtp_port_min = 48000;
    s.sip.rtp_port_max = 48999;
}

/// Alex (agent@example.com, the only agent with the Sales skill) and the
/// Sales queue.
async fn alex_and_sales(app: &TestApp) -> (String, String) {
    let sup = app.login("supervisor").await;
    let admin = app.login("admin").await;
    let agents = json_ok(app.get("/api/v1/agents", &sup).await, 200).await;
    let users = json_ok(app.get("/api/v1/users?limit=200", &admin).await, 200).await;
    let alex_user = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "agent@example.com")
        .unwrap()["id"]
        .clone();
    let alex = agents["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["user_id"] == alex_user)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queues = json_ok(app.get("/api/v1/queues", &sup).await, 200).await;
    let sales = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "Sales")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (alex, sales)
}

/// The number to Sales, a SIP account linked to Alex.
pub(crate) async fn set_up(app: &TestApp) -> String {
    let (alex, sales) = alex_and_sales(app).await;
    let admin = app.login("admin").await;
    let r = app
        .post(
            "/api/v1/sip/numbers",
            &admin,
            &json!({ "number": NUMBER, "queue_id": sales }),
        )
        .await;
    json_ok(r, 201).await;
    let r = app
        .post(
            "/api/v1/sip/accounts",
            &admin,
            &json!({ "username": "1001", "password": PASSWORD, "agent_id": alex }),
        )
        .await;
    json_ok(r, 201).await;
    alex
}

pub(crate) async fn available(app: &TestApp, alex: &str) {
    let me = app.login("agent").await;
    let r = app
        .req(Method::PUT, &format!("/api/v1/agents/{alex}/presence"), &me)
        .json(&json!({ "presence": "available" }))
        .send()
        .await
        .unwrap();
    json_ok(r, 200).await;
}

/// REGISTER of account 1001 (MD5 digest) with `contact`, from a raw socket.
pub(crate) async fn register(server: SocketAddr, contact: &str) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let domain = "demo.sip.test";
    let call_id = format!("{}@test", uuid::Uuid::new_v4().simple());
    let request = |cseq: u32, auth: Option<String>| {
        format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: <sip:1001@{domain}>;tag=reg1\r\nTo: <sip:1001@{domain}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n",
            b = uuid::Uuid::new_v4().simple(),
            auth = auth.map(|a| format!("{a}\r\n")).unwrap_or_default(),
        )
    };
    let mut buf = vec![0u8; 65536];
    sock.send_to(request(1, None).as_bytes(), server)
        .await
        .unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a challenge")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(status(&first), 401, "{first}");
    let challenge = first
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("algorithm=MD5"))
        .expect("an MD5 challenge");
    let param = |k: &str| {
        let i = challenge.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
        challenge[i..].split('"').next().unwrap().to_owned()
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let uri = format!("sip:{domain}");
    let ha1 = digest::ha1(Algorithm::Md5, "1001", &realm, PASSWORD);
    let creds = digest::Credentials {
        username: "1001".into(),
        realm: realm.clone(),
        nonce: nonce.clone(),
        uri: uri.clone(),
        response: String::new(),
        algorithm: Algorithm::Md5,
        qop: Some("auth".into()),
        nc: Some("00000001".into()),
        cnonce: Some("abc123".into()),
    };
    let resp = digest::expected_response(Algorithm::Md5, &ha1, "REGISTER", &creds).unwrap();
    let auth = format!(
        "Authorization: Digest username=\"1001\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc123\""
    );
    sock.send_to(request(2, Some(auth)).as_bytes(), server)
        .await
        .unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let r = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(status(&r), 200, "{r}");
}

/// The agent's phone: answers with PCMA and plays g711a.pcap, then waits
/// for the BYE.
fn answering_phone() -> String {
    let sdp = Sdp {
        origin: "phone 53655765 2353687637",
        media: PCMA,
    };
    let then = play_pcap("pcap/g711a.pcap");
    let answered = Final::Answered {
        sdp,
        then: &then,
        hangs_up: HangsUp::Caller,
    };
    uas_scenario("agent phone answers", &[RingingWithContact], 0, answered)
}

/// The agent's phone is busy: 180, then 486.
fn busy_phone() -> String {
    uas_scenario(
        "agent phone busy",
        &[Ringing],
        0,
        Final::Refused("486 Busy Here", ""),
    )
}

/// The phone (SIPp uas with `scenario`) registered as account 1001; its
/// run in the background.
async fn phone(
    app: &TestApp,
    dir: &Path,
    scenario: &str,
) -> (tokio::task::JoinHandle<std::process::Output>, u16) {
    let port = free_port();
    let media = free_udp_block(20);
    let uas = sipp::uas(dir, Some(scenario), port, media + 10, 1, &[]).await;
    register(sip_addr(app), &format!("sip:1001@127.0.0.1:{port}")).await;
    (uas, media)
}

/// SIPp `uac_pcap` calling our number (about 5 s of PCMA, a digit, BYE).
fn caller(app: &TestApp, dir: &Path, media: u16) -> tokio::task::JoinHandle<std::process::Output> {
    sipp::uac(
        dir,
        sip_addr(app),
        ["-sn", "uac_pcap"],
        "442071838750",
        media,
        30,
    )
}

pub(crate) async fn the_call(app: &TestApp) -> Option<Value> {
    voice_interactions(app).await.into_iter().next()
}

pub(crate) fn event<'a>(evs: &'a [Value], kind: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {evs:?}"))
}

pub(crate) async fn nothing_left(app: &TestApp, ports: &[SocketAddr]) {
    eventually(10, "no media task is left", || async {
        (switchboard::media::session::live_tasks() == 0).then_some(())
    })
    .await;
    for p in ports {
        std::net::UdpSocket::bind(p).expect("the RTP port can be bound again");
        std::net::UdpSocket::bind(SocketAddr::new(p.ip(), p.port() + 1))
            .expect("the RTCP port too");
    }
    let _ = app;
}

both_backends! {
    async fn the_agents_phone_rings_answers_and_is_bridged_to_the_caller(app) configure(calls_on) {
        let alex = set_up(&app).await;
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/usr/share/sip-tester", dir.path().join("pcap")).unwrap();
        let (uas, media) = phone(&app, dir.path(), &answering_phone()).await;
        available(&app, &alex).await;
        let uac = caller(&app, dir.path(), media);
        let out = uac.await.unwrap();
        assert_ran(&out, "the caller (sipp uac_pcap)", dir.path());
        // The phone got the INVITE, answered, and got the BYE.
        let out = uas.await.unwrap();
        assert_ran(&out, "the agent's phone (sipp uas)", dir.path());

        let (i, evs) = eventually(20, "the agent leg has ended", || async {
            let i = the_call(&app).await?;
            let evs = events(&app, i["id"].as_str().unwrap()).await;
            evs.iter().any(|e| e["kind"] == "agent_leg_ended").then_some((i, evs))
        })
        .await;
        let kinds: Vec<&str> = evs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        for k in ["answered", "offered", "agent_leg_calling", "connected", "bridged", "hangup", "wrap_up_started", "agent_leg_ended"] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
        assert!(pos("offered") < pos("connected") && pos("connected") < pos("bridged"), "{kinds:?}");
        // Accepted by the phone's answer, as Alex, through SIP.
        let connected = event(&evs, "connected");
        assert_eq!(connected["actor"], "sip", "{connected}");
        assert_eq!(i["agent_id"], alex.as_str());
        assert_eq!(i["state"], "wrap_up", "{i}");
        // The caller's BYE ended the call and then the agent's leg.
        let hangup = event(&evs, "hangup");
        assert_eq!(hangup["data"]["cause"], "caller_bye");
        let leg = event(&evs, "agent_leg_ended");
        assert_eq!(leg["data"]["cause"], "caller_hangup", "{leg}");
        // Audio went both ways through the bridge: the caller's pcap to the
        // phone, the phone's pcap to the caller.
        let caller_cdr = &hangup["data"]["cdr"];
        let leg_cdr = &leg["data"]["cdr"];
        assert_eq!(leg_cdr["codec"], "PCMA");
        for (what, v) in [
            ("from the caller", &caller_cdr["packets_in"]),
            ("to the phone", &leg_cdr["packets_out"]),
            ("from the phone", &leg_cdr["packets_in"]),
            ("to the caller", &caller_cdr["packets_out"]),
        ] {
            assert!(v.as_u64().unwrap() > 100, "packets {what}: caller {caller_cdr} phone {leg_cdr}");
        }
        // Alex is wrapping up.
        let me = app.login("agent").await;
        let desk = json_ok(app.get("/api/v1/agents/me/desk", &me).await, 200).await;
        assert_eq!(desk["wrap_ups"].as_array().map(|w| w.len()), Some(1), "{desk}");
        // Nothing left: no media task, both legs' ports free.
        let rtp = |k: &str, f: &str| -> SocketAddr { event(&evs, k)["data"][f].as_str().unwrap().parse().unwrap() };
        nothing_left(&app, &[rtp("answered", "rtp"), rtp("bridged", "rtp")]).await;
    }

    async fn a_busy_phone_rejects_and_the_caller_keeps_waiting(app) configure(calls_on) {
        let alex = set_up(&app).await;
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/usr/share/sip-tester", dir.path().join("pcap")).unwrap();
        let (uas, media) = phone(&app, dir.path(), &busy_phone()).await;
        available(&app, &alex).await;
        let uac = caller(&app, dir.path(), media);
        // While the caller is still on (its pcap plays for ~5 s): the offer
        // was rejected and it waits first in the queue.
        let sup = app.login("supervisor").await;
        let (id, why) = eventually(4, "the offer is rejected", || async {
            let i = the_call(&app).await?;
            let id = i["id"].as_str().unwrap().to_owned();
            let evs = events(&app, &id).await;
            evs.iter().any(|e| e["kind"] == "agent_leg_ended").then_some(())?;
            let why = json_ok(app.get(&format!("/api/v1/interactions/{id}/routing"), &sup).await, 200).await;
            Some((id, why))
        })
        .await;
        assert_eq!(why["now"]["state"], "waiting", "{why}");
        assert_eq!(why["position"]["place"], 1, "{why}");
        let i = json_ok(app.get(&format!("/api/v1/interactions/{id}"), &sup).await, 200).await;
        assert_eq!(i["state"], "queued", "{i}");
        let out = uas.await.unwrap();
        assert_ran(&out, "the agent's phone (sipp uas)", dir.path());
        let out = uac.await.unwrap();
        assert_ran(&out, "the caller (sipp uac_pcap)", dir.path());
        let i = eventually(20, "the call is over", || async {
            let i = json_ok(app.get(&format!("/api/v1/interactions/{id}"), &sup).await, 200).await;
            (i["state"] == "closed").then_some(i)
        })
        .await;
        assert_eq!(i["close_reason"], "abandoned", "{i}");
        let evs = events(&app, &id).await;
        let kinds: Vec<&str> = evs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"offer_rejected"), "{kinds:?}");
        assert!(!kinds.contains(&"bridged") && !kinds.contains(&"connected"), "{kinds:?}");
        let leg = event(&evs, "agent_leg_ended");
        assert_eq!(leg["data"]["cause"], "declined", "{leg}");
        assert!(leg["data"]["cdr"]["answer"].is_null(), "{leg}");
        let answered: SocketAddr = event(&evs, "answered")["data"]["rtp"].as_str().unwrap().parse().unwrap();
        nothing_left(&app, &[answered]).await;
    }
}

/// The value of a header line of a raw message.
pub(crate) fn hv<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("")
}

/// A response to a raw request (its Via, From, Call-ID, CSeq; To tagged).
pub(crate) fn reply(req: &str, code: &str, tag: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for l in req.split("\r\n") {
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            out.push_str(l);
            out.push_str("\r\n");
        } else if lower.starts_with("to:") {
            out.push_str(l);
            if !l.contains(";tag=") {
                out.push_str(&format!(";tag={tag}"));
            }
            out.push_str("\r\n");
        }
    }
    let local = "Contact: <sip:1001@127.0.0.1>\r\n";
    if body.is_empty() {
        out.push_str(&format!("{local}Content-Length: 0\r\n\r\n"));
    } else {
        out.push_str(&format!(
            "{local}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    out
}

/// The next request with `method` on `sock` (responses and others skipped).
pub(crate) async fn next_request(
    sock: &UdpSocket,
    method: &str,
    secs: u64,
) -> (String, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {method} within {secs} s; got {seen:?}"))
            .unwrap();
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with(&format!("{method} ")) {
            return (m, from);
        }
        seen.push(m);
    }
}

/// A raw caller's call from `caller` to the Sales number: the INVITE
/// with `sdp` (Call-ID `call_id`, Via branch `z9hG4bK{branch}1`), and our
/// 200 (returned) ACKed (branch `z9hG4bK{branch}2`).
pub(crate) async fn invite_sales(
    caller: &UdpSocket,
    server: SocketAddr,
    call_id: &str,
    branch: &str,
    sdp: &str,
) -> String {
    let cl = caller.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:442071838750@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {cl};branch=z9hG4bK{branch}1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@127.0.0.1>;tag=caller1\r\nTo: <sip:442071838750@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{cl}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    caller.send_to(invite.as_bytes(), server).await.unwrap();
    let ok = next_response(caller, 200, 5).await;
    let ack = format!(
        "ACK sip:442071838750@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {cl};branch=z9hG4bK{branch}2;rport\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@127.0.0.1>;tag=caller1\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        hv(&ok, "To")
    );
    caller.send_to(ack.as_bytes(), server).await.unwrap();
    ok
}

pub(crate) async fn next_response(sock: &UdpSocket, code: u16, secs: u64) -> String {
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (n, _) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {code} within {secs} s"))
            .unwrap();
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("SIP/2.0 ") && status(&m) == code {
            return m;
        }
    }
}

both_backends! {
    async fn an_unanswered_phone_is_cancelled_and_the_phones_bye_ends_the_call(app) configure(calls_on) {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        use switchboard::acd::catalog::queue;
        let alex = set_up(&app).await;
        let sup = app.login("supervisor").await;
        let tenant: switchboard::ids::TenantId = json_ok(app.get("/api/v1/tenant", &sup).await, 200).await["id"]
            .as_str().unwrap().parse().unwrap();
        // Offers to Sales ring for 2 s.
        queue::Entity::update_many()
            .col_expr(queue::Column::Config, Expr::value(json!({ "offer_timeout_secs": 2 })))
            .filter(queue::Column::TenantId.eq(tenant))
            .filter(queue::Column::Name.eq("Sales"))
            .exec(&app.state.db.conn)
            .await
            .unwrap();
        app.state.acd.reload(tenant);
        let server = sip_addr(&app);
        // The phone: a raw socket registered as 1001.
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        register(server, &format!("sip:1001@{}", phone.local_addr().unwrap())).await;
        available(&app, &alex).await;
        // The caller: a raw INVITE to the number (no RTP needed).
        let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let body = "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49990 RTP/AVP 0\r\n";
        invite_sales(&caller, server, "raw-caller@test", "c", body).await;

        // First offer: the phone rings and nobody answers; the ACD's
        // no-answer CANCELs it (200 to the CANCEL, 487 to the INVITE, ACK).
        let (inv, from) = next_request(&phone, "INVITE", 5).await;
        assert!(hv(&inv, "From").contains("+441632960001"), "{inv}");
        phone.send_to(reply(&inv, "180 Ringing", "ph1", "").as_bytes(), from).await.unwrap();
        let (cancel, from) = next_request(&phone, "CANCEL", 6).await;
        assert_eq!(hv(&cancel, "Call-ID"), hv(&inv, "Call-ID"));
        phone.send_to(reply(&cancel, "200 OK", "ph1", "").as_bytes(), from).await.unwrap();
        phone.send_to(reply(&inv, "487 Request Terminated", "ph1", "").as_bytes(), from).await.unwrap();
        let (ack, _) = next_request(&phone, "ACK", 5).await;
        assert_eq!(hv(&ack, "Call-ID"), hv(&inv, "Call-ID"));

        // Alex (set away by the no-answer) comes back: the phone rings
        // again, answers, and hangs up first.
        available(&app, &alex).await;
        let (inv, from) = next_request(&phone, "INVITE", 5).await;
        let sdp = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49992 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let pl = phone.local_addr().unwrap();
        let ok = reply(&inv, "200 OK", "ph2", sdp).replace("<sip:1001@127.0.0.1>", &format!("<sip:1001@{pl}>"));
        phone.send_to(ok.as_bytes(), from).await.unwrap();
        let (ack, _) = next_request(&phone, "ACK", 5).await;
        assert!(hv(&ack, "To").contains("tag=ph2"), "{ack}");
        let id = eventually(10, "the call is bridged", || async {
            let i = the_call(&app).await?;
            let id = i["id"].as_str().unwrap().to_owned();
            let evs = events(&app, &id).await;
            evs.iter().any(|e| e["kind"] == "bridged").then_some(id)
        })
        .await;
        let bye = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {pl};branch=z9hG4bKp3;rport\r\nMax-Forwards: 70\r\nFrom: {to};tag=ph2\r\nTo: {from_h}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            target = hv(&inv, "Contact").trim_matches(|c| c == '<' || c == '>'),
            to = hv(&inv, "To"),
            from_h = hv(&inv, "From"),
            cid = hv(&inv, "Call-ID"),
        );
        phone.send_to(bye.as_bytes(), from).await.unwrap();
        next_response(&phone, 200, 5).await;
        // The caller is hung up on.
        let (bye, from) = next_request(&caller, "BYE", 5).await;
        caller.send_to(reply(&bye, "200 OK", "x", "").as_bytes(), from).await.unwrap();

        let evs = eventually(10, "both legs have ended", || async {
            let evs = events(&app, &id).await;
            (evs.iter().filter(|e| e["kind"] == "agent_leg_ended").count() == 2
                && evs.iter().any(|e| e["kind"] == "hangup"))
                .then_some(evs)
        })
        .await;
        let kinds: Vec<&str> = evs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"offer_timed_out"), "{kinds:?}");
        let legs: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "agent_leg_ended").collect();
        assert_eq!(legs[0]["data"]["cause"], "cancelled", "{legs:?}");
        assert_eq!(legs[1]["data"]["cause"], "agent_bye", "{legs:?}");
        assert_eq!(event(&evs, "hangup")["data"]["cause"], "agent_hangup");
        let i = json_ok(app.get(&format!("/api/v1/interactions/{id}"), &sup).await, 200).await;
        assert_eq!((i["state"].as_str(), i["agent_id"].as_str()), (Some("wrap_up"), Some(alex.as_str())), "{i}");
        let rtp = |k: &str| -> SocketAddr { event(&evs, k)["data"]["rtp"].as_str().unwrap().parse().unwrap() };
        nothing_left(&app, &[rtp("answered"), rtp("bridged")]).await;
    }
}
