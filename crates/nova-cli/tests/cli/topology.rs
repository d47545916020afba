//! The scaled-out shape of `compose.yaml`, as processes on this machine: one API process (`nova serve
//! --workers 0`), two `nova worker` processes, PostgreSQL, Redis and an S3-compatible server (moto), with
//! the secrets given as files the way the compose file gives them. Documents go in through the API, the
//! workers do the jobs, webhooks are delivered (by whichever process takes them from the outbox, and by the
//! workers alone once the API is gone), and a worker killed mid-job loses nothing: the other finishes what
//! it held.
//!
//! PostgreSQL comes from `NOVA_TEST_DATABASE_URL`, Redis from `NOVA_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), moto from `pip install "moto[server]"` (all three set up by `scripts/test`).
//! Missing, the test is skipped, except under `CI=true`, where it fails.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use nova_core::{AttemptOutcome, JobId, JobStatus};
use nova_store::testing::{files_under, Backend, Moto, TestStore};
use serde_json::{json, Value};

use crate::common::{dev_dir, nova, start_serve_on, wait_finished, KillOnDrop};

const BUCKET: &str = "nova-topology";
const LEASE_SECS: &str = "2";

/// Webhook messages received: `webhook-id`, event type, job id, and whether the signature matched.
type Received = Arc<Mutex<Vec<(String, String, String, bool)>>>;

