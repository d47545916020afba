//! Group commit: enqueues written many per transaction, by `Store::enqueue_group` and by the committer of a
//! store made with `Store::with_group_commit`. Every test runs on SQLite and on PostgreSQL.

use std::collections::HashSet;

use nova_core::{JobId, JobStatus, TenantId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{Enqueued, JobWebhook, NewJob, Store, StoreError};
use serde_json::json;

nova_store::conformance!(
    a_group_stores_each_job_with_its_event_and_webhook,
    the_answer_of_an_enqueue_is_the_job_as_read_back,
    a_row_skipped_for_its_key_leaves_no_event_or_webhook_among_rows_without_keys,
    submissions_and_batches_wake_the_listening_workers,
    an_idempotency_key_used_twice_in_one_group_makes_one_job,
    an_invalid_job_fails_alone_and_its_group_is_stored,
    concurrent_enqueues_through_the_committer_are_all_stored_and_answered,
    concurrent_submitters_of_one_key_get_one_job_through_the_committer,
    a_committer_told_to_end_answers_what_it_was_given_and_later_enqueues_still_store,
    a_store_whose_committer_is_gone_writes_its_own_transactions,
);

fn noop(input: serde_json::Value) -> NewJob {
    NewJob::new(Workflow::Noop, input)
}

fn keyed(key: &str, input: serde_json::Value) -> NewJob {
    NewJob { idempotency_key: Some(key.into()), ..noop(input) }
}

fn hooked() -> NewJob {
    let webhook = JobWebhook { url: "https://example.com/hook".into(), events: vec!["job.queued".into()] };
    NewJob { webhook: Some(webhook), ..noop(json!({"hooked": true})) }
}

/// How many jobs, `queued` events and webhooks are stored.
async fn counts(f: &TestStore) -> (i64, i64, i64) {
    (
        f.count("SELECT COUNT(*) FROM jobs").await,
        f.count("SELECT COUNT(*) FROM job_events WHERE kind = 'queued' AND seq = 1").await,
        f.count("SELECT COUNT(*) FROM job_webhooks").await,
    )
}

async fn a_group_stores_each_job_with_its_event_and_webhook(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let other = TenantId::new();
    let jobs = vec![
        noop(json!({"n": 1})),
        hooked(),
        NewJob { tenant: other, priority: 7, request_id: Some("req-3".into()), ..noop(json!({"n": 3})) },
    ];
    let answers = f.store.enqueue_group(jobs).await.unwrap();
    let stored: Vec<Enqueued> = answers.into_iter().map(Result::unwrap).collect();
    assert!(stored.iter().all(|e| e.created && e.job.status == JobStatus::Queued));
    assert_eq!(stored[0].job.input, json!({"n": 1}));
    assert_eq!((stored[2].job.priority, stored[2].job.request_id.as_deref()), (7, Some("req-3")));
    assert_eq!(counts(&f).await, (3, 3, 1));
    // Each job reads back as its answer said, for its own tenant only.
    let back = f.store.tenant(other).get_job(stored[2].job.id).await.unwrap().expect("the other tenant's job");
    assert_eq!(back.input, json!({"n": 3}));
    assert!(f.store.tenant(TenantId::DEFAULT).get_job(stored[2].job.id).await.unwrap().is_none());
    // The webhook asked for `job.queued`: the group's event reaches the outbox like a lone enqueue's.
    assert_eq!(f.store.fill_outbox(100).await.unwrap(), 1);
    // A group's jobs are claimed in the order they were given.
    let mut claimed = Vec::new();
    while let Some(c) = f.store.claim(nova_core::WorkerId::new(), std::time::Duration::from_secs(30)).await.unwrap() {
        claimed.push(c.job.id);
    }
    // Tenants take turns (see `turns.rs`), so only one tenant's jobs keep the group's order between them.
    assert_eq!(claimed.len(), 3);
    let at = |id| claimed.iter().position(|c| *c == id).unwrap();
    assert!(at(stored[0].job.id) < at(stored[1].job.id), "a tenant's jobs are claimed in the group's order");
}

async fn the_answer_of_an_enqueue_is_the_job_as_read_back(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    // The answer is made from what was inserted, not read back: every field must agree with a read.
    let run_at = chrono::Utc::now() + chrono::Duration::milliseconds(90_123);
    let full = NewJob {
        priority: -12,
        max_attempts: 7,
        run_at: Some(run_at),
        timeout: std::time::Duration::from_millis(61_999),
        idempotency_key: Some("full".into()),
        queue_timeout: Some(std::time::Duration::from_millis(1_500)),
        request_id: Some("req-full".into()),
        ..hooked()
    };
    let zero_attempts =
        NewJob { max_attempts: 0, input: json!([1.5, "é", {"deep": [null, 1e300]}]), ..noop(json!(null)) };
    let grouped = f.store.clone().with_group_commit();
    let cases =
        [(&f.store, full.clone()), (&grouped, full), (&grouped, zero_attempts.clone()), (&f.store, zero_attempts)];
    for (i, (store, new)) in cases.into_iter().enumerate() {
        // Each its own key: a replay would answer with the job read back.
        let new = NewJob { idempotency_key: new.idempotency_key.map(|key| format!("{key}-{i}")), ..new };
        let answer = store.enqueue(new).await.unwrap();
        assert!(answer.created);
        let back = f.store.tenant(TenantId::DEFAULT).get_job(answer.job.id).await.unwrap().expect("the job");
        assert_eq!(serde_json::to_value(&answer.job).unwrap(), serde_json::to_value(&back).unwrap());
    }
}

async fn a_row_skipped_for_its_key_leaves_no_event_or_webhook_among_rows_without_keys(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let skipped = NewJob { idempotency_key: Some("k".into()), ..hooked() };
    let jobs = vec![keyed("k", json!({"hooked": true})), hooked(), skipped, noop(json!({"n": 4}))];
    let answers: Vec<Enqueued> = f.store.enqueue_group(jobs).await.unwrap().into_iter().map(Result::unwrap).collect();
    assert_eq!(answers.iter().map(|a| a.created).collect::<Vec<_>>(), [true, true, false, true]);
    assert_eq!(answers[2].job.id, answers[0].job.id, "the skipped row is answered with the key's job");
    // Three jobs, each with its event; one webhook, the keyless row's: none for the skipped row.
    assert_eq!(counts(&f).await, (3, 3, 1));
    let hooked_job =
        f.count(&format!("SELECT COUNT(*) FROM job_webhooks WHERE job_id = '{}'", answers[1].job.id)).await;
    assert_eq!(hooked_job, 1);
}

async fn submissions_and_batches_wake_the_listening_workers(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let Some(listener) = f.store.listen_for_jobs(wake.clone()).await.unwrap() else {
        // SQLite has no notifications: the in-process API wakes its workers itself.
        assert_eq!(b, Backend::Sqlite);
        return;
    };
    // Bounded waits: a notification never sent fails the test instead of hanging it.
    let woken = || tokio::time::timeout(std::time::Duration::from_secs(30), wake.notified());
    let grouped = f.store.clone().with_group_commit();
    let mut submissions = [noop(json!({"n": 1})), keyed("wake", json!({})), hooked()].into_iter();
    loop {
        // Registered before the write, so a notification that arrives first is not missed.
        let notified = woken();
        let Some(new) = submissions.next() else { break };
        grouped.enqueue(new).await.unwrap();
        notified.await.expect("an enqueue woke no listener");
    }
    let notified = woken();
    let batch = nova_store::NewBatch {
        tenant: TenantId::DEFAULT,
        workflow: Workflow::Noop,
        inputs: vec![json!({}), json!({})],
        max_attempts: 1,
        priority: 0,
        run_at: None,
        timeout: std::time::Duration::from_secs(60),
        queue_timeout: None,
        webhook_url: None,
        request_id: None,
    };
    f.store.insert_batch(batch).await.unwrap();
    notified.await.expect("a batch woke no listener");
    listener.abort();
}

async fn an_idempotency_key_used_twice_in_one_group_makes_one_job(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let jobs = vec![
        keyed("k", json!({"x": 1})),
        keyed("k", json!({"x": 1})),
        keyed("k", json!({"x": 2})),
        keyed("other", json!({"x": 1})),
        NewJob { tenant: TenantId::new(), ..keyed("k", json!({"x": 2})) },
    ];
    let answers = f.store.enqueue_group(jobs).await.unwrap();
    let first = answers[0].as_ref().unwrap();
    assert!(first.created);
    let again = answers[1].as_ref().unwrap();
    assert_eq!((again.job.id, again.created), (first.job.id, false), "the same key and input: the first job");
    match &answers[2] {
        Err(StoreError::IdempotencyConflict(holder)) => assert_eq!(*holder, first.job.id),
        other => panic!("the same key with another input must conflict, got {other:?}"),
    }
    assert!(answers[3].as_ref().unwrap().created, "another key");
    assert!(answers[4].as_ref().unwrap().created, "the same key of another tenant");
    assert_eq!(counts(&f).await, (3, 3, 0));
    // A later group (or a lone enqueue) finds the key taken just the same.
    let later = f.store.enqueue_group(vec![keyed("k", json!({"x": 1}))]).await.unwrap();
    assert_eq!(later[0].as_ref().unwrap().job.id, first.job.id);
    assert_eq!(f.store.enqueue(keyed("k", json!({"x": 1}))).await.unwrap().job.id, first.job.id);
    assert_eq!(counts(&f).await.0, 3);
}

async fn an_invalid_job_fails_alone_and_its_group_is_stored(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    // PostgreSQL's text cannot hold NUL: the job is refused on both backends before its group is written.
    let invalid = keyed("nul\0key", json!({}));
    let answers = f.store.enqueue_group(vec![noop(json!({"n": 1})), invalid, hooked()]).await.unwrap();
    assert!(matches!(answers[1], Err(StoreError::InvalidJob(_))), "{:?}", answers[1]);
    let ids: Vec<JobId> = [&answers[0], &answers[2]].iter().map(|a| a.as_ref().unwrap().job.id).collect();
    for id in ids {
        assert!(f.store.get_job(id).await.unwrap().is_some());
    }
    assert_eq!(counts(&f).await, (2, 2, 1));
    // Through the committer, among concurrent enqueues, likewise.
    let store = f.store.clone().with_group_commit();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        let job = if i == 7 {
            NewJob { request_id: Some("bad\0id".into()), ..noop(json!({})) }
        } else {
            noop(json!({"i": i}))
        };
        tasks.spawn(async move { (i, store.enqueue(job).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, answer) = done.unwrap();
        assert_eq!(answer.is_ok(), i != 7, "job {i}: {answer:?}");
    }
    assert_eq!(counts(&f).await, (21, 21, 1));
}

/// Enqueues `jobs` through `store`, each from a task of its own, all at once; the answers, in no particular
/// order.
async fn enqueue_concurrently(store: &Store, jobs: impl Iterator<Item = NewJob>) -> Vec<Result<Enqueued, StoreError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs {
        let store = store.clone();
        tasks.spawn(async move { store.enqueue(job).await });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.unwrap());
    }
    answers
}

