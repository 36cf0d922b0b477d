//! The media adapter: the server as a WebRTC peer (a small SFU) for every
//! participant. This is the only module that imports `webrtc`.
//!
//! A participant's page opens one peer connection and offers its m-lines
//! (see [`crate::media`] for slots); the server answers with one outgoing
//! track per m-line and forwards every incoming RTP packet, unchanged but
//! for SSRC, payload type, sequence number and timestamp, to the slots that
//! [`Session::routes`] names. Nothing is transcoded. Incoming audio can also
//! be subscribed to, decoded to 16 kHz mono PCM ([`Sfu::taps`]).
//!
//! A phone leg joins a call as a *line* ([`Sfu::attach_line`]): a
//! participant of the same [`Session`] without a peer connection, whose
//! slots feed a mixer ([`crate::mixer::Ear`]) instead of outgoing tracks,
//! and whose voice, encoded to Opus once, is forwarded, recorded and
//! tapped by the same code as a browser's microphone. So hold, mute,
//! supervision, three-way calls and consent apply to phone callers by the
//! same routes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rtc::media::io::Writer;
use rtc::media::io::ogg_writer::OggWriter;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{Mutex, broadcast, mpsc, oneshot};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry,
};

use crate::media::{ClientMessage, IceServer, Kind, MediaError, OfferShape, Role, RtpRewriter, ServerMessage, Session};
use crate::mixer::{Ear, FRAME, InletConfig, Voice};

/// Where the SFU listens and what it tells clients.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Local UDP addresses for the server's peer connections (port 0: any).
    /// Their IPs become the server's host candidates.
    pub udp_addrs: Vec<SocketAddr>,
    /// STUN/TURN servers handed to clients.
    pub ice_servers: Vec<IceServer>,
    /// How long a participant whose connection dropped keeps their place.
    pub grace: Duration,
    /// Where calls are recorded (one OGG/Opus file per incoming audio track,
    /// under a folder per session), when a session allows it.
    pub recordings: Option<std::path::PathBuf>,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ice_servers: Vec::new(),
            grace: Duration::from_secs(30),
            recordings: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("the offer was refused: {0}")]
    BadOffer(String),
    #[error("the ICE candidate was refused: {0}")]
    BadCandidate(String),
    #[error("send an offer first")]
    NoConnection,
    #[error("{0} is a phone line in this call; a browser cannot take its place")]
    LineInCall(String),
    #[error("{0} is in this call already")]
    AlreadyInCall(String),
    #[error("media engine: {0}")]
    Internal(String),
}

/// 20 ms of decoded audio from one participant: 16 kHz mono.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    pub session: String,
    pub participant: String,
    pub role: Role,
    /// Milliseconds since the SFU started, when the packet arrived.
    pub at_ms: u64,
    pub pcm: Arc<[f32]>,
}

/// The media plane. Cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    inner: Arc<Inner>,
}

