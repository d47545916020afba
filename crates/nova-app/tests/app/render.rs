//! Rendering pages that have neither readable text nor an image: the routing to the renderer and OCR, pdftoppm
//! on a dev invoice drawn with Type3 glyphs, and the errors of a missing, slow, hungry or fed-garbage renderer.
//! Like the OCR tests, these fail (never skip) when tesseract or pdftoppm is missing: `scripts/setup` installs
//! both.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lopdf::{dictionary, Object, Stream};
use nova_app::engines::Tesseract;
use nova_app::engines::{Pdftoppm, PdftoppmConfig};
use nova_extract::render::{PageRenderer, RenderRequest};
use nova_extract::{
    extract_with, extract_with_engines, Engines, ExtractError, GrayImage, Ocr, OcrPage, OcrWord, TemplateSet,
};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::common;

/// The dev invoice whose glyphs are Type3 procedures and which holds no image.
fn type3_invoice() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev/parsee/Invoice___TeamGantt-May.pdf")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("the dev invoices are missing ({}): {e}", path.display()))
}

fn extract_with_both(
    bytes: &[u8],
    ocr: &dyn Ocr,
    renderer: &dyn PageRenderer,
) -> Result<nova_core::Invoice, ExtractError> {
    extract_with_engines(bytes, Engines { ocr: Some(ocr), renderer: Some(renderer) }, &TemplateSet::empty())
}

/// A one-page PDF with the given media box and content, no image and no font: nothing to read as text.
fn drawn_pdf(media_box: [f64; 4], content: &[u8]) -> Vec<u8> {
    common::pdf(|doc, pages_id| {
        let content = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
        vec![doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content,
            "MediaBox" => media_box.iter().map(|v| Object::Real(*v as f32)).collect::<Vec<_>>(),
        })]
    })
}

// ---------------------------------------------------------------------------------------------------------
// Routing, with stand-in engines

/// A renderer that records its requests and returns a blank page of the size asked for.
#[derive(Default)]
struct BlankRenderer(Mutex<Vec<(u32, u32, u32, u32)>>);

impl PageRenderer for BlankRenderer {
    fn render(&self, request: &RenderRequest<'_>) -> Result<GrayImage, ExtractError> {
        self.0.lock().unwrap().push((request.page, request.dpi, request.max_width, request.max_height));
        Ok(GrayImage::blank(request.max_width as usize - 1, request.max_height as usize - 1))
    }
}

/// An engine that reads every page as the same invoice and counts its calls.
#[derive(Default)]
struct FixedWords(AtomicUsize);

impl Ocr for FixedWords {
    fn recognize(&self, page: &OcrPage) -> Result<Vec<OcrWord>, ExtractError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        assert_eq!(page.dpi, 200, "a rendered page is read at the resolution it was rendered at");
        Ok(common::invoice_words())
    }
}

#[test]
fn a_page_without_text_or_image_is_rendered_and_read() {
    let (renderer, engine) = (BlankRenderer::default(), FixedWords::default());
    let invoice = extract_with_both(&read(&type3_invoice()), &engine, &renderer).expect("the page is read");
    // An A4 page at 200 dpi, within its pixel bounds.
    assert_eq!(*renderer.0.lock().unwrap(), [(1, 200, 1654, 2340)]);
    assert_eq!(engine.0.load(Ordering::Relaxed), 1);
    assert_eq!(invoice.source.as_deref(), Some("ocr"));
    assert_eq!(invoice.invoice_number.as_deref(), Some("INV-2024-17"));
}

#[test]
fn without_a_renderer_such_a_page_still_has_no_text() {
    let err = extract_with(&read(&type3_invoice()), Some(&FixedWords::default())).unwrap_err();
    assert_eq!(err.code(), "no_text", "{err}");
}

#[test]
fn a_gigantic_page_is_refused_before_rendering() {
    let renderer = BlankRenderer::default();
    let huge = drawn_pdf([0.0, 0.0, 1.0e7, 1.0e7], b"0 0 m 100 100 l S");
    let err = extract_with_both(&huge, &FixedWords::default(), &renderer).unwrap_err();
    assert_eq!(err.code(), "page_too_large", "{err}");
    assert!(renderer.0.lock().unwrap().is_empty(), "the renderer never ran");
}

