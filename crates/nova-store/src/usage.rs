//! Usage: what each tenant's work used, summed per day (UTC) and workflow. Work adds to its day's row as it
//! happens ([`Store::record_usage`], one upsert), so the sums outlive the jobs, whose history is pruned.

use chrono::{DateTime, NaiveDate, Utc};
use nova_core::TenantId;
use sqlx::Row;

use crate::{Store, StoreError, TenantStore};

/// What one piece of work used (an attempt's model calls and sandbox runs, one execution).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub model_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The cost of the model calls in billionths of the price table's unit (0 when unpriced).
    pub cost_nanos: u64,
    pub sandbox_runs: u64,
    pub sandbox_cpu_ms: u64,
    pub sandbox_wall_ms: u64,
}

impl UsageDelta {
    /// One sandbox run that took `cpu` and `wall` time.
    pub fn sandbox_run(cpu: std::time::Duration, wall: std::time::Duration) -> Self {
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self { sandbox_runs: 1, sandbox_cpu_ms: millis(cpu), sandbox_wall_ms: millis(wall), ..Self::default() }
    }
}

/// One day's sums for one workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub day: NaiveDate,
    pub workflow: String,
    /// Pieces of work recorded (attempts, executions).
    pub runs: u64,
    pub usage: UsageDelta,
}

impl TenantStore {
    /// Adds `delta` to this tenant's row of the day of `at` for `workflow` (an execution's, say), counting one
    /// run.
    pub async fn record_usage(&self, workflow: &str, at: DateTime<Utc>, delta: UsageDelta) -> Result<(), StoreError> {
        self.store.record_usage(self.id(), workflow, at, delta).await
    }
}

impl Store {
    /// Adds `delta` to `tenant`'s row of the day of `at` for `workflow`, counting one run.
    pub async fn record_usage(
        &self,
        tenant: TenantId,
        workflow: &str,
        at: DateTime<Utc>,
        delta: UsageDelta,
    ) -> Result<(), StoreError> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO usage_daily (tenant_id, day, workflow, runs, model_calls, input_tokens, output_tokens,
                 cost_nanos, sandbox_runs, sandbox_cpu_ms, sandbox_wall_ms)
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (tenant_id, day, workflow) DO UPDATE SET
                 runs = usage_daily.runs + 1,
                 model_calls = usage_daily.model_calls + excluded.model_calls,
                 input_tokens = usage_daily.input_tokens + excluded.input_tokens,
                 output_tokens = usage_daily.output_tokens + excluded.output_tokens,
                 cost_nanos = usage_daily.cost_nanos + excluded.cost_nanos,
                 sandbox_runs = usage_daily.sandbox_runs + excluded.sandbox_runs,
                 sandbox_cpu_ms = usage_daily.sandbox_cpu_ms + excluded.sandbox_cpu_ms,
                 sandbox_wall_ms = usage_daily.sandbox_wall_ms + excluded.sandbox_wall_ms",
        )
        .bind(tenant.to_string())
        .bind(at.date_naive().to_string())
        .bind(workflow)
        .bind(n(delta.model_calls))
        .bind(n(delta.input_tokens))
        .bind(n(delta.output_tokens))
        .bind(n(delta.cost_nanos))
        .bind(n(delta.sandbox_runs))
        .bind(n(delta.sandbox_cpu_ms))
        .bind(n(delta.sandbox_wall_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `tenant`'s rows from day `from` to day `to` (both included), of one workflow when given, by day
    /// then workflow.
    pub(crate) async fn usage_of(
        &self,
        tenant: TenantId,
        from: NaiveDate,
        to: NaiveDate,
        workflow: Option<&str>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let filter = if workflow.is_some() { " AND workflow = $4" } else { "" };
        let sql = format!(
            "SELECT * FROM usage_daily WHERE tenant_id = $1 AND day >= $2 AND day <= $3{filter} ORDER BY day, workflow"
        );
        let mut query = sqlx::query(&sql).bind(tenant.to_string()).bind(from.to_string()).bind(to.to_string());
        if let Some(workflow) = workflow {
            query = query.bind(workflow.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let n = |column: &str| -> Result<u64, StoreError> { Ok(row.try_get::<i64, _>(column)?.max(0) as u64) };
                let day: String = row.try_get("day")?;
                Ok(UsageRow {
                    day: day.parse().map_err(|_| StoreError::Corrupt(format!("usage day `{day}`")))?,
                    workflow: row.try_get("workflow")?,
                    runs: n("runs")?,
                    usage: UsageDelta {
                        model_calls: n("model_calls")?,
                        input_tokens: n("input_tokens")?,
                        output_tokens: n("output_tokens")?,
                        cost_nanos: n("cost_nanos")?,
                        sandbox_runs: n("sandbox_runs")?,
                        sandbox_cpu_ms: n("sandbox_cpu_ms")?,
                        sandbox_wall_ms: n("sandbox_wall_ms")?,
                    },
                })
            })
            .collect()
    }
}
