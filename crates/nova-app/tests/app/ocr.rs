//! The OCR path from the outside: routing of image-only PDFs to the engine, the errors of a missing engine
//! and of bad page images, and tesseract on a dev scan. (The accuracy floor over all the dev scans is
//! `nova eval`'s test, which scores with the schema's rules.)

use std::path::{Path, PathBuf};

use lopdf::{dictionary, Stream};
use nova_app::engines::{Tesseract, TesseractConfig};
use nova_extract::{extract, extract_with, ExtractError, Ocr, OcrPage, OcrWord};

use crate::common;

fn dev_scan() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev/facturx");
    let mut scans: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the dev invoices are missing from {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".scan.pdf"))
        .collect();
    scans.sort();
    let first = scans.first().expect("the dev set has scans");
    std::fs::read(first).unwrap_or_else(|e| panic!("{}: {e}", first.display()))
}

/// A one-page PDF whose page is a single image XObject with the given dictionary entries and data.
fn image_pdf(width: i64, height: i64, filter: &str, data: Vec<u8>) -> Vec<u8> {
    common::pdf(|doc, pages_id| {
        let image = Stream::new(
            dictionary! {
                "Type" => "XObject", "Subtype" => "Image", "Width" => width, "Height" => height,
                "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8, "Filter" => filter,
            },
            data,
        );
        let image_id = doc.add_object(image);
        let content = doc.add_object(Stream::new(dictionary! {}, b"q 595 0 0 842 0 0 cm /Im0 Do Q".to_vec()));
        vec![doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => image_id } },
        })]
    })
}

/// An engine that reads every page as the same invoice, and counts its calls.
struct FixedWords(std::sync::atomic::AtomicUsize);

impl Ocr for FixedWords {
    fn recognize(&self, page: &OcrPage) -> Result<Vec<OcrWord>, ExtractError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!((140..=160).contains(&page.dpi), "the scan is read at its own 150 dpi, got {}", page.dpi);
        Ok(common::invoice_words())
    }
}

#[test]
fn a_scan_without_an_engine_has_no_text() {
    let err = extract(&dev_scan()).unwrap_err();
    assert_eq!(err.code(), "no_text");
}

#[test]
fn a_scan_goes_to_the_engine_and_its_words_to_the_rules() {
    let engine = FixedWords(Default::default());
    let invoice = extract_with(&dev_scan(), Some(&engine)).expect("the scan is read");
    assert_eq!(engine.0.load(std::sync::atomic::Ordering::Relaxed), 1, "one page, one OCR call");
    assert_eq!(invoice.source.as_deref(), Some("ocr"));
    assert_eq!(invoice.invoice_number.as_deref(), Some("INV-2024-17"));
    assert_eq!(invoice.totals.grand_total.map(|d| d.to_string()).as_deref(), Some("1234.50"));
    // The same rules on the same text as a text layer are trusted more.
    let text = extract("Invoice number: INV-2024-17\n\n\nTotal    EUR  1.234,50".as_bytes()).unwrap();
    for (field, confidence) in &invoice.confidence {
        let text_confidence = text.confidence.get(field).copied().unwrap_or(1.0);
        assert!(*confidence < text_confidence, "{field}: OCR {confidence} vs text {text_confidence}");
    }
}

/// An engine that gives its readings in turn (the last one again past the end), and counts its calls.
struct Readings(Vec<Vec<OcrWord>>, std::sync::atomic::AtomicUsize);

impl Ocr for Readings {
    fn recognize(&self, _page: &OcrPage) -> Result<Vec<OcrWord>, ExtractError> {
        let call = self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.0[call.min(self.0.len() - 1)].clone())
    }
}

#[test]
fn a_reading_that_misses_core_fields_is_tried_again_without_ruling_lines() {
    let calls = |engine: &Readings| engine.1.load(std::sync::atomic::Ordering::Relaxed);
    // A first reading with every core field is the only one.
    let complete = Readings(vec![common::invoice_words()], Default::default());
    let invoice = extract_with(&dev_scan(), Some(&complete)).expect("the scan is read");
    assert_eq!(calls(&complete), 1);
    assert_eq!(invoice.seller.and_then(|s| s.name).as_deref(), Some("Acme GmbH"));
    // A first reading without date and seller, a second with them: the second is kept, its text returned.
    let gaps = Readings(vec![common::partial_invoice_words(), common::invoice_words()], Default::default());
    let engines = nova_extract::Engines { ocr: Some(&gaps), renderer: None };
    let read = nova_extract::read_with_engines(&dev_scan(), engines, &nova_extract::TemplateSet::empty()).unwrap();
    assert_eq!(calls(&gaps), 2);
    assert_eq!(read.invoice.issue_date.map(|d| d.to_string()).as_deref(), Some("2024-03-12"));
    assert!(read.text.is_some_and(|t| t.contains("Acme GmbH")));
}

