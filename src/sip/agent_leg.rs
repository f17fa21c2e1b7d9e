//! The B2BUA's second leg: a call offered to an agent who has a registered
//! SIP phone rings that phone.
//!
//! The ACD stays the source of truth; this side follows it through
//! [`crate::acd::service::Acd::on_action`] (a hook that only hands the
//! carried-out actions to [`dispatch`] over a channel):
//! - `Offer` to one agent, for a call of this node, whose agent has a SIP
//!   account (`sip_accounts.agent_id`) with a live registration: we call
//!   the phone (the most recently refreshed contact) with an SDP offer of
//!   the caller's G.711 law (and telephone-event) from a new
//!   [`RtpSession`]. The phone ringing is the offer ringing.
//! - The phone answers (2xx; rsipstack ACKs it): the agent accepts
//!   (`acd.accept`), then the two legs are bridged ([`Bridge`]) and a
//!   `bridged` event is written. If the accept fails (the offer went
//!   meanwhile) we BYE the phone.
//! - The phone declines (486, 600, 603): the agent rejects (`acd.reject`;
//!   the caller waits again at its place and is not offered to this agent
//!   again). Other failures (unreachable, 404, 480, 5xx, timeout) only end
//!   the leg: the offer keeps ringing on the desk until it is accepted
//!   there or the ACD's offer timeout counts a no-answer.
//! - `OfferWithdrawn`, `Requeued` (no answer in time) or `Abandoned`
//!   while ringing: we CANCEL the INVITE (and BYE a 2xx that crossed it).
//! - `Ended` (the caller hung up, or the agent hung up from the desk): we
//!   BYE the phone and the caller's leg is told to hang up too.
//! - The phone's BYE (routed to us by `uac::Uac::dispatch`) or no RTP from
//!   it for `sip.rtp_timeout_secs`: `acd.hang_up`, which ends the caller's
//!   leg (above) and starts the agent's wrap-up.
//!
//! Every leg leaves an `agent_leg_ended` event (cause and the leg's own
//! CDR: packets and bytes each way, loss, jitter). Ring-all offers (several
//! agents) do not ring phones yet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Sip;
use super::sdp;
use super::store::{account, live_registrations};
use super::uac::{CSeq, Calling, Dialog, InDialog, InviteEvent, InviteRequest};
use crate::acd::engine::Action;
use crate::ids::{AgentId, InteractionId, TenantId};
use crate::interactions::service as spine;
use crate::media::bridge::Bridge;
use crate::media::g711::Law;
use crate::media::session::{MediaEvent, RtpSession, SessionConfig};

const ACTOR: &str = "sip";
/// How long a CANCELled INVITE may take to end (487, or a crossing 2xx).
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// What reaches a leg from the routing side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctl {
    /// The offer is gone (withdrawn, timed out, abandoned).
    Cancel,
    /// The interaction ended: hang up.
    End,
}

type Inbox = mpsc::UnboundedReceiver<(TenantId, Action)>;

/// The agent legs of this node, one per interaction at most.
pub struct Legs {
    live: Mutex<HashMap<InteractionId, (u64, mpsc::UnboundedSender<Ctl>)>>,
    next_id: std::sync::atomic::AtomicU64,
    tasks: TaskTracker,
    sender: mpsc::UnboundedSender<(TenantId, Action)>,
    inbox: Mutex<Option<Inbox>>,
}

impl std::fmt::Debug for Legs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Legs")
            .field("live", &self.live_count())
            .finish()
    }
}

impl Default for Legs {
    fn default() -> Self {
        let (sender, inbox) = mpsc::unbounded_channel();
        Self {
            live: Mutex::new(HashMap::new()),
            next_id: Default::default(),
            tasks: TaskTracker::new(),
            sender,
            inbox: Mutex::new(Some(inbox)),
        }
    }
}

