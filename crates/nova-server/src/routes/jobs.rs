//! Jobs: submit, list, status, events, result, cancel.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Datelike, Utc};
use nova_core::{Job, JobEvent, JobId, JobInput, JobStatus, ReviewState, Workflow};
use nova_store::{
    Canceled, JobFilter, JobWebhook, NewJob, StoreError, DEFAULT_EVENT_TYPES, EVENT_TYPES, MAX_EVENTS_PER_READ,
};
use serde::Deserialize;

use super::pages::{self, PageBody};
use super::{job_stream, not_found, parse_id, IdPath, StreamsEnd};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;
use nova_app::webhooks::{self, AllowList};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", post(create).get(list))
        .route("/jobs/{id}", get(show))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/events", get(events))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateJob {
    #[schema(value_type = Workflow)]
    workflow: String,
    /// The workflow's input, one of `JobInput`'s shapes: `InvoiceExtractInput` for `invoice.extract`,
    /// `NoopInput` (or nothing) for `noop`, `ProgramSpec` for `code.run`, `TaskRunInput` for `task.run`.
    #[serde(default)]
    #[schema(required = false, value_type = JobInput)]
    input: serde_json::Value,
    /// Higher runs first, from -1000 to 1000; default 0.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    priority: i64,
    /// Not before this time (RFC 3339); default now.
    run_at: Option<DateTime<Utc>>,
    /// The hard deadline of one attempt, in seconds, at most a day; default 900 (3600 for `llm.generate`).
    #[schema(minimum = 1, maximum = 86400)]
    timeout_seconds: Option<u64>,
    /// Attempts before the job fails, 1 to 20; default from the server's configuration.
    #[schema(minimum = 1, maximum = 20)]
    max_attempts: Option<u32>,
    /// The longest the job may wait for a worker after `run_at`, in seconds (at most 30 days); not started
    /// by then, it fails with `queue_timeout`. Default: no limit.
    #[schema(minimum = 1, maximum = 2592000)]
    queue_timeout_seconds: Option<u64>,
    /// Where the job's events are sent, signed (Standard Webhooks); see `webhooks`.
    webhook: Option<WebhookRequest>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    /// An http or https URL; a non-public address only when the server's allow-list names it.
    #[schema(max_length = 2048)]
    url: String,
    /// Event types (`job.succeeded`, ...); default the job's end: succeeded, failed, canceled.
    events: Option<Vec<String>>,
}

const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;
const MAX_QUEUE_TIMEOUT_SECONDS: u64 = 30 * 24 * 3600;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// `POST /v1/jobs`: validates the workflow and its input, then queues the job (`202`).
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    summary = "Submit a job",
    description = "Checks the workflow and its input, then queues the job. With an `Idempotency-Key`, a retry \
                   answers with the job first made.",
    request_body = CreateJob,
    responses(
        (status = 202, description = "Queued (or, replayed, the job the key made).", body = Job),
        (status = 400, description = "The body is not JSON, or a bad `Idempotency-Key` (`malformed_json`, \
            `unreadable_body`, `invalid_idempotency_key`).", body = ErrorBody),
        (status = 409, description = "The `Idempotency-Key` made a job with another workflow or input \
            (`idempotency_conflict`).", body = ErrorBody),
        (status = 415, description = "Not sent as JSON (`expected_json`).", body = ErrorBody),
        (status = 422, description = "A bad field, workflow or input (`invalid_request`, `unknown_workflow`, \
            `invalid_input`, `document_not_found`, `unsupported_language`, `invalid_webhook_url`, \
            `invalid_webhook_events`).", body = ErrorBody),
        (status = 429, description = "The tenant's unfinished jobs are at its limit (`too_many_jobs`), or the \
            key's request rate is spent (`rate_limited`).", body = ErrorBody),
    )
)]
async fn create(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let workflow: Workflow = body.workflow.parse().map_err(|e: nova_core::UnknownWorkflow| {
        ApiError::Unprocessable { code: "unknown_workflow", message: e.to_string() }
    })?;
    let asked = AskedOptions {
        priority: body.priority,
        run_at: body.run_at,
        timeout_seconds: body.timeout_seconds,
        max_attempts: body.max_attempts,
        queue_timeout_seconds: body.queue_timeout_seconds,
    };
    let options = asked.check(workflow, app.config.max_attempts)?;
    let idempotency_key = idempotency_key(&headers)?;
    let webhook = body.webhook.map(|hook| webhook(hook, &app.config.webhook_allow)).transpose()?;
    let new = NewJob {
        max_attempts: options.max_attempts,
        priority: options.priority,
        run_at: body.run_at,
        timeout: options.timeout,
        queue_timeout: options.queue_timeout,
        idempotency_key,
        webhook,
        request_id: crate::request_id::of(&headers),
        ..NewJob::new(workflow, body.input)
    };
    let enqueued = submit(&app, &tenant, new).await?;
    // A replay answers as the first request did.
    Ok((StatusCode::ACCEPTED, Json(enqueued.job)))
}

