//! Document in, invoice out.
//!
//! Two paths, tried in this order:
//!
//! 1. **E-invoice**: a Factur-X / ZUGFeRD / XRechnung PDF carries its invoice as CII XML in an embedded file;
//!    a bare CII or UBL XML document is the same data without the PDF around it. Either is mapped field by
//!    field ([`einvoice`]), exactly, and marked `source = "einvoice"`.
//! 2. **Text**: any other PDF's text layer, or a plain-text invoice, goes through generic label/value rules
//!    ([`text`]) that find the core fields, the due date, VAT ids and IBAN (by their check digits), the
//!    totals the EN 16931 arithmetic confirms and the item lines that add up to them, and leave everything
//!    they are unsure of empty
//!    (`source = "text"`, with a confidence per field).
//!
//! A PDF without a text layer (a scan) goes through OCR when the caller passes an engine to [`extract_with`]
//! ([`ocr`]: each page's image is decoded, straightened and read, and its words laid out as text for the same
//! rules; `source = "ocr"`, each confidence lowered by how sure the engine was of the words the value was
//! read from, or by [`OCR_CONFIDENCE_FACTOR`] when they are not found again; a scan whose reading misses a
//! core field is read again with its ruling lines taken out); without one it is
//! [`ExtractError::NoText`]. A page whose text cannot be read and that has no image (Type3 glyphs, outlined
//! text) is rendered by the caller's [`PageRenderer`] ([`render`], [`extract_with_engines`]) and read the
//! same way. A PDF with a text layer on some pages only has its other pages read by OCR (`source =
//! "text+ocr"`), and one whose text names no seller has the larger images of its first page read for it (a
//! letterhead pasted as a picture, [`ocr`]).
//!
//! Both entry points take untrusted bytes. They never panic out: the PDF libraries run inside
//! [`std::panic::catch_unwind`] and a panic becomes [`ExtractError::InvalidPdf`]; every loop over document
//! structure is bounded, and embedded files are inflated with a size cap.

mod einvoice;
mod inflate;
pub mod ocr;
pub mod page_words;
mod parse;
mod pdf;
mod prepare;
mod raster;
pub mod render;
mod repair;
pub mod template;
mod text;
mod text_layer;

use nova_core::{DocumentKind, Invoice};
pub use ocr::{Ocr, OcrPage, OcrWord};
pub use raster::{estimate_skew, rotate_and_scale, GrayImage};
pub use render::{PageRenderer, RenderRequest};
pub use template::TemplateSet;

/// What [`inspect`] learned about an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentInfo {
    pub kind: DocumentKind,
    /// Pages of a PDF; `None` for XML and text.
    pub page_count: Option<u32>,
}

