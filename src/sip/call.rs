//! Inbound calls answered by us (UAS): INVITE, CANCEL, ACK, BYE.
//!
//! Who may call in: anyone to one of our numbers (`sip_numbers`, the
//! Request-URI user part as E.164: a trunk), or an account of the tenant
//! whose SIP domain is the Request-URI host, digest-authenticated as the
//! registrar does, to one of that tenant's numbers. Anything else is 404
//! (or 403), counted by the guard.
//!
//! A call is answered with 100, 180, then 200 with an SDP answer (PCMU or
//! PCMA as the offer prefers, telephone-event kept; 488 without a common
//! codec). Its media is an [`RtpSession`]: the remote address is learned
//! from RTP (symmetric), the call is recorded and RFC 4733 digits are
//! collected. The call is an interaction on the spine (voice, inbound) with
//! `ringing`, `answered`, `dtmf` and `hangup` events (the hangup carries the
//! cause and the CDR), routed to the number's queue once answered. The
//! call ends on the caller's BYE, on CANCEL before the answer (487), on RTP
//! inactivity or a missing ACK (we send BYE), or when the service stops.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rsipstack::sip::{Header, HeadersExt, Method, Request, SipMessage, StatusCode};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::TransactionEvent;
use rsipstack::transaction::{Transaction, make_tag};
use rsipstack::transport::{SipAddr, SipConnection};
use sea_orm::DbErr;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::numbers::{self, number};
use super::registrar::{self, Reply};
use super::sdp::{self, SdpError};
use super::uac::InDialog;
use super::{Sip, tenant_domain};
use crate::ids::{InteractionId, TenantId};
use crate::interactions::domain::{Channel, CloseReason, Direction, Transition};
use crate::interactions::service::{self as spine, NewInteraction, Step};
use crate::media::g711::Law;
use crate::media::session::{MediaEvent, RtpSession, SessionConfig};

#[path = "call_flow.rs"]
mod flow;

const ACTOR: &str = "sip";
/// How long we wait for the ACK of our 200 (64 * T1).
const ACK_TIMEOUT: Duration = Duration::from_secs(32);
/// How long a forwarded call may ring at the far end.
const FORWARD_RING: Duration = Duration::from_secs(60);

/// What calls need beyond the SIP endpoint (attached once the application
/// has built them).
pub struct CallContext {
    pub bus: crate::bus::Bus,
    pub acd: Arc<crate::acd::service::Acd>,
    /// `<data.dir>/recordings`.
    pub recordings: PathBuf,
    /// IVR flows for numbers that name one.
    pub flows: Arc<crate::ivr::service::Flows>,
    /// For flows' `http_get`/`http_post` (no redirects; private addresses
    /// only where webhooks may reach them).
    pub http: reqwest::Client,
}

/// What reaches a call's task from outside.
enum Signal {
    Cancel,
    Ack,
    Bye,
    /// The ACD ended the interaction (the agent hung up): we BYE the caller.
    Hangup,
    /// A re-INVITE from the caller (hold, unhold, a new address).
    ReInvite(Box<Transaction>),
    /// A REFER from the caller.
    Refer(Box<Transaction>),
    /// The agent's phone asked to transfer the caller to an outside number
    /// (blind transfer): the answer is the far end's status.
    Transfer {
        to: String,
        reply: tokio::sync::oneshot::Sender<Result<(), u16>>,
    },
    /// An attended transfer takes this call's forwarded leg (the consult
    /// call's far end); this call then ends.
    HandOver {
        tenant: TenantId,
        reply: tokio::sync::oneshot::Sender<Option<super::forward::Leg>>,
    },
    /// An attended transfer brings a leg (another call's far end) for the
    /// caller to be bridged to.
    Attach {
        leg: Box<super::forward::Leg>,
        reply: tokio::sync::oneshot::Sender<Result<(), u16>>,
    },
}

/// A caller's leg as the agent leg sees it (`agent_leg.rs`).
#[derive(Clone)]
pub(crate) struct CallerLeg {
    pub media: Arc<RtpSession>,
    pub call_id: String,
    /// The caller's E.164 number or URI.
    pub caller: String,
}

struct Live {
    local_tag: String,
    signals: mpsc::UnboundedSender<Signal>,
}

/// The calls of this node.
pub struct Calls {
    endpoint: EndpointInnerRef,
    /// Our SIP address (Via of our requests, Contact of our answers).
    local: SocketAddr,
    ctx: OnceLock<CallContext>,
    live: Mutex<HashMap<String, Live>>,
    /// Answered calls by interaction, for the agent leg to bridge to.
    callers: Mutex<HashMap<InteractionId, CallerLeg>>,
    /// Cancelled when the endpoint stops: every call hangs up.
    stop: CancellationToken,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls")
            .field("local", &self.local)
            .field("live", &self.live_count())
            .finish()
    }
}

impl Calls {
    pub fn new(endpoint: EndpointInnerRef, local: SocketAddr, stop: CancellationToken) -> Self {
        Self {
            endpoint,
            local,
            ctx: OnceLock::new(),
            live: Mutex::new(HashMap::new()),
            callers: Mutex::new(HashMap::new()),
            stop,
        }
    }

    /// Gives calls the bus, routing and the recordings folder. Until this
    /// is done INVITEs get 503.
    pub fn attach(&self, ctx: CallContext) {
        let _ = self.ctx.set(ctx);
    }

    /// Calls in progress on this node.
    pub fn live_count(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub(crate) fn context(&self) -> Option<&CallContext> {
        self.ctx.get()
    }

    /// The answered call of an interaction on this node.
    pub(crate) fn caller_leg(&self, i: InteractionId) -> Option<CallerLeg> {
        self.callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&i)
            .cloned()
    }

    /// Asks the call of an interaction to transfer its caller to `to`
    /// (E.164) through the tenant's trunk; the receiver gets the outcome.
    pub(crate) fn transfer_caller(
        &self,
        i: InteractionId,
        to: String,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<(), u16>>> {
        let c = self.caller_leg(i)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.signal(&c.call_id, None, Signal::Transfer { to, reply })
            .then_some(rx)
    }

    /// Asks the call whose dialog is `call_id` (our tag one of `tags`) to
    /// give up its forwarded leg (attended transfer, RFC 3891 Replaces).
    pub(crate) fn take_leg(
        &self,
        call_id: &str,
        tags: [&str; 2],
        tenant: TenantId,
    ) -> Option<tokio::sync::oneshot::Receiver<Option<super::forward::Leg>>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let m = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let l = m
            .get(call_id)
            .filter(|l| tags.contains(&l.local_tag.as_str()))?;
        l.signals.send(Signal::HandOver { tenant, reply }).ok()?;
        Some(rx)
    }

