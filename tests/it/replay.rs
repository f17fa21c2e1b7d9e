//! `switchboard acd replay`: a recorded period re-run under another
//! strategy, from a saved file and from the database; bad input refused.

use std::process::Output;

use serde_json::{Value, json};
use switchboard::acd::engine::{AgentConfig, AgentSkill, QueueConfig, SkillReq, Strategy};
use switchboard::acd::replay::{RecordedAgent, RecordedCall, RecordedDay, RecordedQueue};
use switchboard::ids::{AgentId, QueueId, SkillId, TenantId};
use switchboard::interactions::domain::Channel;

use crate::both_backends;
use crate::helpers::*;

fn switchboard(args: &[&str], db_url: Option<&str>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD__DATA__DIR", dir.path())
        .env("SWITCHBOARD__LOG__LEVEL", "warn");
    if let Some(u) = db_url {
        c.env("SWITCHBOARD__DATABASE__URL", u);
    }
    c.output().expect("run switchboard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn u(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(42, n)
}

/// Queue S needs X (agent A only), H needs Z (B only), G needs Y (A at
/// level 1, B at 5). Recorded with longest-idle everywhere: the 200 s G call
/// goes to A (idle longer: B just took the H call) and the five S callers,
/// who wait 20 s at most, all give up. Best-proficiency gives it to B.
fn day() -> RecordedDay {
    let (x, y, z) = (SkillId(u(1)), SkillId(u(2)), SkillId(u(3)));
    let q = |n: u64, name: &str, s: SkillId| RecordedQueue {
        name: name.into(),
        config: QueueConfig {
            required: vec![SkillReq {
                skill: s,
                min_level: 1,
            }],
            ..QueueConfig::new(QueueId(u(n)), Strategy::LongestIdle)
        },
    };
    let a = |n: u64, name: &str, skills: &[(SkillId, u8)]| RecordedAgent {
        name: name.into(),
        config: AgentConfig {
            wrap_up_ms: Some(0),
            ..AgentConfig::new(
                AgentId(u(n)),
                skills
                    .iter()
                    .map(|&(skill, level)| AgentSkill { skill, level })
                    .collect(),
            )
        },
    };
    let call = |queue: u64, at: u64, handle: u64, patience: Option<u64>| RecordedCall {
        interaction: None,
        queue: QueueId(u(queue)),
        channel: Channel::Voice,
        arrival_ms: at * 1000,
        handle_ms: handle * 1000,
        wrap_up_ms: 0,
        patience_ms: patience.map(|p| p * 1000),
    };
    let from: chrono::DateTime<chrono::Utc> = "2026-03-02T00:00:00Z".parse().unwrap();
    let mut calls = vec![call(12, 0, 5, None), call(11, 10, 200, None)];
    for at in 11..=15 {
        calls.push(call(10, at, 10, Some(20)));
    }
    RecordedDay {
        tenant_id: TenantId(u(99)),
        from,
        to: from + chrono::Duration::hours(1),
        skills: vec![x, y, z],
        queues: vec![q(10, "Sales", x), q(11, "General", y), q(12, "Hardware", z)],
        agents: vec![
            a(20, "Ada", &[(x, 5), (y, 1)]),
            a(21, "Bo", &[(y, 5), (z, 5)]),
        ],
        calls,
    }
}

fn row<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {c}"))
}

