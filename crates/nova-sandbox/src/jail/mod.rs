//! The `jail` backend: one fresh set of namespaces per execution, built by a helper process (see
//! [`helper_main`]), optionally prepared ahead of time in a warm pool.

mod cgroup;
mod helper;
mod seccomp;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use helper::{helper_main, Setup, SetupError};

use crate::{Cancel, ExecRequest, Limits, Outcome, Sandbox};

/// How to start jails: which helper to run and what to bind.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// The program that runs [`helper_main`]: the `nova` binary itself.
    pub helper: PathBuf,
    /// Arguments that make it do so (`["__jail"]` for `nova`).
    pub helper_args: Vec<String>,
    /// The interpreter and what it needs bound.
    pub python: PythonRuntime,
    /// Jails kept ready with the interpreter started; 0 turns the pool off (every execution is cold).
    pub pool_size: usize,
    /// Limits warm jails are built with (a request's own limits replace them before its code runs).
    pub warm_limits: Limits,
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
    /// Finds the interpreter `python` (a name on `PATH` or a path; `python3` by default) and what to bind
    /// for it, by asking it once. `NOVA_SANDBOX_PYTHON` overrides the default.
    pub fn detect(python: Option<&Path>) -> io::Result<PythonRuntime> {
        let name = python
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("NOVA_SANDBOX_PYTHON").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("python3"));
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
    /// A configuration that runs `helper helper_args...` with the detected host Python and no pool.
    pub fn detect(helper: impl Into<PathBuf>, helper_args: &[&str]) -> io::Result<JailConfig> {
        Ok(JailConfig {
            helper: helper.into(),
            helper_args: helper_args.iter().map(|s| s.to_string()).collect(),
            python: PythonRuntime::detect(None)?,
            pool_size: 0,
            warm_limits: Limits::default(),
        })
    }

    fn setup(&self) -> Setup {
        Setup {
            python: self.python.executable.clone(),
            python_path: self.python.site_packages.clone(),
            binds: self.python.binds.clone(),
            limits: self.warm_limits,
        }
    }
}

/// The jail sandbox. Cheap to share (`Arc`); `exec` may be called from many threads at once.
pub struct JailSandbox {
    config: Arc<JailConfig>,
    pool: Option<Arc<Pool>>,
    refillers: Vec<JoinHandle<()>>,
}

impl JailSandbox {
    /// Starts the sandbox (and its pool's refill threads when `pool_size > 0`). Does not check the kernel:
    /// call [`JailSandbox::check`] for that.
    pub fn new(config: JailConfig) -> JailSandbox {
        let config = Arc::new(config);
        let mut refillers = Vec::new();
        let pool = (config.pool_size > 0).then(|| {
            let pool = Arc::new(Pool::default());
            // Two preparers: preparing a jail is mostly the interpreter's start-up, one core each.
            for _ in 0..config.pool_size.min(2) {
                let (pool, config) = (pool.clone(), config.clone());
                refillers.push(std::thread::spawn(move || refill(&pool, &config)));
            }
            pool
        });
        JailSandbox { config, pool, refillers }
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

    /// Memory held by each idle warm jail (helper, init and waiting interpreter), in bytes: the sum of their
    /// proportional set sizes. `None` when no warm jail is ready.
    pub fn idle_jail_memory(&self) -> Option<u64> {
        let pool = self.pool.as_ref()?;
        let ready = pool.ready.lock().expect("pool lock");
        let jail = ready.front()?;
        let helper = jail.child.id() as i32;
        let mut total = crate::os::proportional_set_size(helper)?;
        // The helper's descendants: the init and the interpreter.
        let mut pids = vec![helper];
        while let Some(pid) = pids.pop() {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                total += crate::os::proportional_set_size(child).unwrap_or(0);
                pids.push(child);
            }
        }
        Some(total)
    }

    /// Waits until the pool holds `pool_size` ready jails (or `timeout` passes).
    pub fn wait_warm(&self, timeout: Duration) -> bool {
        let Some(pool) = &self.pool else { return true };
        let ready = pool.ready.lock().expect("pool lock");
        let (ready, _) =
            pool.changed.wait_timeout_while(ready, timeout, |r| r.len() < self.config.pool_size).expect("pool lock");
        ready.len() >= self.config.pool_size
    }

