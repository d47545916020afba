//! The filters run here by an interpreter of the few BPF instructions they hold, the verdicts combined as the
//! kernel combines them: the policy is checked without root or a jail (the escape suite checks the installed
//! filter), and the binary search of `bpf.rs` against seccompiler's linear program of the same list.

use super::*;
use seccompiler::{sock_filter, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// `AUDIT_ARCH_*` (linux/audit.h): what `seccomp_data.arch` holds for each ABI.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// This machine's ABI, the one the filters are compiled for.
#[cfg(target_arch = "x86_64")]
const NATIVE: u32 = AUDIT_ARCH_X86_64;
#[cfg(target_arch = "aarch64")]
const NATIVE: u32 = AUDIT_ARCH_AARCH64;

/// What the kernel answers a call: every filter runs, the most restrictive action wins, and of two alike
/// the newer filter's (the main one, installed second).
fn verdict(filters: &Filters, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let data = seccomp_data(arch, nr, args);
    let action = |ret: u32| (ret & libc::SECCOMP_RET_ACTION_FULL) as i32;
    let mut answer = ALLOW;
    for program in [&filters.main, &filters.clone3] {
        let ret = run(program, &data);
        if action(ret) < action(answer) {
            answer = ret;
        }
    }
    answer
}

/// `struct seccomp_data` as the kernel fills it for a call.
fn seccomp_data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes()); // the instruction pointer
    for arg in args {
        data.extend_from_slice(&arg.to_ne_bytes());
    }
    data
}

/// Runs one classic BPF program over `seccomp_data`.
fn run(program: &[sock_filter], data: &[u8]) -> u32 {
    run_counting(program, data).0
}

/// Runs one classic BPF program over `seccomp_data`: its answer and the instructions it went through.
fn run_counting(program: &[sock_filter], data: &[u8]) -> (u32, usize) {
    let (mut a, mut pc, mut steps) = (0u32, 0usize, 0usize);
    loop {
        let insn = &program[pc];
        pc += 1;
        steps += 1;
        let jump = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        match insn.code {
            0x20 => {
                // BPF_LD | BPF_W | BPF_ABS
                let at = insn.k as usize;
                a = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
            }
            0x54 => a &= insn.k,                 // BPF_ALU | BPF_AND | BPF_K
            0x05 => pc += insn.k as usize,       // BPF_JMP | BPF_JA
            0x15 => pc += jump(a == insn.k),     // BPF_JMP | BPF_JEQ | BPF_K
            0x25 => pc += jump(a > insn.k),      // BPF_JMP | BPF_JGT | BPF_K
            0x35 => pc += jump(a >= insn.k),     // BPF_JMP | BPF_JGE | BPF_K
            0x45 => pc += jump(a & insn.k != 0), // BPF_JMP | BPF_JSET | BPF_K
            0x06 => return (insn.k, steps),      // BPF_RET | BPF_K
            code => panic!("instruction {code:#x} not interpreted"),
        }
    }
}

fn jail() -> Filters {
    compile().expect("the jail's filter compiles for this architecture")
}

/// The verdict on a native call.
fn call(filters: &Filters, nr: c_long, args: &[u64]) -> u32 {
    let mut all = [0u64; 6];
    all[..args.len()].copy_from_slice(args);
    verdict(filters, NATIVE, nr as u32, all)
}

#[test]
fn the_programs_have_the_form_the_bootstrap_installs() {
    let hex = jail().to_hex();
    let (clone3, main) = hex.split_once(',').expect("two programs");
    assert!(!clone3.is_empty() && main.len() > clone3.len() && main.len() % 16 == 0);
}

#[test]
fn every_listed_call_is_allowed_with_any_arguments() {
    let filters = jail();
    for &nr in ALLOWED.iter().flat_map(|group| group.iter()).filter(|&&nr| nr != libc::SYS_clone3) {
        for args in [[0; 6], [u64::MAX; 6]] {
            assert_eq!(verdict(&filters, NATIVE, nr as u32, args), ALLOW, "syscall {nr}");
        }
    }
}

#[test]
fn calls_off_the_list_are_refused_with_eperm() {
    let filters = jail();
    // memfd_secret, a number no kernel has yet, and the largest numbers.
    for nr in [libc::SYS_memfd_secret as u32, 500, 1000, 0x3fff_ffff, u32::MAX] {
        assert_eq!(verdict(&filters, NATIVE, nr, [0; 6]), EPERM, "syscall {nr}");
    }
    // What the list leaves out on purpose: mounts, namespaces, other processes' memory, and kernel
    // interfaces no program here needs.
    let refused = [
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_process_madvise,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        libc::SYS_bpf,
        libc::SYS_seccomp,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_io_setup,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_fanotify_init,
        libc::SYS_quotactl,
        libc::SYS_acct,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_vhangup,
        libc::SYS_personality,
        libc::SYS_sync,
        libc::SYS_syncfs,
        libc::SYS_mbind,
        libc::SYS_set_mempolicy,
        libc::SYS_msgget,
        libc::SYS_mq_open,
        libc::SYS_memfd_secret,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_ioperm,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_modify_ldt,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_uselib,
    ];
    for nr in refused {
        assert_eq!(call(&filters, nr, &[]), EPERM, "syscall {nr}");
    }
}

