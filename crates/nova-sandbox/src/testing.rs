//! A [`Sandbox`] for tests of the code around a sandbox (feature `testing`): [`ScriptedSandbox`] runs
//! nothing. It answers each request with a scripted [`Outcome`], from a queue or a closure, records the
//! requests it answered, and honours cancellation as [`Sandbox::exec_cancelable`] requires, without a
//! process, a namespace or an interpreter, so those tests run on any machine.
//!
//! What it cannot do is run the program: its answers stand in for what the program would have printed, so
//! a test built on it checks what the caller does with an outcome (retries, validation, accounting,
//! caching) and which requests it sends, not what a program does. The jail's own behaviour is covered by
//! this crate's suites (`tests/sandbox/escape.rs` and the others), with the real jail.
//!
//! ```
//! use nova_sandbox::testing::{self, ScriptedSandbox};
//! use nova_sandbox::{ExecRequest, Sandbox, Status};
//!
//! // Every request is answered by the closure.
//! let sandbox = ScriptedSandbox::new(|request: &ExecRequest| {
//!     if request.code.contains("1 / 0") {
//!         testing::nonzero_exit(1, "ZeroDivisionError: division by zero\n")
//!     } else {
//!         testing::ok("42\n")
//!     }
//! });
//! let outcome = sandbox.exec(&ExecRequest { code: "print(1 / 0)".into(), ..Default::default() });
//! assert_eq!(outcome.status, Status::NonzeroExit);
//! assert_eq!(sandbox.requests()[0].code, "print(1 / 0)");
//!
//! // Answers given ahead, in order; past them the closure answers (here: the same stdout every time).
//! let sandbox = ScriptedSandbox::replying("{}");
//! sandbox.push(testing::ended(Status::Timeout));
//! assert_eq!(sandbox.exec(&ExecRequest::default()).status, Status::Timeout);
//! assert_eq!(sandbox.exec(&ExecRequest::default()).stdout, b"{}");
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{Cancel, ExecRequest, Outcome, OutputFile, Sandbox, Status};

/// The wall-clock time of a scripted run, as the helpers below report it: not zero, so that what a caller
/// adds up shows.
pub const WALL_TIME: Duration = Duration::from_millis(10);

/// The CPU time of a scripted run, as the helpers below report it.
pub const CPU_TIME: Duration = Duration::from_millis(5);

type Answer = dyn Fn(&ExecRequest) -> Outcome + Send + Sync;

/// A sandbox that runs nothing and answers from a script. See the [module](self).
pub struct ScriptedSandbox {
    /// Answers given ahead with [`ScriptedSandbox::push`], used first, in order.
    queue: Mutex<VecDeque<Outcome>>,
    /// What answers once the queue is empty.
    rest: Rest,
    /// The requests answered so far, in order.
    requests: Mutex<Vec<ExecRequest>>,
}

enum Rest {
    /// The closure's outcome.
    Answer(Box<Answer>),
    /// A `sandbox_error`: the script ran out.
    Nothing,
    /// A run that lasts until it is canceled or its wall-clock deadline passes.
    Hang,
}

impl ScriptedSandbox {
    /// A sandbox whose every request is answered by `answer` (after any answers pushed ahead).
    pub fn new(answer: impl Fn(&ExecRequest) -> Outcome + Send + Sync + 'static) -> ScriptedSandbox {
        ScriptedSandbox::with(Rest::Answer(Box::new(answer)))
    }

    /// A sandbox that answers with `outcomes`, one per request and in order; past the last it answers with a
    /// `sandbox_error` saying the script ran out.
    pub fn answering(outcomes: impl IntoIterator<Item = Outcome>) -> ScriptedSandbox {
        let sandbox = ScriptedSandbox::with(Rest::Nothing);
        sandbox.queue.lock().expect("script lock").extend(outcomes);
        sandbox
    }

    /// A sandbox whose every program exits with 0 after printing `stdout`.
    pub fn replying(stdout: impl Into<Vec<u8>>) -> ScriptedSandbox {
        let stdout = stdout.into();
        ScriptedSandbox::new(move |_| ok(stdout.clone()))
    }

