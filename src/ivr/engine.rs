//! The flow engine: Rhai in a sandbox, the flow API, and runs by replay.
//!
//! A flow is a Rhai script whose top level is what a caller goes through:
//! `answer(); let c = menu(#{ prompt: "main", options: "12" }); ...`.
//! Every call of the flow API that touches the world (play a prompt, wait
//! for digits, look a contact up, set an attribute) is a [`Command`]. A run
//! is deterministic: the script has no clock, no randomness, no files and
//! no network of its own, so [`advance`] runs it from the start with the
//! answers given so far (the journal) and stops at the first command that
//! has none yet. The channel (a SIP call, a chat, a flow test, the
//! editor's simulator) carries that command out, appends its answer, and
//! advances again; the run ends with an [`End`] (a queue, a transfer, a
//! hang-up, the script's end, or an error).
//!
//! Replaying keeps no interpreter state between steps: a step is a short
//! synchronous run on whatever thread asks, nothing waits on a thread
//! while a caller thinks, and a session is only its journal.
//!
//! The sandbox: operations per step, call depth, expression depth, string,
//! array and map sizes, a wall-clock limit per step, a bounded number of
//! commands per session; no `eval`, no modules, no clock, no printing.
//! Errors carry the line and column of the script.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::packages::{
    BasicArrayPackage, BasicMapPackage, BasicMathPackage, CorePackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, NativeCallContext, Position};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::calendar;

/// How far a flow may go.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rhai operations in one step (a run from the start to the next command).
    pub operations: u64,
    pub call_levels: usize,
    pub expr_depth: usize,
    pub string_bytes: usize,
    pub array_items: usize,
    pub map_items: usize,
    /// Wall-clock time one step may take.
    pub step_time: Duration,
    /// Commands one session may issue.
    pub commands: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            operations: 100_000,
            call_levels: 16,
            expr_depth: 32,
            string_bytes: 16 * 1024,
            array_items: 1_000,
            map_items: 200,
            step_time: Duration::from_millis(100),
            commands: 300,
        }
    }
}

/// What a flow asks its channel to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    Answer,
    /// Play a prompt to the end (digits pressed meanwhile are kept for the
    /// next `gather`).
    Play {
        prompt: String,
    },
    /// Say a text: a chat message; on a call, the prompt if one is given.
    Say {
        text: String,
        prompt: Option<String>,
    },
    /// Collect digits; the prompt (if any) plays meanwhile and a digit
    /// stops it. Answer: the digits ("" on timeout).
    Gather {
        prompt: Option<String>,
        max_digits: u32,
        timeout_ms: u64,
        terminator: Option<String>,
    },
    /// Recognise speech (restricted to `phrases` when given); digits end it
    /// too. Answer: `{text, confidence, digits, available}`.
    Listen {
        prompt: Option<String>,
        phrases: Vec<String>,
        timeout_ms: u64,
    },
    /// Ask a question and wait for the reply (chat text; on a call, speech
    /// or digits). Answer: the reply text ("" on timeout).
    Ask {
        text: String,
        prompt: Option<String>,
        timeout_ms: u64,
    },
    /// Record a message (voicemail). Answer: `{recording, secs, transcript}`.
    Record {
        prompt: Option<String>,
        max_secs: u32,
        transcribe: bool,
    },
    /// The contact whose phone or address is the caller's. Answer: the
    /// contact (`{id, name, ...}`) or null.
    Lookup,
    /// The current time (RFC 3339). Answer: a string.
    Now,
    /// Set an interaction attribute (the answer is null).
    Set {
        name: String,
        value: Value,
    },
    Log {
        message: String,
    },
    /// Answer: `{status, body}` (`status` 0 and `error` when it failed).
    Http {
        method: String,
        url: String,
        body: Option<String>,
        timeout_ms: u64,
    },
}

