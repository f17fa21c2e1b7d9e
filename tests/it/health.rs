//! Liveness, readiness, metrics, the OpenAPI document, request ids,
//! security headers and the console being served.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::*;

both_backends! {
    async fn health_and_readiness(app) {
        let r = app.get("/healthz", &Creds::None).await;
        assert_eq!(json_ok(r, 200).await["status"], "ok");
        let r = app.get("/readyz", &Creds::None).await;
        let body = json_ok(r, 200).await;
        assert_eq!(body["database"], true);
        assert_eq!(body["status"], "ready");
    }

    async fn request_ids_and_security_headers(app) {
        let r = app.client.get(app.url("/healthz")).header("X-Request-Id", "abc-123").send().await.unwrap();
        assert_eq!(r.headers()["x-request-id"], "abc-123");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
        // A hostile request id is replaced, not echoed.
        let r = app.client.get(app.url("/healthz")).header("X-Request-Id", "<script>x</script>").send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        // Errors carry one too.
        let r = app.get("/api/v1/users", &Creds::None).await;
        assert!(r.headers().contains_key("x-request-id"));
    }

    async fn metrics_count_requests_by_route(app) {
        let admin = app.login("admin").await;
        app.get("/api/v1/users", &admin).await;
        let text = app.get("/metrics", &Creds::None).await.text().await.unwrap();
        assert!(text.contains("switchboard_http_requests_total{method=\"GET\",route=\"/api/v1/users\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("switchboard_login_attempts_total{outcome=\"succeeded\"} 1"), "{text}");
        assert!(text.contains("# TYPE switchboard_http_request_duration_seconds histogram"));
    }

    async fn openapi_document_lists_every_route(app) {
        let r = app.get("/api/v1/openapi.json", &Creds::None).await;
        let doc: Value = json_ok(r, 200).await;
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for p in ["/api/v1/auth/login", "/api/v1/users/{id}", "/api/v1/api-keys", "/api/v1/interactions/{id}/transitions",
                  "/api/v1/webhooks/{id}/replay", "/api/v1/jobs/{id}", "/api/v1/events", "/api/v1/queues"] {
            assert!(paths.contains_key(p), "missing {p}");
        }
        assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
        // Every path parameter is declared and every response described.
        for (p, ops) in paths {
            for (m, op) in ops.as_object().unwrap() {
                for seg in p.split('/').filter(|s| s.starts_with('{')) {
                    let name = seg.trim_matches(|c| c == '{' || c == '}');
                    let declared = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|x| x["name"] == name && x["in"] == "path" && x["required"] == true)
                    });
                    assert!(declared, "{m} {p} does not declare {name}");
                }
                for (status, r) in op["responses"].as_object().unwrap() {
                    assert!(r["description"].as_str().is_some_and(|d| !d.is_empty()), "{m} {p} {status}");
                }
            }
        }
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        // Two types named Channel once shared one schema, and the document lied about queues.
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["Channel"]["enum"], serde_json::json!(["voice", "chat", "sms", "email"]), "{}", schemas["Channel"]);
        assert_eq!(schemas["ConsentChannel"]["enum"], serde_json::json!(["voice", "sms", "email"]), "{}", schemas["ConsentChannel"]);
        // Every operation documents at least one response.
        for (p, ops) in paths {
            for (m, op) in ops.as_object().unwrap() {
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{m} {p}");
            }
        }
    }

    async fn console_and_docs_are_served(app) {
        let r = app.get("/", &Creds::None).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let r = app.get("/docs", &Creds::None).await;
        assert_eq!(r.status(), 200);
        // Assets are revalidated every time, cheaply.
        let r = app.get("/app.js", &Creds::None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let r = app.client.get(app.url("/app.js")).header("If-None-Match", &etag).send().await.unwrap();
        assert_eq!(r.status(), 304);
        let r = app.client.get(app.url("/app.js")).header("If-None-Match", "\"stale\"").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app.get("/nope.js", &Creds::None).await;
        assert_eq!(r.status(), 404);
        let r = app.get("/../Cargo.toml", &Creds::None).await;
        assert_eq!(r.status(), 404);
        let r = app.get("/api/v1/no-such-thing", &Creds::None).await;
        expect_error(r, 404, "not_found").await;
    }
}

/// Nodes of a cluster start together: their migrations must not collide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_on_postgres_take_turns() {
    if postgres_url().is_none() {
        eprintln!("TEST_POSTGRES_URL is not set: this test did not run");
        return;
    }
    let pg = PgDatabase::create().await;
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let url = pg.url.clone();
        tasks.push(tokio::spawn(async move {
            let db = switchboard::db::Database::connect(&url, 2).await.unwrap();
            let r = db.migrate().await;
            db.close().await;
            r
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every node's migration succeeds");
    }
}

both_backends! {
    async fn wrong_methods_get_405_with_allow(app) {
        let admin = app.login("admin").await;
        let r = app.req(reqwest::Method::PUT, "/api/v1/users", &admin).send().await.unwrap();
        assert_eq!(r.headers()["allow"], "GET, POST, HEAD");
        let body = expect_error(r, 405, "method_not_allowed").await;
        assert_eq!(body["error"]["details"]["allowed"][0], "GET");
        let r = app.req(reqwest::Method::DELETE, &format!("/api/v1/users/{}", uuid::Uuid::now_v7()), &admin).send().await.unwrap();
        assert!(r.headers()["allow"].to_str().unwrap().contains("PATCH"));
        expect_error(r, 405, "method_not_allowed").await;
        let r = app.req(reqwest::Method::GET, "/api/v1/users/x/y/z", &admin).send().await.unwrap();
        expect_error(r, 404, "not_found").await;
    }
}
