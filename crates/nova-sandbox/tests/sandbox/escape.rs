//! The escape suite: hostile programs run in the real jail, each contained, the host unharmed, and the right
//! status reported.
//!
//! Safety, since this runs as root on the developer's machine and in CI:
//! - before any hostile program, `jail()` runs the sandbox's precheck, which proves the jail is in force
//!   (own pid namespace, no host process visible, no network) and panics otherwise;
//! - the test process puts itself in a cgroup capping its processes and memory (`confine_suite`);
//! - probes only touch paths inside the jail's work directory or paths that do not exist on the host, never
//!   signal by wide patterns, and undo what they managed (unmount, delete) before printing `LEAK`, so a
//!   probe that wrongly succeeds reports a leak and leaves no damage.

use std::io::Read;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

use nova_sandbox::jail::{JailConfig, JailSandbox};
use nova_sandbox::{ExecRequest, InputFile, Limits, Outcome, Sandbox, Status};

/// Helpers every probe starts with: `leak(what)` reports a containment failure; `sys_denied(nr, ...)`
/// makes a raw syscall and says whether it failed.
const PRELUDE: &str = r#"
import os, sys, ctypes, errno, socket, signal, time, subprocess
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def leak(what):
    print("LEAK:", what); sys.stdout.flush()
def sys_denied(nr, *args):
    return libc.syscall(nr, *[ctypes.c_long(a) for a in args]) == -1
"#;

static SANDBOX: OnceLock<Option<JailSandbox>> = OnceLock::new();

/// The sandbox, after the precheck proved the jail is in force. `None` (the test skips) only outside CI, when
/// not root and the host offers no cgroups or user namespaces to an unprivileged user.
fn jail() -> Option<&'static JailSandbox> {
    SANDBOX
        .get_or_init(|| {
            confine_suite();
            let config = JailConfig::detect(env!("CARGO_BIN_EXE_nova-sandbox-helper"), &[]).expect("python3 on PATH");
            let sandbox = JailSandbox::new(config);
            match sandbox.check() {
                Ok(()) => Some(sandbox),
                // Outside CI, a developer without root on a host that gives an unprivileged user no cgroups
                // or user namespaces skips; in CI the suite must run.
                Err(e) if !is_root() && !nova_core::testing::in_ci() => {
                    eprintln!("skipping the escape suite: {e}");
                    None
                }
                Err(e) => panic!("precheck failed, no hostile program was run: {e}"),
            }
        })
        .as_ref()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Caps this test process (and what it starts outside a jail) at 512 processes and 4 GiB, as defence in
/// depth should a jail fail open. Best effort: needs a writable cgroup v1 hierarchy or v2 root.
fn confine_suite() {
    let pid = std::process::id().to_string();
    let v2 = std::path::Path::new("/sys/fs/cgroup");
    if std::fs::read_to_string(v2.join("cgroup.controllers")).is_ok_and(|c| c.contains("pids")) {
        let dir = v2.join("nova-sandbox-escape-suite");
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join("pids.max"), "512");
            let _ = std::fs::write(dir.join("memory.max"), "4294967296");
            let _ = std::fs::write(dir.join("cgroup.procs"), &pid);
        }
        return;
    }
    let v1 = [("pids", "pids.max", "512"), ("memory", "memory.limit_in_bytes", "4294967296")];
    for (controller, file, value) in v1 {
        let dir = std::path::Path::new("/sys/fs/cgroup").join(controller).join("nova-sandbox-escape-suite");
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join(file), value);
            let _ = std::fs::write(dir.join("cgroup.procs"), &pid);
        }
    }
}

fn request(code: &str) -> ExecRequest {
    ExecRequest {
        code: format!("{PRELUDE}\n{code}"),
        limits: Limits { wall_ms: 5_000, cpu_ms: 5_000, memory_bytes: 128 << 20, ..Limits::default() },
        ..Default::default()
    }
}

/// Runs `request` and checks its status and that no probe reported a leak.
fn expect(request: ExecRequest, status: Status) -> Option<Outcome> {
    let sandbox = jail()?;
    let outcome = sandbox.exec(&request);
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    let stderr = String::from_utf8_lossy(&outcome.stderr);
    let shown = format!(
        "status {:?} exit {:?} signal {:?} error {:?}\nstdout: {}\nstderr: {}",
        outcome.status,
        outcome.exit_code,
        outcome.signal,
        outcome.error,
        stdout.chars().take(2000).collect::<String>(),
        stderr.chars().take(2000).collect::<String>()
    );
    assert!(!stdout.contains("LEAK"), "containment failed:\n{shown}");
    assert_eq!(outcome.status, status, "{shown}");
    Some(outcome)
}

/// A probe that must end normally (its checks print `LEAK` on failure).
fn contained(code: &str) -> Option<Outcome> {
    let outcome = expect(request(code), Status::Ok)?;
    assert!(String::from_utf8_lossy(&outcome.stdout).contains("contained"), "probe did not finish");
    Some(outcome)
}

fn with_limits(code: &str, f: impl FnOnce(&mut Limits)) -> ExecRequest {
    let mut r = request(code);
    f(&mut r.limits);
    r
}

// ----- resource exhaustion -------------------------------------------------------------------------------

#[test]
fn fork_bomb_is_capped_and_killed_at_the_deadline() {
    let code = "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass";
    let Some(o) = expect(with_limits(code, |l| l.wall_ms = 1_500), Status::Timeout) else { return };
    assert!(o.wall_time < Duration::from_secs(5));
    // The host can still start processes.
    assert!(std::process::Command::new("true").status().unwrap().success());
}

#[test]
fn thread_bomb_stops_at_the_process_limit() {
    let code = r#"
import threading
ev = threading.Event(); n = 0
try:
    while True:
        threading.Thread(target=ev.wait, daemon=True).start(); n += 1
except (RuntimeError, MemoryError):
    pass
if n >= 32: leak(f"{n} threads")
ev.set(); print("contained", n)
"#;
    contained(code);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let code = "x = []\nwhile True:\n    x.append(bytearray(8 << 20))";
    let Some(o) = expect(with_limits(code, |l| l.memory_bytes = 64 << 20), Status::MemoryLimit) else { return };
    assert!(o.peak_memory_bytes <= 80 << 20, "peak {}", o.peak_memory_bytes);
}

#[test]
fn unbounded_stdout_is_cut_at_the_output_limit() {
    let code = "while True:\n    sys.stdout.write('x' * 65536)";
    let Some(o) = expect(with_limits(code, |l| l.output_bytes = 100_000), Status::OutputLimit) else { return };
    assert!(o.output_truncated);
    assert_eq!(o.stdout.len(), 100_000);
}

