//! `GET /metrics`: the process's metrics in Prometheus's text format.
//!
//! Code everywhere records through the `metrics` facade (this crate: HTTP requests and `POST /v1/executions`;
//! `nova-app`: job outcomes, durations and `code.run` sandbox runs; `nova-llm`: model calls, tokens and
//! cost). The first router built in a process installs the Prometheus recorder, once; later routers (tests
//! build many) share it. Where another recorder was installed first, everything still runs and `/metrics`
//! answers `503`. The queue's gauges are read from the store at scrape time, so they are the same from
//! every API process on one database.
//!
//! Labels are names from code (workflows, routes as templates, statuses, outcomes, configured models),
//! never ids, paths or tenant data: each label has a handful of values, however much traffic there is.
//!
//! Who may scrape: loopback peers always; others with a valid API key (any tenant's), or with no key yet
//! made, not at all (as [`crate::auth`] answers `/v1`). The page holds counts only, no tenant's data.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::ApiError;
use crate::AppState;

/// The content type of Prometheus's text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route label of a request that matched no route (a 404 of the fallback).
const UNMATCHED: &str = "unmatched";

/// Bucket bounds, in seconds, of request durations.
const HTTP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Bucket bounds, in seconds, of job attempts and sandbox CPU time: from a no-op to the longest deadline.
const JOB_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed by the first call; `None` when another recorder was
/// installed first (metrics then go there, and `/metrics` answers `503`).
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("nova_http_request_duration_seconds".into()), HTTP_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("nova_job_duration_seconds".into()), JOB_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("nova_sandbox_cpu_seconds".into()), JOB_BUCKETS));
            match builder.and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed: GET /metrics answers 503");
                    None
                }
            }
        })
        .as_ref()
}

/// Keeps the recorder's histograms bounded between scrapes (they gather samples until rendered).
pub(crate) async fn upkeep() {
    let Some(handle) = recorder() else { return };
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// Serves this process's metrics alone (`GET /metrics`, no other route) on `listener` until `shutdown`: what
/// `nova worker --metrics-listen` runs, for worker processes that serve no API. Anyone who reaches the
/// address may read it, as the labels hold no ids or tenant data; bind it where only the scraper reaches.
pub async fn serve_alone(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = tokio::spawn(upkeep());
    let app = Router::new().route("/metrics", get(render_alone)).fallback(|| async {
        ApiError::NotFound { code: "route_not_found", message: "this address serves GET /metrics only".into() }
    });
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    upkeep.abort();
    served
}

async fn render_alone() -> Result<Response, ApiError> {
    let handle = recorder().ok_or_else(|| ApiError::Unavailable {
        code: "metrics_unavailable",
        message: "this process records its metrics elsewhere (another recorder was installed)".into(),
    })?;
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], handle.render()).into_response())
}

/// `GET /metrics`, for loopback peers and callers with an API key.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new().route("/metrics", get(scrape)).route_layer(from_fn_with_state(state.clone(), scrapers_only))
}

/// The HTTP middleware: counts each request and times it to its response's head, by method, route template
/// and status.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let labels = [("method", method.to_owned()), ("route", route), ("status", response.status().as_u16().to_string())];
    counter!("nova_http_requests_total", &labels).increment(1);
    histogram!("nova_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

/// Records one sandbox execution of `POST /v1/executions`.
pub(crate) fn record_sandbox_run(outcome: &nova_sandbox::Outcome) {
    let status = outcome.status.as_str();
    counter!("nova_sandbox_runs_total", "source" => "api", "outcome" => status).increment(1);
    histogram!("nova_sandbox_cpu_seconds", "source" => "api").record(outcome.cpu_time.as_secs_f64());
}

async fn scrape(State(app): State<AppState>) -> Result<Response, ApiError> {
    let handle = recorder().ok_or_else(|| ApiError::Unavailable {
        code: "metrics_unavailable",
        message: "this process records its metrics elsewhere (another recorder was installed)".into(),
    })?;
    match app.store.queue_stats().await {
        Ok(stats) => {
            for (workflow, queue) in &stats.workflows {
                let w = workflow.as_str();
                gauge!("nova_queue_jobs", "workflow" => w, "state" => "ready").set(queue.ready as f64);
                gauge!("nova_queue_jobs", "workflow" => w, "state" => "scheduled").set(queue.scheduled as f64);
                gauge!("nova_queue_jobs", "workflow" => w, "state" => "running").set(queue.running as f64);
                gauge!("nova_queue_oldest_ready_age_seconds", "workflow" => w)
                    .set(queue.oldest_ready_ms as f64 / 1000.0);
            }
        }
        // The rest of the page is still worth having; the gauges keep their last values.
        Err(e) => tracing::warn!(error = %nova_core::error_chain(&e), "reading the queue's counts for /metrics failed"),
    }
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], handle.render()).into_response())
}

/// Loopback peers pass (not requests forwarded by a proxy); anyone else is who
/// [`crate::auth::authenticate`] lets through (a valid API key).
async fn scrapers_only(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let peer = crate::auth::direct_peer(&req);
    if peer.is_some_and(|peer| peer.ip().to_canonical().is_loopback()) {
        return next.run(req).await;
    }
    crate::auth::authenticate(State(app), req, next).await
}

/// The standard methods by name; any other (clients may send any token) as `other`, to bound the label.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The `# HELP` lines, for every metric NOVA records (in this crate or another).
fn describe() {
    describe_counter!("nova_http_requests_total", "HTTP requests by method, route template and status.");
    describe_histogram!(
        "nova_http_request_duration_seconds",
        Unit::Seconds,
        "Time to each response's head, by method, route template and status."
    );
    describe_gauge!(
        "nova_queue_jobs",
        "Unfinished jobs by workflow and state: ready (queued or retrying, due), scheduled (not yet due), running."
    );
    describe_gauge!(
        "nova_queue_oldest_ready_age_seconds",
        Unit::Seconds,
        "How long the oldest ready job of each workflow has waited since it was due."
    );
    describe_counter!(
        "nova_jobs_finished_total",
        "Attempts ended by this process's workers, by workflow and outcome (succeeded, failed, retrying, \
         canceled, released, lease_lost, store_failed)."
    );
    describe_histogram!("nova_job_duration_seconds", Unit::Seconds, "Attempt durations by workflow and outcome.");
    describe_counter!("nova_sandbox_runs_total", "Sandbox executions by source (api, job) and outcome status.");
    describe_histogram!("nova_sandbox_cpu_seconds", Unit::Seconds, "CPU time of sandbox executions by source.");
    describe_gauge!("nova_sandboxes_live", "Sandboxes (sessions that live across calls) running in this process.");
    describe_counter!("nova_llm_calls_total", "Model calls (retries included once) by model and outcome (ok, error).");
    describe_counter!("nova_llm_tokens_total", "Model tokens by model and direction (in, out).");
    describe_counter!(
        "nova_llm_cost_micros_total",
        "Model cost by model, in millionths of the price table's currency (NOVA_LLM_PRICES, usually USD)."
    );
}
