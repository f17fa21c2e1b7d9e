//! The one mapping from errors to HTTP.
//!
//! Every context has its own error enum; each converts into [`ApiError`] here
//! with an exhaustive match, and [`ApiError`] renders the one body shape
//! `{"error": {"code", "message", "details"}}`. Codes come from [`ErrorCode`],
//! the single table of stable codes and their statuses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// Stable, documented error codes. Clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    ValidationFailed,
    /// A flow script (or its tests) does not compile or names what does
    /// not exist: details are diagnostics with line and column.
    InvalidFlow,
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unauthenticated,
    InvalidCredentials,
    Forbidden,
    CsrfFailed,
    NotFound,
    MethodNotAllowed,
    Conflict,
    InvalidTransition,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            MalformedJson | BadRequest => StatusCode::BAD_REQUEST,
            ValidationFailed | InvalidFlow => StatusCode::UNPROCESSABLE_ENTITY,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Unauthenticated | InvalidCredentials => StatusCode::UNAUTHORIZED,
            Forbidden | CsrfFailed => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Conflict | InvalidTransition => StatusCode::CONFLICT,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedJson => "malformed_json",
            ValidationFailed => "validation_failed",
            InvalidFlow => "invalid_flow",
            BadRequest => "bad_request",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            Unauthenticated => "unauthenticated",
            InvalidCredentials => "invalid_credentials",
            Forbidden => "forbidden",
            CsrfFailed => "csrf_failed",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Conflict => "conflict",
            InvalidTransition => "invalid_transition",
            RateLimited => "rate_limited",
            Unavailable => "unavailable",
            Internal => "internal",
        }
    }
}

/// One invalid field: a JSON path (`users[2].email`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Collects field errors while validating a request.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }
    /// Checks a string's length in characters.
    pub fn length(&mut self, path: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min {
            self.add(
                path,
                if min == 1 {
                    "must not be empty".to_string()
                } else {
                    format!("must be at least {min} characters")
                },
            );
        } else if n > max {
            self.add(path, format!("must be at most {max} characters"));
        }
    }
    /// Records the error of a parse, if any, and returns the value.
    pub fn check<T, E: std::fmt::Display>(&mut self, path: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(path, e.to_string());
                None
            }
        }
    }
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code from the table in the API reference.
    #[schema(value_type = String, example = "validation_failed")]
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
    /// Structured detail, e.g. `{"fields": [{"path", "message"}]}` for validation errors.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// `Clone` so that one authentication outcome can be shared by the
/// extractors of a request (see `iam::auth::settle`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    /// Extra response headers (e.g. Retry-After).
    pub retry_after_secs: Option<u64>,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: json!({}),
            retry_after_secs: None,
            allow: None,
        }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [one] => format!("{}: {}", one.path, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self::new(ErrorCode::ValidationFailed, message).with_details(json!({ "fields": fields }))
    }
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(path, message)])
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(ErrorCode::RateLimited, "too many attempts; try again later")
            .with_details(json!({ "retry_after_secs": retry_after_secs }));
        e.retry_after_secs = Some(retry_after_secs);
        e
    }
    /// An unexpected failure: logs the whole cause chain once and tells the
    /// client only that something went wrong (with the request id to quote).
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let err = err.into();
        tracing::error!(error = format!("{err:#}"), "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; quote the request id when reporting it",
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(allow) = &self.allow {
            res.insert_header(("Allow", allow.clone()));
        }
        if let Some(secs) = self.retry_after_secs {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        if self.code == ErrorCode::Unauthenticated || self.code == ErrorCode::InvalidCredentials {
            res.insert_header(("WWW-Authenticate", "Bearer realm=\"switchboard\""));
        }
        res.json(ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        })
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::internal(e)
    }
}

impl From<sea_orm::TransactionError<sea_orm::DbErr>> for ApiError {
    fn from(e: sea_orm::TransactionError<sea_orm::DbErr>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(e)
            | sea_orm::TransactionError::Transaction(e) => e.into(),
        }
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(e: sea_orm::TransactionError<ApiError>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Maps actix's own extractor failures (bad query strings, bad paths) onto the
/// same body shape.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(
        ErrorCode::ValidationFailed,
        format!("invalid query string: {err}"),
    )
    .with_details(json!({ "fields": [FieldError::new("query", err.to_string())] }))
    .into()
}

pub fn path_error(
    _err: actix_web::error::PathError,
    req: &actix_web::HttpRequest,
) -> actix_web::Error {
    // `/contacts/imports` with PATCH lands on `/contacts/{id}`: that is a
    // route with the wrong method, not a missing object.
    if let Some(state) = req.app_data::<actix_web::web::Data<crate::state::AppState>>()
        && state.api_routes.allowed_literal(req.path()).is_some()
    {
        return crate::http::not_found_or_405(req, &state.api_routes).into();
    }
    ApiError::new(
        ErrorCode::NotFound,
        "no such object (the id in the path is not valid)",
    )
    .into()
}

