//! `/healthz` (the process answers) and `/readyz` (the database and blob store answer too).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorBody};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// The process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "Always, while the process runs.", body = crate::openapi::Health))
)]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The database and the blob store answer too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready to serve.", body = crate::openapi::Ready),
        (status = 503, description = "A dependency is not reachable (`not_ready`).", body = ErrorBody),
    )
)]
async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    match app.store.ping().await {
        Ok(()) => Ok(Json(json!({"status": "ready", "checks": {"database": "ok", "blob_store": "ok"}}))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable { code: "not_ready", message: format!("a dependency is not reachable: {e}") })
        }
    }
}
