//! Reading one template file: invoice2data's YAML (or JSON) into a checked [`Template`], every regex
//! compiled once.
//!
//! The format is read loosely where invoice2data is loose (a keyword or a regex may be one string or a
//! list; a static value may be a number) and strictly where a mistake would go unnoticed (an unknown
//! parser, type or group, a regex that does not compile are errors naming the field).

use std::collections::BTreeMap;

use regex::Regex;
use serde_norway::{Mapping, Value as Yaml};

use super::values::{Group, Kind, Reading, Value};
use super::TemplateError;

/// One vendor template, ready to match and run.
#[derive(Debug)]
pub struct Template {
    /// The file name, as invoice2data reports it (`com.amazon.aws.yml`).
    pub(crate) name: String,
    /// The seller's name (`issuer:`, or the first keyword).
    pub(crate) issuer: String,
    pub(crate) keywords: Vec<String>,
    pub(crate) exclude_keywords: Vec<String>,
    /// Higher is tried first; 5 when not given.
    pub(crate) priority: i64,
    /// Fields without which the template has not really matched.
    pub(crate) required_fields: Vec<String>,
    pub(crate) fields: Vec<(String, FieldRule)>,
    /// The legacy top-level `lines:` section.
    pub(crate) lines: Option<LinesRule>,
    pub(crate) tables: Vec<TableRule>,
    pub(crate) options: Options,
}

/// How one field is found.
#[derive(Debug)]
pub(crate) enum FieldRule {
    Regex(RegexRule),
    Static(Value),
    Lines(LinesRule),
}

#[derive(Debug)]
pub(crate) struct RegexRule {
    pub patterns: Vec<Regex>,
    pub kind: Option<Kind>,
    pub group: Option<Group>,
    pub replace: Vec<Replace>,
    pub extract_number: bool,
}

/// A regex substitution, the replacement already in the `regex` crate's syntax.
#[derive(Debug)]
pub(crate) struct Replace {
    pub pattern: Regex,
    pub with: String,
}

/// The `lines` parser: one or more rules, each a block between `start` and `end` read line by line.
#[derive(Debug)]
pub(crate) struct LinesRule {
    pub rules: Vec<BlockRule>,
}

#[derive(Debug)]
pub(crate) struct BlockRule {
    pub start: Regex,
    pub end: Regex,
    /// `end_match: last`: the block ends at the last match of `end`, not the first.
    pub end_at_last: bool,
    pub line: Vec<Regex>,
    pub first_line: Vec<Regex>,
    pub last_line: Vec<Regex>,
    pub skip_line: Vec<Regex>,
    pub line_separator: Regex,
    pub types: BTreeMap<String, Kind>,
    pub replace: BTreeMap<String, Vec<Replace>>,
}

/// The `tables` plugin: one regex per line of a block, named groups become fields.
#[derive(Debug)]
pub(crate) struct TableRule {
    pub start: Regex,
    pub end: Regex,
    pub body: Regex,
    pub line_separator: Regex,
    pub types: BTreeMap<String, Kind>,
    pub groups: BTreeMap<String, Group>,
}

#[derive(Debug)]
pub(crate) struct Options {
    pub currency: String,
    pub reading: Reading,
    pub remove_whitespace: bool,
    pub remove_accents: bool,
    pub lowercase: bool,
    pub replace: Vec<Replace>,
}

