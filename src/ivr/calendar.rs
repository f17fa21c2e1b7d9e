//! Business hours and holidays in a time zone (pure: the time is given).
//!
//! ```rhai
//! open_now(#{
//!     tz: "Europe/Paris",
//!     hours: #{ weekdays: "09:00-12:30, 13:30-18:00", sat: "10:00-13:00" },
//!     holidays: ["2026-12-25", "2026-12-31..2027-01-01"],
//! })
//! ```
//! Days not named are closed; `weekdays` (Monday to Friday) and `weekend`
//! set several days at once, a named day overrides them. A range may not
//! cross midnight (write two).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub tz: Tz,
    /// Open ranges per weekday (Monday first).
    pub days: [Vec<(NaiveTime, NaiveTime)>; 7],
    pub holidays: Vec<(NaiveDate, NaiveDate)>,
}

pub fn zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("{name:?} is not a time zone (e.g. \"Europe/Paris\")"))
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn ranges(day: &str, text: &str) -> Result<Vec<(NaiveTime, NaiveTime)>, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let (a, b) = part
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("hours.{day}: {part:?} is not a range like \"09:00-17:30\""))?;
        let t = |s: &str| {
            let s = s.trim();
            if s == "24:00" {
                return Ok(NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).expect("valid"));
            }
            NaiveTime::parse_from_str(s, "%H:%M")
                .map_err(|_| format!("hours.{day}: {s:?} is not a time like \"09:00\""))
        };
        let (from, to) = (t(a)?, t(b)?);
        if from >= to {
            return Err(format!(
                "hours.{day}: {part:?} ends before it starts (split ranges that cross midnight)"
            ));
        }
        out.push((from, to));
    }
    Ok(out)
}

fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("holidays: {s:?} is not a date like \"2026-12-25\""))
}

impl Calendar {
    pub fn from_json(v: &Value) -> Result<Calendar, String> {
        let Value::Object(m) = v else {
            return Err("a calendar is a map: #{ tz, hours, holidays }".into());
        };
        for k in m.keys() {
            if !matches!(k.as_str(), "tz" | "hours" | "holidays") {
                return Err(format!("unknown key `{k}` (known: tz, hours, holidays)"));
            }
        }
        let tz = zone(
            m.get("tz")
                .and_then(Value::as_str)
                .ok_or("`tz` (a time zone name) is required")?,
        )?;
        let mut days: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
        if let Some(h) = m.get("hours") {
            let Value::Object(h) = h else {
                return Err("`hours` is a map of day to ranges".into());
            };
            // Groups first, named days override them.
            for group in ["weekdays", "weekend"] {
                if let Some(v) = h.get(group) {
                    let text = v
                        .as_str()
                        .ok_or(format!("hours.{group} must be a string"))?;
                    let r = ranges(group, text)?;
                    let idx: &[usize] = if group == "weekdays" {
                        &[0, 1, 2, 3, 4]
                    } else {
                        &[5, 6]
                    };
                    for &i in idx {
                        days[i] = r.clone();
                    }
                }
            }
            for (k, v) in h {
                if matches!(k.as_str(), "weekdays" | "weekend") {
                    continue;
                }
                let i = DAYS.iter().position(|d| d == k).ok_or_else(|| {
                    format!("hours: unknown day `{k}` (mon..sun, weekdays, weekend)")
                })?;
                let text = v.as_str().ok_or(format!("hours.{k} must be a string"))?;
                days[i] = ranges(k, text)?;
            }
        }
        let mut holidays = Vec::new();
        if let Some(h) = m.get("holidays") {
            let Value::Array(a) = h else {
                return Err("`holidays` is an array of dates".into());
            };
            for d in a {
                let s = d.as_str().ok_or("holidays are dates like \"2026-12-25\"")?;
                let (from, to) = match s.split_once("..") {
                    Some((a, b)) => (date(a)?, date(b)?),
                    None => (date(s)?, date(s)?),
                };
                if from > to {
                    return Err(format!("holidays: {s:?} ends before it starts"));
                }
                holidays.push((from, to));
            }
        }
        Ok(Calendar { tz, days, holidays })
    }

    pub fn is_open<Z: TimeZone>(&self, at: DateTime<Z>) -> bool {
        let local = at.with_timezone(&self.tz);
        let day = local.date_naive();
        if self.holidays.iter().any(|(a, b)| *a <= day && day <= *b) {
            return false;
        }
        let t = local.time();
        self.days[local.weekday().num_days_from_monday() as usize]
            .iter()
            .any(|(a, b)| *a <= t && t < *b)
    }
}

