//! Media sessions, without media: who is in a contact's call, who hears whom,
//! and the signaling messages. The SFU adapter ([`crate::sfu`]) turns the
//! routes computed here into RTP forwarding; nothing in this module imports
//! `webrtc`, does I/O or reads a clock (times are passed in, in milliseconds).
//!
//! ## Slots
//! A browser opens one peer connection to the server and offers one audio
//! m-line per party it may hear (its own microphone rides on the first), and
//! as many video m-lines when video is on. The server puts one outgoing track
//! on each m-line: a *slot*. Each other participant gets a slot on each
//! listener's connection when it joins and keeps it until it leaves, so a
//! browser never has to renegotiate when someone is held or barges in; who
//! is heard is decided per packet from [`Session::routes`].
//!
//! ## Who hears whom
//! - Everyone in the call hears everyone else, except:
//! - a muted or disconnected speaker is heard by nobody;
//! - a held participant hears nobody and is heard by nobody (the operator
//!   holds the patient to brief the doctor privately, then resumes);
//! - a supervisor hears every non-supervisor and is heard according to their
//!   mode: `listen` (nobody), `whisper` (only the agent they whisper to),
//!   `barge` (everyone not held).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The part a participant plays in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Operator,
    Doctor,
    Supervisor,
}

impl Role {
    /// Staff may hold others; patients may not.
    pub fn is_staff(self) -> bool {
        !matches!(self, Role::Patient)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Operator => "operator",
            Role::Doctor => "doctor",
            Role::Supervisor => "supervisor",
        }
    }
}

/// How a supervisor takes part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Supervision {
    /// Hears both sides; nobody hears the supervisor.
    Listen,
    /// Only `agent` hears the supervisor.
    Whisper { agent: String },
    /// Everyone hears the supervisor.
    Barge,
}

/// Audio or video: each has its own slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Audio,
    Video,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("no participant {0} in this call")]
    UnknownParticipant(String),
    #[error("a {0} may not {1}")]
    NotAllowed(&'static str, &'static str),
    #[error("{0} cannot be whispered to: only operators and doctors can")]
    NotAnAgent(String),
    #[error("the offer has no audio m-line: offer at least one (sendrecv) audio transceiver")]
    NoAudio,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Participant {
    role: Role,
    muted: bool,
    video_on: bool,
    held: bool,
    /// `None` while connected; the time the connection dropped otherwise.
    disconnected_at: Option<u64>,
    /// Slots this participant's connection offers, per kind.
    capacity: BTreeMap<Kind, usize>,
    /// Which slot on this participant's connection carries each other speaker.
    slots: BTreeMap<(Kind, String), usize>,
    supervision: Supervision,
}

/// One forwarding rule: `speaker`'s media goes to `listener` on `slot`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub kind: Kind,
    pub speaker: String,
    pub listener: String,
    pub slot: usize,
}

/// A participant as the others see them, with the slots that carry them to
/// one listener (so a page can label the audio it receives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    pub id: String,
    pub role: Role,
    pub muted: bool,
    pub held: bool,
    pub video: bool,
    pub connected: bool,
    pub audio_slot: Option<usize>,
    pub video_slot: Option<usize>,
    /// Whether the listener hears this participant now.
    pub heard: bool,
}

