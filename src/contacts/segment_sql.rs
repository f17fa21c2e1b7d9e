//! Compiles a parsed segment expression to one SQL condition over
//! `contacts`, the same on SQLite and PostgreSQL (only the substring
//! function differs). Fields, operators and values are checked here, with
//! the position of what is wrong.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, Func, Query, SelectStatement, SimpleExpr};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait};

use super::domain::{AttrKind, Channel, parse_date, parse_phone};
use super::entity::{attr, consent, contact, email, member, phone, tag};
use super::segment::{Comparison, Expr as Ast, Op, ParseError, Span, Value, line_col, parse};
use crate::ids::{ListId, TenantId};
use crate::interactions::entity::interaction;

/// What the tenant has that expressions may name.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub attributes: HashMap<String, AttrKind>,
    pub lists: HashMap<String, ListId>,
    pub default_region: String,
}

/// Parses and compiles `input`; errors carry a position either way.
pub fn compile_str(
    input: &str,
    tenant: TenantId,
    cat: &Catalog,
    backend: DbBackend,
) -> Result<SimpleExpr, ParseError> {
    let ast = parse(input)?;
    Compiler {
        input,
        tenant,
        cat,
        backend,
    }
    .expr(&ast)
}

/// The fields an expression can use, for error messages and the builder.
pub const FIELDS: &[&str] = &[
    "name",
    "first_name",
    "last_name",
    "external_id",
    "email",
    "phone",
    "tags",
    "timezone",
    "language",
    "created_at",
    "updated_at",
    "attributes.<key>",
    "consent.voice",
    "consent.sms",
    "consent.email",
    "activity.last_interaction",
    "activity.interactions",
];

struct Compiler<'a> {
    input: &'a str,
    tenant: TenantId,
    cat: &'a Catalog,
    backend: DbBackend,
}

enum Kind {
    /// A text column of `contacts` (nullable or not).
    Text(contact::Column, bool),
    /// `search_name`, compared lower-cased.
    Name,
    Email,
    Phone,
    Tags,
    Attr(String, AttrKind),
    Consent(Channel),
    LastInteraction,
    Interactions,
    Date(contact::Column),
}

