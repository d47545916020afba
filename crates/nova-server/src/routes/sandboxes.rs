//! Sandboxes: sessions that keep their files, processes and Python variables across calls, until killed or
//! their timeout passes (`nova_app::sandboxes`). Code runs and commands answer with their whole output, or
//! stream it as server-sent events when asked with `Accept: text/event-stream`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::StatusCode;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use nova_app::sandboxes::{self, NewSandbox, SandboxEntry, SandboxError, Sandboxes};
use nova_core::SandboxId;
use nova_sandbox::session::{self as session, EntryInfo, Event, ProcessInfo, SessionError};
use serde::{Deserialize, Serialize};

use super::IdPath;
use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::json::ApiJson;
use crate::AppState;

pub fn router(config: &crate::ServerConfig) -> Router<AppState> {
    // Uploads as large as documents may be.
    let body_limit = DefaultBodyLimit::max(usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX));
    Router::new()
        .route("/sandboxes", post(create).get(list))
        .route("/sandboxes/{id}", get(show).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/code", post(run_code))
        .route("/sandboxes/{id}/contexts", post(create_context).get(list_contexts))
        .route("/sandboxes/{id}/contexts/{context}", delete(remove_context))
        .route("/sandboxes/{id}/commands", post(run_command).get(list_commands))
        .route("/sandboxes/{id}/commands/{pid}", delete(kill_command))
        .route("/sandboxes/{id}/commands/{pid}/stdin", post(send_stdin))
        .route("/sandboxes/{id}/files", get(download).put(upload).layer(body_limit).delete(remove_file))
        .route("/sandboxes/{id}/files/entries", get(list_files))
}

/// The registry, or `503` on a server without a sandbox.
pub(crate) fn registry(app: &AppState) -> Result<Arc<Sandboxes>, ApiError> {
    app.sandboxes.clone().map_err(|reason| ApiError::Unavailable {
        code: "sandbox_unavailable",
        message: format!("sandboxes are not available on this server: {reason}"),
    })
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::NotFound(_) => ApiError::NotFound { code: "sandbox_not_found", message: e.to_string() },
            SandboxError::TooMany(message) => ApiError::QuotaExceeded { code: "sandbox_limit", message },
            SandboxError::InvalidTimeout(message) => ApiError::Unprocessable { code: "invalid_request", message },
            SandboxError::Start(_) => ApiError::Unavailable { code: "sandbox_unavailable", message: e.to_string() },
            SandboxError::Session(e) => session_error(e),
        }
    }
}

/// A session's answer as the API's error.
fn session_error(e: SessionError) -> ApiError {
    let message = e.message;
    match e.kind.as_str() {
        "not_found" => ApiError::NotFound { code: "not_found", message },
        "exists" => ApiError::Conflict { code: "already_exists", message },
        "invalid" => ApiError::Unprocessable { code: "invalid_request", message },
        "permission" => ApiError::Forbidden { code: "permission_denied", message },
        "no_space" => ApiError::Unprocessable { code: "no_space", message },
        "too_large" => ApiError::Unprocessable { code: "too_large", message },
        "ended" => ApiError::NotFound { code: "sandbox_not_found", message },
        "timeout" => ApiError::Unavailable { code: "sandbox_busy", message },
        _ => ApiError::Internal(message),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateSandbox)]
struct CreateBody {
    /// Seconds the sandbox lives unless its timeout is changed; 300 by default, at most the server's
    /// `--sandbox-max-timeout`.
    #[schema(minimum = 1)]
    timeout_seconds: Option<u64>,
    /// Labels of the caller's own, returned as given (at most 32, each key and value at most 256 bytes).
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Environment variables of every code run and command.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Egress to public addresses (as for executions); off by default.
    #[serde(default)]
    network: bool,
}

