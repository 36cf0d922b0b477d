//! The contact centre: the routing engine driven by real time, its events
//! logged to the store, and its decisions pushed to consoles and patients.
//!
//! One [`Center`] per node. Its engine has one of two backings ([`Backing`]):
//!
//! - **Local** (the default): the [`routing::Engine`] behind a lock. Every
//!   event is applied and appended to the `routing_event` log under that
//!   lock, so the log is in engine order and a restarted node rebuilds the
//!   same state by replaying it.
//! - **Redis** (`--redis-url`): several nodes share one queue. The node's
//!   engine is a replica kept in step with one Redis stream
//!   ([`routing::redis_log::SharedEngine`]): a handler's event is appended
//!   to the stream and its answer is the engine's answer to that entry;
//!   every node applies every entry (a follower task reads the stream as it
//!   grows), and every node delivers the decisions of every entry it
//!   applies to its own readers; the node that appended an entry writes its
//!   `routing_event` row, so the store's history has each event once. The
//!   roster goes through the stream too. A (re)starting node rebuilds its
//!   replica from the stream, not from the store. While Redis cannot be
//!   reached the node stays up and routing answers 503. Each node holds a
//!   lease in Redis (`--node-lease-ms`); a node whose lease runs out is
//!   declared lost in the stream by a live one and fenced there (see
//!   [`routing::redis_log`]): its agents are paused as their console gone, so
//!   their offers move at once, and it rejoins under a new id if it still runs.
//!
//! A timer task sends `Tick` when the engine asks (with Redis every node
//! does; a duplicate finds nothing due). Decisions go out as [`Update`]s on
//! a broadcast channel that the server-sent event streams of agents and
//! patients filter. The engine's decisions reach each node's channel from
//! the entries it applies (so a node that dies after appending loses no
//! offer: the others deliver it). The updates handlers make (connected,
//! ended, messages, captions) are also published on a Redis channel, and each
//! node feeds the other nodes' into its own broadcast channel; that relay is
//! at most once, and what a reader missed comes back in the snapshot it gets
//! on reconnecting. When a node's replica is rebuilt its readers are sent
//! [`Update::Resync`], which their streams turn into a fresh snapshot.
//!
//! ## Layout
//! - this module: [`Center`], [`CenterError`], and the handling, logging and
//!   publishing of events whichever the backing;
//! - `update`: [`Update`], what consoles and patients are told;
//! - `roster`: the routing roster read from the store;
//! - `local`: the Local backing's restore from the `routing_event` log;
//! - `presence`: which agents have a console listening, and pausing those who have none;
//! - `redis`: the Redis backing (the replica, its follower, the relay of updates).

mod local;
mod presence;
mod redis;
mod roster;
mod update;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use routing::redis_log::Applied;
use routing::{Action, AgentId, Engine, Event, RoutingConfig, RoutingError};
use tokio::sync::{Mutex, Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use self::presence::{Presence, PresenceGuard};
pub use self::redis::RedisRouting;
use self::redis::{RedisBacking, Relayed, publish_updates};
use crate::store::{RecordWrite, RoutingEventRow, Store, StoreError};
pub use roster::{roster_and_shift_names_around, roster_around};
pub use update::Update;
use update::at;

/// An agent as the engine sees them now: [`Center::agent_view`].
#[derive(Clone, Debug, PartialEq)]
pub struct AgentView {
    pub seat: i64,
    pub state: routing::AgentState,
    pub ringing: Option<routing::Ringing>,
    /// The contacts they are connected to.
    pub handling: Vec<routing::ContactId>,
}

/// Where the routing state lives.
enum Backing {
    /// This process only: the engine behind a lock; events logged to the
    /// store under it and replayed from the store at start. `None` after an
    /// event the engine took could not be logged: that engine is dropped
    /// (none of its decisions went out) and rebuilt from the log before the
    /// next event, so the engine never holds what the log does not.
    Local(Box<(Mutex<Option<Engine>>, RoutingConfig)>),
    /// Shared by several nodes through Redis.
    Redis(Box<RedisBacking>),
}

/// Why the contact centre did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum CenterError {
    /// The engine refused it (the state is unchanged).
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// The shared routing state cannot be reached (Redis is down or not yet connected).
    #[error("routing is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

struct Inner {
    store: Store,
    node: String,
    backing: Backing,
    updates: broadcast::Sender<Update>,
    wake: Notify,
    /// `CARELINE_FAILPOINT`, for the tests that kill a node at a given step.
    failpoint: Option<String>,
}

/// The contact centre of this node. Cheap to clone.
#[derive(Clone)]
pub struct Center {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Center").field("node", &self.inner.node).finish()
    }
}

