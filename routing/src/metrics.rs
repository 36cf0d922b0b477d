//! Time per agent state: how long each agent was idle (ready), ringing with
//! an offer, busy, in wrap-up, and paused (by reason), per 30-minute interval
//! and per shift. Logged-out time is not counted.
//!
//! Pure: the routing event log is replayed through an engine with the same
//! roster and configuration. The server logs a `Tick` only when it decided
//! something, so the replay runs the engine's timers itself, each at its due
//! instant ([`Engine::next_timer`]): a wrap-up or an unanswered offer ends
//! exactly when it runs out, not at the next logged event.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::*;

/// What an agent was doing, for time accounting.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum StateKind {
    Idle,
    Offered,
    Busy,
    WrapUp,
    Paused(String),
}

impl StateKind {
    pub fn of(state: &AgentState) -> StateKind {
        match state {
            AgentState::Idle { .. } => StateKind::Idle,
            AgentState::Offered { .. } => StateKind::Offered,
            AgentState::Busy => StateKind::Busy,
            AgentState::WrapUp { .. } => StateKind::WrapUp,
            AgentState::Paused { reason } => StateKind::Paused(reason.clone()),
        }
    }
}

/// An agent in one state from `from` until `to` (milliseconds, UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateSpan {
    pub agent: AgentId,
    pub state: StateKind,
    pub from: Millis,
    pub to: Millis,
}

/// Time in each state, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StateTimes {
    pub idle: Millis,
    pub offered: Millis,
    pub busy: Millis,
    pub wrap_up: Millis,
    /// By reason: "logged in" (not yet ready), "missed offers", or the agent's own.
    pub paused: BTreeMap<String, Millis>,
}

impl StateTimes {
    fn add(&mut self, state: &StateKind, ms: Millis) {
        match state {
            StateKind::Idle => self.idle += ms,
            StateKind::Offered => self.offered += ms,
            StateKind::Busy => self.busy += ms,
            StateKind::WrapUp => self.wrap_up += ms,
            StateKind::Paused(reason) => *self.paused.entry(reason.clone()).or_default() += ms,
        }
    }

    /// Logged-in time: the sum of every state.
    pub fn logged_in(&self) -> Millis {
        self.idle + self.offered + self.busy + self.wrap_up + self.paused.values().sum::<Millis>()
    }
}

/// One agent's time per state within one period: an interval or a shift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentPeriod {
    pub agent: AgentId,
    pub start: Millis,
    pub end: Millis,
    /// The shift (index into `Roster::shifts`), for per-shift figures.
    pub shift: Option<usize>,
    pub times: StateTimes,
}

/// Every agent's states over time, from the log, up to `until`: the spans
/// of each agent, in the order they ended. Events after `until` are ignored;
/// agents still logged in at `until` have their last span end there.
pub fn state_spans(roster: &Roster, cfg: &RoutingConfig, log: &[LoggedEvent], until: Millis) -> Vec<StateSpan> {
    let mut engine = Engine::new(roster.clone(), cfg.clone());
    let mut r = Recorder { open: BTreeMap::new(), clock: Millis::MIN, spans: Vec::new() };
    for e in log.iter().take_while(|e| e.at <= until) {
        r.run_timers(&mut engine, e.at);
        let _ = engine.handle(e.at, e.event.clone());
        r.observe(&engine, e.at);
    }
    r.run_timers(&mut engine, until);
    let end = r.clock.max(until);
    for (agent, (state, from)) in r.open {
        r.spans.push(StateSpan { agent, state, from, to: end });
    }
    r.spans.retain(|s| s.to > s.from);
    r.spans
}

struct Recorder {
    /// Each logged-in agent's state and since when.
    open: BTreeMap<AgentId, (StateKind, Millis)>,
    clock: Millis,
    spans: Vec<StateSpan>,
}

impl Recorder {
    /// Runs the engine's timers that fall due by `t`, each at its instant.
    fn run_timers(&mut self, engine: &mut Engine, t: Millis) {
        while let Some(due) = engine.next_timer()
            && due <= t
        {
            let _ = engine.handle(due, Event::Tick);
            self.observe(engine, due);
        }
    }

    /// Closes the span of every agent whose state changed (or who logged out) at `at`.
    fn observe(&mut self, engine: &Engine, at: Millis) {
        self.clock = self.clock.max(at);
        let mut now_open = BTreeMap::new();
        for (agent, _, state) in engine.agents() {
            let kind = StateKind::of(state);
            let since = match self.open.remove(&agent) {
                Some((was, from)) if was == kind => from,
                Some((was, from)) => {
                    self.spans.push(StateSpan { agent, state: was, from, to: self.clock });
                    self.clock
                }
                None => self.clock,
            };
            now_open.insert(agent, (kind, since));
        }
        // Whoever is left logged out.
        for (agent, (state, from)) in std::mem::replace(&mut self.open, now_open) {
            self.spans.push(StateSpan { agent, state, from, to: self.clock });
        }
    }
}

/// Splits the spans into intervals of `interval` ms aligned on `origin` (a
/// local midnight; in India, UTC half hours are local half hours). One row
/// per agent and interval with time in it, by agent then interval.
pub fn per_interval(spans: &[StateSpan], origin: Millis, interval: Millis) -> Vec<AgentPeriod> {
    assert!(interval > 0, "the interval must be positive");
    let mut rows: BTreeMap<(AgentId, Millis), StateTimes> = BTreeMap::new();
    for s in spans {
        let mut from = s.from;
        while from < s.to {
            let start = origin + (from - origin).div_euclid(interval) * interval;
            let to = s.to.min(start + interval);
            rows.entry((s.agent, start)).or_default().add(&s.state, to - from);
            from = to;
        }
    }
    rows.into_iter()
        .map(|((agent, start), times)| AgentPeriod { agent, start, end: start + interval, shift: None, times })
        .collect()
}

/// For every shift of the roster and every agent rostered on it, their time
/// per state within the shift's window (including time logged in before or
/// after their own shift only as far as it falls in the window), by shift.
pub fn per_shift(spans: &[StateSpan], roster: &Roster) -> Vec<AgentPeriod> {
    let mut by_agent: BTreeMap<AgentId, Vec<&StateSpan>> = BTreeMap::new();
    for s in spans {
        by_agent.entry(s.agent).or_default().push(s);
    }
    let mut rows = Vec::new();
    for (i, shift) in roster.shifts.iter().enumerate() {
        for agent in &shift.agents {
            let mut times = StateTimes::default();
            for s in by_agent.get(agent).into_iter().flatten() {
                let (from, to) = (s.from.max(shift.start), s.to.min(shift.end));
                if to > from {
                    times.add(&s.state, to - from);
                }
            }
            rows.push(AgentPeriod { agent: *agent, start: shift.start, end: shift.end, shift: Some(i), times });
        }
    }
    rows
}