/// A live sandbox.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Sandbox)]
struct SandboxBody {
    #[schema(value_type = SandboxId)]
    id: String,
    /// Always `running`: an ended sandbox is gone.
    status: &'static str,
    created_at: DateTime<Utc>,
    /// When it ends unless its timeout is changed.
    expires_at: DateTime<Utc>,
    metadata: BTreeMap<String, String>,
    network: bool,
    /// Memory of all its processes together, in bytes.
    memory_limit_bytes: u64,
    /// Size of each of `/work` and `/tmp`, in bytes.
    disk_limit_bytes: u64,
}

impl SandboxBody {
    fn of(entry: &SandboxEntry) -> SandboxBody {
        SandboxBody {
            id: entry.id.to_string(),
            status: "running",
            created_at: entry.created_at,
            expires_at: entry.expires_at(),
            metadata: entry.metadata.clone(),
            network: entry.network,
            memory_limit_bytes: entry.limits.memory_bytes,
            disk_limit_bytes: entry.limits.work_bytes,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SandboxList)]
struct ListBody {
    data: Vec<SandboxBody>,
}

/// Checks the caller's labels and variables (see `nova_app::sandboxes::check_labels`).
fn check_maps(metadata: &BTreeMap<String, String>, env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    sandboxes::check_labels(metadata, env)
        .map_err(|message| ApiError::Unprocessable { code: "invalid_request", message })
}

#[utoipa::path(
    post,
    path = "/v1/sandboxes",
    tag = "sandboxes",
    summary = "Start a sandbox",
    description = "Starts a sandbox that keeps its files, processes and Python variables across calls until it \
                   is killed or its timeout passes.",
    request_body(content = CreateBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The sandbox runs.", body = SandboxBody),
        (status = 400, description = "The body is not JSON (`malformed_json`, `unreadable_body`).", body = ErrorBody),
        (status = 422, description = "A bad timeout, label or variable (`invalid_request`).", body = ErrorBody),
        (status = 429, description = "Too many sandboxes run (`sandbox_limit`).", body = ErrorBody),
        (status = 503, description = "This server has no sandbox (`sandbox_unavailable`).", body = ErrorBody),
    )
)]
async fn create(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<SandboxBody>), ApiError> {
    let registry = registry(&app)?;
    check_maps(&body.metadata, &body.env)?;
    let new = NewSandbox {
        timeout: body.timeout_seconds.map(Duration::from_secs),
        metadata: body.metadata,
        env: body.env,
        network: body.network,
    };
    let entry = registry.create(tenant.id(), new).await?;
    Ok((StatusCode::CREATED, Json(SandboxBody::of(&entry))))
}

#[utoipa::path(
    get,
    path = "/v1/sandboxes",
    tag = "sandboxes",
    summary = "List running sandboxes",
    responses(
        (status = 200, description = "The tenant's running sandboxes, oldest first.", body = ListBody),
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
    )
)]
async fn list(State(app): State<AppState>, Tenant(tenant): Tenant) -> Result<Json<ListBody>, ApiError> {
    let registry = registry(&app)?;
    Ok(Json(ListBody { data: registry.list(tenant.id()).iter().map(|e| SandboxBody::of(e)).collect() }))
}

#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}",
    tag = "sandboxes",
    summary = "Read a sandbox",
    params(("id" = SandboxId, Path, description = "The sandbox.")),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 200, description = "The sandbox.", body = SandboxBody),
        (status = 404, description = "No such running sandbox of this tenant (`sandbox_not_found`).",
            body = ErrorBody),
    )
)]
async fn show(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
) -> Result<Json<SandboxBody>, ApiError> {
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    Ok(Json(SandboxBody::of(&entry)))
}

