//! Jobs: submit, list, status, events, result, cancel.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use nova_core::{InvoiceExtractInput, Job, JobEvent, JobId, JobStatus, NoopInput, Workflow};
use nova_store::{
    Canceled, JobFilter, JobWebhook, NewJob, StoreError, DEFAULT_EVENT_TYPES, EVENT_TYPES, MAX_EVENTS_PER_READ,
};
use serde::Deserialize;

use super::pages::{self, PageBody};
use super::{job_stream, not_found, parse_id, StreamsEnd};
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::webhooks::{self, AllowList};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", post(create).get(list))
        .route("/jobs/{id}", get(show))
        .route("/jobs/{id}/result", get(result))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/events", get(events))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJob {
    workflow: String,
    #[serde(default)]
    input: serde_json::Value,
    /// Higher runs first, from -1000 to 1000; default 0.
    #[serde(default)]
    priority: i64,
    /// Not before this time (RFC 3339); default now.
    run_at: Option<DateTime<Utc>>,
    /// The hard deadline of one attempt, in seconds, at most a day; default 900.
    timeout_seconds: Option<u64>,
    /// Attempts before the job fails, 1 to 20; default from the server's configuration.
    max_attempts: Option<u32>,
    /// The longest the job may wait for a worker after `run_at`, in seconds (at most 30 days); not started
    /// by then, it fails with `queue_timeout`. Default: no limit.
    queue_timeout_seconds: Option<u64>,
    /// Where the job's events are sent, signed (Standard Webhooks); see `webhooks`.
    webhook: Option<WebhookRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    /// An http or https URL; a non-public address only when the server's allow-list names it.
    url: String,
    /// Event types (`job.succeeded`, ...); default the job's end: succeeded, failed, canceled.
    events: Option<Vec<String>>,
}

const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;
const MAX_QUEUE_TIMEOUT_SECONDS: u64 = 30 * 24 * 3600;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `POST /v1/jobs`: validates the workflow and its input, then queues the job (`202`).
async fn create(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let invalid = |message: String| ApiError::Unprocessable { code: "invalid_request", message };
    if !(-1000..=1000).contains(&body.priority) {
        return Err(invalid("priority must be between -1000 and 1000".into()));
    }
    let timeout = body.timeout_seconds.unwrap_or(900);
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
        return Err(invalid(format!("timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}")));
    }
    let max_attempts = body.max_attempts.unwrap_or(app.config.max_attempts);
    if !(1..=20).contains(&max_attempts) {
        return Err(invalid("max_attempts must be between 1 and 20".into()));
    }
    if let Some(wait) = body.queue_timeout_seconds {
        if !(1..=MAX_QUEUE_TIMEOUT_SECONDS).contains(&wait) {
            return Err(invalid(format!("queue_timeout_seconds must be between 1 and {MAX_QUEUE_TIMEOUT_SECONDS}")));
        }
    }
    let idempotency_key = idempotency_key(&headers)?;
    let webhook = body.webhook.map(|hook| webhook(hook, &app.config.webhooks.allow)).transpose()?;
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
            if tenant.get_document(input.document_id).await?.is_none() {
                return Err(ApiError::Unprocessable {
                    code: "document_not_found",
                    message: format!(
                        "no document with id `{}`; upload it first with POST /v1/documents",
                        input.document_id
                    ),
                });
            }
        }
        Workflow::CodeRun => {
            let spec: nova_sandbox::spec::ProgramSpec =
                serde_json::from_value(body.input.clone()).map_err(|e| ApiError::Unprocessable {
                    code: "invalid_input",
                    message: format!("code.run takes {{\"language\": \"python\", \"code\": \"...\", ...}}: {e}"),
                })?;
            spec.into_request(nova_sandbox::spec::MAX_JOB_PROGRAM_MS)
                .map_err(|e| ApiError::Unprocessable { code: e.code, message: e.message })?;
        }
        Workflow::Noop => {
            NoopInput::parse(&body.input).map_err(|e| ApiError::Unprocessable {
                code: "invalid_input",
                message: format!("noop takes {{\"sleep_ms\": N}}: {e}"),
            })?;
        }
    }
    if let Some(cap) = app.config.max_unfinished_jobs {
        // Counted before the insert, so concurrent submissions may pass the cap by a few: a quota, not a lock.
        if tenant.count_unfinished_jobs(cap).await? >= cap {
            return Err(ApiError::QuotaExceeded {
                code: "too_many_jobs",
                message: format!("this tenant has {cap} unfinished jobs, its limit; submit more as they finish"),
            });
        }
    }
    let new = NewJob {
        max_attempts,
        priority: body.priority,
        run_at: body.run_at,
        timeout: Duration::from_secs(timeout),
        queue_timeout: body.queue_timeout_seconds.map(Duration::from_secs),
        idempotency_key,
        webhook,
        ..NewJob::new(workflow, body.input)
    };
    let enqueued = tenant.enqueue(new).await.map_err(|e| match e {
        StoreError::IdempotencyConflict(existing) => ApiError::Conflict {
            code: "idempotency_conflict",
            message: format!(
                "this Idempotency-Key was first used for job {existing} with another workflow or input; \
                 use a new key for a new job"
            ),
        },
        other => other.into(),
    })?;
    if enqueued.created {
        app.wake_workers.notify_one();
    }
    // A replay answers as the first request did.
    Ok((StatusCode::ACCEPTED, Json(enqueued.job)))
}

