//! Invoice lines (BG-25) from the item table of the text: found by its header, read row by row, and kept only
//! when the arithmetic holds.
//!
//! The text of a PDF keeps a table's reading order but rarely its columns, so a row is read as a run of
//! tokens, not as cells: a header row (two or more kinds of column label: description, quantity, price,
//! amount, in English, German, French, Spanish, Dutch, Italian or Polish) opens the table, each line after
//! it that ends a row carries a quantity, a unit price and a line amount with quantity × price = amount to
//! the cent, the lines before it without such numbers carry the rest of its description, and a totals label
//! closes the table. The rows together must add up to the net or line total the totals block confirmed (or
//! that a net label prints); with no such total to check against, only rows whose own arithmetic holds are
//! kept. A table that does not reconcile yields no lines: a wrong line is worse than a missing one.
//!
//! Every line of the document is looked at once, and the work per row is bounded by [`MAX_ROW_NUMBERS`] and
//! [`MAX_PENDING_LINES`], so hostile text costs linear time.

use std::sync::LazyLock;

use nova_core::Line;
use regex::Regex;
use rust_decimal::Decimal;

use super::doc::Text;
use super::pattern::regex;
use super::totals::{
    is_allowance_or_charge, is_net_label, line_sums, net_amounts, TotalsBlock, LINE_SUM_LABEL, TOTAL_LABELS,
};
use crate::parse::parse_amount;

/// The numbers of one row that are tried as quantity, price and amount (the last ones of the row).
const MAX_ROW_NUMBERS: usize = 12;
/// Description lines kept before a row's numbers; older ones are dropped.
const MAX_PENDING_LINES: usize = 10;
/// Rows kept from one document.
const MAX_ROWS: usize = 500;

/// Column labels, one pattern per kind. German compounds (`Artikelbeschreibung`, `Gesamtbetrag`) match
/// inside words, so most patterns have no word boundaries.
static COLUMN_LABELS: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    [
        // Description
        regex(
            r"(?i)(?:description|\bitem\b|\bproduct|\barticle|\bservice|produkt|artikel|bezeichnung|beschreibung|leistung|d[ée]signation|libell[ée]|descripci[óo]n|concepto|omschrijving|descrizione|\bnazwa|\bopis)",
        ),
        // Quantity
        regex(
            r"(?i)(?:quantity|\bqty|\bmenge|anzahl|quantit[ée]|\bqt[ée]|cantidad|\bcant\.|aantal|quantit[àa]|\bqt[àa]|ilo[śs][ćc]|\bhours\b|\bstunden)",
        ),
        // Unit price
        regex(r"(?i)(?:price|\brate\b|preis|\bprix|\bp\.\s?u\.|precio|prijs|prezzo|\bcena|tarif)"),
        // Line amount
        regex(
            r"(?i)(?:amount|\btotal|betrag|gesamt|summe|montant|importe|bedrag|totaal|importo|warto[śs][ćc]|\bnet\b|netto)",
        ),
    ]
});
/// A percentage: `19%`, `19 %`, `7,5%`.
static PERCENT: LazyLock<Regex> = LazyLock::new(|| regex(r"^(\d{1,2}(?:[.,]\d{1,2})?)\s?%$"));
/// A number token: digits with at most thousands groups and one decimal part, in either convention.
static NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"^-?(?:\d{1,3}(?:[.,']\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?)$"));
/// Tax column labels: a percentage in a table with one is the line's VAT rate.
static TAX_COLUMN: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)(?:\b(?:vat|tax|mwst|ust|tva|btw|iva|gst)\b|steuer)"));

/// The lines of the item table, or none when they do not reconcile with the totals.
pub(crate) fn line_items(doc: &Text<'_>, block: &TotalsBlock) -> Vec<Line> {
    let mut printed_nets = net_amounts(doc);
    printed_nets.extend(line_sums(doc));
    let rows = table_rows(doc, Fit::Exact);
    if reconciles(doc, block, &rows, &printed_nets, Fit::Exact) {
        return rows;
    }
    // A price printed rounded (2,7700 for 2,773) breaks a row's own arithmetic by up to half a cent per unit.
    // Such rows are taken only when, with them, the table adds up to a total the document confirms.
    let rows = table_rows(doc, Fit::RoundedPrice);
    if reconciles(doc, block, &rows, &printed_nets, Fit::RoundedPrice) {
        return rows;
    }
    Vec::new()
}

/// How closely quantity × price must give a row's amount.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fit {
    /// To the cent.
    Exact,
    /// Within half a cent per unit and a cent: the price was printed rounded to the cent.
    RoundedPrice,
}

