//! `llm.generate`: a model's answer to a conversation, streamed, with documents' text as context and,
//! when asked, an answer checked against a JSON Schema (an answer that breaks it goes back to the model with
//! the errors, as the extraction loop does with a failing program).

use nova_core::generate::schema_errors;
use serde::Serialize;

use crate::client::{ChatClient, LlmError, Message};
use crate::extraction::Usage;
use crate::stream::ChatOptions;

/// What the generation tells its caller while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerateEvent {
    /// The model wrote this text.
    Text(String),
    /// The text so far is dropped: the model is asked again (its answer broke the schema), and what follows
    /// is a new answer.
    Restart { round: u32, reason: String },
}

/// A finished generation.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// The model's whole answer (the last round's).
    pub text: String,
    /// The answer parsed, when a JSON Schema was given (and the answer satisfies it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Why the model stopped: `stop`, `length` (it reached `max_output_tokens`), `content_filter`, ...
    pub finish_reason: String,
    /// Answers the model wrote (more than one when an answer broke the schema).
    pub rounds: u32,
}

/// Why a generation gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the model call failed")]
    Model(#[source] LlmError),
    /// Every round's answer broke the schema; the last one's errors.
    #[error("after {rounds} answers the model's answer still breaks the JSON schema: {}", errors.join("; "))]
    SchemaNotMet { rounds: u32, errors: Vec<String> },
}

impl GenerateError {
    /// A stable code for the job's error.
    pub fn code(&self) -> &'static str {
        match self {
            GenerateError::Model(_) => "llm_call_failed",
            GenerateError::SchemaNotMet { .. } => "schema_not_met",
        }
    }

    /// Whether another attempt could succeed: a model that could not be reached, yes; one that cannot
    /// satisfy the schema, no.
    pub fn is_transient(&self) -> bool {
        matches!(self, GenerateError::Model(e) if e.is_retryable())
    }
}

/// Runs `messages` through the model, streaming its text to `on_event`, with up to the configured repair
/// rounds when `options.json_schema` is given. `usage` counts every call, whatever the outcome.
pub async fn generate(
    client: &ChatClient,
    mut messages: Vec<Message>,
    options: &ChatOptions,
    usage: &mut Usage,
    on_event: &(dyn Fn(GenerateEvent) + Send + Sync),
) -> Result<Generation, GenerateError> {
    let rounds = 1 + client.config().max_repair_rounds;
    let on_text = |text: &str| on_event(GenerateEvent::Text(text.to_string()));
    let mut errors = Vec::new();
    for round in 1..=rounds {
        if round > 1 {
            let reason = format!("the answer broke the JSON schema ({}); asking the model again", errors.join("; "));
            on_event(GenerateEvent::Restart { round, reason });
        }
        let streamed = client.stream(&messages, options, &on_text).await.map_err(GenerateError::Model)?;
        usage.add_completion(&streamed.completion, client.config());
        let text = streamed.completion.content;
        let Some(schema) = &options.json_schema else {
            return Ok(Generation { text, json: None, finish_reason: streamed.finish_reason, rounds: round });
        };
        errors = match serde_json::from_str::<serde_json::Value>(strip_fence(&text)) {
            Ok(value) => {
                let found = schema_errors(schema, &value);
                if found.is_empty() {
                    let finish_reason = streamed.finish_reason;
                    return Ok(Generation { text, json: Some(value), finish_reason, rounds: round });
                }
                found
            }
            Err(e) if streamed.finish_reason == "length" => {
                vec![format!("the answer was cut at the token limit before its JSON ended ({e})")]
            }
            Err(e) => vec![format!("the answer is not JSON ({e})")],
        };
        messages.push(Message::assistant(text));
        messages.push(Message::user(format!(
            "Your answer does not satisfy the JSON schema: {}. Answer again with only the JSON value, \
             satisfying the schema.",
            errors.join("; ")
        )));
    }
    Err(GenerateError::SchemaNotMet { rounds, errors })
}

/// The JSON inside a Markdown code fence, which models add around JSON though asked not to; the text itself
/// otherwise.
fn strip_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix("```") else { return trimmed };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// A document given to the model as context.
#[derive(Debug, Clone)]
pub struct ContextDocument {
    pub id: String,
    pub filename: Option<String>,
    pub text: String,
}

/// What of a document reached the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextUse {
    pub document_id: String,
    /// Characters of the document's text.
    pub chars: usize,
    /// Characters given to the model.
    pub included_chars: usize,
    /// Its text was cut to fit the model's context.
    pub truncated: bool,
}

