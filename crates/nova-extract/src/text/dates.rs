//! The issue date (BT-2) and the payment due date (BT-9), and how far the two confirm each other.
//!
//! The issue date is the one the title line dates the invoice's number with (`Rechnung Nr. 5 vom ...`), else
//! the date after an issue-date label, else after a bare `Date`, else the first date printed without a word
//! that makes it another kind of date. The due date is the date after a due-date label that is not an
//! early-payment discount's deadline, on its line or in its column below.

use std::sync::LazyLock;

use chrono::NaiveDate;
use nova_core::Invoice;
use regex::Regex;

use super::doc::Text;
use super::numbers::{title_dated_number, NUMBER_LABEL, NUMBER_THEN_DATE, TITLE_THEN_NUMBER_LABEL};
use super::pattern::regex;
use crate::parse::{find_dates, is_order_ambiguous};

// ---------------------------------------------------------------------------------------------------------
// Issue date

/// Labels that name the issue date itself.
static STRONG_DATE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(?:invoice\s*date|date\s*of\s*(?:issue|invoice)|issue\s*date|date\s*issued|issued\s*(?:on|date)?|billing\s*date|rechnungsdatum|belegdatum|ausstellungsdatum|date\s*(?:de\s*(?:la\s*)?)?facture|date\s*d'émission|date\s*d'emission|factuurdatum|datum\s*factuur|fecha\s*(?:de\s*(?:la\s*)?)?(?:factura|emisi[óo]n|expedici[óo]n)|data\s*(?:della\s*)?fattura|data\s*(?:di\s*)?emissione|data\s*wystawienia|data\s*faktury)\b",
    )
});
/// `Date`, `Datum`: the issue date unless something nearby says otherwise.
static WEAK_DATE_LABEL: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)\b(?:date|datum)\b"));
/// Words that make a date some other date (due, delivery, order, a period or its start or end, payment), or the date of something
/// other than the invoice (a print, a template's or a program's version, the preceding invoice that a
/// correction or credit note refers to: EN 16931's BT-26).
static OTHER_DATE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:due|fällig|faellig|échéance|echeance|payment|paid|zahl|deliver|liefer|leistung|shipment|ship|period|zeitraum|order|bestell|auftrag|next|expir|valid|start|end|from|until|bis|commande|livraison|print|druck|version|d[ée]but|\bfin\b|inicio|\bfine\b|p[ée]riode|periodo|associ|preceding|précédent|precedent|vorherig|ursprüngl|referenced|corrected\s*invoice|original\s*invoice|fattura\s*(?:di\s*)?riferimento|factura\s*rectificada)",
    )
});

/// The first half of a label shared by two kinds of date, just before the second: `Liefer- und `,
/// `Leistungs- und `.
static SHARED_LABEL: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)\p{L}-\s*(?:und|u\.|and|et|y|e|en|i)\s*$"));

/// The issue date: the one the title line gives the invoice's number (`Nr. 5 vom ...`), else after an
/// issue-date label, else after a bare `Date`, else the first date printed. A label alone is held below the
/// `auto` threshold while the document prints another date without saying what it is.
pub(super) fn issue_date(doc: &Text<'_>) -> Option<(NaiveDate, f32)> {
    if let Some(titled) = dated_number_line(doc) {
        return Some(titled);
    }
    let (date, confidence) = labelled_date(doc, &STRONG_DATE_LABEL, 0.9)
        .or_else(|| labelled_date(doc, &WEAK_DATE_LABEL, 0.75))
        .or_else(|| first_unlabelled_date(doc))?;
    let rival = unexplained_dates(doc).any(|other| other != date);
    Some((date, if rival { confidence.min(0.75) } else { confidence }))
}

/// The dates the document prints without saying what they are: not on a line that names another kind of
/// date (due, delivery, order, period, print) or a due date's label, not one end of a period
/// (`Apr 13 – May 13, 2023`, `01.03. bis 31.03.2024`), not a timestamp (a date with a clock time).
fn unexplained_dates<'a>(doc: &'a Text<'_>) -> impl Iterator<Item = NaiveDate> + 'a {
    doc.lines.iter().filter(|line| !OTHER_DATE.is_match(line) && !DUE_DATE_LABEL.is_match(line)).flat_map(|line| {
        find_dates(line, doc.order).into_iter().filter_map(|found| {
            let before = &line[..found.start];
            let after = &line[found.end..];
            let period = PERIOD_BEFORE.is_match(before) || PERIOD_AFTER.is_match(after);
            (!period && !TIME_AFTER_DATE.is_match(after)).then_some(found.date)
        })
    })
}

