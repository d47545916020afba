//! Replays the inputs `scripts/fuzz` kept in `tests/fuzz_regressions/` through both entry points for untrusted
//! bytes: each must return, with a value or an error that has a code, on a thread with the 2 MiB stack that
//! extraction gets in production (a Tokio blocking thread) and within a time limit.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nova_extract::{inspect, read_with_engines, Engines, ExtractError, TemplateSet};

/// Far above what the fuzzer allows an input (10 s), since this build is unoptimised: a limit that only an
/// input that never returns reaches.
const LIMIT: Duration = Duration::from_secs(60);

const STACK: usize = 2 * 1024 * 1024;

fn inputs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut inputs: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file() && path.file_name().is_some_and(|name| name != "README.md"))
        .collect();
    inputs.sort();
    inputs
}

/// What went wrong with one entry point, if anything.
fn problem<T>(entry_point: &str, result: Result<T, ExtractError>) -> Option<String> {
    match result {
        Err(err) if err.code().is_empty() => Some(format!("{entry_point} returned an error without a code: {err}")),
        _ => None,
    }
}

#[test]
fn every_kept_fuzz_input_returns() {
    let mut failures = Vec::new();
    for path in inputs() {
        let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let (sender, receiver) = mpsc::channel();
        // The thread is named after the input, so that a stack overflow, which aborts the whole test binary,
        // still says which input caused it.
        let spawned = thread::Builder::new().name(name.clone()).stack_size(STACK).spawn(move || {
            let problems: Vec<String> = [
                problem("inspect", inspect(&bytes)),
                problem("read_with_engines", read_with_engines(&bytes, Engines::default(), &TemplateSet::empty())),
            ]
            .into_iter()
            .flatten()
            .collect();
            // The receiver is gone only when the test has already given up on this input.
            let _ = sender.send(problems);
        });
        spawned.unwrap_or_else(|e| panic!("starting a thread for {name}: {e}"));
        match receiver.recv_timeout(LIMIT) {
            Ok(problems) => failures.extend(problems.into_iter().map(|p| format!("{name}: {p}"))),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // The thread is left running: a test cannot stop it, and the failure ends the process soon.
                failures.push(format!("{name}: did not return within {} s", LIMIT.as_secs()));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => failures.push(format!("{name}: panicked (see above)")),
        }
    }
    assert!(failures.is_empty(), "kept fuzz inputs that still fail:\n{}", failures.join("\n"));
}
