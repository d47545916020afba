//! The tesseract OCR engine, run as a subprocess behind `nova_extract::Ocr`, for callers that pass it to
//! [`nova_extract::extract_with`] (`nova-extract` itself runs no process).
//!
//! The page goes in on standard input (as PGM) and the words come out on standard output (TSV), so nothing is
//! written to disk. Each run is bounded: a time limit (the process is killed past it) and a cap on the
//! output read. Tesseract runs single-threaded (`OMP_THREAD_LIMIT=1`): pages run in parallel across jobs,
//! and its own threads only contend with them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use nova_extract::ocr::{parse_tsv, Ocr, OcrPage, OcrWord};
use nova_extract::ExtractError;

use super::piped;

/// The languages read by default: those whose labels the generic rules know.
pub const DEFAULT_LANGUAGES: &str = "eng+deu+fra+spa+nld+ita+pol";
/// Time one page may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most TSV read from one page: a dense page is about 100 KiB.
const MAX_OUTPUT_BYTES: u64 = 8 * 1024 * 1024;

/// How to run tesseract: the settings the binary reads (`NOVA_TESSERACT`, `NOVA_OCR_LANGUAGES`,
/// `NOVA_OCR_TIMEOUT_SECS`) and passes down. Tesseract itself reads `TESSDATA_PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TesseractConfig {
    /// The program: a path, or a name looked up in `PATH` (default `tesseract`).
    pub binary: PathBuf,
    /// Tesseract's `-l` (default [`DEFAULT_LANGUAGES`]).
    pub languages: String,
    /// Time one page may take (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
}

impl Default for TesseractConfig {
    fn default() -> Self {
        Self { binary: PathBuf::from("tesseract"), languages: DEFAULT_LANGUAGES.to_string(), timeout: DEFAULT_TIMEOUT }
    }
}

/// The tesseract engine, as configured.
#[derive(Debug, Clone)]
pub struct Tesseract {
    binary: PathBuf,
    languages: String,
    timeout: Duration,
}

impl Default for Tesseract {
    /// `tesseract` from `PATH` with the default languages and time limit.
    fn default() -> Self {
        Self::new(TesseractConfig::default())
    }
}

impl Tesseract {
    pub fn new(config: TesseractConfig) -> Self {
        let TesseractConfig { binary, languages, timeout } = config;
        Self { binary, languages, timeout }
    }

    pub fn with_languages(mut self, languages: &str) -> Self {
        self.languages = languages.to_string();
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn run(&self, page: &OcrPage) -> Result<String, ExtractError> {
        let child = Command::new(&self.binary)
            .args(["stdin", "stdout", "-l", &self.languages, "--psm", "3", "--dpi", &page.dpi.to_string(), "tsv"])
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ExtractError::OcrUnavailable {
                reason: format!(
                    "cannot run {}: {e} (install tesseract-ocr, or set NOVA_TESSERACT)",
                    self.binary.display()
                ),
            })?;
        let finished = piped::run(child, page.image.to_pgm(), MAX_OUTPUT_BYTES, self.timeout)
            .map_err(|e| failed(e.describe("tesseract", MAX_OUTPUT_BYTES, self.timeout)))?;
        let (status, diagnostics, tsv) = (finished.status, finished.stderr, finished.stdout);
        if !status.success() {
            if diagnostics.contains("Failed loading language") || diagnostics.contains("Error opening data file") {
                return Err(ExtractError::OcrUnavailable {
                    reason: format!("tesseract lacks the language data {:?}: {diagnostics}", self.languages),
                });
            }
            return Err(failed(format!("tesseract exited with {status}: {diagnostics}")));
        }
        Ok(String::from_utf8_lossy(&tsv).into_owned())
    }
}

impl Ocr for Tesseract {
    fn recognize(&self, page: &OcrPage) -> Result<Vec<OcrWord>, ExtractError> {
        self.run(page).map(|tsv| parse_tsv(&tsv))
    }
}

fn failed(reason: String) -> ExtractError {
    ExtractError::OcrFailed { reason }
}
