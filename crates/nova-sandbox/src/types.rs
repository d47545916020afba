//! What goes into a sandbox and what comes out. Plain data, serialisable, so the same types cross the pipe
//! between the caller and the jail helper, and later the HTTP API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The language runtime a program is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// The host's Python 3 interpreter, bound read-only into the jail.
    #[default]
    Python3,
}

/// One program to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    pub runtime: Runtime,
    /// The program's source text.
    pub code: String,
    /// Bytes fed to the program's standard input.
    #[serde(default)]
    pub stdin: Vec<u8>,
    /// Files written into the work directory before the program starts.
    #[serde(default)]
    pub files: Vec<InputFile>,
    /// Environment variables; the program sees these and a fixed minimum (`PATH`, `HOME`, `LANG`), nothing
    /// of the caller's environment.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub limits: Limits,
    /// Network access. Off by default: a network namespace with its own loopback only. On: egress through a
    /// user-mode network stack (slirp4netns) to public IPv4 addresses only; loopback, private, link-local,
    /// CGNAT, multicast and reserved ranges and the host's own addresses are refused at connect time. The jail
    /// backend answers `sandbox_error` when the stack is not installed, never runs without the policy.
    #[serde(default)]
    pub network: bool,
    /// The folder of the work directory whose files are returned in [`Outcome::files`], with paths relative
    /// to it; `None`: the whole work directory (input files included). One plain name; when the program
    /// ends it must be a real folder (not a symlink), or nothing is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<String>,
}

/// A file placed in the work directory. `path` is relative to it; `..`, absolute paths and NUL are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: String,
    pub contents: Vec<u8>,
}

/// Resource limits of one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Wall-clock deadline from the moment the program is handed its code.
    pub wall_ms: u64,
    /// CPU time of the whole process tree.
    pub cpu_ms: u64,
    /// Memory of the whole process tree, without swap.
    pub memory_bytes: u64,
    /// Processes and threads alive at once, the interpreter included.
    pub processes: u32,
    /// Bytes kept of stdout and of stderr each; a program that writes more is stopped (`output_limit`).
    pub output_bytes: u64,
    /// Size of the work directory (and, separately, of `/tmp`).
    pub work_bytes: u64,
    /// Bytes returned of the work directory's files, all files together.
    pub output_files_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall_ms: 10_000,
            cpu_ms: 10_000,
            memory_bytes: 256 << 20,
            processes: 32,
            output_bytes: 1 << 20,
            work_bytes: 64 << 20,
            output_files_bytes: 8 << 20,
        }
    }
}

/// How an execution ended, in the manner of isolate's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExecutionStatus)]
pub enum Status {
    /// Exited with code 0.
    Ok,
    /// Exited with another code.
    NonzeroExit,
    /// Killed by a signal it was not killed for by a limit.
    Signaled,
    /// Ran past its wall-clock deadline or its CPU time.
    Timeout,
    /// Hit its memory limit.
    MemoryLimit,
    /// Wrote more than its output limit.
    OutputLimit,
    /// Stopped by its caller (see [`crate::Cancel`]): every process of it was killed.
    Canceled,
    /// The sandbox itself failed; `Outcome::error` says where. The program may not have run.
    SandboxError,
}

impl Status {
    /// The stable snake_case name (`ok`, `nonzero_exit`, ...), as in the JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NonzeroExit => "nonzero_exit",
            Status::Signaled => "signaled",
            Status::Timeout => "timeout",
            Status::MemoryLimit => "memory_limit",
            Status::OutputLimit => "output_limit",
            Status::Canceled => "canceled",
            Status::SandboxError => "sandbox_error",
        }
    }
}

/// A regular file the program left in its work directory. Symlinks and other special files are never
/// followed or returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: String,
    pub contents: Vec<u8>,
}

/// What happened to one execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// Exit code, when the program exited.
    pub exit_code: Option<i32>,
    /// Signal number, when the program was killed by one.
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Whether stdout or stderr was cut at `Limits::output_bytes`.
    pub output_truncated: bool,
    pub files: Vec<OutputFile>,
    /// Whether some output files were left out (too large, too many, or not regular files).
    pub files_truncated: bool,
    pub wall_time: Duration,
    pub cpu_time: Duration,
    pub peak_memory_bytes: u64,
    /// For `sandbox_error`: what failed, naming the setup step.
    pub error: Option<String>,
}

impl Outcome {
    /// An outcome for a sandbox that failed before or around the program.
    pub fn sandbox_error(message: impl Into<String>) -> Outcome {
        Outcome { error: Some(message.into()), ..Outcome::empty(Status::SandboxError) }
    }

    /// An outcome for an execution canceled before its program started.
    pub fn canceled() -> Outcome {
        Outcome::empty(Status::Canceled)
    }

    /// An outcome with `status` and nothing else: no output, no time.
    pub(crate) fn empty(status: Status) -> Outcome {
        Outcome {
            status,
            exit_code: None,
            signal: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            output_truncated: false,
            files: Vec::new(),
            files_truncated: false,
            wall_time: Duration::ZERO,
            cpu_time: Duration::ZERO,
            peak_memory_bytes: 0,
            error: None,
        }
    }
}
