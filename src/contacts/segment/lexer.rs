//! Tokens of segment expressions.
//!
//! The lexer is pulled one token at a time by the parser, so the first error
//! in reading order is the one reported, whether it is lexical or syntactic.

use super::parser::{ParseError, Span, error_at};

/// The longest string literal, in characters after unescaping.
pub(super) const MAX_STRING_CHARS: usize = 1000;

/// Longest piece of source text quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 30;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// An identifier or a keyword; its text is the source text of the span.
    Word,
    Str(String),
    Num(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub span: Span,
}

pub(super) struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

/// Shortens source text for quoting in a message.
pub(super) fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_CHARS {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX_QUOTED_CHARS).collect();
        short.push('…');
        short
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `-?[0-9]+(\.[0-9]+)?`
fn is_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int) && frac.is_none_or(all_digits)
}

fn show_char(c: char) -> String {
    c.escape_debug().to_string()
}

impl<'a> Lexer<'a> {
    pub fn new(input: &'a str) -> Self {
        Lexer { input, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn err(&self, at: usize, message: impl Into<String>) -> ParseError {
        error_at(self.input, at, message)
    }

    pub fn next_token(&mut self) -> Result<Token, ParseError> {
        let rest = self.rest();
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let mut chars = trimmed.chars();
        let Some(c) = chars.next() else {
            return Ok(Token {
                tok: Tok::Eof,
                span: Span { start, end: start },
            });
        };
        let next = chars.next();
        let single = |tok: Tok| (tok, 1);
        let (tok, len) = match c {
            '(' => single(Tok::LParen),
            ')' => single(Tok::RParen),
            '[' => single(Tok::LBracket),
            ']' => single(Tok::RBracket),
            ',' => single(Tok::Comma),
            '.' if next.is_some_and(|n| n.is_ascii_digit()) => self.number(trimmed)?,
            '.' => single(Tok::Dot),
            '"' | '\'' => self.string(trimmed, c)?,
            '0'..='9' | '-' => self.number(trimmed)?,
            c if c.is_ascii_alphabetic() || c == '_' => self.word(trimmed)?,
            '=' | '!' | '<' | '>' => self.operator(trimmed)?,
            '&' | '|' => {
                let len = trimmed.find(|x| x != c).unwrap_or(trimmed.len());
                let word = if c == '&' { "and" } else { "or" };
                return Err(self.err(
                    start,
                    format!(
                        "unknown operator \"{}\" (did you mean \"{word}\"?)",
                        truncate(&trimmed[..len])
                    ),
                ));
            }
            '“' | '”' | '‘' | '’' | '«' | '»' | '„' => {
                return Err(self.err(
                    start,
                    format!("unexpected character \"{c}\" (use straight quotes: \" or ')"),
                ));
            }
            c if c.is_alphabetic() => {
                return Err(self.err(
                    start,
                    format!(
                        "unexpected character \"{c}\" (names may only use A-Z, a-z, 0-9, \"_\" and \"-\")"
                    ),
                ));
            }
            c => {
                return Err(self.err(start, format!("unexpected character \"{}\"", show_char(c))));
            }
        };
        self.pos = start + len;
        Ok(Token {
            tok,
            span: Span {
                start,
                end: start + len,
            },
        })
    }

    /// `text` starts with the first character of the word.
    fn word(&self, text: &str) -> Result<(Tok, usize), ParseError> {
        let len = text.find(|c| !is_ident_char(c)).unwrap_or(text.len());
        if let Some(c) = text[len..].chars().next()
            && c.is_alphanumeric()
        {
            return Err(self.err(
                self.pos + len,
                format!(
                    "unexpected character \"{c}\" (names may only use A-Z, a-z, 0-9, \"_\" and \"-\")"
                ),
            ));
        }
        Ok((Tok::Word, len))
    }

    /// `text` starts with a digit, `-` or `.` followed by a digit. Takes the
    /// whole run of characters that could belong to a number or a name, so
    /// `1.2.3`, `1e5` and `12abc` are reported whole.
    fn number(&self, text: &str) -> Result<(Tok, usize), ParseError> {
        let len = text
            .find(|c: char| !(is_ident_char(c) || c == '.'))
            .unwrap_or(text.len());
        let source = &text[..len];
        if !is_number(source) {
            let hint = if source.starts_with('.') || source.starts_with("-.") {
                " (put a digit before the \".\", like 0.5)"
            } else {
                ""
            };
            return Err(self.err(
                self.pos,
                format!("invalid number \"{}\"{hint}", truncate(source)),
            ));
        }
        match source.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok((Tok::Num(n), len)),
            _ => Err(self.err(
                self.pos,
                format!("invalid number \"{}\": too large", truncate(source)),
            )),
        }
    }

    /// `text` starts with the operator character.
    fn operator(&self, text: &str) -> Result<(Tok, usize), ParseError> {
        let len = text
            .find(|c| !matches!(c, '=' | '!' | '<' | '>'))
            .unwrap_or(text.len());
        let source = &text[..len];
        let tok = match source {
            "=" => Tok::Eq,
            "!=" => Tok::Ne,
            "<" => Tok::Lt,
            "<=" => Tok::Le,
            ">" => Tok::Gt,
            ">=" => Tok::Ge,
            _ => {
                let hint = match source {
                    "==" | "===" => " (did you mean \"=\"?)",
                    "!==" | "<>" | "=!" => " (did you mean \"!=\"?)",
                    "=<" => " (did you mean \"<=\"?)",
                    "=>" => " (did you mean \">=\"?)",
                    "!" => " (did you mean \"not\" or \"!=\"?)",
                    _ => "",
                };
                return Err(self.err(
                    self.pos,
                    format!("unknown operator \"{}\"{hint}", truncate(source)),
                ));
            }
        };
        Ok((tok, len))
    }

    /// `text` starts with the opening quote.
    fn string(&self, text: &str, quote: char) -> Result<(Tok, usize), ParseError> {
        let start = self.pos;
        let unterminated = || {
            self.err(
                start,
                format!("unterminated string (missing the closing {quote})"),
            )
        };
        let mut value = String::new();
        let mut count = 0usize;
        let mut chars = text.char_indices().skip(1).peekable();
        loop {
            let Some((i, c)) = chars.next() else {
                return Err(unterminated());
            };
            match c {
                c if c == quote => return Ok((Tok::Str(value), i + 1)),
                '\n' => {
                    return Err(self.err(
                        start,
                        format!(
                            "unterminated string (missing the closing {quote} before the end of the line; write \\n for a line break)"
                        ),
                    ));
                }
                '\\' => {
                    let escape_at = start + i;
                    let Some((_, e)) = chars.next() else {
                        return Err(unterminated());
                    };
                    let ch = match e {
                        '"' | '\'' | '\\' => e,
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'u' => {
                            let bad = || {
                                self.err(
                                    escape_at,
                                    "invalid unicode escape (write it like \\u{e9}, with 1 to 6 hex digits)",
                                )
                            };
                            if chars.next_if(|&(_, c)| c == '{').is_none() {
                                return Err(bad());
                            }
                            let mut hex = String::new();
                            while let Some((_, h)) = chars.next_if(|&(_, c)| c.is_ascii_hexdigit())
                            {
                                hex.push(h);
                                if hex.len() > 6 {
                                    return Err(bad());
                                }
                            }
                            if hex.is_empty() || chars.next_if(|&(_, c)| c == '}').is_none() {
                                return Err(bad());
                            }
                            let code = u32::from_str_radix(&hex, 16).unwrap_or(u32::MAX);
                            match char::from_u32(code) {
                                Some(ch) => ch,
                                None => {
                                    return Err(self.err(
                                        escape_at,
                                        format!(
                                            "invalid unicode escape \"\\u{{{hex}}}\": not a character"
                                        ),
                                    ));
                                }
                            }
                        }
                        '\n' => return Err(unterminated()),
                        other => {
                            return Err(self.err(
                                escape_at,
                                format!(
                                    "invalid escape \"\\{}\" (use \\\", \\', \\\\, \\n, \\t or \\u{{...}})",
                                    show_char(other)
                                ),
                            ));
                        }
                    };
                    value.push(ch);
                }
                c => value.push(c),
            }
            count += 1;
            if count > MAX_STRING_CHARS {
                return Err(self.err(
                    start,
                    format!("string is too long (more than {MAX_STRING_CHARS} characters)"),
                ));
            }
        }
    }
}
