//! Flows without a call: the editor's simulator and offline flow tests.
//!
//! A scripted customer answers the flow's commands from a list of inputs
//! (`digits:12#`, `speech:some words`, `silence`, `hangup`, `text:hello`);
//! the time of day, the contact found for the caller and the answers of
//! HTTP lookups are given too. What the flow did is its **path**: every
//! prompt, digit, attribute and the end.
//!
//! Flow test files (`*.test.toml`) hold cases for one flow:
//!
//! ```toml
//! flow = "main-menu.rhai"          # the script, next to this file
//!
//! [[case]]
//! name = "sales by DTMF"
//! time = "2026-12-01T10:00:00+01:00"
//! caller = "+33612345678"
//! inputs = ["digits:1"]
//! [case.expect]
//! prompts = ["welcome", "main_menu"]
//! queue = "Sales"
//! priority = 5
//! end = "queue"
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::engine::{Command, Context, End, Entry, Flow, FlowEngine, Next};

/// What the scripted customer does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Digits(String),
    Speech(String),
    Text(String),
    Silence,
    Hangup,
}

impl Input {
    pub fn parse(s: &str) -> Result<Input, String> {
        let s = s.trim_start();
        if s == "silence" {
            return Ok(Input::Silence);
        }
        if s == "hangup" {
            return Ok(Input::Hangup);
        }
        if let Some(d) = s.strip_prefix("digits:") {
            let d = d.trim();
            if d.is_empty() || d.len() > 32 || !d.chars().all(|c| "0123456789*#".contains(c)) {
                return Err(format!("input {s:?}: digits are 1-32 of 0-9, * and #"));
            }
            return Ok(Input::Digits(d.into()));
        }
        if let Some(t) = s.strip_prefix("speech:") {
            return Ok(Input::Speech(t.trim().chars().take(500).collect()));
        }
        if let Some(t) = s.strip_prefix("text:") {
            return Ok(Input::Text(t.trim().chars().take(4000).collect()));
        }
        Err(format!(
            "input {s:?}: write digits:1, speech:words, text:words, silence or hangup"
        ))
    }

    fn label(&self) -> String {
        match self {
            Input::Digits(d) => format!("digits:{d}"),
            Input::Speech(t) => format!("speech:{t}"),
            Input::Text(t) => format!("text:{t}"),
            Input::Silence => "silence".into(),
            Input::Hangup => "hangup".into(),
        }
    }
}

/// A scripted HTTP answer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpMock {
    #[serde(default = "get")]
    pub method: String,
    pub url: String,
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub body: String,
}

fn get() -> String {
    "GET".into()
}
fn ok() -> u16 {
    200
}

/// The world around a simulated session.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// Now, as the flow sees it (default: Monday 2026-01-05 10:00 UTC).
    pub time: Option<String>,
    pub caller: Option<String>,
    pub called: Option<String>,
    /// "voice" (default) or "chat".
    pub channel: Option<String>,
    /// Whether speech recognition is available (default true).
    pub speech: Option<bool>,
    /// The contact found for the caller (none: unknown caller).
    #[schema(value_type = Option<Object>)]
    pub contact: Option<Value>,
    /// The interaction's attributes at the start.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
    /// Hosts the flow may call (default: those of the scripted answers).
    pub http_hosts: Option<Vec<String>>,
    /// Scripted HTTP answers.
    #[serde(default)]
    pub http: Vec<HttpMock>,
}

pub const DEFAULT_TIME: &str = "2026-01-05T10:00:00+00:00";

