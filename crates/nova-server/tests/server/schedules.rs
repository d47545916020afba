//! Schedules over HTTP: created with their first time, checked at the edge, paused, resumed, deleted, each
//! tenant's own; and a schedule with seconds in it enqueues its jobs while the server runs.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{error_code, Options, TestApp};

async fn call(app: &TestApp, method: Method, path: &str, key: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

#[tokio::test]
async fn schedules_are_checked_kept_per_tenant_paused_resumed_and_deleted() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let a = app.store.create_key("a").await.unwrap().secret;
    let b = app.store.create_key("b").await.unwrap().secret;

    let body = json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "workflow": "noop",
                      "input": {"sleep_ms": 5}, "name": "weekday mornings", "missed": "skip"});
    let (status, schedule) = call(&app, Method::POST, "/v1/schedules", &a, Some(&body)).await;
    assert_eq!(status, 201, "{schedule}");
    let id = schedule["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sch_"));
    assert_eq!((schedule["missed"].as_str(), schedule["paused"].as_bool()), (Some("skip"), Some(false)));
    let next: chrono::DateTime<chrono::Utc> = schedule["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > chrono::Utc::now());
    // Nine in Berlin is 07:00 or 08:00 UTC.
    assert!(matches!(chrono::Timelike::hour(&next), 7 | 8), "{next}");

    for (bad, code) in [
        (json!({"cron": "61 * * * *", "workflow": "noop"}), "invalid_cron"),
        (json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus", "workflow": "noop"}), "invalid_timezone"),
        (json!({"cron": "0 9 * * *", "workflow": "teleport"}), "unknown_workflow"),
        (json!({"cron": "0 9 * * *", "workflow": "noop", "input": {"sleep_ms": -1}}), "invalid_input"),
        (json!({"cron": "0 0 30 2 *", "workflow": "noop"}), "invalid_cron"),
        (json!({"cron": "0 9 * * *", "workflow": "noop", "missed": "sometimes"}), "invalid_request"),
    ] {
        let (status, error) = call(&app, Method::POST, "/v1/schedules", &a, Some(&bad)).await;
        assert_eq!((status, error_code(&error)), (422, code), "{bad}: {error}");
    }

    // Tenant B sees none of A's.
    let (_, listed) = call(&app, Method::GET, "/v1/schedules", &b, None).await;
    assert_eq!(listed["data"], json!([]));
    for (method, path) in [
        (Method::GET, format!("/v1/schedules/{id}")),
        (Method::POST, format!("/v1/schedules/{id}/pause")),
        (Method::POST, format!("/v1/schedules/{id}/resume")),
        (Method::DELETE, format!("/v1/schedules/{id}")),
    ] {
        let (status, error) = call(&app, method, &path, &b, None).await;
        assert_eq!((status, error_code(&error)), (404, "schedule_not_found"), "{path}");
    }

    let (status, paused) = call(&app, Method::POST, &format!("/v1/schedules/{id}/pause"), &a, None).await;
    assert_eq!((status, paused["paused"].as_bool()), (200, Some(true)));
    let (status, resumed) = call(&app, Method::POST, &format!("/v1/schedules/{id}/resume"), &a, None).await;
    assert_eq!((status, resumed["paused"].as_bool()), (200, Some(false)));
    let (_, listed) = call(&app, Method::GET, "/v1/schedules", &a, None).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(call(&app, Method::DELETE, &format!("/v1/schedules/{id}"), &a, None).await.0, 204);
    assert_eq!(call(&app, Method::GET, &format!("/v1/schedules/{id}"), &a, None).await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_running_server_enqueues_each_time_s_job() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 1, ..Options::default() }).await;
    let key = app.store.create_key("a").await.unwrap().secret;
    let body = json!({"cron": "* * * * * *", "workflow": "noop", "input": {}});
    let (status, schedule) = call(&app, Method::POST, "/v1/schedules", &key, Some(&body)).await;
    assert_eq!(status, 201, "{schedule}");
    let id = schedule["id"].as_str().unwrap();
    // Every second: the scheduler (started with the server) enqueues, the worker runs them.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let jobs = loop {
        let (_, page) = call(&app, Method::GET, "/v1/jobs?workflow=noop&status=succeeded", &key, None).await;
        let jobs = page["data"].as_array().cloned().unwrap_or_default();
        if jobs.len() >= 2 {
            break jobs;
        }
        assert!(tokio::time::Instant::now() < deadline, "the schedule enqueued {} jobs in 30 s", jobs.len());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let keys: Vec<&str> = jobs.iter().filter_map(|j| j["idempotency_key"].as_str()).collect();
    assert!(keys.iter().all(|k| k.starts_with(&format!("schedule:{id}:"))), "{keys:?}");
    let distinct: std::collections::BTreeSet<&&str> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "two jobs for one time: {keys:?}");
    assert_eq!(call(&app, Method::POST, &format!("/v1/schedules/{id}/pause"), &key, None).await.0, 200);
    app.stop().await;
}