#[test]
fn a_saved_day_replayed_under_best_proficiency_keeps_the_specialist_free() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("day.json");
    std::fs::write(&file, serde_json::to_string(&day()).unwrap()).unwrap();
    let f = file.to_str().unwrap();
    let o = switchboard(
        &[
            "acd",
            "replay",
            "--input",
            f,
            "--strategy",
            "best_proficiency",
            "--json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let c: Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
    let t = &c["total"];
    assert_eq!(
        (&t["baseline"]["offered"], &t["alternative"]["offered"]),
        (&json!(7), &json!(7))
    );
    assert_eq!(
        (&t["baseline"]["answered"], &t["baseline"]["abandoned"]),
        (&json!(2), &json!(5)),
        "{c}"
    );
    assert_eq!(
        (
            &t["alternative"]["answered"],
            &t["alternative"]["abandoned"]
        ),
        (&json!(5), &json!(2)),
        "{c}"
    );
    let s = row(&c, "Sales");
    assert_eq!(
        (&s["baseline_strategy"], &s["alternative_strategy"]),
        (&json!("longest_idle"), &json!("best_proficiency"))
    );
    assert_eq!(s["baseline"]["service_level_pct"], 0.0);
    assert_eq!(s["baseline"]["abandoned_pct"], 100.0);
    assert!(s["baseline"]["asa_secs"].is_null());
    // Answered at once, after 9 s and after 18 s (within 20 s); two give up.
    assert_eq!(s["alternative"]["service_level_pct"], 60.0);
    assert_eq!(s["alternative"]["asa_secs"], 9.0);
    assert_eq!(s["difference"]["abandoned_pct"], -60.0);
    assert_eq!(s["difference"]["service_level_pct"], 60.0);

    // Only General changed: the same; the recorded strategy itself: no difference.
    let g = QueueId(u(11)).to_string();
    let o = switchboard(
        &[
            "acd",
            "replay",
            "--input",
            f,
            "--strategy",
            "best_proficiency",
            "--queue",
            &g,
            "--json",
        ],
        None,
    );
    let c2: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(c2["total"]["alternative"], c["total"]["alternative"]);
    assert_eq!(row(&c2, "Sales")["alternative_strategy"], "longest_idle");
    let o = switchboard(
        &[
            "acd",
            "replay",
            "--input",
            f,
            "--strategy",
            "longest_idle",
            "--json",
        ],
        None,
    );
    let same: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(same["total"]["baseline"], same["total"]["alternative"]);
    assert_eq!(same["total"]["difference"]["service_level_pct"], 0.0);

    // The table says the same.
    let o = switchboard(
        &[
            "acd",
            "replay",
            "--input",
            f,
            "--strategy",
            "best_proficiency",
        ],
        None,
    );
    assert!(o.status.success());
    let table = stdout(&o);
    assert!(
        table.contains("Sales (longest_idle→best_proficiency)"),
        "{table}"
    );
    let total = table.lines().find(|l| l.starts_with("total")).unwrap();
    assert!(
        total.contains("7/7") && total.contains("2/5") && total.contains("71.4/28.6/-42.9"),
        "{total}"
    );
}

#[test]
fn bad_replay_input_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("day.json");
    std::fs::write(&good, serde_json::to_string(&day()).unwrap()).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"calls\": [").unwrap();
    let mut unsorted = day();
    unsorted.calls.swap(0, 3);
    let unsorted_f = dir.path().join("unsorted.json");
    std::fs::write(&unsorted_f, serde_json::to_string(&unsorted).unwrap()).unwrap();
    let g = good.to_str().unwrap();
    let unknown_queue = uuid::Uuid::now_v7().to_string();
    for (args, says) in [
        (
            vec!["acd", "replay", "--input", g, "--strategy", "fastest"],
            "unknown strategy \"fastest\"",
        ),
        (
            vec![
                "acd",
                "replay",
                "--input",
                bad.to_str().unwrap(),
                "--strategy",
                "round_robin",
            ],
            "not a recorded period",
        ),
        (
            vec![
                "acd",
                "replay",
                "--input",
                unsorted_f.to_str().unwrap(),
                "--strategy",
                "round_robin",
            ],
            "sorted",
        ),
        (vec!["acd", "replay", "--input", g], "--strategy"),
        (
            vec![
                "acd",
                "replay",
                "--input",
                g,
                "--strategy",
                "round_robin",
                "--queue",
                &unknown_queue,
            ],
            "not a queue of the recorded period",
        ),
        (
            vec!["acd", "replay", "--strategy", "round_robin"],
            "--tenant, --from and --to",
        ),
        (
            vec![
                "acd",
                "replay",
                "--tenant",
                "demo",
                "--from",
                "2026-03-03",
                "--to",
                "2026-03-02",
                "--strategy",
                "round_robin",
            ],
            "must be before",
        ),
        (
            vec![
                "acd",
                "replay",
                "--tenant",
                "demo",
                "--from",
                "someday",
                "--to",
                "2026-03-02",
                "--strategy",
                "round_robin",
            ],
            "--from",
        ),
    ] {
        let o = switchboard(&args, None);
        assert!(!o.status.success(), "{args:?} succeeded");
        let e = stderr(&o);
        assert!(e.contains(says), "{args:?}: {e}");
        assert!(
            stdout(&o).is_empty() || !stdout(&o).contains("offered"),
            "{args:?}"
        );
    }
}

