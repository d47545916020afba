//! Inside the jail: its pid 1 (a copy of the helper) and the interpreter it starts, confined and waiting for
//! its code.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nova_core::error_chain;
use serde::{Deserialize, Serialize};

use super::files::{collect_files, write_input};
use super::root::{build_root, open_binds};
use super::{seccomp, InitError, InsideEnds, Setup, Step};
use crate::os::{self, pid_t, Forked};
use crate::{InputFile, Limits, OutputFile};

/// The jail's pid 1. Never returns.
pub(super) fn init_main(setup: &Setup, filters: &seccomp::Filters, root: &Path, ends: InsideEnds) -> ! {
    let InsideEnds { mut sync, control, mut report, stdin, stdout, stderr, code } = ends;
    // Die with the helper.
    let _ = os::set_parent_death_signal(libc::SIGKILL);
    // Handles on everything to bind, opened in our new mount namespace while our credentials are still the
    // helper's (so a runtime under a private directory such as /root/.pyenv can be reached).
    let result = open_binds(&setup.binds)
        .and_then(|binds| build_root(setup, &binds, root, &mut sync))
        .and_then(|()| start_interpreter(setup, filters, [stdin, stdout, stderr, code]));
    let python = match result {
        Ok(pid) => pid,
        Err(e) => {
            let _ = writeln!(report, "error: {}", error_chain(&e).replace('\n', " "));
            os::exit_now(1)
        }
    };
    if writeln!(report, "ready").is_err() {
        os::exit_now(1);
    }
    serve(python, control, report)
}

/// The Python bootstrap: says it has started by closing fd 4 after one byte, reads
/// `<10-digit env length><env as K=V\0...><code>` from fd 3, then runs the code as `__main__` with the work
/// directory first on `sys.path`.
const BOOTSTRAP: &str = r#"import os, sys, atexit
os.write(4, b'r'); os.close(4)
_f = open(3, 'rb'); _b = _f.read(); _f.close()
_n = int(_b[:10]); _e = _b[10:10 + _n]; _s = _b[10 + _n:]; _kv = _k = _v = b''
os.environ.clear()
for _kv in _e.split(b'\0'):
    if _kv:
        _k, _, _v = _kv.partition(b'=')
        os.environ[_k.decode()] = _v.decode()
sys.argv = ['main.py']
sys.path[:0] = ['/work']
sys.path += os.environ.pop('NOVA_PYTHONPATH_', '').split(':')
_c = compile(_s, '/work/main.py', 'exec')
_g = {'__name__': '__main__', '__file__': '/work/main.py', '__builtins__': __builtins__}
del _f, _b, _n, _e, _s, _kv, _k, _v
try:
    exec(_c, _g)
    _code = 0
except SystemExit as _x:
    _code = _x.code if isinstance(_x.code, int) else (0 if _x.code is None else 1)
    if not isinstance(_x.code, int) and _x.code is not None:
        print(_x.code, file=sys.stderr)
except BaseException:
    sys.excepthook(*sys.exc_info())
    _code = 1
# A normal exit's work (threads joined, atexit handlers, flushed output) without tearing the interpreter
# down object by object, which is most of a short program's exit time.
if 'threading' in sys.modules:
    sys.modules['threading']._shutdown()
atexit._run_exitfuncs()
# Drop the program's globals so objects it left open (files, buffered writers) are finalised and flushed.
try:
    _g.clear()
except BaseException:
    pass
for _stream in (sys.stdout, sys.stderr):
    try:
        _stream.flush()
    except Exception:
        pass
os._exit(_code & 0xff)
"#;

