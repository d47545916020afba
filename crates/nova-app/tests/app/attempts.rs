//! One attempt at a time: outcomes, hand-back at shutdown, and a zombie's late result refused. The workflows
//! that run programs (`code.run`, `task.run`, `invoice.extract`'s AI path) run here with the scripted sandbox
//! and model server, which run nothing and work on any machine; the real jail has its own suites (nova-sandbox,
//! nova-llm) and runs under the binary in nova-cli's.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nova_app::{run_attempt, AttemptEnd, Completer, SandboxHandle, WorkerConfig};
use nova_core::{AttemptOutcome, DocumentId, DocumentKind, JobStatus, TenantId, WorkerId, Workflow};
use nova_llm::testing::{ModelServer, Reply, INPUT_TOKENS, OUTPUT_TOKENS};
use nova_sandbox::testing::{self, input_text, ScriptedSandbox};
use nova_sandbox::{Cancel, ExecRequest, Outcome, Sandbox, Status};
use nova_store::{ClaimedJob, NewDocument, NewJob, Store, UsageRow};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(30);

struct Fixture {
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture { store: Store::open(dir.path()).await.unwrap(), _dir: dir }
}

async fn extract_job(store: &Store, text: &str) -> nova_core::JobId {
    let input = json!({"document_id": text_document(store, text).await});
    store.enqueue(NewJob::new(Workflow::InvoiceExtract, input)).await.unwrap().job.id
}

/// A text document of the default tenant.
async fn text_document(store: &Store, text: &str) -> DocumentId {
    let doc = NewDocument {
        bytes: Bytes::copy_from_slice(text.as_bytes()),
        filename: None,
        kind: DocumentKind::Text,
        page_count: None,
    };
    store.put_document(doc).await.unwrap().0.id
}

/// Runs one attempt with a completer of its own.
async fn attempt(store: &Store, claimed: ClaimedJob, config: WorkerConfig, hand_back: CancellationToken) -> AttemptEnd {
    run_attempt(store.clone(), Completer::start(store.clone()), claimed, config, hand_back).await
}

const INVOICE_TEXT: &str = "ACME Widgets GmbH\nInvoice number: INV-2041\nDate: 2026-03-01\nTotal: 119.00 EUR\n";

#[tokio::test]
async fn an_attempt_records_its_result() {
    let f = fixture().await;
    let id = extract_job(&f.store, INVOICE_TEXT).await;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let end = attempt(&f.store, claimed, WorkerConfig::default(), CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Succeeded));
    let result = f.store.job_result(id).await.unwrap().unwrap();
    assert_eq!(result["source"], "text", "{result}");
}

#[tokio::test]
async fn a_job_whose_document_vanished_fails_without_retrying() {
    let f = fixture().await;
    let input = json!({"document_id": nova_core::DocumentId::new()});
    let id = f.store.enqueue(NewJob::new(Workflow::InvoiceExtract, input)).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let end = attempt(&f.store, claimed, WorkerConfig::default(), CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Failed));
    let job = f.store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.error.unwrap().code, "document_not_found");
    assert_eq!(job.attempts.len(), 1);
}

#[tokio::test]
async fn an_attempt_past_its_deadline_fails_with_timeout() {
    let f = fixture().await;
    let slow =
        NewJob { timeout: Duration::from_millis(300), ..NewJob::new(Workflow::Noop, json!({"sleep_ms": 60_000})) };
    let id = f.store.enqueue(slow).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let end = attempt(&f.store, claimed, WorkerConfig::default(), CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Failed));
    assert_eq!(f.store.get_job(id).await.unwrap().unwrap().error.unwrap().code, "timeout");
}

#[tokio::test]
async fn a_running_job_canceled_stops_at_its_next_heartbeat() {
    let f = fixture().await;
    let id = f.store.enqueue(NewJob::new(Workflow::Noop, json!({"sleep_ms": 60_000}))).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    assert!(matches!(f.store.cancel(id).await.unwrap(), Some(nova_store::Canceled::Requested(_))));
    let config = WorkerConfig { heartbeat: Duration::from_millis(20), ..WorkerConfig::default() };
    let end = attempt(&f.store, claimed, config, CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Canceled));
    let job = f.store.get_job(id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts[0].outcome), (JobStatus::Canceled, Some(AttemptOutcome::Canceled)));
}

