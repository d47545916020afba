//! `invoice.extract`: one invoice from one document, by the rules and, when the strategy asks, the AI path;
//! with the poison-pill rule for documents that take their reader down.

use nova_core::{DocumentId, Invoice, InvoiceExtractInput, JobError, Workflow};
use nova_store::Store;
use serde::Serialize;
use tracing::{error, warn};

use super::{ai_error, llm_usage, record_usage, Context, WorkflowError};
use crate::extraction::CRASH_CODES;
use crate::{error_chain, internal};

/// The result of an `invoice.extract` job: the invoice, and what the model used when it ran.
#[derive(Debug, Clone, Serialize)]
pub struct InvoiceExtractOutput {
    #[serde(flatten)]
    pub invoice: Invoice,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_usage: Option<nova_llm::Usage>,
}

pub(super) async fn run(input: InvoiceExtractInput, cx: &Context<'_>) -> Result<InvoiceExtractOutput, WorkflowError> {
    let store = cx.store;
    cx.progress.report(serde_json::json!({"step": "reading_document"})).await;
    let bytes = match store.document_content(input.document_id).await {
        Ok(Some((meta, bytes))) => match meta.extraction_failure {
            Some(failure) if !input.force => {
                return Err(WorkflowError::Permanent(JobError {
                    message: format!(
                        "document {} took extraction down before ({} at {}); submit the job with \"force\": true to \
                         read it again",
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
            error!(document = %input.document_id, error = %error_chain(&e), "reading the document failed");
            return Err(WorkflowError::Transient(internal("reading the document")));
        }
    };
    cx.progress.report(serde_json::json!({"step": "extracting", "bytes": bytes.len()})).await;
    // The invoice and the text it was read from, in one pass: the AI path reads the same text.
    let extractor = cx.services.extractor.clone();
    let read = tokio::task::spawn_blocking(move || extractor.read(&bytes))
        .await
        .map_err(|_| WorkflowError::Permanent(internal("extracting the invoice")))?;
    let read = match read {
        Ok(read) => read,
        Err(e) => return Err(extraction_failed(store, input.document_id, cx.attempt, e).await),
    };
    let strategy = input.strategy.unwrap_or_default();
    llm_pass(cx, strategy, read.text.as_deref(), read.invoice).await
}

/// The AI path after the rules (`nova_llm::apply`), with the worker's model; the result is the invoice, with
/// the model's usage under `llm_usage` when it ran.
async fn llm_pass(
    cx: &Context<'_>,
    strategy: nova_core::Strategy,
    text: Option<&str>,
    rules: Invoice,
) -> Result<InvoiceExtractOutput, WorkflowError> {
    let (store, tenant) = (cx.store, cx.tenant);
    let client = cx.services.model;
    let sandbox = cx.services.sandbox.map(|s| s.0.clone()).ok_or_else(|| "this worker has no sandbox".to_string());
    let mut usage = nova_llm::Usage::default();
    let applied = nova_llm::apply(strategy, client, sandbox, store, tenant, text, rules, &mut usage).await;
    // Counted whether or not the pass then succeeded: a model call made is a model call paid for.
    if usage.model_calls > 0 || usage.sandbox_runs > 0 {
        record_usage(store, tenant, Workflow::InvoiceExtract, llm_usage(&usage)).await;
    }
    let applied = applied.map_err(|e| ai_error(e.code(), &e, e.is_transient()))?;
    let llm_usage = applied.model_ran.then_some(usage);
    if let Some(usage) = &llm_usage {
        cx.progress.report(serde_json::json!({"step": "llm", "usage": usage})).await;
    }
    Ok(InvoiceExtractOutput { invoice: applied.invoice, llm_usage })
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
