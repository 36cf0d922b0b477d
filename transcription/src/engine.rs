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

/// How to decode. The default suits files: segments with timestamps, whisper's temperature
/// fallback; [`Options::live`] suits captions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub language: Language,
    /// CPU threads whisper uses for one utterance.
    pub threads: usize,
    /// Beam width; `None` decodes greedily (fastest: what partial captions use).
    pub beam_size: Option<usize>,
    /// Text whisper reads as if it came before the audio: it sets spelling, script and style.
    /// `None` uses [`HINDI_PROMPT`] for Hindi and nothing otherwise.
    pub prompt: Option<String>,
    /// Re-decode at rising temperatures when the output looks degenerate (whisper's default).
    /// Off bounds the time per utterance (one decode), at some cost on hard audio.
    pub temperature_fallback: bool,
    /// Encode only as much of whisper's 30 s window as the audio fills, plus this many ms of
    /// the silence after it ([`FIT_MARGIN_MS`] is right for tiny.en), instead of the whole
    /// window (`None`): several times faster for short utterances (4x for 3 s on tiny.en).
    pub fit_margin_ms: Option<u64>,
    /// One utterance, one caption: a single segment of at most [`max_tokens`] tokens, so a
    /// decoder stuck repeating itself stops early instead of filling 224 tokens per 30 s
    /// window. (Decoding without timestamps would be simpler but is less accurate: tiny.en
    /// then punctuates and mishears more.)
    pub single_utterance: bool,
}

/// The silence a fitted window keeps after the audio. whisper was trained on whole 30 s
/// windows, where speech is followed by silence; cut 1 s after the speech, tiny.en said 3 of
/// the 10 held-out utterances twice over ("… swollen and red. But … swollen and red."). With
/// 2 s it does so less often (what is left, [`crate::repeats::collapse`] undoes), and beam
/// search is then as accurate as over the whole window at a quarter of the cost
/// (docs/benchmarks.md, "transcription").
pub const FIT_MARGIN_MS: u64 = 2000;

/// The beam width of [`Options::live`]: the most accurate measured on tiny.en that keeps
/// captions within 1.5 s of the end of speech on 2 cores.
pub const LIVE_BEAM: usize = 5;

/// The decoding budget of a single utterance: generous for English (about 3 tokens a second)
/// and for Hindi in byte-level BPE (up to about 20).
pub fn max_tokens(audio_ms: u64) -> u32 {
    (16 + 30 * audio_ms / 1000).min(220) as u32
}

impl Options {
    /// For live captions: one decode of one utterance, beam search of width [`LIVE_BEAM`] over a
    /// window fitted to its length. No prompt: the [`CLINICAL_PROMPT`] was not a clear gain
    /// (better on two phrase sets, worse on the third, and slower; docs/benchmarks.md).
    pub fn live(language: Language, threads: usize) -> Self {
        Self {
            language,
            threads,
            beam_size: Some(LIVE_BEAM),
            prompt: None,
            temperature_fallback: false,
            fit_margin_ms: Some(FIT_MARGIN_MS),
            single_utterance: true,
        }
    }

    /// The same decoding, greedy: what a partial caption (a preview, soon replaced) needs.
    pub fn greedy(&self) -> Self {
        Self { beam_size: None, ..self.clone() }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            language: Language::En,
            threads: 2,
            beam_size: None,
            prompt: None,
            temperature_fallback: true,
            fit_margin_ms: Some(FIT_MARGIN_MS),
            single_utterance: false,
        }
    }
}

/// A clinical-vocabulary initial prompt for English (`careline serve --whisper-prompt`):
/// whisper reads it as the text before the utterance, which makes common complaints and drug
/// names likelier than look-alike words. Written from a general list of complaints, not from
/// the test phrases. On tiny.en with live captions' decoding it helps on the bench and
/// validation phrases but costs on the held-out ones, and takes 1.2-1.8x the time
/// (docs/benchmarks.md), so nothing uses it by default.
pub const CLINICAL_PROMPT: &str = "Telemedicine consultation. The doctor asks about symptoms: fever, cough, cold, \
     headache, body ache, breathing, vomiting, dizziness, pain. Medicines: paracetamol, tablets, syrup, injection; \
     blood pressure and diabetes.";

/// The default prompt for Hindi ("Hello, this conversation is in Hindi."). Without it the smaller
/// multilingual models often write spoken Hindi in Urdu script; a Devanagari prompt keeps them
/// in Devanagari.
pub const HINDI_PROMPT: &str = "नमस्ते, यह बातचीत हिंदी में है।";

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
        let prompt = match (&options.prompt, options.language) {
            (Some(prompt), _) => Some(prompt.as_str()),
            (None, Language::Hi) if self.multilingual => Some(HINDI_PROMPT),
            (None, _) => None,
        };
        if let Some(prompt) = prompt {
            params.set_initial_prompt(prompt);
        }
        if !options.temperature_fallback {
            params.set_temperature_inc(0.0);
        }
        params.set_suppress_nst(true);

        let padded;
        let pcm = if pcm.len() < MIN_SAMPLES {
            padded = pcm.iter().copied().chain(std::iter::repeat(0.0)).take(MIN_SAMPLES).collect::<Vec<_>>();
            &padded[..]
        } else {
            pcm
        };
        let audio_ms = (pcm.len() as u64 * 1000) / u64::from(SAMPLE_RATE);
        if let Some(margin_ms) = options.fit_margin_ms {
            // The encoder sees 50 frames per second (1500 for 30 s): the audio's, the
            // margin's, rounded up to a multiple of 64 frames.
            let frames = (((audio_ms + margin_ms) / 20).div_ceil(64) * 64).min(1500);
            params.set_audio_ctx(frames as i32);
        }
        if options.single_utterance {
            params.set_single_segment(true);
            params.set_max_tokens(max_tokens(audio_ms) as i32);
        }
        self.state.full(params, pcm)?;

        let mut segments = Vec::new();
        for segment in self.state.as_iter() {
            // A decoder that ran past the speech may say it over again: kept once.
            let text = crate::repeats::collapse(segment.to_str_lossy()?.trim());
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
