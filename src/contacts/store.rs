//! Tenant-scoped persistence of contacts and their parts.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::domain::{AttrKind, AttrValue, Channel, ConsentStatus, Phone, zone_for};
use super::entity::{attr, attr_def, consent, contact, email, phone, tag};
use crate::iam::domain::Email;
use crate::ids::{ContactId, TenantId};

#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    #[error("contact not found")]
    NotFound,
    #[error("another contact already has external id {0:?}")]
    ExternalIdTaken(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn is_unique_violation(e: &DbErr) -> bool {
    let s = e.to_string().to_lowercase();
    s.contains("unique") || s.contains("duplicate key")
}

/// A validated contact, as created or fully replaced.
#[derive(Debug, Clone, Default)]
pub struct ContactInput {
    pub external_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub phones: Vec<(Phone, Option<String>)>,
    pub emails: Vec<Email>,
    /// An explicit time zone; otherwise derived from the phones where unambiguous.
    pub timezone: Option<Tz>,
    pub language: Option<String>,
    pub tags: Vec<String>,
    pub attributes: Vec<(String, AttrValue)>,
}

/// A partial change: `None` leaves a part as it is; lists replace the whole part.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    pub external_id: Option<Option<String>>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phones: Option<Vec<(Phone, Option<String>)>>,
    pub emails: Option<Vec<Email>>,
    /// `Some(None)` clears an explicit zone (the phones may imply one again).
    pub timezone: Option<Option<Tz>>,
    pub language: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    /// Set these attributes (others are kept).
    pub attributes: Option<Vec<(String, AttrValue)>>,
    /// Remove these attributes.
    pub remove_attributes: Vec<String>,
}

/// A contact with all its parts.
#[derive(Debug, Clone)]
pub struct ContactFull {
    pub contact: contact::Model,
    pub phones: Vec<phone::Model>,
    pub emails: Vec<email::Model>,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, AttrValue>,
    pub consents: Vec<consent::Model>,
}

pub fn search_name(first: &str, last: &str) -> String {
    format!("{} {}", first.trim(), last.trim())
        .trim()
        .to_lowercase()
}

/// The time zone and where it came from.
pub fn resolve_zone(
    explicit: Option<Tz>,
    phones: &[(Phone, Option<String>)],
) -> (Option<String>, Option<String>) {
    if let Some(tz) = explicit {
        return (Some(tz.name().to_owned()), Some("explicit".into()));
    }
    // Every phone must imply the same zone: a phone whose region has several
    // zones (a US number, say) makes the person's zone unknown, even if
    // another phone names one.
    let mut zones = phones.iter().map(|(p, _)| zone_for(p));
    match zones.next() {
        Some(Some(z)) if zones.all(|o| o == Some(z)) => (Some(z.to_owned()), Some("phone".into())),
        _ => (None, None),
    }
}

pub fn attr_row(
    tenant_id: TenantId,
    contact_id: ContactId,
    key: &str,
    v: &AttrValue,
) -> attr::ActiveModel {
    let (mut t, mut n, mut b, mut d) = (None, None, None, None);
    match v {
        AttrValue::Text(s) => t = Some(s.clone()),
        AttrValue::Num(x) => n = Some(*x),
        AttrValue::Bool(x) => b = Some(*x),
        AttrValue::Date(x) => d = Some(*x),
    }
    attr::ActiveModel {
        contact_id: Set(contact_id),
        key: Set(key.to_owned()),
        tenant_id: Set(tenant_id),
        text_value: Set(t),
        num_value: Set(n),
        bool_value: Set(b),
        date_value: Set(d),
    }
}

pub fn attr_value(a: &attr::Model) -> Option<AttrValue> {
    if let Some(t) = &a.text_value {
        return Some(AttrValue::Text(t.clone()));
    }
    if let Some(n) = a.num_value {
        return Some(AttrValue::Num(n));
    }
    if let Some(b) = a.bool_value {
        return Some(AttrValue::Bool(b));
    }
    a.date_value.map(AttrValue::Date)
}

/// The tenant's attribute definitions, by key.
pub async fn attribute_kinds(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
) -> Result<HashMap<String, AttrKind>, DbErr> {
    Ok(attr_def::Entity::find()
        .filter(attr_def::Column::TenantId.eq(tenant_id))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|d| AttrKind::parse(&d.kind).map(|k| (d.key, k)))
        .collect())
}

fn phone_rows(
    t: TenantId,
    c: ContactId,
    phones: &[(Phone, Option<String>)],
) -> Vec<phone::ActiveModel> {
    phones
        .iter()
        .enumerate()
        .map(|(i, (p, label))| phone::ActiveModel {
            id: sea_orm::NotSet,
            tenant_id: Set(t),
            contact_id: Set(c),
            e164: Set(p.e164.clone()),
            label: Set(label.clone()),
            position: Set(i as i32),
        })
        .collect()
}

