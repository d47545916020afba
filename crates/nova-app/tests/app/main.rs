//! nova-app's integration suites, in one test binary (each binary links the whole dependency graph, and
//! linking dominates a build of the tests): a module per suite, `common` the fixtures they share.

mod attempts;
mod common;
mod ocr;
mod render;
mod schedules;
