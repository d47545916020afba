//! The `nova` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{dev_dir, nova, start_serve, start_serve_on, wait_succeeded, KillOnDrop};

fn dev_inputs() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sub in ["facturx", "invoice2data", "parsee"] {
        for entry in std::fs::read_dir(dev_dir().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with(".expected.json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn jsonl(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn extract_writes_one_line_per_dev_file_in_order() {
    let files = dev_inputs();
    assert!(files.len() >= 70, "dev set incomplete: {}", files.len());
    let out = nova().arg("extract").arg("--format").arg("jsonl").args(&files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = jsonl(&out.stdout);
    assert_eq!(lines.len(), files.len());
    for (line, file) in lines.iter().zip(&files) {
        assert_eq!(line["file"], file.display().to_string());
        assert!(line["invoice"].is_null() != line["error"].is_null(), "exactly one of invoice/error: {line}");
    }
    let cronus = lines
        .iter()
        .find(|l| l["file"].as_str().unwrap().ends_with("mustang__103767-Invoice-2026-03-24-1.noxml.pdf"))
        .unwrap();
    assert_eq!(cronus["invoice"]["invoice_number"], "103767");
    assert_eq!(cronus["invoice"]["totals"]["grand_total"], "681.87");
    // Image-only pages (the scans, and a PDF whose only font has no Unicode map) wait for OCR and fail with
    // `no_text`; nothing in the set may fail in any other way, and every e-invoice and text file extracts.
    for line in &lines {
        let file = line["file"].as_str().unwrap();
        if let Some(code) = line["error"]["code"].as_str() {
            assert_eq!(code, "no_text", "{line}");
        }
        let must_extract = file.ends_with(".txt") || (file.contains("facturx") && !file.ends_with(".scan.pdf"));
        assert!(!must_extract || line["error"].is_null(), "{line}");
    }
}

#[test]
fn a_bad_file_gets_its_own_error_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.pdf");
    std::fs::write(&corrupt, b"%PDF-1.7\n1 0 obj << /Type /Catalog").unwrap();
    let good = dev_dir().join("facturx/mustang__103767-Invoice-2026-03-24-1.pdf");
    let missing = dir.path().join("missing.pdf");
    let out = nova().arg("extract").args([&corrupt, &good, &missing]).output().unwrap();
    assert!(out.status.success(), "one file succeeded, so the command succeeds");
    let lines = jsonl(&out.stdout);
    let codes: Vec<_> = lines.iter().map(|l| l["error"]["code"].as_str().unwrap_or("ok")).collect();
    assert_eq!(codes, ["invalid_pdf", "ok", "file_not_found"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt.pdf"), "errors are reported on stderr too");

    let out = nova().arg("extract").args([&corrupt, &missing]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "every file failed");
    assert_eq!(jsonl(&out.stdout).len(), 2);
}

#[test]
fn extract_writes_csv_and_json() {
    let good = dev_dir().join("facturx/mustang__103767-Invoice-2026-03-24-1.pdf");
    let out = nova().args(["extract", "--format", "csv"]).arg(&good).output().unwrap();
    assert!(out.status.success());
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let header = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let get = |name: &str| row.get(header.iter().position(|h| h == name).unwrap()).unwrap().to_string();
    assert_eq!(get("invoice_number"), "103767");
    assert_eq!(get("grand_total"), "681.87");
    assert_eq!(get("seller_name"), "CRONUS DE");

    let out = nova().args(["extract", "--format", "json"]).arg(&good).output().unwrap();
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all[0]["invoice"]["currency"], "EUR");
}

#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(nova().arg("extract").output().unwrap().status.code(), Some(2));
    assert_eq!(nova().args(["extract", "--format", "xml", "a.pdf"]).output().unwrap().status.code(), Some(2));
    // A workflow's slots name a known workflow and a number; the error says which workflows there are.
    for (bad, says) in [("code.runs=1", "known: invoice.extract, noop, code.run"), ("code.run", "WORKFLOW=N")] {
        let out = nova().args(["worker", "--workflow-concurrency", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = nova().args(["worker"]).env("NOVA_WORKFLOW_CONCURRENCY", "noop=1,code.run=x").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "the environment is checked the same way");
}

/// `nova` with none of the caller's `NOVA_*` or `AWS_*` settings: what it sees is what the test gives it.
fn nova_without_settings() -> Command {
    let mut command = nova();
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("NOVA_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
}

/// The configuration's layers as `nova config show` prints them (defaults, the file, the environment, a secret
/// from a `_FILE`, masked), the same layers reaching a command (its flag over the file), and an unknown key.
#[test]
fn config_show_layers_the_file_the_environment_and_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nova.toml");
    std::fs::write(
        &config,
        "listen = \"0.0.0.0:9999\"\nworkers = 3\nmax_upload_mb = 0\nllm_model = \"file-model\"\n\
         database_url = \"postgres://nova:from-the-file@db.internal/nova\"\n",
    )
    .unwrap();
    let secret = dir.path().join("database-url");
    std::fs::write(&secret, "postgres://nova:s3cret-password@db.internal:5432/nova\n").unwrap();
    let out = nova_without_settings()
        .args(["config", "show", "--config"])
        .arg(&config)
        .env("NOVA_WORKERS", "5")
        .env("NOVA_DATABASE_URL_FILE", &secret)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "listen = \"0.0.0.0:9999\" # file",
        "workers = 5 # env (NOVA_WORKERS)",
        "database_url = \"postgres://nova:***@db.internal:5432/nova\" # env (NOVA_DATABASE_URL_FILE)",
        "llm_model = \"file-model\" # file",
        "shutdown_grace = 30 # default",
    ] {
        assert!(shown.lines().any(|l| l == line), "no line {line:?} in:\n{shown}");
    }
    assert!(!shown.contains("s3cret-password") && !shown.contains("from-the-file"), "a secret shows:\n{shown}");

    // The file reaches the commands below their flags: `max_upload_mb = 0` refuses every file, the flag lifts it.
    let invoice = dir.path().join("invoice.txt");
    std::fs::write(&invoice, "Invoice 1\n").unwrap();
    let extract = |flags: &[&str]| {
        let out = nova_without_settings()
            .arg("--config")
            .arg(&config)
            .args(["extract", "--strategy", "rules"])
            .args(flags)
            .arg(&invoice)
            .output()
            .unwrap();
        jsonl(&out.stdout).remove(0)
    };
    assert_eq!(extract(&[])["error"]["code"], "payload_too_large");
    assert_ne!(extract(&["--max-file-mb", "1"])["error"]["code"], "payload_too_large");

    // An unknown key is an error that names it (and the file).
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\nwrkers = 3\n").unwrap();
    let out = nova_without_settings().args(["config", "show"]).env("NOVA_CONFIG", &config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown key `wrkers`") && err.contains("nova.toml"), "{err}");
}

/// `nova serve` as a process: it answers, takes an invoice end to end, and stops cleanly on SIGTERM.
#[test]
fn serve_runs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_serve(dir.path(), &[], &[]);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let pdf = std::fs::read(dev_dir().join("facturx/mustang__103767-Invoice-2026-03-24-1.noxml.pdf")).unwrap();
        let send =
            |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().json::<Value>().await.unwrap() };
        let doc =
            send(client.post(format!("{base}/v1/documents")).header("content-type", "application/pdf").body(pdf)).await;
        let input = serde_json::json!({"workflow": "invoice.extract", "input": {"document_id": doc["id"]}});
        let job = send(client.post(format!("{base}/v1/jobs")).json(&input)).await;
        let job_url = format!("{base}/v1/jobs/{}", job["id"].as_str().unwrap());
        wait_succeeded(|| client.get(&job_url)).await;
        let invoice = send(client.get(format!("{job_url}/result"))).await;
        assert_eq!(invoice["seller"]["name"], "CRONUS DE");
    });

    let kill = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "nova serve exits cleanly on SIGTERM: {status:?}");
    assert!(Path::new(&dir.path().join("nova.db")).exists());
}

