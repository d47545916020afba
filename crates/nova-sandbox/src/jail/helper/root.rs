//! The jail's file system, built by its init from the inside: a tmpfs root holding read-only binds of the
//! runtime, a minimal `/dev`, the jail's own `/proc`, and mount points for `/tmp` and `/work`, on which
//! each run mounts its own `/proc` and size-capped tmpfs (see `run`).

use std::fs::{self, File};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{InitError, Step};
use crate::os;

/// A bind from the host, opened by the helper and mounted by the jail's init.
pub(super) enum Bind {
    /// A directory or file, held as an `O_PATH` handle.
    Path { target: PathBuf, handle: OwnedFd, is_dir: bool },
    /// A symlink such as `/lib -> usr/lib`, recreated inside.
    Symlink { target: PathBuf, points_to: PathBuf },
}

pub(super) fn open_binds(paths: &[PathBuf]) -> Result<Vec<Bind>, InitError> {
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

/// Builds the jail's file system and identity, top to bottom.
pub(super) fn build_root(
    binds: &[Bind],
    resolvers: &[Ipv4Addr],
    root: &Path,
    sync: &mut File,
) -> Result<(), InitError> {
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
    mount_proc(&root.join("proc"))?;
    // The resolver's configuration: the host's name servers that runs with network access may reach (see
    // `net`); `localhost` without asking them.
    name_resolution(root, resolvers)?;
    // Mount points for each run's /tmp and work directory (empty and read-only here: the zygote writes
    // nothing; every run mounts fresh ones, see `run`).
    for dir in ["tmp", "work"] {
        fs::create_dir_all(root.join(dir)).step("creating /tmp and /work")?;
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

/// Mounts a `/proc` of the caller's pid namespace at `proc_dir`, with its kernel knobs read-only.
pub(super) fn mount_proc(proc_dir: &Path) -> Result<(), InitError> {
    fs::create_dir_all(proc_dir).step("creating /proc")?;
    let noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    os::mount(None, proc_dir, Some("proc"), noexec, None).step("mounting /proc")?;
    for sub in ["sys", "sysrq-trigger", "irq", "bus"] {
        let path = proc_dir.join(sub);
        if path.exists() {
            os::mount(Some(&path), &path, None, libc::MS_BIND | libc::MS_REC, None).step("binding /proc/sys")?;
            os::mount(None, &path, None, libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | noexec, None)
                .step("making /proc/sys read-only")?;
        }
    }
    Ok(())
}

/// Mounts fresh, size-capped tmpfs file systems on `/tmp` and `/work`.
pub(super) fn mount_scratch(size_bytes: u64) -> Result<(), InitError> {
    for (dir, mode) in [("/tmp", "1777"), ("/work", "0755")] {
        let data = format!("size={},mode={mode}", size_bytes.max(4096));
        os::mount(None, Path::new(dir), Some("tmpfs"), libc::MS_NOSUID | libc::MS_NODEV, Some(&data))
            .step("mounting /tmp and /work")?;
    }
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

fn name_resolution(root: &Path, resolvers: &[Ipv4Addr]) -> Result<(), InitError> {
    let etc = root.join("etc");
    fs::create_dir_all(&etc).step("creating /etc")?;
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
            fs::write(&path, contents).step("writing /etc/resolv.conf and /etc/hosts")?;
        }
    }
    Ok(())
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
