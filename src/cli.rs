//! The command line: `serve`, `migrate`, `seed`, `tenant create`, `config`,
//! `acd replay`, `acd export-day`.

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
    /// Routing tools: replay a recorded period under another strategy.
    #[command(subcommand)]
    Acd(AcdCommand),
    /// IVR flow tools: run flow tests offline.
    #[command(subcommand)]
    Flow(FlowCommand),
}

const FLOW_TEST_HELP: &str = "\
PATH is a folder (every *.test.toml under it, default: flows), one test
file, or a flow script (x.rhai, tested by x.test.toml beside it). Nothing
is needed but the files: no database, no server, no network. The exit code
is 1 when a case fails, 2 when nothing could be run.

A test file:
  flow = \"main-menu.rhai\"
  [[case]]
  name = \"sales by DTMF\"
  time = \"2026-12-01T10:00:00+01:00\"
  inputs = [\"digits:1\"]          # digits:12#, speech:words, text:words, silence, hangup
  [case.expect]
  prompts = [\"welcome\", \"main_menu\"]
  queue = \"Sales\"
  end = \"queue\"                  # queue, transfer, hangup, finished, fallback, caller_hangup

Example:
  switchboard flow test flows/";

#[derive(Debug, Subcommand)]
pub enum FlowCommand {
    /// Run flow tests (scripted callers against flow scripts) and show a
    /// readable diff for each failing case.
    #[command(after_help = FLOW_TEST_HELP)]
    Test {
        /// A folder, a .test.toml file or a .rhai flow.
        #[arg(default_value = "flows")]
        path: PathBuf,
    },
}

const REPLAY_HELP: &str = "\
The period comes from the database (--tenant, --from, --to) or from a file
written earlier with --save or `switchboard acd export-day` (--input).
Every interaction first routed in the period is replayed with its queue,
channel, arrival, talk and wrap-up time; callers who hung up before an
answer keep their patience. Agents and queues are the catalogue's, every
agent signed in for the whole period. Both runs see exactly the same calls.

Examples:
  switchboard acd replay --tenant demo --from 2026-03-02 --to 2026-03-02 \\
      --strategy best_proficiency
  switchboard acd replay --input day.json --strategy round_robin \\
      --queue 0190c3f4-... --json";

#[derive(Debug, Subcommand)]
pub enum AcdCommand {
    /// Re-run a recorded period under another strategy or configuration
    /// and compare service level, ASA and abandonment with what the
    /// recorded configuration gives.
    #[command(after_help = REPLAY_HELP)]
    Replay(ReplayArgs),
    /// Write a recorded period (configuration and calls) to a JSON file,
    /// to replay later without the database.
    ExportDay {
        #[command(flatten)]
        period: PeriodArgs,
        /// Where to write the JSON.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// The tenant: its slug (e.g. `demo`) or id.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Start of the period: a date (midnight UTC) or an RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the period (exclusive): a date (through the end of that day)
    /// or an RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub period: PeriodArgs,
    /// Replay a period saved earlier instead of reading the database.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tenant", "from", "to"])]
    pub input: Option<PathBuf>,
    /// The alternative's strategy: longest_idle, least_occupied,
    /// round_robin, best_proficiency or ring_all.
    #[arg(long, value_parser = parse_strategy)]
    pub strategy: Option<crate::acd::engine::Strategy>,
    /// Apply --strategy to this queue only (repeatable; default: all).
    #[arg(long = "queue", value_name = "QUEUE_ID", requires = "strategy")]
    pub queues: Vec<crate::ids::QueueId>,
    /// Queue and agent configurations replacing the recorded ones by id:
    /// {"queues": [QueueConfig...], "agents": [AgentConfig...]} (the
    /// shapes of a saved period's `config` fields).
    #[arg(long = "overrides", value_name = "FILE")]
    pub overrides: Option<PathBuf>,
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the recorded period to this file.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
}

fn parse_strategy(s: &str) -> Result<crate::acd::engine::Strategy, String> {
    s.parse().map_err(|_| {
        format!("unknown strategy {s:?}: longest_idle, least_occupied, round_robin, best_proficiency or ring_all")
    })
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
    if let Command::Flow(FlowCommand::Test { path }) = &cli.command {
        // Offline: no settings, database or runtime.
        let mut out = std::io::stdout().lock();
        return match crate::ivr::files::run(path, &mut out) {
            Ok(s) if s.failed == 0 => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("switchboard flow test: {e}");
                ExitCode::from(2)
            }
        };
    }
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
                (true, Some(t)) => {
                    crate::seed::load_demo_flows(&db.conn, t).await?;
                    crate::seed::load_demo_contacts(&db.conn, t).await?
                }
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
        Command::Flow(_) => unreachable!("flow commands run before settings load"),
        Command::Acd(AcdCommand::Replay(args)) => replay(&settings, args).await,
        Command::Acd(AcdCommand::ExportDay { period, output }) => {
            let day = recorded(&settings, &period).await?;
            write_day(&output, &day)?;
            println!(
                "wrote {} calls, {} queues, {} agents to {}",
                day.calls.len(),
                day.queues.len(),
                day.agents.len(),
                output.display()
            );
            Ok(())
        }
    }
}

/// The period from the database, for one tenant (by slug or id).
async fn recorded(
    settings: &Settings,
    p: &PeriodArgs,
) -> anyhow::Result<crate::acd::replay::RecordedDay> {
    use crate::acd::replay::{extract, parse_time};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let (Some(tenant), Some(from), Some(to)) = (&p.tenant, &p.from, &p.to) else {
        anyhow::bail!("say which period: --tenant, --from and --to (or --input FILE)");
    };
    let from = parse_time(from, false).map_err(|e| anyhow::anyhow!("--from {e}"))?;
    let to = parse_time(to, true).map_err(|e| anyhow::anyhow!("--to {e}"))?;
    if from >= to {
        anyhow::bail!("--from {from} must be before --to {to}");
    }
    let db = crate::db::Database::connect(&settings.database_url(), 2).await?;
    db.migrate().await?;
    use crate::iam::entity::tenant as t;
    let found = match tenant.parse::<uuid::Uuid>() {
        Ok(id) => {
            t::Entity::find_by_id(crate::ids::TenantId(id))
                .one(&db.conn)
                .await?
        }
        Err(_) => {
            t::Entity::find()
                .filter(t::Column::Slug.eq(tenant.as_str()))
                .one(&db.conn)
                .await?
        }
    };
    let Some(found) = found else {
        anyhow::bail!("--tenant {tenant:?}: no such tenant (give its slug or id)");
    };
    Ok(extract(&db.conn, found.id, from, to).await?)
}

fn write_day(path: &std::path::Path, day: &crate::acd::replay::RecordedDay) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(day)?;
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

async fn replay(settings: &Settings, args: ReplayArgs) -> anyhow::Result<()> {
    use crate::acd::replay::{Overrides, RecordedDay, compare, table};
    let day: RecordedDay = match &args.input {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("--input {}: {e}", f.display()))?;
            serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("--input {}: not a recorded period: {e}", f.display())
            })?
        }
        None => recorded(settings, &args.period).await?,
    };
    let overrides: Overrides = match &args.overrides {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("--overrides {}: {e}", f.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("--overrides {}: {e}", f.display()))?
        }
        None => Overrides::default(),
    };
    if args.strategy.is_none() && args.overrides.is_none() {
        anyhow::bail!("say what to compare with: --strategy NAME and/or --overrides FILE");
    }
    day.check()?;
    let alt = day.alternative(args.strategy, &args.queues, &overrides)?;
    if let Some(f) = &args.save {
        write_day(f, &day)?;
    }
    let c = compare(&day, &alt)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", table(&c));
    }
    Ok(())
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
            Some(t) => {
                crate::seed::load_demo_flows(&state.db.conn, t).await?;
                crate::seed::load_demo_contacts(&state.db.conn, t).await?
            }
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