/// The call of one contact.
#[derive(Debug, Clone, Default)]
pub struct Session {
    participants: BTreeMap<String, Participant>,
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.participants.contains_key(id)
    }

    pub fn role(&self, id: &str) -> Option<Role> {
        self.participants.get(id).map(|p| p.role)
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.participants.keys().map(String::as_str)
    }

    /// A participant (re)joins with a connection offering `audio` and
    /// `video` slots. Rejoining keeps their mute and hold state and the slots
    /// they occupy on the others' connections; their own slots are assigned
    /// afresh, since the connection is new.
    pub fn join(&mut self, id: &str, role: Role, audio: usize, video: usize) -> Result<(), MediaError> {
        if audio == 0 {
            return Err(MediaError::NoAudio);
        }
        let capacity = BTreeMap::from([(Kind::Audio, audio), (Kind::Video, video)]);
        match self.participants.get_mut(id) {
            Some(p) => {
                p.disconnected_at = None;
                p.capacity = capacity;
                p.slots.clear();
                p.video_on = video > 0;
            }
            None => {
                let supervision = Supervision::Listen;
                self.participants.insert(
                    id.to_owned(),
                    Participant {
                        role,
                        muted: false,
                        video_on: video > 0,
                        held: false,
                        disconnected_at: None,
                        capacity,
                        slots: BTreeMap::new(),
                        supervision,
                    },
                );
            }
        }
        self.assign_slots();
        Ok(())
    }

    /// Gives every (listener, speaker, kind) pair without a slot the lowest
    /// free slot, in a fixed order so that the result is deterministic.
    fn assign_slots(&mut self) {
        let ids: Vec<String> = self.participants.keys().cloned().collect();
        for listener in &ids {
            for kind in [Kind::Audio, Kind::Video] {
                for speaker in ids.iter().filter(|s| *s != listener) {
                    let p = self.participants.get_mut(listener).expect("listed");
                    let key = (kind, speaker.clone());
                    if p.slots.contains_key(&key) {
                        continue;
                    }
                    let capacity = p.capacity[&kind];
                    // The first audio slot rides on the listener's own
                    // microphone m-line; all slots are usable for receiving.
                    let used: Vec<usize> =
                        p.slots.iter().filter(|((k, _), _)| *k == kind).map(|(_, slot)| *slot).collect();
                    if let Some(free) = (0..capacity).find(|s| !used.contains(s)) {
                        p.slots.insert(key, free);
                    }
                }
            }
        }
    }

    /// The participant's connection dropped at `now`: they keep their place
    /// for the grace period (see [`Session::expire`]).
    pub fn disconnect(&mut self, id: &str, now: u64) {
        if let Some(p) = self.participants.get_mut(id) {
            p.disconnected_at.get_or_insert(now);
        }
    }

    /// Removes a participant and frees the slots that carried them.
    pub fn leave(&mut self, id: &str) -> bool {
        let removed = self.participants.remove(id).is_some();
        if removed {
            for p in self.participants.values_mut() {
                p.slots.retain(|(_, speaker), _| speaker != id);
                if let Supervision::Whisper { agent } = &p.supervision
                    && agent == id
                {
                    p.supervision = Supervision::Listen;
                }
            }
            self.assign_slots();
        }
        removed
    }

    /// Removes everyone disconnected for longer than `grace` at `now`;
    /// returns who was removed.
    pub fn expire(&mut self, now: u64, grace: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| p.disconnected_at.is_some_and(|t| now.saturating_sub(t) >= grace))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.leave(id);
        }
        gone
    }

    /// When the next disconnected participant's grace period ends.
    pub fn next_expiry(&self, grace: u64) -> Option<u64> {
        self.participants.values().filter_map(|p| p.disconnected_at).min().map(|t| t + grace)
    }

    /// Whether `id` is held by staff now.
    pub fn is_held(&self, id: &str) -> bool {
        self.participants.get(id).is_some_and(|p| p.held)
    }

    /// Whether `listener` waits for the call rather than being in it: held,
    /// or hearing nobody with nobody there who could be heard but for
    /// their mute (a phone line plays hold music while it waits; a muted
    /// agent is silence, not music).
    pub fn is_waiting(&self, listener: &str) -> bool {
        let Some(l) = self.participants.get(listener) else { return true };
        if l.held {
            return true;
        }
        let could_hear = |(id, p): (&String, &Participant)| {
            id != listener
                && (self.hears(listener, id)
                    || p.muted
                        && !p.held
                        && p.disconnected_at.is_none()
                        && (p.role != Role::Supervisor || p.supervision == Supervision::Barge))
        };
        !self.participants.iter().any(could_hear)
    }

    pub fn set_muted(&mut self, id: &str, muted: bool) -> Result<(), MediaError> {
        self.get_mut(id)?.muted = muted;
        Ok(())
    }

    /// Video off (or back on, if the connection has video slots).
    pub fn set_video(&mut self, id: &str, on: bool) -> Result<(), MediaError> {
        let p = self.get_mut(id)?;
        p.video_on = on && p.capacity[&Kind::Video] > 0;
        Ok(())
    }

    /// `actor` holds or resumes `target`. Only staff hold, and not themselves.
    pub fn set_held(&mut self, actor: &str, target: &str, held: bool) -> Result<(), MediaError> {
        let role = self.get(actor)?.role;
        if !role.is_staff() {
            return Err(MediaError::NotAllowed(role.as_str(), "hold a participant"));
        }
        if actor == target {
            return Err(MediaError::NotAllowed(role.as_str(), "hold themselves"));
        }
        self.get_mut(target)?.held = held;
        Ok(())
    }

    /// A supervisor changes how they take part.
    pub fn supervise(&mut self, actor: &str, mode: Supervision) -> Result<(), MediaError> {
        let role = self.get(actor)?.role;
        if role != Role::Supervisor {
            return Err(MediaError::NotAllowed(role.as_str(), "monitor, whisper or barge"));
        }
        if let Supervision::Whisper { agent } = &mode {
            match self.get(agent)?.role {
                Role::Operator | Role::Doctor => {}
                _ => return Err(MediaError::NotAnAgent(agent.clone())),
            }
        }
        self.get_mut(actor)?.supervision = mode;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<&Participant, MediaError> {
        self.participants.get(id).ok_or_else(|| MediaError::UnknownParticipant(id.to_owned()))
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut Participant, MediaError> {
        self.participants.get_mut(id).ok_or_else(|| MediaError::UnknownParticipant(id.to_owned()))
    }

    /// Whether `listener` hears `speaker` now (audio; video follows audio).
    pub fn hears(&self, listener: &str, speaker: &str) -> bool {
        let (Some(l), Some(s)) = (self.participants.get(listener), self.participants.get(speaker)) else {
            return false;
        };
        if listener == speaker || s.muted || s.held || l.held {
            return false;
        }
        if s.disconnected_at.is_some() || l.disconnected_at.is_some() {
            return false;
        }
        match (s.role, l.role) {
            (Role::Supervisor, _) => match &s.supervision {
                Supervision::Listen => false,
                Supervision::Whisper { agent } => agent == listener,
                Supervision::Barge => true,
            },
            _ => true,
        }
    }

    /// Every forwarding rule in force, ordered.
    pub fn routes(&self) -> Vec<Route> {
        let mut routes = Vec::new();
        for (listener, l) in &self.participants {
            for ((kind, speaker), slot) in &l.slots {
                if !self.hears(listener, speaker) {
                    continue;
                }
                if *kind == Kind::Video && !(self.participants[speaker].video_on && l.video_on) {
                    continue;
                }
                routes.push(Route { kind: *kind, speaker: speaker.clone(), listener: listener.clone(), slot: *slot });
            }
        }
        routes.sort();
        routes
    }

    /// Whether `speaker`'s video is routed to `viewer` now: both have video
    /// on, and `viewer` hears `speaker` (video follows audio).
    pub fn receives_video(&self, viewer: &str, speaker: &str) -> bool {
        self.routes().iter().any(|r| r.kind == Kind::Video && r.speaker == speaker && r.listener == viewer)
    }

    /// The others in the call as `listener` sees them.
    pub fn roster(&self, listener: &str) -> Vec<RosterEntry> {
        let slots = self.participants.get(listener).map(|p| &p.slots);
        self.participants
            .iter()
            .filter(|(id, _)| id.as_str() != listener)
            .map(|(id, p)| RosterEntry {
                id: id.clone(),
                role: p.role,
                muted: p.muted,
                held: p.held,
                video: p.video_on,
                connected: p.disconnected_at.is_none(),
                audio_slot: slots.and_then(|s| s.get(&(Kind::Audio, id.clone())).copied()),
                video_slot: slots.and_then(|s| s.get(&(Kind::Video, id.clone())).copied()),
                heard: self.hears(listener, id),
            })
            .collect()
    }
}

/// What a page or client sends on the signaling socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// An SDP offer: one audio m-line per party to hear (the first carries
    /// the microphone), and as many video m-lines for video.
    Offer {
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        candidate: String,
        #[serde(default, rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(default, rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u16>,
    },
    Mute {
        muted: bool,
    },
    Video {
        on: bool,
    },
    Hold {
        participant: String,
        on: bool,
    },
    Supervise(Supervision),
    Leave,
}

