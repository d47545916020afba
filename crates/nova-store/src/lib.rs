//! NOVA's persistence.
//!
//! [`Store`] owns the SQL database (SQLite, a file in the data directory, or PostgreSQL) and the [`BlobStore`] (content-
//! addressed bytes). It knows nothing of HTTP: the server and the workers call its typed operations, and all
//! SQL lives here.
//!
//! Invariants:
//! - a document row is written only after its bytes are stored, so a crash leaves at worst an unreferenced
//!   blob (harmless: blobs are content-addressed and reused), never a row without bytes;
//! - every write made for a running attempt is fenced by the attempt's [`AttemptToken`]: a worker that lost
//!   its lease cannot overwrite a newer attempt;
//! - no transaction stays open while a job runs.

mod artifacts;
mod batches;
mod blob;
mod documents;
mod enqueue;
mod events;
mod idempotency;
mod jobs;
mod key_lookups;
mod keys;
mod lists;
mod programs;
mod retention;
mod schedules;
#[doc(hidden)]
pub mod scratch;
mod stats;
mod tenant;
/// The suites' fixtures; built for this crate's own tests and, with the `testing` feature, for other crates'.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod turns;
mod usage;
mod versions;
mod webhooks;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};
use tokio::sync::Notify;

pub use artifacts::NewArtifact;
pub use batches::{BatchCanceled, NewBatch};
pub use blob::{BlobError, BlobStore};
pub use documents::NewDocument;
pub use enqueue::MAX_GROUP;
pub use events::{Appended, JobLog, MAX_EVENTS_PER_READ};
pub use idempotency::{Idempotent, StoredResponse};
pub use jobs::{Canceled, Claim, ClaimedJob, Completion, Enqueued, Heartbeat, NewJob, Swept};
pub use keys::{valid_given_key, valid_tenant_name, AddedKey, KeyInfo, KeyOwner, NewKey, KEY_PREFIX};
pub use lists::{JobFilter, Page, MAX_PAGE_SIZE};
pub use programs::{program_scope, NewProgram, StoredProgram, MAX_LAYOUT_CANDIDATES};
pub use retention::Pruned;
pub use schedules::{DueSchedule, NewSchedule, MAX_SCHEDULES_PER_TENANT};
pub use stats::{QueueStats, WorkflowQueue};
pub use tenant::TenantStore;
pub use turns::{TenantTurns, TurnsChange, MAX_TENANT_WEIGHT};
pub use usage::{UsageDelta, UsageRow};
pub use versions::NewResultVersion;
pub use webhooks::{AttemptResult, Delivery, DeliveryStatus, JobWebhook, DEFAULT_EVENT_TYPES, EVENT_TYPES};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating the data directory {path}")]
    CreateDataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{0}` is not a database URL NOVA can use (expected sqlite:PATH or postgres://...)")]
    UnsupportedUrl(String),
    #[error("opening the database")]
    Open(#[source] sqlx::Error),
    #[error("applying database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
    #[error("blob store")]
    Blob(#[from] BlobError),
    /// The attempt's lease was taken over (it lapsed, or the job was released): the write was refused.
    #[error("the attempt no longer holds the job's lease")]
    LeaseLost,
    /// A job holds a value the database cannot store (the check made before a job joins a group commit).
    #[error("the job cannot be stored: {0}")]
    InvalidJob(String),
    /// The idempotency key is taken by this job, which has another workflow or input.
    #[error("the idempotency key is already used by job {0}, with a different workflow or input")]
    IdempotencyConflict(nova_core::JobId),
    /// Tenant names are 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-`.
    #[error("`{0}` is not a tenant name (1 to 64 characters of a-z, 0-9, `.`, `_`, `-`)")]
    InvalidTenantName(String),
    /// A key given from outside is not `nova_` and 32 to 195 letters and digits.
    #[error("not a usable API key: it must be `nova_` followed by 32 to 195 letters and digits (for example `nova_` and 64 random hex digits)")]
    InvalidKey,
    /// The operating system gave no randomness for a new key.
    #[error("reading random bytes for a new key: {0}")]
    Random(String),
    /// The webhook message is still being retried: it can be resent once it was delivered or is dead.
    #[error("the webhook message is still pending")]
    DeliveryPending,
    /// Another version of the result was stored since the one a correction was based on.
    #[error("version {0} of this result exists already: read the latest version and correct that")]
    VersionConflict(u32),
    /// The tenant holds as many of these as it may (schedules).
    #[error("the tenant holds {0}, its limit")]
    LimitReached(u64),
    /// A row holds a value this version cannot read (a corrupt or newer database).
    #[error("unreadable stored value: {0}")]
    Corrupt(String),
}

