//! Sessions: a jail that lives across calls. Its one program is the session's agent (`agent.py`): it keeps a
//! Python interpreter state per code context (variables survive from one code run to the next), starts
//! commands and keeps them until they end, and reads and writes the session's files. The jail is the one a
//! run gets (namespaces, a read-only root, a size-capped writable `/work` and `/tmp`, Landlock, seccomp,
//! rlimits, a cgroup holding memory and processes), for the session's whole life; the helper relays bytes
//! between this process and the agent instead of collecting output (see the helper's `relay`).
//!
//! A [`Session`] speaks the agent's JSON-lines protocol: each call sends one request and returns a [`Call`],
//! the stream of that request's [`Event`]s, which ends with [`Event::Done`] or [`Event::Fail`]. A thread per
//! session reads the agent's events and routes them by request id; the agent is untrusted, so a line longer
//! than [`MAX_LINE`] ends the session.
//!
//! A session ends when it is closed (or dropped), when its agent ends, or at its `limits.wall_ms`: every
//! process of it is killed, its mounts go with its mount namespace, its cgroup is removed, and its files
//! (tmpfs) are freed. What keeps sessions within their timeouts and counts is the caller's (the server's
//! registry); `wall_ms` is only the ceiling.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use crate::jail::SessionEnd;
use crate::Limits;

/// The agent's program.
pub(crate) const AGENT: &str = include_str!("agent.py");

/// The longest line the agent may write (a file chunk of 1 MiB, base64-encoded, fits with room).
pub const MAX_LINE: usize = 4 << 20;

/// Bytes of a file sent to the agent per request.
const WRITE_CHUNK: usize = 1 << 20;

/// What a session is opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// The session's limits: memory and processes (threads included) of the whole session, the size of
    /// `/work` and of `/tmp`, CPU time per process, and `wall_ms`, the ceiling on its life.
    pub limits: Limits,
    /// Environment variables every code run and command sees.
    pub env: Vec<(String, String)>,
    /// Network access, as for a run (see [`crate::ExecRequest::network`]).
    pub network: bool,
}

impl Default for SessionSpec {
    fn default() -> Self {
        SessionSpec { limits: SessionSpec::default_limits(), env: Vec::new(), network: false }
    }
}

impl SessionSpec {
    /// A session's default limits: 512 MiB of memory, 64 processes and threads, 256 MiB each for `/work`
    /// and `/tmp`, one hour of life at most.
    pub fn default_limits() -> Limits {
        Limits {
            wall_ms: 3_600_000,
            cpu_ms: 3_600_000,
            memory_bytes: 512 << 20,
            processes: 64,
            output_bytes: 1 << 20,
            work_bytes: 256 << 20,
            output_files_bytes: 0,
        }
    }

    /// The agent's run.
    pub(crate) fn request(&self) -> crate::ExecRequest {
        crate::ExecRequest {
            code: AGENT.into(),
            env: self.env.clone(),
            limits: self.limits,
            network: self.network,
            ..Default::default()
        }
    }
}

/// Why a call failed: the agent's answer (`not_found`, `exists`, `invalid`, `permission`, `no_space`,
/// `internal`) or the session's (`ended`: the session is gone; `timeout`: no answer in time; `too_large`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct SessionError {
    pub kind: String,
    pub message: String,
}

impl SessionError {
    fn new(kind: &str, message: impl Into<String>) -> SessionError {
        SessionError { kind: kind.into(), message: message.into() }
    }

    fn ended(end: Option<&SessionEnd>) -> SessionError {
        let why = match end {
            Some(SessionEnd { error: Some(error), .. }) => format!("the session ended: {error}"),
            Some(end) => format!("the session ended ({})", end.reason),
            None => "the session ended".into(),
        };
        SessionError::new("ended", why)
    }
}

/// One event of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Output of a code run (text) or a command (bytes).
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The value of a code run's last expression, as `repr` shows it.
    Result(String),
    /// The exception a code run ended with.
    Error(CodeError),
    /// A command's process started.
    Started {
        pid: u32,
    },
    /// A chunk of a file read.
    Data(Vec<u8>),
    /// The end of the call, with its result's fields.
    Done(Map<String, Value>),
    /// The end of a call that failed.
    Fail(SessionError),
}

/// An exception of a code run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeError {
    pub name: String,
    pub value: String,
    pub traceback: String,
}

