//! Where `nova` reads untrusted documents: confined helper processes, each the `nova` binary started again
//! as `nova __extract` ([`nova_app::extraction`]), with the limits set here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nova_app::extraction::{EngineConfig, Extractor, HELPER_ARG};
use nova_sandbox::confined::{HelperCommand, HelperLimits};

use crate::config::Settings;

/// The argument of an extraction process that carries its OCR and rendering settings (as JSON).
const ENGINES_ARG: &str = "--engines";
/// The argument of an extraction process that names its vendor templates' folder.
const TEMPLATES_ARG: &str = "--templates";

/// The limits of document reading, shared by every command that reads documents.
#[derive(Args, Clone, Debug)]
pub struct ExtractionArgs {
    /// Memory (address space) of one extraction process, in MiB; a document that needs more fails with
    /// `memory_limit`.
    #[arg(long, env = "NOVA_EXTRACT_MEMORY_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(64..))]
    extract_memory_mb: u64,
    /// CPU seconds one document may use in its extraction process (OCR's own process has its own limit);
    /// past it the document fails with `timeout`.
    #[arg(long, env = "NOVA_EXTRACT_CPU_SECS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    extract_cpu_secs: u32,
    /// Seconds one document may take in all, OCR and rendering included; past it, `timeout`.
    #[arg(long, env = "NOVA_EXTRACT_TIMEOUT_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    extract_timeout_secs: u64,
    /// Pages a PDF may have (`too_many_pages`).
    #[arg(long, env = "NOVA_PDF_MAX_PAGES", default_value_t = nova_extract::Limits::default().max_pages, hide_short_help = true)]
    pdf_max_pages: u32,
    /// MiB one PDF stream may inflate to (`stream_too_large`).
    #[arg(long, env = "NOVA_PDF_MAX_STREAM_MB", default_value_t = 64, hide_short_help = true)]
    pdf_max_stream_mb: u64,
    /// MiB all the streams read from one PDF may inflate to (`decoded_too_large`).
    #[arg(long, env = "NOVA_PDF_MAX_DECODED_MB", default_value_t = 256, hide_short_help = true)]
    pdf_max_decoded_mb: u64,
    /// Content operators one page may draw, its forms expanded (`too_many_operators`).
    #[arg(long, env = "NOVA_PDF_MAX_OPERATORS", default_value_t = nova_extract::Limits::default().max_operators, hide_short_help = true)]
    pdf_max_operators: u64,
    /// How deep forms may nest inside forms (`nesting_too_deep`).
    #[arg(long, env = "NOVA_PDF_MAX_NESTING", default_value_t = nova_extract::Limits::default().max_nesting, hide_short_help = true)]
    pdf_max_nesting: u32,
}

impl ExtractionArgs {
    /// The parser's limits.
    pub fn limits(&self) -> nova_extract::Limits {
        nova_extract::Limits {
            max_pages: self.pdf_max_pages,
            max_stream_bytes: self.pdf_max_stream_mb.saturating_mul(1024 * 1024),
            max_decoded_bytes: self.pdf_max_decoded_mb.saturating_mul(1024 * 1024),
            max_operators: self.pdf_max_operators,
            max_nesting: self.pdf_max_nesting,
        }
    }

    /// Isolated extraction with vendor templates from `templates` (none without), `warm` processes kept
    /// ready, OCR and rendering as `settings` say. The processes get their settings on their command line
    /// and an environment of `settings.extraction_env` only.
    pub fn extractor(&self, templates: Option<&Path>, warm: usize, settings: &Settings) -> anyhow::Result<Extractor> {
        let program = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("finding this program to start extraction processes: {e}"))?;
        let engines = serde_json::to_string(&settings.engines).context("encoding the OCR and rendering settings")?;
        let mut args: Vec<OsString> = vec![HELPER_ARG.into(), ENGINES_ARG.into(), engines.into()];
        if let Some(dir) = templates {
            args.push(TEMPLATES_ARG.into());
            args.push(dir.as_os_str().to_owned());
        }
        let env = settings.extraction_env.clone();
        let limits = HelperLimits {
            memory_bytes: self.extract_memory_mb.saturating_mul(1024 * 1024),
            cpu_seconds: self.extract_cpu_secs,
            wall: Duration::from_secs(self.extract_timeout_secs),
            warm: warm.max(1),
            // At least as many at work as the caller reads at once (`nova extract -j`).
            max_busy: HelperLimits::default().max_busy.max(warm),
            ..HelperLimits::default()
        };
        Ok(Extractor::isolated(HelperCommand { program, args, env }, limits, self.limits()))
    }
}

/// `nova __extract --engines JSON [--templates DIR]`: an extraction process, as [`ExtractionArgs::extractor`]
/// starts it. Runs before the command line is parsed (the process must stay single-threaded until it is
/// confined) and never returns.
pub fn helper_main(args: &[OsString]) -> ! {
    let mut templates = nova_extract::TemplateSet::empty();
    let mut engines = EngineConfig::default();
    for pair in args.chunks(2) {
        match pair {
            [flag, dir] if flag == TEMPLATES_ARG => templates = load_templates(&PathBuf::from(dir)),
            [flag, json] if flag == ENGINES_ARG => match json.to_str().map(serde_json::from_str::<EngineConfig>) {
                Some(Ok(config)) => engines = config,
                _ => {
                    eprintln!("nova __extract: unreadable OCR and rendering settings: {json:?}");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!("nova __extract: unexpected arguments: {pair:?}");
                std::process::exit(2);
            }
        }
    }
    nova_app::extraction::helper_main(templates, &engines)
}

/// The templates of an extraction process; the parent process reported the files that do not load.
fn load_templates(dir: &Path) -> nova_extract::TemplateSet {
    match nova_extract::TemplateSet::load_dir(dir) {
        Ok(loaded) => loaded.set,
        Err(e) => {
            eprintln!("loading the templates in {}: {}", dir.display(), nova_core::error_chain(&e));
            nova_extract::TemplateSet::empty()
        }
    }
}