#[utoipa::path(
    delete,
    path = "/v1/sandboxes/{id}",
    tag = "sandboxes",
    summary = "Kill a sandbox",
    description = "Ends the sandbox at once: every process of it is killed and its files are gone.",
    params(("id" = SandboxId, Path, description = "The sandbox.")),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 204, description = "Killed."),
        (status = 404, description = "No such running sandbox of this tenant (`sandbox_not_found`).",
            body = ErrorBody),
    )
)]
async fn kill(State(app): State<AppState>, Tenant(tenant): Tenant, IdPath(id): IdPath) -> Result<StatusCode, ApiError> {
    registry(&app)?.kill(tenant.id(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SandboxTimeout)]
struct TimeoutBody {
    /// Seconds from now until the sandbox ends.
    #[schema(minimum = 1)]
    timeout_seconds: u64,
}

#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/timeout",
    tag = "sandboxes",
    summary = "Change a sandbox's timeout",
    description = "The sandbox now ends `timeout_seconds` from now (sooner or later than before).",
    params(("id" = SandboxId, Path, description = "The sandbox.")),
    request_body(content = TimeoutBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The sandbox with its new end.", body = SandboxBody),
        (status = 404, description = "No such running sandbox of this tenant (`sandbox_not_found`).",
            body = ErrorBody),
        (status = 422, description = "A timeout out of range (`invalid_request`).", body = ErrorBody),
    )
)]
async fn set_timeout(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<TimeoutBody>,
) -> Result<Json<SandboxBody>, ApiError> {
    let entry = registry(&app)?.set_timeout(tenant.id(), &id, Duration::from_secs(body.timeout_seconds))?;
    Ok(Json(SandboxBody::of(&entry)))
}

/// Whether the client asked for server-sent events.
fn wants_events(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/event-stream"))
}

/// A call's events as server-sent events: `stdout`, `stderr` (`{"text"}`), `result` (`{"text"}`), `error`
/// (`{"name", "value", "traceback"}`), `started` (`{"pid"}`), then `done` with the call's result, or `fail`
/// (`{"error": {"code", "message"}}`).
fn event_stream(events: sandboxes::EventStream) -> Response {
    let stream = futures::stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        let (name, data) = match event {
            Event::Stdout(b) => ("stdout", serde_json::json!({"text": String::from_utf8_lossy(&b)})),
            Event::Stderr(b) => ("stderr", serde_json::json!({"text": String::from_utf8_lossy(&b)})),
            Event::Result(text) => ("result", serde_json::json!({"text": text})),
            Event::Error(e) => ("error", serde_json::to_value(e).unwrap_or_default()),
            Event::Started { pid } => ("started", serde_json::json!({"pid": pid})),
            Event::Data(_) => return Some((None, events)),
            Event::Done(fields) => ("done", serde_json::Value::Object(fields)),
            Event::Fail(e) => ("fail", serde_json::json!({"error": {"code": e.kind, "message": e.message}})),
        };
        Some((Some(sse::Event::default().event(name).data(data.to_string())), events))
    })
    .filter_map(|event| async move { event.map(Ok::<_, Infallible>) });
    let sse = Sse::new(stream).keep_alive(KeepAlive::default());
    ([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SandboxCode)]
struct CodeBody {
    /// Python source. The value of its last line, when that is an expression, is returned as `results`.
    code: String,
    /// The code context to run in (its own variables); the default one when absent.
    context: Option<String>,
    /// Variables set for this run only.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Seconds before the run is interrupted (`KeyboardInterrupt`); 300 by default.
    #[schema(minimum = 1)]
    timeout_seconds: Option<u64>,
}

/// A code run's whole answer.
#[derive(Serialize, Default, utoipa::ToSchema)]
#[schema(as = SandboxCodeRun)]
struct CodeRunBody {
    stdout: String,
    stderr: String,
    /// The value of the last expression, as `repr` shows it.
    results: Vec<String>,
    /// The exception the run ended with.
    #[schema(value_type = Option<Object>)]
    error: Option<session::CodeError>,
    /// Runs so far in this context, this one included.
    execution_count: u64,
}

/// The most output a code run or command answers with when not streamed; beyond it, output is cut.
const MAX_COLLECTED: usize = 1 << 20;

/// The longest a code run or a foreground command may be given.
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

fn append_capped(into: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_COLLECTED.saturating_sub(into.len());
    into.extend_from_slice(&bytes[..room.min(bytes.len())]);
}

