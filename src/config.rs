//! Layered configuration: built-in defaults, then a TOML file (`--config`),
//! then environment variables `SWITCHBOARD__SECTION__KEY`.
//!
//! Every section denies unknown keys, so a typo fails at start with a message
//! naming the key and where it came from. Secrets are wrapped in [`Secret`]
//! and never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// A value that must never appear in logs or debug output.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(v: T) -> Self {
        Self(v)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub data: DataSettings,
    pub log: LogSettings,
    pub security: SecuritySettings,
    pub jobs: JobSettings,
    pub redis: RedisSettings,
    pub webhooks: WebhookSettings,
    pub bus: BusSettings,
    pub contacts: ContactSettings,
    pub sip: SipSettings,
    pub ivr: IvrSettings,
    pub asr: AsrSettings,
}

/// IVR flows: the sandbox's limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvrSettings {
    /// Rhai operations one step of a flow may run.
    pub max_operations: u64,
    /// Wall-clock milliseconds one step may take.
    pub step_time_ms: u64,
    /// Commands (prompts, gathers, ...) one session may issue.
    pub max_commands: usize,
}

impl Default for IvrSettings {
    fn default() -> Self {
        let l = crate::ivr::Limits::default();
        Self {
            max_operations: l.operations,
            step_time_ms: l.step_time.as_millis() as u64,
            max_commands: l.commands,
        }
    }
}

impl IvrSettings {
    pub fn limits(&self) -> crate::ivr::Limits {
        crate::ivr::Limits {
            operations: self.max_operations,
            step_time: std::time::Duration::from_millis(self.step_time_ms),
            commands: self.max_commands,
            ..crate::ivr::Limits::default()
        }
    }
}

