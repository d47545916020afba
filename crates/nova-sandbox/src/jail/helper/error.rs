//! [`SetupError`]: every step of building a jail and preparing a run that can fail, one variant each, in the
//! manner of Firecracker's jailer. A step names where it failed in words (its `Display`, which outcomes and
//! logs carry) and by a stable code ([`SetupError::code`]), which is what crosses the pipes between the
//! jail's processes and the caller, with the errno of the cause (see [`super::protocol::Failure`]), so that
//! each side rebuilds the same variant.

use std::io;

use super::net;

/// Defines [`SetupError`] from one table: each step's variant, its text (`#[error]`) and its stable code.
/// Steps with a cause carry it as an [`io::Error`]; the few without one are listed after the `;`.
macro_rules! setup_steps {
    (
        $(#[$enum_meta:meta])*
        pub enum $name:ident {
            $( $(#[$meta:meta])* $step:ident(io::Error) = $code:literal, )*
            ;
            $( $(#[$bare_meta:meta])* $bare:ident = $bare_code:literal, )*
        }
    ) => {
        $(#[$enum_meta])*
        #[derive(Debug, thiserror::Error)]
        pub enum $name {
            $( $(#[$meta])* $step(#[source] io::Error), )*
            $( $(#[$bare_meta])* $bare, )*
        }

        impl $name {
            /// Every step's code, in the table's order.
            pub const CODES: &'static [&'static str] = &[$($code,)* $($bare_code,)*];

            /// The step's stable code (`mount_proc`, `pivot_root`, ...): what crosses the pipes, and what a
            /// caller matches on when it has only the code.
            pub fn code(&self) -> &'static str {
                match self {
                    $( $name::$step(_) => $code, )*
                    $( $name::$bare => $bare_code, )*
                }
            }

            /// What made the step fail, for the steps that have a cause.
            pub fn cause(&self) -> Option<&io::Error> {
                match self {
                    $( $name::$step(cause) => Some(cause), )*
                    $( $name::$bare => None, )*
                }
            }

            /// The step of `code`, failed because of `cause` (dropped for the steps that have none); `None`
            /// for a code no step has.
            pub fn from_code(code: &str, cause: io::Error) -> Option<$name> {
                match code {
                    $( $code => Some($name::$step(cause)), )*
                    $( $bare_code => Some($name::$bare), )*
                    _ => None,
                }
            }
        }
    };
}

setup_steps! {
    /// A step of building a jail, or of preparing a run in one, that failed: the program never ran. The steps
    /// read top to bottom: the helper's (`prepare` in the helper), the jail's init's (`root` and `init`), the
    /// helper's for each run (`watch`), the run's init's (`run`), and the program's own confinement, applied
    /// by the zygote's bootstrap (`zygote.py`, which writes the same codes).
    pub enum SetupError {
        // The helper, building the jail.
        #[error("reading the jail setup")]
        ReadSetup(io::Error) = "read_setup",
        #[error("finding a cgroup hierarchy")]
        CgroupHierarchy(io::Error) = "cgroup_hierarchy",
        #[error("creating the jail's cgroup")]
        CreateCgroup(io::Error) = "create_cgroup",
        #[error("setting the cgroup limits")]
        CgroupLimits(io::Error) = "cgroup_limits",
        #[error("compiling the seccomp filter")]
        CompileSeccomp(io::Error) = "compile_seccomp",
        #[error("creating the jail's mount point")]
        MountPoint(io::Error) = "mount_point",
        #[error("creating pipes")]
        Pipes(io::Error) = "pipes",
        #[error("dropping supplementary groups")]
        ClearGroups(io::Error) = "clear_groups",
        #[error(
            "creating user, pid, net, mount, ipc and uts namespaces (are user namespaces enabled? see \
             /proc/sys/user/max_user_namespaces and kernel.unprivileged_userns_clone)"
        )]
        UnshareNamespaces(io::Error) = "unshare_namespaces",
        #[error("writing the jail's user and group id maps")]
        IdMaps(io::Error) = "id_maps",
        #[error("moving the jail into its cgroup")]
        JoinCgroup(io::Error) = "join_cgroup",
        #[error("letting the jail's init go on")]
        ReleaseInit(io::Error) = "release_init",
        #[error("the jail's init died during setup")]
        InitDied(io::Error) = "init_died",
        #[error("reading what the jail's processes reported")]
        GarbledReport(io::Error) = "garbled_report",

        // The jail's init, building the jail's file system from the inside (`root`).
        #[error("opening the runtime's paths")]
        OpenRuntimePaths(io::Error) = "open_runtime_paths",
        #[error("waiting for the id maps")]
        WaitIdMaps(io::Error) = "wait_id_maps",
        #[error("switching to the namespace's root user")]
        BecomeRoot(io::Error) = "become_root",
        #[error("creating a cgroup namespace")]
        CgroupNamespace(io::Error) = "cgroup_namespace",
        #[error("making mounts private")]
        PrivateMounts(io::Error) = "private_mounts",
        #[error("mounting the new root")]
        MountRoot(io::Error) = "mount_root",
        #[error("creating bind targets")]
        BindTargets(io::Error) = "bind_targets",
        #[error("recreating runtime symlinks")]
        RuntimeSymlinks(io::Error) = "runtime_symlinks",
        #[error("binding the runtime")]
        BindRuntime(io::Error) = "bind_runtime",
        #[error("reading the runtime's mount flags")]
        RuntimeMountFlags(io::Error) = "runtime_mount_flags",
        #[error("making the runtime read-only")]
        RuntimeReadOnly(io::Error) = "runtime_read_only",
        #[error("creating /dev")]
        CreateDev(io::Error) = "create_dev",
        #[error("creating /dev nodes")]
        DevNodes(io::Error) = "dev_nodes",
        #[error("binding /dev nodes")]
        BindDevNodes(io::Error) = "bind_dev_nodes",
        #[error("reading /dev's mount flags")]
        DevMountFlags(io::Error) = "dev_mount_flags",
        #[error("remounting /dev nodes nosuid")]
        DevNodesNosuid(io::Error) = "dev_nodes_nosuid",
        #[error("creating /dev symlinks")]
        DevSymlinks(io::Error) = "dev_symlinks",
        #[error("creating /proc")]
        CreateProc(io::Error) = "create_proc",
        #[error("mounting /proc")]
        MountProc(io::Error) = "mount_proc",
        #[error("binding /proc/sys")]
        BindProcSys(io::Error) = "bind_proc_sys",
        #[error("making /proc/sys read-only")]
        ProcSysReadOnly(io::Error) = "proc_sys_read_only",
        #[error("creating /etc")]
        CreateEtc(io::Error) = "create_etc",
        #[error("writing /etc/resolv.conf and /etc/hosts")]
        NameResolution(io::Error) = "name_resolution",
        #[error("creating /tmp and /work")]
        ScratchDirs(io::Error) = "scratch_dirs",
        #[error("entering the new root")]
        EnterNewRoot(io::Error) = "enter_new_root",
        #[error("pivoting to the new root")]
        PivotRoot(io::Error) = "pivot_root",
        #[error("detaching the old root")]
        DetachOldRoot(io::Error) = "detach_old_root",
        #[error("making the root read-only")]
        RootReadOnly(io::Error) = "root_read_only",
        #[error("setting the host name")]
        HostName(io::Error) = "host_name",

        // The jail's init, starting the zygote and handing it each run (`init`).
        #[error("creating the exec status pipe")]
        ExecStatusPipe(io::Error) = "exec_status_pipe",
        #[error("creating the zygote's socket")]
        ZygoteSocket(io::Error) = "zygote_socket",
        #[error("forking the zygote")]
        ForkZygote(io::Error) = "fork_zygote",
        #[error("starting a new session")]
        NewSession(io::Error) = "new_session",
        #[error("opening /dev/null")]
        OpenDevNull(io::Error) = "open_dev_null",
        #[error("placing the zygote's descriptors")]
        ZygoteDescriptors(io::Error) = "zygote_descriptors",
        #[error("closing inherited descriptors on exec")]
        CloseInherited(io::Error) = "close_inherited",
        #[error("entering the root")]
        EnterRoot(io::Error) = "enter_root",
        #[error("setting no_new_privs")]
        NoNewPrivs(io::Error) = "no_new_privs",
        #[error("executing the interpreter")]
        ExecInterpreter(io::Error) = "exec_interpreter",
        #[error("starting the zygote")]
        StartZygote(io::Error) = "start_zygote",
        #[error("creating the run's socket")]
        RunSocket(io::Error) = "run_socket",
        #[error("creating the run's pipe")]
        RunPipe(io::Error) = "run_pipe",
        #[error("creating the run's pid, mount, net, ipc and uts namespaces")]
        RunNamespaces(io::Error) = "run_namespaces",
        #[error("waiting for the run's file system")]
        WaitRunFileSystem(io::Error) = "wait_run_file_system",
        #[error("handing the run to the zygote")]
        HandToZygote(io::Error) = "hand_to_zygote",
        #[error("waiting for the zygote")]
        WaitZygote(io::Error) = "wait_zygote",

        // The helper, for each run (`watch`).
        #[error("handing the next run to the jail")]
        SendRun(io::Error) = "send_run",
        #[error("passing the program's environment")]
        Environment(io::Error) = "environment",
        #[error("reading the host's addresses for the egress policy")]
        EgressPolicy(io::Error) = "egress_policy",
        #[error("receiving the run's network namespace")]
        RunNetns(io::Error) = "run_netns",
        #[error("starting the run's network")]
        StartNetwork(io::Error) = "start_network",
        #[error("handing the program to the jail")]
        Dispatch(io::Error) = "dispatch",
        #[error("the run's init died before the program")]
        RunInitDied(io::Error) = "run_init_died",
        #[error("reading the request")]
        ReadRequest(io::Error) = "read_request",

        // The run's init (`run`).
        #[error("mounting /tmp and /work")]
        MountScratch(io::Error) = "mount_scratch",
        #[error("opening the run's namespaces")]
        OpenRunNamespaces(io::Error) = "open_run_namespaces",
        #[error("building the Landlock ruleset")]
        BuildLandlock(io::Error) = "build_landlock",
        #[error("reading the dispatch")]
        ReadDispatch(io::Error) = "read_dispatch",
        #[error("resizing /work and /tmp")]
        ResizeScratch(io::Error) = "resize_scratch",
        #[error("configuring the run's network")]
        ConfigureNetwork(io::Error) = "configure_network",
        #[error("writing the input files")]
        WriteInputFiles(io::Error) = "write_input_files",
        #[error("waiting for the program to start")]
        WaitProgramStart(io::Error) = "wait_program_start",
        #[error("setting the request's rlimits")]
        Rlimits(io::Error) = "rlimits",

        // The program, confining itself before it reads its code (`zygote.py`).
        #[error("forking the program")]
        ForkProgram(io::Error) = "fork_program",
        #[error("joining the run's namespaces")]
        JoinNamespaces(io::Error) = "join_namespaces",
        #[error("placing the standard descriptors")]
        ProgramDescriptors(io::Error) = "program_descriptors",
        #[error("entering /work")]
        EnterWork(io::Error) = "enter_work",
        #[error("applying Landlock")]
        ApplyLandlock(io::Error) = "apply_landlock",
        #[error("dropping capabilities")]
        DropCapabilities(io::Error) = "drop_capabilities",
        #[error("installing seccomp")]
        InstallSeccomp(io::Error) = "install_seccomp",
        ;
        #[error("the helper must be single-threaded (run it before any async runtime starts)")]
        NotSingleThreaded = "not_single_threaded",
        #[error(
            "network access needs {}, a user-mode network stack, which is not installed (Debian package `{}`)",
            net::TOOL,
            net::TOOL
        )]
        NetworkToolMissing = "network_tool_missing",
        #[error("the run's init ended without a report")]
        NoReport = "no_report",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_unique_and_names_its_own_step() {
        let unique: HashSet<&str> = SetupError::CODES.iter().copied().collect();
        assert_eq!(unique.len(), SetupError::CODES.len(), "two steps share a code");
        for &code in SetupError::CODES {
            let step = SetupError::from_code(code, io::Error::other("cause")).expect("a step");
            assert_eq!(step.code(), code);
        }
        assert!(SetupError::from_code("no_such_step", io::Error::other("cause")).is_none());
    }

    #[test]
    fn the_text_names_the_step_and_the_cause_follows() {
        let e = SetupError::MountProc(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(e.to_string(), "mounting /proc");
        assert_eq!(e.cause().and_then(io::Error::raw_os_error), Some(libc::EPERM));
        assert!(nova_core::error_chain(&e).starts_with("mounting /proc: "));
        assert!(SetupError::NetworkToolMissing.to_string().contains("Debian package `slirp4netns`"));
        assert!(SetupError::NetworkToolMissing.cause().is_none());
    }

    /// The zygote's bootstrap names its steps by these codes too.
    #[test]
    fn the_zygotes_steps_are_known_codes() {
        let zygote = include_str!("zygote.py");
        let steps: Vec<&str> = zygote
            .lines()
            .filter_map(|line| line.trim().strip_prefix("step = \""))
            .map(|rest| rest.trim_end_matches('"'))
            .collect();
        assert!(steps.len() >= 7, "{steps:?}");
        for step in steps {
            assert!(SetupError::CODES.contains(&step), "zygote.py names an unknown step {step:?}");
        }
    }
}
