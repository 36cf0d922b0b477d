//! The audio bridge of a phone leg (a *line*) in a WebRTC call, sans-IO:
//! Opus packets and 8 kHz PCM in, 8 kHz PCM and Opus packets out. Nothing
//! here opens a socket, spawns a task, reads a clock or imports `webrtc`;
//! the owner's 20 ms tick drives it. [`crate::sfu::Line`] wires it into a
//! call's routes.
//!
//! ## Why a mixer
//! Browsers hear one RTP stream per party (the SFU forwards Opus
//! untranscoded, one m-line per party), but a phone leg is one G.711
//! stream each way. So the line's ear decodes every party routed to it by
//! [`crate::media::Session::routes`] and sums them, and its voice is
//! encoded once to Opus for every listener.
//!
//! ## Layout
//! - [`Inlet`]: one speaker's Opus stream into the line: a small playout
//!   buffer by RTP timestamp (reorder, drop late, bound the delay), decoded
//!   straight to 8 kHz mono, a lost frame concealed by the decoder's PLC.
//! - [`Ear`]: the inlets of the slots routed to the line now, mixed with
//!   saturation ([`saturating_mix`]) into one 20 ms frame.
//! - [`Voice`]: the line's 20 ms frames encoded to Opus as RTP payloads
//!   (RFC 7587), with the same audio upsampled to 16 kHz ([`Upsampler`])
//!   for the taps (captions, levels).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Samples in one 20 ms frame at 8 kHz: a G.711 packet's worth (RFC 3551).
pub const FRAME: usize = 160;
/// Samples in one 20 ms frame at 16 kHz, the taps' rate.
pub const WIDE_FRAME: usize = 2 * FRAME;
/// RTP timestamp units of 20 ms of Opus: its RTP clock is 48 kHz whatever
/// the audio's bandwidth (RFC 7587 §4.1).
pub const OPUS_FRAME_TICKS: u32 = 960;
/// 48 kHz RTP ticks per 8 kHz sample.
const TICKS_PER_SAMPLE: i64 = 6;
/// The longest Opus packet, 120 ms (RFC 6716 §3.2.1), in 8 kHz samples.
const MAX_PACKET_SAMPLES: usize = 960;
/// While playing, a packet this far ahead of the playout point (3 s) is a
/// restarted timestamp clock, not jitter.
const HORIZON: i64 = 3 * 48_000;
/// This many late packets in a row (0.5 s at 20 ms) mean the sender's
/// timestamps went backwards; the inlet starts over.
const LATE_RESET: u32 = 25;
/// How many played timestamps an inlet remembers, to tell a copy of a
/// played packet from a late one.
const PLAYED_MEMORY: usize = 32;

/// How deep an inlet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InletConfig {
    /// 20 ms frames queued before playout starts (and restarts after the
    /// stream ran dry): the delay the inlet adds and the jitter it absorbs.
    /// 2 (40 ms) suits a browser on the same network as the server.
    pub target_depth: usize,
    /// Packets queued beyond which the oldest are dropped back to the
    /// target, so a burst after a stall does not become delay.
    pub max_depth: usize,
    /// Frames concealed by the decoder's PLC before silence: Opus PLC
    /// fades by itself, and past 100 ms a guess is no longer speech.
    pub conceal_frames: u32,
}

impl Default for InletConfig {
    fn default() -> Self {
        InletConfig { target_depth: 2, max_depth: 8, conceal_frames: 5 }
    }
}

/// What an inlet has seen and done, for metrics. Every pushed packet is
/// counted once as played, late, duplicate, overflow, flushed or malformed,
/// or is still queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets pushed.
    pub received: u64,
    /// Packets decoded and played.
    pub played: u64,
    /// Packets dropped because their time had passed.
    pub late: u64,
    /// Copies of a packet queued or played; dropped.
    pub duplicate: u64,
    /// Packets dropped because the inlet was over `max_depth`.
    pub overflow: u64,
    /// Queued packets dropped by a restart (or a slot no longer routed).
    pub flushed: u64,
    /// Packets the decoder refused (concealed instead).
    pub malformed: u64,
    /// 20 ms frames concealed by the decoder (a lost or late packet).
    pub concealed: u64,
    /// 20 ms frames of silence: before playout, after concealment ran out.
    pub silence: u64,
    /// Times the inlet started over on a restarted sender.
    pub resets: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.received += o.received;
        self.played += o.played;
        self.late += o.late;
        self.duplicate += o.duplicate;
        self.overflow += o.overflow;
        self.flushed += o.flushed;
        self.malformed += o.malformed;
        self.concealed += o.concealed;
        self.silence += o.silence;
        self.resets += o.resets;
    }
}

