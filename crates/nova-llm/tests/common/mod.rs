//! A scripted OpenAI-compatible server, the real jail sandbox and a fresh store, for the loop's tests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nova_llm::{ChatClient, LlmConfig, LlmExtractor};
use nova_sandbox::jail::{JailConfig, JailSandbox};
use nova_sandbox::Sandbox;
use nova_store::testing::{Backend, TestStore};
use serde_json::{json, Value};

/// Tokens the scripted model reports for every answer.
pub const INPUT_TOKENS: u64 = 1_000;
pub const OUTPUT_TOKENS: u64 = 200;

/// One scripted answer of the model server.
pub enum Reply {
    /// 200 with this program in a fenced block.
    Program(String),
    /// An error status, with a `Retry-After` header when given.
    Status(u16, Option<&'static str>),
    /// The program, after a delay.
    Slow(Duration, String),
}

#[derive(Default)]
pub struct Script {
    replies: Mutex<VecDeque<Reply>>,
    /// Chat completion requests received.
    pub calls: AtomicUsize,
    /// Requests to `/leak`, which only a program that escaped could make.
    pub leaks: AtomicUsize,
    /// The bodies of the chat requests, in order.
    pub requests: Mutex<Vec<Value>>,
    /// The `Authorization` header of the last chat request.
    pub authorization: Mutex<Option<String>>,
}

impl Script {
    pub fn push(&self, reply: Reply) {
        self.replies.lock().unwrap().push_back(reply);
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The last user message of request `i`.
    pub fn last_user_message(&self, i: usize) -> String {
        let requests = self.requests.lock().unwrap();
        let messages = requests[i]["messages"].as_array().cloned().unwrap_or_default();
        messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }
}

pub struct ModelServer {
    pub script: Arc<Script>,
    pub addr: SocketAddr,
}

impl ModelServer {
    pub async fn start() -> ModelServer {
        let script = Arc::new(Script::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/leak", get(leak))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the model server");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serving") });
        ModelServer { script, addr }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A configuration for this server with quick timeouts and backoff.
    pub fn config(&self) -> LlmConfig {
        let mut config = LlmConfig::new(self.base_url(), "scripted-model");
        config.min_backoff = Duration::from_millis(10);
        config.max_backoff = Duration::from_secs(5);
        config.request_timeout = Duration::from_secs(10);
        config.program_timeout = Duration::from_millis(1500);
        config.max_repair_rounds = 3;
        config
    }
}

async fn chat(State(script): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    script.calls.fetch_add(1, Ordering::SeqCst);
    *script.authorization.lock().unwrap() =
        headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    script.requests.lock().unwrap().push(body);
    let reply = script.replies.lock().unwrap().pop_front();
    match reply {
        Some(Reply::Program(code)) => completion(&code),
        Some(Reply::Slow(delay, code)) => {
            tokio::time::sleep(delay).await;
            completion(&code)
        }
        Some(Reply::Status(status, retry_after)) => {
            let status = StatusCode::from_u16(status).expect("a status code");
            let mut response = (status, Json(json!({"error": {"message": "scripted failure"}}))).into_response();
            if let Some(after) = retry_after {
                response.headers_mut().insert("retry-after", after.parse().expect("a header value"));
            }
            response
        }
        None => (StatusCode::INTERNAL_SERVER_ERROR, "the script has no more replies").into_response(),
    }
}

fn completion(code: &str) -> Response {
    Json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "scripted-model",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": format!("Here is the program:\n```python\n{code}\n```\n")}}],
        "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS},
    }))
    .into_response()
}

async fn leak(State(script): State<Arc<Script>>) -> &'static str {
    script.leaks.fetch_add(1, Ordering::SeqCst);
    "leaked"
}

/// The real jail. A host that cannot build one skips the test, except under CI, where that fails.
pub fn sandbox() -> Option<Arc<dyn Sandbox>> {
    let mut config = JailConfig::detect(env!("CARGO_BIN_EXE_nova-llm-sandbox-helper"), &[]).expect("python3 on PATH");
    config.pool_size = 1;
    let jail = JailSandbox::new(config);
    match jail.check() {
        Ok(()) => Some(Arc::new(jail)),
        Err(e) if std::env::var_os("CI").is_some() => panic!("the jail does not work here: {e}"),
        Err(e) => {
            eprintln!("skipping: the jail does not work here: {e}");
            None
        }
    }
}