/// Bounds on what one PDF may make the parser do, each a setting with its own error when hit. The defaults
/// are far above what invoices need (a few pages, streams of tens of KiB, thousands of operators a page)
/// and far below what would hurt a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Pages in the document ([`ExtractError::TooManyPages`]).
    pub max_pages: u32,
    /// Bytes one stream may inflate to ([`ExtractError::StreamTooLarge`]).
    pub max_stream_bytes: u64,
    /// Bytes all the streams read from one document may inflate to ([`ExtractError::DecodedTooLarge`]).
    pub max_decoded_bytes: u64,
    /// Content operators on one page, with the forms it draws expanded ([`ExtractError::TooManyOperators`]).
    pub max_operators: u64,
    /// Forms drawn inside forms ([`ExtractError::NestingTooDeep`]).
    pub max_nesting: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pages: 5_000,
            max_stream_bytes: 64 * 1024 * 1024,
            max_decoded_bytes: 256 * 1024 * 1024,
            max_operators: 2_000_000,
            max_nesting: 24,
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Not a PDF, XML or text document (an image, an archive, binary data).
    #[error("not a PDF, XML or text document")]
    UnsupportedDocument,
    /// The bytes start like a PDF but do not hold a readable one.
    #[error("not a readable PDF: {reason}")]
    InvalidPdf { reason: String },
    /// A PDF that can only be opened with a password. (PDFs "encrypted" with an empty user password, only
    /// to forbid editing, are read normally.)
    #[error("the PDF is encrypted and cannot be read without its password ({reason})")]
    EncryptedPdf { reason: String },
    /// A well-formed PDF whose page tree holds no page.
    #[error("the PDF has no pages")]
    NoPages,
    /// XML that is not well-formed, or not an invoice NOVA knows (CII or UBL).
    #[error("not a readable e-invoice XML: {reason}")]
    InvalidXml { reason: String },
    /// A PDF without a text layer, e.g. a scan; it needs OCR.
    #[error("the PDF has no text layer (a scan?) and no OCR engine was given")]
    NoText,
    /// A scan needs OCR, and the OCR engine cannot run (not installed, language data missing).
    #[error("OCR is unavailable: {reason}")]
    OcrUnavailable { reason: String },
    /// The OCR engine ran and failed on a page (its time limit, its output cap, a crash).
    #[error("OCR failed: {reason}")]
    OcrFailed { reason: String },
    /// A page image that cannot be decoded (corrupt, or an encoding NOVA does not read).
    #[error("unreadable page image: {reason}")]
    InvalidImage { reason: String },
    /// A page must be rendered for OCR, and the renderer cannot run (not installed).
    #[error("page rendering is unavailable: {reason}")]
    RendererUnavailable { reason: String },
    /// The renderer ran and failed on a page (its time or memory limit, its output cap, a crash).
    #[error("rendering the page failed: {reason}")]
    RenderFailed { reason: String },
    /// A page to render whose size would exceed [`render::MAX_RENDER_PIXELS`] even at
    /// [`render::MIN_RENDER_DPI`], refused before rendering.
    #[error("the page is {width_points}x{height_points} points, too large to render")]
    PageTooLarge { width_points: u64, height_points: u64 },
    /// A page image over [`raster::MAX_PIXELS`], refused before decoding.
    #[error("the page image is {width}x{height} pixels, too large to read")]
    ImageTooLarge { width: u64, height: u64 },
    /// Nothing to read: zero bytes or only whitespace.
    #[error("the document is empty")]
    Empty,
    /// More pages than [`Limits::max_pages`].
    #[error("the PDF has {pages} pages, more than the limit of {limit}")]
    TooManyPages { pages: u64, limit: u32 },
    /// A stream that inflates past [`Limits::max_stream_bytes`] (a compression bomb, or an absurd page).
    #[error("a stream of the PDF inflates to more than {limit} bytes")]
    StreamTooLarge { limit: u64 },
    /// Streams that together inflate past [`Limits::max_decoded_bytes`].
    #[error("the PDF's streams inflate to more than {limit} bytes in all")]
    DecodedTooLarge { limit: u64 },
    /// A page with more operators than [`Limits::max_operators`], its forms expanded.
    #[error("a page draws more than {limit} operators")]
    TooManyOperators { limit: u64 },
    /// Forms nested deeper than [`Limits::max_nesting`].
    #[error("the PDF nests forms more than {limit} deep")]
    NestingTooDeep { limit: u32 },
}

impl ExtractError {
    /// A stable, machine-readable name for the error, for API responses and job records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedDocument => "unsupported_document",
            Self::InvalidPdf { .. } => "invalid_pdf",
            Self::EncryptedPdf { .. } => "encrypted_pdf",
            Self::NoPages => "no_pages",
            Self::InvalidXml { .. } => "invalid_xml",
            Self::NoText => "no_text",
            Self::OcrUnavailable { .. } => "ocr_unavailable",
            Self::OcrFailed { .. } => "ocr_failed",
            Self::RendererUnavailable { .. } => "renderer_unavailable",
            Self::RenderFailed { .. } => "render_failed",
            Self::PageTooLarge { .. } => "page_too_large",
            Self::InvalidImage { .. } => "invalid_image",
            Self::ImageTooLarge { .. } => "image_too_large",
            Self::Empty => "empty_document",
            Self::TooManyPages { .. } => "too_many_pages",
            Self::StreamTooLarge { .. } => "stream_too_large",
            Self::DecodedTooLarge { .. } => "decoded_too_large",
            Self::TooManyOperators { .. } => "too_many_operators",
            Self::NestingTooDeep { .. } => "nesting_too_deep",
        }
    }
}

/// Validates the bytes as a document NOVA can read and counts PDF pages.
///
/// Cheap enough for every upload: a PDF is parsed (objects and page tree) but no content stream is
/// interpreted; XML is checked for well-formedness only, so a non-invoice XML is accepted here and refused by
/// [`extract`].
pub fn inspect(bytes: &[u8]) -> Result<DocumentInfo, ExtractError> {
    inspect_limited(bytes, &Limits::default())
}

