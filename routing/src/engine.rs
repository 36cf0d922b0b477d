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
//!
//! Speed: beside the queue the engine keeps ordered indexes (`QueueIndex`,
//! `AgentIndex`, `RosterIndex`) so that matching, [`Engine::next_timer`] and
//! the expiry of offers and wrap-ups neither walk the queue nor scan every
//! agent; only the review of every waiting contact's position, once per 10 s,
//! walks the queue. See `docs/benchmarks.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound::{Excluded, Unbounded};

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

impl Event {
    /// The event's `type` as it is serialized, e.g. `contact_arrived`: the
    /// routing log's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ContactArrived(_) => "contact_arrived",
            Event::Login { .. } => "login",
            Event::Logout { .. } => "logout",
            Event::Ready { .. } => "ready",
            Event::Pause { .. } => "pause",
            Event::WrapUpDone { .. } => "wrap_up_done",
            Event::Accept { .. } => "accept",
            Event::Decline { .. } => "decline",
            Event::Abandon { .. } => "abandon",
            Event::Escalate { .. } => "escalate",
            Event::Leave { .. } => "leave",
            Event::RequestCallback { .. } => "request_callback",
            Event::CallbackFailed { .. } => "callback_failed",
            Event::End { .. } => "end",
            Event::Tick => "tick",
        }
    }
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

/// The pause reason of an agent whose console is gone (no console has
/// listened for their offers for a while). Unlike a pause the agent asks
/// for, it is taken while they hold contacts: they keep those, and get no
/// new offers until their console is back and makes them ready.
pub const CONSOLE_GONE: &str = "console gone";

/// The offer ringing at an agent, for a console that (re)connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ringing {
    pub contact: ContactId,
    pub until: Millis,
    /// The agent calls the patient back.
    pub callback: bool,
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

impl AgentState {
    /// The state's name as it is serialized (its `state` tag), e.g. `wrap_up`.
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::Idle { .. } => "idle",
            AgentState::Offered { .. } => "offered",
            AgentState::Busy => "busy",
            AgentState::WrapUp { .. } => "wrap_up",
            AgentState::Paused { .. } => "paused",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct AgentRt {
    profile: AgentProfile,
    seat: SeatId,
    state: AgentState,
    missed: u32,
    handling: Vec<(ContactId, Media)>,
    /// Where the agent is filed in the [`AgentIndex`].
    filed: Filed,
}

/// An agent's entries in the [`AgentIndex`], as last filed.
#[derive(Clone, Debug, Default, PartialEq)]
struct Filed {
    /// Room for one more chat (and, at tier 0, for any contact): the `capacity` rank.
    room: Option<(u8, Millis)>,
    /// When their offer or wrap-up runs out.
    timer: Option<Millis>,
    /// Counted among the staffed (not paused) agents of their role.
    staffed: bool,
}

/// The logged-in agents by what matching and timers ask of them, so that
/// neither scans every agent.
#[derive(Clone, Debug, Default, PartialEq)]
struct AgentIndex {
    /// Per role (operators, doctors): agents with room, best first: (tier, idle since or chats held, id).
    room: [BTreeSet<(u8, Millis, AgentId)>; 2],
    /// Offers and wrap-ups by when they run out.
    timers: BTreeSet<(Millis, AgentId)>,
    /// Logged-in, unpaused agents per role.
    staffed: [usize; 2],
    seats: HashSet<SeatId>,
}

/// The roster by agent, built when the roster is set.
#[derive(Clone, Debug, Default, PartialEq)]
struct RosterIndex {
    /// The first profile of each agent in `roster.agents`.
    profiles: HashMap<AgentId, usize>,
    /// The shifts each agent is rostered on.
    shifts: HashMap<AgentId, Vec<usize>>,
    /// Every shift start and end, in order.
    boundaries: Vec<Millis>,
}

impl RosterIndex {
    fn new(roster: &Roster) -> RosterIndex {
        let mut index = RosterIndex::default();
        for (i, a) in roster.agents.iter().enumerate() {
            index.profiles.entry(a.id).or_insert(i);
        }
        for (i, s) in roster.shifts.iter().enumerate() {
            for a in &s.agents {
                let shifts = index.shifts.entry(*a).or_default();
                if shifts.last() != Some(&i) {
                    shifts.push(i);
                }
            }
            index.boundaries.extend([s.start, s.end]);
        }
        index.boundaries.sort_unstable();
        index
    }
}

/// Who a task needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Need {
    Operator,
    Doctor,
}

