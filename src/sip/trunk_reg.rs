//! Trunk registration: trunks with `register` get a REGISTER (From/To
//! `sip:<user>@<host>`, the user the trunk's auth username or else its
//! caller id; our Contact; `Expires` the trunk's `register_expires_secs`).
//! A 401/407 is answered once with the trunk's digest credentials. The
//! registration is refreshed halfway through the lifetime granted (the
//! Contact's `expires`, else the Expires header, else the one asked for),
//! with the same Call-ID and a growing CSeq; a failure is retried after
//! [`RETRY_AFTER`]. The outcome is kept in memory per node and shown in the
//! trunk views as `registration`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rsipstack::sip::{Response, StatusCodeKind};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Sip;
use super::trunks::{self, Swept, trunk};
use super::uac::{RegisterRequest, response_header};

/// How long a REGISTER may go unanswered.
const WAIT: Duration = Duration::from_secs(5);
/// After a failure, the next try.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The last REGISTER's outcome for a trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TrunkRegistration {
    /// `registered` or `failed`.
    pub status: &'static str,
    pub last_attempt_at: DateTime<Utc>,
    /// The final answer's status (null when none came).
    pub last_status_code: Option<u16>,
    /// When the registration runs out (registered only).
    pub expires_at: Option<DateTime<Utc>>,
}

/// One trunk's registration on this node.
#[derive(Debug)]
struct State {
    /// What the registration was made for (host, port, transport, user,
    /// lifetime): a change starts a new one.
    made_for: String,
    call_id: String,
    from_tag: String,
    cseq: u32,
    next_at: Instant,
    view: Option<TrunkRegistration>,
}

/// The trunks' registrations on this node.
#[derive(Debug, Default)]
pub struct Registrations {
    by_trunk: Mutex<HashMap<Uuid, State>>,
}

impl Registrations {
    pub fn get(&self, trunk: Uuid) -> Option<TrunkRegistration> {
        self.by_trunk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&trunk)
            .and_then(|s| s.view.clone())
    }
}

fn user_of(t: &trunk::Model) -> String {
    t.auth_username
        .clone()
        .unwrap_or_else(|| t.caller_id.clone())
}

fn made_for(t: &trunk::Model) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        t.host,
        t.port,
        t.transport,
        user_of(t),
        t.register_expires_secs,
        t.auth_password_sealed.as_deref().unwrap_or("")
    )
}

