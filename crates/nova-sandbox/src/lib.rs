//! NOVA's sandbox for untrusted, AI-written code.
//!
//! [`Sandbox`] is the seam: an [`ExecRequest`] goes in, an [`Outcome`] comes out. The first backend is
//! [`jail::JailSandbox`]: a fresh set of Linux namespaces per execution, a new root of read-only binds,
//! seccomp, Landlock, rlimits and cgroup limits, set up by a single-threaded helper process (the `nova`
//! binary re-executing itself as `nova __jail`, see [`jail::helper_main`]) and optionally prepared ahead of
//! time in a warm pool.
//!
//! The calls block: from async code, run them on a blocking thread (`tokio::task::spawn_blocking`).
//!
//! [`session::Session`] is the other way in: a jail that lives across calls, with a Python state that survives
//! from one code run to the next, commands and files, opened with [`jail::JailSandbox::open_session`].
//!
//! With the `testing` feature, `testing::ScriptedSandbox` is a second implementation that runs nothing:
//! it answers from a script, for tests of the code around a sandbox on any machine.

mod cancel;
pub mod confined;
pub mod jail;
mod os;
pub mod session;
pub mod spec;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use cancel::{Cancel, CancelOnDrop};
pub use types::{ExecRequest, InputFile, Limits, Outcome, OutputFile, Runtime, Status};

/// Runs one program to completion under limits and reports what happened.
///
/// Implementations never run code unconfined: when they cannot set up their isolation, they return
/// [`Status::SandboxError`] with a message that names what is missing.
pub trait Sandbox: Send + Sync {
    /// Runs `request` and waits for it to finish (or to be killed at its deadline).
    fn exec(&self, request: &ExecRequest) -> Outcome {
        self.exec_cancelable(request, &Cancel::new())
    }

    /// Like [`Sandbox::exec`], and stoppable: once `cancel` is canceled (from any thread), every process of
    /// the execution is killed at once and the outcome's status is [`Status::Canceled`]. A request whose
    /// handle is already canceled does not run.
    fn exec_cancelable(&self, request: &ExecRequest, cancel: &Cancel) -> Outcome;
}
