//! `nova bench sandbox`: `print(1)` through the warm pool and cold jails, next to a bare `python3 -c` and
//! bubblewrap running the same, in one run (the machines are shared and noisy: compare ratios); then
//! sessions: opening one, a code run and a command in a live one, and the memory of many idle ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use std::collections::HashMap;

use nova_sandbox::jail::JailSandbox;
use nova_sandbox::session::{Command as SessionCommand, Event, Session, SessionSpec};
use nova_sandbox::{ExecRequest, Sandbox, Status};

#[derive(Args)]
pub struct SandboxBenchArgs {
    /// Executions measured per variant.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Warm jails kept ready.
    #[arg(long, default_value_t = 8)]
    pool: usize,
    /// Callers running executions at once for the throughput figure.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Idle sessions held open at once for the memory figure.
    #[arg(long, default_value_t = 100)]
    idle_sessions: usize,
    /// A Python with E2B's SDKs (`e2b`, `e2b-code-interpreter`): the same sessions are then measured through
    /// them, against a `nova serve --e2b-listen` this bench starts. `scripts/test` makes one
    /// (target/e2b-sdk/bin/python).
    #[arg(long, env = "NOVA_E2B_PYTHON")]
    e2b_python: Option<PathBuf>,
}

const CODE: &str = "print(1)";

pub fn run(args: SandboxBenchArgs, interpreter: Option<&Path>) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.runs > 0 && args.pool > 0 && args.concurrency > 0,
        "--runs, --pool and --concurrency must be positive"
    );
    let config = crate::exec::jail_config(args.pool, interpreter)?;
    let python = config.python.executable.clone();
    let prefix_bind = config.python.binds.last().cloned().unwrap_or_else(|| PathBuf::from("/usr"));
    println!("nova bench sandbox: {} runs of {CODE:?} per variant; interpreter {}", args.runs, python.display());
    println!("{:<44} {:>9} {:>9} {:>10}", "variant", "p50 ms", "p99 ms", "runs/s");

    let bare = time_runs(args.runs, || command_ok(Command::new(&python).args(["-c", CODE])))?;
    print_row("bare python3 -c (with site)", &bare);
    let bare_s = time_runs(args.runs, || command_ok(Command::new(&python).args(["-I", "-S", "-c", CODE])))?;
    print_row("bare python3 -I -S -c (as in the jail)", &bare_s);

    match which("bwrap") {
        Some(bwrap) => {
            let bw = time_runs(args.runs, || command_ok(&mut bwrap_command(&bwrap, &python, &prefix_bind)))?;
            print_row("bwrap --unshare-all python3 -c", &bw);
        }
        None => println!("{:<44} bwrap not installed (apt-get install bubblewrap); skipped", "bwrap"),
    }

    let cold_sandbox = JailSandbox::new(crate::exec::jail_config(0, interpreter)?);
    cold_sandbox.check().map_err(anyhow::Error::msg).context("the jail does not work here")?;
    let request = ExecRequest { code: CODE.into(), ..Default::default() };
    let cold = time_runs(args.runs, || outcome_ok(cold_sandbox.exec(&request)))?;
    print_row("nova jail, cold", &cold);

    let sandbox = JailSandbox::new(config);
    anyhow::ensure!(sandbox.wait_warm(Duration::from_secs(30)), "the warm pool did not fill in 30 s");
    let idle_memory = sandbox.idle_jail_memory();
    // Latency: one execution at a time, each taking a ready jail (the wait for a refill, when a jail was
    // replaced, is not counted).
    let mut warm = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        sandbox.wait_warm(Duration::from_secs(10));
        let start = Instant::now();
        outcome_ok(sandbox.exec(&request))?;
        warm.push(start.elapsed());
    }
    print_row("nova jail, warm pool (latency)", &Timings::new(warm, None));

    // The same with network access: each execution starts the user-mode network stack and attaches it.
    let networked = ExecRequest { network: true, ..request.clone() };
    let first = sandbox.exec(&networked);
    if first.status == Status::SandboxError {
        let why = first.error.unwrap_or_default();
        println!("{:<44} skipped: {why}", "nova jail, warm pool, network on");
    } else {
        outcome_ok(first)?;
        let mut warm_net = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            sandbox.wait_warm(Duration::from_secs(10));
            let start = Instant::now();
            outcome_ok(sandbox.exec(&networked))?;
            warm_net.push(start.elapsed());
        }
        print_row("nova jail, warm pool, network on (latency)", &Timings::new(warm_net, None));
    }

    // Throughput: callers back to back, each run in an idle warm jail (the jails are reused); a miss runs
    // cold.
    sandbox.wait_warm(Duration::from_secs(30));
    let done = AtomicUsize::new(0);
    let start = Instant::now();
    let total = args.runs * 2;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    while done.fetch_add(1, Ordering::SeqCst) < total {
                        outcome_ok(sandbox.exec(&request))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("bench worker panicked")?;
        }
        Ok(())
    })?;
    let per_second = total as f64 / start.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>9} {:>9} {:>10.0}",
        format!("nova jail, warm pool, {} callers (throughput)", args.concurrency),
        "",
        "",
        per_second
    );

    let idle_session_memory = bench_sessions(&sandbox, &cold_sandbox, &args)?;
    match &args.e2b_python {
        Some(python) => bench_e2b_sdk(python, &args)?,
        None => println!("{:<44} skipped: no --e2b-python (a Python with E2B's SDKs)", "E2B SDK against nova"),
    }

    let p50 = |t: &Timings| t.percentile(50).as_secs_f64();
    println!();
    println!("cold jail / bare python3 -c (p50): {:.2}x", p50(&cold) / p50(&bare));
    match idle_memory {
        Some(bytes) => println!(
            "memory held by each idle warm jail (PSS of helper, init, zygote, prepared run): {:.1} MiB",
            bytes as f64 / 1048576.0
        ),
        None => println!("memory held by each idle warm jail: not measured (no ready jail)"),
    }
    let (held, bytes) = idle_session_memory;
    println!(
        "idle sessions held open at once: {held}; memory per idle session (PSS of its whole process tree): {:.1} MiB",
        bytes as f64 / held.max(1) as f64 / 1048576.0
    );
    Ok(())
}

