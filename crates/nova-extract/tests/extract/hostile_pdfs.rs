//! The PDF entry points under hostile input: PDFs built to be refused (password, no pages) and a bounded,
//! seeded mutation run over the dev PDFs that checks the property every caller relies on: `inspect` and
//! `extract` return (never panic, never hang past the test's timeout) with an invoice or a known error code.
//!
//! `NOVA_FUZZ_CASES=N` runs more mutants than CI does; a failure prints the seed and case that reproduce it.

use std::path::{Path, PathBuf};

use lopdf::{dictionary, Document, Object, Stream, StringFormat};
use nova_extract::{extract, inspect, ExtractError};

const KNOWN_CODES: &[&str] =
    &["empty_document", "unsupported_document", "invalid_pdf", "encrypted_pdf", "no_pages", "no_text", "invalid_xml"];

fn dev_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev")
}

/// A one-page PDF with a line of text, built with lopdf; `edit` may change the document before saving.
fn build_pdf(edit: impl FnOnce(&mut Document, lopdf::ObjectId)) -> Vec<u8> {
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
    let content = doc.add_object(Stream::new(
        dictionary! {},
        b"BT /F1 12 Tf 72 720 Td (Invoice number: INV-2024-17) Tj 0 -20 Td (Total due: 100.00 EUR) Tj ET".to_vec(),
    ));
    let page = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
        "Contents" => content,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    edit(&mut doc, pages_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("an in-memory PDF saves");
    out
}

fn code_of(result: Result<impl Sized, ExtractError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn the_builder_makes_a_readable_pdf() {
    // The cases below differ from this one by a single change, so their refusals are due to that change.
    let pdf = build_pdf(|_, _| {});
    assert_eq!(inspect(&pdf).expect("valid").page_count, Some(1));
    let invoice = extract(&pdf).expect("readable");
    assert_eq!(invoice.invoice_number.as_deref(), Some("INV-2024-17"));
}

#[test]
fn a_pdf_with_a_user_password_is_encrypted_pdf() {
    // The standard security handler, revision 3, with an owner and user entry that no empty password opens.
    let pdf = build_pdf(|doc, _| {
        let encrypt = doc.add_object(dictionary! {
            "Filter" => "Standard",
            "V" => 2,
            "R" => 3,
            "Length" => 128,
            "P" => -3904,
            "O" => Object::String(vec![0x5a; 32], StringFormat::Hexadecimal),
            "U" => Object::String(vec![0xa5; 32], StringFormat::Hexadecimal),
        });
        doc.trailer.set("Encrypt", encrypt);
        doc.trailer.set(
            "ID",
            vec![
                Object::String(vec![1; 16], StringFormat::Hexadecimal),
                Object::String(vec![1; 16], StringFormat::Hexadecimal),
            ],
        );
    });
    assert_eq!(code_of(inspect(&pdf)), "encrypted_pdf");
    let err = extract(&pdf).expect_err("no password");
    assert_eq!(err.code(), "encrypted_pdf", "{err}");
    assert!(err.to_string().contains("password"), "{err}");
}

#[test]
fn a_pdf_without_pages_is_no_pages() {
    let pdf = build_pdf(|doc, pages_id| {
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => Vec::<Object>::new(), "Count" => 0 }),
        );
    });
    assert_eq!(code_of(inspect(&pdf)), "no_pages");
    assert_eq!(code_of(extract(&pdf)), "no_pages");
}

