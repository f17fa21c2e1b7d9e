//! Contacts: create, read, change, delete; phone numbers in E.164 from any
//! format, emails, time zones (explicit or from the phone), typed custom
//! attributes, external ids as the upsert key, search (name, phone in any
//! format, email, tag), cursor pagination, the interaction history, who may
//! do what, and bad input on every contacts endpoint.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, Response};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use switchboard::contacts::entity::{
    attr, attr_def, consent, consent_event, contact, email, list, member, phone, segment,
    suppression, tag,
};

use crate::both_backends;
use crate::helpers::*;

// ---- helpers (shared with audience.rs) ---------------------------------------

pub(crate) fn uniq(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Row counts of every table a contacts endpoint could write, across all tenants.
pub(crate) async fn counts(app: &TestApp) -> BTreeMap<&'static str, u64> {
    let db = &app.state.db.conn;
    BTreeMap::from([
        ("contacts", contact::Entity::find().count(db).await.unwrap()),
        ("phones", phone::Entity::find().count(db).await.unwrap()),
        ("emails", email::Entity::find().count(db).await.unwrap()),
        ("tags", tag::Entity::find().count(db).await.unwrap()),
        ("attributes", attr::Entity::find().count(db).await.unwrap()),
        (
            "attribute_definitions",
            attr_def::Entity::find().count(db).await.unwrap(),
        ),
        ("lists", list::Entity::find().count(db).await.unwrap()),
        (
            "list_members",
            member::Entity::find().count(db).await.unwrap(),
        ),
        ("segments", segment::Entity::find().count(db).await.unwrap()),
        ("consents", consent::Entity::find().count(db).await.unwrap()),
        (
            "consent_events",
            consent_event::Entity::find().count(db).await.unwrap(),
        ),
        (
            "suppressions",
            suppression::Entity::find().count(db).await.unwrap(),
        ),
        (
            "jobs",
            switchboard::jobs::job::Entity::find()
                .count(db)
                .await
                .unwrap(),
        ),
    ])
}

pub(crate) fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// Creates a contact; returns it as the API shows it.
pub(crate) async fn new_contact(app: &TestApp, creds: &Creds, body: Value) -> Value {
    let r = app.post("/api/v1/contacts", creds, &body).await;
    json_ok(r, 201).await
}

pub(crate) async fn get_contact(app: &TestApp, creds: &Creds, id: &str) -> Value {
    json_ok(app.get(&format!("/api/v1/contacts/{id}"), creds).await, 200).await
}

pub(crate) async fn define_attribute(app: &TestApp, creds: &Creds, key: &str, kind: &str) {
    let r = app
        .post(
            "/api/v1/contact-attributes",
            creds,
            &json!({ "key": key, "kind": kind, "label": format!("The {key}") }),
        )
        .await;
    let body = json_ok(r, 201).await;
    assert_eq!(body["key"], key);
    assert_eq!(body["kind"], kind);
}

pub(crate) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Walks every page of `GET /contacts?<query>` (with `limit`), checking that
/// pages are not empty in the middle; returns the ids in page order.
pub(crate) async fn all_ids(app: &TestApp, creds: &Creds, query: &str, limit: u32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let sep = if query.is_empty() { "" } else { "&" };
        let mut path = format!("/api/v1/contacts?{query}{sep}limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = json_ok(app.get(&path, creds).await, 200).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit as usize, "{page}");
        ids.extend(items.iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(items.len(), limit as usize, "only the last page is short");
                cursor = Some(c.to_owned());
            }
            None => return ids,
        }
    }
    panic!("the pages never ended");
}

