//! Voice-activity segmentation, sans-IO: push 16 kHz mono PCM, get utterances.
//!
//! Energy-based: the audio is cut into 20 ms frames; a frame is voiced when its level (RMS,
//! dBFS) is above both a fixed floor (`min_level_db`) and the tracked background noise level
//! plus `margin_db`. The noise estimate follows quiet frames down at once and rises slowly
//! (`noise_rise_db_per_s`), so a steady hum is learnt while speech is not.
//!
//! An utterance starts after `min_speech_ms` of voiced frames in a row, with `pre_roll_ms` of
//! the audio before it (soft onsets), and ends after `hangover_ms` without a voiced frame; it
//! keeps `tail_ms` after its last voiced frame. One longer than `max_utterance_ms` is cut
//! there, and speech goes on in a new one. Times are the stream's own: milliseconds since the
//! first sample pushed.

use std::collections::VecDeque;

/// Tuning of the segmenter. The defaults suit telephone and WebRTC speech.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    pub sample_rate: u32,
    pub frame_ms: u32,
    /// Below this level nothing is speech, however quiet the background.
    pub min_level_db: f32,
    /// How far above the background noise a frame must be to count as voiced.
    pub margin_db: f32,
    pub noise_rise_db_per_s: f32,
    pub min_speech_ms: u32,
    pub pre_roll_ms: u32,
    pub hangover_ms: u32,
    pub tail_ms: u32,
    pub max_utterance_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            frame_ms: 20,
            min_level_db: -45.0,
            margin_db: 12.0,
            noise_rise_db_per_s: 1.0,
            min_speech_ms: 60,
            pre_roll_ms: 200,
            hangover_ms: 500,
            tail_ms: 200,
            max_utterance_ms: 15_000,
        }
    }
}

/// A stretch of speech, with its audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    pub start_ms: u64,
    pub end_ms: u64,
    pub samples: Vec<f32>,
    /// Cut at `max_utterance_ms` while the speaker was still talking.
    pub cut: bool,
}

/// What pushing audio found.
#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    /// Speech began (at the start of its pre-roll).
    Started { start_ms: u64 },
    /// Speech ended; here is all of it.
    Ended(Utterance),
}

#[derive(Debug)]
enum State {
    Silence { voiced_run: usize },
    Speech { start_sample: u64, samples: Vec<f32>, last_voiced_end: usize, silent_run: usize },
}

/// The segmenter for one audio stream.
#[derive(Debug)]
pub struct Segmenter {
    cfg: VadConfig,
    frame_len: usize,
    /// Samples not yet making up a whole frame.
    pending: Vec<f32>,
    /// While silent: the most recent audio, for the pre-roll and the onset frames.
    history: VecDeque<f32>,
    /// Samples consumed into frames so far.
    consumed: u64,
    noise_db: f32,
    state: State,
}

/// Level of a frame in dB relative to full scale (a full-scale sine is -3 dB).
pub fn level_db(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -120.0;
    }
    let mean_square = frame.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / frame.len() as f64;
    (10.0 * mean_square.max(1e-12).log10()) as f32
}

impl Segmenter {
    pub fn new(cfg: VadConfig) -> Self {
        let frame_len = (cfg.sample_rate as usize * cfg.frame_ms as usize / 1000).max(1);
        Self {
            cfg,
            frame_len,
            pending: Vec::with_capacity(frame_len),
            history: VecDeque::new(),
            consumed: 0,
            noise_db: cfg.min_level_db - cfg.margin_db,
            state: State::Silence { voiced_run: 0 },
        }
    }

    pub fn config(&self) -> &VadConfig {
        &self.cfg
    }

    fn ms_to_samples(&self, ms: u32) -> usize {
        self.cfg.sample_rate as usize * ms as usize / 1000
    }

    fn samples_to_ms(&self, samples: u64) -> u64 {
        samples * 1000 / u64::from(self.cfg.sample_rate)
    }

    /// Milliseconds of audio consumed so far (whole frames).
    pub fn now_ms(&self) -> u64 {
        self.samples_to_ms(self.consumed)
    }

    /// The utterance in progress, if any: its start and its audio so far (for partial captions).
    pub fn current(&self) -> Option<(u64, &[f32])> {
        match &self.state {
            State::Speech { start_sample, samples, .. } => Some((self.samples_to_ms(*start_sample), samples)),
            State::Silence { .. } => None,
        }
    }

