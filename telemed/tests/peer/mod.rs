//! A client peer for the SFU's tests and its load generator
//! (`examples/relay_load.rs`): a webrtc peer connection that joins a call
//! through a [`CallHandle`] and sends a tone as Opus; it either decodes what
//! it receives (to tell which pitches it hears) or only times arrivals
//! against the partner's send log (load mode).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use telemed::media::{ClientMessage, Role, ServerMessage};
use telemed::sfu::{CallHandle, Sfu};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCIceServer, RTCIceTransportPolicy, Registry,
};

pub const RATE: usize = 48_000;
pub const FRAME: usize = 960;

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec { mime_type: MIME_TYPE_VP8.to_owned(), clock_rate: 90_000, channels: 0, ..Default::default() }
}

/// Sends VP8-framed packets at 30 per second. The SFU forwards without
/// decoding, so the payload is a payload descriptor and filler, not a picture.
async fn send_video(track: Arc<TrackLocalStaticRTP>, ssrc: u32) {
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    for n in 0u32.. {
        tick.tick().await;
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 96,
                sequence_number: n as u16,
                timestamp: n.wrapping_mul(3_000),
                ssrc,
                marker: true,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(&[0x10, 0x9d, 0x01, 0x2a, 0, 0, 0, 0]),
        };
        if track.write_rtp(packet).await.is_err() {
            return;
        }
    }
}

/// Decoded audio received by one client, per incoming track.
pub type Heard = Arc<Mutex<HashMap<String, Vec<f32>>>>;

/// When each packet was sent, by sequence number (the SFU keeps a stream's
/// first mapping, so a listener sees the speaker's own numbers).
pub type SentLog = Mutex<Vec<Option<Instant>>>;

/// Load mode: arrivals timed against the partner's send log.
#[derive(Default)]
pub struct Timing {
    pub partner: OnceLock<Arc<SentLog>>,
    pub delays: Mutex<Vec<Duration>>,
    pub received: std::sync::atomic::AtomicU64,
}

/// Video packets received per incoming track.
pub type VideoPackets = Arc<Mutex<HashMap<String, u64>>>;

struct ClientHandler {
    heard: Heard,
    video_packets: VideoPackets,
    timing: Option<Arc<Timing>>,
    gathered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete
            && let Some(tx) = self.gathered.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let heard = self.heard.clone();
        let timing = self.timing.clone();
        if track.kind().await == RtpCodecKind::Video {
            let packets = self.video_packets.clone();
            tokio::spawn(async move {
                let id = track.track_id().await.to_string();
                while let Some(event) = track.poll().await {
                    if let TrackRemoteEvent::OnRtpPacket(packet) = event
                        && !packet.payload.is_empty()
                    {
                        *packets.lock().unwrap().entry(id.clone()).or_default() += 1;
                    }
                }
            });
            return;
        }
        tokio::spawn(async move {
            let id = track.track_id().await.to_string();
            let mut decoder = opus_rs::OpusDecoder::new(RATE as i32, 1).unwrap();
            let mut pcm = vec![0f32; RATE * 120 / 1000];
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
                if packet.payload.is_empty() {
                    continue;
                }
                if let Some(timing) = &timing {
                    timing.received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sent = timing
                        .partner
                        .get()
                        .and_then(|log| log.lock().unwrap()[packet.header.sequence_number as usize]);
                    if let Some(sent) = sent {
                        timing.delays.lock().unwrap().push(sent.elapsed());
                    }
                } else if let Ok(n) = decoder.decode(&packet.payload, pcm.len(), &mut pcm) {
                    heard.lock().unwrap().entry(id.clone()).or_default().extend_from_slice(&pcm[..n]);
                }
            }
        });
    }
}

/// How a client peer connects.
#[derive(Default)]
pub struct Options {
    /// Time arrivals against the partner's send log instead of decoding them.
    pub timed: bool,
    /// Run the SFU's side of the offer on this runtime.
    pub sfu: Option<tokio::runtime::Handle>,
    /// Gather relay candidates only, from this TURN server.
    pub relay: Option<RTCIceServer>,
    /// Also send video (VP8 packets at 30 per second) and receive two video slots.
    pub video: bool,
}

