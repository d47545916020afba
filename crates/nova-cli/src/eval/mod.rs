//! `nova eval DIR`: the extraction of `nova extract` run over a folder of invoices with known answers
//! (laid out like `shared/invoices/dev`), scored by the rules of `shared/invoices/SCHEMA.md`.
//!
//! Each `<stem>.expected.json` under DIR is one document; the variant picks which input beside it is fed
//! (`<stem>.pdf` or `<stem>.txt`, `<stem>.noxml.pdf`, `<stem>.scan.pdf`), and an answer without that input
//! is skipped. Documents run one after another, so the time measured is one core's. A document the
//! extractor fails on counts as every field missing, its error code is shown, and the batch goes on.

mod report;
mod score;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nova_core::JobError;
use nova_extract::TemplateSet;

use nova_app::extraction::Extractor;
use score::{DocScore, Expected};

#[derive(Args)]
pub struct EvalArgs {
    /// A folder of `<stem>.expected.json` answers, each beside its inputs (in subfolders or not).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Which input of each document to extract.
    #[arg(long, value_enum, default_value_t = Variant::Pdf)]
    variant: Variant,
    /// Print the scores, and each document's, as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// A folder of vendor templates in invoice2data's YAML format, tried before the generic rules. Without
    /// it the generic rules run alone (`NOVA_TEMPLATES_DIR` is not read, so a run says what it measures).
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// The confidence from which a value counts as confident: the table gives how often such values are
    /// wrong, and which documents `auto` would hand to the model (its `NOVA_LLM_AUTO_THRESHOLD`).
    #[arg(long, env = "NOVA_LLM_AUTO_THRESHOLD", default_value_t = nova_core::DEFAULT_CONFIDENCE_THRESHOLD)]
    threshold: f32,
    #[command(flatten)]
    extraction: crate::isolation::ExtractionArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Variant {
    /// The document as published (`.pdf`, or `.txt` for a plain-text invoice): e-invoice XML where it has one.
    Pdf,
    /// The same PDF with its embedded XML removed (`.noxml.pdf`): the text path.
    Noxml,
    /// An image-only rendering (`.scan.pdf`): the OCR path.
    Scan,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Pdf => "pdf",
            Variant::Noxml => "noxml",
            Variant::Scan => "scan",
        }
    }

    /// The input file names beside `<stem>.expected.json`, the first that exists being fed.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Variant::Pdf => &[".pdf", ".txt", ".xml"],
            Variant::Noxml => &[".noxml.pdf"],
            Variant::Scan => &[".scan.pdf"],
        }
    }
}

const ANSWER_SUFFIX: &str = ".expected.json";

/// One scored document.
pub struct Document {
    /// The input, relative to DIR.
    pub file: String,
    /// `facturx`, `invoice2data`, `parsee`, or the answer's folder for a source not known here.
    pub source: String,
    /// `business` or `xml-visualisation`, for the Factur-X files.
    pub layout: Option<String>,
    pub error: Option<JobError>,
    /// Pages of a PDF; a text or XML file counts as one, a file that is not a readable PDF as none.
    pub pages: u32,
    /// Time spent extracting.
    pub seconds: f64,
    pub score: DocScore,
    /// Which path produced the invoice (its `source`: `einvoice`, `text`, `template`, ...).
    pub extracted_by: Option<String>,
    /// The vendor template that matched the document's text, if any.
    pub template: Option<String>,
    /// Whether the `auto` strategy would hand the rules' result to the model.
    pub asks_model: bool,
}

pub fn run(args: EvalArgs, settings: &crate::config::Settings) -> anyhow::Result<()> {
    let answers = find_answers(&args.dir)?;
    if answers.is_empty() {
        bail!("no *{ANSWER_SUFFIX} files under {}", args.dir.display());
    }
    let (templates, templates_summary) = match &args.templates {
        None => (TemplateSet::empty(), None),
        Some(dir) => {
            let loaded =
                TemplateSet::load_dir(dir).with_context(|| format!("loading the templates in {}", dir.display()))?;
            for e in &loaded.errors {
                eprintln!("template not loaded: {}", nova_core::error_chain(e));
            }
            let summary = format!("{}: {} loaded, {} not loaded", dir.display(), loaded.set.len(), loaded.errors.len());
            (loaded.set, Some(summary))
        }
    };
    // Each document is read in an extraction process, as `nova serve` reads it: the time measured includes
    // handing it over.
    let extractor = args.extraction.extractor(args.templates.as_deref(), 1, settings)?;
    let mut documents = Vec::new();
    let mut skipped = 0;
    for answer in &answers {
        let Some(input) = input_for(answer, args.variant) else {
            skipped += 1;
            continue;
        };
        documents.push(evaluate(&args.dir, answer, &input, &templates, &extractor, args.threshold)?);
    }
    let run = report::Run {
        dir: &args.dir.display().to_string(),
        variant: args.variant.name(),
        skipped,
        documents: &documents,
        templates: templates_summary.as_deref(),
        threshold: args.threshold,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report::json(&run))?);
    } else {
        print!("{}", report::table(&run));
    }
    Ok(())
}

