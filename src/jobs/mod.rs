//! Background jobs: long work (replays, imports, campaigns) that shows its
//! progress and survives restarts.
//!
//! Two layers:
//! - the `jobs` table is the source of truth for status, progress, the
//!   checkpoint and errors, and holds a lease so that only one runner works
//!   a job at a time;
//! - apalis carries "run job X" messages through durable storage (SQLite,
//!   PostgreSQL or Redis) to workers on any node.
//!
//! A job runs in chunks; each chunk's writes and the new checkpoint commit in
//! one transaction. On shutdown a job stops at the next chunk boundary and
//! goes back to `queued`; after a crash its lease expires. Either way a
//! sweeper pushes it again and it resumes from the checkpoint, so no work is
//! repeated or skipped. Duplicate messages are harmless: the lease admits one
//! runner and finished jobs are skipped.

pub mod entity;
pub mod http;
mod runner;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

pub use entity::job;
pub use runner::{JobQueue, Runner, run_workers, sweep};

use crate::ids::{JobId, TenantId};

/// What kinds of job exist. Each has one handler in [`runner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Re-send a range of the event feed to one webhook.
    WebhookReplay,
    /// Import contacts from an uploaded CSV.
    ContactImport,
    /// Import a do-not-call (suppression) list from an upload.
    SuppressionImport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// How a job run ended other than by success.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// Cannot succeed (bad parameters, missing objects): the job fails.
    #[error("{0}")]
    Fatal(String),
    /// Stopped at a checkpoint for shutdown: the job goes back to the queue.
    #[error("interrupted by shutdown")]
    Interrupted,
    /// Stopped at a checkpoint because someone cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// A database error: the job is retried a few times, then fails.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// What a running job can see and do.
pub struct JobCtx {
    job: job::Model,
    /// This run's lease token: its writes commit only while it holds it.
    lease: String,
    db: DatabaseConnection,
    stop: CancellationToken,
    chunk_size: u64,
}

impl JobCtx {
    pub fn id(&self) -> JobId {
        self.job.id
    }
    pub fn tenant_id(&self) -> TenantId {
        self.job.tenant_id
    }
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobFailure> {
        serde_json::from_value(self.job.params.clone())
            .map_err(|e| JobFailure::Fatal(format!("bad job parameters: {e}")))
    }
    /// Where the previous run stopped, if it did.
    pub fn checkpoint(&self) -> Option<&Value> {
        self.job.checkpoint.as_ref()
    }
    pub fn progress_done(&self) -> u64 {
        self.job.progress_done.max(0) as u64
    }
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }
    /// True when the job should stop at the next checkpoint (shutdown).
    pub fn should_stop(&self) -> bool {
        self.stop.is_cancelled()
    }
    pub async fn update_params(&self, params: Value) -> Result<(), DbErr> {
        set(&self.db, self.job.id, job::Column::Params, params).await
    }
    pub async fn set_total(&self, total: u64) -> Result<(), DbErr> {
        set(
            &self.db,
            self.job.id,
            job::Column::ProgressTotal,
            Some(total as i64),
        )
        .await
    }
    /// Records progress and the checkpoint in the caller's transaction, so
    /// they commit with the work they describe.
    pub async fn save_progress(
        &self,
        txn: &impl ConnectionTrait,
        done: u64,
        checkpoint: Value,
    ) -> Result<(), DbErr> {
        // Fenced by the lease: a run that lost it (it stalled, and another
        // run claimed the job) fails here, and its transaction, with the
        // work of the chunk, rolls back. Nothing is written twice.
        let res = job::Entity::update_many()
            .col_expr(job::Column::ProgressDone, Expr::value(done as i64))
            .col_expr(job::Column::Checkpoint, Expr::value(Some(checkpoint)))
            .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(job::Column::Id.eq(self.job.id))
            .filter(job::Column::LeaseOwner.eq(self.lease.clone()))
            .exec(txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(DbErr::Custom(
                "this run no longer holds the job's lease".into(),
            ));
        }
        Ok(())
    }
}

