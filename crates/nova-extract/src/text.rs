//! Generic rules over an invoice's text: labels in English, German, French, Spanish, Dutch, Italian and Polish,
//! the value beside or below them.
//!
//! The rules know no vendor. Each field is found by a label (`Invoice number`, `Rechnungsnummer`,
//! `Facture n°`, ...) and a value of the right shape on the same line after it, or in the same column of the
//! next line when the text is laid out as a table. A field whose value cannot be found with confidence stays
//! `None`: a wrong value is worse than a missing one. Every field that is set gets a confidence. Item lines
//! come from the table under a column header, only when their arithmetic reconciles ([`lines`]); the parties'
//! addresses and the buyer's name from the address blocks ([`parties`]).
//!
//! Each kind of field has its module: the invoice number and the references ([`numbers`]), the dates
//! ([`dates`]), the totals ([`totals`]), the VAT breakdown ([`vat`]), the item lines ([`lines`]), the seller's
//! name and the parties' addresses ([`parties`]), the IBAN and the VAT ids ([`ids`]). They share the prepared
//! text ([`doc`]), the amounts as printed ([`amounts`]) and the pattern constructor ([`pattern`]), and none of
//! them reads from this module: [`extract`] runs them in order into an [`Invoice`], and the document type and
//! the currency are read here.

use std::collections::HashMap;
use std::sync::LazyLock;

use nova_core::{Invoice, Party};
use regex::Regex;

use amounts::ISO_CURRENCY;
use dates::{dates_confidence, due_date, issue_date};
use doc::{cells, Text};
use ids::{payment_iban, vat_ids};
use numbers::{invoice_number, labelled_reference, BUYER_REFERENCE_LABEL, ORDER_LABEL};
use parties::seller_name;
use pattern::regex;
use totals::{grand_total, set_totals, totals_confidence};

mod amounts;
mod dates;
mod doc;
pub(crate) mod ids;
mod lines;
mod numbers;
mod parties;
mod pattern;
mod totals;
mod vat;

/// Extracts the fields from a PDF's text layer read two ways: in content-stream order (`flat`), which the
/// rules read first, and as laid out on the page (`layout`), where a label drawn apart from its value in the
/// content stream stands on the value's line. When the first reading leaves a core field empty, the second
/// is read too (most documents need only the first), and the fields the first left empty are taken from it.
pub(crate) fn extract_layer(flat: &str, layout: &str) -> Invoice {
    let mut invoice = extract(flat);
    let complete = invoice.invoice_number.is_some()
        && invoice.issue_date.is_some()
        && invoice.currency.is_some()
        && invoice.totals.grand_total.is_some();
    if complete || layout.trim().is_empty() {
        return invoice;
    }
    let other = extract(layout);
    fill_from(&mut invoice, other);
    invoice
}

/// Fills the fields `invoice` lacks with `other`'s, with their confidences.
fn fill_from(invoice: &mut Invoice, other: Invoice) {
    let mut filled: Vec<&str> = Vec::new();
    macro_rules! fill {
        ($($field:ident).+, $name:expr) => {
            if invoice.$($field).+.is_none() && other.$($field).+.is_some() {
                invoice.$($field).+ = other.$($field).+.clone();
                filled.push($name);
            }
        };
    }
    fill!(invoice_number, "invoice_number");
    fill!(issue_date, "issue_date");
    fill!(due_date, "due_date");
    fill!(currency, "currency");
    fill!(payment_iban, "payment_iban");
    fill!(type_code, "type_code");
    if invoice.totals.grand_total.is_none() && other.totals.grand_total.is_some() {
        invoice.totals = other.totals.clone();
        filled.extend(TOTALS);
    }
    for (mine, theirs, prefix) in
        [(&mut invoice.seller, &other.seller, "seller"), (&mut invoice.buyer, &other.buyer, "buyer")]
    {
        let Some(theirs) = theirs else { continue };
        let party = mine.get_or_insert_with(Party::default);
        for (slot, value, field) in [
            (&mut party.vat_id, &theirs.vat_id, "vat_id"),
            (&mut party.country, &theirs.country, "country"),
            (&mut party.city, &theirs.city, "city"),
            (&mut party.postcode, &theirs.postcode, "postcode"),
        ] {
            if slot.is_none() && value.is_some() {
                *slot = value.clone();
                if let Some(confidence) = other.confidence.get(&format!("{prefix}.{field}")) {
                    invoice.confidence.insert(format!("{prefix}.{field}"), *confidence);
                }
            }
        }
    }
    if invoice.seller.as_ref().is_some_and(|p| *p == Party::default()) {
        invoice.seller = None;
    }
    if invoice.buyer.as_ref().is_some_and(|p| *p == Party::default()) {
        invoice.buyer = None;
    }
    for name in filled {
        if let Some(confidence) = other.confidence.get(name) {
            invoice.confidence.insert(name.to_string(), *confidence);
        }
    }
}

const TOTALS: [&str; 8] = [
    "totals.line_total",
    "totals.allowance_total",
    "totals.charge_total",
    "totals.tax_basis_total",
    "totals.tax_total",
    "totals.grand_total",
    "totals.prepaid",
    "totals.due_payable",
];

