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
//! stream ([`SharedEngine::submit`]). Each node appends the events of the
//! consoles and timers it serves ([`Applied::node`] says whose an entry is),
//! and every replica hands back every entry it applies, with what the
//! appender attached to it ([`Applied::record`]), so any node can carry an
//! entry out: the server keys those effects by [`Applied::id`], so doing
//! them on every node changes nothing twice. Ticks go through the stream
//! too: a duplicate finds nothing due.
//!
//! The roster goes through the stream too ([`SharedEngine::set_roster`]), so
//! every replica changes it at the same point of the order; a replica that
//! starts from an empty roster and applies the stream ends where the others are.
//!
//! Instants are the appending node's clock, made monotone in stream order (an
//! entry stamped before the one ahead of it is applied at that one's instant),
//! so nodes whose clocks differ slightly still agree. Nothing here reads a clock.
//!
//! ## Leases and fencing
//! A node joins under a fresh id ([`SharedEngine::join`]: its name and an
//! incarnation number from `INCR`) and keeps a short lease in Redis
//! ([`renew_lease`]) before it appends anything. When a live node finds the
//! lease of a node that appended entries gone ([`lease_alive`]), it appends
//! a `lost` entry for it ([`SharedEngine::lose`]). From that entry on every
//! replica refuses the lost node's later entries (it is *fenced*), and pauses
//! the agents that node last acted for, with [`CONSOLE_GONE`], so their offers
//! are withdrawn and re-offered at once (they keep the contacts they hold; a
//! console that returns through another node makes them ready there). The
//! fence is in the log, not in the lease: a lease only says a node is alive,
//! and a paused or cut-off node can still append after its lease ran out,
//! but every replica applies the stream in one order, so whatever it appends
//! after its `lost` entry is refused everywhere alike. A fenced node that is
//! still running learns it from its own `lost` entry ([`SharedEngine::fenced`])
//! or from its refused submit ([`LogError::Fenced`]) and rejoins under a new id.
//! What a replica does with each entry is [`Replica`]: pure, no Redis.
//!
//! Not built yet: trimming the stream (it grows until deleted; a node that
//! joins replays all of it) and snapshots.

use std::collections::{BTreeMap, BTreeSet};

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
    /// This node was declared lost (its lease ran out) and its entries are
    /// refused by every replica: it must rejoin under a new id.
    #[error("this node ({0}) was declared lost by the others; its entries are refused")]
    Fenced(String),
}

/// One stream entry as applied to this replica.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The stream entry ID; for the pauses a `lost` entry makes, `{entry ID}.{agent}`,
    /// so every `Applied` has its own (the key its effects are written under).
    pub id: String,
    /// The node that appended it: only that node carries out its actions.
    pub node: String,
    /// The instant it was applied at.
    pub at: Millis,
    pub event: Event,
    pub result: Result<Vec<Action>, RoutingError>,
    /// What the appending node attached to the event for whoever carries it
    /// out (opaque here: the server's record change).
    pub record: Option<String>,
}

/// What a replica does with each stream entry, in stream order: pure (the
/// same entries give the same state on every node), so it is tested without Redis.
#[derive(Clone, Debug, PartialEq)]
pub struct Replica {
    engine: Engine,
    /// The instant of the last entry applied (instants are made monotone).
    last_at: Millis,
    /// Nodes that appended an entry this replica applied, and are not fenced.
    nodes: BTreeSet<String>,
    /// Nodes declared lost: their later entries are refused.
    fenced: BTreeSet<String>,
    /// Per logged-in agent, the node that last acted for them (their console's node).
    homes: BTreeMap<AgentId, String>,
    skipped: u64,
    refused: u64,
}

