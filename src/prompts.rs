//! Prompts: the recordings callers hear (greetings now, IVR menus later),
//! one folder per tenant, `<data.dir>/prompts/<tenant id>/<name>.wav`.
//!
//! Supervisors upload a WAV of any common rate and format (PCM 8/16/24/32
//! bit, float, mu-law, A-law; mono or stereo): it is checked by decoding it
//! before it is stored, kept as uploaded, and converted to 8 kHz mono once
//! when a call first plays it (the prompt cache). A replaced or deleted
//! prompt leaves the cache of this node at once.

use std::path::{Path, PathBuf};

use actix_web::{HttpRequest, HttpResponse, delete, get, put, web};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::extract::{check_declared_length, payload_too_large};
use crate::iam::store::audit_principal;
use crate::iam::{Auth, Staff, Supervisors};
use crate::ids::TenantId;
use crate::media::wav;
use crate::state::AppState;

/// The largest prompt accepted (about 10 minutes of 16-bit 16 kHz audio).
pub const MAX_PROMPT_BYTES: u64 = 20 << 20;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_prompts)
        .service(get_prompt)
        .service(put_prompt)
        .service(delete_prompt);
}

/// Whether `name` may name a prompt (no path tricks).
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.contains("..")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A tenant's prompt folder.
pub fn dir(data_dir: &Path, tenant: TenantId) -> PathBuf {
    data_dir.join("prompts").join(tenant.to_string())
}

/// Where a tenant's prompt named `name` is stored (None: not a name).
pub fn path(data_dir: &Path, tenant: TenantId, name: &str) -> Option<PathBuf> {
    name_ok(name).then(|| dir(data_dir, tenant).join(format!("{name}.wav")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PromptView {
    pub name: String,
    /// The stored file's size.
    pub bytes: u64,
    /// Playing time.
    pub duration_ms: u64,
    /// As uploaded.
    pub sample_rate: u32,
    pub channels: u16,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

fn bad_name() -> ApiError {
    ApiError::field(
        "name",
        "must be a prompt name: 1-100 letters, digits, '.', '_', '-' (no '..')",
    )
}

async fn view(name: String, p: PathBuf) -> ApiResult<PromptView> {
    let found = tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&p)?;
        let audio = wav::load(&p).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok::<_, std::io::Error>((meta, audio))
    })
    .await
    .map_err(ApiError::internal)?;
    let (meta, audio) = match found {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("prompt"));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    Ok(PromptView {
        name,
        bytes: meta.len(),
        duration_ms: audio.samples.len() as u64 * 1000 / wav::RATE as u64,
        sample_rate: audio.source.sample_rate,
        channels: audio.source.channels,
        updated_at: meta
            .modified()
            .map(chrono::DateTime::<chrono::Utc>::from)
            .unwrap_or_else(|_| chrono::Utc::now()),
    })
}

/// The tenant's prompts, by name.
#[utoipa::path(tag = "prompts", responses((status = 200, body = Vec<PromptView>)))]
#[get("/prompts")]
async fn list_prompts(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
) -> ApiResult<web::Json<Vec<PromptView>>> {
    let d = dir(&state.settings.data.dir, auth.tenant_id);
    let mut names: Vec<String> = match std::fs::read_dir(&d) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".wav")
                    .filter(|s| name_ok(s))
                    .map(str::to_owned)
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ApiError::internal(e)),
    };
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let p = d.join(format!("{n}.wav"));
        match view(n, p).await {
            Ok(v) => out.push(v),
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(web::Json(out))
}

/// One prompt's audio, as uploaded (`audio/wav`).
#[utoipa::path(tag = "prompts", params(("name" = String, Path, description = "The prompt's name")), responses((status = 200, content_type = "audio/wav", body = Vec<u8>), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[get("/prompts/{name}")]
async fn get_prompt(
    state: web::Data<AppState>,
    auth: Auth<Staff>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let p = path(&state.settings.data.dir, auth.tenant_id, &name).ok_or_else(bad_name)?;
    match tokio::fs::read(&p).await {
        Ok(bytes) => Ok(HttpResponse::Ok().content_type("audio/wav").body(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::not_found("prompt")),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// Upload (or replace) a prompt: the body is a WAV file of any common rate
/// and format, up to 20 MiB. It is decoded before it is stored; a file we
/// cannot play is refused (422) and nothing changes.
#[utoipa::path(tag = "prompts", params(("name" = String, Path, description = "The prompt's name: letters, digits, '.', '_', '-'")), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A WAV file (sent as application/octet-stream or audio/wav)"), responses((status = 200, body = PromptView), (status = 413, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[put("/prompts/{name}")]
async fn put_prompt(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    req: HttpRequest,
    name: web::Path<String>,
    mut body: web::Payload,
) -> ApiResult<HttpResponse> {
    let name = name.into_inner();
    let p = path(&state.settings.data.dir, auth.tenant_id, &name).ok_or_else(bad_name)?;
    let too_large = || {
        payload_too_large(
            format!("a prompt may be at most {MAX_PROMPT_BYTES} bytes"),
            MAX_PROMPT_BYTES,
        )
    };
    check_declared_length(&req, MAX_PROMPT_BYTES, too_large)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("the upload broke off: {e}")))?;
        if bytes.len() as u64 + chunk.len() as u64 > MAX_PROMPT_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    // Decoded (and so checked) off the async threads.
    let checked = tokio::task::spawn_blocking({
        let bytes = bytes.clone();
        move || wav::decode(&bytes)
    })
    .await
    .map_err(ApiError::internal)?;
    if let Err(e) = checked {
        return Err(ApiError::field(
            "body",
            format!("not a WAV file we can play: {e}"),
        ));
    }
    let d = dir(&state.settings.data.dir, auth.tenant_id);
    let tmp = d.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
    let written = async {
        tokio::fs::create_dir_all(&d).await?;
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, &p).await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApiError::internal(e));
    }
    forget(&state, &p);
    audit_principal(
        &state.db.conn,
        &auth,
        &meta,
        "prompt.saved",
        "prompt",
        None,
        json!({ "name": name, "bytes": bytes.len() }),
    )
    .await?;
    Ok(HttpResponse::Ok().json(view(name, p).await?))
}

/// Delete a prompt: numbers greeting with it play nothing from then on.
#[utoipa::path(tag = "prompts", params(("name" = String, Path, description = "The prompt's name")), responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
#[delete("/prompts/{name}")]
async fn delete_prompt(
    state: web::Data<AppState>,
    auth: Auth<Supervisors>,
    meta: crate::iam::auth::RequestMeta,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let name = name.into_inner();
    let p = path(&state.settings.data.dir, auth.tenant_id, &name).ok_or_else(bad_name)?;
    match tokio::fs::remove_file(&p).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("prompt"));
        }
        Err(e) => return Err(ApiError::internal(e)),
    }
    forget(&state, &p);
    audit_principal(
        &state.db.conn,
        &auth,
        &meta,
        "prompt.deleted",
        "prompt",
        None,
        json!({ "name": name }),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Drops a prompt from this node's cache.
fn forget(state: &AppState, p: &Path) {
    if let Some(sip) = state.sip.and_then(|a| crate::sip::outbound::sip_for(a.udp)) {
        sip.prompts.forget(p);
    }
}
