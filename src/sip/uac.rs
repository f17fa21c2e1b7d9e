//! Calls we place (UAC): the INVITE client transaction, CANCEL, the dialog
//! a 2xx makes (remote target from its Contact, route set from its
//! Record-Route), BYE in that dialog, and the routing of the far end's
//! in-dialog requests (its BYE) back to the dialog's owner.
//!
//! rsipstack's client INVITE transaction retransmits the INVITE (timer A),
//! gives up after timer B, and acknowledges every final answer itself: a
//! non-2xx inside the transaction, a 2xx with an ACK built from the 2xx
//! (Request-URI its Contact, Route its Record-Route reversed) and repeated
//! for retransmitted 2xx. So the ACK is the transaction layer's and we only
//! see the answers.
//!
//! The agent leg (`agent_leg.rs`) calls agents' phones with it; outbound
//! trunk calls (`outbound.rs`) too, with `Retry` after a digest challenge.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rsipstack::sip::{Header, HeadersExt, Method, Request, Response, SipMessage, StatusCodeKind};
use rsipstack::transaction::Transaction;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use tokio::sync::mpsc;

/// How long we wait for the final answer to a BYE or CANCEL.
const NON_INVITE_WAIT: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum UacError {
    #[error("could not build the {0} request")]
    Build(&'static str),
    #[error("could not send the request: {0}")]
    Send(String),
}

/// Why an OPTIONS got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer in time")]
    Timeout,
    #[error("{0}")]
    Transport(String),
}

/// A REGISTER with a trunk (one registration keeps its Call-ID and From
/// tag, and a growing CSeq).
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// Request-URI: the trunk's URI.
    pub registrar: String,
    /// Address of record (From and To).
    pub aor: String,
    /// The user part of our Contact.
    pub user: String,
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
    pub expires: u32,
    /// `Authorization` or `Proxy-Authorization`, and its value.
    pub authorization: Option<(&'static str, String)>,
}

/// A header's value in a response (the first of that name).
pub fn response_header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    header_value(&r.headers, name)
}

/// What a new call needs.
#[derive(Debug, Clone)]
pub struct InviteRequest {
    /// Request-URI (a registered contact, a trunk's URI).
    pub target: String,
    /// From URI (ours) and display name.
    pub from: String,
    pub from_display: Option<String>,
    /// To URI (whom we call).
    pub to: String,
    /// The user part of our Contact.
    pub contact_user: String,
    /// SDP offer.
    pub sdp: String,
}

/// A repeated INVITE (after a digest challenge): the same Call-ID and From
/// tag, a higher CSeq, and the credentials header.
#[derive(Debug, Clone)]
pub struct Retry {
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
    /// `Authorization` or `Proxy-Authorization`.
    pub header_name: &'static str,
    pub header_value: String,
}

/// What comes out of a call being placed.
#[derive(Debug)]
pub enum InviteEvent {
    /// 1xx (other than 100), with its body (an SDP for early media, or empty).
    Provisional(u16, Vec<u8>),
    /// 2xx: the dialog and the SDP answer. The ACK has been sent.
    Answered(Box<Dialog>, Vec<u8>),
    /// A final refusal (3xx-6xx; 408 when nobody answered at all).
    Failed(u16),
}

/// An INVITE on its way: its answers come out of [`Calling::next`].
pub struct Calling {
    invite: Request,
    endpoint: EndpointInnerRef,
    events: mpsc::UnboundedReceiver<InviteEvent>,
    pump: tokio::task::JoinHandle<()>,
    /// The challenge header of a 401/407 answer, if one came.
    challenge: std::sync::Arc<Mutex<Option<String>>>,
}

impl Drop for Calling {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// Our side of the SIP endpoint, for requests we originate.
pub struct Uac {
    endpoint: EndpointInnerRef,
    /// Our SIP address as others reach it (Via, Contact).
    local: SocketAddr,
    dialogs: Mutex<HashMap<(String, String), mpsc::UnboundedSender<InDialog>>>,
}

impl std::fmt::Debug for Uac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uac")
            .field("local", &self.local)
            .field("dialogs", &self.dialog_count())
            .finish()
    }
}