#[test]
fn unbounded_stderr_is_cut_at_the_output_limit() {
    let code = "while True:\n    sys.stderr.write('e' * 65536)";
    let Some(o) = expect(with_limits(code, |l| l.output_bytes = 10_000), Status::OutputLimit) else { return };
    assert_eq!(o.stderr.len(), 10_000);
}

fn fill(dir: &str) -> String {
    format!(
        r#"
written = 0
try:
    with open("{dir}/fill", "wb") as f:
        while True:
            f.write(b"\0" * 1048576); f.flush(); written += 1048576
except OSError as e:
    pass
if written > 9 * 1048576: leak(f"wrote {{written}} bytes to {dir}")
print("contained", written)
"#
    )
}

#[test]
fn filling_tmp_stops_at_its_size_cap() {
    contained_with(&fill("/tmp"), |l| l.work_bytes = 8 << 20);
}

#[test]
fn filling_the_work_directory_stops_at_its_size_cap() {
    contained_with(&fill("/work"), |l| l.work_bytes = 8 << 20);
}

fn contained_with(code: &str, f: impl FnOnce(&mut Limits)) -> Option<Outcome> {
    let outcome = expect(with_limits(code, f), Status::Ok)?;
    assert!(String::from_utf8_lossy(&outcome.stdout).contains("contained"));
    Some(outcome)
}

#[test]
fn endless_loop_times_out() {
    let Some(o) = expect(with_limits("while True: pass", |l| l.wall_ms = 1_000), Status::Timeout) else { return };
    assert!(o.wall_time < Duration::from_secs(3));
}

#[test]
fn cpu_time_limit_stops_a_busy_program() {
    let code = "while True: pass";
    let Some(o) = expect(with_limits(code, |l| (l.cpu_ms, l.wall_ms) = (1_000, 20_000)), Status::Timeout) else {
        return;
    };
    assert!(o.wall_time < Duration::from_secs(5), "{:?}", o.wall_time);
}

#[test]
fn sleeping_past_the_deadline_times_out() {
    let Some(o) = expect(with_limits("time.sleep(60)", |l| l.wall_ms = 500), Status::Timeout) else { return };
    assert!(o.wall_time < Duration::from_secs(2));
}

#[test]
fn ignoring_sigterm_does_not_survive_the_deadline() {
    let code =
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)";
    expect(with_limits(code, |l| l.wall_ms = 500), Status::Timeout);
}

#[test]
fn double_fork_and_setsid_do_not_escape_the_deadline() {
    let marker = format!("31.{}", std::process::id());
    let code = format!(
        r#"
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/usr/bin/sleep", ["sleep", "{marker}"])
    os._exit(0)
time.sleep(0.2)
print("contained")
"#
    );
    if contained(&code).is_none() {
        return;
    }
    // Nothing of the jail lives on: no host process runs the grandchild's command line.
    std::thread::sleep(Duration::from_millis(100));
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let mut cmdline = String::new();
        if let Ok(mut f) = std::fs::File::open(entry.path().join("cmdline")) {
            let _ = f.read_to_string(&mut cmdline);
        }
        assert!(!cmdline.contains(&marker), "escaped process {:?}: {cmdline:?}", entry.path());
    }
}

// ----- host files and processes ---------------------------------------------------------------------------

#[test]
fn host_secrets_are_not_readable() {
    let me = env!("CARGO_MANIFEST_DIR");
    let code = format!(
        r#"
for path in ["/etc/shadow", "/etc/passwd", "/etc/hostname", "/root/.bash_history", "/root/.ssh",
             "/home", "/var/log", "/run", "{me}/Cargo.toml", "/proc/kcore", "/boot"]:
    try:
        open(path, "rb").read(1); leak(path)
    except OSError:
        pass
print("contained")
"#
    );
    contained(&code);
}

#[test]
fn host_processes_are_not_visible() {
    let host_pid = std::process::id();
    let code = format!(
        r#"
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
if pids != [1, 2]: leak(f"processes {{pids}}")
if os.path.exists("/proc/{host_pid}"): leak("host pid visible")
print("contained")
"#
    );
    contained(&code);
}

#[test]
fn other_processes_environments_are_not_readable() {
    // The caller's environment never reaches the helper (env_clear), and no process is readable.
    std::env::set_var("NOVA_ESCAPE_SECRET", "s3cr3t-value");
    let code = r#"
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
    try:
        if b"s3cr3t-value" in open(f"/proc/{pid}/environ", "rb").read(): leak(pid)
    except OSError:
        pass
if "NOVA_ESCAPE_SECRET" in os.environ: leak("inherited env")
print("contained")
"#;
    contained(code);
}

#[test]
fn sys_and_proc_sys_are_closed() {
    let code = r#"
if os.path.exists("/sys/class") or os.path.exists("/sys/kernel"): leak("/sys visible")
for path, data in [("/proc/sys/kernel/hostname", "x"), ("/proc/sysrq-trigger", "h"), ("/proc/sys/vm/drop_caches", "1")]:
    try:
        with open(path, "w") as f: f.write(data)
        leak(path)
    except OSError:
        pass
print("contained")
"#;
    contained(code);
}

#[test]
fn read_only_binds_cannot_be_written() {
    let code = r#"
for path in ["/usr/lib/nova-probe", "/usr/bin/nova-probe", "/nova-probe", "/etc/nova-probe",
             os.path.dirname(sys.executable) + "/nova-probe", "/dev/nova-probe", "/proc/nova-probe"]:
    try:
        open(path, "w").close()
        os.remove(path); leak(path)
    except OSError:
        pass
try:
    os.chmod(sys.executable, 0o777); leak("chmod")
except OSError:
    pass
print("contained")
"#;
    contained(code);
}

#[test]
fn devices_are_not_reachable() {
    let code = r#"
for path in ["/dev/sda", "/dev/vda", "/dev/mem", "/dev/kmem", "/dev/kmsg", "/dev/port", "/dev/kvm", "/dev/tty"]:
    try:
        open(path, "rb").close(); leak(path)
    except OSError:
        pass
try:
    os.mknod("/work/null", 0o666 | 0o020000, os.makedev(1, 3)); leak("mknod")
except OSError:
    pass
open("/dev/null", "w").write("ok")
print("contained")
"#;
    contained(code);
}

#[test]
fn setuid_binaries_give_no_privilege() {
    let code = r#"
os.makedirs("/work/m", exist_ok=True)
r = subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "none", "/work/m"], capture_output=True)
if r.returncode == 0:
    subprocess.run(["/usr/bin/umount", "/work/m"]); leak("setuid mount worked")