/// The ids of the contacts a search matches, as a set (one page of 200).
pub(crate) async fn found(app: &TestApp, creds: &Creds, query: &str) -> BTreeSet<String> {
    let page = json_ok(
        app.get(&format!("/api/v1/contacts?{query}&limit=200"), creds)
            .await,
        200,
    )
    .await;
    assert!(page["next_cursor"].is_null(), "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

pub(crate) async fn count_of(app: &TestApp, creds: &Creds, query: &str) -> u64 {
    json_ok(
        app.get(&format!("/api/v1/contacts/count?{query}"), creds)
            .await,
        200,
    )
    .await["count"]
        .as_u64()
        .unwrap()
}

pub(crate) fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

pub(crate) async fn put(app: &TestApp, path: &str, creds: &Creds, body: &Value) -> Response {
    app.req(Method::PUT, path, creds)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// A 422 naming `path` among its invalid fields; returns the body.
pub(crate) async fn invalid_field(r: Response, path: &str) -> Value {
    let body = expect_error(r, 422, "validation_failed").await;
    let fields = body["error"]["details"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("details.fields: {body}"));
    for f in fields {
        assert!(
            f["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // A missing field is reported on the body, by name.
    let missing = format!("missing field `{path}`");
    assert!(
        fields.iter().any(|f| f["path"] == path
            || (f["path"] == "body"
                && f["message"].as_str().is_some_and(|m| m.contains(&missing)))),
        "expected an error at {path}: {body}"
    );
    body
}

fn phones_of(c: &Value) -> Vec<String> {
    c["phones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_str().unwrap().to_owned())
        .collect()
}

// ---- create, read, change, delete --------------------------------------------

both_backends! {
    async fn a_contact_is_stored_normalised_and_read_back(app) {
        let admin = app.login("admin").await;
        let c = new_contact(&app, &admin, json!({
            "first_name": "  Ada ",
            "last_name": "Lovelace",
            "phones": ["(201) 555-0123", { "number": "+44 20 7946 0958", "label": "work" }, "201.555.0123"],
            "emails": [" Ada@Example.COM ", "ada@example.com", "ada.l@analytical.example"],
            "language": "en-GB",
            "tags": ["vip", " Gold ", "VIP"],
        })).await;
        let id = id_of(&c);
        assert_eq!(c["first_name"], "Ada", "names are trimmed");
        assert_eq!(c["last_name"], "Lovelace");
        assert_eq!(c["name"], "Ada Lovelace");
        // E.164 in the tenant's region (US); the same number twice is kept once.
        assert_eq!(phones_of(&c), ["+12015550123", "+442079460958"]);
        assert_eq!(c["phones"][0]["label"], Value::Null);
        assert_eq!(c["phones"][1]["label"], "work");
        // Emails lower-cased and trimmed, duplicates dropped, order kept.
        assert_eq!(c["emails"], json!(["ada@example.com", "ada.l@analytical.example"]));
        // Tags trimmed and lower-cased; the same tag in another case is one tag.
        assert_eq!(c["tags"], json!(["gold", "vip"]));
        assert_eq!(c["language"], "en-GB");
        assert_eq!(c["external_id"], Value::Null);
        assert_eq!(c["attributes"], json!({}));
        assert_eq!(c["consent"], json!({}));
        assert_eq!(c["created_at"], c["updated_at"]);

        // The card has the same, and the lists it is on.
        let mut card = get_contact(&app, &admin, &id).await;
        assert_eq!(card["lists"], json!([]));
        card.as_object_mut().unwrap().remove("lists");
        assert_eq!(card, c);

        // A change: only what is given changes; lists replace the old ones.
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({
            "last_name": "King",
            "phones": ["+1 201 555 0124"],
            "tags": [],
        })).await;
        let changed = json_ok(r, 200).await;
        assert_eq!(changed["name"], "Ada King");
        assert_eq!(phones_of(&changed), ["+12015550124"]);
        assert_eq!(changed["tags"], json!([]));
        assert_eq!(changed["emails"], c["emails"], "emails were not given, so they stay");
        assert_eq!(changed["language"], "en-GB");
        assert_eq!(changed["created_at"], c["created_at"]);
        assert_ne!(changed["updated_at"], c["updated_at"]);
        // `null` clears a nullable field; absent leaves it.
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "language": null })).await;
        let cleared = json_ok(r, 200).await;
        assert_eq!(cleared["language"], Value::Null);
        assert_eq!(cleared["name"], "Ada King");
        // An empty change is fine and changes nothing visible.
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({})).await;
        let same = json_ok(r, 200).await;
        assert_eq!(same["name"], cleared["name"]);
        assert_eq!(same["phones"], cleared["phones"]);

        // Delete: 204, then 404 everywhere, and its parts are gone.
        let before = counts(&app).await;
        let r = app.delete(&format!("/api/v1/contacts/{id}"), &admin).await;
        assert_eq!(r.status(), 204);
        let after = counts(&app).await;
        assert_eq!(after["contacts"], before["contacts"] - 1);
        assert_eq!(after["phones"], before["phones"] - 1);
        assert_eq!(after["emails"], before["emails"] - 2);
        for path in [
            format!("/api/v1/contacts/{id}"),
            format!("/api/v1/contacts/{id}/interactions"),
            format!("/api/v1/contacts/{id}/consent-history"),
            format!("/api/v1/contacts/{id}/can-contact?channel=voice"),
        ] {
            expect_error(app.get(&path, &admin).await, 404, "not_found").await;
        }
        expect_error(app.delete(&format!("/api/v1/contacts/{id}"), &admin).await, 404, "not_found").await;
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "first_name": "Ghost" })).await;
        expect_error(r, 404, "not_found").await;
        let unknown = uuid::Uuid::now_v7();
        expect_error(app.get(&format!("/api/v1/contacts/{unknown}"), &admin).await, 404, "not_found").await;
        assert_eq!(counts(&app).await, after);
    }

    async fn phones_are_read_in_the_tenant_region(app) {
        let admin = app.login("admin").await;
        // In the US a national number is a US number.
        let us = new_contact(&app, &admin, json!({ "first_name": "Local", "phones": ["(201) 555-0123"] })).await;
        assert_eq!(phones_of(&us), ["+12015550123"]);
        // Other formats of the same number.
        for raw in ["201-555-0123", "201.555.0123", "2015550123", "+1 (201) 555-0123", "1 201 555 0123", " +12015550123 "] {
            let c = new_contact(&app, &admin, json!({ "phones": [raw] })).await;
            assert_eq!(phones_of(&c), ["+12015550123"], "{raw}");
        }
        // International numbers are read as such in any region.
        let de = new_contact(&app, &admin, json!({ "phones": ["+49 30 1234567"] })).await;
        assert_eq!(phones_of(&de), ["+49301234567"]);
        // A British national number is no US number.
        let r = app.post("/api/v1/contacts", &admin, &json!({ "phones": ["020 7946 0958"] })).await;
        invalid_field(r, "phones[0]").await;

        // The tenant moves to the UK: national numbers are British now.
        let r = app.patch("/api/v1/tenant", &admin, &json!({ "default_region": "GB" })).await;
        json_ok(r, 200).await;
        let gb = new_contact(&app, &admin, json!({ "phones": ["020 7946 0958"] })).await;
        assert_eq!(phones_of(&gb), ["+442079460958"]);
        assert_eq!(gb["timezone"], "Europe/London");
        let c = new_contact(&app, &admin, json!({ "phones": ["(201) 555-0123"] })).await;
        assert_eq!(phones_of(&c), ["+442015550123"], "read as a London number in GB");
        let c = new_contact(&app, &admin, json!({ "phones": ["+1 201 555 0123"] })).await;
        assert_eq!(phones_of(&c), ["+12015550123"]);
    }

    async fn time_zones_are_explicit_or_come_from_an_unambiguous_phone(app) {
        let admin = app.login("admin").await;
        let tz = |c: &Value| (c["timezone"].as_str().map(str::to_owned), c["timezone_source"].as_str().map(str::to_owned));
        let some = |z: &str, s: &str| (Some(z.to_owned()), Some(s.to_owned()));
        // Countries with one zone give it.
        for (raw, zone) in [
            ("+44 20 7946 0958", "Europe/London"),
            ("+49 30 1234567", "Europe/Berlin"),
            ("+33 1 42 68 53 00", "Europe/Paris"),
            ("+81 3 1234 5678", "Asia/Tokyo"),
            // +1 numbers of single-zone countries of the North American plan.
            ("+1 876 927 1234", "America/Jamaica"),
            ("+1 787 722 1234", "America/Puerto_Rico"),
        ] {
            let c = new_contact(&app, &admin, json!({ "phones": [raw] })).await;
            assert_eq!(tz(&c), some(zone, "phone"), "{raw}");
        }
        // In countries with several zones, area codes of one zone give it.
        for (raw, zone) in [
            ("(201) 555-0123", "America/New_York"),
            ("+1 808 555 0100", "Pacific/Honolulu"),
            ("+1 312 555 0100", "America/Chicago"),
            ("+1 416 979 1234", "America/Toronto"),
            ("+61 2 9374 4000", "Australia/Sydney"),
        ] {
            let c = new_contact(&app, &admin, json!({ "phones": [raw] })).await;
            assert_eq!(tz(&c), some(zone, "phone"), "{raw}");
        }
        // Ranges that span zones give none (part of Idaho's 208), nor do
        // mobiles of countries with several zones.
        for raw in ["+1 208 300 1234", "+61 412 345 678", "+7 916 123 4567"] {
            let c = new_contact(&app, &admin, json!({ "phones": [raw] })).await;
            assert_eq!(tz(&c), (None, None), "{raw}");
        }
        // Phones that disagree give none.
        let c = new_contact(&app, &admin, json!({ "phones": ["+44 20 7946 0958", "+49 30 1234567"] })).await;
        assert_eq!(tz(&c), (None, None));
        // A phone whose zone is unknown makes the person's zone unknown too.
        let c = new_contact(&app, &admin, json!({ "phones": ["+1 208 300 1234", "+44 20 7946 0958"] })).await;
        assert_eq!(tz(&c), (None, None));
        // Two phones of one zone agree.
        let c = new_contact(&app, &admin, json!({ "phones": ["+49 30 1234567", "+49 30 7654321"] })).await;
        assert_eq!(tz(&c), some("Europe/Berlin", "phone"));

        // An explicit zone wins over the phone, and stays when the phones change.
        let c = new_contact(&app, &admin, json!({ "phones": ["+44 20 7946 0958"], "timezone": "Asia/Tokyo" })).await;
        assert_eq!(tz(&c), some("Asia/Tokyo", "explicit"));
        let id = id_of(&c);
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "phones": ["+49 30 1234567"] })).await;
        assert_eq!(tz(&json_ok(r, 200).await), some("Asia/Tokyo", "explicit"));
        // Clearing it lets the phone speak again.
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "timezone": null })).await;
        assert_eq!(tz(&json_ok(r, 200).await), some("Europe/Berlin", "phone"));
        // A derived zone follows the phones.
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "phones": ["+44 20 7946 0958"] })).await;
        assert_eq!(tz(&json_ok(r, 200).await), some("Europe/London", "phone"));
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "phones": ["(201) 555-0123"] })).await;
        assert_eq!(tz(&json_ok(r, 200).await), some("America/New_York", "phone"));
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "phones": ["(208) 300-1234"] })).await;
        assert_eq!(tz(&json_ok(r, 200).await), (None, None));
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "timezone": "America/Chicago" })).await;
        assert_eq!(tz(&json_ok(r, 200).await), some("America/Chicago", "explicit"));
        // A US contact with an explicit zone.
        let c = new_contact(&app, &admin, json!({ "phones": ["(201) 555-0123"], "timezone": "America/New_York" })).await;
        assert_eq!(tz(&c), some("America/New_York", "explicit"));
        // Not a zone: 422, nothing stored.
        let before = counts(&app).await;
        for bad in ["Mars/Olympus", "EST5", "", "america/chicago", "+05:00"] {
            let r = app.post("/api/v1/contacts", &admin, &json!({ "first_name": "Z", "timezone": bad })).await;
            invalid_field(r, "timezone").await;
        }
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "timezone": "Nowhere/Else" })).await;
        invalid_field(r, "timezone").await;
        assert_eq!(counts(&app).await, before);
        assert_eq!(tz(&get_contact(&app, &admin, &id).await), some("America/Chicago", "explicit"));
    }

    async fn emails_phones_and_names_are_validated(app) {
        let admin = app.login("admin").await;
        let before = counts(&app).await;
        let eleven: Vec<String> = (0..11).map(|i| format!("p{i}@example.com")).collect();
        let eleven_phones: Vec<String> = (0..11).map(|i| format!("+1 201 555 01{i:02}")).collect();
        let fifty_one: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        for (body, path) in [
            (json!({ "emails": ["not-an-email"] }), "emails[0]"),
            (json!({ "emails": ["ok@example.com", "two@@example.com"] }), "emails[1]"),
            (json!({ "emails": ["a b@example.com"] }), "emails[0]"),
            (json!({ "emails": ["@example.com"] }), "emails[0]"),
            (json!({ "emails": ["a@"] }), "emails[0]"),
            (json!({ "emails": ["a@-bad-.com"] }), "emails[0]"),
            (json!({ "emails": [format!("{}@example.com", "a".repeat(300))] }), "emails[0]"),
            (json!({ "emails": eleven }), "emails"),
            (json!({ "phones": ["hello"] }), "phones[0]"),
            (json!({ "phones": ["123"] }), "phones[0]"),
            (json!({ "phones": [""] }), "phones[0]"),
            (json!({ "phones": ["+1 201 555 0123", "+999 1234"] }), "phones[1]"),
            (json!({ "phones": ["9".repeat(50)] }), "phones[0]"),
            (json!({ "phones": eleven_phones }), "phones"),
            (json!({ "phones": [{ "number": "+1 201 555 0123", "label": "" }] }), "phones[0].label"),
            (json!({ "phones": [{ "number": "+1 201 555 0123", "label": "l".repeat(41) }] }), "phones[0].label"),
            (json!({ "phones": [{ "number": "+1 201 555 0123", "label": "a\nb" }] }), "phones[0].label"),
            (json!({ "first_name": "x".repeat(201) }), "first_name"),
            (json!({ "last_name": "bad\nname" }), "last_name"),
            (json!({ "first_name": "tab\there" }), "first_name"),
            (json!({ "first_name": "A", "language": "english language" }), "language"),
            (json!({ "first_name": "A", "language": "e" }), "language"),
            (json!({ "first_name": "A", "tags": [""] }), "tags[0]"),
            (json!({ "first_name": "A", "tags": ["ok", "t".repeat(65)] }), "tags[1]"),
            (json!({ "first_name": "A", "tags": ["bell\u{7}"] }), "tags[0]"),
            (json!({ "first_name": "A", "tags": fifty_one }), "tags"),
            (json!({ "external_id": "" }), "external_id"),
            (json!({ "external_id": "e".repeat(201) }), "external_id"),
            // Nothing to know the person by.
            (json!({}), "body"),
            (json!({ "first_name": "   ", "tags": ["vip"] }), "body"),
        ] {
            let r = app.post("/api/v1/contacts", &admin, &body).await;
            invalid_field(r, path).await;
        }
        // Several problems: all reported at once.
        let r = app.post("/api/v1/contacts", &admin, &json!({ "emails": ["nope"], "phones": ["nope"], "timezone": "nope" })).await;
        let e = invalid_field(r, "emails[0]").await;
        let paths: BTreeSet<&str> = e["error"]["details"]["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(paths, BTreeSet::from(["emails[0]", "phones[0]", "timezone"]));
        assert_eq!(counts(&app).await, before, "nothing was stored");

        // At the limits: accepted.
        let ten: Vec<String> = (0..10).map(|i| format!("p{i}@example.com")).collect();
        let ten_phones: Vec<String> = (0..10).map(|i| format!("+1 201 555 01{i:02}")).collect();
        let fifty: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
        let c = new_contact(&app, &admin, json!({
            "first_name": "é".repeat(200), "emails": ten, "phones": ten_phones, "tags": fifty,
            "external_id": "e".repeat(200), "language": "zh-Hant-TW",
        })).await;
        assert_eq!(c["emails"].as_array().unwrap().len(), 10);
        assert_eq!(c["phones"].as_array().unwrap().len(), 10);
        assert_eq!(c["tags"].as_array().unwrap().len(), 50);
        assert_eq!(c["first_name"].as_str().unwrap().chars().count(), 200);
        // Only a phone, only an email, only an external id: each enough.
        let only_phone = id_of(&new_contact(&app, &admin, json!({ "phones": ["+1 201 555 0123"] })).await);
        let only_mail = id_of(&new_contact(&app, &admin, json!({ "emails": ["only@example.com"] })).await);
        let only_ext = id_of(&new_contact(&app, &admin, json!({ "external_id": "only-ext" })).await);
        // A change may not take the last of them away.
        let before = counts(&app).await;
        for (id, body) in [
            (&only_phone, json!({ "phones": [] })),
            (&only_mail, json!({ "emails": [] })),
            (&only_ext, json!({ "external_id": null })),
            (&only_ext, json!({ "external_id": null, "first_name": "  " })),
        ] {
            let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &body).await;
            invalid_field(r, "body").await;
        }
        assert_eq!(counts(&app).await, before);
        assert_eq!(get_contact(&app, &admin, &only_ext).await["external_id"], "only-ext");
        // With something else instead, fine.
        let r = app.patch(&format!("/api/v1/contacts/{only_phone}"), &admin, &json!({ "phones": [], "emails": ["now@example.com"] })).await;
        let changed = json_ok(r, 200).await;
        assert_eq!((changed["phones"].clone(), changed["emails"].clone()), (json!([]), json!(["now@example.com"])));
        let r = app.patch(&format!("/api/v1/contacts/{only_ext}"), &admin, &json!({ "external_id": null, "last_name": "Named" })).await;
        assert_eq!(json_ok(r, 200).await["external_id"], Value::Null);

        // Updates follow the same rules and change nothing when refused.
        let id = id_of(&c);
        let card = get_contact(&app, &admin, &id).await;
        let before = counts(&app).await;
        for (body, path) in [
            (json!({ "emails": ["bad"] }), "emails[0]"),
            (json!({ "phones": ["bad"] }), "phones[0]"),
            (json!({ "tags": [""] }), "tags[0]"),
            (json!({ "first_name": "x".repeat(201) }), "first_name"),
            (json!({ "external_id": "" }), "external_id"),
            (json!({ "language": "not a language" }), "language"),
            (json!({ "first_name": "Fine", "emails": ["also bad"] }), "emails[0]"),
        ] {
            let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &body).await;
            invalid_field(r, path).await;
        }
        assert_eq!(counts(&app).await, before);
        assert_eq!(get_contact(&app, &admin, &id).await, card);
    }
}

