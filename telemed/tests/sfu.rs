//! The SFU with real WebRTC peers on loopback: each client peer sends a
//! tone of its own pitch as Opus, and the tests listen, per received track,
//! for which pitches arrive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use telemed::media::{ClientMessage, Role, ServerMessage, Supervision};
use telemed::sfu::{CallHandle, Sfu, SfuConfig};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, Registry,
};

const RATE: usize = 48_000;
const FRAME: usize = 960;

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Decoded audio received by one client, per incoming track.
type Heard = Arc<Mutex<HashMap<String, Vec<f32>>>>;

struct ClientHandler {
    heard: Heard,
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
        tokio::spawn(async move {
            let id = track.track_id().await.to_string();
            let mut decoder = opus_rs::OpusDecoder::new(RATE as i32, 1).unwrap();
            let mut pcm = vec![0f32; RATE * 120 / 1000];
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
                if packet.payload.is_empty() {
                    continue;
                }
                if let Ok(n) = decoder.decode(&packet.payload, pcm.len(), &mut pcm) {
                    heard.lock().unwrap().entry(id.clone()).or_default().extend_from_slice(&pcm[..n]);
                }
            }
        });
    }
}

/// A participant: a peer connection sending a tone, and its signaling.
struct Client {
    pc: Arc<dyn PeerConnection>,
    heard: Heard,
    call: CallHandle,
    signal: mpsc::UnboundedReceiver<ServerMessage>,
    sender: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn join(sfu: &Sfu, session: &str, id: &str, role: Role, pitch: f32) -> Client {
        let (tx, signal) = mpsc::unbounded_channel();
        let call = sfu.attach(session, id, role, tx).await;
        let mut client = Client::connect(call, signal, pitch).await;
        client.wait_for(|m| matches!(m, ServerMessage::Roster { .. })).await;
        client
    }

    async fn connect(call: CallHandle, mut signal: mpsc::UnboundedReceiver<ServerMessage>, pitch: f32) -> Client {
        let mut engine = MediaEngine::default();
        engine
            .register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 }, RtpCodecKind::Audio)
            .unwrap();
        let registry = register_default_interceptors(Registry::new(), &mut engine).unwrap();
        let heard: Heard = Arc::default();
        let (gathered_tx, gathered_rx) = tokio::sync::oneshot::channel();
        let handler = Arc::new(ClientHandler { heard: heard.clone(), gathered: Mutex::new(Some(gathered_tx)) });
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
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
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(3), gathered_rx).await;
        let sdp = pc.local_description().await.unwrap().sdp;
        call.handle(ClientMessage::Offer { sdp }).await.unwrap();
        let answer = loop {
            match tokio::time::timeout(Duration::from_secs(5), signal.recv()).await.expect("an answer").unwrap() {
                ServerMessage::Answer { sdp } => break sdp,
                _ => continue,
            }
        };
        pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap()).await.unwrap();
        let sender = tokio::spawn(send_tone(mic, ssrc, pitch));
        Client { pc, heard, call, signal, sender }
    }

    async fn wait_for(&mut self, mut f: impl FnMut(&ServerMessage) -> bool) -> ServerMessage {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.signal.recv()).await.expect("a message").unwrap();
            if f(&m) {
                return m;
            }
        }
    }

    /// The pitches heard in the last `window` of audio, over all tracks.
    fn pitches(&self, candidates: &[f32]) -> Vec<f32> {
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

    fn forget(&self) {
        self.heard.lock().unwrap().clear();
    }

    async fn close(self) {
        self.sender.abort();
        let _ = self.pc.close().await;
    }
}

/// The share of the signal's energy at `freq` (Goertzel).
fn tone_share(pcm: &[f32], freq: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / RATE as f32;
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

async fn send_tone(track: Arc<TrackLocalStaticRTP>, ssrc: u32, pitch: f32) {
    let mut encoder = opus_rs::OpusEncoder::new(RATE as i32, 1, opus_rs::Application::Voip).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut out = vec![0u8; 1500];
    for n in 0u32.. {
        tick.tick().await;
        let frame: Vec<f32> = (0..FRAME)
            .map(|i| {
                let t = (n as usize * FRAME + i) as f32 / RATE as f32;
                0.3 * (2.0 * std::f32::consts::PI * pitch * t).sin()
            })
            .collect();
        let len = encoder.encode(&frame, FRAME, &mut out).unwrap();
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
            payload: out[..len].to_vec().into(),
        };
        let _ = track.write_rtp(packet).await;
    }
}

