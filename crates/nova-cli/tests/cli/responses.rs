//! `llm.generate` and `/v1/responses` through the real binary: `nova serve` with a scripted streaming model.
//! The job's event log holds the text as the model writes it, a client that reconnects with
//! `Last-Event-ID` loses nothing, a cancel stops the model call, and OpenAI's own Python SDK (`openai` from
//! PyPI, pinned; `scripts/test` installs it in a virtual environment and names its interpreter in
//! `NOVA_OPENAI_PYTHON`) creates, streams, resumes and cancels responses (`openai/sdk_test.py`).

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use nova_llm::testing::{ModelServer, Reply, INPUT_TOKENS, OUTPUT_TOKENS};
use serde_json::{json, Value};

use crate::common::{create_key, start_serve, wait_finished};

/// The pinned SDK version, as `scripts/test` installs it.
const OPENAI: &str = "3.63.0";

fn pieces(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

/// Submits an `llm.generate` job of `input` and returns it.
async fn generate(client: &reqwest::Client, base: &str, input: Value) -> Value {
    let response = client.post(format!("{base}/v1/jobs")).json(&json!({"workflow": "llm.generate", "input": input}));
    let job: Value = response.send().await.unwrap().json().await.unwrap();
    assert!(job["id"].is_string(), "{job}");
    job
}

fn as_pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn model_env(model: &ModelServer) -> Vec<(&'static str, String)> {
    vec![
        ("NOVA_LLM_BASE_URL", model.base_url()),
        ("NOVA_LLM_MODEL", "scripted-model".into()),
        ("NOVA_LLM_PRICES", "scripted-model=2/8".into()),
    ]
}

/// Reads SSE messages from `response` until `stop` says so, returning them as (id, event, data).
async fn read_events(
    response: reqwest::Response,
    mut stop: impl FnMut(&str, &Value) -> bool,
) -> Vec<(u64, String, Value)> {
    let mut bytes = response.bytes_stream();
    let (mut buffer, mut events) = (String::new(), Vec::new());
    while let Some(chunk) = bytes.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let field =
                |name: &str| message.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_string());
            let (Some(id), Some(kind), Some(data)) = (field("id:"), field("event:"), field("data:")) else { continue };
            let data: Value = serde_json::from_str(&data).unwrap();
            let done = stop(&kind, &data);
            events.push((id.parse().unwrap(), kind, data));
            if done {
                return events;
            }
        }
    }
    events
}

