//! Bad input gets a clear error in the one error shape, and changes nothing:
//! malformed, oversized, mistyped, unknown and hostile bodies, bad query
//! strings and path ids, and the field rules of every write.

use std::collections::BTreeMap;

use reqwest::{Method, Response};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use switchboard::iam::entity::{api_key, audit, session, user};
use switchboard::interactions::entity::{event, interaction, webhook};

use crate::both_backends;
use crate::helpers::*;

const MIB: usize = 1024 * 1024;

// ---- helpers ---------------------------------------------------------------

fn uniq(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Row counts of every table a write could touch, across all tenants.
async fn counts(app: &TestApp) -> BTreeMap<&'static str, u64> {
    let db = &app.state.db.conn;
    BTreeMap::from([
        ("users", user::Entity::find().count(db).await.unwrap()),
        ("api_keys", api_key::Entity::find().count(db).await.unwrap()),
        ("sessions", session::Entity::find().count(db).await.unwrap()),
        ("audit_log", audit::Entity::find().count(db).await.unwrap()),
        (
            "interactions",
            interaction::Entity::find().count(db).await.unwrap(),
        ),
        ("events", event::Entity::find().count(db).await.unwrap()),
        ("webhooks", webhook::Entity::find().count(db).await.unwrap()),
        (
            "jobs",
            switchboard::jobs::job::Entity::find()
                .count(db)
                .await
                .unwrap(),
        ),
    ])
}

/// Checks an error response: status, code, the one body shape with a
/// message, and a request id. Returns the body.
async fn rejected(r: Response, status: u16, code: &str) -> Value {
    let rid = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "errors are JSON"
    );
    let body = expect_error(r, status, code).await;
    assert!(
        rid.is_some_and(|id| !id.is_empty()),
        "an x-request-id on every error: {body}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only `error` at the top: {body}"
    );
    assert_eq!(body["error"].as_object().unwrap().len(), 3, "{body}");
    body
}

