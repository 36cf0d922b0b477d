//! # agent-console: the Careline server and its web consoles
//!
//! The outermost crate: the only one that knows HTTP, JSON, HTML and SQL.
//! It holds the store, the HTTP API, the server-rendered consoles and the
//! `careline` command line, and joins `routing`, `telemed` and
//! `transcription` into one helpline.
//!
//! ## Layout
//! - [`server`]: `run(listener, state, shutdown)`: serves until shutdown, with background tasks.
//! - [`http`]: the routers, auth extractors, problem-details errors, pages.
//! - [`store`]: the database on SQLite or PostgreSQL, with migrations.
//! - [`access`]: the one rule for patient data (pure).
//! - [`accounts`]: creating staff accounts (CLI and API).
//! - [`auth`]: password hashing, session tokens, login throttling.
//! - [`net`], [`throttle`]: the client's address behind trusted proxies; the limits on starting contacts (sans-IO).
//! - [`demo`]: the demo roster for `careline serve --demo`.
//! - [`channels`]: WhatsApp (and SMS) providers: webhooks journalled first, processed into contacts; replies through an outbox.
//! - [`dispatch`]: ambulance requests to the dispatch webhook, retried and never given up; the wallboard's alarm.
//! - [`config`], [`i18n`], [`metrics`], [`time`]: settings, Hindi/English words, Prometheus, IST.

pub mod access;
pub mod accounts;
#[cfg(test)]
mod arbitrary;
pub mod auth;
pub mod captions;
pub mod center;
pub mod channels;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod hims;
pub mod http;
pub mod i18n;
pub mod mail;
pub mod metrics;
pub mod net;
pub mod phone;
pub mod report;
pub mod retry;
pub mod server;
// Rows are read as tuples, each destructured right below its query.
#[allow(clippy::type_complexity)]
pub mod store;
pub mod throttle;
pub mod time;
