//! Confined helper processes for work on untrusted input that is not a program: parsing a document.
//!
//! A parser bug on hostile input (a stack overflow, an abort, memory without end, a loop) must cost that one
//! input, never the process that serves the API and schedules jobs: `catch_unwind` cannot catch a stack
//! overflow or an allocation failure. So the work runs in a child process, the caller's binary started
//! again with arguments of its own, which calls [`serve`] and answers requests one at a time. [`HelperPool`]
//! keeps such processes warm and hands each request to an idle one.
//!
//! Each helper runs confined: an address-space limit (its memory), a CPU-time budget per request, no core files, no
//! file writes (`RLIMIT_FSIZE` 0 and, where the kernel has Landlock, a ruleset that allows writing `/dev/null`
//! only), no socket but a Unix one (seccomp: the jail's allow list, with Unix sockets only), `no_new_privs`, and
//! death with its parent. The pool adds a wall-clock deadline per request and a cap on the answer's size. When a
//! helper dies, the pool tells why from its exit status and the last lines it wrote on stderr ([`CallError`]), and
//! the next request gets a fresh helper.
//!
//! The protocol on the helper's stdin and stdout: a request is its length (8 bytes, little-endian), its CPU
//! budget in seconds (4 bytes) and its bytes; an answer is its length and its bytes. The helper's stderr goes
//! into this process's log, a line an event.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::os;

/// How to start a helper: a program (usually this binary) and the arguments that make it call [`serve`].
#[derive(Debug, Clone)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The helper's whole environment: nothing else is passed on (no credentials of this process).
    pub env: Vec<(OsString, OsString)>,
}

/// The limits of each helper and of each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelperLimits {
    /// The helper's address space, in bytes (`RLIMIT_AS`); what it spawns inherits the same limit.
    pub memory_bytes: u64,
    /// CPU time one request may use, in seconds (the helper's own, not its subprocesses').
    pub cpu_seconds: u32,
    /// Wall-clock time one request may take before the helper is killed.
    pub wall: Duration,
    /// The largest answer taken.
    pub max_answer_bytes: u64,
    /// Requests a helper serves before it is replaced, so that one large input's heap does not stay.
    pub requests_per_helper: u32,
    /// Idle helpers kept ready.
    pub warm: usize,
    /// Helpers at work at once; more requests wait for one to finish, so a flood of documents cannot start
    /// a process each.
    pub max_busy: usize,
}

impl Default for HelperLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 1024 * 1024 * 1024,
            cpu_seconds: 120,
            wall: Duration::from_secs(600),
            max_answer_bytes: 64 * 1024 * 1024,
            requests_per_helper: 500,
            warm: 1,
            max_busy: std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
        }
    }
}

/// Why a request got no answer. The helper that served it is gone in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The helper died on the request: a crash, an abort, a stack overflow.
    #[error("the helper process crashed ({detail})")]
    Crashed { detail: String },
    /// The helper ran out of its address space.
    #[error("the helper process exceeded its memory limit of {limit_mib} MiB")]
    MemoryLimit { limit_mib: u64 },
    /// The request used more CPU time than its budget.
    #[error("the helper process used more than its {seconds} s of CPU time")]
    CpuLimit { seconds: u32 },
    /// The request took longer than the wall-clock limit.
    #[error("the helper process took longer than {seconds} s")]
    Timeout { seconds: u64 },
    /// The answer was larger than the cap.
    #[error("the helper's answer is larger than {limit} bytes")]
    AnswerTooLarge { limit: u64 },
    /// No helper could be started (the program is missing, or the machine is out of processes).
    #[error("no helper process could be started: {reason}")]
    Unavailable { reason: String },
}