status = open("/proc/self/status").read()
if "NoNewPrivs:\t1" not in status: leak("no_new_privs not set")
if "CapEff:\t0000000000000000" not in status or "CapBnd:\t0000000000000000" not in status: leak("capabilities left")
print("contained")
"#;
    contained(code);
}

#[test]
fn other_pids_cannot_be_signalled() {
    let host_pid = std::process::id();
    let code = format!(
        r#"
try:
    os.kill({host_pid}, 0); leak("host pid signalled")
except ProcessLookupError:
    pass
os.kill(1, signal.SIGTERM)   # the jail's init ignores signals from inside
time.sleep(0.05)
os.kill(1, 0)
print("contained")
"#
    );
    contained(&code);
}

#[test]
fn one_execution_cannot_see_another() {
    let Some(sandbox) = jail() else { return };
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let code = "open('/work/secret-a', 'w').write('a'); open('/tmp/secret-a', 'w').write('a')\n\
                        time.sleep(1.5); print('contained')";
            sandbox.exec(&request(code))
        });
        std::thread::sleep(Duration::from_millis(500));
        contained(
            r#"
for d in ["/work", "/tmp"]:
    if "secret-a" in os.listdir(d): leak(d)
if len([p for p in os.listdir("/proc") if p.isdigit()]) != 2: leak("other jail's processes")
print("contained")
"#,
        );
        let a = writer.join().unwrap();
        assert_eq!(a.status, Status::Ok);
    });
}

#[test]
fn a_run_cannot_tamper_with_the_zygote_or_leave_anything_for_the_next() {
    if jail().is_none() {
        return;
    }
    // One warm jail serves every run below: each is a fresh fork of the same zygote.
    let mut config = JailConfig::detect(env!("CARGO_BIN_EXE_nova-sandbox-helper"), &[]).expect("python3 on PATH");
    config.pool_size = 1;
    let sandbox = JailSandbox::new(config);
    assert!(sandbox.wait_warm(Duration::from_secs(30)), "the pool filled");
    let built = sandbox.jails_started();
    let marker = format!("32.{}", std::process::id());
    let leave_behind = format!(
        r#"
import builtins
os.getcwd = lambda: "tampered"
builtins.sorted = lambda *a, **k: ["tampered"]
sys.path.append("/tmp/evil")
os.environ["NOVA_LEFTOVER"] = "1"
open("/tmp/leftover", "w").write("x"); open("/work/leftover", "w").write("x")
os.mkfifo("/tmp/leftover-fifo")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/usr/bin/sleep", ["sleep", "{marker}"])
    os._exit(0)
time.sleep(0.2)
for pid in [p for p in os.listdir("/proc") if p.isdigit() and p not in ("1", str(os.getpid()))]:
    if open(f"/proc/{{pid}}/cmdline", "rb").read().startswith(b"sleep"):
        break
else:
    leak("the background process did not start")
for path in ["/proc/1/mem", "/proc/1/environ", "/proc/1/fd/0"]:
    try:
        open(path, "rb").read(1); leak(path)
    except OSError:
        pass
print("contained")
"#
    );
    // Kills every process it may signal (the run's init ignores it), then itself.
    let kill_everything = r#"
subprocess.Popen(["/usr/bin/sleep", "30"])
os.kill(-1, signal.SIGKILL)
os.kill(1, signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)
"#;
    let check_clean = r#"
pids = [p for p in os.listdir("/proc") if p.isdigit()]
if sorted(pids, key=int) != ["1", "2"]: leak(f"processes left over: {pids}")
if os.getcwd() != "/work": leak("a module of the zygote was modified")
if sorted([2, 1]) != [1, 2]: leak("a builtin of the zygote was modified")
if "/tmp/evil" in sys.path: leak("sys.path was modified")
if "NOVA_LEFTOVER" in os.environ: leak("the environment was modified")
if os.listdir("/tmp") or os.listdir("/work"): leak(f"files left over: {os.listdir('/tmp')} {os.listdir('/work')}")
print("contained")
"#;
    for _ in 0..2 {
        let outcome = sandbox.exec(&request(&leave_behind));
        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        let stdout = String::from_utf8_lossy(&outcome.stdout);
        assert!(!stdout.contains("LEAK") && stdout.contains("contained"), "{stdout}");
        let outcome = sandbox.exec(&request(check_clean));
        let stdout = String::from_utf8_lossy(&outcome.stdout);
        assert!(!stdout.contains("LEAK") && stdout.contains("contained"), "{outcome:?}");
        let outcome = sandbox.exec(&request(kill_everything));
        assert_eq!(outcome.status, Status::Signaled, "{outcome:?}");
        assert!(!String::from_utf8_lossy(&outcome.stdout).contains("LEAK"));
        let outcome = sandbox.exec(&request(check_clean));
        let stdout = String::from_utf8_lossy(&outcome.stdout);
        assert!(!stdout.contains("LEAK") && stdout.contains("contained"), "{outcome:?}");
    }
    assert_eq!(sandbox.jails_started(), built, "every run reused the one warm jail");
    // Nothing of the runs lives on the host either.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(&marker), "escaped process {:?}", entry.path());
    }
}

// ----- network -------------------------------------------------------------------------------------------

#[test]
fn host_loopback_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let code = format!(
        r#"
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=1).close(); leak("connected to host loopback")
except OSError:
    pass
print("contained")
"#
    );
    contained(&code);
    assert!(listener.accept().is_err(), "the host listener was reached");
}

#[test]
fn cloud_metadata_is_unreachable() {
    let code = r#"
for host in ["169.254.169.254", "10.0.0.1", "8.8.8.8"]:
    try:
        socket.create_connection((host, 80), timeout=1).close(); leak(host)
    except OSError:
        pass
print("contained")
"#;
    contained(code);
}

#[test]
fn dns_does_not_resolve() {
    let code = r#"
try:
    socket.getaddrinfo("example.com", 80); leak("dns resolved")
except OSError:
    pass
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"\0" * 12, ("8.8.8.8", 53)); leak("udp sent")
except OSError:
    pass
print("contained")
"#;
    contained(code);
}

// ----- network on: egress through the user-mode stack, under the policy ------------------------------------

/// A request with network access.
fn networked(code: &str) -> ExecRequest {
    ExecRequest { network: true, ..request(code) }
}

/// The host's own IPv4 addresses, from the kernel's routing tables (`/32 host LOCAL` entries).
fn host_addresses() -> Vec<String> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").expect("/proc/net/fib_trie");
    let lines: Vec<&str> = trie.lines().map(str::trim).collect();
    let mut addresses: Vec<String> = lines
        .windows(2)
        .filter(|w| w[1] == "/32 host LOCAL")
        .filter_map(|w| w[0].strip_prefix("|-- ").map(str::to_owned))
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