/// Extracts the core fields from the text of one invoice.
pub(crate) fn extract(text: &str) -> Invoice {
    let doc = Text::new(text);
    let mut invoice = Invoice { source: Some("text".to_string()), ..Invoice::default() };

    if let Some((number, confidence)) = invoice_number(&doc) {
        invoice.invoice_number = Some(number);
        invoice.confidence.insert("invoice_number".into(), confidence);
    }
    if let Some((date, confidence)) = issue_date(&doc) {
        invoice.issue_date = Some(date);
        invoice.confidence.insert("issue_date".into(), confidence);
    }
    let total = grand_total(&doc);
    if let Some(total) = &total {
        invoice.totals.grand_total = Some(total.value);
        invoice.confidence.insert("totals.grand_total".into(), total.confidence);
    }
    let block = totals::totals_block(&doc, total.as_ref().map(|t| t.value));
    set_totals(&mut invoice, &block);
    invoice.lines = lines::line_items(&doc, &block);
    invoice.tax_breakdown = vat::tax_rows(&doc, &block);
    totals_confidence(&mut invoice);
    if !invoice.tax_breakdown.is_empty() {
        invoice.confidence.insert("tax_breakdown".into(), 0.8);
    }
    if is_credit_note(&doc) {
        invoice.type_code = Some("381".to_string());
        invoice.confidence.insert("type_code".into(), 0.8);
        positive_credit_note_amounts(&mut invoice);
    } else if let Some((code, confidence)) = type_code(&doc) {
        invoice.type_code = Some(code.to_string());
        invoice.confidence.insert("type_code".into(), confidence);
    }
    if let Some((date, confidence)) = due_date(&doc) {
        invoice.due_date = Some(date);
        invoice.confidence.insert("due_date".into(), confidence);
    }
    dates_confidence(&doc, &mut invoice);
    for (field, label, slot) in [
        ("order_reference", &*ORDER_LABEL, &mut invoice.order_reference),
        ("buyer_reference", &*BUYER_REFERENCE_LABEL, &mut invoice.buyer_reference),
    ] {
        if let Some((reference, confidence)) = labelled_reference(&doc, label) {
            *slot = Some(reference);
            invoice.confidence.insert(field.into(), confidence);
        }
    }
    if let Some(iban) = payment_iban(&doc) {
        invoice.payment_iban = Some(iban);
        invoice.confidence.insert("payment_iban".into(), 0.85);
    }
    if let Some((currency, confidence)) = currency(&doc, total.as_ref().map(|t| t.line)) {
        invoice.currency = Some(currency.to_string());
        invoice.confidence.insert("currency".into(), confidence);
    }
    let seller = seller_name(&doc);
    if let Some((name, confidence, _)) = &seller {
        invoice.seller = Some(Party { name: Some(name.clone()), ..Party::default() });
        invoice.confidence.insert("seller.name".into(), *confidence);
    }
    let (seller_vat, buyer_vat) = vat_ids(&doc);
    let found = parties::parties(&doc, seller.map(|(_, _, at)| at), seller_vat.as_deref(), buyer_vat.as_deref());
    if let Some(vat) = seller_vat {
        invoice.seller.get_or_insert_with(Party::default).vat_id = Some(vat);
        invoice.confidence.insert("seller.vat_id".into(), 0.8);
    }
    if let Some(vat) = buyer_vat {
        invoice.buyer.get_or_insert_with(Party::default).vat_id = Some(vat);
        invoice.confidence.insert("buyer.vat_id".into(), 0.75);
    }
    if let Some(name) = found.buyer_name {
        invoice.buyer.get_or_insert_with(Party::default).name = Some(name);
        invoice.confidence.insert("buyer.name".into(), 0.6);
    }
    for (party, address, prefix) in
        [(&mut invoice.seller, found.seller, "seller"), (&mut invoice.buyer, found.buyer, "buyer")]
    {
        let Some(address) = address else { continue };
        let party = party.get_or_insert_with(Party::default);
        party.postcode = Some(address.postcode);
        party.city = Some(address.city);
        invoice.confidence.insert(format!("{prefix}.postcode"), 0.65);
        invoice.confidence.insert(format!("{prefix}.city"), 0.65);
        if let Some(country) = address.country {
            party.country = Some(country);
            invoice.confidence.insert(format!("{prefix}.country"), 0.65);
        }
    }
    invoice
}

/// A document titled as a credit note (`Credit note`, `Avoir`, `Nota de crédito`, `Creditnota`, `Nota di
/// credito`, `Faktura korygująca` is a correction, not listed): the title alone on its line, or followed by
/// its number, near the top.
static CREDIT_NOTE_TITLE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\s*(?:credit\s*note|avoir|nota\s*de\s*cr[ée]dito|creditnota|credit\s*nota|nota\s*di\s*credito)(?:\s+(?:n[°o]\.?\s*|#\s*)?[A-Za-z0-9][A-Za-z0-9/_.\-]*)?\s*$",
    )
});

fn is_credit_note(doc: &Text<'_>) -> bool {
    doc.lines.iter().take(60).any(|line| CREDIT_NOTE_TITLE.is_match(line))
}

