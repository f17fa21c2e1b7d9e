//! The SIP endpoint and registrar against raw UDP requests built here (the
//! digest computed in the test, MD5 and SHA-256) and against SIPp.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::sip::digest::{self, Algorithm};
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::helpers::*;

const PASSWORD: &str = "desk-phone-secret-1";

fn sip_on(s: &mut switchboard::config::Settings) {
    s.sip.enabled = true;
}

fn sip_addr(app: &TestApp) -> SocketAddr {
    app.state.sip.expect("SIP is enabled").udp
}

async fn account(app: &TestApp, username: &str) -> Value {
    let admin = app.login("admin").await;
    let r = app
        .post(
            "/api/v1/sip/accounts",
            &admin,
            &json!({ "username": username, "password": PASSWORD }),
        )
        .await;
    json_ok(r, 201).await
}

async fn registrations(app: &TestApp, id: &str) -> Vec<Value> {
    let admin = app.login("admin").await;
    let v = json_ok(
        app.get(&format!("/api/v1/sip/accounts/{id}"), &admin).await,
        200,
    )
    .await;
    v["registrations"].as_array().unwrap().clone()
}

/// A UDP phone built by hand.
struct Phone {
    sock: UdpSocket,
    server: SocketAddr,
    user: String,
    domain: String,
    call_id: String,
    cseq: u32,
}

impl Phone {
    async fn new(server: SocketAddr, user: &str, domain: &str) -> Self {
        Self {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
            user: user.into(),
            domain: domain.into(),
            call_id: format!("{}@test", uuid::Uuid::new_v4().simple()),
            cseq: 0,
        }
    }

