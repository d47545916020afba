//! The API driven over HTTP: uploads, jobs, results, lists, event streams, bad input, restarts.

use std::sync::Arc;
use std::time::Duration;

use nova_sandbox::testing::{self, input_text, ScriptedSandbox};
use nova_sandbox::{ExecRequest, Limits, Outcome, Status};
use nova_server::ServerConfig;
use serde_json::{json, Value};

use crate::helpers::{dev_file, error_code, EventStream, Options, SseItem, TestApp};

const CRONUS: &str = "facturx/mustang__103767-Invoice-2026-03-24-1";

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await, (200, json!({"status": "ok"})));
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn identical_uploads_are_stored_once_and_served_back() {
    let app = TestApp::spawn().await;
    let bytes = dev_file(&format!("{CRONUS}.noxml.pdf"));
    let (status, doc) = app.upload_multipart(bytes.clone(), "cronus.pdf").await;
    assert_eq!(status, 201, "{doc}");
    assert!(doc["id"].as_str().unwrap().starts_with("doc_"));
    assert_eq!(doc["filename"], "cronus.pdf");
    assert_eq!(doc["kind"], "pdf");
    assert_eq!(doc["content_type"], "application/pdf");
    assert_eq!(doc["size_bytes"], bytes.len());
    assert_eq!(doc["sha256"].as_str().unwrap().len(), 64);
    assert!(doc["page_count"].as_u64().unwrap() >= 1);

    let (status, again) = app.upload_raw(bytes.clone(), "application/pdf").await;
    assert_eq!(status, 200, "a repeated upload is not new: {again}");
    assert_eq!(again["id"], doc["id"]);

    let id = doc["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/documents/{id}")).await, (200, doc.clone()));
    let content = app.client.get(app.url(&format!("/v1/documents/{id}/content"))).send().await.unwrap();
    assert_eq!(content.headers()["content-type"], "application/pdf");
    assert_eq!(content.bytes().await.unwrap().to_vec(), bytes);

    let dir = app.stop().await;
    assert_eq!(blob_files(dir.path()), 1, "identical bytes must be one stored object");
}

#[tokio::test]
async fn an_invoice_goes_from_upload_to_result_through_both_paths() {
    let app = TestApp::spawn().await;
    for variant in ["noxml.pdf", "pdf"] {
        let (_, doc) = app.upload_raw(dev_file(&format!("{CRONUS}.{variant}")), "application/pdf").await;
        let (status, job) = app.submit_extract(doc["id"].as_str().unwrap()).await;
        assert_eq!(status, 202, "{job}");
        assert_eq!(job["status"], "queued");
        assert_eq!(job["workflow"], "invoice.extract");
        let id = job["id"].as_str().unwrap();

        let done = app.wait_final(id).await;
        assert_eq!(done["status"], "succeeded", "{variant}: {done}");
        assert_eq!(done["attempts"].as_array().unwrap().len(), 1);
        assert_eq!(done["attempts"][0]["outcome"], "succeeded");
        assert!(done["started_at"].is_string() && done["finished_at"].is_string());

        let (status, invoice) = app.get(&format!("/v1/jobs/{id}/result")).await;
        assert_eq!(status, 200, "{invoice}");
        let expect = [
            ("/invoice_number", json!("103767")),
            ("/issue_date", json!("2026-02-17")),
            ("/currency", json!("EUR")),
            ("/totals/grand_total", json!("681.87")),
            ("/seller/name", json!("CRONUS DE")),
        ];
        for (pointer, value) in expect {
            assert_eq!(invoice.pointer(pointer), Some(&value), "{variant} {pointer}: {invoice}");
        }
    }
    app.stop().await;
}

/// With no model configured (this test process sets none), a `task.run` job fails at once and says what to
/// set; its artifacts are an empty list.
#[tokio::test]
async fn a_task_without_a_model_fails_and_says_what_to_set() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.upload_raw(b"Invoice 1\nTotal 5.00 EUR".to_vec(), "text/plain").await;
    let task = json!({"workflow": "task.run", "input": {"prompt": "total them", "document_ids": [doc["id"]]}});
    let (status, job) = app.post_json("/v1/jobs", &task).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    let done = app.wait_final(id).await;
    assert_eq!((done["status"].as_str(), done["error"]["code"].as_str()), (Some("failed"), Some("llm_not_configured")));
    assert!(done["error"]["message"].as_str().unwrap().contains("NOVA_LLM_MODEL"), "{done}");
    assert_eq!(done["attempts"].as_array().map(Vec::len), Some(1), "a missing model is not retried");
    let (status, listed) = app.get(&format!("/v1/jobs/{id}/artifacts")).await;
    assert_eq!((status, listed["data"].clone()), (200, json!([])));
    app.stop().await;
}