both_backends! {
    async fn a_day_recorded_through_the_routing_api_is_extracted_saved_and_replayed(app) {
        let sup = app.login("supervisor").await;
        let alex = app.login("agent").await;
        let queues = json_ok(app.get("/api/v1/queues", &sup).await, 200).await;
        let sales = queues["items"].as_array().unwrap().iter().find(|q| q["name"] == "Sales").unwrap()["id"].clone();
        let agents = json_ok(app.get("/api/v1/agents", &sup).await, 200).await;
        let users = json_ok(app.get("/api/v1/users?limit=200", &app.login("admin").await).await, 200).await;
        let alex_user = users["items"].as_array().unwrap().iter().find(|u| u["email"] == "agent@example.com").unwrap()["id"].clone();
        let a1 = agents["items"].as_array().unwrap().iter()
            .find(|a| a["user_id"] == alex_user).unwrap()["id"].as_str().unwrap().to_owned();
        let put_presence = |p: Value| {
            let (app, alex, a1) = (&app, &alex, &a1);
            async move {
                let r = app.req(reqwest::Method::PUT, &format!("/api/v1/agents/{a1}/presence"), alex).json(&p).send().await.unwrap();
                json_ok(r, 200).await;
            }
        };
        let new_call = || async {
            let r = app.post("/api/v1/interactions", &sup, &json!({ "channel": "voice", "direction": "inbound" })).await;
            json_ok(r, 201).await["interaction"]["id"].as_str().unwrap().to_owned()
        };
        // One call answered and wrapped up, one abandoned while Alex is away.
        put_presence(json!({ "presence": "available" })).await;
        let c1 = new_call().await;
        json_ok(app.post(&format!("/api/v1/interactions/{c1}/route"), &sup, &json!({ "queue_id": sales })).await, 200).await;
        assert_eq!(app.post(&format!("/api/v1/interactions/{c1}/accept"), &alex, &json!({})).await.status(), 204);
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert_eq!(app.post(&format!("/api/v1/interactions/{c1}/hang-up"), &alex, &json!({})).await.status(), 204);
        json_ok(app.post(&format!("/api/v1/agents/{a1}/wrap-up/end"), &alex, &json!({})).await, 200).await;
        put_presence(json!({ "presence": "away", "reason": "break" })).await;
        let c2 = new_call().await;
        json_ok(app.post(&format!("/api/v1/interactions/{c2}/route"), &sup, &json!({ "queue_id": sales })).await, 200).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(app.post(&format!("/api/v1/interactions/{c2}/hang-up"), &sup, &json!({})).await.status(), 204);

        let url = app.state.settings.database_url();
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("day.json");
        let today = chrono::Utc::now().date_naive().to_string();
        let o = switchboard(&["acd", "replay", "--tenant", "demo", "--from", &today, "--to", &today,
            "--strategy", "best_proficiency", "--json", "--save", saved.to_str().unwrap()], Some(&url));
        assert!(o.status.success(), "{}", stderr(&o));
        let c: Value = serde_json::from_str(&stdout(&o)).expect("JSON on stdout");
        assert_eq!((&c["calls"], &c["agents"]), (&json!(2), &json!(3)), "{c}");
        let s = row(&c, "Sales");
        assert_eq!((&s["baseline"]["offered"], &s["alternative"]["offered"]), (&json!(2), &json!(2)), "{s}");
        // The recorded day: the answered call's talk time, the abandoned one's patience.
        let day: RecordedDay = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
        let answered = day.calls.iter().find(|x| x.interaction.map(|i| i.to_string()) == Some(c1.clone())).unwrap();
        assert!(answered.handle_ms >= 600 && answered.patience_ms.is_none(), "{answered:?}");
        let gave_up = day.calls.iter().find(|x| x.interaction.map(|i| i.to_string()) == Some(c2.clone())).unwrap();
        assert!(gave_up.patience_ms.is_some_and(|p| p >= 300), "{gave_up:?}");
        // Replayed from the file: the same comparison, without the database.
        let o = switchboard(&["acd", "replay", "--input", saved.to_str().unwrap(), "--strategy", "best_proficiency", "--json"], None);
        assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap(), c);
        // Another tenant's period has none of these calls; an unknown tenant is refused.
        let o = switchboard(&["acd", "replay", "--tenant", "other", "--from", &today, "--to", &today, "--strategy", "round_robin", "--json"], Some(&url));
        assert!(o.status.success(), "{}", stderr(&o));
        let other: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(other["calls"], 0, "{other}");
        let o = switchboard(&["acd", "replay", "--tenant", "nosuch", "--from", &today, "--to", &today, "--strategy", "round_robin"], Some(&url));
        assert!(!o.status.success());
        assert!(stderr(&o).contains("no such tenant"), "{}", stderr(&o));
    }
}
