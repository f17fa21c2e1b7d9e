//! Real-time routing figures: calls driven through the routing API give
//! exact counts, ASA and AHT within the elapsed times, occupancy; the
//! counters survive a rebuilt router; Prometheus and the pushed stream show
//! the same; roles and tenants.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

async fn ids(app: &TestApp, sup: &Creds) -> (Value, Value) {
    let agents = json_ok(app.get("/api/v1/agents", sup).await, 200).await;
    let users = json_ok(
        app.get("/api/v1/users?limit=200", &app.login("admin").await)
            .await,
        200,
    )
    .await;
    let mut by_email = serde_json::Map::new();
    for a in agents["items"].as_array().unwrap() {
        let u = users["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == a["user_id"])
            .unwrap();
        by_email.insert(u["email"].as_str().unwrap().to_owned(), a["id"].clone());
    }
    let queues = json_ok(app.get("/api/v1/queues", sup).await, 200).await;
    let mut by_name = serde_json::Map::new();
    for q in queues["items"].as_array().unwrap() {
        by_name.insert(q["name"].as_str().unwrap().to_owned(), q["id"].clone());
    }
    (Value::Object(by_email), Value::Object(by_name))
}

async fn new_call(app: &TestApp, sup: &Creds) -> String {
    let r = app
        .post(
            "/api/v1/interactions",
            sup,
            &json!({ "channel": "voice", "direction": "inbound", "customer_address": "+12015550100" }),
        )
        .await;
    json_ok(r, 201).await["interaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn presence(app: &TestApp, who: &Creds, agent: &Value, p: Value) {
    let a = agent.as_str().unwrap();
    let r = app
        .req(Method::PUT, &format!("/api/v1/agents/{a}/presence"), who)
        .json(&p)
        .send()
        .await
        .unwrap();
    json_ok(r, 200).await;
}

async fn post_ok(app: &TestApp, path: &str, who: &Creds, status: u16) {
    let r = app.post(path, who, &json!({})).await;
    assert_eq!(r.status().as_u16(), status, "{path}");
}

fn find<'a>(list: &'a Value, key: &str, id: &Value) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x[key] == *id)
        .unwrap_or_else(|| panic!("{id} in {list}"))
}

async fn metrics(app: &TestApp, sup: &Creds) -> Value {
    json_ok(app.get("/api/v1/routing/metrics", sup).await, 200).await
}

/// The next `metrics` event on an SSE stream (10 s at most).
async fn next_event<S, B>(text: &mut String, stream: &mut S) -> Value
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    const HEAD: &str = "event: metrics\ndata: ";
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(start) = text.find(HEAD)
                && let Some(end) = text[start + HEAD.len()..].find("\n\n")
            {
                let from = start + HEAD.len();
                let v: Value = serde_json::from_str(&text[from..from + end]).unwrap();
                text.drain(..from + end + 2);
                return v;
            }
            let chunk = stream.next().await.expect("the stream goes on").unwrap();
            text.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
    })
    .await
    .expect("a metrics event within 10 s")
}

/// The value of a Prometheus sample with exactly these labels.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .map(|v| v.trim().parse().unwrap())
}

