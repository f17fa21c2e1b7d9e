//! Carrying jobs to workers (apalis) and running them under a lease.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{JobCtx, JobFailure, JobKind, JobStatus, job};
use crate::db::{Database, Pool};
use crate::ids::JobId;
use crate::interactions::service::{enum_str, parse_enum};

/// The message apalis carries: "run job X".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunJob {
    pub job_id: JobId,
}

/// Where "run job" messages go.
#[derive(Clone)]
pub enum JobQueue {
    Sqlite(SqliteStorage<RunJob>),
    Postgres(PostgresStorage<RunJob>),
    Redis(RedisStorage<RunJob>),
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobQueue::Sqlite(_) => "JobQueue::Sqlite",
            JobQueue::Postgres(_) => "JobQueue::Postgres",
            JobQueue::Redis(_) => "JobQueue::Redis",
        })
    }
}

/// Attempts a job gets when runs fail with database errors.
const MAX_ATTEMPTS: i32 = 3;

impl JobQueue {
    /// Opens the configured storage and creates its tables if needed.
    pub async fn open(settings: &crate::config::Settings, db: &Database) -> anyhow::Result<Self> {
        let queue = settings.jobs.queue.clone();
        match settings.jobs.storage {
            crate::config::JobStorage::Database => match &db.pool {
                Pool::Sqlite(pool) => {
                    SqliteStorage::setup(pool)
                        .await
                        .context("creating the job tables (SQLite)")?;
                    let cfg = apalis_sqlite::Config::default().queue(&queue);
                    Ok(JobQueue::Sqlite(SqliteStorage::new(pool).with_config(cfg)))
                }
                Pool::Postgres(pool) => {
                    PostgresStorage::setup(pool)
                        .await
                        .context("creating the job tables (PostgreSQL)")?;
                    let cfg = apalis_postgres::Config::default().queue(&queue);
                    Ok(JobQueue::Postgres(
                        PostgresStorage::new(pool).with_config(cfg),
                    ))
                }
            },
            crate::config::JobStorage::Redis => {
                let conn = apalis_redis::connect(settings.redis.url.expose().as_str())
                    .await
                    .context("cannot connect to Redis (redis.url)")?;
                let cfg = apalis_redis::Config::default().queue(&queue);
                Ok(JobQueue::Redis(RedisStorage::new(conn).with_config(cfg)))
            }
        }
    }

    /// Sends "run job `id`" to the workers.
    pub async fn push(&self, id: JobId) -> anyhow::Result<()> {
        let msg = RunJob { job_id: id };
        match self.clone() {
            JobQueue::Sqlite(mut s) => s.push(msg).await.map_err(|e| anyhow::anyhow!("{e}")),
            JobQueue::Postgres(mut s) => s.push(msg).await.map_err(|e| anyhow::anyhow!("{e}")),
            JobQueue::Redis(mut s) => s.push(msg).await.map_err(|e| anyhow::anyhow!("{e}")),
        }
    }
}

/// What the worker needs to run jobs.
#[derive(Clone)]
pub struct Runner {
    pub db: DatabaseConnection,
    pub node_id: String,
    /// Cancelled when the node starts shutting down.
    pub stop: CancellationToken,
    pub chunk_size: u64,
    pub poll_interval: Duration,
    /// How long a claim on a job lasts without a heartbeat (heartbeats come
    /// four times per lease).
    pub lease: Duration,
    pub metrics: crate::metrics::Metrics,
}

/// Wakes an idle worker every `interval` to look for work. (apalis'
/// `IntervalStrategy` arms its next timer without polling it, so the next
/// wake-up is only registered if something else polls the worker first;
/// under load the worker then sleeps until apalis' heartbeat, 30 s later,
/// and a new job waits that long. This one registers each new timer.)
struct Tick {
    interval: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Tick {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            sleep: Box::pin(tokio::time::sleep(interval)),
        }
    }
}

