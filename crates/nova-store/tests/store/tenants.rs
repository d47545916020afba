//! Tenants, API keys and idempotency records: the conformance suite, on SQLite and on PostgreSQL.

use std::time::Duration;

use bytes::Bytes;
use nova_core::{DocumentKind, JobStatus, TenantId, WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{AddedKey, Idempotent, JobFilter, NewDocument, NewJob, StoreError, StoredResponse};
use serde_json::json;

nova_store::conformance!(
    keys_open_their_tenant_until_revoked,
    a_key_given_from_outside_is_added_once_and_stays_revoked,
    a_tenant_sees_only_its_own_documents_and_jobs,
    job_idempotency_keys_are_per_tenant,
    idempotency_records_replay_refuse_and_expire,
);

async fn keys_open_their_tenant_until_revoked(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    assert!(!f.store.keys_exist().await.unwrap());
    assert!(matches!(f.store.create_key("Not A Name").await, Err(StoreError::InvalidTenantName(_))));

    let first = f.store.create_key("acme").await.unwrap();
    let second = f.store.create_key("acme").await.unwrap();
    let other = f.store.create_key("globex").await.unwrap();
    assert!(f.store.keys_exist().await.unwrap());
    assert_eq!(first.tenant, second.tenant, "one tenant per name");
    assert_ne!(first.tenant, other.tenant);
    assert_ne!(first.tenant, TenantId::DEFAULT);

    let owner = f.store.authenticate(&first.secret).await.unwrap().expect("a fresh key opens");
    assert_eq!((owner.key, owner.tenant, owner.rate_limit), (first.id, first.tenant, None));
    assert_eq!(f.store.authenticate(&other.secret).await.unwrap().unwrap().tenant, other.tenant);
    // A near miss, another prefix, nothing: no owner.
    let mut near = first.secret.clone();
    near.pop();
    near.push(if first.secret.ends_with('0') { '1' } else { '0' });
    for wrong in [near.as_str(), "nova_", "", "sk_live_abc"] {
        assert_eq!(f.store.authenticate(wrong).await.unwrap(), None, "{wrong}");
    }

    assert!(f.store.set_tenant_rate_limit("acme", Some("5/s,burst=10")).await.unwrap());
    assert!(!f.store.set_tenant_rate_limit("nobody", Some("5/s")).await.unwrap());
    assert_eq!(
        f.store.authenticate(&second.secret).await.unwrap().unwrap().rate_limit.as_deref(),
        Some("5/s,burst=10")
    );

    let listed = f.store.list_keys().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|k| k.revoked_at.is_none() && k.shown.starts_with("nova_") && k.shown.len() == 13));
    assert!(listed.iter().all(|k| !first.secret.ends_with(&k.shown[5..]) || k.id == first.id));

    assert!(f.store.revoke_key(first.id).await.unwrap());
    assert!(!f.store.revoke_key(first.id).await.unwrap(), "revoked once");
    assert_eq!(f.store.authenticate(&first.secret).await.unwrap(), None, "a revoked key opens nothing");
    assert!(f.store.authenticate(&second.secret).await.unwrap().is_some(), "the tenant's other key still opens");
    let revoked = f.store.list_keys().await.unwrap().into_iter().find(|k| k.id == first.id).unwrap();
    assert!(revoked.revoked_at.is_some());

    f.store.revoke_key(second.id).await.unwrap();
    f.store.revoke_key(other.id).await.unwrap();
    assert!(f.store.keys_exist().await.unwrap(), "revoking every key does not open the server");
}

fn text_document(text: &str) -> NewDocument {
    NewDocument {
        bytes: Bytes::from(text.to_string()),
        filename: Some("a.txt".into()),
        kind: DocumentKind::Text,
        page_count: None,
    }
}

