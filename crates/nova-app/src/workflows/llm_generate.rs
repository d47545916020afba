//! `llm.generate`: a model's answer to a prompt or a conversation, with documents' text as context, written
//! into the job's event log as the model writes it.
//!
//! The text reaches the log in `output` events (`{"text": ...}`), each holding what the model wrote since the
//! last one, written at most every [`FLUSH_EVERY`] or when [`FLUSH_BYTES`] have gathered: a client that
//! follows the job's event stream sees the answer grow, and one that reconnects with `Last-Event-ID` misses
//! nothing, since every character is in exactly one durable event. An `output_reset` event says that the text
//! before it is dropped: the model is asked again (its answer broke the JSON schema), or a new attempt starts
//! the generation over after the last one's worker was lost. Each write also reads whether the job's
//! cancellation was asked for, and a quiet spell reads it every [`CANCEL_CHECK_EVERY`], so a cancel stops the
//! model call without waiting for the heartbeat.

use std::time::Duration;

use nova_core::{JobError, LlmGenerateInput, Workflow};
use nova_llm::{ChatOptions, ContextDocument, ContextUse, GenerateEvent, Message};
use nova_store::{Store, StoreError};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::warn;

use super::{llm_usage, read_document, record_usage, Context, WorkflowError};
use crate::error_chain;

/// The longest the model's text waits before it is written to the log.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Bytes of text written at once, at least, when the model writes faster than [`FLUSH_EVERY`].
pub const FLUSH_BYTES: usize = 2048;
/// While the model writes nothing (it thinks, or waits on its provider), how often the job's cancellation is
/// looked for: a read by key, cheap beside a model call.
const CANCEL_CHECK_EVERY: Duration = Duration::from_millis(500);

/// The result of an `llm.generate` job.
#[derive(Debug, Clone, Serialize)]
pub struct LlmGenerateOutput {
    /// The model's whole answer.
    pub text: String,
    /// The answer parsed, when the input gave a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Why the model stopped: `stop`, `length` (it reached `max_output_tokens`), `content_filter`, ...
    pub finish_reason: String,
    /// The model that answered.
    pub model: String,
    /// Answers the model wrote (more than one when an answer broke the schema).
    pub rounds: u32,
    /// What of each document the model was given; `truncated` when its text was cut to fit the context.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<ContextUse>,
    pub llm_usage: nova_llm::Usage,
}

pub(super) async fn run(input: LlmGenerateInput, cx: &Context<'_>) -> Result<LlmGenerateOutput, WorkflowError> {
    let permanent = |code: &str, message: String| WorkflowError::Permanent(JobError { code: code.into(), message });
    let client = match cx.services.model {
        Ok(Some(client)) => client.clone(),
        Ok(None) => return Err(permanent("llm_not_configured", NEEDS_A_MODEL.into())),
        Err(e) => return Err(permanent("llm_misconfigured", format!("the model configuration is invalid: {e}"))),
    };
    let mut documents = Vec::with_capacity(input.document_ids.len());
    let total = input.document_ids.len();
    for (done, id) in input.document_ids.iter().enumerate() {
        cx.progress.report(serde_json::json!({"step": "reading_documents", "done": done, "total": total})).await;
        let (meta, read) = read_document(cx, *id).await?;
        let text = match read {
            Ok(read) => read.text.unwrap_or_default(),
            Err(e) => return Err(permanent("document_unreadable", format!("document {id}: {}", e.message))),
        };
        documents.push(ContextDocument { id: id.to_string(), filename: meta.filename, text });
    }

    let conversation: Vec<Message> = input
        .conversation()
        .into_iter()
        .map(|m| Message { role: m.role.as_chat_role().into(), content: m.content })
        .collect();
    let config = client.config();
    let context =
        nova_llm::generate::document_context(&documents, &conversation, config.context_tokens, input.max_output_tokens);
    let (messages, context) = match context {
        // The documents go first, after the instructions when there are some.
        Some((message, uses)) => {
            let at = usize::from(conversation.first().is_some_and(|m| m.role == "system"));
            let mut messages = conversation;
            messages.insert(at, message);
            (messages, uses)
        }
        None => (conversation, Vec::new()),
    };
    if context.iter().any(|c| c.truncated) {
        let cut: Vec<&ContextUse> = context.iter().filter(|c| c.truncated).collect();
        cx.progress.report(serde_json::json!({"step": "context_truncated", "documents": cut})).await;
    }
    let options = ChatOptions {
        max_tokens: input.max_output_tokens,
        temperature: input.temperature.map(|t| t.0),
        json_schema: input.json_schema.clone(),
    };

    let (job, token) = (cx.progress.job, cx.progress.token);
    let (sender, receiver) = mpsc::unbounded_channel();
    if cx.attempt > 1 {
        let reason =
            format!("attempt {} starts the generation again; the text before this event is dropped", cx.attempt);
        let _ = sender.send(GenerateEvent::Restart { round: 1, reason });
    }
    let mut usage = nova_llm::Usage::default();
    let generation = async {
        let on_event = move |event| {
            // The receiver lives as long as this future's caller polls it.
            let _ = sender.send(event);
        };
        nova_llm::generate(&client, messages, &options, &mut usage, &on_event).await
    };
    let writer = write_output(cx.store, job, token, receiver);
    // Both run until the writer has written the last text: it ends when the generation has ended (its
    // sender dropped), or first, when the job was canceled or the lease lost, which drops the model call.
    let (written, generated) = {
        tokio::pin!(generation);
        tokio::pin!(writer);
        let mut generated = None;
        let written = loop {
            tokio::select! {
                outcome = &mut generation, if generated.is_none() => generated = Some(outcome),
                written = &mut writer => break written,
            }
        };
        (written, generated)
    };
    if usage.model_calls > 0 {
        record_usage(cx.store, cx.tenant, Workflow::LlmGenerate, llm_usage(&usage)).await;
    }
    written?;
    let generation = match generated {
        Some(generation) => generation,
        // The writer ends only once the sender is gone, which the generation drops at its end.
        None => return Err(WorkflowError::Permanent(crate::internal("the generation's output ended early"))),
    };
    let generation = generation.map_err(|e| super::ai_error(e.code(), &e, e.is_transient()))?;
    Ok(LlmGenerateOutput {
        text: generation.text,
        json: generation.json,
        finish_reason: generation.finish_reason,
        model: config.model.clone(),
        rounds: generation.rounds,
        context,
        llm_usage: usage,
    })
}

