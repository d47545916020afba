//! Batches on both backends: the set-based insert, counts, cancellation, results in input order, the
//! `batch.completed` message made once, and retention.

use std::time::Duration;

use nova_core::{BatchId, JobStatus, TenantId, WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{NewBatch, Store};
use serde_json::json;

nova_store::conformance!(
    a_batch_is_stored_with_every_job_queued_and_logged,
    counts_follow_the_jobs_and_the_batch_finishes_with_its_last,
    canceling_a_batch_stops_queued_jobs_and_flags_running_ones,
    results_come_in_input_order_a_page_at_a_time,
    a_finished_batch_makes_one_message_however_many_settle_it,
    batches_belong_to_their_tenant,
    a_batch_goes_when_its_jobs_are_pruned,
    batch_queries_read_the_batch_indexes_with_a_long_history,
);

const LEASE: Duration = Duration::from_secs(30);

fn batch(n: usize, webhook: Option<&str>) -> NewBatch {
    NewBatch {
        tenant: TenantId::DEFAULT,
        workflow: Workflow::Noop,
        inputs: (0..n).map(|i| json!({"sleep_ms": i})).collect(),
        max_attempts: 2,
        priority: 5,
        run_at: None,
        timeout: Duration::from_secs(60),
        queue_timeout: None,
        webhook_url: webhook.map(str::to_string),
        request_id: Some("req-1".into()),
    }
}

/// Claims up to `n` jobs and completes them.
async fn run(store: &Store, n: u32) {
    let claimed = store.claim_batch(WorkerId::new(), LEASE, &[(Workflow::Noop, n)]).await.unwrap();
    for c in claimed {
        store.complete(c.job.id, c.token, &json!({"slept": c.job.input["sleep_ms"]})).await.unwrap();
    }
}

async fn a_batch_is_stored_with_every_job_queued_and_logged(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let stored = f.store.insert_batch(batch(2500, None)).await.unwrap();
    assert_eq!((stored.total, stored.counts.queued, stored.done), (2500, 2500, 0));
    let read = f.store.tenant(TenantId::DEFAULT).get_batch(stored.id).await.unwrap().unwrap();
    assert_eq!(read.counts, stored.counts);
    assert!(!read.finished);
    assert_eq!(f.count("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").await, 2500);
    assert_eq!(f.count("SELECT COUNT(*) FROM job_events WHERE seq = 1 AND kind = 'queued'").await, 2500);
    // Each job carries the batch's options and its own input; claims take them like any job.
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.job.batch_id, Some(stored.id));
    assert_eq!((claimed.job.priority, claimed.job.max_attempts), (5, 2));
    assert_eq!(claimed.job.request_id.as_deref(), Some("req-1"));
    let events = f.store.job_events(claimed.job.id, 0, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["queued", "started"]);
}

async fn counts_follow_the_jobs_and_the_batch_finishes_with_its_last(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let tenant = f.store.tenant(TenantId::DEFAULT);
    let id = f.store.insert_batch(batch(5, None)).await.unwrap().id;
    run(&f.store, 2).await;
    let running = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let now = tenant.get_batch(id).await.unwrap().unwrap();
    assert_eq!((now.counts.succeeded, now.counts.running, now.counts.queued, now.done), (2, 1, 2, 2));
    assert!(!now.finished && now.finished_at.is_none());
    let error = nova_core::JobError { code: "boom".into(), message: "it broke".into() };
    f.store.fail(running.job.id, running.token, &error, None).await.unwrap();
    run(&f.store, 2).await;
    let done = tenant.get_batch(id).await.unwrap().unwrap();
    assert_eq!((done.counts.succeeded, done.counts.failed, done.done), (4, 1, 5));
    assert!(done.finished);
    let last = f.count("SELECT MAX(finished_at) FROM jobs").await;
    assert_eq!(done.finished_at.map(|t| t.timestamp_millis()), Some(last), "the last job's finish");
}

async fn canceling_a_batch_stops_queued_jobs_and_flags_running_ones(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let tenant = f.store.tenant(TenantId::DEFAULT);
    let id = f.store.insert_batch(batch(4, None)).await.unwrap().id;
    run(&f.store, 1).await;
    let running = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let canceled = tenant.cancel_batch(id).await.unwrap().unwrap();
    assert_eq!((canceled.canceled, canceled.requested), (2, 1));
    // The running job's worker learns it at its heartbeat; asking again flags nothing twice.
    assert_eq!(
        f.store.heartbeat(running.job.id, running.token, LEASE).await.unwrap(),
        nova_store::Heartbeat::CancelRequested
    );
    let again = tenant.cancel_batch(id).await.unwrap().unwrap();
    assert_eq!((again.canceled, again.requested), (0, 0));
    let now = tenant.get_batch(id).await.unwrap().unwrap();
    assert_eq!((now.counts.succeeded, now.counts.running, now.counts.canceled), (1, 1, 2));
    assert!(f.store.claim(WorkerId::new(), LEASE).await.unwrap().is_none(), "a canceled job was claimed");
    assert_eq!(f.count("SELECT COUNT(*) FROM job_events WHERE kind = 'canceled'").await, 2);
    assert_eq!(f.count("SELECT COUNT(*) FROM job_events WHERE kind = 'cancel_requested'").await, 1);
    f.store.finish_canceled(running.job.id, running.token).await.unwrap();
    assert!(tenant.get_batch(id).await.unwrap().unwrap().finished);
}

