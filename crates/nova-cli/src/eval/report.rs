//! Document scores summed per group (all, each source, each layout) and printed as a table or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use super::score::{DocScore, ListMatch, Verdict, CORE, FIELDS};
use super::Document;

/// Counts of one field, or of a set of fields, over a group of documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub expected: usize,
    pub correct: usize,
    pub wrong: usize,
    pub missing: usize,
}

impl Tally {
    fn add(&mut self, verdict: Verdict) {
        self.expected += 1;
        match verdict {
            Verdict::Correct => self.correct += 1,
            Verdict::Wrong => self.wrong += 1,
            Verdict::Missing => self.missing += 1,
        }
    }

    /// Correct over expected.
    pub fn accuracy(&self) -> Option<f64> {
        ratio(self.correct, self.expected)
    }

    /// Wrong (a value that is there and not correct) over expected.
    pub fn wrong_rate(&self) -> Option<f64> {
        ratio(self.wrong, self.expected)
    }

    fn to_json(self) -> serde_json::Value {
        json!({
            "expected": self.expected, "correct": self.correct, "wrong": self.wrong, "missing": self.missing,
            "accuracy": self.accuracy(), "wrong_rate": self.wrong_rate(),
        })
    }
}

/// Pairs of a list summed over documents (micro-averaged).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ListTally(pub ListMatch);

impl ListTally {
    fn add(&mut self, m: ListMatch) {
        self.0.expected += m.expected;
        self.0.predicted += m.predicted;
        self.0.matched += m.matched;
    }

    /// Matched over predicted; `None` when nothing was predicted.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.0.matched, self.0.predicted)
    }

    pub fn recall(&self) -> Option<f64> {
        ratio(self.0.matched, self.0.expected)
    }

    /// The harmonic mean of precision and recall; 0 when nothing matched.
    pub fn f1(&self) -> Option<f64> {
        let recall = self.recall()?;
        let precision = self.precision().unwrap_or(0.0);
        Some(if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) })
    }

    fn to_json(self) -> serde_json::Value {
        let m = self.0;
        json!({
            "expected": m.expected, "predicted": m.predicted, "matched": m.matched,
            "precision": self.precision(), "recall": self.recall(), "f1": self.f1(),
        })
    }
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The lower bounds of the confidence bins of the calibration table; the last bin reaches 1.
pub const BINS: [f32; 7] = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

/// Filled values by the confidence the extraction gave them: (correct, wrong) per bin of [`BINS`], and for
/// values filled without one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calibration {
    pub bins: [(usize, usize); BINS.len()],
    pub unrated: (usize, usize),
}

/// Counts a filled value as correct or wrong in `cell`; a missing one is not counted.
fn count(cell: &mut (usize, usize), verdict: Verdict) {
    match verdict {
        Verdict::Correct => cell.0 += 1,
        Verdict::Wrong => cell.1 += 1,
        Verdict::Missing => {}
    }
}

impl Calibration {
    fn add(&mut self, confidence: Option<f32>, verdict: Verdict) {
        let cell = match confidence {
            Some(c) => &mut self.bins[BINS.iter().rposition(|&low| c >= low).unwrap_or(0)],
            None => &mut self.unrated,
        };
        count(cell, verdict);
    }

    /// A bin's label: `0.80-0.90`, the last `0.95-1.00`.
    pub fn label(bin: usize) -> String {
        let high = BINS.get(bin + 1).copied().unwrap_or(1.0);
        format!("{:.2}-{high:.2}", BINS[bin])
    }
}

/// Everything summed over one group of documents.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub documents: usize,
    pub failed: usize,
    /// Pages of the documents extracted without an error.
    pub pages: u64,
    /// Time spent extracting them, one document after another.
    pub seconds: f64,
    pub fields: BTreeMap<&'static str, Tally>,
    pub core: Tally,
    pub all_fields: Tally,
    pub lines: ListTally,
    pub tax_breakdown: ListTally,
    pub calibration: Calibration,
    /// Values filled with a confidence at or above the run's threshold: (correct, wrong).
    pub confident: (usize, usize),
    /// Documents whose rules' result the `auto` strategy would hand to the model.
    pub to_model: usize,
}

impl Group {
    /// Adds a document; `threshold` is the confidence from which a value counts as confident.
    fn add(&mut self, doc: &Document, threshold: f32) {
        self.documents += 1;
        self.failed += usize::from(doc.error.is_some());
        // Speed is measured on what was extracted: refusing a scan in microseconds is not reading it.
        if doc.error.is_none() {
            self.pages += u64::from(doc.pages);
            self.seconds += doc.seconds;
        }
        self.add_score(&doc.score);
        for &(path, verdict) in &doc.score.fields {
            let confidence = doc.score.confidence.get(path).copied();
            self.calibration.add(confidence, verdict);
            if confidence.is_some_and(|c| c >= threshold) {
                count(&mut self.confident, verdict);
            }
        }
        self.to_model += usize::from(doc.asks_model);
    }

