//! The routes, one module per resource.

pub(crate) mod artifacts;
pub(crate) mod documents;
pub(crate) mod executions;
pub(crate) mod exports;
pub(crate) mod health;
mod job_stream;
pub(crate) mod jobs;
pub(crate) mod jobs_watch;
pub(crate) mod page_images;
mod pages;
pub(crate) mod programs;
pub(crate) mod queue;
pub(crate) mod usage;
pub(crate) mod versions;
pub(crate) mod webhooks;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::{Extension, Router};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::{auth, idempotency, ratelimit, AppState};

/// Cancelled when the server shuts down: open event streams end then, rather than hold the shutdown until
/// their jobs finish.
#[derive(Clone)]
pub(crate) struct StreamsEnd(pub(crate) CancellationToken);

pub fn router(state: AppState, streams_end: CancellationToken) -> Router {
    // Every /v1 request: who is asking (auth), within its rate (ratelimit), then, for a POST with an
    // Idempotency-Key, replayed or run once (idempotency). Layers run outermost (last added) first.
    let v1 = documents::router(&state.config)
        .merge(jobs::router())
        .merge(artifacts::router())
        .merge(executions::router())
        .merge(programs::router())
        .merge(webhooks::router())
        .merge(usage::router())
        .merge(versions::router())
        .merge(exports::router())
        .merge(queue::router())
        .merge(page_images::router())
        .layer(from_fn_with_state(state.clone(), idempotency::idempotent))
        .layer(from_fn_with_state(state.clone(), ratelimit::limit))
        .layer(from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .merge(health::router())
        .merge(crate::metrics::router(&state))
        .merge(crate::openapi::router())
        .merge(crate::console::router())
        .nest("/v1", v1)
        .fallback(|| async {
            ApiError::NotFound { code: "route_not_found", message: "no such route; the API lives under /v1".into() }
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(StreamsEnd(streams_end)))
        // After routing (so the route template is known): metrics, then the request's span, inside its id.
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(crate::request_id::make_span))
        .layer(axum::middleware::from_fn(crate::request_id::assign))
        .with_state(state)
}

/// Parses a path id, answering 404 for a malformed one just as for an unknown one (ids are opaque).
fn parse_id<T: std::str::FromStr>(text: &str, what: &'static str) -> Result<T, ApiError> {
    text.parse().map_err(|_| not_found(what, text))
}

/// A path's `{id}` as text. It never rejects a request: an id whose percent-decoding is not UTF-8 is
/// `(not UTF-8)`, so that it answers the API's `404` like any malformed id rather than axum's plain-text `400`.
struct IdPath(String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(IdPath(id)),
            Err(_) => Ok(IdPath("(not UTF-8)".into())),
        }
    }
}

fn not_found(what: &'static str, id: &str) -> ApiError {
    let code = match what {
        "document" => "document_not_found",
        "webhook message" => "delivery_not_found",
        _ => "job_not_found",
    };
    let shown: String = id.chars().take(80).collect();
    ApiError::NotFound { code, message: format!("no {what} with id `{shown}`") }
}

/// 201 for a new resource, 200 for one that already existed.
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}