/// Whether rows add up to what the totals block confirmed, a printed net or line sum, or (prices with tax) the
/// grand total. Exact rows with no total to check against stand on their own arithmetic; rounded ones never do.
fn reconciles(doc: &Text<'_>, block: &TotalsBlock, rows: &[Line], printed_nets: &[Decimal], fit: Fit) -> bool {
    if rows.is_empty() {
        return false;
    }
    // Checked: hostile numbers must not overflow into a panic.
    let Some(sum) = rows.iter().filter_map(|r| r.line_total).try_fold(Decimal::ZERO, |a, v| a.checked_add(v)) else {
        return false;
    };
    let allowance_row = rows.iter().any(|r| r.name.as_deref().is_some_and(is_allowance_or_charge));
    // Prices that include tax (a header `Prijs incl. BTW`, `Preis inkl. MwSt`, `Prix TTC`): the lines add up to
    // the confirmed grand total instead.
    let gross = block.grand_total.is_some_and(|g| g == sum)
        && doc.lines.iter().any(|line| is_header(line) && GROSS_COLUMN.is_match(line));
    gross
        || match (block.line_total, block.tax_basis_total) {
            // No allowance or charge: the lines add up to the confirmed net.
            (Some(lines), _) => sum == lines,
            // Allowances or charges: the lines add up to the net only when none of them is one, else to a
            // printed sub-total of their own.
            (None, Some(basis)) => (sum == basis && !allowance_row) || (sum != basis && printed_nets.contains(&sum)),
            // Nothing confirmed: a printed net must agree, and with none printed each row's own arithmetic is all
            // the evidence there is.
            (None, None) => (fit == Fit::Exact && printed_nets.is_empty()) || printed_nets.contains(&sum),
        }
}

/// A column of amounts that include tax.
static GROSS_COLUMN: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:\bincl\.?\s*(?:btw|vat|tax|mwst|ust|tva|iva|gst)|\binkl\.?\s*(?:mwst|ust)|\bttc\b|\bbrutto|\bgross\b|\bivato\b)",
    )
});

/// Rows whose quantity × price = amount, read from every item table of the document. A row of nothing (no
/// quantity, no amount) is a section heading inside the table, not an item.
fn table_rows(doc: &Text<'_>, fit: Fit) -> Vec<Line> {
    let mut rows = Vec::new();
    let mut in_table = false;
    let mut tax_column = false;
    let mut in_header = false;
    let mut pending: Vec<&str> = Vec::new();
    let mut open_name: Option<&str> = None;
    // Rows read in the current table, and whether its first row came straight under the header: cells aligned
    // at their top, so a description that wraps goes on below its row's numbers.
    let mut table_rows_read = 0;
    let mut top_aligned = false;
    for line in &doc.lines {
        if rows.len() >= MAX_ROWS {
            break;
        }
        if is_header(line) {
            in_table = true;
            in_header = true;
            table_rows_read = 0;
            tax_column = TAX_COLUMN.is_match(line);
            pending.clear();
            continue;
        }
        if !in_table || line.trim().is_empty() {
            continue;
        }
        // A header may wrap over several lines: label lines without digits right after it still belong to it.
        if in_header && !line.chars().any(|c| c.is_ascii_digit()) && label_kinds(line) > 0 {
            tax_column |= TAX_COLUMN.is_match(line);
            continue;
        }
        in_header = false;
        if closes_table(line) {
            in_table = false;
            pending.clear();
            continue;
        }
        // Under top-aligned cells, short lines between two rows finish the name of the row above, when the
        // row below has a name of its own on its line.
        let below = top_aligned
            && table_rows_read > 0
            && !pending.is_empty()
            && pending.iter().all(|l| continuation_line(l))
            && rows.last().is_some_and(|r: &Line| r.name.is_some());
        let read = below
            .then(|| read_row(&[], line, tax_column, fit))
            .flatten()
            .map(|row| (row, true))
            .or_else(|| read_row(&pending, line, tax_column, fit).map(|row| (row, false)));
        if let Some((row, continued_above)) = read {
            if continued_above {
                if let Some(name) = rows.last_mut().and_then(|r| r.name.as_mut()) {
                    for continuation in &pending {
                        name.push(' ');
                        name.push_str(continuation.trim());
                    }
                }
            }
            if table_rows_read == 0 {
                top_aligned = pending.is_empty();
            }
            table_rows_read += 1;
            // A name printed with a comma or a hyphen after it on the row's line goes on below the row.
            open_name = row.name.as_deref().and_then(|n| n.split_whitespace().last()).and_then(|last| {
                if line.contains(&format!("{last},")) {
                    Some(", ")
                } else {
                    line.contains(&format!("{last}-")).then_some("-")
                }
            });
            rows.push(row);
            pending.clear();
            continue;
        }
        // `Schreibtischstuhl,` over `blau`: a short line of words right after such a row finishes its name.
        if let Some(separator) = open_name.take().filter(|_| wrapped_name(line)) {
            if let Some(name) = rows.last_mut().and_then(|r| r.name.as_mut()) {
                name.push_str(separator);
                name.push_str(line.trim());
                continue;
            }
        }
        if pending.len() == MAX_PENDING_LINES {
            pending.remove(0);
        }
        pending.push(line);
    }
    rows.retain(|r| !(r.quantity.is_some_and(|q| q.is_zero()) && r.line_total.is_some_and(|t| t.is_zero())));
    rows
}

