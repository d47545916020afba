//! `nova bench queue`: the job queue with no-op jobs on SQLite and PostgreSQL: enqueue rate, completion rate
//! through the real worker pool, enqueue-to-start latency with idle workers, the completion rate with the jobs
//! spread over many tenants (whose claims take turns between them), and the completion rate again with a
//! long history of finished jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::DurationRound;
use clap::Args;
use nova_app::WorkerConfig;
use nova_core::{JobStatus, TenantId, Workflow};
use nova_store::scratch::ScratchStore;
use nova_store::{NewJob, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct QueueBenchArgs {
    /// No-op jobs per throughput measurement.
    #[arg(long, default_value_t = 5000)]
    jobs: u64,
    /// Finished jobs put in the history before the last measurement.
    #[arg(long, default_value_t = 1_000_000)]
    history: u64,
    /// Jobs timed one at a time, on idle workers, for the pickup latency.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// No-op jobs the worker pool runs at once. A job's life is a claim and a completion, each a round
    /// trip to the database, so a pool's throughput grows with the jobs it has in flight; 64 async slots
    /// cost next to nothing (a pool of I/O-bound jobs, such as model calls, runs as many).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Clients enqueuing at once, as a server's connections do: their enqueues share transactions (group
    /// commit), as `nova serve`'s submissions do.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Tenants the jobs are spread over for the many-tenants run, every one with jobs waiting, so each claim
    /// shares its slots among them all.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    tenants: u64,
    /// A PostgreSQL server to measure too (a scratch database is created on it and dropped afterwards), e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres. Without it, only SQLite is measured.
    #[arg(long, env = "NOVA_BENCH_POSTGRES_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Leave the planner's statistics as they are after inserting the history (no `ANALYZE`).
    #[arg(long, env = "NOVA_NO_ANALYZE", hide = true)]
    no_analyze: bool,
}

/// One backend's figures.
struct Figures {
    enqueue_per_s: f64,
    /// The same clients, each enqueue in a transaction of its own (no group commit).
    enqueue_alone_per_s: f64,
    complete_per_s: f64,
    pickup_p50_ms: f64,
    pickup_p99_ms: f64,
    complete_many_tenants_per_s: f64,
    complete_with_history_per_s: f64,
}

pub fn run(args: QueueBenchArgs) -> anyhow::Result<()> {
    let rt = crate::serve::runtime()?;
    rt.block_on(async {
        println!(
            "nova bench queue: {} no-op jobs per run, {} clients enqueuing, a pool of {} in-process workers, \
             {} pickup samples, {} cores",
            args.jobs,
            args.clients,
            args.concurrency,
            args.samples,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let mut rows = Vec::new();
        let sqlite = ScratchStore::sqlite().await.context("a scratch SQLite store")?;
        rows.push(("sqlite", measure(&sqlite.store, &args).await?));
        drop(sqlite);
        match &args.postgres {
            Some(url) => {
                let pg = ScratchStore::create_postgres(url).await.context("a scratch database on PostgreSQL")?;
                rows.push(("postgres", measure(&pg.store, &args).await?));
            }
            None => println!("(PostgreSQL not measured: pass --postgres URL or set NOVA_BENCH_POSTGRES_URL)"),
        }
        print_table(&args, &rows);
        Ok(())
    })
}

async fn measure(store: &Store, args: &QueueBenchArgs) -> anyhow::Result<Figures> {
    let wake = Arc::new(Notify::new());
    let one_tenant = [TenantId::DEFAULT];
    let enqueue_alone_per_s = enqueue_all(store, args.jobs, args.clients, &one_tenant).await?;
    drain(store, args, &wake).await?;
    let grouped = store.clone().with_group_commit();
    let enqueue_per_s = enqueue_all(&grouped, args.jobs, args.clients, &one_tenant).await?;
    let complete_per_s = drain(store, args, &wake).await?;
    let (pickup_p50_ms, pickup_p99_ms) = pickup(store, args, &wake).await?;
    let mut tenants = Vec::new();
    for i in 0..args.tenants {
        tenants.push(store.ensure_tenant(&format!("bench-{i}")).await?);
    }
    enqueue_all(store, args.jobs, args.clients, &tenants).await?;
    let complete_many_tenants_per_s = drain(store, args, &wake).await?;
    eprintln!("inserting {} finished jobs of history...", args.history);
    store.insert_history(args.history, !args.no_analyze).await?;
    enqueue_all(&grouped, args.jobs, args.clients, &one_tenant).await?;
    let complete_with_history_per_s = drain(store, args, &wake).await?;
    Ok(Figures {
        enqueue_per_s,
        enqueue_alone_per_s,
        complete_per_s,
        pickup_p50_ms,
        pickup_p99_ms,
        complete_many_tenants_per_s,
        complete_with_history_per_s,
    })
}

/// Enqueues `n` no-op jobs from `clients` concurrent tasks, each one job at a time as a request would, the
/// tenants of `tenants` in turn; returns jobs per second.
async fn enqueue_all(store: &Store, n: u64, clients: usize, tenants: &[TenantId]) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients as u64 {
        let store = store.clone();
        let share = n / clients as u64 + u64::from(c < n % clients as u64);
        let tenants = tenants.to_vec();
        tasks.spawn(async move {
            for i in 0..share {
                let tenant = tenants[((c + i * clients as u64) % tenants.len() as u64) as usize];
                store.enqueue(NewJob { tenant, ..NewJob::new(Workflow::Noop, serde_json::Value::Null) }).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Starts a worker pool on the queued jobs and times it until none is left; returns jobs per second.
async fn drain(store: &Store, args: &QueueBenchArgs, wake: &Arc<Notify>) -> anyhow::Result<f64> {
    let queued = args.jobs;
    let shutdown = CancellationToken::new();
    let config = WorkerConfig { concurrency: args.concurrency, ..WorkerConfig::default() };
    let start = Instant::now();
    let pool = tokio::spawn(nova_app::run(store.clone(), config, wake.clone(), shutdown.clone().cancelled_owned()));
    while store.has_unfinished().await? {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    shutdown.cancel();
    pool.await.context("the worker pool panicked")?;
    Ok(queued as f64 / elapsed.as_secs_f64())
}

/// With the pool idle, enqueues one job at a time (waking the workers as the API does) and measures the
/// time from the enqueue call to the attempt's start; returns p50 and p99 in milliseconds.
async fn pickup(store: &Store, args: &QueueBenchArgs, wake: &Arc<Notify>) -> anyhow::Result<(f64, f64)> {
    let shutdown = CancellationToken::new();
    let config = WorkerConfig { concurrency: args.concurrency, ..WorkerConfig::default() };
    let pool = tokio::spawn(nova_app::run(store.clone(), config, wake.clone(), shutdown.clone().cancelled_owned()));
    // Let the pool reach its idle wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        // Attempts record their start to the millisecond: compare at that resolution.
        let before = chrono::Utc::now().duration_trunc(chrono::TimeDelta::milliseconds(1))?;
        let job = store.enqueue(NewJob::new(Workflow::Noop, serde_json::Value::Null)).await?.job;
        wake.notify_one();
        let started = loop {
            let current = store.get_job(job.id).await?.context("a benchmark job vanished")?;
            if current.status == JobStatus::Succeeded {
                break current.attempts[0].started_at;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        latencies.push((started - before).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    shutdown.cancel();
    pool.await.context("the worker pool panicked")?;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.50), at(0.99)))
}

fn print_table(args: &QueueBenchArgs, rows: &[(&str, Figures)]) {
    println!();
    println!(
        "{:<9} {:>11} {:>15} {:>12} {:>11} {:>11} {:>24} {:>22} {:>8}",
        "backend",
        "enqueue/s",
        "1 tx each/s",
        "complete/s",
        "pickup p50",
        "pickup p99",
        format!("complete/s, {} tenants", args.tenants),
        format!("complete/s, {} hist.", human(args.history)),
        "change"
    );
    for (name, f) in rows {
        let change = (f.complete_with_history_per_s / f.complete_per_s - 1.0) * 100.0;
        println!(
            "{:<9} {:>11.0} {:>15.0} {:>12.0} {:>9.2}ms {:>9.2}ms {:>24.0} {:>22.0} {:>7.1}%",
            name,
            f.enqueue_per_s,
            f.enqueue_alone_per_s,
            f.complete_per_s,
            f.pickup_p50_ms,
            f.pickup_p99_ms,
            f.complete_many_tenants_per_s,
            f.complete_with_history_per_s,
            change
        );
    }
    println!();
    println!(
        "enqueue/s: {} clients, one job per call, group commit (as `nova serve`); 1 tx each/s: the same clients,",
        args.clients
    );
    println!("each enqueue a transaction of its own. Goals for enqueue/s: SQLite >= 10,000, PostgreSQL >= 8,000.");
    println!("Goals on a 2-core machine: PostgreSQL >= 5,000 jobs/s, SQLite >= 2,000 jobs/s, p99 pickup < 50 ms,");
    println!("at most 20% slower with the history. For scale, Celery with Redis is reported at roughly 1,000 to");
    println!("2,000 tasks/s on such a machine (not measured here).");
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}
