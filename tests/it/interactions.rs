//! The interaction spine over HTTP: lifecycle, timeline, the event feed and
//! the live stream.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

async fn first_id(app: &TestApp, creds: &Creds, path: &str) -> String {
    let body = json_ok(app.get(path, creds).await, 200).await;
    body["items"][0]["id"].as_str().expect("an item").to_owned()
}

async fn new_interaction(app: &TestApp, creds: &Creds) -> Value {
    let r = app
        .post(
            "/api/v1/interactions",
            creds,
            &json!({"channel": "voice", "direction": "inbound", "customer_address": "+15551230000",
                    "attributes": {"ivr.choice": "2"}}),
        )
        .await;
    json_ok(r, 201).await
}

both_backends! {
    async fn a_call_goes_through_its_whole_lifecycle(app) {
        let sup = app.login("supervisor").await;
        let queue = first_id(&app, &sup, "/api/v1/queues").await;
        let agent = first_id(&app, &sup, "/api/v1/agents").await;
        let created = new_interaction(&app, &sup).await;
        let id = created["interaction"]["id"].as_str().unwrap().to_owned();
        assert_eq!(created["interaction"]["state"], "created");
        assert_eq!(created["event"]["kind"], "created");
        assert_eq!(created["event"]["seq"], 1);

        let steps = [
            (json!({"type": "enter_flow", "flow": "main-menu"}), "in_flow", "flow_entered"),
            (json!({"type": "enqueue", "queue_id": queue}), "queued", "queued"),
            (json!({"type": "offer", "agent_id": agent}), "offered", "offered"),
            (json!({"type": "offer_timeout", "agent_id": agent}), "queued", "offer_timed_out"),
            (json!({"type": "offer", "agent_id": agent}), "offered", "offered"),
            (json!({"type": "accept", "agent_id": agent}), "connected", "connected"),
            (json!({"type": "wrap_up"}), "wrap_up", "wrap_up_started"),
            (json!({"type": "close", "reason": "completed"}), "closed", "closed"),
        ];
        for (i, (t, state, kind)) in steps.iter().enumerate() {
            let r = app.post(&format!("/api/v1/interactions/{id}/transitions"), &sup, t).await;
            let body = json_ok(r, 200).await;
            assert_eq!(body["interaction"]["state"], *state, "step {i}");
            assert_eq!(body["event"]["kind"], *kind, "step {i}");
            assert_eq!(body["event"]["seq"], (i + 2) as i64, "step {i}");
        }
        let m = json_ok(app.get(&format!("/api/v1/interactions/{id}"), &sup).await, 200).await;
        assert_eq!(m["state"], "closed");
        assert_eq!(m["close_reason"], "completed");
        assert_eq!(m["queue_id"], queue);
        assert_eq!(m["agent_id"], agent);
        assert!(m["closed_at"].is_string());
        assert_eq!(m["attributes"]["ivr.choice"], "2");

        let tl = json_ok(app.get(&format!("/api/v1/interactions/{id}/events"), &sup).await, 200).await;
        let seqs: Vec<i64> = tl.as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
        let after = json_ok(app.get(&format!("/api/v1/interactions/{id}/events?after_seq=7"), &sup).await, 200).await;
        assert_eq!(after.as_array().unwrap().len(), 2);
    }

    async fn invalid_transitions_are_refused_and_change_nothing(app) {
        let sup = app.login("supervisor").await;
        let agent = first_id(&app, &sup, "/api/v1/agents").await;
        let id = new_interaction(&app, &sup).await["interaction"]["id"].as_str().unwrap().to_owned();
        for t in [json!({"type": "wrap_up"}), json!({"type": "accept", "agent_id": agent}),
                  json!({"type": "close", "reason": "completed"})] {
            let r = app.post(&format!("/api/v1/interactions/{id}/transitions"), &sup, &t).await;
            let body = expect_error(r, 409, "invalid_transition").await;
            assert_eq!(body["error"]["details"]["state"], "created");
        }
        let m = json_ok(app.get(&format!("/api/v1/interactions/{id}"), &sup).await, 200).await;
        assert_eq!(m["last_seq"], 1);
        assert_eq!(m["state"], "created");
        // Unknown transition types are validation errors, not conflicts.
        let r = app.post(&format!("/api/v1/interactions/{id}/transitions"), &sup, &json!({"type": "teleport"})).await;
        expect_error(r, 422, "validation_failed").await;
        // Closed is final.
        let r = app.post(&format!("/api/v1/interactions/{id}/transitions"), &sup, &json!({"type": "abandon"})).await;
        json_ok(r, 200).await;
        let r = app.post(&format!("/api/v1/interactions/{id}/notes"), &sup, &json!({"text": "too late"})).await;
        expect_error(r, 409, "invalid_transition").await;
    }

    async fn concurrent_changes_are_serialised(app) {
        let sup = app.login("supervisor").await;
        let id = new_interaction(&app, &sup).await["interaction"]["id"].as_str().unwrap().to_owned();
        let mut handles = Vec::new();
        for i in 0..12 {
            let url = app.url(&format!("/api/v1/interactions/{id}/notes"));
            let client = app.client.clone();
            let Creds::Session { cookie, csrf } = sup.clone() else { unreachable!() };
            handles.push(tokio::spawn(async move {
                client.post(url).header("Cookie", format!("sb_session={cookie}")).header("X-CSRF-Token", csrf)
                    .json(&json!({"text": format!("note {i}")})).send().await.unwrap().status().as_u16()
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap(), 201);
        }
        let tl = json_ok(app.get(&format!("/api/v1/interactions/{id}/events"), &sup).await, 200).await;
        let seqs: Vec<i64> = tl.as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=13).collect::<Vec<_>>(), "every note stored once, in one order");
    }

    async fn the_event_feed_pages_by_cursor(app) {
        let sup = app.login("supervisor").await;
        for _ in 0..3 {
            new_interaction(&app, &sup).await;
        }
        let page1 = json_ok(app.get("/api/v1/events?limit=2", &sup).await, 200).await;
        assert_eq!(page1["items"].as_array().unwrap().len(), 2);
        let after = page1["next_after"].as_i64().unwrap();
        let page2 = json_ok(app.get(&format!("/api/v1/events?after={after}&limit=50"), &sup).await, 200).await;
        assert_eq!(page2["items"].as_array().unwrap().len(), 1);
        assert!(page2["items"][0]["id"].as_i64().unwrap() > after);
        let only = json_ok(app.get("/api/v1/events?kind=created", &sup).await, 200).await;
        assert_eq!(only["items"].as_array().unwrap().len(), 3);
        let empty = json_ok(app.get(&format!("/api/v1/events?after={}", page2["next_after"]), &sup).await, 200).await;
        assert!(empty["items"].as_array().unwrap().is_empty());
        assert_eq!(empty["next_after"], page2["next_after"]);
    }

    async fn interactions_list_filters_and_pages(app) {
        let sup = app.login("supervisor").await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(new_interaction(&app, &sup).await["interaction"]["id"].as_str().unwrap().to_owned());
        }
        let r = app.post(&format!("/api/v1/interactions/{}/transitions", ids[0]), &sup, &json!({"type": "abandon"})).await;
        json_ok(r, 200).await;
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/interactions?limit=2&cursor={c}"),
                None => "/api/v1/interactions?limit=2".to_owned(),
            };
            let page = json_ok(app.get(&path, &sup).await, 200).await;
            for it in page["items"].as_array().unwrap() {
                seen.push(it["id"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let mut expected = ids.clone();
        expected.reverse();
        assert_eq!(seen, expected, "newest first, each once");
        let closed = json_ok(app.get("/api/v1/interactions?state=closed", &sup).await, 200).await;
        assert_eq!(closed["items"].as_array().unwrap().len(), 1);
        assert_eq!(closed["items"][0]["close_reason"], "abandoned");
        let chats = json_ok(app.get("/api/v1/interactions?channel=chat", &sup).await, 200).await;
        assert!(chats["items"].as_array().unwrap().is_empty());
    }

    async fn the_live_stream_carries_the_tenants_events_only(app) {
        let sup = app.login("supervisor").await;
        let Creds::Session { cookie, .. } = &sup else { unreachable!() };
        let resp = app.client.get(app.url("/api/v1/events/stream")).header("Cookie", format!("sb_session={cookie}"))
            .send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let mut stream = resp.bytes_stream();
        // Another tenant's event must not show up; ours must.
        let other = app.login_to("other", "supervisor@other.example", DEMO_PASSWORD).await;
        new_interaction(&app, &other).await;
        let mine = new_interaction(&app, &sup).await;
        let want = mine["interaction"]["id"].as_str().unwrap().to_owned();
        let mut text = String::new();
        let found = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Some(chunk) = stream.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                if text.contains(&want) {
                    return true;
                }
            }
            false
        }).await.unwrap_or(false);
        assert!(found, "our event arrived on the stream: {text}");
        assert!(text.contains("event: interaction"));
        assert_eq!(text.matches("event: interaction").count(), 1, "only our one event: {text}");
    }
}

