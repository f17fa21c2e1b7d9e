//! The outbound leg of a forwarded call: a number with `forward_trunk_id`
//! sends its callers out through that trunk (`call.rs` drives it).
//!
//! The leg offers the caller's G.711 law (and telephone-event) from its own
//! [`RtpSession`], answers one digest challenge with the trunk's
//! credentials, and reports its progress: ringing (180, or 183 without
//! SDP), early media (183 with SDP: the caller then hears the far end
//! before the answer), the answer, or a refusal mapped to what the caller
//! is told. The trunk's calls-per-second limit counts these calls too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::StatusCode;
use tokio::sync::mpsc;

use super::Sip;
use super::outbound::{authorization, host_part};
use super::sdp;
use super::trunks::trunk;
use super::uac::{CSeq, Calling, Dialog, InDialog, InviteEvent, InviteRequest, Retry};
use crate::media::g711::Law;
use crate::media::session::{RtpSession, SessionConfig};

/// How a CANCELled INVITE may take to end (487, or a crossing 2xx).
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// The forwarding leg while it rings.
pub(crate) struct Dialing {
    sip: Arc<Sip>,
    calling: Calling,
    request: InviteRequest,
    creds: Option<(String, String)>,
    retried: bool,
    pub media: Arc<RtpSession>,
    pub to: String,
    pub trunk_id: uuid::Uuid,
}