/// What the server sends on the signaling socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sent first: who you are in this call and the ICE servers to use.
    Welcome {
        participant: String,
        role: Role,
        ice_servers: Vec<IceServer>,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        #[serde(rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u16>,
    },
    /// The others in the call, sent whenever anything about them changes.
    Roster {
        participants: Vec<RosterEntry>,
    },
    /// A request was refused; the session is unchanged.
    Error {
        message: String,
    },
}

/// A STUN or TURN server as `RTCPeerConnection` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What an SDP offer asks for: the number of audio and video m-lines and
/// the payload types it gives Opus and VP8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferShape {
    pub audio: usize,
    pub video: usize,
    pub opus: Option<u8>,
    pub vp8: Option<u8>,
}

impl OfferShape {
    pub fn of(sdp: &str) -> OfferShape {
        let mut shape = OfferShape::default();
        for line in sdp.lines() {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("m=") {
                let port_zero = rest.split_whitespace().nth(1) == Some("0");
                if port_zero {
                    continue;
                }
                if rest.starts_with("audio ") {
                    shape.audio += 1;
                } else if rest.starts_with("video ") {
                    shape.video += 1;
                }
            } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                let mut parts = rest.splitn(2, ' ');
                let pt = parts.next().and_then(|p| p.parse::<u8>().ok());
                let codec = parts.next().unwrap_or("").to_ascii_lowercase();
                if codec.starts_with("opus/48000") {
                    shape.opus = shape.opus.or(pt);
                } else if codec.starts_with("vp8/90000") {
                    shape.vp8 = shape.vp8.or(pt);
                }
            }
        }
        shape
    }
}

