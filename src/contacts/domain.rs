//! Contact rules without I/O: phone numbers, time zones, typed attributes,
//! and the one decision "may we contact this person on this channel now".

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The channels consent is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ConsentChannel)]
pub enum Channel {
    Voice,
    Sms,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Voice, Channel::Sms, Channel::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Sms => "sms",
            Channel::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Phone channels reach a number; email reaches an address.
    pub fn uses_phone(self) -> bool {
        matches!(self, Channel::Voice | Channel::Sms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    OptedIn,
    OptedOut,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::OptedIn => "opted_in",
            ConsentStatus::OptedOut => "opted_out",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "opted_in" => Some(Self::OptedIn),
            "opted_out" => Some(Self::OptedOut),
            _ => None,
        }
    }
}

/// Why an address is on the tenant's suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The tenant's do-not-call list.
    DoNotCall,
    /// An email bounced permanently.
    Bounce,
    /// The recipient marked an email as spam.
    Complaint,
    /// An unsubscribe link was followed.
    Unsubscribe,
    /// A STOP keyword arrived by SMS.
    Stop,
    /// Added by a person.
    Manual,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DoNotCall => "do_not_call",
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
            Self::Unsubscribe => "unsubscribe",
            Self::Stop => "stop",
            Self::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::DoNotCall,
            Self::Bounce,
            Self::Complaint,
            Self::Unsubscribe,
            Self::Stop,
            Self::Manual,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

// ---- phone numbers ----------------------------------------------------------

/// A valid phone number in E.164 form, with the region it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    pub e164: String,
    pub region: Option<String>,
    /// A fixed line (or, in North America, a number that may be either): its
    /// prefix says where it is. Mobiles can be anywhere in their country.
    pub geographic: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is not a phone number")]
    Unparseable,
    #[error("is not a valid phone number for its region")]
    Invalid,
    #[error("is too long")]
    TooLong,
}

/// Parses a phone number written any way people write them; numbers without
/// a country code are read in `default_region` (ISO 3166 alpha-2).
pub fn parse_phone(raw: &str, default_region: &str) -> Result<Phone, PhoneError> {
    let raw = raw.trim();
    if raw.len() > 40 {
        return Err(PhoneError::TooLong);
    }
    if raw.is_empty() || !raw.chars().any(|c| c.is_ascii_digit()) {
        return Err(PhoneError::Unparseable);
    }
    // Numbers in international form are read without a default region (the
    // phonenumber crate misreads some, e.g. Korean mobiles, when given one).
    let region = if raw.starts_with('+') {
        None
    } else {
        default_region.parse::<phonenumber::country::Id>().ok()
    };
    let n = phonenumber::parse(region, raw).map_err(|_| PhoneError::Unparseable)?;
    if !phonenumber::is_valid(&n) {
        return Err(PhoneError::Invalid);
    }
    let e164 = n.format().mode(phonenumber::Mode::E164).to_string();
    let region = n.country().id().map(|id| id.as_ref().to_owned());
    let geographic = matches!(
        n.number_type(&phonenumber::metadata::DATABASE),
        phonenumber::Type::FixedLine | phonenumber::Type::FixedLineOrMobile
    );
    Ok(Phone {
        e164,
        region,
        geographic,
    })
}

/// The time zone a phone number implies, where that is unambiguous (see
/// [`super::zones::zone_of_number`]).
pub fn zone_for(phone: &Phone) -> Option<&'static str> {
    let country = phone.region.as_deref();
    if phone.geographic {
        super::zones::zone_of_number(&phone.e164, country)
    } else {
        country.and_then(super::zones::zone_of)
    }
}

/// A language tag such as `en`, `es-MX` or `pt-BR` (BCP 47, simplified).
pub fn check_language(s: &str) -> Result<String, &'static str> {
    let ok = (2..=35).contains(&s.len())
        && s.split('-').enumerate().all(|(i, part)| {
            (if i == 0 {
                (2..=3).contains(&part.len())
            } else {
                (2..=8).contains(&part.len())
            }) && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be a language tag such as en, es-MX or pt-BR")
    }
}

