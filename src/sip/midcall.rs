//! Requests inside an established call, common to every kind of leg: a
//! re-INVITE (hold, unhold, a new media address) is answered here against
//! the leg's [`RtpSession`]; REFER is parsed here and carried out by the
//! leg's owner.
//!
//! Hold follows RFC 3264 section 8.4 and RFC 6337: an offer that is
//! `sendonly` or `inactive`, or whose connection address is 0.0.0.0 (the
//! old RFC 2543 way), puts the leg on hold: we answer `recvonly` or
//! `inactive`, stop sending to it, and do not count its silence as a dead
//! call. `sendrecv` (or `recvonly`) again resumes it. The leg keeps its
//! codec: an offer without it is 488 and changes nothing. A re-INVITE
//! without SDP gets our current SDP as the offer (RFC 3261 section 14.2).

use std::net::SocketAddr;
use std::time::Duration;

use rsipstack::sip::{Header, StatusCode};
use rsipstack::transaction::Transaction;

use super::sdp::{self, Direction, SdpError};
use crate::media::g711::Law;
use crate::media::session::RtpSession;

/// How long a re-INVITE's server transaction is kept for its ACK.
const ACK_WAIT: Duration = Duration::from_secs(34);

/// What a re-INVITE changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldChange {
    /// The far end put the call on hold.
    Held,
    /// The far end took it off hold.
    Resumed,
    /// Nothing about hold (a refresh, a new address, or a refusal).
    Unchanged,
}

impl HoldChange {
    /// The interaction event for it, if any.
    pub fn event(self) -> Option<&'static str> {
        match self {
            HoldChange::Held => Some("held"),
            HoldChange::Resumed => Some("resumed"),
            HoldChange::Unchanged => None,
        }
    }
}

/// How we present ourselves in a leg's answers.
#[derive(Debug, Clone)]
pub struct LegSdp {
    /// The media address we put in SDP.
    pub media: SocketAddr,
    /// Our Contact header value.
    pub contact: String,
    pub session_id: u64,
}

/// Answers a re-INVITE on `media`'s leg and keeps its transaction alive
/// until the ACK (on a task of its own).
pub async fn answer_reinvite(mut tx: Transaction, media: &RtpSession, us: &LegSdp) -> HoldChange {
    let was_held = media.is_held();
    let law = media.codec();
    let te = media.inner().telephone_event();
    let (status, direction, warning) = if tx.original.body.iter().all(|b| b.is_ascii_whitespace()) {
        (StatusCode::OK, None, None)
    } else {
        match sdp::parse_offer(&tx.original.body) {
            Err(SdpError::Malformed(why)) => (StatusCode::BadRequest, None, Some(why)),
            Err(SdpError::NotAcceptable(why)) => (StatusCode::NotAcceptableHere, None, Some(why)),
            Ok(offer) if !offers(&offer, law) => (
                StatusCode::NotAcceptableHere,
                None,
                Some("the call's codec is not in the offer"),
            ),
            Ok(offer) => {
                let hold = offer.remote.is_none()
                    || matches!(offer.direction, Direction::SendOnly | Direction::Inactive);
                // They stop receiving: we stop sending.
                let mute = offer.remote.is_none()
                    || matches!(offer.direction, Direction::SendOnly | Direction::Inactive);
                if let Some(remote) = offer.remote
                    && media.remote() != Some(remote)
                {
                    media.set_remote(Some(remote));
                }
                media.set_hold(hold, mute);
                let answer = if offer.remote.is_none() && offer.direction == Direction::SendRecv {
                    Direction::RecvOnly
                } else {
                    offer.direction.answer()
                };
                (StatusCode::OK, Some(answer), None)
            }
        }
    };
    let mut headers = vec![Header::Other("Contact".into(), us.contact.clone())];
    let body = if status == StatusCode::OK {
        headers.push(Header::Other(
            "Content-Type".into(),
            "application/sdp".into(),
        ));
        let n = sdp::Negotiated {
            codec: law,
            telephone_event: te,
            ptime: 20,
            direction: direction.unwrap_or(if media.is_held() {
                Direction::RecvOnly
            } else {
                Direction::SendRecv
            }),
        };
        Some(sdp::answer(us.media, &n, us.session_id).into_bytes())
    } else {
        if let Some(w) = warning {
            headers.push(Header::Other(
                "Warning".into(),
                format!("399 switchboard \"{w}\""),
            ));
        }
        None
    };
    if let Err(e) = tx.reply_with(status, headers, body).await {
        tracing::debug!(error = %e, "re-INVITE answer not sent");
    }
    tokio::spawn(async move {
        let _ =
            tokio::time::timeout(ACK_WAIT, async { while tx.receive().await.is_some() {} }).await;
    });
    match (was_held, media.is_held()) {
        (false, true) => HoldChange::Held,
        (true, false) => HoldChange::Resumed,
        _ => HoldChange::Unchanged,
    }
}

