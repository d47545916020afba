//! The job queue on SQL: enqueue, claim with a lease, heartbeat, and fenced completion.
//!
//! A claim is one short transaction that first hands back jobs whose lease lapsed (their worker crashed or
//! hung), then moves the oldest ready job to `running` under a fresh [`AttemptToken`]. Every later write of
//! that attempt names the token, and matches no row once the lease has passed to someone else.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_core::{Attempt, AttemptOutcome, AttemptToken, Job, JobError, JobId, JobStatus, WorkerId, Workflow};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{from_millis, parse_stored, to_millis, Dialect, Store, StoreError};

/// A job to enqueue; its input was validated by the caller.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub workflow: Workflow,
    pub input: serde_json::Value,
    pub max_attempts: u32,
    /// Higher runs first.
    pub priority: i64,
    /// Not before this time; `None` is now.
    pub run_at: Option<DateTime<Utc>>,
    /// The hard deadline of one attempt.
    pub timeout: Duration,
    /// A key that makes the submission idempotent: the same key again returns the first job.
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// A job with the defaults: 3 attempts, priority 0, now, a 15-minute deadline, no idempotency key.
    pub fn new(workflow: Workflow, input: serde_json::Value) -> Self {
        Self {
            workflow,
            input,
            max_attempts: 3,
            priority: 0,
            run_at: None,
            timeout: Duration::from_secs(15 * 60),
            idempotency_key: None,
        }
    }
}

/// What an enqueue did.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: Job,
    /// False when the idempotency key named an existing job with the same workflow and input.
    pub created: bool,
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Canceled {
    /// The job had not started: it is canceled and will never run.
    Now(Job),
    /// The job is running: its worker stops it at the next heartbeat.
    Requested(Job),
    /// The job had already finished (succeeded, failed or canceled); nothing changed.
    AlreadyFinal(Job),
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease is renewed; carry on.
    Renewed,
    /// The lease is renewed, and the job's cancellation was asked: stop and record it.
    CancelRequested,
}

/// A job claimed by a worker: the job as it stood at the claim and the token that fences its writes.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job: Job,
    pub token: AttemptToken,
    pub attempt: u32,
}

const LEASE_EXPIRED: &str = "lease_expired";
const LEASE_EXPIRED_MESSAGE: &str = "the worker stopped renewing its lease (it crashed, hung or was cut off)";

/// The PostgreSQL channel on which an enqueue wakes idle workers.
pub(crate) const NOTIFY_CHANNEL: &str = "nova_jobs";

/// Takes up to `$3` ready jobs, highest priority and oldest first, each under a fresh attempt token made in
/// SQL. SQLite has one writer at a time, so the statement alone is atomic.
const CLAIM_SQLITE: &str = "UPDATE jobs SET status = 'running', attempts_used = attempts_used + 1,
         lease_token = 'att_' || lower(hex(randomblob(16))),
         lease_expires_at = $1, started_at = COALESCE(started_at, $2), updated_at = $2
     WHERE id IN (SELECT id FROM jobs WHERE status IN ('queued', 'retrying') AND run_at <= $2
                  ORDER BY priority DESC, run_at, id LIMIT $3)
     RETURNING id, lease_token";

