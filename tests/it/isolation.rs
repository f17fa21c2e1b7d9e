//! Multi-tenant isolation: one tenant can neither read, change nor even
//! detect another tenant's objects, through any route of the API.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use switchboard::interactions::entity::webhook;

use crate::both_backends;
use crate::helpers::*;

/// Tenant `other`'s objects, one of every kind that has an `{id}` route.
struct OtherObjects {
    /// The first path segment after `/api/v1/` -> an object of that kind.
    by_kind: BTreeMap<&'static str, String>,
    key_token: Creds,
    /// Every id of the other tenant we know of (objects, seeded users,
    /// skills, queues, agents, the tenant itself).
    all_ids: BTreeSet<String>,
}

async fn other_admin(app: &TestApp) -> Creds {
    app.login_to("other", "admin@other.example", DEMO_PASSWORD)
        .await
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// Every item of a paged list (follows `next_cursor`).
async fn all_items(app: &TestApp, creds: &Creds, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=200&cursor={c}"),
            None => format!("{path}{sep}limit=200"),
        };
        let body = json_ok(app.get(&url, creds).await, 200).await;
        items.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
    panic!("{path}: too many pages");
}

async fn create_other_objects(app: &TestApp) -> OtherObjects {
    let admin = other_admin(app).await;
    let mut by_kind = BTreeMap::new();
    let mut all_ids = BTreeSet::new();

    let r = app
        .post(
            "/api/v1/users",
            &admin,
            &json!({ "email": "victim@other.example", "display_name": "Vic Tim", "role": "agent", "password": "victims-password-1" }),
        )
        .await;
    by_kind.insert("users", id_of(&json_ok(r, 201).await));

    let r = app
        .post(
            "/api/v1/api-keys",
            &admin,
            &json!({ "name": "other's key", "role": "admin" }),
        )
        .await;
    let key = json_ok(r, 201).await;
    by_kind.insert("api-keys", id_of(&key));
    let key_token = Creds::Key(key["token"].as_str().unwrap().to_owned());

    let r = app
        .post(
            "/api/v1/interactions",
            &admin,
            &json!({ "channel": "chat", "direction": "inbound", "customer_address": "other-customer", "subject": "private" }),
        )
        .await;
    by_kind.insert("interactions", id_of(&json_ok(r, 201).await["interaction"]));

    let r = app
        .post(
            "/api/v1/webhooks",
            &admin,
            &json!({ "url": "http://127.0.0.1:9/hook", "description": "other's hook", "event_kinds": ["closed"] }),
        )
        .await;
    let hook = id_of(&json_ok(r, 201).await);
    let r = app
        .post(
            &format!("/api/v1/webhooks/{hook}/replay"),
            &admin,
            &json!({ "from_event_id": 0 }),
        )
        .await;
    by_kind.insert("jobs", id_of(&json_ok(r, 202).await));
    by_kind.insert("webhooks", hook);

    // Contacts and everything around them.
    let r = app
        .post(
            "/api/v1/contacts",
            &admin,
            &json!({ "first_name": "Other", "last_name": "Customer", "phones": ["+12015550199"], "emails": ["secret@other.example"] }),
        )
        .await;
    let contact = id_of(&json_ok(r, 201).await);
    by_kind.insert("contacts", contact.clone());
    let r = app
        .post("/api/v1/lists", &admin, &json!({ "name": "Other's list" }))
        .await;
    by_kind.insert("lists", id_of(&json_ok(r, 201).await));
    let r = app
        .post(
            "/api/v1/segments",
            &admin,
            &json!({ "name": "Other's segment", "expression": "tags has \"vip\"" }),
        )
        .await;
    by_kind.insert("segments", id_of(&json_ok(r, 201).await));
    let r = app
        .post(
            "/api/v1/suppressions",
            &admin,
            &json!({ "channel": "email", "address": "bounced@other.example", "reason": "bounce" }),
        )
        .await;
    by_kind.insert("suppressions", json_ok(r, 201).await["id"].to_string());
    let r = app
        .req(Method::POST, "/api/v1/uploads?filename=other.csv", &admin)
        .body("name,phone\nOther Person,+12015550198\n")
        .send()
        .await
        .unwrap();
    let upload = id_of(&json_ok(r, 201).await);
    by_kind.insert("uploads", upload.clone());
    let r = app
        .post(
            "/api/v1/contacts/imports",
            &admin,
            &json!({ "upload_id": upload }),
        )
        .await;
    by_kind.insert("contacts/imports", id_of(&json_ok(r, 202).await));
    let r = app
        .post(
            "/api/v1/sip/accounts",
            &admin,
            &json!({ "username": "other-phone", "password": "other-sip-password" }),
        )
        .await;
    by_kind.insert("sip/accounts", id_of(&json_ok(r, 201).await));

    for (kind, path) in [
        ("skills", "/api/v1/skills"),
        ("queues", "/api/v1/queues"),
        ("agents", "/api/v1/agents"),
    ] {
        let items = all_items(app, &admin, path).await;
        assert!(!items.is_empty(), "the other tenant has seeded {kind}");
        by_kind.insert(kind, id_of(&items[0]));
        all_ids.extend(items.iter().map(id_of));
    }
    let queue = by_kind["queues"].clone();
    let r = app
        .post(
            "/api/v1/sip/numbers",
            &admin,
            &json!({ "number": "+442071838799", "queue_id": queue }),
        )
        .await;
    by_kind.insert("sip/numbers", id_of(&json_ok(r, 201).await));
    let r = app
        .post(
            "/api/v1/sip/trunks",
            &admin,
            &json!({ "name": "other's trunk", "host": "127.0.0.1", "port": 9, "caller_id": "+442071838798", "auth_username": "other", "password": "other-trunk-secret" }),
        )
        .await;
    by_kind.insert("sip/trunks", id_of(&json_ok(r, 201).await));
    // A call's id is its interaction's.
    let call = by_kind["interactions"].clone();
    by_kind.insert("calls", call);
    for path in ["/api/v1/users", "/api/v1/api-keys", "/api/v1/webhooks"] {
        all_ids.extend(all_items(app, &admin, path).await.iter().map(id_of));
    }
    let tenant = json_ok(app.get("/api/v1/tenant", &admin).await, 200).await;
    all_ids.insert(id_of(&tenant));
    // (Suppression ids are small integers: too short to search text for.)
    all_ids.extend(by_kind.values().filter(|v| v.len() > 8).cloned());
    OtherObjects {
        by_kind,
        key_token,
        all_ids,
    }
}