struct Inner {
    config: SfuConfig,
    sessions: Mutex<HashMap<String, Arc<LiveSession>>>,
    taps: broadcast::Sender<AudioFrame>,
    started: Instant,
    /// Sessions whose participants consented to recording.
    recording_allowed: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

struct LiveSession {
    id: String,
    state: Mutex<SessionState>,
    /// Read by every forwarded packet; replaced whenever the routes change.
    routes: RwLock<Arc<RouteTable>>,
    /// Whether incoming audio is recorded now.
    recording: std::sync::atomic::AtomicBool,
    /// Per participant: when (SFU milliseconds) their last video packet
    /// arrived, so the server itself knows whose camera is sending.
    video_seen: std::sync::Mutex<HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
}

#[derive(Default)]
struct SessionState {
    model: Session,
    peers: HashMap<String, Peer>,
    generation: u64,
}

struct Peer {
    /// `None` for a phone line, which has no peer connection.
    pc: Option<Arc<dyn PeerConnection>>,
    epoch: u64,
    outlets: HashMap<(Kind, usize), Arc<Outlet>>,
    /// `None` for a phone line: nobody reads its roster.
    signal: Option<mpsc::UnboundedSender<ServerMessage>>,
    /// A phone line's mixer, told which of its slots are routed on every change.
    ear: Option<Arc<std::sync::Mutex<Ear>>>,
}

/// Where an outlet's packets go.
enum Sink {
    /// An outgoing track on a browser's connection.
    Track(Arc<TrackLocalStaticRTP>),
    /// A slot of a phone line's mixer. `std::sync::Mutex`: held only to
    /// queue a packet or mix a frame, never across `.await`.
    Ear { ear: Arc<std::sync::Mutex<Ear>>, slot: usize },
}

/// One slot on a listener: an outgoing track, or a line's mixer input.
struct Outlet {
    sink: Sink,
    ssrc: u32,
    payload_type: u8,
    /// Keeps the slot's stream continuous across route changes: the
    /// generation of the route table it last saw, and its rewriter.
    rewriter: std::sync::Mutex<(u64, RtpRewriter)>,
}

#[derive(Default)]
struct RouteTable {
    generation: u64,
    by_speaker: HashMap<(String, Kind), Vec<Arc<Outlet>>>,
}

/// A participant's handle on their call; dropped or [`CallHandle::leave`]
/// when their signaling socket closes.
pub struct CallHandle {
    inner: Arc<Inner>,
    session: Arc<LiveSession>,
    participant: String,
    role: Role,
    signal: mpsc::UnboundedSender<ServerMessage>,
    epoch: std::sync::atomic::AtomicU64,
}

/// How recent a participant's last video packet must be for their video to
/// count as flowing now (a camera sends many packets a second).
pub const VIDEO_FRESH: Duration = Duration::from_secs(3);

static EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Sfu {
    pub fn new(config: SfuConfig) -> Self {
        let (taps, _) = broadcast::channel(4096);
        Sfu {
            inner: Arc::new(Inner {
                config,
                sessions: Mutex::new(HashMap::new()),
                taps,
                started: Instant::now(),
                recording_allowed: Default::default(),
            }),
        }
    }

    pub fn ice_servers(&self) -> &[IceServer] {
        &self.inner.config.ice_servers
    }

    /// Decoded audio of every participant in every call (subscribe before
    /// the audio of interest starts; slow subscribers lose frames).
    pub fn taps(&self) -> broadcast::Receiver<AudioFrame> {
        self.inner.taps.subscribe()
    }

    /// Records `session`'s audio from now on (the patient's explicit consent
    /// is on file), or stops recording it. Without a recordings folder
    /// nothing is recorded either way.
    pub async fn set_recording(&self, session: &str, allowed: bool) {
        {
            let mut set = self.inner.recording_allowed.lock().expect("consent lock");
            if allowed {
                set.insert(session.to_owned());
            } else {
                set.remove(session);
            }
        }
        if let Some(live) = self.inner.sessions.lock().await.get(session) {
            live.recording.store(allowed, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether the participants of `session` consented to recording and
    /// transcription.
    pub fn recording_allowed(&self, session: &str) -> bool {
        self.inner.recording_allowed.lock().expect("consent lock").contains(session)
    }

    /// How many calls the SFU holds state for.
    pub async fn sessions(&self) -> usize {
        self.inner.sessions.lock().await.len()
    }

    /// Who is in `session` now.
    pub async fn participants(&self, session: &str) -> Vec<(String, Role)> {
        let Some(live) = self.inner.sessions.lock().await.get(session).cloned() else { return Vec::new() };
        let state = live.state.lock().await;
        state.model.ids().map(|id| (id.to_owned(), state.model.role(id).expect("listed"))).collect()
    }

    /// Whether `viewer` receives `speaker`'s video in `session` now: the
    /// session routes it to them (both have video on, neither is held or
    /// gone) and a video packet from `speaker` reached the SFU within the
    /// last [`VIDEO_FRESH`]. A camera flag alone is not enough: a page that
    /// offered video but has no camera sends none.
    pub async fn receives_video(&self, session: &str, viewer: &str, speaker: &str) -> bool {
        let Some(live) = self.inner.sessions.lock().await.get(session).cloned() else { return false };
        if !live.state.lock().await.model.receives_video(viewer, speaker) {
            return false;
        }
        let last = live.video_seen.lock().expect("video lock").get(speaker).cloned();
        last.is_some_and(|at| {
            let at = at.load(std::sync::atomic::Ordering::Relaxed);
            at > 0 && self.inner.now_ms().saturating_sub(at) <= VIDEO_FRESH.as_millis() as u64
        })
    }

    /// Enters `participant` into the call of `session`; media flows once
    /// [`CallHandle::handle`] has taken their offer. Messages for the
    /// participant arrive on `signal`.
    pub async fn attach(
        &self,
        session: &str,
        participant: &str,
        role: Role,
        signal: mpsc::UnboundedSender<ServerMessage>,
    ) -> CallHandle {
        let live = self.live_session(session).await;
        let _ = signal.send(ServerMessage::Welcome {
            participant: participant.to_owned(),
            role,
            ice_servers: self.inner.config.ice_servers.clone(),
        });
        CallHandle {
            inner: self.inner.clone(),
            session: live,
            participant: participant.to_owned(),
            role,
            signal,
            epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Sfu {
    /// The live state of `session`, made on first use.
    async fn live_session(&self, session: &str) -> Arc<LiveSession> {
        let mut sessions = self.inner.sessions.lock().await;
        sessions
            .entry(session.to_owned())
            .or_insert_with(|| {
                let recording = self.inner.recording_allowed.lock().expect("consent lock").contains(session);
                Arc::new(LiveSession {
                    id: session.to_owned(),
                    state: Mutex::new(SessionState::default()),
                    routes: RwLock::new(Arc::new(RouteTable::default())),
                    recording: recording.into(),
                    video_seen: Default::default(),
                })
            })
            .clone()
    }

    /// Enters a phone leg into the call of `session` as `participant` (a
    /// phone caller is the contact's `patient`). It joins the session's
    /// model with [`LINE_SLOTS`] audio slots and no video, so it hears up
    /// to that many others, by the same routes as a browser. Refused when
    /// `participant` is in the call already.
    pub async fn attach_line(&self, session: &str, participant: &str, role: Role) -> Result<Line, SfuError> {
        let live = self.live_session(session).await;
        let ear = Arc::new(std::sync::Mutex::new(Ear::new(InletConfig::default())));
        let epoch = EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let joined = {
            let mut state = live.state.lock().await;
            let joined = if state.model.contains(participant) {
                Err(SfuError::AlreadyInCall(participant.to_owned()))
            } else {
                state.model.join(participant, role, LINE_SLOTS, 0).map_err(SfuError::from)
            };
            if joined.is_ok() {
                let outlets = (0..LINE_SLOTS)
                    .map(|slot| {
                        let outlet = Outlet {
                            sink: Sink::Ear { ear: ear.clone(), slot },
                            ssrc: 0,
                            payload_type: 0,
                            rewriter: std::sync::Mutex::new((0, RtpRewriter::new(48_000))),
                        };
                        ((Kind::Audio, slot), Arc::new(outlet))
                    })
                    .collect();
                let peer = Peer { pc: None, epoch, outlets, signal: None, ear: Some(ear.clone()) };
                state.peers.insert(participant.to_owned(), peer);
                publish(&live, &mut state);
            }
            joined
        };
        if let Err(e) = joined {
            drop_if_empty(&self.inner, &live).await;
            return Err(e);
        }
        tracing::info!(session = %live.id, participant, "phone line joined the call");
        let ssrc = rand_ssrc();
        // RFC 3550 §5.1: the first sequence number and timestamp are random.
        let (seq, timestamp) = (rand::random::<u16>(), rand::random::<u32>());
        Ok(Line {
            speaker: Speaker {
                inner: self.inner.clone(),
                session: live,
                key: (participant.to_owned(), Kind::Audio),
                role,
                epoch,
                recorder: None,
            },
            ear,
            voice: Voice::new(seq, timestamp),
            ssrc,
            left: false,
        })
    }
}

/// Audio slots of a phone line: how many others it can hear at once (an
/// operator, a doctor, a supervisor and one more).
pub const LINE_SLOTS: usize = 4;

/// A phone leg in a call: what it says goes to whoever the session routes
/// it to, and it hears the mix of whoever is routed to it. Leaving (or
/// dropping it) takes it out of the call.
pub struct Line {
    speaker: Speaker,
    ear: Arc<std::sync::Mutex<Ear>>,
    voice: Voice,
    ssrc: u32,
    /// Whether [`Line::leave`] ran, so dropping it does nothing more.
    left: bool,
}

impl Line {
    pub fn participant(&self) -> &str {
        &self.speaker.key.0
    }

    /// 20 ms of the caller at 8 kHz: encoded to Opus once, then recorded
    /// (with consent), tapped at 16 kHz and forwarded to every listener,
    /// as a browser's microphone is.
    pub async fn speak(&mut self, pcm: &[i16; FRAME]) -> Result<(), SfuError> {
        let spoken = self.voice.encode(pcm).map_err(|e| SfuError::Internal(e.to_string()))?;
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: spoken.seq,
                timestamp: spoken.timestamp,
                ssrc: self.ssrc,
                marker: spoken.marker,
                ..Default::default()
            },
            payload: bytes::Bytes::from(spoken.payload),
        };
        let now = self.speaker.inner.now_ms();
        self.speaker.record(&packet);
        if self.speaker.inner.taps.receiver_count() > 0 {
            self.speaker.tap(Arc::from(&spoken.wide[..]), now);
        }
        self.speaker.forward(&packet, now).await;
        Ok(())
    }

    /// The next 20 ms of what the line hears at 8 kHz, or `None` while it
    /// waits (held, or nobody else in the call to talk to): the phone leg
    /// then plays hold music. Call once per 20 ms.
    pub fn hear(&self) -> Option<[i16; FRAME]> {
        self.ear.lock().expect("ear lock").mix()
    }

    /// The counts of the line's playout buffers: late, lost (concealed)
    /// and dropped packets of what it hears, for metrics.
    pub fn stats(&self) -> crate::mixer::Stats {
        self.ear.lock().expect("ear lock").stats()
    }

    /// Leaves the call.
    pub async fn leave(mut self) {
        self.left = true;
        self.speaker.stop_recording();
        remove(&self.speaker.inner, &self.speaker.session, &self.speaker.key.0).await;
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        self.speaker.stop_recording();
        let (inner, live, participant) =
            (self.speaker.inner.clone(), self.speaker.session.clone(), self.speaker.key.0.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { remove(&inner, &live, &participant).await });
            }
            // Without a runtime the process is ending, and the call with it.
            Err(_) => tracing::warn!(session = %live.id, %participant, "a phone line dropped outside the runtime"),
        }
    }
}

/// Takes `participant` out of the call and closes its connection, if any.
async fn remove(inner: &Arc<Inner>, live: &Arc<LiveSession>, participant: &str) {
    let pc = {
        let mut state = live.state.lock().await;
        state.model.leave(participant);
        let peer = state.peers.remove(participant);
        publish(live, &mut state);
        peer.and_then(|p| p.pc)
    };
    if let Some(pc) = pc {
        let _ = pc.close().await;
    }
    drop_if_empty(inner, live).await;
}

impl CallHandle {
    pub fn participant(&self) -> &str {
        &self.participant
    }

    /// Acts on one signaling message. An error leaves the call as it was.
    pub async fn handle(&self, message: ClientMessage) -> Result<(), SfuError> {
        match message {
            ClientMessage::Offer { sdp } => self.offer(sdp).await,
            ClientMessage::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                let pc = {
                    let state = self.session.state.lock().await;
                    state.peers.get(&self.participant).and_then(|p| p.pc.clone()).ok_or(SfuError::NoConnection)?
                };
                let init = RTCIceCandidateInit { candidate, sdp_mid, sdp_mline_index, ..Default::default() };
                pc.add_ice_candidate(init).await.map_err(|e| SfuError::BadCandidate(e.to_string()))
            }
            ClientMessage::Mute { muted } => self.change(|m, me| m.set_muted(me, muted)).await,
            ClientMessage::Video { on } => self.change(|m, me| m.set_video(me, on)).await,
            ClientMessage::Hold { participant, on } => self.change(|m, me| m.set_held(me, &participant, on)).await,
            ClientMessage::Supervise(mode) => self.change(|m, me| m.supervise(me, mode)).await,
            ClientMessage::Leave => {
                self.leave().await;
                Ok(())
            }
        }
    }

    async fn change(&self, f: impl FnOnce(&mut Session, &str) -> Result<(), MediaError>) -> Result<(), SfuError> {
        let mut state = self.session.state.lock().await;
        if !state.model.contains(&self.participant) {
            return Err(SfuError::NoConnection);
        }
        f(&mut state.model, &self.participant)?;
        publish(&self.session, &mut state);
        Ok(())
    }

    /// A new connection for this participant (the first, or a rejoin after
    /// a reload or network change, which replaces the old one).
    async fn offer(&self, sdp: String) -> Result<(), SfuError> {
        if self.session.state.lock().await.peers.get(&self.participant).is_some_and(|p| p.pc.is_none()) {
            return Err(SfuError::LineInCall(self.participant.clone()));
        }
        let shape = OfferShape::of(&sdp);
        if shape.audio == 0 {
            return Err(MediaError::NoAudio.into());
        }
        let opus = shape.opus.ok_or_else(|| SfuError::BadOffer("the audio m-lines do not offer Opus".into()))?;
        let video = if shape.vp8.is_some() { shape.video } else { 0 };
        let offer = RTCSessionDescription::offer(sdp).map_err(|e| SfuError::BadOffer(e.to_string()))?;

        let epoch = EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (gathered_tx, gathered_rx) = oneshot::channel();
        let handler = Arc::new(Handler {
            inner: self.inner.clone(),
            session: self.session.clone(),
            participant: self.participant.clone(),
            role: self.role,
            epoch,
            signal: self.signal.clone(),
            gathered: std::sync::Mutex::new(Some(gathered_tx)),
        });
        let pc = build_peer(&self.inner.config, opus, shape.vp8, handler).await?;
        let outcome = async {
            pc.set_remote_description(offer).await.map_err(|e| SfuError::BadOffer(e.to_string()))?;
            let mut outlets = HashMap::new();
            for (kind, count, pt) in [(Kind::Audio, shape.audio, opus), (Kind::Video, video, shape.vp8.unwrap_or(0))] {
                for slot in 0..count {
                    let (track, outlet) = outlet(kind, slot, pt, &self.participant);
                    pc.add_track(track as Arc<dyn TrackLocal>).await.map_err(|e| SfuError::Internal(e.to_string()))?;
                    outlets.insert((kind, slot), outlet);
                }
            }
            let answer = pc.create_answer(None).await.map_err(|e| SfuError::BadOffer(e.to_string()))?;
            pc.set_local_description(answer).await.map_err(|e| SfuError::BadOffer(e.to_string()))?;
            // Host candidates are gathered at once; the answer carries them.
            let _ = tokio::time::timeout(Duration::from_secs(3), gathered_rx).await;
            let local = pc.local_description().await.ok_or_else(|| SfuError::Internal("no answer".into()))?;
            Ok::<_, SfuError>((outlets, local.sdp))
        }
        .await;
        let (outlets, answer) = match outcome {
            Ok(done) => done,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };

        let old = {
            let mut state = self.session.state.lock().await;
            // A line that joined under this name meanwhile keeps it.
            if state.peers.get(&self.participant).is_some_and(|p| p.pc.is_none()) {
                drop(state);
                let _ = pc.close().await;
                return Err(SfuError::LineInCall(self.participant.clone()));
            }
            if let Err(e) = state.model.join(&self.participant, self.role, shape.audio, video) {
                drop(state);
                let _ = pc.close().await;
                return Err(e.into());
            }
            self.epoch.store(epoch, std::sync::atomic::Ordering::Relaxed);
            let peer = Peer { pc: Some(pc.clone()), epoch, outlets, signal: Some(self.signal.clone()), ear: None };
            let old = state.peers.insert(self.participant.clone(), peer);
            let _ = self.signal.send(ServerMessage::Answer { sdp: answer });
            publish(&self.session, &mut state);
            old
        };
        if let Some(old) = old.and_then(|p| p.pc) {
            let _ = old.close().await;
        }
        tracing::info!(session = %self.session.id, participant = %self.participant, audio = shape.audio, video, "media connected");
        Ok(())
    }

    /// Leaves the call for good.
    pub async fn leave(&self) {
        // A line of the same name is not this handle's to remove.
        if self.session.state.lock().await.peers.get(&self.participant).is_some_and(|p| p.pc.is_none()) {
            return;
        }
        remove(&self.inner, &self.session, &self.participant).await;
    }

    /// The signaling socket closed without a goodbye: keep the place for
    /// the grace period, in case the page comes back.
    pub async fn disconnected(&self) {
        let joined = self.session.state.lock().await.model.contains(&self.participant);
        if !joined {
            // Never got as far as an offer: nothing to keep.
            drop_if_empty(&self.inner, &self.session).await;
            return;
        }
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Relaxed);
        connection_lost(&self.inner, &self.session, &self.participant, epoch).await;
    }
}

/// Recomputes the route table and tells everyone the new roster.
fn publish(live: &LiveSession, state: &mut SessionState) {
    state.generation += 1;
    let mut table = RouteTable { generation: state.generation, by_speaker: HashMap::new() };
    let routes = state.model.routes();
    for route in &routes {
        let Some(outlet) = state.peers.get(&route.listener).and_then(|p| p.outlets.get(&(route.kind, route.slot)))
        else {
            continue;
        };
        table.by_speaker.entry((route.speaker.clone(), route.kind)).or_default().push(outlet.clone());
    }
    *live.routes.write().expect("route table lock") = Arc::new(table);
    for (id, peer) in &state.peers {
        if let Some(ear) = &peer.ear {
            let slots = routes.iter().filter(|r| &r.listener == id && r.kind == Kind::Audio).map(|r| r.slot);
            ear.lock().expect("ear lock").set_live(slots, state.model.is_waiting(id));
        }
        if let Some(signal) = &peer.signal {
            let _ = signal.send(ServerMessage::Roster { participants: state.model.roster(id) });
        }
    }
}

async fn connection_lost(inner: &Arc<Inner>, live: &Arc<LiveSession>, participant: &str, epoch: u64) {
    {
        let mut state = live.state.lock().await;
        if state.peers.get(participant).is_none_or(|p| p.epoch != epoch) {
            return; // already replaced by a rejoin, or gone
        }
        state.model.disconnect(participant, inner.now_ms());
        publish(live, &mut state);
    }
    let (inner, live) = (inner.clone(), live.clone());
    let grace = inner.config.grace;
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let closed = {
            let mut state = live.state.lock().await;
            let gone = state.model.expire(inner.now_ms(), grace.as_millis() as u64);
            let closed: Vec<_> = gone.iter().filter_map(|id| state.peers.remove(id)).filter_map(|p| p.pc).collect();
            if !gone.is_empty() {
                tracing::info!(session = %live.id, ?gone, "left after the grace period");
                publish(&live, &mut state);
            }
            closed
        };
        for pc in closed {
            let _ = pc.close().await;
        }
        drop_if_empty(&inner, &live).await;
    });
}

