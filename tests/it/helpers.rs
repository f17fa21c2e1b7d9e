//! The test harness: a real Switchboard server on port 0 with its own data
//! directory and database (a SQLite file, or a fresh PostgreSQL database
//! when `TEST_POSTGRES_URL` is set), plus typed helpers to talk to it.

#![allow(dead_code)] // Shared by every module; each uses part of it.

use std::path::PathBuf;
use std::sync::OnceLock;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use switchboard::app::Application;
use switchboard::config::{Secret, Settings};
use switchboard::state::AppState;
use tokio_util::sync::CancellationToken;

pub const DEMO_PASSWORD: &str = "switchboard-demo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each test body twice: on SQLite, and on PostgreSQL when
/// `TEST_POSTGRES_URL` is set (CI sets it and also sets
/// `SWITCHBOARD_REQUIRE_POSTGRES=1`, so there it is never skipped).
#[macro_export]
macro_rules! both_backends {
    ($(
        $(#[$meta:meta])*
        async fn $name:ident($app:ident) $(configure($tweak:expr))? $body:block
    )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                $(#[$meta])*
                async fn run($app: $crate::helpers::TestApp) $body

                fn tweak(_s: &mut switchboard::config::Settings) {
                    $( ($tweak)(_s); )?
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run($crate::helpers::spawn_app_with($crate::helpers::Backend::Sqlite, tweak).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if $crate::helpers::postgres_url().is_none() {
                        eprintln!("TEST_POSTGRES_URL is not set: the PostgreSQL variant of this test did not run");
                        return;
                    }
                    run($crate::helpers::spawn_app_with($crate::helpers::Backend::Postgres, tweak).await).await
                }
            }
        )*
    };
}

/// The PostgreSQL server for tests, if configured.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("SWITCHBOARD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("SWITCHBOARD_REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is not set");
            }
            None
        }
    }
}

/// A fresh PostgreSQL database, dropped when this is dropped.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let admin_url = postgres_url().expect("TEST_POSTGRES_URL");
        let name = format!("sbt_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx_connect_pg(&admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = replace_db(&admin_url, &name);
        PgDatabase {
            url,
            admin_url,
            name,
        }
    }
}

async fn sqlx_connect_pg(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Drop needs async; do it on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut conn = sqlx_connect_pg(&admin).await;
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            });
        })
        .join();
    }
}

/// Test settings: fast password hashing, port 0, private webhook targets
/// allowed (receivers run on loopback), quick pollers.
pub fn test_settings(dir: &std::path::Path, db_url: Option<&str>) -> Settings {
    let mut s = Settings::default();
    s.http.bind = "127.0.0.1:0".parse().unwrap();
    s.data.dir = dir.to_path_buf();
    if let Some(u) = db_url {
        s.database.url = Secret::new(u.to_owned());
    }
    s.database.max_connections = 5;
    s.security.master_key = Secret::new("11".repeat(32));
    s.security.argon2_memory_kib = 8192;
    s.security.argon2_iterations = 1;
    s.webhooks.allow_private_targets = true;
    s.webhooks.poll_interval_ms = 100;
    s.webhooks.backoff_base_secs = 1;
    s.webhooks.timeout_secs = 5;
    s.jobs.poll_interval_ms = 100;
    s.jobs.shutdown_grace_secs = 5;
    // SIP is off unless a test turns it on (then on a free port).
    s.sip.enabled = false;
    s.sip.bind = "127.0.0.1:0".parse().unwrap();
    s.sip.domain = "sip.test".into();
    s.log.level = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
    s
}

pub struct TestApp {
    /// `http://localhost:PORT` (localhost, so browsers accept secure cookies).
    pub base: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<AppState>,
    pub backend: Backend,
    pub settings: Settings,
    pub dir: tempfile::TempDir,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub pg: Option<PgDatabase>,
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let level = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
        switchboard::telemetry::init(&switchboard::config::LogSettings {
            format: switchboard::config::LogFormat::Pretty,
            level,
        });
    });
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a server with the demo tenant and a second tenant `other`.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let pg = match backend {
        Backend::Postgres => Some(PgDatabase::create().await),
        Backend::Sqlite => None,
    };
    let mut settings = test_settings(dir.path(), pg.as_ref().map(|p| p.url.as_str()));
    tweak(&mut settings);
    let app = Application::build(settings.clone())
        .await
        .expect("the application builds");
    let port = app.port();
    let state = app.state();
    for seed in [demo_seed(), other_seed()] {
        switchboard::seed::load(&state.db.conn, &state.hasher, &seed)
            .await
            .expect("seed");
    }
    let stop = app.stop_token();
    let server = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        base: format!("http://localhost:{port}"),
        port,
        client,
        state,
        backend,
        settings,
        dir,
        stop,
        server: Some(server),
        pg,
    }
}

/// Another node of the same cluster: same database, its own data directory
/// and port (the demo data is already there).
pub async fn spawn_second_node(first: &TestApp, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = first.settings.clone();
    settings.data.dir = dir.path().to_path_buf();
    if first.backend == Backend::Sqlite {
        settings.database.url = Secret::new(format!("sqlite://{}", first.sqlite_path().display()));
    }
    tweak(&mut settings);
    let app = Application::build(settings.clone())
        .await
        .expect("the second node builds");
    let port = app.port();
    let state = app.state();
    let stop = app.stop_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        base: format!("http://localhost:{port}"),
        port,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        state,
        backend: first.backend,
        settings,
        dir,
        stop,
        server: Some(server),
        pg: None,
    }
}

