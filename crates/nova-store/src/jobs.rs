//! The job queue on SQL: enqueue, claim with a lease, heartbeat, and fenced completion.
//!
//! A claim is one short transaction that first hands back jobs whose lease lapsed (their worker crashed or
//! hung), then moves the oldest ready job to `running` under a fresh [`AttemptToken`]. Every later write of
//! that attempt names the token, and matches no row once the lease has passed to someone else.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_core::{Attempt, AttemptOutcome, AttemptToken, Job, JobError, JobId, JobStatus, TenantId, WorkerId, Workflow};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::turns::{plan_round, turn_size_sql, Contender};
use crate::{from_millis, parse_stored, to_millis, Dialect, Store, StoreError, WriteTx};

/// A job to enqueue; its input was validated by the caller.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The job's owner; only its requests see the job.
    pub tenant: TenantId,
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
    /// The queue-wait timeout: a job that no worker has started this long after `run_at` fails with
    /// `queue_timeout` without running. `None` waits for ever.
    pub queue_timeout: Option<Duration>,
    /// Where the job's events are sent (see [`crate::webhooks`]); written with the job.
    pub webhook: Option<crate::JobWebhook>,
    /// The id of the HTTP request that submitted the job, kept so that the job's logs carry it too.
    pub request_id: Option<String>,
}

