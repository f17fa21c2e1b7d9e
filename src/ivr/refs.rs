//! What a script names: prompts, queues, skills, phrases and HTTP hosts
//! written as literals, with where they are written (for validation on
//! save). A small lexer over the source: comments and strings are skipped
//! or read the way Rhai reads them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Prompt(String),
    Queue(String),
    Skill(String),
    Phrase(String),
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub what: Ref,
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

fn lex(src: &str) -> Vec<(Tok, u32, u32)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    let advance = |i: &mut usize, line: &mut u32, col: &mut u32| {
        let c = chars[*i];
        *i += 1;
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let (l0, c0) = (line, col);
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col);
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    advance(&mut i, &mut line, &mut col);
                    advance(&mut i, &mut line, &mut col);
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    advance(&mut i, &mut line, &mut col);
                    advance(&mut i, &mut line, &mut col);
                    if depth == 0 {
                        break;
                    }
                } else {
                    advance(&mut i, &mut line, &mut col);
                }
            }
        } else if c == '\'' {
            // A character literal ('"', '\'', '\n'): not a string.
            advance(&mut i, &mut line, &mut col);
            if i < chars.len() && chars[i] == '\\' {
                advance(&mut i, &mut line, &mut col);
            }
            if i < chars.len() {
                advance(&mut i, &mut line, &mut col);
            }
            while i < chars.len() && chars[i] != '\'' && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col);
            }
            if i < chars.len() && chars[i] == '\'' {
                advance(&mut i, &mut line, &mut col);
            }
        } else if c == '"' || c == '`' {
            let quote = c;
            advance(&mut i, &mut line, &mut col);
            let mut s = String::new();
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' && quote == '"' && i + 1 < chars.len() {
                    advance(&mut i, &mut line, &mut col);
                    let e = chars[i];
                    s.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                    advance(&mut i, &mut line, &mut col);
                    continue;
                }
                s.push(chars[i]);
                advance(&mut i, &mut line, &mut col);
            }
            if i < chars.len() {
                advance(&mut i, &mut line, &mut col);
            }
            out.push((Tok::Str(s), l0, c0));
        } else if c.is_alphabetic() || c == '_' {
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                advance(&mut i, &mut line, &mut col);
            }
            out.push((Tok::Ident(s), l0, c0));
        } else {
            if !c.is_whitespace() {
                out.push((Tok::Punct(c), l0, c0));
            }
            advance(&mut i, &mut line, &mut col);
        }
    }
    out
}

const PROMPT_KEYS: &[&str] = &["prompt", "invalid", "no_input", "hold"];

/// The literals a script names.
pub fn scan(src: &str) -> Vec<Found> {
    let t = lex(src);
    let mut out = Vec::new();
    let ident = |k: usize| match t.get(k) {
        Some((Tok::Ident(s), ..)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |k: usize, p: char| matches!(t.get(k), Some((Tok::Punct(q), ..)) if *q == p);
    let string = |k: usize| match t.get(k) {
        Some((Tok::Str(s), l, c)) => Some((s.clone(), *l, *c)),
        _ => None,
    };
    // A list of string literals starting at k (`[ "a", "b" ]`).
    let strings_at = |k: usize| {
        let mut v = Vec::new();
        if !punct(k, '[') {
            return v;
        }
        let mut j = k + 1;
        while let Some(s) = string(j) {
            v.push(s);
            j += 1;
            if punct(j, ',') {
                j += 1;
            } else {
                break;
            }
        }
        v
    };
    for k in 0..t.len() {
        let Some(name) = ident(k) else { continue };
        // Calls whose first argument is a literal.
        if punct(k + 1, '(')
            && let Some((s, l, c)) = string(k + 2)
        {
            let r = match name {
                "play" => Some(Ref::Prompt(s)),
                "queue" => Some(Ref::Queue(s)),
                "http_get" | "http_post" => Some(Ref::Url(s)),
                _ => None,
            };
            if let Some(what) = r {
                out.push(Found {
                    what,
                    line: l,
                    column: c,
                });
            }
        }
        // Options: `key: "literal"` and `key: ["a", "b"]`.
        if punct(k + 1, ':') {
            if PROMPT_KEYS.contains(&name)
                && let Some((s, l, c)) = string(k + 2)
            {
                out.push(Found {
                    what: Ref::Prompt(s),
                    line: l,
                    column: c,
                });
            }
            if name == "skills" || name == "phrases" {
                for (s, l, c) in strings_at(k + 2) {
                    out.push(Found {
                        what: if name == "skills" {
                            Ref::Skill(s)
                        } else {
                            Ref::Phrase(s)
                        },
                        line: l,
                        column: c,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_literals_with_their_place_and_skips_comments() {
        let src = r#"// play("not_me")
answer();
play("welcome");
/* queue("nope") */
let c = menu(#{ prompt: "main_menu", invalid: "sorry", options: "12" });
if c == "1" { queue("Sales", #{ skills: ["french", "billing"], hold: "music" }) }
let h = listen(#{ phrases: ["agent please", "sales"] });
http_get("https://crm.example.com/x");
let s = "play(\"inside a string\")";
let q = '"'; queue("AfterChar"); let e = '\'';
"#;
        let f = scan(src);
        let what: Vec<_> = f.iter().map(|f| (f.what.clone(), f.line)).collect();
        assert_eq!(
            what,
            vec![
                (Ref::Prompt("welcome".into()), 3),
                (Ref::Prompt("main_menu".into()), 5),
                (Ref::Prompt("sorry".into()), 5),
                (Ref::Queue("Sales".into()), 6),
                (Ref::Skill("french".into()), 6),
                (Ref::Skill("billing".into()), 6),
                (Ref::Prompt("music".into()), 6),
                (Ref::Phrase("agent please".into()), 7),
                (Ref::Phrase("sales".into()), 7),
                (Ref::Url("https://crm.example.com/x".into()), 8),
                (Ref::Queue("AfterChar".into()), 10),
            ]
        );
        assert_eq!(f[0].column, 6);
    }
}