/// Helper processes kept warm, each serving one request at a time. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct HelperPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    limits: HelperLimits,
    idle: Mutex<VecDeque<Helper>>,
    /// Helpers at work now, and a signal when one is done (see [`HelperLimits::max_busy`]).
    busy: Mutex<usize>,
    done: Condvar,
    /// Asks the spawning thread for a new helper.
    spawn: Mutex<mpsc::Sender<mpsc::Sender<Result<Helper, CallError>>>>,
}

impl HelperPool {
    /// A pool whose helpers are started on a thread of its own, which lives as long as the pool: a helper
    /// dies with the thread that started it (`PR_SET_PDEATHSIG` follows the thread, not the process), so no
    /// short-lived thread may start one.
    pub fn new(command: HelperCommand, limits: HelperLimits) -> Self {
        let (spawn, requests) = mpsc::channel::<mpsc::Sender<Result<Helper, CallError>>>();
        let spawner = move || {
            for reply in requests {
                let _ = reply.send(Helper::start(&command, &limits));
            }
        };
        if let Err(e) = std::thread::Builder::new().name("nova-helper-spawn".into()).spawn(spawner) {
            tracing::error!(target: "nova_sandbox::confined", error = %e, "the helper spawning thread did not start");
        }
        Self {
            inner: Arc::new(PoolInner {
                limits,
                idle: Mutex::new(VecDeque::new()),
                busy: Mutex::new(0),
                done: Condvar::new(),
                spawn: Mutex::new(spawn),
            }),
        }
    }

    /// A new helper, from the spawning thread.
    fn start(&self) -> Result<Helper, CallError> {
        let (reply, answer) = mpsc::channel();
        let unavailable = || CallError::Unavailable { reason: "the helper spawning thread has stopped".into() };
        self.inner.spawn.lock().unwrap_or_else(|e| e.into_inner()).send(reply).map_err(|_| unavailable())?;
        answer.recv().map_err(|_| unavailable())?
    }

    pub fn limits(&self) -> &HelperLimits {
        &self.inner.limits
    }

    /// Starts helpers until [`HelperLimits::warm`] are idle, on a thread of its own; a helper that cannot
    /// start is logged, and the next request tries again.
    pub fn warm_up(&self) {
        let pool = self.clone();
        let _ = std::thread::Builder::new().name("nova-helper-warm".into()).spawn(move || pool.fill());
    }

    /// Sends `request` to an idle helper (started if none is) and waits for its answer. Blocks: call it from
    /// a blocking thread.
    pub fn call(&self, request: &[u8]) -> Result<Vec<u8>, CallError> {
        let _slot = self.busy_slot();
        let mut helper = match self.take_idle() {
            Some(helper) => helper,
            None => self.start()?,
        };
        let limits = &self.inner.limits;
        let answer = helper.send(request, limits.cpu_seconds).and_then(|()| {
            helper.answers.recv_timeout(limits.wall).map_err(|e| match e {
                RecvTimeoutError::Timeout => Failure::Deadline,
                RecvTimeoutError::Disconnected => Failure::Died,
            })?
        });
        match answer {
            Ok(answer) => {
                helper.served += 1;
                if helper.served < limits.requests_per_helper {
                    self.put_idle(helper);
                } else {
                    helper.retire();
                }
                self.refill();
                Ok(answer)
            }
            Err(failure) => {
                let error = helper.fail(failure, limits);
                tracing::warn!(target: "nova_sandbox::confined", error = %error, "a helper process failed");
                self.refill();
                Err(error)
            }
        }
    }

    /// Waits until fewer than [`HelperLimits::max_busy`] helpers are at work, and counts this caller in until
    /// the guard drops.
    fn busy_slot(&self) -> BusySlot<'_> {
        let max = self.inner.limits.max_busy.max(1);
        let mut busy = self.inner.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= max {
            busy = self.inner.done.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        BusySlot(&self.inner)
    }