fn email_rows(t: TenantId, c: ContactId, emails: &[Email]) -> Vec<email::ActiveModel> {
    emails
        .iter()
        .enumerate()
        .map(|(i, e)| email::ActiveModel {
            id: sea_orm::NotSet,
            tenant_id: Set(t),
            contact_id: Set(c),
            email: Set(e.as_str().to_owned()),
            position: Set(i as i32),
        })
        .collect()
}

fn tag_rows(t: TenantId, c: ContactId, tags: &[String]) -> Vec<tag::ActiveModel> {
    let mut seen = std::collections::BTreeSet::new();
    tags.iter()
        .filter(|x| seen.insert(x.to_lowercase()))
        .map(|x| tag::ActiveModel {
            contact_id: Set(c),
            tag: Set(x.clone()),
            tenant_id: Set(t),
        })
        .collect()
}

pub async fn create(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    input: ContactInput,
) -> Result<ContactId, ContactError> {
    let id = ContactId::new();
    let now = Utc::now();
    let (tz, source) = resolve_zone(input.timezone, &input.phones);
    let res = contact::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        external_id: Set(input.external_id.clone()),
        search_name: Set(search_name(&input.first_name, &input.last_name)),
        first_name: Set(input.first_name),
        last_name: Set(input.last_name),
        timezone: Set(tz),
        timezone_source: Set(source),
        language: Set(input.language),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await;
    if let Err(e) = res {
        return Err(if is_unique_violation(&e) {
            ContactError::ExternalIdTaken(input.external_id.unwrap_or_default())
        } else {
            e.into()
        });
    }
    insert_parts(
        db,
        tenant_id,
        id,
        &input.phones,
        &input.emails,
        &input.tags,
        &input.attributes,
    )
    .await?;
    Ok(id)
}

async fn insert_parts(
    db: &impl ConnectionTrait,
    t: TenantId,
    id: ContactId,
    phones: &[(Phone, Option<String>)],
    emails: &[Email],
    tags: &[String],
    attributes: &[(String, AttrValue)],
) -> Result<(), DbErr> {
    if !phones.is_empty() {
        phone::Entity::insert_many(phone_rows(t, id, phones))
            .exec_without_returning(db)
            .await?;
    }
    if !emails.is_empty() {
        email::Entity::insert_many(email_rows(t, id, emails))
            .exec_without_returning(db)
            .await?;
    }
    let tags = tag_rows(t, id, tags);
    if !tags.is_empty() {
        tag::Entity::insert_many(tags)
            .exec_without_returning(db)
            .await?;
    }
    for (k, v) in attributes {
        attr::Entity::delete_many()
            .filter(attr::Column::ContactId.eq(id))
            .filter(attr::Column::Key.eq(k.as_str()))
            .exec(db)
            .await?;
        attr_row(t, id, k, v).insert(db).await?;
    }
    Ok(())
}

pub async fn find(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: ContactId,
) -> Result<Option<contact::Model>, DbErr> {
    contact::Entity::find_by_id(id)
        .filter(contact::Column::TenantId.eq(tenant_id))
        .one(db)
        .await
}

pub async fn by_external_id(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    external_id: &str,
) -> Result<Option<contact::Model>, DbErr> {
    contact::Entity::find()
        .filter(contact::Column::TenantId.eq(tenant_id))
        .filter(contact::Column::ExternalId.eq(external_id))
        .one(db)
        .await
}