impl Setting {
    pub fn context(&self) -> Result<(Arc<Context>, DateTime<FixedOffset>), String> {
        let time = self.time.as_deref().unwrap_or(DEFAULT_TIME);
        let time = DateTime::parse_from_rfc3339(time)
            .map_err(|_| format!("time {time:?} is not RFC 3339 (2026-12-01T10:00:00+01:00)"))?;
        if self.contact.as_ref().is_some_and(|c| !c.is_object()) {
            return Err("contact must be a map of the contact's fields (name, tags, ...)".into());
        }
        let channel = self.channel.clone().unwrap_or_else(|| "voice".into());
        if !matches!(channel.as_str(), "voice" | "chat") {
            return Err(format!("channel {channel:?}: voice or chat"));
        }
        let http_hosts = self.http_hosts.clone().unwrap_or_else(|| {
            self.http
                .iter()
                .filter_map(|m| url::Url::parse(&m.url).ok()?.host_str().map(str::to_owned))
                .collect()
        });
        Ok((
            Arc::new(Context {
                channel,
                caller: self.caller.clone().unwrap_or_else(|| "+15550100".into()),
                called: self.called.clone().unwrap_or_else(|| "+15550199".into()),
                interaction_id: None,
                attributes: self.attributes.clone().unwrap_or_default(),
                speech: self.speech.unwrap_or(true),
                http_hosts,
            }),
            time,
        ))
    }
}

/// What a simulated session did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    /// Each step as `{kind, line, ...}`.
    #[schema(value_type = Vec<Object>)]
    pub path: Vec<Value>,
    /// The input the flow waits for (the simulator's inputs ran out).
    pub waiting_for: Option<String>,
    /// How the flow ended (none while waiting or after the caller hung up).
    #[schema(value_type = Option<Object>)]
    pub end: Option<End>,
    /// The caller hung up.
    pub caller_hung_up: bool,
    /// Inputs the flow did not use, and why the first was refused.
    pub unused_inputs: Vec<String>,
    pub refused_input: Option<String>,
    #[serde(skip)]
    pub attributes: Map<String, Value>,
}

/// Runs `flow` against scripted inputs. `interactive`: when the inputs run
/// out the simulation stops and says what it waits for; otherwise the
/// customer stays silent.
pub fn simulate(
    engine: &FlowEngine,
    flow: &Flow,
    setting: &Setting,
    inputs: &[Input],
    interactive: bool,
) -> Result<Outcome, String> {
    simulate_within(
        engine,
        flow,
        setting,
        inputs,
        interactive,
        Duration::from_secs(60),
    )
}

/// [`simulate`], ending with an error once `budget` is spent.
pub fn simulate_within(
    engine: &FlowEngine,
    flow: &Flow,
    setting: &Setting,
    inputs: &[Input],
    interactive: bool,
    budget: Duration,
) -> Result<Outcome, String> {
    let started = Instant::now();
    let (context, time) = setting.context()?;
    let mut inputs: VecDeque<Input> = inputs.iter().cloned().collect();
    let mut journal: Vec<Entry> = Vec::new();
    let mut out = Outcome {
        path: Vec::new(),
        waiting_for: None,
        end: None,
        caller_hung_up: false,
        unused_inputs: Vec::new(),
        refused_input: None,
        attributes: context.attributes.clone(),
    };
    loop {
        if started.elapsed() > budget {
            let end = End::Error {
                message: format!("the simulation ran longer than {} s", budget.as_secs()),
                line: 0,
                column: 0,
            };
            out.path
                .push(json!({ "kind": "error", "message": "time budget spent", "line": 0 }));
            out.end = Some(end);
            break;
        }
        let (next, j) = engine.advance(flow, &context, journal);
        journal = j;
        let (command, line) = match next {
            Next::End { end, line } => {
                let mut step = serde_json::to_value(&end).expect("ends serialise");
                step["line"] = json!(line);
                if matches!(end, End::Error { .. }) {
                    step["kind"] = json!("error");
                }
                out.path.push(step);
                out.end = Some(end);
                break;
            }
            Next::Do { command, line } => (command, line),
        };
        if interactive && inputs.is_empty() && command.waits_for().is_some() {
            let waiting = match (&command, context.speech) {
                (Command::Listen { .. }, false) => None,
                _ => command.waits_for(),
            };
            if let Some(w) = waiting {
                let mut step = describe(&command, line);
                step["waiting"] = json!(true);
                out.path.push(step);
                out.waiting_for = Some(w.into());
                break;
            }
        }
        let answer = match answer(&command, &context, time, setting, &mut inputs) {
            Ok(a) => a,
            Err(Stop::HungUp) => {
                let mut step = describe(&command, line);
                step["caller_hung_up"] = json!(true);
                out.path.push(step);
                out.caller_hung_up = true;
                break;
            }
            Err(Stop::Refused(why)) => {
                out.path.push(describe(&command, line));
                out.refused_input = Some(why);
                break;
            }
        };
        let mut step = describe(&command, line);
        if !answer.is_null() {
            step["answer"] = answer.clone();
        }
        if let Command::Set { name, value } = &command {
            out.attributes.insert(name.clone(), value.clone());
        }
        out.path.push(step);
        journal.push(Entry {
            command,
            answer,
            line,
        });
    }
    out.unused_inputs = inputs.iter().map(Input::label).collect();
    Ok(out)
}