    /// Gives the call of an interaction a leg to bridge its caller to
    /// (attended transfer); the leg comes back if there is no such call.
    pub(crate) fn attach_leg(
        &self,
        i: InteractionId,
        leg: super::forward::Leg,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), u16>>, Box<super::forward::Leg>> {
        let Some(c) = self.caller_leg(i) else {
            return Err(Box::new(leg));
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        match self.try_signal(
            &c.call_id,
            None,
            Signal::Attach {
                leg: Box::new(leg),
                reply,
            },
        ) {
            Ok(()) => Ok(rx),
            Err(Signal::Attach { leg, .. }) => Err(leg),
            Err(_) => unreachable!("the signal given back is the one sent"),
        }
    }

    /// Asks the call of an interaction to hang up (BYE to the caller).
    pub(crate) fn hang_up_caller(&self, i: InteractionId) -> bool {
        let Some(c) = self.caller_leg(i) else {
            return false;
        };
        self.signal(&c.call_id, None, Signal::Hangup)
    }

    pub(crate) fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    fn signal(&self, call_id: &str, local_tag: Option<&str>, s: Signal) -> bool {
        self.try_signal(call_id, local_tag, s).is_ok()
    }

    /// Like `signal`, giving the signal back when no call took it.
    fn try_signal(&self, call_id: &str, local_tag: Option<&str>, s: Signal) -> Result<(), Signal> {
        let m = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(call_id) {
            Some(l) if local_tag.is_none_or(|t| t == l.local_tag) => {
                l.signals.send(s).map_err(|e| e.0)
            }
            _ => Err(s),
        }
    }

    fn remove(&self, call_id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(call_id);
        self.callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, c| c.call_id != call_id);
    }
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| h.value().trim())
}

fn user_of(uri: &rsipstack::sip::Uri) -> Option<String> {
    uri.auth.as_ref().map(|a| a.user.clone())
}

/// The URI inside a From/To/Contact value.
fn uri_in(value: &str) -> Option<rsipstack::sip::Uri> {
    rsipstack::sip::typed::Contact::parse(value)
        .ok()
        .map(|c| c.uri)
}

fn reply_of(status: StatusCode) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
    }
}

fn warning(r: Reply, text: &str) -> Reply {
    r.header("Warning", format!("399 switchboard \"{text}\""))
}

/// Who is calling which number.
struct Target {
    tenant: TenantId,
    number: number::Model,
    caller: String,
    account: Option<String>,
    /// The number forwards its calls: through this trunk, to this E.164.
    forward: Option<(super::trunks::trunk::Model, String)>,
    /// The greeting prompt's file.
    greeting: Option<PathBuf>,
}

/// Decides who may call in; `Err(reply)` is the refusal (or a challenge).
async fn resolve(
    sip: &Sip,
    req: &Request,
    from: SocketAddr,
) -> Result<Result<Target, Reply>, DbErr> {
    let host = req.uri.host_with_port.host.to_string().to_ascii_lowercase();
    let dialed = user_of(&req.uri).unwrap_or_default();
    let from_uri = header(req, "From").and_then(uri_in);
    if let Some(tenant) = registrar::tenant_of_domain(sip, &host).await? {
        // A call from one of the tenant's phones: it must authenticate.
        let realm = tenant_domain(&tenant.slug, &sip.settings.domain);
        let account = match registrar::authenticate(sip, req, from, &realm, tenant.id).await? {
            Ok(a) => a,
            Err(reply) => return Ok(Err(reply)),
        };
        let found = match numbers::normalise_dialed(&dialed, Some(&tenant.default_region)) {
            Some(e164) => numbers::find_by_number(&sip.db, &e164)
                .await?
                .filter(|n| n.tenant_id == tenant.id),
            None => None,
        };
        let number = match found {
            Some(n) => n,
            // An agent's phone calling out (a consult before an attended
            // transfer, say): through the tenant's first enabled trunk, to
            // a number of the tenant's own country that is not premium-rate.
            // Accounts without an agent may only call the tenant's numbers.
            None if account.agent_id.is_some() => {
                let to = match super::midcall::transfer_target(&dialed, &tenant.default_region) {
                    Ok(to) => to,
                    Err(why) => {
                        return Ok(Err(warning(reply_of(StatusCode::Forbidden), why)));
                    }
                };
                let Some(trunk) = first_trunk(&sip.db, tenant.id).await? else {
                    return Ok(Err(warning(
                        reply_of(StatusCode::TemporarilyUnavailable),
                        "the tenant has no trunk to call out through",
                    )));
                };
                number::Model {
                    id: uuid::Uuid::nil(),
                    tenant_id: tenant.id,
                    number: to.clone(),
                    queue_id: None,
                    flow: None,
                    created_at: Utc::now(),
                    forward_trunk_id: Some(trunk.id),
                    forward_to: Some(to),
                    greeting: None,
                }
            }
            None => {
                registrar::fail(sip, from, "no such number", &account.username, &realm);
                return Ok(Err(reply_of(StatusCode::NotFound)));
            }
        };
        return Ok(Ok(Target {
            tenant: tenant.id,
            number,
            caller: format!("sip:{}@{realm}", account.username),
            account: Some(account.username),
            forward: None,
            greeting: None,
        }));
    }
    let found = match numbers::normalise_dialed(&dialed, None) {
        Some(e164) => numbers::find_by_number(&sip.db, &e164).await?,
        None => None,
    };
    let Some(number) = found else {
        registrar::fail(sip, from, "no such number", &dialed, &host);
        return Ok(Err(reply_of(StatusCode::NotFound)));
    };
    let region = crate::iam::entity::tenant::Entity::find_by_id(number.tenant_id)
        .one(&sip.db)
        .await?
        .map(|t| t.default_region)
        .unwrap_or_default();
    let caller = from_uri
        .as_ref()
        .and_then(|u| {
            let user = user_of(u)?;
            numbers::normalise_dialed(&user, Some(&region))
        })
        .or_else(|| from_uri.as_ref().map(|u| u.to_string()))
        .unwrap_or_else(|| "unknown".into());
    Ok(Ok(Target {
        tenant: number.tenant_id,
        number,
        caller: caller.chars().take(200).collect(),
        account: None,
        forward: None,
        greeting: None,
    }))
}

use sea_orm::EntityTrait;

/// The trunk a tenant's own calls go out through: its first enabled one by
/// name.
async fn first_trunk(
    db: &sea_orm::DatabaseConnection,
    t: TenantId,
) -> Result<Option<super::trunks::trunk::Model>, DbErr> {
    use super::trunks::trunk;
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    trunk::Entity::find()
        .filter(trunk::Column::TenantId.eq(t))
        .filter(trunk::Column::Enabled.eq(true))
        .order_by_asc(trunk::Column::Name)
        .one(db)
        .await
}

async fn refuse(mut tx: Transaction, r: Reply) {
    if let Err(e) = tx.reply_with(r.status, r.headers, None).await {
        tracing::debug!(error = %e, "SIP reply not sent");
    }
}

