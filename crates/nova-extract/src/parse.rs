//! Numbers and dates as invoices print them.
//!
//! Written by hand because the general crates do not fit: `rust_decimal` parses only the dot convention,
//! and `chrono`'s format strings need the exact format known in advance, while an invoice's text mixes
//! `1.234,56` and `1,234.56`, numeric and month-name dates, in English, German, French, Spanish, Dutch,
//! Italian and Polish. The rules here decide the convention from the string itself and refuse what stays
//! ambiguous.

use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::Regex;
use rust_decimal::Decimal;

/// Which order a numeric date like `03/04/2025` is read in when both readings are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayMonthOrder {
    /// 03/04/2025 is 3 April (Europe, most of the world).
    DayFirst,
    /// 03/04/2025 is 4 March (United States).
    MonthFirst,
}

/// A date found in a line of text, with the byte range it occupied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FoundDate {
    pub date: NaiveDate,
    pub start: usize,
    pub end: usize,
}

/// Parses an amount written in either decimal convention (`1.234,56`, `1,234.56`, `1 234,56`, `1'234.56`,
/// `1234.5`, `-12,00`), keeping the scale as written. `None` when the separators make it ambiguous
/// (`1.234` alone could be either) and the string is not a plain integer.
pub(crate) fn parse_amount(s: &str) -> Option<Decimal> {
    let s = s.trim();
    let (negative, body) = match s.strip_prefix('-').or_else(|| s.strip_prefix('\u{2212}')) {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s),
    };
    let body: String = body.chars().filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\'' | '’')).collect();
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',') {
        return None;
    }
    if !body.starts_with(|c: char| c.is_ascii_digit()) || !body.ends_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let last_dot = body.rfind('.');
    let last_comma = body.rfind(',');
    let decimal_sep = match (last_dot, last_comma) {
        (None, None) => None,
        // Both present: the later one is the decimal separator.
        (Some(d), Some(c)) => Some(if d > c { '.' } else { ',' }),
        (Some(_), None) => single_kind_separator(&body, '.')?,
        (None, Some(_)) => single_kind_separator(&body, ',')?,
    };
    let (int_part, frac_part) = match decimal_sep {
        Some(sep) => {
            let i = body.rfind(sep)?;
            (&body[..i], &body[i + 1..])
        }
        None => (body.as_str(), ""),
    };
    // The integer part may only hold thousands separators of the other kind, in groups of three.
    let groups: Vec<&str> = int_part.split(['.', ',']).collect();
    if groups.len() > 1 && (groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3)) {
        return None;
    }
    let digits: String = groups.concat();
    let text = if frac_part.is_empty() { digits } else { format!("{digits}.{frac_part}") };
    let value = Decimal::from_str(&text).ok()?;
    Some(if negative { -value } else { value })
}

/// The decimal separator when only one kind of separator occurs: `Some(None)` when there is none (repeated
/// means thousands, `1.234.567`), `None` when ambiguous (a single one followed by exactly three digits, as
/// in `1.234`, unless the integer part is `0` or longer than three digits), else `Some(Some(sep))`.
fn single_kind_separator(body: &str, sep: char) -> Option<Option<char>> {
    if body.matches(sep).count() > 1 {
        return Some(None);
    }
    let (int_part, frac) = body.split_once(sep)?;
    if frac.len() == 3 && int_part != "0" && int_part.len() <= 3 {
        return None;
    }
    Some(Some(sep))
}

/// Parses a decimal as e-invoice XML writes it: a dot, an optional sign, no grouping; scale kept.
pub(crate) fn parse_xml_decimal(s: &str) -> Option<Decimal> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    Decimal::from_str(s).ok()
}

/// Parses a date that is the whole string (trimmed).
#[cfg(test)]
pub(crate) fn parse_date(s: &str, order: DayMonthOrder) -> Option<NaiveDate> {
    let s = s.trim();
    find_dates(s, order).into_iter().find(|d| d.start == 0 && d.end == s.len()).map(|d| d.date)
}

/// Payment terms in days: `30 days`, `net 30`, `14 Tage`, `30 jours`, `30 días`, `30 dagen`, `30 giorni`,
/// `14 dni`.
static TERM_DAYS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(\d{1,3})\s*(?:days?|tage?n?|jours?|d[íi]as|dagen|giorni|dni)\b|\bnet\s*(\d{1,3})\b")
        .expect("valid regex")
});

