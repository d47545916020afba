//! Submitting jobs: one at a time, or many in one transaction (group commit).
//!
//! Every enqueue writes a group of jobs with a fixed number of statements, however many the group holds:
//! the jobs' rows, their `queued` events and their webhooks, set-based over a JSON array of rows
//! ([`insert_jobs`]), and on PostgreSQL one `pg_notify` for the group. A group of one is what a lone
//! [`Store::enqueue`] writes.
//!
//! A store made with [`Store::with_group_commit`] sends its enqueues to a committer task instead (a few on
//! PostgreSQL: see [`committers`]), which writes every enqueue that arrived since its last commit as one group, in one transaction, and answers
//! each caller only after that commit: a server's concurrent submissions then share one commit (and one
//! write turn on SQLite) where each used to pay its own. An idle committer writes each enqueue at once, a
//! group of one, so nobody waits for company.
//!
//! What a group keeps of a lone enqueue:
//! - a job, its `queued` event and its webhook are in the same transaction, and nothing is answered before
//!   it commits;
//! - idempotency keys: a key already taken by the tenant (in an earlier transaction, or by an earlier job of
//!   the same group) answers with the job that holds it when its workflow and input are the same, and with
//!   [`StoreError::IdempotencyConflict`] when they differ, exactly as when the two came one after the other;
//! - a row that cannot be stored fails alone: each job is checked before it joins a group
//!   ([`StoreError::InvalidJob`]), and when a group's transaction fails anyway, each of its jobs is tried again
//!   in a transaction of its own, so each caller gets its own answer.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_core::{Job, JobId};
use sqlx::any::AnyRow;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::jobs::{job_from_row, json_array, json_rows, Col, NOTIFY_CHANNEL};
use crate::{from_millis, parse_stored, to_millis, Dialect, Enqueued, NewJob, Store, StoreError};

/// The most jobs one group commit writes; more waiting go in the next.
pub const MAX_GROUP: usize = 1024;

/// The committers of a store made with [`Store::with_group_commit`] (one on SQLite, a few on PostgreSQL: see
/// [`committers`]). Cheap to clone; the committers end when the last clone is dropped, or at
/// [`Store::end_group_commit`].
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Request>,
}

enum Request {
    /// A job to write; the reply hands it back with what became of it.
    Job { job: Box<Checked>, reply: oneshot::Sender<(Checked, Result<Written, StoreError>)> },
    /// Commit what is queued, then stop taking requests.
    End,
}

/// A job checked and given its id, ready to join a group.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    id: JobId,
    /// The job's `run_at` in milliseconds (its submission time unless the job named one), and as a time.
    run_at: i64,
    run_at_time: DateTime<Utc>,
    new: NewJob,
}

/// What a group's transaction did with one of its jobs.
#[derive(Debug)]
pub(crate) enum Written {
    /// The job was stored.
    Stored(Box<Job>),
    /// The tenant's idempotency key was taken (before, or by an earlier job of the group): nothing stored.
    KeyTaken,
}

impl Store {
    /// Queues a job for its tenant. With an idempotency key already in use by the tenant, returns that job
    /// when its workflow and input are the same, and [`StoreError::IdempotencyConflict`] when they differ.
    /// On a store made with [`Store::with_group_commit`], the job shares its transaction with the other
    /// enqueues of the moment; the answer comes after the commit either way.
    pub async fn enqueue(&self, new: NewJob) -> Result<Enqueued, StoreError> {
        let job = check(new)?;
        let (job, written) = match &self.group {
            Some(group) => group.write(self, job).await?,
            None => {
                let written = self.write_one(&job).await;
                (job, written)
            }
        };
        self.answer(&job, written?).await
    }

    /// Queues several jobs in one transaction (see the module's notes for what a group keeps); says, in order,
    /// what became of each. `Err` when the transaction failed as a whole: nothing was stored.
    pub async fn enqueue_group(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let checked: Vec<Result<Checked, StoreError>> = jobs.into_iter().map(check).collect();
        let valid: Vec<Checked> = checked.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
        let mut written = self.write_group(&valid).await?.into_iter();
        let mut answers = Vec::with_capacity(checked.len());
        for job in checked {
            answers.push(match job {
                Ok(job) => match written.next() {
                    Some(Ok(w)) => self.answer(&job, w).await,
                    Some(Err(e)) => Err(e),
                    None => Err(StoreError::Corrupt("a group write answered for fewer jobs than it was given".into())),
                },
                Err(e) => Err(e),
            });
        }
        Ok(answers)
    }

