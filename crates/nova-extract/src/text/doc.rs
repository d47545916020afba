//! The text of one invoice prepared once: its lines, each line's cells, and the day/month order its dates
//! are read in.

use std::sync::LazyLock;

use regex::Regex;

use super::amounts::decimal_marks;
use super::pattern::regex;
use crate::parse::{day_month_order, DayMonthOrder};

/// The text split into lines, and each line into cells (runs separated by wide gaps), prepared once.
pub(super) struct Text<'a> {
    pub(super) lines: Vec<&'a str>,
    pub(super) order: DayMonthOrder,
    /// Whether the document settled the order: its own dates told it, or its amounts or its language are
    /// of places that write the day first. Otherwise the order is a guess from its currency.
    pub(super) order_known: bool,
}

impl<'a> Text<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        // What the document's own dates show; else amounts with a decimal comma or labels in a language of
        // continental Europe, where dates are written day first; failing those, US dollars without euros
        // suggest US month-first dates, and anything else is read day-first.
        let told = day_month_order(text).or_else(|| {
            let (comma, point) = decimal_marks(text);
            (comma > point || DAY_FIRST_LANGUAGE.is_match(text)).then_some(DayMonthOrder::DayFirst)
        });
        let us_dollars = (text.contains("USD") || text.contains('$')) && !text.contains('€') && !text.contains("EUR");
        let order = told.unwrap_or(if us_dollars { DayMonthOrder::MonthFirst } else { DayMonthOrder::DayFirst });
        Self { lines, order, order_known: told.is_some() }
    }

    /// The next line after `i` that is not blank, within two lines.
    pub(super) fn next_nonblank(&self, i: usize) -> Option<usize> {
        (i + 1..self.lines.len().min(i + 3)).find(|&j| !self.lines[j].trim().is_empty())
    }

    /// For a label that starts at byte `at` in line `i`: the cell in the same column on the next line, when
    /// both lines split into the same number of cells (a header row over a value row).
    pub(super) fn value_below(&self, i: usize, at: usize) -> Option<&'a str> {
        let below = self.next_nonblank(i)?;
        let header = cells(self.lines[i]);
        let values = cells(self.lines[below]);
        if header.len() < 2 || header.len() != values.len() {
            return None;
        }
        let column = header.iter().position(|(start, cell)| (*start..*start + cell.len()).contains(&at))?;
        Some(values[column].1)
    }
}

/// Words of invoices in languages whose dates are written day first (German, French, Spanish, Italian,
/// Dutch, Polish): `Rechnung`, `facture`, `fecha`, `fattura`, `factuur`, `faktura`, `Datum`, `MwSt`, `TVA`.
static DAY_FIRST_LANGUAGE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(?:rechnung\p{L}*|datum|mwst|ust|facture|tva|fecha|factura|iva|fattura|factuur|btw|faktura|netto|brutto|montant|importe|importo|bedrag|kwota)\b",
    )
});

/// A line's cells: runs of text separated by two or more spaces, a tab, a vertical bar or a spaced dash
/// (`Seller SARL - 12 rue ... - Lyon`), with their byte offsets.
pub(super) fn cells(line: &str) -> Vec<(usize, &str)> {
    CELL_GAP
        .split(line)
        .map(|cell| (cell.as_ptr() as usize - line.as_ptr() as usize, cell))
        .map(|(start, cell)| {
            let trimmed = cell.trim_start();
            (start + cell.len() - trimmed.len(), trimmed.trim_end())
        })
        .filter(|(_, cell)| !cell.is_empty())
        .collect()
}

pub(super) static CELL_GAP: LazyLock<Regex> = LazyLock::new(|| regex(r"\s{2,}|\t|\s\|\s|\s[-–]\s"));
