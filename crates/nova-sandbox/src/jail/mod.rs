//! The `jail` backend: one fresh set of namespaces per execution, built by a helper process (see
//! [`helper_main`]). A warm pool keeps jails whose zygote (an interpreter that imported nothing of any
//! program) is started; each execution in one gets fresh pid, mount, net, ipc and uts namespaces, a fresh
//! `/proc`, `/tmp` and work directory, and a fresh fork of the zygote, so nothing of one execution reaches the
//! next. A jail whose execution was killed (deadline, output limit, memory limit, cancellation) or failed is
//! destroyed and replaced in the background.

mod cgroup;
mod helper;
pub(crate) mod seccomp;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use helper::{helper_main, SessionEnd, Setup, SetupError};
use helper::{Reply, SessionLine, SetupReply};

use nova_core::error_chain;

use crate::session::{Session, SessionSpec};
use crate::{Cancel, ExecRequest, Limits, Outcome, Sandbox};

/// Why a jail sandbox could not run a program: the typed form of what [`Sandbox::exec`] reports as a
/// `sandbox_error` (whose message is this error's text, with its causes). See [`JailSandbox::try_exec`].
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// The helper process did not start.
    #[error("starting the jail helper {}", helper.display())]
    StartHelper {
        helper: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A step of building the jail failed, in the helper or inside the jail.
    #[error("jail setup failed")]
    Setup(#[source] SetupError),
    /// The helper ended (or wrote something else) before it said whether the jail was built.
    #[error("jail helper ended during setup: {0:?}")]
    HelperEnded(String),
    /// A step of preparing the run failed, or the run's init ended without a word: the program may not have
    /// run. The message is the step's own.
    #[error(transparent)]
    Run(SetupError),
    /// The helper answered something that is not an outcome.
    #[error("unreadable outcome from the jail helper")]
    UnreadableOutcome(#[source] serde_json::Error),
    /// The pipes to the helper broke.
    #[error("talking to the jail helper")]
    Helper(#[source] io::Error),
    /// A session's agent did not start; the message says why.
    #[error("starting the session: {0}")]
    Session(String),
}

impl JailError {
    /// The step that failed, when one did: what tests and callers match on.
    pub fn step(&self) -> Option<&SetupError> {
        match self {
            JailError::Setup(step) | JailError::Run(step) => Some(step),
            _ => None,
        }
    }
}

/// How to start jails: which helper to run and what to bind.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// The program that runs [`helper_main`]: the `nova` binary itself.
    pub helper: PathBuf,
    /// Arguments that make it do so (`["__jail"]` for `nova`).
    pub helper_args: Vec<String>,
    /// The interpreter and what it needs bound.
    pub python: PythonRuntime,
    /// Jails kept with their zygote started, each serving one execution at a time; 0 turns the pool off
    /// (every execution is cold).
    pub pool_size: usize,
    /// Limits warm jails are built with (a request's own limits replace them before its code runs).
    pub warm_limits: Limits,
    /// The slirp4netns executable for runs with network access; `None` looks in the system's `bin`
    /// directories.
    pub network_tool: Option<PathBuf>,
}

/// A host Python 3 interpreter and the paths it needs inside the jail.
#[derive(Debug, Clone)]
pub struct PythonRuntime {
    /// The real executable (not a pyenv shim).
    pub executable: PathBuf,
    /// Site-packages directories appended to `sys.path` (the jail runs the interpreter with `-I -S`).
    pub site_packages: Vec<PathBuf>,
    /// Host paths bound read-only: the system's `/usr` (and its `/bin`, `/lib` links) and the
    /// interpreter's prefix when it lives elsewhere.
    pub binds: Vec<PathBuf>,
}

impl PythonRuntime {
    /// Finds the interpreter `python` (a name on `PATH` or a path; `python3` by default: the binary passes
    /// `NOVA_SANDBOX_PYTHON`) and what to bind for it, by asking it once.
    pub fn detect(python: Option<&Path>) -> io::Result<PythonRuntime> {
        let name = python.map_or_else(|| PathBuf::from("python3"), Path::to_path_buf);
        let probe = "import sys, site; print(sys.executable); print(sys.base_prefix); \
                     print(*site.getsitepackages(), sep='\\n')";
        let output = Command::new(&name).args(["-I", "-c", probe]).stdin(Stdio::null()).output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!("{} failed: {}", name.display(), output.status)));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let executable = std::fs::canonicalize(lines.next().unwrap_or_default())?;
        let prefix = std::fs::canonicalize(lines.next().unwrap_or_default())?;
        let site_packages: Vec<PathBuf> = lines.map(PathBuf::from).filter(|p| p.is_dir()).collect();
        let mut binds: Vec<PathBuf> = ["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc/ld.so.cache"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        for extra in [&prefix, &executable] {
            let covered = binds.iter().any(|b| extra.starts_with(b) && b.is_dir());
            if !covered {
                binds.push(if extra.is_dir() { extra.clone() } else { extra.parent().unwrap_or(extra).to_path_buf() });
            }
        }
        Ok(PythonRuntime { executable, site_packages, binds })
    }
}

impl JailConfig {
    /// A configuration that runs `helper helper_args...` with the detected host `python3` and no pool.
    pub fn detect(helper: impl Into<PathBuf>, helper_args: &[&str]) -> io::Result<JailConfig> {
        Ok(Self::new(helper, helper_args, PythonRuntime::detect(None)?))
    }

    /// A configuration that runs `helper helper_args...` with `python` and no pool.
    pub fn new(helper: impl Into<PathBuf>, helper_args: &[&str], python: PythonRuntime) -> JailConfig {
        JailConfig {
            helper: helper.into(),
            helper_args: helper_args.iter().map(|s| s.to_string()).collect(),
            python,
            pool_size: 0,
            warm_limits: Limits::default(),
            network_tool: None,
        }
    }

    fn setup(&self) -> Setup {
        Setup {
            python: self.python.executable.clone(),
            python_path: self.python.site_packages.clone(),
            binds: self.python.binds.clone(),
            limits: self.warm_limits,
            network_tool: self.network_tool.clone(),
        }
    }
}

/// The jail sandbox. Cheap to share (`Arc`); `exec` may be called from many threads at once.
pub struct JailSandbox {
    config: Arc<JailConfig>,
    pool: Option<Arc<Pool>>,
    refillers: Vec<JoinHandle<()>>,
    started: Arc<AtomicUsize>,
}

impl JailSandbox {
    /// Starts the sandbox (and its pool's refill threads when `pool_size > 0`). Does not check the kernel:
    /// call [`JailSandbox::check`] for that.
    pub fn new(config: JailConfig) -> JailSandbox {
        let config = Arc::new(config);
        let started = Arc::new(AtomicUsize::new(0));
        let mut refillers = Vec::new();
        let pool = (config.pool_size > 0).then(|| {
            let pool = Arc::new(Pool::default());
            // Two preparers: preparing a jail is mostly the interpreter's start-up, one core each.
            for _ in 0..config.pool_size.min(2) {
                let (pool, config, started) = (pool.clone(), config.clone(), started.clone());
                refillers.push(std::thread::spawn(move || refill(&pool, &config, &started)));
            }
            pool
        });
        JailSandbox { config, pool, refillers, started }
    }

    /// Proves that jails work here and are in force: one execution that must see its own pid namespace, no
    /// host process, no network interface but loopback, and must be unable to mount. The error names what
    /// is missing.
    pub fn check(&self) -> Result<(), String> {
        let outcome = self.exec_cold(&ExecRequest { code: CHECK_PROGRAM.into(), ..Default::default() });
        if outcome.status == crate::Status::Ok && outcome.stdout == b"jailed\n" {
            return Ok(());
        }
        Err(match outcome.error {
            Some(e) => format!("the jail sandbox cannot run here: {e}"),
            None => format!(
                "the jail is not in force ({}): {}{}",
                outcome.status.as_str(),
                String::from_utf8_lossy(&outcome.stdout),
                String::from_utf8_lossy(&outcome.stderr)
            ),
        })
    }

    /// How many jails this sandbox has built so far (warm and cold): executions minus this is how many
    /// reused a warm jail.
    pub fn jails_started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Memory held by each idle warm jail (helper, init, zygote, and the prepared run's init and waiting
    /// program), in bytes: the sum of their proportional set sizes. `None` when no warm jail is ready.
    pub fn idle_jail_memory(&self) -> Option<u64> {
        let pool = self.pool.as_ref()?;
        let state = pool.state.lock().expect("pool lock");
        let jail = state.ready.front()?;
        // The helper and its descendants: the init, the zygote and the prepared run.
        crate::os::tree_proportional_set_size(jail.child.id() as i32)
    }

    /// Waits until the pool holds `pool_size` ready jails (or `timeout` passes).
    pub fn wait_warm(&self, timeout: Duration) -> bool {
        let Some(pool) = &self.pool else { return true };
        let state = pool.state.lock().expect("pool lock");
        let (state, _) = pool
            .changed
            .wait_timeout_while(state, timeout, |s| s.ready.len() < self.config.pool_size)
            .expect("pool lock");
        state.ready.len() >= self.config.pool_size
    }

    /// Runs one request in a freshly built jail, ignoring the pool.
    pub fn exec_cold(&self, request: &ExecRequest) -> Outcome {
        self.exec_cold_cancelable(request, &Cancel::new()).outcome
    }

    fn exec_cold_cancelable(&self, request: &ExecRequest, cancel: &Cancel) -> Ran {
        match WarmJail::start(&self.config, &self.started) {
            Ok(mut jail) => {
                let ran = jail.run(request, cancel);
                jail.close();
                ran
            }
            Err(e) => Ran::failed(e),
        }
    }

    /// Like [`Sandbox::exec_cancelable`], with the reason typed when the sandbox itself failed: `Err` where
    /// that outcome would be a `sandbox_error`, and its message is the error's text.
    pub fn try_exec(&self, request: &ExecRequest, cancel: &Cancel) -> Result<Outcome, JailError> {
        let Ran { outcome, failure, .. } = self.execute(request, cancel);
        failure.map_or(Ok(outcome), Err)
    }

    fn execute(&self, request: &ExecRequest, cancel: &Cancel) -> Ran {
        if cancel.is_canceled() {
            return Ran { outcome: Outcome::canceled(), reusable: true, failure: None };
        }
        let Some(pool) = &self.pool else { return self.exec_cold_cancelable(request, cancel) };
        let warm = pool.state.lock().expect("pool lock").ready.pop_front();
        let Some(mut jail) = warm else { return self.exec_cold_cancelable(request, cancel) };
        let ran = jail.run(request, cancel);
        pool.give_back(jail, ran.reusable);
        ran
    }
}

impl JailSandbox {
    /// Opens a session (see [`crate::session`]) in a warm jail when one is ready (the pool builds another),
    /// else in a new one; returns once its agent is ready.
    pub fn open_session(&self, spec: &SessionSpec) -> Result<Session, JailError> {
        let warm = self.pool.as_ref().and_then(|pool| pool.take());
        let jail = match warm {
            Some(jail) => jail,
            None => WarmJail::start(&self.config, &self.started)?,
        };
        let WarmJail { child, stdin, stdout } = jail;
        let mut input = stdin.lock().expect("stdin lock").take().ok_or(JailError::HelperEnded(String::new()))?;
        let line = serde_json::to_string(&SessionLine { session: spec.request() }).expect("requests serialise");
        writeln!(input, "{line}").map_err(JailError::Helper)?;
        Session::start(child, input, stdout.into_inner()).map_err(JailError::Session)
    }
}

impl Sandbox for JailSandbox {
    fn exec_cancelable(&self, request: &ExecRequest, cancel: &Cancel) -> Outcome {
        self.execute(request, cancel).outcome
    }
}

/// One execution, on the caller's side: the outcome, whether the jail can serve another, and, for a
/// `sandbox_error`, why.
struct Ran {
    outcome: Outcome,
    reusable: bool,
    failure: Option<JailError>,
}

impl Ran {
    fn failed(failure: JailError) -> Ran {
        Ran { outcome: Outcome::sandbox_error(error_chain(&failure)), reusable: false, failure: Some(failure) }
    }
}

impl Drop for JailSandbox {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.shutdown.store(true, Ordering::SeqCst);
            pool.changed.notify_all();
        }
        for handle in self.refillers.drain(..) {
            let _ = handle.join();
        }
        // Closing the ready jails' input makes each helper tear its jail down and exit.
        if let Some(pool) = &self.pool {
            for mut jail in pool.state.lock().expect("pool lock").ready.drain(..) {
                drop(jail.stdin.lock().expect("stdin lock").take());
                let _ = jail.child.wait();
            }
        }
    }
}

