//! Database connections: SQLite (embedded default) or PostgreSQL, chosen by
//! URL. We build the sqlx pool ourselves so the job storage can share it.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// The open database, with the raw pool kept for components (job storage)
/// that speak sqlx directly.
#[derive(Clone, Debug)]
pub struct Database {
    pub conn: DatabaseConnection,
    pub pool: Pool,
}

#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Database {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            // WAL lets readers run beside the one writer; synchronous=FULL
            // makes every commit durable before it is acknowledged, since
            // events, CDRs and deliveries must not be lost on power failure.
            let opts = SqliteConnectOptions::from_str(url)
                .with_context(|| "database.url is not a valid sqlite URL")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .pragma("temp_store", "memory")
                // Bulk inserts of every batch size would each stay prepared
                // (a large program apiece); keep few.
                .statement_cache_capacity(24);
            if let Some(parent) = opts.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create the database folder {}", parent.display())
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await
                .context("cannot open the SQLite database")?;
            Ok(Self {
                conn: SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone()),
                pool: Pool::Sqlite(pool),
            })
        } else {
            let opts = PgConnectOptions::from_str(url)
                .context("database.url is not a valid PostgreSQL URL")?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await
                .context("cannot connect to PostgreSQL")?;
            Ok(Self {
                conn: SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone()),
                pool: Pool::Postgres(pool),
            })
        }
    }

    /// Applies pending migrations. On PostgreSQL, nodes starting together
    /// take turns (a session advisory lock), so exactly one applies each.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Sqlite(_) => Migrator::up(&self.conn, None)
                .await
                .context("database migration failed"),
            Pool::Postgres(pool) => {
                const LOCK: i64 = 0x005b_0a4d_1e5e;
                let mut lock = pool
                    .acquire()
                    .await
                    .context("cannot connect to PostgreSQL")?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(LOCK)
                    .execute(&mut *lock)
                    .await?;
                let result = Migrator::up(&self.conn, None)
                    .await
                    .context("database migration failed");
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(LOCK)
                    .execute(&mut *lock)
                    .await?;
                result
            }
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.pool, Pool::Sqlite(_))
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> bool {
        self.conn.ping().await.is_ok()
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// Begins a transaction that will write. On SQLite it takes the write lock
/// at `BEGIN` (`BEGIN IMMEDIATE`), so a busy database is waited for (up to
/// the busy timeout) instead of failing when a read turns into a write;
/// PostgreSQL ignores the mode.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}
