//! whisper.cpp behind a small synchronous API.
//!
//! [`Engine`] owns the loaded model (shared, read-only); each thread that transcribes makes its
//! own [`Session`] (whisper's decoding state, tens of MB). `Session::transcribe` blocks for as
//! long as whisper computes, so call it from a worker thread (see [`crate::service`]) or
//! `spawn_blocking`, never from an async task.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Once};

use serde::Serialize;
use thiserror::Error;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

use crate::mel::SAMPLE_RATE;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("no whisper model at {0}")]
    NoModel(String),
    #[error("loading the whisper model {path}: {source}")]
    Load { path: String, source: whisper_rs::WhisperError },
    #[error("the model is English-only; it cannot transcribe {0}")]
    EnglishOnly(Language),
    #[error("whisper: {0}")]
    Whisper(#[from] whisper_rs::WhisperError),
}

/// The spoken language: fixed, or detected by whisper per utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    #[default]
    En,
    Hi,
    Auto,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Hi => "hi",
            Self::Auto => "auto",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "en" => Ok(Self::En),
            "hi" => Ok(Self::Hi),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown language {other:?}: use en, hi or auto")),
        }
    }
}

/// How to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub language: Language,
    /// CPU threads whisper uses for one utterance.
    pub threads: usize,
    /// Beam width; `None` decodes greedily (fastest, what live captions use).
    pub beam_size: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self { language: Language::En, threads: 2, beam_size: None }
    }
}

/// A piece of the transcript with its times, in ms from the start of the audio passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// What whisper heard in one piece of audio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transcript {
    /// The language decoded in (the detected one under [`Language::Auto`]).
    pub language: String,
    pub text: String,
    pub segments: Vec<Segment>,
}

/// A loaded whisper model; cheap to clone and share between threads.
#[derive(Clone)]
pub struct Engine {
    ctx: Arc<WhisperContext>,
    multilingual: bool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("multilingual", &self.multilingual).finish_non_exhaustive()
    }
}

static LOG_HOOKS: Once = Once::new();

impl Engine {
    /// Loads a ggml model file (as [`crate::ct2::import`] writes). whisper.cpp's own log lines go
    /// to `tracing` (target `whisper_rs`).
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        LOG_HOOKS.call_once(whisper_rs::install_logging_hooks);
        if !path.is_file() {
            return Err(EngineError::NoModel(path.display().to_string()));
        }
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(path, params)
            .map_err(|source| EngineError::Load { path: path.display().to_string(), source })?;
        let multilingual = ctx.is_multilingual();
        Ok(Self { ctx: Arc::new(ctx), multilingual })
    }

    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// A decoding state for one thread.
    pub fn session(&self) -> Result<Session, EngineError> {
        Ok(Session { state: self.ctx.create_state()?, multilingual: self.multilingual })
    }
}

/// whisper's decoding state: one per worker thread.
pub struct Session {
    state: WhisperState,
    multilingual: bool,
}

/// whisper.cpp refuses less than 100 ms; short utterances are padded with silence to this.
const MIN_SAMPLES: usize = SAMPLE_RATE as usize;

impl Session {
    /// Transcribes 16 kHz mono PCM (f32 in [-1, 1]). Blocks while whisper computes.
    pub fn transcribe(&mut self, pcm: &[f32], options: &Options) -> Result<Transcript, EngineError> {
        if !self.multilingual && options.language == Language::Hi {
            return Err(EngineError::EnglishOnly(options.language));
        }
        let strategy = match options.beam_size {
            Some(beam_size) => SamplingStrategy::BeamSearch { beam_size: beam_size.max(1) as i32, patience: -1.0 },
            None => SamplingStrategy::Greedy { best_of: 1 },
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(options.threads.max(1) as i32);
        let language = if self.multilingual { options.language.code() } else { "en" };
        params.set_language(Some(language));
        params.set_translate(false);
        // Each utterance stands alone: no prompt from the previous one, so a misheard word does
        // not echo into the next caption.
        params.set_no_context(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);

        let padded;
        let pcm = if pcm.len() < MIN_SAMPLES {
            padded = pcm.iter().copied().chain(std::iter::repeat(0.0)).take(MIN_SAMPLES).collect::<Vec<_>>();
            &padded[..]
        } else {
            pcm
        };
        let audio_ms = (pcm.len() as u64 * 1000) / u64::from(SAMPLE_RATE);
        self.state.full(params, pcm)?;

        let mut segments = Vec::new();
        for segment in self.state.as_iter() {
            let text = segment.to_str_lossy()?.trim().to_owned();
            if text.is_empty() {
                continue;
            }
            // whisper's timestamps are in 10 ms units.
            let start_ms = (segment.start_timestamp().max(0) as u64 * 10).min(audio_ms);
            let end_ms = (segment.end_timestamp().max(0) as u64 * 10).clamp(start_ms, audio_ms);
            segments.push(Segment { start_ms, end_ms, text });
        }
        let text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ");
        let language = if self.multilingual {
            whisper_rs::get_lang_str(self.state.full_lang_id_from_state()).unwrap_or(language).to_owned()
        } else {
            "en".to_owned()
        };
        Ok(Transcript { language, text, segments })
    }
}