/// The payment terms in days a line states (`30 days`, `14 Tage`, `net 30`, `30 jours`).
pub(crate) fn term_days(line: &str) -> impl Iterator<Item = i64> + '_ {
    TERM_DAYS
        .captures_iter(line)
        .filter_map(|c| c.get(1).or_else(|| c.get(2))?.as_str().parse().ok())
        .filter(|days| *days > 0)
}

/// Payment terms in days that invoices commonly give, for the due date read against the issue date.
const COMMON_TERMS: &[i64] = &[7, 10, 14, 15, 21, 28, 30, 45, 60, 90];

/// How this document writes numeric dates, when it shows: a slash or dash date whose first number is over
/// 12 is day-first, one whose second number is, month-first; failing that, two dates that lie a stated
/// number of days apart (`balance at 30 days`) in one reading only decide, then two that lie a common
/// payment term apart in one reading only. `None` when nothing tells.
pub(crate) fn day_month_order(text: &str) -> Option<DayMonthOrder> {
    let (mut day_first, mut month_first) = (0, 0);
    let mut ambiguous: Vec<(u32, u32, i32)> = Vec::new();
    for c in NUMERIC_DATE.captures_iter(text) {
        if &c[2] == "." {
            continue;
        }
        let (Ok(a), Ok(b), Some(year)) = (c[1].parse::<u32>(), c[3].parse::<u32>(), full_year(&c[4])) else {
            continue;
        };
        match (a > 12, b > 12) {
            (true, false) if b >= 1 => day_first += 1,
            (false, true) if a >= 1 => month_first += 1,
            (false, false) if a >= 1 && b >= 1 => ambiguous.push((a, b, year)),
            _ => {}
        }
    }
    if day_first != month_first {
        return Some(if day_first > month_first { DayMonthOrder::DayFirst } else { DayMonthOrder::MonthFirst });
    }
    let stated: Vec<i64> = term_days(text).collect();
    for terms in [stated.as_slice(), COMMON_TERMS] {
        let fits = |order: DayMonthOrder| {
            let dates: Vec<NaiveDate> = ambiguous
                .iter()
                .filter_map(|&(a, b, y)| {
                    let (d, m) = if order == DayMonthOrder::DayFirst { (a, b) } else { (b, a) };
                    NaiveDate::from_ymd_opt(y, m, d)
                })
                .collect();
            dates.iter().enumerate().any(|(i, first)| {
                dates[i + 1..].iter().any(|second| terms.contains(&(*second - *first).num_days().abs()))
            })
        };
        match (fits(DayMonthOrder::DayFirst), fits(DayMonthOrder::MonthFirst)) {
            (true, false) => return Some(DayMonthOrder::DayFirst),
            (false, true) => return Some(DayMonthOrder::MonthFirst),
            _ => {}
        }
    }
    None
}

/// Whether `date` (a date as printed) is numeric with day and month both 12 or less and different, and not
/// dot-separated (dots are only ever day-first): a date whose reading depends on the day/month order.
pub(crate) fn is_order_ambiguous(date: &str) -> bool {
    NUMERIC_DATE.captures(date.trim()).is_some_and(|c| {
        let (a, b) = (c[1].parse::<u32>().unwrap_or(0), c[3].parse::<u32>().unwrap_or(0));
        &c[2] != "." && (1..=12).contains(&a) && (1..=12).contains(&b) && a != b
    })
}

