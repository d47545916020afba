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
//! group of one, so nobody waits for company; a busy one yields to the runtime once before it closes a
//! group, so that submissions ready to run join it.
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

use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_core::{BatchId, Job, JobId, JobStatus, TenantId, Workflow};
use serde::Serialize;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::jobs::{json_rows, Col, NOTIFY_CHANNEL};
use crate::{from_millis, parse_stored, to_millis, Dialect, Enqueued, JobWebhook, NewJob, Store, StoreError};

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
    /// The job's `run_at` in milliseconds (its submission time unless the job named one).
    run_at: i64,
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
        let rows: Vec<JobRow> = jobs.iter().map(Checked::row).collect();
        let stored = if self.dialect == Dialect::Postgres {
            // One statement, which is its own transaction: one round trip for the group.
            insert_jobs(&mut *self.pool.acquire().await?, self.dialect, &rows, now).await?
        } else {
            let mut tx = self.begin_write().await?;
            let stored = insert_jobs(&mut tx, self.dialect, &rows, now).await?;
            tx.commit().await?;
            stored
        };
        Ok(jobs
            .iter()
            .zip(&rows)
            .zip(stored)
            .map(|((job, row), stored)| match stored {
                true => job.stored(row, now).map(|job| Written::Stored(Box::new(job))),
                false => Ok(Written::KeyTaken),
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
            // One yield before the group is closed: the submissions that are ready to run (their requests
            // read, their handlers queued behind this task) join it, instead of each paying a commit of its
            // own. No timer: an idle runtime comes straight back.
            tokio::task::yield_now().await;
            while arrived.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => arrived.push(request),
                    Err(_) => break,
                }
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
    // A time out of range fails here, alone, not its group.
    from_millis(run_at)?;
    Ok(Checked { id: JobId::new(), run_at, new })
}

/// Milliseconds of `d`, as the `jobs` table keeps durations.
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Checked {
    /// The job's row.
    fn row(&self) -> JobRow {
        let new = &self.new;
        JobRow {
            id: self.id,
            tenant: new.tenant,
            workflow: new.workflow,
            input: new.input.to_string(),
            priority: new.priority,
            max_attempts: new.max_attempts,
            timeout_ms: millis(new.timeout),
            run_at: self.run_at,
            start_by: new.queue_timeout.map(|t| self.run_at.saturating_add(millis(t))),
            idempotency_key: new.idempotency_key.clone(),
            request_id: new.request_id.clone(),
            webhook: new.webhook.clone(),
            batch: None,
        }
    }

    /// The job as [`insert_jobs`] stored its `row` at `now`: what reading it back would give, without the
    /// read (the input as the submission gave it, not parsed again from the row's text).
    fn stored(&self, row: &JobRow, now: i64) -> Result<Job, StoreError> {
        let created = from_millis(now)?;
        Ok(Job {
            id: row.id,
            workflow: row.workflow,
            input: self.new.input.clone(),
            status: JobStatus::Queued,
            priority: row.priority,
            run_at: from_millis(row.run_at)?,
            timeout_seconds: (row.timeout_ms / 1000) as u64,
            start_by: row.start_by.map(from_millis).transpose()?,
            attempts: Vec::new(),
            max_attempts: stored_attempts(row.max_attempts),
            idempotency_key: row.idempotency_key.clone(),
            request_id: row.request_id.clone(),
            cancel_requested_at: None,
            error: None,
            batch_id: None,
            review: None,
            created_at: created,
            started_at: None,
            finished_at: None,
            updated_at: created,
        })
    }
}

/// The attempts a job is stored with: at least one.
fn stored_attempts(asked: u32) -> u32 {
    asked.max(1)
}

/// One job to insert with [`insert_jobs`], its values as the `jobs` table holds them.
#[derive(Debug, Clone)]
pub(crate) struct JobRow {
    pub id: JobId,
    pub tenant: TenantId,
    pub workflow: Workflow,
    /// The input as JSON text.
    pub input: String,
    pub priority: i64,
    pub max_attempts: u32,
    pub timeout_ms: i64,
    pub run_at: i64,
    pub start_by: Option<i64>,
    pub idempotency_key: Option<String>,
    pub request_id: Option<String>,
    /// Where the job's events are sent, and which.
    pub webhook: Option<JobWebhook>,
    /// The job's batch and its index in it.
    pub batch: Option<(BatchId, u64)>,
}

/// A [`JobRow`] as an element of the JSON array that [`insert_jobs`] binds.
#[derive(Serialize)]
struct RowJson<'a> {
    id: String,
    workflow: &'a str,
    input: &'a str,
    priority: i64,
    max_attempts: i64,
    timeout_ms: i64,
    idempotency_key: Option<&'a str>,
    run_at: i64,
    start_by: Option<i64>,
    tenant_id: String,
    request_id: Option<&'a str>,
    batch_id: Option<String>,
    batch_index: Option<u64>,
    /// The data of the job's `queued` event, as JSON text.
    queued: String,
    hook_url: Option<&'a str>,
    hook_events: Option<String>,
}

