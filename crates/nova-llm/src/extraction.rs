//! The extraction loop: a stored program for the layout first, then the model, round after round.
//!
//! 1. The document's layout ([`Layout`]) selects the stored programs of its seller whose labels are similar
//!    enough; the most similar run first, in the sandbox. One whose output passes the checks answers, with no
//!    model call; one that fails is counted, and retired after failing too often in a row.
//! 2. Otherwise the model is asked for a program (the document's text, what the rules found, the schema). The
//!    program runs in the sandbox; its output is checked ([`crate::validate`]). An exception, a timeout,
//!    output that is not the schema, sums that do not hold or values the document does not show go back to
//!    the model, for up to `max_repair_rounds` more rounds. A program that passes is stored for its layout.
//! 3. A loop that gives up keeps, of its last parseable output, only what passed the checks; with none, the
//!    rules' result stands. Nothing unconfirmed is returned.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use nova_core::{Invoice, ProgramId, TenantId};
use nova_sandbox::Sandbox;
use nova_store::{NewProgram, Store, StoreError};
use rust_decimal::Decimal;
use serde::Serialize;
use tracing::{debug, info};

use crate::client::{ChatClient, LlmError, Message};
use crate::layout::{Layout, NO_VAT_KEY, SAME_LAYOUT};
use crate::program::{code_from_reply, run_in_sandbox, Run};
use crate::prompt;
use crate::validate::{check, Checked};

/// The kind of the programs this loop stores.
pub const KIND: &str = "invoice.extract";

/// Stored programs tried on one document at most, before the model is asked.
const MAX_CACHED_TRIES: usize = 2;

/// What the AI path cost for one document.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Chat completions asked for (a retried request counts once here).
    pub model_calls: u32,
    /// HTTP requests sent, retries included.
    pub requests: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// By the configured price table; `None` when the model has no price there.
    pub cost: Option<Decimal>,
    pub sandbox_runs: u32,
    pub sandbox_wall_ms: u64,
    pub sandbox_cpu_ms: u64,
}

impl Usage {
    /// Adds `other`'s counts to these (for totals over several documents).
    pub fn add(&mut self, other: &Usage) {
        self.model_calls += other.model_calls;
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost = match (self.cost, other.cost) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.sandbox_runs += other.sandbox_runs;
        self.sandbox_wall_ms += other.sandbox_wall_ms;
        self.sandbox_cpu_ms += other.sandbox_cpu_ms;
    }

    /// Counts one answered chat completion, and prices the tokens so far by `config`'s table.
    pub(crate) fn add_completion(&mut self, completion: &crate::Completion, config: &crate::LlmConfig) {
        self.model_calls += 1;
        self.requests += completion.requests;
        self.input_tokens += completion.input_tokens;
        self.output_tokens += completion.output_tokens;
        self.cost = config.prices.cost(&config.model, self.input_tokens, self.output_tokens);
    }

