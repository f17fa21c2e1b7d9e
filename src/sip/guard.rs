//! The SIP endpoint's defences, in memory on each node: a per-source
//! request rate limit, bans after repeated authentication failures, and the
//! user agents of known scanners.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// User agents of SIP scanners (SIPVicious and friends): dropped unanswered.
const SCANNERS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "vaxsipuseragent",
    "sip-scan",
    "sipsak",
    "iwar",
    "sundayddr",
];

pub fn is_scanner(user_agent: &str) -> bool {
    let ua = user_agent.to_ascii_lowercase();
    SCANNERS.iter().any(|s| ua.contains(s))
}

#[derive(Debug, Default)]
struct Source {
    /// Requests in the current one-second window.
    window_start: Option<Instant>,
    requests: u32,
    failures: Vec<Instant>,
    banned_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Guard {
    per_sec: u32,
    failures: u32,
    window: Duration,
    ban: Duration,
    sources: Mutex<HashMap<IpAddr, Source>>,
}

impl Guard {
    pub fn new(per_sec: u32, failures: u32, window: Duration, ban: Duration) -> Self {
        Self {
            per_sec,
            failures,
            window,
            ban,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a message from `ip` is let in: not banned and within the rate.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.sources.lock().expect("sip guard lock");
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, s| {
                s.banned_until.is_some_and(|t| t > now)
                    || s.failures
                        .last()
                        .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let s = map.entry(ip).or_default();
        if s.banned_until.is_some_and(|t| t > now) {
            return false;
        }
        match s.window_start {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => {
                s.requests += 1;
                s.requests <= self.per_sec
            }
            _ => {
                s.window_start = Some(now);
                s.requests = 1;
                true
            }
        }
    }

    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self.sources.lock().expect("sip guard lock");
        map.get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|t| t > now)
    }

    /// Counts a failed authentication; `true` when it bans the source now.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.sources.lock().expect("sip guard lock");
        let s = map.entry(ip).or_default();
        s.failures.retain(|t| now.duration_since(*t) < self.window);
        s.failures.push(now);
        if s.failures.len() as u32 >= self.failures {
            s.failures.clear();
            s.banned_until = Some(now + self.ban);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_are_recognised() {
        assert!(is_scanner("friendly-scanner"));
        assert!(is_scanner("SIPVicious 0.3"));
        assert!(is_scanner("VaxSIPUserAgent/3.1"));
        assert!(!is_scanner("Yealink SIP-T46S 66.85"));
    }

    #[test]
    fn failures_ban_for_a_while() {
        let g = Guard::new(100, 3, Duration::from_secs(60), Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(!g.record_failure(ip, t0));
        assert!(!g.record_failure(ip, t0 + Duration::from_secs(1)));
        assert!(g.admit(ip, t0 + Duration::from_secs(2)));
        assert!(g.record_failure(ip, t0 + Duration::from_secs(2)));
        assert!(!g.admit(ip, t0 + Duration::from_secs(3)));
        assert!(g.admit("192.0.2.2".parse().unwrap(), t0));
        assert!(g.admit(ip, t0 + Duration::from_secs(603)));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let g = Guard::new(100, 2, Duration::from_secs(60), Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(!g.record_failure(ip, t0));
        assert!(!g.record_failure(ip, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn rate_limit_per_second() {
        let g = Guard::new(3, 5, Duration::from_secs(60), Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| g.admit(ip, t0)));
        assert!(!g.admit(ip, t0));
        assert!(g.admit(ip, t0 + Duration::from_millis(1001)));
    }
}
