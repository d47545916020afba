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
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let answers = find_answers(&args.dir)?;
    if answers.is_empty() {
        bail!("no *{ANSWER_SUFFIX} files under {}", args.dir.display());
    }
    let mut documents = Vec::new();
    let mut skipped = 0;
    for answer in &answers {
        let Some(input) = input_for(answer, args.variant) else {
            skipped += 1;
            continue;
        };
        documents.push(evaluate(&args.dir, answer, &input)?);
    }
    let run = report::Run {
        dir: &args.dir.display().to_string(),
        variant: args.variant.name(),
        skipped,
        documents: &documents,
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
fn evaluate(dir: &Path, answer_path: &Path, input: &Path) -> anyhow::Result<Document> {
    let answer: serde_json::Value = std::fs::read(answer_path)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
        .with_context(|| format!("reading the answer {}", answer_path.display()))?;
    let expected = Expected::from_json(&answer["fields"])
        .with_context(|| format!("reading the fields of the answer {}", answer_path.display()))?;
    let text = |key: &str| answer[key].as_str().map(str::to_string);

    let (result, pages, seconds) = match std::fs::read(input) {
        Ok(bytes) => {
            let pages = nova_extract::inspect(&bytes).map_or(0, |info| info.page_count.unwrap_or(1));
            let start = Instant::now();
            let result = nova_worker::workflows::extract_invoice(&bytes);
            (result, pages, start.elapsed().as_secs_f64())
        }
        Err(e) => {
            let error = JobError { code: "unreadable_file".into(), message: format!("{}: {e}", input.display()) };
            (Err(error), 0, 0.0)
        }
    };
    let (invoice, error) = match result {
        Ok(invoice) => (Some(invoice), None),
        Err(error) => (None, Some(error)),
    };
    Ok(Document {
        file: input.strip_prefix(dir).unwrap_or(input).display().to_string(),
        source: source_of(text("source").as_deref(), answer_path.strip_prefix(dir).unwrap_or(answer_path)),
        layout: text("layout"),
        error,
        pages,
        seconds,
        score: score::score(&expected, invoice.as_ref()),
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
}
