//! Identity and access: sign-in, sessions and their cookie, CSRF, login
//! throttling, API keys, roles enforced by the typed extractors, user
//! management and how secrets are stored.

use chrono::{Duration, Utc};
use reqwest::{Method, Response, StatusCode};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use switchboard::iam::entity::{api_key, session, user};

use crate::both_backends;
use crate::helpers::*;

// ---- helpers ---------------------------------------------------------------

/// Runs a test body on both backends with tweaked settings.
macro_rules! with_settings {
    ($(
        async fn $name:ident($app:ident) configure($tweak:expr) $body:block
    )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn run($app: TestApp) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run(spawn_app_with(Backend::Sqlite, $tweak).await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if postgres_url().is_none() {
                        eprintln!("TEST_POSTGRES_URL is not set: the PostgreSQL variant of this test did not run");
                        return;
                    }
                    run(spawn_app_with(Backend::Postgres, $tweak).await).await
                }
            }
        )*
    };
}

fn uniq(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn login_raw(app: &TestApp, tenant: &str, email: &str, password: &str) -> Response {
    app.post(
        "/api/v1/auth/login",
        &Creds::None,
        &json!({ "tenant": tenant, "email": email, "password": password }),
    )
    .await
}

fn cookie_of(creds: &Creds) -> String {
    match creds {
        Creds::Session { cookie, .. } | Creds::CookieOnly(cookie) => cookie.clone(),
        other => panic!("not a session: {other:?}"),
    }
}

fn csrf_of(creds: &Creds) -> String {
    match creds {
        Creds::Session { csrf, .. } => csrf.clone(),
        other => panic!("not a session with a CSRF token: {other:?}"),
    }
}

fn token_of(creds: &Creds) -> String {
    match creds {
        Creds::Key(k) => k.clone(),
        other => panic!("not an API key: {other:?}"),
    }
}

/// Asserts a 401 `unauthenticated` with a `WWW-Authenticate` challenge.
async fn expect_unauthenticated(r: Response) -> Value {
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = expect_error(r, 401, "unauthenticated").await;
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer")),
        "a 401 needs a Bearer challenge, got {challenge:?}"
    );
    body
}

/// Audit entries of the caller's tenant with this action, newest first.
async fn audit(app: &TestApp, admin: &Creds, action: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/api/v1/audit?action={action}&limit=200"), admin)
        .await;
    let body = json_ok(r, 200).await;
    let items = body["items"].as_array().unwrap().clone();
    for i in &items {
        assert_eq!(i["action"], action, "the action filter is applied: {i}");
    }
    items
}

/// Creates a user in the admin's tenant; returns (id, email, password).
async fn new_user(app: &TestApp, admin: &Creds, role: &str) -> (String, String, String) {
    let email = format!("{}@example.com", uniq(role));
    let password = format!("pw-{}", uniq("secret"));
    let r = app
        .post(
            "/api/v1/users",
            admin,
            &json!({ "email": email, "display_name": format!("Test {role}"), "role": role, "password": password }),
        )
        .await;
    let body = json_ok(r, 201).await;
    (body["id"].as_str().unwrap().to_owned(), email, password)
}

/// Creates an API key; returns (the whole response body, the token as credentials).
async fn new_key(app: &TestApp, admin: &Creds, role: &str) -> (Value, Creds) {
    let r = app
        .post(
            "/api/v1/api-keys",
            admin,
            &json!({ "name": uniq("key"), "role": role }),
        )
        .await;
    let body = json_ok(r, 201).await;
    let token = body["token"].as_str().unwrap().to_owned();
    (body, Creds::Key(token))
}

async fn user_id_of(app: &TestApp, admin: &Creds, email: &str) -> String {
    let body = json_ok(app.get("/api/v1/users?limit=200", admin).await, 200).await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .unwrap_or_else(|| panic!("no user {email}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn session_hash(cookie: &str) -> String {
    switchboard::crypto::sha256_hex(cookie.as_bytes())
}

async fn session_row(app: &TestApp, cookie: &str) -> Option<session::Model> {
    session::Entity::find()
        .filter(session::Column::TokenHash.eq(session_hash(cookie)))
        .one(&app.state.db.conn)
        .await
        .unwrap()
}

async fn set_session_column(
    app: &TestApp,
    cookie: &str,
    col: session::Column,
    at: chrono::DateTime<Utc>,
) {
    let res = session::Entity::update_many()
        .col_expr(col, Expr::value(at))
        .filter(session::Column::TokenHash.eq(session_hash(cookie)))
        .exec(&app.state.db.conn)
        .await
        .unwrap();
    assert_eq!(res.rows_affected, 1, "the session row exists");
}

fn is_token(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("sbk_") else {
        return false;
    };
    let Some((prefix, secret)) = rest.split_once('_') else {
        return false;
    };
    prefix.len() == 12
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && secret.len() >= 32
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ---- sign-in -----------------------------------------------------------------

both_backends! {
    async fn login_returns_user_tenant_csrf_and_a_strict_session_cookie(app) {
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "tenant": "demo", "email": "admin@example.com", "password": DEMO_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let header = set_cookie_header(&r).expect("a session cookie is set");
        let cookie = session_cookie(&r).unwrap();
        let body: Value = r.json().await.unwrap();

        // The cookie: long random value, HttpOnly, SameSite=Strict, Secure, site-wide, with a lifetime.
        assert!(cookie.len() >= 40, "cookie value too short: {cookie}");
        let attrs: Vec<String> = header.split(';').skip(1).map(|a| a.trim().to_owned()).collect();
        for want in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(attrs.iter().any(|a| a == want), "missing {want} in {header}");
        }
        let ttl = app.state.settings.security.session_ttl_minutes * 60;
        assert!(attrs.iter().any(|a| *a == format!("Max-Age={ttl}")), "Max-Age={ttl} missing in {header}");
        assert!(!attrs.iter().any(|a| a.starts_with("Domain")), "no Domain attribute: {header}");

        // The body: the user, the tenant and the CSRF token, never a password hash.
        assert_eq!(body["user"]["email"], "admin@example.com");
        assert_eq!(body["user"]["role"], "admin");
        assert_eq!(body["user"]["active"], true);
        assert_eq!(body["tenant"]["slug"], "demo");
        assert_eq!(body["tenant"]["name"], "Acme Demo Contact Center");
        let csrf = body["csrf_token"].as_str().unwrap();
        assert!(csrf.len() >= 24, "{csrf}");
        assert_ne!(csrf, cookie);
        let expires: chrono::DateTime<Utc> = body["expires_at"].as_str().unwrap().parse().unwrap();
        let expected = Utc::now() + Duration::seconds(ttl as i64);
        assert!((expires - expected).num_seconds().abs() < 60, "{expires} vs {expected}");
        let text = body.to_string();
        assert!(!text.contains("argon2") && !text.contains("password_hash"), "{text}");

        // Two sign-ins get two different sessions.
        let again = app.login("admin").await;
        assert_ne!(cookie_of(&again), cookie);
        assert_ne!(csrf_of(&again), csrf);

        // The login is recorded on the user.
        let admin = Creds::Session { cookie, csrf: csrf.to_owned() };
        let me = json_ok(app.get("/api/v1/auth/me", &admin).await, 200).await;
        assert!(me["user"]["last_login_at"].is_string(), "{me}");
    }

    async fn failed_sign_ins_look_the_same_whatever_was_wrong(app) {
        let admin = app.login("admin").await;
        let (uid, email, password) = new_user(&app, &admin, "agent").await;
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "active": false })).await;
        assert_eq!(json_ok(r, 200).await["active"], false);

        let cases = [
            ("wrong password", "demo", "admin@example.com", "not-the-password"),
            ("unknown email", "demo", "nobody@example.com", DEMO_PASSWORD),
            ("unknown workspace", "no-such-tenant", "admin@example.com", DEMO_PASSWORD),
            ("other tenant's user", "demo", "admin@other.example", DEMO_PASSWORD),
            ("inactive user", "demo", email.as_str(), password.as_str()),
        ];
        let mut messages = Vec::new();
        for (what, tenant, email, password) in cases {
            let r = login_raw(&app, tenant, email, password).await;
            assert!(session_cookie(&r).is_none(), "{what}: no cookie on failure");
            assert!(r.headers().contains_key("x-request-id"));
            let body = expect_error(r, 401, "invalid_credentials").await;
            assert!(body["error"]["details"].as_object().unwrap().is_empty(), "{what}: no details: {body}");
            messages.push(body["error"]["message"].as_str().unwrap().to_owned());
        }
        assert!(messages.windows(2).all(|w| w[0] == w[1]), "one message for every failure: {messages:?}");

        // Email is matched case-insensitively and trimmed.
        let r = login_raw(&app, "demo", "  ADMIN@Example.COM ", DEMO_PASSWORD).await;
        assert_eq!(json_ok(r, 200).await["user"]["email"], "admin@example.com");
        // The other tenant's admin signs in to their own tenant only.
        let r = login_raw(&app, "other", "admin@other.example", DEMO_PASSWORD).await;
        assert_eq!(json_ok(r, 200).await["tenant"]["slug"], "other");
        // Reactivated, the user signs in again.
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "active": true })).await;
        assert_eq!(json_ok(r, 200).await["active"], true);
        let r = login_raw(&app, "demo", &email, &password).await;
        assert_eq!(r.status(), 200);
    }

    async fn sign_ins_are_audited_with_address_and_request_id(app) {
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("X-Request-Id", "login-fail-1")
            .json(&json!({ "tenant": "demo", "email": "Agent@example.com", "password": "wrong-password!" }))
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_credentials").await;
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("X-Request-Id", "login-fail-2")
            .json(&json!({ "tenant": "demo", "email": "ghost@example.com", "password": "wrong-password!" }))
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_credentials").await;
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("X-Request-Id", "login-ok-1")
            .header("User-Agent", "auth-test/1.0")
            .json(&json!({ "tenant": "demo", "email": "agent@example.com", "password": DEMO_PASSWORD }))
            .send()
            .await
            .unwrap();
        let ok_body = json_ok(r, 200).await;
        let agent_id = ok_body["user"]["id"].as_str().unwrap().to_owned();

        let admin = app.login("admin").await;
        let failed = audit(&app, &admin, "login.failed").await;
        let f1 = failed.iter().find(|e| e["request_id"] == "login-fail-1").expect("the first failure is audited");
        assert_eq!(f1["ip"], "127.0.0.1");
        assert_eq!(f1["actor_type"], "anonymous");
        assert!(f1["actor_id"].is_null());
        assert_eq!(f1["target_type"], "user");
        assert_eq!(f1["target_id"], agent_id.as_str());
        assert_eq!(f1["details"]["email"], "agent@example.com");
        assert!(!f1.to_string().contains("wrong-password!"), "passwords are never audited: {f1}");
        let f2 = failed.iter().find(|e| e["request_id"] == "login-fail-2").expect("an unknown email is audited");
        assert_eq!(f2["ip"], "127.0.0.1");
        assert!(f2["target_id"].is_null());
        assert_eq!(f2["details"]["email"], "ghost@example.com");

        let ok = audit(&app, &admin, "login.succeeded").await;
        let s = ok.iter().find(|e| e["request_id"] == "login-ok-1").expect("the success is audited");
        assert_eq!(s["ip"], "127.0.0.1");
        assert_eq!(s["actor_type"], "user");
        assert_eq!(s["actor_id"], agent_id.as_str());
        assert_eq!(s["target_type"], "session");
        assert_eq!(s["details"]["user_agent"], "auth-test/1.0");
        // The other tenant's log has none of this.
        let other = app.login_to("other", "admin@other.example", DEMO_PASSWORD).await;
        let theirs = audit(&app, &other, "login.failed").await;
        assert!(theirs.is_empty(), "{theirs:?}");
    }
}

