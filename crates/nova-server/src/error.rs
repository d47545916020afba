//! The API's one error type. Every error leaves as `{"error": {"code": "...", "message": "..."}}` with a
//! status picked here; `code` is stable for programs, `message` is for people. Internal failures are logged
//! once, here, and reach the client only as a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The body of every error answer, as the OpenAPI document describes it: `{"error": {"code", "message"}}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `job_not_found`, `invalid_request`, `rate_limited`, ...
    #[schema(examples("job_not_found"))]
    pub code: String,
    /// For people; may change.
    pub message: String,
}

#[derive(Debug)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, a missing part, an id that cannot be one).
    BadRequest { code: &'static str, message: String },
    /// 401: no API key, or one that opens nothing; sent with `WWW-Authenticate: Bearer`.
    Unauthorized { code: &'static str, message: String },
    /// 403: the request may not be made from where it comes (a server without keys answers loopback only).
    Forbidden { code: &'static str, message: String },
    /// 404: the route or the resource does not exist. Another tenant's resource is one that does not exist.
    NotFound { code: &'static str, message: String },
    /// 405.
    MethodNotAllowed,
    /// 409: the resource is not in a state that allows this (a result asked of an unfinished job).
    Conflict { code: &'static str, message: String },
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge { limit: u64 },
    /// 415: a body of a kind NOVA does not take.
    UnsupportedMediaType { code: &'static str, message: String },
    /// 422: well-formed, but the content is wrong (unknown workflow, corrupt PDF).
    Unprocessable { code: &'static str, message: String },
    /// 429: the key's request rate is spent; `Retry-After` says when to try again (whole seconds, at least 1).
    TooManyRequests { retry_after_secs: u64 },
    /// 429: a quota of the tenant is used up (its unfinished jobs); it frees as work finishes.
    QuotaExceeded { code: &'static str, message: String },
    /// 503: a dependency is down.
    Unavailable { code: &'static str, message: String },
    /// 500: a bug or an unexpected failure; the details go to the log only.
    Internal(String),
}

impl ApiError {
    pub fn internal(what: &str, error: &dyn std::error::Error) -> Self {
        tracing::error!(error = %nova_core::error_chain(error), "{what} failed");
        ApiError::Internal(what.to_string())
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message.clone()),
            ApiError::Unauthorized { code, message } => (StatusCode::UNAUTHORIZED, code, message.clone()),
            ApiError::Forbidden { code, message } => (StatusCode::FORBIDDEN, code, message.clone()),
            ApiError::NotFound { code, message } => (StatusCode::NOT_FOUND, code, message.clone()),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method".into())
            }
            ApiError::Conflict { code, message } => (StatusCode::CONFLICT, code, message.clone()),
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than the limit of {limit} bytes"),
            ),
            ApiError::UnsupportedMediaType { code, message } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, code, message.clone())
            }
            ApiError::Unprocessable { code, message } => (StatusCode::UNPROCESSABLE_ENTITY, code, message.clone()),
            ApiError::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests for this API key; try again in {retry_after_secs} s"),
            ),
            ApiError::QuotaExceeded { code, message } => (StatusCode::TOO_MANY_REQUESTS, code, message.clone()),
            ApiError::Unavailable { code, message } => (StatusCode::SERVICE_UNAVAILABLE, code, message.clone()),
            ApiError::Internal(what) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("an internal error occurred while {what}; it has been logged"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = ErrorBody { error: ErrorDetail { code: code.to_string(), message } };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            // RFC 6750: a missing key gets the bare challenge, a wrong one says the token is invalid.
            ApiError::Unauthorized { code: "missing_api_key", .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"nova\""));
            }
            ApiError::Unauthorized { .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"nova\", error=\"invalid_token\""),
                );
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// Maps a store failure to a 500, logged once here.
impl From<nova_store::StoreError> for ApiError {
    fn from(e: nova_store::StoreError) -> Self {
        ApiError::internal("using the store", &e)
    }
}
