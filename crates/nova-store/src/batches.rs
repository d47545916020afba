//! Batches: many jobs of one workflow submitted together (`POST /v1/batches`).
//!
//! A batch is stored in one transaction: its row, then every job with its `queued` event through
//! [`insert_jobs`], a fixed number of statements over a JSON array of rows however many jobs there are.
//! Its progress is counted from its jobs (`jobs_by_batch_status`, read from the index alone), never kept in
//! its row, so the queue's writes touch no row that thousands of jobs share. Once every job is final, the
//! first process to notice ([`Store::settle_batches`], run by every webhook dispatcher) sets the batch's
//! `finished_at` with a write that only one can win, and makes its `batch.completed` webhook message in the
//! same transaction: one message per batch, however many processes look.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_core::{Batch, BatchCounts, BatchId, BatchItem, JobError, JobId, JobStatus, MessageId, TenantId, Workflow};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::enqueue::{insert_jobs, millis, JobRow};
use crate::jobs::{insert_events, json_array, json_in};
use crate::{from_millis, parse_stored, to_millis, Page, Store, StoreError, MAX_PAGE_SIZE};

/// A batch to store; its inputs were checked by the caller.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// The batch's owner, and its jobs'.
    pub tenant: TenantId,
    pub workflow: Workflow,
    /// One job per input, in this order (a job's `batch_index` is its input's index here).
    pub inputs: Vec<serde_json::Value>,
    pub max_attempts: u32,
    /// Higher runs first.
    pub priority: i64,
    /// Not before this time; `None` is now.
    pub run_at: Option<DateTime<Utc>>,
    /// The hard deadline of one attempt.
    pub timeout: Duration,
    /// Each job's queue-wait timeout, as [`crate::NewJob::queue_timeout`].
    pub queue_timeout: Option<Duration>,
    /// Where the batch's `batch.completed` message is sent.
    pub webhook_url: Option<String>,
    /// The id of the HTTP request that submitted the batch, which its jobs carry too.
    pub request_id: Option<String>,
}

/// What canceling a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchCanceled {
    /// Jobs that had not started and never will.
    pub canceled: u64,
    /// Running jobs whose workers stop them at their next heartbeat.
    pub requested: u64,
}

/// The statuses a job is unfinished in, as SQL (a macro, so that the statements below can include it).
macro_rules! unfinished {
    () => {
        "('queued', 'retrying', 'running')"
    };
}
const UNFINISHED: &str = unfinished!();

/// Batch `$1`'s jobs per status, with the time the last of each finished: one range of
/// `jobs_by_batch_status`, read from the index alone. `batch_id IS NOT NULL` is spelled out so that both
/// planners see that the partial index applies.
const COUNTS_SQL: &str = "SELECT batch_id, status, COUNT(*) AS n, MAX(finished_at) AS last FROM jobs
     WHERE batch_id IS NOT NULL AND batch_id = $1 GROUP BY batch_id, status";

/// Up to `$4` jobs of tenant `$3`'s batch `$1` from index `$2` on, in input order: a range of `jobs_by_batch`.
const ITEMS_SQL: &str = "SELECT id, batch_index, input, status, result, error_code, error_message FROM jobs
     WHERE batch_id = $1 AND batch_index >= $2 AND tenant_id = $3
     ORDER BY batch_index LIMIT $4";

/// Up to `$1` open batches none of whose jobs is unfinished: `batches_open`, and a probe of
/// `jobs_by_batch_status` each.
const SETTLED_SQL: &str = concat!(
    "SELECT b.id FROM batches b
     WHERE b.finished_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.status IN ",
    unfinished!(),
    ")
     ORDER BY b.id LIMIT $1"
);

/// Cancels, at time `$1`, the jobs of batch `$2` that have not started, counting their `canceled` event:
/// the batch's ranges of `jobs_by_batch_status`.
const CANCEL_QUEUED_SQL: &str = "UPDATE jobs SET status = 'canceled', cancel_requested_at = $1, finished_at = $1,
         updated_at = $1, error_code = 'canceled', error_message = 'the job was canceled before it ran',
         start_by = NULL, event_seq = event_seq + 1
     WHERE batch_id = $2 AND status IN ('queued', 'retrying')
     RETURNING id, event_seq";