/// A request the far end sent inside one of our dialogs.
pub enum InDialog {
    /// BYE (already answered 200).
    Bye,
    /// A re-INVITE (hold, unhold, a new media address): the owner answers
    /// it (`midcall::answer_reinvite`).
    ReInvite(Box<Transaction>),
    /// A REFER (transfer): the owner answers it.
    Refer(Box<Transaction>),
}

impl std::fmt::Debug for InDialog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InDialog::Bye => "Bye",
            InDialog::ReInvite(_) => "ReInvite",
            InDialog::Refer(_) => "Refer",
        })
    }
}

/// The dialog a 2xx made, from our side (we are the UAC).
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our From header value (with our tag).
    local: String,
    /// Their To header value (with their tag).
    remote: String,
    /// Their Contact URI.
    pub remote_target: String,
    /// Route set, in the order the Route headers go.
    routes: Vec<String>,
    transport: &'static str,
}

fn header_value<'a>(headers: &'a rsipstack::sip::Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| h.value().trim())
}

/// The URI inside a name-addr (or a bare URI), without header parameters.
fn uri_of(value: &str) -> Option<String> {
    rsipstack::sip::typed::Contact::parse(value)
        .ok()
        .map(|c| c.uri.to_string())
}

/// Keeps what may go into a header value.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>'))
        .take(max)
        .collect()
}

/// Keeps what may go into a header value that has quotes of its own.
fn clean_header(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(4096).collect()
}

fn new_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

fn branch() -> String {
    format!("z9hG4bK{}", uuid::Uuid::new_v4().simple())
}

fn transport_of(uri: &str) -> &'static str {
    if uri.to_ascii_lowercase().contains(";transport=tcp") {
        "TCP"
    } else {
        "UDP"
    }
}

impl Uac {
    pub fn new(endpoint: EndpointInnerRef, local: SocketAddr) -> Self {
        Self {
            endpoint,
            local,
            dialogs: Mutex::new(HashMap::new()),
        }
    }

    /// Our SIP address as put in Via and Contact (a wildcard bind is
    /// advertised as `advertise`, else loopback).
    pub fn advertised(&self, advertise: Option<IpAddr>) -> SocketAddr {
        if self.local.ip().is_unspecified() {
            SocketAddr::new(
                advertise.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                self.local.port(),
            )
        } else {
            self.local
        }
    }