// ---- sessions ----------------------------------------------------------------

both_backends! {
    async fn the_session_cookie_authenticates_and_me_returns_the_csrf_token(app) {
        let creds = app.login("supervisor").await;
        let me = json_ok(app.get("/api/v1/auth/me", &Creds::CookieOnly(cookie_of(&creds))).await, 200).await;
        assert_eq!(me["csrf_token"], csrf_of(&creds).as_str());
        assert_eq!(me["role"], "supervisor");
        assert_eq!(me["user"]["email"], "supervisor@example.com");
        assert_eq!(me["tenant"]["slug"], "demo");
        assert!(me["api_key"].is_null());
        assert!(me["session_expires_at"].is_string());
        // Without any credentials, nothing.
        expect_unauthenticated(app.get("/api/v1/auth/me", &Creds::None).await).await;
        // The CSRF token is no credential by itself.
        let r = app
            .client
            .get(app.url("/api/v1/auth/me"))
            .header("X-CSRF-Token", csrf_of(&creds))
            .send()
            .await
            .unwrap();
        expect_unauthenticated(r).await;
        // Nor is the session id or the stored hash.
        let row = session_row(&app, &cookie_of(&creds)).await.expect("the session is stored");
        for fake in [row.id.to_string(), row.token_hash.clone(), row.csrf_token.clone()] {
            expect_unauthenticated(app.get("/api/v1/auth/me", &Creds::CookieOnly(fake)).await).await;
        }
    }

    async fn signing_in_again_rotates_the_browsers_session(app) {
        let first = app.login("agent").await;
        let old = cookie_of(&first);
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("Cookie", format!("sb_session={old}"))
            .json(&json!({ "tenant": "demo", "email": "agent@example.com", "password": DEMO_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let new = session_cookie(&r).expect("a new cookie");
        let body: Value = r.json().await.unwrap();
        assert_ne!(new, old, "a new token at every sign-in");
        assert_ne!(body["csrf_token"], csrf_of(&first).as_str());
        assert!(session_row(&app, &old).await.is_none(), "the old session is deleted");
        expect_unauthenticated(app.get("/api/v1/auth/me", &Creds::CookieOnly(old.clone())).await).await;
        let me = json_ok(app.get("/api/v1/auth/me", &Creds::CookieOnly(new.clone())).await, 200).await;
        assert_eq!(me["user"]["email"], "agent@example.com");

        // Another browser's session of the same user is left alone.
        let other_browser = app.login("agent").await;
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("Cookie", format!("sb_session={new}"))
            .json(&json!({ "tenant": "demo", "email": "agent@example.com", "password": DEMO_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        json_ok(app.get("/api/v1/auth/me", &other_browser).await, 200).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &Creds::CookieOnly(new)).await).await;

        // A failed sign-in does not end the session the browser has.
        let keep = app.login("agent").await;
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("Cookie", format!("sb_session={}", cookie_of(&keep)))
            .json(&json!({ "tenant": "demo", "email": "agent@example.com", "password": "wrong-password-x" }))
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_credentials").await;
        json_ok(app.get("/api/v1/auth/me", &keep).await, 200).await;
    }

    async fn logout_ends_the_session_and_clears_the_cookie(app) {
        let creds = app.login("marketer").await;
        let other_session = app.login("marketer").await;
        let r = app.req(Method::POST, "/api/v1/auth/logout", &creds).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let header = set_cookie_header(&r).expect("the cookie is cleared");
        assert_eq!(session_cookie(&r).as_deref(), Some(""), "{header}");
        assert!(header.contains("Max-Age=0"), "{header}");
        assert!(header.contains("Path=/"), "{header}");
        assert!(session_row(&app, &cookie_of(&creds)).await.is_none());
        expect_unauthenticated(app.get("/api/v1/auth/me", &creds).await).await;
        // A second logout with the dead cookie is refused too.
        expect_unauthenticated(app.req(Method::POST, "/api/v1/auth/logout", &creds).send().await.unwrap()).await;
        // Other sessions of the same user live on.
        json_ok(app.get("/api/v1/auth/me", &other_session).await, 200).await;

        let admin = app.login("admin").await;
        let outs = audit(&app, &admin, "logout").await;
        assert_eq!(outs.len(), 1, "{outs:?}");
        assert_eq!(outs[0]["target_type"], "session");
        // Logging out with an API key is harmless and ends nothing.
        let (_, key) = new_key(&app, &admin, "agent").await;
        let r = app.req(Method::POST, "/api/v1/auth/logout", &key).send().await.unwrap();
        assert_eq!(r.status(), 204);
        json_ok(app.get("/api/v1/auth/me", &key).await, 200).await;
    }

    async fn forged_expired_and_idle_sessions_are_refused(app) {
        // Forged cookies of every shape.
        let real = app.login("agent").await;
        let real_cookie = cookie_of(&real);
        let mut tampered = real_cookie.clone().into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        for forged in [
            String::from_utf8(tampered).unwrap(),
            "x".to_owned(),
            "a".repeat(43),
            "a".repeat(4096),
            format!("{real_cookie}x"),
            "' OR 1=1 --".to_owned(),
        ] {
            let r = app
                .client
                .get(app.url("/api/v1/auth/me"))
                .header("Cookie", format!("sb_session={forged}"))
                .send()
                .await
                .unwrap();
            expect_unauthenticated(r).await;
        }
        // An empty cookie value.
        let r = app.client.get(app.url("/api/v1/auth/me")).header("Cookie", "sb_session=").send().await.unwrap();
        expect_unauthenticated(r).await;
        // A cookie of another name is ignored.
        let r = app
            .client
            .get(app.url("/api/v1/auth/me"))
            .header("Cookie", format!("session={real_cookie}"))
            .send()
            .await
            .unwrap();
        expect_unauthenticated(r).await;
        json_ok(app.get("/api/v1/auth/me", &real).await, 200).await;

        // Expired: past its absolute lifetime.
        let expired = app.login("agent").await;
        set_session_column(&app, &cookie_of(&expired), session::Column::ExpiresAt, Utc::now() - Duration::seconds(1)).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &expired).await).await;
        assert!(session_row(&app, &cookie_of(&expired)).await.is_none(), "expired sessions are deleted on sight");
        // ... and it stays dead even if the clock were right again.
        expect_unauthenticated(app.get("/api/v1/auth/me", &expired).await).await;

        // Idle: not used for longer than session_idle_minutes.
        let idle_minutes = app.state.settings.security.session_idle_minutes as i64;
        let idle = app.login("agent").await;
        set_session_column(&app, &cookie_of(&idle), session::Column::LastSeenAt, Utc::now() - Duration::minutes(idle_minutes) - Duration::seconds(5)).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &idle).await).await;
        assert!(session_row(&app, &cookie_of(&idle)).await.is_none());

        // Used just inside the idle window: still valid, and the use slides the window.
        let recent = app.login("agent").await;
        let almost = Utc::now() - Duration::minutes(idle_minutes) + Duration::minutes(2);
        set_session_column(&app, &cookie_of(&recent), session::Column::LastSeenAt, almost).await;
        json_ok(app.get("/api/v1/auth/me", &recent).await, 200).await;
        let row = session_row(&app, &cookie_of(&recent)).await.unwrap();
        assert!(row.last_seen_at > Utc::now() - Duration::minutes(1), "last_seen_at slides: {}", row.last_seen_at);
    }
}