impl Command {
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Answer => "answer",
            Command::Play { .. } => "play",
            Command::Say { .. } => "say",
            Command::Gather { .. } => "gather",
            Command::Listen { .. } => "listen",
            Command::Ask { .. } => "ask",
            Command::Record { .. } => "record",
            Command::Lookup => "lookup",
            Command::Now => "now",
            Command::Set { .. } => "set",
            Command::Log { .. } => "log",
            Command::Http { .. } => "http",
        }
    }

    /// The prompt this command plays, if any.
    pub fn prompt(&self) -> Option<&str> {
        match self {
            Command::Play { prompt } => Some(prompt),
            Command::Say { prompt, .. }
            | Command::Gather { prompt, .. }
            | Command::Listen { prompt, .. }
            | Command::Ask { prompt, .. }
            | Command::Record { prompt, .. } => prompt.as_deref(),
            _ => None,
        }
    }

    /// Whether the answer comes from the customer (what a simulation waits for).
    pub fn waits_for(&self) -> Option<&'static str> {
        match self {
            Command::Gather { .. } => Some("digits"),
            Command::Listen { .. } | Command::Record { .. } => Some("speech"),
            Command::Ask { .. } => Some("reply"),
            _ => None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum End {
    /// Hand over to the ACD.
    Queue {
        queue: String,
        skills: Vec<String>,
        priority: i32,
        /// The prompt looped while waiting (hold music).
        hold: Option<String>,
        /// Seconds between position announcements (0: none).
        announce_secs: u32,
    },
    Transfer {
        to: String,
    },
    Hangup,
    /// The script ran to its end without handing over.
    Finished,
    /// The script failed: the tenant's fallback takes over.
    Error {
        message: String,
        line: u32,
        column: u32,
    },
}

/// One journal entry: a command and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub command: Command,
    pub answer: Value,
    /// The script line that issued it.
    pub line: u32,
}

/// What a session knows that does not change while it runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Context {
    /// "voice" or "chat".
    pub channel: String,
    /// The caller's number or address.
    pub caller: String,
    /// The number or entry point called.
    pub called: String,
    pub interaction_id: Option<String>,
    /// The interaction's attributes when the flow started.
    pub attributes: serde_json::Map<String, Value>,
    /// Whether speech recognition is available.
    pub speech: bool,
    /// Hosts `http_get`/`http_post` may reach.
    pub http_hosts: Vec<String>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Do { command: Command, line: u32 },
    End { end: End, line: u32 },
}

/// A compiled flow version.
#[derive(Debug)]
pub struct Flow {
    pub name: String,
    pub version: i32,
    ast: rhai::AST,
}

/// A problem found in a script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diagnostic {
    /// "error" or "warning".
    pub severity: String,
    /// 1-based; 0 when unknown.
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl Diagnostic {
    pub fn error(line: u32, column: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: "error".into(),
            line,
            column,
            message: message.into(),
        }
    }

    pub fn warning(line: u32, column: u32, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: "warning".into(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// The largest flow script accepted.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// The sandboxed Rhai engine with the flow API; build once, share.
pub struct FlowEngine {
    engine: Engine,
    limits: Limits,
}

impl std::fmt::Debug for FlowEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

/// The run in progress on this thread (a step is synchronous).
struct Run {
    journal: Vec<Entry>,
    cursor: usize,
    context: Arc<Context>,
    attributes: serde_json::Map<String, Value>,
    pending: Option<Next>,
    deadline: Instant,
    max_commands: usize,
}

thread_local! {
    static RUN: RefCell<Option<Run>> = const { RefCell::new(None) };
}

const SUSPEND: &str = "switchboard:suspend";

type Fallible<T> = Result<T, Box<EvalAltResult>>;

fn line_of(pos: Position) -> (u32, u32) {
    (
        pos.line().unwrap_or(0) as u32,
        pos.position().unwrap_or(0) as u32,
    )
}

fn suspend(pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorTerminated(SUSPEND.into(), pos))
}

fn fail<T>(message: impl Into<String>, pos: Position) -> Fallible<T> {
    Err(Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        pos,
    )))
}

fn with_run<R>(f: impl FnOnce(&mut Run) -> R) -> R {
    RUN.with(|r| {
        let mut r = r.borrow_mut();
        let run = r.as_mut().expect("flow API called outside a flow step");
        f(run)
    })
}

