//! Programs a model wrote for one document layout: the program cache of the AI path.
//!
//! A program is stored once it passed its checks, found again by its layout (a key and a set of label
//! words; the caller compares labels), counted on every run, and retired after failing too often in a row.

use chrono::{DateTime, Utc};
use nova_core::{ProgramId, TenantId};
use sqlx::Row;

use crate::{from_millis, parse_stored, to_millis, Page, Store, StoreError, TenantStore};

/// The scope a tenant's programs are stored and looked up under: a program learned on one tenant's documents
/// is never run on, listed to or deleted by another.
pub fn program_scope(tenant: TenantId) -> String {
    tenant.to_string()
}

/// A program to keep.
#[derive(Debug, Clone)]
pub struct NewProgram {
    /// The tenant it was learned for ([`program_scope`]); programs never cross scopes.
    pub scope: String,
    /// What it does, such as `invoice.extract`.
    pub kind: String,
    /// The layout's key (the seller's VAT id, or `novat`).
    pub layout_key: String,
    /// The layout's label words, space-separated.
    pub labels: String,
    pub code: String,
    /// The model that wrote it.
    pub model: Option<String>,
}

/// A stored program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProgram {
    pub id: ProgramId,
    pub scope: String,
    pub kind: String,
    pub layout_key: String,
    pub labels: String,
    pub code: String,
    pub model: Option<String>,
    /// Retired programs are never run again.
    pub retired: bool,
    /// Runs whose output passed the checks.
    pub successes: i64,
    /// Failed runs since the last success.
    pub failures: i64,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Programs of one layout key read at most, newest first.
pub const MAX_LAYOUT_CANDIDATES: i64 = 50;

/// The tenant's own programs: the API's view of the program cache.
impl TenantStore {
    /// This tenant's programs newest first; see [`Store::list_programs`].
    pub async fn list_programs(
        &self,
        limit: u32,
        before: Option<ProgramId>,
    ) -> Result<Page<StoredProgram>, StoreError> {
        self.store.list_programs(&program_scope(self.id()), limit, before).await
    }

    /// One of this tenant's programs; `None` for another tenant's.
    pub async fn get_program(&self, id: ProgramId) -> Result<Option<StoredProgram>, StoreError> {
        let found = self.store.get_program(id).await?;
        Ok(found.filter(|p| p.scope == program_scope(self.id())))
    }

    /// Retires one of this tenant's programs; see [`Store::retire_program`].
    pub async fn retire_program(&self, id: ProgramId) -> Result<Option<StoredProgram>, StoreError> {
        self.store.retire_program(&program_scope(self.id()), id).await
    }

    /// Deletes one of this tenant's programs; see [`Store::delete_program`].
    pub async fn delete_program(&self, id: ProgramId) -> Result<bool, StoreError> {
        self.store.delete_program(&program_scope(self.id()), id).await
    }
}

