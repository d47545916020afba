//! Helpers shared by the `nova` binary's test files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

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

/// Starts `nova serve` on a free loopback port over `data_dir`, with `args` and `env` added; returns the
/// process and its base URL. The server gets none of the caller's database, blob, Redis or model settings:
/// what it uses is what the test gives it.
pub fn start_serve(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (KillOnDrop, String) {
    let (child, base, _) = start_serve_on("127.0.0.1:0", data_dir, args, env);
    (child, base)
}

/// [`start_serve`] listening on `listen`; also returns the rest of the server's stdout, after its banner.
pub fn start_serve_on(
    listen: &str,
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (KillOnDrop, String, BufReader<ChildStdout>) {
    let mut command = nova();
    command.args(["serve", "--listen", listen, "--data-dir"]).arg(data_dir).args(args);
    for name in
        ["NOVA_DATABASE_URL", "NOVA_BLOB_URL", "NOVA_REDIS_URL", "NOVA_LLM_MODEL", "NOVA_LLM_BASE_URL", "NOVA_API_KEY"]
    {
        command.env_remove(name);
    }
    command.env("NOVA_LOG", "warn").envs(env.iter().copied());
    let mut child = KillOnDrop(command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap());
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    let base =
        banner.trim().strip_prefix("nova: listening on ").unwrap_or_else(|| panic!("banner: {banner:?}")).to_string();
    (child, base, stdout)
}

/// A new key for `tenant` in the store of `data`, as `nova keys create` prints it.
pub fn create_key(data: &Path, tenant: &str) -> String {
    let made = nova()
        .args(["keys", "create", "--tenant", tenant, "--data-dir"])
        .arg(data)
        .env_remove("NOVA_DATABASE_URL")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    String::from_utf8(made.stdout).unwrap().trim().to_string()
}

/// Kills the process when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls the job that `get` asks for (a `GET /v1/jobs/{id}`) until it has succeeded, and returns it; fails the
/// test when it fails, is canceled, or has not succeeded within a minute.
pub async fn wait_succeeded(get: impl Fn() -> reqwest::RequestBuilder) -> serde_json::Value {
    let job = wait_finished(get, std::time::Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "the job did not succeed: {job}");
    job
}

/// Polls the job that `get` asks for until it has ended (succeeded, failed or canceled) and returns it; fails
/// the test when it has not ended within `limit`.
pub async fn wait_finished(get: impl Fn() -> reqwest::RequestBuilder, limit: std::time::Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let job: serde_json::Value = get().send().await.unwrap().json().await.unwrap();
        if matches!(job["status"].as_str(), Some("succeeded" | "failed" | "canceled")) {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job has not ended in {limit:?}: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
