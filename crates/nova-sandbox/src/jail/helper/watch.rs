//! The helper's side of one execution: hand the program to the waiting jail, watch it (output caps,
//! deadline, cancellation), and turn what the init reports into an [`Outcome`].

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nova_core::error_chain;

use super::init::{Dispatch, Report};
use super::{read_line, Jail, SetupError};
use crate::os;
use crate::{ExecRequest, Outcome, Status};

impl Jail {
    /// Hands the request to the waiting jail and watches it to the end, or until `cancel` (the helper's
    /// input) becomes readable: end of input from a caller that gave up.
    pub(super) fn run(&mut self, request: &ExecRequest, cancel: RawFd) -> Outcome {
        if request.network {
            return Outcome::sandbox_error(error_chain(&SetupError::NetworkUnsupported));
        }
        if let Err(e) = self.dispatch(request) {
            return Outcome::sandbox_error(error_chain(&e));
        }
        let limits = request.limits;
        let start = Instant::now();
        let watched = self.watch(request, start + Duration::from_millis(limits.wall_ms), cancel);
        let wall_time = start.elapsed();
        if !self.dead {
            let _ = os::wait(self.init);
            self.dead = true;
        }
        let stats = self.cgroup.stats();
        let report: Option<Report> =
            String::from_utf8_lossy(&watched.report).lines().find_map(|l| serde_json::from_str(l).ok());
        let mut outcome = Outcome::sandbox_error("");
        outcome.error = None; // Filled in below; `sandbox_error` is only the all-empty starting point.
        outcome.wall_time = wall_time;
        outcome.cpu_time = stats.cpu_time.max(Duration::from_micros(report.as_ref().map_or(0, |r| r.cpu_us)));
        outcome.peak_memory_bytes = stats.peak_memory_bytes.max(report.as_ref().map_or(0, |r| r.max_rss_bytes));
        outcome.output_truncated = watched.truncated;
        outcome.stdout = watched.stdout;
        outcome.stderr = watched.stderr;
        let status = report.as_ref().map(|r| std::process::ExitStatus::from_raw(r.status));
        outcome.exit_code = status.and_then(|s| s.code());
        outcome.signal = status.and_then(|s| s.signal());
        outcome.status = if watched.canceled {
            Status::Canceled
        } else if watched.timed_out {
            Status::Timeout
        } else if watched.truncated {
            Status::OutputLimit
        } else if stats.oom_kills > 0 {
            Status::MemoryLimit
        } else {
            match (outcome.exit_code, outcome.signal) {
                (Some(0), _) => Status::Ok,
                (Some(_), _) => Status::NonzeroExit,
                (None, Some(libc::SIGXCPU)) => Status::Timeout,
                (None, Some(libc::SIGKILL)) if outcome.cpu_time.as_millis() as u64 >= limits.cpu_ms * 9 / 10 => {
                    Status::Timeout
                }
                (None, Some(_)) => Status::Signaled,
                (None, None) => {
                    outcome.error = Some("the jail's init ended without a report".into());
                    Status::SandboxError
                }
            }
        };
        if let Some(report) = report {
            outcome.files = report.files;
            outcome.files_truncated = report.files_truncated;
        }
        outcome
    }

