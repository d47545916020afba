//! The jail helper: a single-threaded process (`nova __jail`) that builds one jail, runs programs in it one
//! after another, and tears it down. It speaks JSON lines on its stdin and stdout:
//!
//! 1. reads a [`Setup`] line, builds the jail and starts its zygote, an interpreter that waits for runs;
//! 2. writes `{"ready":true}` (or `{"failure":{...}}`: the step that failed, see [`SetupError`]);
//! 3. reads an [`ExecRequest`] line (a warm-pool jail waits here; end of input means "tear down");
//!    A `{"session": <ExecRequest>}` line instead asks for a session: the helper runs that request's program
//!    and relays bytes between its own pipes and the program's until it ends (see [`relay`]), then writes
//!    one `ended` line and tears the jail down;
//! 4. runs it and writes one [`Reply`] line: the outcome, and whether the jail can take another request (then
//!    back to 3; otherwise it tears the jail down and exits). Its input closing (or anything more arriving on
//!    it) while the program runs cancels the execution: the jail is killed and the outcome says `canceled`.
//!
//! Inside the jail, pid 1 is a copy of this helper (the jail's init): it builds the jail's root from the
//! inside and starts the zygote. Each run then gets fresh pid, mount, net, ipc and uts namespaces whose
//! pid 1 is another copy (the run's init, [`run`]): it mounts the run's own `/proc`, `/tmp` and work
//! directory, and the zygote forks the program into those namespaces, where it confines itself (Landlock,
//! capabilities, seccomp; the run's init sets its rlimits) before reading its code. The run's init kills
//! and reaps every process once the program has ended, collects the output files, and exits, which ends the
//! run's pid namespace. Each run is prepared this far as soon as the previous one has ended: the helper sends
//! the next run's pipes right after its reply, so a request finds its run waiting for the input files, the
//! limits and the code. A deadline, an output
//! overflow or a cancellation kills the jail's init instead, which ends the whole jail, double forks and
//! `setsid` included, and the jail is not reused.
//!
//! The code follows the jail's life: [`root`] builds its file system from the inside, [`init`] is its
//! pid 1 and starts the zygote (`zygote.py`), [`run`] is each run's pid 1, [`files`] moves files in and out
//! of a run's work directory, [`watch`] is the helper's side of one execution, and [`net`] gives a run with
//! network access its user-mode network stack and egress policy. [`protocol`] holds the messages these
//! processes send one another; [`init`] starts each run's init ([`run`]), and neither imports anything else
//! from the other.

mod error;
mod files;
mod init;
mod net;
mod protocol;
mod relay;
mod root;
mod run;
mod watch;

use std::fs::{self, File};
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use super::cgroup::{Cgroup, Hierarchy};
use super::seccomp;
use crate::os::{self, pid_t, Forked};
use crate::{ExecRequest, Limits};
pub use error::SetupError;
use init::{init_main, InsideEnds};
use nova_core::error_chain;
pub(crate) use protocol::SessionLine;
use protocol::{read_line, Failure};
pub(crate) use protocol::{Reply, SetupReply};
pub use protocol::{SessionEnd, Setup};
use watch::Ran;

