//! The checks RFC 3261 (8.2, 16.3) asks of a server before it acts on a
//! request, on the parsed message: what fails is answered statelessly with
//! the error the RFC names (400, 415, 416, 420, 505) and goes no further.
//! The RFC 4475 torture messages (`tests/data/rfc4475`) hold it to this.
//!
//! The parser (rsip, inside rsipstack) already drops what it cannot read
//! at all; those datagrams get no answer (see ARCHITECTURE.md).

use rsipstack::sip::{Header, Headers, Method, Request, Scheme, StatusCode, Version};

/// Why a request is refused, and the headers the answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
    pub headers: Vec<Header>,
}

impl Refusal {
    fn bad(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BadRequest,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }
}

fn named<'a>(headers: &'a Headers, names: &[&str]) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| names.iter().any(|n| h.name().eq_ignore_ascii_case(n)))
        .map(|h| h.value())
        .collect()
}

/// Parameters (`;a=b;c`) with no name are malformed (`;;`, `;,`).
fn empty_params(value: &str) -> bool {
    value.contains(";;") || value.contains(";,") || value.trim_end().ends_with(';')
}

/// A display name's quotes are balanced (escaped quotes aside).
fn quotes_balanced(value: &str) -> bool {
    let mut inside = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if inside => {
                chars.next();
            }
            '"' => inside = !inside,
            _ => {}
        }
    }
    !inside
}

/// Linear white space around separators removed (`SIP / 2.0 /UDP h ; a = b`
/// reads `SIP/2.0/UDP h;a=b`), as the grammar allows it there.
fn tight(value: &str) -> String {
    let mut v = value.split_whitespace().collect::<Vec<_>>().join(" ");
    for sep in ["/", ";", "=", ","] {
        while v.contains(&format!(" {sep}")) || v.contains(&format!("{sep} ")) {
            v = v
                .replace(&format!(" {sep}"), sep)
                .replace(&format!("{sep} "), sep);
        }
    }
    v
}

fn via_ok(value: &str) -> bool {
    tight(value).split(',').all(|v| {
        let v = v.trim();
        let mut parts = v.splitn(2, char::is_whitespace);
        let proto = parts.next().unwrap_or_default();
        let rest = parts.next().unwrap_or_default().trim();
        proto.to_ascii_uppercase().starts_with("SIP/2.0/")
            && !rest.is_empty()
            && !rest.starts_with(';')
            && !empty_params(v)
    })
}

/// Option tags of `Require` this server supports (none yet).
const SUPPORTED: &[&str] = &[];