/// A 422 naming `path` among its invalid fields.
async fn invalid_field(r: Response, path: &str) -> Value {
    let body = rejected(r, 422, "validation_failed").await;
    let fields = body["error"]["details"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("details.fields: {body}"));
    assert!(!fields.is_empty(), "{body}");
    for f in fields {
        assert!(
            f["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    assert!(
        fields.iter().any(|f| f["path"] == path),
        "expected an error at {path}: {body}"
    );
    body
}

async fn send_raw(
    app: &TestApp,
    method: &Method,
    path: &str,
    creds: &Creds,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let mut rb = app.req(method.clone(), path, creds).body(body);
    if let Some(ct) = content_type {
        rb = rb.header("Content-Type", ct);
    }
    rb.send().await.expect("request")
}

/// One write endpoint and examples of its bodies.
struct Endpoint {
    method: Method,
    path: String,
    creds: Creds,
    valid: Value,
    /// A body with a value of the wrong type, and that value's path.
    wrong_type: Vec<(Value, &'static str)>,
    /// A body without a required field, and that field (None: all optional).
    missing: Option<(Value, &'static str)>,
    /// A string field of the body.
    string_field: &'static str,
    /// What a client can see of the object the endpoint changes.
    watch: Option<String>,
    /// The status of the valid body.
    ok: u16,
}

async fn watched(app: &TestApp, ep: &Endpoint, admin: &Creds) -> Option<Value> {
    match &ep.watch {
        Some(p) => Some(json_ok(app.get(p, admin).await, 200).await),
        None => None,
    }
}

fn with(valid: &Value, key: &str, v: Value) -> Value {
    let mut b = valid.clone();
    b.as_object_mut().unwrap().insert(key.to_owned(), v);
    b
}

/// Every generic kind of bad body, each refused with the right error and
/// without a trace; then the valid body, to show the endpoint was reachable.
async fn check_endpoint(app: &TestApp, admin: &Creds, ep: Endpoint) {
    let m = &ep.method;
    let p = ep.path.as_str();
    let json_ct = Some("application/json");
    let valid_bytes = serde_json::to_vec(&ep.valid).unwrap();
    let before = counts(app).await;
    let object_before = watched(app, &ep, admin).await;
    let mut n = 0;
    macro_rules! unchanged {
        ($what:expr) => {{
            n += 1;
            assert_eq!(
                counts(app).await,
                before,
                "{m} {p}: {} wrote something",
                $what
            );
        }};
    }

    // Malformed JSON, an empty body, trailing data: 400 malformed_json.
    let mut trailing = valid_bytes.clone();
    trailing.extend_from_slice(b" x");
    let mut twice = valid_bytes.clone();
    twice.extend_from_slice(&valid_bytes);
    let mut unterminated = valid_bytes.clone();
    unterminated.pop();
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", b"{\"a\": ".to_vec()),
        (
            "truncated after a known field",
            format!("{{\"{}\": ", ep.string_field).into_bytes(),
        ),
        ("a trailing comma after a valid body", {
            let mut b = valid_bytes.clone();
            b.pop();
            b.extend_from_slice(b",}");
            b
        }),
        (
            "NaN in a known field",
            format!("{{\"{}\": NaN}}", ep.string_field).into_bytes(),
        ),
        ("unterminated object", unterminated),
        ("single quotes", b"{'a': 1}".to_vec()),
        ("a trailing comma", b"{\"a\": 1,}".to_vec()),
        ("a bare word", b"hello".to_vec()),
        ("empty", Vec::new()),
        ("only whitespace", b"  \n ".to_vec()),
        ("trailing garbage", trailing),
        ("two values", twice),
        ("an invalid UTF-8 key", b"{\"\xff\xfe\": 1}".to_vec()),
        (
            "an invalid UTF-8 value",
            format!("{{\"{}\": \"", ep.string_field)
                .into_bytes()
                .into_iter()
                .chain(b"\xc3\x28\xa0\xa1\"}".iter().copied())
                .collect(),
        ),
        (
            "a lone surrogate",
            format!("{{\"{}\": \"\\ud800\"}}", ep.string_field).into_bytes(),
        ),
        ("NaN", b"{\"a\": NaN}".to_vec()),
    ];
    for (what, bytes) in malformed {
        let r = send_raw(app, m, p, &ep.creds, json_ct, bytes).await;
        let status = r.status().as_u16();
        let body = rejected(r, 400, "malformed_json").await;
        assert_eq!(status, 400, "{m} {p} {what}: {body}");
        unchanged!(what);
    }

    // Well-formed JSON that is not an object: 422.
    for not_an_object in [
        json!([]),
        json!("text"),
        json!(null),
        json!(42),
        json!(true),
    ] {
        let r = app
            .req(m.clone(), p, &ep.creds)
            .json(&not_an_object)
            .send()
            .await
            .unwrap();
        rejected(r, 422, "validation_failed").await;
        unchanged!(format!("{not_an_object} as the body"));
    }
    // A missing required field: 422 naming it.
    if let Some((body, field)) = &ep.missing {
        let r = app
            .req(m.clone(), p, &ep.creds)
            .json(body)
            .send()
            .await
            .unwrap();
        let e = rejected(r, 422, "validation_failed").await;
        assert!(
            e["error"]["details"]["fields"].to_string().contains(field),
            "{m} {p}: {field} not named: {e}"
        );
        unchanged!(format!("missing {field}"));
    }

    // Larger than http.max_body_bytes: 413, with a Content-Length...
    let limit = app.state.settings.http.max_body_bytes;
    assert_eq!(limit, MIB);
    let huge = with(&ep.valid, ep.string_field, json!("a".repeat(limit + 10)));
    let huge_bytes = serde_json::to_vec(&huge).unwrap();
    let r = send_raw(app, m, p, &ep.creds, json_ct, huge_bytes.clone()).await;
    let e = rejected(r, 413, "payload_too_large").await;
    assert_eq!(e["error"]["details"]["limit_bytes"], limit);
    unchanged!("a body over the limit");
    // ... and streamed without one.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = huge_bytes
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let r = app
        .req(m.clone(), p, &ep.creds)
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("a response to a streamed body");
    rejected(r, 413, "payload_too_large").await;
    unchanged!("a streamed body over the limit");

    // Not JSON by its Content-Type: 415.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("application/xml"),
        None,
    ] {
        let r = send_raw(app, m, p, &ep.creds, ct, valid_bytes.clone()).await;
        rejected(r, 415, "unsupported_media_type").await;
        unchanged!(format!("content type {ct:?}"));
    }

    // Deep nesting: a clean 4xx, and the server carries on.
    for deep in [
        "[".repeat(10_000),
        "{\"a\":".repeat(10_000),
        format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000)),
    ] {
        let r = send_raw(app, m, p, &ep.creds, json_ct, deep.into_bytes()).await;
        let status = r.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{m} {p}: deep nesting gave {status}"
        );
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
        unchanged!("deep nesting");
    }
    json_ok(app.get("/healthz", &Creds::None).await, 200).await;
    // Unknown fields: 422 naming the field.
    for field in ["bogus_field", "tenant_id", "id", "is_admin"] {
        let body = with(&ep.valid, field, json!(true));
        let r = app
            .req(m.clone(), p, &ep.creds)
            .json(&body)
            .send()
            .await
            .unwrap();
        let e = rejected(r, 422, "validation_failed").await;
        assert!(
            e["error"]["details"]["fields"].to_string().contains(field),
            "{m} {p}: {field} not named: {e}"
        );
        unchanged!(format!("unknown field {field}"));
    }
    // Well-formed JSON with a value of the wrong type: 422 with its path.
    for (body, path) in &ep.wrong_type {
        invalid_field(
            app.req(m.clone(), p, &ep.creds)
                .json(body)
                .send()
                .await
                .unwrap(),
            path,
        )
        .await;
        unchanged!(format!("wrong type at {path}"));
    }
    assert!(n >= 30, "{n} rejections checked");

    // The object is as it was.
    assert_eq!(
        watched(app, &ep, admin).await,
        object_before,
        "{m} {p}: the object changed"
    );

    // The valid body, with a charset parameter, is accepted: the errors above
    // were about the bodies, not the endpoint.
    let r = send_raw(
        app,
        m,
        p,
        &ep.creds,
        Some("application/json; charset=utf-8"),
        valid_bytes,
    )
    .await;
    json_ok(r, ep.ok).await;
}