/// Handles a new INVITE transaction (the whole call runs in here).
pub async fn invite(sip: Arc<Sip>, mut tx: Transaction, from: SocketAddr, transport: &'static str) {
    let Some(ctx) = sip.calls.ctx.get() else {
        return refuse(
            tx,
            reply_of(StatusCode::ServiceUnavailable).header("Retry-After", "5"),
        )
        .await;
    };
    // A re-INVITE (To has a tag) belongs to a call in progress.
    if tx
        .original
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .is_some()
    {
        return in_dialog(&sip, tx).await;
    }
    // Refusals go out at once, as the first and only answer; 100 Trying
    // only once the call is taken.
    let req = tx.original.clone();
    let mut target = match resolve(&sip, &req, from).await {
        Ok(Ok(t)) => t,
        Ok(Err(reply)) => return refuse(tx, reply).await,
        Err(e) => {
            tracing::error!(error = %e, "INVITE failed on the database");
            return refuse(
                tx,
                reply_of(StatusCode::ServerInternalError).header("Retry-After", "5"),
            )
            .await;
        }
    };
    let offer = match sdp::parse_offer(&req.body).and_then(|o| o.negotiate().map(|n| (o, n))) {
        Ok(x) => x,
        Err(SdpError::Malformed(why)) => {
            return refuse(
                tx,
                warning(reply_of(StatusCode::BadRequest), &format!("SDP: {why}")),
            )
            .await;
        }
        Err(SdpError::NotAcceptable(why)) => {
            return refuse(
                tx,
                warning(reply_of(StatusCode::NotAcceptableHere), why)
                    .header("Accept", "application/sdp"),
            )
            .await;
        }
    };
    let (offer, negotiated) = offer;
    if let Some(trunk_id) = target.number.forward_trunk_id {
        let trunk = super::trunks::find_trunk(&sip.db, target.tenant, trunk_id).await;
        match trunk {
            Ok(Some(tr)) if tr.enabled => {
                let dialed = target.number.number.clone();
                let to = target.number.forward_to.clone().unwrap_or(dialed);
                target.forward = Some((tr, to));
            }
            Ok(_) => {
                return refuse(
                    tx,
                    warning(
                        reply_of(StatusCode::TemporarilyUnavailable),
                        "the number's trunk is not available",
                    ),
                )
                .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "INVITE failed on the database");
                return refuse(
                    tx,
                    reply_of(StatusCode::ServerInternalError).header("Retry-After", "5"),
                )
                .await;
            }
        }
    }
    if let Some(g) = &target.number.greeting {
        target.greeting = ctx
            .recordings
            .parent()
            .and_then(|data| crate::prompts::path(data, target.tenant, g));
    }
    let _ = tx.send_trying().await;
    let s = &sip.settings;
    let media = RtpSession::start(SessionConfig {
        bind: s.rtp_bind,
        ports: s.rtp_port_min..=s.rtp_port_max,
        codec: negotiated.codec,
        telephone_event: negotiated.telephone_event,
        remote: offer.remote,
        inactivity: Duration::from_secs(s.rtp_timeout_secs),
        ..SessionConfig::default()
    })
    .await;
    let media = match media {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "no media session for a call");
            return refuse(
                tx,
                reply_of(StatusCode::ServiceUnavailable).header("Retry-After", "5"),
            )
            .await;
        }
    };
    let call = Call::new(
        sip.clone(),
        ctx,
        tx,
        req,
        from,
        transport,
        target,
        negotiated.codec,
        media,
    );
    call.run().await;
}

/// A request inside one of our inbound calls' dialogs (re-INVITE, REFER):
/// handed to the call, or 481.
pub async fn in_dialog(sip: &Sip, mut tx: Transaction) {
    let call_id = header(&tx.original, "Call-ID").unwrap_or("").to_owned();
    let tag = tx
        .original
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .map(|t| t.value().to_owned());
    let Some(tag) = tag else {
        let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
        return;
    };
    let signal = match tx.original.method {
        Method::Invite => Signal::ReInvite(Box::new(tx)),
        Method::Refer => Signal::Refer(Box::new(tx)),
        _ => {
            let _ = tx.reply(StatusCode::NotImplemented).await;
            return;
        }
    };
    if let Err(Signal::ReInvite(mut tx) | Signal::Refer(mut tx)) =
        sip.calls.try_signal(&call_id, Some(&tag), signal)
    {
        let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
    }
}

/// A BYE: ends the call it names (200), or 481.
pub async fn bye(sip: &Sip, mut tx: Transaction) {
    let call_id = header(&tx.original, "Call-ID").unwrap_or("").to_owned();
    let tag = tx
        .original
        .to_header()
        .ok()
        .and_then(|t| t.tag().ok().flatten())
        .map(|t| t.value().to_owned());
    let status = if tag.is_some() && sip.calls.signal(&call_id, tag.as_deref(), Signal::Bye) {
        StatusCode::OK
    } else {
        StatusCode::CallTransactionDoesNotExist
    };
    if let Err(e) = tx.reply(status).await {
        tracing::debug!(error = %e, "BYE reply not sent");
    }
}

struct Call<'a> {
    sip: Arc<Sip>,
    ctx: &'a CallContext,
    /// The INVITE with our To tag.
    invite: Request,
    call_id: String,
    from: SocketAddr,
    transport: &'static str,
    connection: Option<SipConnection>,
    responder: rsipstack::transaction::transaction::TransactionEventSender,
    pump: Option<tokio::task::JoinHandle<()>>,
    signals: mpsc::UnboundedReceiver<Signal>,
    target: Target,
    codec: Law,
    media: Arc<RtpSession>,
    interaction: Option<InteractionId>,
    routed: bool,
    started: DateTime<Utc>,
    answered: Option<DateTime<Utc>>,
    recording: Option<PathBuf>,
    /// How we present ourselves in SDP and Contact.
    us: super::midcall::LegSdp,
    acked: bool,
    /// The forwarded leg, once answered, and the bridge to it.
    leg: Option<super::forward::Leg>,
    bridge: Option<crate::media::bridge::Bridge>,
    /// The forwarded leg's refusal status, if it had one.
    forward_status: Option<u16>,
    /// The interaction was connected (forwarded and answered).
    connected: bool,
    /// The ACD ended the interaction while a transfer was ringing.
    hangup_pending: bool,
    /// The caller hung up while a transfer was ringing.
    caller_left: bool,
    /// The media events, once an IVR flow took them.
    flow_events: Option<mpsc::Receiver<MediaEvent>>,
    /// Hold music and position announcements while queued by a flow.
    hold_task: Option<tokio::task::JoinHandle<()>>,
}

