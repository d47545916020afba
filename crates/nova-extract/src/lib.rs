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
//! A PDF without a text layer (a scan) is [`ExtractError::NoText`]: OCR is a later step.
//!
//! Both entry points take untrusted bytes. They never panic out: the PDF libraries run inside
//! [`std::panic::catch_unwind`] and a panic becomes [`ExtractError::InvalidPdf`]; every loop over document
//! structure is bounded, and embedded files are inflated with a size cap.

mod einvoice;
mod parse;
mod pdf;
mod text;
mod text_layer;

use nova_core::{DocumentKind, Invoice};

/// What [`inspect`] learned about an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentInfo {
    pub kind: DocumentKind,
    /// Pages of a PDF; `None` for XML and text.
    pub page_count: Option<u32>,
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
    #[error("the PDF has no text layer (a scan?); OCR is not available yet")]
    NoText,
    /// Nothing to read: zero bytes or only whitespace.
    #[error("the document is empty")]
    Empty,
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
            Self::Empty => "empty_document",
        }
    }
}

/// Validates the bytes as a document NOVA can read and counts PDF pages.
///
/// Cheap enough for every upload: a PDF is parsed (objects and page tree) but no content stream is
/// interpreted; XML is checked for well-formedness only, so a non-invoice XML is accepted here and refused by
/// [`extract`].
pub fn inspect(bytes: &[u8]) -> Result<DocumentInfo, ExtractError> {
    match sniff(bytes)? {
        DocumentKind::Pdf => {
            let pages = pdf::PdfFile::open(bytes)?.page_count();
            Ok(DocumentInfo { kind: DocumentKind::Pdf, page_count: Some(pages) })
        }
        DocumentKind::Xml => {
            einvoice::check_well_formed(bytes)?;
            Ok(DocumentInfo { kind: DocumentKind::Xml, page_count: None })
        }
        DocumentKind::Text => Ok(DocumentInfo { kind: DocumentKind::Text, page_count: None }),
    }
}

/// Extracts one invoice from a PDF, e-invoice XML (CII or UBL) or plain-text invoice.
pub fn extract(bytes: &[u8]) -> Result<Invoice, ExtractError> {
    match sniff(bytes)? {
        DocumentKind::Pdf => {
            let file = pdf::PdfFile::open(bytes)?;
            for xml in file.embedded_xml_files() {
                // An attachment that is not an invoice (or is broken) must not hide the printed one.
                match einvoice::parse(&xml.data) {
                    Ok(invoice) => return Ok(invoice),
                    Err(err) => tracing::debug!(file = %xml.name, %err, "embedded XML is not a usable e-invoice"),
                }
            }
            let text = file.text()?;
            Ok(text::extract(&text))
        }
        DocumentKind::Xml => einvoice::parse(bytes),
        DocumentKind::Text => {
            // `sniff` only says Text for valid UTF-8.
            let text = String::from_utf8_lossy(bytes);
            Ok(text::extract(&text))
        }
    }
}

/// Recognises the kind, telling an empty upload apart from an unsupported one.
fn sniff(bytes: &[u8]) -> Result<DocumentKind, ExtractError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ExtractError::Empty);
    }
    DocumentKind::sniff(bytes).ok_or(ExtractError::UnsupportedDocument)
}
