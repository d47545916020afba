//! Webhooks: the outbox of job events sent to the URL a job named.
//!
//! A job's webhook is written with the job (`job_webhooks`). Its events reach the outbox
//! (`webhook_deliveries`) through [`Store::fill_outbox`], which turns the events of active webhooks past
//! their `last_seq` into messages, one per `(job, event)`, in one write transaction: the event log is
//! durable, so nothing a job did is lost between its event and its message, and two processes filling the
//! outbox at once write each message once (the unique `(job_id, seq)`). Delivery is at least once: a
//! message is claimed for a lease ([`Store::claim_deliveries`]); a sender that dies leaves it to be claimed
//! again when the lease ends, and receivers deduplicate by the message id (`webhook-id`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use nova_core::{BatchId, JobId, MessageId, TenantId};
use sqlx::Row;

use crate::{from_millis, parse_stored, to_millis, Dialect, Page, Store, StoreError, MAX_PAGE_SIZE};

/// The events of a job, as webhook event types (`job.` and the event's kind).
pub const EVENT_TYPES: [&str; 10] = [
    "job.queued",
    "job.started",
    "job.progress",
    "job.retrying",
    "job.lease_expired",
    "job.released",
    "job.cancel_requested",
    "job.succeeded",
    "job.failed",
    "job.canceled",
];

/// The event types a webhook gets when it names none: the job's end.
pub const DEFAULT_EVENT_TYPES: [&str; 3] = ["job.succeeded", "job.failed", "job.canceled"];

/// A job's webhook, given at submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobWebhook {
    pub url: String,
    /// Event types from [`EVENT_TYPES`].
    pub events: Vec<String>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Retried for the whole retry window without success; sent again only when resent.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// One message of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The `webhook-id` header, the same on every attempt.
    pub id: MessageId,
    pub tenant: TenantId,
    /// The job whose event this message carries; `None` for a batch's message.
    pub job_id: Option<JobId>,
    /// The batch whose `batch.completed` this message is (see [`crate::batches`]); `None` for a job's.
    pub batch_id: Option<BatchId>,
    /// The number of the job's event this message carries (0 for a batch's).
    pub seq: u64,
    pub event_type: String,
    pub url: String,
    /// The body sent, as sent.
    pub payload: String,
    pub status: DeliveryStatus,
    /// Attempts made (or started) since the message was made or last resent.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// The HTTP status of the last answer, if one came.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Retries stop when the retry window that started here ends.
    pub window_start: DateTime<Utc>,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Anything else: another status, a refused address, a timeout.
    Failed { status: Option<u16>, error: String },
}