/// A participant: a peer connection sending a tone, and its signaling.
pub struct Client {
    pub pc: Arc<dyn PeerConnection>,
    pub heard: Heard,
    pub call: CallHandle,
    pub signal: mpsc::UnboundedReceiver<ServerMessage>,
    pub sender: tokio::task::JoinHandle<()>,
    pub sent: Arc<SentLog>,
    pub timing: Arc<Timing>,
    /// The SDP offer this peer sent.
    pub offered: String,
    /// Video packets received, per incoming track.
    pub video_packets: VideoPackets,
}

impl Client {
    /// Joins and waits for the first roster; decodes what it hears.
    pub async fn join(sfu: &Sfu, session: &str, id: &str, role: Role, pitch: f32) -> Client {
        Client::join_with(sfu, session, id, role, pitch, Options::default()).await
    }

    /// As [`Client::join`], with options.
    pub async fn join_with(sfu: &Sfu, session: &str, id: &str, role: Role, pitch: f32, options: Options) -> Client {
        let (tx, signal) = mpsc::unbounded_channel();
        let call = sfu.attach(session, id, role, tx).await;
        let mut client = Client::connect_on(call, signal, pitch, options).await;
        client.wait_for(|m| matches!(m, ServerMessage::Roster { .. })).await;
        client
    }

    /// Connects `call`'s participant.
    pub async fn connect_on(
        call: CallHandle,
        mut signal: mpsc::UnboundedReceiver<ServerMessage>,
        pitch: f32,
        options: Options,
    ) -> Client {
        let Options { timed, sfu, relay, video } = options;
        let mut engine = MediaEngine::default();
        engine
            .register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 }, RtpCodecKind::Audio)
            .unwrap();
        if video {
            engine
                .register_codec(RTCRtpCodecParameters { rtp_codec: vp8(), payload_type: 96 }, RtpCodecKind::Video)
                .unwrap();
        }
        let registry = register_default_interceptors(Registry::new(), &mut engine).unwrap();
        let heard: Heard = Arc::default();
        let video_packets: VideoPackets = Arc::default();
        let timing = Arc::new(Timing::default());
        let (gathered_tx, gathered_rx) = tokio::sync::oneshot::channel();
        let handler = Arc::new(ClientHandler {
            heard: heard.clone(),
            video_packets: video_packets.clone(),
            timing: timed.then(|| timing.clone()),
            gathered: Mutex::new(Some(gathered_tx)),
        });
        // With a TURN server, gather relay candidates only.
        let configuration = match relay {
            Some(server) => RTCConfigurationBuilder::new()
                .with_ice_servers(vec![server])
                .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
                .build(),
            None => RTCConfigurationBuilder::new().build(),
        };
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(configuration)
                .with_media_engine(engine)
                .with_interceptor_registry(registry)
                .with_handler(handler)
                .with_udp_addrs(vec!["127.0.0.1:0"])
                .build()
                .await
                .unwrap(),
        );
        let ssrc = 0x1000 + (pitch as u32);
        let mic = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "mic".into(),
            "mic".into(),
            "mic".into(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec: opus(),
                ..Default::default()
            }],
        )));
        pc.add_track(mic.clone() as Arc<dyn TrackLocal>).await.unwrap();
        for _ in 0..2 {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            };
            pc.add_transceiver_from_kind(RtpCodecKind::Audio, Some(init)).await.unwrap();
        }
        let camera = if video {
            let camera = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "camera".into(),
                "camera".into(),
                "camera".into(),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc + 1), ..Default::default() },
                    codec: vp8(),
                    ..Default::default()
                }],
            )));
            pc.add_track(camera.clone() as Arc<dyn TrackLocal>).await.unwrap();
            for _ in 0..2 {
                let init = RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    streams: vec![],
                    send_encodings: vec![],
                };
                pc.add_transceiver_from_kind(RtpCodecKind::Video, Some(init)).await.unwrap();
            }
            Some(camera)
        } else {
            None
        };
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(3), gathered_rx).await;
        let sdp = pc.local_description().await.unwrap().sdp;
        let offered = sdp.clone();
        let call = match sfu {
            Some(runtime) => runtime
                .spawn(async move {
                    call.handle(ClientMessage::Offer { sdp }).await.unwrap();
                    call
                })
                .await
                .unwrap(),
            None => {
                call.handle(ClientMessage::Offer { sdp }).await.unwrap();
                call
            }
        };
        let answer = loop {
            match tokio::time::timeout(Duration::from_secs(10), signal.recv()).await.expect("an answer").unwrap() {
                ServerMessage::Answer { sdp } => break sdp,
                _ => continue,
            }
        };
        pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap()).await.unwrap();
        let sent: Arc<SentLog> = Arc::new(Mutex::new(vec![None; 1 << 16]));
        let tone = tokio::spawn(send_tone(mic, ssrc, pitch, sent.clone()));
        let sender = match camera {
            Some(camera) => tokio::spawn(async move {
                let _ = tokio::join!(tone, send_video(camera, ssrc + 1));
            }),
            None => tone,
        };
        Client { pc, heard, call, signal, sender, sent, timing, offered, video_packets }
    }

    pub async fn wait_for(&mut self, mut f: impl FnMut(&ServerMessage) -> bool) -> ServerMessage {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.signal.recv()).await.expect("a message").unwrap();
            if f(&m) {
                return m;
            }
        }
    }

    /// The pitches among `candidates` heard in the last half second, over all tracks.
    pub fn pitches(&self, candidates: &[f32]) -> Vec<f32> {
        let heard = self.heard.lock().unwrap();
        let mut found = Vec::new();
        for pcm in heard.values() {
            let tail = &pcm[pcm.len().saturating_sub(RATE / 2)..];
            if tail.len() < RATE / 4 {
                continue;
            }
            for &f in candidates {
                if tone_share(tail, f) > 0.2 && !found.contains(&f) {
                    found.push(f);
                }
            }
        }
        found.sort_by(f32::total_cmp);
        found
    }

    pub fn forget(&self) {
        self.heard.lock().unwrap().clear();
    }

    pub async fn close(self) {
        self.sender.abort();
        let _ = self.pc.close().await;
    }
}

