//! The narrow seam between the sandbox and the kernel: every `unsafe` block and every raw syscall of the crate
//! lives here, each wrapped in a small safe function that returns `io::Result`. Policy (which namespaces,
//! which mounts, which limits) lives in `jail`, never here.

// The one module where the workspace's `unsafe_code = "deny"` gives way; clippy still wants each block's
// `// SAFETY:` note.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use libc::pid_t;

/// Turns a `-1` return into the thread's `errno`.
fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// A pipe whose two ends close on exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid, writable array of two ints, as pipe2 requires.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as _)?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes reads and writes on `fd` return `EAGAIN` instead of blocking.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on any descriptor number is memory-safe; an invalid one fails with EBADF.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) } as _)?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags as libc::c_int | libc::O_NONBLOCK) } as _)?;
    Ok(())
}

/// Opens `path` as an `O_PATH` handle: a reference to the inode that a later bind mount can use through
/// `/proc/self/fd/N` without the mounting process needing search permission on the path's directories.
pub fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) } as _)?;
    // SAFETY: open succeeded, so the descriptor is open and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What `clone_namespaces` returns in each of the two processes.
pub enum Forked {
    Parent { child: pid_t },
    Child,
}

/// Forks into fresh namespaces (`flags` are `CLONE_NEW*`), like `fork` but through `clone3`, so the child
/// starts as pid 1 of a new pid namespace, inside a new user namespace, and so on.
///
/// Only call this from a single-threaded process: the child is a copy of the calling thread alone.
pub fn clone_namespaces(flags: u64) -> io::Result<Forked> {
    /// `struct clone_args` of `<linux/sched.h>` (the version-0 prefix plus the later fields, all zero).
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs { flags, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    // SAFETY: with no stack given, clone3 behaves like fork: the child continues on a copy-on-write copy of
    // this stack. The caller guarantees the process is single-threaded, so no lock held by another thread
    // can be copied in a locked state. `args` is valid for reads of its size for the whole call.
    let rc =
        check(unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) })?;
    Ok(if rc == 0 { Forked::Child } else { Forked::Parent { child: rc as pid_t } })
}

/// Plain `fork`, for the interpreter under the jail's init. Single-threaded callers only.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the caller is single-threaded (the jail's init), so the child's copy of memory is consistent.
    let rc = check(unsafe { libc::fork() } as _)?;
    Ok(if rc == 0 { Forked::Child } else { Forked::Parent { child: rc as pid_t } })
}

/// Leaves the current namespaces of the kinds in `flags` for new ones.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes plain flags and touches no memory of ours.
    check(unsafe { libc::unshare(flags) } as _).map(drop)
}

/// `mount(2)`.
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstring).transpose()?;
    let target = cstring(target)?;
    let fstype = fstype.map(|s| CString::new(s).expect("no NUL in a file-system type"));
    let data = data.map(|s| CString::new(s).expect("no NUL in mount options"));
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null (allowed by mount for these arguments) or a NUL-terminated string
    // that lives until the call returns.
    check(unsafe { libc::mount(ptr(&source), target.as_ptr(), ptr(&fstype), flags, ptr(&data) as *const libc::c_void) }
        as _)
    .map(drop)
}

/// Lazily detaches the mount at `target`.
pub fn umount_detach(target: &Path) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: `target` is a valid NUL-terminated string for the call's duration.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } as _).map(drop)
}

/// `pivot_root(2)`; `pivot_root(".", ".")` stacks the old root on the new one, to be detached next.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = cstring(new_root)?;
    let put_old = cstring(put_old)?;
    // SAFETY: both are valid NUL-terminated strings for the call's duration.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) }).map(drop)
}

/// The mount flags (`MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`, atime flags) of the mount holding `path`, which a
/// read-only remount inside a user namespace must keep (the kernel locks them).
pub fn locked_mount_flags(path: &Path) -> io::Result<libc::c_ulong> {
    let c = cstring(path)?;
    // SAFETY: an all-zero statvfs is a valid value of the plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid string and `st` a valid, writable statvfs.
    check(unsafe { libc::statvfs(c.as_ptr(), &mut st) } as _)?;
    let map = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(map.iter().filter(|(st_flag, _)| st.f_flag & st_flag != 0).fold(0, |acc, (_, ms)| acc | ms))
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which live for the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } as _).map(drop)
}

/// Starts a new session (and process group), detaching from any controlling terminal (no TIOCSTI).
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() } as _).map(drop)
}

/// Sets real, effective and saved user and group ids to `id` (inside the current user namespace).
pub fn set_ids(id: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresgid(id, id, id) } as _)?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setresuid(id, id, id) } as _).map(drop)
}