/// Forks the interpreter, confined, and returns its pid (inside the namespace) once it has finished starting
/// and waits on fd 3 for its code: a warm jail's interpreter costs no start-up time, nor CPU, at dispatch.
fn start_interpreter(setup: &Setup, filters: &seccomp::Filters, fds: [OwnedFd; 4]) -> Result<pid_t, InitError> {
    let (status_r, status_w) = os::pipe().step("creating the exec status pipe")?;
    let (started_r, started_w) = os::pipe().step("creating the start-up pipe")?;
    let [stdin, stdout, stderr, code] = fds;
    let fds = [stdin, stdout, stderr, code, started_w];
    match os::fork().step("forking the interpreter")? {
        Forked::Child => {
            drop((status_r, started_r));
            let err = confine_and_exec(setup, filters, fds);
            let mut status = File::from(status_w);
            let _ = write!(status, "{}", error_chain(&err));
            os::exit_now(127)
        }
        Forked::Parent { child } => {
            drop(status_w);
            drop(fds);
            // The status pipe closes on a successful exec; anything written is the step that failed.
            let mut message = String::new();
            let _ = File::from(status_r).read_to_string(&mut message);
            if !message.is_empty() {
                return Err(InitError { step: "starting the interpreter", source: io::Error::other(message) });
            }
            let mut started = [0u8; 1];
            match File::from(started_r).read(&mut started) {
                Ok(1) => Ok(child),
                _ => Err(InitError {
                    step: "starting the interpreter",
                    source: io::Error::other("the interpreter exited during its start-up"),
                }),
            }
        }
    }
}

/// The interpreter's last steps before exec, in the order that lets each one still be done.
fn confine_and_exec(setup: &Setup, filters: &seccomp::Filters, fds: [OwnedFd; 5]) -> InitError {
    let run = || -> Result<std::convert::Infallible, InitError> {
        // Its own session: no controlling terminal, one process group.
        os::setsid().step("starting a new session")?;
        // stdin, stdout, stderr, the code pipe and the start-up pipe on 0-4; everything else closes on exec.
        for (slot, fd) in fds.iter().enumerate() {
            os::dup2(fd, slot as i32).step("placing the standard descriptors")?;
        }
        os::cloexec_from(5).step("closing inherited descriptors on exec")?;
        std::env::set_current_dir("/work").step("entering /work")?;
        os::reset_signals();
        // Landlock: read-only everywhere, writable /work, /tmp and /dev (for /dev/null); no TCP.
        landlock().map_err(|e| InitError { step: "applying Landlock", source: io::Error::other(e) })?;
        // No capability, ever again, and no privilege gain through exec.
        os::drop_all_capabilities().step("dropping capabilities")?;
        os::set_no_new_privs().step("setting no_new_privs")?;
        // The syscall filter, last.
        seccomp::install(filters).map_err(|e| InitError { step: "installing seccomp", source: io::Error::other(e) })?;
        let program = CString::new(setup.python.as_os_str().as_bytes()).expect("no NUL in the interpreter path");
        // argv[0] is the full path: the interpreter finds its prefix (and standard library) from it.
        let args: Vec<CString> = std::iter::once(program.clone())
            .chain(["-I", "-S", "-B", "-c", BOOTSTRAP].iter().map(|a| CString::new(*a).expect("no NUL")))
            .collect();
        let env = base_env(setup);
        Err(InitError { step: "executing the interpreter", source: os::execve(&program, &args, &env) })
    };
    match run() {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn base_env(setup: &Setup) -> Vec<CString> {
    let python_path: Vec<String> = setup.python_path.iter().map(|p| p.display().to_string()).collect();
    ["PATH=/usr/local/bin:/usr/bin:/bin".to_owned(), "HOME=/work".to_owned(), "LANG=C.UTF-8".to_owned()]
        .into_iter()
        .chain([format!("NOVA_PYTHONPATH_={}", python_path.join(":"))])
        .map(|s| CString::new(s).expect("no NUL"))
        .collect()
}

fn landlock() -> Result<(), landlock::RulesetError> {
    use landlock::{path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, ABI};
    let abi = ABI::V5;
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(["/work", "/tmp"], AccessFs::from_all(abi)))?
        .add_rules(path_beneath_rules(["/dev"], AccessFs::from_read(abi) | AccessFs::WriteFile))?
        .restrict_self()?;
    Ok(())
}

fn set_rlimits(pid: pid_t, limits: &Limits) -> io::Result<()> {
    let cpu_seconds = limits.cpu_ms.div_ceil(1000).max(1);
    // SIGXCPU at the limit, SIGKILL a second later for a program that ignores it.
    os::set_rlimit(pid, libc::RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)?;
    for (resource, value) in [
        (libc::RLIMIT_FSIZE, limits.work_bytes),
        (libc::RLIMIT_NOFILE, 256),
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_MEMLOCK, 0),
        (libc::RLIMIT_MSGQUEUE, 0),
    ] {
        os::set_rlimit(pid, resource, value, value)?;
    }
    Ok(())
}