fn output_text(events: &[(u64, String, Value)]) -> String {
    events.iter().filter(|(_, kind, _)| kind == "output").map(|(_, _, e)| e["data"]["text"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_streams_into_the_log_and_a_reconnection_loses_nothing() {
    let model = ModelServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = model_env(&model);
    let env = as_pairs(&env);
    let (_server, base) = start_serve(dir.path(), &["--workers", "1"], &env);
    let client = reqwest::Client::new();
    model.script.push(Reply::Gated(pieces(&["Hel", "lo"]), pieces(&[", world", "!"])));
    let job = generate(&client, &base, json!({"prompt": "Say hello", "max_output_tokens": 20})).await;
    let id = job["id"].as_str().unwrap_or_else(|| panic!("{job}")).to_string();
    assert_eq!(job["timeout_seconds"], 3600, "a generation's default deadline is an hour");
    let follow = |after: Option<u64>| {
        let mut request = client.get(format!("{base}/v1/jobs/{id}/events")).header("accept", "text/event-stream");
        if let Some(after) = after {
            request = request.header("last-event-id", after.to_string());
        }
        request.send()
    };

    // The text the model wrote before it paused is in the log while the job runs; the client leaves there.
    let first = read_events(follow(None).await.unwrap(), |kind, _| kind == "output").await;
    assert_eq!(output_text(&first), "Hello", "{first:?}");
    let last = first.last().unwrap().0;

    // The model goes on while no one listens; a reconnection from the last id gets the rest and the end.
    model.script.release();
    let rest = read_events(follow(Some(last)).await.unwrap(), |kind, _| kind == "succeeded").await;
    assert!(rest.iter().all(|(seq, ..)| *seq > last), "events before the resume point came again");
    assert_eq!(format!("{}{}", output_text(&first), output_text(&rest)), "Hello, world!");

    let result: Value = client.get(format!("{base}/v1/jobs/{id}/result")).send().await.unwrap().json().await.unwrap();
    assert_eq!(result["text"], "Hello, world!");
    assert_eq!(result["finish_reason"], "stop");
    assert_eq!(result["model"], "scripted-model");
    assert_eq!(result["llm_usage"]["input_tokens"], INPUT_TOKENS);
    assert_eq!(result["llm_usage"]["output_tokens"], OUTPUT_TOKENS);
    assert!(result["llm_usage"]["cost"].is_string(), "priced by the table: {result}");
    let request = model.script.requests.lock().unwrap()[0].clone();
    assert_eq!((request["stream"].clone(), request["max_tokens"].clone()), (json!(true), json!(20)));

    // The same job through the Responses API.
    let response_id = id.replacen("job_", "resp_", 1);
    let response: Value =
        client.get(format!("{base}/v1/responses/{response_id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(response["status"], "completed", "{response}");
    assert_eq!(response["output"][0]["content"][0]["text"], "Hello, world!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_the_model_call() {
    let model = ModelServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = model_env(&model);
    let env = as_pairs(&env);
    // Heartbeats ten minutes apart: a cancel seen within the test's wait came through the generation's own
    // reads, not the heartbeat.
    let (_server, base) = start_serve(dir.path(), &["--workers", "1", "--lease-secs", "3600"], &env);
    let client = reqwest::Client::new();
    // An answer that never ends unless its call is dropped.
    model.script.push(Reply::Gated(pieces(&["Once upon"]), pieces(&[" a time"])));
    let job = generate(&client, &base, json!({"prompt": "A story"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let events = client.get(format!("{base}/v1/jobs/{id}/events")).header("accept", "text/event-stream");
    let first = read_events(events.send().await.unwrap(), |kind, _| kind == "output").await;
    assert_eq!(output_text(&first), "Once upon");

    let canceled = client.post(format!("{base}/v1/jobs/{id}/cancel")).send().await.unwrap();
    assert_eq!(canceled.status(), 200);
    let job = wait_finished(|| client.get(format!("{base}/v1/jobs/{id}")), Duration::from_secs(60)).await;
    assert_eq!(job["status"], "canceled", "{job}");
    // The worker dropped the model call: the model server sees its client go.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while model.script.streams_dropped.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the model call was not dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_generation_hands_it_to_another_which_starts_over() {
    let model = ModelServer::start().await;
    // The first worker's answer stops after its first words; the second worker's runs to its end.
    model.script.push(Reply::Gated(pieces(&["Hel"]), pieces(&["p, never seen"])));
    model.script.push(Reply::Stream(pieces(&["Hello ", "again"])));
    let dir = tempfile::tempdir().unwrap();
    let env = model_env(&model);
    let env = as_pairs(&env);
    let (_server, base) = start_serve(dir.path(), &["--workers", "0"], &env);
    let worker = || {
        let mut command = crate::common::nova();
        command.args(["worker", "--lease-secs", "2", "--sandbox-pool", "0", "--data-dir"]).arg(dir.path());
        command.env_remove("NOVA_DATABASE_URL").env("NOVA_LOG", "warn").envs(env.iter().copied());
        let mut child = crate::common::KillOnDrop(command.stdout(std::process::Stdio::piped()).spawn().unwrap());
        let mut banner = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.0.stdout.take().unwrap()), &mut banner).unwrap();
        assert!(banner.starts_with("nova: worker"), "{banner:?}");
        child
    };
    let client = reqwest::Client::new();
    let mut first = worker();
    let job = generate(&client, &base, json!({"prompt": "Say hello"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let events = || client.get(format!("{base}/v1/jobs/{id}/events")).header("accept", "text/event-stream");
    let seen = read_events(events().send().await.unwrap(), |kind, _| kind == "output").await;
    assert_eq!(output_text(&seen), "Hel");
    first.0.kill().unwrap(); // SIGKILL, mid-generation
    first.0.wait().unwrap();

    let _second = worker();
    let all = read_events(events().send().await.unwrap(), |kind, _| kind == "succeeded").await;
    let reset = all.iter().rposition(|(_, kind, _)| kind == "output_reset").expect("an output_reset event");
    assert!(reset > all.iter().position(|(_, kind, _)| kind == "output").unwrap(), "the reset follows the lost text");
    let reason = all[reset].2["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("attempt 2"), "{reason}");
    assert_eq!(output_text(&all[reset..]), "Hello again", "the text after the reset is the new answer");
    let result: Value = client.get(format!("{base}/v1/jobs/{id}/result")).send().await.unwrap().json().await.unwrap();
    assert_eq!(result["text"], "Hello again");
    let job: Value = client.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(2), "{job}");

    // As a response, polled and streamed: the answer is named by the output item its text was streamed to,
    // the second (the first attempt's is closed as incomplete).
    let response = format!("{base}/v1/responses/{}", id.replacen("job_", "resp_", 1));
    let polled: Value = client.get(&response).send().await.unwrap().json().await.unwrap();
    assert_eq!(polled["output"].as_array().map(Vec::len), Some(1), "{polled}");
    assert_eq!(polled["output"][0]["content"][0]["text"], "Hello again");
    let streamed = client.get(format!("{response}?stream=true")).send().await.unwrap().text().await.unwrap();
    let streamed: Vec<Value> = streamed
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    let last_delta = streamed.iter().rev().find(|e| e["type"] == "response.output_text.delta").expect("text deltas");
    assert_eq!(last_delta["output_index"], 1, "{last_delta}");
    let completed = streamed.last().unwrap();
    assert_eq!(completed["type"], "response.completed");
    for answer in [&polled["output"][0], &completed["response"]["output"][0]] {
        assert_eq!(answer["id"], last_delta["item_id"], "{answer}");
    }
}

#[test]
fn the_openai_sdk_creates_streams_resumes_and_cancels_responses() {
    let Some(python) = find_sdk_python() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let model = runtime.block_on(ModelServer::start());
    model.script.push(Reply::Gated(pieces(&["Hel", "lo"]), pieces(&[", world", "!"])));
    model.script.push(Reply::Gated(pieces(&["Work"]), pieces(&[" never seen"])));
    model.script.push(Reply::Stream(pieces(&["{\"total\": ", "12}"])));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (key_a, key_b) = (create_key(&data, "a"), create_key(&data, "b"));
    let env = model_env(&model);
    let env = as_pairs(&env);
    let (_server, base) = start_serve(&data, &["--workers", "2"], &env);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/openai/sdk_test.py");
    let out = Command::new(&python)
        .arg(script)
        .env("NOVA_BASE_URL", format!("{base}/v1"))
        .env("NOVA_API_KEY", &key_a)
        .env("NOVA_OTHER_KEY", &key_b)
        .env("MODEL_URL", format!("http://{}", model.addr))
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK checks failed (above)");
    assert!(stdout.trim_end().ends_with("openai sdk: all checks passed"), "the script did not finish");
    assert_eq!(model.script.calls(), 3, "one model call per response");
}

/// The interpreter with the SDK at its pinned version, or `None` (skip) when missing outside CI.
fn find_sdk_python() -> Option<String> {
    let python = std::env::var("NOVA_OPENAI_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe =
        format!("from importlib.metadata import version; import sys; sys.exit(version('openai') != '{OPENAI}')");
    let found = Command::new(&python).args(["-c", &probe]).status().is_ok_and(|s| s.success());
    if found {
        return Some(python);
    }
    assert!(!nova_core::testing::in_ci(), "openai {OPENAI} is missing: scripts/test installs it (NOVA_OPENAI_PYTHON)");
    eprintln!("skipping: openai {OPENAI} is not installed (scripts/test installs it)");
    None
}
