//! `task.run` end to end: a scripted OpenAI-compatible server, a sandbox and real dev invoices. The task's
//! logic runs with the scripted sandbox, which answers for each program with what it would print and write,
//! on any machine; what a program can do runs in the real jail, and so does the check that the scripted
//! answers are what the program writes.

use std::time::Duration;

use nova_llm::{ChatClient, LlmConfig, TaskDocument, TaskError, TaskRunner};
use nova_sandbox::testing::{self, input_text};
use nova_sandbox::Status;
use rust_decimal::Decimal;

use crate::common::*;

/// Reads the data, then fails.
const RAISES_IN_TASK: &str = "import json\nrows = json.load(open('documents/index.json'))\nprint(1 / 0)\n";

fn config(h: &Harness) -> LlmConfig {
    let mut config = h.server.config();
    config.task_timeout = Duration::from_millis(2_000);
    config
}

fn runner(h: &Harness, config: LlmConfig) -> TaskRunner {
    TaskRunner::new(ChatClient::new(config).expect("a client"), h.sandbox.clone())
}

/// Dev invoices as the worker hands them to a task.
fn documents(stems: &[&str]) -> Vec<TaskDocument> {
    stems
        .iter()
        .enumerate()
        .map(|(i, stem)| {
            let (text, rules) = dev_invoice(stem);
            TaskDocument {
                id: format!("doc_{i}"),
                filename: Some(format!("{stem}.pdf")),
                kind: "pdf".into(),
                invoice: Some(serde_json::to_value(rules).unwrap()),
                error: None,
                text: Some(text),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_program_writes_its_files_from_the_documents_data() {
    let h = Harness::scripted().await;
    h.server.script.push(Reply::Program(TOTALS_PER_SELLER.into()));
    let docs = documents(&[LAYOUT_A, LAYOUT_A2]);
    let (usage, out) = runner(&h, config(&h)).run("Total these invoices per seller into a CSV", &docs).await;
    let out = out.expect("the task");
    assert_eq!(out.rounds, 1);
    assert_eq!(out.summary.trim(), "1 sellers, 2 documents, 2 texts");
    let names: Vec<&str> = out.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["totals.csv"], "only what the program wrote in out/");
    // The CSV's total is the sum of what extraction read.
    let expected: Decimal = docs
        .iter()
        .map(|d| d.invoice.as_ref().unwrap()["totals"]["grand_total"].as_str().unwrap().parse::<Decimal>().unwrap())
        .sum();
    let csv = String::from_utf8(out.files[0].contents.clone()).unwrap();
    let seller = docs[0].invoice.as_ref().unwrap()["seller"]["name"].as_str().unwrap().to_string();
    assert_eq!(csv.replace("\r\n", "\n"), format!("seller,total\n{seller},{expected}\n"));
    assert_eq!((usage.model_calls, usage.sandbox_runs), (1, 1));
    assert_eq!((usage.input_tokens, usage.output_tokens), (INPUT_TOKENS, OUTPUT_TOKENS));
    // The model was told the task and shown the data and a text.
    let first = h.server.script.last_user_message(0);
    assert!(first.contains("Total these invoices per seller") && first.contains("\"grand_total\""), "{first}");
    assert!(first.contains("Invoice # RE-20190610/507"), "{first}");
    // The sandbox was sent the program, the documents' data and texts, and asked for the files of out/ only.
    let sent = h.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(input_text(&sent[0], "program.py").as_deref(), Some(TOTALS_PER_SELLER.trim_end()));
    let index: serde_json::Value =
        serde_json::from_str(&input_text(&sent[0], "documents/index.json").unwrap()).unwrap();
    assert_eq!(index.as_array().map(Vec::len), Some(2));
    assert_eq!(input_text(&sent[0], "documents/doc_1.txt"), docs[1].text);
    assert_eq!(sent[0].output_dir.as_deref(), Some("out"));
    assert!(!sent[0].network);
    assert_eq!(sent[0].limits.wall_ms, 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_go_back_to_the_model_and_a_task_that_never_works_fails_with_its_usage() {
    let h = Harness::scripted().await;
    let (raises, loops, silent) = (RAISES_IN_TASK, "while True:\n    pass\n", "x = 1\n");
    h.programs.define(raises, |_| raised("<module>", "ZeroDivisionError: division by zero"));
    h.programs.define(loops, |_| testing::ended(Status::Timeout));
    h.programs.define(silent, |_| testing::ok(""));
    for bad in [raises, loops, silent] {
        h.server.script.push(Reply::Program(bad.into()));
    }
    h.server.script.push(Reply::Program(TOTALS_PER_SELLER.into()));
    let docs = documents(&[LAYOUT_A]);
    let (usage, out) = runner(&h, config(&h)).run("totals per seller", &docs).await;
    assert_eq!(out.expect("the fourth program works").rounds, 4);
    assert_eq!((usage.model_calls, usage.sandbox_runs), (4, 4));
    let script = &h.server.script;
    assert!(script.last_user_message(1).contains("ZeroDivisionError"), "{}", script.last_user_message(1));
    assert!(script.last_user_message(2).contains("did not finish within 2000 ms"), "{}", script.last_user_message(2));
    assert!(script.last_user_message(3).contains("wrote no file in out/"), "{}", script.last_user_message(3));

    // With one repair round and two bad programs, the task fails, and says why, with what it used.
    let mut once = config(&h);
    once.max_repair_rounds = 1;
    h.server.script.push(Reply::Program(raises.into()));
    h.server.script.push(Reply::Program(silent.into()));
    let (usage, out) = runner(&h, once).run("totals per seller", &docs).await;
    let err = out.expect_err("no program works");
    assert!(matches!(err, TaskError::GaveUp { rounds: 2, .. }), "{err}");
    assert_eq!((err.code(), err.is_transient()), ("task_failed", false));
    assert!(err.to_string().contains("wrote no file"), "{err}");
    assert_eq!((usage.model_calls, usage.sandbox_runs), (2, 2));
    let trimmed = |code: &str| code.trim().to_string();
    assert_eq!(h.programs_run(), [raises, loops, silent, TOTALS_PER_SELLER, raises, silent].map(trimmed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_program_that_reaches_for_the_network_or_the_host_is_contained() {
    let Some(h) = Harness::jailed().await else { return };
    let host_dir = tempfile::tempdir().unwrap();
    let marker = host_dir.path().join("escaped");
    // The probe, then the output folder swapped for a symlink to the jail's own files.
    let probe = escape_probe(h.server.addr, &marker);
    let hostile = format!("{probe}\nos.rmdir(\"out\")\nos.symlink(\"/etc\", \"out\")\nprint(_probe())\n");
    h.server.script.push(Reply::Program(hostile));
    h.server.script.push(Reply::Program(TOTALS_PER_SELLER.into()));
    let (_, out) = runner(&h, config(&h)).run("totals per seller", &documents(&[LAYOUT_A])).await;
    let out = out.expect("the second program works");
    assert_eq!(out.rounds, 2, "an output folder swapped for a symlink returns nothing and goes back to the model");
    assert_eq!(h.server.script.leaks.load(std::sync::atomic::Ordering::SeqCst), 0, "the program reached the host");
    assert!(!marker.exists(), "the program wrote to the host's file system");
    let feedback = h.server.script.last_user_message(1);
    assert!(feedback.contains("not a regular file"), "{feedback}");
}

/// What the scripted tests stand on, in the real jail: a failing program's traceback reaches the model and
/// names the program (the harness runs it as `program.py`), and the scripted answer for `TOTALS_PER_SELLER`
/// is what the program writes and prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_answers_are_what_the_program_writes_in_the_jail() {
    let Some(jailed) = Harness::jailed().await else { return };
    let docs = documents(&[LAYOUT_A, LAYOUT_A2]);
    jailed.server.script.push(Reply::Program(RAISES_IN_TASK.into()));
    jailed.server.script.push(Reply::Program(TOTALS_PER_SELLER.into()));
    let (_, real) = runner(&jailed, config(&jailed)).run("totals per seller", &docs).await;
    let real = real.expect("the second program works");
    assert_eq!(real.rounds, 2);
    let feedback = jailed.server.script.last_user_message(1);
    assert!(feedback.contains("ZeroDivisionError") && feedback.contains("program.py"), "{feedback}");

    let scripted = Harness::scripted().await;
    scripted.server.script.push(Reply::Program(TOTALS_PER_SELLER.into()));
    let (_, stand_in) = runner(&scripted, config(&scripted)).run("totals per seller", &docs).await;
    let stand_in = stand_in.expect("the scripted program works");
    assert_eq!(stand_in.files, real.files);
    assert_eq!(stand_in.summary, real.summary);
}
