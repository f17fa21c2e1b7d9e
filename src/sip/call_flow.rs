//! An IVR flow on an answered call: the voice channel of `crate::ivr`.
//!
//! The call's task runs the flow step by step (`FlowEngine::advance`) and
//! carries each command out on the call's media: prompts from the tenant's
//! prompt folder, digits from RFC 4733 or in-band DTMF (digits pressed
//! during a plain prompt are kept for the next `gather`), speech through
//! the recognizer pool, messages recorded to `<data>/voicemail`. Every step
//! is on the interaction's timeline (`flow_step`, `attributes_set`). The
//! flow ends in a queue (with hold music and position announcements), a
//! transfer, or a hang-up. A flow that fails (or is not published) never
//! leaves the caller in dead air: the tenant's fallback queue takes the
//! call, or the apology prompt plays and the call ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Call, Signal};
use crate::interactions::service::Step;
use crate::ivr::service::Published;
use crate::ivr::{Command, Context, End, Entry, Next};
use crate::media::dtmf::Digit;
use crate::media::session::{MediaEvent, PlayOutcome};

/// Frames of tapped audio the flow may fall behind by (2 s).
const TAP_FRAMES: usize = 100;
/// The largest HTTP answer a flow reads.
const HTTP_MAX_BYTES: usize = 64 * 1024;