/// What [`Inlet::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for playout.
    Queued,
    /// Its frame's time has passed; dropped.
    Late,
    /// A copy of a packet queued or played; dropped.
    Duplicate,
    /// For [`Ear::push`]: the slot is not routed to the line now (a packet
    /// forwarded just before a hold); dropped.
    NotHeard,
}

#[derive(Debug, thiserror::Error)]
pub enum MixerError {
    #[error("opus encoder: {0}")]
    Encode(&'static str),
}

/// One speaker's Opus stream into the line. Timestamps are unwrapped to
/// `i64` (RFC 3550 Appendix A.1) so that wraparound at 2³² is ordinary
/// arithmetic; packets play in timestamp order, which is the sampling
/// order (RFC 3550 §5.1), and a packet may hold any Opus duration.
pub struct Inlet {
    config: InletConfig,
    /// `opus_rs` decodes straight to 8 kHz (RFC 6716 §2: any Opus stream
    /// decodes at any of its rates), so no resampler is needed.
    decoder: opus_rs::OpusDecoder,
    /// Payloads waiting, by unwrapped timestamp: playout order.
    queue: BTreeMap<i64, Vec<u8>>,
    /// The newest unwrapped timestamp, which later ones unwrap against.
    newest: Option<i64>,
    /// The timestamp of the next sample to play; packets before it are late.
    next_ts: Option<i64>,
    /// Whether frames are being played; false while filling to the target.
    playing: bool,
    /// Decoded samples not played yet (a packet longer than 20 ms).
    pending: VecDeque<i16>,
    /// Timestamps played lately, newest last, to spot copies.
    played: VecDeque<i64>,
    concealed_run: u32,
    late_run: u32,
    /// Scratch for one decoded packet, kept to avoid an allocation per frame.
    scratch: Vec<f32>,
    stats: Stats,
}

impl std::fmt::Debug for Inlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inlet").field("depth", &self.queue.len()).field("stats", &self.stats).finish()
    }
}