/// The options of the jobs a request submits, as `POST /v1/jobs`, `/v1/batches` and `/v1/schedules` take
/// them, before they are checked.
pub(super) struct AskedOptions {
    pub priority: i64,
    pub run_at: Option<DateTime<Utc>>,
    pub timeout_seconds: Option<u64>,
    pub max_attempts: Option<u32>,
    pub queue_timeout_seconds: Option<u64>,
}

/// [`AskedOptions`] checked, with the defaults filled in.
pub(super) struct JobOptions {
    pub priority: i64,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub queue_timeout: Option<Duration>,
}

impl AskedOptions {
    /// Checks each option's range; `workflow` gives the default deadline, `default_attempts` the attempts.
    pub(super) fn check(&self, workflow: Workflow, default_attempts: u32) -> Result<JobOptions, ApiError> {
        let invalid = |message: String| ApiError::Unprocessable { code: "invalid_request", message };
        if !(-1000..=1000).contains(&self.priority) {
            return Err(invalid("priority must be between -1000 and 1000".into()));
        }
        let timeout = self.timeout_seconds.unwrap_or(workflow.default_timeout_seconds());
        if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
            return Err(invalid(format!("timeout_seconds must be between 1 and {MAX_TIMEOUT_SECONDS}")));
        }
        let max_attempts = self.max_attempts.unwrap_or(default_attempts);
        if !(1..=20).contains(&max_attempts) {
            return Err(invalid("max_attempts must be between 1 and 20".into()));
        }
        if self.queue_timeout_seconds.is_some_and(|wait| !(1..=MAX_QUEUE_TIMEOUT_SECONDS).contains(&wait)) {
            return Err(invalid(format!("queue_timeout_seconds must be between 1 and {MAX_QUEUE_TIMEOUT_SECONDS}")));
        }
        if let Some(run_at) = self.run_at {
            // Times travel as RFC 3339, whose years are 0000 to 9999: a job past them would be answered with
            // times no client can read.
            let wait = chrono::Duration::seconds(self.queue_timeout_seconds.unwrap_or(0) as i64);
            let start_by = (run_at.year() >= 0).then(|| run_at.checked_add_signed(wait)).flatten();
            if start_by.is_none_or(|t| t.year() > 9999) {
                return Err(invalid("run_at must fall in the years 0000 to 9999, its queue timeout included".into()));
            }
        }
        Ok(JobOptions {
            priority: self.priority,
            max_attempts,
            timeout: Duration::from_secs(timeout),
            queue_timeout: self.queue_timeout_seconds.map(Duration::from_secs),
        })
    }
}

/// Checks `new`'s input against its workflow (the documents it names must be the tenant's) and the tenant's
/// cap on unfinished jobs, then queues it: what `POST /v1/jobs` and the surfaces mapped onto jobs
/// (`/v1/responses`) share.
pub(super) async fn submit(
    app: &AppState,
    tenant: &nova_store::TenantStore,
    new: NewJob,
) -> Result<nova_store::Enqueued, ApiError> {
    check_input(tenant, new.workflow, &new.input).await?;
    if let Some(cap) = app.config.max_unfinished_jobs {
        // Counted before the insert, so concurrent submissions may pass the cap by a few: a quota, not a lock.
        if tenant.count_unfinished_jobs(cap).await? >= cap {
            return Err(ApiError::QuotaExceeded {
                code: "too_many_jobs",
                message: format!("this tenant has {cap} unfinished jobs, its limit; submit more as they finish"),
            });
        }
    }
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
    Ok(enqueued)
}

