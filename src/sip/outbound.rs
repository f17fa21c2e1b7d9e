//! Outbound calls through a tenant's trunks: `POST /calls` and
//! `POST /calls/{id}/hang-up`.
//!
//! Only supervisors, admins and API keys of those roles place calls (agents
//! and marketers get 403: no toll-fraud path through a lesser account), and
//! only through their own tenant's trunks, from the trunk's caller id or one
//! of the tenant's numbers. Each trunk has a calls-per-second token bucket
//! (`trunks::Cps`): over it the API answers 429 and nothing is placed.
//!
//! A call is an outbound voice interaction. Its task INVITEs
//! `sip:<to>@<trunk host>:<port>` through `uac.rs` with a PCMU offer (and
//! telephone-event) from a new [`RtpSession`]; a 401/407 is answered once
//! with digest credentials when the trunk has them (else the call ends with
//! cause `auth_required`); 180/183 is a `ringing` event; the 2xx (ACKed by
//! rsipstack) is `answered`, the interaction connects and the call is
//! recorded; 486/600/603 is `busy`; no answer within the ring timeout
//! CANCELs (`no_answer`); other refusals are `failed` with the SIP status.
//! The call ends with the far end's BYE (`callee_bye`), our hang-up API
//! (`api_hangup`, BYE or CANCEL), RTP inactivity (`rtp_timeout`) or shutdown,
//! and leaves a `hangup` event with the cause and the CDR (the inbound
//! calls' shape); the interaction closes: completed once answered (failed
//! on RTP loss), abandoned when busy or unanswered, terminated when hung up
//! before the answer or at shutdown, failed otherwise.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix_web::{HttpResponse, post, web};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

use super::Sip;
use super::digest::{self, Algorithm};
use super::numbers::{self, number};
use super::sdp;
use super::trunks::{self, trunk};
use super::uac::{CSeq, Calling, Dialog, InDialog, InviteEvent, InviteRequest, Retry};
use crate::error::{ApiError, ApiResult, ErrorCode, Validator};
use crate::iam::{Auth, Supervisors};
use crate::ids::{InteractionId, TenantId};
use crate::interactions::domain::{Channel, CloseReason, Direction, Transition};
use crate::interactions::service::{self as spine, NewInteraction, Step};
use crate::media::g711::Law;
use crate::media::session::{MediaEvent, RtpSession, SessionConfig};
use crate::state::AppState;

const ACTOR: &str = "sip";
/// How long a CANCELled INVITE may take to end (487, or a crossing 2xx).
const CANCEL_WAIT: Duration = Duration::from_secs(5);
const DEFAULT_RING_SECS: i64 = 30;
const MAX_RING_SECS: i64 = 120;

/// The outbound calls of this node and the trunks' rate limits.
#[derive(Default)]
pub struct Outbound {
    live: Mutex<HashMap<InteractionId, mpsc::UnboundedSender<()>>>,
    pub cps: trunks::Cps,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("live", &self.live_count())
            .finish()
    }
}

impl Outbound {
    pub fn live_count(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Waits (a little) for the calls' tasks once they were told to stop.
    pub async fn wait(&self, limit: Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
    }

    fn hang_up(&self, i: InteractionId) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&i)
            .is_some_and(|tx| tx.send(()).is_ok())
    }

    fn remove(&self, i: InteractionId) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&i);
    }
}

/// The SIP endpoints of this process by their UDP address: the HTTP side
/// knows only `AppState::sip` (the addresses).
static NODES: Mutex<Vec<(SocketAddr, Weak<Sip>)>> = Mutex::new(Vec::new());

pub(crate) fn register(addr: SocketAddr, sip: &Arc<Sip>) {
    let mut n = NODES.lock().unwrap_or_else(|e| e.into_inner());
    n.retain(|(a, w)| w.strong_count() > 0 && *a != addr);
    n.push((addr, Arc::downgrade(sip)));
}

pub(crate) fn sip_for(addr: SocketAddr) -> Option<Arc<Sip>> {
    let n = NODES.lock().unwrap_or_else(|e| e.into_inner());
    n.iter()
        .find(|(a, _)| *a == addr)
        .and_then(|(_, w)| w.upgrade())
}

