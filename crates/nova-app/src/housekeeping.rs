//! The upkeep of the stored state, and the work that runs beside the queue in every NOVA process that is
//! given a store: [`spawn`] starts the webhook dispatcher ([`crate::webhooks::run`]), the scheduler
//! ([`crate::schedules::run`]) and [`run`], the housekeeping. `nova serve` (with or without workers) and `nova worker` both start them, so a deployment of
//! API processes with `--workers 0` and separate workers sends its webhooks and keeps its retention whichever
//! processes it runs. Several processes share them safely: webhook messages are leased from the outbox one
//! sender at a time, and a deletion another process repeats finds nothing left. Every deletion goes in bounded
//! batches, so no statement holds a table for long.

use std::time::Duration;

use nova_core::error_chain;
use nova_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::webhooks::WebhookConfig;

/// What the background work keeps and for how long.
#[derive(Debug, Clone)]
pub struct HousekeepingConfig {
    /// Finished jobs older than this are deleted with their attempts, events, artifacts and versions; `None`
    /// keeps them.
    pub job_retention: Option<Duration>,
    /// Documents older than this are deleted, with each blob no document names any more; `None` keeps them.
    pub document_retention: Option<Duration>,
    /// How often the housekeeping runs.
    pub every: Duration,
    /// The most unfinished jobs one tenant may have, which the scheduler keeps to as the API does
    /// ([`crate::schedules::fire_due`]); `None`: no limit.
    pub max_unfinished_jobs: Option<u32>,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            job_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            document_retention: None,
            every: Duration::from_secs(300),
            max_unfinished_jobs: None,
        }
    }
}

/// How long delivered and dead webhook messages are kept.
const DELIVERY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Starts the webhook dispatcher, the scheduler and the housekeeping on the current runtime; all stop at
/// `shutdown`.
pub fn spawn(
    store: &Store,
    webhooks: WebhookConfig,
    housekeeping: HousekeepingConfig,
    shutdown: &CancellationToken,
) -> [JoinHandle<()>; 3] {
    [
        tokio::spawn(crate::webhooks::run(store.clone(), webhooks, shutdown.clone())),
        tokio::spawn(crate::schedules::run(store.clone(), housekeeping.max_unfinished_jobs, shutdown.clone())),
        tokio::spawn(run(store.clone(), housekeeping, shutdown.clone())),
    ]
}

/// Every `config.every` until `shutdown`: deletes expired idempotency records, old webhook messages, finished
/// jobs and documents past their retention, and batches whose jobs are all gone.
pub async fn run(store: Store, config: HousekeepingConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        once(&store, &config).await;
    }
}

/// One round of the housekeeping. A step that fails is logged and tried again at the next round.
pub async fn once(store: &Store, config: &HousekeepingConfig) {
    purge_idempotency(store).await;
    if let Err(e) = store.purge_deliveries(DELIVERY_RETENTION, 10_000).await {
        warn!(error = %error_chain(&e), "purging old webhook messages failed");
    }
    if let Some(age) = config.job_retention {
        prune_jobs(store, age).await;
    }
    // A batch goes once retention has deleted all its jobs (whatever deleted them).
    match store.prune_batches(1000).await {
        Ok(n) if n > 0 => info!(deleted = n, "deleted batches whose jobs are all gone"),
        Ok(_) => {}
        Err(e) => warn!(error = %error_chain(&e), "deleting batches whose jobs are gone failed"),
    }
    if let Some(age) = config.document_retention {
        prune_documents(store, age).await;
    }
}

/// Deletes expired idempotency records, in batches so no statement holds the table for long.
async fn purge_idempotency(store: &Store) {
    const BATCH: u32 = 5000;
    loop {
        match store.purge_idempotency(BATCH).await {
            Ok(n) if n < u64::from(BATCH) => break,
            Ok(_) => {}
            Err(e) => {
                warn!(error = %error_chain(&e), "purging expired idempotency records failed; trying again later");
                break;
            }
        }
    }
}

/// Deletes finished jobs older than `retention`, in batches so no statement holds the database for long.
async fn prune_jobs(store: &Store, retention: Duration) {
    const BATCH: u32 = 1000;
    let mut total = 0;
    loop {
        match store.prune_finished(retention, BATCH).await {
            Ok(n) => {
                total += n;
                if n < u64::from(BATCH) {
                    break;
                }
            }
            Err(e) => {
                warn!(error = %error_chain(&e), "pruning finished jobs failed; trying again later");
                break;
            }
        }
    }
    if total > 0 {
        info!(deleted = total, "pruned finished jobs past their retention");
    }
}

/// Deletes documents older than `age`, in batches so no statement holds the database for long.
async fn prune_documents(store: &Store, age: Duration) {
    const BATCH: u32 = 500;
    let mut total = nova_store::Pruned::default();
    loop {
        match store.prune_documents(age, BATCH).await {
            Ok(pruned) => {
                total.documents += pruned.documents;
                total.blobs += pruned.blobs;
                if pruned.documents < u64::from(BATCH) {
                    break;
                }
            }
            Err(e) => {
                warn!(error = %error_chain(&e), "deleting documents past their retention failed");
                break;
            }
        }
    }
    if total.documents > 0 {
        info!(documents = total.documents, blobs = total.blobs, "deleted documents past their retention");
    }
}
