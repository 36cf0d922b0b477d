//! The live caption service: audio taps in, [`Caption`]s out.
//!
//! ```text
//! AudioTap::push ──► dispatcher thread ──► job queue ──► worker threads (whisper)
//!  (per participant)  (one VAD per tap,                  (one Session each)
//!                      orders the captions) ◄── results ──┘
//!                            │
//!                            └──► tokio mpsc ──► async consumers (captions.recv().await)
//! ```
//!
//! Nothing here blocks an async executor: [`AudioTap::push`] only sends on an unbounded
//! channel, whisper runs on the worker threads, and captions arrive on a tokio channel.
//!
//! **Consent.** The service transcribes whatever it is fed. Recording and transcribing a
//! consultation needs the patient's consent: callers must not open a tap (or must drop it)
//! unless consent for that contact is on record, and must stop feeding it when consent is
//! withdrawn.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::engine::{Engine, EngineError, Options};
use crate::vad::{Segmenter, VadConfig, VadEvent};

/// Who is speaking on a tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Operator,
    Doctor,
    Other,
}

impl Role {
    /// The role's name as it is serialized, e.g. `patient`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Operator => "operator",
            Role::Doctor => "doctor",
            Role::Other => "other",
        }
    }
}

/// A caption: what one participant said, with times in ms since their tap opened. Partial
/// captions (`is_final == false`) show an utterance in progress and are superseded by later
/// partials and by the final caption of the same utterance (same `start_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caption {
    pub participant: String,
    pub role: Role,
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The language decoded in (detected, under `Language::Auto`).
    pub language: String,
}

/// Tuning of the service.
#[derive(Debug, Clone)]
pub struct TranscriberConfig {
    /// Worker threads, each with its own whisper state (about 20 MB for tiny, more for larger).
    pub workers: usize,
    /// Decoding options of final captions, `threads` per worker included; partial captions
    /// decode the same way but greedily ([`Options::greedy`]).
    pub options: Options,
    pub vad: VadConfig,
    /// Transcribe an utterance in progress every this many ms of new audio, when a worker is
    /// free; `None` gives final captions only.
    pub partial_every_ms: Option<u64>,
}

impl Default for TranscriberConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            options: Options::live(crate::engine::Language::En, 2),
            vad: VadConfig::default(),
            partial_every_ms: Some(1000),
        }
    }
}

type StreamId = u64;

enum Msg {
    Open { stream: StreamId, participant: Arc<str>, role: Role },
    Audio { stream: StreamId, pcm: Vec<f32> },
    Close { stream: StreamId },
    Done(Done),
    Shutdown,
}

struct Job {
    stream: StreamId,
    /// Index of the utterance in its stream (finals are emitted in this order).
    seq: u64,
    is_final: bool,
    start_ms: u64,
    end_ms: u64,
    samples: Vec<f32>,
}

struct Done {
    job: Job,
    /// `None`: not transcribed, because the service was told to stop waiting.
    result: Option<Result<crate::engine::Transcript, EngineError>>,
}

/// The running service. Dropping it stops it once the queued work is done; [`shutdown`]
/// also waits for that.
///
/// [`shutdown`]: Transcriber::shutdown
pub struct Transcriber {
    tx: Sender<Msg>,
    next_stream: std::sync::atomic::AtomicU64,
    threads: Vec<JoinHandle<()>>,
    /// Set when [`Transcriber::shutdown_within`] stops waiting: workers skip the jobs left.
    abandon: Arc<AtomicBool>,
    /// Disconnects when the dispatcher has finished (its sender is dropped then).
    finished: Receiver<()>,
}

/// One participant's audio into the service: one stream with its own voice-activity state.
/// Dropping it (or [`AudioTap::end`]) ends the stream; its last utterance is still transcribed.
pub struct AudioTap {
    tx: Sender<Msg>,
    stream: StreamId,
}

impl AudioTap {
    /// Feeds 16 kHz mono samples in [-1, 1]. Never blocks.
    pub fn push(&self, pcm: &[f32]) {
        let _ = self.tx.send(Msg::Audio { stream: self.stream, pcm: pcm.to_vec() });
    }

    /// Feeds 16 kHz mono 16-bit samples. Never blocks.
    pub fn push_i16(&self, pcm: &[i16]) {
        let _ = self.tx.send(Msg::Audio { stream: self.stream, pcm: crate::audio::i16_to_f32(pcm) });
    }

    /// Ends the stream (the same as dropping the tap).
    pub fn end(self) {}
}

impl Drop for AudioTap {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Close { stream: self.stream });
    }
}