/// Parses and checks one template; `name` is its file name.
pub(crate) fn template(name: &str, source: &str) -> Result<Template, TemplateError> {
    let invalid = |reason: String| TemplateError::Invalid { file: name.to_string(), reason };
    let LastWins(yaml) =
        serde_norway::from_str(source).map_err(|e| TemplateError::Yaml { file: name.to_string(), source: e })?;
    let Yaml::Mapping(map) = yaml else {
        return Err(invalid("the template is not a mapping of keys".into()));
    };
    let ctx = Ctx { file: name };

    let keywords = strings(map.get("keywords")).ok_or_else(|| invalid("`keywords` is missing".into()))?;
    if keywords.is_empty() {
        return Err(invalid("`keywords` is empty".into()));
    }
    let exclude_keywords = strings(map.get("exclude_keywords")).unwrap_or_default();
    let issuer = map.get("issuer").and_then(scalar_text).unwrap_or_else(|| keywords[0].clone());
    let priority = match map.get("priority") {
        None => 5,
        Some(v) => v.as_i64().ok_or_else(|| invalid("`priority` is not a whole number".into()))?,
    };
    let required_fields = strings(map.get("required_fields"))
        .unwrap_or_else(|| ["date", "amount", "invoice_number", "issuer"].map(String::from).to_vec());
    let options = ctx.options(map.get("options"))?;

    let mut fields = Vec::new();
    if let Some(spec) = map.get("fields") {
        let spec = spec.as_mapping().ok_or_else(|| invalid("`fields` is not a mapping".into()))?;
        for (key, value) in spec {
            let key = scalar_text(key).ok_or_else(|| invalid("a field name is not text".into()))?;
            if let Some((key, rule)) = ctx.field(&key, value)? {
                fields.push((key, rule));
            }
        }
    }
    let lines = map.get("lines").map(|spec| ctx.lines_rule("lines", spec)).transpose()?;
    let tables = match map.get("tables") {
        None => Vec::new(),
        Some(Yaml::Sequence(tables)) => tables.iter().map(|t| ctx.table(t)).collect::<Result<_, _>>()?,
        Some(table @ Yaml::Mapping(_)) => vec![ctx.table(table)?],
        Some(_) => return Err(invalid("`tables` is not a list".into())),
    };
    Ok(Template {
        name: name.to_string(),
        issuer,
        keywords,
        exclude_keywords,
        priority,
        required_fields,
        fields,
        lines,
        tables,
        options,
    })
}