/// The share of the signal's energy at `freq` (Goertzel), at `rate`.
pub fn tone_share_at(pcm: &[f32], freq: f32, rate: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / rate;
    let (mut s1, mut s2) = (0f32, 0f32);
    for &x in pcm {
        let s = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let energy: f32 = pcm.iter().map(|x| x * x).sum();
    if energy <= f32::EPSILON { 0.0 } else { 2.0 * power / (pcm.len() as f32 * energy) }
}

/// [`tone_share_at`] at 48 kHz.
pub fn tone_share(pcm: &[f32], freq: f32) -> f32 {
    tone_share_at(pcm, freq, RATE as f32)
}

/// Sends 20 ms Opus frames of a sine at `pitch`, logging when each went
/// out. One second of tone is encoded once and looped (whole cycles for
/// pitches in hertz, so the loop is seamless).
async fn send_tone(track: Arc<TrackLocalStaticRTP>, ssrc: u32, pitch: f32, sent: Arc<SentLog>) {
    let mut encoder = opus_rs::OpusEncoder::new(RATE as i32, 1, opus_rs::Application::Voip).unwrap();
    let mut out = vec![0u8; 1500];
    let frames: Vec<bytes::Bytes> = (0..RATE / FRAME)
        .map(|n| {
            let frame: Vec<f32> = (0..FRAME)
                .map(|i| {
                    let t = (n * FRAME + i) as f32 / RATE as f32;
                    0.3 * (2.0 * std::f32::consts::PI * pitch * t).sin()
                })
                .collect();
            let len = encoder.encode(&frame, FRAME, &mut out).unwrap();
            bytes::Bytes::copy_from_slice(&out[..len])
        })
        .collect();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u32.. {
        tick.tick().await;
        let packet = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: n as u16,
                timestamp: n.wrapping_mul(FRAME as u32),
                ssrc,
                marker: n == 0,
                ..Default::default()
            },
            payload: frames[n as usize % frames.len()].clone(),
        };
        sent.lock().unwrap()[n as usize & 0xffff] = Some(Instant::now());
        if track.write_rtp(packet).await.is_ok() {
            SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Packets all client peers of this process have handed to their connections.
pub static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
