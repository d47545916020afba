//! NOVA's HTTP API.
//!
//! Handlers are thin: they parse the request into domain types, call one store or extraction function, and
//! map the result. Every error leaves through [`error::ApiError`]. This crate knows no SQL.

pub mod error;
mod json;
mod routes;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use nova_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest document accepted by `POST /v1/documents`, in bytes.
    pub max_upload_bytes: u64,
    /// Attempts a new job may use before it fails.
    pub max_attempts: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { max_upload_bytes: 50 * 1024 * 1024, max_attempts: 3 }
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

/// The whole API as an axum router.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// Serves the API on `listener` until `shutdown` resolves; requests in flight then finish before it returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
