//! HTTP routes of the contacts context.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use super::consent::{self, KeywordAction};
use super::domain::{
    AttrKind, Channel, ConsentStatus, Decision, Phone, SuppressionReason, attr_from_json,
    check_attr_key, check_language, check_tag, parse_phone,
};
use super::entity::{attr_def, consent_event, import_error, list, segment, suppression, upload};
use super::import::{self, ImportParams, SuppressionImportParams};
use super::lists::{self, ListError};
use super::store::{self, ContactError, ContactFull, ContactInput, ContactPatch, Search};
use crate::error::{ApiError, ApiResult, ErrorCode, FieldError, Validator};
use crate::http::extract::{Json, Page, PageParams};
use crate::iam::auth::RequestMeta;
use crate::iam::domain::Email;
use crate::iam::{AnyRole, Auth, Principal, Role};
use crate::ids::{ContactId, JobId, ListId, SegmentId, TenantId, UploadId};
use crate::jobs::JobKind;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_contacts)
        .service(count_contacts)
        .service(create_contact)
        .service(export_contacts)
        .service(start_import)
        .service(import_errors)
        .service(import_errors_csv)
        .service(upsert_by_external_id)
        .service(get_contact)
        .service(update_contact)
        .service(delete_contact)
        .service(contact_interactions)
        .service(can_contact)
        .service(record_consent)
        .service(consent_history)
        .service(unsubscribe_link)
        .service(list_attributes)
        .service(define_attribute)
        .service(delete_attribute)
        .service(list_lists)
        .service(create_list)
        .service(get_list)
        .service(update_list)
        .service(delete_list)
        .service(add_members)
        .service(remove_members)
        .service(segment_fields)
        .service(preview_segment)
        .service(list_segments)
        .service(create_segment)
        .service(get_segment)
        .service(update_segment)
        .service(delete_segment)
        .service(segment_count)
        .service(list_suppressions)
        .service(add_suppression)
        .service(import_suppressions)
        .service(delete_suppression)
        .service(inbound_sms)
        .service(get_contact_policy)
        .service(put_contact_policy)
        .service(create_upload)
        .service(get_upload)
        .service(preview_upload);
}

/// Admins, marketers and supervisors: audiences, imports, exports, suppressions.
pub struct Audience;
impl crate::iam::auth::Policy for Audience {
    const DESCRIPTION: &'static str = "a marketer, supervisor or admin";
    fn allows(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Marketer | Role::Supervisor)
    }
}

fn actor(p: &Principal) -> Option<String> {
    Some(format!("{}:{}", p.actor.kind(), p.actor.id()))
}

async fn tenant_row(state: &AppState, t: TenantId) -> ApiResult<crate::iam::entity::tenant::Model> {
    Ok(crate::iam::store::tenant(&state.db.conn, t).await?)
}

