//! Segment expressions: the filters marketers write over contacts, e.g.
//!
//! ```text
//! tags has "vip" and attributes.plan = "gold"
//! (consent.sms = "opted_in" or consent.email = "opted_in") and not phone is not set
//! language in ["en", "es"] and last_name starts_with "Mc"
//! in_list "Newsletter" and created_at >= "2026-03-01T00:00:00Z"
//! ```
//!
//! Grammar (keywords are case-insensitive; identifiers are case-sensitive):
//!
//! ```text
//! expr        := or_expr
//! or_expr     := and_expr ("or" and_expr)*
//! and_expr    := not_expr ("and" not_expr)*
//! not_expr    := "not" not_expr | primary
//! primary     := "(" expr ")" | "in_list" STRING | comparison
//! comparison  := field op value
//!              | field "has" value
//!              | field "in" "[" value ("," value)* "]"
//!              | field "is" "set" | field "is" "not" "set"
//! field       := IDENT ("." IDENT)*                 IDENT = [A-Za-z_][A-Za-z0-9_-]*
//! op          := "=" | "!=" | "<" | "<=" | ">" | ">=" | "contains" | "starts_with"
//! value       := STRING | NUMBER | "true" | "false"
//! STRING      := "..." or '...', escapes \" \' \\ \n \t \r \u{XXXX}, on one line
//! NUMBER      := optional "-", digits, optional "." digits
//! ```
//!
//! A keyword may not begin a field (`set = 1` is an error) but may follow a
//! dot (`attributes.set = 1` is fine).
//!
//! Limits, each reported as a [`ParseError`] with a position: 4096
//! characters of input, 32 levels of parentheses and `not`, 100 conditions
//! (comparisons and `in_list`), 1000 characters in a string, 500 values in a
//! list. Parsing never panics, and its stack use does not grow with the
//! input: operators are parsed with an explicit stack, not recursion.
//!
//! Spans are byte ranges of the input; [`ParseError::position`] counts
//! characters. [`line_col`] turns a span's start into a line and column for
//! errors found later (an unknown field, say).

mod lexer;
mod parser;

pub use parser::{Comparison, Expr, Field, Op, ParseError, Span, Value, line_col, parse};