#[tokio::test]
async fn a_result_asked_too_early_is_a_conflict() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let (_, doc) = app.upload_raw(dev_file(&format!("{CRONUS}.pdf")), "application/pdf").await;
    let (_, job) = app.submit_extract(doc["id"].as_str().unwrap()).await;
    let (status, body) = app.get(&format!("/v1/jobs/{}/result", job["id"].as_str().unwrap())).await;
    assert_eq!((status, error_code(&body)), (409, "job_not_finished"));
    app.stop().await;
}

#[tokio::test]
async fn a_restarted_server_runs_the_jobs_left_queued() {
    // First life: the API only, so the jobs stay queued.
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let mut jobs = Vec::new();
    for variant in ["pdf", "noxml.pdf"] {
        let (_, doc) = app.upload_raw(dev_file(&format!("{CRONUS}.{variant}")), "application/pdf").await;
        let (_, job) = app.submit_extract(doc["id"].as_str().unwrap()).await;
        jobs.push(job["id"].as_str().unwrap().to_string());
    }
    let dir = app.stop().await;

    // Second life over the same data directory, with workers.
    let app = TestApp::spawn_with(dir, Options::default()).await;
    for id in &jobs {
        let done = app.wait_final(id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let (_, invoice) = app.get(&format!("/v1/jobs/{id}/result")).await;
        assert_eq!(invoice["invoice_number"], "103767");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_and_leave_nothing_behind() {
    let app = TestApp::spawn_with(
        tempfile::tempdir().unwrap(),
        Options { config: ServerConfig { max_upload_bytes: 100_000, ..ServerConfig::default() }, ..Options::default() },
    )
    .await;
    let pdf = dev_file(&format!("{CRONUS}.pdf"));
    let mut junk_pdf = b"%PDF-1.4\n".to_vec();
    junk_pdf.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("empty body", vec![], "application/pdf", 400, "empty_document"),
        ("png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), "image/png", 415, "unsupported_document"),
        ("truncated pdf", pdf[..3000].to_vec(), "application/pdf", 422, "invalid_pdf"),
        ("random bytes after a pdf header", junk_pdf, "application/pdf", 422, "invalid_pdf"),
        ("over the size limit", vec![b'a'; 100_001], "text/plain", 413, "payload_too_large"),
    ];
    for (what, bytes, content_type, status, code) in cases {
        let (got, body) = app.upload_raw(bytes, content_type).await;
        assert_eq!((got, error_code(&body)), (status, code), "{what}: {body}");
    }
    // Over the limit by a declared length, without sending the body first.
    let big = vec![b'%'; 400_000];
    let (got, body) = app.upload_multipart(big, "big.pdf").await;
    assert_eq!((got, error_code(&body)), (413, "payload_too_large"));
    // A multipart body without the `file` field.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = app.client.post(app.url("/v1/documents")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json::<Value>().await.unwrap()), "missing_file");

    assert_eq!(app.get("/healthz").await.0, 200, "the server survives bad input");
    let dir = app.stop().await;
    assert_eq!(blob_files(dir.path()), 0, "a refused upload must store nothing");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.upload_raw(dev_file(&format!("{CRONUS}.pdf")), "application/pdf").await;
    let doc_id = doc["id"].as_str().unwrap();
    let unknown_doc = "doc_0190a0a0a0a07000800000000000000a";
    let unknown_job = "job_0190a0a0a0a07000800000000000000a";

    let posts: Vec<(Value, u16, &str)> = vec![
        (json!({"workflow": "invoice.summarise", "input": {"document_id": doc_id}}), 422, "unknown_workflow"),
        (json!({"workflow": "invoice.extract", "input": {}}), 422, "invalid_input"),
        (json!({"workflow": "invoice.extract", "input": {"document_id": "nope"}}), 422, "invalid_input"),
        (json!({"workflow": "invoice.extract", "input": {"document_id": unknown_doc}}), 422, "document_not_found"),
        (json!({"input": {"document_id": doc_id}}), 422, "invalid_request"),
        (json!({"workflow": "invoice.extract", "input": {"document_id": doc_id}, "extra": 1}), 422, "invalid_request"),
    ];
    for (body, status, code) in posts {
        let (got, resp) = app.post_json("/v1/jobs", &body).await;
        assert_eq!((got, error_code(&resp)), (status, code), "{body}: {resp}");
    }

    let raw = |body: &'static str, content_type: &'static str| {
        app.client.post(app.url("/v1/jobs")).header("content-type", content_type).body(body).send()
    };
    let r = raw("{\"workflow\": ", "application/json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json::<Value>().await.unwrap()), "malformed_json");
    let r = raw("{}", "text/plain").await.unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(error_code(&r.json::<Value>().await.unwrap()), "expected_json");

    let gets = [
        (format!("/v1/documents/{unknown_doc}"), 404, "document_not_found"),
        (format!("/v1/documents/{unknown_doc}/content"), 404, "document_not_found"),
        ("/v1/documents/not-an-id".to_string(), 404, "document_not_found"),
        (format!("/v1/jobs/{unknown_job}"), 404, "job_not_found"),
        (format!("/v1/jobs/{unknown_job}/result"), 404, "job_not_found"),
        (format!("/v1/jobs/{doc_id}"), 404, "job_not_found"),
        ("/v1/nothing".to_string(), 404, "route_not_found"),
    ];
    for (path, status, code) in gets {
        let (got, body) = app.get(&path).await;
        assert_eq!((got, error_code(&body)), (status, code), "{path}: {body}");
    }
    let r = app.client.delete(app.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(&r.json::<Value>().await.unwrap()), "method_not_allowed");
    app.stop().await;
}

/// Files in the blob store of a data directory.
fn blob_files(data_dir: &std::path::Path) -> usize {
    fn walk(p: &std::path::Path) -> usize {
        std::fs::read_dir(p)
            .map_or(0, |rd| rd.map(|e| e.unwrap().path()).map(|p| if p.is_dir() { walk(&p) } else { 1 }).sum())
    }
    walk(&data_dir.join("blobs"))
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_job_and_refuses_another_body() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let post = |key: &'static str, body: Value| {
        let req = app.client.post(app.url("/v1/jobs")).header("idempotency-key", key).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = post("key-1", json!({"workflow": "noop", "input": {"sleep_ms": 5}})).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["idempotency_key"], "key-1");
    let (status, again) = post("key-1", json!({"workflow": "noop", "input": {"sleep_ms": 5}})).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]), "a replay returns the first job");
    let (status, body) = post("key-1", json!({"workflow": "noop", "input": {"sleep_ms": 6}})).await;
    assert_eq!((status, error_code(&body)), (409, "idempotency_key_reused"));
    let (status, other) = post("key-2", json!({"workflow": "noop", "input": {"sleep_ms": 5}})).await;
    assert_eq!(status, 202);
    assert_ne!(other["id"], first["id"]);
    let too_long: &'static str = Box::leak("k".repeat(256).into_boxed_str());
    let (status, body) = post(too_long, json!({"workflow": "noop"})).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_idempotency_key"));
    app.stop().await;
}

