//! The phone channel: calls from the SIP trunk ([`telemed::sip`]) through
//! the IVR ([`telemed::ivr`]) into the routing queue, like a web caller.
//!
//! One task per call drives its [`Ivr`] with what happens on the line (keys
//! by RFC 4733, SIP INFO or in-band tones; prompts ending; the clock) and
//! with the routing engine's updates for its contact (place in the queue,
//! an offer, the answer, the end), and carries out the IVR's actions: it
//! plays the recorded prompts (or hold music) as 20 ms G.711 frames on a
//! 20 ms clock, queues the caller as a `phone` contact, asks for a callback
//! and hangs up.
//!
//! Once an agent answers, the call joins the contact's media session as a
//! phone line ([`telemed::sfu::Line`], the participant `patient`): on each
//! tick the caller's audio, through the jitter buffer, is spoken into the
//! call, and what the line hears (the mix of everyone the session routes
//! to it) is sent to the caller in the call's G.711 law. While the line
//! hears nobody (the agent holds the caller, or has not connected yet) the
//! caller hears hold music. An escalation keeps the line in the session:
//! the doctor joins it and hears the caller. The line leaves when the
//! caller hangs up or the contact ends.
//!
//! Not built yet: with several nodes, the agent's media is not routed to
//! the node that holds the SIP call (the agent must be on the same node).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, Opts};
use routing::{ContactId, Event as RoutingEvent};
use telemed::ivr::{Action, Event, Ivr, IvrConfig, Prompt};
use telemed::phone::dtmf::{EventReceiver, ToneDetector};
use telemed::phone::g711::Law;
use telemed::phone::jitter::{self, JitterBuffer};
use telemed::sfu::Line;
use telemed::sip::{Codec, IncomingCall, LegEvent, SipConfig, SipServer};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::center::Update;
use crate::http::AppState;
use crate::store::{Channel, NewContact};

/// Samples (and G.711 bytes) in one 20 ms frame at 8 kHz.
const FRAME: usize = 160;

/// The IVR's recordings, by [`Prompt::file`], as A-law bytes.
pub struct Prompts {
    alaw: HashMap<String, Vec<u8>>,
}

impl Prompts {
    /// Loads `DIR/{hi,en}/NAME.wav` for every prompt the IVR can play; a
    /// missing or unreadable file is an error that names it (a helpline must
    /// not go silent on one prompt).
    pub fn load(dir: &Path) -> anyhow::Result<Prompts> {
        let mut alaw = HashMap::new();
        let mut missing = Vec::new();
        for prompt in Prompt::all() {
            let name = prompt.file();
            let path = dir.join(format!("{name}.wav"));
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let audio =
                        wav_to_alaw(&bytes).with_context(|| format!("reading the prompt {}", path.display()))?;
                    alaw.insert(name, audio);
                }
                Err(_) => missing.push(path.display().to_string()),
            }
        }
        if !missing.is_empty() {
            anyhow::bail!(
                "{} IVR prompts are missing (make them with telemed/scripts/make-prompts.sh): {}",
                missing.len(),
                missing.join(", ")
            );
        }
        Ok(Prompts { alaw })
    }

    fn get(&self, prompt: &Prompt) -> &[u8] {
        self.alaw.get(&prompt.file()).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The audio of an 8 kHz mono WAV file (A-law, µ-law or 16-bit PCM) as A-law.
fn wav_to_alaw(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE", "not a WAV file");
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        let body = bytes.get(at + 8..at + 8 + len).context("a chunk runs past the end of the file")?;
        match id {
            b"fmt " => {
                anyhow::ensure!(body.len() >= 16, "a short fmt chunk");
                let tag = u16::from_le_bytes([body[0], body[1]]);
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                anyhow::ensure!(channels == 1 && rate == 8000, "{channels} channels at {rate} Hz: need mono 8 kHz");
                format = Some((tag, bits));
            }
            b"data" => {
                return match format.context("the data chunk comes before the fmt chunk")? {
                    (6, 8) => Ok(body.to_vec()),
                    (7, 8) => Ok(Law::A.encode(&Law::Mu.decode(body))),
                    (1, 16) => {
                        let pcm: Vec<i16> = body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                        Ok(Law::A.encode(&pcm))
                    }
                    (tag, bits) => anyhow::bail!("format {tag} with {bits} bits: need A-law, µ-law or 16-bit PCM"),
                };
            }
            _ => {}
        }
        at += 8 + len + (len & 1);
    }
    anyhow::bail!("no data chunk")
}

