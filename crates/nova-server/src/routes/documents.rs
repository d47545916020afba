//! Documents: upload (multipart or raw body), list, metadata, content.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use nova_core::{DocumentId, DocumentMeta, JobError};
use nova_store::NewDocument;
use serde::Deserialize;

use super::pages::{self, PageBody};
use super::{created_or_ok, not_found, parse_id, IdPath};
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::{AppState, ServerConfig};

pub fn router(config: &ServerConfig) -> Router<AppState> {
    // Multipart framing adds a little to the document itself.
    let body_limit = usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX).saturating_add(64 * 1024);
    Router::new()
        .route("/documents", post(upload).layer(DefaultBodyLimit::max(body_limit)).get(list))
        .route("/documents/{id}", get(show))
        .route("/documents/{id}/content", get(content))
}

/// `POST /v1/documents`: the bytes as multipart field `file`, or as the raw body.
#[utoipa::path(
    post,
    path = "/v1/documents",
    tag = "documents",
    summary = "Upload a document",
    description = "PDF, e-invoice XML (CII, UBL) or plain text, recognised from the bytes (never from a file \
                   name or `Content-Type`). Stored once per content: the same bytes again answer `200` with the \
                   document already stored.",
    request_body(
        description = "The document: multipart field `file`, or the raw body.",
        content(
            (crate::schemas::UploadForm = "multipart/form-data"),
            (crate::schemas::Binary = "application/octet-stream"),
            (crate::schemas::Binary = "application/pdf"),
            (crate::schemas::Binary = "application/xml"),
            (String = "text/plain"),
        )
    ),
    responses(
        (status = 201, description = "Stored.", body = DocumentMeta),
        (status = 200, description = "These bytes were stored before: that document.", body = DocumentMeta),
        (status = 400, description = "Empty, or a malformed multipart body (`empty_document`, `empty`, \
            `malformed_multipart`, `missing_file`, `unreadable_body`, `invalid_idempotency_key`).", body = ErrorBody),
        (status = 413, description = "Larger than the server's upload limit (`payload_too_large`).", body = ErrorBody),
        (status = 415, description = "Not a kind NOVA takes (`unsupported_document`).", body = ErrorBody),
        (status = 422, description = "Recognised but unreadable, such as a corrupt PDF.", body = ErrorBody),
    )
)]
async fn upload(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let limit = app.config.max_upload_bytes;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit + 64 * 1024) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (bytes, filename) = if content_type.starts_with("multipart/form-data") {
        read_multipart(req, limit).await?
    } else {
        (read_capped(req.into_body(), limit, declared).await?, None)
    };
    if bytes.is_empty() {
        return Err(ApiError::BadRequest {
            code: "empty_document",
            message: "the upload is empty: send the document's bytes as the body or as multipart field `file`".into(),
        });
    }

    // Recognise and validate the bytes off the async runtime: PDF parsing is CPU work on untrusted input.
    let probe = bytes.clone();
    let extractor = app.extractor.clone();
    let info = tokio::task::spawn_blocking(move || extractor.inspect(&probe))
        .await
        .map_err(|e| ApiError::internal("inspecting the upload", &e))?
        .map_err(rejected_document)?;
    let (doc, created) =
        tenant.put_document(NewDocument { bytes, filename, kind: info.kind, page_count: info.page_count }).await?;
    Ok((created_or_ok(created), Json(doc)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Items per page, 1 to 200; default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// The `next_cursor` of the page before.
    #[param(value_type = Option<String>, pattern = "^[0-9a-fA-F]{32}$")]
    cursor: Option<String>,
}

/// `GET /v1/documents?limit=&cursor=`: documents newest first, a page at a time; `next_cursor` asks for the
/// next page.
#[utoipa::path(
    get,
    path = "/v1/documents",
    tag = "documents",
    summary = "List documents",
    params(ListQuery),
    responses(
        (status = 200, description = "A page, newest first.", body = PageBody<DocumentMeta>),
        (status = 400, description = "An unknown or malformed parameter (`invalid_query`).", body = ErrorBody),
        (status = 422, description = "A bad `limit` or `cursor` (`invalid_limit`, `invalid_cursor`).",
            body = ErrorBody),
    )
)]
async fn list(
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<PageBody<DocumentMeta>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let limit = pages::limit(query.limit.as_deref())?;
    let before = pages::cursor(query.cursor.as_deref(), DocumentId::PREFIX)?;
    let page = tenant.list_documents(before, limit).await?;
    Ok(Json(PageBody::new(page, DocumentId::PREFIX, |doc| doc.id.to_string())))
}

