//! `nova bench api`: a `nova serve` process on loopback under a bounded load from this process: requests per
//! second and latency for reading a job, submitting one and uploading a document, and the server's resident
//! memory idle and under load.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub struct ApiBenchArgs {
    /// Seconds of load per scenario.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests in flight at once (each on its own keep-alive connection).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Size of each uploaded document in KiB; every upload is distinct, so each one is stored.
    #[arg(long, default_value_t = 100)]
    upload_kib: usize,
    /// Also time the batch submission on a server over this PostgreSQL database (`postgres://...`).
    #[arg(long, value_name = "URL")]
    batch_database_url: Option<String>,
}

/// The server under test, stopped (SIGKILL) and its data directory removed on drop.
struct Server {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `nova serve` on a free loopback port with a fresh SQLite data directory, API only.
    fn start() -> anyhow::Result<Self> {
        Self::start_on(None)
    }

    /// [`Server::start`], over the database at `database_url` when given.
    fn start_on(database_url: Option<&str>) -> anyhow::Result<Self> {
        let data = tempfile::tempdir().context("creating a scratch data directory")?;
        let exe = std::env::current_exe().context("finding the nova binary")?;
        let mut command = Command::new(exe);
        match database_url {
            Some(url) => command.env("NOVA_DATABASE_URL", url),
            None => command.env_remove("NOVA_DATABASE_URL"),
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "0", "--data-dir"])
            .arg(data.path())
            .env("NOVA_LOG", "warn")
            // The server's capacity is measured, not the per-key rate limit a deployment sets in front of it.
            .env("NOVA_RATE_LIMIT", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nova serve")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading the server's address")?;
        let Some(base) = line.trim().strip_prefix("nova: listening on ") else {
            let _ = child.kill();
            bail!("nova serve did not start (it printed {line:?})");
        };
        Ok(Self { base: base.to_string(), child, _data: data })
    }

    fn rss(&self) -> Option<u64> {
        rss_of(self.child.id())
    }
}

/// What one scenario measured.
struct Figures {
    requests: usize,
    errors: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// CPU time the server and this process (the client) used per request, where `/proc` tells.
    server_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
}