impl Store {
    /// This tenant's webhook signing secret, made now (by `make`) if it has none. Two processes making one
    /// at once agree on the first one stored.
    pub async fn webhook_secret(&self, tenant: TenantId, make: impl FnOnce() -> String) -> Result<String, StoreError> {
        if let Some(secret) = self.stored_webhook_secret(tenant).await? {
            return Ok(secret);
        }
        {
            let _turn = self.write_turn().await;
            sqlx::query(
                "INSERT INTO webhook_secrets (tenant_id, secret, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id) DO NOTHING",
            )
            .bind(tenant.to_string())
            .bind(make())
            .bind(to_millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        }
        self.stored_webhook_secret(tenant)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a webhook secret vanished as it was made".into()))
    }

    async fn stored_webhook_secret(&self, tenant: TenantId) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT secret FROM webhook_secrets WHERE tenant_id = $1")
            .bind(tenant.to_string())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Moves the events of active webhooks into the outbox, at most `limit` events per call; returns how
    /// many messages were made. A webhook stops being active with its job's final event.
    pub async fn fill_outbox(&self, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT w.job_id, w.tenant_id, w.url, w.events, e.seq, e.at, e.kind, e.data, j.workflow
             FROM job_webhooks w
             JOIN job_events e ON e.job_id = w.job_id AND e.seq > w.last_seq
             JOIN jobs j ON j.id = w.job_id
             WHERE w.active = 1
             ORDER BY w.job_id, e.seq
             LIMIT $1",
        )
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        let now = to_millis(Utc::now());
        let mut made = 0;
        let mut advanced: Vec<(String, i64, bool)> = Vec::new();
        for row in &rows {
            let job: String = row.try_get("job_id")?;
            let seq: i64 = row.try_get("seq")?;
            let kind: String = row.try_get("kind")?;
            let event_type = format!("job.{kind}");
            let wanted: Vec<String> = serde_json::from_str(&row.try_get::<String, _>("events")?)
                .map_err(|e| StoreError::Corrupt(format!("webhook events: {e}")))?;
            if wanted.contains(&event_type) {
                let at = from_millis(row.try_get("at")?)?;
                let data: Option<String> = row.try_get("data")?;
                let data = data
                    .map(|d| serde_json::from_str::<serde_json::Value>(&d))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("event data: {e}")))?;
                let workflow: String = row.try_get("workflow")?;
                // Standard Webhooks' payload shape: the type, when it happened, and the event itself.
                let payload = serde_json::json!({
                    "type": event_type,
                    "timestamp": at,
                    "data": {"job_id": job, "workflow": workflow, "seq": seq, "kind": kind, "at": at, "data": data},
                });
                made += sqlx::query(
                    "INSERT INTO webhook_deliveries (id, tenant_id, job_id, seq, event_type, url, payload,
                         next_attempt_at, window_start, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $8)
                     ON CONFLICT (job_id, seq) DO NOTHING",
                )
                .bind(MessageId::new().to_string())
                .bind(row.try_get::<String, _>("tenant_id")?)
                .bind(&job)
                .bind(seq)
                .bind(&event_type)
                .bind(row.try_get::<String, _>("url")?)
                .bind(payload.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            let last = matches!(kind.as_str(), "succeeded" | "failed" | "canceled");
            match advanced.last_mut() {
                Some((id, to, done)) if *id == job => {
                    *to = seq;
                    *done |= last;
                }
                _ => advanced.push((job, seq, last)),
            }
        }
        for (job, seq, done) in advanced {
            sqlx::query("UPDATE job_webhooks SET last_seq = $2, active = $3 WHERE job_id = $1 AND last_seq < $2")
                .bind(job)
                .bind(seq)
                .bind(if done { 0_i64 } else { 1 })
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(made)
    }

