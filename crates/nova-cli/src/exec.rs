//! `nova exec`: runs a Python program in the jail sandbox, prints its output and exits with its status.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use nova_sandbox::jail::{JailConfig, JailSandbox, PythonRuntime};
use nova_sandbox::{ExecRequest, Limits, Sandbox, Status};

/// The hidden first argument that turns `nova` into the sandbox's jail helper (see `main`).
pub const JAIL_HELPER_ARG: &str = "__jail";

#[derive(Args)]
pub struct ExecArgs {
    /// Seconds of wall-clock time (and of CPU time) before the program is killed.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Memory limit of the whole program, in MiB.
    #[arg(long, default_value_t = 256)]
    memory: u64,
    /// Let the program reach public addresses (through slirp4netns; never loopback, private, link-local or
    /// the host's own addresses).
    #[arg(long)]
    network: bool,
    /// Program text to run instead of a file.
    #[arg(short = 'c', value_name = "CODE", conflicts_with = "file", required_unless_present = "file")]
    code: Option<String>,
    /// Python file to run.
    file: Option<PathBuf>,
}

/// A jail configuration whose helper is this very binary, with the interpreter `python` (`python3` from
/// `PATH` when `None`; `NOVA_SANDBOX_PYTHON`).
pub fn jail_config(pool_size: usize, python: Option<&Path>) -> anyhow::Result<JailConfig> {
    let exe = std::env::current_exe().context("finding the nova binary for the jail helper")?;
    let python = PythonRuntime::detect(python).with_context(|| {
        format!("finding the host's {}", python.map_or_else(|| "python3".into(), |p| p.display().to_string()))
    })?;
    let mut config = JailConfig::new(exe, &[JAIL_HELPER_ARG], python);
    config.pool_size = pool_size;
    Ok(config)
}

pub fn run(args: ExecArgs, settings: &crate::config::Settings) -> ExitCode {
    match execute(args, settings) {
        Ok(code) => code,
        Err(e) => crate::report(Err(e)),
    }
}

fn execute(args: ExecArgs, settings: &crate::config::Settings) -> anyhow::Result<ExitCode> {
    let code = match (&args.code, &args.file) {
        (Some(code), _) => code.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        (None, None) => anyhow::bail!("give a FILE or -c CODE"),
    };
    let mut stdin = Vec::new();
    if !std::io::stdin().is_terminal() {
        std::io::stdin().read_to_end(&mut stdin).context("reading standard input")?;
    }
    anyhow::ensure!(args.timeout > 0.0 && args.timeout.is_finite(), "--timeout must be a positive number of seconds");
    let millis = (args.timeout * 1000.0).ceil() as u64;
    let limits = Limits { wall_ms: millis, cpu_ms: millis, memory_bytes: args.memory << 20, ..Limits::default() };
    let sandbox = JailSandbox::new(jail_config(0, settings.sandbox_python.as_deref())?);
    let outcome = sandbox.exec(&ExecRequest { code, stdin, limits, network: args.network, ..Default::default() });
    std::io::stdout().write_all(&outcome.stdout)?;
    std::io::stderr().write_all(&outcome.stderr)?;
    if outcome.output_truncated {
        eprintln!("nova exec: output truncated");
    }
    let status = match outcome.status {
        Status::Ok => 0,
        Status::NonzeroExit => outcome.exit_code.unwrap_or(1),
        Status::Signaled => 128 + outcome.signal.unwrap_or(0),
        other => {
            let detail = outcome.error.map(|e| format!(": {e}")).unwrap_or_default();
            eprintln!("nova exec: {}{detail}", other.as_str());
            match other {
                Status::Timeout => 124,
                Status::MemoryLimit => 137,
                Status::OutputLimit => 141,
                _ => 125,
            }
        }
    };
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}
