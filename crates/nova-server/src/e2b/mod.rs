//! E2B compatibility: E2B's own SDKs (`e2b`, `e2b-code-interpreter`) work against NOVA's sandboxes when
//! `E2B_API_URL` and `E2B_SANDBOX_URL` both point at this listener (`nova serve --e2b-listen ADDR`) and
//! `E2B_API_KEY` is a NOVA API key. One listener serves the three APIs those SDKs call, whose paths do not
//! collide:
//!
//! - the control plane ([`control`]): `/v2/sandboxes`, `/sandboxes/{id}/...`, authenticated by the API key
//!   in `X-API-Key` and scoped to its tenant;
//! - envd, the agent E2B runs in each sandbox ([`envd`]): its Connect RPC services `process.Process` and
//!   `filesystem.Filesystem` (JSON codec), `/files` and `/health`;
//! - the code interpreter ([`interpreter`]): `/execute` (results as JSON lines) and `/contexts`.
//!
//! Calls into a sandbox name it in `E2b-Sandbox-Id` and carry the access token its creation returned
//! (`X-Access-Token`, or `E2B-Traffic-Access-Token` on the interpreter's routes), as E2B's SDKs send them
//! when `E2B_SANDBOX_URL` is set; a wrong token finds no sandbox. What E2B offers and NOVA does not (other
//! templates, pause and resume, snapshots, fork, volumes, PTYs, file watches) is answered with E2B's error
//! shape, never left hanging.

mod control;
mod envd;
mod interpreter;

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nova_app::sandboxes::{SandboxEntry, SandboxError, Sandboxes};

use crate::AppState;

/// The version of envd this listener answers like: the SDKs enable features by it (0.5.7 has the default
/// user, `CloseStdin` and streamed uploads).
pub const ENVD_VERSION: &str = "0.5.7";

/// The E2B listener's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2/sandboxes", post(control::create).get(control::list))
        .route("/sandboxes/{id}", get(control::show).delete(control::kill))
        .route("/sandboxes/{id}/timeout", post(control::set_timeout))
        .route("/v2/sandboxes/{id}/connect", post(control::connect))
        .route("/sandboxes/{id}/connect", post(control::connect))
        .route("/sandboxes/{id}/metrics", get(control::metrics))
        .route("/health", get(envd::health))
        .route("/files", get(envd::download).post(envd::upload))
        .route("/process.Process/{method}", post(envd::process))
        .route("/filesystem.Filesystem/{method}", post(envd::filesystem))
        .route("/execute", post(interpreter::execute))
        .route("/contexts", post(interpreter::create_context).get(interpreter::list_contexts))
        .route("/contexts/{id}", axum::routing::delete(interpreter::remove_context))
        .route("/contexts/{id}/restart", post(interpreter::restart_context))
        .fallback(unsupported)
        .layer(axum::extract::DefaultBodyLimit::max(
            usize::try_from(state.config.max_upload_bytes).unwrap_or(usize::MAX).saturating_add(64 << 10),
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(crate::request_id::make_span))
        .with_state(state)
}

/// An error as E2B's REST APIs answer it: `{"code": <status>, "message": "..."}`.
pub(crate) struct RestError {
    status: StatusCode,
    message: String,
}

impl RestError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> RestError {
        RestError { status, message: message.into() }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"code": self.status.as_u16(), "message": self.message}));
        // E2B's SDKs retry 429 and 5xx answers unless told not to: NOVA's are not worth a retry.
        (self.status, [("should-retry", "false")], body).into_response()
    }
}

impl From<SandboxError> for RestError {
    fn from(e: SandboxError) -> Self {
        let status = match &e {
            SandboxError::NotFound(_) => StatusCode::NOT_FOUND,
            SandboxError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            SandboxError::InvalidTimeout(_) => StatusCode::BAD_REQUEST,
            SandboxError::Start(_) => StatusCode::SERVICE_UNAVAILABLE,
            SandboxError::Session(s) if s.kind == "not_found" => StatusCode::NOT_FOUND,
            SandboxError::Session(s) if s.kind == "ended" => StatusCode::NOT_FOUND,
            SandboxError::Session(s) if matches!(s.kind.as_str(), "invalid" | "too_large") => StatusCode::BAD_REQUEST,
            SandboxError::Session(s) if s.kind == "no_space" => StatusCode::INSUFFICIENT_STORAGE,
            SandboxError::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        RestError::new(status, e.to_string())
    }
}

impl From<crate::error::ApiError> for RestError {
    fn from(e: crate::error::ApiError) -> Self {
        let response = e.into_response();
        RestError::new(response.status(), "the API key is missing or not valid")
    }
}

/// The registry, or `503` on a server without a sandbox.
fn registry(app: &AppState) -> Result<Arc<Sandboxes>, RestError> {
    app.sandboxes.clone().map_err(|reason| {
        RestError::new(StatusCode::SERVICE_UNAVAILABLE, format!("sandboxes are not available on this server: {reason}"))
    })
}

/// Why a call into a sandbox found none.
pub(crate) enum Refusal {
    /// No `E2b-Sandbox-Id`, or no token.
    Unauthenticated(String),
    /// No such running sandbox for this token.
    Gone(String),
    /// No sandbox on this server.
    Unavailable(String),
}

/// The sandbox a call into one names (`E2b-Sandbox-Id`), if the call holds its token.
fn sandbox_of(app: &AppState, headers: &HeaderMap) -> Result<Arc<SandboxEntry>, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let Some(id) = header("e2b-sandbox-id") else {
        return Err(Refusal::Unauthenticated(
            "no E2b-Sandbox-Id header: set E2B_SANDBOX_URL to this listener's address".into(),
        ));
    };
    let Some(token) = header("x-access-token").or_else(|| header("e2b-traffic-access-token")) else {
        return Err(Refusal::Unauthenticated("no access token: X-Access-Token is missing".into()));
    };
    let registry = app.sandboxes.clone().map_err(|reason| Refusal::Unavailable(reason.to_string()))?;
    registry.get_with_token(id, token).map_err(|_| Refusal::Gone(format!("The sandbox {id} was not found")))
}

/// Everything else: an E2B path NOVA does not serve.
async fn unsupported(method: axum::http::Method, uri: axum::http::Uri) -> RestError {
    RestError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "NOVA does not serve {method} {}: it offers sandboxes of the default Python template with commands, \
             files and code runs (no templates, pause, snapshots, fork, volumes or PTYs)",
            uri.path()
        ),
    )
}

/// Serves the E2B listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Answers go out as written: streamed lines and small replies would otherwise wait out the client's
    // delayed acknowledgement (40 ms a call).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
