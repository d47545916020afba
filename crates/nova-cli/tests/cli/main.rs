//! The `nova` binary's integration suites, in one test binary (each binary links the whole dependency graph,
//! and linking dominates a build of the tests): a module per suite, `common` the helpers they share.

mod ai;
mod batches;
mod cli;
mod common;
mod console;
mod e2b;
mod eval;
mod exec;
mod hostile;
mod queue_crash;
mod responses;
mod sandboxes;
mod schemathesis;
mod submit_crash;
mod topology;