pub struct Harness {
    pub server: ModelServer,
    pub store: TestStore,
    pub sandbox: Arc<dyn Sandbox>,
}

impl Harness {
    pub async fn start() -> Option<Harness> {
        let sandbox = tokio::task::spawn_blocking(sandbox).await.expect("the sandbox check")?;
        let server = ModelServer::start().await;
        let store = TestStore::new(Backend::Sqlite).await.expect("a SQLite store");
        Some(Harness { server, store, sandbox })
    }

    pub fn extractor(&self, config: LlmConfig) -> LlmExtractor {
        LlmExtractor::new(ChatClient::new(config).expect("a client"), self.sandbox.clone(), self.store.store.clone())
    }
}

/// A dev invoice of `../shared/invoices/dev/facturx` (without its XML): its text and what the rules found.
pub fn dev_invoice(stem: &str) -> (String, nova_core::Invoice) {
    let path = dev_dir().join("facturx").join(format!("{stem}.noxml.pdf"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let text = nova_extract::text(&bytes).expect("the text layer");
    let rules = nova_extract::extract(&bytes).expect("the rules");
    (text, rules)
}

pub fn dev_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev")
}

/// Two invoices of one layout (GnuAccounting's English template).
pub const LAYOUT_A: &str = "zfc__MustangGnuaccountingBeispielRE-20190610_507";
pub const LAYOUT_A2: &str = "zfc__MustangGnuaccountingBeispielRE-20201121_508";

/// What a model might write for that template: every value found by its label, none copied.
pub const GOOD: &str = r#"import re
from decimal import Decimal

def _amount(label, text):
    m = re.search(re.escape(label) + r"\s*([\d.,]+)\s*€", text)
    return m.group(1).replace(",", "") if m else None

def extract(text):
    number = re.search(r"Invoice #\s*(\S+)\s+issued at\s+(\d{4}-\d{2}-\d{2})", text)
    due = re.search(r"Please remit until (\d{4}-\d{2}-\d{2})", text)
    vat = re.search(r"VAT-ID:\s*(\S+)", text)
    iban = re.search(r"IBAN\s+([A-Z]{2}[0-9A-Z ]+)", text)
    seller = re.search(r"^(.+?)\s+●", text, re.M)
    order = re.search(r"Your order\s+(\S+)", text)
    net = _amount("Net total:", text)
    tax = _amount("VAT total:", text)
    due_payable = _amount("Due payable:", text)
    grand = str(Decimal(net) + Decimal(tax)) if net and tax else None
    rows = [{"category": "S", "rate": r, "basis": b, "amount": a}
            for r, b, a in re.findall(r"^(\d+)%\s+([\d.]+) €\s+([\d.]+) €\s*$", text, re.M)]
    return {
        "invoice_number": number.group(1) if number else None,
        "issue_date": number.group(2) if number else None,
        "due_date": due.group(1) if due else None,
        "type_code": "380",
        "currency": "EUR" if "€" in text else None,
        "buyer_reference": order.group(1) if order else None,
        "payment_iban": iban.group(1).strip() if iban else None,
        "seller": {"name": seller.group(1).strip() if seller else None, "vat_id": vat.group(1) if vat else None},
        "totals": {"line_total": net, "tax_basis_total": net, "tax_total": tax,
                   "grand_total": grand, "due_payable": due_payable},
        "tax_breakdown": rows,
    }
"#;

/// Raises on every document.
pub const RAISES: &str = "def extract(text):\n    total = 1 / 0\n    return {}\n";

/// Never returns.
pub const LOOPS: &str = "def extract(text):\n    while True:\n        pass\n";

/// Writes bytes that are not JSON where the result goes.
pub const GARBAGE: &str = "import os\n\ndef extract(text):\n    os.write(1, b'\\x00not json at all')\n    return {}\n";
