//! Route composition, middleware, the OpenAPI document, health and metrics
//! endpoints, and the embedded console.

pub mod extract;
mod ui;

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpResponse, get, web};
use serde_json::json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{AppExt, scope};

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "The Switchboard contact center API. Authenticate with an API key \
                       (`Authorization: Bearer sbk_...`) or, from the console, with the session \
                       cookie plus `X-CSRF-Token` on writes. Errors have one shape: \
                       `{\"error\": {\"code\", \"message\", \"details\"}}`. Lists are paged with \
                       `limit` and the `next_cursor` of the previous page."
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, ErrorCode, crate::error::FieldError)),
    tags(
        (name = "auth", description = "Sign-in and sessions"),
        (name = "users", description = "Users and roles"),
        (name = "api-keys", description = "API keys for programs"),
        (name = "audit", description = "Security audit log"),
        (name = "tenant", description = "Tenant settings"),
        (name = "interactions", description = "Interactions and their timelines"),
        (name = "events", description = "The tenant's event feed"),
        (name = "webhooks", description = "Signed event delivery to your endpoints"),
        (name = "jobs", description = "Long-running work"),
        (name = "routing", description = "Skills, queues and agents"),
        (name = "contacts", description = "Contacts, their attributes, search and export"),
        (name = "lists", description = "Static lists of contacts"),
        (name = "segments", description = "Dynamic segments: filters written as expressions"),
        (name = "consent", description = "Consent, suppression and may-we-contact decisions"),
        (name = "imports", description = "Uploads and CSV imports"),
        (name = "prompts", description = "Recordings callers hear (WAV, any common format)"),
        (name = "flows", description = "IVR flows (Rhai): versions, validation, simulation, offline tests, publishing; flow settings"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("sb_session"))),
        );
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
    }
}

/// Every `/api/v1` route, from every context.
fn api_v1(cfg: &mut ServiceConfig) {
    crate::iam::http::configure(cfg);
    crate::interactions::http::configure(cfg);
    crate::jobs::http::configure(cfg);
    crate::acd::catalog::configure(cfg);
    crate::acd::http::configure(cfg);
    crate::contacts::http::configure(cfg);
    crate::sip::configure(cfg);
    crate::prompts::configure(cfg);
    crate::ivr::http::configure(cfg);
}

/// The OpenAPI document of the routes above, generated from the code.
pub fn openapi() -> serde_json::Value {
    let (_, api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .service(scope::scope("/api/v1").configure(api_v1))
        .split_for_parts();
    let mut doc = serde_json::to_value(&api).expect("the OpenAPI document serialises");
    complete_openapi(&mut doc);
    doc
}

/// Fills in what the derive leaves out, so the document is valid and says
/// what the server enforces: every `{param}` of a path is declared (ids are
/// UUIDs), every response has a description, and `limit` shows its range.
fn complete_openapi(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let names: Vec<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for (_method, op) in ops.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let params = op.entry("parameters").or_insert_with(|| json!([]));
            if let Some(list) = params.as_array_mut() {
                for name in &names {
                    let declared = list
                        .iter()
                        .any(|p| p["name"] == name.as_str() && p["in"] == "path");
                    if !declared {
                        list.push(json!({
                            "name": name, "in": "path", "required": true,
                            "description": "The object's id (404 if it does not exist in your tenant).",
                            "schema": {"type": "string", "format": "uuid"}
                        }));
                    }
                }
                for p in list.iter_mut() {
                    if p["name"] == "limit" && p["in"] == "query" {
                        p["schema"] =
                            json!({"type": ["integer", "null"], "minimum": 1, "maximum": 200});
                        p["description"] = json!("Items per page, 1-200 (default 50).");
                    }
                }
                if list.is_empty() {
                    op.remove("parameters");
                }
            }
            // The error responses every route can give, from the one mapping.
            let has_body = op.contains_key("requestBody");
            let has_query = op
                .get("parameters")
                .and_then(|p| p.as_array())
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            let mut errors: Vec<(&str, &str)> =
                vec![("500", "Internal error; quote the request id")];
            if path != "/api/v1/auth/login" {
                errors.push(("401", "Not signed in, or the session or API key is invalid"));
                errors.push((
                    "403",
                    "Signed in, but the role does not allow this (or the CSRF token is missing)",
                ));
            }
            if !names.is_empty() || has_body || has_query {
                errors.push((
                    "404",
                    "No such object in your tenant (or one the request names)",
                ));
            }
            if has_body || has_query {
                errors.push((
                    "422",
                    "Invalid input; details.fields lists each field path and problem",
                ));
            }
            if has_body {
                errors.push(("400", "The body is not valid JSON"));
                errors.push(("413", "The body is larger than http.max_body_bytes"));
                errors.push(("415", "The body is not sent as application/json"));
            }
            if let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) {
                for (status, description) in errors {
                    responses.entry(status).or_insert_with(|| {
                        json!({
                            "description": description,
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                        })
                    });
                }
            }
            if let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) {
                for (status, resp) in responses.iter_mut() {
                    if let Some(r) = resp.as_object_mut()
                        && r.get("description")
                            .and_then(|d| d.as_str())
                            .is_none_or(str::is_empty)
                    {
                        let reason = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|c| actix_web::http::StatusCode::from_u16(c).ok())
                            .and_then(|c| c.canonical_reason())
                            .unwrap_or("Response");
                        r.insert("description".into(), json!(reason));
                    }
                }
            }
        }
    }
}

