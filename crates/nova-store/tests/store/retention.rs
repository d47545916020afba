//! Retention of documents: old rows go, and a blob goes only when no tenant's document names it; an upload
//! racing the deletion of its blob keeps its bytes. Every test runs on SQLite and on PostgreSQL.

use std::time::Duration;

use bytes::Bytes;
use nova_core::{DocumentKind, TenantId};
use nova_store::testing::{Backend, TestStore};
use nova_store::{BlobError, NewDocument, Pruned};

nova_store::conformance!(
    old_documents_and_their_unshared_blobs_are_deleted,
    an_upload_during_a_deletion_keeps_its_bytes,
);

fn doc(text: &str) -> NewDocument {
    NewDocument { bytes: Bytes::from(text.to_string()), filename: None, kind: DocumentKind::Text, page_count: None }
}

async fn old_documents_and_their_unshared_blobs_are_deleted(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let tenant_a = f.store.create_key("a").await.unwrap().tenant;
    let tenant_b = f.store.create_key("b").await.unwrap().tenant;
    let (shared_a, _) = f.store.tenant(tenant_a).put_document(doc("shared bytes")).await.unwrap();
    let (alone, _) = f.store.tenant(tenant_a).put_document(doc("only a's")).await.unwrap();

    // Nothing is old enough yet.
    assert_eq!(f.store.prune_documents(Duration::from_secs(3600), 100).await.unwrap(), Pruned::default());
    assert!(f.store.tenant(tenant_a).get_document(alone.id).await.unwrap().is_some());

    let pruned = f.store.prune_documents(Duration::ZERO, 100).await.unwrap();
    assert_eq!(pruned, Pruned { documents: 2, blobs: 2 });
    assert!(f.store.tenant(tenant_a).get_document(alone.id).await.unwrap().is_none());
    assert!(matches!(f.store.blobs().get(&alone.sha256).await, Err(BlobError::Missing(_))));

    // B's copy of A's bytes, made after the prune: a new row over fresh bytes.
    let (shared_b, _) = f.store.tenant(tenant_b).put_document(doc("shared bytes")).await.unwrap();
    assert_eq!(shared_b.sha256, shared_a.sha256);
    assert_eq!(&f.store.blobs().get(&shared_b.sha256).await.unwrap()[..], b"shared bytes");

    // Two tenants' rows over one blob: the blob stays while either row does.
    let (again_a, _) = f.store.tenant(tenant_a).put_document(doc("shared bytes")).await.unwrap();
    let _ = again_a;
    let kept = f.store.prune_documents(Duration::ZERO, 1).await.unwrap();
    assert_eq!(kept, Pruned { documents: 1, blobs: 0 }, "the other tenant's row still names the blob");
    assert!(f.store.blobs().get(&shared_b.sha256).await.is_ok());
    assert_eq!(f.store.prune_documents(Duration::ZERO, 10).await.unwrap(), Pruned { documents: 1, blobs: 1 });
}

async fn an_upload_during_a_deletion_keeps_its_bytes(b: Backend) {
    let Some(f) = TestStore::new(b).await else { return };
    let tenant = f.store.tenant(TenantId::DEFAULT);
    let (first, _) = tenant.put_document(doc("raced bytes")).await.unwrap();
    // The worst interleaving: a second upload finds the bytes stored (its put is a no-op), then a retention
    // run deletes the last row naming them and the bytes, and only then does the upload write its row.
    let prune = async {
        let pruned = f.store.prune_documents(Duration::ZERO, 10).await.unwrap();
        assert_eq!(pruned, Pruned { documents: 1, blobs: 1 });
        assert!(matches!(f.store.blobs().get(&first.sha256).await, Err(BlobError::Missing(_))));
    };
    let (second, created) =
        f.store.put_document_with_pause(TenantId::DEFAULT, doc("raced bytes"), prune).await.unwrap();
    assert!(created);
    assert_eq!(second.sha256, first.sha256);
    let (_, bytes) = tenant.document_content(second.id).await.unwrap().expect("the new row");
    assert_eq!(&bytes[..], b"raced bytes", "the upload stored its bytes again");
}