/// The same on PostgreSQL, where concurrent claimers skip the rows others are locking instead of waiting
/// on them (or, without the lock, claiming the same row twice).
const CLAIM_POSTGRES: &str = "UPDATE jobs SET status = 'running', attempts_used = attempts_used + 1,
         lease_token = 'att_' || replace(gen_random_uuid()::TEXT, '-', ''),
         lease_expires_at = $1, started_at = COALESCE(started_at, $2), updated_at = $2
     WHERE id IN (SELECT id FROM jobs WHERE status IN ('queued', 'retrying') AND run_at <= $2
                  ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
     RETURNING id, lease_token";

impl Store {
    /// Queues a job. With an idempotency key already in use, returns that job when its workflow and input
    /// are the same, and [`StoreError::IdempotencyConflict`] when they differ.
    pub async fn enqueue(&self, new: NewJob) -> Result<Enqueued, StoreError> {
        let id = JobId::new();
        let now = to_millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, workflow, input, status, priority, max_attempts, timeout_ms, idempotency_key,
                               run_at, created_at, updated_at)
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
        )
        .bind(id.to_string())
        .bind(new.workflow.as_str())
        .bind(new.input.to_string())
        .bind(new.priority)
        .bind(i64::from(new.max_attempts.max(1)))
        .bind(new.timeout.as_millis().min(i64::MAX as u128) as i64)
        .bind(&new.idempotency_key)
        .bind(new.run_at.map_or(now, to_millis))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            let data = serde_json::json!({"workflow": new.workflow, "run_at": from_millis(new.run_at.map_or(now, to_millis))?});
            append_event(&mut tx, &id.to_string(), "queued", Some(&data), now).await?;
        }
        tx.commit().await?;
        if !inserted {
            let key = new.idempotency_key.as_deref().unwrap_or_default();
            let existing: String = sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = $1")
                .bind(key)
                .fetch_one(&self.pool)
                .await?;
            let existing = self
                .get_job(parse_stored("job id", &existing)?)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a job vanished while its idempotency key was looked up".into()))?;
            if existing.workflow != new.workflow || existing.input != new.input {
                return Err(StoreError::IdempotencyConflict(existing.id));
            }
            return Ok(Enqueued { job: existing, created: false });
        }
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_notify($1, '')").bind(NOTIFY_CHANNEL).execute(&self.pool).await?;
        }
        let job =
            self.get_job(id).await?.ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished after insert")))?;
        Ok(Enqueued { job, created: true })
    }

    pub async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.get_jobs(&[id]).await?.remove(&id.to_string()))
    }

    /// The result of a succeeded job (`None` if the job is unknown or has no result).
    pub async fn job_result(&self, id: JobId) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<Option<String>> = sqlx::query_scalar("SELECT result FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        text.flatten()
            .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("job result: {e}"))))
            .transpose()
    }

    /// Number of jobs in each non-final state, for health and progress displays.
    pub async fn count_jobs(&self, status: JobStatus) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// Jobs not finished yet (queued, retrying or running), counted through the partial indexes only, so the
    /// count stays cheap however long the history is.
    pub async fn count_unfinished(&self) -> Result<u64, StoreError> {
        let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'retrying')")
            .fetch_one(&self.pool)
            .await?;
        let running: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetch_one(&self.pool).await?;
        Ok((waiting + running) as u64)
    }

    /// Claims the oldest ready job for `worker`, holding it for `lease`: a batch of one.
    pub async fn claim(&self, worker: WorkerId, lease: Duration) -> Result<Option<ClaimedJob>, StoreError> {
        Ok(self.claim_batch(worker, lease, 1).await?.pop())
    }

    /// Claims up to `max` ready jobs for `worker` in one transaction (one commit, however many jobs),
    /// holding each for `lease`. Jobs whose lease lapsed are first handed back to the queue (or failed, when
    /// their attempts are used up).
    pub async fn claim_batch(
        &self,
        worker: WorkerId,
        lease: Duration,
        max: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now_ms = to_millis(Utc::now());
        let mut tx = self.pool.begin().await?;

        // Hand back lapsed leases. The attempt that lost its lease counts as a failed attempt.
        sqlx::query(
            "UPDATE job_attempts SET outcome = 'failed', finished_at = $1, error_code = $2, error_message = $3
             WHERE outcome IS NULL AND job_id IN
                 (SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at <= $1)",
        )
        .bind(now_ms)
        .bind(LEASE_EXPIRED)
        .bind(LEASE_EXPIRED_MESSAGE)
        .execute(&mut *tx)
        .await?;
        let lapsed: Vec<(String, String)> = sqlx::query_as(
            "UPDATE jobs SET
                 status = CASE WHEN attempts_used >= max_attempts THEN 'failed' ELSE 'retrying' END,
                 finished_at = CASE WHEN attempts_used >= max_attempts THEN $1 END,
                 error_code = $2, error_message = $3,
                 lease_token = NULL, lease_expires_at = NULL, run_at = $1, updated_at = $1
             WHERE status = 'running' AND lease_expires_at <= $1
             RETURNING id, status",
        )
        .bind(now_ms)
        .bind(LEASE_EXPIRED)
        .bind(LEASE_EXPIRED_MESSAGE)
        .fetch_all(&mut *tx)
        .await?;
        for (id, status) in &lapsed {
            let error = serde_json::json!({"code": LEASE_EXPIRED, "message": LEASE_EXPIRED_MESSAGE});
            append_event(&mut tx, id, "lease_expired", Some(&serde_json::json!({"error": error})), now_ms).await?;
            append_event(&mut tx, id, status, None, now_ms).await?;
        }

        let claim_sql = match self.dialect {
            Dialect::Sqlite => CLAIM_SQLITE,
            Dialect::Postgres => CLAIM_POSTGRES,
        };
        let claimed: Vec<(String, String)> = sqlx::query_as(claim_sql)
            .bind(now_ms + lease.as_millis() as i64)
            .bind(now_ms)
            .bind(i64::from(max))
            .fetch_all(&mut *tx)
            .await?;
        let mut attempts = Vec::with_capacity(claimed.len());
        for (job_id, token) in &claimed {
            let attempt: i64 = sqlx::query_scalar(
                "INSERT INTO job_attempts (job_id, number, token, worker_id, started_at)
                 VALUES ($1, (SELECT COALESCE(MAX(number), 0) + 1 FROM job_attempts WHERE job_id = $1), $2, $3, $4)
                 RETURNING number",
            )
            .bind(job_id)
            .bind(token)
            .bind(worker.to_string())
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
            let started = serde_json::json!({"attempt": attempt, "worker_id": worker});
            append_event(&mut tx, job_id, "started", Some(&started), now_ms).await?;
            attempts.push(attempt);
        }
        tx.commit().await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }

        let ids: Vec<JobId> = claimed.iter().map(|(id, _)| parse_stored("job id", id)).collect::<Result<_, _>>()?;
        let mut jobs = self.get_jobs(&ids).await?;
        claimed
            .iter()
            .zip(attempts)
            .map(|((id, token), attempt)| {
                let job = jobs.remove(id).ok_or_else(|| StoreError::Corrupt(format!("claimed job {id} vanished")))?;
                Ok(ClaimedJob { job, token: parse_stored("attempt token", token)?, attempt: attempt as u32 })
            })
            .collect()
    }

    /// Several jobs with their attempts, in two queries, keyed by id.
    async fn get_jobs(&self, ids: &[JobId]) -> Result<HashMap<String, Job>, StoreError> {
        let placeholders = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
        let sql = format!("SELECT * FROM job_attempts WHERE job_id IN ({placeholders}) ORDER BY job_id, number");
        for row in with_ids(&sql, ids).fetch_all(&self.pool).await? {
            attempts.entry(row.try_get("job_id")?).or_default().push(attempt_from_row(&row)?);
        }
        let mut jobs = HashMap::with_capacity(ids.len());
        let sql = format!("SELECT * FROM jobs WHERE id IN ({placeholders})");
        for row in with_ids(&sql, ids).fetch_all(&self.pool).await? {
            let id: String = row.try_get("id")?;
            let job = job_from_row(&row, attempts.remove(&id).unwrap_or_default())?;
            jobs.insert(id, job);
        }
        Ok(jobs)
    }

    /// Renews the lease of a running attempt, and says whether the job's cancellation was asked.
    /// `Err(LeaseLost)` tells the worker to stop: the job is no longer its own.
    pub async fn heartbeat(&self, job: JobId, token: AttemptToken, lease: Duration) -> Result<Heartbeat, StoreError> {
        let now = to_millis(Utc::now());
        let cancel: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = $1, updated_at = $2
             WHERE id = $3 AND lease_token = $4 AND status = 'running'
             RETURNING cancel_requested_at",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(job.to_string())
        .bind(token.to_string())
        .fetch_optional(&self.pool)
        .await?;
        match cancel {
            None => Err(StoreError::LeaseLost),
            Some(None) => Ok(Heartbeat::Renewed),
            Some(Some(_)) => Ok(Heartbeat::CancelRequested),
        }
    }

    /// Cancels a job: at once if it has not started, at its worker's next heartbeat if it runs.
    /// `None` if there is no such job.
    pub async fn cancel(&self, job: JobId) -> Result<Option<Canceled>, StoreError> {
        let now = to_millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        let stopped = sqlx::query(
            "UPDATE jobs SET status = 'canceled', cancel_requested_at = $1, finished_at = $1, updated_at = $1,
                 error_code = 'canceled', error_message = 'the job was canceled before it ran'
             WHERE id = $2 AND status IN ('queued', 'retrying')",
        )
        .bind(now)
        .bind(job.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let requested = stopped == 0
            && sqlx::query(
                "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, $1), updated_at = $1
                 WHERE id = $2 AND status = 'running'",
            )
            .bind(now)
            .bind(job.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        if stopped == 1 {
            append_event(&mut tx, &job.to_string(), "canceled", None, now).await?;
        } else if requested {
            append_event(&mut tx, &job.to_string(), "cancel_requested", None, now).await?;
        }
        tx.commit().await?;
        let Some(current) = self.get_job(job).await? else { return Ok(None) };
        Ok(Some(if stopped == 1 {
            Canceled::Now(current)
        } else if requested {
            Canceled::Requested(current)
        } else {
            Canceled::AlreadyFinal(current)
        }))
    }

    /// Records that a running attempt stopped because its job was canceled.
    pub async fn finish_canceled(&self, job: JobId, token: AttemptToken) -> Result<(), StoreError> {
        let now = to_millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'canceled', error_code = 'canceled',
                 error_message = 'the job was canceled while it ran', lease_token = NULL, lease_expires_at = NULL,
                 finished_at = $1, updated_at = $1
             WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        )
        .bind(now)
        .bind(job.to_string())
        .bind(token.to_string())
        .execute(&mut *tx)
        .await?;
        fenced(done.rows_affected())?;
        finish_attempt(&mut tx, job, token, AttemptOutcome::Canceled, None, now, "canceled").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the attempt's success and the job's result.
    pub async fn complete(
        &self,
        job: JobId,
        token: AttemptToken,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let now = to_millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'succeeded', result = $1, error_code = NULL, error_message = NULL,
                 lease_token = NULL, lease_expires_at = NULL, finished_at = $2, updated_at = $2
             WHERE id = $3 AND lease_token = $4 AND status = 'running'",
        )
        .bind(result.to_string())
        .bind(now)
        .bind(job.to_string())
        .bind(token.to_string())
        .execute(&mut *tx)
        .await?;
        fenced(done.rows_affected())?;
        finish_attempt(&mut tx, job, token, AttemptOutcome::Succeeded, None, now, "succeeded").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed attempt. With `retry_after`, the job is queued again after that delay while it has
    /// attempts left; otherwise (or when they are used up) it fails for good.
    pub async fn fail(
        &self,
        job: JobId,
        token: AttemptToken,
        error: &JobError,
        retry_after: Option<Duration>,
    ) -> Result<JobStatus, StoreError> {
        let now = to_millis(Utc::now());
        let retry_at = retry_after.map(|d| now + d.as_millis() as i64);
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET
                 status = CASE WHEN $1 IS NOT NULL AND attempts_used < max_attempts THEN 'retrying' ELSE 'failed' END,
                 run_at = COALESCE($1, run_at),
                 finished_at = CASE WHEN $1 IS NOT NULL AND attempts_used < max_attempts THEN NULL ELSE $2 END,
                 error_code = $3, error_message = $4, lease_token = NULL, lease_expires_at = NULL, updated_at = $2
             WHERE id = $5 AND lease_token = $6 AND status = 'running'
             RETURNING status",
        )
        .bind(retry_at)
        .bind(now)
        .bind(&error.code)
        .bind(&error.message)
        .bind(job.to_string())
        .bind(token.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let status = status.ok_or(StoreError::LeaseLost)?;
        finish_attempt(&mut tx, job, token, AttemptOutcome::Failed, Some(error), now, &status).await?;
        tx.commit().await?;
        parse_stored("job status", &status)
    }

    /// Hands a running job back to the queue without counting the attempt (a worker shutting down).
    pub async fn release(&self, job: JobId, token: AttemptToken) -> Result<(), StoreError> {
        let now = to_millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', attempts_used = attempts_used - 1, run_at = $1,
                 lease_token = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        )
        .bind(now)
        .bind(job.to_string())
        .bind(token.to_string())
        .execute(&mut *tx)
        .await?;
        fenced(done.rows_affected())?;
        finish_attempt(&mut tx, job, token, AttemptOutcome::Released, None, now, "released").await?;
        tx.commit().await?;
        Ok(())
    }
}