/// The date introduced by `vom`/`du`/`dated` right after the invoice number on its title line.
fn dated_number_line(doc: &Text<'_>) -> Option<(NaiveDate, f32)> {
    doc.lines.iter().enumerate().find_map(|(i, line)| {
        if let Some((_, date)) = title_dated_number(doc, i) {
            return Some((date, 0.85));
        }
        let label = NUMBER_LABEL.find(line).or_else(|| TITLE_THEN_NUMBER_LABEL.find(line))?;
        let rest = &line[label.end()..];
        let dated = NUMBER_THEN_DATE.find(rest).filter(|m| m.start() <= 40)?;
        // Columns of a text layer are often set apart by runs of spaces: `Nr. 4711   vom   15.11.2025`.
        let after = rest[dated.end()..].trim_start();
        let found = find_dates(after, doc.order).into_iter().next().filter(|f| f.start == 0)?;
        Some((found.date, 0.85))
    })
}

/// The first date right after a label (or in the same column below it) whose label is not qualified as
/// another kind of date. Its confidence is the label's, less where the date stands, and is held below the
/// `auto` threshold when the evidence is split: the same kind of label gives other dates elsewhere (a
/// preceding invoice's date, a table of several documents).
fn labelled_date(doc: &Text<'_>, label: &Regex, confidence: f32) -> Option<(NaiveDate, f32)> {
    let mut found: Vec<(NaiveDate, f32)> = Vec::new();
    for (i, line) in doc.lines.iter().enumerate() {
        for m in label.find_iter(line) {
            if let Some(date) = date_after_label(doc, i, m) {
                found.push((date.0, confidence - date.1));
                break;
            }
        }
    }
    let (date, confidence) = *found.first()?;
    let split = found.iter().any(|(other, _)| *other != date);
    Some((date, if split { confidence.min(0.6) } else { confidence }))
}

/// The date a label on line `i` introduces, if it is not qualified as another kind of date, with how much
/// less sure its place makes it: right after it (0), in the same column below (0.1), or just before a label
/// that ends the line (0.2). A numeric date whose day/month order the document did not settle (`03/04/2025`)
/// is refused: it stays `None` rather than risk the wrong one of two dates.
fn date_after_label(doc: &Text<'_>, i: usize, m: regex::Match<'_>) -> Option<(NaiveDate, f32)> {
    let line = doc.lines[i];
    let before = &line[floor_char_boundary(line, m.start().saturating_sub(16))..m.start()];
    // `Liefer- und Rechnungsdatum`: a label that names the issue date together with another is still the
    // issue date's.
    let shared = SHARED_LABEL.is_match(before);
    if (OTHER_DATE.is_match(before) && !shared) || OTHER_DATE.is_match(m.as_str()) {
        return None;
    }
    let settled = |printed: &str| doc.order_known || !is_order_ambiguous(printed);
    let rest = &line[m.end()..];
    // The date must follow the label closely, not be the next column's value.
    if let Some(found) = find_dates(rest, doc.order).into_iter().next().filter(|f| f.start <= 24) {
        if !OTHER_DATE.is_match(&rest[..found.start]) {
            return settled(&rest[found.start..found.end]).then_some((found.date, 0.0));
        }
    }
    let below = doc.value_below(i, m.start()).and_then(|v| Some((find_dates(v, doc.order).into_iter().next()?, v)));
    if let Some((found, v)) = below {
        return settled(&v[found.start..found.end]).then_some((found.date, 0.1));
    }
    // A label that ends its line right after a date: a right-aligned value drawn before its label.
    if rest.trim_matches([':', ' ']).is_empty() {
        let before = line[..m.start()].trim_end();
        if let Some(found) = find_dates(before, doc.order).into_iter().find(|f| f.end == before.len()) {
            return settled(&before[found.start..found.end]).then_some((found.date, 0.2));
        }
    }
    None
}

