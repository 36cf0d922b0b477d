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
//!   grows); the node that appended an entry carries out its actions and
//!   writes its `routing_event` row, so the store's history has each event
//!   once. The roster goes through the stream too. A (re)starting node
//!   rebuilds its replica from the stream, not from the store. While Redis
//!   cannot be reached the node stays up and routing answers 503.
//!
//! A timer task sends `Tick` when the engine asks (with Redis every node
//! does; a duplicate finds nothing due). Decisions go out as [`Update`]s on
//! a broadcast channel that the server-sent event streams of agents and
//! patients filter. With Redis every update is also published on a Redis
//! channel, and each node feeds the updates of the other nodes into its own
//! broadcast channel, so a console hears of its offers and a patient of
//! their messages whichever node they are connected to (and a node's own
//! updates reach its streams once, directly).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Kolkata;
use routing::redis_log::{Applied, SharedEngine};
use routing::{Action, AgentId, AgentProfile, Engine, Event, Roster, RoutingConfig, RoutingError, Seat, SeatId, Shift};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::store::{Role, RoutingEventRow, Store};

/// What consoles and patients are told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    Offer {
        contact: String,
        agent: i64,
        until: DateTime<Utc>,
        callback: bool,
    },
    Withdraw {
        contact: String,
        agent: i64,
    },
    Position {
        contact: String,
        position: usize,
        estimated_wait_seconds: i64,
    },
    Connected {
        contact: String,
        agent: i64,
    },
    Left {
        contact: String,
        agent: i64,
    },
    Ended {
        contact: String,
    },
    CallbackScheduled {
        contact: String,
        at: DateTime<Utc>,
    },
    CallbackGivenUp {
        contact: String,
    },
    AgentPaused {
        agent: i64,
        reason: String,
    },
    Alert {
        contact: String,
        waited_seconds: i64,
    },
    Message {
        contact: String,
        sender: String,
        body: String,
        at: DateTime<Utc>,
    },
    /// Live transcription of a call (only with the patient's consent): a
    /// partial caption is replaced by later ones with the same speaker and
    /// `start_ms`, and by the final one.
    Caption {
        contact: String,
        participant: String,
        role: String,
        text: String,
        start_ms: u64,
        end_ms: u64,
        #[serde(rename = "final")]
        is_final: bool,
    },
}

impl Update {
    pub fn contact(&self) -> Option<&str> {
        match self {
            Update::Offer { contact, .. }
            | Update::Withdraw { contact, .. }
            | Update::Position { contact, .. }
            | Update::Connected { contact, .. }
            | Update::Left { contact, .. }
            | Update::Ended { contact }
            | Update::CallbackScheduled { contact, .. }
            | Update::CallbackGivenUp { contact }
            | Update::Alert { contact, .. }
            | Update::Message { contact, .. }
            | Update::Caption { contact, .. } => Some(contact),
            Update::AgentPaused { .. } => None,
        }
    }

