//! NOVA's HTTP API.
//!
//! Handlers are thin: they parse the request into domain types, call one store or extraction function, and
//! map the result. Every error leaves through [`error::ApiError`]. This crate knows no SQL.

pub mod error;
mod json;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use nova_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest document accepted by `POST /v1/documents`, in bytes.
    pub max_upload_bytes: u64,
    /// Attempts a new job may use before it fails.
    pub max_attempts: u32,
    /// How often an open event stream (`GET /v1/jobs/{id}/events` as SSE) reads its job's log for new events.
    pub event_poll_interval: Duration,
    /// How long an event stream may stay silent before it sends a keep-alive comment.
    pub event_keep_alive: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            max_attempts: 3,
            event_poll_interval: Duration::from_millis(200),
            event_keep_alive: Duration::from_secs(15),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: ServerConfig,
    /// Notified after each enqueue so that idle in-process workers start at once.
    pub wake_workers: Arc<Notify>,
    /// The sandbox for `POST /v1/executions`, or why there is none (the API then answers `503`).
    pub sandbox: Result<Arc<dyn nova_sandbox::Sandbox>, Arc<str>>,
}

/// The whole API as an axum router. Its event streams end only with their jobs; [`serve`] also ends them
/// at shutdown.
pub fn router(state: AppState) -> Router {
    routes::router(state, CancellationToken::new())
}

/// Serves the API on `listener` until `shutdown` resolves; requests in flight then finish before it returns,
/// and open event streams end at once (their clients resume from their last event, here or elsewhere).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let streams_end = CancellationToken::new();
    let signal = {
        let streams_end = streams_end.clone();
        async move {
            shutdown.await;
            streams_end.cancel();
        }
    };
    axum::serve(listener, routes::router(state, streams_end)).with_graceful_shutdown(signal).await
}
