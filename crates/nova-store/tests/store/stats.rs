//! The queue statistics behind `GET /metrics`, and the request id a job keeps. Every test runs on SQLite and
//! on PostgreSQL (see `nova_store::testing`).

use std::time::Duration;

use chrono::Utc;
use nova_core::{WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{NewJob, WorkflowQueue};
use serde_json::json;

nova_store::conformance!(
    queue_stats_count_ready_scheduled_and_running_jobs_per_workflow,
    queue_stats_read_only_the_queue_indexes_with_a_long_history,
    a_job_keeps_the_request_id_it_was_submitted_with,
);

const LEASE: Duration = Duration::from_secs(30);

async fn queue_stats_count_ready_scheduled_and_running_jobs_per_workflow(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let empty = f.store.queue_stats().await.unwrap();
    assert_eq!(empty.workflows.len(), Workflow::ALL.len(), "every workflow is listed, idle ones at zero");
    assert!(empty.workflows.iter().all(|(_, q)| *q == WorkflowQueue::default()), "{empty:?}");

    // Three noop jobs ready (one submitted as if a minute ago), one delayed, one code.run that will run.
    let minute_ago = Utc::now() - chrono::Duration::seconds(60);
    f.store.enqueue(NewJob { run_at: Some(minute_ago), ..NewJob::new(Workflow::Noop, json!({})) }).await.unwrap();
    for _ in 0..2 {
        f.store.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap();
    }
    let later = Utc::now() + chrono::Duration::seconds(3600);
    f.store.enqueue(NewJob { run_at: Some(later), ..NewJob::new(Workflow::Noop, json!({})) }).await.unwrap();
    f.store.enqueue(NewJob::new(Workflow::CodeRun, json!({}))).await.unwrap();
    let claimed = f.store.claim_batch(WorkerId::new(), LEASE, &[(Workflow::CodeRun, 1)]).await.unwrap();
    assert_eq!(claimed.len(), 1);

    let stats = f.store.queue_stats().await.unwrap();
    let noop = stats.of(Workflow::Noop);
    assert_eq!((noop.ready, noop.scheduled, noop.running), (3, 1, 0), "{stats:?}");
    // The oldest ready job's run_at was a minute ago (give the test's own time some slack).
    assert!((59_000..120_000).contains(&noop.oldest_ready_ms), "{noop:?}");
    let code = stats.of(Workflow::CodeRun);
    assert_eq!(code, WorkflowQueue { ready: 0, scheduled: 0, running: 1, oldest_ready_ms: 0 });
    assert_eq!(stats.of(Workflow::InvoiceExtract), WorkflowQueue::default());

    // A finished job leaves the counts.
    f.store.complete(claimed[0].job.id, claimed[0].token, &json!({})).await.unwrap();
    assert_eq!(f.store.queue_stats().await.unwrap().of(Workflow::CodeRun), WorkflowQueue::default());
}

async fn queue_stats_read_only_the_queue_indexes_with_a_long_history(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    f.store.insert_history(20_000, true).await.unwrap();
    f.store.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap();
    let plans = f.store.explain_queue_stats().await.unwrap();
    let plans: Vec<&str> = plans.split("--\n").filter(|p| !p.trim().is_empty()).collect();
    assert_eq!(plans.len(), 2, "the server's and a tenant's: {plans:?}");
    for (i, plan) in plans.into_iter().enumerate() {
        // Each read walks a partial index of the queue, which holds no finished job, or (a tenant's, on
        // SQLite) ranges of `jobs_by_workflow` down to the unfinished statuses: the cost is the queue's, not
        // the history's (neither the whole table nor every job the tenant ever had).
        let reads =
            plan.lines().filter(|l| l.contains("USING") || l.contains("Index Scan") || l.contains("Index Only Scan"));
        for read in reads {
            let queue_only = read.contains("jobs_ready")
                || read.contains("jobs_leased")
                || (read.contains("jobs_by_workflow") && read.contains("status=?"));
            assert!(queue_only, "plan {i} reads more than the queue ({read}):\n{plan}");
        }
        let full_scan = plan.lines().any(|l| l.trim() == "SCAN jobs" || l.contains("Seq Scan on jobs"));
        assert!(!full_scan, "a full scan of the jobs table:\n{plan}");
    }
    let server = f.store.explain_queue_stats().await.unwrap();
    for index in ["jobs_ready", "jobs_leased"] {
        assert!(server.contains(index), "expected {index} in the plan:\n{server}");
    }
}

async fn a_job_keeps_the_request_id_it_was_submitted_with(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let new = NewJob { request_id: Some("req-42".into()), ..NewJob::new(Workflow::Noop, json!({})) };
    let job = f.store.enqueue(new).await.unwrap().job;
    assert_eq!(job.request_id.as_deref(), Some("req-42"));
    assert_eq!(f.store.get_job(job.id).await.unwrap().unwrap().request_id.as_deref(), Some("req-42"));
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().expect("the job");
    assert_eq!(claimed.job.request_id.as_deref(), Some("req-42"), "the worker sees it with the claim");

    let plain = f.store.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap().job;
    assert_eq!(plain.request_id, None);
    let shown = serde_json::to_value(&plain).unwrap();
    assert!(shown.get("request_id").is_none(), "omitted when absent: {shown}");
}