/// Issues `command`: its answer from the journal, or the end of this step.
fn issue(pos: Position, command: Command) -> Fallible<Value> {
    with_run(|run| {
        let line = line_of(pos).0;
        if let Some(e) = run.journal.get(run.cursor) {
            if e.command != command {
                return fail(
                    format!(
                        "the flow took another path than before ({} instead of {}): a flow must not depend on anything but the flow API",
                        command.kind(),
                        e.command.kind()
                    ),
                    pos,
                );
            }
            run.cursor += 1;
            if let Command::Set { name, value } = &command {
                run.attributes.insert(name.clone(), value.clone());
            }
            return Ok(e.answer.clone());
        }
        if run.journal.len() >= run.max_commands {
            return fail(
                format!(
                    "the flow issued more than {} commands (a loop that never hands over?)",
                    run.max_commands
                ),
                pos,
            );
        }
        run.pending = Some(Next::Do { command, line });
        Err(suspend(pos))
    })
}

fn finish(pos: Position, end: End) -> Box<EvalAltResult> {
    with_run(|run| {
        run.pending = Some(Next::End {
            end,
            line: line_of(pos).0,
        })
    });
    suspend(pos)
}

fn to_dynamic(v: &Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

fn to_json(d: &Dynamic) -> Value {
    rhai::serde::from_dynamic::<Value>(d).unwrap_or(Value::Null)
}

/// Options map readers (clear errors for the wrong types).
struct Opts<'a> {
    map: &'a Map,
    pos: Position,
    func: &'static str,
}

impl Opts<'_> {
    fn check_keys(&self, known: &[&str]) -> Fallible<()> {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                return fail(
                    format!(
                        "{}: unknown option `{k}` (known: {})",
                        self.func,
                        known.join(", ")
                    ),
                    self.pos,
                );
            }
        }
        Ok(())
    }

    fn string(&self, key: &str) -> Fallible<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(d) if d.is_unit() => Ok(None),
            Some(d) => match d.clone().into_immutable_string() {
                Ok(s) => Ok(Some(s.to_string())),
                Err(t) => fail(
                    format!("{}: option `{key}` must be a string, not {t}", self.func),
                    self.pos,
                ),
            },
        }
    }

    fn int(&self, key: &str, default: i64, range: std::ops::RangeInclusive<i64>) -> Fallible<i64> {
        let v = match self.map.get(key) {
            None => return Ok(default),
            Some(d) => {
                if let Ok(i) = d.as_int() {
                    i
                } else if let Ok(f) = d.as_float() {
                    f as i64
                } else {
                    return fail(
                        format!(
                            "{}: option `{key}` must be a number, not {}",
                            self.func,
                            d.type_name()
                        ),
                        self.pos,
                    );
                }
            }
        };
        if !range.contains(&v) {
            return fail(
                format!(
                    "{}: option `{key}` must be between {} and {}",
                    self.func,
                    range.start(),
                    range.end()
                ),
                self.pos,
            );
        }
        Ok(v)
    }

    /// Seconds given as a number (fractions allowed), as milliseconds.
    fn secs_ms(&self, key: &str, default: f64, max: f64) -> Fallible<u64> {
        let v = match self.map.get(key) {
            None => default,
            Some(d) => {
                if let Ok(i) = d.as_int() {
                    i as f64
                } else if let Ok(f) = d.as_float() {
                    f
                } else {
                    return fail(
                        format!("{}: option `{key}` must be a number of seconds", self.func),
                        self.pos,
                    );
                }
            }
        };
        if !(0.0..=max).contains(&v) {
            return fail(
                format!("{}: option `{key}` must be 0 to {max} seconds", self.func),
                self.pos,
            );
        }
        Ok((v * 1000.0) as u64)
    }

    fn bool(&self, key: &str, default: bool) -> Fallible<bool> {
        match self.map.get(key) {
            None => Ok(default),
            Some(d) => d.as_bool().or_else(|_| {
                fail(
                    format!("{}: option `{key}` must be true or false", self.func),
                    self.pos,
                )
            }),
        }
    }

    fn strings(&self, key: &str) -> Fallible<Vec<String>> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(d) => {
                let Some(a) = d.read_lock::<rhai::Array>() else {
                    return fail(
                        format!("{}: option `{key}` must be an array of strings", self.func),
                        self.pos,
                    );
                };
                a.iter()
                    .map(|x| {
                        x.clone()
                            .into_immutable_string()
                            .map(|s| s.to_string())
                            .or_else(|_| {
                                fail(
                                    format!(
                                        "{}: option `{key}` must be an array of strings",
                                        self.func
                                    ),
                                    self.pos,
                                )
                            })
                    })
                    .collect()
            }
        }
    }
}