/// Stops `nova serve` with SIGTERM, checks it exits cleanly, and returns what it wrote on stdout after its
/// banner.
fn stop(mut child: KillOnDrop, mut stdout: impl std::io::Read) -> String {
    let kill = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.0.wait().unwrap().success(), "nova serve exits cleanly on SIGTERM");
    rest
}

/// The status of `GET /v1/documents` at `base`, with `key` if given.
fn list_documents(base: &str, key: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut request = reqwest::Client::new().get(format!("{base}/v1/documents"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.unwrap().status().as_u16()
    })
}

/// Listening beyond loopback, a server never runs open: with no key at all it makes one at its first start
/// and prints it once; a key given by `NOVA_API_KEY_FILE` is added instead, at every start, and a revoked one
/// stops the server from starting.
#[test]
fn a_server_listening_beyond_loopback_starts_with_a_key() {
    let quiet = ["--workers", "0", "--sandbox-pool", "0"];
    let dir = tempfile::tempdir().unwrap();
    let (child, base, mut stdout) = start_serve_on("0.0.0.0:0", dir.path(), &quiet, &[]);
    let base = base.replace("0.0.0.0", "127.0.0.1");
    let (mut notice, mut key) = (String::new(), String::new());
    stdout.read_line(&mut notice).unwrap();
    stdout.read_line(&mut key).unwrap();
    assert!(notice.contains("it is shown only this once"), "{notice}");
    let key = key.trim().to_string();
    assert!(key.len() == 69 && key.starts_with("nova_"), "{key:?}");
    assert_eq!(list_documents(&base, None), 401, "a loopback client needs the key too");
    assert_eq!(list_documents(&base, Some(&key)), 200);
    assert!(!stop(child, stdout).contains("nova_"), "the key is printed once");
    // The next start makes no other key, and the first still opens.
    let (child, base, stdout) = start_serve_on("0.0.0.0:0", dir.path(), &quiet, &[]);
    assert_eq!(list_documents(&base.replace("0.0.0.0", "127.0.0.1"), Some(&key)), 200);
    assert!(!stop(child, stdout).contains("nova_"), "a key exists: none is made");

    // A key from a deployment's secret, as a file.
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("nova_{}", "c0ffee".repeat(11));
    let secret_file = dir.path().join("api-key");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let env = [("NOVA_API_KEY_FILE", secret_file.to_str().unwrap())];
    for _ in 0..2 {
        let (child, base, stdout) = start_serve_on("0.0.0.0:0", dir.path(), &quiet, &env);
        let base = base.replace("0.0.0.0", "127.0.0.1");
        assert_eq!(list_documents(&base, None), 401);
        assert_eq!(list_documents(&base, Some(&secret)), 200);
        assert!(!stop(child, stdout).contains("nova_"), "a given key is never printed");
    }
    let listed = nova().args(["keys", "list", "--data-dir"]).arg(dir.path()).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.lines().count(), 1, "added once, whatever the number of starts: {listed}");
    assert!(listed.contains(&secret[..13]) && !listed.contains(&secret), "{listed}");
    let id = listed.split_whitespace().next().unwrap();
    assert!(nova().args(["keys", "revoke", id, "--data-dir"]).arg(dir.path()).status().unwrap().success());
    let refused = nova()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(quiet)
        .envs(env)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("NOVA_API_KEY is a revoked key"), "{err}");
    // A malformed key is refused with its form, not echoed.
    let refused = nova()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(quiet)
        .env("NOVA_API_KEY", "hunter2-hunter2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("`nova_` followed by"), "{err}");
    assert!(!err.contains("hunter2"), "the refused key is not echoed: {err}");
}