#[tokio::test]
async fn a_hand_back_at_shutdown_requeues_the_job() {
    let f = fixture().await;
    let id = extract_job(&f.store, INVOICE_TEXT).await;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let hand_back = CancellationToken::new();
    hand_back.cancel();
    let end = attempt(&f.store, claimed, WorkerConfig::default(), hand_back).await;
    assert_eq!(end, AttemptEnd::Released);
    let job = f.store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts[0].outcome, Some(AttemptOutcome::Released));
}

#[tokio::test]
async fn a_zombie_attempt_cannot_record_its_late_result() {
    let f = fixture().await;
    let id = extract_job(&f.store, INVOICE_TEXT).await;
    // The zombie's lease lapses at once; a second worker takes the job over.
    let zombie = f.store.claim(WorkerId::new(), Duration::ZERO).await.unwrap().unwrap();
    let owner = f.store.claim(WorkerId::new(), LEASE).await.unwrap().expect("lapsed lease reclaimed");
    let end = attempt(&f.store, zombie, WorkerConfig::default(), CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::LeaseLost);
    let job = f.store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Running, "the owner's attempt is untouched");
    assert!(f.store.job_result(id).await.unwrap().is_none());
    f.store.complete(id, owner.token, &json!({"by": "owner"})).await.unwrap();
}

#[tokio::test]
async fn the_pool_runs_queued_jobs_and_stops_on_shutdown() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(extract_job(&f.store, &format!("{INVOICE_TEXT}Reference {n}\n")).await);
    }
    let shutdown = CancellationToken::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let config = WorkerConfig { concurrency: 2, poll_interval: Duration::from_millis(20), ..WorkerConfig::default() };
    let pool = tokio::spawn(nova_app::run(f.store.clone(), config, wake, shutdown.clone().cancelled_owned()));
    wait_for_succeeded(&f.store, ids.len()).await;
    shutdown.cancel();
    pool.await.unwrap();
    for id in ids {
        let job = f.store.get_job(id).await.unwrap().unwrap();
        assert_eq!((job.status, job.attempts.len()), (JobStatus::Succeeded, 1));
    }
}

/// Waits (polling the store, for at most a minute) until `n` jobs have succeeded.
async fn wait_for_succeeded(store: &Store, n: usize) {
    wait_until("jobs to finish", || async { store.count_jobs(JobStatus::Succeeded).await.unwrap() >= n as u64 }).await;
}

/// Polls `done` every 20 ms until it holds; fails the test after a minute.
async fn wait_until<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "waited a minute for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn each_workflow_runs_within_its_own_slots() {
    let f = fixture().await;
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        sleepers.push(f.store.enqueue(NewJob::new(Workflow::Noop, json!({"sleep_ms": 100}))).await.unwrap().job.id);
    }
    let mut extractions = Vec::new();
    for n in 0..3 {
        extractions.push(extract_job(&f.store, &format!("{INVOICE_TEXT}Reference {n}\n")).await);
    }
    let input = json!({"language": "python", "code": "print(1)"});
    let left = f.store.enqueue(NewJob::new(Workflow::CodeRun, input)).await.unwrap().job.id;
    let config = WorkerConfig {
        concurrency: 3,
        workflow_concurrency: [(Workflow::Noop, 1), (Workflow::CodeRun, 0)].into(),
        poll_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let pool = tokio::spawn(nova_app::run(f.store.clone(), config, wake, shutdown.clone().cancelled_owned()));
    wait_for_succeeded(&f.store, 6).await;
    shutdown.cancel();
    pool.await.unwrap();

    // One noop slot: the sleepers ran one after another.
    let mut runs = Vec::new();
    for id in sleepers {
        let attempt = f.store.get_job(id).await.unwrap().unwrap().attempts.remove(0);
        runs.push((attempt.started_at, attempt.finished_at.unwrap()));
    }
    runs.sort();
    for pair in runs.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two noop jobs overlapped: {runs:?}");
    }
    // No code.run slot: that job was left to other workers.
    let job = f.store.get_job(left).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts.len()), (JobStatus::Queued, 0));
}