// ---- context errors to HTTP: the one place, each match exhaustive ---------

impl From<crate::iam::store::IamError> for ApiError {
    fn from(e: crate::iam::store::IamError) -> Self {
        use crate::iam::store::IamError::*;
        match e {
            EmailTaken => ApiError::conflict("a user with this email already exists"),
            SlugTaken => ApiError::conflict("a tenant with this slug already exists"),
            NotFound(what) => ApiError::not_found(what),
            LastAdmin => ApiError::conflict("the tenant must keep at least one active admin"),
            Db(e) => e.into(),
        }
    }
}

impl From<crate::interactions::service::InteractionError> for ApiError {
    fn from(e: crate::interactions::service::InteractionError) -> Self {
        use crate::interactions::domain::LifecycleError;
        use crate::interactions::service::InteractionError::*;
        match e {
            NotFound => ApiError::not_found("interaction"),
            Lifecycle(LifecycleError::Invalid(t)) => {
                ApiError::new(ErrorCode::InvalidTransition, t.to_string())
                    .with_details(json!({ "state": t.state, "action": t.action }))
            }
            Lifecycle(LifecycleError::WrongAgent) => ApiError::new(
                ErrorCode::InvalidTransition,
                "the interaction is offered to another agent",
            ),
            Contended => ApiError::new(
                ErrorCode::Conflict,
                "the interaction is changing concurrently; try again",
            ),
            Db(e) => e.into(),
        }
    }
}

impl From<crate::acd::service::AcdError> for ApiError {
    fn from(e: crate::acd::service::AcdError) -> Self {
        use crate::acd::engine::EngineError as E;
        use crate::acd::service::AcdError::*;
        match e {
            Engine(e) => match e {
                E::UnknownAgent(_) => ApiError::not_found("agent"),
                E::UnknownQueue(_) => ApiError::not_found("queue"),
                E::UnknownInteraction(_) => {
                    ApiError::new(ErrorCode::Conflict, "the interaction is not being routed")
                }
                E::UnknownSkill(_) | E::LevelOutOfRange { .. } => {
                    ApiError::field("skills", e.to_string())
                }
                E::ChannelNotAccepted { .. } => ApiError::field("queue_id", e.to_string()),
                E::NotOffered { .. } => ApiError::new(
                    ErrorCode::InvalidTransition,
                    "the interaction is not offered to this agent (any more)",
                ),
                E::DuplicateInteraction(_)
                | E::NotWaiting(_)
                | E::NotInWrapUp(_)
                | E::Unservable(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            },
            Config(e) => ApiError::field("routing", e.to_string()),
            Stored { .. } => {
                tracing::error!(error = %e, "stored routing configuration is not valid");
                ApiError::new(ErrorCode::Internal, e.to_string())
            }
            NotAnAgent => ApiError::new(
                ErrorCode::Forbidden,
                "you are not an agent of this workspace",
            ),
            NoInteraction => ApiError::not_found("interaction"),
            Interaction(e) => e.into(),
            Db(e) => e.into(),
        }
    }
}

impl From<crate::interactions::webhooks::WebhookError> for ApiError {
    fn from(e: crate::interactions::webhooks::WebhookError) -> Self {
        use crate::interactions::webhooks::WebhookError::*;
        match e {
            NotFound => ApiError::not_found("webhook"),
            BadUrl(m) => ApiError::field("url", m),
            Db(e) => e.into(),
        }
    }
}

impl From<crate::contacts::store::ContactError> for ApiError {
    fn from(e: crate::contacts::store::ContactError) -> Self {
        use crate::contacts::store::ContactError::*;
        match e {
            NotFound => ApiError::not_found("contact"),
            ExternalIdTaken(id) => {
                ApiError::conflict(format!("another contact already has external id {id:?}"))
                    .with_details(json!({ "field": "external_id" }))
            }
            Db(e) => e.into(),
        }
    }
}

/// A file that cannot be imported: 422 with the path of what is wrong
/// (`upload`, `mapping` or `mapping.<field>`).
impl From<crate::contacts::import::FileError> for ApiError {
    fn from(e: crate::contacts::import::FileError) -> Self {
        use crate::contacts::import::FileError::*;
        match e {
            Invalid { path, message } => ApiError::field(path, message),
            Io(e) => ApiError::internal(e),
            Db(e) => e.into(),
        }
    }
}

pub fn from_list_error(e: crate::contacts::lists::ListError) -> ApiError {
    use crate::contacts::lists::ListError::*;
    match e {
        NotFound(what) => ApiError::not_found(what),
        NameTaken(what) => ApiError::conflict(format!("a {what} with this name already exists")),
        Db(e) => e.into(),
    }
}