#[test]
fn network_on_refuses_loopback_private_metadata_and_the_hosts_own_addresses() {
    // A host listener on every address: a connection that got through the stack would land here.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    udp.set_nonblocking(true).unwrap();
    let hosts = host_addresses();
    assert!(hosts.iter().any(|a| a != "127.0.0.1"), "no host address besides loopback: {hosts:?}");
    let code = format!(
        r#"
refused = ["10.1.2.3", "10.0.2.50", "10.0.2.3", "10.0.2.2", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
           "0.0.0.1", "224.0.0.1", "255.255.255.255"] + {hosts:?}
for host in refused:
    for port in (80, {port}):
        try:
            socket.create_connection((host, port), timeout=2).close(); leak(f"connected to {{host}}:{{port}}")
        except PermissionError:
            pass  # EACCES: the policy's refusal, at connect time
        except OSError as e:
            # The run's own addresses, and the stack's gateway, which refuses to relay to the host's loopback.
            if host not in ("127.0.0.1", "0.0.0.1", "10.0.2.2", "10.0.2.3"):
                leak(f"{{host}}:{{port}} not refused by the policy but by {{e!r}}")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"probe", (host, {udp_port}))
        # The run's own addresses take datagrams, and the stack's gateway drops them; the host's listener
        # must receive none.
        if host not in ("127.0.0.1", "10.0.2.2", "10.0.2.3"):
            leak(f"udp to {{host}}")
    except OSError:
        pass
# The loopback is the run's own, not the host's.
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close(); leak("connected to host loopback")
except OSError:
    pass
# Bound to the tap device, a refused address is taken as on-link: the stack answers for its own addresses
# only, and relays nothing sent to them.
for host in {hosts:?} + ["10.0.2.2", "10.0.2.3", "10.1.2.3"]:
    for port in ({port}, 53):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"tap0")
            s.connect((host, port)); leak(f"connected to {{host}}:{{port}} bound to the device")
        except OSError:
            pass
# No IPv6 egress at all.
for host in ("fd00::2", "fe80::1", "::ffff:169.254.169.254", "2001:db8::1"):
    try:
        socket.create_connection((host, 80), timeout=2).close(); leak(f"connected to {{host}}")
    except OSError:
        pass
print("contained")
"#
    );
    let mut r = networked(&code);
    r.limits.wall_ms = 30_000;
    r.limits.cpu_ms = 30_000;
    let Some(o) = expect(r, Status::Ok) else { return };
    assert!(String::from_utf8_lossy(&o.stdout).contains("contained"), "probe did not finish");
    assert!(listener.accept().is_err(), "a host listener was reached");
    assert!(udp.recv_from(&mut [0u8; 64]).is_err(), "a host datagram socket was reached");
}

#[test]
fn network_on_attempts_public_addresses() {
    // 203.0.113.0/24 is public as far as the policy goes: the stack connects (where the host has a way out)
    // or the attempt ends in a timeout or an error from the stack, never in the policy's EACCES.
    let code = r#"
import time
start = time.monotonic()
try:
    socket.create_connection(("203.0.113.7", 80), timeout=3).close()
    print("connected")
except PermissionError as e:
    leak(f"public address refused by the policy: {e!r}")
except OSError as e:
    print("attempted:", type(e).__name__)
print("contained")
"#;
    let Some(o) = expect(networked(code), Status::Ok) else { return };
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{stdout}");
    assert!(stdout.contains("contained") && (stdout.contains("attempted") || stdout.contains("connected")), "{stdout}");
}

/// Two network namespaces joined by a veth link, with addresses the policy counts as public (TEST-NET-2): the
/// jail helper runs in `near` (its host network), a listener in `far` (the outside world). Removed on drop.
struct TestNetwork {
    near: String,
    far: String,
}

