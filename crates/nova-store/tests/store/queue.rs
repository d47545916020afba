//! The queue's conformance suite: claims, fencing, lapsed leases, release, retry. Every test runs on SQLite
//! and on PostgreSQL (see `nova_store::testing`).

use std::time::Duration;

use nova_core::{AttemptOutcome, AttemptToken, JobError, JobStatus, WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{Canceled, Completion, Heartbeat, NewJob, Store, StoreError};
use serde_json::json;

nova_store::conformance!(
    a_job_is_claimed_once_and_completes_with_its_result,
    jobs_are_claimed_oldest_first,
    a_lapsed_lease_is_reclaimed_and_the_zombie_is_fenced_out,
    a_lapsed_lease_on_the_last_attempt_fails_the_job,
    a_released_job_is_queued_again_without_using_an_attempt,
    a_failure_retries_while_attempts_remain_then_fails,
    a_delayed_retry_is_not_claimed_early_and_permanent_failures_do_not_retry,
    concurrent_claimers_never_take_the_same_job,
    higher_priority_runs_first_and_run_at_delays,
    an_idempotency_key_returns_the_first_job_or_a_conflict,
    a_queued_job_canceled_never_runs,
    a_running_job_learns_of_its_cancellation_at_its_heartbeat,
    every_transition_and_progress_report_is_logged_in_order,
    retention_prunes_only_old_finished_jobs_with_their_history,
    queue_queries_stay_on_their_indexes_with_a_long_history,
    a_batch_claim_takes_the_best_jobs_each_under_its_own_token,
    a_batch_completion_records_each_held_job_and_refuses_the_rest,
    a_batch_claim_takes_at_most_what_it_asks_of_each_workflow,
    a_job_not_started_within_its_queue_timeout_fails_without_running,
);

fn job(max_attempts: u32) -> NewJob {
    NewJob { max_attempts, ..NewJob::new(Workflow::Noop, json!({})) }
}

const LEASE: Duration = Duration::from_secs(30);

async fn a_job_is_claimed_once_and_completes_with_its_result(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(3)).await.unwrap().job;
    assert_eq!(queued.status, JobStatus::Queued);
    assert!(queued.attempts.is_empty());

    let w = WorkerId::new();
    let claimed = f.store.claim(w, LEASE).await.unwrap().expect("a ready job");
    assert_eq!(claimed.job.id, queued.id);
    assert_eq!(claimed.job.status, JobStatus::Running);
    assert_eq!(claimed.attempt, 1);
    assert!(f.store.claim(WorkerId::new(), LEASE).await.unwrap().is_none(), "claimed twice");

    assert_eq!(f.store.heartbeat(queued.id, claimed.token, LEASE).await.unwrap(), Heartbeat::Renewed);
    f.store.complete(queued.id, claimed.token, &json!({"ok": 1})).await.unwrap();
    let done = f.store.get_job(queued.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert!(done.finished_at.is_some());
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].worker_id, w);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Succeeded));
    assert_eq!(f.store.job_result(queued.id).await.unwrap(), Some(json!({"ok": 1})));

    // A finished job is never claimed again, and a second completion is refused.
    assert!(f.store.claim(w, LEASE).await.unwrap().is_none());
    assert!(matches!(f.store.complete(queued.id, claimed.token, &json!({})).await, Err(StoreError::LeaseLost)));
}

async fn jobs_are_claimed_oldest_first(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let first = f.store.enqueue(job(1)).await.unwrap().job;
    let second = f.store.enqueue(job(1)).await.unwrap().job;
    let w = WorkerId::new();
    assert_eq!(f.store.claim(w, LEASE).await.unwrap().unwrap().job.id, first.id);
    assert_eq!(f.store.claim(w, LEASE).await.unwrap().unwrap().job.id, second.id);
}

