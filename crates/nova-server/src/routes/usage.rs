//! Usage: what the tenant's work used, per day and workflow.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Days, NaiveDate, Utc};
use nova_store::{UsageDelta, UsageRow};
use serde::{Deserialize, Serialize};

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// The longest range one request may ask for, in days.
const MAX_DAYS: u64 = 366;
/// The range when none is given: the last 30 days, today included.
const DEFAULT_DAYS: u64 = 30;

pub fn router() -> Router<AppState> {
    Router::new().route("/usage", get(usage))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// The first day (`YYYY-MM-DD`, UTC); default 29 days before `to`.
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// The last day, included; default today.
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
    /// Only this workflow's use.
    workflow: Option<String>,
}

/// The sums of one day and workflow, or of the whole range.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Usage)]
struct UsageBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    day: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow: Option<String>,
    /// Pieces of work that used something: job attempts and synchronous executions.
    runs: u64,
    model_calls: u64,
    input_tokens: u64,
    output_tokens: u64,
    /// The model calls' cost by the server's price table, as a decimal string (`"0"` when unpriced).
    cost: String,
    sandbox_runs: u64,
    sandbox_cpu_ms: u64,
    sandbox_wall_ms: u64,
}

impl UsageBody {
    fn new(day: Option<NaiveDate>, workflow: Option<String>, runs: u64, u: &UsageDelta) -> Self {
        Self {
            day,
            workflow,
            runs,
            model_calls: u.model_calls,
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cost: decimal_from_nanos(u.cost_nanos),
            sandbox_runs: u.sandbox_runs,
            sandbox_cpu_ms: u.sandbox_cpu_ms,
            sandbox_wall_ms: u.sandbox_wall_ms,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct UsageReport {
    from: NaiveDate,
    to: NaiveDate,
    /// One entry per day and workflow with any use, by day then workflow.
    data: Vec<UsageBody>,
    /// The sums over `data`.
    total: UsageBody,
}

/// `GET /v1/usage?from=&to=&workflow=`: the tenant's model calls, tokens, cost and sandbox time per day and
/// workflow, and their total.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    summary = "Read the tenant's usage",
    params(UsageQuery),
    responses(
        (status = 200, description = "Sums per day and workflow over the range, and their total.", body = UsageReport),
        (status = 400, description = "An unknown or malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 422, description = "A bad day or range, at most 366 days (`invalid_range`).", body = ErrorBody),
    )
)]
async fn usage(
    Tenant(tenant): Tenant,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let given = |value: Option<String>| value.filter(|v| !v.is_empty());
    let to = given(query.to).map(|d| day(&d, "to")).transpose()?.unwrap_or_else(|| Utc::now().date_naive());
    let from = given(query.from)
        .map(|d| day(&d, "from"))
        .transpose()?
        .unwrap_or_else(|| to.checked_sub_days(Days::new(DEFAULT_DAYS - 1)).unwrap_or(NaiveDate::MIN));
    let invalid = |message: String| ApiError::Unprocessable { code: "invalid_range", message };
    if from > to {
        return Err(invalid("`from` is after `to`".into()));
    }
    if (to - from).num_days() as u64 >= MAX_DAYS {
        return Err(invalid(format!("a range holds at most {MAX_DAYS} days")));
    }
    let workflow = given(query.workflow);
    let rows = tenant.usage(from, to, workflow.as_deref()).await?;
    let mut total = UsageDelta::default();
    let mut runs = 0;
    for UsageRow { runs: r, usage: u, .. } in &rows {
        runs += r;
        total.model_calls += u.model_calls;
        total.input_tokens += u.input_tokens;
        total.output_tokens += u.output_tokens;
        total.cost_nanos += u.cost_nanos;
        total.sandbox_runs += u.sandbox_runs;
        total.sandbox_cpu_ms += u.sandbox_cpu_ms;
        total.sandbox_wall_ms += u.sandbox_wall_ms;
    }
    let data = rows.into_iter().map(|r| UsageBody::new(Some(r.day), Some(r.workflow), r.runs, &r.usage)).collect();
    Ok(Json(UsageReport { from, to, data, total: UsageBody::new(None, None, runs, &total) }))
}

fn day(text: &str, name: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| ApiError::Unprocessable {
        code: "invalid_range",
        message: format!("`{name}` must be a day as YYYY-MM-DD"),
    })
}

/// `1_500_000_000` nanos as `"1.5"`.
fn decimal_from_nanos(nanos: u64) -> String {
    let (whole, fraction) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::decimal_from_nanos;

    #[test]
    fn costs_print_as_plain_decimals() {
        assert_eq!(decimal_from_nanos(0), "0");
        assert_eq!(decimal_from_nanos(1_500_000_000), "1.5");
        assert_eq!(decimal_from_nanos(150), "0.00000015");
        assert_eq!(decimal_from_nanos(2_000_000_001), "2.000000001");
    }
}