impl TestNetwork {
    fn new() -> TestNetwork {
        let id = std::process::id();
        let network = TestNetwork { near: format!("nova-egress-{id}-near"), far: format!("nova-egress-{id}-far") };
        let (near, far) = (network.near.as_str(), network.far.as_str());
        for args in [
            &["netns", "add", near][..],
            &["netns", "add", far],
            &["link", "add", "near0", "netns", near, "type", "veth", "peer", "name", "far0", "netns", far],
            &["-n", near, "addr", "add", "198.51.100.1/24", "dev", "near0"],
            &["-n", far, "addr", "add", "198.51.100.2/24", "dev", "far0"],
            &["-n", near, "link", "set", "near0", "up"],
            &["-n", far, "link", "set", "far0", "up"],
            &["-n", near, "link", "set", "lo", "up"],
        ] {
            let status = std::process::Command::new("ip").args(args).status().expect("running ip (iproute2)");
            assert!(status.success(), "ip {args:?}: {status}");
        }
        network
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for name in [&self.near, &self.far] {
            let _ = std::process::Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
}

#[test]
fn network_on_reaches_a_public_listener_end_to_end() {
    if jail().is_none() || !is_root() {
        return; // Named network namespaces need root.
    }
    let network = TestNetwork::new();
    // The outside world: a listener in `far` that greets one connection.
    let listener = r#"
import socket
s = socket.socket(); s.bind(("198.51.100.2", 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, peer = s.accept(); c.sendall(b"hello from " + peer[0].encode()); c.close()
"#;
    let mut far = std::process::Command::new("ip")
        .args(["netns", "exec", &network.far, "python3", "-c", listener])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the listener");
    let mut port = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(far.stdout.as_mut().unwrap()), &mut port).unwrap();
    let port: u16 = port.trim().parse().expect("the listener's port");
    // The jail helper in `near`: its egress goes through the veth link.
    let netns = format!("--net=/var/run/netns/{}", network.near);
    let helper = env!("CARGO_BIN_EXE_nova-sandbox-helper");
    let config = JailConfig::detect("/usr/bin/nsenter", &[&netns, "--", helper]).expect("python3 on PATH");
    let sandbox = JailSandbox::new(config);
    let code = format!(
        r#"
s = socket.create_connection(("198.51.100.2", {port}), timeout=5)
print(s.recv(100).decode())
try:
    socket.create_connection(("198.51.100.1", {port}), timeout=2); leak("reached the host's own address")
except PermissionError:
    print("host address refused")
"#
    );
    let outcome = sandbox.exec(&networked(&code));
    let _ = far.kill();
    let _ = far.wait();
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
    // The listener saw the connection come from the host side of the link: the stack relayed it.
    assert_eq!(stdout, "hello from 198.51.100.1\nhost address refused\n");
}

#[test]
fn network_on_resolves_names_or_fails_clearly() {
    let code = r#"
assert socket.getaddrinfo("localhost", 80, socket.AF_INET)[0][4][0] == "127.0.0.1"
try:
    socket.getaddrinfo("example.com", 80)
    print("resolved")
except socket.gaierror as e:
    print("not resolved:", e)
print("contained")
"#;
    let mut r = networked(code);
    r.limits.wall_ms = 20_000;
    let Some(o) = expect(r, Status::Ok) else { return };
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{stdout}");
    assert!(stdout.contains("contained") && (stdout.contains("resolved")), "{stdout}");
}

#[test]
fn landlock_refuses_tcp_without_network_and_allows_it_with() {
    let code = r#"
# landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION): the kernel's Landlock ABI, or -1.
abi = libc.syscall(444, ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(1))
s = socket.socket()
try:
    s.bind(("127.0.0.1", 0))
    print("bound", abi)
except PermissionError:
    print("refused", abi)
"#;
    let Some(off) = expect(request(code), Status::Ok) else { return };
    let Some(on) = expect(networked(code), Status::Ok) else { return };
    let (off, on) = (String::from_utf8_lossy(&off.stdout), String::from_utf8_lossy(&on.stdout));
    let abi: i64 = off.split_whitespace().nth(1).and_then(|a| a.parse().ok()).expect("an ABI number");
    // TCP rules came with Landlock ABI 4.
    let expected_off = if abi >= 4 { "refused" } else { "bound" };
    assert!(off.starts_with(expected_off), "network off, Landlock ABI {abi}: {off}");
    assert!(on.starts_with("bound"), "network on: {on}");
}

/// Processes named `name` among this test process's descendants.
fn descendants_named(name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let parent_of = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim() == name).unwrap_or(false) {
            let mut ancestor = parent_of(pid);
            while let Some(p) = ancestor.filter(|&p| p > 1) {
                if p == me {
                    found.push(pid);
                    break;
                }
                ancestor = parent_of(p);
            }
        }
    }
    found
}

/// Waits until no process named `name` descends from this test process (the helper kills the network stack
/// before it reports the outcome and reaps it right after), for at most 10 s.
fn all_gone(name: &str) -> Vec<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = descendants_named(name);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_network_stack_dies_with_the_execution() {
    expect(networked("print('ok')"), Status::Ok);
    assert_eq!(all_gone("slirp4netns"), Vec::<i32>::new(), "left after a run");
    let r = ExecRequest { limits: Limits { wall_ms: 1_000, ..request("").limits }, ..networked("time.sleep(60)") };
    expect(r, Status::Timeout);
    assert_eq!(all_gone("slirp4netns"), Vec::<i32>::new(), "left after the deadline");
}

#[test]
fn raw_and_packet_sockets_are_refused() {
    let code = r#"
for family, kind, proto in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                            (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
                            (socket.AF_PACKET, socket.SOCK_RAW, 0), (socket.AF_PACKET, socket.SOCK_DGRAM, 0)]:
    try:
        socket.socket(family, kind, proto).close(); leak(f"socket {family} {kind}")
    except OSError:
        pass
print("contained")
"#;
    contained(code);
}

// ----- kernel interfaces ---------------------------------------------------------------------------------

#[test]
fn ptrace_is_refused() {
    let code = r#"
PTRACE_TRACEME, PTRACE_ATTACH = 0, 16
if libc.ptrace(PTRACE_ATTACH, 1, 0, 0) == 0: leak("attached to init")
if libc.ptrace(PTRACE_TRACEME, 0, 0, 0) == 0: leak("traceme")
print("contained")
"#;
    contained(code);
}

#[test]
fn mount_is_refused() {
    let code = r#"
os.makedirs("/work/m", exist_ok=True)
if libc.mount(b"none", b"/work/m", b"tmpfs", 0, None) == 0:
    libc.umount2(b"/work/m", 2); leak("mounted tmpfs")
if libc.mount(b"/work", b"/work/m", None, 4096, None) == 0:   # MS_BIND
    libc.umount2(b"/work/m", 2); leak("bind mounted")
if libc.umount2(b"/proc", 2) == 0: leak("unmounted /proc")
if libc.chroot(b"/work") == 0: leak("chroot")
print("contained")
"#;
    contained(code);
}

#[test]
fn unshare_and_setns_are_refused() {
    let code = r#"
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x00020000, 0x40000000
for flags in [CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET]:
    if libc.unshare(flags) == 0: leak(f"unshare {flags:#x}")
fd = os.open("/proc/1/ns/mnt", os.O_RDONLY) if os.path.exists("/proc/1/ns/mnt") else -1
if fd >= 0 and libc.setns(fd, 0) == 0: leak("setns")
print("contained")
"#;
    contained(code);
}

/// Raw syscalls the filter must refuse, by x86_64 number, tried with harmless arguments.
#[cfg(target_arch = "x86_64")]
#[test]
fn denied_syscalls_fail() {
    let code = r#"
calls = {"keyctl": (250, 0, 0, 0, 0), "add_key": (248, 0, 0, 0, 0), "bpf": (321, 0, 0, 0),
         "perf_event_open": (298, 0, 0, -1, -1, 0), "userfaultfd": (323, 0), "io_uring_setup": (425, 1, 0),
         "kexec_load": (246, 0, 0, 0, 0), "init_module": (175, 0, 0, 0), "finit_module": (313, -1, 0, 0),
         "delete_module": (176, 0, 0), "process_vm_readv": (310, 1, 0, 0, 0, 0, 0), "setns": (308, -1, 0),
         "unshare": (272, 0x10000000), "clone3": (435, 0, 0), "open_by_handle_at": (304, -1, 0, 0),
         "reboot": (169, 0, 0, 0, 0), "swapon": (167, 0, 0), "syslog": (103, 3, 0, 0),
         "sethostname": (170, 0, 0), "personality": (135, 0xffffffff), "iopl": (172, 3), "acct": (163, 0),
         "pivot_root": (155, 0, 0), "fsopen": (430, 0, 0), "open_tree": (428, -1, 0, 0)}
for name, (nr, *args) in calls.items():
    if not sys_denied(nr, *args): leak(name)
    elif ctypes.get_errno() not in (errno.EPERM, errno.ENOSYS): leak(f"{name} reached the kernel: errno {ctypes.get_errno()}")
print("contained")
"#;
    contained(code);
}

/// Calls the allow list does not name fail with the filter's `EPERM`: one the kernel gained after the list was
/// written (`memfd_secret`, which would answer a descriptor), numbers no kernel has yet, and x32 numbers (bit
/// 30 set), which share x86_64's architecture and which a kernel without x32 would answer `ENOSYS`.
#[cfg(target_arch = "x86_64")]
#[test]
fn calls_off_the_allow_list_fail_with_eperm() {
    let code = r#"
X32 = 0x40000000
calls = {"memfd_secret": (447, 0), "syscall 500": (500, 0), "syscall 1023": (1023, 0),
         "x32 getpid": (X32 | 39,), "x32 memfd_secret": (X32 | 447, 0), "x32 mount": (X32 | 165, 0, 0, 0, 0, 0)}
for name, (nr, *args) in calls.items():
    if not sys_denied(nr, *args): leak(name)
    elif ctypes.get_errno() != errno.EPERM: leak(f"{name}: errno {ctypes.get_errno()}, not the filter's EPERM")
print("contained")
"#;
    contained(code);
}

#[test]
fn keyctl_is_refused() {
    let code = r#"
KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3
if not sys_denied(250, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0): leak("keyctl")
print("contained")
"#;
    contained(code);
}

#[test]
fn bpf_is_refused() {
    let code = r#"
attr = ctypes.create_string_buffer(128)
if libc.syscall(321, 0, attr, 128) != -1: leak("bpf map created")
print("contained")
"#;
    contained(code);
}

#[test]
fn rlimits_cannot_be_raised() {
    let code = r#"
import resource
for res in [resource.RLIMIT_NOFILE, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE]:
    soft, hard = resource.getrlimit(res)
    try:
        resource.setrlimit(res, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)); leak(f"raised {res}")
    except (ValueError, OSError):
        pass
print("contained")
"#;
    contained(code);
}