/// Checks a request; `None`: go on. ACKs are never answered, so they are
/// not checked here.
pub fn check(req: &Request) -> Option<Refusal> {
    if req.method == Method::Ack {
        return None;
    }
    if req.version != Version::V2 {
        return Some(Refusal {
            status: StatusCode::VersionNotSupported,
            reason: format!("version {} is not SIP/2.0", req.version),
            headers: Vec::new(),
        });
    }
    let h = &req.headers;
    for (name, short) in [("Call-ID", "i"), ("From", "f"), ("To", "t"), ("CSeq", "")] {
        // CSeq has no compact form: "" must not match a header with no name.
        let names: &[&str] = if short.is_empty() {
            &[name]
        } else {
            &[name, short]
        };
        let n = named(h, names).len();
        if n != 1 {
            return Some(Refusal::bad(if n == 0 {
                format!("no {name} header")
            } else {
                format!("{n} {name} headers")
            }));
        }
    }
    let vias = named(h, &["Via", "v"]);
    if vias.is_empty() {
        return Some(Refusal::bad("no Via header"));
    }
    if !vias.iter().all(|v| via_ok(v)) {
        return Some(Refusal::bad("malformed Via header"));
    }
    if named(h, &["Max-Forwards"]).len() > 1 {
        return Some(Refusal::bad("several Max-Forwards headers"));
    }
    let lengths = named(h, &["Content-Length", "l"]);
    if lengths.len() > 1 {
        return Some(Refusal::bad("several Content-Length headers"));
    }
    if let Some(l) = lengths.first() {
        match l.trim().parse::<u64>() {
            Ok(n) if n > req.body.len() as u64 => {
                return Some(Refusal::bad(format!(
                    "Content-Length {n} is more than the {} bytes sent",
                    req.body.len()
                )));
            }
            Ok(_) => {}
            Err(_) => return Some(Refusal::bad("Content-Length is not a number")),
        }
    }
    let Some(cseq) = named(h, &["CSeq"]).first().copied() else {
        return Some(Refusal::bad("no CSeq header"));
    };
    let mut it = cseq.split_whitespace();
    let (num, method) = (it.next(), it.next());
    if num.and_then(|n| n.parse::<u32>().ok()).is_none() || it.next().is_some() {
        return Some(Refusal::bad(
            "CSeq is not a number (0 to 2^32-1) and a method",
        ));
    }
    if !method.is_some_and(|m| m.eq_ignore_ascii_case(&req.method.to_string())) {
        return Some(Refusal::bad("the CSeq method is not the request's method"));
    }
    for name in ["From", "To", "Contact"] {
        for v in named(h, &[name, &name[..1].to_ascii_lowercase()]) {
            if !quotes_balanced(v) {
                return Some(Refusal::bad(format!("unbalanced quotes in {name}")));
            }
            if empty_params(&tight(v)) {
                return Some(Refusal::bad(format!("empty parameter in {name}")));
            }
            if v.contains("< ") || v.contains(" >") {
                return Some(Refusal::bad(format!("spaces inside <> in {name}")));
            }
        }
    }
    let uri = req.uri.to_string();
    if uri.contains(['<', '>']) || uri.contains(char::is_whitespace) {
        return Some(Refusal::bad("malformed Request-URI"));
    }
    match &req.uri.scheme {
        Some(Scheme::Sip) | Some(Scheme::Sips) => {}
        None => {
            return Some(Refusal {
                status: StatusCode::UnsupportedUriScheme,
                reason: "the Request-URI has no sip:, sips: or tel: scheme".into(),
                headers: Vec::new(),
            });
        }
        Some(Scheme::Other(s)) if s.eq_ignore_ascii_case("tel") => {}
        Some(Scheme::Other(s)) => {
            return Some(Refusal {
                status: StatusCode::UnsupportedUriScheme,
                reason: format!("URI scheme {s:?} is not supported"),
                headers: Vec::new(),
            });
        }
    }
    if req.method == Method::Register {
        let to = named(h, &["To", "t"])[0].to_ascii_lowercase();
        let aor = to.split('<').nth(1).unwrap_or(&to).trim_start();
        if !(aor.starts_with("sip:") || aor.starts_with("sips:")) {
            return Some(Refusal::bad(
                "the To of a REGISTER must be a sip: or sips: address",
            ));
        }
    }
    let required: Vec<String> = named(h, &["Require"])
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if !required.is_empty() {
        return Some(Refusal {
            status: StatusCode::BadExtension,
            reason: format!("unsupported extensions {required:?}"),
            headers: vec![Header::Other("Unsupported".into(), required.join(", "))],
        });
    }
    if req.method == Method::Invite {
        if let Some(accept) = named(h, &["Accept"]).first()
            && !accept.to_ascii_lowercase().contains("application/sdp")
            && !accept.contains("*/*")
        {
            return Some(Refusal {
                status: StatusCode::NotAcceptable,
                reason: "only application/sdp bodies are produced".into(),
                headers: vec![Header::Other(
                    "Warning".into(),
                    "399 switchboard \"only application/sdp is offered\"".into(),
                )],
            });
        }
        if !req.body.is_empty() {
            let ct = named(h, &["Content-Type", "c"])
                .first()
                .map(|c| c.to_ascii_lowercase())
                .unwrap_or_default();
            if !ct.trim_start().starts_with("application/sdp") {
                return Some(Refusal {
                    status: StatusCode::UnsupportedMediaType,
                    reason: format!("body type {ct:?} is not application/sdp"),
                    headers: vec![Header::Other("Accept".into(), "application/sdp".into())],
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Request {
        let msg = rsipstack::sip::SipMessage::try_from(text.replace('\n', "\r\n").as_str())
            .expect("parses");
        match msg {
            rsipstack::sip::SipMessage::Request(r) => r,
            _ => panic!("not a request"),
        }
    }

    const OK: &str = "OPTIONS sip:a@b.example SIP/2.0\nVia: SIP/2.0/UDP h.example;branch=z9hG4bK1\nFrom: <sip:c@d.example>;tag=1\nTo: <sip:a@b.example>\nCall-ID: x\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n";

    #[test]
    fn a_plain_request_passes() {
        assert_eq!(check(&req(OK)), None);
    }

    /// Found by the `sip_message` fuzz target: a header line with no name
    /// (`: 0`) counted as the CSeq, then the missing CSeq was indexed.
    #[test]
    fn a_header_with_no_name_is_not_a_cseq() {
        let text = OK.replace("CSeq: 1 OPTIONS\n", ":0\n");
        let r = check(&req(&text)).expect("refused");
        assert_eq!(r.status, StatusCode::BadRequest);
        assert_eq!(r.reason, "no CSeq header");
    }

    #[test]
    fn each_rule_names_its_problem() {
        let cases = [
            (
                OK.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
                400,
                "method",
            ),
            (
                OK.replace("CSeq: 1 OPTIONS", "CSeq: 4294967296 OPTIONS"),
                400,
                "CSeq",
            ),
            (OK.replace("Call-ID: x\n", ""), 400, "Call-ID"),
            (
                OK.replace("Call-ID: x\n", "Call-ID: x\ni: y\n"),
                400,
                "Call-ID",
            ),
            (
                OK.replace("Content-Length: 0", "Content-Length: 10"),
                400,
                "Content-Length",
            ),
            (
                OK.replace("branch=z9hG4bK1", "branch=z9hG4bK1;;"),
                400,
                "Via",
            ),
            (
                OK.replace("From: <sip:c@d.example>", "From: \"Joe <sip:c@d.example>"),
                400,
                "quotes",
            ),
            (
                OK.replace("Max-Forwards: 70\n", "Max-Forwards: 70\nRequire: nothing\n"),
                420,
                "extensions",
            ),
            (
                OK.replace("OPTIONS sip:a@b.example", "OPTIONS nope:a@b.example"),
                416,
                "scheme",
            ),
        ];
        for (text, status, word) in cases {
            let r = check(&req(&text)).unwrap_or_else(|| panic!("passed: {text}"));
            assert_eq!(u16::from(r.status.clone()), status, "{text}");
            assert!(r.reason.contains(word), "{}: {text}", r.reason);
        }
    }

    #[test]
    fn white_space_around_separators_is_allowed() {
        assert_eq!(
            tight("SIP  /  2.0\t/UDP  h ;  branch = z9"),
            "SIP/2.0/UDP h;branch=z9"
        );
        assert!(via_ok(
            "SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  , SIP / 2.0 / UDP 192.168.255.111 ; branch= z9hG4bK30239"
        ));
        assert!(!via_ok("SIP/2.0/UDP 192.0.2.15;;,;,,"));
    }

    #[test]
    fn quotes_escape() {
        assert!(quotes_balanced(r#""a \" b" <sip:x@y>"#));
        assert!(!quotes_balanced(r#""a <sip:x@y>"#));
    }
}
