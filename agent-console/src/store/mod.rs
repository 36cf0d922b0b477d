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
//!   `consult_note`, `ambulance`, `caption`, `outbox`, `channel` (messaging
//!   channels' inbound journal, threads and outbox), `claim` (the
//!   [`Claimant`] and the one claim query behind every outbox worker, so
//!   nodes sharing a database send each row once), `hims` (which FHIR
//!   resource each working copy is, recorded consults), `secret`; the information desk's
//!   `facility` (beds, stock), `faq`, `scheme`, `complaint` (tasks,
//!   tickets) and `booking` (slots, appointments).

mod access;
mod ambulance;
mod audit;
mod booking;
mod caption;
mod channel;
pub mod claim;
mod complaint;
mod consult_note;
mod contact;
mod device;
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

pub use access::BREAK_GLASS_ACTION;
pub use ambulance::*;
pub use booking::*;
pub use caption::{Caption, NewCaption};
pub use channel::*;
pub use claim::Claimant;
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
/// HTTP edge answers them with 409/422 rather than 500; they name the
/// request field they concern, the same on both backends (see
/// [`StoreError::from_sqlx`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique key is taken: the field (column) whose value clashes.
    #[error("already exists: {0}")]
    Conflict(String),
    /// A foreign key names no record: the field that refers to it, or
    /// [`UNNAMED_REFERENCE`] where the query does not say which.
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

/// What [`StoreError::InvalidReference`] says when the query did not name
/// the field: SQLite's foreign-key error does not say which key failed, so
/// PostgreSQL's constraint name is not used either (the answer would
/// depend on the backend).
pub const UNNAMED_REFERENCE: &str = "a referenced record";

impl StoreError {
    /// Maps a sqlx error to a store error. A unique violation becomes
    /// [`StoreError::Conflict`] with the field whose value clashes, read from
    /// the key's columns: SQLite says `UNIQUE constraint failed: t.a, t.b`,
    /// PostgreSQL's detail says `Key (a, b)=(..) already exists.`; a key of
    /// several columns is named by [`key_field`]. A foreign-key violation
    /// becomes [`StoreError::InvalidReference`] with [`UNNAMED_REFERENCE`];
    /// the query that knows which of its references a request gave names it
    /// with [`StoreError::refers_to`].
    pub(crate) fn from_sqlx(err: sqlx::Error) -> Self {
        if let sqlx::Error::RowNotFound = err {
            return StoreError::NotFound;
        }
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict(unique_key(db.as_ref()));
            }
            if db.is_foreign_key_violation() {
                return StoreError::InvalidReference(UNNAMED_REFERENCE.to_owned());
            }
        }
        StoreError::Database(err)
    }

    /// Names the field of an [`StoreError::InvalidReference`], for a query
    /// whose only reference a request can get wrong is `field` (the others
    /// come from the session or were read just before).
    pub(crate) fn refers_to(field: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
        move |e| match StoreError::from_sqlx(e) {
            StoreError::InvalidReference(_) => StoreError::InvalidReference(field.to_owned()),
            other => other,
        }
    }
}

/// The field a unique violation concerns, the same on both backends.
fn unique_key(db: &dyn sqlx::error::DatabaseError) -> String {
    let parsed = if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // `Key (slot_id, patient_id)=(3, 7) already exists.`
        let columns = pg.detail().and_then(|d| d.strip_prefix("Key (")).and_then(|d| d.split_once(")=(")).map(|c| c.0);
        pg.table()
            .zip(columns)
            .map(|(table, columns)| (table.to_owned(), columns.split(", ").map(str::to_owned).collect()))
    } else {
        // `UNIQUE constraint failed: appointment.slot_id, appointment.patient_id`
        db.message().strip_prefix("UNIQUE constraint failed: ").and_then(|list| {
            let mut table = None;
            let mut columns = Vec::new();
            for qualified in list.split(", ") {
                let (t, c) = qualified.split_once('.')?;
                table = Some(t.to_owned());
                columns.push(c.to_owned());
            }
            table.map(|t| (t, columns))
        })
    };
    match parsed {
        Some((table, columns)) => key_field(&table, &columns),
        // An expression index names no columns; both backends name the index.
        None => db.constraint().map(str::to_owned).unwrap_or_else(|| db.message().to_owned()),
    }
}

/// The request field a unique key of several columns concerns: the one the
/// caller chose, the rest being the context (the facility and department of
/// a slot's start). A key of one column is that column.
fn key_field(table: &str, columns: &[String]) -> String {
    let chosen = match (table, columns.iter().map(String::as_str).collect::<Vec<_>>().as_slice()) {
        ("slot", ["facility_id", "department", "starts_at"]) => "starts_at",
        ("appointment", ["slot_id", "patient_id"]) => "slot_id",
        ("faq", ["topic", "question_en"]) => "question_en",
        ("hims_ref", ["kind", "fhir_id"]) => "fhir_id",
        ("hims_ref", ["kind", "local_id"]) => "local_id",
        ("family_link", ["patient_id", "relative_id"]) => "relative_id",
        (_, [one]) => one,
        _ => return columns.join(", "),
    };
    chosen.to_owned()
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