    /// The same store with its enqueues written by a committer task on the current runtime, many per
    /// transaction (group commit). The other clones of this store are unchanged.
    pub fn with_group_commit(self) -> Store {
        let (queue, requests) = mpsc::unbounded_channel();
        // The committer's own store writes directly: it holds no sender, so it ends with the last clone.
        spawn_committers(Store { group: None, ..self.clone() }, requests);
        Store { group: Some(GroupCommit { queue }), ..self }
    }

    /// Tells the committer (if this store has one) to write what is queued and stop; later enqueues write
    /// their own transaction. For shutdown: nothing queued is dropped unanswered.
    pub fn end_group_commit(&self) {
        if let Some(group) = &self.group {
            let _ = group.queue.send(Request::End);
        }
    }

    /// Writes `job` in a transaction of its own.
    async fn write_one(&self, job: &Checked) -> Result<Written, StoreError> {
        self.write_group(std::slice::from_ref(job)).await?.pop().unwrap_or_else(|| {
            Err(StoreError::Corrupt("a group write answered for fewer jobs than it was given".into()))
        })
    }

    /// Writes `jobs` in one transaction; says, in order, what became of each.
    async fn write_group(&self, jobs: &[Checked]) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_millis(Utc::now());
        let rows = if self.dialect == Dialect::Postgres {
            // One statement, which is its own transaction: one round trip for the group.
            insert_jobs(&mut *self.pool.acquire().await?, self.dialect, jobs, now).await?
        } else {
            let mut tx = self.begin_write().await?;
            let rows = insert_jobs(&mut tx, self.dialect, jobs, now).await?;
            tx.commit().await?;
            rows
        };
        let mut stored: HashMap<String, AnyRow> = HashMap::with_capacity(rows.len());
        for row in rows {
            stored.insert(row.try_get("id")?, row);
        }
        Ok(jobs
            .iter()
            .map(|job| match stored.remove(&job.id.to_string()) {
                Some(row) => job_from_row(&row, Vec::new()).map(|job| Written::Stored(Box::new(job))),
                None => Ok(Written::KeyTaken),
            })
            .collect())
    }

    /// The caller's answer: the job stored, or the job that holds its idempotency key.
    async fn answer(&self, job: &Checked, written: Written) -> Result<Enqueued, StoreError> {
        let key = match written {
            Written::Stored(stored) => return Ok(Enqueued { job: *stored, created: true }),
            Written::KeyTaken => job.new.idempotency_key.as_deref().unwrap_or_default(),
        };
        let existing: String = sqlx::query_scalar("SELECT id FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2")
            .bind(job.new.tenant.to_string())
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        let existing = self
            .get_job(parse_stored("job id", &existing)?)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a job vanished while its idempotency key was looked up".into()))?;
        if existing.workflow != job.new.workflow || existing.input != job.new.input {
            return Err(StoreError::IdempotencyConflict(existing.id));
        }
        Ok(Enqueued { job: existing, created: false })
    }
}

impl GroupCommit {
    /// Hands `job` to the committer and waits for its commit; the job comes back with what became of it.
    async fn write(&self, store: &Store, job: Checked) -> Result<(Checked, Result<Written, StoreError>), StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Job { job: Box::new(job), reply };
        if let Err(mpsc::error::SendError(Request::Job { job, .. })) = self.queue.send(request) {
            // The committer has ended (shutdown, or its runtime is gone): this job writes its own transaction.
            let written = store.write_one(&job).await;
            return Ok((*job, written));
        }
        // Dropped unanswered (the runtime is shutting down mid-commit): whether the job was stored is unknown,
        // so the caller is told it failed, never that it succeeded.
        answer.await.map_err(|_| StoreError::Corrupt("the group committer stopped before answering".into()))
    }
}