// ---- typed attributes ---------------------------------------------------------------

both_backends! {
    async fn attributes_are_typed(app) {
        let marketer = app.login("marketer").await;
        let admin = app.login("admin").await;
        for (k, kind) in [("plan", "string"), ("spend", "number"), ("active", "boolean"), ("renewal", "date")] {
            define_attribute(&app, &marketer, k, kind).await;
        }
        let defs = json_ok(app.get("/api/v1/contact-attributes", &admin).await, 200).await;
        let keys: Vec<&str> = defs.as_array().unwrap().iter().map(|d| d["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["active", "plan", "renewal", "spend"], "sorted by key");
        assert_eq!(defs[2], json!({ "key": "renewal", "kind": "date", "label": "The renewal" }));

        let c = new_contact(&app, &admin, json!({
            "first_name": "Typed",
            "attributes": { "plan": "gold", "spend": 120.5, "active": true, "renewal": "2026-03-01" },
        })).await;
        let id = id_of(&c);
        assert_eq!(c["attributes"]["plan"], "gold");
        assert_eq!(c["attributes"]["spend"], 120.5);
        assert_eq!(c["attributes"]["active"], true);
        let renewal: chrono::DateTime<chrono::Utc> = c["attributes"]["renewal"].as_str().unwrap().parse().unwrap();
        assert_eq!(renewal.to_rfc3339(), "2026-03-01T00:00:00+00:00");

        // The wrong type: 422 naming the attribute, nothing stored.
        let before = counts(&app).await;
        for (attrs, path) in [
            (json!({ "spend": "120" }), "attributes.spend"),
            (json!({ "spend": true }), "attributes.spend"),
            (json!({ "spend": [1] }), "attributes.spend"),
            (json!({ "active": "yes" }), "attributes.active"),
            (json!({ "active": 1 }), "attributes.active"),
            (json!({ "plan": 5 }), "attributes.plan"),
            (json!({ "plan": { "a": 1 } }), "attributes.plan"),
            (json!({ "plan": "p".repeat(1001) }), "attributes.plan"),
            (json!({ "renewal": "2026-02-30" }), "attributes.renewal"),
            (json!({ "renewal": "tomorrow" }), "attributes.renewal"),
            (json!({ "renewal": 20260301 }), "attributes.renewal"),
            (json!({ "undefined_thing": 1 }), "attributes.undefined_thing"),
            (json!({ "plan": null }), "attributes.plan"),
        ] {
            let r = app.post("/api/v1/contacts", &admin, &json!({ "first_name": "Bad", "attributes": attrs })).await;
            invalid_field(r, path).await;
            if !attrs.get("plan").is_some_and(Value::is_null) {
                let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "attributes": attrs })).await;
                invalid_field(r, path).await;
            }
        }
        // Every wrong attribute is named.
        let r = app.post("/api/v1/contacts", &admin, &json!({ "first_name": "Bad", "attributes": { "spend": "x", "active": "x", "plan": 1 } })).await;
        let e = invalid_field(r, "attributes.spend").await;
        let paths: BTreeSet<&str> = e["error"]["details"]["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(paths, BTreeSet::from(["attributes.spend", "attributes.active", "attributes.plan"]));
        assert_eq!(counts(&app).await, before);
        assert_eq!(get_contact(&app, &admin, &id).await["attributes"], c["attributes"]);

        // A change sets the attributes given, removes those set to null, keeps the rest.
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "attributes": { "plan": "silver", "active": null, "renewal": "2027-01-15T10:30:00+02:00" } })).await;
        let changed = json_ok(r, 200).await;
        assert_eq!(changed["attributes"]["plan"], "silver");
        assert_eq!(changed["attributes"]["spend"], 120.5);
        assert!(changed["attributes"].get("active").is_none(), "{changed}");
        let renewal: chrono::DateTime<chrono::Utc> = changed["attributes"]["renewal"].as_str().unwrap().parse().unwrap();
        assert_eq!(renewal.to_rfc3339(), "2027-01-15T08:30:00+00:00");
        // Booleans and numbers at their edges.
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "attributes": { "active": false, "spend": -0.25 } })).await;
        let changed = json_ok(r, 200).await;
        assert_eq!(changed["attributes"]["active"], false);
        assert_eq!(changed["attributes"]["spend"], -0.25);
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "attributes": { "spend": 1e300 } })).await;
        assert_eq!(json_ok(r, 200).await["attributes"]["spend"], 1e300);

        // Definitions: unique keys, a fixed set of kinds, keys usable in segments.
        let r = app.post("/api/v1/contact-attributes", &marketer, &json!({ "key": "plan", "kind": "number" })).await;
        expect_error(r, 409, "conflict").await;
        for (body, path) in [
            (json!({ "key": "Plan", "kind": "string" }), "key"),
            (json!({ "key": "a.b", "kind": "string" }), "key"),
            (json!({ "key": "1st", "kind": "string" }), "key"),
            (json!({ "key": "", "kind": "string" }), "key"),
            (json!({ "key": "k".repeat(65), "kind": "string" }), "key"),
            (json!({ "key": "ok", "kind": "text" }), "kind"),
            (json!({ "key": "ok", "kind": 1 }), "kind"),
            (json!({ "key": "ok", "kind": "string", "label": "l".repeat(121) }), "label"),
            (json!({ "kind": "string" }), "key"),
        ] {
            let r = app.post("/api/v1/contact-attributes", &marketer, &body).await;
            invalid_field(r, path).await;
        }
        // Removing a definition removes its values everywhere.
        let r = app.delete("/api/v1/contact-attributes/plan", &marketer).await;
        assert_eq!(r.status(), 204);
        let card = get_contact(&app, &admin, &id).await;
        assert!(card["attributes"].get("plan").is_none(), "{card}");
        assert_eq!(card["attributes"]["spend"], 1e300);
        expect_error(app.delete("/api/v1/contact-attributes/plan", &marketer).await, 404, "not_found").await;
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "attributes": { "plan": "gold" } })).await;
        invalid_field(r, "attributes.plan").await;
        // Defined again with another kind, it starts empty.
        define_attribute(&app, &marketer, "plan", "number").await;
        let r = app.patch(&format!("/api/v1/contacts/{id}"), &admin, &json!({ "attributes": { "plan": 3 } })).await;
        assert_eq!(json_ok(r, 200).await["attributes"]["plan"], 3.0);

        // Another tenant has its own definitions.
        let other = app.api_key("other", "admin").await;
        let r = app.post("/api/v1/contacts", &other, &json!({ "first_name": "O", "attributes": { "spend": 1 } })).await;
        invalid_field(r, "attributes.spend").await;
        let defs = json_ok(app.get("/api/v1/contact-attributes", &other).await, 200).await;
        assert_eq!(defs, json!([]));
    }
}