/// The SQL dialect behind the pool. Queries are written once with `$N` placeholders, which both backends
/// take; the few statements that differ (row locking) pick their text by dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded default: one file, any number of processes on one machine.
    Sqlite,
    /// Scale-out: any number of processes on any number of machines.
    Postgres,
}

/// The SQL store and the blob store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    blobs: BlobStore,
    /// For PostgreSQL's `LISTEN`, which needs a connection of its own. Never logged: it may hold a password.
    database_url: Arc<str>,
    /// SQLite only: this process's writers take turns here. SQLite admits one writer at a time, and a
    /// writer that finds the file locked sleeps in its busy handler (1, 2, 5, 10... ms); queuing in-process
    /// hands the turn over at once instead. Other processes still meet the busy handler.
    write_turn: Option<Arc<tokio::sync::Mutex<()>>>,
    /// An API key was seen to exist. Keys are revoked, never deleted, so once true this stays true and
    /// [`Store::keys_exist`] needs no more queries (a request without a key is refused without one).
    keys_seen: Arc<std::sync::atomic::AtomicBool>,
    /// The committer this store's enqueues go through, when it was made with [`Store::with_group_commit`].
    group: Option<enqueue::GroupCommit>,
    /// The task this store's key lookups go through, when it was made with
    /// [`Store::with_grouped_key_lookups`].
    lookups: Option<key_lookups::KeyLookups>,
    /// The limit on running jobs per workflow of a tenant without one of its own, which claims apply
    /// ([`Store::with_tenant_max_running`]); `None`: no limit.
    tenant_max_running: Option<u32>,
}

/// A write transaction, holding this process's write turn on SQLite until it ends. Derefs to the
/// connection, like a [`sqlx::Transaction`].
pub(crate) struct WriteTx {
    // Dropped first: an uncommitted transaction rolls back before the turn passes on.
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

impl Store {
    /// The embedded default: `nova.db` (SQLite) and `blobs/` inside `data_dir`, created if missing.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::CreateDataDir { path: data_dir.to_path_buf(), source })?;
        Self::connect(&Self::embedded_url(data_dir), &data_dir.join("blobs")).await
    }

    /// The URL of the embedded SQLite database of `data_dir`, for other processes on the same queue.
    pub fn embedded_url(data_dir: &Path) -> String {
        SqliteConnectOptions::new()
            .filename(data_dir.join("nova.db"))
            .create_if_missing(true)
            .to_url_lossy()
            .to_string()
    }