#[tokio::test]
async fn jobs_take_priority_run_at_and_limits_within_bounds() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let (status, job) = app
        .post_json(
            "/v1/jobs",
            &json!({"workflow": "noop", "priority": 7, "run_at": "2099-01-01T00:00:00Z", "timeout_seconds": 60,
                    "max_attempts": 5, "queue_timeout_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(
        (job["priority"].as_i64(), job["timeout_seconds"].as_u64(), job["max_attempts"].as_u64()),
        (Some(7), Some(60), Some(5))
    );
    assert!(job["run_at"].as_str().unwrap().starts_with("2099-01-01T00:00:00"));
    assert!(job["start_by"].as_str().unwrap().starts_with("2099-01-01T01:00:00"), "{job}");
    for bad in [
        json!({"workflow": "noop", "priority": 5000}),
        json!({"workflow": "noop", "timeout_seconds": 0}),
        json!({"workflow": "noop", "max_attempts": 0}),
        json!({"workflow": "noop", "queue_timeout_seconds": 0}),
        json!({"workflow": "noop", "run_at": "tomorrow"}),
        json!({"workflow": "noop", "input": {"sleep_ms": 10_000_000}}),
    ] {
        let (status, body) = app.post_json("/v1/jobs", &bad).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(matches!(error_code(&body), "invalid_request" | "invalid_input"), "{body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn jobs_are_canceled_before_and_while_they_run() {
    let app = TestApp::spawn().await;
    // A job waiting for its run_at has not started: it is canceled at once.
    let (_, later) = app.post_json("/v1/jobs", &json!({"workflow": "noop", "run_at": "2099-01-01T00:00:00Z"})).await;
    let id = later["id"].as_str().unwrap();
    let (status, canceled) = app.post_json(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!((status, canceled["status"].as_str()), (200, Some("canceled")), "{canceled}");
    let (status, again) = app.post_json(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("canceled")), "canceling twice is harmless");
    let (status, body) = app.get(&format!("/v1/jobs/{id}/result")).await;
    assert_eq!((status, error_code(&body)), (409, "job_canceled"));

    // A running job stops at its worker's next heartbeat.
    let (_, long) = app.post_json("/v1/jobs", &json!({"workflow": "noop", "input": {"sleep_ms": 600_000}})).await;
    let id = long["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.get(&format!("/v1/jobs/{id}")).await.1["status"] != "running" {
        assert!(tokio::time::Instant::now() < deadline, "the job never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, requested) = app.post_json(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 200);
    assert!(requested["cancel_requested_at"].is_string(), "{requested}");
    let done = app.wait_final(id).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert_eq!(done["attempts"][0]["outcome"], "canceled");

    // A finished job cannot be canceled.
    let (_, quick) = app.post_json("/v1/jobs", &json!({"workflow": "noop"})).await;
    let id = quick["id"].as_str().unwrap();
    assert_eq!(app.wait_final(id).await["status"], "succeeded");
    let (status, body) = app.post_json(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!((status, error_code(&body)), (409, "job_finished"));
    let (status, body) = app.post_json("/v1/jobs/job_0190a0a0a0a07000800000000000000a/cancel", &json!({})).await;
    assert_eq!((status, error_code(&body)), (404, "job_not_found"));
    app.stop().await;
}

#[tokio::test]
async fn a_job_s_events_tell_its_story_and_resume_after_a_sequence_number() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.upload_raw(dev_file(&format!("{CRONUS}.pdf")), "application/pdf").await;
    let (_, job) = app.submit_extract(doc["id"].as_str().unwrap()).await;
    let id = job["id"].as_str().unwrap();
    app.wait_final(id).await;

    let (status, log) = app.get(&format!("/v1/jobs/{id}/events")).await;
    assert_eq!(status, 200, "{log}");
    let kinds: Vec<_> = log["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["queued", "started", "progress", "progress", "succeeded"]);
    assert_eq!(log["events"][2]["data"]["step"], "reading_document");
    assert_eq!((log["finished"].as_bool(), log["next_after"].as_u64()), (Some(true), Some(5)));

    let (_, rest) = app.get(&format!("/v1/jobs/{id}/events?after=3&limit=1")).await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);
    assert_eq!((rest["events"][0]["seq"].as_u64(), rest["finished"].as_bool()), (Some(4), Some(false)));
    let (_, empty) = app.get(&format!("/v1/jobs/{id}/events?after=5")).await;
    assert_eq!((empty["events"].as_array().unwrap().len(), empty["next_after"].as_u64()), (0, Some(5)));

    let (status, body) = app.get(&format!("/v1/jobs/{id}/events?after=soon")).await;
    assert_eq!((status, error_code(&body)), (400, "invalid_query"));
    let (status, body) = app.get("/v1/jobs/job_0190a0a0a0a07000800000000000000a/events").await;
    assert_eq!((status, error_code(&body)), (404, "job_not_found"));
    app.stop().await;
}

#[tokio::test]
async fn executions_answer_503_on_a_server_without_a_sandbox() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let (status, body) = app.post_json("/v1/executions", &json!({"language": "python", "code": "print(1)"})).await;
    assert_eq!((status, error_code(&body)), (503, "sandbox_unavailable"));
    assert!(body["error"]["message"].as_str().unwrap().contains("not in these tests"), "{body}");
    app.stop().await;
}

/// The API with no workers and `sandbox` (a scripted one: it runs nothing) behind `POST /v1/executions`.
async fn app_with_sandbox(sandbox: &Arc<ScriptedSandbox>) -> TestApp {
    let options = Options { workers: 0, sandbox: Ok(sandbox.clone()), ..Options::default() };
    TestApp::spawn_with(tempfile::tempdir().unwrap(), options).await
}

#[tokio::test]
async fn an_execution_sends_the_spec_to_the_sandbox_and_answers_with_its_outcome() {
    // The program counts the lines of its input file and leaves a file of its own.
    let sandbox = Arc::new(ScriptedSandbox::new(|request: &ExecRequest| {
        let rows = input_text(request, "data.csv").map_or(0, |data| data.lines().count());
        let mut outcome = testing::with_files(format!("{rows} rows\n"), [("out/report.txt".into(), b"done".to_vec())]);
        outcome.stderr = b"a warning\n".to_vec();
        outcome.peak_memory_bytes = 12 << 20;
        outcome
    }));
    let app = app_with_sandbox(&sandbox).await;
    let spec = json!({
        "language": "python",
        "code": "import sys\nprint(len(open('data.csv').readlines()), 'rows')\n",
        "stdin": "from stdin",
        "files": [{"path": "data.csv", "content": "a,b\n1,2\n"}],
        "limits": {"timeout_ms": 2500, "memory_mb": 64, "processes": 4},
        "network": true,
    });
    let (status, body) = app.post_json("/v1/executions", &spec).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "status": "ok",
            "exit_code": 0,
            "signal": null,
            "stdout": "2 rows\n",
            "stderr": "a warning\n",
            "output_truncated": false,
            "files": [{"path": "out/report.txt", "size": 4, "content": "done"}],
            "files_truncated": false,
            "wall_ms": testing::WALL_TIME.as_millis() as u64,
            "cpu_ms": testing::CPU_TIME.as_millis() as u64,
            "peak_memory_bytes": 12 << 20,
            "error": null,
        })
    );

    let sent = sandbox.requests();
    assert_eq!(sent.len(), 1);
    let request = &sent[0];
    assert_eq!(request.code, spec["code"].as_str().unwrap());
    assert_eq!(request.stdin, b"from stdin");
    assert_eq!(input_text(request, "data.csv").as_deref(), Some("a,b\n1,2\n"));
    assert_eq!(request.files.len(), 1);
    let limits = &request.limits;
    assert_eq!((limits.wall_ms, limits.cpu_ms), (2500, 2500), "the timeout bounds wall and CPU time");
    assert_eq!((limits.memory_bytes, limits.processes), (64 << 20, 4));
    assert!(request.network, "the spec asked for the network");
    assert_eq!(request.output_dir, None, "an execution gets back the whole work directory");
    app.stop().await;
}

#[tokio::test]
async fn an_execution_answers_200_with_whatever_status_the_run_ended_with() {
    let sandbox = Arc::new(ScriptedSandbox::answering([
        testing::nonzero_exit(3, "Traceback (most recent call last):\nValueError: bad\n"),
        testing::ended(Status::Timeout),
        Outcome::sandbox_error("creating the cgroup failed"),
    ]));
    let app = app_with_sandbox(&sandbox).await;
    let spec = json!({"language": "python", "code": "raise ValueError('bad')"});

    let (status, failed) = app.post_json("/v1/executions", &spec).await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!((failed["status"].as_str(), failed["exit_code"].as_i64()), (Some("nonzero_exit"), Some(3)));
    assert!(failed["stderr"].as_str().unwrap().ends_with("ValueError: bad\n"), "{failed}");
    let (status, timed_out) = app.post_json("/v1/executions", &spec).await;
    assert_eq!(status, 200, "{timed_out}");
    assert_eq!((timed_out["status"].as_str(), &timed_out["exit_code"]), (Some("timeout"), &Value::Null));
    let (status, broken) = app.post_json("/v1/executions", &spec).await;
    assert_eq!(status, 200, "{broken}");
    assert_eq!(
        (broken["status"].as_str(), broken["error"].as_str()),
        (Some("sandbox_error"), Some("creating the cgroup failed"))
    );

    // A spec without limits or network gets the sandbox's defaults, offline.
    let sent = sandbox.requests();
    assert_eq!(sent.len(), 3);
    let defaults = Limits::default();
    let limits = &sent[0].limits;
    assert_eq!((limits.wall_ms, limits.cpu_ms), (defaults.wall_ms, defaults.cpu_ms));
    assert_eq!((limits.memory_bytes, limits.processes), (defaults.memory_bytes, defaults.processes));
    assert!(!sent[0].network);
    assert!(sent[0].stdin.is_empty() && sent[0].files.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_bad_execution_spec_is_refused_before_the_sandbox() {
    let sandbox = Arc::new(ScriptedSandbox::replying("should not run"));
    let app = app_with_sandbox(&sandbox).await;
    let cases = [
        (json!({"language": "ruby", "code": "puts 1"}), "unsupported_language"),
        // 60 s is the bound of an execution (a `code.run` job may take ten minutes).
        (json!({"language": "python", "code": "1", "limits": {"timeout_ms": 60_001}}), "invalid_request"),
        (json!({"language": "python", "code": "1", "limits": {"timeout_ms": 0}}), "invalid_request"),
        (json!({"language": "python", "code": "1", "limits": {"memory_mb": 8}}), "invalid_request"),
        (json!({"language": "python", "code": "1", "limits": {"processes": 65}}), "invalid_request"),
        (json!({"language": "python", "code": "x".repeat((1 << 20) + 1)}), "invalid_request"),
    ];
    for (spec, code) in cases {
        let (status, body) = app.post_json("/v1/executions", &spec).await;
        assert_eq!((status, error_code(&body)), (422, code), "{body}");
    }
    assert_eq!(sandbox.runs(), 0, "a refused spec never reaches the sandbox");
    // The same server runs a good one.
    let (status, body) = app.post_json("/v1/executions", &json!({"language": "python", "code": "1"})).await;
    assert_eq!((status, body["stdout"].as_str()), (200, Some("should not run")), "{body}");
    assert_eq!(sandbox.runs(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_code_run_job_runs_in_the_workers_sandbox_with_a_job_s_longer_deadline() {
    let sandbox = Arc::new(ScriptedSandbox::replying("42\n"));
    let options = Options { workers: 1, sandbox: Ok(sandbox.clone()), ..Options::default() };
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), options).await;
    // Ten minutes: more than an execution may take, within what a job may.
    let input = json!({"language": "python", "code": "print(6 * 7)", "limits": {"timeout_ms": 600_000}});
    let (status, job) = app.post_json("/v1/jobs", &json!({"workflow": "code.run", "input": input})).await;
    assert_eq!(status, 202, "{job}");
    let job = app.wait_final(job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (status, result) = app.get(&format!("/v1/jobs/{}/result", job["id"].as_str().unwrap())).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("ok"), Some("42\n")), "{result}");
    let sent = sandbox.requests();
    assert_eq!((sent.len(), sent[0].code.as_str(), sent[0].limits.wall_ms), (1, "print(6 * 7)", 600_000));
    app.stop().await;
}

/// The API with no workers (jobs stay queued until canceled) and a quick keep-alive.
async fn idle_app() -> TestApp {
    let config = ServerConfig { event_keep_alive: Duration::from_millis(100), ..Options::default().config };
    TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, config, ..Options::default() }).await
}

#[tokio::test]
async fn an_event_stream_delivers_a_job_s_events_live_and_ends_with_the_final_one() {
    let app = idle_app().await;
    let (_, job) = app.post_json("/v1/jobs", &json!({"workflow": "noop"})).await;
    let id = job["id"].as_str().unwrap();
    let mut stream = EventStream::new(app.get_events(&format!("/v1/jobs/{id}/events"), None).await);

    let (seq, kind, data) = stream.next_message().await.expect("the queued event");
    assert_eq!((seq.as_deref(), kind.as_deref()), (Some("1"), Some("queued")));
    assert_eq!((data["seq"].as_u64(), data["kind"].as_str()), (Some(1), Some("queued")), "{data}");
    assert_eq!(data["data"]["workflow"], "noop");
    // Nothing happens to a job no worker takes: the stream stays open and says so with keep-alives.
    assert_eq!(stream.next().await, Some(SseItem::Comment));

    // What happens next arrives on the open stream, and the final event ends it.
    let (status, _) = app.post_json(&format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(status, 200);
    let (seq, kind, data) = stream.next_message().await.expect("the canceled event");
    assert_eq!((seq.as_deref(), kind.as_deref(), data["seq"].as_u64()), (Some("2"), Some("canceled"), Some(2)));
    assert_eq!(stream.next_message().await, None, "the stream ends after the final event");
    app.stop().await;
}

#[tokio::test]
async fn an_event_stream_follows_a_job_through_a_worker_to_its_end() {
    let app = TestApp::spawn().await;
    let (_, job) = app.post_json("/v1/jobs", &json!({"workflow": "noop", "input": {"sleep_ms": 200}})).await;
    let id = job["id"].as_str().unwrap();
    let messages = EventStream::new(app.get_events(&format!("/v1/jobs/{id}/events"), None).await).rest().await;

    // The stream carries the log exactly as the JSON route shows it, and ends with the final event.
    let (_, log) = app.get(&format!("/v1/jobs/{id}/events")).await;
    let logged = log["events"].as_array().unwrap();
    assert_eq!(messages.len(), logged.len(), "{messages:?}");
    for ((seq, kind, data), event) in messages.iter().zip(logged) {
        assert_eq!(data, event);
        assert_eq!(seq.as_deref(), Some(event["seq"].to_string().as_str()));
        assert_eq!(kind.as_deref(), event["kind"].as_str());
    }
    let kinds: Vec<_> = messages.iter().map(|(_, kind, _)| kind.as_deref().unwrap()).collect();
    assert_eq!((kinds.first(), kinds.last()), (Some(&"queued"), Some(&"succeeded")), "{kinds:?}");
    assert!(kinds.contains(&"started"), "{kinds:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_event_stream_resumes_after_the_last_event_id() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.upload_raw(dev_file(&format!("{CRONUS}.pdf")), "application/pdf").await;
    let (_, job) = app.submit_extract(doc["id"].as_str().unwrap()).await;
    let id = job["id"].as_str().unwrap();
    app.wait_final(id).await;
    let path = format!("/v1/jobs/{id}/events");
    let seqs = |messages: Vec<(Option<String>, Option<String>, Value)>| -> Vec<String> {
        messages.into_iter().map(|(seq, _, _)| seq.unwrap()).collect()
    };

    let all = seqs(EventStream::new(app.get_events(&path, None).await).rest().await);
    assert_eq!(all, ["1", "2", "3", "4", "5"]);
    let rest = seqs(EventStream::new(app.get_events(&path, Some("2")).await).rest().await);
    assert_eq!(rest, ["3", "4", "5"], "only the events after Last-Event-ID");
    let after = seqs(EventStream::new(app.get_events(&format!("{path}?after=3"), None).await).rest().await);
    assert_eq!(after, ["4", "5"]);
    // A reconnecting EventSource sends its first URL again, and its last event id wins.
    let resumed = seqs(EventStream::new(app.get_events(&format!("{path}?after=1"), Some("4")).await).rest().await);
    assert_eq!(resumed, ["5"]);

    // Past the final event there is nothing more, ever: 204 tells an EventSource not to reconnect.
    let r = app.get_events(&path, Some("5")).await;
    assert_eq!(r.status(), 204);
    assert!(r.text().await.unwrap().is_empty());
    let r = app.get_events(&path, Some("soon")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json::<Value>().await.unwrap()), "invalid_last_event_id");
    let r = app.get_events("/v1/jobs/job_0190a0a0a0a07000800000000000000a/events", None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.json::<Value>().await.unwrap()), "job_not_found");
    // Other clients still get the JSON page.
    let r = app.client.get(app.url(&path)).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().await.unwrap()["next_after"], 5);
    app.stop().await;
}