both_backends! {
    async fn a_tenant_defines_at_most_200_attributes(app) {
        let marketer = app.login("marketer").await;
        for i in 0..200 {
            define_attribute(&app, &marketer, &format!("k{i:03}"), "string").await;
        }
        let before = counts(&app).await;
        let r = app.post("/api/v1/contact-attributes", &marketer, &json!({ "key": "k200", "kind": "string" })).await;
        let e = expect_error(r, 409, "conflict").await;
        assert!(e["error"]["message"].as_str().unwrap().contains("200"), "{e}");
        assert_eq!(counts(&app).await, before);
        assert_eq!(json_ok(app.get("/api/v1/contact-attributes", &marketer).await, 200).await.as_array().unwrap().len(), 200);
        // The limit is per tenant.
        let other = app.api_key("other", "marketer").await;
        define_attribute(&app, &other, "k200", "number").await;
        // Room again after a removal.
        assert_eq!(app.delete("/api/v1/contact-attributes/k000", &marketer).await.status(), 204);
        define_attribute(&app, &marketer, "k200", "boolean").await;
    }
}

// ---- external ids ---------------------------------------------------------------------

both_backends! {
    async fn the_external_id_is_the_upsert_key(app) {
        let admin = app.login("admin").await;
        define_attribute(&app, &admin, "plan", "string").await;
        define_attribute(&app, &admin, "spend", "number").await;
        let path = "/api/v1/contacts/by-external-id/crm-42";
        let r = put(&app, path, &admin, &json!({
            "first_name": "Grace", "last_name": "Hopper", "phones": ["(201) 555-0123"],
            "emails": ["grace@example.com"], "tags": ["navy"], "language": "en",
            "attributes": { "plan": "gold", "spend": 10 },
        })).await;
        let created = json_ok(r, 201).await;
        let id = id_of(&created);
        assert_eq!(created["external_id"], "crm-42");
        assert_eq!(created["attributes"], json!({ "plan": "gold", "spend": 10.0 }));

        // The same key again replaces the contact: same id, 200.
        let r = put(&app, path, &admin, &json!({
            "first_name": "Grace", "last_name": "Brewster Hopper", "phones": ["+44 20 7946 0958"],
            "tags": ["admiral"], "attributes": { "spend": 20 }, "external_id": "crm-42",
        })).await;
        let replaced = json_ok(r, 200).await;
        assert_eq!(id_of(&replaced), id);
        assert_eq!(replaced["name"], "Grace Brewster Hopper");
        assert_eq!(phones_of(&replaced), ["+442079460958"]);
        assert_eq!(replaced["timezone"], "Europe/London");
        assert_eq!(replaced["emails"], json!([]), "a replacement without emails has none");
        assert_eq!(replaced["tags"], json!(["admiral"]));
        assert_eq!(replaced["language"], Value::Null);
        assert_eq!(replaced["attributes"], json!({ "spend": 20.0 }), "a replacement's attributes are exactly the given ones");
        assert_eq!(replaced["created_at"], created["created_at"]);
        assert_eq!(get_contact(&app, &admin, &id).await["attributes"], json!({ "spend": 20.0 }));

        // One contact with that key, found by it.
        let found_ids = found(&app, &admin, "q=crm-42").await;
        assert_eq!(found_ids, set(&[&id]));

        // The key in the body must match the path.
        let before = counts(&app).await;
        let r = put(&app, path, &admin, &json!({ "first_name": "X", "external_id": "crm-43" })).await;
        invalid_field(r, "external_id").await;
        // The body is validated like a new contact's.
        let r = put(&app, path, &admin, &json!({ "phones": ["nope"] })).await;
        invalid_field(r, "phones[0]").await;
        let long = format!("/api/v1/contacts/by-external-id/{}", "x".repeat(201));
        let r = put(&app, &long, &admin, &json!({ "first_name": "X" })).await;
        invalid_field(r, "external_id").await;
        assert_eq!(counts(&app).await, before);

        // Unique per tenant: another contact cannot take it.
        let r = app.post("/api/v1/contacts", &admin, &json!({ "first_name": "Dup", "external_id": "crm-42" })).await;
        let e = expect_error(r, 409, "conflict").await;
        assert_eq!(e["error"]["details"]["field"], "external_id");
        let other = new_contact(&app, &admin, json!({ "first_name": "Other", "external_id": "crm-7" })).await;
        let r = app.patch(&format!("/api/v1/contacts/{}", id_of(&other)), &admin, &json!({ "external_id": "crm-42" })).await;
        expect_error(r, 409, "conflict").await;
        assert_eq!(get_contact(&app, &admin, &id_of(&other)).await["external_id"], "crm-7");
        assert_eq!(counts(&app).await["contacts"], before["contacts"] + 1);
        // A key can be dropped and then reused.
        let r = app.patch(&format!("/api/v1/contacts/{}", id_of(&other)), &admin, &json!({ "external_id": null })).await;
        assert_eq!(json_ok(r, 200).await["external_id"], Value::Null);
        let r = put(&app, "/api/v1/contacts/by-external-id/crm-7", &admin, &json!({ "first_name": "New" })).await;
        assert_ne!(id_of(&json_ok(r, 201).await), id_of(&other));

        // Keys with spaces, slashes and quotes (URL-encoded) are plain data.
        for key in ["with space", "a/b", "x' OR '1'='1", "ü-ñ-😀"] {
            let p = format!("/api/v1/contacts/by-external-id/{}", enc(key).replace('+', "%20"));
            let c = json_ok(put(&app, &p, &admin, &json!({ "first_name": "K" })).await, 201).await;
            assert_eq!(c["external_id"], key);
            let again = json_ok(put(&app, &p, &admin, &json!({ "first_name": "K2" })).await, 200).await;
            assert_eq!(id_of(&again), id_of(&c));
        }

        // Another tenant may use the same key for its own contact.
        let other_admin = app.api_key("other", "admin").await;
        let r = put(&app, path, &other_admin, &json!({ "first_name": "Theirs" })).await;
        let theirs = json_ok(r, 201).await;
        assert_ne!(id_of(&theirs), id);
        assert_eq!(get_contact(&app, &admin, &id).await["name"], "Grace Brewster Hopper");
    }

    async fn concurrent_upserts_of_one_key_make_one_contact(app) {
        let admin = app.api_key("demo", "admin").await;
        let before = counts(&app).await["contacts"];
        let mut tasks = Vec::new();
        for i in 0..6 {
            let client = app.client.clone();
            let url = app.url("/api/v1/contacts/by-external-id/race-1");
            let Creds::Key(k) = admin.clone() else { unreachable!() };
            tasks.push(tokio::spawn(async move {
                let r = client.put(url).bearer_auth(k).json(&json!({ "first_name": format!("Racer {i}") })).send().await.unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                (status, body)
            }));
        }
        let mut ids = BTreeSet::new();
        let mut created = 0;
        for t in tasks {
            let (status, body) = t.await.unwrap();
            assert!(status == 200 || status == 201, "{status}: {body}");
            if status == 201 {
                created += 1;
            }
            ids.insert(id_of(&body));
        }
        assert_eq!(created, 1, "exactly one request created the contact");
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(counts(&app).await["contacts"], before + 1);
    }
}

