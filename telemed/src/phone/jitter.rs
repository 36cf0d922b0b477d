//! The playout jitter buffer of one G.711 stream: 8 kHz, 20 ms frames.
//!
//! RTP over the internet arrives late, early, out of order, twice or not
//! at all (RFC 3550 §5.1, §6.4.1); a phone leg must still hand the mixer one
//! frame every 20 ms. Packets are pushed as they come and [`pop`] is called
//! on the owner's 20 ms tick: it returns the next frame in RTP timestamp
//! order, or a concealment frame when that frame is missing.
//!
//! Policy, in order:
//! - Playout starts (and restarts after the stream ran dry) once
//!   `target_depth` frames are queued, so a little jitter never starves it.
//! - Frames are played by timestamp, not sequence number, so the pauses of a
//!   sender that suppresses silence (its timestamps jump, its sequence
//!   numbers do not, RFC 3551 §4.1) last as long as the sender meant.
//! - A missing frame is concealed by repeating the last frame with a linear
//!   fade to silence over `conceal_frames` frames (in the spirit of G.711
//!   Appendix I, without its pitch search), then silence.
//! - Past `max_depth` queued frames the oldest are dropped back to the
//!   target, so a burst after a network stall does not become delay.
//! - A sequence jump over [`MAX_SEQ_JUMP`], a timestamp jump past
//!   [`HORIZON`] while playing, or [`LATE_RESET`] late packets in a row
//!   means the sender restarted: the buffer starts over.
//!
//! The counts in [`Stats`] are the stream's metrics.
//!
//! [`pop`]: JitterBuffer::pop

use std::collections::{BTreeMap, BTreeSet};

use super::g711::Law;

/// Samples per frame: 20 ms at 8 kHz, the RFC 3551 default packet time.
pub const FRAME_SAMPLES: usize = 160;
/// RTP timestamp units per frame (the 8 kHz clock of RFC 3551 §4.5.14).
pub const FRAME_TICKS: i64 = FRAME_SAMPLES as i64;
/// A sequence number this far from the newest is a restarted sender, not
/// reordering: 1,000 packets is 20 s of audio.
pub const MAX_SEQ_JUMP: i64 = 1000;
/// While playing, a packet this far ahead of the playout point (3 s) is a
/// restarted timestamp clock.
pub const HORIZON: i64 = 3 * 8000;
/// This many late packets in a row (0.5 s) mean the sender's timestamps
/// went backwards; the buffer starts over on the next.
pub const LATE_RESET: u32 = 25;
/// How far back the buffer remembers which sequence numbers it played, to
/// tell a duplicate from a late packet.
const HISTORY: i64 = 64;

/// How deep the buffer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Frames queued before playout starts: the delay the buffer adds, and
    /// the jitter it absorbs. 2 (40 ms) suits a managed trunk.
    pub target_depth: usize,
    /// Frames queued beyond which the oldest are dropped back to
    /// `target_depth`. Bounds delay and memory.
    pub max_depth: usize,
    /// Frames of faded repetition before silence. Longer repetition of one
    /// 20 ms frame sounds like a buzz.
    pub conceal_frames: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { target_depth: 2, max_depth: 6, conceal_frames: 3 }
    }
}

/// What the buffer has seen and done, for metrics. Monotonic except `lost`,
/// which a late arrival can lower (it was not lost, only late). Every
/// received packet is counted once as played, duplicate, late, overflow or
/// flushed, or is still queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets pushed with a frame-sized payload.
    pub received: u64,
    /// Frames played from packets.
    pub played: u64,
    /// Packets dropped as copies of one queued or played.
    pub duplicate: u64,
    /// Packets dropped because their frame's time had passed.
    pub late: u64,
    /// Sequence numbers skipped at playout and never received.
    pub lost: u64,
    /// Concealment frames played (faded repeats).
    pub concealed: u64,
    /// Silence frames played: before playout starts, after concealment
    /// ran out, and in a sender's silence.
    pub silence: u64,
    /// Packets dropped because the buffer was over `max_depth`.
    pub overflow: u64,
    /// Queued packets dropped by a reset.
    pub flushed: u64,
    /// Packets whose payload was not one frame (160 octets).
    pub malformed: u64,
    /// Times the buffer started over on a restarted sender or [`JitterBuffer::reset`].
    pub resets: u64,
}

