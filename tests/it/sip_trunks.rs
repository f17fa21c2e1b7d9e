//! Trunks and outbound calls: the `/sip/trunks*` admin API (validation,
//! sealed passwords, isolation), and calls placed with `POST /calls` to a
//! SIPp `uas` standing in for the trunk's far end: answered (and hung up by
//! our API: the uas gets BYE), busy (486), ringing forever (our CANCEL on
//! the ring timeout: 487), a digest challenge (answered with the trunk's
//! credentials, checked by SIPp's `verifyauth`; without credentials the call
//! fails with `auth_required`), the calls-per-second limit (429, exactly
//! `limit` calls placed), who may call (not agents or marketers) and bad
//! input (422, nothing placed). The OPTIONS keep-alive: a trunk whose far
//! end (SIPp) answers is `up` with the status and a round-trip time, one on
//! a closed port `down`, a disabled one unchecked. Registration: a SIPp
//! registrar challenges (401) and checks our digest (`verifyauth`), grants
//! 2 s, and gets the refresh (challenged and checked again); a registrar
//! that never answers leaves the trunk `failed`.

use std::time::Duration;

use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;
use crate::sip_calls::events;
use crate::sipp::Provisional::Ringing;
use crate::sipp::{
    self, Final, HangsUp, PCMU, Reply, Sdp, assert_ok, far_end, free_port, label,
    recv_checking_auth, recv_first, recv_then, uas_scenario, uas_steps,
};

const TO: &str = "+442071838770";
const CALLER_ID: &str = "+442071838760";

fn calls_on(s: &mut switchboard::config::Settings) {
    s.sip.enabled = true;
    s.sip.rtp_bind = "127.0.0.1".parse().unwrap();
    // Apart from the other SIP tests' ports (they may run at once).
    s.sip.rtp_port_min = 51000;
    s.sip.rtp_port_max = 51999;
}

/// A digest challenge (`n`, when given, ends the nonce).
fn challenge(n: &str) -> String {
    format!(
        r#"WWW-Authenticate: Digest realm="trunk.test", nonce="4a7b1c9d2e5f{n}", algorithm=MD5"#
    )
}

/// 180, then 486.
fn busy() -> String {
    uas_scenario(
        "trunk busy",
        &[Ringing],
        0,
        Final::Refused("486 Busy Here", ""),
    )
}

/// 180, and nothing more until the CANCEL (200, then 487 and its ACK).
fn rings_forever() -> String {
    uas_scenario("trunk rings forever", &[Ringing], 0, Final::Cancelled)
}

const TRUNK_USER: &str = "trunkuser";
const TRUNK_PASSWORD: &str = "trunk-secret-1";

/// 401 with a challenge; the repeated INVITE's Authorization is checked
/// (`verifyauth`): 403 when wrong, else 180, 200 and the BYE.
fn challenging() -> String {
    let sdp = Sdp {
        origin: "trunk 53655765 2353687637",
        media: PCMU,
    };
    let answered = Final::Answered {
        sdp,
        then: "",
        hangs_up: HangsUp::Caller,
    };
    sipp::scenario(
        "trunk challenges",
        &[
            recv_first("INVITE"),
            uas_steps(
                1,
                &[],
                0,
                Final::Refused("401 Unauthorized", &challenge("")),
            ),
            recv_checking_auth("INVITE", TRUNK_USER, TRUNK_PASSWORD, "good"),
            Reply::new("403 Forbidden", 2).to_string(),
            recv_then("ACK", "done"),
            label("good"),
            uas_steps(2, &[Ringing], 0, answered),
            label("done"),
        ],
    )
}

/// Only the challenge (for a trunk without credentials).
fn challenge_only() -> String {
    let challenge = challenge("");
    uas_scenario(
        "trunk challenges once",
        &[],
        0,
        Final::Refused("401 Unauthorized", &challenge),
    )
}

/// Answers an OPTIONS with 200 (each OPTIONS is a SIPp call of its own).
fn answers_options() -> String {
    let ok = Reply::new("200 OK", 1).header("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS");
    sipp::scenario(
        "trunk answers OPTIONS",
        &[recv_first("OPTIONS"), ok.to_string()],
    )
}