/// What joins the two ends of a period (`01.03.2024 - 31.03.2024`, `Dec 21, 2022 – Jan 21, 2023`, `1/3/24 to
/// 31/3/24`, `du 01/03/2024 au 31/03/2024`, `01.03. bis 31.03.2024`), just before a date that ends one or just
/// after a date that starts one.
static PERIOD_BEFORE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)(?:[-–—]|\bto|\btill|\buntil|\bbis|\bau|\bal|\btot|\bdo)\s*$"));
static PERIOD_AFTER: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)^\s*(?:[-–—]|to|till|until|bis|au|al|tot|do)(?:\s|$)"));

/// Weighs the issue and due dates against each other: a due date before the issue date means one of them
/// is not what it seems (both doubted); a due date that many days after the issue date that the document's
/// payment terms state confirms both.
pub(super) fn dates_confidence(doc: &Text<'_>, invoice: &mut Invoice) {
    let (Some(issued), Some(due)) = (invoice.issue_date, invoice.due_date) else { return };
    let days = (due - issued).num_days();
    let verdict = if days < 0 {
        Some(false)
    } else {
        let stated = doc.lines.iter().flat_map(|line| crate::parse::term_days(line)).any(|term| term == days);
        stated.then_some(true)
    };
    for field in ["issue_date", "due_date"] {
        if let Some(confidence) = invoice.confidence.get_mut(field) {
            match verdict {
                Some(false) => *confidence = confidence.min(0.5),
                Some(true) if *confidence >= 0.6 => *confidence = confidence.max(0.9),
                _ => {}
            }
        }
    }
}

/// Without any label: the first date in the document on a line that does not name another kind of date.
/// Invoices print their date near the top; weaker evidence, so a lower confidence.
fn first_unlabelled_date(doc: &Text<'_>) -> Option<(NaiveDate, f32)> {
    let dates: Vec<(NaiveDate, bool)> = doc
        .lines
        .iter()
        .filter(|line| !OTHER_DATE.is_match(line))
        .filter_map(|line| {
            let found = find_dates(line, doc.order).into_iter().next()?;
            Some((found.date, TIME_AFTER_DATE.is_match(&line[found.end..]), &line[found.start..found.end]))
        })
        // Without a label, and with the day/month order only guessed, a date like 11/5/23 is a coin toss:
        // better none than a wrong one.
        .filter(|(_, _, printed)| doc.order_known || !is_order_ambiguous(printed))
        .map(|(date, timestamp, _)| (date, timestamp))
        .collect();
    // A date with a clock time is a timestamp (a browser's print header, a log line), not the day of issue.
    dates.iter().find(|(_, timestamp)| !timestamp).map(|(date, _)| (*date, 0.5))
}

/// A clock time right after a date: `23.06.23, 11:09`, `2024-03-01 14:22:05`.
static TIME_AFTER_DATE: LazyLock<Regex> = LazyLock::new(|| regex(r"^,?\s{1,3}\d{1,2}:\d{2}\b"));

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

// ---------------------------------------------------------------------------------------------------------
// Due date

/// Labels of the payment due date: `Due date`, `Payment due`, `Pay by`, `Fälligkeitsdatum`, `Zahlbar bis`,
/// `Date d'échéance`, `Fecha de vencimiento`, `Vervaldatum`, `Data di scadenza`, `Termin płatności`.
static DUE_DATE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:due\s*(?:date|on|by)|payment\s*due|\bdate\s?due\b|pay(?:able)?\s*(?:by|before|until)|(?:remit|payment)\s*(?:by|before|until)|(?:payable|zahlbar)\b[^.,;:]{0,40}?\b(?:by|until|bis(?:\s*zum)?)\b|fällig(?:keitsdatum|\s*am|\s*bis|\s*zum)?|faellig|zahlbar\s*(?:bis|am)|zahlungsziel|(?:überweisen|zahlen)\s*sie\s*(?:bitte\s*)?bis(?:\s*zum)?|date\s*(?:d'|de\s*l')\s*échéance|échéance|echeance|payer\s*avant\s*le|vencimiento|vervaldatum|vervaldag|te\s*betalen\s*(?:voor|vóór)|scadenza|termin\s*płatności|termin\s*zapłaty)",
    )
});

/// Early-payment discount terms: `Skonto`, `discount`, `escompte`, `sconto`, `descuento`, `korting`,
/// `rabat`.
static DISCOUNT: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)(?:skonto|discount|escompte|sconto|descuento|korting|rabat)"));