#[tokio::test]
async fn code_run_on_a_worker_without_a_sandbox_is_retried_elsewhere() {
    let f = fixture().await;
    let input = json!({"language": "python", "code": "print(1)"});
    let id = f.store.enqueue(NewJob::new(Workflow::CodeRun, input)).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let config = WorkerConfig { sandbox: None, ..WorkerConfig::default() };
    let end = attempt(&f.store, claimed, config, CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Retrying));
    let job = f.store.get_job(id).await.unwrap().unwrap();
    assert_eq!(job.error.unwrap().code, "sandbox_unavailable");
}

/// A worker configuration with `sandbox`.
fn with_sandbox(sandbox: Arc<dyn Sandbox>) -> WorkerConfig {
    WorkerConfig { sandbox: Some(SandboxHandle(sandbox)), ..WorkerConfig::default() }
}

/// The default tenant's usage of `workflow` today.
async fn usage_today(store: &Store, workflow: &str) -> Vec<UsageRow> {
    let today = chrono::Utc::now().date_naive();
    store.tenant(TenantId::DEFAULT).usage(today, today, Some(workflow)).await.unwrap()
}

#[tokio::test]
async fn a_code_run_job_run_by_the_pool_has_the_sandbox_s_outcome_as_its_result() {
    let f = fixture().await;
    let sandbox = Arc::new(ScriptedSandbox::new(|request: &ExecRequest| {
        let rows = input_text(request, "data.csv").map_or(0, |data| data.lines().count());
        testing::with_files(format!("{rows} rows\n"), [("report.txt".into(), b"done".to_vec())])
    }));
    let input = json!({
        "language": "python",
        "code": "print(len(open('data.csv').readlines()), 'rows')",
        "stdin": "from stdin",
        "files": [{"path": "data.csv", "content": "a,b\n1,2\n3,4\n"}],
        "limits": {"timeout_ms": 120_000, "memory_mb": 128},
    });
    let id = f.store.enqueue(NewJob::new(Workflow::CodeRun, input)).await.unwrap().job.id;
    let config =
        WorkerConfig { concurrency: 1, poll_interval: Duration::from_millis(20), ..with_sandbox(sandbox.clone()) };
    let shutdown = CancellationToken::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let pool = tokio::spawn(nova_app::run(f.store.clone(), config, wake, shutdown.clone().cancelled_owned()));
    wait_for_succeeded(&f.store, 1).await;
    shutdown.cancel();
    pool.await.unwrap();

    let result = f.store.job_result(id).await.unwrap().unwrap();
    assert_eq!(
        result,
        json!({
            "status": "ok", "exit_code": 0, "signal": null, "stdout": "3 rows\n", "stderr": "",
            "output_truncated": false, "files": [{"path": "report.txt", "size": 4, "content": "done"}],
            "files_truncated": false, "wall_ms": 10, "cpu_ms": 5, "peak_memory_bytes": 0, "error": null,
        })
    );
    let sent = sandbox.requests();
    assert_eq!(sent.len(), 1, "one attempt, one run");
    assert_eq!(
        (sent[0].code.as_str(), sent[0].stdin.as_slice()),
        ("print(len(open('data.csv').readlines()), 'rows')", &b"from stdin"[..])
    );
    assert_eq!((sent[0].limits.wall_ms, sent[0].limits.memory_bytes), (120_000, 128 << 20));
    assert!(!sent[0].network);
    let usage = usage_today(&f.store, "code.run").await;
    assert_eq!(usage.len(), 1, "{usage:?}");
    let used = usage[0].usage;
    assert_eq!((usage[0].runs, used.sandbox_runs, used.sandbox_cpu_ms, used.sandbox_wall_ms), (1, 1, 5, 10));
}

