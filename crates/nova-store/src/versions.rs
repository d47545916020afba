//! Versions of a job's result: the corrections people store. Version 1 is the job's own `result` column,
//! never changed; versions 2, 3, ... live in `result_versions` (migration 0015) and go with the job when
//! retention prunes it. Storing one marks the job `reviewed`.

use std::collections::HashMap;

use chrono::Utc;
use nova_core::correction::{FieldChange, ResultVersion};
use nova_core::{JobId, ReviewState};
use sqlx::Row;

use crate::jobs::{json_array, json_in};
use crate::tenant::TenantStore;
use crate::{from_millis, parse_stored, to_millis, StoreError};

/// A version to store: see [`TenantStore::add_result_version`].
#[derive(Debug, Clone)]
pub struct NewResultVersion {
    /// The version it corrects, which must be the latest; the new one is the next. Storing fails with
    /// [`StoreError::VersionConflict`] when `base` is not the latest (someone stored another since).
    pub base: u32,
    pub result: serde_json::Value,
    pub author: String,
    pub note: Option<String>,
    pub changes: Vec<FieldChange>,
}

impl TenantStore {
    /// The latest version of a job's result and its number (1 while nobody stored one); `None` for a job this
    /// tenant does not own or without a result.
    pub async fn latest_result(&self, job: JobId) -> Result<Option<(u32, serde_json::Value)>, StoreError> {
        Ok(self.latest_results(&[job]).await?.remove(&job))
    }

    /// The latest version of each of these jobs' results and its number, in one read of each table, for jobs
    /// of this tenant that have a result; the others are absent from the map.
    pub async fn latest_results(&self, jobs: &[JobId]) -> Result<HashMap<JobId, (u32, serde_json::Value)>, StoreError> {
        let mut latest = HashMap::with_capacity(jobs.len());
        if jobs.is_empty() {
            return Ok(latest);
        }
        let dialect = self.store.dialect;
        let ids = json_array(jobs.iter().map(|id| serde_json::json!({ "id": id.to_string() })));
        let owned = format!(
            "SELECT id, result FROM jobs WHERE tenant_id = $2 AND result IS NOT NULL AND {}",
            json_in(dialect, "id", 1)
        );
        let rows = sqlx::query(&owned).bind(&ids).bind(self.id().to_string()).fetch_all(&self.store.pool).await?;
        for row in &rows {
            let id: JobId = parse_stored("job id", &row.try_get::<String, _>("id")?)?;
            latest.insert(id, (1, result_of(row)?));
        }
        // Stored versions, of the jobs found above only (the tenant's), the highest of each.
        let mine = json_array(latest.keys().map(|id| serde_json::json!({ "job_id": id.to_string() })));
        let versions = format!(
            "SELECT job_id, version, result FROM result_versions v
             WHERE {} AND version = (SELECT MAX(w.version) FROM result_versions w WHERE w.job_id = v.job_id)",
            json_in(dialect, "job_id", 1)
        );
        for row in sqlx::query(&versions).bind(&mine).fetch_all(&self.store.pool).await? {
            let id: JobId = parse_stored("job id", &row.try_get::<String, _>("job_id")?)?;
            latest.insert(id, (version_of(&row)?, result_of(&row)?));
        }
        Ok(latest)
    }

    /// Version `version` of a job's result; `None` when there is none (or the job is not this tenant's).
    pub async fn result_version(&self, job: JobId, version: u32) -> Result<Option<serde_json::Value>, StoreError> {
        if !self.owns_job(job).await? {
            return Ok(None);
        }
        if version == 1 {
            return self.store.job_result(job).await;
        }
        let row = sqlx::query("SELECT result FROM result_versions WHERE job_id = $1 AND version = $2")
            .bind(job.to_string())
            .bind(i64::from(version))
            .fetch_optional(&self.store.pool)
            .await?;
        row.as_ref().map(result_of).transpose()
    }

    /// The stored versions of a job's result (2 onwards, oldest first), without the results themselves;
    /// `None` for a job this tenant does not own.
    pub async fn result_versions(&self, job: JobId) -> Result<Option<Vec<ResultVersion>>, StoreError> {
        if !self.owns_job(job).await? {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT version, author, note, changes, created_at FROM result_versions WHERE job_id = $1 ORDER BY version",
        )
        .bind(job.to_string())
        .fetch_all(&self.store.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let changes: String = row.try_get("changes")?;
                Ok(ResultVersion {
                    version: version_of(row)?,
                    author: row.try_get("author")?,
                    created_at: from_millis(row.try_get("created_at")?)?,
                    note: row.try_get("note")?,
                    changes: serde_json::from_str(&changes)
                        .map_err(|e| StoreError::Corrupt(format!("result version changes: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map(Some)
    }

    /// Stores the version after `new.base` of a job's result and marks the job `reviewed`, in one
    /// transaction. `None` for a job this tenant does not own.
    pub async fn add_result_version(
        &self,
        job: JobId,
        new: NewResultVersion,
    ) -> Result<Option<ResultVersion>, StoreError> {
        if !self.owns_job(job).await? {
            return Ok(None);
        }
        let now = to_millis(Utc::now());
        let version = new.base.checked_add(1).ok_or(StoreError::VersionConflict(new.base))?;
        let changes = serde_json::to_string(&new.changes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.store.begin_write().await?;
        // The write that may conflict first: a SQLite transaction that reads before it writes cannot be
        // upgraded once another connection has written.
        let inserted = sqlx::query(
            "INSERT INTO result_versions (job_id, version, result, author, note, changes, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7
             WHERE NOT EXISTS (SELECT 1 FROM result_versions WHERE job_id = $1 AND version >= $2)
               AND ($2 = 2 OR EXISTS (SELECT 1 FROM result_versions WHERE job_id = $1 AND version = $2 - 1))",
        )
        .bind(job.to_string())
        .bind(i64::from(version))
        .bind(new.result.to_string())
        .bind(&new.author)
        .bind(&new.note)
        .bind(changes)
        .bind(now)
        .execute(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(done) => done.rows_affected(),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => 0,
            Err(e) => return Err(e.into()),
        };
        if inserted == 0 {
            return Err(StoreError::VersionConflict(version));
        }
        sqlx::query("UPDATE jobs SET review = $1, updated_at = $2 WHERE id = $3")
            .bind(ReviewState::Reviewed.as_str())
            .bind(now)
            .bind(job.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(ResultVersion {
            version,
            author: new.author,
            created_at: from_millis(now)?,
            note: new.note,
            changes: new.changes,
        }))
    }
}

fn version_of(row: &sqlx::any::AnyRow) -> Result<u32, StoreError> {
    let version: i64 = row.try_get("version")?;
    u32::try_from(version).map_err(|_| StoreError::Corrupt(format!("result version {version}")))
}

fn result_of(row: &sqlx::any::AnyRow) -> Result<serde_json::Value, StoreError> {
    let text: String = row.try_get("result")?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("result version: {e}")))
}
