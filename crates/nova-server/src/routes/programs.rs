//! Programs: the extraction programs a model wrote, one per document layout, kept so that later documents
//! of that layout need no model call. Listed, shown and deleted here; written only by the workers.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use nova_core::{ProgramId, TenantId};
use nova_store::StoredProgram;
use serde::{Deserialize, Serialize};

use super::pages::{self, PageBody};
use super::parse_id;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/programs", get(list)).route("/programs/{id}", get(show).delete(delete))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// A program as the API shows it; its code only when it is asked for by id.
#[derive(Serialize)]
struct ProgramBody {
    id: ProgramId,
    kind: String,
    /// The seller's VAT id the layout belongs to, or `novat`.
    layout_key: String,
    /// The layout's label words.
    labels: String,
    model: Option<String>,
    /// `active`, or `retired` after failing too often in a row.
    status: &'static str,
    successes: i64,
    failures: i64,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// The programs a tenant sees: those learned on its own documents.
fn scope(tenant: TenantId) -> String {
    nova_store::program_scope(tenant)
}

fn program_not_found(id: &str) -> ApiError {
    let shown: String = id.chars().take(80).collect();
    ApiError::NotFound { code: "program_not_found", message: format!("no program with id `{shown}`") }
}

/// `GET /v1/programs?limit=&cursor=`: newest first, a page at a time.
async fn list(
    axum::extract::State(app): axum::extract::State<AppState>,
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PageBody<ProgramBody>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let limit = pages::limit(query.limit.as_deref())?;
    let before = pages::cursor(query.cursor.as_deref(), ProgramId::PREFIX)?;
    let page = app.store.list_programs(&scope(tenant.id()), limit, before).await?;
    let page = nova_store::Page {
        items: page.items.into_iter().map(|p| ProgramBody::new(p, false)).collect(),
        more: page.more,
    };
    Ok(Json(PageBody::new(page, ProgramId::PREFIX, |p| p.id.to_string())))
}

/// `GET /v1/programs/{id}`: one program with its code.
async fn show(
    axum::extract::State(app): axum::extract::State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<ProgramBody>, ApiError> {
    let parsed: ProgramId = parse_id(&id, "program").map_err(|_| program_not_found(&id))?;
    match app.store.get_program(parsed).await? {
        Some(p) if p.scope == scope(tenant.id()) => Ok(Json(ProgramBody::new(p, true))),
        _ => Err(program_not_found(&id)),
    }
}

/// `DELETE /v1/programs/{id}`: the next document of its layout asks the model again.
async fn delete(
    axum::extract::State(app): axum::extract::State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let parsed: ProgramId = parse_id(&id, "program").map_err(|_| program_not_found(&id))?;
    if app.store.delete_program(&scope(tenant.id()), parsed).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(program_not_found(&id))
    }
}
