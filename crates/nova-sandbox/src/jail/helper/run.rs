//! One run's init: pid 1 of the run's fresh pid, mount, net, ipc and uts namespaces (inside the jail's user
//! namespace). Prepared before its request arrives: it mounts the run's own `/proc`, `/tmp` and work
//! directory, builds the run's Landlock ruleset, and sends handles on its namespaces and the ruleset out (to
//! the jail's init, which hands them to the zygote, which forks the program into them: pid 2 here, confined,
//! waiting for its code). Then it takes the request from the control pipe (resizes the
//! tmpfs mounts, writes the input files, sets the program's rlimits), says `ok` (the helper sends the code),
//! learns on the `done` pipe how the program ended, kills whatever is left (the program's orphans are its
//! children), collects the output files, and reports. Its exit ends every process of the run.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::error::SetupError;
use super::files::{collect_files, write_input};
use super::net;
use super::protocol::{Dispatch, Failure, Report, CONTROL_CLOSED};
use super::root::{mount_proc, mount_scratch};
use crate::os::{self, pid_t};
use crate::Limits;

/// The program's pid inside the run: the first process the zygote forks into it.
const PROGRAM_PID: pid_t = 2;

/// The namespaces the program joins, in the order it joins them (the mount namespace last: joining it moves
/// the root).
const NAMESPACES: [&str; 5] = ["ipc", "uts", "net", "pid", "mnt"];

/// The run init's life. `socket` takes the namespaces and the ruleset to the jail's init; `done` brings
/// `forked` once the program exists, then `STATUS CPU_MICROSECONDS MAX_RSS_BYTES` once it has ended (nothing
/// when it never started). Never returns.
pub(super) fn run_main(
    work_bytes: u64,
    control: &File,
    report: &mut File,
    socket: OwnedFd,
    done: OwnedFd,
    netns: OwnedFd,
) -> ! {
    let _ = os::set_parent_death_signal(libc::SIGKILL);
    // The program's orphans become ours: the kernel reaps them as they end, so none holds a pid meanwhile.
    let _ = os::reap_children_automatically();
    let fail = |report: &mut File, e: SetupError| -> ! {
        let _ = writeln!(report, "{}", Failure::of(&e).to_line());
        os::exit_now(1)
    };
    let handles = match prepare(work_bytes) {
        Ok(handles) => handles,
        Err(e) => fail(report, e),
    };
    let fds: Vec<_> = handles.iter().map(|fd| fd.as_raw_fd()).collect();
    // The network namespace to the helper too, which attaches the network stack to it when the request asks.
    let net = fds[NAMESPACES.iter().position(|&kind| kind == "net").expect("a net namespace")];
    if os::send_fds(&socket, b"r", &fds).is_err()
        || os::send_fds(&netns, b"n", &[net]).is_err()
        || writeln!(report, "ready").is_err()
    {
        os::exit_now(1);
    }
    drop((handles, netns));
    // The request.
    let mut line = String::new();
    if BufReader::new(control).read_line(&mut line).unwrap_or(0) == 0 {
        os::exit_now(CONTROL_CLOSED);
    }
    let mut done = BufReader::new(File::from(done));
    let dispatch =
        match serde_json::from_str::<Dispatch>(&line).map_err(io::Error::from).map_err(SetupError::ReadDispatch) {
            Ok(dispatch) => dispatch,
            Err(e) => fail(report, e),
        };
    if let Err(e) = apply(&dispatch, work_bytes, &mut done) {
        fail(report, e);
    }
    // `ok` tells the helper to send the code.
    if writeln!(report, "ok").is_err() {
        os::exit_now(1);
    }
    let mut ended = String::new();
    let _ = done.read_to_string(&mut ended);
    let exit: Vec<u64> = ended.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    // Then nothing else may live on: kill every other process of the run and wait until all are gone.
    let _ = os::kill(-1, libc::SIGKILL);
    while os::wait(-1).is_ok() {}
    let (files, files_truncated) = match &dispatch.output_dir {
        None => collect_files(Path::new("/work"), dispatch.limits.output_files_bytes),
        Some(name) => match output_folder(name) {
            Ok(Some(dir)) => collect_files(&dir, dispatch.limits.output_files_bytes),
            Ok(None) => (Vec::new(), false),
            Err(()) => (Vec::new(), true),
        },
    };
    let report_value = match exit[..] {
        [status, cpu_us, max_rss_bytes] => {
            Report { status: status as i32, cpu_us, max_rss_bytes, files, files_truncated }
        }
        _ => Report { status: libc::SIGKILL, cpu_us: 0, max_rss_bytes: 0, files, files_truncated },
    };
    let _ = writeln!(report, "{}", serde_json::to_string(&report_value).expect("reports serialise"));
    os::exit_now(0)
}

