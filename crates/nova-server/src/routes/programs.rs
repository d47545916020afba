//! Programs: the extraction programs a model wrote, one per document layout, kept so that later documents
//! of that layout need no model call. Listed, shown and deleted here; written only by the workers.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use nova_core::ProgramId;
use nova_store::StoredProgram;
use serde::{Deserialize, Serialize};

use super::pages::{self, PageBody};
use super::{parse_id, IdPath};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/programs", get(list))
        .route("/programs/{id}", get(show).delete(delete))
        .route("/programs/{id}/retire", post(retire))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Items per page, 1 to 200; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the page before.
    #[param(value_type = Option<String>, pattern = "^[0-9a-fA-F]{32}$")]
    cursor: Option<String>,
}

/// A program as the API shows it; its code only when it is asked for by id.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Program)]
struct ProgramBody {
    id: ProgramId,
    kind: String,
    /// The seller's VAT id the layout belongs to, or `novat`.
    layout_key: String,
    /// The layout's label words.
    labels: String,
    model: Option<String>,
    /// `active`, or `retired` after failing too often in a row.
    #[schema(value_type = String, pattern = "^(active|retired)$")]
    status: &'static str,
    successes: i64,
    failures: i64,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    /// The program's source: only when the program is asked for by id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    code: Option<String>,
}

impl ProgramBody {
    fn new(p: StoredProgram, with_code: bool) -> ProgramBody {
        ProgramBody {
            id: p.id,
            kind: p.kind,
            layout_key: p.layout_key,
            labels: p.labels,
            model: p.model,
            status: if p.retired { "retired" } else { "active" },
            successes: p.successes,
            failures: p.failures,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
            code: with_code.then_some(p.code),
        }
    }
}

fn program_not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(80).collect();
    ApiError::NotFound { code: "program_not_found", message: format!("no program with id `{shown}`") }
}

/// `GET /v1/programs?limit=&cursor=`: newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/programs",
    tag = "programs",
    summary = "List programs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page, newest first, without code.", body = PageBody<ProgramBody>),
        (status = 400, description = "A malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 422, description = "A bad `limit` or `cursor` (`invalid_limit`, `invalid_cursor`).",
            body = ErrorBody),
    )
)]
async fn list(
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PageBody<ProgramBody>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let limit = pages::limit(query.limit.as_deref())?;
    let before = pages::cursor(query.cursor.as_deref(), ProgramId::PREFIX)?;
    let page = tenant.list_programs(limit, before).await?;
    let page = nova_store::Page {
        items: page.items.into_iter().map(|p| ProgramBody::new(p, false)).collect(),
        more: page.more,
    };
    Ok(Json(PageBody::new(page, ProgramId::PREFIX, |p| p.id.to_string())))
}

/// `GET /v1/programs/{id}`: one program with its code.
#[utoipa::path(
    get,
    path = "/v1/programs/{id}",
    tag = "programs",
    summary = "Show a program",
    params(("id" = ProgramId, Path, description = "The program's id.")),
    responses(
        (status = 200, description = "The program, with its code.", body = ProgramBody),
        (status = 404, description = "No such program of this tenant (`program_not_found`).", body = ErrorBody),
    )
)]
async fn show(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<ProgramBody>, ApiError> {
    let parsed: ProgramId = parse_id(&id, "program").map_err(|_| program_not_found(&id))?;
    match tenant.get_program(parsed).await? {
        Some(p) => Ok(Json(ProgramBody::new(p, true))),
        None => Err(program_not_found(&id)),
    }
}

/// `POST /v1/programs/{id}/retire`: the program stays listed but is no longer run; the next document of its
/// layout asks the model again.
#[utoipa::path(
    post,
    path = "/v1/programs/{id}/retire",
    tag = "programs",
    summary = "Retire a program",
    description = "Stops using the program, as when it fails too often in a row: it stays listed (`status: \
        retired`), and the next document of its layout asks the model for a new one. Retiring a retired \
        program changes nothing.",
    params(("id" = ProgramId, Path, description = "The program's id.")),
    responses(
        (status = 200, description = "The program, retired.", body = ProgramBody),
        (status = 404, description = "No such program of this tenant (`program_not_found`).", body = ErrorBody),
    )
)]
async fn retire(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<ProgramBody>, ApiError> {
    let parsed: ProgramId = parse_id(&id, "program").map_err(|_| program_not_found(&id))?;
    match tenant.retire_program(parsed).await? {
        Some(p) => Ok(Json(ProgramBody::new(p, false))),
        None => Err(program_not_found(&id)),
    }
}

/// `DELETE /v1/programs/{id}`: the next document of its layout asks the model again.
#[utoipa::path(
    delete,
    path = "/v1/programs/{id}",
    tag = "programs",
    summary = "Delete a program",
    params(("id" = ProgramId, Path, description = "The program's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such program of this tenant (`program_not_found`).", body = ErrorBody),
    )
)]
async fn delete(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<StatusCode, ApiError> {
    let parsed: ProgramId = parse_id(&id, "program").map_err(|_| program_not_found(&id))?;
    if tenant.delete_program(parsed).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(program_not_found(&id))
    }
}
