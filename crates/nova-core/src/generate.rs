//! The input of an `llm.generate` job: what to ask the model, with what context, and what shape the answer
//! must have.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{InputError, WorkflowInput};
use crate::DocumentId;

/// The input of an `llm.generate` job: a `prompt` or a list of chat `messages` (exactly one of the two), the
/// documents whose text the model is given as context, and the answer's limits and shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmGenerateInput {
    /// The user's request, as one user message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A conversation, oldest first; the model answers its last message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<ChatMessage>,
    /// Put before everything else as a system message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Documents whose text (read from their text layer, or by OCR for scans) is given to the model, each at
    /// most once. Text that does not fit the model's context is cut, and the result says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub document_ids: Vec<DocumentId>,
    /// The most tokens the model may write; default the model's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2; default the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 2)]
    pub temperature: Option<Temperature>,
    /// A JSON Schema the answer must satisfy: the answer is then parsed as JSON, and an answer that breaks the
    /// schema goes back to the model with the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub json_schema: Option<serde_json::Value>,
    /// Up to 16 pairs of the client's own, kept with the job (OpenAI's `metadata`); NOVA does not read them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    System,
    /// OpenAI's newer name for a system message; sent to the model as `system`.
    Developer,
    User,
    Assistant,
}

impl ChatRole {
    /// The role as Chat Completions takes it.
    pub fn as_chat_role(self) -> &'static str {
        match self {
            ChatRole::System | ChatRole::Developer => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

/// A sampling temperature, checked to be a number from 0 to 2 (so never NaN, which makes it comparable).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Temperature(pub f32);

impl Eq for Temperature {}

impl LlmGenerateInput {
    /// Characters of all messages together, at most (the documents' text is not counted: it is cut to fit).
    pub const MAX_PROMPT_CHARS: usize = 200_000;
    /// Messages of one conversation, at most.
    pub const MAX_MESSAGES: usize = 200;
    /// Documents given as context, at most.
    pub const MAX_DOCUMENTS: usize = 50;
    /// Bytes of the JSON schema, at most.
    pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

    /// The conversation as given: the instructions, then the prompt or the messages.
    pub fn conversation(&self) -> Vec<ChatMessage> {
        let mut all = Vec::with_capacity(self.messages.len() + 2);
        if let Some(instructions) = &self.instructions {
            all.push(ChatMessage { role: ChatRole::System, content: instructions.clone() });
        }
        if let Some(prompt) = &self.prompt {
            all.push(ChatMessage { role: ChatRole::User, content: prompt.clone() });
        }
        all.extend(self.messages.iter().cloned());
        all
    }
}

impl WorkflowInput for LlmGenerateInput {
    fn document_ids(&self) -> Vec<DocumentId> {
        self.document_ids.clone()
    }

    fn check(&self) -> Result<(), InputError> {
        let invalid = |message: String| InputError { code: "invalid_input", message };
        match (&self.prompt, self.messages.is_empty()) {
            (Some(_), false) => return Err(invalid("give either prompt or messages, not both".into())),
            (None, true) => return Err(invalid("give a prompt or a list of messages".into())),
            (Some(prompt), true) if prompt.trim().is_empty() => return Err(invalid("prompt is empty".into())),
            _ => {}
        }
        if self.messages.len() > Self::MAX_MESSAGES {
            return Err(invalid(format!("at most {} messages", Self::MAX_MESSAGES)));
        }
        if let Some(last) = self.messages.last() {
            if last.role == ChatRole::Assistant {
                return Err(invalid("the last message must not be the assistant's: the model answers it".into()));
            }
        }
        let chars: usize = self.conversation().iter().map(|m| m.content.chars().count()).sum();
        if chars > Self::MAX_PROMPT_CHARS {
            return Err(invalid(format!("the messages hold {chars} characters; at most {}", Self::MAX_PROMPT_CHARS)));
        }
        if self.document_ids.len() > Self::MAX_DOCUMENTS {
            return Err(invalid(format!("at most {} documents", Self::MAX_DOCUMENTS)));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = self.document_ids.iter().find(|id| !seen.insert(**id)) {
            return Err(invalid(format!("document {twice} is named twice")));
        }
        if self.max_output_tokens == Some(0) || self.max_output_tokens.is_some_and(|n| n > 1_000_000) {
            return Err(invalid("max_output_tokens must be between 1 and 1000000".into()));
        }
        if let Some(Temperature(t)) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(invalid("temperature must be between 0 and 2".into()));
            }
        }
        if let Some(schema) = &self.json_schema {
            check_schema(schema).map_err(invalid)?;
        }
        if self.metadata.len() > 16
            || self.metadata.iter().any(|(k, v)| k.chars().count() > 64 || v.chars().count() > 512)
        {
            return Err(invalid(
                "metadata holds at most 16 pairs, keys of at most 64 characters, values of 512".into(),
            ));
        }
        Ok(())
    }
}

/// Whether `schema` is a JSON Schema NOVA can check answers against: an object, not too large, that
/// compiles. References to other documents are not fetched (the validator is built without network or file
/// access), so a schema that needs them is refused here.
pub fn check_schema(schema: &serde_json::Value) -> Result<(), String> {
    if !schema.is_object() {
        return Err("json_schema must be a JSON Schema object".into());
    }
    if schema.to_string().len() > LlmGenerateInput::MAX_SCHEMA_BYTES {
        return Err(format!("json_schema must be at most {} bytes", LlmGenerateInput::MAX_SCHEMA_BYTES));
    }
    jsonschema::validator_for(schema).map(|_| ()).map_err(|e| format!("json_schema is not a valid JSON Schema: {e}"))
}

/// The errors of `value` against `schema` (which [`check_schema`] accepted), at most five, each with where
/// it is; empty when the value is valid.
pub fn schema_errors(schema: &serde_json::Value, value: &serde_json::Value) -> Vec<String> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(validator) => validator,
        Err(e) => return vec![format!("the schema does not compile: {e}")],
    };
    validator
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("at {at}: {e}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobInput, Workflow};
    use serde_json::json;

    fn parse(input: serde_json::Value) -> Result<JobInput, InputError> {
        JobInput::parse(Workflow::LlmGenerate, &input)
    }

    #[test]
    fn takes_a_prompt_or_messages_and_refuses_what_cannot_run() {
        let JobInput::LlmGenerate(input) = parse(json!({"prompt": "Summarise", "instructions": "Be brief"})).unwrap()
        else {
            panic!("not an llm.generate input")
        };
        let roles: Vec<_> = input.conversation().iter().map(|m| m.role).collect();
        assert_eq!(roles, [ChatRole::System, ChatRole::User]);
        assert!(parse(json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5})).is_ok());
        let bad = [
            json!({}),
            json!({"prompt": "  "}),
            json!({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}),
            json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
            json!({"messages": [{"role": "robot", "content": "b"}]}),
            json!({"prompt": "a", "temperature": 2.5}),
            json!({"prompt": "a", "max_output_tokens": 0}),
            json!({"prompt": "a", "json_schema": "object"}),
            json!({"prompt": "a", "json_schema": {"type": "nonsense"}}),
            json!({"prompt": "a", "model": "x"}),
        ];
        for input in bad {
            let error = parse(input.clone()).expect_err(&input.to_string());
            assert_eq!(error.code, "invalid_input", "{input}");
        }
    }

    #[test]
    fn schema_errors_say_where() {
        let schema = json!({"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]});
        assert!(check_schema(&schema).is_ok());
        assert!(schema_errors(&schema, &json!({"total": 3.5})).is_empty());
        let errors = schema_errors(&schema, &json!({"total": "three"}));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("at /total:"), "{errors:?}");
        assert_eq!(schema_errors(&schema, &json!({})).len(), 1);
    }
}