both_backends! {
    /// A reader following the feed by cursor while writers commit
    /// concurrently sees every event exactly once.
    async fn a_feed_reader_never_misses_events_under_concurrent_writes(app) {
        let sup = app.login("supervisor").await;
        let writers = 6;
        let per_writer = 15;
        let mut handles = Vec::new();
        for _ in 0..writers {
            let url = app.url("/api/v1/interactions");
            let client = app.client.clone();
            let Creds::Session { cookie, csrf } = sup.clone() else { unreachable!() };
            handles.push(tokio::spawn(async move {
                for _ in 0..per_writer {
                    let r = client.post(&url).header("Cookie", format!("sb_session={cookie}"))
                        .header("X-CSRF-Token", &csrf)
                        .json(&json!({"channel": "chat", "direction": "inbound"})).send().await.unwrap();
                    assert_eq!(r.status(), 201);
                }
            }));
        }
        let mut seen: Vec<i64> = Vec::new();
        let mut after = 0i64;
        let total = writers * per_writer;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.len() < total {
            assert!(std::time::Instant::now() < deadline, "saw only {} of {total}", seen.len());
            let page = json_ok(app.get(&format!("/api/v1/events?after={after}&limit=7"), &sup).await, 200).await;
            for e in page["items"].as_array().unwrap() {
                seen.push(e["id"].as_i64().unwrap());
            }
            after = page["next_after"].as_i64().unwrap();
        }
        for h in handles {
            h.await.unwrap();
        }
        let all = json_ok(app.get("/api/v1/events?limit=200", &sup).await, 200).await;
        let all: Vec<i64> = all["items"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert_eq!(all.len(), total);
        assert_eq!(seen, all, "the cursor reader saw every event once, in order");
    }
}

both_backends! {
    /// An open stream ends once its session does.
    async fn the_stream_ends_when_the_session_ends(app) {
        let sup = app.login("supervisor").await;
        let Creds::Session { cookie, .. } = &sup else { unreachable!() };
        let resp = app.client.get(app.url("/api/v1/events/stream"))
            .header("Cookie", format!("sb_session={cookie}")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let r = app.post("/api/v1/auth/logout", &sup, &json!({})).await;
        assert_eq!(r.status(), 204);
        let admin = app.login("admin").await;
        let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            let mut text = String::new();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
                    Err(_) => break,
                }
                // Keep the tenant busy so the stream has something to send.
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                new_interaction(&app, &admin).await;
            }
            text
        }).await;
        let text = ended.expect("the stream closed within 20 s of the logout");
        // The credentials are rechecked every second: at most that much leaks.
        assert!(text.matches("event: interaction").count() <= 5, "at most what raced the check: {text}");
    }
}
