//! The values a template extracts, and how it reads numbers and dates: by the template's own options
//! (`decimal_separator`, `date_formats`, `languages`) first, as invoice2data does.

use std::collections::BTreeMap;
use std::str::FromStr;

use std::sync::LazyLock;

use chrono::{NaiveDate, NaiveDateTime};
use regex::Regex;
use rust_decimal::Decimal;

use crate::parse::{find_dates, DayMonthOrder};

/// One extracted value. A field that matched several times holds a [`Value::List`]; a `lines` parser or
/// table gives [`Value::Rows`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Text(String),
    Number(Decimal),
    Date(NaiveDate),
    List(Vec<Value>),
    Rows(Vec<Row>),
}

/// One item line (or one VAT row): sub-field name to value.
pub(crate) type Row = BTreeMap<String, Value>;

/// How a captured string is converted (`type:` in a template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Float,
    Date,
}

impl Kind {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "int" => Some(Kind::Int),
            "float" => Some(Kind::Float),
            "date" | "datetime" => Some(Kind::Date),
            _ => None,
        }
    }
}

/// How several matches of one field become one value (`group:` in a template).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Sum,
    Min,
    Max,
    First,
    Last,
    Join,
}

impl Group {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "sum" => Some(Group::Sum),
            "min" => Some(Group::Min),
            "max" => Some(Group::Max),
            "first" => Some(Group::First),
            "last" => Some(Group::Last),
            "join" => Some(Group::Join),
            _ => None,
        }
    }
}

/// The options of a template that decide how numbers and dates read.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// `.` or `,`; the other one is the thousands separator.
    pub decimal_separator: char,
    /// Python `strptime` formats, tried in order.
    pub date_formats: Vec<String>,
    /// Two-letter language codes.
    pub languages: Vec<String>,
}

impl Default for Reading {
    fn default() -> Self {
        Self { decimal_separator: '.', date_formats: Vec::new(), languages: Vec::new() }
    }
}

impl Reading {
    /// Converts a captured string; `None` when it does not read as the kind.
    pub(crate) fn coerce(&self, raw: &str, kind: Kind) -> Option<Value> {
        match kind {
            Kind::Float => self.number(raw).map(Value::Number),
            Kind::Int => self.number(raw).map(|n| Value::Number(n.trunc())),
            Kind::Date => self.date(raw).map(Value::Date),
        }
    }

    /// A number by the template's decimal separator: the other separator, spaces and apostrophes are
    /// thousands separators and dropped. An empty capture is zero, as invoice2data reads it.
    pub(crate) fn number(&self, raw: &str) -> Option<Decimal> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Some(Decimal::ZERO);
        }
        let decimal = self.decimal_separator;
        if raw.matches(decimal).count() > 1 {
            return None;
        }
        let thousands = if decimal == ',' { '.' } else { ',' };
        let cleaned: String = raw
            .chars()
            .filter(|&c| c != thousands && c != '\'' && !c.is_whitespace())
            .map(|c| if c == decimal { '.' } else { c })
            .collect();
        let cleaned = cleaned.strip_prefix('+').unwrap_or(&cleaned);
        Decimal::from_str(cleaned).ok()
    }

    /// A date by the template's `date_formats`, else by the generic date rules (month first for English or
    /// no language, as invoice2data's fallback reads `03/04/2025`; day first otherwise).
    pub(crate) fn date(&self, raw: &str) -> Option<NaiveDate> {
        let raw = raw.trim();
        if raw.is_empty() {
            return None;
        }
        self.date_as_written(raw).or_else(|| {
            // A text layer often spaces a date loosely (`August 3 , 2014`): read it once more, tidied.
            let tidy = LOOSE_SPACE.replace_all(raw, " ").replace(" ,", ",").replace(" .", ".");
            (tidy != raw).then(|| self.date_as_written(&tidy)).flatten()
        })
    }

    fn date_as_written(&self, raw: &str) -> Option<NaiveDate> {
        for format in &self.date_formats {
            let format = chrono_format(format);
            if let Ok(date) = NaiveDate::parse_from_str(raw, &format) {
                return Some(date);
            }
            if let Ok(datetime) = NaiveDateTime::parse_from_str(raw, &format) {
                return Some(datetime.date());
            }
        }
        let english = self.languages.is_empty() || self.languages.iter().any(|l| l == "en");
        let order = if english { DayMonthOrder::MonthFirst } else { DayMonthOrder::DayFirst };
        find_dates(raw, order).first().map(|found| found.date)
    }
}

