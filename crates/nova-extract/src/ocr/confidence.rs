//! How well OCR read each value: the confidence the engine gave the words a field's value stands in.
//!
//! The rules find values in the laid-out text without saying where. Here each value is looked for again
//! among the words OCR read, in its printed forms, within one line and across at most [`MAX_SPAN`]
//! consecutive words: an amount as `1.234,56`, `1 234,56 €` or `-1,234.56`; a date in any notation the rules
//! read; a name, number or IBAN with case, spaces and punctuation ignored. A value printed more than once
//! counts its best reading, since one clean reading of it is enough. A value not found among the words
//! (derived by the arithmetic, or read from a text-layer page) gets no reading.
//!
//! [`factor`] turns a reading into what the rules' confidence is multiplied by: the engine's own doubt about
//! the characters is doubt about the value. Even a clean reading keeps a little doubt, the layout OCR
//! rebuilds being less sure than a text layer's, so only the rules' strongest evidence (a sum that closes, a
//! label with nothing to contest it) stays at or above the `auto` threshold on a scan.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use nova_core::Invoice;
use rust_decimal::Decimal;

use super::ReadWords;
use crate::parse::{find_dates, parse_amount, DayMonthOrder};

/// The most words one value spans: `1 234 567,89 €`, `Acme Trading Company GmbH`.
const MAX_SPAN: usize = 4;
/// Words read at least this sure (tesseract's 0 to 100) are taken as read right.
pub(crate) const CLEAN_READING: f32 = 90.0;
/// Words read less sure than this make the value doubtful whatever the rules say.
pub(crate) const POOR_READING: f32 = 70.0;

/// What a field's confidence is multiplied by, given the confidence of the words its value was read from:
/// 0.9 for a clean reading, 0.7 for a middling one, 0.5 for a poor one. A value without a reading gets
/// [`crate::OCR_CONFIDENCE_FACTOR`].
pub(crate) fn factor(reading: f32) -> f32 {
    if reading >= CLEAN_READING {
        0.9
    } else if reading >= POOR_READING {
        0.7
    } else {
        0.5
    }
}

/// The reading of each field whose value was found among the words.
pub(crate) fn read_confidences(invoice: &Invoice, words: &ReadWords) -> BTreeMap<&'static str, f32> {
    let mut read = BTreeMap::new();
    let mut put = |field: &'static str, reading: Option<f32>| {
        if let Some(reading) = reading {
            read.insert(field, reading);
        }
    };
    let seller = invoice.seller.as_ref();
    let buyer = invoice.buyer.as_ref();
    for (field, value) in [
        ("invoice_number", invoice.invoice_number.as_deref()),
        ("seller.name", seller.and_then(|p| p.name.as_deref())),
        ("seller.vat_id", seller.and_then(|p| p.vat_id.as_deref())),
        ("buyer.name", buyer.and_then(|p| p.name.as_deref())),
        ("buyer.vat_id", buyer.and_then(|p| p.vat_id.as_deref())),
        ("payment_iban", invoice.payment_iban.as_deref()),
        ("order_reference", invoice.order_reference.as_deref()),
        ("buyer_reference", invoice.buyer_reference.as_deref()),
    ] {
        put(field, value.and_then(|v| text_reading(words, v)));
    }
    for (field, value) in [("issue_date", invoice.issue_date), ("due_date", invoice.due_date)] {
        put(field, value.and_then(|v| date_reading(words, v)));
    }
    for (field, value) in invoice.totals.by_path() {
        put(field, value.and_then(|v| amount_reading(words, v)));
    }
    read
}

/// The best reading among the spans of words that `is_value` accepts, joined by single spaces.
fn best_reading(words: &ReadWords, is_value: impl Fn(&str) -> bool) -> Option<f32> {
    let mut best: Option<f32> = None;
    for line in &words.0 {
        for start in 0..line.len() {
            let mut joined = String::new();
            let mut reading = f32::MAX;
            for (word, confidence) in line.iter().skip(start).take(MAX_SPAN) {
                if !joined.is_empty() {
                    joined.push(' ');
                }
                joined.push_str(word);
                reading = reading.min(*confidence);
                if is_value(&joined) {
                    best = Some(best.map_or(reading, |b| b.max(reading)));
                    break;
                }
            }
        }
    }
    best
}