// ---- typed attributes -------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttrKind {
    String,
    Number,
    Boolean,
    Date,
}

impl AttrKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrKind::String => "string",
            AttrKind::Number => "number",
            AttrKind::Boolean => "boolean",
            AttrKind::Date => "date",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::String, Self::Number, Self::Boolean, Self::Date]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Text(String),
    Num(f64),
    Bool(bool),
    Date(DateTime<Utc>),
}

impl AttrValue {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AttrValue::Text(s) => serde_json::json!(s),
            AttrValue::Num(n) => serde_json::json!(n),
            AttrValue::Bool(b) => serde_json::json!(b),
            AttrValue::Date(d) => serde_json::json!(d.to_rfc3339()),
        }
    }

    /// The value as a CSV cell.
    pub fn to_cell(&self) -> String {
        match self {
            AttrValue::Text(s) => s.clone(),
            AttrValue::Num(n) => n.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Date(d) => d.to_rfc3339(),
        }
    }
}

/// Parses a date as `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| Utc.from_utc_datetime(&dt))
}

/// Reads a value of `kind` from text (a CSV cell) or JSON.
pub fn attr_from_text(kind: AttrKind, s: &str) -> Result<AttrValue, String> {
    let t = s.trim();
    match kind {
        AttrKind::String => {
            if s.chars().count() > 1000 {
                Err("must be at most 1000 characters".into())
            } else {
                Ok(AttrValue::Text(s.to_owned()))
            }
        }
        AttrKind::Number => t
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(AttrValue::Num)
            .ok_or_else(|| format!("{t:?} is not a number")),
        AttrKind::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "y" => Ok(AttrValue::Bool(true)),
            "false" | "no" | "0" | "n" => Ok(AttrValue::Bool(false)),
            _ => Err(format!("{t:?} is not true or false")),
        },
        AttrKind::Date => parse_date(t)
            .map(AttrValue::Date)
            .ok_or_else(|| format!("{t:?} is not a date (YYYY-MM-DD)")),
    }
}

pub fn attr_from_json(kind: AttrKind, v: &serde_json::Value) -> Result<AttrValue, String> {
    match (kind, v) {
        (AttrKind::String, serde_json::Value::String(s)) => attr_from_text(kind, s),
        (AttrKind::Number, serde_json::Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(AttrValue::Num)
            .ok_or_else(|| "is not a finite number".into()),
        (AttrKind::Boolean, serde_json::Value::Bool(b)) => Ok(AttrValue::Bool(*b)),
        (AttrKind::Date, serde_json::Value::String(s)) => attr_from_text(kind, s),
        (k, _) => Err(format!("must be a {}", k.as_str())),
    }
}

/// An attribute key: 1-64 characters, lower-case letters, digits and `_`,
/// starting with a letter (they appear in segment expressions).
pub fn check_attr_key(k: &str) -> Result<(), &'static str> {
    let ok = (1..=64).contains(&k.len())
        && k.starts_with(|c: char| c.is_ascii_lowercase())
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err("keys are 1-64 characters: lower-case letters, digits and _, starting with a letter")
    }
}

/// A tag: trimmed, 1-64 characters, no control characters.
/// A tag, trimmed and in lower case: tags are case-insensitive (`VIP` and
/// `vip` are one tag, and `tags has "VIP"` finds both).
pub fn check_tag(t: &str) -> Result<String, &'static str> {
    let t = t.trim().to_lowercase();
    if (1..=64).contains(&t.chars().count()) && !t.chars().any(char::is_control) {
        Ok(t)
    } else {
        Err("tags are 1-64 characters without control characters")
    }
}

// ---- may we contact them? ---------------------------------------------------

/// A daily window in the contact's local time, e.g. 08:00 to 21:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Window {
    #[schema(value_type = String, example = "08:00")]
    pub start: NaiveTime,
    #[schema(value_type = String, example = "21:00")]
    pub end: NaiveTime,
}