/// `sql` with every id of `ids` bound, in order, to its `$N`.
fn with_ids<'q>(sql: &'q str, ids: &[JobId]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    ids.iter().fold(sqlx::query(sql), |q, id| q.bind(id.to_string()))
}

fn fenced(rows: u64) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost)
    }
}

/// Closes the attempt and logs the job's new state as event `event`.
async fn finish_attempt(
    tx: &mut sqlx::AnyConnection,
    job: JobId,
    token: AttemptToken,
    outcome: AttemptOutcome,
    error: Option<&JobError>,
    now: i64,
    event: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE job_attempts SET outcome = $1, finished_at = $2, error_code = $3, error_message = $4
         WHERE token = $5 AND outcome IS NULL",
    )
    .bind(outcome.as_str())
    .bind(now)
    .bind(error.map(|e| e.code.as_str()))
    .bind(error.map(|e| e.message.as_str()))
    .bind(token.to_string())
    .execute(&mut *tx)
    .await?;
    let data = error.map(|e| serde_json::json!({"error": e}));
    append_event(tx, &job.to_string(), event, data.as_ref(), now).await?;
    Ok(())
}

/// Appends an event to a job's log, numbering it by bumping the counter in the job's row (which also
/// serializes concurrent appends to one job).
pub(crate) async fn append_event(
    tx: &mut sqlx::AnyConnection,
    job: &str,
    kind: &str,
    data: Option<&serde_json::Value>,
    now: i64,
) -> Result<i64, StoreError> {
    let seq: i64 = sqlx::query_scalar("UPDATE jobs SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq")
        .bind(job)
        .fetch_one(&mut *tx)
        .await?;
    insert_event(tx, job, seq, kind, data, now).await?;
    Ok(seq)
}

