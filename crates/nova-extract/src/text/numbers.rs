//! The invoice number (BT-1) and the references the buyer asked to be quoted: its purchase order (BT-13)
//! and its own reference (BT-10).
//!
//! Each is a token of the right shape ([`number_like`]: a digit, no date, not too long) after its label, on
//! the label's line or in the same column of the next one. The invoice number may also come from the
//! document's title line: `Invoice 103767`, or `Rechnung Nr. 5 vom 16.09.2019`, where the date after the
//! number ([`NUMBER_THEN_DATE`]) says it is the document's own.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;

use super::doc::{Text, CELL_GAP};
use super::pattern::regex;
use crate::parse::{find_dates, DayMonthOrder};

/// `Invoice number`, `Invoice No.`, `Invoice #`, `Rechnungsnummer`, `Rechnungs-Nr.`, `Facture n°`,
/// `Numéro de facture`, `N° de facture`, `Factuurnummer`, `Faktura nr`, `Belegnummer`.
pub(super) static NUMBER_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(?:(?:invoice|inv|bill|receipt|credit\s*note|rechnungs?|gutschrift|beleg|facture|avoir|factuur|faktura|factura|fattura)\s*-?\s*(?:number|nummer|numéro|número|numero|num\.?|no\.?|nr\.?|n°|nº|n\.|#|id)|(?:numéro|número|numero|numer|n°|nº|no\.?|n\.)\s*(?:de\s*(?:la\s*)?|della\s*)?(?:facture|factura|fattura|faktury|l'avoir|avoir))(?:[^\p{L}\p{N}\n]|$)",
    )
});
/// A document title, then only dates, codes and punctuation, then `Nr.`/`No.`/`#`:
/// `Handelsrechnung (380) 05.06.2018   Nr. 471102`.
pub(super) static TITLE_THEN_NUMBER_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b\p{L}*(?:rechnung|invoice|facture|gutschrift|avoir)\p{L}*(?:\s\p{Ll}+)?[^\p{L}\n]{0,40}(?:nr\.|no\.|n°|#)",
    )
});
/// A line that starts with the document title followed directly by its number: `Invoice 103767`,
/// `Rechnung RE-2024/17`; a wide gap may set another cell apart after it (a logo's text beside the title).
static TITLE_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"^\s*(?i:invoice|tax\s+invoice|rechnung|facture|credit\s+note|gutschrift|avoir)\s+([A-Za-z0-9][A-Za-z0-9/_.\-]*)(?:\s*$|\s{3,}\S)",
    )
});
/// A line opening with the document's title that gives, further on, `Nr. X`, to be followed by its date
/// ([`NUMBER_THEN_DATE`]): `Rechnung des Versicherers (575) Nr. 00.123.456.7-2018-1 vom 11.03.2018`. The date
/// after the number says it is the document's own (a customer number is not dated), however many words stand
/// between title and `Nr.`.
static TITLE_DATED_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\s*\p{L}*(?:rechnung|invoice|facture|gutschrift|avoir|factura|fattura|factuur|faktura)\p{L}*\b.{0,60}?\b(?:nr\.?|no\.?|n°|#)\s*([A-Za-z0-9][A-Za-z0-9/_.\-]*)",
    )
});

/// `Rechnung Nr. 5 vom 16.09.2019`, `Facture n° 12 du 3 mars 2024`, `Invoice No. 7 dated 1 May 2024`,
/// `Factura 7 del 3/5/2024`, `Faktura nr 7 z dnia 3.05.2024`; or at the end of the line, its date drawn
/// before it.
pub(super) static NUMBER_THEN_DATE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)\s(?:vom|von|du|dated|of|del|van|z\s+dnia|de\s+fecha)(?:\s|$)"));

/// The number and date of a [`TITLE_DATED_NUMBER`] line (line `i`): the date right after `vom`, or, when
/// `vom` ends the line, the date a text layer drew before `Nr.` (a right-aligned value drawn before its
/// label, `Rechnung des Versicherers (575) 11.03.2018   Nr. 00.123.456.7-2018-1   vom`), else the date that
/// starts the next line (the title wrapped after `vom`).
pub(super) fn title_dated_number(doc: &Text<'_>, i: usize) -> Option<(String, NaiveDate)> {
    let (line, order) = (doc.lines[i], doc.order);
    let number = TITLE_DATED_NUMBER.captures(line)?.get(1)?;
    let rest = &line[number.end()..];
    let connector = NUMBER_THEN_DATE.find(rest).filter(|m| rest[..m.start()].trim().is_empty())?;
    let after = line[number.end() + connector.end()..].trim_start();
    let starting = |text: &str| find_dates(text, order).into_iter().next().filter(|f| f.start == 0).map(|f| f.date);
    let date = if after.is_empty() {
        find_dates(&line[..number.start()], order)
            .pop()
            .map(|f| f.date)
            .or_else(|| starting(doc.lines[doc.next_nonblank(i)?].trim_start()))?
    } else {
        starting(after)?
    };
    Some((number_like(number.as_str(), order)?, date))
}
/// The invoice-number token itself.
static NUMBER_TOKEN: LazyLock<Regex> = LazyLock::new(|| regex(r"^[\s:#.\-—–]*([A-Za-z0-9][A-Za-z0-9/_.\-]*)"));

