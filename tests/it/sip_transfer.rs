//! Blind transfer (REFER) from the agent's desk phone: a raw caller reaches
//! Sales, Alex's phone (a raw socket registered as 1001) answers and is
//! bridged, then REFERs the caller to an outside number. Refused first: a
//! number abroad and a premium-rate one (403), a Replaces naming no call
//! (481), all changing nothing. Then a good target: 202, NOTIFY
//! 100 and, once the far end (SIPp through the tenant's trunk, echoing RTP)
//! answers, NOTIFY 200 and our BYE to the phone. The caller stays on with
//! the far end; its BYE ends that leg. The original interaction records the
//! transfer and goes to Alex's wrap-up; the transferred call is an
//! interaction of its own with the far end's CDR.
//!
//! Attended transfer: the phone first calls an outside number through us
//! (digest-authenticated, out through the tenant's trunk to the SIPp far
//! end: the consult call), then REFERs the caller with Replaces naming that
//! call. The caller is bridged to the consult call's far end, both of the
//! phone's calls get our BYE, and the audio keeps flowing to the far end.

use std::net::SocketAddr;

use serde_json::json;
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::helpers::*;
use crate::sip_bridge::{
    PASSWORD, available, event, hv, invite_sales, next_request, next_response, nothing_left,
    register, reply, set_up,
};
use crate::sip_calls::{events, sip_addr, voice_interactions as voice};
use crate::sip_trunks::add_trunk;
use crate::sipp::{assert_ok, early_media_then_answer, far_end_with, free_port};

fn transfers_on(s: &mut switchboard::config::Settings) {
    crate::sip_bridge::calls_on(s);
    // Apart from the other SIP tests' ports (they may run at once).
    s.sip.rtp_port_min = 54000;
    s.sip.rtp_port_max = 54999;
    s.sip.trunk_keepalive_secs = 3600;
}

/// A request from the phone in the dialog our INVITE (`inv`) made, after
/// it answered with tag `tag`.
fn from_phone(
    phone: SocketAddr,
    inv: &str,
    tag: &str,
    method: &str,
    cseq: u32,
    extra: &str,
) -> String {
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: {to};tag={tag}\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@{phone}>\r\n{extra}Content-Length: 0\r\n\r\n",
        target = hv(inv, "Contact").trim_matches(|c| c == '<' || c == '>'),
        b = uuid::Uuid::new_v4().simple(),
        to = hv(inv, "To"),
        from = hv(inv, "From"),
        cid = hv(inv, "Call-ID"),
    )
}

