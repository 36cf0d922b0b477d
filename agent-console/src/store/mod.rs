//! The store: everything Careline keeps, on SQLite or PostgreSQL.
//!
//! One [`Store`] interface over two backends chosen by URL (like atuin's
//! `Database`): a SQLite file by default, PostgreSQL for production and for
//! several nodes. Each backend has its own migrations (`migrations/sqlite`,
//! `migrations/postgres`), embedded and run at start. The SQL text itself is
//! shared where both dialects agree (`$n` placeholders, `returning`, `on
//! conflict`), which is almost everywhere; [`on_pool!`] runs the same query on
//! whichever pool is open, so each query is written once and tested on both by
//! the conformance suite (`agent-console/tests/store_conformance.rs`).
//!
//! ## Layout
//! - [`model`]: the records and their typed IDs; `text_enum`: the macro of
//!   the string-backed enums.
//! - One file per record group, each with its records and queries:
//!   `staff`, `patient`, `audit`, `roster`, `contact` (contacts, chat
//!   messages, who worked on them), `routing_log`, `prescription`,
//!   `consult_note`, `ambulance`, `caption`, `outbox`, `hims` (which FHIR
//!   resource each working copy is, recorded consults), `secret`; the information desk's
//!   `facility` (beds, stock), `faq`, `scheme`, `complaint` (tasks,
//!   tickets) and `booking` (slots, appointments).

mod ambulance;
mod audit;
mod booking;
mod caption;
mod complaint;
mod consult_note;
mod contact;
mod facility;
mod faq;
mod hims;
pub mod model;
mod outbox;
mod patient;
mod prescription;
mod roster;
mod routing_log;
mod scheme;
mod secret;
mod staff;
mod text_enum;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use ambulance::*;
pub use booking::*;
pub use caption::{Caption, NewCaption};
pub use complaint::*;
pub use consult_note::*;
pub use contact::*;
pub use facility::*;
pub use faq::*;
pub use hims::{ConsultRecord, HimsKind};
pub use model::*;
pub use outbox::{Attempt, Mail, NewMail};
pub use prescription::*;
pub use routing_log::*;
pub use scheme::*;
pub use staff::TokenKind;

/// Runs `$body` with `$pool` bound to the open pool, whichever backend it is.
/// The body is compiled once per backend, so sqlx checks types for each.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// `%word%` patterns for a `like` search, lower-cased; `None` for blank text.
fn like_pattern(text: &str) -> Option<String> {
    let t = text.trim().to_lowercase();
    if t.is_empty() {
        return None;
    }
    let escaped = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    Some(format!("%{escaped}%"))
}

/// Errors of the store. Constraint violations are told apart because the
/// HTTP edge answers them with 409/422 rather than 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    /// The request breaks a rule of the records (a full slot, more vacant beds than beds).
    #[error("{0}")]
    Refused(String),
    /// A stored value does not parse: the row is kept as it is for
    /// inspection, and the request fails (500) rather than show a blank.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("database unsupported: {0}")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps a sqlx error to a store error, naming the constraint that failed.
    pub(crate) fn from_sqlx(err: sqlx::Error) -> Self {
        if let sqlx::Error::RowNotFound = err {
            return StoreError::NotFound;
        }
        if let sqlx::Error::Database(db) = &err {
            let what = db.constraint().map(str::to_owned).unwrap_or_else(|| db.message().to_owned());
            if db.is_unique_violation() {
                return StoreError::Conflict(what);
            }
            if db.is_foreign_key_violation() {
                return StoreError::InvalidReference(what);
            }
        }
        StoreError::Database(err)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The handle to the database; cheap to clone (it holds a pool).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) backend: Backend,
}

/// Which backend a store runs on, for logs and `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl Store {
    /// Opens the database named by `url` and brings its schema up to date.
    ///
    /// `sqlite:` URLs and plain file paths open (creating if needed) a SQLite
    /// file in WAL mode; `postgres://` and `postgresql://` open PostgreSQL.
    pub async fn open(url: &str) -> Result<Self> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            sqlx::migrate!("../migrations/postgres").run(&pool).await?;
            Store { backend: Backend::Postgres(pool) }
        } else {
            let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
            if path.contains("://") {
                return Err(StoreError::UnsupportedUrl(url.to_owned()));
            }
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL with NORMAL sync is durable across process crashes and
                // loses at most the last commits on power loss (SQLite docs).
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
            sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
            Store { backend: Backend::Sqlite(pool) }
        };
        Ok(store)
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Is the database reachable right now? Used by `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("select 1").execute(pool).await.map(|_| ()).map_err(StoreError::from_sqlx))
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
