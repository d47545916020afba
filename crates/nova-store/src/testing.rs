//! Test and benchmark support: a fresh store on each backend, so one suite runs against both.
//!
//! PostgreSQL comes from `NOVA_TEST_DATABASE_URL` (an administrative URL such as
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a database of its own, dropped afterwards.
//! Without the variable, PostgreSQL tests are skipped with a message, except under `CI=true`, where a missing
//! database is a failure.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

use crate::Store;

/// The backends of the conformance suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store over a temporary blob folder and, on PostgreSQL, a temporary database.
pub struct TestStore {
    pub store: Store,
    pub dir: tempfile::TempDir,
    /// The database URL this store uses, for starting other processes on the same queue.
    pub url: String,
    dropper: Option<DropDatabase>,
}

impl TestStore {
    /// A fresh store on `backend`, or `None` when PostgreSQL is not configured outside CI.
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temporary directory");
        match backend {
            Backend::Sqlite => {
                let store = Store::open(dir.path()).await.expect("opening SQLite");
                let url = Store::embedded_url(dir.path());
                Some(Self { store, dir, url, dropper: None })
            }
            Backend::Postgres => Some(Self::postgres(&admin_url()?).await),
        }
    }

    /// A store in a fresh database created on the PostgreSQL server at `admin` (and dropped afterwards).
    pub async fn postgres(admin: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let name = format!("nova_test_{}", nova_core::AttemptToken::new().as_uuid().simple());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at the given URL is not reachable: {e}"));
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("creating a scratch database");
        let _ = conn.close().await;
        let url =
            PgConnectOptions::from_str(admin).expect("a PostgreSQL URL").database(&name).to_url_lossy().to_string();
        let store = Store::connect(&url, &dir.path().join("blobs")).await.expect("opening PostgreSQL");
        Self { store, dir, url, dropper: Some(DropDatabase { admin: admin.to_string(), name }) }
    }

    /// The number `sql` (a `SELECT COUNT(*) ...`) answers, for tests of what rows remain.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.store.pool).await.expect("the count")
    }
}

fn admin_url() -> Option<String> {
    match std::env::var("NOVA_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("NOVA_TEST_DATABASE_URL must be set in CI: the PostgreSQL backend is part of the suite")
        }
        _ => {
            eprintln!("NOVA_TEST_DATABASE_URL is not set: skipping the PostgreSQL backend (scripts/test sets it)");
            None
        }
    }
}

/// Drops the test database when the test ends, pass or fail.
struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some(db) = self.dropper.take() else { return };
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its own runtime can.
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

/// Runs each named `async fn NAME(backend: Backend)` of the calling test file on both backends, as
/// `sqlite::NAME` and `postgres::NAME`: the conformance suites' harness.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name($crate::testing::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name($crate::testing::Backend::Postgres).await })*
        }
    };
}