    fn take_idle(&self) -> Option<Helper> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut helper) = idle.pop_front() {
            // A helper that died while idle (killed from outside) is no one's failure: start another.
            if matches!(helper.child.try_wait(), Ok(None)) {
                return Some(helper);
            }
            helper.retire();
        }
        None
    }

    fn put_idle(&self, helper: Helper) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.inner.limits.warm.max(1) * 4 {
            idle.push_back(helper);
        } else {
            drop(idle);
            helper.retire();
        }
    }

    /// Keeps the warm count up after a helper left the pool, in the background.
    fn refill(&self) {
        let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()).len();
        if idle < self.inner.limits.warm {
            self.warm_up();
        }
    }

    fn fill(&self) {
        loop {
            let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()).len();
            if idle >= self.inner.limits.warm {
                return;
            }
            match self.start() {
                Ok(helper) => self.put_idle(helper),
                Err(e) => {
                    tracing::warn!(target: "nova_sandbox::confined", error = %e, "a helper process did not start");
                    return;
                }
            }
        }
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner());
        for helper in idle.drain(..) {
            helper.retire();
        }
    }
}

/// A caller's place among the helpers at work; dropping it lets the next one in.
struct BusySlot<'a>(&'a PoolInner);

impl Drop for BusySlot<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.done.notify_one();
    }
}

/// What went wrong with a request, before the helper's exit tells why.
enum Failure {
    /// Its stdin or stdout broke, or it answered garbage.
    Died,
    Deadline,
    TooLarge,
}

/// What the stdout reader thread passes on.
type Answer = Result<Vec<u8>, Failure>;

/// One helper process.
struct Helper {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<Answer>,
    /// The last lines of its stderr; and a signal once stderr has ended.
    stderr_tail: Arc<Mutex<String>>,
    stderr_done: Receiver<()>,
    served: u32,
}

/// How much of a helper's stderr is kept to tell why it died.
const STDERR_TAIL_BYTES: usize = 4096;