    /// Wrong among the values filled at or above the threshold.
    pub fn confident_wrong(&self) -> Option<f64> {
        ratio(self.confident.1, self.confident.0 + self.confident.1)
    }

    fn add_score(&mut self, score: &DocScore) {
        for &(path, verdict) in &score.fields {
            self.fields.entry(path).or_default().add(verdict);
            self.all_fields.add(verdict);
            if CORE.contains(&path) {
                self.core.add(verdict);
            }
        }
        if let Some(m) = score.lines {
            self.lines.add(m);
        }
        if let Some(m) = score.tax_breakdown {
            self.tax_breakdown.add(m);
        }
    }

    pub fn pages_per_second(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.pages as f64 / self.seconds)
    }

    fn to_json(&self) -> serde_json::Value {
        let fields: serde_json::Map<String, serde_json::Value> =
            self.fields.iter().map(|(path, tally)| (path.to_string(), tally.to_json())).collect();
        json!({
            "name": self.name, "documents": self.documents, "failed": self.failed,
            "pages": self.pages, "seconds": self.seconds, "pages_per_second": self.pages_per_second(),
            "core": self.core.to_json(), "all_fields": self.all_fields.to_json(), "fields": fields,
            "lines": self.lines.to_json(), "tax_breakdown": self.tax_breakdown.to_json(),
            "confident": {"correct": self.confident.0, "wrong": self.confident.1, "wrong_rate": self.confident_wrong()},
            "to_model": self.to_model,
            "calibration": (0..BINS.len())
                .map(|bin| {
                    let (correct, wrong) = self.calibration.bins[bin];
                    json!({"bin": Calibration::label(bin), "correct": correct, "wrong": wrong})
                })
                .chain(std::iter::once({
                    let (correct, wrong) = self.calibration.unrated;
                    json!({"bin": "none", "correct": correct, "wrong": wrong})
                }))
                .collect::<Vec<_>>(),
        })
    }
}

/// Sources in a fixed order (the ones SCHEMA.md names first), then layouts.
const SOURCE_ORDER: [&str; 3] = ["facturx", "invoice2data", "parsee"];

/// The extraction paths, in the order of the columns, and the `source` values of a result each one holds: a
/// result OCR had a part in (a scan, a scanned page beside text pages, a letterhead picture) is the OCR path's.
const PATHS: [(&str, &[&str]); 3] = [
    ("path: e-invoice", &["einvoice"]),
    ("path: text", &["text", "template"]),
    ("path: OCR", &["ocr", "template+ocr", "text+ocr"]),
];

/// Groups `all`, then each source, then each layout, then each extraction path the results name (the e-invoice
/// XML, the text layer with rules or templates, OCR), leaving out empty ones. A failed document has no path.
pub fn groups(docs: &[Document], threshold: f32) -> Vec<Group> {
    let mut all = Group { name: "all".into(), ..Group::default() };
    let mut sources: BTreeMap<String, Group> = BTreeMap::new();
    let mut layouts: BTreeMap<String, Group> = BTreeMap::new();
    let named = |name: &str| Group { name: name.to_string(), ..Group::default() };
    let mut paths: Vec<Group> = PATHS.iter().map(|(name, _)| named(name)).collect();
    for doc in docs {
        all.add(doc, threshold);
        sources.entry(doc.source.clone()).or_insert_with(|| named(&doc.source)).add(doc, threshold);
        if let Some(layout) = &doc.layout {
            layouts.entry(layout.clone()).or_insert_with(|| named(layout)).add(doc, threshold);
        }
        let path =
            PATHS.iter().position(|(_, sources)| doc.extracted_by.as_deref().is_some_and(|s| sources.contains(&s)));
        if let Some(path) = path {
            paths[path].add(doc, threshold);
        }
    }
    let rank = |name: &str| SOURCE_ORDER.iter().position(|s| *s == name).unwrap_or(SOURCE_ORDER.len());
    let mut sources: Vec<Group> = sources.into_values().collect();
    sources.sort_by(|a, b| rank(&a.name).cmp(&rank(&b.name)).then_with(|| a.name.cmp(&b.name)));
    paths.retain(|group| group.documents > 0);
    std::iter::once(all).chain(sources).chain(layouts.into_values()).chain(paths).collect()
}

