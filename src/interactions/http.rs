//! HTTP routes of the spine: interactions and their timelines, the tenant's
//! event feed (polling and a live stream), and webhooks.

use std::time::Duration;

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::domain::{Channel, CloseReason, Direction, State, TransferTarget, Transition};
use super::entity::{delivery, interaction, webhook};
use super::service::{self, ListFilter, NewInteraction, TimelineEvent, parse_enum};
use super::webhooks::{self, ReplayParams, WebhookChanges};
use crate::bus::BusMessage;
use crate::error::{ApiError, ApiResult, Validator};
use crate::http::extract::{Json, Page, PageParams};
use crate::iam::auth::RequestMeta;
use crate::iam::{AdminOnly, Auth, Principal, Staff, Supervisors};
use crate::ids::{AgentId, InteractionId, QueueId, WebhookId};
use crate::jobs::{self, JobKind};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(create_interaction)
        .service(list_interactions)
        .service(get_interaction)
        .service(interaction_events)
        .service(transition)
        .service(add_note)
        .service(event_feed)
        .service(event_stream)
        .service(list_webhooks)
        .service(create_webhook)
        .service(get_webhook)
        .service(update_webhook)
        .service(delete_webhook)
        .service(rotate_webhook_secret)
        .service(replay_webhook)
        .service(list_deliveries);
}

fn actor_of(p: &Principal) -> Option<String> {
    Some(format!("{}:{}", p.actor.kind(), p.actor.id()))
}

// ---- wire types --------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct InteractionView {
    pub id: InteractionId,
    pub channel: Channel,
    pub direction: Direction,
    pub state: State,
    pub customer_address: Option<String>,
    pub subject: Option<String>,
    pub queue_id: Option<QueueId>,
    pub agent_id: Option<AgentId>,
    pub contact_id: Option<crate::ids::ContactId>,
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// Events on the timeline so far.
    pub last_seq: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_reason: Option<CloseReason>,
}

impl From<interaction::Model> for InteractionView {
    fn from(m: interaction::Model) -> Self {
        Self {
            id: m.id,
            channel: parse_enum(&m.channel),
            direction: parse_enum(&m.direction),
            state: parse_enum(&m.state),
            customer_address: m.customer_address,
            subject: m.subject,
            queue_id: m.queue_id,
            agent_id: m.agent_id,
            contact_id: m.contact_id,
            attributes: m.attributes,
            last_seq: m.last_seq,
            created_at: m.created_at,
            updated_at: m.updated_at,
            closed_at: m.closed_at,
            close_reason: m.close_reason.as_deref().map(parse_enum),
        }
    }
}

/// An interaction after a change, with the event the change recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeView {
    pub interaction: InteractionView,
    pub event: TimelineEvent,
}

fn interaction_error(e: service::InteractionError) -> ApiError {
    e.into()
}

/// Checks interaction attributes: a flat-ish JSON object of bounded size.
fn check_attributes(v: &mut Validator, attrs: &Map<String, Value>) {
    if attrs.len() > 64 {
        v.add("attributes", "at most 64 attributes");
    }
    for k in attrs.keys() {
        if k.is_empty()
            || k.len() > 64
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            v.add(
                format!("attributes.{}", k.chars().take(64).collect::<String>()),
                "keys are 1-64 characters: letters, digits, _ . -",
            );
        }
    }
    if serde_json::to_vec(attrs).map_or(0, |b| b.len()) > 16 * 1024 {
        v.add("attributes", "must be at most 16 KiB as JSON");
    }
}

// ---- interactions ------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInteractionRequest {
    pub channel: Channel,
    pub direction: Direction,
    /// The customer's phone number, email or chat handle.
    pub customer_address: Option<String>,
    pub subject: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// The contact this is with (their history shows it).
    pub contact_id: Option<crate::ids::ContactId>,
}

