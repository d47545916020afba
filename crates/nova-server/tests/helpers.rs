//! Starts the real API (and optionally in-process workers) on port 0 over a temporary data directory.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nova_server::{AppState, ServerConfig};
use nova_store::Store;
use nova_worker::WorkerConfig;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    workers: Option<JoinHandle<()>>,
}

pub struct Options {
    pub workers: usize,
    pub config: ServerConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self { workers: 2, config: ServerConfig::default() }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(tempfile::tempdir().unwrap(), Options::default()).await
    }

    pub async fn spawn_with(dir: tempfile::TempDir, options: Options) -> Self {
        let store = Store::open(dir.path()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        let workers = (options.workers > 0).then(|| {
            let config = WorkerConfig {
                concurrency: options.workers,
                poll_interval: Duration::from_millis(200),
                heartbeat: Duration::from_millis(100),
                ..WorkerConfig::default()
            };
            tokio::spawn(nova_worker::run(store.clone(), config, wake.clone(), shutdown.clone().cancelled_owned()))
        });
        let state =
            AppState { store, config: options.config, wake_workers: wake, sandbox: Err("not in these tests".into()) };
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { nova_server::serve(listener, state, shutdown.cancelled_owned()).await.unwrap() }
        });
        Self { base, client: reqwest::Client::new(), dir, shutdown, server, workers }
    }

    /// Stops the server and workers the way a SIGTERM does, and hands back the data directory.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.server.await.unwrap();
        if let Some(w) = self.workers {
            w.await.unwrap();
        }
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        into_json(r).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        into_json(self.client.post(self.url(path)).json(body).send().await.unwrap()).await
    }

    pub async fn upload_raw(&self, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/v1/documents"))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        into_json(r).await
    }

    pub async fn upload_multipart(&self, bytes: Vec<u8>, filename: &str) -> (u16, Value) {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string());
        let form = reqwest::multipart::Form::new().part("file", part);
        into_json(self.client.post(self.url("/v1/documents")).multipart(form).send().await.unwrap()).await
    }

    pub async fn submit_extract(&self, document_id: &str) -> (u16, Value) {
        self.post_json(
            "/v1/jobs",
            &serde_json::json!({"workflow": "invoice.extract", "input": {"document_id": document_id}}),
        )
        .await
    }

    /// Polls the job until it reaches a final state, as a client would; fails after 60 s.
    pub async fn wait_final(&self, job_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{job_id}")).await;
            assert_eq!(status, 200, "{job}");
            if matches!(job["status"].as_str(), Some("succeeded" | "failed" | "canceled")) {
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "job {job_id} did not finish: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn into_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
    (status, value)
}

/// A file of the shared development invoices.
pub fn dev_file(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev").join(rel);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared invoices must sit beside the repository)", path.display()))
}

/// Asserts the API's error shape and returns the code.
pub fn error_code(body: &Value) -> &str {
    let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an API error: {body}"));
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "error without a message: {body}");
    code
}
