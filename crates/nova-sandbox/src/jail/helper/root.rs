//! The jail's file system, built by its init from the inside: a tmpfs root holding read-only binds of the
//! runtime, a minimal `/dev`, the jail's own `/proc`, and mount points for `/tmp` and `/work`, on which
//! each run mounts its own `/proc` and size-capped tmpfs (see `run`).

use std::fs::{self, File};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::error::SetupError;
use crate::os;

/// A bind from the host, opened by the helper and mounted by the jail's init.
pub(super) enum Bind {
    /// A directory or file, held as an `O_PATH` handle.
    Path { target: PathBuf, handle: OwnedFd, is_dir: bool },
    /// A symlink such as `/lib -> usr/lib`, recreated inside.
    Symlink { target: PathBuf, points_to: PathBuf },
}

pub(super) fn open_binds(paths: &[PathBuf]) -> Result<Vec<Bind>, SetupError> {
    let mut binds = Vec::new();
    for path in paths {
        let meta = fs::symlink_metadata(path).map_err(SetupError::OpenRuntimePaths)?;
        if meta.file_type().is_symlink() {
            let points_to = fs::read_link(path).map_err(SetupError::OpenRuntimePaths)?;
            binds.push(Bind::Symlink { target: path.clone(), points_to });
        } else {
            let handle = os::open_path(path).map_err(SetupError::OpenRuntimePaths)?;
            binds.push(Bind::Path { target: path.clone(), handle, is_dir: meta.is_dir() });
        }
    }
    Ok(binds)
}