#[tokio::test]
async fn a_code_run_whose_program_fails_succeeds_and_a_sandbox_error_is_retried() {
    let f = fixture().await;
    let sandbox = Arc::new(ScriptedSandbox::answering([
        testing::nonzero_exit(1, "ZeroDivisionError: division by zero\n"),
        Outcome::sandbox_error("creating the cgroup failed"),
    ]));
    let input = json!({"language": "python", "code": "print(1 / 0)"});
    let failing = f.store.enqueue(NewJob::new(Workflow::CodeRun, input.clone())).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let end = attempt(&f.store, claimed, with_sandbox(sandbox.clone()), CancellationToken::new()).await;
    // The program's own failure is its outcome, the job's result.
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Succeeded));
    let result = f.store.job_result(failing).await.unwrap().unwrap();
    assert_eq!((result["status"].as_str(), result["exit_code"].as_i64()), (Some("nonzero_exit"), Some(1)), "{result}");

    // The sandbox's failure is not the program's: the attempt is transient, the job tried again later.
    let broken = f.store.enqueue(NewJob::new(Workflow::CodeRun, input)).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let end = attempt(&f.store, claimed, with_sandbox(sandbox.clone()), CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Retrying));
    let job = f.store.get_job(broken).await.unwrap().unwrap();
    let error = job.error.unwrap();
    assert_eq!((error.code.as_str(), error.message.as_str()), ("sandbox_error", "creating the cgroup failed"));
    assert_eq!((job.status, job.attempts.len()), (JobStatus::Retrying, 1));
    assert!(f.store.job_result(broken).await.unwrap().is_none());
    assert_eq!(sandbox.runs(), 2);
}

/// A sandbox that hangs until canceled (the scripted one) and sends each run's outcome once it ends: the
/// attempt no longer waits for a run it abandoned, the test does.
struct Watched {
    scripted: ScriptedSandbox,
    ended: Mutex<tokio::sync::mpsc::UnboundedSender<Outcome>>,
}

impl Sandbox for Watched {
    fn exec_cancelable(&self, request: &ExecRequest, cancel: &Cancel) -> Outcome {
        let outcome = self.scripted.exec_cancelable(request, cancel);
        let _ = self.ended.lock().unwrap().send(outcome.clone());
        outcome
    }
}

#[tokio::test]
async fn a_running_code_run_canceled_ends_canceled_and_its_run_is_stopped() {
    let f = fixture().await;
    let (ended, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let sandbox = Arc::new(Watched { scripted: ScriptedSandbox::hanging(), ended: Mutex::new(ended) });
    // Left alone, the program would run until its deadline (then its status would be `timeout`).
    let input = json!({"language": "python", "code": "while True: pass", "limits": {"timeout_ms": 20_000}});
    let id = f.store.enqueue(NewJob::new(Workflow::CodeRun, input)).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let config = WorkerConfig { heartbeat: Duration::from_millis(20), ..with_sandbox(sandbox.clone()) };
    let (store, completer) = (f.store.clone(), Completer::start(f.store.clone()));
    let running = tokio::spawn(run_attempt(store, completer, claimed, config, CancellationToken::new()));
    wait_until("the program to start", || async { sandbox.scripted.runs() == 1 }).await;
    assert!(matches!(f.store.cancel(id).await.unwrap(), Some(nova_store::Canceled::Requested(_))));

    assert_eq!(running.await.unwrap(), AttemptEnd::Recorded(JobStatus::Canceled));
    let job = f.store.get_job(id).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts[0].outcome), (JobStatus::Canceled, Some(AttemptOutcome::Canceled)));
    // The run was canceled, not left to its deadline.
    let outcome = tokio::time::timeout(Duration::from_secs(60), outcomes.recv())
        .await
        .expect("the sandbox run did not end")
        .unwrap();
    assert_eq!(outcome.status, Status::Canceled, "the run went on after the job was canceled");
}

/// A worker configuration with `sandbox` and the scripted model `server`.
fn with_model(server: &ModelServer, sandbox: Option<Arc<dyn Sandbox>>) -> WorkerConfig {
    let client = nova_llm::ChatClient::new(server.config()).unwrap();
    WorkerConfig { model: Ok(Some(client)), sandbox: sandbox.map(SandboxHandle), ..WorkerConfig::default() }
}