// ---- search and pagination --------------------------------------------------------------

both_backends! {
    async fn search_by_name_phone_in_any_format_email_and_tag(app) {
        let admin = app.login("admin").await;
        let ada = id_of(&new_contact(&app, &admin, json!({ "first_name": "Ada", "last_name": "Lovelace", "phones": ["(201) 555-0123"], "emails": ["ada@example.com"], "tags": ["vip", "math"] })).await);
        let alan = id_of(&new_contact(&app, &admin, json!({ "first_name": "Alan", "last_name": "Turing", "phones": ["+44 20 7946 0958", "(201) 555-0199"], "emails": ["alan@example.org"], "tags": ["math"] })).await);
        let grace = id_of(&new_contact(&app, &admin, json!({ "first_name": "Grace", "last_name": "Hopper", "emails": ["grace@navy.example"], "external_id": "G-1" })).await);
        let pct = id_of(&new_contact(&app, &admin, json!({ "first_name": "100%", "last_name": "Under_score" })).await);
        let emile = id_of(&new_contact(&app, &admin, json!({ "first_name": "Émile", "last_name": "Zola" })).await);
        // The other tenant has look-alikes that never show.
        let other = app.api_key("other", "admin").await;
        new_contact(&app, &other, json!({ "first_name": "Ada", "last_name": "Lovelace", "phones": ["(201) 555-0123"], "emails": ["ada@example.com"], "tags": ["vip"], "external_id": "G-1" })).await;

        for (q, expected) in [
            // A phone in any format.
            ("201-555-0123", vec![&ada]),
            ("(201) 555 0123", vec![&ada]),
            ("+1 201 555 0123", vec![&ada]),
            ("+12015550123", vec![&ada]),
            ("2015550123", vec![&ada]),
            ("1-201-555-0123", vec![&ada]),
            ("+44 20 7946 0958", vec![&alan]),
            ("+442079460958", vec![&alan]),
            ("201 555 0199", vec![&alan]),
            ("201-555-0100", vec![]),
            // Names: parts, case-insensitive, accents.
            ("love", vec![&ada]),
            ("LOVELACE", vec![&ada]),
            ("ada lovelace", vec![&ada]),
            ("  ada  ", vec![&ada]),
            ("a", vec![&ada, &alan, &grace, &emile]),
            ("ing", vec![&alan]),
            ("émile", vec![&emile]),
            ("ÉMILE", vec![&emile]),
            // LIKE wildcards are literal.
            ("%", vec![&pct]),
            ("_", vec![&pct]),
            ("100%", vec![&pct]),
            ("lo_e", vec![]),
            ("r_s", vec![&pct]),
            // Emails, exactly and in any case.
            ("ada@example.com", vec![&ada]),
            ("ALAN@EXAMPLE.ORG", vec![&alan]),
            ("example.com", vec![]),
            // The external id.
            ("G-1", vec![&grace]),
            // Nothing.
            ("nobody", vec![]),
            ("' OR 1=1 --", vec![]),
        ] {
            let query = format!("q={}", enc(q));
            let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
            assert_eq!(found(&app, &admin, &query).await, want, "q={q:?}");
            assert_eq!(count_of(&app, &admin, &query).await, want.len() as u64, "count of q={q:?}");
        }
        // Tags, alone and with a query.
        assert_eq!(found(&app, &admin, "tag=vip").await, set(&[&ada]));
        assert_eq!(found(&app, &admin, "tag=VIP").await, set(&[&ada]), "tags are case-insensitive");
        assert_eq!(found(&app, &admin, "tag=math").await, set(&[&ada, &alan]));
        assert_eq!(found(&app, &admin, "tag=math&q=turing").await, set(&[&alan]));
        assert_eq!(found(&app, &admin, "tag=none").await, set(&[]));
        assert_eq!(count_of(&app, &admin, "tag=math").await, 2);
        // An empty query is no filter.
        assert_eq!(found(&app, &admin, "q=").await.len(), 5);
        assert_eq!(count_of(&app, &admin, "").await, 5);
        // The other tenant sees only its own.
        assert_eq!(count_of(&app, &other, "q=ada").await, 1);
        assert_eq!(count_of(&app, &other, "").await, 1);
    }

    async fn cursor_pagination_walks_every_contact_once(app) {
        let admin = app.login("admin").await;
        let mut made = Vec::new();
        for i in 0..23 {
            let tags = if i % 3 == 0 { json!(["third"]) } else { json!([]) };
            let c = new_contact(&app, &admin, json!({ "first_name": format!("Page{i:02}"), "tags": tags })).await;
            made.push(id_of(&c));
        }
        // Other writes in between do not disturb the walk (another tenant).
        let other = app.api_key("other", "admin").await;
        for i in 0..5 {
            new_contact(&app, &other, json!({ "first_name": format!("Page{i:02}") })).await;
        }
        for limit in [1, 5, 7, 23, 50, 200] {
            let walked = all_ids(&app, &admin, "", limit).await;
            assert_eq!(walked, made, "limit {limit}: every contact once, in creation order");
        }
        let thirds: Vec<String> = made.iter().step_by(3).cloned().collect();
        assert_eq!(all_ids(&app, &admin, "tag=third", 2).await, thirds);
        assert_eq!(all_ids(&app, &admin, "q=page1", 3).await, made[10..20].to_vec());
        // A page's cursor stays valid when contacts before it are deleted.
        let page = json_ok(app.get("/api/v1/contacts?limit=10", &admin).await, 200).await;
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        for id in &made[..10] {
            assert_eq!(app.delete(&format!("/api/v1/contacts/{id}"), &admin).await.status(), 204);
        }
        let rest = json_ok(app.get(&format!("/api/v1/contacts?limit=200&cursor={cursor}"), &admin).await, 200).await;
        let rest: Vec<String> = rest["items"].as_array().unwrap().iter().map(id_of).collect();
        assert_eq!(rest, made[10..].to_vec());
        // Bad paging parameters.
        for (q, field) in [("limit=0", "limit"), ("limit=201", "limit"), ("cursor=bogus", "cursor"), ("cursor=!!", "cursor"), ("limit=x", "query"), ("bogus=1", "query")] {
            invalid_field(app.get(&format!("/api/v1/contacts?{q}"), &admin).await, field).await;
        }
    }
}

