//! [`TenantStore`]: the store as one tenant sees it. Every read and write of a request goes through it, so
//! a request can neither see nor touch another tenant's documents and jobs: another tenant's id reads as an
//! unknown one.
//!
//! A row's tenant never changes, so "is this job the tenant's" is asked once, and the operation that
//! follows (the job's events, its cancellation) may then use the job's id alone.

use std::collections::HashMap;

use bytes::Bytes;
use nova_core::{
    Batch, BatchId, BatchItem, DocumentId, DocumentMeta, Job, JobEvent, JobId, MessageId, TenantId, Workflow,
};
use sqlx::Row;

use crate::documents::document_from_row;
use crate::jobs::{json_array, json_in};
use crate::{
    BatchCanceled, Canceled, Delivery, DeliveryStatus, Enqueued, JobFilter, JobLog, NewBatch, NewDocument, NewJob,
    Page, Store, StoreError,
};

/// The store, scoped to one tenant: see [`Store::tenant`].
#[derive(Clone)]
pub struct TenantStore {
    pub(crate) store: Store,
    tenant: TenantId,
}

impl Store {
    /// The store as `tenant` sees it.
    pub fn tenant(&self, tenant: TenantId) -> TenantStore {
        TenantStore { store: self.clone(), tenant }
    }
}

impl TenantStore {
    pub fn id(&self) -> TenantId {
        self.tenant
    }

    /// Stores a document of this tenant; the same bytes again give the tenant's first document back.
    pub async fn put_document(&self, doc: NewDocument) -> Result<(DocumentMeta, bool), StoreError> {
        self.store.put_document_of(self.tenant, doc).await
    }

    pub async fn get_document(&self, id: DocumentId) -> Result<Option<DocumentMeta>, StoreError> {
        let row = sqlx::query("SELECT * FROM documents WHERE id = $1 AND tenant_id = $2")
            .bind(id.to_string())
            .bind(self.tenant.to_string())
            .fetch_optional(&self.store.pool)
            .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// The file names of these documents of this tenant, in one read; documents without one (or not the
    /// tenant's) are absent.
    pub async fn filenames(&self, ids: &[DocumentId]) -> Result<HashMap<DocumentId, String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let list = json_array(ids.iter().map(|id| serde_json::json!({ "id": id.to_string() })));
        let sql = format!(
            "SELECT id, filename FROM documents WHERE tenant_id = $2 AND filename IS NOT NULL AND {}",
            json_in(self.store.dialect, "id", 1)
        );
        let rows = sqlx::query(&sql).bind(list).bind(self.tenant.to_string()).fetch_all(&self.store.pool).await?;
        rows.iter()
            .map(|row| {
                let id = crate::parse_stored("document id", &row.try_get::<String, _>("id")?)?;
                Ok((id, row.try_get("filename")?))
            })
            .collect()
    }

    /// The document and its bytes.
    pub async fn document_content(&self, id: DocumentId) -> Result<Option<(DocumentMeta, Bytes)>, StoreError> {
        let Some(meta) = self.get_document(id).await? else { return Ok(None) };
        let bytes = self.store.blobs().get(&meta.sha256).await?;
        Ok(Some((meta, bytes)))
    }

    /// This tenant's documents, newest first; see [`crate::lists`].
    pub async fn list_documents(
        &self,
        before: Option<DocumentId>,
        limit: u32,
    ) -> Result<Page<DocumentMeta>, StoreError> {
        self.store.list_documents_of(self.tenant, before, limit).await
    }

    /// Queues a job of this tenant (whatever tenant `new` names).
    pub async fn enqueue(&self, new: NewJob) -> Result<Enqueued, StoreError> {
        self.store.enqueue(NewJob { tenant: self.tenant, ..new }).await
    }