/// Tasks every agent judges alike: the same need, urgency, kind of media
/// (calls or chats), language and specialty. Within a class, queue order is
/// also the order of how far the relaxations have gone, so an agent who may
/// take any task of a class may take its first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClassKey {
    need: Need,
    emergency: bool,
    chat: bool,
    language: String,
    specialty: Option<String>,
}

/// The queue by what matching and timers ask of it, so that neither walks
/// the whole queue. Holds exactly the queued (not offered) tasks.
#[derive(Clone, Debug, Default, PartialEq)]
struct QueueIndex {
    class_ids: HashMap<ClassKey, usize>,
    /// Per class: its tasks that are due (not in `deferred`), in queue order.
    classes: Vec<BTreeSet<QueueKey>>,
    /// Classes with due tasks.
    live: BTreeSet<usize>,
    /// Tasks filed before they were due (`not_before` after the engine's time), by when they are due.
    deferred: BTreeSet<(Millis, QueueKey)>,
    /// Due non-emergency tasks for operators not yet promised a night callback.
    untold: BTreeSet<QueueKey>,
    /// When each task's wait began (with its sequence number): the language relax timer;
    /// of those with a specialty: the specialty relax timer; of those not alerted: the alert timer.
    since: BTreeSet<(Millis, u64)>,
    since_specialty: BTreeSet<(Millis, u64)>,
    since_unalerted: BTreeSet<(Millis, u64)>,
}

impl QueueIndex {
    fn class(&mut self, key: ClassKey) -> usize {
        let next = self.classes.len();
        let id = *self.class_ids.entry(key).or_insert(next);
        if id == next {
            self.classes.push(BTreeSet::new());
        }
        id
    }

    fn file_due(&mut self, key: QueueKey, class: usize, untold: bool) {
        self.classes[class].insert(key);
        self.live.insert(class);
        if untold {
            self.untold.insert(key);
        }
    }

    fn unfile_due(&mut self, key: &QueueKey, class: usize) {
        let tasks = &mut self.classes[class];
        tasks.remove(key);
        if tasks.is_empty() {
            self.live.remove(&class);
        }
        self.untold.remove(key);
    }

    /// The first time after `now` that one of `set`'s waits reaches `after`.
    fn first_after(set: &BTreeSet<(Millis, u64)>, now: Millis, after: Millis) -> Option<Millis> {
        set.range((Excluded((now.saturating_sub(after), u64::MAX)), Unbounded)).next().map(|(since, _)| since + after)
    }
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Operator => 0,
        Role::Doctor => 1,
    }
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
    /// Its class in the [`QueueIndex`].
    class: usize,
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
/// Equal when every part of the state is: what replay and restore tests
/// compare (not `Eq`: the average handle time is a float).
#[derive(Clone, Debug, PartialEq)]
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
    rindex: RosterIndex,
    aindex: AgentIndex,
    qindex: QueueIndex,
}

