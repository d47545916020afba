//! `task.run`: a free-form task over documents ("total these invoices per vendor into a CSV").
//!
//! The model is told the task and shown the shape of the documents' data; it answers with one Python
//! program. The program runs only in the sandbox (no network, a deadline, memory and output caps) over a
//! work directory holding `documents/index.json` (each document's extracted invoice) and
//! `documents/<id>.txt` (each document's text); the files it writes in `out/` are the task's output, and
//! what it prints is its summary. A run that raises, times out, or produces nothing goes back to the model
//! with the error, for up to `max_repair_rounds` more rounds.
//!
//! Unlike an extraction program, a task program is not kept: a prompt is not a layout, and nothing says the
//! next task is the same one.

use std::sync::Arc;
use std::time::Duration;

use nova_sandbox::{ExecRequest, InputFile, Limits, OutputFile, Sandbox};
use serde::Serialize;
use serde_json::Value;
use tracing::debug;

use crate::client::{ChatClient, LlmError, Message};
use crate::extraction::Usage;
use crate::program::{code_from_reply, ended_well, tail};

/// The folder whose files the task returns.
pub const OUTPUT_DIR: &str = "out";

/// Bytes of output files one task returns, all files together.
pub const MAX_OUTPUT_BYTES: u64 = 8 << 20;

/// Output files one task returns.
pub const MAX_OUTPUT_FILES: usize = 100;

/// Characters of the program's printed summary kept.
const SUMMARY_CHARS: usize = 16_000;

/// Characters of the documents' data shown to the model in the first request; the program reads all of it.
const MAX_INDEX_CHARS: usize = 12_000;

/// Characters of one document's text shown to the model as a sample.
const SAMPLE_TEXT_CHARS: usize = 2_000;

/// One document as the task's program sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskDocument {
    pub id: String,
    pub filename: Option<String>,
    /// `pdf`, `xml` or `text`.
    pub kind: String,
    /// What extraction read from it (the invoice schema), or `None` when it could not.
    pub invoice: Option<Value>,
    /// Why extraction failed, when it did.
    pub error: Option<String>,
    /// The document's text with its layout; `None` when it has none (an XML e-invoice) or it could not be read.
    #[serde(skip)]
    pub text: Option<String>,
}

/// What a task produced.
#[derive(Debug, Clone)]
pub struct TaskOutput {
    /// The files the program wrote in `out/`, named from there.
    pub files: Vec<OutputFile>,
    /// What the program printed (its summary), cut to its last characters when long.
    pub summary: String,
    /// The program that ran.
    pub program: String,
    /// Model rounds it took (1: the first program worked).
    pub rounds: u32,
}

/// Why a task produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("no program the model wrote carried out the task in {rounds} rounds; the last problem: {last}")]
    GaveUp { rounds: u32, last: String },
    #[error("calling the model")]
    Model(#[from] LlmError),
    #[error("the sandbox thread failed")]
    Sandbox,
}

impl TaskError {
    /// A stable name, for job records.
    pub fn code(&self) -> &'static str {
        match self {
            TaskError::GaveUp { .. } => "task_failed",
            TaskError::Model(_) => "llm_unavailable",
            TaskError::Sandbox => "sandbox_error",
        }
    }

    /// Whether another attempt could succeed (the model or the sandbox was unavailable).
    pub fn is_transient(&self) -> bool {
        !matches!(self, TaskError::GaveUp { .. })
    }
}

/// The standing instructions for tasks.
const SYSTEM: &str = r#"You write Python 3 programs that carry out a user's task over their documents (mostly invoices).

