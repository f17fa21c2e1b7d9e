//! Consent and suppression, and the one question everybody asks: may we
//! contact this person on this channel now, and if not, why?

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::domain::{
    Channel, ConsentStatus, ContactPolicy, Decision, Facts, SuppressionReason, decide,
};
use super::entity::{consent, consent_event, email, phone, suppression};
use super::store::{self, ContactError};
use crate::ids::{ContactId, TenantId};

/// Where a consent change came from.
pub mod source {
    pub const API: &str = "api";
    pub const AGENT: &str = "agent";
    pub const IMPORT: &str = "import";
    pub const SMS_KEYWORD: &str = "sms_keyword";
    pub const UNSUBSCRIBE_LINK: &str = "unsubscribe_link";
    pub const BOUNCE: &str = "bounce";
    pub const COMPLAINT: &str = "complaint";
}

/// Records a consent change for one contact and channel, keeping history.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    contact_id: ContactId,
    channel: Channel,
    status: ConsentStatus,
    source: &str,
    detail: Option<String>,
    actor: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), ContactError> {
    store::find(db, tenant_id, contact_id)
        .await?
        .ok_or(ContactError::NotFound)?;
    consent::Entity::insert(consent::ActiveModel {
        contact_id: Set(contact_id),
        channel: Set(channel.as_str().into()),
        tenant_id: Set(tenant_id),
        status: Set(status.as_str().into()),
        source: Set(source.to_owned()),
        detail: Set(detail.clone()),
        recorded_at: Set(at),
    })
    .on_conflict(
        OnConflict::columns([consent::Column::ContactId, consent::Column::Channel])
            .update_columns([
                consent::Column::Status,
                consent::Column::Source,
                consent::Column::Detail,
                consent::Column::RecordedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    history(
        db,
        tenant_id,
        Some(contact_id),
        channel,
        status.as_str(),
        source,
        None,
        detail,
        actor,
        at,
    )
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn history(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    contact_id: Option<ContactId>,
    channel: Channel,
    status: &str,
    source: &str,
    address: Option<String>,
    detail: Option<String>,
    actor: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    consent_event::ActiveModel {
        id: sea_orm::NotSet,
        tenant_id: Set(tenant_id),
        contact_id: Set(contact_id),
        channel: Set(channel.as_str().into()),
        status: Set(status.to_owned()),
        source: Set(source.to_owned()),
        address: Set(address),
        detail: Set(detail),
        actor: Set(actor),
        recorded_at: Set(at),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn history_of(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    contact_id: ContactId,
    limit: u64,
) -> Result<Vec<consent_event::Model>, DbErr> {
    consent_event::Entity::find()
        .filter(consent_event::Column::TenantId.eq(tenant_id))
        .filter(consent_event::Column::ContactId.eq(contact_id))
        .order_by_desc(consent_event::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Adds an address to the suppression list (idempotent: the first reason stays).
pub async fn suppress(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    channel: Channel,
    address: &str,
    reason: SuppressionReason,
    source: &str,
    detail: Option<String>,
) -> Result<bool, DbErr> {
    let r = suppression::Entity::insert(suppression::ActiveModel {
        id: sea_orm::NotSet,
        tenant_id: Set(tenant_id),
        channel: Set(channel.as_str().into()),
        address: Set(address.to_owned()),
        reason: Set(reason.as_str().into()),
        source: Set(source.to_owned()),
        detail: Set(detail),
        created_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([
            suppression::Column::TenantId,
            suppression::Column::Channel,
            suppression::Column::Address,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(r > 0)
}

/// Phone suppressions cover both phone channels: a number on the
/// do-not-call list gets neither calls nor texts.
fn suppression_channels(channel: Channel) -> Vec<&'static str> {
    match channel {
        Channel::Voice | Channel::Sms => vec![channel.as_str(), "phone"],
        Channel::Email => vec!["email"],
    }
}

pub async fn suppression_of(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    channel: Channel,
    address: &str,
) -> Result<Option<SuppressionReason>, DbErr> {
    Ok(suppression::Entity::find()
        .filter(suppression::Column::TenantId.eq(tenant_id))
        .filter(suppression::Column::Channel.is_in(suppression_channels(channel)))
        .filter(suppression::Column::Address.eq(address))
        .one(db)
        .await?
        .and_then(|s| SuppressionReason::parse(&s.reason)))
}

pub async fn remove_suppression(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    id: i64,
) -> Result<bool, DbErr> {
    Ok(suppression::Entity::delete_many()
        .filter(suppression::Column::TenantId.eq(tenant_id))
        .filter(suppression::Column::Id.eq(id))
        .exec(db)
        .await?
        .rows_affected
        > 0)
}

/// The tenant's contact policy, kept in its settings (defaults if unset).
pub fn policy_of(t: &crate::iam::entity::tenant::Model) -> ContactPolicy {
    t.settings
        .get("contact_policy")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// May we contact this person on this channel at `now`?
pub async fn can_contact(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    contact_id: ContactId,
    channel: Channel,
    now: DateTime<Utc>,
) -> Result<Decision, ContactError> {
    let tenant = crate::iam::store::tenant(db, tenant_id)
        .await
        .map_err(|e| match e {
            crate::iam::store::IamError::Db(d) => ContactError::Db(d),
            _ => ContactError::NotFound,
        })?;
    let full = store::get_full(db, tenant_id, contact_id).await?;
    let address = store::address_for(&full, channel);
    let suppression = match &address {
        Some(a) => suppression_of(db, tenant_id, channel, a).await?,
        None => None,
    };
    let facts = Facts {
        address,
        timezone: full
            .contact
            .timezone
            .as_deref()
            .and_then(|z| z.parse::<Tz>().ok()),
        tenant_timezone: tenant.timezone.parse::<Tz>().ok(),
        consent: store::consent_of(&full, channel).map(|(s, _)| s),
        suppression,
    };
    Ok(decide(&policy_of(&tenant), channel, &facts, now))
}

/// What an inbound text asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeywordAction {
    OptedOut,
    OptedIn,
    None,
}

/// The carrier-standard keywords, matched on the whole trimmed message.
pub fn keyword(text: &str) -> KeywordAction {
    match text
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_uppercase()
        .as_str()
    {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "OPTOUT" | "OPT OUT" => {
            KeywordAction::OptedOut
        }
        "START" | "UNSTOP" | "YES" | "SUBSCRIBE" | "OPTIN" | "OPT IN" => KeywordAction::OptedIn,
        _ => KeywordAction::None,
    }
}

/// Handles an inbound SMS from `from_e164`: STOP opts every contact with that
/// number out of SMS and suppresses the number for SMS; START opts back in
/// and lifts a STOP suppression. Returns the action and the contacts touched.
pub async fn inbound_sms(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    from_e164: &str,
    text: &str,
) -> Result<(KeywordAction, Vec<ContactId>), DbErr> {
    let action = keyword(text);
    if action == KeywordAction::None {
        return Ok((action, Vec::new()));
    }
    let contacts: Vec<ContactId> = phone::Entity::find()
        .filter(phone::Column::TenantId.eq(tenant_id))
        .filter(phone::Column::E164.eq(from_e164))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.contact_id)
        .collect();
    let now = Utc::now();
    let status = if action == KeywordAction::OptedOut {
        ConsentStatus::OptedOut
    } else {
        ConsentStatus::OptedIn
    };
    for c in &contacts {
        match record(
            db,
            tenant_id,
            *c,
            Channel::Sms,
            status,
            source::SMS_KEYWORD,
            Some(text.chars().take(160).collect()),
            None,
            now,
        )
        .await
        {
            Ok(()) | Err(ContactError::NotFound) => {}
            Err(ContactError::Db(e)) => return Err(e),
            Err(ContactError::ExternalIdTaken(_)) => {}
        }
    }
    match action {
        KeywordAction::OptedOut => {
            suppress(
                db,
                tenant_id,
                Channel::Sms,
                from_e164,
                SuppressionReason::Stop,
                source::SMS_KEYWORD,
                None,
            )
            .await?;
        }
        KeywordAction::OptedIn => {
            suppression::Entity::delete_many()
                .filter(suppression::Column::TenantId.eq(tenant_id))
                .filter(suppression::Column::Channel.eq("sms"))
                .filter(suppression::Column::Address.eq(from_e164))
                .filter(suppression::Column::Reason.eq(SuppressionReason::Stop.as_str()))
                .exec(db)
                .await?;
        }
        KeywordAction::None => {}
    }
    if contacts.is_empty() {
        history(
            db,
            tenant_id,
            None,
            Channel::Sms,
            status.as_str(),
            source::SMS_KEYWORD,
            Some(from_e164.into()),
            None,
            None,
            now,
        )
        .await?;
    }
    Ok((action, contacts))
}

/// Unsubscribe links: `/u/<token>`, where the token names the tenant, the
/// contact and the channel, sealed (encrypted and authenticated) under the
/// master key, so it cannot be forged or pointed at someone else.
pub fn unsubscribe_token(
    sealer: &crate::crypto::Sealer,
    tenant_id: TenantId,
    contact_id: ContactId,
    channel: Channel,
) -> String {
    sealer.seal(format!("u1|{tenant_id}|{contact_id}|{}", channel.as_str()).as_bytes())
}

pub fn open_unsubscribe_token(
    sealer: &crate::crypto::Sealer,
    token: &str,
) -> Option<(TenantId, ContactId, Channel)> {
    if token.len() > 512 {
        return None;
    }
    let raw = sealer.open(token).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let mut parts = s.split('|');
    if parts.next()? != "u1" {
        return None;
    }
    let t = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    let ch = Channel::parse(parts.next()?)?;
    Some((t, c, ch))
}

/// Follows an unsubscribe link: opts the contact out and suppresses their
/// address(es) for that channel.
pub async fn unsubscribe(
    db: &impl ConnectionTrait,
    tenant_id: TenantId,
    contact_id: ContactId,
    channel: Channel,
) -> Result<(), ContactError> {
    record(
        db,
        tenant_id,
        contact_id,
        channel,
        ConsentStatus::OptedOut,
        source::UNSUBSCRIBE_LINK,
        None,
        None,
        Utc::now(),
    )
    .await?;
    if channel == Channel::Email {
        for e in email::Entity::find()
            .filter(email::Column::TenantId.eq(tenant_id))
            .filter(email::Column::ContactId.eq(contact_id))
            .all(db)
            .await?
        {
            suppress(
                db,
                tenant_id,
                Channel::Email,
                &e.email,
                SuppressionReason::Unsubscribe,
                source::UNSUBSCRIBE_LINK,
                None,
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        for t in [
            "STOP",
            "stop",
            " Stop. ",
            "UNSUBSCRIBE",
            "cancel",
            "opt out",
        ] {
            assert_eq!(keyword(t), KeywordAction::OptedOut, "{t}");
        }
        for t in ["START", "unstop", "Yes"] {
            assert_eq!(keyword(t), KeywordAction::OptedIn, "{t}");
        }
        for t in [
            "please stop calling me",
            "stopping by later",
            "",
            "STOP!!!x",
        ] {
            assert_eq!(keyword(t), KeywordAction::None, "{t}");
        }
    }

    #[test]
    fn unsubscribe_tokens_cannot_be_forged() {
        let s = crate::crypto::Sealer::new(&[3u8; 32]);
        let (t, c) = (TenantId::new(), ContactId::new());
        let tok = unsubscribe_token(&s, t, c, Channel::Email);
        assert_eq!(
            open_unsubscribe_token(&s, &tok),
            Some((t, c, Channel::Email))
        );
        assert_eq!(
            open_unsubscribe_token(&crate::crypto::Sealer::new(&[4u8; 32]), &tok),
            None
        );
        assert_eq!(open_unsubscribe_token(&s, "garbage"), None);
        assert_eq!(open_unsubscribe_token(&s, &"A".repeat(600)), None);
    }
}