impl Engine {
    pub fn new(roster: Roster, cfg: RoutingConfig) -> Engine {
        let aht = cfg.initial_aht as f64;
        Engine {
            cfg,
            rindex: RosterIndex::new(&roster),
            aindex: AgentIndex::default(),
            qindex: QueueIndex::default(),
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
        self.rindex = RosterIndex::new(&roster);
        self.roster = roster;
    }

    pub fn agent_state(&self, agent: AgentId) -> Option<&AgentState> {
        self.agents.get(&agent).map(|a| &a.state)
    }

    /// The offer ringing at `agent`, if any.
    pub fn ringing(&self, agent: AgentId) -> Option<Ringing> {
        let AgentState::Offered { contact, until } = &self.agents.get(&agent)?.state else { return None };
        let tk = self.offered_task(agent, contact)?;
        Some(Ringing { contact: contact.clone(), until: *until, callback: self.tasks[&tk].callback })
    }

    /// The contacts `agent` is connected to, in the order they took them
    /// (none when not logged in).
    pub fn handling(&self, agent: AgentId) -> Vec<ContactId> {
        self.agents.get(&agent).map(|a| a.handling.iter().map(|(c, _)| c.clone()).collect()).unwrap_or_default()
    }

    /// Every logged-in agent, their seat and state.
    pub fn agents(&self) -> impl Iterator<Item = (AgentId, SeatId, &AgentState)> {
        self.agents.values().map(|a| (a.profile.id, a.seat, &a.state))
    }

    /// The place and estimated wait a waiting contact was last told, for a
    /// page that starts listening after the announcement.
    pub fn announced(&self, contact: &ContactId) -> Option<(usize, Millis)> {
        [Need::Doctor, Need::Operator]
            .into_iter()
            .find_map(|need| self.tasks.get(&(contact.clone(), need)))
            .filter(|task| self.queue.contains_key(&task.key))
            .and_then(|task| task.announced)
            .map(|(position, estimate, _)| (position, estimate))
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
    ///
    /// The earliest of: an offer or wrap-up running out, a queued task falling
    /// due (a callback retry), a waiting task's language or specialty relaxing
    /// or its long-wait alert, a shift starting or ending. Each comes from an
    /// ordered index, so the cost does not grow with the queue.
    pub fn next_timer(&self) -> Option<Millis> {
        let now = self.now;
        let q = &self.qindex;
        let offers = self.aindex.timers.range((Excluded((now, AgentId(i64::MAX))), Unbounded)).next().map(|t| t.0);
        let due = q.deferred.range((Excluded((now, (u8::MAX, Millis::MAX, u64::MAX))), Unbounded)).next().map(|t| t.0);
        let language = QueueIndex::first_after(&q.since, now, self.cfg.language_relax);
        let specialty = QueueIndex::first_after(&q.since_specialty, now, self.cfg.specialty_relax);
        let alert = QueueIndex::first_after(&q.since_unalerted, now, self.cfg.long_wait_alert);
        let b = &self.rindex.boundaries;
        let shift = b.get(b.partition_point(|t| *t <= now)).copied();
        [offers, due, language, specialty, alert, shift].into_iter().flatten().min()
    }

    fn on_shift(&self, agent: AgentId, now: Millis) -> bool {
        let shifts = &self.roster.shifts;
        self.rindex
            .shifts
            .get(&agent)
            .is_some_and(|v| v.iter().any(|i| shifts[*i].start <= now && now < shifts[*i].end))
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
        let timers = &self.aindex.timers;
        if timers.first().is_none_or(|t| t.0 > now) {
            return;
        }
        // Offers first, then wrap-ups, each in agent order.
        let mut due: Vec<(AgentId, ContactId)> = Vec::new();
        let mut wrapped: Vec<AgentId> = Vec::new();
        for (_, id) in timers.range(..=(now, AgentId(i64::MAX))) {
            match &self.agents[id].state {
                AgentState::Offered { contact, .. } => due.push((*id, contact.clone())),
                _ => wrapped.push(*id),
            }
        }
        due.sort_unstable_by_key(|d| d.0);
        wrapped.sort_unstable();
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
            self.refile(agent);
        }
        for agent in wrapped {
            let a = self.agents.get_mut(&agent).expect("filed agent");
            if let AgentState::WrapUp { until } = a.state
                && until <= now
            {
                a.state = AgentState::Idle { since: now };
                self.refile(agent);
            }
        }
    }

    /// Files `agent` again in the [`AgentIndex`] after their state changed
    /// (a logged-out agent is taken out of it).
    fn refile(&mut self, agent: AgentId) {
        let (role, old, new) = match self.agents.get(&agent) {
            Some(a) => {
                let new = Filed {
                    room: self.capacity(a, Media::Chat),
                    timer: match a.state {
                        AgentState::Offered { until, .. } | AgentState::WrapUp { until } => Some(until),
                        _ => None,
                    },
                    staffed: !matches!(a.state, AgentState::Paused { .. }),
                };
                let role = role_index(a.profile.role);
                let a = self.agents.get_mut(&agent).expect("present");
                (role, std::mem::replace(&mut a.filed, new.clone()), new)
            }
            None => return,
        };
        self.file(agent, role, &old, &new);
    }

    fn file(&mut self, agent: AgentId, role: usize, old: &Filed, new: &Filed) {
        let index = &mut self.aindex;
        if old.room != new.room {
            if let Some((tier, rank)) = old.room {
                index.room[role].remove(&(tier, rank, agent));
            }
            if let Some((tier, rank)) = new.room {
                index.room[role].insert((tier, rank, agent));
            }
        }
        if old.timer != new.timer {
            if let Some(t) = old.timer {
                index.timers.remove(&(t, agent));
            }
            if let Some(t) = new.timer {
                index.timers.insert((t, agent));
            }
        }
        index.staffed[role] = index.staffed[role] + usize::from(new.staffed) - usize::from(old.staffed);
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
        if !self.rindex.profiles.contains_key(&agent) {
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
            class: 0,
            callback: false,
            tries: 0,
            not_before: now,
            offered: None,
            announced: None,
            alerted: false,
            night_callback_told: false,
        }
    }

    fn enqueue(&mut self, tk: TaskKey, mut task: Task) {
        task.class = self.qindex.class(ClassKey {
            need: tk.1,
            emergency: task.emergency,
            chat: task.media == Media::Chat,
            language: task.language.clone(),
            specialty: task.specialty.clone(),
        });
        let key = task.key;
        self.tasks.insert(tk.clone(), task);
        self.q_insert(key, tk);
    }

    fn need_index(need: &Need) -> usize {
        match need {
            Need::Operator => 0,
            Need::Doctor => 1,
        }
    }

    /// Whether a queued task may still be promised a night callback.
    fn untold(tk: &TaskKey, task: &Task) -> bool {
        tk.1 == Need::Operator && !task.emergency && !task.night_callback_told
    }

    /// Puts a task (already in `tasks`) in the queue, keeping the counts that
    /// give a newcomer its position and the [`QueueIndex`].
    fn q_insert(&mut self, key: QueueKey, tk: TaskKey) {
        let n = Self::need_index(&tk.1);
        self.queued[n] += 1;
        if key.0 == 0 {
            self.queued_urgent[n] += 1;
        }
        let task = &self.tasks[&tk];
        let index = &mut self.qindex;
        index.since.insert((key.1, key.2));
        if task.specialty.is_some() {
            index.since_specialty.insert((key.1, key.2));
        }
        if !task.alerted {
            index.since_unalerted.insert((key.1, key.2));
        }
        if task.not_before > self.now {
            index.deferred.insert((task.not_before, key));
        } else {
            index.file_due(key, task.class, Self::untold(&tk, task));
        }
        self.queue.insert(key, tk);
    }

    /// Takes a task (still in `tasks`) out of the queue, if it is queued.
    fn q_remove(&mut self, key: &QueueKey) -> Option<TaskKey> {
        let tk = self.queue.remove(key)?;
        let n = Self::need_index(&tk.1);
        self.queued[n] -= 1;
        if key.0 == 0 {
            self.queued_urgent[n] -= 1;
        }
        let task = &self.tasks[&tk];
        let index = &mut self.qindex;
        for set in [&mut index.since, &mut index.since_specialty, &mut index.since_unalerted] {
            set.remove(&(key.1, key.2));
        }
        if !index.deferred.remove(&(task.not_before, *key)) {
            index.unfile_due(key, task.class);
        }
        Some(tk)
    }

    /// Moves the tasks that fell due by `now` to their classes.
    fn promote(&mut self, now: Millis) {
        while let Some(&(at, key)) = self.qindex.deferred.first()
            && at <= now
        {
            self.qindex.deferred.pop_first();
            let tk = &self.queue[&key];
            let task = &self.tasks[tk];
            self.qindex.file_due(key, task.class, Self::untold(tk, task));
        }
    }

    /// Removes a task, queued or offered.
    fn remove_task(&mut self, tk: &TaskKey) -> Option<Task> {
        let key = self.tasks.get(tk)?.key;
        self.q_remove(&key);
        self.tasks.remove(tk)
    }

    /// Removes the doctor task of `contact`, if any, withdrawing its offer.
    fn drop_doctor_task(&mut self, contact: &ContactId, now: Millis, out: &mut Vec<Action>) {
        if let Some(task) = self.remove_task(&(contact.clone(), Need::Doctor))
            && let Some(agent) = task.offered
        {
            out.push(Action::Withdraw { contact: contact.clone(), agent });
            Self::settle(self.agents.get_mut(&agent).expect("offered agent"), now);
            self.refile(agent);
        }
    }

    /// An agent stops handling a contact; with nothing left they wrap up.
    fn release(&mut self, agent: AgentId, contact: &ContactId, now: Millis) {
        if let Some(a) = self.agents.get_mut(&agent) {
            a.handling.retain(|(c, _)| c != contact);
            if a.handling.is_empty() && matches!(a.state, AgentState::Busy) {
                a.state = AgentState::WrapUp { until: now + self.cfg.wrap_up };
            }
            self.refile(agent);
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
                    .rindex
                    .profiles
                    .get(&agent)
                    .map(|i| self.roster.agents[*i].clone())
                    .ok_or(RoutingError::UnknownAgent(agent))?;
                if self.agents.contains_key(&agent) {
                    return Err(RoutingError::AlreadyLoggedIn(agent));
                }
                let s = self.roster.seats.iter().find(|s| s.id == seat).ok_or(RoutingError::UnknownSeat(seat))?;
                if self.aindex.seats.contains(&seat) {
                    return Err(RoutingError::SeatTaken(seat));
                }
                if s.peak && !self.peak_open(now) {
                    return Err(RoutingError::PeakSeatClosed(seat));
                }
                if !self.on_shift(agent, now) {
                    return Err(RoutingError::NotRostered(agent));
                }
                let state = AgentState::Paused { reason: "logged in".into() };
                let filed = Filed::default();
                self.agents.insert(agent, AgentRt { profile, seat, state, missed: 0, handling: Vec::new(), filed });
                self.aindex.seats.insert(seat);
                self.refile(agent);
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
                let a = self.agents.remove(&agent).expect("logged in");
                self.file(agent, role_index(a.profile.role), &a.filed, &Filed::default());
                self.aindex.seats.remove(&a.seat);
            }
            Event::Ready { agent } => {
                let a = self.logged_in(agent)?;
                if matches!(a.state, AgentState::Paused { .. } | AgentState::WrapUp { .. }) {
                    a.missed = 0;
                    Self::settle(a, now);
                    self.refile(agent);
                }
            }
            Event::Pause { agent, reason } => {
                let a = self.logged_in(agent)?;
                // A console gone pauses an agent on a contact too: the contact stays theirs.
                if !a.handling.is_empty() && reason != CONSOLE_GONE {
                    return Err(RoutingError::AgentBusy(agent));
                }
                let offered = match &a.state {
                    AgentState::Offered { contact, .. } => Some(contact.clone()),
                    _ => None,
                };
                a.state = AgentState::Paused { reason };
                self.refile(agent);
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
                self.refile(agent);
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
                self.refile(agent);
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
                self.refile(agent);
            }
            Event::Abandon { contact } => {
                if self.connections.contains_key(&contact) {
                    return Err(RoutingError::Connected(contact));
                }
                let tk = (contact.clone(), Need::Operator);
                let tk = if self.tasks.contains_key(&tk) { tk } else { (contact.clone(), Need::Doctor) };
                let task = self.remove_task(&tk).ok_or(RoutingError::UnknownContact(contact.clone()))?;
                if let Some(agent) = task.offered {
                    out.push(Action::Withdraw { contact, agent });
                    Self::settle(self.agents.get_mut(&agent).expect("offered agent"), now);
                    self.refile(agent);
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
    ///
    /// The same as walking the queue from the front and offering each due
    /// task to the best eligible agent with room (at night, promising a
    /// callback to a non-emergency nobody can take), without the walk: offers
    /// only ever take agents away, so the next task offered is the first, in
    /// queue order, of the classes' candidates, where a class's candidate is
    /// its first due task if any agent may take it (if none may, none may take
    /// any later task of the class either). A class's candidate is found again
    /// only when its task or agent was just taken.
    fn dispatch(&mut self, now: Millis, out: &mut Vec<Action>) {
        let night = !self.operators_on(now);
        // With no agent on shift with room there is nothing to match (the common case under load).
        if !night && !self.any_room(now) {
            return;
        }
        self.promote(now);
        let callbacks_at = if night { self.next_operator_shift(now) } else { None };
        let classes: Vec<usize> = self.qindex.live.iter().copied().collect();
        let mut candidates: Vec<Option<Option<(QueueKey, AgentId)>>> = vec![None; classes.len()];
        loop {
            let mut best: Option<(QueueKey, AgentId)> = None;
            for (i, class) in classes.iter().enumerate() {
                let candidate = *candidates[i].get_or_insert_with(|| self.candidate(*class, now));
                if let Some(c) = candidate
                    && best.is_none_or(|b| c.0 < b.0)
                {
                    best = Some(c);
                }
            }
            // Night: nobody on the phones for a non-emergency before the next
            // offer: call back when operators start.
            if let Some(at) = callbacks_at
                && let Some(key) = self.first_untold(now)
                && best.is_none_or(|b| key < b.0)
            {
                let tk = self.q_remove(&key).expect("queued task");
                let t = self.tasks.get_mut(&tk).expect("queued task");
                t.night_callback_told = true;
                t.callback = true;
                t.not_before = at;
                self.q_insert(key, tk.clone());
                out.push(Action::ScheduleCallback { contact: tk.0, at });
                continue;
            }
            let Some((key, agent)) = best else { break };
            let until = now + self.cfg.offer_timeout;
            let tk = self.q_remove(&key).expect("queued task");
            let t = self.tasks.get_mut(&tk).expect("queued task");
            t.offered = Some(agent);
            let (class, callback) = (t.class, t.callback);
            self.agents.get_mut(&agent).expect("candidate").state =
                AgentState::Offered { contact: tk.0.clone(), until };
            self.refile(agent);
            out.push(Action::Offer { contact: tk.0, agent, until, callback });
            for (i, c) in classes.iter().enumerate() {
                if *c == class || candidates[i].is_some_and(|x| x.is_some_and(|x| x.1 == agent)) {
                    candidates[i] = None;
                }
            }
        }
    }

    /// Whether an agent on shift has room for another contact.
    fn any_room(&self, now: Millis) -> bool {
        self.aindex.room.iter().any(|agents| agents.iter().any(|(_, _, id)| self.on_shift(*id, now)))
    }

    /// The first due task of `class` and its best agent, if one may take it.
    fn candidate(&self, class: usize, now: Millis) -> Option<(QueueKey, AgentId)> {
        let (key, tk, task) = self.qindex.classes[class].iter().find_map(|key| {
            let tk = &self.queue[key];
            let task = &self.tasks[tk];
            (task.not_before <= now).then_some((*key, tk, task))
        })?;
        self.best_agent(&tk.1, task, now).map(|agent| (key, agent))
    }

    /// The eligible agent with room who ranks first for `task`: the one idle
    /// longest (for a chat, then the one with the fewest chats).
    fn best_agent(&self, need: &Need, task: &Task, now: Millis) -> Option<AgentId> {
        let first = |role: Role| {
            self.aindex.room[role_index(role)]
                .iter()
                .take_while(|(tier, _, _)| *tier == 0 || task.media == Media::Chat)
                .find(|(_, _, id)| self.eligible(&self.agents[id], need, task, now))
                .copied()
        };
        let best = match need {
            Need::Doctor => first(Role::Doctor),
            Need::Operator => {
                let operator = first(Role::Operator);
                // At night doctors may take operators' contacts (see `eligible`).
                let doctors = !self.operators_on(now) && (task.emergency || self.cfg.night_to_idle_doctor);
                let doctor = if doctors { first(Role::Doctor) } else { None };
                operator.into_iter().chain(doctor).min()
            }
        };
        best.map(|(_, _, id)| id)
    }

    /// The first due task that may still be promised a night callback.
    fn first_untold(&self, now: Millis) -> Option<QueueKey> {
        self.qindex.untold.iter().find(|key| self.tasks[&self.queue[key]].not_before <= now).copied()
    }

    /// Agents of `need` on duty and not paused (at least one, for estimates).
    fn staffed(&self, need: &Need) -> f64 {
        self.aindex.staffed[Self::need_index(need)].max(1) as f64
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
        let (operators, doctors) = (self.staffed(&Need::Operator), self.staffed(&Need::Doctor));
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
                self.qindex.since_unalerted.remove(&(task.key.1, task.key.2));
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

#[cfg(test)]
mod tests {
    use super::*;

    impl Engine {
        /// Rebuilds every index from the state it indexes and compares.
        fn check_indexes(&self) {
            let mut room = [BTreeSet::new(), BTreeSet::new()];
            let mut timers = BTreeSet::new();
            let mut staffed = [0; 2];
            for (id, a) in &self.agents {
                let r = role_index(a.profile.role);
                if let Some((tier, rank)) = self.capacity(a, Media::Chat) {
                    room[r].insert((tier, rank, *id));
                }
                if let AgentState::Offered { until, .. } | AgentState::WrapUp { until } = a.state {
                    timers.insert((until, *id));
                }
                staffed[r] += usize::from(!matches!(a.state, AgentState::Paused { .. }));
            }
            assert_eq!(self.aindex.room, room);
            assert_eq!(self.aindex.timers, timers);
            assert_eq!(self.aindex.staffed, staffed);
            let seats: HashSet<SeatId> = self.agents.values().map(|a| a.seat).collect();
            assert_eq!(self.aindex.seats, seats);

            let queued: BTreeSet<QueueKey> =
                self.tasks.values().filter(|t| t.offered.is_none()).map(|t| t.key).collect();
            assert_eq!(queued, self.queue.keys().copied().collect(), "queued tasks are the unoffered ones");
            let q = &self.qindex;
            let mut since = [BTreeSet::new(), BTreeSet::new(), BTreeSet::new()];
            let mut classes = vec![BTreeSet::new(); q.classes.len()];
            let mut deferred = BTreeSet::new();
            let mut untold = BTreeSet::new();
            for (key, tk) in &self.queue {
                let task = &self.tasks[tk];
                assert_eq!(task.key, *key);
                since[0].insert((key.1, key.2));
                if task.specialty.is_some() {
                    since[1].insert((key.1, key.2));
                }
                if !task.alerted {
                    since[2].insert((key.1, key.2));
                }
                if q.deferred.contains(&(task.not_before, *key)) {
                    deferred.insert((task.not_before, *key));
                } else {
                    assert!(task.not_before <= self.now, "a task filed as due is due");
                    classes[task.class].insert(*key);
                    if Self::untold(tk, task) {
                        untold.insert(*key);
                    }
                }
            }
            assert_eq!([&q.since, &q.since_specialty, &q.since_unalerted], [&since[0], &since[1], &since[2]]);
            assert_eq!(q.deferred, deferred);
            assert_eq!(q.classes, classes);
            assert_eq!(q.untold, untold);
            let live: BTreeSet<usize> = (0..classes.len()).filter(|c| !classes[*c].is_empty()).collect();
            assert_eq!(q.live, live);
        }
    }

    /// Many events of every kind, valid and not, at moving (sometimes
    /// backward) times, over a roster with shifts, night and day: the indexes
    /// always agree with the state they index.
    #[test]
    fn the_indexes_follow_every_change() {
        const H: Millis = 3_600_000;
        let languages: [&[&str]; 4] = [&["hi", "en"], &["hi"], &["en", "pa"], &["hi", "ta"]];
        let mut agents: Vec<AgentProfile> = (1..=12)
            .map(|i| AgentProfile {
                id: AgentId(i),
                role: Role::Operator,
                languages: languages[i as usize % 4].iter().map(|l| l.to_string()).collect(),
                specialty: None,
            })
            .collect();
        for (i, spec) in ["general", "paediatrics", "general", "cardiology"].iter().enumerate() {
            agents.push(AgentProfile {
                id: AgentId(100 + i as i64),
                role: Role::Doctor,
                languages: vec!["hi".into(), "en".into()],
                specialty: Some(spec.to_string()),
            });
        }
        let shift = |role, start, end, peak, ids: &[i64]| Shift {
            role,
            start: start * H,
            end: end * H,
            peak,
            agents: ids.iter().map(|a| AgentId(*a)).collect(),
        };
        let roster = Roster {
            agents,
            seats: (1..=16).map(|i| Seat { id: SeatId(i), peak: i > 14 }).collect(),
            shifts: vec![
                shift(Role::Operator, 6, 14, false, &[1, 2, 3, 4, 5, 6]),
                shift(Role::Operator, 10, 18, true, &[7, 8]),
                shift(Role::Operator, 14, 22, false, &[9, 10, 11, 12, 1]),
                shift(Role::Operator, 30, 38, false, &[1, 2, 3, 4, 5, 6]),
                shift(Role::Doctor, 0, 48, false, &[100, 101, 102, 103]),
            ],
        };
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..4 {
            let cfg = RoutingConfig {
                wrap_up: if round % 2 == 0 { 30_000 } else { 0 },
                night_to_idle_doctor: round % 3 != 0,
                ..RoutingConfig::default()
            };
            let mut e = Engine::new(roster.clone(), cfg);
            let mut now = (4 + 4 * round as i64) * H;
            let mut offers: Vec<(AgentId, ContactId)> = Vec::new();
            let mut contacts: Vec<ContactId> = Vec::new();
            let mut connected: Vec<(AgentId, ContactId)> = Vec::new();
            let ids: Vec<i64> = (1..=12).chain(100..104).chain(100..104).chain([999]).collect();
            for step in 0..1_500 {
                now += match rnd(50) {
                    0 => -(rnd(20_000) as Millis),
                    1..=8 => e.next_timer().map_or(0, |t| (t - now).clamp(0, 20 * 60_000)),
                    _ => rnd(6_000) as Millis,
                };
                let agent = AgentId(ids[rnd(ids.len() as u64) as usize]);
                let contact = if contacts.is_empty() || rnd(10) == 0 {
                    ContactId(format!("c{}", rnd(3)))
                } else {
                    contacts[rnd(contacts.len() as u64) as usize].clone()
                };
                let offer = (!offers.is_empty()).then(|| offers[rnd(offers.len() as u64) as usize].clone());
                let (agent, contact) = match rnd(20) {
                    0..=11 => (agent, contact),
                    _ if connected.is_empty() => (agent, contact),
                    _ => connected[rnd(connected.len() as u64) as usize].clone(),
                };
                let event = match rnd(20) {
                    0..=3 => {
                        let id = ContactId(format!("c{step}"));
                        contacts.push(id.clone());
                        Event::ContactArrived(NewContact {
                            id,
                            media: [Media::Voice, Media::Video, Media::Chat, Media::Chat][rnd(4) as usize],
                            language: ["hi", "en", "pa", "ta", ""][rnd(5) as usize].into(),
                            emergency: rnd(10) == 0,
                            specialty: (rnd(8) == 0)
                                .then(|| ["general", "paediatrics", "neurology"][rnd(3) as usize].into()),
                        })
                    }
                    4 => Event::Login { agent, seat: SeatId(1 + rnd(17) as i64) },
                    5 => Event::Logout { agent },
                    6 | 7 => Event::Ready { agent },
                    8 => Event::Pause { agent, reason: "break".into() },
                    9 => Event::WrapUpDone { agent },
                    10 | 11 => match offer {
                        Some((agent, contact)) => Event::Accept { agent, contact },
                        None => Event::Accept { agent, contact },
                    },
                    12 => match offer {
                        Some((agent, contact)) if rnd(2) == 0 => Event::Decline { agent, contact },
                        _ => Event::Decline { agent, contact },
                    },
                    13 => Event::Abandon { contact },
                    14 => {
                        let specialty = ["general", "paediatrics", "cardiology"][rnd(3) as usize].into();
                        Event::Escalate { contact, specialty, urgent: rnd(2) == 0 }
                    }
                    15 => Event::Leave { agent, contact },
                    16 => Event::RequestCallback { contact },
                    17 => Event::CallbackFailed { agent, contact },
                    18 => match offer {
                        // Ends (and failed callbacks) while a doctor task of the contact rings.
                        Some((_, contact)) if rnd(2) == 0 => Event::End { contact },
                        _ => Event::End { contact },
                    },
                    _ => Event::Tick,
                };
                let accepted = match &event {
                    Event::Accept { agent, contact } => Some((*agent, contact.clone())),
                    _ => None,
                };
                if let Ok(out) = e.handle(now, event) {
                    connected.extend(accepted);
                    for a in out {
                        match a {
                            Action::Offer { contact, agent, .. } => offers.push((agent, contact)),
                            Action::Withdraw { contact, agent } => offers.retain(|o| *o != (agent, contact.clone())),
                            _ => {}
                        }
                    }
                }
                connected.retain(|(a, _)| matches!(e.agent_state(*a), Some(AgentState::Busy)));
                offers.retain(
                    |(a, c)| matches!(e.agent_state(*a), Some(AgentState::Offered { contact, .. }) if contact == c),
                );
                e.check_indexes();
            }
        }
    }
}