/// The tenant's rules for reaching people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ContactPolicy {
    /// Channels that need an explicit opt-in (SMS marketing usually does).
    pub require_opt_in: Vec<Channel>,
    /// When calls may be placed, in the contact's local time.
    pub voice_window: Window,
    /// When text messages may be sent, in the contact's local time.
    pub sms_window: Window,
    /// Use the tenant's time zone when a contact's is unknown (otherwise
    /// phone channels are refused for them).
    pub fall_back_to_tenant_timezone: bool,
}

impl Default for ContactPolicy {
    fn default() -> Self {
        let w = Window {
            start: NaiveTime::from_hms_opt(8, 0, 0).expect("valid"),
            end: NaiveTime::from_hms_opt(21, 0, 0).expect("valid"),
        };
        Self {
            require_opt_in: vec![Channel::Sms],
            voice_window: w,
            sms_window: w,
            fall_back_to_tenant_timezone: false,
        }
    }
}

/// What is known about one person and one channel when deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The address the channel would use (first phone or email), if any.
    pub address: Option<String>,
    pub timezone: Option<Tz>,
    pub tenant_timezone: Option<Tz>,
    pub consent: Option<ConsentStatus>,
    pub suppression: Option<SuppressionReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    NoAddress,
    Suppressed,
    OptedOut,
    NoOptIn,
    TimezoneUnknown,
    OutsideWindow,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
}

/// The answer, with every reason that applies (not only the first).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Decision {
    pub allowed: bool,
    pub channel: Channel,
    pub address: Option<String>,
    pub reasons: Vec<Reason>,
    /// For a refusal only because of the hour: when the window next opens.
    pub next_allowed_at: Option<DateTime<Utc>>,
}

/// Decides whether `channel` may reach the person now. Pure: the caller
/// gathers the facts and passes the time.
pub fn decide(policy: &ContactPolicy, channel: Channel, f: &Facts, now: DateTime<Utc>) -> Decision {
    let mut reasons = Vec::new();
    let mut next_allowed_at = None;
    let mut add = |code, message: String| reasons.push(Reason { code, message });
    if f.address.is_none() {
        let what = if channel.uses_phone() {
            "phone number"
        } else {
            "email address"
        };
        add(ReasonCode::NoAddress, format!("the contact has no {what}"));
    }
    if let Some(r) = f.suppression {
        add(
            ReasonCode::Suppressed,
            format!("the address is on the suppression list ({})", r.as_str()),
        );
    }
    match f.consent {
        Some(ConsentStatus::OptedOut) => add(
            ReasonCode::OptedOut,
            format!("the contact opted out of {}", channel.as_str()),
        ),
        Some(ConsentStatus::OptedIn) => {}
        None if policy.require_opt_in.contains(&channel) => add(
            ReasonCode::NoOptIn,
            format!("{} needs an opt-in, and there is none", channel.as_str()),
        ),
        None => {}
    }
    if channel.uses_phone() {
        let tz = f.timezone.or(if policy.fall_back_to_tenant_timezone {
            f.tenant_timezone
        } else {
            None
        });
        match tz {
            None => add(
                ReasonCode::TimezoneUnknown,
                "the contact's time zone is unknown, so the calling window cannot be checked"
                    .into(),
            ),
            Some(tz) => {
                let w = if channel == Channel::Voice {
                    policy.voice_window
                } else {
                    policy.sms_window
                };
                let local = now.with_timezone(&tz);
                let t = local.time();
                let inside = if w.start <= w.end {
                    t >= w.start && t < w.end
                } else {
                    t >= w.start || t < w.end
                };
                if !inside {
                    next_allowed_at = next_opening(tz, w, now);
                    add(
                        ReasonCode::OutsideWindow,
                        format!(
                            "it is {} for the contact ({}), outside {}-{}",
                            t.format("%H:%M"),
                            tz.name(),
                            w.start.format("%H:%M"),
                            w.end.format("%H:%M")
                        ),
                    );
                }
            }
        }
    }
    let only_hours = reasons.iter().all(|r| r.code == ReasonCode::OutsideWindow);
    Decision {
        allowed: reasons.is_empty(),
        channel,
        address: f.address.clone(),
        next_allowed_at: if only_hours { next_allowed_at } else { None },
        reasons,
    }
}