// ----- files in and out ----------------------------------------------------------------------------------

#[test]
fn output_symlinks_are_never_followed() {
    let code = r#"
os.symlink("/etc/passwd", "/work/passwd")
os.symlink("/proc/1/environ", "/work/environ")
os.symlink(sys.executable, "/work/python")
os.makedirs("/work/d"); os.symlink("/usr", "/work/d/usr")
open("/work/real.txt", "w").write("real")
print("contained")
"#;
    let Some(o) = contained(code) else { return };
    let names: Vec<&str> = o.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["real.txt"], "only the regular file comes back");
    assert!(o.files_truncated, "skipped symlinks are flagged");
}

#[test]
fn an_output_folder_returns_its_own_files_and_never_a_symlink() {
    let mut r = request("os.makedirs('out/sub')\nopen('out/a.csv','w').write('a')\nopen('out/sub/b.txt','w').write('b')\nprint('contained')");
    r.files = vec![InputFile { path: "in.txt".into(), contents: b"input".to_vec() }];
    r.output_dir = Some("out".into());
    let Some(o) = expect(r, Status::Ok) else { return };
    let names: Vec<&str> = o.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["a.csv", "sub/b.txt"], "the folder's files, named from it, and not the inputs");
    assert!(!o.files_truncated);

    // No folder: nothing, and nothing left out.
    let mut r = request("print('contained')");
    r.output_dir = Some("out".into());
    let Some(o) = expect(r, Status::Ok) else { return };
    assert!(o.files.is_empty() && !o.files_truncated);

    // The folder as a symlink to the jail's own files, or a name that is not one plain name: nothing.
    for (code, dir) in [("os.symlink('/etc', 'out')", "out"), ("os.makedirs('a/b')", "a/b"), ("pass", "..")] {
        let mut r = request(&format!("{code}\nprint('contained')"));
        r.output_dir = Some(dir.into());
        let Some(o) = expect(r, Status::Ok) else { return };
        assert!(o.files.is_empty(), "{dir}: {:?}", o.files.iter().map(|f| &f.path).collect::<Vec<_>>());
        assert!(o.files_truncated, "{dir}: a refused folder is flagged");
    }
}

#[test]
fn input_file_names_with_dotdot_are_refused() {
    for path in ["../escape.txt", "/etc/escape.txt", "a/../../escape.txt", ""] {
        let mut r = request("print('contained')");
        r.files = vec![InputFile { path: path.into(), contents: b"x".to_vec() }];
        let Some(o) = expect(r, Status::SandboxError) else { return };
        assert!(o.error.unwrap_or_default().contains("not a plain relative path"));
    }
    assert!(!std::path::Path::new("/tmp/escape.txt").exists());
    assert!(!std::path::Path::new("/etc/escape.txt").exists());
}

#[test]
fn input_files_cannot_be_planted_through_symlinks_at_dispatch() {
    // Two files with the same name: the second must not overwrite (create_new) and the run is refused.
    let mut r = request("print('contained')");
    r.files = vec![
        InputFile { path: "a.txt".into(), contents: b"1".to_vec() },
        InputFile { path: "a.txt".into(), contents: b"2".to_vec() },
    ];
    expect(r, Status::SandboxError);
}

// ----- ordinary behaviour --------------------------------------------------------------------------------

#[test]
fn statuses_stdin_files_and_env_are_reported() {
    let mut r = request("print(input()); print(os.environ['GREETING']); print(open('in.txt').read())\nopen('out.txt','w').write('done')");
    r.stdin = b"from stdin\n".to_vec();
    r.env = vec![("GREETING".into(), "hello".into())];
    r.files = vec![InputFile { path: "in.txt".into(), contents: b"from a file".to_vec() }];
    let Some(o) = expect(r, Status::Ok) else { return };
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from stdin\nhello\nfrom a file\n");
    assert!(o.files.iter().any(|f| f.path == "out.txt" && f.contents == b"done"));
    assert!(o.cpu_time > Duration::ZERO && o.peak_memory_bytes > 0);

    let code = "import atexit\natexit.register(lambda: print('bye'))\nraise ValueError('boom')";
    let Some(o) = expect(request(code), Status::NonzeroExit) else { return };
    assert_eq!(o.exit_code, Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "bye\n", "atexit handlers run");
    assert!(String::from_utf8_lossy(&o.stderr).contains("ValueError: boom"));

    // A file left open at exit is still flushed.
    let Some(o) = expect(request("f = open('left-open.txt', 'w')\nf.write('kept')"), Status::Ok) else { return };
    assert!(o.files.iter().any(|f| f.path == "left-open.txt" && f.contents == b"kept"), "{:?}", o.files);

    let Some(o) = expect(request("sys.exit(3)"), Status::NonzeroExit) else { return };
    assert_eq!(o.exit_code, Some(3));
    let Some(o) = expect(request("os.kill(os.getpid(), signal.SIGABRT)"), Status::Signaled) else { return };
    assert_eq!(o.signal, Some(libc_sigabrt()));
    let Some(o) = expect(ExecRequest { network: true, ..request("print(1)") }, Status::Ok) else { return };
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n", "network on runs a program as usual");
}

