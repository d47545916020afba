//! Running a matched template over a document's text: the text prepared by the template's options, then
//! each field's parser, the legacy `lines` section and the `tables`, with invoice2data's semantics.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::load::{BlockRule, FieldRule, LinesRule, RegexRule, Replace, TableRule, Template};
use super::values::{apply_group, Row, Value};

/// What a template found: invoice2data's field names to values.
pub(crate) type Fields = BTreeMap<String, Value>;

impl Template {
    /// The text prepared for this template when the template matches it: every keyword and no excluded
    /// keyword occurs, as plain substrings, in the text as given or, for a template that normalises its
    /// input (spaces, accents, case), in the prepared text. `None` when it does not match.
    pub(crate) fn match_text<'t>(&self, text: &'t str) -> Option<Cow<'t, str>> {
        if self.keywords_in(text) {
            return Some(self.prepare(text));
        }
        let o = &self.options;
        if !(o.remove_whitespace || o.remove_accents || o.lowercase) {
            return None;
        }
        let prepared = self.prepare(text);
        self.keywords_in(&prepared).then_some(prepared)
    }

    fn keywords_in(&self, text: &str) -> bool {
        self.keywords.iter().all(|k| text.contains(k.as_str()))
            && !self.exclude_keywords.iter().any(|k| text.contains(k.as_str()))
    }

    /// The text as the template's options want it: spaces removed, accents removed, lowercased, then its
    /// own substitutions.
    pub(crate) fn prepare<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let o = &self.options;
        let mut out = Cow::Borrowed(text);
        if o.remove_whitespace {
            out = Cow::Owned(out.replace(' ', ""));
        }
        if o.remove_accents {
            out = Cow::Owned(out.nfkd().filter(|c| !('\u{300}'..='\u{362}').contains(c)).collect());
        }
        if o.lowercase {
            out = Cow::Owned(out.to_lowercase());
        }
        for r in &o.replace {
            if let Cow::Owned(s) = r.pattern.replace_all(&out, r.with.as_str()) {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// Runs every field rule, the `lines` section and the tables over the prepared text.
    pub(crate) fn extract(&self, prepared: &str) -> Fields {
        // The issuer first: a field of that name overrides it.
        let mut out = Fields::from([("issuer".to_string(), Value::Text(self.issuer.clone()))]);
        for (name, rule) in &self.fields {
            let value = match rule {
                FieldRule::Regex(rule) => self.regex_field(rule, prepared),
                FieldRule::Static(value) => Some(value.clone()),
                FieldRule::Lines(rule) => Some(Value::Rows(self.lines_field(rule, prepared))),
            };
            match value {
                Some(value) if value.is_truthy() || matches!(value, Value::Number(_)) => {
                    out.insert(name.clone(), value);
                }
                _ => tracing::debug!(template = %self.name, field = %name, "field not found"),
            }
        }
        if let Some(rule) = &self.lines {
            out.insert("lines".into(), Value::Rows(self.lines_field(rule, prepared)));
        }
        for table in &self.tables {
            if let Some(found) = self.table(table, prepared) {
                out.extend(found);
            }
        }
        out.entry("currency".into()).or_insert_with(|| Value::Text(self.options.currency.clone()));
        out
    }

    /// Every match of every regex, each as its one capture group (or whole match without one), then
    /// replaced, reduced to a number, typed and grouped. Several distinct values stay a list.
    fn regex_field(&self, rule: &RegexRule, text: &str) -> Option<Value> {
        let mut found: Vec<String> = Vec::new();
        for pattern in &rule.patterns {
            // invoice2data refuses a field regex with several capture groups.
            if pattern.captures_len() > 2 {
                return None;
            }
            for caps in pattern.captures_iter(text) {
                let m = caps.get(1).or_else(|| caps.get(0).filter(|_| pattern.captures_len() == 1));
                found.push(m.map_or("", |m| m.as_str()).to_string());
            }
        }
        if found.is_empty() {
            return None;
        }
        let mut values: Vec<Value> = found
            .into_iter()
            .map(|raw| replace_all(&rule.replace, raw))
            .map(|raw| if rule.extract_number { first_number(&raw).unwrap_or(raw) } else { raw })
            .filter_map(|raw| match rule.kind {
                Some(kind) => self.options.reading.coerce(&raw, kind),
                None => Some(Value::Text(raw)),
            })
            .collect();
        if let Some(group) = rule.group {
            values = vec![apply_group(values, group)?];
        }
        let mut distinct: Vec<Value> = Vec::new();
        for value in values {
            if !distinct.contains(&value) {
                distinct.push(value);
            }
        }
        match distinct.len() {
            0 => None,
            1 => distinct.pop(),
            _ => Some(Value::List(distinct)),
        }
    }

    /// The `lines` parser: each rule's blocks from `start` to `end`, in order through the text.
    fn lines_field(&self, rule: &LinesRule, text: &str) -> Vec<Row> {
        let mut rows = Vec::new();
        for block in &rule.rules {
            let mut rest = text;
            while let Some(start) = block.start.find(rest) {
                rest = &rest[start.end()..];
                let end = if block.end_at_last { block.end.find_iter(rest).last() } else { block.end.find(rest) };
                let Some(end) = end else { break };
                rows.extend(self.block_rows(block, &rest[..end.start()]));
                if end.end() == 0 && start.end() == start.start() {
                    break; // both regexes match the empty string: no progress
                }
                rest = &rest[end.end()..];
            }
        }
        rows
    }

    /// The rows of one block: a `first_line` match opens a row, `line` matches add to it (a repeated
    /// sub-field is joined by a newline), a `last_line` match closes it.
    fn block_rows(&self, block: &BlockRule, body: &str) -> Vec<Row> {
        let mut rows: Vec<BTreeMap<String, String>> = Vec::new();
        let mut current: BTreeMap<String, String> = BTreeMap::new();
        let mut open = false;
        for line in block.line_separator.split(body) {
            if line.trim_matches(['\n', '\r']).is_empty() || block.skip_line.iter().any(|p| p.is_match(line)) {
                continue;
            }
            if let Some(groups) = first_match(&block.first_line, line) {
                if !current.is_empty() {
                    rows.push(std::mem::take(&mut current));
                }
                current = groups.into_iter().map(|(k, v)| (k, v.trim().to_string())).collect();
                open = true;
                continue;
            }
            if !open {
                continue;
            }
            if let Some(groups) = first_match(&block.last_line, line) {
                append_groups(&mut current, groups);
                if !current.is_empty() {
                    rows.push(std::mem::take(&mut current));
                }
                open = false;
                continue;
            }
            if let Some(groups) = first_match(&block.line, line) {
                append_groups(&mut current, groups);
            }
        }
        if !current.is_empty() {
            rows.push(current);
        }
        rows.into_iter()
            .map(|row| {
                row.into_iter()
                    .filter_map(|(name, raw)| {
                        let raw = match block.replace.get(&name) {
                            Some(replace) => replace_all(replace, raw),
                            None => raw,
                        };
                        let value = match block.types.get(&name) {
                            Some(&kind) => self.options.reading.coerce(&raw, kind)?,
                            None => Value::Text(raw),
                        };
                        Some((name, value))
                    })
                    .collect()
            })
            .collect()
    }

    /// The `tables` plugin: between `start` and `end` (each searched from the top), every line that
    /// matches `body` gives its named groups; a field seen twice becomes a list.
    fn table(&self, table: &TableRule, text: &str) -> Option<Fields> {
        let start = table.start.find(text)?;
        let end = table.end.find(text)?;
        let body = text.get(start.end()..end.start()).unwrap_or("");
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for line in table.line_separator.split(body) {
            if line.trim().is_empty() {
                continue;
            }
            let Some(caps) = table.body.captures(line) else { continue };
            for (name, raw) in matched_groups(&table.body, &caps) {
                let reading = &self.options.reading;
                let value = if name.starts_with("date") || name.ends_with("date") {
                    // invoice2data drops the whole table when one of its dates does not read.
                    Value::Date(reading.date(raw)?)
                } else if name.starts_with("amount") {
                    Value::Number(reading.number(raw)?)
                } else if let Some(&kind) = table.types.get(&name) {
                    reading.coerce(raw, kind)?
                } else {
                    Value::Text(raw.to_string())
                };
                out.entry(name).or_default().push(value);
            }
        }
        Some(
            out.into_iter()
                .filter_map(|(name, mut values)| {
                    let value = match table.groups.get(&name) {
                        Some(&group) => apply_group(values, group)?,
                        None if values.len() == 1 => values.pop()?,
                        None => Value::List(values),
                    };
                    Some((name, value))
                })
                .collect(),
        )
    }
}

/// The first of `patterns` to match the line, with its named groups (a group that did not take part is
/// empty text, as in Python).
fn first_match<'t>(patterns: &[Regex], line: &'t str) -> Option<Vec<(String, &'t str)>> {
    patterns.iter().find_map(|p| p.captures(line).map(|caps| named_groups(p, &caps)))
}

