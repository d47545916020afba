//! `nova tenants`: each tenant's turns in the job queue. Tenants with ready jobs of a workflow share its
//! workers by weight; a limit caps the jobs of each workflow a tenant runs at once. Changes count from the
//! next claim of every worker on the same store.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use nova_store::{TurnsChange, MAX_TENANT_WEIGHT};

use crate::serve::StoreArgs;

#[derive(Args)]
pub struct TenantsArgs {
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// List the tenants: name, id, weight, limit on running jobs per workflow, request rate.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a tenant's weight or its limit on running jobs.
    Set {
        /// The tenant's name (as `nova keys create --tenant` made it; `default` for jobs submitted without keys).
        name: String,
        /// Its share of the workers against the other tenants with waiting jobs: with weights 2 and 1, the
        /// first runs two jobs for each one of the second (1 to 1000; every tenant starts at 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TENANT_WEIGHT)))]
        weight: Option<u32>,
        /// The most jobs of one workflow it may run at once, across every worker, or `default` for the
        /// workers' `--tenant-max-running`. 0 holds its jobs back.
        #[arg(long, value_name = "N|default", value_parser = parse_max_running)]
        max_running: Option<MaxRunning>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// A tenant's limit as given on the command line.
#[derive(Clone, Copy, Debug)]
enum MaxRunning {
    Default,
    Jobs(u32),
}

fn parse_max_running(arg: &str) -> Result<MaxRunning, String> {
    match arg {
        "default" => Ok(MaxRunning::Default),
        n => n.parse().map(MaxRunning::Jobs).map_err(|_| format!("`{n}` is neither a number of jobs nor `default`")),
    }
}

pub fn run(args: TenantsArgs) -> anyhow::Result<()> {
    crate::serve::runtime()?.block_on(tenants(args))
}

async fn tenants(args: TenantsArgs) -> anyhow::Result<()> {
    let (TenantsCommand::List { store } | TenantsCommand::Set { store, .. }) = &args.command;
    // Tenants live in the database alone: no blob store is reached.
    let store = store.open_database().await?;
    match args.command {
        TenantsCommand::List { .. } => {
            println!("{:<24} {:<36} {:>6} {:>12}  rate", "name", "id", "weight", "max running");
            for t in store.list_tenants().await.context("reading the tenants")? {
                let max = t.max_running.map_or_else(|| "default".to_string(), |n| n.to_string());
                let rate = t.rate_limit.as_deref().unwrap_or("default");
                println!("{:<24} {:<36} {:>6} {:>12}  {rate}", t.name, t.tenant, t.weight, max);
            }
        }
        TenantsCommand::Set { name, weight, max_running, .. } => {
            if weight.is_none() && max_running.is_none() {
                bail!("nothing to set: give --weight, --max-running or both");
            }
            let max_running = max_running.map(|m| match m {
                MaxRunning::Default => None,
                MaxRunning::Jobs(n) => Some(n),
            });
            let change = TurnsChange { weight, max_running };
            if !store.set_tenant_turns(&name, change).await.context("changing the tenant")? {
                bail!("no tenant named `{name}`");
            }
            let now = store.list_tenants().await?.into_iter().find(|t| t.name == name).context("reading it back")?;
            let max = now.max_running.map_or_else(|| "the workers' default".to_string(), |n| n.to_string());
            eprintln!("tenant {name}: weight {}, at most {max} running jobs per workflow", now.weight);
        }
    }
    store.close().await;
    Ok(())
}