/// What [`JitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for playout.
    Queued,
    /// A copy of a packet already queued or played; dropped.
    Duplicate,
    /// Its frame's time has passed; dropped.
    Late,
    /// The payload is not one 20 ms frame; dropped.
    Malformed,
}

/// Where a frame from [`JitterBuffer::pop`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Decoded from the packet with this sequence number and timestamp.
    Packet {
        /// The packet's RTP sequence number.
        seq: u16,
        /// The packet's RTP timestamp.
        timestamp: u32,
    },
    /// A faded repeat of the last packet's frame.
    Concealed,
    /// Silence.
    Silence,
}

/// One 20 ms frame of linear PCM, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The samples, decoded from G.711.
    pub pcm: [i16; FRAME_SAMPLES],
    /// Where they came from.
    pub kind: FrameKind,
}

/// A queued packet, decoded on arrival so concealment can fade it.
#[derive(Debug, Clone)]
struct Queued {
    seq: i64,
    pcm: [i16; FRAME_SAMPLES],
}

/// A playout jitter buffer for one G.711 stream (one SSRC). Sequence numbers
/// and timestamps are unwrapped to `i64` (RFC 3550 Appendix A.1) so that
/// wraparound at 65,535 and 2³² is ordinary arithmetic.
#[derive(Debug)]
pub struct JitterBuffer {
    law: Law,
    config: Config,
    /// Frames waiting, by unwrapped timestamp: playout order.
    queue: BTreeMap<i64, Queued>,
    /// The newest unwrapped sequence number, and the unwrapped timestamp of
    /// that packet: the references that later packets unwrap against.
    newest: Option<(i64, i64)>,
    /// The timestamp of the next frame to play; frames before it are late.
    /// Kept while the buffer waits to restart, so stragglers stay late.
    next_ts: Option<i64>,
    /// Whether frames are being played; false while filling to the target.
    playing: bool,
    /// The newest sequence number played (or dropped) and a bitmap of the
    /// [`HISTORY`] before it: bit i is `last_seq - i`.
    last_seq: Option<i64>,
    seq_history: u64,
    /// Sequence numbers that arrived late ahead of `last_seq`, so playout
    /// does not count them lost when it skips them. Bounded by [`HISTORY`].
    late_ahead: BTreeSet<i64>,
    /// The last frame played from a packet, the source of concealment.
    last_frame: [i16; FRAME_SAMPLES],
    /// Concealment frames since the last packet's frame.
    concealed_run: u32,
    late_run: u32,
    stats: Stats,
}

