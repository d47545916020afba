//! `GET /v1/jobs` with `Accept: text/event-stream`: the newest page of a job list, live, as Server-Sent
//! Events. The console's job list follows it instead of polling.
//!
//! The stream first sends every job of the page (the list's newest `limit` jobs under its filters), then,
//! each time it reads the page again, each job that is new or has changed (its `updated_at`). It reads the
//! page every half second as `GET /v1/jobs` does (the jobs through the list's indexes, then their attempts:
//! two statements of at most `limit` rows each), so a stream costs that a poll and nothing on the queue's
//! write path. A reconnecting client gets the whole page again: each message is a
//! job's whole state, so replaying one is harmless. Jobs older than the page are not followed; the list
//! (`GET /v1/jobs` with `cursor`) pages through them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderName;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use nova_core::{Job, JobId};
use nova_store::{JobFilter, TenantStore};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::AppState;

/// How often a stream reads its page again.
const POLL: Duration = Duration::from_millis(500);

/// The stream of the newest page of `filter`'s list, `limit` jobs.
pub(crate) async fn respond(
    app: &AppState,
    tenant: TenantStore,
    filter: JobFilter,
    limit: u32,
    end: CancellationToken,
) -> Result<Response, ApiError> {
    // The first read here, so that a failing store answers an error rather than an empty stream.
    let first = tenant.list_jobs(filter, None, limit).await?.items;
    let mut watch = Watch { tenant, filter, limit, seen: HashMap::new(), pending: Vec::new(), end };
    watch.absorb(first);
    let stream = futures::stream::unfold(watch, Watch::next).map(Ok::<_, Infallible>);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(app.config.event_keep_alive));
    // Proxies that buffer responses (nginx) would hold the events back.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response())
}

/// One message of the stream.
enum Update {
    /// A job of the page, new or changed: `event: job`.
    Job(Box<Job>),
    /// A job that was on the page and no longer is (it left the filter, or newer jobs pushed it off):
    /// `event: left`, `{"id": ...}`.
    Left(JobId),
}

struct Watch {
    tenant: TenantStore,
    filter: JobFilter,
    limit: u32,
    /// Each job of the page as last sent: when it last changed.
    seen: HashMap<JobId, DateTime<Utc>>,
    /// Messages not sent yet, the next one last.
    pending: Vec<Update>,
    end: CancellationToken,
}

impl Watch {
    /// Keeps the jobs of a fresh read that are new or changed, to be sent oldest first, after the ones that
    /// left the page.
    fn absorb(&mut self, page: Vec<Job>) {
        let mut seen = HashMap::with_capacity(page.len());
        for job in page {
            seen.insert(job.id, job.updated_at);
            if self.seen.get(&job.id) != Some(&job.updated_at) {
                // The page is newest first, so pushing in order and popping from the end sends oldest first.
                self.pending.push(Update::Job(Box::new(job)));
            }
        }
        let mut left: Vec<JobId> = self.seen.keys().filter(|id| !seen.contains_key(id)).copied().collect();
        left.sort();
        self.pending.extend(left.into_iter().map(Update::Left));
        self.seen = seen;
    }

    async fn next(mut self) -> Option<(Event, Self)> {
        loop {
            if let Some(update) = self.pending.pop() {
                let event = match update {
                    Update::Job(job) => Event::default().event("job").json_data(&job),
                    Update::Left(id) => Event::default().event("left").json_data(serde_json::json!({"id": id})),
                };
                match event {
                    Ok(event) => return Some((event, self)),
                    Err(e) => {
                        tracing::error!(error = %e, "serializing a job failed");
                        continue;
                    }
                }
            }
            tokio::select! {
                () = self.end.cancelled() => return None,
                () = tokio::time::sleep(POLL) => {}
            }
            match self.tenant.list_jobs(self.filter, None, self.limit).await {
                Ok(page) => self.absorb(page.items),
                // The client reconnects and is sent the page again.
                Err(e) => {
                    tracing::error!(error = %nova_core::error_chain(&e), "reading the job list for its stream failed");
                    return None;
                }
            }
        }
    }
}