/// Committers of one store that write at once: on PostgreSQL a group's commit mostly waits for its WAL to
/// reach the disk, and the groups of several committers share that wait (the server flushes the commits that
/// came together at once), so a second group gathers and writes while the first one's flush runs. SQLite
/// has one writer at a time, so a second committer would only split the groups.
fn committers(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 1,
        Dialect::Postgres => 4,
    }
}

/// Starts the committers of `store` on the queue `requests`.
fn spawn_committers(store: Store, requests: mpsc::UnboundedReceiver<Request>) {
    let requests = std::sync::Arc::new(tokio::sync::Mutex::new(requests));
    for _ in 0..committers(store.dialect) {
        tokio::spawn(commit_groups(store.clone(), requests.clone()));
    }
}

/// A committer: takes whatever enqueues have arrived (up to [`MAX_GROUP`]), writes them in one transaction,
/// answers each, and starts again; ends when every sender is gone or at [`Request::End`]. Committers of one
/// queue take turns at gathering, not at writing.
async fn commit_groups(store: Store, requests: std::sync::Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>>) {
    let mut arrived = Vec::with_capacity(MAX_GROUP);
    loop {
        let mut group = Vec::with_capacity(MAX_GROUP);
        let mut replies = Vec::with_capacity(MAX_GROUP);
        {
            let mut requests = requests.lock().await;
            if requests.recv_many(&mut arrived, MAX_GROUP).await == 0 {
                return;
            }
            for request in arrived.drain(..) {
                match request {
                    Request::Job { job, reply } => {
                        group.push(*job);
                        replies.push(reply);
                    }
                    // New senders now fail (and write their own transaction); what was queued is still received.
                    Request::End => requests.close(),
                }
            }
        }
        match store.write_group(&group).await {
            Ok(written) => {
                for ((job, reply), written) in group.into_iter().zip(replies).zip(written) {
                    let _ = reply.send((job, written));
                }
            }
            Err(e) => {
                // One transaction per job instead, so that each gets its own answer and a bad row fails alone.
                tracing::warn!(jobs = group.len(), error = %nova_core::error_chain(&e),
                    "writing a group of submissions failed; writing them one by one");
                for (job, reply) in group.into_iter().zip(replies) {
                    let written = store.write_one(&job).await;
                    let _ = reply.send((job, written));
                }
            }
        }
    }
}

/// Checks what the database would refuse of `new` only when the group is written, so that one job cannot
/// fail its group's transaction, and gives it its id and `run_at`.
fn check(new: NewJob) -> Result<Checked, StoreError> {
    // PostgreSQL's text cannot hold NUL; SQLite's can. Refused on both, so both store the same jobs.
    let texts =
        [new.idempotency_key.as_deref(), new.request_id.as_deref(), new.webhook.as_ref().map(|h| h.url.as_str())];
    if texts.into_iter().flatten().any(|t| t.contains('\0')) {
        return Err(StoreError::InvalidJob(
            "a job's idempotency key, request id and webhook URL cannot hold NUL".into(),
        ));
    }
    let run_at = new.run_at.map_or_else(|| to_millis(Utc::now()), to_millis);
    Ok(Checked { id: JobId::new(), run_at, run_at_time: from_millis(run_at)?, new })
}

