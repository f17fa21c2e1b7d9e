//! IVR flows over HTTP and `switchboard flow test`: saving versions
//! (compile errors refused with their line, nothing saved), validation
//! against the tenant's queues, skills, prompts and allowed hosts,
//! publishing (refused for errors and failing tests; rollback), the
//! stateless simulator (where the flow waits, the case's time, caller and
//! channel, endless loops contained), flow tests, who may do what, another
//! tenant's view, bad input, concurrent saves and settings changes, deeply
//! nested scripts, the shipped example flows against the demo data, and
//! the offline test command on real files.

use std::process::Output;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

/// A one-key menu; the line numbers are asserted below.
const MENU: &str = r#"// Sales menu: one key.
answer();
let choice = menu(#{
    prompt: "main_menu",
    options: "1",
});
if choice == "1" {
    queue("Sales");
}
hangup();
"#;
const MENU_PROMPT_LINE: u64 = 4;
const MENU_GATHER_LINE: u64 = 3;
const MENU_QUEUE_LINE: u64 = 8;

const MENU_PASSING_TESTS: &str = r#"
[[case]]
name = "one goes to sales"
inputs = ["digits:1"]
[case.expect]
prompts = ["main_menu"]
queue = "Sales"
end = "queue"

[[case]]
name = "no key hangs up"
inputs = ["silence", "silence", "silence"]
[case.expect]
end = "hangup"
"#;

const MENU_FAILING_TESTS: &str = r#"
[[case]]
name = "one goes to sales"
inputs = ["digits:1"]
[case.expect]
queue = "Sales"

[[case]]
name = "one goes to support"
inputs = ["digits:1"]
[case.expect]
queue = "Support"
"#;

/// Business hours in Paris, the caller and the channel change the path.
const HOURS_FLOW: &str = r#"const HOURS = #{ tz: "Europe/Paris", hours: #{ weekdays: "09:00-18:00" } };
if channel() == "chat" {
    say("Hello from chat");
}
if caller() == "+33612345678" {
    set("vip", true);
}
if open_now(HOURS) {
    queue("Sales");
}
play("closed");
hangup();
"#;

/// The settings of a tenant that never changed them.
fn default_settings() -> Value {
    json!({ "fallback_queue": null, "apology_prompt": null, "http_allowed_hosts": [], "transcribe_calls": false })
}

/// Saves `n` versions of `name` at once; the version numbers they got, sorted.
async fn saves_at_once(app: &TestApp, sup: &Creds, name: &str, n: i64) -> Vec<i64> {
    let bodies: Vec<Value> = (0..n)
        .map(|i| json!({ "source": MENU, "comment": format!("save {i}") }))
        .collect();
    let path = format!("/api/v1/flows/{name}/versions");
    let saves = bodies.iter().map(|b| app.post(&path, sup, b));
    let answers = futures_util::future::join_all(saves).await;
    let mut versions = Vec::new();
    for r in answers {
        versions.push(json_ok(r, 201).await["version"].as_i64().unwrap());
    }
    versions.sort();
    versions
}

/// Asserts a 422 `invalid_flow` and returns its diagnostics
/// (`details.diagnostics`, an object like every error's details).
async fn invalid_flow(r: reqwest::Response) -> Vec<Value> {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 422, "unexpected status; body: {body}");
    assert_eq!(body["error"]["code"], "invalid_flow", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error needs a message: {body}"
    );
    let details = body["error"]["details"]["diagnostics"]
        .as_array()
        .unwrap_or_else(|| panic!("details.diagnostics must be the diagnostics: {body}"))
        .clone();
    assert!(!details.is_empty(), "{body}");
    for d in &details {
        assert!(d["line"].is_u64() && d["column"].is_u64(), "{d}");
        assert!(
            d["severity"] == "error" || d["severity"] == "warning",
            "{d}"
        );
        assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
    }
    details
}

/// Asserts a 422 `validation_failed` and returns the paths of its fields.
async fn field_errors(r: reqwest::Response) -> Vec<String> {
    let e = expect_error(r, 422, "validation_failed").await;
    e["error"]["details"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("details.fields: {e}"))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect()
}