/// Whether the offer carries the leg's G.711 law.
fn offers(offer: &sdp::Offer, law: Law) -> bool {
    let want = match law {
        Law::Ulaw => ("pcmu", 0),
        Law::Alaw => ("pcma", 8),
    };
    offer
        .formats
        .iter()
        .any(|&pt| match offer.rtpmap.iter().find(|(p, _, _)| *p == pt) {
            Some((_, name, 8000)) => name.eq_ignore_ascii_case(want.0),
            Some(_) => false,
            None => pt == want.1,
        })
}

/// Declines a request we do not take in this call state.
pub async fn refuse(mut tx: Transaction, status: StatusCode, why: &str) {
    let headers = vec![Header::Other(
        "Warning".into(),
        format!("399 switchboard \"{why}\""),
    )];
    if let Err(e) = tx.reply_with(status, headers, None).await {
        tracing::debug!(error = %e, "in-dialog refusal not sent");
    }
}

/// What a REFER asks for (RFC 3515): where the transferred party goes,
/// and for an attended transfer (RFC 3891 Replaces) the dialog it
/// replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refer {
    /// The target's user part (a number, an account or an extension).
    pub user: String,
    pub host: String,
    pub replaces: Option<Replaces>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
}

/// Reads the Refer-To of a REFER; `Err` is why it cannot be taken (400).
pub fn parse_refer(req: &rsipstack::sip::Request) -> Result<Refer, &'static str> {
    let values: Vec<&str> = req
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("Refer-To") || h.name().eq_ignore_ascii_case("r"))
        .map(|h| h.value())
        .collect();
    let [value] = values[..] else {
        return Err("exactly one Refer-To is needed");
    };
    let value = value.trim();
    if value.len() > 1024 {
        return Err("Refer-To is too long");
    }
    // name-addr or bare URI; the URI may carry ?headers.
    let uri = match (value.find('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        (None, None) => value.split(';').next().unwrap_or(value),
        _ => return Err("Refer-To is malformed"),
    };
    let (uri, query) = match uri.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (uri, None),
    };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("tel:"))
        .ok_or("Refer-To must be a sip: or tel: URI")?;
    let rest = rest.split(';').next().unwrap_or(rest);
    let (user, host) = match rest.split_once('@') {
        Some((u, h)) => (u, h),
        None if uri.starts_with("tel:") => (rest, ""),
        None => return Err("Refer-To has no user part"),
    };
    let user = percent_decode(user).ok_or("Refer-To's user part is malformed")?;
    if user.is_empty()
        || user.len() > 64
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(c))
    {
        return Err("Refer-To's user part is not a number or an account");
    }
    let mut replaces = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.eq_ignore_ascii_case("replaces") {
            let v = percent_decode(v).ok_or("Replaces is malformed")?;
            replaces = Some(parse_replaces(&v).ok_or("Replaces is malformed")?);
        }
    }
    Ok(Refer {
        user,
        host: host.chars().take(255).collect(),
        replaces,
    })
}

/// The E.164 a transfer may go to: a valid number of the tenant's own
/// country (`region`), not premium-rate (toll-fraud guard).
/// [`transfer_target`] in the tenant's default region.
pub async fn tenant_transfer_target(
    db: &sea_orm::DatabaseConnection,
    t: crate::ids::TenantId,
    user: &str,
) -> Result<String, &'static str> {
    use sea_orm::EntityTrait;
    let region = crate::iam::entity::tenant::Entity::find_by_id(t)
        .one(db)
        .await
        .ok()
        .flatten()
        .map(|t| t.default_region)
        .unwrap_or_default();
    transfer_target(user, &region)
}

