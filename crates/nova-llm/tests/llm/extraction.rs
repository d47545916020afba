//! The extraction loop end to end: a scripted OpenAI-compatible server, a sandbox, a SQLite program store and
//! real dev invoices. The loop's logic runs with the scripted sandbox, which answers for each program with
//! what it would print, on any machine; what a program can do runs in the real jail, and so does the check
//! that the scripted answers are what the programs print.

use std::str::FromStr;
use std::time::{Duration, Instant};

use nova_llm::program::run_in_sandbox;
use nova_llm::{ChatClient, LlmError, Message, Price};
use nova_sandbox::testing::{self, input_text, ScriptedSandbox};
use nova_sandbox::ExecRequest;
use rust_decimal::Decimal;

use crate::common::*;

fn dec(s: &str) -> Option<Decimal> {
    Some(Decimal::from_str(s).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_program_answers_and_is_stored() {
    let h = Harness::scripted().await;
    h.server.script.push(Reply::Program(GOOD.into()));
    let (text, rules) = dev_invoice(LAYOUT_A);
    let out = h.extractor(h.server.config()).extract(&text, &rules).await.expect("the loop");
    let inv = &out.invoice;
    assert_eq!(inv.invoice_number.as_deref(), Some("RE-20190610/507"));
    assert_eq!(inv.issue_date.map(|d| d.to_string()).as_deref(), Some("2019-06-10"));
    assert_eq!(inv.totals.grand_total, dec("571.04"));
    assert_eq!(inv.totals.tax_total, dec("75.04"));
    assert_eq!(inv.tax_breakdown.len(), 2);
    assert_eq!(inv.seller.as_ref().and_then(|s| s.vat_id.as_deref()), Some("DE136695976"));
    assert_eq!(inv.source.as_deref(), Some("llm"));
    assert!(!out.cached);
    assert_eq!(h.server.script.calls(), 1);
    let stored = h.store.store.get_program(out.program.expect("a stored program")).await.unwrap().unwrap();
    assert_eq!(stored.layout_key, "DE136695976");
    assert_eq!(stored.code.trim(), GOOD.trim());
    // The model saw the document and the rules' findings.
    let first = h.server.script.last_user_message(0);
    assert!(first.contains("Invoice # RE-20190610/507") && first.contains("Generic rules read"), "{first}");
    // The sandbox was sent the model's program and the document, with no network and the program's deadline.
    let sent = h.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(input_text(&sent[0], "program.py").as_deref(), Some(GOOD.trim_end()));
    assert_eq!(input_text(&sent[0], "document.txt"), Some(text));
    assert!(!sent[0].network);
    assert_eq!(sent[0].limits.wall_ms, h.server.config().program_timeout.as_millis() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_go_back_to_the_model_until_a_program_passes() {
    let h = Harness::scripted().await;
    for bad in [RAISES, LOOPS, GARBAGE] {
        h.server.script.push(Reply::Program(bad.into()));
    }
    h.server.script.push(Reply::Program(GOOD.into()));
    let (text, rules) = dev_invoice(LAYOUT_A);
    let out = h.extractor(h.server.config()).extract(&text, &rules).await.expect("the loop");
    assert_eq!(out.invoice.totals.grand_total, dec("571.04"));
    assert_eq!(h.server.script.calls(), 4);
    assert_eq!(out.usage.model_calls, 4);
    assert_eq!(out.usage.sandbox_runs, 4);
    // Each round ran the program the model had just written.
    let trimmed = |code: &str| code.trim().to_string();
    assert_eq!(h.programs_run(), [RAISES, LOOPS, GARBAGE, GOOD].map(trimmed));
    // Each repair request carries what went wrong with the previous program.
    let script = &h.server.script;
    assert!(script.last_user_message(1).contains("ZeroDivisionError"), "{}", script.last_user_message(1));
    assert!(script.last_user_message(2).contains("did not finish within 1500 ms"), "{}", script.last_user_message(2));
    assert!(script.last_user_message(3).contains("not JSON"), "{}", script.last_user_message(3));
    // The conversation keeps the failed program as the model's own answer.
    let requests = script.requests.lock().unwrap();
    assert_eq!(requests[3]["messages"].as_array().map(Vec::len), Some(2 + 3 * 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_reaches_for_the_network_or_the_host_is_contained() {
    let Some(h) = Harness::jailed().await else { return };
    let host_dir = tempfile::tempdir().unwrap();
    let marker = host_dir.path().join("escaped");
    let hostile =
        format!("{}\ndef extract(text):\n    raise RuntimeError(_probe())\n", escape_probe(h.server.addr, &marker));
    h.server.script.push(Reply::Program(hostile));
    h.server.script.push(Reply::Program(GOOD.into()));
    let (text, rules) = dev_invoice(LAYOUT_A);
    let out = h.extractor(h.server.config()).extract(&text, &rules).await.expect("the loop");
    assert_eq!(out.invoice.totals.grand_total, dec("571.04"));
    assert_eq!(h.server.script.leaks.load(std::sync::atomic::Ordering::SeqCst), 0, "the program reached the host");
    assert!(!marker.exists(), "the program wrote to the host's file system");
    let feedback = h.server.script.last_user_message(1);
    assert!(feedback.contains("network: URLError") && feedback.contains("host file:"), "{feedback}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_that_gives_up_keeps_only_what_it_can_confirm() {
    let h = Harness::scripted().await;
    // Right amounts but a grand total the arithmetic refutes and an invoice number the page does not show.
    let wrong = GOOD
        .replace("\"grand_total\": grand", "\"grand_total\": \"999.99\"")
        .replace("\"invoice_number\": number.group(1) if number else None", "\"invoice_number\": \"INV-1\"");
    h.programs.define(&wrong, |request| {
        let mut printed = good(&document(request));
        printed["totals"]["grand_total"] = "999.99".into();
        printed["invoice_number"] = "INV-1".into();
        testing::ok(printed.to_string())
    });
    let mut config = h.server.config();
    config.max_repair_rounds = 1;
    h.server.script.push(Reply::Program(RAISES.into()));
    h.server.script.push(Reply::Program(wrong));
    let (text, rules) = dev_invoice(LAYOUT_A);
    let out = h.extractor(config).extract(&text, &rules).await.expect("the loop");
    assert_eq!(h.server.script.calls(), 2);
    assert_eq!(out.program, None, "a program that never passed is not stored");
    let inv = &out.invoice;
    assert_eq!(inv.invoice_number, None);
    assert_eq!(inv.totals.grand_total, None);
    assert_eq!(inv.totals.tax_total, None, "every amount of the failed sum is unconfirmed");
    assert_eq!(inv.issue_date.map(|d| d.to_string()).as_deref(), Some("2019-06-10"));
    assert!(
        inv.warnings.iter().any(|w| w.contains("no model-written program passed in 2 rounds")),
        "{:?}",
        inv.warnings
    );
    assert!(h.store.store.list_programs("", 10, None).await.unwrap().items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_invoice_of_a_layout_makes_no_model_call() {
    let h = Harness::scripted().await;
    h.server.script.push(Reply::Program(GOOD.into()));
    let extractor = h.extractor(h.server.config());
    let (text, rules) = dev_invoice(LAYOUT_A);
    let first = extractor.extract(&text, &rules).await.expect("the first invoice");
    let (text, rules) = dev_invoice(LAYOUT_A2);
    let second = extractor.extract(&text, &rules).await.expect("the second invoice");
    assert_eq!(h.server.script.calls(), 1, "one model call for the layout");
    assert!(second.cached);
    assert_eq!(second.program, first.program);
    assert_eq!(second.usage.model_calls, 0);
    assert_eq!(second.invoice.invoice_number.as_deref(), Some("RE-20201121/508"));
    assert_eq!(second.invoice.source.as_deref(), Some("llm_cache"));
    let stored = h.store.store.get_program(second.program.unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.successes, 2);
    // The stored program ran on the second invoice's own text.
    let sent = h.requests();
    assert_eq!(h.programs_run(), [GOOD.trim(), GOOD.trim()]);
    assert!(input_text(&sent[1], "document.txt").unwrap().contains("RE-20201121/508"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_program_that_keeps_failing_is_retired() {
    let h = Harness::scripted().await;
    let mut config = h.server.config();
    config.max_repair_rounds = 0;
    config.retire_after_failures = 2;
    h.server.script.push(Reply::Program(GOOD.into()));
    let extractor = h.extractor(config);
    let (text, rules) = dev_invoice(LAYOUT_A);
    let program = extractor.extract(&text, &rules).await.unwrap().program.unwrap();
    // The same layout, but its totals no longer add up: the stored program fails, the model is asked.
    let broken = text.replace("Due payable: 571.04", "Due payable: 571.40");
    for _ in 0..2 {
        h.server.script.push(Reply::Program(RAISES.into()));
        let out = extractor.extract(&broken, &rules).await.unwrap();
        assert!(!out.cached);
    }
    let stored = h.store.store.get_program(program).await.unwrap().unwrap();
    assert!(stored.retired && stored.failures == 2, "{stored:?}");
    // Retired: not even tried on a document it would pass.
    h.server.script.push(Reply::Program(GOOD.into()));
    let out = extractor.extract(&text, &rules).await.unwrap();
    assert!(!out.cached);
    assert_ne!(out.program, Some(program));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_cost_are_counted_from_the_responses() {
    let h = Harness::scripted().await;
    let mut config = h.server.config();
    config
        .prices
        .insert("scripted-model", Price { input_per_million: Decimal::from(1), output_per_million: Decimal::from(2) });
    h.server.script.push(Reply::Program(RAISES.into()));
    h.server.script.push(Reply::Program(GOOD.into()));
    let (text, rules) = dev_invoice(LAYOUT_A);
    let usage = h.extractor(config).extract(&text, &rules).await.unwrap().usage;
    assert_eq!((usage.model_calls, usage.requests), (2, 2));
    assert_eq!(usage.input_tokens, 2 * INPUT_TOKENS);
    assert_eq!(usage.output_tokens, 2 * OUTPUT_TOKENS);
    // (2000 x 1 + 400 x 2) / 1,000,000
    assert_eq!(usage.cost, dec("0.0028"));
    assert_eq!(usage.sandbox_runs, 2);
    // Each scripted run takes the same time: the usage is their sum.
    assert_eq!(usage.sandbox_wall_ms, 2 * testing::WALL_TIME.as_millis() as u64);
    assert_eq!(usage.sandbox_cpu_ms, 2 * testing::CPU_TIME.as_millis() as u64);
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_the_time_the_server_asks() {
    let server = ModelServer::start().await;
    server.script.push(Reply::Status(429, Some("1")));
    server.script.push(Reply::Program("def extract(text):\n    return {}".into()));
    let client = ChatClient::new(server.config()).unwrap();
    let started = Instant::now();
    let completion = client.complete(&[Message::user("hello")]).await.expect("a completion after the 429");
    assert_eq!(completion.requests, 2);
    assert_eq!(server.script.calls(), 2);
    // The backoff alone would have waited about 10 ms.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(completion.input_tokens, INPUT_TOKENS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_that_fails_midway_still_accounts_for_what_it_used() {
    let h = Harness::scripted().await;
    h.server.script.push(Reply::Program(RAISES.into()));
    h.server.script.push(Reply::Status(400, None));
    let (text, rules) = dev_invoice(LAYOUT_A);
    let mut usage = nova_llm::Usage::default();
    let err = h.extractor(h.server.config()).extract_counting(&text, &rules, &mut usage).await.unwrap_err();
    assert!(matches!(err, nova_llm::LoopError::Model(LlmError::Status { status: 400, .. })), "{err:?}");
    assert_eq!((usage.model_calls, usage.sandbox_runs), (1, 1), "the first round's call and run are counted");
    assert_eq!(usage.input_tokens, INPUT_TOKENS);
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let server = ModelServer::start().await;
    server.script.push(Reply::Status(503, None));
    server.script.push(Reply::Status(400, None));
    let client = ChatClient::new(server.config()).unwrap();
    let err = client.complete(&[Message::user("hello")]).await.unwrap_err();
    assert!(matches!(err, LlmError::Status { status: 400, .. }), "{err:?}");
    assert_eq!(server.script.calls(), 2);
}

#[tokio::test]
async fn a_model_that_does_not_answer_in_time_is_a_timeout_after_the_retries() {
    let server = ModelServer::start().await;
    for _ in 0..2 {
        server.script.push(Reply::Slow(Duration::from_secs(5), "x = 1".into()));
    }
    let mut config = server.config();
    config.request_timeout = Duration::from_millis(300);
    config.max_retries = 1;
    let client = ChatClient::new(config).unwrap();
    let err = client.complete(&[Message::user("hello")]).await.unwrap_err();
    assert!(matches!(err, LlmError::Timeout(_)), "{err:?}");
    assert_eq!(server.script.calls(), 2);
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token_and_never_printed() {
    let server = ModelServer::start().await;
    server.script.push(Reply::Program("x = 1".into()));
    let mut config = server.config();
    config.api_key = Some(nova_llm::ApiKey::new("sk-test-secret"));
    let client = ChatClient::new(config).unwrap();
    client.complete(&[Message::user("hello")]).await.unwrap();
    assert_eq!(server.script.authorization.lock().unwrap().as_deref(), Some("Bearer sk-test-secret"));
    assert!(!format!("{client:?}").contains("sk-test-secret"));
}

/// The closing figure of the AI path: model calls per document over a batch that shares one layout. The
/// batch is the two dev invoices of the template and more of its kind (the first one's page with other
/// invoice numbers, dates and buyers), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_one_layout_costs_one_model_call() {
    let h = Harness::scripted().await;
    h.server.script.push(Reply::Program(GOOD.into()));
    let extractor = h.extractor(h.server.config());
    let (first_text, rules) = dev_invoice(LAYOUT_A);
    let mut batch = vec![(first_text.clone(), rules.clone()), dev_invoice(LAYOUT_A2)];
    for i in 0..8 {
        let text = first_text
            .replace("RE-20190610/507", &format!("RE-20190{}12/6{i:02}", i + 1))
            .replace("2019-06-10", &format!("2019-0{}-12", i + 1))
            .replace("Theodor Est", &format!("Customer {}", ["Alpha", "Beta", "Gamma", "Delta"][i % 4]));
        batch.push((text, rules.clone()));
    }
    let mut calls = Vec::new();
    for (text, rules) in &batch {
        let before = h.server.script.calls();
        let out = extractor.extract(text, rules).await.expect("the loop");
        assert!(out.invoice.totals.grand_total.is_some() && out.invoice.invoice_number.is_some());
        calls.push(h.server.script.calls() - before);
    }
    let rest: usize = calls[1..].iter().sum();
    println!(
        "model calls per document, {} invoices of one layout: first {}, the rest {:.2} on average ({rest} in all)",
        batch.len(),
        calls[0],
        rest as f64 / (batch.len() - 1) as f64
    );
    assert_eq!(calls[0], 1);
    assert_eq!(rest, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_of_one_layout_at_once_still_cost_one_model_call() {
    let h = Harness::scripted().await;
    h.server.script.push(Reply::Program(GOOD.into()));
    let extractor = h.extractor(h.server.config());
    let batch = [dev_invoice(LAYOUT_A), dev_invoice(LAYOUT_A2), dev_invoice(LAYOUT_A)];
    // All three start together; the second and third wait for the first's program, then run it.
    let runs = batch.iter().map(|(text, rules)| {
        let extractor = extractor.clone();
        let (text, rules) = (text.clone(), rules.clone());
        tokio::spawn(async move { extractor.extract(&text, &rules).await.expect("the loop") })
    });
    let mut sources = Vec::new();
    for run in runs.collect::<Vec<_>>() {
        sources.push(run.await.unwrap().invoice.source.unwrap_or_default());
    }
    sources.sort();
    assert_eq!(sources, ["llm", "llm_cache", "llm_cache"]);
    assert_eq!(h.server.script.calls(), 1);
}

/// What the scripted tests stand on: the scripted sandbox answers for each program what the program prints
/// in the real jail, as the loop reads it (the first and last lines of a failure: a traceback's frames
/// differ).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_answers_are_what_the_programs_print_in_the_jail() {
    let Some(jail) = tokio::task::spawn_blocking(sandbox).await.expect("the sandbox check") else { return };
    let programs = Programs::known();
    let scripted = ScriptedSandbox::new(move |request: &ExecRequest| programs.answer(request));
    let (first, _) = dev_invoice(LAYOUT_A);
    let (second, _) = dev_invoice(LAYOUT_A2);
    let other = first.replace("RE-20190610/507", "RE-20190312/601").replace("2019-06-10", "2019-03-12");
    let timeout = Duration::from_millis(1500);
    let shown = |result: Result<serde_json::Value, nova_llm::program::RunFailure>| match result {
        Ok(value) => value.to_string(),
        Err(failure) => {
            let lines: Vec<&str> = failure.0.trim_end().lines().collect();
            format!("{} ... {}", lines[0], lines[lines.len() - 1])
        }
    };
    let runs = [(GOOD, &first), (GOOD, &second), (GOOD, &other), (RAISES, &first), (GARBAGE, &first), (LOOPS, &first)];
    for (code, text) in runs {
        let (jail, code_owned, text_owned) = (jail.clone(), code.to_string(), text.clone());
        let real = tokio::task::spawn_blocking(move || run_in_sandbox(&*jail, &code_owned, &text_owned, timeout))
            .await
            .unwrap();
        let stand_in = run_in_sandbox(&scripted, code, text, timeout);
        assert_eq!(shown(stand_in.result), shown(real.result), "{code}");
    }
}
