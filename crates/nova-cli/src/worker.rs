//! `nova worker`: workers only, no HTTP, on the database that API processes share.

use std::sync::Arc;

use clap::Args;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::serve::{init_logging, on_signal, runtime, start_sandbox, LogArgs, PoolArgs, StoreArgs};

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
    log: LogArgs,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    init_logging(args.log.log_format);
    runtime()?.block_on(async {
        let store = args.store.open().await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        let sandbox = start_sandbox(args.pool.sandbox_pool).await;
        let config = args.pool.config(args.concurrency.map(|n| n as usize), &sandbox);
        // The one line a script can wait for, on stdout.
        println!("nova: worker running up to {} jobs at once", config.total_slots());
        nova_worker::run(store.clone(), config, Arc::new(Notify::new()), shutdown.cancelled_owned()).await;
        store.close().await;
        info!("worker stopped");
        Ok(())
    })
}
