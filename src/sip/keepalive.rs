//! OPTIONS keep-alive of trunks: every `sip.trunk_keepalive_secs` each
//! enabled trunk (of every tenant) gets an OPTIONS; any final answer makes
//! it `up`, no answer within [`PROBE_WAIT`] or a transport error `down`.
//! The outcome is kept in memory on each node ([`Health`]) and shown in the
//! trunk views; calls through a `down` trunk still go out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Sip;
use super::trunks::{self, Swept, trunk};

/// How long an OPTIONS may go unanswered before the trunk is `down`.
pub const PROBE_WAIT: Duration = Duration::from_secs(5);

/// The last OPTIONS' outcome for a trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TrunkHealth {
    /// `up` (a final answer came) or `down` (none within 5 s, or a
    /// transport error).
    pub status: &'static str,
    pub last_checked_at: DateTime<Utc>,
    /// The answer's status code (null when `down`).
    pub last_status_code: Option<u16>,
    /// Round-trip time of the OPTIONS (null when `down`).
    pub rtt_ms: Option<u64>,
}

/// The trunks' health on this node.
#[derive(Debug, Default)]
pub struct Health {
    by_trunk: Mutex<HashMap<Uuid, TrunkHealth>>,
}

impl Health {
    pub fn get(&self, trunk: Uuid) -> Option<TrunkHealth> {
        self.by_trunk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&trunk)
            .cloned()
    }

    fn set(&self, trunk: Uuid, h: TrunkHealth) {
        self.by_trunk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(trunk, h);
    }

    /// Forgets trunks that are gone or disabled.
    fn keep_only(&self, ids: &[Uuid]) {
        let keep: std::collections::HashSet<&Uuid> = ids.iter().collect();
        self.by_trunk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| keep.contains(id));
    }
}

/// The trunk's URI as the OPTIONS' Request-URI.
fn target_of(t: &trunk::Model) -> String {
    let tp = if t.transport == "tcp" {
        ";transport=tcp"
    } else {
        ""
    };
    format!("sip:{}:{}{tp}", super::outbound::host_part(&t.host), t.port)
}

async fn probe(sip: &Sip, t: &trunk::Model) -> TrunkHealth {
    let start = Instant::now();
    let answer = sip
        .uac
        .options(&target_of(t), sip.settings.rtp_advertise, PROBE_WAIT)
        .await;
    let rtt = start.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
    match answer {
        Ok(code) => TrunkHealth {
            status: "up",
            last_checked_at: Utc::now(),
            last_status_code: Some(code),
            rtt_ms: Some(rtt),
        },
        Err(e) => {
            tracing::debug!(trunk = %t.id, error = %e, "trunk OPTIONS unanswered");
            TrunkHealth {
                status: "down",
                last_checked_at: Utc::now(),
                last_status_code: None,
                rtt_ms: None,
            }
        }
    }
}

/// Probes the trunks every `sip.trunk_keepalive_secs` until `stop`: each
/// round every enabled trunk, a few at a time.
pub async fn run(sip: Arc<Sip>, stop: CancellationToken) {
    let every = Duration::from_secs(sip.settings.trunk_keepalive_secs.max(1));
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let sip = &sip;
    trunks::sweep(
        &sip.db,
        &stop,
        tick,
        Swept::Enabled,
        "trunk keep-alive",
        |found| {
            sip.health
                .keep_only(&found.iter().map(|t| t.id).collect::<Vec<_>>());
            found
        },
        move |t| async move {
            let h = probe(sip, &t).await;
            sip.health.set(t.id, h);
        },
    )
    .await;
}

/// The health of `trunk` as this node's SIP endpoint last saw it (None
/// when SIP is off or the trunk was not checked yet).
pub fn health_of(state: &crate::state::AppState, trunk: Uuid) -> Option<TrunkHealth> {
    let addrs = state.sip?;
    super::outbound::sip_for(addrs.udp)?.health.get(trunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let mut t = trunk::Model {
            id: Uuid::now_v7(),
            tenant_id: crate::ids::TenantId::new(),
            name: "t".into(),
            host: "sip.example.com".into(),
            port: 5080,
            transport: "udp".into(),
            auth_username: None,
            auth_password_sealed: None,
            caller_id: "+15550100".into(),
            cps_limit: 1,
            enabled: true,
            created_at: Utc::now(),
            register: false,
            register_expires_secs: 3600,
        };
        assert_eq!(target_of(&t), "sip:sip.example.com:5080");
        t.transport = "tcp".into();
        t.host = "::1".into();
        assert_eq!(target_of(&t), "sip:[::1]:5080;transport=tcp");
    }
}