/// What the jail's programs do, under the allow list: threads, subprocesses of `/bin/sh` over pipes, a
/// session and its process group, signals and timers, select, poll and epoll, files, sqlite3, ssl and hashlib,
/// asyncio, and numpy where the host's Python has it.
#[test]
fn ordinary_programs_run_under_the_allow_list() {
    let code = r#"
import json, queue, sqlite3, ssl, hashlib, threading, selectors, select, asyncio, concurrent.futures, shutil
out = []
q = queue.Queue()
threads = [threading.Thread(target=lambda i=i: q.put(hashlib.sha256(bytes([i])).hexdigest())) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
out.append(f"threads {q.qsize()}")
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    out.append(f"pool {sum(pool.map(lambda x: x * x, range(10)))}")
r = subprocess.run(["/bin/sh", "-c", "echo hi | cat; ls /; sleep 0.01 & wait"], capture_output=True, text=True)
out.append(f"sh {r.returncode} {r.stdout.split()[0]} {'usr' in r.stdout.split()}")
# A session's subprocess: a session of its own, pipes both ways, ended through its process group.
p = subprocess.Popen(["/bin/sh", "-c", "read x; echo got $x; exec sleep 30"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, start_new_session=True)
p.stdin.write(b"line\n"); p.stdin.flush()
sel = selectors.DefaultSelector(); sel.register(p.stdout, selectors.EVENT_READ)
sel.select(5)
out.append(f"session {p.stdout.readline().decode().strip()} {os.getsid(p.pid) == p.pid}")
os.killpg(p.pid, signal.SIGTERM)
out.append(f"killpg {p.wait(5)}")
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append("usr1"))
signal.signal(signal.SIGALRM, lambda *a: got.append("alrm"))
os.kill(os.getpid(), signal.SIGUSR1)
signal.setitimer(signal.ITIMER_REAL, 0.01)
time.sleep(0.2)
out.append(f"signals {' '.join(got)}")
r, w = os.pipe(); os.write(w, b"x")
polled = select.poll(); polled.register(r, select.POLLIN)
out.append(f"select {select.select([r], [], [], 1)[0] == [r]} poll {polled.poll(1000) == [(r, select.POLLIN)]}")
os.mkdir("d"); open("d/a.json", "w").write(json.dumps({"a": 1})); os.rename("d/a.json", "d/b.json")
shutil.copy2("d/b.json", "d/c.json"); os.unlink("d/b.json")
db = sqlite3.connect("d/db.sqlite"); db.execute("create table t(x)"); db.execute("insert into t values (42)"); db.commit()
out.append(f"files {' '.join(sorted(os.listdir('d')))} {os.stat('d/c.json').st_size} {db.execute('select x from t').fetchone()[0]}")
db.close(); shutil.rmtree("d")
ssl.create_default_context()
async def echo():
    proc = await asyncio.create_subprocess_exec("/bin/echo", "async", stdout=asyncio.subprocess.PIPE)
    return (await proc.communicate())[0].decode().strip()
out.append(asyncio.run(echo()))
try:
    import numpy
    out.append(f"numpy {numpy.linalg.inv(numpy.eye(3) * 2).sum()}")
except ImportError:
    out.append("numpy 1.5")
print("\n".join(out))
"#;
    let Some(o) = expect(request(code), Status::Ok) else { return };
    let expected = "threads 8\npool 285\nsh 0 hi True\nsession got line True\nkillpg -15\nsignals usr1 alrm\n\
                    select True poll True\nfiles c.json db.sqlite 8 42\nasync\nnumpy 1.5\n";
    assert_eq!(String::from_utf8_lossy(&o.stdout), expected, "stderr: {}", String::from_utf8_lossy(&o.stderr));
}

/// A shell with coreutils, under the allow list: files, pipes, background jobs, `kill` and `wait`, `ps`.
#[test]
fn a_shell_with_coreutils_runs_under_the_allow_list() {
    let code = r#"
script = """
set -e
mkdir -p a/b
echo one two three > a/b/f
cat a/b/f | wc -w
mv a/b/f a/g
ls a
grep -c two a/g
rm -r a
sleep 30 &
kill $!
wait $! || echo "killed $?"
(sleep 0.01; echo background) &
wait
ps -e -o comm= | grep -cx ps
"""
r = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
print(r.stdout, end=""); print(r.stderr, end="", file=sys.stderr)
sys.exit(r.returncode)
"#;
    let Some(o) = expect(request(code), Status::Ok) else { return };
    let expected = "3\nb\ng\n1\nkilled 143\nbackground\n1\n";
    assert_eq!(String::from_utf8_lossy(&o.stdout), expected, "stderr: {}", String::from_utf8_lossy(&o.stderr));
}

fn libc_sigabrt() -> i32 {
    6
}

// ----- sessions ----------------------------------------------------------------------------------------------

fn open_session(limits: Option<Limits>) -> Option<nova_sandbox::session::Session> {
    use nova_sandbox::session::SessionSpec;
    let sandbox = jail()?;
    let mut spec = SessionSpec::default();
    if let Some(limits) = limits {
        spec.limits = limits;
    }
    Some(sandbox.open_session(&spec).expect("a session opens"))
}

/// Runs `code` (with the probes' prelude) in `session`; returns its stdout, after checking no probe leaked.
fn in_session(session: &nova_sandbox::session::Session, code: &str) -> String {
    use nova_sandbox::session::Event;
    let events: Vec<Event> =
        session.run_code(&format!("{PRELUDE}\n{code}"), None, &Default::default()).unwrap().collect();
    let out: String = events
        .iter()
        .filter_map(|e| match e {
            Event::Stdout(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect();
    assert!(!out.contains("LEAK"), "containment failed: {out}\n{events:?}");
    assert!(matches!(events.last(), Some(Event::Done(_))), "{events:?}");
    out
}

#[test]
fn one_sessions_state_never_reaches_another() {
    let Some(a) = open_session(None) else { return };
    let b = open_session(None).unwrap();
    in_session(&a, "secret = 'a'\nopen('/work/secret-a', 'w').write('a'); open('/tmp/secret-a', 'w').write('a')");
    let sleeper = a.spawn(&nova_sandbox::session::Command { cmd: "sleep 300".into(), ..Default::default() }).unwrap();
    let probe = r#"
for d in ["/work", "/tmp"]:
    if "secret-a" in os.listdir(d): leak(d)
if "secret" in globals(): leak("variables")
if any(b"sleep" in open(f"/proc/{p}/cmdline", "rb").read() for p in os.listdir("/proc") if p.isdigit()):
    leak("the other session's processes")
print("contained")
"#;
    assert!(in_session(&b, probe).contains("contained"));
    assert!(b.processes().unwrap().is_empty());
    drop(sleeper);
}

/// Host processes whose command line holds `marker`.
fn host_processes_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// What a session's jail holds on the host, named after its helper's pid: its cgroup and its mount point.
fn jail_leftovers(helper: u32) -> Vec<String> {
    let prefix = format!("nova-jail-{helper}-");
    let mut left = Vec::new();
    for dir in [
        "/sys/fs/cgroup/nova-sandbox",
        "/sys/fs/cgroup/memory/nova-sandbox",
        "/sys/fs/cgroup/pids/nova-sandbox",
        "/tmp",
    ] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                left.push(entry.path().display().to_string());
            }
        }
    }
    left
}

/// Checks that `jail_leftovers` finds a session's jail while the session is known to be alive, so that its
/// finding nothing later means something. Not for a session with a short `wall_ms`: it may have ended.
fn assert_probe_sees_live_jail(session: &nova_sandbox::session::Session) {
    assert!(session.end().is_none(), "the session is alive");
    assert!(!jail_leftovers(session.helper_pid()).is_empty(), "the probe sees the live jail");
}

/// Checks that everything of a session that held `marker`'s processes is gone from the host.
fn assert_nothing_left(session: &nova_sandbox::session::Session, marker: &str) {
    let helper = session.helper_pid();
    let end = session.wait_ended(Duration::from_secs(20)).expect("the session ended");
    assert!(!std::path::Path::new(&format!("/proc/{helper}")).exists(), "the helper is gone");
    assert_eq!(host_processes_with(marker), Vec::<i32>::new(), "processes left ({end:?})");
    assert_eq!(jail_leftovers(helper), Vec::<String>::new(), "cgroup or mount point left ({end:?})");
}

#[test]
fn a_killed_session_leaves_no_process_or_file() {
    let Some(session) = open_session(None) else { return };
    let marker = format!("31{}.25", std::process::id());
    // A background command, a double-forked daemon and a file in each writable place.
    let command = format!("sleep {marker} & (setsid sleep {marker} &) ; echo x > /tmp/f; echo y > /work/f; wait");
    let _running = session.spawn(&nova_sandbox::session::Command { cmd: command, ..Default::default() }).unwrap();
    in_session(&session, &format!("subprocess.Popen(['sleep', '{marker}'], start_new_session=True)"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host_processes_with(&marker).len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(host_processes_with(&marker).len() >= 3, "the sleepers run");
    assert_probe_sees_live_jail(&session);
    session.close();
    assert_nothing_left(&session, &marker);
}

#[test]
fn a_session_past_its_timeout_is_gone() {
    let limits = Limits { wall_ms: 1_500, ..nova_sandbox::session::SessionSpec::default_limits() };
    let Some(session) = open_session(Some(limits)) else { return };
    let marker = format!("32{}.25", std::process::id());
    let _running =
        session.spawn(&nova_sandbox::session::Command { cmd: format!("sleep {marker}"), ..Default::default() });
    assert_nothing_left(&session, &marker);
    assert_eq!(session.end().unwrap().reason, "timeout");
    let after = session.run_code("1", None, &Default::default());
    assert!(
        after.is_err()
            || after.unwrap().any(|e| matches!(e, nova_sandbox::session::Event::Fail(f) if f.kind == "ended"))
    );
}

#[test]
fn a_session_over_its_memory_limit_ends() {
    let limits = Limits { memory_bytes: 96 << 20, ..nova_sandbox::session::SessionSpec::default_limits() };
    let Some(session) = open_session(Some(limits)) else { return };
    let hog: Vec<_> = session.run_code("x = bytearray(400 << 20)", None, &Default::default()).unwrap().collect();
    let end = session.wait_ended(Duration::from_secs(20)).expect("ended");
    assert_eq!(end.reason, "memory_limit", "{hog:?}");
}

#[test]
fn a_session_that_floods_or_forges_its_channel_harms_only_itself() {
    use nova_sandbox::session::Event;
    let Some(session) = open_session(None) else { return };
    let bystander = open_session(None).unwrap();
    in_session(&bystander, "kept = 1");
    // Forged events on every pipe the agent holds: unknown ids and kinds, then a reply for a call that does
    // not exist, then garbage; the session goes on answering its own calls.
    let forge = r#"
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
            os.write(fd, b'{"id":999999,"ev":"done"}\n{"id":1,"ev":"bogus"}\nnot json at all\n{"id":0,"ev":"ended","end":{"reason":"forged","cpu_ms":1,"peak_memory_bytes":1}}\n')
    except OSError:
        pass
print("contained")
"#;
    assert!(in_session(&session, forge).contains("contained"));
    assert!(session.end().is_none(), "a forged end does not end the session");
    assert!(in_session(&session, "print('still', 'here')").contains("still here"));
    // A line past the limit ends the session, and only it. The channel is the agent's own descriptor, found
    // through its frame as hostile code could; nothing else is written meanwhile, so the line stays whole.
    let flood = r#"
channel = sys._getframe(1).f_globals["OUT"]
os.write(channel, b"x" * (6 << 20))
"#;
    let _: Vec<Event> = session.run_code(&format!("{PRELUDE}\n{flood}"), None, &Default::default()).unwrap().collect();
    let end = session.wait_ended(Duration::from_secs(20)).expect("the flooding session ended");
    assert_eq!(end.reason, "failed", "{end:?}");
    assert!(in_session(&bystander, "print(kept)").contains('1'), "the other session is untouched");
}

#[test]
fn a_session_whose_agent_stops_reading_still_closes_at_once() {
    let Some(session) = open_session(None) else { return };
    // The agent stopped (its command sends it SIGSTOP): it reads no request again.
    let stop = nova_sandbox::session::Command { cmd: "kill -STOP $PPID".into(), ..Default::default() };
    let _stopper = session.spawn(&stop).unwrap();
    std::thread::scope(|scope| {
        // A request larger than every buffer on the way waits for room...
        let writer = scope.spawn(|| session.write_file("big.bin", &vec![7u8; 8 << 20]));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!writer.is_finished(), "the write waits for the agent");
        // ...and closing does not wait behind it: the session ends, the writer gives up.
        let closed = std::time::Instant::now();
        session.close();
        let end = session.wait_ended(Duration::from_secs(10)).expect("the session ended");
        assert_eq!(end.reason, "closed");
        assert!(writer.join().unwrap().is_err());
        assert!(closed.elapsed() < Duration::from_secs(10));
    });
}