impl PollStrategy for Tick {
    fn poll_drive(
        &mut self,
        cx: &mut std::task::Context<'_>,
        _: &PollSnapshot,
    ) -> std::task::Poll<Option<()>> {
        use std::future::Future;
        match self.sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                let next = tokio::time::Instant::now() + self.interval;
                self.sleep.as_mut().reset(next);
                // Register the waker with the new deadline now.
                let _ = self.sleep.as_mut().poll(cx);
                std::task::Poll::Ready(Some(()))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

async fn handle(msg: RunJob, runner: Data<Arc<Runner>>) -> Result<(), BoxDynError> {
    runner
        .run(msg.job_id)
        .await
        .map_err(|e| Box::new(e) as BoxDynError)
}

/// Runs job workers until `stop` is cancelled, then waits up to `grace` for
/// running jobs to reach a checkpoint.
pub async fn run_workers(
    queue: JobQueue,
    runner: Runner,
    concurrency: usize,
    grace: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let runner = Arc::new(runner);
    let name = format!("jobs-{}", runner.node_id);
    let signal = {
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            Ok(())
        }
    };
    let monitor = Monitor::new().shutdown_timeout(grace);
    // Idle workers sleep until woken; wake them on an interval to look for work.
    let poll = runner.poll_interval;
    let monitor = match queue {
        JobQueue::Sqlite(s) => monitor.register(move |i| {
            WorkerBuilder::new(format!("{name}-{i}"))
                .backend(s.clone().poll_with_strategy(Tick::new(poll)))
                .data(runner.clone())
                .concurrency(concurrency)
                .parallelize(tokio::spawn)
                .build(handle)
        }),
        JobQueue::Postgres(s) => monitor.register(move |i| {
            WorkerBuilder::new(format!("{name}-{i}"))
                .backend(s.clone().poll_with_strategy(Tick::new(poll)))
                .data(runner.clone())
                .concurrency(concurrency)
                .parallelize(tokio::spawn)
                .build(handle)
        }),
        JobQueue::Redis(s) => monitor.register(move |i| {
            WorkerBuilder::new(format!("{name}-{i}"))
                .backend(s.clone().poll_with_strategy(Tick::new(poll)))
                .data(runner.clone())
                .concurrency(concurrency)
                .parallelize(tokio::spawn)
                .build(handle)
        }),
    };
    monitor
        .run_with_signal(signal)
        .await
        .map_err(|e| anyhow::anyhow!("job workers: {e}"))
}

impl Runner {
    /// Claims the job and runs it. Returns `Ok` whenever the job's outcome
    /// was recorded (including failure): apalis need not retry; our own
    /// sweeper handles resumption.
    pub async fn run(&self, id: JobId) -> Result<(), DbErr> {
        // A token per claim, not per node: two workers of one node, or a
        // stalled run and its successor, never hold the same lease.
        let lease = format!("{}/{}", self.node_id, uuid::Uuid::new_v4().simple());
        let Some(job) = self.claim(id, &lease).await? else {
            return Ok(());
        };
        let kind: Option<JobKind> =
            serde_json::from_value(serde_json::Value::String(job.kind.clone())).ok();
        let span =
            tracing::info_span!("job", job_id = %id, tenant_id = %job.tenant_id, kind = %job.kind);

        // A per-run token: cancelled at shutdown, or when someone cancels the job.
        let token = self.stop.child_token();
        let heartbeat = tokio::spawn(heartbeat(
            self.db.clone(),
            id,
            lease.clone(),
            self.lease,
            token.clone(),
        ));
        let ctx = JobCtx {
            job,
            lease,
            db: self.db.clone(),
            stop: token.clone(),
            chunk_size: self.chunk_size,
        };
        let started = std::time::Instant::now();
        let outcome = match kind {
            Some(JobKind::WebhookReplay) => {
                crate::interactions::webhooks::run_replay(&ctx)
                    .instrument(span.clone())
                    .await
            }
            Some(JobKind::ContactImport) => {
                crate::contacts::import::run_contact_import(&ctx)
                    .instrument(span.clone())
                    .await
            }
            Some(JobKind::SuppressionImport) => {
                crate::contacts::import::run_suppression_import(&ctx)
                    .instrument(span.clone())
                    .await
            }
            None => Err(JobFailure::Fatal(format!(
                "unknown job kind {:?}",
                ctx.job.kind
            ))),
        };
        heartbeat.abort();
        let label = match &outcome {
            Ok(_) => "succeeded",
            Err(JobFailure::Interrupted) => "interrupted",
            Err(JobFailure::Cancelled) => "cancelled",
            Err(_) => "failed",
        };
        self.metrics
            .jobs_finished
            .get_or_create(&crate::metrics::OutcomeLabel::new(label))
            .inc();
        tracing::info!(parent: &span, outcome = label, elapsed_ms = started.elapsed().as_millis() as u64, "job run ended");
        self.record(&ctx, outcome).await
    }

