//! envd, the agent E2B runs in each sandbox, as its SDKs call it: the Connect RPC services `process.Process`
//! and `filesystem.Filesystem` with the JSON codec (unary calls as plain JSON, server streams as
//! `application/connect+json` envelopes), `/files` for uploads and downloads, and `/health`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use nova_app::sandboxes::{EventStream, SandboxEntry};
use nova_sandbox::session::{self, EntryInfo, Event, SessionError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{sandbox_of, Refusal, RestError};
use crate::AppState;

/// `GET /health`: `204` while the sandbox runs; `502` once it has ended (the SDK's `is_running` is false).
pub(super) async fn health(State(app): State<AppState>, headers: HeaderMap) -> Result<StatusCode, RestError> {
    sandbox_of(&app, &headers).map_err(files_error)?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- Connect RPC ------------------------------------------------------------------------------------------

/// A Connect error: `{"code": "<connect code>", "message": "..."}` with its HTTP status.
struct RpcError {
    code: &'static str,
    message: String,
}

impl RpcError {
    fn new(code: &'static str, message: impl Into<String>) -> RpcError {
        RpcError { code, message: message.into() }
    }

    fn status(&self) -> StatusCode {
        match self.code {
            "invalid_argument" | "failed_precondition" | "out_of_range" => StatusCode::BAD_REQUEST,
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "already_exists" | "aborted" => StatusCode::CONFLICT,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "unimplemented" => StatusCode::NOT_IMPLEMENTED,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "deadline_exceeded" => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<SessionError> for RpcError {
    fn from(e: SessionError) -> Self {
        let code = match e.kind.as_str() {
            "not_found" => "not_found",
            "exists" => "already_exists",
            "invalid" => "invalid_argument",
            "permission" => "permission_denied",
            "no_space" | "too_large" => "resource_exhausted",
            "ended" => "unavailable",
            "timeout" => "deadline_exceeded",
            _ => "internal",
        };
        RpcError::new(code, e.message)
    }
}

impl From<Refusal> for RpcError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated(message) => RpcError::new("unauthenticated", message),
            Refusal::Gone(message) | Refusal::Unavailable(message) => RpcError::new("unavailable", message),
        }
    }
}

/// A request's message: the body as JSON, or its first envelope for a streaming call.
fn message(headers: &HeaderMap, body: &[u8]) -> Result<Value, RpcError> {
    let streaming = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/connect+json"));
    let payload = if streaming {
        if body.len() < 5 || body[0] & 0x01 != 0 {
            return Err(RpcError::new("invalid_argument", "expected one uncompressed envelope"));
        }
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        body.get(5..5 + length).ok_or_else(|| RpcError::new("invalid_argument", "a truncated envelope"))?
    } else {
        body
    };
    serde_json::from_slice(payload)
        .map_err(|e| RpcError::new("invalid_argument", format!("the message is not JSON: {e}")))
}

/// One envelope of a stream: flags, length, JSON.
fn envelope(flags: u8, payload: &Value) -> Bytes {
    let text = payload.to_string();
    let mut frame = Vec::with_capacity(5 + text.len());
    frame.push(flags);
    frame.extend_from_slice(&(text.len() as u32).to_be_bytes());
    frame.extend_from_slice(text.as_bytes());
    Bytes::from(frame)
}

fn text<'a>(message: &'a Value, key: &str) -> &'a str {
    message.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `POST /process.Process/{method}`.
pub(super) async fn process(
    State(app): State<AppState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let entry = sandbox_of(&app, &headers)?;
        let message = message(&headers, &body)?;
        match method.as_str() {
            "Start" => start(entry, &headers, &message).await,
            "List" => list(&entry).await.map(|v| Json(v).into_response()),
            "SendSignal" => send_signal(&entry, &message).await.map(|v| Json(v).into_response()),
            "SendInput" => send_input(&entry, &message).await.map(|v| Json(v).into_response()),
            "CloseStdin" => {
                let pid = pid_of(&entry, &message).await?;
                entry.blocking(move |s| s.close_input(pid)).await?;
                Ok(Json(json!({})).into_response())
            }
            other => Err(RpcError::new(
                "unimplemented",
                format!("process.Process/{other} is not supported by NOVA (no PTYs, no reattaching to a process)"),
            )),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The pid a `ProcessSelector` names (`{"pid": N}` or `{"tag": "..."}`).
async fn pid_of(entry: &std::sync::Arc<SandboxEntry>, message: &Value) -> Result<u32, RpcError> {
    let selector = &message["process"];
    if let Some(pid) = selector.get("pid").and_then(Value::as_u64) {
        return Ok(pid as u32);
    }
    let Some(tag) = selector.get("tag").and_then(Value::as_str).map(str::to_owned) else {
        return Err(RpcError::new("invalid_argument", "a process is named by its pid or tag"));
    };
    let processes = entry.blocking(|s| s.processes()).await?;
    processes
        .into_iter()
        .find(|p| p.tag.as_deref() == Some(tag.as_str()))
        .map(|p| p.pid)
        .ok_or_else(|| RpcError::new("not_found", format!("process with tag {tag} not found")))
}

async fn list(entry: &std::sync::Arc<SandboxEntry>) -> Result<Value, RpcError> {
    let processes = entry.blocking(|s| s.processes()).await?;
    let processes: Vec<Value> = processes
        .into_iter()
        .map(|p| {
            let (cmd, args) = match p.args {
                Some(args) => (p.cmd, args),
                None => ("/bin/bash".to_owned(), vec!["-c".to_owned(), p.cmd]),
            };
            let mut info = json!({"config": {"cmd": cmd, "args": args, "envs": p.env, "cwd": p.cwd}, "pid": p.pid});
            if let Some(tag) = p.tag {
                info["tag"] = json!(tag);
            }
            info
        })
        .collect();
    Ok(json!({"processes": processes}))
}

async fn send_signal(entry: &std::sync::Arc<SandboxEntry>, message: &Value) -> Result<Value, RpcError> {
    let pid = pid_of(entry, message).await?;
    let signal = match &message["signal"] {
        Value::String(name) if name == "SIGNAL_SIGTERM" => libc_signal::TERM,
        Value::Number(n) if n.as_i64() == Some(15) => libc_signal::TERM,
        _ => libc_signal::KILL,
    };
    entry.blocking(move |s| s.signal(pid, signal)).await?;
    Ok(json!({}))
}

/// The two signals envd's API names.
mod libc_signal {
    pub const KILL: i32 = 9;
    pub const TERM: i32 = 15;
}

async fn send_input(entry: &std::sync::Arc<SandboxEntry>, message: &Value) -> Result<Value, RpcError> {
    let pid = pid_of(entry, message).await?;
    let data = message["input"].get("stdin").and_then(Value::as_str).unwrap_or_default();
    let bytes = STANDARD.decode(data).map_err(|_| RpcError::new("invalid_argument", "stdin is not base64"))?;
    entry.blocking(move |s| s.send_input(pid, &bytes)).await?;
    Ok(json!({}))
}

/// `Start`: runs a process and streams its events: `start` at once, output as it comes, `keepalive` while it
/// is quiet, `end`, and the end of the stream. The `Connect-Timeout-Ms` header is the process's lifetime, as
/// in envd; a client that goes away leaves the process running.
async fn start(
    entry: std::sync::Arc<SandboxEntry>,
    headers: &HeaderMap,
    message: &Value,
) -> Result<Response, RpcError> {
    if message.get("pty").is_some_and(|p| !p.is_null()) {
        return Err(RpcError::new("unimplemented", "PTYs are not supported by NOVA"));
    }
    let process = &message["process"];
    let cmd = text(process, "cmd").to_owned();
    if cmd.is_empty() {
        return Err(RpcError::new("invalid_argument", "process.cmd is empty"));
    }
    let args: Vec<String> = process
        .get("args")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let env: HashMap<String, String> = process
        .get("envs")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    nova_app::sandboxes::check_env(env.iter()).map_err(|m| RpcError::new("invalid_argument", m))?;
    let command = session::Command {
        cmd,
        args: Some(args),
        cwd: process.get("cwd").and_then(Value::as_str).map(str::to_owned),
        env,
        tag: message.get("tag").and_then(Value::as_str).map(str::to_owned),
        stdin: message.get("stdin").and_then(Value::as_bool).unwrap_or(false),
    };
    let mut events = entry.spawn(command).await?;
    let first = tokio::time::timeout(session::CALL_TIMEOUT, events.recv()).await.ok().flatten();
    let pid = match first {
        Some(Event::Started { pid }) => pid,
        Some(Event::Fail(e)) => {
            // envd answers a process that cannot start as a bad argument.
            let e = RpcError::from(e);
            return Err(if e.code == "not_found" { RpcError::new("invalid_argument", e.message) } else { e });
        }
        _ => return Err(RpcError::new("internal", "the sandbox did not start the process")),
    };
    let header_number =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(lifetime) = header_number("connect-timeout-ms").filter(|ms| *ms > 0) {
        let entry = entry.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(lifetime)).await;
            let _ = entry.blocking(move |s| s.signal(pid, libc_signal::KILL)).await;
        });
    }
    let keepalive = Duration::from_secs(header_number("keepalive-ping-interval").unwrap_or(50).clamp(1, 3600));
    let first = envelope(0, &json!({"event": {"start": {"pid": pid}}}));
    let state = StreamState {
        events,
        keepalive: tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive),
        ended: false,
    };
    let rest = futures::stream::unfold(state, |mut state| async move {
        if state.ended {
            return None;
        }
        let frame = tokio::select! {
            event = state.events.recv() => match event {
                Some(Event::Stdout(b)) => envelope(0, &json!({"event": {"data": {"stdout": STANDARD.encode(b)}}})),
                Some(Event::Stderr(b)) => envelope(0, &json!({"event": {"data": {"stderr": STANDARD.encode(b)}}})),
                Some(Event::Done(fields)) => {
                    let end = end_event(&fields);
                    state.ended = true;
                    let mut both = envelope(0, &json!({"event": {"end": end}})).to_vec();
                    both.extend_from_slice(&envelope(2, &json!({})));
                    Bytes::from(both)
                }
                Some(Event::Fail(e)) => {
                    state.ended = true;
                    envelope(2, &json!({"error": RpcError::from(e).body()}))
                }
                Some(_) => Bytes::new(),
                None => {
                    state.ended = true;
                    envelope(2, &json!({"error": {"code": "unavailable", "message": "the sandbox ended"}}))
                }
            },
            _ = state.keepalive.tick() => envelope(0, &json!({"event": {"keepalive": {}}})),
        };
        state.keepalive.reset();
        Some((Ok::<_, Infallible>(frame), state))
    });
    let stream = futures::stream::once(async move { Ok::<_, Infallible>(first) })
        .chain(rest)
        .filter(|chunk| std::future::ready(chunk.as_ref().is_ok_and(|b| !b.is_empty())));
    Ok(([(header::CONTENT_TYPE, "application/connect+json")], Body::from_stream(stream)).into_response())
}