fn unavailable() -> ApiError {
    let mut e = ApiError::new(ErrorCode::Unavailable, "the SIP endpoint is not running");
    e.retry_after_secs = Some(5);
    e
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    /// Whom to call: E.164, or digits read in the tenant's default region.
    pub to: String,
    /// One of the tenant's SIP trunks.
    pub trunk_id: String,
    /// The caller id: one of the tenant's numbers or the trunk's caller id
    /// (the default).
    pub from: Option<String>,
    /// How long to let it ring (1-120 s, default 30).
    pub ring_timeout_secs: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallAccepted {
    /// The call's outbound voice interaction: follow its events.
    pub interaction_id: InteractionId,
    /// E.164.
    pub to: String,
    pub from: String,
}

/// Place an outbound call through one of the tenant's trunks (supervisors,
/// admins and their API keys only: agents and marketers may not call out).
/// Answers 202 at once; the call's progress is on its interaction
/// (`ringing`, `answered`, `hangup` with the cause and the CDR). Over the
/// trunk's calls-per-second limit: 429 with Retry-After, nothing placed.
#[utoipa::path(tag = "sip", request_body = CallRequest, responses((status = 202, body = CallAccepted), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
#[post("/calls")]
pub(super) async fn place_call(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    body: crate::http::extract::Json<CallRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let t = auth.tenant_id;
    let region = crate::iam::entity::tenant::Entity::find_by_id(t)
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?
        .default_region;
    let mut v = Validator::new();
    let to = numbers::normalise_dialed(&b.to, Some(&region));
    if to.is_none() {
        v.add(
            "to",
            "must be a phone number (E.164, or digits in the tenant's region)",
        );
    }
    let ring = b.ring_timeout_secs.unwrap_or(DEFAULT_RING_SECS);
    if !(1..=MAX_RING_SECS).contains(&ring) {
        v.add("ring_timeout_secs", "must be 1-120");
    }
    let trunk_id = uuid::Uuid::parse_str(b.trunk_id.trim()).ok();
    if trunk_id.is_none() {
        v.add("trunk_id", "must be a trunk's id");
    }
    let from_given = match &b.from {
        Some(f) => {
            let n = numbers::normalise_dialed(f, Some(&region));
            if n.is_none() {
                v.add("from", "must be a phone number");
            }
            n
        }
        None => None,
    };
    v.finish()?;
    let (Some(to), Some(trunk_id)) = (to, trunk_id) else {
        return Err(ApiError::field("to", "must be a phone number"));
    };
    // Another tenant's trunk is as absent as a missing one.
    let trunk = trunks::find_trunk(&state.db.conn, t, trunk_id)
        .await?
        .ok_or_else(|| ApiError::not_found("SIP trunk"))?;
    if !trunk.enabled {
        return Err(ApiError::field("trunk_id", "the trunk is disabled"));
    }
    let from = match from_given {
        None => trunk.caller_id.clone(),
        Some(f) if f == trunk.caller_id => f,
        Some(f) => {
            let ours = number::Entity::find()
                .filter(number::Column::TenantId.eq(t))
                .filter(number::Column::Number.eq(f.as_str()))
                .one(&state.db.conn)
                .await?;
            if ours.is_none() {
                return Err(ApiError::field(
                    "from",
                    "must be one of the tenant's numbers or the trunk's caller id",
                ));
            }
            f
        }
    };
    let sip = state
        .sip
        .and_then(|a| sip_for(a.udp))
        .ok_or_else(unavailable)?;
    let Some(ctx) = sip.calls.context() else {
        return Err(unavailable());
    };
    let creds = match (&trunk.auth_username, &trunk.auth_password_sealed) {
        (Some(u), Some(sealed)) => {
            let p = state.sealer.open(sealed).map_err(ApiError::internal)?;
            Some((u.clone(), String::from_utf8_lossy(&p).into_owned()))
        }
        _ => None,
    };
    if let Err(secs) = sip
        .outbound
        .cps
        .take(trunk.id, trunk.cps_limit.max(1) as u32)
    {
        let mut e = ApiError::rate_limited(secs);
        e.message = format!(
            "the trunk's limit of {} calls per second is reached; try again later",
            trunk.cps_limit
        );
        return Err(e);
    }
    let mut attributes = serde_json::Map::new();
    attributes.insert("sip_trunk_id".into(), json!(trunk.id));
    attributes.insert("sip_trunk".into(), json!(trunk.name));
    let (m, _) = spine::create(
        &state.db.conn,
        &ctx.bus,
        t,
        NewInteraction {
            channel: Channel::Voice,
            direction: Direction::Outbound,
            customer_address: Some(to.clone()),
            subject: Some(from.clone()),
            attributes,
            contact_id: None,
        },
        Some(format!("{}:{}", auth.actor.kind(), auth.actor.id())),
    )
    .await
    .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    let (hangup_tx, hangup) = mpsc::unbounded_channel();
    sip.outbound
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(m.id, hangup_tx);
    let call = OutCall {
        sip: sip.clone(),
        t,
        interaction: m.id,
        to: to.clone(),
        from: from.clone(),
        trunk,
        creds,
        ring_timeout: Duration::from_secs(ring as u64),
        hangup,
        recording: None,
    };
    let id = m.id;
    let tracker = sip.outbound.tasks.clone();
    tracker.spawn(async move {
        let sip = call.sip.clone();
        call.run().await;
        sip.outbound.remove(id);
    });
    Ok(HttpResponse::Accepted().json(CallAccepted {
        interaction_id: m.id,
        to,
        from,
    }))
}

/// Hang up an outbound call in progress (BYE once answered, CANCEL while
/// ringing). 409 when the call is over (or not on this node).
#[utoipa::path(tag = "sip", responses((status = 202), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/calls/{id}/hang-up")]
pub(super) async fn hang_up_call(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    id: crate::http::extract::Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let found = crate::interactions::entity::interaction::Entity::find_by_id(*id)
        .filter(crate::interactions::entity::interaction::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db.conn)
        .await?;
    if found.is_none() {
        return Err(ApiError::not_found("call"));
    }
    let sip = state.sip.and_then(|a| sip_for(a.udp));
    if sip.is_some_and(|s| s.outbound.hang_up(*id)) {
        Ok(HttpResponse::Accepted().finish())
    } else {
        Err(ApiError::conflict(
            "the call is not in progress on this node",
        ))
    }
}

/// The fields of a `Digest` challenge.
fn challenge_params(v: &str) -> Option<HashMap<String, String>> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut out = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() && out.len() < 32 {
        let (k, after) = rest.split_once('=')?;
        let key = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        out.insert(key, val.trim().to_owned());
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// The `Authorization` value answering `challenge` for an INVITE to `uri`.
pub fn authorization(challenge: &str, user: &str, password: &str, uri: &str) -> Option<String> {
    authorization_for("INVITE", challenge, user, password, uri)
}

/// The `Authorization` value answering `challenge` for a `method` to `uri`.
pub fn authorization_for(
    method: &str,
    challenge: &str,
    user: &str,
    password: &str,
    uri: &str,
) -> Option<String> {
    let p = challenge_params(challenge)?;
    let realm = p.get("realm")?.clone();
    let nonce = p.get("nonce")?.clone();
    let alg = match p.get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a)?,
    };
    let qop = p.get("qop").and_then(|q| {
        q.split(',')
            .any(|x| x.trim().eq_ignore_ascii_case("auth"))
            .then(|| "auth".to_owned())
    });
    if p.contains_key("qop") && qop.is_none() {
        return None;
    }
    let cnonce = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let creds = digest::Credentials {
        username: user.to_owned(),
        realm: realm.clone(),
        nonce: nonce.clone(),
        uri: uri.to_owned(),
        response: String::new(),
        algorithm: alg,
        qop: qop.clone(),
        nc: qop.as_ref().map(|_| "00000001".to_owned()),
        cnonce: qop.as_ref().map(|_| cnonce.clone()),
    };
    let ha1 = digest::ha1(alg, user, &realm, password);
    let response = digest::expected_response(alg, &ha1, method, &creds)?;
    let q = |s: &str| s.replace(['"', '\\'], "");
    let mut h = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
        q(user),
        q(&realm),
        q(&nonce),
        q(uri),
        alg.name()
    );
    if qop.is_some() {
        h.push_str(&format!(", qop=auth, nc=00000001, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = p.get("opaque") {
        h.push_str(&format!(", opaque=\"{}\"", q(o)));
    }
    Some(h)
}

/// How the ringing ended.
enum Ringing {
    Answered(Box<Dialog>, Vec<u8>, u32),
    /// Cause and the SIP status, if one came.
    Over(&'static str, Option<u16>),
}

struct OutCall {
    sip: Arc<Sip>,
    t: TenantId,
    interaction: InteractionId,
    to: String,
    from: String,
    trunk: trunk::Model,
    creds: Option<(String, String)>,
    ring_timeout: Duration,
    hangup: mpsc::UnboundedReceiver<()>,
    recording: Option<std::path::PathBuf>,
}

pub(crate) fn host_part(h: &str) -> String {
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{h}]")
    } else {
        h.to_owned()
    }
}