    /// Takes the lease if the job is queued, or running under an expired
    /// lease (its runner died). `None`: nothing to do here.
    async fn claim(&self, id: JobId, lease: &str) -> Result<Option<job::Model>, DbErr> {
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(self.lease).expect("small");
        let claimable = Condition::any()
            .add(job::Column::Status.eq(enum_str(&JobStatus::Queued)))
            .add(
                Condition::all()
                    .add(job::Column::Status.eq(enum_str(&JobStatus::Running)))
                    .add(job::Column::LeaseUntil.lt(now)),
            );
        let res = job::Entity::update_many()
            .col_expr(
                job::Column::Status,
                Expr::value(enum_str(&JobStatus::Running)),
            )
            .col_expr(job::Column::LeaseOwner, Expr::value(Some(lease.to_owned())))
            .col_expr(job::Column::LeaseUntil, Expr::value(Some(lease_until)))
            .col_expr(
                job::Column::Attempts,
                Expr::col(job::Column::Attempts).add(1),
            )
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                job::Column::StartedAt,
                Expr::col(job::Column::StartedAt).if_null(Expr::value(now)),
            )
            .filter(job::Column::Id.eq(id))
            .filter(job::Column::CancelRequested.eq(false))
            .filter(claimable)
            .exec(&self.db)
            .await?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        job::Entity::find_by_id(id).one(&self.db).await
    }

