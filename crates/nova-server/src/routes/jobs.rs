//! Jobs: submit, status, result.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use nova_core::{InvoiceExtractInput, Job, JobId, JobStatus, NoopInput, Workflow};
use nova_store::NewJob;
use serde::Deserialize;

use super::{not_found, parse_id};
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/jobs", post(create)).route("/jobs/{id}", get(show)).route("/jobs/{id}/result", get(result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJob {
    workflow: String,
    #[serde(default)]
    input: serde_json::Value,
}

/// `POST /v1/jobs`: validates the workflow and its input, then queues the job (`202`).
async fn create(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let workflow: Workflow = body.workflow.parse().map_err(|e: nova_core::UnknownWorkflow| {
        ApiError::Unprocessable { code: "unknown_workflow", message: e.to_string() }
    })?;
    match workflow {
        Workflow::InvoiceExtract => {
            let input: InvoiceExtractInput =
                serde_json::from_value(body.input.clone()).map_err(|e| ApiError::Unprocessable {
                    code: "invalid_input",
                    message: format!("invoice.extract takes {{\"document_id\": \"doc_...\"}}: {e}"),
                })?;
            if app.store.get_document(input.document_id).await?.is_none() {
                return Err(ApiError::Unprocessable {
                    code: "document_not_found",
                    message: format!(
                        "no document with id `{}`; upload it first with POST /v1/documents",
                        input.document_id
                    ),
                });
            }
        }
        Workflow::Noop => {
            NoopInput::parse(&body.input).map_err(|e| ApiError::Unprocessable {
                code: "invalid_input",
                message: format!("noop takes {{\"sleep_ms\": N}}: {e}"),
            })?;
        }
    }
    let job = app.store.enqueue(NewJob { workflow, input: body.input, max_attempts: app.config.max_attempts }).await?;
    app.wake_workers.notify_one();
    Ok((StatusCode::ACCEPTED, Json(job)))
}

async fn show(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    app.store.get_job(id).await?.map(Json).ok_or_else(|| not_found("job", &id.to_string()))
}

/// `GET /v1/jobs/{id}/result`: the job's output once it succeeded; `409` before that.
async fn result(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    let job = app.store.get_job(id).await?.ok_or_else(|| not_found("job", &id.to_string()))?;
    match job.status {
        JobStatus::Succeeded => {
            let result = app.store.job_result(id).await?;
            result.map(Json).ok_or_else(|| ApiError::Internal("reading the job's result".into()))
        }
        JobStatus::Queued | JobStatus::Running => Err(ApiError::Conflict {
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