pub fn transfer_target(user: &str, region: &str) -> Result<String, &'static str> {
    let p = crate::contacts::domain::parse_phone(user, region)
        .map_err(|_| "the transfer target is not a phone number")?;
    if p.region.as_deref() != Some(region) {
        return Err("transfers go only to numbers in the tenant's own country");
    }
    let n = phonenumber::parse(None, &p.e164)
        .map_err(|_| "the transfer target is not a phone number")?;
    if matches!(
        n.number_type(&phonenumber::metadata::DATABASE),
        phonenumber::Type::PremiumRate | phonenumber::Type::SharedCost
    ) {
        return Err("transfers to premium-rate numbers are not allowed");
    }
    Ok(p.e164)
}

fn parse_replaces(v: &str) -> Option<Replaces> {
    let mut parts = v.split(';');
    let call_id = parts.next()?.trim().to_owned();
    let (mut to_tag, mut from_tag) = (None, None);
    for p in parts {
        let (k, val) = p.split_once('=')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "to-tag" => to_tag = Some(val.trim().to_owned()),
            "from-tag" => from_tag = Some(val.trim().to_owned()),
            _ => {}
        }
    }
    (!call_id.is_empty() && call_id.len() <= 256).then_some(())?;
    Some(Replaces {
        call_id,
        to_tag: to_tag?,
        from_tag: from_tag?,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::SipMessage;

    fn refer(refer_to: &str) -> rsipstack::sip::Request {
        let text = format!(
            "REFER sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKr\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REFER\r\n{refer_to}Content-Length: 0\r\n\r\n"
        );
        match SipMessage::try_from(text.as_str()) {
            Ok(SipMessage::Request(r)) => r,
            _ => panic!("parses"),
        }
    }

    #[test]
    fn blind_and_attended_refer_to_are_read() {
        let r = parse_refer(&refer("Refer-To: <sip:+15550100@example.com>\r\n")).unwrap();
        assert_eq!(r.user, "+15550100");
        assert_eq!(r.host, "example.com");
        assert!(r.replaces.is_none());
        let r = parse_refer(&refer(
            "Refer-To: <sip:bob@example.com?Replaces=abc%40h%3Bto-tag%3D11%3Bfrom-tag%3D22>\r\n",
        ))
        .unwrap();
        assert_eq!(
            r.replaces,
            Some(Replaces {
                call_id: "abc@h".into(),
                to_tag: "11".into(),
                from_tag: "22".into()
            })
        );
        let r = parse_refer(&refer("Refer-To: sip:1001@example.com;user=phone\r\n")).unwrap();
        assert_eq!(r.user, "1001");
    }

    #[test]
    fn transfer_targets_stay_in_the_country_and_off_premium_rate() {
        assert_eq!(
            transfer_target("02071838770", "GB").unwrap(),
            "+442071838770"
        );
        assert_eq!(
            transfer_target("+442071838770", "GB").unwrap(),
            "+442071838770"
        );
        assert!(
            transfer_target("+12024561111", "GB").is_err(),
            "another country"
        );
        assert!(
            transfer_target("09001234567", "GB").is_err(),
            "premium rate"
        );
        assert!(transfer_target("alice", "GB").is_err());
    }

    #[test]
    fn bad_refer_to_is_refused() {
        for h in [
            "",
            "Refer-To: <sip:a@b>\r\nRefer-To: <sip:c@d>\r\n",
            "Refer-To: <http://evil/>\r\n",
            "Refer-To: <sip:example.com>\r\n",
            "Refer-To: <sip:a%ZZ@b>\r\n",
            "Refer-To: <sip:a;b@c>\r\n",
            "Refer-To: <sip:bob@x?Replaces=abc%3Bto-tag%3D1>\r\n",
        ] {
            assert!(parse_refer(&refer(h)).is_err(), "{h:?}");
        }
        let long = format!("Refer-To: <sip:{}@x>\r\n", "1".repeat(2000));
        assert!(parse_refer(&refer(&long)).is_err());
    }
}