/// The program of [`JailSandbox::check`].
const CHECK_PROGRAM: &str = r#"import os, socket
assert os.getpid() == 2, f"pid {os.getpid()}: not in a fresh pid namespace"
pids = [p for p in os.listdir('/proc') if p.isdigit()]
assert sorted(pids, key=int) == ['1', '2'], f"host processes visible: {pids}"
ifaces = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
assert ifaces == ['lo'], f"network interfaces visible: {ifaces}"
try:
    socket.create_connection(('127.0.0.1', 9), timeout=1)
    raise AssertionError("network reachable")
except OSError:
    pass
print("jailed")
"#;

#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    changed: Condvar,
    shutdown: AtomicBool,
}

#[derive(Default)]
struct PoolState {
    /// Idle jails, the longest idle first: each prepares its next run after an execution, so the one idle
    /// longest is the most likely to have it ready.
    ready: VecDeque<WarmJail>,
    /// Jails of the pool alive: idle, running an execution, or being built.
    live: usize,
}

impl Pool {
    /// Takes a ready jail out of the pool for good (a session's); the refillers build its replacement.
    fn take(&self) -> Option<WarmJail> {
        let mut state = self.state.lock().expect("pool lock");
        let jail = state.ready.pop_front()?;
        state.live -= 1;
        self.changed.notify_all();
        Some(jail)
    }

