//! Schedules: a cron expression in a time zone that enqueues a job of a workflow and input at each of its
//! times (`nova_app::schedules` fires them). Created, listed, shown, paused, resumed and deleted here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use nova_core::{CronSchedule, JobInput, MissedPolicy, Schedule, ScheduleId, Workflow};
use nova_store::{NewSchedule, StoreError, TenantStore};
use serde::{Deserialize, Serialize};

use super::jobs::{check_input, AskedOptions};
use super::{not_found, parse_id, IdPath};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/schedules", post(create).get(list))
        .route("/schedules/{id}", get(show).delete(delete))
        .route("/schedules/{id}/pause", post(pause))
        .route("/schedules/{id}/resume", post(resume))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateSchedule {
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first; `@hourly`,
    /// `@daily`, `@weekly`, `@monthly`, `@yearly`; `L`, `W` and `#` as in Quartz.
    #[schema(max_length = 200, examples("0 9 * * 1-5"))]
    cron: String,
    /// An IANA time zone name; default `UTC`.
    #[schema(examples("Europe/Berlin"))]
    timezone: Option<String>,
    #[schema(value_type = Workflow)]
    workflow: String,
    /// The input of every job, as `POST /v1/jobs` takes it for the workflow.
    #[serde(default)]
    #[schema(required = false, value_type = JobInput)]
    input: serde_json::Value,
    /// A label of your own, at most 200 characters.
    #[schema(max_length = 200)]
    name: Option<String>,
    /// Of every job: higher runs first, -1000 to 1000; default 0.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    priority: i64,
    /// Of every job, 1 to 20; default from the server's configuration.
    #[schema(minimum = 1, maximum = 20)]
    max_attempts: Option<u32>,
    /// Of every job, in seconds, at most a day; default the workflow's.
    #[schema(minimum = 1, maximum = 86400)]
    timeout_seconds: Option<u64>,
    /// What happens to times missed while no NOVA process ran: `latest` (default: one job for the latest),
    /// `all` (one job per missed time, at most 1000), `skip` (none for a time more than a minute late).
    missed: Option<MissedPolicy>,
    /// Created paused.
    #[serde(default)]
    paused: bool,
}

