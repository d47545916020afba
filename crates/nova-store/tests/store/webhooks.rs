//! The webhook outbox's conformance suite: job events become messages once, messages are taken under a
//! lease, retried until their window ends, then dead, and resent on request; every read is scoped to its
//! tenant. Every test runs on SQLite and on PostgreSQL (see `nova_store::testing`).

use std::time::Duration;

use nova_core::{JobId, TenantId, WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{AttemptResult, DeliveryStatus, JobWebhook, NewJob, Store, StoreError};
use serde_json::json;

nova_store::conformance!(
    job_events_become_messages_once_and_only_those_asked_for,
    messages_are_retried_until_their_window_ends_then_resent,
    a_lapsed_lease_hands_a_message_to_the_next_sender,
    messages_and_secrets_belong_to_their_tenant,
);

const LEASE: Duration = Duration::from_secs(30);

async fn job_with_hook(store: &Store, tenant: TenantId, events: &[&str]) -> JobId {
    let webhook =
        JobWebhook { url: "https://example.com/hook".into(), events: events.iter().map(|e| e.to_string()).collect() };
    let new = NewJob { tenant, webhook: Some(webhook), ..NewJob::new(Workflow::Noop, json!({})) };
    store.enqueue(new).await.unwrap().job.id
}

/// Claims the next job and completes it (its `started` and `succeeded` events).
async fn run_next(store: &Store) {
    let claimed = store.claim(WorkerId::new(), LEASE).await.unwrap().expect("a ready job");
    store.complete(claimed.job.id, claimed.token, &json!({"ok": true})).await.unwrap();
}

async fn job_events_become_messages_once_and_only_those_asked_for(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let all = job_with_hook(&f.store, TenantId::DEFAULT, &["job.queued", "job.started", "job.succeeded"]).await;
    let end = job_with_hook(&f.store, TenantId::DEFAULT, &["job.succeeded"]).await;
    // A job without a webhook makes no message.
    f.store.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap();
    assert_eq!(f.store.fill_outbox(100).await.unwrap(), 1, "only `all` asked for `queued`");
    run_next(&f.store).await;
    run_next(&f.store).await;
    run_next(&f.store).await;
    assert_eq!(f.store.fill_outbox(100).await.unwrap(), 3, "started+succeeded of `all`, succeeded of `end`");
    assert_eq!(f.store.fill_outbox(100).await.unwrap(), 0, "nothing is made twice");

    let tenant = f.store.tenant(TenantId::DEFAULT);
    let page = tenant.list_deliveries(None, Some(all), None, 50).await.unwrap();
    let mut types: Vec<(u64, String)> = page.items.iter().map(|d| (d.seq, d.event_type.clone())).collect();
    types.sort();
    assert_eq!(types, [(1, "job.queued".into()), (2, "job.started".into()), (3, "job.succeeded".into())]);
    let last = page.items.iter().find(|d| d.event_type == "job.succeeded").unwrap();
    let payload: serde_json::Value = serde_json::from_str(&last.payload).unwrap();
    assert_eq!(payload["type"], "job.succeeded");
    assert_eq!(payload["data"]["job_id"], all.to_string());
    assert_eq!(payload["data"]["workflow"], "noop");
    assert!(payload["timestamp"].is_string());
    let end_page = tenant.list_deliveries(Some(DeliveryStatus::Pending), Some(end), None, 50).await.unwrap();
    assert_eq!(end_page.items.len(), 1);
    assert_eq!(end_page.items[0].event_type, "job.succeeded");

    // Taken messages are not taken again while their lease holds.
    let taken = f.store.claim_deliveries(10, LEASE).await.unwrap();
    assert_eq!(taken.len(), 4);
    assert!(taken.iter().all(|d| d.attempts == 1));
    assert!(f.store.claim_deliveries(10, LEASE).await.unwrap().is_empty());
}

async fn messages_are_retried_until_their_window_ends_then_resent(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    job_with_hook(&f.store, TenantId::DEFAULT, &["job.queued"]).await;
    f.store.fill_outbox(100).await.unwrap();
    let window = Duration::from_secs(3600);
    let failed = AttemptResult::Failed { status: Some(500), error: "the receiver answered 500".into() };

    // A failure inside the window: pending again, due after the delay.
    let first = f.store.claim_deliveries(10, LEASE).await.unwrap().remove(0);
    f.store.record_delivery(&first, &failed, Duration::ZERO, window).await.unwrap();
    let tenant = f.store.tenant(TenantId::DEFAULT);
    let after = tenant.delivery(first.id).await.unwrap().unwrap();
    assert_eq!((after.status, after.attempts, after.last_status), (DeliveryStatus::Pending, 1, Some(500)));
    assert_eq!(after.last_error.as_deref(), Some("the receiver answered 500"));

    // A failure whose next try would fall past the window: dead.
    let second = f.store.claim_deliveries(10, LEASE).await.unwrap().remove(0);
    assert_eq!(second.attempts, 2);
    f.store.record_delivery(&second, &failed, window * 2, window).await.unwrap();
    let dead = tenant.delivery(first.id).await.unwrap().unwrap();
    assert_eq!(dead.status, DeliveryStatus::Dead);
    assert!(f.store.claim_deliveries(10, LEASE).await.unwrap().is_empty(), "a dead message is not sent");
    assert_eq!(tenant.list_deliveries(Some(DeliveryStatus::Dead), None, None, 50).await.unwrap().items.len(), 1);

    // Resent: pending, due now, attempts from zero; then delivered.
    let resent = tenant.resend_delivery(first.id).await.unwrap().unwrap();
    assert_eq!((resent.status, resent.attempts), (DeliveryStatus::Pending, 0));
    assert!(matches!(tenant.resend_delivery(first.id).await, Err(StoreError::DeliveryPending)));
    let third = f.store.claim_deliveries(10, LEASE).await.unwrap().remove(0);
    f.store.record_delivery(&third, &AttemptResult::Delivered { status: 204 }, Duration::ZERO, window).await.unwrap();
    let done = tenant.delivery(first.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.last_status, done.last_error), (DeliveryStatus::Delivered, Some(204), None));
    assert!(done.delivered_at.is_some());

    // Finished messages are purged by age only.
    assert_eq!(f.store.purge_deliveries(Duration::from_secs(3600), 100).await.unwrap(), 0);
    assert_eq!(f.store.purge_deliveries(Duration::ZERO, 100).await.unwrap(), 1);
    assert!(tenant.delivery(first.id).await.unwrap().is_none());
}