async fn a_lapsed_lease_is_reclaimed_and_the_zombie_is_fenced_out(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(3)).await.unwrap().job;
    let zombie = f.store.claim(WorkerId::new(), Duration::ZERO).await.unwrap().unwrap();
    let fresh = f.store.claim(WorkerId::new(), LEASE).await.unwrap().expect("lapsed job reclaimed");
    assert_eq!(fresh.job.id, queued.id);
    assert_eq!(fresh.attempt, 2);
    assert_ne!(fresh.token, zombie.token);

    // Every write of the old attempt is refused.
    assert!(matches!(f.store.heartbeat(queued.id, zombie.token, LEASE).await, Err(StoreError::LeaseLost)));
    assert!(matches!(f.store.complete(queued.id, zombie.token, &json!("late")).await, Err(StoreError::LeaseLost)));
    let err = JobError { code: "x".into(), message: "y".into() };
    assert!(matches!(f.store.fail(queued.id, zombie.token, &err, None).await, Err(StoreError::LeaseLost)));
    assert!(matches!(f.store.release(queued.id, zombie.token).await, Err(StoreError::LeaseLost)));

    f.store.complete(queued.id, fresh.token, &json!("fresh")).await.unwrap();
    let done = f.store.get_job(queued.id).await.unwrap().unwrap();
    assert_eq!(f.store.job_result(queued.id).await.unwrap(), Some(json!("fresh")));
    let outcomes: Vec<_> = done.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Some(AttemptOutcome::Failed), Some(AttemptOutcome::Succeeded)]);
    assert_eq!(done.attempts[0].error.as_ref().unwrap().code, "lease_expired");
}

async fn a_lapsed_lease_on_the_last_attempt_fails_the_job(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(1)).await.unwrap().job;
    f.store.claim(WorkerId::new(), Duration::ZERO).await.unwrap().unwrap();
    assert!(f.store.claim(WorkerId::new(), LEASE).await.unwrap().is_none());
    let failed = f.store.get_job(queued.id).await.unwrap().unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "lease_expired");
}

async fn a_released_job_is_queued_again_without_using_an_attempt(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(1)).await.unwrap().job;
    let first = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    f.store.release(queued.id, first.token).await.unwrap();
    assert_eq!(f.store.get_job(queued.id).await.unwrap().unwrap().status, JobStatus::Queued);
    // max_attempts is 1, and the released attempt did not count.
    let second = f.store.claim(WorkerId::new(), LEASE).await.unwrap().expect("released job claimable");
    assert_eq!(second.attempt, 2);
    f.store.complete(queued.id, second.token, &json!(null)).await.unwrap();
    let done = f.store.get_job(queued.id).await.unwrap().unwrap();
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Released));
}

async fn a_failure_retries_while_attempts_remain_then_fails(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(2)).await.unwrap().job;
    let err = JobError { code: "blob_unavailable".into(), message: "try later".into() };
    let a = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let status = f.store.fail(queued.id, a.token, &err, Some(Duration::ZERO)).await.unwrap();
    assert_eq!(status, JobStatus::Retrying);
    let b = f.store.claim(WorkerId::new(), LEASE).await.unwrap().expect("retry is claimable");
    let status = f.store.fail(queued.id, b.token, &err, Some(Duration::ZERO)).await.unwrap();
    assert_eq!(status, JobStatus::Failed, "attempts used up");
    let failed = f.store.get_job(queued.id).await.unwrap().unwrap();
    assert_eq!(failed.error, Some(err));
    assert_eq!(failed.attempts.len(), 2);
}

async fn a_delayed_retry_is_not_claimed_early_and_permanent_failures_do_not_retry(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(5)).await.unwrap().job;
    let err = JobError { code: "invalid_pdf".into(), message: "bad".into() };
    let a = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    f.store.fail(queued.id, a.token, &err, Some(Duration::from_secs(3600))).await.unwrap();
    assert!(f.store.claim(WorkerId::new(), LEASE).await.unwrap().is_none(), "claimed before its run_at");

    let other = f.store.enqueue(job(5)).await.unwrap().job;
    let b = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    assert_eq!(b.job.id, other.id);
    assert_eq!(f.store.fail(other.id, b.token, &err, None).await.unwrap(), JobStatus::Failed);
}

