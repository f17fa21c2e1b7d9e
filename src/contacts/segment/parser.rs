//! Parser of segment expressions.
//!
//! Conditions (comparisons, `in_list`) are parsed by plain functions; the
//! operators around them (`(`, `not`, `and`, `or`) by a loop over an explicit
//! stack, so stack use does not grow with nesting. `and` and `or` build
//! left-associative trees. The trees stay shallow: at most 99 `and`/`or`
//! and 32 `not` nodes lie on any path from the root.

use super::lexer::{Lexer, Tok, Token, truncate};

/// The longest input, in characters.
const MAX_INPUT_CHARS: usize = 4096;
/// The deepest nesting of parentheses and `not`.
const MAX_DEPTH: usize = 32;
/// The most conditions (comparisons and `in_list`) in one expression.
const MAX_CONDITIONS: usize = 100;
/// The most values in one `in [...]` list.
const MAX_LIST_VALUES: usize = 500;

/// Words with a meaning of their own; none may start a field name (they may
/// follow a dot: `attributes.in` is a field).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in_list",
    "has",
    "in",
    "is",
    "set",
    "contains",
    "starts_with",
    "true",
    "false",
];

/// A byte range in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `in_list "Newsletter"`; the span is that of the string literal.
    InList {
        name: String,
        span: Span,
    },
    Cmp(Comparison),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: Field,
    pub op: Op,
    pub value: Value,
    /// The operator as written; for `is set` / `is not set`, all its words.
    pub op_span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub path: Vec<String>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    StartsWith,
    Has,
    In,
    IsSet,
    IsNotSet,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unescaped text; the span includes the quotes.
    Str(String, Span),
    Num(f64, Span),
    Bool(bool, Span),
    /// The span runs from `[` to `]`.
    List(Vec<Value>, Span),
    /// For `is set` / `is not set`.
    None,
}

impl Value {
    pub fn span(&self) -> Option<Span> {
        match self {
            Value::Str(_, span) | Value::Num(_, span) | Value::Bool(_, span) => Some(*span),
            Value::List(_, span) => Some(*span),
            Value::None => None,
        }
    }
}

/// A parse error: what is wrong and where (0-based char offset into the input,
/// plus 1-based line and column for people).
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[error("{message} at line {line}, column {column}")]
pub struct ParseError {
    pub message: String,
    pub position: usize,
    pub line: usize,
    pub column: usize,
}

/// 1-based (line, column) of a byte offset, counting chars (for errors the
/// caller reports, e.g. "unknown field"). An offset inside a character counts
/// as that character; an offset past the end, as the end.
pub fn line_col(input: &str, byte_offset: usize) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for (i, c) in input.char_indices() {
        if i + c.len_utf8() > byte_offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// An error at a byte offset of `input`.
pub(super) fn error_at(input: &str, byte_offset: usize, message: impl Into<String>) -> ParseError {
    let position = input
        .char_indices()
        .take_while(|&(i, c)| i + c.len_utf8() <= byte_offset)
        .count();
    let (line, column) = line_col(input, byte_offset);
    ParseError {
        message: message.into(),
        position,
        line,
        column,
    }
}

/// Parses a segment expression.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    if input.len() > MAX_INPUT_CHARS
        && let Some((at, _)) = input.char_indices().nth(MAX_INPUT_CHARS)
    {
        return Err(error_at(
            input,
            at,
            format!("the expression is too long (more than {MAX_INPUT_CHARS} characters)"),
        ));
    }
    let mut parser = Parser {
        input,
        lexer: Lexer::new(input),
        peeked: None,
        prev: None,
        depth: 0,
        parens: 0,
        conditions: 0,
    };
    parser.parse_expr()
}

/// A construct waiting for the condition being parsed to complete.
enum Pending {
    /// `(`, at this span.
    Group(Span),
    /// `not`.
    Not,
    /// `lhs and`.
    And(Expr),
    /// `lhs or`.
    Or(Expr),
}