/// A header row: labels of at least two kinds of column and no amounts.
fn is_header(line: &str) -> bool {
    label_kinds(line) >= 2 && !has_amount(line)
}

fn label_kinds(line: &str) -> usize {
    COLUMN_LABELS.iter().filter(|label| label.is_match(line)).count()
}

/// A totals line ends the table: an amount with a net or grand-total label, or a line that starts with
/// `Total`, `Summe`, ... (inside a row's description such a word may be part of a product's name).
fn closes_table(line: &str) -> bool {
    has_amount(line)
        && (is_net_label(line)
            || LINE_SUM_LABEL.is_match(line)
            || TOTAL_LABELS[0].0.is_match(line)
            || TOTAL_LABELS[1].0.find(line).is_some_and(|m| line[..m.start()].trim().is_empty()))
}

fn has_amount(line: &str) -> bool {
    line.split_whitespace().any(|t| number_token(t).is_some_and(|t| t.contains(['.', ','])))
}

/// One token of a row.
#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    Word(&'a str),
    /// A number with the values it may stand for (`1,000` is one or a thousand), and whether it has a
    /// decimal part.
    Number(&'a str, Vec<Decimal>, bool),
    Percent(Decimal),
}

/// Reads a row from its last line and the description lines before it, when three of its numbers satisfy
/// quantity × price = amount.
fn read_row(pending: &[&str], line: &str, tax_column: bool, fit: Fit) -> Option<Line> {
    let tokens = tokenize(pending, line);
    let last_start = tokens.len() - tokenize(&[], line).len();
    let (q, p, t, values) = arithmetic(&tokens, last_start, fit)?;
    let name = description(&tokens, [q, p, t], last_start, pending.last().copied())?;
    let percents: Vec<Decimal> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Percent(v) => Some(*v),
            _ => None,
        })
        .collect();
    // A rate that was a discount in the arithmetic is no tax rate.
    let discounted = values.0.checked_mul(values.1).map(|v| v.abs().round_dp(2)) != Some(values.2.abs());
    let tax_rate = (tax_column && !discounted && percents.len() == 1).then(|| percents[0]);
    Some(Line {
        name: Some(name),
        quantity: Some(values.0),
        net_price: Some(values.1),
        line_total: Some(values.2),
        tax_rate,
        ..Line::default()
    })
}

fn tokenize<'a>(pending: &[&'a str], line: &'a str) -> Vec<Token<'a>> {
    let mut tokens: Vec<Token<'a>> = Vec::new();
    for raw in pending.iter().chain(std::iter::once(&line)).flat_map(|l| l.split_whitespace()) {
        if raw == "%" {
            // `19 %`: the percent sign turns the number before it into a rate.
            if let Some(Token::Number(_, values, _)) = tokens.last() {
                if let Some(&v) = values.first() {
                    tokens.pop();
                    tokens.push(Token::Percent(v));
                    continue;
                }
            }
        }
        if let Some(c) = PERCENT.captures(raw) {
            if let Some(v) = parse_amount(&c[1]) {
                tokens.push(Token::Percent(v));
                continue;
            }
        }
        match number_token(raw) {
            Some(number) => {
                let values = number_values(number);
                if values.is_empty() {
                    tokens.push(Token::Word(raw));
                } else {
                    tokens.push(Token::Number(raw, values, number.contains(['.', ','])));
                }
            }
            None => tokens.push(Token::Word(raw)),
        }
    }
    tokens
}

/// The number in a token, with currency signs and codes around it removed: `160,00`, `€5.00`, `12.50€`.
fn number_token(raw: &str) -> Option<&str> {
    let trimmed = raw.trim_start_matches(['€', '$', '£', '₹', '(']).trim_end_matches(['€', '$', '£', '₹', ')', '*']);
    NUMBER.is_match(trimmed).then_some(trimmed)
}

/// The values a number may stand for: one, or two when three digits after a lone separator make it either a
/// decimal or a thousands group.
fn number_values(s: &str) -> Vec<Decimal> {
    if let Some(v) = parse_amount(s) {
        return vec![v];
    }
    let plain: String = s.chars().filter(|c| c.is_ascii_digit() || *c == '-').collect();
    let Ok(thousands) = plain.parse::<Decimal>() else { return Vec::new() };
    let decimal = s.replace(',', ".").parse::<Decimal>().ok();
    decimal.into_iter().chain(std::iter::once(thousands)).collect()
}