fn read_dev(name: &str) -> Vec<u8> {
    std::fs::read(dev_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn says_repaired(invoice: &nova_core::Invoice) -> bool {
    invoice.warnings.iter().any(|w| w.contains("damaged and repaired"))
}

#[test]
fn a_truncated_dev_pdf_reads_its_invoice_number_and_says_it_was_repaired() {
    let whole = read_dev("facturx/zfc_zf22__EN16931_OEPNV.noxml.pdf");
    let intact = extract(&whole).expect("the whole file reads");
    assert!(!says_repaired(&intact), "{:?}", intact.warnings);
    // Cut at two fifths, as an interrupted download: no cross-reference table, no trailer.
    let cut = &whole[..whole.len() * 2 / 5];
    assert!(Document::load_mem(cut).is_err(), "lopdf alone cannot read it");
    assert_eq!(inspect(cut).expect("repaired").page_count, inspect(&whole).expect("whole").page_count);
    let invoice = extract(cut).expect("repaired");
    assert_eq!(invoice.invoice_number.as_deref(), Some("E2018092011804"));
    assert_eq!(invoice.invoice_number, intact.invoice_number);
    assert!(says_repaired(&invoice), "{:?}", invoice.warnings);
}

#[test]
fn a_pdf_whose_offsets_all_lie_reads() {
    // Bytes inserted after the header move every object away from the offset its table gives.
    let pdf = build_pdf(|_, _| {});
    let header_end = pdf.iter().position(|&b| b == b'\n').expect("a header line") + 1;
    let mut shifted = pdf[..header_end].to_vec();
    shifted.extend_from_slice(&[b"% inserted by a broken writer\n".as_slice(); 8].concat());
    shifted.extend_from_slice(&pdf[header_end..]);
    assert!(Document::load_mem(&shifted).map_or(true, |doc| doc.catalog().is_err()), "the table lies");
    assert_eq!(inspect(&shifted).expect("repaired").page_count, Some(1));
    let invoice = extract(&shifted).expect("repaired");
    assert_eq!(invoice.invoice_number.as_deref(), Some("INV-2024-17"));
    assert!(says_repaired(&invoice), "{:?}", invoice.warnings);
}

#[test]
fn a_pdf_with_object_streams_and_a_lost_cross_reference_stream_reads() {
    // PDF 1.5: most objects packed in object streams, their offsets in a cross-reference stream.
    let whole = read_dev("facturx/mustang__zugferd_invoice.noxml.pdf");
    let intact = extract(&whole).expect("the whole file reads");
    let at = whole.windows(9).rposition(|w| w == b"startxref").expect("startxref");
    let mut broken = whole[..at].to_vec();
    broken.extend_from_slice(b"startxref\n17\n%%EOF\n");
    assert!(Document::load_mem(&broken).is_err(), "lopdf alone cannot read it");
    let invoice = extract(&broken).expect("repaired");
    assert!(intact.invoice_number.is_some());
    assert_eq!(invoice.invoice_number, intact.invoice_number);
    assert!(says_repaired(&invoice), "{:?}", invoice.warnings);
}

#[test]
fn a_pdf_that_cannot_be_repaired_is_still_invalid_pdf() {
    let whole = read_dev("invoice2data/oyo.pdf");
    let header_only = &whole[..whole.iter().position(|&b| b == b'\n').expect("a header line") + 1];
    let words = b"%PDF-1.4\nthis upload starts like a PDF and then holds only words, no objects at all\n".as_slice();
    for bytes in [header_only, words] {
        assert_eq!(code_of(inspect(bytes)), "invalid_pdf");
        assert_eq!(code_of(extract(bytes)), "invalid_pdf");
    }
}

/// xorshift64*: a deterministic stream of mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One structural or byte-level change, the kind a broken writer, a truncated transfer or an attacker makes.
fn mutate(input: &[u8], rng: &mut Rng) -> (String, Vec<u8>) {
    let mut data = input.to_vec();
    let len = data.len();
    let at = rng.below(len);
    match rng.below(7) {
        0 => {
            let n = 1 + rng.below(16);
            for _ in 0..n {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            (format!("flip {n} bits"), data)
        }
        1 => {
            data.truncate(at.max(9));
            (format!("truncate at {at}"), data)
        }
        2 => {
            let end = (at + 1 + rng.below(4096)).min(len);
            data.drain(at..end);
            (format!("delete {at}..{end}"), data)
        }
        3 => {
            let end = (at + 1 + rng.below(4096)).min(len);
            let chunk = data[at..end].to_vec();
            let to = rng.below(data.len());
            data.splice(to..to, chunk);
            (format!("duplicate {at}..{end} at {to}"), data)
        }
        4 => {
            // Make numbers (offsets, lengths, counts, object numbers) lie.
            let digits: Vec<usize> = (0..len).filter(|&i| data[i].is_ascii_digit()).collect();
            let n = 1 + rng.below(8);
            for _ in 0..n {
                if let Some(&i) = digits.get(rng.below(digits.len())) {
                    data[i] = b'0' + rng.below(10) as u8;
                }
            }
            (format!("rewrite {n} digits"), data)
        }
        5 => {
            // Insert PDF keywords that steer the parser.
            const WORDS: &[&[u8]] =
                &[b"obj", b"endobj", b"stream", b"endstream", b"xref", b"trailer", b"R", b"<<", b">>"];
            let word = WORDS[rng.below(WORDS.len())];
            data.splice(at..at, word.iter().copied());
            (format!("insert {:?} at {at}", String::from_utf8_lossy(word)), data)
        }
        _ => {
            let n = 1 + rng.below(64);
            let noise: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, noise);
            (format!("insert {n} random bytes at {at}"), data)
        }
    }
}

#[test]
fn mutated_pdfs_never_panic_and_fail_with_known_codes() {
    let cases: usize = std::env::var("NOVA_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let seed: u64 = std::env::var("NOVA_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x9e37_79b9_7f4a_7c15);
    let dev = dev_dir();
    // Small and varied: a built one-pager, a Factur-X PDF with its XML, its text-only twin, a real vendor's.
    let mut seeds = vec![("built".to_string(), build_pdf(|_, _| {}))];
    for name in ["facturx/mustang__validV2PDF.pdf", "facturx/mustang__validV2PDF.noxml.pdf", "invoice2data/oyo.pdf"] {
        let bytes = std::fs::read(dev.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        seeds.push((name.to_string(), bytes));
    }
    let mut rng = Rng(seed);
    let mut outcomes = std::collections::BTreeMap::<&str, u32>::new();
    for case in 0..cases {
        let (name, original) = &seeds[case % seeds.len()];
        let (change, mutant) = mutate(original, &mut rng);
        let context = format!("case {case} (NOVA_FUZZ_SEED={seed}): {name}, {change}");
        let inspected = std::panic::catch_unwind(|| code_of(inspect(&mutant)))
            .unwrap_or_else(|_| panic!("inspect panicked on {context}"));
        let extracted = std::panic::catch_unwind(|| code_of(extract(&mutant)))
            .unwrap_or_else(|_| panic!("extract panicked on {context}"));
        for code in [inspected, extracted] {
            assert!(code == "ok" || KNOWN_CODES.contains(&code), "unknown code {code} on {context}");
        }
        // What the upload check accepts, extraction must handle with an answer or an error of the document.
        if inspected != "ok" {
            assert_ne!(extracted, "ok", "inspect refused ({inspected}) what extract read, on {context}");
        }
        *outcomes.entry(extracted).or_default() += 1;
    }
    eprintln!("{cases} mutants: {outcomes:?}");
    // The mutations must exercise both sides, or the run proves little.
    assert!(outcomes.get("ok").copied().unwrap_or(0) > 0, "{outcomes:?}");
    assert!(outcomes.get("invalid_pdf").copied().unwrap_or(0) > 0, "{outcomes:?}");
}