/// Keeps one outgoing RTP stream continuous while what feeds it changes: a
/// new source (a participant who rejoined has a new SSRC) or a pause (held,
/// muted) would otherwise show up at the receiver as a jump in sequence
/// numbers and timestamps. Sequence numbers continue from the last one sent;
/// timestamps advance by the time that passed.
#[derive(Debug, Clone)]
pub struct RtpRewriter {
    clock_rate: u32,
    last: Option<Sent>,
    source: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u16,
    ts: u32,
    at_ms: u64,
}

impl RtpRewriter {
    pub fn new(clock_rate: u32) -> Self {
        Self { clock_rate, last: None, source: None, seq_offset: 0, ts_offset: 0 }
    }

    /// Forget the mapping, so the next packet starts a new one (call after a
    /// pause in forwarding).
    pub fn resync(&mut self) {
        self.source = None;
    }

    /// Maps an incoming packet's (SSRC, sequence, timestamp) at `now_ms` to
    /// the outgoing (sequence, timestamp).
    pub fn rewrite(&mut self, ssrc: u32, seq: u16, ts: u32, now_ms: u64) -> (u16, u32) {
        if self.source != Some(ssrc) {
            self.source = Some(ssrc);
            match self.last {
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
                Some(last) => {
                    let elapsed = now_ms.saturating_sub(last.at_ms).max(20);
                    let ticks = (elapsed * u64::from(self.clock_rate) / 1000) as u32;
                    self.seq_offset = last.seq.wrapping_add(1).wrapping_sub(seq);
                    self.ts_offset = last.ts.wrapping_add(ticks).wrapping_sub(ts);
                }
            }
        }
        let out = (seq.wrapping_add(self.seq_offset), ts.wrapping_add(self.ts_offset));
        self.last = Some(Sent { seq: out.0, ts: out.1, at_ms: now_ms });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Session {
        let mut s = Session::new();
        s.join("pat", Role::Patient, 3, 0).unwrap();
        s.join("op", Role::Operator, 3, 0).unwrap();
        s
    }

    fn heard_by(s: &Session, listener: &str) -> Vec<String> {
        s.routes().into_iter().filter(|r| r.listener == listener && r.kind == Kind::Audio).map(|r| r.speaker).collect()
    }

    #[test]
    fn two_parties_hear_each_other_on_distinct_slots() {
        let s = call();
        assert_eq!(heard_by(&s, "pat"), ["op"]);
        assert_eq!(heard_by(&s, "op"), ["pat"]);
        let routes = s.routes();
        assert!(routes.iter().all(|r| r.slot == 0), "{routes:?}");
    }

    #[test]
    fn warm_transfer_hold_then_three_way_then_operator_leaves() {
        let mut s = call();
        s.join("doc", Role::Doctor, 3, 0).unwrap();
        s.set_held("op", "pat", true).unwrap();
        assert_eq!(heard_by(&s, "doc"), ["op"]);
        assert_eq!(heard_by(&s, "op"), ["doc"]);
        assert!(heard_by(&s, "pat").is_empty());
        s.set_held("op", "pat", false).unwrap();
        assert_eq!(heard_by(&s, "pat"), ["doc", "op"]);
        s.leave("op");
        assert_eq!(heard_by(&s, "pat"), ["doc"]);
        assert_eq!(heard_by(&s, "doc"), ["pat"]);
    }

    #[test]
    fn supervisor_listen_whisper_barge() {
        let mut s = call();
        s.join("sup", Role::Supervisor, 3, 0).unwrap();
        assert_eq!(heard_by(&s, "sup"), ["op", "pat"]);
        assert!(!heard_by(&s, "op").contains(&"sup".to_owned()));
        s.supervise("sup", Supervision::Whisper { agent: "op".into() }).unwrap();
        assert!(heard_by(&s, "op").contains(&"sup".to_owned()));
        assert!(!heard_by(&s, "pat").contains(&"sup".to_owned()));
        s.supervise("sup", Supervision::Barge).unwrap();
        assert!(heard_by(&s, "pat").contains(&"sup".to_owned()));
        assert_eq!(
            s.supervise("sup", Supervision::Whisper { agent: "pat".into() }),
            Err(MediaError::NotAnAgent("pat".into()))
        );
        assert_eq!(
            s.supervise("op", Supervision::Barge),
            Err(MediaError::NotAllowed("operator", "monitor, whisper or barge"))
        );
    }

    #[test]
    fn refused_controls_change_nothing() {
        let mut s = call();
        let before = s.routes();
        assert!(s.set_held("pat", "op", true).is_err());
        assert!(s.set_held("op", "op", true).is_err());
        assert!(s.set_held("op", "nobody", true).is_err());
        assert!(s.set_muted("nobody", true).is_err());
        assert_eq!(s.join("x", Role::Patient, 0, 0), Err(MediaError::NoAudio));
        assert_eq!(s.routes(), before);
    }

    #[test]
    fn a_held_or_lonely_listener_waits_and_a_muted_speaker_is_no_wait() {
        let mut s = Session::new();
        s.join("pat", Role::Patient, 3, 0).unwrap();
        assert!(s.is_waiting("pat"), "alone");
        s.join("sup", Role::Supervisor, 3, 0).unwrap();
        assert!(s.is_waiting("pat"), "a listening supervisor is not someone to talk to");
        s.join("op", Role::Operator, 3, 0).unwrap();
        assert!(!s.is_waiting("pat"));
        s.set_muted("op", true).unwrap();
        assert!(!s.is_waiting("pat"), "a muted agent is silence, not hold");
        s.set_held("op", "pat", true).unwrap();
        assert!(s.is_waiting("pat") && s.is_held("pat"));
        s.set_held("op", "pat", false).unwrap();
        s.disconnect("op", 5);
        assert!(s.is_waiting("pat"), "the agent's connection dropped");
        assert!(s.is_waiting("nobody"));
    }

    #[test]
    fn mute_silences_one_direction() {
        let mut s = call();
        s.set_muted("pat", true).unwrap();
        assert!(heard_by(&s, "op").is_empty());
        assert_eq!(heard_by(&s, "pat"), ["op"]);
    }

    #[test]
    fn rejoin_within_grace_keeps_place_and_slots() {
        let mut s = call();
        s.join("doc", Role::Doctor, 3, 0).unwrap();
        let before = s.routes();
        s.disconnect("pat", 1_000);
        assert!(heard_by(&s, "op") == ["doc"]);
        assert_eq!(s.expire(20_000, 30_000), Vec::<String>::new());
        assert_eq!(s.next_expiry(30_000), Some(31_000));
        s.join("pat", Role::Patient, 3, 0).unwrap();
        // The others keep the slots that carry the patient; the patient's new
        // connection gets its slots afresh.
        let others = |routes: Vec<Route>| routes.into_iter().filter(|r| r.listener != "pat").collect::<Vec<_>>();
        assert_eq!(others(s.routes()), others(before));
        assert_eq!(heard_by(&s, "pat"), ["doc", "op"]);
        s.disconnect("pat", 40_000);
        assert_eq!(s.expire(70_000, 30_000), ["pat"]);
        assert!(!s.contains("pat"));
    }

    #[test]
    fn slots_are_bounded_by_the_offer_and_freed_on_leave() {
        let mut s = Session::new();
        s.join("pat", Role::Patient, 1, 0).unwrap();
        s.join("op", Role::Operator, 3, 0).unwrap();
        s.join("doc", Role::Doctor, 3, 0).unwrap();
        // The patient's connection has one slot: the first to join gets it.
        assert_eq!(heard_by(&s, "pat"), ["op"]);
        s.leave("op");
        assert_eq!(heard_by(&s, "pat"), ["doc"]);
    }

    #[test]
    fn video_flows_only_when_both_sides_have_it_on() {
        let mut s = Session::new();
        s.join("pat", Role::Patient, 3, 3).unwrap();
        s.join("doc", Role::Doctor, 3, 3).unwrap();
        let video = |s: &Session| s.routes().into_iter().filter(|r| r.kind == Kind::Video).count();
        assert_eq!(video(&s), 2);
        s.set_video("pat", false).unwrap();
        assert_eq!(video(&s), 0);
        s.set_video("pat", true).unwrap();
        assert_eq!(video(&s), 2);
    }

    #[test]
    fn a_viewer_receives_video_only_while_it_is_routed_to_them() {
        let mut s = Session::new();
        s.join("pat", Role::Patient, 3, 3).unwrap();
        s.join("doc", Role::Doctor, 3, 3).unwrap();
        s.join("op", Role::Operator, 3, 0).unwrap();
        assert!(s.receives_video("doc", "pat"));
        // An operator whose page offered no video slots sees nobody.
        assert!(!s.receives_video("op", "pat"));
        s.set_video("pat", false).unwrap();
        assert!(!s.receives_video("doc", "pat"));
        s.set_video("pat", true).unwrap();
        s.set_held("doc", "pat", true).unwrap();
        assert!(!s.receives_video("doc", "pat"));
        s.set_held("doc", "pat", false).unwrap();
        s.disconnect("pat", 10);
        assert!(!s.receives_video("doc", "pat"));
        assert!(!s.receives_video("doc", "nobody"));
    }

    #[test]
    fn offer_shape_counts_mlines_and_payload_types() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\n\
                   m=audio 0 UDP/TLS/RTP/SAVPF 111\r\n";
        assert_eq!(OfferShape::of(sdp), OfferShape { audio: 2, video: 1, opus: Some(111), vp8: Some(96) });
    }