impl Legs {
    /// Agent legs in progress.
    pub fn live_count(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// The hook for `Acd::on_action`: passes on what legs care about.
    pub fn hook(&self) -> crate::acd::service::ActionHook {
        let tx = self.sender.clone();
        Box::new(move |t, a| {
            let wanted = matches!(
                a,
                Action::Offer { .. }
                    | Action::OfferWithdrawn { .. }
                    | Action::Requeued { .. }
                    | Action::Abandoned { .. }
                    | Action::Ended { .. }
            );
            if wanted {
                let _ = tx.send((t, a.clone()));
            }
        })
    }

    pub(crate) fn take_inbox(&self) -> Option<Inbox> {
        self.inbox.lock().ok().and_then(|mut i| i.take())
    }

    fn tell(&self, i: InteractionId, c: Ctl) {
        let removed = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&i);
        if let Some((_, tx)) = removed {
            let _ = tx.send(c);
        }
    }

    fn done(&self, i: InteractionId, id: u64) {
        let mut m = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&i).is_some_and(|(x, _)| *x == id) {
            m.remove(&i);
        }
    }
}

/// Follows the routing actions until `stop`, then waits for the legs.
pub async fn dispatch(sip: Arc<Sip>, mut inbox: Inbox, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            m = inbox.recv() => match m {
                Some((t, a)) => on_action(&sip, t, a, &stop),
                None => break,
            },
        }
    }
    sip.legs.tasks.close();
    sip.legs.tasks.wait().await;
}

fn on_action(sip: &Arc<Sip>, t: TenantId, a: Action, stop: &CancellationToken) {
    match a {
        Action::Offer {
            interaction,
            agents,
            ..
        } => {
            let [agent] = agents.as_slice() else { return };
            // Only calls whose caller leg lives on this node.
            if sip.calls.caller_leg(interaction).is_none() {
                return;
            }
            let legs = &sip.legs;
            let id = legs
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (ctl_tx, ctl) = mpsc::unbounded_channel();
            let old = legs
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(interaction, (id, ctl_tx));
            if let Some((_, old)) = old {
                let _ = old.send(Ctl::Cancel);
            }
            let leg = Leg {
                sip: sip.clone(),
                t,
                interaction,
                agent: *agent,
                ctl,
                stop: stop.clone(),
            };
            legs.tasks.spawn(async move {
                let sip = leg.sip.clone();
                leg.run().await;
                sip.legs.done(interaction, id);
            });
        }
        Action::OfferWithdrawn { interaction, .. }
        | Action::Requeued { interaction, .. }
        | Action::Abandoned { interaction, .. } => sip.legs.tell(interaction, Ctl::Cancel),
        Action::Ended { interaction, .. } => {
            sip.legs.tell(interaction, Ctl::End);
            sip.calls.hang_up_caller(interaction);
        }
        _ => {}
    }
}

/// The phone to ring: a registered contact of one of the agent's accounts.
struct Phone {
    username: String,
    contact: String,
}

