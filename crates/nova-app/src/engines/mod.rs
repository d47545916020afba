//! The engines extraction borrows for pages without a readable text layer: tesseract reads page images
//! ([`Tesseract`], behind `nova_extract::Ocr`) and poppler's `pdftoppm` renders pages and lists their words
//! ([`Pdftoppm`], behind `nova_extract::PageRenderer`). Each runs as a subprocess over pipes ([`piped`]) with
//! a deadline and capped output. They live here, not in `nova-extract`, so that the rules stay bytes in,
//! values out: no process, no environment.

pub mod pdftoppm;
mod piped;
pub mod tesseract;

pub use pdftoppm::{Pdftoppm, PdftoppmConfig};
pub use tesseract::{Tesseract, TesseractConfig};