struct Parser<'a> {
    input: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// The last token taken.
    prev: Option<Span>,
    /// Current nesting of `(` and `not`.
    depth: usize,
    /// Currently open parentheses.
    parens: usize,
    conditions: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<Token, ParseError> {
        let tok = match self.peeked.take() {
            Some(tok) => tok,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(tok).clone())
    }

    fn bump(&mut self) -> Result<Token, ParseError> {
        let tok = match self.peeked.take() {
            Some(tok) => tok,
            None => self.lexer.next_token()?,
        };
        self.prev = Some(tok.span);
        Ok(tok)
    }

    fn text(&self, span: Span) -> &str {
        self.input.get(span.start..span.end).unwrap_or("")
    }

    fn is_kw(&self, tok: &Token, keyword: &str) -> bool {
        tok.tok == Tok::Word && self.text(tok.span).eq_ignore_ascii_case(keyword)
    }

    fn is_any_kw(&self, tok: &Token) -> bool {
        KEYWORDS.iter().any(|kw| self.is_kw(tok, kw))
    }

    fn err(&self, at: usize, message: impl Into<String>) -> ParseError {
        error_at(self.input, at, message)
    }

    /// How a token is named in a message.
    fn describe(&self, tok: &Token) -> String {
        let text = truncate(self.text(tok.span));
        match tok.tok {
            Tok::Eof => "the end".to_owned(),
            Tok::Str(_) => format!("the string {text}"),
            Tok::Num(_) => format!("the number {text}"),
            _ => format!("\"{text}\""),
        }
    }

    /// The last token taken, quoted, for "after ..." in messages.
    fn prev_quoted(&self) -> String {
        match self.prev {
            Some(span) => format!("\"{}\"", truncate(self.text(span))),
            None => String::new(),
        }
    }

    /// `expected {what} after {after}, found {tok}{hint}`, at `tok`; at the
    /// end of input, `expected {what} after {after}` at the end.
    fn expected(&self, what: &str, after: &str, tok: &Token, hint: &str) -> ParseError {
        let after = if after.is_empty() {
            String::new()
        } else {
            format!(" after {after}")
        };
        let message = if tok.tok == Tok::Eof {
            format!("expected {what}{after}")
        } else {
            format!("expected {what}{after}, found {}{hint}", self.describe(tok))
        };
        self.err(tok.span.start, message)
    }

    fn too_deep(&self, tok: &Token) -> ParseError {
        self.err(
            tok.span.start,
            format!(
                "the expression is nested too deeply (more than {MAX_DEPTH} levels of parentheses and \"not\")"
            ),
        )
    }

    fn count_condition(&mut self, at: usize) -> Result<(), ParseError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(self.err(
                at,
                format!("too many conditions (more than {MAX_CONDITIONS})"),
            ));
        }
        Ok(())
    }

    /// The whole input. Operator precedence with an explicit stack of
    /// pending constructs instead of recursion, so stack use is constant.
    fn parse_expr(&mut self) -> Result<Expr, ParseError> {
        let mut stack: Vec<Pending> = Vec::new();
        loop {
            // Expecting a condition.
            let tok = self.peek()?;
            if self.is_kw(&tok, "not") || tok.tok == Tok::LParen {
                if self.depth >= MAX_DEPTH {
                    return Err(self.too_deep(&tok));
                }
                self.depth += 1;
                self.bump()?;
                if tok.tok == Tok::LParen {
                    self.parens += 1;
                    stack.push(Pending::Group(tok.span));
                } else {
                    stack.push(Pending::Not);
                }
                continue;
            }
            let mut expr = match tok.tok {
                Tok::Word if self.is_kw(&tok, "in_list") => self.parse_in_list(&tok)?,
                Tok::Word if !self.is_any_kw(&tok) => self.parse_comparison()?,
                _ => return Err(self.no_condition(&tok)),
            };
            // Have a condition: apply what binds tighter than what follows.
            loop {
                while let Some(Pending::Not) = stack.last() {
                    stack.pop();
                    self.depth -= 1;
                    expr = Expr::Not(Box::new(expr));
                }
                let tok = self.peek()?;
                if self.is_kw(&tok, "and") {
                    self.bump()?;
                    expr = reduce(&mut stack, expr, false);
                    stack.push(Pending::And(expr));
                    break;
                }
                if self.is_kw(&tok, "or") {
                    self.bump()?;
                    expr = reduce(&mut stack, expr, true);
                    stack.push(Pending::Or(expr));
                    break;
                }
                expr = reduce(&mut stack, expr, true);
                match stack.pop() {
                    None => return self.end(&tok).map(|()| expr),
                    Some(Pending::Group(open)) => {
                        self.close_group(open, &tok)?;
                        self.parens -= 1;
                        self.depth -= 1;
                    }
                    // `reduce` leaves only a group on top, or nothing.
                    Some(_) => return Err(self.err(tok.span.start, "internal parser error")),
                }
            }
        }
    }

    /// After the whole expression: only the end may follow.
    fn end(&self, tok: &Token) -> Result<(), ParseError> {
        match tok.tok {
            Tok::Eof => Ok(()),
            Tok::RParen => Err(self.err(tok.span.start, "unbalanced \")\"")),
            _ => Err(self.err(
                tok.span.start,
                format!(
                    "expected \"and\", \"or\" or the end, found {}",
                    self.describe(tok)
                ),
            )),
        }
    }

    /// After a condition inside the group opened at `open`: `tok` must be
    /// its `)`.
    fn close_group(&mut self, open: Span, tok: &Token) -> Result<(), ParseError> {
        match tok.tok {
            Tok::RParen => {
                self.bump()?;
                Ok(())
            }
            Tok::Eof => {
                let (line, column) = line_col(self.input, open.start);
                Err(self.err(
                    tok.span.start,
                    format!(
                        "missing \")\" (the \"(\" at line {line}, column {column} is not closed)"
                    ),
                ))
            }
            _ => Err(self.err(
                tok.span.start,
                format!(
                    "expected \"and\", \"or\" or \")\", found {}",
                    self.describe(tok)
                ),
            )),
        }
    }

    /// Where a condition should start but `tok` cannot start one.
    fn no_condition(&self, tok: &Token) -> ParseError {
        match tok.tok {
            Tok::RParen if self.parens == 0 => self.err(tok.span.start, "unbalanced \")\""),
            Tok::Eof if self.prev.is_none() => self.err(tok.span.start, "empty expression"),
            _ => self.expected("a condition", &self.prev_quoted(), tok, ""),
        }
    }

    /// At `in_list`.
    fn parse_in_list(&mut self, keyword: &Token) -> Result<Expr, ParseError> {
        self.count_condition(keyword.span.start)?;
        self.bump()?;
        let name = self.peek()?;
        match name.tok {
            Tok::Str(list) => {
                self.bump()?;
                Ok(Expr::InList {
                    name: list,
                    span: name.span,
                })
            }
            _ => {
                let found = if name.tok == Tok::Eof {
                    String::new()
                } else {
                    format!(", found {}", self.describe(&name))
                };
                Err(self.err(
                    name.span.start,
                    format!(
                        "\"in_list\" needs a list name in quotes, like in_list \"Newsletter\"{found}"
                    ),
                ))
            }
        }
    }

    /// At a word that is not a keyword.
    fn parse_comparison(&mut self) -> Result<Expr, ParseError> {
        let first = self.bump()?;
        self.count_condition(first.span.start)?;
        let mut path = vec![self.text(first.span).to_owned()];
        let mut end = first.span.end;
        loop {
            let dot = self.peek()?;
            if dot.tok != Tok::Dot {
                break;
            }
            self.bump()?;
            let name = self.peek()?;
            if name.tok != Tok::Word {
                return Err(self.expected("a field name", "\".\"", &name, ""));
            }
            self.bump()?;
            path.push(self.text(name.span).to_owned());
            end = name.span.end;
        }
        let field = Field {
            span: Span {
                start: first.span.start,
                end,
            },
            path,
        };
        let field_quoted = format!("\"{}\"", truncate(&field.path.join(".")));

        let op_tok = self.peek()?;
        let simple = match op_tok.tok {
            Tok::Eq => Some(Op::Eq),
            Tok::Ne => Some(Op::Ne),
            Tok::Lt => Some(Op::Lt),
            Tok::Le => Some(Op::Le),
            Tok::Gt => Some(Op::Gt),
            Tok::Ge => Some(Op::Ge),
            Tok::Word if self.is_kw(&op_tok, "contains") => Some(Op::Contains),
            Tok::Word if self.is_kw(&op_tok, "starts_with") => Some(Op::StartsWith),
            Tok::Word if self.is_kw(&op_tok, "has") => Some(Op::Has),
            _ => None,
        };
        let (op, value, op_span) = if let Some(op) = simple {
            self.bump()?;
            (op, self.parse_value()?, op_tok.span)
        } else if self.is_kw(&op_tok, "in") {
            self.bump()?;
            (Op::In, self.parse_list()?, op_tok.span)
        } else if self.is_kw(&op_tok, "is") {
            self.bump()?;
            let (op, end) = self.parse_is()?;
            let span = Span {
                start: op_tok.span.start,
                end,
            };
            (op, Value::None, span)
        } else {
            return Err(self.unknown_operator(&field_quoted, &op_tok));
        };
        Ok(Expr::Cmp(Comparison {
            field,
            op,
            value,
            op_span,
        }))
    }

    /// After `is`: `set` or `not set`. Returns the op and the end of its span.
    fn parse_is(&mut self) -> Result<(Op, usize), ParseError> {
        let tok = self.peek()?;
        if self.is_kw(&tok, "set") {
            self.bump()?;
            return Ok((Op::IsSet, tok.span.end));
        }
        if self.is_kw(&tok, "not") {
            self.bump()?;
            let set = self.peek()?;
            if self.is_kw(&set, "set") {
                self.bump()?;
                return Ok((Op::IsNotSet, set.span.end));
            }
            return Err(self.expected("\"set\"", "\"is not\"", &set, ""));
        }
        let hint = match tok.tok {
            Tok::Str(_) | Tok::Num(_) => " (to compare with a value, use \"=\")",
            Tok::Word if self.is_kw(&tok, "true") || self.is_kw(&tok, "false") => {
                " (to compare with a value, use \"=\")"
            }
            _ => "",
        };
        Err(self.expected("\"set\" or \"not set\"", &self.prev_quoted(), &tok, hint))
    }

    fn unknown_operator(&self, field: &str, tok: &Token) -> ParseError {
        if tok.tok == Tok::Word && !self.is_any_kw(tok) {
            let word = self.text(tok.span);
            if let Some(suggestion) = suggest_operator(word) {
                return self.err(
                    tok.span.start,
                    format!(
                        "unknown operator \"{}\" (did you mean \"{suggestion}\"?)",
                        truncate(word)
                    ),
                );
            }
        }
        let hint = if self.is_kw(tok, "not") {
            " (to negate a condition, put \"not\" before it)"
        } else {
            ""
        };
        self.expected("an operator", field, tok, hint)
    }

    /// A single value, after an operator, `[` or `,`.
    fn parse_value(&mut self) -> Result<Value, ParseError> {
        let tok = self.peek()?;
        let value = match tok.tok {
            Tok::Str(ref s) => Value::Str(s.clone(), tok.span),
            Tok::Num(n) => Value::Num(n, tok.span),
            Tok::Word if self.is_kw(&tok, "true") => Value::Bool(true, tok.span),
            Tok::Word if self.is_kw(&tok, "false") => Value::Bool(false, tok.span),
            _ => {
                let quoted;
                let hint = match tok.tok {
                    Tok::Word if !self.is_any_kw(&tok) => {
                        quoted = format!(
                            " (text goes in quotes, like \"{}\")",
                            truncate(self.text(tok.span))
                        );
                        quoted.as_str()
                    }
                    Tok::LBracket => " (a list only goes after \"in\")",
                    _ => "",
                };
                return Err(self.expected("a value", &self.prev_quoted(), &tok, hint));
            }
        };
        self.bump()?;
        Ok(value)
    }

    /// After `in`: `[ value ("," value)* ]`.
    fn parse_list(&mut self) -> Result<Value, ParseError> {
        let open = self.peek()?;
        if open.tok != Tok::LBracket {
            let found = if open.tok == Tok::Eof {
                String::new()
            } else {
                format!(", found {}", self.describe(&open))
            };
            return Err(self.err(
                open.span.start,
                format!("\"in\" needs a list like [\"a\", \"b\"]{found}"),
            ));
        }
        self.bump()?;
        let first = self.peek()?;
        if first.tok == Tok::RBracket {
            return Err(self.err(
                first.span.start,
                "\"in\" needs at least one value, like [\"a\", \"b\"]",
            ));
        }
        let mut values = Vec::new();
        loop {
            let value = self.parse_value()?;
            if values.len() >= MAX_LIST_VALUES {
                let at = value.span().map_or(0, |span| span.start);
                return Err(self.err(
                    at,
                    format!("the list is too long (more than {MAX_LIST_VALUES} values)"),
                ));
            }
            values.push(value);
            let sep = self.peek()?;
            match sep.tok {
                Tok::Comma => {
                    self.bump()?;
                }
                Tok::RBracket => {
                    self.bump()?;
                    let span = Span {
                        start: open.span.start,
                        end: sep.span.end,
                    };
                    return Ok(Value::List(values, span));
                }
                Tok::Eof => {
                    let (line, column) = line_col(self.input, open.span.start);
                    return Err(self.err(
                        sep.span.start,
                        format!(
                            "missing \"]\" (the \"[\" at line {line}, column {column} is not closed)"
                        ),
                    ));
                }
                _ => {
                    return Err(self.err(
                        sep.span.start,
                        format!(
                            "expected \",\" or \"]\" in the list, found {}",
                            self.describe(&sep)
                        ),
                    ));
                }
            }
        }
    }
}

