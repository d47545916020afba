//! Artifacts: the files a job's program wrote (a `task.run`'s CSV), kept with the job and gone with it (the
//! rows cascade when retention prunes the job). The attempt that made them stores them while it holds the
//! job's lease, replacing what an earlier attempt stored, in one transaction.

use chrono::Utc;
use nova_core::{Artifact, AttemptToken, JobId, Sha256Hex};
use sqlx::Row;

use crate::tenant::TenantStore;
use crate::{from_millis, to_millis, BlobStore, Store, StoreError};

/// A file to keep as an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArtifact {
    pub name: String,
    pub content_type: String,
    pub contents: Vec<u8>,
}

impl Store {
    /// Replaces the artifacts of `job` with `files`, while `token`'s attempt holds the job's lease
    /// ([`StoreError::LeaseLost`] otherwise, and nothing changes).
    pub async fn put_artifacts(
        &self,
        job: JobId,
        token: AttemptToken,
        files: &[NewArtifact],
    ) -> Result<Vec<Artifact>, StoreError> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        // The fenced write first: a SQLite transaction that reads before it writes cannot be upgraded once
        // another connection has written.
        let held =
            sqlx::query("UPDATE jobs SET updated_at = $1 WHERE id = $2 AND lease_token = $3 AND status = 'running'")
                .bind(to_millis(now))
                .bind(job.to_string())
                .bind(token.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if held == 0 {
            return Err(StoreError::LeaseLost);
        }
        sqlx::query("DELETE FROM job_artifacts WHERE job_id = $1").bind(job.to_string()).execute(&mut *tx).await?;
        let mut stored = Vec::with_capacity(files.len());
        for file in files {
            let artifact = Artifact {
                name: file.name.clone(),
                content_type: file.content_type.clone(),
                size: file.contents.len() as u64,
                sha256: BlobStore::digest(&file.contents),
                created_at: from_millis(to_millis(now))?,
            };
            sqlx::query(
                "INSERT INTO job_artifacts (job_id, name, content_type, size, sha256, content, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(job.to_string())
            .bind(&artifact.name)
            .bind(&artifact.content_type)
            .bind(i64::try_from(artifact.size).unwrap_or(i64::MAX))
            .bind(artifact.sha256.as_str())
            .bind(&file.contents)
            .bind(to_millis(now))
            .execute(&mut *tx)
            .await?;
            stored.push(artifact);
        }
        tx.commit().await?;
        Ok(stored)
    }
}

impl TenantStore {
    /// The artifacts of a job of this tenant, by name; `None` for a job it does not own.
    pub async fn list_artifacts(&self, job: JobId) -> Result<Option<Vec<Artifact>>, StoreError> {
        if !self.owns_job(job).await? {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT name, content_type, size, sha256, created_at FROM job_artifacts WHERE job_id = $1 ORDER BY name",
        )
        .bind(job.to_string())
        .fetch_all(&self.store.pool)
        .await?;
        rows.iter().map(artifact_from_row).collect::<Result<Vec<_>, _>>().map(Some)
    }

    /// One artifact of a job of this tenant, with its bytes.
    pub async fn artifact(&self, job: JobId, name: &str) -> Result<Option<(Artifact, Vec<u8>)>, StoreError> {
        if !self.owns_job(job).await? {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT name, content_type, size, sha256, created_at, content FROM job_artifacts
             WHERE job_id = $1 AND name = $2",
        )
        .bind(job.to_string())
        .bind(name)
        .fetch_optional(&self.store.pool)
        .await?;
        row.map(|row| Ok((artifact_from_row(&row)?, row.try_get("content")?))).transpose()
    }
}

fn artifact_from_row(row: &sqlx::any::AnyRow) -> Result<Artifact, StoreError> {
    let sha256: String = row.try_get("sha256")?;
    Ok(Artifact {
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
        size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
        sha256: Sha256Hex::try_from(sha256).map_err(StoreError::Corrupt)?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}