/// The Redis server for tests, if configured (CI sets it).
pub fn redis_url() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("SWITCHBOARD_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("CI must set TEST_REDIS_URL too");
            }
            eprintln!("TEST_REDIS_URL is not set: this Redis test did not run");
            None
        }
    }
}

pub fn demo_seed() -> switchboard::seed::SeedFile {
    switchboard::seed::parse(switchboard::seed::DEMO).unwrap()
}

/// A second tenant with the same shape as the demo one.
pub fn other_seed() -> switchboard::seed::SeedFile {
    let text = switchboard::seed::DEMO
        .replace("slug = \"demo\"", "slug = \"other\"")
        .replace(
            "name = \"Acme Demo Contact Center\"",
            "name = \"Other Corp\"",
        )
        .replace("@example.com", "@other.example");
    switchboard::seed::parse(&text).unwrap()
}

/// Credentials for one request.
#[derive(Clone, Debug)]
pub enum Creds {
    None,
    Session {
        cookie: String,
        csrf: String,
    },
    /// A session cookie without the CSRF header.
    CookieOnly(String),
    Key(String),
    Raw(String),
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with credentials applied.
    pub fn req(&self, method: Method, path: &str, creds: &Creds) -> RequestBuilder {
        let rb = self.client.request(method, self.url(path));
        match creds {
            Creds::None => rb,
            Creds::Session { cookie, csrf } => rb
                .header("Cookie", format!("sb_session={cookie}"))
                .header("X-CSRF-Token", csrf),
            Creds::CookieOnly(cookie) => rb.header("Cookie", format!("sb_session={cookie}")),
            Creds::Key(k) => rb.bearer_auth(k),
            Creds::Raw(h) => rb.header("Authorization", h),
        }
    }

    pub async fn get(&self, path: &str, creds: &Creds) -> Response {
        self.req(Method::GET, path, creds)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, creds: &Creds, body: &Value) -> Response {
        self.req(Method::POST, path, creds)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn patch(&self, path: &str, creds: &Creds, body: &Value) -> Response {
        self.req(Method::PATCH, path, creds)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str, creds: &Creds) -> Response {
        self.req(Method::DELETE, path, creds)
            .send()
            .await
            .expect("request")
    }

    /// Signs in to `tenant` and returns the session credentials.
    pub async fn login_to(&self, tenant: &str, email: &str, password: &str) -> Creds {
        let r = self
            .post(
                "/api/v1/auth/login",
                &Creds::None,
                &json!({ "tenant": tenant, "email": email, "password": password }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login of {email} failed");
        let cookie = session_cookie(&r).expect("a session cookie");
        let body: Value = r.json().await.unwrap();
        Creds::Session {
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Signs in as a demo user (`admin`, `supervisor`, `agent`, `marketer`).
    pub async fn login(&self, who: &str) -> Creds {
        self.login_to("demo", &format!("{who}@example.com"), DEMO_PASSWORD)
            .await
    }

    /// An API key of the given role in the given tenant (`demo` or `other`).
    pub async fn api_key(&self, tenant: &str, role: &str) -> Creds {
        let domain = if tenant == "demo" {
            "example.com"
        } else {
            "other.example"
        };
        let admin = self
            .login_to(tenant, &format!("admin@{domain}"), DEMO_PASSWORD)
            .await;
        let r = self
            .post(
                "/api/v1/api-keys",
                &admin,
                &json!({ "name": format!("{role} key"), "role": role }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        Creds::Key(body["token"].as_str().unwrap().to_owned())
    }

    /// Stops the server gracefully and waits for it.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(h) = self.server.take() {
            h.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Path of the SQLite database file (SQLite backend only).
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("switchboard.db")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The `sb_session` value from a response's Set-Cookie, if any.
pub fn session_cookie(r: &Response) -> Option<String> {
    set_cookie_header(r).and_then(|h| {
        h.split(';')
            .next()
            .and_then(|kv| kv.trim().strip_prefix("sb_session="))
            .map(str::to_owned)
    })
}

pub fn set_cookie_header(r: &Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sb_session="))
        .map(str::to_owned)
}

/// Asserts the status and the error code of an error response; returns the body.
pub async fn expect_error(r: Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "unexpected status; body: {body}");
    assert_eq!(
        body["error"]["code"], code,
        "unexpected error code; body: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error needs a message: {body}"
    );
    assert!(
        body["error"]["details"].is_object(),
        "details must be an object: {body}"
    );
    body
}

pub async fn json_ok(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "unexpected status; body: {body}");
    body
}

/// Polls `f` until it returns `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A block of `n` consecutive UDP ports on 127.0.0.1, all free when asked
/// (for SIPp's media, which takes a port and the ones after it). Each test
/// runs in its own process: the search starts at a place picked from the
/// process id, and every port of the block is checked by binding it.
pub fn free_udp_block(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Above the services' own RTP ranges in the tests (20000-29999 by
    // default, 41000-51999 in the SIP tests).
    const FROM: u32 = 52_000;
    const SPAN: u32 = 8_000;
    let start = (std::process::id() % (SPAN / 20)) * 20;
    for _ in 0..2_000 {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = FROM + (start + step * 20) % SPAN;
        let base = (base & !1) as u16;
        let held: Vec<_> = (0..n)
            .map_while(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no block of {n} free UDP ports");
}