    /// Runs one request in a freshly built jail, ignoring the pool.
    pub fn exec_cold(&self, request: &ExecRequest) -> Outcome {
        self.exec_cold_cancelable(request, &Cancel::new())
    }

    fn exec_cold_cancelable(&self, request: &ExecRequest, cancel: &Cancel) -> Outcome {
        match WarmJail::start(&self.config) {
            Ok(jail) => jail.run(request, cancel),
            Err(e) => Outcome::sandbox_error(e),
        }
    }
}

impl Sandbox for JailSandbox {
    fn exec_cancelable(&self, request: &ExecRequest, cancel: &Cancel) -> Outcome {
        if cancel.is_canceled() {
            return Outcome::canceled();
        }
        let warm = self.pool.as_ref().and_then(|pool| {
            let jail = pool.ready.lock().expect("pool lock").pop_front();
            pool.changed.notify_all();
            jail
        });
        match warm {
            Some(jail) => jail.run(request, cancel),
            None => self.exec_cold_cancelable(request, cancel),
        }
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
            for mut jail in pool.ready.lock().expect("pool lock").drain(..) {
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
    ready: Mutex<VecDeque<WarmJail>>,
    changed: Condvar,
    shutdown: AtomicBool,
}

/// Keeps the pool full: waits for a gap, prepares a jail, adds it. Backs off after a failure.
fn refill(pool: &Pool, config: &JailConfig) {
    loop {
        {
            let ready = pool.ready.lock().expect("pool lock");
            let ready = pool
                .changed
                .wait_while(ready, |r| r.len() >= config.pool_size && !pool.shutdown.load(Ordering::SeqCst))
                .expect("pool lock");
            drop(ready);
        }
        if pool.shutdown.load(Ordering::SeqCst) {
            return;
        }
        match WarmJail::start(config) {
            Ok(jail) => {
                let mut ready = pool.ready.lock().expect("pool lock");
                if ready.len() < config.pool_size && !pool.shutdown.load(Ordering::SeqCst) {
                    ready.push_back(jail);
                }
                pool.changed.notify_all();
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// A helper process whose jail is built and whose interpreter waits for its code.
struct WarmJail {
    child: Child,
    /// The helper's input. Closing it before the outcome arrives cancels the execution (see [`Cancel`]).
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    stdout: BufReader<ChildStdout>,
}

impl WarmJail {
    /// Starts a helper, sends it the setup and waits for `ready`: the jail built and its interpreter started.
    fn start(config: &JailConfig) -> Result<WarmJail, String> {
        let mut child = Command::new(&config.helper)
            .args(&config.helper_args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the jail helper {}: {e}", config.helper.display()))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let setup = serde_json::to_string(&config.setup()).expect("setups serialise");
        let mut line = String::new();
        let sent = writeln!(stdin, "{setup}").and_then(|()| stdout.read_line(&mut line));
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if sent.is_ok() && reply["ready"] == true {
            return Ok(WarmJail { child, stdin: Arc::new(Mutex::new(Some(stdin))), stdout });
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(match reply["error"].as_str() {
            Some(e) => format!("jail setup failed: {e}"),
            None => format!("jail helper ended during setup: {line:?}"),
        })
    }

    /// Sends the request and waits for the outcome; the helper then tears the jail down and exits.
    ///
    /// The helper watches its input while the program runs: `cancel` closes it, and the helper kills the
    /// jail and answers with a `canceled` outcome.
    fn run(mut self, request: &ExecRequest, cancel: &Cancel) -> Outcome {
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
        drop(self.stdin.lock().expect("stdin lock").take());
        // The helper removes the jail's cgroup after answering; reap it off the caller's path.
        let mut child = self.child;
        std::thread::spawn(move || child.wait());
        match result {
            Ok(_) => serde_json::from_str(&reply)
                .unwrap_or_else(|e| Outcome::sandbox_error(format!("unreadable outcome from the jail helper: {e}"))),
            Err(e) => Outcome::sandbox_error(format!("talking to the jail helper: {e}")),
        }
    }
}