impl Replica {
    pub fn new(roster: Roster, cfg: RoutingConfig) -> Replica {
        Replica {
            engine: Engine::new(roster, cfg),
            last_at: Millis::MIN,
            nodes: BTreeSet::new(),
            fenced: BTreeSet::new(),
            homes: BTreeMap::new(),
            skipped: 0,
            refused: 0,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Nodes that have appended entries and are not fenced: the ones whose leases live nodes watch.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(String::as_str)
    }

    /// Whether `node` was declared lost.
    pub fn is_fenced(&self, node: &str) -> bool {
        self.fenced.contains(node)
    }

    /// Entries that were not events this version understands, skipped (by every replica alike).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Entries refused because their node had been fenced.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Applies one entry (its fields as `XRANGE` returns them, name and
    /// value in turn). Returns what it did: an event's answer; for a `lost`
    /// entry, one `Pause` per agent of the lost node; nothing for a roster,
    /// an entry of a fenced node, or one this version does not understand.
    pub fn apply(&mut self, id: &str, fields: &[String]) -> Vec<Applied> {
        let field = |name: &str| fields.chunks(2).find(|kv| kv.len() == 2 && kv[0] == name).map(|kv| kv[1].as_str());
        let Some(node) = field("node") else {
            self.skipped += 1;
            return Vec::new();
        };
        if self.fenced.contains(node) {
            self.refused += 1;
            return Vec::new();
        }
        let node = node.to_owned();
        if let Some(roster) = field("roster") {
            match serde_json::from_str::<Roster>(roster) {
                Ok(r) => {
                    self.engine.set_roster(r);
                    self.nodes.insert(node);
                }
                Err(_) => self.skipped += 1,
            }
            return Vec::new();
        }
        let Some(at) = field("at").and_then(|a| a.parse::<Millis>().ok()) else {
            self.skipped += 1;
            return Vec::new();
        };
        let at = at.max(self.last_at);
        if let Some(lost) = field("lost") {
            self.last_at = at;
            self.nodes.insert(node.clone());
            return self.fence(id, &node, at, lost);
        }
        let Some(event) = field("event").and_then(|e| serde_json::from_str::<Event>(e).ok()) else {
            self.skipped += 1;
            return Vec::new();
        };
        self.last_at = at;
        self.nodes.insert(node.clone());
        let result = self.engine.handle(at, event.clone());
        if result.is_ok() {
            self.note_home(&event, &node);
        }
        let record = field("record").map(str::to_owned);
        vec![Applied { id: id.to_owned(), node, at, event, result, record }]
    }

    /// Who acts for an agent: the node of their last accepted event.
    fn note_home(&mut self, event: &Event, node: &str) {
        match event {
            Event::Logout { agent } => {
                self.homes.remove(agent);
            }
            Event::Login { agent, .. }
            | Event::Ready { agent }
            | Event::Pause { agent, .. }
            | Event::WrapUpDone { agent }
            | Event::Accept { agent, .. }
            | Event::Decline { agent, .. }
            | Event::Leave { agent, .. }
            | Event::CallbackFailed { agent, .. } => {
                self.homes.insert(*agent, node.to_owned());
            }
            _ => {}
        }
    }

    /// `lost` is declared lost by `by`: fenced from now on, and each agent it
    /// acted for is paused as their console gone (a repeat changes nothing).
    fn fence(&mut self, id: &str, by: &str, at: Millis, lost: &str) -> Vec<Applied> {
        if !self.fenced.insert(lost.to_owned()) {
            return Vec::new();
        }
        self.nodes.remove(lost);
        let agents: Vec<AgentId> = self.homes.iter().filter(|(_, n)| n.as_str() == lost).map(|(a, _)| *a).collect();
        let mut out = Vec::new();
        for agent in agents {
            let paused =
                matches!(self.engine.agent_state(agent), Some(AgentState::Paused { reason }) if reason == CONSOLE_GONE);
            if self.engine.agent_state(agent).is_none() || paused {
                continue;
            }
            let event = Event::Pause { agent, reason: CONSOLE_GONE.into() };
            let result = self.engine.handle(at, event.clone());
            if result.is_ok() {
                self.note_home(&event, by);
            }
            let id = format!("{id}.{}", agent.0);
            out.push(Applied { id, node: by.to_owned(), at, event, result, record: None });
        }
        out
    }
}

/// One node's replica of the engine, kept in step with the shared stream.
pub struct SharedEngine {
    conn: MultiplexedConnection,
    key: String,
    node: String,
    replica: Replica,
    /// The last entry applied.
    last_id: Option<String>,
}

/// The Redis key of `node`'s lease on the stream `key`.
pub fn lease_key(key: &str, node: &str) -> String {
    format!("{key}:lease:{node}")
}

/// Takes or renews `node`'s lease for `ttl_ms`. `Ok(false)`: the lease had
/// run out before this renewal (other nodes may have declared it lost; it
/// is taken again, but the node should rejoin under a new id).
pub async fn renew_lease(
    conn: &mut MultiplexedConnection,
    key: &str,
    node: &str,
    ttl_ms: u64,
) -> Result<bool, LogError> {
    let renewed: Option<String> =
        redis::cmd("SET").arg(lease_key(key, node)).arg(1).arg("PX").arg(ttl_ms).arg("XX").query_async(conn).await?;
    if renewed.is_some() {
        return Ok(true);
    }
    let _: Option<String> =
        redis::cmd("SET").arg(lease_key(key, node)).arg(1).arg("PX").arg(ttl_ms).query_async(conn).await?;
    Ok(false)
}

/// Whether `node`'s lease on the stream `key` is held.
pub async fn lease_alive(conn: &mut MultiplexedConnection, key: &str, node: &str) -> Result<bool, LogError> {
    let n: i64 = redis::cmd("EXISTS").arg(lease_key(key, node)).query_async(conn).await?;
    Ok(n == 1)
}

/// Gives up `node`'s lease (a clean stop): the other nodes declare it lost at their next check.
pub async fn drop_lease(conn: &mut MultiplexedConnection, key: &str, node: &str) -> Result<(), LogError> {
    let _: i64 = redis::cmd("DEL").arg(lease_key(key, node)).query_async(conn).await?;
    Ok(())
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
        Self::start(conn, key, node.to_owned(), roster, cfg).await
    }

