//! `/healthz` (the process answers) and `/readyz` (the database and blob store answer too).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

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
    responses((status = 200, description = "Always, while the process runs.", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database and the blob store answer too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready to serve.", body = Ready),
        (status = 503, description = "A dependency is not reachable (`not_ready`).", body = ErrorBody),
    )
)]
async fn readyz(State(app): State<AppState>) -> Result<Json<Ready>, ApiError> {
    match app.store.ping().await {
        Ok(()) => Ok(Json(Ready { status: "ready", checks: ReadyChecks { database: "ok", blob_store: "ok" } })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable { code: "not_ready", message: format!("a dependency is not reachable: {e}") })
        }
    }
}

/// `GET /healthz`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    #[schema(examples("ok"))]
    status: &'static str,
}

/// `GET /readyz` when ready.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    /// `ready`.
    #[schema(examples("ready"))]
    status: &'static str,
    checks: ReadyChecks,
}

/// Each dependency checked, `ok`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ReadyChecks {
    database: &'static str,
    blob_store: &'static str,
}
