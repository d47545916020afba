//! Webhooks over HTTP: a job's events reach a receiver signed per Standard Webhooks, failures are retried
//! then dead-lettered and resent through the API, non-public destinations are refused (in the URL, after
//! DNS, and on redirects), and messages belong to their tenant.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use nova_app::webhooks::{sign, AllowList, WebhookConfig};
use nova_server::ServerConfig;
use serde_json::{json, Value};

use crate::helpers::{error_code, Options, TestApp};

/// What a receiver got: the path, the headers and the body of each request.
#[derive(Default)]
struct Received {
    requests: Vec<(String, HeaderMap, String)>,
    /// Statuses to answer, in order; 200 when empty.
    script: VecDeque<u16>,
}

type Shared = Arc<Mutex<Received>>;

/// A receiver on 127.0.0.1: `/hook` answers by the script; `/to-literal` redirects to `/hook` by the
/// address 127.0.0.1, `/to-name` by the name `localhost`.
async fn receiver() -> (String, Shared) {
    let shared = Shared::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    async fn hook(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let mut r = s.lock().unwrap();
        r.requests.push(("/hook".into(), headers, String::from_utf8_lossy(&body).into_owned()));
        StatusCode::from_u16(r.script.pop_front().unwrap_or(200)).unwrap()
    }
    let redirect = |to: String| {
        move || async move {
            Response::builder().status(307).header("location", to).body(axum::body::Body::empty()).unwrap()
        }
    };
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/to-literal", post(redirect(format!("http://127.0.0.1:{port}/hook"))))
        .route("/to-name", post(redirect(format!("http://localhost:{port}/hook"))))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app.into_make_service()).await.unwrap() });
    (format!("localhost:{port}"), shared)
}

/// An app whose webhooks retry fast: 20 ms apart, for `max_age`, to destinations `allow` names.
async fn app(allow: &str, max_age: Duration) -> TestApp {
    let webhooks = WebhookConfig {
        max_age,
        delays: vec![Duration::from_millis(20)],
        poll_interval: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        allow: allow.parse::<AllowList>().unwrap(),
        ..WebhookConfig::default()
    };
    let config = ServerConfig { webhook_allow: webhooks.allow.clone(), rate_limit: None, ..ServerConfig::default() };
    TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { config, webhooks, ..Options::default() }).await
}