impl NewJob {
    /// A job of the default tenant with the defaults: 3 attempts, priority 0, now, a 15-minute deadline, no
    /// idempotency key, no queue-wait timeout.
    pub fn new(workflow: Workflow, input: serde_json::Value) -> Self {
        Self {
            tenant: TenantId::DEFAULT,
            workflow,
            input,
            max_attempts: 3,
            priority: 0,
            run_at: None,
            timeout: Duration::from_secs(15 * 60),
            idempotency_key: None,
            queue_timeout: None,
            webhook: None,
            request_id: None,
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

/// A succeeded attempt to record: see [`Store::complete_batch`].
#[derive(Debug, Clone)]
pub struct Completion {
    pub job: JobId,
    pub token: AttemptToken,
    pub result: serde_json::Value,
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

/// What a [`Store::sweep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    /// Jobs whose lease had lapsed, now queued again or failed.
    pub lapsed: usize,
    /// Queued jobs failed for waiting past their queue-wait timeout.
    pub expired: usize,
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
    /// The job's owner: what the job's work stores (programs, results) belongs to it.
    pub tenant: TenantId,
}

/// What [`Store::claim_turns`] took.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    pub jobs: Vec<ClaimedJob>,
    /// Workflows that got fewer jobs than asked while a tenant had ready jobs left behind by its limit on
    /// running jobs: one of its jobs ending gives it a turn again, so a pool claims these again when an
    /// attempt ends rather than at its next poll.
    pub held_back: Vec<Workflow>,
}

/// The most rounds of one claim: a round is needed only when a tenant had fewer ready jobs than its share.
const CLAIM_ROUNDS: usize = 4;

const LEASE_EXPIRED: &str = "lease_expired";
const QUEUE_TIMEOUT: &str = "queue_timeout";
const QUEUE_TIMEOUT_MESSAGE: &str = "no worker started the job within its queue-wait timeout";
const LEASE_EXPIRED_MESSAGE: &str = "the worker stopped renewing its lease (it crashed, hung or was cut off)";

/// The PostgreSQL channel on which an enqueue wakes idle workers.
pub(crate) const NOTIFY_CHANNEL: &str = "nova_jobs";

/// Column `column` of the ready jobs of workflow `workflow` and tenant `tenant` at time `$2`, best first
/// (highest priority, then oldest), up to `limit`: one range of the `jobs_ready` index. Jobs past their
/// queue-wait timeout are left for [`expire_sql`].
pub(crate) fn ready_sql(column: &str, workflow: &str, tenant: &str, limit: &str) -> String {
    format!(
        "SELECT {column} FROM jobs
         WHERE workflow = {workflow} AND tenant_id = {tenant} AND status IN ('queued', 'retrying') AND run_at <= $2
           AND (start_by IS NULL OR start_by > $2)
         ORDER BY priority DESC, run_at, id LIMIT {limit}"
    )
}

/// The claim: takes ready jobs of the tenants a claim's turns named ([`crate::turns`]), each under a fresh
/// attempt token made in SQL, holding them until `$1` (`$2`: now). A token is the claim's time in
/// milliseconds (12 hex digits) and 80 random bits, so new tokens land at the end of the token index, not
/// at random places in it.
///
/// - SQLite: up to `$3` jobs of workflow `$4` and tenant `$5` (fewer when its limit `$6` is near), and as
///   much for each further turn of [`claim_sqlite_sql`]; the attempts and `started` events follow in the
///   same transaction. SQLite has one writer at a time, so each is atomic.
/// - PostgreSQL: one statement for every turn of the JSON `$3` (`[{"workflow", "tenant", "n", "cap"}]`)
///   that also inserts the attempts (worker `$4`) and the events, and returns the jobs' rows with
///   `attempt_number`. Concurrent claimers skip the rows others are locking instead of waiting on them (or,
///   without the lock, claiming the same row twice).
pub(crate) fn claim_sql(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => claim_sqlite_sql(1),
        Dialect::Postgres => claim_postgres_sql(),
    }
}

/// The claim on SQLite for `turns` tenants in one statement (one round trip to the connection's thread,
/// however many tenants take a turn): turn `k` (from 0) takes up to `$(3 + 4k)` jobs of workflow
/// `$(4 + 4k)` and tenant `$(5 + 4k)`, whose limit is `$(6 + 4k)`, each turn one range of `jobs_ready`.
/// SQLite has no `LATERAL` and takes no outer column in a `LIMIT`, hence a statement text per number of
/// turns, at most [`SQLITE_TURNS_PER_STATEMENT`].
pub(crate) fn claim_sqlite_sql(turns: usize) -> String {
    let ranges: Vec<String> = (0..turns)
        .map(|k| {
            let [n, workflow, tenant, cap] = [3, 4, 5, 6].map(|p| format!("${}", p + 4 * k));
            let size = turn_size_sql(Dialect::Sqlite, &n, &cap, &workflow, &tenant);
            format!("SELECT id FROM ({})", ready_sql("id", &workflow, &tenant, &size))
        })
        .collect();
    take_sql(Dialect::Sqlite, &format!("id IN ({})", ranges.join(" UNION ALL ")))
}

/// The most turns of one SQLite claim statement, below SQLite's 500 terms of a compound `SELECT`.
pub(crate) const SQLITE_TURNS_PER_STATEMENT: usize = 100;

/// Moves the jobs `which` names to `running` under fresh attempt tokens, returning their rows.
fn take_sql(dialect: Dialect, which: &str) -> String {
    let token = match dialect {
        Dialect::Sqlite => "printf('%012x', $2) || lower(hex(randomblob(10)))",
        Dialect::Postgres => "lpad(to_hex($2::BIGINT), 12, '0') || substr(md5(gen_random_uuid()::TEXT), 1, 20)",
    };
    format!(
        "UPDATE jobs SET status = 'running', attempts_used = attempts_used + 1,
             lease_token = 'att_' || {token},
             lease_expires_at = $1, started_at = COALESCE(started_at, $2), updated_at = $2,
             start_by = NULL, event_seq = event_seq + 1
         WHERE {which}
         RETURNING *"
    )
}

/// The claim on PostgreSQL: see [`claim_sql`].
fn claim_postgres_sql() -> String {
    let dialect = Dialect::Postgres;
    format!(
        "WITH wants AS ({}),
         turns AS (SELECT workflow, tenant, {} AS n FROM wants),
         picked AS (SELECT r.id FROM turns CROSS JOIN LATERAL ({} FOR UPDATE SKIP LOCKED) AS r),
         claimed AS ({}),
         attempts AS (INSERT INTO job_attempts (job_id, number, token, worker_id, started_at)
                      SELECT id, (SELECT COALESCE(MAX(a.number), 0) + 1 FROM job_attempts a
                                  WHERE a.job_id = claimed.id),
                             lease_token, $4, $2
                      FROM claimed
                      RETURNING job_id, number),
         logged AS (INSERT INTO job_events (job_id, seq, at, kind, data)
                    SELECT c.id, c.event_seq, $2, 'started',
                           json_build_object('attempt', a.number, 'worker_id', $4::TEXT)::TEXT
                    FROM claimed c JOIN attempts a ON a.job_id = c.id)
         SELECT c.*, a.number AS attempt_number FROM claimed c JOIN attempts a ON a.job_id = c.id",
        json_rows(
            dialect,
            3,
            &[("workflow", Col::Text), ("tenant", Col::Text), ("n", Col::BigInt), ("cap", Col::BigInt)]
        ),
        turn_size_sql(dialect, "wants.n", "wants.cap", "wants.workflow", "wants.tenant"),
        ready_sql("id", "turns.workflow", "turns.tenant", "turns.n"),
        // An array, not `IN (SELECT ...)`: PostgreSQL then finds each row by its key, where a join could
        // hash the whole table when its statistics are off.
        take_sql(dialect, "id = ANY (ARRAY(SELECT id FROM picked))"),
    )
}

/// One round of a claim on SQLite, in the claim's transaction: one statement for up to
/// [`SQLITE_TURNS_PER_STATEMENT`] turns.
async fn claim_round_sqlite(
    tx: &mut WriteTx,
    contenders: &[Contender],
    turns: &[(usize, u32)],
    lease_until: i64,
    now_ms: i64,
) -> Result<Vec<AnyRow>, StoreError> {
    let mut rows = Vec::new();
    for chunk in turns.chunks(SQLITE_TURNS_PER_STATEMENT) {
        let sql = claim_sqlite_sql(chunk.len());
        let mut claim = sqlx::query(&sql).bind(lease_until).bind(now_ms);
        for &(i, n) in chunk {
            let c = &contenders[i];
            claim = claim
                .bind(i64::from(n))
                .bind(c.workflow.as_str())
                .bind(c.tenant.clone())
                .bind(c.turn.max_running.map(i64::from));
        }
        rows.extend(claim.fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}

/// Ends the leases that lapsed by `$1`: the job is queued again (`retrying`) or, with its attempts used
/// up, fails (`$2`, `$3`: the error); counts the `lease_expired` event and the next. Reads `jobs_leased`.
pub(crate) const LAPSED_SQL: &str = "UPDATE jobs SET
         status = CASE WHEN attempts_used >= max_attempts THEN 'failed' ELSE 'retrying' END,
         finished_at = CASE WHEN attempts_used >= max_attempts THEN $1 END,
         error_code = $2, error_message = $3,
         lease_token = NULL, lease_expires_at = NULL, run_at = $1, updated_at = $1,
         event_seq = event_seq + 2
     WHERE status = 'running' AND lease_expires_at <= $1
     RETURNING id, status, event_seq";

/// Fails up to 1,000 queued jobs whose queue-wait timeout passed by `$1` (`$2`, `$3`: the error), counting
/// their `failed` event: one range of the `jobs_start_by` index.
pub(crate) fn expire_sql(dialect: Dialect) -> String {
    let lock = if dialect == Dialect::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
    format!(
        "UPDATE jobs SET status = 'failed', finished_at = $1, updated_at = $1, error_code = $2,
             error_message = $3, start_by = NULL, event_seq = event_seq + 1
         WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND start_by <= $1
                      ORDER BY start_by LIMIT 1000{lock})
         RETURNING id, event_seq"
    )
}

impl Store {
    pub async fn get_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.get_one_job(id, None).await
    }

    /// A job, when it belongs to `tenant`: one lookup for the ownership check and the read.
    pub(crate) async fn get_tenant_job(&self, id: JobId, tenant: TenantId) -> Result<Option<Job>, StoreError> {
        self.get_one_job(id, Some(tenant)).await
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

    /// Whether any job is not finished yet (queued, retrying or running): one probe of each partial index,
    /// as cheap with a million jobs waiting as with none.
    pub async fn has_unfinished(&self) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM jobs WHERE status IN ('queued', 'retrying'))
                         OR EXISTS (SELECT 1 FROM jobs WHERE status = 'running')",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Claims one ready job for `worker`, holding it for `lease`, after a [`Store::sweep`]: the best of the
    /// first workflow in [`Workflow::ALL`] order that has one. For tools and tests; worker pools sweep on
    /// their poll interval and claim per workflow with [`Store::claim_batch`].
    pub async fn claim(&self, worker: WorkerId, lease: Duration) -> Result<Option<ClaimedJob>, StoreError> {
        self.sweep().await?;
        for &workflow in Workflow::ALL {
            if let Some(claimed) = self.claim_batch(worker, lease, &[(workflow, 1)]).await?.pop() {
                return Ok(Some(claimed));
            }
        }
        Ok(None)
    }

    /// The queue's housekeeping, in one transaction: hands back jobs whose lease lapsed (their worker
    /// crashed, hung or was cut off) to the queue, or fails them when their attempts are used up, and fails
    /// queued jobs past their queue-wait timeout. Each reads a partial index of unfinished jobs only, so it
    /// costs next to nothing when there is nothing to do; worker pools run it on their poll interval.
    pub async fn sweep(&self) -> Result<Swept, StoreError> {
        let now_ms = to_millis(Utc::now());
        let mut tx = self.begin_write().await?;

        // The attempt that lost its lease counts as a failed attempt.
        let lapsed: Vec<(String, String, i64)> = sqlx::query_as(LAPSED_SQL)
            .bind(now_ms)
            .bind(LEASE_EXPIRED)
            .bind(LEASE_EXPIRED_MESSAGE)
            .fetch_all(&mut *tx)
            .await?;
        if !lapsed.is_empty() {
            let ids = json_array(lapsed.iter().map(|(id, _, _)| serde_json::json!({"job_id": id})));
            let sql = format!(
                "UPDATE job_attempts SET outcome = 'failed', finished_at = $2, error_code = $3, error_message = $4
                 WHERE outcome IS NULL AND {}",
                json_in(self.dialect, "job_id", 1)
            );
            sqlx::query(&sql)
                .bind(ids)
                .bind(now_ms)
                .bind(LEASE_EXPIRED)
                .bind(LEASE_EXPIRED_MESSAGE)
                .execute(&mut *tx)
                .await?;
            let error = serde_json::json!({"error": {"code": LEASE_EXPIRED, "message": LEASE_EXPIRED_MESSAGE}});
            let expired = lapsed.iter().map(|(id, _, seq)| (id.as_str(), seq - 1, Some(error.clone())));
            insert_events(&mut tx, self.dialect, "lease_expired", now_ms, expired).await?;
            for status in ["retrying", "failed"] {
                let now_in =
                    lapsed.iter().filter(|(_, s, _)| s == status).map(|(id, _, seq)| (id.as_str(), *seq, None));
                insert_events(&mut tx, self.dialect, status, now_ms, now_in).await?;
            }
        }

        let expired: Vec<(String, i64)> = sqlx::query_as(&expire_sql(self.dialect))
            .bind(now_ms)
            .bind(QUEUE_TIMEOUT)
            .bind(QUEUE_TIMEOUT_MESSAGE)
            .fetch_all(&mut *tx)
            .await?;
        if !expired.is_empty() {
            let error = serde_json::json!({"error": {"code": QUEUE_TIMEOUT, "message": QUEUE_TIMEOUT_MESSAGE}});
            let failed = expired.iter().map(|(id, seq)| (id.as_str(), *seq, Some(error.clone())));
            insert_events(&mut tx, self.dialect, "failed", now_ms, failed).await?;
        }
        tx.commit().await?;
        Ok(Swept { lapsed: lapsed.len(), expired: expired.len() })
    }

    /// Claims, for each `(workflow, n)` of `wants`, up to `n` ready jobs of that workflow for `worker`,
    /// holding each for `lease`, the workflow's tenants taking turns (see [`Store::claim_turns`]). Jobs past
    /// their queue-wait timeout are never taken; lapsed leases wait for the next [`Store::sweep`].
    pub async fn claim_batch(
        &self,
        worker: WorkerId,
        lease: Duration,
        wants: &[(Workflow, u32)],
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        Ok(self.claim_turns(worker, lease, wants).await?.jobs)
    }

    /// [`Store::claim_batch`], saying also which workflows had ready jobs held back by a tenant's limit.
    ///
    /// First a read finds the tenants with ready jobs of each workflow (one probe per tenant, see
    /// [`crate::turns`]); their shares of the workflow's `n` slots are worked out here; then each tenant's
    /// share is taken from the top of its own jobs. A tenant with fewer ready jobs than its share (or whose
    /// jobs another claimer holds) leaves the rest to another round among the others, for at most
    /// [`CLAIM_ROUNDS`] rounds. On SQLite the rounds, the attempts and the events are one transaction (one
    /// commit, however many jobs); on PostgreSQL each round is one statement.
    pub async fn claim_turns(
        &self,
        worker: WorkerId,
        lease: Duration,
        wants: &[(Workflow, u32)],
    ) -> Result<Claim, StoreError> {
        let wants: Vec<(Workflow, u32)> = wants.iter().copied().filter(|&(_, n)| n > 0).collect();
        if wants.is_empty() {
            return Ok(Claim::default());
        }
        let now_ms = to_millis(Utc::now());
        let lease_until = now_ms + lease.as_millis() as i64;
        let mut contenders = self.contenders(&wants, now_ms).await?;
        if contenders.is_empty() {
            return Ok(Claim::default());
        }
        let mut left_out = vec![false; contenders.len()];
        let mut taken: HashMap<Workflow, u32> = HashMap::new();
        let mut tx = match self.dialect {
            Dialect::Sqlite => Some(self.begin_write().await?),
            Dialect::Postgres => None,
        };
        let mut rows: Vec<AnyRow> = Vec::new();
        for _ in 0..CLAIM_ROUNDS {
            let turns = plan_round(&contenders, &left_out, &wants, &taken);
            if turns.is_empty() {
                break;
            }
            let got = match &mut tx {
                Some(tx) => claim_round_sqlite(tx, &contenders, &turns, lease_until, now_ms).await?,
                None => self.claim_round_postgres(worker, &contenders, &turns, lease_until, now_ms).await?,
            };
            let mut per_tenant: HashMap<(String, String), u32> = HashMap::new();
            for row in &got {
                *per_tenant.entry((row.try_get("workflow")?, row.try_get("tenant_id")?)).or_default() += 1;
            }
            let mut short = false;
            for &(i, n) in &turns {
                let c = &mut contenders[i];
                let got = per_tenant.get(&(c.workflow.as_str().to_string(), c.tenant.clone())).copied().unwrap_or(0);
                c.turn.running += got;
                *taken.entry(c.workflow).or_default() += got;
                if got < n {
                    left_out[i] = true;
                    short = true;
                }
            }
            rows.extend(got);
            if !short {
                break;
            }
        }
        // A tenant stopped by its limit gets its next turn when one of its jobs ends.
        let held_back = wants
            .iter()
            .filter(|&&(w, n)| taken.get(&w).copied().unwrap_or(0) < n)
            .filter(|&&(w, _)| {
                contenders.iter().zip(&left_out).any(|(c, &out)| {
                    c.workflow == w && c.turn.max_running.is_some_and(|max| out || c.turn.running >= max)
                })
            })
            .map(|&(w, _)| w)
            .collect();
        let jobs = match tx {
            Some(tx) => self.start_attempts_sqlite(tx, worker, rows, now_ms).await?,
            None => self.claimed_postgres(worker, &rows, now_ms).await?,
        };
        Ok(Claim { jobs, held_back })
    }

    /// One round of a claim on PostgreSQL: one statement for every turn. When a tenant with a limit has a
    /// turn, claims of its workflow take turns on a transaction-scoped lock, and the statement, run after the
    /// lock, counts the jobs the previous claim committed: two claimers at once cannot both fill a tenant's
    /// last place. Without limits, claimers run side by side, skipping each other's locked rows.
    async fn claim_round_postgres(
        &self,
        worker: WorkerId,
        contenders: &[Contender],
        turns: &[(usize, u32)],
        lease_until: i64,
        now_ms: i64,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let batch = json_array(turns.iter().map(|&(i, n)| {
            let c = &contenders[i];
            serde_json::json!({"workflow": c.workflow.as_str(), "tenant": c.tenant, "n": n, "cap": c.turn.max_running})
        }));
        let sql = claim_sql(Dialect::Postgres);
        let claim = sqlx::query(&sql).bind(lease_until).bind(now_ms).bind(batch).bind(worker.to_string());
        // In one order for every claimer, so that two never wait on each other.
        let limited: std::collections::BTreeSet<&str> = turns
            .iter()
            .map(|&(i, _)| &contenders[i])
            .filter(|c| c.turn.max_running.is_some())
            .map(|c| c.workflow.as_str())
            .collect();
        if limited.is_empty() {
            return Ok(claim.fetch_all(&self.pool).await?);
        }
        let mut tx = self.pool.begin().await?;
        for workflow in limited {
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked")
                .bind(format!("nova.claim.{workflow}"))
                .execute(&mut *tx)
                .await?;
        }
        let rows = claim.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Ends a claim on SQLite: one attempt row and one `started` event per claimed job, then the commit.
    async fn start_attempts_sqlite(
        &self,
        mut tx: WriteTx,
        worker: WorkerId,
        rows: Vec<AnyRow>,
        now_ms: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let (id, token, seq): (String, String, i64) =
                (row.try_get("id")?, row.try_get("lease_token")?, row.try_get("event_seq")?);
            claimed.push((id, token, seq));
        }
        // One attempt row per claimed job, numbered after the job's earlier attempts, in one statement.
        let batch = json_array(claimed.iter().map(|(id, token, _)| serde_json::json!({"id": id, "token": token})));
        let sql = format!(
            "INSERT INTO job_attempts (job_id, number, token, worker_id, started_at)
             SELECT c.id, (SELECT COALESCE(MAX(a.number), 0) + 1 FROM job_attempts a WHERE a.job_id = c.id),
                    c.token, $2, $3
             FROM ({}) AS c
             RETURNING *",
            json_rows(self.dialect, 1, &[("id", Col::Text), ("token", Col::Text)])
        );
        let mut attempts: HashMap<String, Attempt> = HashMap::with_capacity(claimed.len());
        for row in sqlx::query(&sql).bind(batch).bind(worker.to_string()).bind(now_ms).fetch_all(&mut *tx).await? {
            attempts.insert(row.try_get("job_id")?, attempt_from_row(&row)?);
        }
        let started = claimed.iter().map(|(id, _, seq)| {
            let number = attempts.get(id).map_or(0, |a| a.number);
            (id.as_str(), *seq, Some(serde_json::json!({"attempt": number, "worker_id": worker})))
        });
        insert_events(&mut tx, self.dialect, "started", now_ms, started).await?;
        tx.commit().await?;

        // A job run before has earlier attempts to list; a first run has only the one just made.
        let retried: Vec<JobId> = attempts
            .iter()
            .filter(|(_, a)| a.number > 1)
            .map(|(id, _)| parse_stored("job id", id))
            .collect::<Result<_, _>>()?;
        let mut histories = if retried.is_empty() { HashMap::new() } else { self.attempts_of(&retried).await? };
        rows.iter()
            .zip(claimed)
            .map(|(row, (id, token, _))| {
                let this = attempts
                    .remove(&id)
                    .ok_or_else(|| StoreError::Corrupt(format!("claimed job {id} has no attempt")))?;
                let number = this.number;
                let all = histories.remove(&id).unwrap_or_else(|| vec![this]);
                Ok(ClaimedJob {
                    job: job_from_row(row, all)?,
                    token: parse_stored("attempt token", &token)?,
                    attempt: number,
                    tenant: parse_stored("tenant id", &row.try_get::<String, _>("tenant_id")?)?,
                })
            })
            .collect()
    }

    /// The jobs of a claim on PostgreSQL, whose statements made their attempts and events.
    async fn claimed_postgres(
        &self,
        worker: WorkerId,
        rows: &[AnyRow],
        now_ms: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let started_at = from_millis(now_ms)?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut retried = Vec::new();
        for row in rows {
            let number = row.try_get::<i64, _>("attempt_number")? as u32;
            let this = Attempt { number, worker_id: worker, started_at, finished_at: None, outcome: None, error: None };
            let job = job_from_row(row, vec![this])?;
            if number > 1 {
                retried.push(job.id);
            }
            let token = parse_stored("attempt token", &row.try_get::<String, _>("lease_token")?)?;
            let tenant = parse_stored("tenant id", &row.try_get::<String, _>("tenant_id")?)?;
            claimed.push(ClaimedJob { job, token, attempt: number, tenant });
        }
        // A job run before has earlier attempts to list.
        if !retried.is_empty() {
            let mut histories = self.attempts_of(&retried).await?;
            for c in &mut claimed {
                if let Some(all) = histories.remove(&c.job.id.to_string()) {
                    c.job.attempts = all;
                }
            }
        }
        Ok(claimed)
    }

    /// The attempts of several jobs, oldest first, keyed by job id.
    pub(crate) async fn attempts_of(&self, ids: &[JobId]) -> Result<HashMap<String, Vec<Attempt>>, StoreError> {
        let batch = json_array(ids.iter().map(|id| serde_json::json!({"job_id": id.to_string()})));
        let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
        let sql =
            format!("SELECT * FROM job_attempts WHERE {} ORDER BY job_id, number", json_in(self.dialect, "job_id", 1));
        for row in sqlx::query(&sql).bind(&batch).fetch_all(&self.pool).await? {
            attempts.entry(row.try_get("job_id")?).or_default().push(attempt_from_row(&row)?);
        }
        Ok(attempts)
    }

    /// One job (of `tenant` only, when given) with its attempts: a lookup by primary key, and the attempts
    /// only for a job that has had any. A job whose last event is its first (`queued`) was never claimed,
    /// since a claim writes its `started` event in the claim's own transaction.
    async fn get_one_job(&self, id: JobId, tenant: Option<TenantId>) -> Result<Option<Job>, StoreError> {
        let row = match tenant {
            None => sqlx::query("SELECT * FROM jobs WHERE id = $1").bind(id.to_string()).fetch_optional(&self.pool),
            Some(tenant) => sqlx::query("SELECT * FROM jobs WHERE id = $1 AND tenant_id = $2")
                .bind(id.to_string())
                .bind(tenant.to_string())
                .fetch_optional(&self.pool),
        }
        .await?;
        let Some(row) = row else { return Ok(None) };
        let attempts = if row.try_get::<i64, _>("event_seq")? > 1 {
            self.attempts_of(&[id]).await?.remove(&id.to_string()).unwrap_or_default()
        } else {
            Vec::new()
        };
        job_from_row(&row, attempts).map(Some)
    }

    /// Renews the lease of a running attempt, and says whether the job's cancellation was asked.
    /// `Err(LeaseLost)` tells the worker to stop: the job is no longer its own.
    pub async fn heartbeat(&self, job: JobId, token: AttemptToken, lease: Duration) -> Result<Heartbeat, StoreError> {
        let now = to_millis(Utc::now());
        let turn = self.write_turn().await;
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
        drop(turn);
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
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
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
        let done = self.complete_batch(&[Completion { job, token, result: result.clone() }]).await?;
        fenced(u64::from(done.first().copied().unwrap_or(false)))
    }

    /// Records several attempts' successes in one transaction, with a fixed number of statements however
    /// many there are: what a busy worker pool does instead of one transaction per job. Says, in order,
    /// whether each was recorded (`false`: the attempt had lost its lease, and nothing was written for it).
    /// A job appears at most once in a batch.
    pub async fn complete_batch(&self, batch: &[Completion]) -> Result<Vec<bool>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_millis(Utc::now());
        let rows = json_array(batch.iter().map(|c| {
            let review = nova_core::ReviewState::of_result(&c.result).map(|r| r.as_str());
            serde_json::json!({"id": c.job.to_string(), "token": c.token.to_string(), "result": c.result.to_string(), "review": review})
        }));
        if self.dialect == Dialect::Postgres {
            // One statement does it all (and is its own transaction): one round trip for the batch.
            let done: Vec<String> =
                sqlx::query_scalar(&complete_sql(self.dialect)).bind(&rows).bind(now).fetch_all(&self.pool).await?;
            return Ok(batch.iter().map(|c| done.contains(&c.job.to_string())).collect());
        }
        let mut tx = self.begin_write().await?;
        let sql = complete_sql(self.dialect);
        let done: HashMap<String, i64> =
            sqlx::query_as(&sql).bind(&rows).bind(now).fetch_all(&mut *tx).await?.into_iter().collect();
        if !done.is_empty() {
            let tokens = json_array(
                batch
                    .iter()
                    .filter(|c| done.contains_key(&c.job.to_string()))
                    .map(|c| serde_json::json!({"token": c.token.to_string()})),
            );
            sqlx::query(&complete_attempts_sql(self.dialect)).bind(tokens).bind(now).execute(&mut *tx).await?;
            insert_events(
                &mut tx,
                self.dialect,
                "succeeded",
                now,
                done.iter().map(|(id, seq)| (id.as_str(), *seq, None)),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(batch.iter().map(|c| done.contains_key(&c.job.to_string())).collect())
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
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
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

/// Records each succeeded attempt of the JSON batch `$1` (`id`, `token`, `result` as JSON text) whose
/// token still holds its job, at time `$2`, counting its `succeeded` event; returns their ids (and, on
/// SQLite, their event numbers). On PostgreSQL the one statement also closes the attempts and logs the
/// events (data-modifying `WITH` clauses); on SQLite [`complete_attempts_sql`] and an event insert follow.
///
/// On SQLite the job is found by its key, named outright: planner statistics taken while no job ran (the
/// partial index `jobs_leased` then looks empty) would otherwise have SQLite walk the running jobs and
/// re-read the whole JSON batch for each one.
pub(crate) fn complete_sql(dialect: Dialect) -> String {
    let rows =
        json_rows(dialect, 1, &[("id", Col::Text), ("token", Col::Text), ("result", Col::Text), ("review", Col::Text)]);
    let set = "status = 'succeeded', result = c.result, review = c.review, error_code = NULL, error_message = NULL,
             lease_token = NULL, lease_expires_at = NULL, finished_at = $2, updated_at = $2,
             event_seq = event_seq + 1";
    let held = "jobs.id = c.id AND jobs.lease_token = c.token AND jobs.status = 'running'";
    match dialect {
        Dialect::Sqlite => format!(
            "UPDATE jobs INDEXED BY sqlite_autoindex_jobs_1 SET {set} FROM ({rows}) AS c WHERE {held}
             RETURNING jobs.id, jobs.event_seq"
        ),
        // The rows are found through arrays of keys, which PostgreSQL answers with index lookups whatever
        // its statistics say (a join could hash every running job, or every attempt).
        Dialect::Postgres => format!(
            "WITH c AS ({rows}),
             done AS (UPDATE jobs SET {set} FROM c
                      WHERE jobs.id = ANY (ARRAY(SELECT id FROM c)) AND {held}
                      RETURNING jobs.id, jobs.event_seq, c.token),
             closed AS (UPDATE job_attempts SET outcome = 'succeeded', finished_at = $2
                        WHERE token = ANY (ARRAY(SELECT token FROM done)) AND outcome IS NULL),
             logged AS (INSERT INTO job_events (job_id, seq, at, kind)
                        SELECT id, event_seq, $2, 'succeeded' FROM done)
             SELECT id FROM done"
        ),
    }
}

/// Closes the attempts whose tokens the JSON batch `$1` names as succeeded at time `$2` (SQLite; on
/// PostgreSQL [`complete_sql`] does it).
pub(crate) fn complete_attempts_sql(dialect: Dialect) -> String {
    format!(
        "UPDATE job_attempts SET outcome = 'succeeded', finished_at = $2 WHERE outcome IS NULL AND {}",
        json_in(dialect, "token", 1)
    )
}

/// How [`json_rows`] reads a field.
#[derive(Clone, Copy)]
pub(crate) enum Col {
    Text,
    BigInt,
}

/// A JSON array of `items`, as text to bind to a [`json_rows`] parameter.
pub(crate) fn json_array(items: impl Iterator<Item = serde_json::Value>) -> String {
    serde_json::Value::Array(items.collect()).to_string()
}

/// A `SELECT` with one row per element of the JSON array of objects bound to `$param`, one column per
/// field: how a statement takes a whole batch in one parameter on both backends, each element decoded once.
pub(crate) fn json_rows(dialect: Dialect, param: usize, fields: &[(&str, Col)]) -> String {
    let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    match dialect {
        // `json_each` gives an element as JSON text, and `json_extract(value, ...)` on each field would turn
        // the element back into text and parse it again for every field: the elements are made binary
        // (JSONB) once, in a materialized table, and each field is looked up in that.
        Dialect::Sqlite => {
            let columns: Vec<String> = names.iter().map(|name| format!("e ->> '$.{name}' AS {name}")).collect();
            format!(
                "WITH elements AS MATERIALIZED (SELECT jsonb(value) AS e FROM json_each(${param})) \
                 SELECT {} FROM elements",
                columns.join(", ")
            )
        }
        // `json_to_recordset`: `->>` on each field would parse the element again for every field.
        Dialect::Postgres => {
            let types: Vec<String> = fields
                .iter()
                .map(|(name, col)| match col {
                    Col::Text => format!("{name} TEXT"),
                    Col::BigInt => format!("{name} BIGINT"),
                })
                .collect();
            format!("SELECT {} FROM json_to_recordset(${param}::JSON) AS e({})", names.join(", "), types.join(", "))
        }
    }
}

/// `column` is one of the values of field `column` in the JSON batch bound to `$param`. On PostgreSQL an
/// array comparison, which the planner answers with index lookups whatever it guesses of the batch's size.
pub(crate) fn json_in(dialect: Dialect, column: &str, param: usize) -> String {
    let values = json_rows(dialect, param, &[(column, Col::Text)]);
    match dialect {
        Dialect::Sqlite => format!("{column} IN ({values})"),
        Dialect::Postgres => format!("{column} = ANY (ARRAY({values}))"),
    }
}

/// Writes one event of kind `kind` for each `(job, seq, data)`, in one statement; the caller has reserved
/// each number in its job's row.
pub(crate) async fn insert_events<'a>(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    kind: &str,
    now: i64,
    events: impl Iterator<Item = (&'a str, i64, Option<serde_json::Value>)>,
) -> Result<(), StoreError> {
    let rows = json_array(
        events.map(|(job, seq, data)| serde_json::json!({"id": job, "seq": seq, "data": data.map(|d| d.to_string())})),
    );
    let sql = format!(
        "INSERT INTO job_events (job_id, seq, at, kind, data) SELECT c.id, c.seq, $2, $3, c.data FROM ({}) AS c",
        json_rows(dialect, 1, &[("id", Col::Text), ("seq", Col::BigInt), ("data", Col::Text)])
    );
    sqlx::query(&sql).bind(rows).bind(now).bind(kind).execute(&mut *tx).await?;
    Ok(())
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

pub(crate) fn job_from_row(row: &AnyRow, attempts: Vec<Attempt>) -> Result<Job, StoreError> {
    let input: String = row.try_get("input")?;
    Ok(Job {
        id: parse_stored("job id", &row.try_get::<String, _>("id")?)?,
        workflow: parse_stored("workflow", &row.try_get::<String, _>("workflow")?)?,
        input: serde_json::from_str(&input).map_err(|e| StoreError::Corrupt(format!("job input: {e}")))?,
        status: parse_stored("job status", &row.try_get::<String, _>("status")?)?,
        priority: row.try_get("priority")?,
        run_at: from_millis(row.try_get("run_at")?)?,
        timeout_seconds: (row.try_get::<i64, _>("timeout_ms")? / 1000) as u64,
        start_by: opt_time(row.try_get("start_by")?)?,
        attempts,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        idempotency_key: row.try_get("idempotency_key")?,
        request_id: row.try_get("request_id")?,
        cancel_requested_at: opt_time(row.try_get("cancel_requested_at")?)?,
        error: error_from(row.try_get("error_code")?, row.try_get("error_message")?),
        batch_id: row.try_get::<Option<String>, _>("batch_id")?.map(|b| parse_stored("batch id", &b)).transpose()?,
        review: row.try_get::<Option<String>, _>("review")?.map(|r| parse_stored("review state", &r)).transpose()?,
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