#[test]
fn a_vendor_template_reads_ocr_text_too() {
    let template = nova_extract::TemplateSet::parse(
        "fixed.yml",
        "issuer: Fixed Words Ltd\nkeywords: ['INV-2024']\nfields:\n  invoice_number: number:\\s+(INV-\\S+)\n  \
         amount: EUR\\s+([\\d.,]+)\noptions:\n  currency: EUR\n  decimal_separator: ','\n",
    )
    .expect("the template parses");
    let templates = nova_extract::TemplateSet::from_templates(vec![template]);
    let engine = FixedWords(Default::default());
    let engines = nova_extract::Engines { ocr: Some(&engine), renderer: None };
    let invoice = nova_extract::extract_with_engines(&dev_scan(), engines, &templates).expect("the scan is read");
    assert_eq!(invoice.source.as_deref(), Some("template+ocr"));
    assert_eq!(invoice.seller.and_then(|s| s.name).as_deref(), Some("Fixed Words Ltd"), "the template's issuer");
    assert_eq!(invoice.invoice_number.as_deref(), Some("INV-2024-17"));
    // A template's values are trusted at 0.95 on a text layer; read by OCR, less, even when the words read clean.
    assert!(invoice.confidence.values().all(|c| *c < 0.95), "OCR lowers every confidence: {:?}", invoice.confidence);
}

#[test]
fn one_read_gives_the_invoice_and_its_text_with_one_ocr_pass() {
    let engine = Readings(vec![common::invoice_words()], Default::default());
    let engines = nova_extract::Engines { ocr: Some(&engine), renderer: None };
    let read = nova_extract::read_with_engines(&dev_scan(), engines, &nova_extract::TemplateSet::empty()).unwrap();
    assert_eq!(read.invoice.invoice_number.as_deref(), Some("INV-2024-17"));
    assert!(read.text.as_deref().is_some_and(|t| t.contains("INV-2024-17")), "{:?}", read.text);
    assert_eq!(engine.1.load(std::sync::atomic::Ordering::Relaxed), 1, "the page is read once for both");
    assert_eq!(nova_extract::text(&dev_scan()).unwrap_err().code(), "no_text", "text() runs no OCR");
    // A text layer is read as before, with no OCR call.
    let plain = nova_extract::read_with_engines(b"Invoice 7\nTotal 3.00", engines, &Default::default()).unwrap();
    assert_eq!(plain.text.as_deref(), Some("Invoice 7\nTotal 3.00"));
    assert_eq!(engine.1.load(std::sync::atomic::Ordering::Relaxed), 1);
    let xml = nova_extract::read_with_engines(b"<?xml version=\"1.0\"?><x/>", engines, &Default::default());
    assert!(xml.is_err(), "not an invoice");
}

#[test]
fn a_missing_tesseract_is_a_clear_error() {
    let engine =
        Tesseract::new(TesseractConfig { binary: "/nonexistent/bin/tesseract".into(), ..TesseractConfig::default() });
    let err = extract_with(&dev_scan(), Some(&engine)).unwrap_err();
    assert_eq!(err.code(), "ocr_unavailable", "{err}");
    assert!(err.to_string().contains("/nonexistent/bin/tesseract"), "{err}");
}

#[test]
fn missing_language_data_is_a_clear_error() {
    let engine = Tesseract::default().with_languages("xx_no_such_language");
    let err = extract_with(&dev_scan(), Some(&engine)).unwrap_err();
    assert_eq!(err.code(), "ocr_unavailable", "{err}");
}

#[test]
fn corrupt_and_huge_page_images_are_clear_errors() {
    let engine = FixedWords(Default::default());
    let corrupt = image_pdf(100, 100, "DCTDecode", vec![0xFF, 0xD8, 0xFF, 0x00, 1, 2, 3, 4]);
    assert_eq!(extract_with(&corrupt, Some(&engine)).unwrap_err().code(), "invalid_image");
    // Declared 200 000 x 200 000 pixels: refused from the dictionary, before any decoding.
    let huge = image_pdf(200_000, 200_000, "FlateDecode", vec![0x78, 0x9C, 0x03, 0x00]);
    assert_eq!(extract_with(&huge, Some(&engine)).unwrap_err().code(), "image_too_large");
    // A JPEG whose own header declares a gigantic frame under a small dictionary size.
    let mut header = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFF, 0xF0, 0xFF, 0xF0, 0x01, 0x01, 0x11, 0x00];
    header.extend_from_slice(&[0xFF, 0xD9]);
    let lying = image_pdf(100, 100, "DCTDecode", header);
    let code = extract_with(&lying, Some(&engine)).unwrap_err().code();
    assert!(matches!(code, "image_too_large" | "invalid_image"), "{code}");
    assert_eq!(engine.0.load(std::sync::atomic::Ordering::Relaxed), 0, "no bad image reaches the engine");
}