    pub async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.store.get_tenant_job(id, self.tenant).await
    }

    /// Which of `ids` are documents of this tenant, in one read however many there are.
    pub async fn existing_documents(
        &self,
        ids: &[DocumentId],
    ) -> Result<std::collections::HashSet<DocumentId>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let list = json_array(ids.iter().map(|id| serde_json::json!({ "id": id.to_string() })));
        let sql = format!("SELECT id FROM documents WHERE tenant_id = $2 AND {}", json_in(self.store.dialect, "id", 1));
        let found: Vec<String> =
            sqlx::query_scalar(&sql).bind(list).bind(self.tenant.to_string()).fetch_all(&self.store.pool).await?;
        found.iter().map(|id| crate::parse_stored("document id", id)).collect()
    }

    /// Stores a batch of this tenant (whatever tenant `new` names) and its jobs, in one transaction.
    pub async fn insert_batch(&self, new: NewBatch) -> Result<Batch, StoreError> {
        self.store.insert_batch(NewBatch { tenant: self.tenant, ..new }).await
    }

    /// A batch of this tenant with its counts.
    pub async fn get_batch(&self, id: BatchId) -> Result<Option<Batch>, StoreError> {
        self.store.batch_of(self.tenant, id).await
    }

    /// This tenant's batches, newest first.
    pub async fn list_batches(&self, before: Option<BatchId>, limit: u32) -> Result<Page<Batch>, StoreError> {
        self.store.list_batches_of(self.tenant, before, limit).await
    }

    /// Cancels the unfinished jobs of a batch of this tenant; `None` for a batch it does not own.
    pub async fn cancel_batch(&self, id: BatchId) -> Result<Option<BatchCanceled>, StoreError> {
        self.store.cancel_batch_of(self.tenant, id).await
    }

    /// Up to `limit` jobs of a batch of this tenant in the order of their inputs, from index `from` on.
    pub async fn batch_items(&self, id: BatchId, from: u64, limit: u32) -> Result<Vec<BatchItem>, StoreError> {
        self.store.batch_items_of(self.tenant, id, from, limit).await
    }

    /// The result of a succeeded job of this tenant.
    pub async fn job_result(&self, id: JobId) -> Result<Option<serde_json::Value>, StoreError> {
        if !self.owns_job(id).await? {
            return Ok(None);
        }
        self.store.job_result(id).await
    }

    /// The events of a job of this tenant (see [`Store::job_events`]); `None` for a job it does not own.
    pub async fn job_events(&self, id: JobId, after: u64, limit: u32) -> Result<Option<Vec<JobEvent>>, StoreError> {
        if !self.owns_job(id).await? {
            return Ok(None);
        }
        self.store.job_events(id, after, limit).await.map(Some)
    }

    /// A job's events after `after` and whether it has finished (see `Store::read_job_log`); `None` for a job
    /// this tenant does not own. One statement with the tenant in it, so an event stream's every poll is
    /// scoped at no extra cost.
    pub async fn read_job_log(&self, id: JobId, after: u64, limit: u32) -> Result<Option<JobLog>, StoreError> {
        self.store.read_job_log(id, self.tenant, after, limit).await
    }

    /// Cancels a job of this tenant (see [`Store::cancel`]); `None` for a job it does not own.
    pub async fn cancel(&self, id: JobId) -> Result<Option<Canceled>, StoreError> {
        if !self.owns_job(id).await? {
            return Ok(None);
        }
        self.store.cancel(id).await
    }

    /// This tenant's jobs, newest first; see [`crate::lists`].
    pub async fn list_jobs(
        &self,
        filter: JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Page<Job>, StoreError> {
        self.store.list_jobs_of(self.tenant, filter, before, limit).await
    }

    /// How many of this tenant's jobs are unfinished (queued, retrying or running), counting up to `cap`
    /// only: ranges of `jobs_by_workflow`, read no further than the cap.
    pub async fn count_unfinished_jobs(&self, cap: u32) -> Result<u32, StoreError> {
        let workflows: Vec<String> = Workflow::ALL.iter().map(|w| format!("'{}'", w.as_str())).collect();
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM jobs
                 WHERE tenant_id = $1 AND workflow IN ({}) AND status IN ('queued', 'retrying', 'running')
                 LIMIT $2) AS unfinished",
            workflows.join(", ")
        );
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(self.tenant.to_string())
            .bind(i64::from(cap))
            .fetch_one(&self.store.pool)
            .await?;
        Ok(u32::try_from(n).unwrap_or(cap))
    }

    /// This tenant's share of the queue: its waiting and running jobs per workflow (see [`Store::queue_stats`]).
    pub async fn queue_stats(&self) -> Result<crate::QueueStats, StoreError> {
        self.store.queue_stats_of(Some(self.tenant)).await
    }

    /// This tenant's webhook signing secret, made by `make` when it has none yet.
    pub async fn webhook_secret(&self, make: impl FnOnce() -> String) -> Result<String, StoreError> {
        self.store.webhook_secret(self.tenant, make).await
    }

    /// This tenant's webhook message `id`.
    pub async fn delivery(&self, id: MessageId) -> Result<Option<Delivery>, StoreError> {
        self.store.delivery_of(self.tenant, id).await
    }

    /// This tenant's webhook messages, newest first, of one status and one job when given.
    pub async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        job: Option<JobId>,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Page<Delivery>, StoreError> {
        self.store.list_deliveries_of(self.tenant, status, job, before, limit).await
    }

    /// Sends a delivered or dead message of this tenant again, from now, with a fresh retry window.
    pub async fn resend_delivery(&self, id: MessageId) -> Result<Option<Delivery>, StoreError> {
        self.store.resend_delivery_of(self.tenant, id).await
    }

    /// This tenant's usage from day `from` to day `to` (both included), per day and workflow, of one
    /// workflow when given.
    pub async fn usage(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        workflow: Option<&str>,
    ) -> Result<Vec<crate::UsageRow>, StoreError> {
        self.store.usage_of(self.tenant, from, to, workflow).await
    }

    /// Whether job `id` exists and is this tenant's: one lookup by primary key.
    pub(crate) async fn owns_job(&self, id: JobId) -> Result<bool, StoreError> {
        let found: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.store.pool)
            .await?;
        Ok(found.is_some_and(|owner| owner == self.tenant.to_string()))
    }
}
