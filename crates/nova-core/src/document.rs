//! Documents: what was uploaded, identified by the SHA-256 of its bytes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DocumentId;

/// The kinds of document NOVA accepts, recognised from the bytes themselves, never from a file name or a
/// client's `Content-Type` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Pdf,
    Xml,
    Text,
}

impl DocumentKind {
    /// The snake_case name, as in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Xml => "xml",
            Self::Text => "text",
        }
    }

    /// Recognises a document from its first bytes: `%PDF-` (allowing a little leading junk, as readers do),
    /// an XML prolog or root element, or else valid UTF-8 text without control characters. Anything else
    /// (images, archives, executables) is `None`.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        let head = &bytes[..bytes.len().min(1024)];
        if head.windows(5).any(|w| w == b"%PDF-") {
            return Some(Self::Pdf);
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.is_empty() {
            return None;
        }
        if trimmed.starts_with("<?xml") || (trimmed.starts_with('<') && trimmed.trim_end().ends_with('>')) {
            return Some(Self::Xml);
        }
        let control = text.chars().filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c')).count();
        (control == 0).then_some(Self::Text)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Xml => "application/xml",
            Self::Text => "text/plain; charset=utf-8",
        }
    }
}

/// A SHA-256 digest as 64 lowercase hex digits: the name of a blob.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s))
        } else {
            Err(format!("`{s}` is not a SHA-256 digest"))
        }
    }
}

/// The API's schema: 64 lowercase hex digits.
impl utoipa::PartialSchema for Sha256Hex {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some("A SHA-256 digest as 64 lowercase hex digits."))
            .into()
    }
}

impl utoipa::ToSchema for Sha256Hex {}

impl From<Sha256Hex> for String {
    fn from(h: Sha256Hex) -> String {
        h.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A stored document as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DocumentMeta {
    pub id: DocumentId,
    /// The file name the client gave, if any; informational only.
    pub filename: Option<String>,
    pub kind: DocumentKind,
    pub content_type: String,
    pub size_bytes: u64,
    pub sha256: Sha256Hex,
    /// Pages of a PDF; `None` for other kinds.
    pub page_count: Option<u32>,
    pub created_at: DateTime<Utc>,
    /// Set once the document took extraction down (a crash, its memory or time limit) on a job's last
    /// attempt: new `invoice.extract` jobs for it then fail at once unless they say `force`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extraction_failure: Option<ExtractionFailure>,
}

/// How reading a document failed in a way that harms the reader, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtractionFailure {
    /// `extraction_crashed`, `memory_limit` or `timeout`.
    pub code: String,
    pub at: DateTime<Utc>,
}

/// The words of one page of a PDF and where they stand (`GET /v1/documents/{id}/pages/{n}/words`): what a
/// person's view of the page needs to point at a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PageWords {
    /// The page's width in points.
    pub width: f64,
    /// The page's height in points.
    pub height: f64,
    pub words: Vec<PageWord>,
}

/// A word and its box, as fractions of the page's width and height from its top left corner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PageWord {
    pub text: String,
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_recognises_each_kind_and_refuses_binary() {
        let cases: &[(&[u8], Option<DocumentKind>)] = &[
            (b"%PDF-1.7\n...", Some(DocumentKind::Pdf)),
            (b"\n\n%PDF-1.4", Some(DocumentKind::Pdf)),
            (b"<?xml version=\"1.0\"?><a/>", Some(DocumentKind::Xml)),
            (b"  <Invoice></Invoice>\n", Some(DocumentKind::Xml)),
            (b"Invoice 42\nTotal 10.00 EUR\n", Some(DocumentKind::Text)),
            (b"\x89PNG\r\n\x1a\n\0\0\0", None),
            (b"PK\x03\x04\x14\0", None),
            (b"", None),
            (b"   \n", None),
            (b"text with a \x01 control byte", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(DocumentKind::sniff(bytes), *expected, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn digests_must_be_64_lowercase_hex() {
        assert!(Sha256Hex::try_from("a".repeat(64)).is_ok());
        assert!(Sha256Hex::try_from("A".repeat(64)).is_err());
        assert!(Sha256Hex::try_from("../x".to_string()).is_err());
    }
}