/// Positions of quantity, price and amount among the tokens, with their values. The amount is one of the
/// last two numbers, on the row's last line (tokens from `last_start` on), with two decimals; quantity and
/// price are two neighbouring earlier numbers, in either order, nearest to the amount first, the later of
/// them on the last line. The amount may carry a sign the product does not (a credit note), or be the
/// product less a percentage printed on the row (a line discount), or with [`Fit::RoundedPrice`] be off by the
/// rounding of a price printed to the cent. A zero price is taken only for a zero amount (a free item).
#[allow(clippy::type_complexity)]
fn arithmetic(
    tokens: &[Token<'_>],
    last_start: usize,
    fit: Fit,
) -> Option<(usize, usize, usize, (Decimal, Decimal, Decimal))> {
    let numbers: Vec<usize> =
        tokens.iter().enumerate().filter(|(_, t)| matches!(t, Token::Number(..))).map(|(i, _)| i).collect();
    let numbers = &numbers[numbers.len().saturating_sub(MAX_ROW_NUMBERS)..];
    // A rate on the row may be a discount on it: `5 × 4,55 € 10% = 20,48 €`.
    let row_percents: Vec<Decimal> = tokens[last_start..]
        .iter()
        .filter_map(|t| match t {
            Token::Percent(v) if *v > Decimal::ZERO => Some(*v),
            _ => None,
        })
        .collect();
    let values = |i: usize| match &tokens[i] {
        Token::Number(_, v, _) => v.as_slice(),
        _ => &[],
    };
    for (k, &t) in numbers.iter().enumerate().rev().take(2) {
        let Token::Number(_, _, true) = tokens[t] else { continue };
        let Some(&total) = values(t).first().filter(|v| v.scale() == 2) else { continue };
        if t < last_start {
            continue;
        }
        // The later of quantity and price is on the last line too; the earlier may end a description line.
        for b in (1..k).rev().take_while(|&b| numbers[b] >= last_start) {
            let (ia, ib) = (numbers[b - 1], numbers[b]);
            for &va in values(ia) {
                for &vb in values(ib) {
                    let nonzero = va != Decimal::ZERO && vb != Decimal::ZERO;
                    // The quantity is the plainer number: an integer, or the one with fewer decimals.
                    let (q, p) = if va.scale() <= vb.scale() { ((ia, va), (ib, vb)) } else { ((ib, vb), (ia, va)) };
                    let free = total == Decimal::ZERO
                        && q.1 != Decimal::ZERO
                        && q.1.fract().is_zero()
                        && p.1 == Decimal::ZERO
                        && matches!(tokens[p.0], Token::Number(_, _, true));
                    let Some(product) = va.checked_mul(vb).map(|v| v.abs()) else { continue };
                    let discounted = |d: Decimal| {
                        product.checked_mul(Decimal::ONE_HUNDRED - d).map(|v| (v / Decimal::ONE_HUNDRED).round_dp(2))
                    };
                    // Half a cent per unit, and a cent: a price rounded to the cent.
                    let rounded_price = || {
                        let slack =
                            q.1.abs().checked_mul(Decimal::new(5, 3)).and_then(|v| v.checked_add(Decimal::new(1, 2)));
                        let off = product.checked_sub(total.abs()).map(|v| v.abs());
                        nonzero && slack.zip(off).is_some_and(|(slack, off)| off <= slack)
                    };
                    let fits = product.round_dp(2) == total.abs()
                        || nonzero && row_percents.iter().any(|&d| discounted(d) == Some(total.abs()))
                        || fit == Fit::RoundedPrice && rounded_price();
                    if fits && (nonzero || free) {
                        return Some((q.0, p.0, t, (q.1, p.1, total)));
                    }
                }
            }
        }
    }
    None
}

/// The item's name, the numbers of the arithmetic, rates and currency codes left out: the first run of words
/// before the second of quantity and price on the row's last line (a lone integer inside the run kept, `iPhone 15
/// Pro`). A run that goes on from the line before (it starts in lower case or has under three letters, or
/// that line ends with a comma or hyphen, or is a few words alone) takes that line's words in front; a last
/// line without words before its numbers takes its name from the lines before: their last run with a few letters.
fn description(tokens: &[Token<'_>], used: [usize; 3], last_start: usize, before: Option<&str>) -> Option<String> {
    let second_number = used[0].max(used[1]);
    let own = (second_number >= last_start)
        .then(|| {
            word_runs(&tokens[last_start..second_number], &used.map(|i| i.wrapping_sub(last_start)), true)
                .into_iter()
                .next()
        })
        .flatten();
    let name = match own {
        Some(own) => {
            let weak = letters(&own) < 3 || own[0].starts_with(char::is_lowercase);
            let continues = weak || before.is_some_and(|b| b.trim_end().ends_with([',', '-', '&']) || wrapped_name(b));
            let previous = before.filter(|_| continues).and_then(|b| longest_run(&tokenize(&[], b), &[]));
            match previous {
                Some(previous) => format!("{previous} {}", own.join(" ")),
                None => own.join(" "),
            }
        }
        // The description nearest the numbers: lines further up may be notes on the row before.
        None => word_runs(&tokens[..last_start], &used, false)
            .into_iter()
            .rev()
            .find(|run| letters(run) >= 3)
            .map(|run| run.join(" "))
            .or_else(|| longest_run(&tokens[..last_start], &used))?,
    };
    let name = name.trim_matches(|c: char| c == ':' || c == ',' || c == '-' || c.is_whitespace());
    name.chars().any(char::is_alphabetic).then(|| name.to_string())
}

/// A short line of words: one to `max_words` of them, no digit.
fn few_words(line: &str, max_words: usize) -> bool {
    (1..=max_words).contains(&line.split_whitespace().count()) && !line.chars().any(|c| c.is_ascii_digit())
}

/// A line that may go on a name from the row above it (under top-aligned cells): a few words.
fn continuation_line(line: &str) -> bool {
    few_words(line, 4)
}

/// A piece of a name wrapped onto the row's line, or below it after a comma: one to three words with some
/// letters, no digit, no label colon.
fn wrapped_name(line: &str) -> bool {
    few_words(line, 3) && !line.contains(':') && line.chars().filter(|c| c.is_alphabetic()).count() >= 3
}

/// The run of words with the most letters, the numbers at `used` breaking runs.
fn longest_run(tokens: &[Token<'_>], used: &[usize]) -> Option<String> {
    let runs = word_runs(tokens, used, false);
    runs.into_iter().max_by_key(|run| (letters(run), std::cmp::Reverse(run.len()))).map(|run| run.join(" "))
}

fn letters(run: &[&str]) -> usize {
    run.iter().map(|w| w.chars().filter(|c| c.is_alphabetic()).count()).sum()
}

/// Runs of words (a lone integer inside a run kept, and on `one_line` a decimal number between two words),
/// broken by the other numbers, rates and currency codes. Over several lines a decimal is more likely a
/// value of the row above than part of a name.
fn word_runs<'a>(tokens: &[Token<'a>], used: &[usize], one_line: bool) -> Vec<Vec<&'a str>> {
    let mut runs: Vec<Vec<&'a str>> = Vec::new();
    let mut run: Vec<&'a str> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Word(w) if !is_currency(w) => run.push(w),
            Token::Number(raw, _, false) if !used.contains(&i) && !run.is_empty() => run.push(raw),
            // A version or a size between words (`HP USB 3.0 Port Replicator`) is part of the name.
            Token::Number(raw, _, true)
                if one_line
                    && !used.contains(&i)
                    && !run.is_empty()
                    && matches!(tokens.get(i + 1), Some(Token::Word(w)) if !is_currency(w)) =>
            {
                run.push(raw)
            }
            _ => end_run(&mut run, &mut runs),
        }
    }
    end_run(&mut run, &mut runs);
    runs
}