#[tokio::test]
async fn jobs_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = Store::open(dir.path()).await.unwrap();
        let id = store.enqueue(job(1)).await.unwrap().job.id;
        store.close().await;
        id
    };
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap().job.id, id);
}

async fn concurrent_claimers_never_take_the_same_job(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let total = 60;
    for _ in 0..total {
        f.store.enqueue(job(1)).await.unwrap();
    }
    // Claimers race on the same queue; every job must be claimed exactly once.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let store: Store = f.store.clone();
        tasks.spawn(async move {
            let (worker, mut mine) = (WorkerId::new(), Vec::new());
            while let Some(c) = store.claim(worker, LEASE).await.unwrap() {
                store.complete(c.job.id, c.token, &json!(null)).await.unwrap();
                mine.push(c.job.id);
            }
            mine
        });
    }
    let mut all = Vec::new();
    while let Some(mine) = tasks.join_next().await {
        all.extend(mine.unwrap());
    }
    let claimed = all.len();
    all.sort();
    all.dedup();
    assert_eq!((claimed, all.len()), (total, total), "a job was claimed twice or lost");
    assert_eq!(f.store.count_jobs(JobStatus::Succeeded).await.unwrap(), total as u64);
}

async fn higher_priority_runs_first_and_run_at_delays(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let low = f.store.enqueue(NewJob { priority: -5, ..job(1) }).await.unwrap().job;
    let normal = f.store.enqueue(job(1)).await.unwrap().job;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let urgent_but_later = f.store.enqueue(NewJob { priority: 10, run_at: Some(later), ..job(1) }).await.unwrap().job;
    let urgent = f.store.enqueue(NewJob { priority: 10, ..job(1) }).await.unwrap().job;
    let w = WorkerId::new();
    let mut order = Vec::new();
    while let Some(c) = f.store.claim(w, LEASE).await.unwrap() {
        order.push(c.job.id);
    }
    assert_eq!(order, [urgent.id, normal.id, low.id], "the delayed job waits for its run_at");
    let waiting = f.store.get_job(urgent_but_later.id).await.unwrap().unwrap();
    assert_eq!((waiting.status, waiting.priority), (JobStatus::Queued, 10));
    assert_eq!(waiting.run_at.timestamp_millis(), later.timestamp_millis());
}

async fn an_idempotency_key_returns_the_first_job_or_a_conflict(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let keyed = |input| NewJob { idempotency_key: Some("order-42".into()), ..NewJob::new(Workflow::Noop, input) };
    let first = f.store.enqueue(keyed(json!({"sleep_ms": 1}))).await.unwrap();
    assert!(first.created);
    let again = f.store.enqueue(keyed(json!({"sleep_ms": 1}))).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.job.id, first.job.id);
    match f.store.enqueue(keyed(json!({"sleep_ms": 2}))).await {
        Err(StoreError::IdempotencyConflict(id)) => assert_eq!(id, first.job.id),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(f.store.count_jobs(JobStatus::Queued).await.unwrap(), 1);
    // Without a key, identical submissions are separate jobs.
    f.store.enqueue(job(1)).await.unwrap();
    f.store.enqueue(job(1)).await.unwrap();
    assert_eq!(f.store.count_jobs(JobStatus::Queued).await.unwrap(), 3);
}

async fn a_queued_job_canceled_never_runs(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(1)).await.unwrap().job;
    let Some(Canceled::Now(job)) = f.store.cancel(queued.id).await.unwrap() else { panic!("not canceled at once") };
    assert_eq!(job.status, JobStatus::Canceled);
    assert!(job.finished_at.is_some());
    assert!(f.store.claim(WorkerId::new(), LEASE).await.unwrap().is_none(), "a canceled job was claimed");
    assert!(matches!(f.store.cancel(queued.id).await.unwrap(), Some(Canceled::AlreadyFinal(_))));
    assert!(f.store.cancel(nova_core::JobId::new()).await.unwrap().is_none());
}