impl Store {
    pub async fn insert_program(&self, program: NewProgram) -> Result<StoredProgram, StoreError> {
        let id = ProgramId::new();
        let turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO programs (id, scope, kind, layout_key, labels, code, model, status, successes, failures, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 1, 0, $8)",
        )
        .bind(id.to_string())
        .bind(&program.scope)
        .bind(&program.kind)
        .bind(&program.layout_key)
        .bind(&program.labels)
        .bind(&program.code)
        .bind(&program.model)
        .bind(to_millis(Utc::now()))
        .execute(&self.pool)
        .await?;
        drop(turn);
        self.get_program(id).await?.ok_or_else(|| StoreError::Corrupt(format!("program {id} vanished")))
    }

    /// The active programs of a layout key, newest first (at most [`MAX_LAYOUT_CANDIDATES`]).
    pub async fn active_programs(
        &self,
        scope: &str,
        kind: &str,
        layout_key: &str,
    ) -> Result<Vec<StoredProgram>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM programs WHERE scope = $1 AND kind = $2 AND layout_key = $3 AND status = 'active'
             ORDER BY id DESC LIMIT $4",
        )
        .bind(scope)
        .bind(kind)
        .bind(layout_key)
        .bind(MAX_LAYOUT_CANDIDATES)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(program_from_row).collect()
    }

    /// Counts a run of `id`. A failure that makes `retire_after` in a row retires the program; returns
    /// whether it is retired now.
    pub async fn record_program_run(&self, id: ProgramId, passed: bool, retire_after: u32) -> Result<bool, StoreError> {
        let now = to_millis(Utc::now());
        let turn = self.write_turn().await;
        let statement = if passed {
            "UPDATE programs SET successes = successes + 1, failures = 0, last_used_at = $2 WHERE id = $1"
        } else {
            "UPDATE programs SET failures = failures + 1, last_used_at = $2,
                 status = CASE WHEN failures + 1 >= $3 THEN 'retired' ELSE status END
             WHERE id = $1"
        };
        let mut query = sqlx::query(statement).bind(id.to_string()).bind(now);
        if !passed {
            query = query.bind(i64::from(retire_after));
        }
        query.execute(&self.pool).await?;
        drop(turn);
        Ok(self.get_program(id).await?.is_some_and(|p| p.retired))
    }

    pub async fn get_program(&self, id: ProgramId) -> Result<Option<StoredProgram>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM programs WHERE id = $1").bind(id.to_string()).fetch_optional(&self.pool).await?;
        row.as_ref().map(program_from_row).transpose()
    }

    /// Programs of `scope` newest first, a page of `limit` at a time, older than `before` when given.
    pub async fn list_programs(
        &self,
        scope: &str,
        limit: u32,
        before: Option<ProgramId>,
    ) -> Result<Page<StoredProgram>, StoreError> {
        // Ids are UUIDv7 behind one prefix, so their text order is their creation order; `~` sorts after
        // every hex digit.
        let before = before.map_or_else(|| format!("{}~", ProgramId::PREFIX), |id| id.to_string());
        let rows = sqlx::query("SELECT * FROM programs WHERE scope = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            .bind(scope)
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items = rows.iter().map(program_from_row).collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(Page { items, more })
    }

    /// Retires a program of `scope` by hand: it stays listed but is no longer run, as after too many failures.
    /// The program as it is now; `None` when `scope` has no such program.
    pub async fn retire_program(&self, scope: &str, id: ProgramId) -> Result<Option<StoredProgram>, StoreError> {
        let turn = self.write_turn().await;
        sqlx::query("UPDATE programs SET status = 'retired' WHERE id = $1 AND scope = $2")
            .bind(id.to_string())
            .bind(scope)
            .execute(&self.pool)
            .await?;
        drop(turn);
        Ok(self.get_program(id).await?.filter(|p| p.scope == scope))
    }

    /// Deletes a program; whether it existed.
    pub async fn delete_program(&self, scope: &str, id: ProgramId) -> Result<bool, StoreError> {
        let turn = self.write_turn().await;
        let deleted = sqlx::query("DELETE FROM programs WHERE id = $1 AND scope = $2")
            .bind(id.to_string())
            .bind(scope)
            .execute(&self.pool)
            .await?
            .rows_affected();
        drop(turn);
        Ok(deleted == 1)
    }
}

fn program_from_row(row: &sqlx::any::AnyRow) -> Result<StoredProgram, StoreError> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let retired = match status.as_str() {
        "active" => false,
        "retired" => true,
        other => return Err(StoreError::Corrupt(format!("program status `{other}`"))),
    };
    Ok(StoredProgram {
        id: parse_stored("program id", &id)?,
        scope: row.try_get("scope")?,
        kind: row.try_get("kind")?,
        layout_key: row.try_get("layout_key")?,
        labels: row.try_get("labels")?,
        code: row.try_get("code")?,
        model: row.try_get("model")?,
        retired,
        successes: row.try_get("successes")?,
        failures: row.try_get("failures")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(from_millis).transpose()?,
    })
}
