//! Versions of an invoice job's result: a person's corrections, each stored as the next version beside the
//! extracted one (`nova_core::correction`). The result routes return the latest; version 1 stays readable.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use nova_core::correction::{self, ResultVersion};
use nova_core::{Invoice, Job, JobId, JobStatus, Workflow};
use nova_store::{NewResultVersion, StoreError, TenantStore};
use serde::{Deserialize, Serialize};

use super::{not_found, parse_id, IdPath};
use crate::auth::{Caller, Tenant};
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

/// The response header that says which version of a result the body is.
const VERSION_HEADER: HeaderName = HeaderName::from_static("nova-result-version");

/// The longest note a version may carry, in characters.
const MAX_NOTE_CHARS: usize = 2000;

pub fn router() -> Router<AppState> {
    Router::new().route("/jobs/{id}/result", get(result)).route("/jobs/{id}/result/versions", get(list).post(create))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ResultQuery {
    /// Which version: 1 is what the job produced; default the latest.
    #[param(value_type = Option<u32>, minimum = 1)]
    version: Option<String>,
}

/// `GET /v1/jobs/{id}/result?version=N`: the job's output once it succeeded (its latest version); `409`
/// before that.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/result",
    tag = "jobs",
    summary = "Read a job's result",
    description = "The latest version of the result: a person's correction once one is stored, else what the \
        job produced. `version=1` reads what the job produced. The `Nova-Result-Version` header says which \
        version the body is.",
    params(("id" = JobId, Path, description = "The job's id."), ResultQuery),
    responses(
        (status = 200, description = "The workflow's output: the invoice for `invoice.extract`, the outcome \
            (see `ExecutionOutcome`) for `code.run`.", body = serde_json::Value,
            headers(("Nova-Result-Version" = u32, description = "The version of the result in the body."))),
        (status = 400, description = "An unknown or malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 404, description = "No such job of this tenant (`job_not_found`), or no such version \
            (`version_not_found`).", body = ErrorBody),
        (status = 409, description = "The job has not succeeded (`job_not_finished`, `job_failed`, \
            `job_canceled`).", body = ErrorBody),
    )
)]
async fn result(
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    query: Result<Query<ResultQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let id: JobId = parse_id(&id, "job")?;
    let asked = match query.version.as_deref().filter(|v| !v.is_empty()) {
        None => None,
        Some(text) => Some(text.parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_query",
            message: format!(
                "version must be a whole number from 1, not `{}`",
                text.chars().take(40).collect::<String>()
            ),
        })?),
    };
    succeeded_job(&tenant, id).await?;
    let (version, body) = match asked {
        None => tenant.latest_result(id).await?.ok_or_else(|| ApiError::Internal("reading the job's result".into()))?,
        Some(version) => {
            let body = tenant.result_version(id, version).await?.ok_or_else(|| ApiError::NotFound {
                code: "version_not_found",
                message: format!("job {id}'s result has no version {version}"),
            })?;
            (version, body)
        }
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(VERSION_HEADER, HeaderValue::from(version));
    Ok(response)
}

/// The versions of a result, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VersionList {
    data: Vec<ResultVersion>,
}

