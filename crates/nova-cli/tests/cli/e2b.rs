//! E2B's own Python SDKs (`e2b` and `e2b-code-interpreter` from PyPI, pinned; `scripts/test` installs them
//! in a virtual environment of their own and names its interpreter in `NOVA_E2B_PYTHON`) against the real
//! `nova serve --e2b-listen`: `e2b/sdk_test.py` runs what an E2B user's code does, and a second tenant's key
//! tries to reach the first tenant's sandbox.

use std::io::BufRead;
use std::process::Command;

use crate::common::{create_key, start_serve_on};

/// The pinned SDK versions, as `scripts/test` installs them.
const E2B: &str = "2.63.0";
const E2B_CODE_INTERPRETER: &str = "2.11.5";

#[test]
fn e2b_sdks_run_against_nova() {
    let Some(python) = find_sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (key_a, key_b) = (create_key(&data, "a"), create_key(&data, "b"));
    let (_server, base, mut stdout) = start_serve_on("127.0.0.1:0", &data, &["--e2b-listen", "127.0.0.1:0"], &[]);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let e2b =
        line.trim().strip_prefix("nova: E2B API on ").unwrap_or_else(|| panic!("E2B banner: {line:?}")).to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/e2b/sdk_test.py");
    let out = Command::new(&python)
        .arg(script)
        .env("E2B_API_URL", &e2b)
        .env("E2B_SANDBOX_URL", &e2b)
        .env("E2B_API_KEY", &key_a)
        .env("NOVA_OTHER_KEY", &key_b)
        .env_remove("E2B_DEBUG")
        .env_remove("E2B_DOMAIN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && stdout.contains("sandboxes are not available on this server") {
        assert!(!nova_core::testing::in_ci(), "no sandbox on this CI machine");
        eprintln!("skipping: this host has no sandbox");
        return;
    }
    assert!(out.status.success(), "the SDK checks failed (above)");
    assert!(stdout.trim_end().ends_with("e2b sdk: all checks passed"), "the script did not finish");
    // Nothing is left running for tenant A, seen through NOVA's own API.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listed = runtime.block_on(async {
        let response = reqwest::Client::new().get(format!("{base}/v1/sandboxes")).bearer_auth(&key_a).send().await;
        response.unwrap().text().await.unwrap()
    });
    assert_eq!(listed, r#"{"data":[]}"#);
}

/// The interpreter with both SDKs at their pinned versions, or `None` (skip) when missing outside CI.
fn find_sdk_python() -> Option<String> {
    let python = std::env::var("NOVA_E2B_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = format!(
        "from importlib.metadata import version; import sys; \
         sys.exit(not (version('e2b') == '{E2B}' and version('e2b-code-interpreter') == '{E2B_CODE_INTERPRETER}'))"
    );
    let ok = Command::new(&python).args(["-c", &probe]).output().is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let message = format!(
        "{python} lacks e2b=={E2B} and e2b-code-interpreter=={E2B_CODE_INTERPRETER}: scripts/test installs them and \
         sets NOVA_E2B_PYTHON"
    );
    assert!(!nova_core::testing::in_ci(), "{message}");
    eprintln!("skipping: {message}");
    None
}
