//! Presence: which agents have a console listening (an open
//! `/api/agent/stream`) on this node, and the task that pauses an agent
//! whose console has been gone longer than the grace period, so their offer
//! is withdrawn and re-offered at once instead of ringing nobody until it
//! runs out.
//!
//! The engine holds the decision: the agent is paused with the reason
//! [`routing::CONSOLE_GONE`] (which, unlike a pause they ask for, leaves them
//! the contacts they hold), and made ready again when a console of theirs
//! listens. An agent who paused themselves is left alone both ways, so
//! "resumes as they were" needs no memory here: the reason in the engine says it.
//!
//! With the Local backing every console connects to this node, so every
//! logged-in agent is this node's to judge. With Redis a node judges only
//! agents whose console it has seen (and forgets them once paused): another
//! node's consoles are not counted here. A console that moves between nodes
//! can thus be paused once by the node it left and is made ready again by
//! the node it joined (at its next check).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use routing::{AgentId, AgentState, CONSOLE_GONE, Event};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Center, CenterError};

/// The open consoles per agent on this node. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

struct Inner {
    /// Per agent: how many consoles are open, and since when none is (or
    /// since this node first saw them available without one). A
    /// `std::sync::Mutex`: it is held for a map lookup, never across `.await`.
    seen: Mutex<HashMap<i64, Seen>>,
    /// How long an agent may be without a console before being paused.
    grace: Duration,
    /// Every logged-in agent is this node's to judge (the Local backing), or
    /// only those whose console it has seen (Redis).
    all_agents: bool,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    open: usize,
    /// When the last console closed, or when the agent was first noticed without one.
    since: Instant,
}

/// One open console; dropping it (the stream ends) closes it.
pub struct PresenceGuard {
    inner: Arc<Inner>,
    agent: i64,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut seen = self.inner.seen.lock().expect("presence lock");
        if let Some(s) = seen.get_mut(&self.agent) {
            s.open = s.open.saturating_sub(1);
            if s.open == 0 {
                s.since = Instant::now();
            }
        }
    }
}

impl Presence {
    /// `all_agents`: with the Local backing (see the module docs).
    pub fn new(grace: Duration, all_agents: bool) -> Presence {
        Presence { inner: Arc::new(Inner { seen: Mutex::new(HashMap::new()), grace, all_agents }) }
    }

    /// A console of `agent` opens: counted until the guard drops. If the
    /// engine paused them because their console was gone, they are ready again.
    pub async fn arrive(&self, center: &Center, agent: i64) -> Result<PresenceGuard, CenterError> {
        {
            let mut seen = self.inner.seen.lock().expect("presence lock");
            seen.entry(agent).or_insert(Seen { open: 0, since: Instant::now() }).open += 1;
        }
        let guard = PresenceGuard { inner: self.inner.clone(), agent };
        if is_console_gone(center.agent_state(agent).await.as_ref()) {
            center.handle(Event::Ready { agent: AgentId(agent) }).await?;
        }
        Ok(guard)
    }

    /// How many consoles of `agent` are open on this node.
    pub fn open(&self, agent: i64) -> usize {
        self.inner.seen.lock().expect("presence lock").get(&agent).map_or(0, |s| s.open)
    }

    /// Checks every agent a few times per grace period until `shutdown`.
    pub async fn run(self, center: Center, shutdown: CancellationToken) {
        let period = (self.inner.grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            self.check(&center).await;
        }
    }

    /// Pauses the agents absent past the grace period; readies those whose console is back.
    async fn check(&self, center: &Center) {
        let now = Instant::now();
        let agents = center.agents().await;
        for (agent, _seat, state) in &agents {
            let event = match self.decide(*agent, state, now) {
                Some(e) => e,
                None => continue,
            };
            let pausing = matches!(event, Event::Pause { .. });
            match center.handle(event).await {
                Ok(_) if pausing => {
                    tracing::info!(agent, "presence: no console listening; paused ({CONSOLE_GONE})");
                    // Judged again (with a fresh grace) once they are available again.
                    let mut seen = self.inner.seen.lock().expect("presence lock");
                    if seen.get(agent).is_some_and(|s| s.open == 0) {
                        seen.remove(agent);
                    }
                }
                Ok(_) => tracing::info!(agent, "presence: their console is back; ready again"),
                // Nothing was changed (a refused event changes nothing, an unavailable
                // routing took nothing): the next check, within a second, tries again,
                // so the failure is logged rather than passed anywhere.
                Err(e) => tracing::warn!(agent, error = %e, "presence: the agent's state could not be changed"),
            }
        }
        // Agents who left their seat with no console open are forgotten (only
        // when the engine could be read: an unreadable one lists nobody).
        if center.ready().await {
            let mut seen = self.inner.seen.lock().expect("presence lock");
            seen.retain(|a, s| s.open > 0 || agents.iter().any(|(b, _, _)| b == a));
        }
    }

    /// What presence asks of the engine for `agent` in `state`, if anything.
    fn decide(&self, agent: i64, state: &AgentState, now: Instant) -> Option<Event> {
        let mut seen = self.inner.seen.lock().expect("presence lock");
        if is_console_gone(Some(state)) {
            return seen.get(&agent).is_some_and(|s| s.open > 0).then_some(Event::Ready { agent: AgentId(agent) });
        }
        if matches!(state, AgentState::Paused { .. }) {
            return None;
        }
        let s = match seen.get(&agent) {
            Some(s) => *s,
            None if self.inner.all_agents => *seen.entry(agent).or_insert(Seen { open: 0, since: now }),
            None => return None,
        };
        (s.open == 0 && now.duration_since(s.since) >= self.inner.grace)
            .then(|| Event::Pause { agent: AgentId(agent), reason: CONSOLE_GONE.into() })
    }
}

fn is_console_gone(state: Option<&AgentState>) -> bool {
    matches!(state, Some(AgentState::Paused { reason }) if reason == CONSOLE_GONE)
}
