//! REGISTER (RFC 3261 section 10.3) with digest authentication (RFC 8760).
//!
//! The tenant is the one whose SIP domain (`<slug>.<sip.domain>`) is the
//! host of the To URI (the address of record); its user part must be the
//! account's username. Challenges offer `sip.digest_algorithms` in order (default SHA-256, then MD5), each with
//! qop=auth.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use chrono::Utc;
use rsipstack::sip::{Header, Request, StatusCode};
use sea_orm::entity::prelude::*;

use super::digest::{self, Algorithm, NonceState};
use super::store::{self, Binding, Origin};
use super::{Sip, tenant_domain};

/// What to answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<Header>,
}

impl Reply {
    pub(crate) fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
        }
    }
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(Header::Other(name.into(), value.into()));
        self
    }
}

/// Highest `nc` seen per nonce (this node only): a replayed response with a
/// used count is refused.
#[derive(Debug, Default)]
pub struct NonceCounts {
    seen: Mutex<std::collections::HashMap<String, (u32, u64)>>,
}

impl NonceCounts {
    /// Records `nc` for `nonce`; false when it is not higher than before.
    fn advance(&self, nonce: &str, nc: u32, now_secs: u64, ttl: u64) -> bool {
        let mut m = self.seen.lock().expect("nonce counts lock");
        if m.len() > 50_000 {
            m.retain(|_, (_, t)| now_secs.saturating_sub(*t) <= ttl);
        }
        match m.get_mut(nonce) {
            Some((last, _)) if nc <= *last => false,
            Some((last, _)) => {
                *last = nc;
                true
            }
            None => {
                m.insert(nonce.to_owned(), (nc, now_secs));
                true
            }
        }
    }
}

fn header_values<'a>(req: &'a Request, name: &str) -> Vec<&'a str> {
    req.headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| h.value())
        .collect()
}

fn first(req: &Request, name: &str) -> Option<String> {
    header_values(req, name)
        .first()
        .map(|s| s.trim().to_owned())
}

