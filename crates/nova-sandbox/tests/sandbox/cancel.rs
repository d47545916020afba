//! Cancelling an execution kills every process of its jail at once, and the outcome says so.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::jail_sandbox;
use nova_sandbox::jail::JailSandbox;
use nova_sandbox::{Cancel, ExecRequest, Limits, Sandbox, Status};

/// Host pids of processes whose name (`comm`) is `name`.
fn processes_named(name: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim_end() == name))
        .collect()
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// A busy program and a child of it, both renamed to `marker` so the host can see them run.
fn spinning(marker: &str) -> ExecRequest {
    let code =
        format!("import ctypes, os\nctypes.CDLL(None).prctl(15, b'{marker}', 0, 0, 0)\nos.fork()\nwhile True: pass");
    // A deadline far beyond the test's patience: only the cancellation can end this run early.
    let limits = Limits { wall_ms: 600_000, cpu_ms: 600_000, ..Limits::default() };
    ExecRequest { code, limits, ..Default::default() }
}

fn cancel_a_running_program(sandbox: &JailSandbox, marker: &str) {
    let cancel = Cancel::new();
    std::thread::scope(|scope| {
        let running = scope.spawn(|| sandbox.exec_cancelable(&spinning(marker), &cancel));
        if !wait_for(Duration::from_secs(30), || processes_named(marker).len() == 2) {
            cancel.cancel();
            panic!("the program and its child never ran: {:?}", running.join().unwrap());
        }
        let pids = processes_named(marker);
        cancel.cancel();
        let outcome = running.join().unwrap();
        assert_eq!(outcome.status, Status::Canceled, "{outcome:?}");
        assert!(outcome.wall_time < Duration::from_secs(60), "ran on to {:?}", outcome.wall_time);
        // Every process of the jail is gone, the forked child included (not merely orphaned).
        for pid in pids {
            assert!(!pid.exists(), "{} survived the cancellation", pid.display());
        }
    });
}

#[test]
fn canceling_kills_a_cold_execution() {
    let Some(sandbox) = jail_sandbox(0) else { return };
    cancel_a_running_program(&sandbox, &format!("spin-c{}", std::process::id() % 100_000));
}

#[test]
fn canceling_kills_a_warm_execution() {
    let Some(sandbox) = jail_sandbox(1) else { return };
    assert!(sandbox.wait_warm(Duration::from_secs(20)), "pool filled");
    cancel_a_running_program(&sandbox, &format!("spin-w{}", std::process::id() % 100_000));
}

#[test]
fn a_canceled_handle_runs_nothing() {
    let Some(sandbox) = jail_sandbox(0) else { return };
    let cancel = Cancel::new();
    cancel.cancel();
    let outcome = sandbox.exec_cancelable(&ExecRequest { code: "print(1)".into(), ..Default::default() }, &cancel);
    assert_eq!(outcome.status, Status::Canceled);
    assert!(outcome.stdout.is_empty());
}
