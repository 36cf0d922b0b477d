//! Claims: work done once when several nodes share one database.
//!
//! Every outbox row (a mail, an ambulance request, a messaging reply) and
//! every inbound channel event is worked on only by the node holding its
//! claim. A claim is one conditional update, the same text on SQLite (3.35+
//! has `returning`) and PostgreSQL:
//!
//! ```sql
//! update t set claimed_by = $me, claimed_until = $now + lease
//!  where t_id = $id and (claimed_until is null or claimed_until < $now) and <still due>
//! returning …
//! ```
//!
//! Whichever node's update comes first gets the row back; the others get
//! none (PostgreSQL re-checks the condition on the row another transaction
//! just changed; SQLite has one writer at a time). A claim is a lease: a node
//! that dies mid-send holds its rows only until `claimed_until`, then any
//! node may claim them again. Recording an attempt's outcome clears the claim.
//! So each lease must outlast the work it covers: a worker claims only what
//! it starts on at once, and caps its send inside the lease.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, Utc};

use super::{Result, Store, StoreError, on_pool};

/// A mail's claim: the SMTP send is capped at 120 s (`crate::mail`), well inside it.
pub const MAIL_LEASE: Duration = Duration::minutes(5);
/// An ambulance request's claim: the webhook's HTTP timeout is 10 s (`crate::dispatch`).
pub const AMBULANCE_LEASE: Duration = Duration::seconds(30);
/// An inbound channel event's claim while it is processed (store writes and a routing event).
pub const CHANNEL_EVENT_LEASE: Duration = Duration::seconds(10);

/// Who holds a claim: one id per process (host, pid and a random part, so
/// two containers that are both pid 1 differ, and a restarted node is a new
/// claimant). Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant(Arc<str>);

impl Claimant {
    /// A claimant with this id (tests, or a node that names itself).
    pub fn new(id: impl Into<String>) -> Claimant {
        Claimant(Arc::from(id.into()))
    }

    /// This process's claimant, made on first use.
    pub fn of_process() -> Claimant {
        static ME: OnceLock<Claimant> = OnceLock::new();
        ME.get_or_init(|| {
            let random = uuid::Uuid::new_v4().simple().to_string();
            Claimant::new(format!("{}/{}/{}", host_name(), std::process::id(), &random[..8]))
        })
        .clone()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Claimant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The machine's name, for people reading a claim; uniqueness comes from the pid and the random part.
fn host_name() -> String {
    #[cfg(unix)]
    if let Ok(name) = nix::unistd::gethostname() {
        return name.to_string_lossy().into_owned();
    }
    "host".to_owned()
}

/// A kind of row that can be claimed: its table, its key column, and what
/// makes it still due (SQL over the row, `$3` being now).
pub(crate) struct Claimable {
    pub table: &'static str,
    pub key: &'static str,
    pub due: &'static str,
    /// More to set with the claim (`, state = 'sending'`), or empty.
    pub also_set: &'static str,
}

/// The claim's SQL: `$1` the key, `$2` the claimant, `$3` now, `$4` the claim's end.
fn claim_sql(what: &Claimable, returning: &str) -> String {
    format!(
        "update {table} set claimed_by = $2, claimed_until = $4{also} where {key} = $1 \
         and (claimed_until is null or claimed_until < $3) and ({due}) returning {returning}",
        table = what.table,
        key = what.key,
        also = what.also_set,
        due = what.due,
    )
}

/// Claims one row for `claimant` until `now + lease`, if it is still due and
/// nobody else holds a live claim on it; returns the row's `returning`
/// columns, or `None` when it was not claimed.
pub(crate) async fn claim<K, R>(
    store: &Store,
    what: &Claimable,
    key: K,
    returning: &str,
    claimant: &Claimant,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<R>>
where
    K: for<'q> sqlx::Encode<'q, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
        + for<'q> sqlx::Encode<'q, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + Send,
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let sql = claim_sql(what, returning);
    on_pool!(store, pool => sqlx::query_as(&sql)
        .bind(key)
        .bind(claimant.as_str())
        .bind(now)
        .bind(now + lease)
        .fetch_optional(pool)
        .await)
    .map_err(StoreError::from_sqlx)
}