enum Stop {
    HungUp,
    Refused(String),
}

fn describe(c: &Command, line: u32) -> Value {
    let mut v = serde_json::to_value(c).expect("commands serialise");
    v["line"] = json!(line);
    v
}

fn answer(
    c: &Command,
    ctx: &Context,
    time: DateTime<FixedOffset>,
    setting: &Setting,
    inputs: &mut VecDeque<Input>,
) -> Result<Value, Stop> {
    let refused = |i: &Input, want: &str| {
        Stop::Refused(format!(
            "input {:?} does not fit: the flow waited for {want}",
            i.label()
        ))
    };
    Ok(match c {
        Command::Answer
        | Command::Play { .. }
        | Command::Say { .. }
        | Command::Set { .. }
        | Command::Log { .. } => {
            if matches!(inputs.front(), Some(Input::Hangup))
                && !matches!(c, Command::Set { .. } | Command::Log { .. })
            {
                inputs.pop_front();
                return Err(Stop::HungUp);
            }
            Value::Null
        }
        Command::Gather {
            max_digits,
            terminator,
            ..
        } => match inputs.pop_front() {
            None | Some(Input::Silence) => json!(""),
            Some(Input::Hangup) => return Err(Stop::HungUp),
            Some(Input::Digits(d)) => {
                let mut d = d.as_str();
                if let Some(t) = terminator
                    && let Some(i) = d.find(t.as_str())
                {
                    d = &d[..i];
                }
                json!(d.chars().take(*max_digits as usize).collect::<String>())
            }
            Some(other) => {
                let r = refused(&other, "digits");
                inputs.push_front(other);
                return Err(r);
            }
        },
        Command::Listen { .. } => {
            if !ctx.speech {
                return Ok(match inputs.front() {
                    Some(Input::Digits(d)) => {
                        let d = d.clone();
                        inputs.pop_front();
                        json!({ "available": false, "text": "", "confidence": 0.0, "digits": d })
                    }
                    Some(Input::Hangup) => {
                        inputs.pop_front();
                        return Err(Stop::HungUp);
                    }
                    Some(Input::Silence) => {
                        inputs.pop_front();
                        json!({ "available": false, "text": "", "confidence": 0.0, "digits": "" })
                    }
                    _ => json!({ "available": false, "text": "", "confidence": 0.0, "digits": "" }),
                });
            }
            match inputs.pop_front() {
                None | Some(Input::Silence) => {
                    json!({ "available": true, "text": "", "confidence": 0.0, "digits": "" })
                }
                Some(Input::Hangup) => return Err(Stop::HungUp),
                Some(Input::Speech(t)) => {
                    json!({ "available": true, "text": t, "confidence": 1.0, "digits": "" })
                }
                Some(Input::Digits(d)) => {
                    json!({ "available": true, "text": "", "confidence": 0.0, "digits": d })
                }
                Some(other) => {
                    let r = refused(&other, "speech or digits");
                    inputs.push_front(other);
                    return Err(r);
                }
            }
        }
        Command::Ask { .. } => match inputs.pop_front() {
            None | Some(Input::Silence) => json!(""),
            Some(Input::Hangup) => return Err(Stop::HungUp),
            Some(Input::Text(t)) | Some(Input::Speech(t)) | Some(Input::Digits(t)) => json!(t),
        },
        Command::Record { .. } => match inputs.pop_front() {
            None | Some(Input::Silence) => {
                json!({ "recording": null, "secs": 0, "transcript": "" })
            }
            Some(Input::Hangup) => return Err(Stop::HungUp),
            Some(Input::Speech(t)) => {
                json!({ "recording": "simulated.wav", "secs": 5, "transcript": t })
            }
            Some(other) => {
                let r = refused(&other, "a spoken message");
                inputs.push_front(other);
                return Err(r);
            }
        },
        Command::Lookup => setting.contact.clone().unwrap_or(Value::Null),
        Command::Now => json!(time.to_rfc3339()),
        Command::Http { method, url, .. } => match setting
            .http
            .iter()
            .find(|m| m.method.eq_ignore_ascii_case(method) && &m.url == url)
        {
            Some(m) => json!({ "status": m.status, "body": m.body }),
            None => {
                json!({ "status": 0, "body": "", "error": format!("no answer scripted for {method} {url}") })
            }
        },
    })
}