/// Every answer file under `dir`, sorted.
fn find_answers(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(ANSWER_SUFFIX) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn input_for(answer: &Path, variant: Variant) -> Option<PathBuf> {
    let answer = answer.to_string_lossy();
    let stem = answer.strip_suffix(ANSWER_SUFFIX)?;
    variant.suffixes().iter().map(|suffix| PathBuf::from(format!("{stem}{suffix}"))).find(|p| p.is_file())
}

/// Extracts one input and scores it against its answer. Only a broken answer file is an error.
fn evaluate(
    dir: &Path,
    answer_path: &Path,
    input: &Path,
    templates: &TemplateSet,
    extractor: &Extractor,
    threshold: f32,
) -> anyhow::Result<Document> {
    let answer: serde_json::Value = std::fs::read(answer_path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
        .with_context(|| format!("reading the answer {}", answer_path.display()))?;
    let expected = Expected::from_json(&answer["fields"])
        .with_context(|| format!("reading the fields of the answer {}", answer_path.display()))?;
    let text = |key: &str| answer[key].as_str().map(str::to_string);

    let (result, pages, seconds, template) = match std::fs::read(input) {
        Ok(bytes) => {
            let pages = extractor.inspect(&bytes).map_or(0, |info| info.page_count.unwrap_or(1));
            let start = Instant::now();
            let read = extractor.read(&bytes);
            let seconds = start.elapsed().as_secs_f64();
            // Which template matched the text the rules read, for the per-document report; outside the time
            // measured.
            let template = match (&read, templates.is_empty()) {
                (Ok(read), false) => read.text.as_deref().and_then(|text| templates.find(text)).map(|m| m.template),
                _ => None,
            };
            (read.map(|read| read.invoice), pages, seconds, template)
        }
        Err(e) => {
            let error = JobError { code: "unreadable_file".into(), message: format!("{}: {e}", input.display()) };
            (Err(error), 0, 0.0, None)
        }
    };
    let (invoice, error) = match result {
        Ok(invoice) => (Some(invoice), None),
        Err(error) => (None, Some(error)),
    };
    let score = score::score(&expected, invoice.as_ref());
    let asks_model = invoice.as_ref().is_some_and(|invoice| {
        nova_llm::plan(nova_core::Strategy::Auto, true, invoice, threshold) == Ok(nova_llm::Plan::Model)
    });
    Ok(Document {
        file: input.strip_prefix(dir).unwrap_or(input).display().to_string(),
        source: source_of(text("source").as_deref(), answer_path.strip_prefix(dir).unwrap_or(answer_path)),
        layout: text("layout"),
        error,
        pages,
        seconds,
        score,
        extracted_by: invoice.and_then(|i| i.source),
        template,
        asks_model,
    })
}

/// The source group of an answer, from its `source` text (SCHEMA.md: "per `source` in each file"), or else
/// from the folder it sits in.
fn source_of(source: Option<&str>, relative: &Path) -> String {
    let source = source.unwrap_or_default().to_lowercase();
    let known = [
        ("invoice2data", "invoice2data"),
        ("parsee", "parsee"),
        ("zugferd", "facturx"),
        ("factur-x", "facturx"),
        ("mustang", "facturx"),
        ("horstoeko", "facturx"),
        ("akretion", "facturx"),
    ];
    if let Some((_, group)) = known.iter().find(|(key, _)| source.contains(key)) {
        return group.to_string();
    }
    match relative.components().next() {
        Some(first) if relative.components().count() > 1 => first.as_os_str().to_string_lossy().to_string(),
        _ => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_come_from_the_answer_then_its_folder() {
        let check = |source: Option<&str>, path: &str, want: &str| {
            assert_eq!(source_of(source, Path::new(path)), want, "{source:?} {path}");
        };
        check(Some("invoice2data tests/compare (MIT)"), "x/a.expected.json", "invoice2data");
        check(Some("ZUGFeRD/mustangproject (Apache-2.0)"), "a.expected.json", "facturx");
        check(Some("parsee-ai/parsee-datasets (MIT)"), "a.expected.json", "parsee");
        check(Some("somewhere else"), "mine/a.expected.json", "mine");
        check(None, "a.expected.json", "other");
    }

    /// The folders of the dev sets kept aside while the rules are worked on: whole sources and layouts the
    /// rest does not have (ERP invoices, e-invoice-eu), so that their figures show how the rules do on
    /// documents they were not shaped on. Reported apart; never looked at to write a rule. (`dev2/fnfe`, the
    /// French FNFE-MPE examples, was kept aside too until its figures had been reported, then studied.)
    const HELD_OUT: [&str; 2] = ["dev2/oca", "dev2/einveu"];

    /// Floors of the text path (core accuracy, at least; core wrong and confident wrong, at most), on the
    /// working part and on the held-out part, a little under what they reach (working: 94.0%, 1.8%, 1.2%;
    /// held out: 69.6%, 13.0%, 20.0%, five values of 25) so that a regression fails. The goals are core >=
    /// 92%, core wrong <= 2% and confident wrong <= 1% on both.
    const WORKING_FLOORS: (f64, f64, f64) = (0.92, 0.025, 0.014);
    const HELD_OUT_FLOORS: (f64, f64, f64) = (0.65, 0.15, 0.21);

    #[test]
    fn the_text_path_holds_its_floors_on_the_working_and_held_out_parts() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices");
        let mut parts: [Vec<Document>; 2] = [Vec::new(), Vec::new()];
        let extractor = Extractor::default();
        let templates = TemplateSet::empty();
        for set in ["dev", "dev2"] {
            let dir = shared.join(set);
            let answers = find_answers(&dir).expect("the dev sets sit beside the repository");
            for answer in answers {
                // The text path: a PDF's text layer (`.noxml.pdf`, or a PDF that carries no XML), a text file.
                let Some(input) = input_for(&answer, Variant::Noxml).or_else(|| input_for(&answer, Variant::Pdf))
                else {
                    continue;
                };
                let document =
                    evaluate(&shared, &answer, &input, &templates, &extractor, nova_core::DEFAULT_CONFIDENCE_THRESHOLD)
                        .expect("the answers read");
                if !matches!(document.extracted_by.as_deref(), Some("text" | "template")) {
                    continue;
                }
                let held_out = HELD_OUT.iter().any(|folder| document.file.starts_with(folder));
                parts[usize::from(held_out)].push(document);
            }
        }
        let mut failures = Vec::new();
        for (documents, floors, name) in
            [(&parts[0], WORKING_FLOORS, "working"), (&parts[1], HELD_OUT_FLOORS, "held out")]
        {
            assert!(documents.len() >= 5, "{name}: {} text-path documents", documents.len());
            let all = &report::groups(documents, nova_core::DEFAULT_CONFIDENCE_THRESHOLD)[0];
            let (accuracy, wrong) = (all.core.accuracy().unwrap_or(0.0), all.core.wrong_rate().unwrap_or(1.0));
            let confident_wrong = all.confident_wrong().unwrap_or(0.0);
            eprintln!(
                "{name}: {} documents, core {:.1}% (wrong {:.1}%), confident wrong {:.1}% of {}",
                documents.len(),
                accuracy * 100.0,
                wrong * 100.0,
                confident_wrong * 100.0,
                all.confident.0 + all.confident.1
            );
            if accuracy < floors.0 || wrong > floors.1 || confident_wrong > floors.2 {
                failures.push(format!(
                    "{name}: core {accuracy:.3} (floor {}), wrong {wrong:.3} (at most {}), confident wrong \
                     {confident_wrong:.3} (at most {})",
                    floors.0, floors.1, floors.2
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The core accuracy the OCR path must keep on the dev scans, scored as `nova eval --variant scan` scores
    /// them (it reaches about 0.87 with tesseract 5.3).
    const SCAN_CORE_FLOOR: f64 = 0.75;

    #[test]
    fn dev_scans_reach_the_core_accuracy_floor() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev");
        let answers = find_answers(&dir).expect("the dev invoices sit beside the repository");
        let inputs: Vec<(PathBuf, PathBuf)> =
            answers.into_iter().filter_map(|a| input_for(&a, Variant::Scan).map(|i| (a, i))).collect();
        assert!(inputs.len() >= 9, "the dev set has its scans: {}", inputs.len());
        // Two at a time: OCR is the slow part, and runs single-threaded.
        let (first, second) = inputs.split_at(inputs.len() / 2);
        let run = |part: &[(PathBuf, PathBuf)]| -> Vec<Document> {
            let templates = TemplateSet::empty();
            // In this process: the test binary is no `nova` to start extraction processes from.
            let extractor = Extractor::default();
            part.iter()
                .map(|(a, i)| {
                    evaluate(&dir, a, i, &templates, &extractor, nova_core::DEFAULT_CONFIDENCE_THRESHOLD)
                        .expect("the answers read")
                })
                .collect()
        };
        let documents: Vec<Document> = std::thread::scope(|s| {
            let other = s.spawn(|| run(second));
            let mut documents = run(first);
            documents.extend(other.join().expect("the scans were scored"));
            documents
        });
        let errors: Vec<String> =
            documents.iter().filter_map(|d| d.error.as_ref().map(|e| format!("{}: {}", d.file, e.code))).collect();
        assert!(errors.is_empty(), "every scan is read: {errors:?}");
        let all = &report::groups(&documents, nova_core::DEFAULT_CONFIDENCE_THRESHOLD)[0];
        let accuracy = all.core.accuracy().expect("core fields are scored");
        assert!(accuracy >= SCAN_CORE_FLOOR, "core accuracy on the scans {accuracy:.3} < {SCAN_CORE_FLOOR}");
    }
}