    /// A sandbox whose every program runs until it is canceled (then its status is `canceled`) or its
    /// request's wall-clock deadline (`Limits::wall_ms`) passes (then `timeout`), like a program that loops:
    /// for tests of what cancels a run, and of what waits for one.
    pub fn hanging() -> ScriptedSandbox {
        ScriptedSandbox::with(Rest::Hang)
    }

    fn with(rest: Rest) -> ScriptedSandbox {
        ScriptedSandbox { queue: Mutex::default(), rest, requests: Mutex::default() }
    }

    /// Answers the next request with `outcome`, before anything else not yet used.
    pub fn push(&self, outcome: Outcome) {
        self.queue.lock().expect("script lock").push_back(outcome);
    }

    /// The requests answered so far, in order (a request whose handle was already canceled did not run and
    /// is not among them).
    pub fn requests(&self) -> Vec<ExecRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// How many requests were answered so far.
    pub fn runs(&self) -> usize {
        self.requests.lock().expect("requests lock").len()
    }

    /// Answers pushed ahead and not used yet.
    pub fn unused(&self) -> usize {
        self.queue.lock().expect("script lock").len()
    }
}

impl Sandbox for ScriptedSandbox {
    fn exec_cancelable(&self, request: &ExecRequest, cancel: &Cancel) -> Outcome {
        // As the trait says: a request whose handle is already canceled does not run.
        if cancel.is_canceled() {
            return Outcome::canceled();
        }
        self.requests.lock().expect("requests lock").push(request.clone());
        if let Some(outcome) = self.queue.lock().expect("script lock").pop_front() {
            return outcome;
        }
        match &self.rest {
            Rest::Answer(answer) => answer(request),
            Rest::Nothing => Outcome::sandbox_error("the scripted sandbox has no answer left for this request"),
            Rest::Hang => hang(request, cancel),
        }
    }
}

/// Waits until `cancel` is canceled or the request's deadline passes.
fn hang(request: &ExecRequest, cancel: &Cancel) -> Outcome {
    let started = Instant::now();
    let canceled = Arc::new((Mutex::new(false), Condvar::new()));
    let signal = canceled.clone();
    let registration = cancel.register(move || {
        *signal.0.lock().expect("hang lock") = true;
        signal.1.notify_all();
    });
    let (lock, changed) = &*canceled;
    let deadline = Duration::from_millis(request.limits.wall_ms);
    let (was_canceled, _) = changed
        .wait_timeout_while(lock.lock().expect("hang lock"), deadline, |canceled| !*canceled)
        .expect("hang lock");
    let status = if *was_canceled { Status::Canceled } else { Status::Timeout };
    drop(was_canceled);
    drop(registration);
    Outcome { wall_time: started.elapsed(), ..ended(status) }
}

/// A program that exited with 0 after printing `stdout`.
pub fn ok(stdout: impl Into<Vec<u8>>) -> Outcome {
    Outcome { stdout: stdout.into(), ..ended(Status::Ok) }
}

/// A program that exited with `code` after writing `stderr` (a traceback, say).
pub fn nonzero_exit(code: i32, stderr: impl Into<Vec<u8>>) -> Outcome {
    Outcome { exit_code: Some(code), stderr: stderr.into(), ..ended(Status::NonzeroExit) }
}