/// Speech recognition (Vosk).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AsrSettings {
    /// A Vosk model folder. Without one, `listen` reports that speech is
    /// unavailable and flows fall back to digits.
    pub model_dir: Option<PathBuf>,
    /// Free-form recognizers kept ready (voicemail and call transcription).
    pub pool_size: usize,
    /// Transcribe whole calls (the recording) when they end.
    pub transcribe_calls: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The address users reach the console at (used in printed links).
    pub public_url: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Mark session cookies `Secure`. Browsers accept secure cookies on
    /// `http://localhost`; turn this off only behind a TLS-terminating proxy
    /// that talks plain HTTP to users, which you should not do.
    pub secure_cookies: bool,
    /// Serve the console from this folder instead of the copy embedded in the
    /// binary (useful while editing `agent-ui/`).
    pub ui_dir: Option<PathBuf>,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://...`. Empty: a SQLite file in the data directory.
    pub url: Secret<String>,
    pub max_connections: u32,
    /// Run migrations when the service starts.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSettings {
    /// Where the SQLite database, the master key and other files live.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `switchboard=debug,sqlx=warn`.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Absolute lifetime of a console session, in minutes.
    pub session_ttl_minutes: u64,
    /// A session unused for this long expires, in minutes.
    pub session_idle_minutes: u64,
    /// Failed logins allowed per account within the window.
    pub login_failures_per_account: u32,
    /// Failed logins allowed per client address within the window.
    pub login_failures_per_address: u32,
    /// The throttling window, in seconds.
    pub login_window_secs: u64,
    /// 32 bytes, hex: seals stored secrets (webhook signing keys). Empty: a
    /// key is generated once and kept in `DATA_DIR/master.key`. In a cluster
    /// every node must have the same key.
    pub master_key: Secret<String>,
    /// argon2id memory cost in KiB (OWASP: at least 19456).
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStorage {
    /// The service's own database (SQLite or PostgreSQL).
    Database,
    /// Redis, at `redis.url`.
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSettings {
    pub storage: JobStorage,
    /// Jobs run at once on this node.
    pub concurrency: usize,
    /// On shutdown, how long running jobs get to reach a checkpoint.
    pub shutdown_grace_secs: u64,
    /// How often idle workers look for new jobs, in milliseconds.
    pub poll_interval_ms: u64,
    /// The queue (or Redis namespace) job messages go through. Nodes of one
    /// cluster share it.
    pub queue: String,
    /// Rows a job handles per transaction (and per checkpoint).
    pub chunk_size: u64,
    /// A running job's claim lasts this long without a heartbeat; after a
    /// crash, the job resumes elsewhere once it runs out (seconds).
    pub lease_secs: u64,
    /// How often waiting jobs are looked for and pushed again (seconds).
    pub sweep_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct RedisSettings {
    /// `redis://host:port/db`. Needed when `jobs.storage = "redis"`.
    pub url: Secret<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactSettings {
    /// Largest file accepted by `POST /uploads`, in bytes.
    pub max_upload_bytes: u64,
}

impl Default for ContactSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 512 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipSettings {
    /// Run the SIP endpoint (registrar) beside HTTP.
    pub enabled: bool,
    /// Address for SIP over UDP and TCP (the same port for both); port 0
    /// picks a free port.
    pub bind: SocketAddr,
    /// The service's SIP domain: a tenant's domain (and digest realm) is
    /// `<tenant-slug>.<domain>`.
    pub domain: String,
    /// Larger messages are dropped (UDP datagrams are read into 8 KiB).
    pub max_message_bytes: usize,
    /// Messages with more header fields are refused.
    pub max_headers: usize,
    /// Shortest registration accepted (shorter asks get 423), in seconds.
    pub register_min_expires: u32,
    /// Longer asks are cut to this, in seconds.
    pub register_max_expires: u32,
    /// Used when a REGISTER names no expiry, in seconds.
    pub register_default_expires: u32,
    /// How long a digest nonce stays valid, in seconds.
    pub nonce_ttl_secs: u64,
    /// Failed authentications from one address within the window that ban it.
    pub auth_failures: u32,
    pub auth_failure_window_secs: u64,
    /// How long a banned address is ignored, in seconds.
    pub ban_secs: u64,
    /// Requests accepted per source address per second; more are dropped.
    pub requests_per_source_per_sec: u32,
    /// Digest algorithms offered, in order of preference (`SHA-256`,
    /// `MD5`); only these are accepted. Devices that answer only the first
    /// challenge and know only MD5 (SIPp 3.6) need `MD5` first; some give
    /// up on any SHA-256 challenge (Debian's baresip 1.0) and need `MD5`
    /// alone.
    pub digest_algorithms: Vec<String>,
    /// Address media (RTP) sockets bind to.
    pub rtp_bind: std::net::IpAddr,
    /// Address put in SDP answers (default: `rtp_bind`, or the SIP bind
    /// address when that is a wildcard).
    pub rtp_advertise: Option<std::net::IpAddr>,
    /// Ports RTP (even) and RTCP (next) are taken from.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// A call with no RTP for this long is hung up (BYE), in seconds.
    pub rtp_timeout_secs: u64,
    /// Ring this long (180 Ringing) before answering, in milliseconds.
    pub answer_after_ms: u64,
    /// Record calls to `<data.dir>/recordings/<tenant>/<interaction>.wav`.
    pub record_calls: bool,
    /// `stereo` (the caller left, what the caller hears right) or `mixed`
    /// (one channel, both summed).
    pub record_layout: RecordLayout,
    /// Every enabled trunk gets an OPTIONS this often, in seconds (5-3600).
    pub trunk_keepalive_secs: u64,
    /// SIP over TLS (RFC 3261 `sips`/`transport=tls`) on this address, with
    /// `tls_cert` and `tls_key` (PEM files). Off when absent.
    pub tls_bind: Option<SocketAddr>,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// SIP over WebSocket (RFC 7118, subprotocol `sip`) on this address, for
    /// browser softphones; put it behind a TLS-terminating proxy for `wss`.
    /// Off when absent.
    pub ws_bind: Option<SocketAddr>,
}

/// How call recordings lay out their two legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordLayout {
    #[default]
    Stereo,
    Mixed,
}

impl RecordLayout {
    pub fn wav(self) -> crate::media::wav::Layout {
        match self {
            RecordLayout::Stereo => crate::media::wav::Layout::Stereo,
            RecordLayout::Mixed => crate::media::wav::Layout::Mixed,
        }
    }
}

impl Default for SipSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "0.0.0.0:5060".parse().expect("valid default"),
            domain: "sip.switchboard.local".into(),
            max_message_bytes: 16 * 1024,
            max_headers: 64,
            register_min_expires: 60,
            register_max_expires: 3600,
            register_default_expires: 3600,
            nonce_ttl_secs: 300,
            auth_failures: 5,
            auth_failure_window_secs: 60,
            ban_secs: 600,
            requests_per_source_per_sec: 50,
            digest_algorithms: vec!["SHA-256".into(), "MD5".into()],
            rtp_bind: std::net::IpAddr::from([0, 0, 0, 0]),
            rtp_advertise: None,
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            rtp_timeout_secs: 60,
            answer_after_ms: 0,
            record_calls: true,
            record_layout: RecordLayout::Stereo,
            trunk_keepalive_secs: 30,
            tls_bind: None,
            tls_cert: None,
            tls_key: None,
            ws_bind: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusBackend {
    /// In-process only: one node.
    Local,
    /// Also bridged between nodes through Redis pub/sub (`redis.url`).
    Redis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    pub backend: BusBackend,
    /// The Redis channel the nodes of one cluster share.
    pub channel: String,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            backend: BusBackend::Local,
            channel: "switchboard:events".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Attempts before a delivery is marked failed.
    pub max_attempts: u32,
    /// Timeout of one delivery attempt, in seconds.
    pub timeout_secs: u64,
    /// First retry delay in seconds; doubles each attempt (with jitter).
    pub backoff_base_secs: u64,
    /// Longest delay between attempts, in seconds.
    pub backoff_max_secs: u64,
    /// Allow webhook URLs on loopback and private networks. Off by default
    /// so tenants cannot make the service call into its own network.
    pub allow_private_targets: bool,
    /// How often the dispatcher looks for due deliveries, in milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".parse().expect("valid default"),
            public_url: String::new(),
            max_body_bytes: 1024 * 1024,
            secure_cookies: true,
            ui_dir: None,
            workers: 0,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            max_connections: 10,
            migrate_on_start: true,
        }
    }
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            session_ttl_minutes: 12 * 60,
            session_idle_minutes: 60,
            login_failures_per_account: 5,
            login_failures_per_address: 20,
            login_window_secs: 15 * 60,
            master_key: Secret::default(),
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
        }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            storage: JobStorage::Database,
            concurrency: 2,
            shutdown_grace_secs: 20,
            poll_interval_ms: 500,
            queue: "switchboard".into(),
            chunk_size: 500,
            lease_secs: 60,
            sweep_interval_secs: 15,
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            timeout_secs: 10,
            backoff_base_secs: 10,
            backoff_max_secs: 3600,
            allow_private_targets: false,
            poll_interval_ms: 500,
        }
    }
}

