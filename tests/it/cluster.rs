//! Cluster mode: two nodes on one PostgreSQL database with Redis for the
//! bus and the jobs.

use futures_util::StreamExt;
use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_events_sessions_and_jobs() {
    let (Some(_), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let cluster = |s: &mut switchboard::config::Settings| {
        s.bus.backend = switchboard::config::BusBackend::Redis;
        s.bus.channel = format!("sbtest:{unique}:events");
        s.jobs.storage = switchboard::config::JobStorage::Redis;
        s.jobs.queue = format!("sbtest-{unique}");
        s.redis.url = switchboard::config::Secret::new(redis.clone());
    };
    let a = spawn_app_with(Backend::Postgres, cluster).await;
    let b = spawn_second_node(&a, |_| {}).await;

    // A session made on node A works on node B (sessions live in the database).
    let sup = a.login("supervisor").await;
    let me = json_ok(b.get("/api/v1/auth/me", &sup).await, 200).await;
    assert_eq!(me["role"], "supervisor");

    // A console streaming from node B sees what happens on node A.
    let Creds::Session { cookie, .. } = &sup else {
        unreachable!()
    };
    let resp = b
        .client
        .get(b.url("/api/v1/events/stream"))
        .header("Cookie", format!("sb_session={cookie}"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let r = a
        .post(
            "/api/v1/interactions",
            &sup,
            &json!({"channel": "voice", "direction": "inbound"}),
        )
        .await;
    let id = json_ok(r, 201).await["interaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut text = String::new();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if text.contains(&id) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(seen, "node B streamed node A's event: {text}");
    assert_eq!(
        text.matches(&id).count(),
        1,
        "delivered once, not echoed back"
    );

    // A job started on node B is visible, and finished, from node A.
    let admin = b.login("admin").await;
    let r = b
        .post(
            "/api/v1/webhooks",
            &admin,
            &json!({"url": "http://127.0.0.1:9/x"}),
        )
        .await;
    let hook = json_ok(r, 201).await["id"].as_str().unwrap().to_owned();
    let r = b
        .post(
            &format!("/api/v1/webhooks/{hook}/replay"),
            &admin,
            &json!({"from_event_id": 0}),
        )
        .await;
    let job = json_ok(r, 202).await["id"].as_str().unwrap().to_owned();
    let done = eventually(30, "the job to finish", || async {
        let j = json_ok(a.get(&format!("/api/v1/jobs/{job}"), &admin).await, 200).await;
        (j["status"] == "succeeded").then_some(j)
    })
    .await;
    assert_eq!(done["result"]["enqueued"], 1);
    b.shutdown().await;
    a.shutdown().await;
}
