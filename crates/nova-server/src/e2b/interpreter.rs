//! E2B's code interpreter as its SDK calls it: `/execute` runs Python in a context whose variables survive
//! from one run to the next, answering with JSON lines (`stdout`, `stderr`, `result`, `error`,
//! `number_of_executions`, `end_of_execution`), and `/contexts` makes, lists, restarts and removes contexts.
//! Errors come as plain text with their status, before any line.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use nova_sandbox::session::{Event, SessionError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{sandbox_of, Refusal};
use crate::AppState;

/// A plain-text error, as the interpreter's server answers.
fn text_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into()).into_response()
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::Unauthenticated(message) => text_error(StatusCode::UNAUTHORIZED, message),
        // The SDK reads a 502 as a sandbox that is gone.
        Refusal::Gone(message) | Refusal::Unavailable(message) => text_error(StatusCode::BAD_GATEWAY, message),
    }
}

fn session_failed(e: SessionError) -> Response {
    let status = match e.kind.as_str() {
        "not_found" => StatusCode::NOT_FOUND,
        "invalid" => StatusCode::BAD_REQUEST,
        "ended" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text_error(status, e.message)
}

#[derive(Deserialize)]
pub(super) struct ExecuteBody {
    code: String,
    context_id: Option<String>,
    language: Option<String>,
    env_vars: Option<HashMap<String, String>>,
}

/// Whether `language` is one this interpreter runs: Python only.
fn python(language: Option<&str>) -> bool {
    language.is_none_or(|l| matches!(l.to_ascii_lowercase().as_str(), "python" | "python3" | "py"))
}

/// A result's text as the interpreter shows it: a string's repr without its quotes.
fn shown(repr: &str) -> &str {
    for quote in ['\'', '"'] {
        if repr.len() >= 2 && repr.starts_with(quote) && repr.ends_with(quote) {
            return &repr[1..repr.len() - 1];
        }
    }
    repr
}

/// Output as the interpreter's server sends it: a JSON line per line of text (the SDK's `on_stdout` is called
/// once per line).
fn output_lines(kind: &str, bytes: &[u8], timestamp: &str) -> Bytes {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for piece in text.split_inclusive('\n') {
        out.extend_from_slice(&line(json!({"type": kind, "text": piece, "timestamp": timestamp})));
    }
    Bytes::from(out)
}

fn line(value: Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// `POST /execute`.
pub(super) async fn execute(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ExecuteBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let entry = match sandbox_of(&app, &headers) {
        Ok(entry) => entry,
        Err(refusal) => return refused(refusal),
    };
    let body = match body {
        Ok(Json(body)) => body,
        Err(e) => return text_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if body.context_id.is_some() && body.language.is_some() {
        return text_error(StatusCode::BAD_REQUEST, "Only one of context_id or language can be provided");
    }
    if !python(body.language.as_deref()) {
        return text_error(StatusCode::BAD_REQUEST, "NOVA's code interpreter runs Python only");
    }
    if let Some(context) = body.context_id.clone() {
        match entry.blocking(|s| s.contexts()).await {
            Ok(contexts) if contexts.iter().any(|(id, _)| *id == context) => {}
            Ok(_) => return text_error(StatusCode::NOT_FOUND, format!("Context {context} not found")),
            Err(e) => return session_failed(e),
        }
    }
    let env = body.env_vars.unwrap_or_default();
    if let Err(message) = nova_app::sandboxes::check_env(env.iter()) {
        return text_error(StatusCode::BAD_REQUEST, message);
    }
    let (code, context) = (body.code, body.context_id);
    let (id, events) = match entry.run_code(code, context, env).await {
        Ok(started) => started,
        Err(e) => return session_failed(e),
    };
    // A client that goes away (its own timeout, say) interrupts its run, as Jupyter's server does: the next
    // run would otherwise wait behind it.
    let guard = InterruptOnDrop { entry: Some(entry), id };
    let stream = futures::stream::unfold((events, false, guard), |(mut events, ended, mut guard)| async move {
        if ended {
            guard.entry.take();
            return None;
        }
        let timestamp = || Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let (bytes, ended) = match events.recv().await {
            Some(Event::Stdout(b)) => (output_lines("stdout", &b, &timestamp()), false),
            Some(Event::Stderr(b)) => (output_lines("stderr", &b, &timestamp()), false),
            Some(Event::Result(repr)) => {
                (line(json!({"type": "result", "text": shown(&repr), "is_main_result": true, "extra": {}})), false)
            }
            Some(Event::Error(e)) => {
                (line(json!({"type": "error", "name": e.name, "value": e.value, "traceback": e.traceback})), false)
            }
            Some(Event::Done(fields)) => {
                let count = fields.get("execution_count").cloned().unwrap_or(json!(0));
                let mut both = line(json!({"type": "number_of_executions", "execution_count": count})).to_vec();
                both.extend_from_slice(&line(json!({"type": "end_of_execution"})));
                (Bytes::from(both), true)
            }
            Some(Event::Fail(e)) => {
                let error = json!({"type": "error", "name": "SandboxError", "value": e.message, "traceback": ""});
                let mut both = line(error).to_vec();
                both.extend_from_slice(&line(json!({"type": "unexpected_end_of_execution"})));
                (Bytes::from(both), true)
            }
            Some(Event::Started { .. } | Event::Data(_)) => (Bytes::new(), false),
            None => (line(json!({"type": "unexpected_end_of_execution"})), true),
        };
        Some((Ok::<_, Infallible>(bytes), (events, ended, guard)))
    })
    .filter(|chunk| std::future::ready(chunk.as_ref().is_ok_and(|b| !b.is_empty())));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response()
}

/// Interrupts a code run when dropped before its end.
struct InterruptOnDrop {
    entry: Option<std::sync::Arc<nova_app::sandboxes::SandboxEntry>>,
    id: u64,
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            let id = self.id;
            tokio::spawn(async move {
                let _ = entry.blocking(move |s| s.interrupt(id)).await;
            });
        }
    }
}

#[derive(Deserialize, Default)]
pub(super) struct ContextBody {
    cwd: Option<String>,
    language: Option<String>,
}

fn context_json(id: &str, cwd: &str) -> Value {
    json!({"id": id, "language": "python", "cwd": cwd})
}

/// `POST /contexts`.
pub(super) async fn create_context(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Option<Json<ContextBody>>,
) -> Result<Response, Response> {
    let entry = sandbox_of(&app, &headers).map_err(refused)?;
    let body = body.map(|b| b.0).unwrap_or_default();
    if !python(body.language.as_deref()) {
        return Err(text_error(StatusCode::BAD_REQUEST, "NOVA's code interpreter runs Python only"));
    }
    let (id, cwd) = entry.blocking(move |s| s.create_context(body.cwd.as_deref())).await.map_err(session_failed)?;
    Ok(Json(context_json(&id, &cwd)).into_response())
}

/// `GET /contexts`.
pub(super) async fn list_contexts(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, Response> {
    let entry = sandbox_of(&app, &headers).map_err(refused)?;
    let contexts = entry.blocking(|s| s.contexts()).await.map_err(session_failed)?;
    Ok(Json(contexts.iter().map(|(id, cwd)| context_json(id, cwd)).collect::<Vec<_>>()).into_response())
}

/// `DELETE /contexts/{id}`.
pub(super) async fn remove_context(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, Response> {
    let entry = sandbox_of(&app, &headers).map_err(refused)?;
    entry.blocking(move |s| s.remove_context(&id)).await.map_err(session_failed)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /contexts/{id}/restart`: the context's variables are forgotten.
pub(super) async fn restart_context(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, Response> {
    let entry = sandbox_of(&app, &headers).map_err(refused)?;
    entry.blocking(move |s| s.reset_context(&id)).await.map_err(session_failed)?;
    Ok(StatusCode::NO_CONTENT)
}