/// The whole application, as each HTTP worker builds it.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = state.settings.http.max_body_bytes;
    let ui_dir = state.settings.http.ui_dir.clone();
    let api = scope::scope("/api/v1")
        .app_data(web::QueryConfig::default().error_handler(crate::error::query_error))
        .app_data(web::PathConfig::default().error_handler(crate::error::path_error))
        .app_data(web::PayloadConfig::new(limit))
        .configure(api_v1)
        .route("/openapi.json", web::get().to(openapi_json))
        .default_service(web::to(api_not_found));
    App::new()
        .into_utoipa_app()
        .app_data(state)
        .service(api)
        .into_app()
        .wrap(
            DefaultHeaders::new()
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Referrer-Policy", "same-origin"))
                .add((
                    "Content-Security-Policy",
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                )),
        )
        .wrap(from_fn(crate::telemetry::observe))
        .service(healthz)
        .service(readyz)
        .service(metrics)
        .configure(crate::contacts::http::configure_public)
        .configure(|cfg| ui::configure(cfg, ui_dir))
}

/// The API's routes and their methods, to tell "no such route" (404) from
/// "not with this method" (405).
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<(Vec<Option<String>>, Vec<String>)>,
}

impl RouteTable {
    pub fn from_openapi(doc: &serde_json::Value) -> Self {
        let mut routes = Vec::new();
        if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
            for (path, ops) in paths {
                let segs = path
                    .split('/')
                    .map(|s| {
                        if s.starts_with('{') {
                            None
                        } else {
                            Some(s.to_owned())
                        }
                    })
                    .collect();
                let methods = ops
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_uppercase()).collect())
                    .unwrap_or_default();
                routes.push((segs, methods));
            }
        }
        RouteTable { routes }
    }

    /// The methods of a route written without parameters (`/contacts/imports`),
    /// so that it is not mistaken for a parameter of another (`/contacts/{id}`).
    pub fn allowed_literal(&self, path: &str) -> Option<Vec<String>> {
        let parts: Vec<&str> = path.split('/').collect();
        self.routes.iter().find_map(|(segs, methods)| {
            let literal = segs.iter().all(Option::is_some);
            let same = segs.len() == parts.len()
                && segs
                    .iter()
                    .zip(&parts)
                    .all(|(s, p)| s.as_deref() == Some(*p));
            (literal && same).then(|| methods.clone())
        })
    }

    /// The methods a path allows, if it is a route at all.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let parts: Vec<&str> = path.split('/').collect();
        self.routes.iter().find_map(|(segs, methods)| {
            let matches = segs.len() == parts.len()
                && segs.iter().zip(&parts).all(|(s, p)| match s {
                    Some(s) => s == p,
                    None => !p.is_empty(),
                });
            matches.then(|| methods.clone())
        })
    }
}

async fn api_not_found(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Err(not_found_or_405(&req, &state.api_routes))
}

/// 405 with `Allow` when the path is a route but not for this method, else 404.
pub fn not_found_or_405(req: &actix_web::HttpRequest, routes: &RouteTable) -> ApiError {
    match routes
        .allowed_literal(req.path())
        .or_else(|| routes.allowed(req.path()))
    {
        Some(mut methods) => {
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into());
            }
            let allow = methods.join(", ");
            let mut e = ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} is not allowed here; use {allow}", req.method()),
            )
            .with_details(json!({ "allowed": methods }));
            e.allow = Some(allow);
            e
        }
        None => ApiError::new(ErrorCode::NotFound, "no such API route"),
    }
}

async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi_json.clone())
}

/// Liveness: the process serves HTTP.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and the service is not shutting down.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.ping().await;
    let stopping = state.shutdown.is_cancelled();
    let body = json!({ "status": if db && !stopping { "ready" } else { "unavailable" }, "database": db, "shutting_down": stopping });
    if db && !stopping {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
