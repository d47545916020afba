//! A program as clients describe it (`nova_core::ProgramSpec`, checked at the edge) turned into the sandbox's
//! request, and its outcome as clients read it: the shape shared by `POST /v1/executions` and the `code.run`
//! workflow.

use nova_core::{InputError, ProgramSpec};
use serde::{Deserialize, Serialize};

use crate::{ExecRequest, InputFile, Limits, Outcome, Runtime, Status};

/// Checks `spec` (its wall time bounded by `max_timeout_ms`, see [`ProgramSpec::check_within`]) and builds the
/// sandbox's request, the sandbox's defaults filling the limits the spec leaves out.
pub fn exec_request(spec: ProgramSpec, max_timeout_ms: u64) -> Result<ExecRequest, InputError> {
    spec.check_within(max_timeout_ms)?;
    let defaults = Limits::default();
    let timeout_ms = spec.limits.timeout_ms.unwrap_or(defaults.wall_ms.min(max_timeout_ms));
    let memory_mb = spec.limits.memory_mb.unwrap_or(defaults.memory_bytes >> 20);
    let processes = spec.limits.processes.unwrap_or(defaults.processes);
    Ok(ExecRequest {
        runtime: Runtime::Python3,
        code: spec.code,
        stdin: spec.stdin.into_bytes(),
        files: spec.files.into_iter().map(|f| InputFile { path: f.path, contents: f.content.into_bytes() }).collect(),
        limits: Limits {
            wall_ms: timeout_ms,
            cpu_ms: timeout_ms,
            memory_bytes: memory_mb << 20,
            processes,
            ..defaults
        },
        network: spec.network,
        ..ExecRequest::default()
    })
}

/// What happened to one execution (also the result of a `code.run` job). Output is text, invalid UTF-8
/// replaced; times in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionOutcome {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub output_truncated: bool,
    pub files: Vec<OutputFile>,
    pub files_truncated: bool,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    /// For `sandbox_error`: what failed.
    pub error: Option<String>,
}

/// A file the program left in its work directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutputFile {
    pub path: String,
    pub size: u64,
    pub content: String,
}

impl From<&Outcome> for ExecutionOutcome {
    fn from(o: &Outcome) -> Self {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        ExecutionOutcome {
            status: o.status,
            exit_code: o.exit_code,
            signal: o.signal,
            stdout: text(&o.stdout),
            stderr: text(&o.stderr),
            output_truncated: o.output_truncated,
            files: o
                .files
                .iter()
                .map(|f| OutputFile { path: f.path.clone(), size: f.contents.len() as u64, content: text(&f.contents) })
                .collect(),
            files_truncated: o.files_truncated,
            wall_ms: o.wall_time.as_millis() as u64,
            cpu_ms: o.cpu_time.as_millis() as u64,
            peak_memory_bytes: o.peak_memory_bytes,
            error: o.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{exec_request, ProgramSpec};

    #[test]
    fn network_is_off_unless_asked_for() {
        let parse =
            |v: serde_json::Value| exec_request(serde_json::from_value::<ProgramSpec>(v).unwrap(), 1000).unwrap();
        assert!(!parse(serde_json::json!({"language": "python", "code": "1"})).network);
        assert!(parse(serde_json::json!({"language": "python", "code": "1", "network": true})).network);
    }
}