/// Why a flow's command could not finish.
pub(super) enum Gone {
    /// The caller hung up, the service stops: the call ends with this cause.
    Call(&'static str),
}

/// What the flow's media wait saw.
enum Heard {
    Digit(char),
    Speech,
    Silence,
}

fn digit_char(d: Digit) -> char {
    d.to_string().chars().next().unwrap_or('?')
}

impl Call<'_> {
    /// Runs flow `name` on the answered call. `Ok` when the call goes on
    /// (queued, or bridged by a transfer); `Err(cause)` when it ends.
    pub(super) async fn run_flow(&mut self, name: &str) -> Result<(), &'static str> {
        let t = self.target.tenant;
        let published = match self.ctx.flows.published(t, name).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, flow = name, "flow not loaded");
                None
            }
        };
        let Some(Published { flow, settings }) = published else {
            self.event(
                "flow_error",
                json!({ "flow": name, "message": "the flow is not published" }),
            )
            .await;
            return self.fallback(None).await;
        };
        let context = Arc::new(Context {
            channel: "voice".into(),
            caller: self.target.caller.clone(),
            called: self.target.number.number.clone(),
            interaction_id: self.interaction.map(|i| i.to_string()),
            attributes: serde_json::Map::new(),
            speech: self.ctx.flows.asr().is_some(),
            http_hosts: crate::ivr::store::hosts_of(&settings),
        });
        let mut journal: Vec<Entry> = Vec::new();
        let mut typed: VecDeque<char> = VecDeque::new();
        if self.flow_events.is_none() {
            self.flow_events = self.media.take_events();
        }
        let metrics = self.ctx.flows.metrics.clone();
        let count = |end: &str| {
            metrics
                .sessions
                .get_or_create(&crate::metrics::OutcomeLabel::new(end))
                .inc();
        };
        loop {
            let started = std::time::Instant::now();
            let (next, j) = self.ctx.flows.engine.advance(&flow, &context, journal);
            metrics
                .step_seconds
                .observe(started.elapsed().as_secs_f64());
            journal = j;
            match next {
                Next::Do { command, line } => {
                    let answer = match self.flow_command(&command, &mut typed).await {
                        Ok(a) => a,
                        Err(Gone::Call(cause)) => {
                            count("caller_left");
                            return Err(cause);
                        }
                    };
                    let mut data = serde_json::to_value(&command).unwrap_or(Value::Null);
                    data["flow"] = json!(flow.name);
                    data["version"] = json!(flow.version);
                    data["line"] = json!(line);
                    if !answer.is_null() {
                        data["answer"] = answer.clone();
                    }
                    let mut steps = vec![Step::note("flow_step", data)];
                    if let Command::Set { name, value } = &command {
                        steps.push(Step::Attributes(serde_json::Map::from_iter([(
                            name.clone(),
                            value.clone(),
                        )])));
                    }
                    self.record(&steps).await;
                    journal.push(Entry {
                        command,
                        answer,
                        line,
                    });
                }
                Next::End { end, line } => {
                    let ended = json!({ "flow": flow.name, "version": flow.version, "line": line, "end": end });
                    count(match &end {
                        End::Queue { .. } => "queue",
                        End::Transfer { .. } => "transfer",
                        End::Hangup | End::Finished => "hangup",
                        End::Error { .. } => "fallback",
                    });
                    return match end {
                        End::Queue {
                            queue,
                            skills,
                            priority,
                            hold,
                            announce_secs,
                        } => {
                            self.record(&[Step::note("flow_ended", ended)]).await;
                            match self.queue_from_flow(&queue, &skills, priority).await {
                                Ok(()) => {
                                    self.hold_while_queued(hold, announce_secs);
                                    Ok(())
                                }
                                Err(why) => {
                                    self.flow_failed(&flow.name, flow.version, line, &why).await;
                                    self.fallback(Some(&settings)).await
                                }
                            }
                        }
                        End::Transfer { to } => {
                            self.record(&[Step::note("flow_ended", ended)]).await;
                            match self.transfer_from_flow(&to).await {
                                Ok(()) => Ok(()),
                                Err(Gone::Call(cause)) if cause != "transfer_failed" => Err(cause),
                                Err(_) => {
                                    self.flow_failed(
                                        &flow.name,
                                        flow.version,
                                        line,
                                        &format!("the transfer to {to} failed"),
                                    )
                                    .await;
                                    self.fallback(Some(&settings)).await
                                }
                            }
                        }
                        End::Hangup | End::Finished => {
                            self.record(&[Step::note("flow_ended", ended)]).await;
                            self.send_bye().await;
                            Err("flow_hangup")
                        }
                        End::Error {
                            message,
                            line,
                            column,
                        } => {
                            tracing::warn!(flow = %flow.name, version = flow.version, line, column, error = %message, "flow failed; fallback");
                            self.flow_failed(&flow.name, flow.version, line, &message)
                                .await;
                            self.fallback(Some(&settings)).await
                        }
                    };
                }
            }
        }
    }

    async fn flow_failed(&self, flow: &str, version: i32, line: u32, message: &str) {
        self.event(
            "flow_error",
            json!({ "flow": flow, "version": version, "line": line, "message": message }),
        )
        .await;
    }

    /// The tenant's fallback: its fallback queue, else the apology prompt
    /// and a hang-up.
    async fn fallback(
        &mut self,
        settings: Option<&crate::ivr::store::settings::Model>,
    ) -> Result<(), &'static str> {
        let t = self.target.tenant;
        let settings = match settings {
            Some(s) => s.clone(),
            None => crate::ivr::store::settings(&self.sip.db, t)
                .await
                .unwrap_or_else(|_| crate::ivr::store::settings::Model {
                    id: uuid::Uuid::nil(),
                    tenant_id: t,
                    fallback_queue: None,
                    apology_prompt: None,
                    http_allowed_hosts: json!([]),
                    transcribe_calls: false,
                    updated_at: chrono::Utc::now(),
                }),
        };
        if let Some(q) = &settings.fallback_queue
            && self.queue_from_flow(q, &[], 0).await.is_ok()
        {
            self.event("flow_fallback", json!({ "queue": q })).await;
            return Ok(());
        }
        self.event(
            "flow_fallback",
            json!({ "apology_prompt": settings.apology_prompt }),
        )
        .await;
        if let Some(p) = &settings.apology_prompt {
            let mut typed = VecDeque::new();
            if let Err(Gone::Call(cause)) = self.play_prompt(p, &mut typed, false).await {
                return Err(cause);
            }
        }
        self.send_bye().await;
        Err("flow_failed")
    }

    /// Routes the call to the tenant's queue `name` with extra skills.
    async fn queue_from_flow(
        &mut self,
        name: &str,
        skills: &[String],
        priority: i32,
    ) -> Result<(), String> {
        use crate::acd::catalog::{queue, skill};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let t = self.target.tenant;
        let Some(id) = self.interaction else {
            return Err("no interaction".into());
        };
        let q = queue::Entity::find()
            .filter(queue::Column::TenantId.eq(t))
            .filter(queue::Column::Name.eq(name))
            .one(&self.sip.db)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("queue {name:?} does not exist"))?;
        let mut extra = Vec::new();
        for s in skills {
            let found = skill::Entity::find()
                .filter(skill::Column::TenantId.eq(t))
                .filter(skill::Column::Name.eq(s.as_str()))
                .one(&self.sip.db)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("skill {s:?} does not exist"))?;
            extra.push(crate::acd::engine::SkillReq {
                skill: found.id,
                min_level: crate::acd::engine::MIN_LEVEL,
            });
        }
        self.ctx
            .acd
            .route_with(
                t,
                id,
                q.id,
                priority,
                false,
                extra,
                Some(super::ACTOR.into()),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.routed = true;
        Ok(())
    }

    /// Loops the hold prompt while the call waits, with position
    /// announcements every `announce_secs` (prompts `queue_position_<n>`,
    /// 1 to 9, and `queue_position_many`), until it leaves the queue.
    fn hold_while_queued(&mut self, hold: Option<String>, announce_secs: u32) {
        if hold.is_none() && announce_secs == 0 {
            return;
        }
        let Some(id) = self.interaction else { return };
        let Some(data) = self.ctx.recordings.parent().map(|p| p.to_path_buf()) else {
            return;
        };
        let media = self.media.clone();
        let acd = self.ctx.acd.clone();
        let sip = self.sip.clone();
        let t = self.target.tenant;
        let stop = self.sip.calls.stop.clone();
        let bus = self.ctx.bus.clone();
        let task = tokio::spawn(async move {
            let waiting = || async { acd.read(t, |e| e.position(id)).await.ok().flatten() };
            let mut last_announce = tokio::time::Instant::now();
            loop {
                let Some(pos) = waiting().await else { return };
                let due = announce_secs > 0
                    && last_announce.elapsed() >= Duration::from_secs(announce_secs as u64);
                let name = if due {
                    last_announce = tokio::time::Instant::now();
                    Some(if pos.place <= 9 {
                        format!("queue_position_{}", pos.place)
                    } else {
                        "queue_position_many".into()
                    })
                } else {
                    hold.clone()
                };
                let prompt = match name
                    .as_deref()
                    .and_then(|n| crate::prompts::path(&data, t, n))
                {
                    Some(p) => sip.prompts.get(&p).await.ok(),
                    None => None,
                };
                if due && prompt.is_some() {
                    let _ = crate::interactions::service::annotate(
                        &sip.db,
                        &bus,
                        t,
                        id,
                        "queue_position_announced".into(),
                        json!({ "place": pos.place, "waiting": pos.waiting, "prompt": name }),
                        Some(super::ACTOR.into()),
                    )
                    .await;
                }
                let Some(prompt) = prompt else {
                    // Nothing to play (yet): look again in a second.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.cancelled() => return,
                    }
                };
                let Ok(playback) = media.play(prompt) else {
                    return;
                };
                // Reaching an agent stops the prompt (the bridge does).
                let poll = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if waiting().await.is_none() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    o = playback.wait() => if o == PlayOutcome::Stopped && waiting().await.is_none() { return },
                    _ = poll => { media.stop_playback(); return }
                    _ = stop.cancelled() => return,
                }
            }
        });
        self.hold_task = Some(task);
    }

    /// A transfer chosen by the flow: through the tenant's first trunk.
    async fn transfer_from_flow(&mut self, to: &str) -> Result<(), Gone> {
        let t = self.target.tenant;
        let Ok(to) = super::super::midcall::tenant_transfer_target(&self.sip.db, t, to).await
        else {
            return Err(Gone::Call("transfer_failed"));
        };
        let trunk = match super::first_trunk(&self.sip.db, t).await {
            Ok(Some(tr)) => tr,
            _ => return Err(Gone::Call("transfer_failed")),
        };
        self.target.forward = Some((trunk, to));
        match self.forward(true).await {
            Ok(()) => Ok(()),
            Err("caller_bye") => Err(Gone::Call("caller_bye")),
            Err("shutdown") => Err(Gone::Call("shutdown")),
            Err(_) => {
                self.target.forward = None;
                Err(Gone::Call("transfer_failed"))
            }
        }
    }

    /// Waits for what the caller does (a digit, speech, its end), the
    /// timer, or the call's end.
    async fn flow_wait(&mut self, deadline: tokio::time::Instant) -> Result<Option<Heard>, Gone> {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(None),
                s = self.signals.recv() => self.flow_signal(s).await?,
                ev = async { match self.flow_events.as_mut() { Some(e) => e.recv().await, None => std::future::pending().await } } => match ev {
                    Some(MediaEvent::Dtmf { digit, source }) => {
                        self.event("dtmf", json!({ "digit": digit.to_string(), "source": format!("{source:?}").to_lowercase() })).await;
                        return Ok(Some(Heard::Digit(digit_char(digit))));
                    }
                    Some(MediaEvent::Speech) => return Ok(Some(Heard::Speech)),
                    Some(MediaEvent::Silence) => return Ok(Some(Heard::Silence)),
                    Some(MediaEvent::Inactive) => {
                        self.send_bye().await;
                        return Err(Gone::Call("rtp_timeout"));
                    }
                    None => self.flow_events = None,
                },
            }
        }
    }

    async fn flow_signal(&mut self, s: Option<Signal>) -> Result<(), Gone> {
        match s {
            Some(Signal::Bye) => Err(Gone::Call("caller_bye")),
            Some(Signal::Ack) => {
                self.acked = true;
                Ok(())
            }
            Some(Signal::Hangup) => {
                self.send_bye().await;
                Err(Gone::Call("agent_hangup"))
            }
            Some(Signal::ReInvite(tx)) => {
                self.caller_reinvite(*tx).await;
                Ok(())
            }
            Some(other) => {
                self.early_signal(other).await;
                Ok(())
            }
            None => Err(Gone::Call("failed")),
        }
    }

    /// Plays a prompt to its end (`barge_in`: a digit stops it and is kept).
    async fn play_prompt(
        &mut self,
        name: &str,
        typed: &mut VecDeque<char>,
        barge_in: bool,
    ) -> Result<Value, Gone> {
        let Some(data) = self.ctx.recordings.parent().map(|p| p.to_path_buf()) else {
            return Ok(json!("missing"));
        };
        let Some(path) = crate::prompts::path(&data, self.target.tenant, name) else {
            return Ok(json!("missing"));
        };
        let prompt = match self.sip.prompts.get(&path).await {
            Ok(p) => p,
            Err(e) => {
                self.event(
                    "prompt_failed",
                    json!({ "prompt": name, "error": e.to_string() }),
                )
                .await;
                return Ok(json!("missing"));
            }
        };
        let ms = prompt.duration_ms();
        let Ok(playback) = self.media.play(prompt) else {
            return Ok(json!("missing"));
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms + 2_000);
        let done = playback.wait();
        tokio::pin!(done);
        loop {
            tokio::select! {
                _ = &mut done => return Ok(Value::Null),
                h = self.flow_wait(deadline) => match h? {
                    None => { self.media.stop_playback(); return Ok(Value::Null) }
                    Some(Heard::Digit(d)) => {
                        typed.push_back(d);
                        if barge_in {
                            self.media.stop_playback();
                            return Ok(json!("interrupted"));
                        }
                    }
                    Some(_) => {}
                },
            }
        }
    }

    async fn flow_command(
        &mut self,
        c: &Command,
        typed: &mut VecDeque<char>,
    ) -> Result<Value, Gone> {
        match c {
            Command::Answer => Ok(Value::Null),
            Command::Play { prompt } => self
                .play_prompt(prompt, typed, false)
                .await
                .map(|_| Value::Null),
            Command::Say { prompt, .. } => match prompt {
                Some(p) => self.play_prompt(p, typed, false).await.map(|_| Value::Null),
                None => Ok(Value::Null),
            },
            Command::Gather {
                prompt,
                max_digits,
                timeout_ms,
                terminator,
            } => {
                let d = self
                    .gather_digits(
                        prompt.as_deref(),
                        *max_digits as usize,
                        *timeout_ms,
                        terminator.as_deref(),
                        typed,
                    )
                    .await?;
                Ok(json!(d))
            }
            Command::Listen {
                prompt,
                phrases,
                timeout_ms,
            } => {
                self.listen(
                    prompt.as_deref(),
                    Some(phrases.clone()).filter(|p| !p.is_empty()),
                    *timeout_ms,
                    typed,
                )
                .await
            }
            Command::Ask {
                prompt, timeout_ms, ..
            } => {
                let h = self
                    .listen(prompt.as_deref(), None, *timeout_ms, typed)
                    .await?;
                let text = h["text"].as_str().unwrap_or("");
                let digits = h["digits"].as_str().unwrap_or("");
                Ok(json!(if text.is_empty() { digits } else { text }))
            }
            Command::Record {
                prompt,
                max_secs,
                transcribe,
            } => {
                self.record_message(prompt.as_deref(), *max_secs, *transcribe, typed)
                    .await
            }
            Command::Lookup => Ok(self.lookup_contact().await),
            Command::Now => Ok(json!(chrono::Utc::now().fixed_offset().to_rfc3339())),
            Command::Set { .. } => Ok(Value::Null),
            Command::Log { message } => {
                tracing::info!(target: "switchboard::flow", interaction_id = ?self.interaction, "{message}");
                Ok(Value::Null)
            }
            Command::Http {
                method,
                url,
                body,
                timeout_ms,
            } => Ok(self
                .flow_http(method, url, body.as_deref(), *timeout_ms)
                .await),
        }
    }

    async fn gather_digits(
        &mut self,
        prompt: Option<&str>,
        max: usize,
        timeout_ms: u64,
        terminator: Option<&str>,
        typed: &mut VecDeque<char>,
    ) -> Result<String, Gone> {
        let term = terminator.and_then(|t| t.chars().next());
        let mut got = String::new();
        let take = |got: &mut String, d: char| -> bool {
            if Some(d) == term {
                return true;
            }
            got.push(d);
            got.len() >= max
        };
        // Type-ahead first.
        while let Some(d) = typed.pop_front() {
            if take(&mut got, d) {
                return Ok(got);
            }
        }
        if got.is_empty()
            && let Some(p) = prompt
        {
            self.play_prompt(p, typed, true).await?;
            while let Some(d) = typed.pop_front() {
                if take(&mut got, d) {
                    return Ok(got);
                }
            }
        }
        let timeout = Duration::from_millis(timeout_ms);
        let mut deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.flow_wait(deadline).await? {
                None => return Ok(got),
                Some(Heard::Digit(d)) => {
                    if take(&mut got, d) {
                        return Ok(got);
                    }
                    deadline = tokio::time::Instant::now() + timeout;
                }
                Some(_) => {}
            }
        }
    }

    /// Speech (restricted to `phrases` when given) or a digit.
    async fn listen(
        &mut self,
        prompt: Option<&str>,
        phrases: Option<Vec<String>>,
        timeout_ms: u64,
        typed: &mut VecDeque<char>,
    ) -> Result<Value, Gone> {
        let Some(asr) = self.ctx.flows.asr().cloned() else {
            // No speech: digits only.
            let d = self
                .gather_digits(prompt, 1, timeout_ms, None, typed)
                .await?;
            return Ok(json!({ "available": false, "text": "", "confidence": 0.0, "digits": d }));
        };
        if let Some(d) = typed.pop_front() {
            return Ok(
                json!({ "available": true, "text": "", "confidence": 0.0, "digits": d.to_string() }),
            );
        }
        let (tap_tx, mut tap_rx) = mpsc::channel::<Vec<i16>>(TAP_FRAMES);
        let mut stream = match asr.stream(phrases) {
            Ok(s) => s,
            Err(e) => {
                self.event("asr_failed", json!({ "error": e.to_string() }))
                    .await;
                let d = self
                    .gather_digits(prompt, 1, timeout_ms, None, typed)
                    .await?;
                return Ok(
                    json!({ "available": false, "text": "", "confidence": 0.0, "digits": d }),
                );
            }
        };
        self.media.set_tap(Some(tap_tx));
        let result = async {
            if let Some(p) = prompt {
                // The prompt plays while we listen; a digit stops it.
                let r = self.play_prompt(p, typed, true).await;
                while let Ok(f) = tap_rx.try_recv() {
                    stream.push(&f);
                }
                r?;
                if let Some(d) = typed.pop_front() {
                    return Ok(json!({ "available": true, "text": "", "confidence": 0.0, "digits": d.to_string() }));
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                tokio::select! {
                    f = tap_rx.recv() => if let Some(f) = f { stream.push(&f) },
                    u = stream.utterance() => match u {
                        // Speech ended: a phrase, or "" when it matched none.
                        Some(h) => return Ok(json!({ "available": true, "text": h.text, "confidence": h.confidence, "digits": "" })),
                        // The recogniser stopped (it failed): say so, no speech heard.
                        None => {
                            self.event("asr_failed", json!({ "error": "the recogniser stopped" })).await;
                            return Ok(json!({ "available": true, "text": "", "confidence": 0.0, "digits": "" }));
                        }
                    },
                    h = self.flow_wait(deadline) => match h? {
                        None => {
                            let h = stream.finish().await;
                            return Ok(json!({ "available": true, "text": h.text, "confidence": h.confidence, "digits": "" }));
                        }
                        Some(Heard::Digit(d)) => {
                            return Ok(json!({ "available": true, "text": "", "confidence": 0.0, "digits": d.to_string() }));
                        }
                        Some(_) => {}
                    },
                }
            }
        }
        .await;
        self.media.set_tap(None);
        result
    }

    /// Records a message until `#`, `max_secs`, or 3 s of silence after
    /// speech; stores it and (optionally) its transcript.
    async fn record_message(
        &mut self,
        prompt: Option<&str>,
        max_secs: u32,
        transcribe: bool,
        typed: &mut VecDeque<char>,
    ) -> Result<Value, Gone> {
        if let Some(p) = prompt {
            self.play_prompt(p, typed, false).await?;
        }
        typed.clear();
        let (tap_tx, mut tap_rx) = mpsc::channel::<Vec<i16>>(TAP_FRAMES);
        self.media.set_tap(Some(tap_tx));
        let mut pcm: Vec<i16> = Vec::new();
        let end = tokio::time::Instant::now() + Duration::from_secs(max_secs as u64);
        let mut spoke = false;
        let mut quiet_since: Option<tokio::time::Instant> = None;
        let outcome: Result<(), Gone> = async {
            loop {
                let deadline = match quiet_since {
                    Some(q) if spoke => (q + Duration::from_secs(3)).min(end),
                    _ => end,
                };
                tokio::select! {
                    f = tap_rx.recv() => if let Some(f) = f && pcm.len() < max_secs as usize * 8000 {
                        pcm.extend_from_slice(&f);
                    },
                    h = self.flow_wait(deadline) => match h? {
                        None => return Ok(()),
                        Some(Heard::Digit('#')) => return Ok(()),
                        Some(Heard::Digit(_)) => {}
                        Some(Heard::Speech) => { spoke = true; quiet_since = None; }
                        Some(Heard::Silence) => quiet_since = Some(tokio::time::Instant::now()),
                    },
                }
            }
        }
        .await;
        self.media.set_tap(None);
        while let Ok(f) = tap_rx.try_recv() {
            pcm.extend_from_slice(&f);
        }
        let secs = pcm.len() as f64 / 8000.0;
        let Some(id) = self.interaction else {
            outcome?;
            return Ok(json!({ "recording": null, "secs": secs, "transcript": "" }));
        };
        let data = self
            .ctx
            .recordings
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let dir = data.join("voicemail").join(self.target.tenant.to_string());
        let file = dir.join(format!("{id}-{}.wav", uuid::Uuid::now_v7().simple()));
        let samples = pcm.clone();
        let path = file.clone();
        let saved = tokio::task::spawn_blocking(move || -> Result<(), String> {
            std::fs::create_dir_all(path.parent().expect("has a folder"))
                .map_err(|e| e.to_string())?;
            let mut w =
                crate::media::wav::WavWriter::create(&path, 1, 8000).map_err(|e| e.to_string())?;
            w.write(&samples).map_err(|e| e.to_string())?;
            w.finish().map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let recording = match saved {
            Ok(()) => Some(
                file.strip_prefix(&data)
                    .unwrap_or(&file)
                    .to_string_lossy()
                    .into_owned(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "voicemail not saved");
                None
            }
        };
        let mut transcript = String::new();
        if transcribe
            && !pcm.is_empty()
            && let Some(asr) = self.ctx.flows.asr().cloned()
        {
            match asr.transcribe(pcm).await {
                Ok(h) => transcript = h.text,
                Err(e) => tracing::warn!(error = %e, "voicemail not transcribed"),
            }
        }
        self.event(
            "voicemail",
            json!({ "recording": recording, "secs": secs, "transcript": transcript }),
        )
        .await;
        outcome?;
        Ok(json!({ "recording": recording, "secs": secs, "transcript": transcript }))
    }

    /// The contact whose phone is the caller's number.
    async fn lookup_contact(&self) -> Value {
        use crate::contacts::entity::{contact, phone};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let t = self.target.tenant;
        if !self.target.caller.starts_with('+') {
            return Value::Null;
        }
        let found = phone::Entity::find()
            .filter(phone::Column::TenantId.eq(t))
            .filter(phone::Column::E164.eq(self.target.caller.as_str()))
            .one(&self.sip.db)
            .await;
        let Ok(Some(p)) = found else {
            return Value::Null;
        };
        let Ok(Some(c)) = contact::Entity::find_by_id(p.contact_id)
            .filter(contact::Column::TenantId.eq(t))
            .one(&self.sip.db)
            .await
        else {
            return Value::Null;
        };
        let full = crate::contacts::store::load_full(&self.sip.db, t, vec![c])
            .await
            .ok()
            .and_then(|mut v| v.pop());
        let Some(f) = full else { return Value::Null };
        json!({
            "id": f.contact.id,
            "first_name": f.contact.first_name,
            "last_name": f.contact.last_name,
            "name": format!("{} {}", f.contact.first_name, f.contact.last_name).trim(),
            "language": f.contact.language,
            "timezone": f.contact.timezone,
            "external_id": f.contact.external_id,
            "tags": f.tags,
            "attributes": f.attributes.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
        })
    }

    async fn flow_http(
        &self,
        method: &str,
        url: &str,
        body: Option<&str>,
        timeout_ms: u64,
    ) -> Value {
        let req = match method {
            "POST" => self
                .ctx
                .http
                .post(url)
                .header(
                    "content-type",
                    if body.is_some_and(|b| b.trim_start().starts_with(['{', '['])) {
                        "application/json"
                    } else {
                        "text/plain"
                    },
                )
                .body(body.unwrap_or("").to_owned()),
            _ => self.ctx.http.get(url),
        };
        let sent = req.timeout(Duration::from_millis(timeout_ms)).send().await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return json!({ "status": 0, "body": "", "error": e.to_string() }),
        };
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let mut stream = resp;
        loop {
            match tokio::time::timeout(Duration::from_millis(timeout_ms), stream.chunk()).await {
                Ok(Ok(Some(c))) => {
                    if body.len() + c.len() > HTTP_MAX_BYTES {
                        return json!({ "status": 0, "body": "", "error": format!("the answer is larger than {} KiB", HTTP_MAX_BYTES / 1024) });
                    }
                    body.extend_from_slice(&c);
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return json!({ "status": 0, "body": "", "error": e.to_string() }),
                Err(_) => return json!({ "status": 0, "body": "", "error": "timed out" }),
            }
        }
        json!({ "status": status, "body": String::from_utf8_lossy(&body) })
    }

    /// After a recorded call ends: its transcript (a `transcript` event,
    /// told after the close), when the tenant asked for transcripts.
    pub(super) fn transcribe_recording(
        &self,
        id: crate::ids::InteractionId,
        path: std::path::PathBuf,
    ) {
        let Some(asr) = self.ctx.flows.asr().cloned() else {
            return;
        };
        let (db, bus, t) = (
            self.sip.db.clone(),
            self.ctx.bus.clone(),
            self.target.tenant,
        );
        tokio::spawn(async move {
            let on = crate::ivr::store::settings(&db, t)
                .await
                .map(|s| s.transcribe_calls)
                .unwrap_or(false);
            if !on {
                return;
            }
            let audio =
                match tokio::task::spawn_blocking(move || crate::media::wav::load(&path)).await {
                    Ok(Ok(a)) => a,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "recording not transcribed");
                        return;
                    }
                    Err(_) => return,
                };
            let secs = audio.duration_secs();
            match asr.transcribe(audio.samples).await {
                Ok(h) => {
                    let r = crate::interactions::service::annotate(
                        &db,
                        &bus,
                        t,
                        id,
                        "transcript".into(),
                        json!({ "source": "call", "text": h.text, "confidence": h.confidence, "secs": secs }),
                        Some("asr".into()),
                    )
                    .await;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, interaction_id = %id, "transcript not recorded");
                    }
                }
                Err(e) => tracing::warn!(error = %e, interaction_id = %id, "call not transcribed"),
            }
        });
    }
}
