//! A scripted OpenAI-compatible model server, for tests of the AI path here and in the crates above (the
//! API and the binary run it end to end against this server). Built with the `testing` feature only.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::LlmConfig;

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
    /// A streamed answer (`"stream": true`) of these pieces, then a finish reason of `stop`.
    Stream(Vec<String>),
    /// A streamed answer of the first pieces, then, once the gate opens ([`Script::release`], or
    /// `POST /release`), the others and `stop`.
    Gated(Vec<String>, Vec<String>),
    /// A streamed answer of these pieces, ended by this error object (`{"error": ...}`) instead of a finish.
    StreamError(Vec<String>, Value),
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
    /// Opens the gates of [`Reply::Gated`] answers, one per release, in order.
    gate: tokio::sync::Notify,
    /// Streamed answers whose client went away before their end.
    pub streams_dropped: AtomicUsize,
}

impl Script {
    pub fn push(&self, reply: Reply) {
        self.replies.lock().unwrap().push_back(reply);
    }

    /// Lets one [`Reply::Gated`] answer, waiting now or the next to wait, go on.
    pub fn release(&self) {
        self.gate.notify_one();
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
            .route("/release", post(release))
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
        Some(Reply::Stream(pieces)) => streamed(script, pieces, Vec::new(), false),
        Some(Reply::Gated(before, after)) => streamed(script, before, after, true),
        Some(Reply::StreamError(pieces, error)) => {
            let chunk = |piece: &String| {
                let delta = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "scripted-model",
                                   "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
                format!("data: {delta}\n\n")
            };
            let mut body: String = pieces.iter().map(chunk).collect();
            body.push_str(&format!("data: {}\n\n", json!({ "error": error })));
            ([("content-type", "text/event-stream")], body).into_response()
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

/// A streamed chat completion: `before`, then (when `gated`, once the gate opens) `after`, each piece a
/// chunk, then the finish, the usage and `[DONE]`.
fn streamed(script: Arc<Script>, before: Vec<String>, after: Vec<String>, gated: bool) -> Response {
    /// Counts the stream as dropped unless it reached its end.
    struct Watch {
        script: Arc<Script>,
        ended: bool,
    }
    impl Drop for Watch {
        fn drop(&mut self) {
            if !self.ended {
                self.script.streams_dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "scripted-model",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut first: Vec<String> = before.iter().map(|p| chunk(json!({"content": p}), Value::Null)).collect();
    let mut rest: Vec<String> = after.iter().map(|p| chunk(json!({"content": p}), Value::Null)).collect();
    let end = if gated { &mut rest } else { &mut first };
    end.push(chunk(json!({}), json!("stop")));
    let usage = json!({"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS});
    end.push(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage})
    ));
    end.push("data: [DONE]\n\n".to_string());
    let watch = Watch { script, ended: false };
    let state = (watch, first.into_iter(), rest.into_iter(), gated);
    let body = futures::stream::unfold(state, |(mut watch, mut first, mut rest, mut gated)| async move {
        let piece = match first.next() {
            Some(piece) => piece,
            None => {
                if gated {
                    watch.script.gate.notified().await;
                    gated = false;
                }
                rest.next()?
            }
        };
        watch.ended |= piece.starts_with("data: [DONE]");
        Some((Ok::<_, std::convert::Infallible>(piece), (watch, first, rest, gated)))
    });
    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(body)).into_response()
}

async fn release(State(script): State<Arc<Script>>) -> StatusCode {
    script.release();
    StatusCode::NO_CONTENT
}

async fn leak(State(script): State<Arc<Script>>) -> &'static str {
    script.leaks.fetch_add(1, Ordering::SeqCst);
    "leaked"
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

/// What a model might write for "total the invoices per seller into a CSV".
pub const TOTALS_PER_SELLER: &str = r#"import csv, json
from decimal import Decimal

docs = json.load(open("documents/index.json"))
totals = {}
for doc in docs:
    inv = doc.get("invoice") or {}
    seller = (inv.get("seller") or {}).get("name") or "unknown"
    grand = (inv.get("totals") or {}).get("grand_total")
    if grand is not None:
        totals[seller] = totals.get(seller, Decimal("0")) + Decimal(grand)
with open("out/totals.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["seller", "total"])
    for seller in sorted(totals):
        w.writerow([seller, totals[seller]])
texts = sum(1 for doc in docs if doc["text_file"] and open(doc["text_file"]).read())
print(f"{len(totals)} sellers, {len(docs)} documents, {texts} texts")
"#;
