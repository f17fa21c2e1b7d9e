//! Audiences and the right to reach people: static lists, dynamic segments
//! (every operator, evaluated in SQL on SQLite and PostgreSQL alike, with
//! positioned errors), consent per channel and its history, suppressions
//! (do-not-call, bounces, complaints) and their import, inbound STOP texts,
//! unsubscribe links, the one can-contact decision, tenant isolation, roles
//! and bad input.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::contacts::{
    Endpoint, check_endpoint, count_of, counts, define_attribute, enc, found, get_contact, id_of,
    invalid_field, new_contact, set,
};
use crate::helpers::*;

// ---- helpers ---------------------------------------------------------------------

async fn new_list(app: &TestApp, creds: &Creds, name: &str) -> String {
    let r = app
        .post("/api/v1/lists", creds, &json!({ "name": name }))
        .await;
    let l = json_ok(r, 201).await;
    assert_eq!(l["name"], name);
    assert_eq!(l["members"], 0);
    id_of(&l)
}

async fn add_members(app: &TestApp, creds: &Creds, list: &str, ids: &[&str]) -> Value {
    let r = app
        .post(
            &format!("/api/v1/lists/{list}/members"),
            creds,
            &json!({ "contact_ids": ids }),
        )
        .await;
    json_ok(r, 200).await
}