/// Everything the caller's side needs: a raw INVITE (PCMA) to the Sales
/// number, ACKed, with RTP sent every 20 ms from then on. Returns the
/// socket, our 200 and the talking task.
async fn call_sales(
    server: SocketAddr,
    call_id: &str,
) -> (UdpSocket, String, tokio::task::JoinHandle<()>) {
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let caller_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let body = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n",
        caller_media.local_addr().unwrap().port()
    );
    let ok = invite_sales(&caller, server, call_id, "t", &body).await;
    let our_media: SocketAddr = {
        let sdp = ok.split("\r\n\r\n").nth(1).unwrap();
        let port: u16 = sdp
            .lines()
            .find(|l| l.starts_with("m=audio"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    let talker = tokio::spawn(async move {
        for seq in 0u16..1500 {
            let mut p = vec![0x80, 8];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            p.extend(std::iter::repeat_n(0xd5u8, 160));
            let _ = caller_media.send_to(&p, our_media).await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    (caller, ok, talker)
}

/// The caller's side of a call (talking from `call_sales` on) and the far
/// end it is transferred to.
struct Caller {
    server: SocketAddr,
    socket: UdpSocket,
    /// Our 200 to its INVITE.
    ok: String,
    talker: tokio::task::JoinHandle<()>,
    far: tokio::task::JoinHandle<std::process::Output>,
    far_dir: tempfile::TempDir,
}

impl Caller {
    /// The caller talks for a while (to the far end, by now), then hangs
    /// up (BYE, 200); the far end's scenario ran through.
    async fn hangs_up_later(self) {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let Caller {
            server, socket, ok, ..
        } = &self;
        let cl = socket.local_addr().unwrap();
        let bye = format!(
            "BYE sip:442071838750@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {cl};branch=z9hG4bKt3;rport\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@127.0.0.1>;tag=caller1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            hv(ok, "To"),
            hv(ok, "Call-ID"),
        );
        socket.send_to(bye.as_bytes(), *server).await.unwrap();
        next_response(socket, 200, 5).await;
        self.talker.abort();
        assert_ok(&self.far.await.unwrap(), self.far_dir.path());
    }
}

/// The phone answers our INVITE (tag `tag`, PCMA) and gets the ACK.
async fn phone_answers(phone: &UdpSocket, tag: &str) -> (String, SocketAddr) {
    let pl = phone.local_addr().unwrap();
    let (inv, from) = next_request(phone, "INVITE", 5).await;
    let sdp = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49994 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    let answer = reply(&inv, "200 OK", tag, sdp)
        .replace("<sip:1001@127.0.0.1>", &format!("<sip:1001@{pl}>"));
    phone.send_to(answer.as_bytes(), from).await.unwrap();
    next_request(phone, "ACK", 5).await;
    (inv, from)
}

/// Both transfers' start: the tenant's trunk to a SIPp far end (early
/// media, then an echo), Alex's phone (a raw socket registered as 1001)
/// available, and a caller (Call-ID `call_id`) to Sales that the phone
/// answers (tag `tag`) and is bridged to.
struct Bridged {
    alex: String,
    server: SocketAddr,
    trunk: String,
    phone: UdpSocket,
    /// The phone's address.
    pl: SocketAddr,
    /// Our INVITE to the phone, and where it came from.
    inv: String,
    from: SocketAddr,
    /// The caller's interaction.
    original: String,
    caller: Caller,
}

async fn bridged_to_alex(app: &TestApp, call_id: &str, tag: &str) -> Bridged {
    let alex = set_up(app).await;
    let server = sip_addr(app);
    let far_dir = tempfile::tempdir().unwrap();
    let far_port = free_port();
    let trunk = add_trunk(app, far_port, json!({})).await;
    let scenario = early_media_then_answer();
    let far = far_end_with(far_dir.path(), Some(&scenario), far_port, 1, &["-rtp_echo"]).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let pl = phone.local_addr().unwrap();
    register(server, &format!("sip:1001@{pl}")).await;
    available(app, &alex).await;
    let (socket, ok, talker) = call_sales(server, call_id).await;
    // Alex's phone rings and answers.
    let (inv, from) = phone_answers(&phone, tag).await;
    let original = eventually(10, "the call is bridged to Alex", || async {
        let i = voice(app).await.into_iter().next()?;
        let id = i["id"].as_str().unwrap().to_owned();
        events(app, &id)
            .await
            .iter()
            .any(|e| e["kind"] == "bridged")
            .then_some(id)
    })
    .await;
    let caller = Caller {
        server,
        socket,
        ok,
        talker,
        far,
        far_dir,
    };
    Bridged {
        alex,
        server,
        trunk,
        phone,
        pl,
        inv,
        from,
        original,
        caller,
    }
}

both_backends! {
    async fn the_agents_phone_transfers_the_caller_blind_to_an_outside_number(app) configure(transfers_on) {
        let Bridged { alex, trunk, phone, pl, inv, from, original, caller, .. } =
            bridged_to_alex(&app, "transfer-caller@test", "ph9").await;

        // Refused: abroad, premium rate, a Replaces naming no call, no user.
        for (cseq, refer_to, want) in [
            (2, "<sip:+442071838770@demo.sip.test>", 403),
            (3, "<sip:19005550100@demo.sip.test>", 403),
            (4, "<sip:2024561414@demo.sip.test?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", 481),
            (5, "<sip:@demo.sip.test>", 400),
        ] {
            let refer = from_phone(pl, &inv, "ph9", "REFER", cseq, &format!("Refer-To: {refer_to}\r\nReferred-By: <sip:1001@demo.sip.test>\r\n"));
            phone.send_to(refer.as_bytes(), from).await.unwrap();
            let got = next_response(&phone, want, 5).await;
            assert!(hv(&got, "CSeq").starts_with(&cseq.to_string()), "{got}");
        }
        assert_eq!(voice(&app).await.len(), 1, "a refused transfer places no call");

        // The transfer: 202, NOTIFY 100, NOTIFY 200 once answered, BYE.
        let refer = from_phone(pl, &inv, "ph9", "REFER", 6, "Refer-To: <sip:2024561414@demo.sip.test>\r\n");
        phone.send_to(refer.as_bytes(), from).await.unwrap();
        next_response(&phone, 202, 5).await;
        let (n1, nfrom) = next_request(&phone, "NOTIFY", 5).await;
        assert!(n1.contains("SIP/2.0 100") && hv(&n1, "Event") == "refer" && hv(&n1, "Content-Type").starts_with("message/sipfrag"), "{n1}");
        phone.send_to(reply(&n1, "200 OK", "ph9", "").as_bytes(), nfrom).await.unwrap();
        let (n2, nfrom) = next_request(&phone, "NOTIFY", 10).await;
        assert!(n2.contains("SIP/2.0 200") && hv(&n2, "Subscription-State").starts_with("terminated"), "{n2}");
        phone.send_to(reply(&n2, "200 OK", "ph9", "").as_bytes(), nfrom).await.unwrap();
        let (bye, bfrom) = next_request(&phone, "BYE", 5).await;
        phone.send_to(reply(&bye, "200 OK", "ph9", "").as_bytes(), bfrom).await.unwrap();

        // The caller is with the far end now; a while later it hangs up.
        caller.hangs_up_later().await;

        let sup = app.login("supervisor").await;
        let transferred = eventually(15, "the transferred call is closed", || async {
            let all = voice(&app).await;
            let t = all.into_iter().find(|i| i["attributes"]["transferred_from"] == original.as_str())?;
            (t["state"] == "closed").then_some(t)
        })
        .await;
        assert_eq!(transferred["direction"], "outbound");
        assert_eq!(transferred["customer_address"], "+12024561414");
        assert_eq!(transferred["close_reason"], "completed", "{transferred}");
        let tevs = events(&app, transferred["id"].as_str().unwrap()).await;
        let hangup = &event(&tevs, "hangup")["data"];
        assert_eq!(hangup["cause"], "caller_bye", "{hangup}");
        let fwd = &hangup["cdr"]["forwarded"];
        assert_eq!(fwd["trunk_id"], trunk.as_str());
        assert!(fwd["packets_out"].as_u64().unwrap() > 50, "the caller's audio reached the far end: {fwd}");
        assert!(fwd["packets_in"].as_u64().unwrap() > 50, "the far end's echo came back: {fwd}");

        let oevs = events(&app, &original).await;
        let kinds: Vec<&str> = oevs.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        for k in ["transfer_requested", "transferred", "transfer_completed", "agent_leg_ended"] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        assert_eq!(event(&oevs, "agent_leg_ended")["data"]["cause"], "transferred");
        assert_eq!(event(&oevs, "transferred")["data"]["target"]["address"], "+12024561414", "{oevs:?}");
        let i = json_ok(app.get(&format!("/api/v1/interactions/{original}"), &sup).await, 200).await;
        assert_eq!((i["state"].as_str(), i["agent_id"].as_str()), (Some("wrap_up"), Some(alex.as_str())), "{i}");
        let rtp = |k: &str| -> SocketAddr { event(&oevs, k)["data"]["rtp"].as_str().unwrap().parse().unwrap() };
        nothing_left(&app, &[rtp("answered"), rtp("bridged")]).await;
    }

    async fn the_agents_phone_consults_an_outside_number_then_transfers_attended(app) configure(transfers_on) {
        let Bridged { server, trunk, phone, pl, inv: inv_a, from: from_a, original, caller, .. } =
            bridged_to_alex(&app, "attended-caller@test", "pa1").await;

        // The consult call: the phone calls an outside number through us,
        // answering our digest challenge.
        let consult = |cseq: u32, auth: &str| {
            let body = "v=0\r\no=p 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49996 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
            format!(
                "INVITE sip:2024561414@demo.sip.test SIP/2.0\r\nVia: SIP/2.0/UDP {pl};branch=z9hG4bKcon{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:1001@demo.sip.test>;tag=pb1\r\nTo: <sip:2024561414@demo.sip.test>\r\nCall-ID: consult@phone\r\nCSeq: {cseq} INVITE\r\nContact: <sip:1001@{pl}>\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        phone.send_to(consult(1, "").as_bytes(), server).await.unwrap();
        let challenge = next_response(&phone, 401, 5).await;
        let ack401 = format!(
            "ACK sip:2024561414@demo.sip.test SIP/2.0\r\nVia: SIP/2.0/UDP {pl};branch=z9hG4bKcon1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:1001@demo.sip.test>;tag=pb1\r\nTo: {}\r\nCall-ID: consult@phone\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            hv(&challenge, "To")
        );
        phone.send_to(ack401.as_bytes(), server).await.unwrap();
        let auth = switchboard::sip::outbound::authorization_for(
            "INVITE",
            hv(&challenge, "WWW-Authenticate"),
            "1001",
            PASSWORD,
            "sip:2024561414@demo.sip.test",
        )
        .expect("a challenge we can answer");
        phone.send_to(consult(2, &format!("Authorization: {auth}\r\n")).as_bytes(), server).await.unwrap();
        let ok_b = next_response(&phone, 200, 10).await;
        let our_tag_b = hv(&ok_b, "To").split("tag=").nth(1).unwrap().to_owned();
        let ack_b = format!(
            "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {pl};branch=z9hG4bKcon3;rport\r\nMax-Forwards: 70\r\nFrom: <sip:1001@demo.sip.test>;tag=pb1\r\nTo: {}\r\nCall-ID: consult@phone\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
            hv(&ok_b, "Contact").trim_matches(|c| c == '<' || c == '>'),
            hv(&ok_b, "To")
        );
        phone.send_to(ack_b.as_bytes(), server).await.unwrap();
        let consult_call = eventually(10, "the consult call is bridged", || async {
            let i = voice(&app).await.into_iter().find(|i| i["customer_address"] == "+12024561414" && i["direction"] == "outbound")?;
            let id = i["id"].as_str().unwrap().to_owned();
            events(&app, &id).await.iter().any(|e| e["kind"] == "bridged").then_some(id)
        })
        .await;

        // A Replaces naming no call of ours: 481.
        let bogus = from_phone(pl, &inv_a, "pa1", "REFER", 2, "Refer-To: <sip:2024561414@demo.sip.test?Replaces=nope%3Bto-tag%3Dx%3Bfrom-tag%3Dy>\r\n");
        phone.send_to(bogus.as_bytes(), from_a).await.unwrap();
        next_response(&phone, 481, 5).await;

        // The attended transfer.
        let refer = from_phone(pl, &inv_a, "pa1", "REFER", 3, &format!(
            "Refer-To: <sip:2024561414@demo.sip.test?Replaces=consult%40phone%3Bto-tag%3D{our_tag_b}%3Bfrom-tag%3Dpb1>\r\n"
        ));
        phone.send_to(refer.as_bytes(), from_a).await.unwrap();
        next_response(&phone, 202, 5).await;
        // NOTIFY 100, NOTIFY 200, and a BYE on each of the phone's calls,
        // in whatever order: each answered 200.
        let mut buf = vec![0u8; 65536];
        let (mut notified, mut byes) = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(notified.iter().any(|s: &String| s.contains("SIP/2.0 200")) && byes.len() == 2) {
            let (n, from) = tokio::time::timeout_at(deadline, phone.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("the transfer did not finish: NOTIFYs {notified:?}, BYEs {byes:?}"))
                .unwrap();
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("NOTIFY ") || m.starts_with("BYE ") {
                phone.send_to(reply(&m, "200 OK", "pa1", "").as_bytes(), from).await.unwrap();
            }
            if m.starts_with("NOTIFY ") {
                notified.push(m.split("\r\n\r\n").nth(1).unwrap_or("").to_owned());
            } else if m.starts_with("BYE ") {
                byes.push(hv(&m, "Call-ID").to_owned());
            }
        }
        assert!(notified[0].contains("SIP/2.0 100"), "{notified:?}");
        byes.sort();
        let mut want = vec![hv(&inv_a, "Call-ID").to_owned(), "consult@phone".to_owned()];
        want.sort();
        assert_eq!(byes, want, "both of the phone's calls end");

        // The caller talks to the far end for a while, then hangs up.
        caller.hangs_up_later().await;

        let transferred = eventually(15, "the transferred call is closed", || async {
            let t = voice(&app).await.into_iter().find(|i| i["attributes"]["transferred_from"] == original.as_str())?;
            (t["state"] == "closed").then_some(t)
        })
        .await;
        assert_eq!(transferred["customer_address"], "+12024561414");
        let tevs = events(&app, transferred["id"].as_str().unwrap()).await;
        assert_eq!(event(&tevs, "bridged")["data"]["attended"], true);
        let hangup = &event(&tevs, "hangup")["data"];
        assert_eq!(hangup["cause"], "caller_bye", "{hangup}");
        let fwd = &hangup["cdr"]["forwarded"];
        assert_eq!(fwd["trunk_id"], trunk.as_str());
        assert!(fwd["packets_out"].as_u64().unwrap() > 50, "the caller's audio reached the far end: {fwd}");
        let cevs = events(&app, &consult_call).await;
        assert_eq!(event(&cevs, "hangup")["data"]["cause"], "transferred", "{cevs:?}");
        let oevs = events(&app, &original).await;
        assert_eq!(event(&oevs, "transfer_requested")["data"]["attended"], true);
        assert_eq!(event(&oevs, "agent_leg_ended")["data"]["cause"], "transferred");
        let sup = app.login("supervisor").await;
        let i = json_ok(app.get(&format!("/api/v1/interactions/{original}"), &sup).await, 200).await;
        assert_eq!(i["state"], "wrap_up", "{i}");
    }
}