/// Collected output as text: decoded once whole, so a character split between two chunks stays whole.
fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/code",
    tag = "sandboxes",
    summary = "Run Python code in a sandbox",
    description = "Runs code in the sandbox's interpreter, whose variables survive from one run to the next. \
                   With `Accept: text/event-stream` the output streams as it comes (events `stdout`, `stderr`, \
                   `result`, `error`, then `done` with `execution_count`).",
    params(("id" = SandboxId, Path, description = "The sandbox.")),
    request_body(content = CodeBody, content_type = "application/json"),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 200, description = "The run's output (or its event stream).", body = CodeRunBody),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`) or context (`not_found`).",
            body = ErrorBody),
    )
)]
async fn run_code(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Response, ApiError> {
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    check_maps(&BTreeMap::new(), &body.env)?;
    let env: HashMap<String, String> = body.env.into_iter().collect();
    let (code, context) = (body.code, body.context);
    let (call_id, mut events) = entry.run_code(code, context, env).await.map_err(session_error)?;
    let timeout = Duration::from_secs(body.timeout_seconds.unwrap_or(300).clamp(1, MAX_TIMEOUT_SECS));
    let watchdog = {
        let entry = entry.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let _ = entry.blocking(move |s| s.interrupt(call_id)).await;
        })
    };
    if wants_events(&headers) {
        // The watchdog stays: it interrupts the run at its timeout whether or not anyone still listens.
        return Ok(event_stream(events));
    }
    let mut out = CodeRunBody::default();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(event) = events.recv().await {
        match event {
            Event::Stdout(b) => append_capped(&mut stdout, &b),
            Event::Stderr(b) => append_capped(&mut stderr, &b),
            Event::Result(text) => {
                if out.results.iter().map(String::len).sum::<usize>() + text.len() <= MAX_COLLECTED {
                    out.results.push(text);
                }
            }
            Event::Error(e) => out.error = Some(e),
            Event::Done(fields) => {
                out.execution_count = fields.get("execution_count").and_then(|c| c.as_u64()).unwrap_or(0);
            }
            Event::Fail(e) => {
                watchdog.abort();
                return Err(session_error(e));
            }
            Event::Started { .. } | Event::Data(_) => {}
        }
    }
    watchdog.abort();
    (out.stdout, out.stderr) = (text_of(&stdout), text_of(&stderr));
    Ok(Json(out).into_response())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SandboxContextCreate)]
struct ContextBody {
    /// The context's working directory; `/work` by default.
    cwd: Option<String>,
}

/// A code context: variables of its own.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SandboxContext)]
struct ContextInfo {
    id: String,
    cwd: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SandboxContextList)]
struct ContextList {
    data: Vec<ContextInfo>,
}

#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/contexts",
    tag = "sandboxes",
    summary = "Create a code context",
    description = "A context has variables of its own; code runs name it in `context`.",
    params(("id" = SandboxId, Path, description = "The sandbox.")),
    request_body(content = ContextBody, content_type = "application/json"),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 201, description = "The context.", body = ContextInfo),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`).", body = ErrorBody),
    )
)]
async fn create_context(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ContextBody>,
) -> Result<(StatusCode, Json<ContextInfo>), ApiError> {
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    let (id, cwd) = entry.blocking(move |s| s.create_context(body.cwd.as_deref())).await.map_err(session_error)?;
    Ok((StatusCode::CREATED, Json(ContextInfo { id, cwd })))
}