/// A webhook receiver on 127.0.0.1 that checks each message's signature with the tenant's secret (given
/// once known) and records it; returns its URL.
async fn receiver(secret: Arc<Mutex<Option<String>>>, received: Received) -> String {
    async fn hook(
        State((secret, received)): State<(Arc<Mutex<Option<String>>>, Received)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> &'static str {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = String::from_utf8_lossy(&body).into_owned();
        let (id, timestamp, signature) =
            (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
        let signed = secret.lock().unwrap().as_deref().is_some_and(|secret| {
            let expected = nova_app::webhooks::sign(secret, &id, timestamp.parse().unwrap_or(0), &body);
            expected.is_ok_and(|expected| signature.split(' ').any(|s| s == expected))
        });
        let message: Value = serde_json::from_str(&body).unwrap_or_default();
        let kind = message["type"].as_str().unwrap_or_default().to_string();
        let job = message["data"]["job_id"].as_str().unwrap_or_default().to_string();
        received.lock().unwrap().push((id, kind, job, signed));
        "ok"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state((secret, received));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The Redis of the machine, or `None` (a skip) outside CI when it does not answer.
fn redis_url() -> Option<String> {
    let url = std::env::var("NOVA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    match redis_command(&url, &["PING"]) {
        Ok(reply) if reply.starts_with("+PONG") => Some(url),
        other if nova_core::testing::in_ci() => panic!("Redis at {url} is needed in CI: {other:?}"),
        other => {
            eprintln!("skipping: no Redis at {url} ({other:?})");
            None
        }
    }
}

/// One command to the Redis at `url` (`redis://HOST:PORT`), in RESP; the first line of the reply.
fn redis_command(url: &str, args: &[&str]) -> std::io::Result<String> {
    let host = url.trim_start_matches("redis://").split('/').next().unwrap_or_default();
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(command.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply)
}

/// A `nova worker` process on the shared stores, started once its banner is out.
fn start_worker(data_dir: &Path, env: &[(&str, String)]) -> KillOnDrop {
    let mut command = nova();
    command.args(["worker", "--concurrency", "2", "--lease-secs", LEASE_SECS, "--sandbox-pool", "0", "--data-dir"]);
    command.arg(data_dir).env("NOVA_LOG", "warn").env_remove("NOVA_DATABASE_URL").env_remove("NOVA_BLOB_URL");
    let mut child = KillOnDrop(command.envs(env.iter().map(|(k, v)| (k, v))).stdout(Stdio::piped()).spawn().unwrap());
    let mut banner = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    assert!(banner.starts_with("nova: worker"), "unexpected banner {banner:?}");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scaled_out_stack_loses_nothing_when_a_worker_dies() {
    let Some(t) = TestStore::new(Backend::Postgres).await else { return };
    let Some(redis) = redis_url() else { return };
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket(BUCKET);

    // Secrets as files, as compose mounts them under /run/secrets.
    let secrets = tempfile::tempdir().unwrap();
    let api_key = format!("nova_{}", "5eed".repeat(16));
    let write = |name: &str, value: &str| {
        let path = secrets.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path.to_str().unwrap().to_string()
    };
    let mut env: Vec<(&str, String)> = vec![
        ("NOVA_DATABASE_URL_FILE", write("database-url", &t.url)),
        ("NOVA_BLOB_URL", format!("s3://{BUCKET}/documents")),
        // Every process runs the webhook dispatcher, so every process is told where hooks may go.
        ("NOVA_WEBHOOK_ALLOW", "127.0.0.1".into()),
    ];
    for (name, value) in moto.s3_settings() {
        match name {
            "AWS_SECRET_ACCESS_KEY" => env.push(("AWS_SECRET_ACCESS_KEY_FILE", write("s3-secret", &value))),
            _ => env.push((name, value)),
        }
    }
    // Each process has a data directory of its own: nothing is shared but the services.
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut api_env = env.clone();
    api_env.push(("NOVA_API_KEY_FILE", write("api-key", &api_key)));
    api_env.push(("NOVA_REDIS_URL_FILE", write("redis-url", &redis)));
    // Each request uses 3.6 s of a budget that never runs out, so the key's budget stays in Redis (it expires
    // once full again) for seconds after any request, however the test is scheduled; the default's 20 ms do not.
    api_env.push(("NOVA_RATE_LIMIT", "1000/h,burst=1000000".into()));
    let api_env: Vec<(&str, &str)> = api_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (api, base, _) = start_serve_on("127.0.0.1:0", dirs[0].path(), &["--workers", "0"], &api_env);
    let mut workers = [Some(start_worker(dirs[1].path(), &env)), Some(start_worker(dirs[2].path(), &env))];

    let client = reqwest::Client::new();
    let authed = |request: reqwest::RequestBuilder| request.bearer_auth(&api_key);
    assert_eq!(client.get(format!("{base}/v1/documents")).send().await.unwrap().status(), 401, "never open");
    let secret: Value =
        authed(client.get(format!("{base}/v1/webhooks/secret"))).send().await.unwrap().json().await.unwrap();
    let signing = Arc::new(Mutex::new(Some(secret["secret"].as_str().expect("a signing secret").to_string())));
    let received = Received::default();
    let hook = receiver(signing, received.clone()).await;
    let get_job = |id: &str| {
        let url = format!("{base}/v1/jobs/{id}");
        let client = client.clone();
        let key = api_key.clone();
        move || client.get(&url).bearer_auth(&key)
    };
    let submit = |body: Value| {
        let request = authed(client.post(format!("{base}/v1/jobs"))).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 202, "submitting a job");
            response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    };

    // 1. Invoices through the API, extracted by the workers, results and webhooks back through the API.
    let names = ["mustang__103767-Invoice-2026-03-24-1", "mustang__validV2PDF", "mustang__zugferd_invoice"];
    let mut extractions = Vec::new();
    for name in names {
        let pdf = std::fs::read(dev_dir().join(format!("facturx/{name}.pdf"))).unwrap();
        let upload = authed(client.post(format!("{base}/v1/documents"))).header("content-type", "application/pdf");
        let document: Value = upload.body(pdf).send().await.unwrap().json().await.unwrap();
        let document = document["id"].as_str().unwrap_or_else(|| panic!("upload of {name}: {document}"));
        let input = json!({"document_id": document});
        let job = submit(json!({"workflow": "invoice.extract", "input": input, "webhook": {"url": hook}})).await;
        extractions.push((name, job));
    }
    for (name, job) in &extractions {
        let finished = wait_finished(get_job(job), Duration::from_secs(120)).await;
        assert_eq!(finished["status"], "succeeded", "{name}: {finished}");
        let result: Value =
            authed(client.get(format!("{base}/v1/jobs/{job}/result"))).send().await.unwrap().json().await.unwrap();
        let expected = std::fs::read_to_string(dev_dir().join(format!("facturx/{name}.expected.json"))).unwrap();
        let expected: Value = serde_json::from_str(&expected).unwrap();
        let fields = &expected["fields"];
        assert_eq!(
            (&result["invoice_number"], &result["totals"]["grand_total"]),
            (&fields["invoice_number"], &fields["totals"]["grand_total"]),
            "{name}"
        );
    }
    // The documents' bytes are in the bucket, not in any process's data directory.
    for dir in &dirs {
        let files = files_under(dir.path());
        assert!(files.iter().all(|f| !f.starts_with(dir.path().join("blobs"))), "blobs kept locally: {files:?}");
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM documents").await, 3, "the documents are in PostgreSQL");
    // The API counted its requests in Redis, under the key's id.
    let key_id = t.store.list_keys().await.unwrap()[0].id.to_string();
    let counted = redis_command(&redis, &["EXISTS", &format!("nova:rate:{key_id}")]).unwrap();
    assert_eq!(counted.trim(), ":1", "the request budget of {key_id} lives in Redis");

    // 2. Long jobs on both workers; one worker dies holding some, the other finishes them.
    let mut long = Vec::new();
    for _ in 0..4 {
        let events = ["job.succeeded", "job.failed", "job.lease_expired"];
        long.push(
            submit(
                json!({"workflow": "noop", "input": {"sleep_ms": 6000}, "webhook": {"url": hook, "events": events}}),
            )
            .await,
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while t.store.count_jobs(JobStatus::Running).await.unwrap() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "the workers did not take the four jobs");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    workers[0].take().unwrap().0.kill().unwrap(); // SIGKILL: no chance to hand anything back
    let mut owners = HashMap::new();
    for id in &long {
        let finished = wait_finished(get_job(id), Duration::from_secs(60)).await;
        assert_eq!(finished["status"], "succeeded", "{finished}");
        let job = t.store.get_job(id.parse::<JobId>().unwrap()).await.unwrap().unwrap();
        let wins: Vec<_> = job.attempts.iter().filter(|a| a.outcome == Some(AttemptOutcome::Succeeded)).collect();
        assert_eq!(wins.len(), 1, "completed exactly once: {job:?}");
        owners.insert(id.clone(), job.attempts.iter().map(|a| (a.worker_id, a.outcome)).collect::<Vec<_>>());
    }
    let taken_over: Vec<_> = owners.iter().filter(|(_, attempts)| attempts.len() > 1).collect();
    assert!(!taken_over.is_empty(), "the killed worker held jobs: {owners:?}");
    for (id, attempts) in &taken_over {
        let (first, last) = (attempts[0], attempts[attempts.len() - 1]);
        assert_ne!(first.0, last.0, "{id}: finished by the other worker, not the one that died: {attempts:?}");
        assert_ne!(first.1, Some(AttemptOutcome::Succeeded), "{id}: the dead worker's attempt did not succeed");
    }

    // 3. Every job's end reached the receiver, signed, and the taken-over jobs' lease expiries too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let wanted: Vec<(&str, &str)> = extractions
        .iter()
        .map(|(_, job)| (job.as_str(), "job.succeeded"))
        .chain(long.iter().map(|job| (job.as_str(), "job.succeeded")))
        .chain(taken_over.iter().map(|(job, _)| (job.as_str(), "job.lease_expired")))
        .collect();
    loop {
        let got = received.lock().unwrap().clone();
        let missing: Vec<_> =
            wanted.iter().filter(|(job, kind)| !got.iter().any(|(_, k, j, _)| j == job && k == kind)).collect();
        if missing.is_empty() {
            assert!(
                got.iter().all(|(.., signed)| *signed),
                "every message is signed with the tenant's secret: {got:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "webhooks not delivered: {missing:?}; got {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 4. With the API stopped, the surviving worker still sends webhooks: a job enqueued straight into the
    // queue reaches the receiver through the worker's own dispatcher.
    let mut api = api;
    let status = std::process::Command::new("kill").args(["-TERM", &api.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(api.0.wait().unwrap().success(), "the API stops cleanly on SIGTERM");
    let tenant = t.store.list_keys().await.unwrap()[0].tenant;
    let webhook = nova_store::JobWebhook { url: hook.clone(), events: vec!["job.succeeded".into()] };
    let job = nova_store::NewJob {
        tenant,
        webhook: Some(webhook),
        ..nova_store::NewJob::new(nova_core::Workflow::Noop, json!({}))
    };
    let job = t.store.tenant(tenant).enqueue(job).await.unwrap().job.id.to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !received.lock().unwrap().iter().any(|(_, kind, j, signed)| *j == job && kind == "job.succeeded" && *signed) {
        assert!(tokio::time::Instant::now() < deadline, "the worker alone sent no webhook for {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The survivor stops cleanly.
    let mut survivor = workers[1].take().unwrap();
    let status = std::process::Command::new("kill").args(["-TERM", &survivor.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(survivor.0.wait().unwrap().success(), "stops cleanly on SIGTERM");
}