/// [`inspect`] within `limits`.
pub fn inspect_limited(bytes: &[u8], limits: &Limits) -> Result<DocumentInfo, ExtractError> {
    match sniff(bytes)? {
        DocumentKind::Pdf => {
            let pages = pdf::PdfFile::open(bytes, limits)?.page_count();
            Ok(DocumentInfo { kind: DocumentKind::Pdf, page_count: Some(pages) })
        }
        DocumentKind::Xml => {
            einvoice::check_well_formed(bytes)?;
            Ok(DocumentInfo { kind: DocumentKind::Xml, page_count: None })
        }
        DocumentKind::Text => Ok(DocumentInfo { kind: DocumentKind::Text, page_count: None }),
    }
}

/// Extracts one invoice from a PDF, e-invoice XML (CII or UBL) or plain-text invoice. A scan is
/// [`ExtractError::NoText`]: see [`extract_with`].
pub fn extract(bytes: &[u8]) -> Result<Invoice, ExtractError> {
    extract_with(bytes, None)
}

/// How much less an OCR reading is trusted than the same rule on a text layer, when the words of the value
/// are not known (a value the arithmetic derived, a letterhead's): a value found among the words OCR read is
/// weighed by the engine's confidence in them instead.
pub const OCR_CONFIDENCE_FACTOR: f32 = 0.8;

/// [`extract`], reading a PDF without a text layer with `ocr` when one is given.
pub fn extract_with(bytes: &[u8], ocr: Option<&dyn Ocr>) -> Result<Invoice, ExtractError> {
    extract_with_templates(bytes, ocr, &TemplateSet::empty())
}

/// [`extract_with`], trying the vendor `templates` on a text layer or plain text before the generic rules
/// ([`template`]): a matching template's fields win, the generic rules fill in the rest.
pub fn extract_with_templates(
    bytes: &[u8],
    ocr: Option<&dyn Ocr>,
    templates: &TemplateSet,
) -> Result<Invoice, ExtractError> {
    extract_with_engines(bytes, Engines { ocr, renderer: None }, templates)
}

/// The engines a caller lends to extraction for pages without a readable text layer. Both run outside the
/// process (the application layer's `nova_app::engines`); nova-extract itself runs none and does no I/O.
#[derive(Clone, Copy, Default)]
pub struct Engines<'a> {
    /// Reads page images; without it, a PDF without a text layer is [`ExtractError::NoText`].
    pub ocr: Option<&'a dyn Ocr>,
    /// Renders pages that have neither readable text nor an image, for `ocr` to read.
    pub renderer: Option<&'a dyn PageRenderer>,
}

/// [`extract_with_templates`] with a page renderer beside the OCR engine ([`Engines`]).
pub fn extract_with_engines(
    bytes: &[u8],
    engines: Engines<'_>,
    templates: &TemplateSet,
) -> Result<Invoice, ExtractError> {
    read_with_engines(bytes, engines, templates).map(|read| read.invoice)
}

/// A document read once: its invoice, and the text the rules read for callers that reason over the text
/// themselves.
#[derive(Debug, Clone)]
pub struct Read {
    pub invoice: Invoice,
    /// The text layer (what OCR read where pages have none) or the plain text; for a PDF whose embedded
    /// e-invoice answered, its text layer when it has one; `None` for an XML document.
    pub text: Option<String>,
}

/// [`extract_with_engines`], keeping the text it read: one pass over the document (one OCR of a scan) for
/// callers that need both.
pub fn read_with_engines(bytes: &[u8], engines: Engines<'_>, templates: &TemplateSet) -> Result<Read, ExtractError> {
    read_limited(bytes, engines, templates, &Limits::default())
}

/// [`read_with_engines`] within `limits`.
pub fn read_limited(
    bytes: &[u8],
    engines: Engines<'_>,
    templates: &TemplateSet,
    limits: &Limits,
) -> Result<Read, ExtractError> {
    let mut read = read_unwarned(bytes, engines, templates, limits)?;
    read.invoice.warnings.append(&mut read.warnings);
    read.invoice.review = Some(nova_core::review(&read.invoice, nova_core::DEFAULT_CONFIDENCE_THRESHOLD));
    Ok(Read { invoice: read.invoice, text: read.text })
}

/// A read whose document-level warnings (a repaired file, a cut form) are not yet on the invoice.
struct Unwarned {
    invoice: Invoice,
    text: Option<String>,
    warnings: Vec<String>,
}