// ---- CSRF ----------------------------------------------------------------------

both_backends! {
    async fn cookie_writes_need_the_sessions_csrf_token(app) {
        let admin = app.login("admin").await;
        let cookie_only = Creds::CookieOnly(cookie_of(&admin));
        let wrong = Creds::Session { cookie: cookie_of(&admin), csrf: "not-the-token".into() };
        let second = app.login("admin").await;
        let someone_elses = Creds::Session { cookie: cookie_of(&admin), csrf: csrf_of(&second) };
        let empty = Creds::Session { cookie: cookie_of(&admin), csrf: String::new() };
        let (uid, _, _) = new_user(&app, &admin, "agent").await;
        let (key_body, key) = new_key(&app, &admin, "agent").await;
        let key_id = key_body["id"].as_str().unwrap().to_owned();
        let users_before = json_ok(app.get("/api/v1/users?limit=200", &admin).await, 200).await["items"].as_array().unwrap().len();

        for bad in [&cookie_only, &wrong, &someone_elses, &empty] {
            // POST
            let r = app
                .post("/api/v1/users", bad, &json!({ "email": format!("{}@example.com", uniq("csrf")), "display_name": "X", "role": "agent", "password": "long-enough-password" }))
                .await;
            expect_error(r, 403, "csrf_failed").await;
            // PATCH
            let r = app.patch(&format!("/api/v1/users/{uid}"), bad, &json!({ "role": "admin" })).await;
            expect_error(r, 403, "csrf_failed").await;
            // DELETE
            let r = app.delete(&format!("/api/v1/api-keys/{key_id}"), bad).await;
            expect_error(r, 403, "csrf_failed").await;
            // logout (a cross-site page must not sign the user out)
            let r = app.req(Method::POST, "/api/v1/auth/logout", bad).send().await.unwrap();
            expect_error(r, 403, "csrf_failed").await;
            // Reads need no token.
            json_ok(app.get("/api/v1/users", bad).await, 200).await;
            json_ok(app.get("/api/v1/auth/me", bad).await, 200).await;
            let r = app.req(Method::HEAD, "/api/v1/auth/me", bad).send().await.unwrap();
            assert_ne!(r.status(), 403, "HEAD is a read");
        }
        // Nothing happened.
        let users_after = json_ok(app.get("/api/v1/users?limit=200", &admin).await, 200).await["items"].as_array().unwrap().len();
        assert_eq!(users_before, users_after);
        let u = json_ok(app.get(&format!("/api/v1/users/{uid}"), &admin).await, 200).await;
        assert_eq!(u["role"], "agent");
        json_ok(app.get("/api/v1/auth/me", &key).await, 200).await;
        json_ok(app.get("/api/v1/auth/me", &admin).await, 200).await;

        // With the right token, the same writes work.
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "display_name": "Renamed" })).await;
        assert_eq!(json_ok(r, 200).await["display_name"], "Renamed");
        let r = app.delete(&format!("/api/v1/api-keys/{key_id}"), &admin).await;
        assert!(json_ok(r, 200).await["revoked_at"].is_string());
        let r = app
            .post("/api/v1/users", &second, &json!({ "email": format!("{}@example.com", uniq("csrf")), "display_name": "X", "role": "agent", "password": "long-enough-password" }))
            .await;
        json_ok(r, 201).await;

        // API keys need no CSRF token (there is no ambient credential to abuse).
        let (_, admin_key) = new_key(&app, &admin, "admin").await;
        let r = app
            .post("/api/v1/users", &admin_key, &json!({ "email": format!("{}@example.com", uniq("key")), "display_name": "Y", "role": "agent", "password": "long-enough-password" }))
            .await;
        json_ok(r, 201).await;
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin_key, &json!({ "display_name": "By key" })).await;
        json_ok(r, 200).await;
    }
}

// ---- throttling ------------------------------------------------------------------