async fn results_come_in_input_order_a_page_at_a_time(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let tenant = f.store.tenant(TenantId::DEFAULT);
    let id = f.store.insert_batch(batch(7, None)).await.unwrap().id;
    run(&f.store, 3).await;
    let mut items = Vec::new();
    let mut from = 0;
    loop {
        let page = tenant.batch_items(id, from, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.index + 1;
        items.extend(page);
    }
    assert_eq!(items.iter().map(|i| i.index).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    for item in &items {
        assert_eq!(item.input, json!({"sleep_ms": item.index}), "each job's own input");
    }
    let succeeded: Vec<_> = items.iter().filter(|i| i.status == JobStatus::Succeeded).collect();
    assert_eq!(succeeded.len(), 3);
    for item in succeeded {
        assert_eq!(item.result, Some(json!({"slept": item.index})));
    }
    assert!(items.iter().filter(|i| i.status == JobStatus::Queued).all(|i| i.result.is_none()));
}

async fn a_finished_batch_makes_one_message_however_many_settle_it(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let hooked = f.store.insert_batch(batch(3, Some("https://example.com/batches"))).await.unwrap().id;
    let silent = f.store.insert_batch(batch(1, None)).await.unwrap().id;
    run(&f.store, 2).await;
    assert_eq!(f.store.settle_batches(10).await.unwrap(), 0, "jobs are still queued");
    run(&f.store, 2).await;
    // A second process on the same database settles at the same time.
    let other = Store::connect(&f.url, f.dir.path()).await.unwrap();
    let (a, b2, c) = tokio::join!(f.store.settle_batches(10), other.settle_batches(10), f.store.settle_batches(10));
    assert_eq!(a.unwrap() + b2.unwrap() + c.unwrap(), 2, "each batch settled once");
    assert_eq!(f.store.settle_batches(10).await.unwrap(), 0);
    let sent = f.store.claim_deliveries(10, LEASE).await.unwrap();
    assert_eq!(sent.len(), 1, "only the batch with a webhook has a message");
    let message = &sent[0];
    assert_eq!(
        (message.batch_id, message.job_id, message.event_type.as_str()),
        (Some(hooked), None, "batch.completed")
    );
    let payload: serde_json::Value = serde_json::from_str(&message.payload).unwrap();
    assert_eq!(payload["type"], "batch.completed");
    assert_eq!(payload["data"]["id"], hooked.to_string());
    assert_eq!(
        (payload["data"]["total"].as_u64(), payload["data"]["counts"]["succeeded"].as_u64()),
        (Some(3), Some(3))
    );
    let finished = f.store.tenant(TenantId::DEFAULT).get_batch(silent).await.unwrap().unwrap();
    assert!(finished.finished && finished.finished_at.is_some());
}

async fn batches_belong_to_their_tenant(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let (ta, tb) = (TenantId::new(), TenantId::new());
    let id = f.store.tenant(ta).insert_batch(batch(2, None)).await.unwrap().id;
    let other = f.store.tenant(tb);
    assert!(other.get_batch(id).await.unwrap().is_none());
    assert!(other.cancel_batch(id).await.unwrap().is_none());
    assert!(other.batch_items(id, 0, 10).await.unwrap().is_empty());
    assert!(other.list_batches(None, 10).await.unwrap().items.is_empty());
    assert_eq!(f.count("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").await, 2, "nothing canceled");
    // The owner's list pages newest first.
    let owner = f.store.tenant(ta);
    let newer = owner.insert_batch(batch(1, None)).await.unwrap().id;
    let first = owner.list_batches(None, 1).await.unwrap();
    assert_eq!((first.items[0].id, first.more), (newer, true));
    let second = owner.list_batches(Some(newer), 1).await.unwrap();
    assert_eq!((second.items[0].id, second.items[0].total, second.more), (id, 2, false));
    assert_eq!(second.items[0].counts.queued, 2);
    assert!(owner.get_batch(BatchId::new()).await.unwrap().is_none());
}

async fn a_batch_goes_when_its_jobs_are_pruned(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let tenant = f.store.tenant(TenantId::DEFAULT);
    let done = f.store.insert_batch(batch(2, None)).await.unwrap().id;
    run(&f.store, 2).await;
    let open = f.store.insert_batch(batch(1, None)).await.unwrap().id;
    f.store.settle_batches(10).await.unwrap();
    assert_eq!(f.store.prune_batches(10).await.unwrap(), 0, "its jobs are still there");
    f.store.prune_finished(Duration::ZERO, 100).await.unwrap();
    assert_eq!(f.store.prune_batches(10).await.unwrap(), 1);
    assert!(tenant.get_batch(done).await.unwrap().is_none());
    assert!(tenant.get_batch(open).await.unwrap().is_some(), "a batch with a queued job stays");
}

async fn batch_queries_read_the_batch_indexes_with_a_long_history(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    f.store.insert_batch(batch(50, None)).await.unwrap();
    // 20,000 finished jobs outside any batch, and the planners' statistics taken with them.
    f.store.insert_history(20_000, true).await.unwrap();
    let plans = f.store.explain_batch_queries().await.unwrap();
    let parts: Vec<&str> = plans.split("--\n").filter(|p| !p.is_empty()).collect();
    assert_eq!(parts.len(), 4, "{plans}");
    for plan in parts {
        assert!(plan.contains("jobs_by_batch"), "the batch's indexes are not read:\n{plan}");
        let full_scan = plan.lines().any(|l| l.trim() == "SCAN jobs" || l.contains("Seq Scan on jobs"));
        assert!(!full_scan, "a full scan of the jobs table:\n{plan}");
    }
}