/// The file being read, for error messages.
struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn invalid(&self, reason: impl Into<String>) -> TemplateError {
        TemplateError::Invalid { file: self.file.to_string(), reason: reason.into() }
    }

    fn regex(&self, field: &str, pattern: &str) -> Result<Regex, TemplateError> {
        Regex::new(&python_pattern(pattern)).map_err(|source| TemplateError::Regex {
            file: self.file.to_string(),
            field: field.to_string(),
            source: Box::new(source),
        })
    }

    fn regexes(&self, field: &str, spec: Option<&Yaml>) -> Result<Vec<Regex>, TemplateError> {
        let patterns = strings(spec).ok_or_else(|| self.invalid(format!("`{field}` is not a regex or a list")))?;
        patterns.iter().map(|p| self.regex(field, p)).collect()
    }

    fn required_regex(&self, field: &str, key: &str, spec: &Mapping) -> Result<Regex, TemplateError> {
        let pattern = spec
            .get(key)
            .and_then(scalar_text)
            .ok_or_else(|| self.invalid(format!("`{field}` has no `{key}` regex")))?;
        self.regex(field, &pattern)
    }

    /// One entry of `fields:`; `None` for an entry invoice2data ignores (a mapping without `parser`).
    fn field(&self, key: &str, spec: &Yaml) -> Result<Option<(String, FieldRule)>, TemplateError> {
        if let Some(map) = spec.as_mapping() {
            let Some(parser) = map.get("parser") else { return Ok(None) };
            let rule = match parser.as_str() {
                Some("regex") => FieldRule::Regex(self.regex_rule(key, map, None)?),
                Some("static") => {
                    let value = map.get("value").ok_or_else(|| self.invalid(format!("`{key}` has no `value`")))?;
                    FieldRule::Static(static_value(value))
                }
                Some("lines") => FieldRule::Lines(self.lines_rule(key, spec)?),
                _ => return Err(self.invalid(format!("`{key}` has an unknown parser {parser:?}"))),
            };
            return Ok(Some((key.to_string(), rule)));
        }
        // The legacy short form: `name: regex` (or a list of regexes), typed by the field's name.
        if let Some(name) = key.strip_prefix("static_") {
            return Ok(Some((name.to_string(), FieldRule::Static(static_value(spec)))));
        }
        let patterns = self.regexes(key, Some(spec))?;
        let rule = |kind, group| RegexRule { patterns, kind, group, replace: Vec::new(), extract_number: false };
        let entry = if key.starts_with("sum_amount") && spec.is_sequence() {
            (key["sum_".len()..].to_string(), rule(Some(Kind::Float), Some(Group::Sum)))
        } else if key.starts_with("date") || key.ends_with("date") {
            (key.to_string(), rule(Some(Kind::Date), None))
        } else if key.starts_with("amount") {
            (key.to_string(), rule(Some(Kind::Float), None))
        } else {
            (key.to_string(), rule(None, None))
        };
        Ok(Some((entry.0, FieldRule::Regex(entry.1))))
    }

    fn regex_rule(&self, key: &str, map: &Mapping, kind: Option<Kind>) -> Result<RegexRule, TemplateError> {
        let patterns = self.regexes(key, map.get("regex"))?;
        let kind = match map.get("type") {
            None => kind,
            Some(t) => Some(self.kind(key, t)?),
        };
        let group = map.get("group").map(|g| self.group(key, g)).transpose()?;
        let replace = map.get("replace").map(|r| self.replacements(key, r)).transpose()?.unwrap_or_default();
        let extract_number = map.get("extract_number").and_then(Yaml::as_bool).unwrap_or(false);
        Ok(RegexRule { patterns, kind, group, replace, extract_number })
    }

    fn kind(&self, key: &str, spec: &Yaml) -> Result<Kind, TemplateError> {
        spec.as_str().and_then(Kind::parse).ok_or_else(|| self.invalid(format!("`{key}` has an unknown type {spec:?}")))
    }

    fn group(&self, key: &str, spec: &Yaml) -> Result<Group, TemplateError> {
        spec.as_str()
            .and_then(Group::parse)
            .ok_or_else(|| self.invalid(format!("`{key}` has an unknown group {spec:?}")))
    }

    fn types(&self, key: &str, spec: Option<&Yaml>) -> Result<BTreeMap<String, Kind>, TemplateError> {
        let mut types = BTreeMap::new();
        if let Some(spec) = spec.and_then(Yaml::as_mapping) {
            for (name, kind) in spec {
                let name = scalar_text(name).ok_or_else(|| self.invalid(format!("`{key}` has a type without name")))?;
                types.insert(name, self.kind(key, kind)?);
            }
        }
        Ok(types)
    }

    /// A `replace:` setting: one `[pattern, replacement]` pair or a list of them.
    fn replacements(&self, key: &str, spec: &Yaml) -> Result<Vec<Replace>, TemplateError> {
        let bad = || self.invalid(format!("`{key}` has a `replace` that is not [pattern, replacement] pairs"));
        let seq = spec.as_sequence().ok_or_else(bad)?;
        let pairs: Vec<&Yaml> =
            if seq.len() == 2 && seq.iter().all(|v| v.is_string()) { vec![spec] } else { seq.iter().collect() };
        pairs
            .into_iter()
            .map(|pair| {
                let pair = pair.as_sequence().filter(|p| p.len() == 2).ok_or_else(bad)?;
                let (pattern, with) = (scalar_text(&pair[0]).ok_or_else(bad)?, scalar_text(&pair[1]).ok_or_else(bad)?);
                Ok(Replace { pattern: self.regex(key, &pattern)?, with: python_replacement(&with) })
            })
            .collect()
    }

    /// A `lines` section: a mapping holding one rule or a `rules:` list of them, or (as some templates
    /// write it) a bare list of rules.
    fn lines_rule(&self, key: &str, spec: &Yaml) -> Result<LinesRule, TemplateError> {
        let rules = match spec {
            Yaml::Sequence(rules) => self.rule_list(key, rules)?,
            Yaml::Mapping(map) => match map.get("rules") {
                Some(Yaml::Sequence(rules)) => self.rule_list(key, rules)?,
                Some(_) => return Err(self.invalid(format!("`{key}.rules` is not a list"))),
                None => vec![self.block_rule(key, map, map)?],
            },
            _ => return Err(self.invalid(format!("`{key}` is not a mapping"))),
        };
        Ok(LinesRule { rules })
    }

    fn rule_list(&self, key: &str, rules: &[Yaml]) -> Result<Vec<BlockRule>, TemplateError> {
        rules
            .iter()
            .map(|r| {
                let r =
                    r.as_mapping().ok_or_else(|| self.invalid(format!("`{key}` has a rule that is not a mapping")))?;
                self.block_rule(key, r, r)
            })
            .collect()
    }

    /// One block rule. Without a `rules:` list the parser's own settings are the one rule; `parent` is where
    /// settings a rule lacks come from (the rule itself for invoice2data's `rules:` entries).
    fn block_rule(&self, key: &str, rule: &Mapping, parent: &Mapping) -> Result<BlockRule, TemplateError> {
        let get = |name: &str| rule.get(name).or_else(|| parent.get(name));
        let optional = |name: &str| get(name).map(|v| self.regexes(key, Some(v))).transpose();
        let missing = |name: &str| self.invalid(format!("`{key}` has no `{name}` regex"));
        let line =
            self.regexes(key, Some(get("line").ok_or_else(|| self.invalid(format!("`{key}` has no `line`")))?))?;
        let mut first_line = optional("first_line")?.unwrap_or_default();
        let last_line = optional("last_line")?.unwrap_or_default();
        if first_line.is_empty() && last_line.is_empty() {
            first_line = line.clone();
        }
        let separator = get("line_separator").and_then(scalar_text).unwrap_or_else(|| r"\n".into());
        let mut replace = BTreeMap::new();
        if let Some(spec) = get("replace") {
            let entries: Vec<&Mapping> = match spec {
                Yaml::Mapping(m) => vec![m],
                Yaml::Sequence(list) => list.iter().filter_map(Yaml::as_mapping).collect(),
                _ => return Err(self.invalid(format!("`{key}.replace` is not a mapping"))),
            };
            for (name, pairs) in entries.into_iter().flatten() {
                let name = scalar_text(name).ok_or_else(|| self.invalid(format!("`{key}.replace` has a bad key")))?;
                replace.insert(name, self.replacements(key, pairs)?);
            }
        }
        Ok(BlockRule {
            start: self.regex(key, &get("start").and_then(scalar_text).ok_or_else(|| missing("start"))?)?,
            end: self.regex(key, &get("end").and_then(scalar_text).ok_or_else(|| missing("end"))?)?,
            end_at_last: get("end_match").and_then(Yaml::as_str) == Some("last"),
            line,
            first_line,
            last_line,
            skip_line: optional("skip_line")?.unwrap_or_default(),
            line_separator: self.regex(key, &separator)?,
            types: self.types(key, get("types"))?,
            replace,
        })
    }

    fn table(&self, spec: &Yaml) -> Result<TableRule, TemplateError> {
        let map = spec.as_mapping().ok_or_else(|| self.invalid("a `tables` entry is not a mapping"))?;
        let separator = map.get("line_separator").and_then(scalar_text).unwrap_or_else(|| r"\n".into());
        let mut groups = BTreeMap::new();
        let mut types = self.types("tables", map.get("types"))?;
        if let Some(fields) = map.get("fields").and_then(Yaml::as_mapping) {
            for (name, setting) in fields {
                let Some(name) = scalar_text(name) else { continue };
                if let Some(kind) = setting.get("type") {
                    types.entry(name.clone()).or_insert(self.kind("tables", kind)?);
                }
                if let Some(group) = setting.get("group") {
                    groups.insert(name, self.group("tables", group)?);
                }
            }
        }
        Ok(TableRule {
            start: self.required_regex("tables", "start", map)?,
            end: self.required_regex("tables", "end", map)?,
            body: self.required_regex("tables", "body", map)?,
            line_separator: self.regex("tables", &separator)?,
            types,
            groups,
        })
    }

    fn options(&self, spec: Option<&Yaml>) -> Result<Options, TemplateError> {
        let empty = Mapping::new();
        let map = match spec {
            None | Some(Yaml::Null) => &empty,
            Some(Yaml::Mapping(m)) => m,
            Some(_) => return Err(self.invalid("`options` is not a mapping")),
        };
        let flag = |name: &str| map.get(name).and_then(Yaml::as_bool).unwrap_or(false);
        let decimal_separator = match map.get("decimal_separator").and_then(scalar_text).as_deref() {
            None | Some(".") => '.',
            Some(",") => ',',
            Some(other) => return Err(self.invalid(format!("`decimal_separator` {other:?} is not `.` or `,`"))),
        };
        let languages = strings(map.get("languages")).unwrap_or_default();
        if let Some(bad) = languages.iter().find(|l| l.chars().count() != 2) {
            return Err(self.invalid(format!("language {bad:?} is not a two-letter code")));
        }
        let replace = match map.get("replace") {
            None | Some(Yaml::Null) => Vec::new(),
            Some(spec) => self.replacements("options", spec)?,
        };
        Ok(Options {
            currency: map.get("currency").and_then(scalar_text).unwrap_or_else(|| "EUR".into()),
            reading: Reading {
                decimal_separator,
                date_formats: strings(map.get("date_formats")).unwrap_or_default(),
                languages,
            },
            remove_whitespace: flag("remove_whitespace"),
            remove_accents: flag("remove_accents"),
            lowercase: flag("lowercase"),
            replace,
        })
    }
}

