//! The seccomp filter of the jail's programs and of the confined helpers ([`crate::confined`]): an allow list.
//!
//! A call the list does not name fails with `EPERM`, so probes see a clean error instead of a crash, and a call the
//! kernel gains later (as it gained `memfd_secret`) is refused until it is added here on purpose. The list is what
//! the programs the jail exists for need, grouped below by purpose: the Python interpreter and the extension
//! modules of pip-installed wheels (numpy's among them), a shell with coreutils, and long-lived programs that run
//! threads, subprocesses of `/bin/sh` over pipes, signals, process groups and polling; and, for the helpers, NOVA
//! itself with tesseract, pdftoppm and prlimit. It was measured with `strace -f` on such programs, then with the
//! filter logging instead of refusing over them, `nova extract` on the dev invoices and the hostile corpus, and
//! this crate's suites; and compared with Docker's default profile. It leaves out the calls that reach past the
//! program: mounts, namespaces, `ptrace` and other processes' memory, `bpf`, keyrings, `perf_event_open`,
//! `userfaultfd`, `io_uring`, `kexec`, modules, file handles, the clocks, reboot and the like (`seccomp/tests.rs`
//! checks each); and some of what Docker allows: the NUMA memory policies (`ps` and numpy's OpenBLAS try them and
//! carry on without), SysV and POSIX message queues, `sync` and `syncfs`, `personality`, `modify_ldt`, the AIO
//! calls, `seccomp` and `memfd_secret`; and where Docker allows every socket family but vsock, it allows the few a
//! program uses.
//!
//! Four calls are allowed with some arguments only: `clone` without a namespace flag, `socket` of the
//! families a program needs (Unix; IPv4 and IPv6 streams and datagrams; route netlink, which `getaddrinfo`
//! reads; the helpers get Unix sockets only), `ioctl` but `TIOCSTI` (typing into a terminal), and `prlimit64`
//! on the caller itself. `clone3` passes its flags in memory the filter cannot read: a first filter refuses
//! it with `ENOSYS`, so libc falls back to `clone`.
//!
//! The architecture: both programs are for this machine's and kill a process that makes a call through
//! another ABI (32-bit `int 0x80` on x86_64, say). x32 calls share x86_64's architecture and are told apart by
//! bit 30 of their number (`__X32_SYSCALL_BIT`), which seccompiler's programs do not check: the allow list's
//! program (`seccomp/bpf.rs`, a binary search over the numbers) refuses any number with that bit first, and
//! no number on the list has it anyway, so every x32 call gets `EPERM` on a kernel built with x32.
//!
//! Arguments the kernel reads as 32-bit (`int` and `unsigned int` ones, and `clone`'s flags, which it
//! truncates) are compared on their low 32 bits only, as the kernel reads them: high bits set by the caller
//! cannot make a refused value look like another.

use std::collections::BTreeMap;

use libc::c_long;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

use bpf::{Condition, Op, Rule};

mod bpf;

/// Memory: the interpreter, extension modules and the libraries they load map, protect and release it.
const MEMORY: &[c_long] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_msync,
    libc::SYS_mincore,
    // Anonymous files (`os.memfd_create`, shared buffers); not `memfd_secret`, memory hidden from the kernel.
    libc::SYS_memfd_create,
];

/// Files: reading, writing and moving the program's own (the file system, Landlock and the read-only binds
/// decide which; these calls only name them). x86_64's legacy calls stand beside their `*at` successors:
/// static binaries and older libcs still make them.
const FILES: &[c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_lseek,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_creat,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_ftruncate,
    libc::SYS_truncate,
    libc::SYS_fallocate,
    libc::SYS_fadvise64,
    // Durability of the program's own files (sqlite3); not `sync` or `syncfs`, which flush the host's disks.
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_flock,
    // Copies between descriptors (`shutil`, `cat`, `cp`).
    libc::SYS_sendfile,
    libc::SYS_copy_file_range,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_getdents,
    libc::SYS_getdents64,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rmdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_link,
    libc::SYS_linkat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    // FIFOs (`os.mkfifo`); device nodes need a capability the program has not.
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mknod,
    libc::SYS_mknodat,
    // Watching files (`tail -f`, reloaders).
    #[cfg(target_arch = "x86_64")]
    libc::SYS_inotify_init,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
];

/// File metadata: stat, access checks, modes, owners (within the jail's user namespace), times, extended
/// attributes (`ls -l`, `shutil.copy2`).
const FILE_METADATA: &[c_long] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_stat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lstat,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chown,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lchown,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_umask,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utime,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utimes,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_futimesat,
    libc::SYS_utimensat,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
];

