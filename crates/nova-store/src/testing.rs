//! Test support (the `testing` feature): a fresh store on each backend, so one suite runs against both.
//!
//! PostgreSQL comes from `NOVA_TEST_DATABASE_URL` (an administrative URL such as
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a database of its own, dropped afterwards.
//! Without the variable, PostgreSQL tests are skipped with a message, except under `CI=true`, where a missing
//! database is a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::scratch::ScratchStore;
use crate::Store;

/// The backends of the conformance suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store for a test: a [`ScratchStore`] on one backend.
pub type TestStore = ScratchStore;

impl ScratchStore {
    /// A fresh store on `backend`, or `None` when PostgreSQL is not configured outside CI.
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite().await.expect("a scratch SQLite store")),
            Backend::Postgres => Some(Self::postgres(&admin_url()?).await),
        }
    }

    /// A store in a fresh database on the PostgreSQL server at `admin`; a test fails when it cannot be made.
    pub async fn postgres(admin: &str) -> Self {
        Self::create_postgres(admin)
            .await
            .unwrap_or_else(|e| panic!("a scratch database on PostgreSQL: {}", nova_core::error_chain(&e)))
    }

    /// Whether `store`'s database connections are encrypted (PostgreSQL's `pg_stat_ssl` for the session).
    pub async fn uses_tls(store: &Store) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&store.pool)
            .await
            .expect("reading pg_stat_ssl")
    }

    /// The number `sql` (a `SELECT COUNT(*) ...`) answers, for tests of what rows remain.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.store.pool).await.expect("the count")
    }
}

fn admin_url() -> Option<String> {
    match std::env::var("NOVA_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if nova_core::testing::in_ci() => {
            panic!("NOVA_TEST_DATABASE_URL must be set in CI: the PostgreSQL backend is part of the suite")
        }
        _ => {
            eprintln!("NOVA_TEST_DATABASE_URL is not set: skipping the PostgreSQL backend (scripts/test sets it)");
            None
        }
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

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading a test directory") {
        let path = entry.expect("reading a test directory").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// An S3-compatible server for tests: moto's server mode (`pip install "moto[server]"`, which `scripts/test`
/// does) on a free loopback port, killed when dropped.
pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// A started server that answers HTTP; `None` (with a message) when moto is not installed, except under
    /// `CI=true`, where that is a failure.
    pub fn start() -> Option<Moto> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
        let spawn = |program: &str, first: &[&str]| {
            Command::new(program).args(first).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
        };
        // The script pip installs, or the module where the script's directory is not on PATH.
        let child = spawn("moto_server", &[]).or_else(|_| {
            let has_moto =
                Command::new("python3").args(["-c", "import moto.server"]).output().is_ok_and(|o| o.status.success());
            if has_moto {
                spawn("python3", &["-m", "moto.server"])
            } else {
                Err(std::io::Error::other("neither moto_server nor python3 -m moto.server"))
            }
        });
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    !nova_core::testing::in_ci(),
                    "moto_server is needed under CI (pip install \"moto[server]\"): {e}"
                );
                eprintln!("skipping: moto_server not found ({e}); pip install \"moto[server]\"");
                return None;
            }
        };
        let mut moto = Moto { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        // Ready when it answers HTTP; it takes a second or two to import.
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.request("GET", "/").is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited: {status}");
            }
            assert!(Instant::now() < deadline, "moto_server did not answer within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    /// Creates bucket `name` (moto takes an unsigned request for it).
    pub fn create_bucket(&self, name: &str) {
        let status = self.request("PUT", &format!("/{name}")).expect("creating the bucket");
        assert_eq!(status, 200, "creating the bucket {name}");
    }

    /// The `AWS_*` variables that point a blob store (or a `nova` process) at this server.
    pub fn s3_settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://{}", self.addr)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ]
    }

    /// One plain HTTP/1.1 request with no body; the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut response = String::new();
        stream.take(64 * 1024).read_to_string(&mut response)?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))
    }
}
