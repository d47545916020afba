//! The warm pool: jails prepared ahead, each serving one run at a time, replaced in the background when a
//! run was killed.

use std::time::Duration;

use crate::jail_sandbox;
use nova_sandbox::{ExecRequest, Sandbox, Status};

#[test]
fn warm_jails_serve_fresh_runs_and_killed_ones_are_replaced() {
    let Some(sandbox) = jail_sandbox(2) else { return };
    assert!(sandbox.wait_warm(Duration::from_secs(20)), "pool filled");
    assert!(sandbox.idle_jail_memory().is_some_and(|m| m > 0));
    let built = sandbox.jails_started();
    let code = "import os\nopen('/tmp/mark', 'a').write('x')\nprint(len(open('/tmp/mark').read()), os.getpid())";
    for _ in 0..5 {
        let outcome = sandbox.exec(&ExecRequest { code: code.into(), ..Default::default() });
        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        // A fresh run every time: the mark file holds one write, and the program is pid 2.
        assert_eq!(String::from_utf8_lossy(&outcome.stdout), "1 2\n");
    }
    assert_eq!(sandbox.jails_started(), built, "the warm jails served every run");
    // A run killed at its deadline takes its jail with it; the pool builds a replacement.
    let mut request = ExecRequest { code: "while True: pass".into(), ..Default::default() };
    request.limits.wall_ms = 200;
    assert_eq!(sandbox.exec(&request).status, Status::Timeout);
    assert!(sandbox.wait_warm(Duration::from_secs(20)), "pool refilled");
    assert_eq!(sandbox.jails_started(), built + 1);
}

#[test]
fn warm_jails_take_the_requests_own_limits() {
    let Some(sandbox) = jail_sandbox(1) else { return };
    assert!(sandbox.wait_warm(Duration::from_secs(20)));
    let mut request = ExecRequest { code: "while True: pass".into(), ..Default::default() };
    request.limits.wall_ms = 300;
    let outcome = sandbox.exec(&request);
    assert_eq!(outcome.status, Status::Timeout);
    assert!(outcome.wall_time < Duration::from_secs(2));
}

#[test]
fn a_warm_jail_gives_network_to_the_run_that_asks_only() {
    let Some(sandbox) = jail_sandbox(1) else { return };
    assert!(sandbox.wait_warm(Duration::from_secs(20)));
    let built = sandbox.jails_started();
    let code = "ifaces = sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:])\n\
                print(*ifaces)";
    let run = |network: bool| {
        let outcome = sandbox.exec(&ExecRequest { code: code.into(), network, ..Default::default() });
        assert_eq!(outcome.status, Status::Ok, "{outcome:?}");
        String::from_utf8_lossy(&outcome.stdout).into_owned()
    };
    // Off, on, off again in the same jail: the device exists only in the run that asked for it.
    assert_eq!(run(false), "lo\n");
    assert_eq!(run(true), "lo tap0\n");
    assert_eq!(run(false), "lo\n");
    assert_eq!(sandbox.jails_started(), built, "one warm jail served every run");
}