/// A plausible, valid body for each write that takes one.
fn body_for(method: &str, template: &str) -> Option<Value> {
    let body = match (method, template) {
        ("patch", "/api/v1/users/{id}") => {
            json!({ "role": "admin", "display_name": "Hijacked", "active": false, "password": "hijacked-password" })
        }
        ("patch", "/api/v1/webhooks/{id}") => {
            json!({ "url": "http://127.0.0.1:9/evil", "description": "pwned", "event_kinds": [], "active": false })
        }
        ("post", "/api/v1/webhooks/{id}/replay") => json!({ "from_event_id": 0 }),
        ("post", "/api/v1/interactions/{id}/notes") => json!({ "text": "pwned" }),
        ("post", "/api/v1/interactions/{id}/transitions") => json!({ "type": "abandon" }),
        ("patch", "/api/v1/contacts/{id}") => {
            json!({ "first_name": "Hijacked", "tags": ["pwned"] })
        }
        ("post", "/api/v1/contacts/{id}/consent") => {
            json!({ "channel": "sms", "status": "opted_in" })
        }
        ("patch", "/api/v1/lists/{id}") => json!({ "name": "pwned" }),
        ("post", "/api/v1/lists/{id}/members") | ("post", "/api/v1/lists/{id}/members/remove") => {
            json!({ "contact_ids": [uuid::Uuid::now_v7()] })
        }
        ("put", "/api/v1/agents/{id}/presence") => json!({ "presence": "offline" }),
        ("put", "/api/v1/skills/{id}") => json!({ "name": "pwned" }),
        ("put", "/api/v1/queues/{id}") => json!({ "name": "pwned", "strategy": "longest_idle" }),
        ("put", "/api/v1/agents/{id}") => json!({ "capacity": { "voice": 0 } }),
        ("post", "/api/v1/interactions/{id}/route") => json!({ "queue_id": uuid::Uuid::now_v7() }),
        ("put", "/api/v1/sip/trunks/{id}") => {
            json!({ "name": "pwned", "host": "evil.example", "caller_id": "+12015550100" })
        }
        ("patch", "/api/v1/segments/{id}") => {
            json!({ "name": "pwned", "expression": "tags has \"x\"" })
        }
        _ => return None,
    };
    Some(body)
}

