//! The routing engine: events in, actions out, time passed in.
//!
//! One [`Engine`] holds the queue, the agents at their seats and the
//! outstanding offers. [`Engine::handle`] applies one [`Event`] at a given
//! instant and returns the [`Action`]s the caller must carry out (ring an
//! agent, tell a caller their position, schedule a callback). An event that
//! breaks a rule returns a [`RoutingError`] and changes nothing. The engine
//! never reads a clock: [`Engine::next_timer`] says when the caller should
//! send the next [`Event::Tick`].
//!
//! Order: emergencies first, then the longest-waiting. Among eligible
//! agents, the one idle longest gets the offer. See `docs/routing.md`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentId(pub i64);

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContactId(pub String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeatId(pub i64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Doctor,
}

/// How a contact talks: one voice or video contact fills an agent; chats share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Voice,
    Video,
    Chat,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentProfile {
    pub id: AgentId,
    pub role: Role,
    /// ISO 639-1 codes.
    pub languages: Vec<String>,
    /// Doctors: `general` or a specialty.
    pub specialty: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seat {
    pub id: SeatId,
    /// Open only while a peak shift runs.
    pub peak: bool,
}

/// One shift on one day, as instants, with who is rostered on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    pub role: Role,
    pub start: Millis,
    pub end: Millis,
    pub peak: bool,
    pub agents: Vec<AgentId>,
}

/// Who works where and when.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Roster {
    pub agents: Vec<AgentProfile>,
    pub seats: Vec<Seat>,
    pub shifts: Vec<Shift>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutingConfig {
    /// How long an offer rings before it goes to the next agent.
    pub offer_timeout: Millis,
    /// Wrap-up after a contact ends, before the next offer.
    pub wrap_up: Millis,
    /// Chats one agent may hold at once.
    pub max_chats: usize,
    /// After this wait, a contact's language relaxes to Hindi or English.
    pub language_relax: Millis,
    /// After this wait, a specialty relaxes to a general physician.
    pub specialty_relax: Millis,
    /// Missed offers in a row that pause an agent.
    pub max_missed: u32,
    /// Supervisors are alerted when a contact waits this long.
    pub long_wait_alert: Millis,
    /// At night (no operator shift), offer non-emergencies to an idle doctor
    /// rather than a callback.
    pub night_to_idle_doctor: bool,
    /// Tries for a callback, and the spacing between them.
    pub callback_tries: u32,
    pub callback_retry: Millis,
    /// The handle time assumed before any contact has ended.
    pub initial_aht: Millis,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            offer_timeout: 15_000,
            wrap_up: 30_000,
            max_chats: 3,
            language_relax: 60_000,
            specialty_relax: 120_000,
            max_missed: 2,
            long_wait_alert: 120_000,
            night_to_idle_doctor: true,
            callback_tries: 3,
            callback_retry: 10 * 60_000,
            initial_aht: 240_000,
        }
    }
}