/// A registrar: 401, then the credentials checked (403 when wrong) and
/// 200 granting 2 s; the refresh the same way, granted an hour.
fn registrar() -> String {
    let challenge_then_check = |n: u8, expires: u32| {
        let good = format!("good{n}");
        [
            recv_first("REGISTER"),
            Reply::new("401 Unauthorized", n)
                .header(&challenge(&n.to_string()))
                .to_string(),
            recv_checking_auth("REGISTER", TRUNK_USER, TRUNK_PASSWORD, &good),
            Reply::new("403 Forbidden", n).next("done").to_string(),
            label(&good),
            Reply::new("200 OK", n)
                .header(&format!("[last_Contact:];expires={expires}"))
                .to_string(),
        ]
        .concat()
    };
    sipp::scenario(
        "trunk registrar",
        &[
            challenge_then_check(1, 2),
            challenge_then_check(2, 3600),
            label("done"),
        ],
    )
}

fn keepalive_on(s: &mut switchboard::config::Settings) {
    calls_on(s);
    s.sip.trunk_keepalive_secs = 1;
}

fn registration_on(s: &mut switchboard::config::Settings) {
    calls_on(s);
    // No OPTIONS at the registrar (SIPp would take one for a new call).
    s.sip.trunk_keepalive_secs = 3600;
}

pub(crate) async fn add_trunk(app: &TestApp, port: u16, extra: Value) -> String {
    let admin = app.login("admin").await;
    let mut body = json!({ "name": format!("trunk {port}"), "host": "127.0.0.1", "port": port, "caller_id": CALLER_ID });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app.post("/api/v1/sip/trunks", &admin, &body).await;
    json_ok(r, 201).await["id"].as_str().unwrap().to_owned()
}

async fn call(app: &TestApp, trunk: &str, extra: Value) -> String {
    let sup = app.login("supervisor").await;
    let mut body = json!({ "to": TO, "trunk_id": trunk });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app.post("/api/v1/calls", &sup, &body).await;
    let v = json_ok(r, 202).await;
    assert_eq!(v["to"], TO);
    v["interaction_id"].as_str().unwrap().to_owned()
}

fn kinds(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn event<'a>(evs: &'a [Value], kind: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {evs:?}"))
}

async fn has_event(app: &TestApp, id: &str, kind: &str, secs: u64) -> Vec<Value> {
    eventually(secs, &format!("a {kind} event"), || async {
        let evs = events(app, id).await;
        evs.iter().any(|e| e["kind"] == kind).then_some(evs)
    })
    .await
}

async fn closed(app: &TestApp, id: &str) -> (Value, Vec<Value>) {
    let admin = app.login("admin").await;
    eventually(20, "the call's interaction is closed", || async {
        let i = json_ok(
            app.get(&format!("/api/v1/interactions/{id}"), &admin).await,
            200,
        )
        .await;
        (i["state"] == "closed").then_some(())?;
        Some((i, events(app, id).await))
    })
    .await
}

async fn outbound_voice(app: &TestApp) -> Vec<Value> {
    let admin = app.login("admin").await;
    let v = json_ok(app.get("/api/v1/interactions?limit=100", &admin).await, 200).await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["channel"] == "voice" && i["direction"] == "outbound")
        .cloned()
        .collect()
}