/// Descriptors: duplicating, flags, pipes, and the event descriptors of event loops. `ioctl` is a rule.
const DESCRIPTORS: &[c_long] = &[
    libc::SYS_dup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_pipe,
    libc::SYS_pipe2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_eventfd,
    libc::SYS_eventfd2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_signalfd,
    libc::SYS_signalfd4,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
];

/// Waiting on descriptors: `select`, `poll`, `epoll` (`selectors`, `asyncio`, `subprocess.communicate`).
const POLLING: &[c_long] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_select,
    libc::SYS_pselect6,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    libc::SYS_ppoll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_create,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
];

/// Clocks, sleeps and timers; not setting the clock.
const TIME: &[c_long] = &[
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_time,
    libc::SYS_times,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_alarm,
    libc::SYS_getitimer,
    libc::SYS_setitimer,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_getoverrun,
    libc::SYS_timer_delete,
];

/// Processes: forking, running programs (`subprocess`, the shell's commands), waiting for them, process
/// groups and sessions (`start_new_session`, `os.killpg`, the shell's `&`), limits on oneself. `clone` and
/// `prlimit64` are rules.
const PROCESSES: &[c_long] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
    // Allowed here and refused by the first filter with ENOSYS, so that libc falls back to `clone`: were
    // this filter to refuse it too, its EPERM would be the answer and libc would not fall back.
    libc::SYS_clone3,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_getpgid,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_getpgrp,
    libc::SYS_setpgid,
    libc::SYS_getsid,
    libc::SYS_setsid,
    libc::SYS_getrusage,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_getpriority,
    libc::SYS_setpriority,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_getcpu,
    // Thread names, dumpability, the bootstrap's own confinement; options that need a capability fail.
    libc::SYS_prctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_arch_prctl,
];

/// Threads: what glibc's `pthread_create` and every lock need.
const THREADS: &[c_long] =
    &[libc::SYS_futex, libc::SYS_set_tid_address, libc::SYS_set_robust_list, libc::SYS_get_robust_list, libc::SYS_rseq];

/// Identity and the machine: who the process is (root of the jail's user namespace, no capabilities: the
/// `set*id` calls can only keep the ids it holds), the kernel's name, randomness.
const IDENTITY: &[c_long] = &[
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setgroups,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_capget,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_getrandom,
];

/// Signals: handlers, masks, waiting, and sending (to the processes of the program's own pid namespace).
const SIGNALS: &[c_long] = &[
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sigaltstack,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_pause,
    libc::SYS_restart_syscall,
    libc::SYS_kill,
    libc::SYS_tkill,
    libc::SYS_tgkill,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
];

/// Sockets once made (`socket` is a rule; `socketpair` makes Unix ones only). Where a run has no network,
/// its namespace holds a loopback of its own and Landlock refuses TCP.
const SOCKETS: &[c_long] = &[
    libc::SYS_socketpair,
    libc::SYS_bind,
    libc::SYS_listen,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
];

/// Landlock, which only ever restricts: the bootstrap applies the run's no-TCP ruleset after the filter
/// is in, and a program may confine itself further.
const LANDLOCK: &[c_long] =
    &[libc::SYS_landlock_create_ruleset, libc::SYS_landlock_add_rule, libc::SYS_landlock_restrict_self];

/// Every group allowed with any arguments.
const ALLOWED: &[&[c_long]] = &[
    MEMORY,
    FILES,
    FILE_METADATA,
    DESCRIPTORS,
    POLLING,
    TIME,
    PROCESSES,
    THREADS,
    IDENTITY,
    SIGNALS,
    SOCKETS,
    LANDLOCK,
];

/// `clone` flags that make a namespace: a program gets none of its own.
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u64;

/// The socket families a filter allows.
#[derive(Clone, Copy)]
enum Sockets {
    /// Unix sockets only: a confined helper has no network whether or not it has a namespace of its own.
    Unix,
    /// Unix sockets; IPv4 and IPv6 streams and datagrams (never raw); route netlink, which `getaddrinfo`
    /// and `getifaddrs` read. Not packet, raw, Bluetooth, vsock, crypto (`AF_ALG`) and the other families
    /// whose code a program needs none of.
    UnixInternetAndRoutes,
}

/// Compiles the jail's filter for this machine's architecture. Done before the jail forks, so a compile error
/// surfaces as a setup step.
pub fn compile() -> Result<Filters, String> {
    compile_with(Sockets::UnixInternetAndRoutes)
}

/// The filter of a confined helper process ([`crate::confined`]): the jail's allow list, and no socket but a
/// Unix one, so the helper has no network whether or not it has a network namespace of its own.
pub fn compile_for_helper() -> Result<Filters, String> {
    compile_with(Sockets::Unix)
}

