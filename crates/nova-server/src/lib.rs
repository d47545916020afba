//! NOVA's HTTP API.
//!
//! Handlers are thin: they parse the request into domain types, call one store or extraction function, and
//! map the result. Every error leaves through [`error::ApiError`]. This crate knows no SQL.

pub mod auth;
pub mod console;
pub mod e2b;
pub mod error;
pub mod idempotency;
mod json;
pub mod metrics;
mod openapi;
pub mod ratelimit;
pub mod request_id;
mod routes;
mod schemas;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
pub use ratelimit::{Limiter, RateLimit};
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
    /// The request rate of each API key whose tenant has none of its own; `None`: no limits.
    pub rate_limit: Option<RateLimit>,
    /// The most unfinished jobs (queued, retrying, running) one tenant may have; a submission past it is
    /// `429 too_many_jobs`. `None`: no limit.
    pub max_unfinished_jobs: Option<u32>,
    /// The non-public destinations a job's webhook may name anyway (the dispatcher, `nova_app::webhooks`,
    /// is given the same list).
    pub webhook_allow: nova_app::webhooks::AllowList,
    /// How PDF pages are rendered for people (`GET /v1/documents/{id}/pages/{n}`).
    pub renderer: nova_app::engines::pdftoppm::PdftoppmConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 50 * 1024 * 1024,
            max_attempts: 3,
            event_poll_interval: Duration::from_millis(200),
            event_keep_alive: Duration::from_secs(15),
            rate_limit: Some(RateLimit::DEFAULT),
            max_unfinished_jobs: None,
            webhook_allow: Default::default(),
            renderer: Default::default(),
        }
    }
}

/// What every handler can reach: [`AppParts`] behind one `Arc`, since every layer that takes the state
/// clones it for every request.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl From<AppParts> for AppState {
    fn from(parts: AppParts) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of an [`AppState`].
pub struct AppParts {
    /// The store, not reachable unscoped from a route: see [`auth::ServerStore`].
    pub store: auth::ServerStore,
    pub config: Arc<ServerConfig>,
    /// Notified after each enqueue so that idle in-process workers start at once.
    pub wake_workers: Arc<Notify>,
    /// The sandbox for `POST /v1/executions`, or why there is none (the API then answers `503`).
    pub sandbox: Result<Arc<dyn nova_sandbox::Sandbox>, Arc<str>>,
    /// The live sandbox sessions of `/v1/sandboxes`, or why there are none (the API then answers `503`).
    pub sandboxes: Result<Arc<nova_app::sandboxes::Sandboxes>, Arc<str>>,
    /// Where request rates are counted (see [`ratelimit`]).
    pub limiter: Limiter,
    /// Where uploads are checked: parsing untrusted bytes happens in its processes, not the server's.
    pub extractor: nova_app::extraction::Extractor,
}

/// The whole API as an axum router. Its event streams end only with their jobs; [`serve`] also ends them
/// at shutdown.
pub fn router(state: AppState) -> Router {
    routes::router(state, CancellationToken::new(), openapi::router())
}

/// Serves the API on `listener` until `shutdown` resolves; requests in flight then finish before it returns,
/// and open event streams end at once (their clients resume from their last event, here or elsewhere).
///
/// Says at start whether API keys are required, or (with none yet) that only loopback clients are
/// answered; and forgets idle rate budgets every few minutes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match state.store.keys_exist().await {
        Ok(true) => tracing::info!("API keys exist: every /v1 request needs one (Authorization: Bearer ...)"),
        Ok(false) => tracing::warn!(
            "no API key exists: the API answers loopback clients only, without a key, until `nova keys create` \
             makes one"
        ),
        Err(e) => tracing::error!(error = %nova_core::error_chain(&e), "checking for API keys failed"),
    }
    let upkeep = tokio::spawn(upkeep(state.limiter.clone()));
    let metrics_upkeep = tokio::spawn(metrics::upkeep());
    let streams_end = CancellationToken::new();
    let signal = {
        let streams_end = streams_end.clone();
        async move {
            shutdown.await;
            streams_end.cancel();
        }
    };
    let app = routes::router(state, streams_end, openapi::router()).into_make_service_with_connect_info::<SocketAddr>();
    // Events and small answers go out as written, not after the client's delayed acknowledgement.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(listener, app).with_graceful_shutdown(signal).await;
    upkeep.abort();
    metrics_upkeep.abort();
    served
}

/// Every five minutes: forgets idle in-memory rate budgets. (The stored state's housekeeping and the webhook
/// dispatcher are the application layer's, `nova_app::housekeeping`, which the binary starts beside the API.)
async fn upkeep(limiter: Limiter) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        limiter.forget_idle();
    }
}