with_settings! {
    async fn an_account_is_locked_after_repeated_failures(app) configure(|s: &mut switchboard::config::Settings| {
        s.security.login_failures_per_account = 3;
        s.security.login_failures_per_address = 50;
    }) {
        for _ in 0..3 {
            let r = login_raw(&app, "demo", "agent@example.com", "wrong-password-1").await;
            expect_error(r, 401, "invalid_credentials").await;
        }
        // Locked: even the right password is refused, with a hint when to retry.
        let window = app.state.settings.security.login_window_secs;
        for (email, password) in [
            ("agent@example.com", DEMO_PASSWORD),
            ("AGENT@example.com", DEMO_PASSWORD),
            (" agent@example.com ", DEMO_PASSWORD),
            ("agent@example.com", "wrong-password-1"),
        ] {
            let r = login_raw(&app, "demo", email, password).await;
            assert!(session_cookie(&r).is_none());
            let retry: u64 = r.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
            let body = expect_error(r, 429, "rate_limited").await;
            assert_eq!(body["error"]["details"]["retry_after_secs"], retry);
            assert!((1..=window).contains(&retry), "{retry} within the {window}s window");
        }
        // Variants of the workspace name that resolve to the same tenant are the same account.
        for tenant in [" demo", "demo ", "\tdemo"] {
            let r = login_raw(&app, tenant, "agent@example.com", DEMO_PASSWORD).await;
            expect_error(r, 429, "rate_limited").await;
        }
        // Other accounts are not affected.
        let r = login_raw(&app, "demo", "agent2@example.com", DEMO_PASSWORD).await;
        assert_eq!(r.status(), 200);
        // The same email in another tenant is another account.
        let r = login_raw(&app, "other", "agent@other.example", DEMO_PASSWORD).await;
        assert_eq!(r.status(), 200);
        // Throttled attempts are counted in the metrics.
        let text = app.get("/metrics", &Creds::None).await.text().await.unwrap();
        assert!(text.contains("switchboard_login_attempts_total{outcome=\"throttled\"} 7"), "{text}");
        assert!(text.contains("switchboard_login_attempts_total{outcome=\"failed\"} 3"), "{text}");
    }

    async fn an_address_is_locked_after_failures_across_accounts(app) configure(|s: &mut switchboard::config::Settings| {
        s.security.login_failures_per_account = 100;
        s.security.login_failures_per_address = 4;
    }) {
        let before = app.login("admin").await;
        for i in 0..4 {
            let r = login_raw(&app, "demo", &format!("guess{i}@example.com"), "wrong-password-1").await;
            expect_error(r, 401, "invalid_credentials").await;
        }
        // Every account, even with the right password, from this address.
        for (tenant, email) in [("demo", "admin@example.com"), ("demo", "supervisor@example.com"), ("other", "admin@other.example")] {
            let r = login_raw(&app, tenant, email, DEMO_PASSWORD).await;
            assert!(r.headers().contains_key("retry-after"));
            let body = expect_error(r, 429, "rate_limited").await;
            assert!(body["error"]["details"]["retry_after_secs"].as_u64().unwrap() >= 1);
        }
        // A session from before keeps working.
        json_ok(app.get("/api/v1/auth/me", &before).await, 200).await;
    }

    async fn a_success_before_the_limit_resets_the_accounts_count(app) configure(|s: &mut switchboard::config::Settings| {
        s.security.login_failures_per_account = 3;
        s.security.login_failures_per_address = 50;
    }) {
        for _ in 0..2 {
            expect_error(login_raw(&app, "demo", "supervisor@example.com", "wrong-password-1").await, 401, "invalid_credentials").await;
        }
        assert_eq!(login_raw(&app, "demo", "supervisor@example.com", DEMO_PASSWORD).await.status(), 200);
        for _ in 0..2 {
            expect_error(login_raw(&app, "demo", "supervisor@example.com", "wrong-password-1").await, 401, "invalid_credentials").await;
        }
        // 4 failures in all, but never 3 in a row: not locked.
        assert_eq!(login_raw(&app, "demo", "supervisor@example.com", DEMO_PASSWORD).await.status(), 200);
        // Now 3 in a row lock it.
        for _ in 0..3 {
            expect_error(login_raw(&app, "demo", "supervisor@example.com", "wrong-password-1").await, 401, "invalid_credentials").await;
        }
        expect_error(login_raw(&app, "demo", "supervisor@example.com", DEMO_PASSWORD).await, 429, "rate_limited").await;
    }
}

// ---- API keys ----------------------------------------------------------------------