/// Applies a patch. Phones, emails and tags given replace the old ones.
pub async fn update(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: ContactId,
    patch: ContactPatch,
) -> Result<(), ContactError> {
    let current = find(db, tenant_id, id)
        .await?
        .ok_or(ContactError::NotFound)?;
    let mut m: contact::ActiveModel = current.clone().into();
    let first = patch
        .first_name
        .clone()
        .unwrap_or(current.first_name.clone());
    let last = patch.last_name.clone().unwrap_or(current.last_name.clone());
    m.first_name = Set(first.clone());
    m.last_name = Set(last.clone());
    m.search_name = Set(search_name(&first, &last));
    if let Some(x) = patch.external_id.clone() {
        m.external_id = Set(x);
    }
    if let Some(l) = patch.language.clone() {
        m.language = Set(l);
    }
    // The zone: an explicit one stays unless the patch clears or replaces
    // it; a derived one follows the phones.
    let explicit_now = match &patch.timezone {
        Some(z) => *z,
        None if current.timezone_source.as_deref() == Some("explicit") => current
            .timezone
            .as_deref()
            .and_then(|z| z.parse::<Tz>().ok()),
        None => None,
    };
    let phones_now: Vec<(Phone, Option<String>)> = match &patch.phones {
        Some(p) => p.clone(),
        None => phone::Entity::find()
            .filter(phone::Column::ContactId.eq(id))
            .order_by_asc(phone::Column::Position)
            .all(db)
            .await?
            .into_iter()
            .map(|p| {
                let parsed = super::domain::parse_phone(&p.e164, "US").unwrap_or(Phone {
                    e164: p.e164,
                    region: None,
                    geographic: false,
                });
                (parsed, p.label)
            })
            .collect(),
    };
    let (tz, source) = resolve_zone(explicit_now, &phones_now);
    m.timezone = Set(tz);
    m.timezone_source = Set(source);
    m.updated_at = Set(Utc::now());
    if let Err(e) = m.update(db).await {
        return Err(if is_unique_violation(&e) {
            ContactError::ExternalIdTaken(patch.external_id.flatten().unwrap_or_default())
        } else {
            e.into()
        });
    }
    if let Some(p) = &patch.phones {
        phone::Entity::delete_many()
            .filter(phone::Column::ContactId.eq(id))
            .exec(db)
            .await?;
        if !p.is_empty() {
            phone::Entity::insert_many(phone_rows(tenant_id, id, p))
                .exec_without_returning(db)
                .await?;
        }
    }
    if let Some(e) = &patch.emails {
        email::Entity::delete_many()
            .filter(email::Column::ContactId.eq(id))
            .exec(db)
            .await?;
        if !e.is_empty() {
            email::Entity::insert_many(email_rows(tenant_id, id, e))
                .exec_without_returning(db)
                .await?;
        }
    }
    if let Some(t) = &patch.tags {
        tag::Entity::delete_many()
            .filter(tag::Column::ContactId.eq(id))
            .exec(db)
            .await?;
        let rows = tag_rows(tenant_id, id, t);
        if !rows.is_empty() {
            tag::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await?;
        }
    }
    if !patch.remove_attributes.is_empty() {
        attr::Entity::delete_many()
            .filter(attr::Column::ContactId.eq(id))
            .filter(attr::Column::Key.is_in(patch.remove_attributes.clone()))
            .exec(db)
            .await?;
    }
    if let Some(a) = &patch.attributes {
        insert_parts(db, tenant_id, id, &[], &[], &[], a).await?;
    }
    Ok(())
}

pub async fn delete(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: ContactId,
) -> Result<(), ContactError> {
    let r = contact::Entity::delete_many()
        .filter(contact::Column::TenantId.eq(tenant_id))
        .filter(contact::Column::Id.eq(id))
        .exec(db)
        .await?;
    if r.rows_affected == 0 {
        Err(ContactError::NotFound)
    } else {
        Ok(())
    }
}