/// A document type (UNTDID 1001) printed in parentheses after a title word: `Handelsrechnung (380)`,
/// `Gutschrift (Selbst ausgestellte Rechnung) (389)`.
static PRINTED_TYPE_CODE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\s*(?:\S*(?:rechnung|invoice|facture|factura|fattura|factuur|faktura|gutschrift|avoir)\b[^()]*(?:\([^()]*\)\s*)?)\((\d{3})\)",
    )
});
/// The invoice type codes of EN 16931 (UNTDID 1001 subset) a printed code is taken from.
const TYPE_CODES: &[&str] = &[
    "326", "380", "381", "383", "384", "386", "387", "388", "389", "393", "394", "395", "396", "420", "456", "457",
    "458", "527", "532", "553", "575", "623", "633", "751", "780", "817", "870", "875", "876", "877", "935",
];
/// A corrected invoice's title.
static CORRECTION_TITLE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\s*(?:rechnungs\s?kor\s?rektur|korrekturrechnung|corrected\s+invoice|facture\s+rectificative|factura\s+rectificativa|faktura\s+korygująca|fattura\s+di\s+rettifica|correctiefactuur)\b",
    )
});
/// A self-billed invoice (the buyer issues it).
static SELF_BILLED: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)(?:selbst\s*ausgestellte\s+rechnung|self[-\s]billed\s+invoice|autofacturation|autofactura|autofattura)")
});
/// An invoice's title: the word alone, or followed by its number or number label (`Invoice 103767`,
/// `Rechnung # RE-17`, `Facture n° 12`), not by other words (`Rechnung des Versicherers`).
static INVOICE_TITLE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^\s*(?i:(?:tax\s+|commercial\s+|vat\s+)?(?:invoice|rechnung|handelsrechnung|facture|factura|fattura|factuur|faktura(?:\s+vat)?))(?:\s*$|\s+(?i:n[°o]\.?|nr\.?|no\.?|number|nummer|numéro|número|numero|numer)?\s*:?\s*(?:[A-Z0-9#]|$))",
    )
});

/// The document's type from its title near the top: a code printed beside it, a corrected or self-billed
/// invoice (384, 389), or a commercial invoice (380). Anything else (an insurer's invoice, a booking aid that
/// says it is no invoice) stays empty.
fn type_code(doc: &Text<'_>) -> Option<(&'static str, f32)> {
    let top = || doc.lines.iter().take(40);
    if let Some(code) = top().find_map(|line| PRINTED_TYPE_CODE.captures(line)).and_then(|c| {
        let code = c.get(1)?.as_str();
        TYPE_CODES.iter().find(|known| **known == code).copied()
    }) {
        return Some((code, 0.85));
    }
    if top().any(|line| CORRECTION_TITLE.is_match(line)) {
        return Some(("384", 0.7));
    }
    if top().any(|line| SELF_BILLED.is_match(line)) {
        return Some(("389", 0.7));
    }
    // The title may be a cell of its line (`Logo   FACTURE N° : F1` as laid out).
    let titled = |line: &&str| cells(line).iter().any(|(_, cell)| INVOICE_TITLE.is_match(cell));
    top().any(titled).then_some(("380", 0.6))
}

/// EN 16931 credit notes (type 381) carry positive amounts, the sign being in the type; a printed credit
/// note often shows them negative.
fn positive_credit_note_amounts(invoice: &mut Invoice) {
    let t = &mut invoice.totals;
    for slot in [
        &mut t.line_total,
        &mut t.tax_basis_total,
        &mut t.tax_total,
        &mut t.grand_total,
        &mut t.prepaid,
        &mut t.due_payable,
    ] {
        if let Some(v) = slot.as_mut() {
            *v = v.abs();
        }
    }
    for row in &mut invoice.tax_breakdown {
        for slot in [&mut row.basis, &mut row.amount] {
            if let Some(v) = slot.as_mut() {
                *v = v.abs();
            }
        }
    }
    for line in &mut invoice.lines {
        for slot in [&mut line.line_total, &mut line.net_price, &mut line.quantity] {
            if let Some(v) = slot.as_mut() {
                *v = v.abs();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Currency

/// Currency symbols that name one currency (a bare `$` is taken as USD only when nothing else is found).
const SYMBOLS: &[(&str, &str)] =
    &[("€", "EUR"), ("£", "GBP"), ("₹", "INR"), ("zł", "PLN"), ("Rs.", "INR"), ("Rs ", "INR")];

/// The currency on the grand-total line if one is printed there, else the most frequent in the document.
fn currency(doc: &Text<'_>, total_line: Option<usize>) -> Option<(&'static str, f32)> {
    if let Some(code) = total_line.and_then(|i| currencies_in(doc.lines[i]).into_iter().next()) {
        return Some((code, 0.9));
    }
    if let Some(code) = labelled_currency(doc) {
        return Some((code, 0.85));
    }
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    for line in &doc.lines {
        for code in currencies_in(line) {
            *counts.entry(code).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&'static str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    match ranked.as_slice() {
        [] => None,
        [(only, _)] => Some((only, 0.8)),
        [(first, n1), (_, n2), ..] if n1 > n2 => Some((first, 0.65)),
        _ => None,
    }
}

/// The code after a currency label (`Currency: EUR`, `Währung  DEM`, `Devise : CHF`): any ISO 4217 code,
/// current or replaced by the euro, for a label says what the code is.
fn labelled_currency(doc: &Text<'_>) -> Option<&'static str> {
    let mut found = doc.lines.iter().filter_map(|line| {
        let printed = CURRENCY_LABEL.captures(line)?.get(1)?.as_str();
        ISO_CODES.iter().chain(LABELLED_CODES).find(|code| **code == printed).copied()
    });
    let first = found.next()?;
    // Two labels that disagree (a price list in another currency) settle nothing.
    found.all(|other| other == first).then_some(first)
}

/// A currency label, then the code: `Currency: EUR`, `Währung DEM`, `Devise : CHF`, `Moneda: MXN`.
static CURRENCY_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i:\b(?:currency(?:\s*code)?|w[äa]hrung|waehrung|devise|monnaie|moneda|divisa|valuta|waluta))\s*[:.]?\s*([A-Z]{3})\b",
    )
});

/// ISO 4217 codes taken only after a currency label: less common ones, and the currencies the euro replaced
/// (still on archived invoices).
const LABELLED_CODES: &[&str] = &[
    "ISK", "RUB", "UAH", "RSD", "HRK", "THB", "MYR", "IDR", "PHP", "VND", "TWD", "PKR", "BDT", "LKR", "EGP", "NGN",
    "KES", "MAD", "TND", "CLP", "COP", "PEN", "ARS", "UYU", "QAR", "KWD", "BHD", "OMR", "JOD", "DEM", "FRF", "ITL",
    "ESP", "NLG", "BEF", "ATS", "FIM", "IEP", "PTE", "GRD", "LUF",
];

fn currencies_in(line: &str) -> Vec<&'static str> {
    let mut found: Vec<(usize, &'static str)> = ISO_CURRENCY
        .captures_iter(line)
        .filter_map(|c| {
            let m = c.get(1)?;
            let code = ISO_CODES.iter().find(|code| **code == m.as_str())?;
            Some((m.start(), *code))
        })
        .collect();
    for (symbol, code) in SYMBOLS {
        found.extend(line.match_indices(symbol).map(|(i, _)| (i, *code)));
    }
    if found.is_empty() {
        // `$` alone: US dollars, unless another dollar is spelled out (`CA$`, `A$`, `AU$`, `NZ$`, `S$`, `HK$`).
        found.extend(
            line.match_indices('$')
                .filter(|(i, _)| !line[..*i].ends_with(char::is_alphabetic))
                .map(|(i, _)| (i, "USD")),
        );
    }
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, code)| code).collect()
}

