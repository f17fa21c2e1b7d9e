//! What every request handler can reach.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::Settings;
use crate::crypto::Sealer;
use crate::db::Database;
use crate::error::ApiResult;
use crate::iam::password::Hasher;
use crate::iam::throttle::Throttle;
use crate::ids::TenantId;
use crate::jobs::{self, JobKind, JobQueue};
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Database,
    pub hasher: Hasher,
    pub throttle: Throttle,
    pub sealer: Sealer,
    pub bus: Bus,
    pub jobs: JobQueue,
    pub metrics: Metrics,
    /// Routing: one engine per tenant.
    pub acd: Arc<crate::acd::service::Acd>,
    /// Cancelled when the service starts shutting down.
    pub shutdown: CancellationToken,
    /// The OpenAPI document, generated from the routes at start-up.
    pub openapi_json: String,
    /// The API's routes, for 405 answers.
    pub api_routes: crate::http::RouteTable,
    /// IVR flows: the engine, compiled versions, validation.
    pub flows: Arc<crate::ivr::service::Flows>,
    /// Where the SIP endpoint listens, when it runs.
    pub sip: Option<crate::sip::SipAddrs>,
}

impl AppState {
    /// Creates a job and sends it to the workers. If the send fails the job
    /// stays queued and the sweeper sends it later: it is never lost.
    pub async fn enqueue_job(
        &self,
        tenant_id: TenantId,
        kind: JobKind,
        params: serde_json::Value,
        // The actor that starts it (a user or an API key): it may follow it.
        created_by: Option<uuid::Uuid>,
    ) -> ApiResult<jobs::job::Model> {
        let job = jobs::create(&self.db.conn, tenant_id, kind, params, created_by).await?;
        if let Err(e) = self.jobs.push(job.id).await {
            tracing::warn!(job_id = %job.id, error = %e, "could not push a new job; the sweeper will retry");
        }
        Ok(job)
    }
}