async fn a_key_given_from_outside_is_added_once_and_stays_revoked(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let secret = format!("nova_{}", "7f".repeat(32));
    for bad in ["", "nova_short", "sk_0123456789abcdef0123456789abcdef", &format!("nova_{}!", "a".repeat(40))] {
        assert!(matches!(f.store.add_key("default", bad).await, Err(StoreError::InvalidKey)), "{bad:?}");
    }
    assert!(!f.store.keys_exist().await.unwrap(), "a refused key adds nothing");

    let (id, added) = f.store.add_key("default", &secret).await.unwrap();
    assert_eq!(added, AddedKey::Added);
    assert!(f.store.keys_exist().await.unwrap());
    let owner = f.store.authenticate(&secret).await.unwrap().expect("the given key opens");
    assert_eq!((owner.key, owner.tenant), (id, TenantId::DEFAULT), "the default tenant's key");
    // Every process given the same secret adds it at start: once stored, always the same key.
    assert_eq!(f.store.add_key("default", &secret).await.unwrap(), (id, AddedKey::Present));
    assert_eq!(f.store.list_keys().await.unwrap().len(), 1);
    let listed = &f.store.list_keys().await.unwrap()[0];
    assert_eq!(listed.shown, secret[..13], "only the first characters are kept in clear");

    // Revoked, it stays revoked however often it is given again.
    assert!(f.store.revoke_key(id).await.unwrap());
    assert_eq!(f.store.add_key("default", &secret).await.unwrap(), (id, AddedKey::Revoked));
    assert_eq!(f.store.authenticate(&secret).await.unwrap(), None);
}

async fn a_tenant_sees_only_its_own_documents_and_jobs(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let a = f.store.tenant(f.store.ensure_tenant("a").await.unwrap());
    let other = f.store.tenant(f.store.ensure_tenant("b").await.unwrap());

    // The same bytes: one blob, one row each, and neither learns of the other's.
    let (doc_a, created_a) = a.put_document(text_document("Invoice 1")).await.unwrap();
    let (doc_b, created_b) = other.put_document(text_document("Invoice 1")).await.unwrap();
    assert!(created_a && created_b, "each tenant's first upload is new to it");
    assert_ne!(doc_a.id, doc_b.id);
    assert_eq!(doc_a.sha256, doc_b.sha256);
    let (again, created) = a.put_document(text_document("Invoice 1")).await.unwrap();
    assert_eq!((again.id, created), (doc_a.id, false));
    assert_eq!(other.get_document(doc_a.id).await.unwrap(), None);
    assert!(other.document_content(doc_a.id).await.unwrap().is_none());
    assert_eq!(a.document_content(doc_a.id).await.unwrap().unwrap().1, Bytes::from("Invoice 1"));
    let ids =
        |page: nova_store::Page<nova_core::DocumentMeta>| page.items.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(a.list_documents(None, 10).await.unwrap()), [doc_a.id]);
    assert_eq!(ids(other.list_documents(None, 10).await.unwrap()), [doc_b.id]);

    let job = a.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap().job;
    assert!(a.get_job(job.id).await.unwrap().is_some());
    assert_eq!(other.get_job(job.id).await.unwrap(), None);
    assert_eq!(other.job_result(job.id).await.unwrap(), None);
    assert_eq!(other.job_events(job.id, 0, 10).await.unwrap(), None);
    assert_eq!(other.read_job_log(job.id, 0, 10).await.unwrap(), None);
    assert_eq!(other.cancel(job.id).await.unwrap(), None);
    assert_eq!(f.store.get_job(job.id).await.unwrap().unwrap().status, JobStatus::Queued, "untouched by the other");
    assert!(other.list_jobs(JobFilter::default(), None, 10).await.unwrap().items.is_empty());
    let filtered = JobFilter { status: Some(JobStatus::Queued), ..JobFilter::default() };
    assert!(other.list_jobs(filtered, None, 10).await.unwrap().items.is_empty());
    assert_eq!(a.list_jobs(filtered, None, 10).await.unwrap().items.len(), 1);
    assert_eq!(a.job_events(job.id, 0, 10).await.unwrap().unwrap().len(), 1);

    assert_eq!(a.count_unfinished_jobs(100).await.unwrap(), 1);
    assert_eq!(other.count_unfinished_jobs(100).await.unwrap(), 0);
    for _ in 0..3 {
        other.enqueue(NewJob::new(Workflow::Noop, json!({}))).await.unwrap();
    }
    assert_eq!(other.count_unfinished_jobs(100).await.unwrap(), 3);
    assert_eq!(other.count_unfinished_jobs(2).await.unwrap(), 2, "counted up to the cap only");

    // A worker learns whose job it runs.
    let claimed = f.store.claim(WorkerId::new(), Duration::from_secs(30)).await.unwrap().unwrap();
    assert_eq!((claimed.job.id, claimed.tenant), (job.id, a.id()));
}

