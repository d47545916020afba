//! The workflows a job can run. Each turns a job's input into its result, or an error that says whether
//! trying again could help.

use nova_core::{
    AttemptToken, DocumentId, Invoice, InvoiceExtractInput, Job, JobError, JobId, NoopInput, TaskRunInput, TenantId,
    Workflow,
};
use nova_sandbox::spec::{outcome_json, ProgramSpec, MAX_JOB_PROGRAM_MS};
use nova_store::{NewArtifact, Store, UsageDelta};
use tracing::{debug, error, warn};

use crate::extractor::{Extractor, CRASH_CODES};
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

/// What a workflow runs with besides its job: where documents are read, the sandbox, and the model.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub extractor: &'a Extractor,
    pub sandbox: Option<&'a SandboxHandle>,
    pub model: &'a nova_llm::ModelClient,
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
    let sandbox = services.sandbox;
    match job.workflow {
        Workflow::InvoiceExtract => {
            let input: InvoiceExtractInput = serde_json::from_value(job.input.clone()).map_err(|e| {
                WorkflowError::Permanent(JobError { code: "invalid_input".into(), message: e.to_string() })
            })?;
            progress.report(serde_json::json!({"step": "reading_document"})).await;
            let bytes = match store.document_content(input.document_id).await {
                Ok(Some((meta, bytes))) => match meta.extraction_failure {
                    Some(failure) if !input.force => {
                        return Err(WorkflowError::Permanent(JobError {
                            message: format!(
                                "document {} took extraction down before ({} at {}); submit the job with \"force\": \
                                 true to read it again",
                                input.document_id, failure.code, failure.at
                            ),
                            code: failure.code,
                        }));
                    }
                    _ => bytes,
                },
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
            // The invoice and the text it was read from, in one pass: the AI path reads the same text.
            let extractor = services.extractor.clone();
            let read = tokio::task::spawn_blocking(move || extractor.read(&bytes))
                .await
                .map_err(|_| WorkflowError::Permanent(internal("extracting the invoice")))?;
            let read = match read {
                Ok(read) => read,
                Err(e) => return Err(extraction_failed(store, input.document_id, attempt, e).await),
            };
            let strategy = input.strategy.unwrap_or_default();
            let text = read.text.as_deref();
            llm_pass(store, sandbox, services.model, strategy, tenant, text, read.invoice, progress).await
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
            metrics::counter!("nova_sandbox_runs_total", "source" => "job", "outcome" => outcome.status.as_str())
                .increment(1);
            metrics::histogram!("nova_sandbox_cpu_seconds", "source" => "job").record(outcome.cpu_time.as_secs_f64());
            let used = UsageDelta::sandbox_run(outcome.cpu_time, outcome.wall_time);
            record_usage(store, tenant, Workflow::CodeRun, used).await;
            if outcome.status == nova_sandbox::Status::SandboxError {
                let message = outcome.error.unwrap_or_else(|| "the sandbox failed".into());
                return Err(WorkflowError::Transient(JobError { code: "sandbox_error".into(), message }));
            }
            Ok(outcome_json(&outcome))
        }
        Workflow::TaskRun => {
            let input = TaskRunInput::parse(&job.input)
                .map_err(|message| WorkflowError::Permanent(JobError { code: "invalid_input".into(), message }))?;
            task_run(store, tenant, input, progress, services).await
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

/// The AI path after the rules (`nova_llm::apply`), with the worker's model; the result is the invoice, with
/// the model's usage under `llm_usage` when it ran.
#[allow(clippy::too_many_arguments)]
async fn llm_pass(
    store: &Store,
    sandbox: Option<&SandboxHandle>,
    client: &nova_llm::ModelClient,
    strategy: nova_core::Strategy,
    tenant: TenantId,
    text: Option<&str>,
    rules: Invoice,
    progress: &Progress<'_>,
) -> Result<serde_json::Value, WorkflowError> {
    let sandbox = sandbox.map(|s| s.0.clone()).ok_or_else(|| "this worker has no sandbox".to_string());
    let mut usage = nova_llm::Usage::default();
    let applied = nova_llm::apply(strategy, client, sandbox, store, tenant, text, rules, &mut usage).await;
    // Counted whether or not the pass then succeeded: a model call made is a model call paid for.
    if usage.model_calls > 0 || usage.sandbox_runs > 0 {
        record_usage(store, tenant, Workflow::InvoiceExtract, llm_usage(&usage)).await;
    }
    let applied = applied.map_err(|e| ai_error(e.code(), &e, e.is_transient()))?;
    let mut result =
        serde_json::to_value(applied.invoice).map_err(|_| WorkflowError::Permanent(internal("encoding the result")))?;
    if applied.model_ran {
        let usage = serde_json::to_value(usage).unwrap_or_default();
        progress.report(serde_json::json!({"step": "llm", "usage": usage})).await;
        if let Some(fields) = result.as_object_mut() {
            fields.insert("llm_usage".into(), usage);
        }
    }
    Ok(result)
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

/// `task.run`: the documents read (extracted and their text), the model's program run in the sandbox, its
/// files stored as the job's artifacts. What the model and the sandbox used is recorded whatever the outcome.
async fn task_run(
    store: &Store,
    tenant: TenantId,
    input: TaskRunInput,
    progress: &Progress<'_>,
    services: Services<'_>,
) -> Result<serde_json::Value, WorkflowError> {
    let Services { extractor, sandbox, model } = services;
    let permanent = |code: &str, message: String| WorkflowError::Permanent(JobError { code: code.into(), message });
    let client = match model {
        Ok(Some(client)) => client.clone(),
        Ok(None) => return Err(permanent("llm_not_configured", TASK_NEEDS_A_MODEL.into())),
        Err(e) => return Err(permanent("llm_misconfigured", format!("the model configuration is invalid: {e}"))),
    };
    let Some(SandboxHandle(sandbox)) = sandbox.cloned() else {
        return Err(WorkflowError::Transient(JobError {
            code: "sandbox_unavailable".into(),
            message: "this worker has no sandbox; another attempt may run where one is".into(),
        }));
    };
    let total = input.document_ids.len();
    let mut documents = Vec::with_capacity(total);
    for (done, id) in input.document_ids.iter().enumerate() {
        progress.report(serde_json::json!({"step": "reading_documents", "done": done, "total": total})).await;
        let (meta, bytes) = match store.tenant(tenant).document_content(*id).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(permanent("document_not_found", format!("document {id} does not exist"))),
            Err(e) => {
                error!(%id, error = %error_chain(&e), "reading a document failed");
                return Err(WorkflowError::Transient(internal("reading the documents")));
            }
        };
        // One pass over the document (one OCR of a scan) for both its invoice and its text.
        let extractor = extractor.clone();
        let read = tokio::task::spawn_blocking(move || extractor.read(&bytes));
        let read = read.await.map_err(|_| WorkflowError::Permanent(internal("reading a document")))?;
        let (invoice, text, error) = match read {
            Ok(read) => (serde_json::to_value(read.invoice).ok(), read.text, None),
            Err(e) => (None, None, Some(format!("{}: {}", e.code, e.message))),
        };
        documents.push(nova_llm::TaskDocument {
            id: id.to_string(),
            filename: meta.filename.clone(),
            kind: meta.kind.as_str().to_string(),
            invoice,
            error,
            text,
        });
    }
    progress.report(serde_json::json!({"step": "running_task", "documents": total})).await;
    let (usage, outcome) = nova_llm::TaskRunner::new(client, sandbox).run(&input.prompt, &documents).await;
    if usage.model_calls > 0 || usage.sandbox_runs > 0 {
        record_usage(store, tenant, Workflow::TaskRun, llm_usage(&usage)).await;
    }
    let usage_json = serde_json::to_value(&usage).unwrap_or_default();
    let output = outcome.map_err(|e| ai_error(e.code(), &e, e.is_transient()))?;
    let files: Vec<NewArtifact> = output
        .files
        .into_iter()
        .map(|f| NewArtifact { content_type: content_type(&f.path).into(), name: f.path, contents: f.contents })
        .collect();
    let artifacts = store.put_artifacts(progress.job, progress.token, &files).await.map_err(|e| {
        warn!(job = %progress.job, error = %error_chain(&e), "storing the task's artifacts failed");
        WorkflowError::Transient(internal("storing the task's files"))
    })?;
    Ok(serde_json::json!({
        "summary": output.summary,
        "artifacts": artifacts,
        "program": output.program,
        "rounds": output.rounds,
        "llm_usage": usage_json,
    }))
}

const TASK_NEEDS_A_MODEL: &str =
    "task.run needs a model: set NOVA_LLM_BASE_URL and NOVA_LLM_MODEL (and NOVA_LLM_API_KEY if the provider needs one)";

/// The media type of an artifact, by its name's extension. Types a browser would run or render as a page
/// (HTML, SVG, JavaScript) are served as plain bytes.
fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "csv" => "text/csv; charset=utf-8",
        "tsv" => "text/tab-separated-values; charset=utf-8",
        "txt" | "log" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// The error of a document that could not be read. One that took its reader down (a crash, its memory or
/// time limit) is tried once more, in case the machine was at fault; on a later attempt it fails the job for
/// good and marks the document, so new jobs for it fail at once (a poison pill is not read again and again).
async fn extraction_failed(store: &Store, document: DocumentId, attempt: u32, error: JobError) -> WorkflowError {
    if !CRASH_CODES.contains(&error.code.as_str()) {
        return WorkflowError::Permanent(error);
    }
    if attempt < 2 {
        return WorkflowError::Transient(error);
    }
    if let Err(e) = store.set_extraction_failure(document, Some(&error.code)).await {
        warn!(%document, error = %error_chain(&e), "marking the document that took extraction down failed");
    }
    WorkflowError::Permanent(error)
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
