//! The helper's messages: what crosses the pipes between the caller and the helper, the helper and the
//! jail's init, and a run's init and the helper. Every process of a jail reads and writes these; none of
//! them owns them, so the modules of the processes ([`super::init`], [`super::run`], [`super::watch`]) import
//! from here and not from one another.
//!
//! The caller and the helper speak JSON lines: a [`Setup`], then an `ExecRequest` and a [`Reply`] per run.
//! The helper sends each run a [`Dispatch`] on the jail's control pipe; the run's init answers on the run's
//! report pipe with `ready`, `ok` and a [`Report`], one line each.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::net::Egress;
use crate::{InputFile, Limits, Outcome, OutputFile};

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

/// What the helper answers to each request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) outcome: Outcome,
    /// Whether the jail takes another request; when not, the helper has torn it down and exits.
    pub(crate) reusable: bool,
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
