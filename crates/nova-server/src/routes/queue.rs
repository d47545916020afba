//! `GET /v1/queue`: the tenant's share of the queue, per workflow, for the console's operations page and
//! for scripts that wait for a backlog to drain.

use axum::routing::get;
use axum::{Json, Router};
use nova_core::Workflow;
use serde::Serialize;

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/queue", get(queue))
}

/// One workflow's jobs that have not finished.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WorkflowQueueBody {
    workflow: Workflow,
    /// Queued or retrying, and due: a worker could take them now.
    ready: u64,
    /// Queued or retrying, due later (delayed jobs, retries in their backoff).
    scheduled: u64,
    /// Held by a worker.
    running: u64,
    /// How long the oldest ready job has waited since it was due, in seconds; 0 with none ready.
    oldest_ready_seconds: f64,
}

/// The tenant's queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QueueBody {
    /// Every workflow, those without jobs at zero.
    data: Vec<WorkflowQueueBody>,
}

/// `GET /v1/queue`: the tenant's waiting and running jobs per workflow, and the age of the oldest ready one.
#[utoipa::path(
    get,
    path = "/v1/queue",
    tag = "jobs",
    summary = "Show the queue",
    description = "This tenant's unfinished jobs per workflow: ready now, scheduled later, running, and how long \
        the oldest ready one has waited. (`GET /metrics` shows the whole server's.)",
    responses((status = 200, description = "The queue.", body = QueueBody))
)]
async fn queue(Tenant(tenant): Tenant) -> Result<Json<QueueBody>, ApiError> {
    let stats = tenant.queue_stats().await?;
    let data = stats
        .workflows
        .into_iter()
        .map(|(workflow, q)| WorkflowQueueBody {
            workflow,
            ready: q.ready,
            scheduled: q.scheduled,
            running: q.running,
            oldest_ready_seconds: q.oldest_ready_ms as f64 / 1000.0,
        })
        .collect();
    Ok(Json(QueueBody { data }))
}