/// A string, number or boolean as text (PyYAML gives `774-00-01-454` quoted and `7740001454` as a number;
/// both are text to a template).
fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        _ => None,
    }
}

/// One string or a list of them; `None` when absent or of another shape.
fn strings(value: Option<&Yaml>) -> Option<Vec<String>> {
    match value? {
        Yaml::Sequence(items) => items.iter().map(scalar_text).collect(),
        Yaml::Null => None,
        scalar => scalar_text(scalar).map(|s| vec![s]),
    }
}

fn static_value(value: &Yaml) -> Value {
    match value {
        Yaml::Sequence(items) => Value::List(items.iter().map(static_value).collect()),
        Yaml::Number(n) if n.is_f64() => {
            n.to_string().parse().map(Value::Number).unwrap_or_else(|_| Value::Text(n.to_string()))
        }
        other => Value::Text(scalar_text(other).unwrap_or_default()),
    }
}

/// Python's regex syntax in the `regex` crate's: `\Z` (end of text) is `\z`, `{,n}` is `{0,n}`, and a brace
/// that does not open a repetition is a literal. Named groups `(?P<name>...)` are the same in both;
/// lookaround and backreferences have no equivalent and fail to compile.
pub(crate) fn python_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                let Some(next) = rest.chars().next() else {
                    out.push('\\');
                    break;
                };
                rest = &rest[next.len_utf8()..];
                if next == 'Z' {
                    out.push_str(r"\z");
                } else {
                    out.push('\\');
                    out.push(next);
                }
            }
            '{' => {
                let body = rest.find('}').map(|end| &rest[..end]);
                match body.and_then(repetition) {
                    Some(quantifier) => {
                        out.push_str(&quantifier);
                        rest = &rest[body.map_or(0, str::len) + 1..];
                    }
                    None => out.push_str(r"\{"),
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The inside of `{...}` as a repetition the `regex` crate reads (`{2}`, `{2,}`, `{2,5}`, `{0,5}`), or
/// `None` when Python would read the brace as a literal.
fn repetition(body: &str) -> Option<String> {
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    match body.split_once(',') {
        None if !body.is_empty() && digits(body) => Some(format!("{{{body}}}")),
        Some((min, max)) if digits(min) && digits(max) && !(min.is_empty() && max.is_empty()) => {
            let min = if min.is_empty() { "0" } else { min };
            Some(format!("{{{min},{max}}}"))
        }
        _ => None,
    }
}

/// Python's replacement syntax (`\1`, `\g<name>`, `\n`) in the `regex` crate's (`${1}`, `${name}`), with a
/// literal `$` escaped.
pub(crate) fn python_replacement(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => {
                    let mut group = d.to_string();
                    if let Some(&e) = chars.peek().filter(|e| e.is_ascii_digit()) {
                        group.push(e);
                        chars.next();
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some('g') if chars.peek() == Some(&'<') => {
                    chars.next();
                    let name: String = chars.by_ref().take_while(|&ch| ch != '>').collect();
                    out.push_str(&format!("${{{name}}}"));
                }
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            _ => out.push(c),
        }
    }
    out
}

/// A YAML document read as PyYAML reads it: a key repeated in a mapping keeps its last value (several of
/// invoice2data's templates repeat one), where `serde_norway`'s own `Value` refuses the document.
struct LastWins(Yaml);

impl<'de> serde::Deserialize<'de> for LastWins {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LastWinsVisitor).map(LastWins)
    }
}

struct LastWinsVisitor;

impl<'de> serde::de::Visitor<'de> for LastWinsVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v.into()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Yaml, E> {
        Ok(Yaml::String(v))
    }

    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }

    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Yaml, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(LastWins(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Yaml::Sequence(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut out = Mapping::new();
        while let Some((LastWins(key), LastWins(value))) = map.next_entry()? {
            out.insert(key, value);
        }
        Ok(Yaml::Mapping(out))
    }
}