// ---- wire types ----------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneView {
    /// E.164, e.g. `+12015550123`.
    pub number: String,
    pub label: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    pub status: ConsentStatus,
    pub source: String,
    pub detail: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactView {
    pub id: ContactId,
    pub external_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub name: String,
    pub phones: Vec<PhoneView>,
    pub emails: Vec<String>,
    pub tags: Vec<String>,
    /// IANA time zone, when known.
    pub timezone: Option<String>,
    /// `explicit` (given) or `phone` (derived from an unambiguous phone region).
    pub timezone_source: Option<String>,
    pub language: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// Consent per channel (`voice`, `sms`, `email`); absent means unknown.
    pub consent: BTreeMap<String, ConsentView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ContactFull> for ContactView {
    fn from(f: ContactFull) -> Self {
        let c = f.contact;
        let name = format!("{} {}", c.first_name, c.last_name)
            .trim()
            .to_owned();
        Self {
            id: c.id,
            external_id: c.external_id,
            name,
            first_name: c.first_name,
            last_name: c.last_name,
            phones: f
                .phones
                .into_iter()
                .map(|p| PhoneView {
                    number: p.e164,
                    label: p.label,
                })
                .collect(),
            emails: f.emails.into_iter().map(|e| e.email).collect(),
            tags: f.tags,
            timezone: c.timezone,
            timezone_source: c.timezone_source,
            language: c.language,
            attributes: f
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
            consent: f
                .consents
                .into_iter()
                .filter_map(|x| {
                    ConsentStatus::parse(&x.status).map(|s| {
                        (
                            x.channel,
                            ConsentView {
                                status: s,
                                source: x.source,
                                detail: x.detail,
                                recorded_at: x.recorded_at,
                            },
                        )
                    })
                })
                .collect(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A phone as given: a string, or a number with a label.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PhoneInput {
    Plain(String),
    Labelled {
        number: String,
        label: Option<String>,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    pub external_id: Option<String>,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// Any format; numbers without a country code are read in the tenant's default region.
    #[serde(default)]
    pub phones: Vec<PhoneInput>,
    #[serde(default)]
    pub emails: Vec<String>,
    /// IANA time zone; derived from the phones when omitted and unambiguous.
    pub timezone: Option<String>,
    pub language: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Values of defined attributes, e.g. `{"plan": "gold", "spend": 120.5}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatchRequest {
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Option<String>>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Replaces all phones.
    pub phones: Option<Vec<PhoneInput>>,
    /// Replaces all emails.
    pub emails: Option<Vec<String>>,
    /// `null` clears an explicit time zone.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub language: Option<Option<String>>,
    /// Replaces all tags.
    pub tags: Option<Vec<String>>,
    /// Sets these attributes; a `null` value removes one.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
}

/// `Option<Option<T>>` that tells "absent" from "null".
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

fn check_name(v: &mut Validator, path: &str, s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 200 {
        v.add(path, "must be at most 200 characters");
    } else if s.chars().any(char::is_control) {
        v.add(path, "must not contain control characters");
    }
    s.to_owned()
}

fn check_phones(
    v: &mut Validator,
    path: &str,
    phones: &[PhoneInput],
    region: &str,
) -> Vec<(Phone, Option<String>)> {
    if phones.len() > 10 {
        v.add(path, "at most 10 phone numbers");
    }
    let mut out: Vec<(Phone, Option<String>)> = Vec::new();
    for (i, p) in phones.iter().enumerate() {
        let (n, label) = match p {
            PhoneInput::Plain(n) => (n.as_str(), None),
            PhoneInput::Labelled { number, label } => (number.as_str(), label.clone()),
        };
        if let Some(l) = &label {
            v.length(&format!("{path}[{i}].label"), l, 1, 40);
            if l.chars().any(char::is_control) {
                v.add(
                    format!("{path}[{i}].label"),
                    "must not contain control characters",
                );
            }
        }
        match parse_phone(n, region) {
            Ok(ph) if !out.iter().any(|(o, _)| o.e164 == ph.e164) => out.push((ph, label)),
            Ok(_) => {}
            Err(e) => v.add(format!("{path}[{i}]"), e.to_string()),
        }
    }
    out
}

fn check_emails(v: &mut Validator, path: &str, emails: &[String]) -> Vec<Email> {
    if emails.len() > 10 {
        v.add(path, "at most 10 email addresses");
    }
    let mut out: Vec<Email> = Vec::new();
    for (i, e) in emails.iter().enumerate() {
        match Email::parse(e) {
            Ok(e) if !out.contains(&e) => out.push(e),
            Ok(_) => {}
            Err(err) => v.add(format!("{path}[{i}]"), err.to_string()),
        }
    }
    out
}

fn check_tags(v: &mut Validator, path: &str, tags: &[String]) -> Vec<String> {
    if tags.len() > 50 {
        v.add(path, "at most 50 tags");
    }
    tags.iter()
        .enumerate()
        .filter_map(|(i, t)| v.check(&format!("{path}[{i}]"), check_tag(t)))
        .collect()
}

fn check_tz(v: &mut Validator, path: &str, tz: &str) -> Option<Tz> {
    let r = tz.parse::<Tz>();
    if r.is_err() {
        v.add(path, "is not an IANA time zone such as America/Chicago");
    }
    r.ok()
}

fn check_attrs(
    v: &mut Validator,
    attrs: &Map<String, Value>,
    kinds: &std::collections::HashMap<String, AttrKind>,
) -> (Vec<(String, super::domain::AttrValue)>, Vec<String>) {
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for (k, val) in attrs {
        let path = format!("attributes.{}", k.chars().take(64).collect::<String>());
        let Some(kind) = kinds.get(k) else {
            v.add(
                path,
                "is not a defined attribute (define it under /contact-attributes)",
            );
            continue;
        };
        if val.is_null() {
            remove.push(k.clone());
            continue;
        }
        match attr_from_json(*kind, val) {
            Ok(x) => set.push((k.clone(), x)),
            Err(e) => v.add(path, e),
        }
    }
    (set, remove)
}

async fn input_of(state: &AppState, t: TenantId, b: ContactRequest) -> ApiResult<ContactInput> {
    let tenant = tenant_row(state, t).await?;
    let kinds = store::attribute_kinds(&state.db.conn, t).await?;
    let mut v = Validator::new();
    let first_name = check_name(&mut v, "first_name", &b.first_name);
    let last_name = check_name(&mut v, "last_name", &b.last_name);
    if let Some(e) = &b.external_id {
        v.length("external_id", e, 1, 200);
    }
    let phones = check_phones(&mut v, "phones", &b.phones, &tenant.default_region);
    let emails = check_emails(&mut v, "emails", &b.emails);
    let timezone = b
        .timezone
        .as_deref()
        .and_then(|z| check_tz(&mut v, "timezone", z));
    let language = b
        .language
        .as_deref()
        .and_then(|l| v.check("language", check_language(l)));
    let tags = check_tags(&mut v, "tags", &b.tags);
    let (attributes, nulls) = check_attrs(&mut v, &b.attributes, &kinds);
    for k in nulls {
        v.add(format!("attributes.{k}"), "must not be null here");
    }
    // Judged on what was given: an invalid phone is reported as such, not
    // also as a contact without any way to know them by.
    if first_name.is_empty()
        && last_name.is_empty()
        && b.phones.is_empty()
        && b.emails.is_empty()
        && b.external_id.is_none()
    {
        v.add(
            "body",
            "a contact needs at least a name, a phone, an email or an external id",
        );
    }
    v.finish()?;
    Ok(ContactInput {
        external_id: b.external_id,
        first_name,
        last_name,
        phones,
        emails,
        timezone,
        language,
        tags,
        attributes,
    })
}

async fn view(state: &AppState, t: TenantId, id: ContactId) -> ApiResult<ContactView> {
    Ok(store::get_full(&state.db.conn, t, id).await?.into())
}

// ---- contacts ------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContactQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    /// Name, phone (any format), email or external id.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub list_id: Option<ListId>,
    pub segment_id: Option<SegmentId>,
    /// A segment expression, e.g. `tags has "vip"`.
    pub segment: Option<String>,
}

/// The same filters, without paging (counts and exports).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContactFilter {
    /// Name, phone (any format), email or external id.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub list_id: Option<ListId>,
    pub segment_id: Option<SegmentId>,
    /// A segment expression, e.g. `tags has "vip"`.
    pub segment: Option<String>,
}

impl ContactQuery {
    fn filter(&self) -> ContactFilter {
        ContactFilter {
            q: self.q.clone(),
            tag: self.tag.clone(),
            list_id: self.list_id,
            segment_id: self.segment_id,
            segment: self.segment.clone(),
        }
    }
}

async fn search_of(
    state: &AppState,
    t: TenantId,
    q: &ContactFilter,
) -> ApiResult<(Search, String)> {
    let tenant = tenant_row(state, t).await?;
    if q.q.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::field("q", "must be at most 200 characters"));
    }
    if q.tag.as_ref().is_some_and(|s| s.chars().count() > 64) {
        return Err(ApiError::field("tag", "must be at most 64 characters"));
    }
    // PostgreSQL cannot compare text with U+0000 in it.
    for (path, v) in [("q", &q.q), ("tag", &q.tag), ("segment", &q.segment)] {
        if v.as_ref().is_some_and(|s| s.contains('\0')) {
            return Err(ApiError::field(
                path,
                "must not contain the NUL character (U+0000)",
            ));
        }
    }
    if let Some(l) = q.list_id {
        lists::get(&state.db.conn, t, l)
            .await?
            .ok_or_else(|| ApiError::not_found("list"))?;
    }
    let expr = match (&q.segment_id, &q.segment) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "segment",
                "give segment or segment_id, not both",
            ));
        }
        (Some(id), None) => Some(
            lists::get_segment(&state.db.conn, t, *id)
                .await?
                .ok_or_else(|| ApiError::not_found("segment"))?
                .expression,
        ),
        (None, Some(e)) => Some(e.clone()),
        (None, None) => None,
    };
    let segment = match expr {
        Some(e) => Some(compile(state, t, &tenant.default_region, &e, "segment").await?),
        None => None,
    };
    Ok((
        Search {
            q: q.q.clone(),
            tag: q.tag.clone(),
            list_id: q.list_id,
            segment,
        },
        tenant.default_region,
    ))
}

async fn compile(
    state: &AppState,
    t: TenantId,
    region: &str,
    expr: &str,
    path: &str,
) -> ApiResult<sea_orm::sea_query::SimpleExpr> {
    let cat = lists::catalog(&state.db.conn, t, region).await?;
    let backend = if state.db.is_sqlite() {
        sea_orm::DbBackend::Sqlite
    } else {
        sea_orm::DbBackend::Postgres
    };
    super::segment_sql::compile_str(expr, t, &cat, backend).map_err(|e| {
        ApiError::new(ErrorCode::ValidationFailed, format!("{path}: {e}")).with_details(json!({
            "fields": [FieldError::new(path, e.to_string())],
            "position": e.position, "line": e.line, "column": e.column,
        }))
    })
}

/// Contacts, searched and filtered, in creation order.
#[utoipa::path(tag = "contacts", params(ContactQuery), responses((status = 200, body = Page<ContactView>)))]
#[get("/contacts")]
async fn list_contacts(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    q: crate::http::extract::Query<ContactQuery>,
) -> ApiResult<web::Json<Page<ContactView>>> {
    let q = q.into_inner();
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let (search, region) = search_of(&state, auth.tenant_id, &q.filter()).await?;
    let mut rows = store::search(
        &state.db.conn,
        auth.tenant_id,
        &search,
        &region,
        page.cursor()?,
        limit + 1,
    )
    .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let full = store::load_full(&state.db.conn, auth.tenant_id, rows).await?;
    Ok(web::Json(Page::new(
        full.into_iter().map(ContactView::from).collect(),
        next,
    )))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountView {
    pub count: u64,
}

/// How many contacts a search or segment matches.
#[utoipa::path(tag = "contacts", params(ContactFilter), responses((status = 200, body = CountView)))]
#[get("/contacts/count")]
async fn count_contacts(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    q: crate::http::extract::Query<ContactFilter>,
) -> ApiResult<web::Json<CountView>> {
    let (search, region) = search_of(&state, auth.tenant_id, &q).await?;
    Ok(web::Json(CountView {
        count: store::count(&state.db.conn, auth.tenant_id, &search, &region).await?,
    }))
}

/// Create a contact.
#[utoipa::path(tag = "contacts", request_body = ContactRequest, responses((status = 201, body = ContactView), (status = 409, body = crate::error::ErrorBody)))]
#[post("/contacts")]
async fn create_contact(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    body: Json<ContactRequest>,
) -> ApiResult<HttpResponse> {
    let input = input_of(&state, auth.tenant_id, body.0).await?;
    let txn = crate::db::begin_write(&state.db.conn).await?;
    let id = store::create(&txn, auth.tenant_id, input).await?;
    txn.commit().await?;
    Ok(HttpResponse::Created().json(view(&state, auth.tenant_id, id).await?))
}

/// Create or replace the contact with this external id (the upsert key).
#[utoipa::path(tag = "contacts", request_body = ContactRequest, params(("external_id" = String, Path, description = "Your id for the contact")), responses((status = 200, body = ContactView), (status = 201, body = ContactView), (status = 409, body = crate::error::ErrorBody)))]
#[put("/contacts/by-external-id/{external_id}")]
async fn upsert_by_external_id(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    ext: crate::http::extract::Path<String>,
    body: Json<ContactRequest>,
) -> ApiResult<HttpResponse> {
    let ext = ext.into_inner();
    if ext.is_empty() || ext.chars().count() > 200 {
        return Err(ApiError::field("external_id", "must be 1-200 characters"));
    }
    let mut b = body.0;
    if b.external_id.as_ref().is_some_and(|e| e != &ext) {
        return Err(ApiError::field(
            "external_id",
            "differs from the one in the path",
        ));
    }
    b.external_id = Some(ext.clone());
    let input = input_of(&state, auth.tenant_id, b).await?;
    // Two requests may race to create the same key: the loser finds the
    // winner's contact on its next attempt and replaces it instead.
    let mut attempt = 0;
    let (id, created) = loop {
        attempt += 1;
        match upsert_once(&state, auth.tenant_id, &ext, input.clone()).await {
            Err(ContactError::ExternalIdTaken(_)) if attempt < 3 => continue,
            r => break r?,
        }
    };
    let v = view(&state, auth.tenant_id, id).await?;
    Ok(if created {
        HttpResponse::Created().json(v)
    } else {
        HttpResponse::Ok().json(v)
    })
}

/// One attempt of an upsert, in one transaction: (the contact, created?).
async fn upsert_once(
    state: &AppState,
    t: TenantId,
    ext: &str,
    input: ContactInput,
) -> Result<(ContactId, bool), ContactError> {
    let txn = crate::db::begin_write(&state.db.conn).await?;
    let r = match store::by_external_id(&txn, t, ext).await? {
        Some(c) => {
            // A replacement: attributes not given are removed, like phones,
            // emails and tags.
            let remove_attributes = store::attribute_kinds(&txn, t)
                .await?
                .into_keys()
                .filter(|k| !input.attributes.iter().any(|(g, _)| g == k))
                .collect();
            let patch = ContactPatch {
                external_id: None,
                first_name: Some(input.first_name),
                last_name: Some(input.last_name),
                phones: Some(input.phones),
                emails: Some(input.emails),
                timezone: Some(input.timezone),
                language: Some(input.language),
                tags: Some(input.tags),
                attributes: Some(input.attributes),
                remove_attributes,
            };
            store::update(&txn, t, c.id, patch).await?;
            (c.id, false)
        }
        None => (store::create(&txn, t, input).await?, true),
    };
    txn.commit().await?;
    Ok(r)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactCard {
    #[serde(flatten)]
    pub contact: ContactView,
    pub lists: Vec<ListRef>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListRef {
    pub id: ListId,
    pub name: String,
}

/// One contact, with the lists it is on.
#[utoipa::path(tag = "contacts", responses((status = 200, body = ContactCard)))]
#[get("/contacts/{id}")]
async fn get_contact(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<ContactId>,
) -> ApiResult<web::Json<ContactCard>> {
    let contact = view(&state, auth.tenant_id, *id).await?;
    let lists = lists::of_contact(&state.db.conn, auth.tenant_id, *id)
        .await?
        .into_iter()
        .map(|l| ListRef {
            id: l.id,
            name: l.name,
        })
        .collect();
    Ok(web::Json(ContactCard { contact, lists }))
}

/// Change a contact. Lists (phones, emails, tags) replace the old ones.
#[utoipa::path(tag = "contacts", request_body = ContactPatchRequest, responses((status = 200, body = ContactView), (status = 409, body = crate::error::ErrorBody)))]
#[patch("/contacts/{id}")]
async fn update_contact(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<ContactId>,
    body: Json<ContactPatchRequest>,
) -> ApiResult<web::Json<ContactView>> {
    let b = body.0;
    let t = auth.tenant_id;
    let current = store::get_full(&state.db.conn, t, *id).await?;
    let tenant = tenant_row(&state, t).await?;
    let kinds = store::attribute_kinds(&state.db.conn, t).await?;
    let mut v = Validator::new();
    let first_name = b
        .first_name
        .as_deref()
        .map(|s| check_name(&mut v, "first_name", s));
    let last_name = b
        .last_name
        .as_deref()
        .map(|s| check_name(&mut v, "last_name", s));
    if let Some(Some(e)) = &b.external_id {
        v.length("external_id", e, 1, 200);
    }
    let phones = b
        .phones
        .as_deref()
        .map(|p| check_phones(&mut v, "phones", p, &tenant.default_region));
    let emails = b
        .emails
        .as_deref()
        .map(|e| check_emails(&mut v, "emails", e));
    let timezone = b
        .timezone
        .as_ref()
        .map(|z| z.as_deref().and_then(|z| check_tz(&mut v, "timezone", z)));
    let language = b.language.as_ref().map(|l| {
        l.as_deref()
            .and_then(|l| v.check("language", check_language(l)))
    });
    let tags = b.tags.as_deref().map(|x| check_tags(&mut v, "tags", x));
    let (attributes, remove_attributes) = match &b.attributes {
        Some(a) => {
            let (s, r) = check_attrs(&mut v, a, &kinds);
            (Some(s), r)
        }
        None => (None, Vec::new()),
    };
    // Like a new contact, a changed one needs some way to know them by.
    let named = !first_name
        .as_deref()
        .unwrap_or(&current.contact.first_name)
        .is_empty()
        || !last_name
            .as_deref()
            .unwrap_or(&current.contact.last_name)
            .is_empty();
    let phoned = b
        .phones
        .as_ref()
        .map_or(!current.phones.is_empty(), |p| !p.is_empty());
    let mailed = b
        .emails
        .as_ref()
        .map_or(!current.emails.is_empty(), |e| !e.is_empty());
    let keyed = b
        .external_id
        .as_ref()
        .map_or(current.contact.external_id.is_some(), Option::is_some);
    if !(named || phoned || mailed || keyed) {
        v.add(
            "body",
            "a contact needs at least a name, a phone, an email or an external id",
        );
    }
    v.finish()?;
    let patch = ContactPatch {
        external_id: b.external_id,
        first_name,
        last_name,
        phones,
        emails,
        timezone,
        language,
        tags,
        attributes,
        remove_attributes,
    };
    let txn = crate::db::begin_write(&state.db.conn).await?;
    store::update(&txn, t, *id, patch).await?;
    txn.commit().await?;
    Ok(web::Json(view(&state, t, *id).await?))
}

/// Delete a contact and everything about it (consent history stays, unlinked).
#[utoipa::path(tag = "contacts", responses((status = 204)))]
#[delete("/contacts/{id}")]
async fn delete_contact(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<ContactId>,
) -> ApiResult<HttpResponse> {
    store::delete(&state.db.conn, auth.tenant_id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The contact's interactions, newest first: their history with the tenant.
#[utoipa::path(tag = "contacts", params(PageParams), responses((status = 200, body = Page<crate::interactions::http::InteractionView>)))]
#[get("/contacts/{id}/interactions")]
async fn contact_interactions(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<ContactId>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<crate::interactions::http::InteractionView>>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

    use crate::interactions::entity::interaction;
    store::find(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("contact"))?;
    let limit = page.limit()?;
    let mut q = interaction::Entity::find()
        .filter(interaction::Column::TenantId.eq(auth.tenant_id))
        .filter(interaction::Column::ContactId.eq(*id));
    if let Some(c) = page.cursor::<crate::ids::InteractionId>()? {
        q = q.filter(interaction::Column::Id.lt(c));
    }
    let rows = q
        .order_by_desc(interaction::Column::Id)
        .limit(limit + 1)
        .all(&state.db.conn)
        .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |m| m.id,
        Into::into,
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChannelQuery {
    pub channel: Channel,
    /// Decide for this moment instead of now (RFC 3339).
    pub at: Option<DateTime<Utc>>,
}

/// May we contact this person on this channel now, and if not, why?
#[utoipa::path(tag = "consent", params(ChannelQuery), responses((status = 200, body = Decision)))]
#[get("/contacts/{id}/can-contact")]
async fn can_contact(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<ContactId>,
    q: crate::http::extract::Query<ChannelQuery>,
) -> ApiResult<web::Json<Decision>> {
    let at = q.at.unwrap_or_else(Utc::now);
    Ok(web::Json(
        consent::can_contact(&state.db.conn, auth.tenant_id, *id, q.channel, at).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    pub channel: Channel,
    pub status: ConsentStatus,
    /// Where the consent came from, e.g. `web form` or `phone call`; an
    /// agent's change is recorded as `agent`, an API key's as `api` by default.
    pub source: Option<String>,
    pub detail: Option<String>,
}

/// Record an opt-in or opt-out for one channel (kept with its history).
#[utoipa::path(tag = "consent", request_body = ConsentRequest, responses((status = 200, body = ContactView)))]
#[post("/contacts/{id}/consent")]
async fn record_consent(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<ContactId>,
    body: Json<ConsentRequest>,
) -> ApiResult<web::Json<ContactView>> {
    let b = body.0;
    let mut v = Validator::new();
    if let Some(s) = &b.source {
        v.length("source", s, 1, 200);
    }
    if let Some(d) = &b.detail {
        v.length("detail", d, 0, 1000);
    }
    v.finish()?;
    let default = if auth.user_id().is_some() && auth.role == Role::Agent {
        consent::source::AGENT
    } else if auth.user_id().is_some() {
        "user"
    } else {
        consent::source::API
    };
    let source = b.source.unwrap_or_else(|| default.to_owned());
    // The current state and its history entry commit together.
    let txn = crate::db::begin_write(&state.db.conn).await?;
    consent::record(
        &txn,
        auth.tenant_id,
        *id,
        b.channel,
        b.status,
        &source,
        b.detail,
        actor(&auth),
        Utc::now(),
    )
    .await?;
    txn.commit().await?;
    Ok(web::Json(view(&state, auth.tenant_id, *id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentEventView {
    pub channel: String,
    pub status: String,
    pub source: String,
    pub detail: Option<String>,
    pub actor: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

impl From<consent_event::Model> for ConsentEventView {
    fn from(e: consent_event::Model) -> Self {
        Self {
            channel: e.channel,
            status: e.status,
            source: e.source,
            detail: e.detail,
            actor: e.actor,
            recorded_at: e.recorded_at,
        }
    }
}

/// Every consent change of a contact, newest first.
#[utoipa::path(tag = "consent", responses((status = 200, body = Vec<ConsentEventView>)))]
#[get("/contacts/{id}/consent-history")]
async fn consent_history(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<ContactId>,
) -> ApiResult<web::Json<Vec<ConsentEventView>>> {
    store::find(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("contact"))?;
    let rows = consent::history_of(&state.db.conn, auth.tenant_id, *id, 200).await?;
    Ok(web::Json(rows.into_iter().map(Into::into).collect()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    pub url: String,
}

/// A personal unsubscribe link for this contact and channel (put it in
/// emails; it needs no sign-in and cannot be forged).
#[utoipa::path(tag = "consent", params(ChannelQuery), responses((status = 200, body = LinkView)))]
#[get("/contacts/{id}/unsubscribe-link")]
async fn unsubscribe_link(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    req: HttpRequest,
    id: crate::http::extract::Path<ContactId>,
    q: crate::http::extract::Query<ChannelQuery>,
) -> ApiResult<web::Json<LinkView>> {
    store::find(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("contact"))?;
    let token = consent::unsubscribe_token(&state.sealer, auth.tenant_id, *id, q.channel);
    let base = if state.settings.http.public_url.is_empty() {
        let ci = req.connection_info();
        format!("{}://{}", ci.scheme(), ci.host())
    } else {
        state
            .settings
            .http
            .public_url
            .trim_end_matches('/')
            .to_owned()
    };
    Ok(web::Json(LinkView {
        url: format!("{base}/u/{token}"),
    }))
}

// ---- attributes ------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeDefinition {
    /// Lower-case letters, digits and `_`; used as `attributes.<key>` in segments.
    pub key: String,
    pub kind: AttrKind,
    #[serde(default)]
    pub label: String,
}

/// The tenant's custom contact attributes.
#[utoipa::path(tag = "contacts", responses((status = 200, body = Vec<AttributeDefinition>)))]
#[get("/contact-attributes")]
async fn list_attributes(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
) -> ApiResult<web::Json<Vec<AttributeDefinition>>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let rows = attr_def::Entity::find()
        .filter(attr_def::Column::TenantId.eq(auth.tenant_id))
        .order_by_asc(attr_def::Column::Key)
        .all(&state.db.conn)
        .await?;
    Ok(web::Json(
        rows.into_iter()
            .filter_map(|d| {
                AttrKind::parse(&d.kind).map(|kind| AttributeDefinition {
                    key: d.key,
                    kind,
                    label: d.label,
                })
            })
            .collect(),
    ))
}

/// Define a typed attribute (its kind cannot change later).
#[utoipa::path(tag = "contacts", request_body = AttributeDefinition, responses((status = 201, body = AttributeDefinition), (status = 409, body = crate::error::ErrorBody)))]
#[post("/contact-attributes")]
async fn define_attribute(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    body: Json<AttributeDefinition>,
) -> ApiResult<HttpResponse> {
    use sea_orm::{ActiveModelTrait, Set};
    let b = body.0;
    let mut v = Validator::new();
    v.check("key", check_attr_key(&b.key));
    v.length("label", &b.label, 0, 120);
    v.finish()?;
    let count = store::attribute_kinds(&state.db.conn, auth.tenant_id)
        .await?
        .len();
    if count >= 200 {
        return Err(ApiError::conflict(
            "a tenant can define at most 200 attributes",
        ));
    }
    let r = attr_def::ActiveModel {
        tenant_id: Set(auth.tenant_id),
        key: Set(b.key.clone()),
        kind: Set(b.kind.as_str().into()),
        label: Set(b.label.clone()),
        created_at: Set(Utc::now()),
    }
    .insert(&state.db.conn)
    .await;
    match r {
        Ok(_) => Ok(HttpResponse::Created().json(b)),
        Err(e)
            if e.to_string().to_lowercase().contains("unique")
                || e.to_string().contains("duplicate key") =>
        {
            Err(ApiError::conflict(format!(
                "attribute {:?} is already defined",
                b.key
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Remove an attribute and its values from every contact.
#[utoipa::path(tag = "contacts", params(("key" = String, Path)), responses((status = 204)))]
#[delete("/contact-attributes/{key}")]
async fn delete_attribute(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    key: crate::http::extract::Path<String>,
) -> ApiResult<HttpResponse> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let r = attr_def::Entity::delete_many()
        .filter(attr_def::Column::TenantId.eq(auth.tenant_id))
        .filter(attr_def::Column::Key.eq(key.as_str()))
        .exec(&state.db.conn)
        .await?;
    if r.rows_affected == 0 {
        return Err(ApiError::not_found("attribute"));
    }
    super::entity::attr::Entity::delete_many()
        .filter(super::entity::attr::Column::TenantId.eq(auth.tenant_id))
        .filter(super::entity::attr::Column::Key.eq(key.as_str()))
        .exec(&state.db.conn)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- lists -----------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct ListView {
    pub id: ListId,
    pub name: String,
    pub description: String,
    pub members: u64,
    pub created_at: DateTime<Utc>,
}

async fn list_view(state: &AppState, l: list::Model) -> ApiResult<ListView> {
    let members = lists::member_count(&state.db.conn, l.tenant_id, l.id).await?;
    Ok(ListView {
        id: l.id,
        name: l.name,
        description: l.description,
        members,
        created_at: l.created_at,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Static lists.
#[utoipa::path(tag = "lists", params(PageParams), responses((status = 200, body = Page<ListView>)))]
#[get("/lists")]
async fn list_lists(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<ListView>>> {
    let limit = page.limit()?;
    let mut rows = lists::all(&state.db.conn, auth.tenant_id, page.cursor()?, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let mut items = Vec::new();
    for r in rows {
        items.push(list_view(&state, r).await?);
    }
    Ok(web::Json(Page::new(items, next)))
}

/// Create a list.
#[utoipa::path(tag = "lists", request_body = ListRequest, responses((status = 201, body = ListView), (status = 409, body = crate::error::ErrorBody)))]
#[post("/lists")]
async fn create_list(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    body: Json<ListRequest>,
) -> ApiResult<HttpResponse> {
    let mut v = Validator::new();
    let name = check_name(&mut v, "name", &body.0.name);
    v.length("name", &name, 1, 120);
    v.length("description", &body.0.description, 0, 1000);
    v.finish()?;
    let l = lists::create(&state.db.conn, auth.tenant_id, name, body.0.description).await?;
    Ok(HttpResponse::Created().json(list_view(&state, l).await?))
}

/// One list.
#[utoipa::path(tag = "lists", responses((status = 200, body = ListView)))]
#[get("/lists/{id}")]
async fn get_list(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<ListId>,
) -> ApiResult<web::Json<ListView>> {
    let l = lists::get(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("list"))?;
    Ok(web::Json(list_view(&state, l).await?))
}

/// Rename a list.
#[utoipa::path(tag = "lists", request_body = ListPatch, responses((status = 200, body = ListView), (status = 409, body = crate::error::ErrorBody)))]
#[patch("/lists/{id}")]
async fn update_list(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<ListId>,
    body: Json<ListPatch>,
) -> ApiResult<web::Json<ListView>> {
    let b = body.0;
    let mut v = Validator::new();
    let name = b.name.as_deref().map(|n| {
        let n = check_name(&mut v, "name", n);
        v.length("name", &n, 1, 120);
        n
    });
    if let Some(d) = &b.description {
        v.length("description", d, 0, 1000);
    }
    v.finish()?;
    let l = lists::rename(&state.db.conn, auth.tenant_id, *id, name, b.description).await?;
    Ok(web::Json(list_view(&state, l).await?))
}

/// Delete a list (its contacts stay).
#[utoipa::path(tag = "lists", responses((status = 204)))]
#[delete("/lists/{id}")]
async fn delete_list(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<ListId>,
) -> ApiResult<HttpResponse> {
    lists::delete(&state.db.conn, auth.tenant_id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersRequest {
    /// Up to 10,000 contact ids.
    pub contact_ids: Vec<ContactId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembersChanged {
    pub changed: u64,
    pub members: u64,
}

fn check_members(b: &MembersRequest) -> ApiResult<()> {
    if b.contact_ids.is_empty() || b.contact_ids.len() > 10_000 {
        return Err(ApiError::field(
            "contact_ids",
            "give 1 to 10000 contact ids",
        ));
    }
    Ok(())
}

/// Add contacts to a list (already there is fine).
#[utoipa::path(tag = "lists", request_body = MembersRequest, responses((status = 200, body = MembersChanged)))]
#[post("/lists/{id}/members")]
async fn add_members(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<ListId>,
    body: Json<MembersRequest>,
) -> ApiResult<web::Json<MembersChanged>> {
    check_members(&body.0)?;
    let changed = lists::add(&state.db.conn, auth.tenant_id, *id, &body.0.contact_ids).await?;
    Ok(web::Json(MembersChanged {
        changed,
        members: lists::member_count(&state.db.conn, auth.tenant_id, *id).await?,
    }))
}

/// Remove contacts from a list.
#[utoipa::path(tag = "lists", request_body = MembersRequest, responses((status = 200, body = MembersChanged)))]
#[post("/lists/{id}/members/remove")]
async fn remove_members(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<ListId>,
    body: Json<MembersRequest>,
) -> ApiResult<web::Json<MembersChanged>> {
    check_members(&body.0)?;
    let changed = lists::remove(&state.db.conn, auth.tenant_id, *id, &body.0.contact_ids).await?;
    Ok(web::Json(MembersChanged {
        changed,
        members: lists::member_count(&state.db.conn, auth.tenant_id, *id).await?,
    }))
}

// ---- segments --------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    pub id: SegmentId,
    pub name: String,
    pub description: String,
    pub expression: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<segment::Model> for SegmentView {
    fn from(s: segment::Model) -> Self {
        Self {
            id: s.id,
            name: s.name,
            description: s.description,
            expression: s.expression,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentFields {
    /// Built-in fields.
    pub fields: Vec<String>,
    pub attributes: Vec<AttributeDefinition>,
    /// Names usable with `in_list "..."`.
    pub lists: Vec<String>,
    pub operators: Vec<String>,
}

/// What a segment expression can name in this tenant (for the builder).
#[utoipa::path(tag = "segments", responses((status = 200, body = SegmentFields)))]
#[get("/segments/fields")]
async fn segment_fields(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
) -> ApiResult<web::Json<SegmentFields>> {
    let tenant = tenant_row(&state, auth.tenant_id).await?;
    let cat = lists::catalog(&state.db.conn, auth.tenant_id, &tenant.default_region).await?;
    let mut attributes: Vec<AttributeDefinition> = cat
        .attributes
        .into_iter()
        .map(|(key, kind)| AttributeDefinition {
            key,
            kind,
            label: String::new(),
        })
        .collect();
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    let mut lists: Vec<String> = cat.lists.into_keys().collect();
    lists.sort();
    Ok(web::Json(SegmentFields {
        fields: super::segment_sql::FIELDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        attributes,
        lists,
        operators: [
            "=",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "contains",
            "starts_with",
            "has",
            "in",
            "is set",
            "is not set",
        ]
        .map(String::from)
        .to_vec(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// e.g. `tags has "vip" and attributes.plan = "gold"`
    pub expression: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    pub count: u64,
    /// The first few matching contacts.
    pub sample: Vec<ContactView>,
}

/// Count (and sample) the contacts an expression matches, without saving
/// it. A bad expression gives 422 with `details.position`, `line`, `column`.
#[utoipa::path(tag = "segments", request_body = PreviewRequest, responses((status = 200, body = PreviewView)))]
#[post("/segments/preview")]
async fn preview_segment(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    body: Json<PreviewRequest>,
) -> ApiResult<web::Json<PreviewView>> {
    let tenant = tenant_row(&state, auth.tenant_id).await?;
    let seg = compile(
        &state,
        auth.tenant_id,
        &tenant.default_region,
        &body.0.expression,
        "expression",
    )
    .await?;
    let search = Search {
        segment: Some(seg),
        ..Default::default()
    };
    let count = store::count(
        &state.db.conn,
        auth.tenant_id,
        &search,
        &tenant.default_region,
    )
    .await?;
    let rows = store::search(
        &state.db.conn,
        auth.tenant_id,
        &search,
        &tenant.default_region,
        None,
        5,
    )
    .await?;
    let sample = store::load_full(&state.db.conn, auth.tenant_id, rows)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(web::Json(PreviewView { count, sample }))
}

/// Saved segments.
#[utoipa::path(tag = "segments", params(PageParams), responses((status = 200, body = Page<SegmentView>)))]
#[get("/segments")]
async fn list_segments(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<SegmentView>>> {
    let limit = page.limit()?;
    let rows = lists::segments(&state.db.conn, auth.tenant_id, page.cursor()?, limit + 1).await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |s| s.id,
        Into::into,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub expression: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub expression: Option<String>,
}

/// Save a segment (the expression is checked first).
#[utoipa::path(tag = "segments", request_body = SegmentRequest, responses((status = 201, body = SegmentView), (status = 409, body = crate::error::ErrorBody)))]
#[post("/segments")]
async fn create_segment(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    body: Json<SegmentRequest>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let mut v = Validator::new();
    let name = check_name(&mut v, "name", &b.name);
    v.length("name", &name, 1, 120);
    v.length("description", &b.description, 0, 1000);
    v.finish()?;
    let tenant = tenant_row(&state, auth.tenant_id).await?;
    compile(
        &state,
        auth.tenant_id,
        &tenant.default_region,
        &b.expression,
        "expression",
    )
    .await?;
    let s = lists::create_segment(
        &state.db.conn,
        auth.tenant_id,
        name,
        b.description,
        b.expression,
    )
    .await?;
    Ok(HttpResponse::Created().json(SegmentView::from(s)))
}

/// One segment.
#[utoipa::path(tag = "segments", responses((status = 200, body = SegmentView)))]
#[get("/segments/{id}")]
async fn get_segment(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<SegmentId>,
) -> ApiResult<web::Json<SegmentView>> {
    let s = lists::get_segment(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("segment"))?;
    Ok(web::Json(s.into()))
}

/// Change a segment.
#[utoipa::path(tag = "segments", request_body = SegmentPatch, responses((status = 200, body = SegmentView), (status = 409, body = crate::error::ErrorBody)))]
#[patch("/segments/{id}")]
async fn update_segment(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<SegmentId>,
    body: Json<SegmentPatch>,
) -> ApiResult<web::Json<SegmentView>> {
    let b = body.0;
    lists::get_segment(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("segment"))?;
    let mut v = Validator::new();
    let name = b.name.as_deref().map(|n| {
        let n = check_name(&mut v, "name", n);
        v.length("name", &n, 1, 120);
        n
    });
    if let Some(d) = &b.description {
        v.length("description", d, 0, 1000);
    }
    v.finish()?;
    if let Some(e) = &b.expression {
        let tenant = tenant_row(&state, auth.tenant_id).await?;
        compile(
            &state,
            auth.tenant_id,
            &tenant.default_region,
            e,
            "expression",
        )
        .await?;
    }
    let s = lists::update_segment(
        &state.db.conn,
        auth.tenant_id,
        *id,
        name,
        b.description,
        b.expression,
    )
    .await?;
    Ok(web::Json(s.into()))
}

/// Delete a segment.
#[utoipa::path(tag = "segments", responses((status = 204)))]
#[delete("/segments/{id}")]
async fn delete_segment(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<SegmentId>,
) -> ApiResult<HttpResponse> {
    lists::delete_segment(&state.db.conn, auth.tenant_id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// How many contacts a saved segment matches now.
#[utoipa::path(tag = "segments", responses((status = 200, body = CountView)))]
#[get("/segments/{id}/count")]
async fn segment_count(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
    id: crate::http::extract::Path<SegmentId>,
) -> ApiResult<web::Json<CountView>> {
    let s = lists::get_segment(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("segment"))?;
    let tenant = tenant_row(&state, auth.tenant_id).await?;
    let seg = compile(
        &state,
        auth.tenant_id,
        &tenant.default_region,
        &s.expression,
        "expression",
    )
    .await?;
    let search = Search {
        segment: Some(seg),
        ..Default::default()
    };
    Ok(web::Json(CountView {
        count: store::count(
            &state.db.conn,
            auth.tenant_id,
            &search,
            &tenant.default_region,
        )
        .await?,
    }))
}

// ---- suppressions ----------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionView {
    pub id: i64,
    /// `phone` (calls and texts), `voice`, `sms` or `email`.
    pub channel: String,
    pub address: String,
    pub reason: String,
    pub source: String,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<suppression::Model> for SuppressionView {
    fn from(s: suppression::Model) -> Self {
        Self {
            id: s.id,
            channel: s.channel,
            address: s.address,
            reason: s.reason,
            source: s.source,
            detail: s.detail,
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SuppressionQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub channel: Option<String>,
    /// An exact address (a phone in any format, or an email).
    pub address: Option<String>,
}

fn check_supp_channel(c: &str) -> ApiResult<()> {
    if ["phone", "voice", "sms", "email"].contains(&c) {
        Ok(())
    } else {
        Err(ApiError::field(
            "channel",
            "must be phone, voice, sms or email",
        ))
    }
}

fn normalize_address(channel: &str, address: &str, region: &str) -> ApiResult<String> {
    if channel == "email" {
        Email::parse(address)
            .map(|e| e.as_str().to_owned())
            .map_err(|e| ApiError::field("address", e.to_string()))
    } else {
        parse_phone(address, region)
            .map(|p| p.e164)
            .map_err(|e| ApiError::field("address", e.to_string()))
    }
}

/// The tenant's suppression list (do-not-call, bounces, complaints, STOPs).
#[utoipa::path(tag = "consent", params(SuppressionQuery), responses((status = 200, body = Page<SuppressionView>)))]
#[get("/suppressions")]
async fn list_suppressions(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    q: crate::http::extract::Query<SuppressionQuery>,
) -> ApiResult<web::Json<Page<SuppressionView>>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let q = q.into_inner();
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let mut s =
        suppression::Entity::find().filter(suppression::Column::TenantId.eq(auth.tenant_id));
    if let Some(c) = &q.channel {
        check_supp_channel(c)?;
        s = s.filter(suppression::Column::Channel.eq(c.as_str()));
    }
    if let Some(a) = &q.address {
        let tenant = tenant_row(&state, auth.tenant_id).await?;
        let norm = normalize_address(
            if a.contains('@') { "email" } else { "phone" },
            a,
            &tenant.default_region,
        )?;
        s = s.filter(suppression::Column::Address.eq(norm));
    }
    if let Some(c) = page.cursor::<i64>()? {
        s = s.filter(suppression::Column::Id.lt(c));
    }
    let rows = s
        .order_by_desc(suppression::Column::Id)
        .limit(limit + 1)
        .all(&state.db.conn)
        .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |r| r.id,
        Into::into,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressionRequest {
    pub channel: String,
    pub address: String,
    pub reason: SuppressionReason,
    pub detail: Option<String>,
}

/// Add an address to the suppression list (e.g. a bounce or complaint
/// reported by an email provider).
#[utoipa::path(tag = "consent", request_body = SuppressionRequest, responses((status = 201, body = SuppressionView)))]
#[post("/suppressions")]
async fn add_suppression(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    body: Json<SuppressionRequest>,
) -> ApiResult<HttpResponse> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let b = body.0;
    check_supp_channel(&b.channel)?;
    if let Some(d) = &b.detail {
        let mut v = Validator::new();
        v.length("detail", d, 0, 1000);
        v.finish()?;
    }
    let tenant = tenant_row(&state, auth.tenant_id).await?;
    let address = normalize_address(&b.channel, &b.address, &tenant.default_region)?;
    let ch = Channel::parse(&b.channel);
    let added = match ch {
        Some(c) => {
            consent::suppress(
                &state.db.conn,
                auth.tenant_id,
                c,
                &address,
                b.reason,
                consent::source::API,
                b.detail.clone(),
            )
            .await?
        }
        None => {
            // `phone`: both phone channels at once.
            use sea_orm::{ActiveModelTrait, Set};
            let exists = suppression::Entity::find()
                .filter(suppression::Column::TenantId.eq(auth.tenant_id))
                .filter(suppression::Column::Channel.eq("phone"))
                .filter(suppression::Column::Address.eq(address.as_str()))
                .one(&state.db.conn)
                .await?;
            if exists.is_none() {
                suppression::ActiveModel {
                    id: sea_orm::NotSet,
                    tenant_id: Set(auth.tenant_id),
                    channel: Set("phone".into()),
                    address: Set(address.clone()),
                    reason: Set(b.reason.as_str().into()),
                    source: Set(consent::source::API.into()),
                    detail: Set(b.detail.clone()),
                    created_at: Set(Utc::now()),
                }
                .insert(&state.db.conn)
                .await?;
            }
            exists.is_none()
        }
    };
    let row = suppression::Entity::find()
        .filter(suppression::Column::TenantId.eq(auth.tenant_id))
        .filter(suppression::Column::Channel.eq(b.channel.as_str()))
        .filter(suppression::Column::Address.eq(address))
        .one(&state.db.conn)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("suppression vanished")))?;
    let v = SuppressionView::from(row);
    Ok(if added {
        HttpResponse::Created().json(v)
    } else {
        HttpResponse::Ok().json(v)
    })
}

/// Import a do-not-call (or other suppression) list from an upload, as a job.
#[utoipa::path(tag = "consent", request_body = SuppressionImportParams, responses((status = 202, body = crate::jobs::http::JobView)))]
#[post("/suppressions/imports")]
async fn import_suppressions(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    body: Json<SuppressionImportParams>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    check_supp_channel(&b.channel)?;
    if b.column > 1000 {
        return Err(ApiError::field("column", "must be at most 1000"));
    }
    import::get_upload(&state.db.conn, auth.tenant_id, b.upload_id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))?;
    import::check_text(&state.db.conn, b.upload_id).await?;
    let job = state
        .enqueue_job(
            auth.tenant_id,
            JobKind::SuppressionImport,
            serde_json::to_value(&b).expect("serialises"),
            Some(auth.actor.id()),
        )
        .await?;
    Ok(HttpResponse::Accepted().json(crate::jobs::http::JobView::from(job)))
}

/// Take an address off the suppression list.
#[utoipa::path(tag = "consent", responses((status = 204)))]
#[delete("/suppressions/{id}")]
async fn delete_suppression(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    meta: RequestMeta,
    id: crate::http::extract::Path<i64>,
) -> ApiResult<HttpResponse> {
    if !consent::remove_suppression(&state.db.conn, auth.tenant_id, *id).await? {
        return Err(ApiError::not_found("suppression"));
    }
    crate::iam::store::audit(
        &state.db.conn,
        crate::iam::store::AuditEntry {
            tenant_id: auth.tenant_id,
            actor_type: auth.actor.kind(),
            actor_id: Some(auth.actor.id()),
            action: "suppression.removed",
            target_type: Some("suppression"),
            target_id: None,
            ip: meta.ip,
            request_id: meta.request_id,
            details: json!({ "id": *id }),
        },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The tenant's rules for reaching people: which channels need an opt-in,
/// the calling and texting windows (in each contact's local time), and
/// whether the tenant's time zone stands in for an unknown one.
#[utoipa::path(tag = "consent", responses((status = 200, body = crate::contacts::domain::ContactPolicy)))]
#[get("/contact-policy")]
async fn get_contact_policy(
    state: web::Data<AppState>,
    auth: Auth<AnyRole>,
) -> ApiResult<web::Json<crate::contacts::domain::ContactPolicy>> {
    let t = tenant_row(&state, auth.tenant_id).await?;
    Ok(web::Json(consent::policy_of(&t)))
}

/// Replace the tenant's contact policy (admins). Every field has a default,
/// so `{}` restores them all.
#[utoipa::path(tag = "consent", request_body = crate::contacts::domain::ContactPolicy, responses((status = 200, body = crate::contacts::domain::ContactPolicy), (status = 422, body = crate::error::ErrorBody)))]
#[put("/contact-policy")]
async fn put_contact_policy(
    state: web::Data<AppState>,
    auth: Auth<crate::iam::AdminOnly>,
    meta: RequestMeta,
    body: Json<crate::contacts::domain::ContactPolicy>,
) -> ApiResult<web::Json<crate::contacts::domain::ContactPolicy>> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
    let policy = body.0;
    let mut v = Validator::new();
    for (path, w) in [
        ("voice_window", &policy.voice_window),
        ("sms_window", &policy.sms_window),
    ] {
        if w.start == w.end {
            v.add(
                path,
                "start and end must differ (the window would be empty)",
            );
        }
    }
    if policy.require_opt_in.len() > 3 {
        v.add("require_opt_in", "at most the three channels");
    }
    v.finish()?;
    let t = tenant_row(&state, auth.tenant_id).await?;
    let mut settings = match t.settings.clone() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    settings.insert(
        "contact_policy".into(),
        serde_json::to_value(&policy).expect("serialises"),
    );
    let txn = crate::db::begin_write(&state.db.conn).await?;
    let mut m = t.into_active_model();
    m.settings = Set(serde_json::Value::Object(settings));
    m.update(&txn).await?;
    crate::iam::store::audit(
        &txn,
        crate::iam::store::AuditEntry {
            tenant_id: auth.tenant_id,
            actor_type: auth.actor.kind(),
            actor_id: Some(auth.actor.id()),
            action: "contact_policy.changed",
            target_type: None,
            target_id: None,
            ip: meta.ip,
            request_id: meta.request_id,
            details: serde_json::to_value(&policy).expect("serialises"),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(web::Json(policy))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundSms {
    /// The sender's number, any format.
    pub from: String,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundSmsResult {
    pub action: KeywordAction,
    pub contacts: Vec<ContactId>,
}

/// Report an inbound SMS (for SMS providers): STOP and its synonyms opt the
/// sender out of SMS, START opts them back in; other texts change nothing.
/// Audience managers (whose integrations send texts) may report; agents not.
#[utoipa::path(tag = "consent", request_body = InboundSms, responses((status = 200, body = InboundSmsResult)))]
#[post("/consent/inbound-sms")]
async fn inbound_sms(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    body: Json<InboundSms>,
) -> ApiResult<web::Json<InboundSmsResult>> {
    let b = body.0;
    let mut v = Validator::new();
    v.length("text", &b.text, 0, 1600);
    v.finish()?;
    let tenant = tenant_row(&state, auth.tenant_id).await?;
    let from = parse_phone(&b.from, &tenant.default_region)
        .map_err(|e| ApiError::field("from", e.to_string()))?;
    // Every contact's opt-out, the suppression and the history: all or nothing.
    let txn = crate::db::begin_write(&state.db.conn).await?;
    let (action, contacts) =
        consent::inbound_sms(&txn, auth.tenant_id, &from.e164, &b.text).await?;
    txn.commit().await?;
    Ok(web::Json(InboundSmsResult { action, contacts }))
}

// ---- uploads, imports, export ---------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    pub id: UploadId,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<upload::Model> for UploadView {
    fn from(u: upload::Model) -> Self {
        Self {
            id: u.id,
            filename: u.filename,
            content_type: u.content_type,
            size_bytes: u.size_bytes,
            sha256: u.sha256,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name, for people.
    pub filename: Option<String>,
}

/// Upload a file (the raw body, e.g. a CSV) to import later. It is stored in
/// chunks as it arrives, never held whole in memory.
#[utoipa::path(tag = "imports", params(UploadQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes (e.g. CSV)"), responses((status = 201, body = UploadView), (status = 413, body = crate::error::ErrorBody)))]
#[post("/uploads")]
async fn create_upload(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    req: HttpRequest,
    q: crate::http::extract::Query<UploadQuery>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let filename = q.filename.clone().unwrap_or_else(|| "upload.csv".into());
    let mut v = Validator::new();
    v.length("filename", &filename, 1, 255);
    if filename
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        v.add("filename", "must be a plain file name");
    }
    v.finish()?;
    let max = state.settings.contacts.max_upload_bytes;
    crate::http::extract::check_declared_length(&req, max, || {
        crate::http::extract::payload_too_large(
            format!("the upload is larger than {max} bytes"),
            max,
        )
    })?;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .chars()
        .take(100)
        .collect();
    let up = import::store_upload(
        &state.db.conn,
        auth.tenant_id,
        filename,
        content_type,
        auth.user_id(),
        max,
        body,
    )
    .await
    .map_err(|e| match e {
        import::UploadError::TooLarge(max) => {
            crate::http::extract::payload_too_large(e.to_string(), max)
        }
        import::UploadError::Empty => ApiError::field("body", "the upload is empty"),
        import::UploadError::Read(m) => ApiError::bad_request(m),
        import::UploadError::Db(d) => d.into(),
    })?;
    Ok(HttpResponse::Created().json(UploadView::from(up)))
}

/// One upload.
#[utoipa::path(tag = "imports", responses((status = 200, body = UploadView)))]
#[get("/uploads/{id}")]
async fn get_upload(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<UploadId>,
) -> ApiResult<web::Json<UploadView>> {
    let u = import::get_upload(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))?;
    Ok(web::Json(u.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadPreview {
    pub headers: Vec<String>,
    /// The first rows, as text.
    pub rows: Vec<Vec<String>>,
    /// Contact field to column, guessed from the headers.
    pub suggested_mapping: BTreeMap<String, String>,
    /// Fields a column can map to.
    pub fields: Vec<String>,
    /// The encoding to import with: `latin1` when the first rows are not
    /// valid UTF-8 (they are shown decoded as Latin-1).
    pub encoding: import::Encoding,
}

/// The header, first rows and a suggested mapping of an uploaded CSV.
#[utoipa::path(tag = "imports", responses((status = 200, body = UploadPreview), (status = 422, body = crate::error::ErrorBody)))]
#[get("/uploads/{id}/preview")]
async fn preview_upload(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<UploadId>,
) -> ApiResult<web::Json<UploadPreview>> {
    let u = import::get_upload(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))?;
    let (mut rows, encoding) = import::preview(&state.db.conn, u.id, 11).await?;
    let headers = rows.remove(0);
    let kinds = store::attribute_kinds(&state.db.conn, auth.tenant_id).await?;
    let mut fields: Vec<String> = import::FIELDS.iter().map(|s| s.to_string()).collect();
    let mut attrs: Vec<&String> = kinds.keys().collect();
    attrs.sort();
    fields.extend(attrs.into_iter().map(|k| format!("attributes.{k}")));
    fields.extend(["consent.voice", "consent.sms", "consent.email"].map(String::from));
    Ok(web::Json(UploadPreview {
        suggested_mapping: import::suggest_mapping(&headers, &kinds),
        headers,
        rows,
        fields,
        encoding,
    }))
}

/// Import contacts from an upload, as a job (202 with the job; follow its
/// progress at `GET /jobs/{id}`, its failed rows at `/contacts/imports/{id}/errors`).
#[utoipa::path(tag = "imports", request_body = ImportParams, responses((status = 202, body = crate::jobs::http::JobView)))]
#[post("/contacts/imports")]
async fn start_import(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    body: Json<ImportParams>,
) -> ApiResult<HttpResponse> {
    let b = body.0;
    let mut v = Validator::new();
    if b.tag_separator.is_empty() || b.tag_separator.chars().count() > 3 {
        v.add("tag_separator", "must be 1-3 characters");
    }
    if b.dedupe_by.is_empty() || b.dedupe_by.len() > 3 {
        v.add("dedupe_by", "give 1-3 of external_id, phone, email");
    }
    if b.mapping.len() > 100 {
        v.add("mapping", "at most 100 columns");
    }
    for (k, col) in &b.mapping {
        if k.len() > 100 || col.chars().count() > 200 {
            v.add(
                "mapping",
                "field names and columns are at most 100 and 200 characters",
            );
        }
    }
    v.finish()?;
    import::get_upload(&state.db.conn, auth.tenant_id, b.upload_id)
        .await?
        .ok_or_else(|| ApiError::not_found("upload"))?;
    if let Some(l) = b.list_id {
        lists::get(&state.db.conn, auth.tenant_id, l)
            .await?
            .ok_or_else(|| ApiError::not_found("list"))?;
    }
    // Check the file and the mapping (given or suggested) as the job will,
    // so that mistakes show at once (422, with `upload`, `mapping` or
    // `mapping.<field>` as the path) and start no job.
    import::prepare(&state.db.conn, auth.tenant_id, &b).await?;
    let job = state
        .enqueue_job(
            auth.tenant_id,
            JobKind::ContactImport,
            serde_json::to_value(&b).expect("serialises"),
            Some(auth.actor.id()),
        )
        .await?;
    Ok(HttpResponse::Accepted().json(crate::jobs::http::JobView::from(job)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportErrorView {
    /// The row's number among the data rows: 1 is the first row after the
    /// header (of a contact import, or of a do-not-call list with
    /// `has_header`); blank lines are not counted.
    pub row_number: i64,
    /// Every problem of the row, e.g. `phone: "12345" is not a phone number`.
    pub errors: Vec<String>,
    /// The row as it was in the file, as one CSV line (shortened if long).
    pub raw: String,
}

impl From<import_error::Model> for ImportErrorView {
    fn from(e: import_error::Model) -> Self {
        Self {
            row_number: e.row_number,
            errors: serde_json::from_value(e.errors).unwrap_or_default(),
            raw: e.raw,
        }
    }
}

async fn import_job(
    state: &AppState,
    p: &Principal,
    id: JobId,
) -> ApiResult<crate::jobs::job::Model> {
    let j = crate::jobs::get(&state.db.conn, p.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    if !(j.kind == "contact_import" || j.kind == "suppression_import") {
        return Err(ApiError::not_found("import"));
    }
    Ok(j)
}

/// The failed rows of an import, in row order.
#[utoipa::path(tag = "imports", params(PageParams), responses((status = 200, body = Page<ImportErrorView>)))]
#[get("/contacts/imports/{id}/errors")]
async fn import_errors(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<JobId>,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<ImportErrorView>>> {
    import_job(&state, &auth, *id).await?;
    let limit = page.limit()?;
    let rows = import::errors_page(
        &state.db.conn,
        auth.tenant_id,
        *id,
        page.cursor::<i64>()?.unwrap_or(0),
        limit + 1,
    )
    .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |r| r.row_number,
        Into::into,
    )))
}

/// A spreadsheet cell that cannot start a formula (OWASP, CSV injection):
/// a cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets a
/// leading apostrophe, unless it is only a number (`-5`, `+12.5`) or a list
/// of E.164 phone numbers (`+12015550123;+442079460958`): made of digits,
/// signs, dots and `;` alone, a cell can call no function and reference no
/// cell, and phones stay as they are. The import reads the apostrophe back
/// off.
pub fn neutralize(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `-5`, `+12.5`, `+12015550123;+442079460958`: a signed number, or numbers
/// separated by `;`.
fn is_plain_number(cell: &str) -> bool {
    cell.split(';').all(|part| {
        let digits = part.strip_prefix(['+', '-']).unwrap_or(part);
        let mut halves = digits.splitn(2, '.');
        let int = halves.next().unwrap_or("");
        let frac = halves.next();
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// An error in the middle of a streamed response: logged, and the response
/// is aborted.
fn stream_error(e: sea_orm::DbErr) -> actix_web::Error {
    tracing::error!(error = %e, "a streamed CSV response failed part-way");
    actix_web::error::ErrorInternalServerError("the export failed part-way")
}

fn csv_line(fields: &[String]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let cells: Vec<std::borrow::Cow<'_, str>> = fields.iter().map(|f| neutralize(f)).collect();
    w.write_record(cells.iter().map(|c| c.as_ref()))
        .expect("writing to memory");
    w.into_inner().expect("flushing memory")
}

/// The failed rows as CSV: row number, what was wrong, the original row.
#[utoipa::path(tag = "imports", responses((status = 200, content_type = "text/csv", description = "row,errors,original")))]
#[get("/contacts/imports/{id}/errors.csv")]
async fn import_errors_csv(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    id: crate::http::extract::Path<JobId>,
) -> ApiResult<HttpResponse> {
    import_job(&state, &auth, *id).await?;
    let (db, tenant, job) = (state.db.conn.clone(), auth.tenant_id, *id);
    let header = web::Bytes::from(csv_line(&[
        "row".into(),
        "errors".into(),
        "original".into(),
    ]));
    let body = futures_util::stream::once(async move { Ok::<_, actix_web::Error>(header) }).chain(
        futures_util::stream::unfold(Some(0i64), move |after| {
            let db = db.clone();
            async move {
                let after = after?;
                let rows = match import::errors_page(&db, tenant, job, after, 1000).await {
                    Ok(rows) => rows,
                    // Cut the response short (no clean end of the chunked
                    // body): a truncated file must not look complete.
                    Err(e) => return Some((Err(stream_error(e)), None)),
                };
                let last = rows.last().map(|r| r.row_number)?;
                let mut out = Vec::new();
                for r in rows {
                    let errs: Vec<String> = serde_json::from_value(r.errors).unwrap_or_default();
                    out.extend(csv_line(&[
                        r.row_number.to_string(),
                        errs.join("; "),
                        r.raw,
                    ]));
                }
                Some((Ok::<_, actix_web::Error>(web::Bytes::from(out)), Some(last)))
            }
        }),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"import-{job}-errors.csv\""),
        ))
        .streaming(body))
}

/// Export contacts (all, or a search, list or segment) as CSV, streamed.
/// Cells that a spreadsheet would run as formulas are neutralised.
#[utoipa::path(tag = "contacts", params(ContactFilter), responses((status = 200, content_type = "text/csv", description = "One row per contact")))]
#[get("/contacts/export.csv")]
async fn export_contacts(
    state: web::Data<AppState>,
    auth: Auth<Audience>,
    q: crate::http::extract::Query<ContactFilter>,
) -> ApiResult<HttpResponse> {
    let (search, region) = search_of(&state, auth.tenant_id, &q).await?;
    let kinds = store::attribute_kinds(&state.db.conn, auth.tenant_id).await?;
    let mut attr_keys: Vec<String> = kinds.into_keys().collect();
    attr_keys.sort();
    let mut header: Vec<String> = [
        "id",
        "external_id",
        "first_name",
        "last_name",
        "phones",
        "emails",
        "tags",
        "timezone",
        "language",
        "consent_voice",
        "consent_sms",
        "consent_email",
        "created_at",
    ]
    .map(String::from)
    .to_vec();
    header.extend(attr_keys.iter().map(|k| format!("attributes.{k}")));
    let first = web::Bytes::from(csv_line(&header));
    let (db, tenant) = (state.db.conn.clone(), auth.tenant_id);
    let body = futures_util::stream::once(async move { Ok::<_, actix_web::Error>(first) }).chain(
        futures_util::stream::unfold(Some(None::<ContactId>), move |after| {
            let (db, search, region, attr_keys) = (
                db.clone(),
                search.clone(),
                region.clone(),
                attr_keys.clone(),
            );
            async move {
                let after = after?;
                // A failure cuts the response short (no clean end of the
                // chunked body): a truncated export must not look complete.
                let rows = match store::search(&db, tenant, &search, &region, after, 1000).await {
                    Ok(rows) => rows,
                    Err(e) => return Some((Err(stream_error(e)), None)),
                };
                let last = rows.last().map(|r| r.id)?;
                let full = match store::load_full(&db, tenant, rows).await {
                    Ok(full) => full,
                    Err(e) => return Some((Err(stream_error(e)), None)),
                };
                let mut out = Vec::new();
                for f in full {
                    let consent = |ch: Channel| {
                        store::consent_of(&f, ch)
                            .map(|(s, _)| s.as_str().to_owned())
                            .unwrap_or_default()
                    };
                    let mut cells = vec![
                        f.contact.id.to_string(),
                        f.contact.external_id.clone().unwrap_or_default(),
                        f.contact.first_name.clone(),
                        f.contact.last_name.clone(),
                        f.phones
                            .iter()
                            .map(|p| p.e164.as_str())
                            .collect::<Vec<_>>()
                            .join(";"),
                        f.emails
                            .iter()
                            .map(|e| e.email.as_str())
                            .collect::<Vec<_>>()
                            .join(";"),
                        f.tags.join(";"),
                        f.contact.timezone.clone().unwrap_or_default(),
                        f.contact.language.clone().unwrap_or_default(),
                        consent(Channel::Voice),
                        consent(Channel::Sms),
                        consent(Channel::Email),
                        f.contact.created_at.to_rfc3339(),
                    ];
                    for k in &attr_keys {
                        cells.push(f.attributes.get(k).map(|v| v.to_cell()).unwrap_or_default());
                    }
                    out.extend(csv_line(&cells));
                }
                Some((
                    Ok::<_, actix_web::Error>(web::Bytes::from(out)),
                    Some(Some(last)),
                ))
            }
        }),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"contacts.csv\"",
        ))
        .streaming(body))
}

// ---- the unsubscribe page (public) -------------------------------------------------

const PAGE_STYLE: &str = "/styles.css";

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{PAGE_STYLE}\"></head>\
         <body><main class=\"unsubscribe\"><h1>{title}</h1>{body}</main></body></html>"
    ))
}

/// `GET /u/{token}` asks for confirmation (mail scanners follow links; a
/// bare GET must not unsubscribe anyone); `POST` unsubscribes (RFC 8058
/// one-click sends `List-Unsubscribe=One-Click` in a POST too).
pub fn configure_public(cfg: &mut web::ServiceConfig) {
    cfg.route("/u/{token}", web::get().to(unsubscribe_page))
        .route("/u/{token}", web::post().to(unsubscribe_do));
}

async fn unsubscribe_page(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    match consent::open_unsubscribe_token(&state.sealer, &token) {
        Some((_, _, ch)) => page(
            "Unsubscribe",
            &format!(
                "<p>Stop receiving {} from us?</p><form method=\"post\"><button type=\"submit\" class=\"btn primary\">Unsubscribe</button></form>",
                if ch == Channel::Email { "emails" } else if ch == Channel::Sms { "text messages" } else { "calls" }
            ),
        ),
        None => HttpResponse::NotFound().content_type("text/html; charset=utf-8").body(
            "<!doctype html><title>Link not valid</title><p>This unsubscribe link is not valid.</p>",
        ),
    }
}

async fn unsubscribe_do(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    let Some((t, c, ch)) = consent::open_unsubscribe_token(&state.sealer, &token) else {
        return HttpResponse::NotFound().content_type("text/html; charset=utf-8").body(
            "<!doctype html><title>Link not valid</title><p>This unsubscribe link is not valid.</p>",
        );
    };
    let done = async {
        let txn = crate::db::begin_write(&state.db.conn).await?;
        consent::unsubscribe(&txn, t, c, ch).await?;
        txn.commit().await?;
        Ok::<(), ContactError>(())
    };
    match done.await {
        Ok(()) | Err(ContactError::NotFound) => page(
            "You are unsubscribed",
            "<p>You will not hear from us on this channel again.</p>",
        ),
        Err(e) => {
            let _ = ApiError::from(e);
            HttpResponse::ServiceUnavailable().body("please try again later")
        }
    }
}

impl From<ListError> for ApiError {
    fn from(e: ListError) -> Self {
        crate::error::from_list_error(e)
    }
}