const ISO_CODES: &[&str] = &[
    "EUR", "USD", "GBP", "CHF", "INR", "JPY", "CNY", "CAD", "AUD", "NZD", "PLN", "SEK", "NOK", "DKK", "CZK", "HUF",
    "RON", "BGN", "TRY", "BRL", "MXN", "ZAR", "SGD", "HKD", "AED", "SAR", "ILS", "KRW",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, field: &str, expected: Option<&str>) {
        let inv = extract(text);
        let got = match field {
            "invoice_number" => inv.invoice_number.clone(),
            "issue_date" => inv.issue_date.map(|d| d.to_string()),
            "currency" => inv.currency.clone(),
            "grand_total" => inv.totals.grand_total.map(|d| d.to_string()),
            "seller" => inv.seller.and_then(|s| s.name),
            other => panic!("unknown field {other}"),
        };
        assert_eq!(got.as_deref(), expected, "{field} of {text:?}");
    }

    #[test]
    fn invoice_numbers_by_label() {
        check("Invoice number: 0999/09/2022", "invoice_number", Some("0999/09/2022"));
        check("Invoice #— 3189846", "invoice_number", Some("3189846"));
        check("Rechnungsnummer: RE-2024-17", "invoice_number", Some("RE-2024-17"));
        check("Rechnungs-Nr. 4711", "invoice_number", Some("4711"));
        check("Facture n° FA-2023-001", "invoice_number", Some("FA-2023-001"));
        check("Numéro de facture : 12345", "invoice_number", Some("12345"));
        check("Número de factura: A-2024-7", "invoice_number", Some("A-2024-7"));
        check("Fattura n. 2024/118", "invoice_number", Some("2024/118"));
        check("Numero fattura: 118", "invoice_number", Some("118"));
        check("Numer faktury: FV/7/2024", "invoice_number", Some("FV/7/2024"));
        check("Factuurnummer: 2024-0042", "invoice_number", Some("2024-0042"));
        check("Invoice 103767", "invoice_number", Some("103767"));
        // Another cell set apart by a wide gap (a logo's text read beside the title).
        check("Invoice 103767                                  su", "invoice_number", Some("103767"));
        check("Invoice Date  12.03.2024", "invoice_number", None);
        // Words between the title and `Nr.`, the number dated after it.
        let insurer = "Rechnung des Versicherers (575) Nr. 00.123.456.7-2018-1 vom 11.03.2018";
        check(insurer, "invoice_number", Some("00.123.456.7-2018-1"));
        check(insurer, "issue_date", Some("2018-03-11"));
        // The same line as a text layer may draw it, the date before `Nr.` and `vom` last.
        let drawn = "Rechnung des Versicherers (575) 11.03.2018     Nr. 00.123.456.7-2018-1   vom";
        check(drawn, "invoice_number", Some("00.123.456.7-2018-1"));
        check(drawn, "issue_date", Some("2018-03-11"));
        // The title wrapped after `vom`, the date on the next line.
        let wrapped = "Rechnung des Versicherers Nr. 01.234.567.8-2018-1 vom \n06.12.2018";
        check(wrapped, "invoice_number", Some("01.234.567.8-2018-1"));
        check(wrapped, "issue_date", Some("2018-12-06"));
        check("Rechnung des Versicherers Nr. 01.234.567.8-2018-1 vom \nMuster AG", "invoice_number", None);
        // Without the date the number may be anyone's (`Rechnung an Kunde Nr. 4711`).
        check("Rechnung an Kunde Nr. 4711", "invoice_number", None);
        check("Handelsrechnung (380) 05.06.2018   Nr. 471102   vom", "invoice_number", Some("471102"));
        check("Rechnungskor rektur Nr. RK21012345 vom 16.09.2019", "invoice_number", Some("RK21012345"));
        check("Rechnung gemäß Bestellung Nr. 2018-471331", "invoice_number", None);
        check("Invoice No.   Date\nINV-77   01.02.2023", "invoice_number", Some("INV-77"));
        check("Invoice number: see below", "invoice_number", None);
        // The value drawn before its label, the label ending the line.
        check("993548900  Factuurnummer:", "invoice_number", Some("993548900"));
        check("Paid in full  Invoice number:", "invoice_number", None);
        check("Invoice date 01.02.2023", "invoice_number", None);
    }

    #[test]
    fn the_layout_reading_fills_what_the_content_stream_order_leaves_empty() {
        let flat = "FACTURE N° :\nDate :\nAcme SARL\nTotal TTC 104,90 €\nF20220023\n31/01/2022";
        let layout = "Acme SARL            FACTURE N° :   F20220023\n                     Date :         31/01/2022\n\
                      Total TTC 999,00 €";
        assert_eq!(extract(flat).invoice_number, None, "the labels stand apart from their values");
        let invoice = extract_layer(flat, layout);
        assert_eq!(invoice.invoice_number.as_deref(), Some("F20220023"));
        assert_eq!(invoice.issue_date.map(|d| d.to_string()).as_deref(), Some("2022-01-31"));
        assert!(invoice.confidence.contains_key("invoice_number"), "a filled value keeps its confidence");
        // What the first reading found stays.
        assert_eq!(invoice.totals.grand_total.map(|d| d.to_string()).as_deref(), Some("104.90"));
        assert_eq!(extract_layer(flat, "").invoice_number, None);
    }

    #[test]
    fn issue_dates_by_label_and_position() {
        check("Invoice Date— Sep 13, 2022", "issue_date", Some("2022-09-13"));
        check("Rechnungsdatum: 17.02.2026", "issue_date", Some("2026-02-17"));
        check("Due date: 01.03.2026\nDatum: 17.02.2026", "issue_date", Some("2026-02-17"));
        check("Date de facture : 3 mars 2024", "issue_date", Some("2024-03-03"));
        check("Invoice 1\n\nFebruary 17, 2026\nDue Date March 3, 2026", "issue_date", Some("2026-02-17"));
        check("Payment due 01/02/2024", "issue_date", None);
        check("Print 24.03.2020\nRechnungskor rektur Nr. RK21 vom 16.09.2019", "issue_date", Some("2019-09-16"));
        check("Facture n° 12 du 3 mars 2024", "issue_date", Some("2024-03-03"));
        check("23.06.23, 11:09 Invoice | Shop\n\n11.5.23\n", "issue_date", Some("2023-05-11"));
        check("Shop\n\n11/5/23\nTotal $48.00", "issue_date", None);
        check("Shop\n\n11/5/23\nPaid 25/5/23", "issue_date", Some("2023-05-11"));
        check("Fecha de emisión: 3 de marzo de 2024", "issue_date", Some("2024-03-03"));
        check("Data fattura: 15/09/2023", "issue_date", Some("2023-09-15"));
        check("Data wystawienia: 15 stycznia 2024", "issue_date", Some("2024-01-15"));
        check("Factuurdatum: 1 mei 2023", "issue_date", Some("2023-05-01"));
        check("29 maart 2014  Factuurdatum:\n28 maart 2014  Orderdatum:", "issue_date", Some("2014-03-29"));
        check("Paid 29 maart 2014 by card  Factuurdatum:", "issue_date", None);
        // Columns set apart by runs of spaces between the number, its connector and the date.
        check("Handelsrechnung (380)   Nr. 4711   vom   15.11.2025", "issue_date", Some("2025-11-15"));
        // A template's or program's version stamp is not the day of issue.
        check(
            "Stylesheet-Version: 2.6 vom 10.11.2025

Rechnung 12

01.10.2025",
            "issue_date",
            Some("2025-10-01"),
        );
        check("Software version 3 released 01.02.2024", "issue_date", None);
        // One label for two dates, the issue date one of them.
        check("Liefer- und Rechnungsdatum: 11. Juli 2014", "issue_date", Some("2014-07-11"));
        check("Lieferdatum: 10. Juli 2014", "issue_date", None);
        // The date of the preceding invoice a correction refers to (BT-26), and the ends of a service period,
        // are not this invoice's.
        check("Date de facture associée : 1 janvier 2022\nFacture n° 2", "issue_date", None);
        check("Preceding invoice date: 3 March 2024\nInvoice date: 5 March 2024", "issue_date", Some("2024-03-05"));
        check(
            "Date de début de prestation : 1 janvier 2022\nDate de fin de prestation : 31 décembre 2022",
            "issue_date",
            None,
        );
    }

    #[test]
    fn an_ambiguous_numeric_date_is_read_only_when_the_document_settles_the_order() {
        // Nothing settles it: 3 April or 4 March.
        check("Invoice date: 03/04/2025\nTotal 10.00", "issue_date", None);
        // Amounts with a decimal comma, labels in a language that writes the day first, or a date that only
        // reads one way settle it.
        check("Invoice date: 03/04/2025\nTotal 10,00", "issue_date", Some("2025-04-03"));
        check("Rechnungsdatum: 03/04/2025\nTotal 10.00", "issue_date", Some("2025-04-03"));
        check("Invoice date: 03/04/2025\nShipped 25/03/2025\nTotal 10.00", "issue_date", Some("2025-04-03"));
        check("Invoice date: 03/04/2025\nShipped 03/25/2025\nTotal $10.00", "issue_date", Some("2025-03-04"));
        // A date that reads one way only needs nothing: dots are day first, and 25 is no month.
        check("Invoice date: 25/03/2025\nTotal 10.00", "issue_date", Some("2025-03-25"));
    }

    #[test]
    fn an_issue_date_with_rivals_is_not_trusted_on_its_label_alone() {
        let issue_date = |text: &str| {
            let invoice = extract(text);
            (invoice.issue_date.map(|d| d.to_string()), invoice.confidence.get("issue_date").copied().unwrap_or(0.0))
        };
        let (date, confidence) = issue_date("Invoice date: 12.03.2024\nTotal 10,00");
        assert_eq!((date.as_deref(), confidence >= 0.8), (Some("2024-03-12"), true));
        // Dates that say what they are, a period, a timestamp: no rivals.
        let text = "Invoice date: 12.03.2024\nDelivery date: 05.03.2024\nService 01.02.2024 - 29.02.2024\n\
                    13.03.2024 10:22\nTotal 10,00";
        assert!(issue_date(text).1 >= 0.8, "{:?}", issue_date(text));
        for rivalled in [
            // A date printed without saying what it is.
            "Invoice date: 12.03.2024\n\n05.03.2024\nTotal 10,00",
            // The same label with another date (a preceding invoice's).
            "Invoice date: 12.03.2024\nTotal 10,00\nCorrects invoice 17, invoice date: 01.02.2024",
        ] {
            let (date, confidence) = issue_date(rivalled);
            assert_eq!(date.as_deref(), Some("2024-03-12"), "{rivalled}");
            assert!(confidence < 0.8, "{rivalled}: {confidence}");
        }
        // The title line's `Nr. ... vom` names the issue date itself: other dates do not contest it.
        let (date, confidence) = issue_date("Rechnung Nr. 5 vom 12.03.2024\n\n05.03.2024");
        assert_eq!((date.as_deref(), confidence >= 0.8), (Some("2024-03-12"), true));
    }

    #[test]
    fn issue_and_due_dates_are_weighed_against_each_other_and_the_terms() {
        let confidences = |text: &str| {
            let invoice = extract(text);
            ["issue_date", "due_date"].map(|f| invoice.confidence.get(f).copied().unwrap_or(0.0))
        };
        // Due 30 days after issue, and the terms say 30 days: each confirms the other.
        let [issue, due] = confidences("Date: 12.03.2024\nDue date: 11.04.2024\nPayment within 30 days");
        assert!(issue >= 0.9 && due >= 0.9, "{issue} {due}");
        // A due date before the issue date: one of them is not what it seems.
        let [issue, due] = confidences("Invoice date: 12.03.2024\nDue date: 01.03.2024");
        assert!(issue <= 0.5 && due <= 0.5, "{issue} {due}");
    }

    #[test]
    fn grand_totals_prefer_the_gross_total() {
        check("Subtotal 573.00\n19% VAT 108.87\nTotal € Incl. VAT 681.87", "grand_total", Some("681.87"));
        check("Gesamtbetrag: 80,65 EUR\nAusstehender Betrag: 0,00 EUR", "grand_total", Some("80.65"));
        check("Positionen netto 804,35 €\nEndsumme 963,12 €", "grand_total", Some("963.12"));
        check("Imponibile 100,00\nIVA 22,00\nTotale documento 122,00", "grand_total", Some("122.00"));
        check("Base imponible 100,00\nIVA 21,00\nImporte total 121,00", "grand_total", Some("121.00"));
        check("Total $144.00\nAmount Due (USD) $0.00", "grand_total", Some("144.00"));
        check("Total HT 100,00 €\nTVA 20,00 €\nTotal TTC 1 200,00 €", "grand_total", Some("1200.00"));
        check("Total excl. VAT 100.00\nTotal VAT 19.00", "grand_total", None);
        check("Amount due\n1,234.56 USD", "grand_total", Some("1234.56"));
    }

    #[test]
    fn currencies_from_codes_and_symbols() {
        check("Total € Incl. VAT 681.87", "currency", Some("EUR"));
        check("Total: 123.45 EUR", "currency", Some("EUR"));
        check("Total $144.00 (USD)", "currency", Some("USD"));
        check("Grand total ₹ 1,200.00", "currency", Some("INR"));
        check("Total £12.00", "currency", Some("GBP"));
        check("Total CA$ 12.00", "currency", None);
        check("Total 12.00", "currency", None);
        // After a currency label, any ISO 4217 code, the euro's predecessors included; two labels that
        // disagree settle nothing, and a code the standard does not know is no currency.
        check("Währung                DEM\nTotal Amount 37.763,70", "currency", Some("DEM"));
        check("Currency: ISK\nTotal 12.00", "currency", Some("ISK"));
        check("Currency: ISK\nCurrency: RUB\nTotal 12.00", "currency", None);
        check("Currency: ABC\nTotal 12.00", "currency", None);
        check("Total DEM 12.00", "currency", None);
    }

    #[test]
    fn seller_names_from_domains_legal_forms_and_labels() {
        check("Adatum Corporation  CRONUS DE\nEmail info@cronus.com", "seller", Some("CRONUS DE"));
        check("Calendly LLC\n88 N Avondale Rd", "seller", Some("Calendly LLC"));
        // Contact details beside a letterhead's name with no gap left between them are not part of it; a word
        // like `Web` inside a name is.
        check("Die Firma Tel: +49 (030) 41092-0\nemail: info@firma.de", "seller", Some("Die Firma"));
        check("Acme Ltd Fax 030 1234\nwww.acme.co.uk", "seller", Some("Acme Ltd"));
        check("Amazon Web Services, Inc.\n410 Terry Ave North", "seller", Some("Amazon Web Services, Inc."));
        // A street line is no name, whatever it shares with the document's domain.
        check("35 rue de la Paix, Acme line 2\n75002 PARIS\nmoi@acme.fr", "seller", None);
        check("Acmestraße 12\n80333 München\ninfo@acme.de", "seller", None);
        // The first name under a seller heading is the seller's, with the line it runs on to above the street.
        check("Seller\n\nAcme Trading\n12 Main Street\nLondon SW1A 1AA", "seller", Some("Acme Trading"));
        check(
            "Verkäufer:\n\nMVM Musterhafter\nVersicherungsverein Musterstadt\n\nMusterstr. 12\nDE 12345 Musterstadt",
            "seller",
            Some("MVM Musterhafter Versicherungsverein Musterstadt"),
        );
        check("Verkäufer\nName: Lieferant GmbH\nVertrieb Süd\nDE 12345 Musterstadt", "seller", Some("Lieferant GmbH"));
        check("Verkäufer\nName: Lieferant GmbH\nKäufer\nName: Kunde AG", "seller", Some("Lieferant GmbH"));
        // The seller's tax representative is another party.
        check("Représentant fiscal\nAcme Rep SARL\n\nAcme SARL\nmoi@acme.fr", "seller", Some("Acme SARL"));
        // A legal form set apart by a wide gap ends the name before it; alone it is no name.
        check("                    Bei Spiel  GmbH\n                    Ecke 12", "seller", Some("Bei Spiel GmbH"));
        check("GmbH\nEcke 12", "seller", None);
        check("Bill to:\nBuyer GmbH\n\nwww.seller-shop.de\nSeller Shop GmbH", "seller", Some("Seller Shop GmbH"));
        check("Issuer: Basic Test", "seller", Some("Basic Test"));
        check("Au bon moulin SARL - 1 chemin - 84340 Malaucène\nhttp://www.aubonmoulin.fr\nAdresse de livraison\nMa jolie boutique\nsav@majolieboutique.net", "seller", Some("Au bon moulin SARL"));
        check(
            "Verkäufer\nGlobale Nummer: 4000001123452\nName: Lieferant GmbH\nKäufer\nName: Kunden AG",
            "seller",
            Some("Lieferant GmbH"),
        );
        check("Rechnung an: Kunde GmbH", "seller", None);
        // A window envelope: the return address names the sender; the address under it is the buyer's.
        check(
            "shop.example | Somestreet 42 | 08155 Some city\n\nKunde AG\nFeldweg 3\n54321 Dorf",
            "seller",
            Some("shop.example"),
        );
        check(
            "Händler GmbH · Hauptstr. 4 · 53229 Bonn\nKunde AG\nFeldweg 3\n54321 Dorf\nKunde AG",
            "seller",
            Some("Händler GmbH"),
        );
        // A name printed in the sender line and again in the letterhead beats a product line that only
        // shares the web address's stem; a heading printed twice is still no name.
        check(
            "Acme Tools GmbH – Hauptstr. 4 – 53229 Bonn\nPlan Pro ACME1 -\nAcme Tools GmbH\nwww.acme1.de",
            "seller",
            Some("Acme Tools GmbH"),
        );
        check("Lieferschein\nLieferschein", "seller", None);
        // A logo's lower-case wordmark and the name in the letterhead score alike: the letterhead's wins.
        check("cronus\nAdatum Corporation  CRONUS DE\nEmail info@cronus.com", "seller", Some("CRONUS DE"));
        // The company above an attention line is the addressee; the sender is the other one.
        check("Strategic Corp\nT.a.v. J. Jansen\nFakestraat 46", "seller", None);
        check(
            "Nordwind GmbH\nz. Hd. Frau Berg\nHafenweg 2\n\nSüdlicht AG\nwww.suedlicht.de",
            "seller",
            Some("Südlicht AG"),
        );
        check("Strategic Corp\nFakestraat 46", "seller", Some("Strategic Corp"));
        check("Thank you for your order", "seller", None);
    }

    #[test]
    fn order_and_buyer_references_after_their_labels() {
        let refs = |text: &str| {
            let invoice = extract(text);
            (invoice.order_reference, invoice.buyer_reference)
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            refs("Bestellung: 2018-471331\nLeitwege-ID: 04011000-12345-34"),
            (some("2018-471331"), some("04011000-12345-34"))
        );
        assert_eq!(refs("Your order AB321"), (some("AB321"), None));
        assert_eq!(refs("Votre référence PO445"), (None, some("PO445")));
        assert_eq!(refs("Order No.  Shipment Method\n101628     UPS"), (some("101628"), None));
        // In a sentence, a date, or a label without a value: none.
        assert_eq!(refs("Rechnung gemäß Bestellung Nr. 2018-471331 vom 01.03.2018."), (None, None));
        assert_eq!(refs("Bestell-Datum : 01.08.2018"), (None, None));
        assert_eq!(refs("Your Reference  Salesperson\n  Detlef Hembrock"), (None, None));
    }

    #[test]
    fn document_types_from_the_title() {
        let code = |text: &str| extract(text).type_code;
        assert_eq!(code("Invoice 103767\nTotal 10.00").as_deref(), Some("380"));
        assert_eq!(code("Rechnung # RE-20171118/506 von 18.11.2017").as_deref(), Some("380"));
        assert_eq!(code("Handelsrechnung (380) 05.06.2018  Nr. 471102").as_deref(), Some("380"));
        assert_eq!(code("Mietrechnung (387) 01.10.2018").as_deref(), Some("387"));
        assert_eq!(code("Gutschrift (Selbst ausgestellte Rechnung) (389) 31.10.2018").as_deref(), Some("389"));
        assert_eq!(code("Rechnungskorrektur Nr. RK21012345 vom 16.09.2018").as_deref(), Some("384"));
        assert_eq!(code("Avoir AV-2017-0005\nTotal TTC 10,00 €").as_deref(), Some("381"));
        // Not an invoice's title: a booking aid, an insurer's invoice, a label, a code not of invoices.
        assert_eq!(code("Buchungshilfe - KEINE Rechnung Nr. 471102 vom 13.11.2019"), None);
        assert_eq!(code("Rechnung des Versicherers Nr. 01.234.567.8-2018-1 vom"), None);
        assert_eq!(code("Rechnungsnummer: 2014-03"), None);
        assert_eq!(code("Rechnung (999) 01.01.2020"), None);
        // The title in a cell of its line, its number in the next.
        assert_eq!(code("LOGO  ACME        FACTURE N° :        F20220023").as_deref(), Some("380"));
        assert_eq!(code("Acme Ltd        Invoice        Page 1").as_deref(), Some("380"));
        assert_eq!(code("Acme Ltd        Invoice date        1 May 2024"), None);
    }

    #[test]
    fn credit_notes_get_their_type_and_positive_amounts() {
        let invoice = extract("Avoir AV-2017-0005\nTotal HT -218,48 €\nTotal taxes -14,99 €\nTotal TTC -233,47 €");
        assert_eq!(invoice.type_code.as_deref(), Some("381"));
        assert_eq!(invoice.totals.grand_total.map(|d| d.to_string()).as_deref(), Some("233.47"));
        assert_eq!(invoice.totals.tax_total.map(|d| d.to_string()).as_deref(), Some("14.99"));
        // A corrected invoice keeps its negative amounts and gets its own type, not the credit note's.
        let invoice = extract("Rechnungskorrektur 471102\nNettobetrag -7,67 €\nUSt -1,12 €\nGesamtbetrag -8,79 €");
        assert_eq!(invoice.type_code.as_deref(), Some("384"));
        assert_eq!(invoice.totals.grand_total.map(|d| d.to_string()).as_deref(), Some("-8.79"));
    }

    #[test]
    fn the_totals_are_trusted_as_far_as_their_sums_close() {
        let confidence = |text: &str, field: &str| extract(text).confidence.get(field).copied();
        // Net plus VAT is the total: all three confirmed.
        let closing = "Net amount 100.00 EUR\nVAT 19% 19.00 EUR\nTotal amount 119.00 EUR";
        assert_eq!(extract(closing).totals.grand_total.map(|d| d.to_string()).as_deref(), Some("119.00"));
        for field in ["totals.grand_total", "totals.tax_basis_total", "totals.tax_total"] {
            assert!(confidence(closing, field).is_some_and(|c| c >= 0.9), "{field}: {:?}", confidence(closing, field));
        }
        // A lone total: nothing checks it, so it stays below the threshold.
        let lone = "Invoice 7\nTotal amount 119.00 EUR";
        assert!(
            confidence(lone, "totals.grand_total").is_some_and(|c| c < 0.8),
            "{:?}",
            confidence(lone, "totals.grand_total")
        );
        // Net plus VAT is not the total: the totals block keeps the amounts that add up, so the total stands
        // alone, and is not trusted.
        let broken = "Net amount 100.00 EUR\nVAT 19% 19.00 EUR\nTotal amount 129.00 EUR";
        assert!(
            confidence(broken, "totals.grand_total").is_some_and(|c| c < 0.8),
            "{:?}",
            confidence(broken, "totals.grand_total")
        );
    }
}
