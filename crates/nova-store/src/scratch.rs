//! Throwaway stores: SQLite in a temporary folder, or a fresh database on a PostgreSQL server, dropped with
//! the value. `nova bench queue` measures on them; the suites' fixtures (`testing`, a feature) build on them.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

use crate::{Store, StoreError};

/// A store over a temporary blob folder and, on PostgreSQL, a temporary database, both gone when dropped.
pub struct ScratchStore {
    pub store: Store,
    pub dir: tempfile::TempDir,
    /// The database URL this store uses, for starting other processes on the same queue.
    pub url: String,
    dropper: Option<DropDatabase>,
}

impl ScratchStore {
    /// A fresh SQLite store in a temporary folder.
    pub async fn sqlite() -> Result<Self, StoreError> {
        let dir = tempdir()?;
        let store = Store::open(dir.path()).await?;
        let url = Store::embedded_url(dir.path());
        Ok(Self { store, dir, url, dropper: None })
    }

    /// A store in a fresh database created on the PostgreSQL server at `admin` (a URL whose user may create
    /// databases), dropped afterwards.
    pub async fn create_postgres(admin: &str) -> Result<Self, StoreError> {
        let dir = tempdir()?;
        let name = format!("nova_scratch_{}", nova_core::AttemptToken::new().as_uuid().simple());
        let mut conn = sqlx::PgConnection::connect(admin).await.map_err(StoreError::Open)?;
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await?;
        let _ = conn.close().await;
        let url =
            PgConnectOptions::from_str(admin).map_err(StoreError::Open)?.database(&name).to_url_lossy().to_string();
        let dropper = DropDatabase { admin: admin.to_string(), name };
        let store = Store::connect(&url, &dir.path().join("blobs")).await?;
        Ok(Self { store, dir, url, dropper: Some(dropper) })
    }
}

fn tempdir() -> Result<tempfile::TempDir, StoreError> {
    tempfile::tempdir().map_err(|source| StoreError::CreateDataDir { path: std::env::temp_dir(), source })
}

/// The scratch database to drop when its store goes.
struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        let Some(db) = self.dropper.take() else { return };
        // Drop may run inside a runtime, which cannot be blocked on; a thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&db.admin).await.ok()?;
                conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name).as_str()).await.ok()
            })
        })
        .join();
    }
}