/// `input` parsed as `workflow`'s, the documents it names checked to be the tenant's. Parsed here, at the
/// edge; the store keeps the input as the client sent it (so a job shows what was submitted, and a retried
/// Idempotency-Key compares like with like), which the worker reads back as this type.
pub(super) async fn check_input(
    tenant: &nova_store::TenantStore,
    workflow: Workflow,
    input: &serde_json::Value,
) -> Result<JobInput, ApiError> {
    let input =
        JobInput::parse(workflow, input).map_err(|e| ApiError::Unprocessable { code: e.code, message: e.message })?;
    for id in input.document_ids() {
        if tenant.get_document(id).await?.is_none() {
            return Err(ApiError::Unprocessable {
                code: "document_not_found",
                message: format!("no document with id `{id}`; upload it first with POST /v1/documents"),
            });
        }
    }
    Ok(input)
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
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => Ok(Some(key.to_string())),
        _ => Err(ApiError::BadRequest {
            code: "invalid_idempotency_key",
            message: format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
        }),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<JobStatus>)]
    pub(crate) status: Option<String>,
    /// Only jobs of this workflow.
    #[param(value_type = Option<Workflow>)]
    pub(crate) workflow: Option<String>,
    /// Only jobs whose result waits for review (`needed`: the review queue) or has had one (`reviewed`).
    #[param(value_type = Option<ReviewState>)]
    pub(crate) review: Option<String>,
    /// Items per page, 1 to 200; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub(crate) limit: Option<String>,
    /// The `next_cursor` of the page before.
    #[param(value_type = Option<String>, pattern = "^[0-9a-fA-F]{32}$")]
    pub(crate) cursor: Option<String>,
}

/// `GET /v1/jobs?status=&workflow=&review=&limit=&cursor=`: jobs newest first, a page at a time; `next_cursor`
/// asks for the next page. An empty parameter is no filter. With `Accept: text/event-stream`, the newest
/// page live instead (see `jobs_watch`).
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    summary = "List jobs",
    description = "A page of jobs, newest first. With `Accept: text/event-stream`, the newest page live \
        instead, as Server-Sent Events: a `job` event (the job, as `GET /v1/jobs/{id}` shows it) for each job of \
        the page, then one each time a job of that page is created or changes, and a `left` event \
        (`{\"id\": ...}`) when a job leaves the page (it no longer matches the filters, or newer jobs pushed it \
        off). A reconnecting client is sent the page again; a stream takes no `cursor`.",
    params(ListQuery),
    responses(
        (status = 200, description = "A page, newest first; or, streamed, the newest page live.", content(
            (PageBody<Job> = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 400, description = "An unknown or malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 422, description = "A bad filter, `limit` or `cursor` (`invalid_status`, `unknown_workflow`, \
            `invalid_review`, `invalid_limit`, `invalid_cursor`).", body = ErrorBody),
    )
)]
async fn list(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    Extension(StreamsEnd(streams_end)): Extension<StreamsEnd>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let filter = filter_of(&query)?;
    let limit = pages::limit(query.limit.as_deref())?;
    if job_stream::wanted(&headers) {
        if query.cursor.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(ApiError::Unprocessable {
                code: "invalid_cursor",
                message: "a stream follows the newest page only; page through older jobs without streaming".into(),
            });
        }
        return super::jobs_watch::respond(&app, tenant, filter, limit, streams_end).await;
    }
    let before = pages::cursor(query.cursor.as_deref(), JobId::PREFIX)?;
    let page = tenant.list_jobs(filter, before, limit).await?;
    Ok(Json(PageBody::new(page, JobId::PREFIX, |job| job.id.to_string())).into_response())
}