#[test]
fn clone3_fails_with_enosys_so_libc_falls_back_to_clone() {
    assert_eq!(call(&jail(), libc::SYS_clone3, &[]), ENOSYS);
}

#[test]
fn clone_makes_threads_and_processes_but_no_namespace() {
    let filters = jail();
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
    let spawn = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
    for flags in [thread, fork, spawn] {
        assert_eq!(call(&filters, libc::SYS_clone, &[flags]), ALLOW, "flags {flags:#x}");
    }
    for bit in (0..64).map(|b| 1u64 << b).filter(|b| CLONE_NAMESPACES & b != 0) {
        assert_eq!(call(&filters, libc::SYS_clone, &[fork | bit]), EPERM, "flag {bit:#x}");
        // High bits, which the kernel drops, change nothing.
        assert_eq!(call(&filters, libc::SYS_clone, &[0xffff_ffff_0000_0000 | bit]), EPERM, "flag {bit:#x}");
    }
}

#[test]
fn sockets_of_the_needed_families_only() {
    let jail = jail();
    let helper = compile_for_helper().expect("the helper's filter compiles");
    let (unix, inet, inet6, netlink) =
        (libc::AF_UNIX as u64, libc::AF_INET as u64, libc::AF_INET6 as u64, libc::AF_NETLINK as u64);
    let (stream, dgram, raw) = (libc::SOCK_STREAM as u64, libc::SOCK_DGRAM as u64, libc::SOCK_RAW as u64);
    let flags = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
    let high = 0xffff_ffff_0000_0000;
    // (domain, type, protocol), the jail's verdict, the helper's.
    let cases = [
        ([unix, stream, 0], ALLOW, ALLOW),
        ([unix, dgram | flags, 0], ALLOW, ALLOW),
        ([inet, stream, 0], ALLOW, EPERM),
        ([inet6, dgram | flags, 0], ALLOW, EPERM),
        ([inet, dgram, libc::IPPROTO_ICMP as u64], ALLOW, EPERM),
        ([inet, raw, libc::IPPROTO_ICMP as u64], EPERM, EPERM),
        ([inet6, raw | flags, 0], EPERM, EPERM),
        ([inet, 10, 0], EPERM, EPERM), // SOCK_PACKET
        ([netlink, raw | flags, u64::from(NETLINK_ROUTE)], ALLOW, EPERM),
        ([netlink, dgram, libc::NETLINK_AUDIT as u64], EPERM, EPERM),
        ([libc::AF_PACKET as u64, raw, 0], EPERM, EPERM),
        ([libc::AF_PACKET as u64, dgram, 0], EPERM, EPERM),
        ([libc::AF_ALG as u64, libc::SOCK_SEQPACKET as u64, 0], EPERM, EPERM),
        ([libc::AF_VSOCK as u64, stream, 0], EPERM, EPERM),
        // High bits the kernel drops (its arguments are ints) disguise nothing.
        ([high | libc::AF_PACKET as u64, dgram, 0], EPERM, EPERM),
        ([high | unix, stream, 0], ALLOW, ALLOW),
    ];
    for (args, in_jail, in_helper) in cases {
        assert_eq!(call(&jail, libc::SYS_socket, &args), in_jail, "jail: socket{args:?}");
        assert_eq!(call(&helper, libc::SYS_socket, &args), in_helper, "helper: socket{args:?}");
    }
    assert_eq!(call(&helper, libc::SYS_socketpair, &[unix, stream, 0]), ALLOW);
}

#[test]
fn ioctl_but_tiocsti_and_limits_of_oneself_only() {
    let filters = jail();
    let tiocsti = libc::TIOCSTI;
    assert_eq!(call(&filters, libc::SYS_ioctl, &[0, tiocsti]), EPERM);
    assert_eq!(call(&filters, libc::SYS_ioctl, &[0, 0xffff_ffff_0000_0000 | tiocsti]), EPERM);
    assert_eq!(call(&filters, libc::SYS_ioctl, &[0, libc::TCGETS]), ALLOW);
    assert_eq!(call(&filters, libc::SYS_ioctl, &[0, libc::FIONREAD]), ALLOW);
    let nofile = libc::RLIMIT_NOFILE as u64;
    assert_eq!(call(&filters, libc::SYS_prlimit64, &[0, nofile, 0, 1]), ALLOW);
    assert_eq!(call(&filters, libc::SYS_prlimit64, &[1, nofile, 0, 1]), EPERM);
}