/// Splits a header value on commas that are outside quotes and `<...>`.
fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut cur) = (false, false, String::new());
    for c in v.chars() {
        match c {
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(std::mem::take(&mut cur).trim().to_owned());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

fn now_secs() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

/// The digest algorithms offered and accepted, in order of preference.
fn offered(sip: &Sip) -> Vec<Algorithm> {
    sip.settings
        .digest_algorithms
        .iter()
        .filter_map(|a| Algorithm::parse(a))
        .collect()
}

fn challenge(sip: &Sip, realm: &str, stale: bool) -> Reply {
    let nonce = sip.nonces.issue(realm, now_secs());
    let stale = if stale { ", stale=true" } else { "" };
    let mut r = Reply::new(StatusCode::Unauthorized);
    for alg in offered(sip) {
        r = r.header(
            "WWW-Authenticate",
            format!(
                "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                alg.name()
            ),
        );
    }
    r
}

/// Counts a failure against the source; bans it (warn log) at the limit.
pub(crate) fn fail(sip: &Sip, from: SocketAddr, why: &str, user: &str, realm: &str) {
    tracing::info!(source = %from, user, realm, why, "SIP authentication failed");
    if sip.guard.record_failure(from.ip(), Instant::now()) {
        tracing::warn!(
            source = %from.ip(),
            ban_secs = sip.settings.ban_secs,
            "SIP source banned after repeated authentication failures"
        );
    }
}

/// The tenant whose SIP domain is `host` (`<slug>.<sip.domain>`).
pub(crate) async fn tenant_of_domain(
    sip: &Sip,
    host: &str,
) -> Result<Option<crate::iam::entity::tenant::Model>, DbErr> {
    let host = host.to_ascii_lowercase();
    let suffix = format!(".{}", sip.settings.domain.to_ascii_lowercase());
    let slug = host
        .strip_suffix(&suffix)
        .filter(|l| !l.is_empty() && !l.contains('.'));
    match slug {
        Some(slug) => {
            crate::iam::entity::tenant::Entity::find()
                .filter(crate::iam::entity::tenant::Column::Slug.eq(slug))
                .one(&sip.db)
                .await
        }
        None => Ok(None),
    }
}

/// Digest authentication of a request (REGISTER, INVITE) against the
/// tenant's accounts in `realm`: the account, or the reply to send (a
/// challenge, or 403 counted toward a ban).
pub(crate) async fn authenticate(
    sip: &Sip,
    req: &Request,
    from: SocketAddr,
    realm: &str,
    tenant_id: crate::ids::TenantId,
) -> Result<Result<store::account::Model, Reply>, DbErr> {
    let s = &sip.settings;
    let realm = realm.to_owned();
    // Credentials for our realm.
    let creds = header_values(req, "Authorization")
        .into_iter()
        .filter_map(digest::parse_authorization)
        .find(|c| c.realm.eq_ignore_ascii_case(&realm));
    let Some(creds) = creds else {
        return Ok(Err(challenge(sip, &realm, false)));
    };
    let now = now_secs();
    match sip.nonces.check(&creds.nonce, &realm, now) {
        NonceState::Valid => {}
        NonceState::Stale => return Ok(Err(challenge(sip, &realm, true))),
        NonceState::Invalid => {
            fail(sip, from, "nonce not ours", &creds.username, &realm);
            return Ok(Err(challenge(sip, &realm, false)));
        }
    }
    if !offered(sip).contains(&creds.algorithm) {
        fail(sip, from, "algorithm not offered", &creds.username, &realm);
        return Ok(Err(challenge(sip, &realm, false)));
    }
    let account = store::find_account_by_username(&sip.db, tenant_id, &creds.username).await?;
    let ok = account.as_ref().is_some_and(|a| {
        let ha1 = match creds.algorithm {
            Algorithm::Md5 => &a.ha1_md5,
            Algorithm::Sha256 => &a.ha1_sha256,
        };
        a.realm.eq_ignore_ascii_case(&realm)
            && digest::expected_response(
                creds.algorithm,
                ha1,
                req.method.to_string().as_str(),
                &creds,
            )
            .is_some_and(|want| crate::crypto::ct_eq(want.as_bytes(), creds.response.as_bytes()))
    });
    let Some(account) = account.filter(|_| ok) else {
        fail(sip, from, "wrong credentials", &creds.username, &realm);
        return Ok(Err(Reply::new(StatusCode::Forbidden)));
    };
    if let Some(nc) = &creds.nc {
        let n = u32::from_str_radix(nc, 16).unwrap_or(0);
        if !sip.counts.advance(&creds.nonce, n, now, s.nonce_ttl_secs) {
            // A replay (or a client reusing a count): ask again.
            return Ok(Err(challenge(sip, &realm, true)));
        }
    }
    Ok(Ok(account))
}

pub async fn register(sip: &Sip, req: &Request, from: SocketAddr, transport: &str) -> Reply {
    match register_inner(sip, req, from, transport).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "REGISTER failed on the database");
            Reply::new(StatusCode::ServerInternalError).header("Retry-After", "5")
        }
    }
}

