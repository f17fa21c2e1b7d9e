//! Request extractors with the API's error conventions: a JSON body parser
//! that reports syntax errors as 400 and type errors as 422 with the field
//! path, and cursor pagination.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorCode, FieldError};
use crate::state::AppState;

/// A JSON request body. Unlike actix's own, it distinguishes malformed JSON
/// (400) from well-formed JSON of the wrong shape (422, with the path of the
/// offending field), and enforces the configured size limit (413).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.settings.http.max_body_bytes)
            .unwrap_or(1024 * 1024);
        let content_type_ok = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        let mut payload = payload.take();
        let req = req.clone();
        Box::pin(async move {
            // Credentials are checked before the body is judged: a caller who
            // may not make this request learns nothing from its validation.
            crate::iam::auth::settle(&req).await;
            // Then let a bad path parameter (polled before the body, and
            // yielding once after the credentials) be reported first: a
            // missing object is a 404 (or a 405 for a literal route with
            // another method), whatever the body says.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            if !content_type_ok {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "send the body as JSON with Content-Type: application/json",
                ));
            }
            let too_large = || {
                payload_too_large(
                    format!("the body is larger than {limit} bytes"),
                    limit as u64,
                )
            };
            check_declared_length(&req, limit as u64, too_large)?;
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(Json)
        })
    }
}

/// 413 for a body over `limit` bytes: `message`, and the limit in the
/// details (`limit_bytes`).
pub fn payload_too_large(message: impl Into<String>, limit: u64) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, message)
        .with_details(serde_json::json!({ "limit_bytes": limit }))
}

/// Refuses a body whose `Content-Length` says it is over `limit` bytes
/// (with `too_large()`, as a rule a [`payload_too_large`]) before any of it
/// is read. A body that does not declare its length must still be counted
/// as it is read.
pub fn check_declared_length(
    req: &HttpRequest,
    limit: u64,
    too_large: impl FnOnce() -> ApiError,
) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(too_large()),
        _ => Ok(()),
    }
}

/// Parses `bytes` as `T` with the API's error conventions.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MalformedJson,
            "the body is empty; send a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => {
            // Trailing garbage after the value is malformed too.
            let mut rest =
                serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>();
            rest.next();
            if rest.next().is_some() {
                return Err(ApiError::new(
                    ErrorCode::MalformedJson,
                    "unexpected data after the JSON value",
                ));
            }
            if let Some(path) = nul_path(bytes) {
                return Err(ApiError::field(
                    path,
                    "must not contain the NUL character (U+0000)",
                ));
            }
            Ok(v)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // Whether the body is JSON at all decides between 400 and 422,
            // not serde's category: it can meet a wrong field before a later
            // syntax error, and it reports some wrong types (a number where
            // an enum's string belongs) as syntax errors.
            if let Err(syntax) = serde_json::from_slice::<serde_json::Value>(bytes) {
                return Err(ApiError::new(
                    ErrorCode::MalformedJson,
                    format!("the body is not valid JSON: {syntax}"),
                ));
            }
            let path = if path == "." {
                "body".to_string()
            } else {
                path
            };
            let message = match inner.classify() {
                serde_json::error::Category::Data => strip_position(&inner.to_string()),
                _ => "has the wrong type".to_owned(),
            };
            Err(ApiError::validation(vec![FieldError::new(path, message)]))
        }
    }
}

/// The path of the first string (or key) holding U+0000, if any. PostgreSQL
/// can store that character neither in `text` nor in `jsonb`, so it is
/// refused for every field here rather than failing as a database error.
/// In JSON it can only be written as the escape `\u0000`, so bodies without
/// that escape are not parsed again.
fn nul_path(bytes: &[u8]) -> Option<String> {
    let mut i = 0;
    let mut found = false;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                found = true;
                break;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    if !found {
        return None;
    }
    fn walk(v: &serde_json::Value, path: &str) -> Option<String> {
        match v {
            serde_json::Value::String(s) => s.contains('\0').then(|| path.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(x, &format!("{path}[{i}]"))),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, x)| {
                let p = if path == "body" {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k.contains('\0') {
                    Some(p)
                } else {
                    walk(x, &p)
                }
            }),
            _ => None,
        }
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&v, "body")
}

