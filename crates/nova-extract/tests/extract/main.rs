//! nova-extract's integration suites, in one test binary (each binary links the whole dependency graph, and
//! linking dominates a build of the tests): a module per suite. The inputs `fuzz_regressions` replays stay in
//! `tests/fuzz_regressions/`, where `scripts/fuzz` keeps them.

mod dev_invoices;
mod fuzz_regressions;
mod hostile_pdfs;
mod templates;