#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/contexts",
    tag = "sandboxes",
    summary = "List code contexts",
    params(("id" = SandboxId, Path, description = "The sandbox.")),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 200, description = "The contexts, `default` first.", body = ContextList),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`).", body = ErrorBody),
    )
)]
async fn list_contexts(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
) -> Result<Json<ContextList>, ApiError> {
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    let contexts = entry.blocking(|s| s.contexts()).await.map_err(session_error)?;
    Ok(Json(ContextList { data: contexts.into_iter().map(|(id, cwd)| ContextInfo { id, cwd }).collect() }))
}

/// A path's two segments as text (the sandbox, then a context id or a pid).
struct TwoIds {
    id: String,
    sub: String,
}

fn two_ids(path: axum::extract::Path<Vec<String>>) -> TwoIds {
    let mut parts = path.0.into_iter();
    TwoIds { id: parts.next().unwrap_or_default(), sub: parts.next().unwrap_or_default() }
}

#[utoipa::path(
    delete,
    path = "/v1/sandboxes/{id}/contexts/{context}",
    tag = "sandboxes",
    summary = "Remove a code context",
    params(
        ("id" = SandboxId, Path, description = "The sandbox."),
        ("context" = String, Path, description = "The context (not `default`)."),
    ),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 204, description = "Removed."),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`) or context (`not_found`).",
            body = ErrorBody),
    )
)]
async fn remove_context(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    path: axum::extract::Path<Vec<String>>,
) -> Result<StatusCode, ApiError> {
    let TwoIds { id, sub } = two_ids(path);
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    entry.blocking(move |s| s.remove_context(&sub)).await.map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SandboxCommand)]
struct CommandBody {
    /// A shell command line, run by `bash -c`.
    cmd: String,
    /// Its working directory; `/work` by default.
    cwd: Option<String>,
    /// Variables added to the sandbox's environment.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Text written to its standard input, then closed.
    stdin: Option<String>,
    /// Start it and answer at once with its pid (`202`); it runs until it ends or is killed.
    #[serde(default)]
    background: bool,
    /// Seconds before a foreground command is killed; 60 by default.
    #[schema(minimum = 1)]
    timeout_seconds: Option<u64>,
    /// A name shown in the process list.
    tag: Option<String>,
}

/// A command's whole answer.
#[derive(Serialize, Default, utoipa::ToSchema)]
#[schema(as = SandboxCommandResult)]
struct CommandResult {
    pid: u32,
    stdout: String,
    stderr: String,
    exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    signal: Option<i32>,
    /// Whether it was killed at its timeout.
    timed_out: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SandboxProcess)]
struct Started {
    pid: u32,
}

#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/commands",
    tag = "sandboxes",
    summary = "Run a command in a sandbox",
    description = "Runs a shell command and answers when it ends, with its output; with `background` it answers \
                   at once with its pid. With `Accept: text/event-stream` the output streams as it comes \
                   (events `started`, `stdout`, `stderr`, then `done` with `exit_code` or `signal`).",
    params(("id" = SandboxId, Path, description = "The sandbox.")),
    request_body(content = CommandBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The command ended (whatever its exit code).", body = CommandResult),
        (status = 202, description = "Started in the background.", body = Started),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`).", body = ErrorBody),
        (status = 422, description = "A bad command, folder or variable (`invalid_request`).", body = ErrorBody),
    )
)]
async fn run_command(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CommandBody>,
) -> Result<Response, ApiError> {
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    check_maps(&BTreeMap::new(), &body.env)?;
    let command = session::Command {
        cmd: body.cmd,
        args: None,
        cwd: body.cwd,
        env: body.env.into_iter().collect(),
        tag: body.tag,
        stdin: body.stdin.is_some(),
    };
    let mut events = entry.spawn(command).await.map_err(session_error)?;
    // The first event says whether it started.
    let first = tokio::time::timeout(session::CALL_TIMEOUT, events.recv()).await.ok().flatten();
    let pid = match first {
        Some(Event::Started { pid }) => pid,
        Some(Event::Fail(e)) => return Err(session_error(e)),
        _ => return Err(ApiError::Internal("the sandbox did not start the command".into())),
    };
    if let Some(stdin) = body.stdin {
        // A command that ended, or closed its input, before reading it all has simply not read it.
        let _ = entry.blocking(move |s| s.send_input(pid, stdin.as_bytes()).and_then(|()| s.close_input(pid))).await;
    }
    if body.background {
        drop(events);
        return Ok((StatusCode::ACCEPTED, Json(Started { pid })).into_response());
    }
    let timeout = Duration::from_secs(body.timeout_seconds.unwrap_or(60).clamp(1, MAX_TIMEOUT_SECS));
    if wants_events(&headers) {
        return Ok(event_stream(events));
    }
    let mut out = CommandResult { pid, ..CommandResult::default() };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = tokio::time::sleep_until(deadline), if !out.timed_out => {
                out.timed_out = true;
                let _ = entry.blocking(move |s| s.signal(pid, 9)).await;
                continue;
            }
        };
        match event {
            Some(Event::Stdout(b)) => append_capped(&mut stdout, &b),
            Some(Event::Stderr(b)) => append_capped(&mut stderr, &b),
            Some(Event::Done(fields)) => {
                out.exit_code = fields.get("exit_code").and_then(|c| c.as_i64()).map(|c| c as i32);
                out.signal = fields.get("signal").and_then(|c| c.as_i64()).map(|c| c as i32);
            }
            Some(Event::Fail(e)) => return Err(session_error(e)),
            Some(_) => {}
            None => break,
        }
    }
    (out.stdout, out.stderr) = (text_of(&stdout), text_of(&stderr));
    Ok(Json(out).into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SandboxProcessList)]
struct ProcessList {
    #[schema(value_type = Vec<Object>)]
    data: Vec<ProcessInfo>,
}

#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/commands",
    tag = "sandboxes",
    summary = "List running commands",
    params(("id" = SandboxId, Path, description = "The sandbox.")),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 200, description = "Commands still running: `pid`, `cmd`, `cwd`, `env`, `tag`.",
            body = ProcessList),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`).", body = ErrorBody),
    )
)]
async fn list_commands(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
) -> Result<Json<ProcessList>, ApiError> {
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    Ok(Json(ProcessList { data: entry.blocking(|s| s.processes()).await.map_err(session_error)? }))
}

