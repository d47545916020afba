//! Running a helper program over pipes, as the OCR engine and the page renderer do: the input written to
//! its stdin, its stdout read up to a cap, its stderr kept short, all within a deadline, past which (or past
//! the cap) the process is killed.

use std::io::{Read, Write};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

/// The most of a helper's stderr kept for an error message; the rest is read and dropped.
const MAX_STDERR_BYTES: u64 = 16 * 1024;

/// How a helper ended, when it ended within its limits.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The start of its stderr, trimmed.
    pub stderr: String,
}

/// Why a helper's run was given up.
pub(crate) enum PipedError {
    /// The child was spawned without its pipes.
    Pipes,
    /// It wrote more than the cap: killed.
    TooMuchOutput,
    /// Its output could not be read.
    Read(std::io::Error),
    /// It ran past its deadline: killed.
    Timeout,
    /// It could not be waited for.
    Wait(std::io::Error),
}

impl PipedError {
    /// The error in words, naming the helper as `name`.
    pub(crate) fn describe(&self, name: &str, max_output: u64, timeout: Duration) -> String {
        match self {
            PipedError::Pipes => format!("{name}'s pipes could not be opened"),
            PipedError::TooMuchOutput => format!("{name} wrote more than {max_output} bytes"),
            PipedError::Read(e) => format!("reading {name}'s output: {e}"),
            PipedError::Timeout => format!("{name} took longer than {} s", timeout.as_secs()),
            PipedError::Wait(e) => format!("waiting for {name}: {e}"),
        }
    }
}

/// Feeds `input` to `child` (spawned with piped stdin, stdout and stderr) and collects what it writes, at
/// most `max_output` bytes of stdout within `timeout`. Writing and reading happen at once on threads of
/// their own, or a full pipe would block both sides.
pub(crate) fn run(
    mut child: Child,
    input: Vec<u8>,
    max_output: u64,
    timeout: Duration,
) -> Result<Finished, PipedError> {
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(PipedError::Pipes);
    };
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let errors = std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut text = String::new();
        let _ = (&mut stderr).take(MAX_STDERR_BYTES).read_to_string(&mut text);
        // The rest is drained, or a chatty helper would block on a full pipe.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        text
    });
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let result = stdout.take(max_output + 1).read_to_end(&mut out).map(|_| out);
        let _ = done.send(result);
    });
    let read = match output.recv_timeout(timeout) {
        Ok(Ok(out)) if out.len() as u64 <= max_output => Ok(out),
        Ok(Ok(_)) => Err(PipedError::TooMuchOutput),
        Ok(Err(e)) => Err(PipedError::Read(e)),
        Err(_) => Err(PipedError::Timeout),
    };
    if read.is_err() {
        // Past its time or its output cap: the process is stopped, which also ends the threads' pipes.
        let _ = child.kill();
    }
    let status = child.wait();
    // A helper that stops reading early (a broken input) breaks the pipe: not an error of its own.
    let _ = writer.join();
    let stderr = errors.join().unwrap_or_default().trim().to_string();
    let stdout = read?;
    let status = status.map_err(PipedError::Wait)?;
    Ok(Finished { status, stdout, stderr })
}
