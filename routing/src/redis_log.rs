//! Routing shared by several nodes through one Redis stream (feature `redis`).
//!
//! Every node appends its events, with their instant, to one stream with
//! `XADD`, which is atomic: the stream is one total order of every node's
//! events. Each node applies the stream, in that order, to its own replica
//! of the [`Engine`]. The engine is deterministic, so every replica makes
//! the same decisions: a contact is never offered to two agents nor an agent
//! given two offers, whichever nodes the events came from; of two nodes
//! racing to accept the same offer, the entry that came first wins on every
//! replica and the other is refused on every replica. A node learns the
//! engine's answer to its own event when its entry comes back from the
//! stream ([`SharedEngine::submit`]), and carries out the actions of its own
//! entries only (each node appends the events of the consoles and timers it
//! serves; [`Applied::node`] says whose an entry is). Ticks go through the
//! stream too: a duplicate finds nothing due.
//!
//! The roster goes through the stream too ([`SharedEngine::set_roster`]), so
//! every replica changes it at the same point of the order; a replica that
//! starts from an empty roster and applies the stream ends where the others are.
//!
//! Instants are the appending node's clock, made monotone in stream order (an
//! entry stamped before the one ahead of it is applied at that one's instant),
//! so nodes whose clocks differ slightly still agree. Nothing here reads a clock.
//!
//! Not built yet: trimming the stream (it grows until deleted; a node that
//! joins replays all of it) and snapshots.

use redis::aio::MultiplexedConnection;

use crate::engine::*;

/// Entries read from the stream per round trip.
const BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The entry just appended was not read back: the stream was trimmed or
    /// deleted under this replica, which must then be rebuilt.
    #[error("the entry {0} did not come back from the stream (was it trimmed or deleted?)")]
    Lost(String),
}

/// One stream entry as applied to this replica.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The stream entry ID.
    pub id: String,
    /// The node that appended it: only that node carries out its actions.
    pub node: String,
    /// The instant it was applied at.
    pub at: Millis,
    pub event: Event,
    pub result: Result<Vec<Action>, RoutingError>,
}

/// One node's replica of the engine, kept in step with the shared stream.
pub struct SharedEngine {
    conn: MultiplexedConnection,
    key: String,
    node: String,
    engine: Engine,
    /// The last entry applied.
    last_id: Option<String>,
    last_at: Millis,
    skipped: u64,
}

impl SharedEngine {
    /// Connects to the stream `key` at `url` as `node` and applies what it already holds.
    pub async fn connect(
        url: &str,
        key: &str,
        node: &str,
        roster: Roster,
        cfg: RoutingConfig,
    ) -> Result<SharedEngine, LogError> {
        let conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
        let mut shared = SharedEngine {
            conn,
            key: key.to_owned(),
            node: node.to_owned(),
            engine: Engine::new(roster, cfg),
            last_id: None,
            last_at: Millis::MIN,
            skipped: 0,
        };
        shared.sync().await?;
        Ok(shared)
    }

    /// This replica (as of the last entry applied).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The last stream entry applied, if any.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Entries that were not events this version understands, skipped (by every replica alike).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Appends one entry (`kind` is `event` or `roster`) stamped with this
    /// node and `at`; returns its stream ID.
    async fn append(&mut self, at: Millis, kind: &str, body: String) -> Result<String, LogError> {
        Ok(redis::cmd("XADD")
            .arg(&self.key)
            .arg("*")
            .arg("node")
            .arg(&self.node)
            .arg("at")
            .arg(at)
            .arg(kind)
            .arg(body)
            .query_async(&mut self.conn)
            .await?)
    }

    /// Appends `event` at `at`, then applies the stream up to and including
    /// it. Returns the engine's answer to it and every entry applied on the
    /// way (other nodes' entries that came before it, and this one, last).
    pub async fn submit(&mut self, at: Millis, event: Event) -> Result<Submitted, LogError> {
        let body = serde_json::to_string(&event).expect("events serialize");
        let id = self.append(at, "event", body).await?;
        let applied = self.apply_until(&id).await?;
        let result = match applied.last() {
            Some(a) if a.id == id => a.result.clone(),
            _ => return Err(LogError::Lost(id)),
        };
        Ok(Submitted { result, applied })
    }

    /// Appends a new roster, then applies the stream up to and including it:
    /// every replica replaces its roster at that entry. Returns the entries
    /// applied on the way (not the roster entry itself, which has no answer).
    pub async fn set_roster(&mut self, at: Millis, roster: &Roster) -> Result<Vec<Applied>, LogError> {
        let body = serde_json::to_string(roster).expect("rosters serialize");
        let id = self.append(at, "roster", body).await?;
        self.apply_until(&id).await
    }

    /// Applies every entry appended since the last one applied.
    pub async fn sync(&mut self) -> Result<Vec<Applied>, LogError> {
        self.apply_until("+").await
    }

    /// Sends [`Event::Tick`] if a timer of the replica is due at `now`.
    pub async fn tick(&mut self, now: Millis) -> Result<Option<Submitted>, LogError> {
        match self.engine.next_timer() {
            Some(t) if t <= now => Ok(Some(self.submit(now, Event::Tick).await?)),
            _ => Ok(None),
        }
    }

    async fn apply_until(&mut self, end: &str) -> Result<Vec<Applied>, LogError> {
        let mut applied = Vec::new();
        loop {
            let start = self.last_id.as_ref().map_or_else(|| "-".to_owned(), |id| format!("({id}"));
            let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(start)
                .arg(end)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut self.conn)
                .await?;
            let full = entries.len() == BATCH;
            for (id, fields) in entries {
                if let Some(a) = self.apply(&id, &fields) {
                    applied.push(a);
                }
                self.last_id = Some(id);
            }
            if !full {
                return Ok(applied);
            }
        }
    }

    fn apply(&mut self, id: &str, fields: &[String]) -> Option<Applied> {
        let field = |name: &str| fields.chunks(2).find(|kv| kv[0] == name && kv.len() == 2).map(|kv| kv[1].as_str());
        if let Some(roster) = field("roster") {
            match serde_json::from_str::<Roster>(roster) {
                Ok(r) => self.engine.set_roster(r),
                Err(_) => self.skipped += 1,
            }
            return None;
        }
        let parsed = (|| {
            let node = field("node")?.to_owned();
            let at: Millis = field("at")?.parse().ok()?;
            let event: Event = serde_json::from_str(field("event")?).ok()?;
            Some((node, at, event))
        })();
        let Some((node, at, event)) = parsed else {
            self.skipped += 1;
            return None;
        };
        let at = at.max(self.last_at);
        self.last_at = at;
        let result = self.engine.handle(at, event.clone());
        Some(Applied { id: id.to_owned(), node, at, event, result })
    }
}

/// What came of an appended event.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    /// The engine's answer to it, on every replica.
    pub result: Result<Vec<Action>, RoutingError>,
    /// Every entry applied while waiting for it, in stream order, ending with it.
    pub applied: Vec<Applied>,
}