fn describe(event: &Event) -> (String, Option<String>, Option<i64>) {
    let kind = event.kind().to_owned();
    let (contact, agent) = match event {
        Event::ContactArrived(c) => (Some(c.id.0.clone()), None),
        Event::Login { agent, .. }
        | Event::Logout { agent }
        | Event::Ready { agent }
        | Event::Pause { agent, .. }
        | Event::WrapUpDone { agent } => (None, Some(agent.0)),
        Event::Accept { agent, contact }
        | Event::Decline { agent, contact }
        | Event::Leave { agent, contact }
        | Event::CallbackFailed { agent, contact } => (Some(contact.0.clone()), Some(agent.0)),
        Event::Abandon { contact }
        | Event::Escalate { contact, .. }
        | Event::RequestCallback { contact }
        | Event::End { contact } => (Some(contact.0.clone()), None),
        Event::Tick => (None, None),
    };
    (kind, contact, agent)
}

impl Center {
    /// Builds the engine from the roster and replays the last day's logged
    /// events, then drives its timers until `shutdown`. With `redis`, the
    /// engine is a replica of the shared stream instead (see the module docs):
    /// it connects now if it can, else keeps trying in the background.
    pub async fn start(
        store: Store,
        node: String,
        cfg: RoutingConfig,
        redis: Option<RedisRouting>,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> crate::store::Result<Center> {
        let (updates, _) = broadcast::channel(1024);
        let backing = match redis {
            None => Backing::Local(Box::new((Mutex::new(Some(Self::restore(&store, cfg.clone()).await?)), cfg))),
            Some(r) => {
                let (outbox, rx) = mpsc::unbounded_channel();
                let backing = RedisBacking {
                    stream: format!("{}:routing", r.prefix),
                    channel: format!("{}:updates", r.prefix),
                    url: r.url,
                    cfg,
                    shared: Mutex::new(None),
                    joined: std::sync::Mutex::new(None),
                    lease: r.lease,
                    outbox,
                };
                tasks.spawn(publish_updates(backing.url.clone(), backing.channel.clone(), rx, shutdown.clone()));
                Backing::Redis(Box::new(backing))
            }
        };
        let center = Center {
            inner: Arc::new(Inner {
                store,
                node,
                backing,
                updates,
                wake: Notify::new(),
                failpoint: std::env::var("CARELINE_FAILPOINT").ok().filter(|p| !p.is_empty()),
            }),
        };
        if let Backing::Redis(r) = &center.inner.backing {
            if let Err(e) = center.connect_replica().await {
                tracing::warn!(error = %e, "routing: Redis not reachable; retrying in the background");
            }
            tasks.spawn(center.clone().relay_updates(r.url.clone(), r.channel.clone(), shutdown.clone()));
            tasks.spawn(center.clone().follow(shutdown.clone()));
            tasks.spawn(center.clone().keep_lease(shutdown.clone()));
        }
        tasks.spawn(center.clone().drive(shutdown));
        Ok(center)
    }

    /// Whether this node's routing can take events (with Redis: its replica is connected).
    pub async fn ready(&self) -> bool {
        match &self.inner.backing {
            Backing::Local(local) => local.0.lock().await.is_some(),
            Backing::Redis(r) => r.shared.lock().await.is_some(),
        }
    }

    /// Applies `event` now: logs it, and publishes what the engine decided.
    pub async fn handle(&self, event: Event) -> Result<Vec<Action>, CenterError> {
        self.handle_recording(event, RecordWrite::Nothing).await
    }

    /// Applies `event` now and makes the contact record's change that goes
    /// with it, only if the engine accepts the event. With the `Local`
    /// backing the change is written in the same transaction as the event's
    /// log row (write-ahead: both or neither, then the decisions go out), so
    /// after any crash the records agree with the engine restored from the
    /// log. With Redis the stream is the routing state: the change travels
    /// in the event's entry, and every node that applies the entry writes it
    /// with the event's history row, keyed by the entry, once whichever
    /// comes first (`Store::log_routing_entry`); so an entry whose node died
    /// right after appending it is still recorded. This node's write is
    /// done before the answer; its failure is the request's error.
    pub async fn handle_recording(&self, event: Event, write: RecordWrite) -> Result<Vec<Action>, CenterError> {
        let now = Utc::now();
        let actions = match &self.inner.backing {
            Backing::Local(local) => {
                let mut guard = local.0.lock().await;
                if guard.is_none() {
                    let engine = Self::restore(&self.inner.store, local.1.clone()).await.map_err(|e| {
                        CenterError::Unavailable(format!("routing is being rebuilt from the log, which failed: {e}"))
                    })?;
                    tracing::info!("routing: the engine was rebuilt from the log");
                    *guard = Some(engine);
                }
                let Some(engine) = guard.as_mut() else { unreachable!("rebuilt above") };
                let actions = engine.handle(now.timestamp_millis(), event.clone())?;
                if (!matches!(event, Event::Tick) || !actions.is_empty() || write != RecordWrite::Nothing)
                    && let Err(e) = self.log(now, &event, &write).await
                {
                    // What the engine decided is not in the log: drop that engine before any of
                    // its decisions goes out; the next event rebuilds it from the log.
                    *guard = None;
                    if let StoreError::Refused(why) = e {
                        // The record does not allow the change (it moved on): nothing was written.
                        tracing::warn!(%why, "routing event refused by the contact record; the engine will be rebuilt");
                        return Err(CenterError::Store(StoreError::Refused(why)));
                    }
                    tracing::error!(error = %e, "routing event not logged; the engine will be rebuilt from the log");
                    return Err(CenterError::Unavailable(format!("the routing event could not be recorded: {e}")));
                }
                drop(guard);
                for a in &actions {
                    self.publish(Update::from(a));
                }
                actions
            }
            Backing::Redis(r) => {
                let mut guard = r.shared.lock().await;
                let Some(shared) = guard.as_mut() else {
                    return Err(CenterError::Unavailable("not connected to Redis".into()));
                };
                // The record change travels in the entry: whichever node carries it out first writes it.
                let record = (write != RecordWrite::Nothing)
                    .then(|| serde_json::to_string(&write).expect("record changes serialize"));
                let kind = event.kind();
                let submitted = match shared.submit_with(now.timestamp_millis(), event, record.as_deref()).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "routing: the replica will be rebuilt");
                        *guard = None;
                        return Err(CenterError::Unavailable(e.to_string()));
                    }
                };
                self.failpoint("after-append", kind);
                let own = submitted.applied.last().map(|a| a.id.clone());
                let written = self.carry_out(&submitted.applied, own.as_deref()).await;
                self.rejoin_if_fenced(&mut guard);
                drop(guard);
                let actions = submitted.result?;
                written?;
                actions
            }
        };
        self.inner.wake.notify_one();
        Ok(actions)
    }

    /// Appends `event`, applied at `at`, to the store's history.
    async fn log(&self, at: DateTime<Utc>, event: &Event, write: &RecordWrite) -> crate::store::Result<()> {
        let (kind, contact_id, agent_id) = describe(event);
        let row = RoutingEventRow {
            at,
            kind,
            contact_id,
            agent_id,
            body: serde_json::to_string(event).expect("events serialize"),
        };
        self.inner.store.log_routing_event(&self.inner.node, &row, write).await
    }

    /// Carries out the entries among `applied` (with Redis), on every node:
    /// logs each accepted event to the store's history with the record
    /// change its appender attached, keyed by the entry (whichever node comes
    /// first writes it; the others find it written and change nothing), and
    /// delivers its decisions to this node's readers. So an entry whose
    /// appender died right after appending is still carried out. Returns the
    /// outcome of writing the entry `own` (the event a handler of this node
    /// waits on); the others' failures are logged here. Called under the
    /// replica's lock, so rows and updates are in stream order.
    async fn carry_out(&self, applied: &[Applied], own: Option<&str>) -> crate::store::Result<()> {
        let mut mine = Ok(());
        for a in applied {
            let Ok(actions) = &a.result else { continue };
            if matches!(a.event, Event::Tick) && actions.is_empty() {
                continue;
            }
            let write = match a.record.as_deref().map(serde_json::from_str::<RecordWrite>) {
                None => RecordWrite::Nothing,
                Some(Ok(w)) => w,
                // Another version's change: the event is still logged and its decisions
                // delivered (the stream is the routing state); the record stays as it was.
                Some(Err(e)) => {
                    tracing::error!(error = %e, entry = %a.id, "a routing entry's record change is not understood; not written");
                    RecordWrite::Nothing
                }
            };
            let (kind, contact_id, agent_id) = describe(&a.event);
            let row = RoutingEventRow {
                at: at(a.at),
                kind,
                contact_id,
                agent_id,
                body: serde_json::to_string(&a.event).expect("events serialize"),
            };
            let logged = self.inner.store.log_routing_entry(&a.node, &a.id, &row, &write).await.map(|_| ());
            if own == Some(a.id.as_str()) {
                mine = logged;
            } else if let Err(e) = logged {
                // Not this node's request: nobody here waits on it. Every node that applies
                // the entry tries it, so a refused change is logged on each as a warning.
                match e {
                    StoreError::Refused(why) => {
                        tracing::warn!(%why, entry = %a.id, "a routing entry's record change was refused")
                    }
                    e => tracing::error!(error = %e, entry = %a.id, "a routing entry was not written to the store"),
                }
            }
            for action in actions {
                let _ = self.inner.updates.send(Update::from(action));
            }
        }
        mine
    }

    /// A test's fault point: with `CARELINE_FAILPOINT=STEP:KIND` (e.g.
    /// `after-append:accept`), the process aborts at `STEP` of an event of
    /// `KIND`, as a machine that dies there (nothing flushed or handed over).
    fn failpoint(&self, step: &str, kind: &str) {
        if let Some(point) = &self.inner.failpoint
            && point.split_once(':') == Some((step, kind))
        {
            eprintln!("careline: fault point {point} reached; aborting");
            std::process::abort();
        }
    }

    /// Sends an update a handler made to whoever listens, on this node and
    /// (with Redis) on the others. The engine's decisions do not come
    /// through here: every node delivers those from the entries it applies.
    pub fn publish(&self, update: Update) {
        if let Backing::Redis(r) = &self.inner.backing {
            let relayed = Relayed { node: self.inner.node.clone(), update: update.clone() };
            let _ = r.outbox.send(serde_json::to_string(&relayed).expect("updates serialize"));
        }
        let _ = self.inner.updates.send(update);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.inner.updates.subscribe()
    }

    /// Runs `f` on this node's engine (with Redis: its replica, as of the
    /// last entry applied); `None` while the replica is not connected.
    async fn read<T>(&self, f: impl FnOnce(&Engine) -> T) -> Option<T> {
        match &self.inner.backing {
            Backing::Local(local) => local.0.lock().await.as_ref().map(f),
            Backing::Redis(r) => r.shared.lock().await.as_ref().map(|s| f(s.engine())),
        }
    }

    /// A copy of the whole routing state (`None` while it is being rebuilt
    /// or, with Redis, not yet connected): what restore tests compare.
    pub async fn engine(&self) -> Option<routing::Engine> {
        self.read(routing::Engine::clone).await
    }

    /// Every logged-in agent with their seat and state.
    pub async fn agents(&self) -> Vec<(i64, i64, routing::AgentState)> {
        self.read(|e| e.agents().map(|(a, s, st)| (a.0, s.0, st.clone())).collect()).await.unwrap_or_default()
    }

    /// Where a waiting contact was last told it stands, as the update it was
    /// told in (for a page that subscribes after the announcement).
    pub async fn position(&self, contact: &str) -> Option<Update> {
        let id = routing::ContactId(contact.to_owned());
        let (position, wait) = self.read(|e| e.announced(&id)).await.flatten()?;
        Some(Update::Position { contact: contact.to_owned(), position, estimated_wait_seconds: wait / 1000 })
    }

    /// An agent's seat, state, ringing offer and connected contacts, read at
    /// once (one engine state); `None` when not logged in.
    pub async fn agent_view(&self, agent: i64) -> Result<Option<AgentView>, CenterError> {
        let id = AgentId(agent);
        self.read(|e| {
            let (_, seat, state) = e.agents().find(|(a, _, _)| *a == id)?;
            Some(AgentView { seat: seat.0, state: state.clone(), ringing: e.ringing(id), handling: e.handling(id) })
        })
        .await
        .ok_or_else(|| CenterError::Unavailable("the routing state is being rebuilt or not yet connected".into()))
    }

    /// The state of an agent, if logged in.
    pub async fn agent_state(&self, agent: i64) -> Option<routing::AgentState> {
        self.read(|e| e.agent_state(AgentId(agent)).cloned()).await.flatten()
    }

    /// Sends `Tick` whenever the engine has a timer due; rebuilds the roster every hour.
    async fn drive(self, shutdown: CancellationToken) {
        let mut roster_at = Utc::now();
        loop {
            let wait = match self.read(Engine::next_timer).await {
                Some(next) => next
                    .map(|t| StdDuration::from_millis((t - Utc::now().timestamp_millis()).clamp(0, 60_000) as u64))
                    .unwrap_or(StdDuration::from_secs(60)),
                // Being rebuilt (local) or not connected (Redis): try again soon.
                None => StdDuration::from_secs(1),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.wake.notified() => continue,
                _ = tokio::time::sleep(wait) => {}
            }
            if Utc::now() - roster_at > Duration::hours(1) {
                match self.refresh_roster().await {
                    Ok(()) => roster_at = Utc::now(),
                    Err(e) => tracing::warn!(error = %e, "roster refresh"),
                }
            }
            match &self.inner.backing {
                Backing::Local(_) => {
                    if let Err(e) = self.handle(Event::Tick).await {
                        tracing::warn!(error = %e, "routing tick");
                    }
                }
                // Only when the replica has a timer due: every node ticks, a duplicate finds nothing due.
                Backing::Redis(r) => {
                    let mut guard = r.shared.lock().await;
                    let Some(shared) = guard.as_mut() else { continue };
                    match shared.tick(Utc::now().timestamp_millis()).await {
                        // Nobody waits on a tick: its writes' failures are logged in `carry_out`.
                        Ok(Some(submitted)) => {
                            let _ = self.carry_out(&submitted.applied, None).await;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "routing tick: the replica will be rebuilt");
                            *guard = None;
                        }
                    }
                    self.rejoin_if_fenced(&mut guard);
                }
            }
        }
    }

    /// Re-reads the roster now (after staff or rota changes). With Redis it
    /// goes through the stream, so every replica changes it at the same entry.
    pub async fn refresh_roster(&self) -> Result<(), CenterError> {
        let now = Utc::now();
        let roster = roster_around(&self.inner.store, now).await?;
        match &self.inner.backing {
            Backing::Local(local) => {
                // Without an engine (being rebuilt) there is nothing to change: the rebuild reads the roster anew.
                if let Some(engine) = local.0.lock().await.as_mut() {
                    engine.set_roster(roster);
                }
            }
            Backing::Redis(r) => {
                let mut guard = r.shared.lock().await;
                let Some(shared) = guard.as_mut() else {
                    return Err(CenterError::Unavailable("not connected to Redis".into()));
                };
                match shared.set_roster(now.timestamp_millis(), &roster).await {
                    Ok(applied) => {
                        // The roster entry has no row; the others' failures are logged there.
                        let _ = self.carry_out(&applied, None).await;
                        self.rejoin_if_fenced(&mut guard);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "routing: Redis failed; the replica will be rebuilt");
                        *guard = None;
                        return Err(CenterError::Unavailable(e.to_string()));
                    }
                }
            }
        }
        self.inner.wake.notify_one();
        Ok(())
    }
}
