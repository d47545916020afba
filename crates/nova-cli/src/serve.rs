//! `nova serve`: the API and in-process workers over the data directory, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use nova_server::{AppState, ServerConfig};
use nova_store::Store;
use nova_worker::WorkerConfig;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "NOVA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Folder of the database and the stored documents; created if missing.
    #[arg(long, env = "NOVA_DATA_DIR", default_value = "nova-data")]
    data_dir: PathBuf,
    /// Jobs run at once by the in-process workers; 0 serves the API only. Default: the number of cores.
    #[arg(long, env = "NOVA_WORKERS")]
    workers: Option<usize>,
    /// Largest accepted upload, in MiB.
    #[arg(long, env = "NOVA_MAX_UPLOAD_MB", default_value_t = 50)]
    max_upload_mb: u64,
    /// Seconds that running jobs get to finish at shutdown before they are handed back to the queue.
    #[arg(long, env = "NOVA_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.data_dir)
        .await
        .with_context(|| format!("opening the data directory {}", args.data_dir.display()))?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));

    let wake = Arc::new(Notify::new());
    let worker_config = WorkerConfig {
        concurrency: args.workers.unwrap_or_else(|| WorkerConfig::default().concurrency),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        ..WorkerConfig::default()
    };
    let workers = (worker_config.concurrency > 0).then(|| {
        tokio::spawn(nova_worker::run(
            store.clone(),
            worker_config.clone(),
            wake.clone(),
            shutdown.clone().cancelled_owned(),
        ))
    });

    let state = AppState {
        store: store.clone(),
        config: ServerConfig { max_upload_bytes: args.max_upload_mb * 1024 * 1024, ..ServerConfig::default() },
        wake_workers: wake,
    };
    info!(data_dir = %args.data_dir.display(), workers = worker_config.concurrency, "NOVA serving");
    // The one line a script can wait for, on stdout.
    println!("nova: listening on http://{addr}");
    nova_server::serve(listener, state, shutdown.clone().cancelled_owned()).await.context("serving HTTP")?;
    if let Some(workers) = workers {
        workers.await.context("the worker pool panicked")?;
    }
    store.close().await;
    info!("NOVA stopped");
    Ok(())
}

/// Cancels `token` on the first SIGINT or SIGTERM.
async fn on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    info!("shutdown requested: no new requests or jobs; finishing what is running");
    token.cancel();
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NOVA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}
