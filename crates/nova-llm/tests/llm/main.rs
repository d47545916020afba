//! nova-llm's integration suites, in one test binary (each binary links the whole dependency graph, and
//! linking dominates a build of the tests): a module per suite, `common` the model server, sandbox and store
//! they share.

mod common;
mod extraction;
mod generate;
mod task;