#[tokio::test]
async fn an_open_event_stream_ends_when_the_server_stops() {
    let app = idle_app().await;
    let (_, job) = app.post_json("/v1/jobs", &json!({"workflow": "noop"})).await;
    let id = job["id"].as_str().unwrap();
    let mut stream = EventStream::new(app.get_events(&format!("/v1/jobs/{id}/events"), None).await);
    assert_eq!(stream.next_message().await.unwrap().1.as_deref(), Some("queued"));
    tokio::time::timeout(Duration::from_secs(30), app.stop()).await.expect("the open stream held up the shutdown");
    assert_eq!(stream.next_message().await, None);
}

#[tokio::test]
async fn jobs_are_listed_newest_first_with_filters_and_cursors() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let (_, empty) = app.get("/v1/jobs").await;
    assert_eq!(empty, json!({"data": [], "next_cursor": null}));

    let mut created = Vec::new();
    for i in 0..52 {
        let body = match i % 4 {
            0 => json!({"workflow": "code.run", "input": {"language": "python", "code": "print(1)"}}),
            _ => json!({"workflow": "noop"}),
        };
        let (status, job) = app.post_json("/v1/jobs", &body).await;
        assert_eq!(status, 202, "{job}");
        created.push(job["id"].as_str().unwrap().to_string());
    }
    let canceled = [&created[3], &created[4]];
    for id in canceled {
        assert_eq!(app.post_json(&format!("/v1/jobs/{id}/cancel"), &json!({})).await.0, 200);
    }
    created.reverse();

    // The default page holds 50; the cursor leads on to the rest, and the last page has none.
    let (status, first) = app.get("/v1/jobs").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(page_ids(&first), created[..50]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = app.get(&format!("/v1/jobs?cursor={cursor}")).await;
    assert_eq!((page_ids(&second), &second["next_cursor"]), (created[50..].to_vec(), &Value::Null));
    assert_eq!(first["data"][0], app.get(&format!("/v1/jobs/{}", created[0])).await.1, "jobs show as on their own");

    let walk = |query: &'static str| walk_jobs(&app, query);
    assert_eq!(walk("").await, created);
    let canceled: Vec<String> = vec![created[47].clone(), created[48].clone()];
    assert_eq!(walk("status=canceled").await, canceled);
    let code_runs: Vec<String> = created.iter().skip(3).step_by(4).cloned().collect();
    assert_eq!(walk("workflow=code.run").await, code_runs);
    assert_eq!(walk("workflow=code.run&status=canceled").await, [created[47].clone()]);
    assert_eq!(walk("workflow=invoice.extract&status=").await, Vec::<String>::new());
    assert_eq!(walk("status=succeeded").await, Vec::<String>::new());

    for (query, status, code) in [
        ("status=done", 422, "invalid_status"),
        ("workflow=invoice.summarise", 422, "unknown_workflow"),
        ("cursor=job_0190a0a0a0a07000800000000000000a", 422, "invalid_cursor"),
        ("cursor=nope", 422, "invalid_cursor"),
        ("limit=0", 422, "invalid_limit"),
        ("limit=201", 422, "invalid_limit"),
        ("limit=ten", 422, "invalid_limit"),
        ("order=oldest", 400, "invalid_query"),
    ] {
        let (got, body) = app.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!((got, error_code(&body)), (status, code), "{query}: {body}");
    }
    let (status, all) = app.get("/v1/jobs?limit=200").await;
    assert_eq!((status, page_ids(&all).len(), &all["next_cursor"]), (200, 52, &Value::Null));
    app.stop().await;
}