/// The run as a whole, for the header of the table and the top of the JSON.
pub struct Run<'a> {
    pub dir: &'a str,
    pub variant: &'a str,
    /// Answers with no input file of the chosen variant.
    pub skipped: usize,
    pub documents: &'a [Document],
    /// The vendor templates tried first, described (`DIR: N loaded, M not loaded`); `None`: generic rules only.
    pub templates: Option<&'a str>,
    /// The confidence from which a value counts as confident, and `auto` keeps the rules' result.
    pub threshold: f32,
}

const LABEL: usize = 24;
const CELL: usize = 19;

/// The readable table: one column per group, one row per figure.
pub fn table(run: &Run<'_>) -> String {
    let groups = groups(run.documents, run.threshold);
    let mut out = String::new();
    let failed = run.documents.iter().filter(|d| d.error.is_some()).count();
    let _ = writeln!(
        out,
        "nova eval {} --variant {}: {} documents, {} failed, {} skipped (no {} input)",
        run.dir,
        run.variant,
        run.documents.len(),
        failed,
        run.skipped,
        run.variant
    );
    for doc in run.documents.iter().filter(|d| d.error.is_some()) {
        let error = doc.error.as_ref().map_or("", |e| e.code.as_str());
        let _ = writeln!(out, "  failed: {} ({error})", doc.file);
    }
    let _ = writeln!(out, "{}", templates_line(run));
    let _ = writeln!(
        out,
        "\nfields: accuracy %, wrong % (a value that is there and not correct), fields expected\n\
         lines and VAT rows: precision, recall, F1 (matched / expected / predicted below)\n"
    );
    let row = |out: &mut String, label: &str, cell: &dyn Fn(&Group) -> String| {
        let _ = write!(out, "{label:<LABEL$}");
        for g in &groups {
            let _ = write!(out, "{:<CELL$}", cell(g));
        }
        let _ = writeln!(out);
    };
    row(&mut out, "", &|g| g.name.clone());
    row(&mut out, "documents (failed)", &|g| format!("{} ({})", g.documents, g.failed));
    row(&mut out, "core fields", &|g| tally_cell(g.core));
    row(&mut out, "all fields", &|g| tally_cell(g.all_fields));
    row(&mut out, "lines P R F1", &|g| list_cell(g.lines));
    row(&mut out, "  matched/exp/pred", &|g| counts_cell(g.lines));
    row(&mut out, "VAT rows P R F1", &|g| list_cell(g.tax_breakdown));
    row(&mut out, "  matched/exp/pred", &|g| counts_cell(g.tax_breakdown));
    let threshold = run.threshold;
    row(&mut out, &format!("confident wrong >={threshold:.2}"), &|g| {
        g.confident_wrong()
            .map_or("-".into(), |r| format!("{:>5} of {}", percent(Some(r)), g.confident.0 + g.confident.1))
    });
    row(&mut out, "auto asks the model", &|g| format!("{}/{} docs", g.to_model, g.documents));
    row(&mut out, "pages extracted", &|g| g.pages.to_string());
    row(&mut out, "pages/s (one thread)", &|g| g.pages_per_second().map_or("-".into(), |r| format!("{r:.1}")));
    let _ = writeln!(out);
    for field in FIELDS {
        let core = if CORE.contains(&field.path) { " *" } else { "" };
        if groups[0].fields.contains_key(field.path) {
            let label = format!("{}{core}", field.path);
            row(&mut out, &label, &|g| g.fields.get(field.path).map_or("-".into(), |t| tally_cell(*t)));
        }
    }
    let _ = writeln!(out, "\ncalibration: the values filled, by the confidence given them: correct %, values\n");
    for bin in (0..BINS.len()).rev() {
        row(&mut out, &format!("confidence {}", Calibration::label(bin)), &|g| {
            calibration_cell(g.calibration.bins[bin])
        });
    }
    row(&mut out, "no confidence", &|g| calibration_cell(g.calibration.unrated));
    let _ = writeln!(
        out,
        "\n* core field. A failed document counts as every field missing; its pages are not counted. A text file is one page.\n\
         confident wrong: wrong among the values filled with a confidence of at least {threshold:.2} (an e-invoice's values count as 1).\n\
         auto asks the model: documents whose core fields are not all at or above {threshold:.2} (never an e-invoice)."
    );
    out
}

/// Which templates ran and, per source, how many documents one of them matched.
fn templates_line(run: &Run<'_>) -> String {
    let Some(templates) = run.templates else { return "templates: none (generic rules only)".into() };
    let mut per_source: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for doc in run.documents {
        let counts = per_source.entry(doc.source.as_str()).or_default();
        counts.1 += 1;
        if doc.extracted_by.as_deref() == Some("template") {
            counts.0 += 1;
        }
    }
    let matched: Vec<String> = per_source.iter().map(|(source, (hit, all))| format!("{source} {hit}/{all}")).collect();
    format!("templates: {templates}; documents a template matched: {}", matched.join(", "))
}