impl Transcriber {
    /// Starts the dispatcher and `config.workers` worker threads on `engine`; captions arrive on
    /// the returned receiver (`recv().await` in async code, `blocking_recv()` elsewhere).
    pub fn start(
        engine: &Engine,
        config: TranscriberConfig,
    ) -> Result<(Self, UnboundedReceiver<Caption>), EngineError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (caption_tx, caption_rx) = unbounded_channel();
        let abandon = Arc::new(AtomicBool::new(false));
        let (finished_tx, finished) = mpsc::channel::<()>();
        let workers = config.workers.max(1);
        let mut threads = Vec::with_capacity(workers + 1);
        for i in 0..workers {
            // Make the states here, so a failure is the caller's error and not a thread's.
            let session = engine.session()?;
            let (job_rx, tx, options) = (Arc::clone(&job_rx), tx.clone(), config.options.clone());
            let abandon = Arc::clone(&abandon);
            let handle = std::thread::Builder::new()
                .name(format!("whisper-{i}"))
                .spawn(move || worker(session, options, job_rx, tx, &abandon))
                .expect("spawning a whisper worker thread");
            threads.push(handle);
        }
        let dispatcher = Dispatcher {
            vad: config.vad,
            partial_every_ms: config.partial_every_ms,
            workers,
            jobs: job_tx,
            captions: caption_tx,
            streams: HashMap::new(),
            queued: 0,
            skipped: 0,
        };
        let handle = std::thread::Builder::new()
            .name("transcription-dispatch".into())
            .spawn(move || {
                let _finished = finished_tx;
                dispatcher.run(rx);
            })
            .expect("spawning the transcription dispatcher");
        threads.push(handle);
        Ok((Self { tx, next_stream: 0.into(), threads, abandon, finished }, caption_rx))
    }

    /// Opens a tap for one participant's audio. The caller is responsible for consent (see
    /// the module documentation): open a tap only for a contact whose patient consented.
    pub fn tap(&self, participant: impl Into<String>, role: Role) -> AudioTap {
        let stream = self.next_stream.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let participant: Arc<str> = participant.into().into();
        let _ = self.tx.send(Msg::Open { stream, participant, role });
        AudioTap { tx: self.tx.clone(), stream }
    }

    /// Ends every stream, transcribes what is queued, and joins the threads. Blocks: from async
    /// code call it in `spawn_blocking`.
    pub fn shutdown(self) {
        self.shutdown_within(Duration::MAX);
    }

    /// [`Transcriber::shutdown`], but waits at most about `limit` for the queued utterances:
    /// after it, the utterances not yet started are dropped (counted in a warning) and only
    /// those being transcribed finish. A service that fell behind (more speech than its
    /// workers decode) stops in bounded time this way.
    pub fn shutdown_within(mut self, limit: Duration) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Err(RecvTimeoutError::Timeout) = self.finished.recv_timeout(limit) {
            self.abandon.store(true, Ordering::Relaxed);
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Transcriber {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown);
    }
}

fn worker(
    mut session: crate::engine::Session,
    options: Options,
    jobs: Arc<Mutex<Receiver<Job>>>,
    tx: Sender<Msg>,
    abandon: &AtomicBool,
) {
    // A partial is a preview that the final replaces within seconds: decoded greedily, so it
    // holds the worker up as little as it can when the utterance ends.
    let preview = options.greedy();
    loop {
        let job = {
            let Ok(jobs) = jobs.lock() else { return };
            jobs.recv()
        };
        let Ok(job) = job else { return };
        let result = if abandon.load(Ordering::Relaxed) {
            None
        } else {
            Some(session.transcribe(&job.samples, if job.is_final { &options } else { &preview }))
        };
        if tx.send(Msg::Done(Done { job, result })).is_err() {
            return;
        }
    }
}

struct Stream {
    participant: Arc<str>,
    role: Role,
    segmenter: Segmenter,
    /// Utterances ended so far (the in-progress one will get this index).
    ended: u64,
    /// The next final caption to emit; later finals wait in `pending`.
    next_final: u64,
    pending: BTreeMap<u64, Option<Caption>>,
    /// Audio length of the in-progress utterance at its last partial job.
    partial_at: usize,
    partial_in_flight: bool,
    closed: bool,
    outstanding: usize,
}

struct Dispatcher {
    vad: VadConfig,
    partial_every_ms: Option<u64>,
    workers: usize,
    jobs: Sender<Job>,
    captions: UnboundedSender<Caption>,
    streams: HashMap<StreamId, Stream>,
    queued: usize,
    /// Final captions dropped by [`Transcriber::shutdown_within`].
    skipped: usize,
}