/// What the init sends once the program is over.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Report {
    /// Raw wait status of the interpreter.
    pub(super) status: i32,
    pub(super) cpu_us: u64,
    pub(super) max_rss_bytes: u64,
    pub(super) files: Vec<OutputFile>,
    pub(super) files_truncated: bool,
}

/// What the helper sends the init before the code: the request's limits and input files.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Dispatch {
    pub(super) limits: Limits,
    /// The jail was built with these limits already: nothing to re-apply.
    pub(super) same_limits: bool,
    pub(super) files: Vec<InputFile>,
}

/// The init's life after setup: take one dispatch, wait for the interpreter, kill the rest, report.
fn serve(python: pid_t, control: File, mut report: File) -> ! {
    let mut control = BufReader::new(control);
    let mut line = String::new();
    if control.read_line(&mut line).unwrap_or(0) == 0 {
        os::exit_now(0);
    }
    let dispatch = serde_json::from_str::<Dispatch>(&line).map_err(io::Error::from).step("reading the dispatch");
    let applied = dispatch.and_then(|d| apply_dispatch(python, &d).map(|()| d.limits.output_files_bytes));
    let files_budget = match applied {
        Ok(budget) => {
            if writeln!(report, "ok").is_err() {
                os::exit_now(1);
            }
            budget
        }
        Err(e) => {
            let _ = writeln!(report, "error: {}", error_chain(&e));
            os::exit_now(1);
        }
    };
    // Reap until the interpreter itself ends (orphans are reparented to us meanwhile).
    let exit = loop {
        match os::wait(-1) {
            Ok(exit) if exit.pid == python => break Some(exit),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    // Then nothing else may live on: kill every other process of the namespace and reap them.
    let _ = os::kill(-1, libc::SIGKILL);
    while os::wait(-1).is_ok() {}
    let (files, files_truncated) = collect_files(Path::new("/work"), files_budget);
    let report_value = Report {
        status: exit.as_ref().map_or(libc::SIGKILL, |e| e.status),
        cpu_us: exit.as_ref().map_or(0, |e| e.cpu_us),
        max_rss_bytes: exit.as_ref().map_or(0, |e| e.max_rss_bytes),
        files,
        files_truncated,
    };
    let _ = writeln!(report, "{}", serde_json::to_string(&report_value).expect("reports serialise"));
    os::exit_now(0)
}

fn apply_dispatch(python: pid_t, dispatch: &Dispatch) -> Result<(), InitError> {
    // rlimits (the cgroup is the main limit; these stop a single process early). Set here rather than
    // before the interpreter starts, since raising a hard limit later would take a privilege the jail lacks.
    set_rlimits(python, &dispatch.limits).step("setting the request's rlimits")?;
    if !dispatch.same_limits {
        resize_tmpfs(&dispatch.limits)?;
    }
    for file in &dispatch.files {
        write_input(file).step("writing the input files")?;
    }
    Ok(())
}

/// Resizes /work and /tmp to a request's limits when they differ from the ones the jail was built with.
fn resize_tmpfs(limits: &Limits) -> Result<(), InitError> {
    for dir in ["/work", "/tmp"] {
        let data = format!("size={}", limits.work_bytes.max(4096));
        os::mount(None, Path::new(dir), None, libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV, Some(&data))
            .step("resizing /work and /tmp")?;
    }
    Ok(())
}
