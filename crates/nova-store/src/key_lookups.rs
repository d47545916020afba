//! Key lookups of concurrent requests, answered by one query for all of them.
//!
//! Every API request asks the store who its key belongs to (or, on a server without keys, whether a key
//! exists yet), and a query costs more in getting to the database and back (on SQLite, a hop to the
//! connection's thread and back) than in the lookup itself. A store made with
//! [`Store::with_grouped_key_lookups`] hands these lookups to one task, which answers every lookup that
//! arrived since its last query with one query. A lookup waits for a query that starts after it arrived, never
//! for an answer read before, so a key made or revoked in another process still counts from the next request.

use std::collections::HashMap;

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::jobs::{json_array, json_in};
use crate::{parse_stored, KeyOwner, Store, StoreError};

/// The most lookups one query answers.
const MAX_LOOKUPS: usize = 512;

/// The lookup task of a store made with [`Store::with_grouped_key_lookups`]; it ends with the last clone.
#[derive(Clone)]
pub(crate) struct KeyLookups {
    queue: mpsc::UnboundedSender<Lookup>,
}

enum Lookup {
    /// Whether any key exists (revoked ones count).
    Exists(oneshot::Sender<Result<bool, StoreError>>),
    /// Who the unrevoked key with this SHA-256 belongs to.
    Owner { hash: String, reply: oneshot::Sender<Result<Option<KeyOwner>, StoreError>> },
}

impl Store {
    /// The same store with its key lookups answered together, by a task on the current runtime (see the
    /// module's notes). The other clones of this store are unchanged.
    pub fn with_grouped_key_lookups(self) -> Store {
        let (queue, lookups) = mpsc::unbounded_channel();
        tokio::spawn(answer_lookups(Store { lookups: None, ..self.clone() }, lookups));
        Store { lookups: Some(KeyLookups { queue }), ..self }
    }

    /// Whether any key exists, asked of the database now.
    pub(crate) async fn any_key_stored(&self) -> Result<bool, StoreError> {
        if let Some(lookups) = &self.lookups {
            let (reply, answer) = oneshot::channel();
            if lookups.queue.send(Lookup::Exists(reply)).is_ok() {
                if let Ok(found) = answer.await {
                    return found;
                }
            }
            // The task is gone (its runtime is shutting down): a read may simply be made here.
        }
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM api_keys LIMIT 1").fetch_optional(&self.pool).await?;
        Ok(found.is_some())
    }

    /// The owner of the unrevoked key whose SHA-256 is `hash`.
    pub(crate) async fn key_owner(&self, hash: String) -> Result<Option<KeyOwner>, StoreError> {
        if let Some(lookups) = &self.lookups {
            let (reply, answer) = oneshot::channel();
            if let Err(mpsc::error::SendError(Lookup::Owner { hash, .. })) =
                lookups.queue.send(Lookup::Owner { hash, reply })
            {
                return Ok(self.key_owners(&[hash]).await?.into_values().next());
            }
            return answer.await.unwrap_or_else(|_| Err(StoreError::Corrupt("the key lookup task stopped".into())));
        }
        Ok(self.key_owners(&[hash]).await?.into_values().next())
    }

    /// The owners of the unrevoked keys among `hashes`, by hash, in one query.
    async fn key_owners(&self, hashes: &[String]) -> Result<HashMap<String, KeyOwner>, StoreError> {
        let batch = json_array(hashes.iter().map(|hash| serde_json::json!({"hash": hash})));
        let sql = format!(
            "SELECT k.hash, k.id, k.tenant_id, t.rate_limit FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.revoked_at IS NULL AND k.{}",
            json_in(self.dialect, "hash", 1)
        );
        let rows = sqlx::query(&sql).bind(batch).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let owner = KeyOwner {
                    key: parse_stored("key id", &row.try_get::<String, _>("id")?)?,
                    tenant: parse_stored("tenant id", &row.try_get::<String, _>("tenant_id")?)?,
                    rate_limit: row.try_get("rate_limit")?,
                };
                Ok((row.try_get("hash")?, owner))
            })
            .collect()
    }
}

/// The task: takes every lookup that has arrived (up to [`MAX_LOOKUPS`]) and answers them with at most two
/// queries, then starts again; ends when every sender is gone.
async fn answer_lookups(store: Store, mut queue: mpsc::UnboundedReceiver<Lookup>) {
    let mut arrived = Vec::with_capacity(MAX_LOOKUPS);
    while queue.recv_many(&mut arrived, MAX_LOOKUPS).await > 0 {
        let mut exists = Vec::new();
        let mut owners = Vec::new();
        for lookup in arrived.drain(..) {
            match lookup {
                Lookup::Exists(reply) => exists.push(reply),
                Lookup::Owner { hash, reply } => owners.push((hash, reply)),
            }
        }
        if !exists.is_empty() {
            // The task's own store has no task: this is the query itself.
            match store.any_key_stored().await {
                Ok(found) => {
                    for reply in exists {
                        let _ = reply.send(Ok(found));
                    }
                }
                Err(_) => {
                    for reply in exists {
                        let _ = reply.send(store.any_key_stored().await);
                    }
                }
            }
        }
        if !owners.is_empty() {
            let hashes: Vec<String> = owners.iter().map(|(hash, _)| hash.clone()).collect();
            match store.key_owners(&hashes).await {
                Ok(found) => {
                    for (hash, reply) in owners {
                        let _ = reply.send(Ok(found.get(&hash).cloned()));
                    }
                }
                // Each asked again on its own, so that each gets its own error.
                Err(_) => {
                    for (hash, reply) in owners {
                        let _ = reply.send(store.key_owners(&[hash]).await.map(|m| m.into_values().next()));
                    }
                }
            }
        }
    }
}