/// A process a command started, alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub cmd: String,
    /// The arguments of a command started without a shell.
    #[serde(default)]
    pub args: Option<Vec<String>>,
    pub cwd: String,
    #[serde(default)]
    pub env: HashMap<String, String>,
    #[serde(default)]
    pub tag: Option<String>,
}

/// A file, folder or symlink of the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryInfo {
    pub name: String,
    /// Absolute, inside the session.
    pub path: String,
    /// `file`, `dir` (a symlink to either counts as what it points to), or `symlink` (dangling).
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Seconds since the epoch.
    pub modified: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A command to start in a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Command {
    /// A shell command line (`bash -c`, or `sh -c` where bash is missing); with `args`, the program to run.
    pub cmd: String,
    /// The program's arguments, run without a shell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Its working directory; the session's home (`/work`) by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Variables added to the session's environment.
    pub env: HashMap<String, String>,
    /// A name for it, shown in the process list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Keep its standard input open for [`Session::send_input`]; otherwise it reads end of file.
    pub stdin: bool,
}

/// The events of one request, in order. Ends after [`Event::Done`] or [`Event::Fail`]; a session that ends
/// first yields a `Fail` of kind `ended`.
pub struct Call {
    id: u64,
    events: Receiver<Event>,
    /// Bytes of output delivered to `events` and not yet taken (see [`MAX_BUFFERED`]).
    buffered: Arc<AtomicUsize>,
    session: Arc<Inner>,
    finished: bool,
}

impl Call {
    /// The request's id (what [`Session::interrupt`] names).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event, waiting at most `timeout`; `None` once the call has finished, or when `timeout`
    /// passed (then [`Call::is_finished`] is false).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Event> {
        if self.finished {
            return None;
        }
        let event = match self.events.recv_timeout(timeout) {
            Ok(event) => {
                self.buffered.fetch_sub(event.size(), Ordering::Relaxed);
                event
            }
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => Event::Fail(SessionError::ended(self.session.end().as_ref())),
        };
        self.finished = matches!(event, Event::Done(_) | Event::Fail(_));
        Some(event)
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Waits for the end (at most `timeout`) and returns the result's fields; other events are dropped.
    pub fn wait(mut self, timeout: Duration) -> Result<Map<String, Value>, SessionError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_timeout(left) {
                Some(Event::Done(fields)) => return Ok(fields),
                Some(Event::Fail(e)) => return Err(e),
                Some(_) => {}
                None => return Err(SessionError::new("timeout", "the session did not answer in time")),
            }
        }
    }
}

impl Iterator for Call {
    type Item = Event;

    /// The next event, however long it takes.
    fn next(&mut self) -> Option<Event> {
        self.next_timeout(Duration::MAX)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished {
            self.session.routes.lock().expect("routes lock").remove(&self.id);
        }
    }
}

/// A live session. Cheap to clone; closed when [`Session::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
    _closer: Arc<Closer>,
}

struct Inner {
    /// The helper's input, non-blocking: a write waits for room a bounded time, and never past a close.
    input: Mutex<Option<ChildStdin>>,
    /// Set by [`Session::close`]: a writer waiting for room drops the input instead.
    closing: AtomicBool,
    routes: Mutex<HashMap<u64, Route>>,
    next_id: AtomicU64,
    /// Set once, when the session has ended; `ended` wakes whoever waits for it.
    state: Mutex<Option<SessionEnd>>,
    ended: Condvar,
    /// The helper's pid: the root of the session's process tree on the host.
    helper: u32,
}

impl Inner {
    /// Closes the helper's input now, or, while a writer holds it, has the writer close it (within
    /// [`WRITE_POLL`]): closing never waits on a session that does not read.
    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Ok(mut input) = self.input.try_lock() {
            drop(input.take());
        }
    }

    /// Writes one request line, waiting for room at most [`CALL_TIMEOUT`].
    fn send(&self, line: &[u8]) -> Result<(), SessionError> {
        let mut input = self.input.lock().expect("input lock");
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut left = line;
        while !left.is_empty() {
            if self.closing.load(Ordering::SeqCst) {
                drop(input.take());
            }
            let Some(stdin) = input.as_mut() else { return Err(SessionError::ended(self.end().as_ref())) };
            match stdin.write(left) {
                Ok(n) => left = &left[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(SessionError::new("timeout", "the session does not read its requests"));
                    }
                    let _ = crate::os::poll(&[(stdin.as_raw_fd(), libc::POLLOUT)], WRITE_POLL.as_millis() as i32);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    drop(input.take());
                    return Err(SessionError::ended(self.end().as_ref()));
                }
            }
        }
        Ok(())
    }

    fn end(&self) -> Option<SessionEnd> {
        self.state.lock().expect("state lock").clone()
    }
}