fn parse_pid(text: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound { code: "not_found", message: format!("no process {text}") })
}

#[utoipa::path(
    delete,
    path = "/v1/sandboxes/{id}/commands/{pid}",
    tag = "sandboxes",
    summary = "Kill a command",
    description = "Sends `SIGKILL` to the command's process group.",
    params(
        ("id" = SandboxId, Path, description = "The sandbox."),
        ("pid" = u32, Path, description = "The command's pid."),
    ),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 204, description = "Killed."),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`) or command (`not_found`).",
            body = ErrorBody),
    )
)]
async fn kill_command(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    path: axum::extract::Path<Vec<String>>,
) -> Result<StatusCode, ApiError> {
    let TwoIds { id, sub } = two_ids(path);
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    let pid = parse_pid(&sub)?;
    entry.blocking(move |s| s.signal(pid, 9)).await.map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SandboxStdin)]
struct StdinBody {
    /// Text written to the command's standard input.
    #[serde(default)]
    data: String,
    /// Close its input after the text (it reads end of file).
    #[serde(default)]
    close: bool,
}

#[utoipa::path(
    post,
    path = "/v1/sandboxes/{id}/commands/{pid}/stdin",
    tag = "sandboxes",
    summary = "Write to a command's input",
    description = "For a command started with `stdin` (an empty string keeps its input open).",
    params(
        ("id" = SandboxId, Path, description = "The sandbox."),
        ("pid" = u32, Path, description = "The command's pid."),
    ),
    request_body(content = StdinBody, content_type = "application/json"),
    responses(
        (status = 204, description = "Written."),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`) or command (`not_found`).",
            body = ErrorBody),
        (status = 422, description = "Its input is closed (`invalid_request`).", body = ErrorBody),
    )
)]
async fn send_stdin(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    path: axum::extract::Path<Vec<String>>,
    ApiJson(body): ApiJson<StdinBody>,
) -> Result<StatusCode, ApiError> {
    let TwoIds { id, sub } = two_ids(path);
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    let pid = parse_pid(&sub)?;
    entry
        .blocking(move |s| {
            if !body.data.is_empty() {
                s.send_input(pid, body.data.as_bytes())?;
            }
            if body.close {
                s.close_input(pid)?;
            }
            Ok(())
        })
        .await
        .map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PathQuery {
    /// A path in the sandbox; relative paths are relative to `/work`.
    path: String,
    /// For listings: levels below the folder (1: its own entries); at most 10.
    #[param(minimum = 1, maximum = 10)]
    depth: Option<u32>,
}

fn path_query(
    query: Result<Query<PathQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<PathQuery, ApiError> {
    query.map(|q| q.0).map_err(|_| ApiError::Unprocessable {
        code: "invalid_request",
        message: "`path` names the file: ?path=/work/data.csv".into(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/files",
    tag = "sandboxes",
    summary = "Download a file",
    params(("id" = SandboxId, Path, description = "The sandbox."), PathQuery),
    responses(
        (status = 200, description = "The file's bytes.", content_type = "application/octet-stream",
            body = crate::schemas::Binary),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`) or file (`not_found`).",
            body = ErrorBody),
        (status = 422, description = "Not a file, or larger than the server's upload limit (`too_large`).",
            body = ErrorBody),
    )
)]
async fn download(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    query: Result<Query<PathQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let query = path_query(query)?;
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    let max = app.config.max_upload_bytes;
    let bytes = entry.blocking(move |s| s.read_file(&query.path, max)).await.map_err(session_error)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[utoipa::path(
    put,
    path = "/v1/sandboxes/{id}/files",
    tag = "sandboxes",
    summary = "Upload a file",
    description = "Writes the body to `path`, replacing what was there; missing folders are made.",
    params(("id" = SandboxId, Path, description = "The sandbox."), PathQuery),
    request_body(content = crate::schemas::Binary, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "The file written.", body = Object),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`).", body = ErrorBody),
        (status = 413, description = "Larger than the server's upload limit (`payload_too_large`).",
            body = ErrorBody),
        (status = 422, description = "Out of room (`no_space`) or a path that cannot be written.", body = ErrorBody),
    )
)]
async fn upload(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    query: Result<Query<PathQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Json<EntryInfo>, ApiError> {
    let query = path_query(query)?;
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    let info = entry.blocking(move |s| s.write_file(&query.path, &body)).await.map_err(session_error)?;
    Ok(Json(info))
}

#[utoipa::path(
    delete,
    path = "/v1/sandboxes/{id}/files",
    tag = "sandboxes",
    summary = "Remove a file or folder",
    params(("id" = SandboxId, Path, description = "The sandbox."), PathQuery),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 204, description = "Removed (a folder with everything in it)."),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`) or file (`not_found`).",
            body = ErrorBody),
    )
)]
async fn remove_file(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    query: Result<Query<PathQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let query = path_query(query)?;
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    entry.blocking(move |s| s.remove(&query.path)).await.map_err(session_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SandboxFileList)]
struct FileList {
    #[schema(value_type = Vec<Object>)]
    data: Vec<EntryInfo>,
}

#[utoipa::path(
    get,
    path = "/v1/sandboxes/{id}/files/entries",
    tag = "sandboxes",
    summary = "List a folder",
    description = "Entries with `name`, `path`, `type` (`file`, `dir`, `symlink`), `size`, `mode`, `modified`.",
    params(("id" = SandboxId, Path, description = "The sandbox."), PathQuery),
    responses(
        (status = 422, description = "A bad body or query (`invalid_request`).", body = ErrorBody),
        (status = 200, description = "The folder's entries, by name.", body = FileList),
        (status = 404, description = "No such running sandbox (`sandbox_not_found`) or folder (`not_found`).",
            body = ErrorBody),
    )
)]
async fn list_files(
    State(app): State<AppState>,
    Tenant(tenant): Tenant,
    IdPath(id): IdPath,
    query: Result<Query<PathQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileList>, ApiError> {
    let query = path_query(query)?;
    let depth = query.depth.unwrap_or(1).clamp(1, 10);
    let entry = registry(&app)?.get(tenant.id(), &id)?;
    let entries = entry.blocking(move |s| s.list(&query.path, depth)).await.map_err(session_error)?;
    Ok(Json(FileList { data: entries }))
}
