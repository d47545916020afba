//! `code.run`: a program run in the sandbox, through the `Sandbox` trait.

use nova_core::{JobError, ProgramSpec, Workflow};
use nova_sandbox::spec::{exec_request, ExecutionOutcome};
use nova_store::UsageDelta;

use super::{record_usage, sandbox_unavailable, Context, WorkflowError};
use crate::{internal, SandboxHandle};

pub(super) async fn run(spec: ProgramSpec, cx: &Context<'_>) -> Result<ExecutionOutcome, WorkflowError> {
    let request = exec_request(spec, ProgramSpec::MAX_JOB_TIMEOUT_MS)
        .map_err(|e| WorkflowError::Permanent(JobError { code: e.code.into(), message: e.message }))?;
    let Some(SandboxHandle(sandbox)) = cx.services.sandbox.cloned() else {
        return Err(sandbox_unavailable());
    };
    cx.progress.report(serde_json::json!({"step": "running"})).await;
    // The worker drops this future when the job is canceled; the guard then kills the program, which would
    // otherwise run on its blocking thread to its own deadline.
    let cancel = nova_sandbox::Cancel::new();
    let _kill_on_drop = cancel.on_drop();
    let outcome = tokio::task::spawn_blocking(move || sandbox.exec_cancelable(&request, &cancel))
        .await
        .map_err(|_| WorkflowError::Permanent(internal("running the sandbox")))?;
    metrics::counter!("nova_sandbox_runs_total", "source" => "job", "outcome" => outcome.status.as_str()).increment(1);
    metrics::histogram!("nova_sandbox_cpu_seconds", "source" => "job").record(outcome.cpu_time.as_secs_f64());
    let used = UsageDelta::sandbox_run(outcome.cpu_time, outcome.wall_time);
    record_usage(cx.store, cx.tenant, Workflow::CodeRun, used).await;
    if outcome.status == nova_sandbox::Status::SandboxError {
        let message = outcome.error.unwrap_or_else(|| "the sandbox failed".into());
        return Err(WorkflowError::Transient(JobError { code: "sandbox_error".into(), message }));
    }
    Ok(ExecutionOutcome::from(&outcome))
}
