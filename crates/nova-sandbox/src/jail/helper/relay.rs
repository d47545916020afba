//! The helper's side of a session (see `crate::session`): one program, the session's agent, that lives until
//! it ends, the helper's input closes, or its deadline passes. Instead of collecting the program's output,
//! the helper relays bytes both ways: its own input to the program's stdin, the program's stdout to its own
//! output. The program's stderr (the agent's own failures only: it keeps code output off it) goes to the log,
//! capped. When the program is gone the helper adds one line of its own, a [`SessionEnd`], and tears the jail
//! down.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nova_core::error_chain;

use super::net::Stack;
use super::protocol::{Failure, Report, SessionEnd};
use super::Jail;
use crate::os;
use crate::ExecRequest;

/// Bytes held for the program's stdin before the helper stops reading its own input (the program is slow to
/// read; the caller waits).
const PENDING_CAP: usize = 1 << 20;
/// Bytes of the program's stderr passed to the log over a session's life.
const STDERR_CAP: usize = 64 << 10;

impl Jail {
    /// Runs `request` as a session's program and relays until it ends; `input` is the helper's own input (fd
    /// 0). Returns the line that closes the session's output.
    pub(super) fn relay(&mut self, request: &ExecRequest, input: &mut impl Read, out: &mut impl Write) -> SessionEnd {
        let before = self.cgroup.stats();
        let dispatched = self.network_tool_for(request).and_then(|tool| self.dispatch(request, tool.as_deref()));
        let (mut pipes, stack) = match dispatched {
            Ok(dispatched) => dispatched,
            Err(e) => return SessionEnd::failed(error_chain(&e)),
        };
        let deadline = Instant::now() + Duration::from_millis(request.limits.wall_ms);
        let mut end = SessionEnd::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut report = Vec::new();
        let (mut out_open, mut report_open, mut err_open) = (true, true, true);
        let mut stderr_left = STDERR_CAP;
        let mut last_byte = b'\n';
        let mut buf = vec![0u8; 64 * 1024];
        if let Some(stdin) = &pipes.stdin {
            let _ = os::set_nonblocking(stdin.as_raw_fd());
        }
        while out_open || report_open {
            let now = Instant::now();
            if now >= deadline {
                end.reason = "timeout".into();
                self.kill();
                break;
            }
            let timeout = (deadline - now).as_millis().min(i32::MAX as u128 - 1) as i32 + 1;
            let stdin_fd = pipes.stdin.as_ref().map_or(-1, |s| s.as_raw_fd());
            // The helper's input is always watched: with room for more, for data; else for its end alone (a
            // caller that closes the session while the program reads nothing must still end it).
            let fds = [
                (0, if pending.len() < PENDING_CAP { libc::POLLIN } else { 0 }),
                (if pending.is_empty() { -1 } else { stdin_fd }, libc::POLLOUT),
                (if out_open { pipes.stdout.as_raw_fd() } else { -1 }, libc::POLLIN),
                (if err_open { pipes.stderr.as_raw_fd() } else { -1 }, libc::POLLIN),
                (if report_open { pipes.report.as_raw_fd() } else { -1 }, libc::POLLIN),
            ];
            let Ok(ready) = os::poll(&fds, timeout) else { break };
            let readable = |i: usize| ready[i] & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if pending.len() >= PENDING_CAP && ready[0] & (libc::POLLHUP | libc::POLLERR) != 0 {
                end.reason = "closed".into();
                self.kill();
                break;
            }
            if pending.len() < PENDING_CAP && readable(0) {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // The caller closed the session.
                        end.reason = "closed".into();
                        self.kill();
                        break;
                    }
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
            if ready[1] != 0 {
                match pipes.stdin.as_mut().map(|s| s.write(&pending)) {
                    Some(Ok(n)) => drop(pending.drain(..n)),
                    Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The program stopped reading for good: what it was sent is lost with it.
                    _ => {
                        pending.clear();
                        pipes.stdin = None;
                    }
                }
            }
            if out_open && readable(2) {
                match pipes.stdout.read(&mut buf) {
                    Ok(0) => out_open = false,
                    Ok(n) => {
                        last_byte = buf[n - 1];
                        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                            end.reason = "closed".into();
                            self.kill();
                            break;
                        }
                    }
                    Err(e) => out_open = e.kind() == io::ErrorKind::Interrupted,
                }
            }
            if err_open && readable(3) {
                match pipes.stderr.read(&mut buf) {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => {
                        let keep = n.min(stderr_left);
                        stderr_left -= keep;
                        let _ = io::stderr().write_all(&buf[..keep]);
                    }
                }
            }
            if report_open && readable(4) {
                let mut chunk = [0u8; 4096];
                match pipes.report.read(&mut chunk) {
                    Ok(0) | Err(_) => report_open = false,
                    Ok(n) => report.extend_from_slice(&chunk[..n]),
                }
                // The run's init reports once every process of the run is dead.
                let text = String::from_utf8_lossy(&report);
                if text.lines().any(|l| serde_json::from_str::<Report>(l).is_ok()) {
                    report_open = false;
                }
                if let Some(step) = text.lines().find_map(Failure::parse_line) {
                    end.error = Some(error_chain(&step));
                    report_open = false;
                }
            }
        }
        self.stopping = stack.map(Stack::kill);
        let after = self.cgroup.stats();
        end.cpu_ms = after.cpu_time.saturating_sub(before.cpu_time).as_millis() as u64;
        end.peak_memory_bytes = after.peak_memory_bytes;
        if after.oom_kills > before.oom_kills {
            end.reason = "memory_limit".into();
        }
        if end.reason.is_empty() {
            end.reason = "exited".into();
        }
        if last_byte != b'\n' {
            // A program that died mid-line: the end starts a line of its own.
            let _ = out.write_all(b"\n");
        }
        end
    }
}