/// What the model writes for the task of `a_task_run_stores_its_program_s_files_as_artifacts` (the scripted
/// sandbox answers for it).
const NUMBERS_PER_DOCUMENT: &str = r#"import csv, json
docs = json.load(open("documents/index.json"))
with open("out/numbers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["document", "invoice_number"])
    for doc in docs:
        w.writerow([doc["id"], (doc["invoice"] or {}).get("invoice_number")])
print(len(docs), "documents")
"#;

#[tokio::test]
async fn a_task_run_stores_its_program_s_files_as_artifacts() {
    let f = fixture().await;
    let server = ModelServer::start().await;
    server.script.push(Reply::Program(NUMBERS_PER_DOCUMENT.into()));
    // What the program would write, from the documents' data it is given.
    let sandbox = Arc::new(ScriptedSandbox::new(|request: &ExecRequest| {
        let index = input_text(request, "documents/index.json").expect("the documents' data");
        let docs: Vec<Value> = serde_json::from_str(&index).unwrap();
        let mut csv = String::from("document,invoice_number\r\n");
        for doc in &docs {
            csv.push_str(&format!(
                "{},{}\r\n",
                doc["id"].as_str().unwrap(),
                doc["invoice"]["invoice_number"].as_str().unwrap()
            ));
        }
        testing::with_files(format!("{} documents\n", docs.len()), [("numbers.csv".into(), csv.into_bytes())])
    }));
    let first = text_document(&f.store, INVOICE_TEXT).await;
    let second = text_document(&f.store, &INVOICE_TEXT.replace("INV-2041", "INV-2042")).await;
    let input = json!({"prompt": "list the invoice numbers", "document_ids": [first, second]});
    let id = f.store.enqueue(NewJob::new(Workflow::TaskRun, input)).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let end = attempt(&f.store, claimed, with_model(&server, Some(sandbox.clone())), CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Succeeded));

    let result = f.store.job_result(id).await.unwrap().unwrap();
    assert_eq!((result["summary"].as_str(), result["rounds"].as_u64()), (Some("2 documents\n"), Some(1)), "{result}");
    assert_eq!(result["program"].as_str().map(str::trim), Some(NUMBERS_PER_DOCUMENT.trim()));
    assert_eq!(
        (result["llm_usage"]["model_calls"].as_u64(), result["llm_usage"]["sandbox_runs"].as_u64()),
        (Some(1), Some(1))
    );
    let expected = format!("document,invoice_number\r\n{first},INV-2041\r\n{second},INV-2042\r\n");
    let artifacts = result["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{result}");
    assert_eq!(
        (artifacts[0]["name"].as_str(), artifacts[0]["content_type"].as_str(), artifacts[0]["size"].as_u64()),
        (Some("numbers.csv"), Some("text/csv; charset=utf-8"), Some(expected.len() as u64))
    );
    let (artifact, contents) =
        f.store.tenant(TenantId::DEFAULT).artifact(id, "numbers.csv").await.unwrap().expect("the stored artifact");
    assert_eq!((artifact.name.as_str(), String::from_utf8(contents).unwrap()), ("numbers.csv", expected));

    // The sandbox got the model's program and the documents' texts, and was asked for the files of out/.
    let sent = sandbox.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(input_text(&sent[0], "program.py").as_deref().map(str::trim), Some(NUMBERS_PER_DOCUMENT.trim()));
    assert_eq!(
        input_text(&sent[0], &format!("documents/{second}.txt")).as_deref(),
        Some(INVOICE_TEXT.replace("INV-2041", "INV-2042").as_str())
    );
    assert_eq!(sent[0].output_dir.as_deref(), Some("out"));
    assert!(server.script.last_user_message(0).contains("list the invoice numbers"));
    let usage = usage_today(&f.store, "task.run").await;
    assert_eq!(usage.len(), 1, "{usage:?}");
    let used = usage[0].usage;
    assert_eq!((used.model_calls, used.input_tokens, used.output_tokens), (1, INPUT_TOKENS, OUTPUT_TOKENS));
    assert_eq!((used.sandbox_runs, used.sandbox_wall_ms), (1, 10));
}

