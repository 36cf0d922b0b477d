//! The routing log: every event the routing engine took, in engine order,
//! for reports and for rebuilding a restarted node's state.

use chrono::{DateTime, Utc};

use super::contact::{RecordWrite, run_write};
use super::{Result, Store, StoreError, on_pool};

const INSERT_EVENT: &str =
    "insert into routing_event (node, at, kind, contact_id, agent_id, body) values ($1, $2, $3, $4, $5, $6)";

/// `sql` (an insert whose first six values are `INSERT_EVENT`'s) bound to
/// the node and the row; more binds may follow. A macro, as the query is
/// typed by the backend `on_pool!` picks.
macro_rules! bind_row {
    ($sql:expr, $node:expr, $e:expr) => {
        sqlx::query($sql).bind($node).bind($e.at).bind(&$e.kind).bind(&$e.contact_id).bind($e.agent_id).bind(&$e.body)
    };
}

/// One routing event as logged (the history reports and restarts are built from).
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingEventRow {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub contact_id: Option<String>,
    pub agent_id: Option<i64>,
    /// The event as JSON.
    pub body: String,
}

impl Store {
    /// Appends a routing event to the log.
    pub async fn append_routing_event(&self, node: &str, e: &RoutingEventRow) -> Result<()> {
        on_pool!(self, pool => bind_row!(INSERT_EVENT, node, e)
                .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Appends a routing event to the log and makes the record change that
    /// goes with it, in one transaction: both or neither. A change the
    /// contact's status does not allow is `StoreError::Refused` and logs
    /// nothing.
    pub async fn log_routing_event(&self, node: &str, e: &RoutingEventRow, write: &RecordWrite) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            run_write!(tx, write, e.at).await?;
            bind_row!(INSERT_EVENT, node, e)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            tx.commit().await.map_err(StoreError::from_sqlx)
        })
    }

    /// With Redis: logs the routing entry `entry` (its stream ID) and makes
    /// its record change, once whichever node asks first: `Ok(false)` when
    /// the entry was logged before (by this or another node) and nothing
    /// was written now. A change the contact's status does not allow is
    /// `StoreError::Refused`; the row is then logged without it, so the
    /// history still has the event (and a later try does nothing).
    pub async fn log_routing_entry(
        &self,
        node: &str,
        entry: &str,
        e: &RoutingEventRow,
        write: &RecordWrite,
    ) -> Result<bool> {
        const INSERT_ENTRY: &str = "insert into routing_event (node, at, kind, contact_id, agent_id, body, entry_id) \
             values ($1, $2, $3, $4, $5, $6, $7) on conflict (entry_id) do nothing";
        let refused = on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let inserted = bind_row!(INSERT_ENTRY, node, e)
                .bind(entry)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
            if inserted == 0 {
                return Ok(false);
            }
            match run_write!(tx, write, e.at).await {
                Ok(()) => {
                    tx.commit().await.map_err(StoreError::from_sqlx)?;
                    return Ok(true);
                }
                // The transaction is dropped (rolled back); the row alone follows.
                Err(StoreError::Refused(why)) => why,
                Err(other) => return Err(other),
            }
        });
        on_pool!(self, pool => bind_row!(INSERT_ENTRY, node, e)
                .bind(entry)
                .execute(pool)
            .await
            .map(|_| ()))
        .map_err(StoreError::from_sqlx)?;
        Err(StoreError::Refused(refused))
    }

    /// The routing events at or after `since`, in the order they were logged.
    pub async fn routing_events_since(&self, since: DateTime<Utc>) -> Result<Vec<RoutingEventRow>> {
        let rows: Vec<(DateTime<Utc>, String, Option<String>, Option<i64>, String)> =
            on_pool!(self, pool => sqlx::query_as(
            "select at, kind, contact_id, agent_id, body from routing_event where at >= $1 order by routing_event_id",
        )
        .bind(since)
        .fetch_all(pool)
        .await)
            .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(at, kind, contact_id, agent_id, body)| RoutingEventRow { at, kind, contact_id, agent_id, body })
            .collect())
    }
}
