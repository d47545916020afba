//! Crash test of the write path: a `nova serve` process killed with SIGKILL while clients submit jobs at
//! once, on both backends. Submissions share transactions (group commit), and a `202` is sent only after its
//! transaction committed, so every job a client was answered for exists after a restart; a job whose request
//! got no answer may or may not exist.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nova_core::JobId;
use nova_store::testing::{Backend, TestStore};
use serde_json::{json, Value};

use crate::common::start_serve;

/// Submitters at once, as connections of one server.
const CLIENTS: usize = 16;
/// Acknowledged submissions before the kill.
const BEFORE_KILL: usize = 400;

async fn a_killed_server_loses_no_acknowledged_submission(backend: Backend) {
    let Some(t) = TestStore::new(backend).await else { return };
    let args = ["--database-url", t.url.as_str(), "--workers", "0", "--sandbox-pool", "0"];
    let env = [("NOVA_RATE_LIMIT", "off")];
    let (mut server, base) = start_serve(t.dir.path(), &args, &env);
    let client = reqwest::Client::new();
    // What each `202` said: the job's id and the input it was sent with.
    let acknowledged: Arc<Mutex<Vec<(JobId, Value)>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, url) = (client.clone(), format!("{base}/v1/jobs"));
        let (acknowledged, answered) = (acknowledged.clone(), answered.clone());
        clients.spawn(async move {
            for n in 0..10_000 {
                // A distinct input per submission (no-op jobs take only a duration), to tell the jobs apart.
                let input = json!({"sleep_ms": c * 10_000 + n});
                let sent = client.post(&url).json(&json!({"workflow": "noop", "input": input})).send().await;
                // Refused or cut off: the server is gone.
                let Ok(answer) = sent else { return };
                let status = answer.status();
                let Ok(body) = answer.json::<Value>().await else { return };
                assert_eq!(status, 202, "a submission before the kill was refused: {body}");
                let id: JobId = body["id"].as_str().unwrap().parse().unwrap();
                acknowledged.lock().unwrap().push((id, input));
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let start = Instant::now();
    while answered.load(Ordering::Relaxed) < BEFORE_KILL {
        assert!(start.elapsed() < Duration::from_secs(60), "the clients were not answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Killed while every client has a submission in flight.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }

    let (_server, base) = start_serve(t.dir.path(), &args, &env);
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(acknowledged.len() >= BEFORE_KILL);
    for (id, input) in &acknowledged {
        let answer = client.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "acknowledged job {id} was lost");
        let job: Value = answer.json().await.unwrap();
        assert_eq!(&job["input"], input, "job {id} is not the submission it was acknowledged for");
        let events = t.store.job_events(*id, 0, 10).await.unwrap();
        assert_eq!(events.first().map(|e| e.kind.as_str()), Some("queued"), "job {id} lost its queued event");
    }
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

both_backends!(a_killed_server_loses_no_acknowledged_submission);