/// The filters of a list query; an empty parameter is no filter.
pub(crate) fn filter_of(query: &ListQuery) -> Result<JobFilter, ApiError> {
    fn given(value: &Option<String>) -> Option<&str> {
        value.as_deref().filter(|v| !v.is_empty())
    }
    let status =
        given(&query.status).map(|s| s.parse::<JobStatus>()).transpose().map_err(|e| ApiError::Unprocessable {
            code: "invalid_status",
            message: format!("{e} (known: queued, running, retrying, succeeded, failed, canceled)"),
        })?;
    let workflow = given(&query.workflow)
        .map(|w| w.parse::<Workflow>())
        .transpose()
        .map_err(|e| ApiError::Unprocessable { code: "unknown_workflow", message: e.to_string() })?;
    let review = given(&query.review)
        .map(|r| r.parse::<ReviewState>())
        .transpose()
        .map_err(|message| ApiError::Unprocessable { code: "invalid_review", message })?;
    Ok(JobFilter { status, workflow, review })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Only events with a sequence number above this.
    #[serde(default)]
    #[param(required = false)]
    after: u64,
    /// Events at most on the page (JSON only), up to the server's cap; default 100.
    limit: Option<u32>,
}

/// `GET /v1/jobs/{id}/events?after=N&limit=M`: the job's durable event log, oldest first. Poll with
/// `after` set to the last `seq` seen; `finished` says the log is complete. With `Accept: text/event-stream`,
/// the log as a live stream instead (see `job_stream`).
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    summary = "Read or follow a job's events",
    description = "The job's durable event log, oldest first: as a JSON page (poll with `after` set to \
                   `next_after`), or, with `Accept: text/event-stream`, as Server-Sent Events that follow the job \
                   live (`id` the event's `seq`, `event` its kind, `data` the event as JSON) and end after its \
                   final event. A stream resumes after `Last-Event-ID`.",
    params(
        ("id" = JobId, Path, description = "The job's id."),
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Streams only: the `id` of the last event \
            seen; the stream resumes after it.", pattern = "^[0-9]*$"),
    ),
    responses(
        (status = 200, description = "The events.", content(
            (EventsPage = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 204, description = "Streams only: the job has finished and no event follows the resume point."),
        (status = 400, description = "A malformed parameter (`invalid_query`, `invalid_last_event_id`).",
            body = ErrorBody),
        (status = 404, description = "No such job of this tenant (`job_not_found`).", body = ErrorBody),
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
    Ok(Json(EventsPage { events, next_after, finished }).into_response())
}

/// `POST /v1/jobs/{id}/cancel`: a job that has not started never will; a running one is stopped by its
/// worker at the next heartbeat (`cancel_requested_at` is set meanwhile). Canceling a canceled job is a
/// no-op; canceling a succeeded or failed one is `409`.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    summary = "Cancel a job",
    params(("id" = JobId, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Canceled, or asked of its worker (`cancel_requested_at`).", body = Job),
        (status = 404, description = "No such job of this tenant (`job_not_found`).", body = ErrorBody),
        (status = 409, description = "The job already succeeded or failed (`job_finished`).", body = ErrorBody),
    )
)]
async fn cancel(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<Job>, ApiError> {
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

/// `GET /v1/jobs/{id}`: where the job stands.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    summary = "Show a job",
    params(("id" = JobId, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job.", body = Job),
        (status = 404, description = "No such job of this tenant (`job_not_found`).", body = ErrorBody),
    )
)]
async fn show(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<Job>, ApiError> {
    let id: JobId = parse_id(&id, "job")?;
    tenant.get_job(id).await?.map(Json).ok_or_else(|| not_found("job", &id.to_string()))
}

/// A page of a job's event log (`GET /v1/jobs/{id}/events` as JSON).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct EventsPage {
    /// Oldest first.
    events: Vec<JobEvent>,
    /// The `after` to ask for the next events with: the last `seq` here, or the `after` given.
    next_after: u64,
    /// The job's final event is on this page: the log is complete.
    finished: bool,
}
