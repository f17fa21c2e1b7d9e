//! The command line: `serve`, `migrate`, `seed`, `tenant create`, `config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::Application;
use crate::config::Settings;

const AFTER_HELP: &str = "\
Configuration is layered: built-in defaults, then the TOML file given with
--config, then environment variables named SWITCHBOARD__SECTION__KEY, e.g.
  SWITCHBOARD__HTTP__BIND=127.0.0.1:0
  SWITCHBOARD__DATABASE__URL=postgres://user@host/db
Run `switchboard config` to see the effective settings (secrets redacted).
Unknown keys and bad values stop the program with a message saying what to fix.";

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Switchboard: a cloud contact center in one binary",
    long_about = "Switchboard: a cloud contact center in one binary.\n\n\
                  ACD routing, IVR flows, campaigns and the agent console. It runs on an embedded \
                  SQLite database by default and on PostgreSQL for scale-out.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// A TOML configuration file (see README.md for every key).
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "SWITCHBOARD_CONFIG"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: HTTP API, console, job workers, webhook delivery.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Load data into the database.
    Seed(SeedArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Load the demo tenant (idempotently) before serving, and print how to sign in.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Load the built-in demo tenant (seed-data/demo.toml).
    #[arg(long, conflicts_with = "file")]
    pub demo: bool,
    /// Load a seed file of the same format instead.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with its first admin. The admin's password is read
    /// from SWITCHBOARD_ADMIN_PASSWORD so that it never appears in the
    /// process list or shell history.
    Create {
        /// Short name used at sign-in, e.g. `acme`.
        #[arg(long)]
        slug: String,
        /// Display name, e.g. "Acme Corp".
        #[arg(long)]
        name: String,
        /// The first admin's email.
        #[arg(long)]
        admin_email: String,
        /// IANA time zone.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Default phone region (ISO 3166 alpha-2).
        #[arg(long, default_value = "US")]
        region: String,
    },
}

/// Runs the CLI; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&settings.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("switchboard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    crate::app::install_crypto_provider();
    match command {
        Command::Config => {
            let mut s = settings.clone();
            s.database.url = crate::config::Secret::new(settings.database_url_redacted());
            let redacted = toml::to_string_pretty(&RedactedSettings(&s))?;
            println!("{redacted}");
            Ok(())
        }
        Command::Migrate => {
            let db = crate::db::Database::connect(&settings.database_url(), 1).await?;
            db.migrate().await?;
            println!("migrations applied to {}", settings.database_url_redacted());
            Ok(())
        }
        Command::Seed(args) => {
            let text = match (&args.file, args.demo) {
                (Some(f), _) => std::fs::read_to_string(f)?,
                (None, true) => crate::seed::DEMO.to_owned(),
                (None, false) => anyhow::bail!("say what to load: --demo or --file FILE"),
            };
            let seed = crate::seed::parse(&text)?;
            let db = crate::db::Database::connect(&settings.database_url(), 2).await?;
            db.migrate().await?;
            let hasher = crate::iam::password::Hasher::new(
                settings.security.argon2_memory_kib,
                settings.security.argon2_iterations,
            );
            let r = crate::seed::load(&db.conn, &hasher, &seed).await?;
            let contacts = match (args.demo && args.file.is_none(), r.tenant_id) {
                (true, Some(t)) => crate::seed::load_demo_contacts(&db.conn, t).await?,
                _ => 0,
            };
            println!(
                "seeded tenant {:?}: {} created, {} already present, {contacts} contacts added",
                seed.tenant.slug, r.created, r.existing
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::Create {
            slug,
            name,
            admin_email,
            timezone,
            region,
        }) => create_tenant(&settings, &slug, &name, &admin_email, &timezone, &region).await,
        Command::Serve(args) => serve(settings, args.demo).await,
    }
}