#[test]
fn other_architectures_are_killed() {
    let filters = jail();
    for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64].into_iter().filter(|&a| a != NATIVE) {
        // getpid on x86_64 (39), i386 (20) and aarch64 (172).
        for nr in [20, 39, 172] {
            assert_eq!(verdict(&filters, arch, nr, [0; 6]), KILL, "arch {arch:#x}, syscall {nr}");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_calls_are_refused() {
    // x32 shares x86_64's audit architecture and sets bit 30 of the number.
    const X32: u32 = 0x4000_0000;
    for filters in [jail(), compile_for_helper().expect("the helper's filter compiles")] {
        for nr in 0..1024 {
            let got = verdict(&filters, AUDIT_ARCH_X86_64, X32 | nr, [0; 6]);
            assert!(got == EPERM || got == ENOSYS, "x32 syscall {nr}: {got:#x}");
        }
    }
}

/// seccompiler's linear program of the same list and rules: the reference.
fn linear(sockets: Sockets) -> BpfProgram {
    let condition = |c: &Condition| {
        let op = match c.op {
            Op::Eq => SeccompCmpOp::Eq,
            Op::Ne => SeccompCmpOp::Ne,
            Op::MaskedEq(mask) => SeccompCmpOp::MaskedEq(u64::from(mask)),
        };
        SeccompCondition::new(c.arg, SeccompCmpArgLen::Dword, op, u64::from(c.value)).expect("a condition")
    };
    let rules: BTreeMap<i64, Vec<SeccompRule>> = allow_list(sockets)
        .iter()
        .map(|(&nr, rules)| {
            let rules = rules.iter().map(|r| SeccompRule::new(r.iter().map(condition).collect()).expect("a rule"));
            (i64::from(nr), rules.collect())
        })
        .collect();
    let arch = std::env::consts::ARCH.try_into().expect("a known architecture");
    SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, arch)
        .and_then(|f| f.try_into())
        .expect("seccompiler compiles the list")
}

#[test]
fn the_binary_search_answers_as_seccompilers_linear_program() {
    // Argument values around the rules' own: families, kinds, flags, requests, pids, high bits.
    let values = [
        0,
        1,
        2,
        3,
        10,
        16,
        17,
        38,
        40,
        0x800 | 1,
        0x80000 | 0x800 | 2,
        0x5401,
        0x5412,
        0x1_0000_5412,
        0x11,
        0x1_0000_0011,
        0x20000,
        0x1000_0000,
        0x7e02_0000,
        0x0001_0f00,
        0xffff_ffff,
        u64::MAX,
    ];
    let ruled = [libc::SYS_clone, libc::SYS_ioctl, libc::SYS_prlimit64, libc::SYS_socket].map(|nr| nr as u32);
    let numbers = (0..1100u32).chain((0..1100).map(|nr| nr | 0x4000_0000)).chain([0x3fff_ffff, u32::MAX]);
    for sockets in [Sockets::Unix, Sockets::UnixInternetAndRoutes] {
        let (search, reference) = (super::bpf::allow_list(&allow_list(sockets), EPERM).unwrap(), linear(sockets));
        let compare = |arch, nr, args| {
            let data = seccomp_data(arch, nr, args);
            let ((ours, steps), theirs) = (run_counting(&search, &data), run(&reference, &data));
            assert_eq!(ours, theirs, "arch {arch:#x}, syscall {nr:#x}, arguments {args:x?}");
            steps
        };
        let mut longest = 0;
        for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64] {
            for nr in numbers.clone() {
                for args in [[0; 6], [u64::MAX; 6]] {
                    let steps = compare(arch, nr, args);
                    if !ruled.contains(&nr) {
                        longest = longest.max(steps);
                    }
                }
            }
        }
        for nr in ruled {
            for a in values {
                for b in values {
                    for c in values {
                        compare(NATIVE, nr, [a, b, c, 0, 0, 0]);
                    }
                }
            }
        }
        // The point of the search: a call without argument rules is answered in a few steps (the kernel
        // runs a new filter over every number), and the program is smaller.
        println!("{} instructions ({} linear), at most {longest} run for a call", search.len(), reference.len());
        assert!(longest <= 24, "{longest} instructions to find a call's verdict");
        assert!(search.len() < reference.len() / 2, "{} instructions, {} linear", search.len(), reference.len());
    }
}