fn named_groups<'t>(pattern: &Regex, caps: &regex::Captures<'t>) -> Vec<(String, &'t str)> {
    pattern
        .capture_names()
        .flatten()
        .map(|name| (name.to_string(), caps.name(name).map_or("", |m| m.as_str())))
        .collect()
}

/// The named groups that took part in a match (a table row's alternatives fill different fields).
fn matched_groups<'t>(pattern: &Regex, caps: &regex::Captures<'t>) -> Vec<(String, &'t str)> {
    pattern.capture_names().flatten().filter_map(|name| Some((name.to_string(), caps.name(name)?.as_str()))).collect()
}

fn append_groups(row: &mut BTreeMap<String, String>, groups: Vec<(String, &str)>) {
    for (name, value) in groups {
        let slot = row.entry(name).or_default();
        if !slot.is_empty() {
            slot.push('\n');
        }
        slot.push_str(value.trim());
    }
}

fn replace_all(replacements: &[Replace], mut value: String) -> String {
    for r in replacements {
        if let Cow::Owned(s) = r.pattern.replace_all(&value, r.with.as_str()) {
            value = s;
        }
    }
    value
}

/// The first number in a capture that holds more (`12123 Stk.`, `€25.50`), for `extract_number`.
fn first_number(raw: &str) -> Option<String> {
    static NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[-+]?\d+(?:[.,\s']\d+)*").expect("the number pattern is valid"));
    NUMBER.find(raw).map(|m| m.as_str().to_string())
}