    /// Joins the stream `key` under a fresh id, `{name}~{n}` (`n` from `INCR
    /// {key}:incarnation`), takes that id's lease for `ttl_ms` (before anything
    /// is appended under it), and applies what the stream holds. A node that
    /// was fenced joins again this way.
    pub async fn join(
        url: &str,
        key: &str,
        name: &str,
        ttl_ms: u64,
        roster: Roster,
        cfg: RoutingConfig,
    ) -> Result<SharedEngine, LogError> {
        let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
        let n: u64 = redis::cmd("INCR").arg(format!("{key}:incarnation")).query_async(&mut conn).await?;
        let node = format!("{name}~{n}");
        renew_lease(&mut conn, key, &node, ttl_ms).await?;
        Self::start(conn, key, node, roster, cfg).await
    }

    async fn start(
        conn: MultiplexedConnection,
        key: &str,
        node: String,
        roster: Roster,
        cfg: RoutingConfig,
    ) -> Result<SharedEngine, LogError> {
        let mut shared =
            SharedEngine { conn, key: key.to_owned(), node, replica: Replica::new(roster, cfg), last_id: None };
        shared.sync().await?;
        Ok(shared)
    }

    /// This replica (as of the last entry applied).
    pub fn engine(&self) -> &Engine {
        self.replica.engine()
    }

    /// What this replica knows of the nodes, besides the engine.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// This node's id on the stream.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether this node has been declared lost (it must rejoin under a new id).
    pub fn fenced(&self) -> bool {
        self.replica.is_fenced(&self.node)
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
        self.replica.skipped()
    }