impl Compiler<'_> {
    fn err(&self, span: Span, message: impl Into<String>) -> ParseError {
        let (line, column) = line_col(self.input, span.start);
        ParseError {
            message: message.into(),
            position: self.input[..span.start.min(self.input.len())]
                .chars()
                .count(),
            line,
            column,
        }
    }

    fn expr(&self, e: &Ast) -> Result<SimpleExpr, ParseError> {
        Ok(match e {
            Ast::And(a, b) => self.expr(a)?.and(self.expr(b)?),
            Ast::Or(a, b) => self.expr(a)?.or(self.expr(b)?),
            Ast::Not(a) => {
                // SQL's NOT of an unknown (NULL, e.g. `language = "en"` for a
                // contact without a language) is unknown, which would drop
                // the contact from `not ...` too. Here a condition that is
                // not true is false: NOT (CASE WHEN x THEN TRUE ELSE FALSE END).
                let definite: SimpleExpr = Expr::case(self.expr(a)?, Expr::val(true))
                    .finally(Expr::val(false))
                    .into();
                definite.not()
            }
            Ast::InList { name, span } => {
                let id = self.cat.lists.get(name).ok_or_else(|| {
                    let mut known: Vec<&String> = self.cat.lists.keys().collect();
                    known.sort();
                    self.err(
                        *span,
                        format!("there is no list named {name:?} (lists: {known:?})"),
                    )
                })?;
                Expr::exists(
                    self.sub(
                        member::Entity,
                        member::Column::ContactId,
                        member::Column::TenantId,
                    )
                    .and_where(member::Column::ListId.eq(*id))
                    .to_owned(),
                )
            }
            Ast::Cmp(c) => self.cmp(c)?,
        })
    }

    /// `SELECT 1 FROM <table> WHERE tenant_id = ? AND contact_id = contacts.id`.
    fn sub<E: EntityTrait>(
        &self,
        e: E,
        contact_col: E::Column,
        tenant_col: E::Column,
    ) -> SelectStatement {
        Query::select()
            .expr(Expr::val(1))
            .from(e)
            .and_where(tenant_col.eq(self.tenant))
            .and_where(Expr::col((e, contact_col)).equals((contact::Entity, contact::Column::Id)))
            .to_owned()
    }

    fn kind(&self, c: &Comparison) -> Result<Kind, ParseError> {
        let path: Vec<&str> = c.field.path.iter().map(String::as_str).collect();
        let unknown = || {
            self.err(
                c.field.span,
                format!(
                    "unknown field {:?}; fields are {}",
                    c.field.path.join("."),
                    FIELDS.join(", ")
                ),
            )
        };
        Ok(match path.as_slice() {
            ["name"] => Kind::Name,
            ["first_name"] => Kind::Text(contact::Column::FirstName, false),
            ["last_name"] => Kind::Text(contact::Column::LastName, false),
            ["external_id"] => Kind::Text(contact::Column::ExternalId, true),
            ["timezone"] => Kind::Text(contact::Column::Timezone, true),
            ["language"] => Kind::Text(contact::Column::Language, true),
            ["email"] => Kind::Email,
            ["phone"] => Kind::Phone,
            ["tags"] => Kind::Tags,
            ["created_at"] => Kind::Date(contact::Column::CreatedAt),
            ["updated_at"] => Kind::Date(contact::Column::UpdatedAt),
            ["attributes", key] => match self.cat.attributes.get(*key) {
                Some(k) => Kind::Attr((*key).to_owned(), *k),
                None => {
                    let mut known: Vec<&String> = self.cat.attributes.keys().collect();
                    known.sort();
                    return Err(self.err(
                        c.field.span,
                        format!("unknown attribute {key:?}; defined attributes are {known:?}"),
                    ));
                }
            },
            ["consent", ch] => Kind::Consent(Channel::parse(ch).ok_or_else(unknown)?),
            ["activity", "last_interaction"] => Kind::LastInteraction,
            ["activity", "interactions"] => Kind::Interactions,
            _ => return Err(unknown()),
        })
    }

    fn bad_op(&self, c: &Comparison, allowed: &str) -> ParseError {
        self.err(
            c.op_span,
            format!(
                "{} does not take this operator; use {allowed}",
                c.field.path.join(".")
            ),
        )
    }

    fn string(&self, v: &Value) -> Result<String, ParseError> {
        match v {
            // PostgreSQL cannot compare text with U+0000 in it (`\u{0}`).
            Value::Str(s, span) if s.contains('\0') => Err(self.err(
                *span,
                "a string must not contain the NUL character (U+0000)",
            )),
            Value::Str(s, _) => Ok(s.clone()),
            other => Err(self.err(
                other.span().unwrap_or(Span { start: 0, end: 0 }),
                "expected a string here",
            )),
        }
    }

    fn number(&self, v: &Value) -> Result<f64, ParseError> {
        match v {
            Value::Num(n, _) => Ok(*n),
            other => Err(self.err(
                other.span().unwrap_or(Span { start: 0, end: 0 }),
                "expected a number here",
            )),
        }
    }

    fn date(&self, v: &Value) -> Result<chrono::DateTime<chrono::Utc>, ParseError> {
        match v {
            Value::Str(s, span) => parse_date(s).ok_or_else(|| {
                self.err(
                    *span,
                    format!("{s:?} is not a date (YYYY-MM-DD or RFC 3339)"),
                )
            }),
            other => Err(self.err(
                other.span().unwrap_or(Span { start: 0, end: 0 }),
                "expected a date string here",
            )),
        }
    }

    fn list<'v>(&self, v: &'v Value) -> &'v [Value] {
        match v {
            Value::List(items, _) => items,
            other => std::slice::from_ref(other),
        }
    }

    /// Case-sensitive "contains", portable. (Function calls, not custom SQL
    /// with `$1`: SQLite's placeholder is `?`, and there `$1` would be read
    /// as a named parameter and bind the wrong values.)
    fn contains(&self, col: SimpleExpr, needle: String) -> SimpleExpr {
        let f = if self.backend == DbBackend::Postgres {
            "strpos"
        } else {
            "instr"
        };
        SimpleExpr::from(Func::cust(f).arg(col).arg(Expr::val(needle))).gt(0)
    }

    fn starts_with(&self, col: SimpleExpr, prefix: String) -> SimpleExpr {
        // An `integer` (PostgreSQL has no substr(text, int, bigint)); string
        // literals are at most 1000 characters.
        let n = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
        SimpleExpr::from(
            Func::cust("substr")
                .arg(col)
                .arg(Expr::val(1i32))
                .arg(Expr::val(n)),
        )
        .eq(prefix)
    }

    /// Compares a text expression (one value per contact).
    fn text_cmp(
        &self,
        c: &Comparison,
        col: SimpleExpr,
        lower: bool,
        nullable: bool,
    ) -> Result<SimpleExpr, ParseError> {
        let norm = |s: String| if lower { s.to_lowercase() } else { s };
        Ok(match c.op {
            Op::Eq => col.eq(norm(self.string(&c.value)?)),
            Op::Ne => {
                let ne = col.clone().ne(norm(self.string(&c.value)?));
                if nullable { ne.or(col.is_null()) } else { ne }
            }
            Op::Contains => self.contains(col, norm(self.string(&c.value)?)),
            Op::StartsWith => self.starts_with(col, norm(self.string(&c.value)?)),
            Op::In => {
                let vals: Result<Vec<String>, _> = self
                    .list(&c.value)
                    .iter()
                    .map(|v| self.string(v).map(norm))
                    .collect();
                col.is_in(vals?)
            }
            Op::IsSet => col.clone().is_not_null().and(col.ne("")),
            Op::IsNotSet => col.clone().is_null().or(col.eq("")),
            _ => return Err(self.bad_op(c, "=, !=, contains, starts_with, in, is set")),
        })
    }

    /// EXISTS over one of several values per contact (emails, phones, tags).
    fn many(
        &self,
        c: &Comparison,
        base: SelectStatement,
        col: SimpleExpr,
        values: Vec<String>,
        op: Op,
    ) -> SimpleExpr {
        let with = |cond: SimpleExpr| Expr::exists(base.clone().and_where(cond).to_owned());
        match op {
            Op::Eq | Op::Has => with(col.eq(values[0].clone())),
            Op::Ne => with(col.eq(values[0].clone())).not(),
            Op::In => with(col.is_in(values)),
            Op::Contains => with(self.contains(col, values[0].clone())),
            Op::StartsWith => with(self.starts_with(col, values[0].clone())),
            Op::IsSet => Expr::exists(base),
            Op::IsNotSet => Expr::exists(base).not(),
            _ => unreachable!("checked by the caller for {:?}", c.op),
        }
    }

    fn values(
        &self,
        c: &Comparison,
        f: impl Fn(&Value) -> Result<String, ParseError>,
    ) -> Result<Vec<String>, ParseError> {
        match c.op {
            Op::IsSet | Op::IsNotSet => Ok(Vec::new()),
            _ => self.list(&c.value).iter().map(f).collect(),
        }
    }

    fn cmp(&self, c: &Comparison) -> Result<SimpleExpr, ParseError> {
        let col = |x: contact::Column| -> SimpleExpr { Expr::col((contact::Entity, x)) };
        match self.kind(c)? {
            Kind::Text(x, nullable) => self.text_cmp(c, col(x), false, nullable),
            Kind::Name => self.text_cmp(c, col(contact::Column::SearchName), true, false),
            Kind::Email => {
                if !matches!(
                    c.op,
                    Op::Eq
                        | Op::Ne
                        | Op::In
                        | Op::Contains
                        | Op::StartsWith
                        | Op::IsSet
                        | Op::IsNotSet
                ) {
                    return Err(self.bad_op(c, "=, !=, in, contains, starts_with, is set"));
                }
                let vals = self.values(c, |v| self.string(v).map(|s| s.trim().to_lowercase()))?;
                let base = self.sub(
                    email::Entity,
                    email::Column::ContactId,
                    email::Column::TenantId,
                );
                Ok(self.many(
                    c,
                    base,
                    Expr::col((email::Entity, email::Column::Email)),
                    vals,
                    c.op,
                ))
            }
            Kind::Phone => {
                if !matches!(
                    c.op,
                    Op::Eq | Op::Ne | Op::In | Op::StartsWith | Op::IsSet | Op::IsNotSet
                ) {
                    return Err(self.bad_op(c, "=, !=, in, starts_with, is set"));
                }
                let region = self.cat.default_region.clone();
                let vals = self.values(c, |v| {
                    let s = self.string(v)?;
                    if c.op == Op::StartsWith {
                        // A prefix such as "+1201": digits with an optional plus.
                        return Ok(s
                            .chars()
                            .filter(|ch| ch.is_ascii_digit() || *ch == '+')
                            .collect());
                    }
                    parse_phone(&s, &region).map(|p| p.e164).map_err(|e| {
                        self.err(v.span().unwrap_or(c.field.span), format!("{s:?} {e}"))
                    })
                })?;
                let base = self.sub(
                    phone::Entity,
                    phone::Column::ContactId,
                    phone::Column::TenantId,
                );
                Ok(self.many(
                    c,
                    base,
                    Expr::col((phone::Entity, phone::Column::E164)),
                    vals,
                    c.op,
                ))
            }
            Kind::Tags => {
                if !matches!(c.op, Op::Has | Op::In | Op::IsSet | Op::IsNotSet) {
                    return Err(self.bad_op(c, "has, in, is set (e.g. tags has \"vip\")"));
                }
                // Tags are stored in lower case.
                let vals = self.values(c, |v| self.string(v).map(|s| s.to_lowercase()))?;
                let base = self.sub(tag::Entity, tag::Column::ContactId, tag::Column::TenantId);
                Ok(self.many(
                    c,
                    base,
                    Expr::col((tag::Entity, tag::Column::Tag)),
                    vals,
                    c.op,
                ))
            }
            Kind::Consent(ch) => {
                let states = self.values(c, |v| {
                    let s = self.string(v)?;
                    if ["opted_in", "opted_out", "unknown"].contains(&s.as_str()) {
                        Ok(s)
                    } else {
                        Err(self.err(
                            v.span().unwrap_or(c.op_span),
                            "consent is \"opted_in\", \"opted_out\" or \"unknown\"",
                        ))
                    }
                })?;
                let base = self
                    .sub(
                        consent::Entity,
                        consent::Column::ContactId,
                        consent::Column::TenantId,
                    )
                    .and_where(consent::Column::Channel.eq(ch.as_str()))
                    .to_owned();
                let is = |s: &str| -> SimpleExpr {
                    if s == "unknown" {
                        Expr::exists(base.clone()).not()
                    } else {
                        Expr::exists(
                            base.clone()
                                .and_where(consent::Column::Status.eq(s))
                                .to_owned(),
                        )
                    }
                };
                match c.op {
                    Op::Eq => Ok(is(&states[0])),
                    Op::Ne => Ok(is(&states[0]).not()),
                    Op::In => Ok(states
                        .iter()
                        .map(|s| is(s))
                        .reduce(|a, b| a.or(b))
                        .unwrap_or_else(|| Expr::val(false))),
                    _ => Err(self.bad_op(c, "=, !=, in (e.g. consent.sms = \"opted_in\")")),
                }
            }
            Kind::Attr(key, kind) => self.attribute(c, &key, kind),
            Kind::Date(x) => self.date_cmp(c, col(x)),
            Kind::LastInteraction => {
                let base = Query::select()
                    .expr(Expr::col((interaction::Entity, interaction::Column::CreatedAt)).max())
                    .from(interaction::Entity)
                    .and_where(interaction::Column::TenantId.eq(self.tenant))
                    .and_where(
                        Expr::col((interaction::Entity, interaction::Column::ContactId))
                            .equals((contact::Entity, contact::Column::Id)),
                    )
                    .to_owned();
                self.date_cmp(c, Expr::SubQuery(None, Box::new(base.into())))
            }
            Kind::Interactions => {
                let base = Query::select()
                    .expr(Expr::col((interaction::Entity, interaction::Column::Id)).count())
                    .from(interaction::Entity)
                    .and_where(interaction::Column::TenantId.eq(self.tenant))
                    .and_where(
                        Expr::col((interaction::Entity, interaction::Column::ContactId))
                            .equals((contact::Entity, contact::Column::Id)),
                    )
                    .to_owned();
                self.num_cmp(c, Expr::SubQuery(None, Box::new(base.into())))
            }
        }
    }

    fn date_cmp(&self, c: &Comparison, e: SimpleExpr) -> Result<SimpleExpr, ParseError> {
        Ok(match c.op {
            Op::IsSet => e.is_not_null(),
            Op::IsNotSet => e.is_null(),
            Op::Eq => e.eq(self.date(&c.value)?),
            // Like text: "not equal" includes "not set" (a contact without
            // interactions has no last one).
            Op::Ne => e.clone().ne(self.date(&c.value)?).or(e.is_null()),
            Op::Lt => e.lt(self.date(&c.value)?),
            Op::Le => e.lte(self.date(&c.value)?),
            Op::Gt => e.gt(self.date(&c.value)?),
            Op::Ge => e.gte(self.date(&c.value)?),
            _ => {
                return Err(self.bad_op(
                    c,
                    "=, !=, <, <=, >, >=, is set (with a date such as \"2026-01-31\")",
                ));
            }
        })
    }

    fn num_cmp(&self, c: &Comparison, e: SimpleExpr) -> Result<SimpleExpr, ParseError> {
        Ok(match c.op {
            Op::IsSet => e.is_not_null(),
            Op::IsNotSet => e.is_null(),
            Op::Eq => e.eq(self.number(&c.value)?),
            Op::Ne => e.ne(self.number(&c.value)?),
            Op::Lt => e.lt(self.number(&c.value)?),
            Op::Le => e.lte(self.number(&c.value)?),
            Op::Gt => e.gt(self.number(&c.value)?),
            Op::Ge => e.gte(self.number(&c.value)?),
            Op::In => {
                let v: Result<Vec<f64>, _> =
                    self.list(&c.value).iter().map(|v| self.number(v)).collect();
                e.is_in(v?)
            }
            _ => return Err(self.bad_op(c, "=, !=, <, <=, >, >=, in, is set")),
        })
    }

    fn attribute(
        &self,
        c: &Comparison,
        key: &str,
        kind: AttrKind,
    ) -> Result<SimpleExpr, ParseError> {
        let base = self
            .sub(
                attr::Entity,
                attr::Column::ContactId,
                attr::Column::TenantId,
            )
            .and_where(attr::Column::Key.eq(key))
            .to_owned();
        let exists = |cond: SimpleExpr| Expr::exists(base.clone().and_where(cond).to_owned());
        match c.op {
            Op::IsSet => return Ok(Expr::exists(base)),
            Op::IsNotSet => return Ok(Expr::exists(base).not()),
            _ => {}
        }
        // `!=` means "not equal", which includes "not set".
        let (op, negate) = if c.op == Op::Ne {
            (Op::Eq, true)
        } else {
            (c.op, false)
        };
        let c2 = Comparison { op, ..c.clone() };
        let cond = match kind {
            AttrKind::String => {
                let col: SimpleExpr = Expr::col((attr::Entity, attr::Column::TextValue));
                match op {
                    Op::Eq | Op::Contains | Op::StartsWith | Op::In => {
                        self.text_cmp(&c2, col, false, false)?
                    }
                    _ => return Err(self.bad_op(c, "=, !=, contains, starts_with, in, is set")),
                }
            }
            AttrKind::Number => {
                self.num_cmp(&c2, Expr::col((attr::Entity, attr::Column::NumValue)))?
            }
            AttrKind::Date => {
                self.date_cmp(&c2, Expr::col((attr::Entity, attr::Column::DateValue)))?
            }
            AttrKind::Boolean => match (&c.value, op) {
                (Value::Bool(b, _), Op::Eq) => {
                    Expr::col((attr::Entity, attr::Column::BoolValue)).eq(*b)
                }
                (Value::Bool(..), _) => return Err(self.bad_op(c, "=, !=, is set")),
                (other, _) => {
                    return Err(self.err(
                        other.span().unwrap_or(c.op_span),
                        "expected true or false here",
                    ));
                }
            },
        };
        let e = exists(cond);
        Ok(if negate { e.not() } else { e })
    }
}
