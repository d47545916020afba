//! The VAT breakdown (BG-23): one row per rate with its basis and amount, taken only when the arithmetic
//! confirms it.
//!
//! A row is a line that holds a rate `r`, a basis `b` and an amount `a` with `a = b × r / 100` to the cent
//! (the breakdown table of most layouts: `19 %  1.000,00  190,00`, `Umsatzsteuer (S) 129,37 7 9,06`). The
//! rows are accepted together only when their amounts add up to the tax total the totals block confirmed,
//! and their bases to its tax basis when that is known (BR-CO-14); one set only: when several sets of
//! candidate rows add up, none is taken. An invoice with one rate and no table gets its row from the
//! confirmed basis and tax and the one printed rate that turns the first into the second.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use nova_core::TaxRow;
use regex::Regex;
use rust_decimal::{Decimal, RoundingStrategy};

use super::amounts::amounts_in;
use super::doc::Text;
use super::pattern::regex;
use super::totals::TotalsBlock;
use crate::parse::parse_amount;

/// A whole number on a line (digits and separators, as long as they go), with a `%` after it if there is one.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"\d+(?:[.,]\d+)*(\s?%)?"));
/// A number that may be a rate: up to two integer digits and two decimals.
static RATE: LazyLock<Regex> = LazyLock::new(|| regex(r"^\d{1,2}(?:[.,]\d{1,2})?$"));

/// Candidate rows considered together, at most (their subsets are searched).
const MAX_CANDIDATES: usize = 12;

/// Rates a VAT breakdown may hold, in percent.
const MAX_RATE: u32 = 30;

/// One candidate row: rate, basis, amount.
type Row = (Decimal, Decimal, Decimal);

/// The VAT rows the totals confirm; empty when they confirm none.
pub(crate) fn tax_rows(doc: &Text<'_>, block: &TotalsBlock) -> Vec<TaxRow> {
    // Rows are matched on magnitudes, then carry the sign of the confirmed totals: negative on a corrected
    // invoice (a credit note's are made positive with its totals afterwards).
    let Some(tax_total) = block.tax_total.map(|t| t.abs()) else { return Vec::new() };
    let negative =
        block.tax_total.is_some_and(|t| t < Decimal::ZERO) || block.tax_basis_total.is_some_and(|b| b < Decimal::ZERO);
    let mut candidates: BTreeSet<Row> = BTreeSet::new();
    for line in &doc.lines {
        candidates.extend(rows_in(line));
    }
    let candidates: Vec<Row> = candidates.into_iter().collect();
    let rows = match unique_sum(&candidates, tax_total, block.tax_basis_total.map(|b| b.abs())) {
        Some(rows) => rows,
        None => single_rate(doc, block).into_iter().collect(),
    };
    rows.into_iter()
        .map(|(rate, basis, amount)| if negative { (rate, -basis, -amount) } else { (rate, basis, amount) })
        .map(to_tax_row)
        .collect()
}

/// The rows one line can hold: each rate on it with each pair of its amounts that the rate relates.
fn rows_in(line: &str) -> Vec<Row> {
    let amounts: Vec<Decimal> = amounts_in(line).map(|a| a.abs()).collect();
    if amounts.len() < 2 {
        return Vec::new();
    }
    let mut rows = Vec::new();
    for (rate, _) in rates_in(line) {
        for (i, &basis) in amounts.iter().enumerate() {
            for &amount in &amounts[i + 1..] {
                // The basis comes before the amount on every breakdown line seen; a rate printed as an amount
                // (`19,00`) is not its own basis.
                // A zero rate relates any basis to a zero amount: such a row needs a known tax basis to add up
                // to (see `unique_sum`).
                if basis != rate && basis > amount && tax_of(basis, rate) == amount {
                    rows.push((rate.round_dp(2), basis, amount));
                }
            }
        }
    }
    rows
}

/// The rates on a line, with whether each carries a `%`.
fn rates_in(line: &str) -> Vec<(Decimal, bool)> {
    NUMBER
        .captures_iter(line)
        .filter_map(|c| {
            let whole = c.get(0)?;
            let digits = whole.as_str().trim_end_matches(|ch: char| ch == '%' || ch.is_whitespace());
            if !RATE.is_match(digits) {
                return None;
            }
            let rate = parse_amount(digits)?;
            (rate <= Decimal::from(MAX_RATE)).then_some((rate, c.get(1).is_some()))
        })
        .collect()
}

/// `basis × rate / 100`, rounded to the cent as invoices round.
fn tax_of(basis: Decimal, rate: Decimal) -> Decimal {
    (basis * rate / Decimal::ONE_HUNDRED).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The one subset of `candidates` whose amounts add up to `tax_total` (and bases to `basis`, when known),
/// with one row per rate. `None` when no subset or several do.
fn unique_sum(candidates: &[Row], tax_total: Decimal, basis: Option<Decimal>) -> Option<Vec<Row>> {
    if candidates.is_empty() || candidates.len() > MAX_CANDIDATES {
        return None;
    }
    let mut found: Option<Vec<Row>> = None;
    for mask in 1u32..(1 << candidates.len()) {
        let rows: Vec<Row> =
            candidates.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, r)| *r).collect();
        let rates: BTreeSet<Decimal> = rows.iter().map(|r| r.0).collect();
        if rates.len() != rows.len() {
            continue;
        }
        let amounts: Decimal = rows.iter().map(|r| r.2).sum();
        let bases: Decimal = rows.iter().map(|r| r.1).sum();
        if amounts != tax_total || basis.is_some_and(|b| b != bases) {
            continue;
        }
        if basis.is_none() && rows.iter().any(|r| r.0.is_zero()) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(rows);
    }
    found
}

