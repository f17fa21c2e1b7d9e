//! HTTP routes for jobs: status, progress, errors, cancellation.

use actix_web::{get, post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{JobKind, JobStatus, job};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{Page, PageParams};
use crate::iam::Auth;
use crate::ids::JobId;
use crate::interactions::service::parse_enum;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list_jobs).service(get_job).service(cancel_job);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: JobId,
    pub kind: JobKind,
    pub status: JobStatus,
    /// Units of work done (rows, events...).
    pub progress_done: i64,
    /// Units of work in all, once known.
    pub progress_total: Option<i64>,
    /// Of the units done, those that failed (rows an import rejected: see
    /// its error report), for jobs that count them; as of the last checkpoint.
    pub progress_failed: Option<i64>,
    /// `progress_done / progress_total` in percent, once the total is known.
    pub percent: Option<f64>,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub attempts: i32,
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<job::Model> for JobView {
    fn from(j: job::Model) -> Self {
        let percent = j.progress_total.map(|t| {
            if t <= 0 {
                100.0
            } else {
                ((j.progress_done as f64 / t as f64) * 1000.0).round() / 10.0
            }
        });
        Self {
            id: j.id,
            kind: parse_enum(&j.kind),
            status: parse_enum(&j.status),
            progress_done: j.progress_done,
            progress_total: j.progress_total,
            progress_failed: j
                .checkpoint
                .as_ref()
                .and_then(|c| c.get("failed"))
                .and_then(serde_json::Value::as_i64),
            percent,
            params: j.params,
            result: j.result,
            error: j.error,
            attempts: j.attempts,
            cancel_requested: j.cancel_requested,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

/// Jobs, newest first: all of the tenant's for admins and supervisors,
/// one's own for other roles.
#[utoipa::path(tag = "jobs", params(PageParams), responses((status = 200, body = Page<JobView>)))]
#[get("/jobs")]
async fn list_jobs(
    state: web::Data<AppState>,
    auth: Auth,
    page: crate::http::extract::Query<PageParams>,
) -> ApiResult<web::Json<Page<JobView>>> {
    let limit = page.limit()?;
    let owner = super::visible_to(&auth);
    let rows = super::list(
        &state.db.conn,
        auth.tenant_id,
        owner,
        page.cursor()?,
        limit + 1,
    )
    .await?;
    Ok(web::Json(Page::from_rows(
        rows,
        limit,
        |j| j.id,
        JobView::from,
    )))
}

/// One job: status, progress and errors.
#[utoipa::path(tag = "jobs", responses((status = 200, body = JobView), (status = 404, body = crate::error::ErrorBody)))]
#[get("/jobs/{id}")]
async fn get_job(
    state: web::Data<AppState>,
    auth: Auth,
    id: crate::http::extract::Path<JobId>,
) -> ApiResult<web::Json<JobView>> {
    Ok(web::Json(visible_job(&state, &auth, *id).await?.into()))
}

/// A job the caller may see: any of the tenant's for admins and
/// supervisors, their own for everyone else; others are 404.
async fn visible_job(state: &AppState, auth: &Auth, id: JobId) -> ApiResult<super::job::Model> {
    super::get(&state.db.conn, auth.tenant_id, id)
        .await?
        .filter(|j| match super::visible_to(auth) {
            None => true,
            Some(owner) => j.created_by == Some(owner),
        })
        .ok_or_else(|| ApiError::not_found("job"))
}

/// Cancel a job: at once if it has not started, else at its next checkpoint.
/// Admins and supervisors may cancel any of the tenant's jobs, everyone else
/// the jobs they started (a marketer's import, say).
#[utoipa::path(tag = "jobs", responses((status = 202, body = JobView), (status = 404, body = crate::error::ErrorBody)))]
#[post("/jobs/{id}/cancel")]
async fn cancel_job(
    state: web::Data<AppState>,
    auth: Auth,
    id: crate::http::extract::Path<JobId>,
) -> ApiResult<actix_web::HttpResponse> {
    visible_job(&state, &auth, *id).await?;
    let j = super::request_cancel(&state.db.conn, auth.tenant_id, *id)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    Ok(actix_web::HttpResponse::Accepted().json(JobView::from(j)))
}
