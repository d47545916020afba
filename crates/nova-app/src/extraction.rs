//! Reading untrusted documents without risking the process: the extraction service of workers, the API's
//! upload check, `nova extract` and `nova eval`.
//!
//! An [`Extractor`] either runs extraction in confined helper processes ([`nova_sandbox::confined`]: the
//! `nova` binary started again as `nova __extract`, kept warm) or, for tests and tools that accept the risk,
//! in this process. A helper that crashes, overflows its stack, runs out of memory or time fails that one
//! document with `extraction_crashed`, `memory_limit` or `timeout`; the caller goes on.
//!
//! The request to a helper is a JSON header (what to do, the parser's limits) after its length (4 bytes,
//! little-endian), then the document's bytes; the answer is JSON.

use std::sync::Arc;

use crate::engines::pdftoppm::{Pdftoppm, PdftoppmConfig};
use crate::engines::tesseract::{Tesseract, TesseractConfig};
use nova_core::{DocumentKind, Invoice, JobError};
use nova_extract::{DocumentInfo, Engines, Limits, TemplateSet};
use nova_sandbox::confined::{CallError, HelperCommand, HelperLimits, HelperPool};
use serde::{Deserialize, Serialize};

/// The argument that makes the `nova` binary an extraction helper (see [`helper_main`]).
pub const HELPER_ARG: &str = "__extract";

/// Error codes of a document that took its reader down, as opposed to one that was merely unreadable: the
/// poison-pill codes (see the `invoice.extract` workflow).
pub const CRASH_CODES: &[&str] = &["extraction_crashed", "memory_limit", "timeout"];

/// How the OCR engine and the page renderer run, as the binary configured them. An extraction process gets it
/// from its command line ([`helper_main`]); in-process extraction, from [`Extractor::in_process`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub ocr: TesseractConfig,
    pub renderer: PdftoppmConfig,
}

/// The engines of one configuration, lent to extraction.
struct OwnedEngines {
    ocr: Tesseract,
    renderer: Pdftoppm,
}

impl OwnedEngines {
    fn new(config: &EngineConfig) -> Self {
        Self { ocr: Tesseract::new(config.ocr.clone()), renderer: Pdftoppm::new(config.renderer.clone()) }
    }

    fn lend(&self) -> Engines<'_> {
        Engines { ocr: Some(&self.ocr), renderer: Some(&self.renderer) }
    }
}

/// Extraction of untrusted documents, isolated or in-process. Cheap to clone.
#[derive(Clone)]
pub struct Extractor {
    inner: Arc<Inner>,
}

enum Inner {
    Isolated { pool: HelperPool, limits: Limits },
    InProcess { templates: Arc<TemplateSet>, limits: Limits, engines: OwnedEngines },
}

impl std::fmt::Debug for Extractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &*self.inner {
            Inner::Isolated { .. } => "Extractor::Isolated",
            Inner::InProcess { .. } => "Extractor::InProcess",
        })
    }
}

impl Default for Extractor {
    /// In-process, with no vendor templates, the default limits and the default engines: for tests and tools.
    fn default() -> Self {
        Self::in_process(TemplateSet::empty(), Limits::default(), &EngineConfig::default())
    }
}

impl Extractor {
    /// Extraction in confined helpers started with `command` (which must end up in [`helper_main`]), warmed
    /// up at once.
    pub fn isolated(command: HelperCommand, helper_limits: HelperLimits, limits: Limits) -> Self {
        let pool = HelperPool::new(command, helper_limits);
        pool.warm_up();
        Self { inner: Arc::new(Inner::Isolated { pool, limits }) }
    }

    /// Extraction in this process: a document that crashes the parser crashes the process. For tests and
    /// for callers that read only trusted files.
    pub fn in_process(templates: TemplateSet, limits: Limits, engines: &EngineConfig) -> Self {
        let engines = OwnedEngines::new(engines);
        Self { inner: Arc::new(Inner::InProcess { templates: Arc::new(templates), limits, engines }) }
    }

    /// Whether documents are read in helper processes.
    pub fn is_isolated(&self) -> bool {
        matches!(&*self.inner, Inner::Isolated { .. })
    }

    /// The invoice and the text it was read from ([`nova_extract::read_limited`]). Blocks: call it from a
    /// blocking thread.
    pub fn read(&self, bytes: &[u8]) -> Result<nova_extract::Read, JobError> {
        match &*self.inner {
            Inner::InProcess { templates, limits, engines } => read_here(bytes, engines, templates, limits),
            Inner::Isolated { pool, limits } => match call(pool, Op::Read, limits, bytes)? {
                Answer::Read { invoice, text } => Ok(nova_extract::Read { invoice: *invoice, text }),
                Answer::Error(e) => Err(e),
                Answer::Info { .. } => Err(protocol_error()),
            },
        }
    }