/// Runs the helper on this process's stdin and stdout and exits. Call it first thing in `main`, before any
/// thread or async runtime exists.
pub fn helper_main() -> ! {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut out = io::stdout().lock();
    let code = match run_helper(&mut input, &mut out) {
        Ok(()) => 0,
        Err(e) => {
            let reply = SetupReply { ready: false, failure: Some(Failure::of(&e)) };
            let _ = writeln!(out, "{}", serde_json::to_string(&reply).expect("replies serialise"));
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
    jail.prepare_next()?;
    let ready = serde_json::to_string(&SetupReply { ready: true, failure: None }).expect("replies serialise");
    let mut answered = writeln!(out, "{ready}").and_then(|()| out.flush());
    loop {
        // A warm jail waits here for its next request; no request (the caller dropped us) means tear down.
        line.clear();
        let request = match answered.and_then(|()| input.read_line(&mut line)) {
            Ok(n) if n > 0 && line.starts_with(SessionLine::PREFIX) => {
                let end = match serde_json::from_str::<SessionLine>(&line) {
                    Ok(SessionLine { session }) => jail.relay(&session, input, out),
                    Err(e) => SessionEnd::failed(error_chain(&SetupError::ReadRequest(e.into()))),
                };
                let line = serde_json::json!({"id": 0, "ev": "ended", "end": end});
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                jail.destroy();
                return Ok(());
            }
            Ok(n) if n > 0 => serde_json::from_str::<ExecRequest>(&line).map_err(|e| SetupError::ReadRequest(e.into())),
            Ok(_) | Err(_) => {
                jail.destroy();
                return Ok(());
            }
        };
        let Ran { outcome, reusable, failure } = match request {
            Ok(request) => jail.run(&request, io::stdin().as_raw_fd()),
            Err(e) => Ran::failed(e, false),
        };
        // The caller gets its answer first; removing the cgroup waits for the kernel to finish the teardown.
        let failure = failure.as_ref().map(Failure::of);
        let reply = serde_json::to_string(&Reply { outcome, reusable, failure }).expect("replies serialise");
        answered = writeln!(out, "{reply}").and_then(|()| out.flush());
        // The last run's network stack, killed before the reply, is reaped after it: its device's teardown
        // takes the kernel tens of milliseconds that the caller need not wait for.
        jail.stopping = None;
        // Prepare the next run while the caller reads this outcome (a failure shows at its dispatch).
        if !reusable || jail.prepare_next().is_err() {
            jail.destroy();
            return Ok(());
        }
    }
}

/// The helper's side of a built jail.
struct Jail {
    init: pid_t,
    /// The user-mode network stack as the setup named it (`None`: look in the system's directories).
    network_tool: Option<PathBuf>,
    /// The limits the cgroup holds now; a request with the same ones skips re-applying them.
    limits: Limits,
    cgroup: Cgroup,
    mount_point: PathBuf,
    /// Dispatch lines to the init; closing it makes the init exit.
    control: Option<File>,
    /// Each run's descriptors to the init.
    runs: OwnedFd,
    /// The helper's ends of the run prepared for the next request.
    next: Option<watch::RunPipes>,
    /// The last run's network stack, killed and not yet reaped.
    stopping: Option<net::Stack>,
    dead: bool,
}

/// The cgroup's limits for a run with `limits`: the cgroup also holds the jail's init, the zygote and the
/// run's init.
fn cgroup_limits(limits: &Limits) -> Limits {
    Limits { processes: limits.processes + 3, ..*limits }
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
    let hierarchy = Hierarchy::detect().map_err(|e| SetupError::CgroupHierarchy(io::Error::other(e)))?;
    let name = unique_name();
    let cgroup = Cgroup::create(&hierarchy, &name).map_err(SetupError::CreateCgroup)?;
    let mut guard = CgroupGuard(Some(cgroup));
    guard.get().set_limits(&cgroup_limits(&setup.limits)).map_err(SetupError::CgroupLimits)?;
    // The seccomp filter, compiled before forking.
    let filters = seccomp::compile().map_err(|e| SetupError::CompileSeccomp(io::Error::other(e)))?;
    // The name servers runs with network access may use, read while we still see the host's network.
    let resolvers = net::public_resolvers();
    // An empty directory for the new root to be mounted on (inside the jail's mount namespace only).
    let mount_point = std::env::temp_dir().join(format!("{name}.root"));
    fs::DirBuilder::new().mode(0o755).create(&mount_point).map_err(SetupError::MountPoint)?;
    let _ = fs::set_permissions(&mount_point, fs::Permissions::from_mode(0o755));
    let mut dir_guard = DirGuard(Some(mount_point.clone()));
    // Pipes and a socket between the helper and the init.
    let (sync_r, sync_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (control_r, control_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (report_r, report_w) = os::pipe().map_err(SetupError::Pipes)?;
    let (runs_ours, runs_theirs) = os::socketpair().map_err(SetupError::Pipes)?;
    // No supplementary groups (root's group 0 among them) may follow the jail.
    if os::euid() == 0 {
        os::clear_groups().map_err(SetupError::ClearGroups)?;
    }
    // Fresh user, pid, net, mount, ipc and uts namespaces; the child is the jail's pid 1.
    let init = match os::clone_namespaces(NAMESPACES).map_err(SetupError::UnshareNamespaces)? {
        Forked::Child => {
            drop((sync_w, control_w, report_r, runs_ours));
            let ends = InsideEnds {
                sync: sync_r.into(),
                control: control_r.into(),
                report: report_w.into(),
                runs: runs_theirs,
            };
            init_main(setup, &filters, &resolvers, &mount_point, ends)
        }
        Forked::Parent { child } => child,
    };
    drop((sync_r, control_r, report_w, runs_theirs));
    let mut report = File::from(report_r);
    let mut jail = Jail {
        init,
        network_tool: setup.network_tool.clone(),
        limits: setup.limits,
        cgroup: guard.0.take().expect("cgroup held"),
        mount_point: dir_guard.0.take().expect("dir held"),
        control: Some(control_w.into()),
        runs: runs_ours,
        next: None,
        stopping: None,
        dead: false,
    };
    let finish = |jail: &mut Jail| -> Result<(), SetupError> {
        // Root inside maps to nobody outside (or to the calling user when not root).
        write_id_maps(init).map_err(SetupError::IdMaps)?;
        // Into the cgroup before anything runs, so every descendant inherits it.
        jail.cgroup.add(init).map_err(SetupError::JoinCgroup)?;
        File::from(sync_w).write_all(b"go").map_err(SetupError::ReleaseInit)?;
        // The init reports `ready` once the zygote has started, or the step that failed.
        match read_line(&mut report) {
            Ok(line) if line == "ready" => Ok(()),
            Ok(line) => Err(Failure::parse_line(&line)
                .unwrap_or_else(|| SetupError::GarbledReport(io::Error::other(format!("{line:?}"))))),
            Err(e) => Err(SetupError::InitDied(e)),
        }
    };
    if let Err(e) = finish(&mut jail) {
        // An init that failed first explains better than the helper's step that tripped over its exit.
        jail.kill();
        let from_init = read_line(&mut report).ok().and_then(|line| Failure::parse_line(&line));
        jail.destroy();
        return Err(from_init.unwrap_or(e));
    }
    Ok(jail)
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("nova-jail-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn write_id_maps(pid: pid_t) -> io::Result<()> {
    let (uid, gid) = if os::euid() == 0 { (65534, 65534) } else { (os::euid(), os::egid()) };
    fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1"))?;
    fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1"))
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