impl Helper {
    fn start(command: &HelperCommand, limits: &HelperLimits) -> Result<Helper, CallError> {
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args)
            .env_clear()
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        os::limit_and_die_with_parent(
            &mut cmd,
            vec![(libc::RLIMIT_AS, limits.memory_bytes), (libc::RLIMIT_CORE, 0), (libc::RLIMIT_FSIZE, 0)],
        );
        let mut child = cmd
            .spawn()
            .map_err(|e| CallError::Unavailable { reason: format!("starting {}: {e}", command.program.display()) })?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CallError::Unavailable { reason: "the helper's pipes were not set up".into() });
        };
        let (answer_tx, answers) = mpsc::channel();
        let max_answer = limits.max_answer_bytes;
        let reader = move || {
            let mut stdout = BufReader::new(stdout);
            loop {
                let answer = read_answer(&mut stdout, max_answer);
                let last = answer.is_err();
                if answer_tx.send(answer).is_err() || last {
                    return;
                }
            }
        };
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        let tail = stderr_tail.clone();
        let forward = move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let line: String = line.chars().take(2_000).collect();
                tracing::warn!(target: "nova_sandbox::confined", "helper: {line}");
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                tail.push_str(&line);
                tail.push('\n');
                if tail.len() > STDERR_TAIL_BYTES {
                    let cut = tail.len() - STDERR_TAIL_BYTES;
                    let cut = (cut..tail.len()).find(|&i| tail.is_char_boundary(i)).unwrap_or(tail.len());
                    tail.drain(..cut);
                }
            }
            let _ = done_tx.send(());
        };
        let spawned = std::thread::Builder::new()
            .name("nova-helper-out".into())
            .spawn(reader)
            .and_then(|_| std::thread::Builder::new().name("nova-helper-err".into()).spawn(forward));
        if let Err(e) = spawned {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CallError::Unavailable { reason: format!("starting the helper's reader threads: {e}") });
        }
        Ok(Helper { child, stdin, answers, stderr_tail, stderr_done, served: 0 })
    }

    fn send(&mut self, request: &[u8], cpu_seconds: u32) -> Result<(), Failure> {
        let mut frame = Vec::with_capacity(12);
        frame.extend_from_slice(&(request.len() as u64).to_le_bytes());
        frame.extend_from_slice(&cpu_seconds.to_le_bytes());
        self.stdin
            .write_all(&frame)
            .and_then(|()| self.stdin.write_all(request))
            .and_then(|()| self.stdin.flush())
            .map_err(|_| Failure::Died)
    }

    /// Ends a helper after a failed request and says why it failed.
    fn fail(mut self, failure: Failure, limits: &HelperLimits) -> CallError {
        let _ = self.child.kill();
        let status = self.child.wait();
        // Its stderr ends with it (unless a subprocess of its own still holds the pipe: then not for long).
        let _ = self.stderr_done.recv_timeout(Duration::from_secs(2));
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match failure {
            Failure::Deadline => return CallError::Timeout { seconds: limits.wall.as_secs() },
            Failure::TooLarge => return CallError::AnswerTooLarge { limit: limits.max_answer_bytes },
            Failure::Died => {}
        }
        let signal = status.as_ref().ok().and_then(|s| s.signal());
        if signal == Some(libc::SIGXCPU) {
            return CallError::CpuLimit { seconds: limits.cpu_seconds };
        }
        if tail.contains("memory allocation of") {
            return CallError::MemoryLimit { limit_mib: limits.memory_bytes / (1024 * 1024) };
        }
        let detail = if tail.contains("has overflowed its stack") {
            "stack overflow".to_string()
        } else {
            match (&status, signal) {
                (_, Some(signal)) => format!("killed by signal {signal} ({})", signal_name(signal)),
                (Ok(status), None) => match status.code() {
                    Some(code) => format!("exited with code {code}"),
                    None => "ended".to_string(),
                },
                (Err(e), None) => format!("its exit status is unknown: {e}"),
            }
        };
        CallError::Crashed { detail }
    }

    /// Ends an idle helper: its input closes, and it exits.
    fn retire(mut self) {
        drop(self.stdin);
        // It exits on its own when its input ends; reap it off this thread so no caller waits on it.
        let _ = std::thread::Builder::new().name("nova-helper-reap".into()).spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        });
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        libc::SIGTERM => "SIGTERM",
        _ => "another signal",
    }
}

/// Reads one answer frame.
fn read_answer(stdout: &mut impl Read, max: u64) -> Answer {
    let mut len = [0u8; 8];
    stdout.read_exact(&mut len).map_err(|_| Failure::Died)?;
    let len = u64::from_le_bytes(len);
    if len > max {
        return Err(Failure::TooLarge);
    }
    let mut answer = vec![0u8; len as usize];
    stdout.read_exact(&mut answer).map_err(|_| Failure::Died)?;
    Ok(answer)
}

/// The helper's side: confines this process, then answers requests from stdin with `handle` until stdin
/// ends. Call it first thing in the helper's `main`, before any other thread exists. Never returns.
///
/// A setup step that fails ends the helper with exit code 70 and a line on stderr, so the pool reports a
/// helper that does not start rather than running one unconfined.
pub fn serve(mut handle: impl FnMut(&[u8]) -> Vec<u8>) -> ! {
    // Stray prints of libraries must not corrupt the answers: the protocol gets its own copy of stdout, and
    // descriptor 1 becomes stderr.
    let out = match confine_and_take_stdout() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("nova helper: {e}");
            std::process::exit(70);
        }
    };
    let mut out = std::io::BufWriter::new(std::fs::File::from(out));
    let mut input = BufReader::new(std::io::stdin().lock());
    loop {
        let mut header = [0u8; 12];
        if input.read_exact(&mut header).is_err() {
            std::process::exit(0);
        }
        let len = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
        let cpu_seconds = u32::from_le_bytes(header[8..].try_into().unwrap_or_default());
        let mut request = Vec::new();
        if (&mut input).take(len).read_to_end(&mut request).map_or(true, |n| n as u64 != len) {
            std::process::exit(0);
        }
        if let Err(e) = set_cpu_budget(cpu_seconds) {
            eprintln!("nova helper: setting the CPU budget: {e}");
            std::process::exit(70);
        }
        let answer = handle(&request);
        drop(request);
        let written = out
            .write_all(&(answer.len() as u64).to_le_bytes())
            .and_then(|()| out.write_all(&answer))
            .and_then(|()| out.flush());
        if written.is_err() {
            std::process::exit(0);
        }
    }
}

