//! The helper's side of one execution: hand the program to the waiting jail, watch it (output caps,
//! deadline, cancellation), and turn what the run's init reports into an [`Outcome`].

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nova_core::error_chain;

use super::error::SetupError;
use super::net::{self, Egress, Stack};
use super::protocol::{read_line, Dispatch, Failure, Report};
use super::Jail;
use crate::os;
use crate::{ExecRequest, Outcome, Status};

/// The helper's ends of one run's pipes, sent ahead so that the run is prepared before its request.
pub(super) struct RunPipes {
    pub(super) stdin: Option<File>,
    pub(super) stdout: File,
    pub(super) stderr: File,
    code: Option<File>,
    pub(super) report: File,
    /// Brings the run's network namespace (sent by the run's init), for a request with network on.
    netns: OwnedFd,
}

/// One execution, as the helper reports it.
pub(super) struct Ran {
    pub(super) outcome: Outcome,
    /// Whether the jail can take another request.
    pub(super) reusable: bool,
    /// The step that failed, when the outcome is a `sandbox_error`.
    pub(super) failure: Option<SetupError>,
}

impl Ran {
    /// A run whose step `failure` failed before its program could.
    pub(super) fn failed(failure: SetupError, reusable: bool) -> Ran {
        Ran { outcome: Outcome::sandbox_error(error_chain(&failure)), reusable, failure: Some(failure) }
    }
}