async fn concurrent_enqueues_through_the_committer_are_all_stored_and_answered(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let store = f.store.clone().with_group_commit();
    let answers = enqueue_concurrently(&store, (0..300).map(|i| noop(json!({"i": i})))).await;
    let mut seen = HashSet::new();
    for answer in answers {
        let job = answer.unwrap().job;
        // Answered only after its commit: every answered job reads back, from any connection.
        let back = f.store.get_job(job.id).await.unwrap().expect("an answered job is stored");
        assert_eq!(back.input, job.input);
        assert!(seen.insert(job.input["i"].as_i64().unwrap()), "one job per submission");
    }
    assert_eq!(seen.len(), 300);
    assert_eq!(counts(&f).await, (300, 300, 0));
}

async fn concurrent_submitters_of_one_key_get_one_job_through_the_committer(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let store = f.store.clone().with_group_commit();
    let same = (0..20).map(|_| keyed("order-1", json!({"order": 1})));
    let clashing = (0..5).map(|_| keyed("order-1", json!({"order": 2})));
    let answers = enqueue_concurrently(&store, same.chain(clashing)).await;
    let jobs: Vec<&Enqueued> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    let ids: HashSet<JobId> = jobs.iter().map(|e| e.job.id).collect();
    assert_eq!(ids.len(), 1, "one job for one key");
    assert_eq!(jobs.iter().filter(|e| e.created).count(), 1, "made once");
    let holder = *ids.iter().next().unwrap();
    let stored = f.store.get_job(holder).await.unwrap().unwrap();
    // Whichever input came first holds the key; each of the others conflicts with it.
    let conflicts = answers.iter().filter(|a| matches!(a, Err(StoreError::IdempotencyConflict(h)) if *h == holder));
    let expected = if stored.input == json!({"order": 1}) { 5 } else { 20 };
    assert_eq!((jobs.len(), conflicts.count()), (25 - expected, expected));
    assert_eq!(counts(&f).await, (1, 1, 0));
}