/// Parses CII's `udt:DateTimeString` (format 102, `YYYYMMDD`; also tolerates ISO `YYYY-MM-DD`).
pub(crate) fn parse_compact_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return ymd(&s[..4], &s[4..6], &s[6..]);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Every date in a line of text, in order of position, non-overlapping.
pub(crate) fn find_dates(line: &str, order: DayMonthOrder) -> Vec<FoundDate> {
    let mut found: Vec<FoundDate> = Vec::new();
    let mut push = |date: Option<NaiveDate>, m: regex::Match<'_>| {
        if let Some(date) = date.filter(plausible_year) {
            if !found.iter().any(|f| m.start() < f.end && f.start < m.end()) {
                found.push(FoundDate { date, start: m.start(), end: m.end() });
            }
        }
    };
    for c in ISO_DATE.captures_iter(line) {
        push(ymd(&c[1], &c[2], &c[3]), c.get(0).expect("group 0"));
    }
    for c in NUMERIC_DATE.captures_iter(line) {
        let (a, sep, b, y) = (&c[1], &c[2], &c[3], &c[4]);
        let (a, b) = (a.parse::<u32>().ok(), b.parse::<u32>().ok());
        let date = match (a, b) {
            (Some(a), Some(b)) => {
                let year = full_year(y);
                // A dot is only ever day-first; otherwise an impossible month decides, then the hint.
                let day_first = sep == "." || a > 12 || (b <= 12 && order == DayMonthOrder::DayFirst);
                let (d, m) = if day_first { (a, b) } else { (b, a) };
                year.and_then(|y| NaiveDate::from_ymd_opt(y, m, d))
            }
            _ => None,
        };
        push(date, c.get(0).expect("group 0"));
    }
    for c in DAY_MONTH_YEAR.captures_iter(line) {
        let date = month_number(&c[2]).and_then(|m| dmy_parts(&c[1], m, &c[3]));
        push(date, c.get(0).expect("group 0"));
    }
    for c in MONTH_DAY_YEAR.captures_iter(line) {
        let date = month_number(&c[1]).and_then(|m| dmy_parts(&c[2], m, &c[3]));
        push(date, c.get(0).expect("group 0"));
    }
    found.sort_by_key(|f| f.start);
    found
}

/// The month names and abbreviations this module reads, lowercase, with their month number.
const MONTHS: &[(&str, u32)] = &[
    // English
    ("january", 1),
    ("february", 2),
    ("march", 3),
    ("april", 4),
    ("may", 5),
    ("june", 6),
    ("july", 7),
    ("august", 8),
    ("september", 9),
    ("october", 10),
    ("november", 11),
    ("december", 12),
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("sept", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
    // German
    ("januar", 1),
    ("jänner", 1),
    ("februar", 2),
    ("märz", 3),
    ("maerz", 3),
    ("mai", 5),
    ("juni", 6),
    ("juli", 7),
    ("oktober", 10),
    ("dezember", 12),
    ("mär", 3),
    ("mrz", 3),
    ("okt", 10),
    ("dez", 12),
    // French
    ("janvier", 1),
    ("février", 2),
    ("fevrier", 2),
    ("mars", 3),
    ("avril", 4),
    ("juin", 6),
    ("juillet", 7),
    ("août", 8),
    ("aout", 8),
    ("septembre", 9),
    ("octobre", 10),
    ("novembre", 11),
    ("décembre", 12),
    ("decembre", 12),
    ("janv", 1),
    ("févr", 2),
    ("fevr", 2),
    ("avr", 4),
    ("juil", 7),
    ("déc", 12),
    // Spanish
    ("enero", 1),
    ("febrero", 2),
    ("marzo", 3),
    ("abril", 4),
    ("mayo", 5),
    ("junio", 6),
    ("julio", 7),
    ("agosto", 8),
    ("septiembre", 9),
    ("setiembre", 9),
    ("octubre", 10),
    ("noviembre", 11),
    ("diciembre", 12),
    ("ene", 1),
    ("abr", 4),
    ("ago", 8),
    ("dic", 12),
    // Dutch
    ("januari", 1),
    ("februari", 2),
    ("maart", 3),
    ("mei", 5),
    ("augustus", 8),
    ("mrt", 3),
    // Italian
    ("gennaio", 1),
    ("febbraio", 2),
    ("aprile", 4),
    ("maggio", 5),
    ("giugno", 6),
    ("luglio", 7),
    ("settembre", 9),
    ("ottobre", 10),
    ("dicembre", 12),
    ("gen", 1),
    ("mag", 5),
    ("giu", 6),
    ("lug", 7),
    ("ott", 10),
    // Polish, in the nominative and in the genitive that dates use ("15 stycznia 2024")
    ("styczeń", 1),
    ("stycznia", 1),
    ("luty", 2),
    ("lutego", 2),
    ("marzec", 3),
    ("marca", 3),
    ("kwiecień", 4),
    ("kwietnia", 4),
    ("maj", 5),
    ("maja", 5),
    ("czerwiec", 6),
    ("czerwca", 6),
    ("lipiec", 7),
    ("lipca", 7),
    ("sierpień", 8),
    ("sierpnia", 8),
    ("wrzesień", 9),
    ("września", 9),
    ("październik", 10),
    ("października", 10),
    ("listopad", 11),
    ("listopada", 11),
    ("grudzień", 12),
    ("grudnia", 12),
];

fn month_number(name: &str) -> Option<u32> {
    let name = name.trim_end_matches('.').to_lowercase();
    MONTHS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

/// The alternation of all month names, longest first so that `september` wins over `sep`.
static MONTH_ALTERNATION: LazyLock<String> = LazyLock::new(|| {
    let mut names: Vec<&str> = MONTHS.iter().map(|(n, _)| *n).collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.chars().count()));
    names.iter().map(|n| regex::escape(n)).collect::<Vec<_>>().join("|")
});

