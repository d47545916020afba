//! A program for the sandbox as clients write it: the body of `POST /v1/executions` and the input of a
//! `code.run` job. Checked here, once, at the edge; the sandbox turns a checked spec into its own request
//! (`nova_sandbox::spec`).

use serde::{Deserialize, Serialize};

use crate::job::WorkflowInput;
use crate::InputError;

/// A program to run, as a client writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    /// Only `python` for now; another is `422 unsupported_language`.
    #[schema(examples("python"))]
    pub language: String,
    /// The program's source, at most 1 MiB.
    #[schema(examples("print(6 * 7)"))]
    pub code: String,
    /// The program's standard input.
    #[serde(default)]
    #[schema(required = false)]
    pub stdin: String,
    /// Files placed in the work directory before the program starts (at most 8 MiB together).
    #[serde(default)]
    #[schema(required = false)]
    pub files: Vec<SpecFile>,
    #[serde(default)]
    #[schema(required = false)]
    pub limits: SpecLimits,
    /// Network access (off by default): egress to public addresses only, through the sandbox's user-mode
    /// network stack.
    #[serde(default)]
    #[schema(required = false)]
    pub network: bool,
}

/// A file given to a program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub path: String,
    pub content: String,
}

/// A program's limits; each has a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecLimits {
    /// Wall-clock deadline (CPU time gets the same), in milliseconds: 1 to 60,000 in an execution, to
    /// 600,000 in a `code.run` job; default 10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    /// Memory in MiB, 16 to 1024; default 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 16, maximum = 1024)]
    pub memory_mb: Option<u64>,
    /// Processes and threads, 1 to 64; default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 64)]
    pub processes: Option<u32>,
}

impl ProgramSpec {
    /// The longest a program may run as a `code.run` job (the job's own deadline still applies).
    pub const MAX_JOB_TIMEOUT_MS: u64 = 10 * 60 * 1000;
    /// The longest a program may run as a synchronous execution.
    pub const MAX_EXECUTION_TIMEOUT_MS: u64 = 60 * 1000;
    /// The largest program.
    pub const MAX_CODE_BYTES: usize = 1 << 20;
    /// The largest input files, together.
    pub const MAX_FILES_BYTES: usize = 8 << 20;
    /// The most memory a program may ask for, in MiB.
    pub const MAX_MEMORY_MB: u64 = 1024;
    /// The most processes and threads a program may ask for.
    pub const MAX_PROCESSES: u32 = 64;

    /// Checks the spec, with its wall time bounded by `max_timeout_ms`: `unsupported_language` for a language
    /// other than Python, `invalid_request` for sizes and limits out of bounds.
    pub fn check_within(&self, max_timeout_ms: u64) -> Result<(), InputError> {
        let invalid = |message: String| InputError { code: "invalid_request", message };
        if self.language != "python" {
            let shown: String = self.language.chars().take(40).collect();
            return Err(InputError {
                code: "unsupported_language",
                message: format!("language `{shown}` is not supported; use `python`"),
            });
        }
        if self.code.len() > Self::MAX_CODE_BYTES {
            return Err(invalid(format!("code is larger than {} bytes", Self::MAX_CODE_BYTES)));
        }
        if self.files.iter().map(|f| f.content.len()).sum::<usize>() > Self::MAX_FILES_BYTES {
            return Err(invalid(format!("files are larger than {} bytes together", Self::MAX_FILES_BYTES)));
        }
        if self.limits.timeout_ms.is_some_and(|ms| !(1..=max_timeout_ms).contains(&ms)) {
            return Err(invalid(format!("limits.timeout_ms must be between 1 and {max_timeout_ms}")));
        }
        if self.limits.memory_mb.is_some_and(|mb| !(16..=Self::MAX_MEMORY_MB).contains(&mb)) {
            return Err(invalid(format!("limits.memory_mb must be between 16 and {}", Self::MAX_MEMORY_MB)));
        }
        if self.limits.processes.is_some_and(|n| !(1..=Self::MAX_PROCESSES).contains(&n)) {
            return Err(invalid(format!("limits.processes must be between 1 and {}", Self::MAX_PROCESSES)));
        }
        Ok(())
    }
}

/// As a `code.run` job's input, a program may run up to [`ProgramSpec::MAX_JOB_TIMEOUT_MS`].
impl WorkflowInput for ProgramSpec {
    fn check(&self) -> Result<(), InputError> {
        self.check_within(Self::MAX_JOB_TIMEOUT_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> ProgramSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn limits_are_checked_against_the_callers_bound() {
        let ok = spec(serde_json::json!({"language": "python", "code": "1", "limits": {"timeout_ms": 60000}}));
        assert!(ok.check_within(ProgramSpec::MAX_EXECUTION_TIMEOUT_MS).is_ok());
        let long = spec(serde_json::json!({"language": "python", "code": "1", "limits": {"timeout_ms": 60001}}));
        assert_eq!(long.check_within(ProgramSpec::MAX_EXECUTION_TIMEOUT_MS).unwrap_err().code, "invalid_request");
        assert!(long.check_within(ProgramSpec::MAX_JOB_TIMEOUT_MS).is_ok());
        let ruby = spec(serde_json::json!({"language": "ruby", "code": "1"}));
        assert_eq!(ruby.check_within(1000).unwrap_err().code, "unsupported_language");
        let big = spec(serde_json::json!({"language": "python", "code": "1", "limits": {"memory_mb": 2048}}));
        assert!(big.check_within(1000).unwrap_err().message.contains("memory_mb"));
    }
}
