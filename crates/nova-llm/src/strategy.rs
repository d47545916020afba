//! The AI path after the rules, as a job's strategy asks: the one entry point of the worker's
//! `invoice.extract` and of `nova extract`.

use std::sync::Arc;

use nova_core::{Invoice, Strategy, TenantId};
use nova_sandbox::Sandbox;
use nova_store::Store;

use crate::extraction::{LlmExtractor, LoopError, Usage};
use crate::{plan, ChatClient, ConfigError, LlmConfig, Plan};

/// The model a process works with: `Ok(None)` when none is configured, `Err` (the reason) when its
/// configuration cannot be used. Made once by the binary ([`model_client`]) and passed to [`apply`] and the
/// `task.run` workflow.
pub type ModelClient = Result<Option<ChatClient>, String>;

/// The client for the model that `config` describes (the binary's reading of the `NOVA_LLM_*` settings, see
/// [`LlmConfig::from_lookup`]).
pub fn model_client(config: &Result<Option<LlmConfig>, ConfigError>) -> ModelClient {
    let config = config.as_ref().map_err(ConfigError::to_string)?;
    config.clone().map(ChatClient::new).transpose().map_err(|e| crate::error_chain(&e))
}

/// What the rules and, where asked, the model made of a document.
#[derive(Debug, Clone)]
pub struct Applied {
    pub invoice: Invoice,
    /// Whether the AI path ran (its usage is in the caller's account, see [`apply`]).
    pub model_ran: bool,
}

/// Why the strategy could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Strategy(#[from] crate::StrategyError),
    #[error("the model configuration is invalid: {0}")]
    Config(String),
    #[error("no sandbox to run the model's program in: {0}")]
    NoSandbox(String),
    #[error("the document has no text for the model to read")]
    NoText,
    #[error("the AI path failed")]
    Loop(#[from] LoopError),
}

impl ApplyError {
    /// A stable name, for job records and the command line.
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::Strategy(_) => "llm_not_configured",
            ApplyError::Config(_) => "llm_misconfigured",
            ApplyError::NoSandbox(_) => "sandbox_unavailable",
            ApplyError::NoText => "no_text",
            ApplyError::Loop(LoopError::Model(_)) => "llm_unavailable",
            ApplyError::Loop(_) => "llm_failed",
        }
    }

    /// Whether another attempt could succeed (the model or the store was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApplyError::Loop(_) | ApplyError::NoSandbox(_))
    }
}

/// Follows `strategy` for a document whose rules' result is `rules`. With no model configured, `llm` is
/// refused and `auto` is the rules. The model reads `text`, the text the rules read (the text layer, and
/// OCR of pages without one: [`nova_extract::read_with_engines`]). What the AI path uses is added to `usage`
/// as it goes, whether or not it then succeeds.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    strategy: Strategy,
    client: &ModelClient,
    sandbox: Result<Arc<dyn Sandbox>, String>,
    store: &Store,
    tenant: TenantId,
    text: Option<&str>,
    rules: Invoice,
    usage: &mut Usage,
) -> Result<Applied, ApplyError> {
    let client = match client {
        Ok(client) => client.as_ref(),
        // A broken configuration is the operator's to fix; `auto` and `rules` go on without the model.
        Err(e) if strategy == Strategy::Llm => return Err(ApplyError::Config(e.clone())),
        Err(_) => None,
    };
    let threshold = client.map_or(1.0, |c| c.config().auto_threshold);
    if plan(strategy, client.is_some(), &rules, threshold)? == Plan::Rules {
        return Ok(Applied { invoice: rules, model_ran: false });
    }
    let Some(client) = client else { return Ok(Applied { invoice: rules, model_ran: false }) };
    let sandbox = sandbox.map_err(ApplyError::NoSandbox)?;
    let text = text.ok_or(ApplyError::NoText)?;
    let extractor = LlmExtractor::new(client.clone(), sandbox, store.clone()).for_tenant(tenant);
    let mut invoice = extractor.extract_counting(text, &rules, usage).await?.invoice;
    // The model's result is judged anew: what it left missing, and whether its sums close.
    invoice.review = Some(nova_core::review(&invoice, threshold));
    Ok(Applied { invoice, model_ran: true })
}
