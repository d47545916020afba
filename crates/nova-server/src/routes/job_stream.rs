//! `GET /v1/jobs/{id}/events` as Server-Sent Events, for clients that send `Accept: text/event-stream`: the
//! job's durable event log, live.
//!
//! Each event is one SSE message: `id` its per-job `seq`, `event` its kind, `data` its JSON. A client that
//! reconnects sends the last `id` it saw as `Last-Event-ID` and gets only what followed. The stream ends
//! after the job's final event (`succeeded`, `failed`, `canceled`); asked to resume past that, it answers
//! `204`, which tells an `EventSource` to stop reconnecting.
//!
//! New events are found by reading the log again every `event_poll_interval` while the job runs. A
//! notification would be quicker, but events are appended by workers that may run in other processes
//! (`nova worker`, on SQLite or on other machines over PostgreSQL), which an in-process signal never hears,
//! and a PostgreSQL trigger would put a `NOTIFY` on every write of the queue. A poll is one statement (the
//! job by its key, its events by theirs) through the pool: between polls a stream holds no connection and
//! no transaction, only a timer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use nova_core::{JobEvent, JobId};
use nova_store::{JobLog, TenantStore};
use tokio_util::sync::CancellationToken;

use super::not_found;
use crate::error::ApiError;
use crate::AppState;

/// Events read at once; a longer backlog is read in several reads, back to back.
const BATCH: u32 = 100;

/// Whether the client asked for an event stream rather than the JSON page of events.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/event-stream")))
}

/// Where the stream starts: after the client's `Last-Event-ID` when it reconnects, else after `after` (the
/// `?after=` of the URL, which a reconnecting `EventSource` sends again unchanged).
pub fn resume_point(headers: &HeaderMap, after: u64) -> Result<u64, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(after) };
    let text = value.to_str().map(str::trim).unwrap_or("x");
    if text.is_empty() {
        return Ok(after);
    }
    text.parse().map_err(|_| ApiError::BadRequest {
        code: "invalid_last_event_id",
        message: "Last-Event-ID must be the `id` of an event of this stream (a sequence number)".into(),
    })
}

/// The stream of job `id`'s events after `after`; `404` for an unknown job, `204` when the job has finished
/// and nothing follows `after`.
///
/// Every read, the first and each poll, is the tenant's: one statement with the tenant in it.
pub async fn respond(
    app: &AppState,
    tenant: &TenantStore,
    id: JobId,
    after: u64,
    end: CancellationToken,
) -> Result<Response, ApiError> {
    let log = tenant.read_job_log(id, after, BATCH).await?.ok_or_else(|| not_found("job", &id.to_string()))?;
    if log.events.is_empty() && log.finished {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let stream = follow(app, tenant, id, after, log, end).filter_map(|event| async move { message(&event) });
    let stream = stream.map(Ok::<_, Infallible>);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(app.config.event_keep_alive));
    // Proxies that buffer responses (nginx) would hold the events back.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response())
}

/// Job `id`'s events after `after`, live, from its first read `log`: read again every
/// `event_poll_interval` while the job runs, ending after its final event or when `end` is cancelled.
pub(super) fn follow(
    app: &AppState,
    tenant: &TenantStore,
    id: JobId,
    after: u64,
    log: JobLog,
    end: CancellationToken,
) -> impl futures::Stream<Item = JobEvent> + Send + 'static {
    let mut follow = Follow {
        tenant: tenant.clone(),
        job: id,
        after,
        pending: VecDeque::new(),
        full: false,
        complete: false,
        poll: app.config.event_poll_interval,
        end,
    };
    follow.absorb(log);
    futures::stream::unfold(follow, Follow::next)
}

/// A stream's place in its job's log.
struct Follow {
    tenant: TenantStore,
    job: JobId,
    /// The last sequence number read.
    after: u64,
    /// Read, not yet sent.
    pending: VecDeque<JobEvent>,
    /// The last read was a full batch: more may be waiting already.
    full: bool,
    /// The log will not grow past what was read: end once `pending` is sent.
    complete: bool,
    poll: Duration,
    /// The server is shutting down.
    end: CancellationToken,
}

impl Follow {
    fn absorb(&mut self, log: JobLog) {
        self.full = log.events.len() >= BATCH as usize;
        // A finished job's final event is its last: it is in this read, or was before `after`.
        self.complete = log.events.last().map_or(log.finished, JobEvent::is_final);
        if let Some(last) = log.events.last() {
            self.after = last.seq;
        }
        self.pending.extend(log.events);
    }

    /// The next event, once there is one; `None` ends the stream.
    async fn next(mut self) -> Option<(JobEvent, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((event, self));
            }
            if self.complete {
                return None;
            }
            if !self.full {
                tokio::select! {
                    () = self.end.cancelled() => return None,
                    () = tokio::time::sleep(self.poll) => {}
                }
            }
            match self.tenant.read_job_log(self.job, self.after, BATCH).await {
                Ok(Some(log)) => self.absorb(log),
                // Deleted by retention meanwhile: it had finished, and its final event was sent.
                Ok(None) => return None,
                // The client reconnects with its last event id and resumes there.
                Err(e) => {
                    tracing::error!(job = %self.job, error = %nova_core::error_chain(&e), "reading a job's events for its stream failed");
                    return None;
                }
            }
        }
    }
}

fn message(event: &JobEvent) -> Option<Event> {
    let message = Event::default().id(event.seq.to_string()).event(&event.kind).json_data(event);
    message.map_err(|e| tracing::error!(error = %e, "serializing a job event failed")).ok()
}
