//! Webhooks: the tenant's signing secret, and its messages (listed, shown, resent).

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use nova_core::{BatchId, JobId, MessageId};
use nova_store::{Delivery, DeliveryStatus, Page, StoreError};
use serde::{Deserialize, Serialize};

use super::pages::{self, PageBody};
use super::{parse_id, IdPath};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;
use nova_app::webhooks::new_secret;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/secret", get(secret))
        .route("/webhooks/deliveries", get(list))
        .route("/webhooks/deliveries/{id}", get(show))
        .route("/webhooks/deliveries/{id}/resend", post(resend))
}

/// A webhook message as the API shows it (its payload is what was sent; the tenant is the caller).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Delivery)]
struct DeliveryBody {
    #[schema(value_type = MessageId)]
    id: String,
    /// The job whose event this message carries; `null` for a batch's `batch.completed`.
    #[schema(value_type = Option<JobId>)]
    job_id: Option<String>,
    /// The batch of a `batch.completed` message.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BatchId>, required = false)]
    batch_id: Option<String>,
    /// The number of the job's event this message carries (0 for a batch's message).
    seq: u64,
    event_type: String,
    url: String,
    /// `pending` (being retried), `delivered` (a 2xx answer) or `dead` (retried through its window).
    #[schema(value_type = String, pattern = "^(pending|delivered|dead)$")]
    status: &'static str,
    /// Attempts made since the message was made or last resent.
    attempts: u32,
    next_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer, if one came.
    last_status: Option<u16>,
    /// Why the last attempt failed.
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        let pending = d.status == DeliveryStatus::Pending;
        Self {
            id: d.id.to_string(),
            job_id: d.job_id.map(|id| id.to_string()),
            batch_id: d.batch_id.map(|id| id.to_string()),
            seq: d.seq,
            event_type: d.event_type,
            url: d.url,
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: pending.then_some(d.next_attempt_at),
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookSecret)]
struct SecretBody {
    /// `whsec_` and the base64 of the key: verify `webhook-signature` with it (any Standard Webhooks library).
    secret: String,
}

/// `GET /v1/webhooks/secret`: the key that signs this tenant's webhooks, made on first request.
#[utoipa::path(
    get,
    path = "/v1/webhooks/secret",
    tag = "webhooks",
    summary = "Read the webhook signing secret",
    responses((status = 200, description = "The tenant's signing secret, made on the first request.",
        body = SecretBody))
)]
async fn secret(Tenant(tenant): Tenant) -> Result<Json<SecretBody>, ApiError> {
    Ok(Json(SecretBody { secret: tenant.webhook_secret(new_secret).await? }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only messages in this state: `pending`, `delivered` or `dead`.
    #[param(value_type = Option<String>, pattern = "^(pending|delivered|dead)?$")]
    status: Option<String>,
    /// Only messages of this job.
    #[param(value_type = Option<JobId>)]
    job_id: Option<String>,
    /// Items per page, 1 to 200; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the page before.
    #[param(value_type = Option<String>, pattern = "^[0-9a-fA-F]{32}$")]
    cursor: Option<String>,
}

/// `GET /v1/webhooks/deliveries?status=pending|delivered|dead&job_id=&limit=&cursor=`: messages newest
/// first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/webhooks/deliveries",
    tag = "webhooks",
    summary = "List webhook messages",
    params(ListQuery),
    responses(
        (status = 200, description = "A page, newest first.", body = PageBody<DeliveryBody>),
        (status = 400, description = "An unknown or malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 422, description = "A bad filter, `limit` or `cursor` (`invalid_status`, `invalid_job_id`, \
            `invalid_limit`, `invalid_cursor`).", body = ErrorBody),
    )
)]
async fn list(
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PageBody<DeliveryBody>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let given = |value: Option<String>| value.filter(|v| !v.is_empty());
    let status = given(query.status)
        .map(|s| {
            DeliveryStatus::parse(&s).ok_or_else(|| ApiError::Unprocessable {
                code: "invalid_status",
                message: "status must be pending, delivered or dead".into(),
            })
        })
        .transpose()?;
    let job = given(query.job_id)
        .map(|j| {
            j.parse::<JobId>().map_err(|_| ApiError::Unprocessable {
                code: "invalid_job_id",
                message: "job_id must be a job's id (job_...)".into(),
            })
        })
        .transpose()?;
    let limit = pages::limit(query.limit.as_deref())?;
    let before = pages::cursor(query.cursor.as_deref(), MessageId::PREFIX)?;
    let page = tenant.list_deliveries(status, job, before, limit).await?;
    let page = Page { items: page.items.into_iter().map(DeliveryBody::from).collect(), more: page.more };
    Ok(Json(PageBody::new(page, MessageId::PREFIX, |d| d.id.clone())))
}

/// `GET /v1/webhooks/deliveries/{id}`: one message: where it stands, its attempts, the last error.
#[utoipa::path(
    get,
    path = "/v1/webhooks/deliveries/{id}",
    tag = "webhooks",
    summary = "Show a webhook message",
    params(("id" = MessageId, Path, description = "The message's id (its `webhook-id`).")),
    responses(
        (status = 200, description = "The message.", body = DeliveryBody),
        (status = 404, description = "No such message of this tenant (`delivery_not_found`).", body = ErrorBody),
    )
)]
async fn show(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<DeliveryBody>, ApiError> {
    let message: MessageId = parse_id(&id, "webhook message")?;
    tenant.delivery(message).await?.map(|d| Json(d.into())).ok_or_else(|| super::not_found("webhook message", &id))
}

/// `POST /v1/webhooks/deliveries/{id}/resend`: sends a delivered or dead message again, from now, with a
/// fresh retry window; `409 delivery_pending` while it is still being retried.
#[utoipa::path(
    post,
    path = "/v1/webhooks/deliveries/{id}/resend",
    tag = "webhooks",
    summary = "Resend a webhook message",
    params(("id" = MessageId, Path, description = "The message's id (its `webhook-id`).")),
    responses(
        (status = 200, description = "Queued to be sent again.", body = DeliveryBody),
        (status = 404, description = "No such message of this tenant (`delivery_not_found`).", body = ErrorBody),
        (status = 409, description = "The message is still being retried (`delivery_pending`).", body = ErrorBody),
    )
)]
async fn resend(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<DeliveryBody>, ApiError> {
    let message: MessageId = parse_id(&id, "webhook message")?;
    match tenant.resend_delivery(message).await {
        Ok(Some(delivery)) => Ok(Json(delivery.into())),
        Ok(None) => Err(super::not_found("webhook message", &id)),
        Err(StoreError::DeliveryPending) => Err(ApiError::Conflict {
            code: "delivery_pending",
            message: "this message is still being retried; resend it once it is delivered or dead".into(),
        }),
        Err(e) => Err(e.into()),
    }
}