/// `POST /v1/schedules`: checks the expression, the zone, the workflow and its input, and stores the
/// schedule; its first time is the first after now.
#[utoipa::path(
    post,
    path = "/v1/schedules",
    tag = "schedules",
    summary = "Create a schedule",
    description = "A cron expression in a time zone that enqueues a job of `workflow` with `input` at each of \
                   its times. Each time enqueues exactly one job, whatever the number of NOVA processes; its \
                   `Idempotency-Key` is `schedule:{id}:{time}`.",
    request_body = CreateSchedule,
    responses(
        (status = 201, description = "Created.", body = Schedule),
        (status = 400, description = "The body is not JSON (`malformed_json`, `unreadable_body`).", body = ErrorBody),
        (status = 415, description = "Not sent as JSON (`expected_json`).", body = ErrorBody),
        (status = 422, description = "A bad expression, zone, workflow or input (`invalid_cron`, \
            `invalid_timezone`, `invalid_request`, `unknown_workflow`, `invalid_input`, `document_not_found`).",
            body = ErrorBody),
        (status = 429, description = "The tenant holds 100 schedules (`too_many_schedules`), or the key's \
            request rate is spent (`rate_limited`).", body = ErrorBody),
    )
)]
async fn create(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    let invalid = |message: String| ApiError::Unprocessable { code: "invalid_request", message };
    let timezone = body.timezone.unwrap_or_else(|| "UTC".into());
    let cron = CronSchedule::parse(&body.cron, &timezone).map_err(|e| {
        let code = if matches!(e, nova_core::ScheduleError::Zone(_)) { "invalid_timezone" } else { "invalid_cron" };
        ApiError::Unprocessable { code, message: e.to_string() }
    })?;
    if body.name.as_ref().is_some_and(|n| n.chars().count() > 200 || n.contains('\0')) {
        return Err(invalid("name must be at most 200 characters, with no NUL".into()));
    }
    let workflow: Workflow = body.workflow.parse().map_err(|e: nova_core::UnknownWorkflow| {
        ApiError::Unprocessable { code: "unknown_workflow", message: e.to_string() }
    })?;
    let asked = AskedOptions {
        priority: body.priority,
        run_at: None,
        timeout_seconds: body.timeout_seconds,
        max_attempts: body.max_attempts,
        queue_timeout_seconds: None,
    };
    let options = asked.check(workflow, app.config.max_attempts)?;
    check_input(&tenant, workflow, &body.input).await?;
    let new = NewSchedule {
        name: body.name,
        cron: body.cron.trim().to_string(),
        timezone,
        workflow,
        input: body.input,
        priority: options.priority,
        max_attempts: options.max_attempts,
        timeout: options.timeout,
        missed: body.missed.unwrap_or_default(),
        paused: body.paused,
    };
    let schedule = tenant.create_schedule(new, &cron).await.map_err(|e| match e {
        StoreError::LimitReached(n) => ApiError::QuotaExceeded {
            code: "too_many_schedules",
            message: format!("this tenant holds {n} schedules, its limit; delete one first"),
        },
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

#[derive(Serialize, utoipa::ToSchema)]
struct ScheduleList {
    data: Vec<Schedule>,
}

/// `GET /v1/schedules`: the tenant's schedules, newest first.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    summary = "List schedules",
    responses((status = 200, description = "The tenant's schedules, newest first (at most 100).", body = ScheduleList))
)]
async fn list(Tenant(tenant): Tenant) -> Result<Json<ScheduleList>, ApiError> {
    Ok(Json(ScheduleList { data: tenant.list_schedules().await? }))
}

/// `GET /v1/schedules/{id}`.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    summary = "Show a schedule",
    params(("id" = ScheduleId, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "The schedule.", body = Schedule),
        (status = 404, description = "No such schedule of this tenant (`schedule_not_found`).", body = ErrorBody),
    )
)]
async fn show(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<Schedule>, ApiError> {
    let id: ScheduleId = parse_id(&id, "schedule")?;
    tenant.get_schedule(id).await?.map(Json).ok_or_else(|| not_found("schedule", &id.to_string()))
}

/// `POST /v1/schedules/{id}/pause`: the schedule enqueues nothing until resumed.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/pause",
    tag = "schedules",
    summary = "Pause a schedule",
    params(("id" = ScheduleId, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "Paused.", body = Schedule),
        (status = 404, description = "No such schedule of this tenant (`schedule_not_found`).", body = ErrorBody),
    )
)]
async fn pause(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<Schedule>, ApiError> {
    set_paused(&tenant, &id, true).await
}

/// `POST /v1/schedules/{id}/resume`: the schedule goes on from its first time after now; the times that
/// passed while it was paused enqueue nothing.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/resume",
    tag = "schedules",
    summary = "Resume a schedule",
    params(("id" = ScheduleId, Path, description = "The schedule's id.")),
    responses(
        (status = 200, description = "Resumed.", body = Schedule),
        (status = 404, description = "No such schedule of this tenant (`schedule_not_found`).", body = ErrorBody),
    )
)]
async fn resume(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<Schedule>, ApiError> {
    set_paused(&tenant, &id, false).await
}

async fn set_paused(tenant: &TenantStore, id: &str, paused: bool) -> Result<Json<Schedule>, ApiError> {
    let id: ScheduleId = parse_id(id, "schedule")?;
    let schedule = tenant.get_schedule(id).await?.ok_or_else(|| not_found("schedule", &id.to_string()))?;
    if schedule.paused == paused {
        return Ok(Json(schedule));
    }
    // Resumed, it starts afresh from now: a pause is not downtime to catch up on.
    let next = if paused {
        None
    } else {
        CronSchedule::parse(&schedule.cron, &schedule.timezone).ok().and_then(|c| c.next_after(Utc::now()))
    };
    tenant.set_schedule_paused(id, paused, next).await?.map(Json).ok_or_else(|| not_found("schedule", &id.to_string()))
}

/// `DELETE /v1/schedules/{id}`: the jobs it enqueued stay.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    summary = "Delete a schedule",
    params(("id" = ScheduleId, Path, description = "The schedule's id.")),
    responses(
        (status = 204, description = "Deleted; the jobs it enqueued stay."),
        (status = 404, description = "No such schedule of this tenant (`schedule_not_found`).", body = ErrorBody),
    )
)]
async fn delete(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<StatusCode, ApiError> {
    let id: ScheduleId = parse_id(&id, "schedule")?;
    if tenant.delete_schedule(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found("schedule", &id.to_string()))
    }
}
