//! The Local backing: this process's engine, rebuilt at start from the
//! roster and the last day of the `routing_event` log.

use chrono::{Duration, Utc};
use routing::{Engine, Event, RoutingConfig};

use super::{Center, roster_around};
use crate::store::Store;

impl Center {
    /// The local engine: the roster, then the last day's logged events.
    pub(super) async fn restore(store: &Store, cfg: RoutingConfig) -> crate::store::Result<Engine> {
        let now = Utc::now();
        let roster = roster_around(store, now).await?;
        let mut engine = Engine::new(roster, cfg);
        let log = store.routing_events_since(now - Duration::hours(24)).await?;
        let (mut replayed, mut unreadable) = (0, 0);
        for row in log {
            match serde_json::from_str::<Event>(&row.body) {
                // A refused event is refused again here, as it was live: replay ignores the answer.
                Ok(event) => {
                    let _ = engine.handle(row.at.timestamp_millis(), event);
                    replayed += 1;
                }
                // A row this version cannot read (a newer version's event, or damage): it stays
                // in the store for inspection, is logged and counted, and the rest replays;
                // refusing to start over one row would take the whole helpline down.
                Err(e) => {
                    unreadable += 1;
                    tracing::error!(error = %e, at = %row.at, kind = %row.kind, "routing log row not understood; skipped");
                }
            }
        }
        if unreadable > 0 {
            tracing::error!(rows = unreadable, "routing state restored without rows of the log it could not read");
        }
        if replayed > 0 {
            tracing::info!(events = replayed, waiting = engine.waiting(), "routing state restored from the log");
        }
        Ok(engine)
    }
}
