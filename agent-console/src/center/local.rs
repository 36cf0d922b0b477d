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
        let mut replayed = 0;
        for row in log {
            if let Ok(event) = serde_json::from_str::<Event>(&row.body) {
                let _ = engine.handle(row.at.timestamp_millis(), event);
                replayed += 1;
            }
        }
        if replayed > 0 {
            tracing::info!(events = replayed, waiting = engine.waiting(), "routing state restored from the log");
        }
        Ok(engine)
    }
}