/// The prefix of environment overrides: `SWITCHBOARD__HTTP__BIND=...`.
pub const ENV_PREFIX: &str = "SWITCHBOARD__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `file` (if given), then `SWITCHBOARD__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`], with the environment given explicitly.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        // Figment reads the process environment itself; take the variables we
        // were given instead, so tests can pass their own.
        fig = fig.merge(EnvVars::new(env)?);
        let settings: Settings = fig
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let url = self.database.url.expose();
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !url.is_empty() && !known.iter().any(|p| url.starts_with(p)) {
            return bad(
                "database.url must start with sqlite:, postgres:// or postgresql://".into(),
            );
        }
        if self.ivr.max_operations < 1_000
            || self.ivr.step_time_ms == 0
            || self.ivr.max_commands == 0
        {
            return bad("ivr.max_operations must be at least 1000, ivr.step_time_ms and ivr.max_commands at least 1".into());
        }
        if self.asr.pool_size > 64 {
            return bad("asr.pool_size must be at most 64".into());
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections must be at least 1".into());
        }
        if self.http.max_body_bytes < 1024 {
            return bad("http.max_body_bytes must be at least 1024".into());
        }
        let public = &self.http.public_url;
        if !public.is_empty()
            && !["http://", "https://"]
                .iter()
                .any(|p| public.starts_with(p))
        {
            return bad("http.public_url must start with http:// or https://".into());
        }
        let key = self.security.master_key.expose();
        if !key.is_empty() && (key.len() != 64 || hex::decode(key).is_err()) {
            return bad("security.master_key must be 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`".into());
        }
        if self.security.session_ttl_minutes == 0 || self.security.session_idle_minutes == 0 {
            return bad(
                "security.session_ttl_minutes and session_idle_minutes must be positive".into(),
            );
        }
        if self.security.argon2_memory_kib < 8 * 1024 || self.security.argon2_iterations == 0 {
            return bad(
                "security.argon2_memory_kib must be at least 8192 and argon2_iterations at least 1"
                    .into(),
            );
        }
        if self.jobs.concurrency == 0 {
            return bad("jobs.concurrency must be at least 1".into());
        }
        if self.jobs.chunk_size == 0 || self.jobs.queue.is_empty() {
            return bad(
                "jobs.chunk_size must be at least 1 and jobs.queue must not be empty".into(),
            );
        }
        if self.bus.backend == BusBackend::Redis && self.redis.url.expose().is_empty() {
            return bad("bus.backend = \"redis\" needs redis.url (SWITCHBOARD__REDIS__URL)".into());
        }
        if self.jobs.storage == JobStorage::Redis && self.redis.url.expose().is_empty() {
            return bad(
                "jobs.storage = \"redis\" needs redis.url (SWITCHBOARD__REDIS__URL)".into(),
            );
        }
        if self.webhooks.max_attempts == 0 || self.webhooks.timeout_secs == 0 {
            return bad("webhooks.max_attempts and webhooks.timeout_secs must be positive".into());
        }
        let sip = &self.sip;
        let domain_ok = !sip.domain.is_empty()
            && sip.domain.len() <= 200
            && sip
                .domain
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !domain_ok {
            return bad(format!(
                "sip.domain {:?} must be a DNS name (letters, digits, '-' and '.')",
                sip.domain
            ));
        }
        if !(1024..=65535).contains(&sip.max_message_bytes) {
            return bad("sip.max_message_bytes must be between 1024 and 65535".into());
        }
        if !(8..=1000).contains(&sip.max_headers) {
            return bad("sip.max_headers must be between 8 and 1000".into());
        }
        if sip.register_min_expires == 0
            || sip.register_min_expires > sip.register_default_expires
            || sip.register_default_expires > sip.register_max_expires
        {
            return bad("sip.register_min_expires <= register_default_expires <= register_max_expires must hold, and the minimum must be positive".into());
        }
        if sip.nonce_ttl_secs == 0
            || sip.auth_failures == 0
            || sip.auth_failure_window_secs == 0
            || sip.requests_per_source_per_sec == 0
        {
            return bad("sip.nonce_ttl_secs, auth_failures, auth_failure_window_secs and requests_per_source_per_sec must be positive".into());
        }
        if sip.rtp_port_min < 1024
            || sip.rtp_port_max < sip.rtp_port_min.saturating_add(3)
            || sip.rtp_timeout_secs == 0
            || sip.answer_after_ms > 60_000
        {
            return bad("sip.rtp_port_min must be at least 1024 with room for two port pairs up to sip.rtp_port_max, sip.rtp_timeout_secs positive, and sip.answer_after_ms at most 60000".into());
        }
        if !(5..=3600).contains(&sip.trunk_keepalive_secs) {
            return bad("sip.trunk_keepalive_secs must be 5-3600".into());
        }
        if sip.tls_bind.is_some() && (sip.tls_cert.is_none() || sip.tls_key.is_none()) {
            return bad("sip.tls_bind needs sip.tls_cert and sip.tls_key (PEM files)".into());
        }
        let ports: Vec<u16> = [Some(sip.bind), sip.tls_bind, sip.ws_bind]
            .iter()
            .flatten()
            .map(|a| a.port())
            .filter(|p| *p != 0)
            .collect();
        if (1..ports.len()).any(|i| ports[..i].contains(&ports[i])) {
            return bad("sip.bind, sip.tls_bind and sip.ws_bind need ports of their own".into());
        }
        let algs = &sip.digest_algorithms;
        let known = algs
            .iter()
            .all(|a| crate::sip::digest::Algorithm::parse(a).is_some());
        let mut seen = algs
            .iter()
            .map(|a| a.to_ascii_uppercase())
            .collect::<Vec<_>>();
        seen.sort();
        seen.dedup();
        if algs.is_empty() || !known || seen.len() != algs.len() {
            return bad(format!(
                "sip.digest_algorithms {algs:?} must list SHA-256 and/or MD5, each once"
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return bad(format!(
                "log.level {:?} is not a valid filter: {e}",
                self.log.level
            ));
        }
        Ok(())
    }

    /// The database URL to use: the configured one, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        let url = self.database.url.expose();
        if url.is_empty() {
            format!(
                "sqlite://{}",
                self.data.dir.join("switchboard.db").display()
            )
        } else {
            url.clone()
        }
    }

    /// The database URL with any password removed, for logs.
    pub fn database_url_redacted(&self) -> String {
        redact_url(&self.database_url())
    }
}