    /// Appends one entry (`kind` is `event`, `roster` or `lost`, with an
    /// optional `record` field) stamped with this node and `at`; returns its stream ID.
    async fn append(&mut self, at: Millis, kind: &str, body: String, record: Option<&str>) -> Result<String, LogError> {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&self.key).arg("*").arg("node").arg(&self.node).arg("at").arg(at).arg(kind).arg(body);
        if let Some(record) = record {
            xadd.arg("record").arg(record);
        }
        Ok(xadd.query_async(&mut self.conn).await?)
    }

    /// Appends `event` at `at`, then applies the stream up to and including
    /// it. Returns the engine's answer to it and every entry applied on the
    /// way (other nodes' entries that came before it, and this one, last).
    pub async fn submit(&mut self, at: Millis, event: Event) -> Result<Submitted, LogError> {
        self.submit_with(at, event, None).await
    }

    /// [`SharedEngine::submit`], with `record` attached to the entry: every
    /// replica's [`Applied::record`], so any node can carry the entry out
    /// (its appender may die right after appending).
    pub async fn submit_with(&mut self, at: Millis, event: Event, record: Option<&str>) -> Result<Submitted, LogError> {
        let body = serde_json::to_string(&event).expect("events serialize");
        let id = self.append(at, "event", body, record).await?;
        let applied = self.apply_until(&id).await?;
        let result = match applied.last() {
            Some(a) if a.id == id && a.node == self.node => a.result.clone(),
            _ if self.fenced() => return Err(LogError::Fenced(self.node.clone())),
            _ => return Err(LogError::Lost(id)),
        };
        Ok(Submitted { result, applied })
    }

    /// Appends a new roster, then applies the stream up to and including it:
    /// every replica replaces its roster at that entry. Returns the entries
    /// applied on the way (not the roster entry itself, which has no answer).
    pub async fn set_roster(&mut self, at: Millis, roster: &Roster) -> Result<Vec<Applied>, LogError> {
        let body = serde_json::to_string(roster).expect("rosters serialize");
        let id = self.append(at, "roster", body, None).await?;
        self.apply_until(&id).await
    }

    /// Declares `node` lost (its lease is gone), then applies the stream up to
    /// and including that entry. Returns the entries applied on the way,
    /// ending with the pauses of the lost node's agents (none if another
    /// node declared it first).
    pub async fn lose(&mut self, at: Millis, node: &str) -> Result<Vec<Applied>, LogError> {
        let id = self.append(at, "lost", node.to_owned(), None).await?;
        self.apply_until(&id).await
    }

    /// Applies every entry appended since the last one applied.
    pub async fn sync(&mut self) -> Result<Vec<Applied>, LogError> {
        self.apply_until("+").await
    }

    /// Sends [`Event::Tick`] if a timer of the replica is due at `now`.
    pub async fn tick(&mut self, now: Millis) -> Result<Option<Submitted>, LogError> {
        match self.engine().next_timer() {
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
                applied.extend(self.replica.apply(&id, &fields));
                self.last_id = Some(id);
            }
            if !full {
                return Ok(applied);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3_600_000;

    fn roster() -> Roster {
        Roster {
            agents: (1..=3)
                .map(|i| AgentProfile {
                    id: AgentId(i),
                    role: Role::Operator,
                    languages: vec!["hi".into()],
                    specialty: None,
                })
                .collect(),
            seats: (1..=3).map(|i| Seat { id: SeatId(i), peak: false }).collect(),
            shifts: vec![Shift {
                role: Role::Operator,
                start: 0,
                end: 24 * H,
                peak: false,
                agents: (1..=3).map(AgentId).collect(),
            }],
        }
    }

    fn event(node: &str, at: Millis, event: &Event) -> Vec<String> {
        ["node", node, "at", &at.to_string(), "event", &serde_json::to_string(event).unwrap()]
            .map(str::to_owned)
            .to_vec()
    }

    fn lost(by: &str, at: Millis, node: &str) -> Vec<String> {
        ["node", by, "at", &at.to_string(), "lost", node].map(str::to_owned).to_vec()
    }

    fn chat(id: &str) -> Event {
        Event::ContactArrived(NewContact {
            id: ContactId(id.into()),
            media: Media::Chat,
            language: "hi".into(),
            emergency: false,
            specialty: None,
        })
    }

    /// Agent 1 is on node a, agent 2 on node b; both log in and get ready.
    fn two_nodes() -> (Replica, u64) {
        let mut r = Replica::new(roster(), RoutingConfig::default());
        let mut n = 0;
        for (node, agent) in [("a", 1), ("b", 2)] {
            for e in
                [Event::Login { agent: AgentId(agent), seat: SeatId(agent) }, Event::Ready { agent: AgentId(agent) }]
            {
                n += 1;
                let applied = r.apply(&format!("{n}-0"), &event(node, 7 * H, &e));
                assert!(applied[0].result.is_ok(), "{applied:?}");
            }
        }
        (r, n)
    }

    fn offered_to(r: &Replica, contact: &str) -> Option<AgentId> {
        r.engine().agents().map(|(a, _, _)| a).find(|a| r.engine().ringing(*a).is_some_and(|g| g.contact.0 == contact))
    }

    #[test]
    fn a_lost_node_s_agents_are_paused_and_their_offer_moves_to_a_live_node() {
        let (mut r, _) = two_nodes();
        // Agent 2 (node b) is on a break, so the chat rings agent 1 (node a); then agent 2 is back.
        r.apply("10-0", &event("b", 7 * H + 1, &Event::Pause { agent: AgentId(2), reason: "tea".into() }));
        r.apply("11-0", &event("b", 7 * H + 2, &chat("c1")));
        assert_eq!(offered_to(&r, "c1"), Some(AgentId(1)));
        r.apply("12-0", &event("b", 7 * H + 3, &Event::Ready { agent: AgentId(2) }));

        let applied = r.apply("13-0", &lost("b", 7 * H + 4, "a"));
        assert_eq!(applied.len(), 1, "{applied:?}");
        assert_eq!(applied[0].event, Event::Pause { agent: AgentId(1), reason: CONSOLE_GONE.into() });
        assert_eq!(applied[0].node, "b", "the declaring node carries it out");
        let actions = applied[0].result.as_ref().unwrap();
        assert!(
            actions.contains(&Action::Withdraw { contact: ContactId("c1".into()), agent: AgentId(1) }),
            "{actions:?}"
        );
        assert_eq!(offered_to(&r, "c1"), Some(AgentId(2)), "re-offered at once to the live node's agent");
        assert!(r.is_fenced("a") && !r.nodes().any(|n| n == "a"));
    }

    #[test]
    fn after_its_lost_entry_every_entry_of_the_fenced_node_is_refused_alike() {
        let (mut r, _) = two_nodes();
        r.apply("10-0", &lost("b", 7 * H + 1, "a"));
        let before = r.clone();
        // The fenced node, still running, appends an accept, a contact and a roster.
        assert!(r.apply("11-0", &event("a", 7 * H + 2, &chat("late"))).is_empty());
        assert!(r.apply("12-0", &event("a", 7 * H + 3, &Event::Ready { agent: AgentId(1) })).is_empty());
        let roster_entry =
            ["node", "a", "roster", &serde_json::to_string(&Roster::default()).unwrap()].map(str::to_owned).to_vec();
        assert!(r.apply("13-0", &roster_entry).is_empty());
        assert_eq!(r.refused(), 3);
        assert_eq!(r.engine(), before.engine(), "nothing of a fenced node changes the routing state");
        // A repeated declaration (another node saw the same lease gone) changes nothing.
        assert!(r.apply("14-0", &lost("c", 7 * H + 4, "a")).is_empty());
        assert_eq!(r.engine(), before.engine());
        // Its agent comes back through node b and is ready again.
        let back = r.apply("15-0", &event("b", 7 * H + 5, &Event::Ready { agent: AgentId(1) }));
        assert!(back[0].result.is_ok(), "{back:?}");
    }

    #[test]
    fn an_agent_who_moved_to_another_node_is_not_paused_with_the_node_they_left() {
        let (mut r, _) = two_nodes();
        // Agent 1's console moved to node b: node a paused them as gone, node b made them ready.
        r.apply("10-0", &event("a", 7 * H + 1, &Event::Pause { agent: AgentId(1), reason: CONSOLE_GONE.into() }));
        r.apply("11-0", &event("b", 7 * H + 2, &Event::Ready { agent: AgentId(1) }));
        assert!(r.apply("12-0", &lost("b", 7 * H + 3, "a")).is_empty());
        assert!(matches!(r.engine().agent_state(AgentId(1)), Some(AgentState::Idle { .. })));
    }

    #[test]
    fn replicas_that_apply_the_same_entries_with_fences_agree() {
        let (mut r, _) = two_nodes();
        let mut other = two_nodes().0;
        let entries = [
            event("a", 7 * H + 1, &chat("c1")),
            event("b", 7 * H + 2, &chat("c2")),
            lost("b", 7 * H + 3, "a"),
            event("a", 7 * H + 4, &Event::Accept { agent: AgentId(1), contact: ContactId("c1".into()) }),
            event("b", 7 * H + 5, &chat("c3")),
        ];
        for (i, e) in entries.iter().enumerate() {
            let id = format!("{}-0", 20 + i);
            assert_eq!(r.apply(&id, e), other.apply(&id, e));
        }
        assert_eq!(r, other);
    }
}