async fn a_running_job_learns_of_its_cancellation_at_its_heartbeat(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(1)).await.unwrap().job;
    let c = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let Some(Canceled::Requested(job)) = f.store.cancel(queued.id).await.unwrap() else { panic!("not requested") };
    assert_eq!(job.status, JobStatus::Running);
    assert!(job.cancel_requested_at.is_some());
    assert_eq!(f.store.heartbeat(queued.id, c.token, LEASE).await.unwrap(), Heartbeat::CancelRequested);
    f.store.finish_canceled(queued.id, c.token).await.unwrap();
    let done = f.store.get_job(queued.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Canceled);
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Canceled));
    // The canceled attempt can write nothing more.
    assert!(matches!(f.store.complete(queued.id, c.token, &json!(1)).await, Err(StoreError::LeaseLost)));
}

async fn every_transition_and_progress_report_is_logged_in_order(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(job(3)).await.unwrap().job;
    let zombie = f.store.claim(WorkerId::new(), Duration::ZERO).await.unwrap().unwrap();
    let c = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    assert!(matches!(f.store.report_progress(queued.id, zombie.token, &json!({})).await, Err(StoreError::LeaseLost)));
    f.store.report_progress(queued.id, c.token, &json!({"step": "reading"})).await.unwrap();
    f.store.complete(queued.id, c.token, &json!(1)).await.unwrap();

    let events = f.store.job_events(queued.id, 0, 100).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["queued", "started", "lease_expired", "retrying", "started", "progress", "succeeded"]);
    let seqs: Vec<_> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert_eq!(events[4].data.as_ref().unwrap()["attempt"], 2);
    assert_eq!(events[5].data, Some(json!({"step": "reading"})));
    assert!(events[6].is_final() && !events[5].is_final());
    // Reading resumes after a sequence number.
    let rest = f.store.job_events(queued.id, 5, 100).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7]);
    assert_eq!(f.store.job_events(queued.id, 0, 2).await.unwrap().len(), 2);
}

async fn retention_prunes_only_old_finished_jobs_with_their_history(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let done = f.store.enqueue(job(1)).await.unwrap().job;
    let c = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    f.store.complete(done.id, c.token, &json!(1)).await.unwrap();
    let waiting = f.store.enqueue(job(1)).await.unwrap().job;
    let canceled = f.store.enqueue(job(1)).await.unwrap().job;
    f.store.cancel(canceled.id).await.unwrap();

    assert_eq!(f.store.prune_finished(Duration::from_secs(3600), 100).await.unwrap(), 0, "nothing is old yet");
    assert_eq!(f.store.prune_finished(Duration::ZERO, 100).await.unwrap(), 2);
    assert!(f.store.get_job(done.id).await.unwrap().is_none());
    assert!(f.store.job_events(done.id, 0, 10).await.unwrap().is_empty(), "events go with their job");
    assert!(f.store.get_job(canceled.id).await.unwrap().is_none());
    assert_eq!(f.store.get_job(waiting.id).await.unwrap().unwrap().status, JobStatus::Queued, "unfinished jobs stay");
}

