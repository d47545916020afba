//! The web console in a real browser: Playwright for Python (from PyPI) drives Debian's Chromium through
//! `tests/cli/console/console_test.py` against a live `nova serve` with two tenants' keys. It signs in, drops
//! three dev invoices on the upload zone and follows the live job list, corrects and saves an invoice, exports
//! the reviewed ones, cancels a queued job, checks that another tenant sees none of it, and screenshots every
//! page at 1280 and 390 pixels wide into `target/tmp/console-screenshots`. `scripts/test` installs both;
//! under `CI=true` a missing one fails the test, elsewhere it is skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{create_key, dev_dir, start_serve};

/// The Playwright `scripts/test` installs. The script uses the Python API of 1.x, stable across its minors.
const PLAYWRIGHT: &str = "1.65.3";

#[test]
fn the_console_works_in_a_real_browser() {
    let Some((python, chromium)) = find_playwright() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Keys made before the server starts; it reads them from the store at each request all the same.
    let key_a = create_key(&data, "a");
    let key_b = create_key(&data, "b");
    let (_server, base) = start_serve(&data, &["--workers", "2", "--sandbox-pool", "0"], &[]);

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let facturx = dev_dir().join("facturx");
    // Two with their XML (read at once) and one without (read from its text, and left for review).
    let pdfs = [
        "mustang__103767-Invoice-2026-03-24-1.pdf",
        "mustang__zugferd_invoice.pdf",
        "zfc__Facture_FR_BASICWL.noxml.pdf",
    ]
    .map(|name| facturx.join(name));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/console/console_test.py");
    let started = std::time::Instant::now();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&base)
        .arg(&shots)
        .args(&pdfs)
        .env("NOVA_CONSOLE_KEY_A", &key_a)
        .env("NOVA_CONSOLE_KEY_B", &key_b)
        .env("NOVA_CHROMIUM", &chromium)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("running the console's browser test");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("the browser test took {:.1} s; screenshots in {}", started.elapsed().as_secs_f64(), shots.display());
    assert!(out.status.success(), "the console's browser test failed (above): {:?}", out.status);
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert_eq!(taken, 12, "six pages at two widths");
}

/// Python with Playwright and the Chromium it drives (`NOVA_PYTHON`, `NOVA_CHROMIUM`; default `python3` and
/// `/usr/bin/chromium`), or `None` (skip) when one is missing outside CI.
fn find_playwright() -> Option<(String, String)> {
    let python = std::env::var("NOVA_PYTHON").unwrap_or_else(|_| "python3".into());
    let chromium = std::env::var("NOVA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let version = Command::new(&python)
        .args([
            "-c",
            "from importlib.metadata import version; import playwright.sync_api; print(version('playwright'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let missing = match &version {
        None => Some(format!(
            "Playwright for Python did not import in `{python}`: install it with \
             `python3 -m pip install playwright=={PLAYWRIGHT}` (scripts/test does; no `playwright install`: \
             the test drives the system's Chromium)"
        )),
        Some(_) if !Path::new(&chromium).is_file() => Some(format!(
            "{chromium} is missing: install Debian's `chromium` package (scripts/test does), or name another \
             Chromium in NOVA_CHROMIUM"
        )),
        Some(_) => None,
    };
    if let Some(message) = missing {
        assert!(!nova_core::testing::in_ci(), "{message}");
        eprintln!("skipping: {message}");
        return None;
    }
    let version = version.unwrap_or_default();
    assert!(version.starts_with("1."), "expected Playwright 1.x ({PLAYWRIGHT}), found {version:?}");
    if version != PLAYWRIGHT {
        eprintln!("note: Playwright {version} here; scripts/test installs {PLAYWRIGHT}");
    }
    Some((python, chromium))
}