    /// Limits into the cgroup, files and limits to the init, then the code to the interpreter.
    fn dispatch(&mut self, request: &ExecRequest) -> Result<(), SetupError> {
        let same_limits = request.limits == self.built_with;
        if !same_limits {
            self.cgroup.set_limits(&request.limits).map_err(SetupError::CgroupLimits)?;
        }
        let dispatch = Dispatch { limits: request.limits, same_limits, files: request.files.clone() };
        let mut control = self.control.take().expect("dispatched once");
        let line = serde_json::to_string(&dispatch).expect("dispatches serialise");
        writeln!(control, "{line}").map_err(SetupError::Dispatch)?;
        match read_line(&mut self.report) {
            Ok(line) if line == "ok" => {}
            Ok(line) => return Err(SetupError::Init(line.trim_start_matches("error: ").to_owned())),
            Err(e) => return Err(SetupError::Init(format!("the jail's init died before the program ({e})"))),
        }
        let mut env = Vec::new();
        for (key, value) in &request.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(SetupError::Dispatch(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("environment variable {key:?} is not valid"),
                )));
            }
            env.extend_from_slice(key.as_bytes());
            env.push(b'=');
            env.extend_from_slice(value.as_bytes());
            env.push(0);
        }
        let mut framed = format!("{:010}", env.len()).into_bytes();
        framed.extend_from_slice(&env);
        framed.extend_from_slice(request.code.as_bytes());
        // A program larger than the pipe's buffer is read by the interpreter as it goes; a broken pipe means
        // the interpreter died, which the watch reports.
        let mut code = self.code.take().expect("dispatched once");
        let _ = code.write_all(&framed);
        Ok(())
    }

    /// Feeds stdin, collects capped stdout and stderr and the init's report, and kills the jail at the
    /// deadline, when output overflows, or when `cancel` becomes readable.
    fn watch(&mut self, request: &ExecRequest, deadline: Instant, cancel: RawFd) -> Watched {
        let cap = request.limits.output_bytes as usize;
        let mut w = Watched::default();
        let mut stdin_left: &[u8] = &request.stdin;
        if stdin_left.is_empty() {
            self.stdin = None;
        } else if let Some(s) = &self.stdin {
            let _ = os::set_nonblocking(s.as_raw_fd());
        }
        let (mut out_open, mut err_open, mut report_open) = (true, true, true);
        let mut buf = vec![0u8; 64 * 1024];
        while out_open || err_open || report_open {
            let now = Instant::now();
            if now >= deadline {
                w.timed_out = true;
                self.kill();
                break;
            }
            let timeout = (deadline - now).as_millis().min(i32::MAX as u128) as i32 + 1;
            let mut fds = vec![
                (if out_open { self.stdout.as_raw_fd() } else { -1 }, libc::POLLIN),
                (if err_open { self.stderr.as_raw_fd() } else { -1 }, libc::POLLIN),
                (if report_open { self.report.as_raw_fd() } else { -1 }, libc::POLLIN),
                (cancel, libc::POLLIN),
            ];
            if let Some(s) = &self.stdin {
                fds.push((s.as_raw_fd(), libc::POLLOUT));
            }
            let Ok(ready) = os::poll(&fds, timeout) else { break };
            let readable = |i: usize| ready[i] & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if out_open && readable(0) {
                out_open = drain(&mut self.stdout, &mut buf, &mut w.stdout, cap, &mut w.truncated);
            }
            if err_open && readable(1) {
                err_open = drain(&mut self.stderr, &mut buf, &mut w.stderr, cap, &mut w.truncated);
            }
            if report_open && readable(2) {
                report_open = drain(&mut self.report, &mut buf, &mut w.report, usize::MAX, &mut false);
            }
            if readable(3) {
                w.canceled = true;
                self.kill();
                break;
            }
            if ready.len() > 4 && ready[4] != 0 {
                let done = match self.stdin.as_mut().map(|s| s.write(stdin_left)) {
                    Some(Ok(n)) => {
                        stdin_left = &stdin_left[n..];
                        stdin_left.is_empty()
                    }
                    Some(Err(e)) => e.kind() != io::ErrorKind::WouldBlock,
                    None => true,
                };
                if done {
                    self.stdin = None;
                }
            }
            if w.truncated {
                self.kill();
                break;
            }
        }
        w
    }

    pub(super) fn kill(&mut self) {
        if !self.dead {
            // SIGKILL to the namespace's pid 1 ends every process in it.
            let _ = os::kill(self.init, libc::SIGKILL);
            let _ = os::wait(self.init);
            self.dead = true;
        }
    }

    pub(super) fn destroy(&mut self) {
        self.control = None;
        self.kill();
        self.cgroup.destroy();
        let _ = fs::remove_dir(&self.mount_point);
    }
}

/// Reads what is available into `into`, keeping at most `cap` bytes. Returns whether the pipe is still open.
fn drain(file: &mut File, buf: &mut [u8], into: &mut Vec<u8>, cap: usize, truncated: &mut bool) -> bool {
    match file.read(buf) {
        Ok(0) => false,
        Ok(n) => {
            let room = cap.saturating_sub(into.len());
            into.extend_from_slice(&buf[..n.min(room)]);
            if n > room {
                *truncated = true;
            }
            true
        }
        Err(e) => e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock,
    }
}

#[derive(Default)]
struct Watched {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    report: Vec<u8>,
    truncated: bool,
    timed_out: bool,
    canceled: bool,
}
