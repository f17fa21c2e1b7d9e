//! Webhooks against a real HTTP receiver: signatures, retries with backoff,
//! giving up, filters, replay from a cursor, and the SSRF guard.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

#[derive(Clone, Debug)]
pub struct Hit {
    pub signature: String,
    pub event_id: String,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// A real HTTP server that records what it receives. It answers 500 to the
/// first `fail_first` requests (or to all, with `usize::MAX`), then 204.
pub struct Receiver {
    pub url: String,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    handle: actix_web::dev::ServerHandle,
}

struct RecvState {
    hits: Arc<Mutex<Vec<Hit>>>,
    fail_first: usize,
    seen: Mutex<usize>,
}

async fn receive(req: HttpRequest, body: web::Bytes, st: web::Data<RecvState>) -> HttpResponse {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    st.hits.lock().unwrap().push(Hit {
        signature: header("switchboard-signature"),
        event_id: header("switchboard-event-id"),
        body: body.to_vec(),
        at: Instant::now(),
    });
    let mut seen = st.seen.lock().unwrap();
    *seen += 1;
    if *seen <= st.fail_first {
        HttpResponse::InternalServerError().body("boom")
    } else {
        HttpResponse::NoContent().finish()
    }
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let st = web::Data::new(RecvState {
            hits: hits.clone(),
            fail_first,
            seen: Mutex::new(0),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(st.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            hits,
            handle,
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let h = self.handle.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

/// Checks `t=<ts>,v1=<hex>` independently of the service's own code.
fn verify(secret: &str, signature: &str, body: &[u8]) -> bool {
    let mut ts = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => ts = Some(t.to_owned()),
            Some(("v1", s)) => v1 = Some(s.to_owned()),
            _ => {}
        }
    }
    let (Some(ts), Some(v1)) = (ts, v1) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(body);
    let Ok(sig) = hex::decode(v1) else {
        return false;
    };
    ring::hmac::verify(&key, &msg, &sig).is_ok()
}

async fn make_hook(app: &TestApp, admin: &Creds, url: &str, kinds: Value) -> (String, String) {
    let r = app
        .post(
            "/api/v1/webhooks",
            admin,
            &json!({"url": url, "description": "test", "event_kinds": kinds}),
        )
        .await;
    let body = json_ok(r, 201).await;
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    (body["id"].as_str().unwrap().to_owned(), secret)
}

async fn interaction(app: &TestApp, creds: &Creds) -> String {
    let r = app
        .post(
            "/api/v1/interactions",
            creds,
            &json!({"channel": "chat", "direction": "inbound"}),
        )
        .await;
    json_ok(r, 201).await["interaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn deliveries(app: &TestApp, admin: &Creds, hook: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/v1/webhooks/{hook}/deliveries?limit=200"),
            admin,
        )
        .await;
    json_ok(r, 200).await["items"].as_array().unwrap().clone()
}

both_backends! {
    async fn deliveries_are_signed_and_carry_the_event(app) {
        let rx = Receiver::start(0).await;
        let admin = app.login("admin").await;
        let (hook, secret) = make_hook(&app, &admin, &rx.url, json!([])).await;
        let id = interaction(&app, &admin).await;
        let r = app.post(&format!("/api/v1/interactions/{id}/transitions"), &admin, &json!({"type": "abandon"})).await;
        json_ok(r, 200).await;
        let hits = eventually(15, "two deliveries", || async { (rx.hits().len() >= 2).then(|| rx.hits()) }).await;
        let mut kinds = Vec::new();
        for h in &hits {
            assert!(verify(&secret, &h.signature, &h.body), "signature {} must verify", h.signature);
            assert!(!verify("whsec_wrong", &h.signature, &h.body));
            let v: Value = serde_json::from_slice(&h.body).unwrap();
            assert_eq!(v["interaction_id"], id);
            assert_eq!(v["id"].to_string(), h.event_id);
            kinds.push(v["type"].as_str().unwrap().to_owned());
        }
        kinds.sort();
        assert_eq!(kinds, ["abandoned", "created"]);
        let ds = eventually(10, "deliveries marked delivered", || async {
            let ds = deliveries(&app, &admin, &hook).await;
            ds.iter().all(|d| d["status"] == "delivered").then_some(ds)
        }).await;
        assert_eq!(ds.len(), 2);
        assert!(ds.iter().all(|d| d["attempts"] == 1 && d["last_status_code"] == 204));
        // Rotating the secret: later deliveries verify with the new one only.
        let r = app.post(&format!("/api/v1/webhooks/{hook}/rotate-secret"), &admin, &json!({})).await;
        let new_secret = json_ok(r, 200).await["secret"].as_str().unwrap().to_owned();
        assert_ne!(new_secret, secret);
        interaction(&app, &admin).await;
        let h = eventually(15, "a third delivery", || async { rx.hits().get(2).cloned() }).await;
        assert!(verify(&new_secret, &h.signature, &h.body));
        assert!(!verify(&secret, &h.signature, &h.body));
    }

    async fn failed_deliveries_are_retried_with_growing_delays(app) {
        let rx = Receiver::start(2).await;
        let admin = app.login("admin").await;
        let (hook, _) = make_hook(&app, &admin, &rx.url, json!(["created"])).await;
        interaction(&app, &admin).await;
        let d = eventually(20, "delivery after two failures", || async {
            let ds = deliveries(&app, &admin, &hook).await;
            ds.into_iter().find(|d| d["status"] == "delivered")
        }).await;
        assert_eq!(d["attempts"], 3);
        let hits = rx.hits();
        assert_eq!(hits.len(), 3, "exactly three attempts");
        let gap1 = hits[1].at - hits[0].at;
        let gap2 = hits[2].at - hits[1].at;
        assert!(gap1 >= Duration::from_millis(900), "first retry waited {gap1:?}");
        assert!(gap2 >= Duration::from_millis(1800), "second retry waited {gap2:?} (backoff doubles)");
        assert!(hits.iter().all(|h| h.event_id == hits[0].event_id), "the same event each time");
    }

    async fn only_subscribed_kinds_are_delivered(app) {
        let rx = Receiver::start(0).await;
        let admin = app.login("admin").await;
        let (hook, _) = make_hook(&app, &admin, &rx.url, json!(["abandoned"])).await;
        let id = interaction(&app, &admin).await;
        app.post(&format!("/api/v1/interactions/{id}/notes"), &admin, &json!({"text": "hello"})).await;
        app.post(&format!("/api/v1/interactions/{id}/transitions"), &admin, &json!({"type": "abandon"})).await;
        let hits = eventually(10, "one delivery", || async { (!rx.hits().is_empty()).then(|| rx.hits()) }).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(rx.hits().len(), 1, "{hits:?}");
        let v: Value = serde_json::from_slice(&hits[0].body).unwrap();
        assert_eq!(v["type"], "abandoned");
        assert_eq!(deliveries(&app, &admin, &hook).await.len(), 1);
        // A disabled webhook gets nothing new.
        let r = app.patch(&format!("/api/v1/webhooks/{hook}"), &admin, &json!({"active": false})).await;
        assert_eq!(json_ok(r, 200).await["active"], false);
        let id2 = interaction(&app, &admin).await;
        app.post(&format!("/api/v1/interactions/{id2}/transitions"), &admin, &json!({"type": "abandon"})).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(rx.hits().len(), 1);
    }

    async fn deliveries_give_up_after_the_last_attempt(app) configure(|s: &mut switchboard::config::Settings| s.webhooks.max_attempts = 2) {
        let rx = Receiver::start(usize::MAX).await;
        let admin = app.login("admin").await;
        let (hook, _) = make_hook(&app, &admin, &rx.url, json!([])).await;
        interaction(&app, &admin).await;
        let d = eventually(20, "a failed delivery", || async {
            deliveries(&app, &admin, &hook).await.into_iter().find(|d| d["status"] == "failed")
        }).await;
        assert_eq!(d["attempts"], 2);
        assert_eq!(d["last_status_code"], 500);
        assert!(d["last_error"].as_str().unwrap().contains("500"));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(rx.hits().len(), 2, "no attempt after giving up");
        // A receiver that is not there: the error says so.
        let r = app.patch(&format!("/api/v1/webhooks/{hook}"), &admin, &json!({"url": "http://127.0.0.1:9/nothing"})).await;
        json_ok(r, 200).await;
        interaction(&app, &admin).await;
        let d = eventually(20, "a connection failure", || async {
            deliveries(&app, &admin, &hook).await.into_iter().find(|d| d["status"] == "failed" && d["last_status_code"].is_null())
        }).await;
        assert!(!d["last_error"].as_str().unwrap().is_empty());
    }

    async fn replay_resends_a_range_as_a_job_with_progress(app) {
        let rx = Receiver::start(0).await;
        let admin = app.login("admin").await;
        // Events before the webhook exists are not delivered on their own.
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(interaction(&app, &admin).await);
        }
        let feed = json_ok(app.get("/api/v1/events?limit=200", &admin).await, 200).await;
        let events: Vec<i64> = feed["items"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert_eq!(events.len(), 5);
        let (hook, secret) = make_hook(&app, &admin, &rx.url, json!([])).await;
        let from = events[2];
        let r = app.post(&format!("/api/v1/webhooks/{hook}/replay"), &admin, &json!({"from_event_id": from})).await;
        let job = json_ok(r, 202).await;
        assert_eq!(job["kind"], "webhook_replay");
        let job_id = job["id"].as_str().unwrap().to_owned();
        let done = eventually(20, "the replay job to finish", || async {
            let j = json_ok(app.get(&format!("/api/v1/jobs/{job_id}"), &admin).await, 200).await;
            (j["status"] == "succeeded").then_some(j)
        }).await;
        assert_eq!(done["progress_total"], 3);
        assert_eq!(done["progress_done"], 3);
        assert_eq!(done["percent"], 100.0);
        assert_eq!(done["result"]["enqueued"], 3);
        let hits = eventually(15, "three replayed deliveries", || async { (rx.hits().len() >= 3).then(|| rx.hits()) }).await;
        let mut got: Vec<i64> = hits.iter().map(|h| h.event_id.parse().unwrap()).collect();
        got.sort();
        assert_eq!(got, events[2..].to_vec());
        assert!(hits.iter().all(|h| verify(&secret, &h.signature, &h.body)));
        // A bad range is refused before any job exists.
        let r = app.post(&format!("/api/v1/webhooks/{hook}/replay"), &admin, &json!({"from_event_id": 10, "to_event_id": 5})).await;
        expect_error(r, 422, "validation_failed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_targets_on_private_networks_are_refused_by_default() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.webhooks.allow_private_targets = false
    })
    .await;
    let admin = app.login("admin").await;
    for url in [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://192.168.0.10/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "http://intranet/x",
        "http://printer.local/x",
        "ftp://example.com/x",
        "http://user:pw@example.com/x",
        "not a url",
    ] {
        let r = app
            .post("/api/v1/webhooks", &admin, &json!({"url": url}))
            .await;
        let body = expect_error(r, 422, "validation_failed").await;
        assert_eq!(
            body["error"]["details"]["fields"][0]["path"], "url",
            "{url}"
        );
    }
    let r = app
        .post(
            "/api/v1/webhooks",
            &admin,
            &json!({"url": "https://hooks.example.com/switchboard"}),
        )
        .await;
    json_ok(r, 201).await;
    let list = json_ok(app.get("/api/v1/webhooks", &admin).await, 200).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "nothing written for refused URLs"
    );
}