/// serde_json appends " at line 1 column 42" to messages; the path says more.
fn strip_position(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    shorten_quotes(msg)
}

/// Shortens what serde quotes back from the request (`invalid type: string
/// "…100 KB…", expected a sequence`, `unknown field `…``) so an error never
/// echoes a large or hostile value whole.
fn shorten_quotes(msg: &str) -> String {
    const KEEP: usize = 40;
    let mut out = String::with_capacity(msg.len().min(512));
    let mut chars = msg.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let mut kept = 0;
        let mut escaped = false;
        let mut cut = false;
        for d in chars.by_ref() {
            let closing = d == c && !escaped;
            escaped = d == '\\' && !escaped;
            if closing {
                break;
            }
            if kept < KEEP {
                out.push(d);
                kept += 1;
            } else {
                cut = true;
            }
        }
        if cut {
            out.push('…');
        }
        out.push(c);
    }
    out
}

/// `?limit=&cursor=` on every list endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Items per page, 1-200 (default 50).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<u64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n @ 1..=200) => Ok(n as u64),
            Some(_) => Err(ApiError::field("limit", "must be between 1 and 200")),
        }
    }

    /// The decoded cursor, parsed as the key type of the list.
    pub fn cursor<K: FromStr>(&self) -> Result<Option<K>, ApiError> {
        let Some(c) = &self.cursor else {
            return Ok(None);
        };
        let bad = || ApiError::field("cursor", "is not a cursor returned by this list");
        let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
        let s = String::from_utf8(raw).map_err(|_| bad())?;
        s.parse::<K>().map(Some).map_err(|_| bad())
    }
}

/// One page of a list, and the cursor of the next page if there is one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page whose next cursor points after `next_key`, if any.
    pub fn new<K: ToString>(items: Vec<T>, next_key: Option<K>) -> Self {
        Page {
            items,
            next_cursor: next_key.map(|k| URL_SAFE_NO_PAD.encode(k.to_string())),
        }
    }

    /// Builds a page from up to `limit + 1` rows: the extra row, if present,
    /// only tells that there is a next page.
    pub fn from_rows<R, K: ToString>(
        mut rows: Vec<R>,
        limit: u64,
        key: impl Fn(&R) -> K,
        map: impl FnMut(R) -> T,
    ) -> Self {
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_key = if more { rows.last().map(key) } else { None };
        Page::new(rows.into_iter().map(map).collect(), next_key)
    }
}

/// A query string, parsed only after the caller's credentials are judged
/// (like [`Json`]): an unauthenticated or forbidden caller gets 401/403, not
/// a validation error about the query.
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            // Every route with a query needs a caller: report theirs first.
            crate::iam::auth::principal(&req).await?;
            // Let the `Auth` extractor (polled before this one) report a
            // forbidden role before the query is judged.
            tokio::task::yield_now().await;
            web::Query::<T>::from_query(req.query_string())
                .map(|q| Query(q.into_inner()))
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::ValidationFailed,
                        format!("invalid query string: {e}"),
                    )
                    .with_details(
                        serde_json::json!({ "fields": [FieldError::new("query", e.to_string())] }),
                    )
                })
        })
    }
}

/// A path parameter, judged after the caller's credentials (like [`Query`]):
/// a bad id from an unauthenticated caller is a 401, not a 404.
pub struct Path<T>(pub T);

