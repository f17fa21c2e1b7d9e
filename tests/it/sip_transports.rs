//! SIP over TLS and over WebSocket (RFC 7118), beside UDP and TCP: a phone
//! registers with digest authentication over each (401, then 200 with its
//! contact), OPTIONS is answered, and the registration records the
//! transport. The TLS certificate is made here with openssl; a client that
//! does not trust it cannot connect. Start-up refuses a file that is not a
//! certificate (the settings checks are unit tests in `config.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::helpers::*;

const PASSWORD: &str = "tls-phone-secret-1";
const DOMAIN: &str = "demo.sip.test";

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed certificate for 127.0.0.1 and its key (PEM files in `dir`).
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("sip.crt"), dir.join("sip.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=switchboard-test",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

async fn account(app: &TestApp) -> String {
    let admin = app.login("admin").await;
    let r = app
        .post(
            "/api/v1/sip/accounts",
            &admin,
            &json!({ "username": "2001", "password": PASSWORD }),
        )
        .await;
    json_ok(r, 201).await["id"].as_str().unwrap().to_owned()
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("")
}

fn register(via: &str, transport: &str, contact: &str, cseq: u32, auth: Option<&str>) -> String {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: <sip:2001@{DOMAIN}>;tag=t{cseq}\r\nTo: <sip:2001@{DOMAIN}>\r\nCall-ID: reg-{transport}@test\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
        b = uuid::Uuid::new_v4().simple(),
        auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default(),
    )
}

fn options(via: &str, transport: &str) -> String {
    format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/{transport} {via};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{DOMAIN}>;tag=o1\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: opt-{transport}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        b = uuid::Uuid::new_v4().simple(),
    )
}

fn status(m: &str) -> u16 {
    m.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// OPTIONS, then REGISTER answered by a challenge and again with our
/// digest, over one connection (`send` one message, get its final answer).
async fn register_over<F, Fut>(mut exchange: F, via: &str, transport: &str, contact: &str)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let ok = exchange(options(via, transport)).await;
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(header(&ok, "Allow").contains("REFER"), "{ok}");
    let challenge = exchange(register(via, transport, contact, 1, None)).await;
    assert_eq!(status(&challenge), 401, "{challenge}");
    let auth = switchboard::sip::outbound::authorization_for(
        "REGISTER",
        header(&challenge, "WWW-Authenticate"),
        "2001",
        PASSWORD,
        &format!("sip:{DOMAIN}"),
    )
    .expect("a challenge we can answer");
    let ok = exchange(register(via, transport, contact, 2, Some(&auth))).await;
    assert_eq!(status(&ok), 200, "{ok}");
    // Every live contact of the account is listed: this one among them.
    assert!(
        ok.to_ascii_lowercase()
            .contains(&format!("contact: <{}>", contact.to_ascii_lowercase())),
        "{ok}"
    );
}

/// Reads one SIP message (headers and Content-Length body) from a stream.
async fn read_message(s: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let len: usize = header(&head, "Content-Length").parse().unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg = String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
                buf.drain(..end + 4 + len);
                return msg;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "the connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn tls_client(cert: &Path) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_register_over_tls_and_websocket() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let tls_at = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let ws_at = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let (c, k) = (cert.clone(), key.clone());
    let app = spawn_app_with(Backend::Sqlite, move |s| {
        s.sip.enabled = true;
        s.sip.tls_bind = Some(tls_at);
        s.sip.tls_cert = Some(c);
        s.sip.tls_key = Some(k);
        s.sip.ws_bind = Some(ws_at);
    })
    .await;
    let account_id = account(&app).await;
    let addrs = app.state.sip.expect("SIP is on");
    assert_eq!((addrs.tls, addrs.ws), (Some(tls_at), Some(ws_at)));
    // The listeners start with the endpoint.
    eventually(10, "the TLS and WebSocket listeners are up", || async {
        (tokio::net::TcpStream::connect(tls_at).await.is_ok()
            && tokio::net::TcpStream::connect(ws_at).await.is_ok())
        .then_some(())
    })
    .await;

    // TLS: a client that trusts our certificate.
    let tcp = tokio::net::TcpStream::connect(tls_at).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(
        std::net::IpAddr::from([127, 0, 0, 1]).into(),
    );
    let tls = tls_client(&cert)
        .connect(name.clone(), tcp)
        .await
        .expect("the TLS handshake");
    let stream = Arc::new(tokio::sync::Mutex::new((tls, Vec::new())));
    let contact = format!("sip:2001@{local};transport=tls");
    register_over(
        |msg: String| {
            let stream = stream.clone();
            async move {
                let mut g = stream.lock().await;
                let (s, buf) = &mut *g;
                s.write_all(msg.as_bytes()).await.unwrap();
                s.flush().await.unwrap();
                read_message(s, buf).await
            }
        },
        &local.to_string(),
        "TLS",
        &contact,
    )
    .await;

    // A client that does not trust it gets no session.
    let other_dir = tempfile::tempdir().unwrap();
    let other = certificate(other_dir.path()).0;
    let tcp = tokio::net::TcpStream::connect(tls_at).await.unwrap();
    assert!(
        tls_client(&other).connect(name, tcp).await.is_err(),
        "an untrusted certificate was accepted"
    );

    // WebSocket (subprotocol sip), one text frame per message.
    let mut req = format!("ws://{ws_at}").into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the WebSocket handshake");
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip")
    );
    let ws = Arc::new(tokio::sync::Mutex::new(ws));
    register_over(
        |msg: String| {
            let ws = ws.clone();
            async move {
                let mut ws = ws.lock().await;
                ws.send(Message::text(msg)).await.unwrap();
                loop {
                    let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
                        .await
                        .expect("an answer within 5 s")
                        .expect("the WebSocket stays open")
                        .unwrap();
                    if let Message::Text(t) = m {
                        let t = t.to_string();
                        if status(&t) >= 200 {
                            return t;
                        }
                    }
                }
            }
        },
        "df7jal23ls0d.invalid",
        "WS",
        "sip:2001@df7jal23ls0d.invalid;transport=ws",
    )
    .await;
    // The registrations record how each phone is reached.
    let admin = app.login("admin").await;
    let a = json_ok(
        app.get(&format!("/api/v1/sip/accounts/{account_id}"), &admin)
            .await,
        200,
    )
    .await;
    let mut transports: Vec<String> = a["registrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["transport"].as_str().unwrap().to_owned())
        .collect();
    transports.sort();
    assert_eq!(transports, vec!["tls", "ws"], "{a}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_no_certificate_stops_start_up_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut s = test_settings(dir.path(), None);
    s.sip.enabled = true;
    s.sip.tls_bind = Some(SocketAddr::from(([127, 0, 0, 1], free_tcp_port())));
    s.sip.tls_cert = Some(junk.clone());
    s.sip.tls_key = Some(junk);
    let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
    let e = switchboard::sip::SipServer::bind(&s.sip, db, &[7u8; 32])
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("sip.tls_cert"), "{e}");
}