/// Builds a two-page PDF: page 1 shows text in Helvetica, page 2 holds only a large image.
fn mixed_pdf() -> Vec<u8> {
    common::pdf(|doc, pages_id| {
        let font = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
        let text = b"BT /F1 12 Tf 72 760 Td (Seller Example Trading GmbH, Musterstrasse 1, Berlin) Tj ET".to_vec();
        let text_content = doc.add_object(Stream::new(dictionary! {}, text));
        let media_box = || vec![0.into(), 0.into(), 595.into(), 842.into()];
        let text_page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => text_content, "MediaBox" => media_box(),
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
        });
        let (width, height) = (1000i64, 1400i64);
        let image = Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => width, "Height" => height,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
            },
            vec![255u8; (width * height) as usize],
        );
        let image_id = doc.add_object(image);
        let image_content = doc.add_object(Stream::new(dictionary! {}, b"q 595 0 0 842 0 0 cm /Im0 Do Q".to_vec()));
        let image_page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => image_content, "MediaBox" => media_box(),
            "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => image_id } },
        });
        vec![text_page, image_page]
    })
}

/// An engine for scanned pages, which come at the scan's own resolution.
#[derive(Default)]
struct ScanWords(AtomicUsize);

impl Ocr for ScanWords {
    fn recognize(&self, _page: &OcrPage) -> Result<Vec<OcrWord>, ExtractError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(common::invoice_words())
    }
}

#[test]
fn a_scanned_page_beside_text_pages_is_read_and_joined() {
    let engine = ScanWords::default();
    let invoice = extract_with(&mixed_pdf(), Some(&engine)).expect("the PDF is read");
    assert_eq!(engine.0.load(Ordering::Relaxed), 1, "only the page without text goes to OCR");
    assert_eq!(invoice.source.as_deref(), Some("text+ocr"));
    // The number comes from the OCR'd page, the seller's name from the text page.
    assert_eq!(invoice.invoice_number.as_deref(), Some("INV-2024-17"));
    let text = nova_extract::text(&mixed_pdf()).expect("page 1 has a text layer");
    assert!(text.contains("Example Trading"), "{text}");
    // Without an engine, the text layer alone, as before.
    let text_only = nova_extract::extract(&mixed_pdf()).expect("the text layer is read");
    assert_eq!(text_only.source.as_deref(), Some("text"));
    assert_eq!(text_only.invoice_number, None);
}

// ---------------------------------------------------------------------------------------------------------
// pdftoppm and tesseract

/// Whether a predicted value matches the expected one by SCHEMA.md's rules for the fields this file scores:
/// amounts as decimals to the cent, names after case and whitespace folding or when the expected words all
/// appear in a not much longer prediction, everything else as equal strings.
fn matches(field: &str, expected: &str, got: &str) -> bool {
    if field.starts_with("totals.") {
        return match (Decimal::from_str(expected), Decimal::from_str(got)) {
            (Ok(e), Ok(g)) => e.round_dp(2) == g.round_dp(2),
            _ => false,
        };
    }
    if field.ends_with("name") {
        let fold = |s: &str| s.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>();
        let (e, g) = (fold(expected), fold(got));
        return e == g || (e.iter().all(|w| g.contains(w)) && g.len() <= e.len() * 2 + 2);
    }
    expected == got
}