/// The contacts an expression matches, checked three ways (the preview's
/// count, the list filtered by it and the count filtered by it), which must agree.
async fn matches(app: &TestApp, creds: &Creds, expr: &str) -> BTreeSet<String> {
    let r = app
        .post(
            "/api/v1/segments/preview",
            creds,
            &json!({ "expression": expr }),
        )
        .await;
    let preview = json_ok(r, 200).await;
    let q = format!("segment={}", enc(expr));
    let ids = found(app, creds, &q).await;
    assert_eq!(
        preview["count"].as_u64().unwrap(),
        ids.len() as u64,
        "preview count of {expr:?}"
    );
    assert_eq!(
        count_of(app, creds, &q).await,
        ids.len() as u64,
        "count of {expr:?}"
    );
    let sample: BTreeSet<String> = preview["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(sample.len(), ids.len().min(5), "sample of {expr:?}");
    assert!(sample.is_subset(&ids), "the sample of {expr:?} matches it");
    ids
}

/// A 422 for a bad expression: its field path, and where it is wrong.
async fn expr_error(
    app: &TestApp,
    creds: &Creds,
    expr: &str,
    position: u64,
    line: u64,
    column: u64,
    says: &str,
) {
    let r = app
        .post(
            "/api/v1/segments/preview",
            creds,
            &json!({ "expression": expr }),
        )
        .await;
    let e = invalid_field(r, "expression").await;
    let d = &e["error"]["details"];
    assert_eq!(
        (
            d["position"].as_u64(),
            d["line"].as_u64(),
            d["column"].as_u64()
        ),
        (Some(position), Some(line), Some(column)),
        "{expr:?}: {e}"
    );
    let msg = d["fields"][0]["message"].as_str().unwrap();
    assert!(msg.contains(says), "{expr:?}: {msg:?} should say {says:?}");
    assert!(
        msg.contains(&format!("line {line}, column {column}")),
        "{msg}"
    );
    // The same through the contact list's query string.
    let r = app
        .get(&format!("/api/v1/contacts?segment={}", enc(expr)), creds)
        .await;
    let e = invalid_field(r, "segment").await;
    assert_eq!(e["error"]["details"]["position"].as_u64(), Some(position));
}

async fn can_contact(app: &TestApp, creds: &Creds, id: &str, channel: &str, at: &str) -> Value {
    json_ok(
        app.get(
            &format!(
                "/api/v1/contacts/{id}/can-contact?channel={channel}&at={}",
                enc(at)
            ),
            creds,
        )
        .await,
        200,
    )
    .await
}

fn codes(d: &Value) -> Vec<String> {
    d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(
                r["message"].as_str().is_some_and(|m| !m.is_empty()),
                "every reason says why: {d}"
            );
            r["code"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().unwrap()
}

async fn set_policy(app: &TestApp, slug: &str, policy: Value) {
    let admin = app.api_key(slug, "admin").await;
    let r = app
        .req(Method::PUT, "/api/v1/contact-policy", &admin)
        .json(&policy)
        .send()
        .await
        .unwrap();
    json_ok(r, 200).await;
}

async fn inbound(app: &TestApp, creds: &Creds, from: &str, text: &str) -> Value {
    let r = app
        .post(
            "/api/v1/consent/inbound-sms",
            creds,
            &json!({ "from": from, "text": text }),
        )
        .await;
    json_ok(r, 200).await
}

async fn suppressions(app: &TestApp, creds: &Creds, query: &str) -> Vec<Value> {
    let page = json_ok(
        app.get(&format!("/api/v1/suppressions?{query}&limit=200"), creds)
            .await,
        200,
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

async fn wait_for_job(app: &TestApp, creds: &Creds, id: &str) -> Value {
    eventually(60, "the job to finish", || async {
        let j = json_ok(app.get(&format!("/api/v1/jobs/{id}"), creds).await, 200).await;
        matches!(
            j["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
        .then_some(j)
    })
    .await
}

async fn upload(app: &TestApp, creds: &Creds, name: &str, body: &str) -> String {
    let r = app
        .req(
            Method::POST,
            &format!("/api/v1/uploads?filename={name}"),
            creds,
        )
        .header("Content-Type", "text/csv")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    id_of(&json_ok(r, 201).await)
}

async fn seg_count(app: &TestApp, creds: &Creds, id: &str) -> u64 {
    json_ok(
        app.get(&format!("/api/v1/segments/{id}/count"), creds)
            .await,
        200,
    )
    .await["count"]
        .as_u64()
        .unwrap()
}

// ---- lists -----------------------------------------------------------------------

both_backends! {
    async fn lists_hold_contacts_and_count_them(app) {
        let marketer = app.login("marketer").await;
        let admin = app.login("admin").await;
        let mut ids = Vec::new();
        for n in ["A", "B", "C", "D", "E"] {
            ids.push(id_of(&new_contact(&app, &admin, json!({ "first_name": n })).await));
        }
        let (a, b, c, d, e) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);
        let list = new_list(&app, &marketer, "Newsletter").await;
        let r = add_members(&app, &marketer, &list, &[a, b, c]).await;
        assert_eq!((r["changed"].as_u64(), r["members"].as_u64()), (Some(3), Some(3)));
        // Already there is fine, and duplicates in one request count once.
        let r = add_members(&app, &marketer, &list, &[a, d, d]).await;
        assert_eq!((r["changed"].as_u64(), r["members"].as_u64()), (Some(1), Some(4)));
        let r = app.post(&format!("/api/v1/lists/{list}/members/remove"), &marketer, &json!({ "contact_ids": [b, e, uuid::Uuid::now_v7()] })).await;
        let r = json_ok(r, 200).await;
        assert_eq!((r["changed"].as_u64(), r["members"].as_u64()), (Some(1), Some(3)));
        let l = json_ok(app.get(&format!("/api/v1/lists/{list}"), &admin).await, 200).await;
        assert_eq!(l["members"], 3);
        assert_eq!(l["name"], "Newsletter");
        assert_eq!(found(&app, &admin, &format!("list_id={list}")).await, set(&[a, c, d]));
        assert_eq!(count_of(&app, &admin, &format!("list_id={list}")).await, 3);
        assert_eq!(found(&app, &admin, &format!("list_id={list}&q=c")).await, set(&[c]));
        // The card names the lists a contact is on.
        let other_list = new_list(&app, &marketer, "VIP callers").await;
        add_members(&app, &marketer, &other_list, &[a]).await;
        let card = get_contact(&app, &admin, a).await;
        let names: BTreeSet<&str> = card["lists"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert_eq!(names, BTreeSet::from(["Newsletter", "VIP callers"]));
        assert_eq!(get_contact(&app, &admin, e).await["lists"], json!([]));

        // An unknown contact spoils the whole request: nothing is added.
        let before = counts(&app).await;
        let r = app.post(&format!("/api/v1/lists/{list}/members"), &marketer, &json!({ "contact_ids": [e, uuid::Uuid::now_v7()] })).await;
        expect_error(r, 404, "not_found").await;
        assert_eq!(counts(&app).await, before);
        for bad in [json!([]), json!(["not-a-uuid"]), json!("x"), json!(vec![a.clone(); 10_001])] {
            let r = app.post(&format!("/api/v1/lists/{list}/members"), &marketer, &json!({ "contact_ids": bad })).await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 422, "{body}");
        }
        assert_eq!(counts(&app).await, before);
        // Names are unique per tenant; renames follow the same rule.
        expect_error(app.post("/api/v1/lists", &marketer, &json!({ "name": "Newsletter" })).await, 409, "conflict").await;
        let r = app.patch(&format!("/api/v1/lists/{other_list}"), &marketer, &json!({ "name": "Newsletter" })).await;
        expect_error(r, 409, "conflict").await;
        let r = app.patch(&format!("/api/v1/lists/{list}"), &marketer, &json!({ "name": "Monthly news", "description": "Once a month" })).await;
        let renamed = json_ok(r, 200).await;
        assert_eq!((renamed["name"].as_str(), renamed["description"].as_str(), renamed["members"].as_u64()), (Some("Monthly news"), Some("Once a month"), Some(3)));
        for (body, path) in [
            (json!({ "name": "" }), "name"),
            (json!({ "name": "   " }), "name"),
            (json!({ "name": "n".repeat(121) }), "name"),
            (json!({ "name": "line\nbreak" }), "name"),
            (json!({ "name": "ok", "description": "d".repeat(1001) }), "description"),
        ] {
            invalid_field(app.post("/api/v1/lists", &marketer, &body).await, path).await;
            invalid_field(app.patch(&format!("/api/v1/lists/{list}"), &marketer, &body).await, path).await;
        }
        // Lists page by cursor.
        let p1 = json_ok(app.get("/api/v1/lists?limit=1", &admin).await, 200).await;
        assert_eq!(p1["items"][0]["id"], list.as_str());
        let cursor = p1["next_cursor"].as_str().unwrap();
        let p2 = json_ok(app.get(&format!("/api/v1/lists?limit=1&cursor={cursor}"), &admin).await, 200).await;
        assert_eq!(p2["items"][0]["id"], other_list.as_str());
        assert!(p2["next_cursor"].is_null());

        // A deleted contact leaves its lists.
        assert_eq!(app.delete(&format!("/api/v1/contacts/{d}"), &admin).await.status(), 204);
        assert_eq!(json_ok(app.get(&format!("/api/v1/lists/{list}"), &admin).await, 200).await["members"], 2);
        assert_eq!(found(&app, &admin, &format!("list_id={list}")).await, set(&[a, c]));
        // A deleted list leaves its contacts.
        assert_eq!(app.delete(&format!("/api/v1/lists/{list}"), &marketer).await.status(), 204);
        expect_error(app.get(&format!("/api/v1/lists/{list}"), &admin).await, 404, "not_found").await;
        expect_error(app.get(&format!("/api/v1/contacts?list_id={list}"), &admin).await, 404, "not_found").await;
        expect_error(app.delete(&format!("/api/v1/lists/{list}"), &marketer).await, 404, "not_found").await;
        let r = app.post(&format!("/api/v1/lists/{list}/members"), &marketer, &json!({ "contact_ids": [a] })).await;
        expect_error(r, 404, "not_found").await;
        get_contact(&app, &admin, a).await;
        assert_eq!(get_contact(&app, &admin, a).await["lists"].as_array().unwrap().len(), 1);
    }
}

// ---- segments ----------------------------------------------------------------------

both_backends! {
    async fn every_segment_operator_selects_exactly_the_expected_contacts(app) {
        let admin = app.login("admin").await;
        for (k, kind) in [("plan", "string"), ("spend", "number"), ("active", "boolean"), ("renewal", "date")] {
            define_attribute(&app, &admin, k, kind).await;
        }
        let c1 = new_contact(&app, &admin, json!({
            "first_name": "Ada", "last_name": "Lovelace", "phones": ["(201) 555-0123"], "emails": ["ada@example.com"],
            "language": "en", "tags": ["vip"], "external_id": "crm-1",
            "attributes": { "plan": "gold", "spend": 120.5, "active": true, "renewal": "2026-03-01" },
        })).await;
        let c2 = new_contact(&app, &admin, json!({
            "first_name": "Alan", "last_name": "Turing", "phones": ["+44 20 7946 0958"], "emails": ["alan@example.org"],
            "language": "en-GB", "tags": ["vip", "math"],
            "attributes": { "plan": "silver", "spend": 80, "active": false, "renewal": "2025-12-31" },
        })).await;
        let c3 = new_contact(&app, &admin, json!({
            "first_name": "Grace", "last_name": "Hopper", "emails": ["grace@navy.example"], "language": "es", "tags": ["navy"],
            "attributes": { "plan": "gold", "spend": 200 },
        })).await;
        let c4 = new_contact(&app, &admin, json!({ "first_name": "Edsger", "last_name": "Dijkstra", "phones": ["+49 30 1234567"] })).await;
        let c5 = new_contact(&app, &admin, json!({
            "first_name": "Barbara", "last_name": "McClintock", "emails": ["barbara@example.com"], "tags": ["vip"],
            "attributes": { "plan": "Gold", "spend": 100 },
        })).await;
        let ids: Vec<String> = [&c1, &c2, &c3, &c4, &c5].iter().map(|c| id_of(c)).collect();
        let (i1, i2, i3, i4, i5) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str(), ids[3].as_str(), ids[4].as_str());
        for (id, ch, status) in [(i1, "sms", "opted_in"), (i2, "sms", "opted_out"), (i3, "email", "opted_in"), (i4, "voice", "opted_out")] {
            let r = app.post(&format!("/api/v1/contacts/{id}/consent"), &admin, &json!({ "channel": ch, "status": status })).await;
            json_ok(r, 200).await;
        }
        let list = new_list(&app, &admin, "Newsletter").await;
        add_members(&app, &admin, &list, &[i2, i4]).await;
        for (id, n) in [(i1, 2), (i2, 1)] {
            for _ in 0..n {
                let r = app.post("/api/v1/interactions", &admin, &json!({ "channel": "voice", "direction": "inbound", "contact_id": id })).await;
                json_ok(r, 201).await;
            }
        }
        // The other tenant has look-alikes of everybody, and a list of the same name.
        let other = app.api_key("other", "admin").await;
        define_attribute(&app, &other, "plan", "string").await;
        let mut theirs = Vec::new();
        for c in [&c1, &c2, &c3, &c4, &c5] {
            let t = new_contact(&app, &other, json!({ "first_name": c["first_name"], "last_name": c["last_name"], "tags": c["tags"], "emails": c["emails"], "language": c["language"] })).await;
            theirs.push(id_of(&t));
        }
        let their_list = new_list(&app, &other, "Newsletter").await;
        add_members(&app, &other, &their_list, &[&theirs[0], &theirs[2]]).await;

        let created = |c: &Value| c["created_at"].as_str().unwrap().to_owned();
        let all = [i1, i2, i3, i4, i5];
        let cases: Vec<(String, Vec<&str>)> = vec![
            // Tags.
            (r#"tags has "vip""#.into(), vec![i1, i2, i5]),
            // Tags are case-insensitive.
            (r#"tags has "VIP""#.into(), vec![i1, i2, i5]),
            (r#"tags in ["navy", "math"]"#.into(), vec![i2, i3]),
            ("tags is set".into(), vec![i1, i2, i3, i5]),
            ("tags is not set".into(), vec![i4]),
            (r#"not tags has "vip""#.into(), vec![i3, i4]),
            // The example from the issue.
            (r#"tags has "vip" and attributes.plan = "gold""#.into(), vec![i1]),
            // Text attributes (case-sensitive).
            (r#"attributes.plan = "gold""#.into(), vec![i1, i3]),
            (r#"attributes.plan != "gold""#.into(), vec![i2, i4, i5]),
            (r#"attributes.plan contains "ol""#.into(), vec![i1, i3, i5]),
            (r#"attributes.plan starts_with "G""#.into(), vec![i5]),
            (r#"attributes.plan in ["silver", "Gold"]"#.into(), vec![i2, i5]),
            ("attributes.plan is set".into(), vec![i1, i2, i3, i5]),
            ("attributes.plan is not set".into(), vec![i4]),
            // Numbers.
            ("attributes.spend = 80".into(), vec![i2]),
            ("attributes.spend != 80".into(), vec![i1, i3, i4, i5]),
            ("attributes.spend < 100".into(), vec![i2]),
            ("attributes.spend <= 100".into(), vec![i2, i5]),
            ("attributes.spend > 100".into(), vec![i1, i3]),
            ("attributes.spend >= 100".into(), vec![i1, i3, i5]),
            ("attributes.spend > 120.4 and attributes.spend < 120.6".into(), vec![i1]),
            ("attributes.spend in [80, 200]".into(), vec![i2, i3]),
            ("attributes.spend > -1".into(), vec![i1, i2, i3, i5]),
            ("not attributes.spend > 100".into(), vec![i2, i4, i5]),
            // Booleans.
            ("attributes.active = true".into(), vec![i1]),
            ("attributes.active = false".into(), vec![i2]),
            ("attributes.active != true".into(), vec![i2, i3, i4, i5]),
            ("attributes.active is set".into(), vec![i1, i2]),
            ("attributes.active is not set".into(), vec![i3, i4, i5]),
            // Dates.
            (r#"attributes.renewal < "2026-01-01""#.into(), vec![i2]),
            (r#"attributes.renewal >= "2026-03-01""#.into(), vec![i1]),
            (r#"attributes.renewal > "2026-03-01""#.into(), vec![]),
            (r#"attributes.renewal = "2026-03-01T00:00:00Z""#.into(), vec![i1]),
            (r#"attributes.renewal <= "2026-03-01T01:00:00+01:00""#.into(), vec![i1, i2]),
            // Built-in text fields.
            (r#"name = "ADA LOVELACE""#.into(), vec![i1]),
            (r#"first_name = "ada""#.into(), vec![]),
            (r#"first_name = "Ada""#.into(), vec![i1]),
            (r#"name contains "ra""#.into(), vec![i3, i4, i5]),
            (r#"last_name starts_with "Mc""#.into(), vec![i5]),
            (r#"last_name != "Turing""#.into(), vec![i1, i3, i4, i5]),
            (r#"language in ["en", "es"]"#.into(), vec![i1, i3]),
            (r#"language starts_with "en""#.into(), vec![i1, i2]),
            (r#"language != "en""#.into(), vec![i2, i3, i4, i5]),
            (r#"not language = "en""#.into(), vec![i2, i3, i4, i5]),
            (r#"not language contains "e""#.into(), vec![i4, i5]),
            ("language is set".into(), vec![i1, i2, i3]),
            ("language is not set".into(), vec![i4, i5]),
            (r#"external_id = "crm-1""#.into(), vec![i1]),
            (r#"external_id != "crm-1""#.into(), vec![i2, i3, i4, i5]),
            (r#"timezone = "Europe/London""#.into(), vec![i2]),
            (r#"timezone in ["Europe/London", "Europe/Berlin"]"#.into(), vec![i2, i4]),
            // Emails and phones.
            (r#"email = "ALAN@example.org""#.into(), vec![i2]),
            (r#"email contains "example.com""#.into(), vec![i1, i5]),
            (r#"email starts_with "gr""#.into(), vec![i3]),
            (r#"email != "ada@example.com""#.into(), vec![i2, i3, i4, i5]),
            (r#"email in ["ada@example.com", "grace@navy.example"]"#.into(), vec![i1, i3]),
            ("email is not set".into(), vec![i4]),
            (r#"phone = "(201) 555-0123""#.into(), vec![i1]),
            (r#"phone = "201.555.0123""#.into(), vec![i1]),
            (r#"phone in ["+44 20 7946 0958", "+49 30 1234567"]"#.into(), vec![i2, i4]),
            (r#"phone starts_with "+44""#.into(), vec![i2]),
            (r#"phone starts_with "+1 201""#.into(), vec![i1]),
            (r#"phone != "+49 30 1234567""#.into(), vec![i1, i2, i3, i5]),
            ("phone is set".into(), vec![i1, i2, i4]),
            ("phone is not set".into(), vec![i3, i5]),
            // Consent.
            (r#"consent.sms = "opted_in""#.into(), vec![i1]),
            (r#"consent.sms = "opted_out""#.into(), vec![i2]),
            (r#"consent.sms = "unknown""#.into(), vec![i3, i4, i5]),
            (r#"consent.sms != "opted_in""#.into(), vec![i2, i3, i4, i5]),
            (r#"consent.email in ["opted_in", "opted_out"]"#.into(), vec![i3]),
            (r#"consent.voice = "opted_out" or consent.sms = "opted_out""#.into(), vec![i2, i4]),
            // Lists: this tenant's list of that name only.
            (r#"in_list "Newsletter""#.into(), vec![i2, i4]),
            (r#"in_list "Newsletter" and not tags has "vip""#.into(), vec![i4]),
            (r#"not in_list "Newsletter""#.into(), vec![i1, i3, i5]),
            // Activity.
            ("activity.interactions >= 2".into(), vec![i1]),
            ("activity.interactions = 1".into(), vec![i2]),
            ("activity.interactions = 0".into(), vec![i3, i4, i5]),
            ("activity.interactions > 0".into(), vec![i1, i2]),
            ("activity.last_interaction is set".into(), vec![i1, i2]),
            ("activity.last_interaction is not set".into(), vec![i3, i4, i5]),
            (r#"activity.last_interaction > "2000-01-01""#.into(), vec![i1, i2]),
            (r#"not activity.last_interaction > "2000-01-01""#.into(), vec![i3, i4, i5]),
            (r#"activity.last_interaction < "2000-01-01""#.into(), vec![]),
            (r#"activity.last_interaction != "2000-01-01""#.into(), all.to_vec()),
            // Creation time, at the exact moments.
            (format!(r#"created_at > "{}""#, created(&c3)), vec![i4, i5]),
            (format!(r#"created_at >= "{}""#, created(&c3)), vec![i3, i4, i5]),
            (format!(r#"created_at < "{}""#, created(&c3)), vec![i1, i2]),
            (format!(r#"created_at <= "{}""#, created(&c3)), vec![i1, i2, i3]),
            (format!(r#"created_at = "{}""#, created(&c3)), vec![i3]),
            (format!(r#"created_at != "{}""#, created(&c3)), vec![i1, i2, i4, i5]),
            (r#"created_at > "2000-01-01""#.into(), all.to_vec()),
            (r#"created_at < "2000-01-01""#.into(), vec![]),
            ("updated_at is set".into(), all.to_vec()),
            // Precedence: not > and > or; parentheses override.
            (r#"tags has "vip" or tags has "navy" and attributes.plan = "gold""#.into(), vec![i1, i2, i3, i5]),
            (r#"(tags has "vip" or tags has "navy") and attributes.plan = "gold""#.into(), vec![i1, i3]),
            (r#"tags has "navy" and attributes.plan = "gold" or tags has "math""#.into(), vec![i2, i3]),
            (r#"not tags has "vip" and phone is set"#.into(), vec![i4]),
            (r#"not (tags has "vip" and phone is set)"#.into(), vec![i3, i4, i5]),
            (r#"not not tags has "navy""#.into(), vec![i3]),
            (r#"(((language = "es")))"#.into(), vec![i3]),
            (r#"language = "en" or language = "es" or language is not set"#.into(), vec![i1, i3, i4, i5]),
            (r#"not (language = "en" or attributes.active = true)"#.into(), vec![i2, i3, i4, i5]),
            // Keywords in any case.
            (r#"tags has "vip" AND NOT phone IS NOT SET"#.into(), vec![i1, i2]),
            (r#"tags HAS "vip" And Not phone Is Set"#.into(), vec![i5]),
            // Values that look like SQL or script are data.
            (r#"last_name = "x' OR 1=1 --""#.into(), vec![]),
            (r#"name contains "'); DROP TABLE contacts; --""#.into(), vec![]),
            (r#"attributes.plan = "gold\" OR \"1\"=\"1""#.into(), vec![]),
            (r#"tags has "vip' OR 'a'='a""#.into(), vec![]),
            (r#"email = "a@b.c' --""#.into(), vec![]),
            (r#"name contains "%""#.into(), vec![]),
            (r#"name starts_with "_""#.into(), vec![]),
            (r#"name contains "$1""#.into(), vec![]),
            (r#"name contains "?""#.into(), vec![]),
            (r#"first_name = "<script>alert(1)</script>""#.into(), vec![]),
        ];
        let before = counts(&app).await;
        for (expr, expected) in &cases {
            assert_eq!(matches(&app, &admin, expr).await, set(expected), "{expr}");
        }
        assert_eq!(counts(&app).await, before, "evaluating segments wrote nothing");
        // The other tenant's identical expressions see only theirs.
        assert_eq!(matches(&app, &other, r#"tags has "vip""#).await, set(&[&theirs[0], &theirs[1], &theirs[4]]));
        assert_eq!(matches(&app, &other, r#"in_list "Newsletter""#).await, set(&[&theirs[0], &theirs[2]]));
        assert_eq!(matches(&app, &other, "activity.interactions > 0").await, set(&[]));
        assert_eq!(count_of(&app, &other, "").await, 5);
        // A segment combines with the other filters.
        assert_eq!(found(&app, &admin, &format!("segment={}&tag=math", enc(r#"tags has "vip""#))).await, set(&[i2]));
        assert_eq!(found(&app, &admin, &format!("segment={}&list_id={list}", enc(r#"tags has "vip""#))).await, set(&[i2]));
        assert_eq!(found(&app, &admin, &format!("segment={}&q=ada", enc(r#"tags has "vip""#))).await, set(&[i1]));
    }

    async fn saved_segments_are_counted_and_filter_contacts(app) {
        let marketer = app.login("marketer").await;
        let agent = app.login("agent").await;
        define_attribute(&app, &marketer, "plan", "string").await;
        let a = id_of(&new_contact(&app, &marketer, json!({ "first_name": "A", "tags": ["vip"], "attributes": { "plan": "gold" } })).await);
        let b = id_of(&new_contact(&app, &marketer, json!({ "first_name": "B", "tags": ["vip"] })).await);
        new_contact(&app, &marketer, json!({ "first_name": "C" })).await;
        let r = app.post("/api/v1/segments", &marketer, &json!({ "name": "VIPs", "description": "Our best", "expression": "tags has \"vip\"" })).await;
        let seg = json_ok(r, 201).await;
        let sid = id_of(&seg);
        assert_eq!((seg["name"].as_str(), seg["description"].as_str(), seg["expression"].as_str()), (Some("VIPs"), Some("Our best"), Some("tags has \"vip\"")));
        assert_eq!(json_ok(app.get(&format!("/api/v1/segments/{sid}"), &agent).await, 200).await, seg);
        let listed = json_ok(app.get("/api/v1/segments", &agent).await, 200).await;
        assert_eq!(listed["items"], json!([seg]));
        assert_eq!(seg_count(&app, &agent, &sid).await, 2);
        assert_eq!(found(&app, &agent, &format!("segment_id={sid}")).await, set(&[&a, &b]));
        assert_eq!(count_of(&app, &agent, &format!("segment_id={sid}")).await, 2);
        // Segments are dynamic: a new VIP is in at once.
        let d = id_of(&new_contact(&app, &marketer, json!({ "first_name": "D", "tags": ["vip"] })).await);
        assert_eq!(seg_count(&app, &agent, &sid).await, 3);
        let r = app.patch(&format!("/api/v1/contacts/{b}"), &marketer, &json!({ "tags": [] })).await;
        json_ok(r, 200).await;
        assert_eq!(found(&app, &agent, &format!("segment_id={sid}")).await, set(&[&a, &d]));
        // A changed expression is checked first.
        let r = app.patch(&format!("/api/v1/segments/{sid}"), &marketer, &json!({ "expression": "tags has \"vip\" and attributes.plan = \"gold\"" })).await;
        let changed = json_ok(r, 200).await;
        assert_eq!(changed["name"], "VIPs");
        assert_ne!(changed["updated_at"], seg["updated_at"]);
        assert_eq!(seg_count(&app, &agent, &sid).await, 1);
        let before = counts(&app).await;
        let r = app.patch(&format!("/api/v1/segments/{sid}"), &marketer, &json!({ "expression": "tags has" })).await;
        invalid_field(r, "expression").await;
        let r = app.patch(&format!("/api/v1/segments/{sid}"), &marketer, &json!({ "expression": "attributes.nope = 1", "name": "Renamed" })).await;
        invalid_field(r, "expression").await;
        let r = app.post("/api/v1/segments", &marketer, &json!({ "name": "Broken", "expression": "colour = \"red\"" })).await;
        invalid_field(r, "expression").await;
        let r = app.post("/api/v1/segments", &marketer, &json!({ "name": "VIPs", "expression": "tags is set" })).await;
        expect_error(r, 409, "conflict").await;
        for (body, path) in [
            (json!({ "name": "", "expression": "tags is set" }), "name"),
            (json!({ "name": "n".repeat(121), "expression": "tags is set" }), "name"),
            (json!({ "name": "ok", "description": "d".repeat(1001), "expression": "tags is set" }), "description"),
            (json!({ "name": "ok" }), "expression"),
            (json!({ "name": "ok", "expression": 5 }), "expression"),
            (json!({ "name": "ok", "expression": "" }), "expression"),
            (json!({ "name": "ok", "expression": format!("name = \"{}\"", "x".repeat(4100)) }), "expression"),
        ] {
            invalid_field(app.post("/api/v1/segments", &marketer, &body).await, path).await;
        }
        assert_eq!(counts(&app).await, before);
        assert_eq!(json_ok(app.get(&format!("/api/v1/segments/{sid}"), &agent).await, 200).await, changed);
        // A saved segment naming a list breaks cleanly when the list goes.
        let l = new_list(&app, &marketer, "Callers").await;
        add_members(&app, &marketer, &l, &[&a]).await;
        let r = app.post("/api/v1/segments", &marketer, &json!({ "name": "Callers seg", "expression": "in_list \"Callers\"" })).await;
        let listed_seg = id_of(&json_ok(r, 201).await);
        assert_eq!(json_ok(app.get(&format!("/api/v1/segments/{listed_seg}/count"), &agent).await, 200).await["count"], 1);
        assert_eq!(app.delete(&format!("/api/v1/lists/{l}"), &marketer).await.status(), 204);
        let r = app.get(&format!("/api/v1/segments/{listed_seg}/count"), &agent).await;
        let e = invalid_field(r, "expression").await;
        assert!(e.to_string().contains("Callers"), "{e}");
        // Deleted: gone everywhere.
        assert_eq!(app.delete(&format!("/api/v1/segments/{sid}"), &marketer).await.status(), 204);
        expect_error(app.get(&format!("/api/v1/segments/{sid}"), &agent).await, 404, "not_found").await;
        expect_error(app.get(&format!("/api/v1/segments/{sid}/count"), &agent).await, 404, "not_found").await;
        expect_error(app.get(&format!("/api/v1/contacts?segment_id={sid}"), &agent).await, 404, "not_found").await;
        expect_error(app.delete(&format!("/api/v1/segments/{sid}"), &marketer).await, 404, "not_found").await;
        let r = app.patch(&format!("/api/v1/segments/{sid}"), &marketer, &json!({ "name": "x" })).await;
        expect_error(r, 404, "not_found").await;
        // The builder's catalogue names what exists.
        let fields = json_ok(app.get("/api/v1/segments/fields", &agent).await, 200).await;
        assert_eq!(fields["attributes"], json!([{ "key": "plan", "kind": "string", "label": "" }]));
        assert_eq!(fields["lists"], json!([]));
        assert!(fields["fields"].as_array().unwrap().contains(&json!("consent.sms")));
        assert!(fields["operators"].as_array().unwrap().contains(&json!("starts_with")));
    }

    async fn bad_expressions_say_where_they_are_wrong(app) {
        let admin = app.login("admin").await;
        define_attribute(&app, &admin, "spend", "number").await;
        new_list(&app, &admin, "Real list").await;
        let before = counts(&app).await;
        // Syntax errors.
        expr_error(&app, &admin, "tags has", 8, 1, 9, "expected a value").await;
        expr_error(&app, &admin, r#"name = "x" and"#, 14, 1, 15, "expected a condition").await;
        expr_error(&app, &admin, r#"name == "x""#, 5, 1, 6, "did you mean \"=\"").await;
        expr_error(&app, &admin, r#"(tags has "vip""#, 15, 1, 16, "missing \")\"").await;
        expr_error(&app, &admin, r#"tags has "vip")"#, 14, 1, 15, "unbalanced").await;
        expr_error(&app, &admin, r#"name = "unterminated"#, 7, 1, 8, "unterminated string").await;
        expr_error(&app, &admin, "", 0, 1, 1, "empty expression").await;
        expr_error(&app, &admin, "tags has \"vip\"\nand\n(name = \"x\"", 30, 3, 12, "missing \")\"").await;
        expr_error(&app, &admin, r#"name = x"#, 7, 1, 8, "text goes in quotes").await;
        expr_error(&app, &admin, r#"tags has "vip" && phone is set"#, 15, 1, 16, "did you mean \"and\"").await;
        // Unknown fields, attributes, lists: found after parsing, still positioned.
        expr_error(&app, &admin, "tags has \"vip\" and\n  colour = \"red\"", 21, 2, 3, "unknown field \"colour\"").await;
        expr_error(&app, &admin, "attributes.nope = 1", 0, 1, 1, "unknown attribute \"nope\"").await;
        expr_error(&app, &admin, r#"in_list "Nope""#, 8, 1, 9, "no list named \"Nope\"").await;
        expr_error(&app, &admin, "consent.fax = \"opted_in\"", 0, 1, 1, "unknown field").await;
        // Positions count characters, not bytes.
        expr_error(&app, &admin, r#"name = "é😀" and foo = 1"#, 16, 1, 17, "unknown field \"foo\"").await;
        // Wrong operators and values for a field.
        expr_error(&app, &admin, r#"tags = "vip""#, 5, 1, 6, "does not take this operator").await;
        expr_error(&app, &admin, r#"attributes.spend = "a lot""#, 19, 1, 20, "expected a number").await;
        expr_error(&app, &admin, r#"attributes.spend contains "1""#, 17, 1, 18, "does not take this operator").await;
        expr_error(&app, &admin, r#"consent.sms = "yes""#, 14, 1, 15, "consent is").await;
        expr_error(&app, &admin, r#"consent.sms > "opted_in""#, 12, 1, 13, "does not take this operator").await;
        expr_error(&app, &admin, r#"phone = "not a phone""#, 8, 1, 9, "not a phone").await;
        expr_error(&app, &admin, r#"phone contains "555""#, 6, 1, 7, "does not take this operator").await;
        expr_error(&app, &admin, r#"created_at > "yesterday""#, 13, 1, 14, "is not a date").await;
        expr_error(&app, &admin, r#"name > "m""#, 5, 1, 6, "does not take this operator").await;
        expr_error(&app, &admin, r#"name = "a\u{0}b""#, 7, 1, 8, "NUL").await;
        assert_eq!(counts(&app).await, before);
        // In a saved segment, the same details.
        let r = app.post("/api/v1/segments", &admin, &json!({ "name": "S", "expression": "tags has \"vip\" and\n  colour = \"red\"" })).await;
        let e = invalid_field(r, "expression").await;
        assert_eq!((e["error"]["details"]["line"].as_u64(), e["error"]["details"]["column"].as_u64()), (Some(2), Some(3)));
        assert!(e["error"]["message"].as_str().unwrap().starts_with("expression: unknown field"), "{e}");
        assert_eq!(counts(&app).await, before);
    }

    async fn hostile_strings_are_data_in_segments_and_searches(app) {
        let admin = app.login("admin").await;
        let names = ["O'Brien", "x' OR 1=1 --", "Robert'); DROP TABLE contacts;--", "50% off", "a_b", "\"quoted\"", "back\\slash", "$1 ?"];
        let mut ids = Vec::new();
        for n in names {
            ids.push(id_of(&new_contact(&app, &admin, json!({ "first_name": "T", "last_name": n, "tags": [n] })).await));
        }
        for (i, n) in names.iter().enumerate() {
            let lit = n.replace('\\', "\\\\").replace('"', "\\\"");
            assert_eq!(matches(&app, &admin, &format!("last_name = \"{lit}\"")).await, set(&[&ids[i]]), "{n}");
            assert_eq!(matches(&app, &admin, &format!("tags has \"{lit}\"")).await, set(&[&ids[i]]), "{n}");
            assert_eq!(found(&app, &admin, &format!("tag={}", enc(n))).await, set(&[&ids[i]]), "{n}");
            assert_eq!(found(&app, &admin, &format!("q={}", enc(&n.to_lowercase()))).await, set(&[&ids[i]]), "{n}");
        }
        // Single quotes work as string delimiters too.
        assert_eq!(matches(&app, &admin, r#"last_name = 'O\'Brien'"#).await, set(&[&ids[0]]));
        assert_eq!(matches(&app, &admin, r#"name contains "%""#).await, set(&[&ids[3]]));
        assert_eq!(matches(&app, &admin, r#"name contains "_""#).await, set(&[&ids[4]]));
        assert_eq!(matches(&app, &admin, r#"last_name starts_with "$1""#).await, set(&[&ids[7]]));
        assert_eq!(count_of(&app, &admin, "").await, names.len() as u64, "the table is intact");
        // A NUL in a search is refused, not a server error.
        invalid_field(app.get("/api/v1/contacts?q=a%00b", &admin).await, "q").await;
        invalid_field(app.get("/api/v1/contacts/count?tag=a%00b", &admin).await, "tag").await;
    }
}

// ---- consent, suppression, can-contact -----------------------------------------------

both_backends! {
    async fn the_contact_policy_is_read_by_all_and_set_by_admins(app) {
        let admin = app.login("admin").await;
        let agent = app.login("agent").await;
        let policy = json_ok(app.get("/api/v1/contact-policy", &agent).await, 200).await;
        assert_eq!(policy, json!({
            "require_opt_in": ["sms"],
            "voice_window": { "start": "08:00:00", "end": "21:00:00" },
            "sms_window": { "start": "08:00:00", "end": "21:00:00" },
            "fall_back_to_tenant_timezone": false,
        }));
        let put = |creds: Creds, body: Value| {
            let app = &app;
            async move { app.req(Method::PUT, "/api/v1/contact-policy", &creds).json(&body).send().await.unwrap() }
        };
        // Only admins change it.
        for who in ["marketer", "supervisor", "agent"] {
            let r = put(app.login(who).await, json!({})).await;
            expect_error(r, 403, "forbidden").await;
        }
        // Bad bodies: 422 with the field, nothing changed.
        for (body, path) in [
            (json!({ "voice_window": { "start": "09:00:00", "end": "09:00:00" } }), "voice_window"),
            (json!({ "sms_window": { "start": "25:00:00", "end": "09:00:00" } }), "sms_window.start"),
            (json!({ "require_opt_in": ["fax"] }), "require_opt_in[0]"),
            (json!({ "quiet_hours": true }), "quiet_hours"),
            (json!({ "fall_back_to_tenant_timezone": "yes" }), "fall_back_to_tenant_timezone"),
        ] {
            let r = put(admin.clone(), body.clone()).await;
            let e = expect_error(r, 422, "validation_failed").await;
            let paths: Vec<&str> = e["error"]["details"]["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
            assert!(paths.contains(&path), "{body} -> {e}");
        }
        assert_eq!(json_ok(app.get("/api/v1/contact-policy", &admin).await, 200).await, policy);
        // A change takes effect in decisions at once, and is audited.
        let c = id_of(&new_contact(&app, &admin, json!({ "first_name": "P", "phones": ["+49 30 1234567"] })).await);
        let late = "2026-11-25T21:30:00Z"; // 22:30 in Berlin
        assert_eq!(can_contact(&app, &admin, &c, "voice", late).await["allowed"], false);
        let new = json!({ "require_opt_in": [], "voice_window": { "start": "10:00:00", "end": "23:00:00" } });
        let set = json_ok(put(admin.clone(), new).await, 200).await;
        assert_eq!(set["voice_window"]["end"], "23:00:00");
        assert_eq!(set["sms_window"]["end"], "21:00:00", "unnamed fields take their defaults");
        assert_eq!(can_contact(&app, &admin, &c, "voice", late).await["allowed"], true);
        assert_eq!(can_contact(&app, &admin, &c, "sms", "2026-11-25T12:00:00Z").await["allowed"], true, "no opt-in needed now");
        let audit = json_ok(app.get("/api/v1/audit?action=contact_policy.changed", &admin).await, 200).await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
        // Another tenant's policy is its own.
        let other = app.api_key("other", "admin").await;
        assert_eq!(json_ok(app.get("/api/v1/contact-policy", &other).await, 200).await, policy);
    }
}

both_backends! {
    async fn can_contact_says_yes_or_no_and_why(app) {
        let admin = app.login("admin").await;
        let london = new_contact(&app, &admin, json!({ "first_name": "L", "phones": ["+44 20 7946 0958"], "emails": ["l@example.com"] })).await;
        let l = id_of(&london);
        assert_eq!(london["timezone"], "Europe/London");
        let noon = "2026-11-25T12:00:00Z";
        // Calls: allowed in the window, with the address used.
        let d = can_contact(&app, &admin, &l, "voice", noon).await;
        assert_eq!(d["allowed"], true, "{d}");
        assert_eq!(d["channel"], "voice");
        assert_eq!(d["address"], "+442079460958");
        assert_eq!(codes(&d), Vec::<String>::new());
        assert!(d["next_allowed_at"].is_null());
        // Outside the window: no, and when it opens (08:00 London).
        let d = can_contact(&app, &admin, &l, "voice", "2026-11-25T22:30:00Z").await;
        assert_eq!((d["allowed"].as_bool(), codes(&d)), (Some(false), vec!["outside_window".to_owned()]));
        assert_eq!(at(d["next_allowed_at"].as_str().unwrap()), at("2026-11-26T08:00:00Z"));
        assert!(d["reasons"][0]["message"].as_str().unwrap().contains("Europe/London"), "{d}");
        let d = can_contact(&app, &admin, &l, "voice", "2026-11-25T07:59:00Z").await;
        assert_eq!(at(d["next_allowed_at"].as_str().unwrap()), at("2026-11-25T08:00:00Z"));
        assert_eq!(can_contact(&app, &admin, &l, "voice", "2026-11-25T08:00:00Z").await["allowed"], true);
        assert_eq!(can_contact(&app, &admin, &l, "voice", "2026-11-25T20:59:00Z").await["allowed"], true);
        assert_eq!(can_contact(&app, &admin, &l, "voice", "2026-11-25T21:00:00Z").await["allowed"], false);
        // Summer time: 07:30 UTC is 08:30 in London.
        assert_eq!(can_contact(&app, &admin, &l, "voice", "2026-07-01T07:30:00Z").await["allowed"], true);
        let d = can_contact(&app, &admin, &l, "voice", "2026-07-01T06:30:00Z").await;
        assert_eq!(at(d["next_allowed_at"].as_str().unwrap()), at("2026-07-01T07:00:00Z"));
        // Another offset in the `at` parameter means the same moment.
        assert_eq!(can_contact(&app, &admin, &l, "voice", "2026-11-25T13:00:00+01:00").await["allowed"], true);
        // Texts need an opt-in by default; email has no window.
        let d = can_contact(&app, &admin, &l, "sms", noon).await;
        assert_eq!(codes(&d), vec!["no_opt_in"]);
        assert!(d["next_allowed_at"].is_null());
        let d = can_contact(&app, &admin, &l, "email", "2026-11-25T03:00:00Z").await;
        assert_eq!((d["allowed"].as_bool(), d["address"].as_str()), (Some(true), Some("l@example.com")));
        // An opt-in opens texts (in the window only).
        let r = app.post(&format!("/api/v1/contacts/{l}/consent"), &admin, &json!({ "channel": "sms", "status": "opted_in", "source": "web form" })).await;
        json_ok(r, 200).await;
        assert_eq!(can_contact(&app, &admin, &l, "sms", noon).await["allowed"], true);
        assert_eq!(codes(&can_contact(&app, &admin, &l, "sms", "2026-11-25T23:00:00Z").await), vec!["outside_window"]);
        // An opt-out closes a channel.
        let r = app.post(&format!("/api/v1/contacts/{l}/consent"), &admin, &json!({ "channel": "email", "status": "opted_out" })).await;
        json_ok(r, 200).await;
        assert_eq!(codes(&can_contact(&app, &admin, &l, "email", noon).await), vec!["opted_out"]);

        // No zone (Idaho's 208 spans two): calls cannot be timed.
        let us = id_of(&new_contact(&app, &admin, json!({ "first_name": "U", "phones": ["(208) 300-1234"] })).await);
        assert_eq!(codes(&can_contact(&app, &admin, &us, "voice", noon).await), vec!["timezone_unknown"]);
        let r = app.patch(&format!("/api/v1/contacts/{us}"), &admin, &json!({ "timezone": "America/Chicago" })).await;
        json_ok(r, 200).await;
        let d = can_contact(&app, &admin, &us, "voice", "2026-11-25T13:30:00Z").await;
        assert_eq!(codes(&d), vec!["outside_window"]);
        assert_eq!(at(d["next_allowed_at"].as_str().unwrap()), at("2026-11-25T14:00:00Z"));
        assert_eq!(can_contact(&app, &admin, &us, "voice", "2026-11-25T15:00:00Z").await["allowed"], true);
        // No address for the channel.
        let mail_only = id_of(&new_contact(&app, &admin, json!({ "emails": ["m@example.com"] })).await);
        let d = can_contact(&app, &admin, &mail_only, "voice", noon).await;
        assert_eq!(codes(&d), vec!["no_address", "timezone_unknown"]);
        assert!(d["address"].is_null());
        let phone_only = id_of(&new_contact(&app, &admin, json!({ "phones": ["+49 30 1234567"] })).await);
        assert_eq!(codes(&can_contact(&app, &admin, &phone_only, "email", noon).await), vec!["no_address"]);

        // The do-not-call list covers calls and texts.
        let r = app.post("/api/v1/suppressions", &admin, &json!({ "channel": "phone", "address": "+44-20-7946-0958", "reason": "do_not_call" })).await;
        let dnc = json_ok(r, 201).await;
        assert_eq!((dnc["channel"].as_str(), dnc["address"].as_str(), dnc["reason"].as_str()), (Some("phone"), Some("+442079460958"), Some("do_not_call")));
        for ch in ["voice", "sms"] {
            let d = can_contact(&app, &admin, &l, ch, noon).await;
            assert_eq!(codes(&d), vec!["suppressed"], "{ch}");
            assert!(d["reasons"][0]["message"].as_str().unwrap().contains("do_not_call"), "{d}");
        }
        // Every reason is listed, and no reopening time when hours are not the only problem.
        let d = can_contact(&app, &admin, &l, "voice", "2026-11-25T23:00:00Z").await;
        assert_eq!(codes(&d), vec!["suppressed", "outside_window"]);
        assert!(d["next_allowed_at"].is_null());
        // Taking it off the list opens calls again.
        let r = app.delete(&format!("/api/v1/suppressions/{}", dnc["id"]), &admin).await;
        assert_eq!(r.status(), 204);
        assert_eq!(can_contact(&app, &admin, &l, "voice", noon).await["allowed"], true);
        // A voice-only suppression leaves texts alone.
        let r = app.post("/api/v1/suppressions", &admin, &json!({ "channel": "voice", "address": "208-300-1234", "reason": "manual", "detail": "asked on a call" })).await;
        json_ok(r, 201).await;
        assert_eq!(codes(&can_contact(&app, &admin, &us, "voice", "2026-11-25T15:00:00Z").await), vec!["suppressed"]);
        assert_eq!(codes(&can_contact(&app, &admin, &us, "sms", "2026-11-25T15:00:00Z").await), vec!["no_opt_in"]);
        // Bounces and complaints stop email.
        let bounced = id_of(&new_contact(&app, &admin, json!({ "emails": ["Bounce@Example.com"] })).await);
        let complained = id_of(&new_contact(&app, &admin, json!({ "emails": ["spam@example.com"] })).await);
        json_ok(app.post("/api/v1/suppressions", &admin, &json!({ "channel": "email", "address": "BOUNCE@example.COM", "reason": "bounce" })).await, 201).await;
        json_ok(app.post("/api/v1/suppressions", &admin, &json!({ "channel": "email", "address": "spam@example.com", "reason": "complaint" })).await, 201).await;
        for (id, why) in [(&bounced, "bounce"), (&complained, "complaint")] {
            let d = can_contact(&app, &admin, id, "email", noon).await;
            assert_eq!(codes(&d), vec!["suppressed"]);
            assert!(d["reasons"][0]["message"].as_str().unwrap().contains(why), "{d}");
        }
        // The tenant's policy: its own zone stands in, and no opt-in needed.
        set_policy(&app, "demo", json!({ "fall_back_to_tenant_timezone": true, "require_opt_in": [] })).await;
        let nobody = id_of(&new_contact(&app, &admin, json!({ "phones": ["+1 208 300 1235"] })).await);
        let d = can_contact(&app, &admin, &nobody, "voice", "2026-11-25T12:30:00Z").await;
        assert_eq!(codes(&d), vec!["outside_window"], "07:30 in New York, the tenant's zone");
        assert!(d["reasons"][0]["message"].as_str().unwrap().contains("America/New_York"), "{d}");
        assert_eq!(can_contact(&app, &admin, &nobody, "voice", "2026-11-25T14:00:00Z").await["allowed"], true);
        assert_eq!(can_contact(&app, &admin, &nobody, "sms", "2026-11-25T14:00:00Z").await["allowed"], true);
        // Custom windows, across midnight.
        set_policy(&app, "demo", json!({ "voice_window": { "start": "22:00:00", "end": "02:00:00" } })).await;
        assert_eq!(can_contact(&app, &admin, &l, "voice", "2026-11-25T23:30:00Z").await["allowed"], true);
        assert_eq!(can_contact(&app, &admin, &l, "voice", "2026-11-26T01:30:00Z").await["allowed"], true);
        assert_eq!(codes(&can_contact(&app, &admin, &l, "voice", noon).await), vec!["outside_window"]);
        assert_eq!(codes(&can_contact(&app, &admin, &nobody, "voice", noon).await), vec!["timezone_unknown"]);
        // Every role may ask (agents before dialling).
        let agent = app.login("agent").await;
        assert_eq!(can_contact(&app, &agent, &us, "sms", noon).await["channel"], "sms");
        // Another tenant's contact does not exist here.
        let other = app.api_key("other", "admin").await;
        expect_error(app.get(&format!("/api/v1/contacts/{l}/can-contact?channel=voice"), &other).await, 404, "not_found").await;
    }

    async fn consent_changes_are_recorded_with_their_history(app) {
        let admin = app.login("admin").await;
        let agent = app.login("agent").await;
        let key = app.api_key("demo", "marketer").await;
        let c = id_of(&new_contact(&app, &admin, json!({ "first_name": "Hist", "phones": ["+44 20 7946 0958"], "emails": ["h@example.com"] })).await);
        let before = counts(&app).await;
        // Opt-in with a source and a detail (a person, by session).
        let r = app.post(&format!("/api/v1/contacts/{c}/consent"), &admin, &json!({ "channel": "sms", "status": "opted_in", "source": "web form", "detail": "signup page v2" })).await;
        let v = json_ok(r, 200).await;
        assert_eq!(v["consent"]["sms"]["status"], "opted_in");
        assert_eq!(v["consent"]["sms"]["source"], "web form");
        assert_eq!(v["consent"]["sms"]["detail"], "signup page v2");
        let t1 = at(v["consent"]["sms"]["recorded_at"].as_str().unwrap());
        assert!((chrono::Utc::now() - t1).num_seconds().abs() < 60);
        // By the API, without a source: `api`.
        let r = app.post(&format!("/api/v1/contacts/{c}/consent"), &key, &json!({ "channel": "sms", "status": "opted_out" })).await;
        let v = json_ok(r, 200).await;
        assert_eq!((v["consent"]["sms"]["status"].as_str(), v["consent"]["sms"]["source"].as_str()), (Some("opted_out"), Some("api")));
        assert!(v["consent"]["sms"]["detail"].is_null(), "the old detail does not linger: {v}");
        // By an agent, on a call: `agent`.
        let r = app.post(&format!("/api/v1/contacts/{c}/consent"), &agent, &json!({ "channel": "voice", "status": "opted_out", "detail": "asked not to be called" })).await;
        let v = json_ok(r, 200).await;
        assert_eq!((v["consent"]["voice"]["status"].as_str(), v["consent"]["voice"]["source"].as_str()), (Some("opted_out"), Some("agent")));
        assert_eq!(v["consent"]["sms"]["status"], "opted_out", "one channel's change leaves the others");
        assert!(v["consent"].get("email").is_none());
        // Another person: `user`.
        let sup = app.login("supervisor").await;
        let r = app.post(&format!("/api/v1/contacts/{c}/consent"), &sup, &json!({ "channel": "email", "status": "opted_in" })).await;
        assert_eq!(json_ok(r, 200).await["consent"]["email"]["source"], "user");
        let after = counts(&app).await;
        assert_eq!(after["consents"], before["consents"] + 3, "one current state per channel");
        assert_eq!(after["consent_events"], before["consent_events"] + 4, "every change kept");

        let h = json_ok(app.get(&format!("/api/v1/contacts/{c}/consent-history"), &agent).await, 200).await;
        let h = h.as_array().unwrap();
        let rows: Vec<(&str, &str, &str)> = h.iter().map(|e| (e["channel"].as_str().unwrap(), e["status"].as_str().unwrap(), e["source"].as_str().unwrap())).collect();
        assert_eq!(rows, vec![("email", "opted_in", "user"), ("voice", "opted_out", "agent"), ("sms", "opted_out", "api"), ("sms", "opted_in", "web form")], "newest first");
        assert!(h[0]["actor"].as_str().unwrap().starts_with("user:"), "{h:?}");
        assert!(h[2]["actor"].as_str().unwrap().starts_with("api_key:"), "{h:?}");
        assert_eq!(h[1]["detail"], "asked not to be called");
        assert_eq!(h[3]["detail"], "signup page v2");
        let times: Vec<chrono::DateTime<chrono::Utc>> = h.iter().map(|e| at(e["recorded_at"].as_str().unwrap())).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        // Consent of an unknown contact: 404, nothing written.
        let r = app.post(&format!("/api/v1/contacts/{}/consent", uuid::Uuid::now_v7()), &admin, &json!({ "channel": "sms", "status": "opted_in" })).await;
        expect_error(r, 404, "not_found").await;
        assert_eq!(counts(&app).await, after);
        // The history outlives the contact (kept for proof), but is not shown for it.
        assert_eq!(app.delete(&format!("/api/v1/contacts/{c}"), &admin).await.status(), 204);
        assert_eq!(counts(&app).await["consent_events"], after["consent_events"]);
        expect_error(app.get(&format!("/api/v1/contacts/{c}/consent-history"), &admin).await, 404, "not_found").await;
    }

    async fn inbound_stop_texts_opt_people_out(app) {
        let admin = app.login("admin").await;
        let key = app.api_key("demo", "supervisor").await;
        let s1 = id_of(&new_contact(&app, &admin, json!({ "first_name": "S1", "phones": ["(201) 555-0123"], "timezone": "America/New_York" })).await);
        let s2 = id_of(&new_contact(&app, &admin, json!({ "first_name": "S2", "phones": ["+49 30 1234567", "+1 201 555 0123"] })).await);
        let bystander = id_of(&new_contact(&app, &admin, json!({ "first_name": "B", "phones": ["(201) 555-0124"], "timezone": "America/New_York" })).await);
        for id in [&s1, &s2, &bystander] {
            json_ok(app.post(&format!("/api/v1/contacts/{id}/consent"), &admin, &json!({ "channel": "sms", "status": "opted_in" })).await, 200).await;
        }
        // The other tenant has a contact with the same number.
        let other = app.api_key("other", "admin").await;
        let theirs = id_of(&new_contact(&app, &other, json!({ "phones": ["(201) 555-0123"] })).await);
        let noon_ny = "2026-11-25T17:00:00Z";
        assert_eq!(can_contact(&app, &admin, &s1, "sms", noon_ny).await["allowed"], true);

        // Words that are no keyword change nothing.
        let before = counts(&app).await;
        for text in ["please stop texting me", "stopping by later", "", "STOP!!!x", "hello"] {
            let r = inbound(&app, &key, "201-555-0123", text).await;
            assert_eq!(r, json!({ "action": "none", "contacts": [] }), "{text:?}");
        }
        assert_eq!(counts(&app).await, before);

        // STOP, from the number written any way: everybody with it is opted out.
        let r = inbound(&app, &key, "(201) 555 0123", " Stop. ").await;
        assert_eq!(r["action"], "opted_out");
        let touched: BTreeSet<String> = r["contacts"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert_eq!(touched, set(&[&s1, &s2]));
        for id in [&s1, &s2] {
            let c = get_contact(&app, &admin, id).await;
            assert_eq!(c["consent"]["sms"]["status"], "opted_out");
            assert_eq!(c["consent"]["sms"]["source"], "sms_keyword");
        }
        assert_eq!(get_contact(&app, &admin, &bystander).await["consent"]["sms"]["status"], "opted_in");
        assert_eq!(get_contact(&app, &other, &theirs).await["consent"], json!({}), "other tenants are untouched");
        // The number is suppressed for texts (not calls).
        let s = suppressions(&app, &admin, "channel=sms").await;
        assert_eq!(s.len(), 1);
        assert_eq!((s[0]["address"].as_str(), s[0]["reason"].as_str(), s[0]["source"].as_str()), (Some("+12015550123"), Some("stop"), Some("sms_keyword")));
        assert_eq!(codes(&can_contact(&app, &admin, &s1, "sms", noon_ny).await), vec!["suppressed", "opted_out"]);
        assert_eq!(can_contact(&app, &admin, &s1, "voice", noon_ny).await["allowed"], true);
        let h = json_ok(app.get(&format!("/api/v1/contacts/{s1}/consent-history"), &admin).await, 200).await;
        assert_eq!((h[0]["status"].as_str(), h[0]["source"].as_str()), (Some("opted_out"), Some("sms_keyword")));
        // Again: idempotent.
        inbound(&app, &key, "+12015550123", "STOP").await;
        assert_eq!(suppressions(&app, &admin, "channel=sms").await.len(), 1);

        // START opts back in and lifts the STOP suppression.
        let r = inbound(&app, &key, "+1 201 555 0123", "start").await;
        assert_eq!(r["action"], "opted_in");
        assert_eq!(get_contact(&app, &admin, &s1).await["consent"]["sms"]["status"], "opted_in");
        assert!(suppressions(&app, &admin, "channel=sms").await.is_empty());
        assert_eq!(can_contact(&app, &admin, &s1, "sms", noon_ny).await["allowed"], true);
        // ... but not a do-not-call entry added by a person.
        json_ok(app.post("/api/v1/suppressions", &admin, &json!({ "channel": "sms", "address": "(201) 555-0124", "reason": "manual" })).await, 201).await;
        inbound(&app, &key, "(201) 555-0124", "UNSTOP").await;
        assert_eq!(codes(&can_contact(&app, &admin, &bystander, "sms", noon_ny).await), vec!["suppressed"]);

        // Every keyword of the carriers.
        for (word, action) in [("STOPALL", "opted_out"), ("yes", "opted_in"), ("Unsubscribe", "opted_out"), ("SUBSCRIBE", "opted_in"), ("cancel", "opted_out"), ("OPTIN", "opted_in"), ("end", "opted_out"), ("opt in", "opted_in"), ("QUIT", "opted_out"), ("Start!", "opted_in"), ("opt out", "opted_out")] {
            let r = inbound(&app, &key, "201 555 0123", word).await;
            assert_eq!(r["action"], action, "{word}");
            assert_eq!(get_contact(&app, &admin, &s1).await["consent"]["sms"]["status"], action, "{word}");
        }
        // STOP from a number nobody has: remembered for whoever gets it later.
        let r = inbound(&app, &key, "(201) 555-0177", "STOP").await;
        assert_eq!(r, json!({ "action": "opted_out", "contacts": [] }));
        let later = id_of(&new_contact(&app, &admin, json!({ "phones": ["201-555-0177"], "timezone": "America/New_York" })).await);
        json_ok(app.post(&format!("/api/v1/contacts/{later}/consent"), &admin, &json!({ "channel": "sms", "status": "opted_in" })).await, 200).await;
        assert_eq!(codes(&can_contact(&app, &admin, &later, "sms", noon_ny).await), vec!["suppressed"]);

        // Bad reports.
        let before = counts(&app).await;
        invalid_field(app.post("/api/v1/consent/inbound-sms", &key, &json!({ "from": "hello", "text": "STOP" })).await, "from").await;
        invalid_field(app.post("/api/v1/consent/inbound-sms", &key, &json!({ "from": "", "text": "STOP" })).await, "from").await;
        invalid_field(app.post("/api/v1/consent/inbound-sms", &key, &json!({ "from": "201-555-0123", "text": "s".repeat(1601) })).await, "text").await;
        invalid_field(app.post("/api/v1/consent/inbound-sms", &key, &json!({ "from": "201-555-0123" })).await, "text").await;
        invalid_field(app.post("/api/v1/consent/inbound-sms", &key, &json!({ "from": 2015550123u64, "text": "STOP" })).await, "from").await;
        assert_eq!(counts(&app).await, before);
        // Who may report texts: integrations acting for admins, supervisors and marketers; not agents.
        let marketer = app.api_key("demo", "marketer").await;
        assert_eq!(inbound(&app, &marketer, "201-555-0123", "hi").await["action"], "none");
        let agent = app.login("agent").await;
        expect_error(app.post("/api/v1/consent/inbound-sms", &agent, &json!({ "from": "201-555-0123", "text": "STOP" })).await, 403, "forbidden").await;
        assert_eq!(counts(&app).await, before);
    }

    async fn unsubscribe_links_opt_out_after_confirmation(app) {
        let marketer = app.login("marketer").await;
        let c = id_of(&new_contact(&app, &marketer, json!({ "first_name": "U", "emails": ["u@example.com", "u2@example.com"], "phones": ["+44 20 7946 0958"] })).await);
        json_ok(app.post(&format!("/api/v1/contacts/{c}/consent"), &marketer, &json!({ "channel": "email", "status": "opted_in" })).await, 200).await;
        let link = json_ok(app.get(&format!("/api/v1/contacts/{c}/unsubscribe-link?channel=email"), &marketer).await, 200).await;
        let url = link["url"].as_str().unwrap();
        let prefix = format!("{}/u/", app.base);
        assert!(url.starts_with(&prefix), "{url}");
        let token = &url[prefix.len()..];
        assert!(!token.contains(&c) && !token.contains('/'), "the token hides the contact: {token}");
        // Tokens are personal: another link for another channel differs.
        let sms_link = json_ok(app.get(&format!("/api/v1/contacts/{c}/unsubscribe-link?channel=sms"), &marketer).await, 200).await;
        assert_ne!(sms_link["url"], link["url"]);

        // A GET only asks (mail scanners follow links).
        let before = counts(&app).await;
        let r = app.client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let page = r.text().await.unwrap();
        assert!(page.contains("<form method=\"post\"") && page.contains("emails"), "{page}");
        assert_eq!(counts(&app).await, before);
        assert_eq!(get_contact(&app, &marketer, &c).await["consent"]["email"]["status"], "opted_in");
        // The POST unsubscribes, without signing in.
        let r = app.client.post(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("unsubscribed"));
        let card = get_contact(&app, &marketer, &c).await;
        assert_eq!((card["consent"]["email"]["status"].as_str(), card["consent"]["email"]["source"].as_str()), (Some("opted_out"), Some("unsubscribe_link")));
        assert!(card["consent"].get("sms").is_none(), "only that channel");
        let s = suppressions(&app, &marketer, "channel=email").await;
        let addrs: BTreeSet<&str> = s.iter().map(|x| x["address"].as_str().unwrap()).collect();
        assert_eq!(addrs, BTreeSet::from(["u@example.com", "u2@example.com"]));
        assert!(s.iter().all(|x| x["reason"] == "unsubscribe"));
        assert_eq!(codes(&can_contact(&app, &marketer, &c, "email", "2026-11-25T12:00:00Z").await), vec!["suppressed", "opted_out"]);
        // Twice is fine.
        assert_eq!(app.client.post(url).send().await.unwrap().status(), 200);
        assert_eq!(suppressions(&app, &marketer, "channel=email").await.len(), 2);
        // An SMS link opts out of texts.
        let sms_url = sms_link["url"].as_str().unwrap();
        let page = app.client.get(sms_url).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("text messages"), "{page}");
        assert_eq!(app.client.post(sms_url).send().await.unwrap().status(), 200);
        assert_eq!(get_contact(&app, &marketer, &c).await["consent"]["sms"]["status"], "opted_out");
        // Forged, altered or foreign tokens do nothing.
        let before = counts(&app).await;
        let mut altered = token.to_owned();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        for bad in [altered.as_str(), "garbage", &"A".repeat(600), "..%2F..%2Fapi"] {
            let u = format!("{prefix}{bad}");
            assert_eq!(app.client.get(&u).send().await.unwrap().status(), 404, "{bad}");
            assert_eq!(app.client.post(&u).send().await.unwrap().status(), 404, "{bad}");
        }
        assert_eq!(counts(&app).await, before);
        // A link for a contact since deleted still answers kindly.
        let gone = id_of(&new_contact(&app, &marketer, json!({ "emails": ["gone@example.com"] })).await);
        let gone_link = json_ok(app.get(&format!("/api/v1/contacts/{gone}/unsubscribe-link?channel=email"), &marketer).await, 200).await;
        assert_eq!(app.delete(&format!("/api/v1/contacts/{gone}"), &marketer).await.status(), 204);
        assert_eq!(app.client.post(gone_link["url"].as_str().unwrap()).send().await.unwrap().status(), 200);
        // Links for unknown contacts or channels cannot be made.
        expect_error(app.get(&format!("/api/v1/contacts/{}/unsubscribe-link?channel=email", uuid::Uuid::now_v7()), &marketer).await, 404, "not_found").await;
        invalid_field(app.get(&format!("/api/v1/contacts/{c}/unsubscribe-link?channel=fax"), &marketer).await, "query").await;
        let other = app.api_key("other", "marketer").await;
        expect_error(app.get(&format!("/api/v1/contacts/{c}/unsubscribe-link?channel=email"), &other).await, 404, "not_found").await;
    }

    async fn suppressions_are_kept_listed_and_imported(app) {
        let marketer = app.login("marketer").await;
        let admin = app.login("admin").await;
        // Added in any format, stored normalised; the same address twice is one entry.
        let r = app.post("/api/v1/suppressions", &marketer, &json!({ "channel": "phone", "address": "(201) 555-0123", "reason": "do_not_call", "detail": "state list" })).await;
        let first = json_ok(r, 201).await;
        assert_eq!((first["address"].as_str(), first["source"].as_str(), first["detail"].as_str()), (Some("+12015550123"), Some("api"), Some("state list")));
        let r = app.post("/api/v1/suppressions", &marketer, &json!({ "channel": "phone", "address": "+1 201 555 0123", "reason": "manual" })).await;
        let again = json_ok(r, 200).await;
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["reason"], "do_not_call", "the first reason stays");
        json_ok(app.post("/api/v1/suppressions", &marketer, &json!({ "channel": "email", "address": "X@Example.com", "reason": "bounce" })).await, 201).await;
        json_ok(app.post("/api/v1/suppressions", &marketer, &json!({ "channel": "sms", "address": "201-555-0123", "reason": "stop" })).await, 201).await;
        // Listed newest first, filtered by channel or by address in any format.
        let all = suppressions(&app, &marketer, "").await;
        let chans: Vec<&str> = all.iter().map(|s| s["channel"].as_str().unwrap()).collect();
        assert_eq!(chans, ["sms", "email", "phone"]);
        assert_eq!(suppressions(&app, &marketer, "channel=email").await[0]["address"], "x@example.com");
        let by_addr = suppressions(&app, &marketer, &format!("address={}", enc("201.555.0123"))).await;
        assert_eq!(by_addr.len(), 2);
        assert_eq!(suppressions(&app, &marketer, "address=x%40EXAMPLE.com").await.len(), 1);
        let p1 = json_ok(app.get("/api/v1/suppressions?limit=2", &marketer).await, 200).await;
        let cursor = p1["next_cursor"].as_str().unwrap();
        let p2 = json_ok(app.get(&format!("/api/v1/suppressions?limit=2&cursor={cursor}"), &marketer).await, 200).await;
        assert_eq!(p2["items"].as_array().unwrap().len(), 1);
        assert_eq!(p2["items"][0]["id"], first["id"]);
        // Bad entries.
        let before = counts(&app).await;
        for (body, path) in [
            (json!({ "channel": "fax", "address": "+12015550123", "reason": "manual" }), "channel"),
            (json!({ "channel": "phone", "address": "not a phone", "reason": "manual" }), "address"),
            (json!({ "channel": "email", "address": "not an email", "reason": "manual" }), "address"),
            (json!({ "channel": "email", "address": "+12015550123", "reason": "manual" }), "address"),
            (json!({ "channel": "phone", "address": "+12015550123", "reason": "because" }), "reason"),
            (json!({ "channel": "phone", "address": "+12015550123", "reason": "manual", "detail": "d".repeat(1001) }), "detail"),
            (json!({ "channel": "phone", "reason": "manual" }), "address"),
        ] {
            invalid_field(app.post("/api/v1/suppressions", &marketer, &body).await, path).await;
        }
        for (q, field) in [("channel=fax", "channel"), ("address=nonsense", "address"), ("limit=0", "limit"), ("cursor=zz", "cursor"), ("what=1", "query")] {
            invalid_field(app.get(&format!("/api/v1/suppressions?{q}"), &marketer).await, field).await;
        }
        assert_eq!(counts(&app).await, before);
        // Removal is audited; twice is 404.
        let id = first["id"].as_i64().unwrap();
        assert_eq!(app.delete(&format!("/api/v1/suppressions/{id}"), &marketer).await.status(), 204);
        expect_error(app.delete(&format!("/api/v1/suppressions/{id}"), &marketer).await, 404, "not_found").await;
        let audit = json_ok(app.get("/api/v1/audit?action=suppression.removed", &admin).await, 200).await;
        assert_eq!(audit["items"].as_array().unwrap().len(), 1);
        assert_eq!(audit["items"][0]["details"]["id"], id);

        // A do-not-call list imported from a file, via the API.
        let dnc = upload(&app, &marketer, "dnc.csv", "phone,name\n(201) 555-0150,Alice\n+49 30 7654321,Bob\nnot a number,Carol\n201.555.0150,Alice again\n\n+1 201 555 0151,Dan\n").await;
        let r = app.post("/api/v1/suppressions/imports", &marketer, &json!({ "upload_id": dnc, "channel": "phone", "has_header": true })).await;
        let job = json_ok(r, 202).await;
        assert_eq!(job["kind"], "suppression_import");
        let done = wait_for_job(&app, &marketer, &id_of(&job)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["result"]["failed"], 1, "{done}");
        assert_eq!(done["result"]["rows"], 5, "{done}");
        let imported: BTreeSet<String> = suppressions(&app, &marketer, "channel=phone").await.iter()
            .filter(|s| s["source"] == "import")
            .map(|s| { assert_eq!(s["reason"], "do_not_call"); s["address"].as_str().unwrap().to_owned() })
            .collect();
        assert_eq!(imported, set(&["+12015550150", "+49307654321", "+12015550151"]));
        let errors = json_ok(app.get(&format!("/api/v1/contacts/imports/{}/errors", id_of(&job)), &marketer).await, 200).await;
        assert_eq!(errors["items"].as_array().unwrap().len(), 1);
        assert_eq!(errors["items"][0]["row_number"], 3);
        assert!(errors["items"][0]["raw"].as_str().unwrap().contains("not a number"));
        // The imported numbers are off limits for calls and texts.
        let c = id_of(&new_contact(&app, &marketer, json!({ "phones": ["201-555-0151"], "timezone": "America/New_York" })).await);
        for ch in ["voice", "sms"] {
            assert!(codes(&can_contact(&app, &marketer, &c, ch, "2026-11-25T17:00:00Z").await).contains(&"suppressed".to_owned()), "{ch}");
        }
        // An email list, by its second column, without a header, with another reason.
        let mails = upload(&app, &marketer, "bounces.csv", "1,A@Example.com\n2,b@example.com\n3,broken@\n").await;
        let r = app.post("/api/v1/suppressions/imports", &marketer, &json!({ "upload_id": mails, "channel": "email", "column": 1, "reason": "complaint" })).await;
        let done = wait_for_job(&app, &marketer, &id_of(&json_ok(r, 202).await)).await;
        assert_eq!((done["status"].as_str(), done["result"]["failed"].as_u64()), (Some("succeeded"), Some(1)), "{done}");
        let complaints: BTreeSet<String> = suppressions(&app, &marketer, "channel=email").await.iter()
            .filter(|s| s["reason"] == "complaint").map(|s| s["address"].as_str().unwrap().to_owned()).collect();
        assert_eq!(complaints, set(&["a@example.com", "b@example.com"]));
        // Bad import requests.
        let before = counts(&app).await;
        for (body, path) in [
            (json!({ "upload_id": dnc, "channel": "fax" }), "channel"),
            (json!({ "upload_id": dnc, "channel": "phone", "column": 1001 }), "column"),
            (json!({ "upload_id": dnc, "channel": "phone", "column": -1 }), "column"),
            (json!({ "upload_id": dnc, "channel": "phone", "reason": "because" }), "reason"),
            (json!({ "upload_id": "nope", "channel": "phone" }), "upload_id"),
            (json!({ "channel": "phone" }), "upload_id"),
        ] {
            invalid_field(app.post("/api/v1/suppressions/imports", &marketer, &body).await, path).await;
        }
        let r = app.post("/api/v1/suppressions/imports", &marketer, &json!({ "upload_id": uuid::Uuid::now_v7(), "channel": "phone" })).await;
        expect_error(r, 404, "not_found").await;
        let agent = app.login("agent").await;
        expect_error(app.post("/api/v1/suppressions/imports", &agent, &json!({ "upload_id": dnc, "channel": "phone" })).await, 403, "forbidden").await;
        assert_eq!(counts(&app).await, before);
        // Another tenant's suppressions neither show nor count here, nor its uploads.
        let other = app.api_key("other", "marketer").await;
        assert!(suppressions(&app, &other, "").await.is_empty());
        expect_error(app.post("/api/v1/suppressions/imports", &other, &json!({ "upload_id": dnc, "channel": "phone" })).await, 404, "not_found").await;
        let r = app.delete(&format!("/api/v1/suppressions/{}", all[0]["id"]), &other).await;
        expect_error(r, 404, "not_found").await;
        let r = app.post("/api/v1/suppressions", &other, &json!({ "channel": "phone", "address": "201-555-0199", "reason": "do_not_call" })).await;
        json_ok(r, 201).await;
        let mine = id_of(&new_contact(&app, &marketer, json!({ "phones": ["201-555-0199"], "timezone": "America/New_York" })).await);
        assert_eq!(can_contact(&app, &marketer, &mine, "voice", "2026-11-25T17:00:00Z").await["allowed"], true);
    }
}

// ---- tenant isolation ----------------------------------------------------------------------

both_backends! {
    async fn another_tenants_audience_never_shows(app) {
        let admin = app.login("admin").await;
        let other = app.api_key("other", "admin").await;
        let mine = id_of(&new_contact(&app, &admin, json!({ "first_name": "Mine", "phones": ["(201) 555-0123"], "tags": ["vip"], "emails": ["same@example.com"] })).await);
        let theirs = id_of(&new_contact(&app, &other, json!({ "first_name": "Theirs", "phones": ["(201) 555-0123"], "tags": ["vip"], "emails": ["same@example.com"] })).await);
        let their_list = new_list(&app, &other, "Secret").await;
        add_members(&app, &other, &their_list, &[&theirs]).await;
        let r = app.post("/api/v1/segments", &other, &json!({ "name": "Their VIPs", "expression": "tags has \"vip\"" })).await;
        let their_seg = id_of(&json_ok(r, 201).await);

        // Searches, counts and segments see only demo's.
        for q in ["", "q=201-555-0123", "q=same%40example.com", "tag=vip", "q=theirs"] {
            let ids = found(&app, &admin, q).await;
            assert!(!ids.contains(&theirs), "{q}");
            assert_eq!(count_of(&app, &admin, q).await, ids.len() as u64, "{q}");
        }
        assert_eq!(found(&app, &admin, "q=201-555-0123").await, set(&[&mine]));
        assert_eq!(matches(&app, &admin, "tags has \"vip\"").await, set(&[&mine]));
        assert_eq!(matches(&app, &admin, "phone = \"201-555-0123\"").await, set(&[&mine]));
        // Their list and segment by id: as if they did not exist.
        for path in [
            format!("/api/v1/lists/{their_list}"),
            format!("/api/v1/contacts?list_id={their_list}"),
            format!("/api/v1/contacts/count?list_id={their_list}"),
            format!("/api/v1/segments/{their_seg}"),
            format!("/api/v1/segments/{their_seg}/count"),
            format!("/api/v1/contacts?segment_id={their_seg}"),
            format!("/api/v1/contacts/{theirs}"),
            format!("/api/v1/contacts/{theirs}/consent-history"),
        ] {
            expect_error(app.get(&path, &admin).await, 404, "not_found").await;
        }
        // Naming their list in a segment: no such list here.
        let r = app.post("/api/v1/segments/preview", &admin, &json!({ "expression": "in_list \"Secret\"" })).await;
        invalid_field(r, "expression").await;
        // With a list of that name here too, only its members match.
        let my_list = new_list(&app, &admin, "Secret").await;
        assert_eq!(matches(&app, &admin, "in_list \"Secret\"").await, set(&[]));
        add_members(&app, &admin, &my_list, &[&mine]).await;
        assert_eq!(matches(&app, &admin, "in_list \"Secret\"").await, set(&[&mine]));
        assert_eq!(json_ok(app.get(&format!("/api/v1/lists/{their_list}"), &other).await, 200).await["members"], 1);
        // Their contacts cannot join demo's lists, nor demo's theirs.
        let before = counts(&app).await;
        expect_error(app.post(&format!("/api/v1/lists/{my_list}/members"), &admin, &json!({ "contact_ids": [theirs] })).await, 404, "not_found").await;
        expect_error(app.post(&format!("/api/v1/lists/{their_list}/members"), &admin, &json!({ "contact_ids": [mine] })).await, 404, "not_found").await;
        let r = app.post(&format!("/api/v1/lists/{their_list}/members/remove"), &admin, &json!({ "contact_ids": [theirs] })).await;
        expect_error(r, 404, "not_found").await;
        // Nor can demo change or delete any of theirs.
        expect_error(app.patch(&format!("/api/v1/lists/{their_list}"), &admin, &json!({ "name": "Mine now" })).await, 404, "not_found").await;
        expect_error(app.delete(&format!("/api/v1/lists/{their_list}"), &admin).await, 404, "not_found").await;
        expect_error(app.patch(&format!("/api/v1/segments/{their_seg}"), &admin, &json!({ "expression": "tags is set" })).await, 404, "not_found").await;
        expect_error(app.delete(&format!("/api/v1/segments/{their_seg}"), &admin).await, 404, "not_found").await;
        expect_error(app.patch(&format!("/api/v1/contacts/{theirs}"), &admin, &json!({ "first_name": "Hijacked" })).await, 404, "not_found").await;
        expect_error(app.delete(&format!("/api/v1/contacts/{theirs}"), &admin).await, 404, "not_found").await;
        let r = app.post(&format!("/api/v1/contacts/{theirs}/consent"), &admin, &json!({ "channel": "sms", "status": "opted_out" })).await;
        expect_error(r, 404, "not_found").await;
        assert_eq!(counts(&app).await, before);
        let t = get_contact(&app, &other, &theirs).await;
        assert_eq!((t["first_name"].as_str(), t["consent"].clone()), (Some("Theirs"), json!({})));
        assert_eq!(t["lists"][0]["name"], "Secret");
        // Their list names do not leak through the builder's catalogue.
        let fields = json_ok(app.get("/api/v1/segments/fields", &admin).await, 200).await;
        assert_eq!(fields["lists"], json!(["Secret"]));
        let r = app.post("/api/v1/lists", &admin, &json!({ "name": "Only theirs?" })).await;
        json_ok(r, 201).await;
        let theirs_fields = json_ok(app.get("/api/v1/segments/fields", &other).await, 200).await;
        assert_eq!(theirs_fields["lists"], json!(["Secret"]));
        let segs = json_ok(app.get("/api/v1/segments", &admin).await, 200).await;
        assert_eq!(segs["items"], json!([]));
    }
}

// ---- roles on audiences -----------------------------------------------------------------------

both_backends! {
    async fn only_audience_managers_change_audiences(app) {
        let admin = app.login("admin").await;
        let c = id_of(&new_contact(&app, &admin, json!({ "first_name": "R", "emails": ["r@example.com"] })).await);
        let list = new_list(&app, &admin, "Roles").await;
        add_members(&app, &admin, &list, &[&c]).await;
        let r = app.post("/api/v1/segments", &admin, &json!({ "name": "Roles", "expression": "tags is set" })).await;
        let seg = id_of(&json_ok(r, 201).await);
        let supp = json_ok(app.post("/api/v1/suppressions", &admin, &json!({ "channel": "email", "address": "z@example.com", "reason": "manual" })).await, 201).await;
        for who in ["agent", "supervisor", "marketer"] {
            let creds = app.login(who).await;
            // Reading and previewing is for everybody.
            json_ok(app.get(&format!("/api/v1/segments/{seg}/count"), &creds).await, 200).await;
            json_ok(app.post("/api/v1/segments/preview", &creds, &json!({ "expression": "tags is set" })).await, 200).await;
            json_ok(app.get(&format!("/api/v1/contacts?list_id={list}"), &creds).await, 200).await;
            let before = counts(&app).await;
            let writes = vec![
                app.patch(&format!("/api/v1/lists/{list}"), &creds, &json!({ "description": who })).await,
                app.post(&format!("/api/v1/lists/{list}/members/remove"), &creds, &json!({ "contact_ids": [c] })).await,
                app.patch(&format!("/api/v1/segments/{seg}"), &creds, &json!({ "description": who })).await,
                app.post("/api/v1/suppressions", &creds, &json!({ "channel": "email", "address": format!("{who}@example.com"), "reason": "manual" })).await,
                app.post("/api/v1/consent/inbound-sms", &creds, &json!({ "from": "201-555-0100", "text": "hello" })).await,
            ];
            if who == "agent" {
                for r in writes {
                    expect_error(r, 403, "forbidden").await;
                }
                assert_eq!(counts(&app).await, before, "an agent changed nothing");
                expect_error(app.delete(&format!("/api/v1/segments/{seg}"), &creds).await, 403, "forbidden").await;
                expect_error(app.delete(&format!("/api/v1/lists/{list}"), &creds).await, 403, "forbidden").await;
                expect_error(app.delete(&format!("/api/v1/suppressions/{}", supp["id"]), &creds).await, 403, "forbidden").await;
                expect_error(app.delete("/api/v1/contact-attributes/x", &creds).await, 403, "forbidden").await;
                let r = app.post("/api/v1/suppressions/imports", &creds, &json!({ "upload_id": uuid::Uuid::now_v7(), "channel": "phone" })).await;
                expect_error(r, 403, "forbidden").await;
            } else {
                for r in writes {
                    assert!(r.status().is_success(), "{who}: {}", r.status());
                }
                add_members(&app, &creds, &list, &[&c]).await;
            }
        }
        assert_eq!(json_ok(app.get(&format!("/api/v1/lists/{list}"), &admin).await, 200).await["members"], 1);
    }
}

// ---- bad input ------------------------------------------------------------------------------

both_backends! {
    async fn audience_endpoints_refuse_bad_bodies(app) {
        let admin = app.login("admin").await;
        let c = id_of(&new_contact(&app, &admin, json!({ "first_name": "Member" })).await);
        let list = new_list(&app, &admin, "Target").await;
        let r = app.post("/api/v1/segments", &admin, &json!({ "name": "Target", "expression": "tags is set" })).await;
        let seg = id_of(&json_ok(r, 201).await);
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/lists".into(),
            valid: json!({ "name": "Fresh", "description": "d" }),
            wrong: vec![(json!({ "name": 5 }), "name"), (json!({ "name": "x", "description": ["d"] }), "description"), (json!({}), "name")],
            string_field: "name",
            ok: 201,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::PATCH,
            path: format!("/api/v1/lists/{list}"),
            valid: json!({ "description": "changed" }),
            wrong: vec![(json!({ "name": true }), "name"), (json!({ "name": "" }), "name")],
            string_field: "description",
            ok: 200,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: format!("/api/v1/lists/{list}/members"),
            valid: json!({ "contact_ids": [c] }),
            wrong: vec![(json!({ "contact_ids": [5] }), "contact_ids[0]"), (json!({ "contact_ids": [] }), "contact_ids"), (json!({}), "contact_ids")],
            string_field: "contact_ids",
            ok: 200,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: format!("/api/v1/lists/{list}/members/remove"),
            valid: json!({ "contact_ids": [uuid::Uuid::now_v7()] }),
            wrong: vec![(json!({ "contact_ids": ["x"] }), "contact_ids[0]"), (json!({ "contact_ids": [] }), "contact_ids"), (json!({ "contact_ids": null }), "contact_ids")],
            string_field: "contact_ids",
            ok: 200,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/segments".into(),
            valid: json!({ "name": "Fresh", "expression": "tags has \"vip\"" }),
            wrong: vec![(json!({ "name": "x", "expression": ["tags"] }), "expression"), (json!({ "name": "x", "expression": "tags has" }), "expression")],
            string_field: "name",
            ok: 201,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::PATCH,
            path: format!("/api/v1/segments/{seg}"),
            valid: json!({ "description": "changed" }),
            wrong: vec![(json!({ "expression": 1 }), "expression"), (json!({ "expression": "nope" }), "expression")],
            string_field: "description",
            ok: 200,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/segments/preview".into(),
            valid: json!({ "expression": "tags is set" }),
            wrong: vec![(json!({ "expression": null }), "expression"), (json!({ "expression": "tags is" }), "expression")],
            string_field: "expression",
            ok: 200,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/suppressions".into(),
            valid: json!({ "channel": "email", "address": "ok@example.com", "reason": "bounce" }),
            wrong: vec![(json!({ "channel": 1, "address": "ok@example.com", "reason": "bounce" }), "channel"), (json!({ "channel": "email", "address": "ok@example.com", "reason": "Bounce" }), "reason")],
            string_field: "address",
            ok: 201,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/consent/inbound-sms".into(),
            valid: json!({ "from": "201-555-0123", "text": "hello" }),
            wrong: vec![(json!({ "from": "201-555-0123", "text": 5 }), "text"), (json!({ "from": "x", "text": "STOP" }), "from")],
            string_field: "text",
            ok: 200,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/suppressions/imports".into(),
            valid: json!({ "upload_id": upload(&app, &admin, "x.csv", "+12015550123\n").await, "channel": "phone" }),
            wrong: vec![(json!({ "upload_id": 1, "channel": "phone" }), "upload_id"), (json!({ "upload_id": uuid::Uuid::now_v7(), "channel": "phone", "has_header": "yes" }), "has_header")],
            string_field: "channel",
            ok: 202,
        }).await;
        let l = json_ok(app.get(&format!("/api/v1/lists/{list}"), &admin).await, 200).await;
        assert_eq!((l["name"].as_str(), l["description"].as_str(), l["members"].as_u64()), (Some("Target"), Some("changed"), Some(1)));
        // Path ids that are not ids: 404, nothing changed (once the import is done).
        eventually(60, "the import to finish", || async {
            let jobs = json_ok(app.get("/api/v1/jobs", &admin).await, 200).await;
            jobs["items"].as_array().unwrap().iter().all(|j| j["status"] == "succeeded").then_some(())
        }).await;
        let before = counts(&app).await;
        for bad in ["not-a-uuid", "1.5", "%27%20OR%201%3D1", "-1"] {
            for (m, path) in [
                (Method::GET, format!("/api/v1/lists/{bad}")),
                (Method::DELETE, format!("/api/v1/lists/{bad}")),
                (Method::POST, format!("/api/v1/lists/{bad}/members")),
                (Method::GET, format!("/api/v1/segments/{bad}")),
                (Method::GET, format!("/api/v1/segments/{bad}/count")),
                (Method::DELETE, format!("/api/v1/segments/{bad}")),
                (Method::DELETE, format!("/api/v1/suppressions/{bad}")),
                (Method::POST, format!("/api/v1/contacts/{bad}/consent")),
                (Method::GET, format!("/api/v1/contacts/{bad}/unsubscribe-link?channel=email")),
            ] {
                let mut rb = app.req(m.clone(), &path, &admin);
                if m == Method::POST {
                    rb = rb.json(&json!({ "contact_ids": [c], "channel": "sms", "status": "opted_in" }));
                }
                expect_error(rb.send().await.unwrap(), 404, "not_found").await;
            }
        }
        assert_eq!(counts(&app).await, before);
    }
}
