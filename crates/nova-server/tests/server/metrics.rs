//! `GET /metrics`, request ids, and what the request logs leave out.
//!
//! One test of this file scrapes a server with jobs: the recorder and its gauges are the process's, shared by
//! every app a test starts, so a second test with jobs would race it for the queue's gauges.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nova_server::{AppState, Limiter, ServerConfig};
use serde_json::{json, Value};

use crate::helpers::{error_code, Options, TestApp};

/// One sample of the exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a Prometheus text page (comments skipped). Label values here hold no `,` or `"`.
fn parse(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    let labels = inner
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("label: {line}"));
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
            };
            Sample { name: name.to_string(), labels, value }
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`, summed over the rest (0 when none).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

async fn scrape(app: &TestApp) -> Vec<Sample> {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    parse(&response.text().await.unwrap())
}

#[tokio::test]
async fn requests_jobs_and_the_queue_are_counted_by_template_workflow_and_status() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 1, ..Options::default() }).await;
    let before = scrape(&app).await;

    // Requests: two unknown jobs (404 on one route template), one unknown route.
    let missing = "job_0190b0a0000070008000000000000001";
    for _ in 0..2 {
        let (status, body) = app.get(&format!("/v1/jobs/{missing}")).await;
        assert_eq!((status, error_code(&body)), (404, "job_not_found"));
    }
    assert_eq!(app.get("/no/such/route").await.0, 404);
    // A job through the in-process worker, and one delayed for an hour, which waits.
    let (status, job) = app.post_json("/v1/jobs", &json!({"workflow": "noop", "input": {}})).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(app.wait_final(job["id"].as_str().unwrap()).await["status"], "succeeded");
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, _) = app.post_json("/v1/jobs", &json!({"workflow": "noop", "run_at": later})).await;
    assert_eq!(status, 202);

    let after = scrape(&app).await;
    let grew = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let job_404 = [("method", "GET"), ("route", "/v1/jobs/{id}"), ("status", "404")];
    assert_eq!(grew("nova_http_requests_total", &job_404), 2.0);
    assert_eq!(grew("nova_http_request_duration_seconds_count", &job_404), 2.0);
    let every_bucket = value(&after, "nova_http_request_duration_seconds_bucket", &[("le", "+Inf"), ("status", "404")]);
    assert!(every_bucket >= 2.0, "the histogram has buckets");
    assert!(grew("nova_http_requests_total", &[("route", "unmatched"), ("status", "404")]) >= 1.0);
    assert!(grew("nova_http_requests_total", &[("route", "/v1/jobs"), ("method", "POST"), ("status", "202")]) >= 2.0);
    // The route is the template, never the path: no id reaches a label.
    assert!(after.iter().all(|s| s.labels.values().all(|v| !v.contains("job_"))), "an id in a label");

    let succeeded = [("workflow", "noop"), ("outcome", "succeeded")];
    assert!(grew("nova_jobs_finished_total", &succeeded) >= 1.0);
    assert!(grew("nova_job_duration_seconds_count", &succeeded) >= 1.0);
    assert_eq!(value(&after, "nova_queue_jobs", &[("workflow", "noop"), ("state", "scheduled")]), 1.0);
    assert_eq!(value(&after, "nova_queue_jobs", &[("workflow", "noop"), ("state", "ready")]), 0.0);
    assert_eq!(value(&after, "nova_queue_jobs", &[("workflow", "noop"), ("state", "running")]), 0.0);
    for workflow in ["invoice.extract", "code.run", "noop"] {
        let age = after.iter().find(|s| {
            s.name == "nova_queue_oldest_ready_age_seconds"
                && s.labels.get("workflow").map(String::as_str) == Some(workflow)
        });
        assert_eq!(age.map(|s| s.value), Some(0.0), "{workflow}: every workflow has its gauge");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_request_id_is_echoed_and_follows_the_job_it_submits() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 1, ..Options::default() }).await;
    let submit = |id: Option<&str>| {
        let mut request = app.client.post(app.url("/v1/jobs")).json(&json!({"workflow": "noop"}));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        async move {
            let response = request.send().await.unwrap();
            let echoed = response.headers()["x-request-id"].to_str().unwrap().to_string();
            (echoed, response.json::<Value>().await.unwrap())
        }
    };
    let (echoed, job) = submit(Some("order-7781/retry-2")).await;
    assert_eq!(echoed, "order-7781/retry-2");
    assert_eq!(job["request_id"], "order-7781/retry-2");
    let done = app.wait_final(job["id"].as_str().unwrap()).await;
    assert_eq!(done["request_id"], "order-7781/retry-2", "the job keeps it: {done}");

    // No id, or one that is not sane (too long, spaces): the server makes one (a UUID) and uses it throughout.
    for given in [None, Some("has spaces"), Some(&"x".repeat(129)[..])] {
        let (echoed, job) = submit(given).await;
        assert!(uuid_like(&echoed), "{given:?} -> {echoed}");
        assert_eq!(job["request_id"], echoed.as_str());
    }
    // Every answer carries one, errors included; a job submitted otherwise has none to show.
    let response = app.client.get(app.url("/v1/jobs/job_nope")).send().await.unwrap();
    assert!(uuid_like(response.headers()["x-request-id"].to_str().unwrap()));
    let direct = app.store.enqueue(nova_store::NewJob::new(nova_core::Workflow::Noop, json!({}))).await.unwrap();
    let (_, shown) = app.get(&format!("/v1/jobs/{}", direct.job.id)).await;
    assert!(shown.get("request_id").is_none(), "{shown}");
    app.stop().await;
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Loopback peers scrape freely. Others need an API key: a router served without the peer's address
/// (so the peer counts as remote, as in `auth`) refuses them, then serves them with a key.
#[tokio::test]
async fn metrics_are_served_to_loopback_peers_and_otherwise_only_with_a_key() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let key = app.store.create_key("acme").await.unwrap();
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200, "loopback, even now that keys exist");

    let state = AppState::from(nova_server::AppParts {
        store: app.store.clone().into(),
        config: std::sync::Arc::new(ServerConfig { rate_limit: None, ..ServerConfig::default() }),
        wake_workers: Arc::default(),
        sandbox: Err("none".into()),
        sandboxes: Err("none".into()),
        limiter: Limiter::Off,
        extractor: nova_app::extraction::Extractor::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, nova_server::router(state)).await });
    let anonymous = app.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = app.client.get(&url).bearer_auth("nova_not_a_key").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let keyed = app.client.get(&url).bearer_auth(&key.secret).send().await.unwrap();
    assert_eq!(keyed.status(), 200);
    assert!(keyed.text().await.unwrap().contains("nova_http_requests_total"));
    server.abort();
    app.stop().await;
}

/// A log sink for one test: everything the test's thread logs (a `#[tokio::test]` runs the server's
/// tasks on that thread too), as the JSON lines `nova serve --log-format json` writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_logs_carry_the_request_id_and_never_the_api_key() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_span_list(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 1, ..Options::default() }).await;
    let key = app.store.create_key("acme").await.unwrap();
    let response = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&key.secret)
        .header("x-request-id", "trace-me-123")
        .json(&json!({"workflow": "noop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let url = app.url(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current: Value = app.client.get(&url).bearer_auth(&key.secret).send().await.unwrap().json().await.unwrap();
        if current["status"] == "succeeded" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{current}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(!logs.contains(&key.secret), "the API key reached the logs");
    // A logged header is a field named after it, or its value. The start-up line that tells clients to send
    // `Authorization: Bearer ...` is neither (it may come after the key is made, as the server starts).
    let header_line = logs.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("\"authorization\"") || l.contains("bearer nova_")
    });
    assert!(header_line.is_none(), "a header reached the logs: {header_line:?}");
    let in_span = |line: &Value, span: &str| {
        line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["name"] == span && s["request_id"] == "trace-me-123"))
    };
    assert!(lines.iter().any(|l| in_span(l, "request")), "no request line carries the id:\n{logs}");
    let job_finished =
        lines.iter().find(|l| l["fields"]["message"] == "job finished").expect("the job's end is logged");
    assert!(in_span(job_finished, "job"), "the worker's line carries the request's id: {job_finished}");
}
