//! The helper's messages: what crosses the pipes between the caller and the helper, the helper and the
//! jail's init, and a run's init and the helper. Every process of a jail reads and writes these; none of
//! them owns them, so the modules of the processes ([`super::init`], [`super::run`], [`super::watch`]) import
//! from here and not from one another.
//!
//! The caller and the helper speak JSON lines: a [`Setup`] and its [`SetupReply`], then an `ExecRequest` and
//! a [`Reply`] per run. The helper sends each run a [`Dispatch`] on the jail's control pipe; the run's init
//! answers on the run's report pipe with `ready`, `ok` and a [`Report`], one line each. A step that fails
//! anywhere travels as a [`Failure`]: its stable code and the errno of its cause, from which the receiving
//! side rebuilds the same [`SetupError`] variant.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use nova_core::error_chain;
use serde::{Deserialize, Serialize};

use super::error::SetupError;
use super::net::Egress;
use crate::{ExecRequest, InputFile, Limits, Outcome, OutputFile};

/// What the helper needs to build a jail before it knows the program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    /// The interpreter, as a path that exists both on the host and inside the jail.
    pub python: PathBuf,
    /// Extra `sys.path` entries (the interpreter's site-packages; the interpreter runs with `-I -S`).
    pub python_path: Vec<PathBuf>,
    /// Host paths bound read-only at the same place inside the jail (symlinks are recreated as symlinks).
    pub binds: Vec<PathBuf>,
    /// Limits the jail is built with; the request's own limits replace them before its code runs.
    pub limits: Limits,
    /// The user-mode network stack for runs with network access; `None` looks in the system's directories.
    #[serde(default)]
    pub network_tool: Option<PathBuf>,
}

/// What the helper answers to the [`Setup`]: `{"ready":true}` once the jail is built and its zygote waits,
/// or the step that failed (then it exits).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct SetupReply {
    #[serde(default)]
    pub(crate) ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failure: Option<Failure>,
}

/// What the helper answers to each request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) outcome: Outcome,
    /// Whether the jail takes another request; when not, the helper has torn it down and exits.
    pub(crate) reusable: bool,
    /// For an outcome that is a `sandbox_error` because a step of the run failed: that step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) failure: Option<Failure>,
}

/// The line that asks the helper for a session instead of one run: `{"session": <ExecRequest>}`, the request
/// of the session's program (its agent). The caller sends nothing more until the program speaks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SessionLine {
    pub(crate) session: ExecRequest,
}

impl SessionLine {
    /// How a session line starts, as serde writes it (the helper tells the two kinds of lines apart by it).
    pub(crate) const PREFIX: &'static str = "{\"session\":";
}

/// How a session ended, in the helper's last line of it: `{"id":0,"ev":"ended","end":<SessionEnd>}`, after
/// everything its program wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// `exited` (the program ended), `closed` (the caller closed it), `timeout` (its deadline passed),
    /// `memory_limit` (the kernel killed a process of it for memory), or `failed` (it could not start: see
    /// `error`).
    pub reason: String,
    /// CPU time of every process of the session.
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SessionEnd {
    pub(crate) fn failed(error: String) -> SessionEnd {
        SessionEnd { reason: "failed".into(), error: Some(error), ..SessionEnd::default() }
    }
}

/// A [`SetupError`] as it crosses a pipe: the step's stable code, the errno of its cause, and the cause in
/// words when it has no errno (a message of NOVA's own, a Python exception that is not an `OSError`).
///
/// Inside the jail (the jail's init, a run's init and the program, to the helper) it is one line,
/// `error: CODE ERRNO DETAIL` ([`Failure::to_line`]); from the helper to the caller, a field of the JSON
/// replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failure {
    /// [`SetupError::code`].
    pub(crate) step: String,
    /// The cause's OS error number; 0 when it has none.
    #[serde(default)]
    pub(crate) errno: i32,
    /// The cause in words, when it has no errno.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) detail: String,
}

/// How a failure line starts.
const FAILURE_LINE: &str = "error: ";

impl Failure {
    pub(crate) fn of(error: &SetupError) -> Failure {
        let errno = error.cause().and_then(io::Error::raw_os_error).unwrap_or(0);
        let detail = match error.cause() {
            Some(cause) if errno == 0 => error_chain(cause),
            _ => String::new(),
        };
        Failure { step: error.code().to_owned(), errno, detail }
    }

    /// The step again, with its cause: from the errno when there is one, else from the words. A code no
    /// step has (a helper of another version) is a [`SetupError::GarbledReport`] that keeps it.
    pub(crate) fn into_error(self) -> SetupError {
        let cause = if self.errno > 0 {
            io::Error::from_raw_os_error(self.errno)
        } else {
            io::Error::other(self.detail.clone())
        };
        SetupError::from_code(&self.step, cause).unwrap_or_else(|| {
            let words = format!("an unknown step {:?} failed: {}", self.step, self.detail);
            SetupError::GarbledReport(io::Error::other(words))
        })
    }