    async fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    async fn recv(&self, secs: u64) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_secs(secs), self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    fn request(&mut self, method: &str, extra: &[String]) -> String {
        self.cseq += 1;
        let local = self.sock.local_addr().unwrap();
        let mut m = format!(
            "{method} sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag={t}\r\nTo: <sip:{u}@{d}>\r\nCall-ID: {c}\r\nCSeq: {n} {method}\r\nUser-Agent: switchboard-test\r\n",
            d = self.domain,
            u = self.user,
            b = uuid::Uuid::new_v4().simple(),
            t = &uuid::Uuid::new_v4().simple().to_string()[..8],
            c = self.call_id,
            n = self.cseq,
        );
        for h in extra {
            m.push_str(h);
            m.push_str("\r\n");
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        m
    }

    /// REGISTER; answers a 401 with the password using `alg`. Returns the
    /// final response (None: no answer).
    async fn register(
        &mut self,
        password: &str,
        alg: Algorithm,
        headers: &[String],
    ) -> Option<String> {
        let req = self.request("REGISTER", headers);
        self.send_raw(req.as_bytes()).await;
        let first = self.recv(3).await?;
        if status(&first) != 401 {
            return Some(first);
        }
        let challenge = first
            .lines()
            .find(|l| {
                l.starts_with("WWW-Authenticate:")
                    && l.contains(&format!("algorithm={}", alg.name()))
            })
            .expect("a challenge for the algorithm");
        let param = |k: &str| {
            let i = challenge.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
            challenge[i..].split('"').next().unwrap().to_owned()
        };
        let (realm, nonce) = (param("realm"), param("nonce"));
        let uri = format!("sip:{}", self.domain);
        let ha1 = digest::ha1(alg, &self.user, &realm, password);
        let creds = digest::Credentials {
            username: self.user.clone(),
            realm: realm.clone(),
            nonce: nonce.clone(),
            uri: uri.clone(),
            response: String::new(),
            algorithm: alg,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("abc123".into()),
        };
        let resp = digest::expected_response(alg, &ha1, "REGISTER", &creds).unwrap();
        let mut h = headers.to_vec();
        h.push(format!(
            "Authorization: Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"abc123\"",
            self.user,
            alg.name()
        ));
        let req = self.request("REGISTER", &h);
        self.send_raw(req.as_bytes()).await;
        self.recv(3).await
    }
}

fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn contact(uri: &str) -> String {
    format!("Contact: <{uri}>")
}

both_backends! {
    async fn sha256_and_md5_registrations_show_up_and_unregister(app) configure(sip_on) {
        let acct = account(&app, "1001").await;
        let id = acct["id"].as_str().unwrap().to_owned();
        assert_eq!(acct["domain"], "demo.sip.test");
        assert!(acct.get("password").is_none() && acct.get("ha1_md5").is_none());
        let mut phone = Phone::new(sip_addr(&app), "1001", "demo.sip.test").await;
        // Without credentials: 401 with both algorithms offered.
        let req = phone.request("REGISTER", &[contact("sip:1001@127.0.0.1:5999")]);
        phone.send_raw(req.as_bytes()).await;
        let r = phone.recv(3).await.expect("an answer");
        assert_eq!(status(&r), 401, "{r}");
        assert!(r.contains("algorithm=SHA-256") && r.contains("algorithm=MD5"), "{r}");

        let r = phone.register(PASSWORD, Algorithm::Sha256, &[contact("sip:1001@127.0.0.1:5999"), "Expires: 600".into()]).await.unwrap();
        assert_eq!(status(&r), 200, "{r}");
        assert!(r.contains("<sip:1001@127.0.0.1:5999>;expires="), "{r}");
        // A second contact with MD5; the 200 lists both.
        let r = phone.register(PASSWORD, Algorithm::Md5, &[contact("sip:1001@127.0.0.1:6000"), "Expires: 600".into()]).await.unwrap();
        assert_eq!(status(&r), 200, "{r}");
        assert_eq!(r.matches("Contact:").count(), 2, "{r}");
        let regs = registrations(&app, &id).await;
        assert_eq!(regs.len(), 2, "{regs:?}");
        assert_eq!(regs[0]["transport"], "udp");
        assert_eq!(regs[0]["user_agent"], "switchboard-test");
        // Expiry is clamped to the maximum (3600), and 423 below the minimum.
        let r = phone.register(PASSWORD, Algorithm::Md5, &["Contact: <sip:1001@127.0.0.1:6001>;expires=999999".to_string()]).await.unwrap();
        assert_eq!(status(&r), 200, "{r}");
        let line = r.lines().find(|l| l.contains("6001")).unwrap();
        let secs: i64 = line.rsplit('=').next().unwrap().trim().parse().unwrap();
        assert!((3590..=3600).contains(&secs), "{line}");
        let r = phone.register(PASSWORD, Algorithm::Md5, &[contact("sip:1001@127.0.0.1:6002"), "Expires: 5".into()]).await.unwrap();
        assert_eq!(status(&r), 423, "{r}");
        assert!(r.contains("Min-Expires: 60"), "{r}");
        // Fetch (no Contact) lists the three bindings.
        let r = phone.register(PASSWORD, Algorithm::Md5, &[]).await.unwrap();
        assert_eq!(r.matches("Contact:").count(), 3, "{r}");
        // Expires: 0 removes one; Contact: * removes all.
        let r = phone.register(PASSWORD, Algorithm::Md5, &[contact("sip:1001@127.0.0.1:6000"), "Expires: 0".into()]).await.unwrap();
        assert_eq!(status(&r), 200, "{r}");
        assert_eq!(registrations(&app, &id).await.len(), 2);
        let r = phone.register(PASSWORD, Algorithm::Sha256, &["Contact: *".into(), "Expires: 0".into()]).await.unwrap();
        assert_eq!(status(&r), 200, "{r}");
        assert!(registrations(&app, &id).await.is_empty());
        // OPTIONS is answered.
        let req = phone.request("OPTIONS", &[]);
        phone.send_raw(req.as_bytes()).await;
        assert_eq!(status(&phone.recv(3).await.unwrap()), 200);
        // Deleting the account removes it.
        let admin = app.login("admin").await;
        assert_eq!(app.delete(&format!("/api/v1/sip/accounts/{id}"), &admin).await.status(), 204);
    }

    async fn wrong_passwords_are_refused_then_the_source_is_banned(app) configure(|s: &mut switchboard::config::Settings| { s.sip.enabled = true; s.sip.auth_failures = 3; }) {
        account(&app, "1002").await;
        let mut phone = Phone::new(sip_addr(&app), "1002", "demo.sip.test").await;
        for _ in 0..2 {
            let r = phone.register("not-the-password", Algorithm::Md5, &[contact("sip:1002@127.0.0.1:5999")]).await.unwrap();
            assert_eq!(status(&r), 403, "{r}");
        }
        let r = phone.register("not-the-password", Algorithm::Sha256, &[contact("sip:1002@127.0.0.1:5999")]).await.unwrap();
        assert_eq!(status(&r), 403, "{r}");
        // Banned: even the right password gets no answer now.
        assert!(phone.register(PASSWORD, Algorithm::Md5, &[contact("sip:1002@127.0.0.1:5999")]).await.is_none());
        let req = phone.request("OPTIONS", &[]);
        phone.send_raw(req.as_bytes()).await;
        assert!(phone.recv(1).await.is_none());
    }

    async fn credentials_work_only_in_their_tenant_domain(app) configure(sip_on) {
        account(&app, "1003").await;
        // The same username and password against the other tenant's domain.
        let mut phone = Phone::new(sip_addr(&app), "1003", "other.sip.test").await;
        let r = phone.register(PASSWORD, Algorithm::Md5, &[contact("sip:1003@127.0.0.1:5999")]).await.unwrap();
        assert_eq!(status(&r), 403, "{r}");
        // An unknown domain is not ours.
        let mut phone = Phone::new(sip_addr(&app), "1003", "nowhere.example").await;
        let req = phone.request("REGISTER", &[contact("sip:1003@127.0.0.1:5999")]);
        phone.send_raw(req.as_bytes()).await;
        assert_eq!(status(&phone.recv(3).await.unwrap()), 404);
    }

    async fn malformed_oversized_and_scanner_messages_do_no_harm(app) configure(sip_on) {
        let mut phone = Phone::new(sip_addr(&app), "x", "demo.sip.test").await;
        let junk: Vec<Vec<u8>> = vec![
            vec![0u8; 10],
            (0..1400u32).map(|i| (i * 7919 % 251) as u8).collect(),
            b"REGISTER sip:demo.sip.test SIP/2.0\r\nVia: nonsense\r\n\r\n".to_vec(),
            b"INVITE\r\n\r\n".to_vec(),
            format!("REGISTER sip:demo.sip.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(60000)).into_bytes(),
            b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        ];
        for j in &junk {
            phone.send_raw(j).await;
        }
        // Too many headers: dropped.
        let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: v")).collect();
        let req = phone.request("OPTIONS", &many);
        phone.send_raw(req.as_bytes()).await;
        assert!(phone.recv(1).await.is_none(), "a message with 100 header fields is dropped");
        // A scanner: dropped silently.
        let req = phone.request("OPTIONS", &[]).replace("switchboard-test", "friendly-scanner");
        phone.send_raw(req.as_bytes()).await;
        assert!(phone.recv(1).await.is_none(), "scanners get no answer");
        // An unsupported method: 501.
        let req = phone.request("MESSAGE", &[]);
        phone.send_raw(req.as_bytes()).await;
        assert_eq!(status(&phone.recv(3).await.unwrap()), 501);
        // Still alive.
        let req = phone.request("OPTIONS", &[]);
        phone.send_raw(req.as_bytes()).await;
        assert_eq!(status(&phone.recv(3).await.expect("OPTIONS answered after junk")), 200);
    }

}

/// Not passing yet: SIPp's REGISTER gets its 401 but the run fails before
/// the authenticated REGISTER is accepted (to be investigated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_with_md5_digest() {
    // SIPp 3.6 answers the first challenge and knows only MD5: offer it first.
    let app = spawn_app_with(Backend::Sqlite, |s| {
        sip_on(s);
        s.sip.digest_algorithms = vec!["MD5".into(), "SHA-256".into()];
    })
    .await;
    if std::process::Command::new("sipp")
        .arg("-v")
        .output()
        .is_err()
    {
        panic!("sipp is not installed (Debian sip-tester; scripts/test.sh installs it)");
    }
    let acct = account(&app, "2001").await;
    let id = acct["id"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("register.xml");
    std::fs::write(
        &scenario,
        SIPP_REGISTER.replace("[$domain]", "demo.sip.test"),
    )
    .unwrap();
    let server = sip_addr(&app);
    let (cwd, sf) = (
        dir.path().to_path_buf(),
        scenario.to_str().unwrap().to_owned(),
    );
    let run = move |password: &str| {
        std::process::Command::new("sipp")
            .current_dir(&cwd)
            .args([
                &server.to_string(),
                "-sf",
                &sf,
                "-i",
                "127.0.0.1",
                "-p",
                "0",
                "-s",
                "2001",
                "-au",
                "2001",
                "-ap",
                password,
                "-m",
                "1",
                "-timeout",
                "10",
                "-recv_timeout",
                "5000",
                "-nostdin",
                "-trace_err",
            ])
            .output()
            .expect("sipp runs")
    };
    let run = std::sync::Arc::new(run);
    // A wrong password: SIPp gets 403 where it expects 200, and nothing is registered.
    let r2 = run.clone();
    let bad = tokio::task::spawn_blocking(move || r2("not-the-password"))
        .await
        .unwrap();
    assert!(
        !bad.status.success(),
        "sipp registered with a wrong password"
    );
    assert!(registrations(&app, &id).await.is_empty());
    let out = tokio::task::spawn_blocking(move || run(PASSWORD))
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
    let regs = registrations(&app, &id).await;
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert!(
        regs[0]["contact"]
            .as_str()
            .unwrap()
            .starts_with("sip:2001@127.0.0.1"),
        "{regs:?}"
    );
}

/// SIPp: REGISTER, answer the 401 with `[authentication]` (MD5), expect 200.
const SIPP_REGISTER: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[$domain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[$domain]>;tag=[call_number]
      To: <sip:[service]@[$domain]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Expires: 600
      Max-Forwards: 70
      User-Agent: SIPp
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[$domain] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[$domain]>;tag=[call_number]
      To: <sip:[service]@[$domain]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Expires: 600
      Max-Forwards: 70
      User-Agent: SIPp
      [authentication]
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

/// baresip (a real softphone) registers with digest auth over UDP and its
/// registration shows up with its user agent. Debian's baresip 1.0 gives up
/// ("Function not implemented") on any SHA-256 challenge, even one listed
/// after MD5, so phones like it need `sip.digest_algorithms = ["MD5"]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_with_digest() {
    if std::process::Command::new("baresip")
        .arg("-h")
        .output()
        .is_err()
    {
        panic!("baresip is not installed (Debian baresip-core; scripts/test.sh installs it)");
    }
    let app = spawn_app_with(Backend::Sqlite, |s| {
        sip_on(s);
        s.sip.digest_algorithms = vec!["MD5".into()];
    })
    .await;
    let acct = account(&app, "2002").await;
    let id = acct["id"].as_str().unwrap().to_owned();
    let server = sip_addr(&app);
    let dir = tempfile::tempdir().unwrap();
    // baresip cannot listen on port 0: take a free port. It also binds TCP
    // and TLS on it, which another process may hold: then try another.
    let mut regs = Vec::new();
    let mut out = None;
    let mut port = 0;
    for _attempt in 0..3 {
        port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A minimal configuration: no audio devices, no modules that need them.
        std::fs::write(
            dir.path().join("config"),
            format!("sip_listen\t\t127.0.0.1:{port}\nsip_trans_def\t\tudp\naudio_player\t\tnone\naudio_source\t\tnone\naudio_alert\t\tnone\nmodule_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule_app\t\taccount.so\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("accounts"),
            format!(
                "<sip:2002@demo.sip.test>;auth_pass={PASSWORD};outbound=\"sip:{server};transport=udp\";regint=600\n"
            ),
        )
        .unwrap();
        let mut child = tokio::process::Command::new("baresip")
            .args(["-f", dir.path().to_str().unwrap(), "-s", "-t", "20"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("baresip starts");
        for _ in 0..60 {
            regs = registrations(&app, &id).await;
            if !regs.is_empty() || child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let _ = child.start_kill();
        let o = child.wait_with_output().await.unwrap();
        let busy = String::from_utf8_lossy(&o.stdout).contains("Address already in use")
            || String::from_utf8_lossy(&o.stderr).contains("Address already in use");
        out = Some(o);
        if !regs.is_empty() || !busy {
            break;
        }
    }
    let out = out.expect("baresip ran");
    assert!(
        !regs.is_empty(),
        "baresip did not register:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(regs.len(), 1, "{regs:?}");
    // baresip's contact user is the account's plus an instance suffix.
    assert!(
        regs[0]["contact"]
            .as_str()
            .unwrap()
            .contains(&format!("@127.0.0.1:{port}")),
        "{regs:?}"
    );
    assert!(
        regs[0]["user_agent"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("baresip"),
        "{regs:?}"
    );
}
