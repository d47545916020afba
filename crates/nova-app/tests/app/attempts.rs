//! One attempt at a time: outcomes, hand-back at shutdown, and a zombie's late result refused.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nova_app::{run_attempt, AttemptEnd, Completer, WorkerConfig};
use nova_core::{AttemptOutcome, DocumentKind, JobStatus, WorkerId, Workflow};
use nova_store::{ClaimedJob, NewDocument, NewJob, Store};
use serde_json::json;
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
    let (doc, _) = store
        .put_document(NewDocument {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            filename: None,
            kind: DocumentKind::Text,
            page_count: None,
        })
        .await
        .unwrap();
    let input = json!({"document_id": doc.id});
    store.enqueue(NewJob::new(Workflow::InvoiceExtract, input)).await.unwrap().job.id
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.count_jobs(JobStatus::Succeeded).await.unwrap() < n as u64 {
        assert!(tokio::time::Instant::now() < deadline, "jobs did not finish");
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
