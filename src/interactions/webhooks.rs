//! Tenant webhooks: subscriptions, the delivery dispatcher (HMAC-SHA256
//! signed, retried with exponential backoff and jitter, claimed with a lease
//! so several nodes never send the same delivery at once) and replay from a
//! cursor of the event feed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::entity::{delivery, event, webhook};
use super::service::{TimelineEvent, enqueue_deliveries};
use crate::config::WebhookSettings;
use crate::crypto::{self, Sealer};
use crate::ids::{TenantId, WebhookId};

pub const SIGNATURE_HEADER: &str = "Switchboard-Signature";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook not found")]
    NotFound,
    #[error("{0}")]
    BadUrl(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

// ---- URL policy --------------------------------------------------------------

/// Whether `ip` is reachable on the public internet (not loopback, private,
/// link-local, shared, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

/// Checks a webhook URL; with `allow_private = false`, refuses targets on
/// loopback and private networks (server-side request forgery).
pub fn check_url(raw: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    if raw.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials; the payload is signed instead".into());
    }
    let host = url.host().ok_or("must have a host")?;
    if !allow_private {
        let private = match host {
            url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
            url::Host::Domain(d) => {
                let d = d.to_ascii_lowercase();
                d == "localhost"
                    || d.ends_with(".localhost")
                    || d.ends_with(".local")
                    || d.ends_with(".internal")
                    || !d.contains('.')
            }
        };
        if private {
            return Err(
                "must be a public address (private and loopback targets are not allowed)".into(),
            );
        }
    }
    Ok(url)
}

