//! The per-job event log (read side and progress reports) and retention.

use std::time::Duration;

use chrono::Utc;
use nova_core::{AttemptToken, JobEvent, JobId, JobStatus, TenantId};
use sqlx::Row;

use crate::jobs::insert_event;
use crate::{from_millis, parse_stored, to_millis, Dialect, Store, StoreError};

/// The most events one read returns.
pub const MAX_EVENTS_PER_READ: u32 = 1000;

impl Store {
    /// A job's events with a sequence number above `after`, oldest first, at most `limit`.
    pub async fn job_events(&self, job: JobId, after: u64, limit: u32) -> Result<Vec<JobEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, kind, data FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(job.to_string())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit.clamp(1, MAX_EVENTS_PER_READ)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// `tenant`'s job `id`'s events with a sequence number above `after`, oldest first, at most `limit`, and
    /// whether the job has finished (then its log will not grow), read together in one statement so they
    /// agree: a finished job's final event is always among what it returns or before `after`. `None` for an
    /// unknown job or another tenant's. One lookup of the job by key and one range of `job_events`' key: cheap
    /// enough to poll (see `TenantStore::read_job_log`).
    pub(crate) async fn read_job_log(
        &self,
        job: JobId,
        tenant: TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Option<JobLog>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.status, e.seq, e.at, e.kind, e.data FROM jobs j
             LEFT JOIN job_events e ON e.job_id = j.id AND e.seq > $2
             WHERE j.id = $1 AND j.tenant_id = $4 ORDER BY e.seq LIMIT $3",
        )
        .bind(job.to_string())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit.clamp(1, MAX_EVENTS_PER_READ)))
        .bind(tenant.to_string())
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let status: JobStatus = parse_stored("job status", &first.try_get::<String, _>("status")?)?;
        let finished = matches!(status, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled);
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            // The job's one row without an event, when nothing follows `after`.
            if row.try_get::<Option<i64>, _>("seq")?.is_none() {
                continue;
            }
            events.push(event_from_row(row)?);
        }
        Ok(Some(JobLog { events, finished }))
    }

    /// Records a workflow's progress report as a `progress` event, if the attempt still holds the job.
    pub async fn report_progress(
        &self,
        job: JobId,
        token: AttemptToken,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.append_event(job, token, "progress", data).await.map(|_| ())
    }

    /// Appends an event of `kind` written by the attempt that holds `job` (an `llm.generate`'s `output`, say),
    /// if it still holds it, and says whether the job's cancellation was asked for meanwhile: a workflow that
    /// writes often learns of a cancellation sooner than from its heartbeat.
    pub async fn append_event(
        &self,
        job: JobId,
        token: AttemptToken,
        kind: &str,
        data: &serde_json::Value,
    ) -> Result<Appended, StoreError> {
        let now = to_millis(Utc::now());
        let mut tx = self.begin_write().await?;
        // The fenced write comes first: a SQLite transaction that reads before it writes cannot be upgraded
        // once another connection has written, and would fail at once instead of waiting its turn.
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "UPDATE jobs SET event_seq = event_seq + 1, updated_at = $1
             WHERE id = $2 AND lease_token = $3 AND status = 'running'
             RETURNING event_seq, cancel_requested_at",
        )
        .bind(now)
        .bind(job.to_string())
        .bind(token.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let (seq, cancel) = row.ok_or(StoreError::LeaseLost)?;
        insert_event(&mut tx, &job.to_string(), seq, kind, Some(data), now).await?;
        tx.commit().await?;
        Ok(Appended { seq: seq as u64, cancel_requested: cancel.is_some() })
    }

    /// Whether `job`'s cancellation was asked for, read by the attempt that holds it
    /// ([`StoreError::LeaseLost`] when it no longer does): a workflow that waits on something slow (a model
    /// that thinks before it writes) learns of a cancellation sooner than from its heartbeat.
    pub async fn cancel_requested(&self, job: JobId, token: AttemptToken) -> Result<bool, StoreError> {
        let row: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT cancel_requested_at FROM jobs WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        )
        .bind(job.to_string())
        .bind(token.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|at| at.is_some()).ok_or(StoreError::LeaseLost)
    }

    /// Deletes jobs that finished more than `older_than` ago, with their attempts and events, at most
    /// `batch` at a time; returns how many went. Reads only the `jobs_finished` index.
    pub async fn prune_finished(&self, older_than: Duration, batch: u32) -> Result<u64, StoreError> {
        let cutoff = to_millis(Utc::now()) - older_than.as_millis().min(i64::MAX as u128) as i64;
        let _turn = self.write_turn().await;
        let deleted = sqlx::query(PRUNE_SQL)
            .bind(cutoff)
            .bind(i64::from(batch.max(1)))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    /// Adds `n` finished `noop` jobs that finished long ago, with their attempts and events, then refreshes the planner's
    /// statistics unless `analyze` is false: the history that benchmarks and query-plan tests need.
    #[doc(hidden)]
    pub async fn insert_history(&self, n: u64, analyze: bool) -> Result<(), StoreError> {
        let rows = match self.dialect {
            Dialect::Sqlite => "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)",
            Dialect::Postgres => "WITH n(i) AS (SELECT generate_series(1, $1::BIGINT))",
        };
        let id = match self.dialect {
            Dialect::Sqlite => "'job_h' || printf('%031d', i)",
            Dialect::Postgres => "'job_h' || lpad(i::TEXT, 31, '0')",
        };
        let sql = format!(
            "{rows} INSERT INTO jobs (id, workflow, input, status, max_attempts, attempts_used, run_at, result,
                                      created_at, started_at, finished_at, updated_at, event_seq)
             SELECT {id}, 'noop', '{{}}', 'succeeded', 1, 1, i, '{{}}', i, i, i, i, 3 FROM n"
        );
        let mut tx = self.begin_write().await?;
        sqlx::query(&sql).bind(i64::try_from(n).unwrap_or(i64::MAX)).execute(&mut *tx).await?;
        // Each with the attempt and the three events a real run leaves.
        sqlx::query(
            "INSERT INTO job_attempts (job_id, number, token, worker_id, started_at, finished_at, outcome)
             SELECT id, 1, 'att_h' || substr(id, 6), 'wrk_00000000000000000000000000000000', started_at,
                    finished_at, 'succeeded'
             FROM jobs WHERE id LIKE 'job_h%'",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO job_events (job_id, seq, at, kind)
             SELECT id, e.seq, finished_at, e.kind FROM jobs,
                 (SELECT 1 AS seq, 'queued' AS kind UNION ALL SELECT 2, 'started' UNION ALL SELECT 3, 'succeeded') AS e
             WHERE id LIKE 'job_h%'",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if self.dialect == Dialect::Sqlite {
            // Fold the bulk insert into the database file, as SQLite's automatic checkpoints would have done
            // had the history grown job by job.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await?;
        }
        if analyze {
            sqlx::query("ANALYZE").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The database's plan for each statement that must stay index-driven however long the history grows
    /// (the claim, the lapsed-lease and queue-timeout sweeps, retention, the batch completion, then the read of
    /// the tenants' turns and a claim of a tenant with a limit), one line per plan step and `--` after each statement, so a test can check them. The statements are the ones the
    /// store runs, bound with sample values.
    #[doc(hidden)]
    pub async fn explain_queue_queries(&self) -> Result<String, StoreError> {
        use crate::jobs;
        let explain = self.explain_prefix();
        let batch = r#"[{"id": "job_x", "token": "att_x", "result": "1"}]"#;
        let tenant = TenantId::DEFAULT.to_string();
        let statements = [
            jobs::claim_sql(self.dialect),
            jobs::LAPSED_SQL.to_string(),
            PRUNE_SQL.to_string(),
            jobs::complete_sql(self.dialect),
            // On PostgreSQL the completion closes the attempts itself: its plan answers for both.
            match self.dialect {
                Dialect::Sqlite => jobs::complete_attempts_sql(self.dialect),
                Dialect::Postgres => jobs::complete_sql(self.dialect),
            },
            jobs::expire_sql(self.dialect),
            // Then a claim's read of the tenants' turns, and a claim of a tenant with a limit.
            crate::turns::contenders_sql(self.dialect),
            jobs::claim_sql(self.dialect),
        ];
        let mut out = String::new();
        for (i, statement) in statements.iter().enumerate() {
            let sql = format!("{explain}{statement}");
            let query = sqlx::query(&sql);
            let query = match i {
                0 | 7 if self.dialect == Dialect::Sqlite => {
                    let cap = (i == 7).then_some(2_i64);
                    query.bind(0_i64).bind(0_i64).bind(1_i64).bind("noop").bind(tenant.clone()).bind(cap)
                }
                0 | 7 => {
                    let cap = if i == 7 { "2" } else { "null" };
                    let turns = format!(r#"[{{"workflow": "noop", "tenant": "{tenant}", "n": 1, "cap": {cap}}}]"#);
                    query.bind(0_i64).bind(0_i64).bind(turns).bind("wrk_x")
                }
                1 | 5 => query.bind(0_i64).bind("code").bind("message"),
                2 => query.bind(0_i64).bind(100_i64),
                6 => query.bind(r#"[{"workflow": "noop"}, {"workflow": "code.run"}]"#).bind(0_i64),
                _ => query.bind(batch).bind(0_i64),
            };
            self.append_plan(query, &mut out).await?;
        }
        Ok(out)
    }

    /// `EXPLAIN` in this database's words, to put before a statement for [`Store::append_plan`].
    pub(crate) fn explain_prefix(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "EXPLAIN QUERY PLAN ",
            Dialect::Postgres => "EXPLAIN ",
        }
    }

    /// Runs an `EXPLAIN` query and appends its plan to `out`, one line per step, then `--`.
    pub(crate) async fn append_plan<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        out: &mut String,
    ) -> Result<(), StoreError> {
        for row in query.fetch_all(&self.pool).await? {
            // SQLite answers (id, parent, notused, detail); PostgreSQL one text column.
            let line: String = match self.dialect {
                Dialect::Sqlite => row.try_get("detail")?,
                Dialect::Postgres => row.try_get(0)?,
            };
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("--\n");
        Ok(())
    }
}

/// An event appended by [`Store::append_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number in the job's log.
    pub seq: u64,
    /// The job's cancellation has been asked for: the attempt should stop.
    pub cancel_requested: bool,
}

/// What a read of a job's log found (`TenantStore::read_job_log`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobLog {
    /// The events asked for, oldest first.
    pub events: Vec<JobEvent>,
    /// The job is in a final state (succeeded, failed, canceled): its log ends with the matching event.
    pub finished: bool,
}

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<JobEvent, StoreError> {
    let data: Option<String> = row.try_get("data")?;
    Ok(JobEvent {
        seq: row.try_get::<i64, _>("seq")? as u64,
        at: from_millis(row.try_get("at")?)?,
        kind: row.try_get("kind")?,
        data: data
            .map(|d| serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(format!("event data: {e}"))))
            .transpose()?,
    })
}

/// Deletes up to `$2` jobs that finished by `$1`, oldest first (their attempts and events go with them).
const PRUNE_SQL: &str = "DELETE FROM jobs WHERE id IN (
     SELECT id FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled') AND finished_at <= $1
     ORDER BY finished_at LIMIT $2)";