/// The next moment the window opens after `now`, in UTC.
fn next_opening(tz: Tz, w: Window, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&tz);
    for days in 0..3 {
        let date = local.date_naive() + chrono::Duration::days(days);
        if let Some(open) = tz.from_local_datetime(&date.and_time(w.start)).earliest() {
            let open = open.with_timezone(&Utc);
            if open > now {
                return Some(open);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_phone(raw: &str, region: &str, expected: Result<&str, PhoneError>) {
        assert_eq!(
            parse_phone(raw, region).map(|p| p.e164),
            expected.map(str::to_owned),
            "{raw:?} in {region}"
        );
    }

    #[test]
    fn phones_in_any_format() {
        check_phone("(201) 555-0123", "US", Ok("+12015550123"));
        check_phone("+1 201-555-0123", "DE", Ok("+12015550123"));
        check_phone("201.555.0123", "US", Ok("+12015550123"));
        check_phone("030 1234567", "DE", Ok("+49301234567"));
        check_phone("+49 30 1234567", "US", Ok("+49301234567"));
        check_phone("010-1234-5678", "KR", Ok("+821012345678"));
        check_phone("hello", "US", Err(PhoneError::Unparseable));
        check_phone("", "US", Err(PhoneError::Unparseable));
        check_phone("123", "US", Err(PhoneError::Invalid));
        check_phone(&"9".repeat(50), "US", Err(PhoneError::TooLong));
        assert_eq!(
            parse_phone("+821012345678", "US")
                .unwrap()
                .region
                .as_deref(),
            Some("KR")
        );
    }

    #[test]
    fn time_zones_from_unambiguous_regions() {
        assert_eq!(
            zone_for(&parse_phone("+49 30 1234567", "US").unwrap()),
            Some("Europe/Berlin")
        );
        assert_eq!(
            zone_for(&parse_phone("(201) 555-0123", "US").unwrap()),
            Some("America/New_York"),
            "an area code of one zone"
        );
        assert_eq!(
            zone_for(&parse_phone("(208) 300-1234", "US").unwrap()),
            None,
            "a range that spans two zones"
        );
        assert_eq!(
            zone_for(&parse_phone("+61 412 345 678", "US").unwrap()),
            None,
            "an Australian mobile can be anywhere in Australia"
        );
        assert_eq!(
            zone_for(&parse_phone("+61 2 9374 4000", "US").unwrap()),
            Some("Australia/Sydney"),
            "a Sydney landline"
        );
        assert_eq!(
            zone_for(&parse_phone("+49 151 23456789", "US").unwrap()),
            Some("Europe/Berlin"),
            "a mobile of a one-zone country"
        );
    }

    #[test]
    fn attributes_and_small_values() {
        assert_eq!(
            attr_from_text(AttrKind::Number, " 12.5 "),
            Ok(AttrValue::Num(12.5))
        );
        assert!(attr_from_text(AttrKind::Number, "NaN").is_err());
        assert!(attr_from_text(AttrKind::Number, "12a").is_err());
        assert_eq!(
            attr_from_text(AttrKind::Boolean, "Yes"),
            Ok(AttrValue::Bool(true))
        );
        assert!(attr_from_text(AttrKind::Date, "2026-02-30").is_err());
        assert!(matches!(
            attr_from_text(AttrKind::Date, "2026-02-28"),
            Ok(AttrValue::Date(_))
        ));
        assert!(attr_from_json(AttrKind::Number, &serde_json::json!("5")).is_err());
        assert!(check_attr_key("plan").is_ok());
        assert!(check_attr_key("Plan").is_err());
        assert!(check_attr_key("a.b").is_err());
        assert_eq!(check_language("es-MX"), Ok("es-MX".into()));
        assert!(check_language("english language").is_err());
        assert_eq!(check_tag("  vip "), Ok("vip".into()));
        assert_eq!(check_tag("VIP"), Ok("vip".into()));
        assert!(check_tag("").is_err());
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn decisions() {
        let p = ContactPolicy::default();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let facts = Facts {
            address: Some("+49301234567".into()),
            timezone: Some(berlin),
            ..Default::default()
        };
        // 10:00 in Berlin (09:00 UTC in winter): calls allowed, SMS needs an opt-in.
        let noon = at("2026-11-25T09:00:00Z");
        assert!(decide(&p, Channel::Voice, &facts, noon).allowed);
        let sms = decide(&p, Channel::Sms, &facts, noon);
        assert!(!sms.allowed);
        assert_eq!(sms.reasons[0].code, ReasonCode::NoOptIn);
        let opted_in = Facts {
            consent: Some(ConsentStatus::OptedIn),
            ..facts.clone()
        };
        assert!(decide(&p, Channel::Sms, &opted_in, noon).allowed);
        // 22:30 in Berlin: outside the window; it opens at 08:00 local (07:00 UTC).
        let late = decide(&p, Channel::Voice, &facts, at("2026-11-25T21:30:00Z"));
        assert!(!late.allowed);
        assert_eq!(late.reasons[0].code, ReasonCode::OutsideWindow);
        assert_eq!(late.next_allowed_at, Some(at("2026-11-26T07:00:00Z")));
        // Every reason is listed, and no reopening time when hours are not the only problem.
        let bad = Facts {
            address: None,
            timezone: None,
            consent: Some(ConsentStatus::OptedOut),
            suppression: Some(SuppressionReason::DoNotCall),
            ..Default::default()
        };
        let d = decide(&p, Channel::Voice, &bad, noon);
        let codes: Vec<_> = d.reasons.iter().map(|r| r.code.clone()).collect();
        assert_eq!(
            codes,
            [
                ReasonCode::NoAddress,
                ReasonCode::Suppressed,
                ReasonCode::OptedOut,
                ReasonCode::TimezoneUnknown
            ]
        );
        assert!(d.next_allowed_at.is_none());
        // Email has no calling window.
        let mail = Facts {
            address: Some("a@b.test".into()),
            ..Default::default()
        };
        assert!(decide(&p, Channel::Email, &mail, at("2026-11-25T03:00:00Z")).allowed);
        // The tenant's zone stands in only when the policy says so.
        let no_tz = Facts {
            tenant_timezone: Some(berlin),
            ..facts.clone()
        };
        let no_tz = Facts {
            timezone: None,
            ..no_tz
        };
        assert!(!decide(&p, Channel::Voice, &no_tz, noon).allowed);
        let lenient = ContactPolicy {
            fall_back_to_tenant_timezone: true,
            ..p.clone()
        };
        assert!(decide(&lenient, Channel::Voice, &no_tz, noon).allowed);
    }

    #[test]
    fn windows_across_midnight_and_dst() {
        let p = ContactPolicy {
            voice_window: Window {
                start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(2, 0, 0).unwrap(),
            },
            ..Default::default()
        };
        let ny: Tz = "America/New_York".parse().unwrap();
        let f = Facts {
            address: Some("+12015550123".into()),
            timezone: Some(ny),
            ..Default::default()
        };
        // 23:30 New York.
        assert!(decide(&p, Channel::Voice, &f, at("2026-11-26T04:30:00Z")).allowed);
        // 12:00 New York.
        assert!(!decide(&p, Channel::Voice, &f, at("2026-11-25T17:00:00Z")).allowed);
        // Summer time: 08:00 in New York is 12:00 UTC in July.
        let d = decide(
            &ContactPolicy::default(),
            Channel::Voice,
            &f,
            at("2026-07-01T11:30:00Z"),
        );
        assert_eq!(d.next_allowed_at, Some(at("2026-07-01T12:00:00Z")));
    }
}
