//! NOVA's AI path: a model writes the extraction program, the sandbox runs it, NOVA keeps it.
//!
//! - [`client`]: a client for the OpenAI-compatible Chat Completions API, the one API shape through which
//!   NOVA reaches any provider (OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp's server, LM Studio), with
//!   timeouts, retries that honour `Retry-After`, and token counts from the response.
//! - [`config`]: `NOVA_LLM_*` settings, the price table, the API key that never prints.
//! - [`extraction`]: the loop (stored program first, then the model with repair rounds) and its usage.
//! - [`program`]: running a model-written program, only ever in the [`nova_sandbox::Sandbox`].
//! - [`validate`]: the schema, the EN 16931 arithmetic and the document itself judge every output.
//! - [`layout`]: the layout fingerprint that finds a stored program for a new document.
//! - [`task`]: `task.run`, a free-form task over documents whose program's files are the job's artifacts.
//!
//! This crate knows no HTTP server; programs are stored through [`nova_store`].

pub mod client;
pub mod config;
pub mod extraction;
pub mod generate;
pub mod layout;
pub mod program;
pub mod prompt;
pub mod strategy;
pub mod stream;
pub mod task;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;

pub use client::{ChatClient, Completion, LlmError, Message};
pub use config::{ApiKey, ConfigError, LlmConfig, Price, PriceTable};
pub use extraction::{Extraction, LlmExtractor, LoopError, Usage};
pub use generate::{generate, ContextDocument, ContextUse, GenerateError, GenerateEvent, Generation};
use nova_core::{Invoice, Strategy};
pub use strategy::{apply, model_client, Applied, ApplyError, ModelClient};
pub use stream::{ChatOptions, Streamed};
pub use task::{TaskDocument, TaskError, TaskOutput, TaskRunner};

pub(crate) use nova_core::error_chain;

use nova_core::CORE_FIELDS as CORE;

/// The rules' confidence in a result: the least confidence among the core fields, 0 when one is missing.
/// An e-invoice read from its XML is exact (1).
pub fn rules_confidence(invoice: &Invoice) -> f32 {
    if invoice.source.as_deref() == Some("einvoice") {
        return 1.0;
    }
    CORE.iter().map(|field| invoice.confidence.get(*field).copied().unwrap_or(0.0)).fold(1.0, f32::min)
}

/// What to do with a document, given the strategy asked for and whether a model is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The rules' result is the answer.
    Rules,
    /// Run the loop.
    Model,
}

/// Why a strategy cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error("strategy `llm` needs a model: set NOVA_LLM_BASE_URL, NOVA_LLM_MODEL (and NOVA_LLM_API_KEY if the provider needs one)")]
    NoModel,
}

/// Decides between the rules and the model. `llm` without a model is refused; `auto` asks the model only
/// when one is configured and the rules are unsure (below `threshold`); an e-invoice never needs it.
pub fn plan(
    strategy: Strategy,
    model_configured: bool,
    rules: &Invoice,
    threshold: f32,
) -> Result<Plan, StrategyError> {
    match strategy {
        Strategy::Rules => Ok(Plan::Rules),
        Strategy::Llm if !model_configured => Err(StrategyError::NoModel),
        _ if rules.source.as_deref() == Some("einvoice") => Ok(Plan::Rules),
        Strategy::Llm => Ok(Plan::Model),
        Strategy::Auto if model_configured && rules_confidence(rules) < threshold => Ok(Plan::Model),
        Strategy::Auto => Ok(Plan::Rules),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sure() -> Invoice {
        let mut invoice = Invoice { source: Some("text".into()), ..Invoice::default() };
        for field in CORE {
            invoice.confidence.insert(field.into(), 0.9);
        }
        invoice
    }

    #[test]
    fn strategies_follow_the_rules_confidence_and_the_configuration() {
        let unsure = Invoice { source: Some("text".into()), ..Invoice::default() };
        let einvoice = Invoice { source: Some("einvoice".into()), ..Invoice::default() };
        let cases = [
            (Strategy::Rules, true, &unsure, Ok(Plan::Rules)),
            (Strategy::Llm, false, &unsure, Err(StrategyError::NoModel)),
            (Strategy::Llm, true, &sure(), Ok(Plan::Model)),
            (Strategy::Llm, true, &einvoice, Ok(Plan::Rules)),
            (Strategy::Auto, false, &unsure, Ok(Plan::Rules)),
            (Strategy::Auto, true, &unsure, Ok(Plan::Model)),
            (Strategy::Auto, true, &sure(), Ok(Plan::Rules)),
        ];
        for (strategy, configured, rules, expected) in cases {
            assert_eq!(plan(strategy, configured, rules, 0.8), expected, "{strategy:?} configured={configured}");
        }
    }
}
