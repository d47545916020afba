//! Batches: many jobs of one workflow submitted in one request, followed and read as one.
//!
//! `POST /v1/batches` checks every input at the edge and refuses the whole batch, naming the bad entries'
//! indexes, before anything is stored; the store then writes the batch and all its jobs in one transaction.
//! Progress is read from the store on every request (and every poll of the event stream), so it counts what
//! workers in any process did. Results are streamed a page of jobs at a time (`batch_results.rs`).

use std::collections::HashSet;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use nova_core::{Batch, BatchId, DocumentId, JobInput, Workflow, MAX_BATCH_JOBS};
use nova_store::NewBatch;
use serde::Deserialize;

use super::jobs::AskedOptions;
use super::pages::{self, PageBody};
use super::{batch_results, batch_stream, job_stream, not_found, parse_id, IdPath, StreamsEnd};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/batches", post(create).get(list))
        .route("/batches/{id}", get(show))
        .route("/batches/{id}/cancel", post(cancel))
        .route("/batches/{id}/events", get(events))
        .route("/batches/{id}/results", get(batch_results::results))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBatch {
    #[schema(value_type = Workflow)]
    workflow: String,
    /// One input per job, in order, each one of `JobInput`'s shapes for the workflow (as `POST /v1/jobs`
    /// takes it). Give `inputs` or `document_ids`, not both.
    #[schema(value_type = Option<Vec<JobInput>>, max_items = 10000)]
    inputs: Option<Vec<serde_json::Value>>,
    /// One job per document, in order: each job's input is `input` with the document put where the
    /// workflow names its document (`invoice.extract`'s `document_id`, `task.run`'s `document_ids`).
    #[schema(value_type = Option<Vec<nova_core::DocumentId>>, max_items = 10000)]
    document_ids: Option<Vec<String>>,
    /// With `document_ids`: the input the documents share (`{"strategy": "rules"}`, say); default `{}`.
    #[serde(default)]
    #[schema(required = false, value_type = Object)]
    input: serde_json::Value,
    /// Higher runs first, from -1000 to 1000; default 0.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    priority: i64,
    /// Not before this time (RFC 3339); default now.
    run_at: Option<DateTime<Utc>>,
    /// The hard deadline of one attempt of each job, in seconds, at most a day; default 900 (3600 for
    /// `llm.generate`).
    #[schema(minimum = 1, maximum = 86400)]
    timeout_seconds: Option<u64>,
    /// Attempts before a job fails, 1 to 20; default from the server's configuration.
    #[schema(minimum = 1, maximum = 20)]
    max_attempts: Option<u32>,
    /// The longest each job may wait for a worker after `run_at`, in seconds (at most 30 days).
    #[schema(minimum = 1, maximum = 2592000)]
    queue_timeout_seconds: Option<u64>,
    /// Where the batch's `batch.completed` message is sent (signed, Standard Webhooks) once every job of it
    /// is final.
    webhook: Option<BatchWebhook>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchWebhook {
    /// An http or https URL; a non-public address only when the server's allow-list names it.
    #[schema(max_length = 2048)]
    url: String,
}

/// Bad entries named in one error message, at most.
const SHOWN_ERRORS: usize = 20;

/// `POST /v1/batches`: checks every input, then stores the batch and its jobs at once (`202`).
#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "batches",
    summary = "Submit a batch of jobs",
    description = "Up to 10000 jobs of one workflow, from `inputs` (one per job) or `document_ids` (one job \
        per document, sharing `input`), with the options `POST /v1/jobs` takes applying to every job. Every \
        input is checked first: one bad entry refuses the whole batch, and the error names the bad entries' \
        indexes. The batch and its jobs are then stored in one transaction.",
    request_body = CreateBatch,
    responses(
        (status = 202, description = "Stored: every job queued.", body = Batch),
        (status = 400, description = "The body is not JSON, or a bad `Idempotency-Key` (`malformed_json`, \
            `unreadable_body`, `invalid_idempotency_key`).", body = ErrorBody),
        (status = 409, description = "The `Idempotency-Key` was used with another body.", body = ErrorBody),
        (status = 413, description = "The body is larger than the JSON limit (`payload_too_large`).",
            body = ErrorBody),
        (status = 415, description = "Not sent as JSON (`expected_json`).", body = ErrorBody),
        (status = 422, description = "A bad field or workflow, no entry or too many, or bad entries, named by \
            index (`invalid_request`, `unknown_workflow`, `invalid_batch_size`, `invalid_input`, \
            `invalid_document_id`, `document_not_found`, `invalid_webhook_url`).", body = ErrorBody),
        (status = 429, description = "The batch would take the tenant past its limit of unfinished jobs \
            (`too_many_jobs`), or the key's request rate is spent (`rate_limited`).", body = ErrorBody),
    )
)]
async fn create(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateBatch>,
) -> Result<(StatusCode, Json<Batch>), ApiError> {
    let invalid = |code: &'static str, message: String| ApiError::Unprocessable { code, message };
    let webhook_url = body
        .webhook
        .as_ref()
        .map(|hook| nova_app::webhooks::check_url(&hook.url, &app.config.webhook_allow))
        .transpose()
        .map_err(|message| invalid("invalid_webhook_url", message))?
        .map(|url| url.to_string());
    let workflow: Workflow =
        body.workflow.parse().map_err(|e: nova_core::UnknownWorkflow| invalid("unknown_workflow", e.to_string()))?;
    let asked = AskedOptions {
        priority: body.priority,
        run_at: body.run_at,
        timeout_seconds: body.timeout_seconds,
        max_attempts: body.max_attempts,
        queue_timeout_seconds: body.queue_timeout_seconds,
    };
    let options = asked.check(workflow, app.config.max_attempts)?;
    let inputs = match (body.inputs, body.document_ids) {
        (Some(inputs), None) => inputs,
        (None, Some(ids)) => inputs_for_documents(workflow, &body.input, &ids)?,
        _ => return Err(invalid("invalid_request", "give either `inputs` or `document_ids`".into())),
    };
    if inputs.is_empty() || inputs.len() > MAX_BATCH_JOBS {
        return Err(invalid(
            "invalid_batch_size",
            format!("a batch holds 1 to {MAX_BATCH_JOBS} jobs, not {}", inputs.len()),
        ));
    }
    // Every input parsed at the edge, as `POST /v1/jobs` parses one; the store keeps each as it was sent.
    let mut bad = Vec::new();
    let mut documents: Vec<(usize, DocumentId)> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        match JobInput::parse(workflow, input) {
            Ok(parsed) => documents.extend(parsed.document_ids().into_iter().map(|id| (i, id))),
            Err(e) => bad.push(format!("inputs[{i}]: {}", e.message)),
        }
    }
    refuse_bad(&bad, "invalid_input", "inputs are invalid")?;
    // The documents checked in one read, however many there are.
    let named: Vec<DocumentId> = documents.iter().map(|&(_, id)| id).collect::<HashSet<_>>().into_iter().collect();
    let found = tenant.existing_documents(&named).await?;
    let missing: Vec<String> = documents
        .iter()
        .filter(|(_, id)| !found.contains(id))
        .map(|(i, id)| format!("inputs[{i}]: no document with id `{id}`"))
        .collect();
    refuse_bad(&missing, "document_not_found", "inputs name documents this tenant has not uploaded")?;
    if let Some(cap) = app.config.max_unfinished_jobs {
        // Counted before the insert, as for single jobs: a quota, not a lock.
        let unfinished = tenant.count_unfinished_jobs(cap).await?;
        if u64::from(unfinished) + inputs.len() as u64 > u64::from(cap) {
            return Err(ApiError::QuotaExceeded {
                code: "too_many_jobs",
                message: format!(
                    "this tenant has {unfinished} unfinished jobs and a limit of {cap}; a batch of {} does not fit",
                    inputs.len()
                ),
            });
        }
    }
    let new = NewBatch {
        tenant: tenant.id(),
        workflow,
        inputs,
        max_attempts: options.max_attempts,
        priority: body.priority,
        run_at: body.run_at,
        timeout: options.timeout,
        queue_timeout: options.queue_timeout,
        webhook_url,
        request_id: crate::request_id::of(&headers),
    };
    let batch = tenant.insert_batch(new).await?;
    app.wake_workers.notify_one();
    Ok((StatusCode::ACCEPTED, Json(batch)))
}

