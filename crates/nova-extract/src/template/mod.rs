//! Vendor templates in invoice2data's format, tried before the generic rules.
//!
//! A template is a YAML (or JSON) file that names its vendor by `keywords` (all must occur in the text,
//! none of the `exclude_keywords`) and gives a regex per field, with `options` for how its numbers and
//! dates read. invoice2data's own files and users' load unchanged: the legacy short form
//! (`amount: Total\s+(\d+\.\d+)`), the `regex`, `static` and `lines` parsers with `type`, `group`,
//! `replace`, the legacy top-level `lines` section, `tables`, `required_fields` and `priority`.
//!
//! Regexes use invoice2data's Python syntax, compiled by the `regex` crate: the shared syntax (classes,
//! `(?P<name>...)` groups, flags) works, while lookaround and backreferences, which the crate does not
//! have, make the template fail to load with an error naming the field. Those are rare in practice
//! (2 of invoice2data's 215 shipped templates). A field's `area` (a crop box for `pdftotext`) is ignored:
//! the whole text is searched.
//!
//! A matched template's fields go over the generic rules' result ([`merge`]): the template wins where it
//! found a value, the generic rules fill in the rest, and the totals go through the same arithmetic.

mod load;
mod merge;
mod run;
mod values;

use std::path::{Path, PathBuf};

use nova_core::Invoice;

pub use load::Template;

/// Why a template file could not be loaded. Each file fails on its own; the others still load.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid YAML")]
    Yaml {
        file: String,
        #[source]
        source: serde_norway::Error,
    },
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("{file}: the regex of `{field}` is not supported")]
    Regex {
        file: String,
        field: String,
        #[source]
        source: Box<regex::Error>,
    },
}

/// The templates NOVA tries, highest `priority` first, then by file path.
#[derive(Debug, Default)]
pub struct TemplateSet {
    templates: Vec<Template>,
}

/// What loading a folder of templates gave: the set, and the files that failed with why.
#[derive(Debug)]
pub struct Loaded {
    pub set: TemplateSet,
    pub errors: Vec<TemplateError>,
}

/// The template a document matched and the fields it found, for tools that show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMatch {
    /// The template's file name.
    pub template: String,
    /// invoice2data field names the template found.
    pub fields: Vec<String>,
}

impl TemplateSet {
    /// No templates: extraction uses the generic rules alone.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads every `.yml`, `.yaml` and `.json` file under `dir`, recursively. A file that fails is reported
    /// in [`Loaded::errors`] and the rest still load; only an unreadable `dir` itself is an error.
    pub fn load_dir(dir: &Path) -> Result<Loaded, TemplateError> {
        std::fs::read_dir(dir).map_err(|source| TemplateError::Read { path: dir.to_path_buf(), source })?;
        let mut paths = Vec::new();
        let mut errors = Vec::new();
        for entry in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
            match entry {
                Ok(entry) if entry.file_type().is_file() && is_template_file(entry.path()) => {
                    paths.push(entry.into_path())
                }
                Ok(_) => {}
                Err(e) => {
                    let path = e.path().unwrap_or(dir).to_path_buf();
                    errors.push(TemplateError::Read { path, source: e.into() });
                }
            }
        }
        let mut templates = Vec::new();
        for path in paths {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let loaded = std::fs::read_to_string(&path)
                .map_err(|source| TemplateError::Read { path: path.clone(), source })
                .and_then(|text| load::template(&name, &text));
            match loaded {
                Ok(template) => templates.push(template),
                Err(e) => errors.push(e),
            }
        }
        Ok(Loaded { set: Self::from_templates(templates), errors })
    }

    /// One template from its text; `name` is how it is reported (its file name).
    pub fn parse(name: &str, source: &str) -> Result<Template, TemplateError> {
        load::template(name, source)
    }

    /// A set of already parsed templates, ordered by priority (stable: equal priorities keep their order).
    pub fn from_templates(mut templates: Vec<Template>) -> Self {
        templates.sort_by_key(|t| std::cmp::Reverse(t.priority));
        Self { templates }
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Tries the templates on a document's text and lays the first match's fields over `generic`, the
    /// generic rules' invoice for the same text. Among several matching templates the first that finds all
    /// its required fields wins, else the first that matched. No match leaves `generic` as it is.
    pub fn apply(&self, text: &str, mut generic: Invoice) -> Invoice {
        if let Some((template, fields)) = self.best_match(text) {
            tracing::debug!(template = %template.name, "vendor template matched");
            merge::overlay(template, &fields, &mut generic);
        }
        generic
    }

    /// The template that matches `text` and the fields it finds, without building an invoice.
    pub fn find(&self, text: &str) -> Option<TemplateMatch> {
        self.best_match(text).map(|(template, fields)| TemplateMatch {
            template: template.name.clone(),
            fields: fields.keys().cloned().collect(),
        })
    }

    fn best_match(&self, text: &str) -> Option<(&Template, run::Fields)> {
        let mut fallback = None;
        for template in &self.templates {
            let Some(prepared) = template.match_text(text) else { continue };
            let fields = template.extract(&prepared);
            if template.required_fields.iter().all(|f| fields.contains_key(f)) {
                return Some((template, fields));
            }
            fallback.get_or_insert((template, fields));
        }
        fallback
    }
}

impl Template {
    /// The template's file name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn is_template_file(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yml" | "yaml" | "json"))
}

#[cfg(test)]
mod tests;