// ---- the interaction history ----------------------------------------------------------------

both_backends! {
    async fn a_contact_shows_its_interactions_newest_first(app) {
        let admin = app.login("admin").await;
        let c = id_of(&new_contact(&app, &admin, json!({ "first_name": "Caller", "phones": ["(201) 555-0123"] })).await);
        let quiet = id_of(&new_contact(&app, &admin, json!({ "first_name": "Quiet" })).await);
        let mut mine = Vec::new();
        for ch in ["voice", "sms", "email"] {
            let r = app.post("/api/v1/interactions", &admin, &json!({ "channel": ch, "direction": "inbound", "contact_id": c, "customer_address": "+12015550123" })).await;
            let body = json_ok(r, 201).await;
            assert_eq!(body["interaction"]["contact_id"], c.as_str());
            mine.push(body["interaction"]["id"].as_str().unwrap().to_owned());
        }
        // An interaction with nobody in particular.
        json_ok(app.post("/api/v1/interactions", &admin, &json!({ "channel": "chat", "direction": "inbound" })).await, 201).await;
        let page = json_ok(app.get(&format!("/api/v1/contacts/{c}/interactions"), &admin).await, 200).await;
        let got: Vec<String> = page["items"].as_array().unwrap().iter().map(id_of).collect();
        let newest_first: Vec<String> = mine.iter().rev().cloned().collect();
        assert_eq!(got, newest_first);
        assert_eq!(page["items"][0]["channel"], "email");
        assert!(page["next_cursor"].is_null());
        // Paged.
        let p1 = json_ok(app.get(&format!("/api/v1/contacts/{c}/interactions?limit=2"), &admin).await, 200).await;
        assert_eq!(p1["items"].as_array().unwrap().len(), 2);
        let cursor = p1["next_cursor"].as_str().unwrap();
        let p2 = json_ok(app.get(&format!("/api/v1/contacts/{c}/interactions?limit=2&cursor={cursor}"), &admin).await, 200).await;
        let p2: Vec<String> = p2["items"].as_array().unwrap().iter().map(id_of).collect();
        assert_eq!(p2, vec![mine[0].clone()]);
        // A contact without history.
        let none = json_ok(app.get(&format!("/api/v1/contacts/{quiet}/interactions"), &admin).await, 200).await;
        assert_eq!(none["items"], json!([]));
        // Agents see it too (they answer the calls).
        let agent = app.login("agent").await;
        let seen = json_ok(app.get(&format!("/api/v1/contacts/{c}/interactions"), &agent).await, 200).await;
        assert_eq!(seen["items"].as_array().unwrap().len(), 3);
        // Another tenant's contact can be neither read nor used.
        let other = app.api_key("other", "admin").await;
        expect_error(app.get(&format!("/api/v1/contacts/{c}/interactions"), &other).await, 404, "not_found").await;
        let r = app.post("/api/v1/interactions", &other, &json!({ "channel": "voice", "direction": "inbound", "contact_id": c })).await;
        expect_error(r, 404, "not_found").await;
        invalid_field(app.get(&format!("/api/v1/contacts/{c}/interactions?limit=0"), &admin).await, "limit").await;
    }
}

// ---- roles -----------------------------------------------------------------------------------

