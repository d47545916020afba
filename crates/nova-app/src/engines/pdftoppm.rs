//! Poppler's `pdftoppm` as the page renderer, run as a confined subprocess behind
//! `nova_extract::PageRenderer`, beside [`super::tesseract`], for callers that pass it to
//! [`nova_extract::extract_with_engines`].
//!
//! The PDF goes in on standard input and the page comes out on standard output (grey PGM), so nothing is
//! written to disk. The process runs under `prlimit` (util-linux) with an address-space limit, a CPU-time
//! limit and a file-size limit of zero (it can write no file), is killed past its wall-clock time limit, and
//! its output is read up to the pixels asked for. It renders one page, at the resolution and within the
//! pixel bounds the request sets (`-W`/`-H` crop the page, so a page larger than its `MediaBox` said cannot
//! allocate more).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use nova_extract::render::{parse_pgm, PageRenderer, RenderRequest};
use nova_extract::ExtractError;
use nova_extract::GrayImage;

use super::piped;

/// Time one page may take by default. An invoice page renders in well under a second.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// The address space the renderer may map by default: poppler and its libraries take about 100 MiB of it,
/// a page of [`nova_extract::render::MAX_RENDER_PIXELS`] 16 MiB more per buffer.
pub const DEFAULT_MEMORY_LIMIT: u64 = 1024 * 1024 * 1024;
/// Room for the PGM header beyond the samples.
const PGM_HEADER_BYTES: u64 = 64;
/// Exit status of `prlimit` when it cannot find the program it should run.
const EXIT_NOT_FOUND: i32 = 127;

/// How to run pdftoppm: the settings the binary reads (`NOVA_PDFTOPPM`, `NOVA_RENDER_TIMEOUT_SECS`) and passes
/// down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdftoppmConfig {
    /// The program: a path, or a name looked up in `search_path` (default `pdftoppm`).
    pub binary: PathBuf,
    /// Time one page may take (default [`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// The `PATH` the renderer runs with, its only environment variable (the caller's own `PATH`, as the
    /// binary passes it); `None`: [`DEFAULT_SEARCH_PATH`].
    pub search_path: Option<OsString>,
}

impl Default for PdftoppmConfig {
    fn default() -> Self {
        Self { binary: PathBuf::from("pdftoppm"), timeout: DEFAULT_TIMEOUT, search_path: None }
    }
}

/// The renderer's `PATH` when the caller gives none.
pub const DEFAULT_SEARCH_PATH: &str = "/usr/bin:/bin";

/// The pdftoppm renderer, as configured.
#[derive(Debug, Clone)]
pub struct Pdftoppm {
    binary: PathBuf,
    prlimit: PathBuf,
    timeout: Duration,
    memory_limit: u64,
    search_path: OsString,
}

impl Default for Pdftoppm {
    /// `pdftoppm` from [`DEFAULT_SEARCH_PATH`] with the default limits.
    fn default() -> Self {
        Self::new(PdftoppmConfig::default())
    }
}

impl Pdftoppm {
    /// Runs as `config` says, with the default memory limit.
    pub fn new(config: PdftoppmConfig) -> Self {
        let PdftoppmConfig { binary, timeout, search_path } = config;
        Self {
            binary,
            prlimit: PathBuf::from("prlimit"),
            timeout,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            search_path: search_path.unwrap_or_else(|| DEFAULT_SEARCH_PATH.into()),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The address space the renderer may map, in bytes; an allocation past it fails inside pdftoppm.
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// `prlimit` from elsewhere than `PATH` (util-linux ships it on every Debian system).
    pub fn with_prlimit(mut self, prlimit: impl Into<PathBuf>) -> Self {
        self.prlimit = prlimit.into();
        self
    }

    /// Renders one page as a colour PNG, for people to look at (the console shows pages beside their fields),
    /// under the same confinement and bounds as [`PageRenderer::render`].
    pub fn render_png(&self, request: &RenderRequest<'_>) -> Result<Vec<u8>, ExtractError> {
        // Three samples a pixel at most, plus PNG's own framing (deflate may grow noise slightly).
        let cap = u64::from(request.max_width) * u64::from(request.max_height) * 3 + 1024 * 1024;
        let png = self.run(request, Output::Png, cap)?;
        if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(failed(format!("pdftoppm wrote no PNG for page {}", request.page)));
        }
        Ok(png)
    }

    /// The words of one page and where they stand, read by poppler's `pdftotext -bbox` (the `pdftotext` beside
    /// the configured `pdftoppm`), under the same confinement: for people, to find a value on the page.
    pub fn words(&self, pdf: &[u8], page: u32) -> Result<nova_extract::page_words::PageWords, ExtractError> {
        let program = match self.binary.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            Some(dir) => dir.join("pdftotext"),
            None => PathBuf::from("pdftotext"),
        };
        let page = page.to_string();
        let args = ["-q", "-bbox", "-f", &page, "-l", &page, "-", "-"];
        let xhtml = self.run_program(&program, &args, pdf, nova_extract::page_words::MAX_XHTML_BYTES, &page)?;
        nova_extract::page_words::parse(&String::from_utf8_lossy(&xhtml))
            .ok_or_else(|| failed(format!("pdftotext wrote no page {page}")))
    }