/// What the ringing leg did.
pub(crate) enum Progress {
    Ringing,
    /// 183 with SDP: the far end's media address.
    Early(SocketAddr),
    /// 2xx: the dialog, the far end's media address.
    Answered(Box<Dialog>, SocketAddr),
    /// It will not be answered: what to tell the caller, why, and the far
    /// end's status if one came.
    Failed(StatusCode, &'static str, Option<u16>),
}

/// The answered leg.
pub(crate) struct Leg {
    pub dialog: Dialog,
    pub cseq: CSeq,
    pub media: Arc<RtpSession>,
    pub in_dialog: mpsc::UnboundedReceiver<InDialog>,
    pub to: String,
    pub trunk_id: uuid::Uuid,
    pub call_id: String,
}

/// Why a forwarding leg could not start: the caller's answer.
pub(crate) struct NotPlaced(pub StatusCode, pub &'static str);

impl Dialing {
    /// Places the INVITE through `trunk` to `to` (E.164) as `from`.
    pub async fn start(
        sip: Arc<Sip>,
        trunk: &trunk::Model,
        to: &str,
        from: &str,
        law: Law,
    ) -> Result<Dialing, NotPlaced> {
        if !trunk.enabled {
            return Err(NotPlaced(
                StatusCode::TemporarilyUnavailable,
                "trunk_disabled",
            ));
        }
        if sip
            .outbound
            .cps
            .take(trunk.id, trunk.cps_limit.max(1) as u32)
            .is_err()
        {
            return Err(NotPlaced(StatusCode::ServiceUnavailable, "trunk_cps_limit"));
        }
        let creds = match (&trunk.auth_username, &trunk.auth_password_sealed) {
            (Some(u), Some(sealed)) => match sip.sealer.open(sealed) {
                Ok(p) => Some((u.clone(), String::from_utf8_lossy(&p).into_owned())),
                Err(e) => {
                    tracing::error!(error = %e, trunk_id = %trunk.id, "trunk password not readable");
                    None
                }
            },
            _ => None,
        };
        let s = &sip.settings;
        let media = RtpSession::start(SessionConfig {
            bind: s.rtp_bind,
            ports: s.rtp_port_min..=s.rtp_port_max,
            codec: law,
            telephone_event: Some(101),
            remote: None,
            inactivity: Duration::from_secs(s.rtp_timeout_secs),
            ..SessionConfig::default()
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "no media session for a forwarded call");
            NotPlaced(StatusCode::ServiceUnavailable, "no_media")
        })?;
        let local = media.local_addr();
        let ip: IpAddr = s.rtp_advertise.unwrap_or_else(|| {
            if !local.ip().is_unspecified() {
                local.ip()
            } else {
                sip.uac.advertised(None).ip()
            }
        });
        let offer = sdp::answer(
            SocketAddr::new(ip, local.port()),
            &sdp::Negotiated {
                codec: law,
                telephone_event: Some(101),
                ptime: 20,
                direction: sdp::Direction::SendRecv,
            },
            rand::random::<u32>() as u64,
        );
        let host = host_part(&trunk.host);
        let tp = if trunk.transport == "tcp" {
            ";transport=tcp"
        } else {
            ""
        };
        let request = InviteRequest {
            target: format!("sip:{to}@{host}:{}{tp}", trunk.port),
            from: format!("sip:{from}@{host}"),
            from_display: None,
            to: format!("sip:{to}@{host}"),
            contact_user: from.trim_start_matches('+').to_owned(),
            sdp: offer,
        };
        let calling = match sip.uac.invite(&request, s.rtp_advertise).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "forwarded call not placed");
                media.close().await;
                return Err(NotPlaced(StatusCode::ServiceUnavailable, "failed"));
            }
        };
        Ok(Dialing {
            sip,
            calling,
            request,
            creds,
            retried: false,
            media: Arc::new(media),
            to: to.to_owned(),
            trunk_id: trunk.id,
        })
    }

    pub fn call_id(&self) -> String {
        self.calling.call_id().to_owned()
    }

    /// The next thing that happened (cancel-safe: it only reads a channel,
    /// or repeats the INVITE with credentials).
    pub async fn next(&mut self) -> Progress {
        loop {
            let Some(ev) = self.calling.next().await else {
                return Progress::Failed(StatusCode::TemporarilyUnavailable, "failed", None);
            };
            match ev {
                InviteEvent::Provisional(183, body) if !body.is_empty() => {
                    match remote_of(&body, self.media.codec()) {
                        Some(r) => return Progress::Early(r),
                        None => return Progress::Ringing,
                    }
                }
                InviteEvent::Provisional(_, _) => return Progress::Ringing,
                InviteEvent::Answered(d, body) => match remote_of(&body, self.media.codec()) {
                    Some(r) => return Progress::Answered(d, r),
                    None => {
                        // An answer we cannot use: end that dialog.
                        self.sip
                            .uac
                            .bye(&d, self.calling.cseq() + 1, self.sip.settings.rtp_advertise)
                            .await;
                        return Progress::Failed(
                            StatusCode::NotAcceptableHere,
                            "bad_answer",
                            Some(200),
                        );
                    }
                },
                InviteEvent::Failed(code @ (401 | 407)) if !self.retried => {
                    let Some((user, pass)) = self.creds.clone() else {
                        return Progress::Failed(
                            StatusCode::ServiceUnavailable,
                            "auth_required",
                            Some(code),
                        );
                    };
                    let Some(auth) = self
                        .calling
                        .challenge()
                        .and_then(|c| authorization(&c, &user, &pass, &self.request.target))
                    else {
                        return Progress::Failed(
                            StatusCode::ServiceUnavailable,
                            "failed",
                            Some(code),
                        );
                    };
                    let retry = Retry {
                        call_id: self.calling.call_id().to_owned(),
                        from_tag: self.calling.from_tag(),
                        cseq: self.calling.cseq() + 1,
                        header_name: if code == 401 {
                            "Authorization"
                        } else {
                            "Proxy-Authorization"
                        },
                        header_value: auth,
                    };
                    self.retried = true;
                    match self
                        .sip
                        .uac
                        .invite_with(&self.request, self.sip.settings.rtp_advertise, Some(&retry))
                        .await
                    {
                        Ok(c) => self.calling = c,
                        Err(_) => {
                            return Progress::Failed(
                                StatusCode::ServiceUnavailable,
                                "failed",
                                Some(code),
                            );
                        }
                    }
                }
                InviteEvent::Failed(code) => {
                    let (status, cause) = caller_status(code);
                    return Progress::Failed(status, cause, Some(code));
                }
            }
        }
    }

    /// CANCELs the INVITE (a 2xx that crossed it gets a BYE), then frees
    /// the leg's media.
    pub async fn cancel(mut self) {
        self.calling.cancel().await;
        let crossed = tokio::time::timeout(CANCEL_WAIT, async {
            loop {
                match self.calling.next().await {
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
                .bye(&d, self.calling.cseq() + 1, self.sip.settings.rtp_advertise)
                .await;
        }
        self.media.close().await;
    }

    /// The answered leg (its in-dialog requests now reach it).
    pub fn answered(self, dialog: Dialog) -> Leg {
        let cseq = CSeq::default();
        for _ in 1..self.calling.cseq() {
            cseq.next();
        }
        let (tx, in_dialog) = mpsc::unbounded_channel();
        self.sip.uac.track(&dialog, tx);
        Leg {
            call_id: dialog.call_id.clone(),
            dialog,
            cseq,
            media: self.media,
            in_dialog,
            to: self.to,
            trunk_id: self.trunk_id,
        }
    }
}

impl Leg {
    /// Ends the leg from our side.
    pub async fn hang_up(&self, sip: &Sip) {
        sip.uac
            .bye(&self.dialog, self.cseq.next(), sip.settings.rtp_advertise)
            .await;
    }

    /// Stops tracking the dialog and frees the media; the leg's statistics.
    pub async fn close(&self, sip: &Sip) -> crate::media::session::Stats {
        sip.uac.forget(&self.dialog);
        let stats = self.media.stats();
        self.media.close().await;
        stats
    }
}

/// The far end's media address, if its SDP has the leg's law.
fn remote_of(body: &[u8], law: Law) -> Option<SocketAddr> {
    let o = sdp::parse_offer(body).ok()?;
    let n = o.negotiate().ok()?;
    (n.codec == law).then_some(o.remote).flatten()
}

/// What the caller hears when the forwarded leg is refused with `code`.
fn caller_status(code: u16) -> (StatusCode, &'static str) {
    match code {
        486 | 600 | 603 => (StatusCode::BusyHere, "busy"),
        404 | 410 | 484 | 604 => (StatusCode::NotFound, "not_found"),
        408 | 480 | 487 => (StatusCode::TemporarilyUnavailable, "no_answer"),
        488 | 606 => (StatusCode::NotAcceptableHere, "failed"),
        _ => (StatusCode::ServiceUnavailable, "failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_what_the_caller_hears() {
        assert_eq!(caller_status(486).0, StatusCode::BusyHere);
        assert_eq!(caller_status(603).1, "busy");
        assert_eq!(caller_status(404).0, StatusCode::NotFound);
        assert_eq!(caller_status(408).0, StatusCode::TemporarilyUnavailable);
        assert_eq!(caller_status(500).0, StatusCode::ServiceUnavailable);
        assert_eq!(caller_status(403).0, StatusCode::ServiceUnavailable);
    }
}