/// Completes the pending `and`s (and, with `ors`, the `or`s) above the
/// innermost group, with `expr` as the last operand.
fn reduce(stack: &mut Vec<Pending>, mut expr: Expr, ors: bool) -> Expr {
    loop {
        match stack.pop() {
            Some(Pending::And(lhs)) => expr = Expr::And(Box::new(lhs), Box::new(expr)),
            Some(Pending::Or(lhs)) if ors => expr = Expr::Or(Box::new(lhs), Box::new(expr)),
            Some(other) => {
                stack.push(other);
                return expr;
            }
            None => return expr,
        }
    }
}

/// A likely meant operator for a word in operator position.
fn suggest_operator(word: &str) -> Option<&'static str> {
    let lower = word.to_ascii_lowercase();
    let exact = match lower.as_str() {
        "eq" | "equal" | "equals" | "is_equal" => Some("="),
        "ne" | "neq" | "not_equal" | "not_equals" => Some("!="),
        "lt" => Some("<"),
        "le" | "lte" => Some("<="),
        "gt" => Some(">"),
        "ge" | "gte" => Some(">="),
        "like" | "include" | "includes" => Some("contains"),
        "startswith" | "starts-with" | "begins_with" | "beginswith" | "begins-with" => {
            Some("starts_with")
        }
        "have" => Some("has"),
        "is_set" | "exists" => Some("is set"),
        "is_not_set" => Some("is not set"),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    if lower.chars().count() < 3 {
        return None;
    }
    ["contains", "starts_with", "has"]
        .into_iter()
        .find(|candidate| {
            let limit = if candidate.len() <= 3 { 1 } else { 2 };
            within_edit_distance(&lower, candidate, limit)
        })
}