    fn command(&self, program: &std::path::Path, args: &[&str]) -> Command {
        // CPU time is the wall-clock limit rounded up: a spinning renderer is stopped even if the kill below
        // were never reached.
        let cpu_secs = self.timeout.as_secs() + 1;
        let mut command = Command::new(&self.prlimit);
        command
            .arg(format!("--as={}", self.memory_limit))
            .arg(format!("--cpu={cpu_secs}"))
            .args(["--fsize=0", "--core=0", "--"])
            .arg(program)
            .args(args)
            // Nothing of the caller's environment but the search path; poppler needs no configuration.
            .env_clear()
            .env("PATH", &self.search_path)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, request: &RenderRequest<'_>, output: Output, cap: u64) -> Result<Vec<u8>, ExtractError> {
        let (dpi, page) = (request.dpi.to_string(), request.page.to_string());
        let (width, height) = (request.max_width.to_string(), request.max_height.to_string());
        let args = [
            "-q",
            output.flag(),
            "-singlefile",
            "-x",
            "0",
            "-y",
            "0",
            "-r",
            &dpi,
            "-f",
            &page,
            "-l",
            &page,
            "-W",
            &width,
            "-H",
            &height,
            "-",
        ];
        self.run_program(&self.binary, &args, request.pdf, cap, &page)
    }

    /// Runs one of poppler's tools on `pdf`, confined, and returns its output (at most `cap` bytes).
    fn run_program(
        &self,
        program: &std::path::Path,
        args: &[&str],
        pdf: &[u8],
        cap: u64,
        page: &str,
    ) -> Result<Vec<u8>, ExtractError> {
        let name = program.file_name().map_or_else(|| "poppler".into(), |n| n.to_string_lossy().into_owned());
        let child = self.command(program, args).spawn().map_err(|e| ExtractError::RendererUnavailable {
            reason: format!(
                "cannot run {}: {e} (install util-linux, which confines the renderer)",
                self.prlimit.display()
            ),
        })?;
        let finished = piped::run(child, pdf.to_vec(), cap, self.timeout)
            .map_err(|e| failed(format!("{} (page {})", e.describe(&name, cap, self.timeout), page)))?;
        let (status, diagnostics, output) = (finished.status, finished.stderr, finished.stdout);
        if status.code() == Some(EXIT_NOT_FOUND) && diagnostics.contains("failed to execute") {
            return Err(ExtractError::RendererUnavailable {
                reason: format!(
                    "cannot run {}: {diagnostics} (install poppler-utils, or set NOVA_PDFTOPPM)",
                    program.display()
                ),
            });
        }
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let why = match status.signal() {
                // RLIMIT_CPU sends SIGXCPU, then SIGKILL.
                Some(24 | 9) => format!("{name} was stopped past its limits ({status})"),
                _ => format!("{name} exited with {status}"),
            };
            let detail = if diagnostics.is_empty() { String::new() } else { format!(": {diagnostics}") };
            return Err(failed(format!("{why} on page {page}{detail}")));
        }
        Ok(output)
    }
}

/// What pdftoppm writes.
#[derive(Clone, Copy)]
enum Output {
    /// Grey PGM, for OCR.
    Gray,
    /// Colour PNG, for people.
    Png,
}

impl Output {
    fn flag(self) -> &'static str {
        match self {
            Output::Gray => "-gray",
            Output::Png => "-png",
        }
    }
}

impl PageRenderer for Pdftoppm {
    fn render(&self, request: &RenderRequest<'_>) -> Result<GrayImage, ExtractError> {
        let cap = u64::from(request.max_width) * u64::from(request.max_height) + PGM_HEADER_BYTES;
        self.run(request, Output::Gray, cap).and_then(|pgm| parse_pgm(&pgm, request))
    }
}

fn failed(reason: String) -> ExtractError {
    ExtractError::RenderFailed { reason }
}
