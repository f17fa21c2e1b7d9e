//! Start-up and wiring: the one place that knows every module.
//!
//! `Application::build` opens the database, runs migrations, binds the HTTP
//! listener (port 0 works; `port()` tells which) and prepares the background
//! tasks. `run_until_stopped` runs HTTP, the job workers, the webhook
//! dispatcher and housekeeping side by side until the stop token is
//! cancelled, then shuts them down gracefully in order.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpServer, web};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::Settings;
use crate::crypto::Sealer;
use crate::db::Database;
use crate::iam::password::Hasher;
use crate::iam::throttle::Throttle;
use crate::interactions::webhooks::{self, Dispatcher};
use crate::jobs::{self, JobQueue};
use crate::metrics::Metrics;
use crate::state::AppState;

/// Installs ring as rustls's one crypto provider. Call before any TLS use.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct Application {
    port: u16,
    listener: TcpListener,
    state: web::Data<AppState>,
    stop: CancellationToken,
    node_id: String,
    /// Stops the cross-node bus bridge, last of all.
    bridge_stop: CancellationToken,
    bridge: Option<tokio::task::JoinHandle<()>>,
    sip: Option<crate::sip::SipServer>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        install_crypto_provider();
        let settings = Arc::new(settings);
        std::fs::create_dir_all(&settings.data.dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                settings.data.dir.display()
            )
        })?;
        let db =
            Database::connect(&settings.database_url(), settings.database.max_connections).await?;
        tracing::info!(database = %settings.database_url_redacted(), "database open");
        if settings.database.migrate_on_start {
            db.migrate().await?;
        }
        let key = master_key(&settings, &db)?;
        let sealer = Sealer::new(&key);
        let sip = if settings.sip.enabled {
            Some(crate::sip::SipServer::bind(&settings.sip, db.conn.clone(), &key).await?)
        } else {
            None
        };
        let jobs = JobQueue::open(&settings, &db).await?;
        let listener = TcpListener::bind(settings.http.bind)
            .with_context(|| format!("cannot listen on {} (http.bind)", settings.http.bind))?;
        let port = listener.local_addr()?.port();
        let openapi = crate::http::openapi();
        let api_routes = crate::http::RouteTable::from_openapi(&openapi);
        let openapi_json =
            serde_json::to_string_pretty(&openapi).context("rendering the OpenAPI document")?;
        // Unique per process, so two nodes on one host are told apart.
        let node_id = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let mut bus = Bus::new(4096);
        let bridge_stop = CancellationToken::new();
        let bridge = match settings.bus.backend {
            crate::config::BusBackend::Local => None,
            crate::config::BusBackend::Redis => Some(
                bus.bridge_redis(
                    settings.redis.url.expose(),
                    settings.bus.channel.clone(),
                    node_id.clone(),
                    bridge_stop.clone(),
                )
                .await?,
            ),
        };
        let sec = &settings.security;
        let metrics = Metrics::new();
        let acd = std::sync::Arc::new(crate::acd::service::Acd::with_metrics(
            db.conn.clone(),
            bus.clone(),
            metrics.acd.clone(),
        ));
        let flows = std::sync::Arc::new(crate::ivr::service::Flows::new(
            db.conn.clone(),
            settings.data.dir.clone(),
            settings.ivr.limits(),
            metrics.flows.clone(),
        ));
        load_speech(&settings.asr, &flows).await;
        if let Some(s) = &sip {
            s.attach_calls(crate::sip::call::CallContext {
                bus: bus.clone(),
                acd: acd.clone(),
                recordings: settings.data.dir.join("recordings"),
                flows: flows.clone(),
                http: crate::interactions::webhooks::http_client(&settings.webhooks),
            });
        }
        let state = AppState {
            flows,
            sip: sip.as_ref().map(|s| s.addrs()),
            acd,
            hasher: Hasher::new(sec.argon2_memory_kib, sec.argon2_iterations),
            throttle: Throttle::new(
                Duration::from_secs(sec.login_window_secs),
                sec.login_failures_per_account,
                sec.login_failures_per_address,
            ),
            sealer,
            bus,
            jobs,
            metrics,
            shutdown: CancellationToken::new(),
            openapi_json,
            api_routes,
            db,
            settings: settings.clone(),
        };
        let stop = state.shutdown.clone();
        Ok(Self {
            port,
            listener,
            state: web::Data::new(state),
            stop,
            node_id,
            bridge_stop,
            bridge,
            sip,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Cancel it to shut the application down gracefully.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            stop,
            node_id,
            bridge_stop,
            bridge,
            sip,
            ..
        } = self;
        let settings = state.settings.clone();

        let (server, handle) = start_http(listener, state.clone())?;
        let sip_stop = CancellationToken::new();
        let sip_task = sip.map(|s| tokio::spawn(s.run(sip_stop.clone())));

        let dispatcher = Dispatcher {
            db: state.db.conn.clone(),
            sealer: state.sealer.clone(),
            settings: settings.webhooks.clone(),
            client: webhooks::http_client(&settings.webhooks),
            metrics: state.metrics.clone(),
        };
        let worker_stop = CancellationToken::new();
        let dispatcher_task = tokio::spawn(dispatcher.run(worker_stop.clone()));

        let runner = jobs::runner_for(&state, node_id.clone(), worker_stop.clone());
        let workers_task = tokio::spawn(jobs::run_workers(
            state.jobs.clone(),
            runner,
            settings.jobs.concurrency,
            Duration::from_secs(settings.jobs.shutdown_grace_secs),
            worker_stop.clone(),
        ));
        let housekeeping_task = tokio::spawn(housekeeping(state.clone(), worker_stop.clone()));
        let acd_task = tokio::spawn(state.acd.clone().run(worker_stop.clone()));

        tracing::info!(node = %node_id, "switchboard is running");
        let server_task = tokio::spawn(server);
        stop.cancelled().await;

        tracing::info!("shutting down: no new requests, finishing work in progress");
        handle.stop(true).await;
        let _ = server_task.await;
        sip_stop.cancel();
        if let Some(t) = sip_task {
            let _ = t.await;
        }
        worker_stop.cancel();
        if let Ok(Err(e)) = workers_task.await {
            tracing::warn!(error = %e, "job workers stopped with an error");
        }
        let _ = dispatcher_task.await;
        let _ = housekeeping_task.await;
        let _ = acd_task.await;
        bridge_stop.cancel();
        if let Some(b) = bridge {
            let _ = b.await;
        }
        state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds the HTTP server. Kept out of the async fn: the builder is not
/// `Send`, the running server is.
fn start_http(
    listener: TcpListener,
    state: web::Data<AppState>,
) -> std::io::Result<(actix_web::dev::Server, actix_web::dev::ServerHandle)> {
    let workers = state.settings.http.workers;
    let data = state.clone();
    let mut server = HttpServer::new(move || crate::http::app(data.clone()))
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?;
    if workers > 0 {
        server = server.workers(workers);
    }
    let server = server.run();
    let handle = server.handle();
    Ok((server, handle))
}

/// Periodic work: push jobs that wait without a message, purge sessions.
async fn housekeeping(state: web::Data<AppState>, stop: CancellationToken) {
    // At start, everything queued is pushed again (an earlier shutdown may
    // have put jobs back); later, only what has waited for a while.
    let mut stale = Duration::ZERO;
    loop {
        match jobs::sweep(&state.db.conn, &state.jobs, stale).await {
            Ok(n) if n > 0 => tracing::info!(jobs = n, "pushed waiting jobs to the workers"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "job sweep failed"),
        }
        if let Err(e) =
            crate::iam::store::purge_expired_sessions(&state.db.conn, chrono::Utc::now()).await
        {
            tracing::warn!(error = %e, "session purge failed");
        }
        if let Err(e) = crate::sip::store::purge_expired(&state.db.conn, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "SIP registration purge failed");
        }
        stale = Duration::from_secs(60);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(state.settings.jobs.sweep_interval_secs)) => {}
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// The configured master key, or one kept in `DATA_DIR/master.key`
/// (created once, readable only by the owner).
fn master_key(settings: &Settings, db: &Database) -> anyhow::Result<Vec<u8>> {
    let configured = settings.security.master_key.expose();
    if !configured.is_empty() {
        return Ok(hex::decode(configured).expect("validated by config"));
    }
    let path = settings.data.dir.join("master.key");
    if !db.is_sqlite() {
        tracing::warn!(
            path = %path.display(),
            "security.master_key is not set: using a key file local to this node; \
             set the same key on every node of a cluster"
        );
    }
    read_or_create_key(&path)
}

fn read_or_create_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let key = hex::decode(text.trim()).ok().filter(|k| k.len() == 32);
        return key.with_context(|| format!("{} does not hold a 32-byte hex key", path.display()));
    }
    let key = crate::crypto::random_bytes(32);
    {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(hex::encode(&key).as_bytes())?;
        f.sync_all()?;
    }
    Ok(key)
}

/// Loads the speech model (about 1-2 s and 500 MB for a small model), or
/// says why speech recognition is off.
async fn load_speech(settings: &crate::config::AsrSettings, flows: &crate::ivr::service::Flows) {
    let Some(dir) = settings.model_dir.clone() else {
        tracing::info!(
            "speech recognition is off (asr.model_dir is not set): flows' listen() reports speech unavailable and falls back to digits"
        );
        return;
    };
    let pool = settings.pool_size;
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || crate::asr::Asr::load(&dir, pool)).await {
        Ok(Ok(asr)) => {
            tracing::info!(model = %shown, sample_rate = asr.sample_rate(), "speech recognition ready");
            flows.set_asr(asr);
        }
        Ok(Err(e)) => tracing::error!(
            model = %shown,
            error = %e,
            "speech recognition is off: the model did not load; flows' listen() falls back to digits"
        ),
        Err(e) => {
            tracing::error!(error = %e, "speech recognition is off: loading the model failed")
        }
    }
}