async fn a_committer_told_to_end_answers_what_it_was_given_and_later_enqueues_still_store(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let store = f.store.clone().with_group_commit();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.spawn(async move { store.enqueue(noop(json!({"i": i}))).await });
    }
    // Some of these may be queued to the committer, some may not have been sent yet: every one is answered.
    store.end_group_commit();
    while let Some(done) = tasks.join_next().await {
        let job = done.unwrap().unwrap().job;
        assert!(f.store.get_job(job.id).await.unwrap().is_some());
    }
    let after = store.enqueue(noop(json!({"after": true}))).await.unwrap();
    assert!(f.store.get_job(after.job.id).await.unwrap().is_some());
    assert_eq!(counts(&f).await, (51, 51, 0));
}

async fn a_store_whose_committer_is_gone_writes_its_own_transactions(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    // The committer runs on a runtime that is then shut down, as at a process's end.
    let plain = f.store.clone();
    let store = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = runtime.block_on(async { plain.with_group_commit() });
        drop(runtime);
        store
    })
    .await
    .unwrap();
    let answers = enqueue_concurrently(&store, (0..10).map(|i| noop(json!({"i": i})))).await;
    for answer in answers {
        assert!(f.store.get_job(answer.unwrap().job.id).await.unwrap().is_some());
    }
    assert_eq!(counts(&f).await, (10, 10, 0));
}