fn prompt_name(p: &str, pos: Position) -> Fallible<String> {
    if crate::prompts::name_ok(p) {
        Ok(p.to_owned())
    } else {
        fail(format!("`{p}` is not a prompt name"), pos)
    }
}

fn opt_prompt(o: &Opts, key: &str) -> Fallible<Option<String>> {
    o.string(key)?.map(|p| prompt_name(&p, o.pos)).transpose()
}

fn gather_cmd(o: &Opts) -> Fallible<Command> {
    o.check_keys(&["prompt", "max_digits", "timeout", "terminator"])?;
    let terminator = o.string("terminator")?;
    if let Some(t) = &terminator
        && !(t.len() == 1 && "0123456789*#".contains(t.as_str()))
    {
        return fail("gather: terminator must be one key: 0-9, * or #", o.pos);
    }
    Ok(Command::Gather {
        prompt: opt_prompt(o, "prompt")?,
        max_digits: o.int("max_digits", 1, 1..=32)? as u32,
        timeout_ms: o.secs_ms("timeout", 5.0, 120.0)?,
        terminator,
    })
}

fn gather(pos: Position, o: &Opts) -> Fallible<ImmutableString> {
    let c = gather_cmd(o)?;
    Ok(issue(pos, c)?.as_str().unwrap_or("").into())
}

fn menu(pos: Position, map: &Map) -> Fallible<ImmutableString> {
    let o = Opts {
        map,
        pos,
        func: "menu",
    };
    o.check_keys(&[
        "prompt", "options", "retries", "timeout", "invalid", "no_input",
    ])?;
    let Some(prompt) = opt_prompt(&o, "prompt")? else {
        return fail("menu: option `prompt` is required", pos);
    };
    let options = o.string("options")?.unwrap_or_default();
    if options.is_empty() || !options.chars().all(|c| "0123456789*#".contains(c)) {
        return fail(
            "menu: option `options` must list the keys to accept, e.g. \"123\"",
            pos,
        );
    }
    let retries = o.int("retries", 3, 1..=10)?;
    let timeout_ms = o.secs_ms("timeout", 5.0, 60.0)?;
    let invalid = opt_prompt(&o, "invalid")?;
    let no_input = opt_prompt(&o, "no_input")?.or_else(|| invalid.clone());
    for attempt in 0..retries {
        let got = issue(
            pos,
            Command::Gather {
                prompt: Some(prompt.clone()),
                max_digits: 1,
                timeout_ms,
                terminator: None,
            },
        )?;
        let got = got.as_str().unwrap_or("").to_owned();
        if !got.is_empty() && options.contains(got.as_str()) {
            return Ok(got.into());
        }
        let complaint = if got.is_empty() { &no_input } else { &invalid };
        if attempt + 1 < retries
            && let Some(p) = complaint
        {
            issue(pos, Command::Play { prompt: p.clone() })?;
        }
    }
    Ok("".into())
}

fn listen(pos: Position, map: &Map) -> Fallible<Dynamic> {
    let o = Opts {
        map,
        pos,
        func: "listen",
    };
    o.check_keys(&["prompt", "phrases", "timeout"])?;
    let phrases = o.strings("phrases")?;
    for p in &phrases {
        if p.trim().is_empty() || p.contains(['"', '\\']) || p.len() > 200 {
            return fail(
                format!(
                    "listen: phrase {p:?} must be 1-200 characters without quotes or backslashes"
                ),
                pos,
            );
        }
    }
    let c = Command::Listen {
        prompt: opt_prompt(&o, "prompt")?,
        phrases,
        timeout_ms: o.secs_ms("timeout", 5.0, 60.0)?,
    };
    let mut heard = issue(pos, c)?;
    if let Value::Object(m) = &mut heard {
        m.entry("text").or_insert(json!(""));
        m.entry("confidence").or_insert(json!(0.0));
        m.entry("digits").or_insert(json!(""));
    }
    Ok(to_dynamic(&heard))
}

