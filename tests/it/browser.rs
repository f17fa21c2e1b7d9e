//! The console in a real browser: scripts in `tests/browser/` drive Debian's
//! Chromium (through playwright-core) against a live server with the demo
//! tenant, and fail on any console error or CSP violation.
//!
//! - `console.mjs`: the role-aware navigation of every demo user, sign-in
//!   errors, the admin pages, an API key shown once, reloads, signing out.
//! - `contacts.mjs`: a marketer imports a CSV (progress to completion, the
//!   failed rows downloaded), builds a segment whose count matches the API,
//!   fills a list and exports; an agent opens a contact card.
//! - `flows.mjs`: the supervisor's flow editor (Supervisor › Flows).
//!
//! Needs `node`, `tests/browser/node_modules/playwright-core` and
//! `/usr/bin/chromium` (or `$CHROMIUM`); `scripts/test.sh` installs them.
//! When they are missing these tests fail: they are never skipped silently.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{Backend, spawn_app};

const SETUP_HINT: &str = "run scripts/test.sh, which installs Chromium and the browser test's \
                          node modules (npm ci in tests/browser)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_works_in_chromium() {
    run_browser_script("console.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_work_in_chromium() {
    run_browser_script("contacts.mjs").await;
}

/// `routing.mjs`: the supervisor configures a skill, a queue and an agent in
/// the console's forms; the agent accepts a routed call on the desk; the live
/// view, the "why" drawer and wrap-up follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_works_in_chromium() {
    run_browser_script("routing.mjs").await;
}

/// `flows.mjs`: the supervisor writes an IVR flow in the console's editor (a
/// syntax error shown inline on its line, then a menu), simulates it key by
/// key, runs its tests (a pass, then a failure with its diff), saves,
/// publishes and rolls back; an admin saves the flow settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_editor_in_chromium() {
    run_browser_script("flows.mjs").await;
}

/// Runs `tests/browser/<script>` against a fresh server (SQLite, demo
/// tenant) and checks its JSON summary.
async fn run_browser_script(script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser").join(script);
    let playwright = root.join("tests/browser/node_modules/playwright-core");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());

    assert!(script.is_file(), "{} is missing", script.display());
    assert!(
        playwright.is_dir(),
        "the browser test needs {}: {SETUP_HINT}",
        playwright.display()
    );
    assert!(
        Path::new(&chromium).is_file(),
        "the browser test needs Chromium at {chromium}: {SETUP_HINT}"
    );
    let node = Command::new("node").arg("--version").output().await;
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the browser test needs Node.js (`node` on PATH): {SETUP_HINT}"
    );

    let app = spawn_app(Backend::Sqlite).await;
    let child = Command::new("node")
        .arg(&script)
        .arg(&app.base)
        .current_dir(root)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    // The script has its own, shorter, timeout; this one only guards against
    // a wedged process.
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the browser test did not finish within 300 s")
        .expect("run node");

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test {} failed ({}).\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        script.display(),
        out.status
    );
    // The last line of stdout is the JSON summary.
    let summary: serde_json::Value = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary from the browser test:\n{stdout}\n{stderr}"));
    assert_eq!(summary["ok"], true, "{summary}");
    println!("browser test {}: {summary}", script.display());
    app.shutdown().await;
}
