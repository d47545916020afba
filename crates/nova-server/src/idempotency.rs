//! `Idempotency-Key` on every POST: a client that retries a request (a timeout, a dropped connection) with
//! the same key gets the first answer again, status and body, instead of a second upload, job or execution.
//!
//! - the same key with the same request (method, path and body, byte for byte) replays the first answer,
//!   marked `Idempotent-Replayed: true`;
//! - the same key with another request is `409 idempotency_key_reused`;
//! - the same key while its first request still runs is `409 idempotency_request_in_flight`;
//! - keys are per tenant and kept 24 hours; a `5xx` answer is not kept (the failure was the server's, so a
//!   retry runs again), and neither is a request whose client went away before it was answered.
//!
//! The body is read whole before the request runs, to fingerprint it (uploads are capped at the server's
//! upload limit, as without a key).

use std::time::Duration;

use axum::body::{to_bytes, Body, HttpBody as _};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nova_store::{Idempotent, StoredResponse, TenantStore};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// How long an answer is kept for replay.
pub const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);
const MAX_KEY: usize = 255;
/// Answers larger than this are not kept (the API's POST answers are small JSON documents).
const MAX_KEPT_BODY: usize = 1024 * 1024;

/// The middleware; runs after [`crate::auth::authenticate`].
pub async fn idempotent(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key("idempotency-key") {
        return next.run(req).await;
    }
    match run(&app, req, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(app: &AppState, req: Request, next: Next) -> Result<Response, Response> {
    let key = key(req.headers().get("idempotency-key")).map_err(IntoResponse::into_response)?;
    let tenant = req
        .extensions()
        .get::<Caller>()
        .map(|caller| app.store.of(caller))
        .ok_or_else(|| ApiError::Internal("identifying the caller".into()).into_response())?;
    let (parts, body) = req.into_parts();
    let limit = usize::try_from(app.config.max_upload_bytes).unwrap_or(usize::MAX).saturating_add(64 * 1024);
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit: app.config.max_upload_bytes }.into_response())?;
    // The path as the client sent it: inside `/v1`, axum hands the route the rest of it.
    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |original| &original.0);
    let fingerprint = fingerprint(&parts.method, uri.path_and_query().map_or("", |p| p.as_str()), &bytes);

    let begun = tenant.begin_idempotent(&key, &fingerprint, KEEP_FOR).await;
    match begun.map_err(|e| ApiError::from(e).into_response())? {
        Idempotent::Run => {}
        Idempotent::Replay(stored) => return Ok(replay(stored)),
        Idempotent::InFlight => {
            return Err(ApiError::Conflict {
                code: "idempotency_request_in_flight",
                message: "a request with this Idempotency-Key is still running; retry once it has answered".into(),
            }
            .into_response())
        }
        Idempotent::Mismatch => {
            return Err(ApiError::Conflict {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used for another request (method, path or body); \
                          use a new key for a new request"
                    .into(),
            }
            .into_response())
        }
    }

    // Dropped without being disarmed (the client went away, the handler panicked, the answer cannot be
    // kept): the key is freed for a retry.
    let mut guard = Abandon { tenant: tenant.clone(), key: Some(key) };
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if response.status().is_server_error() {
        // Freed before answering, so that the client's retry finds the key free.
        if let Some(key) = guard.key.take() {
            if let Err(e) = tenant.abandon_idempotent(&key).await {
                tracing::warn!(error = %nova_core::error_chain(&e), "freeing an idempotency key failed");
            }
        }
        return Ok(response);
    }
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    // An answer of unknown length, or longer than is kept, is passed on as it is: buffering it would hold it
    // back (a long response's text) or fail it.
    let too_big = response.body().size_hint().upper().is_none_or(|n| n > MAX_KEPT_BODY as u64);
    if streamed || too_big {
        // An event stream is not an answer to keep (it would be held back until it ends): the key is freed.
        if let Some(key) = guard.key.take() {
            if let Err(e) = tenant.abandon_idempotent(&key).await {
                tracing::warn!(error = %nova_core::error_chain(&e), "freeing an idempotency key failed");
            }
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = to_bytes(body, MAX_KEPT_BODY).await else {
        return Err(ApiError::Internal("keeping the answer of an idempotent request".into()).into_response());
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return Ok(Response::from_parts(parts, Body::from(body)));
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        content_type: parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string),
        body: text,
    };
    if let Some(key) = guard.key.take() {
        if let Err(e) = tenant.finish_idempotent(&key, &stored).await {
            // The answer stands; the key is freed so that a retry runs rather than waits on it.
            tracing::error!(error = %nova_core::error_chain(&e), "keeping an idempotent answer failed");
            guard.key = Some(key);
        }
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn key(value: Option<&HeaderValue>) -> Result<String, ApiError> {
    match value.and_then(|v| v.to_str().ok()) {
        Some(key) if (1..=MAX_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(key.to_string())
        }
        _ => Err(ApiError::BadRequest {
            code: "invalid_idempotency_key",
            message: format!("Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"),
        }),
    }
}

/// SHA-256 of the method, the path with its query, and the body: what "the same request" means.
pub fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    match stored.content_type.as_deref().map(HeaderValue::from_str) {
        Some(Ok(content_type)) => {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        _ => {
            headers.remove(header::CONTENT_TYPE);
        }
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Frees an idempotency key whose request did not finish with an answer to keep.
struct Abandon {
    tenant: TenantStore,
    key: Option<String>,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let tenant = self.tenant.clone();
        // Drop cannot wait; the deletion runs on its own (a key left behind expires with its record anyway).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = tenant.abandon_idempotent(&key).await {
                    tracing::warn!(error = %nova_core::error_chain(&e), "freeing an idempotency key failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        let check = |text: &str| key(Some(&HeaderValue::from_str(text).unwrap())).is_ok();
        assert!(check("order-1234"));
        assert!(check(&"k".repeat(255)));
        assert!(!check(""));
        assert!(!check("with space"));
        assert!(!check(&"k".repeat(256)));
        assert!(key(None).is_err());
    }

    #[test]
    fn fingerprints_tell_method_path_and_body_apart() {
        let base = fingerprint(&Method::POST, "/v1/jobs", b"{}");
        assert_eq!(base, fingerprint(&Method::POST, "/v1/jobs", b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, "/v1/jobs", b"{ }"));
        assert_ne!(base, fingerprint(&Method::POST, "/v1/documents", b"{}"));
        assert_ne!(base, fingerprint(&Method::PUT, "/v1/jobs", b"{}"));
    }
}
