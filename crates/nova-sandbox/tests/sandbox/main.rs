//! nova-sandbox's integration suites, in one test binary (each binary links the whole dependency graph, and
//! linking dominates a build of the tests): a module per suite, each with the real jail.
//!
//! nextest runs each test in its own process, so the cgroup the escape suite puts its process in
//! (`escape::confine_suite`) and the variables it sets hold for that one test.

mod cancel;
mod escape;
mod pool;
mod session;
mod setup_errors;

use nova_sandbox::jail::{JailConfig, JailSandbox};

/// A working jail with `pool_size` warm jails; `None` (a skip) where none can be built, except under
/// `CI=true`, where that fails the test.
fn jail_sandbox(pool_size: usize) -> Option<JailSandbox> {
    let mut config = JailConfig::detect(env!("CARGO_BIN_EXE_nova-sandbox-helper"), &[]).expect("python3 on PATH");
    config.pool_size = pool_size;
    let sandbox = JailSandbox::new(config);
    match sandbox.check() {
        Ok(()) => Some(sandbox),
        Err(e) if nova_core::testing::in_ci() => panic!("the jail does not work here: {e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}