static ISO_DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b").expect("valid regex"));
static NUMERIC_DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{1,2})([./-])(\d{1,2})[./-](\d{4}|\d{2})\b").expect("valid regex"));
static DAY_MONTH_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i)\b(\d{{1,2}})(?:st|nd|rd|th|er|º)?\.?[\s-]+(?:de\s+)?({})\.?,?[\s-]+(?:de\s+|del\s+)?(\d{{4}})\b",
        *MONTH_ALTERNATION
    ))
    .expect("valid regex")
});
static MONTH_DAY_YEAR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)\b({})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:\s?,)?\s+(\d{{4}})\b", *MONTH_ALTERNATION))
        .expect("valid regex")
});

fn ymd(y: &str, m: &str, d: &str) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

fn dmy_parts(d: &str, month: u32, y: &str) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y.parse().ok()?, month, d.parse().ok()?)
}

/// Two-digit years are this century; invoices from the 1900s are not NOVA's concern.
fn full_year(y: &str) -> Option<i32> {
    let n: i32 = y.parse().ok()?;
    Some(if y.len() == 2 { 2000 + n } else { n })
}

fn plausible_year(date: &NaiveDate) -> bool {
    (1990..=2100).contains(&date.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_amount(input: &str, expected: Option<&str>) {
        let got = parse_amount(input).map(|d| d.to_string());
        assert_eq!(got.as_deref(), expected, "parse_amount({input:?})");
    }

    #[test]
    fn amounts_in_both_conventions() {
        check_amount("681.87", Some("681.87"));
        check_amount("1.234,56", Some("1234.56"));
        check_amount("1,234.56", Some("1234.56"));
        check_amount("1 234,56", Some("1234.56"));
        check_amount("1\u{a0}234,56", Some("1234.56"));
        check_amount("1'234.50", Some("1234.50"));
        check_amount("12.345.678,90", Some("12345678.90"));
        check_amount("12,345,678.90", Some("12345678.90"));
        check_amount("80,65", Some("80.65"));
        check_amount("0,125", Some("0.125"));
        check_amount("1234.5", Some("1234.5"));
        check_amount("1234", Some("1234"));
        check_amount("1.234.567", Some("1234567"));
        check_amount("-12,00", Some("-12.00"));
        check_amount("191.00000", Some("191.00000"));
        check_amount("1234,567", Some("1234.567"));
    }

    #[test]
    fn ambiguous_or_malformed_amounts_are_refused() {
        check_amount("1.234", None);
        check_amount("1,234", None);
        check_amount("12,34,56.00", None);
        check_amount("1.2345,00", None);
        check_amount("", None);
        check_amount("abc", None);
        check_amount("12.", None);
        check_amount(".5", None);
        check_amount("1,2.3,4", None);
    }

    fn check_date(input: &str, order: DayMonthOrder, expected: Option<&str>) {
        let got = parse_date(input, order).map(|d| d.to_string());
        assert_eq!(got.as_deref(), expected, "parse_date({input:?}, {order:?})");
    }

    #[test]
    fn numeric_dates() {
        use DayMonthOrder::*;
        check_date("2026-02-17", DayFirst, Some("2026-02-17"));
        check_date("2026/02/17", MonthFirst, Some("2026-02-17"));
        check_date("17.02.2026", MonthFirst, Some("2026-02-17"));
        check_date("03.04.2025", MonthFirst, Some("2025-04-03"));
        check_date("31/08/2022", MonthFirst, Some("2022-08-31"));
        check_date("08/31/2022", DayFirst, Some("2022-08-31"));
        check_date("03/04/2025", DayFirst, Some("2025-04-03"));
        check_date("03/04/2025", MonthFirst, Some("2025-03-04"));
        check_date("02/17/26", DayFirst, Some("2026-02-17"));
        check_date("1.2.2020", DayFirst, Some("2020-02-01"));
        check_date("17-02-2026", DayFirst, Some("2026-02-17"));
        check_date("31.02.2026", DayFirst, None);
        check_date("13/13/2020", DayFirst, None);
        check_date("2026-13-01", DayFirst, None);
        check_date("12.34.56", DayFirst, None);
    }

    #[test]
    fn the_document_tells_its_day_month_order() {
        use DayMonthOrder::*;
        assert_eq!(day_month_order("Date 03/04/2025\nDelivered 25/03/2025"), Some(DayFirst));
        assert_eq!(day_month_order("Date 03/04/2025\nDelivered 03/25/2025"), Some(MonthFirst));
        // Dots are day-first in every country, so they say nothing about the slashes.
        assert_eq!(day_month_order("Printed 25.03.2025\nDate 03/04/2025"), None);
        // Issue and due date 30 days apart as stated: 3 Nov to 3 Dec, not 11 March to 12 March.
        let terms = "Invoice Date 11/03/2017\nPayment terms: 30 days\nDue Date 12/03/2017";
        assert_eq!(day_month_order(terms), Some(MonthFirst));
        // 5 March to 4 April, not 3 May to 4 April.
        assert_eq!(day_month_order("Date 05/03/2017, net 30, due 04/04/2017"), Some(DayFirst));
        // Without stated terms, a common term in one reading only: 1 Feb + 10 days, not 2 Jan to 2 Nov;
        // 5 Jan + 30 days, not 1 May to 2 April.
        assert_eq!(day_month_order("Date 01/02/2024\nDue 11/02/2024"), Some(DayFirst));
        assert_eq!(day_month_order("Date 01/05/2024\nDue 02/04/2024"), Some(MonthFirst));
        assert_eq!(day_month_order("Date 01/02/2024\nDue 02/01/2024"), None);
        assert_eq!(day_month_order("Date 05/06/2024"), None);
    }

    #[test]
    fn dates_with_month_names() {
        use DayMonthOrder::*;
        check_date("February 17, 2026", DayFirst, Some("2026-02-17"));
        check_date("Sep 13, 2022", DayFirst, Some("2022-09-13"));
        check_date("August 3 , 2014", DayFirst, Some("2014-08-03"));
        check_date("13 Sep, 2022", DayFirst, Some("2022-09-13"));
        check_date("17 February 2026", MonthFirst, Some("2026-02-17"));
        check_date("3rd March 2021", DayFirst, Some("2021-03-03"));
        check_date("17. Februar 2026", DayFirst, Some("2026-02-17"));
        check_date("1. März 2024", DayFirst, Some("2024-03-01"));
        check_date("5. Okt. 2023", DayFirst, Some("2023-10-05"));
        check_date("17 février 2026", DayFirst, Some("2026-02-17"));
        check_date("1er août 2023", DayFirst, Some("2023-08-01"));
        check_date("12 DÉCEMBRE 2022", DayFirst, Some("2022-12-12"));
        check_date("3 de marzo de 2024", DayFirst, Some("2024-03-03"));
        check_date("29 maart 2014", DayFirst, Some("2014-03-29"));
        check_date("1 mei 2023", DayFirst, Some("2023-05-01"));
        check_date("15 settembre 2023", DayFirst, Some("2023-09-15"));
        check_date("15 stycznia 2024", DayFirst, Some("2024-01-15"));
        check_date("2 października 2024", DayFirst, Some("2024-10-02"));
        check_date("17-Feb-2026", DayFirst, Some("2026-02-17"));
        check_date("Februar 2026", DayFirst, None);
        check_date("30 February 2026", DayFirst, None);
    }

    #[test]
    fn dates_are_found_inside_lines_in_order() {
        let found = find_dates("Billing Period— Sep 13, 2022 to 13.09.2023", DayMonthOrder::DayFirst);
        let dates: Vec<String> = found.iter().map(|f| f.date.to_string()).collect();
        assert_eq!(dates, ["2022-09-13", "2023-09-13"]);
        assert!(find_dates("Invoice 103767, phone 999 / 9 99 99 99", DayMonthOrder::DayFirst).is_empty());
    }

    #[test]
    fn compact_xml_dates() {
        assert_eq!(parse_compact_date("20260217"), NaiveDate::from_ymd_opt(2026, 2, 17));
        assert_eq!(parse_compact_date(" 2026-02-17 "), NaiveDate::from_ymd_opt(2026, 2, 17));
        assert_eq!(parse_compact_date("2026021"), None);
    }
}
