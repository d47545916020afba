//! The routes, one module per resource.

pub(crate) mod artifacts;
pub(crate) mod batch_results;
mod batch_stream;
pub(crate) mod batches;
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
pub(crate) mod responses;
pub(crate) mod sandboxes;
pub(crate) mod schedules;
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

/// The whole API; `docs` serves its OpenAPI document (`openapi.rs`, which is built from these routes).
pub fn router(state: AppState, streams_end: CancellationToken, docs: Router<AppState>) -> Router {
    // Every /v1 request: who is asking (auth), within its rate (ratelimit), then, for a POST with an
    // Idempotency-Key, replayed or run once (idempotency). Layers run outermost (last added) first.
    let v1 = documents::router(&state.config)
        .merge(jobs::router())
        .merge(batches::router())
        .merge(artifacts::router())
        .merge(executions::router())
        .merge(sandboxes::router(&state.config))
        .merge(programs::router())
        .merge(webhooks::router())
        .merge(usage::router())
        .merge(versions::router())
        .merge(exports::router())
        .merge(queue::router())
        .merge(responses::router())
        .merge(schedules::router())
        .merge(page_images::router())
        .layer(from_fn_with_state(state.clone(), idempotency::idempotent))
        .layer(from_fn_with_state(state.clone(), ratelimit::limit))
        .layer(from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .merge(health::router())
        .merge(crate::metrics::router(&state))
        .merge(docs)
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
        "schedule" => "schedule_not_found",
        "batch" => "batch_not_found",
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

#[cfg(test)]
mod tests {
    /// Tenancy by type: handlers get the caller's `TenantStore` (the `Tenant` extractor) and nothing
    /// unscoped. The compiler keeps `ServerStore`'s inner `Store` private to `auth.rs`; this keeps a route
    /// from naming the unscoped `Store` by another path.
    #[test]
    fn no_route_names_the_unscoped_store() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
        // The ways code names a type: a path, a field or argument, a generic, a use list.
        let namings = ["nova_store::Store", ": Store", "&Store", "<Store>", "{Store", " Store,", " Store}", "Store::"];
        let mut checked = 0;
        // Route modules and the files of modules that are folders (`responses/`).
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else {
                files.push(path);
            }
        }
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            // This test names them itself.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for naming in namings {
                // `nova_store::StoredProgram` is another type.
                let named = code
                    .match_indices(naming)
                    .any(|(at, _)| !code[at + naming.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'));
                assert!(
                    !named,
                    "{} names the unscoped `Store` (`{naming}`); use the caller's TenantStore",
                    path.display()
                );
            }
            checked += 1;
        }
        assert!(checked > 10, "the route modules were not found in {}", dir.display());
    }
}