Answer with exactly one ```python code block holding the whole program. It runs as a script, with the
standard library only, no network, no files but the ones below, and a deadline of a few seconds to a minute.

In its working directory:
- documents/index.json: a list with one entry per document:
    {"id", "filename", "kind" ("pdf", "xml" or "text"), "invoice": the fields read from it or null,
     "error": why they could not be read or null, "text_file": "documents/<id>.txt" or null}
  An invoice has: invoice_number, type_code ("380" invoice, "381" credit note), issue_date, due_date
  ("YYYY-MM-DD"), currency, seller and buyer ({name, vat_id, country, city, postcode}), payment_iban,
  totals ({line_total, tax_basis_total, tax_total, grand_total, due_payable, ...}), tax_breakdown
  ([{category, rate, basis, amount}]) and lines ([{name, quantity, unit, net_price, tax_rate, line_total}]).
  Any of them may be null or missing. Amounts are strings of decimal digits ("1234.50"): use
  decimal.Decimal, never float.
- documents/<id>.txt: the document's text with its layout kept (columns separated by runs of spaces).
- out/: an empty folder. Write every file the user should get there (CSV with a header row and UTF-8 unless
  the task says otherwise). Only files in out/ are returned.

Print a short summary of what the program did (a few lines: what it wrote, totals, documents it skipped
and why) to standard output. Do not print the documents themselves. Never fail on a missing field: skip or
mark what is missing."#;

/// Runs tasks: the model writes the program, the sandbox runs it.
#[derive(Clone)]
pub struct TaskRunner {
    client: ChatClient,
    sandbox: Arc<dyn Sandbox>,
}

impl TaskRunner {
    pub fn new(client: ChatClient, sandbox: Arc<dyn Sandbox>) -> TaskRunner {
        TaskRunner { client, sandbox }
    }

    /// Carries out `prompt` over `documents`. Returns what the model and the sandbox used whatever the
    /// outcome, so that a task that fails is accounted for too.
    pub async fn run(&self, prompt: &str, documents: &[TaskDocument]) -> (Usage, Result<TaskOutput, TaskError>) {
        let mut usage = Usage::default();
        let result = self.rounds(prompt, documents, &mut usage).await;
        (usage, result)
    }

    async fn rounds(
        &self,
        prompt: &str,
        documents: &[TaskDocument],
        usage: &mut Usage,
    ) -> Result<TaskOutput, TaskError> {
        let config = self.client.config();
        let index = index(documents);
        let mut messages = vec![Message::system(SYSTEM), Message::user(first(prompt, &index, documents))];
        let files = Arc::new(work_files(index, documents));
        let mut last = String::new();
        for round in 0..=config.max_repair_rounds {
            let completion = self.client.complete(&messages).await?;
            usage.add_completion(&completion, config);
            let code = code_from_reply(&completion.content);
            let outcome = self.run_program(&code, files.clone(), config.task_timeout).await?;
            usage.add_sandbox(outcome.wall_time, outcome.cpu_time);
            match judge(&outcome, config.task_timeout) {
                Ok(()) => {
                    let summary = tail(&String::from_utf8_lossy(&outcome.stdout), SUMMARY_CHARS);
                    return Ok(TaskOutput { files: outcome.files, summary, program: code, rounds: round + 1 });
                }
                Err(failure) => {
                    debug!(round, %failure, "the task's program did not carry out the task");
                    messages.push(Message::assistant(completion.content));
                    messages.push(Message::user(format!(
                        "The program did not carry out the task:\n{failure}\n\nFix it and answer with the whole \
                         corrected program in one ```python block."
                    )));
                    last = failure;
                }
            }
        }
        Err(TaskError::GaveUp { rounds: config.max_repair_rounds + 1, last })
    }

    async fn run_program(
        &self,
        code: &str,
        files: Arc<Vec<InputFile>>,
        timeout: Duration,
    ) -> Result<nova_sandbox::Outcome, TaskError> {
        let sandbox = self.sandbox.clone();
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let request = ExecRequest {
            code: HARNESS.to_string(),
            files: [InputFile { path: "program.py".into(), contents: code.as_bytes().to_vec() }]
                .into_iter()
                .chain(files.iter().cloned())
                .collect(),
            limits: Limits { wall_ms: ms, cpu_ms: ms, output_files_bytes: MAX_OUTPUT_BYTES, ..Limits::default() },
            network: false,
            output_dir: Some(OUTPUT_DIR.into()),
            ..ExecRequest::default()
        };
        // A job canceled while its program runs drops this future: the guard then kills the program, which
        // would otherwise run on its blocking thread to its deadline.
        let cancel = nova_sandbox::Cancel::new();
        let _kill_on_drop = cancel.on_drop();
        tokio::task::spawn_blocking(move || sandbox.exec_cancelable(&request, &cancel))
            .await
            .map_err(|_| TaskError::Sandbox)
    }
}

/// Makes the output folder, then runs the model's program as the main script (its tracebacks name
/// `program.py` and its own line numbers). NOVA's code, in the same sandbox.
const HARNESS: &str = r#"import os, runpy
os.makedirs("out", exist_ok=True)
runpy.run_path("program.py", run_name="__main__")
"#;