/// Inserts `jobs` in `tx` (on PostgreSQL, a connection outside a transaction will do: it is one statement)
/// with their `queued` events and webhooks, at time `now`, skipping those whose
/// tenant's idempotency key is taken (by an existing job or an earlier one of `jobs`); returns the rows
/// stored. A fixed number of statements whatever the number of jobs: on SQLite one query of three statements
/// (one round trip to the connection's thread), on PostgreSQL one statement with data-modifying `WITH`
/// clauses, which also wakes the listening workers once (`pg_notify`, delivered at commit) when it stored any.
pub(crate) async fn insert_jobs(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    jobs: &[Checked],
    now: i64,
) -> Result<Vec<AnyRow>, StoreError> {
    let rows = json_array(jobs.iter().map(|job| {
        let new = &job.new;
        let millis = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
        serde_json::json!({
            "id": job.id.to_string(),
            "workflow": new.workflow.as_str(),
            "input": new.input.to_string(),
            "priority": new.priority,
            "max_attempts": i64::from(new.max_attempts.max(1)),
            "timeout_ms": millis(new.timeout),
            "idempotency_key": new.idempotency_key,
            "run_at": job.run_at,
            "start_by": new.queue_timeout.map(|t| job.run_at.saturating_add(millis(t))),
            "tenant_id": new.tenant.to_string(),
            "request_id": new.request_id,
            "queued": serde_json::json!({"workflow": new.workflow, "run_at": job.run_at_time}).to_string(),
            "hook_url": new.webhook.as_ref().map(|h| h.url.as_str()),
            "hook_events": new.webhook.as_ref().map(|h| serde_json::json!(h.events).to_string()),
        })
    }));
    let sql = insert_jobs_sql(dialect);
    let query = sqlx::query(&sql).bind(rows).bind(now);
    let query = if dialect == Dialect::Postgres { query.bind(NOTIFY_CHANNEL) } else { query };
    // All rows, so that SQLite runs the query's later statements too.
    Ok(query.fetch_all(&mut *tx).await?)
}

/// The statement(s) of [`insert_jobs`]: the JSON rows `$1`, the time `$2`, and on PostgreSQL the channel `$3`.
fn insert_jobs_sql(dialect: Dialect) -> String {
    let fields = [
        ("id", Col::Text),
        ("workflow", Col::Text),
        ("input", Col::Text),
        ("priority", Col::BigInt),
        ("max_attempts", Col::BigInt),
        ("timeout_ms", Col::BigInt),
        ("idempotency_key", Col::Text),
        ("run_at", Col::BigInt),
        ("start_by", Col::BigInt),
        ("tenant_id", Col::Text),
        ("request_id", Col::Text),
        ("queued", Col::Text),
        ("hook_url", Col::Text),
        ("hook_events", Col::Text),
    ];
    let rows = json_rows(dialect, 1, &fields);
    // The job's first event (`queued`, number 1) is counted in the insert itself. A key taken by an earlier
    // row of the same statement conflicts like one taken before: both backends skip the later row.
    // (`WHERE true`: SQLite reads an `ON` after a bare `FROM` as a join's.)
    let insert = |from: &str| {
        format!(
            "INSERT INTO jobs (id, workflow, input, status, priority, max_attempts, timeout_ms, idempotency_key,
                               run_at, created_at, updated_at, event_seq, start_by, tenant_id, request_id)
             SELECT c.id, c.workflow, c.input, 'queued', c.priority, c.max_attempts, c.timeout_ms, c.idempotency_key,
                    c.run_at, $2, $2, 1, c.start_by, c.tenant_id, c.request_id
             FROM {from} WHERE true
             ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING *"
        )
    };
    match dialect {
        // The events and webhooks of the rows that were stored: those whose id is now in `jobs`.
        Dialect::Sqlite => format!(
            "{};
             INSERT INTO job_events (job_id, seq, at, kind, data)
             SELECT c.id, 1, $2, 'queued', c.queued FROM ({rows}) AS c
             WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.id = c.id);
             INSERT INTO job_webhooks (job_id, tenant_id, url, events)
             SELECT c.id, c.tenant_id, c.hook_url, c.hook_events FROM ({rows}) AS c
             WHERE c.hook_url IS NOT NULL AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = c.id)",
            insert(&format!("({rows}) AS c"))
        ),
        Dialect::Postgres => format!(
            "WITH c AS ({rows}),
             stored AS ({}),
             logged AS (INSERT INTO job_events (job_id, seq, at, kind, data)
                        SELECT s.id, 1, $2, 'queued', c.queued FROM stored s JOIN c ON c.id = s.id),
             hooked AS (INSERT INTO job_webhooks (job_id, tenant_id, url, events)
                        SELECT c.id, c.tenant_id, c.hook_url, c.hook_events FROM stored s JOIN c ON c.id = s.id
                        WHERE c.hook_url IS NOT NULL),
             woken AS (SELECT pg_notify($3, '') FROM (SELECT 1 FROM stored LIMIT 1) AS any_stored)
             SELECT s.*, (SELECT COUNT(*) FROM woken) AS woken FROM stored s",
            insert("c")
        ),
    }
}