/// Whether the Levenshtein distance between `a` and `b` is at most `limit`.
fn within_edit_distance(a: &str, b: &str, limit: usize) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return false;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()] <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact rendering: `(op field value)`, `(and l r)`, `(or l r)`,
    /// `(not x)`, `(in_list "name")`, with `@start..end` after each part
    /// when `spans` is set.
    fn render(expr: &Expr, spans: bool) -> String {
        let at = |span: Span| {
            if spans {
                format!("@{}..{}", span.start, span.end)
            } else {
                String::new()
            }
        };
        match expr {
            Expr::And(l, r) => format!("(and {} {})", render(l, spans), render(r, spans)),
            Expr::Or(l, r) => format!("(or {} {})", render(l, spans), render(r, spans)),
            Expr::Not(x) => format!("(not {})", render(x, spans)),
            Expr::InList { name, span } => format!("(in_list {name:?}{})", at(*span)),
            Expr::Cmp(c) => {
                let op = match c.op {
                    Op::Eq => "=",
                    Op::Ne => "!=",
                    Op::Lt => "<",
                    Op::Le => "<=",
                    Op::Gt => ">",
                    Op::Ge => ">=",
                    Op::Contains => "contains",
                    Op::StartsWith => "starts_with",
                    Op::Has => "has",
                    Op::In => "in",
                    Op::IsSet => "is_set",
                    Op::IsNotSet => "is_not_set",
                };
                let field = format!("{}{}", c.field.path.join("."), at(c.field.span));
                match &c.value {
                    Value::None => format!("({op}{} {field})", at(c.op_span)),
                    value => format!(
                        "({op}{} {field} {})",
                        at(c.op_span),
                        render_value(value, spans)
                    ),
                }
            }
        }
    }

    fn render_value(value: &Value, spans: bool) -> String {
        let at = |span: &Span| {
            if spans {
                format!("@{}..{}", span.start, span.end)
            } else {
                String::new()
            }
        };
        match value {
            Value::Str(s, span) => format!("{s:?}{}", at(span)),
            Value::Num(n, span) => format!("{n}{}", at(span)),
            Value::Bool(b, span) => format!("{b}{}", at(span)),
            Value::List(values, span) => {
                let items: Vec<String> = values.iter().map(|v| render_value(v, spans)).collect();
                format!("[{}]{}", items.join(", "), at(span))
            }
            Value::None => "none".to_owned(),
        }
    }

    /// The byte offset of the `position`-th char.
    fn byte_of_char(input: &str, position: usize) -> usize {
        input
            .char_indices()
            .nth(position)
            .map_or(input.len(), |(i, _)| i)
    }

    /// Parses and renders: the tree, or `error <position>: <display>`.
    /// Checks every error's line and column against its position.
    fn outcome(input: &str, spans: bool) -> String {
        match parse(input) {
            Ok(expr) => render(&expr, spans),
            Err(e) => {
                assert!(e.position <= input.chars().count(), "{input:?}: {e:?}");
                assert_eq!(
                    line_col(input, byte_of_char(input, e.position)),
                    (e.line, e.column),
                    "{input:?}: {e:?}"
                );
                format!("error {}: {e}", e.position)
            }
        }
    }

    #[track_caller]
    fn check(input: &str, expected: &str) {
        assert_eq!(outcome(input, false), expected, "input: {input:?}");
    }

    #[track_caller]
    fn check_spans(input: &str, expected: &str) {
        assert_eq!(outcome(input, true), expected, "input: {input:?}");
    }

    #[test]
    fn examples() {
        check(
            r#"tags has "vip" and attributes.plan = "gold""#,
            r#"(and (has tags "vip") (= attributes.plan "gold"))"#,
        );
        check(
            r#"(consent.sms = "opted_in" or consent.email = "opted_in") and not phone is not set"#,
            r#"(and (or (= consent.sms "opted_in") (= consent.email "opted_in")) (not (is_not_set phone)))"#,
        );
        check(
            r#"activity.last_interaction < "2026-01-01" and attributes.spend >= 100.5"#,
            r#"(and (< activity.last_interaction "2026-01-01") (>= attributes.spend 100.5))"#,
        );
        check(
            r#"language in ["en", "es"] and last_name starts_with "Mc""#,
            r#"(and (in language ["en", "es"]) (starts_with last_name "Mc"))"#,
        );
        check(
            r#"in_list "Newsletter" and created_at >= "2026-03-01T00:00:00Z""#,
            r#"(and (in_list "Newsletter") (>= created_at "2026-03-01T00:00:00Z"))"#,
        );
    }

    #[test]
    fn precedence() {
        check(
            "a = 1 or b = 2 and c = 3",
            "(or (= a 1) (and (= b 2) (= c 3)))",
        );
        check(
            "a = 1 and b = 2 or c = 3",
            "(or (and (= a 1) (= b 2)) (= c 3))",
        );
        check(
            "(a = 1 or b = 2) and c = 3",
            "(and (or (= a 1) (= b 2)) (= c 3))",
        );
        check(
            "a = 1 and b = 2 and c = 3",
            "(and (and (= a 1) (= b 2)) (= c 3))",
        );
        check(
            "a = 1 or b = 2 or c = 3",
            "(or (or (= a 1) (= b 2)) (= c 3))",
        );
        check(
            "a = 1 or (b = 2 or c = 3)",
            "(or (= a 1) (or (= b 2) (= c 3)))",
        );
        check("not a = 1 and b = 2", "(and (not (= a 1)) (= b 2))");
        check("not (a = 1 and b = 2)", "(not (and (= a 1) (= b 2)))");
        check("not not a = 1", "(not (not (= a 1)))");
        check(
            "a = 1 or not b = 2 and c = 3",
            "(or (= a 1) (and (not (= b 2)) (= c 3)))",
        );
        check("((a = 1))", "(= a 1)");
        check("not phone is not set", "(not (is_not_set phone))");
        check(
            "a is set and not in_list 'x' or b is not set",
            r#"(or (and (is_set a) (not (in_list "x"))) (is_not_set b))"#,
        );
    }

    #[test]
    fn operators() {
        check("a = 1", "(= a 1)");
        check("a != 1", "(!= a 1)");
        check("a < 1", "(< a 1)");
        check("a <= 1", "(<= a 1)");
        check("a > 1", "(> a 1)");
        check("a >= 1", "(>= a 1)");
        check(r#"a contains "x""#, r#"(contains a "x")"#);
        check(r#"a starts_with "x""#, r#"(starts_with a "x")"#);
        check(r#"a has "x""#, r#"(has a "x")"#);
        check(r#"a in ["x"]"#, r#"(in a ["x"])"#);
        check("a is set", "(is_set a)");
        check("a is not set", "(is_not_set a)");
        // No spaces needed around symbols.
        check(r#"a="x"and b!=2"#, r#"(and (= a "x") (!= b 2))"#);
        check("a<=-1", "(<= a -1)");
        check("a>1", "(> a 1)");
        check(r#"tags has"vip""#, r#"(has tags "vip")"#);
        check(r#"a in[1,2,3]"#, "(in a [1, 2, 3])");
    }

    #[test]
    fn values() {
        check(r#"a = "text""#, r#"(= a "text")"#);
        check("a = 'single'", r#"(= a "single")"#);
        check(r#"a = """#, r#"(= a "")"#);
        check("a = ''", r#"(= a "")"#);
        check(r#"a = "it's""#, r#"(= a "it's")"#);
        check(r#"a = 'say "hi"'"#, r#"(= a "say \"hi\"")"#);
        check("a = 12", "(= a 12)");
        check("a = -3", "(= a -3)");
        check("a = 4.25", "(= a 4.25)");
        check("a = -0.5", "(= a -0.5)");
        check("a = 007", "(= a 7)");
        check("a = 0", "(= a 0)");
        check("a = true", "(= a true)");
        check("a = false", "(= a false)");
        check("a = TRUE and b = False", "(and (= a true) (= b false))");
        check(r#"a has 3"#, "(has a 3)");
        check(r#"a contains true"#, "(contains a true)");
        check(
            r#"a in ["x", 'y', 1, -2.5, true, false]"#,
            r#"(in a ["x", "y", 1, -2.5, true, false])"#,
        );
        check(r#"a in [ "x" ]"#, r#"(in a ["x"])"#);
        check(
            "a = 123456789012345678901234567890",
            "(= a 123456789012345680000000000000)",
        );
        check(
            &format!("a = {}", "9".repeat(400)),
            r#"error 4: invalid number "999999999999999999999999999999…": too large at line 1, column 5"#,
        );
    }

    #[test]
    fn escapes() {
        check(r#"a = "q\"q""#, r#"(= a "q\"q")"#);
        check(r#"a = 'q\'q'"#, r#"(= a "q'q")"#);
        check(r#"a = "q\'q""#, r#"(= a "q'q")"#);
        check(r#"a = 'q\"q'"#, r#"(= a "q\"q")"#);
        check(r#"a = "back\\slash""#, r#"(= a "back\\slash")"#);
        check(
            r#"a = "line\nbreak\ttab\rcr""#,
            r#"(= a "line\nbreak\ttab\rcr")"#,
        );
        check(r#"a = "\u{e9}\u{1F600}\u{0041}""#, r#"(= a "é😀A")"#);
        check(r#"a = "\u{10FFFF}""#, r#"(= a "\u{10ffff}")"#);
        check(r#"a = "\\""#, r#"(= a "\\")"#);
        check(r#"a = "é ünïcödé 日本""#, r#"(= a "é ünïcödé 日本")"#);
    }

    #[test]
    fn keywords_in_any_case() {
        check(
            r#"A = 1 AND NOT B = 2 OR c Is NoT SeT"#,
            "(or (and (= A 1) (not (= B 2))) (is_not_set c))",
        );
        check(
            r#"x CONTAINS "a" and y Starts_With "b" and z HAS "c" and w IN [1] and v IS SET"#,
            r#"(and (and (and (and (contains x "a") (starts_with y "b")) (has z "c")) (in w [1])) (is_set v))"#,
        );
        check(
            r#"IN_LIST "x" or In_List 'y'"#,
            r#"(or (in_list "x") (in_list "y"))"#,
        );
    }

    #[test]
    fn identifiers() {
        check("attributes.plan = 1", "(= attributes.plan 1)");
        check("a.b.c.d = 1", "(= a.b.c.d 1)");
        check("_private = 1", "(= _private 1)");
        check("last_name = 1", "(= last_name 1)");
        check("x-custom-header = 1", "(= x-custom-header 1)");
        check(
            "attributes.favourite-colour_2 = 1",
            "(= attributes.favourite-colour_2 1)",
        );
        check("CamelCase.MixedCase = 1", "(= CamelCase.MixedCase 1)");
        check("a2 = 1", "(= a2 1)");
        // Keywords may follow a dot.
        check("attributes.in = 1", "(= attributes.in 1)");
        check("attributes.set is set", "(is_set attributes.set)");
        check("attributes.and = 1", "(= attributes.and 1)");
        // Keywords are only keywords as whole words.
        check(
            "android = 1 and orders = 2",
            "(and (= android 1) (= orders 2))",
        );
        check("notes = 1", "(= notes 1)");
        check("is_vip = true", "(= is_vip true)");
        check("set_at is set", "(is_set set_at)");
        check("in_list_x = 1", "(= in_list_x 1)");
        check("hash has 1", "(has hash 1)");
        // Whitespace around dots is tolerated.
        check("a . b = 1", "(= a.b 1)");
    }

    #[test]
    fn whitespace() {
        check("  a = 1  ", "(= a 1)");
        check("a\t=\t1", "(= a 1)");
        check("a = 1\nand\nb = 2\n", "(and (= a 1) (= b 2))");
        check("a = 1\r\nand b = 2", "(and (= a 1) (= b 2))");
        check("a\u{a0}= 1", "(= a 1)");
    }

    #[test]
    fn spans() {
        check_spans(r#"tags has "vip""#, r#"(has@5..8 tags@0..4 "vip"@9..14)"#);
        check_spans(
            "attributes.plan >= 10.5",
            "(>=@16..18 attributes.plan@0..15 10.5@19..23)",
        );
        check_spans("phone is not set", "(is_not_set@6..16 phone@0..5)");
        check_spans("phone IS  set", "(is_set@6..13 phone@0..5)");
        check_spans(
            r#"lang in ["en", 'es']"#,
            r#"(in@5..7 lang@0..4 ["en"@9..13, "es"@15..19]@8..20)"#,
        );
        check_spans(r#"not in_list "News""#, r#"(not (in_list "News"@12..18))"#);
        // Spans are bytes: "é" is two.
        check_spans(
            r#"a = "é" and b = true"#,
            r#"(and (=@2..3 a@0..1 "é"@4..8) (=@15..16 b@13..14 true@17..21))"#,
        );
        let Ok(Expr::Cmp(c)) = parse("a = 1") else {
            panic!("not a comparison")
        };
        assert_eq!(c.value.span(), Some(Span { start: 4, end: 5 }));
        let Ok(Expr::Cmp(c)) = parse("a is set") else {
            panic!("not a comparison")
        };
        assert_eq!(c.value, Value::None);
        assert_eq!(c.value.span(), None);
    }

    #[test]
    fn full_debug() {
        assert_eq!(
            format!("{:?}", parse("a.b != 'x'")),
            r#"Ok(Cmp(Comparison { field: Field { path: ["a", "b"], span: Span { start: 0, end: 3 } }, op: Ne, value: Str("x", Span { start: 7, end: 10 }), op_span: Span { start: 4, end: 6 } }))"#
        );
    }

    #[test]
    fn structural_errors() {
        check("", "error 0: empty expression at line 1, column 1");
        check("   ", "error 3: empty expression at line 1, column 4");
        check("\n\n", "error 2: empty expression at line 3, column 1");
        check(
            "a = 1 xyz",
            r#"error 6: expected "and", "or" or the end, found "xyz" at line 1, column 7"#,
        );
        check(
            r#"a = 1 "x""#,
            r#"error 6: expected "and", "or" or the end, found the string "x" at line 1, column 7"#,
        );
        check(
            "a = 1 and b = 2 c",
            r#"error 16: expected "and", "or" or the end, found "c" at line 1, column 17"#,
        );
        check("a = 1)", r#"error 5: unbalanced ")" at line 1, column 6"#);
        check("(a = 1))", r#"error 7: unbalanced ")" at line 1, column 8"#);
        check(")", r#"error 0: unbalanced ")" at line 1, column 1"#);
        check(
            "a = 1 and )",
            r#"error 10: unbalanced ")" at line 1, column 11"#,
        );
        check(
            "(a = 1",
            r#"error 6: missing ")" (the "(" at line 1, column 1 is not closed) at line 1, column 7"#,
        );
        check(
            "(a = 1 and (b = 2)",
            r#"error 18: missing ")" (the "(" at line 1, column 1 is not closed) at line 1, column 19"#,
        );
        check(
            "((a = 1) and (b = 2)",
            r#"error 20: missing ")" (the "(" at line 1, column 1 is not closed) at line 1, column 21"#,
        );
        check(
            "(a = 1 b = 2)",
            r#"error 7: expected "and", "or" or ")", found "b" at line 1, column 8"#,
        );
        check(
            "()",
            r#"error 1: expected a condition after "(", found ")" at line 1, column 2"#,
        );
        check(
            "(",
            r#"error 1: expected a condition after "(" at line 1, column 2"#,
        );
        check(
            "a = 1 and",
            r#"error 9: expected a condition after "and" at line 1, column 10"#,
        );
        check(
            "a = 1 OR",
            r#"error 8: expected a condition after "OR" at line 1, column 9"#,
        );
        check(
            "a = 1 and and b = 2",
            r#"error 10: expected a condition after "and", found "and" at line 1, column 11"#,
        );
        check(
            "and a = 1",
            r#"error 0: expected a condition, found "and" at line 1, column 1"#,
        );
        check(
            "not",
            r#"error 3: expected a condition after "not" at line 1, column 4"#,
        );
        check(
            r#""vip" in tags"#,
            r#"error 0: expected a condition, found the string "vip" at line 1, column 1"#,
        );
        check(
            "42",
            "error 0: expected a condition, found the number 42 at line 1, column 1",
        );
        check(
            "set = 1",
            r#"error 0: expected a condition, found "set" at line 1, column 1"#,
        );
        check(
            "a = 1 and true",
            r#"error 10: expected a condition after "and", found "true" at line 1, column 11"#,
        );
    }

    #[test]
    fn field_and_operator_errors() {
        check(
            "tags",
            r#"error 4: expected an operator after "tags" at line 1, column 5"#,
        );
        check(
            r#"tags "vip""#,
            r#"error 5: expected an operator after "tags", found the string "vip" at line 1, column 6"#,
        );
        check(
            "first name = 1",
            r#"error 6: expected an operator after "first", found "name" at line 1, column 7"#,
        );
        check(
            "a.b and c = 1",
            r#"error 4: expected an operator after "a.b", found "and" at line 1, column 5"#,
        );
        check(
            r#"tags not has "x""#,
            r#"error 5: expected an operator after "tags", found "not" (to negate a condition, put "not" before it) at line 1, column 6"#,
        );
        check(
            "a. = 1",
            r#"error 3: expected a field name after ".", found "=" at line 1, column 4"#,
        );
        check(
            "a.",
            r#"error 2: expected a field name after "." at line 1, column 3"#,
        );
        check(
            "a..b = 1",
            r#"error 2: expected a field name after ".", found "." at line 1, column 3"#,
        );
        check(
            ".a = 1",
            r#"error 0: expected a condition, found "." at line 1, column 1"#,
        );
        check(
            "a == 1",
            r#"error 2: unknown operator "==" (did you mean "="?) at line 1, column 3"#,
        );
        check(
            "a === 1",
            r#"error 2: unknown operator "===" (did you mean "="?) at line 1, column 3"#,
        );
        check(
            "a <> 1",
            r#"error 2: unknown operator "<>" (did you mean "!="?) at line 1, column 3"#,
        );
        check(
            "a =< 1",
            r#"error 2: unknown operator "=<" (did you mean "<="?) at line 1, column 3"#,
        );
        check(
            "a => 1",
            r#"error 2: unknown operator "=>" (did you mean ">="?) at line 1, column 3"#,
        );
        check(
            "!a = 1",
            r#"error 0: unknown operator "!" (did you mean "not" or "!="?) at line 1, column 1"#,
        );
        check(
            "a << 1",
            r#"error 2: unknown operator "<<" at line 1, column 3"#,
        );
        check(
            "a = 1 && b = 2",
            r#"error 6: unknown operator "&&" (did you mean "and"?) at line 1, column 7"#,
        );
        check(
            "a = 1 || b = 2",
            r#"error 6: unknown operator "||" (did you mean "or"?) at line 1, column 7"#,
        );
        check(
            r#"a like "x""#,
            r#"error 2: unknown operator "like" (did you mean "contains"?) at line 1, column 3"#,
        );
        check(
            r#"a contain "x""#,
            r#"error 2: unknown operator "contain" (did you mean "contains"?) at line 1, column 3"#,
        );
        check(
            r#"a startswith "x""#,
            r#"error 2: unknown operator "startswith" (did you mean "starts_with"?) at line 1, column 3"#,
        );
        check(
            r#"a starts-with "x""#,
            r#"error 2: unknown operator "starts-with" (did you mean "starts_with"?) at line 1, column 3"#,
        );
        check(
            r#"a start_with "x""#,
            r#"error 2: unknown operator "start_with" (did you mean "starts_with"?) at line 1, column 3"#,
        );
        check(
            r#"tags hass "x""#,
            r#"error 5: unknown operator "hass" (did you mean "has"?) at line 1, column 6"#,
        );
        check(
            "a eq 1",
            r#"error 2: unknown operator "eq" (did you mean "="?) at line 1, column 3"#,
        );
        check(
            "a exists",
            r#"error 2: unknown operator "exists" (did you mean "is set"?) at line 1, column 3"#,
        );
        check(
            "a is",
            r#"error 4: expected "set" or "not set" after "is" at line 1, column 5"#,
        );
        check(
            r#"a IS "x""#,
            r#"error 5: expected "set" or "not set" after "IS", found the string "x" (to compare with a value, use "=") at line 1, column 6"#,
        );
        check(
            "a is null",
            r#"error 5: expected "set" or "not set" after "is", found "null" at line 1, column 6"#,
        );
        check(
            "a is not",
            r#"error 8: expected "set" after "is not" at line 1, column 9"#,
        );
        check(
            "a is not 1",
            r#"error 9: expected "set" after "is not", found the number 1 at line 1, column 10"#,
        );
    }

    #[test]
    fn value_errors() {
        check(
            "a =",
            r#"error 3: expected a value after "=" at line 1, column 4"#,
        );
        check(
            "attributes = ",
            r#"error 13: expected a value after "=" at line 1, column 14"#,
        );
        check(
            "plan = gold",
            r#"error 7: expected a value after "=", found "gold" (text goes in quotes, like "gold") at line 1, column 8"#,
        );
        check(
            "a = and",
            r#"error 4: expected a value after "=", found "and" at line 1, column 5"#,
        );
        check(
            "a = )",
            r#"error 4: expected a value after "=", found ")" at line 1, column 5"#,
        );
        check(
            r#"a = ["x"]"#,
            r#"error 4: expected a value after "=", found "[" (a list only goes after "in") at line 1, column 5"#,
        );
        check(
            "tags has",
            r#"error 8: expected a value after "has" at line 1, column 9"#,
        );
        check(
            "a CONTAINS b",
            r#"error 11: expected a value after "CONTAINS", found "b" (text goes in quotes, like "b") at line 1, column 12"#,
        );
        check(
            r#"language in "en""#,
            r#"error 12: "in" needs a list like ["a", "b"], found the string "en" at line 1, column 13"#,
        );
        check(
            "language in",
            r#"error 11: "in" needs a list like ["a", "b"] at line 1, column 12"#,
        );
        check(
            "language in []",
            r#"error 13: "in" needs at least one value, like ["a", "b"] at line 1, column 14"#,
        );
        check(
            r#"language in ["en" "es"]"#,
            r#"error 18: expected "," or "]" in the list, found the string "es" at line 1, column 19"#,
        );
        check(
            r#"language in ["en",]"#,
            r#"error 18: expected a value after ",", found "]" at line 1, column 19"#,
        );
        check(
            r#"language in [,"en"]"#,
            r#"error 13: expected a value after "[", found "," at line 1, column 14"#,
        );
        check(
            r#"language in ["en""#,
            r#"error 17: missing "]" (the "[" at line 1, column 13 is not closed) at line 1, column 18"#,
        );
        check(
            r#"language in ["en", ["es"]]"#,
            r#"error 19: expected a value after ",", found "[" (a list only goes after "in") at line 1, column 20"#,
        );
        check(
            r#"language in ["en", es]"#,
            r#"error 19: expected a value after ",", found "es" (text goes in quotes, like "es") at line 1, column 20"#,
        );
        check(
            "in_list",
            r#"error 7: "in_list" needs a list name in quotes, like in_list "Newsletter" at line 1, column 8"#,
        );
        check(
            "in_list Newsletter",
            r#"error 8: "in_list" needs a list name in quotes, like in_list "Newsletter", found "Newsletter" at line 1, column 9"#,
        );
    }

    #[test]
    fn lexical_errors() {
        check(
            r#"a = "open"#,
            r#"error 4: unterminated string (missing the closing ") at line 1, column 5"#,
        );
        check(
            "a = 'open",
            r#"error 4: unterminated string (missing the closing ') at line 1, column 5"#,
        );
        check(
            r#"a = "x' and b = 1"#,
            r#"error 4: unterminated string (missing the closing ") at line 1, column 5"#,
        );
        check(
            "a = \"line\nb = \"x\"",
            r#"error 4: unterminated string (missing the closing " before the end of the line; write \n for a line break) at line 1, column 5"#,
        );
        check(
            r#"a = "ends in \"#,
            r#"error 4: unterminated string (missing the closing ") at line 1, column 5"#,
        );
        check(
            r#"a = "bad \q escape""#,
            r#"error 9: invalid escape "\q" (use \", \', \\, \n, \t or \u{...}) at line 1, column 10"#,
        );
        check(
            r#"a = "\u00e9""#,
            r#"error 5: invalid unicode escape (write it like \u{e9}, with 1 to 6 hex digits) at line 1, column 6"#,
        );
        check(
            r#"a = "\u{}""#,
            r#"error 5: invalid unicode escape (write it like \u{e9}, with 1 to 6 hex digits) at line 1, column 6"#,
        );
        check(
            r#"a = "\u{1234567}""#,
            r#"error 5: invalid unicode escape (write it like \u{e9}, with 1 to 6 hex digits) at line 1, column 6"#,
        );
        check(
            r#"a = "\u{12g}""#,
            r#"error 5: invalid unicode escape (write it like \u{e9}, with 1 to 6 hex digits) at line 1, column 6"#,
        );
        check(
            r#"a = "\u{D800}""#,
            r#"error 5: invalid unicode escape "\u{D800}": not a character at line 1, column 6"#,
        );
        check(
            r#"a = "\u{110000}""#,
            r#"error 5: invalid unicode escape "\u{110000}": not a character at line 1, column 6"#,
        );
        check(
            "a = 1.2.3",
            r#"error 4: invalid number "1.2.3" at line 1, column 5"#,
        );
        check(
            "a = 1.",
            r#"error 4: invalid number "1." at line 1, column 5"#,
        );
        check(
            "a = 1e5",
            r#"error 4: invalid number "1e5" at line 1, column 5"#,
        );
        check(
            "a = 12abc",
            r#"error 4: invalid number "12abc" at line 1, column 5"#,
        );
        check(
            "a = 1-2",
            r#"error 4: invalid number "1-2" at line 1, column 5"#,
        );
        check(
            "a = --1",
            r#"error 4: invalid number "--1" at line 1, column 5"#,
        );
        check(
            "a = -",
            r#"error 4: invalid number "-" at line 1, column 5"#,
        );
        check(
            "a = .5",
            r#"error 4: invalid number ".5" (put a digit before the ".", like 0.5) at line 1, column 5"#,
        );
        check(
            "a = -.5",
            r#"error 4: invalid number "-.5" (put a digit before the ".", like 0.5) at line 1, column 5"#,
        );
        check(
            "a = 1 @",
            r#"error 6: unexpected character "@" at line 1, column 7"#,
        );
        check(
            "a = +1",
            r#"error 4: unexpected character "+" at line 1, column 5"#,
        );
        check(
            "a = 1 \u{0}",
            r#"error 6: unexpected character "\0" at line 1, column 7"#,
        );
        check(
            "a = “vip”",
            r#"error 4: unexpected character "“" (use straight quotes: " or ') at line 1, column 5"#,
        );
        check(
            "prénom = 1",
            r#"error 2: unexpected character "é" (names may only use A-Z, a-z, 0-9, "_" and "-") at line 1, column 3"#,
        );
        check(
            "émail = 1",
            r#"error 0: unexpected character "é" (names may only use A-Z, a-z, 0-9, "_" and "-") at line 1, column 1"#,
        );
        // The first error in reading order wins, lexical or not.
        check(
            r#"a = = "open"#,
            r#"error 4: expected a value after "=", found "=" at line 1, column 5"#,
        );
        check(
            r#"a = "open and = ="#,
            r#"error 4: unterminated string (missing the closing ") at line 1, column 5"#,
        );
    }

    #[test]
    fn positions_in_lines_and_characters() {
        // Multi-line: the error is on line 3.
        check(
            "tags has \"vip\"\n  and attributes.plan = \"gold\"\n  and spend >",
            r#"error 59: expected a value after ">" at line 3, column 14"#,
        );
        check(
            "a = 1\nand b == 2",
            r#"error 12: unknown operator "==" (did you mean "="?) at line 2, column 7"#,
        );
        check(
            "(a = 1\n or b = 2\n",
            r#"error 17: missing ")" (the "(" at line 1, column 1 is not closed) at line 3, column 1"#,
        );
        check(
            "a = 1 and\n(b = 2 or\n c = 3",
            r#"error 26: missing ")" (the "(" at line 2, column 1 is not closed) at line 3, column 7"#,
        );
        // Non-ASCII text before the error: columns count characters, not bytes.
        check(
            r#"name = "José 日本" and x == 1"#,
            r#"error 23: unknown operator "==" (did you mean "="?) at line 1, column 24"#,
        );
        check(
            "name = \"😀😀\"\nand city = \"Zürich\" or",
            r#"error 34: expected a condition after "or" at line 2, column 23"#,
        );
        check(
            "a = 'ü' \u{a0}xyz",
            r#"error 9: expected "and", "or" or the end, found "xyz" at line 1, column 10"#,
        );
        // CRLF line ends.
        check(
            "a = 1\r\nand b ==",
            r#"error 13: unknown operator "==" (did you mean "="?) at line 2, column 7"#,
        );
    }

    #[test]
    fn line_col_of_byte_offsets() {
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("abc", 2), (1, 3));
        assert_eq!(line_col("abc", 3), (1, 4));
        assert_eq!(line_col("abc", 99), (1, 4));
        assert_eq!(line_col("ab\ncd", 3), (2, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("éa", 2), (1, 2));
        // Inside a character: that character.
        assert_eq!(line_col("éa", 1), (1, 1));
        assert_eq!(line_col("日本x", 6), (1, 3));
        // For a caller reporting an unknown field from its span.
        let input = "x = 1 and\n  attributes.plann = \"gold\"";
        let Ok(Expr::And(_, rhs)) = parse(input) else {
            panic!("not an and")
        };
        let Expr::Cmp(c) = *rhs else {
            panic!("not a comparison")
        };
        assert_eq!(line_col(input, c.field.span.start), (2, 3));
    }

    #[test]
    fn error_serializes_and_displays() {
        let e = parse("a =").unwrap_err();
        assert_eq!(
            e,
            ParseError {
                message: "expected a value after \"=\"".to_owned(),
                position: 3,
                line: 1,
                column: 4,
            }
        );
        assert_eq!(
            e.to_string(),
            "expected a value after \"=\" at line 1, column 4"
        );
        fn is_serialize<T: serde::Serialize + std::error::Error>(_: &T) {}
        is_serialize(&e);
    }

    #[test]
    fn limit_input_length() {
        // Exactly at the limit: fine.
        let ok = format!("a = \"{}\"", "x".repeat(MAX_INPUT_CHARS - 6));
        assert_eq!(ok.chars().count(), MAX_INPUT_CHARS);
        assert!(parse(&ok).is_err_and(|e| e.message.contains("string is too long")));
        let ok = format!("a = 1{}", " ".repeat(MAX_INPUT_CHARS - 5));
        check(&ok, "(= a 1)");
        let long = format!("{ok} ");
        check(
            &long,
            "error 4096: the expression is too long (more than 4096 characters) at line 1, column 4097",
        );
        // Counted in characters: 4096 two-byte characters are fine...
        let ok = format!("a = 1{}", "\u{a0}".repeat(MAX_INPUT_CHARS - 5));
        check(&ok, "(= a 1)");
        // ...4097 are not.
        check(
            &format!("{ok}\u{a0}"),
            "error 4096: the expression is too long (more than 4096 characters) at line 1, column 4097",
        );
        check(
            &"\n".repeat(5000),
            "error 4096: the expression is too long (more than 4096 characters) at line 4097, column 1",
        );
    }

    #[test]
    fn limit_nesting() {
        let nested = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
        check(&nested(32), "(= a 1)");
        check(
            &nested(33),
            r#"error 32: the expression is nested too deeply (more than 32 levels of parentheses and "not") at line 1, column 33"#,
        );
        let nots = |n: usize| format!("{}a = 1", "not ".repeat(n));
        assert!(parse(&nots(32)).is_ok());
        check(
            &nots(33),
            r#"error 128: the expression is nested too deeply (more than 32 levels of parentheses and "not") at line 1, column 129"#,
        );
        // Mixed: 16 "not (" pairs are 32 levels; one more "not" is too many.
        let mixed =
            |n: usize, extra: &str| format!("{}{extra}a = 1{}", "not (".repeat(n), ")".repeat(n));
        assert!(parse(&mixed(16, "")).is_ok());
        check(
            &mixed(16, "not "),
            r#"error 80: the expression is nested too deeply (more than 32 levels of parentheses and "not") at line 1, column 81"#,
        );
        // Depth is released when a group closes: siblings do not add up.
        let siblings = vec![nested(32); 3].join(" and ");
        assert!(parse(&siblings).is_ok());
        // Far too deep, and unbalanced: the depth error comes first.
        check(
            &"(".repeat(4000),
            r#"error 32: the expression is nested too deeply (more than 32 levels of parentheses and "not") at line 1, column 33"#,
        );
        check(
            &"not ".repeat(1000),
            r#"error 128: the expression is nested too deeply (more than 32 levels of parentheses and "not") at line 1, column 129"#,
        );
    }

    #[test]
    fn small_stack_suffices() {
        // Parsing uses constant stack; the trees it builds are at most
        // ~130 nodes deep, so even dropping them needs little.
        let inputs = [
            format!("{}a = 1{}", "(".repeat(32), ")".repeat(32)),
            format!("{}a = 1", "not ".repeat(32)),
            format!("{}a = 1{}", "not (".repeat(16), ")".repeat(16)),
            "(".repeat(4000),
            "not ".repeat(1000),
            vec!["not a=1"; 100].join(" and "),
            format!("{}a=1{}", "(a=1 and ".repeat(31), ")".repeat(31)),
        ];
        let handle = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                for input in &inputs {
                    let parsed = parse(input);
                    drop(parsed);
                }
            });
        assert!(handle.is_ok_and(|h| h.join().is_ok()));
    }

    #[test]
    fn limit_conditions() {
        let conditions = |n: usize| vec!["a=1"; n].join(" or ");
        assert!(parse(&conditions(100)).is_ok());
        // The 101st starts at 100 * 7.
        check(
            &conditions(101),
            "error 700: too many conditions (more than 100) at line 1, column 701",
        );
        let lists = vec!["in_list 'x'"; 101].join(" and ");
        check(
            &lists,
            "error 1600: too many conditions (more than 100) at line 1, column 1601",
        );
    }

    #[test]
    fn limit_string_length() {
        let s = |n: usize| format!("a = \"{}\"", "é".repeat(n));
        assert!(parse(&s(1000)).is_ok());
        check(
            &s(1001),
            "error 4: string is too long (more than 1000 characters) at line 1, column 5",
        );
        // Counted after unescaping.
        let escaped = format!("a = '{}'", "\\n".repeat(1000));
        assert!(parse(&escaped).is_ok());
        check(
            &format!("a = '{}'", "\\n".repeat(1001)),
            "error 4: string is too long (more than 1000 characters) at line 1, column 5",
        );
    }

    #[test]
    fn limit_list_length() {
        let list = |n: usize| format!("a in [{}]", vec!["1"; n].join(","));
        let Ok(Expr::Cmp(c)) = parse(&list(500)) else {
            panic!("not a comparison")
        };
        assert!(matches!(c.value, Value::List(ref v, _) if v.len() == 500));
        check(
            &list(501),
            "error 1006: the list is too long (more than 500 values) at line 1, column 1007",
        );
    }

    /// A small deterministic generator (xorshift64*), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }

        fn chance(&mut self, one_in: usize) -> bool {
            self.below(one_in) == 0
        }
    }

    /// Every span of a parsed tree lies in the input, on character
    /// boundaries, and covers what it claims to.
    fn check_spans_in(input: &str, expr: &Expr) {
        let text = |span: Span| {
            assert!(span.start <= span.end, "{input:?}: {span:?}");
            match input.get(span.start..span.end) {
                Some(text) => text,
                None => panic!("{input:?}: span {span:?} is not on char boundaries"),
            }
        };
        fn value_spans(value: &Value, out: &mut Vec<Span>) {
            if let Some(span) = value.span() {
                out.push(span);
            }
            if let Value::List(values, _) = value {
                for v in values {
                    value_spans(v, out);
                }
            }
        }
        match expr {
            Expr::And(l, r) | Expr::Or(l, r) => {
                check_spans_in(input, l);
                check_spans_in(input, r);
            }
            Expr::Not(x) => check_spans_in(input, x),
            Expr::InList { span, .. } => {
                let t = text(*span);
                assert!(t.starts_with(['"', '\'']), "{input:?}: {t:?}");
            }
            Expr::Cmp(c) => {
                let field = text(c.field.span);
                assert!(field.starts_with(c.field.path[0].as_str()), "{input:?}");
                assert!(field.ends_with(c.field.path[c.field.path.len() - 1].as_str()));
                assert!(!text(c.op_span).is_empty(), "{input:?}");
                assert!(c.field.span.end <= c.op_span.start, "{input:?}");
                let mut spans = Vec::new();
                value_spans(&c.value, &mut spans);
                for span in spans {
                    assert!(c.op_span.end <= span.start, "{input:?}");
                    assert!(!text(span).is_empty());
                }
            }
        }
    }

    /// Parses without panicking and checks the invariants of the outcome.
    fn parse_checked(input: &str) {
        match parse(input) {
            Ok(expr) => check_spans_in(input, &expr),
            Err(e) => {
                assert!(e.position <= input.chars().count(), "{input:?}: {e:?}");
                assert_eq!(
                    line_col(input, byte_of_char(input, e.position)),
                    (e.line, e.column),
                    "{input:?}: {e:?}"
                );
                assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn fuzz_random_characters() {
        let alphabet: Vec<char> = "abzAZ_-.09 \t\n\r()[],=!<>&|\"'\\u{}éü日😀“\u{0}\u{a0}@+*/;:#"
            .chars()
            .collect();
        let mut rng = Rng(0x5EED_0001);
        for _ in 0..20_000 {
            let len = rng.below(60);
            let input: String = (0..len).map(|_| rng.pick(&alphabet)).collect();
            parse_checked(&input);
        }
        // Arbitrary bytes, made UTF-8.
        for _ in 0..5_000 {
            let len = rng.below(60);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            parse_checked(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn fuzz_token_soup() {
        let tokens = [
            "a",
            "attributes.plan",
            "tags",
            "x-y",
            "_z",
            "and",
            "or",
            "not",
            "AND",
            "Or",
            "NOT",
            "(",
            ")",
            "(",
            ")",
            "[",
            "]",
            ",",
            ".",
            "=",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "==",
            "=>",
            "!",
            "contains",
            "starts_with",
            "has",
            "in",
            "is",
            "set",
            "IS",
            "in_list",
            "true",
            "false",
            "\"vip\"",
            "'x'",
            "\"\"",
            "\"un",
            "'é日",
            "12",
            "-3.5",
            "0",
            "1.2.3",
            "-",
            ".5",
            "\"\\u{e9}\"",
            "\"\\q\"",
            "\"\\u{D800}\"",
            "\"\\",
            "é",
            "&&",
            "||",
            "@",
            "like",
            "hass",
            "a = 1",
            "tags has 'vip'",
            "b in [1, 'x']",
            "c is not set",
            "d.e starts_with \"Mc\"",
            "in_list 'News'",
            "and",
            "or",
            "(",
            ")",
        ];
        let separators = [" ", " ", " ", "", "\n", "\t", "\r\n"];
        let mut rng = Rng(0x5EED_0002);
        for round in 0..20_000 {
            // Mostly short soups; every tenth long enough to meet the limits.
            let n = if round % 10 == 0 {
                rng.below(1500)
            } else {
                rng.below(30)
            };
            let mut input = String::new();
            for _ in 0..n {
                input.push_str(rng.pick(&tokens));
                input.push_str(rng.pick(&separators));
            }
            parse_checked(&input);
        }
    }

    #[test]
    fn fuzz_deep_and_long() {
        let mut rng = Rng(0x5EED_0003);
        let openers = ["(", "not ", "NOT(", "( not "];
        for _ in 0..2_000 {
            let mut input = String::new();
            for _ in 0..rng.below(2000) {
                input.push_str(rng.pick(&openers));
            }
            input.push_str("a = 1");
            for _ in 0..rng.below(2000) {
                input.push_str(rng.pick(&[")", " and b = 2)", " or c is set)"]));
            }
            parse_checked(&input);
        }
    }

    // Round trip: random trees, printed with random spelling and spacing,
    // parse back to the same tree.

    fn gen_ident(rng: &mut Rng, first: bool) -> String {
        loop {
            let head = "abcxyzABC_";
            let tail = "abcxyzABC_019-";
            let mut s = String::new();
            s.push(head.chars().nth(rng.below(head.len())).unwrap_or('a'));
            for _ in 0..rng.below(6) {
                s.push(tail.chars().nth(rng.below(tail.len())).unwrap_or('a'));
            }
            let keyword = KEYWORDS.iter().any(|k| s.eq_ignore_ascii_case(k));
            if !(first && keyword) {
                return s;
            }
        }
    }

    fn gen_string(rng: &mut Rng) -> String {
        let chars: Vec<char> = "ab Z0\"'\\\n\t\ré日😀\u{1}{}".chars().collect();
        (0..rng.below(8)).map(|_| rng.pick(&chars)).collect()
    }

    fn gen_value(rng: &mut Rng) -> Value {
        let span = Span { start: 0, end: 0 };
        match rng.below(4) {
            0 | 1 => Value::Str(gen_string(rng), span),
            2 => {
                let n = match rng.below(3) {
                    0 => rng.below(1000) as f64,
                    1 => -(rng.below(100_000) as f64) / 100.0,
                    _ => f64::from_bits(rng.next() >> 2) % 1e9,
                };
                Value::Num(n, span)
            }
            _ => Value::Bool(rng.chance(2), span),
        }
    }

    fn gen_expr(rng: &mut Rng, depth: usize) -> Expr {
        let span = Span { start: 0, end: 0 };
        if depth == 0 || rng.chance(3) {
            if rng.chance(8) {
                return Expr::InList {
                    name: gen_string(rng),
                    span,
                };
            }
            let mut path = vec![gen_ident(rng, true)];
            for _ in 0..rng.below(3) {
                path.push(gen_ident(rng, false));
            }
            let op = rng.pick(&[
                Op::Eq,
                Op::Ne,
                Op::Lt,
                Op::Le,
                Op::Gt,
                Op::Ge,
                Op::Contains,
                Op::StartsWith,
                Op::Has,
                Op::In,
                Op::IsSet,
                Op::IsNotSet,
            ]);
            let value = match op {
                Op::In => Value::List((0..=rng.below(4)).map(|_| gen_value(rng)).collect(), span),
                Op::IsSet | Op::IsNotSet => Value::None,
                _ => gen_value(rng),
            };
            return Expr::Cmp(Comparison {
                field: Field { path, span },
                op,
                value,
                op_span: span,
            });
        }
        match rng.below(3) {
            0 => Expr::And(
                Box::new(gen_expr(rng, depth - 1)),
                Box::new(gen_expr(rng, depth - 1)),
            ),
            1 => Expr::Or(
                Box::new(gen_expr(rng, depth - 1)),
                Box::new(gen_expr(rng, depth - 1)),
            ),
            _ => Expr::Not(Box::new(gen_expr(rng, depth - 1))),
        }
    }

    fn keyword(rng: &mut Rng, kw: &str) -> String {
        match rng.below(3) {
            0 => kw.to_owned(),
            1 => kw.to_ascii_uppercase(),
            _ => kw
                .chars()
                .map(|c| {
                    if rng.chance(2) {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
        }
    }

    fn space(rng: &mut Rng) -> &'static str {
        rng.pick(&[" ", " ", "  ", "\n", "\t", " \r\n "])
    }

    fn print_value(rng: &mut Rng, value: &Value) -> String {
        match value {
            Value::Str(s, _) => {
                let quote = if rng.chance(2) { '"' } else { '\'' };
                let mut out = String::from(quote);
                for c in s.chars() {
                    match c {
                        '"' | '\'' if c == quote => {
                            out.push('\\');
                            out.push(c);
                        }
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '\r' => out.push_str("\\r"),
                        c if c.is_control() || rng.chance(10) => {
                            out.push_str(&format!("\\u{{{:x}}}", c as u32));
                        }
                        c => out.push(c),
                    }
                }
                out.push(quote);
                out
            }
            Value::Num(n, _) => format!("{n}"),
            Value::Bool(b, _) => keyword(rng, if *b { "true" } else { "false" }),
            Value::List(values, _) => {
                let items: Vec<String> = values.iter().map(|v| print_value(rng, v)).collect();
                let sep = if rng.chance(2) { ", " } else { "," };
                format!("[{}]", items.join(sep))
            }
            Value::None => String::new(),
        }
    }

    /// Prints with as few parentheses as precedence allows (plus a few
    /// spare ones); `min` is the weakest operator allowed unparenthesised:
    /// 0 or, 1 and, 2 not.
    fn print_expr(rng: &mut Rng, expr: &Expr, min: u8) -> String {
        let strength = match expr {
            Expr::Or(..) => 0,
            Expr::And(..) => 1,
            _ => 2,
        };
        let body = match expr {
            Expr::Or(l, r) => {
                let (l, sp, kw) = (print_expr(rng, l, 0), space(rng), keyword(rng, "or"));
                format!("{l}{sp}{kw}{}{}", space(rng), print_expr(rng, r, 1))
            }
            Expr::And(l, r) => {
                let (l, sp, kw) = (print_expr(rng, l, 1), space(rng), keyword(rng, "and"));
                format!("{l}{sp}{kw}{}{}", space(rng), print_expr(rng, r, 2))
            }
            Expr::Not(x) => format!(
                "{}{}{}",
                keyword(rng, "not"),
                space(rng),
                print_expr(rng, x, 2)
            ),
            Expr::InList { name, .. } => {
                let name = print_value(rng, &Value::Str(name.clone(), Span { start: 0, end: 0 }));
                format!("{}{}{name}", keyword(rng, "in_list"), space(rng))
            }
            Expr::Cmp(c) => {
                let field = c.field.path.join(".");
                let op = match c.op {
                    Op::Eq => "=".to_owned(),
                    Op::Ne => "!=".to_owned(),
                    Op::Lt => "<".to_owned(),
                    Op::Le => "<=".to_owned(),
                    Op::Gt => ">".to_owned(),
                    Op::Ge => ">=".to_owned(),
                    Op::Contains => keyword(rng, "contains"),
                    Op::StartsWith => keyword(rng, "starts_with"),
                    Op::Has => keyword(rng, "has"),
                    Op::In => keyword(rng, "in"),
                    Op::IsSet => format!("{} {}", keyword(rng, "is"), keyword(rng, "set")),
                    Op::IsNotSet => format!(
                        "{} {} {}",
                        keyword(rng, "is"),
                        keyword(rng, "not"),
                        keyword(rng, "set")
                    ),
                };
                let value = print_value(rng, &c.value);
                format!("{field}{}{op}{}{value}", space(rng), space(rng))
            }
        };
        if strength < min || rng.chance(20) {
            format!("({body})")
        } else {
            body
        }
    }

    #[test]
    fn round_trip_random_trees() {
        let mut rng = Rng(0x5EED_0004);
        for _ in 0..5_000 {
            let expr = gen_expr(&mut rng, 5);
            let input = print_expr(&mut rng, &expr, 0);
            match parse(&input) {
                Ok(parsed) => {
                    check_spans_in(&input, &parsed);
                    assert_eq!(render(&parsed, false), render(&expr, false), "{input}");
                }
                Err(e) => panic!("{input:?}: {e}"),
            }
        }
    }
}
