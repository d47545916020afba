//! nova-server's integration suites, in one test binary (each binary links the whole dependency graph, and
//! linking dominates a build of the tests): a module per suite, `helpers` the app they start.
//!
//! nextest runs each test in its own process, so what a test sets for its process (an environment variable, a
//! global such as the Prometheus recorder) stays its own.

mod api;
mod console;
mod helpers;
mod metrics;
mod openapi;
mod programs;
mod review;
mod schedules;
mod tenancy;
mod usage;
mod webhooks;