fn http(
    pos: Position,
    method: &str,
    url: &str,
    body: Option<String>,
    map: &Map,
) -> Fallible<Dynamic> {
    let o = Opts {
        map,
        pos,
        func: if method == "GET" {
            "http_get"
        } else {
            "http_post"
        },
    };
    o.check_keys(&["timeout"])?;
    let parsed = match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => return fail(format!("{}: {url:?} is not an http(s) URL", o.func), pos),
    };
    let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
    let allowed = with_run(|r| {
        r.context
            .http_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&host))
    });
    if !allowed {
        return fail(
            format!(
                "{}: host {host:?} is not allowed for this tenant (flow settings: allowed HTTP hosts)",
                o.func
            ),
            pos,
        );
    }
    let c = Command::Http {
        method: method.into(),
        url: url.into(),
        body,
        timeout_ms: o.secs_ms("timeout", 3.0, 10.0)?,
    };
    Ok(to_dynamic(&issue(pos, c)?))
}

fn queue_end(pos: Position, name: &str, map: &Map) -> Box<EvalAltResult> {
    let o = Opts {
        map,
        pos,
        func: "queue",
    };
    let parsed = (|| {
        o.check_keys(&["skills", "priority", "hold", "announce"])?;
        if name.trim().is_empty() || name.len() > 100 {
            return fail("queue: a queue name is required", pos);
        }
        Ok(End::Queue {
            queue: name.to_owned(),
            skills: o.strings("skills")?,
            priority: o.int("priority", 0, -1000..=1000)? as i32,
            hold: opt_prompt(&o, "hold")?,
            announce_secs: o.int("announce", 0, 0..=3600)? as u32,
        })
    })();
    match parsed {
        Ok(end) => finish(pos, end),
        Err(e) => e,
    }
}

impl FlowEngine {
    pub fn new(limits: Limits) -> Self {
        let mut e = Engine::new_raw();
        // What the language offers, without time, blobs or debugging.
        e.register_global_module(CorePackage::new().as_shared_module());
        e.register_global_module(LogicPackage::new().as_shared_module());
        e.register_global_module(BasicMathPackage::new().as_shared_module());
        e.register_global_module(BasicArrayPackage::new().as_shared_module());
        e.register_global_module(BasicMapPackage::new().as_shared_module());
        e.register_global_module(MoreStringPackage::new().as_shared_module());
        e.set_max_operations(limits.operations);
        e.set_max_call_levels(limits.call_levels);
        e.set_max_expr_depths(limits.expr_depth, limits.expr_depth);
        e.set_max_string_size(limits.string_bytes);
        e.set_max_array_size(limits.array_items);
        e.set_max_map_size(limits.map_items);
        e.set_max_variables(500);
        e.set_max_functions(200);
        e.set_max_modules(0);
        e.set_strict_variables(true);
        e.disable_symbol("eval");
        e.disable_symbol("import");
        e.disable_symbol("export");
        e.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        e.on_print(|s| tracing::debug!(target: "switchboard::flow", "print: {s}"));
        e.on_debug(|s, _, pos| tracing::debug!(target: "switchboard::flow", ?pos, "debug: {s}"));
        e.on_progress(|ops| {
            if ops % 512 == 0 {
                let late = RUN.with(|r| {
                    r.borrow()
                        .as_ref()
                        .is_some_and(|run| Instant::now() > run.deadline)
                });
                if late {
                    return Some("switchboard:step_time".into());
                }
            }
            None
        });
        register_api(&mut e);
        FlowEngine { engine: e, limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a script; errors with line and column.
    pub fn compile(&self, name: &str, version: i32, source: &str) -> Result<Flow, Diagnostic> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(Diagnostic::error(
                0,
                0,
                format!("the script is larger than {} KiB", MAX_SOURCE_BYTES / 1024),
            ));
        }
        match self.engine.compile(source) {
            Ok(ast) => Ok(Flow {
                name: name.to_owned(),
                version,
                ast,
            }),
            Err(e) => {
                let (line, column) = line_of(e.position());
                Err(Diagnostic::error(line, column, e.err_type().to_string()))
            }
        }
    }