/// Builds the jail's file system and identity, top to bottom.
pub(super) fn build_root(
    binds: &[Bind],
    resolvers: &[Ipv4Addr],
    root: &Path,
    sync: &mut File,
) -> Result<(), SetupError> {
    // Wait until the helper has written our id maps and put us in the cgroup.
    let mut go = [0u8; 2];
    sync.read_exact(&mut go).map_err(SetupError::WaitIdMaps)?;
    // Become root of the new user namespace (nobody, outside).
    os::set_ids(0).map_err(SetupError::BecomeRoot)?;
    // A cgroup namespace rooted at our own cgroup.
    os::unshare(libc::CLONE_NEWCGROUP).map_err(SetupError::CgroupNamespace)?;
    // Nothing we mount may propagate back to the host.
    os::mount(None, Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(SetupError::PrivateMounts)?;
    // The new root: a small tmpfs holding only mount points and symlinks.
    os::mount(None, root, Some("tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some("size=1m,mode=0755"))
        .map_err(SetupError::MountRoot)?;
    // The runtime, bound read-only.
    for bind in binds {
        bind_into(root, bind)?;
    }
    // A minimal /dev.
    build_dev(root)?;
    // /proc of the jail's own pid namespace.
    mount_proc(&root.join("proc"))?;
    // The resolver's configuration: the host's name servers that runs with network access may reach (see
    // `net`); `localhost` without asking them.
    name_resolution(root, resolvers)?;
    // Mount points for each run's /tmp and work directory (empty and read-only here: the zygote writes
    // nothing; every run mounts fresh ones, see `run`).
    for dir in ["tmp", "work"] {
        fs::create_dir_all(root.join(dir)).map_err(SetupError::ScratchDirs)?;
    }
    // `/home/user`, where programs written for other sandboxes keep their files, is the work directory.
    fs::create_dir_all(root.join("home")).map_err(SetupError::ScratchDirs)?;
    std::os::unix::fs::symlink("/work", root.join("home/user")).map_err(SetupError::ScratchDirs)?;
    // Switch to the new root and drop the old one.
    std::env::set_current_dir(root).map_err(SetupError::EnterNewRoot)?;
    os::pivot_root(Path::new("."), Path::new(".")).map_err(SetupError::PivotRoot)?;
    os::umount_detach(Path::new(".")).map_err(SetupError::DetachOldRoot)?;
    std::env::set_current_dir("/").map_err(SetupError::EnterNewRoot)?;
    // The root itself becomes read-only.
    os::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
    .map_err(SetupError::RootReadOnly)?;
    os::sethostname("nova").map_err(SetupError::HostName)?;
    Ok(())
}

/// Mounts a `/proc` of the caller's pid namespace at `proc_dir`, with its kernel knobs read-only.
pub(super) fn mount_proc(proc_dir: &Path) -> Result<(), SetupError> {
    fs::create_dir_all(proc_dir).map_err(SetupError::CreateProc)?;
    let noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    os::mount(None, proc_dir, Some("proc"), noexec, None).map_err(SetupError::MountProc)?;
    for sub in ["sys", "sysrq-trigger", "irq", "bus"] {
        let path = proc_dir.join(sub);
        if path.exists() {
            os::mount(Some(&path), &path, None, libc::MS_BIND | libc::MS_REC, None).map_err(SetupError::BindProcSys)?;
            os::mount(None, &path, None, libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | noexec, None)
                .map_err(SetupError::ProcSysReadOnly)?;
        }
    }
    Ok(())
}

/// Mounts fresh, size-capped tmpfs file systems on `/tmp` and `/work`.
pub(super) fn mount_scratch(size_bytes: u64) -> Result<(), SetupError> {
    for (dir, mode) in [("/tmp", "1777"), ("/work", "0755")] {
        let data = format!("size={},mode={mode}", size_bytes.max(4096));
        os::mount(None, Path::new(dir), Some("tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some(&data))
            .map_err(SetupError::MountScratch)?;
    }
    Ok(())
}

fn bind_into(root: &Path, bind: &Bind) -> Result<(), SetupError> {
    match bind {
        Bind::Symlink { target, points_to } => {
            let inside = inside(root, target);
            if let Some(parent) = inside.parent() {
                fs::create_dir_all(parent).map_err(SetupError::BindTargets)?;
            }
            std::os::unix::fs::symlink(points_to, &inside).map_err(SetupError::RuntimeSymlinks)
        }
        Bind::Path { target, handle, is_dir } => {
            let inside = inside(root, target);
            if *is_dir {
                fs::create_dir_all(&inside).map_err(SetupError::BindTargets)?;
            } else {
                if let Some(parent) = inside.parent() {
                    fs::create_dir_all(parent).map_err(SetupError::BindTargets)?;
                }
                File::create(&inside).map_err(SetupError::BindTargets)?;
            }
            let source = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
            os::mount(Some(&source), &inside, None, libc::MS_BIND | libc::MS_REC, None)
                .map_err(SetupError::BindRuntime)?;
            let locked = os::locked_mount_flags(&inside).map_err(SetupError::RuntimeMountFlags)?;
            let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | locked;
            os::mount(None, &inside, None, flags, None).map_err(SetupError::RuntimeReadOnly)
        }
    }
}

fn name_resolution(root: &Path, resolvers: &[Ipv4Addr]) -> Result<(), SetupError> {
    let etc = root.join("etc");
    fs::create_dir_all(&etc).map_err(SetupError::CreateEtc)?;
    let mut resolv = String::from("options timeout:2 attempts:2\n");
    if resolvers.is_empty() {
        // Without a name server, the resolver asks the run's own loopback, which refuses at once.
        resolv.push_str("# this host has no name server that sandbox runs may reach\n");
    }
    for resolver in resolvers {
        resolv.push_str(&format!("nameserver {resolver}\n"));
    }
    for (name, contents) in [("resolv.conf", resolv.as_str()), ("hosts", "127.0.0.1 localhost\n::1 localhost\n")] {
        let path = etc.join(name);
        // A runtime that binds its own wins.
        if path.symlink_metadata().is_err() {
            fs::write(&path, contents).map_err(SetupError::NameResolution)?;
        }
    }
    Ok(())
}

fn inside(root: &Path, host_path: &Path) -> PathBuf {
    root.join(host_path.strip_prefix("/").unwrap_or(host_path))
}

fn build_dev(root: &Path) -> Result<(), SetupError> {
    let dev = root.join("dev");
    fs::create_dir_all(&dev).map_err(SetupError::CreateDev)?;
    for name in ["null", "zero", "full", "random", "urandom"] {
        let inside = dev.join(name);
        File::create(&inside).map_err(SetupError::DevNodes)?;
        let host = Path::new("/dev").join(name);
        os::mount(Some(&host), &inside, None, libc::MS_BIND, None).map_err(SetupError::BindDevNodes)?;
        let locked = os::locked_mount_flags(&inside).map_err(SetupError::DevMountFlags)?;
        os::mount(None, &inside, None, libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | locked, None)
            .map_err(SetupError::DevNodesNosuid)?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(name)).map_err(SetupError::DevSymlinks)?;
    }
    Ok(())
}