async fn submit(app: &TestApp, hook: Value) -> String {
    let (status, job) = app.post_json("/v1/jobs", &json!({"workflow": "noop", "webhook": hook})).await;
    assert_eq!(status, 202, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// Polls the job's messages until `done` holds for the list; fails after 30 s.
async fn wait_deliveries(app: &TestApp, job: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = app.get(&format!("/v1/webhooks/deliveries?job_id={job}")).await;
        assert_eq!(status, 200, "{page}");
        let items = page["data"].as_array().unwrap().clone();
        if done(&items) {
            return items;
        }
        assert!(tokio::time::Instant::now() < deadline, "deliveries of {job} never settled: {items:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_have(status: &'static str) -> impl Fn(&[Value]) -> bool {
    move |items| !items.is_empty() && items.iter().all(|d| d["status"] == status)
}

#[tokio::test]
async fn a_job_s_end_reaches_the_receiver_signed_once() {
    let (host, received) = receiver().await;
    let app = app("localhost", Duration::from_secs(60)).await;
    let job = submit(&app, json!({"url": format!("http://{host}/hook")})).await;
    let items = wait_deliveries(&app, &job, all_have("delivered")).await;
    assert_eq!(items.len(), 1, "only the job's end by default: {items:?}");
    assert_eq!((items[0]["event_type"].as_str(), items[0]["attempts"].as_u64()), (Some("job.succeeded"), Some(1)));

    let (_, secret) = app.get("/v1/webhooks/secret").await;
    let secret = secret["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let requests = std::mem::take(&mut received.lock().unwrap().requests);
    assert_eq!(requests.len(), 1);
    let (_, headers, body) = &requests[0];
    let header = |name: &str| headers[name].to_str().unwrap().to_string();
    assert_eq!(header("webhook-id"), items[0]["id"].as_str().unwrap());
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    assert_eq!(header("webhook-signature"), sign(&secret, &header("webhook-id"), timestamp, body).unwrap());
    assert_eq!(header("content-type"), "application/json");
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["type"], "job.succeeded");
    assert_eq!(payload["data"]["job_id"], job);
    assert_eq!(payload["data"]["workflow"], "noop");

    // Event filters: only what was asked for, in order.
    let job =
        submit(&app, json!({"url": format!("http://{host}/hook"), "events": ["job.started", "job.queued"]})).await;
    let items = wait_deliveries(&app, &job, |items| items.len() == 2 && all_have("delivered")(items)).await;
    let mut types: Vec<&str> = items.iter().map(|d| d["event_type"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["job.queued", "job.started"]);
    app.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_then_dead_then_resent() {
    let (host, received) = receiver().await;
    received.lock().unwrap().script.extend([500, 503]);
    let app = app("localhost", Duration::from_secs(60)).await;
    let job = submit(&app, json!({"url": format!("http://{host}/hook")})).await;
    let items = wait_deliveries(&app, &job, all_have("delivered")).await;
    assert_eq!(items[0]["attempts"], 3, "two failures, then success: {items:?}");
    assert_eq!(received.lock().unwrap().requests.len(), 3);
    let ids: Vec<String> =
        received.lock().unwrap().requests.iter().map(|r| r.1["webhook-id"].to_str().unwrap().into()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "every attempt carries the same webhook-id");
    app.stop().await;

    // A receiver that keeps failing, with a short retry window: the message dies.
    let app = self::app("localhost", Duration::from_millis(300)).await;
    received.lock().unwrap().script.extend([500; 1000]);
    let job = submit(&app, json!({"url": format!("http://{host}/hook")})).await;
    let items = wait_deliveries(&app, &job, all_have("dead")).await;
    assert!(items[0]["attempts"].as_u64().unwrap() >= 2, "{items:?}");
    assert_eq!(items[0]["last_status"], 500);
    let (status, dead) = app.get("/v1/webhooks/deliveries?status=dead").await;
    assert_eq!((status, dead["data"].as_array().unwrap().len()), (200, 1));

    // Resent once the receiver is fixed: delivered, attempts counted afresh.
    received.lock().unwrap().script.clear();
    let id = items[0]["id"].as_str().unwrap();
    let (status, resent) = app.post_json(&format!("/v1/webhooks/deliveries/{id}/resend"), &json!({})).await;
    assert_eq!((status, resent["status"].as_str()), (200, Some("pending")), "{resent}");
    let items = wait_deliveries(&app, &job, all_have("delivered")).await;
    assert_eq!(items[0]["attempts"], 1);
    let (status, body) = app.get(&format!("/v1/webhooks/deliveries/{id}")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("delivered")));
    let (status, body) = app.get("/v1/webhooks/deliveries/msg_0192f0c1d2e37000800000000000000a").await;
    assert_eq!((status, error_code(&body)), (404, "delivery_not_found"));
    app.stop().await;
}

#[tokio::test]
async fn non_public_destinations_are_refused_unless_allowed() {
    let (host, received) = receiver().await;
    let port = host.rsplit(':').next().unwrap();
    let app = app("", Duration::from_millis(200)).await;
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::1]:{port}/hook"),
        "ftp://example.com/".to_string(),
    ] {
        let (status, body) = app.post_json("/v1/jobs", &json!({"workflow": "noop", "webhook": {"url": url}})).await;
        assert_eq!((status, error_code(&body)), (422, "invalid_webhook_url"), "{url}: {body}");
    }
    let (status, body) = app
        .post_json(
            "/v1/jobs",
            &json!({"workflow": "noop", "webhook": {"url": "https://example.com/", "events": ["job.exploded"]}}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (422, "invalid_webhook_events"), "{body}");

    // A name is checked after it is resolved: `localhost` is loopback, never reached.
    let job = submit(&app, json!({"url": format!("http://{host}/hook")})).await;
    let items = wait_deliveries(&app, &job, all_have("dead")).await;
    let error = items[0]["last_error"].as_str().unwrap();
    assert!(error.contains("no public address"), "{error}");
    app.stop().await;

    // Allowed by name, the receiver is reached; a redirect to an address the list does not name is not
    // followed, a redirect to the allowed name is.
    let app = self::app("localhost", Duration::from_millis(200)).await;
    let job = submit(&app, json!({"url": format!("http://{host}/to-literal")})).await;
    let items = wait_deliveries(&app, &job, all_have("dead")).await;
    let error = items[0]["last_error"].as_str().unwrap();
    assert!(error.contains("redirect") && error.contains("127.0.0.1"), "{error}");
    assert!(received.lock().unwrap().requests.is_empty(), "nothing reached the receiver");
    let job = submit(&app, json!({"url": format!("http://{host}/to-name")})).await;
    wait_deliveries(&app, &job, all_have("delivered")).await;
    assert_eq!(received.lock().unwrap().requests.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn messages_and_secrets_belong_to_their_tenant() {
    let (host, _received) = receiver().await;
    let app = app("localhost", Duration::from_secs(60)).await;
    let a = app.store.create_key("a").await.unwrap().secret;
    let b = app.store.create_key("b").await.unwrap().secret;
    let call = |method: reqwest::Method, path: String, key: &str| {
        app.client.request(method, app.url(&path)).bearer_auth(key.to_string())
    };
    let body = json!({"workflow": "noop", "webhook": {"url": format!("http://{host}/hook")}});
    let job: Value =
        call(reqwest::Method::POST, "/v1/jobs".into(), &a).json(&body).send().await.unwrap().json().await.unwrap();
    let job = job["id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let id = loop {
        let page: Value = call(reqwest::Method::GET, format!("/v1/webhooks/deliveries?job_id={job}"), &a)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = page["data"][0]["id"].as_str() {
            break id.to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no message for {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/webhooks/deliveries/{id}")),
        (reqwest::Method::POST, format!("/v1/webhooks/deliveries/{id}/resend")),
    ] {
        let r = call(method, path.clone(), &b).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(error_code(&r.json().await.unwrap()), "delivery_not_found");
    }
    let page: Value =
        call(reqwest::Method::GET, "/v1/webhooks/deliveries".into(), &b).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["data"], json!([]));
    let secret = |key: &str| {
        let r = call(reqwest::Method::GET, "/v1/webhooks/secret".into(), key);
        async move { r.send().await.unwrap().json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string() }
    };
    let (sa, sb) = (secret(&a).await, secret(&b).await);
    assert_ne!(sa, sb, "each tenant signs with its own key");
    assert_eq!(secret(&a).await, sa, "and keeps it");
    app.stop().await;
}
