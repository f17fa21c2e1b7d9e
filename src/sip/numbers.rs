//! The numbers calls come in on (`sip_numbers`): one tenant each, unique
//! across the service, with an entry point: a queue, a flow, or a trunk to forward to.

use sea_orm::entity::prelude::*;

use crate::ids::TenantId;

pub mod number {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sip_numbers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: TenantId,
        /// E.164 with the leading `+`.
        pub number: String,
        pub queue_id: Option<crate::ids::QueueId>,
        pub flow: Option<String>,
        pub created_at: DateTimeUtc,
        /// Calls go out through this trunk of the tenant (B2BUA).
        pub forward_trunk_id: Option<Uuid>,
        /// E.164 to forward to; none: the number dialed.
        pub forward_to: Option<String>,
        /// A prompt (a WAV file in `<data.dir>/prompts/<tenant>/`, by
        /// name) played to the caller once answered.
        pub greeting: Option<String>,
    }
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
    impl ActiveModelBehavior for ActiveModel {}
}

/// The dialed user part of a Request-URI (or a caller's) as E.164: visual
/// separators and a `tel`-style `;phone-context` are dropped; numbers
/// without `+` are read in `region` if given, else as international
/// digits (trunks often send the country code without `+`).
pub fn normalise_dialed(user: &str, region: Option<&str>) -> Option<String> {
    let user = user.split(';').next().unwrap_or("").trim();
    if user.is_empty() || user.len() > 40 {
        return None;
    }
    let cleaned: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect();
    let plus = cleaned.strip_prefix('+');
    let digits = plus.unwrap_or(&cleaned);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if plus.is_some() {
        return crate::contacts::domain::parse_phone(&cleaned, "ZZ")
            .ok()
            .map(|p| p.e164);
    }
    if let Some(r) = region
        && let Ok(p) = crate::contacts::domain::parse_phone(digits, r)
    {
        return Some(p.e164);
    }
    // International digits without '+', or '00' in front.
    let intl = digits.strip_prefix("00").unwrap_or(digits);
    crate::contacts::domain::parse_phone(&format!("+{intl}"), "ZZ")
        .ok()
        .map(|p| p.e164)
}

/// The number row for an E.164 number, whatever its tenant.
pub async fn find_by_number(
    db: &impl ConnectionTrait,
    e164: &str,
) -> Result<Option<number::Model>, DbErr> {
    number::Entity::find()
        .filter(number::Column::Number.eq(e164))
        .one(db)
        .await
}

/// Whether `name` may name a prompt file (no path tricks).
pub fn prompt_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.contains("..")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Where a tenant's prompt named `name` is stored.
pub fn prompt_path(
    recordings: &std::path::Path,
    tenant: TenantId,
    name: &str,
) -> Option<std::path::PathBuf> {
    let data = recordings.parent()?;
    prompt_name_ok(name).then(|| {
        data.join("prompts")
            .join(tenant.to_string())
            .join(format!("{name}.wav"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialed_numbers_normalise() {
        assert_eq!(
            normalise_dialed("+442071838750", None).as_deref(),
            Some("+442071838750")
        );
        assert_eq!(
            normalise_dialed("442071838750", None).as_deref(),
            Some("+442071838750")
        );
        assert_eq!(
            normalise_dialed("00442071838750", None).as_deref(),
            Some("+442071838750")
        );
        assert_eq!(
            normalise_dialed("02071838750", Some("GB")).as_deref(),
            Some("+442071838750")
        );
        assert_eq!(
            normalise_dialed("+44-20-7183-8750;phone-context=x", None).as_deref(),
            Some("+442071838750")
        );
        assert_eq!(normalise_dialed("service", None), None);
        assert_eq!(normalise_dialed("", None), None);
        assert_eq!(normalise_dialed("+", None), None);
        assert_eq!(normalise_dialed(&"9".repeat(100), None), None);
    }
}
