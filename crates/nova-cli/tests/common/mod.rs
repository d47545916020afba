//! Helpers shared by the `nova` binary's test files.

use std::path::PathBuf;
use std::process::Command;

/// The `nova` binary under test.
pub fn nova() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nova"))
}

/// The shared development invoices, beside the repository.
pub fn dev_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/invoices/dev");
    assert!(dir.is_dir(), "{} is missing: the shared invoices must sit beside the repository", dir.display());
    dir
}
