//! A JSON body extractor whose rejections speak the API's error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest JSON body taken: axum's default limit.
const JSON_BODY_LIMIT: u64 = 2 * 1024 * 1024;

/// Like `axum::Json`, but a malformed or mistyped body becomes an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest {
                    code: "malformed_json",
                    message: format!("the body is not valid JSON: {}", e.body_text()),
                },
                JsonRejection::JsonDataError(e) => {
                    ApiError::Unprocessable { code: "invalid_request", message: e.body_text() }
                }
                JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType {
                    code: "expected_json",
                    message: "send the body as JSON with `Content-Type: application/json`".into(),
                },
                // Past axum's default body limit, which JSON bodies keep (uploads set their own).
                other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge { limit: JSON_BODY_LIMIT }
                }
                other => ApiError::BadRequest { code: "unreadable_body", message: other.body_text() },
            }),
        }
    }
}
