//! Schedules (migration 0018): each tenant's cron schedules, and the scheduler's reads and writes. What a
//! due schedule enqueues, and under which key, is the application layer's (`nova_app::schedules`); the
//! store keeps the rows and moves a schedule's `next_run_at` on only from the value the caller read
//! (compare-and-set), so two processes that fire the same schedule move it once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_core::{CronSchedule, JobId, MissedPolicy, Schedule, ScheduleId, TenantId, Workflow};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{from_millis, parse_stored, to_millis, Store, StoreError, TenantStore};

/// Schedules one tenant may hold.
pub const MAX_SCHEDULES_PER_TENANT: i64 = 100;

/// A schedule to store.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub name: Option<String>,
    pub cron: String,
    pub timezone: String,
    pub workflow: Workflow,
    pub input: serde_json::Value,
    pub priority: i64,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub missed: MissedPolicy,
    pub paused: bool,
}

impl TenantStore {
    /// Stores a schedule whose first time is the one after now; [`StoreError::LimitReached`] when the tenant
    /// holds [`MAX_SCHEDULES_PER_TENANT`] already.
    pub async fn create_schedule(&self, new: NewSchedule, cron: &CronSchedule) -> Result<Schedule, StoreError> {
        let now = Utc::now();
        let next = cron.next_after(now).ok_or_else(|| StoreError::Corrupt("a schedule with no next time".into()))?;
        let id = ScheduleId::new();
        let mut tx = self.store.begin_write().await?;
        // The insert comes first (a SQLite write transaction must start with a write); the count after it
        // includes the new row.
        sqlx::query(
            "INSERT INTO schedules (id, tenant_id, name, cron, timezone, workflow, input, priority, max_attempts,
                                    timeout_ms, missed, paused, next_run_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        )
        .bind(id.to_string())
        .bind(self.id().to_string())
        .bind(&new.name)
        .bind(&new.cron)
        .bind(&new.timezone)
        .bind(new.workflow.as_str())
        .bind(new.input.to_string())
        .bind(new.priority)
        .bind(i64::from(new.max_attempts))
        .bind(new.timeout.as_millis().min(i64::MAX as u128) as i64)
        .bind(new.missed.as_str())
        .bind(i64::from(new.paused))
        .bind(to_millis(next))
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schedules WHERE tenant_id = $1")
            .bind(self.id().to_string())
            .fetch_one(&mut *tx)
            .await?;
        if count > MAX_SCHEDULES_PER_TENANT {
            // Dropped uncommitted, the transaction rolls the insert back.
            return Err(StoreError::LimitReached(MAX_SCHEDULES_PER_TENANT as u64));
        }
        tx.commit().await?;
        self.get_schedule(id).await?.ok_or_else(|| StoreError::Corrupt("a schedule vanished".into()))
    }