/// The data of a job's `queued` event.
#[derive(Serialize)]
struct Queued {
    run_at: DateTime<Utc>,
    workflow: Workflow,
}

/// The columns of [`RowJson`], as [`json_rows`] reads them.
const ROW_FIELDS: [(&str, Col); 16] = [
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
    ("batch_id", Col::Text),
    ("batch_index", Col::BigInt),
    ("queued", Col::Text),
    ("hook_url", Col::Text),
    ("hook_events", Col::Text),
];

/// Inserts `rows` as queued jobs created at `now`, with their `queued` events (number 1) and webhooks,
/// skipping a row whose tenant's idempotency key is taken (by an existing job, or an earlier row of `rows`);
/// says, in order, whether each was stored. Single submissions ([`Store::enqueue`], many per group commit)
/// and batches go through here alike.
///
/// A fixed number of statements whatever the number of rows, over one JSON array bound once: on SQLite one
/// query of two or three statements (one round trip to the connection's thread), on PostgreSQL one
/// statement with data-modifying `WITH` clauses, which also wakes the listening workers once (`pg_notify`,
/// delivered at commit) when it stored any. `tx` is the caller's transaction (on PostgreSQL a connection
/// outside one will do: it is one statement). Rows come back only when some row has a key, the only case
/// where one can be skipped.
pub(crate) async fn insert_jobs(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    rows: &[JobRow],
    now: i64,
) -> Result<Vec<bool>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let queued = Queued { run_at: from_millis(row.run_at)?, workflow: row.workflow };
        items.push(RowJson {
            id: row.id.to_string(),
            workflow: row.workflow.as_str(),
            input: &row.input,
            priority: row.priority,
            max_attempts: i64::from(stored_attempts(row.max_attempts)),
            timeout_ms: row.timeout_ms,
            idempotency_key: row.idempotency_key.as_deref(),
            run_at: row.run_at,
            start_by: row.start_by,
            tenant_id: row.tenant.to_string(),
            request_id: row.request_id.as_deref(),
            batch_id: row.batch.map(|(batch, _)| batch.to_string()),
            batch_index: row.batch.map(|(_, index)| index),
            queued: serde_json::to_string(&queued).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            hook_url: row.webhook.as_ref().map(|h| h.url.as_str()),
            hook_events: row.webhook.as_ref().map(|h| serde_json::json!(h.events).to_string()),
        });
    }
    let json = serde_json::to_string(&items).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let keys = rows.iter().any(|row| row.idempotency_key.is_some());
    let hooks = rows.iter().any(|row| row.webhook.is_some());
    let sql = insert_jobs_sql(dialect, keys, hooks);
    let query = sqlx::query(&sql).bind(json).bind(now);
    let query = if dialect == Dialect::Postgres { query.bind(NOTIFY_CHANNEL) } else { query };
    if !keys {
        query.execute(&mut *tx).await?;
        return Ok(vec![true; rows.len()]);
    }
    // All rows, so that SQLite runs the query's later statements too.
    let stored: std::collections::HashSet<String> =
        query.fetch_all(&mut *tx).await?.iter().map(|row| row.try_get("id")).collect::<Result<_, _>>()?;
    Ok(rows.iter().map(|row| stored.contains(&row.id.to_string())).collect())
}

