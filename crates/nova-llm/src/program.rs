//! Running a model-written program: only ever in the sandbox.
//!
//! The program is a Python module defining `extract(text) -> dict`. It is placed, with the document's
//! text, in the work directory of a fresh sandbox execution (no network, a deadline, memory and output
//! caps), next to a fixed harness that loads it, calls `extract`, and writes the result as JSON on the
//! real standard output. While the program runs, its own prints go to standard error, so they cannot
//! pass for the result.

use std::time::Duration;

use nova_sandbox::{ExecRequest, InputFile, Limits, Outcome, Sandbox, Status};
use serde_json::Value;

/// The harness around the program. It is NOVA's code, not the model's, and runs in the same sandbox.
const HARNESS: &str = r#"import json, sys
def _main():
    with open("document.txt", encoding="utf-8") as f:
        text = f.read()
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    namespace = {"__name__": "program"}
    exec(compile(source, "program.py", "exec"), namespace)
    extract = namespace.get("extract")
    if not callable(extract):
        raise SystemExit("program.py defines no function extract(text)")
    result = extract(text)
    if not isinstance(result, dict):
        raise SystemExit("extract(text) returned %s, not a dict" % type(result).__name__)
    out = json.dumps(result, default=str)
    sys.stdout = real_stdout
    real_stdout.write(out)
    real_stdout.flush()
_main()
"#;

/// Characters of a program's error output kept for the model.
const STDERR_CHARS: usize = 2_000;

/// How a run went wrong, in words for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure(pub String);

/// What one sandboxed run produced, with its cost in sandbox time.
#[derive(Debug, Clone)]
pub struct Run {
    pub result: Result<Value, RunFailure>,
    pub wall_time: Duration,
    pub cpu_time: Duration,
}

/// Runs `code` on `text` in `sandbox` with a wall-clock deadline of `timeout`. Blocks: call it from a
/// blocking thread.
pub fn run_in_sandbox(sandbox: &dyn Sandbox, code: &str, text: &str, timeout: Duration) -> Run {
    let ms = timeout.as_millis().min(u128::from(u64::MAX)) as u64;
    let request = ExecRequest {
        code: HARNESS.to_string(),
        files: vec![
            InputFile { path: "program.py".into(), contents: code.as_bytes().to_vec() },
            InputFile { path: "document.txt".into(), contents: text.as_bytes().to_vec() },
        ],
        limits: Limits { wall_ms: ms, cpu_ms: ms, ..Limits::default() },
        network: false,
        ..ExecRequest::default()
    };
    let outcome = sandbox.exec(&request);
    Run { result: interpret(&outcome, timeout), wall_time: outcome.wall_time, cpu_time: outcome.cpu_time }
}

fn interpret(outcome: &Outcome, timeout: Duration) -> Result<Value, RunFailure> {
    ended_well(outcome, timeout)?;
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    serde_json::from_str(stdout.trim()).map_err(|e| {
        RunFailure(format!(
            "the result is not JSON ({e}); something wrote to the standard output: {:?}",
            tail(&stdout, 200)
        ))
    })
}

/// Whether a run exited with 0; otherwise what went wrong, in words for the model (with the end of its error
/// output).
pub(crate) fn ended_well(outcome: &Outcome, timeout: Duration) -> Result<(), RunFailure> {
    let stderr = tail(&String::from_utf8_lossy(&outcome.stderr), STDERR_CHARS);
    match outcome.status {
        Status::Ok => Ok(()),
        Status::Timeout => Err(RunFailure(format!(
            "the program did not finish within {} ms; it must not loop or wait",
            timeout.as_millis()
        ))),
        Status::MemoryLimit => Err(RunFailure("the program ran out of memory".into())),
        Status::OutputLimit => Err(RunFailure("the program wrote too much output".into())),
        Status::SandboxError => {
            let why = outcome.error.clone().unwrap_or_else(|| "the sandbox failed".into());
            Err(RunFailure(format!("sandbox error: {why}")))
        }
        Status::NonzeroExit | Status::Signaled | Status::Canceled => {
            Err(RunFailure(format!("the program failed ({}):\n{stderr}", outcome.status.as_str())))
        }
    }
}

/// The last `n` characters of `s`.
pub(crate) fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}

/// The program in a model's reply: the first fenced code block (```python ... ```), or the whole reply
/// when it has no fence.
pub fn code_from_reply(reply: &str) -> String {
    let Some(start) = reply.find("```") else { return reply.trim().to_string() };
    let after = &reply[start + 3..];
    // Skip the info string (`python`, `py`) up to the end of the fence's line.
    let body = after.split_once('\n').map_or("", |(_, rest)| rest);
    let end = body.find("```").unwrap_or(body.len());
    body[..end].trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_taken_from_the_first_fence() {
        let reply = "Here you go:\n```python\ndef extract(text):\n    return {}\n```\nThanks";
        assert_eq!(code_from_reply(reply), "def extract(text):\n    return {}");
        assert_eq!(code_from_reply("def extract(text):\n    return {}\n"), "def extract(text):\n    return {}");
        assert_eq!(code_from_reply("```\nx = 1"), "x = 1");
    }

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
    }
}
