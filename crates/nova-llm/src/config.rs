//! The model's configuration: where it is, how to call it, and what its tokens cost.
//!
//! The binary reads the settings once (its environment and configuration file) and hands them to
//! [`LlmConfig::from_lookup`], which turns the `NOVA_LLM_*` names into typed values; this crate reads no
//! environment. The API key is an [`ApiKey`], which prints as `***` in `Debug` output and has no `Display`, so
//! it cannot reach a log by accident.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;

/// How NOVA reaches its model and runs the extraction loop.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// The OpenAI-compatible API root, such as `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`
    /// (Ollama); `/chat/completions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer ...` when present (local servers usually need none).
    pub api_key: Option<ApiKey>,
    /// The model name passed in each request.
    pub model: String,
    /// The whole of one HTTP request, response body included.
    pub request_timeout: Duration,
    /// Establishing the connection.
    pub connect_timeout: Duration,
    /// Retries of one model call after a 429, a 5xx, a timeout or a connection error.
    pub max_retries: usize,
    /// The first backoff delay; later ones double, with jitter, up to `max_backoff`.
    pub min_backoff: Duration,
    /// The longest wait between two tries, a server's `Retry-After` included.
    pub max_backoff: Duration,
    /// Times a failing program goes back to the model with its error before the loop gives up.
    pub max_repair_rounds: u32,
    /// Deadline of one run of a model-written program in the sandbox.
    pub program_timeout: Duration,
    /// Wall-clock and CPU deadline of one run of a `task.run` program (`NOVA_LLM_TASK_TIMEOUT_SECS`).
    pub task_timeout: Duration,
    /// `auto` asks the model only when the rules' confidence in the core fields is below this.
    pub auto_threshold: f32,
    /// A cached program is retired after this many failures in a row.
    pub retire_after_failures: u32,
    /// What tokens cost, per model.
    pub prices: PriceTable,
    /// The model's context window in tokens (`NOVA_LLM_CONTEXT_TOKENS`): `llm.generate` cuts the documents'
    /// text to fit it beside the conversation and the answer.
    pub context_tokens: u32,
}

impl LlmConfig {
    /// A configuration for `model` at `base_url` with the defaults for everything else.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> LlmConfig {
        LlmConfig {
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_retries: 4,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_repair_rounds: 3,
            program_timeout: Duration::from_secs(5),
            task_timeout: Duration::from_secs(60),
            auto_threshold: nova_core::DEFAULT_CONFIDENCE_THRESHOLD,
            retire_after_failures: 3,
            prices: PriceTable::default(),
            context_tokens: 32_000,
        }
    }

    /// The configuration that the `NOVA_LLM_*` settings describe, each looked up by that name through `get`
    /// (the binary's configuration; an empty value counts as unset). `Ok(None)` when no model is configured
    /// (`NOVA_LLM_MODEL` unset or empty): the AI path is then off.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<LlmConfig>, ConfigError> {
        let get = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let Some(model) = get("NOVA_LLM_MODEL") else { return Ok(None) };
        let base_url = get("NOVA_LLM_BASE_URL").ok_or(ConfigError::MissingBaseUrl)?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name: "NOVA_LLM_BASE_URL",
                reason: "expected an http:// or https:// URL",
            });
        }
        let mut config = LlmConfig::new(base_url.trim_end_matches('/'), model);
        config.api_key = get("NOVA_LLM_API_KEY").map(ApiKey::new);
        if let Some(v) = get("NOVA_LLM_TIMEOUT_SECS") {
            config.request_timeout = Duration::from_secs(number("NOVA_LLM_TIMEOUT_SECS", &v)?);
        }
        if let Some(v) = get("NOVA_LLM_MAX_RETRIES") {
            config.max_retries = number("NOVA_LLM_MAX_RETRIES", &v)?;
        }
        if let Some(v) = get("NOVA_LLM_MAX_REPAIR_ROUNDS") {
            config.max_repair_rounds = number("NOVA_LLM_MAX_REPAIR_ROUNDS", &v)?;
        }
        if let Some(v) = get("NOVA_LLM_PROGRAM_TIMEOUT_MS") {
            config.program_timeout = Duration::from_millis(number("NOVA_LLM_PROGRAM_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = get("NOVA_LLM_TASK_TIMEOUT_SECS") {
            config.task_timeout = Duration::from_secs(number("NOVA_LLM_TASK_TIMEOUT_SECS", &v)?);
        }
        if let Some(v) = get("NOVA_LLM_AUTO_THRESHOLD") {
            config.auto_threshold = number("NOVA_LLM_AUTO_THRESHOLD", &v)?;
        }
        if let Some(v) = get("NOVA_LLM_CONTEXT_TOKENS") {
            config.context_tokens = number("NOVA_LLM_CONTEXT_TOKENS", &v)?;
        }
        if let Some(v) = get("NOVA_LLM_PRICES") {
            config.prices = v.parse()?;
        }
        Ok(Some(config))
    }
}

