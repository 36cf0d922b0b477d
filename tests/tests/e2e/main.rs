//! The end-to-end tests against the real `careline` binary, in one test
//! binary (one link instead of nine on a 2-core CI machine), a module per
//! story. `cargo test --workspace --test e2e -- phone::` runs one of them.
//! The multi-node tests (`tests/nodes.rs`) have a binary of their own: they
//! assert failover times, and run only beside each other.

mod browser;
mod channels;
mod cli;
mod dispatch;
mod hims;
mod mail;
mod media;
mod phone;
mod serve;