/// Drops all supplementary groups (needs CAP_SETGID; done by the helper before it creates the jail).
pub fn clear_groups() -> io::Result<()> {
    // SAFETY: a zero-length list with a null pointer is the documented way to clear the groups.
    check(unsafe { libc::setgroups(0, std::ptr::null()) } as _).map(drop)
}

pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

pub fn egid() -> u32 {
    // SAFETY: getegid cannot fail and touches no memory.
    unsafe { libc::getegid() }
}

/// Asks the kernel to send `signal` to this process when its parent dies.
pub fn set_parent_death_signal(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } as _).map(drop)
}

pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as _).map(drop)
}

/// Puts every signal back to its default disposition and unblocks them all, so the interpreter does not
/// inherit the helper's ignored SIGPIPE.
pub fn reset_signals() {
    for signal in 1..libc::SIGRTMIN() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting SIG_DFL installs no handler of ours; invalid numbers fail harmlessly.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // SAFETY: an empty, initialised sigset passed by pointer; the old set is not asked for.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Has the kernel reap this process's children as they exit (`SIGCHLD` ignored); a later `wait` blocks until
/// every child has ended, then fails with `ECHILD`.
pub fn reap_children_automatically() -> io::Result<()> {
    // SAFETY: SIG_IGN installs no handler of ours, so no code runs in signal context.
    if unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn kill(pid: pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers. Callers pass a pid they own (their child) or -1 from a jail's init.
    check(unsafe { libc::kill(pid, signal) } as _).map(drop)
}

/// `waitpid(pid, ...)`, retrying on EINTR; returns the pid reaped and its raw wait status. `pid` -1 waits
/// for any child.
pub fn wait(pid: pid_t) -> io::Result<(pid_t, i32)> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is valid and writable for the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok((rc, status));
    }
}

/// Sets the soft and hard values of one rlimit of process `pid` (0: this process).
pub fn set_rlimit(pid: pid_t, resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit64 { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `limit` is a valid rlimit64 for reading; the old-limit pointer may be null.
    check(unsafe { libc::prlimit64(pid, resource, &limit, std::ptr::null_mut()) } as _).map(drop)
}

/// Waits up to `timeout_ms` (-1: forever) for any of `fds` to be ready; returns each one's `revents`.
pub fn poll(fds: &[(RawFd, libc::c_short)], timeout_ms: i32) -> io::Result<Vec<libc::c_short>> {
    let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    // SAFETY: `pfds` is a valid, writable array of `pfds.len()` pollfd structs.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if rc == -1 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(pfds.iter().map(|p| p.revents).collect())
}

/// Makes `to` a copy of `from` (clearing close-on-exec on `to`).
pub fn dup2(from: &impl AsRawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on descriptor numbers is memory-safe; `to` is one of the standard slots the caller owns.
    check(unsafe { libc::dup2(from.as_raw_fd(), to) } as _).map(drop)
}

/// Marks every descriptor from `first` up close-on-exec (they stay usable until the exec).
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC takes plain integers and closes nothing now, so no
    // `OwnedFd` of the caller is invalidated.
    check(unsafe {
        libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC)
    })
    .map(drop)
}

/// Replaces this process with `program`. Returns only on failure.
pub fn execve(program: &CStr, args: &[CString], env: &[CString]) -> io::Error {
    let argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    // SAFETY: `program` is NUL-terminated; `argv` and `envp` are null-terminated arrays of pointers to
    // NUL-terminated strings that all live until execve replaces the process or fails.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Ends this process at once, without running destructors or flushing stdio (a forked child's way out).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Resident set of a process in bytes, from `/proc/PID/smaps_rollup` (`Pss` when available).
pub fn proportional_set_size(pid: pid_t) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The proportional set size of `root` and all its descendants, in bytes; `None` when `root` is gone.
pub fn tree_proportional_set_size(root: pid_t) -> Option<u64> {
    let mut total = proportional_set_size(root)?;
    let mut pids = vec![root];
    while let Some(pid) = pids.pop() {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<pid_t>().ok()) {
            total += proportional_set_size(child).unwrap_or(0);
            pids.push(child);
        }
    }
    Some(total)
}

/// A connected pair of Unix sequenced-packet sockets (message boundaries kept) whose ends close on exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` is a valid, writable array of two ints, as socketpair requires.
    check(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } as _)?;
    // SAFETY: socketpair succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The most descriptors one message carries.
const MAX_PASSED_FDS: usize = 16;

/// Room for the control message of `MAX_PASSED_FDS` descriptors, aligned as `cmsghdr` requires.
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