impl Inlet {
    /// An empty inlet. A zero target is taken as 1, and `max_depth` is at
    /// least the target.
    pub fn new(config: InletConfig) -> Inlet {
        let target_depth = config.target_depth.max(1);
        let config = InletConfig { target_depth, max_depth: config.max_depth.max(target_depth), ..config };
        Inlet {
            config,
            // Only an unsupported rate or channel count fails, and 8 kHz mono is supported.
            decoder: opus_rs::OpusDecoder::new(8_000, 1).expect("8 kHz mono is an Opus decoder rate"),
            queue: BTreeMap::new(),
            newest: None,
            next_ts: None,
            playing: false,
            pending: VecDeque::with_capacity(MAX_PACKET_SAMPLES),
            played: VecDeque::with_capacity(PLAYED_MEMORY),
            concealed_run: 0,
            late_run: 0,
            scratch: vec![0.0; MAX_PACKET_SAMPLES],
            stats: Stats::default(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Packets queued now.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// Takes one packet: its RTP timestamp (48 kHz) and Opus payload.
    pub fn push(&mut self, timestamp: u32, payload: &[u8]) -> Pushed {
        self.stats.received += 1;
        let mut ts = self.unwrap(timestamp);
        let restarted = match self.next_ts {
            Some(next) if self.playing && ts - next > HORIZON => true,
            _ => self.late_run >= LATE_RESET,
        };
        if restarted {
            self.reset();
            ts = self.unwrap(timestamp);
        }
        if self.newest.is_none_or(|n| ts > n) {
            self.newest = Some(ts);
        }
        if self.queue.contains_key(&ts) || self.played.contains(&ts) {
            self.stats.duplicate += 1;
            return Pushed::Duplicate;
        }
        if self.next_ts.is_some_and(|next| ts < next) {
            self.stats.late += 1;
            self.late_run += 1;
            return Pushed::Late;
        }
        self.late_run = 0;
        self.queue.insert(ts, payload.to_vec());
        if self.queue.len() > self.config.max_depth {
            // Catch up: drop the oldest down to the target.
            while self.queue.len() > self.config.target_depth {
                let Some((ts, _)) = self.queue.pop_first() else { break };
                self.stats.overflow += 1;
                self.next_ts = Some(self.next_ts.map_or(ts, |n| n.max(ts)) + i64::from(OPUS_FRAME_TICKS));
            }
        }
        Pushed::Queued
    }

    /// Starts over, keeping the counts and the decoder: the next packets
    /// fill the buffer to the target again.
    fn reset(&mut self) {
        self.stats.flushed += self.queue.len() as u64;
        self.stats.resets += 1;
        self.queue.clear();
        self.newest = None;
        self.next_ts = None;
        self.playing = false;
        self.pending.clear();
        self.played.clear();
        self.concealed_run = 0;
        self.late_run = 0;
    }

    fn unwrap(&self, timestamp: u32) -> i64 {
        match self.newest {
            None => i64::from(timestamp),
            Some(t) => t + i64::from(timestamp.wrapping_sub(t as u32) as i32),
        }
    }

    /// The next 20 ms at 8 kHz; call once per 20 ms of the owner's clock.
    pub fn pop(&mut self) -> [i16; FRAME] {
        while self.pending.len() < FRAME {
            self.produce();
        }
        let mut out = [0i16; FRAME];
        for (o, s) in out.iter_mut().zip(self.pending.drain(..FRAME)) {
            *o = s;
        }
        out
    }

    /// Appends at least one sample to `pending`: a decoded packet, a
    /// concealed frame or silence.
    fn produce(&mut self) {
        if !self.playing {
            if self.queue.len() < self.config.target_depth {
                self.stats.silence += 1;
                self.pending.extend([0i16; FRAME]);
                return;
            }
            // Anchor playout on the oldest queued packet.
            self.next_ts = self.queue.first_key_value().map(|(ts, _)| *ts);
            self.playing = true;
            self.concealed_run = 0;
        }
        let Some(next) = self.next_ts else {
            self.stats.silence += 1;
            self.pending.extend([0i16; FRAME]);
            return;
        };
        // Packets before the playout point (after a catch-up) are late.
        while let Some(entry) = self.queue.first_entry() {
            if *entry.key() >= next {
                break;
            }
            entry.remove();
            self.stats.late += 1;
        }
        // The packet due now, within one frame of the expected timestamp (a
        // sender's timestamps need not stay on our grid).
        if let Some(entry) = self.queue.first_entry()
            && *entry.key() < next + i64::from(OPUS_FRAME_TICKS)
        {
            let ts = *entry.key();
            let payload = entry.remove();
            if self.played.len() == PLAYED_MEMORY {
                self.played.pop_front();
            }
            self.played.push_back(ts);
            match self.decoder.decode(&payload, MAX_PACKET_SAMPLES, &mut self.scratch) {
                Ok(n) if n > 0 => {
                    self.stats.played += 1;
                    self.concealed_run = 0;
                    self.next_ts = Some(ts + n as i64 * TICKS_PER_SAMPLE);
                    let samples: Vec<i16> = self.scratch[..n].iter().map(|&x| to_i16(x)).collect();
                    self.pending.extend(samples);
                }
                // A packet the decoder refuses is the sender's fault: counted,
                // and its 20 ms concealed like a lost one.
                _ => {
                    self.stats.malformed += 1;
                    self.next_ts = Some(ts + i64::from(OPUS_FRAME_TICKS));
                    self.conceal();
                }
            }
            return;
        }
        self.next_ts = Some(next + i64::from(OPUS_FRAME_TICKS));
        if self.concealed_run < self.config.conceal_frames {
            self.conceal();
            return;
        }
        self.stats.silence += 1;
        self.pending.extend([0i16; FRAME]);
        if self.queue.is_empty() {
            // Dry: refill to the target before playing again, which is how a
            // talk spurt after a pause (a hold, a mute) gets its jitter margin.
            self.playing = false;
        }
    }

    /// 20 ms from the decoder's packet loss concealment (an empty packet,
    /// as libopus takes it), or silence if it has nothing to go on.
    fn conceal(&mut self) {
        self.concealed_run += 1;
        self.stats.concealed += 1;
        match self.decoder.decode(&[], FRAME, &mut self.scratch) {
            Ok(n) if n == FRAME => {
                let samples: Vec<i16> = self.scratch[..n].iter().map(|&x| to_i16(x)).collect();
                self.pending.extend(samples);
            }
            // Nothing decoded yet to conceal from: silence is the concealment.
            _ => self.pending.extend([0i16; FRAME]),
        }
    }
}

fn to_i16(x: f32) -> i16 {
    (x * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// Sums frames sample by sample, clipping at the 16-bit limits instead of
/// wrapping (a wrapped sum is a loud click; a clipped one is only loud).
pub fn saturating_mix<'a>(frames: impl IntoIterator<Item = &'a [i16; FRAME]>) -> [i16; FRAME] {
    let mut acc = [0i32; FRAME];
    for frame in frames {
        for (a, &s) in acc.iter_mut().zip(frame) {
            *a += i32::from(s);
        }
    }
    let mut out = [0i16; FRAME];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
    }
    out
}

/// The line's ear: one [`Inlet`] per slot (a speaker routed to the line),
/// mixed into one frame per tick.
#[derive(Debug, Default)]
pub struct Ear {
    config: InletConfig,
    inlets: BTreeMap<usize, Inlet>,
    /// The slots routed to the line now: who it hears.
    live: BTreeSet<usize>,
    /// Whether the line waits (held, or nobody to talk to): it then hears
    /// hold music from its owner instead of the mix.
    waiting: bool,
    /// The counts of inlets dropped with their slot, so totals only grow.
    retired: Stats,
}

impl Ear {
    /// A line's ear that waits, hearing nobody yet.
    pub fn new(config: InletConfig) -> Ear {
        Ear { config, waiting: true, ..Ear::default() }
    }

    /// The slots routed to the line now, and whether it waits (see
    /// [`crate::media::Session::is_waiting`]). A slot no longer routed loses
    /// its inlet (its speaker is held, muted or gone: what it had queued
    /// must not play when it comes back).
    pub fn set_live(&mut self, slots: impl IntoIterator<Item = usize>, waiting: bool) {
        self.waiting = waiting;
        self.live = slots.into_iter().collect();
        let gone: Vec<usize> = self.inlets.keys().filter(|s| !self.live.contains(s)).copied().collect();
        for slot in gone {
            if let Some(inlet) = self.inlets.remove(&slot) {
                let mut stats = inlet.stats();
                stats.flushed += inlet.depth() as u64;
                self.retired.add(&stats);
            }
        }
    }

    /// Whether the line waits (held, or nobody to talk to).
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// A packet of the speaker on `slot`.
    pub fn push(&mut self, slot: usize, timestamp: u32, payload: &[u8]) -> Pushed {
        if !self.live.contains(&slot) {
            return Pushed::NotHeard;
        }
        let config = self.config;
        self.inlets.entry(slot).or_insert_with(|| Inlet::new(config)).push(timestamp, payload)
    }

    /// The next 20 ms of what the line hears: every routed speaker's frame
    /// summed (silence when they are all muted), or `None` while the line
    /// waits (held, or alone), so the owner can play hold music instead.
    pub fn mix(&mut self) -> Option<[i16; FRAME]> {
        if self.waiting {
            return None;
        }
        let frames: Vec<[i16; FRAME]> = self.inlets.values_mut().map(Inlet::pop).collect();
        Some(saturating_mix(&frames))
    }

    /// The counts of all inlets, past and present.
    pub fn stats(&self) -> Stats {
        let mut total = self.retired;
        for inlet in self.inlets.values() {
            total.add(&inlet.stats());
        }
        total
    }
}

/// One 20 ms frame of the line's voice, ready to send and to tap.
#[derive(Debug, Clone, PartialEq)]
pub struct Spoken {
    pub seq: u16,
    /// 48 kHz RTP clock (RFC 7587 §4.1).
    pub timestamp: u32,
    /// Set on the first packet of the stream (RFC 3551 §4.1).
    pub marker: bool,
    /// One Opus packet.
    pub payload: Vec<u8>,
    /// The same 20 ms at 16 kHz, full scale ±1, for the taps.
    pub wide: [f32; WIDE_FRAME],
}

/// The line's voice: 8 kHz PCM encoded to Opus once, for every listener.
pub struct Voice {
    encoder: opus_rs::OpusEncoder,
    seq: u16,
    timestamp: u32,
    first: bool,
    upsampler: Upsampler,
    out: Vec<u8>,
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice").field("seq", &self.seq).field("timestamp", &self.timestamp).finish()
    }
}

/// Opus bitrate for narrowband speech: SILK's NB sweet spot is 8–12 kb/s;
/// 16 kb/s leaves room for a noisy mobile line.
const VOICE_BITRATE: i32 = 16_000;
/// libopus's complexity scale (0–10). Measured here at 8 kHz, complexity 5
/// costs a fraction of a percent of a core per line.
const VOICE_COMPLEXITY: i32 = 5;

impl Voice {
    /// A stream starting at `seq` and `timestamp` (random, RFC 3550 §5.1:
    /// the caller draws them).
    pub fn new(seq: u16, timestamp: u32) -> Voice {
        // Only an unsupported rate or channel count fails, and 8 kHz mono is supported.
        let mut encoder = opus_rs::OpusEncoder::new(8_000, 1, opus_rs::Application::Voip)
            .expect("8 kHz mono is an Opus encoder rate");
        encoder.bitrate_bps = VOICE_BITRATE;
        encoder.complexity = VOICE_COMPLEXITY;
        Voice { encoder, seq, timestamp, first: true, upsampler: Upsampler::new(), out: vec![0; 1500] }
    }

    /// Encodes the next 20 ms.
    pub fn encode(&mut self, pcm: &[i16; FRAME]) -> Result<Spoken, MixerError> {
        let len = self.encoder.encode_i16(pcm, FRAME, &mut self.out).map_err(MixerError::Encode)?;
        let spoken = Spoken {
            seq: self.seq,
            timestamp: self.timestamp,
            marker: self.first,
            payload: self.out[..len].to_vec(),
            wide: self.upsampler.upsample(pcm),
        };
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(OPUS_FRAME_TICKS);
        Ok(spoken)
    }
}

/// Half the length of the interpolation filter, in input samples.
const HALF_TAPS: usize = 8;

/// A 2× upsampler from 8 to 16 kHz for the taps: the even outputs are the
/// input samples, the odd ones a windowed-sinc (Blackman) interpolation
/// half way between, so the 4–8 kHz image of the 0–4 kHz band is
/// suppressed rather than aliased into what whisper hears. It delays the
/// audio by [`HALF_TAPS`] input samples (1 ms).
#[derive(Debug, Clone)]
pub struct Upsampler {
    /// The last `2 * HALF_TAPS - 1` inputs.
    history: Vec<f32>,
    /// Coefficient k weighs the inputs k + ½ samples either side.
    coefficients: [f32; HALF_TAPS],
}

impl Default for Upsampler {
    fn default() -> Self {
        Upsampler::new()
    }
}

impl Upsampler {
    pub fn new() -> Upsampler {
        let mut coefficients = [0f32; HALF_TAPS];
        for (k, c) in coefficients.iter_mut().enumerate() {
            let x = k as f64 + 0.5;
            let sinc = (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x);
            let t = x / HALF_TAPS as f64;
            let window = 0.42 + 0.5 * (std::f64::consts::PI * t).cos() + 0.08 * (2.0 * std::f64::consts::PI * t).cos();
            *c = (sinc * window) as f32;
        }
        // Unity gain at DC: the taps, on both sides, sum to one.
        let sum: f32 = coefficients.iter().sum::<f32>() * 2.0;
        for c in &mut coefficients {
            *c /= sum;
        }
        Upsampler { history: vec![0.0; 2 * HALF_TAPS - 1], coefficients }
    }

    /// 20 ms at 8 kHz to 20 ms at 16 kHz, full scale ±1.
    pub fn upsample(&mut self, pcm: &[i16; FRAME]) -> [f32; WIDE_FRAME] {
        let mut x = std::mem::take(&mut self.history);
        x.extend(pcm.iter().map(|&s| f32::from(s) / 32_768.0));
        let mut out = [0f32; WIDE_FRAME];
        // Output pair n is centred on x[n + HALF_TAPS - 1]: the input HALF_TAPS - 1
        // samples into the window that ends at x[n + 2 * HALF_TAPS - 2].
        for n in 0..FRAME {
            let m = n + HALF_TAPS - 1;
            out[2 * n] = x[m];
            out[2 * n + 1] =
                self.coefficients.iter().enumerate().map(|(k, c)| c * (x[m - k] + x[m + 1 + k])).sum::<f32>();
        }
        self.history = x.split_off(x.len() - (2 * HALF_TAPS - 1));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share of the signal's energy at `freq` (Goertzel).
    fn tone_share(pcm: &[f32], freq: f32, rate: f32) -> f32 {
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

    fn share(frames: &[[i16; FRAME]], freq: f32) -> f32 {
        let pcm: Vec<f32> = frames.iter().flatten().map(|&s| f32::from(s)).collect();
        tone_share(&pcm, freq, 8_000.0)
    }

    fn rms(frame: &[i16]) -> f64 {
        (frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len() as f64).sqrt()
    }

    /// 20 ms Opus packets of a sine, as a browser sends them: encoded at
    /// 48 kHz, 960 ticks apart.
    fn browser_tone(freq: f32, amplitude: f32, frames: usize) -> Vec<Vec<u8>> {
        let mut encoder = opus_rs::OpusEncoder::new(48_000, 1, opus_rs::Application::Voip).unwrap();
        let mut out = vec![0u8; 1500];
        (0..frames)
            .map(|n| {
                let frame: Vec<f32> = (0..960)
                    .map(|i| amplitude * (2.0 * std::f32::consts::PI * freq * (n * 960 + i) as f32 / 48_000.0).sin())
                    .collect();
                let len = encoder.encode(&frame, 960, &mut out).unwrap();
                out[..len].to_vec()
            })
            .collect()
    }

    fn tone_8k(freq: f32, amplitude: f32, frame: usize) -> [i16; FRAME] {
        let mut pcm = [0i16; FRAME];
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (frame * FRAME + i) as f32 / 8_000.0;
            *s = (amplitude * 32_767.0 * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16;
        }
        pcm
    }

    const TS0: u32 = 4_294_900_000; // wraps within the tests' first 70 frames

    fn ts(n: usize) -> u32 {
        TS0.wrapping_add(n as u32 * OPUS_FRAME_TICKS)
    }

    #[test]
    fn saturating_mix_sums_and_clips_instead_of_wrapping() {
        let a = [20_000i16; FRAME];
        let b = [15_000i16; FRAME];
        let c = [-30_000i16; FRAME];
        assert_eq!(saturating_mix([&a, &b]), [i16::MAX; FRAME]);
        assert_eq!(saturating_mix([&c, &c]), [i16::MIN; FRAME]);
        assert_eq!(saturating_mix([&a, &b, &c]), [5_000i16; FRAME]);
        assert_eq!(saturating_mix(std::iter::empty()), [0i16; FRAME]);
    }

    #[test]
    fn two_speakers_are_heard_together_and_loud_ones_clip_without_wrapping() {
        let mut ear = Ear::new(InletConfig::default());
        ear.set_live([0, 1], false);
        let (low, high) = (browser_tone(440.0, 0.3, 50), browser_tone(1_000.0, 0.3, 50));
        let mut mixed = Vec::new();
        for n in 0..50 {
            ear.push(0, ts(n), &low[n]);
            ear.push(1, ts(n).wrapping_add(12_345), &high[n]);
            mixed.push(ear.mix().unwrap());
        }
        let tail = &mixed[25..];
        let (a, b) = (share(tail, 440.0), share(tail, 1_000.0));
        assert!(a > 0.3 && b > 0.3 && a + b > 0.85, "440 Hz {a}, 1 kHz {b}");

        // The same loud tone twice: twice full scale clips at the limits,
        // and every sample keeps its sign (a wrapped sum would flip it).
        let loud = browser_tone(440.0, 0.9, 50);
        let mut alone = Inlet::new(InletConfig::default());
        let mut ear = Ear::new(InletConfig::default());
        ear.set_live([0, 1], false);
        let mut clipped = 0;
        for (n, packet) in loud.iter().enumerate() {
            alone.push(ts(n), packet);
            ear.push(0, ts(n), packet);
            ear.push(1, ts(n), packet);
            let (one, both) = (alone.pop(), ear.mix().unwrap());
            for (&x, &y) in one.iter().zip(&both) {
                assert!(i32::from(x) * i32::from(y) >= 0, "a sign flipped: {x} alone, {y} mixed");
                if y == i16::MAX || y == i16::MIN {
                    clipped += 1;
                }
            }
        }
        assert!(clipped > 1_000, "only {clipped} samples reached the limits");
    }

    #[test]
    fn a_waiting_line_hears_none_and_a_silent_or_muted_speaker_is_silence() {
        let mut ear = Ear::new(InletConfig::default());
        assert_eq!(ear.mix(), None);
        assert!(ear.is_waiting());
        ear.set_live([2], false);
        assert_eq!(ear.mix(), Some([0; FRAME]));
        // A packet for a slot not routed (forwarded just before a hold) is dropped.
        assert_eq!(ear.push(0, ts(0), &[0xf8, 0xff, 0xfe]), Pushed::NotHeard);
        // Everyone muted: silence, not hold music.
        ear.set_live([], false);
        assert_eq!(ear.mix(), Some([0; FRAME]));
        ear.set_live([], true);
        assert_eq!(ear.mix(), None);
    }

    #[test]
    fn a_lost_packet_is_concealed_not_silent() {
        let packets = browser_tone(440.0, 0.3, 30);
        let mut inlet = Inlet::new(InletConfig::default());
        let mut out = Vec::new();
        for (n, packet) in packets.iter().enumerate() {
            if n != 15 {
                inlet.push(ts(n), packet);
            }
            out.push(inlet.pop());
        }
        let stats = inlet.stats();
        // Pop n plays frame n - 1 (the target depth is 2): 0..=28 but 15.
        assert_eq!((stats.played, stats.concealed, stats.late), (28, 1, 0), "{stats:?}");
        let levels: Vec<f64> = out[10..25].iter().map(|f| rms(&f[..])).collect();
        assert!(levels.iter().all(|&l| l > 500.0), "a frame of the tone went (almost) silent: {levels:?}");
    }

    #[test]
    fn reordered_packets_play_in_order_as_if_they_had_not_been() {
        let packets = browser_tone(440.0, 0.3, 20);
        let (mut straight, mut shuffled) = (Inlet::new(InletConfig::default()), Inlet::new(InletConfig::default()));
        let order = [0, 2, 1, 3, 5, 4, 6, 7, 9, 8, 10, 11, 13, 12, 14, 15, 17, 16, 18, 19];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (n, &m) in order.iter().enumerate() {
            straight.push(ts(n), &packets[n]);
            shuffled.push(ts(m), &packets[m]);
            a.push(straight.pop());
            b.push(shuffled.pop());
        }
        assert_eq!(a, b);
        assert_eq!(shuffled.stats().late, 0);
        assert_eq!(shuffled.stats().concealed, 0);
    }

    #[test]
    fn late_packets_and_copies_are_dropped() {
        let packets = browser_tone(440.0, 0.3, 10);
        let mut inlet = Inlet::new(InletConfig::default());
        for (n, packet) in packets.iter().enumerate().take(6) {
            if n != 2 {
                assert_eq!(inlet.push(ts(n), packet), Pushed::Queued);
            }
            inlet.pop();
        }
        // Frame 2 arrives after its time: its 20 ms were concealed already.
        assert_eq!(inlet.push(ts(2), &packets[2]), Pushed::Late);
        assert_eq!(inlet.push(ts(1), &packets[1]), Pushed::Duplicate, "played already");
        assert_eq!(inlet.push(ts(6), &packets[6]), Pushed::Queued);
        assert_eq!(inlet.push(ts(6), &packets[6]), Pushed::Duplicate, "queued already");
        let stats = inlet.stats();
        assert_eq!((stats.late, stats.duplicate, stats.concealed), (1, 2, 1), "{stats:?}");
    }

    #[test]
    fn a_burst_is_cut_back_to_the_target_depth() {
        let packets = browser_tone(440.0, 0.3, 20);
        let mut inlet = Inlet::new(InletConfig::default());
        for (n, packet) in packets.iter().enumerate() {
            inlet.push(ts(n), packet);
        }
        assert!(inlet.depth() <= InletConfig::default().max_depth);
        assert!(inlet.stats().overflow > 0);
        // Resumed after a long pause (a hold): the jump is not jitter, playout restarts.
        for _ in 0..20 {
            inlet.pop();
        }
        for (n, packet) in packets.iter().enumerate().take(5) {
            inlet.push(ts(1_000 + n), packet);
        }
        let before = inlet.stats().played;
        for _ in 0..5 {
            inlet.pop();
        }
        assert!(inlet.stats().played > before, "{:?}", inlet.stats());
    }

    #[test]
    fn a_tone_keeps_its_pitch_through_the_voice_and_an_inlet() {
        let mut voice = Voice::new(65_530, TS0);
        let mut inlet = Inlet::new(InletConfig::default());
        let mut heard = Vec::new();
        let mut wide = Vec::new();
        let mut last = None;
        for n in 0..50 {
            let spoken = voice.encode(&tone_8k(1_000.0, 0.3, n)).unwrap();
            assert_eq!(spoken.marker, n == 0);
            if let Some((seq, ts)) = last {
                assert_eq!(spoken.seq, u16::wrapping_add(seq, 1));
                assert_eq!(spoken.timestamp, u32::wrapping_add(ts, OPUS_FRAME_TICKS));
            }
            last = Some((spoken.seq, spoken.timestamp));
            assert!(spoken.payload.len() < 100, "{} bytes for 20 ms at 16 kb/s", spoken.payload.len());
            inlet.push(spoken.timestamp, &spoken.payload);
            heard.push(inlet.pop());
            wide.extend_from_slice(&spoken.wide);
        }
        let s = share(&heard[20..], 1_000.0);
        assert!(s > 0.7, "1 kHz share {s} after Opus");
        let s = tone_share(&wide[8_000..], 1_000.0, 16_000.0);
        assert!(s > 0.95, "1 kHz share at 16 kHz {s}");
    }

    #[test]
    fn the_upsampler_keeps_the_band_and_suppresses_its_image() {
        let mut up = Upsampler::new();
        let wide: Vec<f32> = (0..20).flat_map(|n| up.upsample(&tone_8k(1_000.0, 0.5, n))).collect();
        let tail = &wide[3_200..];
        assert!(tone_share(tail, 1_000.0, 16_000.0) > 0.99);
        // Naive sample doubling would put a strong image at 8 − 1 = 7 kHz.
        assert!(tone_share(tail, 7_000.0, 16_000.0) < 0.001, "{}", tone_share(tail, 7_000.0, 16_000.0));
        // Unity gain: the level is that of the input.
        let level = (tail.iter().map(|x| x * x).sum::<f32>() / tail.len() as f32).sqrt();
        assert!((level - 0.5 / 2f32.sqrt()).abs() < 0.01, "{level}");
    }
}
