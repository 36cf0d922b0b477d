//! The SFU with real WebRTC peers on loopback: each client peer sends a
//! tone of its own pitch as Opus, and the tests listen, per received track,
//! for which pitches arrive.

use std::time::Duration;

use telemed::media::{ClientMessage, Role, ServerMessage, Supervision};
use telemed::mixer::FRAME;
use telemed::sfu::{Line, Sfu, SfuConfig, SfuError};
use tokio::sync::mpsc;

mod peer;
use peer::{Client, RATE, tone_share, tone_share_at};

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

/// Waits (bounded) until `client` has heard at least `seconds` of audio on
/// one track since it last forgot: what the SFU forwarded (and, with
/// consent, recorded) meanwhile.
async fn until_heard_for(who: &str, client: &Client, seconds: f32) {
    client.forget();
    let want = (seconds * RATE as f32) as usize;
    let longest = || client.heard.lock().unwrap().values().map(Vec::len).max().unwrap_or(0);
    for _ in 0..100 {
        if longest() >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{who} heard {} of {want} samples", longest());
}

/// Whether an OGG file is complete: its last page is marked end of stream
/// (written when the recording closes).
fn ogg_is_closed(path: &std::path::Path) -> bool {
    use rtc::media::io::ogg_reader::OggReader;
    let Ok(file) = std::fs::File::open(path) else { return false };
    let Ok((mut reader, _)) = OggReader::new(file, true) else { return false };
    let mut last = 0;
    while let Ok((_, page)) = reader.parse_next_page() {
        last = page.header_type;
    }
    last & 4 != 0
}

/// Waits (bounded) until `dir` holds `n` recordings, each closed; returns them in name order.
async fn until_recordings_closed(dir: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for _ in 0..100 {
        files = std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
        files.sort();
        if files.len() == n && files.iter().all(|f| ogg_is_closed(f)) {
            return files;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} holds {files:?}, not {n} closed recordings", dir.display());
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
    // Each packet is recorded before it is forwarded: what both hear from now on is on file.
    until_heard_for("operator", &operator, 1.5).await;
    until_heard_for("patient", &patient, 1.5).await;
    for c in [patient, operator] {
        c.call.handle(ClientMessage::Leave).await.unwrap();
        c.close().await;
    }
    let files = until_recordings_closed(&dir.join("c5"), 2).await;
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
    let share = tone_share_at(&pcm[pcm.len() - 8_000..], PATIENT, 16_000.0);
    assert!(share > 0.5, "the tap does not carry the patient's 440 Hz ({share})");

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

    // Gone for longer than the grace period (2 s): removed from the call, not before.
    patient.call.disconnected().await;
    let gone = std::time::Instant::now();
    patient.close().await;
    let alone = vec![("op".to_owned(), Role::Operator)];
    while sfu.participants("c3").await != alone {
        assert!(gone.elapsed() < Duration::from_secs(10), "the patient is still in the call after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone.elapsed() >= Duration::from_secs(2), "removed after {:?}, within the grace period", gone.elapsed());
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
    // A socket that never offered leaves nothing behind.
    let (tx, _rx) = mpsc::unbounded_channel();
    let passerby = sfu.attach("c9", "pat", Role::Patient, tx).await;
    passerby.disconnected().await;
    assert_eq!(sfu.sessions().await, 1);
}

/// coturn on a free loopback port, with one long-term user; stopped on drop.
struct Turn(std::process::Child, u16);

impl Turn {
    fn start() -> Turn {
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("turnserver")
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port"])
            .arg(port.to_string())
            .args(["--min-port", "50000", "--max-port", "50999", "--lt-cred-mech", "--realm", "careline"])
            .args(["--user", "careline:relay-secret", "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli"])
            .args(["--no-stdout-log", "--log-file", "stdout", "--simple-log", "--pidfile"])
            .arg(std::env::temp_dir().join(format!("careline-turn-{port}.pid")))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run turnserver (apt-get install coturn; bash .ci/run does)");
        // Ready when it answers a STUN binding request.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(b"careline-rdy");
        let mut answer = [0u8; 512];
        let ready = (0..50).any(|_| {
            let _ = socket.send_to(&request, ("127.0.0.1", port));
            matches!(socket.recv(&mut answer), Ok(n) if n >= 20 && answer[0..2] == [0x01, 0x01])
        });
        assert!(ready, "turnserver did not answer STUN on 127.0.0.1:{port}");
        Turn(child, port)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_behind_a_relay_only_network_talks_through_turn() {
    let turn = Turn::start();
    let sfu = sfu();
    let operator = Client::join(&sfu, "c6", "op", Role::Operator, OPERATOR).await;
    let (tx, signal) = mpsc::unbounded_channel();
    let call = sfu.attach("c6", "pat", Role::Patient, tx).await;
    let relay = webrtc::peer_connection::RTCIceServer {
        urls: vec![format!("turn:127.0.0.1:{}?transport=udp", turn.1)],
        username: "careline".into(),
        credential: "relay-secret".into(),
    };
    let patient =
        Client::connect_on(call, signal, PATIENT, peer::Options { relay: Some(relay), ..Default::default() }).await;
    let offer = &patient.offered;
    assert!(offer.contains("typ relay"), "no relay candidate in the offer:\n{offer}");
    assert!(!offer.contains("typ host"), "a host candidate despite the relay-only policy:\n{offer}");
    until_hears("operator", &operator, &[PATIENT]).await;
    until_hears("patient over TURN", &patient, &[OPERATOR]).await;
    patient.close().await;
    operator.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_flows_between_video_parties_and_stops_when_switched_off() {
    let sfu = sfu();
    let video = || peer::Options { video: true, ..Default::default() };
    let patient = Client::join_with(&sfu, "c7", "pat", Role::Patient, PATIENT, video()).await;
    let doctor = Client::join_with(&sfu, "c7", "doc", Role::Doctor, DOCTOR, video()).await;
    let operator = Client::join(&sfu, "c7", "op", Role::Operator, OPERATOR).await;
    fn count(c: &Client) -> u64 {
        c.video_packets.lock().unwrap().values().sum()
    }
    async fn grows(c: &Client) -> bool {
        let before = count(c);
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if count(c) > before + 10 {
                return true;
            }
        }
        false
    }
    assert!(grows(&doctor).await, "the doctor gets no video from the patient");
    assert!(grows(&patient).await, "the patient gets no video from the doctor");
    // The operator joined without video: voice only, everyone still heard.
    until_hears("operator", &operator, &[PATIENT, DOCTOR]).await;
    assert_eq!(count(&operator), 0);
    // What a prescription's consult mode rests on: the doctor sees the patient, the operator does not.
    assert!(sfu.receives_video("c7", "doc", "pat").await);
    assert!(!sfu.receives_video("c7", "op", "pat").await);
    assert!(!sfu.receives_video("other", "doc", "pat").await);
    // A poor network: the patient switches video off; their voice goes on.
    patient.call.handle(ClientMessage::Video { on: false }).await.unwrap();
    assert!(!sfu.receives_video("c7", "doc", "pat").await, "video off is not a video consult");
    assert!(!grows(&doctor).await, "the doctor still gets the patient's video");
    until_hears("doctor, patient's video off", &doctor, &[PATIENT, OPERATOR]).await;
    for c in [patient, doctor, operator] {
        c.close().await;
    }
}

/// A phone line driven as the phone task drives it: every 20 ms it says
/// 20 ms of a tone at 8 kHz and keeps what it heard (`None`: it waited).
struct LineDriver {
    heard: std::sync::Arc<std::sync::Mutex<Vec<Option<[i16; FRAME]>>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Line>,
}

fn drive(mut line: Line, pitch: f32) -> LineDriver {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let kept = heard.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for n in 0usize.. {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let mut pcm = [0i16; FRAME];
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = (n * FRAME + i) as f32 / 8_000.0;
                *s = (0.3 * 32_767.0 * (2.0 * std::f32::consts::PI * pitch * t).sin()) as i16;
            }
            line.speak(&pcm).await.unwrap();
            let frame = line.hear();
            kept.lock().unwrap().push(frame);
        }
        line
    });
    LineDriver { heard, stop, task }
}

/// What a line should hear.
#[derive(Debug, Clone, Copy)]
enum Hears {
    /// The mix, with this pitch in it.
    Tone(f32),
    /// The mix, silent (everyone muted).
    Silence,
    /// Nothing: the line waits (held or alone), and the phone plays hold music.
    Nobody,
}

impl LineDriver {
    /// Waits (bounded) until the last half second the line heard is what
    /// `expected` says.
    async fn until_hears(&self, who: &str, expected: Hears) {
        let mut last = String::new();
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let heard = self.heard.lock().unwrap();
            let tail = &heard[heard.len().saturating_sub(25)..];
            if tail.len() < 25 {
                continue;
            }
            let waiting = tail.iter().filter(|f| f.is_none()).count();
            let pcm: Vec<f32> = tail.iter().flatten().flatten().map(|&s| f32::from(s) / 32_768.0).collect();
            let rms = (pcm.iter().map(|x| x * x).sum::<f32>() / pcm.len().max(1) as f32).sqrt();
            match expected {
                Hears::Nobody if waiting == tail.len() => return,
                Hears::Silence if waiting == 0 && rms < 0.001 => return,
                Hears::Tone(f) if waiting == 0 && tone_share_at(&pcm, f, 8_000.0) > 0.3 => return,
                Hears::Tone(f) => {
                    last =
                        format!("{waiting} waiting frames, {} of the energy at {f} Hz", tone_share_at(&pcm, f, 8_000.0))
                }
                _ => last = format!("{waiting} waiting frames, RMS {rms}"),
            }
        }
        panic!("{who}: the line hears {last}, expected {expected:?}");
    }

    async fn stop(self) -> Line {
        self.stop.send(()).unwrap();
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_line_and_a_browser_hear_each_other_and_a_held_line_hears_nobody() {
    let sfu = sfu();
    let mut taps = sfu.taps();
    let line = sfu.attach_line("c8", "patient", Role::Patient).await.unwrap();
    let operator = Client::join(&sfu, "c8", "op", Role::Operator, OPERATOR).await;
    let line = drive(line, PATIENT);
    until_hears("operator", &operator, &[PATIENT]).await;
    line.until_hears("line", Hears::Tone(OPERATOR)).await;

    // The line's voice reaches the taps at 16 kHz, as a browser's does.
    let mut pcm = Vec::new();
    while pcm.len() < 16_000 {
        let frame = tokio::time::timeout(Duration::from_secs(5), taps.recv()).await.unwrap().unwrap();
        if frame.participant == "patient" {
            assert_eq!((frame.session.as_str(), frame.role), ("c8", Role::Patient));
            pcm.extend_from_slice(&frame.pcm);
        }
    }
    let share = tone_share_at(&pcm[pcm.len() - 8_000..], PATIENT, 16_000.0);
    assert!(share > 0.5, "the tap does not carry the line's 440 Hz ({share})");

    // Neither a second line nor a browser takes the line's place.
    assert!(matches!(
        sfu.attach_line("c8", "patient", Role::Patient).await,
        Err(SfuError::AlreadyInCall(who)) if who == "patient"
    ));
    let (tx, _rx) = mpsc::unbounded_channel();
    let intruder = sfu.attach("c8", "patient", Role::Patient, tx).await;
    let refused = intruder.handle(ClientMessage::Offer { sdp: operator.offered.clone() }).await;
    assert!(matches!(refused, Err(SfuError::LineInCall(_))), "{refused:?}");
    intruder.leave().await;

    // The operator holds the caller: the line hears nobody (the phone
    // plays hold music) and is heard by nobody; then resumes.
    operator.call.handle(ClientMessage::Hold { participant: "patient".into(), on: true }).await.unwrap();
    line.until_hears("held line", Hears::Nobody).await;
    until_hears("operator, caller held", &operator, &[]).await;
    operator.call.handle(ClientMessage::Hold { participant: "patient".into(), on: false }).await.unwrap();
    line.until_hears("resumed line", Hears::Tone(OPERATOR)).await;
    until_hears("operator, caller resumed", &operator, &[PATIENT]).await;
    // A muted operator is silence to the caller, not hold music.
    operator.call.handle(ClientMessage::Mute { muted: true }).await.unwrap();
    line.until_hears("line, operator muted", Hears::Silence).await;
    operator.call.handle(ClientMessage::Mute { muted: false }).await.unwrap();

    // A doctor joins (an escalation): the line hears both, both hear it.
    let doctor = Client::join(&sfu, "c8", "doc", Role::Doctor, DOCTOR).await;
    until_hears("doctor", &doctor, &[PATIENT, OPERATOR]).await;
    line.until_hears("line, three-way (operator)", Hears::Tone(OPERATOR)).await;
    line.until_hears("line, three-way (doctor)", Hears::Tone(DOCTOR)).await;
    let stats = line.stop().await;
    assert!(stats.stats().played > 50, "{:?}", stats.stats());
    stats.leave().await;
    until_hears("operator after the line left", &operator, &[DOCTOR]).await;
    let mut left = sfu.participants("c8").await;
    left.sort();
    assert_eq!(left, vec![("doc".to_owned(), Role::Doctor), ("op".to_owned(), Role::Operator)]);

    // A line dropped without leaving is taken out of the call too.
    let dropped = sfu.attach_line("c8", "patient", Role::Patient).await.unwrap();
    assert_eq!(sfu.participants("c8").await.len(), 3);
    drop(dropped);
    for _ in 0..40 {
        if sfu.participants("c8").await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sfu.participants("c8").await.len(), 2);
    operator.close().await;
    doctor.close().await;
}
