//! `GET /v1/batches/{id}/events`: a batch's progress as Server-Sent Events.
//!
//! The stream reads the batch again every `event_poll_interval` (its counts come from one range of an
//! index) and sends a `progress` event when they changed, so it sees what workers in any process did, as
//! the job streams do (`job_stream.rs`): no in-process signal would hear a `nova worker` elsewhere. Between
//! polls it holds no connection, only a timer. An event's `id` is the batch's `done` count, which never
//! goes down; the last event, `completed`, carries the final count, so a client that reconnects with it as
//! `Last-Event-ID` is answered `204` and an `EventSource` stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderName;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use nova_core::Batch;
use nova_store::TenantStore;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// The stream of `batch`'s progress from where it stands now.
pub fn respond(app: &AppState, tenant: TenantStore, batch: Batch, end: CancellationToken) -> Response {
    let follow = Follow { tenant, next: Some(batch), last: None, poll: app.config.event_poll_interval, end };
    let stream = futures::stream::unfold(follow, Follow::next).map(Ok::<_, Infallible>);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(app.config.event_keep_alive));
    // Proxies that buffer responses (nginx) would hold the events back.
    ([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response()
}

/// A stream's place: the batch as last sent.
struct Follow {
    tenant: TenantStore,
    /// Read, not yet looked at.
    next: Option<Batch>,
    /// As last sent; `None` before the first event.
    last: Option<Batch>,
    poll: Duration,
    /// The server is shutting down.
    end: CancellationToken,
}

impl Follow {
    /// The next message, once the batch changed; `None` ends the stream.
    async fn next(mut self) -> Option<(Event, Self)> {
        loop {
            if self.last.as_ref().is_some_and(|b| b.finished) {
                return None;
            }
            if let Some(batch) = self.next.take() {
                let changed = self.last.as_ref().is_none_or(|last| last.counts != batch.counts);
                if changed || batch.finished {
                    let kind = if batch.finished { "completed" } else { "progress" };
                    let event = Event::default().id(batch.done.to_string()).event(kind).json_data(&batch);
                    let event = event.map_err(|e| tracing::error!(error = %e, "serializing a batch failed")).ok()?;
                    self.last = Some(batch);
                    return Some((event, self));
                }
            }
            tokio::select! {
                () = self.end.cancelled() => return None,
                () = tokio::time::sleep(self.poll) => {}
            }
            let id = self.last.as_ref().map(|b| b.id)?;
            match self.tenant.get_batch(id).await {
                Ok(Some(batch)) => self.next = Some(batch),
                // Deleted by retention meanwhile: its jobs were all gone.
                Ok(None) => return None,
                // The client reconnects with its last event id and is sent the batch as it stands.
                Err(e) => {
                    tracing::error!(batch = %id, error = %nova_core::error_chain(&e), "reading a batch for its stream failed");
                    return None;
                }
            }
        }
    }
}