/// Characters per token, counted low: Latin text runs about four to a token, and a budget that assumes
/// fewer keeps a prompt inside the context where a tokenizer would count more tokens.
const CHARS_PER_TOKEN: usize = 3;

/// Tokens kept free for the answer when the request sets no `max_output_tokens`.
const DEFAULT_ANSWER_RESERVE: usize = 4_096;

/// The documents' text as one system message that fits the model's context of `context_tokens` beside the
/// `conversation` and an answer of `max_output_tokens`, each document cut at the end when all do not fit
/// (the budget shared evenly, a short document's unused share passing to the others), and what of each was
/// given. `None` when there are no documents.
pub fn document_context(
    documents: &[ContextDocument],
    conversation: &[Message],
    context_tokens: u32,
    max_output_tokens: Option<u32>,
) -> Option<(Message, Vec<ContextUse>)> {
    if documents.is_empty() {
        return None;
    }
    let reserve = max_output_tokens.map_or(DEFAULT_ANSWER_RESERVE, |n| n as usize);
    let spoken: usize = conversation.iter().map(|m| m.content.chars().count()).sum();
    // Each document's markers, id and name, counted generously.
    let header = 200 * documents.len();
    let budget = (context_tokens as usize).saturating_sub(reserve).saturating_mul(CHARS_PER_TOKEN);
    let mut left = budget.saturating_sub(spoken + header);
    let lengths: Vec<usize> = documents.iter().map(|d| d.text.chars().count()).collect();
    // Shortest first, each taking at most an even share of what is left.
    let mut order: Vec<usize> = (0..documents.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut kept = vec![0; documents.len()];
    for (n, &i) in order.iter().enumerate() {
        let share = left / (documents.len() - n);
        kept[i] = lengths[i].min(share);
        left -= kept[i];
    }
    let mut text = String::from(
        "The user's documents follow, each between its markers. Use them to answer; a document marked as \
         cut was too long to give whole.\n",
    );
    let mut uses = Vec::with_capacity(documents.len());
    for (i, document) in documents.iter().enumerate() {
        let truncated = kept[i] < lengths[i];
        let name = document.filename.as_deref().unwrap_or("");
        let cut = if truncated {
            format!(" (cut: the first {} of {} characters)", kept[i], lengths[i])
        } else {
            String::new()
        };
        text.push_str(&format!("\n<document id=\"{}\" name=\"{}\"{cut}>\n", document.id, name.replace('"', "'")));
        text.extend(document.text.chars().take(kept[i]));
        text.push_str("\n</document>\n");
        uses.push(ContextUse {
            document_id: document.id.clone(),
            chars: lengths[i],
            included_chars: kept[i],
            truncated,
        });
    }
    Some((Message::system(text), uses))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(id: &str, chars: usize) -> ContextDocument {
        ContextDocument { id: id.into(), filename: Some(format!("{id}.pdf")), text: "x".repeat(chars) }
    }

    #[test]
    fn documents_that_fit_are_given_whole() {
        let (message, uses) =
            document_context(&[document("a", 1000), document("b", 50)], &[Message::user("sum")], 32_000, None).unwrap();
        assert!(uses.iter().all(|u| !u.truncated && u.included_chars == u.chars), "{uses:?}");
        assert!(message.content.contains("<document id=\"a\" name=\"a.pdf\">"));
        assert_eq!(message.role, "system");
    }

    #[test]
    fn a_long_document_is_cut_and_a_short_one_keeps_its_text() {
        // 10,000 tokens of context less 1,000 for the answer: 27,000 characters, less the prompt and headers.
        let docs = [document("long", 100_000), document("short", 2_000)];
        let (message, uses) = document_context(&docs, &[Message::user("q")], 10_000, Some(1_000)).unwrap();
        assert_eq!(
            uses[1],
            ContextUse { document_id: "short".into(), chars: 2_000, included_chars: 2_000, truncated: false }
        );
        assert!(uses[0].truncated);
        let budget = (10_000 - 1_000) * CHARS_PER_TOKEN;
        assert!(uses[0].included_chars + 2_000 <= budget, "{uses:?}");
        assert!(uses[0].included_chars > budget / 2, "the short document's unused share went unused: {uses:?}");
        assert!(message.content.contains("(cut: the first"));
        assert!(message.content.chars().count() <= budget, "the context message is longer than its budget");
    }

    #[test]
    fn no_documents_no_context() {
        assert!(document_context(&[], &[], 1000, None).is_none());
    }

    #[test]
    fn fences_around_json_are_taken_off() {
        assert_eq!(strip_fence("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(strip_fence(" {\"a\": 1} "), "{\"a\": 1}");
    }
}