async fn new_interaction(app: &TestApp, creds: &Creds) -> String {
    let r = app
        .post(
            "/api/v1/interactions",
            creds,
            &json!({ "channel": "voice", "direction": "inbound" }),
        )
        .await;
    json_ok(r, 201).await["interaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn new_user(app: &TestApp, admin: &Creds) -> String {
    let r = app
        .post(
            "/api/v1/users",
            admin,
            &json!({ "email": format!("{}@example.com", uniq("target")), "display_name": "Target", "role": "agent", "password": "long-enough-password" }),
        )
        .await;
    json_ok(r, 201).await["id"].as_str().unwrap().to_owned()
}

// ---- bodies, endpoint by endpoint --------------------------------------------

both_backends! {
    async fn create_user_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        let valid = json!({ "email": format!("{}@example.com", uniq("ok")), "display_name": "Okay", "role": "agent", "password": "long-enough-password" });
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/users".into(),
            creds: admin.clone(),
            wrong_type: vec![
                (with(&valid, "email", json!(5)), "email"),
                (with(&valid, "role", json!(["admin"])), "role"),
                (with(&valid, "display_name", json!({ "first": "A" })), "display_name"),
                (with(&valid, "password", json!(null)), "password"),
            ],
            missing: Some((json!({ "email": "x@example.com", "display_name": "X", "role": "agent" }), "password")),
            string_field: "display_name",
            watch: None,
            ok: 201,
            valid,
        }).await;
    }

    async fn update_user_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        let id = new_user(&app, &admin).await;
        let valid = json!({ "display_name": "Renamed" });
        check_endpoint(&app, &admin, Endpoint {
            method: Method::PATCH,
            path: format!("/api/v1/users/{id}"),
            creds: admin.clone(),
            wrong_type: vec![
                (json!({ "active": "yes" }), "active"),
                (json!({ "role": 1 }), "role"),
                (json!({ "display_name": 5 }), "display_name"),
                (json!({ "password": false }), "password"),
            ],
            missing: None,
            string_field: "display_name",
            watch: Some(format!("/api/v1/users/{id}")),
            ok: 200,
            valid,
        }).await;
    }

    async fn create_api_key_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        let valid = json!({ "name": "valid key", "role": "agent" });
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/api-keys".into(),
            creds: admin.clone(),
            wrong_type: vec![
                (json!({ "name": "k", "role": 7 }), "role"),
                (json!({ "name": ["k"], "role": "agent" }), "name"),
                (json!({ "name": "k", "role": "agent", "expires_at": 1700000000 }), "expires_at"),
                (json!({ "name": "k", "role": "agent", "expires_at": "tomorrow" }), "expires_at"),
            ],
            missing: Some((json!({ "name": "k" }), "role")),
            string_field: "name",
            watch: None,
            ok: 201,
            valid,
        }).await;
    }

    async fn create_interaction_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        let valid = json!({ "channel": "chat", "direction": "inbound", "subject": "hello" });
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/interactions".into(),
            creds: admin.clone(),
            wrong_type: vec![
                (json!({ "channel": "fax", "direction": "inbound" }), "channel"),
                (json!({ "channel": "chat", "direction": "sideways" }), "direction"),
                (json!({ "channel": "chat", "direction": "inbound", "attributes": [1] }), "attributes"),
                (json!({ "channel": "chat", "direction": "inbound", "subject": 12 }), "subject"),
            ],
            missing: Some((json!({ "channel": "chat" }), "direction")),
            string_field: "subject",
            watch: None,
            ok: 201,
            valid,
        }).await;
    }

    async fn add_note_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        let id = new_interaction(&app, &admin).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: format!("/api/v1/interactions/{id}/notes"),
            creds: admin.clone(),
            wrong_type: vec![(json!({ "text": 5 }), "text"), (json!({ "text": ["a"] }), "text")],
            missing: Some((json!({}), "text")),
            string_field: "text",
            watch: Some(format!("/api/v1/interactions/{id}")),
            ok: 201,
            valid: json!({ "text": "a fine note" }),
        }).await;
    }

    async fn transition_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        let id = new_interaction(&app, &admin).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: format!("/api/v1/interactions/{id}/transitions"),
            creds: admin.clone(),
            wrong_type: vec![
                (json!({ "type": "teleport" }), "type"),
                (json!({ "type": "enqueue", "queue_id": "not-a-uuid" }), "queue_id"),
                (json!({ "type": "close", "reason": "bored" }), "reason"),
                (json!({ "type": "transfer", "target": { "to": "moon" } }), "target.to"),
                (json!({ "type": "enter_flow", "flow": 7 }), "flow"),
            ],
            missing: Some((json!({ "type": "enqueue" }), "queue_id")),
            string_field: "flow",
            watch: Some(format!("/api/v1/interactions/{id}")),
            ok: 200,
            valid: json!({ "type": "enter_flow", "flow": "main" }),
        }).await;
    }

    async fn create_webhook_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/webhooks".into(),
            creds: admin.clone(),
            wrong_type: vec![
                (json!({ "url": 5 }), "url"),
                (json!({ "url": "http://127.0.0.1:9/h", "event_kinds": "queued" }), "event_kinds"),
                (json!({ "url": "http://127.0.0.1:9/h", "event_kinds": ["queued", 3] }), "event_kinds[1]"),
            ],
            missing: Some((json!({ "description": "no url" }), "url")),
            string_field: "description",
            watch: None,
            ok: 201,
            valid: json!({ "url": "http://127.0.0.1:9/hook", "description": "fine" }),
        }).await;
    }

    async fn update_tenant_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::PATCH,
            path: "/api/v1/tenant".into(),
            creds: admin.clone(),
            wrong_type: vec![
                (json!({ "timezone": 5 }), "timezone"),
                (json!({ "name": { "x": 1 } }), "name"),
                (json!({ "default_region": ["US"] }), "default_region"),
            ],
            missing: None,
            string_field: "name",
            watch: Some("/api/v1/tenant".into()),
            ok: 200,
            valid: json!({ "name": "Acme Renamed", "timezone": "Europe/Berlin", "default_region": "DE" }),
        }).await;
    }

    async fn login_refuses_bad_bodies(app) {
        let admin = app.login("admin").await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/auth/login".into(),
            creds: Creds::None,
            wrong_type: vec![
                (json!({ "tenant": 5, "email": "admin@example.com", "password": DEMO_PASSWORD }), "tenant"),
                (json!({ "tenant": "demo", "email": null, "password": DEMO_PASSWORD }), "email"),
                (json!({ "tenant": "demo", "email": "admin@example.com", "password": 12345678901234u64 }), "password"),
            ],
            missing: Some((json!({ "tenant": "demo", "email": "admin@example.com" }), "password")),
            string_field: "email",
            watch: None,
            // Dozens of refused bodies were not counted as failed sign-ins.
            ok: 200,
            valid: json!({ "tenant": "demo", "email": "admin@example.com", "password": DEMO_PASSWORD }),
        }).await;
    }
}