const NEEDS_A_MODEL: &str =
    "llm.generate needs a model: set NOVA_LLM_BASE_URL and NOVA_LLM_MODEL (and NOVA_LLM_API_KEY if the provider needs one)";

/// Writes the generation's events to the job's log until its sender is dropped: text coalesced (see
/// [`FLUSH_EVERY`], [`FLUSH_BYTES`]), restarts as `output_reset`. Ends early with
/// [`WorkflowError::Canceled`] when a write learns that the job's cancellation was asked for.
async fn write_output(
    store: &Store,
    job: nova_core::JobId,
    token: nova_core::AttemptToken,
    mut events: mpsc::UnboundedReceiver<GenerateEvent>,
) -> Result<(), WorkflowError> {
    let mut pending = String::new();
    let mut due: Option<tokio::time::Instant> = None;
    let mut check = tokio::time::interval(CANCEL_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_write = tokio::time::Instant::now();
    loop {
        let flush_at = due.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let event = tokio::select! {
            event = events.recv() => event,
            () = tokio::time::sleep_until(flush_at), if due.is_some() => {
                due = None;
                flush(store, job, token, &mut pending).await?;
                last_write = tokio::time::Instant::now();
                continue;
            }
            _ = check.tick() => {
                // A write reads the flag anyway; only a quiet spell needs the read.
                if last_write.elapsed() >= CANCEL_CHECK_EVERY {
                    match store.cancel_requested(job, token).await {
                        Ok(true) => return Err(WorkflowError::Canceled),
                        Err(StoreError::LeaseLost) => return Err(WorkflowError::LeaseLost),
                        Ok(false) | Err(_) => {}
                    }
                }
                continue;
            }
        };
        match event {
            Some(GenerateEvent::Text(text)) => {
                pending.push_str(&text);
                if pending.len() >= FLUSH_BYTES {
                    due = None;
                    flush(store, job, token, &mut pending).await?;
                    last_write = tokio::time::Instant::now();
                } else if due.is_none() {
                    due = Some(tokio::time::Instant::now() + FLUSH_EVERY);
                }
            }
            Some(GenerateEvent::Restart { round, reason }) => {
                // The answer being dropped need not reach the log: no reader has seen what is pending, and
                // written after the reset it would read as the start of the new answer.
                due = None;
                pending.clear();
                let data = serde_json::json!({"round": round, "reason": reason});
                append_retrying(store, job, token, "output_reset", &data).await?;
                last_write = tokio::time::Instant::now();
            }
            None => {
                // The last text must be in the log before the result: a stream that reads the final event
                // has read every character.
                if !pending.is_empty() {
                    append_retrying(store, job, token, "output", &serde_json::json!({"text": pending})).await?;
                }
                return Ok(());
            }
        }
    }
}

/// Writes `pending` as one `output` event and empties it; a write that fails keeps it for the next try (the
/// text is never dropped: the log must hold every character).
async fn flush(
    store: &Store,
    job: nova_core::JobId,
    token: nova_core::AttemptToken,
    pending: &mut String,
) -> Result<(), WorkflowError> {
    if pending.is_empty() {
        return Ok(());
    }
    match append(store, job, token, "output", &serde_json::json!({"text": pending})).await {
        Ok(()) => {
            pending.clear();
            Ok(())
        }
        Err(WorkflowError::Transient(_)) => Ok(()),
        Err(other) => Err(other),
    }
}

/// Tries of a write that must land (the last text, a reset) before the attempt gives up and the job is
/// retried: 20, a [`FLUSH_EVERY`] apart.
const MUST_WRITE_TRIES: u32 = 20;

/// [`append`], tried again on a passing store failure, [`MUST_WRITE_TRIES`] times at most.
async fn append_retrying(
    store: &Store,
    job: nova_core::JobId,
    token: nova_core::AttemptToken,
    kind: &str,
    data: &serde_json::Value,
) -> Result<(), WorkflowError> {
    let mut tries = 0;
    loop {
        match append(store, job, token, kind, data).await {
            Err(WorkflowError::Transient(e)) => {
                tries += 1;
                if tries >= MUST_WRITE_TRIES {
                    return Err(WorkflowError::Transient(e));
                }
                tokio::time::sleep(FLUSH_EVERY).await;
            }
            other => return other,
        }
    }
}

async fn append(
    store: &Store,
    job: nova_core::JobId,
    token: nova_core::AttemptToken,
    kind: &str,
    data: &serde_json::Value,
) -> Result<(), WorkflowError> {
    match store.append_event(job, token, kind, data).await {
        Ok(appended) if appended.cancel_requested => Err(WorkflowError::Canceled),
        Ok(_) => Ok(()),
        Err(StoreError::LeaseLost) => Err(WorkflowError::LeaseLost),
        Err(e) => {
            warn!(%job, error = %error_chain(&e), "writing the model's output to the job's log failed; trying again");
            Err(WorkflowError::Transient(crate::internal("writing the model's output")))
        }
    }
}