/// Open an interaction (channel adapters do this for calls and chats;
/// integrations may for email or callbacks).
#[utoipa::path(tag = "interactions", request_body = CreateInteractionRequest, responses((status = 201, body = ChangeView), (status = 422, body = crate::error::ErrorBody)))]
#[post("/interactions")]
async fn create_interaction(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    body: Json<CreateInteractionRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let mut v = Validator::new();
    if let Some(a) = &b.customer_address {
        v.length("customer_address", a, 1, 256);
    }
    if let Some(s) = &b.subject {
        v.length("subject", s, 1, 500);
    }
    check_attributes(&mut v, &b.attributes);
    v.finish()?;
    if let Some(c) = b.contact_id {
        crate::contacts::store::find(&state.db.conn, auth.tenant_id, c)
            .await?
            .ok_or_else(|| ApiError::not_found("contact"))?;
    }
    let new = NewInteraction {
        channel: b.channel,
        direction: b.direction,
        customer_address: b.customer_address,
        subject: b.subject,
        attributes: b.attributes,
        contact_id: b.contact_id,
    };
    let (m, event) = service::create(
        &state.db.conn,
        &state.bus,
        auth.tenant_id,
        new,
        actor_of(&auth),
    )
    .await
    .map_err(interaction_error)?;
    state.metrics.interactions_created.inc();
    Ok(HttpResponse::Created().json(ChangeView {
        interaction: m.into(),
        event,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InteractionQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub state: Option<State>,
    pub channel: Option<Channel>,
}

/// Interactions, newest first, optionally by state or channel.
#[utoipa::path(tag = "interactions", params(InteractionQuery), responses((status = 200, body = Page<InteractionView>)))]
#[get("/interactions")]
async fn list_interactions(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    q: crate::http::extract::Query<InteractionQuery>,
) -> ApiResult<web::Json<Page<InteractionView>>> {
    let q = q.into_inner();
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let filter = ListFilter {
        state: q.state,
        channel: q.channel,
    };
    let rows = service::list(
        &state.db.conn,
        auth.tenant_id,
        &filter,
        page.cursor()?,
        limit + 1,
    )
    .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |m| m.id,
        InteractionView::from,
    )))
}