/// The output folder `name` under /work: `Ok(None)` when the program made none; `Err` when `name` is not one
/// plain name, or the program put something else than a folder there (a symlink is never followed).
fn output_folder(name: &str) -> Result<Option<std::path::PathBuf>, ()> {
    if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(());
    }
    let dir = Path::new("/work").join(name);
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(Some(dir)),
        Ok(_) => Err(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(()),
    }
}

/// The run's file system, top to bottom; returns handles on the run's namespaces and its Landlock ruleset
/// (none where the kernel lacks Landlock).
fn prepare(work_bytes: u64) -> Result<Vec<OwnedFd>, SetupError> {
    // Nothing we mount may propagate back to the jail.
    os::mount(None, Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(SetupError::PrivateMounts)?;
    // /proc of the run's own pid namespace: the program sees its own processes only.
    mount_proc(Path::new("/proc"))?;
    // Fresh, size-capped /tmp and work directory.
    mount_scratch(work_bytes)?;
    let mut handles = Vec::new();
    for kind in NAMESPACES {
        let handle = File::open(format!("/proc/self/ns/{kind}")).map_err(SetupError::OpenRunNamespaces)?;
        handles.push(OwnedFd::from(handle));
    }
    // Read-only everywhere, writable /work, /tmp and /dev (for /dev/null); and, as a second ruleset, no TCP.
    // Built here, where the rules can name this run's own /work and /tmp; the program applies the first to
    // itself, and the second once it reads that its request has no network access.
    let rulesets = landlock().map_err(|e| SetupError::BuildLandlock(io::Error::other(e)))?;
    handles.extend(rulesets);
    Ok(handles)
}

/// The file-system ruleset and the no-TCP ruleset, those the kernel supports (none, the first, or both).
fn landlock() -> Result<Vec<OwnedFd>, landlock::RulesetError> {
    use landlock::{path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, ABI};
    let abi = ABI::V5;
    let files: Option<OwnedFd> = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(["/work", "/tmp"], AccessFs::from_all(abi)))?
        .add_rules(path_beneath_rules(["/dev"], AccessFs::from_read(abi) | AccessFs::WriteFile))?
        .into();
    let Some(files) = files else { return Ok(Vec::new()) };
    let no_tcp: Option<OwnedFd> = Ruleset::default().handle_access(AccessNet::from_all(abi))?.create()?.into();
    Ok(std::iter::once(files).chain(no_tcp).collect())
}

/// The request's side of the run: its sizes, its files, and (once the program exists) its rlimits.
fn apply(dispatch: &Dispatch, work_bytes: u64, done: &mut impl BufRead) -> Result<(), SetupError> {
    if dispatch.limits.work_bytes != work_bytes {
        resize_tmpfs(&dispatch.limits)?;
    }
    if let Some(egress) = &dispatch.egress {
        net::configure(egress).map_err(SetupError::ConfigureNetwork)?;
    }
    for file in &dispatch.files {
        write_input(file).map_err(SetupError::WriteInputFiles)?;
    }
    let mut forked = String::new();
    done.read_line(&mut forked).map_err(SetupError::WaitProgramStart)?;
    if forked.trim_end() != "forked" {
        return Err(SetupError::WaitProgramStart(io::Error::other("it never started")));
    }
    // rlimits (the cgroup is the main limit; these stop a single process early), set on the waiting program.
    set_rlimits(PROGRAM_PID, &dispatch.limits).map_err(SetupError::Rlimits)
}

/// Resizes /work and /tmp to a request's limits when they differ from the ones the run was prepared with.
fn resize_tmpfs(limits: &Limits) -> Result<(), SetupError> {
    for dir in ["/work", "/tmp"] {
        let data = format!("size={}", limits.work_bytes.max(4096));
        os::mount(None, Path::new(dir), None, libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV, Some(&data))
            .map_err(SetupError::ResizeScratch)?;
    }
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
