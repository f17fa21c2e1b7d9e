//! The engine and the simulator, offline.

use super::engine::*;
use super::testing::*;

fn engine() -> FlowEngine {
    FlowEngine::new(Limits::default())
}

fn run(src: &str, inputs: &[&str]) -> Outcome {
    run_with(src, inputs, &Setting::default())
}

fn run_with(src: &str, inputs: &[&str], s: &Setting) -> Outcome {
    let e = engine();
    let flow = e.compile("t", 1, src).expect("compiles");
    let inputs: Vec<Input> = inputs.iter().map(|i| Input::parse(i).unwrap()).collect();
    simulate(&e, &flow, s, &inputs, false).unwrap()
}

fn kinds(o: &Outcome) -> Vec<String> {
    o.path
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect()
}

const MENU: &str = r#"
answer();
play("welcome");
let c = menu(#{ prompt: "main_menu", options: "12", retries: 3, invalid: "invalid" });
set("choice", c);
switch c {
    "1" => queue("Sales", #{ priority: 5, skills: ["french"] }),
    "2" => transfer("+33140000000"),
    _ => { play("goodbye"); hangup(); }
}
"#;

#[test]
fn a_menu_flow_reaches_the_chosen_queue() {
    let o = run(MENU, &["digits:1"]);
    assert_eq!(kinds(&o), ["answer", "play", "gather", "set", "queue"]);
    match o.end {
        Some(End::Queue {
            queue,
            priority,
            skills,
            ..
        }) => {
            assert_eq!((queue.as_str(), priority), ("Sales", 5));
            assert_eq!(skills, ["french"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(o.attributes["choice"], "1");
    // The queue step names the script line that chose it.
    assert_eq!(o.path[4]["line"], 7);
}

#[test]
fn a_menu_retries_invalid_and_missing_input_then_gives_up() {
    let o = run(MENU, &["digits:7", "silence", "digits:2"]);
    assert_eq!(
        o.end,
        Some(End::Transfer {
            to: "+33140000000".into()
        })
    );
    let prompts: Vec<_> = o.path.iter().filter_map(|s| s["prompt"].as_str()).collect();
    assert_eq!(
        prompts,
        [
            "welcome",
            "main_menu",
            "invalid",
            "main_menu",
            "invalid",
            "main_menu"
        ]
    );
    let o = run(MENU, &["digits:9", "digits:9", "digits:9"]);
    assert_eq!(o.end, Some(End::Hangup));
    assert_eq!(o.attributes["choice"], "");
}

#[test]
fn the_caller_hanging_up_ends_the_session() {
    let o = run(MENU, &["hangup"]);
    assert!(o.caller_hung_up);
    assert_eq!(o.end, None);
}

#[test]
fn script_errors_end_with_line_and_column() {
    let o = run(
        "answer();\nlet x = 1;\nplay(x + \"b\");\nlet y = [1][5];\n",
        &[],
    );
    match o.end {
        Some(End::Error { line, message, .. }) => {
            assert_eq!(line, 4, "{message}");
            assert!(message.to_lowercase().contains("index"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A prompt name that is not one is an error of the flow, not of the server.
    let o = run("play(\"../../etc/passwd\");", &[]);
    assert!(
        matches!(o.end, Some(End::Error { line: 1, .. })),
        "{:?}",
        o.end
    );
}

#[test]
fn compile_errors_have_line_and_column() {
    let e = engine();
    let d = e.compile("t", 1, "answer();\nlet x = ;\n").unwrap_err();
    assert_eq!((d.line, d.severity.as_str()), (2, "error"));
    assert!(d.column > 0);
    let d = e.compile("t", 1, "let s = `unterminated").unwrap_err();
    assert_eq!(d.line, 1);
}

#[test]
fn the_sandbox_stops_loops_recursion_and_huge_values() {
    for (src, needle) in [
        ("loop { }", "too many operations"),
        ("let x = 0; while true { x += 1; }", "too many operations"),
        ("fn f(n) { f(n + 1) } f(0);", "too deeply"),
        ("let s = \"x\"; loop { s += s; }", "too large"),
        ("let a = []; loop { a.push(1); }", "too large"),
        ("loop { play(\"x\"); }", "more than"),
    ] {
        let o = run(src, &[]);
        match &o.end {
            Some(End::Error { message, .. }) => {
                assert!(message.contains(needle), "{src}: {message}")
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn no_eval_modules_files_or_clock() {
    let e = engine();
    for src in [
        "eval(\"1\")",
        "import \"x\" as y;",
        "timestamp()",
        "print(1); open(\"/etc/passwd\")",
    ] {
        let r = e.compile("t", 1, src);
        match r {
            Err(_) => {}
            Ok(flow) => {
                let (next, _) = e.advance(&flow, &Default::default(), Vec::new());
                assert!(
                    matches!(
                        next,
                        Next::End {
                            end: End::Error { .. },
                            ..
                        }
                    ),
                    "{src}: {next:?}"
                );
            }
        }
    }
}

#[test]
fn a_step_has_a_wall_clock_limit() {
    let e = FlowEngine::new(Limits {
        operations: u64::MAX / 2,
        step_time: std::time::Duration::from_millis(50),
        ..Limits::default()
    });
    let flow = e.compile("t", 1, "let x = 0; loop { x += 1; }").unwrap();
    let t = std::time::Instant::now();
    let (next, _) = e.advance(&flow, &Default::default(), Vec::new());
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    match next {
        Next::End {
            end: End::Error { message, .. },
            ..
        } => assert!(message.contains("time limit"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn try_catch_cannot_swallow_a_suspension_or_a_limit() {
    let o = run(
        "try { let d = gather(#{ prompt: \"p\" }); set(\"d\", d); } catch { set(\"caught\", true) } queue(\"Q\");",
        &["digits:4"],
    );
    assert_eq!(o.attributes.get("d"), Some(&serde_json::json!("4")));
    assert!(o.attributes.get("caught").is_none());
    let o = run("try { loop {} } catch { queue(\"Q\") }", &[]);
    assert!(matches!(o.end, Some(End::Error { .. })), "{:?}", o.end);
}

#[test]
fn business_hours_use_the_sessions_time() {
    let src = r#"
let hours = #{ tz: "Europe/Paris", hours: #{ weekdays: "09:00-18:00" }, holidays: ["2026-12-25"] };
if open_now(hours) { queue("Sales") } else { play("closed"); hangup() }
"#;
    let at = |t: &str| Setting {
        time: Some(t.into()),
        ..Setting::default()
    };
    assert!(matches!(
        run_with(src, &[], &at("2026-12-01T10:00:00+01:00")).end,
        Some(End::Queue { .. })
    ));
    assert_eq!(
        run_with(src, &[], &at("2026-12-01T19:00:00+01:00")).end,
        Some(End::Hangup)
    );
    assert_eq!(
        run_with(src, &[], &at("2026-12-25T10:00:00+01:00")).end,
        Some(End::Hangup)
    );
    let o = run_with(
        "let n = now(\"Asia/Seoul\"); set(\"h\", n.hour); set(\"d\", n.weekday);",
        &[],
        &at("2026-12-01T10:00:00+00:00"),
    );
    assert_eq!(o.attributes["h"], 19);
    assert_eq!(o.attributes["d"], "tue");
}

#[test]
fn speech_with_a_dtmf_fallback() {
    let src = r#"
let h = listen(#{ prompt: "say_or_press", phrases: ["sales", "support"], timeout: 4 });
if h.text == "sales" || h.digits == "1" { queue("Sales") }
else if h.text == "support" || h.digits == "2" { queue("Support") }
else { hangup() }
"#;
    let q = |o: &Outcome| match &o.end {
        Some(End::Queue { queue, .. }) => queue.clone(),
        other => format!("{other:?}"),
    };
    assert_eq!(q(&run(src, &["speech:support"])), "Support");
    assert_eq!(q(&run(src, &["digits:1"])), "Sales");
    let no_speech = Setting {
        speech: Some(false),
        ..Setting::default()
    };
    assert_eq!(q(&run_with(src, &["digits:2"], &no_speech)), "Support");
    assert_eq!(
        q(&run_with(
            "if speech_available() { queue(\"A\") } else { queue(\"B\") }",
            &[],
            &no_speech
        )),
        "B"
    );
}

#[test]
fn contact_lookup_attributes_and_logs() {
    let s = Setting {
        contact: Some(
            serde_json::json!({ "id": "c1", "name": "Ada", "attributes": { "tier": "gold" } }),
        ),
        attributes: Some(serde_json::Map::from_iter([(
            "lang".to_owned(),
            serde_json::json!("fr"),
        )])),
        ..Setting::default()
    };
    let src = r#"
let c = lookup_contact();
log(`caller ${caller()} is ${c.name}`);
set("vip", c.attributes.tier == "gold");
let p = if get("lang") == "fr" { 10 } else { 0 };
queue("Sales", #{ priority: p });
"#;
    let o = run_with(src, &[], &s);
    assert_eq!(o.attributes["vip"], true);
    assert!(matches!(o.end, Some(End::Queue { priority: 10, .. })));
    assert_eq!(o.path[1]["message"], "caller +15550100 is Ada");
}

#[test]
fn http_only_to_allowed_hosts() {
    let s = Setting {
        http: vec![HttpMock {
            method: "GET".into(),
            url: "https://crm.example.com/v?n=1".into(),
            status: 200,
            body: "{\"tier\":\"gold\"}".into(),
        }],
        ..Setting::default()
    };
    let o = run_with(
        "let r = http_get(\"https://crm.example.com/v?n=1\"); let j = parse_json(r.body); set(\"tier\", j.tier);",
        &[],
        &s,
    );
    assert_eq!(o.attributes["tier"], "gold");
    let o = run_with("http_get(\"https://evil.example.net/\")", &[], &s);
    match o.end {
        Some(End::Error { message, .. }) => assert!(message.contains("not allowed"), "{message}"),
        other => panic!("{other:?}"),
    }
    let o = run_with("http_get(\"file:///etc/passwd\")", &[], &s);
    assert!(matches!(o.end, Some(End::Error { .. })));
}

#[test]
fn bad_options_are_script_errors_naming_the_option() {
    for (src, needle) in [
        ("menu(#{ options: \"12\" })", "prompt"),
        ("menu(#{ prompt: \"p\", options: \"1x\" })", "options"),
        ("gather(#{ timeout: \"soon\" })", "timeout"),
        ("gather(#{ colour: 1 })", "unknown option"),
        ("queue(\"Q\", #{ priority: 99999 })", "priority"),
        ("set(\"a b\", 1)", "attribute name"),
        ("listen(#{ phrases: [\"a\\\"b\"] })", "quotes"),
    ] {
        match run(src, &[]).end {
            Some(End::Error { message, .. }) => {
                assert!(message.contains(needle), "{src}: {message}")
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn flow_tests_report_a_readable_diff() {
    let e = engine();
    let flow = e.compile("t", 1, MENU).unwrap();
    let file = TestFile::parse(
        r#"
[[case]]
name = "sales"
inputs = ["digits:1"]
[case.expect]
prompts = ["welcome", "main_menu"]
queue = "Sales"
priority = 5
attributes = { choice = "1" }
end = "queue"

[[case]]
name = "wrong"
inputs = ["digits:2", "digits:5"]
[case.expect]
prompts = ["welcome", "main_menu", "goodbye"]
queue = "Sales"
"#,
    )
    .unwrap();
    let r: Vec<_> = file.cases.iter().map(|c| run_case(&e, &flow, c)).collect();
    assert!(r[0].passed, "{:?}", r[0].diff);
    assert!(!r[1].passed);
    let d = r[1].diff.as_deref().unwrap();
    assert!(d.contains("  - goodbye"), "{d}");
    assert!(d.contains("queue: expected \"Sales\", found none"), "{d}");
    assert!(d.contains("inputs left unused: digits:5"), "{d}");
}

#[test]
fn malformed_test_files_are_refused_with_a_reason() {
    for (text, needle) in [
        ("[[case]]\nname = 1", "line"),
        ("[[case]]\nname = \"a\"\ninputs = [\"press 1\"]", "digits:1"),
        (
            "[[case]]\nname = \"a\"\n[case.expect]\nend = \"elsewhere\"",
            "expect.end",
        ),
        ("[[case]]\nname = \"a\"\ntime = \"tomorrow\"", "RFC 3339"),
        ("[[case]]\nname = \"a\"\nbogus = 1", "unknown field"),
    ] {
        let e = TestFile::parse(text).unwrap_err();
        assert!(e.contains(needle), "{text}: {e}");
    }
}

#[test]
fn the_simulator_stops_where_the_flow_waits() {
    let e = engine();
    let flow = e.compile("t", 1, MENU).unwrap();
    let o = simulate(&e, &flow, &Setting::default(), &[], true).unwrap();
    assert_eq!(o.waiting_for.as_deref(), Some("digits"));
    assert_eq!(o.path.last().unwrap()["prompt"], "main_menu");
    let o = simulate(
        &e,
        &flow,
        &Setting::default(),
        &[Input::Digits("1".into())],
        true,
    )
    .unwrap();
    assert!(matches!(o.end, Some(End::Queue { .. })));
}