/// Loads the parts of several contacts at once (one query per part).
pub async fn load_full(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    contacts: Vec<contact::Model>,
) -> Result<Vec<ContactFull>, DbErr> {
    let ids: Vec<ContactId> = contacts.iter().map(|c| c.id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut phones: HashMap<ContactId, Vec<phone::Model>> = HashMap::new();
    for p in phone::Entity::find()
        .filter(phone::Column::TenantId.eq(tenant_id))
        .filter(phone::Column::ContactId.is_in(ids.clone()))
        .order_by_asc(phone::Column::Position)
        .all(db)
        .await?
    {
        phones.entry(p.contact_id).or_default().push(p);
    }
    let mut emails: HashMap<ContactId, Vec<email::Model>> = HashMap::new();
    for e in email::Entity::find()
        .filter(email::Column::TenantId.eq(tenant_id))
        .filter(email::Column::ContactId.is_in(ids.clone()))
        .order_by_asc(email::Column::Position)
        .all(db)
        .await?
    {
        emails.entry(e.contact_id).or_default().push(e);
    }
    let mut tags: HashMap<ContactId, Vec<String>> = HashMap::new();
    for t in tag::Entity::find()
        .filter(tag::Column::TenantId.eq(tenant_id))
        .filter(tag::Column::ContactId.is_in(ids.clone()))
        .order_by_asc(tag::Column::Tag)
        .all(db)
        .await?
    {
        tags.entry(t.contact_id).or_default().push(t.tag);
    }
    let mut attrs: HashMap<ContactId, BTreeMap<String, AttrValue>> = HashMap::new();
    for a in attr::Entity::find()
        .filter(attr::Column::TenantId.eq(tenant_id))
        .filter(attr::Column::ContactId.is_in(ids.clone()))
        .all(db)
        .await?
    {
        if let Some(v) = attr_value(&a) {
            attrs.entry(a.contact_id).or_default().insert(a.key, v);
        }
    }
    let mut consents: HashMap<ContactId, Vec<consent::Model>> = HashMap::new();
    for c in consent::Entity::find()
        .filter(consent::Column::TenantId.eq(tenant_id))
        .filter(consent::Column::ContactId.is_in(ids))
        .all(db)
        .await?
    {
        consents.entry(c.contact_id).or_default().push(c);
    }
    Ok(contacts
        .into_iter()
        .map(|c| {
            let id = c.id;
            ContactFull {
                contact: c,
                phones: phones.remove(&id).unwrap_or_default(),
                emails: emails.remove(&id).unwrap_or_default(),
                tags: tags.remove(&id).unwrap_or_default(),
                attributes: attrs.remove(&id).unwrap_or_default(),
                consents: consents.remove(&id).unwrap_or_default(),
            }
        })
        .collect())
}

pub async fn get_full(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: ContactId,
) -> Result<ContactFull, ContactError> {
    let c = find(db, tenant_id, id)
        .await?
        .ok_or(ContactError::NotFound)?;
    Ok(load_full(db, tenant_id, vec![c])
        .await?
        .pop()
        .expect("one contact"))
}

/// How contacts are looked up in a list.
#[derive(Debug, Default, Clone)]
pub struct Search {
    /// Matches a name, any phone (written any way), or any email.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub list_id: Option<crate::ids::ListId>,
    /// A compiled segment condition.
    pub segment: Option<SimpleExpr>,
}

/// The condition of a search (without tenant and cursor).
pub fn search_condition(tenant_id: TenantId, s: &Search, default_region: &str) -> Condition {
    let mut cond = Condition::all().add(contact::Column::TenantId.eq(tenant_id));
    if let Some(q) = s.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let mut any = Condition::any();
        let like = format!("%{}%", escape_like(&q.to_lowercase()));
        any = any.add(
            Expr::col((contact::Entity, contact::Column::SearchName))
                .like(sea_orm::sea_query::LikeExpr::new(like).escape('\\')),
        );
        if let Ok(p) = super::domain::parse_phone(q, default_region) {
            any = any.add(
                contact::Column::Id.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(phone::Column::ContactId)
                        .from(phone::Entity)
                        .and_where(phone::Column::TenantId.eq(tenant_id))
                        .and_where(phone::Column::E164.eq(p.e164))
                        .to_owned(),
                ),
            );
        }
        if q.contains('@') {
            any = any.add(
                contact::Column::Id.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(email::Column::ContactId)
                        .from(email::Entity)
                        .and_where(email::Column::TenantId.eq(tenant_id))
                        .and_where(email::Column::Email.eq(q.to_lowercase()))
                        .to_owned(),
                ),
            );
        }
        if q.len() <= 256 {
            any = any.add(contact::Column::ExternalId.eq(q));
        }
        cond = cond.add(any);
    }
    if let Some(t) = &s.tag {
        cond = cond.add(
            contact::Column::Id.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(tag::Column::ContactId)
                    .from(tag::Entity)
                    .and_where(tag::Column::TenantId.eq(tenant_id))
                    .and_where(tag::Column::Tag.eq(t.trim().to_lowercase()))
                    .to_owned(),
            ),
        );
    }
    if let Some(l) = s.list_id {
        use super::entity::member;
        cond = cond.add(
            contact::Column::Id.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(member::Column::ContactId)
                    .from(member::Entity)
                    .and_where(member::Column::TenantId.eq(tenant_id))
                    .and_where(member::Column::ListId.eq(l))
                    .to_owned(),
            ),
        );
    }
    if let Some(seg) = &s.segment {
        cond = cond.add(seg.clone());
    }
    cond
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `\` as the escape.
pub fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A page of contacts in creation order.
pub async fn search(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    s: &Search,
    default_region: &str,
    after: Option<ContactId>,
    limit: u64,
) -> Result<Vec<contact::Model>, DbErr> {
    let mut q = contact::Entity::find().filter(search_condition(tenant_id, s, default_region));
    if let Some(a) = after {
        q = q.filter(contact::Column::Id.gt(a));
    }
    q.order_by_asc(contact::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

pub async fn count(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    s: &Search,
    default_region: &str,
) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    contact::Entity::find()
        .filter(search_condition(tenant_id, s, default_region))
        .count(db)
        .await
}

/// The first address a channel would use: the first phone, or the first email.
pub fn address_for(full: &ContactFull, channel: Channel) -> Option<String> {
    if channel.uses_phone() {
        full.phones.first().map(|p| p.e164.clone())
    } else {
        full.emails.first().map(|e| e.email.clone())
    }
}

pub fn consent_of(
    full: &ContactFull,
    channel: Channel,
) -> Option<(ConsentStatus, &consent::Model)> {
    full.consents
        .iter()
        .find(|c| c.channel == channel.as_str())
        .and_then(|c| ConsentStatus::parse(&c.status).map(|s| (s, c)))
}

pub fn updated_at(full: &ContactFull) -> DateTime<Utc> {
    full.contact.updated_at
}
