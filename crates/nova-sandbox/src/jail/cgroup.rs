//! Cgroup limits for one jail, through cgroup v2 or v1, whichever the host offers with the memory, pids and
//! cpu controllers (hybrid hosts often keep them on v1). Plain file writes: no unsafe here.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Limits;

const ROOT: &str = "/sys/fs/cgroup";
const GROUP: &str = "nova-sandbox";

/// Where jail cgroups are created.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// A unified (v2) directory whose subtree has memory, pids and cpu enabled.
    V2 { parent: PathBuf },
    /// One directory per v1 controller.
    V1 { memory: PathBuf, pids: PathBuf, cpu: PathBuf, cpuacct: PathBuf },
}

impl Hierarchy {
    /// Finds a writable hierarchy with the three controllers, creating NOVA's parent group in it. The error
    /// says what is missing.
    pub fn detect() -> Result<Hierarchy, String> {
        let mut reasons = Vec::new();
        for v2_root in [PathBuf::from(ROOT), Path::new(ROOT).join("unified")] {
            let Ok(controllers) = fs::read_to_string(v2_root.join("cgroup.controllers")) else { continue };
            let have: Vec<&str> = controllers.split_whitespace().collect();
            let missing: Vec<&str> = ["memory", "pids", "cpu"].into_iter().filter(|c| !have.contains(c)).collect();
            if !missing.is_empty() {
                reasons.push(format!("cgroup v2 at {} lacks {}", v2_root.display(), missing.join(", ")));
                continue;
            }
            let parent = v2_root.join(GROUP);
            let enable = || -> io::Result<()> {
                fs::write(v2_root.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
                ensure_dir(&parent)?;
                fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu")
            };
            match enable() {
                Ok(()) => return Ok(Hierarchy::V2 { parent }),
                Err(e) => reasons.push(format!("cgroup v2 at {} is not writable: {e}", v2_root.display())),
            }
        }
        let v1 = |name: &str| Path::new(ROOT).join(name);
        let cpuacct = if v1("cpuacct").join("cpuacct.usage").exists() { v1("cpuacct") } else { v1("cpu") };
        if v1("memory").join("memory.limit_in_bytes").exists()
            && (v1("pids").join("pids.max").exists()
                || v1("pids").join("pids.current").exists()
                || v1("pids").join("cgroup.procs").exists())
            && v1("cpu").join("cpu.cfs_quota_us").exists()
        {
            let make = || -> io::Result<Hierarchy> {
                let h = Hierarchy::V1 {
                    memory: v1("memory").join(GROUP),
                    pids: v1("pids").join(GROUP),
                    cpu: v1("cpu").join(GROUP),
                    cpuacct: cpuacct.join(GROUP),
                };
                if let Hierarchy::V1 { memory, pids, cpu, cpuacct } = &h {
                    for dir in [memory, pids, cpu, cpuacct] {
                        ensure_dir(dir)?;
                    }
                }
                Ok(h)
            };
            match make() {
                Ok(h) => return Ok(h),
                Err(e) => reasons.push(format!("cgroup v1 under {ROOT} is not writable: {e}")),
            }
        } else {
            reasons.push("no cgroup v1 memory, pids and cpu controllers".into());
        }
        Err(format!(
            "no usable cgroup hierarchy with memory, pids and cpu controllers ({}); run as root or delegate a \
             cgroup v2 subtree",
            reasons.join("; ")
        ))
    }
}

fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// What a jail's cgroup recorded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub cpu_time: Duration,
    pub peak_memory_bytes: u64,
    pub oom_kills: u64,
}

/// One jail's cgroup (one directory per controller on v1).
pub struct Cgroup {
    hierarchy: Hierarchy,
    name: String,
}

impl Cgroup {
    pub fn create(hierarchy: &Hierarchy, name: &str) -> io::Result<Cgroup> {
        let cgroup = Cgroup { hierarchy: hierarchy.clone(), name: name.to_owned() };
        for dir in cgroup.dirs() {
            fs::create_dir(dir)?;
        }
        Ok(cgroup)
    }