/// Every leaf of `expected` as (dotted path, string value).
fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                leaves(&path, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[test]
fn pdftoppm_and_tesseract_read_the_type3_invoice() {
    let path = type3_invoice();
    let expected_path = path.with_file_name("Invoice___TeamGantt-May.expected.json");
    let expected: Value = serde_json::from_slice(&read(&expected_path)).expect("the expected answer is JSON");
    let invoice = extract_with_both(&read(&path), &Tesseract::default(), &Pdftoppm::default())
        .unwrap_or_else(|e| panic!("the Type3 invoice is read ({}): {e}", e.code()));
    assert_eq!(invoice.source.as_deref(), Some("ocr"));
    let got = serde_json::to_value(&invoice).expect("an invoice is JSON");
    let mut fields = Vec::new();
    leaves("", &expected["fields"], &mut fields);
    assert!(!fields.is_empty(), "the expected file names fields");
    // A wrong value is worse than none (SCHEMA.md): every value read must be right, and most must be read.
    let mut correct = 0;
    for (field, want) in &fields {
        let value = field.split('.').fold(&got, |v, key| &v[key]);
        if value.is_null() {
            continue;
        }
        let value = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
        assert!(matches(field, want, &value), "{field}: expected {want:?}, extracted {value:?}");
        correct += 1;
    }
    assert!(correct * 4 >= fields.len() * 3, "{correct} of {} fields read: {got}", fields.len());
}

#[test]
fn a_missing_pdftoppm_is_a_clear_error() {
    let renderer =
        Pdftoppm::new(PdftoppmConfig { binary: "/nonexistent/bin/pdftoppm".into(), ..PdftoppmConfig::default() });
    let err = extract_with_both(&read(&type3_invoice()), &FixedWords::default(), &renderer).unwrap_err();
    assert_eq!(err.code(), "renderer_unavailable", "{err}");
    assert!(err.to_string().contains("poppler-utils"), "names the package: {err}");
    let no_prlimit = Pdftoppm::default().with_prlimit("/nonexistent/bin/prlimit");
    let err = extract_with_both(&read(&type3_invoice()), &FixedWords::default(), &no_prlimit).unwrap_err();
    assert_eq!(err.code(), "renderer_unavailable", "{err}");
}

fn request(pdf: &[u8]) -> RenderRequest<'_> {
    RenderRequest { pdf, page: 1, dpi: 200, max_width: 1654, max_height: 2340 }
}

#[test]
fn pdftoppm_renders_within_the_bounds_asked_for() {
    let pdf = read(&type3_invoice());
    let image = Pdftoppm::default().render(&request(&pdf)).expect("the page renders");
    assert!((1653..=1654).contains(&image.width) && (2339..=2340).contains(&image.height), "{image:?}");
    assert!(image.pixels.iter().any(|&p| p < 64), "the page has ink");
    // A smaller bound crops rather than scales or overflows.
    let small = RenderRequest { max_width: 300, max_height: 200, ..request(&pdf) };
    let image = Pdftoppm::default().render(&small).expect("the page renders");
    assert_eq!((image.width, image.height), (300, 200));
}

#[test]
fn garbage_and_truncated_pdfs_fail_quickly_and_clearly() {
    let started = Instant::now();
    let err = Pdftoppm::default().render(&request(b"%PDF-1.7\nnot a pdf at all")).unwrap_err();
    assert_eq!(err.code(), "render_failed", "{err}");
    let pdf = read(&type3_invoice());
    let truncated = &pdf[..pdf.len() / 2];
    let err = Pdftoppm::default().render(&request(truncated)).err();
    // Poppler reconstructs what it can of a truncated file; whatever it does, it answers.
    assert!(err.as_ref().is_none_or(|e| e.code() == "render_failed"), "{err:?}");
    let code =
        extract_with_both(truncated, &Tesseract::default(), &Pdftoppm::default()).map_or_else(|e| e.code(), |_| "ok");
    assert!(matches!(code, "invalid_pdf" | "render_failed" | "no_text" | "ok"), "{code}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn a_renderer_past_its_time_limit_is_killed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let script = dir.path().join("slow-renderer");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").expect("the script is written");
    std::process::Command::new("chmod").arg("+x").arg(&script).status().expect("chmod runs");
    let renderer = Pdftoppm::new(PdftoppmConfig { binary: script.clone(), ..PdftoppmConfig::default() })
        .with_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let err = renderer.render(&request(b"%PDF-1.4")).unwrap_err();
    assert_eq!(err.code(), "render_failed", "{err}");
    assert!(err.to_string().contains("longer than 1 s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn a_renderer_over_its_memory_limit_fails_clearly() {
    let renderer = Pdftoppm::default().with_memory_limit(8 * 1024 * 1024);
    let err = renderer.render(&request(&read(&type3_invoice()))).unwrap_err();
    assert_eq!(err.code(), "render_failed", "{err}");
}
