//! How each workflow runs: one module per workflow, each a `run` from the workflow's typed input (parsed by
//! `nova_core::JobInput`, which declares the workflows and their inputs) to its typed output, or an error
//! that says whether trying again could help. [`execute`] is the one place that maps a job to its module.
//!
//! Adding a workflow: its line in `nova_core::job`'s `workflows!` table (name and input type), a module here
//! with its `run`, and its arm in [`execute`] (the compiler lists the places a new `JobInput` variant is
//! missing).

mod code_run;
mod invoice_extract;
mod llm_generate;
mod noop;
mod task_run;

// Each workflow's result, as its job's `result` holds it (`code.run`'s is `nova_sandbox::spec::ExecutionOutcome`).
pub use invoice_extract::InvoiceExtractOutput;
pub use llm_generate::{LlmGenerateOutput, FLUSH_BYTES, FLUSH_EVERY};
pub use noop::NoopOutput;
pub use task_run::TaskRunOutput;

use nova_core::{AttemptToken, Job, JobError, JobId, JobInput, TenantId, Workflow};
use nova_store::{Store, UsageDelta};
use serde::Serialize;
use tracing::{debug, warn};

use crate::extraction::Extractor;
use crate::{error_chain, internal, SandboxHandle};

/// Why a workflow did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowError {
    /// The input itself is at fault (a corrupt PDF, a missing document): another attempt would fail the same way.
    Permanent(JobError),
    /// Something around the job failed (storage unavailable): worth another attempt.
    Transient(JobError),
    /// The workflow learned that the job's cancellation was asked for, before the heartbeat did.
    Canceled,
    /// The workflow learned that its attempt no longer holds the job.
    LeaseLost,
}

/// A running workflow's channel for progress reports, which land in the job's event log.
pub struct Progress<'a> {
    pub(crate) store: &'a Store,
    pub(crate) job: JobId,
    pub(crate) token: AttemptToken,
}

impl Progress<'_> {
    /// Records `data` as a `progress` event. A report that cannot be written is logged and dropped: progress
    /// is informative, and a lost lease is the heartbeat's to act on.
    pub async fn report(&self, data: serde_json::Value) {
        if let Err(e) = self.store.report_progress(self.job, self.token, &data).await {
            debug!(job = %self.job, error = %error_chain(&e), "progress report not recorded");
        }
    }
}

/// What a workflow runs with besides its job: where documents are read, the sandbox, and the model.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub extractor: &'a Extractor,
    pub sandbox: Option<&'a SandboxHandle>,
    pub model: &'a nova_llm::ModelClient,
}

/// What a workflow's `run` is given besides its input: the store, whose job this is, its progress channel and
/// the services.
pub struct Context<'a> {
    pub store: &'a Store,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub tenant: TenantId,
    pub progress: &'a Progress<'a>,
    pub services: Services<'a>,
}

/// Runs `job`'s workflow to its JSON result; `attempt` is this attempt's number, from 1.
pub async fn execute(
    store: &Store,
    job: &Job,
    attempt: u32,
    tenant: TenantId,
    progress: &Progress<'_>,
    services: Services<'_>,
) -> Result<serde_json::Value, WorkflowError> {
    // Checked when the job was submitted; a stored input that no longer parses is the job's fault.
    let input = JobInput::parse(job.workflow, &job.input)
        .map_err(|e| WorkflowError::Permanent(JobError { code: e.code.into(), message: e.message }))?;
    let cx = Context { store, attempt, tenant, progress, services };
    match input {
        JobInput::InvoiceExtract(input) => encode(invoice_extract::run(input, &cx).await),
        JobInput::Noop(input) => encode(noop::run(input, &cx).await),
        JobInput::CodeRun(input) => encode(code_run::run(input, &cx).await),
        JobInput::TaskRun(input) => encode(task_run::run(input, &cx).await),
        JobInput::LlmGenerate(input) => encode(llm_generate::run(input, &cx).await),
    }
}

/// A workflow's typed output as the job's JSON result.
fn encode<T: Serialize>(output: Result<T, WorkflowError>) -> Result<serde_json::Value, WorkflowError> {
    serde_json::to_value(output?).map_err(|_| WorkflowError::Permanent(internal("encoding the result")))
}

/// Document `id` of the job's tenant and what reading it found (its invoice and its text, OCR for scans, in
/// one pass), read on a blocking thread.
async fn read_document(
    cx: &Context<'_>,
    id: nova_core::DocumentId,
) -> Result<(nova_core::DocumentMeta, Result<nova_extract::Read, JobError>), WorkflowError> {
    let (meta, bytes) = match cx.store.tenant(cx.tenant).document_content(id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let message = format!("document {id} does not exist");
            return Err(WorkflowError::Permanent(JobError { code: "document_not_found".into(), message }));
        }
        Err(e) => {
            tracing::error!(%id, error = %error_chain(&e), "reading a document failed");
            return Err(WorkflowError::Transient(internal("reading the documents")));
        }
    };
    let extractor = cx.services.extractor.clone();
    let read = tokio::task::spawn_blocking(move || extractor.read(&bytes));
    let read = read.await.map_err(|_| WorkflowError::Permanent(internal("reading a document")))?;
    Ok((meta, read))
}

/// The error of a workflow that needs the sandbox on a worker that has none: another worker may have one.
fn sandbox_unavailable() -> WorkflowError {
    WorkflowError::Transient(JobError {
        code: "sandbox_unavailable".into(),
        message: "this worker has no sandbox; another attempt may run where one is".into(),
    })
}

/// An error of the AI path as the job records it.
fn ai_error(code: &str, error: &dyn std::error::Error, transient: bool) -> WorkflowError {
    let error = JobError { code: code.into(), message: error_chain(error) };
    if transient {
        WorkflowError::Transient(error)
    } else {
        WorkflowError::Permanent(error)
    }
}

/// Adds what an attempt used to its tenant's usage of the day. A sum that cannot be written is logged: the
/// work is done, and usage is an account of it, not a condition of it.
async fn record_usage(store: &Store, tenant: TenantId, workflow: Workflow, used: UsageDelta) {
    if let Err(e) = store.record_usage(tenant, workflow.as_str(), chrono::Utc::now(), used).await {
        warn!(%tenant, workflow = workflow.as_str(), error = %error_chain(&e), "recording usage failed");
    }
}

/// The AI path's usage as the store sums it (costs in billionths).
fn llm_usage(usage: &nova_llm::Usage) -> UsageDelta {
    use rust_decimal::prelude::ToPrimitive;
    let cost_nanos =
        usage.cost.and_then(|c| (c * rust_decimal::Decimal::from(1_000_000_000_u64)).round().to_u64()).unwrap_or(0);
    UsageDelta {
        model_calls: u64::from(usage.model_calls),
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cost_nanos,
        sandbox_runs: u64::from(usage.sandbox_runs),
        sandbox_cpu_ms: usage.sandbox_cpu_ms,
        sandbox_wall_ms: usage.sandbox_wall_ms,
    }
}