/// The diagnostic of `severity` whose message contains `needle`.
fn diagnostic<'a>(diags: &'a [Value], severity: &str, needle: &str) -> &'a Value {
    diags
        .iter()
        .find(|d| d["severity"] == severity && d["message"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no {severity} about {needle:?} in {diags:?}"))
}

fn errors(diags: &[Value]) -> Vec<&Value> {
    diags.iter().filter(|d| d["severity"] == "error").collect()
}

async fn save(app: &TestApp, creds: &Creds, name: &str, source: &str, tests: &str) -> Value {
    let r = app
        .post(
            &format!("/api/v1/flows/{name}/versions"),
            creds,
            &json!({ "source": source, "tests": tests, "comment": format!("{name} change") }),
        )
        .await;
    json_ok(r, 201).await
}

async fn validate(app: &TestApp, creds: &Creds, source: &str, tests: Option<&str>) -> Value {
    let mut body = json!({ "source": source });
    if let Some(t) = tests {
        body["tests"] = json!(t);
    }
    json_ok(app.post("/api/v1/flows/validate", creds, &body).await, 200).await
}

async fn simulate(
    app: &TestApp,
    creds: &Creds,
    source: &str,
    inputs: &[&str],
    case: Value,
) -> Value {
    let r = app
        .post(
            "/api/v1/flows/simulate",
            creds,
            &json!({ "source": source, "inputs": inputs, "case": case }),
        )
        .await;
    json_ok(r, 200).await
}

async fn publish(app: &TestApp, creds: &Creds, name: &str, version: i64) -> reqwest::Response {
    app.post(
        &format!("/api/v1/flows/{name}/publish"),
        creds,
        &json!({ "version": version }),
    )
    .await
}

async fn put_settings(app: &TestApp, creds: &Creds, body: &Value) -> reqwest::Response {
    app.req(Method::PUT, "/api/v1/flow-settings", creds)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A short 8 kHz mono 16-bit PCM WAV file.
fn wav() -> Vec<u8> {
    let samples: Vec<i16> = (0..1600)
        .map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

/// The status of a request sent as raw bytes (for paths an HTTP client
/// would normalise, such as `..` segments).
async fn raw_status(app: &TestApp, method: &str, path: &str, creds: &Creds, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Creds::Key(key) = creds else {
        panic!("raw requests use an API key")
    };
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        app.port,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"))
}

both_backends! {
    async fn a_flow_that_does_not_compile_is_refused_with_its_line_and_nothing_is_saved(app) {
        let sup = app.login("supervisor").await;
        let source = "answer();\nplay(\"welcome\");\nlet x = ;\nhangup();\n";
        let r = app
            .post("/api/v1/flows/broken/versions", &sup, &json!({ "source": source }))
            .await;
        let details = invalid_flow(r).await;
        assert_eq!(details[0]["severity"], "error", "{details:?}");
        assert_eq!(details[0]["line"], 3, "the error is on line 3: {details:?}");
        assert!(details[0]["column"].as_u64().unwrap() > 0, "{details:?}");

        // Nothing was saved: no flow, no version, not in the list.
        expect_error(app.get("/api/v1/flows/broken", &sup).await, 404, "not_found").await;
        expect_error(app.get("/api/v1/flows/broken/versions/1", &sup).await, 404, "not_found").await;
        let list = json_ok(app.get("/api/v1/flows", &sup).await, 200).await;
        assert_eq!(list["items"], json!([]), "{list}");

        // Malformed tests block a save too (a valid script).
        let r = app
            .post(
                "/api/v1/flows/broken/versions",
                &sup,
                &json!({ "source": MENU, "tests": "[[case]\nname = " }),
            )
            .await;
        let details = invalid_flow(r).await;
        assert!(details[0]["message"].as_str().unwrap().starts_with("tests:"), "{details:?}");
        expect_error(app.get("/api/v1/flows/broken", &sup).await, 404, "not_found").await;

        // Validation says the same without saving.
        let v = validate(&app, &sup, source, None).await;
        assert_eq!(v["ok"], false);
        assert_eq!(v["diagnostics"][0]["line"], 3, "{v}");
    }

    async fn versions_are_numbered_listed_newest_first_and_keep_their_source(app) {
        let sup = app.login("supervisor").await;
        let first = save(&app, &sup, "sales-menu", MENU, "").await;
        assert_eq!(first["version"], 1, "{first}");
        // The prompt does not exist yet: a warning on its line, not an error.
        let diags = first["diagnostics"].as_array().unwrap();
        let w = diagnostic(diags, "warning", "main_menu");
        assert_eq!(w["line"], MENU_PROMPT_LINE, "{w}");
        assert_eq!(w["column"], 13, "{w}");
        assert!(errors(diags).is_empty(), "{diags:?}");

        let second_source = MENU.replace("Sales menu", "Sales menu, reworded");
        let second = save(&app, &sup, "sales-menu", &second_source, MENU_PASSING_TESTS).await;
        assert_eq!(second["version"], 2, "{second}");

        let f = json_ok(app.get("/api/v1/flows/sales-menu", &sup).await, 200).await;
        assert_eq!(f["name"], "sales-menu");
        assert_eq!(f["published_version"], Value::Null, "{f}");
        let versions: Vec<i64> = f["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
        assert_eq!(versions, [2, 1], "newest first: {f}");
        assert_eq!(f["versions"][0]["comment"], "sales-menu change");
        assert!(f["versions"][0]["created_by"].as_str().unwrap().starts_with("user:"), "{f}");
        assert!(f["versions"][0]["created_at"].is_string(), "{f}");
        assert_eq!(f["versions"][0]["published"], false);

        let v1 = json_ok(app.get("/api/v1/flows/sales-menu/versions/1", &sup).await, 200).await;
        assert_eq!(v1["version"], 1);
        assert_eq!(v1["source"], MENU, "the source comes back as saved");
        assert_eq!(v1["tests"], "");
        let v2 = json_ok(app.get("/api/v1/flows/sales-menu/versions/2", &sup).await, 200).await;
        assert_eq!(v2["source"], second_source.as_str());
        assert_eq!(v2["tests"], MENU_PASSING_TESTS);
        expect_error(app.get("/api/v1/flows/sales-menu/versions/3", &sup).await, 404, "not_found").await;

        let list = json_ok(app.get("/api/v1/flows", &sup).await, 200).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["items"][0]["name"], "sales-menu");
        assert_eq!(list["items"][0]["latest_version"], 2);
        assert_eq!(list["items"][0]["published_version"], Value::Null);

        // Once the prompt is uploaded, the warning is gone.
        let r = app
            .req(Method::PUT, "/api/v1/prompts/main_menu", &sup)
            .header("Content-Type", "audio/wav")
            .body(wav())
            .send()
            .await
            .unwrap();
        json_ok(r, 200).await;
        let v = validate(&app, &sup, MENU, None).await;
        assert_eq!(v, json!({ "ok": true, "diagnostics": [] }));

        // Flow names that are also words of the API's own routes still work.
        let t = save(&app, &sup, "test", MENU, "").await;
        assert_eq!(t["version"], 1);
        let f = json_ok(app.get("/api/v1/flows/test", &sup).await, 200).await;
        assert_eq!(f["name"], "test", "{f}");
        for name in ["validate", "simulate"] {
            assert_eq!(save(&app, &sup, name, MENU, "").await["version"], 1);
            let f = json_ok(app.get(&format!("/api/v1/flows/{name}"), &sup).await, 200).await;
            assert_eq!(f["name"], name, "{f}");
            json_ok(publish(&app, &sup, name, 1).await, 200).await;
        }
    }

    async fn validation_names_unknown_queues_skills_hosts_and_bad_tests_with_their_lines(app) {
        let sup = app.login("supervisor").await;
        let admin = app.login("admin").await;

        let v = validate(&app, &sup, "answer();\nqueue(\"Nowhere\");\n", None).await;
        assert_eq!(v["ok"], false, "{v}");
        let d = diagnostic(v["diagnostics"].as_array().unwrap(), "error", "Nowhere");
        assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(2), Some(7)), "{d}");
        assert!(d["message"].as_str().unwrap().contains("Sales"), "the message lists the queues: {d}");

        let v = validate(&app, &sup, "answer();\n\nqueue(\"Sales\", #{ skills: [\"english\", \"klingon\"] });\n", None).await;
        assert_eq!(v["ok"], false, "{v}");
        let diags = v["diagnostics"].as_array().unwrap();
        let d = diagnostic(diags, "error", "klingon");
        assert_eq!(d["line"], 3, "{d}");
        assert_eq!(errors(diags).len(), 1, "english and Sales exist: {diags:?}");

        let http_flow = "let r = http_get(\"https://crm.example.com/lookup\");\nqueue(\"Sales\");\n";
        let v = validate(&app, &sup, http_flow, None).await;
        assert_eq!(v["ok"], false, "{v}");
        let d = diagnostic(v["diagnostics"].as_array().unwrap(), "error", "crm.example.com");
        assert_eq!(d["line"], 1, "{d}");
        assert!(d["message"].as_str().unwrap().contains("not allowed"), "{d}");

        // The admin allows the host (written in another case, with spaces).
        let s = json_ok(put_settings(&app, &admin, &json!({ "http_allowed_hosts": [" CRM.example.com "] })).await, 200).await;
        assert_eq!(s["http_allowed_hosts"], json!(["crm.example.com"]), "{s}");
        let got = json_ok(app.get("/api/v1/flow-settings", &sup).await, 200).await;
        assert_eq!(got["http_allowed_hosts"], json!(["crm.example.com"]));
        let v = validate(&app, &sup, http_flow, None).await;
        assert_eq!(v, json!({ "ok": true, "diagnostics": [] }));
        // Another host is still refused.
        let v = validate(&app, &sup, "http_get(\"https://evil.example.net/x\");\n", None).await;
        diagnostic(v["diagnostics"].as_array().unwrap(), "error", "evil.example.net");

        // Malformed tests: an error that says it is about the tests.
        let v = validate(&app, &sup, "queue(\"Sales\");\n", Some("[[case]]\nname = \"x\"\ninputs = [\"press 1\"]\n")).await;
        assert_eq!(v["ok"], false, "{v}");
        let diags = v["diagnostics"].as_array().unwrap();
        assert_eq!(errors(diags).len(), 1, "{diags:?}");
        let m = diags[0]["message"].as_str().unwrap();
        assert!(m.starts_with("tests:") && m.contains("press 1"), "{m}");
        let v = validate(&app, &sup, "queue(\"Sales\");\n", Some("[[case]\n")).await;
        assert!(v["diagnostics"][0]["message"].as_str().unwrap().starts_with("tests:"), "{v}");
        // The test file's line, when the TOML says where.
        let v = validate(&app, &sup, "queue(\"Sales\");\n", Some("[[case]]\nname = \"x\"\ninputs = 5\n")).await;
        let d = &v["diagnostics"][0];
        assert!(d["message"].as_str().unwrap().starts_with("tests:"), "{v}");
        assert_eq!(d["line"], 3, "{v}");
        // Good tests and a clean script: nothing to say.
        let v = validate(&app, &sup, "queue(\"Sales\");\n", Some("[[case]]\nname = \"x\"\n[case.expect]\nqueue = \"Sales\"\n")).await;
        assert_eq!(v, json!({ "ok": true, "diagnostics": [] }));
    }

    async fn publishing_needs_a_valid_version_with_passing_tests_and_rolls_back(app) {
        let sup = app.login("supervisor").await;
        let admin = app.login("admin").await;
        assert_eq!(save(&app, &sup, "sales-menu", MENU, MENU_PASSING_TESTS).await["version"], 1);
        assert_eq!(save(&app, &sup, "sales-menu", MENU, MENU_FAILING_TESTS).await["version"], 2);
        let unknown_queue = MENU.replace("queue(\"Sales\")", "queue(\"Nowhere\")");
        // Saving a version naming a queue that does not exist works (the
        // queue may come later); the editor is told.
        let saved = save(&app, &sup, "sales-menu", &unknown_queue, "").await;
        assert_eq!(saved["version"], 3);
        let d = diagnostic(saved["diagnostics"].as_array().unwrap(), "error", "Nowhere");
        assert_eq!(d["line"], MENU_QUEUE_LINE, "{d}");
        assert_eq!(save(&app, &sup, "sales-menu", MENU, MENU_PASSING_TESTS).await["version"], 4);

        // Failing tests: refused, the failing case named with its diff.
        let details = invalid_flow(publish(&app, &sup, "sales-menu", 2).await).await;
        assert_eq!(details.len(), 1, "only the failing case: {details:?}");
        let m = details[0]["message"].as_str().unwrap();
        assert!(m.contains("one goes to support") && m.contains("Support"), "{m}");
        assert!(!m.contains("one goes to sales"), "{m}");
        let f = json_ok(app.get("/api/v1/flows/sales-menu", &sup).await, 200).await;
        assert_eq!(f["published_version"], Value::Null, "nothing published: {f}");

        // An unknown queue: refused with its line.
        let details = invalid_flow(publish(&app, &sup, "sales-menu", 3).await).await;
        let d = diagnostic(&details, "error", "Nowhere");
        assert_eq!(d["line"], MENU_QUEUE_LINE, "{d}");

        let p = json_ok(publish(&app, &sup, "sales-menu", 4).await, 200).await;
        assert_eq!(p, json!({ "name": "sales-menu", "published_version": 4 }));
        let f = json_ok(app.get("/api/v1/flows/sales-menu", &sup).await, 200).await;
        assert_eq!(f["published_version"], 4, "{f}");
        assert!(f["published_at"].is_string(), "{f}");
        let published: Vec<i64> = f["versions"].as_array().unwrap().iter()
            .filter(|v| v["published"] == true).map(|v| v["version"].as_i64().unwrap()).collect();
        assert_eq!(published, [4], "{f}");

        // Roll back to version 1 (tests pass there too).
        let p = json_ok(publish(&app, &sup, "sales-menu", 1).await, 200).await;
        assert_eq!(p["published_version"], 1);
        let f = json_ok(app.get("/api/v1/flows/sales-menu", &sup).await, 200).await;
        assert_eq!(f["published_version"], 1, "{f}");
        let v1 = json_ok(app.get("/api/v1/flows/sales-menu/versions/1", &sup).await, 200).await;
        assert_eq!(v1["published"], true);
        let list = json_ok(app.get("/api/v1/flows", &sup).await, 200).await;
        assert_eq!(list["items"][0]["published_version"], 1, "{list}");
        assert_eq!(list["items"][0]["latest_version"], 4, "{list}");

        // A failed publish leaves the published version alone.
        invalid_flow(publish(&app, &sup, "sales-menu", 3).await).await;
        expect_error(publish(&app, &sup, "sales-menu", 99).await, 404, "not_found").await;
        expect_error(publish(&app, &sup, "no-such-flow", 1).await, 404, "not_found").await;
        let f = json_ok(app.get("/api/v1/flows/sales-menu", &sup).await, 200).await;
        assert_eq!(f["published_version"], 1, "{f}");

        // Both publications are in the audit log, with the previous version.
        let audit = json_ok(app.get("/api/v1/audit?action=flow.published", &admin).await, 200).await;
        let details: Vec<&Value> = audit["items"].as_array().unwrap().iter().map(|a| &a["details"]).collect();
        assert_eq!(
            details,
            [
                &json!({ "flow": "sales-menu", "version": 1, "previous": 4 }),
                &json!({ "flow": "sales-menu", "version": 4, "previous": null }),
            ],
            "{audit}"
        );
        let saved = json_ok(app.get("/api/v1/audit?action=flow.version_saved", &admin).await, 200).await;
        assert_eq!(saved["items"].as_array().unwrap().len(), 4, "{saved}");
    }

    async fn the_simulator_stops_where_the_flow_waits_and_follows_the_case(app) {
        let sup = app.login("supervisor").await;

        let o = simulate(&app, &sup, MENU, &[], Value::Null).await;
        assert_eq!(o["waiting_for"], "digits", "{o}");
        assert_eq!(o["end"], Value::Null, "{o}");
        let path = o["path"].as_array().unwrap();
        let kinds: Vec<&str> = path.iter().map(|s| s["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["answer", "gather"], "{o}");
        let last = path.last().unwrap();
        assert_eq!(last["prompt"], "main_menu", "{last}");
        assert_eq!(last["line"], MENU_GATHER_LINE, "{last}");
        assert_eq!(last["waiting"], true, "{last}");

        let o = simulate(&app, &sup, MENU, &["digits:1"], Value::Null).await;
        assert_eq!(o["waiting_for"], Value::Null, "{o}");
        assert_eq!(o["end"]["kind"], "queue", "{o}");
        assert_eq!(o["end"]["queue"], "Sales", "{o}");
        assert_eq!(o["end"]["priority"], 0, "{o}");
        assert_eq!(o["end"]["skills"], json!([]), "{o}");
        let last = o["path"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["kind"].as_str(), last["line"].as_u64()), (Some("queue"), Some(MENU_QUEUE_LINE)), "{o}");

        // A wrong key, then the simulator waits again (the client resends all inputs).
        let o = simulate(&app, &sup, MENU, &["digits:7"], Value::Null).await;
        assert_eq!(o["waiting_for"], "digits", "{o}");
        let gathers = o["path"].as_array().unwrap().iter().filter(|s| s["kind"] == "gather").count();
        assert_eq!(gathers, 2, "{o}");

        // Malformed input: 422 naming the entry.
        let r = app
            .post("/api/v1/flows/simulate", &sup, &json!({ "source": MENU, "inputs": ["digits:1", "press 1"] }))
            .await;
        assert_eq!(field_errors(r).await, ["inputs[1]"]);
        let r = app
            .post("/api/v1/flows/simulate", &sup, &json!({ "source": MENU, "inputs": ["press 1"] }))
            .await;
        assert_eq!(field_errors(r).await, ["inputs[0]"]);
        let r = app
            .post("/api/v1/flows/simulate", &sup, &json!({ "source": MENU, "case": { "time": "tomorrow" } }))
            .await;
        assert_eq!(field_errors(r).await, ["case"]);
        let r = app
            .post("/api/v1/flows/simulate", &sup, &json!({ "source": MENU, "case": { "channel": "fax" } }))
            .await;
        assert_eq!(field_errors(r).await, ["case"]);
        let r = app
            .post("/api/v1/flows/simulate", &sup, &json!({ "source": MENU, "case": { "contact": "Grace" } }))
            .await;
        assert_eq!(field_errors(r).await, ["case"]);
        // A script that does not compile: its line.
        let r = app
            .post("/api/v1/flows/simulate", &sup, &json!({ "source": "answer();\nlet = 1;\n" }))
            .await;
        assert_eq!(invalid_flow(r).await[0]["line"], 2);

        // Business hours (Paris, weekdays 09:00-18:00).
        let open = simulate(&app, &sup, HOURS_FLOW, &[], json!({ "time": "2026-12-01T10:00:00+01:00" })).await;
        assert_eq!(open["end"]["kind"], "queue", "{open}");
        assert_eq!(open["end"]["queue"], "Sales", "{open}");
        assert!(!open["path"].as_array().unwrap().iter().any(|s| s["kind"] == "play"), "{open}");
        let closed = simulate(&app, &sup, HOURS_FLOW, &[], json!({ "time": "2026-12-01T20:00:00+01:00" })).await;
        assert_eq!(closed["end"]["kind"], "hangup", "{closed}");
        let plays: Vec<&Value> = closed["path"].as_array().unwrap().iter().filter(|s| s["kind"] == "play").collect();
        assert_eq!(plays.len(), 1, "{closed}");
        assert_eq!((plays[0]["prompt"].as_str(), plays[0]["line"].as_u64()), (Some("closed"), Some(11)));
        // The same time on a Saturday is closed too.
        let saturday = simulate(&app, &sup, HOURS_FLOW, &[], json!({ "time": "2026-12-05T10:00:00+01:00" })).await;
        assert_eq!(saturday["end"]["kind"], "hangup", "{saturday}");

        // The caller and the channel.
        let vip = simulate(&app, &sup, HOURS_FLOW, &[], json!({ "caller": "+33612345678" })).await;
        let sets: Vec<&Value> = vip["path"].as_array().unwrap().iter().filter(|s| s["kind"] == "set").collect();
        assert_eq!(sets.len(), 1, "{vip}");
        assert_eq!((sets[0]["name"].as_str(), &sets[0]["value"]), (Some("vip"), &json!(true)));
        let anyone = simulate(&app, &sup, HOURS_FLOW, &[], Value::Null).await;
        assert!(!anyone["path"].as_array().unwrap().iter().any(|s| s["kind"] == "set" || s["kind"] == "say"), "{anyone}");
        assert_eq!(anyone["end"]["kind"], "queue", "the default time is a Monday morning: {anyone}");
        let chat = simulate(&app, &sup, HOURS_FLOW, &[], json!({ "channel": "chat" })).await;
        let first = &chat["path"][0];
        assert_eq!((first["kind"].as_str(), first["text"].as_str()), (Some("say"), Some("Hello from chat")), "{chat}");
    }

    async fn an_endless_loop_in_the_simulator_is_contained(app) {
        let sup = app.login("supervisor").await;
        let started = Instant::now();
        let o = simulate(&app, &sup, "answer();\nloop {}\n", &[], Value::Null).await;
        let took = started.elapsed();
        assert_eq!(o["end"]["kind"], "error", "{o}");
        let m = o["end"]["message"].as_str().unwrap();
        assert!(m.contains("operations"), "{m}");
        assert_eq!(o["end"]["line"], 2, "{o}");
        assert_eq!(o["path"].as_array().unwrap().last().unwrap()["kind"], "error", "{o}");
        assert!(took < Duration::from_secs(5), "an endless loop took {took:?}");

        // A loop that keeps issuing commands stops at the command limit.
        let o = simulate(&app, &sup, "loop { log(\"again\"); }\n", &[], Value::Null).await;
        assert_eq!(o["end"]["kind"], "error", "{o}");
        assert!(o["end"]["message"].as_str().unwrap().contains("commands"), "{o}");
        // The server is still answering.
        json_ok(app.get("/api/v1/flows", &sup).await, 200).await;
    }

    async fn flow_tests_over_http_report_each_case_with_a_diff(app) {
        let sup = app.login("supervisor").await;
        let r = app
            .post("/api/v1/flows/test", &sup, &json!({ "source": MENU, "tests": MENU_PASSING_TESTS }))
            .await;
        let t = json_ok(r, 200).await;
        assert_eq!(t["passed"], true, "{t}");
        let names: Vec<&str> = t["cases"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["one goes to sales", "no key hangs up"]);
        for c in t["cases"].as_array().unwrap() {
            assert_eq!((&c["passed"], &c["diff"]), (&json!(true), &Value::Null), "{c}");
            assert!(!c["path"].as_array().unwrap().is_empty(), "{c}");
        }

        let r = app
            .post("/api/v1/flows/test", &sup, &json!({ "source": MENU, "tests": MENU_FAILING_TESTS }))
            .await;
        let t = json_ok(r, 200).await;
        assert_eq!(t["passed"], false, "{t}");
        assert_eq!(t["cases"][0]["passed"], true, "{t}");
        let failing = &t["cases"][1];
        assert_eq!(failing["name"], "one goes to support");
        assert_eq!(failing["passed"], false);
        let diff = failing["diff"].as_str().unwrap();
        assert!(diff.contains("\"Support\"") && diff.contains("\"Sales\""), "{diff}");
        assert_eq!(failing["path"].as_array().unwrap().last().unwrap()["queue"], "Sales", "{failing}");

        // A prompt list that differs shows - expected and + found.
        let tests = "[[case]]\nname = \"prompts\"\ninputs = [\"digits:1\"]\n[case.expect]\nprompts = [\"greeting\", \"main_menu\"]\n";
        let t = json_ok(app.post("/api/v1/flows/test", &sup, &json!({ "source": MENU, "tests": tests })).await, 200).await;
        let diff = t["cases"][0]["diff"].as_str().unwrap();
        assert!(diff.contains("- greeting"), "{diff}");

        // Malformed tests or script: 422 invalid_flow.
        let r = app.post("/api/v1/flows/test", &sup, &json!({ "source": MENU, "tests": "[[case]\n" })).await;
        assert!(invalid_flow(r).await[0]["message"].as_str().unwrap().starts_with("tests:"));
        let r = app.post("/api/v1/flows/test", &sup, &json!({ "source": "answer(;\n", "tests": MENU_PASSING_TESTS })).await;
        assert_eq!(invalid_flow(r).await[0]["line"], 1);
        // Tests are required here.
        let r = app.post("/api/v1/flows/test", &sup, &json!({ "source": MENU })).await;
        let e = expect_error(r, 422, "validation_failed").await;
        assert!(e["error"]["message"].as_str().unwrap().contains("tests"), "{e}");
    }

    async fn only_supervisors_and_admins_reach_flows_and_only_admins_change_settings(app) {
        let sup = app.login("supervisor").await;
        let admin = app.login("admin").await;
        save(&app, &sup, "sales-menu", MENU, "").await;
        for who in ["agent", "marketer"] {
            let c = app.login(who).await;
            expect_error(app.get("/api/v1/flows", &c).await, 403, "forbidden").await;
            expect_error(app.get("/api/v1/flows/sales-menu", &c).await, 403, "forbidden").await;
            expect_error(app.get("/api/v1/flows/sales-menu/versions/1", &c).await, 403, "forbidden").await;
            expect_error(app.post("/api/v1/flows/x/versions", &c, &json!({ "source": MENU })).await, 403, "forbidden").await;
            expect_error(publish(&app, &c, "sales-menu", 1).await, 403, "forbidden").await;
            expect_error(app.post("/api/v1/flows/validate", &c, &json!({ "source": MENU })).await, 403, "forbidden").await;
            expect_error(app.post("/api/v1/flows/simulate", &c, &json!({ "source": MENU })).await, 403, "forbidden").await;
            expect_error(app.post("/api/v1/flows/test", &c, &json!({ "source": MENU, "tests": "" })).await, 403, "forbidden").await;
            expect_error(app.get("/api/v1/flow-settings", &c).await, 403, "forbidden").await;
            expect_error(put_settings(&app, &c, &json!({ "http_allowed_hosts": ["a.example"] })).await, 403, "forbidden").await;
        }
        expect_error(app.get("/api/v1/flows", &Creds::None).await, 401, "unauthenticated").await;
        // Supervisors read the settings; only admins change them.
        json_ok(app.get("/api/v1/flow-settings", &sup).await, 200).await;
        expect_error(put_settings(&app, &sup, &json!({ "http_allowed_hosts": ["a.example"] })).await, 403, "forbidden").await;
        let s = json_ok(app.get("/api/v1/flow-settings", &admin).await, 200).await;
        assert_eq!(s, default_settings());
        // A cookie without the CSRF token cannot write.
        let Creds::Session { cookie, .. } = &sup else { unreachable!() };
        let r = app.post("/api/v1/flows/x/versions", &Creds::CookieOnly(cookie.clone()), &json!({ "source": MENU })).await;
        expect_error(r, 403, "csrf_failed").await;
        // Nobody saved anything above.
        let list = json_ok(app.get("/api/v1/flows", &admin).await, 200).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["items"][0]["latest_version"], 1, "{list}");

        // Admins do all a supervisor does; a supervisor's API key works.
        assert_eq!(save(&app, &admin, "sales-menu", MENU, "").await["version"], 2);
        let key = app.api_key("demo", "supervisor").await;
        assert_eq!(save(&app, &key, "sales-menu", MENU, MENU_PASSING_TESTS).await["version"], 3);
        json_ok(publish(&app, &key, "sales-menu", 3).await, 200).await;
        let f = json_ok(app.get("/api/v1/flows/sales-menu", &key).await, 200).await;
        assert_eq!(f["published_version"], 3);
        assert!(f["versions"][0]["created_by"].as_str().unwrap().starts_with("api_key:"), "{f}");
        let o = simulate(&app, &key, MENU, &["digits:1"], Value::Null).await;
        assert_eq!(o["end"]["queue"], "Sales");
        let agent_key = app.api_key("demo", "agent").await;
        expect_error(app.get("/api/v1/flows", &agent_key).await, 403, "forbidden").await;
    }

    async fn another_tenant_cannot_see_or_publish_the_flows(app) {
        let sup = app.login("supervisor").await;
        let admin = app.login("admin").await;
        save(&app, &sup, "sales-menu", MENU, MENU_PASSING_TESTS).await;
        save(&app, &sup, "sales-menu", MENU, MENU_PASSING_TESTS).await;
        json_ok(publish(&app, &sup, "sales-menu", 1).await, 200).await;
        json_ok(put_settings(&app, &admin, &json!({ "http_allowed_hosts": ["crm.example.com"], "fallback_queue": "Support" })).await, 200).await;

        let other = app.login_to("other", "supervisor@other.example", DEMO_PASSWORD).await;
        let list = json_ok(app.get("/api/v1/flows", &other).await, 200).await;
        assert_eq!(list["items"], json!([]), "{list}");
        expect_error(app.get("/api/v1/flows/sales-menu", &other).await, 404, "not_found").await;
        expect_error(app.get("/api/v1/flows/sales-menu/versions/1", &other).await, 404, "not_found").await;
        expect_error(publish(&app, &other, "sales-menu", 2).await, 404, "not_found").await;
        // Its settings are its own.
        let s = json_ok(app.get("/api/v1/flow-settings", &other).await, 200).await;
        assert_eq!(s, default_settings());
        let v = validate(&app, &other, "http_get(\"https://crm.example.com/x\");\n", None).await;
        assert_eq!(v["ok"], false, "the demo tenant's hosts are not the other's: {v}");

        // The other tenant's flow of the same name is its own, numbered from 1.
        let key = app.api_key("other", "supervisor").await;
        assert_eq!(save(&app, &key, "sales-menu", "queue(\"Support\");\n", "").await["version"], 1);
        json_ok(publish(&app, &key, "sales-menu", 1).await, 200).await;
        let mine = json_ok(app.get("/api/v1/flows/sales-menu/versions/1", &key).await, 200).await;
        assert_eq!(mine["source"], "queue(\"Support\");\n");
        expect_error(app.get("/api/v1/flows/sales-menu/versions/2", &key).await, 404, "not_found").await;

        // The demo tenant's flow is untouched.
        let f = json_ok(app.get("/api/v1/flows/sales-menu", &sup).await, 200).await;
        assert_eq!(f["published_version"], 1, "{f}");
        assert_eq!(f["versions"].as_array().unwrap().len(), 2, "{f}");
        let v1 = json_ok(app.get("/api/v1/flows/sales-menu/versions/1", &sup).await, 200).await;
        assert_eq!(v1["source"], MENU);
        let list = json_ok(app.get("/api/v1/flows", &sup).await, 200).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["items"][0]["latest_version"], 2, "{list}");
    }

    async fn bad_flow_names_sizes_and_fields_are_refused(app) {
        let sup = app.login("supervisor").await;
        let long = "x".repeat(65);
        for name in ["a..b", "..hidden", "Sales-Menu", "sales menu", long.as_str()] {
            let path = format!("/api/v1/flows/{}/versions", urlencode(name));
            let r = app.post(&path, &sup, &json!({ "source": MENU })).await;
            assert_eq!(field_errors(r).await, ["name"], "{name:?}");
            // A name no flow could have names no flow.
            let r = app.get(&format!("/api/v1/flows/{}", urlencode(name)), &sup).await;
            expect_error(r, 404, "not_found").await;
            let r = publish(&app, &sup, &urlencode(name), 1).await;
            expect_error(r, 404, "not_found").await;
        }
        // A `..` segment sent as is reaches no flow.
        let key = app.api_key("demo", "supervisor").await;
        let body = json!({ "source": MENU }).to_string();
        let status = raw_status(&app, "POST", "/api/v1/flows/../versions", &key, &body).await;
        assert_eq!(status, 422, "POST /flows/../versions is refused by its name");
        // 64 characters is the longest name.
        let longest = "x".repeat(64);
        assert_eq!(save(&app, &sup, &longest, MENU, "").await["version"], 1);
        let list = json_ok(app.get("/api/v1/flows", &sup).await, 200).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "only the valid name was saved: {list}");

        // Sizes: the source at most 256 KiB (under the 1 MiB body limit, so a 422).
        assert_eq!(app.settings.http.max_body_bytes, 1024 * 1024);
        let big = format!("// {}\nqueue(\"Sales\");\n", "x".repeat(256 * 1024));
        let r = app.post("/api/v1/flows/big/versions", &sup, &json!({ "source": big })).await;
        assert_eq!(field_errors(r).await, ["source"]);
        let r = app.post("/api/v1/flows/validate", &sup, &json!({ "source": big })).await;
        assert_eq!(field_errors(r).await, ["source"]);
        let r = app.post("/api/v1/flows/simulate", &sup, &json!({ "source": big })).await;
        assert_eq!(field_errors(r).await, ["source"]);
        let r = app.post("/api/v1/flows/big/versions", &sup, &json!({ "source": MENU, "comment": "c".repeat(501) })).await;
        assert_eq!(field_errors(r).await, ["comment"]);
        let r = app.post("/api/v1/flows/simulate", &sup, &json!({ "source": MENU, "inputs": vec!["silence"; 301] })).await;
        assert_eq!(field_errors(r).await, ["inputs"]);
        // Over the body limit: 413 before anything is read.
        let huge = "x".repeat(1024 * 1024 + 1);
        let r = app.post("/api/v1/flows/big/versions", &sup, &json!({ "source": huge })).await;
        expect_error(r, 413, "payload_too_large").await;
        expect_error(app.get("/api/v1/flows/big", &sup).await, 404, "not_found").await;

        // Unknown fields and wrong types.
        let r = app.post("/api/v1/flows/big/versions", &sup, &json!({ "source": MENU, "published": true })).await;
        let e = expect_error(r, 422, "validation_failed").await;
        assert!(e.to_string().contains("published"), "{e}");
        let r = app.post("/api/v1/flows/validate", &sup, &json!({ "source": MENU, "strict": true })).await;
        expect_error(r, 422, "validation_failed").await;
        let r = app.post("/api/v1/flows/simulate", &sup, &json!({ "source": MENU, "case": { "weather": "rain" } })).await;
        let e = expect_error(r, 422, "validation_failed").await;
        assert!(e.to_string().contains("weather"), "{e}");
        let r = app.post(&format!("/api/v1/flows/{longest}/publish"), &sup, &json!({ "version": "1" })).await;
        expect_error(r, 422, "validation_failed").await;
        let r = app.post(&format!("/api/v1/flows/{longest}/publish"), &sup, &json!({ "version": 1, "force": true })).await;
        expect_error(r, 422, "validation_failed").await;
        let r = app.post("/api/v1/flows/big/versions", &sup, &json!({ "tests": "" })).await;
        expect_error(r, 422, "validation_failed").await;
        expect_error(app.get("/api/v1/flows/big", &sup).await, 404, "not_found").await;
        let f = json_ok(app.get(&format!("/api/v1/flows/{longest}"), &sup).await, 200).await;
        assert_eq!(f["published_version"], Value::Null, "{f}");
    }

    async fn flow_settings_are_validated_and_a_refused_change_changes_nothing(app) {
        let admin = app.login("admin").await;
        let good = json!({ "fallback_queue": "Support", "apology_prompt": "sorry", "http_allowed_hosts": ["crm.example.com", "api.example.org"], "transcribe_calls": true });
        let s = json_ok(put_settings(&app, &admin, &good).await, 200).await;
        assert_eq!(s, good);

        let r = put_settings(&app, &admin, &json!({ "http_allowed_hosts": ["crm.example.com", "http://x"] })).await;
        assert_eq!(field_errors(r).await, ["http_allowed_hosts[1]"]);
        for bad in ["x:8080", "x/path", "", "a..b", "user@x"] {
            let r = put_settings(&app, &admin, &json!({ "http_allowed_hosts": [bad] })).await;
            assert_eq!(field_errors(r).await, ["http_allowed_hosts[0]"], "{bad:?}");
        }
        let many: Vec<String> = (0..51).map(|i| format!("h{i}.example.com")).collect();
        let r = put_settings(&app, &admin, &json!({ "http_allowed_hosts": many })).await;
        assert_eq!(field_errors(r).await, ["http_allowed_hosts"]);
        let r = put_settings(&app, &admin, &json!({ "fallback_queue": "Nowhere" })).await;
        assert_eq!(field_errors(r).await, ["fallback_queue"]);
        let r = put_settings(&app, &admin, &json!({ "apology_prompt": "../secret" })).await;
        assert_eq!(field_errors(r).await, ["apology_prompt"]);
        let r = put_settings(&app, &admin, &json!({ "http_allowed_hosts": [], "proxy": "x" })).await;
        expect_error(r, 422, "validation_failed").await;
        for not_settings in [json!([]), json!(null), json!("x")] {
            let r = put_settings(&app, &admin, &not_settings).await;
            assert_eq!(field_errors(r).await, ["body"], "{not_settings}");
        }
        // Nothing changed.
        let got = json_ok(app.get("/api/v1/flow-settings", &admin).await, 200).await;
        assert_eq!(got, good);

        // 50 hosts is the most; clearing works.
        let fifty: Vec<String> = (0..50).map(|i| format!("h{i}.example.com")).collect();
        let s = json_ok(put_settings(&app, &admin, &json!({ "http_allowed_hosts": fifty })).await, 200).await;
        assert_eq!(s["http_allowed_hosts"].as_array().unwrap().len(), 50);
        assert_eq!(s["fallback_queue"], Value::Null, "a PUT replaces the settings: {s}");
        let s = json_ok(put_settings(&app, &admin, &json!({})).await, 200).await;
        assert_eq!(s, default_settings());
    }

    async fn the_shipped_example_flows_validate_and_publish_on_the_demo_data(app) {
        // What `seed --demo` publishes must pass the checks a supervisor's
        // flow passes: the queues and skills of the demo data, its tests.
        let sup = app.login("supervisor").await;
        for (name, source, tests) in [
            ("main-menu", include_str!("../../flows/main-menu.rhai"), include_str!("../../flows/main-menu.test.toml")),
            ("speech-menu", include_str!("../../flows/speech-menu.rhai"), include_str!("../../flows/speech-menu.test.toml")),
            ("chat-welcome", include_str!("../../flows/chat-welcome.rhai"), include_str!("../../flows/chat-welcome.test.toml")),
        ] {
            let v = validate(&app, &sup, source, Some(tests)).await;
            assert_eq!(v["ok"], true, "{name}: {v}");
            for d in v["diagnostics"].as_array().unwrap() {
                assert!(d["message"].as_str().unwrap().contains("prompt"), "{name}: only missing prompts: {d}");
            }
            let t = json_ok(app.post("/api/v1/flows/test", &sup, &json!({ "source": source, "tests": tests })).await, 200).await;
            assert_eq!(t["passed"], true, "{name}: {t}");
            assert!(!t["cases"].as_array().unwrap().is_empty());
            assert_eq!(save(&app, &sup, name, source, tests).await["version"], 1);
            let p = json_ok(publish(&app, &sup, name, 1).await, 200).await;
            assert_eq!(p["published_version"], 1, "{name}");
        }
        let list = json_ok(app.get("/api/v1/flows", &sup).await, 200).await;
        let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["chat-welcome", "main-menu", "speech-menu"], "by name");
    }

    async fn concurrent_saves_of_a_new_flow_all_get_a_version(app) {
        // The editor's first save can race another supervisor's (or a
        // double click): every save gets its own number, none fails.
        let sup = app.login("supervisor").await;
        let n = 8;
        let versions = saves_at_once(&app, &sup, "raced", n).await;
        assert_eq!(versions, (1..=n).collect::<Vec<i64>>());
        let f = json_ok(app.get("/api/v1/flows/raced", &sup).await, 200).await;
        assert_eq!(f["versions"].as_array().unwrap().len(), n as usize, "{f}");
    }

    async fn concurrent_saves_of_an_existing_flow_all_get_a_version(app) {
        let sup = app.login("supervisor").await;
        assert_eq!(save(&app, &sup, "raced", MENU, "").await["version"], 1);
        let n = 8;
        let versions = saves_at_once(&app, &sup, "raced", n).await;
        assert_eq!(versions, (2..=n + 1).collect::<Vec<i64>>());
    }

    async fn concurrent_flow_settings_changes_all_succeed(app) {
        let admin = app.login("admin").await;
        let n = 8;
        let bodies: Vec<Value> = (0..n).map(|i| json!({ "http_allowed_hosts": [format!("h{i}.example.com")] })).collect();
        let puts = bodies.iter().map(|b| put_settings(&app, &admin, b));
        let answers = futures_util::future::join_all(puts).await;
        for r in answers {
            json_ok(r, 200).await;
        }
        let s = json_ok(app.get("/api/v1/flow-settings", &admin).await, 200).await;
        assert_eq!(s["http_allowed_hosts"].as_array().unwrap().len(), 1, "one of the changes won: {s}");
    }

    async fn deeply_nested_scripts_are_refused_and_the_server_stays_up(app) {
        let sup = app.login("supervisor").await;
        let depth = 60_000;
        let sources = [
            format!("let x = {}1{};", "(".repeat(depth), ")".repeat(depth)),
            format!("let x = {}{};", "[".repeat(depth), "]".repeat(depth)),
            format!("{}{}", "{".repeat(depth), "}".repeat(depth)),
            format!("let x = {}1;", "-".repeat(depth * 2)),
            format!("{}queue(\"Sales\");{}", "if true { ".repeat(depth / 10), "}".repeat(depth / 10)),
        ];
        for source in &sources {
            assert!(source.len() < 256 * 1024);
            let r = app.post("/api/v1/flows/validate", &sup, &json!({ "source": source })).await;
            let v = json_ok(r, 200).await;
            assert_eq!(v["ok"], false, "{}", &source[..20]);
            let r = app.post("/api/v1/flows/simulate", &sup, &json!({ "source": source })).await;
            invalid_flow(r).await;
        }
        json_ok(app.get("/api/v1/flows", &sup).await, 200).await;
    }

    async fn validation_reads_character_literals_the_way_rhai_does(app) {
        // A character literal holding a double quote must not hide the
        // queue named after it.
        let sup = app.login("supervisor").await;
        let source = "let quote = '\"';\nqueue(\"Nowhere\");\n";
        let o = simulate(&app, &sup, source, &[], Value::Null).await;
        assert_eq!(o["end"]["queue"], "Nowhere", "Rhai runs it: {o}");
        let v = validate(&app, &sup, source, None).await;
        let d = diagnostic(v["diagnostics"].as_array().unwrap(), "error", "Nowhere");
        assert_eq!(d["line"], 2, "{d}");
        // So it cannot be published.
        save(&app, &sup, "quoted", source, "").await;
        invalid_flow(publish(&app, &sup, "quoted", 1).await).await;
    }
}

