//! `GET /v1/usage` over HTTP: per day and workflow, with totals, scoped to the caller's tenant.

use std::sync::Arc;
use std::time::Duration;

use nova_sandbox::testing::{self, ScriptedSandbox};
use nova_store::UsageDelta;
use serde_json::{json, Value};

use crate::helpers::{error_code, Options, TestApp};

#[tokio::test]
async fn usage_is_summed_per_day_and_workflow_for_the_caller_only() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let a = app.store.create_key("a").await.unwrap();
    let b = app.store.create_key("b").await.unwrap();
    let now = chrono::Utc::now();
    let call = UsageDelta {
        model_calls: 1,
        input_tokens: 1000,
        output_tokens: 200,
        cost_nanos: 1_500_000_000,
        ..Default::default()
    };
    let run = UsageDelta { sandbox_runs: 1, sandbox_cpu_ms: 30, sandbox_wall_ms: 45, ..Default::default() };
    app.store.record_usage(a.tenant, "invoice.extract", now, call).await.unwrap();
    app.store.record_usage(a.tenant, "invoice.extract", now, call).await.unwrap();
    app.store.record_usage(a.tenant, "code.run", now, run).await.unwrap();
    app.store.record_usage(b.tenant, "code.run", now, run).await.unwrap();

    let get = |path: &str, key: &str| {
        let request = app.client.get(app.url(path)).bearer_auth(key.to_string());
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, report) = get("/v1/usage", &a.secret).await;
    assert_eq!(status, 200, "{report}");
    let today = now.date_naive().to_string();
    assert_eq!(report["to"], today);
    let data = report["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{report}");
    assert_eq!((data[0]["day"].as_str(), data[0]["workflow"].as_str()), (Some(today.as_str()), Some("code.run")));
    assert_eq!((data[0]["sandbox_cpu_ms"].as_u64(), data[0]["sandbox_wall_ms"].as_u64()), (Some(30), Some(45)));
    assert_eq!(data[1]["model_calls"], 2);
    assert_eq!(data[1]["input_tokens"], 2000);
    assert_eq!(data[1]["cost"], "3");
    let total = &report["total"];
    assert_eq!(
        (total["runs"].as_u64(), total["output_tokens"].as_u64(), total["cost"].as_str()),
        (Some(3), Some(400), Some("3"))
    );

    let (_, theirs) = get("/v1/usage", &b.secret).await;
    assert_eq!(theirs["total"]["runs"], 1, "B sees its own run only: {theirs}");
    assert_eq!(theirs["total"]["model_calls"], 0);

    let (_, filtered) = get("/v1/usage?workflow=code.run", &a.secret).await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    let (_, empty) = get("/v1/usage?from=2020-01-01&to=2020-01-31", &a.secret).await;
    assert_eq!(empty["data"], serde_json::json!([]));
    for bad in [
        "/v1/usage?from=yesterday",
        "/v1/usage?from=2026-02-01&to=2026-01-01",
        "/v1/usage?from=2020-01-01&to=2026-01-01",
    ] {
        let (status, body) = get(bad, &a.secret).await;
        assert_eq!((status, error_code(&body)), (422, "invalid_range"), "{bad}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_execution_s_sandbox_time_is_counted_for_its_caller() {
    // Every run took 45 ms, 30 of them on the CPU.
    let sandbox = Arc::new(ScriptedSandbox::new(|_: &nova_sandbox::ExecRequest| nova_sandbox::Outcome {
        wall_time: Duration::from_millis(45),
        cpu_time: Duration::from_millis(30),
        ..testing::ok("42\n")
    }));
    let options = Options { workers: 0, sandbox: Ok(sandbox.clone()), ..Options::default() };
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), options).await;
    let a = app.store.create_key("a").await.unwrap();
    let b = app.store.create_key("b").await.unwrap();
    let spec = json!({"language": "python", "code": "print(6 * 7)"});
    for _ in 0..2 {
        let r = app.client.post(app.url("/v1/executions")).bearer_auth(&a.secret).json(&spec).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    // Refused before the sandbox: nothing used, nothing counted.
    let refused = json!({"language": "ruby", "code": "puts 42"});
    let r = app.client.post(app.url("/v1/executions")).bearer_auth(&a.secret).json(&refused).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(sandbox.runs(), 2);

    let usage = |key: String| {
        let request = app.client.get(app.url("/v1/usage")).bearer_auth(key);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let report = usage(a.secret.clone()).await;
    let today = chrono::Utc::now().date_naive().to_string();
    assert_eq!(
        report["data"],
        json!([{
            "day": today, "workflow": "execution", "runs": 2,
            "model_calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": "0",
            "sandbox_runs": 2, "sandbox_cpu_ms": 60, "sandbox_wall_ms": 90,
        }]),
        "{report}"
    );
    let theirs = usage(b.secret.clone()).await;
    assert_eq!(theirs["data"], json!([]), "B ran nothing: {theirs}");
    app.stop().await;
}