impl Dispatcher {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut shutting_down = false;
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Open { stream, participant, role } => {
                    let s = Stream {
                        participant,
                        role,
                        segmenter: Segmenter::new(self.vad),
                        ended: 0,
                        next_final: 0,
                        pending: BTreeMap::new(),
                        partial_at: 0,
                        partial_in_flight: false,
                        closed: false,
                        outstanding: 0,
                    };
                    self.streams.insert(stream, s);
                }
                Msg::Audio { stream, pcm } => self.audio(stream, &pcm),
                Msg::Close { stream } => self.close(stream),
                Msg::Done(done) => self.done(done),
                Msg::Shutdown => {
                    shutting_down = true;
                    let ids: Vec<StreamId> = self.streams.keys().copied().collect();
                    for id in ids {
                        self.close(id);
                    }
                }
            }
            if shutting_down && self.queued == 0 {
                break;
            }
        }
        if self.skipped > 0 {
            tracing::warn!(utterances = self.skipped, "stopped before transcribing every utterance");
        }
        // Dropping `self.jobs` here ends the workers.
    }

    fn send(&mut self, job: Job) {
        if let Some(s) = self.streams.get_mut(&job.stream) {
            s.outstanding += 1;
        }
        self.queued += 1;
        let _ = self.jobs.send(job);
    }

    fn audio(&mut self, id: StreamId, pcm: &[f32]) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.closed {
            return;
        }
        let mut jobs = Vec::new();
        for event in s.segmenter.push(pcm) {
            match event {
                VadEvent::Started { .. } => {
                    s.partial_at = 0;
                }
                VadEvent::Ended(u) => {
                    jobs.push(Job {
                        stream: id,
                        seq: s.ended,
                        is_final: true,
                        start_ms: u.start_ms,
                        end_ms: u.end_ms,
                        samples: u.samples,
                    });
                    s.ended += 1;
                    s.partial_at = 0;
                }
            }
        }
        // A partial caption when enough new audio came in and a worker is free.
        let mut partial = None;
        if let (Some(every_ms), Some((start_ms, samples))) = (self.partial_every_ms, s.segmenter.current()) {
            let every = (every_ms * u64::from(self.vad.sample_rate) / 1000) as usize;
            let free = self.queued + jobs.len() < self.workers;
            if free && !s.partial_in_flight && samples.len() >= s.partial_at + every {
                s.partial_at = samples.len();
                s.partial_in_flight = true;
                let end_ms = start_ms + samples.len() as u64 * 1000 / u64::from(self.vad.sample_rate);
                partial = Some(Job {
                    stream: id,
                    seq: s.ended,
                    is_final: false,
                    start_ms,
                    end_ms,
                    samples: samples.to_vec(),
                });
            }
        }
        for job in jobs.into_iter().chain(partial) {
            self.send(job);
        }
    }

    fn close(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.closed {
            return;
        }
        s.closed = true;
        let last = s.segmenter.finish().map(|u| {
            let job = Job {
                stream: id,
                seq: s.ended,
                is_final: true,
                start_ms: u.start_ms,
                end_ms: u.end_ms,
                samples: u.samples,
            };
            s.ended += 1;
            job
        });
        match last {
            Some(job) => self.send(job),
            None => self.forget_if_done(id),
        }
    }

    fn forget_if_done(&mut self, id: StreamId) {
        if self.streams.get(&id).is_some_and(|s| s.closed && s.outstanding == 0) {
            self.streams.remove(&id);
        }
    }

    fn done(&mut self, Done { job, result }: Done) {
        self.queued -= 1;
        let Some(s) = self.streams.get_mut(&job.stream) else { return };
        s.outstanding -= 1;
        if result.is_none() && job.is_final {
            self.skipped += 1;
        }
        let caption = match result.transpose() {
            Ok(Some(t)) if !t.text.trim().is_empty() => Some(Caption {
                participant: s.participant.to_string(),
                role: s.role,
                text: t.text,
                start_ms: job.start_ms,
                end_ms: job.end_ms,
                is_final: job.is_final,
                language: t.language,
            }),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(participant = %s.participant, error = %e, "transcription failed");
                None
            }
        };
        if job.is_final {
            s.pending.insert(job.seq, caption);
            while let Some(next) = s.pending.remove(&s.next_final) {
                s.next_final += 1;
                if let Some(c) = next {
                    let _ = self.captions.send(c);
                }
            }
        } else {
            s.partial_in_flight = false;
            // Only while its utterance is still in progress (no final for it yet).
            if job.seq >= s.next_final
                && job.seq == s.ended
                && let Some(c) = caption
            {
                let _ = self.captions.send(c);
            }
        }
        self.forget_if_done(job.stream);
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn role_names_are_their_serialized_names() {
        for r in [Role::Patient, Role::Operator, Role::Doctor, Role::Other] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
