//! Jobs survive the process: killed (SIGKILL) or stopped (SIGTERM) in the
//! middle of a job, the real `switchboard` binary resumes it on restart and
//! the job's work is done exactly once.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::node::Node;

const EVENTS: i64 = 4000;

async fn one(db: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
}

/// Sets up a node with the demo tenant, a webhook and `EVENTS` events, and
/// starts a replay job over all of them. Returns the node, a database
/// handle, the job id, the webhook id and the number of events replayed.
async fn node_with_a_long_job(
    backend: Backend,
) -> (
    Node,
    DatabaseConnection,
    String,
    String,
    i64,
    Option<PgDatabase>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let pg = match backend {
        Backend::Postgres => Some(PgDatabase::create().await),
        Backend::Sqlite => None,
    };
    let db_url = match &pg {
        Some(p) => p.url.clone(),
        None => format!("sqlite://{}", dir.path().join("switchboard.db").display()),
    };
    let mut node = Node::new(
        dir.path(),
        &db_url,
        &[
            ("SWITCHBOARD__JOBS__CHUNK_SIZE", "10"),
            ("SWITCHBOARD__JOBS__LEASE_SECS", "3"),
            ("SWITCHBOARD__JOBS__SHUTDOWN_GRACE_SECS", "10"),
        ],
    );
    node.seed().await;
    node.start().await;
    let admin = node.login("admin@example.com").await;
    let r = node
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks",
            &admin,
            Some(json!({"url": "http://127.0.0.1:9/unreachable", "event_kinds": []})),
        )
        .await;
    assert_eq!(r.status(), 422, "private targets are refused by default");
    let db = Database::connect(&db_url).await.unwrap();
    let rows = one(&db, "SELECT id FROM tenants WHERE slug = 'demo'").await;
    let tenant = rows[0].try_get::<uuid::Uuid>("", "id").unwrap().to_string();
    let r = node
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks",
            &admin,
            Some(json!({"url": "https://hooks.example.com/in", "event_kinds": []})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hook = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Deliveries must not go anywhere: the dispatcher marks them failed.
    let r = node
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/webhooks/{hook}"),
            &admin,
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = node
        .call(
            reqwest::Method::POST,
            "/api/v1/interactions",
            &admin,
            Some(json!({"channel": "email", "direction": "inbound"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let interaction = created["interaction"]["id"].as_str().unwrap().to_owned();
    let first_event = created["event"]["id"].as_i64().unwrap();
    bulk_events(&db, &tenant, &interaction, EVENTS).await;
    let r = node
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/webhooks/{hook}/replay"),
            &admin,
            Some(json!({"from_event_id": first_event})),
        )
        .await;
    assert_eq!(r.status(), 202);
    let job = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (node, db, job, hook, EVENTS + 1, pg, dir)
}

/// Appends `n` note events to an interaction, straight into the database.
async fn bulk_events(db: &DatabaseConnection, tenant: &str, interaction: &str, n: i64) {
    let now = chrono::Utc::now().to_rfc3339();
    let pg = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let (t, i) = if pg {
        (
            format!("'{tenant}'::uuid"),
            format!("'{interaction}'::uuid"),
        )
    } else {
        // sea-orm stores UUIDs in SQLite as 16-byte blobs.
        (
            format!("X'{}'", tenant.replace('-', "")),
            format!("X'{}'", interaction.replace('-', "")),
        )
    };
    let ts = if pg {
        format!("'{now}'::timestamptz")
    } else {
        format!("'{now}'")
    };
    for start in (0..n).step_by(500) {
        let values: Vec<String> = (start..(start + 500).min(n))
            .map(|k| {
                format!(
                    "({t}, {i}, {}, 'note', 'created', '{{}}', NULL, {ts})",
                    k + 2
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO interaction_events (tenant_id, interaction_id, seq, kind, state_after, data, actor, occurred_at) VALUES {}",
            values.join(",")
        );
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
    }
}

async fn job_row(db: &DatabaseConnection, job: &str) -> (String, i64) {
    let pg = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let cond = if pg {
        format!("id = '{job}'::uuid")
    } else {
        format!("id = X'{}'", job.replace('-', ""))
    };
    let rows = one(
        db,
        &format!("SELECT status, progress_done FROM job_records WHERE {cond}"),
    )
    .await;
    (
        rows[0].try_get("", "status").unwrap(),
        rows[0].try_get("", "progress_done").unwrap(),
    )
}

async fn delivery_counts(db: &DatabaseConnection, hook: &str) -> (i64, i64) {
    let pg = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let cond = if pg {
        format!("webhook_id = '{hook}'::uuid")
    } else {
        format!("webhook_id = X'{}'", hook.replace('-', ""))
    };
    let rows = one(db, &format!("SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM webhook_deliveries WHERE {cond}")).await;
    (
        rows[0].try_get("", "n").unwrap(),
        rows[0].try_get("", "d").unwrap(),
    )
}

/// Waits until the job has done some work but not all of it.
async fn wait_mid_job(db: &DatabaseConnection, job: &str, total: i64) -> i64 {
    eventually(60, "the job to be part-way", || async {
        let (status, done) = job_row(db, job).await;
        assert_ne!(
            status, "succeeded",
            "the job finished before it could be interrupted; make it longer"
        );
        (done > 0 && done < total).then_some(done)
    })
    .await
}

async fn finish_and_check(node: &Node, db: &DatabaseConnection, job: &str, hook: &str, total: i64) {
    let admin = node.login("admin@example.com").await;
    let done = eventually(90, "the resumed job to succeed", || async {
        let r = node
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{job}"),
                &admin,
                None,
            )
            .await;
        let j: Value = r.json().await.unwrap();
        assert_ne!(j["status"], "failed", "{j}");
        (j["status"] == "succeeded").then_some(j)
    })
    .await;
    assert_eq!(done["progress_done"], total);
    assert_eq!(done["progress_total"], total);
    assert_eq!(done["result"]["enqueued"], total);
    let (n, distinct) = delivery_counts(db, hook).await;
    assert_eq!(distinct, total, "no event skipped");
    assert_eq!(n, total, "no event enqueued twice");
}

async fn killed_node_resumes(backend: Backend) {
    let (mut node, db, job, hook, total, _pg, _dir) = node_with_a_long_job(backend).await;
    let before = wait_mid_job(&db, &job, total).await;
    node.kill().await;
    let (status, at_kill) = job_row(&db, &job).await;
    assert_eq!(status, "running", "a killed runner leaves its lease behind");
    assert!(at_kill >= before && at_kill < total);
    node.start().await;
    finish_and_check(&node, &db, &job, &hook, total).await;
    node.kill().await;
}

async fn terminated_node_checkpoints_and_resumes(backend: Backend) {
    let (mut node, db, job, hook, total, _pg, _dir) = node_with_a_long_job(backend).await;
    wait_mid_job(&db, &job, total).await;
    let status = node.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let (state, done) = job_row(&db, &job).await;
    assert_eq!(
        state, "queued",
        "the job went back to the queue at a checkpoint"
    );
    assert!(done > 0 && done < total, "{done}");
    let (n, distinct) = delivery_counts(&db, &hook).await;
    assert_eq!(n, done, "work and checkpoint were committed together");
    assert_eq!(distinct, done);
    node.start().await;
    finish_and_check(&node, &db, &job, &hook, total).await;
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_resumes_its_job_exactly_once_sqlite() {
    killed_node_resumes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_resumes_its_job_exactly_once_postgres() {
    if postgres_url().is_some() {
        killed_node_resumes(Backend::Postgres).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_checkpoints_and_resumes_sqlite() {
    terminated_node_checkpoints_and_resumes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_checkpoints_and_resumes_postgres() {
    if postgres_url().is_some() {
        terminated_node_checkpoints_and_resumes(Backend::Postgres).await;
    }
}

crate::both_backends! {
    async fn an_api_key_follows_the_jobs_it_starts(app) {
        let key = app.api_key("demo", "marketer").await;
        let another = app.api_key("demo", "marketer").await;
        let r = app.req(reqwest::Method::POST, "/api/v1/uploads?filename=k.csv", &key)
            .body("name,phone\nAda Lovelace,+12015550100\n").send().await.unwrap();
        let upload = json_ok(r, 201).await["id"].as_str().unwrap().to_owned();
        let r = app.post("/api/v1/contacts/imports", &key, &json!({"upload_id": upload})).await;
        let job = json_ok(r, 202).await["id"].as_str().unwrap().to_owned();
        let done = eventually(30, "the import to finish", || async {
            let j = json_ok(app.get(&format!("/api/v1/jobs/{job}"), &key).await, 200).await;
            (j["status"] == "succeeded").then_some(j)
        }).await;
        assert_eq!(done["result"]["created"], 1, "{done}");
        let mine = json_ok(app.get("/api/v1/jobs", &key).await, 200).await;
        assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
        // Another key of the same role, or a marketer signed in, does not see it.
        expect_error(app.get(&format!("/api/v1/jobs/{job}"), &another).await, 404, "not_found").await;
        let theirs = json_ok(app.get("/api/v1/jobs", &another).await, 200).await;
        assert!(theirs["items"].as_array().unwrap().is_empty(), "{theirs}");
        let marketer = app.login("marketer").await;
        expect_error(app.get(&format!("/api/v1/jobs/{job}"), &marketer).await, 404, "not_found").await;
        // Admins see every job.
        let admin = app.login("admin").await;
        json_ok(app.get(&format!("/api/v1/jobs/{job}"), &admin).await, 200).await;
    }

    async fn jobs_can_be_cancelled_and_listed(app) {
        let admin = app.login("admin").await;
        let r = app.post("/api/v1/webhooks", &admin, &json!({"url": "http://127.0.0.1:9/x"})).await;
        let hook = json_ok(r, 201).await["id"].as_str().unwrap().to_owned();
        // Stop the workers from picking the job up: cancel before it runs
        // is racy, so cancel and accept either outcome, then check the end state.
        let r = app.post(&format!("/api/v1/webhooks/{hook}/replay"), &admin, &json!({"from_event_id": 0})).await;
        let job = json_ok(r, 202).await["id"].as_str().unwrap().to_owned();
        let r = app.post(&format!("/api/v1/jobs/{job}/cancel"), &admin, &json!({})).await;
        let j = json_ok(r, 202).await;
        // Queued: cancelled at once. Running: asked to stop at its next
        // checkpoint. Already done: nothing to cancel.
        assert!(["cancelled", "succeeded", "running"].contains(&j["status"].as_str().unwrap()), "{j}");
        let end = eventually(20, "the job to end", || async {
            let j = json_ok(app.get(&format!("/api/v1/jobs/{job}"), &admin).await, 200).await;
            (j["status"] == "cancelled" || j["status"] == "succeeded").then_some(j)
        }).await;
        assert!(end["finished_at"].is_string());
        let list = json_ok(app.get("/api/v1/jobs", &admin).await, 200).await;
        assert_eq!(list["items"][0]["id"], job);
        // Others may cancel only their own jobs: someone else's is not there.
        let agent = app.login("agent").await;
        let r = app.post(&format!("/api/v1/jobs/{job}/cancel"), &agent, &json!({})).await;
        expect_error(r, 404, "not_found").await;
        let marketer = app.login("marketer").await;
        let r = app.req(reqwest::Method::POST, "/api/v1/uploads?filename=m.csv", &marketer)
            .body("name,phone\nAda Lovelace,+12015550100\n").send().await.unwrap();
        let upload = json_ok(r, 201).await["id"].as_str().unwrap().to_owned();
        let r = app.post("/api/v1/contacts/imports", &marketer, &json!({"upload_id": upload})).await;
        let import = json_ok(r, 202).await["id"].as_str().unwrap().to_owned();
        let r = app.post(&format!("/api/v1/jobs/{import}/cancel"), &marketer, &json!({})).await;
        let j = json_ok(r, 202).await;
        assert!(j["cancel_requested"] == true || j["status"] == "succeeded", "{j}");
        let r = app.post(&format!("/api/v1/jobs/{import}/cancel"), &agent, &json!({})).await;
        expect_error(r, 404, "not_found").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_through_redis_storage() {
    let Some(url) = redis_url() else { return };
    let queue = format!("sbtest-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.jobs.storage = switchboard::config::JobStorage::Redis;
        s.redis.url = switchboard::config::Secret::new(url.clone());
        s.jobs.queue = queue.clone();
    })
    .await;
    let admin = app.login("admin").await;
    for _ in 0..3 {
        let r = app
            .post(
                "/api/v1/interactions",
                &admin,
                &json!({"channel": "sms", "direction": "outbound"}),
            )
            .await;
        json_ok(r, 201).await;
    }
    let r = app
        .post(
            "/api/v1/webhooks",
            &admin,
            &json!({"url": "http://127.0.0.1:9/x", "event_kinds": ["created"]}),
        )
        .await;
    let hook = json_ok(r, 201).await["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/api/v1/webhooks/{hook}/replay"),
            &admin,
            &json!({"from_event_id": 0}),
        )
        .await;
    let job = json_ok(r, 202).await["id"].as_str().unwrap().to_owned();
    let done = eventually(30, "the job to run through Redis", || async {
        let j = json_ok(app.get(&format!("/api/v1/jobs/{job}"), &admin).await, 200).await;
        (j["status"] == "succeeded").then_some(j)
    })
    .await;
    assert_eq!(done["result"]["enqueued"], 3);
}

crate::both_backends! {
    async fn only_admins_and_supervisors_see_other_peoples_jobs(app) {
        let admin = app.login("admin").await;
        let r = app.post("/api/v1/webhooks", &admin, &json!({"url": "http://127.0.0.1:9/x"})).await;
        let hook = json_ok(r, 201).await["id"].as_str().unwrap().to_owned();
        let r = app.post(&format!("/api/v1/webhooks/{hook}/replay"), &admin, &json!({"from_event_id": 0})).await;
        let job = json_ok(r, 202).await["id"].as_str().unwrap().to_owned();
        let sup = app.login("supervisor").await;
        json_ok(app.get(&format!("/api/v1/jobs/{job}"), &sup).await, 200).await;
        for who in ["agent", "marketer"] {
            let c = app.login(who).await;
            let list = json_ok(app.get("/api/v1/jobs", &c).await, 200).await;
            assert!(list["items"].as_array().unwrap().is_empty(), "{who} sees no one else's jobs");
            expect_error(app.get(&format!("/api/v1/jobs/{job}"), &c).await, 404, "not_found").await;
        }
    }
}
