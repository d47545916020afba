//! Fixtures shared by the OCR and rendering tests: in-memory PDFs and the words a stand-in OCR engine reads.

use lopdf::{dictionary, Document, Object, ObjectId};
use nova_extract::OcrWord;

/// A PDF whose pages `build` adds to the document, each with the given page-tree node as its `Parent`; it
/// returns their ids in order.
pub fn pdf(build: impl FnOnce(&mut Document, ObjectId) -> Vec<ObjectId>) -> Vec<u8> {
    let mut doc = Document::with_version("1.4");
    let pages_id = doc.new_object_id();
    let pages = build(&mut doc, pages_id);
    let count = pages.len() as i64;
    let kids: Vec<Object> = pages.into_iter().map(Object::from).collect();
    doc.objects
        .insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("an in-memory PDF saves");
    bytes
}

/// The words of a page that reads as one small invoice with every core field: seller `Acme GmbH`, number
/// `INV-2024-17`, date 12.03.2024, total `EUR 1.234,50`.
pub fn invoice_words() -> Vec<OcrWord> {
    let word = |text: &str, left: u32, top: u32, line: u32| OcrWord {
        text: text.into(),
        left,
        top,
        width: 16 * text.len() as u32,
        height: 24,
        confidence: 90.0,
        line: (1, 1, line),
    };
    vec![
        word("Acme", 100, 40, 1),
        word("GmbH", 180, 40, 1),
        word("Invoice", 100, 100, 2),
        word("number:", 220, 100, 2),
        word("INV-2024-17", 360, 100, 2),
        word("Date:", 100, 160, 3),
        word("12.03.2024", 200, 160, 3),
        word("Total", 100, 400, 4),
        word("EUR", 600, 400, 4),
        word("1.234,50", 700, 400, 4),
    ]
}

/// [`invoice_words`] without the seller and the date: a reading that misses core fields.
pub fn partial_invoice_words() -> Vec<OcrWord> {
    invoice_words()
        .into_iter()
        .filter(|w| !["Acme", "GmbH", "Date:", "12.03.2024"].contains(&w.text.as_str()))
        .collect()
}
