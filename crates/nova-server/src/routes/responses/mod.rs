//! `/v1/responses`: OpenAI's Responses API over `llm.generate` jobs, so a client written for OpenAI's
//! background responses (create, poll or stream with a resumable cursor, cancel) works against NOVA by
//! changing its base URL and key.
//!
//! A response is a job (see `shape`): creating one submits an `llm.generate` job, polling reads the job, and
//! its stream is the job's durable event log translated into OpenAI's events, so a stream dropped at any
//! point resumes after its last `sequence_number` without losing text. `background: true` answers at once;
//! without it the request waits for the answer (or streams it, with `stream: true`) as OpenAI's does, and
//! the job goes on if the client leaves.

mod shape;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use nova_core::{Job, JobEvent, JobId, JobStatus, Workflow};
use nova_store::{Canceled, NewJob, TenantStore};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{job_stream, jobs, IdPath, StreamsEnd};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

pub use shape::CreateResponse;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/responses", post(create))
        .route("/responses/{id}", get(retrieve))
        .route("/responses/{id}/cancel", post(cancel))
}

/// Log events read at once.
const BATCH: u32 = 500;

/// `POST /v1/responses`: submits an `llm.generate` job for the request and answers with the response
/// (`background: true`), its stream (`stream: true`), or, otherwise, once it has ended.
#[utoipa::path(
    post,
    path = "/v1/responses",
    tag = "responses",
    summary = "Create a model response (OpenAI's Responses API)",
    description = "OpenAI's `POST /responses` over an `llm.generate` job: `input` a prompt or messages \
                   (`input_file` parts name NOVA documents by `file_id`), `instructions`, `max_output_tokens`, \
                   `temperature`, `text.format` (`json_schema`), `metadata`. With `background: true` it answers \
                   at once with the `queued` response; with `stream: true` it streams the response's events; \
                   otherwise it answers when the response has ended. NOVA answers with its configured model, \
                   whatever `model` says; tools and conversation state are refused.",
    request_body = CreateResponse,
    responses(
        (status = 200, description = "The response, or its events.", content(
            (Object = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "The body is not JSON (`malformed_json`, `unreadable_body`).", body = ErrorBody),
        (status = 415, description = "Not sent as JSON (`expected_json`).", body = ErrorBody),
        (status = 422, description = "A field NOVA cannot serve or a bad value (`invalid_request`, \
            `invalid_input`, `document_not_found`).", body = ErrorBody),
        (status = 429, description = "The tenant's unfinished jobs are at its limit (`too_many_jobs`), or the \
            key's request rate is spent (`rate_limited`).", body = ErrorBody),
    )
)]
async fn create(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(StreamsEnd(end)): Extension<StreamsEnd>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateResponse>,
) -> Result<Response, ApiError> {
    let input =
        shape::to_input(&body).map_err(|message| ApiError::Unprocessable { code: "invalid_request", message })?;
    let input = serde_json::to_value(&input).map_err(|_| ApiError::Internal("encoding the job's input".into()))?;
    let workflow = Workflow::LlmGenerate;
    let new = NewJob {
        max_attempts: app.config.max_attempts,
        timeout: Duration::from_secs(workflow.default_timeout_seconds()),
        idempotency_key: jobs::idempotency_key(&headers)?,
        request_id: crate::request_id::of(&headers),
        ..NewJob::new(workflow, input)
    };
    let job = jobs::submit(&app, &tenant, new).await?.job;
    if body.stream == Some(true) {
        return stream(&app, &tenant, job.id, None, end).await;
    }
    if body.background != Some(true) {
        // Waits for the end as a stream would, reading the log; the job goes on if the client leaves.
        let log = read_log(&tenant, job.id, 0).await?;
        job_stream::follow(&app, &tenant, job.id, 0, log, end).for_each(|_| async {}).await;
    }
    Ok(Json(snapshot(&tenant, job.id).await?).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RetrieveQuery {
    /// Answer with the response's events as Server-Sent Events.
    #[serde(default)]
    stream: bool,
    /// Streams only: start after the event with this `sequence_number`.
    starting_after: Option<u64>,
}

/// `GET /v1/responses/{id}`: the response as it stands (with the text written so far while it runs), or,
/// with `stream=true`, its events from the start or after `starting_after`.
#[utoipa::path(
    get,
    path = "/v1/responses/{id}",
    tag = "responses",
    summary = "Retrieve or stream a response",
    description = "The response as it stands; while it runs, its output holds the text written so far. With \
                   `stream=true`, its events as Server-Sent Events, numbered by `sequence_number`, from the \
                   first or after `starting_after`, live until the response ends.",
    params(("id" = String, Path, description = "The response's id (`resp_...`)."), RetrieveQuery),
    responses(
        (status = 200, description = "The response, or its events.", content(
            (Object = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "A malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 404, description = "No such response of this tenant (`response_not_found`).", body = ErrorBody),
    )
)]
async fn retrieve(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(StreamsEnd(end)): Extension<StreamsEnd>,
    IdPath(id): IdPath,
    query: Result<Query<RetrieveQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let job = find(&tenant, &id).await?;
    if query.stream {
        return stream(&app, &tenant, job.id, query.starting_after, end).await;
    }
    Ok(Json(snapshot(&tenant, job.id).await?).into_response())
}

/// `POST /v1/responses/{id}/cancel`: cancels the response's job; a running one stops at its next write.
#[utoipa::path(
    post,
    path = "/v1/responses/{id}/cancel",
    tag = "responses",
    summary = "Cancel a response",
    description = "Cancels the response's job: one that has not started never will, and a running one stops \
                   its model call within a moment. Answers with the response as it stands; a response that \
                   already ended is answered unchanged.",
    params(("id" = String, Path, description = "The response's id (`resp_...`).")),
    responses(
        (status = 200, description = "The response.", body = Object),
        (status = 404, description = "No such response of this tenant (`response_not_found`).", body = ErrorBody),
    )
)]
async fn cancel(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<Value>, ApiError> {
    let job = find(&tenant, &id).await?;
    match tenant.cancel(job.id).await? {
        None => Err(not_found(&id)),
        Some(Canceled::Now(_) | Canceled::Requested(_) | Canceled::AlreadyFinal(_)) => {
            Ok(Json(snapshot(&tenant, job.id).await?))
        }
    }
}

/// The tenant's `llm.generate` job of response id `id`.
async fn find(tenant: &TenantStore, id: &str) -> Result<Job, ApiError> {
    let job = shape::job_of(id).ok_or_else(|| not_found(id))?;
    match tenant.get_job(job).await? {
        Some(job) if job.workflow == Workflow::LlmGenerate => Ok(job),
        _ => Err(not_found(id)),
    }
}

fn not_found(id: &str) -> ApiError {
    let id: String = id.chars().take(80).collect();
    ApiError::NotFound { code: "response_not_found", message: format!("no response with id `{id}`") }
}

/// Job `id`'s response as it stands: with its result once it succeeded, with its text so far while it runs,
/// its answer in the output item its stream wrote it to.
async fn snapshot(tenant: &TenantStore, id: JobId) -> Result<Value, ApiError> {
    let job = tenant.get_job(id).await?.ok_or_else(|| not_found(&shape::response_id(id)))?;
    let known = match job.status {
        JobStatus::Succeeded => {
            let result = tenant.job_result(id).await?;
            // An answer is started again (a new item) only by a repair round or a new attempt: otherwise the
            // log need not be read.
            let rounds = result.as_ref().and_then(|r| r.get("rounds")).and_then(Value::as_u64).unwrap_or(1);
            let item = if rounds > 1 || job.attempts.len() > 1 { answers(tenant, id).await?.item() } else { 0 };
            shape::Known { result, partial: None, item }
        }
        JobStatus::Running => {
            let answers = answers(tenant, id).await?;
            shape::Known { result: None, partial: Some(answers.text().to_string()), item: answers.item() }
        }
        _ => shape::Known::default(),
    };
    Ok(shape::response(&job, &known))
}

/// The answers job `id`'s log holds: the current one's text and output item.
async fn answers(tenant: &TenantStore, id: JobId) -> Result<shape::Answers, ApiError> {
    let mut answers = shape::Answers::default();
    let mut after = 0;
    loop {
        let log = read_log(tenant, id, after).await?;
        for event in &log.events {
            answers.read(event);
        }
        match log.events.last() {
            Some(last) if log.events.len() >= BATCH as usize => after = last.seq,
            _ => return Ok(answers),
        }
    }
}

async fn read_log(tenant: &TenantStore, id: JobId, after: u64) -> Result<nova_store::JobLog, ApiError> {
    tenant.read_job_log(id, after, BATCH).await?.ok_or_else(|| not_found(&shape::response_id(id)))
}

/// Job `id`'s response events as Server-Sent Events: the whole log translated from its first event (the
/// numbering depends on it), sent after `starting_after`, live until the job's final event.
async fn stream(
    app: &AppState,
    tenant: &TenantStore,
    id: JobId,
    starting_after: Option<u64>,
    end: CancellationToken,
) -> Result<Response, ApiError> {
    let log = read_log(tenant, id, 0).await?;
    let job = tenant.get_job(id).await?.ok_or_else(|| not_found(&shape::response_id(id)))?;
    let responding = Responding {
        events: Box::pin(job_stream::follow(app, tenant, id, 0, log, end)),
        translator: shape::Translator::new(id),
        tenant: tenant.clone(),
        job,
        pending: VecDeque::new(),
        after: starting_after,
    };
    let stream = futures::stream::unfold(responding, Responding::next).map(Ok::<_, Infallible>);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(app.config.event_keep_alive));
    // Proxies that buffer responses (nginx) would hold the events back.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response())
}

/// A response stream's place: the job's log as it is read, and its events translated, not yet sent.
struct Responding {
    events: std::pin::Pin<Box<dyn futures::Stream<Item = JobEvent> + Send>>,
    translator: shape::Translator,
    tenant: TenantStore,
    /// The job as last read: at the start, and again at its final event.
    job: Job,
    pending: VecDeque<Value>,
    /// Events up to this `sequence_number` are not sent.
    after: Option<u64>,
}

impl Responding {
    async fn next(mut self) -> Option<(Event, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                let number = event["sequence_number"].as_u64().unwrap_or(0);
                if self.after.is_some_and(|after| number <= after) {
                    continue;
                }
                let kind = event["type"].as_str().unwrap_or("message").to_string();
                match Event::default().event(kind).json_data(&event) {
                    Ok(message) => return Some((message, self)),
                    Err(e) => {
                        tracing::error!(error = %e, "serializing a response event failed");
                        continue;
                    }
                }
            }
            let event = self.events.next().await?;
            let mut result = None;
            if event.is_final() {
                // The final events carry the finished response.
                match self.tenant.get_job(self.job.id).await {
                    Ok(Some(job)) => self.job = job,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::error!(error = %nova_core::error_chain(&e), "reading a response's job failed");
                        return None;
                    }
                }
                result = self.tenant.job_result(self.job.id).await.ok().flatten();
            }
            let job = &self.job;
            let out = self.translator.translate(&event, &|item| {
                shape::response(job, &shape::Known { result: result.clone(), partial: None, item })
            });
            self.pending.extend(out);
        }
    }
}
