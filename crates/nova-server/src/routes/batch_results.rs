//! `GET /v1/batches/{id}/results`: one record per job of a batch, in the order of its inputs, as JSON lines,
//! or for `invoice.extract` as the CSV `nova extract --format csv` writes (`nova_core::export`).
//!
//! The answer is streamed a page of jobs at a time (a range of `jobs_by_batch` each), so a batch of 10,000
//! results is never held in memory whole; each page's file names and corrected results are read in one
//! statement each.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nova_core::export::{invoice_row, INVOICE_COLUMNS};
use nova_core::{BatchId, BatchItem, DocumentId, Invoice, InvoiceExtractInput, JobError, JobStatus, Workflow};
use nova_store::TenantStore;
use serde::Deserialize;

use super::{not_found, parse_id, IdPath};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};

/// Jobs read and written at once.
const PAGE: u32 = 500;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultsQuery {
    /// `jsonl` (default) or, for `invoice.extract` batches, `csv`.
    #[param(value_type = Option<String>, pattern = "^(jsonl|csv)?$")]
    format: Option<String>,
}

/// `GET /v1/batches/{id}/results?format=jsonl|csv`: the batch's jobs with their results or errors.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/results",
    tag = "batches",
    summary = "Read a batch's results",
    description = "One record per job, in the order of the batch's inputs, streamed. JSON lines (`jsonl`, the \
        default): each line a `BatchItem` (the job's id and index, its input, its status, and its result or \
        error). `csv`, for `invoice.extract` batches only: the columns `nova extract --format csv` writes, one \
        row per invoice (a person's correction once stored), a job without an invoice a row with its error. \
        Jobs not finished yet are listed as they stand.",
    params(("id" = BatchId, Path, description = "The batch's id."), ResultsQuery),
    responses(
        (status = 200, description = "The results, as an attachment.", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "An unknown or malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 404, description = "No such batch of this tenant (`batch_not_found`).", body = ErrorBody),
        (status = 422, description = "An unknown format, or CSV of a batch that is not of invoices \
            (`invalid_format`).", body = ErrorBody),
    )
)]
pub(super) async fn results(
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    query: Result<Query<ResultsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id: BatchId = parse_id(&id, "batch")?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let csv = match query.format.as_deref().filter(|f| !f.is_empty()) {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            return Err(ApiError::Unprocessable {
                code: "invalid_format",
                message: format!("format is jsonl or csv, not `{shown}`"),
            });
        }
    };
    let batch = tenant.get_batch(id).await?.ok_or_else(|| not_found("batch", &id.to_string()))?;
    if csv && batch.workflow != Workflow::InvoiceExtract {
        return Err(ApiError::Unprocessable {
            code: "invalid_format",
            message: format!("CSV holds invoices; this batch runs {}: ask for jsonl", batch.workflow),
        });
    }
    let pages = Pages { tenant, id, from: 0, csv, header: csv, done: false };
    let body = Body::from_stream(futures::stream::unfold(pages, Pages::next));
    let (content_type, name) = if csv {
        ("text/csv; charset=utf-8", format!("{id}.csv"))
    } else {
        ("application/x-ndjson", format!("{id}.jsonl"))
    };
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                .unwrap_or(HeaderValue::from_static("attachment")),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    Ok((StatusCode::OK, headers, body).into_response())
}

/// Where a results stream stands in its batch.
struct Pages {
    tenant: TenantStore,
    id: BatchId,
    /// The index of the next job to read.
    from: u64,
    csv: bool,
    /// The CSV header is still to be written.
    header: bool,
    /// The last page was read.
    done: bool,
}

impl Pages {
    /// The next chunk of the body; `None` ends it. A failure ends the body early, which the client sees
    /// as a cut connection rather than a complete file.
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.done {
            return None;
        }
        let chunk = self.read_page().await;
        if chunk.is_err() {
            self.done = true;
        }
        Some((chunk, self))
    }

    async fn read_page(&mut self) -> Result<Bytes, std::io::Error> {
        let failed = |what: &str, e: &dyn std::error::Error| {
            tracing::error!(error = %nova_core::error_chain(e), "{what} failed");
            std::io::Error::other(format!("{what} failed"))
        };
        let items = self
            .tenant
            .batch_items(self.id, self.from, PAGE)
            .await
            .map_err(|e| failed("reading a batch's results", &e))?;
        self.done = items.len() < PAGE as usize;
        if let Some(last) = items.last() {
            self.from = last.index + 1;
        }
        if !self.csv {
            let mut out = Vec::with_capacity(items.len() * 256);
            for item in &items {
                serde_json::to_writer(&mut out, item).map_err(|e| failed("writing a batch's results", &e))?;
                out.push(b'\n');
            }
            return Ok(Bytes::from(out));
        }
        let rows = self.csv_rows(&items).await.map_err(|e| failed("reading a batch's invoices", &e))?;
        let mut out = csv::Writer::from_writer(Vec::new());
        let written: Result<(), csv::Error> = (|| {
            if std::mem::take(&mut self.header) {
                out.write_record(INVOICE_COLUMNS)?;
            }
            for row in rows {
                out.write_record(row)?;
            }
            Ok(())
        })();
        written.map_err(|e| failed("writing a batch's invoices", &e))?;
        let bytes = out.into_inner().map_err(|e| failed("writing a batch's invoices", e.error()))?;
        Ok(Bytes::from(bytes))
    }

    /// One CSV row per job, as `nova extract` writes them: the document's file name (its id when it has
    /// none), and the invoice (its latest version) or why there is none.
    async fn csv_rows(&self, items: &[BatchItem]) -> Result<Vec<Vec<String>>, nova_store::StoreError> {
        let documents: Vec<Option<DocumentId>> = items.iter().map(document_of).collect();
        let names = self.tenant.filenames(&documents.iter().flatten().copied().collect::<Vec<_>>()).await?;
        let succeeded: Vec<_> = items.iter().filter(|i| i.status == JobStatus::Succeeded).map(|i| i.job_id).collect();
        let mut results: HashMap<_, _> = self.tenant.latest_results(&succeeded).await?;
        Ok(items
            .iter()
            .zip(documents)
            .map(|(item, document)| {
                let file =
                    document.map(|id| names.get(&id).cloned().unwrap_or_else(|| id.to_string())).unwrap_or_default();
                let (invoice, error) = match results.remove(&item.job_id) {
                    Some((_, result)) => match serde_json::from_value::<Invoice>(result) {
                        Ok(invoice) => (Some(invoice), None),
                        Err(e) => (
                            None,
                            Some(JobError {
                                code: "unreadable_result".into(),
                                message: format!("not an invoice: {e}"),
                            }),
                        ),
                    },
                    None => (None, Some(item.error.clone().unwrap_or_else(|| unfinished(item.status)))),
                };
                invoice_row(&file, invoice.as_ref(), error.as_ref())
            })
            .collect())
    }
}

/// The document an invoice job reads.
fn document_of(item: &BatchItem) -> Option<DocumentId> {
    serde_json::from_value::<InvoiceExtractInput>(item.input.clone()).ok().map(|input| input.document_id)
}

/// Why a job without an error has no invoice.
fn unfinished(status: JobStatus) -> JobError {
    match status {
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled => {
            JobError { code: format!("job_{}", status.as_str()), message: format!("the job was {}", status.as_str()) }
        }
        _ => JobError { code: "job_not_finished".into(), message: format!("the job is {}", status.as_str()) },
    }
}
