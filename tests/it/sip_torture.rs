//! The RFC 4475 torture messages (tests/data/rfc4475, see its README), sent
//! over UDP to the running endpoint: nothing breaks it, each message gets
//! the handling the RFC expects of an endpoint/registrar, and the endpoint
//! still answers afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::helpers::*;

fn corpus() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475")
}

/// The status code of the first answer within `wait`, if any.
async fn answer(
    sock: &UdpSocket,
    server: SocketAddr,
    msg: &[u8],
    wait: Duration,
) -> Option<(u16, String)> {
    sock.send_to(msg, server).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(wait, sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text))
}

async fn alive(sock: &UdpSocket, server: SocketAddr, n: usize) -> bool {
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "OPTIONS sip:ping@demo.sip.test SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-alive-{n}\r\nFrom: <sip:t@demo.sip.test>;tag=t{n}\r\nTo: <sip:ping@demo.sip.test>\r\nCall-ID: alive-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    matches!(
        answer(sock, server, msg.as_bytes(), Duration::from_secs(2)).await,
        Some((200, _))
    )
}

/// What the endpoint must do with a message.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// This final response.
    Status(u16),
    /// Processed, not refused as malformed: any answer but 400, 415, 416,
    /// 420, 505 (INVITEs: 501 until calls are taken, 404 for numbers we do
    /// not have; REGISTERs for example.com: 404, not our domain).
    Processed,
    /// No answer at all (stray responses; datagrams the parser cannot read).
    Silent,
}

use Want::*;