/// One input per document: the shared `input` with each document put where `workflow` names it.
fn inputs_for_documents(
    workflow: Workflow,
    input: &serde_json::Value,
    ids: &[String],
) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut bad = Vec::new();
    let mut inputs = Vec::with_capacity(ids.len());
    for (i, text) in ids.iter().enumerate() {
        match text.parse::<DocumentId>() {
            Ok(id) => match workflow.input_for_document(input, id) {
                Some(one) => inputs.push(one),
                None => {
                    return Err(ApiError::Unprocessable {
                        code: "invalid_request",
                        message: format!(
                            "{workflow} takes no document (or `input` is not an object); give `inputs` instead"
                        ),
                    })
                }
            },
            Err(e) => bad.push(format!("document_ids[{i}]: {e}")),
        }
    }
    refuse_bad(&bad, "invalid_document_id", "document ids are malformed")?;
    Ok(inputs)
}

/// Refuses the batch when `bad` names any entry: how many, and the first [`SHOWN_ERRORS`] of them.
fn refuse_bad(bad: &[String], code: &'static str, what: &str) -> Result<(), ApiError> {
    if bad.is_empty() {
        return Ok(());
    }
    let shown = bad.iter().take(SHOWN_ERRORS).cloned().collect::<Vec<_>>().join("; ");
    let more =
        if bad.len() > SHOWN_ERRORS { format!("; and {} more", bad.len() - SHOWN_ERRORS) } else { String::new() };
    Err(ApiError::Unprocessable {
        code,
        message: format!("{} {what}, so nothing was stored: {shown}{more}", bad.len()),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Items per page, 1 to 200; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the page before.
    #[param(value_type = Option<String>, pattern = "^[0-9a-fA-F]{32}$")]
    cursor: Option<String>,
}

/// `GET /v1/batches?limit=&cursor=`: the tenant's batches newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "batches",
    summary = "List batches",
    description = "A page of the tenant's batches, newest first, each with its counts; `next_cursor` asks for \
        the next page.",
    params(ListQuery),
    responses(
        (status = 200, description = "A page, newest first.", body = PageBody<Batch>),
        (status = 400, description = "An unknown or malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 422, description = "A bad `limit` or `cursor` (`invalid_limit`, `invalid_cursor`).",
            body = ErrorBody),
    )
)]
async fn list(
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PageBody<Batch>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let limit = pages::limit(query.limit.as_deref())?;
    let before = pages::cursor(query.cursor.as_deref(), BatchId::PREFIX)?;
    let page = tenant.list_batches(before, limit).await?;
    Ok(Json(PageBody::new(page, BatchId::PREFIX, |batch| batch.id.to_string())))
}