/// Builds both filters: the allow list with its argument rules, and the `clone3` refusal before it.
fn compile_with(sockets: Sockets) -> Result<Filters, String> {
    let arch = std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp: unsupported architecture: {e:?}"))?;
    let main = bpf::allow_list(&allow_list(sockets), libc::SECCOMP_RET_ERRNO | libc::EPERM as u32)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(|f| f.try_into())
    .map_err(|e| format!("seccomp: compiling the clone3 rule: {e:?}"))?;
    Ok(Filters { clone3, main })
}

/// The allowed calls by number: a call without rules is allowed with any arguments; a call with rules when
/// one of them holds (all of that rule's conditions). Every condition compares an argument's low 32 bits:
/// the kernel reads these arguments as `int`s or `unsigned int`s, and truncates `clone`'s flags.
fn allow_list(sockets: Sockets) -> BTreeMap<u32, Vec<Rule>> {
    let mut rules: BTreeMap<u32, Vec<Rule>> =
        ALLOWED.iter().flat_map(|group| group.iter()).map(|&nr| (nr as u32, vec![])).collect();
    let when = |arg, op, value: u64| Condition { arg, op, value: value as u32 };
    // Threads and forks, but no new namespace.
    rules.insert(libc::SYS_clone as u32, vec![vec![when(0, Op::MaskedEq(CLONE_NAMESPACES as u32), 0)]]);
    // Any terminal request but TIOCSTI, which types into the terminal as if its user had.
    rules.insert(libc::SYS_ioctl as u32, vec![vec![when(1, Op::Ne, libc::TIOCSTI)]]);
    // Limits of the caller itself (pid 0), which is what getrlimit, setrlimit and `ulimit` ask; never another
    // process's.
    rules.insert(libc::SYS_prlimit64 as u32, vec![vec![when(0, Op::Eq, 0)]]);
    rules.insert(libc::SYS_socket as u32, socket_rules(sockets));
    rules
}

/// `socket(domain, type, protocol)` for each family allowed. The type carries `SOCK_NONBLOCK` and
/// `SOCK_CLOEXEC` above its low nibble, the socket's kind.
fn socket_rules(sockets: Sockets) -> Vec<Rule> {
    let family = |f: libc::c_int| Condition { arg: 0, op: Op::Eq, value: f as u32 };
    let kind = |k: libc::c_int| Condition { arg: 1, op: Op::MaskedEq(0xf), value: k as u32 };
    let mut rules = vec![vec![family(libc::AF_UNIX)]];
    if let Sockets::UnixInternetAndRoutes = sockets {
        for f in [libc::AF_INET, libc::AF_INET6] {
            for k in [libc::SOCK_STREAM, libc::SOCK_DGRAM] {
                rules.push(vec![family(f), kind(k)]);
            }
        }
        rules.push(vec![family(libc::AF_NETLINK), Condition { arg: 2, op: Op::Eq, value: NETLINK_ROUTE }]);
    }
    rules
}

/// `NETLINK_ROUTE`, the netlink protocol of addresses and routes.
const NETLINK_ROUTE: u32 = 0;

/// The compiled filters, installed one after the other; the strictest verdict of the two wins.
pub struct Filters {
    clone3: BpfProgram,
    main: BpfProgram,
}

impl Filters {
    /// Installs both filters on every thread of this process (after `no_new_privs`, which the kernel
    /// requires of a process without `CAP_SYS_ADMIN`).
    pub fn install(&self) -> Result<(), String> {
        for program in [&self.clone3, &self.main] {
            seccompiler::apply_filter_all_threads(program).map_err(|e| format!("seccomp: installing: {e}"))?;
        }
        Ok(())
    }

    /// Both programs as hex text of raw `struct sock_filter` arrays, the clone3 rule first, separated by a
    /// comma: the form in which the program installs them on itself (`PR_SET_SECCOMP`), after
    /// `no_new_privs`, as the last step before the program.
    pub fn to_hex(&self) -> String {
        let hex = |program: &BpfProgram| {
            let mut text = String::with_capacity(program.len() * 16);
            for insn in program {
                let mut bytes = Vec::with_capacity(8);
                bytes.extend_from_slice(&insn.code.to_ne_bytes());
                bytes.extend_from_slice(&[insn.jt, insn.jf]);
                bytes.extend_from_slice(&insn.k.to_ne_bytes());
                for b in bytes {
                    text.push_str(&format!("{b:02x}"));
                }
            }
            text
        };
        format!("{},{}", hex(&self.clone3), hex(&self.main))
    }
}

#[cfg(test)]
mod tests;