pub fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.seconds == 0 {
        bail!("--connections and --seconds must be at least 1");
    }
    let server = Server::start()?;
    let rt = crate::serve::runtime()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.connections)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let base = server.base.clone();
        wait_ready(&client, &base).await?;
        let idle_rss = server.rss();

        // One document and one job to read back.
        let document: Value = client
            .post(format!("{base}/v1/documents"))
            .header("content-type", "text/plain")
            .body("Invoice 1\nTotal 10.00 EUR\n")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let job: Value = client
            .post(format!("{base}/v1/jobs"))
            .json(&serde_json::json!({"workflow": "noop", "input": {}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let job_id = job["id"].as_str().context("a job id")?.to_string();
        anyhow::ensure!(document["id"].is_string(), "the upload gave no document id: {document}");

        println!(
            "nova bench api: nova serve on {base} (SQLite, API only, no rate limit), {} requests in flight, \
             {} s per scenario, {} cores shared by server and client",
            args.connections,
            args.seconds,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!("{:<34} {:>11} {:>9} {:>9} {:>8}", "scenario", "requests/s", "p50 ms", "p99 ms", "errors");

        let peak = Arc::new(AtomicU64::new(idle_rss.unwrap_or(0)));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling, pid) = (peak.clone(), sampling.clone(), server.child.id());
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_of(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::park_timeout(Duration::from_millis(50));
                }
            })
        };

        let duration = Duration::from_secs(args.seconds);
        let get_url = format!("{base}/v1/jobs/{job_id}");
        let pid = server.child.id();
        let figures = load(pid, args.connections, duration, |_| {
            let request = client.get(&get_url);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        print_row("GET /v1/jobs/{id}", &figures);
        let mut cpu = vec![("GET /v1/jobs/{id}".to_string(), figures.server_cpu, figures.client_cpu)];

        let post_url = format!("{base}/v1/jobs");
        let figures = load(pid, args.connections, duration, |_| {
            let request = client.post(&post_url).json(&serde_json::json!({"workflow": "noop", "input": {}}));
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        print_row("POST /v1/jobs", &figures);
        cpu.push(("POST /v1/jobs".to_string(), figures.server_cpu, figures.client_cpu));

        let upload_url = format!("{base}/v1/documents");
        let line = "Item 0001  Consulting services, hours  1  100.00  100.00\n";
        let size = (args.upload_kib * 1024).max(64);
        let filler = line.repeat(size / line.len() + 1);
        let filler = &filler[..size - 32];
        let figures = load(pid, args.connections, duration, |i| {
            // A distinct first line per request, so every upload is a new blob and a new row.
            let body = format!("Invoice {i:>20}\n{filler}");
            let request = client.post(&upload_url).header("content-type", "text/plain").body(body);
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        let name = format!("POST /v1/documents ({} KiB)", args.upload_kib);
        print_row(&name, &figures);
        cpu.push((name, figures.server_cpu, figures.client_cpu));

        batch_submission(&client, &base, "SQLite").await?;
        if let Some(url) = &args.batch_database_url {
            let postgres = Server::start_on(Some(url))?;
            wait_ready(&client, &postgres.base).await?;
            batch_submission(&client, &postgres.base, "PostgreSQL").await?;
        }

        sampling.store(false, Ordering::Relaxed);
        sampler.thread().unpark();
        let _ = sampler.join();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        match idle_rss {
            Some(idle) => println!(
                "server resident memory: {:.1} MiB idle, {:.1} MiB peak under load",
                mib(idle),
                mib(peak.load(Ordering::Relaxed))
            ),
            None => println!("server resident memory: not readable (no /proc)"),
        }
        // What each request cost in CPU, which a machine shared with other work shows better than the rate.
        let us = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} µs", d.as_micros()));
        for (name, server, client) in cpu {
            println!("CPU per request, {name}: server {}, client {}", us(server), us(client));
        }
        anyhow::Ok(())
    })
}

/// Times `POST /v1/batches` with 10,000 `noop` inputs on the server at `base`, a few times one after the
/// other: from the request sent to the answer, which comes once the batch and its jobs are committed.
async fn batch_submission(client: &reqwest::Client, base: &str, backend: &str) -> anyhow::Result<()> {
    const JOBS: usize = 10_000;
    const RUNS: usize = 5;
    let body = serde_json::json!({"workflow": "noop", "inputs": vec![serde_json::json!({}); JOBS]});
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let sent = Instant::now();
        let answer = client.post(format!("{base}/v1/batches")).json(&body).send().await?;
        let took = sent.elapsed();
        let status = answer.status();
        let batch: Value = answer.json().await?;
        anyhow::ensure!(status.is_success() && batch["total"] == JOBS, "the batch was refused ({status}): {batch}");
        times.push(took);
    }
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "POST /v1/batches ({JOBS} jobs), {backend}: accepted in {:.0} ms (median of {RUNS}; fastest {:.0} ms, slowest {:.0} ms)",
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
    Ok(())
}

/// A process's resident set size in bytes (Linux `/proc`).
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

async fn wait_ready(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server at {base} was not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU time (user and system, all threads) a process has used so far, from Linux `/proc` (`self` for this one).
fn cpu_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold anything.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // In clock ticks, which Linux counts at 100 per second (USER_HZ) whatever the kernel's own rate.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Runs `request(i)` from `connections` concurrent loops until `duration` has passed; every request's
/// latency is kept, and the CPU time used by the server (`server`, a pid) and by this process.
async fn load<F, Fut>(server: u32, connections: usize, duration: Duration, request: F) -> Figures
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let counter = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let server = server.to_string();
    let cpu_before = (cpu_of(&server), cpu_of("self"));
    let start = Instant::now();
    let deadline = start + duration;
    let loops = (0..connections).map(|_| async {
        let mut latencies = Vec::new();
        while Instant::now() < deadline {
            let i = counter.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            let ok = request(i).await;
            latencies.push(sent.elapsed());
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        latencies
    });
    let mut latencies: Vec<Duration> = futures::future::join_all(loops).await.into_iter().flatten().collect();
    let elapsed = start.elapsed();
    let per_request = |before: Option<Duration>, now: Option<Duration>| {
        Some(now?.saturating_sub(before?) / u32::try_from(latencies.len()).ok().filter(|&n| n > 0)?)
    };
    let server_cpu = per_request(cpu_before.0, cpu_of(&server));
    let client_cpu = per_request(cpu_before.1, cpu_of("self"));
    latencies.sort_unstable();
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)));
    Figures {
        requests: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        p50: at(0.50).copied().unwrap_or_default(),
        p99: at(0.99).copied().unwrap_or_default(),
        server_cpu,
        client_cpu,
    }
}

fn print_row(name: &str, f: &Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<34} {:>11.0} {:>9.2} {:>9.2} {:>8}",
        f.requests as f64 / f.elapsed.as_secs_f64(),
        ms(f.p50),
        ms(f.p99),
        f.errors
    );
}