both_backends! {
    async fn an_api_key_is_shown_once_and_authenticates_as_bearer(app) {
        let admin = app.login("admin").await;
        let r = app
            .post("/api/v1/api-keys", &admin, &json!({ "name": "CRM sync", "role": "supervisor" }))
            .await;
        let created = json_ok(r, 201).await;
        let token = created["token"].as_str().unwrap().to_owned();
        assert!(is_token(&token), "token format: {token}");
        let id = created["id"].as_str().unwrap().to_owned();
        let prefix = created["prefix"].as_str().unwrap().to_owned();
        assert_eq!(token[4..16], prefix, "the prefix is the token's public part");
        assert_eq!(created["name"], "CRM sync");
        assert_eq!(created["role"], "supervisor");
        assert!(created["revoked_at"].is_null());
        assert!(created["expires_at"].is_null());
        let secret = &token[17..];
        assert!(created.get("secret").is_none() && created.get("secret_hash").is_none(), "{created}");

        // List and get never show the token, its secret or its hash.
        let row = api_key::Entity::find().filter(api_key::Column::Prefix.eq(prefix.clone())).one(&app.state.db.conn).await.unwrap().unwrap();
        let list = app.get("/api/v1/api-keys?limit=200", &admin).await.text().await.unwrap();
        let one = app.get(&format!("/api/v1/api-keys/{id}"), &admin).await.text().await.unwrap();
        for text in [&list, &one] {
            assert!(text.contains(&prefix), "{text}");
            assert!(!text.contains(secret), "the secret leaks: {text}");
            assert!(!text.contains(&row.secret_hash), "the hash leaks: {text}");
            assert!(!text.contains("\"token\""), "{text}");
        }
        let one: Value = serde_json::from_str(&one).unwrap();
        assert_eq!(one["id"], id.as_str());
        assert!(one.get("token").is_none());

        // The key authenticates as itself, with its role, without cookies or CSRF.
        let key = Creds::Key(token.clone());
        let me = json_ok(app.get("/api/v1/auth/me", &key).await, 200).await;
        assert_eq!(me["role"], "supervisor");
        assert_eq!(me["api_key"]["id"], id.as_str());
        assert!(me["user"].is_null());
        assert!(me["csrf_token"].is_null());
        assert_eq!(me["tenant"]["slug"], "demo");
        // Surrounding whitespace is tolerated.
        let r = app.get("/api/v1/auth/me", &Creds::Raw(format!("Bearer {token}  "))).await;
        assert_eq!(r.status(), 200);
        // Its use is recorded.
        let seen = json_ok(app.get(&format!("/api/v1/api-keys/{id}"), &admin).await, 200).await;
        assert!(seen["last_used_at"].is_string(), "{seen}");

        // Its role is enforced: a supervisor key works interactions but manages no users.
        json_ok(app.get("/api/v1/interactions", &key).await, 200).await;
        json_ok(app.get("/api/v1/queues", &key).await, 200).await;
        expect_error(app.get("/api/v1/users", &key).await, 403, "forbidden").await;
        expect_error(app.get("/api/v1/api-keys", &key).await, 403, "forbidden").await;
        let r = app.post("/api/v1/api-keys", &key, &json!({ "name": "escalate", "role": "admin" })).await;
        expect_error(r, 403, "forbidden").await;
        // A key has no password to change.
        let r = app.post("/api/v1/auth/password", &key, &json!({ "current_password": "x", "new_password": "long-enough-password" })).await;
        expect_error(r, 403, "forbidden").await;

        // Creation is audited, without the secret.
        let created_log = audit(&app, &admin, "api_key.created").await;
        let e = created_log.iter().find(|e| e["target_id"] == id.as_str()).expect("api_key.created");
        assert_eq!(e["target_type"], "api_key");
        assert_eq!(e["actor_type"], "user");
        assert_eq!(e["details"]["role"], "supervisor");
        assert_eq!(e["details"]["name"], "CRM sync");
        assert!(!e.to_string().contains(secret));
    }

    async fn a_revoked_key_stops_working_at_once(app) {
        let admin = app.login("admin").await;
        let (created, key) = new_key(&app, &admin, "admin").await;
        let id = created["id"].as_str().unwrap();
        let (_, bystander) = new_key(&app, &admin, "agent").await;
        json_ok(app.get("/api/v1/users", &key).await, 200).await;
        let r = app.delete(&format!("/api/v1/api-keys/{id}"), &admin).await;
        let revoked = json_ok(r, 200).await;
        assert!(revoked["revoked_at"].is_string());
        expect_unauthenticated(app.get("/api/v1/users", &key).await).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &key).await).await;
        // The listing shows it revoked.
        let got = json_ok(app.get(&format!("/api/v1/api-keys/{id}"), &admin).await, 200).await;
        assert_eq!(got["revoked_at"], revoked["revoked_at"]);
        // Revoking again is harmless and keeps the first time.
        let again = json_ok(app.delete(&format!("/api/v1/api-keys/{id}"), &admin).await, 200).await;
        assert_eq!(again["revoked_at"], revoked["revoked_at"]);
        // Other keys are unaffected.
        json_ok(app.get("/api/v1/auth/me", &bystander).await, 200).await;
        // An admin key may revoke another key.
        let (_, admin_key) = new_key(&app, &admin, "admin").await;
        let (victim, victim_key) = new_key(&app, &admin, "agent").await;
        let r = app.delete(&format!("/api/v1/api-keys/{}", victim["id"].as_str().unwrap()), &admin_key).await;
        json_ok(r, 200).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &victim_key).await).await;

        let log = audit(&app, &admin, "api_key.revoked").await;
        assert!(log.iter().any(|e| e["target_id"] == id && e["actor_type"] == "user"), "{log:?}");
        assert!(log.iter().any(|e| e["target_id"] == victim["id"] && e["actor_type"] == "api_key"), "{log:?}");
        // Unknown ids are 404.
        let r = app.delete(&format!("/api/v1/api-keys/{}", uuid::Uuid::now_v7()), &admin).await;
        expect_error(r, 404, "not_found").await;
    }

    async fn malformed_and_forged_authorization_is_refused(app) {
        let admin = app.login("admin").await;
        let (created, key) = new_key(&app, &admin, "admin").await;
        let token = token_of(&key);
        let prefix = created["prefix"].as_str().unwrap();
        let secret = &token[17..];
        let mut wrong_secret: Vec<u8> = secret.as_bytes().to_vec();
        wrong_secret[0] = if wrong_secret[0] == b'A' { b'B' } else { b'A' };
        let wrong_secret = String::from_utf8(wrong_secret).unwrap();
        let headers = [
            format!("Bearer sbk_{prefix}_{wrong_secret}"),
            format!("Bearer sbk_{prefix}_"),
            format!("Bearer sbk_{prefix}"),
            format!("Bearer sbk_{}_{secret}", prefix.to_uppercase()),
            format!("Bearer sbk_{}_{secret}", "0".repeat(12)),
            format!("Bearer {}", &token[4..]),
            format!("Bearer {token}x"),
            format!("Bearer{token}"),
            format!("bearer{token}"),
            format!("Token {token}"),
            format!("Basic {}", base64_of(&format!("admin@example.com:{DEMO_PASSWORD}"))),
            "Basic".to_owned(),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            "garbage".to_owned(),
            "Bearer sbk_' OR '1'='1_x".to_owned(),
            format!("Bearer {}", "A".repeat(10 * 1024)),
            format!("Bearer sbk_{prefix}_{}", "A".repeat(10 * 1024)),
        ];
        for h in &headers {
            let r = app.get("/api/v1/users", &Creds::Raw(h.clone())).await;
            let body = expect_unauthenticated(r).await;
            assert!(!body.to_string().contains(secret), "{body}");
        }
        // A bad Authorization header is not rescued by a good cookie.
        let r = app
            .req(Method::GET, "/api/v1/users", &admin)
            .header("Authorization", "Bearer garbage")
            .send()
            .await
            .unwrap();
        expect_unauthenticated(r).await;
        // The real key still works after all that.
        json_ok(app.get("/api/v1/users", &key).await, 200).await;
        // Writes with forged keys are refused before anything else.
        let r = app.post("/api/v1/users", &Creds::Raw(headers[0].clone()), &json!({ "email": "forged@example.com", "display_name": "F", "role": "admin", "password": "long-enough-password" })).await;
        expect_unauthenticated(r).await;
        let users = json_ok(app.get("/api/v1/users?limit=200", &admin).await, 200).await;
        assert!(!users.to_string().contains("forged@example.com"));
    }

    async fn expired_keys_are_refused_and_past_expiry_is_invalid(app) {
        let admin = app.login("admin").await;
        // In the past at creation: 422, nothing created.
        let before = json_ok(app.get("/api/v1/api-keys?limit=200", &admin).await, 200).await["items"].as_array().unwrap().len();
        let past = (Utc::now() - Duration::minutes(5)).to_rfc3339();
        let r = app.post("/api/v1/api-keys", &admin, &json!({ "name": "old", "role": "agent", "expires_at": past })).await;
        let body = expect_error(r, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["fields"][0]["path"], "expires_at");
        let after = json_ok(app.get("/api/v1/api-keys?limit=200", &admin).await, 200).await["items"].as_array().unwrap().len();
        assert_eq!(before, after);

        // A future expiry is accepted and works until then.
        let future = Utc::now() + Duration::hours(1);
        let r = app.post("/api/v1/api-keys", &admin, &json!({ "name": "soon", "role": "agent", "expires_at": future.to_rfc3339() })).await;
        let created = json_ok(r, 201).await;
        let got: chrono::DateTime<Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
        assert!((got - future).num_seconds().abs() <= 1);
        let key = Creds::Key(created["token"].as_str().unwrap().to_owned());
        json_ok(app.get("/api/v1/auth/me", &key).await, 200).await;

        // Expire it in the database: refused at once.
        let res = api_key::Entity::update_many()
            .col_expr(api_key::Column::ExpiresAt, Expr::value(Some(Utc::now() - Duration::seconds(1))))
            .filter(api_key::Column::Prefix.eq(created["prefix"].as_str().unwrap()))
            .exec(&app.state.db.conn)
            .await
            .unwrap();
        assert_eq!(res.rows_affected, 1);
        expect_unauthenticated(app.get("/api/v1/auth/me", &key).await).await;
        expect_unauthenticated(app.get("/api/v1/interactions", &key).await).await;
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

// ---- roles -----------------------------------------------------------------------

struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    /// Roles admitted; everyone else gets 403.
    allowed: &'static [&'static str],
    /// The status an admitted caller gets.
    ok: u16,
}

fn call(
    method: Method,
    path: impl Into<String>,
    body: Option<Value>,
    allowed: &'static [&'static str],
    ok: u16,
) -> Call {
    Call {
        method,
        path: path.into(),
        body,
        allowed,
        ok,
    }
}

const ALL: &[&str] = &["admin", "supervisor", "agent", "marketer"];
const ADMIN: &[&str] = &["admin"];
const STAFF: &[&str] = &["admin", "supervisor", "agent"];
const SUPERVISORS: &[&str] = &["admin", "supervisor"];

fn role_calls(interaction: &str, user: &str, queue: &str, skill: &str, agent: &str) -> Vec<Call> {
    let new_user = || json!({ "email": format!("{}@example.com", uniq("role")), "display_name": "R", "role": "agent", "password": "long-enough-password" });
    let missing = uuid::Uuid::now_v7();
    vec![
        call(Method::GET, "/api/v1/users", None, ADMIN, 200),
        call(Method::POST, "/api/v1/users", Some(new_user()), ADMIN, 201),
        call(
            Method::GET,
            format!("/api/v1/users/{user}"),
            None,
            ADMIN,
            200,
        ),
        call(
            Method::PATCH,
            format!("/api/v1/users/{user}"),
            Some(json!({ "display_name": "Alex Agent" })),
            ADMIN,
            200,
        ),
        call(Method::GET, "/api/v1/api-keys", None, ADMIN, 200),
        call(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({ "name": "role test", "role": "agent" })),
            ADMIN,
            201,
        ),
        call(Method::GET, "/api/v1/audit", None, ADMIN, 200),
        call(Method::GET, "/api/v1/webhooks", None, ADMIN, 200),
        call(
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({ "url": "http://127.0.0.1:9/hook" })),
            ADMIN,
            201,
        ),
        call(Method::GET, "/api/v1/tenant", None, ALL, 200),
        call(
            Method::PATCH,
            "/api/v1/tenant",
            Some(json!({ "timezone": "America/New_York" })),
            ADMIN,
            200,
        ),
        call(Method::GET, "/api/v1/auth/me", None, ALL, 200),
        call(Method::GET, "/api/v1/interactions", None, STAFF, 200),
        call(
            Method::POST,
            "/api/v1/interactions",
            Some(json!({ "channel": "chat", "direction": "inbound" })),
            STAFF,
            201,
        ),
        call(
            Method::GET,
            format!("/api/v1/interactions/{interaction}"),
            None,
            STAFF,
            200,
        ),
        call(
            Method::GET,
            format!("/api/v1/interactions/{interaction}/events"),
            None,
            STAFF,
            200,
        ),
        call(
            Method::POST,
            format!("/api/v1/interactions/{interaction}/notes"),
            Some(json!({ "text": "a note" })),
            STAFF,
            201,
        ),
        call(
            Method::POST,
            format!("/api/v1/interactions/{interaction}/transitions"),
            Some(json!({ "type": "enter_flow", "flow": "main" })),
            SUPERVISORS,
            200,
        ),
        call(Method::GET, "/api/v1/events", None, SUPERVISORS, 200),
        call(Method::GET, "/api/v1/events/stream", None, STAFF, 200),
        call(Method::GET, "/api/v1/queues", None, STAFF, 200),
        call(
            Method::GET,
            format!("/api/v1/queues/{queue}"),
            None,
            STAFF,
            200,
        ),
        call(Method::GET, "/api/v1/skills", None, STAFF, 200),
        call(
            Method::GET,
            format!("/api/v1/skills/{skill}"),
            None,
            STAFF,
            200,
        ),
        call(Method::GET, "/api/v1/agents", None, STAFF, 200),
        call(
            Method::GET,
            format!("/api/v1/agents/{agent}"),
            None,
            STAFF,
            200,
        ),
        call(Method::GET, "/api/v1/jobs", None, ALL, 200),
        call(
            Method::GET,
            format!("/api/v1/jobs/{missing}"),
            None,
            ALL,
            404,
        ),
        call(
            Method::POST,
            format!("/api/v1/jobs/{missing}/cancel"),
            None,
            ALL,
            404,
        ),
        call(
            Method::GET,
            format!("/api/v1/webhooks/{missing}"),
            None,
            ADMIN,
            404,
        ),
        call(
            Method::DELETE,
            format!("/api/v1/api-keys/{missing}"),
            None,
            ADMIN,
            404,
        ),
    ]
}