    /// Runs `flow` from the start with `journal`'s answers and says what
    /// comes next.
    pub fn advance(
        &self,
        flow: &Flow,
        context: &Arc<Context>,
        journal: Vec<Entry>,
    ) -> (Next, Vec<Entry>) {
        let run = Run {
            journal,
            cursor: 0,
            context: context.clone(),
            attributes: context.attributes.clone(),
            pending: None,
            deadline: Instant::now() + self.limits.step_time,
            max_commands: self.limits.commands,
        };
        let previous = RUN.with(|r| r.borrow_mut().replace(run));
        debug_assert!(previous.is_none(), "flow steps do not nest");
        let mut scope = rhai::Scope::new();
        let result = self.engine.run_ast_with_scope(&mut scope, &flow.ast);
        let run = RUN
            .with(|r| r.borrow_mut().take())
            .expect("the run is still there");
        let next = match result {
            Ok(()) => Next::End {
                end: End::Finished,
                line: 0,
            },
            Err(e) => match innermost(&e) {
                EvalAltResult::ErrorTerminated(token, _)
                    if token.clone().into_immutable_string().ok().as_deref() == Some(SUSPEND) =>
                {
                    run.pending.clone().unwrap_or(Next::End {
                        end: End::Finished,
                        line: 0,
                    })
                }
                inner => error_end(inner, &e),
            },
        };
        (next, run.journal)
    }
}

/// The error inside nested function calls (where the script failed).
fn innermost(e: &EvalAltResult) -> &EvalAltResult {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => innermost(inner),
        other => other,
    }
}