both_backends! {
    async fn who_may_read_and_write_contacts(app) {
        let admin = app.login("admin").await;
        let c = id_of(&new_contact(&app, &admin, json!({ "first_name": "Shared", "phones": ["(201) 555-0123"] })).await);
        let list = json_ok(app.post("/api/v1/lists", &admin, &json!({ "name": "Roles" })).await, 201).await;
        let list_id = id_of(&list);
        for who in ["admin", "supervisor", "agent", "marketer"] {
            for creds in [app.login(who).await, app.api_key("demo", who).await] {
                // Everybody reads contact cards, searches, counts, and sees history.
                for path in [
                    "/api/v1/contacts".to_owned(),
                    "/api/v1/contacts/count".to_owned(),
                    "/api/v1/contacts?q=201-555-0123".to_owned(),
                    format!("/api/v1/contacts/{c}"),
                    format!("/api/v1/contacts/{c}/interactions"),
                    format!("/api/v1/contacts/{c}/consent-history"),
                    format!("/api/v1/contacts/{c}/can-contact?channel=voice"),
                    "/api/v1/contact-attributes".to_owned(),
                    "/api/v1/lists".to_owned(),
                    format!("/api/v1/lists/{list_id}"),
                    "/api/v1/segments".to_owned(),
                    "/api/v1/segments/fields".to_owned(),
                ] {
                    json_ok(app.get(&path, &creds).await, 200).await;
                }
                // Everybody creates and updates contacts (agents do, on calls).
                let mine = new_contact(&app, &creds, json!({ "first_name": format!("By {who}") })).await;
                let mine = id_of(&mine);
                let r = app.patch(&format!("/api/v1/contacts/{mine}"), &creds, &json!({ "last_name": "Changed" })).await;
                json_ok(r, 200).await;
                let r = put(&app, &format!("/api/v1/contacts/by-external-id/{}", uniq(who)), &creds, &json!({ "first_name": "Up" })).await;
                json_ok(r, 201).await;
                // Everybody records consent.
                let r = app.post(&format!("/api/v1/contacts/{mine}/consent"), &creds, &json!({ "channel": "email", "status": "opted_out" })).await;
                json_ok(r, 200).await;
                // Deleting contacts and managing audiences is for marketers, supervisors and admins.
                let del = app.delete(&format!("/api/v1/contacts/{mine}"), &creds).await;
                let attr = app.post("/api/v1/contact-attributes", &creds, &json!({ "key": uniq("k").replace('-', "_"), "kind": "string" })).await;
                let new_list = app.post("/api/v1/lists", &creds, &json!({ "name": uniq("list") })).await;
                let members = app.post(&format!("/api/v1/lists/{list_id}/members"), &creds, &json!({ "contact_ids": [c] })).await;
                let seg = app.post("/api/v1/segments", &creds, &json!({ "name": uniq("seg"), "expression": "tags has \"x\"" })).await;
                let supp = app.get("/api/v1/suppressions", &creds).await;
                let link = app.get(&format!("/api/v1/contacts/{c}/unsubscribe-link?channel=email"), &creds).await;
                if who == "agent" {
                    expect_error(del, 403, "forbidden").await;
                    expect_error(attr, 403, "forbidden").await;
                    expect_error(new_list, 403, "forbidden").await;
                    expect_error(members, 403, "forbidden").await;
                    expect_error(seg, 403, "forbidden").await;
                    expect_error(supp, 403, "forbidden").await;
                    expect_error(link, 403, "forbidden").await;
                } else {
                    assert_eq!(del.status(), 204, "{who}");
                    json_ok(attr, 201).await;
                    json_ok(new_list, 201).await;
                    json_ok(members, 200).await;
                    json_ok(seg, 201).await;
                    json_ok(supp, 200).await;
                    json_ok(link, 200).await;
                }
            }
        }
        // The agent's refusals left the shared contact alone.
        json_ok(app.get(&format!("/api/v1/contacts/{c}"), &admin).await, 200).await;
        // Without credentials: 401 everywhere.
        for path in ["/api/v1/contacts".to_owned(), format!("/api/v1/contacts/{c}"), "/api/v1/lists".to_owned(), "/api/v1/segments".to_owned()] {
            expect_error(app.get(&path, &Creds::None).await, 401, "unauthenticated").await;
        }
        let r = app.post("/api/v1/contacts", &Creds::None, &json!({ "first_name": "Anon" })).await;
        expect_error(r, 401, "unauthenticated").await;
        // A session without its CSRF token cannot write.
        let Creds::Session { cookie, .. } = admin.clone() else { unreachable!() };
        let r = app.post("/api/v1/contacts", &Creds::CookieOnly(cookie), &json!({ "first_name": "Csrf" })).await;
        expect_error(r, 403, "csrf_failed").await;
    }
}

// ---- bad input ---------------------------------------------------------------------------------

/// One JSON write endpoint of the contacts API and examples of bad bodies.
pub(crate) struct Endpoint {
    pub method: Method,
    pub path: String,
    /// A body that would be accepted.
    pub valid: Value,
    /// Bodies with a value of the wrong type (or otherwise invalid), and its path.
    pub wrong: Vec<(Value, &'static str)>,
    /// A string field of the valid body (for oversized and NUL values).
    pub string_field: &'static str,
    /// The success status of the valid body.
    pub ok: u16,
}

async fn send_raw(
    app: &TestApp,
    ep: &Endpoint,
    creds: &Creds,
    ct: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let mut rb = app.req(ep.method.clone(), &ep.path, creds).body(body);
    if let Some(ct) = ct {
        rb = rb.header("Content-Type", ct);
    }
    rb.send().await.expect("request")
}

fn with(valid: &Value, key: &str, v: Value) -> Value {
    let mut b = valid.clone();
    b.as_object_mut().unwrap().insert(key.to_owned(), v);
    b
}

/// Every kind of bad body gets a clear 4xx and changes no row; then the
/// valid body succeeds, to show the endpoint was reachable.
pub(crate) async fn check_endpoint(app: &TestApp, creds: &Creds, ep: Endpoint) {
    let (m, p) = (&ep.method, ep.path.as_str());
    let before = counts(app).await;
    let valid_bytes = serde_json::to_vec(&ep.valid).unwrap();
    let json_ct = Some("application/json");
    let mut trailing = valid_bytes.clone();
    trailing.extend_from_slice(b" x");
    let mut unterminated = valid_bytes.clone();
    unterminated.pop();
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", b"{\"a\": ".to_vec()),
        ("unterminated", unterminated),
        ("single quotes", b"{'first_name': 'x'}".to_vec()),
        ("a trailing comma", b"{\"a\": 1,}".to_vec()),
        ("a bare word", b"hello".to_vec()),
        ("empty", Vec::new()),
        ("trailing garbage", trailing),
        ("invalid UTF-8", b"{\"first_name\": \"\xc3\x28\"}".to_vec()),
        (
            "NaN",
            format!("{{\"{}\": NaN}}", ep.string_field).into_bytes(),
        ),
    ];
    for (what, bytes) in malformed {
        let r = send_raw(app, &ep, creds, json_ct, bytes).await;
        let status = r.status().as_u16();
        let body = expect_error(r, 400, "malformed_json").await;
        assert_eq!(status, 400, "{m} {p} {what}: {body}");
        assert_eq!(counts(app).await, before, "{m} {p}: {what} wrote something");
    }
    for not_an_object in [json!([]), json!("text"), json!(null), json!(42)] {
        let r = app
            .req(m.clone(), p, creds)
            .json(&not_an_object)
            .send()
            .await
            .unwrap();
        expect_error(r, 422, "validation_failed").await;
    }
    // Not JSON by its Content-Type.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let r = send_raw(app, &ep, creds, ct, valid_bytes.clone()).await;
        expect_error(r, 415, "unsupported_media_type").await;
    }
    // An unknown field.
    let r = app
        .req(m.clone(), p, creds)
        .json(&with(&ep.valid, "surprise", json!(1)))
        .send()
        .await
        .unwrap();
    let e = expect_error(r, 422, "validation_failed").await;
    assert!(
        e.to_string().contains("surprise"),
        "{m} {p}: the unknown field is named: {e}"
    );
    // Wrong types and invalid values, each at its path.
    for (body, path) in &ep.wrong {
        let r = app
            .req(m.clone(), p, creds)
            .json(body)
            .send()
            .await
            .unwrap();
        invalid_field(r, path).await;
    }
    // A string far too long (but under the body limit): refused without
    // echoing it. (Only for text fields.)
    let is_text = ep.valid[ep.string_field].is_string();
    if is_text {
        let huge = with(&ep.valid, ep.string_field, json!("x".repeat(100_000)));
        let r = app
            .req(m.clone(), p, creds)
            .json(&huge)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let e: Value = r.json().await.unwrap();
        assert!(
            (400..500).contains(&status),
            "{m} {p}: a huge {} gave {status}: {e}",
            ep.string_field
        );
        assert!(
            e.to_string().len() < 5_000,
            "{m} {p}: the error echoes the value"
        );
    }
    // Over the body limit.
    let r = app
        .req(m.clone(), p, creds)
        .json(&with(
            &ep.valid,
            ep.string_field,
            json!("x".repeat(1024 * 1024 + 10)),
        ))
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;
    // NUL characters.
    if is_text {
        let nul = with(&ep.valid, ep.string_field, json!("a\u{0}b"));
        let r = app
            .req(m.clone(), p, creds)
            .json(&nul)
            .send()
            .await
            .unwrap();
        invalid_field(r, ep.string_field).await;
    }
    assert_eq!(
        counts(app).await,
        before,
        "{m} {p}: a refused body wrote something"
    );
    // The valid body works.
    let r = app
        .req(m.clone(), p, creds)
        .json(&ep.valid)
        .send()
        .await
        .unwrap();
    json_ok(r, ep.ok).await;
}