impl<T> std::ops::Deref for Path<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Path<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Path<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            crate::iam::auth::principal(&req).await?;
            tokio::task::yield_now().await;
            web::Path::<T>::extract(&req)
                .await
                .map(|p| Path(p.into_inner()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_shortened() {
        let long = "x".repeat(100_000);
        let msg =
            format!("invalid type: string \"{long}\", expected a sequence at line 1 column 9");
        let short = strip_position(&msg);
        assert!(short.len() < 120, "{short}");
        assert!(short.starts_with("invalid type: string \"xxxx"), "{short}");
        assert!(short.ends_with("…\", expected a sequence"), "{short}");
        assert_eq!(
            strip_position("unknown field `nme`, expected one of `name`, `role`"),
            "unknown field `nme`, expected one of `name`, `role`"
        );
        assert_eq!(
            shorten_quotes(r#"string "a\"b", expected"#),
            r#"string "a\"b", expected"#
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        qty: u32,
    }

    fn check(input: &[u8], code: ErrorCode, needle: &str) {
        let e = parse_json::<Body>(input).unwrap_err();
        assert_eq!(e.code, code, "{input:?}: {e}");
        let all = format!("{} {}", e.message, e.details);
        assert!(
            all.contains(needle),
            "{input:?}: expected {needle:?} in {all}"
        );
    }

    #[test]
    fn json_errors() {
        check(b"", ErrorCode::MalformedJson, "empty");
        check(b"{\"name\": ", ErrorCode::MalformedJson, "not valid JSON");
        check(
            b"{\"name\": \"a\", \"items\": []} x",
            ErrorCode::MalformedJson,
            "after",
        );
        check(
            b"{\"name\": \"\xff\xfe\", \"items\": []}",
            ErrorCode::MalformedJson,
            "not valid JSON",
        );
        check(
            b"{\"name\": 5, \"items\": []}",
            ErrorCode::ValidationFailed,
            "name",
        );
        check(
            b"{\"name\": \"a\", \"items\": [{\"qty\": 1}, {\"qty\": -1}]}",
            ErrorCode::ValidationFailed,
            "items[1].qty",
        );
        check(
            b"{\"name\": \"a\", \"items\": [], \"admin\": true}",
            ErrorCode::ValidationFailed,
            "admin",
        );
        check(b"{\"items\": []}", ErrorCode::ValidationFailed, "name");
        check(b"\"x\"", ErrorCode::ValidationFailed, "body");
        // An unknown field before a syntax error: still malformed.
        check(
            b"{\"admin\": 1,}",
            ErrorCode::MalformedJson,
            "not valid JSON",
        );
        check(
            b"{\"name\": 5, ",
            ErrorCode::MalformedJson,
            "not valid JSON",
        );
        check(
            b"{\"name\": 5, \"items\": []}",
            ErrorCode::ValidationFailed,
            "name",
        );
        // A wrong type that serde reports as a syntax error is still a 422.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        enum Color {
            Red,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Paint {
            color: Color,
        }
        let e = parse_json::<Paint>(b"{\"color\": 1}").unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationFailed, "{e}");
        assert_eq!(e.details["fields"][0]["path"], "color");
        // NUL characters, anywhere: refused with their path.
        check(
            b"{\"name\": \"a\\u0000\", \"items\": []}",
            ErrorCode::ValidationFailed,
            "name",
        );
        let e =
            parse_json::<serde_json::Value>(b"{\"a\": [1, {\"b\": \"x\\u0000\"}]}").unwrap_err();
        assert_eq!(e.details["fields"][0]["path"], "a[1].b");
        // An escaped backslash followed by u0000 is text, not NUL.
        assert!(parse_json::<Body>(b"{\"name\": \"\\\\u0000\", \"items\": []}").is_ok());
        assert!(parse_json::<Body>(b"{\"name\": \"a\", \"items\": [{\"qty\": 2}]}").is_ok());
    }

    #[test]
    fn pages() {
        let rows: Vec<u32> = (1..=4).collect();
        let p = Page::from_rows(rows, 3, |r| *r, |r| r * 10);
        assert_eq!(p.items, vec![10, 20, 30]);
        let params = PageParams {
            limit: Some(3),
            cursor: p.next_cursor.clone(),
        };
        assert_eq!(params.cursor::<u32>().unwrap(), Some(3));
        let last = Page::from_rows(vec![1u32], 3, |r| *r, |r| r);
        assert!(last.next_cursor.is_none());
        let bad = PageParams {
            limit: Some(0),
            cursor: Some("!!".into()),
        };
        assert!(bad.limit().is_err());
        assert!(bad.cursor::<u32>().is_err());
    }
}
