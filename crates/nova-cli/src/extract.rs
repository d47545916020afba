//! `nova extract FILE...`: the `invoice.extract` workflow on local files, in parallel, with no server.
//!
//! Output follows the command-line contract of the invoice schema: one record per file, in the order given,
//! each with the invoice or an error. A bad file never stops the batch. With `--server URL`, a running NOVA
//! extracts the files instead, as one batch of jobs (`server.rs`), with the same output.

mod server;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use nova_app::extraction::Extractor;
use nova_core::{Invoice, JobError, TenantId};
use nova_extract::TemplateSet;
use serde::Serialize;

#[derive(Args)]
pub struct ExtractArgs {
    /// Invoice files: PDF, e-invoice XML (CII, UBL) or plain text.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Output format: one JSON object per line, one JSON array, or CSV with one row per invoice.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Files larger than this many MiB are refused.
    #[arg(long, env = "NOVA_MAX_UPLOAD_MB", default_value_t = 50)]
    max_file_mb: u64,
    /// Files extracted at once. Default: the number of cores.
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// A folder of vendor templates in invoice2data's YAML format, tried before the generic rules.
    #[arg(long, env = "NOVA_TEMPLATES_DIR", value_name = "DIR")]
    templates: Option<PathBuf>,
    /// `rules`; `llm`: a model-written program, run in the sandbox and kept per layout in the data
    /// directory's database; `auto`: the model only when the rules are unsure, and the rules alone when no
    /// model is configured (NOVA_LLM_BASE_URL, NOVA_LLM_MODEL).
    #[arg(long, value_enum, default_value_t = StrategyArg::Auto)]
    strategy: StrategyArg,
    /// Extract on the NOVA server at this URL (`http://host:8080`) instead of here: the files are uploaded
    /// and submitted as one batch, with the API key of NOVA_API_KEY. Templates, the model and the
    /// extraction settings are then the server's.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    #[command(flatten)]
    store: crate::serve::StoreArgs,
    #[command(flatten)]
    extraction: crate::isolation::ExtractionArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StrategyArg {
    Rules,
    Llm,
    Auto,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Jsonl,
    Json,
    Csv,
}

/// One output record: the file as given, and its invoice or its error.
#[derive(Serialize)]
struct Record {
    file: String,
    invoice: Option<Invoice>,
    error: Option<JobError>,
}

pub fn run(args: ExtractArgs, settings: &crate::config::Settings) -> ExitCode {
    let limit = args.max_file_mb * 1024 * 1024;
    if let Some(server) = &args.server {
        let strategy = strategy_of(args.strategy);
        return server::run(server, &args.files, args.format, limit, strategy, settings.api_key.as_deref());
    }
    let total = args.files.len();
    let threads =
        args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).clamp(1, total);
    // Loaded here to report the files that do not load (and a folder that cannot be read) once; the
    // extraction processes load them again for themselves.
    if let Err(e) = load_templates(args.templates.as_deref()) {
        eprintln!("nova extract: {e:#}");
        return ExitCode::FAILURE;
    }
    let ai = match Ai::start(args.strategy, &args.store, settings) {
        Ok(ai) => ai,
        Err(e) => {
            eprintln!("nova extract: {e:#}");
            return ExitCode::from(2);
        }
    };
    let extractor = match args.extraction.extractor(args.templates.as_deref(), threads, settings) {
        Ok(extractor) => extractor,
        Err(e) => {
            eprintln!("nova extract: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let progress = progress_bar(total);

    let mut out = Output::new(args.format);
    let mut failed = 0;
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Record)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (files, next, extractor, ai) = (&args.files, &next, &extractor, &ai);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                if tx.send((i, extract_file(path, limit, extractor, ai))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Results arrive in any order; they leave in the order the files were given.
        let mut pending = std::collections::BTreeMap::new();
        let mut emitted = 0;
        for (i, record) in rx {
            if let Some(e) = &record.error {
                failed += 1;
                progress.suspend(|| eprintln!("{}: {} ({})", record.file, e.message, e.code));
            }
            progress.inc(1);
            pending.insert(i, record);
            while let Some(record) = pending.remove(&emitted) {
                out.write(record);
                emitted += 1;
            }
        }
    });
    progress.finish_and_clear();
    out.finish();
    if failed == total {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn strategy_of(strategy: StrategyArg) -> nova_core::Strategy {
    match strategy {
        StrategyArg::Rules => nova_core::Strategy::Rules,
        StrategyArg::Llm => nova_core::Strategy::Llm,
        StrategyArg::Auto => nova_core::Strategy::Auto,
    }
}

/// The vendor templates under `dir` (none without one). A template that does not load is reported on
/// stderr and left out; a folder that cannot be read is an error.
pub fn load_templates(dir: Option<&std::path::Path>) -> anyhow::Result<TemplateSet> {
    let Some(dir) = dir else { return Ok(TemplateSet::empty()) };
    let loaded = TemplateSet::load_dir(dir).with_context(|| format!("loading the templates in {}", dir.display()))?;
    for e in &loaded.errors {
        eprintln!("template not loaded: {}", nova_core::error_chain(e));
    }
    Ok(loaded.set)
}

fn extract_file(path: &PathBuf, limit: u64, extractor: &Extractor, ai: &Ai) -> Record {
    let file = path.display().to_string();
    let result = read_file(path, limit).and_then(|bytes| {
        let read = extractor.read(&bytes)?;
        ai.apply(read.text.as_deref(), read.invoice)
    });
    match result {
        Ok(invoice) => Record { file, invoice: Some(invoice), error: None },
        Err(error) => Record { file, invoice: None, error: Some(error) },
    }
}

fn read_file(path: &PathBuf, limit: u64) -> Result<Vec<u8>, JobError> {
    let io_error = |e: std::io::Error| {
        let code = if e.kind() == std::io::ErrorKind::NotFound { "file_not_found" } else { "unreadable_file" };
        JobError { code: code.into(), message: format!("cannot read {}: {e}", path.display()) }
    };
    let meta = std::fs::metadata(path).map_err(io_error)?;
    if meta.is_dir() {
        return Err(JobError { code: "unreadable_file".into(), message: format!("{} is a directory", path.display()) });
    }
    if meta.len() > limit {
        return Err(JobError {
            code: "payload_too_large".into(),
            message: format!(
                "{} is {} bytes, over the limit of {limit} bytes (see --max-file-mb)",
                path.display(),
                meta.len()
            ),
        });
    }
    std::fs::read(path).map_err(io_error)
}

/// A progress bar on stderr, shown only when stderr is a terminal and there is more than one file.
fn progress_bar(total: usize) -> ProgressBar {
    if total < 2 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// Writes records to stdout in the chosen format.
enum Output {
    Jsonl(std::io::Stdout),
    Json(Vec<Record>),
    Csv(Box<csv::Writer<std::io::Stdout>>),
}

impl Output {
    fn new(format: Format) -> Self {
        match format {
            Format::Jsonl => Output::Jsonl(std::io::stdout()),
            Format::Json => Output::Json(Vec::new()),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(std::io::stdout());
                let _ = w.write_record(nova_core::export::INVOICE_COLUMNS);
                Output::Csv(Box::new(w))
            }
        }
    }

    fn write(&mut self, record: Record) {
        match self {
            Output::Jsonl(stdout) => {
                let mut line = serde_json::to_string(&record).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                line.push('\n');
                let mut lock = stdout.lock();
                let _ = lock.write_all(line.as_bytes()).and_then(|()| lock.flush());
            }
            Output::Json(all) => all.push(record),
            Output::Csv(w) => {
                let _ = w.write_record(nova_core::export::invoice_row(
                    &record.file,
                    record.invoice.as_ref(),
                    record.error.as_ref(),
                ));
            }
        }
    }

    fn finish(self) {
        match self {
            Output::Jsonl(_) => {}
            Output::Json(all) => {
                let text = serde_json::to_string_pretty(&all).unwrap_or_default();
                println!("{text}");
            }
            Output::Csv(mut w) => {
                let _ = w.flush();
            }
        }
    }
}

/// The AI path of `nova extract`: the strategy, and for the model a runtime, the program store of the data
/// directory and the sandbox.
struct Ai {
    strategy: nova_core::Strategy,
    /// Present only when a model is configured and the strategy may use it.
    model: Option<AiModel>,
    usage: std::sync::Mutex<nova_llm::Usage>,
}

struct AiModel {
    client: nova_llm::ModelClient,
    runtime: tokio::runtime::Runtime,
    store: nova_store::Store,
    sandbox: Result<std::sync::Arc<dyn nova_sandbox::Sandbox>, String>,
}

impl Ai {
    /// Refuses `llm` without a model; starts what the model needs when one is configured.
    fn start(
        strategy: StrategyArg,
        store: &crate::serve::StoreArgs,
        settings: &crate::config::Settings,
    ) -> anyhow::Result<Ai> {
        let strategy = strategy_of(strategy);
        let usage = Default::default();
        let client = nova_llm::model_client(&settings.model);
        let configured = match &client {
            Ok(client) => client.is_some(),
            Err(e) if strategy == nova_core::Strategy::Llm => anyhow::bail!("the model configuration: {e}"),
            Err(_) => false,
        };
        if strategy == nova_core::Strategy::Llm && !configured {
            anyhow::bail!("{}", nova_llm::StrategyError::NoModel);
        }
        if strategy == nova_core::Strategy::Rules || !configured {
            return Ok(Ai { strategy, model: None, usage });
        }
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        let store = runtime.block_on(store.open(&settings.s3))?;
        let sandbox = crate::exec::jail_config(1, settings.sandbox_python.as_deref())
            .map_err(|e| format!("{e:#}"))
            .and_then(|config| {
                let jail = nova_sandbox::jail::JailSandbox::new(config);
                jail.check()?;
                Ok(std::sync::Arc::new(jail) as std::sync::Arc<dyn nova_sandbox::Sandbox>)
            });
        if let Err(e) = &sandbox {
            anyhow::ensure!(strategy != nova_core::Strategy::Llm, "the sandbox does not work here: {e}");
        }
        Ok(Ai { strategy, model: Some(AiModel { client, runtime, store, sandbox }), usage })
    }

    /// The rules' result, or what the model made of the document when the strategy asks for it.
    fn apply(&self, text: Option<&str>, rules: Invoice) -> Result<Invoice, JobError> {
        let Some(model) = &self.model else { return Ok(rules) };
        let mut usage = nova_llm::Usage::default();
        let applied = model.runtime.block_on(nova_llm::apply(
            self.strategy,
            &model.client,
            model.sandbox.clone(),
            &model.store,
            TenantId::DEFAULT,
            text,
            rules,
            &mut usage,
        ));
        if let Ok(mut total) = self.usage.lock() {
            total.add(&usage);
        }
        let applied = applied.map_err(|e| JobError { code: e.code().into(), message: nova_core::error_chain(&e) })?;
        Ok(applied.invoice)
    }
}

impl Drop for Ai {
    /// A summary of the model's use on stderr, when it was used.
    fn drop(&mut self) {
        let Ok(usage) = self.usage.lock() else { return };
        if usage.sandbox_runs > 0 {
            eprintln!(
                "model calls: {}, tokens in/out: {}/{}, cost: {}, sandbox runs: {} ({} ms)",
                usage.model_calls,
                usage.input_tokens,
                usage.output_tokens,
                usage.cost.map_or_else(|| "unknown (no price for the model)".to_string(), |c| c.to_string()),
                usage.sandbox_runs,
                usage.sandbox_wall_ms
            );
        }
    }
}