/// A contact as it arrives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewContact {
    pub id: ContactId,
    pub media: Media,
    pub language: String,
    pub emergency: bool,
    /// Set for a contact that needs a doctor from the start.
    pub specialty: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    ContactArrived(NewContact),
    Login {
        agent: AgentId,
        seat: SeatId,
    },
    Logout {
        agent: AgentId,
    },
    Ready {
        agent: AgentId,
    },
    Pause {
        agent: AgentId,
        reason: String,
    },
    WrapUpDone {
        agent: AgentId,
    },
    Accept {
        agent: AgentId,
        contact: ContactId,
    },
    Decline {
        agent: AgentId,
        contact: ContactId,
    },
    /// The caller hung up while waiting or ringing.
    Abandon {
        contact: ContactId,
    },
    /// The operator asks for a doctor; the operator stays on (warm transfer).
    Escalate {
        contact: ContactId,
        specialty: String,
        urgent: bool,
    },
    /// An agent leaves a contact that goes on without them (after a warm transfer).
    Leave {
        agent: AgentId,
        contact: ContactId,
    },
    RequestCallback {
        contact: ContactId,
    },
    /// The agent could not reach the caller on a callback.
    CallbackFailed {
        agent: AgentId,
        contact: ContactId,
    },
    End {
        contact: ContactId,
    },
    Tick,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Ring `agent` with `contact` until `until`. `callback`: the agent calls the patient back.
    Offer {
        contact: ContactId,
        agent: AgentId,
        until: Millis,
        callback: bool,
    },
    Withdraw {
        contact: ContactId,
        agent: AgentId,
    },
    /// Tell a waiting contact where it stands.
    Position {
        contact: ContactId,
        position: usize,
        estimated_wait: Millis,
    },
    /// Nobody can take this contact now: call the patient back at `at`.
    ScheduleCallback {
        contact: ContactId,
        at: Millis,
    },
    /// A callback failed for good.
    CallbackGivenUp {
        contact: ContactId,
    },
    AgentPaused {
        agent: AgentId,
        reason: String,
    },
    /// Supervisors: a contact has waited `waited` ms.
    Alert {
        contact: ContactId,
        waited: Millis,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("unknown agent {0:?}")]
    UnknownAgent(AgentId),
    #[error("unknown contact {0:?}")]
    UnknownContact(ContactId),
    #[error("contact {0:?} already exists")]
    DuplicateContact(ContactId),
    #[error("agent {0:?} is not logged in")]
    NotLoggedIn(AgentId),
    #[error("agent {0:?} is already logged in")]
    AlreadyLoggedIn(AgentId),
    #[error("unknown seat {0:?}")]
    UnknownSeat(SeatId),
    #[error("seat {0:?} is taken")]
    SeatTaken(SeatId),
    #[error("seat {0:?} is a peak seat, open only during a peak shift")]
    PeakSeatClosed(SeatId),
    #[error("agent {0:?} is not rostered on a shift now")]
    NotRostered(AgentId),
    #[error("contact {contact:?} is not offered to agent {agent:?}")]
    NotOffered { agent: AgentId, contact: ContactId },
    #[error("agent {agent:?} is not handling contact {contact:?}")]
    NotHandling { agent: AgentId, contact: ContactId },
    #[error("agent {0:?} is not in wrap-up")]
    NotInWrapUp(AgentId),
    #[error("agent {0:?} still holds contacts")]
    AgentBusy(AgentId),
    #[error("contact {0:?} is connected; end it instead")]
    Connected(ContactId),
    #[error("contact {0:?} is not connected")]
    NotConnected(ContactId),
}

/// What an agent is doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    Idle {
        since: Millis,
    },
    Offered {
        contact: ContactId,
        until: Millis,
    },
    /// Holding contacts (one voice/video, or up to `max_chats` chats).
    Busy,
    WrapUp {
        until: Millis,
    },
    Paused {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
struct AgentRt {
    profile: AgentProfile,
    seat: SeatId,
    state: AgentState,
    missed: u32,
    handling: Vec<(ContactId, Media)>,
}

/// Who a task needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Need {
    Operator,
    Doctor,
}

/// How many contacts at the front of the queue are reviewed on every event.
const FRONT: usize = 32;

/// Queue order: emergencies first, then by when the wait began, then arrival order.
type QueueKey = (u8, Millis, u64);
type TaskKey = (ContactId, Need);

/// Something waiting for an agent: a new contact, a callback, or a doctor for an escalated contact.
#[derive(Clone, Debug, PartialEq)]
struct Task {
    media: Media,
    language: String,
    emergency: bool,
    /// Doctors: the specialty asked for; relaxes to `general`.
    specialty: Option<String>,
    key: QueueKey,
    callback: bool,
    tries: u32,
    not_before: Millis,
    offered: Option<AgentId>,
    /// Position, estimate and when they were told.
    announced: Option<(usize, Millis, Millis)>,
    alerted: bool,
    night_callback_told: bool,
}

