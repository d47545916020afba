//! Every request's id: the client's `X-Request-Id` when it is sane, else a fresh UUIDv7. The id is echoed in
//! the response, set on the request's tracing span (see [`make_span`]), and stored with a job the request
//! submits, so that one id leads from the request's log lines to its job's attempts.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Span;

/// The header that carries the id, both ways.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id kept; a longer one is replaced.
pub const MAX_REQUEST_ID: usize = 128;

/// The middleware: makes sure the request carries a sane `X-Request-Id` (replacing a client's that is not)
/// for everything inside, and echoes it in the response.
pub async fn assign(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&REQUEST_ID).filter(|v| sane(v)) {
        Some(given) => given.clone(),
        None => {
            let fresh = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string());
            let fresh = fresh.expect("a UUID's text is a valid header value");
            req.headers_mut().insert(REQUEST_ID.clone(), fresh.clone());
            fresh
        }
    };
    let mut response = next.run(req).await;
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    response
}

/// The request's id, as [`assign`] set it (`None` outside that middleware).
pub fn of(headers: &HeaderMap) -> Option<String> {
    headers.get(&REQUEST_ID).filter(|v| sane(v)).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Printable ASCII without spaces, 1 to [`MAX_REQUEST_ID`] bytes: safe to log, store and echo as it is.
fn sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// The span of one request for `TraceLayer`: its method, path and id, and none of its headers (so the
/// `Authorization` header and the API key in it never reach a log).
pub fn make_span(req: &Request) -> Span {
    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_printable_ids_of_sane_length_are_kept() {
        let ok = |text: &str| sane(&HeaderValue::from_str(text).unwrap());
        assert!(ok("req-42"));
        assert!(ok("0191d0a0-6f1e-7c3a-9d7e-2b1f1c1a0b0c"));
        assert!(ok(&"a".repeat(MAX_REQUEST_ID)));
        assert!(!ok(&"a".repeat(MAX_REQUEST_ID + 1)));
        assert!(!ok(""));
        assert!(!ok("has space"));
        assert!(!ok("tab\there"));
        assert!(!sane(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()), "non-ASCII");
    }
}