impl Store {
    /// Stores a batch and its jobs in one transaction (see [`insert_jobs`]); the batch as it stands then,
    /// every job queued.
    pub async fn insert_batch(&self, new: NewBatch) -> Result<Batch, StoreError> {
        let id = BatchId::new();
        let now = to_millis(Utc::now());
        let run_at = new.run_at.map_or(now, to_millis);
        let start_by = new.queue_timeout.map(|t| run_at.saturating_add(millis(t)));
        let rows: Vec<JobRow> = new
            .inputs
            .iter()
            .enumerate()
            .map(|(index, input)| JobRow {
                id: JobId::new(),
                tenant: new.tenant,
                workflow: new.workflow,
                input: input.to_string(),
                priority: new.priority,
                max_attempts: new.max_attempts,
                timeout_ms: millis(new.timeout),
                run_at,
                start_by,
                idempotency_key: None,
                request_id: new.request_id.clone(),
                webhook: None,
                batch: Some((id, index as u64)),
            })
            .collect();
        let total = rows.len() as u64;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO batches (id, tenant_id, workflow, total, webhook_url, request_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(new.tenant.to_string())
        .bind(new.workflow.as_str())
        .bind(total as i64)
        .bind(&new.webhook_url)
        .bind(&new.request_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // On PostgreSQL this also wakes the workers, when the transaction commits.
        insert_jobs(&mut tx, self.dialect, &rows, now).await?;
        tx.commit().await?;
        let counts = BatchCounts { queued: total, ..BatchCounts::default() };
        Ok(Batch {
            id,
            workflow: new.workflow,
            total,
            done: 0,
            counts,
            finished: false,
            created_at: from_millis(now)?,
            finished_at: None,
        })
    }

    /// `tenant`'s batch `id` with its counts; `None` for an unknown batch or another tenant's.
    pub(crate) async fn batch_of(&self, tenant: TenantId, id: BatchId) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query("SELECT * FROM batches WHERE id = $1 AND tenant_id = $2")
            .bind(id.to_string())
            .bind(tenant.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut counts = self.batch_counts(&[id]).await?;
        batch_from_row(&row, counts.remove(&id.to_string())).map(Some)
    }

    /// Up to `limit` batches of `tenant` (at most [`MAX_PAGE_SIZE`]), newest first, created before batch
    /// `before` when given, each with its counts.
    pub(crate) async fn list_batches_of(
        &self,
        tenant: TenantId,
        before: Option<BatchId>,
        limit: u32,
    ) -> Result<Page<Batch>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let below = if before.is_some() { " AND id < $3" } else { "" };
        let sql = format!("SELECT * FROM batches WHERE tenant_id = $2{below} ORDER BY id DESC LIMIT $1");
        let mut query = sqlx::query(&sql).bind(i64::from(limit) + 1).bind(tenant.to_string());
        if let Some(before) = before {
            query = query.bind(before.to_string());
        }
        let mut rows = query.fetch_all(&self.pool).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let ids = rows
            .iter()
            .map(|row| parse_stored("batch id", &row.try_get::<String, _>("id")?))
            .collect::<Result<Vec<BatchId>, StoreError>>()?;
        let mut counts = self.batch_counts(&ids).await?;
        let items = rows
            .iter()
            .zip(&ids)
            .map(|(row, id)| batch_from_row(row, counts.remove(&id.to_string())))
            .collect::<Result<Vec<Batch>, StoreError>>()?;
        Ok(Page { items, more })
    }

    /// The jobs of batches `ids` per status, with the time the last of them finished, keyed by batch id:
    /// ranges of `jobs_by_batch_status`, read from the index alone.
    async fn batch_counts(&self, ids: &[BatchId]) -> Result<HashMap<String, Counted>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let (sql, batch) = if let [id] = ids {
            (COUNTS_SQL.to_string(), id.to_string())
        } else {
            (
                COUNTS_SQL.replace("batch_id = $1", &json_in(self.dialect, "batch_id", 1)),
                json_array(ids.iter().map(|id| serde_json::json!({"batch_id": id.to_string()}))),
            )
        };
        let mut counted: HashMap<String, Counted> = HashMap::new();
        for row in sqlx::query(&sql).bind(batch).fetch_all(&self.pool).await? {
            let entry = counted.entry(row.try_get("batch_id")?).or_default();
            let status: JobStatus = parse_stored("job status", &row.try_get::<String, _>("status")?)?;
            entry.counts.add(status, row.try_get::<i64, _>("n")?.max(0) as u64);
            if let Some(last) = row.try_get::<Option<i64>, _>("last")? {
                entry.last_finished = Some(entry.last_finished.map_or(last, |l: i64| l.max(last)));
            }
        }
        Ok(counted)
    }

