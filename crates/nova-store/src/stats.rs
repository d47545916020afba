//! The queue at a glance, for metrics: how many jobs wait and run per workflow, and how long the oldest
//! ready one has waited. One statement that reads only the queue's partial indexes, so a scrape costs as
//! much as the queue holds, however long the history.

use chrono::Utc;
use nova_core::{TenantId, Workflow};
use sqlx::Row;

use crate::{parse_stored, to_millis, Store, StoreError};

/// One workflow's share of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkflowQueue {
    /// Queued or retrying jobs whose `run_at` has come: a worker could take them now.
    pub ready: u64,
    /// Queued or retrying jobs whose `run_at` is still ahead (delayed jobs, retries in their backoff).
    pub scheduled: u64,
    /// Jobs a worker holds.
    pub running: u64,
    /// How long the oldest ready job has waited since its `run_at`, in milliseconds; 0 with none ready.
    pub oldest_ready_ms: u64,
}

/// [`Store::queue_stats`]'s answer: every workflow, those with no job at zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub workflows: Vec<(Workflow, WorkflowQueue)>,
}

impl QueueStats {
    /// The counts of `workflow`.
    pub fn of(&self, workflow: Workflow) -> WorkflowQueue {
        self.workflows.iter().find(|(w, _)| *w == workflow).map(|(_, q)| *q).unwrap_or_default()
    }
}

/// Waiting jobs through `jobs_ready (workflow, tenant_id, priority DESC, run_at, id) WHERE status IN ('queued',
/// 'retrying')`, and running ones through `jobs_leased (...) WHERE status = 'running'` (as many as there are
/// worker slots). `$1` is now, in milliseconds. The index holds every column counted (PostgreSQL may walk
/// it alone; SQLite still reads each waiting row, whose status its partial-index rule wants to see). It holds
/// no status, so queued and retrying jobs are counted together.
///
/// With `of_tenant`, the tenant `$2`'s jobs only. Every workflow is named so that a database may read them
/// as ranges of `jobs_by_workflow (tenant_id, workflow, status, id)` (SQLite does) rather than every job the
/// tenant ever had.
fn queue_stats_sql(of_tenant: bool) -> String {
    let owner = if of_tenant {
        let workflows: Vec<String> = Workflow::ALL.iter().map(|w| format!("'{}'", w.as_str())).collect();
        format!("tenant_id = $2 AND workflow IN ({}) AND ", workflows.join(", "))
    } else {
        String::new()
    };
    format!(
        "SELECT workflow, 'waiting' AS state, COUNT(*) AS n,
                SUM(CASE WHEN run_at <= $1 THEN 1 ELSE 0 END) AS ready, MIN(run_at) AS oldest
         FROM jobs WHERE {owner}status IN ('queued', 'retrying') GROUP BY workflow
         UNION ALL
         SELECT workflow, 'running' AS state, COUNT(*) AS n, 0 AS ready, NULL AS oldest
         FROM jobs WHERE {owner}status = 'running' GROUP BY workflow"
    )
}

impl Store {
    /// How many jobs of each workflow wait (ready now, or scheduled later) and run, and the age of the
    /// oldest ready one: what `GET /metrics` shows of the queue. Counts every tenant's jobs.
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.queue_stats_of(None).await
    }

    /// [`Store::queue_stats`] of one tenant's jobs, or of all with `None`. A tenant's counts read the queue's
    /// partial indexes, or ranges of `jobs_by_workflow` down to the unfinished statuses (SQLite's choice): as
    /// much work as the queue holds, never the tenant's history.
    pub(crate) async fn queue_stats_of(&self, tenant: Option<TenantId>) -> Result<QueueStats, StoreError> {
        let now = to_millis(Utc::now());
        let sql = queue_stats_sql(tenant.is_some());
        let mut query = sqlx::query(&sql).bind(now);
        if let Some(tenant) = tenant {
            query = query.bind(tenant.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut workflows: Vec<(Workflow, WorkflowQueue)> =
            Workflow::ALL.iter().map(|&w| (w, WorkflowQueue::default())).collect();
        for row in rows {
            let workflow: Workflow = parse_stored("workflow", &row.try_get::<String, _>("workflow")?)?;
            let Some((_, queue)) = workflows.iter_mut().find(|(w, _)| *w == workflow) else { continue };
            let count = |column: &str| -> Result<u64, StoreError> {
                // SUM is NULL over no row on some backends; a group always has one, but read it safely.
                Ok(row.try_get::<Option<i64>, _>(column)?.unwrap_or(0).max(0) as u64)
            };
            let state: String = row.try_get("state")?;
            if state == "running" {
                queue.running = count("n")?;
            } else {
                let ready = count("ready")?;
                queue.ready = ready;
                queue.scheduled = count("n")?.saturating_sub(ready);
                let oldest: Option<i64> = row.try_get("oldest")?;
                // The earliest `run_at` of a group with a ready job is that of its oldest ready job.
                queue.oldest_ready_ms = match oldest {
                    Some(oldest) if ready > 0 => now.saturating_sub(oldest).max(0) as u64,
                    _ => 0,
                };
            }
        }
        Ok(QueueStats { workflows })
    }

    /// The database's plans for [`Store::queue_stats`]'s statement, one line per step, then `--`, then the
    /// same for one tenant's (the default tenant's), so a test can check that they read only the queue's
    /// indexes and never the whole table or the tenant's history.
    #[doc(hidden)]
    pub async fn explain_queue_stats(&self) -> Result<String, StoreError> {
        let mut out = String::new();
        let sql = format!("{}{}", self.explain_prefix(), queue_stats_sql(false));
        self.append_plan(sqlx::query(&sql).bind(0_i64), &mut out).await?;
        let sql = format!("{}{}", self.explain_prefix(), queue_stats_sql(true));
        self.append_plan(sqlx::query(&sql).bind(0_i64).bind(TenantId::DEFAULT.to_string()), &mut out).await?;
        Ok(out)
    }
}