fn number<T: FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid { name, reason: "expected a number" })
}

/// Why the model's configuration cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("NOVA_LLM_MODEL is set but NOVA_LLM_BASE_URL is not (e.g. https://api.openai.com/v1)")]
    MissingBaseUrl,
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: &'static str },
    #[error(
        "NOVA_LLM_PRICES: `{0}` is not MODEL=INPUT/OUTPUT (prices per million tokens, e.g. gpt-4o-mini=0.15/0.60)"
    )]
    Price(String),
}

/// A secret. `Debug` shows `ApiKey(***)`; the value leaves only through [`ApiKey::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Prices per million tokens, input and output, per model name. Empty by default: prices change and differ
/// per provider, so NOVA states none of its own; a model without a price has tokens but no cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceTable(BTreeMap<String, Price>);

/// What a million tokens cost, in the provider's currency (usually USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input_per_million: Decimal,
    pub output_per_million: Decimal,
}

impl PriceTable {
    pub fn insert(&mut self, model: impl Into<String>, price: Price) {
        self.0.insert(model.into(), price);
    }

    /// The cost of a call to `model`, or `None` when the table has no price for it.
    pub fn cost(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<Decimal> {
        let price = self.0.get(model)?;
        let million = Decimal::from(1_000_000u32);
        Some(
            (price.input_per_million * Decimal::from(input_tokens)
                + price.output_per_million * Decimal::from(output_tokens))
                / million,
        )
    }
}

impl FromStr for PriceTable {
    type Err = ConfigError;

    /// `model=input/output,model=input/output`, prices per million tokens.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let mut table = PriceTable::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || ConfigError::Price(entry.chars().take(80).collect());
            let (model, prices) = entry.rsplit_once('=').ok_or_else(bad)?;
            let (input, output) = prices.split_once('/').ok_or_else(bad)?;
            let parse = |v: &str| Decimal::from_str(v.trim()).ok().filter(|d| !d.is_sign_negative());
            let price = Price {
                input_per_million: parse(input).ok_or_else(bad)?,
                output_per_million: parse(output).ok_or_else(bad)?,
            };
            table.insert(model.trim(), price);
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Option<LlmConfig>, ConfigError> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LlmConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn no_model_means_no_ai_path() {
        assert!(env(&[]).unwrap().is_none());
        assert!(env(&[("NOVA_LLM_BASE_URL", "http://x"), ("NOVA_LLM_MODEL", " ")]).unwrap().is_none());
    }

    #[test]
    fn a_model_needs_a_base_url() {
        assert_eq!(env(&[("NOVA_LLM_MODEL", "m")]).unwrap_err(), ConfigError::MissingBaseUrl);
        assert!(env(&[("NOVA_LLM_MODEL", "m"), ("NOVA_LLM_BASE_URL", "ftp://x")]).is_err());
    }

    #[test]
    fn reads_every_setting() {
        let config = env(&[
            ("NOVA_LLM_MODEL", "gpt-4o-mini"),
            ("NOVA_LLM_BASE_URL", "https://api.example.com/v1/"),
            ("NOVA_LLM_API_KEY", "sk-secret"),
            ("NOVA_LLM_TIMEOUT_SECS", "7"),
            ("NOVA_LLM_MAX_REPAIR_ROUNDS", "5"),
            ("NOVA_LLM_PRICES", "gpt-4o-mini=0.15/0.60, local=0/0"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.base_url, "https://api.example.com/v1");
        assert_eq!(config.request_timeout, Duration::from_secs(7));
        assert_eq!(config.max_repair_rounds, 5);
        assert_eq!(config.api_key.as_ref().map(ApiKey::expose), Some("sk-secret"));
        assert_eq!(config.prices.cost("gpt-4o-mini", 1_000_000, 500_000), Some(Decimal::new(45, 2)));
        assert_eq!(config.prices.cost("local", 10, 10), Some(Decimal::ZERO));
        assert_eq!(config.prices.cost("unknown", 10, 10), None);
        assert!(
            env(&[("NOVA_LLM_MODEL", "m"), ("NOVA_LLM_BASE_URL", "http://x"), ("NOVA_LLM_TIMEOUT_SECS", "x")]).is_err()
        );
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let mut config = LlmConfig::new("http://x", "m");
        config.api_key = Some(ApiKey::new("sk-very-secret"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("ApiKey(***)"));
    }

    #[test]
    fn malformed_prices_are_refused() {
        for bad in ["m", "m=1", "m=a/b", "m=-1/2"] {
            assert!(bad.parse::<PriceTable>().is_err(), "{bad}");
        }
    }
}