/// `GET /v1/jobs/{id}/result/versions`: who stored which version of the result, when, and what changed.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/result/versions",
    tag = "jobs",
    summary = "List a result's versions",
    description = "Version 1 is what the job produced (author `extraction`); each stored correction follows, \
        with its author, time and the fields it changed.",
    params(("id" = JobId, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The versions, oldest first.", body = VersionList),
        (status = 404, description = "No such job of this tenant (`job_not_found`).", body = ErrorBody),
        (status = 409, description = "The job has not succeeded (`job_not_finished`, `job_failed`, \
            `job_canceled`).", body = ErrorBody),
    )
)]
async fn list(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<VersionList>, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    let job = succeeded_job(&tenant, id).await?;
    let first = ResultVersion {
        version: 1,
        author: correction::EXTRACTION_AUTHOR.into(),
        created_at: job.finished_at.unwrap_or(job.updated_at),
        note: None,
        changes: Vec::new(),
    };
    let stored = tenant.result_versions(id).await?.ok_or_else(|| not_found("job", &id.to_string()))?;
    Ok(Json(VersionList { data: std::iter::once(first).chain(stored).collect() }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateVersion {
    /// The corrected invoice, in the shape the result has (see SCHEMA.md): every field it should hold, not
    /// only the changed ones. Confidences, review and warnings are set by the server.
    #[schema(value_type = Object)]
    invoice: serde_json::Value,
    /// The version this correction was made on: the request fails with `409 version_conflict` when another
    /// was stored since. Default: the latest, whatever it is.
    #[schema(minimum = 1)]
    base_version: Option<u32>,
    /// What the reviewer wants to say about it, up to 2000 characters.
    note: Option<String>,
}

/// `POST /v1/jobs/{id}/result/versions`: stores a corrected (or confirmed) invoice as the result's next
/// version and marks the job reviewed.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/result/versions",
    tag = "jobs",
    summary = "Store a corrected result",
    description = "Stores the invoice as the next version of an `invoice.extract` job's result, with who stored \
        it (the API key's id) and the fields it changed, and marks the job `reviewed`: the result and exports \
        return it from then on. A field filled or changed gets confidence 1, one emptied loses its \
        confidence. Storing the invoice unchanged confirms it.",
    params(("id" = JobId, Path, description = "The job's id.")),
    request_body = CreateVersion,
    responses(
        (status = 201, description = "Stored.", body = ResultVersion),
        (status = 400, description = "The body is not JSON (`malformed_json`, `unreadable_body`).", body = ErrorBody),
        (status = 404, description = "No such job of this tenant (`job_not_found`).", body = ErrorBody),
        (status = 409, description = "The job has not succeeded (`job_not_finished`, `job_failed`, \
            `job_canceled`), is not an invoice extraction (`not_an_invoice`), or another version was stored \
            since `base_version` (`version_conflict`).", body = ErrorBody),
        (status = 415, description = "Not sent as JSON (`expected_json`).", body = ErrorBody),
        (status = 422, description = "The invoice is not one (`invalid_invoice`), or a bad field \
            (`invalid_request`).", body = ErrorBody),
    )
)]
async fn create(
    Tenant(tenant): Tenant,
    Extension(caller): Extension<Caller>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<CreateVersion>,
) -> Result<(StatusCode, Json<ResultVersion>), ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    let job = succeeded_job(&tenant, id).await?;
    if job.workflow != Workflow::InvoiceExtract {
        return Err(ApiError::Conflict {
            code: "not_an_invoice",
            message: format!("job {id} is a {} job; only invoice.extract results take corrections", job.workflow),
        });
    }
    if body.note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::Unprocessable {
            code: "invalid_request",
            message: format!("note must be at most {MAX_NOTE_CHARS} characters"),
        });
    }
    let invoice: Invoice = serde_json::from_value(body.invoice).map_err(|e| ApiError::Unprocessable {
        code: "invalid_invoice",
        message: format!(
            "invoice is not an invoice in the result's shape (dates as YYYY-MM-DD, amounts as strings): {e}"
        ),
    })?;
    let (latest, current) =
        tenant.latest_result(id).await?.ok_or_else(|| ApiError::Internal("reading the job's result".into()))?;
    let base = body.base_version.unwrap_or(latest);
    if base != latest {
        return Err(conflict(id, latest));
    }
    let proposed = as_json(&invoice)?;
    // Both sides in the schema's shape, so that a field the stored result leaves out and one written
    // empty are the same.
    let current = match serde_json::from_value::<Invoice>(current.clone()) {
        Ok(stored) => as_json(&stored)?,
        Err(_) => current,
    };
    let changes = correction::changes(&current, &proposed);
    let result = as_json(&correction::reviewed(invoice, &changes))?;
    let author = caller.key().map_or_else(|| "loopback".to_string(), |key| key.to_string());
    let new = NewResultVersion { base, result, author, note: body.note, changes };
    match tenant.add_result_version(id, new).await {
        Ok(Some(version)) => Ok((StatusCode::CREATED, Json(version))),
        Ok(None) => Err(not_found("job", &id.to_string())),
        Err(StoreError::VersionConflict(_)) => {
            let latest = tenant.latest_result(id).await?.map_or(latest, |(v, _)| v);
            Err(conflict(id, latest))
        }
        Err(e) => Err(e.into()),
    }
}

/// The invoice as JSON, written as the worker writes results: through text, so that a confidence of 0.9
/// stays 0.9 (a direct conversion widens the `f32` to 0.8999999761581421).
fn as_json(invoice: &Invoice) -> Result<serde_json::Value, ApiError> {
    serde_json::to_string(invoice)
        .and_then(|text| serde_json::from_str(&text))
        .map_err(|e| ApiError::internal("writing the invoice", &e))
}

fn conflict(id: JobId, latest: u32) -> ApiError {
    ApiError::Conflict {
        code: "version_conflict",
        message: format!(
            "job {id}'s result is at version {latest}, stored since the one this correction was made on; read it \
             again and correct that"
        ),
    }
}

/// The job, when it is this tenant's and has succeeded; the API's `404` or `409` otherwise.
async fn succeeded_job(tenant: &TenantStore, id: JobId) -> Result<Job, ApiError> {
    let job = tenant.get_job(id).await?.ok_or_else(|| not_found("job", &id.to_string()))?;
    match job.status {
        JobStatus::Succeeded => Ok(job),
        JobStatus::Queued | JobStatus::Running | JobStatus::Retrying => Err(ApiError::Conflict {
            code: "job_not_finished",
            message: format!("job {id} is {}; poll GET /v1/jobs/{id} until it succeeds", job.status.as_str()),
        }),
        JobStatus::Failed => Err(ApiError::Conflict {
            code: "job_failed",
            message: match &job.error {
                Some(e) => format!("job {id} failed ({}): {}", e.code, e.message),
                None => format!("job {id} failed"),
            },
        }),
        JobStatus::Canceled => {
            Err(ApiError::Conflict { code: "job_canceled", message: format!("job {id} was canceled") })
        }
    }
}
