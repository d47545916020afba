//! A program as clients describe it (text, bounded limits) and its outcome as they read it: the JSON shape
//! shared by `POST /v1/executions` and the `code.run` workflow.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{ExecRequest, InputFile, Limits, Outcome, Runtime};

/// A program to run, as a client writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    /// Only `python` for now.
    pub language: String,
    pub code: String,
    #[serde(default)]
    pub stdin: String,
    /// Files placed in the work directory before the program starts.
    #[serde(default)]
    pub files: Vec<SpecFile>,
    #[serde(default)]
    pub limits: SpecLimits,
    /// Network access (off by default): egress to public addresses only, through the sandbox's user-mode
    /// network stack.
    #[serde(default)]
    pub network: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecLimits {
    /// Wall-clock deadline (CPU time gets the same), in milliseconds; default 10,000.
    pub timeout_ms: Option<u64>,
    /// Memory, 16 MiB up to the caller's bound; default 256.
    pub memory_mb: Option<u64>,
    /// Processes and threads, 1 to 64; default 32.
    pub processes: Option<u32>,
}

/// Why a spec was refused; `code` is stable (`unsupported_language`, `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub code: &'static str,
    pub message: String,
}

/// The longest a program may run as a `code.run` job (the job's own deadline still applies).
pub const MAX_JOB_PROGRAM_MS: u64 = 10 * 60 * 1000;

/// The largest program and input files a spec may carry.
const MAX_CODE_BYTES: usize = 1 << 20;
const MAX_FILES_BYTES: usize = 8 << 20;
const MAX_MEMORY_MB: u64 = 1024;

impl ProgramSpec {
    /// Checks the spec, with wall time bounded by `max_timeout_ms`, and builds the sandbox's request.
    pub fn into_request(self, max_timeout_ms: u64) -> Result<ExecRequest, SpecError> {
        let invalid = |message: String| SpecError { code: "invalid_request", message };
        if self.language != "python" {
            let shown: String = self.language.chars().take(40).collect();
            return Err(SpecError {
                code: "unsupported_language",
                message: format!("language `{shown}` is not supported; use `python`"),
            });
        }
        if self.code.len() > MAX_CODE_BYTES {
            return Err(invalid(format!("code is larger than {MAX_CODE_BYTES} bytes")));
        }
        if self.files.iter().map(|f| f.content.len()).sum::<usize>() > MAX_FILES_BYTES {
            return Err(invalid(format!("files are larger than {MAX_FILES_BYTES} bytes together")));
        }
        let defaults = Limits::default();
        let timeout_ms = self.limits.timeout_ms.unwrap_or(defaults.wall_ms.min(max_timeout_ms));
        if !(1..=max_timeout_ms).contains(&timeout_ms) {
            return Err(invalid(format!("limits.timeout_ms must be between 1 and {max_timeout_ms}")));
        }
        let memory_mb = self.limits.memory_mb.unwrap_or(defaults.memory_bytes >> 20);
        if !(16..=MAX_MEMORY_MB).contains(&memory_mb) {
            return Err(invalid(format!("limits.memory_mb must be between 16 and {MAX_MEMORY_MB}")));
        }
        let processes = self.limits.processes.unwrap_or(defaults.processes);
        if !(1..=64).contains(&processes) {
            return Err(invalid("limits.processes must be between 1 and 64".into()));
        }
        Ok(ExecRequest {
            runtime: Runtime::Python3,
            code: self.code,
            stdin: self.stdin.into_bytes(),
            files: self
                .files
                .into_iter()
                .map(|f| InputFile { path: f.path, contents: f.content.into_bytes() })
                .collect(),
            limits: Limits {
                wall_ms: timeout_ms,
                cpu_ms: timeout_ms,
                memory_bytes: memory_mb << 20,
                processes,
                ..defaults
            },
            network: self.network,
            ..ExecRequest::default()
        })
    }
}

/// The outcome as clients read it: output as text (invalid UTF-8 replaced), times in milliseconds.
pub fn outcome_json(o: &Outcome) -> Value {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let files: Vec<Value> = o
        .files
        .iter()
        .map(|f| json!({"path": f.path, "size": f.contents.len(), "content": text(&f.contents)}))
        .collect();
    json!({
        "status": o.status.as_str(),
        "exit_code": o.exit_code,
        "signal": o.signal,
        "stdout": text(&o.stdout),
        "stderr": text(&o.stderr),
        "output_truncated": o.output_truncated,
        "files": files,
        "files_truncated": o.files_truncated,
        "wall_ms": o.wall_time.as_millis() as u64,
        "cpu_ms": o.cpu_time.as_millis() as u64,
        "peak_memory_bytes": o.peak_memory_bytes,
        "error": o.error,
    })
}

#[cfg(test)]
mod tests {
    use super::ProgramSpec;

    #[test]
    fn network_is_off_unless_asked_for() {
        let parse =
            |v: serde_json::Value| serde_json::from_value::<ProgramSpec>(v).unwrap().into_request(1000).unwrap();
        assert!(!parse(serde_json::json!({"language": "python", "code": "1"})).network);
        assert!(parse(serde_json::json!({"language": "python", "code": "1", "network": true})).network);
    }
}
