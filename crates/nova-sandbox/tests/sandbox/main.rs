//! nova-sandbox's integration suites, in one test binary (each binary links the whole dependency graph, and
//! linking dominates a build of the tests): a module per suite, each with the real jail.
//!
//! nextest runs each test in its own process, so the cgroup the escape suite puts its process in
//! (`escape::confine_suite`) and the variables it sets hold for that one test.

mod cancel;
mod escape;
mod pool;
mod setup_errors;
