//! NOVA's application layer, between the libraries (`nova-core`, `nova-store`, `nova-extract`,
//! `nova-sandbox`, `nova-llm`) and the binary (`nova-cli`) with its HTTP API (`nova-server`):
//!
//! - [`extraction`]: the extraction service (documents read in confined processes) with its [`engines`]
//!   (tesseract, pdftoppm), built from the configuration the binary parsed;
//! - [`workflows`]: how each workflow runs, one module per workflow;
//! - the worker pool, here: [`run_attempt`] runs one claimed job to an outcome while renewing its lease;
//!   [`run`] claims jobs up to the configured concurrency and drains them on shutdown;
//! - [`webhooks`] (the dispatcher) and [`housekeeping`] (retention), which every process with a store runs
//!   ([`housekeeping::spawn`]).

pub mod engines;
pub mod extraction;
pub mod housekeeping;
pub mod sandboxes;
pub mod schedules;
pub mod webhooks;
pub mod workflows;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nova_core::error_chain;
use nova_core::{AttemptToken, JobError, JobId, JobStatus, WorkerId, Workflow};
use nova_store::{Claim, ClaimedJob, Completion, Heartbeat, Store, StoreError, Swept};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

pub use workflows::WorkflowError;

/// How a worker pool runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs of each workflow run at once by this process (each workflow has slots of its own, so a slow
    /// workflow never holds up the others).
    pub concurrency: usize,
    /// Workflows whose slots differ from `concurrency`; `0` leaves the workflow to other processes.
    pub workflow_concurrency: HashMap<Workflow, usize>,
    /// How many jobs of one workflow a tenant may run at once, across every worker of the queue, when the
    /// tenant has no limit of its own (`nova tenants set`); `None`: no limit. Every process of a queue should
    /// have the same.
    pub tenant_max_running: Option<u32>,
    /// How long a claim holds a job without a heartbeat.
    pub lease: Duration,
    /// How often a running attempt renews its lease.
    pub heartbeat: Duration,
    /// How often an idle worker looks for work when nothing wakes it.
    pub poll_interval: Duration,
    /// On shutdown, how long running jobs may take to finish before they are handed back to the queue.
    pub shutdown_grace: Duration,
    /// The sandbox that `code.run` jobs run in; without one they are retried (another worker may have one).
    pub sandbox: Option<SandboxHandle>,
    /// Where documents are read: in confined helper processes (what the binary sets up) or in this one.
    pub extractor: extraction::Extractor,
    /// The model of `invoice.extract`'s AI path and of `task.run` (none by default).
    pub model: nova_llm::ModelClient,
}

impl WorkerConfig {
    /// Jobs of `workflow` this process runs at once.
    pub fn slots(&self, workflow: Workflow) -> usize {
        self.workflow_concurrency.get(&workflow).copied().unwrap_or(self.concurrency)
    }

    /// Jobs this process runs at once, all workflows together.
    pub fn total_slots(&self) -> usize {
        Workflow::ALL.iter().map(|&w| self.slots(w)).sum()
    }
}

/// A shared sandbox, for the worker's configuration.
#[derive(Clone)]
pub struct SandboxHandle(pub Arc<dyn nova_sandbox::Sandbox>);

impl std::fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SandboxHandle")
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            workflow_concurrency: HashMap::new(),
            tenant_max_running: None,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            sandbox: None,
            extractor: extraction::Extractor::default(),
            model: Ok(None),
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The outcome was recorded; the job now has this status.
    Recorded(JobStatus),
    /// The lease passed to another attempt; nothing was written.
    LeaseLost,
    /// The job was handed back to the queue (shutdown).
    Released,
    /// Recording the outcome failed; the lease will lapse and the job will be claimed again.
    StoreFailed,
}

impl AttemptEnd {
    /// The `outcome` label of the job metrics: the job's new status (`succeeded`, `failed`, `retrying`,
    /// `canceled`), or `released`, `lease_lost`, `store_failed`.
    pub fn label(&self) -> &'static str {
        match self {
            AttemptEnd::Recorded(status) => status.as_str(),
            AttemptEnd::LeaseLost => "lease_lost",
            AttemptEnd::Released => "released",
            AttemptEnd::StoreFailed => "store_failed",
        }
    }
}