#[test]
fn tesseract_reads_a_dev_scan() {
    let invoice = extract_with(&dev_scan(), Some(&Tesseract::default())).expect("tesseract reads the scan");
    assert_eq!(invoice.source.as_deref(), Some("ocr"));
    assert!(invoice.invoice_number.is_some() || invoice.totals.grand_total.is_some(), "{invoice:?}");
}

/// A one-page PDF with a text layer (`text`, one line) and two gray images: a small one (a logo) and one large
/// enough to hold a letterhead.
fn text_pdf_with_images(text: &str) -> Vec<u8> {
    common::pdf(|doc, pages_id| {
        let font = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
        let mut content = Vec::new();
        for (i, line) in text.lines().enumerate() {
            content.extend(format!("BT /F1 12 Tf 72 {} Td ({line}) Tj ET\n", 700 - 20 * i).bytes());
        }
        content.extend(b"q 100 0 0 100 72 750 cm /Logo Do Q q 400 0 0 150 72 40 cm /Letterhead Do Q".iter());
        let content = doc.add_object(Stream::new(dictionary! {}, content));
        let mut image = |width: i64, height: i64| {
            doc.add_object(Stream::new(
                dictionary! {
                    "Type" => "XObject", "Subtype" => "Image", "Width" => width, "Height" => height,
                    "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8,
                },
                vec![255u8; (width * height) as usize],
            ))
        };
        let (logo, letterhead) = (image(100, 100), image(400, 150));
        vec![doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Resources" => dictionary! {
                "Font" => dictionary! { "F1" => font },
                "XObject" => dictionary! { "Logo" => logo, "Letterhead" => letterhead },
            },
        })]
    })
}

/// An engine that reads a seller's letterhead in every image, and records the images' sizes.
#[derive(Default)]
struct LetterheadWords(std::sync::Mutex<Vec<(usize, usize)>>);

impl Ocr for LetterheadWords {
    fn recognize(&self, page: &OcrPage) -> Result<Vec<OcrWord>, ExtractError> {
        self.0.lock().unwrap().push((page.image.width, page.image.height));
        let word = |text: &str, left: u32, line: u32| OcrWord {
            text: text.into(),
            left,
            top: 40 * line,
            width: 12 * text.len() as u32,
            height: 20,
            confidence: 90.0,
            line: (1, 1, line),
        };
        Ok(vec![
            word("Nordlicht", 10, 1),
            word("Handel", 124, 1),
            word("GmbH", 202, 1),
            word("IBAN", 10, 2),
            word("DE89370400440532013000", 64, 2),
        ])
    }
}

#[test]
fn a_seller_printed_as_a_picture_on_a_text_page_is_read_by_ocr() {
    let pdf = text_pdf_with_images("Invoice number: INV-77\nTotal EUR 119.00");
    let engine = LetterheadWords::default();
    let engines = nova_extract::Engines { ocr: Some(&engine), renderer: None };
    let read = nova_extract::read_with_engines(&pdf, engines, &Default::default()).expect("the PDF is read");
    assert_eq!(*engine.0.lock().unwrap(), vec![(400, 150)], "the letterhead is read, the small logo is not");
    let invoice = &read.invoice;
    assert_eq!(invoice.invoice_number.as_deref(), Some("INV-77"), "the text layer is still read");
    assert_eq!(invoice.seller.as_ref().and_then(|s| s.name.as_deref()), Some("Nordlicht Handel GmbH"));
    assert_eq!(invoice.payment_iban.as_deref(), Some("DE89370400440532013000"));
    assert_eq!(invoice.source.as_deref(), Some("text+ocr"));
    assert!(invoice.confidence["seller.name"] <= 0.8 * 0.85, "{:?}", invoice.confidence);
    assert!(read.text.as_deref().is_some_and(|t| t.contains("INV-77") && t.contains("Nordlicht")), "{:?}", read.text);

    // Without an engine the text layer alone, and no seller.
    let text_only = extract(&pdf).unwrap();
    assert_eq!((text_only.seller, text_only.source.as_deref()), (None, Some("text")));

    // A seller the text layer names already: no OCR at all.
    let named = text_pdf_with_images("Sonnenweg Vertrieb GmbH\nInvoice number: INV-78\nTotal EUR 119.00");
    let engine = LetterheadWords::default();
    let engines = nova_extract::Engines { ocr: Some(&engine), renderer: None };
    let invoice = nova_extract::extract_with_engines(&named, engines, &Default::default()).unwrap();
    assert_eq!(invoice.seller.and_then(|s| s.name).as_deref(), Some("Sonnenweg Vertrieb GmbH"));
    assert!(engine.0.lock().unwrap().is_empty());
}