    /// Feeds audio (any length) and returns what it completed.
    pub fn push(&mut self, pcm: &[f32]) -> Vec<VadEvent> {
        let mut events = Vec::new();
        let mut rest = pcm;
        while !rest.is_empty() {
            let take = (self.frame_len - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.frame_len {
                let frame = std::mem::take(&mut self.pending);
                self.frame(&frame, &mut events);
                self.pending = frame;
                self.pending.clear();
            }
        }
        events
    }

    /// Ends the stream: the utterance in progress, if it had speech, is returned.
    pub fn finish(&mut self) -> Option<Utterance> {
        let pending = std::mem::take(&mut self.pending);
        let mut events = Vec::new();
        if let State::Speech { samples, silent_run, .. } = &mut self.state {
            samples.extend_from_slice(&pending);
            *silent_run += pending.len();
            self.consumed += pending.len() as u64;
        }
        self.end_utterance(false, &mut events);
        events.into_iter().find_map(|e| match e {
            VadEvent::Ended(u) => Some(u),
            VadEvent::Started { .. } => None,
        })
    }

    fn frame(&mut self, frame: &[f32], events: &mut Vec<VadEvent>) {
        let level = level_db(frame);
        let threshold = self.cfg.min_level_db.max(self.noise_db + self.cfg.margin_db);
        let voiced = level > threshold;
        // Track the background: down at once, up slowly.
        let rise = self.cfg.noise_rise_db_per_s * self.cfg.frame_ms as f32 / 1000.0;
        self.noise_db = if level < self.noise_db { level } else { (self.noise_db + rise).min(level) };
        self.noise_db = self.noise_db.max(-100.0);
        self.consumed += frame.len() as u64;

        let pre_roll = self.ms_to_samples(self.cfg.pre_roll_ms);
        let min_speech = self.ms_to_samples(self.cfg.min_speech_ms).max(1);
        match &mut self.state {
            State::Silence { voiced_run } => {
                self.history.extend(frame.iter().copied());
                *voiced_run = if voiced { *voiced_run + frame.len() } else { 0 };
                if *voiced_run >= min_speech {
                    let keep = (pre_roll + *voiced_run).min(self.history.len());
                    let samples: Vec<f32> = self.history.iter().skip(self.history.len() - keep).copied().collect();
                    self.history.clear();
                    let start_sample = self.consumed - samples.len() as u64;
                    let last_voiced_end = samples.len();
                    self.state = State::Speech { start_sample, samples, last_voiced_end, silent_run: 0 };
                    events.push(VadEvent::Started { start_ms: self.samples_to_ms(start_sample) });
                } else {
                    let cap = pre_roll + min_speech;
                    while self.history.len() > cap {
                        self.history.pop_front();
                    }
                }
            }
            State::Speech { samples, last_voiced_end, silent_run, .. } => {
                samples.extend_from_slice(frame);
                if voiced {
                    *silent_run = 0;
                    *last_voiced_end = samples.len();
                } else {
                    *silent_run += frame.len();
                }
                let (silent, len) = (*silent_run, samples.len());
                if silent >= self.ms_to_samples(self.cfg.hangover_ms) {
                    self.end_utterance(false, events);
                } else if len >= self.ms_to_samples(self.cfg.max_utterance_ms) {
                    self.end_utterance(true, events);
                }
            }
        }
    }

    fn end_utterance(&mut self, cut: bool, events: &mut Vec<VadEvent>) {
        let state = std::mem::replace(&mut self.state, State::Silence { voiced_run: 0 });
        let State::Speech { start_sample, mut samples, last_voiced_end, .. } = state else {
            self.state = state;
            return;
        };
        if last_voiced_end == 0 {
            // Only the silence after a cut: nothing to say.
            self.history.extend(samples);
            return;
        }
        let keep = if cut {
            samples.len()
        } else {
            (last_voiced_end + self.ms_to_samples(self.cfg.tail_ms)).min(samples.len())
        };
        let trailing = samples.split_off(keep);
        let end_sample = start_sample + samples.len() as u64;
        events.push(VadEvent::Ended(Utterance {
            start_ms: self.samples_to_ms(start_sample),
            end_ms: self.samples_to_ms(end_sample),
            samples,
            cut,
        }));
        if cut {
            // Still talking: the next utterance starts right here.
            self.state =
                State::Speech { start_sample: end_sample, samples: Vec::new(), last_voiced_end: 0, silent_run: 0 };
            events.push(VadEvent::Started { start_ms: self.samples_to_ms(end_sample) });
        } else {
            self.history.extend(trailing);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: usize = 16_000;

    /// A 300 Hz tone at about -13 dBFS for `ms`, then `gap_ms` of faint noise (about -60 dBFS).
    fn tone_then_gap(out: &mut Vec<f32>, ms: usize, gap_ms: usize) {
        let n = SR * ms / 1000;
        out.extend((0..n).map(|i| 0.3 * (2.0 * std::f32::consts::PI * 300.0 * i as f32 / SR as f32).sin()));
        let mut seed = 12345u32;
        out.extend((0..SR * gap_ms / 1000).map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.002 - 0.001
        }));
    }

    fn run(audio: &[f32], chunk: usize) -> (Vec<Utterance>, Vec<u64>) {
        let mut seg = Segmenter::new(VadConfig::default());
        let mut utterances = Vec::new();
        let mut starts = Vec::new();
        for c in audio.chunks(chunk) {
            for e in seg.push(c) {
                match e {
                    VadEvent::Started { start_ms } => starts.push(start_ms),
                    VadEvent::Ended(u) => utterances.push(u),
                }
            }
        }
        utterances.extend(seg.finish());
        (utterances, starts)
    }

    #[test]
    fn two_bursts_apart_are_two_utterances() {
        let mut audio = Vec::new();
        tone_then_gap(&mut audio, 0, 1000);
        tone_then_gap(&mut audio, 1500, 1000);
        tone_then_gap(&mut audio, 800, 1200);
        for chunk in [1, 160, 333, 16_000] {
            let (u, starts) = run(&audio, chunk);
            assert_eq!(u.len(), 2, "chunk {chunk}: {:?}", u.iter().map(|u| (u.start_ms, u.end_ms)).collect::<Vec<_>>());
            // Speech 1000..2500 ms and 3500..4300 ms, with 200 ms of pre-roll and of tail.
            assert_eq!((u[0].start_ms, u[0].end_ms), (800, 2700));
            assert_eq!((u[1].start_ms, u[1].end_ms), (3300, 4500));
            assert_eq!(u[0].samples.len(), 1900 * 16);
            assert_eq!(starts, vec![800, 3300]);
            assert!(!u[0].cut);
        }
    }

    #[test]
    fn a_pause_shorter_than_the_hangover_does_not_split() {
        let mut audio = Vec::new();
        tone_then_gap(&mut audio, 0, 500);
        tone_then_gap(&mut audio, 700, 300);
        tone_then_gap(&mut audio, 700, 1000);
        let (u, _) = run(&audio, 320);
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].start_ms, u[0].end_ms), (300, 2400));
    }

    #[test]
    fn clicks_shorter_than_min_speech_are_ignored() {
        let mut audio = Vec::new();
        tone_then_gap(&mut audio, 0, 500);
        tone_then_gap(&mut audio, 40, 2000);
        let (u, starts) = run(&audio, 320);
        assert!(u.is_empty() && starts.is_empty());
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum() {
        // 40 s of "syllables": 240 ms of tone, 60 ms dips 30 dB down (real speech has such
        // dips between syllables; they keep the noise estimate from rising into the speech).
        let mut audio = Vec::new();
        tone_then_gap(&mut audio, 0, 200);
        for _ in 0..(40_000 / 300) {
            tone_then_gap(&mut audio, 240, 0);
            audio.extend((0..SR * 60 / 1000).map(|i| 0.01 * (i as f32 * 0.2).sin()));
        }
        tone_then_gap(&mut audio, 0, 1000);
        let (u, starts) = run(&audio, 320);
        assert_eq!(u.len(), 3);
        assert!(u[0].cut && u[1].cut && !u[2].cut);
        assert_eq!(u[0].end_ms - u[0].start_ms, 15_000);
        assert_eq!(u[1].start_ms, u[0].end_ms);
        // 133 syllables after 200 ms: the last tone ends at 40 040 ms, plus the 200 ms tail.
        assert_eq!(u[2].end_ms, 40_240);
        assert_eq!(starts.len(), 3);
    }

    #[test]
    fn a_steady_hum_is_learnt_as_background() {
        // -30 dBFS hum (above the -45 dB floor) for 20 s: the noise estimate rises to it, so it
        // stops counting as speech; a louder voice over it still does.
        let hum = |i: usize| 0.045 * (2.0 * std::f32::consts::PI * 100.0 * i as f32 / SR as f32).sin();
        let mut seg = Segmenter::new(VadConfig::default());
        let mut ended = Vec::new();
        let n = 20 * SR;
        for start in (0..n).step_by(320) {
            let frame: Vec<f32> = (start..start + 320).map(hum).collect();
            for e in seg.push(&frame) {
                if let VadEvent::Ended(u) = e {
                    ended.push(u);
                }
            }
        }
        assert!(seg.current().is_none(), "hum is background by now");
        let voice: Vec<f32> = (0..SR).map(|i| hum(i) + 0.4 * (i as f32 * 0.05).sin()).collect();
        let events = seg.push(&voice);
        assert!(events.iter().any(|e| matches!(e, VadEvent::Started { .. })));
        assert!(!ended.is_empty(), "at first the hum was taken for speech");
    }

    #[test]
    fn level_of_a_full_scale_sine_is_minus_3_db() {
        let sine: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.1).sin()).collect();
        assert!((level_db(&sine) + 3.01).abs() < 0.1);
        assert_eq!(level_db(&[0.0; 10]), -120.0);
    }
}