/// One case of a flow test file.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(flatten)]
    pub setting: Setting,
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub expect: Expect,
}

/// What a case expects; what is not given is not checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Every prompt played, in order.
    pub prompts: Option<Vec<String>>,
    /// Every text said, in order.
    pub said: Option<Vec<String>>,
    pub queue: Option<String>,
    pub priority: Option<i32>,
    pub skills: Option<Vec<String>>,
    pub transfer: Option<String>,
    /// Attributes set (these, at least).
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
    /// Log lines, in order.
    pub logs: Option<Vec<String>>,
    /// queue, transfer, hangup, finished, fallback (an error), caller_hangup.
    pub end: Option<String>,
}

/// A flow test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The script, relative to the test file (files only).
    pub flow: Option<String>,
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

impl TestFile {
    pub fn parse(text: &str) -> Result<TestFile, String> {
        if text.len() > 512 * 1024 {
            return Err("the test file is larger than 512 KiB".into());
        }
        let f: TestFile = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            format!("{}{at}", e.message())
        })?;
        if f.cases.len() > 500 {
            return Err("at most 500 cases per file".into());
        }
        for c in &f.cases {
            for i in &c.inputs {
                Input::parse(i).map_err(|e| format!("case {:?}: {e}", c.name))?;
            }
            c.setting
                .context()
                .map_err(|e| format!("case {:?}: {e}", c.name))?;
            if let Some(end) = &c.expect.end
                && !matches!(
                    end.as_str(),
                    "queue" | "transfer" | "hangup" | "finished" | "fallback" | "caller_hangup"
                )
            {
                return Err(format!(
                    "case {:?}: expect.end {end:?}: queue, transfer, hangup, finished, fallback or caller_hangup",
                    c.name
                ));
            }
        }
        Ok(f)
    }
}

/// A case's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// What differs, readable (none when it passed).
    pub diff: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub path: Vec<Value>,
}

pub fn run_case(engine: &FlowEngine, flow: &Flow, case: &Case) -> CaseResult {
    let inputs: Result<Vec<Input>, String> = case.inputs.iter().map(|i| Input::parse(i)).collect();
    let outcome = inputs.and_then(|i| simulate(engine, flow, &case.setting, &i, false));
    let o = match outcome {
        Ok(o) => o,
        Err(e) => {
            return CaseResult {
                name: case.name.clone(),
                passed: false,
                diff: Some(e),
                path: Vec::new(),
            };
        }
    };
    let diff = compare(&case.expect, &o);
    CaseResult {
        name: case.name.clone(),
        passed: diff.is_empty(),
        diff: (!diff.is_empty()).then(|| diff.join("\n")),
        path: o.path,
    }
}

