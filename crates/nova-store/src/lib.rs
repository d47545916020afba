//! NOVA's persistence.
//!
//! [`Store`] owns the SQL database (SQLite, a file in the data directory) and the [`BlobStore`] (content-
//! addressed bytes). It knows nothing of HTTP: the server and the workers call its typed operations, and all
//! SQL lives here.
//!
//! Invariants:
//! - a document row is written only after its bytes are stored, so a crash leaves at worst an unreferenced
//!   blob (harmless: blobs are content-addressed and reused), never a row without bytes;
//! - every write made for a running attempt is fenced by the attempt's [`AttemptToken`]: a worker that lost
//!   its lease cannot overwrite a newer attempt;
//! - no transaction stays open while a job runs.

mod blob;
mod documents;
mod jobs;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use blob::{BlobError, BlobStore};
pub use documents::NewDocument;
pub use jobs::{ClaimedJob, NewJob};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating the data directory {path}")]
    CreateDataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// A row holds a value this version cannot read (a corrupt or newer database).
    #[error("unreadable stored value: {0}")]
    Corrupt(String),
}

/// The SQL store and the blob store of one data directory.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    blobs: BlobStore,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`: `nova.db` and the `blobs/` folder. Migrations
    /// embedded in the binary are applied.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::CreateDataDir { path: data_dir.to_path_buf(), source })?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("nova.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await.map_err(StoreError::Open)?;
        sqlx::migrate!("./migrations").run(&pool).await.map_err(StoreError::Migrate)?;
        let blobs = BlobStore::local(&data_dir.join("blobs"))?;
        Ok(Self { pool, blobs })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Checks that the database answers and the blob store is reachable (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        self.blobs.ping().await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned (checkpointing the WAL).
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