/// A DNS resolver that drops private addresses, so a public name that
/// resolves to an internal address is refused at delivery time too.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(
                    format!("{} resolves only to non-public addresses", name.as_str()).into(),
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub fn http_client(settings: &WebhookSettings) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.timeout_secs))
        .connect_timeout(Duration::from_secs(settings.timeout_secs.min(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Switchboard-Webhooks/", env!("CARGO_PKG_VERSION")))
        .no_proxy();
    if !settings.allow_private_targets {
        b = b.dns_resolver(Arc::new(PublicOnlyResolver));
    }
    b.build().expect("the webhook HTTP client builds")
}

// ---- subscriptions -----------------------------------------------------------

pub struct NewWebhook {
    /// The signing secret (`whsec_...`), shown to the caller once.
    pub secret: String,
    pub hook: webhook::Model,
}

fn new_secret() -> String {
    format!("whsec_{}", crypto::random_token(32))
}

pub async fn create(
    db: &impl ConnectionTrait,
    sealer: &Sealer,
    tenant_id: TenantId,
    url: String,
    description: String,
    event_kinds: Vec<String>,
) -> Result<NewWebhook, WebhookError> {
    let secret = new_secret();
    let hook = webhook::ActiveModel {
        id: Set(WebhookId::new()),
        tenant_id: Set(tenant_id),
        url: Set(url),
        description: Set(description),
        event_kinds: Set(json!(event_kinds)),
        secret_sealed: Set(sealer.seal(secret.as_bytes())),
        active: Set(true),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(NewWebhook { secret, hook })
}

pub async fn get(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: WebhookId,
) -> Result<webhook::Model, WebhookError> {
    webhook::Entity::find_by_id(id)
        .filter(webhook::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?
        .ok_or(WebhookError::NotFound)
}

pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    after: Option<WebhookId>,
    limit: u64,
) -> Result<Vec<webhook::Model>, DbErr> {
    let mut q = webhook::Entity::find().filter(webhook::Column::TenantId.eq(tenant_id));
    if let Some(a) = after {
        q = q.filter(webhook::Column::Id.gt(a));
    }
    q.order_by_asc(webhook::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub struct WebhookChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_kinds: Option<Vec<String>>,
    pub active: Option<bool>,
}

pub async fn update(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: WebhookId,
    c: WebhookChanges,
) -> Result<webhook::Model, WebhookError> {
    let mut m: webhook::ActiveModel = get(db, tenant_id, id).await?.into();
    if let Some(u) = c.url {
        m.url = Set(u);
    }
    if let Some(d) = c.description {
        m.description = Set(d);
    }
    if let Some(k) = c.event_kinds {
        m.event_kinds = Set(json!(k));
    }
    if let Some(a) = c.active {
        m.active = Set(a);
    }
    Ok(m.update(db).await?)
}

pub async fn rotate_secret(
    db: &impl ConnectionTrait,
    sealer: &Sealer,
    tenant_id: TenantId,
    id: WebhookId,
) -> Result<NewWebhook, WebhookError> {
    let secret = new_secret();
    let mut m: webhook::ActiveModel = get(db, tenant_id, id).await?.into();
    m.secret_sealed = Set(sealer.seal(secret.as_bytes()));
    Ok(NewWebhook {
        secret,
        hook: m.update(db).await?,
    })
}

pub async fn delete(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: WebhookId,
) -> Result<(), WebhookError> {
    let res = webhook::Entity::delete_many()
        .filter(webhook::Column::TenantId.eq(tenant_id))
        .filter(webhook::Column::Id.eq(id))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        Err(WebhookError::NotFound)
    } else {
        Ok(())
    }
}

pub async fn deliveries(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    webhook_id: WebhookId,
    status: Option<&str>,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<delivery::Model>, DbErr> {
    let mut q = delivery::Entity::find()
        .filter(delivery::Column::TenantId.eq(tenant_id))
        .filter(delivery::Column::WebhookId.eq(webhook_id));
    if let Some(s) = status {
        q = q.filter(delivery::Column::Status.eq(s));
    }
    if let Some(b) = before {
        q = q.filter(delivery::Column::Id.lt(b));
    }
    q.order_by_desc(delivery::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

// ---- signing -----------------------------------------------------------------

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. Receivers
/// recompute the HMAC with their secret and reject old timestamps.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut msg = format!("{timestamp}.").into_bytes();
    msg.extend_from_slice(body);
    format!("t={timestamp},v1={}", crypto::hmac_sha256_hex(secret, &msg))
}

/// The JSON body of a delivery.
pub fn payload(ev: &TimelineEvent) -> Value {
    json!({
        "id": ev.id,
        "type": ev.kind,
        "tenant_id": ev.tenant_id,
        "interaction_id": ev.interaction_id,
        "seq": ev.seq,
        "state": ev.state,
        "occurred_at": ev.occurred_at,
        "actor": ev.actor,
        "data": ev.data,
    })
}

/// Delay before attempt `attempts + 1`: base * 2^(attempts-1), capped, with
/// up to 20% jitter so retries from many deliveries do not align.
pub fn backoff(settings: &WebhookSettings, attempts: u32, jitter: f64) -> Duration {
    let exp = settings
        .backoff_base_secs
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
    let secs = exp.min(settings.backoff_max_secs) as f64;
    Duration::from_secs_f64(secs * (1.0 + 0.2 * jitter.clamp(0.0, 1.0)))
}

// ---- the dispatcher ----------------------------------------------------------

pub struct Dispatcher {
    pub db: sea_orm::DatabaseConnection,
    pub sealer: Sealer,
    pub settings: WebhookSettings,
    pub client: reqwest::Client,
    pub metrics: crate::metrics::Metrics,
}

impl Dispatcher {
    /// Runs until `stop` is cancelled; a delivery in flight finishes first.
    pub async fn run(self, stop: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(50));
        loop {
            let busy = match self.tick().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatcher tick failed");
                    false
                }
            };
            if stop.is_cancelled() {
                break;
            }
            if !busy {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(poll) => {}
                }
            }
        }
    }

    /// Claims and sends the due deliveries; returns how many were attempted.
    pub async fn tick(&self) -> Result<usize, DbErr> {
        let now = Utc::now();
        let due = delivery::Entity::find()
            .filter(delivery::Column::Status.eq("pending"))
            .filter(delivery::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(delivery::Column::LockedUntil.is_null())
                    .add(delivery::Column::LockedUntil.lt(now)),
            )
            .order_by_asc(delivery::Column::NextAttemptAt)
            .limit(32)
            .all(&self.db)
            .await?;
        let lease = chrono::Duration::seconds(self.settings.timeout_secs as i64 + 30);
        let mut claimed = Vec::with_capacity(due.len());
        for d in due {
            // The conditional update is the claim: of several nodes racing
            // for the same row, exactly one changes it.
            let res = delivery::Entity::update_many()
                .col_expr(
                    delivery::Column::LockedUntil,
                    Expr::value(Some(now + lease)),
                )
                .filter(delivery::Column::Id.eq(d.id))
                .filter(delivery::Column::Status.eq("pending"))
                .filter(
                    Condition::any()
                        .add(delivery::Column::LockedUntil.is_null())
                        .add(delivery::Column::LockedUntil.lt(now)),
                )
                .exec(&self.db)
                .await?;
            if res.rows_affected == 1 {
                claimed.push(d);
            }
        }
        let n = claimed.len();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(8, |d| async move {
                if let Err(e) = self.attempt(d).await {
                    tracing::warn!(error = %e, "recording a webhook attempt failed");
                }
            })
            .await;
        Ok(n)
    }

    async fn attempt(&self, d: delivery::Model) -> Result<(), DbErr> {
        let hook = webhook::Entity::find_by_id(d.webhook_id)
            .one(&self.db)
            .await?;
        let ev = event::Entity::find_by_id(d.event_id).one(&self.db).await?;
        let (Some(hook), Some(ev)) = (hook, ev) else {
            return self
                .finish(
                    &d,
                    Err((None, "webhook or event no longer exists".into())),
                    true,
                )
                .await;
        };
        if !hook.active {
            return self
                .finish(&d, Err((None, "webhook is disabled".into())), true)
                .await;
        }
        let outcome = self.send(&hook, &d, TimelineEvent::from(ev)).await;
        let label = if outcome.is_ok() {
            "delivered"
        } else {
            "failed_attempt"
        };
        self.metrics
            .webhook_attempts
            .get_or_create(&crate::metrics::OutcomeLabel::new(label))
            .inc();
        self.finish(&d, outcome, false).await
    }

    async fn send(
        &self,
        hook: &webhook::Model,
        d: &delivery::Model,
        ev: TimelineEvent,
    ) -> Result<i32, (Option<i32>, String)> {
        let url = check_url(&hook.url, self.settings.allow_private_targets)
            .map_err(|e| (None, format!("URL {e}")))?;
        let secret = self
            .sealer
            .open(&hook.secret_sealed)
            .map_err(|e| (None, e.to_string()))?;
        let body = serde_json::to_vec(&payload(&ev)).expect("payload serialises");
        let ts = Utc::now().timestamp();
        let res = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .header(SIGNATURE_HEADER, signature(&secret, ts, &body))
            .header("Switchboard-Event-Id", ev.id.to_string())
            .header("Switchboard-Delivery-Id", d.id.to_string())
            .header("Switchboard-Webhook-Id", hook.id.to_string())
            .body(body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16() as i32),
            Ok(r) => Err((
                Some(r.status().as_u16() as i32),
                format!("receiver answered {}", r.status()),
            )),
            Err(e) => Err((None, format!("{e:#}").chars().take(500).collect())),
        }
    }

    async fn finish(
        &self,
        d: &delivery::Model,
        outcome: Result<i32, (Option<i32>, String)>,
        give_up: bool,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let attempts = d.attempts + 1;
        let q = delivery::Entity::update_many()
            .col_expr(delivery::Column::Attempts, Expr::value(attempts))
            .col_expr(
                delivery::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        let q = match outcome {
            Ok(code) => q
                .col_expr(delivery::Column::Status, Expr::value("delivered"))
                .col_expr(delivery::Column::LastStatusCode, Expr::value(Some(code)))
                .col_expr(
                    delivery::Column::LastError,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(delivery::Column::DeliveredAt, Expr::value(Some(now))),
            Err((code, err)) => {
                let exhausted = give_up || attempts as u32 >= self.settings.max_attempts;
                let jitter = (crypto::random_bytes(1)[0] as f64) / 255.0;
                let next = now
                    + chrono::Duration::from_std(backoff(&self.settings, attempts as u32, jitter))
                        .unwrap_or(chrono::Duration::hours(1));
                q.col_expr(
                    delivery::Column::Status,
                    Expr::value(if exhausted { "failed" } else { "pending" }),
                )
                .col_expr(delivery::Column::LastStatusCode, Expr::value(code))
                .col_expr(delivery::Column::LastError, Expr::value(Some(err)))
                .col_expr(delivery::Column::NextAttemptAt, Expr::value(next))
            }
        };
        q.filter(delivery::Column::Id.eq(d.id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

// ---- replay ------------------------------------------------------------------

/// Parameters of a replay job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReplayParams {
    pub webhook_id: WebhookId,
    /// Replay events with ids from this one (inclusive).
    pub from_event_id: i64,
    /// ... up to this one (inclusive); defaults to the newest at the start.
    pub to_event_id: Option<i64>,
}

/// The newest event id of a tenant, or 0.
pub async fn last_event_id(db: &impl ConnectionTrait, tenant_id: TenantId) -> Result<i64, DbErr> {
    Ok(event::Entity::find()
        .filter(event::Column::TenantId.eq(tenant_id))
        .order_by_desc(event::Column::Id)
        .limit(1)
        .one(db)
        .await?
        .map_or(0, |e| e.id))
}

pub async fn count_events(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    from: i64,
    to: i64,
) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    event::Entity::find()
        .filter(event::Column::TenantId.eq(tenant_id))
        .filter(event::Column::Id.gte(from))
        .filter(event::Column::Id.lte(to))
        .count(db)
        .await
}

/// Runs (or resumes) a replay job: enqueues deliveries of the events in the
/// range, a chunk per transaction, with the checkpoint (the last event id
/// done) saved in the same transaction. A crash or shutdown between chunks
/// resumes after the last committed chunk: no event is sent twice by one
/// replay, none is skipped.
pub async fn run_replay(ctx: &crate::jobs::JobCtx) -> Result<Value, crate::jobs::JobFailure> {
    let p: ReplayParams = ctx.params()?;
    let db = ctx.db();
    let hook = get(db, ctx.tenant_id(), p.webhook_id)
        .await
        .map_err(|e| crate::jobs::JobFailure::Fatal(e.to_string()))?;
    let to = match p.to_event_id {
        Some(t) => t,
        None => {
            // Fix the end on the first run so that a resumed job covers the same range.
            let t = last_event_id(db, ctx.tenant_id()).await?;
            ctx.update_params(json!({ "webhook_id": p.webhook_id, "from_event_id": p.from_event_id, "to_event_id": t }))
                .await?;
            t
        }
    };
    let total = count_events(db, ctx.tenant_id(), p.from_event_id, to).await?;
    let mut cursor: i64 = ctx
        .checkpoint()
        .and_then(|c| c.get("last_event_id")?.as_i64())
        .unwrap_or(p.from_event_id - 1);
    let mut done = ctx.progress_done();
    let mut enqueued: u64 = ctx
        .checkpoint()
        .and_then(|c| c.get("enqueued")?.as_u64())
        .unwrap_or(0);
    ctx.set_total(total).await?;
    loop {
        if ctx.should_stop() {
            return Err(crate::jobs::JobFailure::Interrupted);
        }
        let chunk = event::Entity::find()
            .filter(event::Column::TenantId.eq(ctx.tenant_id()))
            .filter(event::Column::Id.gt(cursor))
            .filter(event::Column::Id.lte(to))
            .order_by_asc(event::Column::Id)
            .limit(ctx.chunk_size())
            .all(db)
            .await?;
        let Some(last) = chunk.last().map(|e| e.id) else {
            break;
        };
        let scanned = chunk.len() as u64;
        let subscribed: Vec<event::Model> = chunk
            .into_iter()
            .filter(|e| super::service::subscribes(&hook, &e.kind))
            .collect();
        let txn = crate::db::begin_write(db).await?;
        enqueued += enqueue_deliveries(&txn, ctx.tenant_id(), &subscribed, Some(&hook)).await?;
        cursor = last;
        done += scanned;
        ctx.save_progress(
            &txn,
            done.min(total),
            json!({ "last_event_id": cursor, "enqueued": enqueued }),
        )
        .await?;
        txn.commit().await?;
    }
    Ok(json!({ "enqueued": enqueued, "last_event_id": cursor }))
}