/// A word that names some date in a header (`Lieferdatum`, `Invoice date`, `Fecha`, `Data`).
static DATE_WORD: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)(?:date|datum|fecha|\bdata\b|termin)"));

/// The date right after a due-date label, or in the same column below it.
pub(super) fn due_date(doc: &Text<'_>) -> Option<(NaiveDate, f32)> {
    for (i, line) in doc.lines.iter().enumerate() {
        for m in DUE_DATE_LABEL.find_iter(line) {
            let rest = &line[m.end()..];
            if let Some(found) = find_dates(rest, doc.order).into_iter().next().filter(|f| f.start <= 24) {
                // `Pay by 14.02. for a 2% discount`: the rest of the clause says it is a discount's deadline.
                let clause = rest[found.end..].split([',', ';']).next().unwrap_or_default();
                if !DISCOUNT.is_match(&rest[..found.start]) && !DISCOUNT.is_match(clause) {
                    return Some((found.date, 0.85));
                }
                continue;
            }
            // Not a discount's deadline (`Bis zum 14.02. 2 % Skonto`): paying early is not the due date.
            let below = doc
                .value_below(i, m.start())
                .filter(|_| doc.next_nonblank(i).is_none_or(|next| !DISCOUNT.is_match(doc.lines[next])))
                .and_then(|v| find_dates(v, doc.order).into_iter().next());
            if let Some(found) = below {
                return Some((found.date, 0.75));
            }
            // A header row whose only date label is this one, over a row whose cells do not line up with it
            // (an empty cell, a wrapped one) and that holds one date: that date.
            let others = format!("{}{}", &line[..m.start()], &line[m.end()..]);
            if others.trim().is_empty() || !find_dates(rest, doc.order).is_empty() {
                continue;
            }
            if DATE_WORD.is_match(&others) {
                continue;
            }
            if let Some(next) = doc.next_nonblank(i) {
                if let [only] = find_dates(doc.lines[next], doc.order)[..] {
                    if !DISCOUNT.is_match(doc.lines[next]) {
                        return Some((only.date, 0.5));
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_dates_after_their_labels() {
        let due = |text: &str| due_date(&Text::new(text)).map(|(d, _)| d.to_string());
        assert_eq!(due("Date d'échéance 13/12/2017").as_deref(), Some("2017-12-13"));
        assert_eq!(due("Bitte überweisen Sie bis zum 09.12.2017.").as_deref(), Some("2017-12-09"));
        assert_eq!(due("Due Date\n03/03/2026").as_deref(), None, "no column below a lone label");
        assert_eq!(due("Invoice date  Due date\n01.02.2026    03.03.2026").as_deref(), Some("2026-03-03"));
        assert_eq!(due("Please remit until 2019-07-01.").as_deref(), Some("2019-07-01"));
        assert_eq!(
            due("Zahlbar innerhalb 30 Tagen netto bis 04.04.2020, 3% Skonto innerhalb 10 Tagen bis 15.03.2020.")
                .as_deref(),
            Some("2020-04-04")
        );
        // A header whose cells the values do not line up with: the one date below is the due date's.
        assert_eq!(
            due("Your Reference  Salesperson  Due Date  Payment Terms\n  Detlef Hembrock  March 3, 2026  14 days")
                .as_deref(),
            Some("2026-03-03")
        );
        assert_eq!(due("Beschreibung Fälligkeit Teilzahlung\n30.11.2018").as_deref(), Some("2018-11-30"));
        assert_eq!(due("Beschreibung  Teilzahlung  Fälligkeit\n30.11.2018").as_deref(), Some("2018-11-30"));
        // With another date's label in the header, a lone date below may be that one.
        assert_eq!(due("Lieferdatum  Fälligkeit  Betrag\n30.11.2018").as_deref(), None);
        // The deadline of an early-payment discount below the header is not the due date.
        assert_eq!(
            due("Beschreibung Fälligkeit Teilzahlung\nBis zum 14.02.2025 erhalten Sie 2 % Skonto").as_deref(),
            None
        );
        assert_eq!(due("Description  Due  Amount\nPay by 14.02.2025 for a 2% discount").as_deref(), None);
        assert_eq!(due("Invoice date 01.02.2026").as_deref(), None);
    }
}