/// One interaction.
#[utoipa::path(tag = "interactions", responses((status = 200, body = InteractionView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/interactions/{id}")]
async fn get_interaction(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: crate::http::extract::Path<InteractionId>,
) -> ApiResult<web::Json<InteractionView>> {
    let m = service::find(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("interaction"))?;
    Ok(web::Json(m.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// Only events after this position on the timeline.
    pub after_seq: Option<i32>,
    pub limit: Option<u32>,
}

/// An interaction's timeline, oldest first.
#[utoipa::path(tag = "interactions", params(TimelineQuery), responses((status = 200, body = Vec<TimelineEvent>), (status = 404, body = crate::error::ErrorBody)))]
#[get("/interactions/{id}/events")]
async fn interaction_events(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: crate::http::extract::Path<InteractionId>,
    q: crate::http::extract::Query<TimelineQuery>,
) -> ApiResult<web::Json<Vec<TimelineEvent>>> {
    let limit = PageParams {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    service::find(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("interaction"))?;
    let rows = service::timeline(&state.db.conn, auth.tenant_id, *id, q.after_seq, limit).await?;
    Ok(web::Json(
        rows.into_iter().map(TimelineEvent::from).collect(),
    ))
}

/// What a transition request may say: `type`, plus the fields that type
/// needs (`flow`, `queue_id`, `agent_id`, `reason`, `target`). A flat wire
/// shape, so that errors name the field and fields a type does not take are
/// refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    #[serde(rename = "type")]
    pub kind: TransitionKind,
    /// For `enter_flow`.
    pub flow: Option<String>,
    /// For `enqueue`.
    pub queue_id: Option<QueueId>,
    /// For `offer`, `accept`, `reject`, `offer_timeout` and (optionally) `connect`.
    pub agent_id: Option<AgentId>,
    /// For `close`.
    pub reason: Option<CloseReason>,
    /// For `transfer`.
    pub target: Option<TransferTargetRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    EnterFlow,
    Enqueue,
    Offer,
    Accept,
    Reject,
    OfferTimeout,
    Connect,
    Transfer,
    WrapUp,
    Abandon,
    Close,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferTargetRequest {
    pub to: TargetKind,
    /// For `to: flow`.
    pub flow: Option<String>,
    /// For `to: queue`.
    pub queue_id: Option<QueueId>,
    /// For `to: agent`.
    pub agent_id: Option<AgentId>,
    /// For `to: external`: a phone number or address.
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Queue,
    Agent,
    Flow,
    External,
}

/// Takes `field` out of `slot`: required if `need`, refused otherwise.
fn take<T>(v: &mut Validator, path: &str, slot: Option<T>, need: Need, what: &str) -> Option<T> {
    match (slot, need) {
        (Some(x), Need::Required | Need::Optional) => Some(x),
        (None, Need::Required) => {
            v.add(path, format!("is required for {what}"));
            None
        }
        (Some(_), Need::Refused) => {
            v.add(path, format!("is not taken by {what}"));
            None
        }
        (None, _) => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
    Refused,
}

impl TransitionRequest {
    /// The domain transition, or one 422 naming every wrong field.
    fn into_transition(self) -> Result<Transition, ApiError> {
        use Need::*;
        use TransitionKind as K;
        let k = self.kind;
        let what = format!("type {}", service::enum_str(&k));
        let need = |on: &[K]| if on.contains(&k) { Required } else { Refused };
        let mut v = Validator::new();
        let flow = take(&mut v, "flow", self.flow, need(&[K::EnterFlow]), &what);
        let queue_id = take(
            &mut v,
            "queue_id",
            self.queue_id,
            need(&[K::Enqueue]),
            &what,
        );
        let agent_need = if k == K::Connect {
            Optional
        } else {
            need(&[K::Offer, K::Accept, K::Reject, K::OfferTimeout])
        };
        let agent_id = take(&mut v, "agent_id", self.agent_id, agent_need, &what);
        let reason = take(&mut v, "reason", self.reason, need(&[K::Close]), &what);
        let target = take(&mut v, "target", self.target, need(&[K::Transfer]), &what);
        if let Some(f) = &flow {
            v.length("flow", f, 1, 120);
        }
        let target = target.and_then(|t| {
            use TargetKind as T;
            let tw = format!("target.to {}", service::enum_str(&t.to));
            let tneed = |on: T| if t.to == on { Required } else { Refused };
            let flow = take(&mut v, "target.flow", t.flow, tneed(T::Flow), &tw);
            let queue_id = take(&mut v, "target.queue_id", t.queue_id, tneed(T::Queue), &tw);
            let agent_id = take(&mut v, "target.agent_id", t.agent_id, tneed(T::Agent), &tw);
            let address = take(&mut v, "target.address", t.address, tneed(T::External), &tw);
            if let Some(f) = &flow {
                v.length("target.flow", f, 1, 120);
            }
            if let Some(a) = &address {
                v.length("target.address", a, 1, 256);
            }
            Some(match t.to {
                T::Queue => TransferTarget::Queue {
                    queue_id: queue_id?,
                },
                T::Agent => TransferTarget::Agent {
                    agent_id: agent_id?,
                },
                T::Flow => TransferTarget::Flow { flow: flow? },
                T::External => TransferTarget::External { address: address? },
            })
        });
        v.finish()?;
        let missing = || ApiError::bad_request("incomplete transition");
        Ok(match k {
            K::EnterFlow => Transition::EnterFlow {
                flow: flow.ok_or_else(missing)?,
            },
            K::Enqueue => Transition::Enqueue {
                queue_id: queue_id.ok_or_else(missing)?,
            },
            K::Offer => Transition::Offer {
                agent_id: agent_id.ok_or_else(missing)?,
            },
            K::Accept => Transition::Accept {
                agent_id: agent_id.ok_or_else(missing)?,
            },
            K::Reject => Transition::Reject {
                agent_id: agent_id.ok_or_else(missing)?,
            },
            K::OfferTimeout => Transition::OfferTimeout {
                agent_id: agent_id.ok_or_else(missing)?,
            },
            K::Connect => Transition::Connect { agent_id },
            K::Transfer => Transition::Transfer {
                target: target.ok_or_else(missing)?,
            },
            K::WrapUp => Transition::WrapUp,
            K::Abandon => Transition::Abandon,
            K::Close => Transition::Close {
                reason: reason.ok_or_else(missing)?,
            },
        })
    }
}

/// Move an interaction through its lifecycle (supervisors and integrations;
/// channels, flows and the ACD do this internally). 409 if the transition is
/// not allowed in the current state.
#[utoipa::path(tag = "interactions", request_body = TransitionRequest, responses((status = 200, body = ChangeView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/interactions/{id}/transitions")]
async fn transition(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    id: crate::http::extract::Path<InteractionId>,
    body: Json<TransitionRequest>,
) -> ApiResult<web::Json<ChangeView>> {
    let t = body.0.into_transition()?;
    crate::acd::catalog::check_refs(&state.db.conn, auth.tenant_id, &t).await?;
    let (m, event) = service::apply(
        &state.db.conn,
        &state.bus,
        auth.tenant_id,
        *id,
        t,
        actor_of(&auth),
    )
    .await
    .map_err(interaction_error)?;
    // The router holds its own picture of queues and offers: after a change
    // made by hand it rebuilds it from the interactions on its next use, so
    // it never routes on a stale one. (Offers are the router's: one made by
    // hand is withdrawn when it rebuilds.)
    state.acd.reload(auth.tenant_id);
    Ok(web::Json(ChangeView {
        interaction: m.into(),
        event,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub text: String,
}

/// Add a note to an interaction's timeline.
#[utoipa::path(tag = "interactions", request_body = NoteRequest, responses((status = 201, body = ChangeView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
#[post("/interactions/{id}/notes")]
async fn add_note(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    id: crate::http::extract::Path<InteractionId>,
    body: Json<NoteRequest>,
) -> ApiResult<HttpResponse> {
    let mut v = Validator::new();
    v.length("text", &body.0.text, 1, 4000);
    v.finish()?;
    let (m, event) = service::annotate(
        &state.db.conn,
        &state.bus,
        auth.tenant_id,
        *id,
        "note".into(),
        json!({ "text": body.0.text }),
        actor_of(&auth),
    )
    .await
    .map_err(interaction_error)?;
    Ok(HttpResponse::Created().json(ChangeView {
        interaction: m.into(),
        event,
    }))
}

// ---- the event feed ----------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Events with ids greater than this (the last id you have).
    pub after: Option<i64>,
    /// Only this kind, e.g. `queued`.
    pub kind: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    pub items: Vec<TimelineEvent>,
    /// Pass as `after` to continue; unchanged when there was nothing new.
    pub next_after: i64,
}

/// Every event of the tenant after a cursor, oldest first: to catch up, or
/// to poll instead of receiving webhooks.
#[utoipa::path(tag = "events", params(FeedQuery), responses((status = 200, body = FeedPage)))]
#[get("/events")]
async fn event_feed(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    q: crate::http::extract::Query<FeedQuery>,
) -> ApiResult<web::Json<FeedPage>> {
    let limit = PageParams {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let rows = service::feed(
        &state.db.conn,
        auth.tenant_id,
        q.after,
        q.kind.as_deref(),
        limit,
    )
    .await?;
    let next_after = rows.last().map_or(q.after.unwrap_or(0), |e| e.id);
    Ok(web::Json(FeedPage {
        items: rows.into_iter().map(TimelineEvent::from).collect(),
        next_after,
    }))
}

/// A live stream (Server-Sent Events) of the tenant's events as they happen.
/// Each message's `id` is the event id: after a reconnect, fetch
/// `/events?after=<last id>` to fill any gap.
#[utoipa::path(tag = "events", responses((status = 200, content_type = "text/event-stream", description = "`event: interaction` messages with a TimelineEvent as data")))]
#[get("/events/stream")]
async fn event_stream(state: web::Data<AppState>, auth: Auth<Staff>) -> HttpResponse {
    struct Live {
        rx: tokio::sync::broadcast::Receiver<BusMessage>,
        state: web::Data<AppState>,
        principal: Principal,
        checked: std::time::Instant,
        first: bool,
    }
    /// How often the stream checks that its credentials still hold (a
    /// logout, deactivation, role change or key revocation ends it within
    /// this time), and how long it stays quiet before a keep-alive.
    const RECHECK: Duration = Duration::from_secs(1);
    const KEEP_ALIVE: Duration = Duration::from_secs(15);
    let live = Live {
        rx: state.bus.subscribe(),
        principal: auth.principal.clone(),
        state: state.clone(),
        checked: std::time::Instant::now(),
        first: true,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        if live.first {
            live.first = false;
            let hello = web::Bytes::from_static(b"retry: 2000\n: connected\n\n");
            return Some((Ok::<_, actix_web::Error>(hello), live));
        }
        loop {
            let stop = live.state.shutdown.clone();
            let msg = tokio::select! {
                _ = stop.cancelled() => return None,
                r = tokio::time::timeout(KEEP_ALIVE, live.rx.recv()) => r,
            };
            let chunk = match msg {
                Err(_) => web::Bytes::from_static(b": keep-alive\n\n"),
                Ok(Ok(m)) if m.tenant_id() == live.principal.tenant_id => {
                    let BusMessage::Interaction(ev) = &m;
                    let data = serde_json::to_string(ev.as_ref()).expect("events serialise");
                    web::Bytes::from(format!(
                        "id: {}\nevent: interaction\ndata: {data}\n\n",
                        ev.id
                    ))
                }
                Ok(Ok(_)) => continue,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    web::Bytes::from(format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n"))
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
            };
            if live.checked.elapsed() >= RECHECK {
                let sec = &live.state.settings.security;
                let ok = crate::iam::store::principal_is_live(
                    &live.state.db.conn,
                    &live.principal,
                    Utc::now(),
                    sec.session_idle_minutes,
                )
                .await
                .unwrap_or(false);
                if !ok {
                    return None;
                }
                live.checked = std::time::Instant::now();
            }
            return Some((Ok(chunk), live));
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

// ---- webhooks ----------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: WebhookId,
    pub url: String,
    pub description: String,
    /// Event kinds delivered; empty means all.
    pub event_kinds: Vec<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl From<webhook::Model> for WebhookView {
    fn from(w: webhook::Model) -> Self {
        Self {
            id: w.id,
            url: w.url,
            description: w.description,
            event_kinds: serde_json::from_value(w.event_kinds).unwrap_or_default(),
            active: w.active,
            created_at: w.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret, shown only now. Verify each delivery's
    /// `Switchboard-Signature: t=<ts>,v1=<hex>` as HMAC-SHA256(secret, "<ts>.<body>").
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: i64,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<delivery::Model> for DeliveryView {
    fn from(d: delivery::Model) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

fn webhook_error(e: webhooks::WebhookError) -> ApiError {
    e.into()
}

fn check_kinds(v: &mut Validator, kinds: &[String]) {
    if kinds.len() > 50 {
        v.add("event_kinds", "at most 50 kinds");
    }
    for (i, k) in kinds.iter().enumerate() {
        if k.is_empty()
            || k.len() > 64
            || !k
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '*')
        {
            v.add(
                format!("event_kinds[{i}]"),
                "must be an event kind such as `queued` (lower-case and _), or *",
            );
        }
    }
}

/// The tenant's webhooks.
#[utoipa::path(tag = "webhooks", params(PageParams), responses((status = 200, body = Page<WebhookView>)))]
#[get("/webhooks")]
async fn list_webhooks(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<WebhookView>>> {
    let limit = page.limit()?;
    let rows = webhooks::list(&state.db.conn, auth.tenant_id, page.cursor()?, limit + 1).await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |w| w.id,
        WebhookView::from,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where to POST events (http or https; public addresses only unless the
    /// operator allows private targets).
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Event kinds to deliver, e.g. `["queued", "closed"]`; empty for all.
    #[serde(default)]
    pub event_kinds: Vec<String>,
}

/// Subscribe a URL to the tenant's events. The response holds the signing
/// secret, shown only once.
#[utoipa::path(tag = "webhooks", request_body = CreateWebhookRequest, responses((status = 201, body = WebhookWithSecret), (status = 422, body = crate::error::ErrorBody)))]
#[post("/webhooks")]
async fn create_webhook(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    meta: RequestMeta,
    body: Json<CreateWebhookRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let mut v = Validator::new();
    v.check(
        "url",
        webhooks::check_url(&b.url, state.settings.webhooks.allow_private_targets),
    );
    v.length("description", &b.description, 0, 500);
    check_kinds(&mut v, &b.event_kinds);
    v.finish()?;
    let new = webhooks::create(
        &state.db.conn,
        &state.sealer,
        auth.tenant_id,
        b.url,
        b.description,
        b.event_kinds,
    )
    .await
    .map_err(webhook_error)?;
    crate::iam::store::audit(
        &state.db.conn,
        crate::iam::store::AuditEntry {
            tenant_id: auth.tenant_id,
            actor_type: auth.actor.kind(),
            actor_id: Some(auth.actor.id()),
            action: "webhook.created",
            target_type: Some("webhook"),
            target_id: Some(new.hook.id.0),
            ip: meta.ip,
            request_id: meta.request_id,
            details: json!({ "url": new.hook.url }),
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(WebhookWithSecret {
        webhook: new.hook.into(),
        secret: new.secret,
    }))
}

/// One webhook.
#[utoipa::path(tag = "webhooks", responses((status = 200, body = WebhookView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/webhooks/{id}")]
async fn get_webhook(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<WebhookId>,
) -> ApiResult<web::Json<WebhookView>> {
    Ok(web::Json(
        webhooks::get(&state.db.conn, auth.tenant_id, *id)
            .await
            .map_err(webhook_error)?
            .into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_kinds: Option<Vec<String>>,
    pub active: Option<bool>,
}

/// Change a webhook.
#[utoipa::path(tag = "webhooks", request_body = UpdateWebhookRequest, responses((status = 200, body = WebhookView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[patch("/webhooks/{id}")]
async fn update_webhook(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<WebhookId>,
    body: Json<UpdateWebhookRequest>,
) -> ApiResult<web::Json<WebhookView>> {
    let b = body.0;
    let mut v = Validator::new();
    if let Some(u) = &b.url {
        v.check(
            "url",
            webhooks::check_url(u, state.settings.webhooks.allow_private_targets),
        );
    }
    if let Some(d) = &b.description {
        v.length("description", d, 0, 500);
    }
    if let Some(k) = &b.event_kinds {
        check_kinds(&mut v, k);
    }
    v.finish()?;
    let changes = WebhookChanges {
        url: b.url,
        description: b.description,
        event_kinds: b.event_kinds,
        active: b.active,
    };
    let w = webhooks::update(&state.db.conn, auth.tenant_id, *id, changes)
        .await
        .map_err(webhook_error)?;
    Ok(web::Json(w.into()))
}

/// Delete a webhook and its delivery history.
#[utoipa::path(tag = "webhooks", responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
#[delete("/webhooks/{id}")]
async fn delete_webhook(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<WebhookId>,
) -> ApiResult<HttpResponse> {
    webhooks::delete(&state.db.conn, auth.tenant_id, *id)
        .await
        .map_err(webhook_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replace the signing secret. The new one is shown only now.
#[utoipa::path(tag = "webhooks", responses((status = 200, body = WebhookWithSecret), (status = 404, body = crate::error::ErrorBody)))]
#[post("/webhooks/{id}/rotate-secret")]
async fn rotate_webhook_secret(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<WebhookId>,
) -> ApiResult<web::Json<WebhookWithSecret>> {
    let new = webhooks::rotate_secret(&state.db.conn, &state.sealer, auth.tenant_id, *id)
        .await
        .map_err(webhook_error)?;
    Ok(web::Json(WebhookWithSecret {
        webhook: new.hook.into(),
        secret: new.secret,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Replay events from this id (inclusive): a cursor from the event feed.
    pub from_event_id: i64,
    /// Up to this id (inclusive); default: the newest event now.
    pub to_event_id: Option<i64>,
}

/// Send a range of past events to this webhook again. Runs as a job: the
/// response is 202 with the job, whose progress `GET /jobs/{id}` reports.
#[utoipa::path(tag = "webhooks", request_body = ReplayRequest, responses((status = 202, body = crate::jobs::http::JobView), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[post("/webhooks/{id}/replay")]
async fn replay_webhook(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<WebhookId>,
    body: Json<ReplayRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let mut v = Validator::new();
    if b.from_event_id < 0 {
        v.add("from_event_id", "must not be negative");
    }
    if b.to_event_id.is_some_and(|t| t < b.from_event_id) {
        v.add("to_event_id", "must not be before from_event_id");
    }
    v.finish()?;
    webhooks::get(&state.db.conn, auth.tenant_id, *id)
        .await
        .map_err(webhook_error)?;
    let params = ReplayParams {
        webhook_id: *id,
        from_event_id: b.from_event_id,
        to_event_id: b.to_event_id,
    };
    let job = state
        .enqueue_job(
            auth.tenant_id,
            JobKind::WebhookReplay,
            serde_json::to_value(params).expect("serialises"),
            Some(auth.actor.id()),
        )
        .await?;
    Ok(HttpResponse::Accepted().json(jobs::http::JobView::from(job)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
}

/// Delivery attempts of a webhook, newest first.
#[utoipa::path(tag = "webhooks", params(DeliveryQuery), responses((status = 200, body = Page<DeliveryView>), (status = 404, body = crate::error::ErrorBody)))]
#[get("/webhooks/{id}/deliveries")]
async fn list_deliveries(
    state: web::Data<AppState>,
    auth: Auth<AdminOnly>,
    id: crate::http::extract::Path<WebhookId>,
    q: crate::http::extract::Query<DeliveryQuery>,
) -> ApiResult<web::Json<Page<DeliveryView>>> {
    let q = q.into_inner();
    if let Some(s) = &q.status
        && !matches!(s.as_str(), "pending" | "delivered" | "failed")
    {
        return Err(ApiError::field(
            "status",
            "must be pending, delivered or failed",
        ));
    }
    webhooks::get(&state.db.conn, auth.tenant_id, *id)
        .await
        .map_err(webhook_error)?;
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let rows = webhooks::deliveries(
        &state.db.conn,
        auth.tenant_id,
        *id,
        q.status.as_deref(),
        page.cursor()?,
        limit + 1,
    )
    .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |d| d.id,
        DeliveryView::from,
    )))
}