impl<'a> Call<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        sip: Arc<Sip>,
        ctx: &'a CallContext,
        mut tx: Transaction,
        mut invite: Request,
        from: SocketAddr,
        transport: &'static str,
        target: Target,
        codec: Law,
        media: RtpSession,
    ) -> Self {
        let tag = make_tag();
        let local_tag = tag.value().to_owned();
        if let Ok(to) = invite.to_header() {
            let tagged = to.clone().with_tag(tag);
            invite.headers.unique_push(tagged.into());
        }
        let call_id = header(&invite, "Call-ID").unwrap_or("").to_owned();
        let (signals_tx, signals) = mpsc::unbounded_channel();
        sip.calls
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                call_id.clone(),
                Live {
                    local_tag,
                    signals: signals_tx.clone(),
                },
            );
        let responder = tx.tu_sender.clone();
        let connection = tx.connection.clone();
        let us = {
            let s = &sip.settings;
            let local = media.local_addr();
            let ip = s.rtp_advertise.unwrap_or_else(|| {
                if !local.ip().is_unspecified() {
                    local.ip()
                } else if !sip.calls.local.ip().is_unspecified() {
                    sip.calls.local.ip()
                } else {
                    IpAddr::from([127, 0, 0, 1])
                }
            });
            let contact_user = target.number.number.trim_start_matches('+').to_owned();
            let contact_host = if sip.calls.local.ip().is_unspecified() {
                SocketAddr::new(ip, sip.calls.local.port())
            } else {
                sip.calls.local
            };
            super::midcall::LegSdp {
                media: SocketAddr::new(ip, local.port()),
                contact: format!("<sip:{contact_user}@{contact_host};transport={transport}>"),
                session_id: rand::random::<u32>() as u64,
            }
        };
        // The transaction is driven by its own task: CANCEL and ACK come
        // out of it, our responses go in through `responder`.
        let pump = tokio::spawn(async move {
            while let Some(msg) = tx.receive().await {
                if let SipMessage::Request(r) = msg {
                    let s = match r.method {
                        Method::Cancel => Signal::Cancel,
                        Method::Ack => Signal::Ack,
                        _ => continue,
                    };
                    if signals_tx.send(s).is_err() {
                        break;
                    }
                }
            }
        });
        Self {
            sip,
            ctx,
            invite,
            call_id,
            from,
            transport,
            connection,
            responder,
            pump: Some(pump),
            signals,
            target,
            codec,
            media: Arc::new(media),
            interaction: None,
            routed: false,
            started: Utc::now(),
            answered: None,
            recording: None,
            us,
            acked: false,
            leg: None,
            bridge: None,
            forward_status: None,
            connected: false,
            hangup_pending: false,
            caller_left: false,
            flow_events: None,
            hold_task: None,
        }
    }

    fn respond(&self, status: StatusCode, headers: Vec<Header>, body: Option<Vec<u8>>) {
        let mut resp = self
            .sip
            .calls
            .endpoint
            .make_response(&self.invite, status, body);
        resp.headers.extend(headers);
        if self
            .responder
            .send(TransactionEvent::Respond(resp))
            .is_err()
        {
            tracing::debug!(call_id = %self.call_id, "the INVITE transaction is gone");
        }
    }

    /// Several steps in one write (see `spine::record`).
    async fn record(&self, steps: &[Step]) {
        let Some(id) = self.interaction else { return };
        if let Err(e) = spine::record(
            &self.sip.db,
            &self.ctx.bus,
            self.target.tenant,
            id,
            steps,
            Some(ACTOR.into()),
        )
        .await
        {
            tracing::warn!(error = %e, interaction_id = %id, "call events not recorded");
        }
    }

    async fn event(&self, kind: &str, data: Value) {
        let Some(id) = self.interaction else { return };
        if let Err(e) = spine::annotate(
            &self.sip.db,
            &self.ctx.bus,
            self.target.tenant,
            id,
            kind.into(),
            data,
            Some(ACTOR.into()),
        )
        .await
        {
            tracing::warn!(error = %e, interaction_id = %id, kind, "call event not recorded");
        }
    }

    async fn run(mut self) {
        let t = self.target.tenant;
        let mut attributes = serde_json::Map::new();
        attributes.insert("sip_call_id".into(), json!(self.call_id));
        attributes.insert("sip_source".into(), json!(self.from.to_string()));
        attributes.insert("sip_transport".into(), json!(self.transport));
        if let Some(a) = &self.target.account {
            attributes.insert("sip_account".into(), json!(a));
        }
        // Created, ringing (and forwarding) in one write.
        let forward_now = self.target.forward.is_some() && self.target.greeting.is_none();
        let mut first = vec![Step::note(
            "ringing",
            json!({ "number": self.target.number.number }),
        )];
        if forward_now && let Some((tr, to)) = &self.target.forward {
            first.push(Step::note(
                "forwarding",
                json!({ "to": to, "trunk_id": tr.id }),
            ));
        }
        let created = spine::create_with(
            &self.sip.db,
            &self.ctx.bus,
            t,
            if self.target.number.id.is_nil() {
                // An agent's phone calling out.
                NewInteraction {
                    channel: Channel::Voice,
                    direction: Direction::Outbound,
                    customer_address: Some(self.target.number.number.clone()),
                    subject: Some(self.target.caller.clone()),
                    attributes,
                    contact_id: None,
                }
            } else {
                NewInteraction {
                    channel: Channel::Voice,
                    direction: Direction::Inbound,
                    customer_address: Some(self.target.caller.clone()),
                    subject: Some(self.target.number.number.clone()),
                    attributes,
                    contact_id: None,
                }
            },
            &first,
            Some(ACTOR.into()),
        )
        .await;
        match created {
            Ok((m, _)) => self.interaction = Some(m.id),
            Err(e) => {
                tracing::error!(error = %e, "no interaction for a call");
                self.respond(StatusCode::ServerInternalError, vec![], None);
                return self.close_media_and_leave().await;
            }
        }
        self.respond(StatusCode::Ringing, vec![], None);

        if forward_now {
            // Forwarded at once: the far end's ringing, early media and
            // answer are the caller's.
            if let Err(cause) = self.forward(false).await {
                return self.finish(cause).await;
            }
        } else {
            // Ring, unless the caller gives up first.
            let ring = tokio::time::sleep(Duration::from_millis(self.sip.settings.answer_after_ms));
            tokio::pin!(ring);
            loop {
                tokio::select! {
                    _ = &mut ring => break,
                    s = self.signals.recv() => match s {
                        Some(Signal::Cancel) => {
                            self.respond(StatusCode::RequestTerminated, vec![], None);
                            return self.finish("cancel").await;
                        }
                        Some(other) => self.early_signal(other).await,
                        None => return self.finish("failed").await,
                    },
                    _ = self.sip.calls.stop.cancelled() => {
                        self.respond(StatusCode::ServiceUnavailable, vec![], None);
                        return self.finish("shutdown").await;
                    }
                }
            }
            self.respond_sdp(StatusCode::OK);
            self.answered().await;
            if let Err(cause) = self.greet().await {
                return self.finish(cause).await;
            }
            if self.target.forward.is_some() {
                if let Err(cause) = self.forward(true).await {
                    if cause != "caller_bye" {
                        self.send_bye().await;
                    }
                    return self.finish(cause).await;
                }
            } else if let Err(cause) = self.enter().await {
                return self.finish(cause).await;
            }
        }

        let ack_deadline = tokio::time::sleep(ACK_TIMEOUT);
        tokio::pin!(ack_deadline);
        let mut events = self.flow_events.take().or_else(|| self.media.take_events());
        let mut leg_events = self.leg.as_mut().and_then(|l| l.events.take());
        let mut leg_in = self.leg.as_mut().map(|l| {
            let (_, dead) = mpsc::unbounded_channel();
            std::mem::replace(&mut l.in_dialog, dead)
        });
        let cause = loop {
            tokio::select! {
                s = self.signals.recv() => match s {
                    Some(Signal::Ack) => self.acked = true,
                    Some(Signal::Bye) => {
                        if let Some(l) = &self.leg {
                            l.hang_up(&self.sip).await;
                        }
                        break "caller_bye";
                    }
                    Some(Signal::Hangup) => {
                        self.send_bye().await;
                        break "agent_hangup";
                    }
                    Some(Signal::Cancel) => {}
                    Some(Signal::ReInvite(tx)) => self.caller_reinvite(*tx).await,
                    Some(Signal::Refer(tx)) => self.refuse_refer(*tx).await,
                    Some(Signal::HandOver { tenant, reply }) => {
                        let ours = tenant == self.target.tenant && self.target.account.is_some() && self.connected;
                        match self.leg.take().filter(|_| ours) {
                            Some(mut l) => {
                                if let Some(r) = leg_in.take() {
                                    l.in_dialog = r;
                                }
                                l.events = leg_events.take();
                                self.bridge = None;
                                let to = l.to.clone();
                                if reply.send(Some(l)).is_err() {
                                    tracing::warn!("an attended transfer's leg was dropped");
                                }
                                self.event("transferred", json!({ "to": to, "attended": true })).await;
                                self.send_bye().await;
                                break "transferred";
                            }
                            None => {
                                let _ = reply.send(None);
                            }
                        }
                    }
                    Some(Signal::Attach { leg, reply }) => {
                        let outcome = self.adopt(*leg).await;
                        if outcome.is_ok() {
                            leg_events = self.leg.as_mut().and_then(|l| l.events.take());
                            leg_in = self.leg.as_mut().map(|l| {
                                let (_, dead) = mpsc::unbounded_channel();
                                std::mem::replace(&mut l.in_dialog, dead)
                            });
                        }
                        let _ = reply.send(outcome);
                    }
                    Some(Signal::Transfer { to, reply }) => {
                        let outcome = self.transfer(to).await;
                        if outcome.is_ok() {
                            leg_events = self.leg.as_mut().and_then(|l| l.events.take());
                            leg_in = self.leg.as_mut().map(|l| {
                                let (_, dead) = mpsc::unbounded_channel();
                                std::mem::replace(&mut l.in_dialog, dead)
                            });
                        }
                        let _ = reply.send(outcome);
                        if self.caller_left {
                            break "caller_bye";
                        }
                        if outcome.is_err() && self.hangup_pending {
                            self.send_bye().await;
                            break "agent_hangup";
                        }
                    }
                    None => break "failed",
                },
                m = async { match leg_in.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => match m {
                    Some(InDialog::Bye) | None => {
                        self.send_bye().await;
                        break "callee_bye";
                    }
                    Some(InDialog::ReInvite(tx)) => {
                        if let Some(l) = &self.leg {
                            let us = self.leg_sdp(l);
                            let change = super::midcall::answer_reinvite(*tx, &l.media, &us).await;
                            if let Some(kind) = change.event() {
                                self.event(kind, json!({ "by": "callee" })).await;
                            }
                        }
                    }
                    Some(InDialog::Refer(tx)) => {
                        super::midcall::refuse(*tx, StatusCode::Forbidden, "transfers are not taken from the called party").await;
                    }
                },
                ev = async { match events.as_mut() { Some(e) => e.recv().await, None => std::future::pending().await } } => match ev {
                    Some(MediaEvent::Dtmf { digit, source }) => {
                        self.event("dtmf", json!({ "digit": digit.to_string(), "source": format!("{source:?}").to_lowercase() })).await;
                    }
                    Some(MediaEvent::Inactive) => {
                        self.hang_up_both().await;
                        break "rtp_timeout";
                    }
                    Some(_) => {}
                    None => events = None,
                },
                ev = async { match leg_events.as_mut() { Some(e) => e.recv().await, None => std::future::pending().await } } => match ev {
                    Some(MediaEvent::Inactive) => {
                        self.hang_up_both().await;
                        break "rtp_timeout";
                    }
                    Some(_) => {}
                    None => leg_events = None,
                },
                _ = &mut ack_deadline, if !self.acked => {
                    self.hang_up_both().await;
                    break "ack_timeout";
                }
                _ = self.sip.calls.stop.cancelled() => {
                    self.hang_up_both().await;
                    break "shutdown";
                }
            }
        };
        self.finish(cause).await;
    }

    /// A signal before the answer.
    async fn early_signal(&mut self, s: Signal) {
        match s {
            Signal::Ack => self.acked = true,
            Signal::ReInvite(tx) => {
                super::midcall::refuse(
                    *tx,
                    StatusCode::RequestPending,
                    "the call is not answered yet",
                )
                .await
            }
            Signal::Refer(tx) => self.refuse_refer(*tx).await,
            Signal::Transfer { reply, .. } => {
                let _ = reply.send(Err(491));
            }
            Signal::HandOver { reply, .. } => {
                let _ = reply.send(None);
            }
            Signal::Attach { leg, reply } => {
                let _ = reply.send(Err(491));
                leg.hang_up(&self.sip).await;
                leg.close(&self.sip).await;
            }
            // The agent left while a transfer rings: if it fails, the
            // caller is hung up.
            Signal::Hangup => self.hangup_pending = true,
            Signal::Cancel | Signal::Bye => {}
        }
    }

    /// The caller's re-INVITE (hold, unhold, a new address), answered and
    /// put on the timeline.
    async fn caller_reinvite(&self, tx: Transaction) {
        let change = super::midcall::answer_reinvite(tx, &self.media, &self.us).await;
        if let Some(kind) = change.event() {
            self.event(kind, json!({ "by": "caller" })).await;
        }
    }

    /// A caller may not make us call elsewhere (no toll-fraud path).
    async fn refuse_refer(&self, tx: Transaction) {
        super::midcall::refuse(
            tx,
            StatusCode::Forbidden,
            "transfers are not taken from callers",
        )
        .await;
    }

    async fn hang_up_both(&self) {
        if let Some(l) = &self.leg {
            l.hang_up(&self.sip).await;
        }
        self.send_bye().await;
    }

    /// How we present ourselves on the forwarded leg.
    fn leg_sdp(&self, l: &super::forward::Leg) -> super::midcall::LegSdp {
        let local = l.media.local_addr();
        let ip = if local.ip().is_unspecified() {
            self.us.media.ip()
        } else {
            local.ip()
        };
        super::midcall::LegSdp {
            media: SocketAddr::new(ip, local.port()),
            contact: format!(
                "<sip:{}@{}>",
                self.target.number.number.trim_start_matches('+'),
                self.sip.uac.advertised(self.sip.settings.rtp_advertise)
            ),
            session_id: self.us.session_id,
        }
    }

    /// Sends `status` (183 or 200) with our SDP answer.
    fn respond_sdp(&self, status: StatusCode) {
        let negotiated = sdp::Negotiated {
            codec: self.codec,
            telephone_event: self.media_te(),
            ptime: 20,
            direction: sdp::Direction::SendRecv,
        };
        let body = sdp::answer(self.us.media, &negotiated, self.us.session_id);
        self.respond(
            status,
            vec![
                Header::Other("Contact".into(), self.us.contact.clone()),
                Header::Other("Content-Type".into(), "application/sdp".into()),
                Header::Other(
                    "Allow".into(),
                    "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER".into(),
                ),
            ],
            Some(body.into_bytes()),
        );
    }

    /// After our 200: the `answered` event and the recording.
    async fn answered(&mut self) {
        self.answered_with(Vec::new()).await;
    }

    /// `answered`, with more steps recorded in the same write.
    async fn answered_with(&mut self, more: Vec<Step>) {
        self.answered = Some(Utc::now());
        let codec = match self.codec {
            Law::Ulaw => "PCMU",
            Law::Alaw => "PCMA",
        };
        let local = self.media.local_addr();
        let mut steps = vec![Step::note(
            "answered",
            json!({ "codec": codec, "rtp": local.to_string() }),
        )];
        steps.extend(more);
        self.record(&steps).await;
        if self.sip.settings.record_calls
            && let Some(id) = self.interaction
        {
            let dir = self.ctx.recordings.join(self.target.tenant.to_string());
            let path = dir.join(format!("{id}.wav"));
            let started = std::fs::create_dir_all(&dir)
                .map_err(crate::media::session::SessionError::from)
                .and_then(|_| {
                    self.media
                        .start_recording(&path, self.sip.settings.record_layout.wav())
                });
            match started {
                Ok(()) => self.recording = Some(path),
                Err(e) => tracing::warn!(error = %e, "call not recorded"),
            }
        }
    }

    /// Plays the number's greeting, if it has one. A forwarded call waits
    /// for its end (`Err` if the caller left meanwhile); other calls go on
    /// while it plays (reaching an agent stops it).
    async fn greet(&mut self) -> Result<(), &'static str> {
        let Some(path) = self.target.greeting.clone() else {
            return Ok(());
        };
        let prompt = match self.sip.prompts.get(&path).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "greeting not played");
                self.event(
                    "prompt_failed",
                    json!({ "prompt": self.target.number.greeting, "error": e.to_string() }),
                )
                .await;
                return Ok(());
            }
        };
        let ms = prompt.duration_ms();
        let playback = match self.media.play(prompt) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "greeting not played");
                return Ok(());
            }
        };
        self.event(
            "prompt",
            json!({ "prompt": self.target.number.greeting, "duration_ms": ms }),
        )
        .await;
        if self.target.forward.is_none() {
            return Ok(());
        }
        let done = playback.wait();
        tokio::pin!(done);
        loop {
            tokio::select! {
                _ = &mut done => return Ok(()),
                s = self.signals.recv() => match s {
                    Some(Signal::Bye) => return Err("caller_bye"),
                    Some(Signal::ReInvite(tx)) => self.caller_reinvite(*tx).await,
                    Some(other) => self.early_signal(other).await,
                    None => return Err("failed"),
                },
                _ = self.sip.calls.stop.cancelled() => return Err("shutdown"),
            }
        }
    }

    /// Forwards the call through the number's trunk. Before our answer
    /// (`answered` false) the far end's progress is relayed and its answer
    /// is ours; after it (a greeting played) we only wait for theirs.
    async fn forward(&mut self, answered: bool) -> Result<(), &'static str> {
        use super::forward::{Dialing, NotPlaced, Progress};
        let Some((trunk, to)) = self.target.forward.clone() else {
            return Err("failed");
        };
        // The caller's number when it is one, else the trunk's caller id.
        let from = if self.target.caller.starts_with('+') {
            self.target.caller.clone()
        } else {
            trunk.caller_id.clone()
        };
        let mut dialing =
            match Dialing::start(self.sip.clone(), &trunk, &to, &from, self.codec).await {
                Ok(d) => d,
                Err(NotPlaced(status, cause)) => {
                    if !answered {
                        self.respond(status, vec![], None);
                    }
                    return Err(cause);
                }
            };
        if answered {
            // (Recorded with the interaction's creation otherwise.)
            self.event(
                "forwarding",
                json!({ "to": to, "trunk_id": trunk.id, "sip_call_id": dialing.call_id() }),
            )
            .await;
        }
        let deadline = tokio::time::sleep(FORWARD_RING);
        tokio::pin!(deadline);
        let stop = self.sip.calls.stop.clone();
        loop {
            tokio::select! {
                p = dialing.next() => match p {
                    Progress::Ringing => {}
                    Progress::Early(remote) => {
                        // Once answered (a greeting, a transfer) the caller
                        // keeps what it hears until the far end answers.
                        if self.bridge.is_none() && !answered {
                            dialing.media.set_remote(Some(remote));
                            self.bridge = Some(crate::media::bridge::Bridge::connect(&self.media, &dialing.media));
                            if !answered {
                                self.respond_sdp(StatusCode::SessionProgress);
                            }
                            self.event("early_media", json!({ "remote_rtp": remote.to_string() })).await;
                        }
                    }
                    Progress::Answered(dialog, remote) => {
                        dialing.media.set_remote(Some(remote));
                        if self.bridge.is_none() {
                            self.bridge = Some(crate::media::bridge::Bridge::connect(&self.media, &dialing.media));
                        }
                        let leg = dialing.answered(*dialog);
                        let call_id = leg.call_id.clone();
                        self.leg = Some(leg);
                        self.connected = true;
                        let steps = vec![
                            Step::Transition(Transition::Connect { agent_id: None }),
                            Step::note("bridged", json!({ "to": to, "trunk_id": trunk.id, "remote_rtp": remote.to_string(), "sip_call_id": call_id })),
                        ];
                        if answered {
                            self.record(&steps).await;
                        } else {
                            self.respond_sdp(StatusCode::OK);
                            self.answered_with(steps).await;
                        }
                        return Ok(());
                    }
                    Progress::Failed(status, cause, code) => {
                        self.bridge = None;
                        self.forward_status = code;
                        dialing.media.close().await;
                        if !answered {
                            self.respond(status, vec![], None);
                        }
                        return Err(cause);
                    }
                },
                s = self.signals.recv() => match s {
                    Some(Signal::Cancel) if !answered => {
                        self.bridge = None;
                        self.respond(StatusCode::RequestTerminated, vec![], None);
                        dialing.cancel().await;
                        return Err("cancel");
                    }
                    Some(Signal::Bye) => {
                        self.bridge = None;
                        self.caller_left = true;
                        dialing.cancel().await;
                        return Err("caller_bye");
                    }
                    Some(other) => self.early_signal(other).await,
                    None => {
                        self.bridge = None;
                        dialing.cancel().await;
                        return Err("failed");
                    }
                },
                _ = &mut deadline => {
                    self.bridge = None;
                    dialing.cancel().await;
                    if !answered {
                        self.respond(StatusCode::TemporarilyUnavailable, vec![], None);
                    }
                    return Err("no_answer");
                }
                _ = stop.cancelled() => {
                    self.bridge = None;
                    dialing.cancel().await;
                    if !answered {
                        self.respond(StatusCode::ServiceUnavailable, vec![], None);
                    }
                    return Err("shutdown");
                }
            }
        }
    }

    /// Blind transfer of an answered, routed call to `to` through the
    /// tenant's first enabled trunk. The attempt is an outbound voice
    /// interaction of its own (`transferred_from` the original); when it is
    /// answered the caller is bridged to it, the original records the
    /// transfer, and the agent's leg ends. Otherwise the caller stays with
    /// the agent and the far end's status is the answer.
    async fn transfer(&mut self, to: String) -> Result<(), u16> {
        let Some(original) = self.interaction else {
            return Err(481);
        };
        if self.leg.is_some() {
            return Err(403);
        }
        let t = self.target.tenant;
        let trunk = first_trunk(&self.sip.db, t)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "no trunk for a transfer");
                500u16
            })?
            .ok_or(503u16)?;
        let m = self.transfer_interaction(original, &to).await?;
        self.target.forward = Some((trunk, to.clone()));
        self.interaction = Some(m);
        self.forward_status = None;
        match self.forward(true).await {
            Ok(()) => {
                self.transferred(original, &to, m).await;
                Ok(())
            }
            Err(cause) => {
                let status = self.forward_status.unwrap_or(match cause {
                    "busy" => 486,
                    "no_answer" => 480,
                    _ => 503,
                });
                let _ = spine::annotate(
                    &self.sip.db,
                    &self.ctx.bus,
                    t,
                    m,
                    "hangup".into(),
                    json!({ "cause": cause, "sip_status": status }),
                    Some(ACTOR.into()),
                )
                .await;
                let _ = spine::apply(
                    &self.sip.db,
                    &self.ctx.bus,
                    t,
                    m,
                    Transition::Close {
                        reason: CloseReason::Failed,
                    },
                    Some(ACTOR.into()),
                )
                .await;
                self.interaction = Some(original);
                self.target.forward = None;
                self.forward_status = None;
                Err(status)
            }
        }
    }

    /// Attended transfer: bridges the caller to `leg` (the far end of the
    /// agent's consult call), as a new interaction like a blind transfer's.
    async fn adopt(&mut self, leg: super::forward::Leg) -> Result<(), u16> {
        let Some(original) = self.interaction else {
            return Err(481);
        };
        if self.leg.is_some() {
            leg.hang_up(&self.sip).await;
            leg.close(&self.sip).await;
            return Err(403);
        }
        let to = leg.to.clone();
        let m = match self.transfer_interaction(original, &to).await {
            Ok(m) => m,
            Err(e) => {
                leg.hang_up(&self.sip).await;
                leg.close(&self.sip).await;
                return Err(e);
            }
        };
        self.interaction = Some(m);
        let trunk = super::trunks::find_trunk(&self.sip.db, self.target.tenant, leg.trunk_id)
            .await
            .ok()
            .flatten();
        if let Some(tr) = trunk {
            self.target.forward = Some((tr, to.clone()));
        }
        self.bridge = Some(crate::media::bridge::Bridge::connect(
            &self.media,
            &leg.media,
        ));
        let call_id = leg.call_id.clone();
        self.leg = Some(leg);
        self.connected = true;
        let _ = spine::apply(
            &self.sip.db,
            &self.ctx.bus,
            self.target.tenant,
            m,
            Transition::Connect { agent_id: None },
            Some(ACTOR.into()),
        )
        .await;
        self.event(
            "bridged",
            json!({ "to": to, "attended": true, "sip_call_id": call_id }),
        )
        .await;
        self.transferred(original, &to, m).await;
        Ok(())
    }

    /// The interaction a transfer of `original` to `to` becomes.
    async fn transfer_interaction(
        &self,
        original: InteractionId,
        to: &str,
    ) -> Result<InteractionId, u16> {
        let mut attributes = serde_json::Map::new();
        attributes.insert("transferred_from".into(), json!(original));
        attributes.insert("sip_call_id".into(), json!(self.call_id));
        spine::create(
            &self.sip.db,
            &self.ctx.bus,
            self.target.tenant,
            NewInteraction {
                channel: Channel::Voice,
                direction: Direction::Outbound,
                customer_address: Some(to.to_owned()),
                subject: Some(self.target.caller.clone()),
                attributes,
                contact_id: None,
            },
            Some(ACTOR.into()),
        )
        .await
        .map(|(m, _)| m.id)
        .map_err(|e| {
            tracing::error!(error = %e, "no interaction for a transfer");
            500u16
        })
    }

    /// The caller now talks to `to` (interaction `m`): the original
    /// interaction records the transfer and no longer owns the call.
    async fn transferred(&mut self, original: InteractionId, to: &str, m: InteractionId) {
        let t = self.target.tenant;
        self.sip
            .calls
            .callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&original);
        self.routed = false;
        let moved = spine::apply(
            &self.sip.db,
            &self.ctx.bus,
            t,
            original,
            Transition::Transfer {
                target: crate::interactions::domain::TransferTarget::External {
                    address: to.to_owned(),
                },
            },
            Some(ACTOR.into()),
        )
        .await;
        if let Err(e) = moved {
            // The agent already hung up: the transfer is still on record.
            tracing::debug!(error = %e, "transfer recorded as an event");
            let _ = spine::annotate(
                &self.sip.db,
                &self.ctx.bus,
                t,
                original,
                "transferred".into(),
                json!({ "to": to, "interaction_id": m }),
                Some(ACTOR.into()),
            )
            .await;
        }
    }

    /// The number's entry point: its queue or its flow (`Err`: the call
    /// ended in the flow, with this cause).
    async fn enter(&mut self) -> Result<(), &'static str> {
        let Some(id) = self.interaction else {
            return Ok(());
        };
        self.sip
            .calls
            .callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                CallerLeg {
                    media: self.media.clone(),
                    call_id: self.call_id.clone(),
                    caller: self.target.caller.clone(),
                },
            );
        let t = self.target.tenant;
        if let Some(q) = self.target.number.queue_id {
            match self
                .ctx
                .acd
                .route(t, id, q, 0, false, Some(ACTOR.into()))
                .await
            {
                Ok(_) => self.routed = true,
                Err(e) => tracing::warn!(error = %e, interaction_id = %id, "call not routed"),
            }
        } else if let Some(flow) = self.target.number.flow.clone() {
            let r = spine::apply(
                &self.sip.db,
                &self.ctx.bus,
                t,
                id,
                Transition::EnterFlow { flow: flow.clone() },
                Some(ACTOR.into()),
            )
            .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, interaction_id = %id, "call did not enter its flow");
            }
            return self.run_flow(&flow).await;
        }
        Ok(())
    }

    fn media_te(&self) -> Option<u8> {
        sdp::parse_offer(&self.invite.body)
            .ok()
            .and_then(|o| o.negotiate().ok())
            .and_then(|n| n.telephone_event)
    }

    /// Ends the call from our side: BYE in the dialog the INVITE made.
    async fn send_bye(&self) {
        let their_from = header(&self.invite, "From").unwrap_or("").to_owned();
        let our_to = self
            .invite
            .to_header()
            .map(|h| h.value().to_owned())
            .unwrap_or_default();
        let target = header(&self.invite, "Contact")
            .and_then(uri_in)
            .or_else(|| uri_in(&their_from))
            .map(|u| u.to_string());
        let Some(target) = target else { return };
        let via_host = if self.sip.calls.local.ip().is_unspecified() {
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), self.sip.calls.local.port())
        } else {
            self.sip.calls.local
        };
        let text = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/{tp} {via_host};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\nFrom: {our_to}\r\nTo: {their_from}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nUser-Agent: Switchboard\r\nContent-Length: 0\r\n\r\n",
            tp = self.transport.to_ascii_uppercase(),
            b = uuid::Uuid::new_v4().simple(),
            cid = self.call_id,
        );
        let Ok(SipMessage::Request(req)) = SipMessage::try_from(text.as_str()) else {
            tracing::warn!(call_id = %self.call_id, "could not build a BYE");
            return;
        };
        let Ok(key) = TransactionKey::from_request(&req, TransactionRole::Client) else {
            return;
        };
        let mut tx = Transaction::new_client(
            key,
            req,
            self.sip.calls.endpoint.clone(),
            self.connection.clone(),
        );
        let mut dest = SipAddr::from(self.from);
        dest.r#type = Some(match self.transport {
            "tcp" => rsipstack::sip::Transport::Tcp,
            "tls" => rsipstack::sip::Transport::Tls,
            "ws" => rsipstack::sip::Transport::Ws,
            _ => rsipstack::sip::Transport::Udp,
        });
        tx.destination = Some(dest);
        if let Err(e) = tx.send().await {
            tracing::debug!(error = %e, "BYE not sent");
            return;
        }
        // Wait a little for the answer (UDP retransmits meanwhile).
        let _ = tokio::time::timeout(Duration::from_secs(4), async {
            while let Some(m) = tx.receive().await {
                if let SipMessage::Response(r) = m
                    && r.status_code.kind() != rsipstack::sip::StatusCodeKind::Provisional
                {
                    break;
                }
            }
        })
        .await;
    }

    async fn close_media_and_leave(&mut self) {
        let _ = self.media.stop_recording().await;
        self.media.close().await;
        self.sip.calls.remove(&self.call_id);
        if let Some(p) = self.pump.take() {
            p.abort();
        }
    }

    async fn finish(mut self, cause: &str) {
        if let Some(h) = self.hold_task.take() {
            h.abort();
        }
        self.bridge = None;
        let samples = self.media.stop_recording().await.unwrap_or(0);
        let stats = self.media.stats();
        self.media.close().await;
        let forwarded = match self.leg.take() {
            Some(l) => {
                let st = l.close(&self.sip).await;
                Some(json!({
                    "to": l.to,
                    "trunk_id": l.trunk_id,
                    "sip_call_id": l.call_id,
                    "packets_in": st.packets_in,
                    "packets_out": st.packets_out,
                    "bytes_in": st.bytes_in,
                    "bytes_out": st.bytes_out,
                    "lost": st.lost,
                    "jitter_ms": st.jitter_ms,
                }))
            }
            None => self.target.forward.as_ref().map(|(tr, to)| {
                json!({ "to": to, "trunk_id": tr.id, "sip_status": self.forward_status })
            }),
        };
        self.sip.calls.remove(&self.call_id);
        let ended = Utc::now();
        // Let the transaction send what is queued (487, 2xx retransmits) before it goes.
        if let Some(p) = self.pump.take() {
            let abort = p.abort_handle();
            if tokio::time::timeout(Duration::from_millis(200), p)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let duration = self
            .answered
            .map(|a| (ended - a).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        let recording = self.recording.as_ref().map(|p| {
            p.strip_prefix(self.ctx.recordings.parent().unwrap_or(&self.ctx.recordings))
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        });
        let cdr = json!({
            "start": self.started,
            "answer": self.answered,
            "end": ended,
            "duration_secs": duration,
            "codec": match self.codec { Law::Ulaw => "PCMU", Law::Alaw => "PCMA" },
            "packets_in": stats.packets_in,
            "packets_out": stats.packets_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "lost": stats.lost,
            "jitter_ms": stats.jitter_ms,
            "ignored": stats.ignored,
            "recording": recording,
            "recording_secs": samples as f64 / 8000.0,
            "number": self.target.number.number,
            "caller": self.target.caller,
            "sip_call_id": self.call_id,
            "forwarded": forwarded,
        });
        let hangup = Step::note("hangup", json!({ "cause": cause, "cdr": cdr }));
        let Some(id) = self.interaction else { return };
        let t = self.target.tenant;
        let actor = Some(ACTOR.to_owned());
        // The hang-up and the closing transitions in one write; if the
        // transitions no longer apply, the hang-up is still recorded.
        let closing: Vec<Step> = if cause == "agent_hangup" || self.routed {
            // The ACD ends it (an agent's hang-up already did).
            Vec::new()
        } else if self.connected {
            vec![
                Step::Transition(Transition::WrapUp),
                Step::Transition(Transition::Close {
                    reason: if cause == "rtp_timeout" {
                        CloseReason::Failed
                    } else {
                        CloseReason::Completed
                    },
                }),
            ]
        } else if self.answered.is_some() {
            vec![Step::Transition(Transition::Close {
                reason: if cause == "failed" {
                    CloseReason::Failed
                } else {
                    CloseReason::Completed
                },
            })]
        } else {
            vec![Step::Transition(Transition::Abandon)]
        };
        let mut steps = vec![hangup.clone()];
        steps.extend(closing);
        let mut r = spine::record(&self.sip.db, &self.ctx.bus, t, id, &steps, actor.clone())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        if r.is_err() && steps.len() > 1 {
            let _ =
                spine::record(&self.sip.db, &self.ctx.bus, t, id, &[hangup], actor.clone()).await;
        }
        if self.routed && cause != "agent_hangup" {
            r = self
                .ctx
                .acd
                .hang_up(t, id, actor)
                .await
                .map_err(|e| e.to_string());
        }
        if let Err(e) = r {
            tracing::warn!(error = %e, interaction_id = %id, "call's interaction not closed");
        }
        if let Some(path) = self.recording.clone()
            && samples > 0
        {
            self.transcribe_recording(id, path);
        }
    }
}