    /// Takes a jail back after an execution: idle again if it can serve another, else closed (and replaced).
    fn give_back(&self, jail: WarmJail, reusable: bool) {
        let mut state = self.state.lock().expect("pool lock");
        if reusable && !self.shutdown.load(Ordering::SeqCst) {
            state.ready.push_back(jail);
        } else {
            state.live -= 1;
            jail.close();
        }
        self.changed.notify_all();
    }
}

/// Keeps the pool full: waits for a gap, prepares a jail, adds it. Backs off after a failure.
fn refill(pool: &Pool, config: &JailConfig, started: &AtomicUsize) {
    loop {
        {
            let state = pool.state.lock().expect("pool lock");
            let mut state = pool
                .changed
                .wait_while(state, |s| s.live >= config.pool_size && !pool.shutdown.load(Ordering::SeqCst))
                .expect("pool lock");
            if pool.shutdown.load(Ordering::SeqCst) {
                return;
            }
            state.live += 1;
        }
        let jail = WarmJail::start(config, started);
        let mut state = pool.state.lock().expect("pool lock");
        match jail {
            Ok(jail) if !pool.shutdown.load(Ordering::SeqCst) => state.ready.push_back(jail),
            Ok(jail) => {
                state.live -= 1;
                jail.close();
            }
            Err(_) => {
                state.live -= 1;
                drop(state);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        pool.changed.notify_all();
    }
}

/// Forwards what the helper and the jail's own processes write on stderr (a panic, a traceback of the
/// zygote while the jail is torn down) to this process's log, an event a line, so that the server's stderr
/// keeps its log format (`--log-format json`). A program's own output never comes here: it has its pipes.
fn forward_stderr(stderr: std::process::ChildStderr) {
    let forward = move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !line.trim().is_empty() {
                let line: String = line.chars().take(2_000).collect();
                tracing::warn!(target: "nova_sandbox::jail", "jail helper: {line}");
            }
        }
    };
    // Without the thread the pipe closes, and the helper's writes to it fail without harm.
    let _ = std::thread::Builder::new().name("nova-jail-stderr".into()).spawn(forward);
}