/// The lifetime granted by a 2xx: the Contact's `expires`, else the
/// Expires header, else what we asked for.
fn granted(r: &Response, asked: u32) -> u32 {
    let from_contact = r
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("Contact"))
        .find_map(|h| {
            let v = h.value().to_ascii_lowercase();
            let at = v.find("expires=")?;
            v[at + 8..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u32>()
                .ok()
        });
    from_contact
        .or_else(|| response_header(r, "Expires").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(asked)
        .min(asked.max(1))
}

/// One REGISTER (and its answer to a challenge) for `t`.
async fn register(sip: &Sip, t: &trunk::Model) {
    let key = made_for(t);
    let (call_id, from_tag, cseq) = {
        let mut m = sip
            .registrations
            .by_trunk
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let s = m.entry(t.id).or_insert_with(|| State {
            made_for: key.clone(),
            call_id: format!("{}@switchboard", Uuid::new_v4().simple()),
            from_tag: Uuid::new_v4().simple().to_string()[..10].to_owned(),
            cseq: 0,
            next_at: Instant::now(),
            view: None,
        });
        if s.made_for != key {
            s.made_for = key;
            s.call_id = format!("{}@switchboard", Uuid::new_v4().simple());
            s.cseq = 0;
            s.view = None;
        }
        s.cseq += 2;
        (s.call_id.clone(), s.from_tag.clone(), s.cseq - 1)
    };
    let host = super::outbound::host_part(&t.host);
    let tp = if t.transport == "tcp" {
        ";transport=tcp"
    } else {
        ""
    };
    let registrar = format!("sip:{host}:{}{tp}", t.port);
    let user = user_of(t);
    let asked = u32::try_from(t.register_expires_secs)
        .unwrap_or(3600)
        .max(1);
    let mut req = RegisterRequest {
        registrar: registrar.clone(),
        aor: format!("sip:{user}@{host}"),
        user: user.clone(),
        call_id,
        from_tag,
        cseq,
        expires: asked,
        authorization: None,
    };
    let advertise = sip.settings.rtp_advertise;
    let mut answer = sip.uac.register(&req, advertise, WAIT).await;
    if let Ok(r) = &answer {
        let code = u16::from(r.status_code.clone());
        if code == 401 || code == 407 {
            let (challenge_name, auth_name) = if code == 401 {
                ("WWW-Authenticate", "Authorization")
            } else {
                ("Proxy-Authenticate", "Proxy-Authorization")
            };
            let creds = match (&t.auth_username, &t.auth_password_sealed) {
                (Some(u), Some(sealed)) => sip
                    .sealer
                    .open(sealed)
                    .ok()
                    .map(|p| (u.clone(), String::from_utf8_lossy(&p).into_owned())),
                _ => None,
            };
            let auth = creds.and_then(|(u, p)| {
                let c = response_header(r, challenge_name)?;
                super::outbound::authorization_for("REGISTER", c, &u, &p, &registrar)
            });
            if let Some(a) = auth {
                req.cseq += 1;
                req.authorization = Some((auth_name, a));
                answer = sip.uac.register(&req, advertise, WAIT).await;
            }
        }
    }
    let now = Utc::now();
    let (view, next) = match answer {
        Ok(r) if r.status_code.kind() == StatusCodeKind::Successful => {
            let g = granted(&r, asked);
            (
                TrunkRegistration {
                    status: "registered",
                    last_attempt_at: now,
                    last_status_code: Some(u16::from(r.status_code.clone())),
                    expires_at: Some(now + chrono::Duration::seconds(i64::from(g))),
                },
                Duration::from_secs(u64::from(g / 2).max(1)),
            )
        }
        Ok(r) => {
            let code = u16::from(r.status_code.clone());
            tracing::info!(trunk = %t.id, code, "trunk registration refused");
            (
                TrunkRegistration {
                    status: "failed",
                    last_attempt_at: now,
                    last_status_code: Some(code),
                    expires_at: None,
                },
                RETRY_AFTER,
            )
        }
        Err(e) => {
            tracing::info!(trunk = %t.id, error = %e, "trunk registration unanswered");
            (
                TrunkRegistration {
                    status: "failed",
                    last_attempt_at: now,
                    last_status_code: None,
                    expires_at: None,
                },
                RETRY_AFTER,
            )
        }
    };
    let mut m = sip
        .registrations
        .by_trunk
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(s) = m.get_mut(&t.id) {
        // The CSeq after ours (the retry took one).
        s.cseq = s.cseq.max(req.cseq);
        s.next_at = Instant::now() + next;
        s.view = Some(view);
    }
}

/// Keeps the trunks' registrations until `stop`; looks for due ones (new,
/// changed, halfway to expiry, or failed a while ago) every
/// `sip.trunk_keepalive_secs` (at most every 5 s).
pub async fn run(sip: Arc<Sip>, stop: CancellationToken) {
    let every = Duration::from_secs(sip.settings.trunk_keepalive_secs.clamp(1, 5));
    let sip = &sip;
    trunks::sweep(
        &sip.db,
        &stop,
        tokio::time::interval(every),
        Swept::Registering,
        "trunk registration",
        |found| {
            let mut m = sip
                .registrations
                .by_trunk
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let ids: std::collections::HashSet<Uuid> = found.iter().map(|t| t.id).collect();
            m.retain(|id, _| ids.contains(id));
            let now = Instant::now();
            found
                .into_iter()
                .filter(|t| match m.get(&t.id) {
                    None => true,
                    Some(s) => s.next_at <= now || s.made_for != made_for(t),
                })
                .collect()
        },
        move |t| async move {
            register(sip, &t).await;
        },
    )
    .await;
}

/// The registration of `trunk` as this node's SIP endpoint last saw it.
pub fn registration_of(state: &crate::state::AppState, trunk: Uuid) -> Option<TrunkRegistration> {
    let addrs = state.sip?;
    super::outbound::sip_for(addrs.udp)?
        .registrations
        .get(trunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::SipMessage;

    fn resp(extra: &str) -> Response {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:a@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        let Ok(SipMessage::Response(r)) = SipMessage::try_from(text.as_str()) else {
            panic!("parses");
        };
        r
    }

    #[test]
    fn the_granted_lifetime() {
        assert_eq!(
            granted(
                &resp("Contact: <sip:a@h>;expires=120\r\nExpires: 300\r\n"),
                3600
            ),
            120
        );
        assert_eq!(granted(&resp("Expires: 300\r\n"), 3600), 300);
        assert_eq!(granted(&resp(""), 600), 600);
        // Never longer than asked, and never nonsense.
        assert_eq!(granted(&resp("Expires: 99999\r\n"), 600), 600);
        assert_eq!(granted(&resp("Expires: soon\r\n"), 600), 600);
    }
}