/// Letters and digits alone, lower case: `DE 123 456 789` and `de123456789.` are one value.
fn folded(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// A name, number or id: words that spell it exactly, or one word that holds it with a label glued on
/// (`Nr.4711`, `IBAN:DE89...`).
fn text_reading(words: &ReadWords, value: &str) -> Option<f32> {
    let want = folded(value);
    if want.is_empty() {
        return None;
    }
    best_reading(words, |span| {
        let got = folded(span);
        got == want || (!span.contains(' ') && want.len() >= 4 && got.ends_with(&want))
    })
}

fn date_reading(words: &ReadWords, value: NaiveDate) -> Option<f32> {
    best_reading(words, |span| {
        [DayMonthOrder::DayFirst, DayMonthOrder::MonthFirst]
            .into_iter()
            .any(|order| find_dates(span, order).iter().any(|found| found.date == value))
    })
}

/// An amount, its sign and a currency sign or code around it ignored.
fn amount_reading(words: &ReadWords, value: Decimal) -> Option<f32> {
    let want = value.abs();
    best_reading(words, |span| {
        let bare = span.trim_matches(|c: char| !c.is_ascii_digit()).replace(['\u{a0}', '\u{202f}'], " ");
        // `1 234,56` is one amount; other spans with spaces are several words.
        let amount = if bare.contains(' ') && bare.split(' ').skip(1).all(|group| group.len() == 3 || group.len() == 6)
        {
            bare.replace(' ', "")
        } else {
            bare
        };
        !amount.contains(' ') && parse_amount(&amount).is_some_and(|got| got.abs() == want)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OCR_CONFIDENCE_FACTOR;

    fn read(lines: &[&[(&str, f32)]]) -> ReadWords {
        ReadWords(lines.iter().map(|line| line.iter().map(|(w, c)| (w.to_string(), *c)).collect()).collect())
    }

    #[test]
    fn values_are_found_in_their_printed_forms() {
        let words = read(&[
            &[("Rechnung", 96.0), ("Nr.", 95.0), ("RE-2024/17", 93.0)],
            &[("Datum:", 95.0), ("12.03.2024", 62.0)],
            &[("Gesamtbetrag", 96.0), ("1", 91.0), ("234,50", 88.0), ("€", 80.0)],
            &[("IBAN:", 92.0), ("DE89", 97.0), ("3704", 96.0), ("0044", 95.0), ("0532", 94.0)],
        ]);
        assert_eq!(text_reading(&words, "RE-2024/17"), Some(93.0));
        assert_eq!(date_reading(&words, NaiveDate::from_ymd_opt(2024, 3, 12).unwrap()), Some(62.0));
        assert_eq!(amount_reading(&words, "1234.50".parse().unwrap()), Some(88.0), "the weakest word of the amount");
        assert_eq!(amount_reading(&words, "-1234.50".parse().unwrap()), Some(88.0), "the sign is the rules' matter");
        assert_eq!(text_reading(&words, "DE89 3704 0044 0532"), Some(94.0));
        assert_eq!(text_reading(&words, "RE-2024/18"), None, "a value that was not read gets no reading");
        assert_eq!(amount_reading(&words, "234.50".parse().unwrap()), Some(88.0));
        assert_eq!(amount_reading(&words, "9.99".parse().unwrap()), None);
    }

    #[test]
    fn a_value_printed_twice_counts_its_best_reading() {
        let words = read(&[&[("Invoice", 95.0), ("A-4711", 40.0)], &[("Ref", 90.0), ("A-4711", 92.0)]]);
        assert_eq!(text_reading(&words, "A-4711"), Some(92.0));
    }

    #[test]
    fn the_engine_doubt_lowers_the_rules_confidence() {
        let mut invoice = Invoice { invoice_number: Some("4711".into()), ..Invoice::default() };
        invoice.issue_date = NaiveDate::from_ymd_opt(2024, 3, 12);
        let words = read(&[&[("No.", 95.0), ("4711", 96.0)], &[("Date", 95.0), ("12/03/2024", 55.0)]]);
        let read = read_confidences(&invoice, &words);
        assert!(factor(read["invoice_number"]) > OCR_CONFIDENCE_FACTOR, "a clean reading keeps most of it");
        assert!(factor(read["issue_date"]) < OCR_CONFIDENCE_FACTOR, "a poor reading lowers it further");
        assert!(!read.contains_key("due_date"));
    }
}
