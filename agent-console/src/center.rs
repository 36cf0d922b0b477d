//! The contact centre: the routing engine driven by real time, its events
//! logged to the store, and its decisions pushed to consoles and patients.
//!
//! One [`Center`] per node holds the [`routing::Engine`] behind a lock. Every
//! event is applied and appended to the `routing_event` log under that lock,
//! so the log is in engine order and a restarted node rebuilds the same
//! state by replaying it. A timer task sends `Tick` when the engine asks.
//! Decisions go out as [`Update`]s on a broadcast channel that the
//! server-sent event streams of agents and patients filter.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Kolkata;
use routing::{Action, AgentId, AgentProfile, Engine, Event, Roster, RoutingConfig, RoutingError, Seat, SeatId, Shift};
use serde::Serialize;
use tokio::sync::{Mutex, Notify, broadcast};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::store::{Role, RoutingEventRow, Store};

/// What consoles and patients are told.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
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

struct Inner {
    store: Store,
    node: String,
    engine: Mutex<Engine>,
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
    /// events, then drives its timers until `shutdown`.
    pub async fn start(
        store: Store,
        node: String,
        cfg: RoutingConfig,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> crate::store::Result<Center> {
        let now = Utc::now();
        let roster = roster_around(&store, now).await?;
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
        let (updates, _) = broadcast::channel(1024);
        let center =
            Center { inner: Arc::new(Inner { store, node, engine: Mutex::new(engine), updates, wake: Notify::new() }) };
        tasks.spawn(center.clone().drive(shutdown));
        Ok(center)
    }

    /// Applies `event` now: logs it, and publishes what the engine decided.
    pub async fn handle(&self, event: Event) -> Result<Vec<Action>, RoutingError> {
        let now = Utc::now();
        let mut engine = self.inner.engine.lock().await;
        let actions = engine.handle(now.timestamp_millis(), event.clone())?;
        if !matches!(event, Event::Tick) || !actions.is_empty() {
            let (kind, contact_id, agent_id) = describe(&event);
            let row = RoutingEventRow {
                at: now,
                kind,
                contact_id,
                agent_id,
                body: serde_json::to_string(&event).expect("events serialize"),
            };
            if let Err(e) = self.inner.store.append_routing_event(&self.inner.node, &row).await {
                tracing::error!(error = %e, "routing event not logged");
            }
        }
        drop(engine);
        for a in &actions {
            self.publish(Update::from(a));
        }
        self.inner.wake.notify_one();
        Ok(actions)
    }

    /// Sends an update to whoever listens.
    pub fn publish(&self, update: Update) {
        let _ = self.inner.updates.send(update);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.inner.updates.subscribe()
    }

    /// Every logged-in agent with their seat and state.
    pub async fn agents(&self) -> Vec<(i64, i64, routing::AgentState)> {
        self.inner.engine.lock().await.agents().map(|(a, s, st)| (a.0, s.0, st.clone())).collect()
    }

    /// The state of an agent, if logged in.
    pub async fn agent_state(&self, agent: i64) -> Option<routing::AgentState> {
        self.inner.engine.lock().await.agent_state(AgentId(agent)).cloned()
    }

    /// Sends `Tick` whenever the engine has a timer due; rebuilds the roster every hour.
    async fn drive(self, shutdown: CancellationToken) {
        let mut roster_at = Utc::now();
        loop {
            let next = self.inner.engine.lock().await.next_timer();
            let wait = next
                .map(|t| StdDuration::from_millis((t - Utc::now().timestamp_millis()).clamp(0, 60_000) as u64))
                .unwrap_or(StdDuration::from_secs(60));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.wake.notified() => continue,
                _ = tokio::time::sleep(wait) => {}
            }
            if Utc::now() - roster_at > Duration::hours(1) {
                match roster_around(&self.inner.store, Utc::now()).await {
                    Ok(r) => {
                        self.inner.engine.lock().await.set_roster(r);
                        roster_at = Utc::now();
                    }
                    Err(e) => tracing::warn!(error = %e, "roster refresh"),
                }
            }
            if let Err(e) = self.handle(Event::Tick).await {
                tracing::warn!(error = %e, "routing tick");
            }
        }
    }

    /// Re-reads the roster now (after staff or rota changes).
    pub async fn refresh_roster(&self) -> crate::store::Result<()> {
        let roster = roster_around(&self.inner.store, Utc::now()).await?;
        self.inner.engine.lock().await.set_roster(roster);
        Ok(())
    }
}