    pub fn dialog_count(&self) -> usize {
        self.dialogs.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Sends an INVITE. Its answers come out of the returned [`Calling`].
    pub async fn invite(
        &self,
        r: &InviteRequest,
        advertise: Option<IpAddr>,
    ) -> Result<Calling, UacError> {
        self.invite_with(r, advertise, None).await
    }

    /// Sends an INVITE, or repeats one with credentials (`retry`).
    pub async fn invite_with(
        &self,
        r: &InviteRequest,
        advertise: Option<IpAddr>,
        retry: Option<&Retry>,
    ) -> Result<Calling, UacError> {
        let here = self.advertised(advertise);
        let tp = transport_of(&r.target);
        let display = r
            .from_display
            .as_deref()
            .map(|d| format!("\"{}\" ", clean(d, 60)))
            .unwrap_or_default();
        let call_id = match retry {
            Some(x) => clean(&x.call_id, 200),
            None => format!("{}@switchboard", uuid::Uuid::new_v4().simple()),
        };
        let (tag, cseq_no) = match retry {
            Some(x) => (clean(&x.from_tag, 64).replace([' ', ';'], ""), x.cseq),
            None => (new_tag(), 1),
        };
        let auth = match retry {
            Some(x) => format!("{}: {}\r\n", x.header_name, clean_header(&x.header_value)),
            None => String::new(),
        };
        let text = format!(
            "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/{tp} {here};branch={b};rport\r\nMax-Forwards: 70\r\nFrom: {display}<{from}>;tag={tag}\r\nTo: <{to}>\r\nCall-ID: {cid}\r\nCSeq: {cseq_no} INVITE\r\n{auth}Contact: <sip:{cu}@{here};transport={tpl}>\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\nUser-Agent: Switchboard\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            target = r.target,
            b = branch(),
            from = r.from,
            to = r.to,
            cid = call_id,
            cu = clean(&r.contact_user, 64).replace([' ', ';', '@', ':'], ""),
            tpl = tp.to_ascii_lowercase(),
            len = r.sdp.len(),
            sdp = r.sdp,
        );
        let Ok(SipMessage::Request(invite)) = SipMessage::try_from(text.as_str()) else {
            return Err(UacError::Build("INVITE"));
        };
        let key = TransactionKey::from_request(&invite, TransactionRole::Client)
            .map_err(|_| UacError::Build("INVITE"))?;
        let mut tx = Transaction::new_client(key, invite.clone(), self.endpoint.clone(), None);
        tx.send().await.map_err(|e| UacError::Send(e.to_string()))?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let local_tag = invite
            .from_header()
            .ok()
            .and_then(|f| f.tag().ok().flatten())
            .map(|t| t.value().to_owned())
            .unwrap_or_default();
        let call_id = header_value(&invite.headers, "Call-ID")
            .unwrap_or("")
            .to_owned();
        let local_from = header_value(&invite.headers, "From")
            .unwrap_or("")
            .to_owned();
        let challenge = std::sync::Arc::new(Mutex::new(None));
        let challenge_in = challenge.clone();
        // The transaction is driven by its own task (its receive is not
        // cancel-safe); answers come out on the channel.
        let pump = tokio::spawn(async move {
            let mut answered = false;
            let mut finished = false;
            while let Some(msg) = tx.receive().await {
                let SipMessage::Response(resp) = msg else {
                    continue;
                };
                let code = u16::from(resp.status_code.clone());
                let ev = match resp.status_code.kind() {
                    StatusCodeKind::Provisional if code == 100 => continue,
                    StatusCodeKind::Provisional if !finished => {
                        InviteEvent::Provisional(code, resp.body.clone())
                    }
                    StatusCodeKind::Successful if !answered => {
                        answered = true;
                        finished = true;
                        match dialog_of(&resp, &call_id, &local_tag, &local_from, tp) {
                            Some(d) => InviteEvent::Answered(Box::new(d), resp.body.clone()),
                            // A 2xx we cannot follow (no Contact, no tag):
                            // it was ACKed; treat it as a failure.
                            None => InviteEvent::Failed(502),
                        }
                    }
                    StatusCodeKind::Successful => continue,
                    _ if !finished => {
                        finished = true;
                        if code == 401 || code == 407 {
                            let name = if code == 401 {
                                "WWW-Authenticate"
                            } else {
                                "Proxy-Authenticate"
                            };
                            if let Some(v) = header_value(&resp.headers, name) {
                                *challenge_in.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Some(v.chars().take(2048).collect());
                            }
                        }
                        InviteEvent::Failed(code)
                    }
                    _ => continue,
                };
                if events_tx.send(ev).is_err() {
                    break;
                }
            }
            // The transaction ended (timer B, or done).
            if !finished {
                let _ = events_tx.send(InviteEvent::Failed(408));
            }
        });
        Ok(Calling {
            invite,
            endpoint: self.endpoint.clone(),
            events,
            pump,
            challenge,
        })
    }

    /// Registers a dialog so the far end's requests in it reach `to`.
    pub fn track(&self, d: &Dialog, to: mpsc::UnboundedSender<InDialog>) {
        self.dialogs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((d.call_id.clone(), d.local_tag.clone()), to);
    }

    pub fn forget(&self, d: &Dialog) {
        self.dialogs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(d.call_id.clone(), d.local_tag.clone()));
    }

