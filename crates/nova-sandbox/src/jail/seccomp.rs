//! The jail's seccomp filter: a deny list of what untrusted interpreter code never needs. Denied calls fail
//! with `EPERM` (so probes see a clean error instead of a crash); `clone3` fails with `ENOSYS`, so libc falls
//! back to `clone`, whose flags the filter can inspect.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// Syscalls refused outright.
const DENIED: &[libc::c_long] = &[
    // Mounts and the root.
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
    // Namespaces.
    libc::SYS_unshare,
    libc::SYS_setns,
    // Other processes' memory.
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    // Kernel attack surface no interpreter needs.
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
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
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u64;

/// Compiles the filter for this machine's architecture. Done before the jail forks, so a compile error
/// surfaces as a setup step.
pub fn compile() -> Result<Filters, String> {
    compile_with(|_| Ok(()))
}

/// The filter of a confined helper process ([`crate::confined`]): the jail's deny list, and no socket but a
/// Unix one, so the helper has no network whether or not it has a network namespace of its own.
pub fn compile_for_helper() -> Result<Filters, String> {
    compile_with(|rules| {
        let not_unix = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?;
        rules.entry(libc::SYS_socket).or_default().push(SeccompRule::new(vec![not_unix])?);
        Ok(())
    })
}

/// Builds the filters from the deny list and whatever rules `extra` adds.
fn compile_with(
    extra: impl FnOnce(&mut BTreeMap<i64, Vec<SeccompRule>>) -> Result<(), seccompiler::BackendError>,
) -> Result<Filters, String> {
    let arch = std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp: unsupported architecture: {e:?}"))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|&nr| (nr, vec![])).collect();
    let cond = |arg, op, value| SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value);
    let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds);
    let mut build = || -> Result<(), seccompiler::BackendError> {
        // clone with any namespace flag (threads and plain forks pass).
        for bit in (0..64).map(|b| 1u64 << b).filter(|b| CLONE_NAMESPACES & b != 0) {
            rules.entry(libc::SYS_clone).or_default().push(rule(vec![cond(0, SeccompCmpOp::MaskedEq(bit), bit)?])?);
        }
        let socket = rules.entry(libc::SYS_socket).or_default();
        // Raw and packet sockets; the type argument carries SOCK_NONBLOCK/CLOEXEC bits above the low nibble.
        socket.push(rule(vec![cond(1, SeccompCmpOp::MaskedEq(0xf), libc::SOCK_RAW as u64)?])?);
        socket.push(rule(vec![cond(0, SeccompCmpOp::Eq, libc::AF_PACKET as u64)?])?);
        // Terminal injection.
        rules.entry(libc::SYS_ioctl).or_default().push(rule(vec![SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::TIOCSTI,
        )?])?);
        Ok(())
    };
    build().map_err(|e| format!("seccomp: building rules: {e}"))?;
    extra(&mut rules).map_err(|e| format!("seccomp: building rules: {e}"))?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(|e| format!("seccomp: building the filter: {e}"))?;
    let program: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: compiling: {e:?}"))?;
    // clone3 passes its flags in memory the filter cannot read: refuse it with ENOSYS so libc uses clone.
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, vec![])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .and_then(|f| f.try_into())
    .map_err(|e| format!("seccomp: compiling the clone3 rule: {e:?}"))?;
    Ok(Filters { clone3, main: program })
}

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
mod tests {
    #[test]
    fn the_seccomp_filter_compiles() {
        let filters = super::compile().expect("filter compiles for this architecture");
        let hex = filters.to_hex();
        let (clone3, main) = hex.split_once(',').expect("two programs");
        assert!(!clone3.is_empty() && main.len() > clone3.len() && main.len() % 16 == 0);
    }
}
