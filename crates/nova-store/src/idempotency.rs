//! Idempotency records: the first answer to a POST with an `Idempotency-Key`, replayed to its repeats.
//!
//! A record is claimed before the request runs (`status_code` NULL: in flight) and filled with the answer
//! after it; both are single statements on the primary key `(tenant_id, key)`, so two requests racing for
//! one key cannot both run. Records live `ttl` (24 hours in the API); an expired record, or one left in
//! flight by a server that died, is taken over by the next request with its key, and
//! [`Store::purge_idempotency`] deletes expired ones.

use std::time::Duration;

use chrono::Utc;
use nova_core::TenantId;
use sqlx::Row;

use crate::{to_millis, Store, StoreError, TenantStore};

/// How long a request may stay in flight before its key is taken over: longer than any request runs, so
/// only a server that died mid-request leaves one this old.
const STALE_IN_FLIGHT: Duration = Duration::from_secs(10 * 60);

/// An answer kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// What [`Store::begin_idempotent`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotent {
    /// The key is new (or its record expired): run the request, then [`Store::finish_idempotent`] or
    /// [`Store::abandon_idempotent`].
    Run,
    /// The key answered the same request before: send this again.
    Replay(StoredResponse),
    /// The key's first request has not answered yet.
    InFlight,
    /// The key was used for another request (another method, path or body).
    Mismatch,
}

/// The tenant's own keys: what the API's idempotency layer uses.
impl TenantStore {
    /// See [`Store::begin_idempotent`].
    pub async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &str,
        ttl: Duration,
    ) -> Result<Idempotent, StoreError> {
        self.store.begin_idempotent(self.id(), key, fingerprint, ttl).await
    }

    /// See [`Store::finish_idempotent`].
    pub async fn finish_idempotent(&self, key: &str, response: &StoredResponse) -> Result<(), StoreError> {
        self.store.finish_idempotent(self.id(), key, response).await
    }

    /// See [`Store::abandon_idempotent`].
    pub async fn abandon_idempotent(&self, key: &str) -> Result<(), StoreError> {
        self.store.abandon_idempotent(self.id(), key).await
    }
}

impl Store {
    /// Claims `key` of `tenant` for a request whose method, path and body hash to `fingerprint`, or says why
    /// the request must not run.
    pub async fn begin_idempotent(
        &self,
        tenant: TenantId,
        key: &str,
        fingerprint: &str,
        ttl: Duration,
    ) -> Result<Idempotent, StoreError> {
        let now = to_millis(Utc::now());
        let expires = now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
        // The record can vanish between the statements (purged); a second round then claims it.
        for _ in 0..3 {
            {
                let _turn = self.write_turn().await;
                let claimed = sqlx::query(
                    "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, key) DO NOTHING",
                )
                .bind(tenant.to_string())
                .bind(key)
                .bind(fingerprint)
                .bind(now)
                .bind(expires)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1;
                if claimed {
                    return Ok(Idempotent::Run);
                }
                let taken_over = sqlx::query(
                    "UPDATE idempotency_keys SET fingerprint = $3, status_code = NULL, content_type = NULL,
                         body = NULL, created_at = $4, expires_at = $5
                     WHERE tenant_id = $1 AND key = $2
                       AND (expires_at <= $4 OR (status_code IS NULL AND created_at <= $6))",
                )
                .bind(tenant.to_string())
                .bind(key)
                .bind(fingerprint)
                .bind(now)
                .bind(expires)
                .bind(now - STALE_IN_FLIGHT.as_millis() as i64)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1;
                if taken_over {
                    return Ok(Idempotent::Run);
                }
            }
            let row = sqlx::query(
                "SELECT fingerprint, status_code, content_type, body FROM idempotency_keys
                 WHERE tenant_id = $1 AND key = $2",
            )
            .bind(tenant.to_string())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { continue };
            if row.try_get::<String, _>("fingerprint")? != fingerprint {
                return Ok(Idempotent::Mismatch);
            }
            let Some(status) = row.try_get::<Option<i64>, _>("status_code")? else { return Ok(Idempotent::InFlight) };
            return Ok(Idempotent::Replay(StoredResponse {
                status: u16::try_from(status).map_err(|_| StoreError::Corrupt(format!("status code {status}")))?,
                content_type: row.try_get("content_type")?,
                body: row.try_get::<Option<String>, _>("body")?.unwrap_or_default(),
            }));
        }
        Err(StoreError::Corrupt(format!("the idempotency record of key `{key}` keeps vanishing")))
    }

    /// Keeps `response` as the answer to `key`, for its repeats.
    pub async fn finish_idempotent(
        &self,
        tenant: TenantId,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE idempotency_keys SET status_code = $3, content_type = $4, body = $5
             WHERE tenant_id = $1 AND key = $2",
        )
        .bind(tenant.to_string())
        .bind(key)
        .bind(i64::from(response.status))
        .bind(&response.content_type)
        .bind(&response.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets `key` while its request is in flight (the request failed inside the server, or its client
    /// went away): the next request with the key runs afresh.
    pub async fn abandon_idempotent(&self, tenant: TenantId, key: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL")
            .bind(tenant.to_string())
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes expired records, at most `limit` of them (by `idempotency_keys_expiry`), so no statement holds
    /// the table for long; returns how many went.
    pub async fn purge_idempotency(&self, limit: u32) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE (tenant_id, key) IN (
                 SELECT tenant_id, key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(to_millis(Utc::now()))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
