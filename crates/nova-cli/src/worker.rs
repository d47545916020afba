//! `nova worker`: workers only, no HTTP, on the database that API processes share.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::serve::{
    init_logging, on_signal, runtime, say, start_sandbox, BackgroundArgs, LogArgs, PoolArgs, StoreArgs,
};

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Jobs of each workflow run at once by this process. Default: the number of cores.
    #[arg(long, env = "NOVA_WORKERS", value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: Option<u64>,
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    background: BackgroundArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Serve this process's metrics (jobs, sandbox runs, model calls) at `http://ADDR/metrics` for
    /// Prometheus. Off by default; the API's own `/metrics` does not see a separate worker's.
    #[arg(long, env = "NOVA_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

pub fn run(args: WorkerArgs, settings: &crate::config::Settings) -> anyhow::Result<()> {
    init_logging(args.log.log_format, settings.log.as_deref());
    runtime()?.block_on(async {
        let store = args.store.open(&settings.s3).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        let sandbox = start_sandbox(args.pool.sandbox_pool, settings.sandbox_python.clone()).await;
        let templates = crate::serve::templates_dir(settings.templates_dir.as_deref());
        let extractor = args.pool.extraction.extractor(templates.as_deref(), 1, settings)?;
        let model = nova_llm::model_client(&settings.model);
        let config = args.pool.config(args.concurrency.map(|n| n as usize), &sandbox, extractor, model);
        let metrics = match args.metrics_listen {
            Some(addr) => {
                nova_server::metrics::recorder();
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics address {addr}"))?;
                say(&format!("nova: worker metrics on http://{}/metrics", listener.local_addr()?));
                let stop = shutdown.clone();
                Some(tokio::spawn(nova_server::metrics::serve_alone(listener, stop.cancelled_owned())))
            }
            None => None,
        };
        let background = args.background.spawn(&store, &shutdown);
        // The one line a script can wait for, on stdout.
        say(&format!("nova: worker running up to {} jobs at once", config.total_slots()));
        nova_app::run(store.clone(), config, Arc::new(Notify::new()), shutdown.clone().cancelled_owned()).await;
        if let Some(metrics) = metrics {
            shutdown.cancel();
            let _ = metrics.await;
        }
        shutdown.cancel();
        background.stop().await;
        store.close().await;
        info!("worker stopped");
        Ok(())
    })
}
