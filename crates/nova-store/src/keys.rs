//! Tenants and their API keys.
//!
//! A key is 32 random bytes from the operating system, shown once as `nova_` and 64 hex digits, and stored
//! only as its SHA-256. A slow password hash (argon2, bcrypt) exists to make guessing a low-entropy secret
//! expensive; a 256-bit random key cannot be guessed, so one SHA-256 is as safe and lets a request find its
//! key through a unique index in one lookup. A stolen database gives hashes that open nothing.

use chrono::{DateTime, Utc};
use nova_core::{ApiKeyId, TenantId};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{from_millis, parse_stored, to_millis, Store, StoreError};

/// What every key starts with, so a leaked key is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "nova_";

/// Characters of a key kept in clear to recognise it in lists: the prefix and 8 hex digits.
const SHOWN: usize = KEY_PREFIX.len() + 8;

/// A key just made: the only time its secret exists outside the client.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub tenant_name: String,
    /// The key itself. Never stored, never logged.
    pub secret: String,
}

/// What [`Store::add_key`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddedKey {
    /// The key was not known; it is now.
    Added,
    /// The key was there already (another process added it, or an earlier start).
    Present,
    /// The key was there and has been revoked: it opens nothing, and adding it again does not change that.
    Revoked,
}

/// Whether `secret` has the form of a key given from outside ([`Store::add_key`]): `nova_` and 32 to 195
/// characters of `a-z`, `A-Z`, `0-9`, so at least 160 bits when they are random hex digits.
pub fn valid_given_key(secret: &str) -> bool {
    secret.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        (32..=200 - KEY_PREFIX.len()).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// A stored key, as `nova keys list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub tenant_name: String,
    /// The first characters of the key.
    pub shown: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Who a valid key speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub key: ApiKeyId,
    pub tenant: TenantId,
    /// The tenant's own request rate (`N/s,burst=M`), if it has one.
    pub rate_limit: Option<String>,
}

/// A tenant name: 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-`.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

impl Store {
    /// Makes a key for tenant `name`, creating the tenant if it is new. The name must pass
    /// [`valid_tenant_name`].
    pub async fn create_key(&self, name: &str) -> Result<NewKey, StoreError> {
        if !valid_tenant_name(name) {
            return Err(StoreError::InvalidTenantName(name.chars().take(80).collect()));
        }
        let tenant = self.ensure_tenant(name).await?;
        let secret = new_secret()?;
        let id = ApiKeyId::new();
        // 256 fresh random bits: no key has this hash already.
        self.insert_key(id, tenant, &secret).await?;
        Ok(NewKey { id, tenant, tenant_name: name.to_string(), secret })
    }

    /// Stores key `secret` (its hash and first characters) as `id` of `tenant`, unless a key with the same
    /// hash exists; whether it was stored.
    async fn insert_key(&self, id: ApiKeyId, tenant: TenantId, secret: &str) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(hash_key(secret))
        .bind(&secret[..SHOWN])
        .bind(to_millis(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds a key made elsewhere (a deployment's secret) for tenant `name`, creating the tenant if it is new;
    /// nothing changes when the key is known already, so every process given the same secret may call this
    /// at start. The secret must pass [`valid_given_key`]; only its hash is stored.
    pub async fn add_key(&self, name: &str, secret: &str) -> Result<(ApiKeyId, AddedKey), StoreError> {
        if !valid_given_key(secret) {
            return Err(StoreError::InvalidKey);
        }
        let tenant = self.ensure_tenant(name).await?;
        let added = self.insert_key(ApiKeyId::new(), tenant, secret).await?;
        let row = sqlx::query("SELECT id, revoked_at FROM api_keys WHERE hash = $1")
            .bind(hash_key(secret))
            .fetch_one(&self.pool)
            .await?;
        let id = parse_stored("key id", &row.try_get::<String, _>("id")?)?;
        let state = match (row.try_get::<Option<i64>, _>("revoked_at")?, added) {
            (Some(_), _) => AddedKey::Revoked,
            (None, true) => AddedKey::Added,
            (None, false) => AddedKey::Present,
        };
        Ok((id, state))
    }

    /// The id of tenant `name`, created if missing.
    pub async fn ensure_tenant(&self, name: &str) -> Result<TenantId, StoreError> {
        {
            let _turn = self.write_turn().await;
            sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(TenantId::new().to_string())
                .bind(name)
                .bind(to_millis(Utc::now()))
                .execute(&self.pool)
                .await?;
        }
        let id: String =
            sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        parse_stored("tenant id", &id)
    }

    /// Sets (or with `None` clears) tenant `name`'s own request rate; false when there is no such tenant.
    pub async fn set_tenant_rate_limit(&self, name: &str, rate: Option<&str>) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE tenants SET rate_limit = $1 WHERE name = $2")
            .bind(rate)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every key, newest first, revoked ones included.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.id, k.tenant_id, t.name, k.prefix, k.created_at, k.revoked_at
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id ORDER BY k.id DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyInfo {
                    id: parse_stored("key id", &row.try_get::<String, _>("id")?)?,
                    tenant: parse_stored("tenant id", &row.try_get::<String, _>("tenant_id")?)?,
                    tenant_name: row.try_get("name")?,
                    shown: row.try_get("prefix")?,
                    created_at: from_millis(row.try_get("created_at")?)?,
                    revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(from_millis).transpose()?,
                })
            })
            .collect()
    }

    /// Revokes key `id`: it opens nothing from the next request on. False when there is no such key or it
    /// was revoked already.
    pub async fn revoke_key(&self, id: ApiKeyId) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(to_millis(Utc::now()))
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether any key was ever made (revoked ones count: revoking every key must not open the server).
    pub async fn keys_exist(&self) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering;
        if self.keys_seen.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let found = self.any_key_stored().await?;
        if found {
            self.keys_seen.store(true, Ordering::Relaxed);
        }
        Ok(found)
    }

    /// The owner of `secret` when it is a key that was made here and not revoked: a lookup of the hash's
    /// unique index, every request (answered with other requests' lookups of the moment on a store made with
    /// [`Store::with_grouped_key_lookups`]), so a key made or revoked by another process counts at once.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<KeyOwner>, StoreError> {
        if !secret.starts_with(KEY_PREFIX) || secret.len() > 200 {
            return Ok(None);
        }
        self.key_owner(hash_key(secret)).await
    }
}

/// `nova_` and 64 hex digits of fresh randomness from the operating system.
fn new_secret() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    let mut secret = String::with_capacity(KEY_PREFIX.len() + 64);
    secret.push_str(KEY_PREFIX);
    for b in bytes {
        secret.push_str(&format!("{b:02x}"));
    }
    Ok(secret)
}

fn hash_key(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_and_never_repeat() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert!(a.starts_with("nova_") && a.len() == 69, "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_key(&a).len(), 64);
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    #[test]
    fn tenant_names_are_checked() {
        for good in ["acme", "a", "acme-eu.prod_1"] {
            assert!(valid_tenant_name(good), "{good}");
        }
        for bad in ["", "Acme", "a b", "ünï", &"x".repeat(65)] {
            assert!(!valid_tenant_name(bad), "{bad}");
        }
    }
}
