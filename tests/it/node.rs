//! The real `switchboard` binary as a process, with its own data directory
//! and database: for tests that kill it (SIGKILL) or stop it (SIGTERM) and
//! start it again.

#![allow(dead_code)] // Shared: each test module uses part of it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{Creds, DEMO_PASSWORD, session_cookie};

pub struct Node {
    pub dir: PathBuf,
    pub db_url: String,
    /// Settings of this test (`SWITCHBOARD__SECTION__KEY`, value).
    env: Vec<(String, String)>,
    pub child: Option<Child>,
    pub base: String,
    pub client: reqwest::Client,
}

impl Node {
    pub fn new(dir: &Path, db_url: &str, env: &[(&str, &str)]) -> Self {
        switchboard::app::install_crypto_provider();
        Node {
            dir: dir.to_owned(),
            db_url: db_url.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            base: String::new(),
            client: reqwest::Client::new(),
        }
    }

    /// `switchboard ARGS` with this node's settings. `NODE_LOG=<filter>`
    /// shows the node's log (e.g. `NODE_LOG=sqlx::query=debug`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWITCHBOARD__DATA__DIR", &self.dir)
            .env("SWITCHBOARD__DATABASE__URL", &self.db_url)
            .env("SWITCHBOARD__HTTP__BIND", "127.0.0.1:0")
            .env("SWITCHBOARD__SIP__BIND", "127.0.0.1:0")
            .env("SWITCHBOARD__SECURITY__ARGON2_MEMORY_KIB", "8192")
            .env("SWITCHBOARD__SECURITY__ARGON2_ITERATIONS", "1")
            .env("SWITCHBOARD__SECURITY__MASTER_KEY", "22".repeat(32))
            .env("SWITCHBOARD__JOBS__SWEEP_INTERVAL_SECS", "1")
            .env("SWITCHBOARD__JOBS__POLL_INTERVAL_MS", "100")
            .env(
                "SWITCHBOARD__LOG__LEVEL",
                std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        c
    }

    /// Seeds the demo tenant's users, skills, queues and agents, without its
    /// sample contacts (tests count contacts).
    pub async fn seed(&self) {
        let file = self.dir.join("demo.toml");
        std::fs::write(&file, switchboard::seed::DEMO).unwrap();
        let out = self
            .command(&["seed", "--file", file.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `serve` and waits until it listens.
    pub async fn start(&mut self) {
        let mut child = self
            .command(&["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix("Switchboard is listening on ") {
                    return rest
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .trim_end_matches('/')
                        .to_owned();
                }
            }
            panic!("the server exited before listening");
        })
        .await
        .expect("the server starts within 30 s");
        let echo = std::env::var("NODE_LOG").is_ok();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                if echo {
                    eprintln!("{l}");
                }
            }
        });
        self.child = Some(child);
        self.base = base;
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id().unwrap()
    }

    /// SIGKILL: no chance to finish anything.
    pub async fn kill(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().await.unwrap();
    }

    /// SIGTERM, then waits for the graceful exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let st = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let mut c = self.child.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), c.wait())
            .await
            .expect("graceful exit in time")
            .unwrap()
    }

    pub fn req(&self, method: Method, path: &str, creds: &Creds) -> RequestBuilder {
        let rb = self.client.request(method, format!("{}{path}", self.base));
        match creds {
            Creds::Session { cookie, csrf } => rb
                .header("Cookie", format!("sb_session={cookie}"))
                .header("X-CSRF-Token", csrf),
            _ => rb,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        creds: &Creds,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut rb = self.req(method, path, creds);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.unwrap()
    }

    /// Signs in as a demo user (`admin@example.com`, ...).
    pub async fn login(&self, email: &str) -> Creds {
        let r = self
            .req(Method::POST, "/api/v1/auth/login", &Creds::None)
            .json(&json!({"tenant": "demo", "email": email, "password": DEMO_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = session_cookie(&r).unwrap();
        let body: Value = r.json().await.unwrap();
        Creds::Session {
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn job(&self, who: &Creds, job: &str) -> Value {
        let r = self
            .req(Method::GET, &format!("/api/v1/jobs/{job}"), who)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}