/// Sessions: opening one (from the warm pool and cold), a code run and a command in a live one, and the
/// memory of many idle ones. Returns how many idle sessions were held and their memory in all.
fn bench_sessions(
    sandbox: &JailSandbox,
    cold_sandbox: &JailSandbox,
    args: &SandboxBenchArgs,
) -> anyhow::Result<(usize, u64)> {
    let spec = SessionSpec::default();
    let mut warm = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        sandbox.wait_warm(Duration::from_secs(10));
        let start = Instant::now();
        let session = sandbox.open_session(&spec)?;
        warm.push(start.elapsed());
        session.close();
    }
    print_row("nova session, create, warm pool (latency)", &Timings::new(warm, None));
    let cold =
        time_runs(args.runs.min(30), || cold_sandbox.open_session(&spec).map(|s| s.close()).map_err(Into::into))?;
    print_row("nova session, create, cold", &cold);

    let session = sandbox.open_session(&spec)?;
    let no_env = HashMap::new();
    session_ok(session.run_code("x = 1", None, &no_env)?, "")?;
    let code = time_runs(args.runs, || session_ok(session.run_code("x += 1; x", None, &no_env)?, ""))?;
    print_row("nova session, code run in a live session", &code);
    let echo = SessionCommand { cmd: "echo 1".into(), ..Default::default() };
    let commands = time_runs(args.runs, || session_ok(session.spawn(&echo)?, "1\n"))?;
    print_row("nova session, command `echo 1`", &commands);
    session.close();

    let mut idle = Vec::with_capacity(args.idle_sessions);
    for _ in 0..args.idle_sessions {
        idle.push(cold_sandbox.open_session(&spec)?);
    }
    let bytes: u64 = idle.iter().filter_map(Session::memory).sum();
    // Every session still answers.
    for session in &idle {
        session_ok(session.run_code("1", None, &no_env)?, "")?;
    }
    for session in &idle {
        session.close();
    }
    Ok((idle.len(), bytes))
}

/// What the E2B SDK does, timed from Python: `Sandbox.create()`, the first `run_code` after it, a
/// `run_code` in the live sandbox; one JSON object of seconds.
const E2B_BENCH: &str = r#"
import json, sys, time
from e2b_code_interpreter import Sandbox
runs = int(sys.argv[1])
Sandbox.create().kill()  # imports and connections, not measured
create, first, again = [], [], []
for _ in range(runs):
    t0 = time.perf_counter()
    sbx = Sandbox.create()
    t1 = time.perf_counter()
    assert sbx.run_code("1 + 1").text == "2"
    t2 = time.perf_counter()
    assert sbx.run_code("2 + 2").text == "4"
    t3 = time.perf_counter()
    sbx.kill()
    create.append(t1 - t0); first.append(t2 - t0); again.append(t3 - t2)
    time.sleep(0.05)  # the pool refills, as between a user's sandboxes
print(json.dumps({"create": create, "first": first, "again": again}))
"#;