impl Jail {
    /// Hands the request to the jail and watches it to the end, or until `cancel` (the helper's input) becomes
    /// readable: end of input from a caller that gave up. Returns the outcome and whether the jail can take
    /// another request (it cannot once it was killed, or when anything of it failed).
    pub(super) fn run(&mut self, request: &ExecRequest, cancel: RawFd) -> Ran {
        let tool = match self.network_tool_for(request) {
            Ok(tool) => tool,
            Err(e) => return Ran::failed(e, true),
        };
        let before = self.cgroup.stats();
        let (mut pipes, stack) = match self.dispatch(request, tool.as_deref()) {
            Ok(dispatched) => dispatched,
            Err(e) => return Ran::failed(e, false),
        };
        let limits = request.limits;
        let start = Instant::now();
        let watched = self.watch(&mut pipes, request, start + Duration::from_millis(limits.wall_ms), cancel);
        let wall_time = start.elapsed();
        // The network stack ends with the run: killed before the outcome is reported, reaped after it.
        self.stopping = stack.map(Stack::kill);
        let after = self.cgroup.stats();
        let oom_kills = after.oom_kills.saturating_sub(before.oom_kills);
        let cpu_time = after.cpu_time.saturating_sub(before.cpu_time);
        let text = String::from_utf8_lossy(&watched.report);
        let report: Option<Report> = text.lines().find_map(|l| serde_json::from_str(l).ok());
        let mut failed = text.lines().find_map(Failure::parse_line);
        let reusable = !self.dead && oom_kills == 0 && report.is_some() && failed.is_none();
        let mut outcome = Outcome::sandbox_error("");
        outcome.error = None; // Filled in below; `sandbox_error` is only the all-empty starting point.
        outcome.wall_time = wall_time;
        outcome.cpu_time = cpu_time.max(Duration::from_micros(report.as_ref().map_or(0, |r| r.cpu_us)));
        outcome.peak_memory_bytes = after.peak_memory_bytes.max(report.as_ref().map_or(0, |r| r.max_rss_bytes));
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
        } else if oom_kills > 0 {
            Status::MemoryLimit
        } else if let Some(step) = &failed {
            outcome.error = Some(error_chain(step));
            Status::SandboxError
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
                    failed = Some(SetupError::NoReport);
                    outcome.error = Some(error_chain(&SetupError::NoReport));
                    Status::SandboxError
                }
            }
        };
        if outcome.status != Status::SandboxError {
            // A step's report that lost to a deadline, an output overflow or a cancellation is not the outcome.
            failed = None;
        }
        if let Some(report) = report {
            outcome.files = report.files;
            outcome.files_truncated = report.files_truncated;
        }
        Ran { outcome, reusable, failure: failed }
    }

    /// The network stack a request needs: none without network access. Never without the policy: a request
    /// for network access fails here when its tool is missing.
    pub(super) fn network_tool_for(&self, request: &ExecRequest) -> Result<Option<std::path::PathBuf>, SetupError> {
        match (request.network, net::find_tool(self.network_tool.as_deref())) {
            (false, _) => Ok(None),
            (true, Some(tool)) => Ok(Some(tool)),
            (true, None) => Err(SetupError::NetworkToolMissing),
        }
    }

    /// Sends the next run's descriptors to the init, which prepares the run (namespaces, file system, the
    /// program forked and confined) before its request arrives.
    pub(super) fn prepare_next(&mut self) -> Result<(), SetupError> {
        let (stdin_r, stdin_w) = os::pipe().map_err(SetupError::Pipes)?;
        let (stdout_r, stdout_w) = os::pipe().map_err(SetupError::Pipes)?;
        let (stderr_r, stderr_w) = os::pipe().map_err(SetupError::Pipes)?;
        let (code_r, code_w) = os::pipe().map_err(SetupError::Pipes)?;
        let (report_r, report_w) = os::pipe().map_err(SetupError::Pipes)?;
        let (netns_r, netns_w) = os::socketpair().map_err(SetupError::Pipes)?;
        let inside = [&stdin_r, &stdout_w, &stderr_w, &code_r, &report_w, &netns_w].map(|fd| fd.as_raw_fd());
        os::send_fds(&self.runs, b"d", &inside).map_err(SetupError::SendRun)?;
        self.next = Some(RunPipes {
            stdin: Some(stdin_w.into()),
            stdout: stdout_r.into(),
            stderr: stderr_r.into(),
            code: Some(code_w.into()),
            report: report_r.into(),
            netns: netns_r,
        });
        Ok(())
    }

    /// Limits into the cgroup, the network stack onto the run (when `tool` is given), the request to the
    /// prepared run, then the code to the program.
    pub(super) fn dispatch(
        &mut self,
        request: &ExecRequest,
        tool: Option<&std::path::Path>,
    ) -> Result<(RunPipes, Option<Stack>), SetupError> {
        if request.limits != self.limits {
            self.cgroup.set_limits(&super::cgroup_limits(&request.limits)).map_err(SetupError::CgroupLimits)?;
            self.limits = request.limits;
        }
        self.cgroup.reset_peak_memory();
        let env = framed_env(request)?;
        let egress = match tool {
            Some(_) => Some(Egress::for_this_host().map_err(SetupError::EgressPolicy)?),
            None => None,
        };
        if self.next.is_none() {
            self.prepare_next()?;
        }
        let mut pipes = self.next.take().expect("a prepared run");
        // The run's init says `ready` once the run is prepared (or names the step that failed), then `ok`
        // once it has taken the request.
        let expect = |pipes: &mut RunPipes, word: &str| match read_line(&mut pipes.report) {
            Ok(line) if line == word => Ok(()),
            Ok(line) => Err(Failure::parse_line(&line)
                .unwrap_or_else(|| SetupError::GarbledReport(io::Error::other(format!("{line:?}"))))),
            Err(e) => Err(SetupError::RunInitDied(e)),
        };
        expect(&mut pipes, "ready")?;
        let stack = match tool {
            Some(tool) => {
                let netns = match os::recv_fds(&pipes.netns, &mut [0u8; 1]) {
                    Ok((1, mut fds)) if fds.len() == 1 => fds.remove(0),
                    Ok(_) => return Err(SetupError::RunNetns(io::Error::other("it did not arrive"))),
                    Err(e) => return Err(SetupError::RunNetns(e)),
                };
                Some(Stack::start(tool, netns, self.init).map_err(|e| SetupError::StartNetwork(io::Error::other(e)))?)
            }
            None => None,
        };
        let dispatch = Dispatch {
            limits: request.limits,
            files: request.files.clone(),
            egress,
            output_dir: request.output_dir.clone(),
        };
        let line = serde_json::to_string(&dispatch).expect("dispatches serialise");
        let control = self.control.as_mut().expect("the init's control pipe is open while the jail lives");
        writeln!(control, "{line}").map_err(SetupError::Dispatch)?;
        expect(&mut pipes, "ok")?;
        let mut framed = env;
        framed.extend_from_slice(request.code.as_bytes());
        // A program larger than the pipe's buffer is read by the interpreter as it goes; a broken pipe means
        // the program died, which the watch reports.
        let _ = pipes.code.take().expect("code sent once").write_all(&framed);
        Ok((pipes, stack))
    }

    /// Feeds stdin, collects capped stdout and stderr and the run's report, and kills the jail at the
    /// deadline, when output overflows, or when `cancel` becomes readable.
    fn watch(&mut self, pipes: &mut RunPipes, request: &ExecRequest, deadline: Instant, cancel: RawFd) -> Watched {
        let cap = request.limits.output_bytes as usize;
        let mut w = Watched::default();
        let mut stdin_left: &[u8] = &request.stdin;
        if stdin_left.is_empty() {
            pipes.stdin = None;
        } else if let Some(s) = &pipes.stdin {
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
            let timeout = (deadline - now).as_millis().min(i32::MAX as u128 - 1) as i32 + 1;
            let mut fds = vec![
                (if out_open { pipes.stdout.as_raw_fd() } else { -1 }, libc::POLLIN),
                (if err_open { pipes.stderr.as_raw_fd() } else { -1 }, libc::POLLIN),
                (if report_open { pipes.report.as_raw_fd() } else { -1 }, libc::POLLIN),
                (cancel, libc::POLLIN),
            ];
            if let Some(s) = &pipes.stdin {
                fds.push((s.as_raw_fd(), libc::POLLOUT));
            }
            let Ok(ready) = os::poll(&fds, timeout) else { break };
            let readable = |i: usize| ready[i] & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if out_open && readable(0) {
                out_open = drain(&mut pipes.stdout, &mut buf, &mut w.stdout, cap, &mut w.truncated);
            }
            if err_open && readable(1) {
                err_open = drain(&mut pipes.stderr, &mut buf, &mut w.stderr, cap, &mut w.truncated);
            }
            if report_open && readable(2) {
                report_open = drain(&mut pipes.report, &mut buf, &mut w.report, usize::MAX, &mut false);
                // The run's init reports once every process of the run is dead, so stdout and stderr are
                // complete too; its own exit (and the teardown of the run's namespaces) is not waited for.
                report_open &= !w.report.ends_with(b"\n")
                    || !String::from_utf8_lossy(&w.report).lines().any(|l| serde_json::from_str::<Report>(l).is_ok());
            }
            if readable(3) {
                w.canceled = true;
                self.kill();
                break;
            }
            if ready.len() > 4 && ready[4] != 0 {
                let done = match pipes.stdin.as_mut().map(|s| s.write(stdin_left)) {
                    Some(Ok(n)) => {
                        stdin_left = &stdin_left[n..];
                        stdin_left.is_empty()
                    }
                    Some(Err(e)) => e.kind() != io::ErrorKind::WouldBlock,
                    None => true,
                };
                if done {
                    pipes.stdin = None;
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
            // SIGKILL to the jail's pid 1 ends every process in it, every run's included.
            let _ = os::kill(self.init, libc::SIGKILL);
            let _ = os::wait(self.init);
            self.dead = true;
        }
    }

    pub(super) fn destroy(&mut self) {
        self.stopping = None;
        self.control = None;
        self.kill();
        self.cgroup.destroy();
        let _ = fs::remove_dir(&self.mount_point);
    }
}

/// What the program reads before its code: `<network: 0 or 1><10-digit length><K=V\0...>`.
fn framed_env(request: &ExecRequest) -> Result<Vec<u8>, SetupError> {
    let mut env = Vec::new();
    for (key, value) in &request.env {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(SetupError::Environment(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("environment variable {key:?} is not valid"),
            )));
        }
        env.extend_from_slice(key.as_bytes());
        env.push(b'=');
        env.extend_from_slice(value.as_bytes());
        env.push(0);
    }
    let mut framed = vec![if request.network { b'1' } else { b'0' }];
    framed.extend_from_slice(format!("{:010}", env.len()).as_bytes());
    framed.extend_from_slice(&env);
    Ok(framed)
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
