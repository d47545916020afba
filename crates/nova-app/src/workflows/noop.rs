//! `noop`: does nothing, optionally for a while (benchmarks and tests of the queue).

use nova_core::NoopInput;
use serde::{Deserialize, Serialize};

use super::{Context, WorkflowError};

/// The result of a `noop` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoopOutput {
    pub slept_ms: u64,
}

pub(super) async fn run(input: NoopInput, _cx: &Context<'_>) -> Result<NoopOutput, WorkflowError> {
    if input.sleep_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(input.sleep_ms)).await;
    }
    Ok(NoopOutput { slept_ms: input.sleep_ms })
}