impl OutCall {
    /// Records one moment of the call on its interaction: its steps in one
    /// write. Should that fail (a transition that no longer applies), each
    /// step is tried alone, so what still applies is recorded all the same.
    async fn record(&self, steps: &[Step]) {
        let Some(ctx) = self.sip.calls.context() else {
            return;
        };
        let (db, bus, t, id) = (&self.sip.db, &ctx.bus, self.t, self.interaction);
        if steps.len() > 1
            && spine::record(db, bus, t, id, steps, Some(ACTOR.into()))
                .await
                .is_ok()
        {
            return;
        }
        for step in steps {
            let one = std::slice::from_ref(step);
            let Err(e) = spine::record(db, bus, t, id, one, Some(ACTOR.into())).await else {
                continue;
            };
            match step {
                Step::Annotate { kind, .. } => {
                    tracing::warn!(error = %e, interaction_id = %self.interaction, kind, "outbound call event not recorded");
                }
                _ => {
                    tracing::warn!(error = %e, interaction_id = %self.interaction, "outbound call's interaction not moved");
                }
            }
        }
    }

    async fn event(&self, kind: &str, data: Value) {
        self.record(&[Step::note(kind, data)]).await;
    }

    async fn run(mut self) {
        let sip = self.sip.clone();
        let s = &sip.settings;
        let started = Utc::now();
        let media = RtpSession::start(SessionConfig {
            bind: s.rtp_bind,
            ports: s.rtp_port_min..=s.rtp_port_max,
            codec: Law::Ulaw,
            telephone_event: Some(101),
            remote: None,
            inactivity: Duration::from_secs(s.rtp_timeout_secs),
            ..SessionConfig::default()
        })
        .await;
        let media = match media {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "no media session for an outbound call");
                return self.finish(None, "failed", None, started, None, "").await;
            }
        };
        let local = media.local_addr();
        let ip = s.rtp_advertise.unwrap_or_else(|| {
            if !local.ip().is_unspecified() {
                local.ip()
            } else {
                sip.uac.advertised(None).ip()
            }
        });
        let us = super::midcall::LegSdp {
            media: SocketAddr::new(ip, local.port()),
            contact: format!(
                "<sip:{}@{}>",
                self.from.trim_start_matches('+'),
                sip.uac.advertised(s.rtp_advertise)
            ),
            session_id: rand::random::<u32>() as u64,
        };
        let offer = sdp::answer(
            us.media,
            &sdp::Negotiated {
                codec: Law::Ulaw,
                telephone_event: Some(101),
                ptime: 20,
                direction: sdp::Direction::SendRecv,
            },
            rand::random::<u32>() as u64,
        );
        let host = host_part(&self.trunk.host);
        let tp = if self.trunk.transport == "tcp" {
            ";transport=tcp"
        } else {
            ""
        };
        let target = format!("sip:{}@{host}:{}{tp}", self.to, self.trunk.port);
        let request = InviteRequest {
            target: target.clone(),
            from: format!("sip:{}@{host}", self.from),
            from_display: None,
            to: format!("sip:{}@{host}", self.to),
            contact_user: self.from.trim_start_matches('+').to_owned(),
            sdp: offer,
        };
        let advertise: Option<IpAddr> = s.rtp_advertise;
        let mut calling = match sip.uac.invite(&request, advertise).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "outbound call not placed");
                return self
                    .finish(Some(&media), "failed", None, started, None, "")
                    .await;
            }
        };
        let call_id = calling.call_id().to_owned();
        self.event(
            "calling",
            json!({ "to": self.to, "from": self.from, "trunk_id": self.trunk.id, "sip_call_id": call_id }),
        )
        .await;
        let (dialog, body, cseq_used) = match self.ring(&mut calling, &request).await {
            Ringing::Answered(d, b, c) => (d, b, c),
            Ringing::Over(cause, status) => {
                return self
                    .finish(Some(&media), cause, status, started, None, &call_id)
                    .await;
            }
        };
        let cseq = CSeq::default();
        for _ in 1..cseq_used {
            cseq.next();
        }
        // The answer must be PCMU (what we offered).
        let remote = sdp::parse_offer(&body).ok().and_then(|o| {
            o.negotiate()
                .ok()
                .filter(|n| n.codec == Law::Ulaw)
                .and(o.remote)
        });
        let answered = Utc::now();
        let Some(remote) = remote else {
            sip.uac.bye(&dialog, cseq.next(), advertise).await;
            return self
                .finish(
                    Some(&media),
                    "bad_answer",
                    Some(200),
                    started,
                    Some(answered),
                    &call_id,
                )
                .await;
        };
        media.set_remote(Some(remote));
        let (in_tx, mut in_dialog) = mpsc::unbounded_channel();
        sip.uac.track(&dialog, in_tx);
        self.record(&[
            Step::note(
                "answered",
                json!({ "codec": "PCMU", "rtp": local.to_string(), "remote_rtp": remote.to_string(), "sip_call_id": call_id }),
            ),
            Step::Transition(Transition::Connect { agent_id: None }),
        ])
        .await;
        if s.record_calls
            && let Some(ctx) = sip.calls.context()
        {
            let dir = ctx.recordings.join(self.t.to_string());
            let path = dir.join(format!("{}.wav", self.interaction));
            let r = std::fs::create_dir_all(&dir)
                .map_err(crate::media::session::SessionError::from)
                .and_then(|_| media.start_recording(&path, s.record_layout.wav()));
            match r {
                Ok(()) => self.recording = Some(path),
                Err(e) => tracing::warn!(error = %e, "outbound call not recorded"),
            }
        }
        let stop = sip.calls.stop_token();
        let mut events = media.take_events();
        let cause = loop {
            tokio::select! {
                m = in_dialog.recv() => match m {
                    Some(InDialog::Bye) | None => break "callee_bye",
                    Some(InDialog::ReInvite(tx)) => {
                        let change = super::midcall::answer_reinvite(*tx, &media, &us).await;
                        if let Some(kind) = change.event() {
                            self.event(kind, json!({ "by": "callee" })).await;
                        }
                    }
                    Some(InDialog::Refer(tx)) => {
                        super::midcall::refuse(*tx, rsipstack::sip::StatusCode::Forbidden, "transfers are not taken from the called party").await;
                    }
                },
                _ = self.hangup.recv() => {
                    sip.uac.bye(&dialog, cseq.next(), advertise).await;
                    break "api_hangup";
                }
                ev = async { match events.as_mut() { Some(e) => e.recv().await, None => std::future::pending().await } } => match ev {
                    Some(MediaEvent::Inactive) => {
                        sip.uac.bye(&dialog, cseq.next(), advertise).await;
                        break "rtp_timeout";
                    }
                    Some(MediaEvent::Dtmf { digit, source }) => {
                        self.event("dtmf", json!({ "digit": digit.to_string(), "source": format!("{source:?}").to_lowercase() })).await;
                    }
                    Some(_) => {}
                    None => events = None,
                },
                _ = stop.cancelled() => {
                    sip.uac.bye(&dialog, cseq.next(), advertise).await;
                    break "shutdown";
                }
            }
        };
        sip.uac.forget(&dialog);
        drop(calling);
        self.finish(
            Some(&media),
            cause,
            Some(200),
            started,
            Some(answered),
            &call_id,
        )
        .await;
    }

    /// Waits for the answer (retrying once with credentials when challenged).
    async fn ring(&mut self, calling: &mut Calling, request: &InviteRequest) -> Ringing {
        let sip = self.sip.clone();
        let stop = sip.calls.stop_token();
        let deadline = tokio::time::sleep(self.ring_timeout);
        tokio::pin!(deadline);
        let mut rang = false;
        let mut retried = false;
        loop {
            tokio::select! {
                ev = calling.next() => match ev {
                    Some(InviteEvent::Provisional(code, _)) => {
                        if !rang && (code == 180 || code == 183) {
                            rang = true;
                            self.event("ringing", json!({ "sip_status": code })).await;
                        }
                    }
                    Some(InviteEvent::Answered(d, body)) => {
                        return Ringing::Answered(d, body, calling.cseq());
                    }
                    Some(InviteEvent::Failed(code @ (401 | 407))) if !retried => {
                        let Some((user, pass)) = self.creds.clone() else {
                            return Ringing::Over("auth_required", Some(code));
                        };
                        let Some(auth) = calling
                            .challenge()
                            .and_then(|c| authorization(&c, &user, &pass, &request.target))
                        else {
                            tracing::info!(code, "a trunk's challenge we cannot answer");
                            return Ringing::Over("failed", Some(code));
                        };
                        let retry = Retry {
                            call_id: calling.call_id().to_owned(),
                            from_tag: calling.from_tag(),
                            cseq: calling.cseq() + 1,
                            header_name: if code == 401 { "Authorization" } else { "Proxy-Authorization" },
                            header_value: auth,
                        };
                        retried = true;
                        match sip.uac.invite_with(request, sip.settings.rtp_advertise, Some(&retry)).await {
                            Ok(c) => *calling = c,
                            Err(e) => {
                                tracing::warn!(error = %e, "outbound call not retried");
                                return Ringing::Over("failed", Some(code));
                            }
                        }
                    }
                    Some(InviteEvent::Failed(code @ (486 | 600 | 603))) => {
                        return Ringing::Over("busy", Some(code));
                    }
                    Some(InviteEvent::Failed(code)) => return Ringing::Over("failed", Some(code)),
                    None => return Ringing::Over("failed", None),
                },
                _ = &mut deadline => return self.cancel(calling, "no_answer").await,
                _ = self.hangup.recv() => return self.cancel(calling, "api_hangup").await,
                _ = stop.cancelled() => return self.cancel(calling, "shutdown").await,
            }
        }
    }

    /// CANCELs the INVITE; a 2xx that crossed the CANCEL gets a BYE.
    async fn cancel(&self, calling: &mut Calling, cause: &'static str) -> Ringing {
        calling.cancel().await;
        let mut status = None;
        let crossed = tokio::time::timeout(CANCEL_WAIT, async {
            loop {
                match calling.next().await {
                    Some(InviteEvent::Provisional(..)) => {}
                    Some(InviteEvent::Answered(d, _)) => return Some(d),
                    Some(InviteEvent::Failed(c)) => {
                        status = Some(c);
                        return None;
                    }
                    None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        if let Some(d) = crossed {
            self.sip
                .uac
                .bye(&d, calling.cseq() + 1, self.sip.settings.rtp_advertise)
                .await;
        }
        Ringing::Over(cause, status)
    }

    async fn finish(
        &self,
        media: Option<&RtpSession>,
        cause: &str,
        sip_status: Option<u16>,
        started: DateTime<Utc>,
        answered: Option<DateTime<Utc>>,
        call_id: &str,
    ) {
        let (samples, stats) = match media {
            Some(m) => {
                let samples = m.stop_recording().await.unwrap_or(0);
                let stats = m.stats();
                m.close().await;
                (samples, Some(stats))
            }
            None => (0, None),
        };
        let ended = Utc::now();
        let duration = answered
            .map(|a| (ended - a).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        let recording = match (self.sip.calls.context(), &self.recording) {
            (Some(ctx), Some(p)) => Some(
                p.strip_prefix(ctx.recordings.parent().unwrap_or(&ctx.recordings))
                    .unwrap_or(p)
                    .to_string_lossy()
                    .into_owned(),
            ),
            _ => None,
        };
        let cdr = json!({
            "start": started,
            "answer": answered,
            "end": ended,
            "duration_secs": duration,
            "codec": "PCMU",
            "packets_in": stats.as_ref().map(|s| s.packets_in),
            "packets_out": stats.as_ref().map(|s| s.packets_out),
            "bytes_in": stats.as_ref().map(|s| s.bytes_in),
            "bytes_out": stats.as_ref().map(|s| s.bytes_out),
            "lost": stats.as_ref().map(|s| s.lost),
            "jitter_ms": stats.as_ref().map(|s| s.jitter_ms),
            "ignored": stats.as_ref().map(|s| s.ignored),
            "recording": recording,
            "recording_secs": samples as f64 / 8000.0,
            "number": self.to,
            "caller": self.from,
            "trunk_id": self.trunk.id,
            "sip_status": sip_status,
            "sip_call_id": call_id,
        });
        let hangup = Step::note(
            "hangup",
            json!({ "cause": cause, "sip_status": sip_status, "cdr": cdr }),
        );
        let close = |reason| Step::Transition(Transition::Close { reason });
        let steps = match (answered.is_some(), cause) {
            (true, "rtp_timeout" | "bad_answer") => vec![hangup, close(CloseReason::Failed)],
            (true, _) => vec![
                hangup,
                Step::Transition(Transition::WrapUp),
                close(CloseReason::Completed),
            ],
            (false, "busy" | "no_answer") => vec![hangup, Step::Transition(Transition::Abandon)],
            (false, "api_hangup" | "shutdown") => vec![hangup, close(CloseReason::Terminated)],
            (false, _) => vec![hangup, close(CloseReason::Failed)],
        };
        self.record(&steps).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_challenge_with_and_without_qop() {
        let a = authorization(
            "Digest realm=\"trunk\", nonce=\"abc\", algorithm=MD5",
            "alice",
            "secret",
            "sip:+1@h",
        )
        .unwrap();
        let creds = digest::parse_authorization(&a).unwrap();
        let ha1 = digest::ha1(Algorithm::Md5, "alice", "trunk", "secret");
        assert_eq!(
            digest::expected_response(Algorithm::Md5, &ha1, "INVITE", &creds).unwrap(),
            creds.response
        );
        assert!(creds.qop.is_none());
        let b = authorization(
            "Digest realm=\"trunk\", qop=\"auth,auth-int\", nonce=\"n\", opaque=\"o\", algorithm=SHA-256",
            "alice",
            "secret",
            "sip:+1@h",
        )
        .unwrap();
        assert!(b.contains("qop=auth") && b.contains("opaque=\"o\""), "{b}");
        let creds = digest::parse_authorization(&b).unwrap();
        let ha1 = digest::ha1(Algorithm::Sha256, "alice", "trunk", "secret");
        assert_eq!(
            digest::expected_response(Algorithm::Sha256, &ha1, "INVITE", &creds).unwrap(),
            creds.response
        );
    }

    #[test]
    fn bad_challenges_are_refused() {
        for c in [
            "",
            "Basic realm=x",
            "Digest",
            "Digest realm=\"x\"",
            "Digest realm=\"x, nonce=\"y\"",
            "Digest realm=x, nonce=y, qop=auth-int",
            "Digest realm=x, nonce=y, algorithm=SHA-512",
        ] {
            assert!(authorization(c, "u", "p", "sip:x").is_none(), "{c}");
        }
    }
}
