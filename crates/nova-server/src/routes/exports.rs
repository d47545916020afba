//! Exports: invoices as CSV (one row per invoice, or per line) or JSON, in the rows `nova extract` writes
//! (`nova_core::export`), each from its result's latest version (a person's correction when there is one).

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nova_core::export::{invoice_row, line_rows, INVOICE_COLUMNS, LINE_COLUMNS};
use nova_core::{DocumentId, Invoice, InvoiceExtractInput, Job, JobError, JobId, JobStatus, ReviewState, Workflow};
use nova_store::{JobFilter, TenantStore, MAX_PAGE_SIZE};
use serde::{Deserialize, Serialize};

use super::{not_found, parse_id};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// The most invoices one export holds; past it, the export says so (`export_too_large`) rather than cut it.
pub(crate) const MAX_EXPORT: usize = 10_000;
/// Jobs read together: their results and file names in one read each.
const EXPORT_CHUNK: usize = 500;
/// The most job ids a selection names.
const MAX_SELECTION: usize = 1_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/exports/invoices", get(invoices))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExportQuery {
    /// `csv` (default) or `json`.
    #[param(value_type = Option<String>, pattern = "^(csv|json)$")]
    format: Option<String>,
    /// CSV only: one row per `invoice` (default) or per `line`.
    #[param(value_type = Option<String>, pattern = "^(invoice|line)$")]
    rows: Option<String>,
    /// The `invoice.extract` jobs to export, comma-separated (at most 1000); default every succeeded one.
    #[param(value_type = Option<String>)]
    jobs: Option<String>,
    /// Without `jobs`: only results that wait for review (`needed`) or have had one (`reviewed`).
    #[param(value_type = Option<ReviewState>)]
    review: Option<String>,
}

/// One invoice of a JSON export.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ExportedInvoice {
    job_id: JobId,
    document_id: Option<DocumentId>,
    /// The document's file name, as uploaded.
    file: Option<String>,
    /// The version of the result exported (1: as extracted).
    version: Option<u32>,
    review: Option<ReviewState>,
    /// The invoice, as the result's latest version has it; `null` for a job without a result.
    #[schema(value_type = Object)]
    invoice: Option<serde_json::Value>,
    /// Why there is no invoice (a failed, canceled or unfinished job).
    error: Option<JobError>,
}