/// Sends `data` (at least one byte) with copies of the descriptors `fds` (`SCM_RIGHTS`) in one message.
pub fn send_fds(socket: &impl AsRawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(!data.is_empty() && fds.len() <= MAX_PASSED_FDS, "one message of 1+ bytes and few descriptors");
    let mut control = ControlBuffer([0; 128]);
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: an all-zero msghdr is a valid value of the plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds) as u32;
        msg.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size; 16 descriptors need 80 bytes, within the 128 of `control`.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(bytes) } as _;
        // SAFETY: `msg` points at `control`, which is aligned and large enough for one header and `bytes` of
        // data, so CMSG_FIRSTHDR is non-null and CMSG_DATA has room for `fds.len()` descriptors.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(bytes) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(header) as *mut RawFd, fds.len());
        }
    }
    loop {
        // SAFETY: `msg` and everything it points to (`iov`, `data`, `control`) live across the call.
        let rc = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match check(rc as _) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// Receives one message into `buf` and the descriptors sent with it (close-on-exec). Returns the message's
/// length (0: the peer closed) and the descriptors.
pub fn recv_fds(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = ControlBuffer([0; 128]);
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is a valid value of the plain C struct.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    let n = loop {
        // SAFETY: `msg` points at `buf` and `control`, both writable for their stated lengths.
        let rc = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match check(rc as _) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other? as usize,
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` with `msg_controllen` bytes of well-formed control messages; the
    // CMSG macros walk them within that length, and each SCM_RIGHTS payload holds whole descriptors that the
    // kernel installed in this process for us alone.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header) as *const RawFd;
                let count = ((*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            header = libc::CMSG_NXTHDR(&msg, header);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("too many descriptors in one message"));
    }
    Ok((n, fds))
}

/// A netlink socket to the kernel's routing subsystem (`NETLINK_ROUTE`), closed on exec.
pub fn netlink_route() -> io::Result<OwnedFd> {
    let kind = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
    // SAFETY: socket takes integer arguments only.
    let fd = check(unsafe { libc::socket(libc::AF_NETLINK, kind, libc::NETLINK_ROUTE) } as _)?;
    // SAFETY: socket succeeded, so the descriptor is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The index of the network interface `name` in the caller's network namespace.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let name = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index),
    }
}

/// The IPv4 addresses of every interface of the caller's network namespace.
pub fn ipv4_addresses() -> io::Result<Vec<std::net::Ipv4Addr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is a valid place for getifaddrs to store the head of the list it allocates.
    check(unsafe { libc::getifaddrs(&mut list) } as _)?;
    let mut addresses = Vec::new();
    let mut entry = list;
    // SAFETY: getifaddrs succeeded, so `list` is a well-formed linked list that stays valid until
    // freeifaddrs; each `ifa_addr` is null or points at a sockaddr whose family says its real type.
    unsafe {
        while !entry.is_null() {
            let address = (*entry).ifa_addr;
            if !address.is_null() && (*address).sa_family as libc::c_int == libc::AF_INET {
                let inet = &*(address as *const libc::sockaddr_in);
                addresses.push(std::net::Ipv4Addr::from(u32::from_be(inet.sin_addr.s_addr)));
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    Ok(addresses)
}

/// Makes `command` keep the descriptors `fds` open across its exec (at the same numbers), open at most
/// `max_files` descriptors, and die with `SIGKILL` when the calling thread ends.
pub fn keep_fds_and_die_with_parent(command: &mut std::process::Command, fds: Vec<RawFd>, max_files: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit { rlim_cur: max_files, rlim_max: max_files };
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe calls
    // (fcntl, setrlimit, prctl) on values it owns.
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                check(libc::fcntl(fd, libc::F_SETFD, 0) as _)?;
            }
            check(libc::setrlimit(libc::RLIMIT_NOFILE, &limit) as _)?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) as _).map(drop)
        });
    }
}

/// Makes `command`'s process start with the rlimits `limits` (`(resource, soft and hard value)`) and die with
/// `SIGKILL` when the calling thread ends.
pub fn limit_and_die_with_parent(command: &mut std::process::Command, limits: Vec<(libc::__rlimit_resource_t, u64)>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe calls
    // (setrlimit, prctl) on values it owns; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for &(resource, value) in &limits {
                let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
                check(libc::setrlimit(resource, &limit) as _)?;
            }
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) as _).map(drop)
        });
    }
}

/// The CPU time (user and system) this process has used so far.
pub fn cpu_time_self() -> io::Result<std::time::Duration> {
    // SAFETY: a zeroed rusage is a valid value of the plain C struct, and getrusage writes into it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        check(libc::getrusage(libc::RUSAGE_SELF, &mut usage) as _)?;
        usage
    };
    let time = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
            + std::time::Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok(time(usage.ru_utime) + time(usage.ru_stime))
}