/// Forgets a call nobody is in any more (consent included: the server
/// sets it again from the consult's record when someone joins).
async fn drop_if_empty(inner: &Inner, live: &Arc<LiveSession>) {
    let mut sessions = inner.sessions.lock().await;
    if live.state.lock().await.model.is_empty() {
        sessions.remove(&live.id);
        inner.recording_allowed.lock().expect("consent lock").remove(&live.id);
    }
}

fn outlet(kind: Kind, slot: usize, payload_type: u8, listener: &str) -> (Arc<TrackLocalStaticRTP>, Arc<Outlet>) {
    let ssrc = rand_ssrc();
    let (codec_kind, codec) = match kind {
        Kind::Audio => (RtpCodecKind::Audio, opus_codec()),
        Kind::Video => (RtpCodecKind::Video, vp8_codec()),
    };
    let name = match kind {
        Kind::Audio => "audio",
        Kind::Video => "video",
    };
    let track = TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("careline-{listener}"),
        format!("{name}-{slot}"),
        format!("{name} slot {slot}"),
        codec_kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    ));
    let clock = if kind == Kind::Audio { 48_000 } else { 90_000 };
    let track = Arc::new(track);
    let outlet = Outlet {
        sink: Sink::Track(track.clone()),
        ssrc,
        payload_type,
        rewriter: std::sync::Mutex::new((0, RtpRewriter::new(clock))),
    };
    (track, Arc::new(outlet))
}

