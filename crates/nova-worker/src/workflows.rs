//! The workflows a job can run. Each turns a job's input into its result, or an error that says whether
//! trying again could help.

use nova_core::{AttemptToken, Invoice, InvoiceExtractInput, Job, JobError, JobId, NoopInput, Workflow};
use nova_sandbox::spec::{outcome_json, ProgramSpec, MAX_JOB_PROGRAM_MS};
use nova_store::Store;
use tracing::{debug, error};

use crate::{error_chain, internal, SandboxHandle};

/// Why a workflow did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowError {
    /// The input itself is at fault (a corrupt PDF, a missing document): another attempt would fail the same way.
    Permanent(JobError),
    /// Something around the job failed (storage unavailable): worth another attempt.
    Transient(JobError),
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

/// Runs `job`'s workflow to its JSON result.
pub async fn execute(
    store: &Store,
    job: &Job,
    progress: &Progress<'_>,
    sandbox: Option<&SandboxHandle>,
) -> Result<serde_json::Value, WorkflowError> {
    match job.workflow {
        Workflow::InvoiceExtract => {
            let input: InvoiceExtractInput = serde_json::from_value(job.input.clone()).map_err(|e| {
                WorkflowError::Permanent(JobError { code: "invalid_input".into(), message: e.to_string() })
            })?;
            progress.report(serde_json::json!({"step": "reading_document"})).await;
            let bytes = match store.document_content(input.document_id).await {
                Ok(Some((_, bytes))) => bytes,
                Ok(None) => {
                    return Err(WorkflowError::Permanent(JobError {
                        code: "document_not_found".into(),
                        message: format!("document {} does not exist", input.document_id),
                    }))
                }
                Err(e) => {
                    error!(job = %job.id, error = %error_chain(&e), "reading the document failed");
                    return Err(WorkflowError::Transient(internal("reading the document")));
                }
            };
            progress.report(serde_json::json!({"step": "extracting", "bytes": bytes.len()})).await;
            let invoice = tokio::task::spawn_blocking(move || extract_invoice(&bytes))
                .await
                .map_err(|_| WorkflowError::Permanent(internal("extracting the invoice")))?
                .map_err(WorkflowError::Permanent)?;
            serde_json::to_value(invoice).map_err(|_| WorkflowError::Permanent(internal("encoding the result")))
        }
        Workflow::CodeRun => {
            let spec: ProgramSpec = serde_json::from_value(job.input.clone()).map_err(|e| {
                WorkflowError::Permanent(JobError { code: "invalid_input".into(), message: e.to_string() })
            })?;
            let request = spec
                .into_request(MAX_JOB_PROGRAM_MS)
                .map_err(|e| WorkflowError::Permanent(JobError { code: e.code.into(), message: e.message }))?;
            let Some(SandboxHandle(sandbox)) = sandbox.cloned() else {
                return Err(WorkflowError::Transient(JobError {
                    code: "sandbox_unavailable".into(),
                    message: "this worker has no sandbox; another attempt may run where one is".into(),
                }));
            };
            progress.report(serde_json::json!({"step": "running"})).await;
            // The worker drops this future when the job is canceled; the guard then kills the program, which
            // would otherwise run on its blocking thread to its own deadline.
            let cancel = nova_sandbox::Cancel::new();
            let _kill_on_drop = cancel.on_drop();
            let outcome = tokio::task::spawn_blocking(move || sandbox.exec_cancelable(&request, &cancel))
                .await
                .map_err(|_| WorkflowError::Permanent(internal("running the sandbox")))?;
            if outcome.status == nova_sandbox::Status::SandboxError {
                let message = outcome.error.unwrap_or_else(|| "the sandbox failed".into());
                return Err(WorkflowError::Transient(JobError { code: "sandbox_error".into(), message }));
            }
            Ok(outcome_json(&outcome))
        }
        Workflow::Noop => {
            let input = NoopInput::parse(&job.input)
                .map_err(|message| WorkflowError::Permanent(JobError { code: "invalid_input".into(), message }))?;
            if input.sleep_ms > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(input.sleep_ms)).await;
            }
            Ok(serde_json::json!({"slept_ms": input.sleep_ms}))
        }
    }
}

/// The `invoice.extract` workflow on bytes in hand: what the queue runs for a stored document, and what
/// `nova extract` runs on a local file. CPU-bound: call it from a blocking thread.
pub fn extract_invoice(bytes: &[u8]) -> Result<Invoice, JobError> {
    // The extractor contains its own panics; this is the last line of defence for the process.
    match std::panic::catch_unwind(|| nova_extract::extract(bytes)) {
        Ok(Ok(invoice)) => Ok(invoice),
        Ok(Err(e)) => Err(JobError { code: e.code().to_string(), message: error_chain(&e) }),
        Err(_) => Err(JobError { code: "invalid_document".into(), message: "the document could not be read".into() }),
    }
}