    async fn record(
        &self,
        ctx: &JobCtx,
        outcome: Result<serde_json::Value, JobFailure>,
    ) -> Result<(), DbErr> {
        let id = ctx.id();
        let now = Utc::now();
        let current = job::Entity::find_by_id(id).one(&self.db).await?;
        let cancel_requested = current.as_ref().is_some_and(|j| j.cancel_requested);
        let attempts = current.as_ref().map_or(0, |j| j.attempts);
        let q = job::Entity::update_many()
            .col_expr(job::Column::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(
                job::Column::LeaseUntil,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .col_expr(job::Column::UpdatedAt, Expr::value(now));
        let q = match outcome {
            Ok(result) => q
                .col_expr(
                    job::Column::Status,
                    Expr::value(enum_str(&JobStatus::Succeeded)),
                )
                .col_expr(job::Column::Result, Expr::value(Some(result)))
                .col_expr(job::Column::Error, Expr::value(Option::<String>::None))
                .col_expr(job::Column::FinishedAt, Expr::value(Some(now))),
            Err(JobFailure::Interrupted) | Err(JobFailure::Cancelled) if cancel_requested => q
                .col_expr(
                    job::Column::Status,
                    Expr::value(enum_str(&JobStatus::Cancelled)),
                )
                .col_expr(job::Column::FinishedAt, Expr::value(Some(now))),
            Err(JobFailure::Interrupted) | Err(JobFailure::Cancelled) => {
                // Back to the queue; the sweeper pushes it again. This run
                // does not count as an attempt.
                q.col_expr(
                    job::Column::Status,
                    Expr::value(enum_str(&JobStatus::Queued)),
                )
                .col_expr(
                    job::Column::Attempts,
                    Expr::col(job::Column::Attempts).sub(1),
                )
                .col_expr(
                    job::Column::PushedAt,
                    Expr::value(now - chrono::Duration::hours(1)),
                )
            }
            Err(JobFailure::Db(e)) if attempts < MAX_ATTEMPTS => {
                tracing::warn!(job_id = %id, error = %e, "job run failed; it will be retried");
                q.col_expr(
                    job::Column::Status,
                    Expr::value(enum_str(&JobStatus::Queued)),
                )
                .col_expr(job::Column::Error, Expr::value(Some(e.to_string())))
                .col_expr(
                    job::Column::PushedAt,
                    Expr::value(now - chrono::Duration::hours(1)),
                )
            }
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "job failed");
                q.col_expr(
                    job::Column::Status,
                    Expr::value(enum_str(&JobStatus::Failed)),
                )
                .col_expr(job::Column::Error, Expr::value(Some(e.to_string())))
                .col_expr(job::Column::FinishedAt, Expr::value(Some(now)))
            }
        };
        q.filter(job::Column::Id.eq(id))
            .filter(job::Column::LeaseOwner.eq(ctx.lease.clone()))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// Extends the lease while the job runs, and stops the job if it was
/// cancelled or if its lease was taken by another run (it stalled so long
/// that the lease ran out and the job was claimed again).
async fn heartbeat(
    db: DatabaseConnection,
    id: JobId,
    lease_owner: String,
    lease: Duration,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(lease / 4) => {}
        }
        let until = Utc::now() + chrono::Duration::from_std(lease).expect("small");
        let r = job::Entity::update_many()
            .col_expr(job::Column::LeaseUntil, Expr::value(Some(until)))
            .filter(job::Column::Id.eq(id))
            .filter(job::Column::LeaseOwner.eq(lease_owner.clone()))
            .exec(&db)
            .await;
        match r {
            Err(e) => tracing::warn!(job_id = %id, error = %e, "job heartbeat failed"),
            Ok(r) if r.rows_affected == 0 => {
                tracing::warn!(job_id = %id, "the job's lease was taken by another run; this run stops");
                token.cancel();
                return;
            }
            Ok(_) => {}
        }
        if let Ok(Some(j)) = job::Entity::find_by_id(id).one(&db).await
            && j.cancel_requested
        {
            token.cancel();
            return;
        }
    }
}

/// Pushes again every job that waits with no message on its way: queued
/// jobs whose last push is older than `stale`, and running jobs whose runner
/// died (lease expired, not pushed since). Returns how many were pushed.
pub async fn sweep(
    db: &DatabaseConnection,
    queue: &JobQueue,
    stale: Duration,
) -> Result<usize, DbErr> {
    let now = Utc::now();
    let cutoff = now - chrono::Duration::from_std(stale).expect("small");
    let waiting = job::Entity::find()
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(job::Column::Status.eq(enum_str(&JobStatus::Queued)))
                        .add(job::Column::PushedAt.lt(cutoff)),
                )
                .add(
                    // Its runner died: the lease ran out, and nobody has
                    // pushed it since.
                    Condition::all()
                        .add(job::Column::Status.eq(enum_str(&JobStatus::Running)))
                        .add(job::Column::LeaseUntil.lt(now))
                        .add(
                            Expr::col(job::Column::PushedAt).lt(Expr::col(job::Column::LeaseUntil)),
                        ),
                ),
        )
        .limit(500)
        .all(db)
        .await?;
    let mut pushed = 0;
    for j in waiting {
        let status: JobStatus = parse_enum(&j.status);
        if status.is_final() {
            continue;
        }
        match queue.push(j.id).await {
            Ok(()) => {
                pushed += 1;
                job::Entity::update_many()
                    .col_expr(job::Column::PushedAt, Expr::value(now))
                    .filter(job::Column::Id.eq(j.id))
                    .exec(db)
                    .await?;
            }
            Err(e) => tracing::warn!(job_id = %j.id, error = %e, "could not push a job"),
        }
    }
    Ok(pushed)
}