fn rand_ssrc() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    (h.finish() as u32).max(1)
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec { mime_type: MIME_TYPE_VP8.to_owned(), clock_rate: 90_000, channels: 0, ..Default::default() }
}

async fn build_peer(
    config: &SfuConfig,
    opus: u8,
    vp8: Option<u8>,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<Arc<dyn PeerConnection>, SfuError> {
    let internal = |e: rtc::shared::error::Error| SfuError::Internal(e.to_string());
    let mut engine = MediaEngine::default();
    engine
        .register_codec(RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: opus }, RtpCodecKind::Audio)
        .map_err(internal)?;
    if let Some(pt) = vp8 {
        engine
            .register_codec(RTCRtpCodecParameters { rtp_codec: vp8_codec(), payload_type: pt }, RtpCodecKind::Video)
            .map_err(internal)?;
    }
    let registry = register_default_interceptors(Registry::new(), &mut engine).map_err(internal)?;
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(config.udp_addrs.clone())
        .build()
        .await
        .map_err(internal)?;
    Ok(Arc::new(pc))
}

struct Handler {
    inner: Arc<Inner>,
    session: Arc<LiveSession>,
    participant: String,
    role: Role,
    epoch: u64,
    signal: mpsc::UnboundedSender<ServerMessage>,
    gathered: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        // Candidates found after the answer went out (the answer carries the rest).
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.signal.send(ServerMessage::Candidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid,
                sdp_mline_index: init.sdp_mline_index,
            });
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete
            && let Some(tx) = self.gathered.lock().expect("gathered lock").take()
        {
            let _ = tx.send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(participant = %self.participant, %state, "peer connection state");
        if matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Disconnected) {
            connection_lost(&self.inner, &self.session, &self.participant, self.epoch).await;
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = match track.kind().await {
            RtpCodecKind::Video => Kind::Video,
            _ => Kind::Audio,
        };
        let forward = Forwarder {
            speaker: Speaker {
                inner: self.inner.clone(),
                session: self.session.clone(),
                key: (self.participant.clone(), kind),
                role: self.role,
                epoch: self.epoch,
                recorder: None,
            },
            video_seen: (kind == Kind::Video).then(|| {
                let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
                self.session.video_seen.lock().expect("video lock").insert(self.participant.clone(), seen.clone());
                seen
            }),
        };
        if kind == Kind::Video {
            // Ask the sender for a key frame now and then, so that a listener
            // who starts receiving mid-stream gets a picture soon.
            let track = track.clone();
            tokio::spawn(async move {
                let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
                loop {
                    let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: ssrc };
                    if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
        tokio::spawn(forward.run(track));
    }
}

/// One participant's media into the call: recorded (audio, with consent),
/// tapped, and forwarded by the route table. The one path of a browser's
/// tracks ([`Forwarder`]) and a phone line's voice ([`Line::speak`]).
struct Speaker {
    inner: Arc<Inner>,
    session: Arc<LiveSession>,
    /// The participant and the kind of media: the route table's key.
    key: (String, Kind),
    role: Role,
    epoch: u64,
    /// The open recording of this audio, while the session allows it.
    recorder: Option<Recorder>,
}

type Recorder = OggWriter<std::io::BufWriter<std::fs::File>>;

impl Speaker {
    /// Opens this track's recording file, or says why not.
    fn open_recording(&self, dir: &std::path::Path) -> std::io::Result<Recorder> {
        let safe = |s: &str| {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
                .collect::<String>()
        };
        let dir = dir.join(safe(&self.session.id));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}-{}-{}.ogg", self.role.as_str(), safe(&self.key.0), self.epoch));
        let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        tracing::info!(path = %path.display(), "recording");
        OggWriter::new(file, 48_000, 2).map_err(std::io::Error::other)
    }

    /// Writes an audio packet to the recording while the session's consent
    /// stands (checked per packet), opening or closing the file as it changes.
    fn record(&mut self, packet: &rtc::rtp::Packet) {
        let Some(dir) = &self.inner.config.recordings else { return };
        let allowed = self.session.recording.load(std::sync::atomic::Ordering::Relaxed);
        if allowed && self.recorder.is_none() {
            match self.open_recording(dir) {
                Ok(r) => self.recorder = Some(r),
                Err(e) => tracing::error!(error = %e, "cannot record"),
            }
        }
        if !allowed {
            self.stop_recording();
        }
        if let Some(r) = &mut self.recorder
            && let Err(e) = r.write_rtp(packet)
        {
            tracing::warn!(error = %e, "recording");
        }
    }

    fn stop_recording(&mut self) {
        if let Some(mut r) = self.recorder.take()
            && let Err(e) = r.close()
        {
            // The file is what it is; the call goes on.
            tracing::warn!(error = %e, "closing a recording");
        }
    }

    /// Hands 16 kHz audio to the taps' subscribers.
    fn tap(&self, pcm: Arc<[f32]>, at_ms: u64) {
        let _ = self.inner.taps.send(AudioFrame {
            session: self.session.id.clone(),
            participant: self.key.0.clone(),
            role: self.role,
            at_ms,
            pcm,
        });
    }

    /// Sends a packet to every slot the route table gives this speaker:
    /// rewritten for each outgoing track, or queued in a line's mixer.
    async fn forward(&self, packet: &rtc::rtp::Packet, now: u64) {
        let table = self.session.routes.read().expect("route table lock").clone();
        let Some(outlets) = table.by_speaker.get(&self.key) else { return };
        for outlet in outlets {
            let (seq, ts) = {
                let mut rewriter = outlet.rewriter.lock().expect("rewriter lock");
                if rewriter.0 != table.generation {
                    rewriter.0 = table.generation;
                    rewriter.1.resync();
                }
                rewriter.1.rewrite(packet.header.ssrc, packet.header.sequence_number, packet.header.timestamp, now)
            };
            match &outlet.sink {
                Sink::Track(track) => {
                    let mut out = packet.clone();
                    out.header.sequence_number = seq;
                    out.header.timestamp = ts;
                    out.header.ssrc = outlet.ssrc;
                    out.header.payload_type = outlet.payload_type;
                    // Extension ids are negotiated per connection: drop them.
                    out.header.extension = false;
                    out.header.extensions.clear();
                    out.header.extensions_padding = 0;
                    if let Err(e) = track.write_rtp(out).await {
                        tracing::trace!(error = %e, "forward");
                    }
                }
                // What the mixer does with it (late, a copy) is in its counts.
                Sink::Ear { ear, slot } => {
                    ear.lock().expect("ear lock").push(*slot, ts, &packet.payload);
                }
            }
        }
    }
}

struct Forwarder {
    speaker: Speaker,
    /// For a video track: where its packets' arrival is noted.
    video_seen: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Forwarder {
    async fn run(mut self, track: Arc<dyn TrackRemote>) {
        let audio = self.speaker.key.1 == Kind::Audio;
        let mut decoder: Option<opus_rs::OpusDecoder> = None;
        let mut pcm = vec![0f32; 16_000 * 120 / 1000];
        while let Some(event) = track.poll().await {
            let packet = match event {
                TrackRemoteEvent::OnRtpPacket(packet) => packet,
                TrackRemoteEvent::OnEnded => break,
                _ => continue,
            };
            // Bandwidth probes carry padding only.
            if packet.payload.is_empty() {
                continue;
            }
            let now = self.speaker.inner.now_ms();
            if let Some(seen) = &self.video_seen {
                // `max(1)`: zero means "nothing yet".
                seen.store(now.max(1), std::sync::atomic::Ordering::Relaxed);
            }
            if audio {
                self.speaker.record(&packet);
            }
            if audio && self.speaker.inner.taps.receiver_count() > 0 {
                if decoder.is_none() {
                    match opus_rs::OpusDecoder::new(16_000, 1) {
                        Ok(d) => decoder = Some(d),
                        // No taps of this track; it is still forwarded.
                        Err(e) => tracing::warn!(error = e, "no opus decoder"),
                    }
                }
                if let Some(decoder) = &mut decoder
                    && let Ok(n) = decoder.decode(&packet.payload, pcm.len(), &mut pcm)
                {
                    self.speaker.tap(Arc::from(&pcm[..n]), now);
                }
            }
            self.speaker.forward(&packet, now).await;
        }
        self.speaker.stop_recording();
    }
}
