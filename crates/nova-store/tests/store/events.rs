//! The events a running attempt writes itself (`llm.generate`'s `output`): fenced by its token, numbered in
//! the job's log, and each telling the attempt whether its job's cancellation was asked for. On SQLite and
//! PostgreSQL.

use std::time::Duration;

use nova_core::{WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{NewJob, StoreError};
use serde_json::json;

nova_store::conformance!(
    an_attempt_appends_its_events_and_learns_of_a_cancellation,
    only_the_attempt_that_holds_the_job_reads_or_writes_it,
);

const LEASE: Duration = Duration::from_secs(30);

async fn an_attempt_appends_its_events_and_learns_of_a_cancellation(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap().job;
    let c = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let first = f.store.append_event(queued.id, c.token, "output", &json!({"text": "Hel"})).await.unwrap();
    assert!(!first.cancel_requested);
    assert!(!f.store.cancel_requested(queued.id, c.token).await.unwrap());
    f.store.cancel(queued.id).await.unwrap();
    assert!(f.store.cancel_requested(queued.id, c.token).await.unwrap());
    let second = f.store.append_event(queued.id, c.token, "output", &json!({"text": "lo"})).await.unwrap();
    assert!(second.cancel_requested, "the write after the cancel says so");
    // The cancellation's own event comes between the two.
    assert_eq!(second.seq, first.seq + 2);
    let events = f.store.job_events(queued.id, 0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["queued", "started", "output", "cancel_requested", "output"]);
    assert_eq!(events[4].seq, second.seq);
    assert_eq!(events[4].data, Some(json!({"text": "lo"})));
}

async fn only_the_attempt_that_holds_the_job_reads_or_writes_it(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let queued = f.store.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap().job;
    let zombie = f.store.claim(WorkerId::new(), Duration::ZERO).await.unwrap().unwrap();
    let current = f.store.claim(WorkerId::new(), LEASE).await.unwrap().unwrap();
    let refused = f.store.append_event(queued.id, zombie.token, "output", &json!({"text": "stale"})).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost)), "{refused:?}");
    assert!(matches!(f.store.cancel_requested(queued.id, zombie.token).await, Err(StoreError::LeaseLost)));
    f.store.append_event(queued.id, current.token, "output", &json!({"text": "fresh"})).await.unwrap();
    let outputs: Vec<_> =
        f.store.job_events(queued.id, 0, 100).await.unwrap().into_iter().filter(|e| e.kind == "output").collect();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].data, Some(json!({"text": "fresh"})));
}
