//! Crash tests with real processes: `nova worker` children killed with SIGKILL mid-job, on both backends.
//! Nothing may be lost and nothing completed twice, and a dead worker's jobs run again within the lease plus
//! a few seconds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nova_core::{AttemptOutcome, JobId, JobStatus, Workflow};
use nova_store::testing::{Backend, TestStore};
use nova_store::NewJob;
use serde_json::json;

const LEASE_SECS: u64 = 2;

/// A `nova worker` process, killed when dropped so a failing test leaves none behind.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start(t: &TestStore, concurrency: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nova"))
            .args(["worker", "--database-url", &t.url, "--data-dir"])
            .arg(t.dir.path())
            .args(["--concurrency", &concurrency.to_string(), "--lease-secs", &LEASE_SECS.to_string()])
            .args(["--shutdown-grace", "5", "--sandbox-pool", "0"])
            .env("NOVA_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nova worker");
        // Wait for its banner: the worker is connected and migrated.
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
        assert!(banner.starts_with("nova: worker"), "unexpected banner {banner:?}");
        Self(child)
    }

    fn kill9(&mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }

    fn terminate(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().unwrap();
        assert!(status.success());
        assert!(self.0.wait().unwrap().success(), "a worker exits cleanly on SIGTERM");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

async fn enqueue(t: &TestStore, n: usize, sleep_ms: u64) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let new = NewJob { max_attempts: 10, ..NewJob::new(Workflow::Noop, json!({"sleep_ms": sleep_ms})) };
        ids.push(t.store.enqueue(new).await.unwrap().job.id);
    }
    ids
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every job succeeded, with exactly one succeeded attempt; returns the jobs that needed more than one.
async fn assert_exactly_once(t: &TestStore, ids: &[JobId]) -> HashMap<JobId, nova_core::Job> {
    let mut retried = HashMap::new();
    for id in ids {
        let job = t.store.get_job(*id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
        let wins = job.attempts.iter().filter(|a| a.outcome == Some(AttemptOutcome::Succeeded)).count();
        assert_eq!(wins, 1, "job {id} completed {wins} times: {job:?}");
        assert!(job.attempts.iter().all(|a| a.outcome.is_some()), "an attempt was left open: {job:?}");
        if job.attempts.len() > 1 {
            retried.insert(*id, job);
        }
    }
    retried
}

async fn a_killed_worker_s_jobs_run_again_within_the_lease(backend: Backend) {
    let Some(t) = TestStore::new(backend).await else { return };
    let ids = enqueue(&t, 12, 1500).await;
    let mut victim = WorkerProcess::start(&t, 4);
    // Let the victim take jobs, then kill it mid-job.
    wait_until("the victim claims jobs", Duration::from_secs(30), async || {
        t.store.count_jobs(JobStatus::Running).await.unwrap() >= 4
    })
    .await;
    victim.kill9();
    let killed_at = chrono::Utc::now();
    let survivor = WorkerProcess::start(&t, 6);
    wait_until("all jobs succeed", Duration::from_secs(60), async || {
        t.store.count_jobs(JobStatus::Succeeded).await.unwrap() == ids.len() as u64
    })
    .await;
    survivor.terminate();

    let retried = assert_exactly_once(&t, &ids).await;
    assert!(retried.len() >= 4, "the victim's jobs were claimed again: {}", retried.len());
    for job in retried.values() {
        let lost = &job.attempts[0];
        assert_eq!(lost.error.as_ref().unwrap().code, "lease_expired");
        let again = job.attempts[1].started_at;
        let delay = (again - killed_at).to_std().unwrap_or_default();
        assert!(delay <= Duration::from_secs(LEASE_SECS + 3), "claimed again {delay:?} after the crash");
    }
}

async fn workers_killed_at_random_lose_nothing_and_double_nothing(backend: Backend) {
    let Some(t) = TestStore::new(backend).await else { return };
    // 1,000 jobs of 30 ms on 12 slots: every worker is busy whenever it is killed.
    let ids = enqueue(&t, 1000, 30).await;
    let mut workers: Vec<WorkerProcess> = (0..3).map(|_| WorkerProcess::start(&t, 4)).collect();
    let start = Instant::now();
    let mut kills = 0;
    while t.store.count_jobs(JobStatus::Succeeded).await.unwrap() < ids.len() as u64 {
        assert!(start.elapsed() < Duration::from_secs(120), "jobs did not finish");
        // Kill a worker picked at random every 300 ms, and start a fresh one in its place.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if kills < 8 {
            let i = (JobId::new().as_uuid().as_u128() % workers.len() as u128) as usize;
            workers[i].kill9();
            workers[i] = WorkerProcess::start(&t, 4);
            kills += 1;
        }
    }
    for w in workers {
        w.terminate();
    }
    let retried = assert_exactly_once(&t, &ids).await;
    assert!(
        kills >= 3 && !retried.is_empty(),
        "the kills must interrupt jobs: {kills} kills, {} retried",
        retried.len()
    );
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

both_backends!(
    a_killed_worker_s_jobs_run_again_within_the_lease,
    workers_killed_at_random_lose_nothing_and_double_nothing
);