fn urlencode(s: &str) -> String {
    s.replace(' ', "%20")
}

/// Runs `switchboard flow test ARGS` in `dir` (no configuration needed).
fn flow_test(dir: &std::path::Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("flow")
        .arg("test")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run switchboard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn flow_test_command_passes_on_the_shipped_flows() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = flow_test(repo, &["flows"]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let files: Vec<String> = std::fs::read_dir(repo.join("flows"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".test.toml"))
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        assert!(out.contains(f.as_str()), "{f} was not run:\n{out}");
    }
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(out.contains(&format!("({} files)", files.len())), "{out}");
    assert!(!out.contains('✗'), "{out}");
}

const CLI_FLOW: &str = r#"answer();
let choice = menu(#{ prompt: "main_menu", options: "12" });
if choice == "1" { queue("Sales") }
queue("Support", #{ skills: ["english"] });
"#;

const CLI_TESTS: &str = r#"[[case]]
name = "one is sales"
inputs = ["digits:1"]
[case.expect]
prompts = ["main_menu"]
queue = "Sales"

[[case]]
name = "two is support with a greeting"
inputs = ["digits:2"]
[case.expect]
prompts = ["greeting", "main_menu"]
queue = "Support"
"#;

#[test]
fn flow_test_command_shows_failing_cases_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("menu.rhai"), CLI_FLOW).unwrap();
    std::fs::write(dir.path().join("menu.test.toml"), CLI_TESTS).unwrap();
    for arg in [".", "menu.rhai", "menu.test.toml"] {
        let o = flow_test(dir.path(), &[arg]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{arg}: {out}");
        assert!(out.contains("✓ one is sales"), "{arg}: {out}");
        assert!(
            out.contains("✗ two is support with a greeting"),
            "{arg}: {out}"
        );
        let diff_lines: Vec<&str> = out
            .lines()
            .filter(|l| l.trim_start().starts_with("- "))
            .collect();
        assert!(
            diff_lines.iter().any(|l| l.trim() == "- greeting"),
            "{arg}: the expected prompt is shown: {out}"
        );
        assert!(out.contains("1 passed, 1 failed (1 files)"), "{arg}: {out}");
    }
    // Fixed, it passes.
    std::fs::write(
        dir.path().join("menu.test.toml"),
        CLI_TESTS.replace("\"greeting\", ", ""),
    )
    .unwrap();
    let o = flow_test(dir.path(), &["."]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("2 passed, 0 failed (1 files)"));
}

#[test]
fn flow_test_command_reports_invalid_files_and_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("menu.rhai"), CLI_FLOW).unwrap();
    std::fs::write(dir.path().join("bad.test.toml"), "[[case]\nname = \"x\"\n").unwrap();
    let o = flow_test(dir.path(), &["."]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("bad.test.toml"), "{out}");
    assert!(out.contains("the file is not valid"), "{out}");

    // A script that does not compile: its line, and the cases fail.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("menu.rhai"), "answer();\nlet = 1;\n").unwrap();
    std::fs::write(broken.path().join("menu.test.toml"), CLI_TESTS).unwrap();
    let o = flow_test(broken.path(), &["menu.test.toml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("menu.rhai:2:"),
        "the compile error's line: {out}"
    );

    // Nothing to run: exit code 2 and why on stderr.
    let o = flow_test(dir.path(), &["no-such-folder"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-folder"));
    let empty = tempfile::tempdir().unwrap();
    let o = flow_test(empty.path(), &["."]);
    assert_eq!(o.status.code(), Some(2));
    let o = flow_test(dir.path(), &["menu.rhai"]);
    assert_eq!(o.status.code(), Some(2), "a flow without tests");
    assert!(String::from_utf8_lossy(&o.stderr).contains("menu.test.toml"));
}
