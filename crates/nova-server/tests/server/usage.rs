//! `GET /v1/usage` over HTTP: per day and workflow, with totals, scoped to the caller's tenant.

use nova_store::UsageDelta;
use serde_json::Value;

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
