//! Use cases of the spine: create interactions, move them through their
//! lifecycle, and annotate their timelines. Each change is one transaction:
//! the interaction row, its new event and the webhook deliveries it causes
//! are committed together, and only then published on the bus.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::instrument;
use utoipa::ToSchema;

use super::domain::{
    Channel, CloseReason, Direction, Lifecycle, LifecycleError, State, Transition,
};
use super::entity::{delivery, event, interaction, webhook};
use crate::bus::{Bus, BusMessage};
use crate::ids::{InteractionId, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum InteractionError {
    #[error("interaction not found")]
    NotFound,
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("the interaction changed concurrently too often; try again")]
    Contended,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// One entry of an interaction's timeline, as stored and as published.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct TimelineEvent {
    /// Global, increasing id: the cursor for the event feed and replays.
    pub id: i64,
    pub tenant_id: TenantId,
    pub interaction_id: InteractionId,
    /// Position on this interaction's timeline, from 1.
    pub seq: i32,
    pub kind: String,
    /// The interaction's state after this event.
    pub state: State,
    #[schema(value_type = Object)]
    pub data: Value,
    pub actor: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

impl From<event::Model> for TimelineEvent {
    fn from(e: event::Model) -> Self {
        Self {
            id: e.id,
            tenant_id: e.tenant_id,
            interaction_id: e.interaction_id,
            seq: e.seq,
            kind: e.kind,
            state: parse_enum(&e.state_after),
            data: e.data,
            actor: e.actor,
            occurred_at: e.occurred_at,
        }
    }
}

/// Enum <-> the string stored in the database (its serde name).
pub fn enum_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        other => panic!("not a unit enum: {other:?}"),
    }
}

/// Parses a stored enum string. Stored values are written by this code, so
/// a bad one is a bug, not user input.
pub fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_json::from_value(Value::String(s.to_owned()))
        .unwrap_or_else(|_| panic!("unknown stored value {s:?}"))
}

pub fn lifecycle_of(m: &interaction::Model) -> Lifecycle {
    Lifecycle {
        state: parse_enum(&m.state),
        queue_id: m.queue_id,
        agent_id: m.agent_id,
        close_reason: m.close_reason.as_deref().map(parse_enum::<CloseReason>),
    }
}

/// A new interaction, already validated.
#[derive(Debug, Clone)]
pub struct NewInteraction {
    pub channel: Channel,
    pub direction: Direction,
    pub customer_address: Option<String>,
    pub subject: Option<String>,
    pub attributes: Map<String, Value>,
    /// The contact, already checked to belong to the tenant.
    pub contact_id: Option<crate::ids::ContactId>,
}

/// Creates an interaction and its `created` event.
#[instrument(skip_all, fields(tenant_id = %tenant_id))]
pub async fn create(
    db: &DatabaseConnection,
    bus: &Bus,
    tenant_id: TenantId,
    new: NewInteraction,
    actor: Option<String>,
) -> Result<(interaction::Model, TimelineEvent), InteractionError> {
    let (m, mut evs) = create_with(db, bus, tenant_id, new, &[], actor).await?;
    Ok((m, evs.remove(0)))
}