fn read_unwarned(
    bytes: &[u8],
    engines: Engines<'_>,
    templates: &TemplateSet,
    limits: &Limits,
) -> Result<Unwarned, ExtractError> {
    let plain = |invoice, text| Unwarned { invoice, text, warnings: Vec::new() };
    match sniff(bytes)? {
        DocumentKind::Pdf => {
            let mut file = pdf::PdfFile::open(bytes, limits)?;
            let mut warnings = file.prepare_text_pages(limits)?;
            if file.repaired {
                // Every invoice read from the file carries it: e-invoice, text layer or OCR.
                warnings.insert(0, repair::REPAIRED_WARNING.to_string());
            }
            let read = read_pdf(&file, bytes, engines, templates)?;
            Ok(Unwarned { invoice: read.invoice, text: read.text, warnings })
        }
        DocumentKind::Xml => Ok(plain(einvoice::parse(bytes)?, None)),
        DocumentKind::Text => {
            // `sniff` only says Text for valid UTF-8.
            let text = String::from_utf8_lossy(bytes).into_owned();
            Ok(plain(from_text(&text, templates), Some(text)))
        }
    }
}

/// A PDF, opened and prepared: its embedded e-invoice, else its text layer (OCR where pages have none).
fn read_pdf(
    file: &pdf::PdfFile,
    bytes: &[u8],
    engines: Engines<'_>,
    templates: &TemplateSet,
) -> Result<Read, ExtractError> {
    for xml in file.embedded_xml_files() {
        // An attachment that is not an invoice (or is broken) must not hide the printed one.
        match einvoice::parse(&xml.data) {
            Ok(invoice) => return Ok(Read { invoice, text: file.text().ok() }),
            Err(err) => tracing::debug!(file = %xml.name, %err, "embedded XML is not a usable e-invoice"),
        }
    }
    let mut layout = String::new();
    let pages: Vec<Result<String, ExtractError>> = file
        .page_text_pairs()
        .into_iter()
        .map(|page| {
            page.map(|(flat, laid_out)| {
                layout.push_str(&laid_out);
                layout.push_str("\n\n");
                flat
            })
        })
        .collect();
    let Some(ocr) = engines.ocr else {
        let text = pdf::join_page_texts(pages)?;
        return Ok(Read { invoice: from_text_layer(&text, &layout, templates), text: Some(text) });
    };
    let (invoice, text) = match ocr::read_pdf(file, bytes, pages, ocr, engines.renderer)? {
        ocr::PdfText::Text(text) => {
            let mut invoice = from_text_layer(&text, &layout, templates);
            match ocr::seller_from_images(file, &text, &mut invoice, ocr) {
                Some(images_text) => (invoice, format!("{text}\n\n{images_text}")),
                None => (invoice, text),
            }
        }
        ocr::PdfText::Ocr(text, words) => {
            let first = (ocr::invoice_from_ocr(&text, &words, "ocr", templates), text);
            ocr::reread_without_rules(file, bytes, ocr, engines.renderer, templates, first)
        }
        ocr::PdfText::Mixed(text, words) => (ocr::invoice_from_ocr(&text, &words, "text+ocr", templates), text),
    };
    Ok(Read { invoice, text: Some(text) })
}

/// The text of a PDF's text layer (columns kept apart by runs of spaces, pages by a blank line) or of a
/// plain-text document, without OCR: a scan is [`ExtractError::NoText`] (see [`read_with_engines`] for the
/// text OCR reads). An XML document has no printed text: [`ExtractError::InvalidXml`].
pub fn text(bytes: &[u8]) -> Result<String, ExtractError> {
    match sniff(bytes)? {
        DocumentKind::Pdf => {
            let limits = Limits::default();
            let mut file = pdf::PdfFile::open(bytes, &limits)?;
            file.prepare_text_pages(&limits)?;
            file.text()
        }
        DocumentKind::Xml => Err(ExtractError::InvalidXml { reason: "an XML document has no printed text".into() }),
        DocumentKind::Text => Ok(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// The generic rules over a text, then the first matching vendor template over their result.
fn from_text(text: &str, templates: &TemplateSet) -> Invoice {
    templates.apply(text, text::extract(text))
}

/// [`from_text`] over a PDF's text layer, read in content-stream order (`text`) and as laid out on the page
/// (`layout`): see [`text::extract_layer`].
fn from_text_layer(text: &str, layout: &str, templates: &TemplateSet) -> Invoice {
    templates.apply(text, text::extract_layer(text, layout))
}

/// Recognises the kind, telling an empty upload apart from an unsupported one.
fn sniff(bytes: &[u8]) -> Result<DocumentKind, ExtractError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ExtractError::Empty);
    }
    DocumentKind::sniff(bytes).ok_or(ExtractError::UnsupportedDocument)
}