both_backends! {
    async fn contact_endpoints_refuse_bad_bodies(app) {
        let admin = app.login("admin").await;
        define_attribute(&app, &admin, "spend", "number").await;
        let c = id_of(&new_contact(&app, &admin, json!({ "first_name": "Target" })).await);
        let card = get_contact(&app, &admin, &c).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/contacts".into(),
            valid: json!({ "first_name": "Fine", "phones": ["(201) 555-0123"] }),
            wrong: vec![
                (json!({ "first_name": 5 }), "first_name"),
                (json!({ "phones": "(201) 555-0123" }), "phones"),
                (json!({ "phones": [5] }), "phones[0]"),
                (json!({ "emails": "a@example.com" }), "emails"),
                (json!({ "emails": [true] }), "emails[0]"),
                (json!({ "tags": "vip" }), "tags"),
                (json!({ "tags": [["vip"]] }), "tags[0]"),
                (json!({ "attributes": [1] }), "attributes"),
                (json!({ "first_name": "A", "attributes": { "spend": "much" } }), "attributes.spend"),
                (json!({ "timezone": 1 }), "timezone"),
                (json!({ "external_id": 7 }), "external_id"),
            ],
            string_field: "first_name",
            ok: 201,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::PATCH,
            path: format!("/api/v1/contacts/{c}"),
            valid: json!({ "last_name": "Changed" }),
            wrong: vec![
                (json!({ "last_name": ["x"] }), "last_name"),
                (json!({ "phones": [{ "number": 5 }] }), "phones[0]"),
                (json!({ "phones": ["nope"] }), "phones[0]"),
                (json!({ "tags": null, "emails": [1] }), "emails[0]"),
                (json!({ "attributes": { "spend": [] } }), "attributes.spend"),
            ],
            string_field: "last_name",
            ok: 200,
        }).await;
        let mut after = get_contact(&app, &admin, &c).await;
        assert_eq!(after["last_name"], "Changed");
        after["last_name"] = card["last_name"].clone();
        after["name"] = card["name"].clone();
        after["updated_at"] = card["updated_at"].clone();
        assert_eq!(after, card, "only the valid change changed the contact");
        check_endpoint(&app, &admin, Endpoint {
            method: Method::PUT,
            path: "/api/v1/contacts/by-external-id/bad-input-1".into(),
            valid: json!({ "first_name": "Upserted" }),
            wrong: vec![
                (json!({ "first_name": false }), "first_name"),
                (json!({ "emails": ["x"] }), "emails[0]"),
                (json!({ "first_name": "A", "external_id": "other" }), "external_id"),
            ],
            string_field: "first_name",
            ok: 201,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: "/api/v1/contact-attributes".into(),
            valid: json!({ "key": "plan", "kind": "string", "label": "Plan" }),
            wrong: vec![
                (json!({ "key": 1, "kind": "string" }), "key"),
                (json!({ "key": "plan", "kind": "string", "label": 5 }), "label"),
                (json!({ "key": "plan" }), "kind"),
            ],
            string_field: "label",
            ok: 201,
        }).await;
        check_endpoint(&app, &admin, Endpoint {
            method: Method::POST,
            path: format!("/api/v1/contacts/{c}/consent"),
            valid: json!({ "channel": "sms", "status": "opted_in", "source": "web form" }),
            wrong: vec![
                (json!({ "channel": "fax", "status": "opted_in" }), "channel"),
                (json!({ "channel": "sms", "status": "maybe" }), "status"),
                (json!({ "channel": "sms" }), "status"),
                (json!({ "channel": "sms", "status": "opted_in", "source": "" }), "source"),
                (json!({ "channel": "sms", "status": "opted_in", "source": "s".repeat(201) }), "source"),
                (json!({ "channel": "sms", "status": "opted_in", "detail": "d".repeat(1001) }), "detail"),
            ],
            string_field: "source",
            ok: 200,
        }).await;
    }

    async fn contact_queries_refuse_bad_parameters(app) {
        let admin = app.login("admin").await;
        let c = id_of(&new_contact(&app, &admin, json!({ "first_name": "Q" })).await);
        let before = counts(&app).await;
        for path in ["/api/v1/contacts", "/api/v1/contacts/count"] {
            for (q, field) in [
                (format!("q={}", "x".repeat(201)), "q"),
                (format!("tag={}", "t".repeat(65)), "tag"),
                ("list_id=not-a-uuid".to_owned(), "query"),
                ("segment_id=42".to_owned(), "query"),
                (format!("segment_id={}&segment=tags%20has%20%22x%22", uuid::Uuid::now_v7()), "segment"),
                ("segment=tags%20has".to_owned(), "segment"),
                ("nonsense=1".to_owned(), "query"),
                ("q=a&q=b".to_owned(), "query"),
            ] {
                invalid_field(app.get(&format!("{path}?{q}"), &admin).await, field).await;
            }
            // Unknown lists and segments are 404s.
            let r = app.get(&format!("{path}?list_id={}", uuid::Uuid::now_v7()), &admin).await;
            expect_error(r, 404, "not_found").await;
            let r = app.get(&format!("{path}?segment_id={}", uuid::Uuid::now_v7()), &admin).await;
            expect_error(r, 404, "not_found").await;
        }
        for (q, field) in [("channel=fax", "query"), ("", "query"), ("channel=voice&at=yesterday", "query"), ("channel=voice&extra=1", "query")] {
            invalid_field(app.get(&format!("/api/v1/contacts/{c}/can-contact?{q}"), &admin).await, field).await;
        }
        // A NUL in a query value is no server error.
        let r = app.get("/api/v1/contacts?q=a%00b", &admin).await;
        assert!(r.status().is_success() || r.status().is_client_error(), "{}", r.status());
        let r = app.get("/api/v1/contacts?segment=name%20%3D%20%22a%00b%22", &admin).await;
        assert!(r.status().is_success() || r.status().is_client_error(), "{}", r.status());
        // Path ids that are not ids: 404.
        for bad in ["not-a-uuid", "1", "%27%20OR%201%3D1"] {
            expect_error(app.get(&format!("/api/v1/contacts/{bad}"), &admin).await, 404, "not_found").await;
            expect_error(app.delete(&format!("/api/v1/contacts/{bad}"), &admin).await, 404, "not_found").await;
        }
        assert_eq!(counts(&app).await, before);
    }
}