// ---- strings: too long, hostile, NUL ---------------------------------------------

both_backends! {
    async fn very_long_strings_are_refused_with_their_field(app) {
        let admin = app.login("admin").await;
        let uid = new_user(&app, &admin).await;
        let iid = new_interaction(&app, &admin).await;
        let long = "x".repeat(100_000);
        let before = counts(&app).await;
        let tenant_before = json_ok(app.get("/api/v1/tenant", &admin).await, 200).await;
        let cases: Vec<(Method, String, Value, &str)> = vec![
            (Method::POST, "/api/v1/users".into(), json!({ "email": "long@example.com", "display_name": long, "role": "agent", "password": "long-enough-password" }), "display_name"),
            (Method::POST, "/api/v1/users".into(), json!({ "email": format!("{long}@example.com"), "display_name": "L", "role": "agent", "password": "long-enough-password" }), "email"),
            (Method::POST, "/api/v1/users".into(), json!({ "email": "long2@example.com", "display_name": "L", "role": "agent", "password": long }), "password"),
            (Method::PATCH, format!("/api/v1/users/{uid}"), json!({ "display_name": long }), "display_name"),
            (Method::POST, "/api/v1/api-keys".into(), json!({ "name": long, "role": "agent" }), "name"),
            (Method::POST, "/api/v1/interactions".into(), json!({ "channel": "chat", "direction": "inbound", "subject": long }), "subject"),
            (Method::POST, "/api/v1/interactions".into(), json!({ "channel": "chat", "direction": "inbound", "customer_address": long }), "customer_address"),
            (Method::POST, format!("/api/v1/interactions/{iid}/notes"), json!({ "text": long }), "text"),
            (Method::POST, format!("/api/v1/interactions/{iid}/transitions"), json!({ "type": "enter_flow", "flow": long }), "flow"),
            (Method::POST, "/api/v1/webhooks".into(), json!({ "url": "http://127.0.0.1:9/h", "description": long }), "description"),
            (Method::POST, "/api/v1/webhooks".into(), json!({ "url": format!("http://127.0.0.1:9/{long}") }), "url"),
            (Method::PATCH, "/api/v1/tenant".into(), json!({ "name": long }), "name"),
            (Method::POST, "/api/v1/auth/login".into(), json!({ "tenant": "demo", "email": long, "password": "whatever-password" }), "email"),
            (Method::POST, "/api/v1/auth/login".into(), json!({ "tenant": long, "email": "admin@example.com", "password": "whatever-password" }), "tenant"),
            (Method::POST, "/api/v1/auth/login".into(), json!({ "tenant": "demo", "email": "admin@example.com", "password": long }), "password"),
            (Method::POST, "/api/v1/auth/password".into(), json!({ "current_password": DEMO_PASSWORD, "new_password": long }), "new_password"),
        ];
        for (m, p, body, field) in cases {
            let r = app.req(m.clone(), &p, &admin).json(&body).send().await.unwrap();
            let e = invalid_field(r, field).await;
            // The error does not echo the huge value back.
            assert!(e.to_string().len() < 2_000, "{m} {p}: a {} byte error", e.to_string().len());
            assert_eq!(counts(&app).await, before, "{m} {p} wrote something");
        }
        assert_eq!(json_ok(app.get("/api/v1/tenant", &admin).await, 200).await, tenant_before);
        json_ok(app.get("/api/v1/auth/me", &admin).await, 200).await;

        // Just under the body limit is not a 413: the field rule answers.
        let near = "y".repeat(MIB - 100);
        let r = app.post(&format!("/api/v1/interactions/{iid}/notes"), &admin, &json!({ "text": near })).await;
        invalid_field(r, "text").await;
        // At the field limits, accepted.
        let r = app.post(&format!("/api/v1/interactions/{iid}/notes"), &admin, &json!({ "text": "z".repeat(4000) })).await;
        assert_eq!(json_ok(r, 201).await["event"]["data"]["text"].as_str().unwrap().len(), 4000);
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "display_name": "é".repeat(120) })).await;
        assert_eq!(json_ok(r, 200).await["display_name"].as_str().unwrap().chars().count(), 120);
    }

    async fn sql_and_script_looking_strings_are_stored_verbatim(app) {
        let admin = app.login("admin").await;
        let sql = "Robert'); DROP TABLE users;--";
        let script = "<script>alert(1)</script>";
        let mixed = "\"; DELETE FROM interactions; -- <img src=x onerror=alert(1)> ' OR '1'='1 \\ ü 😀";
        let before = counts(&app).await;
        let demo_users = json_ok(app.get("/api/v1/users?limit=200", &admin).await, 200).await["items"].as_array().unwrap().len();

        let r = app.post("/api/v1/users", &admin, &json!({ "email": format!("{}@example.com", uniq("bobby")), "display_name": sql, "role": "agent", "password": "long-enough-password" })).await;
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let u = json_ok(r, 201).await;
        assert_eq!(u["display_name"], sql);
        let uid = u["id"].as_str().unwrap();
        assert_eq!(json_ok(app.get(&format!("/api/v1/users/{uid}"), &admin).await, 200).await["display_name"], sql);
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "display_name": script })).await;
        assert_eq!(json_ok(r, 200).await["display_name"], script);

        let r = app.post("/api/v1/interactions", &admin, &json!({ "channel": "email", "direction": "inbound", "subject": script, "customer_address": sql, "attributes": { "note": mixed, "x.y": sql } })).await;
        let created = json_ok(r, 201).await;
        let iid = created["interaction"]["id"].as_str().unwrap().to_owned();
        for (i, text) in [sql, script, mixed].iter().enumerate() {
            let r = app.post(&format!("/api/v1/interactions/{iid}/notes"), &admin, &json!({ "text": text })).await;
            let n = json_ok(r, 201).await;
            assert_eq!(n["event"]["data"]["text"], *text);
            assert_eq!(n["interaction"]["last_seq"], i as i64 + 2);
        }
        let got = json_ok(app.get(&format!("/api/v1/interactions/{iid}"), &admin).await, 200).await;
        assert_eq!(got["subject"], script);
        assert_eq!(got["customer_address"], sql);
        assert_eq!(got["attributes"]["note"], mixed);
        assert_eq!(got["attributes"]["x.y"], sql);
        let r = app.get(&format!("/api/v1/interactions/{iid}/events"), &admin).await;
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let timeline: Value = r.json().await.unwrap();
        let notes: Vec<&Value> = timeline.as_array().unwrap().iter().filter(|e| e["kind"] == "note").map(|e| &e["data"]["text"]).collect();
        assert_eq!(notes, vec![&json!(sql), &json!(script), &json!(mixed)]);

        let r = app.post("/api/v1/api-keys", &admin, &json!({ "name": sql, "role": "agent" })).await;
        assert_eq!(json_ok(r, 201).await["name"], sql);
        let r = app.post("/api/v1/webhooks", &admin, &json!({ "url": "http://127.0.0.1:9/hook?q=%27%3B--", "description": script })).await;
        let hook = json_ok(r, 201).await;
        assert_eq!(hook["description"], script);
        assert_eq!(hook["url"], "http://127.0.0.1:9/hook?q=%27%3B--");
        let r = app.patch("/api/v1/tenant", &admin, &json!({ "name": script })).await;
        assert_eq!(json_ok(r, 200).await["name"], script);
        assert_eq!(json_ok(app.get("/api/v1/tenant", &admin).await, 200).await["name"], script);

        // Hostile strings where they cannot be valid: refused cleanly.
        let r = app.post("/api/v1/users", &admin, &json!({ "email": "'; DROP TABLE users; --@x.com", "display_name": "X", "role": "agent", "password": "long-enough-password" })).await;
        invalid_field(r, "email").await;
        let r = app.post("/api/v1/users", &admin, &json!({ "email": "<script>@x.com", "display_name": "X", "role": "agent", "password": "long-enough-password" })).await;
        invalid_field(r, "email").await;
        for (tenant, email) in [("demo", "' OR '1'='1"), ("demo' OR '1'='1", "admin@example.com"), ("demo", "admin@example.com' --")] {
            let r = app.post("/api/v1/auth/login", &Creds::None, &json!({ "tenant": tenant, "email": email, "password": "' OR '1'='1" })).await;
            rejected(r, 401, "invalid_credentials").await;
        }
        let r = app.get("/api/v1/interactions?state=created'%20OR%20'1'='1", &admin).await;
        rejected(r, 422, "validation_failed").await;
        let r = app.get("/api/v1/audit?action=x'%20OR%20'1'='1", &admin).await;
        assert!(json_ok(r, 200).await["items"].as_array().unwrap().is_empty(), "a filter value is data, not SQL");

        // The tables are all there, with exactly what was accepted.
        let after = counts(&app).await;
        assert_eq!(after["users"], before["users"] + 1);
        assert_eq!(after["interactions"], before["interactions"] + 1);
        assert_eq!(after["events"], before["events"] + 4);
        assert_eq!(after["api_keys"], before["api_keys"] + 1);
        assert_eq!(after["webhooks"], before["webhooks"] + 1);
        let users = json_ok(app.get("/api/v1/users?limit=200", &admin).await, 200).await;
        assert_eq!(users["items"].as_array().unwrap().len(), demo_users + 1, "demo's users are all listed");
        app.login("agent").await;
    }

    async fn nul_characters_never_cause_a_server_error(app) {
        let admin = app.login("admin").await;
        let iid = new_interaction(&app, &admin).await;
        let nul = "a\u{0}b";
        let cases: Vec<(Method, String, Creds, Value)> = vec![
            (Method::POST, "/api/v1/interactions".into(), admin.clone(), json!({ "channel": "chat", "direction": "inbound", "subject": nul })),
            (Method::POST, "/api/v1/interactions".into(), admin.clone(), json!({ "channel": "chat", "direction": "inbound", "customer_address": nul })),
            (Method::POST, "/api/v1/interactions".into(), admin.clone(), json!({ "channel": "chat", "direction": "inbound", "attributes": { "k": nul } })),
            (Method::POST, format!("/api/v1/interactions/{iid}/notes"), admin.clone(), json!({ "text": nul })),
            (Method::POST, format!("/api/v1/interactions/{iid}/transitions"), admin.clone(), json!({ "type": "enter_flow", "flow": nul })),
            (Method::POST, "/api/v1/users".into(), admin.clone(), json!({ "email": "nul@example.com", "display_name": nul, "role": "agent", "password": "long-enough-\u{0}-password" })),
            (Method::POST, "/api/v1/api-keys".into(), admin.clone(), json!({ "name": nul, "role": "agent" })),
            (Method::POST, "/api/v1/webhooks".into(), admin.clone(), json!({ "url": "http://127.0.0.1:9/h", "description": nul })),
            (Method::PATCH, "/api/v1/tenant".into(), admin.clone(), json!({ "timezone": nul })),
            (Method::POST, "/api/v1/auth/login".into(), Creds::None, json!({ "tenant": "demo", "email": "admin@example.com\u{0}", "password": "whatever-password" })),
            (Method::POST, "/api/v1/auth/login".into(), Creds::None, json!({ "tenant": "de\u{0}mo", "email": "admin@example.com", "password": "whatever-password" })),
        ];
        let mut failures = Vec::new();
        for (m, p, creds, body) in cases {
            let r = app.req(m.clone(), &p, &creds).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            if status >= 500 {
                failures.push(format!("{m} {p} {body}: {status} {text}"));
            } else if (200..300).contains(&status) {
                // If accepted, it is returned as sent.
                assert!(text.contains("a\\u0000b"), "{m} {p}: {text}");
            } else {
                let e: Value = serde_json::from_str(&text).unwrap();
                assert_eq!((status, e["error"]["code"].as_str()), (422, Some("validation_failed")), "{m} {p}: {text}");
            }
        }
        assert!(failures.is_empty(), "server errors for NUL characters:\n{}", failures.join("\n"));
        json_ok(app.get("/readyz", &Creds::None).await, 200).await;
    }
}