/// A helper process whose jail is built and whose zygote waits for the next execution.
struct WarmJail {
    child: Child,
    /// The helper's input. Closing it before the outcome arrives cancels the execution (see [`Cancel`]).
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    stdout: BufReader<ChildStdout>,
}

impl WarmJail {
    /// Starts a helper, sends it the setup and waits for `ready`: the jail built and its interpreter started.
    fn start(config: &JailConfig, started: &AtomicUsize) -> Result<WarmJail, JailError> {
        started.fetch_add(1, Ordering::SeqCst);
        let mut child = Command::new(&config.helper)
            .args(&config.helper_args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| JailError::StartHelper { helper: config.helper.clone(), source })?;
        if let Some(stderr) = child.stderr.take() {
            forward_stderr(stderr);
        }
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let setup = serde_json::to_string(&config.setup()).expect("setups serialise");
        let mut line = String::new();
        let sent = writeln!(stdin, "{setup}").and_then(|()| stdout.read_line(&mut line));
        let reply: SetupReply = serde_json::from_str(&line).unwrap_or_default();
        if sent.is_ok() && reply.ready {
            return Ok(WarmJail { child, stdin: Arc::new(Mutex::new(Some(stdin))), stdout });
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(match reply.failure {
            Some(failure) => JailError::Setup(failure.into_error()),
            None => JailError::HelperEnded(line),
        })
    }

    /// Sends the request and waits for the outcome and whether the jail can serve another execution (when
    /// not, the helper tears it down and exits).
    ///
    /// The helper watches its input while the program runs: `cancel` closes it, and the helper kills the
    /// jail and answers with a `canceled` outcome.
    fn run(&mut self, request: &ExecRequest, cancel: &Cancel) -> Ran {
        let line = serde_json::to_string(request).expect("requests serialise");
        let mut reply = String::new();
        let sent = match self.stdin.lock().expect("stdin lock").as_mut() {
            Some(stdin) => writeln!(stdin, "{line}"),
            None => Err(io::Error::other("the jail was closed")),
        };
        let stdin = self.stdin.clone();
        let registration = cancel.register(move || drop(stdin.lock().expect("stdin lock").take()));
        let result = sent.and_then(|()| self.stdout.read_line(&mut reply));
        drop(registration);
        let open = self.stdin.lock().expect("stdin lock").is_some();
        match result.map(|_| serde_json::from_str::<Reply>(&reply)) {
            Ok(Ok(Reply { outcome, reusable, failure })) => {
                let failure = failure.map(|failure| JailError::Run(failure.into_error()));
                Ran { outcome, reusable: reusable && open, failure }
            }
            Ok(Err(e)) => Ran::failed(JailError::UnreadableOutcome(e)),
            Err(e) => Ran::failed(JailError::Helper(e)),
        }
    }

    /// Ends the jail: the helper tears it down once its input closes. The helper removes the jail's cgroup
    /// on its way out; it is reaped off the caller's path.
    fn close(self) {
        drop(self.stdin.lock().expect("stdin lock").take());
        let mut child = self.child;
        std::thread::spawn(move || child.wait());
    }
}