/// `GET /v1/batches/{id}`: the batch's counts per status and its progress.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "batches",
    summary = "Show a batch",
    params(("id" = BatchId, Path, description = "The batch's id.")),
    responses(
        (status = 200, description = "The batch: its jobs per status, `done` of `total` final.", body = Batch),
        (status = 404, description = "No such batch of this tenant (`batch_not_found`).", body = ErrorBody),
    )
)]
async fn show(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<Batch>, ApiError> {
    let id: BatchId = parse_id(&id, "batch")?;
    tenant.get_batch(id).await?.map(Json).ok_or_else(|| not_found("batch", &id.to_string()))
}

/// `POST /v1/batches/{id}/cancel`: the batch's jobs that have not started never will; running ones are
/// stopped by their workers at the next heartbeat. Finished jobs keep their results.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/cancel",
    tag = "batches",
    summary = "Cancel a batch",
    description = "Cancels every unfinished job of the batch: queued and retrying ones at once, running ones \
        at their worker's next heartbeat. Jobs that already finished keep their results. Canceling a finished \
        batch changes nothing.",
    params(("id" = BatchId, Path, description = "The batch's id.")),
    responses(
        (status = 200, description = "The batch after the cancellation.", body = Batch),
        (status = 404, description = "No such batch of this tenant (`batch_not_found`).", body = ErrorBody),
    )
)]
async fn cancel(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<Batch>, ApiError> {
    let id: BatchId = parse_id(&id, "batch")?;
    tenant.cancel_batch(id).await?.ok_or_else(|| not_found("batch", &id.to_string()))?;
    tenant.get_batch(id).await?.map(Json).ok_or_else(|| not_found("batch", &id.to_string()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// The `done` count already seen (what a reconnecting client sends as `Last-Event-ID`).
    #[serde(default)]
    #[param(required = false)]
    after: u64,
}

/// `GET /v1/batches/{id}/events`: the batch's progress as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/events",
    tag = "batches",
    summary = "Follow a batch's progress",
    description = "Server-Sent Events: a `progress` event (`data` the batch as `GET /v1/batches/{id}` shows \
        it, `id` its `done` count) at once and each time its counts change, then a `completed` event when \
        every job is final, which ends the stream. A reconnecting client sends the last `id` as \
        `Last-Event-ID`; past the `completed` event the answer is `204`.",
    params(
        ("id" = BatchId, Path, description = "The batch's id."),
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event seen.",
            pattern = "^[0-9]*$"),
    ),
    responses(
        (status = 200, description = "The stream.", content_type = "text/event-stream", body = String),
        (status = 204, description = "The batch is finished and its `completed` event was seen."),
        (status = 400, description = "A malformed parameter (`invalid_query`, `invalid_last_event_id`).",
            body = ErrorBody),
        (status = 404, description = "No such batch of this tenant (`batch_not_found`).", body = ErrorBody),
    )
)]
async fn events(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(StreamsEnd(streams_end)): Extension<StreamsEnd>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id: BatchId = parse_id(&id, "batch")?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let seen = job_stream::resume_point(&headers, query.after)?;
    let batch = tenant.get_batch(id).await?.ok_or_else(|| not_found("batch", &id.to_string()))?;
    // The `completed` event's id is the batch's final `done`: a client that saw it has nothing to wait for.
    if batch.finished && seen > 0 && seen >= batch.done {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(batch_stream::respond(&app, tenant, batch, streams_end))
}