// ---- field rules --------------------------------------------------------------------

both_backends! {
    async fn errors_never_echo_a_large_value_whole(app) {
        let admin = app.login("admin").await;
        let before = counts(&app).await;
        let huge = "z".repeat(200_000);
        // A wrong enum variant (quoted back in backticks) and a wrong type
        // (quoted back in double quotes).
        for (path, body) in [("/api/v1/api-keys", json!({ "name": "k", "role": huge })), ("/api/v1/contacts", json!({ "first_name": "k", "phones": huge }))] {
            let r = app.post(path, &admin, &body).await;
            let text = r.text().await.unwrap();
            assert!(text.len() < 2_000, "the error echoes {} bytes", text.len());
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], "validation_failed", "{v}");
            assert!(text.contains("zzzz"), "the start of the value is shown: {v}");
        }
        assert_eq!(counts(&app).await, before);
    }

    async fn user_fields_are_validated(app) {
        let admin = app.login("admin").await;
        let uid = new_user(&app, &admin).await;
        let before = counts(&app).await;
        let user_before = json_ok(app.get(&format!("/api/v1/users/{uid}"), &admin).await, 200).await;
        let base = json!({ "email": "fine@example.com", "display_name": "Fine", "role": "agent", "password": "long-enough-password" });
        let mut cases: Vec<(Value, &str)> = Vec::new();
        for bad in ["", "plain", "@example.com", "a@", "a@@example.com", "a b@example.com", "a@exa mple.com", "a@-example.com", ".a@example.com", "a..b@example.com", "a@example..com"] {
            cases.push((with(&base, "email", json!(bad)), "email"));
        }
        for bad in ["", "short", "elevenchars"] {
            cases.push((with(&base, "password", json!(bad)), "password"));
        }
        for bad in [json!("superadmin"), json!("Admin"), json!("ADMIN"), json!(""), json!(null), json!(1)] {
            cases.push((with(&base, "role", bad), "role"));
        }
        for bad in ["", "   ", "line\nbreak", "tab\there", "bell\u{7}"] {
            cases.push((with(&base, "display_name", json!(bad)), "display_name"));
        }
        for (body, path) in &cases {
            let r = app.post("/api/v1/users", &admin, body).await;
            invalid_field(r, path).await;
        }
        // Several problems at once: all reported.
        let r = app.post("/api/v1/users", &admin, &json!({ "email": "nope", "display_name": "", "role": "agent", "password": "short" })).await;
        let e = invalid_field(r, "email").await;
        let paths: Vec<&str> = e["error"]["details"]["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(paths, vec!["email", "display_name", "password"]);
        assert!(e["error"]["message"].as_str().unwrap().contains('3'), "{e}");
        // Updates follow the same rules.
        for (body, path) in [
            (json!({ "password": "elevenchars" }), "password"),
            (json!({ "role": "owner" }), "role"),
            (json!({ "display_name": "" }), "display_name"),
            (json!({ "active": "false" }), "active"),
        ] {
            invalid_field(app.patch(&format!("/api/v1/users/{uid}"), &admin, &body).await, path).await;
        }
        assert_eq!(counts(&app).await, before);
        assert_eq!(json_ok(app.get(&format!("/api/v1/users/{uid}"), &admin).await, 200).await, user_before);
        // The boundary: exactly 12 characters is enough.
        let r = app.post("/api/v1/users", &admin, &with(&base, "password", json!("twelve-chars"))).await;
        json_ok(r, 201).await;
        app.login_to("demo", "fine@example.com", "twelve-chars").await;
        // Changing your own password follows them too.
        let r = app.post("/api/v1/auth/password", &admin, &json!({ "current_password": DEMO_PASSWORD, "new_password": "elevenchars" })).await;
        invalid_field(r, "new_password").await;
        let r = app.post("/api/v1/auth/password", &admin, &json!({ "current_password": 5, "new_password": "long-enough-password" })).await;
        invalid_field(r, "current_password").await;
        let r = app.post("/api/v1/auth/login", &Creds::None, &json!({ "tenant": "", "email": "", "password": "" })).await;
        let e = invalid_field(r, "tenant").await;
        assert_eq!(e["error"]["details"]["fields"].as_array().unwrap().len(), 3, "{e}");
    }

    async fn tenant_fields_are_validated(app) {
        let admin = app.login("admin").await;
        let before = json_ok(app.get("/api/v1/tenant", &admin).await, 200).await;
        let audit_before = counts(&app).await["audit_log"];
        for (body, path) in [
            (json!({ "timezone": "Mars/Olympus_Mons" }), "timezone"),
            (json!({ "timezone": "" }), "timezone"),
            (json!({ "timezone": "America/New York" }), "timezone"),
            (json!({ "timezone": "+05:00" }), "timezone"),
            (json!({ "default_region": "us" }), "default_region"),
            (json!({ "default_region": "USA" }), "default_region"),
            (json!({ "default_region": "U" }), "default_region"),
            (json!({ "default_region": "12" }), "default_region"),
            (json!({ "default_region": "" }), "default_region"),
            (json!({ "default_region": "ÜS" }), "default_region"),
            (json!({ "name": "" }), "name"),
            (json!({ "name": "bad\nname" }), "name"),
            // One bad field spoils the whole change.
            (json!({ "name": "Good Name", "timezone": "Nowhere/Else" }), "timezone"),
        ] {
            invalid_field(app.patch("/api/v1/tenant", &admin, &body).await, path).await;
        }
        assert_eq!(json_ok(app.get("/api/v1/tenant", &admin).await, 200).await, before);
        assert_eq!(counts(&app).await["audit_log"], audit_before, "refused changes are not audited");
        let r = app.patch("/api/v1/tenant", &admin, &json!({ "timezone": "Asia/Kolkata", "default_region": "IN" })).await;
        let t = json_ok(r, 200).await;
        assert_eq!((t["timezone"].as_str(), t["default_region"].as_str()), (Some("Asia/Kolkata"), Some("IN")));
    }

    async fn webhook_urls_and_kinds_are_validated(app) {
        let admin = app.login("admin").await;
        let r = app.post("/api/v1/webhooks", &admin, &json!({ "url": "http://127.0.0.1:9/ok", "event_kinds": ["queued"] })).await;
        let hook = json_ok(r, 201).await;
        let hid = hook["id"].as_str().unwrap().to_owned();
        let before = counts(&app).await;
        let long = format!("http://127.0.0.1:9/{}", "a".repeat(2100));
        let bad_urls = [
            "ftp://127.0.0.1/x",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "data:text/plain,hi",
            "mailto:a@example.com",
            "http://user:secret@127.0.0.1:9/x",
            "http://user@127.0.0.1:9/x",
            "https://:pw@example.com/x",
            "not a url",
            "",
            "//127.0.0.1:9/x",
            "/relative/path",
            "http://",
            long.as_str(),
        ];
        for url in bad_urls {
            let r = app.post("/api/v1/webhooks", &admin, &json!({ "url": url })).await;
            let e = invalid_field(r, "url").await;
            assert!(!e.to_string().contains("secret"), "credentials are not echoed: {e}");
            let r = app.patch(&format!("/api/v1/webhooks/{hid}"), &admin, &json!({ "url": url })).await;
            invalid_field(r, "url").await;
        }
        for (body, path) in [
            (json!({ "url": "http://127.0.0.1:9/x", "event_kinds": ["Queued"] }), "event_kinds[0]"),
            (json!({ "url": "http://127.0.0.1:9/x", "event_kinds": ["queued", ""] }), "event_kinds[1]"),
            (json!({ "url": "http://127.0.0.1:9/x", "event_kinds": ["a b"] }), "event_kinds[0]"),
            (json!({ "url": "http://127.0.0.1:9/x", "event_kinds": vec!["queued"; 51] }), "event_kinds"),
            (json!({ "url": "http://127.0.0.1:9/x", "description": "d".repeat(501) }), "description"),
        ] {
            invalid_field(app.post("/api/v1/webhooks", &admin, &body).await, path).await;
        }
        invalid_field(app.patch(&format!("/api/v1/webhooks/{hid}"), &admin, &json!({ "event_kinds": ["BAD"] })).await, "event_kinds[0]").await;
        invalid_field(app.patch(&format!("/api/v1/webhooks/{hid}"), &admin, &json!({ "active": "no" })).await, "active").await;
        // Replays: negative or inverted ranges.
        invalid_field(app.post(&format!("/api/v1/webhooks/{hid}/replay"), &admin, &json!({ "from_event_id": -1 })).await, "from_event_id").await;
        invalid_field(app.post(&format!("/api/v1/webhooks/{hid}/replay"), &admin, &json!({ "from_event_id": 10, "to_event_id": 5 })).await, "to_event_id").await;
        invalid_field(app.post(&format!("/api/v1/webhooks/{hid}/replay"), &admin, &json!({ "from_event_id": "0" })).await, "from_event_id").await;
        assert_eq!(counts(&app).await, before);
        let mut expected = hook.clone();
        expected.as_object_mut().unwrap().remove("secret");
        assert_eq!(json_ok(app.get(&format!("/api/v1/webhooks/{hid}"), &admin).await, 200).await, expected);
    }

    async fn interaction_fields_are_validated(app) {
        let admin = app.login("admin").await;
        let iid = new_interaction(&app, &admin).await;
        let before = counts(&app).await;
        let base = json!({ "channel": "chat", "direction": "inbound" });
        let many: serde_json::Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!(i))).collect();
        for (body, path) in [
            (with(&base, "attributes", json!({ "bad key!": 1 })), "attributes.bad key!"),
            (with(&base, "attributes", json!({ "": 1 })), "attributes."),
            (with(&base, "attributes", Value::Object(many)), "attributes"),
            (with(&base, "attributes", json!({ "big": "b".repeat(17 * 1024) })), "attributes"),
            (with(&base, "subject", json!("")), "subject"),
            (with(&base, "customer_address", json!("")), "customer_address"),
        ] {
            invalid_field(app.post("/api/v1/interactions", &admin, &body).await, path).await;
        }
        invalid_field(app.post(&format!("/api/v1/interactions/{iid}/notes"), &admin, &json!({ "text": "" })).await, "text").await;
        for (body, path) in [
            (json!({ "type": "enter_flow", "flow": "" }), "flow"),
            (json!({ "type": "transfer", "target": { "to": "external", "address": "" } }), "target.address"),
        ] {
            invalid_field(app.post(&format!("/api/v1/interactions/{iid}/transitions"), &admin, &body).await, path).await;
        }
        assert_eq!(counts(&app).await, before);
    }

    async fn transition_errors_name_the_field(app) {
        let admin = app.login("admin").await;
        let iid = new_interaction(&app, &admin).await;
        let path = format!("/api/v1/interactions/{iid}/transitions");
        for (body, field) in [
            (json!({ "type": "enqueue", "queue_id": "not-a-uuid" }), "queue_id"),
            (json!({ "type": "enter_flow", "flow": 7 }), "flow"),
            (json!({ "type": "close", "reason": "bored" }), "reason"),
            (json!({ "type": "offer" }), "agent_id"),
            (json!({ "type": "transfer", "target": { "to": "queue", "queue_id": 5 } }), "target.queue_id"),
        ] {
            invalid_field(app.post(&path, &admin, &body).await, field).await;
        }
    }

    async fn transition_bodies_refuse_unknown_fields(app) {
        let admin = app.login("admin").await;
        let iid = new_interaction(&app, &admin).await;
        let before = json_ok(app.get(&format!("/api/v1/interactions/{iid}"), &admin).await, 200).await;
        for body in [
            json!({ "type": "abandon", "reason": "because" }),
            json!({ "type": "enter_flow", "flow": "main", "queue_id": uuid::Uuid::now_v7() }),
            json!({ "type": "transfer", "target": { "to": "flow", "flow": "main", "agent_id": uuid::Uuid::now_v7() } }),
        ] {
            let r = app.post(&format!("/api/v1/interactions/{iid}/transitions"), &admin, &body).await;
            rejected(r, 422, "validation_failed").await;
        }
        assert_eq!(json_ok(app.get(&format!("/api/v1/interactions/{iid}"), &admin).await, 200).await, before);
    }
}

