//! Inside the jail: its pid 1 (a copy of the helper), the zygote it starts (an interpreter that has imported
//! nothing of any program), and its life after setup: one run after another, each handed to a fresh run init
//! (see [`super::run`]) and a fresh fork of the zygote.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use super::error::SetupError;
use super::protocol::{Failure, Setup, CONTROL_CLOSED};
use super::root::{build_root, open_binds};
use super::run::run_main;
use crate::jail::seccomp;
use crate::os::{self, Forked};

/// The ends of the helper's pipes and socket that the jail's init keeps.
pub(super) struct InsideEnds {
    pub(super) sync: File,
    pub(super) control: File,
    pub(super) report: File,
    pub(super) runs: OwnedFd,
}

/// The jail's pid 1. Never returns.
pub(super) fn init_main(
    setup: &Setup,
    filters: &seccomp::Filters,
    resolvers: &[Ipv4Addr],
    root: &Path,
    ends: InsideEnds,
) -> ! {
    let InsideEnds { mut sync, control, mut report, runs } = ends;
    // Die with the helper.
    let _ = os::set_parent_death_signal(libc::SIGKILL);
    // Handles on everything to bind, opened in our new mount namespace while our credentials are still the
    // helper's (so a runtime under a private directory such as /root/.pyenv can be reached).
    let result = open_binds(&setup.binds)
        .and_then(|binds| build_root(&binds, resolvers, root, &mut sync))
        .and_then(|()| start_zygote(setup, filters));
    let zygote = match result {
        Ok(zygote) => zygote,
        Err(e) => {
            let _ = writeln!(report, "{}", Failure::of(&e).to_line());
            os::exit_now(1)
        }
    };
    if writeln!(report, "ready").is_err() {
        os::exit_now(1);
    }
    drop(report);
    serve(zygote, control, runs, setup.limits.work_bytes)
}

/// The zygote's program (see the file for its protocol).
const ZYGOTE: &str = include_str!("zygote.py");

/// The running zygote: its socket (fd 3 on its side).
struct Zygote {
    socket: File,
}

/// Forks the zygote and returns once its interpreter has started and waits for runs. It keeps the
/// privileges of the jail's root (it forks into each run's pid namespace, and the program joins the run's
/// other namespaces); each program drops them before it reads its code.
fn start_zygote(setup: &Setup, filters: &seccomp::Filters) -> Result<Zygote, SetupError> {
    let (status_r, status_w) = os::pipe().map_err(SetupError::ExecStatusPipe)?;
    let (ours, theirs) = os::socketpair().map_err(SetupError::ZygoteSocket)?;
    match os::fork().map_err(SetupError::ForkZygote)? {
        Forked::Child => {
            drop((status_r, ours));
            let err = exec_zygote(setup, filters, theirs);
            let mut status = File::from(status_w);
            let _ = write!(status, "{}", Failure::of(&err).to_line());
            os::exit_now(127)
        }
        Forked::Parent { .. } => {
            drop((status_w, theirs));
            // The status pipe closes on a successful exec; anything written is the step that failed.
            let mut message = String::new();
            let _ = File::from(status_r).read_to_string(&mut message);
            if !message.is_empty() {
                return Err(
                    Failure::parse_line(&message).unwrap_or_else(|| SetupError::StartZygote(io::Error::other(message)))
                );
            }
            let mut socket = File::from(ours);
            let mut started = [0u8; 1];
            match socket.read(&mut started) {
                Ok(1) => Ok(Zygote { socket }),
                _ => Err(SetupError::StartZygote(io::Error::other("the interpreter exited during its start-up"))),
            }
        }
    }
}