    /// Counts one sandbox run that took `wall` and `cpu` time.
    pub(crate) fn add_sandbox(&mut self, wall: Duration, cpu: Duration) {
        self.sandbox_runs += 1;
        self.sandbox_wall_ms += duration_ms(wall);
        self.sandbox_cpu_ms += duration_ms(cpu);
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The loop's answer for one document.
#[derive(Debug, Clone)]
pub struct Extraction {
    pub invoice: Invoice,
    /// The program that produced the invoice, when one passed.
    pub program: Option<ProgramId>,
    /// Whether that program came from the store (no model call).
    pub cached: bool,
    pub usage: Usage,
}

/// Why the loop stopped without an answer.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("calling the model")]
    Model(#[from] LlmError),
    #[error("the program store")]
    Store(#[from] StoreError),
    #[error("the sandbox thread failed")]
    Sandbox,
}

/// The loop, with its model, sandbox and program store.
#[derive(Clone)]
pub struct LlmExtractor {
    client: ChatClient,
    sandbox: Arc<dyn Sandbox>,
    store: Store,
    /// The tenant whose programs are used and stored (`nova_store::program_scope`).
    scope: String,
}

impl LlmExtractor {
    pub fn new(client: ChatClient, sandbox: Arc<dyn Sandbox>, store: Store) -> LlmExtractor {
        LlmExtractor { client, sandbox, store, scope: nova_store::program_scope(TenantId::DEFAULT) }
    }

    /// Uses and stores the programs of `tenant` only (the default tenant's otherwise).
    pub fn for_tenant(mut self, tenant: TenantId) -> LlmExtractor {
        self.scope = nova_store::program_scope(tenant);
        self
    }

    pub fn client(&self) -> &ChatClient {
        &self.client
    }

    /// Extracts the invoice printed in `text`, given what the rules found in it.
    pub async fn extract(&self, text: &str, rules: &Invoice) -> Result<Extraction, LoopError> {
        self.extract_counting(text, rules, &mut Usage::default()).await
    }

    /// [`LlmExtractor::extract`], adding to `usage` what each model call and sandbox run used as it happens,
    /// so that a loop that fails midway (the model unreachable in a later round) is accounted for too.
    pub async fn extract_counting(
        &self,
        text: &str,
        rules: &Invoice,
        usage: &mut Usage,
    ) -> Result<Extraction, LoopError> {
        let layout = Layout::of(text, rules.seller.as_ref().and_then(|s| s.vat_id.as_deref()));
        // One document of a seller at a time in this process: the next waits for the first's program.
        let _turn = if layout.key == NO_VAT_KEY {
            None
        } else {
            Some(LayoutTurn::take(format!("{}/{}", self.scope, layout.key)).await)
        };
        if let Some(found) = self.try_stored(text, &layout, usage).await? {
            return Ok(found);
        }
        self.ask_model(text, rules, &layout, usage).await
    }

    /// Runs the stored programs of the layout, most similar first, until one passes.
    async fn try_stored(
        &self,
        text: &str,
        layout: &Layout,
        usage: &mut Usage,
    ) -> Result<Option<Extraction>, LoopError> {
        let mut candidates: Vec<(f64, nova_store::StoredProgram)> = self
            .store
            .active_programs(&self.scope, KIND, &layout.key)
            .await?
            .into_iter()
            .map(|p| (layout.similarity(&p.labels), p))
            .filter(|(similarity, _)| *similarity >= SAME_LAYOUT)
            .collect();
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let retire_after = self.client.config().retire_after_failures;
        for (similarity, program) in candidates.into_iter().take(MAX_CACHED_TRIES) {
            let run = self.run(&program.code, text).await?;
            usage.add_sandbox(run.wall_time, run.cpu_time);
            let checked = run.result.ok().and_then(|output| check(&output, text).ok());
            match checked {
                Some(checked) if checked.passed() => {
                    self.store.record_program_run(program.id, true, retire_after).await?;
                    debug!(program = %program.id, similarity, "a stored program passed");
                    return Ok(Some(Extraction {
                        invoice: finish(checked.invoice, "llm_cache", &[]),
                        program: Some(program.id),
                        cached: true,
                        usage: usage.clone(),
                    }));
                }
                _ => {
                    let retired = self.store.record_program_run(program.id, false, retire_after).await?;
                    info!(program = %program.id, retired, "a stored program failed on a document of its layout");
                }
            }
        }
        Ok(None)
    }

    async fn ask_model(
        &self,
        text: &str,
        rules: &Invoice,
        layout: &Layout,
        usage: &mut Usage,
    ) -> Result<Extraction, LoopError> {
        let config = self.client.config();
        let mut messages = vec![Message::system(prompt::SYSTEM), Message::user(prompt::first(text, rules))];
        let mut best: Option<Checked> = None;
        let mut last_failure = String::new();
        for round in 0..=config.max_repair_rounds {
            let completion = self.client.complete(&messages).await?;
            usage.add_completion(&completion, config);
            let code = code_from_reply(&completion.content);
            let run = self.run(&code, text).await?;
            usage.add_sandbox(run.wall_time, run.cpu_time);
            let failure = match run.result.map(|output| check(&output, text)) {
                Err(failure) => failure.0,
                Ok(Err(not_schema)) => not_schema,
                Ok(Ok(checked)) if checked.passed() => {
                    let stored = self
                        .store
                        .insert_program(NewProgram {
                            scope: self.scope.clone(),
                            kind: KIND.into(),
                            layout_key: layout.key.clone(),
                            labels: layout.labels_text(),
                            code,
                            model: Some(config.model.clone()),
                        })
                        .await?;
                    info!(program = %stored.id, rounds = round + 1, "a model-written program passed and is stored");
                    return Ok(Extraction {
                        invoice: finish(checked.invoice, "llm", &[]),
                        program: Some(stored.id),
                        cached: false,
                        usage: usage.clone(),
                    });
                }
                Ok(Ok(checked)) => {
                    let problems = checked.problems.iter().map(|p| format!("- {}", p.message)).collect::<Vec<_>>();
                    best = Some(checked);
                    problems.join("\n")
                }
            };
            debug!(round, %failure, "the model's program did not pass");
            messages.push(Message::assistant(completion.content));
            messages.push(Message::user(prompt::repair(&failure)));
            last_failure = failure;
        }
        let rounds = config.max_repair_rounds + 1;
        let warning = format!("no model-written program passed in {rounds} rounds; last problem: {last_failure}");
        let invoice = match best {
            Some(checked) => finish(checked.confirmed_only(), "llm", &[warning]),
            _ => {
                let mut rules = rules.clone();
                rules.warnings.push(warning);
                rules
            }
        };
        Ok(Extraction { invoice, program: None, cached: false, usage: usage.clone() })
    }

    async fn run(&self, code: &str, text: &str) -> Result<Run, LoopError> {
        let (sandbox, code, text) = (self.sandbox.clone(), code.to_string(), text.to_string());
        let timeout = self.client.config().program_timeout;
        tokio::task::spawn_blocking(move || run_in_sandbox(&*sandbox, &code, &text, timeout))
            .await
            .map_err(|_| LoopError::Sandbox)
    }
}

/// A turn of one seller's documents through the loop, so that a batch of a new layout costs one model call
/// rather than one per document running at once: the second waits, then finds the first's stored program.
/// Sellers without a VAT id are not held up by one another.
struct LayoutTurn {
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// The turns being taken or waited for, by scope and layout key.
static LAYOUT_TURNS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

impl LayoutTurn {
    async fn take(key: String) -> LayoutTurn {
        let lock = {
            let mut turns = LAYOUT_TURNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            turns.entry(key.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        LayoutTurn { key, lock, guard: Some(guard) }
    }
}

impl Drop for LayoutTurn {
    fn drop(&mut self) {
        self.guard.take();
        let mut turns = LAYOUT_TURNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only the map and this turn hold it: nobody waits, so the entry goes.
        if Arc::strong_count(&self.lock) == 2 {
            turns.remove(&self.key);
        }
    }
}

/// Marks a checked invoice with its source and a confidence for each field it fills.
fn finish(mut invoice: Invoice, source: &str, warnings: &[String]) -> Invoice {
    invoice.source = Some(source.to_string());
    invoice.confidence.clear();
    let filled = serde_json::to_value(&invoice).unwrap_or_default();
    for field in ["invoice_number", "type_code", "issue_date", "due_date", "currency", "payment_iban"] {
        if !filled[field].is_null() {
            invoice.confidence.insert(field.to_string(), 0.9);
        }
    }
    for (name, value) in filled["totals"].as_object().into_iter().flatten() {
        if !value.is_null() {
            invoice.confidence.insert(format!("totals.{name}"), 0.9);
        }
    }
    invoice.warnings.extend(warnings.iter().cloned());
    invoice
}