    /// Takes up to `limit` due messages for an attempt each, holding them for `lease` (a sender that dies
    /// leaves them to be taken again then). Each taken message counts one more attempt.
    pub async fn claim_deliveries(&self, limit: u32, lease: Duration) -> Result<Vec<Delivery>, StoreError> {
        let now = to_millis(Utc::now());
        let until = now.saturating_add(lease.as_millis().min(i64::MAX as u128) as i64);
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET next_attempt_at = $2, attempts = attempts + 1, updated_at = $1
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1
                          ORDER BY next_attempt_at LIMIT $3 {lock})
             RETURNING *"
        );
        let _turn = self.write_turn().await;
        let rows = sqlx::query(&sql).bind(now).bind(until).bind(i64::from(limit.max(1))).fetch_all(&self.pool).await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Records how the attempt of a message taken with `attempts` went: delivered, or due again after
    /// `retry_in`, or dead when that would pass the end of its retry window (`window_start + max_age`).
    /// An attempt whose message was taken again since (its lease ended) records nothing.
    pub async fn record_delivery(
        &self,
        delivery: &Delivery,
        result: &AttemptResult,
        retry_in: Duration,
        max_age: Duration,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let now_ms = to_millis(now);
        let _turn = self.write_turn().await;
        let query = match result {
            AttemptResult::Delivered { status } => sqlx::query(
                "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $3, updated_at = $3,
                     last_status = $4, last_error = NULL
                 WHERE id = $1 AND attempts = $2 AND status = 'pending'",
            )
            .bind(delivery.id.to_string())
            .bind(i64::from(delivery.attempts))
            .bind(now_ms)
            .bind(i64::from(*status)),
            AttemptResult::Failed { status, error } => {
                let next = now + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::MAX);
                let window_end =
                    delivery.window_start + chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
                let state = if next > window_end { "dead" } else { "pending" };
                let error: String = error.chars().take(500).collect();
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = $5, next_attempt_at = $4, updated_at = $3,
                         last_status = $6, last_error = $7
                     WHERE id = $1 AND attempts = $2 AND status = 'pending'",
                )
                .bind(delivery.id.to_string())
                .bind(i64::from(delivery.attempts))
                .bind(now_ms)
                .bind(to_millis(next))
                .bind(state)
                .bind(status.map(i64::from))
                .bind(error)
            }
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// Deletes delivered and dead messages last touched before `older_than` ago, at most `limit`.
    pub async fn purge_deliveries(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        let before = to_millis(Utc::now()) - older_than.as_millis().min(i64::MAX as u128) as i64;
        let _turn = self.write_turn().await;
        Ok(sqlx::query(
            "DELETE FROM webhook_deliveries WHERE id IN (
                 SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND updated_at <= $1 LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// A tenant's message.
    pub(crate) async fn delivery_of(&self, tenant: TenantId, id: MessageId) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1 AND tenant_id = $2")
            .bind(id.to_string())
            .bind(tenant.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// A tenant's messages, newest first, of one status or all, older than message `before` when given.
    pub(crate) async fn list_deliveries_of(
        &self,
        tenant: TenantId,
        status: Option<DeliveryStatus>,
        job: Option<JobId>,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Page<Delivery>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let mut sql = String::from("SELECT * FROM webhook_deliveries WHERE tenant_id = $2");
        let mut binds = vec![tenant.to_string()];
        if let Some(status) = status {
            binds.push(status.as_str().to_string());
            sql.push_str(&format!(" AND status = ${}", binds.len() + 1));
        }
        if let Some(job) = job {
            binds.push(job.to_string());
            sql.push_str(&format!(" AND job_id = ${}", binds.len() + 1));
        }
        if let Some(before) = before {
            binds.push(before.to_string());
            sql.push_str(&format!(" AND id < ${}", binds.len() + 1));
        }
        sql.push_str(" ORDER BY id DESC LIMIT $1");
        let mut query = sqlx::query(&sql).bind(i64::from(limit) + 1);
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let more = rows.len() > limit as usize;
        let items =
            rows.iter().take(limit as usize).map(delivery_from_row).collect::<Result<Vec<Delivery>, StoreError>>()?;
        Ok(Page { items, more })
    }

    /// Makes a tenant's delivered or dead message pending again, due now, with a fresh retry window.
    /// `Ok(None)`: no such message; `Err(DeliveryPending)`: it is still being retried.
    pub(crate) async fn resend_delivery_of(
        &self,
        tenant: TenantId,
        id: MessageId,
    ) -> Result<Option<Delivery>, StoreError> {
        let now = to_millis(Utc::now());
        let row = {
            let _turn = self.write_turn().await;
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3,
                     window_start = $3, updated_at = $3, delivered_at = NULL
                 WHERE id = $1 AND tenant_id = $2 AND status <> 'pending'
                 RETURNING *",
            )
            .bind(id.to_string())
            .bind(tenant.to_string())
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
        };
        match row {
            Some(row) => delivery_from_row(&row).map(Some),
            None => match self.delivery_of(tenant, id).await? {
                Some(_) => Err(StoreError::DeliveryPending),
                None => Ok(None),
            },
        }
    }
}

fn delivery_from_row(row: &sqlx::any::AnyRow) -> Result<Delivery, StoreError> {
    let status: String = row.try_get("status")?;
    let subject: String = row.try_get("job_id")?;
    let optional_time = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        row.try_get::<Option<i64>, _>(column)?.map(from_millis).transpose()
    };
    Ok(Delivery {
        id: parse_stored("message id", &row.try_get::<String, _>("id")?)?,
        tenant: parse_stored("tenant id", &row.try_get::<String, _>("tenant_id")?)?,
        // The column holds the batch's id for a batch's message.
        job_id: subject.starts_with(JobId::PREFIX).then(|| parse_stored("job id", &subject)).transpose()?,
        batch_id: subject.starts_with(BatchId::PREFIX).then(|| parse_stored("batch id", &subject)).transpose()?,
        seq: row.try_get::<i64, _>("seq")? as u64,
        event_type: row.try_get("event_type")?,
        url: row.try_get("url")?,
        payload: row.try_get("payload")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status `{status}`")))?,
        attempts: row.try_get::<i64, _>("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt_at: from_millis(row.try_get("next_attempt_at")?)?,
        last_status: row.try_get::<Option<i64>, _>("last_status")?.map(|s| s.clamp(0, 999) as u16),
        last_error: row.try_get("last_error")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        delivered_at: optional_time("delivered_at")?,
        window_start: from_millis(row.try_get("window_start")?)?,
    })
}
