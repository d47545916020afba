//! Amounts as an invoice prints them: with two decimals, in either convention (`1.234,56`, `1,234.56`), and
//! the currency codes that may stand beside one.

use std::sync::LazyLock;

use regex::Regex;
use rust_decimal::Decimal;

use super::pattern::regex;
use crate::parse::parse_amount;

/// An amount with exactly two decimals, in either convention, not followed by `%`.
static AMOUNT: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?:^|[^\d.,])(-?(?:\d{1,3}(?:[.,'\u{a0}\u{202f} ]\d{3})+|\d+)[.,]\d{2})(?:[^\d%]|$)"));

/// How many amounts the text prints with a decimal comma (`1.234,56`) and with a decimal point (`1,234.56`).
pub(super) fn decimal_marks(text: &str) -> (usize, usize) {
    AMOUNT.captures_iter(text).fold((0, 0), |(comma, point), c| {
        let amount = &c[1];
        if amount.as_bytes()[amount.len() - 3] == b',' {
            (comma + 1, point)
        } else {
            (comma, point + 1)
        }
    })
}

/// Every amount in a string, in order.
pub(super) fn amounts_in(s: &str) -> impl Iterator<Item = Decimal> + '_ {
    AMOUNT.captures_iter(s).filter_map(|c| parse_amount(&c[1]))
}

/// Every amount in a line with the columns (in characters) it spans.
pub(super) fn amounts_with_columns(line: &str) -> Vec<(usize, usize, Decimal)> {
    AMOUNT
        .captures_iter(line)
        .filter_map(|c| {
            let m = c.get(1)?;
            let start = line[..m.start()].chars().count();
            Some((start, start + m.as_str().chars().count(), parse_amount(m.as_str())?))
        })
        .collect()
}

pub(super) fn last_amount(s: &str) -> Option<Decimal> {
    amounts_in(s).last()
}

/// A line that holds one amount and at most a currency beside it (a value printed under its label).
pub(super) fn only_amount(line: &str) -> Option<Decimal> {
    let amount = AMOUNT.captures(line)?;
    let rest = line.replace(&amount[1], "");
    let rest = rest.trim_matches(|c: char| c.is_whitespace() || "€$£₹()".contains(c));
    (rest.is_empty() || ISO_CURRENCY.is_match(rest) && rest.len() == 3).then(|| parse_amount(&amount[1])).flatten()
}

/// ISO 4217 codes common on invoices.
pub(super) static ISO_CURRENCY: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"\b(EUR|USD|GBP|CHF|INR|JPY|CNY|CAD|AUD|NZD|PLN|SEK|NOK|DKK|CZK|HUF|RON|BGN|TRY|BRL|MXN|ZAR|SGD|HKD|AED|SAR|ILS|KRW)\b",
    )
});