/// Runs a worker pool until `shutdown` resolves, then stops claiming, gives running jobs
/// [`WorkerConfig::shutdown_grace`] to finish and hands the rest back to the queue. `wake` is notified by
/// whoever enqueues, so an idle worker starts at once instead of at its next poll.
pub async fn run(store: Store, config: WorkerConfig, wake: Arc<Notify>, shutdown: impl Future<Output = ()>) {
    let store = store.with_tenant_max_running(config.tenant_max_running);
    let worker = WorkerId::new();
    let hand_back = CancellationToken::new();
    let completer = Completer::start(store.clone());
    let mut running = JoinSet::new();
    // The workflow of each running attempt, by task (a panicked task still has its id).
    let mut running_workflow: HashMap<tokio::task::Id, Workflow> = HashMap::new();
    let slots: Vec<String> = Workflow::ALL.iter().map(|&w| format!("{w}={}", config.slots(w))).collect();
    info!(%worker, slots = %slots.join(" "), "worker started");
    let listener = match store.listen_for_jobs(wake.clone()).await {
        Ok(listener) => listener,
        Err(e) => {
            warn!(error = %error_chain(&e), "cannot listen for new jobs; polling only");
            None
        }
    };
    tokio::pin!(shutdown);
    let mut poll = tokio::time::interval(config.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Workflows whose last claim filled every slot asked for, so more may be waiting, or left a tenant's
    // jobs behind for its limit, which an ending attempt may lift. When an attempt ends, only these are
    // claimed again; a wake-up or a poll looks at every workflow.
    let mut may_have_more: HashSet<Workflow> = HashSet::new();
    let mut look_everywhere = true;
    let mut next_sweep = tokio::time::Instant::now();
    loop {
        // Housekeeping (lapsed leases, queue-wait timeouts) once per poll interval, not with every claim.
        if tokio::time::Instant::now() >= next_sweep {
            match store.sweep().await {
                Ok(Swept { lapsed: 0, expired: 0 }) => {}
                Ok(swept) => {
                    info!(lapsed = swept.lapsed, expired = swept.expired, "requeued or failed abandoned jobs");
                    look_everywhere = true;
                }
                Err(e) => warn!(error = %error_chain(&e), "sweeping lapsed leases failed; trying again later"),
            }
            next_sweep = tokio::time::Instant::now() + config.poll_interval;
        }
        // Fill the free slots of each workflow with one claim: one transaction (one commit) for the batch.
        let wants: Vec<(Workflow, u32)> = Workflow::ALL
            .iter()
            .filter(|w| look_everywhere || may_have_more.contains(w))
            .map(|&w| (w, config.slots(w).saturating_sub(running_workflow.values().filter(|&&r| r == w).count())))
            .filter(|&(_, free)| free > 0)
            .map(|(w, free)| (w, u32::try_from(free).unwrap_or(u32::MAX)))
            .collect();
        look_everywhere = false;
        if !wants.is_empty() {
            match store.claim_turns(worker, config.lease, &wants).await {
                Ok(Claim { jobs: batch, held_back }) => {
                    for &(w, asked) in &wants {
                        let taken = batch.iter().filter(|c| c.job.workflow == w).count();
                        if taken == asked as usize || held_back.contains(&w) {
                            may_have_more.insert(w);
                        } else {
                            may_have_more.remove(&w);
                        }
                    }
                    for claimed in batch {
                        let workflow = claimed.job.workflow;
                        let attempt =
                            run_attempt(store.clone(), completer.clone(), claimed, config.clone(), hand_back.clone());
                        running_workflow.insert(running.spawn(attempt).id(), workflow);
                    }
                }
                Err(e) => error!(error = %error_chain(&e), "claiming jobs failed"),
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            Some(ended) = running.join_next_with_id(), if !running.is_empty() => {
                // Free the slot of every attempt that ended meanwhile, so the next claim fills them all.
                let mut ended = Some(ended);
                while let Some(end) = ended {
                    let task = match end {
                        Ok((task, _)) => task,
                        Err(e) => {
                            error!(error = %e, "a job's attempt panicked; its lease will lapse and it will run again");
                            e.id()
                        }
                    };
                    running_workflow.remove(&task);
                    ended = running.try_join_next_with_id();
                }
            }
            _ = wake.notified() => look_everywhere = true,
            _ = poll.tick() => look_everywhere = true,
        }
    }

    if !running.is_empty() {
        info!(running = running.len(), grace = ?config.shutdown_grace, "worker stopping: letting running jobs finish");
        let drain = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(config.shutdown_grace, drain).await.is_err() {
            warn!(running = running.len(), "grace period over: handing running jobs back to the queue");
            hand_back.cancel();
            while running.join_next().await.is_some() {}
        }
    }
    // The LISTEN connection goes with the pool.
    if let Some(listener) = listener {
        listener.abort();
    }
    info!(%worker, "worker stopped");
}

/// Why an attempt stopped before its workflow did.
enum Interrupt {
    Canceled,
    LeaseLost,
    HandBack,
}

/// Runs one claimed job to its end, renewing the lease meanwhile. When `hand_back` is cancelled the job is
/// released to the queue instead.
///
/// Its logs are in a `job` span that carries the id of the HTTP request that submitted the job
/// (`request_id`, when it came through the API), and its end is counted in `nova_jobs_finished_total` and
/// `nova_job_duration_seconds` by workflow and outcome.
pub async fn run_attempt(
    store: Store,
    completer: Completer,
    claimed: ClaimedJob,
    config: WorkerConfig,
    hand_back: CancellationToken,
) -> AttemptEnd {
    let workflow = claimed.job.workflow;
    let span = tracing::info_span!(
        "job",
        job = %claimed.job.id,
        workflow = %workflow,
        attempt = claimed.attempt,
        request_id = claimed.job.request_id.as_deref(),
    );
    let started = tokio::time::Instant::now();
    let end = attempt(store, completer, claimed, config, hand_back).instrument(span).await;
    let labels = [("workflow", workflow.as_str()), ("outcome", end.label())];
    metrics::counter!("nova_jobs_finished_total", &labels).increment(1);
    metrics::histogram!("nova_job_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    end
}

/// [`run_attempt`] inside its span.
async fn attempt(
    store: Store,
    completer: Completer,
    claimed: ClaimedJob,
    config: WorkerConfig,
    hand_back: CancellationToken,
) -> AttemptEnd {
    let ClaimedJob { job, token, attempt, tenant, .. } = claimed;
    let started = tokio::time::Instant::now();
    info!(job = %job.id, workflow = %job.workflow, attempt, "job started");
    // The job's hard deadline: past it the attempt fails with `timeout`, so a document that makes extraction
    // hang cannot hold a worker (and renew its lease) forever.
    let limit = Duration::from_secs(job.timeout_seconds);
    let work = async {
        let progress = workflows::Progress { store: &store, job: job.id, token };
        let services = workflows::Services {
            extractor: &config.extractor,
            sandbox: config.sandbox.as_ref(),
            model: &config.model,
        };
        tokio::time::timeout(limit, workflows::execute(&store, &job, attempt, tenant, &progress, services))
            .await
            .unwrap_or_else(|_| {
                Err(WorkflowError::Permanent(JobError {
                    code: "timeout".into(),
                    message: format!("the job did not finish within its deadline of {} s", limit.as_secs()),
                }))
            })
    };
    // The lease is renewed beside the workflow, never in a `select!` arm that would leave the workflow's
    // future unpolled: a workflow suspended mid-write (holding a transaction, and on SQLite the process's
    // write turn) would then block the heartbeat's own write forever.
    let renew = async {
        let mut beat = tokio::time::interval_at(started + config.heartbeat, config.heartbeat);
        loop {
            beat.tick().await;
            match store.heartbeat(job.id, token, config.lease).await {
                Ok(Heartbeat::Renewed) => {}
                Ok(Heartbeat::CancelRequested) => return Interrupt::Canceled,
                Err(StoreError::LeaseLost) => return Interrupt::LeaseLost,
                // The lease may still hold; the next beat tries again.
                Err(e) => warn!(job = %job.id, error = %error_chain(&e), "heartbeat failed"),
            }
        }
    };
    let outcome = tokio::select! {
        outcome = work => Ok(outcome),
        interrupt = renew => Err(interrupt),
        _ = hand_back.cancelled() => Err(Interrupt::HandBack),
    };
    // Past this point the workflow's future is dropped: whatever it held is released.
    // A workflow that learned of its cancellation or of its lost lease first ends as the heartbeat would;
    // a failure says whether another attempt could help.
    let outcome = match outcome {
        Ok(Ok(result)) => Ok(Ok(result)),
        Ok(Err(WorkflowError::Permanent(e))) => Ok(Err((e, false))),
        Ok(Err(WorkflowError::Transient(e))) => Ok(Err((e, true))),
        Ok(Err(WorkflowError::Canceled)) => Err(Interrupt::Canceled),
        Ok(Err(WorkflowError::LeaseLost)) => Err(Interrupt::LeaseLost),
        Err(interrupt) => Err(interrupt),
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(Interrupt::Canceled) => {
            // Work on a blocking thread finishes unobserved; sandboxed code is killed with its guard.
            return match store.finish_canceled(job.id, token).await {
                Ok(()) => {
                    info!(job = %job.id, attempt, "job canceled while running");
                    AttemptEnd::Recorded(JobStatus::Canceled)
                }
                Err(StoreError::LeaseLost) => AttemptEnd::LeaseLost,
                Err(e) => {
                    error!(job = %job.id, error = %error_chain(&e), "recording the cancellation failed");
                    AttemptEnd::StoreFailed
                }
            };
        }
        Err(Interrupt::LeaseLost) => {
            warn!(job = %job.id, attempt, "lease lost: another attempt owns the job; abandoning this one");
            return AttemptEnd::LeaseLost;
        }
        Err(Interrupt::HandBack) => {
            return match store.release(job.id, token).await {
                Ok(()) => {
                    info!(job = %job.id, attempt, "job handed back to the queue");
                    AttemptEnd::Released
                }
                Err(StoreError::LeaseLost) => AttemptEnd::LeaseLost,
                Err(e) => {
                    error!(job = %job.id, error = %error_chain(&e), "handing the job back failed; its lease will lapse");
                    AttemptEnd::StoreFailed
                }
            };
        }
    };

    let elapsed = started.elapsed();
    let recorded = match outcome {
        Ok(result) => completer.complete(job.id, token, result).await.map(|()| JobStatus::Succeeded),
        Err((e, false)) => store.fail(job.id, token, &e, None).await,
        Err((e, true)) => {
            let delay = backoff(attempt, token.as_uuid().as_u128() as u64);
            store.fail(job.id, token, &e, Some(delay)).await
        }
    };
    match recorded {
        Ok(status) => {
            info!(job = %job.id, workflow = %job.workflow, attempt, ?elapsed, status = status.as_str(), "job finished");
            AttemptEnd::Recorded(status)
        }
        Err(StoreError::LeaseLost) => {
            warn!(job = %job.id, attempt, "outcome refused: the lease had passed to another attempt");
            AttemptEnd::LeaseLost
        }
        Err(e) => {
            error!(job = %job.id, error = %error_chain(&e), "recording the outcome failed; the job will run again");
            AttemptEnd::StoreFailed
        }
    }
}

/// Records succeeded attempts for a pool, many per transaction: each attempt hands its result over and
/// waits for the answer, while one task writes whatever has gathered since its last write in one
/// [`Store::complete_batch`]. An idle pool writes each completion at once (a batch of one); a busy one pays
/// one commit for many jobs. Cheap to clone; the writing task ends with the last clone.
#[derive(Clone)]
pub struct Completer {
    store: Store,
    pending: mpsc::UnboundedSender<Pending>,
}

struct Pending {
    completion: Completion,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The most completions written in one transaction.
const MAX_COMPLETION_BATCH: usize = 512;

impl Completer {
    /// Starts the writing task on the current runtime.
    pub fn start(store: Store) -> Completer {
        let (pending, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_completions(store.clone(), queue));
        Completer { store, pending }
    }

    /// Records the attempt's success and the job's result; `Err(LeaseLost)` if the attempt lost the job.
    pub async fn complete(&self, job: JobId, token: AttemptToken, result: serde_json::Value) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let completion = Completion { job, token, result };
        if let Err(mpsc::error::SendError(unsent)) = self.pending.send(Pending { completion, reply }) {
            // The writing task is gone (its runtime is shutting down): write this one directly.
            let Completion { job, token, result } = unsent.completion;
            return self.store.complete(job, token, &result).await;
        }
        match answer.await {
            Ok(recorded) => recorded,
            // The writer dropped the request unanswered: the lease will lapse and the job run again.
            Err(_) => Err(StoreError::Corrupt("the completion writer stopped before answering".into())),
        }
    }
}

async fn write_completions(store: Store, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut pending = Vec::with_capacity(MAX_COMPLETION_BATCH);
    while queue.recv_many(&mut pending, MAX_COMPLETION_BATCH).await > 0 {
        let (batch, replies): (Vec<Completion>, Vec<_>) = pending.drain(..).map(|p| (p.completion, p.reply)).unzip();
        match store.complete_batch(&batch).await {
            Ok(recorded) => {
                for (reply, recorded) in replies.into_iter().zip(recorded) {
                    let _ = reply.send(if recorded { Ok(()) } else { Err(StoreError::LeaseLost) });
                }
            }
            Err(e) => {
                // One write per job instead, so each gets its own answer (and one bad row fails alone).
                warn!(jobs = batch.len(), error = %error_chain(&e), "recording a batch of completions failed; recording them one by one");
                for (c, reply) in batch.into_iter().zip(replies) {
                    let _ = reply.send(store.complete(c.job, c.token, &c.result).await);
                }
            }
        }
    }
}

/// Exponential backoff from 1 s, capped at 5 minutes, with up to 25% jitter drawn from `seed`.
fn backoff(attempt: u32, seed: u64) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.saturating_sub(1).min(8)).min(Duration::from_secs(300));
    let jitter = base.mul_f64((seed % 1000) as f64 / 4000.0);
    base + jitter
}

/// A job error for an unexpected internal failure; details go to the log, not to the client.
pub(crate) fn internal(what: &str) -> JobError {
    JobError { code: "internal".into(), message: format!("internal error while {what}; see the server log") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1, 0), Duration::from_secs(1));
        assert_eq!(backoff(2, 0), Duration::from_secs(2));
        assert_eq!(backoff(4, 0), Duration::from_secs(8));
        assert_eq!(backoff(40, 0), Duration::from_secs(256));
        assert!(backoff(1, 999) > Duration::from_secs(1) && backoff(1, 999) <= Duration::from_millis(1250));
    }
}