both_backends! {
    async fn queue_and_agent_figures_follow_the_calls_and_survive_a_rebuild(app) {
        let sup = app.login("supervisor").await;
        let alex = app.login("agent").await; // the only agent with sales
        let (agents, queues) = ids(&app, &sup).await;
        let a1 = agents["agent@example.com"].clone();
        let sales = queues["Sales"].clone();
        let tenant = json_ok(app.get("/api/v1/tenant", &sup).await, 200).await["id"].clone();

        presence(&app, &alex, &a1, json!({ "presence": "away", "reason": "lunch" })).await;
        let (c1, c2) = (new_call(&app, &sup).await, new_call(&app, &sup).await);
        let before_route = Instant::now();
        for c in [&c1, &c2] {
            json_ok(app.post(&format!("/api/v1/interactions/{c}/route"), &sup, &json!({ "queue_id": sales })).await, 200).await;
        }
        let routed = Instant::now();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let m = metrics(&app, &sup).await;
        let q = find(&m["queues"], "queue_id", &sales);
        assert_eq!((q["name"].as_str(), &q["waiting"], &q["arrived"], &q["answered"]), (Some("Sales"), &json!(2), &json!(2), &json!(0)), "{q}");
        let longest = q["longest_wait_secs"].as_f64().unwrap();
        assert!(longest >= 1.2 && longest <= before_route.elapsed().as_secs_f64() + 0.01, "{longest}");
        assert!(q["asa_secs"].is_null() && q["service_level"].is_null() && q["abandon_rate"].is_null(), "{q}");
        assert_eq!((&q["service_level_target_pct"], &q["sl_threshold_secs"]), (&json!(80), &json!(20)));

        // The second caller gives up; Alex comes back and answers the first.
        post_ok(&app, &format!("/api/v1/interactions/{c2}/hang-up"), &sup, 204).await;
        presence(&app, &alex, &a1, json!({ "presence": "available" })).await;
        let before_accept = Instant::now();
        post_ok(&app, &format!("/api/v1/interactions/{c1}/accept"), &alex, 204).await;
        let accepted = Instant::now();
        let wait_min = accepted.duration_since(routed).as_secs_f64() - accepted.duration_since(before_accept).as_secs_f64();
        let wait_max = accepted.duration_since(before_route).as_secs_f64();
        tokio::time::sleep(Duration::from_millis(700)).await;
        post_ok(&app, &format!("/api/v1/interactions/{c1}/hang-up"), &alex, 204).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before_end = Instant::now();
        json_ok(app.post(&format!("/api/v1/agents/{}/wrap-up/end", a1.as_str().unwrap()), &alex, &json!({})).await, 200).await;
        let ended = Instant::now();
        let handle_min = before_end.duration_since(accepted).as_secs_f64();
        let handle_max = ended.duration_since(before_accept).as_secs_f64();

        let check = |m: &Value| {
            let q = find(&m["queues"], "queue_id", &sales);
            assert_eq!((&q["waiting"], &q["offered"], &q["arrived"], &q["answered"], &q["abandoned"], &q["overflowed"]),
                (&json!(0), &json!(0), &json!(2), &json!(1), &json!(1), &json!(0)), "{q}");
            assert_eq!(q["longest_wait_secs"], 0.0);
            assert_eq!(q["abandon_rate"], 0.5, "{q}");
            // One of the two finished waits was answered within 20 s.
            assert_eq!(q["service_level"], 0.5, "{q}");
            let asa = q["asa_secs"].as_f64().unwrap();
            assert!(asa >= wait_min - 0.01 && asa <= wait_max + 0.01, "ASA {asa} in {wait_min}..{wait_max}");
            let aht = q["aht_secs"].as_f64().unwrap();
            assert!(aht >= handle_min - 0.01 && aht <= handle_max + 0.01, "AHT {aht} in {handle_min}..{handle_max}");
            let a = find(&m["agents"], "agent_id", &a1);
            assert_eq!((a["display_name"].as_str(), a["status"].as_str(), a["presence"].as_str(), &a["handled"]), (Some("Alex Agent"), Some("idle"), Some("available"), &json!(1)), "{a}");
            assert_eq!(a["capacity"], json!({ "voice": 1, "chat": 3, "sms": 0, "email": 0 }));
            assert_eq!(a["load"], json!({ "voice": 0, "chat": 0, "sms": 0, "email": 0 }));
            assert_eq!(a["aht_secs"], q["aht_secs"]);
            let occ = a["occupancy"].as_f64().unwrap();
            assert!(occ > 0.0 && occ <= 1.0, "{occ}");
            (asa, aht, occ)
        };
        let m = metrics(&app, &sup).await;
        let (asa, aht, occ) = check(&m);
        let since = m["since"].as_str().unwrap().to_owned();
        assert!(chrono::DateTime::parse_from_rfc3339(&since).is_ok() && chrono::DateTime::parse_from_rfc3339(m["generated_at"].as_str().unwrap()).is_ok());

        // A change by hand rebuilds the router; the counts stay.
        let c3 = new_call(&app, &sup).await;
        json_ok(app.post(&format!("/api/v1/interactions/{c3}/route"), &sup, &json!({ "queue_id": queues["Billing"] })).await, 200).await;
        json_ok(app.post(&format!("/api/v1/interactions/{c3}/transitions"), &sup, &json!({ "type": "abandon" })).await, 200).await;
        let m = metrics(&app, &sup).await;
        let (asa2, aht2, occ2) = check(&m);
        assert_eq!((asa2, aht2), (asa, aht));
        assert!(occ2 <= occ, "idle since: occupancy only falls ({occ} -> {occ2})");
        assert_eq!(m["since"], since);
        let billing = find(&m["queues"], "queue_id", &queues["Billing"]);
        assert_eq!((&billing["arrived"], &billing["waiting"]), (&json!(1), &json!(0)), "{billing}");

        // Prometheus: the same figures, labelled by ids.
        let text = app.get("/metrics", &Creds::None).await.text().await.unwrap();
        let ql = format!("tenant=\"{}\",queue=\"{}\"", tenant.as_str().unwrap(), sales.as_str().unwrap());
        let al = format!("tenant=\"{}\",agent=\"{}\"", tenant.as_str().unwrap(), a1.as_str().unwrap());
        assert_eq!(sample(&text, "switchboard_acd_queue_waiting", &ql), Some(0.0), "{text}");
        assert_eq!(sample(&text, "switchboard_acd_queue_longest_wait_seconds", &ql), Some(0.0));
        assert_eq!(sample(&text, "switchboard_acd_queue_abandon_ratio", &ql), Some(0.5));
        assert_eq!(sample(&text, "switchboard_acd_queue_service_level_ratio", &ql), Some(0.5));
        assert_eq!(sample(&text, "switchboard_acd_queue_asa_seconds", &ql), Some(asa));
        assert_eq!(sample(&text, "switchboard_acd_queue_aht_seconds", &ql), Some(aht));
        assert_eq!(sample(&text, "switchboard_acd_agent_handled_total", &al), Some(1.0));
        let p_occ = sample(&text, "switchboard_acd_agent_occupancy_ratio", &al).unwrap();
        assert!(p_occ > 0.0 && p_occ <= occ2, "{p_occ}");
        let st = |s: &str| sample(&text, "switchboard_acd_agents", &format!("tenant=\"{}\",status=\"{s}\"", tenant.as_str().unwrap()));
        assert_eq!((st("idle"), st("offline"), st("busy")), (Some(1.0), Some(2.0), Some(0.0)), "{text}");
        assert!(!text.contains("Alex Agent") && !text.contains("queue=\"Sales\""));
    }

    async fn the_stream_pushes_a_change_and_roles_and_tenants_are_kept_apart(app) {
        let sup = app.login("supervisor").await;
        let alex = app.login("agent").await;
        let (agents, queues) = ids(&app, &sup).await;
        let a1 = agents["agent@example.com"].clone();
        let sales = queues["Sales"].clone();
        presence(&app, &alex, &a1, json!({ "presence": "available" })).await;

        let resp = app.req(Method::GET, "/api/v1/routing/stream", &sup).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let mut stream = resp.bytes_stream();
        let mut text = String::new();
        // The figures arrive at once...
        let first = next_event(&mut text, &mut stream).await;
        let q = find(&first["queues"], "queue_id", &sales);
        assert_eq!((&q["arrived"], &q["offered"]), (&json!(0), &json!(0)), "{q}");
        assert_eq!(find(&first["agents"], "agent_id", &a1)["status"], "idle");
        // ...and again when a call rings Alex.
        let c = new_call(&app, &sup).await;
        json_ok(app.post(&format!("/api/v1/interactions/{c}/route"), &sup, &json!({ "queue_id": sales })).await, 200).await;
        let next = next_event(&mut text, &mut stream).await;
        let q = find(&next["queues"], "queue_id", &sales);
        assert_eq!((&q["arrived"], &q["offered"], &q["waiting"]), (&json!(1), &json!(1), &json!(0)), "{q}");
        let a = find(&next["agents"], "agent_id", &a1);
        assert_eq!((a["status"].as_str(), &a["load"]["voice"]), (Some("busy"), &json!(1)), "{a}");

        // Agents may not read the figures.
        expect_error(app.get("/api/v1/routing/metrics", &alex).await, 403, "forbidden").await;
        expect_error(app.get("/api/v1/routing/stream", &alex).await, 403, "forbidden").await;
        // Another tenant sees none of it.
        let other = app.api_key("other", "admin").await;
        let theirs = metrics(&app, &other).await;
        let s = theirs.to_string();
        assert!(!s.contains(sales.as_str().unwrap()) && !s.contains(a1.as_str().unwrap()), "{s}");
        assert!(theirs["queues"].as_array().unwrap().iter().all(|q| q["arrived"] == 0), "{theirs}");
    }
}