/// Per file: what we do, and where that departs from what RFC 4475 asks of
/// an endpoint, why. The departures are all the parser's (rsip): it cannot
/// read header folding, unknown methods or some malformed Request-URIs, so
/// those datagrams are dropped where the RFC wants an answer.
const EXPECTED: &[(&str, Want, &str)] = &[
    (
        "3.1.1.1_wsinv.dat",
        Silent,
        "DEPARTS: valid, but the parser cannot read its folded headers",
    ),
    (
        "3.1.1.2_intmeth.dat",
        Silent,
        "DEPARTS: the parser drops unknown methods (RFC: 501)",
    ),
    ("3.1.1.3_esc01.dat", Processed, ""),
    ("3.1.1.4_escnull.dat", Processed, ""),
    (
        "3.1.1.5_esc02.dat",
        Silent,
        "DEPARTS: the parser drops unknown methods (RFC: 501)",
    ),
    ("3.1.1.6_lwsdisp.dat", Status(200), ""),
    ("3.1.1.7_longreq.dat", Processed, ""),
    ("3.1.1.8_dblreq.dat", Processed, ""),
    ("3.1.1.9_semiuri.dat", Status(200), ""),
    ("3.1.1.10_transports.dat", Status(200), ""),
    ("3.1.1.11_mpart01.dat", Processed, ""),
    (
        "3.1.1.12_unreason.dat",
        Silent,
        "a response to nothing we sent",
    ),
    (
        "3.1.1.13_noreason.dat",
        Silent,
        "a response to nothing we sent",
    ),
    ("3.1.2.1_badinv01.dat", Status(400), ""),
    ("3.1.2.2_clerr.dat", Status(400), ""),
    ("3.1.2.3_ncl.dat", Status(400), ""),
    ("3.1.2.4_scalar02.dat", Status(400), ""),
    ("3.1.2.5_scalarlg.dat", Silent, ""),
    ("3.1.2.6_quotbal.dat", Status(400), ""),
    (
        "3.1.2.7_ltgtruri.dat",
        Processed,
        "DEPARTS: the parser strips the <> around the Request-URI (RFC: 400, or ignore them)",
    ),
    (
        "3.1.2.8_lwsruri.dat",
        Silent,
        "DEPARTS: the parser drops it (RFC: 400)",
    ),
    (
        "3.1.2.9_lwsstart.dat",
        Silent,
        "may reject: the parser drops it",
    ),
    (
        "3.1.2.10_trws.dat",
        Status(200),
        "may reject; we are liberal",
    ),
    (
        "3.1.2.11_escruri.dat",
        Processed,
        "may respond 400; we are liberal",
    ),
    (
        "3.1.2.12_baddate.dat",
        Processed,
        "the Date does not matter to us",
    ),
    (
        "3.1.2.13_regbadct.dat",
        Processed,
        "liberal: the Contact's brackets inferred",
    ),
    ("3.1.2.14_badaspec.dat", Status(400), ""),
    (
        "3.1.2.15_baddn.dat",
        Silent,
        "DEPARTS: the parser drops it (RFC: 400)",
    ),
    ("3.1.2.16_badvers.dat", Status(505), ""),
    ("3.1.2.17_mismatch01.dat", Status(400), ""),
    (
        "3.1.2.18_mismatch02.dat",
        Silent,
        "DEPARTS: the parser drops unknown methods (RFC: 501)",
    ),
    ("3.1.2.19_bigcode.dat", Silent, ""),
    (
        "3.2.1_badbranch.dat",
        Status(200),
        "RFC 2543 matching fallback: answered",
    ),
    ("3.3.1_insuf.dat", Status(400), ""),
    ("3.3.2_unkscm.dat", Status(416), ""),
    ("3.3.3_novelsc.dat", Status(416), ""),
    ("3.3.4_unksm2.dat", Status(400), ""),
    ("3.3.5_bext01.dat", Status(420), ""),
    ("3.3.6_invut.dat", Status(415), ""),
    ("3.3.7_regaut01.dat", Processed, ""),
    ("3.3.8_multi01.dat", Status(400), ""),
    ("3.3.9_mcl01.dat", Status(400), ""),
    ("3.3.10_bcast.dat", Silent, ""),
    (
        "3.3.11_zeromf.dat",
        Status(200),
        "an endpoint goes on as if Max-Forwards were positive",
    ),
    ("3.3.12_cparam01.dat", Processed, ""),
    ("3.3.13_cparam02.dat", Processed, ""),
    ("3.3.14_regescrt.dat", Processed, ""),
    ("3.3.15_sdp01.dat", Status(406), ""),
    (
        "3.4.1_inv2543.dat",
        Silent,
        "DEPARTS: the parser drops it (RFC: accept)",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc4475_torture_messages_get_what_the_rfc_expects_and_break_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.sip.enabled = true;
        s.sip.requests_per_source_per_sec = 1000;
        s.sip.auth_failures = 1000;
    })
    .await;
    let server = app.state.sip.expect("SIP on").udp;
    let manifest = std::fs::read_to_string(corpus().join("MANIFEST.tsv")).unwrap();
    let files: Vec<&str> = manifest
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(files.len(), 49, "the corpus has RFC 4475's 49 messages");
    assert_eq!(
        files.len(),
        EXPECTED.len(),
        "every message has an expectation"
    );
    let mut wrong = Vec::new();
    for (n, (file, want, why)) in EXPECTED.iter().enumerate() {
        assert!(files.contains(file), "{file} is not in the MANIFEST");
        let msg = std::fs::read(corpus().join(file)).unwrap();
        // A fresh source each time, so one message's handling never colours the next.
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let wait = if matches!(want, Silent) { 600 } else { 2000 };
        let got = answer(&sock, server, &msg, Duration::from_millis(wait)).await;
        let ok = match (want, &got) {
            (Status(s), Some((code, _))) => code == s,
            (Processed, Some((code, _))) => ![400, 415, 416, 420, 505].contains(code),
            (Silent, None) => true,
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{file}: wanted {want:?} ({why}), got {:?}",
                got.clone().map(|g| g.1)
            ));
        }
        // Refusals say why.
        if let (Status(400), Some((400, text))) = (want, &got) {
            assert!(text.contains("Warning: 399 switchboard"), "{file}: {text}");
        }
        assert!(
            alive(&sock, server, n).await,
            "{file}: the endpoint stopped answering"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