/// One rate for the whole invoice: the confirmed basis and tax, and the one rate printed with `%` that
/// turns the one into the other.
fn single_rate(doc: &Text<'_>, block: &TotalsBlock) -> Option<Row> {
    let (basis, tax) = (block.tax_basis_total?.abs(), block.tax_total?.abs());
    if basis <= Decimal::ZERO || tax <= Decimal::ZERO {
        return None;
    }
    let rates: BTreeSet<Decimal> = doc
        .lines
        .iter()
        .flat_map(|line| rates_in(line))
        .filter(|(rate, percent)| *percent && !rate.is_zero() && tax_of(basis, *rate) == tax)
        .map(|(rate, _)| rate.normalize())
        .collect();
    match rates.into_iter().collect::<Vec<_>>()[..] {
        [rate] => Some((rate.round_dp(2), basis, tax)),
        _ => None,
    }
}

/// A row as the schema has it. A positive rate is the standard category (`S`); a zero rate may be any of
/// the exempt ones (`E`, `Z`, `K`, `AE`, ...), which the numbers cannot tell apart, so it has none.
fn to_tax_row((rate, basis, amount): Row) -> TaxRow {
    let mut rate = rate;
    rate.rescale(2);
    let category = (!rate.is_zero()).then(|| "S".to_string());
    TaxRow { category, rate: Some(rate), basis: Some(basis), amount: Some(amount) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(basis: &str, tax: &str) -> TotalsBlock {
        TotalsBlock {
            tax_basis_total: Some(basis.parse().unwrap()),
            tax_total: Some(tax.parse().unwrap()),
            ..TotalsBlock::default()
        }
    }

    fn rows(text: &str, block: &TotalsBlock) -> Vec<(String, String, String)> {
        let doc = Text::new(text);
        tax_rows(&doc, block)
            .into_iter()
            .map(|r| (r.rate.unwrap().to_string(), r.basis.unwrap().to_string(), r.amount.unwrap().to_string()))
            .collect()
    }

    fn row(rate: &str, basis: &str, amount: &str) -> (String, String, String) {
        (rate.into(), basis.into(), amount.into())
    }

    #[test]
    fn rows_of_negative_totals_are_negative() {
        let text = "Umsatzsteuer  (S) -4,85 19 -0,92\nUmsatzsteuer  (S) -2,82 7 -0,20";
        assert_eq!(
            rows(text, &block("-7.67", "-1.12")),
            vec![row("7.00", "-2.82", "-0.20"), row("19.00", "-4.85", "-0.92")]
        );
        // With positive totals (a credit note's, made positive), the same rows are positive.
        assert_eq!(rows(text, &block("7.67", "1.12")), vec![row("7.00", "2.82", "0.20"), row("19.00", "4.85", "0.92")]);
    }

    #[test]
    fn a_breakdown_table_whose_rows_add_up_is_read() {
        // Cells one space apart, as a text layer may give them.
        let text = "Umsatzsteuer  S ( ) 129,37 7 9,06\nUmsatzsteuer  S ( ) 64,40 19 12,24\n";
        assert_eq!(
            rows(text, &block("193.77", "21.30")),
            [row("7.00", "129.37", "9.06"), row("19.00", "64.40", "12.24")]
        );
        // An exempt row: a zero rate and amount, taken because the bases add up to the tax basis.
        let exempt = "Umsatzsteuer  E ( )\nSteuerfreie Leistungen 380,00 0 0,00\n";
        assert_eq!(rows(exempt, &block("380.00", "0.00")), [row("0.00", "380.00", "0.00")]);
        let unknown_basis = TotalsBlock { tax_total: Some(Decimal::ZERO), ..TotalsBlock::default() };
        assert!(rows(exempt, &unknown_basis).is_empty(), "a zero row needs the basis to add up to");
        let english = "VAT 20%   on  1,250.00     250.00\nVAT 5%  on 100.00   5.00";
        assert_eq!(
            rows(english, &block("1350.00", "255.00")),
            [row("5.00", "100.00", "5.00"), row("20.00", "1250.00", "250.00")]
        );
    }

    #[test]
    fn rows_that_do_not_add_up_to_the_confirmed_totals_are_not_taken() {
        let text = "19 %   100,00   19,00\n";
        assert!(rows(text, &block("100.00", "21.00")).is_empty(), "the tax total differs");
        assert!(rows(text, &TotalsBlock::default()).is_empty(), "no confirmed tax total");
        assert_eq!(rows(text, &block("100.00", "19.00")), [row("19.00", "100.00", "19.00")]);
    }

    #[test]
    fn one_rate_without_a_table_comes_from_the_totals_and_the_printed_rate() {
        let text = "Net 200,00 EUR\nMwSt. 19 %\nTax 38,00\nTotal 238,00";
        assert_eq!(rows(text, &block("200.00", "38.00")), [row("19.00", "200.00", "38.00")]);
        // Two printed rates that both fit: neither is taken.
        let ambiguous = "VAT 19 %\nReduced 19.0 %\n";
        assert_eq!(rows(ambiguous, &block("200.00", "38.00")).len(), 1, "the same rate twice is one rate");
        let unrelated = "Discount 5 %\nVAT 7 %";
        assert!(rows(unrelated, &block("200.00", "38.00")).is_empty());
    }
}