/// `postgres://user:pw@host/db` -> `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((cred, host)) = rest.rsplit_once('@')
    {
        let user = cred.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

/// Environment values are TOML scalars where they parse as one (numbers,
/// booleans, arrays), and plain strings otherwise.
fn parse_env_value(v: &str) -> figment::value::Value {
    let probe = format!("v = {v}");
    if let Ok(t) = toml::from_str::<toml::Table>(&probe)
        && let Some(val) = t.get("v")
        && let Ok(fv) = figment::value::Value::serialize(val)
    {
        return fv;
    }
    figment::value::Value::from(v.to_owned())
}

fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `SWITCHBOARD__SECTION__KEY=value` variables as a figment provider whose
/// errors name the variable.
struct EnvVars {
    dict: figment::value::Dict,
}

impl EnvVars {
    fn new(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut dict = figment::value::Dict::new();
        for (k, v) in env {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::Invalid(format!(
                    "environment variable {k} does not name a setting; use SWITCHBOARD__SECTION__KEY"
                )));
            }
            insert_path(&mut dict, &path, parse_env_value(&v));
        }
        Ok(Self { dict })
    }
}

fn insert_path(dict: &mut figment::value::Dict, path: &[String], value: figment::value::Value) {
    use figment::value::{Tag, Value};
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::Dict(Tag::Default, figment::value::Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::Dict(Tag::Default, figment::value::Dict::new());
            }
            if let Value::Dict(_, d) = entry {
                insert_path(d, rest, value);
            }
        }
    }
}