/// Ends a run of words, its trailing numbers dropped.
fn end_run<'a>(run: &mut Vec<&'a str>, runs: &mut Vec<Vec<&'a str>>) {
    while run.last().is_some_and(|w| !w.chars().any(char::is_alphabetic)) {
        run.pop();
    }
    if !run.is_empty() {
        runs.push(std::mem::take(run));
    }
}

fn is_currency(word: &str) -> bool {
    matches!(word, "€" | "$" | "£" | "₹" | "EUR" | "USD" | "GBP" | "CHF" | "INR" | "PLN")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> Vec<(String, String, String, String)> {
        let doc = Text::new(text);
        let grand = super::super::totals::grand_total(&doc).map(|t| t.value);
        let block = super::super::totals::totals_block(&doc, grand);
        line_items(&doc, &block)
            .into_iter()
            .map(|l| {
                (
                    l.name.unwrap_or_default(),
                    l.quantity.map(|d| d.normalize().to_string()).unwrap_or_default(),
                    l.net_price.map(|d| d.normalize().to_string()).unwrap_or_default(),
                    l.line_total.map(|d| d.to_string()).unwrap_or_default(),
                )
            })
            .collect()
    }

    fn row(name: &str, q: &str, p: &str, t: &str) -> (String, String, String, String) {
        (name.into(), q.into(), p.into(), t.into())
    }

    #[test]
    fn rows_priced_with_tax_add_up_to_the_grand_total_under_a_gross_header() {
        let text = "Artikel Aantal Prijs per stuk BTW Prijs incl. BTW\nTablet 1 € 399,00 21% € 399,00\n\
                    Cover 2 € 10,00 21% € 20,00\nSubtotaal € 419,00  Exclusief BTW € 346,28\nBTW 21% € 72,72\n\
                    Totaal € 419,00";
        assert_eq!(items(text).iter().map(|r| r.3.as_str()).collect::<Vec<_>>(), ["399.00", "20.00"]);
        // The same rows under a header that does not say the prices include tax add up to nothing confirmed.
        assert_eq!(items(&text.replace("Prijs incl. BTW", "Bedrag")), vec![]);
    }

    #[test]
    fn a_description_cell_may_wrap_over_many_lines() {
        // Ids, the name and the packaging, each word on a line of its own, then the row's numbers.
        let text = "Pos Beschreibung Nettopreis Menge Betrag\n1 GTIN\n4123456000014\nArt-Nr-\nLieferant\nZS9997\n\
                    Zitronensäure\n100ml\nVerpackung:\nFlasche\n 1,0000 5 Stk 5,00\nNettobetrag 5,00";
        let got = items(text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].0.contains("Zitronensäure 100ml") && got[0].0.contains("Flasche"), "{got:?}");
    }

    #[test]
    fn a_row_of_nothing_is_a_heading_not_an_item() {
        // A discount column of zeros times anything is zero: with a heading above, that made a row of nothing.
        let text = "Description Quantity Unit Price Disc.% Taxes Amount\n\n--- Toys ---\n\n\
                    Kite 1.00 Units 319.00 0.00 15.00% $ 319.00\nTotal $ 319.00";
        let found = items(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].1.as_str(), found[0].3.as_str()), ("1", "319.00"));
    }

    #[test]
    fn rows_under_a_header_that_add_up_to_the_net_total() {
        let text = "Rechnung 17\nPos. Artikelbeschreibung Menge Preis Betrag\n1 Superdrachen 2 20,00 40,00\n\
                    2 Turbo Flyer 5 40,00 200,00\nRechnungssumme netto 240,00\nzuzüglich 19% MwSt. 45,60\n\
                    Rechnungssumme brutto 285,60";
        assert_eq!(items(text), vec![row("Superdrachen", "2", "20", "40.00"), row("Turbo Flyer", "5", "40", "200.00")]);
    }

    #[test]
    fn price_before_quantity_and_rounding_to_the_cent() {
        let text = "Description  Unit price  Qty  VAT  Amount\nArtificial turf 3m  3.3333  3  19 %  10.00\n\
                    Subtotal 10.00\nVAT 1.90\nTotal 11.90";
        assert_eq!(items(text), vec![row("Artificial turf 3m", "3", "3.3333", "10.00")]);
    }

    #[test]
    fn descriptions_wrap_over_lines_before_the_numbers() {
        let text = "Menge Produkt USt. Preis Gesamtbetrag\n1,00 Künstlerische Gestaltung\n(Stunde): Einer\n\
                    Beispielrechnung\n 7% 160,00 € 160,00 €\n400,00 Luftballon: Bunt 19% 0,79 € 316,00 €\n\
                    Nettobetrag: 476,00 €\nUSt. Gesamt: 71,24 €\nGesamtbetrag: 547,24 €";
        let got = items(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "Künstlerische Gestaltung (Stunde): Einer Beispielrechnung");
        assert_eq!(got[1], row("Luftballon: Bunt", "400", "0.79", "316.00"));

        // A name whose first words sit alone on the line above the row's numbers.
        let text = "Beschreibung Preis Menge Betrag\nGelierzucker\nExtra 250g 1,45 2 2,90\nZucker 1,25 5 6,25\n\
                    Nettobetrag 9,15";
        let got = items(text);
        assert_eq!(got[0], row("Gelierzucker Extra 250g", "2", "1.45", "2.90"));
        assert_eq!(got[1], row("Zucker", "5", "1.25", "6.25"));
    }

    #[test]
    fn free_items_and_notes_before_a_row() {
        let text = "Description  Price  Qty  Amount
1 Rental days 86,55 2 173,10
Further details:
                    Plate: M-MM 0000
Navigation 5,04 2 10,08
2 Free gift 0,00 1 0,00
                    Zwischensumme 183,18
MwSt 34,80
Gesamtbetrag 217,98";
        assert_eq!(
            items(text),
            vec![
                row("Rental days", "2", "86.55", "173.10"),
                row("Navigation", "2", "5.04", "10.08"),
                row("Free gift", "1", "0", "0.00")
            ]
        );
    }

    #[test]
    fn zero_rows_need_a_whole_quantity_and_a_printed_price() {
        let text = "Description Qty Price Amount\nTax exempt under §4 Nr. 14 0 0.00\nVAT 80.65 0.00 0.00\n\
                    Free gift 1 0.00 0.00";
        assert_eq!(items(text), vec![row("Free gift", "1", "0", "0.00")]);
    }

    #[test]
    fn credit_note_rows_with_a_line_discount() {
        let text = "Description Quantité Prix unitaire Rem. Prix HT\nNougat 250g 5 Unit(s) 4,55 € 10% -20,48 €\n\
                    Huile d'olive 10 Liter(s) 19,80 € -198,00 €\nTotal HT -218,48 €\nTotal taxes -14,99 €\n\
                    Total TTC -233,47 €";
        assert_eq!(
            items(text),
            vec![row("Nougat 250g", "5", "4.55", "-20.48"), row("Huile d'olive", "10", "19.8", "-198.00")]
        );
    }

    #[test]
    fn a_printed_sum_of_the_lines_confirms_them_despite_allowances() {
        let text = "Beschreibung Nettopreis Menge Nettobetrag\nKunstrasen 3,3333 3 10,00\nPfand 2,7700 20 55,40\n\
                    Positionssumme 65,40\nAbschläge -5,00\nRechnungssumme ohne USt. 60,40\nSteuerbetrag 11,48\n\
                    Bruttosumme 71,88";
        assert_eq!(items(text).len(), 2);
        let wrong = text.replace("Positionssumme 65,40", "Positionssumme 66,40");
        assert_eq!(items(&wrong), vec![]);
    }

    #[test]
    fn a_price_printed_rounded_is_taken_only_when_the_table_then_adds_up() {
        // 20 × 2,7700 is 55,40; the amount 55,46 came from a price of 2,773 printed to the cent.
        let text = "Beschreibung Nettopreis Menge Nettobetrag\nKunstrasen 3,3333 3 10,00\nPfand 2,7700 20 55,46\n\
                    Positionssumme 65,46\nRechnungssumme ohne USt. 65,46\nSteuerbetrag 12,44\nBruttosumme 77,90";
        assert_eq!(items(text), vec![row("Kunstrasen", "3", "3.3333", "10.00"), row("Pfand", "20", "2.77", "55.46")]);
        // Nothing confirms the sum: the row whose arithmetic fails is no line, and the rest alone do not add up.
        let unconfirmed = "Beschreibung Nettopreis Menge Nettobetrag\nKunstrasen 3,3333 3 10,00\nPfand 2,7700 20 55,46";
        assert_eq!(items(unconfirmed), vec![row("Kunstrasen", "3", "3.3333", "10.00")]);
        // Off by more than the price's rounding (half a cent per unit): no row, and the table does not reconcile.
        let far = text.replace("55,46", "55,56").replace("65,46", "65,56").replace("77,90", "78,00");
        assert_eq!(items(&far), vec![]);
    }

    #[test]
    fn under_top_aligned_cells_a_wrapped_name_goes_on_below_its_row() {
        let text = "Menge  Produkt  USt.  Preis  Gesamtbetrag\n1,00  Künstlerische Gestaltung  7%  160,00 €  160,00 €\n\
                    (Stunde): Einer\nBeispielrechnung\n400,00  Luftballon: Bunt  19%  0,79 €  316,00 €\nNettobetrag: 476,00 €";
        let names: Vec<String> = items(text).into_iter().map(|r| r.0).collect();
        assert_eq!(names, ["Künstlerische Gestaltung (Stunde): Einer Beispielrechnung", "Luftballon: Bunt"]);
        // The first row under lines of its own: cells aligned at the bottom, lines before a row are its own.
        let text =
            "Beschreibung Preis Menge Betrag\nGelierzucker\nExtra 250g 1,45 2 2,90\nFeiner\nZucker 1,25 5 6,25\n\
                    Nettobetrag 9,15";
        let names: Vec<String> = items(text).into_iter().map(|r| r.0).collect();
        assert_eq!(names, ["Gelierzucker Extra 250g", "Feiner Zucker"]);
    }

    #[test]
    fn a_version_number_inside_a_name_stays_in_it() {
        let text = "Artikel Aantal Prijs per stuk BTW Prijs incl. BTW\n\
                    HP USB 3.0 Port Replicator 3005pr (H1L08ET) 1 € 159,99 21% € 159,99\nTotaal € 159,99";
        assert_eq!(items(text)[0].0, "HP USB 3.0 Port Replicator 3005pr (H1L08ET)");
    }

    #[test]
    fn a_name_cut_at_a_comma_goes_on_below_its_row() {
        let text = "No.  Description  Quantity  Unit Price  Amount\n1908-S  LONDON Schreibtischstuhl,  3 Piece  191.00  573.00\n\
                    blau\nSubtotal  573.00";
        assert_eq!(items(text)[0].0, "1908-S LONDON Schreibtischstuhl, blau");
        // Without the comma the line below is not part of the name.
        assert_eq!(
            items(&text.replace("Schreibtischstuhl,", "Schreibtischstuhl"))[0].0,
            "1908-S LONDON Schreibtischstuhl"
        );
    }

    #[test]
    fn a_name_above_the_numbers_is_the_nearest_one() {
        // The line after a row's numbers is a note on that row; the next row's name is the run just above its
        // numbers.
        let text = "Beschreibung Nettopreis Menge Nettobetrag\nSchweinesteak 5,5000 5 27,50\nBruttopreis: 5,5000\n\
                    aus Deutschland\n3 GTRWA5 4000001234561 (GTIN)\n1,0000\nMineralwasser Medium\n 5,4900 20 109,80\n\
                    Positionssumme 137,30";
        let got = items(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1], row("Mineralwasser Medium", "20", "5.49", "109.80"));
    }

    #[test]
    fn tax_rates_only_under_a_tax_column_and_never_a_discount() {
        let rates = |text: &str| {
            let doc = Text::new(text);
            line_items(&doc, &TotalsBlock::default()).into_iter().map(|l| l.tax_rate).collect::<Vec<_>>()
        };
        let rate = Some(Decimal::from(19));
        assert_eq!(rates("Description Qty Price VAT Amount\nKite 2 20.00 19% 40.00"), vec![rate]);
        assert_eq!(rates("Description Qty Price Amount\nKite 2 20.00 19% 40.00"), vec![None]);
        assert_eq!(rates("Description Qty Price Disc. VAT Amount\nKite 2 20.00 10% 36.00"), vec![None]);
    }

    #[test]
    fn a_total_line_is_no_row() {
        let text = "Description Qty Price Amount\nKite 1 319.00 319.00\nTotal 1 319.00 319.00";
        assert_eq!(items(text), vec![row("Kite", "1", "319", "319.00")]);
    }

    #[test]
    fn the_amount_is_on_the_last_line_with_two_decimals() {
        let text = "Description  Price  Qty  Amount
Insurance 67,2244 1 0 % 80,00
Gross price : 80,0006";
        assert_eq!(items(text), vec![]);
    }

    #[test]
    fn a_table_that_does_not_reconcile_yields_nothing() {
        // The rows add up to 240.00, the confirmed net is 250.00: some row was missed or misread.
        let text = "Description Qty Price Amount\nKite 2 20.00 40.00\nGlider 5 40.00 200.00\n\
                    Freight note 10.00\nSubtotal 250.00\nVAT 47.50\nTotal 297.50";
        assert_eq!(items(text), vec![]);
    }

    #[test]
    fn rows_whose_arithmetic_fails_are_not_lines() {
        // No totals to check against: only the row whose own arithmetic holds.
        let text = "Item Qty Price Amount\nKite 2 20.00 40.00\nGlider 5 40.00 210.00";
        assert_eq!(items(text), vec![row("Kite", "2", "20", "40.00")]);
    }

    #[test]
    fn no_header_no_table() {
        assert_eq!(items("Kite 2 20.00 40.00\nSubtotal 40.00\nVAT 8.00\nTotal 48.00"), vec![]);
    }

    #[test]
    fn header_wrapped_over_lines_and_codes_in_the_row() {
        let text =
            "No.  Description  Shipment\nDate  Quantity   Unit Price Excl.\nVAT   VAT %  Line Amount Excl. VAT\n\
                    1908-S  LONDON Schreibtischstuhl,\nblau  02/17/26  3 Piece  191.00    19  573.00\n\
                    Subtotal  573.00\n19% VAT  108.87\nTotal € Incl. VAT  681.87";
        assert_eq!(items(text), vec![row("1908-S LONDON Schreibtischstuhl, blau", "3", "191", "573.00")]);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let big = "79228162514264337593543950";
        let text = format!(
            "Description Qty Price Amount\nKite {big} {big} 1.00\nKite {big} 1 {big}.00\nKite {big} 1 {big}.00"
        );
        let doc = Text::new(&text);
        let _ = line_items(&doc, &TotalsBlock::default());
    }

    #[test]
    fn hostile_text_stays_bounded() {
        let mut text = String::from("Description Qty Price Amount\n");
        for _ in 0..5_000 {
            text.push_str("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 1.00\n");
        }
        let doc = Text::new(&text);
        assert!(table_rows(&doc, Fit::RoundedPrice).len() <= MAX_ROWS);
    }
}