/// The zygote's last steps before exec.
fn exec_zygote(setup: &Setup, filters: &seccomp::Filters, socket: OwnedFd) -> SetupError {
    let run = || -> Result<std::convert::Infallible, SetupError> {
        // Its own session: no controlling terminal.
        os::setsid().map_err(SetupError::NewSession)?;
        // /dev/null on 0 and 1, the helper's stderr stays on 2, the socket on 3; everything else closes.
        let null = File::options().read(true).write(true).open("/dev/null").map_err(SetupError::OpenDevNull)?;
        for (fd, slot) in [(null.as_raw_fd(), 0), (null.as_raw_fd(), 1), (socket.as_raw_fd(), 3)] {
            os::dup2(&fd, slot).map_err(SetupError::ZygoteDescriptors)?;
        }
        os::cloexec_from(4).map_err(SetupError::CloseInherited)?;
        std::env::set_current_dir("/").map_err(SetupError::EnterRoot)?;
        os::reset_signals();
        // No privilege gain through exec, for the zygote and everything it forks.
        os::set_no_new_privs().map_err(SetupError::NoNewPrivs)?;
        let program = CString::new(setup.python.as_os_str().as_bytes()).expect("no NUL in the interpreter path");
        // argv[0] is the full path: the interpreter finds its prefix (and standard library) from it.
        let args: Vec<CString> = std::iter::once(program.clone())
            .chain(["-I", "-S", "-B", "-c", ZYGOTE].iter().map(|a| CString::new(*a).expect("no NUL")))
            .collect();
        let env = base_env(setup, filters);
        Err(SetupError::ExecInterpreter(os::execve(&program, &args, &env)))
    };
    match run() {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn base_env(setup: &Setup, filters: &seccomp::Filters) -> Vec<CString> {
    let python_path: Vec<String> = setup.python_path.iter().map(|p| p.display().to_string()).collect();
    ["PATH=/usr/local/bin:/usr/bin:/bin".to_owned(), "HOME=/work".to_owned(), "LANG=C.UTF-8".to_owned()]
        .into_iter()
        .chain([format!("NOVA_PYTHONPATH_={}", python_path.join(":")), format!("NOVA_SECCOMP_={}", filters.to_hex())])
        .map(|s| CString::new(s).expect("no NUL"))
        .collect()
}

/// Namespaces each run gets fresh, inside the jail's user namespace.
const RUN_NAMESPACES: u64 =
    (libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64;

/// The init's life after setup: one run after another. Each is prepared (namespaces, file system, the
/// program forked and confined, waiting for its code) as soon as the helper sends its descriptors, before its
/// request arrives; the run's init reads the request from the control pipe. Ends when the helper goes away.
fn serve(mut zygote: Zygote, control: File, runs: OwnedFd, work_bytes: u64) -> ! {
    loop {
        // stdin, stdout, stderr, code and report of the next run, and the socket that takes its network
        // namespace to the helper.
        let ends = match os::recv_fds(&runs, &mut [0u8; 1]) {
            Ok((1, ends)) if ends.len() == 6 => ends,
            _ => os::exit_now(0),
        };
        let [stdin, stdout, stderr, code, report, netns]: [OwnedFd; 6] = ends.try_into().expect("six descriptors");
        let mut report = File::from(report);
        match run_once(&mut zygote, &control, work_bytes, [stdin, stdout, stderr, code], &mut report, netns) {
            Ok(RunEnd::Finished) => {}
            Ok(RunEnd::HelperGone) => os::exit_now(0),
            Err(e) => {
                let _ = writeln!(report, "{}", Failure::of(&e).to_line());
            }
        }
    }
}

enum RunEnd {
    Finished,
    /// The control pipe closed while the run waited for its request.
    HelperGone,
}

/// One run: a run init in fresh namespaces builds its file system, the zygote forks the program into them,
/// the run init takes the request, and reaps and reports. Returns once every process of the run is gone.
fn run_once(
    zygote: &mut Zygote,
    control: &File,
    work_bytes: u64,
    program: [OwnedFd; 4],
    report: &mut File,
    netns: OwnedFd,
) -> Result<RunEnd, SetupError> {
    let (ours, theirs) = os::socketpair().map_err(SetupError::RunSocket)?;
    // The zygote, the program's parent, says on this pipe that the program exists, then how it ended.
    let (done_r, done_w) = os::pipe().map_err(SetupError::RunPipe)?;
    let run = match os::clone_namespaces(RUN_NAMESPACES).map_err(SetupError::RunNamespaces)? {
        Forked::Child => {
            drop((ours, done_w, program));
            run_main(work_bytes, control, report, theirs, done_r, netns)
        }
        Forked::Parent { child } => child,
    };
    drop((theirs, done_r, netns));
    let handed = hand_to_zygote(zygote, &program, [report.as_raw_fd(), done_w.as_raw_fd()], &ours);
    drop((program, done_w));
    if handed.is_err() {
        let _ = os::kill(run, libc::SIGKILL);
    }
    // The run init exits once the program has ended and it has killed and reaped the rest.
    let status = os::wait(run).map(|(_, status)| std::process::ExitStatus::from_raw(status).code());
    handed?;
    Ok(if matches!(status, Ok(Some(CONTROL_CLOSED))) { RunEnd::HelperGone } else { RunEnd::Finished })
}

/// Waits for the run init's file system (it sends its namespaces and Landlock ruleset) and has the zygote
/// fork the program into the run; `done` carries the program's start and end to the run init. Nothing to do
/// when the run init failed: it reported why.
fn hand_to_zygote(
    zygote: &mut Zygote,
    program: &[OwnedFd; 4],
    [report, done]: [std::os::fd::RawFd; 2],
    run_socket: &OwnedFd,
) -> Result<(), SetupError> {
    // Its namespaces (ipc, uts, net, pid, mnt) and its Landlock ruleset, if any.
    let (n, handles) = os::recv_fds(run_socket, &mut [0u8; 1]).map_err(SetupError::WaitRunFileSystem)?;
    if n == 0 {
        return Ok(());
    }
    let mut fds: Vec<_> = program.iter().map(|fd| fd.as_raw_fd()).collect();
    fds.extend([report, done]);
    fds.extend(handles.iter().map(|fd| fd.as_raw_fd()));
    os::send_fds(&zygote.socket, b"r", &fds).map_err(SetupError::HandToZygote)?;
    let mut forked = [0u8; 1];
    match zygote.socket.read(&mut forked) {
        Ok(1) => Ok(()),
        Ok(_) => Err(io::Error::other("the zygote exited")),
        Err(e) => Err(e),
    }
    .map_err(SetupError::WaitZygote)
}
