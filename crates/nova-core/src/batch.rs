//! Batches: many jobs of one workflow submitted together, with their progress as one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BatchId, JobError, JobId, JobStatus, Workflow};

/// The most jobs one batch holds.
pub const MAX_BATCH_JOBS: usize = 10_000;

/// A batch as the API shows it: its jobs counted by status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Batch {
    pub id: BatchId,
    pub workflow: Workflow,
    /// Jobs in the batch.
    pub total: u64,
    /// Jobs in a final state (succeeded, failed, canceled): the batch's progress is `done` of `total`.
    pub done: u64,
    pub counts: BatchCounts,
    /// Every job of the batch is final.
    pub finished: bool,
    pub created_at: DateTime<Utc>,
    /// When the batch's last job finished; `None` until then.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A batch's jobs per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchCounts {
    pub queued: u64,
    pub running: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub canceled: u64,
}

impl BatchCounts {
    /// Adds `n` jobs of `status`.
    pub fn add(&mut self, status: JobStatus, n: u64) {
        let slot = match status {
            JobStatus::Queued => &mut self.queued,
            JobStatus::Running => &mut self.running,
            JobStatus::Retrying => &mut self.retrying,
            JobStatus::Succeeded => &mut self.succeeded,
            JobStatus::Failed => &mut self.failed,
            JobStatus::Canceled => &mut self.canceled,
        };
        *slot += n;
    }

    /// Jobs in a final state.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.canceled
    }
}

/// One job of a batch as its results show it: the input it was given, where it stands, and its result or
/// error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchItem {
    /// The job's place in the batch: the index of its input in the request.
    pub index: u64,
    pub job_id: JobId,
    pub input: serde_json::Value,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}
