//! Schemathesis (a real OpenAPI fuzzer) generates thousands of requests from
//! `/api/v1/openapi.json`, valid and invalid, and checks that the server
//! never fails (5xx), answers only with documented statuses, content types
//! and response schemas, refuses what the schema forbids, and enforces
//! authentication.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_survives_schemathesis_and_matches_its_document() {
    let st = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/schemathesis");
    assert!(
        st.exists(),
        "{} is missing: run scripts/test.sh, which installs it",
        st.display()
    );
    let app = spawn_app(Backend::Sqlite).await;
    let Creds::Key(key) = app.api_key("demo", "admin").await else {
        unreachable!()
    };
    let out = tokio::process::Command::new(&st)
        .args([
            "run",
            &app.url("/api/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {key}"),
            "--checks",
            "all",
            // The schema documents types, not every business rule (an email's
            // shape, a password's length): valid-looking data may be refused.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "10",
            // An endless response, and the route that could revoke the key in use.
            "--exclude-path",
            "/api/v1/events/stream",
            "--exclude-path",
            "/api/v1/routing/stream",
            "--exclude-path",
            "/api/v1/api-keys/{id}",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache of crashes goes to the working directory: not the repository.
        .current_dir(app.dir.path())
        .output()
        .await
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    // "Test cases:\n  1601 generated, 1601 passed, 69 skipped"
    let generated = text
        .lines()
        .filter_map(|l| l.trim().split_once(" generated,"))
        .find_map(|(n, _)| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        generated > 500,
        "schemathesis ran too few cases ({generated}):\n{text}"
    );
}