/// What the other tenant can see of its objects (through its own admin).
async fn other_view(app: &TestApp, admin: &Creds, o: &OtherObjects) -> BTreeMap<String, Value> {
    let mut v = BTreeMap::new();
    for kind in [
        "users",
        "api-keys",
        "interactions",
        "webhooks",
        "skills",
        "queues",
        "agents",
        "contacts",
        "lists",
        "segments",
        "uploads",
    ] {
        let id = &o.by_kind[kind];
        let body = json_ok(app.get(&format!("/api/v1/{kind}/{id}"), admin).await, 200).await;
        v.insert(kind.to_owned(), body);
    }
    let iid = &o.by_kind["interactions"];
    let events = json_ok(
        app.get(&format!("/api/v1/interactions/{iid}/events"), admin)
            .await,
        200,
    )
    .await;
    v.insert("timeline".to_owned(), events);
    v
}

both_backends! {
    async fn no_id_route_reaches_another_tenants_objects(app) {
        let o = create_other_objects(&app).await;
        let other = other_admin(&app).await;
        let before = other_view(&app, &other, &o).await;
        let db = &app.state.db.conn;
        let hook_row_before = webhook::Entity::find().all(db).await.unwrap();

        let demo_session = app.login("admin").await;
        let demo_key = app.api_key("demo", "admin").await;
        let doc = json_ok(app.get("/api/v1/openapi.json", &Creds::None).await, 200).await;
        let mut tried = BTreeSet::new();
        for (template, ops) in doc["paths"].as_object().unwrap() {
            if !template.contains("{id}") {
                continue;
            }
            // The kind of object: the path before `{id}`, e.g. `contacts/imports`.
            let kind = template
                .strip_prefix("/api/v1/")
                .and_then(|rest| rest.split("/{id}").next())
                .unwrap();
            let id = o.by_kind.get(kind).unwrap_or_else(|| {
                panic!("{template} has an {{id}} but this test has no object of kind `{kind}`: add one to create_other_objects")
            });
            let mut path = template.replace("{id}", id);
            // Routes that need a query to be well-formed.
            if template.ends_with("/can-contact") || template.ends_with("/unsubscribe-link") {
                path.push_str("?channel=sms");
            }
            assert!(!path.contains('{'), "another path parameter in {template}: teach this test about it");
            for (method, op) in ops.as_object().unwrap() {
                let body = body_for(method, template);
                assert!(
                    body.is_some() || op.get("requestBody").is_none(),
                    "{method} {template} takes a body: add a valid one to body_for"
                );
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                for (who, creds) in [("session", &demo_session), ("API key", &demo_key)] {
                    let mut rb = app.req(m.clone(), &path, creds);
                    if let Some(b) = &body {
                        rb = rb.json(b);
                    }
                    let r = rb.send().await.unwrap();
                    let status = r.status();
                    let text = r.text().await.unwrap();
                    assert_eq!(status, 404, "{method} {template} as demo's admin {who}: {text}");
                    let err: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(err["error"]["code"], "not_found", "{method} {template}: {text}");
                    assert!(!text.contains(id.as_str()), "{method} {template} echoes the id: {text}");
                    // Nothing of the object leaks into the error.
                    for secret in ["victim@other.example", "other-customer", "127.0.0.1:9/hook", "Other Corp", "secret@other.example", "Other's list"] {
                        assert!(!text.contains(secret), "{method} {template} leaks {secret}: {text}");
                    }
                }
                tried.insert(format!("{method} {template}"));
            }
        }
        // The document's id routes were all tried (at least the ones known today).
        for must in ["get /api/v1/users/{id}", "patch /api/v1/users/{id}", "delete /api/v1/api-keys/{id}",
                     "post /api/v1/interactions/{id}/transitions", "post /api/v1/webhooks/{id}/rotate-secret",
                     "post /api/v1/jobs/{id}/cancel", "get /api/v1/agents/{id}"] {
            assert!(tried.contains(must), "{must} not tried: {tried:?}");
        }

        // Nothing changed for the other tenant.
        let after = other_view(&app, &other, &o).await;
        for (k, v) in &before {
            assert_eq!(v, &after[k], "the other tenant's {k} changed");
        }
        assert_eq!(after["users"]["role"], "agent");
        assert_eq!(after["users"]["active"], true);
        assert!(after["api-keys"]["revoked_at"].is_null());
        assert_eq!(after["interactions"]["last_seq"], 1);
        assert_eq!(after["interactions"]["state"], "created");
        assert_eq!(after["webhooks"]["url"], "http://127.0.0.1:9/hook");
        assert_eq!(after["webhooks"]["active"], true);
        assert_eq!(webhook::Entity::find().all(db).await.unwrap(), hook_row_before, "no webhook row (or secret) changed");
        let job = json_ok(app.get(&format!("/api/v1/jobs/{}", o.by_kind["jobs"]), &other).await, 200).await;
        assert_eq!(job["cancel_requested"], false, "{job}");
        assert_ne!(job["status"], "cancelled", "{job}");
        // The victim still signs in with their password; the other tenant's key still works.
        app.login_to("other", "victim@other.example", "victims-password-1").await;
        json_ok(app.get("/api/v1/users", &o.key_token).await, 200).await;
        // And demo gained nothing either: no replay job, no webhook.
        assert!(all_items(&app, &demo_session, "/api/v1/jobs").await.is_empty());
        assert!(all_items(&app, &demo_session, "/api/v1/webhooks").await.is_empty());
    }

    async fn transitions_cannot_name_another_tenants_queue_or_agent(app) {
        let o = create_other_objects(&app).await;
        let sup = app.login("supervisor").await;
        let r = app.post("/api/v1/interactions", &sup, &json!({ "channel": "voice", "direction": "inbound" })).await;
        let created = json_ok(r, 201).await["interaction"].clone();
        let iid = id_of(&created);
        let path = format!("/api/v1/interactions/{iid}/transitions");
        let other_queue = &o.by_kind["queues"];
        let other_agent = &o.by_kind["agents"];
        let missing = uuid::Uuid::now_v7().to_string();

        let in_created = [
            json!({ "type": "enqueue", "queue_id": other_queue }),
            json!({ "type": "offer", "agent_id": other_agent }),
            json!({ "type": "connect", "agent_id": other_agent }),
            json!({ "type": "enqueue", "queue_id": missing }),
        ];
        for t in &in_created {
            let body = expect_error(app.post(&path, &sup, t).await, 404, "not_found").await;
            assert!(!body.to_string().contains(other_queue.as_str()) && !body.to_string().contains(other_agent.as_str()), "{body}");
        }
        let now = json_ok(app.get(&format!("/api/v1/interactions/{iid}"), &sup).await, 200).await;
        assert_eq!(now, created, "the interaction is unchanged");

        // Transfers from a flow, too.
        let r = app.post(&path, &sup, &json!({ "type": "enter_flow", "flow": "main" })).await;
        let in_flow = json_ok(r, 200).await["interaction"].clone();
        assert_eq!(in_flow["last_seq"], 2);
        for t in [
            json!({ "type": "transfer", "target": { "to": "queue", "queue_id": other_queue } }),
            json!({ "type": "transfer", "target": { "to": "agent", "agent_id": other_agent } }),
        ] {
            expect_error(app.post(&path, &sup, &t).await, 404, "not_found").await;
        }
        let now = json_ok(app.get(&format!("/api/v1/interactions/{iid}"), &sup).await, 200).await;
        assert_eq!(now, in_flow, "the interaction is unchanged");
        let events = json_ok(app.get(&format!("/api/v1/interactions/{iid}/events"), &sup).await, 200).await;
        assert_eq!(events.as_array().unwrap().len(), 2);

        // The same transition with demo's own queue works (the body was valid).
        let demo_queue = id_of(&all_items(&app, &sup, "/api/v1/queues").await[0]);
        let r = app.post(&path, &sup, &json!({ "type": "enqueue", "queue_id": demo_queue })).await;
        let queued = json_ok(r, 200).await;
        assert_eq!(queued["interaction"]["queue_id"], demo_queue.as_str());
        // The other tenant's queue saw nothing.
        let other = other_admin(&app).await;
        let feed = json_ok(app.get("/api/v1/events?limit=200", &other).await, 200).await;
        assert!(!feed.to_string().contains(&iid), "{feed}");
    }

    async fn lists_never_show_another_tenants_objects(app) {
        let o = create_other_objects(&app).await;
        let other = other_admin(&app).await;
        // Give the other tenant audit entries and events that name its objects.
        let iid = &o.by_kind["interactions"];
        json_ok(app.post(&format!("/api/v1/interactions/{iid}/notes"), &other, &json!({ "text": "other's note" })).await, 201).await;
        let uid = &o.by_kind["users"];
        json_ok(app.patch(&format!("/api/v1/users/{uid}"), &other, &json!({ "role": "supervisor" })).await, 200).await;
        json_ok(app.delete(&format!("/api/v1/api-keys/{}", o.by_kind["api-keys"]), &other).await, 200).await;

        // Demo has objects of its own in every list.
        let demo = app.login("admin").await;
        json_ok(app.post("/api/v1/interactions", &demo, &json!({ "channel": "sms", "direction": "outbound" })).await, 201).await;
        let r = app.post("/api/v1/webhooks", &demo, &json!({ "url": "http://127.0.0.1:9/demo" })).await;
        let demo_hook = id_of(&json_ok(r, 201).await);
        json_ok(app.post(&format!("/api/v1/webhooks/{demo_hook}/replay"), &demo, &json!({ "from_event_id": 0 })).await, 202).await;
        let demo_key = app.api_key("demo", "admin").await;
        let demo_tenant = id_of(&json_ok(app.get("/api/v1/tenant", &demo).await, 200).await);

        let lists = [
            "/api/v1/users", "/api/v1/api-keys", "/api/v1/interactions", "/api/v1/webhooks",
            "/api/v1/jobs", "/api/v1/skills", "/api/v1/queues", "/api/v1/agents", "/api/v1/audit",
        ];
        for creds in [&demo, &demo_key] {
            for path in lists {
                let items = all_items(&app, creds, path).await;
                assert!(!items.is_empty(), "demo has {path}");
                let text = serde_json::to_string(&items).unwrap();
                for id in &o.all_ids {
                    assert!(!text.contains(id.as_str()), "{path} as demo shows the other tenant's {id}: {text}");
                }
                assert!(!text.contains("other.example") && !text.contains("Other Corp") && !text.contains("other's"), "{path}: {text}");
            }
            let feed = json_ok(app.get("/api/v1/events?limit=200", creds).await, 200).await;
            let items = feed["items"].as_array().unwrap();
            assert!(!items.is_empty());
            for e in items {
                assert_eq!(e["tenant_id"], demo_tenant.as_str(), "{e}");
            }
            let text = feed.to_string();
            for id in &o.all_ids {
                assert!(!text.contains(id.as_str()), "the event feed shows {id}: {text}");
            }
            // Filters do not open a way in either.
            let notes = json_ok(app.get("/api/v1/events?kind=note&limit=200", creds).await, 200).await;
            assert!(notes["items"].as_array().unwrap().is_empty(), "{notes}");
            let audit = json_ok(app.get("/api/v1/audit?action=user.role_changed", creds).await, 200).await;
            assert!(audit["items"].as_array().unwrap().is_empty(), "{audit}");
        }
        // Control: the other tenant does see these ids, so their absence above means something.
        let theirs = serde_json::to_string(&all_items(&app, &other, "/api/v1/audit").await).unwrap();
        assert!(theirs.contains(uid.as_str()) && theirs.contains(&o.by_kind["api-keys"]), "{theirs}");
        let their_users = serde_json::to_string(&all_items(&app, &other, "/api/v1/users").await).unwrap();
        assert!(their_users.contains(uid.as_str()));
    }

    async fn the_live_stream_carries_only_the_callers_tenant(app) {
        let demo = app.login("supervisor").await;
        let other = other_admin(&app).await;
        let mut stream = app.get("/api/v1/events/stream", &demo).await;
        assert_eq!(stream.status(), 200);
        // Wait for the stream to be connected before producing events.
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("connected"));

        let r = app.post("/api/v1/interactions", &other, &json!({ "channel": "chat", "direction": "inbound", "subject": "other's secret" })).await;
        let other_iid = id_of(&json_ok(r, 201).await["interaction"]);
        json_ok(app.post(&format!("/api/v1/interactions/{other_iid}/notes"), &other, &json!({ "text": "other's note" })).await, 201).await;
        let r = app.post("/api/v1/interactions", &demo, &json!({ "channel": "chat", "direction": "inbound" })).await;
        let demo_iid = id_of(&json_ok(r, 201).await["interaction"]);

        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !seen.contains(&demo_iid) {
            let chunk = tokio::time::timeout_at(deadline, stream.chunk())
                .await
                .unwrap_or_else(|_| panic!("demo's own event never arrived; got {seen}"))
                .unwrap()
                .expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(!seen.contains(&other_iid), "{seen}");
        assert!(!seen.contains("other's"), "{seen}");
    }
}