    /// Cancels the unfinished jobs of `tenant`'s batch `id` in one transaction: those not started at once
    /// (each with its `canceled` event), running ones by their cancellation flag, which their workers read
    /// at the next heartbeat (each with its `cancel_requested` event). `None` for an unknown batch or
    /// another tenant's.
    pub(crate) async fn cancel_batch_of(
        &self,
        tenant: TenantId,
        id: BatchId,
    ) -> Result<Option<BatchCanceled>, StoreError> {
        if self.batch_of(tenant, id).await?.is_none() {
            return Ok(None);
        }
        let now = to_millis(Utc::now());
        let mut tx = self.begin_write().await?;
        let stopped: Vec<(String, i64)> =
            sqlx::query_as(CANCEL_QUEUED_SQL).bind(now).bind(id.to_string()).fetch_all(&mut *tx).await?;
        insert_events(
            &mut tx,
            self.dialect,
            "canceled",
            now,
            stopped.iter().map(|(job, seq)| (job.as_str(), *seq, None)),
        )
        .await?;
        let requested: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE jobs SET cancel_requested_at = $1, updated_at = $1, event_seq = event_seq + 1
             WHERE batch_id = $2 AND status = 'running' AND cancel_requested_at IS NULL
             RETURNING id, event_seq",
        )
        .bind(now)
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        insert_events(
            &mut tx,
            self.dialect,
            "cancel_requested",
            now,
            requested.iter().map(|(job, seq)| (job.as_str(), *seq, None)),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(BatchCanceled { canceled: stopped.len() as u64, requested: requested.len() as u64 }))
    }

    /// Up to `limit` jobs of `tenant`'s batch `id` in the order of their inputs, from index `from` on: a
    /// range of `jobs_by_batch`, so a batch's results are read a page at a time however large it is.
    pub(crate) async fn batch_items_of(
        &self,
        tenant: TenantId,
        id: BatchId,
        from: u64,
        limit: u32,
    ) -> Result<Vec<BatchItem>, StoreError> {
        let rows = sqlx::query(ITEMS_SQL)
            .bind(id.to_string())
            .bind(i64::try_from(from).unwrap_or(i64::MAX))
            .bind(tenant.to_string())
            .bind(i64::from(limit.clamp(1, 10_000)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// Settles up to `limit` batches whose every job is final: sets each one's `finished_at` (when its last
    /// job finished) and, for a batch with a webhook, puts its `batch.completed` message in the outbox, in
    /// one transaction per batch. The write names `finished_at IS NULL`, so of several processes settling
    /// at once exactly one changes the row and makes the message. Returns how many it settled. Reads the
    /// open batches (`batches_open`) and one probe of `jobs_by_batch_status` each: cheap enough for every
    /// turn of the webhook dispatcher.
    pub async fn settle_batches(&self, limit: u32) -> Result<u64, StoreError> {
        let ready: Vec<String> =
            sqlx::query_scalar(SETTLED_SQL).bind(i64::from(limit.max(1))).fetch_all(&self.pool).await?;
        let mut settled = 0;
        for id in ready {
            let now = to_millis(Utc::now());
            let mut tx = self.begin_write().await?;
            let row = sqlx::query(&format!(
                "UPDATE batches SET finished_at = COALESCE(
                     (SELECT MAX(finished_at) FROM jobs WHERE batch_id = $1 AND status NOT IN {UNFINISHED}), $2)
                 WHERE id = $1 AND finished_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM jobs WHERE batch_id = $1 AND status IN {UNFINISHED})
                 RETURNING *"
            ))
            .bind(&id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                // Another process settled it first, or a job of it was retried meanwhile.
                tx.commit().await?;
                continue;
            };
            if let Some(url) = row.try_get::<Option<String>, _>("webhook_url")? {
                let batch_id: BatchId = parse_stored("batch id", &id)?;
                let counted = batch_counts_in(&mut tx, batch_id).await?;
                let batch = batch_from_row(&row, Some(counted))?;
                let payload = serde_json::json!({
                    "type": "batch.completed",
                    "timestamp": batch.finished_at,
                    "data": batch,
                });
                sqlx::query(
                    "INSERT INTO webhook_deliveries (id, tenant_id, job_id, seq, event_type, url, payload,
                         next_attempt_at, window_start, created_at, updated_at)
                     VALUES ($1, $2, $3, 0, 'batch.completed', $4, $5, $6, $6, $6, $6)
                     ON CONFLICT (job_id, seq) DO NOTHING",
                )
                .bind(MessageId::new().to_string())
                .bind(row.try_get::<String, _>("tenant_id")?)
                .bind(&id)
                .bind(url)
                .bind(payload.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            settled += 1;
        }
        Ok(settled)
    }

    /// The database's plans for the statements that read a batch's jobs (its counts, a page of its results,
    /// the settling's probe, the cancellation), one line per plan step and `--` after each, so a test can
    /// check that they read the batch's indexes however many other jobs there are.
    #[doc(hidden)]
    pub async fn explain_batch_queries(&self) -> Result<String, StoreError> {
        let explain = self.explain_prefix();
        let batch = "bat_x";
        let mut out = String::new();
        for (i, statement) in [COUNTS_SQL, ITEMS_SQL, SETTLED_SQL, CANCEL_QUEUED_SQL].into_iter().enumerate() {
            let sql = format!("{explain}{statement}");
            let query = sqlx::query(&sql);
            let query = match i {
                0 => query.bind(batch),
                1 => query.bind(batch).bind(0_i64).bind(TenantId::DEFAULT.to_string()).bind(500_i64),
                2 => query.bind(100_i64),
                _ => query.bind(0_i64).bind(batch),
            };
            self.append_plan(query, &mut out).await?;
        }
        Ok(out)
    }

    /// Deletes up to `limit` finished batches none of whose jobs is left (retention deleted them); returns
    /// how many went.
    pub async fn prune_batches(&self, limit: u32) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        Ok(sqlx::query(
            "DELETE FROM batches WHERE id IN (
                 SELECT b.id FROM batches b
                 WHERE b.finished_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id)
                 LIMIT $1)",
        )
        .bind(i64::from(limit.max(1)))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

/// A batch's jobs per status and the time the last of them finished.
#[derive(Debug, Clone, Copy, Default)]
struct Counted {
    counts: BatchCounts,
    last_finished: Option<i64>,
}

/// [`Store::batch_counts`] of one batch, inside a transaction.
async fn batch_counts_in(tx: &mut sqlx::AnyConnection, id: BatchId) -> Result<Counted, StoreError> {
    let rows = sqlx::query(COUNTS_SQL).bind(id.to_string()).fetch_all(&mut *tx).await?;
    let mut counted = Counted::default();
    for row in rows {
        let status: JobStatus = parse_stored("job status", &row.try_get::<String, _>("status")?)?;
        counted.counts.add(status, row.try_get::<i64, _>("n")?.max(0) as u64);
        if let Some(last) = row.try_get::<Option<i64>, _>("last")? {
            counted.last_finished = Some(counted.last_finished.map_or(last, |l| l.max(last)));
        }
    }
    Ok(counted)
}

/// A batch from its row and its jobs' counts. It is finished when none of its jobs is unfinished; until
/// the settling has stored its `finished_at`, the time its last job finished stands in.
fn batch_from_row(row: &AnyRow, counted: Option<Counted>) -> Result<Batch, StoreError> {
    let counted = counted.unwrap_or_default();
    let counts = counted.counts;
    let finished = counts.queued + counts.running + counts.retrying == 0;
    let stored: Option<i64> = row.try_get("finished_at")?;
    let finished_at = match stored {
        Some(at) => Some(at),
        None if finished => counted.last_finished,
        None => None,
    };
    Ok(Batch {
        id: parse_stored("batch id", &row.try_get::<String, _>("id")?)?,
        workflow: parse_stored("workflow", &row.try_get::<String, _>("workflow")?)?,
        total: row.try_get::<i64, _>("total")?.max(0) as u64,
        done: counts.done(),
        counts,
        finished,
        created_at: from_millis(row.try_get("created_at")?)?,
        finished_at: finished_at.map(from_millis).transpose()?,
    })
}

fn item_from_row(row: &AnyRow) -> Result<BatchItem, StoreError> {
    let input: String = row.try_get("input")?;
    let result: Option<String> = row.try_get("result")?;
    let code: Option<String> = row.try_get("error_code")?;
    let message: Option<String> = row.try_get("error_message")?;
    let status: JobStatus = parse_stored("job status", &row.try_get::<String, _>("status")?)?;
    Ok(BatchItem {
        index: row.try_get::<i64, _>("batch_index")?.max(0) as u64,
        job_id: parse_stored("job id", &row.try_get::<String, _>("id")?)?,
        input: serde_json::from_str(&input).map_err(|e| StoreError::Corrupt(format!("job input: {e}")))?,
        status,
        result: result
            .map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(format!("job result: {e}"))))
            .transpose()?,
        // A job that succeeded after a failed attempt keeps no error.
        error: code
            .filter(|_| status != JobStatus::Succeeded)
            .map(|code| JobError { code, message: message.unwrap_or_default() }),
    })
}
