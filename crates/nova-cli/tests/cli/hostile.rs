//! The hostile corpus (`scripts/hostile-corpus`: files built to hurt a reader, and damaged copies of the dev
//! PDFs) through `nova extract` and a real `nova serve`: every file gets its own record or job outcome, the
//! processes that serve and schedule never die, and the server's own memory stays small while its
//! extraction processes take the blows. Each run's processes sit in a memory-capped cgroup, so a failure
//! here cannot hurt the machine.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, nova, KillOnDrop};

/// Damaged copies in the test's corpus: enough of every kind, few enough for a debug build in CI.
const DAMAGED: usize = 42;
/// The server's own peak resident memory while the corpus runs through it.
const SERVER_PEAK_LIMIT: u64 = 512 * 1024 * 1024;
/// The memory cap of everything a test starts (the server or `nova extract`, and their extraction
/// processes).
const CGROUP_LIMIT: u64 = 6 * 1024 * 1024 * 1024;

/// What each file of `hostile/` must come to, by its name: an invoice (`ok`) or that error code.
const EXPECTED: &[(&str, &str)] = &[
    ("form-self.pdf", "ok"),
    ("form-cycle.pdf", "ok"),
    ("form-fanout.pdf", "too_many_operators"),
    ("form-deep.pdf", "nesting_too_deep"),
    ("inflate-bomb.pdf", "stream_too_large"),
    ("many-operators.pdf", "too_many_operators"),
    ("long-string.pdf", "memory_limit"),
    ("many-pages.pdf", "too_many_pages"),
    ("huge-image.pdf", "image_too_large"),
    ("page-tree-cycle.pdf", "ok"),
    ("xref-loop.pdf", "ok"),
    ("length-lie.pdf", "ok"),
    ("huge-dictionary.pdf", "ok"),
    ("xml-entities.xml", "invalid_xml"),
];

/// Codes a damaged or malformed file may fail with: each says what is wrong with the file. A crash, a
/// memory or time limit is not among them: damage must not make a reader die.
const CLEAN_CODES: &[&str] = &[
    "invalid_pdf",
    "encrypted_pdf",
    "no_pages",
    "no_text",
    "invalid_xml",
    "unsupported_document",
    "empty_document",
    "invalid_image",
    "image_too_large",
    "ocr_failed",
    "render_failed",
    "page_too_large",
    "too_many_pages",
    "stream_too_large",
    "decoded_too_large",
    "too_many_operators",
    "nesting_too_deep",
];