/// Closes the session when the last [`Session`] handle goes.
struct Closer(Arc<Inner>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// How often a writer waiting for room looks whether the session is being closed.
const WRITE_POLL: Duration = Duration::from_millis(100);

/// The wait for the agent's first word.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The wait for an answer to a call that does not run code or a command.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl Session {
    /// Takes over a helper that was sent a session line; returns once the agent says it is ready.
    pub(crate) fn start(mut child: Child, input: ChildStdin, output: ChildStdout) -> Result<Session, String> {
        crate::os::set_nonblocking(input.as_raw_fd()).map_err(|e| format!("the session's input: {e}"))?;
        let inner = Arc::new(Inner {
            input: Mutex::new(Some(input)),
            closing: AtomicBool::new(false),
            routes: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            state: Mutex::new(None),
            ended: Condvar::new(),
            helper: child.id(),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = inner.clone();
        let spawned = std::thread::Builder::new().name("nova-session".into()).spawn(move || {
            let end = read_events(&reader, BufReader::new(output), ready_tx);
            // The session has ended once the helper is reaped: it has torn the jail down by then.
            let _ = child.wait();
            *reader.state.lock().expect("state lock") = Some(end);
            // The calls still waiting see their channel close.
            reader.routes.lock().expect("routes lock").clear();
            reader.ended.notify_all();
        });
        if let Err(e) = spawned {
            return Err(format!("starting the session's reader: {e}"));
        }
        let session = Session { _closer: Arc::new(Closer(inner.clone())), inner };
        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(()) => Ok(session),
            Err(_) => {
                session.close();
                let end = session.wait_ended(Duration::from_secs(5));
                Err(match end {
                    Some(SessionEnd { error: Some(error), .. }) => error,
                    Some(end) => format!("the session's agent ended before it was ready ({})", end.reason),
                    None => "the session's agent did not start in time".into(),
                })
            }
        }
    }

    /// Sends one request; `fields` are its arguments besides `id` and `op`. Output beyond [`MAX_BUFFERED`]
    /// bytes not yet taken is dropped, and the call's `Done` says `output_truncated`.
    pub fn call(&self, op: &str, fields: Value) -> Result<Call, SessionError> {
        self.call_with_budget(op, fields, MAX_BUFFERED)
    }

    /// A new request id and the request's line.
    fn request(&self, op: &str, fields: Value) -> (u64, Vec<u8>) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        request.insert("id".into(), id.into());
        request.insert("op".into(), op.into());
        let mut line = serde_json::to_vec(&request).expect("requests serialise");
        line.push(b'\n');
        (id, line)
    }

    fn call_with_budget(&self, op: &str, fields: Value, budget: usize) -> Result<Call, SessionError> {
        let (id, line) = self.request(op, fields);
        let (tx, rx) = mpsc::channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        let route = Route { to: Deliver::Channel(tx), buffered: buffered.clone(), budget, dropped: false };
        self.inner.routes.lock().expect("routes lock").insert(id, route);
        let call = Call { id, events: rx, buffered, session: self.inner.clone(), finished: false };
        self.inner.send(&line)?;
        Ok(call)
    }

    /// Like [`Session::call`], with the events handed to `sink` on the session's reader thread, as they come
    /// (no thread waits for them): for callers that are async. `sink` must not block; it returns `false`
    /// once it wants no more (then later events of the call are dropped). Returns the request's id.
    pub fn call_into(
        &self,
        op: &str,
        fields: Value,
        sink: impl FnMut(Event) -> bool + Send + 'static,
    ) -> Result<u64, SessionError> {
        let (id, line) = self.request(op, fields);
        let route = Route {
            to: Deliver::Sink(Box::new(sink)),
            buffered: Arc::new(AtomicUsize::new(0)),
            budget: MAX_BUFFERED,
            dropped: false,
        };
        self.inner.routes.lock().expect("routes lock").insert(id, route);
        if let Err(e) = self.inner.send(&line) {
            self.inner.routes.lock().expect("routes lock").remove(&id);
            return Err(e);
        }
        Ok(id)
    }

    fn call_and_wait(&self, op: &str, fields: Value) -> Result<Map<String, Value>, SessionError> {
        self.call(op, fields)?.wait(CALL_TIMEOUT)
    }

    /// Runs Python code in a code context (`None`: the default one): its stdout and stderr as they come, the
    /// value of its last expression ([`Event::Result`]), its exception ([`Event::Error`]), then `Done` with
    /// `execution_count`. Runs take turns.
    pub fn run_code(
        &self,
        code: &str,
        context: Option<&str>,
        env: &HashMap<String, String>,
    ) -> Result<Call, SessionError> {
        self.call("code", json!({"code": code, "context": context, "env": env}))
    }

    /// [`Session::run_code`] with its events handed to `sink` (see [`Session::call_into`]); returns its id.
    pub fn run_code_into(
        &self,
        code: &str,
        context: Option<&str>,
        env: &HashMap<String, String>,
        sink: impl FnMut(Event) -> bool + Send + 'static,
    ) -> Result<u64, SessionError> {
        self.call_into("code", json!({"code": code, "context": context, "env": env}), sink)
    }

    /// [`Session::spawn`] with its events handed to `sink` (see [`Session::call_into`]).
    pub fn spawn_into(
        &self,
        command: &Command,
        sink: impl FnMut(Event) -> bool + Send + 'static,
    ) -> Result<u64, SessionError> {
        self.call_into("spawn", serde_json::to_value(command).expect("commands serialise"), sink)
    }

    /// Stops the code run `call` (a [`Call::id`]) with a `KeyboardInterrupt`, if it is still running.
    pub fn interrupt(&self, call: u64) -> Result<(), SessionError> {
        self.call_and_wait("interrupt", json!({"target": call})).map(drop)
    }

    /// A new code context with its own variables, starting in `cwd`; returns its id and its directory.
    pub fn create_context(&self, cwd: Option<&str>) -> Result<(String, String), SessionError> {
        let done = self.call_and_wait("context", json!({"cwd": cwd}))?;
        let field = |key: &str| done.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok((field("context"), field("cwd")))
    }

    /// The code contexts: `(id, cwd)`, the default one (`default`) first.
    pub fn contexts(&self) -> Result<Vec<(String, String)>, SessionError> {
        let done = self.call_and_wait("contexts", json!({}))?;
        let list = done.get("contexts").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(list
            .iter()
            .map(|c| {
                let field = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
                (field("context"), field("cwd"))
            })
            .collect())
    }

    /// Forgets a code context's variables (it keeps its id and directory).
    pub fn reset_context(&self, context: &str) -> Result<(), SessionError> {
        self.call_and_wait("reset_context", json!({"context": context})).map(drop)
    }

    pub fn remove_context(&self, context: &str) -> Result<(), SessionError> {
        self.call_and_wait("drop_context", json!({"context": context})).map(drop)
    }

    /// Starts a command: [`Event::Started`] with its pid, its output as it comes, then `Done` with
    /// `exit_code` or `signal`.
    pub fn spawn(&self, command: &Command) -> Result<Call, SessionError> {
        self.call("spawn", serde_json::to_value(command).expect("commands serialise"))
    }

    /// The processes commands started that are still running.
    pub fn processes(&self) -> Result<Vec<ProcessInfo>, SessionError> {
        let done = self.call_and_wait("ps", json!({}))?;
        parse_field(&done, "processes")
    }

    /// Sends `signal` to a command's process group.
    pub fn signal(&self, pid: u32, signal: i32) -> Result<(), SessionError> {
        self.call_and_wait("signal", json!({"pid": pid, "signal": signal})).map(drop)
    }

    /// Writes to a command's standard input (one started with `stdin: true`).
    pub fn send_input(&self, pid: u32, data: &[u8]) -> Result<(), SessionError> {
        self.call_and_wait("input", json!({"pid": pid, "b64": STANDARD.encode(data)})).map(drop)
    }

    pub fn close_input(&self, pid: u32) -> Result<(), SessionError> {
        self.call_and_wait("close_input", json!({"pid": pid})).map(drop)
    }

    /// Writes a file (its folders are made as needed); a relative path is relative to `/work`.
    pub fn write_file(&self, path: &str, contents: &[u8]) -> Result<EntryInfo, SessionError> {
        let mut chunks = contents.chunks(WRITE_CHUNK);
        let first = chunks.next().unwrap_or_default();
        let mut done = self.call_and_wait("write", json!({"path": path, "b64": STANDARD.encode(first)}))?;
        for chunk in chunks {
            done = self.call_and_wait("write", json!({"path": path, "b64": STANDARD.encode(chunk), "append": true}))?;
        }
        parse_field(&done, "entry")
    }

    /// Reads a whole file, refusing one larger than `max_bytes`.
    pub fn read_file(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, SessionError> {
        let entry = self.stat(path)?;
        if entry.kind != "file" {
            return Err(SessionError::new("invalid", format!("{} is not a file", entry.path)));
        }
        if entry.size > max_bytes {
            return Err(SessionError::new("too_large", format!("{} holds more than {max_bytes} bytes", entry.path)));
        }
        // A read's chunks are never dropped: its budget is the file's size, which the check above bounds.
        let budget = usize::try_from(max_bytes).unwrap_or(usize::MAX).saturating_add(2 << 20);
        let mut call = self.call_with_budget("read", json!({"path": path}), budget)?;
        let mut contents = Vec::new();
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match call.next_timeout(deadline.saturating_duration_since(Instant::now())) {
                Some(Event::Data(chunk)) => {
                    contents.extend_from_slice(&chunk);
                    if contents.len() as u64 > max_bytes {
                        return Err(SessionError::new("too_large", format!("{path} grew past {max_bytes} bytes")));
                    }
                }
                Some(Event::Done(_)) => return Ok(contents),
                Some(Event::Fail(e)) => return Err(e),
                Some(_) => {}
                None => return Err(SessionError::new("timeout", "the session did not answer in time")),
            }
        }
    }

    pub fn stat(&self, path: &str) -> Result<EntryInfo, SessionError> {
        parse_field(&self.call_and_wait("stat", json!({"path": path}))?, "entry")
    }

    /// A folder's entries, and their entries down to `depth` levels (1: the folder's own).
    pub fn list(&self, path: &str, depth: u32) -> Result<Vec<EntryInfo>, SessionError> {
        parse_field(&self.call_and_wait("list", json!({"path": path, "depth": depth}))?, "entries")
    }

    /// Makes a folder and its parents; `false` when it was there already.
    pub fn make_dir(&self, path: &str) -> Result<bool, SessionError> {
        let done = self.call_and_wait("mkdir", json!({"path": path}))?;
        Ok(done.get("created").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Removes a file, or a folder with everything in it.
    pub fn remove(&self, path: &str) -> Result<(), SessionError> {
        self.call_and_wait("remove", json!({"path": path})).map(drop)
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<EntryInfo, SessionError> {
        parse_field(&self.call_and_wait("rename", json!({"path": from, "to": to}))?, "entry")
    }

    /// Ends the session: the helper kills every process of it and removes its jail. Returns at once; see
    /// [`Session::wait_ended`].
    pub fn close(&self) {
        self.inner.close();
    }

    /// How the session ended, once it has (and its jail is gone); `None` while it lives.
    pub fn end(&self) -> Option<SessionEnd> {
        self.inner.end()
    }

    /// Waits up to `timeout` for the session to end and its helper to exit.
    pub fn wait_ended(&self, timeout: Duration) -> Option<SessionEnd> {
        let state = self.inner.state.lock().expect("state lock");
        let alive = |s: &mut Option<SessionEnd>| s.is_none();
        let (state, _) = self.inner.ended.wait_timeout_while(state, timeout, alive).expect("state lock");
        state.clone()
    }

    /// The pid on the host of the session's helper, the root of its process tree; its jail's cgroup and
    /// mount point are named after it.
    pub fn helper_pid(&self) -> u32 {
        self.inner.helper
    }

    /// Memory the session holds on the host: the proportional set size of its process tree (helper, the
    /// jail's processes, the agent and whatever runs in it), in bytes.
    pub fn memory(&self) -> Option<u64> {
        crate::os::tree_proportional_set_size(self.inner.helper as i32)
    }
}

fn parse_field<T: serde::de::DeserializeOwned>(done: &Map<String, Value>, key: &str) -> Result<T, SessionError> {
    let value = done.get(key).cloned().unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|e| SessionError::new("internal", format!("the agent's {key}: {e}")))
}

/// Output a call holds undelivered before more is dropped: a caller that stops reading a command's output
/// (a background command nobody follows) costs at most this much memory.
pub const MAX_BUFFERED: usize = 8 << 20;

/// Where a call's events go.
struct Route {
    to: Deliver,
    /// Bytes delivered to a channel and not yet taken.
    buffered: Arc<AtomicUsize>,
    /// The most `buffered` may reach: [`MAX_BUFFERED`], or a file read's own size.
    budget: usize,
    /// Whether events were dropped for want of room: `Done` then says `output_truncated`.
    dropped: bool,
}

enum Deliver {
    Channel(Sender<Event>),
    Sink(Box<dyn FnMut(Event) -> bool + Send>),
}

impl Route {
    /// Delivers `event`, or drops it when it is output and the call holds [`MAX_BUFFERED`] bytes already.
    /// Returns `false` once the call is gone.
    fn deliver(&mut self, event: Event) -> bool {
        match &mut self.to {
            Deliver::Sink(sink) => sink(event),
            Deliver::Channel(events) => {
                let size = event.size();
                let mut event = event;
                match &mut event {
                    Event::Done(fields) if self.dropped => {
                        fields.insert("output_truncated".into(), Value::Bool(true));
                    }
                    Event::Done(_) | Event::Fail(_) => {}
                    _ if self.buffered.load(Ordering::Relaxed) + size > self.budget => {
                        self.dropped = true;
                        return true;
                    }
                    _ => {}
                }
                self.buffered.fetch_add(size, Ordering::Relaxed);
                events.send(event).is_ok()
            }
        }
    }
}

impl Event {
    /// The bytes it carries, as counted against [`MAX_BUFFERED`].
    pub fn size(&self) -> usize {
        match self {
            Event::Stdout(b) | Event::Stderr(b) | Event::Data(b) => b.len(),
            Event::Result(text) => text.len(),
            Event::Error(e) => e.name.len() + e.value.len() + e.traceback.len(),
            Event::Done(fields) => fields.len() * 64,
            Event::Fail(e) => e.message.len(),
            Event::Started { .. } => 0,
        }
    }
}

/// An event as the agent writes it.
#[derive(Deserialize)]
struct Line {
    id: u64,
    ev: String,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// The session's reader: routes each event to its call until the helper's output ends; returns how the
/// session ended.
fn read_events(inner: &Inner, mut output: BufReader<ChildStdout>, ready: Sender<()>) -> SessionEnd {
    let mut end = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut output).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.len() > MAX_LINE => {
                // An agent that floods the channel is not served further. Its output is drained until the
                // helper, its input closed, has killed the jail: a helper blocked on a full pipe would never
                // see that.
                inner.close();
                let _ = std::io::copy(&mut output, &mut std::io::sink());
                return SessionEnd::failed("the session's agent wrote a line too long".into());
            }
            Ok(_) => {}
        }
        let Ok(Line { id, ev, mut fields }) = serde_json::from_slice::<Line>(&line) else { continue };
        if id == 0 {
            match ev.as_str() {
                "ready" => {
                    let _ = ready.send(());
                }
                "ended" => end = fields.remove("end").and_then(|e| serde_json::from_value(e).ok()),
                _ => {}
            }
            continue;
        }
        let event = match to_event(&ev, fields) {
            Some(event) => event,
            None => continue,
        };
        let terminal = matches!(event, Event::Done(_) | Event::Fail(_));
        let mut routes = inner.routes.lock().expect("routes lock");
        let delivered = routes.get_mut(&id).is_some_and(|route| route.deliver(event));
        if terminal || !delivered {
            routes.remove(&id);
        }
    }
    inner.close();
    end.unwrap_or_else(|| SessionEnd::failed("the session's helper ended without a word".into()))
}

fn to_event(ev: &str, mut fields: Map<String, Value>) -> Option<Event> {
    let mut take_str = |key: &str| match fields.remove(key) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let bytes = |text: String, b64: String| {
        if b64.is_empty() {
            text.into_bytes()
        } else {
            STANDARD.decode(b64).unwrap_or_default()
        }
    };
    Some(match ev {
        "stdout" => Event::Stdout(bytes(take_str("text"), take_str("b64"))),
        "stderr" => Event::Stderr(bytes(take_str("text"), take_str("b64"))),
        "data" => Event::Data(STANDARD.decode(take_str("b64")).unwrap_or_default()),
        "result" => Event::Result(take_str("text")),
        "error" => Event::Error(CodeError {
            name: take_str("name"),
            value: take_str("value"),
            traceback: take_str("traceback"),
        }),
        "started" => Event::Started { pid: fields.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32 },
        "done" => Event::Done(fields),
        "fail" => Event::Fail(SessionError { kind: take_str("kind"), message: take_str("message") }),
        _ => return None,
    })
}