/// `nova tenants`: a tenant's weight and limit are set by name, shown by `list`, and refused when out of range.
#[test]
fn tenants_get_weights_and_limits_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = |args: &[&str]| nova().arg("tenants").args(args).arg("--data-dir").arg(dir.path()).output().unwrap();
    let row = |name: &str| {
        let listed = tenants(&["list"]);
        assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
        let listed = String::from_utf8(listed.stdout).unwrap();
        let line = listed.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{listed}"));
        line.split_whitespace().map(str::to_string).collect::<Vec<_>>()
    };
    let made = nova().args(["keys", "create", "--tenant", "acme", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    // Columns: name, id, weight, max running, rate.
    assert_eq!(row("acme")[2..], ["1", "default", "default"]);

    assert!(tenants(&["set", "acme", "--weight", "3", "--max-running", "5"]).status.success());
    assert_eq!(row("acme")[2..4], ["3", "5"]);
    assert!(tenants(&["set", "acme", "--max-running", "default"]).status.success());
    assert_eq!(row("acme")[2..4], ["3", "default"], "the weight stays when only the limit changes");
    assert_eq!(row("default")[2..4], ["1", "default"]);

    for (args, says) in [
        (&["set", "nobody", "--weight", "2"][..], "no tenant named `nobody`"),
        (&["set", "acme"], "nothing to set"),
        (&["set", "acme", "--weight", "0"], "--weight"),
        (&["set", "acme", "--weight", "1001"], "--weight"),
        (&["set", "acme", "--max-running", "many"], "neither a number of jobs nor `default`"),
    ] {
        let out = tenants(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(row("acme")[2..4], ["3", "default"], "a refused change changes nothing");
}

/// `POST /v1/executions` runs code in the jail and reports each status; bad requests get clear errors.
#[test]
fn serve_runs_programs_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, base) = start_serve(dir.path(), &["--workers", "1", "--sandbox-pool", "1"], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let run = |body: Value| {
            let req = client.post(format!("{base}/v1/executions")).json(&body);
            async move {
                let r = req.send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let code = "import sys\nprint(6 * 7)\nprint(sys.stdin.read().upper())\nopen('out.txt', 'w').write(open('in.txt').read() * 2)";
        let (status, ok) =
            run(serde_json::json!({"language": "python", "code": code, "stdin": "abc", "files": [{"path": "in.txt", "content": "xy"}]})).await;
        assert_eq!(status, 200, "{ok}");
        assert_eq!((ok["status"].as_str(), ok["exit_code"].as_i64(), ok["stdout"].as_str()), (Some("ok"), Some(0), Some("42\nABC\n")), "{ok}");
        let out = ok["files"].as_array().unwrap().iter().find(|f| f["path"] == "out.txt").unwrap();
        assert_eq!(out["content"], "xyxy");

        let (_, failed) = run(serde_json::json!({"language": "python", "code": "raise SystemExit(3)"})).await;
        assert_eq!((failed["status"].as_str(), failed["exit_code"].as_i64()), (Some("nonzero_exit"), Some(3)));
        let (_, slow) = run(serde_json::json!({"language": "python", "code": "while True: pass", "limits": {"timeout_ms": 300}})).await;
        assert_eq!(slow["status"], "timeout", "{slow}");
        let (_, net) = run(serde_json::json!({"language": "python",
            "code": "import socket\nsocket.create_connection(('127.0.0.1', 5432), timeout=1)"})).await;
        assert_eq!(net["status"], "nonzero_exit", "no network in the jail: {net}");

        for (body, code) in [
            (serde_json::json!({"language": "ruby", "code": "puts 1"}), "unsupported_language"),
            (serde_json::json!({"language": "python", "code": "1", "limits": {"timeout_ms": 600_000}}), "invalid_request"),
            (serde_json::json!({"language": "python", "code": "1", "limits": {"memory_mb": 4}}), "invalid_request"),
            (serde_json::json!({"language": "python"}), "invalid_request"),
        ] {
            let (status, err) = run(body.clone()).await;
            assert_eq!((status, err["error"]["code"].as_str()), (422, Some(code)), "{body}: {err}");
        }

        // The same program as a code.run job: its outcome is the job's result.
        let submit = |input: Value| {
            let req = client.post(format!("{base}/v1/jobs")).json(&serde_json::json!({"workflow": "code.run", "input": input}));
            async move {
                let r = req.send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        };
        let (status, job) = submit(serde_json::json!({"language": "python", "code": "print(sum(range(10)))"})).await;
        assert_eq!(status, 202, "{job}");
        let job_url = format!("{base}/v1/jobs/{}", job["id"].as_str().unwrap());
        wait_succeeded(|| client.get(&job_url)).await;
        let result: Value = client.get(format!("{job_url}/result")).send().await.unwrap().json().await.unwrap();
        assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("ok"), Some("45\n")), "{result}");
        // Each run counts in the usage: the four executions that ran, and the one code.run job.
        let usage: Value = client.get(format!("{base}/v1/usage")).send().await.unwrap().json().await.unwrap();
        let row = |workflow: &str| {
            let rows = usage["data"].as_array().unwrap();
            rows.iter().find(|r| r["workflow"] == workflow).cloned().unwrap_or_else(|| panic!("{workflow}: {usage}"))
        };
        assert_eq!(row("execution")["sandbox_runs"], 4, "{usage}");
        assert!(row("execution")["sandbox_wall_ms"].as_u64().unwrap() >= 300, "the timeout alone ran 300 ms: {usage}");
        assert_eq!(row("code.run")["sandbox_runs"], 1, "{usage}");
        let (status, err) = submit(serde_json::json!({"language": "cobol", "code": "x"})).await;
        assert_eq!((status, err["error"]["code"].as_str()), (422, Some("unsupported_language")), "{err}");
    });
}

/// `nova bench api` end to end, briefly: it starts its own server, loads it and prints every figure. The
/// figures are not judged here (they depend on the machine); that they exist and that no request failed is.
#[test]
fn bench_api_runs_each_scenario_without_errors() {
    let out = nova()
        .args(["bench", "api", "--seconds", "1", "--connections", "2", "--upload-kib", "4"])
        .output()
        .expect("nova runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for scenario in ["GET /v1/jobs/{id}", "POST /v1/jobs", "POST /v1/documents (4 KiB)"] {
        let row =
            stdout.lines().find(|l| l.starts_with(scenario)).unwrap_or_else(|| panic!("no {scenario}:\n{stdout}"));
        let numbers: Vec<f64> =
            row[scenario.len()..].split_whitespace().map(|n| n.parse().expect("a number")).collect();
        let [per_second, p50, p99, errors] = numbers[..] else { panic!("{row}") };
        assert!(per_second > 0.0 && p50 > 0.0 && p99 >= p50, "{row}");
        assert_eq!(errors, 0.0, "{row}");
    }
    assert!(stdout.contains("MiB idle"), "{stdout}");
}

/// `nova serve --log-format json`: every line of stderr is a JSON object; the id a client sends as
/// `X-Request-Id` is on the request's lines and on its job's lines, and the API key it sent is on none.
#[test]
fn json_logs_follow_a_request_id_to_its_job_and_never_show_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let made = nova().args(["keys", "create", "--tenant", "acme", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let key = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let log_path = dir.path().join("serve.log");
    let mut child = KillOnDrop(
        nova()
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1", "--log-format", "json", "--data-dir"])
            .arg(dir.path())
            .env("NOVA_LOG", "info,tower_http=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut banner = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let base = banner.trim().strip_prefix("nova: listening on ").unwrap_or_else(|| panic!("{banner:?}")).to_string();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let submitted = client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(&key)
            .header("x-request-id", "cli-req-0042")
            .json(&serde_json::json!({"workflow": "noop"}))
            .send()
            .await
            .unwrap();
        assert_eq!(submitted.headers()["x-request-id"], "cli-req-0042");
        let job: Value = submitted.json().await.unwrap();
        let job_url = format!("{base}/v1/jobs/{}", job["id"].as_str().unwrap());
        let done = wait_succeeded(|| client.get(&job_url).bearer_auth(&key)).await;
        assert_eq!(done["request_id"], "cli-req-0042");
    });
    let kill = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(kill.success());
    assert!(child.0.wait().unwrap().success());

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(!logs.contains(&key), "the API key reached the logs");
    let carries_id = |line: &Value, span: &str| {
        line["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == span && s["request_id"] == "cli-req-0042"))
    };
    let request_lines = lines.iter().filter(|l| carries_id(l, "request")).count();
    assert!(request_lines >= 2, "tower-http's request and response lines carry the id:\n{logs}");
    let job_end =
        lines.iter().find(|l| l["message"] == "job finished").unwrap_or_else(|| panic!("no job end:\n{logs}"));
    assert!(carries_id(job_end, "job"), "the worker's line carries the request's id: {job_end}");
    assert_eq!(job_end["level"], "INFO");
}

/// A separate `nova worker --metrics-listen` serves its own metrics: a job it ran is counted there.
#[test]
fn a_worker_process_serves_the_metrics_of_the_jobs_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (_api, base) = start_serve(dir.path(), &["--workers", "0"], &[]);
    let mut worker = KillOnDrop(
        nova()
            .args(["worker", "--concurrency", "1", "--sandbox-pool", "0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("NOVA_LOG", "warn")
            .env_remove("NOVA_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut banner = String::new();
    // Kept open while the worker runs, as a script that waits for its lines would.
    let mut lines = BufReader::new(worker.0.stdout.take().unwrap());
    lines.read_line(&mut banner).unwrap();
    let metrics_url = banner
        .trim()
        .strip_prefix("nova: worker metrics on ")
        .unwrap_or_else(|| panic!("banner: {banner:?}"))
        .to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let job: Value = client
            .post(format!("{base}/v1/jobs"))
            .json(&serde_json::json!({"workflow": "noop"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let job_url = format!("{base}/v1/jobs/{}", job["id"].as_str().unwrap());
        wait_succeeded(|| client.get(&job_url)).await;
        let page = client.get(&metrics_url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        let counted = page.lines().any(|l| {
            l.starts_with("nova_jobs_finished_total{") && l.contains("workflow=\"noop\"") && l.ends_with(" 1")
        });
        assert!(counted, "{page}");
        let other = client.get(metrics_url.replace("/metrics", "/v1/jobs")).send().await.unwrap();
        assert_eq!(other.status(), 404, "the metrics address serves nothing else");
    });
}