// ---- query strings and path ids ---------------------------------------------------------

both_backends! {
    async fn bad_query_strings_are_422(app) {
        let admin = app.login("admin").await;
        let iid = new_interaction(&app, &admin).await;
        let r = app.post("/api/v1/webhooks", &admin, &json!({ "url": "http://127.0.0.1:9/q" })).await;
        let hid = json_ok(r, 201).await["id"].as_str().unwrap().to_owned();
        use base64::Engine;
        let not_an_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("not-an-id");
        let lists = [
            "/api/v1/users", "/api/v1/api-keys", "/api/v1/interactions", "/api/v1/webhooks", "/api/v1/jobs",
            "/api/v1/skills", "/api/v1/queues", "/api/v1/agents", "/api/v1/audit",
        ];
        let deliveries = format!("/api/v1/webhooks/{hid}/deliveries");
        for path in lists.iter().copied().chain([deliveries.as_str()]) {
            for (q, field) in [
                ("limit=0", "limit"),
                ("limit=201", "limit"),
                ("limit=10000", "limit"),
                ("cursor=!!", "cursor"),
                ("cursor=bogus", "cursor"),
                (&format!("cursor={not_an_id}")[..], "cursor"),
                ("limit=abc", "query"),
                ("limit=-1", "query"),
                ("limit=99999999999", "query"),
                ("limit=1.5", "query"),
                ("unknown=1", "query"),
                ("limit=5&limit=6", "query"),
            ] {
                let r = app.get(&format!("{path}?{q}"), &admin).await;
                let e = invalid_field(r, field).await;
                assert!(e["error"]["message"].as_str().unwrap().len() < 500, "{e}");
            }
            // The edges of the range are fine, and a page's cursor works.
            let page = json_ok(app.get(&format!("{path}?limit=1"), &admin).await, 200).await;
            if let Some(c) = page["next_cursor"].as_str() {
                json_ok(app.get(&format!("{path}?limit=200&cursor={c}"), &admin).await, 200).await;
            }
            json_ok(app.get(&format!("{path}?limit=200"), &admin).await, 200).await;
        }
        for (path, field) in [
            ("/api/v1/interactions?state=bogus", "query"),
            ("/api/v1/interactions?state=Created", "query"),
            ("/api/v1/interactions?channel=fax", "query"),
            ("/api/v1/events?limit=0", "limit"),
            ("/api/v1/events?limit=1000", "limit"),
            ("/api/v1/events?after=abc", "query"),
            ("/api/v1/events?cursor=x", "query"),
            (&format!("/api/v1/interactions/{iid}/events?after_seq=abc")[..], "query"),
            (&format!("/api/v1/interactions/{iid}/events?limit=0")[..], "limit"),
            (&format!("/api/v1/interactions/{iid}/events?bogus=1")[..], "query"),
            (&format!("{deliveries}?status=bogus")[..], "status"),
            ("/api/v1/audit?limit=0&action=login.failed", "limit"),
        ] {
            invalid_field(app.get(path, &admin).await, field).await;
        }
        json_ok(app.get("/api/v1/interactions?state=created&channel=voice", &admin).await, 200).await;
    }

    async fn a_path_id_that_is_not_a_uuid_is_404(app) {
        let admin = app.login("admin").await;
        let before = counts(&app).await;
        let doc = json_ok(app.get("/api/v1/openapi.json", &Creds::None).await, 200).await;
        let mut checked = 0;
        for (template, ops) in doc["paths"].as_object().unwrap() {
            if !template.contains("{id}") {
                continue;
            }
            for method in ops.as_object().unwrap().keys() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                for bad in ["not-a-uuid", "1", "%27%20OR%201%3D1%20--", "00000000-0000-0000-0000-00000000000g", "..%2F..%2Fetc", &"f".repeat(300)] {
                    let path = template.replace("{id}", bad);
                    let mut rb = app.req(m.clone(), &path, &admin);
                    if matches!(m, Method::POST | Method::PATCH) {
                        rb = rb.json(&json!({}));
                    }
                    let r = rb.send().await.unwrap();
                    rejected(r, 404, "not_found").await;
                }
                checked += 1;
            }
        }
        assert!(checked >= 15, "{checked}");
        assert_eq!(counts(&app).await, before);
    }
}