/// The confinement steps of [`serve`], in order.
fn confine_and_take_stdout() -> Result<std::os::fd::OwnedFd, String> {
    use std::os::fd::AsFd;
    let out = std::io::stdout().as_fd().try_clone_to_owned().map_err(|e| format!("copying stdout: {e}"))?;
    os::dup2(&std::io::stderr(), 1).map_err(|e| format!("pointing stdout at stderr: {e}"))?;
    os::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))?;
    // Landlock is a second line behind RLIMIT_FSIZE: where the kernel lacks it, or a container's own filter
    // refuses its calls, the helper goes on without it.
    if let Err(e) = no_writes() {
        eprintln!("nova helper: no Landlock ruleset ({e}); file writes are stopped by RLIMIT_FSIZE alone");
    }
    crate::jail::seccomp::compile_for_helper().and_then(|filters| filters.install())?;
    Ok(out)
}

/// Landlock, where the kernel has it: no file may be written, created, renamed or removed (but `/dev/null`
/// written), and no TCP.
fn no_writes() -> Result<(), landlock::RulesetError> {
    use landlock::{path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, ABI};
    let abi = ABI::V5;
    Ruleset::default()
        .handle_access(AccessFs::from_write(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(["/dev/null"], AccessFs::WriteFile))?
        .restrict_self()?;
    Ok(())
}

/// Lets this request use `seconds` of CPU time from now: the soft `RLIMIT_CPU` moves up by as much (the
/// kernel sends `SIGXCPU` past it, which ends the helper).
fn set_cpu_budget(seconds: u32) -> io::Result<()> {
    let used = os::cpu_time_self()?.as_secs();
    os::set_rlimit(0, libc::RLIMIT_CPU, used + u64::from(seconds.max(1)) + 1, libc::RLIM_INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper that speaks the protocol without confining itself: it answers each request with its pid.
    const ECHO_PID: &str = "import os, sys\n\
        inp, out = sys.stdin.buffer, sys.stdout.buffer\n\
        while True:\n\
        \x20   head = inp.read(12)\n\
        \x20   if len(head) < 12: break\n\
        \x20   inp.read(int.from_bytes(head[:8], 'little'))\n\
        \x20   answer = str(os.getpid()).encode()\n\
        \x20   out.write(len(answer).to_bytes(8, 'little') + answer)\n\
        \x20   out.flush()\n";

    #[test]
    fn callers_past_max_busy_wait_for_a_helper_instead_of_starting_one() {
        let command = HelperCommand {
            program: "python3".into(),
            args: vec!["-c".into(), ECHO_PID.into()],
            env: std::env::vars_os().filter(|(k, _)| k == "PATH").collect(),
        };
        let pool = HelperPool::new(command, HelperLimits { warm: 0, max_busy: 1, ..HelperLimits::default() });
        let start = std::sync::Barrier::new(4);
        let pids: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        pool.call(b"request").expect("the helper answers")
                    })
                })
                .collect();
            calls.into_iter().map(|c| c.join().expect("the call returned")).collect()
        });
        // Four callers at once, one allowed at work: each waited for the one helper to be free again.
        assert!(pids.iter().all(|pid| pid == &pids[0]), "one helper served all: {pids:?}");
    }
}
