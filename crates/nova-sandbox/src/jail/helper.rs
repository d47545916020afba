//! The jail helper: a single-threaded process (`nova __jail`) that builds one jail, runs one program in it,
//! and tears it down. It speaks JSON lines on its stdin and stdout:
//!
//! 1. reads a [`Setup`] line, builds the jail and starts the interpreter, which waits for its code;
//! 2. writes `{"ready":true}` (or `{"error":"..."}` naming the step that failed);
//! 3. reads an [`ExecRequest`] line (a warm-pool jail waits here; end of input means "never mind");
//! 4. runs it and writes one [`Outcome`] line.
//!
//! Inside the jail, pid 1 is a copy of this helper (the jail's init): it finishes the jail from the inside,
//! writes the input files, reaps every process, and collects the output files once all are dead. Killing
//! it kills the whole pid namespace, which is how deadlines and limits stop a process tree, double forks
//! and `setsid` included.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nova_core::error_chain;
use serde::{Deserialize, Serialize};

use super::cgroup::{Cgroup, Hierarchy};
use super::seccomp;
use crate::os::{self, pid_t, Forked};
use crate::{ExecRequest, InputFile, Limits, Outcome, OutputFile, Status};

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
}

/// A setup step that failed. The steps read top to bottom in [`prepare`] and [`init_main`].
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("reading the jail setup")]
    ReadSetup(#[source] io::Error),
    #[error("the helper must be single-threaded (run it before any async runtime starts)")]
    NotSingleThreaded,
    #[error("{0}")]
    CgroupHierarchy(String),
    #[error("creating the jail's cgroup")]
    CreateCgroup(#[source] io::Error),
    #[error("setting the cgroup limits")]
    CgroupLimits(#[source] io::Error),
    #[error("{0}")]
    Seccomp(String),
    #[error("creating the jail's mount point")]
    MountPoint(#[source] io::Error),
    #[error("creating pipes")]
    Pipes(#[source] io::Error),
    #[error("dropping supplementary groups")]
    ClearGroups(#[source] io::Error),
    #[error(
        "creating user, pid, net, mount, ipc and uts namespaces (are user namespaces enabled? see \
         /proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone)"
    )]
    Namespaces(#[source] io::Error),
    #[error("writing the jail's user and group id maps")]
    IdMaps(#[source] io::Error),
    #[error("moving the jail into its cgroup")]
    JoinCgroup(#[source] io::Error),
    #[error("inside the jail: {0}")]
    Init(String),
    #[error("network access is not supported by the jail backend yet")]
    NetworkUnsupported,
    #[error("handing the program to the jail")]
    Dispatch(#[source] io::Error),
}

/// Runs the helper on this process's stdin and stdout and exits. Call it first thing in `main`, before any
/// thread or async runtime exists.
pub fn helper_main() -> ! {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut out = io::stdout().lock();
    let code = match run_helper(&mut input, &mut out) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(out, "{}", serde_json::json!({ "error": error_chain(&e) }));
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code)
}

fn run_helper(input: &mut impl BufRead, out: &mut impl Write) -> Result<(), SetupError> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(SetupError::ReadSetup)?;
    let setup: Setup = serde_json::from_str(&line).map_err(|e| SetupError::ReadSetup(e.into()))?;
    let mut jail = prepare(&setup)?;
    let ready = writeln!(out, "{}", serde_json::json!({ "ready": true })).and_then(|()| out.flush());
    // A warm jail waits here for its one request; no request (the caller dropped us) means tear down.
    line.clear();
    let request = match ready.and_then(|()| input.read_line(&mut line)) {
        Ok(n) if n > 0 => serde_json::from_str::<ExecRequest>(&line).map_err(|e| SetupError::ReadSetup(e.into())),
        Ok(_) | Err(_) => {
            jail.destroy();
            return Ok(());
        }
    };
    let outcome = match request {
        Ok(request) => jail.run(&request),
        Err(e) => Outcome::sandbox_error(error_chain(&e)),
    };
    // The caller gets its answer first; removing the cgroup waits for the kernel to finish the teardown.
    let _ = writeln!(out, "{}", serde_json::to_string(&outcome).expect("outcomes serialise"));
    let _ = out.flush();
    jail.destroy();
    Ok(())
}

/// A bind from the host, opened by the helper and mounted by the jail's init.
enum Bind {
    /// A directory or file, held as an `O_PATH` handle.
    Path { target: PathBuf, handle: OwnedFd, is_dir: bool },
    /// A symlink such as `/lib -> usr/lib`, recreated inside.
    Symlink { target: PathBuf, points_to: PathBuf },
}

/// The helper's side of a built jail.
struct Jail {
    init: pid_t,
    /// The limits the jail was built with; a request with the same ones skips re-applying them.
    built_with: Limits,
    cgroup: Cgroup,
    mount_point: PathBuf,
    control: Option<File>,
    report: File,
    stdin: Option<File>,
    stdout: File,
    stderr: File,
    code: Option<File>,
    dead: bool,
}

/// The ends the jail's init and interpreter keep.
struct InsideEnds {
    sync: File,
    control: File,
    report: File,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    code: OwnedFd,
}

const NAMESPACES: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS) as u64;

/// Builds the jail and starts the interpreter; returns once the interpreter waits for its code.
fn prepare(setup: &Setup) -> Result<Jail, SetupError> {
    // The helper must be single-threaded: clone3 copies only the calling thread.
    if fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(1) != 1 {
        return Err(SetupError::NotSingleThreaded);
    }
    // A cgroup of its own, with the limits the jail is built with.
    let hierarchy = Hierarchy::detect().map_err(SetupError::CgroupHierarchy)?;
    let name = unique_name();
    let cgroup = Cgroup::create(&hierarchy, &name).map_err(SetupError::CreateCgroup)?;
    let mut guard = CgroupGuard(Some(cgroup));
    guard.get().set_limits(&setup.limits).map_err(SetupError::CgroupLimits)?;
    // The seccomp filter, compiled before forking.
    let filters = seccomp::compile().map_err(SetupError::Seccomp)?;
    // An empty directory for the new root to be mounted on (inside the jail's mount namespace only).
    let mount_point = std::env::temp_dir().join(format!("{name}.root"));
    fs::DirBuilder::new().mode(0o755).create(&mount_point).map_err(SetupError::MountPoint)?;
    let _ = fs::set_permissions(&mount_point, fs::Permissions::from_mode(0o755));
    let mut dir_guard = DirGuard(Some(mount_point.clone()));
    // Pipes between the helper, the init and the interpreter.
    let (sync_r, sync_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (control_r, control_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (report_r, report_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (stdin_r, stdin_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (stdout_r, stdout_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (stderr_r, stderr_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (code_r, code_w) = os::pipe().map_err(SetupError::Pipes)?;
    // No supplementary groups (root's group 0 among them) may follow the jail.
    if os::euid() == 0 {
        os::clear_groups().map_err(SetupError::ClearGroups)?;
    }
    // Fresh user, pid, net, mount, ipc and uts namespaces; the child is the jail's pid 1.
    let init = match os::clone_namespaces(NAMESPACES).map_err(SetupError::Namespaces)? {
        Forked::Child => {
            drop((sync_w, control_w, report_r, stdin_w, stdout_r, stderr_r, code_w));
            let ends = InsideEnds {
                sync: sync_r.into(),
                control: control_r.into(),
                report: report_w.into(),
                stdin: stdin_r,
                stdout: stdout_w,
                stderr: stderr_w,
                code: code_r,
            };
            init_main(setup, &filters, &mount_point, ends)
        }
        Forked::Parent { child } => child,
    };
    drop((sync_r, control_r, report_w, stdin_r, stdout_w, stderr_w, code_r));
    let mut jail = Jail {
        init,
        built_with: setup.limits,
        cgroup: guard.0.take().expect("cgroup held"),
        mount_point: dir_guard.0.take().expect("dir held"),
        control: Some(control_w.into()),
        report: report_r.into(),
        stdin: Some(stdin_w.into()),
        stdout: stdout_r.into(),
        stderr: stderr_r.into(),
        code: Some(code_w.into()),
        dead: false,
    };
    let finish = |jail: &mut Jail| -> Result<(), SetupError> {
        // Root inside maps to nobody outside (or to the calling user when not root).
        write_id_maps(init).map_err(SetupError::IdMaps)?;
        // Into the cgroup before anything runs, so every descendant inherits it.
        jail.cgroup.add(init).map_err(SetupError::JoinCgroup)?;
        File::from(sync_w).write_all(b"go").map_err(SetupError::Pipes)?;
        // The init reports `ready` once the interpreter has been started, or the step that failed.
        match read_line(&mut jail.report) {
            Ok(line) if line == "ready" => Ok(()),
            Ok(line) => Err(SetupError::Init(line.trim_start_matches("error: ").to_owned())),
            Err(e) => Err(SetupError::Init(format!("the jail's init died during setup ({e})"))),
        }
    };
    if let Err(e) = finish(&mut jail) {
        // An init that failed first explains better than the helper's step that tripped over its exit.
        jail.kill();
        let from_init = read_line(&mut jail.report).ok().filter(|l| l.starts_with("error: "));
        jail.destroy();
        return Err(from_init.map_or(e, |l| SetupError::Init(l.trim_start_matches("error: ").to_owned())));
    }
    Ok(jail)
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("nova-jail-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn open_binds(paths: &[PathBuf]) -> Result<Vec<Bind>, InitError> {
    let mut binds = Vec::new();
    for path in paths {
        let meta = fs::symlink_metadata(path).step("opening the runtime's paths")?;
        if meta.file_type().is_symlink() {
            let points_to = fs::read_link(path).step("opening the runtime's paths")?;
            binds.push(Bind::Symlink { target: path.clone(), points_to });
        } else {
            let handle = os::open_path(path).step("opening the runtime's paths")?;
            binds.push(Bind::Path { target: path.clone(), handle, is_dir: meta.is_dir() });
        }
    }
    Ok(binds)
}

fn write_id_maps(pid: pid_t) -> io::Result<()> {
    let (uid, gid) = if os::euid() == 0 { (65534, 65534) } else { (os::euid(), os::egid()) };
    fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1"))?;
    fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1"))
}

/// Reads one `\n`-terminated line byte by byte (so nothing after it is consumed).
fn read_line(file: &mut File) -> io::Result<String> {
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

struct CgroupGuard(Option<Cgroup>);
impl CgroupGuard {
    fn get(&self) -> &Cgroup {
        self.0.as_ref().expect("cgroup held")
    }
}
impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.destroy();
        }
    }
}

struct DirGuard(Option<PathBuf>);
impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = fs::remove_dir(d);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Inside the jail: pid 1.
// ---------------------------------------------------------------------------------------------------------

/// A step inside the jail that failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
struct InitError {
    step: &'static str,
    #[source]
    source: io::Error,
}

trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, InitError>;
}
impl<T> Step<T> for io::Result<T> {
    fn step(self, step: &'static str) -> Result<T, InitError> {
        self.map_err(|source| InitError { step, source })
    }
}

/// The jail's pid 1. Never returns.
fn init_main(setup: &Setup, filters: &seccomp::Filters, root: &Path, ends: InsideEnds) -> ! {
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

/// Builds the jail's file system and identity, top to bottom.
fn build_root(setup: &Setup, binds: &[Bind], root: &Path, sync: &mut File) -> Result<(), InitError> {
    // Wait until the helper has written our id maps and put us in the cgroup.
    let mut go = [0u8; 2];
    sync.read_exact(&mut go).step("waiting for the id maps")?;
    // Become root of the new user namespace (nobody, outside).
    os::set_ids(0).step("switching to the namespace's root user")?;
    // A cgroup namespace rooted at our own cgroup.
    os::unshare(libc::CLONE_NEWCGROUP).step("creating a cgroup namespace")?;
    // Nothing we mount may propagate back to the host.
    os::mount(None, Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None).step("making mounts private")?;
    // The new root: a small tmpfs holding only mount points and symlinks.
    os::mount(None, root, Some("tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some("size=1m,mode=0755"))
        .step("mounting the new root")?;
    // The runtime, bound read-only.
    for bind in binds {
        bind_into(root, bind)?;
    }
    // A minimal /dev.
    build_dev(root)?;
    // /proc of the jail's own pid namespace.
    let proc_dir = root.join("proc");
    fs::create_dir_all(&proc_dir).step("creating /proc")?;
    let noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    os::mount(None, &proc_dir, Some("proc"), noexec, None).step("mounting /proc")?;
    for sub in ["sys", "sysrq-trigger", "irq", "bus"] {
        let path = proc_dir.join(sub);
        if path.exists() {
            os::mount(Some(&path), &path, None, libc::MS_BIND | libc::MS_REC, None).step("binding /proc/sys")?;
            os::mount(None, &path, None, libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | noexec, None)
                .step("making /proc/sys read-only")?;
        }
    }
    // Writable, size-capped /tmp and work directory.
    for (dir, mode) in [("tmp", "1777"), ("work", "0755")] {
        let path = root.join(dir);
        fs::create_dir_all(&path).step("creating /tmp and /work")?;
        let data = format!("size={},mode={mode}", setup.limits.work_bytes.max(4096));
        os::mount(None, &path, Some("tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some(&data))
            .step("mounting /tmp and /work")?;
    }
    // Switch to the new root and drop the old one.
    std::env::set_current_dir(root).step("entering the new root")?;
    os::pivot_root(Path::new("."), Path::new(".")).step("pivoting to the new root")?;
    os::umount_detach(Path::new(".")).step("detaching the old root")?;
    std::env::set_current_dir("/").step("entering the new root")?;
    // The root itself becomes read-only.
    os::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
    .step("making the root read-only")?;
    os::sethostname("nova").step("setting the host name")?;
    Ok(())
}

fn bind_into(root: &Path, bind: &Bind) -> Result<(), InitError> {
    match bind {
        Bind::Symlink { target, points_to } => {
            let inside = inside(root, target);
            if let Some(parent) = inside.parent() {
                fs::create_dir_all(parent).step("creating bind targets")?;
            }
            std::os::unix::fs::symlink(points_to, &inside).step("recreating runtime symlinks")
        }
        Bind::Path { target, handle, is_dir } => {
            let inside = inside(root, target);
            if *is_dir {
                fs::create_dir_all(&inside).step("creating bind targets")?;
            } else {
                if let Some(parent) = inside.parent() {
                    fs::create_dir_all(parent).step("creating bind targets")?;
                }
                File::create(&inside).step("creating bind targets")?;
            }
            let source = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
            os::mount(Some(&source), &inside, None, libc::MS_BIND | libc::MS_REC, None).step("binding the runtime")?;
            let locked = os::locked_mount_flags(&inside).step("reading the runtime's mount flags")?;
            let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | locked;
            os::mount(None, &inside, None, flags, None).step("making the runtime read-only")
        }
    }
}

fn inside(root: &Path, host_path: &Path) -> PathBuf {
    root.join(host_path.strip_prefix("/").unwrap_or(host_path))
}

fn build_dev(root: &Path) -> Result<(), InitError> {
    let dev = root.join("dev");
    fs::create_dir_all(&dev).step("creating /dev")?;
    for name in ["null", "zero", "full", "random", "urandom"] {
        let inside = dev.join(name);
        File::create(&inside).step("creating /dev nodes")?;
        let host = Path::new("/dev").join(name);
        os::mount(Some(&host), &inside, None, libc::MS_BIND, None).step("binding /dev nodes")?;
        let locked = os::locked_mount_flags(&inside).step("reading /dev's mount flags")?;
        os::mount(None, &inside, None, libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | locked, None)
            .step("remounting /dev nodes nosuid")?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(name)).step("creating /dev symlinks")?;
    }
    Ok(())
}

/// The Python bootstrap: reads `<10-digit env length><env as K=V\0...><code>` from fd 3, then runs the code
/// as `__main__` with the work directory first on `sys.path`.
const BOOTSTRAP: &str = r#"import os, sys
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
import atexit
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

/// Forks the interpreter, confined, waiting on fd 3 for its code. Returns its pid (inside the namespace).
fn start_interpreter(setup: &Setup, filters: &seccomp::Filters, fds: [OwnedFd; 4]) -> Result<pid_t, InitError> {
    let (status_r, status_w) = os::pipe().step("creating the exec status pipe")?;
    match os::fork().step("forking the interpreter")? {
        Forked::Child => {
            drop(status_r);
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
            if message.is_empty() {
                Ok(child)
            } else {
                Err(InitError { step: "starting the interpreter", source: io::Error::other(message) })
            }
        }
    }
}

/// The interpreter's last steps before exec, in the order that lets each one still be done.
fn confine_and_exec(setup: &Setup, filters: &seccomp::Filters, fds: [OwnedFd; 4]) -> InitError {
    let run = || -> Result<std::convert::Infallible, InitError> {
        // Its own session: no controlling terminal, one process group.
        os::setsid().step("starting a new session")?;
        // stdin, stdout, stderr and the code pipe on 0-3; everything else closes on exec.
        for (slot, fd) in fds.iter().enumerate() {
            os::dup2(fd, slot as i32).step("placing the standard descriptors")?;
        }
        os::cloexec_from(4).step("closing inherited descriptors on exec")?;
        std::env::set_current_dir("/work").step("entering /work")?;
        // rlimits (the cgroup is the main limit; these stop a single process early).
        set_rlimits(0, &setup.limits).step("setting rlimits")?;
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
struct Report {
    /// Raw wait status of the interpreter.
    status: i32,
    cpu_us: u64,
    max_rss_bytes: u64,
    files: Vec<OutputFile>,
    files_truncated: bool,
}

/// What the helper sends the init before the code: the request's limits and input files.
#[derive(Debug, Serialize, Deserialize)]
struct Dispatch {
    limits: Limits,
    /// The jail was built with these limits already: nothing to re-apply.
    same_limits: bool,
    files: Vec<InputFile>,
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
    if !dispatch.same_limits {
        resize(python, &dispatch.limits)?;
    }
    for file in &dispatch.files {
        write_input(file).step("writing the input files")?;
    }
    Ok(())
}

/// Re-applies limits that differ from the ones the jail was built with.
fn resize(python: pid_t, limits: &Limits) -> Result<(), InitError> {
    set_rlimits(python, limits).step("setting the request's rlimits")?;
    for dir in ["/work", "/tmp"] {
        let data = format!("size={}", limits.work_bytes.max(4096));
        os::mount(None, Path::new(dir), None, libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV, Some(&data))
            .step("resizing /work and /tmp")?;
    }
    Ok(())
}

/// Writes one input file under /work; the path must be relative and plain (no `..`, no root, no NUL), and
/// nothing is followed through a symlink.
fn write_input(file: &InputFile) -> io::Result<()> {
    let relative = checked_relative(&file.path)?;
    let path = Path::new("/work").join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&path)?
        .write_all(&file.contents)
}

/// `path` if it is a plain relative path, else an error.
pub(crate) fn checked_relative(path: &str) -> io::Result<&Path> {
    let p = Path::new(path);
    let plain = !path.is_empty()
        && !path.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if plain {
        Ok(p)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("input file name {path:?} is not a plain relative path"),
        ))
    }
}

const MAX_OUTPUT_FILES: usize = 1000;

/// Regular files under `dir`, depth first, within `budget` bytes in total. Symlinks, devices and the like
/// are skipped (and mark the result truncated), never followed.
fn collect_files(dir: &Path, budget: u64) -> (Vec<OutputFile>, bool) {
    let mut files = Vec::new();
    let mut truncated = false;
    let mut left = budget;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((current, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() && depth < 16 {
                stack.push((path, depth + 1));
            } else if meta.is_file() && files.len() < MAX_OUTPUT_FILES && meta.len() <= left {
                let opened = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path);
                let mut contents = Vec::new();
                if opened.and_then(|f| f.take(left).read_to_end(&mut contents)).is_ok() {
                    left -= contents.len() as u64;
                    let relative = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
                    files.push(OutputFile { path: relative, contents });
                } else {
                    truncated = true;
                }
            } else {
                truncated = true;
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, truncated)
}

// ---------------------------------------------------------------------------------------------------------
// The helper's side of one execution.
// ---------------------------------------------------------------------------------------------------------

impl Jail {
    /// Hands the request to the waiting jail and watches it to the end.
    fn run(&mut self, request: &ExecRequest) -> Outcome {
        if request.network {
            return Outcome::sandbox_error(error_chain(&SetupError::NetworkUnsupported));
        }
        if let Err(e) = self.dispatch(request) {
            return Outcome::sandbox_error(error_chain(&e));
        }
        let limits = request.limits;
        let start = Instant::now();
        let watched = self.watch(request, start + Duration::from_millis(limits.wall_ms));
        let wall_time = start.elapsed();
        if !self.dead {
            let _ = os::wait(self.init);
            self.dead = true;
        }
        let stats = self.cgroup.stats();
        let report: Option<Report> =
            String::from_utf8_lossy(&watched.report).lines().find_map(|l| serde_json::from_str(l).ok());
        let mut outcome = Outcome::sandbox_error("");
        outcome.error = None; // Filled in below; `sandbox_error` is only the all-empty starting point.
        outcome.wall_time = wall_time;
        outcome.cpu_time = stats.cpu_time.max(Duration::from_micros(report.as_ref().map_or(0, |r| r.cpu_us)));
        outcome.peak_memory_bytes = stats.peak_memory_bytes.max(report.as_ref().map_or(0, |r| r.max_rss_bytes));
        outcome.output_truncated = watched.truncated;
        outcome.stdout = watched.stdout;
        outcome.stderr = watched.stderr;
        let status = report.as_ref().map(|r| std::process::ExitStatus::from_raw(r.status));
        outcome.exit_code = status.and_then(|s| s.code());
        outcome.signal = status.and_then(|s| s.signal());
        outcome.status = if watched.timed_out {
            Status::Timeout
        } else if watched.truncated {
            Status::OutputLimit
        } else if stats.oom_kills > 0 {
            Status::MemoryLimit
        } else {
            match (outcome.exit_code, outcome.signal) {
                (Some(0), _) => Status::Ok,
                (Some(_), _) => Status::NonzeroExit,
                (None, Some(libc::SIGXCPU)) => Status::Timeout,
                (None, Some(libc::SIGKILL)) if outcome.cpu_time.as_millis() as u64 >= limits.cpu_ms * 9 / 10 => {
                    Status::Timeout
                }
                (None, Some(_)) => Status::Signaled,
                (None, None) => {
                    outcome.error = Some("the jail's init ended without a report".into());
                    Status::SandboxError
                }
            }
        };
        if let Some(report) = report {
            outcome.files = report.files;
            outcome.files_truncated = report.files_truncated;
        }
        outcome
    }

    /// Limits into the cgroup, files and limits to the init, then the code to the interpreter.
    fn dispatch(&mut self, request: &ExecRequest) -> Result<(), SetupError> {
        let same_limits = request.limits == self.built_with;
        if !same_limits {
            self.cgroup.set_limits(&request.limits).map_err(SetupError::CgroupLimits)?;
        }
        let dispatch = Dispatch { limits: request.limits, same_limits, files: request.files.clone() };
        let mut control = self.control.take().expect("dispatched once");
        let line = serde_json::to_string(&dispatch).expect("dispatches serialise");
        writeln!(control, "{line}").map_err(SetupError::Dispatch)?;
        match read_line(&mut self.report) {
            Ok(line) if line == "ok" => {}
            Ok(line) => return Err(SetupError::Init(line.trim_start_matches("error: ").to_owned())),
            Err(e) => return Err(SetupError::Init(format!("the jail's init died before the program ({e})"))),
        }
        let mut env = Vec::new();
        for (key, value) in &request.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(SetupError::Dispatch(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("environment variable {key:?} is not valid"),
                )));
            }
            env.extend_from_slice(key.as_bytes());
            env.push(b'=');
            env.extend_from_slice(value.as_bytes());
            env.push(0);
        }
        let mut framed = format!("{:010}", env.len()).into_bytes();
        framed.extend_from_slice(&env);
        framed.extend_from_slice(request.code.as_bytes());
        // A program larger than the pipe's buffer is read by the interpreter as it goes; a broken pipe means
        // the interpreter died, which the watch reports.
        let mut code = self.code.take().expect("dispatched once");
        let _ = code.write_all(&framed);
        Ok(())
    }

    /// Feeds stdin, collects capped stdout and stderr and the init's report, and kills the jail at the
    /// deadline or when output overflows.
    fn watch(&mut self, request: &ExecRequest, deadline: Instant) -> Watched {
        let cap = request.limits.output_bytes as usize;
        let mut w = Watched::default();
        let mut stdin_left: &[u8] = &request.stdin;
        if stdin_left.is_empty() {
            self.stdin = None;
        } else if let Some(s) = &self.stdin {
            let _ = os::set_nonblocking(s.as_raw_fd());
        }
        let (mut out_open, mut err_open, mut report_open) = (true, true, true);
        let mut buf = vec![0u8; 64 * 1024];
        while out_open || err_open || report_open {
            let now = Instant::now();
            if now >= deadline {
                w.timed_out = true;
                self.kill();
                break;
            }
            let timeout = (deadline - now).as_millis().min(i32::MAX as u128) as i32 + 1;
            let mut fds = vec![
                (if out_open { self.stdout.as_raw_fd() } else { -1 }, libc::POLLIN),
                (if err_open { self.stderr.as_raw_fd() } else { -1 }, libc::POLLIN),
                (if report_open { self.report.as_raw_fd() } else { -1 }, libc::POLLIN),
            ];
            if let Some(s) = &self.stdin {
                fds.push((s.as_raw_fd(), libc::POLLOUT));
            }
            let Ok(ready) = os::poll(&fds, timeout) else { break };
            let readable = |i: usize| ready[i] & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if out_open && readable(0) {
                out_open = drain(&mut self.stdout, &mut buf, &mut w.stdout, cap, &mut w.truncated);
            }
            if err_open && readable(1) {
                err_open = drain(&mut self.stderr, &mut buf, &mut w.stderr, cap, &mut w.truncated);
            }
            if report_open && readable(2) {
                report_open = drain(&mut self.report, &mut buf, &mut w.report, usize::MAX, &mut false);
            }
            if ready.len() > 3 && ready[3] != 0 {
                let done = match self.stdin.as_mut().map(|s| s.write(stdin_left)) {
                    Some(Ok(n)) => {
                        stdin_left = &stdin_left[n..];
                        stdin_left.is_empty()
                    }
                    Some(Err(e)) => e.kind() != io::ErrorKind::WouldBlock,
                    None => true,
                };
                if done {
                    self.stdin = None;
                }
            }
            if w.truncated {
                self.kill();
                break;
            }
        }
        w
    }

    fn kill(&mut self) {
        if !self.dead {
            // SIGKILL to the namespace's pid 1 ends every process in it.
            let _ = os::kill(self.init, libc::SIGKILL);
            let _ = os::wait(self.init);
            self.dead = true;
        }
    }

    fn destroy(&mut self) {
        self.control = None;
        self.kill();
        self.cgroup.destroy();
        let _ = fs::remove_dir(&self.mount_point);
    }
}

/// Reads what is available into `into`, keeping at most `cap` bytes. Returns whether the pipe is still open.
fn drain(file: &mut File, buf: &mut [u8], into: &mut Vec<u8>, cap: usize, truncated: &mut bool) -> bool {
    match file.read(buf) {
        Ok(0) => false,
        Ok(n) => {
            let room = cap.saturating_sub(into.len());
            into.extend_from_slice(&buf[..n.min(room)]);
            if n > room {
                *truncated = true;
            }
            true
        }
        Err(e) => e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock,
    }
}

#[derive(Default)]
struct Watched {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    report: Vec<u8>,
    truncated: bool,
    timed_out: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_paths_must_be_plain_and_relative() {
        for ok in ["a.txt", "dir/b.csv", "./c"] {
            assert!(checked_relative(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", "nul\0byte"] {
            assert!(checked_relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_seccomp_filter_compiles() {
        seccomp::compile().expect("filter compiles for this architecture");
    }

    #[test]
    fn output_files_skip_symlinks_and_respect_the_budget() {
        let dir = std::env::temp_dir().join(format!("nova-collect-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a.txt"), "aaaa").unwrap();
        fs::write(dir.join("sub/b.txt"), "bb").unwrap();
        fs::write(dir.join("big.bin"), vec![0u8; 100]).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        let (files, truncated) = collect_files(&dir, 10);
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub/b.txt"]);
        assert!(truncated);
        fs::remove_dir_all(&dir).unwrap();
    }
}
