//! A client for the OpenAI-compatible Chat Completions API (`POST {base_url}/chat/completions`).
//!
//! This one API shape is how NOVA reaches every provider: OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp's
//! server, LM Studio. A call is retried on 429, 5xx, timeouts and connection errors, with exponential backoff
//! and jitter (`backon`); a server's `Retry-After` replaces the computed delay (capped at the configured
//! maximum). Token counts come from the response's `usage`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::config::LlmConfig;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message { role: "system".into(), content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Message {
        Message { role: "user".into(), content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message { role: "assistant".into(), content: content.into() }
    }
}

/// The model's answer to one call.
#[derive(Debug, Clone)]
pub struct Completion {
    pub content: String,
    /// Prompt tokens, as the provider counted them (0 when it reports no usage).
    pub input_tokens: u64,
    /// Completion tokens, likewise.
    pub output_tokens: u64,
    /// HTTP requests this call took, retries included.
    pub requests: u32,
}

/// Why a model call failed, after its retries.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// An answer with an error status; `body` is the start of the response body.
    #[error("the model API answered {status}: {body}")]
    Status { status: u16, body: String, retry_after: Option<Duration> },
    #[error("the model API did not answer in time")]
    Timeout(#[source] reqwest::Error),
    #[error("cannot reach the model API")]
    Connect(#[source] reqwest::Error),
    #[error("the model API's answer is not a chat completion")]
    Decode(#[source] reqwest::Error),
    #[error("the model's answer holds no message")]
    NoMessage,
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A streamed answer broke off.
    #[error("the model's streamed answer broke off: {0}")]
    Stream(String),
    /// The provider ended a streamed answer with an error object; `retryable` when the object names an
    /// overload, a rate limit or a server error (its `type` or `code`).
    #[error("the model API ended its streamed answer with an error: {message}")]
    StreamError { message: String, retryable: bool },
    /// A streamed answer that is not made of chat completion chunks.
    #[error("the model API's stream is not of chat completion chunks: {0}")]
    Malformed(String),
}

impl LlmError {
    /// Whether another try could succeed: rate limits, server errors, timeouts, lost connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Timeout(_) | LlmError::Connect(_) => true,
            LlmError::Decode(_) | LlmError::NoMessage | LlmError::Client(_) | LlmError::Malformed(_) => false,
            // A stream cut by the network is worth another try.
            LlmError::Stream(_) => true,
            LlmError::StreamError { retryable, .. } => *retryable,
        }
    }

    /// The wait a server asked for in its `Retry-After` header.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A Chat Completions client for one configured model. Cheap to clone.
#[derive(Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    /// For streamed answers, which may take as long as the model writes: no deadline on the whole request,
    /// only on each wait for the next bytes (see `crate::stream`).
    pub(crate) streaming: reqwest::Client,
    pub(crate) url: String,
    pub(crate) config: LlmConfig,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatClient").field("url", &self.url).field("model", &self.config.model).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Message],
    temperature: f32,
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ApiUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// Bytes of an error response kept for the error message.
const ERROR_BODY_CHARS: usize = 500;

impl ChatClient {
    pub fn new(config: LlmConfig) -> Result<ChatClient, LlmError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(LlmError::Client)?;
        let streaming = reqwest::Client::builder()
            .read_timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(LlmError::Client)?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(ChatClient { http, streaming, url, config })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Sends `messages` and returns the model's reply, retrying what is worth retrying.
    pub async fn complete(&self, messages: &[Message]) -> Result<Completion, LlmError> {
        let body = ChatRequest { model: &self.config.model, messages, temperature: 0.0 };
        let requests = AtomicU32::new(0);
        let backoff = self.backoff();
        let max_backoff = self.config.max_backoff;
        let result = (|| async {
            requests.fetch_add(1, Ordering::Relaxed);
            self.send_once(&body).await
        })
        .retry(backoff)
        .when(LlmError::is_retryable)
        // A server that says when to come back is believed, within our own patience.
        .adjust(move |e: &LlmError, delay| delay.map(|d| e.retry_after().map_or(d, |asked| asked.min(max_backoff))))
        .notify(|e: &LlmError, delay| {
            warn!(error = %crate::error_chain(e), retry_in_ms = delay.as_millis() as u64, "model call failed; retrying")
        })
        .await;
        self.record(result.as_ref().ok());
        let mut completion = result?;
        completion.requests = requests.load(Ordering::Relaxed);
        Ok(completion)
    }

    /// Counts one call (its retries included) in the process's metrics: by the configured model, its
    /// outcome, its tokens and, when the price table knows the model, its cost in millionths.
    pub(crate) fn record(&self, result: Option<&Completion>) {
        let model = self.config.model.clone();
        let outcome = if result.is_some() { "ok" } else { "error" };
        metrics::counter!("nova_llm_calls_total", "model" => model.clone(), "outcome" => outcome).increment(1);
        let Some(completion) = result else { return };
        let (input, output) = (completion.input_tokens, completion.output_tokens);
        metrics::counter!("nova_llm_tokens_total", "model" => model.clone(), "direction" => "in").increment(input);
        metrics::counter!("nova_llm_tokens_total", "model" => model.clone(), "direction" => "out").increment(output);
        if let Some(cost) = self.config.prices.cost(&model, input, output) {
            let micros = (cost * rust_decimal::Decimal::from(1_000_000)).round();
            let micros = u64::try_from(micros).unwrap_or(0);
            metrics::counter!("nova_llm_cost_micros_total", "model" => model).increment(micros);
        }
    }

    /// The backoff of one call's retries, from the configuration.
    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(self.config.max_backoff)
            .with_max_times(self.config.max_retries)
            .with_jitter()
    }

    /// Sends `body` through `http` with the configured key; an answer with an error status is an error.
    pub(crate) async fn post(
        &self,
        http: &reqwest::Client,
        body: &impl Serialize,
    ) -> Result<reqwest::Response, LlmError> {
        let mut request = http.post(&self.url).json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = response.text().await.unwrap_or_default();
            let body = text.chars().take(ERROR_BODY_CHARS).collect();
            return Err(LlmError::Status { status: status.as_u16(), body, retry_after });
        }
        Ok(response)
    }

    async fn send_once(&self, body: &ChatRequest<'_>) -> Result<Completion, LlmError> {
        let response = self.post(&self.http, body).await?;
        let parsed: ChatResponse =
            response.json().await.map_err(
                |e| {
                    if e.is_timeout() {
                        LlmError::Timeout(e)
                    } else {
                        LlmError::Decode(e)
                    }
                },
            )?;
        let content = parsed.choices.into_iter().next().and_then(|c| c.message.content).ok_or(LlmError::NoMessage)?;
        let usage = parsed.usage.unwrap_or(ApiUsage { prompt_tokens: 0, completion_tokens: 0 });
        Ok(Completion {
            content,
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            requests: 1,
        })
    }
}

pub(crate) fn transport_error(e: reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout(e)
    } else {
        LlmError::Connect(e)
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(100)).to_rfc2822();
        let wait = parse_retry_after(&later).unwrap();
        assert!(wait > Duration::from_secs(90) && wait <= Duration::from_secs(100), "{wait:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let status = |status| LlmError::Status { status, body: String::new(), retry_after: None };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(!LlmError::NoMessage.is_retryable());
    }
}