    #[test]
    fn rewriter_keeps_sequence_continuous_across_sources() {
        let mut r = RtpRewriter::new(48_000);
        assert_eq!(r.rewrite(1, 100, 5_000, 0), (100, 5_000));
        assert_eq!(r.rewrite(1, 101, 5_960, 20), (101, 5_960));
        // A rejoin: new SSRC, random sequence and timestamp, 1 s later.
        assert_eq!(r.rewrite(2, 60_000, 1, 1_020), (102, 5_960 + 48_000));
        assert_eq!(r.rewrite(2, 60_001, 961, 1_040), (103, 5_960 + 48_000 + 960));
        // Held for 2 s, then resumed.
        r.resync();
        assert_eq!(r.rewrite(2, 60_101, 96_961, 3_040), (104, 5_960 + 48_000 + 960 + 96_000));
        // Wrapping sequence numbers.
        let mut r = RtpRewriter::new(48_000);
        r.rewrite(1, u16::MAX, 0, 0);
        assert_eq!(r.rewrite(1, 0, 960, 20), (0, 960));
    }

    #[test]
    fn messages_have_the_documented_shape() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"supervise","mode":"whisper","agent":"op"}"#).unwrap();
        assert_eq!(m, ClientMessage::Supervise(Supervision::Whisper { agent: "op".into() }));
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5 typ host","sdpMid":"0","sdpMLineIndex":0}"#)
                .unwrap();
        assert!(matches!(m, ClientMessage::Candidate { sdp_mline_index: Some(0), .. }));
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"offer"}"#).is_err());
    }
}