/// `GET /v1/documents/{id}`: a document's metadata.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}",
    tag = "documents",
    summary = "Show a document",
    params(("id" = DocumentId, Path, description = "The document's id.")),
    responses(
        (status = 200, description = "The document.", body = DocumentMeta),
        (status = 404, description = "No such document of this tenant (`document_not_found`).", body = ErrorBody),
    )
)]
async fn show(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Json<DocumentMeta>, ApiError> {
    let id: DocumentId = parse_id(&id, "document")?;
    tenant.get_document(id).await?.map(Json).ok_or_else(|| not_found("document", &id.to_string()))
}

/// `GET /v1/documents/{id}/content`: the bytes as uploaded.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}/content",
    tag = "documents",
    summary = "Download a document's bytes",
    params(("id" = DocumentId, Path, description = "The document's id.")),
    responses(
        (status = 200, description = "The bytes, with the content type of the document's kind.", content(
            (crate::schemas::Binary = "application/pdf"),
            (crate::schemas::Binary = "application/xml"),
            (String = "text/plain"),
        )),
        (status = 404, description = "No such document of this tenant (`document_not_found`).", body = ErrorBody),
    )
)]
async fn content(Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<Response, ApiError> {
    let id: DocumentId = parse_id(&id, "document")?;
    let (meta, bytes) = tenant.document_content(id).await?.ok_or_else(|| not_found("document", &id.to_string()))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, meta.content_type)], bytes).into_response())
}

/// The part named `file` of a multipart body, read up to `limit` bytes.
async fn read_multipart(req: Request, limit: u64) -> Result<(Bytes, Option<String>), ApiError> {
    let mut multipart = Multipart::from_request(req, &()).await.map_err(|e| ApiError::BadRequest {
        code: "malformed_multipart",
        message: format!("the multipart body cannot be read: {}", e.body_text()),
    })?;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error(limit))? {
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().map(clean_filename);
        let mut buf = Capped::new(limit);
        while let Some(chunk) = field.chunk().await.map_err(multipart_error(limit))? {
            buf.push(&chunk)?;
        }
        return Ok((buf.finish(), filename));
    }
    Err(ApiError::BadRequest { code: "missing_file", message: "the multipart body has no field named `file`".into() })
}

fn multipart_error(limit: u64) -> impl Fn(axum::extract::multipart::MultipartError) -> ApiError {
    move |e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadRequest {
                code: "malformed_multipart",
                message: format!("the multipart body cannot be read: {}", e.body_text()),
            }
        }
    }
}

/// Room made at once for a body of a declared length, at most: past it the buffer grows as bytes arrive, so
/// a client that declares much and sends little holds little memory.
const MAX_RESERVED: u64 = 1024 * 1024;

/// A raw body read up to `limit` bytes, in a buffer sized for its declared length (up to [`MAX_RESERVED`])
/// rather than grown and copied chunk by chunk.
async fn read_capped(body: Body, limit: u64, declared: Option<u64>) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = Capped::new(limit);
    buf.buf.reserve(declared.unwrap_or(0).min(limit).min(MAX_RESERVED) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if e.to_string().contains("length limit") {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest { code: "unreadable_body", message: format!("the body could not be read: {e}") }
            }
        })?;
        buf.push(&chunk)?;
    }
    Ok(buf.finish())
}

/// A buffer that refuses to grow past its limit.
struct Capped {
    buf: BytesMut,
    limit: u64,
}

impl Capped {
    fn new(limit: u64) -> Self {
        Self { buf: BytesMut::new(), limit }
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        if (self.buf.len() + chunk.len()) as u64 > self.limit {
            return Err(ApiError::PayloadTooLarge { limit: self.limit });
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// The last path component of a client's file name, without control characters, at most 255 characters.
fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.chars().filter(|c| !c.is_control()).take(255).collect()
}

fn rejected_document(e: JobError) -> ApiError {
    // The codes an upload check answers with, as the static strings the API's errors carry.
    const CODES: &[&str] = &[
        "invalid_pdf",
        "encrypted_pdf",
        "no_pages",
        "invalid_xml",
        "too_many_pages",
        "stream_too_large",
        "decoded_too_large",
        "too_many_operators",
        "nesting_too_deep",
        "extraction_crashed",
        "memory_limit",
        "timeout",
        "output_limit",
    ];
    match e.code.as_str() {
        "unsupported_document" => ApiError::UnsupportedMediaType {
            code: "unsupported_document",
            message: "NOVA takes PDF, e-invoice XML (CII, UBL) and plain-text documents; these bytes are none of them"
                .into(),
        },
        "empty_document" => ApiError::BadRequest { code: "empty_document", message: e.message },
        "extraction_unavailable" => {
            tracing::error!(error = %e.message, "uploads cannot be checked");
            ApiError::Unavailable {
                code: "extraction_unavailable",
                message: "documents cannot be read on this server right now".into(),
            }
        }
        code => match CODES.iter().find(|&&c| c == code) {
            Some(code) => ApiError::Unprocessable { code, message: e.message },
            None => ApiError::Unprocessable { code: "invalid_document", message: e.message },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::clean_filename;

    #[test]
    fn file_names_lose_their_directories_and_control_characters() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\Users\\me\\inv.pdf"), "inv.pdf");
        assert_eq!(clean_filename("a\nb.pdf"), "ab.pdf");
        assert_eq!(clean_filename(&"x".repeat(300)).len(), 255);
    }
}
