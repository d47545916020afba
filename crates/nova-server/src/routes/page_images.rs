//! A PDF document's pages as images, and their words with their boxes, for people: the console shows the
//! pages beside the extracted fields and points at a value on them. Poppler's `pdftoppm` and `pdftotext` read
//! the PDF in confined subprocesses (`nova_app::engines::pdftoppm`), never in the server's own process, a few at a
//! time.

use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use nova_app::engines::pdftoppm::Pdftoppm;
use nova_core::{DocumentId, DocumentKind, PageWords};
use nova_extract::render::RenderRequest;
use nova_extract::ExtractError;
use nova_store::TenantStore;
use tokio::sync::Semaphore;

use super::{not_found, parse_id};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// The resolution pages are shown at: an A4 page is 992 × 1403 pixels, sharp on a laptop and light to send.
const VIEW_DPI: u32 = 120;
/// The largest image sent; a larger page is cropped to it.
const MAX_SIDE: u32 = 2400;
/// Pages rendered at once by one server: each renderer may take a second and up to its memory limit.
const RENDERS_AT_ONCE: usize = 2;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/documents/{id}/pages/{page}", get(page))
        .route("/documents/{id}/pages/{page}/words", get(words))
}

fn renders() -> Arc<Semaphore> {
    static RENDERS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    RENDERS.get_or_init(|| Arc::new(Semaphore::new(RENDERS_AT_ONCE))).clone()
}

/// A document id and a page number from the path; never rejects (a malformed one answers `404`).
struct PagePath(String, String);

impl<S: Send + Sync> FromRequestParts<S> for PagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((id, page))) => Ok(PagePath(id, page)),
            Err(_) => Ok(PagePath("(not UTF-8)".into(), String::new())),
        }
    }
}

/// `GET /v1/documents/{id}/pages/{page}`: one page of a PDF document as a PNG image.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}/pages/{page}",
    tag = "documents",
    summary = "Show a page",
    description = "One page of a PDF document, rendered as a PNG at 120 dpi (at most 2400 pixels a side).",
    params(
        ("id" = DocumentId, Path, description = "The document's id."),
        ("page" = u32, Path, description = "The page's number, from 1.", minimum = 1),
    ),
    responses(
        (status = 200, description = "The page.", content((crate::schemas::Binary = "image/png"))),
        (status = 404, description = "No such document of this tenant (`document_not_found`), or no such page \
            (`page_not_found`).", body = ErrorBody),
        (status = 422, description = "The document is not a PDF (`not_a_pdf`), or its page cannot be rendered \
            (`render_failed`).", body = ErrorBody),
        (status = 503, description = "The server cannot render pages (`renderer_unavailable`: poppler-utils is \
            not installed).", body = ErrorBody),
    )
)]
async fn page(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    PagePath(id, page): PagePath,
) -> Result<Response, ApiError> {
    let (id, number, bytes) = pdf_page(&tenant, &id, &page).await?;
    let renderer = Pdftoppm::new(app.config.renderer.clone());
    let rendered = confined(move || {
        let request =
            RenderRequest { pdf: &bytes, page: number, dpi: VIEW_DPI, max_width: MAX_SIDE, max_height: MAX_SIDE };
        renderer.render_png(&request)
    })
    .await?;
    match rendered {
        Ok(png) => {
            let headers = [
                (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
                // A document's bytes never change under its id.
                (header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable")),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ];
            Ok((StatusCode::OK, headers, png).into_response())
        }
        Err(e) => Err(render_error(e, id, number)),
    }
}

/// `GET /v1/documents/{id}/pages/{page}/words`: the words of a PDF page's text layer with their boxes.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}/pages/{page}/words",
    tag = "documents",
    summary = "Show a page's words",
    description = "The words of a PDF page's text layer, each with its box as fractions of the page's width and \
        height from the top left corner (so they lie over the page's image at any size), and the page's size in \
        points: what the console needs to point at a value on the page. A scanned page without a text layer \
        has no words.",
    params(
        ("id" = DocumentId, Path, description = "The document's id."),
        ("page" = u32, Path, description = "The page's number, from 1.", minimum = 1),
    ),
    responses(
        (status = 200, description = "The page's words.", body = PageWords),
        (status = 404, description = "No such document of this tenant (`document_not_found`), or no such page \
            (`page_not_found`).", body = ErrorBody),
        (status = 422, description = "The document is not a PDF (`not_a_pdf`), or its page cannot be read \
            (`render_failed`).", body = ErrorBody),
        (status = 503, description = "The server cannot read pages (`renderer_unavailable`: poppler-utils is \
            not installed).", body = ErrorBody),
    )
)]
async fn words(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    PagePath(id, page): PagePath,
) -> Result<Json<PageWords>, ApiError> {
    let (id, number, bytes) = pdf_page(&tenant, &id, &page).await?;
    let reader = Pdftoppm::new(app.config.renderer.clone());
    confined(move || reader.words(&bytes, number)).await?.map(Json).map_err(|e| render_error(e, id, number))
}

/// The document's id, the page's number and the document's bytes, when the document is this tenant's PDF
/// and has that page.
async fn pdf_page(tenant: &TenantStore, id: &str, page: &str) -> Result<(DocumentId, u32, Bytes), ApiError> {
    let id: DocumentId = parse_id(id, "document")?;
    let (meta, bytes) = tenant.document_content(id).await?.ok_or_else(|| not_found("document", &id.to_string()))?;
    if meta.kind != DocumentKind::Pdf {
        return Err(ApiError::Unprocessable {
            code: "not_a_pdf",
            message: format!("document {id} is {}, not a PDF: it has no pages to show", meta.kind.as_str()),
        });
    }
    let pages = meta.page_count.unwrap_or(0);
    let number = page.parse::<u32>().ok().filter(|n| (1..=pages).contains(n)).ok_or_else(|| ApiError::NotFound {
        code: "page_not_found",
        message: format!("document {id} has {pages} pages; pages count from 1"),
    })?;
    Ok((id, number, bytes))
}

/// Runs `work` (a confined poppler process) on a blocking thread, a few at a time.
async fn confined<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let _turn = renders().acquire_owned().await.map_err(|_| ApiError::Internal("waiting to render".into()))?;
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal("reading a page", &e))
}

fn render_error(e: ExtractError, id: DocumentId, number: u32) -> ApiError {
    match e {
        ExtractError::RendererUnavailable { reason } => {
            tracing::warn!(%reason, "pages cannot be rendered");
            ApiError::Unavailable {
                code: "renderer_unavailable",
                message: "this server cannot render pages: install poppler-utils (pdftoppm, pdftotext)".into(),
            }
        }
        e => ApiError::Unprocessable {
            code: "render_failed",
            message: format!("page {number} of document {id} could not be read: {e}"),
        },
    }
}
