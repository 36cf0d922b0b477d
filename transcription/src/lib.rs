//! # transcription: live per-speaker captions with whisper
//!
//! Each participant's audio track is transcribed on its own, so the
//! transcript knows who spoke. whisper.cpp (through whisper-rs) runs on
//! dedicated worker threads, never on the async executor.

pub mod audio;
pub mod ct2;
pub mod engine;
pub mod mel;
pub mod vad;
pub mod vocab;
pub mod wer;