fn error_end(inner: &EvalAltResult, outer: &EvalAltResult) -> Next {
    let pos = if inner.position().is_none() {
        outer.position()
    } else {
        inner.position()
    };
    let (line, column) = line_of(pos);
    let message = match inner {
        EvalAltResult::ErrorTerminated(t, _) => {
            if t.clone().into_immutable_string().ok().as_deref() == Some("switchboard:step_time") {
                "the flow ran longer than its time limit for one step".to_owned()
            } else {
                "the flow was stopped".to_owned()
            }
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            "the flow ran too many operations in one step (an endless loop?)".to_owned()
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            "the flow called functions too deeply (endless recursion?)".to_owned()
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            format!("the flow made a value too large: {what}")
        }
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        other => {
            // Rhai's message without its " (line x, position y)" suffix.
            let s = other.to_string();
            match s.rfind(" (line ") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
    };
    Next::End {
        end: End::Error {
            message,
            line,
            column,
        },
        line,
    }
}

fn map_arg(d: &Dynamic) -> Option<Map> {
    d.read_lock::<Map>().map(|m| m.clone())
}

fn register_api(e: &mut Engine) {
    let empty = Map::new;
    e.register_fn("answer", |ctx: NativeCallContext| -> Fallible<()> {
        issue(ctx.call_position(), Command::Answer).map(|_| ())
    });
    e.register_fn("play", |ctx: NativeCallContext, p: &str| -> Fallible<()> {
        let pos = ctx.call_position();
        let prompt = prompt_name(p, pos)?;
        issue(pos, Command::Play { prompt }).map(|_| ())
    });
    e.register_fn(
        "say",
        |ctx: NativeCallContext, text: &str| -> Fallible<()> {
            issue(
                ctx.call_position(),
                Command::Say {
                    text: text.into(),
                    prompt: None,
                },
            )
            .map(|_| ())
        },
    );
    e.register_fn(
        "say",
        |ctx: NativeCallContext, text: &str, map: Map| -> Fallible<()> {
            let pos = ctx.call_position();
            let o = Opts {
                map: &map,
                pos,
                func: "say",
            };
            o.check_keys(&["prompt"])?;
            let prompt = opt_prompt(&o, "prompt")?;
            issue(
                pos,
                Command::Say {
                    text: text.into(),
                    prompt,
                },
            )
            .map(|_| ())
        },
    );
    e.register_fn(
        "gather",
        move |ctx: NativeCallContext| -> Fallible<ImmutableString> {
            let m = empty();
            gather(
                ctx.call_position(),
                &Opts {
                    map: &m,
                    pos: ctx.call_position(),
                    func: "gather",
                },
            )
        },
    );
    e.register_fn(
        "gather",
        |ctx: NativeCallContext, map: Map| -> Fallible<ImmutableString> {
            gather(
                ctx.call_position(),
                &Opts {
                    map: &map,
                    pos: ctx.call_position(),
                    func: "gather",
                },
            )
        },
    );
    e.register_fn(
        "menu",
        |ctx: NativeCallContext, map: Map| -> Fallible<ImmutableString> {
            menu(ctx.call_position(), &map)
        },
    );
    e.register_fn(
        "listen",
        |ctx: NativeCallContext, map: Map| -> Fallible<Dynamic> {
            listen(ctx.call_position(), &map)
        },
    );
    e.register_fn("speech_available", || -> bool {
        with_run(|r| r.context.speech)
    });
    e.register_fn(
        "ask",
        |ctx: NativeCallContext, text: &str| -> Fallible<ImmutableString> {
            ask(ctx.call_position(), text, &Map::new())
        },
    );
    e.register_fn(
        "ask",
        |ctx: NativeCallContext, text: &str, map: Map| -> Fallible<ImmutableString> {
            ask(ctx.call_position(), text, &map)
        },
    );
    e.register_fn(
        "wait_reply",
        |ctx: NativeCallContext, secs: i64| -> Fallible<ImmutableString> {
            let mut m = Map::new();
            m.insert("timeout".into(), Dynamic::from(secs));
            ask(ctx.call_position(), "", &m)
        },
    );
    e.register_fn(
        "record",
        |ctx: NativeCallContext, map: Map| -> Fallible<Dynamic> {
            let pos = ctx.call_position();
            let o = Opts {
                map: &map,
                pos,
                func: "record",
            };
            o.check_keys(&["prompt", "max_secs", "transcribe"])?;
            let c = Command::Record {
                prompt: opt_prompt(&o, "prompt")?,
                max_secs: o.int("max_secs", 60, 1..=600)? as u32,
                transcribe: o.bool("transcribe", true)?,
            };
            Ok(to_dynamic(&issue(pos, c)?))
        },
    );
    e.register_fn("get", |name: &str| -> Dynamic {
        with_run(|r| {
            r.attributes
                .get(name)
                .map(to_dynamic)
                .unwrap_or(Dynamic::UNIT)
        })
    });
    e.register_fn(
        "set",
        |ctx: NativeCallContext, name: &str, value: Dynamic| -> Fallible<()> {
            let pos = ctx.call_position();
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return fail(
                    format!("set: {name:?} is not an attribute name (1-64 letters, digits, _)"),
                    pos,
                );
            }
            let value = to_json(&value);
            if value.to_string().len() > 4096 {
                return fail(
                    format!("set: the value of {name} is larger than 4 KiB"),
                    pos,
                );
            }
            issue(
                pos,
                Command::Set {
                    name: name.into(),
                    value,
                },
            )
            .map(|_| ())
        },
    );
    e.register_fn("caller", || -> ImmutableString {
        with_run(|r| r.context.caller.as_str().into())
    });
    e.register_fn("called", || -> ImmutableString {
        with_run(|r| r.context.called.as_str().into())
    });
    e.register_fn("channel", || -> ImmutableString {
        with_run(|r| r.context.channel.as_str().into())
    });
    e.register_fn(
        "lookup_contact",
        |ctx: NativeCallContext| -> Fallible<Dynamic> {
            Ok(to_dynamic(&issue(ctx.call_position(), Command::Lookup)?))
        },
    );
    e.register_fn(
        "now",
        |ctx: NativeCallContext, tz: &str| -> Fallible<Dynamic> {
            let pos = ctx.call_position();
            let zone = calendar::zone(tz).or_else(|why| fail(format!("now: {why}"), pos))?;
            let at = now(pos)?;
            Ok(to_dynamic(&calendar::describe(at, zone)))
        },
    );
    e.register_fn(
        "open_now",
        |ctx: NativeCallContext, cal: Map| -> Fallible<bool> {
            let pos = ctx.call_position();
            let spec = calendar::Calendar::from_json(&to_json(&Dynamic::from_map(cal)))
                .or_else(|why| fail(format!("open_now: {why}"), pos))?;
            let at = now(pos)?;
            Ok(spec.is_open(at))
        },
    );
    e.register_fn(
        "log",
        |ctx: NativeCallContext, message: &str| -> Fallible<()> {
            let message: String = message.chars().take(1000).collect();
            issue(ctx.call_position(), Command::Log { message }).map(|_| ())
        },
    );
    e.register_fn(
        "http_get",
        |ctx: NativeCallContext, url: &str| -> Fallible<Dynamic> {
            http(ctx.call_position(), "GET", url, None, &Map::new())
        },
    );
    e.register_fn(
        "http_get",
        |ctx: NativeCallContext, url: &str, map: Map| -> Fallible<Dynamic> {
            http(ctx.call_position(), "GET", url, None, &map)
        },
    );
    e.register_fn(
        "http_post",
        |ctx: NativeCallContext, url: &str, body: Dynamic| -> Fallible<Dynamic> {
            http(
                ctx.call_position(),
                "POST",
                url,
                Some(body_text(&body)),
                &Map::new(),
            )
        },
    );
    e.register_fn(
        "http_post",
        |ctx: NativeCallContext, url: &str, body: Dynamic, map: Map| -> Fallible<Dynamic> {
            http(
                ctx.call_position(),
                "POST",
                url,
                Some(body_text(&body)),
                &map,
            )
        },
    );
    e.register_fn(
        "parse_json",
        |ctx: NativeCallContext, text: &str| -> Fallible<Dynamic> {
            match serde_json::from_str::<Value>(text) {
                Ok(v) => Ok(to_dynamic(&v)),
                Err(err) => fail(format!("parse_json: {err}"), ctx.call_position()),
            }
        },
    );
    e.register_fn(
        "queue",
        |ctx: NativeCallContext, name: &str| -> Fallible<()> {
            Err(queue_end(ctx.call_position(), name, &Map::new()))
        },
    );
    e.register_fn(
        "queue",
        |ctx: NativeCallContext, name: &str, map: Map| -> Fallible<()> {
            Err(queue_end(ctx.call_position(), name, &map))
        },
    );
    e.register_fn(
        "transfer",
        |ctx: NativeCallContext, to: &str| -> Fallible<()> {
            let pos = ctx.call_position();
            if to.trim().is_empty() || to.len() > 64 {
                return fail("transfer: a number is required", pos);
            }
            Err(finish(
                pos,
                End::Transfer {
                    to: to.trim().into(),
                },
            ))
        },
    );
    e.register_fn("hangup", |ctx: NativeCallContext| -> Fallible<()> {
        Err(finish(ctx.call_position(), End::Hangup))
    });
    let _ = map_arg;
}

fn body_text(d: &Dynamic) -> String {
    match d.clone().into_immutable_string() {
        Ok(s) => s.to_string(),
        Err(_) => to_json(d).to_string(),
    }
}

fn ask(pos: Position, text: &str, map: &Map) -> Fallible<ImmutableString> {
    let o = Opts {
        map,
        pos,
        func: "ask",
    };
    o.check_keys(&["prompt", "timeout"])?;
    let c = Command::Ask {
        text: text.into(),
        prompt: opt_prompt(&o, "prompt")?,
        timeout_ms: o.secs_ms("timeout", 10.0, 3600.0)?,
    };
    Ok(issue(pos, c)?.as_str().unwrap_or("").into())
}

fn now(pos: Position) -> Fallible<chrono::DateTime<chrono::FixedOffset>> {
    let v = issue(pos, Command::Now)?;
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .ok_or_else(|| {
            Box::new(EvalAltResult::ErrorRuntime(
                Dynamic::from("now: the channel gave no time"),
                pos,
            ))
        })
}
