//! Parsed identity values: past these constructors the types are valid.

use std::fmt;

/// A syntactically valid, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("is not a valid email address")]
    Email,
    #[error("must be 12 to 256 characters")]
    PasswordLength,
    #[error(
        "must be 2 to 40 characters: lower-case letters, digits and dashes, starting with a letter"
    )]
    Slug,
    #[error("must be 1 to 120 characters without control characters")]
    Name,
}

impl Email {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ParseError::Email);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(ParseError::Email)?;
        let domain_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        if domain_ok && local_ok {
            Ok(Self(s.to_lowercase()))
        } else {
            Err(ParseError::Email)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the policy (length only, per NIST 800-63B; the
/// upper bound keeps hashing cost bounded).
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    pub const MIN: usize = 12;
    pub const MAX: usize = 256;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let n = s.chars().count();
        if (Self::MIN..=Self::MAX).contains(&n) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::PasswordLength)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A tenant's short name, used at login and in URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = (2..=40).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::Slug)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1-120 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let n = s.chars().count();
        if (1..=120).contains(&n) && !s.chars().any(char::is_control) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::Name)
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_email(input: &str, expected: Option<&str>) {
        assert_eq!(
            Email::parse(input).ok().map(|e| e.0),
            expected.map(str::to_owned),
            "{input:?}"
        );
    }

    #[test]
    fn emails() {
        check_email("Ann@Example.COM", Some("ann@example.com"));
        check_email(
            " bob.smith+tag@sub.example.org ",
            Some("bob.smith+tag@sub.example.org"),
        );
        check_email("a@localhost", Some("a@localhost"));
        check_email("", None);
        check_email("no-at-sign", None);
        check_email("@example.com", None);
        check_email("a@", None);
        check_email("a@@b.com", None);
        check_email("a b@c.com", None);
        check_email("a@b..com", None);
        check_email(".a@b.com", None);
        check_email("a@-b.com", None);
        check_email("'; DROP TABLE users; --@x.com", None);
        check_email("<script>@x.com", None);
        check_email(&format!("{}@x.com", "a".repeat(65)), None);
        check_email("a\u{0}@x.com", None);
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("exactly12chr").is_ok());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("supersecret-pw").unwrap()),
            "Password([redacted])"
        );
    }

    #[test]
    fn slugs_and_names() {
        assert!(Slug::parse("demo").is_ok());
        assert!(Slug::parse("acme-2").is_ok());
        assert!(Slug::parse("Demo").is_err());
        assert!(Slug::parse("1abc").is_err());
        assert!(Slug::parse("a").is_err());
        assert!(Slug::parse("a_b").is_err());
        assert_eq!(Name::parse("  Ann  ").unwrap().into_inner(), "Ann");
        assert!(Name::parse("").is_err());
        assert!(Name::parse("a\nb").is_err());
        assert!(Name::parse(&"x".repeat(121)).is_err());
    }
}
