//! schemathesis (from PyPI) against a live `nova serve`: generated requests for every operation of
//! `/openapi.json`, checked for server errors and for answers that break the document (status, content type,
//! body schema). `scripts/test` installs it; under `CI=true` a missing schemathesis fails the test, elsewhere
//! it is skipped with a message.

use std::process::Command;

use crate::common::start_serve;

/// The version `scripts/test` installs; the CLI's options differ between major versions.
const SCHEMATHESIS_MAJOR: &str = "4.";

/// Strips, before each request, what would make the server reach past this machine: a job's webhook URL
/// (its deliveries go to public addresses) and a program's or sandbox's network access; and shortens
/// sandboxes' timeouts.
const HOOKS: &str = r#"
import schemathesis

@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if isinstance(body, dict):
        body.pop("webhook", None)
        body.pop("network", None)
        if isinstance(body.get("input"), dict):
            body["input"].pop("network", None)
        # Sandboxes, code runs and commands that end soon: a generated command may well never end by itself.
        if case.path.startswith("/v1/sandboxes") and isinstance(body.get("timeout_seconds"), int):
            body["timeout_seconds"] = max(1, min(body["timeout_seconds"], 5))
"#;

#[test]
fn the_live_api_keeps_to_its_openapi_document() {
    let Some(schemathesis) = find_schemathesis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, base) = start_serve(&data, &["--rate-limit", "off", "--workers", "1", "--sandbox-pool", "1"], &[]);

    let mut args = vec![
        "run".to_string(),
        format!("{base}/openapi.json"),
        "--checks".into(),
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance".into(),
        "--max-examples".into(),
        "10".into(),
        "--seed".into(),
        "20261127".into(),
        "--workers".into(),
        "1".into(),
        "--request-timeout".into(),
        "30".into(),
        // Fuzzing and the stateful phase repeat until this budget is spent: the run takes about this long.
        "--max-time".into(),
        "60".into(),
        "--generation-database".into(),
        "none".into(),
        // No key exists (loopback needs none): a generated `Authorization` header would only meet `401`.
        "--generation-with-security-parameters".into(),
        "false".into(),
        "--no-color".into(),
    ];
    if !sandbox_answers(&base) {
        // A host without the jail: the 503 is the documented answer, not a finding.
        eprintln!("schemathesis: this host has no sandbox; POST /v1/executions and /v1/sandboxes are left out");
        args.extend(["--exclude-path".into(), "/v1/executions".into()]);
        args.extend(["--exclude-path-regex".into(), "^/v1/sandboxes".into()]);
    }
    std::fs::write(dir.path().join("nova_schemathesis_hooks.py"), HOOKS).unwrap();
    let out = Command::new(&schemathesis)
        .args(&args)
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "nova_schemathesis_hooks")
        .env("PYTHONPATH", dir.path())
        .output()
        .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures (above): {:?}", out.status);
    assert!(!stdout.contains("No operations"), "schemathesis tested nothing");
}

/// The schemathesis command, or `None` (skip) when it is missing outside CI.
fn find_schemathesis() -> Option<String> {
    let command = std::env::var("NOVA_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let version = Command::new(&command).arg("--version").output().ok().filter(|o| o.status.success());
    let Some(version) = version else {
        let message = format!(
            "`{command} --version` did not run: install it with \
             `python3 -m pip install \"schemathesis==4.32.*\"` (scripts/test does)"
        );
        assert!(!nova_core::testing::in_ci(), "{message}");
        eprintln!("skipping: {message}");
        return None;
    };
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let number = version.rsplit(' ').next().unwrap_or("").trim().to_string();
    assert!(number.starts_with(SCHEMATHESIS_MAJOR), "expected schemathesis {SCHEMATHESIS_MAJOR}x, found {version:?}");
    Some(command)
}

/// Whether `POST /v1/executions` runs programs on this host (rather than `503 sandbox_unavailable`).
fn sandbox_answers(base: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{base}/v1/executions"))
            .json(&serde_json::json!({"language": "python", "code": "pass"}))
            .send()
            .await
            .unwrap();
        response.status() != 503
    })
}