/// The time as a flow sees it: `#{ iso, date, time, hour, minute, weekday }`.
pub fn describe(at: DateTime<FixedOffset>, tz: Tz) -> Value {
    let l = at.with_timezone(&tz);
    let wd = match l.weekday() {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    };
    json!({
        "iso": l.to_rfc3339(),
        "date": l.format("%Y-%m-%d").to_string(),
        "time": l.format("%H:%M").to_string(),
        "hour": l.hour_i(),
        "minute": l.minute_i(),
        "weekday": wd,
    })
}

trait HourMinute {
    fn hour_i(&self) -> i64;
    fn minute_i(&self) -> i64;
}

impl<Z: TimeZone> HourMinute for DateTime<Z> {
    fn hour_i(&self) -> i64 {
        chrono::Timelike::hour(self) as i64
    }
    fn minute_i(&self) -> i64 {
        chrono::Timelike::minute(self) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal() -> Calendar {
        Calendar::from_json(&json!({
            "tz": "Europe/Paris",
            "hours": { "weekdays": "09:00-12:30, 13:30-18:00", "fri": "09:00-16:00", "sat": "10:00-13:00" },
            "holidays": ["2026-12-25", "2026-12-31..2027-01-01"]
        }))
        .unwrap()
    }

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[test]
    fn hours_are_read_in_the_calendars_zone() {
        let c = cal();
        // Tuesday 1 December 2026, 10:00 in Paris = 09:00 UTC.
        assert!(c.is_open(at("2026-12-01T09:00:00Z")));
        // 08:30 UTC is 09:30 in Paris: open; 07:59 UTC is 08:59: closed.
        assert!(!c.is_open(at("2026-12-01T07:59:00Z")));
        // Lunch break.
        assert!(!c.is_open(at("2026-12-01T13:00:00+01:00")));
        assert!(c.is_open(at("2026-12-01T13:30:00+01:00")));
        // The same instant written in New York time.
        assert!(c.is_open(at("2026-12-01T04:00:00-05:00")));
    }

    #[test]
    fn named_days_override_groups_and_unnamed_days_are_closed() {
        let c = cal();
        // Friday 4 December 2026 at 17:00: Friday closes at 16:00.
        assert!(!c.is_open(at("2026-12-04T17:00:00+01:00")));
        assert!(c.is_open(at("2026-12-04T15:00:00+01:00")));
        // Saturday morning open, Sunday closed.
        assert!(c.is_open(at("2026-12-05T11:00:00+01:00")));
        assert!(!c.is_open(at("2026-12-06T11:00:00+01:00")));
    }

    #[test]
    fn holidays_and_holiday_ranges_close_the_day() {
        let c = cal();
        assert!(!c.is_open(at("2026-12-25T10:00:00+01:00")));
        assert!(!c.is_open(at("2027-01-01T10:00:00+01:00")));
        // 24 December is a Thursday and not a holiday.
        assert!(c.is_open(at("2026-12-24T10:00:00+01:00")));
    }

    #[test]
    fn daylight_saving_is_followed() {
        let c = cal();
        // Monday 29 June 2026: Paris is UTC+2, so 07:30 UTC is 09:30 there.
        assert!(c.is_open(at("2026-06-29T07:30:00Z")));
        // In winter 07:30 UTC is 08:30 in Paris: closed.
        assert!(!c.is_open(at("2026-12-07T07:30:00Z")));
    }

    #[test]
    fn bad_calendars_say_what_is_wrong() {
        for (v, needle) in [
            (json!({"hours": {}}), "tz"),
            (json!({"tz": "Mars/Olympus"}), "time zone"),
            (json!({"tz": "UTC", "hours": {"mon": "9-5"}}), "09:00"),
            (
                json!({"tz": "UTC", "hours": {"mon": "18:00-09:00"}}),
                "midnight",
            ),
            (
                json!({"tz": "UTC", "hours": {"funday": "09:00-10:00"}}),
                "unknown day",
            ),
            (
                json!({"tz": "UTC", "holidays": ["25/12/2026"]}),
                "2026-12-25",
            ),
            (json!({"tz": "UTC", "colour": "red"}), "unknown key"),
        ] {
            let e = Calendar::from_json(&v).unwrap_err();
            assert!(e.contains(needle), "{v}: {e}");
        }
    }
}