/// Creates an interaction with its `created` event and the events of
/// `steps` after it, in one transaction.
#[instrument(skip_all, fields(tenant_id = %tenant_id))]
pub async fn create_with(
    db: &DatabaseConnection,
    bus: &Bus,
    tenant_id: TenantId,
    new: NewInteraction,
    steps: &[Step],
    actor: Option<String>,
) -> Result<(interaction::Model, Vec<TimelineEvent>), InteractionError> {
    let now = Utc::now();
    let id = InteractionId::new();
    let txn = crate::db::begin_write(db).await?;
    lock_feed(&txn, tenant_id).await?;
    let m = interaction::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        channel: Set(enum_str(&new.channel)),
        direction: Set(enum_str(&new.direction)),
        state: Set(enum_str(&State::Created)),
        customer_address: Set(new.customer_address.clone()),
        subject: Set(new.subject.clone()),
        queue_id: Set(None),
        agent_id: Set(None),
        contact_id: Set(new.contact_id),
        attributes: Set(Value::Object(new.attributes.clone())),
        last_seq: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        closed_at: Set(None),
        close_reason: Set(None),
    }
    .insert(&txn)
    .await?;
    let data = serde_json::json!({
        "channel": new.channel,
        "direction": new.direction,
        "customer_address": new.customer_address,
        "subject": new.subject,
        "contact_id": new.contact_id,
    });
    let ev = append_event(
        &txn,
        tenant_id,
        id,
        1,
        "created",
        State::Created,
        data,
        actor.clone(),
        now,
    )
    .await?;
    let (m, mut evs) = if steps.is_empty() {
        (m, Vec::new())
    } else {
        // Nobody else knows the interaction yet: the guard cannot fail.
        steps_in(&txn, tenant_id, &m, steps, actor)
            .await?
            .ok_or(InteractionError::Contended)?
    };
    txn.commit().await?;
    evs.insert(0, ev);
    let evs: Vec<TimelineEvent> = evs.into_iter().map(TimelineEvent::from).collect();
    for ev in &evs {
        bus.publish(BusMessage::Interaction(Arc::new(ev.clone())));
    }
    Ok((m, evs))
}

/// Moves an interaction through its lifecycle. Concurrent changes to the
/// same interaction are serialised by its sequence number: the loser retries
/// against the new state (and may find its transition no longer valid).
#[instrument(skip_all, fields(tenant_id = %tenant_id, interaction_id = %id, kind = t.kind()))]
pub async fn apply(
    db: &DatabaseConnection,
    bus: &Bus,
    tenant_id: TenantId,
    id: InteractionId,
    t: Transition,
    actor: Option<String>,
) -> Result<(interaction::Model, TimelineEvent), InteractionError> {
    one(db, bus, tenant_id, id, Step::Transition(t), actor).await
}

/// Adds an event that does not change the state (a note, a DTMF digit, a
/// hold). Closed interactions take no more events.
#[instrument(skip_all, fields(tenant_id = %tenant_id, interaction_id = %id))]
pub async fn annotate(
    db: &DatabaseConnection,
    bus: &Bus,
    tenant_id: TenantId,
    id: InteractionId,
    kind: String,
    data: Value,
    actor: Option<String>,
) -> Result<(interaction::Model, TimelineEvent), InteractionError> {
    one(db, bus, tenant_id, id, Step::Annotate { kind, data }, actor).await
}

/// `record` of one step, and its event.
async fn one(
    db: &DatabaseConnection,
    bus: &Bus,
    tenant_id: TenantId,
    id: InteractionId,
    step: Step,
    actor: Option<String>,
) -> Result<(interaction::Model, TimelineEvent), InteractionError> {
    let (m, mut evs) = record(db, bus, tenant_id, id, std::slice::from_ref(&step), actor).await?;
    Ok((m, evs.remove(0)))
}

type Decision = Result<(Lifecycle, String, Value), InteractionError>;

/// Event kinds a closed interaction still takes.
pub const AFTER_CLOSE: &[&str] = &["transcript"];

/// One step of [`record`]: a transition, or an event that keeps the state.
#[derive(Debug, Clone)]
pub enum Step {
    Transition(Transition),
    Annotate {
        kind: String,
        data: Value,
    },
    /// Merges these attributes into the interaction's (an IVR flow's
    /// `set`); recorded as an `attributes_set` event.
    Attributes(Map<String, Value>),
}

impl Step {
    pub fn note(kind: &str, data: Value) -> Step {
        Step::Annotate {
            kind: kind.to_owned(),
            data,
        }
    }