async fn a_lapsed_lease_hands_a_message_to_the_next_sender(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    job_with_hook(&f.store, TenantId::DEFAULT, &["job.queued"]).await;
    f.store.fill_outbox(100).await.unwrap();
    let stale = f.store.claim_deliveries(10, Duration::ZERO).await.unwrap().remove(0);
    let fresh = f.store.claim_deliveries(10, LEASE).await.unwrap().remove(0);
    assert_eq!((stale.id, fresh.attempts), (fresh.id, 2));
    // The stale sender's late record changes nothing; the fresh one's counts.
    let window = Duration::from_secs(3600);
    f.store.record_delivery(&stale, &AttemptResult::Delivered { status: 200 }, Duration::ZERO, window).await.unwrap();
    let tenant = f.store.tenant(TenantId::DEFAULT);
    assert_eq!(tenant.delivery(fresh.id).await.unwrap().unwrap().status, DeliveryStatus::Pending);
    let failed = AttemptResult::Failed { status: None, error: "timed out".into() };
    f.store.record_delivery(&fresh, &failed, Duration::from_secs(60), window).await.unwrap();
    let after = tenant.delivery(fresh.id).await.unwrap().unwrap();
    assert_eq!((after.status, after.last_error.as_deref()), (DeliveryStatus::Pending, Some("timed out")));
}

async fn messages_and_secrets_belong_to_their_tenant(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let a = f.store.create_key("alpha").await.unwrap().tenant;
    let other = f.store.create_key("beta").await.unwrap().tenant;
    job_with_hook(&f.store, a, &["job.queued"]).await;
    f.store.fill_outbox(100).await.unwrap();
    let mine = f.store.tenant(a).list_deliveries(None, None, None, 50).await.unwrap().items.remove(0);
    let theirs = f.store.tenant(other);
    assert!(theirs.list_deliveries(None, None, None, 50).await.unwrap().items.is_empty());
    assert!(theirs.delivery(mine.id).await.unwrap().is_none());
    assert!(theirs.resend_delivery(mine.id).await.unwrap().is_none());

    let secret = f.store.tenant(a).webhook_secret(|| "whsec_first".into()).await.unwrap();
    assert_eq!(secret, "whsec_first");
    assert_eq!(f.store.tenant(a).webhook_secret(|| "whsec_second".into()).await.unwrap(), "whsec_first");
    assert_eq!(theirs.webhook_secret(|| "whsec_theirs".into()).await.unwrap(), "whsec_theirs");
}
