//! nova-store's integration suites, in one test binary (each binary links the whole dependency graph, and
//! linking dominates a build of the tests): a module per suite.

mod artifacts;
mod batches;
mod blob_s3;
mod events;
mod group_commit;
mod key_lookups;
mod lists;
mod programs;
mod queue;
mod retention;
mod stats;
mod tenants;
mod tls;
mod turns;
mod usage;
mod webhooks;