    /// What the step makes of `current`: the next state, the event kind
    /// and its data.
    fn decide(&self, current: &Lifecycle) -> Decision {
        match self {
            Step::Transition(t) => {
                let next = current.apply(t)?;
                let data = serde_json::to_value(t).expect("transitions serialise");
                Ok((next, t.kind().to_owned(), data))
            }
            Step::Annotate { kind, data } => {
                // What is learnt after the end (a call's transcript) may
                // still be told.
                if current.state == State::Closed && !AFTER_CLOSE.contains(&kind.as_str()) {
                    return Err(LifecycleError::Invalid(super::domain::InvalidTransition {
                        state: State::Closed,
                        action: "annotate",
                    })
                    .into());
                }
                Ok((current.clone(), kind.clone(), data.clone()))
            }
            Step::Attributes(set) => {
                if current.state == State::Closed {
                    return Err(LifecycleError::Invalid(super::domain::InvalidTransition {
                        state: State::Closed,
                        action: "annotate",
                    })
                    .into());
                }
                Ok((
                    current.clone(),
                    "attributes_set".to_owned(),
                    Value::Object(set.clone()),
                ))
            }
        }
    }
}

/// Several steps in one transaction (the events in order, all or none):
/// what a call records at once (answered, connected, bridged), so the hot
/// path writes less often.
#[instrument(skip_all, fields(tenant_id = %tenant_id, interaction_id = %id, steps = steps.len()))]
pub async fn record(
    db: &DatabaseConnection,
    bus: &Bus,
    tenant_id: TenantId,
    id: InteractionId,
    steps: &[Step],
    actor: Option<String>,
) -> Result<(interaction::Model, Vec<TimelineEvent>), InteractionError> {
    for attempt in 0..8 {
        match try_record(db, tenant_id, id, actor.clone(), steps).await {
            Ok(Some((m, evs))) => {
                let evs: Vec<TimelineEvent> = evs.into_iter().map(TimelineEvent::from).collect();
                for ev in &evs {
                    bus.publish(BusMessage::Interaction(Arc::new(ev.clone())));
                }
                return Ok((m, evs));
            }
            Ok(None) => {}
            Err(InteractionError::Db(e)) if is_busy(&e) => {}
            Err(e) => return Err(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
    }
    Err(InteractionError::Contended)
}

async fn try_record(
    db: &DatabaseConnection,
    tenant_id: TenantId,
    id: InteractionId,
    actor: Option<String>,
    steps: &[Step],
) -> Result<Option<(interaction::Model, Vec<event::Model>)>, InteractionError> {
    let txn = crate::db::begin_write(db).await?;
    lock_feed(&txn, tenant_id).await?;
    let current = find(&txn, tenant_id, id)
        .await?
        .ok_or(InteractionError::NotFound)?;
    match steps_in(&txn, tenant_id, &current, steps, actor).await? {
        Some(done) => {
            txn.commit().await?;
            Ok(Some(done))
        }
        None => {
            txn.rollback().await?;
            Ok(None)
        }
    }
}

/// Applies `steps` to `current` in `txn`: one update (guarded by the
/// sequence number; `None` when another writer got there first), the
/// events, and their webhook deliveries.
async fn steps_in(
    txn: &impl ConnectionTrait,
    tenant_id: TenantId,
    current: &interaction::Model,
    steps: &[Step],
    actor: Option<String>,
) -> Result<Option<(interaction::Model, Vec<event::Model>)>, InteractionError> {
    let before = lifecycle_of(current);
    let mut state = before.clone();
    let mut decided = Vec::with_capacity(steps.len());
    for step in steps {
        let (next, kind, data) = step.decide(&state)?;
        decided.push((kind, next.state, data));
        state = next;
    }
    // Microseconds, as the databases keep them: the model returned is the
    // row as read back.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let last = current.last_seq + steps.len() as i32;
    let closing = state.state == State::Closed && before.state != State::Closed;
    let mut attributes = None;
    for step in steps {
        if let Step::Attributes(set) = step {
            let merged = attributes.get_or_insert_with(|| match &current.attributes {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            });
            merged.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let mut upd = interaction::Entity::update_many()
        .col_expr(
            interaction::Column::State,
            Expr::value(enum_str(&state.state)),
        )
        .col_expr(interaction::Column::QueueId, Expr::value(state.queue_id))
        .col_expr(interaction::Column::AgentId, Expr::value(state.agent_id))
        .col_expr(
            interaction::Column::CloseReason,
            Expr::value(state.close_reason.as_ref().map(enum_str)),
        )
        .col_expr(interaction::Column::LastSeq, Expr::value(last))
        .col_expr(interaction::Column::UpdatedAt, Expr::value(now));
    if closing {
        upd = upd.col_expr(interaction::Column::ClosedAt, Expr::value(Some(now)));
    }
    if let Some(a) = &attributes {
        upd = upd.col_expr(
            interaction::Column::Attributes,
            Expr::value(Value::Object(a.clone())),
        );
    }
    let res = upd
        .filter(interaction::Column::Id.eq(current.id))
        .filter(interaction::Column::TenantId.eq(tenant_id))
        .filter(interaction::Column::LastSeq.eq(current.last_seq))
        .exec(txn)
        .await?;
    if res.rows_affected != 1 {
        return Ok(None);
    }
    let mut events = Vec::with_capacity(decided.len());
    for (i, (kind, state_after, data)) in decided.into_iter().enumerate() {
        let ev = event::ActiveModel {
            id: sea_orm::NotSet,
            tenant_id: Set(tenant_id),
            interaction_id: Set(current.id),
            seq: Set(current.last_seq + 1 + i as i32),
            kind: Set(kind),
            state_after: Set(enum_str(&state_after)),
            data: Set(data),
            actor: Set(actor.clone()),
            occurred_at: Set(now),
        }
        .insert(txn)
        .await?;
        events.push(ev);
    }
    enqueue_deliveries(txn, tenant_id, &events, None).await?;
    let mut updated = current.clone();
    updated.state = enum_str(&state.state);
    updated.queue_id = state.queue_id;
    updated.agent_id = state.agent_id;
    updated.close_reason = state.close_reason.as_ref().map(enum_str);
    updated.last_seq = last;
    updated.updated_at = now;
    if let Some(a) = attributes {
        updated.attributes = Value::Object(a);
    }
    if closing {
        updated.closed_at = Some(now);
    }
    Ok(Some((updated, events)))
}

fn is_busy(e: &DbErr) -> bool {
    let s = e.to_string();
    s.contains("database is locked")
        || s.contains("SQLITE_BUSY")
        || s.contains("could not serialize")
}

/// Makes a tenant's event ids become visible in order. Event ids come from
/// a sequence, and on PostgreSQL two transactions can commit out of id
/// order; a reader paging the feed by id could then skip an event. Holding a
/// per-tenant transaction lock from before the insert until the commit rules
/// that out. (SQLite has one writer at a time already.)
async fn lock_feed(txn: &impl ConnectionTrait, tenant_id: TenantId) -> Result<(), DbErr> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        // Class 1 of the two-key lock space: the event feed of one tenant.
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(1, hashtext($1))",
            [tenant_id.0.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn append_event(
    txn: &impl ConnectionTrait,
    tenant_id: TenantId,
    interaction_id: InteractionId,
    seq: i32,
    kind: &str,
    state_after: State,
    data: Value,
    actor: Option<String>,
    now: DateTime<Utc>,
) -> Result<event::Model, DbErr> {
    let ev = event::ActiveModel {
        id: sea_orm::NotSet,
        tenant_id: Set(tenant_id),
        interaction_id: Set(interaction_id),
        seq: Set(seq),
        kind: Set(kind.to_owned()),
        state_after: Set(enum_str(&state_after)),
        data: Set(data),
        actor: Set(actor),
        occurred_at: Set(now),
    }
    .insert(txn)
    .await?;
    enqueue_deliveries(txn, tenant_id, std::slice::from_ref(&ev), None).await?;
    Ok(ev)
}

/// Whether a webhook subscribed to `kind`.
pub fn subscribes(w: &webhook::Model, kind: &str) -> bool {
    match w.event_kinds.as_array() {
        Some(kinds) if !kinds.is_empty() => kinds
            .iter()
            .any(|k| k.as_str() == Some(kind) || k.as_str() == Some("*")),
        _ => true,
    }
}

/// Creates pending deliveries of `events` for the tenant's active webhooks
/// (or only for `only`), in the caller's transaction: an event and its
/// deliveries are committed together or not at all (the outbox).
pub async fn enqueue_deliveries(
    txn: &impl ConnectionTrait,
    tenant_id: TenantId,
    events: &[event::Model],
    only: Option<&webhook::Model>,
) -> Result<u64, DbErr> {
    let hooks = match only {
        Some(w) => vec![w.clone()],
        None => {
            webhook::Entity::find()
                .filter(webhook::Column::TenantId.eq(tenant_id))
                .filter(webhook::Column::Active.eq(true))
                .all(txn)
                .await?
        }
    };
    let now = Utc::now();
    let rows: Vec<delivery::ActiveModel> = events
        .iter()
        .flat_map(|ev| {
            hooks
                .iter()
                .filter(|w| subscribes(w, &ev.kind))
                .map(move |w| delivery::ActiveModel {
                    id: sea_orm::NotSet,
                    tenant_id: Set(tenant_id),
                    webhook_id: Set(w.id),
                    event_id: Set(ev.id),
                    status: Set("pending".into()),
                    attempts: Set(0),
                    next_attempt_at: Set(now),
                    locked_until: Set(None),
                    last_status_code: Set(None),
                    last_error: Set(None),
                    created_at: Set(now),
                    delivered_at: Set(None),
                })
        })
        .collect();
    let n = rows.len() as u64;
    if n > 0 {
        delivery::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(n)
}

pub async fn find(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: InteractionId,
) -> Result<Option<interaction::Model>, DbErr> {
    interaction::Entity::find_by_id(id)
        .filter(interaction::Column::TenantId.eq(tenant_id))
        .one(db)
        .await
}

#[derive(Debug, Default)]
pub struct ListFilter {
    pub state: Option<State>,
    pub channel: Option<Channel>,
}

/// Newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    filter: &ListFilter,
    before: Option<InteractionId>,
    limit: u64,
) -> Result<Vec<interaction::Model>, DbErr> {
    let mut q = interaction::Entity::find().filter(interaction::Column::TenantId.eq(tenant_id));
    if let Some(s) = filter.state {
        q = q.filter(interaction::Column::State.eq(enum_str(&s)));
    }
    if let Some(c) = filter.channel {
        q = q.filter(interaction::Column::Channel.eq(enum_str(&c)));
    }
    if let Some(b) = before {
        q = q.filter(interaction::Column::Id.lt(b));
    }
    q.order_by_desc(interaction::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// One interaction's timeline, in order.
pub async fn timeline(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: InteractionId,
    after_seq: Option<i32>,
    limit: u64,
) -> Result<Vec<event::Model>, DbErr> {
    let mut q = event::Entity::find()
        .filter(event::Column::TenantId.eq(tenant_id))
        .filter(event::Column::InteractionId.eq(id));
    if let Some(a) = after_seq {
        q = q.filter(event::Column::Seq.gt(a));
    }
    q.order_by_asc(event::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// The tenant's whole event feed after a cursor, oldest first.
pub async fn feed(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    after: Option<i64>,
    kind: Option<&str>,
    limit: u64,
) -> Result<Vec<event::Model>, DbErr> {
    let mut q = event::Entity::find().filter(event::Column::TenantId.eq(tenant_id));
    if let Some(a) = after {
        q = q.filter(event::Column::Id.gt(a));
    }
    if let Some(k) = kind {
        q = q.filter(event::Column::Kind.eq(k));
    }
    q.order_by_asc(event::Column::Id).limit(limit).all(db).await
}