async fn set<V: Into<sea_orm::Value>>(
    db: &DatabaseConnection,
    id: JobId,
    col: job::Column,
    v: V,
) -> Result<(), DbErr> {
    job::Entity::update_many()
        .col_expr(col, Expr::value(v))
        .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(job::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Creates the job row (status `queued`). The caller then pushes it with
/// [`JobQueue::push`]; should that push be lost, the sweeper pushes again.
pub async fn create(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    kind: JobKind,
    params: Value,
    created_by: Option<uuid::Uuid>,
) -> Result<job::Model, DbErr> {
    let now = Utc::now();
    job::ActiveModel {
        id: Set(JobId::new()),
        tenant_id: Set(tenant_id),
        kind: Set(crate::interactions::service::enum_str(&kind)),
        status: Set(crate::interactions::service::enum_str(&JobStatus::Queued)),
        params: Set(params),
        progress_done: Set(0),
        progress_total: Set(None),
        checkpoint: Set(None),
        result: Set(None),
        error: Set(None),
        attempts: Set(0),
        cancel_requested: Set(false),
        created_by: Set(created_by),
        lease_owner: Set(None),
        lease_until: Set(None),
        pushed_at: Set(now),
        created_at: Set(now),
        updated_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    }
    .insert(db)
    .await
}

pub async fn get(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: JobId,
) -> Result<Option<job::Model>, DbErr> {
    job::Entity::find_by_id(id)
        .filter(job::Column::TenantId.eq(tenant_id))
        .one(db)
        .await
}

pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    owner: Option<uuid::Uuid>,
    before: Option<JobId>,
    limit: u64,
) -> Result<Vec<job::Model>, DbErr> {
    let mut q = job::Entity::find().filter(job::Column::TenantId.eq(tenant_id));
    if let Some(owner) = owner {
        q = q.filter(job::Column::CreatedBy.eq(owner));
    }
    if let Some(b) = before {
        q = q.filter(job::Column::Id.lt(b));
    }
    q.order_by_desc(job::Column::Id).limit(limit).all(db).await
}

/// Asks a job to stop. A queued job is cancelled at once; a running one
/// stops at its next checkpoint.
pub async fn request_cancel(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: JobId,
) -> Result<Option<job::Model>, DbErr> {
    let Some(j) = get(db, tenant_id, id).await? else {
        return Ok(None);
    };
    let status: JobStatus = crate::interactions::service::parse_enum(&j.status);
    if status.is_final() {
        return Ok(Some(j));
    }
    let mut m: job::ActiveModel = j.into();
    m.cancel_requested = Set(true);
    if status == JobStatus::Queued {
        m.status = Set(crate::interactions::service::enum_str(
            &JobStatus::Cancelled,
        ));
        m.finished_at = Set(Some(Utc::now()));
    }
    m.updated_at = Set(Utc::now());
    Ok(Some(m.update(db).await?))
}

/// The job runner of this node.
pub fn runner_for(
    state: &crate::state::AppState,
    node_id: String,
    stop: CancellationToken,
) -> Runner {
    Runner {
        db: state.db.conn.clone(),
        node_id,
        stop,
        chunk_size: state.settings.jobs.chunk_size,
        poll_interval: std::time::Duration::from_millis(
            state.settings.jobs.poll_interval_ms.max(20),
        ),
        lease: std::time::Duration::from_secs(state.settings.jobs.lease_secs),
        metrics: state.metrics.clone(),
    }
}

/// Who may see which jobs: `None` for everyone's (admins and supervisors),
/// `Some(actor)` for only those the caller started (other roles: a user, or
/// an API key, follows its own jobs).
pub fn visible_to(p: &crate::iam::Principal) -> Option<uuid::Uuid> {
    match p.role {
        crate::iam::Role::Admin | crate::iam::Role::Supervisor => None,
        _ => Some(p.actor.id()),
    }
}
