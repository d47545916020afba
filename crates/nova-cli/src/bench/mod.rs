//! `nova bench ...`: measurements printed next to what a user would run instead, in one run.

mod api;
mod queue;
mod sandbox;

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct Bench {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The jail sandbox, warm and cold, against a bare python3 and bubblewrap.
    Sandbox(sandbox::SandboxBenchArgs),
    /// The job queue with no-op jobs on SQLite (and PostgreSQL with --postgres).
    Queue(queue::QueueBenchArgs),
    /// The HTTP API of a `nova serve` process under load from this one: job reads, job submissions, uploads.
    Api(api::ApiBenchArgs),
}

pub fn run(bench: Bench, settings: &crate::config::Settings) -> anyhow::Result<()> {
    match bench.command {
        BenchCommand::Sandbox(args) => sandbox::run(args, settings.sandbox_python.as_deref()),
        BenchCommand::Queue(args) => queue::run(args),
        BenchCommand::Api(args) => api::run(args),
    }
}