    pub fn agent(&self) -> Option<i64> {
        match self {
            Update::Offer { agent, .. }
            | Update::Withdraw { agent, .. }
            | Update::Connected { agent, .. }
            | Update::Left { agent, .. }
            | Update::AgentPaused { agent, .. } => Some(*agent),
            _ => None,
        }
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl From<&Action> for Update {
    fn from(a: &Action) -> Self {
        match a {
            Action::Offer { contact, agent, until, callback } => {
                Update::Offer { contact: contact.0.clone(), agent: agent.0, until: at(*until), callback: *callback }
            }
            Action::Withdraw { contact, agent } => Update::Withdraw { contact: contact.0.clone(), agent: agent.0 },
            Action::Position { contact, position, estimated_wait } => Update::Position {
                contact: contact.0.clone(),
                position: *position,
                estimated_wait_seconds: estimated_wait / 1000,
            },
            Action::ScheduleCallback { contact, at: when } => {
                Update::CallbackScheduled { contact: contact.0.clone(), at: at(*when) }
            }
            Action::CallbackGivenUp { contact } => Update::CallbackGivenUp { contact: contact.0.clone() },
            Action::AgentPaused { agent, reason } => Update::AgentPaused { agent: agent.0, reason: reason.clone() },
            Action::Alert { contact, waited } => {
                Update::Alert { contact: contact.0.clone(), waited_seconds: waited / 1000 }
            }
        }
    }
}

/// Where the routing state lives.
enum Backing {
    /// This process only: the engine behind a lock; events logged to the
    /// store under it and replayed from the store at start.
    Local(Box<Mutex<Engine>>),
    /// Shared by several nodes through Redis.
    Redis(Box<RedisBacking>),
}

struct RedisBacking {
    url: String,
    /// The stream of routing entries.
    stream: String,
    /// The pub/sub channel of updates.
    channel: String,
    cfg: RoutingConfig,
    /// This node's replica; `None` until connected, and again after Redis
    /// failed it (the follower reconnects and rebuilds it from the stream).
    shared: Mutex<Option<SharedEngine>>,
    /// Updates for the other nodes, in order, to the publisher task.
    outbox: mpsc::UnboundedSender<String>,
}

/// Where several nodes share one queue.
#[derive(Clone, Debug)]
pub struct RedisRouting {
    pub url: String,
    /// Keys are `{prefix}:routing` (the stream) and `{prefix}:updates` (the
    /// channel): one prefix per deployment (per database).
    pub prefix: String,
}

/// An update as it travels between nodes.
#[derive(Serialize, Deserialize)]
struct Relayed {
    node: String,
    update: Update,
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

/// The instant `minute` minutes after midnight of `day`, Delhi time.
fn local_instant(day: NaiveDate, minute: i64) -> i64 {
    let midnight =
        Kolkata.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight")).single().expect("IST has no gaps");
    (midnight + Duration::minutes(minute)).timestamp_millis()
}

/// The routing roster around `now`: yesterday's, today's and tomorrow's
/// shifts (a night shift crosses midnight), every active operator and doctor, the seats.
pub async fn roster_around(store: &Store, now: DateTime<Utc>) -> crate::store::Result<Roster> {
    Ok(roster_and_shift_names_around(store, now).await?.0)
}

/// [`roster_around`], with the name and day of each of its shifts (in the
/// roster's order).
pub async fn roster_and_shift_names_around(
    store: &Store,
    now: DateTime<Utc>,
) -> crate::store::Result<(Roster, Vec<(String, NaiveDate)>)> {
    let staff = store.list_staff().await?;
    let agents = staff
        .iter()
        .filter(|s| s.active && matches!(s.role, Role::Operator | Role::Doctor))
        .map(|s| AgentProfile {
            id: AgentId(s.staff_id.0),
            role: if s.role == Role::Doctor { routing::Role::Doctor } else { routing::Role::Operator },
            languages: s.languages.clone(),
            specialty: s.specialty.clone(),
        })
        .collect();
    let seats = store.seats().await?.into_iter().map(|s| Seat { id: SeatId(s.seat_id.0), peak: s.is_peak }).collect();
    let defs = store.shifts().await?;
    let today = crate::time::to_local(now).date_naive();
    let mut shifts = Vec::new();
    let mut names = Vec::new();
    for day in [today.pred_opt().expect("a day before"), today, today.succ_opt().expect("a day after")] {
        let entries = store.roster_for(day).await?;
        for def in &defs {
            let start = local_instant(day, def.starts_minute);
            let end_minute =
                if def.ends_minute <= def.starts_minute { def.ends_minute + 1440 } else { def.ends_minute };
            shifts.push(Shift {
                role: if def.role == Role::Doctor { routing::Role::Doctor } else { routing::Role::Operator },
                start,
                end: local_instant(day, end_minute),
                peak: def.is_peak,
                agents: entries.iter().filter(|e| e.shift_id == def.shift_id).map(|e| AgentId(e.staff_id.0)).collect(),
            });
            names.push((def.name.clone(), day));
        }
    }
    Ok((Roster { agents, seats, shifts }, names))
}

fn describe(event: &Event) -> (String, Option<String>, Option<i64>) {
    let kind = serde_json::to_value(event)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default();
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
            None => Backing::Local(Box::new(Mutex::new(Self::restore(&store, cfg).await?))),
            Some(r) => {
                let (outbox, rx) = mpsc::unbounded_channel();
                let backing = RedisBacking {
                    stream: format!("{}:routing", r.prefix),
                    channel: format!("{}:updates", r.prefix),
                    url: r.url,
                    cfg,
                    shared: Mutex::new(None),
                    outbox,
                };
                tasks.spawn(publish_updates(backing.url.clone(), backing.channel.clone(), rx, shutdown.clone()));
                Backing::Redis(Box::new(backing))
            }
        };
        let center = Center { inner: Arc::new(Inner { store, node, backing, updates, wake: Notify::new() }) };
        if let Backing::Redis(r) = &center.inner.backing {
            if let Err(e) = center.connect_replica().await {
                tracing::warn!(error = %e, "routing: Redis not reachable; retrying in the background");
            }
            tasks.spawn(center.clone().relay_updates(r.url.clone(), r.channel.clone(), shutdown.clone()));
            tasks.spawn(center.clone().follow(shutdown.clone()));
        }
        tasks.spawn(center.clone().drive(shutdown));
        Ok(center)
    }

    /// The local engine: the roster, then the last day's logged events.
    async fn restore(store: &Store, cfg: RoutingConfig) -> crate::store::Result<Engine> {
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

    /// Whether this node's routing can take events (with Redis: its replica is connected).
    pub async fn ready(&self) -> bool {
        match &self.inner.backing {
            Backing::Local(_) => true,
            Backing::Redis(r) => r.shared.lock().await.is_some(),
        }
    }

    /// Applies `event` now: logs it, and publishes what the engine decided.
    pub async fn handle(&self, event: Event) -> Result<Vec<Action>, CenterError> {
        let now = Utc::now();
        let actions = match &self.inner.backing {
            Backing::Local(engine) => {
                let mut engine = engine.lock().await;
                let actions = engine.handle(now.timestamp_millis(), event.clone())?;
                if !matches!(event, Event::Tick) || !actions.is_empty() {
                    self.log(now, &event).await;
                }
                drop(engine);
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
                let submitted = match shared.submit(now.timestamp_millis(), event).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "routing: Redis failed; the replica will be rebuilt");
                        *guard = None;
                        return Err(CenterError::Unavailable(e.to_string()));
                    }
                };
                self.carry_out(&submitted.applied).await;
                drop(guard);
                submitted.result?
            }
        };
        self.inner.wake.notify_one();
        Ok(actions)
    }

    /// Appends `event`, applied at `at`, to the store's history.
    async fn log(&self, at: DateTime<Utc>, event: &Event) {
        let (kind, contact_id, agent_id) = describe(event);
        let row = RoutingEventRow {
            at,
            kind,
            contact_id,
            agent_id,
            body: serde_json::to_string(event).expect("events serialize"),
        };
        if let Err(e) = self.inner.store.append_routing_event(&self.inner.node, &row).await {
            tracing::error!(error = %e, "routing event not logged");
        }
    }

    /// Carries out this node's entries among `applied` (other nodes carry
    /// out theirs): logs each accepted event, and publishes its actions.
    /// Called under the replica's lock, so this node's rows are in stream order.
    async fn carry_out(&self, applied: &[Applied]) {
        for a in applied.iter().filter(|a| a.node == self.inner.node) {
            let Ok(actions) = &a.result else { continue };
            if matches!(a.event, Event::Tick) && actions.is_empty() {
                continue;
            }
            self.log(at(a.at), &a.event).await;
            for action in actions {
                self.publish(Update::from(action));
            }
        }
    }

    /// Sends an update to whoever listens, on this node and (with Redis) on the others.
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
            Backing::Local(engine) => Some(f(&*engine.lock().await)),
            Backing::Redis(r) => r.shared.lock().await.as_ref().map(|s| f(s.engine())),
        }
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

    /// The state of an agent, if logged in.
    pub async fn agent_state(&self, agent: i64) -> Option<routing::AgentState> {
        self.read(|e| e.agent_state(AgentId(agent)).cloned()).await.flatten()
    }

    /// Sends `Tick` whenever the engine has a timer due; rebuilds the roster every hour.
    async fn drive(self, shutdown: CancellationToken) {
        let mut roster_at = Utc::now();
        loop {
            let next = self.read(Engine::next_timer).await.flatten();
            let wait = next
                .map(|t| StdDuration::from_millis((t - Utc::now().timestamp_millis()).clamp(0, 60_000) as u64))
                .unwrap_or(StdDuration::from_secs(60));
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
                        Ok(Some(submitted)) => self.carry_out(&submitted.applied).await,
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "routing tick: Redis failed; the replica will be rebuilt");
                            *guard = None;
                        }
                    }
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
            Backing::Local(engine) => engine.lock().await.set_roster(roster),
            Backing::Redis(r) => {
                let mut guard = r.shared.lock().await;
                let Some(shared) = guard.as_mut() else {
                    return Err(CenterError::Unavailable("not connected to Redis".into()));
                };
                match shared.set_roster(now.timestamp_millis(), &roster).await {
                    Ok(applied) => self.carry_out(&applied).await,
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

    /// Connects this node's replica: applies the whole stream to an engine
    /// with no roster (so it ends where every replica is), then appends the
    /// roster this node reads from the store.
    async fn connect_replica(&self) -> anyhow::Result<()> {
        let Backing::Redis(r) = &self.inner.backing else { return Ok(()) };
        let mut guard = r.shared.lock().await;
        if guard.is_some() {
            return Ok(());
        }
        let connect = SharedEngine::connect(&r.url, &r.stream, &self.inner.node, Roster::default(), r.cfg.clone());
        let mut shared = tokio::time::timeout(StdDuration::from_secs(5), connect)
            .await
            .map_err(|_| anyhow::anyhow!("Redis did not answer within 5 s"))??;
        let now = Utc::now();
        let roster = roster_around(&self.inner.store, now).await?;
        shared.set_roster(now.timestamp_millis(), &roster).await?;
        let e = shared.engine();
        tracing::info!(
            stream = %r.stream,
            last = shared.last_id().unwrap_or("-"),
            agents = e.agents().count(),
            waiting = e.waiting(),
            "routing replica rebuilt from the Redis stream"
        );
        *guard = Some(shared);
        drop(guard);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// With Redis: keeps the replica connected and applies the other nodes'
    /// entries as they come (a blocking `XREAD` on its own connection wakes it).
    async fn follow(self, shutdown: CancellationToken) {
        let Backing::Redis(r) = &self.inner.backing else { return };
        let mut waiter: Option<redis::aio::MultiplexedConnection> = None;
        let mut failing = false;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let step = async {
                self.connect_replica().await?;
                if waiter.is_none() {
                    // No response timeout: the XREAD below blocks on purpose.
                    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
                    let client = redis::Client::open(r.url.as_str())?;
                    waiter = Some(client.get_multiplexed_async_connection_with_config(&cfg).await?);
                }
                let last = r.shared.lock().await.as_ref().and_then(|s| s.last_id().map(str::to_owned));
                let conn = waiter.as_mut().expect("connected above");
                let mut xread = redis::cmd("XREAD");
                xread
                    .arg("BLOCK")
                    .arg(5000)
                    .arg("COUNT")
                    .arg(1)
                    .arg("STREAMS")
                    .arg(&r.stream)
                    .arg(last.as_deref().unwrap_or("0-0"));
                let read = xread.query_async::<Option<redis::Value>>(conn);
                let got = read.await;
                if got.inspect_err(|_| waiter = None)?.is_none() {
                    return Ok(());
                }
                let mut guard = r.shared.lock().await;
                if let Some(shared) = guard.as_mut() {
                    match shared.sync().await {
                        Ok(applied) => self.carry_out(&applied).await,
                        Err(e) => {
                            *guard = None;
                            return Err(e.into());
                        }
                    }
                }
                drop(guard);
                self.inner.wake.notify_one();
                anyhow::Ok(())
            };
            let step = tokio::select! {
                _ = shutdown.cancelled() => return,
                step = step => step,
            };
            match step {
                Ok(()) => {
                    if failing {
                        tracing::info!("routing: Redis reachable again");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "routing: Redis unreachable; retrying every second");
                        failing = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// With Redis: feeds the updates other nodes publish into this node's
    /// broadcast channel (this node's own went there directly).
    async fn relay_updates(self, url: String, channel: String, shutdown: CancellationToken) {
        loop {
            let run = async {
                let mut pubsub = redis::Client::open(url.as_str())?.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = futures_util::StreamExt::next(&mut messages).await {
                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                    match serde_json::from_str::<Relayed>(&payload) {
                        Ok(r) if r.node != self.inner.node => {
                            let _ = self.inner.updates.send(r.update);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "routing: an update from another node was not understood"),
                    }
                }
                anyhow::Ok(())
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                res = run => {
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "routing: the updates of other nodes are not reaching this node");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
            }
        }
    }
}

/// With Redis: publishes this node's updates, in order, for the other nodes.
/// While Redis is away they are dropped (the consoles on other nodes miss
/// them; this node's own streams had them already).
async fn publish_updates(
    url: String,
    channel: String,
    mut rx: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            msg = rx.recv() => match msg { Some(m) => m, None => return },
        };
        if conn.is_none() {
            conn = match redis::Client::open(url.as_str()) {
                Ok(c) => c.get_multiplexed_async_connection().await.ok(),
                Err(_) => None,
            };
        }
        let Some(c) = conn.as_mut() else {
            tracing::warn!("routing: an update was not published to the other nodes (Redis unreachable)");
            continue;
        };
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH").arg(&channel).arg(msg).query_async(c).await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "routing: an update was not published to the other nodes");
            conn = None;
        }
    }
}
