//! Batches through a real `nova serve`: submission (and refusal of a bad entry), progress, the event stream,
//! results as JSON lines, the `batch.completed` webhook, cancellation, tenancy, a batch of 10,000 inputs,
//! and `nova extract --server` against the local `nova extract`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use serde_json::{json, Value};

use crate::common::{create_key, dev_dir, nova, start_serve};

/// A webhook receiver on 127.0.0.1 that keeps every body it is sent; returns its URL.
async fn receiver(received: Arc<Mutex<Vec<Value>>>) -> String {
    async fn hook(State(received): State<Arc<Mutex<Vec<Value>>>>, body: Bytes) -> &'static str {
        received.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or_default());
        "ok"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(received);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// Polls the batch until it is finished; fails the test after a minute.
async fn wait_finished(http: &reqwest::Client, url: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let batch: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        if batch["finished"] == true {
            return batch;
        }
        assert!(tokio::time::Instant::now() < deadline, "the batch has not finished in a minute: {batch}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_batch_runs_streams_its_progress_and_reports_once() {
    let data = tempfile::tempdir().unwrap();
    let (owner, stranger) = (create_key(data.path(), "acme"), create_key(data.path(), "other"));
    let (_server, base) = start_serve(data.path(), &[], &[("NOVA_WEBHOOK_ALLOW", "127.0.0.1")]);
    let received = Arc::new(Mutex::new(Vec::new()));
    let hook = receiver(received.clone()).await;
    let http = client(&owner);

    let inputs: Vec<Value> = (0..12).map(|i| json!({"sleep_ms": 20 * (i % 4)})).collect();
    let answer = http
        .post(format!("{base}/v1/batches"))
        .json(&json!({"workflow": "noop", "inputs": inputs, "priority": 3, "webhook": {"url": hook}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let batch: Value = answer.json().await.unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    assert_eq!((batch["total"].as_u64(), batch["counts"]["queued"].as_u64()), (Some(12), Some(12)));

    // The stream follows the batch from here to its end, which ends it.
    let stream =
        http.get(format!("{base}/v1/batches/{id}/events")).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let text = stream.text().await.unwrap();
    let events: Vec<(u64, String, Value)> = text
        .split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            Some((
                field("id:")?.parse().ok()?,
                field("event:")?.to_string(),
                serde_json::from_str(field("data:")?).ok()?,
            ))
        })
        .collect();
    let (last_id, last_kind, last) = events.last().expect("at least the completed event").clone();
    assert_eq!((last_id, last_kind.as_str()), (12, "completed"), "{text}");
    assert_eq!(last["counts"]["succeeded"], 12);
    assert!(events.windows(2).all(|w| w[0].0 <= w[1].0), "ids count finished jobs, never down: {text}");
    assert!(events[..events.len() - 1].iter().all(|e| e.1 == "progress"));
    // Resumed past its end, the stream has nothing more to say.
    let resumed = http
        .get(format!("{base}/v1/batches/{id}/events"))
        .header("accept", "text/event-stream")
        .header("last-event-id", "12")
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 204);

    let finished = wait_finished(&http, &format!("{base}/v1/batches/{id}")).await;
    assert_eq!((finished["done"].as_u64(), finished["counts"]["succeeded"].as_u64()), (Some(12), Some(12)));
    assert!(finished["finished_at"].is_string());

    // Results: one line per job, in the order of the inputs, each with its input and result.
    let results = http.get(format!("{base}/v1/batches/{id}/results")).send().await.unwrap();
    assert_eq!(results.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = results.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 12);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!((line["index"].as_u64(), &line["input"]), (Some(i as u64), &inputs[i]));
        assert_eq!(line["status"], "succeeded");
        assert!(line["result"].is_object(), "{line}");
        let job: Value = http
            .get(format!("{base}/v1/jobs/{}", line["job_id"].as_str().unwrap()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((job["batch_id"].as_str(), job["priority"].as_i64()), (Some(id.as_str()), Some(3)));
    }
    let csv = http.get(format!("{base}/v1/batches/{id}/results?format=csv")).send().await.unwrap();
    assert_eq!(csv.status(), 422, "CSV is for invoices only");

    // The webhook: one `batch.completed` message, in the outbox once.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while received.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no batch.completed message in 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let message = received.lock().unwrap()[0].clone();
    assert_eq!(
        (message["type"].as_str(), message["data"]["id"].as_str()),
        (Some("batch.completed"), Some(id.as_str()))
    );
    assert_eq!(message["data"]["counts"]["succeeded"], 12);
    let outbox: Value =
        http.get(format!("{base}/v1/webhooks/deliveries?limit=200")).send().await.unwrap().json().await.unwrap();
    let batch_messages: Vec<&Value> =
        outbox["data"].as_array().unwrap().iter().filter(|d| d["batch_id"] == id.as_str()).collect();
    assert_eq!(batch_messages.len(), 1, "{outbox}");
    assert_eq!(batch_messages[0]["event_type"], "batch.completed");

    // The list shows it; another tenant sees no such batch anywhere.
    let list: Value = http.get(format!("{base}/v1/batches")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    let other = client(&stranger);
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/batches/{id}")),
        (reqwest::Method::GET, format!("/v1/batches/{id}/results")),
        (reqwest::Method::GET, format!("/v1/batches/{id}/events")),
        (reqwest::Method::POST, format!("/v1/batches/{id}/cancel")),
    ] {
        let answer = other.request(method, format!("{base}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "batch_not_found", "{path}");
    }
    let theirs: Value = other.get(format!("{base}/v1/batches")).send().await.unwrap().json().await.unwrap();
    assert_eq!(theirs["data"], json!([]));
}

#[tokio::test]
async fn a_bad_entry_refuses_the_whole_batch_by_its_index() {
    let data = tempfile::tempdir().unwrap();
    let (_server, base) = start_serve(data.path(), &["--workers", "0"], &[]);
    let http = reqwest::Client::new();
    let post = |body: Value| http.post(format!("{base}/v1/batches")).json(&body).send();

    let answer = post(json!({"workflow": "noop", "inputs": [{}, {"sleep_ms": "long"}, {}, {"nap": 1}]})).await.unwrap();
    assert_eq!(answer.status(), 422);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_input");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("inputs[1]") && message.contains("inputs[3]"), "{message}");
    assert!(!message.contains("inputs[0]") && !message.contains("inputs[2]"), "{message}");

    let missing = "doc_019a2b3c4d5e7f008a1b2c3d4e5f6a7b";
    let answer = post(json!({"workflow": "invoice.extract", "document_ids": [missing]})).await.unwrap();
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "document_not_found", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("inputs[0]"), "{error}");
    let answer = post(json!({"workflow": "invoice.extract", "document_ids": ["doc_1", missing, "x"]})).await.unwrap();
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_document_id", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("document_ids[0]") && message.contains("document_ids[2]"), "{message}");

    assert_eq!(post(json!({"workflow": "noop", "inputs": []})).await.unwrap().status(), 422);
    let too_many = vec![json!({}); nova_core::MAX_BATCH_JOBS + 1];
    let error: Value = post(json!({"workflow": "noop", "inputs": too_many})).await.unwrap().json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_batch_size");

    // Nothing of the refused batches was stored.
    let jobs: Value = http.get(format!("{base}/v1/jobs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs["data"], json!([]));
    let batches: Value = http.get(format!("{base}/v1/batches")).send().await.unwrap().json().await.unwrap();
    assert_eq!(batches["data"], json!([]));
}

#[tokio::test]
async fn ten_thousand_inputs_are_accepted_in_one_request_and_canceled_in_one() {
    let data = tempfile::tempdir().unwrap();
    let (_server, base) = start_serve(data.path(), &["--workers", "0"], &[]);
    let http = reqwest::Client::new();
    let inputs = vec![json!({}); nova_core::MAX_BATCH_JOBS];
    let answer = http
        .post(format!("{base}/v1/batches"))
        .json(&json!({"workflow": "noop", "inputs": inputs}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let batch: Value = answer.json().await.unwrap();
    let id = batch["id"].as_str().unwrap();
    let read: Value = http.get(format!("{base}/v1/batches/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!((read["total"].as_u64(), read["counts"]["queued"].as_u64()), (Some(10_000), Some(10_000)));
    let queue: Value = http.get(format!("{base}/v1/queue")).send().await.unwrap().json().await.unwrap();
    assert!(queue.to_string().contains("10000"), "the queue counts the batch's jobs: {queue}");

    let canceled: Value =
        http.post(format!("{base}/v1/batches/{id}/cancel")).send().await.unwrap().json().await.unwrap();
    assert_eq!((canceled["counts"]["canceled"].as_u64(), canceled["finished"].as_bool()), (Some(10_000), Some(true)));
    let results = http.get(format!("{base}/v1/batches/{id}/results")).send().await.unwrap().text().await.unwrap();
    assert_eq!(results.lines().count(), 10_000);
    assert!(results.lines().all(|l| l.contains("\"status\":\"canceled\"")));
}

#[tokio::test]
async fn extract_on_a_server_writes_what_a_local_extract_writes() {
    let files = [
        dev_dir().join("facturx/mustang__103767-Invoice-2026-03-24-1.pdf"),
        dev_dir().join("facturx/mustang__103767-Invoice-2026-03-24-1.noxml.pdf"),
    ];
    let data = tempfile::tempdir().unwrap();
    let (_server, base) = start_serve(data.path(), &[], &[]);
    for format in ["jsonl", "csv"] {
        let local = nova().args(["extract", "--strategy", "rules", "--format", format]).args(&files).output().unwrap();
        assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
        let remote = nova()
            .args(["extract", "--strategy", "rules", "--format", format, "--server", &base])
            .args(&files)
            .env_remove("NOVA_API_KEY")
            .output()
            .unwrap();
        assert!(remote.status.success(), "{}", String::from_utf8_lossy(&remote.stderr));
        assert_eq!(String::from_utf8_lossy(&remote.stdout), String::from_utf8_lossy(&local.stdout), "{format}");
    }
    // The files went to the server as one batch of two invoice extractions.
    let batches: Value = reqwest::get(format!("{base}/v1/batches")).await.unwrap().json().await.unwrap();
    let batch = &batches["data"][0];
    assert_eq!((batch["workflow"].as_str(), batch["counts"]["succeeded"].as_u64()), (Some("invoice.extract"), Some(2)));
    let csv = reqwest::get(format!("{base}/v1/batches/{}/results?format=csv", batch["id"].as_str().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.lines().nth(1).is_some_and(|row| row.contains("103767")), "{csv}");
}
