//! Retention of documents: rows older than an age are deleted, and each blob that no tenant's document
//! names any more goes with them.
//!
//! Blobs are shared by content, so a blob is deleted only after a check that no row names it, and an upload
//! of the same bytes can race the deletion: its bytes were already there when it looked, and its row arrives
//! just after the check. The deletion is therefore marked first (`blob_deletions`, in the transaction of the
//! check), and every upload looks for a mark of its blob after writing its row: one that is there (the
//! deletion is running or ran within the hour) makes the upload store its bytes again once the deletion is
//! done. A mark is written before the blob is deleted and kept an hour after, longer than any upload takes
//! between storing its bytes and writing its row, so no interleaving leaves a row without its blob.

use std::time::Duration;

use chrono::Utc;
use nova_core::Sha256Hex;
use sqlx::Row;

use crate::{to_millis, Store, StoreError};

/// How long a finished deletion's mark is kept.
const MARK_KEPT: Duration = Duration::from_secs(3600);
/// How long an upload waits for a running deletion of its blob before storing its bytes anyway.
const DELETION_WAIT: Duration = Duration::from_secs(30);

/// What one [`Store::prune_documents`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub documents: u64,
    pub blobs: u64,
}

impl Store {
    /// Deletes up to `limit` documents (of any tenant) created more than `older_than` ago, oldest first, and
    /// the blobs no document names any more. A job that names a deleted document fails with
    /// `document_not_found` if it runs later.
    pub async fn prune_documents(&self, older_than: Duration, limit: u32) -> Result<Pruned, StoreError> {
        let before = to_millis(Utc::now()) - older_than.as_millis().min(i64::MAX as u128) as i64;
        let rows = sqlx::query("SELECT id, sha256 FROM documents WHERE created_at <= $1 ORDER BY created_at LIMIT $2")
            .bind(before)
            .bind(i64::from(limit.max(1)))
            .fetch_all(&self.pool)
            .await?;
        let mut pruned = Pruned::default();
        let mut digests: Vec<Sha256Hex> = Vec::new();
        for row in &rows {
            let id: String = row.try_get("id")?;
            let digest = Sha256Hex::try_from(row.try_get::<String, _>("sha256")?).map_err(StoreError::Corrupt)?;
            let _turn = self.write_turn().await;
            pruned.documents +=
                sqlx::query("DELETE FROM documents WHERE id = $1").bind(&id).execute(&self.pool).await?.rows_affected();
            if !digests.contains(&digest) {
                digests.push(digest);
            }
        }
        for digest in digests {
            if self.delete_unreferenced_blob(&digest).await? {
                pruned.blobs += 1;
            }
        }
        self.purge_deletion_marks().await?;
        Ok(pruned)
    }

    /// Deletes the blob `digest` when no document names it: marks the deletion (in the transaction that
    /// checks), deletes the bytes, then records the deletion as finished.
    async fn delete_unreferenced_blob(&self, digest: &Sha256Hex) -> Result<bool, StoreError> {
        let now = to_millis(Utc::now());
        let mut tx = self.begin_write().await?;
        let marked = sqlx::query(
            "INSERT INTO blob_deletions (sha256, started_at)
             SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM documents WHERE sha256 = $1)
             ON CONFLICT (sha256) DO UPDATE SET started_at = $2, finished_at = NULL
                 WHERE blob_deletions.finished_at IS NOT NULL",
        )
        .bind(digest.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        if !marked {
            return Ok(false);
        }
        let deleted = self.blobs().delete(digest).await;
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE blob_deletions SET finished_at = $2 WHERE sha256 = $1")
            .bind(digest.as_str())
            .bind(to_millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        deleted?;
        Ok(true)
    }

    /// Deletes the marks of deletions that finished more than an hour ago.
    async fn purge_deletion_marks(&self) -> Result<(), StoreError> {
        let before = to_millis(Utc::now()) - MARK_KEPT.as_millis() as i64;
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM blob_deletions WHERE finished_at IS NOT NULL AND finished_at <= $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An upload of `doc` by `tenant` with `between` run after its bytes are stored and before its row is
    /// written: the window in which a retention run can delete the bytes it found. For tests of that race.
    #[doc(hidden)]
    pub async fn put_document_with_pause(
        &self,
        tenant: nova_core::TenantId,
        doc: crate::NewDocument,
        between: impl std::future::Future<Output = ()>,
    ) -> Result<(nova_core::DocumentMeta, bool), StoreError> {
        let sha = self.blobs().put(doc.bytes.clone()).await?;
        between.await;
        self.document_row(tenant, &sha, doc).await
    }

    /// After an upload wrote (or found) its row: when a deletion of its blob is marked, waits for it to finish
    /// (up to half a minute) and stores the bytes again, so the row never outlives its blob.
    pub(crate) async fn restore_if_deleted(&self, digest: &Sha256Hex, bytes: bytes::Bytes) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + DELETION_WAIT;
        loop {
            let mark = sqlx::query("SELECT finished_at FROM blob_deletions WHERE sha256 = $1")
                .bind(digest.as_str())
                .fetch_optional(&self.pool)
                .await?;
            let Some(mark) = mark else { return Ok(()) };
            let finished = mark.try_get::<Option<i64>, _>("finished_at")?.is_some();
            if finished || tokio::time::Instant::now() >= deadline {
                self.blobs().put(bytes).await?;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