/// A job's webhook as given: its URL checked, its event types known and distinct.
fn webhook(hook: WebhookRequest, allow: &AllowList) -> Result<JobWebhook, ApiError> {
    let url = webhooks::check_url(&hook.url, allow)
        .map_err(|message| ApiError::Unprocessable { code: "invalid_webhook_url", message })?;
    let mut events: Vec<String> = match hook.events {
        None => DEFAULT_EVENT_TYPES.iter().map(|e| e.to_string()).collect(),
        Some(events) => events,
    };
    if events.is_empty() {
        return Err(ApiError::Unprocessable {
            code: "invalid_webhook_events",
            message: "webhook.events names no event; leave it out for the job's end".into(),
        });
    }
    if let Some(unknown) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        let shown: String = unknown.chars().take(80).collect();
        return Err(ApiError::Unprocessable {
            code: "invalid_webhook_events",
            message: format!("`{shown}` is not an event type (known: {})", EVENT_TYPES.join(", ")),
        });
    }
    events.sort();
    events.dedup();
    Ok(JobWebhook { url: url.to_string(), events })
}

/// The `Idempotency-Key` header, if any: printable ASCII, at most 255 characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => Ok(Some(key.to_string())),
        _ => Err(ApiError::BadRequest {
            code: "invalid_idempotency_key",
            message: format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    workflow: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/jobs?status=&workflow=&limit=&cursor=`: jobs newest first, a page at a time; `next_cursor`
/// asks for the next page. An empty parameter is no filter.
async fn list(
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PageBody<Job>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let given = |value: Option<String>| value.filter(|v| !v.is_empty());
    let status =
        given(query.status).map(|s| s.parse::<JobStatus>()).transpose().map_err(|e| ApiError::Unprocessable {
            code: "invalid_status",
            message: format!("{e} (known: queued, running, retrying, succeeded, failed, canceled)"),
        })?;
    let workflow = given(query.workflow)
        .map(|w| w.parse::<Workflow>())
        .transpose()
        .map_err(|e| ApiError::Unprocessable { code: "unknown_workflow", message: e.to_string() })?;
    let limit = pages::limit(query.limit.as_deref())?;
    let before = pages::cursor(query.cursor.as_deref(), JobId::PREFIX)?;
    let page = tenant.list_jobs(JobFilter { status, workflow }, before, limit).await?;
    Ok(Json(PageBody::new(page, JobId::PREFIX, |job| job.id.to_string())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Only events with a sequence number above this.
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

/// `GET /v1/jobs/{id}/events?after=N&limit=M`: the job's durable event log, oldest first. Poll with
/// `after` set to the last `seq` seen; `finished` says the log is complete. With `Accept: text/event-stream`,
/// the log as a live stream instead (see `job_stream`).
async fn events(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(StreamsEnd(streams_end)): Extension<StreamsEnd>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    if job_stream::wanted(&headers) {
        let after = job_stream::resume_point(&headers, query.after)?;
        return job_stream::respond(&app, &tenant, id, after, streams_end).await;
    }
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_EVENTS_PER_READ);
    let events = tenant.job_events(id, query.after, limit).await?.ok_or_else(|| not_found("job", &id.to_string()))?;
    let finished = events.last().is_some_and(JobEvent::is_final);
    let next_after = events.last().map_or(query.after, |e| e.seq);
    Ok(Json(serde_json::json!({"events": events, "next_after": next_after, "finished": finished})).into_response())
}

/// `POST /v1/jobs/{id}/cancel`: a job that has not started never will; a running one is stopped by its
/// worker at the next heartbeat (`cancel_requested_at` is set meanwhile). Canceling a canceled job is a
/// no-op; canceling a succeeded or failed one is `409`.
async fn cancel(Tenant(tenant): Tenant, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    match tenant.cancel(id).await? {
        None => Err(not_found("job", &id.to_string())),
        Some(Canceled::Now(job) | Canceled::Requested(job)) => Ok(Json(job)),
        Some(Canceled::AlreadyFinal(job)) if job.status == JobStatus::Canceled => Ok(Json(job)),
        Some(Canceled::AlreadyFinal(job)) => Err(ApiError::Conflict {
            code: "job_finished",
            message: format!("job {id} already {}; there is nothing to cancel", job.status.as_str()),
        }),
    }
}

async fn show(Tenant(tenant): Tenant, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    tenant.get_job(id).await?.map(Json).ok_or_else(|| not_found("job", &id.to_string()))
}

/// `GET /v1/jobs/{id}/result`: the job's output once it succeeded; `409` before that.
async fn result(Tenant(tenant): Tenant, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    let job = tenant.get_job(id).await?.ok_or_else(|| not_found("job", &id.to_string()))?;
    match job.status {
        JobStatus::Succeeded => {
            let result = tenant.job_result(id).await?;
            result.map(Json).ok_or_else(|| ApiError::Internal("reading the job's result".into()))
        }
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