    /// Takes a request that belongs to one of our dialogs (Call-ID and our
    /// tag in its To) and answers it; gives back any other.
    pub async fn dispatch(&self, mut tx: Transaction) -> Option<Transaction> {
        let call_id = header_value(&tx.original.headers, "Call-ID")
            .unwrap_or("")
            .to_owned();
        let Some(tag) = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .map(|t| t.value().to_owned())
        else {
            return Some(tx);
        };
        let owner = self
            .dialogs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(call_id, tag))
            .cloned();
        let Some(owner) = owner else {
            return Some(tx);
        };
        let status = match tx.original.method {
            Method::Bye => {
                let _ = owner.send(InDialog::Bye);
                rsipstack::sip::StatusCode::OK
            }
            Method::Invite => {
                if let Err(mpsc::error::SendError(InDialog::ReInvite(mut tx))) =
                    owner.send(InDialog::ReInvite(Box::new(tx)))
                {
                    let _ = tx
                        .reply(rsipstack::sip::StatusCode::CallTransactionDoesNotExist)
                        .await;
                }
                return None;
            }
            Method::Refer => {
                if let Err(mpsc::error::SendError(InDialog::Refer(mut tx))) =
                    owner.send(InDialog::Refer(Box::new(tx)))
                {
                    let _ = tx
                        .reply(rsipstack::sip::StatusCode::CallTransactionDoesNotExist)
                        .await;
                }
                return None;
            }
            _ => rsipstack::sip::StatusCode::NotImplemented,
        };
        if let Err(e) = tx.reply(status).await {
            tracing::debug!(error = %e, "in-dialog reply not sent");
        }
        None
    }

    /// Ends a dialog with BYE and waits a little for its answer (the
    /// final status, or None when nothing came).
    pub async fn bye(&self, d: &Dialog, cseq: u32, advertise: Option<IpAddr>) -> Option<u16> {
        let here = self.advertised(advertise);
        let mut text = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/{tp} {here};branch={b};rport\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} BYE\r\n",
            target = d.remote_target,
            tp = d.transport,
            b = branch(),
            from = d.local,
            to = d.remote,
            cid = d.call_id,
        );
        for r in &d.routes {
            text.push_str(&format!("Route: {r}\r\n"));
        }
        text.push_str("User-Agent: Switchboard\r\nContent-Length: 0\r\n\r\n");
        let Ok(SipMessage::Request(req)) = SipMessage::try_from(text.as_str()) else {
            tracing::warn!(call_id = %d.call_id, "could not build a BYE");
            return None;
        };
        self.non_invite(req).await
    }

    /// Sends an OPTIONS to `target` (a trunk's URI) and waits up to `wait`
    /// for its final answer: the status, or why there was none.
    pub async fn options(
        &self,
        target: &str,
        advertise: Option<IpAddr>,
        wait: Duration,
    ) -> Result<u16, ProbeError> {
        let here = self.advertised(advertise);
        let tp = transport_of(target);
        let text = format!(
            "OPTIONS {target} SIP/2.0\r\nVia: SIP/2.0/{tp} {here};branch={b};rport\r\nMax-Forwards: 70\r\nFrom: <sip:switchboard@{here}>;tag={tag}\r\nTo: <{target}>\r\nCall-ID: {cid}@switchboard\r\nCSeq: 1 OPTIONS\r\nAccept: application/sdp\r\nUser-Agent: Switchboard\r\nContent-Length: 0\r\n\r\n",
            b = branch(),
            tag = new_tag(),
            cid = uuid::Uuid::new_v4().simple(),
        );
        self.final_answer(&text, wait)
            .await
            .map(|r| u16::from(r.status_code))
    }

    /// Sends a REGISTER for `r` and waits up to `wait` for its final answer.
    pub async fn register(
        &self,
        r: &RegisterRequest,
        advertise: Option<IpAddr>,
        wait: Duration,
    ) -> Result<Response, ProbeError> {
        let here = self.advertised(advertise);
        let tp = transport_of(&r.registrar);
        let auth = match &r.authorization {
            Some((name, value)) => format!("{name}: {}\r\n", clean_header(value)),
            None => String::new(),
        };
        let user = clean(&r.user, 64).replace([' ', ';', '@', ':'], "");
        let text = format!(
            "REGISTER {registrar} SIP/2.0\r\nVia: SIP/2.0/{tp} {here};branch={b};rport\r\nMax-Forwards: 70\r\nFrom: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\n{auth}Contact: <sip:{user}@{here};transport={tpl}>\r\nExpires: {expires}\r\nUser-Agent: Switchboard\r\nContent-Length: 0\r\n\r\n",
            registrar = r.registrar,
            b = branch(),
            aor = r.aor,
            tag = clean(&r.from_tag, 64).replace([' ', ';'], ""),
            cid = clean(&r.call_id, 200),
            cseq = r.cseq,
            tpl = tp.to_ascii_lowercase(),
            expires = r.expires,
        );
        self.final_answer(&text, wait).await
    }

    /// Sends a non-INVITE request (its text) on a client transaction and
    /// waits up to `wait` for its final answer.
    async fn final_answer(&self, text: &str, wait: Duration) -> Result<Response, ProbeError> {
        let Ok(SipMessage::Request(req)) = SipMessage::try_from(text) else {
            return Err(ProbeError::Transport("could not build the request".into()));
        };
        let key = TransactionKey::from_request(&req, TransactionRole::Client)
            .map_err(|e| ProbeError::Transport(e.to_string()))?;
        let mut tx = Transaction::new_client(key, req, self.endpoint.clone(), None);
        tokio::time::timeout(wait, async move {
            tx.send()
                .await
                .map_err(|e| ProbeError::Transport(e.to_string()))?;
            while let Some(m) = tx.receive().await {
                if let SipMessage::Response(r) = m
                    && r.status_code.kind() != StatusCodeKind::Provisional
                {
                    return Ok(r);
                }
            }
            Err(ProbeError::Transport(
                "the transaction ended unanswered".into(),
            ))
        })
        .await
        .unwrap_or(Err(ProbeError::Timeout))
    }

    async fn non_invite(&self, req: Request) -> Option<u16> {
        let key = TransactionKey::from_request(&req, TransactionRole::Client).ok()?;
        let mut tx = Transaction::new_client(key, req, self.endpoint.clone(), None);
        if let Err(e) = tx.send().await {
            tracing::debug!(error = %e, "request not sent");
            return None;
        }
        tokio::time::timeout(NON_INVITE_WAIT, async {
            while let Some(m) = tx.receive().await {
                if let SipMessage::Response(r) = m
                    && r.status_code.kind() != StatusCodeKind::Provisional
                {
                    return Some(u16::from(r.status_code));
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }
}

/// The dialog a 2xx makes: their tag, their Contact, the Record-Route
/// reversed.
fn dialog_of(
    resp: &Response,
    call_id: &str,
    local_tag: &str,
    local_from: &str,
    transport: &'static str,
) -> Option<Dialog> {
    let to = resp.to_header().ok()?;
    let remote_tag = to.tag().ok().flatten()?.value().to_owned();
    let remote = to.value().to_owned();
    let remote_target = uri_of(header_value(&resp.headers, "Contact")?)?;
    let mut routes = Vec::new();
    for h in resp.headers.iter() {
        if let Header::RecordRoute(rr) = h {
            for r in rr.value().split(',') {
                let r = r.trim();
                if !r.is_empty() {
                    routes.push(r.to_owned());
                }
            }
        }
    }
    routes.reverse();
    Some(Dialog {
        call_id: call_id.to_owned(),
        local_tag: local_tag.to_owned(),
        remote_tag,
        local: local_from.to_owned(),
        remote,
        remote_target,
        routes,
        transport,
    })
}

impl Calling {
    /// The next answer (None once the transaction is over and all were read).
    pub async fn next(&mut self) -> Option<InviteEvent> {
        self.events.recv().await
    }

    pub fn call_id(&self) -> &str {
        header_value(&self.invite.headers, "Call-ID").unwrap_or("")
    }

    /// Our From tag.
    pub fn from_tag(&self) -> String {
        self.invite
            .from_header()
            .ok()
            .and_then(|f| f.tag().ok().flatten())
            .map(|t| t.value().to_owned())
            .unwrap_or_default()
    }

    /// The INVITE's CSeq number.
    pub fn cseq(&self) -> u32 {
        header_value(&self.invite.headers, "CSeq")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    }

    /// The Request-URI of the INVITE.
    pub fn target(&self) -> String {
        self.invite.uri.to_string()
    }

    /// The challenge (`WWW-Authenticate` or `Proxy-Authenticate` value) of
    /// a 401/407 answer, once it came.
    pub fn challenge(&self) -> Option<String> {
        self.challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// CANCEL (its own transaction; the INVITE then ends with 487, or a 2xx
    /// that crossed it, which the caller must BYE). Returns CANCEL's status.
    pub async fn cancel(&self) -> Option<u16> {
        let inv = &self.invite;
        let mut text = format!("CANCEL {} SIP/2.0\r\n", inv.uri);
        for h in inv.headers.iter() {
            let keep = matches!(
                h,
                Header::Via(_) | Header::From(_) | Header::To(_) | Header::CallId(_)
            ) || h.name().eq_ignore_ascii_case("Route");
            if keep {
                text.push_str(&format!("{}: {}\r\n", h.name(), h.value()));
            }
        }
        text.push_str(&format!(
            "Max-Forwards: 70\r\nCSeq: {} CANCEL\r\nUser-Agent: Switchboard\r\nContent-Length: 0\r\n\r\n",
            self.cseq()
        ));
        let Ok(SipMessage::Request(req)) = SipMessage::try_from(text.as_str()) else {
            tracing::warn!(call_id = %self.call_id(), "could not build a CANCEL");
            return None;
        };
        let key = TransactionKey::from_request(&req, TransactionRole::Client).ok()?;
        let mut tx = Transaction::new_client(key, req, self.endpoint.clone(), None);
        if let Err(e) = tx.send().await {
            tracing::debug!(error = %e, "CANCEL not sent");
            return None;
        }
        tokio::time::timeout(NON_INVITE_WAIT, async {
            while let Some(m) = tx.receive().await {
                if let SipMessage::Response(r) = m
                    && r.status_code.kind() != StatusCodeKind::Provisional
                {
                    return Some(u16::from(r.status_code));
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }
}

/// A counter for the CSeq of our requests in a dialog (the INVITE was 1).
#[derive(Debug)]
pub struct CSeq(AtomicU32);

impl Default for CSeq {
    fn default() -> Self {
        Self(AtomicU32::new(1))
    }
}

impl CSeq {
    pub fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_makes_a_dialog_with_the_route_set_reversed() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nRecord-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p3.example.com;lr>\r\nFrom: <sip:a@x>;tag=ours\r\nTo: <sip:b@y>;tag=theirs\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:b@10.0.0.2:5070>\r\nContent-Length: 0\r\n\r\n";
        let Ok(SipMessage::Response(r)) = SipMessage::try_from(text) else {
            panic!("parses");
        };
        let d = dialog_of(&r, "c1", "ours", "<sip:a@x>;tag=ours", "UDP").unwrap();
        assert_eq!(d.remote_tag, "theirs");
        assert_eq!(d.remote_target, "sip:b@10.0.0.2:5070");
        assert_eq!(
            d.routes,
            vec![
                "<sip:p3.example.com;lr>",
                "<sip:p2.example.com;lr>",
                "<sip:p1.example.com;lr>"
            ]
        );
    }

    #[test]
    fn a_2xx_without_contact_or_tag_makes_no_dialog() {
        let no_tag = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=ours\r\nTo: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:b@10.0.0.2>\r\nContent-Length: 0\r\n\r\n";
        let no_contact = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=ours\r\nTo: <sip:b@y>;tag=t\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        for text in [no_tag, no_contact] {
            let Ok(SipMessage::Response(r)) = SipMessage::try_from(text) else {
                panic!("parses");
            };
            assert!(dialog_of(&r, "c1", "ours", "<sip:a@x>;tag=ours", "UDP").is_none());
        }
    }
}