async fn hang_up(app: &TestApp, id: &str) {
    let sup = app.login("supervisor").await;
    let r = app
        .post(&format!("/api/v1/calls/{id}/hang-up"), &sup, &json!({}))
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

both_backends! {
    async fn trunks_are_validated_sealed_and_never_show_their_password(app) {
        let admin = app.login("admin").await;
        let body = json!({ "name": "Carrier A", "host": "sip.carrier.example", "port": 5080, "transport": "tcp",
                           "auth_username": "acct-1", "password": "carrier-password-1", "caller_id": "(202) 456-1111", "cps_limit": 3 });
        let r = app.post("/api/v1/sip/trunks", &admin, &body).await;
        let created = json_ok(r, 201).await;
        let text = created.to_string();
        assert!(!text.contains("carrier-password-1"), "{text}");
        assert_eq!(created["has_password"], true);
        assert_eq!(created["caller_id"], "+12024561111", "normalised in the tenant's region (US)");
        assert_eq!(created["transport"], "tcp");
        assert_eq!(created["cps_limit"], 3);
        assert_eq!(created["enabled"], true);
        let id = created["id"].as_str().unwrap().to_owned();
        // Stored sealed.
        let row = switchboard::sip::trunks::trunk::Entity::find_by_id(uuid::Uuid::parse_str(&id).unwrap())
            .one(&app.state.db.conn).await.unwrap().unwrap();
        let sealed = row.auth_password_sealed.unwrap();
        assert!(!sealed.contains("carrier-password-1"));
        assert_eq!(app.state.sealer.open(&sealed).unwrap(), b"carrier-password-1");

        let got = json_ok(app.get(&format!("/api/v1/sip/trunks/{id}"), &admin).await, 200).await;
        assert_eq!(got, created);
        let list = json_ok(app.get("/api/v1/sip/trunks", &admin).await, 200).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        assert!(!list.to_string().contains("carrier-password-1"));

        // Defaults.
        let r = app.post("/api/v1/sip/trunks", &admin, &json!({ "name": "Plain", "host": "10.0.0.9", "caller_id": CALLER_ID })).await;
        let plain = json_ok(r, 201).await;
        assert_eq!(plain["port"], 5060);
        assert_eq!(plain["transport"], "udp");
        assert_eq!(plain["cps_limit"], 5);
        assert_eq!(plain["has_password"], false);

        // Bad input: 422 with each field's path, nothing stored.
        for (bad, path) in [
            (json!({ "name": "", "host": "h.example", "caller_id": CALLER_ID }), "name"),
            (json!({ "name": "x", "host": "not a host", "caller_id": CALLER_ID }), "host"),
            (json!({ "name": "x", "host": "999.1.1.1", "caller_id": CALLER_ID }), "host"),
            (json!({ "name": "x", "host": "h.example", "port": 0, "caller_id": CALLER_ID }), "port"),
            (json!({ "name": "x", "host": "h.example", "port": 70000, "caller_id": CALLER_ID }), "port"),
            (json!({ "name": "x", "host": "h.example", "transport": "sctp", "caller_id": CALLER_ID }), "transport"),
            (json!({ "name": "x", "host": "h.example", "caller_id": "not a number" }), "caller_id"),
            (json!({ "name": "x", "host": "h.example", "caller_id": CALLER_ID, "cps_limit": 0 }), "cps_limit"),
            (json!({ "name": "x", "host": "h.example", "caller_id": CALLER_ID, "auth_username": "u" }), "password"),
            (json!({ "name": "x", "host": "h.example", "caller_id": CALLER_ID, "password": "p" }), "password"),
            (json!({ "name": "x", "host": "h.example", "caller_id": CALLER_ID, "auth_username": "a\"b", "password": "p" }), "auth_username"),
        ] {
            let e = expect_error(app.post("/api/v1/sip/trunks", &admin, &bad).await, 422, "validation_failed").await;
            let paths: Vec<&str> = e["error"]["details"]["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
            assert!(paths.contains(&path), "{bad}: {e}");
        }
        expect_error(app.post("/api/v1/sip/trunks", &admin, &body).await, 409, "conflict").await;
        let list = json_ok(app.get("/api/v1/sip/trunks", &admin).await, 200).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 2);

        // PUT without a password keeps the stored one; without a username clears it.
        let r = app.req(reqwest::Method::PUT, &format!("/api/v1/sip/trunks/{id}"), &admin)
            .json(&json!({ "name": "Carrier A", "host": "sip2.carrier.example", "auth_username": "acct-2", "caller_id": CALLER_ID, "enabled": false }))
            .send().await.unwrap();
        let put = json_ok(r, 200).await;
        assert_eq!(put["host"], "sip2.carrier.example");
        assert_eq!(put["auth_username"], "acct-2");
        assert_eq!(put["has_password"], true);
        assert_eq!(put["enabled"], false);
        assert_eq!(put["port"], 5060);
        let r = app.req(reqwest::Method::PUT, &format!("/api/v1/sip/trunks/{id}"), &admin)
            .json(&json!({ "name": "Carrier A", "host": "sip2.carrier.example", "caller_id": CALLER_ID }))
            .send().await.unwrap();
        assert_eq!(json_ok(r, 200).await["has_password"], false);
        let r = app.req(reqwest::Method::PUT, &format!("/api/v1/sip/trunks/{id}"), &admin)
            .json(&json!({ "name": "Plain", "host": "h.example", "caller_id": CALLER_ID }))
            .send().await.unwrap();
        expect_error(r, 409, "conflict").await;

        // Supervisors do not manage trunks.
        let sup = app.login("supervisor").await;
        expect_error(app.get("/api/v1/sip/trunks", &sup).await, 403, "forbidden").await;

        // Audited.
        let audit = json_ok(app.get("/api/v1/audit?limit=100", &admin).await, 200).await.to_string();
        for a in ["sip_trunk.created", "sip_trunk.updated"] {
            assert!(audit.contains(a), "{a} not in {audit}");
        }
        let r = app.delete(&format!("/api/v1/sip/trunks/{id}"), &admin).await;
        assert_eq!(r.status(), 204);
        expect_error(app.get(&format!("/api/v1/sip/trunks/{id}"), &admin).await, 404, "not_found").await;
    }

    async fn who_may_call_and_bad_input_place_nothing(app) configure(calls_on) {
        let trunk = add_trunk(&app, 9, json!({})).await;
        // Toll-fraud rule: agents and marketers may not call out.
        for who in ["agent", "marketer"] {
            let c = app.login(who).await;
            expect_error(app.post("/api/v1/calls", &c, &json!({ "to": TO, "trunk_id": trunk })).await, 403, "forbidden").await;
        }
        let agent_key = app.api_key("demo", "agent").await;
        expect_error(app.post("/api/v1/calls", &agent_key, &json!({ "to": TO, "trunk_id": trunk })).await, 403, "forbidden").await;
        let sup = app.login("supervisor").await;
        for (bad, path) in [
            (json!({ "to": "not a number", "trunk_id": trunk }), "to"),
            (json!({ "to": TO, "trunk_id": "nope" }), "trunk_id"),
            (json!({ "to": TO, "trunk_id": trunk, "ring_timeout_secs": 0 }), "ring_timeout_secs"),
            (json!({ "to": TO, "trunk_id": trunk, "ring_timeout_secs": 500 }), "ring_timeout_secs"),
            (json!({ "to": TO, "trunk_id": trunk, "from": "+12015550100" }), "from"),
            (json!({ "to": TO, "trunk_id": trunk, "from": "x" }), "from"),
        ] {
            let e = expect_error(app.post("/api/v1/calls", &sup, &bad).await, 422, "validation_failed").await;
            let paths: Vec<&str> = e["error"]["details"]["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
            assert!(paths.contains(&path), "{bad}: {e}");
        }
        // An unknown trunk and another tenant's trunk: both 404, alike.
        let other = app.login_to("other", "admin@other.example", DEMO_PASSWORD).await;
        let r = app.post("/api/v1/sip/trunks", &other, &json!({ "name": "other", "host": "127.0.0.1", "port": 9, "caller_id": "+12015550100" })).await;
        let other_trunk = json_ok(r, 201).await["id"].as_str().unwrap().to_owned();
        for t in [other_trunk.clone(), uuid::Uuid::now_v7().to_string()] {
            let e = expect_error(app.post("/api/v1/calls", &sup, &json!({ "to": TO, "trunk_id": t })).await, 404, "not_found").await;
            assert!(!e.to_string().contains(&other_trunk), "{e}");
        }
        // A disabled trunk.
        let admin = app.login("admin").await;
        let r = app.req(reqwest::Method::PUT, &format!("/api/v1/sip/trunks/{trunk}"), &admin)
            .json(&json!({ "name": "trunk 9", "host": "127.0.0.1", "port": 9, "caller_id": CALLER_ID, "enabled": false }))
            .send().await.unwrap();
        json_ok(r, 200).await;
        expect_error(app.post("/api/v1/calls", &sup, &json!({ "to": TO, "trunk_id": trunk })).await, 422, "validation_failed").await;
        assert!(outbound_voice(&app).await.is_empty(), "nothing was placed");
        // Hang-up of something that is not a call in progress.
        let r = app.post(&format!("/api/v1/calls/{}/hang-up", uuid::Uuid::now_v7()), &sup, &json!({})).await;
        expect_error(r, 404, "not_found").await;
    }

    async fn an_answered_call_rings_answers_and_our_hang_up_sends_bye(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let uas = far_end(dir.path(), None, port, 1).await;
        let trunk = add_trunk(&app, port, json!({})).await;
        let id = call(&app, &trunk, json!({ "from": CALLER_ID })).await;
        let evs = has_event(&app, &id, "answered", 15).await;
        assert!(kinds(&evs).contains(&"ringing".to_owned()), "{evs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        hang_up(&app, &id).await;
        // The uas got our BYE (its scenario ends with it).
        assert_ok(&uas.await.unwrap(), dir.path());
        let (i, evs) = closed(&app, &id).await;
        assert_eq!(i["direction"], "outbound");
        assert_eq!(i["customer_address"], TO);
        assert_eq!(i["close_reason"], "completed", "{i}");
        let k = kinds(&evs);
        let pos = |x: &str| k.iter().position(|y| y == x).unwrap_or_else(|| panic!("{x} missing from {k:?}"));
        assert!(pos("ringing") < pos("answered") && pos("answered") < pos("hangup"), "{k:?}");
        let hangup = event(&evs, "hangup");
        assert_eq!(hangup["data"]["cause"], "api_hangup", "{hangup}");
        let cdr = &hangup["data"]["cdr"];
        for f in ["start", "answer", "end", "duration_secs", "codec", "packets_in", "packets_out", "recording", "sip_call_id"] {
            assert!(!cdr[f].is_null(), "{f} missing from {cdr}");
        }
        assert_eq!(cdr["number"], TO);
        assert_eq!(cdr["caller"], CALLER_ID);
        assert!(cdr["duration_secs"].as_f64().unwrap() > 0.0, "{cdr}");
        // A second hang-up: the call is over.
        let sup = app.login("supervisor").await;
        expect_error(app.post(&format!("/api/v1/calls/{id}/hang-up"), &sup, &json!({})).await, 409, "conflict").await;
    }

    async fn a_busy_trunk_ends_the_call_as_busy(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let uas = far_end(dir.path(), Some(&busy()), port, 1).await;
        let trunk = add_trunk(&app, port, json!({})).await;
        let id = call(&app, &trunk, json!({})).await;
        let (i, evs) = closed(&app, &id).await;
        assert_ok(&uas.await.unwrap(), dir.path());
        let hangup = event(&evs, "hangup");
        assert_eq!(hangup["data"]["cause"], "busy", "{hangup}");
        assert_eq!(hangup["data"]["sip_status"], 486);
        assert!(hangup["data"]["cdr"]["answer"].is_null());
        assert_eq!(i["close_reason"], "abandoned", "{i}");
        assert!(!kinds(&evs).contains(&"answered".to_owned()));
    }

    async fn no_answer_cancels_on_the_ring_timeout(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let uas = far_end(dir.path(), Some(&rings_forever()), port, 2).await;
        let trunk = add_trunk(&app, port, json!({})).await;
        // Our hang-up while it rings is a CANCEL too.
        let id = call(&app, &trunk, json!({ "ring_timeout_secs": 60 })).await;
        has_event(&app, &id, "ringing", 10).await;
        hang_up(&app, &id).await;
        let (i, evs) = closed(&app, &id).await;
        let hangup = event(&evs, "hangup");
        assert_eq!(hangup["data"]["cause"], "api_hangup", "{hangup}");
        assert_eq!(hangup["data"]["sip_status"], 487);
        assert_eq!(i["close_reason"], "terminated", "{i}");

        let id = call(&app, &trunk, json!({ "ring_timeout_secs": 2 })).await;
        has_event(&app, &id, "ringing", 10).await;
        let (i, evs) = closed(&app, &id).await;
        // The uas saw the CANCEL and answered 487 (and got its ACK).
        assert_ok(&uas.await.unwrap(), dir.path());
        let hangup = event(&evs, "hangup");
        assert_eq!(hangup["data"]["cause"], "no_answer", "{hangup}");
        assert_eq!(hangup["data"]["sip_status"], 487);
        assert_eq!(i["close_reason"], "abandoned", "{i}");
    }

    async fn a_digest_challenge_is_answered_with_the_trunks_credentials(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let scenario = challenging();
        let uas = far_end(dir.path(), Some(&scenario), port, 1).await;
        let trunk = add_trunk(&app, port, json!({ "auth_username": TRUNK_USER, "password": TRUNK_PASSWORD })).await;
        let id = call(&app, &trunk, json!({})).await;
        has_event(&app, &id, "answered", 15).await;
        hang_up(&app, &id).await;
        assert_ok(&uas.await.unwrap(), dir.path());
        let (i, evs) = closed(&app, &id).await;
        assert_eq!(event(&evs, "hangup")["data"]["cause"], "api_hangup");
        assert_eq!(i["close_reason"], "completed");

        // Without credentials the call fails with auth_required.
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let uas = far_end(dir.path(), Some(&challenge_only()), port, 1).await;
        let trunk = add_trunk(&app, port, json!({})).await;
        let id = call(&app, &trunk, json!({})).await;
        let (i, evs) = closed(&app, &id).await;
        assert_ok(&uas.await.unwrap(), dir.path());
        let hangup = event(&evs, "hangup");
        assert_eq!(hangup["data"]["cause"], "auth_required", "{hangup}");
        assert_eq!(hangup["data"]["sip_status"], 401);
        assert_eq!(i["close_reason"], "failed");
    }

    async fn the_calls_per_second_limit_refuses_with_429(app) configure(calls_on) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let uas = far_end(dir.path(), None, port, 2).await;
        let trunk = add_trunk(&app, port, json!({ "cps_limit": 2 })).await;
        let sup = app.login("supervisor").await;
        let body = json!({ "to": TO, "trunk_id": trunk });
        let tries = (0..6).map(|_| app.post("/api/v1/calls", &sup, &body));
        let answers = futures_util::future::join_all(tries).await;
        let mut placed = Vec::new();
        let mut limited = 0;
        for r in answers {
            match r.status().as_u16() {
                202 => placed.push(r.json::<Value>().await.unwrap()["interaction_id"].as_str().unwrap().to_owned()),
                429 => {
                    let after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                    assert!(after >= 1);
                    limited += 1;
                }
                s => panic!("unexpected {s}: {}", r.text().await.unwrap()),
            }
        }
        assert_eq!(placed.len(), 2, "exactly the limit placed");
        assert_eq!(limited, 4);
        assert_eq!(outbound_voice(&app).await.len(), 2);
        for id in &placed {
            has_event(&app, id, "answered", 15).await;
            hang_up(&app, id).await;
        }
        assert_ok(&uas.await.unwrap(), dir.path());
        for id in &placed {
            closed(&app, id).await;
        }
    }

    async fn the_keepalive_shows_trunks_up_or_down(app) configure(keepalive_on) {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let uas = far_end(dir.path(), Some(&answers_options()), port, 2).await;
        let admin = app.login("admin").await;
        let up = add_trunk(&app, port, json!({})).await;
        let closed_port = free_port();
        let down = add_trunk(&app, closed_port, json!({})).await;
        let off = add_trunk(&app, free_port(), json!({ "enabled": false })).await;
        // Null until checked.
        let fresh = json_ok(app.get(&format!("/api/v1/sip/trunks/{off}"), &admin).await, 200).await;
        assert!(fresh["health"].is_null(), "{fresh}");

        let h = eventually(15, "the answering trunk is up", || async {
            let t = json_ok(app.get(&format!("/api/v1/sip/trunks/{up}"), &admin).await, 200).await;
            (t["health"]["status"] == "up").then(|| t["health"].clone())
        })
        .await;
        assert_eq!(h["last_status_code"], 200, "{h}");
        assert!(h["rtt_ms"].as_u64().unwrap() < 5000, "{h}");
        assert!(h["last_checked_at"].is_string(), "{h}");
        // The far end got our OPTIONS (and answered them).
        assert_ok(&uas.await.unwrap(), dir.path());

        let h = eventually(20, "the closed port's trunk is down", || async {
            let t = json_ok(app.get(&format!("/api/v1/sip/trunks/{down}"), &admin).await, 200).await;
            (t["health"]["status"] == "down").then(|| t["health"].clone())
        })
        .await;
        assert!(h["last_status_code"].is_null(), "{h}");
        assert!(h["rtt_ms"].is_null(), "{h}");
        assert!(h["last_checked_at"].is_string(), "{h}");

        // The list shows it too; a disabled trunk is not checked.
        let list = json_ok(app.get("/api/v1/sip/trunks", &admin).await, 200).await;
        let items = list["items"].as_array().unwrap();
        let of = |id: &str| items.iter().find(|t| t["id"] == id).unwrap()["health"].clone();
        assert_eq!(of(&down)["status"], "down");
        assert!(!of(&up).is_null());
        assert!(of(&off).is_null(), "{list}");

        // A call through a down trunk still goes out (and fails there).
        let id = call(&app, &down, json!({ "ring_timeout_secs": 1 })).await;
        closed(&app, &id).await;
    }

    async fn a_trunk_registers_answers_the_challenge_and_refreshes(app) configure(registration_on) {
        let admin = app.login("admin").await;
        let bad = json!({ "name": "x", "host": "h.example", "caller_id": CALLER_ID, "register": true, "register_expires_secs": 10 });
        let e = expect_error(app.post("/api/v1/sip/trunks", &admin, &bad).await, 422, "validation_failed").await;
        assert!(e.to_string().contains("register_expires_secs"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let scenario = registrar();
        let uas = far_end(dir.path(), Some(&scenario), port, 1).await;
        let reg = add_trunk(&app, port, json!({ "auth_username": TRUNK_USER, "password": TRUNK_PASSWORD, "register": true, "register_expires_secs": 600 })).await;
        let silent = add_trunk(&app, free_port(), json!({ "register": true })).await;
        let plain = add_trunk(&app, free_port(), json!({})).await;
        let t = json_ok(app.get(&format!("/api/v1/sip/trunks/{reg}"), &admin).await, 200).await;
        assert_eq!(t["register"], true);
        assert_eq!(t["register_expires_secs"], 600);

        let r = eventually(15, "the trunk is registered", || async {
            let t = json_ok(app.get(&format!("/api/v1/sip/trunks/{reg}"), &admin).await, 200).await;
            (t["registration"]["status"] == "registered").then(|| t["registration"].clone())
        })
        .await;
        assert_eq!(r["last_status_code"], 200, "{r}");
        assert!(r["expires_at"].is_string(), "{r}");
        // The refresh came (challenged and checked again: the scenario's end).
        assert_ok(&uas.await.unwrap(), dir.path());
        let r = eventually(10, "the refresh is registered for the hour", || async {
            let t = json_ok(app.get(&format!("/api/v1/sip/trunks/{reg}"), &admin).await, 200).await;
            let r = t["registration"].clone();
            let at = chrono::DateTime::parse_from_rfc3339(r["last_attempt_at"].as_str()?).ok()?;
            let until = chrono::DateTime::parse_from_rfc3339(r["expires_at"].as_str()?).ok()?;
            // Never longer than asked (600 s).
            ((until - at).num_seconds() > 500).then_some(r)
        })
        .await;
        assert_eq!(r["status"], "registered", "{r}");

        let r = eventually(20, "an unanswered registration fails", || async {
            let t = json_ok(app.get(&format!("/api/v1/sip/trunks/{silent}"), &admin).await, 200).await;
            (t["registration"]["status"] == "failed").then(|| t["registration"].clone())
        })
        .await;
        assert!(r["last_status_code"].is_null(), "{r}");
        let t = json_ok(app.get(&format!("/api/v1/sip/trunks/{plain}"), &admin).await, 200).await;
        assert!(t["registration"].is_null(), "{t}");
        assert_eq!(t["register"], false);
    }
}