async fn queue_queries_stay_on_their_indexes_with_a_long_history(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    f.store.insert_history(20_000, true).await.unwrap();
    f.store.enqueue(job(1)).await.unwrap();
    let plans = f.store.explain_queue_queries().await.unwrap();
    let parts: Vec<&str> = plans.split("--\n").collect();
    // Each reads a partial index that holds no finished job. The queue-timeout sweep may read the ready
    // jobs instead of those with a timeout when the planner finds that cheaper (few are waiting).
    for (plan, indexes) in [
        (parts[0], &["jobs_ready"][..]),
        (parts[1], &["jobs_leased"]),
        (parts[2], &["jobs_finished"]),
        (parts[5], &["jobs_start_by", "jobs_ready"]),
        // The tenants' turns: a probe of the ready jobs per tenant, and each one's running jobs by range.
        (parts[6], &["jobs_ready"]),
        // A claim that recounts a tenant's running jobs for its limit.
        (parts[7], &["jobs_ready"]),
    ] {
        assert!(indexes.iter().any(|i| plan.contains(i)), "expected one of {indexes:?} in the plan:\n{plan}");
        // The statements name `jobs` as itself or as `j` and `r`.
        let full_scan = plan
            .lines()
            .any(|l| ["SCAN jobs", "SCAN j", "SCAN r"].contains(&l.trim()) || l.contains("Seq Scan on jobs"));
        assert!(!full_scan, "a full scan of the jobs table:\n{plan}");
    }
    // Completing a batch finds each job by its key and each attempt by its token, never by a scan. SQLite
    // must not walk the running jobs instead (it would re-read the whole batch for each); PostgreSQL may
    // read the running jobs' index when it counts few of them.
    let jobs_by = match b {
        Backend::Sqlite => ["sqlite_autoindex_jobs_1"; 3],
        Backend::Postgres => ["jobs_pkey", "jobs_leased", "jobs_pkey"],
    };
    for (plan, table, indexes) in [
        (parts[3], "jobs", jobs_by),
        (
            parts[4],
            "job_attempts",
            ["sqlite_autoindex_job_attempts", "job_attempts_token_key", "job_attempts_token_key"],
        ),
    ] {
        assert!(indexes.iter().any(|i| plan.contains(i)), "the batch completion uses no index of {table}:\n{plan}");
        let full_scan =
            plan.lines().any(|l| l.trim() == format!("SCAN {table}") || l.contains(&format!("Seq Scan on {table}")));
        assert!(!full_scan, "a full scan of {table}:\n{plan}");
    }
}

async fn a_batch_claim_takes_the_best_jobs_each_under_its_own_token(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let mut ids = Vec::new();
    for priority in [0, 5, 0, 9, 0] {
        ids.push(f.store.enqueue(NewJob { priority, ..job(1) }).await.unwrap().job.id);
    }
    let w = WorkerId::new();
    let first = f.store.claim_batch(w, LEASE, &[(Workflow::Noop, 3)]).await.unwrap();
    let mut taken: Vec<_> = first.iter().map(|c| c.job.id).collect();
    taken.sort();
    let mut best = vec![ids[3], ids[1], ids[0]];
    best.sort();
    assert_eq!(taken, best, "the two urgent jobs and the oldest normal one");
    let tokens: std::collections::HashSet<_> = first.iter().map(|c| c.token).collect();
    assert_eq!(tokens.len(), 3, "each attempt has a token of its own");
    for c in &first {
        assert_eq!((c.job.status, c.attempt, c.job.attempts.len()), (JobStatus::Running, 1, 1));
        assert_eq!(c.job.attempts[0].worker_id, w);
        f.store.complete(c.job.id, c.token, &json!(null)).await.unwrap();
        let kinds: Vec<_> = f.store.job_events(c.job.id, 0, 10).await.unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["queued", "started", "succeeded"]);
    }
    // A token fences only its own job.
    let rest = f.store.claim_batch(w, LEASE, &[(Workflow::Noop, 10)]).await.unwrap();
    assert_eq!(rest.len(), 2);
    let wrong = rest[0].token;
    assert!(matches!(f.store.complete(rest[1].job.id, wrong, &json!(null)).await, Err(StoreError::LeaseLost)));
    assert!(f.store.claim_batch(w, LEASE, &[(Workflow::Noop, 10)]).await.unwrap().is_empty());
    assert!(f.store.claim_batch(w, LEASE, &[(Workflow::Noop, 0)]).await.unwrap().is_empty());
}