/// Hold music: a slow, quiet arpeggio (A major), made once, as A-law.
fn hold_music() -> Vec<u8> {
    let notes = [440.0_f32, 554.37, 659.25, 554.37];
    let per_note = 8000 * 6 / 10;
    let mut pcm = Vec::with_capacity(notes.len() * per_note);
    for f in notes {
        for n in 0..per_note {
            let t = n as f32 / 8000.0;
            // A soft attack and decay per note, so the loop has no clicks.
            let envelope = (n as f32 / 400.0).min(1.0) * (1.0 - n as f32 / per_note as f32);
            let v = (2.0 * std::f32::consts::PI * f * t).sin() * 3000.0 * envelope;
            pcm.push(v as i16);
        }
    }
    Law::A.encode(&pcm)
}

/// Counters of the phone channel on `/metrics`.
#[derive(Clone)]
struct PhoneMetrics {
    calls: IntCounterVec,
    outcomes: IntCounterVec,
    digits: IntCounterVec,
    /// RTP of bridged calls by direction and fate: `from_caller` is the
    /// phone leg's jitter buffer, `to_caller` the line's mixer inlets (the
    /// agents' Opus).
    rtp: IntCounterVec,
}

impl PhoneMetrics {
    fn register(registry: &prometheus::Registry) -> anyhow::Result<PhoneMetrics> {
        let calls = IntCounterVec::new(Opts::new("phone_calls_total", "Calls offered by the SIP trunk."), &["trunk"])?;
        let outcomes = IntCounterVec::new(
            Opts::new("ivr_outcomes_total", "How calls left the IVR: abandoned, self-served, queued, blocked."),
            &["outcome"],
        )?;
        let digits =
            IntCounterVec::new(Opts::new("phone_digits_total", "Keys received, by how they came."), &["source"])?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(outcomes.clone()))?;
        registry.register(Box::new(digits.clone()))?;
        let rtp = IntCounterVec::new(
            Opts::new(
                "phone_rtp_total",
                "Audio frames of phone calls by direction (from_caller: the trunk's G.711; to_caller: the agents' \
                 Opus into the mixer) and outcome (played, late, lost, concealed, duplicate, overflow, malformed).",
            ),
            &["direction", "outcome"],
        )?;
        registry.register(Box::new(rtp.clone()))?;
        Ok(PhoneMetrics { calls, outcomes, digits, rtp })
    }
}

/// The SIP server's own counters ([`telemed::sip::MetricsSnapshot`]) on
/// `/metrics`, read from the server on each scrape: telemed keeps plain
/// atomics and leaves the exporting to us. Calls by trunk are not here:
/// [`PhoneMetrics::calls`] has them.
struct SipCollector {
    server: Arc<SipServer>,
    /// Only the collector writes these: each scrape resets them and sets
    /// them to the snapshot's totals. The lock keeps two scrapes at once
    /// from interleaving that; the same metrics every time keep `desc()`
    /// stable.
    metrics: Mutex<SipCounters>,
    descs: Vec<Desc>,
}

struct SipCounters {
    responses: IntCounterVec,
    refused: IntCounterVec,
    rtp_dropped: IntCounter,
}

impl SipCollector {
    fn new(server: Arc<SipServer>) -> prometheus::Result<SipCollector> {
        let responses = IntCounterVec::new(
            Opts::new(
                "sip_responses_total",
                "SIP responses sent, by status code (the transaction layer's retransmissions included).",
            ),
            &["code"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "sip_invites_refused_total",
                "INVITEs refused before a call existed: untrusted (403, not from a trunk), rate_limited (503, \
                 the per-source INVITE rate).",
            ),
            &["reason"],
        )?;
        let rtp_dropped = IntCounter::new(
            "sip_rtp_dropped_total",
            "Received RTP packets dropped because the application did not take them in time.",
        )?;
        let descs = [responses.desc(), refused.desc(), rtp_dropped.desc()].concat().into_iter().cloned().collect();
        Ok(SipCollector { server, metrics: Mutex::new(SipCounters { responses, refused, rtp_dropped }), descs })
    }
}

