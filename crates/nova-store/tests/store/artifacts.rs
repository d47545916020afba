//! Artifacts: stored by the attempt holding the job's lease, replaced by a later attempt, read only by the
//! job's tenant, gone with the job. Every test runs on SQLite and on PostgreSQL.

use std::time::Duration;

use nova_core::{AttemptToken, TenantId, WorkerId, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::{NewArtifact, NewJob, StoreError};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

fn file(name: &str, contents: &str) -> NewArtifact {
    NewArtifact { name: name.into(), content_type: "text/csv; charset=utf-8".into(), contents: contents.into() }
}

nova_store::conformance!(artifacts_belong_to_the_attempt_the_job_and_its_tenant);

async fn artifacts_belong_to_the_attempt_the_job_and_its_tenant(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let job = f.store.enqueue(NewJob::new(Workflow::TaskRun, json!({"prompt": "x"}))).await.unwrap().job.id;
    let claimed = f.store.claim(WorkerId::new(), LEASE).await.unwrap().expect("a ready job");

    // No lease, no write.
    let stale = f.store.put_artifacts(job, AttemptToken::new(), &[file("a.csv", "x")]).await;
    assert!(matches!(stale, Err(StoreError::LeaseLost)), "{stale:?}");

    // A first set, then the same attempt's second set replaces it.
    f.store.put_artifacts(job, claimed.token, &[file("old.csv", "1"), file("a.csv", "stale")]).await.unwrap();
    let stored = f
        .store
        .put_artifacts(job, claimed.token, &[file("b/totals.csv", "vendor,total\nACME,10.00\n"), file("a.csv", "a")])
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    f.store.complete(job, claimed.token, &json!({})).await.unwrap();

    let mine = f.store.tenant(TenantId::DEFAULT);
    let listed = mine.list_artifacts(job).await.unwrap().expect("the tenant's job");
    let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a.csv", "b/totals.csv"], "by name, the first set gone");
    assert_eq!(listed[1].size, 24);
    assert_eq!(listed[1].content_type, "text/csv; charset=utf-8");
    assert_eq!(listed[1].sha256, nova_store::BlobStore::digest(b"vendor,total\nACME,10.00\n"));
    let (meta, bytes) = mine.artifact(job, "b/totals.csv").await.unwrap().expect("the artifact");
    assert_eq!((meta.name.as_str(), bytes.as_slice()), ("b/totals.csv", &b"vendor,total\nACME,10.00\n"[..]));
    assert!(mine.artifact(job, "old.csv").await.unwrap().is_none());
    // After completion the attempt's lease is gone: nothing more is written.
    let late = f.store.put_artifacts(job, claimed.token, &[]).await;
    assert!(matches!(late, Err(StoreError::LeaseLost)));

    // Another tenant sees no job, hence no artifacts.
    let other = f.store.create_key("other").await.unwrap().tenant;
    assert!(f.store.tenant(other).list_artifacts(job).await.unwrap().is_none());
    assert!(f.store.tenant(other).artifact(job, "a.csv").await.unwrap().is_none());

    // Retention takes them with the job.
    assert_eq!(f.store.prune_finished(Duration::ZERO, 10).await.unwrap(), 1);
    assert!(mine.list_artifacts(job).await.unwrap().is_none());
    assert_eq!(f.count("SELECT COUNT(*) FROM job_artifacts").await, 0);
}
