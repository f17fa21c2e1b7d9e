//! Blind transfer (REFER) from the agent's desk phone: a raw caller reaches
//! Sales, Alex's phone (a raw socket registered as 1001) answers and is
//! bridged, then REFERs the caller to an outside number. Refused first: a
//! number abroad and a premium-rate one (403), an attended transfer with
//! Replaces (501), all changing nothing. Then a good target: 202, NOTIFY
//! 100 and, once the far end (SIPp through the tenant's trunk, echoing RTP)
//! answers, NOTIFY 200 and our BYE to the phone. The caller stays on with
//! the far end; its BYE ends that leg. The original interaction records the
//! transfer and goes to Alex's wrap-up; the transferred call is an
//! interaction of its own with the far end's CDR.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::helpers::*;
use crate::sip_bridge::{
    available, event, events, hv, next_request, next_response, nothing_left, register, reply,
    set_up,
};
use crate::sip_forward::EARLY_THEN_ANSWER;
use crate::sip_trunks::{add_trunk, assert_ok, far_end_with, free_port};

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

async fn voice(app: &TestApp) -> Vec<Value> {
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

both_backends! {
    async fn the_agents_phone_transfers_the_caller_blind_to_an_outside_number(app) configure(transfers_on) {
        let alex = set_up(&app).await;
        let server = crate::sip_bridge::sip_addr(&app);
        let far_dir = tempfile::tempdir().unwrap();
        let far_port = free_port();
        let trunk = add_trunk(&app, far_port, json!({})).await;
        let far = far_end_with(far_dir.path(), Some(EARLY_THEN_ANSWER), far_port, 1, &["-rtp_echo"]).await;

        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pl = phone.local_addr().unwrap();
        register(server, &format!("sip:1001@{pl}")).await;
        available(&app, &alex).await;
        // The caller: a raw INVITE (PCMA) to the Sales number, sending RTP.
        let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cl = caller.local_addr().unwrap();
        let caller_media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let body = format!(
            "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n",
            caller_media.local_addr().unwrap().port()
        );
        let invite = format!(
            "INVITE sip:442071838750@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {cl};branch=z9hG4bKt1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@127.0.0.1>;tag=caller1\r\nTo: <sip:442071838750@127.0.0.1>\r\nCall-ID: transfer-caller@test\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{cl}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        caller.send_to(invite.as_bytes(), server).await.unwrap();
        let ok = next_response(&caller, 200, 5).await;
        let ack = format!(
            "ACK sip:442071838750@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {cl};branch=z9hG4bKt2;rport\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@127.0.0.1>;tag=caller1\r\nTo: {}\r\nCall-ID: transfer-caller@test\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            hv(&ok, "To")
        );
        caller.send_to(ack.as_bytes(), server).await.unwrap();
        // The caller talks (PCMA silence frames every 20 ms) from now on.
        let our_media: SocketAddr = {
            let sdp = ok.split("\r\n\r\n").nth(1).unwrap();
            let port: u16 = sdp.lines().find(|l| l.starts_with("m=audio")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
            SocketAddr::from(([127, 0, 0, 1], port))
        };
        let talker = tokio::spawn(async move {
            for seq in 0u16..600 {
                let mut p = vec![0x80, 8];
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
                p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                p.extend(std::iter::repeat_n(0xd5u8, 160));
                let _ = caller_media.send_to(&p, our_media).await;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });

        // Alex's phone rings and answers.
        let (inv, from) = next_request(&phone, "INVITE", 5).await;
        let sdp = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49994 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
        let answer = reply(&inv, "200 OK", "ph9", sdp).replace("<sip:1001@127.0.0.1>", &format!("<sip:1001@{pl}>"));
        phone.send_to(answer.as_bytes(), from).await.unwrap();
        next_request(&phone, "ACK", 5).await;
        let original = eventually(10, "the call is bridged to Alex", || async {
            let i = voice(&app).await.into_iter().next()?;
            let id = i["id"].as_str().unwrap().to_owned();
            events(&app, &id).await.iter().any(|e| e["kind"] == "bridged").then_some(id)
        })
        .await;

        // Refused: abroad, premium rate, attended (Replaces).
        for (cseq, refer_to, want) in [
            (2, "<sip:+442071838770@demo.sip.test>", 403),
            (3, "<sip:19005550100@demo.sip.test>", 403),
            (4, "<sip:2024561414@demo.sip.test?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", 501),
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
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let bye = format!(
            "BYE sip:442071838750@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {cl};branch=z9hG4bKt3;rport\r\nMax-Forwards: 70\r\nFrom: <sip:+441632960001@127.0.0.1>;tag=caller1\r\nTo: {}\r\nCall-ID: transfer-caller@test\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            hv(&ok, "To")
        );
        caller.send_to(bye.as_bytes(), server).await.unwrap();
        next_response(&caller, 200, 5).await;
        talker.abort();
        assert_ok(&far.await.unwrap(), far_dir.path());

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
}
