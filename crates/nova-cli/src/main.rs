//! `nova`: the one binary.

mod bench;
mod config;
mod eval;
mod exec;
mod extract;
mod isolation;
mod keys;
mod serve;
mod tenants;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "nova", version, about = "A self-hosted engine for AI document work", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A TOML file of settings (keys: the `NOVA_*` variables' names without `NOVA_`, in lower case), below the
    /// environment and the flags; `nova config show` prints the result.
    #[arg(long, global = true, env = config::CONFIG_VAR, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API with in-process workers on the embedded store.
    Serve(serve::ServeArgs),
    /// Make, list and revoke the API keys of tenants.
    Keys(keys::KeysArgs),
    /// Tenants' turns in the job queue: their weights and limits on running jobs.
    Tenants(tenants::TenantsArgs),
    /// Run workers only (no HTTP) on the queue in the data directory or at NOVA_DATABASE_URL.
    Worker(worker::WorkerArgs),
    /// Extract invoices from local files, with no server.
    Extract(extract::ExtractArgs),
    /// Extract a folder of invoices with known answers and score the results (shared/invoices/SCHEMA.md).
    Eval(eval::EvalArgs),
    /// Run a Python program in the sandbox and print its output.
    Exec(exec::ExecArgs),
    /// Measure NOVA's pieces against what a user would run instead.
    Bench(bench::Bench),
    /// The configuration: defaults, then the file (--config), then NOVA_* variables, then flags.
    Config(config::ConfigArgs),
}

fn main() -> ExitCode {
    // The sandbox's jail helper: dispatched before argument parsing and before any runtime or thread
    // exists, because it forks into new namespaces and must be single-threaded.
    if std::env::args_os().nth(1).is_some_and(|arg| arg == exec::JAIL_HELPER_ARG) {
        nova_sandbox::jail::helper_main();
    }
    // An extraction process (see `isolation`): single-threaded until it has confined itself.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == nova_app::extraction::HELPER_ARG) {
        isolation::helper_main(&args[2..]);
    }
    // The configuration file and the secrets' files, below the environment and the flags: read before clap
    // parses the command line (whose `env` then sees them) and before any thread starts.
    let loaded = match config::load(&args) {
        Ok(loaded) => loaded,
        Err(e) => {
            report(Err(e));
            return ExitCode::from(2);
        }
    };
    let settings = config::Settings::from_env();
    let cli = Cli::parse_from(&args);
    match cli.command {
        Command::Serve(args) => report(serve::run(args, &settings)),
        Command::Keys(args) => report(keys::run(args)),
        Command::Tenants(args) => report(tenants::run(args)),
        Command::Worker(args) => report(worker::run(args, &settings)),
        Command::Extract(args) => extract::run(args, &settings),
        Command::Eval(args) => report(eval::run(args, &settings)),
        Command::Exec(args) => exec::run(args, &settings),
        Command::Bench(args) => report(bench::run(args, &settings)),
        Command::Config(args) => config::run(args, &loaded, &settings),
    }
}

/// Prints an error with its causes (`error: a\n  caused by: b`) and maps it to a failing exit code.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
