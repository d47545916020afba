//! `POST /v1/executions`: run a short program in the sandbox and answer with its outcome, synchronously.
//! `"network": true` in the body gives the program egress to public addresses (see `ProgramSpec::network`).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use nova_core::ProgramSpec;
use nova_sandbox::spec::{exec_request, ExecutionOutcome};
use nova_sandbox::Sandbox;

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/executions", post(create))
}

/// The longest synchronous execution: longer work belongs in a `code.run` job.
const MAX_TIMEOUT_MS: u64 = ProgramSpec::MAX_EXECUTION_TIMEOUT_MS;

#[utoipa::path(
    post,
    path = "/v1/executions",
    tag = "executions",
    summary = "Run a program in the sandbox",
    description = "Runs a short program (at most 60 s) and answers with its outcome once it ends; longer work \
                   belongs in a `code.run` job.",
    request_body(content = ProgramSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "The program ran (whatever its own exit).",
            body = ExecutionOutcome),
        (status = 400, description = "The body is not JSON (`malformed_json`, `unreadable_body`).", body = ErrorBody),
        (status = 415, description = "Not sent as JSON (`expected_json`).", body = ErrorBody),
        (status = 422, description = "A bad spec (`invalid_request`, `unsupported_language`).", body = ErrorBody),
        (status = 503, description = "This server has no sandbox (`sandbox_unavailable`).", body = ErrorBody),
    )
)]
async fn create(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    ApiJson(spec): ApiJson<ProgramSpec>,
) -> Result<Json<ExecutionOutcome>, ApiError> {
    let sandbox: Arc<dyn Sandbox> = match &app.sandbox {
        Ok(sandbox) => sandbox.clone(),
        Err(reason) => {
            return Err(ApiError::Unavailable {
                code: "sandbox_unavailable",
                message: format!("the sandbox is not available on this server: {reason}"),
            })
        }
    };
    let request =
        exec_request(spec, MAX_TIMEOUT_MS).map_err(|e| ApiError::Unprocessable { code: e.code, message: e.message })?;
    let outcome = tokio::task::spawn_blocking(move || sandbox.exec(&request))
        .await
        .map_err(|e| ApiError::internal("running the sandbox", &e))?;
    let used = nova_store::UsageDelta::sandbox_run(outcome.cpu_time, outcome.wall_time);
    // The outcome is the caller's whatever happens to the account of it.
    if let Err(e) = tenant.record_usage("execution", chrono::Utc::now(), used).await {
        tracing::warn!(error = %nova_core::error_chain(&e), "recording an execution's usage failed");
    }
    crate::metrics::record_sandbox_run(&outcome);
    Ok(Json(ExecutionOutcome::from(&outcome)))
}