impl Task {
    fn since(&self) -> Millis {
        self.key.1
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Connection {
    agents: Vec<AgentId>,
    media: Media,
    since: Millis,
}

/// The engine. Cloning it gives an independent copy (a snapshot).
#[derive(Clone, Debug)]
pub struct Engine {
    cfg: RoutingConfig,
    roster: Roster,
    agents: BTreeMap<AgentId, AgentRt>,
    queue: BTreeMap<QueueKey, TaskKey>,
    tasks: HashMap<TaskKey, Task>,
    connections: HashMap<ContactId, Connection>,
    callback_tries: HashMap<ContactId, u32>,
    seq: u64,
    /// Exponentially weighted average handle time (talk plus wrap-up), ms.
    aht: f64,
    /// The instant of the last event handled.
    now: Millis,
    /// Actions of timers that ran while a refused event was handled.
    held: Vec<Action>,
    /// Queued tasks for operators and for doctors, and the emergencies among them.
    queued: [usize; 2],
    queued_urgent: [usize; 2],
    /// When every waiting contact's position was last reviewed.
    last_full_announce: Millis,
}

impl Engine {
    pub fn new(roster: Roster, cfg: RoutingConfig) -> Engine {
        let aht = cfg.initial_aht as f64;
        Engine {
            cfg,
            roster,
            agents: BTreeMap::new(),
            queue: BTreeMap::new(),
            tasks: HashMap::new(),
            connections: HashMap::new(),
            callback_tries: HashMap::new(),
            seq: 0,
            aht,
            now: Millis::MIN,
            held: Vec::new(),
            queued: [0; 2],
            queued_urgent: [0; 2],
            last_full_announce: Millis::MIN,
        }
    }

    /// Replaces the roster (a new day); agents stay logged in.
    pub fn set_roster(&mut self, roster: Roster) {
        self.roster = roster;
    }

    pub fn agent_state(&self, agent: AgentId) -> Option<&AgentState> {
        self.agents.get(&agent).map(|a| &a.state)
    }

    /// Every logged-in agent, their seat and state.
    pub fn agents(&self) -> impl Iterator<Item = (AgentId, SeatId, &AgentState)> {
        self.agents.values().map(|a| (a.profile.id, a.seat, &a.state))
    }

    /// Tasks waiting for an agent (not ringing).
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Applies one event at `now`. A refused event changes nothing it
    /// touches: every rule is checked before any change. Timers that fell due
    /// before `now` still run; their actions come with the next accepted event.
    pub fn handle(&mut self, now: Millis, event: Event) -> Result<Vec<Action>, RoutingError> {
        let mut out = std::mem::take(&mut self.held);
        self.expire(now, &mut out);
        self.now = self.now.max(now);
        if let Err(e) = self.apply(now, event, &mut out) {
            self.held = out;
            return Err(e);
        }
        self.dispatch(now, &mut out);
        self.announce(now, &mut out);
        Ok(out)
    }

    /// When the caller must next send [`Event::Tick`] (after the last event handled), if ever.
    pub fn next_timer(&self) -> Option<Millis> {
        let mut times = Vec::new();
        for a in self.agents.values() {
            if let AgentState::Offered { until, .. } | AgentState::WrapUp { until } = a.state {
                times.push(until);
            }
        }
        for t in self.tasks.values().filter(|t| t.offered.is_none()) {
            times.push(t.not_before);
            times.push(t.since() + self.cfg.language_relax);
            if t.specialty.is_some() {
                times.push(t.since() + self.cfg.specialty_relax);
            }
            if !t.alerted {
                times.push(t.since() + self.cfg.long_wait_alert);
            }
        }
        for s in &self.roster.shifts {
            times.extend([s.start, s.end]);
        }
        times.into_iter().filter(|t| *t > self.now).min()
    }

    fn on_shift(&self, agent: AgentId, now: Millis) -> bool {
        self.roster.shifts.iter().any(|s| s.start <= now && now < s.end && s.agents.contains(&agent))
    }

    fn operators_on(&self, now: Millis) -> bool {
        self.roster.shifts.iter().any(|s| s.role == Role::Operator && s.start <= now && now < s.end)
    }

    fn next_operator_shift(&self, now: Millis) -> Option<Millis> {
        self.roster.shifts.iter().filter(|s| s.role == Role::Operator && s.start > now).map(|s| s.start).min()
    }

    fn peak_open(&self, now: Millis) -> bool {
        self.roster.shifts.iter().any(|s| s.peak && s.start <= now && now < s.end)
    }

    fn settle(a: &mut AgentRt, now: Millis) {
        a.state = if a.handling.is_empty() { AgentState::Idle { since: now } } else { AgentState::Busy };
    }

    /// Offers and wrap-ups whose time has come.
    fn expire(&mut self, now: Millis, out: &mut Vec<Action>) {
        let due: Vec<(AgentId, ContactId)> = self
            .agents
            .iter()
            .filter_map(|(id, a)| match &a.state {
                AgentState::Offered { contact, until } if *until <= now => Some((*id, contact.clone())),
                _ => None,
            })
            .collect();
        for (agent, contact) in due {
            out.push(Action::Withdraw { contact: contact.clone(), agent });
            self.unoffer(agent, &contact);
            let a = self.agents.get_mut(&agent).expect("offered agent");
            a.missed += 1;
            if a.missed >= self.cfg.max_missed {
                let reason = "missed offers".to_owned();
                a.state = AgentState::Paused { reason: reason.clone() };
                out.push(Action::AgentPaused { agent, reason });
            } else {
                Self::settle(a, now);
            }
        }
        for a in self.agents.values_mut() {
            if let AgentState::WrapUp { until } = a.state
                && until <= now
            {
                a.state = AgentState::Idle { since: now };
            }
        }
    }

    /// The task offered to `agent` for `contact` goes back to its place in the queue.
    fn unoffer(&mut self, agent: AgentId, contact: &ContactId) {
        for need in [Need::Operator, Need::Doctor] {
            let tk = (contact.clone(), need);
            if let Some(t) = self.tasks.get_mut(&tk)
                && t.offered == Some(agent)
            {
                t.offered = None;
                let key = t.key;
                self.q_insert(key, tk);
                return;
            }
        }
    }

    fn offered_task(&self, agent: AgentId, contact: &ContactId) -> Option<TaskKey> {
        [Need::Operator, Need::Doctor]
            .into_iter()
            .map(|n| (contact.clone(), n))
            .find(|tk| self.tasks.get(tk).is_some_and(|t| t.offered == Some(agent)))
    }

    fn known(&self, contact: &ContactId) -> bool {
        self.connections.contains_key(contact)
            || self.tasks.contains_key(&(contact.clone(), Need::Operator))
            || self.tasks.contains_key(&(contact.clone(), Need::Doctor))
    }

    fn logged_in(&mut self, agent: AgentId) -> Result<&mut AgentRt, RoutingError> {
        if !self.roster.agents.iter().any(|a| a.id == agent) {
            return Err(RoutingError::UnknownAgent(agent));
        }
        self.agents.get_mut(&agent).ok_or(RoutingError::NotLoggedIn(agent))
    }

    fn new_task(
        &mut self,
        now: Millis,
        media: Media,
        language: String,
        emergency: bool,
        specialty: Option<String>,
    ) -> Task {
        self.seq += 1;
        Task {
            media,
            language,
            emergency,
            specialty,
            key: (u8::from(!emergency), now, self.seq),
            callback: false,
            tries: 0,
            not_before: now,
            offered: None,
            announced: None,
            alerted: false,
            night_callback_told: false,
        }
    }

    fn enqueue(&mut self, tk: TaskKey, task: Task) {
        self.q_insert(task.key, tk.clone());
        self.tasks.insert(tk, task);
    }

    fn need_index(need: &Need) -> usize {
        match need {
            Need::Operator => 0,
            Need::Doctor => 1,
        }
    }

    /// Puts a task in the queue, keeping the counts that give a newcomer its position.
    fn q_insert(&mut self, key: QueueKey, tk: TaskKey) {
        let n = Self::need_index(&tk.1);
        self.queued[n] += 1;
        if key.0 == 0 {
            self.queued_urgent[n] += 1;
        }
        self.queue.insert(key, tk);
    }

    fn q_remove(&mut self, key: &QueueKey) -> Option<TaskKey> {
        let tk = self.queue.remove(key)?;
        let n = Self::need_index(&tk.1);
        self.queued[n] -= 1;
        if key.0 == 0 {
            self.queued_urgent[n] -= 1;
        }
        Some(tk)
    }

    /// Removes the doctor task of `contact`, if any, withdrawing its offer.
    fn drop_doctor_task(&mut self, contact: &ContactId, now: Millis, out: &mut Vec<Action>) {
        if let Some(task) = self.tasks.remove(&(contact.clone(), Need::Doctor)) {
            self.q_remove(&task.key);
            if let Some(agent) = task.offered {
                out.push(Action::Withdraw { contact: contact.clone(), agent });
                Self::settle(self.agents.get_mut(&agent).expect("offered agent"), now);
            }
        }
    }

    /// An agent stops handling a contact; with nothing left they wrap up.
    fn release(&mut self, agent: AgentId, contact: &ContactId, now: Millis) {
        if let Some(a) = self.agents.get_mut(&agent) {
            a.handling.retain(|(c, _)| c != contact);
            if a.handling.is_empty() && matches!(a.state, AgentState::Busy) {
                a.state = AgentState::WrapUp { until: now + self.cfg.wrap_up };
            }
        }
    }

    fn apply(&mut self, now: Millis, event: Event, out: &mut Vec<Action>) -> Result<(), RoutingError> {
        match event {
            Event::Tick => {}
            Event::ContactArrived(spec) => {
                if self.known(&spec.id) {
                    return Err(RoutingError::DuplicateContact(spec.id));
                }
                let need = if spec.specialty.is_some() { Need::Doctor } else { Need::Operator };
                let task = self.new_task(now, spec.media, spec.language, spec.emergency, spec.specialty);
                let tk = (spec.id, need);
                self.enqueue(tk.clone(), task);
                self.announce_newcomer(&tk, now, out);
            }
            Event::Login { agent, seat } => {
                let profile = self
                    .roster
                    .agents
                    .iter()
                    .find(|a| a.id == agent)
                    .cloned()
                    .ok_or(RoutingError::UnknownAgent(agent))?;
                if self.agents.contains_key(&agent) {
                    return Err(RoutingError::AlreadyLoggedIn(agent));
                }
                let s = self.roster.seats.iter().find(|s| s.id == seat).ok_or(RoutingError::UnknownSeat(seat))?;
                if self.agents.values().any(|a| a.seat == seat) {
                    return Err(RoutingError::SeatTaken(seat));
                }
                if s.peak && !self.peak_open(now) {
                    return Err(RoutingError::PeakSeatClosed(seat));
                }
                if !self.on_shift(agent, now) {
                    return Err(RoutingError::NotRostered(agent));
                }
                let state = AgentState::Paused { reason: "logged in".into() };
                self.agents.insert(agent, AgentRt { profile, seat, state, missed: 0, handling: Vec::new() });
            }
            Event::Logout { agent } => {
                let a = self.logged_in(agent)?;
                if !a.handling.is_empty() {
                    return Err(RoutingError::AgentBusy(agent));
                }
                if let AgentState::Offered { contact, .. } = a.state.clone() {
                    out.push(Action::Withdraw { contact: contact.clone(), agent });
                    self.unoffer(agent, &contact);
                }
                self.agents.remove(&agent);
            }
            Event::Ready { agent } => {
                let a = self.logged_in(agent)?;
                if matches!(a.state, AgentState::Paused { .. } | AgentState::WrapUp { .. }) {
                    a.missed = 0;
                    Self::settle(a, now);
                }
            }
            Event::Pause { agent, reason } => {
                let a = self.logged_in(agent)?;
                if !a.handling.is_empty() {
                    return Err(RoutingError::AgentBusy(agent));
                }
                let offered = match &a.state {
                    AgentState::Offered { contact, .. } => Some(contact.clone()),
                    _ => None,
                };
                a.state = AgentState::Paused { reason };
                if let Some(contact) = offered {
                    out.push(Action::Withdraw { contact: contact.clone(), agent });
                    self.unoffer(agent, &contact);
                }
            }
            Event::WrapUpDone { agent } => {
                let a = self.logged_in(agent)?;
                if !matches!(a.state, AgentState::WrapUp { .. }) {
                    return Err(RoutingError::NotInWrapUp(agent));
                }
                a.state = AgentState::Idle { since: now };
            }
            Event::Accept { agent, contact } => {
                self.logged_in(agent)?;
                let tk = self.offered_task(agent, &contact).ok_or_else(|| {
                    if self.known(&contact) {
                        RoutingError::NotOffered { agent, contact: contact.clone() }
                    } else {
                        RoutingError::UnknownContact(contact.clone())
                    }
                })?;
                let task = self.tasks.remove(&tk).expect("offered task");
                let a = self.agents.get_mut(&agent).expect("logged in");
                a.handling.push((contact.clone(), task.media));
                a.state = AgentState::Busy;
                a.missed = 0;
                let conn = self.connections.entry(contact).or_insert(Connection {
                    agents: Vec::new(),
                    media: task.media,
                    since: now,
                });
                conn.agents.push(agent);
            }
            Event::Decline { agent, contact } => {
                self.logged_in(agent)?;
                if self.offered_task(agent, &contact).is_none() {
                    return Err(if self.known(&contact) {
                        RoutingError::NotOffered { agent, contact }
                    } else {
                        RoutingError::UnknownContact(contact)
                    });
                }
                self.unoffer(agent, &contact);
                Self::settle(self.agents.get_mut(&agent).expect("logged in"), now);
            }
            Event::Abandon { contact } => {
                if self.connections.contains_key(&contact) {
                    return Err(RoutingError::Connected(contact));
                }
                let tk = (contact.clone(), Need::Operator);
                let tk = if self.tasks.contains_key(&tk) { tk } else { (contact.clone(), Need::Doctor) };
                let task = self.tasks.remove(&tk).ok_or(RoutingError::UnknownContact(contact.clone()))?;
                self.q_remove(&task.key);
                if let Some(agent) = task.offered {
                    out.push(Action::Withdraw { contact, agent });
                    Self::settle(self.agents.get_mut(&agent).expect("offered agent"), now);
                }
            }
            Event::Escalate { contact, specialty, urgent } => {
                let media = match self.connections.get(&contact) {
                    Some(c) => c.media,
                    None if self.known(&contact) => {
                        return Err(RoutingError::NotConnected(contact));
                    }
                    None => return Err(RoutingError::UnknownContact(contact)),
                };
                let tk = (contact, Need::Doctor);
                if !self.tasks.contains_key(&tk) {
                    let task = self.new_task(now, media, String::new(), urgent, Some(specialty));
                    self.enqueue(tk, task);
                }
            }
            Event::Leave { agent, contact } => {
                let conn = self.connections.get_mut(&contact).ok_or(RoutingError::NotConnected(contact.clone()))?;
                if !conn.agents.contains(&agent) || conn.agents.len() < 2 {
                    return Err(RoutingError::NotHandling { agent, contact });
                }
                conn.agents.retain(|a| *a != agent);
                self.release(agent, &contact, now);
            }
            Event::RequestCallback { contact } => {
                if self.connections.contains_key(&contact) {
                    return Err(RoutingError::Connected(contact));
                }
                let task = self
                    .tasks
                    .get_mut(&(contact.clone(), Need::Operator))
                    .ok_or(RoutingError::UnknownContact(contact))?;
                task.callback = true;
            }
            Event::CallbackFailed { agent, contact } => {
                let conn = self.connections.get(&contact).ok_or(RoutingError::NotConnected(contact.clone()))?;
                if !conn.agents.contains(&agent) {
                    return Err(RoutingError::NotHandling { agent, contact });
                }
                let conn = self.connections.remove(&contact).expect("checked");
                for a in conn.agents {
                    self.release(a, &contact, now);
                }
                // Nobody is on the line: a doctor still being sought is no longer needed
                // (and the retry below must not meet a second task for the contact).
                self.drop_doctor_task(&contact, now, out);
                let tries = self.callback_tries.get(&contact).copied().unwrap_or(0) + 1;
                if tries >= self.cfg.callback_tries {
                    self.callback_tries.remove(&contact);
                    out.push(Action::CallbackGivenUp { contact });
                } else {
                    self.callback_tries.insert(contact.clone(), tries);
                    let mut task = self.new_task(now, conn.media, String::new(), false, None);
                    task.callback = true;
                    task.tries = tries;
                    task.alerted = true;
                    task.not_before = now + self.cfg.callback_retry;
                    self.enqueue((contact, Need::Operator), task);
                }
            }
            Event::End { contact } => {
                let conn = match self.connections.remove(&contact) {
                    Some(c) => c,
                    None if self.known(&contact) => {
                        return Err(RoutingError::NotConnected(contact));
                    }
                    None => return Err(RoutingError::UnknownContact(contact)),
                };
                let handled = (now - conn.since).max(0) as f64 + self.cfg.wrap_up as f64;
                self.aht = 0.9 * self.aht + 0.1 * handled;
                self.callback_tries.remove(&contact);
                for agent in conn.agents {
                    self.release(agent, &contact, now);
                }
                // A doctor still being sought for it is no longer needed.
                self.drop_doctor_task(&contact, now, out);
            }
        }
        Ok(())
    }

    /// Whether `agent` may take `task` at `now` (skills, tier, night rule; not capacity).
    fn eligible(&self, agent: &AgentRt, need: &Need, task: &Task, now: Millis) -> bool {
        if !self.on_shift(agent.profile.id, now) {
            return false;
        }
        let waited = now - task.since();
        let speaks = |l: &str| agent.profile.languages.iter().any(|x| x == l);
        let language_ok = task.language.is_empty()
            || speaks(&task.language)
            || (waited >= self.cfg.language_relax && (speaks("hi") || speaks("en")));
        if !language_ok {
            return false;
        }
        match need {
            Need::Doctor => {
                let spec = agent.profile.specialty.as_deref();
                agent.profile.role == Role::Doctor
                    && (task.specialty.as_deref().is_none_or(|s| spec == Some(s))
                        || (waited >= self.cfg.specialty_relax && spec == Some("general")))
            }
            Need::Operator => match agent.profile.role {
                Role::Operator => true,
                // At night, doctors take emergencies (and, by default, others when idle).
                Role::Doctor => !self.operators_on(now) && (task.emergency || self.cfg.night_to_idle_doctor),
            },
        }
    }

    /// Room for one more contact of `media`; the idle-since time orders the candidates.
    fn capacity(&self, agent: &AgentRt, media: Media) -> Option<(u8, Millis)> {
        match (&agent.state, media) {
            (AgentState::Idle { since }, _) => Some((0, *since)),
            (AgentState::Busy, Media::Chat)
                if agent.handling.len() < self.cfg.max_chats
                    && agent.handling.iter().all(|(_, m)| *m == Media::Chat) =>
            {
                Some((1, agent.handling.len() as Millis))
            }
            _ => None,
        }
    }

    /// Offers waiting tasks, in queue order, to the longest-idle eligible agent.
    fn dispatch(&mut self, now: Millis, out: &mut Vec<Action>) {
        // Only agents with room can take anything: with none, there is nothing
        // to match (the common case under load), and the scan stops when they run out.
        let has_room = |e: &Engine| {
            e.agents.values().any(|a| e.capacity(a, Media::Chat).is_some() && e.on_shift(a.profile.id, now))
        };
        let night = !self.operators_on(now);
        if !has_room(self) && !night {
            return;
        }
        let mut cursor: Option<QueueKey> = None;
        loop {
            let next = match cursor {
                None => self.queue.iter().next(),
                Some(c) => self.queue.range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded)).next(),
            };
            let Some((key, tk)) = next.map(|(k, v)| (*k, v.clone())) else { break };
            cursor = Some(key);
            if !night && !has_room(self) {
                break;
            }
            let task = self.tasks.get(&tk).expect("queued task").clone();
            if task.not_before > now {
                continue;
            }
            let best = self
                .agents
                .values()
                .filter(|a| self.eligible(a, &tk.1, &task, now))
                .filter_map(|a| self.capacity(a, task.media).map(|c| (c, a.profile.id)))
                .min();
            if let Some((_, agent)) = best {
                let until = now + self.cfg.offer_timeout;
                self.q_remove(&key);
                let t = self.tasks.get_mut(&tk).expect("queued task");
                t.offered = Some(agent);
                self.agents.get_mut(&agent).expect("candidate").state =
                    AgentState::Offered { contact: tk.0.clone(), until };
                out.push(Action::Offer { contact: tk.0.clone(), agent, until, callback: task.callback });
                continue;
            }
            // Night: nobody on the phones for a non-emergency: call back when operators start.
            if tk.1 == Need::Operator
                && !task.emergency
                && !self.operators_on(now)
                && !task.night_callback_told
                && let Some(at) = self.next_operator_shift(now)
            {
                let t = self.tasks.get_mut(&tk).expect("queued task");
                t.night_callback_told = true;
                t.callback = true;
                t.not_before = at;
                out.push(Action::ScheduleCallback { contact: tk.0.clone(), at });
            }
        }
    }