impl figment::Provider for EnvVars {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment").interpolater(|_profile, keys| {
            format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase())
        })
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.dict.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.http.bind.port(), 8080);
        assert!(s.database_url().starts_with("sqlite://"));
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[http]\nbind = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&f),
            env(&[
                ("SWITCHBOARD__HTTP__BIND", "127.0.0.1:0"),
                ("SWITCHBOARD__JOBS__CONCURRENCY", "4"),
                ("SWITCHBOARD__HTTP__SECURE_COOKIES", "false"),
                ("SWITCHBOARD__DATABASE__URL", "postgres://u:pw@localhost/db"),
            ]),
        )
        .unwrap();
        assert_eq!(s.http.bind.port(), 0);
        assert_eq!(s.http.max_body_bytes, 4096);
        assert_eq!(s.jobs.concurrency, 4);
        assert!(!s.http.secure_cookies);
        assert_eq!(s.database_url_redacted(), "postgres://u:***@localhost/db");
        assert!(!format!("{s:?}").contains("pw"), "secrets must not print");
    }

    #[test]
    fn unknown_keys_fail_with_the_key_named() {
        let e = Settings::load_from(None, env(&[("SWITCHBOARD__HTTP__BINDD", "x")])).unwrap_err();
        assert!(e.to_string().contains("bindd"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[htp]\nbind = \"127.0.0.1:9000\"\n").unwrap();
        let e = Settings::load_from(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("htp"), "{e}");
    }

    #[test]
    fn tls_needs_its_files_and_transports_their_own_ports() {
        let mut s = Settings::default();
        s.sip.tls_bind = Some("127.0.0.1:5061".parse().unwrap());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("sip.tls_cert"), "{e}");
        s.sip.tls_bind = None;
        s.sip.bind = "127.0.0.1:5070".parse().unwrap();
        s.sip.ws_bind = Some("127.0.0.1:5070".parse().unwrap());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("ports of their own"), "{e}");
        s.sip.ws_bind = Some("127.0.0.1:5071".parse().unwrap());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn digest_algorithms_are_known_and_listed_once() {
        let mut s = Settings::default();
        assert!(s.validate().is_ok());
        for bad in [
            vec![],
            vec!["SHA-512".to_string()],
            vec!["MD5".into(), "md5".into()],
        ] {
            s.sip.digest_algorithms = bad.clone();
            let e = s.validate().unwrap_err();
            assert!(
                e.to_string().contains("sip.digest_algorithms"),
                "{bad:?}: {e}"
            );
        }
        s.sip.digest_algorithms = vec!["MD5".into()];
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bad_values_fail_with_a_hint() {
        let e =
            Settings::load_from(None, env(&[("SWITCHBOARD__HTTP__BIND", "nonsense")])).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD__HTTP__BIND"), "{e}");
        let e =
            Settings::load_from(None, env(&[("SWITCHBOARD__JOBS__CONCURRENCY", "0")])).unwrap_err();
        assert!(e.to_string().contains("jobs.concurrency"), "{e}");
        let e = Settings::load_from(None, env(&[("SWITCHBOARD__DATABASE__URL", "mysql://x")]))
            .unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        let e = Settings::load_from(None, env(&[("SWITCHBOARD__SECURITY__MASTER_KEY", "abc")]))
            .unwrap_err();
        assert!(e.to_string().contains("master_key"), "{e}");
        assert!(
            !e.to_string().contains("abc"),
            "the secret itself is not echoed: {e}"
        );
        let e = Settings::load_from(Some(Path::new("/nonexistent/x.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("does not exist"));
    }
}