/// The ids of a page of a list.
fn page_ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect()
}

/// Every job of `GET /v1/jobs?{query}`, 7 a page, following the cursors.
async fn walk_jobs(app: &TestApp, query: &str) -> Vec<String> {
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    loop {
        let (status, page) = app.get(&format!("/v1/jobs?limit=7&{query}&cursor={cursor}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        seen.extend(page_ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn documents_are_listed_newest_first_with_cursors() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let mut created = Vec::new();
    for i in 0..5 {
        let text = format!("Invoice {i}\nTotal: {i}0.00 EUR\n");
        let (status, doc) = app.upload_raw(text.into_bytes(), "text/plain").await;
        assert_eq!(status, 201, "{doc}");
        created.push(doc);
    }
    created.reverse();
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    loop {
        let (status, page) = app.get(&format!("/v1/documents?limit=2&cursor={cursor}")).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(!data.is_empty() && data.len() <= 2, "{page}");
        seen.extend(data.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, created);
    let (status, body) = app.get("/v1/documents?cursor=zz").await;
    assert_eq!((status, error_code(&body)), (422, "invalid_cursor"));
    let (status, body) = app.get("/v1/documents?status=queued").await;
    assert_eq!((status, error_code(&body)), (400, "invalid_query"));
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_json_body_is_413_in_the_api_s_shape() {
    let app = TestApp::spawn_with(tempfile::tempdir().unwrap(), Options { workers: 0, ..Options::default() }).await;
    let padding = "x".repeat(3 * 1024 * 1024);
    let (status, body) =
        app.post_json("/v1/jobs", &serde_json::json!({"workflow": "noop", "input": {"pad": padding}})).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"), "{body}");
    app.stop().await;
}