struct StreamState {
    events: EventStream,
    keepalive: tokio::time::Interval,
    ended: bool,
}

/// envd's `end` event for how a command ended, as Go's process state words it.
fn end_event(fields: &Map<String, Value>) -> Value {
    if let Some(code) = fields.get("exit_code").and_then(Value::as_i64) {
        let status = format!("exit status {code}");
        let mut end = json!({"exited": true, "status": status});
        if code != 0 {
            end["exitCode"] = json!(code);
            end["error"] = json!(status);
        }
        return end;
    }
    let signal = fields.get("signal").and_then(Value::as_i64).unwrap_or(9);
    let name = match signal {
        9 => "killed".to_owned(),
        15 => "terminated".to_owned(),
        2 => "interrupt".to_owned(),
        n => format!("signal {n}"),
    };
    let status = format!("signal: {name}");
    json!({"exitCode": -1, "status": status, "error": status})
}

/// `POST /filesystem.Filesystem/{method}`.
pub(super) async fn filesystem(
    State(app): State<AppState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let entry = sandbox_of(&app, &headers)?;
        let message = message(&headers, &body)?;
        let path = text(&message, "path").to_owned();
        let answer = match method.as_str() {
            "Stat" => json!({"entry": entry_info(&entry.blocking(move |s| s.stat(&path)).await?)}),
            "MakeDir" => {
                let (created, info) = entry
                    .blocking(move |s| {
                        let created = s.make_dir(&path)?;
                        Ok::<_, SessionError>((created, s.stat(&path)?))
                    })
                    .await?;
                if !created {
                    return Err(RpcError::new("already_exists", format!("directory {} already exists", info.path)));
                }
                json!({"entry": entry_info(&info)})
            }
            "Move" => {
                let (from, to) = (text(&message, "source").to_owned(), text(&message, "destination").to_owned());
                json!({"entry": entry_info(&entry.blocking(move |s| s.rename(&from, &to)).await?)})
            }
            "ListDir" => {
                let depth = message.get("depth").and_then(Value::as_u64).unwrap_or(1).clamp(1, 10) as u32;
                let entries = entry.blocking(move |s| s.list(&path, depth)).await?;
                json!({"entries": entries.iter().map(entry_info).collect::<Vec<_>>()})
            }
            "Remove" => {
                entry.blocking(move |s| s.remove(&path)).await?;
                json!({})
            }
            other => {
                return Err(RpcError::new(
                    "unimplemented",
                    format!("filesystem.Filesystem/{other} is not supported by NOVA (no file watches)"),
                ))
            }
        };
        Ok(Json(answer).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// An entry as envd's `EntryInfo` in the protobuf JSON mapping (`size` as a string, enums by name).
fn entry_info(entry: &EntryInfo) -> Value {
    let kind = match entry.kind.as_str() {
        "dir" => "FILE_TYPE_DIRECTORY",
        "symlink" => "FILE_TYPE_SYMLINK",
        _ => "FILE_TYPE_FILE",
    };
    let modified = DateTime::<Utc>::from_timestamp_micros((entry.modified * 1e6) as i64).unwrap_or_default();
    let mut info = json!({
        "name": entry.name,
        "type": kind,
        "path": entry.path,
        "size": entry.size.to_string(),
        "mode": entry.mode,
        "permissions": permissions(entry),
        "owner": "user",
        "group": "user",
        "modifiedTime": modified.to_rfc3339_opts(SecondsFormat::Micros, true),
    });
    if let Some(target) = &entry.target {
        info["symlinkTarget"] = json!(target);
        info["isSymlink"] = json!(true);
    }
    info
}

/// `ls -l`'s ten characters.
fn permissions(entry: &EntryInfo) -> String {
    let kind = match (entry.target.is_some(), entry.kind.as_str()) {
        (true, _) => 'l',
        (false, "dir") => 'd',
        _ => '-',
    };
    let bits = "rwxrwxrwx";
    std::iter::once(kind)
        .chain(bits.chars().enumerate().map(|(i, c)| if entry.mode & (0o400 >> i) != 0 { c } else { '-' }))
        .collect()
}

// ----- /files -----------------------------------------------------------------------------------------------

fn files_error(refusal: Refusal) -> RestError {
    match refusal {
        Refusal::Unauthenticated(message) => RestError::new(StatusCode::UNAUTHORIZED, message),
        Refusal::Gone(message) | Refusal::Unavailable(message) => RestError::new(StatusCode::BAD_GATEWAY, message),
    }
}

fn file_error(e: SessionError) -> RestError {
    let status = match e.kind.as_str() {
        "not_found" => StatusCode::NOT_FOUND,
        "invalid" | "too_large" => StatusCode::BAD_REQUEST,
        "permission" => StatusCode::FORBIDDEN,
        "no_space" => StatusCode::INSUFFICIENT_STORAGE,
        "ended" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    RestError::new(status, e.message)
}

#[derive(Deserialize)]
pub(super) struct FileQuery {
    path: Option<String>,
}

/// `GET /files?path=`: a file's bytes.
pub(super) async fn download(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FileQuery>,
) -> Result<Response, RestError> {
    let entry = sandbox_of(&app, &headers).map_err(files_error)?;
    let path = query.path.ok_or_else(|| RestError::new(StatusCode::BAD_REQUEST, "no path given"))?;
    let max = app.config.max_upload_bytes;
    let bytes = entry.blocking(move |s| s.read_file(&path, max)).await.map_err(file_error)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `POST /files?path=`: a multipart upload (a `file` part per file, named by its filename when no `path` is
/// given), or the body itself as the file.
pub(super) async fn upload(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FileQuery>,
    request: Request,
) -> Result<Json<Vec<Value>>, RestError> {
    let entry = sandbox_of(&app, &headers).map_err(files_error)?;
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/form-data"));
    let mut files: Vec<(String, Bytes)> = Vec::new();
    let bad = |message: String| RestError::new(StatusCode::BAD_REQUEST, message);
    if multipart {
        let mut form = Multipart::from_request(request, &()).await.map_err(|e| bad(e.body_text()))?;
        while let Some(field) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
            let name = query.path.clone().or_else(|| field.file_name().map(str::to_owned));
            let Some(name) = name else { return Err(bad("a file part has no filename and no path was given".into())) };
            files.push((name, field.bytes().await.map_err(|e| bad(e.body_text()))?));
        }
    } else {
        let path = query.path.clone().ok_or_else(|| bad("no path given".into()))?;
        let body = Bytes::from_request(request, &()).await.map_err(|e| bad(e.body_text()))?;
        files.push((path, body));
    }
    if files.is_empty() {
        return Err(bad("no file in the upload".into()));
    }
    let written = entry
        .blocking(move |s| files.iter().map(|(path, bytes)| s.write_file(path, bytes)).collect::<Result<Vec<_>, _>>())
        .await
        .map_err(file_error)?;
    Ok(Json(written.iter().map(|e| json!({"name": e.name, "type": "file", "path": e.path})).collect()))
}