    /// Opens the database at `database_url` (`sqlite:PATH` or `postgres://...`) with blobs under `blob_dir`,
    /// applying the migrations embedded in the binary.
    pub async fn connect(database_url: &str, blob_dir: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if database_url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            let scheme = database_url.split(':').next().unwrap_or_default();
            return Err(StoreError::UnsupportedUrl(format!("{scheme}:...")));
        };
        let options = AnyConnectOptions::from_str(database_url).map_err(StoreError::Open)?.disable_statement_logging();
        let pool = match dialect {
            Dialect::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    // A pooled SQLite connection is a thread of this process over a file: it cannot have been
                    // cut off while idle, so the pool's check before each acquire (a round trip to that thread,
                    // as long as the query itself) buys nothing. PostgreSQL's connections keep the check.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the one writer; the busy timeout makes writers queue
                            // instead of failing when several processes share the file. With a long history the
                            // indexes outgrow SQLite's default 2 MiB page cache: a larger cache keeps the hot pages
                            // at hand. No memory map: each connection maps the whole file again whenever another
                            // one has changed it, and under a stream of small commits that meant a munmap (with
                            // its cross-CPU TLB flush) and fresh page faults several times per request. A
                            // multi-row insert's statement journal outgrows the 64 KiB that SQLite keeps in memory
                            // and became a new temporary file per group; temporary storage now stays in memory
                            // (sorts and index builds too: a migration indexing a large table builds in RAM). The
                            // two had cost POST /v1/jobs and the queue's enqueues a quarter of their rate.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                                 PRAGMA cache_size = -16384; PRAGMA mmap_size = 0; \
                                 PRAGMA temp_store = MEMORY;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // PostgreSQL compiles a statement to machine code (JIT) when its estimated cost is
                            // high, and the queue's statements are short index walks whose estimates run high:
                            // a claim's loose scan of the tenants is guessed at 10,000 rows for the one or two it
                            // finds. Compiling took 40 to 60 ms a claim, where running it takes under one.
                            conn.execute("SET jit = off").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
            }
        }
        .map_err(StoreError::Open)?;
        let migrator = match dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.run(&pool).await.map_err(StoreError::Migrate)?;
        let blobs = BlobStore::local(blob_dir)?;
        let write_turn = (dialect == Dialect::Sqlite).then(Default::default);
        Ok(Self {
            pool,
            dialect,
            blobs,
            database_url: database_url.into(),
            write_turn,
            keys_seen: Default::default(),
            group: None,
            lookups: None,
            tenant_max_running: None,
        })
    }

    /// Waits for this process's write turn (SQLite; nothing to wait for on PostgreSQL). Hold it across one
    /// write statement, or use [`Store::begin_write`] for a transaction.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_turn {
            Some(turn) => Some(turn.clone().lock_owned().await),
            None => None,
        }
    }

    /// Begins a write transaction in this process's write turn.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let turn = self.write_turn().await;
        Ok(WriteTx { tx: self.pool.begin().await?, _turn: turn })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The same store with its documents' bytes kept in `blobs` (an S3 bucket, say) instead of the data
    /// directory.
    pub fn with_blobs(mut self, blobs: BlobStore) -> Self {
        self.blobs = blobs;
        self
    }

    /// Checks that the database answers and the blob store is reachable (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        self.blobs.ping().await?;
        Ok(())
    }

    /// Wakes `wake` whenever another process enqueues a job (PostgreSQL `LISTEN/NOTIFY`), so idle workers
    /// start at once rather than at their next poll. A no-op on SQLite, where polling is the only signal
    /// across processes and the in-process API notifies its workers directly.
    /// The returned task runs until it is aborted; abort it when its pool stops.
    pub async fn listen_for_jobs(&self, wake: Arc<Notify>) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
        if self.dialect != Dialect::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.database_url).await.map_err(StoreError::Open)?;
        listener.listen(jobs::NOTIFY_CHANNEL).await?;
        let task = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => wake.notify_one(),
                    // PgListener reconnects by itself on the next recv; polling covers the gap.
                    Err(e) => {
                        tracing::warn!(error = %e, "job notifications interrupted; polling meanwhile");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(task))
    }

    /// Closes the pool, waiting for connections to be returned (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Timestamps are stored as milliseconds since the Unix epoch.
fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms).single().ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms}")))
}

fn parse_stored<T: FromStr>(what: &str, value: &str) -> Result<T, StoreError> {
    value.parse().map_err(|_| StoreError::Corrupt(format!("{what} `{value}`")))
}