    pub async fn get_schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query("SELECT * FROM schedules WHERE id = $1 AND tenant_id = $2")
            .bind(id.to_string())
            .bind(self.id().to_string())
            .fetch_optional(&self.store.pool)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    /// The tenant's schedules, newest first (at most [`MAX_SCHEDULES_PER_TENANT`]).
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let rows = sqlx::query("SELECT * FROM schedules WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(self.id().to_string())
            .bind(MAX_SCHEDULES_PER_TENANT)
            .fetch_all(&self.store.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Pauses or resumes a schedule; a resumed one goes on from `next` (its first time after now, which the
    /// caller computes from the schedule's expression). `None` for an unknown schedule.
    pub async fn set_schedule_paused(
        &self,
        id: ScheduleId,
        paused: bool,
        next: Option<DateTime<Utc>>,
    ) -> Result<Option<Schedule>, StoreError> {
        let now = to_millis(Utc::now());
        let _turn = self.store.write_turn().await;
        let changed = sqlx::query(
            "UPDATE schedules SET paused = $1, next_run_at = COALESCE($2, next_run_at), updated_at = $3
             WHERE id = $4 AND tenant_id = $5",
        )
        .bind(i64::from(paused))
        .bind(next.map(to_millis))
        .bind(now)
        .bind(id.to_string())
        .bind(self.id().to_string())
        .execute(&self.store.pool)
        .await?
        .rows_affected();
        drop(_turn);
        if changed == 0 {
            return Ok(None);
        }
        self.get_schedule(id).await
    }

    /// Deletes a schedule (the jobs it enqueued stay); whether there was one.
    pub async fn delete_schedule(&self, id: ScheduleId) -> Result<bool, StoreError> {
        let _turn = self.store.write_turn().await;
        let deleted = sqlx::query("DELETE FROM schedules WHERE id = $1 AND tenant_id = $2")
            .bind(id.to_string())
            .bind(self.id().to_string())
            .execute(&self.store.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }
}

/// A due schedule as the scheduler reads it: the schedule and its owner.
#[derive(Debug, Clone)]
pub struct DueSchedule {
    pub tenant: TenantId,
    pub schedule: Schedule,
}

impl Store {
    /// Schedules not paused whose next time is at or before `now`, the most overdue first, at most `limit`:
    /// one range of `schedules_due`.
    pub async fn due_schedules(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<DueSchedule>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM schedules WHERE paused = 0 AND next_run_at <= $1 ORDER BY next_run_at LIMIT $2")
                .bind(to_millis(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                let tenant = parse_stored("tenant id", &row.try_get::<String, _>("tenant_id")?)?;
                Ok(DueSchedule { tenant, schedule: schedule_from_row(row)? })
            })
            .collect()
    }

    /// Moves schedule `id` on to `next`, if its next time is still `expected` (no other process moved it
    /// meanwhile) and it was not paused meanwhile, recording its last time and job; whether it moved.
    pub async fn advance_schedule(
        &self,
        id: ScheduleId,
        expected: DateTime<Utc>,
        next: DateTime<Utc>,
        last: Option<(DateTime<Utc>, JobId)>,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let moved = sqlx::query(
            "UPDATE schedules SET next_run_at = $1, last_run_at = COALESCE($2, last_run_at),
                 last_job_id = COALESCE($3, last_job_id), updated_at = $4
             WHERE id = $5 AND next_run_at = $6 AND paused = 0",
        )
        .bind(to_millis(next))
        .bind(last.map(|(at, _)| to_millis(at)))
        .bind(last.map(|(_, job)| job.to_string()))
        .bind(to_millis(Utc::now()))
        .bind(id.to_string())
        .bind(to_millis(expected))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(moved > 0)
    }
}

fn schedule_from_row(row: &AnyRow) -> Result<Schedule, StoreError> {
    let cron: String = row.try_get("cron")?;
    let timezone: String = row.try_get("timezone")?;
    let description = CronSchedule::parse(&cron, &timezone).map(|c| c.describe()).unwrap_or_default();
    let input: String = row.try_get("input")?;
    let last_job: Option<String> = row.try_get("last_job_id")?;
    Ok(Schedule {
        id: parse_stored("schedule id", &row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        description,
        cron,
        timezone,
        workflow: parse_stored("workflow", &row.try_get::<String, _>("workflow")?)?,
        input: serde_json::from_str(&input).map_err(|e| StoreError::Corrupt(format!("schedule input: {e}")))?,
        priority: row.try_get("priority")?,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        timeout_seconds: (row.try_get::<i64, _>("timeout_ms")? / 1000) as u64,
        missed: parse_stored("missed-time policy", &row.try_get::<String, _>("missed")?)?,
        paused: row.try_get::<i64, _>("paused")? != 0,
        next_run_at: from_millis(row.try_get("next_run_at")?)?,
        last_run_at: row.try_get::<Option<i64>, _>("last_run_at")?.map(from_millis).transpose()?,
        last_job_id: last_job.map(|j| parse_stored("job id", &j)).transpose()?,
        created_at: from_millis(row.try_get("created_at")?)?,
        updated_at: from_millis(row.try_get("updated_at")?)?,
    })
}