    /// Agents of `need` on duty and not paused (at least one, for estimates).
    fn staffed(&self, need: &Need) -> f64 {
        let role = if *need == Need::Doctor { Role::Doctor } else { Role::Operator };
        self.agents
            .values()
            .filter(|a| a.profile.role == role && !matches!(a.state, AgentState::Paused { .. }))
            .count()
            .max(1) as f64
    }

    /// Tells a contact that joined the back of the queue (or the back of the
    /// emergencies) its place at once, from the queue counts.
    fn announce_newcomer(&mut self, tk: &TaskKey, now: Millis, out: &mut Vec<Action>) {
        let n = Self::need_index(&tk.1);
        let Some(task) = self.tasks.get(tk) else { return };
        let position = if task.emergency { self.queued_urgent[n] } else { self.queued[n] };
        if position <= FRONT {
            return; // the front is reviewed on every event
        }
        let estimate = (position as f64 * self.aht / self.staffed(&tk.1)) as Millis;
        if let Some(task) = self.tasks.get_mut(tk) {
            task.announced = Some((position, estimate, now));
        }
        out.push(Action::Position { contact: tk.0.clone(), position, estimated_wait: estimate });
    }

    /// Tells each waiting contact its position and estimated wait when either
    /// changes, and alerts supervisors of long waits.
    fn announce(&mut self, now: Millis, out: &mut Vec<Action>) {
        let staffed = |role: Role| {
            self.agents
                .values()
                .filter(|a| a.profile.role == role && !matches!(a.state, AgentState::Paused { .. }))
                .count()
                .max(1) as f64
        };
        let (operators, doctors) = (staffed(Role::Operator), staffed(Role::Doctor));
        let (mut ops_ahead, mut docs_ahead) = (0usize, 0usize);
        let aht = self.aht;
        let alert_after = self.cfg.long_wait_alert;
        // The front of the queue is reviewed on every event; the whole queue
        // every 10 s. A newcomer is told its place on arrival (`apply`).
        let full = now.saturating_sub(self.last_full_announce) >= 10_000;
        if full {
            self.last_full_announce = now;
        }
        let depth = if full { usize::MAX } else { FRONT };
        for tk in self.queue.values().take(depth) {
            let n = if tk.1 == Need::Doctor { &mut docs_ahead } else { &mut ops_ahead };
            *n += 1;
            let position = *n;
            // Each agent frees up about once per handle time: the contact is
            // served when `position` agents have freed up, spread over the staffed agents.
            let staffed = if tk.1 == Need::Doctor { doctors } else { operators };
            let estimate = (position as f64 * aht / staffed) as Millis;
            let task = self.tasks.get_mut(tk).expect("queued task");
            let estimate = estimate.max(task.not_before - now).max(0);
            // Told when the position or the estimate (by 30 s or more) changes;
            // at most every 10 s, except near the front of the queue.
            let changed = match task.announced {
                None => true,
                Some((p, e, at)) => {
                    (p != position || (e - estimate).abs() >= 30_000) && (position <= 3 || now - at >= 10_000)
                }
            };
            if changed {
                task.announced = Some((position, estimate, now));
                out.push(Action::Position { contact: tk.0.clone(), position, estimated_wait: estimate });
            }
            let waited = now - task.since();
            if !task.alerted && waited >= alert_after {
                task.alerted = true;
                out.push(Action::Alert { contact: tk.0.clone(), waited });
            }
        }
    }
}

/// An event with its instant, as logged and replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    pub at: Millis,
    pub event: Event,
}

impl Engine {
    /// Rebuilds an engine from its log: the same events give the same state.
    /// Events that were refused when logged are refused again and skipped.
    pub fn replay(roster: Roster, cfg: RoutingConfig, log: &[LoggedEvent]) -> Engine {
        let mut engine = Engine::new(roster, cfg);
        for e in log {
            let _ = engine.handle(e.at, e.event.clone());
        }
        engine
    }
}