    /// What kind of document the bytes are and how many pages it has ([`nova_extract::inspect_limited`]).
    /// Blocks: call it from a blocking thread.
    pub fn inspect(&self, bytes: &[u8]) -> Result<DocumentInfo, JobError> {
        match &*self.inner {
            Inner::InProcess { limits, .. } => inspect_here(bytes, limits),
            Inner::Isolated { pool, limits } => match call(pool, Op::Inspect, limits, bytes)? {
                Answer::Info { kind, page_count } => Ok(DocumentInfo { kind, page_count }),
                Answer::Error(e) => Err(e),
                Answer::Read { .. } => Err(protocol_error()),
            },
        }
    }
}

/// The helper's side: answers extraction requests on stdin until it ends, confined. Call it first thing in
/// `main` when the first argument is [`HELPER_ARG`]. `templates` are the vendor templates to try, `engines`
/// how OCR and rendering run (both as the starting process passed them on the command line).
pub fn helper_main(templates: TemplateSet, engines: &EngineConfig) -> ! {
    let engines = OwnedEngines::new(engines);
    nova_sandbox::confined::serve(|request| {
        let answer = match parse_request(request) {
            Ok((header, bytes)) => match header.op {
                Op::Read => match read_here(bytes, &engines, &templates, &header.limits) {
                    Ok(read) => Answer::Read { invoice: Box::new(read.invoice), text: read.text },
                    Err(e) => Answer::Error(e),
                },
                Op::Inspect => match inspect_here(bytes, &header.limits) {
                    Ok(info) => Answer::Info { kind: info.kind, page_count: info.page_count },
                    Err(e) => Answer::Error(e),
                },
            },
            Err(message) => Answer::Error(JobError { code: "internal_error".into(), message }),
        };
        serde_json::to_vec(&answer).unwrap_or_default()
    })
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Read,
    Inspect,
}

#[derive(Serialize, Deserialize)]
struct Header {
    op: Op,
    limits: Limits,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Read { invoice: Box<Invoice>, text: Option<String> },
    Info { kind: DocumentKind, page_count: Option<u32> },
    Error(JobError),
}

fn call(pool: &HelperPool, op: Op, limits: &Limits, bytes: &[u8]) -> Result<Answer, JobError> {
    let header = serde_json::to_vec(&Header { op, limits: *limits }).map_err(|_| protocol_error())?;
    let mut request = Vec::with_capacity(4 + header.len() + bytes.len());
    request.extend_from_slice(&(header.len() as u32).to_le_bytes());
    request.extend_from_slice(&header);
    request.extend_from_slice(bytes);
    let answer = pool.call(&request).map_err(|e| call_error(&e))?;
    metrics::counter!("nova_extract_helper_requests_total", "outcome" => "answered").increment(1);
    serde_json::from_slice(&answer).map_err(|_| protocol_error())
}

fn parse_request(request: &[u8]) -> Result<(Header, &[u8]), String> {
    let (len, rest) = request.split_at_checked(4).ok_or("a request shorter than its header")?;
    let len = u32::from_le_bytes(len.try_into().map_err(|_| "a bad header length")?) as usize;
    let (header, bytes) = rest.split_at_checked(len).ok_or("a request shorter than its header")?;
    let header: Header = serde_json::from_slice(header).map_err(|e| format!("a malformed request header: {e}"))?;
    Ok((header, bytes))
}

/// A helper's failure as the document's error.
fn call_error(error: &CallError) -> JobError {
    let code = match error {
        CallError::Crashed { .. } => "extraction_crashed",
        CallError::MemoryLimit { .. } => "memory_limit",
        CallError::CpuLimit { .. } | CallError::Timeout { .. } => "timeout",
        CallError::AnswerTooLarge { .. } => "output_limit",
        CallError::Unavailable { .. } => "extraction_unavailable",
    };
    metrics::counter!("nova_extract_helper_requests_total", "outcome" => code).increment(1);
    JobError { code: code.into(), message: format!("reading the document failed: {error}") }
}

fn protocol_error() -> JobError {
    JobError { code: "internal_error".into(), message: "the extraction helper answered something unreadable".into() }
}

fn read_here(
    bytes: &[u8],
    engines: &OwnedEngines,
    templates: &TemplateSet,
    limits: &Limits,
) -> Result<nova_extract::Read, JobError> {
    // The extractor contains its own panics; this is the last line of defence.
    match std::panic::catch_unwind(|| nova_extract::read_limited(bytes, engines.lend(), templates, limits)) {
        Ok(Ok(read)) => Ok(read),
        Ok(Err(e)) => Err(JobError { code: e.code().to_string(), message: nova_core::error_chain(&e) }),
        Err(_) => Err(JobError { code: "invalid_document".into(), message: "the document could not be read".into() }),
    }
}

fn inspect_here(bytes: &[u8], limits: &Limits) -> Result<DocumentInfo, JobError> {
    match std::panic::catch_unwind(|| nova_extract::inspect_limited(bytes, limits)) {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(e)) => Err(JobError { code: e.code().to_string(), message: nova_core::error_chain(&e) }),
        Err(_) => Err(JobError { code: "invalid_document".into(), message: "the document could not be read".into() }),
    }
}