async fn phone_of(sip: &Sip, t: TenantId, agent: AgentId) -> Result<Option<Phone>, DbErr> {
    let accounts = account::Entity::find()
        .filter(account::Column::TenantId.eq(t))
        .filter(account::Column::AgentId.eq(agent))
        .all(&sip.db)
        .await?;
    let now = Utc::now();
    let mut best: Option<(chrono::DateTime<Utc>, Phone)> = None;
    for a in accounts {
        for r in live_registrations(&sip.db, t, a.id, now).await? {
            if best.as_ref().is_none_or(|(at, _)| r.updated_at > *at) {
                best = Some((
                    r.updated_at,
                    Phone {
                        username: a.username.clone(),
                        contact: r.contact,
                    },
                ));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}

struct Leg {
    sip: Arc<Sip>,
    t: TenantId,
    interaction: InteractionId,
    agent: AgentId,
    ctl: mpsc::UnboundedReceiver<Ctl>,
    stop: CancellationToken,
}

fn codec_name(l: Law) -> &'static str {
    match l {
        Law::Ulaw => "PCMU",
        Law::Alaw => "PCMA",
    }
}

/// How a ringing phone ended.
enum Ringing {
    Answered(Box<Dialog>, Vec<u8>),
    /// Cause for the leg's CDR.
    Over(&'static str),
}

impl Leg {
    async fn event(&self, kind: &str, data: Value) {
        let Some(ctx) = self.sip.calls.context() else {
            return;
        };
        if let Err(e) = spine::annotate(
            &self.sip.db,
            &ctx.bus,
            self.t,
            self.interaction,
            kind.into(),
            data,
            Some(ACTOR.into()),
        )
        .await
        {
            tracing::warn!(error = %e, interaction_id = %self.interaction, kind, "agent leg event not recorded");
        }
    }

    async fn run(mut self) {
        let Some(ctx) = self.sip.calls.context() else {
            return;
        };
        let acd = ctx.acd.clone();
        let Some(caller) = self.sip.calls.caller_leg(self.interaction) else {
            return;
        };
        let phone = match phone_of(&self.sip, self.t, self.agent).await {
            Ok(Some(p)) => p,
            // No phone: the offer rings on the desk only.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "agent's phone not looked up");
                return;
            }
        };
        let sip = self.sip.clone();
        let s = &sip.settings;
        let codec = caller.media.codec();
        let te = caller.media.inner().telephone_event();
        let media = RtpSession::start(SessionConfig {
            bind: s.rtp_bind,
            ports: s.rtp_port_min..=s.rtp_port_max,
            codec,
            telephone_event: te,
            remote: None,
            inactivity: Duration::from_secs(s.rtp_timeout_secs),
            ..SessionConfig::default()
        })
        .await;
        let media = match media {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "no media session for an agent leg");
                return;
            }
        };
        let local = media.local_addr();
        let ip = s.rtp_advertise.unwrap_or_else(|| {
            if !local.ip().is_unspecified() {
                local.ip()
            } else {
                self.sip.uac.advertised(None).ip()
            }
        });
        let us = super::midcall::LegSdp {
            media: SocketAddr::new(ip, local.port()),
            contact: format!(
                "<sip:switchboard@{}>",
                self.sip.uac.advertised(s.rtp_advertise)
            ),
            session_id: rand::random::<u32>() as u64,
        };
        let offer = sdp::answer(
            us.media,
            &sdp::Negotiated {
                codec,
                telephone_event: te,
                ptime: 20,
                direction: sdp::Direction::SendRecv,
            },
            rand::random::<u32>() as u64,
        );
        let from_user: String = caller
            .caller
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
            .take(32)
            .collect();
        let from_user = if from_user.is_empty() {
            "anonymous".to_owned()
        } else {
            from_user
        };
        let request = InviteRequest {
            target: phone.contact.clone(),
            from: format!("sip:{from_user}@{}", s.domain),
            from_display: Some(caller.caller.clone()),
            to: phone.contact.clone(),
            contact_user: "switchboard".into(),
            sdp: offer,
        };
        let started = Utc::now();
        let mut calling = match self.sip.uac.invite(&request, s.rtp_advertise).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "agent's phone not called");
                media.close().await;
                return;
            }
        };
        let call_id = calling.call_id().to_owned();
        self.event(
            "agent_leg_calling",
            json!({ "agent_id": self.agent, "account": phone.username, "contact": phone.contact, "sip_call_id": call_id }),
        )
        .await;
        let (dialog, body) = match self.ring(&mut calling).await {
            Ringing::Answered(d, b) => (d, b),
            Ringing::Over(cause) => {
                if cause == "declined"
                    && let Err(e) = acd
                        .reject(self.t, self.agent, self.interaction, Some(ACTOR.into()))
                        .await
                {
                    tracing::info!(error = %e, "agent's decline not recorded (the offer went)");
                }
                return self.finish(media, cause, started, None, &call_id).await;
            }
        };
        let cseq = CSeq::default();
        // The answer must be the law we offered.
        let remote = sdp::parse_offer(&body).ok().and_then(|o| {
            o.negotiate()
                .ok()
                .filter(|n| n.codec == codec)
                .and(o.remote)
        });
        let Some(remote) = remote else {
            self.sip
                .uac
                .bye(&dialog, cseq.next(), s.rtp_advertise)
                .await;
            let _ = acd
                .reject(self.t, self.agent, self.interaction, Some(ACTOR.into()))
                .await;
            return self
                .finish(media, "bad_answer", started, Some(Utc::now()), &call_id)
                .await;
        };
        media.set_remote(Some(remote));
        let (in_tx, mut in_dialog) = mpsc::unbounded_channel();
        self.sip.uac.track(&dialog, in_tx);
        let answered = Utc::now();
        if let Err(e) = acd
            .accept(self.t, self.agent, self.interaction, Some(ACTOR.into()))
            .await
        {
            tracing::info!(error = %e, interaction_id = %self.interaction, "the phone answered an offer that is gone");
            self.sip
                .uac
                .bye(&dialog, cseq.next(), s.rtp_advertise)
                .await;
            self.sip.uac.forget(&dialog);
            return self
                .finish(media, "offer_gone", started, Some(answered), &call_id)
                .await;
        }
        let bridge = Bridge::connect(&caller.media, &media);
        self.event(
            "bridged",
            json!({ "agent_id": self.agent, "contact": phone.contact, "codec": codec_name(codec), "rtp": local.to_string(), "remote_rtp": remote.to_string(), "sip_call_id": call_id }),
        )
        .await;
        let mut events = media.take_events();
        // A blind transfer the phone asked for (REFER), while it rings.
        let mut transfer: Option<(String, tokio::sync::oneshot::Receiver<Result<(), u16>>)> = None;
        let cause = loop {
            tokio::select! {
                r = async { match transfer.as_mut() { Some((_, rx)) => rx.await, None => std::future::pending().await } } => {
                    let to = transfer.take().map(|(to, _)| to).unwrap_or_default();
                    let (status, done) = match r {
                        Ok(Ok(())) => (200, true),
                        Ok(Err(code)) => (code, false),
                        Err(_) => (503, false),
                    };
                    self.sip.uac.notify_refer(&dialog, cseq.next(), status, reason_of(status), true, s.rtp_advertise).await;
                    self.event(if done { "transfer_completed" } else { "transfer_failed" }, json!({ "to": to, "sip_status": status, "agent_id": self.agent })).await;
                    if done {
                        // The caller is with the transfer target now: the
                        // agent's part ends (wrap-up).
                        self.sip.uac.bye(&dialog, cseq.next(), s.rtp_advertise).await;
                        let _ = acd.hang_up(self.t, self.interaction, Some(ACTOR.into())).await;
                        break "transferred";
                    }
                }
                m = in_dialog.recv() => match m {
                    Some(InDialog::Bye) | None => {
                        // The agent hung up: the ACD ends the interaction,
                        // which hangs up the caller (see `on_action`).
                        let _ = acd.hang_up(self.t, self.interaction, Some(ACTOR.into())).await;
                        break "agent_bye";
                    }
                    Some(InDialog::ReInvite(tx)) => {
                        let change = super::midcall::answer_reinvite(*tx, &media, &us).await;
                        if let Some(kind) = change.event() {
                            self.event(kind, json!({ "by": "agent", "agent_id": self.agent })).await;
                        }
                    }
                    Some(InDialog::Refer(tx)) => {
                        if transfer.is_some() {
                            super::midcall::refuse(*tx, rsipstack::sip::StatusCode::RequestPending, "a transfer is in progress").await;
                        } else if let Some(started) = self.refer(*tx, &dialog, &cseq).await {
                            transfer = Some(started);
                        }
                    }
                },
                c = self.ctl.recv() => {
                    let _ = c;
                    self.sip.uac.bye(&dialog, cseq.next(), s.rtp_advertise).await;
                    break "caller_hangup";
                }
                ev = async { match events.as_mut() { Some(e) => e.recv().await, None => std::future::pending().await } } => match ev {
                    Some(MediaEvent::Inactive) => {
                        self.sip.uac.bye(&dialog, cseq.next(), s.rtp_advertise).await;
                        let _ = acd.hang_up(self.t, self.interaction, Some(ACTOR.into())).await;
                        break "rtp_timeout";
                    }
                    Some(_) => {}
                    None => events = None,
                },
                _ = self.stop.cancelled() => {
                    self.sip.uac.bye(&dialog, cseq.next(), s.rtp_advertise).await;
                    break "shutdown";
                }
            }
        };
        drop(bridge);
        self.sip.uac.forget(&dialog);
        drop(calling);
        self.finish(media, cause, started, Some(answered), &call_id)
            .await;
    }

    /// Takes a REFER from the agent's phone: a blind transfer of the caller
    /// to a phone number, or an attended one (Replaces) to the far end of
    /// the phone's consult call.
    /// Accepted (202, NOTIFY 100) when the caller's call is on this node;
    /// the outcome comes on the receiver.
    async fn refer(
        &self,
        tx: rsipstack::transaction::Transaction,
        dialog: &Dialog,
        cseq: &CSeq,
    ) -> Option<(String, tokio::sync::oneshot::Receiver<Result<(), u16>>)> {
        use rsipstack::sip::StatusCode;
        let refer = match super::midcall::parse_refer(&tx.original) {
            Ok(r) => r,
            Err(why) => {
                super::midcall::refuse(tx, StatusCode::BadRequest, why).await;
                return None;
            }
        };
        if let Some(rep) = &refer.replaces {
            return self.attended(tx, rep, dialog, cseq).await;
        }
        let to =
            match super::midcall::tenant_transfer_target(&self.sip.db, self.t, &refer.user).await {
                Ok(to) => to,
                Err(why) => {
                    super::midcall::refuse(tx, StatusCode::Forbidden, why).await;
                    return None;
                }
            };
        let Some(rx) = self.sip.calls.transfer_caller(self.interaction, to.clone()) else {
            super::midcall::refuse(
                tx,
                StatusCode::CallTransactionDoesNotExist,
                "the caller's call is not on this node",
            )
            .await;
            return None;
        };
        self.accept_refer(tx, &to, false, dialog, cseq).await;
        Some((to, rx))
    }

    /// An attended transfer: the phone's consult call (through us, to an
    /// outside number) is the dialog `rep` names; its far end is given to
    /// the caller and the consult call ends.
    async fn attended(
        &self,
        tx: rsipstack::transaction::Transaction,
        rep: &super::midcall::Replaces,
        dialog: &Dialog,
        cseq: &CSeq,
    ) -> Option<(String, tokio::sync::oneshot::Receiver<Result<(), u16>>)> {
        use rsipstack::sip::StatusCode;
        let taken = self
            .sip
            .calls
            .take_leg(&rep.call_id, [&rep.to_tag, &rep.from_tag], self.t);
        let leg = match taken {
            Some(rx) => tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .ok()
                .and_then(|r| r.ok())
                .flatten(),
            None => None,
        };
        let Some(leg) = leg else {
            super::midcall::refuse(
                tx,
                StatusCode::CallTransactionDoesNotExist,
                "no answered consult call of this tenant's phones matches Replaces",
            )
            .await;
            return None;
        };
        let to = leg.to.clone();
        let rx = match self.sip.calls.attach_leg(self.interaction, leg) {
            Ok(rx) => rx,
            Err(leg) => {
                leg.hang_up(&self.sip).await;
                leg.close(&self.sip).await;
                super::midcall::refuse(
                    tx,
                    StatusCode::CallTransactionDoesNotExist,
                    "the caller's call is not on this node",
                )
                .await;
                return None;
            }
        };
        self.accept_refer(tx, &to, true, dialog, cseq).await;
        Some((to, rx))
    }

    /// 202 to a REFER we carry out, the event, and NOTIFY 100.
    async fn accept_refer(
        &self,
        mut tx: rsipstack::transaction::Transaction,
        to: &str,
        attended: bool,
        dialog: &Dialog,
        cseq: &CSeq,
    ) {
        let contact = format!(
            "<sip:switchboard@{}>",
            self.sip.uac.advertised(self.sip.settings.rtp_advertise)
        );
        let _ = tx
            .reply_with(
                rsipstack::sip::StatusCode::Accepted,
                vec![rsipstack::sip::Header::Other("Contact".into(), contact)],
                None,
            )
            .await;
        self.event(
            "transfer_requested",
            json!({ "to": to, "attended": attended, "agent_id": self.agent }),
        )
        .await;
        self.sip
            .uac
            .notify_refer(
                dialog,
                cseq.next(),
                100,
                "Trying",
                false,
                self.sip.settings.rtp_advertise,
            )
            .await;
    }

    /// Waits for the phone while the offer rings.
    async fn ring(&mut self, calling: &mut Calling) -> Ringing {
        loop {
            tokio::select! {
                ev = calling.next() => match ev {
                    Some(InviteEvent::Provisional(..)) => {}
                    Some(InviteEvent::Answered(d, body)) => return Ringing::Answered(d, body),
                    Some(InviteEvent::Failed(486 | 600 | 603)) => return Ringing::Over("declined"),
                    Some(InviteEvent::Failed(code)) => {
                        tracing::info!(code, interaction_id = %self.interaction, "agent's phone did not take the call");
                        return Ringing::Over("failed");
                    }
                    None => return Ringing::Over("failed"),
                },
                _ = self.ctl.recv() => return self.cancel(calling, "cancelled").await,
                _ = self.stop.cancelled() => return self.cancel(calling, "shutdown").await,
            }
        }
    }

    /// CANCELs the INVITE; a 2xx that crossed the CANCEL gets a BYE.
    async fn cancel(&self, calling: &mut Calling, cause: &'static str) -> Ringing {
        calling.cancel().await;
        let crossed = tokio::time::timeout(CANCEL_WAIT, async {
            loop {
                match calling.next().await {
                    Some(InviteEvent::Provisional(..)) => {}
                    Some(InviteEvent::Answered(d, _)) => return Some(d),
                    Some(InviteEvent::Failed(_)) | None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        if let Some(d) = crossed {
            self.sip
                .uac
                .bye(&d, 2, self.sip.settings.rtp_advertise)
                .await;
        }
        Ringing::Over(cause)
    }

    async fn finish(
        &self,
        media: RtpSession,
        cause: &str,
        started: chrono::DateTime<Utc>,
        answered: Option<chrono::DateTime<Utc>>,
        call_id: &str,
    ) {
        let stats = media.stats();
        media.close().await;
        let ended = Utc::now();
        let duration = answered
            .map(|a| (ended - a).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(0.0);
        let cdr = json!({
            "start": started,
            "answer": answered,
            "end": ended,
            "duration_secs": duration,
            "codec": codec_name(media.codec()),
            "packets_in": stats.packets_in,
            "packets_out": stats.packets_out,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "lost": stats.lost,
            "jitter_ms": stats.jitter_ms,
            "sip_call_id": call_id,
        });
        self.event(
            "agent_leg_ended",
            json!({ "agent_id": self.agent, "cause": cause, "cdr": cdr }),
        )
        .await;
    }
}

/// The reason phrase of a status we report in a NOTIFY.
fn reason_of(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        491 => "Request Pending",
        _ => "Service Unavailable",
    }
}