fn percent(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{:.1}", r * 100.0))
}

fn tally_cell(t: Tally) -> String {
    if t.expected == 0 {
        return "-".into();
    }
    format!("{:>5} {:>5} {:>4}", percent(t.accuracy()), percent(t.wrong_rate()), t.expected)
}

fn calibration_cell((correct, wrong): (usize, usize)) -> String {
    let filled = correct + wrong;
    if filled == 0 {
        return "-".into();
    }
    format!("{:>5} {:>4}", percent(ratio(correct, filled)), filled)
}

fn list_cell(t: ListTally) -> String {
    if t.0.expected == 0 && t.0.predicted == 0 {
        return "-".into();
    }
    let two = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}"));
    format!("{:>4} {:>4} {:>4}", two(t.precision()), two(t.recall()), two(t.f1()))
}

fn counts_cell(t: ListTally) -> String {
    if t.0.expected == 0 && t.0.predicted == 0 {
        return "-".into();
    }
    format!("{}/{}/{}", t.0.matched, t.0.expected, t.0.predicted)
}

/// The same figures, and each document's, as one JSON object.
pub fn json(run: &Run<'_>) -> serde_json::Value {
    let documents: Vec<serde_json::Value> = run
        .documents
        .iter()
        .map(|doc| {
            let paths = |v: Verdict| -> Vec<&str> {
                doc.score.fields.iter().filter(|(_, verdict)| *verdict == v).map(|(path, _)| *path).collect()
            };
            json!({
                "file": doc.file, "source": doc.source, "layout": doc.layout, "error": doc.error,
                "extracted_by": doc.extracted_by, "template": doc.template,
                "pages": doc.pages, "seconds": doc.seconds,
                "correct": paths(Verdict::Correct), "wrong": paths(Verdict::Wrong), "missing": paths(Verdict::Missing),
                "lines": doc.score.lines, "tax_breakdown": doc.score.tax_breakdown,
                "confidence": doc.score.confidence, "asks_model": doc.asks_model,
            })
        })
        .collect();
    let groups: Vec<serde_json::Value> = groups(run.documents, run.threshold).iter().map(Group::to_json).collect();
    json!({
        "dir": run.dir, "variant": run.variant, "skipped": run.skipped, "templates": run.templates,
        "threshold": run.threshold,
        "core_fields": CORE, "groups": groups, "documents": documents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_over_the_fields_expected() {
        let mut t = Tally::default();
        for v in [Verdict::Correct, Verdict::Correct, Verdict::Wrong, Verdict::Missing] {
            t.add(v);
        }
        assert_eq!(t, Tally { expected: 4, correct: 2, wrong: 1, missing: 1 });
        assert_eq!(t.accuracy(), Some(0.5));
        assert_eq!(t.wrong_rate(), Some(0.25));
        assert_eq!(Tally::default().accuracy(), None);
    }

    #[test]
    fn values_fall_in_the_bin_of_their_confidence() {
        let mut c = Calibration::default();
        let cases = [
            (Some(0.0), Verdict::Correct),
            (Some(0.49), Verdict::Wrong),
            (Some(0.8), Verdict::Correct),
            (Some(0.8999), Verdict::Wrong),
            (Some(1.0), Verdict::Correct),
            (None, Verdict::Wrong),
            (Some(0.9), Verdict::Missing),
        ];
        for (confidence, verdict) in cases {
            c.add(confidence, verdict);
        }
        assert_eq!(c.bins, [(1, 1), (0, 0), (0, 0), (0, 0), (1, 1), (0, 0), (1, 0)]);
        assert_eq!(c.unrated, (0, 1));
        assert_eq!(
            (Calibration::label(0), Calibration::label(4), Calibration::label(6)),
            ("0.00-0.50".into(), "0.80-0.90".into(), "0.95-1.00".into())
        );
    }

    #[test]
    fn precision_recall_and_f1_are_summed_over_documents() {
        let mut t = ListTally::default();
        t.add(ListMatch { expected: 3, predicted: 1, matched: 1 });
        t.add(ListMatch { expected: 1, predicted: 3, matched: 1 });
        assert_eq!(t.precision(), Some(0.5));
        assert_eq!(t.recall(), Some(0.5));
        assert_eq!(t.f1(), Some(0.5));
        let none_predicted = ListTally(ListMatch { expected: 4, predicted: 0, matched: 0 });
        assert_eq!((none_predicted.precision(), none_predicted.f1()), (None, Some(0.0)));
        let uneven = ListTally(ListMatch { expected: 4, predicted: 1, matched: 1 });
        assert!((uneven.f1().unwrap() - 0.4).abs() < 1e-9);
    }
}