fn corpus() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/hostile-corpus");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .args(["--damaged", &DAMAGED.to_string()])
        .output()
        .expect("python3 runs the corpus script");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut files = Vec::new();
    for section in ["hostile", "damaged"] {
        for entry in std::fs::read_dir(dir.path().join(section)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files.sort();
    (dir, files)
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn section(path: &Path) -> String {
    path.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned()
}

/// Checks each file's outcome (`ok` or an error code) against what its kind must give, and prints the table.
fn check_outcomes(title: &str, outcomes: &[(PathBuf, String, Option<f64>)]) {
    let expected: BTreeMap<&str, &str> = EXPECTED.iter().copied().collect();
    let mut failures = Vec::new();
    eprintln!("{title}");
    for (path, code, seconds) in outcomes {
        let file = name(path);
        let time = seconds.map_or("-".to_string(), |s| format!("{s:.2} s"));
        eprintln!("  {:<8} {file:<40} {code:<20} {time}", section(path));
        match section(path).as_str() {
            "hostile" => {
                if let Some(want) = expected.get(file.as_str()) {
                    if code != want {
                        failures.push(format!("{file}: {code}, expected {want}"));
                    }
                } else if code != "ok" && !CLEAN_CODES.contains(&code.as_str()) {
                    failures.push(format!("{file}: {code}"));
                }
            }
            _ => {
                if code != "ok" && !CLEAN_CODES.contains(&code.as_str()) {
                    failures.push(format!("{file}: {code}"));
                }
            }
        }
    }
    for file in expected.keys() {
        assert!(outcomes.iter().any(|(p, _, _)| name(p) == *file), "the corpus has {file}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn nova_extract_gives_every_hostile_file_its_own_record() {
    let (_dir, files) = corpus();
    let started = Instant::now();
    let mut command = nova();
    command.args(["extract", "--format", "jsonl", "-j", "2"]).args(&files).stdout(Stdio::piped());
    let mut extract = MemoryCgroup::enter("extract", KillOnDrop(command.spawn().unwrap()), CGROUP_LIMIT);
    let mut stdout = String::new();
    extract.child.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = extract.child.0.wait().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(status.code(), Some(0), "some files read, so the command succeeds");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), files.len(), "a line for each file");
    // `nova extract` does not time each file: the table shows the whole run's time only.
    let outcomes: Vec<(PathBuf, String, Option<f64>)> = lines
        .iter()
        .zip(&files)
        .map(|(line, file)| {
            assert_eq!(line["file"], file.display().to_string());
            let code = line["error"]["code"].as_str().unwrap_or("ok").to_string();
            (file.clone(), code, None)
        })
        .collect();
    check_outcomes(&format!("nova extract: {} files in {seconds:.1} s", files.len()), &outcomes);
}

#[test]
fn a_reader_that_crashes_fails_its_file_alone() {
    // Forms nested 5,000 deep, with the nesting limit lifted: the reader recurses until its stack is gone.
    // The file fails with `extraction_crashed`; the next file is read by a fresh extraction process.
    let (_dir, files) = corpus();
    let deep = files.iter().find(|f| name(f) == "form-deep.pdf").unwrap();
    let good = common::dev_dir().join("facturx/mustang__103767-Invoice-2026-03-24-1.pdf");
    let out = nova()
        .args(["extract", "--format", "jsonl", "-j", "1", "--pdf-max-nesting", "1000000"])
        .args([deep, &good])
        .output()
        .unwrap();
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["error"]["code"], "extraction_crashed", "{}", lines[0]);
    assert!(lines[0]["error"]["message"].as_str().unwrap().contains("stack overflow"), "{}", lines[0]);
    assert_eq!(lines[1]["invoice"]["invoice_number"], "103767");
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_survives_the_hostile_corpus_within_its_memory() {
    let (_dir, files) = corpus();
    let data = tempfile::tempdir().unwrap();
    let (server, base) = common::start_serve(data.path(), &["--workers", "2"], &[]);
    let server = MemoryCgroup::enter("serve", server, CGROUP_LIMIT);
    let pid = server.child.0.id();
    let client = reqwest::Client::new();
    let healthy = || async {
        let response = client.get(format!("{base}/healthz")).send().await;
        assert!(response.is_ok_and(|r| r.status() == 200), "the server answers /healthz");
    };

    // Uploads: each file is checked in an extraction process; a refused one gets its own 4xx.
    let started = Instant::now();
    let mut jobs = Vec::new();
    let mut outcomes = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let upload = client.post(format!("{base}/v1/documents")).body(bytes).send().await.unwrap();
        let status = upload.status();
        let body: Value = upload.json().await.unwrap();
        healthy().await;
        if !status.is_success() {
            assert!(status.is_client_error(), "{}: {status} {body}", name(file));
            // Refused at upload: no job, no time of its own.
            outcomes.push((file.clone(), body["error"]["code"].as_str().unwrap_or("?").to_string(), None));
            continue;
        }
        let input = serde_json::json!({"workflow": "invoice.extract", "input": {"document_id": body["id"]}});
        let job: Value =
            client.post(format!("{base}/v1/jobs")).json(&input).send().await.unwrap().json().await.unwrap();
        jobs.push((file.clone(), job["id"].as_str().unwrap().to_string()));
    }
    // Jobs: each ends, one way or the other, while the server keeps answering.
    for (file, id) in jobs {
        let job = common::wait_finished(|| client.get(format!("{base}/v1/jobs/{id}")), Duration::from_secs(600)).await;
        healthy().await;
        let code = match job["status"].as_str() {
            Some("succeeded") => "ok".to_string(),
            _ => job["error"]["code"].as_str().unwrap_or("?").to_string(),
        };
        let seconds = job["attempts"].as_array().and_then(|a| a.last()).and_then(|a| {
            let at = |k: &str| a[k].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            Some((at("finished_at")? - at("started_at")?).num_milliseconds() as f64 / 1000.0)
        });
        outcomes.push((file, code, seconds));
    }
    healthy().await;
    let peak = peak_resident_bytes(pid);
    check_outcomes(
        &format!(
            "nova serve: {} files in {:.1} s, the server's peak resident memory {} MiB",
            files.len(),
            started.elapsed().as_secs_f64(),
            peak / (1024 * 1024)
        ),
        &outcomes,
    );
    assert!(peak < SERVER_PEAK_LIMIT, "the server's peak resident memory {} MiB", peak / (1024 * 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_crashes_extraction_twice_is_a_poison_pill() {
    // The nesting limit lifted, so that the deep forms crash the reader (see above).
    let (_dir, files) = corpus();
    let deep = std::fs::read(files.iter().find(|f| name(f) == "form-deep.pdf").unwrap()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (server, base) = common::start_serve(data.path(), &["--pdf-max-nesting", "1000000"], &[]);
    let _server = MemoryCgroup::enter("poison", server, CGROUP_LIMIT);
    let client = reqwest::Client::new();
    let doc: Value = client.post(format!("{base}/v1/documents")).body(deep).send().await.unwrap().json().await.unwrap();
    let submit = |force: bool| {
        let input = serde_json::json!({"workflow": "invoice.extract",
                                       "input": {"document_id": doc["id"], "force": force}});
        let request = client.post(format!("{base}/v1/jobs")).json(&input);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string() }
    };
    let finished = |id: String| {
        let url = format!("{base}/v1/jobs/{id}");
        let client = client.clone();
        async move { common::wait_finished(|| client.get(&url), Duration::from_secs(120)).await }
    };

    // Two attempts, each a crash; then the job fails and the document is marked.
    let job = finished(submit(false).await).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["code"], "extraction_crashed", "{job}");
    let attempts = job["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "one more attempt after the first crash: {job}");
    assert!(attempts.iter().all(|a| a["error"]["code"] == "extraction_crashed"), "{job}");
    let meta: Value = client
        .get(format!("{base}/v1/documents/{}", doc["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["extraction_failure"]["code"], "extraction_crashed", "{meta}");

    // A new job fails at once, without reading the document again.
    let job = finished(submit(false).await).await;
    assert_eq!(job["error"]["code"], "extraction_crashed", "{job}");
    assert_eq!(job["attempts"].as_array().unwrap().len(), 1, "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("force"), "{job}");

    // Forced, it is read again (and crashes again, twice).
    let job = finished(submit(true).await).await;
    assert_eq!(job["attempts"].as_array().unwrap().len(), 2, "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("stack overflow"), "{job}");

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the server lived through every crash");
}

/// `VmHWM` of a process: its peak resident memory.
fn peak_resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A process in a memory cgroup of its own (v2, or v1's memory controller), with what it starts. Dropping it
/// kills the process, then removes the cgroup. Where cgroups cannot be written (not root, a read-only
/// hierarchy) the test runs without one, except under CI, where it fails.
struct MemoryCgroup {
    child: KillOnDrop,
    dir: Option<PathBuf>,
}

impl MemoryCgroup {
    fn enter(what: &str, child: KillOnDrop, limit: u64) -> Self {
        let name = format!("nova-test-{what}-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (dir, limit_file) =
            if std::fs::read_to_string(v2).is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")) {
                (Path::new("/sys/fs/cgroup").join(&name), "memory.max")
            } else {
                (Path::new("/sys/fs/cgroup/memory").join(&name), "memory.limit_in_bytes")
            };
        let entered = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join(limit_file), limit.to_string()))
            .and_then(|()| std::fs::write(dir.join("cgroup.procs"), child.0.id().to_string()));
        match entered {
            Ok(()) => Self { child, dir: Some(dir) },
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                assert!(!nova_core::testing::in_ci(), "no memory cgroup at {}: {e}", dir.display());
                eprintln!("running without a memory cgroup ({}: {e})", dir.display());
                Self { child, dir: None }
            }
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        if let Ok(None) = self.child.0.try_wait() {
            let _ = self.child.0.kill();
            let _ = self.child.0.wait();
        }
        let Some(dir) = &self.dir else { return };
        // The process's extraction processes die with it, a moment later: the cgroup empties then.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