/// Writes event `seq` of `job`; the caller has reserved the number in the job's row.
pub(crate) async fn insert_event(
    tx: &mut sqlx::AnyConnection,
    job: &str,
    seq: i64,
    kind: &str,
    data: Option<&serde_json::Value>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO job_events (job_id, seq, at, kind, data) VALUES ($1, $2, $3, $4, $5)")
        .bind(job)
        .bind(seq)
        .bind(now)
        .bind(kind)
        .bind(data.map(|d| d.to_string()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn error_from(code: Option<String>, message: Option<String>) -> Option<JobError> {
    code.map(|code| JobError { code, message: message.unwrap_or_default() })
}

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(from_millis).transpose()
}

fn job_from_row(row: &AnyRow, attempts: Vec<Attempt>) -> Result<Job, StoreError> {
    let input: String = row.try_get("input")?;
    Ok(Job {
        id: parse_stored("job id", &row.try_get::<String, _>("id")?)?,
        workflow: parse_stored("workflow", &row.try_get::<String, _>("workflow")?)?,
        input: serde_json::from_str(&input).map_err(|e| StoreError::Corrupt(format!("job input: {e}")))?,
        status: parse_stored("job status", &row.try_get::<String, _>("status")?)?,
        priority: row.try_get("priority")?,
        run_at: from_millis(row.try_get("run_at")?)?,
        timeout_seconds: (row.try_get::<i64, _>("timeout_ms")? / 1000) as u64,
        attempts,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        idempotency_key: row.try_get("idempotency_key")?,
        cancel_requested_at: opt_time(row.try_get("cancel_requested_at")?)?,
        error: error_from(row.try_get("error_code")?, row.try_get("error_message")?),
        created_at: from_millis(row.try_get("created_at")?)?,
        started_at: opt_time(row.try_get("started_at")?)?,
        finished_at: opt_time(row.try_get("finished_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<Attempt, StoreError> {
    let outcome: Option<String> = row.try_get("outcome")?;
    Ok(Attempt {
        number: row.try_get::<i64, _>("number")? as u32,
        worker_id: parse_stored("worker id", &row.try_get::<String, _>("worker_id")?)?,
        started_at: from_millis(row.try_get("started_at")?)?,
        finished_at: opt_time(row.try_get("finished_at")?)?,
        outcome: outcome.map(|o| parse_stored("attempt outcome", &o)).transpose()?,
        error: error_from(row.try_get("error_code")?, row.try_get("error_message")?),
    })
}