async fn first_item_id(app: &TestApp, creds: &Creds, path: &str) -> String {
    let body = json_ok(app.get(path, creds).await, 200).await;
    body["items"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no items in {path}: {body}"))
        .to_owned()
}

both_backends! {
    async fn every_role_gets_what_it_may_and_403_for_the_rest(app) {
        let admin = app.login("admin").await;
        let r = app.post("/api/v1/interactions", &admin, &json!({ "channel": "voice", "direction": "inbound" })).await;
        let interaction = json_ok(r, 201).await["interaction"]["id"].as_str().unwrap().to_owned();
        let user = user_id_of(&app, &admin, "agent@example.com").await;
        let queue = first_item_id(&app, &admin, "/api/v1/queues").await;
        let skill = first_item_id(&app, &admin, "/api/v1/skills").await;
        let agent = first_item_id(&app, &admin, "/api/v1/agents").await;

        let mut principals: Vec<(String, &str, Creds)> = Vec::new();
        for role in ["admin", "supervisor", "agent", "marketer"] {
            principals.push((format!("{role} session"), role, app.login(role).await));
            principals.push((format!("{role} API key"), role, new_key(&app, &admin, role).await.1));
        }
        for (who, role, creds) in &principals {
            for c in role_calls(&interaction, &user, &queue, &skill, &agent) {
                let mut rb = app.req(c.method.clone(), &c.path, creds);
                if let Some(b) = &c.body {
                    rb = rb.json(b);
                }
                let r = rb.send().await.unwrap();
                let what = format!("{who}: {} {}", c.method, c.path);
                if c.allowed.contains(role) {
                    assert_eq!(r.status().as_u16(), c.ok, "{what}");
                } else {
                    let body = expect_error(r, 403, "forbidden").await;
                    assert!(body["error"]["message"].as_str().unwrap().contains(role), "{what}: {body}");
                }
            }
        }
        // Nothing the forbidden calls attempted happened: the agent user is still an agent named as before.
        let u = json_ok(app.get(&format!("/api/v1/users/{user}"), &admin).await, 200).await;
        assert_eq!(u["role"], "agent");
        // Only admins' webhooks exist: one per admin principal.
        let hooks = json_ok(app.get("/api/v1/webhooks?limit=200", &admin).await, 200).await;
        assert_eq!(hooks["items"].as_array().unwrap().len(), 2);
        // Transitions: only by admin and supervisor principals (4), plus the created event and notes by staff (6).
        let events = json_ok(app.get(&format!("/api/v1/interactions/{interaction}/events?limit=200"), &admin).await, 200).await;
        let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "flow_entered").count(), 4, "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == "note").count(), 6, "{kinds:?}");
    }

    async fn every_api_route_but_login_needs_credentials(app) {
        let doc = json_ok(app.get("/api/v1/openapi.json", &Creds::None).await, 200).await;
        let paths = doc["paths"].as_object().unwrap();
        let forged_cookie = Creds::CookieOnly("forged-session-cookie-value-0123456789abcdef".into());
        let forged_key = Creds::Key(format!("sbk_{}_{}", "0123456789ab", "x".repeat(43)));
        let mut checked = 0;
        for (path, ops) in paths {
            assert!(path.starts_with("/api/v1/"), "{path}");
            for method in ops.as_object().unwrap().keys() {
                if method == "post" && path == "/api/v1/auth/login" {
                    continue;
                }
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let concrete = path
                    .replace("{id}", &uuid::Uuid::new_v4().to_string())
                    .replace("{key}", "plan")
                    .replace("{external_id}", "ext-1")
                    .replace("{name}", "welcome")
                    .replace("{version}", "1");
                assert!(!concrete.contains('{'), "an unknown path parameter in {path}");
                for creds in [&Creds::None, &forged_cookie, &forged_key] {
                    let mut rb = app.req(m.clone(), &concrete, creds);
                    if matches!(m, Method::POST | Method::PATCH) {
                        rb = rb.json(&json!({}));
                    }
                    let r = rb.send().await.unwrap();
                    assert!(r.headers().contains_key("x-request-id"));
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    assert_eq!(status, 401, "{method} {path} with {creds:?}: {body}");
                    assert_eq!(body["error"]["code"], "unauthenticated", "{method} {path}: {body}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 30, "only {checked} operations found");
        // Login itself is open (a bad body is a 422, not a 401).
        let r = app.post("/api/v1/auth/login", &Creds::None, &json!({})).await;
        expect_error(r, 422, "validation_failed").await;
    }
}

both_backends! {
    async fn credentials_are_judged_before_the_body(app) {
        let admin = app.login("admin").await;
        let agent = app.login("agent").await;
        let marketer_key = new_key(&app, &admin, "marketer").await.1;
        let expired = app.login("supervisor").await;
        set_session_column(&app, &cookie_of(&expired), session::Column::ExpiresAt, Utc::now() - Duration::seconds(1)).await;
        let forged = Creds::Key(format!("sbk_{}_{}", "abcdef012345", "y".repeat(43)));
        let bodies: [(&str, &[u8]); 5] = [
            ("application/json", b"{\"email\": "),
            ("application/json", b"{}"),
            ("application/json", b""),
            ("application/json", b"{\"email\": 5, \"nope\": true}"),
            ("text/plain", b"hello"),
        ];
        for (ct, body) in bodies {
            let send = |creds: &Creds, method: Method, path: &str| {
                app.req(method, path, creds).header("Content-Type", ct).body(body.to_vec()).send()
            };
            // Forbidden role: 403, whatever the body.
            expect_error(send(&agent, Method::POST, "/api/v1/users").await.unwrap(), 403, "forbidden").await;
            expect_error(send(&marketer_key, Method::POST, "/api/v1/interactions").await.unwrap(), 403, "forbidden").await;
            // Missing CSRF token: 403.
            let r = send(&Creds::CookieOnly(cookie_of(&admin)), Method::PATCH, "/api/v1/tenant").await.unwrap();
            expect_error(r, 403, "csrf_failed").await;
            // Unknown, expired or forged credentials: 401.
            expect_unauthenticated(send(&forged, Method::POST, "/api/v1/api-keys").await.unwrap()).await;
            expect_unauthenticated(send(&expired, Method::POST, "/api/v1/webhooks").await.unwrap()).await;
            expect_unauthenticated(send(&Creds::None, Method::POST, "/api/v1/interactions").await.unwrap()).await;
        }
        // With good credentials the body is judged.
        let r = app.req(Method::POST, "/api/v1/users", &admin).header("Content-Type", "text/plain").body("x").send().await.unwrap();
        expect_error(r, 415, "unsupported_media_type").await;
        // Signing in with a stale cookie in the browser still works (login has no credentials to check).
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("Cookie", format!("sb_session={}", cookie_of(&expired)))
            .json(&json!({ "tenant": "demo", "email": "supervisor@example.com", "password": DEMO_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("Cookie", format!("sb_session={}", cookie_of(&admin)))
            .header("Content-Type", "application/json")
            .body("{\"tenant\": ")
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "malformed_json").await;
    }
}

// ---- users -------------------------------------------------------------------------

both_backends! {
    async fn admins_create_users_and_emails_are_unique_per_tenant(app) {
        let admin = app.login("admin").await;
        let email = format!("{}@example.com", uniq("new"));
        let r = app
            .post("/api/v1/users", &admin, &json!({ "email": email.to_uppercase(), "display_name": "  New Person  ", "role": "supervisor", "password": "long-enough-password" }))
            .await;
        let created = json_ok(r, 201).await;
        assert_eq!(created["email"], email.as_str(), "emails are stored lower-case");
        assert_eq!(created["display_name"], "New Person", "names are trimmed");
        assert_eq!(created["role"], "supervisor");
        assert_eq!(created["active"], true);
        assert!(created["last_login_at"].is_null());
        assert!(created.get("password").is_none() && created.get("password_hash").is_none());
        let id = created["id"].as_str().unwrap();
        assert_eq!(json_ok(app.get(&format!("/api/v1/users/{id}"), &admin).await, 200).await["email"], email.as_str());
        // The new user signs in with the password given.
        let s = app.login_to("demo", &email, "long-enough-password").await;
        assert_eq!(json_ok(app.get("/api/v1/auth/me", &s).await, 200).await["role"], "supervisor");

        // The same email again, in any case: 409, and no second user.
        for dup in [email.clone(), email.to_uppercase(), format!(" {email} ")] {
            let r = app
                .post("/api/v1/users", &admin, &json!({ "email": dup, "display_name": "Dup", "role": "agent", "password": "long-enough-password" }))
                .await;
            expect_error(r, 409, "conflict").await;
        }
        let r = app
            .post("/api/v1/users", &admin, &json!({ "email": "admin@example.com", "display_name": "Dup", "role": "admin", "password": "long-enough-password" }))
            .await;
        expect_error(r, 409, "conflict").await;
        let users = json_ok(app.get("/api/v1/users?limit=200", &admin).await, 200).await;
        assert_eq!(users["items"].as_array().unwrap().iter().filter(|u| u["email"] == email.as_str()).count(), 1);
        // The seeded admin still signs in with the old password.
        app.login("admin").await;

        // Another tenant may use the same address.
        let other = app.login_to("other", "admin@other.example", DEMO_PASSWORD).await;
        let r = app
            .post("/api/v1/users", &other, &json!({ "email": email, "display_name": "Twin", "role": "agent", "password": "another-long-password" }))
            .await;
        json_ok(r, 201).await;
        app.login_to("other", &email, "another-long-password").await;
        // ... and signing in to demo still uses demo's password.
        expect_error(login_raw(&app, "demo", &email, "another-long-password").await, 401, "invalid_credentials").await;

        let log = audit(&app, &admin, "user.created").await;
        assert!(log.iter().any(|e| e["target_id"] == id && e["details"]["role"] == "supervisor"), "{log:?}");
    }

    async fn role_changes_are_audited_and_take_effect_at_once(app) {
        let admin = app.login("admin").await;
        let (uid, email, password) = new_user(&app, &admin, "agent").await;
        let s = app.login_to("demo", &email, &password).await;
        expect_error(app.get("/api/v1/events", &s).await, 403, "forbidden").await;
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "role": "supervisor" })).await;
        assert_eq!(json_ok(r, 200).await["role"], "supervisor");
        // The existing session has the new role right away.
        json_ok(app.get("/api/v1/events", &s).await, 200).await;
        assert_eq!(json_ok(app.get("/api/v1/auth/me", &s).await, 200).await["role"], "supervisor");
        // A no-op role change is not audited.
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "role": "supervisor" })).await;
        json_ok(r, 200).await;
        let log = audit(&app, &admin, "user.role_changed").await;
        let mine: Vec<&Value> = log.iter().filter(|e| e["target_id"] == uid.as_str()).collect();
        assert_eq!(mine.len(), 1, "{log:?}");
        assert_eq!(mine[0]["details"]["from"], "agent");
        assert_eq!(mine[0]["details"]["to"], "supervisor");
        assert_eq!(mine[0]["actor_type"], "user");
        assert_eq!(mine[0]["target_type"], "user");
        assert_eq!(mine[0]["ip"], "127.0.0.1");
        assert!(mine[0]["request_id"].is_string());
        // Unknown users are 404; a bad role value is 422 and changes nothing.
        let r = app.patch(&format!("/api/v1/users/{}", uuid::Uuid::now_v7()), &admin, &json!({ "role": "agent" })).await;
        expect_error(r, 404, "not_found").await;
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "role": "root" })).await;
        expect_error(r, 422, "validation_failed").await;
        assert_eq!(json_ok(app.get(&format!("/api/v1/users/{uid}"), &admin).await, 200).await["role"], "supervisor");
    }

    async fn deactivating_a_user_ends_their_sessions(app) {
        let admin = app.login("admin").await;
        let (uid, email, password) = new_user(&app, &admin, "agent").await;
        let s1 = app.login_to("demo", &email, &password).await;
        let s2 = app.login_to("demo", &email, &password).await;
        let bystander = app.login("agent").await;
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "active": false })).await;
        assert_eq!(json_ok(r, 200).await["active"], false);
        expect_unauthenticated(app.get("/api/v1/auth/me", &s1).await).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &s2).await).await;
        assert!(session_row(&app, &cookie_of(&s1)).await.is_none());
        expect_error(login_raw(&app, "demo", &email, &password).await, 401, "invalid_credentials").await;
        json_ok(app.get("/api/v1/auth/me", &bystander).await, 200).await;
        let log = audit(&app, &admin, "user.deactivated").await;
        assert!(log.iter().any(|e| e["target_id"] == uid.as_str()), "{log:?}");
        // Reactivation does not bring the old sessions back.
        json_ok(app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "active": true })).await, 200).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &s1).await).await;
        assert!(audit(&app, &admin, "user.activated").await.iter().any(|e| e["target_id"] == uid.as_str()));
    }

    async fn the_last_active_admin_cannot_be_demoted_or_deactivated(app) {
        let admin = app.login("admin").await;
        let admin_id = user_id_of(&app, &admin, "admin@example.com").await;
        let before = json_ok(app.get(&format!("/api/v1/users/{admin_id}"), &admin).await, 200).await;
        for change in [
            json!({ "role": "supervisor" }),
            json!({ "active": false }),
            json!({ "role": "agent", "display_name": "Changed Too" }),
            json!({ "active": false, "password": "a-brand-new-password" }),
        ] {
            let r = app.patch(&format!("/api/v1/users/{admin_id}"), &admin, &change).await;
            expect_error(r, 409, "conflict").await;
        }
        let after = json_ok(app.get(&format!("/api/v1/users/{admin_id}"), &admin).await, 200).await;
        assert_eq!(before, after, "nothing changed");
        // The session and the password still work.
        json_ok(app.get("/api/v1/users", &admin).await, 200).await;
        app.login("admin").await;
        assert!(audit(&app, &admin, "user.role_changed").await.is_empty());

        // An inactive second admin does not count.
        let (second, second_email, second_pw) = new_user(&app, &admin, "admin").await;
        let second_session = app.login_to("demo", &second_email, &second_pw).await;
        json_ok(app.patch(&format!("/api/v1/users/{second}"), &admin, &json!({ "active": false })).await, 200).await;
        expect_error(app.patch(&format!("/api/v1/users/{admin_id}"), &admin, &json!({ "role": "agent" })).await, 409, "conflict").await;
        // An active one does: then the first may go, and the second is the last.
        json_ok(app.patch(&format!("/api/v1/users/{second}"), &admin, &json!({ "active": true })).await, 200).await;
        let second_session2 = app.login_to("demo", &second_email, &second_pw).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &second_session).await).await;
        let r = app.patch(&format!("/api/v1/users/{admin_id}"), &second_session2, &json!({ "role": "supervisor" })).await;
        assert_eq!(json_ok(r, 200).await["role"], "supervisor");
        expect_error(app.get("/api/v1/users", &admin).await, 403, "forbidden").await;
        let r = app.patch(&format!("/api/v1/users/{second}"), &second_session2, &json!({ "active": false })).await;
        expect_error(r, 409, "conflict").await;
        let r = app.patch(&format!("/api/v1/users/{second}"), &second_session2, &json!({ "role": "agent" })).await;
        expect_error(r, 409, "conflict").await;
        let s = json_ok(app.get(&format!("/api/v1/users/{second}"), &second_session2).await, 200).await;
        assert_eq!((s["role"].as_str(), s["active"].as_bool()), (Some("admin"), Some(true)));
    }

    async fn an_admin_password_reset_ends_the_users_sessions(app) {
        let admin = app.login("admin").await;
        let (uid, email, password) = new_user(&app, &admin, "agent").await;
        let s = app.login_to("demo", &email, &password).await;
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "password": "reset-by-the-admin" })).await;
        let body = json_ok(r, 200).await;
        assert!(body.get("password").is_none() && body.get("password_hash").is_none());
        expect_unauthenticated(app.get("/api/v1/auth/me", &s).await).await;
        expect_error(login_raw(&app, "demo", &email, &password).await, 401, "invalid_credentials").await;
        app.login_to("demo", &email, "reset-by-the-admin").await;
        // The admin's own session is untouched.
        json_ok(app.get("/api/v1/auth/me", &admin).await, 200).await;
        let log = audit(&app, &admin, "user.password_reset").await;
        assert!(log.iter().any(|e| e["target_id"] == uid.as_str()), "{log:?}");
        assert!(!log.iter().any(|e| e.to_string().contains("reset-by-the-admin")));
        // A short password is refused and nothing changes.
        let r = app.patch(&format!("/api/v1/users/{uid}"), &admin, &json!({ "password": "short" })).await;
        let e = expect_error(r, 422, "validation_failed").await;
        assert_eq!(e["error"]["details"]["fields"][0]["path"], "password");
        app.login_to("demo", &email, "reset-by-the-admin").await;
    }

    async fn changing_your_own_password_needs_the_current_one(app) {
        let admin = app.login("admin").await;
        let (_, email, password) = new_user(&app, &admin, "marketer").await;
        let s = app.login_to("demo", &email, &password).await;
        let other_browser = app.login_to("demo", &email, &password).await;

        // Wrong current password: 422 on current_password.
        let r = app.post("/api/v1/auth/password", &s, &json!({ "current_password": "not-my-password", "new_password": "my-new-password-1" })).await;
        let e = expect_error(r, 422, "validation_failed").await;
        assert_eq!(e["error"]["details"]["fields"][0]["path"], "current_password");
        // Missing current password: 422.
        let r = app.post("/api/v1/auth/password", &s, &json!({ "new_password": "my-new-password-1" })).await;
        let e = expect_error(r, 422, "validation_failed").await;
        assert!(e.to_string().contains("current_password"), "{e}");
        // Too short a new password: 422 on new_password.
        let r = app.post("/api/v1/auth/password", &s, &json!({ "current_password": password, "new_password": "short" })).await;
        let e = expect_error(r, 422, "validation_failed").await;
        assert_eq!(e["error"]["details"]["fields"][0]["path"], "new_password");
        // Without the CSRF token: 403.
        let r = app.post("/api/v1/auth/password", &Creds::CookieOnly(cookie_of(&s)), &json!({ "current_password": password, "new_password": "my-new-password-1" })).await;
        expect_error(r, 403, "csrf_failed").await;
        // None of that changed anything.
        json_ok(app.get("/api/v1/auth/me", &s).await, 200).await;
        app.login_to("demo", &email, &password).await;

        // Right: 204, every session ends, the cookie is cleared, the new password works.
        let r = app.post("/api/v1/auth/password", &s, &json!({ "current_password": password, "new_password": "my-new-password-1" })).await;
        assert_eq!(r.status(), 204);
        let header = set_cookie_header(&r).expect("the cookie is cleared");
        assert!(header.contains("Max-Age=0"), "{header}");
        expect_unauthenticated(app.get("/api/v1/auth/me", &s).await).await;
        expect_unauthenticated(app.get("/api/v1/auth/me", &other_browser).await).await;
        expect_error(login_raw(&app, "demo", &email, &password).await, 401, "invalid_credentials").await;
        let fresh = app.login_to("demo", &email, "my-new-password-1").await;
        json_ok(app.get("/api/v1/auth/me", &fresh).await, 200).await;
        let log = audit(&app, &admin, "user.password_changed").await;
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(!log[0].to_string().contains("my-new-password-1"));
    }
}

