//! Configuring routing through the API: skills, queues and agents are
//! checked (references, levels, overflow cycles), stored, applied to the
//! running router at once, and flagged when no agent could serve a queue.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

async fn put(app: &TestApp, path: &str, creds: &Creds, body: &Value) -> reqwest::Response {
    app.req(Method::PUT, path, creds)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The field paths of a 422.
async fn fields(r: reqwest::Response) -> Vec<String> {
    let e = expect_error(r, 422, "validation_failed").await;
    e["error"]["details"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields in {e}"))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect()
}

async fn skill_ids(app: &TestApp, sup: &Creds) -> Value {
    let all = json_ok(app.get("/api/v1/skills?limit=200", sup).await, 200).await;
    let mut m = serde_json::Map::new();
    for s in all["items"].as_array().unwrap() {
        m.insert(s["name"].as_str().unwrap().to_owned(), s["id"].clone());
    }
    Value::Object(m)
}

async fn new_user(app: &TestApp, email: &str) -> Value {
    let admin = app.login("admin").await;
    let r = app
        .post("/api/v1/users", &admin, &json!({ "email": email, "display_name": "New Agent", "role": "agent", "password": "new-agent-password-1" }))
        .await;
    json_ok(r, 201).await["id"].clone()
}

both_backends! {
    async fn skills_are_added_renamed_and_deleted_only_when_unused(app) {
        let sup = app.login("supervisor").await;
        let r = app.post("/api/v1/skills", &sup, &json!({ "name": "  french ", "description": "Parle français" })).await;
        let fr = json_ok(r, 201).await;
        assert_eq!(fr["name"], "french");
        let id = fr["id"].as_str().unwrap().to_owned();
        // Names are unique; empty or huge ones are refused.
        expect_error(app.post("/api/v1/skills", &sup, &json!({ "name": "french" })).await, 409, "conflict").await;
        expect_error(app.post("/api/v1/skills", &sup, &json!({ "name": "sales" })).await, 409, "conflict").await;
        assert_eq!(fields(app.post("/api/v1/skills", &sup, &json!({ "name": " " })).await).await, ["name"]);
        assert_eq!(fields(app.post("/api/v1/skills", &sup, &json!({ "name": "x".repeat(101) })).await).await, ["name"]);
        expect_error(put(&app, &format!("/api/v1/skills/{id}"), &sup, &json!({ "name": "english" })).await, 409, "conflict").await;
        let renamed = json_ok(put(&app, &format!("/api/v1/skills/{id}"), &sup, &json!({ "name": "français", "description": "" })).await, 200).await;
        assert_eq!(renamed["name"], "français");
        // Agents cannot change the catalogue.
        let agent = app.login("agent").await;
        expect_error(app.post("/api/v1/skills", &agent, &json!({ "name": "hacking" })).await, 403, "forbidden").await;
        // A skill in use stays; an unused one goes.
        let skills = skill_ids(&app, &sup).await;
        let sales = skills["sales"].as_str().unwrap();
        let e = expect_error(app.delete(&format!("/api/v1/skills/{sales}"), &sup).await, 409, "conflict").await;
        assert!(e["error"]["message"].as_str().unwrap().contains("1 queue(s) and 1 agent(s)"), "{e}");
        assert_eq!(app.delete(&format!("/api/v1/skills/{id}"), &sup).await.status(), 204);
        expect_error(app.get(&format!("/api/v1/skills/{id}"), &sup).await, 404, "not_found").await;
        expect_error(app.delete(&format!("/api/v1/skills/{id}"), &sup).await, 404, "not_found").await;
        // The audit log has it.
        let admin = app.login("admin").await;
        let log = json_ok(app.get("/api/v1/audit?limit=200", &admin).await, 200).await;
        let actions: Vec<&str> = log["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for a in ["skill.created", "skill.updated", "skill.deleted"] {
            assert!(actions.contains(&a), "{a} not in {actions:?}");
        }
    }

    async fn a_queue_is_checked_flagged_when_unservable_and_routes_once_an_agent_qualifies(app) {
        let sup = app.login("supervisor").await;
        let skills = skill_ids(&app, &sup).await;
        // The demo's queues take voice and chat, which its agents serve.
        let demo = json_ok(app.get("/api/v1/queues", &sup).await, 200).await;
        for q in demo["items"].as_array().unwrap() {
            assert_eq!((&q["routing"]["channels"], &q["unservable"]), (&json!(["voice", "chat"]), &json!([])), "{q}");
        }
        let fr = json_ok(app.post("/api/v1/skills", &sup, &json!({ "name": "french" })).await, 201).await["id"].clone();
        let body = json!({
            "name": "Français", "strategy": "best_proficiency", "priority": 3,
            "sl_target_pct": 90, "sl_threshold_secs": 15,
            "required_skills": [{ "skill_id": fr, "level": 3 }],
            "routing": { "channels": ["voice", "chat"], "offer_timeout_secs": 10,
                         "escalation": [{ "after_secs": 30, "skills": { fr.as_str().unwrap(): 1 } }] }
        });
        let q = json_ok(app.post("/api/v1/queues", &sup, &body).await, 201).await;
        // Nobody speaks French yet: flagged on save, and on read.
        assert_eq!(q["unservable"], json!(["voice", "chat"]), "{q}");
        assert_eq!(q["required_skills"], json!([{ "skill_id": fr, "level": 3 }]));
        assert_eq!(q["routing"]["offer_timeout_secs"], 10);
        let qid = q["id"].as_str().unwrap().to_owned();
        let read = json_ok(app.get(&format!("/api/v1/queues/{qid}"), &sup).await, 200).await;
        assert_eq!(read["unservable"], json!(["voice", "chat"]));
        assert_eq!(read["strategy"], "best_proficiency");
        expect_error(app.post("/api/v1/queues", &sup, &body).await, 409, "conflict").await;

        // A call now would be refused (no overflow): the queue cannot serve it.
        let call = json_ok(app.post("/api/v1/interactions", &sup, &json!({ "channel": "voice", "direction": "inbound" })).await, 201).await["interaction"]["id"].as_str().unwrap().to_owned();
        expect_error(app.post(&format!("/api/v1/interactions/{call}/route"), &sup, &json!({ "queue_id": qid })).await, 409, "conflict").await;

        // A new agent who speaks French: the flag goes, and calls reach them.
        let user = new_user(&app, "francoise@example.com").await;
        let agent = json_ok(app.post("/api/v1/agents", &sup, &json!({
            "user_id": user, "extension": "1009",
            "skills": [{ "skill_id": fr, "level": 4 }, { "skill_id": skills["english"], "level": 2 }],
            "capacity": { "voice": 1, "chat": 2 },
            "routing": { "max_no_answers": 2, "wrap_up_secs": 30, "voice_blocks_other": false }
        })).await, 201).await;
        assert_eq!(agent["routing"]["wrap_up_secs"], 30);
        assert_eq!(agent["capacity"]["chat"], 2);
        let aid = agent["id"].as_str().unwrap().to_owned();
        let read = json_ok(app.get(&format!("/api/v1/queues/{qid}"), &sup).await, 200).await;
        assert_eq!(read["unservable"], json!([]), "{read}");
        let fran = app.login_to("demo", "francoise@example.com", "new-agent-password-1").await;
        let desk = json_ok(app.get("/api/v1/agents/me/desk", &fran).await, 200).await;
        assert_eq!((desk["presence"].as_str(), desk["status"].as_str()), (Some("offline"), Some("offline")), "{desk}");
        json_ok(put(&app, &format!("/api/v1/agents/{aid}/presence"), &fran, &json!({ "presence": "available" })).await, 200).await;
        let routed = json_ok(app.post(&format!("/api/v1/interactions/{call}/route"), &sup, &json!({ "queue_id": qid })).await, 200).await;
        assert!(routed["position"].is_null(), "{routed}");
        let desk = json_ok(app.get("/api/v1/agents/me/desk", &fran).await, 200).await;
        assert_eq!(desk["offers"][0]["interaction_id"], call, "{desk}");
        assert_eq!(desk["offers"][0]["queue_name"], "Français");
        assert!(desk["offers"][0]["until"].is_string(), "{desk}");
        assert_eq!(app.post(&format!("/api/v1/interactions/{call}/accept"), &fran, &json!({})).await.status(), 204);
        let desk = json_ok(app.get("/api/v1/agents/me/desk", &fran).await, 200).await;
        assert_eq!((desk["status"].as_str(), desk["connected"][0]["interaction_id"].as_str()), (Some("busy"), Some(call.as_str())), "{desk}");
        assert_eq!(desk["load"]["voice"], 1);

        // The agent is busy: deleting them is refused, nothing changes.
        expect_error(app.delete(&format!("/api/v1/agents/{aid}"), &sup).await, 409, "conflict").await;
        json_ok(app.get(&format!("/api/v1/agents/{aid}"), &sup).await, 200).await;
        // Raising the level keeps the call where it is.
        let edited = json_ok(put(&app, &format!("/api/v1/agents/{aid}"), &sup, &json!({
            "skills": [{ "skill_id": fr, "level": 5 }], "capacity": { "voice": 1, "chat": 2 }
        })).await, 200).await;
        assert_eq!(edited["skills"], json!([{ "skill_id": fr, "level": 5 }]));
        let desk = json_ok(app.get("/api/v1/agents/me/desk", &fran).await, 200).await;
        assert_eq!(desk["connected"][0]["interaction_id"], call, "{desk}");
        // Non-agents have no desk.
        expect_error(app.get("/api/v1/agents/me/desk", &sup).await, 403, "forbidden").await;
    }

    async fn bad_queue_settings_are_refused_with_field_paths_and_change_nothing(app) {
        let sup = app.login("supervisor").await;
        let skills = skill_ids(&app, &sup).await;
        let queues = json_ok(app.get("/api/v1/queues", &sup).await, 200).await;
        let q = |name: &str| queues["items"].as_array().unwrap().iter().find(|q| q["name"] == name).unwrap().clone();
        let sales = q("Sales");
        let support = q("Support");
        let sid = sales["id"].as_str().unwrap();
        let missing = uuid::Uuid::now_v7().to_string();
        let base = |extra: Value| {
            let mut b = json!({ "name": "Sales", "strategy": "longest_idle", "required_skills": [{ "skill_id": skills["sales"], "level": 2 }] });
            for (k, v) in extra.as_object().unwrap() { b[k] = v.clone(); }
            b
        };
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (base(json!({ "strategy": "random" })), vec!["strategy"]),
            (base(json!({ "required_skills": [{ "skill_id": skills["sales"], "level": 6 }] })), vec!["required_skills[0].level"]),
            (base(json!({ "required_skills": [{ "skill_id": skills["sales"], "level": 0 }] })), vec!["required_skills[0].level"]),
            (base(json!({ "required_skills": [{ "skill_id": missing, "level": 1 }] })), vec!["required_skills[0].skill_id"]),
            (base(json!({ "required_skills": [{ "skill_id": skills["sales"], "level": 1 }, { "skill_id": skills["sales"], "level": 2 }] })), vec!["required_skills[1].skill_id"]),
            (base(json!({ "priority": 5000, "sl_target_pct": 0, "sl_threshold_secs": -1 })), vec!["priority", "sl_target_pct", "sl_threshold_secs"]),
            (base(json!({ "routing": { "max_wait_secs": 60 } })), vec!["routing.overflow"]),
            (base(json!({ "routing": { "overflow": { "queue": missing } } })), vec!["routing.overflow.queue"]),
            (base(json!({ "routing": { "overflow": { "flow": " " } } })), vec!["routing.overflow.flow"]),
            (base(json!({ "routing": { "offer_timeout_secs": 0 } })), vec!["routing.offer_timeout_secs"]),
            // Escalation must widen: english is not required at step 0.
            (base(json!({ "routing": { "escalation": [{ "after_secs": 10, "skills": { skills["english"].as_str().unwrap(): 1 } }] } })), vec!["routing.escalation[0]"]),
            (base(json!({ "routing": { "escalation": [{ "after_secs": 10, "skills": { skills["sales"].as_str().unwrap(): 9 } }] } })), vec![&*format!("routing.escalation[0].skills.{}", skills["sales"].as_str().unwrap()).leak()]),
            // Overflow to itself is a cycle.
            (base(json!({ "routing": { "overflow": { "queue": sid } } })), vec!["routing.overflow"]),
        ];
        for (body, want) in cases {
            let got = fields(put(&app, &format!("/api/v1/queues/{sid}"), &sup, &body).await).await;
            assert_eq!(got, want, "for {body}");
        }
        // An overflow target must take every channel the queue takes.
        let e = fields(put(&app, &format!("/api/v1/queues/{sid}"), &sup, &base(json!({ "routing": { "overflow": { "queue": support["id"] } } }))).await).await;
        assert_eq!(e, ["routing.overflow"]);
        // Unknown fields and wrong types are refused too.
        expect_error(put(&app, &format!("/api/v1/queues/{sid}"), &sup, &base(json!({ "colour": "red" }))).await, 422, "validation_failed").await;
        expect_error(put(&app, &format!("/api/v1/queues/{sid}"), &sup, &base(json!({ "routing": { "max_length": -1 } }))).await, 422, "validation_failed").await;
        // A cycle made of two queues: Sales -> Support is fine, then Support -> Sales is refused.
        let sup_id = support["id"].as_str().unwrap();
        json_ok(put(&app, &format!("/api/v1/queues/{sid}"), &sup, &base(json!({ "routing": { "channels": ["voice", "chat"], "overflow": { "queue": sup_id }, "max_wait_secs": 120 } }))).await, 200).await;
        let back = json!({ "name": "Support", "strategy": "best_proficiency", "required_skills": support["required_skills"], "routing": { "channels": ["voice", "chat"], "overflow": { "queue": sid } } });
        let e = expect_error(put(&app, &format!("/api/v1/queues/{sup_id}"), &sup, &back).await, 422, "validation_failed").await;
        let msg = e["error"]["details"]["fields"][0]["message"].as_str().unwrap();
        assert!(msg.contains("cycle") && msg.contains("Sales") && msg.contains("Support"), "{msg}");
        // Nothing changed: Support keeps no overflow, Sales its new one.
        let now = json_ok(app.get(&format!("/api/v1/queues/{sup_id}"), &sup).await, 200).await;
        assert!(now["routing"]["overflow"].is_null(), "{now}");
        assert_eq!(now["strategy"], "best_proficiency");
        let now = json_ok(app.get(&format!("/api/v1/queues/{sid}"), &sup).await, 200).await;
        assert_eq!(now["routing"]["overflow"], json!({ "queue": sup_id }));
        // Support is Sales' overflow target: it cannot be deleted.
        let e = expect_error(app.delete(&format!("/api/v1/queues/{sup_id}"), &sup).await, 409, "conflict").await;
        assert!(e["error"]["message"].as_str().unwrap().contains("Sales"), "{e}");
        // A deletable queue goes.
        let billing = q("Billing");
        let bid = billing["id"].as_str().unwrap();
        assert_eq!(app.delete(&format!("/api/v1/queues/{bid}"), &sup).await.status(), 204);
        expect_error(app.get(&format!("/api/v1/queues/{bid}"), &sup).await, 404, "not_found").await;
    }

    async fn an_unservable_queue_overflows_at_run_time_instead_of_waiting(app) {
        let sup = app.login("supervisor").await;
        let fr = json_ok(app.post("/api/v1/skills", &sup, &json!({ "name": "french" })).await, 201).await["id"].clone();
        let queues = json_ok(app.get("/api/v1/queues", &sup).await, 200).await;
        let support = queues["items"].as_array().unwrap().iter().find(|q| q["name"] == "Support").unwrap()["id"].clone();
        let q = json_ok(app.post("/api/v1/queues", &sup, &json!({
            "name": "French support", "strategy": "longest_idle",
            "required_skills": [{ "skill_id": fr, "level": 1 }],
            "routing": { "channels": ["voice", "chat"], "overflow": { "queue": support } }
        })).await, 201).await;
        assert_eq!(q["unservable"], json!(["voice", "chat"]));
        let call = json_ok(app.post("/api/v1/interactions", &sup, &json!({ "channel": "voice", "direction": "inbound" })).await, 201).await["interaction"]["id"].as_str().unwrap().to_owned();
        json_ok(app.post(&format!("/api/v1/interactions/{call}/route"), &sup, &json!({ "queue_id": q["id"] })).await, 200).await;
        let i = json_ok(app.get(&format!("/api/v1/interactions/{call}"), &sup).await, 200).await;
        assert_eq!((i["state"].as_str(), &i["queue_id"]), (Some("queued"), &support), "{i}");
    }

    async fn agents_are_checked_and_belong_to_one_tenant(app) {
        let sup = app.login("supervisor").await;
        let skills = skill_ids(&app, &sup).await;
        let user = new_user(&app, "newbie@example.com").await;
        let agents = json_ok(app.get("/api/v1/agents", &sup).await, 200).await;
        let alex = agents["items"][0].clone();
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({}), vec!["user_id"]),
            (json!({ "user_id": user, "skills": [{ "skill_id": skills["sales"], "level": 9 }] }), vec!["skills[0].level"]),
            (json!({ "user_id": user, "skills": [{ "skill_id": uuid::Uuid::now_v7(), "level": 1 }] }), vec!["skills[0].skill_id"]),
            (json!({ "user_id": user, "capacity": { "voice": 2, "chat": 30 } }), vec!["capacity.chat", "capacity.voice"]),
            (json!({ "user_id": user, "routing": { "max_no_answers": 0, "wrap_up_secs": 99999 } }), vec!["routing.max_no_answers", "routing.wrap_up_secs"]),
            (json!({ "user_id": user, "extension": "10 01" }), vec!["extension"]),
            (json!({ "user_id": uuid::Uuid::now_v7() }), vec!["user_id"]),
        ];
        for (body, want) in cases {
            assert_eq!(fields(app.post("/api/v1/agents", &sup, &body).await).await, want, "for {body}");
        }
        // One agent per user; the user cannot change.
        expect_error(app.post("/api/v1/agents", &sup, &json!({ "user_id": alex["user_id"] })).await, 409, "conflict").await;
        let aid = alex["id"].as_str().unwrap();
        assert_eq!(fields(put(&app, &format!("/api/v1/agents/{aid}"), &sup, &json!({ "user_id": user })).await).await, ["user_id"]);
        // Another tenant's user cannot be made an agent here.
        let other = app.login_to("other", "admin@other.example", DEMO_PASSWORD).await;
        let theirs = json_ok(app.get("/api/v1/users", &other).await, 200).await["items"][0]["id"].clone();
        assert_eq!(fields(app.post("/api/v1/agents", &sup, &json!({ "user_id": theirs })).await).await, ["user_id"]);
        // Another tenant's admin cannot see or touch ours.
        expect_error(put(&app, &format!("/api/v1/agents/{aid}"), &other, &json!({})).await, 404, "not_found").await;
        expect_error(app.delete(&format!("/api/v1/agents/{aid}"), &other).await, 404, "not_found").await;
        // Nothing was made along the way.
        let after = json_ok(app.get("/api/v1/agents", &sup).await, 200).await;
        assert_eq!(after["items"].as_array().unwrap().len(), agents["items"].as_array().unwrap().len());
        // A valid one, then gone (it holds nothing).
        let made = json_ok(app.post("/api/v1/agents", &sup, &json!({ "user_id": user, "capacity": { "chat": 3 } })).await, 201).await;
        let mid = made["id"].as_str().unwrap();
        assert_eq!(app.delete(&format!("/api/v1/agents/{mid}"), &sup).await.status(), 204);
        expect_error(app.get(&format!("/api/v1/agents/{mid}"), &sup).await, 404, "not_found").await;
    }

    async fn a_caller_who_asks_for_a_callback_keeps_their_place_through_a_rebuild(app) {
        let sup = app.login("supervisor").await;
        let alex = app.login("agent").await;
        let queues = json_ok(app.get("/api/v1/queues", &sup).await, 200).await;
        let sales = queues["items"].as_array().unwrap().iter().find(|q| q["name"] == "Sales").unwrap()["id"].clone();
        let tenant: switchboard::ids::TenantId = json_ok(app.get("/api/v1/tenant", &sup).await, 200).await["id"].as_str().unwrap().parse().unwrap();
        let mut calls = Vec::new();
        for place in 1..=2 {
            let c = json_ok(app.post("/api/v1/interactions", &sup, &json!({ "channel": "voice", "direction": "inbound" })).await, 201).await["interaction"]["id"].as_str().unwrap().to_owned();
            let r = json_ok(app.post(&format!("/api/v1/interactions/{c}/route"), &sup, &json!({ "queue_id": sales })).await, 200).await;
            assert_eq!(r["position"]["place"], place, "{r}");
            calls.push(c);
        }
        // The first caller asks to be called back: same place.
        let r = json_ok(app.post(&format!("/api/v1/interactions/{}/callback", calls[0]), &sup, &json!({})).await, 200).await;
        assert_eq!(r["position"]["place"], 1, "{r}");
        // Agents cannot, and a closed or unrouted interaction is refused.
        expect_error(app.post(&format!("/api/v1/interactions/{}/callback", calls[1]), &alex, &json!({})).await, 403, "forbidden").await;
        let idle = json_ok(app.post("/api/v1/interactions", &sup, &json!({ "channel": "voice", "direction": "inbound" })).await, 201).await["interaction"]["id"].as_str().unwrap().to_owned();
        expect_error(app.post(&format!("/api/v1/interactions/{idle}/callback"), &sup, &json!({})).await, 409, "conflict").await;
        expect_error(app.post(&format!("/api/v1/interactions/{}/callback", uuid::Uuid::now_v7()), &sup, &json!({})).await, 404, "not_found").await;
        // A rebuilt router (as after a restart) keeps the place and the callback.
        app.state.acd.reload(tenant);
        let why = json_ok(app.get(&format!("/api/v1/interactions/{}/routing", calls[0]), &sup).await, 200).await;
        assert_eq!((why["position"]["place"].as_u64(), why["now"]["callback"].as_bool()), (Some(1), Some(true)), "{why}");
        // The agent frees up: the callback is offered first, marked as one.
        let agents = json_ok(app.get("/api/v1/agents", &sup).await, 200).await;
        let desk = json_ok(app.get("/api/v1/agents/me/desk", &alex).await, 200).await;
        let me = desk["agent"]["id"].as_str().unwrap().to_owned();
        assert!(agents["items"].as_array().unwrap().iter().any(|a| a["id"] == me));
        json_ok(put(&app, &format!("/api/v1/agents/{me}/presence"), &alex, &json!({ "presence": "available" })).await, 200).await;
        let desk = json_ok(app.get("/api/v1/agents/me/desk", &alex).await, 200).await;
        assert_eq!((&desk["offers"][0]["interaction_id"], desk["offers"][0]["callback"].as_bool()), (&json!(calls[0]), Some(true)), "{desk}");
        let tl = json_ok(app.get(&format!("/api/v1/interactions/{}/events", calls[0]), &sup).await, 200).await;
        let kinds: Vec<&str> = tl.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["created", "queued", "routed", "callback_requested", "offered"], "{tl}");
        // The second caller, not a callback, is offered as a plain call.
        assert_eq!(app.post(&format!("/api/v1/interactions/{}/hang-up", calls[0]), &sup, &json!({})).await.status(), 204);
    }
}