/// The first labelled number from the top: the header comes before footers that quote it again ("please
/// give document number ... when you write").
pub(super) fn invoice_number(doc: &Text<'_>) -> Option<(String, f32)> {
    for (i, line) in doc.lines.iter().enumerate() {
        for label in NUMBER_LABEL.find_iter(line) {
            let rest = &line[label.end()..];
            if let Some(number) = NUMBER_TOKEN.captures(rest).and_then(|c| number_like(&c[1], doc.order)) {
                return Some((number, 0.9));
            }
            if let Some(number) = doc.value_below(i, label.start()).and_then(|v| number_like(v, doc.order)) {
                return Some((number, 0.7));
            }
            // A label that ends its line after a value: a right-aligned value drawn before its label.
            if rest.trim_matches([':', ' ']).is_empty() {
                let before = line[..label.start()].trim_end();
                if let Some(number) = before.rsplit(' ').next().and_then(|v| number_like(v, doc.order)) {
                    return Some((number, 0.6));
                }
            }
        }
        if let Some(m) = TITLE_THEN_NUMBER_LABEL.find(line) {
            if let Some(number) = NUMBER_TOKEN.captures(&line[m.end()..]).and_then(|c| number_like(&c[1], doc.order)) {
                return Some((number, 0.8));
            }
        }
    }
    if let Some((number, _)) = (0..doc.lines.len()).find_map(|i| title_dated_number(doc, i)) {
        return Some((number, 0.85));
    }
    doc.lines
        .iter()
        .find_map(|line| TITLE_NUMBER.captures(line).and_then(|c| number_like(&c[1], doc.order)))
        .map(|number| (number, 0.75))
}

/// The buyer's purchase order (BT-13): `Order No.`, `PO number`, `Your order`, `Bestellung`, `Bestell-Nr.`,
/// `Ihre Auftragsnummer`, `N° de commande`, `Pedido`, `Bestelnummer`, `Ordine`, `Zamówienie`.
pub(super) static ORDER_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:^|\s{2}|\t)\s*(?:purchase\s*order(?:\s*(?:no\.?|number|#|ref(?:erence)?))?|p\.?\s?o\.?\s*(?:no\.?|number|#)|order\s*(?:no\.?|number|#|ref(?:erence)?)|your\s+order(?:\s*(?:no\.?|number))?|bestellung(?:\s*nr\.?)?|bestell-?nr\.?|bestellnummer|ihre\s+bestellung|ihre\s+auftragsnummer|n[°o]\s*(?:de\s+)?commande|bon\s+de\s+commande|votre\s+commande|n[úu]mero\s+de\s+pedido|pedido|su\s+pedido|bestelnummer|uw\s+bestelling|(?:n\.\s*|numero\s+)?ordine|nr\s+zam[óo]wienia|zam[óo]wienie)",
    )
});
/// The reference the buyer asked to be quoted (BT-10): `Buyer reference`, `Your reference`, `Leitweg-ID`,
/// `Ihr Zeichen`, `Votre référence`, `Su referencia`, `Uw referentie`, `Vostro riferimento`.
pub(super) static BUYER_REFERENCE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:^|\s{2}|\t)\s*(?:buyer\s*reference|your\s+ref(?:erence|\.)?|leitwege?-?id|käuferreferenz|ihr\s+zeichen|ihre\s+referenz|votre\s+r[ée]f[ée]rence|v/r[ée]f\.?|su\s+referencia|uw\s+referentie|uw\s+kenmerk|vostro\s+riferimento|wasz\s+znak)",
    )
});

/// A reference after its label, the label opening a cell (not inside a sentence: `gemäß Bestellung Nr. 5`): on
/// its line, or in the same column of the next line.
pub(super) fn labelled_reference(doc: &Text<'_>, label: &Regex) -> Option<(String, f32)> {
    for (i, line) in doc.lines.iter().enumerate() {
        let Some(m) = label.find(line) else { continue };
        // A whole word: `Order` is no label in `Orders`.
        if line[m.end()..].starts_with(char::is_alphanumeric) {
            continue;
        }
        // The rest of the label's cell (a value one gap away may be in the next cell, as in `Nr.:   4711`).
        let rest = line[m.end()..].trim_start_matches([':', ' ']);
        let own = CELL_GAP.split(&line[m.end()..]).next().unwrap_or_default().trim_matches([':', ' ']);
        if let Some(reference) = NUMBER_TOKEN.captures(rest).and_then(|c| number_like(&c[1], doc.order)) {
            return Some((reference, 0.75));
        }
        if own.is_empty() {
            if let Some(reference) = doc.value_below(i, m.start()).and_then(|v| number_like(v, doc.order)) {
                return Some((reference, 0.6));
            }
        }
    }
    None
}

/// A plausible invoice number: one token with a digit, not a date, not absurdly long.
fn number_like(token: &str, order: DayMonthOrder) -> Option<String> {
    let token = token.trim().trim_end_matches(['.', ',', ':']);
    let plausible = (1..=32).contains(&token.len())
        && !token.contains(char::is_whitespace)
        && token.chars().any(|c| c.is_ascii_digit())
        && find_dates(token, order).is_empty();
    plausible.then(|| token.to_string())
}