impl Collector for SipCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = self.server.metrics();
        // A scrape that panicked midway left these half set, but each scrape
        // resets them all first, so a poisoned lock is safe to take.
        let m = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        m.responses.reset();
        for (code, n) in &snapshot.responses {
            m.responses.with_label_values(&[&code.to_string()]).inc_by(*n);
        }
        // Both reasons always, zero included: the family is there (and a
        // rate over it defined) before the first refusal.
        m.refused.reset();
        m.refused.with_label_values(&["untrusted"]).inc_by(snapshot.untrusted);
        m.refused.with_label_values(&["rate_limited"]).inc_by(snapshot.rate_limited);
        m.rtp_dropped.reset();
        m.rtp_dropped.inc_by(snapshot.rtp_dropped);
        [m.responses.collect(), m.refused.collect(), m.rtp_dropped.collect()].concat()
    }
}

/// The counts of one call's audio already added to [`PhoneMetrics::rtp`],
/// so each report adds only what is new.
#[derive(Default)]
struct RtpReported {
    from_caller: jitter::Stats,
    to_caller: telemed::mixer::Stats,
}

impl RtpReported {
    fn report(&mut self, rtp: &IntCounterVec, from: jitter::Stats, to: Option<telemed::mixer::Stats>) {
        let add = |direction: &str, outcome: &str, now: u64, before: u64| {
            // `lost` can fall (a late packet was not lost after all): only rises count.
            if now > before {
                rtp.with_label_values(&[direction, outcome]).inc_by(now - before);
            }
        };
        let (b, d) = (&self.from_caller, "from_caller");
        add(d, "played", from.played, b.played);
        add(d, "late", from.late, b.late);
        add(d, "lost", from.lost, b.lost);
        add(d, "concealed", from.concealed, b.concealed);
        add(d, "duplicate", from.duplicate, b.duplicate);
        add(d, "overflow", from.overflow, b.overflow);
        add(d, "malformed", from.malformed, b.malformed);
        let lost = from.lost.max(self.from_caller.lost);
        self.from_caller = jitter::Stats { lost, ..from };
        if let Some(to) = to {
            let (b, d) = (&self.to_caller, "to_caller");
            add(d, "played", to.played, b.played);
            add(d, "late", to.late, b.late);
            add(d, "concealed", to.concealed, b.concealed);
            add(d, "duplicate", to.duplicate, b.duplicate);
            add(d, "overflow", to.overflow, b.overflow);
            add(d, "malformed", to.malformed, b.malformed);
            self.to_caller = to;
        }
    }
}