/// The E2B SDK against a `nova serve --e2b-listen` started for the purpose, next to the rows above.
fn bench_e2b_sdk(python: &Path, args: &SandboxBenchArgs) -> anyhow::Result<()> {
    use std::io::BufRead;
    let exe = std::env::current_exe().context("finding the nova binary")?;
    let dir = tempfile::tempdir()?;
    let key = Command::new(&exe)
        .args(["keys", "create", "--tenant", "bench", "--data-dir"])
        .arg(dir.path())
        .env_remove("NOVA_DATABASE_URL")
        .output()?;
    anyhow::ensure!(key.status.success(), "nova keys create failed: {}", String::from_utf8_lossy(&key.stderr));
    let key = String::from_utf8(key.stdout)?.trim().to_string();
    let mut server = Command::new(&exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--e2b-listen", "127.0.0.1:0", "--workers", "0", "--data-dir"])
        .arg(dir.path())
        .args(["--sandbox-pool", &args.pool.to_string(), "--rate-limit", "off"])
        .env_remove("NOVA_DATABASE_URL")
        .env_remove("NOVA_BLOB_URL")
        .env("NOVA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let result = (|| -> anyhow::Result<()> {
        let mut stdout = std::io::BufReader::new(server.stdout.take().expect("piped"));
        let mut e2b = None;
        for _ in 0..4 {
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            if let Some(addr) = line.trim().strip_prefix("nova: E2B API on ") {
                e2b = Some(addr.to_string());
                break;
            }
        }
        let e2b = e2b.context("the server did not say where E2B's API listens")?;
        let runs = args.runs.min(50);
        let out = Command::new(python)
            .args(["-c", E2B_BENCH, &runs.to_string()])
            .env("E2B_API_URL", &e2b)
            .env("E2B_SANDBOX_URL", &e2b)
            .env("E2B_API_KEY", &key)
            .stderr(Stdio::inherit())
            .output()?;
        anyhow::ensure!(out.status.success(), "the E2B SDK bench failed");
        let times: std::collections::HashMap<String, Vec<f64>> = serde_json::from_slice(&out.stdout)?;
        let timings = |name: &str| {
            let samples = times.get(name).map(|v| v.iter().map(|s| Duration::from_secs_f64(*s)).collect());
            Timings::new(samples.unwrap_or_default(), None)
        };
        print_row("E2B SDK -> nova, Sandbox.create()", &timings("create"));
        print_row("E2B SDK -> nova, create + first run_code", &timings("first"));
        print_row("E2B SDK -> nova, run_code in a live sandbox", &timings("again"));
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// Waits for a call of a session to end well, its stdout being `stdout` (when not empty).
fn session_ok(call: nova_sandbox::session::Call, stdout: &str) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for event in call {
        match event {
            Event::Stdout(bytes) => out.extend(bytes),
            Event::Error(e) => anyhow::bail!("session code failed: {}: {}", e.name, e.value),
            Event::Fail(e) => anyhow::bail!("session call failed: {e}"),
            Event::Done(fields) => {
                anyhow::ensure!(fields.get("exit_code").is_none_or(|c| c == 0), "session command failed: {fields:?}");
            }
            _ => {}
        }
    }
    anyhow::ensure!(
        stdout.is_empty() || out == stdout.as_bytes(),
        "unexpected output {:?}",
        String::from_utf8_lossy(&out)
    );
    Ok(())
}

struct Timings {
    sorted: Vec<Duration>,
    per_second: f64,
}

impl Timings {
    fn new(mut samples: Vec<Duration>, elapsed: Option<Duration>) -> Timings {
        samples.sort();
        let elapsed = elapsed.unwrap_or_else(|| samples.iter().sum());
        let per_second = samples.len() as f64 / elapsed.as_secs_f64().max(1e-9);
        Timings { sorted: samples, per_second }
    }

    fn percentile(&self, p: usize) -> Duration {
        let index = (self.sorted.len() * p).div_ceil(100).saturating_sub(1).min(self.sorted.len() - 1);
        self.sorted[index]
    }
}

fn time_runs(runs: usize, mut once: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Timings> {
    let mut samples = Vec::with_capacity(runs);
    let start = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        once()?;
        samples.push(t.elapsed());
    }
    Ok(Timings::new(samples, Some(start.elapsed())))
}

fn print_row(name: &str, t: &Timings) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{name:<44} {:>9.2} {:>9.2} {:>10.0}", ms(t.percentile(50)), ms(t.percentile(99)), t.per_second);
}

fn command_ok(command: &mut Command) -> anyhow::Result<()> {
    let output = command.stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
    anyhow::ensure!(output.status.success() && output.stdout == b"1\n", "{command:?} failed: {}", output.status);
    Ok(())
}

fn outcome_ok(outcome: nova_sandbox::Outcome) -> anyhow::Result<()> {
    anyhow::ensure!(
        outcome.status == Status::Ok && outcome.stdout == b"1\n",
        "jail run failed: {} {:?} {}",
        outcome.status.as_str(),
        outcome.error,
        String::from_utf8_lossy(&outcome.stderr)
    );
    Ok(())
}

/// bubblewrap as the research measured it: the host root read-only, every namespace unshared.
fn bwrap_command(bwrap: &Path, python: &Path, _prefix: &Path) -> Command {
    let mut command = Command::new(bwrap);
    command
        .args(["--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--new-session"])
        .args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"])
        .arg(python)
        .args(["-c", CODE]);
    command
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
}