    /// The failure as one line (without its `\n`).
    pub(super) fn to_line(&self) -> String {
        format!("{FAILURE_LINE}{} {} {}", self.step, self.errno, self.detail.replace('\n', " "))
    }

    /// The failure of a line that starts like one (`None` for any other line); one that does not parse is a
    /// [`SetupError::GarbledReport`].
    pub(super) fn parse_line(line: &str) -> Option<SetupError> {
        let rest = line.strip_prefix(FAILURE_LINE)?;
        let mut parts = rest.splitn(3, ' ');
        let (step, errno, detail) = (parts.next(), parts.next().map(str::parse::<i32>), parts.next());
        Some(match (step, errno) {
            (Some(step), Some(Ok(errno))) if !step.is_empty() => {
                Failure { step: step.to_owned(), errno, detail: detail.unwrap_or_default().to_owned() }.into_error()
            }
            _ => SetupError::GarbledReport(io::Error::other(format!("{line:?}"))),
        })
    }
}

/// What the helper sends for each run, read by the waiting run's init (the run's descriptors were sent ahead
/// on the runs socket).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Dispatch {
    pub(super) limits: Limits,
    pub(super) files: Vec<InputFile>,
    /// For a request with network on (the helper has attached the network stack): the egress policy.
    pub(super) egress: Option<Egress>,
    /// [`crate::ExecRequest::output_dir`].
    #[serde(default)]
    pub(super) output_dir: Option<String>,
}

/// What the run's init sends once the program is over.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Report {
    /// Raw wait status of the program.
    pub(super) status: i32,
    pub(super) cpu_us: u64,
    pub(super) max_rss_bytes: u64,
    pub(super) files: Vec<OutputFile>,
    pub(super) files_truncated: bool,
}

/// The run init's exit code when the control pipe closed before a request came: the helper is gone.
pub(super) const CONTROL_CLOSED: i32 = 3;

/// Reads one `\n`-terminated line byte by byte (so nothing after it is consumed).
pub(super) fn read_line(file: &mut File) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match file.read(&mut byte)? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "pipe closed")),
            _ if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            _ => line.push(byte[0]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_with_an_errno_crosses_a_line_and_json_as_the_same_step() {
        let sent = SetupError::OpenRuntimePaths(io::Error::from_raw_os_error(libc::ENOENT));
        let line = Failure::of(&sent).to_line();
        assert_eq!(line, "error: open_runtime_paths 2 ");
        let got = Failure::parse_line(&line).expect("a failure line");
        assert!(matches!(&got, SetupError::OpenRuntimePaths(e) if e.kind() == io::ErrorKind::NotFound), "{got:?}");
        assert_eq!(error_chain(&got), error_chain(&sent));
        let json = serde_json::to_string(&SetupReply { ready: false, failure: Some(Failure::of(&got)) }).unwrap();
        let back: SetupReply = serde_json::from_str(&json).unwrap();
        let again = back.failure.expect("the failure").into_error();
        assert_eq!((again.code(), again.cause().and_then(io::Error::raw_os_error)), ("open_runtime_paths", Some(2)));
    }

    #[test]
    fn a_failure_without_an_errno_keeps_its_words_and_a_bare_step_has_none() {
        let cause = io::Error::new(io::ErrorKind::InvalidInput, "input file name \"../x\" is not\na plain path");
        let sent = SetupError::WriteInputFiles(cause);
        let got = Failure::parse_line(&Failure::of(&sent).to_line()).expect("a failure line");
        assert_eq!(got.code(), "write_input_files");
        assert_eq!(error_chain(&got), "writing the input files: input file name \"../x\" is not a plain path");
        let bare = Failure::of(&SetupError::NetworkToolMissing);
        assert_eq!(bare, Failure { step: "network_tool_missing".into(), errno: 0, detail: String::new() });
        assert!(matches!(bare.into_error(), SetupError::NetworkToolMissing));
    }

    #[test]
    fn lines_that_are_not_failures_or_do_not_parse_say_so() {
        assert!(Failure::parse_line("ready").is_none());
        assert!(Failure::parse_line("{\"status\":0}").is_none());
        for garbled in ["error: ", "error: mount_proc x", "error: no_such_step 1 what"] {
            let got = Failure::parse_line(garbled).expect("a failure line");
            assert!(matches!(got, SetupError::GarbledReport(_)), "{garbled}: {got:?}");
        }
        // The zygote's bootstrap writes the same form.
        let got = Failure::parse_line("error: install_seccomp 22 [Errno 22] Invalid argument").unwrap();
        assert!(matches!(&got, SetupError::InstallSeccomp(e) if e.raw_os_error() == Some(libc::EINVAL)));
    }
}