// ---- stored secrets ------------------------------------------------------------------

both_backends! {
    async fn passwords_keys_and_sessions_are_stored_hashed(app) {
        let admin = app.login("admin").await;
        let (uid, _, password) = new_user(&app, &admin, "agent").await;
        let db = &app.state.db.conn;

        // Passwords: argon2id PHC strings with a salt, never the password.
        let users = user::Entity::find().all(db).await.unwrap();
        assert!(users.len() >= 12, "both tenants' users");
        for u in &users {
            assert!(u.password_hash.starts_with("$argon2id$v=19$"), "{}: {}", u.email, u.password_hash);
            assert!(!u.password_hash.contains(DEMO_PASSWORD));
        }
        let mine = users.iter().find(|u| u.id.to_string() == uid).unwrap();
        assert!(!mine.password_hash.contains(&password));
        let seeded: Vec<&user::Model> = users.iter().filter(|u| u.email.starts_with("admin@")).collect();
        assert_eq!(seeded.len(), 2);
        assert_ne!(seeded[0].password_hash, seeded[1].password_hash, "salted: one password, two hashes");

        // API keys: a SHA-256 of the secret, nothing of the token.
        let (created, key) = new_key(&app, &admin, "agent").await;
        let token = token_of(&key);
        let row = api_key::Entity::find()
            .filter(api_key::Column::Prefix.eq(created["prefix"].as_str().unwrap()))
            .one(db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.secret_hash.len(), 64);
        assert!(row.secret_hash.bytes().all(|b| b.is_ascii_hexdigit()), "{}", row.secret_hash);
        let secret = &token[17..];
        assert!(!token.contains(&row.secret_hash));
        assert!(!row.secret_hash.contains(secret));
        for part in token.split('_').filter(|p| p.len() >= 8 && *p != row.prefix) {
            assert!(!row.secret_hash.contains(part), "a part of the token is stored: {part}");
        }
        assert_eq!(row.secret_hash, switchboard::crypto::sha256_hex(secret.as_bytes()));

        // Sessions: the hash of the cookie, never the cookie.
        let cookie = cookie_of(&admin);
        let sessions = session::Entity::find().all(db).await.unwrap();
        assert!(!sessions.is_empty());
        for s in &sessions {
            assert_ne!(s.token_hash, cookie);
            assert!(!s.token_hash.contains(&cookie));
            assert_eq!(s.token_hash.len(), 64);
        }
        assert!(sessions.iter().any(|s| s.token_hash == session_hash(&cookie)));
    }
}

crate::both_backends! {
    async fn guessing_the_current_password_is_throttled(app) configure(|s: &mut switchboard::config::Settings| s.security.login_failures_per_account = 3) {
        let agent = app.login("agent").await;
        for _ in 0..3 {
            let r = app.post("/api/v1/auth/password", &agent,
                &serde_json::json!({"current_password": "not-my-password", "new_password": "a-brand-new-password"})).await;
            expect_error(r, 422, "validation_failed").await;
        }
        let r = app.post("/api/v1/auth/password", &agent,
            &serde_json::json!({"current_password": DEMO_PASSWORD, "new_password": "a-brand-new-password"})).await;
        assert!(r.headers().contains_key("retry-after"));
        expect_error(r, 429, "rate_limited").await;
        // Nothing changed: the old password still signs in.
        app.login("agent").await;
    }
}