async fn register_inner(
    sip: &Sip,
    req: &Request,
    from: SocketAddr,
    transport: &str,
) -> Result<Reply, DbErr> {
    let s = &sip.settings;
    // The address of record: To.
    let Some(to) = first(req, "To") else {
        return Ok(Reply::new(StatusCode::BadRequest));
    };
    let Ok(to) = rsipstack::sip::typed::Contact::parse(&to) else {
        return Ok(Reply::new(StatusCode::BadRequest));
    };
    let aor_user = to
        .uri
        .auth
        .as_ref()
        .map(|a| a.user.clone())
        .unwrap_or_default();
    let realm = to.uri.host_with_port.host.to_string().to_ascii_lowercase();
    let tenant = tenant_of_domain(sip, &realm).await?;
    let Some(tenant) = tenant else {
        // Not a domain we serve.
        fail(sip, from, "unknown domain", &aor_user, &realm);
        return Ok(Reply::new(StatusCode::NotFound));
    };
    debug_assert_eq!(tenant_domain(&tenant.slug, &s.domain), realm);

    let account = match authenticate(sip, req, from, &realm, tenant.id).await? {
        Ok(a) => a,
        Err(reply) => return Ok(reply),
    };
    if !aor_user.eq_ignore_ascii_case(&account.username) {
        return Ok(Reply::new(StatusCode::Forbidden).header(
            "Warning",
            "399 switchboard \"the To user must be the account's username\"",
        ));
    }

    // Expiry: the Expires header, or each contact's own parameter.
    let expires_header = match first(req, "Expires") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n.min(u32::MAX as u64) as u32),
            Err(_) => return Ok(Reply::new(StatusCode::BadRequest)),
        },
    };
    let contact_values: Vec<String> = header_values(req, "Contact")
        .into_iter()
        .flat_map(split_list)
        .collect();
    let call_id = first(req, "Call-ID").unwrap_or_default();
    let cseq = first(req, "CSeq")
        .and_then(|c| {
            c.split_whitespace()
                .next()
                .and_then(|n| n.parse::<i64>().ok())
        })
        .unwrap_or(0);
    let origin = Origin {
        source: from.to_string(),
        transport: transport.to_owned(),
        user_agent: first(req, "User-Agent").map(|u| u.chars().take(200).collect()),
        call_id,
        cseq,
    };
    let t = tenant.id;
    if contact_values.iter().any(|c| c == "*") {
        if contact_values.len() != 1 || expires_header != Some(0) {
            return Ok(Reply::new(StatusCode::BadRequest));
        }
        store::remove_all(&sip.db, t, account.id).await?;
        return Ok(Reply::new(StatusCode::OK).header("Date", httpdate()));
    }
    if contact_values.len() > 20 {
        return Ok(Reply::new(StatusCode::Forbidden).header(
            "Warning",
            "399 switchboard \"at most 20 contacts per REGISTER\"",
        ));
    }
    let mut bindings = Vec::new();
    for c in &contact_values {
        let Ok(parsed) = rsipstack::sip::typed::Contact::parse(c) else {
            return Ok(Reply::new(StatusCode::BadRequest));
        };
        let param = parsed.params.iter().find_map(|p| {
            let text = p.to_string();
            let (k, v) = text.trim_start_matches(';').split_once('=')?;
            k.eq_ignore_ascii_case("expires")
                .then(|| v.trim().parse::<u64>().ok())?
        });
        let asked = param
            .map(|n| n.min(u32::MAX as u64) as u32)
            .or(expires_header)
            .unwrap_or(s.register_default_expires);
        if asked != 0 && asked < s.register_min_expires {
            return Ok(Reply::new(StatusCode::IntervalTooBrief)
                .header("Min-Expires", s.register_min_expires.to_string()));
        }
        bindings.push(Binding {
            contact: parsed.uri.to_string(),
            expires: asked.min(s.register_max_expires),
        });
    }
    let now_t = Utc::now();
    if !bindings.is_empty() {
        store::apply_bindings(&sip.db, t, account.id, &bindings, &origin, now_t).await?;
    }
    // 200 lists every current binding with its remaining time.
    let mut r = Reply::new(StatusCode::OK).header("Date", httpdate());
    for b in store::live_registrations(&sip.db, t, account.id, now_t).await? {
        let left = (b.expires_at - now_t).num_seconds().max(1);
        r = r.header("Contact", format!("<{}>;expires={left}", b.contact));
    }
    Ok(r)
}

fn httpdate() -> String {
    Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_list("<sip:a@h;x=1,2>;expires=5, \"B, b\" <sip:b@h>,sip:c@h"),
            vec!["<sip:a@h;x=1,2>;expires=5", "\"B, b\" <sip:b@h>", "sip:c@h"]
        );
        assert_eq!(split_list("*"), vec!["*"]);
    }

    #[test]
    fn nonce_counts_must_grow() {
        let c = NonceCounts::default();
        assert!(c.advance("n", 1, 0, 300));
        assert!(!c.advance("n", 1, 0, 300));
        assert!(c.advance("n", 2, 0, 300));
        assert!(c.advance("m", 1, 0, 300));
    }
}