    fn dirs(&self) -> Vec<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2 { parent } => vec![parent.join(&self.name)],
            Hierarchy::V1 { memory, pids, cpu, cpuacct } => {
                let mut dirs = vec![memory.join(&self.name), pids.join(&self.name), cpu.join(&self.name)];
                if cpuacct != cpu {
                    dirs.push(cpuacct.join(&self.name));
                }
                dirs
            }
        }
    }

    /// Memory without swap, processes, and one CPU's worth of time per period.
    pub fn set_limits(&self, limits: &Limits) -> io::Result<()> {
        match &self.hierarchy {
            Hierarchy::V2 { parent } => {
                let dir = parent.join(&self.name);
                fs::write(dir.join("memory.max"), limits.memory_bytes.to_string())?;
                if dir.join("memory.swap.max").exists() {
                    fs::write(dir.join("memory.swap.max"), "0")?;
                }
                fs::write(dir.join("pids.max"), limits.processes.to_string())?;
                fs::write(dir.join("cpu.max"), "100000 100000")
            }
            Hierarchy::V1 { memory, pids, cpu, .. } => {
                let mem = memory.join(&self.name);
                // Lower memsw first when shrinking, raise the plain limit first when growing: memsw >= limit.
                let memsw = mem.join("memory.memsw.limit_in_bytes");
                let value = limits.memory_bytes.to_string();
                if memsw.exists() && fs::write(&memsw, &value).is_ok() {
                    fs::write(mem.join("memory.limit_in_bytes"), &value)?;
                } else {
                    fs::write(mem.join("memory.limit_in_bytes"), &value)?;
                    if memsw.exists() {
                        fs::write(&memsw, &value)?;
                    }
                }
                // Best effort: some kernels refuse swappiness on v1 child groups.
                let _ = fs::write(mem.join("memory.swappiness"), "0");
                fs::write(pids.join(&self.name).join("pids.max"), limits.processes.to_string())?;
                fs::write(cpu.join(&self.name).join("cpu.cfs_period_us"), "100000")?;
                fs::write(cpu.join(&self.name).join("cpu.cfs_quota_us"), "100000")
            }
        }
    }

    /// Moves process `pid` (a host pid) into the cgroup.
    pub fn add(&self, pid: i32) -> io::Result<()> {
        for dir in self.dirs() {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        let read = |p: PathBuf| fs::read_to_string(p).unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok())).unwrap_or(0)
        };
        match &self.hierarchy {
            Hierarchy::V2 { parent } => {
                let dir = parent.join(&self.name);
                Stats {
                    cpu_time: Duration::from_micros(field(&read(dir.join("cpu.stat")), "usage_usec ")),
                    peak_memory_bytes: read(dir.join("memory.peak")).trim().parse().unwrap_or(0),
                    oom_kills: field(&read(dir.join("memory.events")), "oom_kill "),
                }
            }
            Hierarchy::V1 { memory, cpuacct, .. } => {
                let mem = memory.join(&self.name);
                let oom = read(mem.join("memory.oom_control"));
                Stats {
                    cpu_time: Duration::from_nanos(
                        read(cpuacct.join(&self.name).join("cpuacct.usage")).trim().parse().unwrap_or(0),
                    ),
                    peak_memory_bytes: read(mem.join("memory.max_usage_in_bytes")).trim().parse().unwrap_or(0),
                    // `oom_kill` counts kills; a hit limit with no kill (failcnt) is not a kill.
                    oom_kills: field(&oom, "oom_kill "),
                }
            }
        }
    }

    /// Starts the peak memory over, so that a jail's next run reports its own peak. Best effort: cgroup v2
    /// has no such reset before Linux 6.12 (a run there may report an earlier run's higher peak).
    pub fn reset_peak_memory(&self) {
        match &self.hierarchy {
            Hierarchy::V2 { parent } => {
                let _ = fs::write(parent.join(&self.name).join("memory.peak"), "0");
            }
            Hierarchy::V1 { memory, .. } => {
                let _ = fs::write(memory.join(&self.name).join("memory.max_usage_in_bytes"), "0");
            }
        }
    }

    /// Kills whatever is left inside and removes the directories, retrying while the kernel finishes
    /// tearing the last processes down.
    pub fn destroy(&self) {
        let dirs = self.dirs();
        if let Some(first) = dirs.first() {
            if first.join("cgroup.kill").exists() {
                let _ = fs::write(first.join("cgroup.kill"), "1");
            } else if let Ok(procs) = fs::read_to_string(first.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = crate::os::kill(pid, libc::SIGKILL);
                }
            }
        }
        for dir in dirs {
            for attempt in 0..500 {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(Duration::from_micros(200 + attempt * 20)),
                }
            }
        }
    }
}
