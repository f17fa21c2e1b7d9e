//! Login throttling: failed attempts counted per account and per client
//! address in a sliding window. Kept in memory on each node; in a cluster
//! the effective limit is per node (documented in ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    per_account: u32,
    per_address: u32,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Throttle {
    pub fn new(window: Duration, per_account: u32, per_address: u32) -> Self {
        Self {
            window,
            per_account,
            per_address,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Normalised like the sign-in lookup (which trims the workspace and
    /// trims and lower-cases the email), so that spelling variants of one
    /// account share one count.
    fn account_key(tenant: &str, email: &str) -> String {
        format!(
            "acct\u{0}{}\u{0}{}",
            tenant.trim().to_lowercase(),
            email.trim().to_lowercase()
        )
    }

    fn address_key(addr: &str) -> String {
        format!("addr\u{0}{addr}")
    }

    /// `Some(seconds)` to wait when either the account or the address has
    /// used up its failures in the window.
    pub fn check(&self, tenant: &str, email: &str, addr: &str, now: Instant) -> Option<u64> {
        let mut map = self.failures.lock().expect("throttle lock poisoned");
        let mut wait = None;
        for (key, limit) in [
            (Self::account_key(tenant, email), self.per_account),
            (Self::address_key(addr), self.per_address),
        ] {
            if let Some(list) = map.get_mut(&key) {
                list.retain(|t| now.duration_since(*t) < self.window);
                if list.len() as u32 >= limit {
                    let oldest = list[0];
                    let secs = self
                        .window
                        .saturating_sub(now.duration_since(oldest))
                        .as_secs()
                        .max(1);
                    wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
                }
            }
        }
        wait
    }

    pub fn record_failure(&self, tenant: &str, email: &str, addr: &str, now: Instant) {
        let mut map = self.failures.lock().expect("throttle lock poisoned");
        for key in [Self::account_key(tenant, email), Self::address_key(addr)] {
            map.entry(key).or_default().push(now);
        }
        // Keep memory bounded under a flood of distinct keys.
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < window));
        }
    }

    /// A successful login clears the account's failures (not the address's:
    /// one good password must not reset an attacker's count for others).
    pub fn record_success(&self, tenant: &str, email: &str) {
        self.failures
            .lock()
            .expect("throttle lock poisoned")
            .remove(&Self::account_key(tenant, email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_account_then_expires() {
        let t = Throttle::new(Duration::from_secs(60), 3, 100);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check("demo", "a@x.com", "1.1.1.1", now), None);
            t.record_failure("demo", "A@x.com", "1.1.1.1", now);
        }
        let wait = t
            .check("demo", "a@x.com", "2.2.2.2", now)
            .expect("locked from any address");
        assert!((59..=60).contains(&wait));
        assert_eq!(
            t.check("demo", "b@x.com", "2.2.2.2", now),
            None,
            "other accounts unaffected"
        );
        assert!(
            t.check(" demo\t", " A@X.com ", "3.3.3.3", now).is_some(),
            "spelling variants of the workspace and email are the same account"
        );
        assert_eq!(
            t.check("demo", "a@x.com", "1.1.1.1", now + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn locks_address_across_accounts() {
        let t = Throttle::new(Duration::from_secs(60), 100, 4);
        let now = Instant::now();
        for i in 0..4 {
            t.record_failure("demo", &format!("u{i}@x.com"), "9.9.9.9", now);
        }
        assert!(t.check("demo", "new@x.com", "9.9.9.9", now).is_some());
        assert!(t.check("demo", "new@x.com", "8.8.8.8", now).is_none());
    }

    #[test]
    fn success_clears_account() {
        let t = Throttle::new(Duration::from_secs(60), 2, 100);
        let now = Instant::now();
        t.record_failure("demo", "a@x.com", "1.1.1.1", now);
        t.record_success("demo", "a@x.com");
        t.record_failure("demo", "a@x.com", "1.1.1.1", now);
        assert!(t.check("demo", "a@x.com", "1.1.1.1", now).is_none());
    }
}
