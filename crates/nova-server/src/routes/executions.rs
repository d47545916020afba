//! `POST /v1/executions`: run a short program in the sandbox and answer with its outcome, synchronously.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use nova_sandbox::{ExecRequest, InputFile, Limits, Outcome, Runtime, Sandbox};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::json::ApiJson;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/executions", post(create))
}

/// Bounds of a synchronous execution: longer work belongs in a job.
const MAX_TIMEOUT_MS: u64 = 60_000;
const MAX_MEMORY_MB: u64 = 1024;
const MAX_CODE_BYTES: usize = 1 << 20;
const MAX_FILES_BYTES: usize = 8 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateExecution {
    /// Only `python` for now.
    language: String,
    code: String,
    #[serde(default)]
    stdin: String,
    /// Files placed in the work directory before the program starts.
    #[serde(default)]
    files: Vec<FileIn>,
    #[serde(default)]
    limits: LimitsIn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    path: String,
    content: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsIn {
    /// Wall-clock deadline (CPU time gets the same), 1 to 60,000 ms; default 10,000.
    timeout_ms: Option<u64>,
    /// Memory, 16 to 1024 MiB; default 256.
    memory_mb: Option<u64>,
    /// Processes and threads, 1 to 64; default 32.
    processes: Option<u32>,
}

async fn create(State(app): State<AppState>, ApiJson(body): ApiJson<CreateExecution>) -> Result<Json<Value>, ApiError> {
    let sandbox: Arc<dyn Sandbox> = match &app.sandbox {
        Ok(sandbox) => sandbox.clone(),
        Err(reason) => {
            return Err(ApiError::Unavailable {
                code: "sandbox_unavailable",
                message: format!("the sandbox is not available on this server: {reason}"),
            })
        }
    };
    let request = parse(body)?;
    let outcome = tokio::task::spawn_blocking(move || sandbox.exec(&request))
        .await
        .map_err(|e| ApiError::internal("running the sandbox", &e))?;
    Ok(Json(outcome_json(&outcome)))
}

/// Checks the request against the bounds of a synchronous execution and builds the sandbox's request.
fn parse(body: CreateExecution) -> Result<ExecRequest, ApiError> {
    let invalid = |message: String| ApiError::Unprocessable { code: "invalid_request", message };
    if body.language != "python" {
        return Err(ApiError::Unprocessable {
            code: "unsupported_language",
            message: format!(
                "language `{}` is not supported; use `python`",
                body.language.chars().take(40).collect::<String>()
            ),
        });
    }
    if body.code.len() > MAX_CODE_BYTES {
        return Err(invalid(format!("code is larger than {MAX_CODE_BYTES} bytes")));
    }
    if body.files.iter().map(|f| f.content.len()).sum::<usize>() > MAX_FILES_BYTES {
        return Err(invalid(format!("files are larger than {MAX_FILES_BYTES} bytes together")));
    }
    let defaults = Limits::default();
    let timeout_ms = body.limits.timeout_ms.unwrap_or(defaults.wall_ms);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(invalid(format!("limits.timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")));
    }
    let memory_mb = body.limits.memory_mb.unwrap_or(defaults.memory_bytes >> 20);
    if !(16..=MAX_MEMORY_MB).contains(&memory_mb) {
        return Err(invalid(format!("limits.memory_mb must be between 16 and {MAX_MEMORY_MB}")));
    }
    let processes = body.limits.processes.unwrap_or(defaults.processes);
    if !(1..=64).contains(&processes) {
        return Err(invalid("limits.processes must be between 1 and 64".into()));
    }
    Ok(ExecRequest {
        runtime: Runtime::Python3,
        code: body.code,
        stdin: body.stdin.into_bytes(),
        files: body.files.into_iter().map(|f| InputFile { path: f.path, contents: f.content.into_bytes() }).collect(),
        limits: Limits {
            wall_ms: timeout_ms,
            cpu_ms: timeout_ms,
            memory_bytes: memory_mb << 20,
            processes,
            ..defaults
        },
        ..ExecRequest::default()
    })
}

/// The outcome as the API shows it: output as text (invalid UTF-8 replaced), times in milliseconds.
fn outcome_json(o: &Outcome) -> Value {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    json!({
        "status": o.status.as_str(),
        "exit_code": o.exit_code,
        "signal": o.signal,
        "stdout": text(&o.stdout),
        "stderr": text(&o.stderr),
        "output_truncated": o.output_truncated,
        "files": o.files.iter().map(|f| json!({"path": f.path, "size": f.contents.len(), "content": text(&f.contents)})).collect::<Vec<_>>(),
        "files_truncated": o.files_truncated,
        "wall_ms": o.wall_time.as_millis() as u64,
        "cpu_ms": o.cpu_time.as_millis() as u64,
        "peak_memory_bytes": o.peak_memory_bytes,
        "error": o.error,
    })
}