/// The statement(s) of [`insert_jobs`]: the JSON rows `$1`, the time `$2`, and on PostgreSQL the channel `$3`.
/// With `keys`, a row whose key is taken is skipped and the ids stored are returned; with `hooks`, webhooks
/// are written too.
fn insert_jobs_sql(dialect: Dialect, keys: bool, hooks: bool) -> String {
    let rows = json_rows(dialect, 1, &ROW_FIELDS);
    // A key taken by an earlier row of the same statement conflicts like one taken before: both backends
    // skip the later row. (`WHERE true`: SQLite reads an `ON` after a bare `FROM` as a join's.)
    let on_conflict = if keys {
        "ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id"
    } else {
        ""
    };
    let insert = |from: &str| {
        format!(
            "INSERT INTO jobs (id, workflow, input, status, priority, max_attempts, timeout_ms, idempotency_key,
                               run_at, created_at, updated_at, event_seq, start_by, tenant_id, request_id,
                               batch_id, batch_index)
             SELECT c.id, c.workflow, c.input, 'queued', c.priority, c.max_attempts, c.timeout_ms, c.idempotency_key,
                    c.run_at, $2, $2, 1, c.start_by, c.tenant_id, c.request_id, c.batch_id, c.batch_index
             FROM {from} WHERE true {on_conflict}"
        )
    };
    match dialect {
        // The events and webhooks of the rows stored: with keys, those whose id is now in `jobs`.
        Dialect::Sqlite => {
            let stored = if keys { "AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = c.id)" } else { "" };
            let mut sql = format!(
                "{};
                 INSERT INTO job_events (job_id, seq, at, kind, data)
                 SELECT c.id, 1, $2, 'queued', c.queued FROM ({rows}) AS c WHERE true {stored}",
                insert(&format!("({rows}) AS c"))
            );
            if hooks {
                sql.push_str(&format!(
                    ";
                     INSERT INTO job_webhooks (job_id, tenant_id, url, events)
                     SELECT c.id, c.tenant_id, c.hook_url, c.hook_events FROM ({rows}) AS c
                     WHERE c.hook_url IS NOT NULL {stored}"
                ));
            }
            sql
        }
        // The rows decoded once (`MATERIALIZED`); the events' foreign key is checked at the statement's end,
        // when the jobs are there.
        Dialect::Postgres => {
            let (stored, answer) = if keys {
                ("stored s JOIN c ON c.id = s.id", "SELECT s.id, (SELECT COUNT(*) FROM woken) AS woken FROM stored s")
            } else {
                ("c", "SELECT (SELECT COUNT(*) FROM woken) AS woken")
            };
            let hooked = if hooks {
                format!(
                    "hooked AS (INSERT INTO job_webhooks (job_id, tenant_id, url, events)
                                SELECT c.id, c.tenant_id, c.hook_url, c.hook_events FROM {stored}
                                WHERE c.hook_url IS NOT NULL),"
                )
            } else {
                String::new()
            };
            let returning = if keys { "" } else { " RETURNING 1" };
            format!(
                "WITH c AS MATERIALIZED ({rows}),
                 stored AS ({}{returning}),
                 logged AS (INSERT INTO job_events (job_id, seq, at, kind, data)
                            SELECT c.id, 1, $2, 'queued', c.queued FROM {stored}),
                 {hooked}
                 woken AS (SELECT pg_notify($3, '') FROM (SELECT 1 FROM stored LIMIT 1) AS any_stored)
                 {answer}",
                insert("c")
            )
        }
    }
}