/// What the model writes for `INVOICE_TEXT` (the scripted sandbox answers for it).
const READS_THE_INVOICE: &str = r#"import re

def extract(text):
    return {
        "invoice_number": re.search(r"Invoice number: (\S+)", text).group(1),
        "issue_date": re.search(r"Date: (\S+)", text).group(1),
        "currency": "EUR",
        "seller": {"name": text.splitlines()[0]},
        "totals": {"grand_total": re.search(r"Total: ([\d.]+)", text).group(1)},
    }
"#;

#[tokio::test]
async fn an_llm_extraction_runs_the_model_s_program_in_the_sandbox() {
    let f = fixture().await;
    let server = ModelServer::start().await;
    server.script.push(Reply::Program(READS_THE_INVOICE.into()));
    let sandbox = Arc::new(ScriptedSandbox::new(|request: &ExecRequest| {
        let text = input_text(request, "document.txt").expect("the document's text");
        let field = |label: &str| text.lines().find_map(|l| l.strip_prefix(label)).unwrap().trim().to_string();
        let invoice = json!({
            "invoice_number": field("Invoice number:"),
            "issue_date": field("Date:"),
            "currency": "EUR",
            "seller": {"name": text.lines().next().unwrap()},
            "totals": {"grand_total": field("Total:").trim_end_matches(" EUR")},
        });
        testing::ok(invoice.to_string())
    }));
    let input = json!({"document_id": text_document(&f.store, INVOICE_TEXT).await, "strategy": "llm"});
    let id = f.store.enqueue(NewJob::new(Workflow::InvoiceExtract, input)).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let end = attempt(&f.store, claimed, with_model(&server, Some(sandbox.clone())), CancellationToken::new()).await;
    assert_eq!(end, AttemptEnd::Recorded(JobStatus::Succeeded));

    let result = f.store.job_result(id).await.unwrap().unwrap();
    assert_eq!(result["source"], "llm", "the model's program, not the rules: {result}");
    assert_eq!(
        (result["invoice_number"].as_str(), result["issue_date"].as_str()),
        (Some("INV-2041"), Some("2026-03-01"))
    );
    assert_eq!(result["totals"]["grand_total"], "119.00", "{result}");
    assert_eq!(
        (result["llm_usage"]["model_calls"].as_u64(), result["llm_usage"]["sandbox_runs"].as_u64()),
        (Some(1), Some(1))
    );
    let sent = sandbox.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(input_text(&sent[0], "program.py").as_deref().map(str::trim), Some(READS_THE_INVOICE.trim()));
    assert_eq!(input_text(&sent[0], "document.txt").as_deref(), Some(INVOICE_TEXT));
    assert!(!sent[0].network);
    let usage = usage_today(&f.store, "invoice.extract").await;
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!((usage[0].usage.model_calls, usage[0].usage.sandbox_runs), (1, 1));
}

#[tokio::test]
async fn the_ai_workflows_on_a_worker_without_a_sandbox_are_retried_elsewhere() {
    let f = fixture().await;
    let server = ModelServer::start().await;
    let document = text_document(&f.store, INVOICE_TEXT).await;
    let jobs = [
        (Workflow::TaskRun, json!({"prompt": "list the invoice numbers", "document_ids": [document]})),
        (Workflow::InvoiceExtract, json!({"document_id": document, "strategy": "llm"})),
    ];
    for (workflow, input) in jobs {
        let id = f.store.enqueue(NewJob::new(workflow, input)).await.unwrap().job.id;
        let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
        let end = attempt(&f.store, claimed, with_model(&server, None), CancellationToken::new()).await;
        assert_eq!(end, AttemptEnd::Recorded(JobStatus::Retrying), "{workflow}");
        let job = f.store.get_job(id).await.unwrap().unwrap();
        assert_eq!(job.error.unwrap().code, "sandbox_unavailable", "{workflow}");
    }
    assert_eq!(server.script.calls(), 0, "the model is not asked for a program that could not run");
}