async fn create_tenant(
    settings: &Settings,
    slug: &str,
    name: &str,
    admin_email: &str,
    timezone: &str,
    region: &str,
) -> anyhow::Result<()> {
    use crate::iam::domain::{Email, Name, Password, Slug};
    let slug = Slug::parse(slug).map_err(|e| anyhow::anyhow!("--slug {e}"))?;
    let email = Email::parse(admin_email).map_err(|e| anyhow::anyhow!("--admin-email {e}"))?;
    let name_ok = Name::parse(name).map_err(|e| anyhow::anyhow!("--name {e}"))?;
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        anyhow::bail!("--timezone {timezone:?} is not an IANA time zone such as Europe/Berlin");
    }
    let pw = std::env::var("SWITCHBOARD_ADMIN_PASSWORD").map_err(|_| {
        anyhow::anyhow!("set SWITCHBOARD_ADMIN_PASSWORD to the first admin's password")
    })?;
    let pw = Password::parse(&pw).map_err(|e| anyhow::anyhow!("SWITCHBOARD_ADMIN_PASSWORD {e}"))?;
    let db = crate::db::Database::connect(&settings.database_url(), 2).await?;
    db.migrate().await?;
    let hasher = crate::iam::password::Hasher::new(
        settings.security.argon2_memory_kib,
        settings.security.argon2_iterations,
    );
    let t = crate::iam::store::create_tenant(
        &db.conn,
        &slug,
        name_ok.into_inner().as_str(),
        timezone,
        region,
    )
    .await?;
    let admin_name = Name::parse(email.as_str().split('@').next().unwrap_or("admin"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = hasher.hash(&pw).await;
    crate::iam::store::create_user(
        &db.conn,
        t.id,
        &email,
        admin_name,
        crate::iam::Role::Admin,
        hash,
    )
    .await?;
    println!(
        "created tenant {} ({}) with admin {}",
        slug.as_str(),
        t.id,
        email
    );
    Ok(())
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let state = app.state();
    if demo {
        let seed = crate::seed::parse(crate::seed::DEMO)?;
        let r = crate::seed::load(&state.db.conn, &state.hasher, &seed).await?;
        let contacts = match r.tenant_id {
            Some(t) => crate::seed::load_demo_contacts(&state.db.conn, t).await?,
            None => 0,
        };
        tracing::info!(
            created = r.created,
            existing = r.existing,
            contacts,
            "demo data loaded"
        );
    }
    let url = if state.settings.http.public_url.is_empty() {
        let host = match state.settings.http.bind.ip() {
            ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", app.port())
    } else {
        state.settings.http.public_url.clone()
    };
    println!(
        "Switchboard is listening on {url}/  (API reference: {url}/docs, metrics: {url}/metrics)"
    );
    if demo {
        let seed = crate::seed::parse(crate::seed::DEMO)?;
        println!(
            "Sign in with workspace `{}`, email admin@example.com (or supervisor@, agent@, marketer@example.com), password `{}`",
            seed.tenant.slug, seed.password
        );
    }
    let stop = app.stop_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    app.run_until_stopped().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Serialises settings with every secret replaced.
struct RedactedSettings<'a>(&'a Settings);

impl serde::Serialize for RedactedSettings<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(self.0).map_err(serde::ser::Error::custom)?;
        if let Some(sec) = v.get_mut("security").and_then(|x| x.as_object_mut())
            && sec
                .get("master_key")
                .and_then(|k| k.as_str())
                .is_some_and(|k| !k.is_empty())
        {
            sec.insert("master_key".into(), "[redacted]".into());
        }
        if let Some(r) = v.get_mut("redis").and_then(|x| x.as_object_mut())
            && let Some(url) = r.get("url").and_then(|k| k.as_str())
        {
            let red = crate::config::redact_url(url);
            r.insert("url".into(), red.into());
        }
        strip_nulls(&mut v);
        v.serialize(s)
    }
}

/// TOML has no null: drop unset optional values.
fn strip_nulls(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            strip_nulls(x);
        }
    }
}
