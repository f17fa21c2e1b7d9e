//! Routing through the service: presence, an interaction put in a queue,
//! offered to the right agent, answered, ended, wrapped up; decisions the
//! API explains; no-answer timeouts; a rebuilt router (as after a restart)
//! keeps places and presence; roles, tenants and bad input.

use reqwest::Method;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use switchboard::acd::catalog::queue;

use crate::both_backends;
use crate::helpers::*;

async fn put(app: &TestApp, path: &str, creds: &Creds, body: &Value) -> reqwest::Response {
    app.req(Method::PUT, path, creds)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The demo agents by email, and the queues by name.
async fn catalogue(app: &TestApp, sup: &Creds) -> (Value, Value) {
    let agents = json_ok(app.get("/api/v1/agents", sup).await, 200).await;
    let users = json_ok(
        app.get("/api/v1/users?limit=200", &app.login("admin").await)
            .await,
        200,
    )
    .await;
    let mut by_email = serde_json::Map::new();
    for a in agents["items"].as_array().unwrap() {
        let u = users["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == a["user_id"])
            .unwrap();
        by_email.insert(u["email"].as_str().unwrap().to_owned(), a["id"].clone());
    }
    let queues = json_ok(app.get("/api/v1/queues", sup).await, 200).await;
    let mut by_name = serde_json::Map::new();
    for q in queues["items"].as_array().unwrap() {
        by_name.insert(q["name"].as_str().unwrap().to_owned(), q["id"].clone());
    }
    (Value::Object(by_email), Value::Object(by_name))
}

async fn new_call(app: &TestApp, sup: &Creds) -> String {
    let r = app
        .post(
            "/api/v1/interactions",
            sup,
            &json!({ "channel": "voice", "direction": "inbound", "customer_address": "+12015550100" }),
        )
        .await;
    json_ok(r, 201).await["interaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn interaction(app: &TestApp, sup: &Creds, id: &str) -> Value {
    json_ok(
        app.get(&format!("/api/v1/interactions/{id}"), sup).await,
        200,
    )
    .await
}

async fn presence(app: &TestApp, who: &Creds, agent: &Value, p: Value) -> Value {
    let a = agent.as_str().unwrap();
    json_ok(
        put(app, &format!("/api/v1/agents/{a}/presence"), who, &p).await,
        200,
    )
    .await
}

both_backends! {
    async fn an_interaction_reaches_the_right_agent_and_ends_in_wrap_up(app) {
        let sup = app.login("supervisor").await;
        let alex = app.login("agent").await; // agent@: english 5, sales 4, support 2
        let (agents, queues) = catalogue(&app, &sup).await;
        let a1 = &agents["agent@example.com"];
        // Only Alex is available (agent2 has no sales skill anyway).
        let me = presence(&app, &alex, a1, json!({ "presence": "available" })).await;
        assert_eq!(me["agent"]["status"]["status"], "idle", "{me}");
        let call = new_call(&app, &sup).await;
        let r = app.post(&format!("/api/v1/interactions/{call}/route"), &sup, &json!({ "queue_id": queues["Sales"] })).await;
        let routed = json_ok(r, 200).await;
        assert!(routed["position"].is_null(), "offered at once: {routed}");
        let i = interaction(&app, &sup, &call).await;
        assert_eq!((i["state"].as_str(), &i["agent_id"]), (Some("offered"), a1));

        // Why: one decision, Alex the winner, with the candidates and rule.
        let why = json_ok(app.get(&format!("/api/v1/interactions/{call}/routing"), &sup).await, 200).await;
        let d = &why["decisions"];
        assert_eq!(d.as_array().unwrap().len(), 1, "{why}");
        assert_eq!(d[0]["agents"], json!([a1]));
        assert_eq!(d[0]["decision"]["winners"], json!([a1]));
        assert_eq!(d[0]["decision"]["strategy"], "longest_idle");
        assert_eq!(d[0]["decision"]["step"], 0);
        assert_eq!(d[0]["decision"]["candidates"][0]["agent"], *a1);
        assert_eq!(why["now"]["state"], "offered");

        // Only the offered agent answers; agent2 cannot take it.
        let blake = app.login_to("demo", "agent2@example.com", DEMO_PASSWORD).await;
        expect_error(app.post(&format!("/api/v1/interactions/{call}/accept"), &blake, &json!({})).await, 409, "invalid_transition").await;
        let r = app.post(&format!("/api/v1/interactions/{call}/accept"), &alex, &json!({})).await;
        assert_eq!(r.status(), 204);
        assert_eq!(interaction(&app, &sup, &call).await["state"], "connected");
        expect_error(app.post(&format!("/api/v1/interactions/{call}/accept"), &alex, &json!({})).await, 409, "invalid_transition").await;
        // Agent2 may not end Alex's call.
        expect_error(app.post(&format!("/api/v1/interactions/{call}/hang-up"), &blake, &json!({})).await, 404, "not_found").await;
        let r = app.post(&format!("/api/v1/interactions/{call}/hang-up"), &alex, &json!({})).await;
        assert_eq!(r.status(), 204);
        assert_eq!(interaction(&app, &sup, &call).await["state"], "wrap_up");
        let a = json_ok(app.post(&format!("/api/v1/agents/{}/wrap-up/end", a1.as_str().unwrap()), &alex, &json!({})).await, 200).await;
        assert_eq!(a["agent"]["status"]["status"], "idle", "{a}");
        let i = interaction(&app, &sup, &call).await;
        assert_eq!((i["state"].as_str(), i["close_reason"].as_str()), (Some("closed"), Some("completed")), "{i}");
        // The timeline tells it all.
        let tl = json_ok(app.get(&format!("/api/v1/interactions/{call}/events"), &sup).await, 200).await;
        let kinds: Vec<&str> = tl.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["created", "queued", "routed", "offered", "connected", "wrap_up_started", "closed"]);
    }

    async fn a_waiting_call_keeps_its_place_through_no_answers_and_a_rebuild(app) {
        let sup = app.login("supervisor").await;
        let alex = app.login("agent").await;
        let (agents, queues) = catalogue(&app, &sup).await;
        let a1 = &agents["agent@example.com"];
        let a1s = a1.as_str().unwrap();
        let tenant: switchboard::ids::TenantId = json_ok(app.get("/api/v1/tenant", &sup).await, 200).await["id"]
            .as_str().unwrap().parse().unwrap();
        // Offers to Sales ring for 1 s.
        queue::Entity::update_many()
            .col_expr(queue::Column::Config, Expr::value(json!({ "offer_timeout_secs": 1 })))
            .filter(queue::Column::TenantId.eq(tenant))
            .filter(queue::Column::Name.eq("Sales"))
            .exec(&app.state.db.conn)
            .await
            .unwrap();
        app.state.acd.reload(tenant);

        let me = presence(&app, &alex, a1, json!({ "presence": "away", "reason": "lunch" })).await;
        assert_eq!(me["agent"]["presence"], json!({ "presence": "away", "reason": "lunch" }));
        let (c1, c2) = (new_call(&app, &sup).await, new_call(&app, &sup).await);
        for (c, place) in [(&c1, 1), (&c2, 2)] {
            let r = json_ok(app.post(&format!("/api/v1/interactions/{c}/route"), &sup, &json!({ "queue_id": queues["Sales"] })).await, 200).await;
            assert_eq!(r["position"]["place"], place, "{r}");
        }
        // Back from lunch: the first call rings, nobody answers.
        presence(&app, &alex, a1, json!({ "presence": "available" })).await;
        assert_eq!(interaction(&app, &sup, &c1).await["state"], "offered");
        assert_eq!(interaction(&app, &sup, &c2).await["state"], "queued");
        let away = eventually(10, "the offer to time out", || async {
            let a = json_ok(app.get("/api/v1/routing/live", &sup).await, 200).await;
            let me = a["agents"].as_array().unwrap().iter().find(|x| x["id"] == *a1).unwrap().clone();
            (me["presence"]["presence"] == "away").then_some(me)
        }).await;
        assert_eq!(away["presence"]["reason"], "no_answer", "{away}");
        let i1 = interaction(&app, &sup, &c1).await;
        assert_eq!((i1["state"].as_str(), &i1["agent_id"]), (Some("queued"), &Value::Null));
        let why = json_ok(app.get(&format!("/api/v1/interactions/{c1}/routing"), &sup).await, 200).await;
        assert_eq!(why["position"]["place"], 1, "back at its place: {why}");

        // A rebuilt router (as after a restart) has the same places and presence.
        app.state.acd.reload(tenant);
        let live = json_ok(app.get("/api/v1/routing/live", &sup).await, 200).await;
        let sales = live["queues"].as_array().unwrap().iter().find(|q| q["id"] == queues["Sales"]).unwrap();
        assert_eq!(sales["waiting"], 2, "{sales}");
        for (c, place) in [(&c1, 1), (&c2, 2)] {
            let why = json_ok(app.get(&format!("/api/v1/interactions/{c}/routing"), &sup).await, 200).await;
            assert_eq!(why["position"]["place"], place, "{why}");
        }
        let me = live["agents"].as_array().unwrap().iter().find(|x| x["id"] == *a1).unwrap();
        assert_eq!(me["presence"]["reason"], "no_answer", "{me}");

        // Available again: the first call (not the second) rings, and is answered.
        presence(&app, &alex, a1, json!({ "presence": "available" })).await;
        assert_eq!(interaction(&app, &sup, &c1).await["state"], "offered");
        assert_eq!(app.post(&format!("/api/v1/interactions/{c1}/accept"), &alex, &json!({})).await.status(), 204);
        // Rebuilt again: Alex is still on that call, so the second one waits.
        app.state.acd.reload(tenant);
        let live = json_ok(app.get("/api/v1/routing/live", &sup).await, 200).await;
        let me = live["agents"].as_array().unwrap().iter().find(|x| x["id"] == *a1).unwrap();
        assert_eq!(me["connected"], json!([c1]), "{me}");
        assert_eq!(interaction(&app, &sup, &c2).await["state"], "queued");
        // The second caller gives up.
        assert_eq!(app.post(&format!("/api/v1/interactions/{c2}/hang-up"), &sup, &json!({})).await.status(), 204);
        let i2 = interaction(&app, &sup, &c2).await;
        assert_eq!((i2["state"].as_str(), i2["close_reason"].as_str()), (Some("closed"), Some("abandoned")));
        let _ = a1s;
    }

    async fn a_change_made_by_hand_is_what_the_router_sees_next(app) {
        let sup = app.login("supervisor").await;
        let (_, queues) = catalogue(&app, &sup).await;
        let call = new_call(&app, &sup).await;
        json_ok(app.post(&format!("/api/v1/interactions/{call}/route"), &sup, &json!({ "queue_id": queues["Billing"] })).await, 200).await;
        let waiting = |live: &Value| live["queues"].as_array().unwrap().iter().find(|q| q["id"] == queues["Billing"]).unwrap()["waiting"].clone();
        assert_eq!(waiting(&json_ok(app.get("/api/v1/routing/live", &sup).await, 200).await), 1);
        // A supervisor closes it by hand (the generic transitions API).
        json_ok(app.post(&format!("/api/v1/interactions/{call}/transitions"), &sup, &json!({ "type": "abandon" })).await, 200).await;
        assert_eq!(waiting(&json_ok(app.get("/api/v1/routing/live", &sup).await, 200).await), 0);
        let why = json_ok(app.get(&format!("/api/v1/interactions/{call}/routing"), &sup).await, 200).await;
        assert!(why["now"].is_null(), "{why}");
    }

    async fn routing_refuses_bad_input_other_tenants_and_other_agents(app) {
        let sup = app.login("supervisor").await;
        let alex = app.login("agent").await;
        let (agents, queues) = catalogue(&app, &sup).await;
        let (a1, a2) = (agents["agent@example.com"].as_str().unwrap(), agents["agent2@example.com"].as_str().unwrap());
        // An agent sets only their own presence; supervisors anyone's.
        expect_error(put(&app, &format!("/api/v1/agents/{a2}/presence"), &alex, &json!({ "presence": "available" })).await, 403, "forbidden").await;
        json_ok(put(&app, &format!("/api/v1/agents/{a2}/presence"), &sup, &json!({ "presence": "away", "reason": "meeting" })).await, 200).await;
        for (body, field) in [
            (json!({ "presence": "busy" }), "presence"),
            (json!({ "presence": "away", "reason": "out to lunch" }), "reason"),
            (json!({ "presence": "available", "reason": "x" }), "reason"),
            (json!({ "presence": "away", "reason": "r".repeat(65) }), "reason"),
            (json!({ "presence": "available", "mood": "good" }), "mood"),
        ] {
            let r = put(&app, &format!("/api/v1/agents/{a1}/presence"), &alex, &body).await;
            let e = expect_error(r, 422, "validation_failed").await;
            assert!(e.to_string().contains(field), "{body} -> {e}");
        }
        let call = new_call(&app, &sup).await;
        for (body, field) in [
            (json!({ "queue_id": queues["Sales"], "priority": 5000 }), "priority"),
            (json!({ "queue_id": "nope" }), "queue_id"),
            (json!({}), "queue_id"),
        ] {
            let r = app.post(&format!("/api/v1/interactions/{call}/route"), &sup, &body).await;
            let e = expect_error(r, 422, "validation_failed").await;
            assert!(e.to_string().contains(field), "{body} -> {e}");
        }
        // Unknown queue: 404, and the interaction did not move.
        let r = app.post(&format!("/api/v1/interactions/{call}/route"), &sup, &json!({ "queue_id": uuid::Uuid::now_v7() })).await;
        expect_error(r, 404, "not_found").await;
        assert_eq!(interaction(&app, &sup, &call).await["state"], "created");
        // Agents may not put interactions in queues; accepting what is not offered is refused.
        expect_error(app.post(&format!("/api/v1/interactions/{call}/route"), &alex, &json!({ "queue_id": queues["Sales"] })).await, 403, "forbidden").await;
        expect_error(app.post(&format!("/api/v1/interactions/{call}/accept"), &alex, &json!({})).await, 409, "conflict").await;
        // Another tenant sees none of it.
        let other = app.api_key("other", "admin").await;
        expect_error(put(&app, &format!("/api/v1/agents/{a1}/presence"), &other, &json!({ "presence": "available" })).await, 404, "not_found").await;
        expect_error(app.post(&format!("/api/v1/interactions/{call}/route"), &other, &json!({ "queue_id": queues["Sales"] })).await, 404, "not_found").await;
        expect_error(app.get(&format!("/api/v1/interactions/{call}/routing"), &other).await, 404, "not_found").await;
        let live = json_ok(app.get("/api/v1/routing/live", &other).await, 200).await;
        assert!(!live.to_string().contains(a1), "{live}");
        // An API key has no agent: it cannot answer.
        let key = app.api_key("demo", "agent").await;
        expect_error(app.post(&format!("/api/v1/interactions/{call}/accept"), &key, &json!({})).await, 403, "forbidden").await;
    }
}