const PATIENT: f32 = 440.0;
const OPERATOR: f32 = 660.0;
const DOCTOR: f32 = 990.0;
const SUPERVISOR: f32 = 1320.0;
/// The patient's pitch after a rejoin, to tell the new connection from the old.
const REJOINED: f32 = 550.0;
const ALL: [f32; 5] = [PATIENT, REJOINED, OPERATOR, DOCTOR, SUPERVISOR];

/// Waits (bounded) until `client` hears exactly `expected`.
async fn until_hears(who: &str, client: &Client, expected: &[f32]) {
    client.forget();
    let mut last = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last = client.pitches(&ALL);
        if last == expected {
            return;
        }
    }
    panic!("{who} hears {last:?}, expected {expected:?}");
}

fn sfu() -> Sfu {
    Sfu::new(SfuConfig { grace: Duration::from_secs(2), ..SfuConfig::default() })
}

/// Decodes an OGG/Opus file to 48 kHz mono.
fn decode_ogg(path: &std::path::Path) -> Vec<f32> {
    use rtc::media::io::ogg_reader::OggReader;
    let (mut reader, header) = OggReader::new(std::fs::File::open(path).unwrap(), true).unwrap();
    assert_eq!(header.sample_rate, 48_000);
    let mut decoder = opus_rs::OpusDecoder::new(RATE as i32, 1).unwrap();
    let mut out = vec![0f32; RATE * 120 / 1000];
    let mut pcm = Vec::new();
    while let Ok((payload, page)) = reader.parse_next_page() {
        if page.opus_header_type(&payload).is_some() {
            continue;
        }
        if let Ok(n) = decoder.decode(&payload, out.len(), &mut out) {
            pcm.extend_from_slice(&out[..n]);
        }
    }
    pcm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_recorded_only_with_consent_one_file_per_track() {
    let dir = std::env::temp_dir().join(format!("careline-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sfu = Sfu::new(SfuConfig { recordings: Some(dir.clone()), ..SfuConfig::default() });
    let patient = Client::join(&sfu, "c5", "pat", Role::Patient, PATIENT).await;
    let operator = Client::join(&sfu, "c5", "op", Role::Operator, OPERATOR).await;
    until_hears("operator", &operator, &[PATIENT]).await;
    assert!(!dir.exists(), "recorded without consent");

    sfu.set_recording("c5", true).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for c in [patient, operator] {
        c.call.handle(ClientMessage::Leave).await.unwrap();
        c.close().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut files: Vec<_> = std::fs::read_dir(dir.join("c5")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("operator-op-") && names[1].starts_with("patient-pat-"), "{names:?}");
    for (file, pitch) in files.iter().zip([OPERATOR, PATIENT]) {
        let pcm = decode_ogg(file);
        assert!(pcm.len() > RATE, "{} holds {} samples", file.display(), pcm.len());
        let share = tone_share(&pcm[pcm.len() / 2..], pitch);
        assert!(share > 0.5, "{} is not the {pitch} Hz tone ({share})", file.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_operator_hear_each_other_and_the_tap_decodes_the_patient() {
    let sfu = sfu();
    let mut taps = sfu.taps();
    let patient = Client::join(&sfu, "c1", "pat", Role::Patient, PATIENT).await;
    let operator = Client::join(&sfu, "c1", "op", Role::Operator, OPERATOR).await;
    until_hears("patient", &patient, &[OPERATOR]).await;
    until_hears("operator", &operator, &[PATIENT]).await;

    // The tap gives 16 kHz PCM of the patient, tagged with their role.
    let mut pcm = Vec::new();
    while pcm.len() < 16_000 {
        let frame = tokio::time::timeout(Duration::from_secs(5), taps.recv()).await.unwrap().unwrap();
        if frame.participant == "pat" {
            assert_eq!((frame.session.as_str(), frame.role), ("c1", Role::Patient));
            pcm.extend_from_slice(&frame.pcm);
        }
    }
    let tail = &pcm[pcm.len() - 8_000..];
    let w = 2.0 * std::f32::consts::PI * PATIENT / 16_000.0;
    let (mut s1, mut s2) = (0f32, 0f32);
    for &x in tail {
        let s = x + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let energy: f32 = tail.iter().map(|x| x * x).sum();
    assert!(2.0 * power / (tail.len() as f32 * energy) > 0.5, "the tap does not carry the patient's 440 Hz");

    patient.close().await;
    operator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_transfer_with_supervisor_whisper_and_barge() {
    let sfu = sfu();
    let patient = Client::join(&sfu, "c2", "pat", Role::Patient, PATIENT).await;
    let operator = Client::join(&sfu, "c2", "op", Role::Operator, OPERATOR).await;
    let doctor = Client::join(&sfu, "c2", "doc", Role::Doctor, DOCTOR).await;
    until_hears("patient", &patient, &[OPERATOR, DOCTOR]).await;

    // The operator holds the patient to brief the doctor.
    operator.call.handle(ClientMessage::Hold { participant: "pat".into(), on: true }).await.unwrap();
    until_hears("doctor in the briefing", &doctor, &[OPERATOR]).await;
    until_hears("held patient", &patient, &[]).await;
    // A patient may not hold anyone; the call is unchanged.
    assert!(patient.call.handle(ClientMessage::Hold { participant: "op".into(), on: true }).await.is_err());

    // All three talk, then the operator leaves.
    operator.call.handle(ClientMessage::Hold { participant: "pat".into(), on: false }).await.unwrap();
    until_hears("doctor, three-way", &doctor, &[PATIENT, OPERATOR]).await;
    operator.call.handle(ClientMessage::Leave).await.unwrap();
    operator.close().await;
    until_hears("patient with the doctor", &patient, &[DOCTOR]).await;

    // A supervisor listens, whispers to the doctor, then barges in.
    let supervisor = Client::join(&sfu, "c2", "sup", Role::Supervisor, SUPERVISOR).await;
    until_hears("supervisor", &supervisor, &[PATIENT, DOCTOR]).await;
    until_hears("patient while monitored", &patient, &[DOCTOR]).await;
    supervisor.call.handle(ClientMessage::Supervise(Supervision::Whisper { agent: "doc".into() })).await.unwrap();
    until_hears("doctor, whispered to", &doctor, &[PATIENT, SUPERVISOR]).await;
    until_hears("patient during the whisper", &patient, &[DOCTOR]).await;
    supervisor.call.handle(ClientMessage::Supervise(Supervision::Barge)).await.unwrap();
    until_hears("patient after the barge", &patient, &[DOCTOR, SUPERVISOR]).await;

    for c in [patient, doctor, supervisor] {
        c.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_patient_rejoins_within_the_grace_period() {
    let sfu = sfu();
    let patient = Client::join(&sfu, "c3", "pat", Role::Patient, PATIENT).await;
    let mut operator = Client::join(&sfu, "c3", "op", Role::Operator, OPERATOR).await;
    until_hears("operator", &operator, &[PATIENT]).await;

    // The page reloads: the old socket is gone, a new one offers again.
    patient.call.disconnected().await;
    patient.close().await;
    let roster = operator.wait_for(|m| matches!(m, ServerMessage::Roster { participants } if participants.iter().any(|p| p.id == "pat" && !p.connected))).await;
    assert!(matches!(roster, ServerMessage::Roster { .. }));
    let patient = Client::join(&sfu, "c3", "pat", Role::Patient, REJOINED).await;
    until_hears("operator after the rejoin", &operator, &[REJOINED]).await;
    until_hears("rejoined patient", &patient, &[OPERATOR]).await;
    assert_eq!(sfu.participants("c3").await.len(), 2);

    // Gone for longer than the grace period: removed from the call.
    patient.call.disconnected().await;
    patient.close().await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(sfu.participants("c3").await, vec![("op".to_owned(), Role::Operator)]);
    operator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_offer_is_refused_and_changes_nothing() {
    let sfu = sfu();
    let operator = Client::join(&sfu, "c4", "op", Role::Operator, OPERATOR).await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let intruder = sfu.attach("c4", "pat", Role::Patient, tx).await;
    for sdp in ["not sdp at all", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"] {
        assert!(intruder.handle(ClientMessage::Offer { sdp: sdp.into() }).await.is_err(), "{sdp}");
    }
    assert!(intruder.handle(ClientMessage::Mute { muted: true }).await.is_err());
    assert_eq!(sfu.participants("c4").await, vec![("op".to_owned(), Role::Operator)]);
    operator.close().await;
}