fn list_diff(what: &str, expected: &[String], found: &[String], out: &mut Vec<String>) {
    if expected == found {
        return;
    }
    let mut s = format!("{what} differ:\n");
    let n = expected.len().max(found.len());
    for i in 0..n {
        match (expected.get(i), found.get(i)) {
            (Some(e), Some(f)) if e == f => s.push_str(&format!("    {e}\n")),
            (Some(e), Some(f)) => s.push_str(&format!("  - {e}\n  + {f}\n")),
            (Some(e), None) => s.push_str(&format!("  - {e}\n")),
            (None, Some(f)) => s.push_str(&format!("  + {f}\n")),
            (None, None) => {}
        }
    }
    s.push_str("  (- expected, + found)");
    out.push(s);
}

fn one<T: PartialEq + std::fmt::Debug>(
    what: &str,
    expected: &Option<T>,
    found: Option<T>,
    out: &mut Vec<String>,
) {
    if let Some(e) = expected
        && Some(e) != found.as_ref()
    {
        match found {
            Some(f) => out.push(format!("{what}: expected {e:?}, found {f:?}")),
            None => out.push(format!("{what}: expected {e:?}, found none")),
        }
    }
}

fn compare(x: &Expect, o: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    let strings = |kind: &[&str], field: &str| -> Vec<String> {
        o.path
            .iter()
            .filter(|s| kind.contains(&s["kind"].as_str().unwrap_or("")))
            .filter_map(|s| s[field].as_str().map(str::to_owned))
            .collect()
    };
    if let Some(p) = &x.prompts {
        let found = strings(
            &["play", "say", "gather", "listen", "ask", "record"],
            "prompt",
        );
        list_diff("prompts", p, &found, &mut out);
    }
    if let Some(p) = &x.said {
        list_diff("said", p, &strings(&["say", "ask"], "text"), &mut out);
    }
    if let Some(p) = &x.logs {
        list_diff("logs", p, &strings(&["log"], "message"), &mut out);
    }
    let (queue, priority, skills, transfer) = match &o.end {
        Some(End::Queue {
            queue,
            priority,
            skills,
            ..
        }) => (
            Some(queue.clone()),
            Some(*priority),
            Some(skills.clone()),
            None,
        ),
        Some(End::Transfer { to }) => (None, None, None, Some(to.clone())),
        _ => (None, None, None, None),
    };
    one("queue", &x.queue, queue, &mut out);
    one("priority", &x.priority, priority, &mut out);
    one("skills", &x.skills, skills, &mut out);
    one("transfer", &x.transfer, transfer, &mut out);
    if let Some(a) = &x.attributes {
        for (k, v) in a {
            match o.attributes.get(k) {
                Some(f) if f == v => {}
                Some(f) => out.push(format!("attribute {k}: expected {v}, found {f}")),
                None => out.push(format!("attribute {k}: expected {v}, never set")),
            }
        }
    }
    let end = if o.caller_hung_up {
        "caller_hangup".to_owned()
    } else {
        match &o.end {
            Some(End::Queue { .. }) => "queue".into(),
            Some(End::Transfer { .. }) => "transfer".into(),
            Some(End::Hangup) => "hangup".into(),
            Some(End::Finished) => "finished".into(),
            Some(End::Error { .. }) => "fallback".into(),
            None => "none".into(),
        }
    };
    if let Some(e) = &x.end
        && *e != end
    {
        out.push(format!("end: expected {e}, found {end}"));
    }
    // A failure nobody expected is always reported.
    if let Some(End::Error {
        message,
        line,
        column,
    }) = &o.end
        && x.end.as_deref() != Some("fallback")
    {
        out.push(format!(
            "the flow failed at line {line}, column {column}: {message}"
        ));
    }
    if let Some(why) = &o.refused_input {
        out.push(why.clone());
    }
    if !o.unused_inputs.is_empty() {
        out.push(format!(
            "inputs left unused: {}",
            o.unused_inputs.join(", ")
        ));
    }
    out
}