/// Starts the SIP server and the task that takes its calls; returns the
/// address it listens on.
pub async fn start(
    state: AppState,
    sip: SipConfig,
    prompts_dir: &Path,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<std::net::SocketAddr> {
    let prompts = Arc::new(Prompts::load(prompts_dir)?);
    let metrics = PhoneMetrics::register(&state.metrics.registry)?;
    let (server, mut calls) = SipServer::start(sip, shutdown.clone()).await?;
    let addr = server.local_addr();
    // The registry holds the server's handle (its counters) from here on;
    // dropping the handle would stop nothing, so nothing else needs it.
    state.metrics.registry.register(Box::new(SipCollector::new(Arc::new(server))?))?;
    let hold = Arc::new(hold_music());
    let call_tasks = tasks.clone();
    tasks.spawn(async move {
        loop {
            let call = tokio::select! {
                _ = shutdown.cancelled() => return,
                call = calls.recv() => match call { Some(c) => c, None => return },
            };
            metrics.calls.with_label_values(&[&call.trunk]).inc();
            let call_state = CallContext {
                state: state.clone(),
                prompts: prompts.clone(),
                hold: hold.clone(),
                metrics: metrics.clone(),
                shutdown: shutdown.clone(),
            };
            call_tasks.spawn(async move {
                let id = call.id;
                if let Err(e) = run_call(call_state, call).await {
                    tracing::warn!(call = %id, error = %e, "phone call ended with an error");
                }
            });
        }
    });
    Ok(addr)
}

struct CallContext {
    state: AppState,
    prompts: Arc<Prompts>,
    hold: Arc<Vec<u8>>,
    metrics: PhoneMetrics,
    shutdown: CancellationToken,
}

/// What the phone leg is playing.
#[derive(Default)]
struct Player {
    /// A-law audio still to send of the current play.
    queued: VecDeque<u8>,
    /// The play that reports its end.
    playback: Option<telemed::ivr::PlaybackId>,
    /// Loop hold music when nothing else plays.
    hold: bool,
    hold_at: usize,
}

impl Player {
    /// The next 20 ms of hold music (A-law), whatever else is queued: for a
    /// line that hears nobody.
    fn music(&mut self, hold: &[u8]) -> [u8; FRAME] {
        let mut frame = [0xD5u8; FRAME];
        if !hold.is_empty() {
            for b in frame.iter_mut() {
                *b = hold[self.hold_at % hold.len()];
                self.hold_at += 1;
            }
        }
        frame
    }

    /// The next 20 ms frame (A-law) and, when a play just ran out, its id.
    fn next(&mut self, hold: &[u8]) -> ([u8; FRAME], Option<telemed::ivr::PlaybackId>) {
        // A-law's code for silence.
        let mut frame = [0xD5u8; FRAME];
        if !self.queued.is_empty() {
            for b in frame.iter_mut() {
                match self.queued.pop_front() {
                    Some(x) => *b = x,
                    None => break,
                }
            }
            return (frame, None);
        }
        if let Some(done) = self.playback.take() {
            return (frame, Some(done));
        }
        if self.hold && !hold.is_empty() {
            for b in frame.iter_mut() {
                *b = hold[self.hold_at % hold.len()];
                self.hold_at += 1;
            }
        }
        (frame, None)
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

async fn run_call(cx: CallContext, mut call: IncomingCall) -> anyhow::Result<()> {
    let law = match call.codec {
        Codec::Pcma => Law::A,
        Codec::Pcmu => Law::Mu,
    };
    let caller_number = call.caller.number.clone();
    let caller =
        telemed::ivr::Caller { blocked: false, number_withheld: call.caller.withheld || caller_number.is_none() };
    let self_service = self_service(&cx.state).await;
    let mut ivr = Ivr::new(IvrConfig::default(), caller, self_service);
    call.handle.answer().await?;
    tracing::info!(call = %call.id, trunk = %call.trunk, withheld = call.caller.withheld, "phone call answered");

    let mut updates = cx.state.center.subscribe();
    let mut player = Player::default();
    let mut rfc4733 = EventReceiver::new();
    let mut tones = ToneDetector::new();
    let mut contact: Option<String> = None;
    // The caller's audio for the agents: reordered, concealed, on our clock.
    let mut jitter = JitterBuffer::new(law, jitter::Config::default());
    // In the contact's media session once an agent answered.
    let mut line: Option<Line> = None;
    let mut reported = RtpReported::default();
    let mut ticks: u64 = 0;
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pending = ivr.handle(now_ms(), Event::Answered);
    loop {
        // Carry out what the IVR asked for before waiting again.
        for action in std::mem::take(&mut pending) {
            match action {
                Action::Play { playback, prompts, .. } => {
                    player.queued = prompts.iter().flat_map(|p| cx.prompts.get(p).iter().copied()).collect();
                    player.playback = Some(playback);
                    player.hold = false;
                }
                Action::StopPlayback => player = Player { hold_at: player.hold_at, ..Player::default() },
                Action::HoldMusic => {
                    player = Player { hold: true, hold_at: player.hold_at, ..Player::default() };
                }
                Action::Enqueue { language, emergency } => {
                    // A queued caller who presses 9 is filed again as an emergency.
                    if let Some(old) = contact.take() {
                        crate::http::patient_side::end_or_abandon(&cx.state, &old)
                            .await
                            .map_err(|e| anyhow::anyhow!("re-filing {old} as an emergency: {e}"))?;
                    }
                    let new = NewContact {
                        channel: Some(Channel::Phone),
                        language: language.code().to_owned(),
                        emergency,
                        caller_phone: caller_number.clone(),
                        ..NewContact::default()
                    };
                    let (id, _token) = crate::http::patient_side::open_contact(&cx.state, &new)
                        .await
                        .map_err(|e| anyhow::anyhow!("queueing the call: {e}"))?;
                    tracing::info!(call = %call.id, contact = %id, emergency, "phone caller queued");
                    if let Some(Update::Position { position, estimated_wait_seconds, .. }) =
                        cx.state.center.position(&id).await
                    {
                        pending.extend(ivr.handle(
                            now_ms(),
                            Event::QueueUpdate {
                                position: position as u32,
                                estimated_wait_secs: estimated_wait_seconds.max(0) as u32,
                            },
                        ));
                    }
                    contact = Some(id);
                }
                Action::RequestCallback { number } => {
                    if let Some(id) = &contact {
                        cx.state
                            .center
                            .handle(RoutingEvent::RequestCallback { contact: ContactId(id.clone()) })
                            .await
                            .map_err(|e| anyhow::anyhow!("a callback for {id}: {e}"))?;
                        tracing::info!(contact = %id, keyed_in = number.is_some(), "phone caller asked for a callback");
                    }
                }
                Action::HangUp { reason } => {
                    tracing::info!(call = %call.id, ?reason, "the IVR hangs up");
                    call.handle.hangup().await?;
                    return Ok(());
                }
                Action::Record { outcome } => {
                    let name = match outcome {
                        telemed::ivr::Outcome::AbandonedInIvr => "abandoned_in_ivr",
                        telemed::ivr::Outcome::SelfServed => "self_served",
                        telemed::ivr::Outcome::Queued { emergency: false } => "queued",
                        telemed::ivr::Outcome::Queued { emergency: true } => "queued_emergency",
                        telemed::ivr::Outcome::Blocked => "blocked",
                    };
                    cx.metrics.outcomes.with_label_values(&[name]).inc();
                }
            }
        }
        let timer = ivr.next_timer().map(|t| Duration::from_millis((t - now_ms()).max(0) as u64));
        tokio::select! {
            _ = cx.shutdown.cancelled() => return Ok(()),
            _ = clock.tick() => {
                // Popped every tick, bridged or not, so its clock is the call's.
                let caller = jitter.pop();
                // The player's frames are A-law; the call's law may be µ-law.
                let to_law = |frame: [u8; FRAME]| {
                    if law == Law::A { frame.to_vec() } else { Law::Mu.encode(&Law::A.decode(&frame)) }
                };
                let mut finished = None;
                // What the caller hears: the agents' mix once bridged, else the IVR's player.
                let payload = match &mut line {
                    Some(line) => {
                        if let Err(e) = line.speak(&caller.pcm).await {
                            // One frame the agents miss (and conceal); the call goes on.
                            tracing::warn!(call = %call.id, error = %e, "the caller's audio was not encoded");
                        }
                        match line.hear() {
                            Some(pcm) => law.encode(&pcm),
                            None => to_law(player.music(&cx.hold)),
                        }
                    }
                    None => {
                        let (frame, done) = player.next(&cx.hold);
                        finished = done;
                        to_law(frame)
                    }
                };
                ticks += 1;
                if ticks.is_multiple_of(50) {
                    reported.report(&cx.metrics.rtp, jitter.stats(), line.as_ref().map(Line::stats));
                }
                if let Err(e) = call.handle.send_rtp(call.codec.payload_type(), &payload, FRAME as u32, false).await {
                    tracing::debug!(call = %call.id, error = %e, "RTP not sent; the call is ending");
                }
                if let Some(playback) = finished {
                    pending.extend(ivr.handle(now_ms(), Event::PlaybackFinished { playback }));
                }
            }
            _ = sleep_or_never(timer) => pending.extend(ivr.handle(now_ms(), Event::Tick)),
            event = call.events.recv() => {
                let Some(event) = event else {
                    leave(line.take(), &mut reported, &cx, &jitter).await;
                    return caller_gone(&cx, &mut ivr, contact.as_deref()).await;
                };
                match event {
                    LegEvent::Rtp { payload_type, seq, timestamp, payload, .. } => {
                        if Some(payload_type) == call.telephone_event {
                            // A malformed event packet is the sender's fault: counted, and the call goes on.
                            if let Err(e) = rfc4733.push(timestamp, &payload) {
                                tracing::debug!(call = %call.id, error = %e, "bad RFC 4733 packet");
                            }
                            while let Some(key) = rfc4733.poll_digit() {
                                cx.metrics.digits.with_label_values(&["rfc4733"]).inc();
                                pending.extend(ivr.handle(now_ms(), Event::Key { key }));
                            }
                        } else if payload_type == call.codec.payload_type() {
                            // How each packet fared is in the buffer's counts (the metrics).
                            jitter.push(seq, timestamp, &payload);
                            tones.push(&law.decode(&payload));
                            while let Some(key) = tones.poll_digit() {
                                cx.metrics.digits.with_label_values(&["inband"]).inc();
                                pending.extend(ivr.handle(now_ms(), Event::Key { key }));
                            }
                        }
                    }
                    LegEvent::Info { digit } => {
                        cx.metrics.digits.with_label_values(&["sip_info"]).inc();
                        pending.extend(ivr.handle(now_ms(), Event::Key { key: digit }));
                    }
                    LegEvent::Hold | LegEvent::Resume | LegEvent::Refreshed => {}
                    LegEvent::Cancelled | LegEvent::Hangup { .. } => {
                        leave(line.take(), &mut reported, &cx, &jitter).await;
                        return caller_gone(&cx, &mut ivr, contact.as_deref()).await;
                    }
                }
            }
            update = updates.recv() => {
                let update = match update {
                    Ok(u) => u,
                    // Missed updates: the next position update or the agent's action tells again;
                    // logged because an offer missed here plays its hold music late.
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(call = %call.id, missed = n, "phone call fell behind the routing updates");
                        continue;
                    }
                    Err(RecvError::Closed) => return Ok(()),
                };
                let Some(id) = contact.as_deref() else { continue };
                if update.contact() != Some(id) {
                    continue;
                }
                let event = match update {
                    Update::Position { position, estimated_wait_seconds, .. } => Event::QueueUpdate {
                        position: position as u32,
                        estimated_wait_secs: estimated_wait_seconds.max(0) as u32,
                    },
                    Update::Offer { .. } => Event::Offered,
                    Update::Withdraw { .. } => Event::OfferWithdrawn,
                    Update::Connected { .. } => {
                        // The first answer bridges the call; an escalation's
                        // doctor joins the same session, so the line stays.
                        if line.is_none() {
                            line = bridge(&cx, id).await;
                        }
                        Event::Connected
                    }
                    Update::Ended { .. } => {
                        tracing::info!(call = %call.id, contact = %id, "the contact ended; hanging up the phone leg");
                        leave(line.take(), &mut reported, &cx, &jitter).await;
                        call.handle.hangup().await?;
                        return Ok(());
                    }
                    _ => continue,
                };
                pending.extend(ivr.handle(now_ms(), event));
            }
        }
    }
}

/// Joins the phone leg to the contact's media session, with the consent to
/// recording the consult note holds (as a browser's join does). `None`
/// when it cannot join: the caller then hears hold music, and the error is
/// logged for the operator to see why.
async fn bridge(cx: &CallContext, contact: &str) -> Option<Line> {
    match cx.state.store.consult_note(contact).await {
        Ok(Some(note)) => cx.state.sfu.set_recording(contact, note.recording_consent).await,
        Ok(None) => {}
        // Without the note nothing is recorded (the safe side); the call is bridged all the same.
        Err(e) => tracing::error!(%contact, error = %e, "reading the consult note's consent to recording"),
    }
    match cx.state.sfu.attach_line(contact, "patient", telemed::media::Role::Patient).await {
        Ok(line) => {
            tracing::info!(%contact, "phone caller bridged into the call");
            Some(line)
        }
        Err(e) => {
            tracing::error!(%contact, error = %e, "the phone caller could not join the call");
            None
        }
    }
}

/// Takes the line out of the call, with its last counts on `/metrics`.
async fn leave(line: Option<Line>, reported: &mut RtpReported, cx: &CallContext, jitter: &JitterBuffer) {
    reported.report(&cx.metrics.rtp, jitter.stats(), line.as_ref().map(Line::stats));
    if let Some(line) = line {
        line.leave().await;
    }
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// The caller hung up (or cancelled): the IVR records its outcome, and a
/// queued or connected contact is abandoned or ended.
async fn caller_gone(cx: &CallContext, ivr: &mut Ivr, contact: Option<&str>) -> anyhow::Result<()> {
    for action in ivr.handle(now_ms(), Event::HungUp) {
        if let Action::Record { outcome } = action {
            tracing::info!(?outcome, "phone caller left");
        }
    }
    if let Some(id) = contact {
        // An already ended contact (the agent ended it first) is not an error.
        match crate::http::patient_side::end_or_abandon(&cx.state, id).await {
            Ok(()) => {}
            Err(crate::http::error::ApiError::Conflict(why)) => tracing::debug!(contact = %id, %why, "already ended"),
            Err(e) => anyhow::bail!("ending {id} after the caller hung up: {e}"),
        }
    }
    Ok(())
}

/// What the IVR can tell without an agent: vacant beds by district from the
/// facility records (read once per call: a caller hears one snapshot).
async fn self_service(state: &AppState) -> telemed::ivr::SelfService {
    let mut info = telemed::ivr::SelfService::default();
    match state.store.search_facilities(&Default::default()).await {
        Ok(facilities) => {
            let mut by_district: HashMap<telemed::ivr::District, u32> = HashMap::new();
            for f in facilities {
                // Facilities outside the IVR's district list are not in its menu.
                if let Ok(d) = f.district.parse::<telemed::ivr::District>() {
                    let vacant: i64 = f.beds.iter().map(|b| b.vacant).sum();
                    *by_district.entry(d).or_default() += vacant.max(0) as u32;
                }
            }
            info.beds.districts = telemed::ivr::District::ALL
                .into_iter()
                .filter_map(|d| by_district.get(&d).map(|v| telemed::ivr::DistrictBeds { district: d, vacant: *v }))
                .collect();
        }
        // The call still goes on to the queue; the beds menu then says there is no data.
        Err(e) => tracing::error!(error = %e, "the IVR could not read the facilities' beds"),
    }
    info
}

/// The default prompts directory, for messages.
pub fn default_prompts() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../telemed/prompts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real SIP server on loopback that has seen no traffic: the refusal
    /// and RTP families are there at zero, responses appear once one is sent
    /// (the end-to-end test in tests/tests/e2e/phone.rs sees them after a call).
    #[tokio::test]
    async fn the_sip_counters_are_exported_with_stable_descriptors() {
        use telemed::sip::Trunk;
        let trunk = Trunk { name: "pstn".into(), cidrs: vec!["127.0.0.1/32".parse().unwrap()], max_channels: 1 };
        let config = SipConfig::new("127.0.0.1:0".parse().unwrap(), vec![trunk]);
        let cancel = CancellationToken::new();
        let (server, _calls) = SipServer::start(config, cancel.clone()).await.unwrap();
        let collector = SipCollector::new(Arc::new(server)).unwrap();
        let ids = |c: &SipCollector| c.desc().iter().map(|d| d.id).collect::<Vec<_>>();
        let before = ids(&collector);
        assert_eq!(before.len(), 3);
        collector.collect();
        assert_eq!(ids(&collector), before, "desc() is the same after a collect");

        let registry = prometheus::Registry::new();
        registry.register(Box::new(collector)).unwrap();
        let mut text = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in [
            r#"sip_invites_refused_total{reason="rate_limited"} 0"#,
            r#"sip_invites_refused_total{reason="untrusted"} 0"#,
            "sip_rtp_dropped_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("sip_responses_total{"), "no response sent yet:\n{text}");
        cancel.cancel();
    }

    #[test]
    fn every_shipped_prompt_loads_as_alaw() {
        let prompts = Prompts::load(&default_prompts()).unwrap();
        assert_eq!(prompts.alaw.len(), Prompt::all().len());
        assert!(prompts.alaw.values().all(|a| a.len() > FRAME), "every prompt has at least 20 ms of audio");
    }

    #[test]
    fn a_wav_that_is_not_8_khz_mono_is_refused_with_the_reason() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0".to_vec();
        wav.extend_from_slice(&[1, 0, 2, 0]); // PCM, 2 channels
        wav.extend_from_slice(&16000u32.to_le_bytes());
        wav.extend_from_slice(&[0; 6]);
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data\x04\0\0\0\0\0\0\0");
        let err = wav_to_alaw(&wav).unwrap_err().to_string();
        assert!(err.contains("2 channels at 16000 Hz"), "{err}");
        assert!(wav_to_alaw(b"not a wav").unwrap_err().to_string().contains("not a WAV"));
    }

    #[test]
    fn the_player_reports_the_end_of_a_play_after_its_last_frame() {
        let mut p = Player {
            queued: vec![1u8; FRAME + 10].into(),
            playback: Some(telemed::ivr::PlaybackId(7)),
            ..Default::default()
        };
        assert_eq!(p.next(&[]).1, None);
        let (frame, done) = p.next(&[]);
        assert_eq!((frame[9], frame[10], done), (1, 0xD5, None));
        assert_eq!(p.next(&[]).1, Some(telemed::ivr::PlaybackId(7)));
        assert_eq!(p.next(&[]).1, None);
    }
}
