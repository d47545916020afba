//! Starts the real API (and optionally in-process workers) on port 0 over a temporary data directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nova_app::housekeeping::HousekeepingConfig;
use nova_app::webhooks::WebhookConfig;
use nova_app::{SandboxHandle, WorkerConfig};
use nova_sandbox::Sandbox;
use nova_server::{AppState, Limiter, ServerConfig};
use nova_store::testing::{Backend, TestStore};
use nova_store::Store;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The app's store, for making keys and tenants as `nova keys` does.
    pub store: Store,
    /// The scratch PostgreSQL database, dropped with the app.
    _database: Option<TestStore>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    workers: Option<JoinHandle<()>>,
}

pub struct Options {
    pub workers: usize,
    /// Rate limits are off unless a test sets `config.rate_limit`: other tests send bursts of their own.
    pub config: ServerConfig,
    pub limiter: Limiter,
    /// The webhook dispatcher's settings; it runs beside the server, as `nova serve` runs it.
    pub webhooks: WebhookConfig,
    /// The sandbox of `POST /v1/executions` and of the workers' `code.run` jobs, or why there is none
    /// (`503 sandbox_unavailable`, and such jobs retried). Tests give a `ScriptedSandbox`.
    pub sandbox: Result<Arc<dyn Sandbox>, Arc<str>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workers: 2,
            config: ServerConfig { rate_limit: None, ..ServerConfig::default() },
            limiter: Limiter::memory(),
            webhooks: WebhookConfig::default(),
            sandbox: Err("not in these tests".into()),
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(tempfile::tempdir().unwrap(), Options::default()).await
    }

    pub async fn spawn_with(dir: tempfile::TempDir, options: Options) -> Self {
        let store = Store::open(dir.path()).await.unwrap();
        Self::start(store, dir, options, None).await
    }

    /// An app over a fresh store on `backend`; `None` when PostgreSQL is not configured outside CI.
    pub async fn spawn_on(backend: Backend, options: Options) -> Option<Self> {
        let database = TestStore::new(backend).await?;
        let store = database.store.clone();
        Some(Self::start(store, tempfile::tempdir().unwrap(), options, Some(database)).await)
    }

    async fn start(store: Store, dir: tempfile::TempDir, options: Options, database: Option<TestStore>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        let workers = (options.workers > 0).then(|| {
            let config = WorkerConfig {
                concurrency: options.workers,
                poll_interval: Duration::from_millis(200),
                heartbeat: Duration::from_millis(100),
                sandbox: options.sandbox.clone().ok().map(SandboxHandle),
                ..WorkerConfig::default()
            };
            tokio::spawn(nova_app::run(store.clone(), config, wake.clone(), shutdown.clone().cancelled_owned()))
        });
        nova_app::housekeeping::spawn(&store, options.webhooks, HousekeepingConfig::default(), &shutdown);
        let state = AppState::from(nova_server::AppParts {
            store: store.clone().into(),
            config: std::sync::Arc::new(options.config),
            wake_workers: wake,
            sandbox: options.sandbox,
            sandboxes: Err("not in these tests: the CLI suite runs them in the real jail".into()),
            limiter: options.limiter,
            extractor: nova_app::extraction::Extractor::default(),
        });
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { nova_server::serve(listener, state, shutdown.cancelled_owned()).await.unwrap() }
        });
        Self { base, client: reqwest::Client::new(), dir, store, _database: database, shutdown, server, workers }
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

    /// `GET path` as an event stream, with `Last-Event-ID` when given.
    pub async fn get_events(&self, path: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path)).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.unwrap()
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

/// One block of an event stream: a message, or a comment (a keep-alive).
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    Message { id: Option<String>, event: Option<String>, data: Value },
    Comment,
}

/// Reads an event stream as it arrives; each read fails the test after 30 s rather than hang it.
pub struct EventStream {
    response: reqwest::Response,
    buf: String,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.headers()["content-type"], "text/event-stream", "{response:?}");
        Self { response, buf: String::new() }
    }

    /// The next block, or `None` once the server has ended the stream.
    pub async fn next(&mut self) -> Option<SseItem> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("the event stream stayed silent for 30 s")
                .expect("reading the event stream");
            match chunk {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).expect("UTF-8 events")),
                None => {
                    assert!(self.buf.trim().is_empty(), "the stream ended inside a message: {:?}", self.buf);
                    return None;
                }
            }
        }
    }

    /// The next message, skipping keep-alive comments.
    pub async fn next_message(&mut self) -> Option<(Option<String>, Option<String>, Value)> {
        loop {
            match self.next().await? {
                SseItem::Message { id, event, data } => return Some((id, event, data)),
                SseItem::Comment => continue,
            }
        }
    }

    /// Every message until the stream ends: `(id, event, data)`.
    pub async fn rest(&mut self) -> Vec<(Option<String>, Option<String>, Value)> {
        let mut messages = Vec::new();
        while let Some(message) = self.next_message().await {
            messages.push(message);
        }
        messages
    }
}

fn parse_block(block: &str) -> SseItem {
    let (mut id, mut event, mut data) = (None, None, None::<String>);
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_string();
        match field {
            "id" => id = Some(value),
            "event" => event = Some(value),
            "data" => data = Some(data.map_or(value.clone(), |d| format!("{d}\n{value}"))),
            other => panic!("unexpected field `{other}` in {block:?}"),
        }
    }
    match data {
        Some(data) => SseItem::Message {
            id,
            event,
            data: serde_json::from_str(&data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}")),
        },
        None => {
            assert!(id.is_none() && event.is_none(), "a message without data: {block:?}");
            SseItem::Comment
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
