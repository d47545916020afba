//! Where `nova` reads untrusted documents: confined helper processes, each the `nova` binary started again
//! as `nova __extract` ([`nova_worker::extractor`]), with the limits set here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use nova_sandbox::confined::{HelperCommand, HelperLimits};
use nova_worker::extractor::{Extractor, HELPER_ARG};

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

/// The environment an extraction process gets: what finds and configures its OCR and rendering programs,
/// and the log filter. Nothing else (no database URL, no model key) reaches the process that parses
/// untrusted bytes.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TESSDATA_PREFIX",
    "NOVA_TESSERACT",
    "NOVA_OCR_LANGUAGES",
    "NOVA_OCR_TIMEOUT_SECS",
    "NOVA_PDFTOPPM",
    "NOVA_RENDER_TIMEOUT_SECS",
    "NOVA_LOG",
];

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
    /// ready.
    pub fn extractor(&self, templates: Option<&Path>, warm: usize) -> anyhow::Result<Extractor> {
        let program = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("finding this program to start extraction processes: {e}"))?;
        let mut args: Vec<OsString> = vec![HELPER_ARG.into()];
        if let Some(dir) = templates {
            args.push("--templates".into());
            args.push(dir.as_os_str().to_owned());
        }
        let env = PASSED_ENV.iter().filter_map(|&k| std::env::var_os(k).map(|v| (OsString::from(k), v))).collect();
        let limits = HelperLimits {
            memory_bytes: self.extract_memory_mb.saturating_mul(1024 * 1024),
            cpu_seconds: self.extract_cpu_secs,
            wall: Duration::from_secs(self.extract_timeout_secs),
            warm: warm.max(1),
            ..HelperLimits::default()
        };
        Ok(Extractor::isolated(HelperCommand { program, args, env }, limits, self.limits()))
    }
}

/// `nova __extract [--templates DIR]`: an extraction process. Runs before the command line is parsed (the
/// process must stay single-threaded until it is confined) and never returns.
pub fn helper_main(args: &[OsString]) -> ! {
    let templates = match args {
        [flag, dir] if flag == "--templates" => load_templates(&PathBuf::from(dir)),
        _ => nova_extract::TemplateSet::empty(),
    };
    nova_worker::extractor::helper_main(templates)
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