/// Whether a run carried out the task: it ended well, wrote something, and nothing was left out.
fn judge(outcome: &nova_sandbox::Outcome, timeout: Duration) -> Result<(), String> {
    ended_well(outcome, timeout).map_err(|failure| failure.0)?;
    if outcome.files_truncated || outcome.files.len() > MAX_OUTPUT_FILES {
        return Err(format!(
            "the program wrote more than {MAX_OUTPUT_FILES} files or {} MiB in out/, or something that is not a \
             regular file; write fewer, smaller files",
            MAX_OUTPUT_BYTES >> 20
        ));
    }
    if outcome.files.is_empty() && String::from_utf8_lossy(&outcome.stdout).trim().is_empty() {
        return Err("the program wrote no file in out/ and printed nothing".into());
    }
    Ok(())
}

/// The work directory's input files: the index and each document's text.
fn work_files(index: String, documents: &[TaskDocument]) -> Vec<InputFile> {
    let mut files = vec![InputFile { path: "documents/index.json".into(), contents: index.into_bytes() }];
    for doc in documents {
        if let Some(text) = &doc.text {
            files.push(InputFile { path: format!("documents/{}.txt", doc.id), contents: text.as_bytes().to_vec() });
        }
    }
    files
}

/// `documents/index.json`.
fn index(documents: &[TaskDocument]) -> String {
    let entries: Vec<Value> = documents
        .iter()
        .map(|doc| {
            let mut entry = serde_json::to_value(doc).unwrap_or_default();
            entry["text_file"] = doc.text.as_ref().map_or(Value::Null, |_| format!("documents/{}.txt", doc.id).into());
            entry
        })
        .collect();
    serde_json::to_string_pretty(&entries).unwrap_or_else(|_| "[]".into())
}

/// The first request: the task, the data's shape (the index, cut when long) and a sample of one text.
fn first(prompt: &str, index: &str, documents: &[TaskDocument]) -> String {
    let shown: String = index.chars().take(MAX_INDEX_CHARS).collect();
    let cut = if shown.len() < index.len() { "\n... (cut here; the file holds every document)" } else { "" };
    let sample = documents
        .iter()
        .find_map(|doc| doc.text.as_ref().map(|text| (doc, text)))
        .map(|(doc, text)| {
            let text: String = text.chars().take(SAMPLE_TEXT_CHARS).collect();
            format!("\n\nThe start of documents/{}.txt, as a sample:\n<<<\n{text}\n>>>", doc.id)
        })
        .unwrap_or_default();
    format!(
        "The task:\n<<<\n{prompt}\n>>>\n\nThe {} document(s), as documents/index.json holds them:\n{shown}{cut}{sample}\n\nWrite the program.",
        documents.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, text: Option<&str>) -> TaskDocument {
        TaskDocument {
            id: id.into(),
            filename: Some(format!("{id}.pdf")),
            kind: "pdf".into(),
            invoice: Some(serde_json::json!({"invoice_number": id})),
            error: None,
            text: text.map(str::to_string),
        }
    }

    #[test]
    fn the_work_directory_holds_the_index_and_each_text() {
        let docs = [doc("doc_a", Some("Invoice A")), doc("doc_b", None)];
        let files = work_files(index(&docs), &docs);
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["documents/index.json", "documents/doc_a.txt"]);
        let index: Value = serde_json::from_slice(&files[0].contents).unwrap();
        assert_eq!(index[0]["text_file"], "documents/doc_a.txt");
        assert!(index[1]["text_file"].is_null());
        assert_eq!(index[1]["invoice"]["invoice_number"], "doc_b");
        assert!(index[0].get("text").is_none(), "texts live in their own files");
    }

    #[test]
    fn the_first_request_shows_the_task_and_cuts_a_long_index() {
        let docs: Vec<TaskDocument> = (0..400).map(|i| doc(&format!("doc_{i:03}"), Some("Total 5.00"))).collect();
        let request = first("sum the totals", &index(&docs), &docs);
        assert!(request.contains("sum the totals") && request.contains("The 400 document(s)"));
        assert!(request.contains("cut here") && request.contains("Total 5.00"));
        assert!(request.chars().count() < MAX_INDEX_CHARS + SAMPLE_TEXT_CHARS + 1_000);
    }
}