impl JitterBuffer {
    /// An empty buffer for a stream in `law`. A config with a zero target
    /// is taken as 1, and `max_depth` is at least the target.
    pub fn new(law: Law, config: Config) -> JitterBuffer {
        let target_depth = config.target_depth.max(1);
        let config = Config { target_depth, max_depth: config.max_depth.max(target_depth), ..config };
        JitterBuffer {
            law,
            config,
            queue: BTreeMap::new(),
            newest: None,
            next_ts: None,
            playing: false,
            last_seq: None,
            seq_history: 0,
            late_ahead: BTreeSet::new(),
            last_frame: [0; FRAME_SAMPLES],
            concealed_run: 0,
            late_run: 0,
            stats: Stats::default(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Frames queued now.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// Starts over, keeping the counts: for a new SSRC, or a re-INVITE
    /// that changes the stream.
    pub fn reset(&mut self) {
        self.stats.flushed += self.queue.len() as u64;
        self.queue.clear();
        self.newest = None;
        self.next_ts = None;
        self.playing = false;
        self.last_seq = None;
        self.seq_history = 0;
        self.late_ahead.clear();
        self.concealed_run = 0;
        self.late_run = 0;
        self.stats.resets += 1;
    }

    /// Takes one packet: its RTP sequence number, timestamp and G.711
    /// payload (one 20 ms frame, 160 octets).
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: &[u8]) -> Pushed {
        if payload.len() != FRAME_SAMPLES {
            self.stats.malformed += 1;
            return Pushed::Malformed;
        }
        self.stats.received += 1;
        let (mut seq_x, mut ts_x) = self.unwrap(seq, timestamp);
        let restarted = match (self.newest, self.next_ts) {
            (Some((newest_seq, _)), _) if (seq_x - newest_seq).abs() > MAX_SEQ_JUMP => true,
            (_, Some(next)) if self.playing && ts_x - next > HORIZON => true,
            _ => self.late_run >= LATE_RESET,
        };
        if restarted {
            self.reset();
            (seq_x, ts_x) = self.unwrap(seq, timestamp);
        }
        match self.newest {
            Some((newest_seq, _)) if seq_x <= newest_seq => {}
            _ => self.newest = Some((seq_x, ts_x)),
        }

        if self.queue.contains_key(&ts_x) || self.was_played(seq_x) {
            self.stats.duplicate += 1;
            return Pushed::Duplicate;
        }
        if self.next_ts.is_some_and(|next| ts_x < next) {
            self.stats.late += 1;
            self.late_run += 1;
            self.note_late(seq_x);
            return Pushed::Late;
        }
        self.late_run = 0;
        let mut pcm = [0i16; FRAME_SAMPLES];
        self.law.decode_into(payload, &mut pcm);
        self.queue.insert(ts_x, Queued { seq: seq_x, pcm });
        if self.queue.len() > self.config.max_depth {
            // Catch up: drop the oldest down to the target.
            while self.queue.len() > self.config.target_depth {
                let Some((ts, q)) = self.queue.pop_first() else {
                    break;
                };
                self.stats.overflow += 1;
                self.consume(q.seq);
                self.next_ts = Some(self.next_ts.map_or(ts, |n| n.max(ts)) + FRAME_TICKS);
            }
        }
        Pushed::Queued
    }

    /// The next 20 ms of audio; call once per 20 ms of the owner's clock.
    pub fn pop(&mut self) -> Frame {
        if !self.playing {
            if self.queue.len() < self.config.target_depth {
                return self.silence();
            }
            self.start_playout();
        }
        let Some(next) = self.next_ts else {
            // start_playout always sets it; play silence rather than panic.
            return self.silence();
        };
        // Frames before the playout point (after a realignment) are late.
        while let Some(entry) = self.queue.first_entry() {
            if *entry.key() >= next {
                break;
            }
            let q = entry.remove();
            self.stats.late += 1;
            self.note_late(q.seq);
        }
        // The frame due now, within one frame of the expected timestamp (a
        // sender's timestamps need not stay on our 160 grid).
        if let Some(entry) = self.queue.first_entry()
            && *entry.key() < next + FRAME_TICKS
        {
            let ts = *entry.key();
            let q = entry.remove();
            self.next_ts = Some(ts + FRAME_TICKS);
            self.consume(q.seq);
            self.last_frame = q.pcm;
            self.concealed_run = 0;
            self.stats.played += 1;
            return Frame { pcm: q.pcm, kind: FrameKind::Packet { seq: q.seq as u16, timestamp: ts as u32 } };
        }
        self.next_ts = Some(next + FRAME_TICKS);
        if self.concealed_run < self.config.conceal_frames {
            self.concealed_run += 1;
            self.stats.concealed += 1;
            return Frame { pcm: self.faded(self.concealed_run), kind: FrameKind::Concealed };
        }
        if self.queue.is_empty() {
            // Dry: refill to the target before playing again, which is how
            // a talk spurt after the sender's silence gets its jitter margin.
            self.playing = false;
        }
        self.silence()
    }

    /// Anchors playout on the oldest queued frame, and drops any queued
    /// frame past the horizon from it (a stray timestamp).
    fn start_playout(&mut self) {
        let Some((&first, _)) = self.queue.first_key_value() else {
            return;
        };
        while let Some(entry) = self.queue.last_entry() {
            if *entry.key() - first <= HORIZON {
                break;
            }
            let q = entry.remove();
            self.stats.overflow += 1;
            self.note_late(q.seq);
        }
        self.next_ts = Some(first);
        self.playing = true;
        self.concealed_run = 0;
    }

    fn silence(&mut self) -> Frame {
        self.stats.silence += 1;
        Frame { pcm: [0; FRAME_SAMPLES], kind: FrameKind::Silence }
    }

    /// The last frame faded for the `run`-th concealment frame: the gain
    /// falls linearly from 1 to 0 across all `conceal_frames`, sample by
    /// sample, so the fade has no steps.
    fn faded(&self, run: u32) -> [i16; FRAME_SAMPLES] {
        let total = (self.config.conceal_frames as usize * FRAME_SAMPLES) as f32;
        let start = (run as usize - 1) * FRAME_SAMPLES;
        let mut out = [0i16; FRAME_SAMPLES];
        for (i, (o, &s)) in out.iter_mut().zip(&self.last_frame).enumerate() {
            let gain = 1.0 - (start + i + 1) as f32 / total;
            *o = (f32::from(s) * gain.max(0.0)).round() as i16;
        }
        out
    }

    /// Unwraps a sequence number and timestamp against the newest packet:
    /// the nearest value with the same low bits.
    fn unwrap(&self, seq: u16, timestamp: u32) -> (i64, i64) {
        match self.newest {
            None => (i64::from(seq), i64::from(timestamp)),
            Some((s, t)) => (
                s + i64::from(seq.wrapping_sub(s as u16) as i16),
                t + i64::from(timestamp.wrapping_sub(t as u32) as i32),
            ),
        }
    }

    fn was_played(&self, seq: i64) -> bool {
        match self.last_seq {
            Some(last) if seq <= last && last - seq < HISTORY => self.seq_history >> (last - seq) & 1 == 1,
            _ => false,
        }
    }

    /// Marks `seq` as played or dropped, and counts the sequence numbers
    /// skipped to reach it as lost.
    fn consume(&mut self, seq: i64) {
        match self.last_seq {
            None => {
                self.last_seq = Some(seq);
                self.seq_history = 1;
            }
            Some(last) if seq > last => {
                let skipped = (seq - last - 1) as u64;
                let arrived_late = self.late_ahead.range(last + 1..seq).count() as u64;
                self.stats.lost += skipped.saturating_sub(arrived_late);
                self.late_ahead = self.late_ahead.split_off(&(seq + 1));
                let shift = seq - last;
                self.seq_history = if shift >= HISTORY { 1 } else { self.seq_history << shift | 1 };
                self.last_seq = Some(seq);
            }
            Some(last) => {
                // Behind the newest played: it was counted lost when
                // playout skipped it.
                if last - seq < HISTORY {
                    self.seq_history |= 1 << (last - seq);
                    self.stats.lost = self.stats.lost.saturating_sub(1);
                }
            }
        }
    }

    /// A late packet was not lost: uncount it if playout already skipped
    /// it, or remember it so playout does not count it.
    fn note_late(&mut self, seq: i64) {
        match self.last_seq {
            Some(last) if seq < last => {
                if last - seq < HISTORY {
                    self.seq_history |= 1 << (last - seq);
                    self.stats.lost = self.stats.lost.saturating_sub(1);
                }
            }
            Some(last) if seq == last => {}
            _ => {
                self.late_ahead.insert(seq);
                if self.late_ahead.len() > HISTORY as usize {
                    self.late_ahead.pop_first();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose samples all encode `value`, so a played frame shows
    /// which packet it came from.
    fn payload(value: i16) -> Vec<u8> {
        vec![Law::A.encode_sample(value); FRAME_SAMPLES]
    }

    fn level(seq: u16) -> i16 {
        // Distinct, exactly representable A-law levels.
        Law::A.decode_sample(Law::A.encode_sample(1000 + 64 * (seq % 256) as i16))
    }

    fn buffer() -> JitterBuffer {
        JitterBuffer::new(Law::A, Config::default())
    }

    /// Pushes packet `seq` with the timestamp of a 20 ms stream from `ts0`.
    fn push(jb: &mut JitterBuffer, seq: u16, ts0: u32) -> Pushed {
        let ts = ts0.wrapping_add(u32::from(seq) * 160);
        jb.push(seq, ts, &payload(level(seq)))
    }

    fn kinds(jb: &mut JitterBuffer, n: usize) -> Vec<FrameKind> {
        (0..n).map(|_| jb.pop().kind).collect()
    }

    fn pkt(seq: u16, ts0: u32) -> FrameKind {
        FrameKind::Packet { seq, timestamp: ts0.wrapping_add(u32::from(seq) * 160) }
    }

    use FrameKind::{Concealed, Silence};

    #[test]
    fn phone_jitter_in_order() {
        let mut jb = buffer();
        assert_eq!(push(&mut jb, 0, 1000), Pushed::Queued);
        // Below the target: silence, waiting.
        assert_eq!(jb.pop().kind, Silence);
        for seq in 1..5 {
            push(&mut jb, seq, 1000);
        }
        let frame = jb.pop();
        assert_eq!(frame.kind, pkt(0, 1000));
        assert!(frame.pcm.iter().all(|&s| s == level(0)));
        assert_eq!(kinds(&mut jb, 4), (1..5).map(|s| pkt(s, 1000)).collect::<Vec<_>>());
        let s = jb.stats();
        assert_eq!((s.received, s.played, s.lost, s.late, s.duplicate), (5, 5, 0, 0, 0));
        assert_eq!(s.silence, 1);
    }

    #[test]
    fn phone_jitter_steady_stream_keeps_target_delay() {
        // One packet per tick: after the start it never conceals.
        let mut jb = buffer();
        let mut out = Vec::new();
        for seq in 0..200u16 {
            push(&mut jb, seq, 0);
            out.push(jb.pop().kind);
        }
        assert_eq!(out[0], Silence);
        assert!(out[1..].iter().all(|k| matches!(k, FrameKind::Packet { .. })));
        assert_eq!(jb.stats().concealed, 0);
        assert!(jb.depth() <= 2);
    }

    #[test]
    fn phone_jitter_reordered() {
        let mut jb = buffer();
        for seq in [0, 2, 1, 4, 3, 5] {
            assert_eq!(push(&mut jb, seq, 0), Pushed::Queued);
        }
        assert_eq!(kinds(&mut jb, 6), (0..6).map(|s| pkt(s, 0)).collect::<Vec<_>>());
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn phone_jitter_lost_is_concealed_with_a_fade() {
        let mut jb = buffer();
        for seq in [0, 1, 3, 4] {
            push(&mut jb, seq, 0);
        }
        assert_eq!(jb.pop().kind, pkt(0, 0));
        let last = jb.pop();
        assert_eq!(last.kind, pkt(1, 0));
        let concealed = jb.pop();
        assert_eq!(concealed.kind, Concealed);
        // A faded copy of frame 1: smaller, same sign, falling.
        let full = i32::from(last.pcm[0]);
        let c: Vec<i32> = concealed.pcm.iter().map(|&s| i32::from(s)).collect();
        assert!(c[0] < full && c[0] > full * 9 / 10, "{} vs {full}", c[0]);
        assert!(c.windows(2).all(|w| w[1] <= w[0]));
        assert!(c[159] > full / 2 && c[159] < full * 7 / 10);
        assert_eq!(kinds(&mut jb, 2), vec![pkt(3, 0), pkt(4, 0)]);
        let s = jb.stats();
        assert_eq!((s.lost, s.concealed, s.played), (1, 1, 4));
    }

    #[test]
    fn phone_jitter_long_loss_fades_to_silence_then_refills() {
        let mut jb = buffer();
        for seq in 0..2 {
            push(&mut jb, seq, 0);
        }
        assert_eq!(kinds(&mut jb, 2), vec![pkt(0, 0), pkt(1, 0)]);
        let fade: Vec<Frame> = (0..3).map(|_| jb.pop()).collect();
        assert!(fade.iter().all(|f| f.kind == Concealed));
        let peak = |f: &Frame| f.pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak(&fade[0]) > peak(&fade[1]) && peak(&fade[1]) > peak(&fade[2]));
        assert!(peak(&fade[2]) <= level(1).unsigned_abs() / 3 + 1);
        assert_eq!(jb.pop(), Frame { pcm: [0; FRAME_SAMPLES], kind: Silence });
        // Packets 2..=6 were lost. 7 and 8 are ahead of the playout point
        // (which ran on through the fade) and restart playout at the target.
        push(&mut jb, 7, 0);
        assert_eq!(jb.pop().kind, Silence, "refilling to the target");
        push(&mut jb, 8, 0);
        assert_eq!(kinds(&mut jb, 2), vec![pkt(7, 0), pkt(8, 0)]);
        let s = jb.stats();
        assert_eq!((s.lost, s.concealed, s.played), (5, 3, 4));
    }

    #[test]
    fn phone_jitter_duplicates_dropped() {
        let mut jb = buffer();
        push(&mut jb, 0, 0);
        assert_eq!(push(&mut jb, 0, 0), Pushed::Duplicate);
        push(&mut jb, 1, 0);
        assert_eq!(kinds(&mut jb, 2), vec![pkt(0, 0), pkt(1, 0)]);
        // A copy of a played packet.
        assert_eq!(push(&mut jb, 1, 0), Pushed::Duplicate);
        assert_eq!(push(&mut jb, 0, 0), Pushed::Duplicate);
        let s = jb.stats();
        assert_eq!((s.duplicate, s.late, s.played), (3, 0, 2));
    }

    #[test]
    fn phone_jitter_late_is_not_lost() {
        // 2 is concealed, then arrives after 3 has been played.
        let mut jb = buffer();
        for seq in [0, 1] {
            push(&mut jb, seq, 0);
        }
        assert_eq!(kinds(&mut jb, 3), vec![pkt(0, 0), pkt(1, 0), Concealed]);
        push(&mut jb, 3, 0);
        assert_eq!(jb.pop().kind, pkt(3, 0));
        assert_eq!(jb.stats().lost, 1);
        assert_eq!(push(&mut jb, 2, 0), Pushed::Late);
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.concealed), (0, 1, 1));
        assert_eq!(push(&mut jb, 2, 0), Pushed::Duplicate, "now remembered");

        // 6 is concealed and arrives before 7 is played.
        let mut jb = buffer();
        for seq in [4, 5] {
            push(&mut jb, seq, 0);
        }
        assert_eq!(kinds(&mut jb, 3), vec![pkt(4, 0), pkt(5, 0), Concealed]);
        assert_eq!(push(&mut jb, 6, 0), Pushed::Late);
        push(&mut jb, 7, 0);
        assert_eq!(jb.pop().kind, pkt(7, 0));
        let s = jb.stats();
        assert_eq!((s.lost, s.late), (0, 1));
    }

    #[test]
    fn phone_jitter_wraps_at_65535_and_2_pow_32() {
        // Sequence 65533..=65535, 0..=3; the timestamp wraps past 2^32 on
        // the way too.
        let base = u32::MAX - 300;
        let ts = |seq: u16| base.wrapping_add(u32::from(seq.wrapping_sub(65_533)) * 160);
        // Deep enough to hold all seven before playing.
        let mut jb = JitterBuffer::new(Law::A, Config { max_depth: 8, ..Config::default() });
        // Reordered across the wrap.
        for seq in [65_533u16, 65_534, 0, 65_535, 2, 1, 3] {
            assert_eq!(jb.push(seq, ts(seq), &payload(level(seq))), Pushed::Queued, "seq {seq}");
        }
        let expect: Vec<FrameKind> =
            (65_533..=65_535).chain(0..4).map(|seq| FrameKind::Packet { seq, timestamp: ts(seq) }).collect();
        assert_eq!(kinds(&mut jb, 7), expect);
        assert_eq!(jb.stats().lost, 0);
        // A copy of 65535 after the wrap is still a duplicate.
        assert_eq!(jb.push(65_535, ts(65_535), &payload(0)), Pushed::Duplicate);
    }

    #[test]
    fn phone_jitter_burst_after_senders_silence() {
        // A talk spurt, 2 s of the sender's silence (no packets, timestamps
        // jump, sequence numbers do not), then the next spurt arrives as a
        // burst of four.
        let mut jb = buffer();
        for seq in 0..3 {
            push(&mut jb, seq, 0);
            jb.pop();
        }
        // Drain: the tail plays, the fade, then silence until the burst.
        for _ in 0..100 {
            jb.pop();
        }
        let resume = 3 * 160 + 16_000;
        for seq in 3..7u16 {
            let ts = resume + u32::from(seq - 3) * 160;
            assert_eq!(jb.push(seq, ts, &payload(level(seq))), Pushed::Queued);
        }
        let expect: Vec<FrameKind> =
            (3..7u16).map(|seq| FrameKind::Packet { seq, timestamp: resume + u32::from(seq - 3) * 160 }).collect();
        assert_eq!(kinds(&mut jb, 4), expect);
        let s = jb.stats();
        // Nothing was lost: the gap was the sender's.
        assert_eq!((s.lost, s.late, s.overflow, s.played), (0, 0, 0, 7));
    }

    #[test]
    fn phone_jitter_burst_after_stall_catches_up() {
        // The network stalls for 12 frames, then delivers them at once: the
        // oldest are dropped to the target instead of becoming delay.
        let mut jb = buffer();
        for seq in 0..3 {
            push(&mut jb, seq, 0);
            jb.pop();
        }
        for _ in 0..12 {
            jb.pop();
        }
        for seq in 3..15 {
            push(&mut jb, seq, 0);
        }
        // Those whose time passed are late, the oldest of the rest dropped;
        // what is left is at most max_depth, the newest, in order.
        let s = jb.stats();
        let depth = jb.depth();
        assert!(depth <= Config::default().max_depth && depth >= 2);
        assert!(s.late > 0 && s.overflow > 0);
        assert_eq!(s.late + s.overflow + depth as u64, 12);
        let expect: Vec<FrameKind> = (15 - depth as u16..15).map(|seq| pkt(seq, 0)).collect();
        assert_eq!(kinds(&mut jb, depth), expect);
        assert_eq!(jb.stats().lost, 0, "late and dropped packets are not lost");
    }

    #[test]
    fn phone_jitter_restarted_sender_is_followed() {
        let mut jb = buffer();
        for seq in 0..4 {
            push(&mut jb, seq, 0);
            jb.pop();
        }
        // New sequence and timestamp bases, far from the old.
        for seq in 30_000..30_003u16 {
            assert_eq!(push(&mut jb, seq, 5), Pushed::Queued);
        }
        assert_eq!(jb.stats().resets, 1);
        assert!(kinds(&mut jb, 3).contains(&pkt(30_002, 5)));
        // Timestamps that go backwards with the sequence still counting:
        // late for a while, then followed.
        let mut jb = buffer();
        for seq in 0..4 {
            push(&mut jb, seq, 1_000_000);
            jb.pop();
        }
        let mut queued_at = None;
        for seq in 4..40u16 {
            let r = jb.push(seq, u32::from(seq) * 160, &payload(0));
            if r == Pushed::Queued && queued_at.is_none() {
                queued_at = Some(seq);
            }
            jb.pop();
        }
        assert_eq!(queued_at, Some(4 + LATE_RESET as u16));
        assert_eq!(jb.stats().resets, 1);
    }

    #[test]
    fn phone_jitter_rejects_wrong_sized_payloads_and_decodes_mu_law() {
        let mut jb = JitterBuffer::new(Law::Mu, Config::default());
        assert_eq!(jb.push(0, 0, &[0xFF; 80]), Pushed::Malformed);
        assert_eq!(jb.push(0, 0, &[]), Pushed::Malformed);
        assert_eq!(jb.stats().malformed, 2);
        jb.push(0, 0, &[0x80; 160]);
        jb.push(1, 160, &[0x80; 160]);
        assert!(jb.pop().pcm.iter().all(|&s| s == 32124));
    }
}
