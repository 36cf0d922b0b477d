//! [`Update`]: what consoles and patients are told, made from the routing
//! engine's actions and by the handlers (connected, messages, captions).

use chrono::{DateTime, Utc};
use routing::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
        /// The message's `chat_message_id`: a reader that resynchronises
        /// asks for the messages after the last one it has.
        #[serde(default)]
        id: i64,
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
    /// This node's routing state was rebuilt (its replica reconnected, or
    /// rejoined after being fenced), so its readers may have missed
    /// updates: every stream sends its reader a fresh snapshot instead of
    /// this. Never relayed to other nodes nor sent to a client as such.
    Resync,
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
            Update::AgentPaused { .. } | Update::Resync => None,
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

pub(super) fn at(ms: i64) -> DateTime<Utc> {
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