async fn a_batch_completion_records_each_held_job_and_refuses_the_rest(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    for _ in 0..4 {
        f.store.enqueue(job(3)).await.unwrap();
    }
    let claimed = f.store.claim_batch(WorkerId::new(), LEASE, &[(Workflow::Noop, 4)]).await.unwrap();
    assert_eq!(claimed.len(), 4);
    // One already finished on its own, one named with a token that never held it.
    f.store.complete(claimed[2].job.id, claimed[2].token, &json!("alone")).await.unwrap();
    let results = [json!("a string"), json!({"b": [1, 2.5], "a": null}), json!("late"), json!("forged")];
    let batch: Vec<Completion> = claimed
        .iter()
        .zip(&results)
        .enumerate()
        .map(|(i, (c, result))| Completion {
            job: c.job.id,
            token: if i == 3 { AttemptToken::new() } else { c.token },
            result: result.clone(),
        })
        .collect();
    assert_eq!(f.store.complete_batch(&batch).await.unwrap(), [true, true, false, false]);

    for (i, c) in claimed.iter().enumerate() {
        let job = f.store.get_job(c.job.id).await.unwrap().unwrap();
        let kinds: Vec<_> =
            f.store.job_events(c.job.id, 0, 10).await.unwrap().into_iter().map(|e| (e.seq, e.kind)).collect();
        let expected_result = match i {
            0 | 1 => Some(results[i].clone()),
            2 => Some(json!("alone")),
            _ => None,
        };
        assert_eq!(f.store.job_result(c.job.id).await.unwrap(), expected_result, "job {i}");
        if i < 3 {
            assert_eq!(job.status, JobStatus::Succeeded, "job {i}");
            assert_eq!(job.attempts[0].outcome, Some(AttemptOutcome::Succeeded), "job {i}");
            assert_eq!(kinds, [(1, "queued".into()), (2, "started".into()), (3, "succeeded".into())], "job {i}");
        } else {
            assert_eq!(job.status, JobStatus::Running, "a forged token changes nothing");
            assert_eq!(job.attempts[0].outcome, None);
            assert_eq!(kinds, [(1, "queued".into()), (2, "started".into())]);
        }
    }
    assert!(f.store.complete_batch(&[]).await.unwrap().is_empty());
}

async fn a_batch_claim_takes_at_most_what_it_asks_of_each_workflow(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    for _ in 0..3 {
        f.store.enqueue(job(1)).await.unwrap();
        f.store.enqueue(NewJob::new(Workflow::CodeRun, json!({}))).await.unwrap();
    }
    let w = WorkerId::new();
    let claimed = f.store.claim_batch(w, LEASE, &[(Workflow::Noop, 2), (Workflow::CodeRun, 1)]).await.unwrap();
    let count =
        |claimed: &[nova_store::ClaimedJob], workflow| claimed.iter().filter(|c| c.job.workflow == workflow).count();
    assert_eq!((count(&claimed, Workflow::Noop), count(&claimed, Workflow::CodeRun)), (2, 1));
    let rest = f.store.claim_batch(w, LEASE, &[(Workflow::CodeRun, 5), (Workflow::InvoiceExtract, 5)]).await.unwrap();
    assert_eq!((count(&rest, Workflow::Noop), count(&rest, Workflow::CodeRun)), (0, 2), "noop was not asked for");
    assert_eq!(f.store.count_jobs(JobStatus::Queued).await.unwrap(), 1);
}

async fn a_job_not_started_within_its_queue_timeout_fails_without_running(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let stale = f.store.enqueue(NewJob { queue_timeout: Some(Duration::ZERO), ..job(3) }).await.unwrap().job;
    assert!(stale.start_by.is_some());
    // The clock starts at run_at: a delayed job with a short wait allowed is not failed before it is due.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let delayed = NewJob { queue_timeout: Some(Duration::ZERO), run_at: Some(later), ..job(3) };
    let delayed = f.store.enqueue(delayed).await.unwrap().job;
    let patient =
        f.store.enqueue(NewJob { queue_timeout: Some(Duration::from_secs(3600)), ..job(3) }).await.unwrap().job;

    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().expect("the patient job starts");
    assert_eq!(claimed.job.id, patient.id);
    assert_eq!(claimed.job.start_by, None, "started: the queue-wait timeout no longer applies");
    assert!(f.store.claim(WorkerId::new(), LEASE).await.unwrap().is_none());

    let failed = f.store.get_job(stale.id).await.unwrap().unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "queue_timeout");
    assert!(failed.attempts.is_empty(), "it never ran");
    let kinds: Vec<_> = f.store.job_events(stale.id, 0, 10).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["queued", "failed"]);
    assert_eq!(f.store.get_job(delayed.id).await.unwrap().unwrap().status, JobStatus::Queued);
}
