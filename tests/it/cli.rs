//! The command line, run as a real process: help, configuration errors,
//! migrate, seed (idempotent), tenant creation, config printing.

use std::process::Output;

use crate::helpers::*;

fn switchboard(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD__DATA__DIR", dir)
        .env("SWITCHBOARD__SECURITY__ARGON2_MEMORY_KIB", "8192")
        .env("SWITCHBOARD__SECURITY__ARGON2_ITERATIONS", "1")
        .env("SWITCHBOARD__LOG__LEVEL", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run switchboard")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_describes_every_command_and_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let o = switchboard(dir.path(), &["--help"], &[]);
    assert!(o.status.success());
    let t = text(&o);
    for word in [
        "serve",
        "migrate",
        "seed",
        "tenant",
        "config",
        "flow",
        "--config",
        "SWITCHBOARD__SECTION__KEY",
    ] {
        assert!(t.contains(word), "--help lacks {word}:\n{t}");
    }
    let o = switchboard(dir.path(), &["serve", "--help"], &[]);
    assert!(text(&o).contains("--demo"));
    let o = switchboard(dir.path(), &["seed", "--help"], &[]);
    assert!(text(&o).contains("--file"));
    // The flow test format is explained where it is used.
    let o = switchboard(dir.path(), &["flow", "test", "--help"], &[]);
    for word in ["digits:", "[case.expect]", "caller_hangup", "exit code"] {
        assert!(text(&o).contains(word), "flow test --help lacks {word}");
    }
    let o = switchboard(dir.path(), &["--version"], &[]);
    assert!(text(&o).contains(env!("CARGO_PKG_VERSION")));
    let o = switchboard(dir.path(), &["frobnicate"], &[]);
    assert!(!o.status.success());
}

#[test]
fn bad_configuration_fails_at_start_and_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("SWITCHBOARD__HTTP__BINDD", "127.0.0.1:1")], "bindd"),
        (&[("SWITCHBOARD__NOPE__X", "1")], "nope"),
        (
            &[("SWITCHBOARD__HTTP__BIND", "not-an-address")],
            "SWITCHBOARD__HTTP__BIND",
        ),
        (
            &[("SWITCHBOARD__JOBS__CONCURRENCY", "zero")],
            "SWITCHBOARD__JOBS__CONCURRENCY",
        ),
        (
            &[("SWITCHBOARD__JOBS__CONCURRENCY", "0")],
            "jobs.concurrency",
        ),
        (
            &[("SWITCHBOARD__DATABASE__URL", "mysql://root@localhost/x")],
            "database.url",
        ),
        (
            &[("SWITCHBOARD__LOG__FORMAT", "xml")],
            "SWITCHBOARD__LOG__FORMAT",
        ),
        (&[("SWITCHBOARD__JOBS__STORAGE", "redis")], "redis.url"),
        (&[("SWITCHBOARD__SIP__BINDD", "127.0.0.1:0")], "bindd"),
        (
            &[("SWITCHBOARD__SIP__MAX_MESSAGE_BYTES", "10")],
            "sip.max_message_bytes",
        ),
        (
            &[("SWITCHBOARD__SIP__DOMAIN", "not a domain")],
            "sip.domain",
        ),
        (
            &[("SWITCHBOARD__SIP__REGISTER_MIN_EXPIRES", "0")],
            "sip.register_min_expires",
        ),
        (
            &[("SWITCHBOARD__IVR__MAX_OPERATIONS", "10")],
            "ivr.max_operations",
        ),
        (
            &[("SWITCHBOARD__IVR__STEP_TIME_MS", "soon")],
            "SWITCHBOARD__IVR__STEP_TIME_MS",
        ),
        (&[("SWITCHBOARD__ASR__POOL_SIZE", "1000")], "asr.pool_size"),
        (&[("SWITCHBOARD__ASR__MODELDIR", "/x")], "modeldir"),
    ];
    for (env, needle) in cases {
        let o = switchboard(dir.path(), &["serve"], env);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{env:?} should fail with exit code 2: {}",
            text(&o)
        );
        assert!(
            text(&o).contains(needle),
            "{env:?}: expected {needle:?} in {}",
            text(&o)
        );
    }
    // A file with an unknown key, and a missing file.
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[http]\nbind = \"127.0.0.1:0\"\nport = 5\n").unwrap();
    let o = switchboard(dir.path(), &["--config", f.to_str().unwrap(), "serve"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("port") && text(&o).contains("bad.toml"),
        "{}",
        text(&o)
    );
    let o = switchboard(dir.path(), &["--config", "/nonexistent.toml", "serve"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("does not exist"));
}

#[test]
fn config_prints_the_effective_settings_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[http]\nmax_body_bytes = 2048\n").unwrap();
    let o = switchboard(
        dir.path(),
        &["--config", f.to_str().unwrap(), "config"],
        &[
            (
                "SWITCHBOARD__DATABASE__URL",
                "postgres://app:hunter2secret@db.internal/sb",
            ),
            ("SWITCHBOARD__SECURITY__MASTER_KEY", &"ab".repeat(32)),
            ("SWITCHBOARD__REDIS__URL", "redis://:redispw@cache:6379/0"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("max_body_bytes = 2048"), "{t}");
    assert!(t.contains("postgres://app:***@db.internal/sb"), "{t}");
    for secret in ["hunter2secret", &"ab".repeat(32), "redispw"] {
        assert!(!t.contains(secret), "{secret} leaked:\n{t}");
    }
}

#[test]
fn migrate_and_seed_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let o = switchboard(dir.path(), &["migrate"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = switchboard(dir.path(), &["migrate"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let first = switchboard(dir.path(), &["seed", "--demo"], &[]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("19 created, 0 already present, 80 contacts added"),
        "{}",
        text(&first)
    );
    let second = switchboard(dir.path(), &["seed", "--demo"], &[]);
    assert!(second.status.success());
    assert!(
        text(&second).contains("0 created, 19 already present, 0 contacts added"),
        "{}",
        text(&second)
    );
    let o = switchboard(dir.path(), &["seed"], &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--demo or --file"));
    let bad = dir.path().join("bad-seed.toml");
    std::fs::write(&bad, "password = \"short\"\n[tenant]\nslug = \"x\"\n").unwrap();
    let o = switchboard(dir.path(), &["seed", "--file", bad.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("seed file is invalid") || text(&o).contains("password"),
        "{}",
        text(&o)
    );
}

#[test]
fn tenant_create_reads_the_password_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "tenant",
        "create",
        "--slug",
        "acme",
        "--name",
        "Acme Corp",
        "--admin-email",
        "boss@acme.test",
    ];
    let o = switchboard(dir.path(), &args, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("SWITCHBOARD_ADMIN_PASSWORD"),
        "{}",
        text(&o)
    );
    let o = switchboard(
        dir.path(),
        &args,
        &[("SWITCHBOARD_ADMIN_PASSWORD", "short")],
    );
    assert!(!o.status.success());
    let o = switchboard(
        dir.path(),
        &args,
        &[("SWITCHBOARD_ADMIN_PASSWORD", "a-long-enough-password")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("a-long-enough-password"));
    let o = switchboard(
        dir.path(),
        &args,
        &[("SWITCHBOARD_ADMIN_PASSWORD", "a-long-enough-password")],
    );
    assert!(!o.status.success(), "the slug is taken now");
    let o = switchboard(
        dir.path(),
        &[
            "tenant",
            "create",
            "--slug",
            "Bad Slug",
            "--name",
            "x",
            "--admin-email",
            "a@b.test",
        ],
        &[("SWITCHBOARD_ADMIN_PASSWORD", "a-long-enough-password")],
    );
    assert!(text(&o).contains("--slug"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--demo"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD__DATA__DIR", dir.path())
        .env("SWITCHBOARD__HTTP__BIND", "127.0.0.1:0")
        .env("SWITCHBOARD__SECURITY__ARGON2_MEMORY_KIB", "8192")
        .env("SWITCHBOARD__SECURITY__ARGON2_ITERATIONS", "1")
        .env("SWITCHBOARD__LOG__FORMAT", "json")
        .env("SWITCHBOARD__LOG__LEVEL", "info")
        // A speech model folder that holds none: start-up says so and goes on.
        .env("SWITCHBOARD__ASR__MODEL_DIR", dir.path().join("no-model"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    let mut log = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line()).await
    {
        if let Some(rest) = line.strip_prefix("Switchboard is listening on ") {
            base = Some(
                rest.split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches('/')
                    .to_owned(),
            );
            break;
        }
        log.push(line);
    }
    let base = base.expect("the server printed where it listens");
    switchboard::app::install_crypto_provider();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .header("X-Request-Id", "trace-me-42")
        .json(&serde_json::json!({"tenant": "demo", "email": "admin@example.com", "password": "wrong-password-xyz"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    child.start_kill().unwrap();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await
    {
        log.push(line);
    }
    let served: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["span"]["request_id"] == "trace-me-42")
        .collect();
    assert!(
        !served.is_empty(),
        "a JSON log line with the request id: {log:#?}"
    );
    assert!(
        served
            .iter()
            .any(|v| v["fields"]["message"] == "served" && v["fields"]["status"] == 401)
    );
    let speech_off = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("speech recognition is off"))
        })
        .unwrap_or_else(|| panic!("start-up says speech recognition is off: {log:#?}"));
    assert_eq!(speech_off["level"], "ERROR", "{speech_off}");
    assert!(
        speech_off["fields"]["model"]
            .as_str()
            .is_some_and(|m| m.ends_with("no-model")),
        "{speech_off}"
    );
    // The log (not the start-up banner, which tells demo users how to sign in)
    // never holds a password.
    let json_lines: Vec<&String> = log.iter().filter(|l| l.starts_with('{')).collect();
    assert!(json_lines.len() > 3);
    assert!(
        json_lines
            .iter()
            .all(|l| !l.contains("wrong-password-xyz") && !l.contains(DEMO_PASSWORD)),
        "{log:#?}"
    );
}