static LOOSE_SPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("the pattern is valid"));

/// Python's `strptime` directives are chrono's, except `%f` (microseconds, any width here) and `%-d`-style
/// flags, which `strptime` does not know anyway.
fn chrono_format(python: &str) -> String {
    python.replace("%f", "%.f")
}

impl Value {
    /// Python's truthiness, which decides what `group:` keeps: no empty text, no zero, no empty list.
    pub(crate) fn is_truthy(&self) -> bool {
        match self {
            Value::Text(s) => !s.is_empty(),
            Value::Number(n) => !n.is_zero(),
            Value::Date(_) => true,
            Value::List(items) => !items.is_empty(),
            Value::Rows(rows) => !rows.is_empty(),
        }
    }

    /// The value as one scalar: a list gives its first element (its first match in the document).
    pub(crate) fn first(&self) -> Option<&Value> {
        match self {
            Value::List(items) => items.first().and_then(Value::first),
            Value::Rows(_) => None,
            scalar => Some(scalar),
        }
    }

    /// The value as text, for a field that is a name or an identifier.
    pub(crate) fn text(&self) -> Option<String> {
        match self.first()? {
            Value::Text(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Date(d) => Some(d.to_string()),
            Value::List(_) | Value::Rows(_) => None,
        }
    }

    /// The value as an amount; text is read with the template's decimal separator.
    pub(crate) fn amount(&self, reading: &Reading) -> Option<Decimal> {
        match self.first()? {
            Value::Number(n) => Some(*n),
            Value::Text(s) => reading.number(s).filter(|_| !s.trim().is_empty()),
            _ => None,
        }
    }

    /// The value as a date; text is read with the template's date formats.
    pub(crate) fn date(&self, reading: &Reading) -> Option<NaiveDate> {
        match self.first()? {
            Value::Date(d) => Some(*d),
            Value::Text(s) => reading.date(s),
            _ => None,
        }
    }
}

/// Reduces several values by a `group:` rule, after dropping the empty ones as invoice2data does. `None`
/// when nothing is left, or when a sum or comparison meets values it cannot combine.
pub(crate) fn apply_group(values: Vec<Value>, group: Group) -> Option<Value> {
    let values: Vec<Value> = values.into_iter().filter(Value::is_truthy).collect();
    if values.is_empty() {
        return None;
    }
    match group {
        Group::First => values.into_iter().next(),
        Group::Last => values.into_iter().last(),
        Group::Join => {
            let texts: Vec<String> = values.iter().filter_map(Value::text).collect();
            Some(Value::Text(texts.join(" ")))
        }
        Group::Sum => {
            let numbers = numbers(&values)?;
            Some(Value::Number(numbers.iter().sum()))
        }
        Group::Min | Group::Max => {
            if let Some(numbers) = numbers(&values) {
                let pick = if group == Group::Min { numbers.iter().min() } else { numbers.iter().max() };
                return pick.copied().map(Value::Number);
            }
            let dates: Option<Vec<NaiveDate>> =
                values.iter().map(|v| if let Value::Date(d) = v { Some(*d) } else { None }).collect();
            let dates = dates?;
            let pick = if group == Group::Min { dates.iter().min() } else { dates.iter().max() };
            pick.copied().map(Value::Date)
        }
    }
}

fn numbers(values: &[Value]) -> Option<Vec<Decimal>> {
    values.iter().map(|v| if let Value::Number(n) = v { Some(*n) } else { None }).collect()
}
