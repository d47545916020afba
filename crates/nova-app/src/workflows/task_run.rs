//! `task.run`: the documents read (extracted, and their text), the model's program over them run in the
//! sandbox, its files stored as the job's artifacts.

use nova_core::{Artifact, JobError, TaskRunInput, Workflow};
use nova_store::NewArtifact;
use serde::Serialize;
use tracing::warn;

use super::{ai_error, llm_usage, read_document, record_usage, sandbox_unavailable, Context, Services, WorkflowError};
use crate::{error_chain, internal, SandboxHandle};

/// The result of a `task.run` job.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRunOutput {
    /// What the program said it did.
    pub summary: String,
    /// The files it wrote, downloadable at `GET /v1/jobs/{id}/artifacts/{name}`.
    pub artifacts: Vec<Artifact>,
    /// The program that ran.
    pub program: String,
    /// Rounds with the model.
    pub rounds: u32,
    pub llm_usage: nova_llm::Usage,
}

/// `task.run`: the documents read (extracted and their text), the model's program run in the sandbox, its
/// files stored as the job's artifacts. What the model and the sandbox used is recorded whatever the outcome.
pub(super) async fn run(input: TaskRunInput, cx: &Context<'_>) -> Result<TaskRunOutput, WorkflowError> {
    let (store, tenant, progress) = (cx.store, cx.tenant, cx.progress);
    let Services { sandbox, model, .. } = cx.services;
    let permanent = |code: &str, message: String| WorkflowError::Permanent(JobError { code: code.into(), message });
    let client = match model {
        Ok(Some(client)) => client.clone(),
        Ok(None) => return Err(permanent("llm_not_configured", TASK_NEEDS_A_MODEL.into())),
        Err(e) => return Err(permanent("llm_misconfigured", format!("the model configuration is invalid: {e}"))),
    };
    let Some(SandboxHandle(sandbox)) = sandbox.cloned() else {
        return Err(sandbox_unavailable());
    };
    let total = input.document_ids.len();
    let mut documents = Vec::with_capacity(total);
    for (done, id) in input.document_ids.iter().enumerate() {
        progress.report(serde_json::json!({"step": "reading_documents", "done": done, "total": total})).await;
        let (meta, read) = read_document(cx, *id).await?;
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
    Ok(TaskRunOutput {
        summary: output.summary,
        artifacts,
        program: output.program,
        rounds: output.rounds,
        llm_usage: usage,
    })
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