/// A program that exited with 0 after printing `stdout` and leaving `files` (named as the request's
/// `output_dir` makes them: from that folder).
pub fn with_files(stdout: impl Into<Vec<u8>>, files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Outcome {
    let files = files.into_iter().map(|(path, contents)| OutputFile { path, contents }).collect();
    Outcome { files, ..ok(stdout) }
}

/// A run that ended with `status` and no output (`timeout`, `memory_limit`, ...); `ok` exits with 0 and
/// `nonzero_exit` with 1. It took [`WALL_TIME`] and [`CPU_TIME`].
pub fn ended(status: Status) -> Outcome {
    let exit_code = match status {
        Status::Ok => Some(0),
        Status::NonzeroExit => Some(1),
        _ => None,
    };
    Outcome { exit_code, wall_time: WALL_TIME, cpu_time: CPU_TIME, ..Outcome::empty(status) }
}

/// The contents of the input file `path` of `request`, as text (what a test reads to see which program or
/// data was sent).
pub fn input_text(request: &ExecRequest, path: &str) -> Option<String> {
    request.files.iter().find(|f| f.path == path).map(|f| String::from_utf8_lossy(&f.contents).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InputFile;

    fn request(code: &str) -> ExecRequest {
        ExecRequest { code: code.into(), ..Default::default() }
    }

    #[test]
    fn the_closure_answers_and_every_request_is_recorded() {
        let sandbox = ScriptedSandbox::new(|r: &ExecRequest| ok(format!("ran {}", r.code)));
        assert_eq!(sandbox.exec(&request("a")).stdout, b"ran a");
        assert_eq!(sandbox.exec(&request("b")).stdout, b"ran b");
        let codes: Vec<String> = sandbox.requests().into_iter().map(|r| r.code).collect();
        assert_eq!(codes, ["a", "b"]);
        assert_eq!(sandbox.runs(), 2);
    }

    #[test]
    fn pushed_answers_come_first_and_in_order() {
        let sandbox = ScriptedSandbox::replying("rest");
        sandbox.push(nonzero_exit(2, "boom"));
        sandbox.push(ended(Status::MemoryLimit));
        let first = sandbox.exec(&request("1"));
        assert_eq!(
            (first.status, first.exit_code, first.stderr.as_slice()),
            (Status::NonzeroExit, Some(2), &b"boom"[..])
        );
        assert_eq!(sandbox.exec(&request("2")).status, Status::MemoryLimit);
        let rest = sandbox.exec(&request("3"));
        assert_eq!((rest.status, rest.exit_code, rest.stdout.as_slice()), (Status::Ok, Some(0), &b"rest"[..]));
        assert_eq!(sandbox.unused(), 0);
    }

    #[test]
    fn a_queue_that_runs_out_is_a_sandbox_error() {
        let sandbox = ScriptedSandbox::answering([ok("one")]);
        assert_eq!(sandbox.exec(&request("1")).stdout, b"one");
        let outcome = sandbox.exec(&request("2"));
        assert_eq!(outcome.status, Status::SandboxError);
        assert!(outcome.error.unwrap().contains("no answer left"));
        assert_eq!(sandbox.runs(), 2);
    }

    #[test]
    fn a_canceled_handle_runs_nothing_and_uses_no_answer() {
        let sandbox = ScriptedSandbox::answering([ok("kept")]);
        let cancel = Cancel::new();
        cancel.cancel();
        assert_eq!(sandbox.exec_cancelable(&request("x"), &cancel).status, Status::Canceled);
        assert_eq!((sandbox.runs(), sandbox.unused()), (0, 1));
        assert_eq!(sandbox.exec(&request("y")).stdout, b"kept");
    }

    #[test]
    fn a_hanging_run_ends_when_canceled_from_another_thread() {
        let sandbox = Arc::new(ScriptedSandbox::hanging());
        let cancel = Cancel::new();
        let mut long = request("while True: pass");
        long.limits.wall_ms = 60_000;
        let (runner, handle) = (sandbox.clone(), cancel.clone());
        let run = std::thread::spawn(move || runner.exec_cancelable(&long, &handle));
        while sandbox.runs() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        cancel.cancel();
        let outcome = run.join().unwrap();
        assert_eq!(outcome.status, Status::Canceled);
        assert!(outcome.wall_time < Duration::from_secs(60));
    }

    #[test]
    fn a_hanging_run_times_out_at_its_deadline() {
        let sandbox = ScriptedSandbox::hanging();
        let mut short = request("while True: pass");
        short.limits.wall_ms = 20;
        let outcome = sandbox.exec(&short);
        assert_eq!(outcome.status, Status::Timeout);
        assert!(outcome.wall_time >= Duration::from_millis(20));
    }

    #[test]
    fn the_helpers_read_inputs_and_write_files() {
        let mut sent = request("main");
        sent.files.push(InputFile { path: "program.py".into(), contents: b"x = 1".to_vec() });
        assert_eq!(input_text(&sent, "program.py").as_deref(), Some("x = 1"));
        assert_eq!(input_text(&sent, "missing.txt"), None);
        let outcome = with_files("1 file", [("totals.csv".to_string(), b"a,b\n".to_vec())]);
        assert_eq!((outcome.status, outcome.files.len()), (Status::Ok, 1));
        assert_eq!((outcome.wall_time, outcome.cpu_time), (WALL_TIME, CPU_TIME));
    }
}
