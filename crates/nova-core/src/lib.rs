//! NOVA's domain types.
//!
//! Everything past the edges of the system (HTTP bodies, CLI arguments, document text) is turned into these
//! types once, and only these types travel between crates. This crate does no I/O.

pub mod batch;
pub mod correction;
pub mod document;
pub mod export;
pub mod generate;
pub mod ids;
pub mod invoice;
pub mod job;
pub mod net;
pub mod program;
pub mod review;
pub mod schedule;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use batch::{Batch, BatchCounts, BatchItem, MAX_BATCH_JOBS};
pub use document::{DocumentKind, DocumentMeta, ExtractionFailure, PageWord, PageWords, Sha256Hex};
pub use generate::{ChatMessage, ChatRole, LlmGenerateInput, Temperature};
pub use ids::{
    ApiKeyId, AttemptToken, BatchId, DocumentId, JobId, MessageId, ParseIdError, ProgramId, SandboxId, ScheduleId,
    TenantId, WorkerId,
};
pub use invoice::{Invoice, Line, Party, TaxRow, Totals, CORE_FIELDS};
pub use job::{
    Artifact, Attempt, AttemptOutcome, InputError, InvoiceExtractInput, Job, JobError, JobEvent, JobInput, JobStatus,
    NoopInput, ReviewState, Strategy, TaskRunInput, UnknownWorkflow, Workflow,
};
pub use program::{ProgramSpec, SpecFile, SpecLimits};
pub use review::{review, sums, Review, ReviewReason, Sum, Why, DEFAULT_CONFIDENCE_THRESHOLD};
pub use schedule::{CronSchedule, MissedPolicy, Schedule, ScheduleError};

/// An error with its sources on one line, `outer: inner: root`, for logs and job records.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
