//! Streamed chat completions (`"stream": true`): the model's text handed over as it is written, for answers
//! that take minutes (`llm.generate`).
//!
//! The provider sends Server-Sent Events, one `data:` JSON chunk per piece of text, the last with the usage
//! (asked for with `stream_options.include_usage`), then `data: [DONE]`. A call is retried like an unstreamed
//! one (429, 5xx, timeouts, lost connections) only until its first text: after that a retry would repeat
//! what the caller already has, so the error goes up and the caller decides (the job starts over and says
//! so). There is no deadline on the whole answer, only on each wait for its next bytes (the configured
//! request timeout).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use backon::Retryable;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::client::{transport_error, ChatClient, Completion, LlmError, Message};

/// What a streamed call asks beyond its messages.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    /// The most tokens the answer may hold (`max_tokens`, which every OpenAI-compatible server reads).
    pub max_tokens: Option<u32>,
    /// The provider's default when `None`.
    pub temperature: Option<f32>,
    /// Asks for JSON that satisfies this schema (`response_format: json_schema`).
    pub json_schema: Option<serde_json::Value>,
}

/// A streamed answer, whole.
#[derive(Debug, Clone)]
pub struct Streamed {
    pub completion: Completion,
    /// Why the model stopped: `stop`, `length` (the token limit), `content_filter`, ...; `stop` when the
    /// provider does not say.
    pub finish_reason: String,
}

#[derive(Serialize)]
struct StreamRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// One `data:` chunk.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<ChunkUsage>,
    /// Some providers end a failing stream with an error object instead of a status.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl ChatClient {
    /// Streams the model's answer to `messages`, handing each piece of text to `on_text` as it comes, and
    /// returns the whole answer. Retried, like [`ChatClient::complete`], only before the first text.
    pub async fn stream(
        &self,
        messages: &[Message],
        options: &ChatOptions,
        on_text: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Streamed, LlmError> {
        let response_format = options.json_schema.as_ref().map(
            |schema| serde_json::json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}),
        );
        let body = StreamRequest {
            model: &self.config.model,
            messages,
            stream: true,
            stream_options: StreamOptions { include_usage: true },
            max_tokens: options.max_tokens,
            temperature: options.temperature,
            response_format,
        };
        let requests = AtomicU32::new(0);
        let started = AtomicBool::new(false);
        let max_backoff = self.config.max_backoff;
        let result = (|| async {
            requests.fetch_add(1, Ordering::Relaxed);
            self.stream_once(&body, &started, on_text).await
        })
        .retry(self.backoff())
        .when(|e: &LlmError| e.is_retryable() && !started.load(Ordering::Relaxed))
        .adjust(move |e: &LlmError, delay| delay.map(|d| e.retry_after().map_or(d, |asked| asked.min(max_backoff))))
        .notify(|e: &LlmError, delay| {
            warn!(error = %crate::error_chain(e), retry_in_ms = delay.as_millis() as u64, "streamed model call failed; retrying")
        })
        .await;
        self.record(result.as_ref().ok().map(|s| &s.completion));
        let mut streamed = result?;
        streamed.completion.requests = requests.load(Ordering::Relaxed);
        Ok(streamed)
    }

    async fn stream_once(
        &self,
        body: &StreamRequest<'_>,
        started: &AtomicBool,
        on_text: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Streamed, LlmError> {
        let response = self.post(&self.streaming, body).await?;
        let mut events = response.bytes_stream().eventsource();
        let (mut content, mut finish_reason, mut usage) = (String::new(), None, None);
        let mut done = false;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| match e {
                eventsource_stream::EventStreamError::Transport(e) => transport_error(e),
                other => LlmError::Stream(other.to_string()),
            })?;
            if event.data.trim() == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Chunk = serde_json::from_str(&event.data).map_err(|e| LlmError::Malformed(e.to_string()))?;
            if let Some(error) = chunk.error {
                return Err(stream_error(&error));
            }
            if let Some(u) = chunk.usage {
                usage = Some(u);
            }
            for choice in chunk.choices {
                if let Some(text) = choice.delta.and_then(|d| d.content).filter(|t| !t.is_empty()) {
                    started.store(true, Ordering::Relaxed);
                    on_text(&text);
                    content.push_str(&text);
                }
                if choice.finish_reason.is_some() {
                    finish_reason = choice.finish_reason;
                }
            }
        }
        // A stream that ends without `[DONE]` or a finish reason was cut off, not finished.
        if !done && finish_reason.is_none() {
            return Err(LlmError::Stream("the connection closed before the answer ended".into()));
        }
        let usage = usage.unwrap_or(ChunkUsage { prompt_tokens: 0, completion_tokens: 0 });
        Ok(Streamed {
            completion: Completion {
                content,
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                requests: 1,
            },
            finish_reason: finish_reason.unwrap_or_else(|| "stop".into()),
        })
    }
}

/// The error a provider ended its stream with (`{"error": {"message", "type", "code", "status"}}`): worth
/// another try when it names an overload, a rate limit, a timeout or a server error (a code or status of
/// 408, 429 or 5xx, or words such as `server_error`, `RateLimitError`, `UNAVAILABLE`), or names nothing at
/// all. One that names something else (a request the model refuses, a context too long) would fail again
/// the same way.
fn stream_error(error: &serde_json::Value) -> LlmError {
    let message = error.get("message").and_then(|m| m.as_str()).map_or_else(|| error.to_string(), str::to_string);
    let named: Vec<String> = ["type", "code", "status"]
        .iter()
        .filter_map(|field| match error.get(*field)? {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    let transient = |name: &String| {
        if let Ok(code) = name.trim().parse::<u16>() {
            return code == 408 || code == 429 || code >= 500;
        }
        let word: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        ["servererror", "internal", "overloaded", "unavailable", "ratelimit", "toomanyrequests", "timeout", "exhausted"]
            .iter()
            .any(|t| word.contains(t))
    };
    let retryable = named.is_empty() || named.iter().any(transient);
    LlmError::StreamError { message, retryable }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn retryable(error: serde_json::Value) -> bool {
        matches!(stream_error(&error), LlmError::StreamError { retryable: true, .. })
    }

    #[test]
    fn overloads_rate_limits_and_server_errors_are_retried_in_the_shapes_providers_send() {
        for error in [
            json!({"message": "busy", "type": "server_error"}),
            json!({"message": "The model is overloaded", "code": 503, "status": "UNAVAILABLE"}),
            json!({"message": "slow down", "type": "RateLimitError"}),
            json!({"message": "x", "code": "rate_limit_exceeded"}),
            json!({"message": "x", "type": "InternalServerError", "code": "500"}),
            json!({"message": "quota", "status": "RESOURCE_EXHAUSTED"}),
            json!({"message": "something went wrong"}),
        ] {
            assert!(retryable(error.clone()), "{error}");
        }
    }

    #[test]
    fn requests_the_provider_refuses_are_not_retried() {
        for error in [
            json!({"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}),
            json!({"message": "bad key", "code": 401}),
            json!({"message": "no such model", "type": "NotFoundError", "code": "model_not_found"}),
            json!({"message": "refused", "status": "INVALID_ARGUMENT"}),
        ] {
            assert!(!retryable(error.clone()), "{error}");
        }
    }
}