async fn job_idempotency_keys_are_per_tenant(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let a = f.store.tenant(f.store.ensure_tenant("a").await.unwrap());
    let other = f.store.tenant(f.store.ensure_tenant("b").await.unwrap());
    let keyed = |input| NewJob { idempotency_key: Some("k1".into()), ..NewJob::new(Workflow::Noop, input) };
    let first = a.enqueue(keyed(json!({}))).await.unwrap();
    let theirs = other.enqueue(keyed(json!({"sleep_ms": 1}))).await.unwrap();
    assert!(first.created && theirs.created, "one key, two tenants, two jobs");
    assert_ne!(first.job.id, theirs.job.id);
    assert_eq!(a.enqueue(keyed(json!({}))).await.unwrap().job.id, first.job.id);
    assert!(
        matches!(a.enqueue(keyed(json!({"sleep_ms": 1}))).await, Err(StoreError::IdempotencyConflict(id)) if id == first.job.id)
    );
}

async fn idempotency_records_replay_refuse_and_expire(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let (a, other) = (f.store.ensure_tenant("a").await.unwrap(), f.store.ensure_tenant("b").await.unwrap());
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(f.store.begin_idempotent(a, "k", "f1", day).await.unwrap(), Idempotent::Run);
    assert_eq!(f.store.begin_idempotent(a, "k", "f1", day).await.unwrap(), Idempotent::InFlight);
    assert_eq!(f.store.begin_idempotent(a, "k", "f2", day).await.unwrap(), Idempotent::Mismatch);
    assert_eq!(f.store.begin_idempotent(other, "k", "f2", day).await.unwrap(), Idempotent::Run, "keys are per tenant");

    let answer =
        StoredResponse { status: 202, content_type: Some("application/json".into()), body: "{\"a\":1}".into() };
    f.store.finish_idempotent(a, "k", &answer).await.unwrap();
    assert_eq!(f.store.begin_idempotent(a, "k", "f1", day).await.unwrap(), Idempotent::Replay(answer));
    assert_eq!(f.store.begin_idempotent(a, "k", "f2", day).await.unwrap(), Idempotent::Mismatch);

    // An abandoned request leaves the key free; a finished one is not abandoned.
    f.store.abandon_idempotent(other, "k").await.unwrap();
    assert_eq!(f.store.begin_idempotent(other, "k", "f3", day).await.unwrap(), Idempotent::Run);

    // Expired records are taken over, then purged.
    let short = Duration::from_millis(1);
    assert_eq!(f.store.begin_idempotent(a, "brief", "f1", short).await.unwrap(), Idempotent::Run);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(f.store.begin_idempotent(a, "brief", "f9", short).await.unwrap(), Idempotent::Run);
    assert_eq!(f.store.begin_idempotent(other, "brief", "f9", short).await.unwrap(), Idempotent::Run);
    assert_eq!(f.store.begin_idempotent(a, "brief2", "f9", short).await.unwrap(), Idempotent::Run);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A bounded batch at a time, the expired ones only.
    assert_eq!(f.store.purge_idempotency(2).await.unwrap(), 2);
    assert_eq!(f.store.purge_idempotency(2).await.unwrap(), 1);
    assert_eq!(f.store.purge_idempotency(2).await.unwrap(), 0);
    assert_eq!(
        f.store.begin_idempotent(a, "k", "f1", day).await.unwrap(),
        Idempotent::Replay(StoredResponse {
            status: 202,
            content_type: Some("application/json".into()),
            body: "{\"a\":1}".into()
        })
    );
}