/// `GET /v1/exports/invoices`: the selected invoices (or every extracted one) as a CSV or JSON download.
#[utoipa::path(
    get,
    path = "/v1/exports/invoices",
    tag = "jobs",
    summary = "Export invoices",
    description = "The invoices of `invoice.extract` jobs, newest first, each as its result's latest version \
        (a person's correction once stored). CSV has the columns `nova extract --format csv` writes (one row \
        per invoice), or one row per line with `rows=line`; a selected job without a result is a row with its \
        error. At most 10000 invoices: past that, `422 export_too_large`.",
    params(ExportQuery),
    responses(
        (status = 200, description = "The file, as an attachment.", content(
            (String = "text/csv"),
            (Vec<ExportedInvoice> = "application/json"),
        )),
        (status = 400, description = "An unknown or malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 404, description = "A selected job is not this tenant's (`job_not_found`).", body = ErrorBody),
        (status = 422, description = "A bad parameter (`invalid_format`, `invalid_rows`, `invalid_review`, \
            `invalid_selection`), a selected job that is not an invoice extraction (`not_an_invoice`), or too \
            many invoices (`export_too_large`).", body = ErrorBody),
    )
)]
async fn invoices(
    Tenant(tenant): Tenant,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let given = |value: Option<String>| value.filter(|v| !v.is_empty());
    let json = match given(query.format).as_deref() {
        None | Some("csv") => false,
        Some("json") => true,
        Some(other) => {
            return Err(unprocessable("invalid_format", format!("format is csv or json, not `{}`", short(other))))
        }
    };
    let per_line = match given(query.rows).as_deref() {
        None | Some("invoice") => false,
        Some("line") => true,
        Some(other) => {
            return Err(unprocessable("invalid_rows", format!("rows is invoice or line, not `{}`", short(other))))
        }
    };
    let review = given(query.review)
        .map(|r| r.parse::<ReviewState>())
        .transpose()
        .map_err(|message| unprocessable("invalid_review", message))?;
    let jobs = match given(query.jobs) {
        Some(ids) => selected(&tenant, &ids).await?,
        None => every_invoice(&tenant, review).await?,
    };
    let mut exported = Vec::with_capacity(jobs.len());
    // A few reads per chunk of jobs, however many jobs there are.
    for chunk in jobs.chunks(EXPORT_CHUNK) {
        let ids: Vec<JobId> = chunk.iter().filter(|j| j.status == JobStatus::Succeeded).map(|j| j.id).collect();
        let mut results = tenant.latest_results(&ids).await?;
        let documents: Vec<DocumentId> = chunk.iter().filter_map(document_of).collect();
        let names = tenant.filenames(&documents).await?;
        for job in chunk {
            let file = document_of(job).and_then(|id| names.get(&id).cloned());
            exported.push(export(job, file, results.remove(&job.id)));
        }
    }
    if json {
        let body = serde_json::to_vec_pretty(&exported).map_err(|e| ApiError::internal("writing the export", &e))?;
        return Ok(download(body, "application/json", "invoices.json"));
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    let written: Result<(), csv::Error> = (|| {
        out.write_record(if per_line { LINE_COLUMNS } else { INVOICE_COLUMNS })?;
        for item in &exported {
            let file = item.file.as_deref().unwrap_or_default();
            // A result that is not an invoice (stored by an older version, say) is a row that says so.
            let (invoice, unreadable) =
                match item.invoice.as_ref().map(|v| serde_json::from_value::<Invoice>(v.clone())) {
                    Some(Ok(invoice)) => (Some(invoice), None),
                    Some(Err(e)) => (
                        None,
                        Some(JobError { code: "unreadable_result".into(), message: format!("not an invoice: {e}") }),
                    ),
                    None => (None, None),
                };
            if per_line {
                for row in invoice.iter().flat_map(|inv| line_rows(file, inv)) {
                    out.write_record(row)?;
                }
            } else {
                out.write_record(invoice_row(file, invoice.as_ref(), item.error.as_ref().or(unreadable.as_ref())))?;
            }
        }
        Ok(())
    })();
    written.map_err(|e| ApiError::internal("writing the export", &e))?;
    let body = out.into_inner().map_err(|e| ApiError::internal("writing the export", e.error()))?;
    Ok(download(body, "text/csv; charset=utf-8", if per_line { "invoice-lines.csv" } else { "invoices.csv" }))
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

fn unprocessable(code: &'static str, message: String) -> ApiError {
    ApiError::Unprocessable { code, message }
}

fn download(body: Vec<u8>, content_type: &'static str, name: &str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                .unwrap_or(HeaderValue::from_static("attachment")),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    (StatusCode::OK, headers, body).into_response()
}

/// The jobs a comma-separated list names, in its order, each once: all this tenant's invoice extractions.
async fn selected(tenant: &TenantStore, ids: &str) -> Result<Vec<Job>, ApiError> {
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<&str> = ids.split(',').map(str::trim).filter(|id| !id.is_empty() && seen.insert(*id)).collect();
    if ids.len() > MAX_SELECTION {
        return Err(unprocessable(
            "invalid_selection",
            format!("jobs names {} jobs; at most {MAX_SELECTION} at a time", ids.len()),
        ));
    }
    let mut jobs = Vec::with_capacity(ids.len());
    for text in ids {
        let id: JobId = parse_id(text, "job")?;
        let job = tenant.get_job(id).await?.ok_or_else(|| not_found("job", text))?;
        if job.workflow != Workflow::InvoiceExtract {
            return Err(unprocessable(
                "not_an_invoice",
                format!("job {id} is a {} job; exports hold invoice.extract jobs", job.workflow),
            ));
        }
        jobs.push(job);
    }
    Ok(jobs)
}

/// Every succeeded invoice extraction of this tenant (with `review`, those in that review state), newest
/// first, a page at a time.
async fn every_invoice(tenant: &TenantStore, review: Option<ReviewState>) -> Result<Vec<Job>, ApiError> {
    let filter = JobFilter { status: Some(JobStatus::Succeeded), workflow: Some(Workflow::InvoiceExtract), review };
    let (mut jobs, mut before) = (Vec::new(), None);
    loop {
        let page = tenant.list_jobs(filter, before, MAX_PAGE_SIZE).await?;
        before = page.items.last().map(|job| job.id);
        jobs.extend(page.items);
        if jobs.len() > MAX_EXPORT {
            return Err(unprocessable(
                "export_too_large",
                format!("more than {MAX_EXPORT} invoices match; select fewer (jobs=..., or review=...)"),
            ));
        }
        if !page.more {
            return Ok(jobs);
        }
    }
}

/// The document an invoice job reads.
fn document_of(job: &Job) -> Option<DocumentId> {
    serde_json::from_value::<InvoiceExtractInput>(job.input.clone()).ok().map(|input| input.document_id)
}

/// One job as exported: its latest result, or why it has none.
fn export(job: &Job, file: Option<String>, latest: Option<(u32, serde_json::Value)>) -> ExportedInvoice {
    let error = match job.status {
        JobStatus::Succeeded => None,
        JobStatus::Failed | JobStatus::Canceled => Some(job.error.clone().unwrap_or_else(|| JobError {
            code: format!("job_{}", job.status.as_str()),
            message: format!("the job was {}", job.status.as_str()),
        })),
        _ => Some(JobError { code: "job_not_finished".into(), message: format!("the job is {}", job.status.as_str()) }),
    };
    let (version, invoice) = latest.map_or((None, None), |(version, result)| (Some(version), Some(result)));
    ExportedInvoice { job_id: job.id, document_id: document_of(job), file, version, review: job.review, invoice, error }
}
