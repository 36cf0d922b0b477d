//! DTMF digits from a phone leg, both ways they arrive:
//!
//! - out of band, as RFC 4733 telephone-events in their own RTP payload
//!   type (what trunks negotiate as `telephone-event/8000`):
//!   [`TelephoneEvent`] is the 4-octet payload and [`EventReceiver`] turns
//!   a stream of them into key presses;
//! - in band, as ITU-T Q.23 tone pairs inside the G.711 audio (older
//!   trunks, or a caller behind a gateway that does not translate):
//!   [`ToneDetector`] finds them with the Goertzel algorithm.
//!
//! Both take values in and queue digits for the caller to drain with
//! `poll_digit`, so one packet or one buffer may yield none or several.

use std::collections::VecDeque;

/// The DTMF keys, in RFC 4733 event order (§3.2, Table 7): events 0–9 are
/// the digits, 10 is `*`, 11 `#`, 12–15 `A`–`D`.
const EVENT_DIGITS: [char; 16] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D'];

/// The key of an RFC 4733 event code, if it is a DTMF key. Other events
/// (flash, fax and modem tones) are not keys.
pub fn event_digit(event: u8) -> Option<char> {
    EVENT_DIGITS.get(usize::from(event)).copied()
}

/// The RFC 4733 event code of a key (`0`–`9`, `*`, `#`, `A`–`D`, either
/// case for the letters).
pub fn digit_event(digit: char) -> Option<u8> {
    let digit = digit.to_ascii_uppercase();
    EVENT_DIGITS.iter().position(|&d| d == digit).and_then(|i| u8::try_from(i).ok())
}

/// A telephone-event payload that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// RFC 4733 §2.3: the payload is exactly 4 octets (RTP padding is the
    /// RTP layer's to strip). Redundant events come as RFC 2198 blocks, not
    /// as longer payloads.
    #[error("telephone-event payload of {0} octets; RFC 4733 §2.3 defines 4")]
    Length(usize),
    /// RFC 4733 §2.3.4: the volume is 6 bits, 0 to 63 (-dBm0).
    #[error("telephone-event volume {0} is not in 0..=63 (RFC 4733 §2.3.4)")]
    Volume(u8),
}

/// One RFC 4733 §2.3 telephone-event payload:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     event     |E|R| volume    |          duration             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code (§3.2 for DTMF; [`event_digit`] maps it).
    pub event: u8,
    /// E: this packet ends the event. Senders repeat the final packet
    /// (§2.5.1.4, typically three times), so receivers must de-duplicate.
    pub end: bool,
    /// The power level, 0 to 63 as -dBm0 (so 10 is -10 dBm0). Meaningful
    /// for DTMF; 0 otherwise.
    pub volume: u8,
    /// How long the event has lasted so far, in RTP timestamp units from
    /// the packet's timestamp (the event's start).
    pub duration: u16,
}

impl TelephoneEvent {
    /// The payload's size (§2.3).
    pub const LEN: usize = 4;

    /// Parses a payload. The R bit is reserved: senders set it to 0 and
    /// receivers ignore it (§2.3.3), so it is dropped here.
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let &[event, flags, d0, d1] = payload else {
            return Err(DtmfError::Length(payload.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The payload's octets, with R = 0.
    pub fn to_bytes(&self) -> Result<[u8; 4], DtmfError> {
        if self.volume > 63 {
            return Err(DtmfError::Volume(self.volume));
        }
        let [d0, d1] = self.duration.to_be_bytes();
        Ok([self.event, u8::from(self.end) << 7 | self.volume, d0, d1])
    }

    /// The key, if the event is a DTMF key.
    pub fn digit(&self) -> Option<char> {
        event_digit(self.event)
    }
}

/// The event a receiver is following: the one with the newest RTP
/// timestamp (RFC 4733 §2.5.2.1: all packets of one event share the
/// timestamp of its start).
#[derive(Debug, Clone, Copy)]
struct CurrentEvent {
    timestamp: u32,
    digit: char,
    event: u8,
    /// Already handed out, so the repeated end packets are dropped.
    reported: bool,
    /// The longest duration seen, to recognise a long event's next
    /// segment (§2.5.1.3).
    duration: u16,
}

/// Turns a stream of telephone-event packets into key presses, each reported
/// once.
///
/// A key is reported on the first packet of its event with the E bit; the
/// repeats of that packet (same timestamp) are dropped. If every end packet
/// was lost, the key is reported when another event starts, or at
/// [`flush`](EventReceiver::flush). An event is its timestamp: a packet of
/// an event already reported (a repeat, or a straggler) is dropped, and any
/// other timestamp starts a new key even if it is older
/// (senders that splice recorded events, such as SIPp's pcap play, restart
/// the timestamps). Events that are not keys are ignored.
#[derive(Debug, Default)]
pub struct EventReceiver {
    current: Option<CurrentEvent>,
    /// Keys reported and not yet drained.
    digits: VecDeque<char>,
    /// The timestamps of the last events reported.
    reported: VecDeque<u32>,
}

/// Events remembered as reported: far more than can be in flight at once.
const REMEMBERED: usize = 16;

impl EventReceiver {
    /// A receiver that has seen no event.
    pub fn new() -> EventReceiver {
        EventReceiver::default()
    }

    /// Takes one packet: its RTP timestamp and its payload. A payload that
    /// is not a telephone-event is an error and changes nothing.
    pub fn push(&mut self, timestamp: u32, payload: &[u8]) -> Result<(), DtmfError> {
        let packet = TelephoneEvent::parse(payload)?;
        let Some(digit) = packet.digit() else {
            return Ok(());
        };
        let cur = match self.current {
            Some(cur) if cur.timestamp == timestamp => cur,
            // A repeat or straggler of an event already reported.
            _ if self.reported.contains(&timestamp) => return Ok(()),
            Some(cur) => {
                let continues = cur.event == packet.event
                    && cur.duration == u16::MAX
                    && timestamp == cur.timestamp.wrapping_add(u32::from(u16::MAX));
                if !continues && !cur.reported {
                    // The old event's end packets were all lost: a new
                    // event means the old key was released.
                    self.report(cur);
                }
                CurrentEvent {
                    timestamp,
                    digit,
                    event: packet.event,
                    // A long press's next segment is the same press.
                    reported: continues && cur.reported,
                    duration: 0,
                }
            }
            None => CurrentEvent { timestamp, digit, event: packet.event, reported: false, duration: 0 },
        };
        let mut cur = cur;
        cur.duration = cur.duration.max(packet.duration);
        if packet.end && !cur.reported {
            cur.reported = true;
            self.report(cur);
        }
        self.current = Some(cur);
        Ok(())
    }

    fn report(&mut self, event: CurrentEvent) {
        self.digits.push_back(event.digit);
        if self.reported.len() == REMEMBERED {
            self.reported.pop_front();
        }
        self.reported.push_back(event.timestamp);
    }

    /// Reports the key being pressed if its end never came: for the end of
    /// the stream, or when the owner's timer says the sender has gone quiet.
    pub fn flush(&mut self) {
        if let Some(cur) = self.current.as_mut()
            && !cur.reported
        {
            cur.reported = true;
            let cur = *cur;
            self.report(cur);
        }
    }

    /// The next reported key, oldest first.
    pub fn poll_digit(&mut self) -> Option<char> {
        self.digits.pop_front()
    }
}

/// The sample rate the detector runs at: G.711's.
pub const SAMPLE_RATE: u32 = 8000;

/// Samples per Goertzel block: 102 at 8 kHz is 12.75 ms. Long enough that
/// the Dirichlet response of the closest neighbouring frequency (697 Hz in
/// the 770 Hz filter, 73 Hz apart) is about -22 dB, short enough that any
/// 40 ms tone fills two whole blocks whatever its alignment.
pub const BLOCK: usize = 102;

/// Q.23's low (row) group, Hz.
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Q.23's high (column) group, Hz.
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// The keypad, row by column (Q.23 Figure 1).
const KEYPAD: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];

/// The weakest tone accepted, as a sine's peak amplitude on the 16-bit
/// scale: 250 is about -39 dBm0 (A-law's 0 dBm0 sine peaks near 22,500),
/// below Q.24's usual -25 to -30 dBm0 sensitivity with room for line loss.
const MIN_AMPLITUDE: f32 = 250.0;
/// Twist, as power ratios: the high tone may be up to 4 dB stronger than
/// the low ("reverse" twist) and up to 8 dB weaker ("normal" twist, since
/// lines lose more at high frequencies), the usual Q.24 limits.
const MAX_HIGH_OVER_LOW: f32 = 2.512;
const MAX_LOW_OVER_HIGH: f32 = 6.310;
/// The strongest frequency of each group must beat the others of its group
/// by 8 dB, rejecting chords and broadband sound.
const RELATIVE_PEAK: f32 = 6.310;
/// The share of the block's energy the two tones must hold: 1 for a clean
/// pair, lower with noise or speech. Speech rarely puts 70% of its energy in
/// one row and one column frequency.
const MIN_TONE_SHARE: f32 = 0.7;
/// Blocks in a row with the same key before it counts: two, so at least
/// about 22 ms of tone (a whole block and a block 70% full), and every tone
/// of 40 ms or more (Q.24's minimum to accept).
const MIN_ON_BLOCKS: u32 = 2;
/// Blocks in a row without a key before the next press may count: two
/// (about 25 ms), so a dropout of one block inside a press is bridged and a
/// 40 ms pause (Q.24's minimum) separates presses.
const MIN_OFF_BLOCKS: u32 = 2;

/// The filter coefficient 2·cos(2πf/fs) of one Goertzel frequency. The
/// frequency need not fall on a DFT bin: Goertzel is evaluated at exactly
/// the Q.23 frequency.
fn coefficient(freq: f32) -> f32 {
    2.0 * (2.0 * std::f32::consts::PI * freq / SAMPLE_RATE as f32).cos()
}

/// The power |X(f)|² of one block at one frequency (Goertzel's recurrence:
/// one multiply-add per sample per frequency). A sine of amplitude `a` at
/// `f` gives (a·N/2)².
fn goertzel(block: &[f32], coeff: f32) -> f32 {
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in block {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The index of the largest power, the largest, and whether every other is
/// below it by `RELATIVE_PEAK`.
fn peak(powers: &[f32; 4]) -> (usize, f32, bool) {
    let mut best = 0;
    for i in 1..4 {
        if powers[i] > powers[best] {
            best = i;
        }
    }
    let p = powers[best];
    let clear = (0..4).all(|i| i == best || powers[i] * RELATIVE_PEAK < p);
    (best, p, clear)
}

/// The key a whole block holds, if it passes every check.
fn detect_block(block: &[f32; BLOCK]) -> Option<char> {
    let energy: f32 = block.iter().map(|x| x * x).sum();
    let n = BLOCK as f32;
    let min_power = (MIN_AMPLITUDE * n / 2.0).powi(2);
    let rows = ROWS.map(|f| goertzel(block, coefficient(f)));
    let cols = COLS.map(|f| goertzel(block, coefficient(f)));
    let (r, low, row_clear) = peak(&rows);
    let (c, high, col_clear) = peak(&cols);
    let loud = low >= min_power && high >= min_power;
    let twist_ok = high <= low * MAX_HIGH_OVER_LOW && low <= high * MAX_LOW_OVER_HIGH;
    // Σx² of a sine of amplitude a is a²N/2, its Goertzel power (aN/2)²,
    // so the power over energy·N/2 is each tone's share of the energy.
    let share = (low + high) / (energy * n / 2.0);
    (loud && twist_ok && row_clear && col_clear && share >= MIN_TONE_SHARE).then_some(KEYPAD[r][c])
}

/// In-band DTMF detection on 8 kHz linear PCM (ITU-T Q.23 tones, Q.24
/// timing), one report per key press.
///
/// The audio is cut into blocks of [`BLOCK`] samples; each block is tested
/// at the eight Q.23 frequencies with Goertzel and passes if one row and one
/// column tone stand out (level, twist, relative peak, share of the energy).
/// A key is reported after two passing blocks of it in a row (about 22 ms),
/// and no other until two blocks without a key (about 25 ms) have passed.
#[derive(Debug)]
pub struct ToneDetector {
    /// The block being filled, as f32 so Goertzel does not convert twice.
    block: [f32; BLOCK],
    filled: usize,
    /// The key of the last blocks and how many blocks in a row had it.
    run_key: Option<char>,
    run: u32,
    /// Blocks in a row with no key.
    quiet: u32,
    /// Whether a key may be reported: false from a report until a pause.
    armed: bool,
    digits: VecDeque<char>,
}

impl Default for ToneDetector {
    fn default() -> Self {
        ToneDetector {
            block: [0.0; BLOCK],
            filled: 0,
            run_key: None,
            run: 0,
            quiet: 0,
            armed: true,
            digits: VecDeque::new(),
        }
    }
}

impl ToneDetector {
    /// A detector that has heard nothing.
    pub fn new() -> ToneDetector {
        ToneDetector::default()
    }

    /// Takes samples of any count; a partial block waits for the next call.
    pub fn push(&mut self, pcm: &[i16]) {
        for &s in pcm {
            self.block[self.filled] = f32::from(s);
            self.filled += 1;
            if self.filled == BLOCK {
                self.filled = 0;
                let key = detect_block(&self.block);
                self.step(key);
            }
        }
    }

    fn step(&mut self, key: Option<char>) {
        match key {
            None => {
                self.run_key = None;
                self.run = 0;
                self.quiet = self.quiet.saturating_add(1);
                if self.quiet >= MIN_OFF_BLOCKS {
                    self.armed = true;
                }
            }
            Some(k) => {
                self.quiet = 0;
                if self.run_key == Some(k) {
                    self.run = self.run.saturating_add(1);
                } else {
                    self.run_key = Some(k);
                    self.run = 1;
                }
                if self.armed && self.run >= MIN_ON_BLOCKS {
                    self.armed = false;
                    self.digits.push_back(k);
                }
            }
        }
    }

    /// The next detected key, oldest first.
    pub fn poll_digit(&mut self) -> Option<char> {
        self.digits.pop_front()
    }
}

#[cfg(test)]
mod tests {

    /// Two recorded presses spliced into one stream (SIPp plays one pcap per
    /// key) start their timestamps afresh: the second, older-stamped, is
    /// still a key; the first's repeated end packets are still dropped.
    #[test]
    fn a_spliced_event_with_an_older_timestamp_is_a_new_key() {
        let packet = |event: u8, end: bool, duration: u16| {
            TelephoneEvent { event, end, volume: 10, duration }.to_bytes().unwrap()
        };
        let mut rx = EventReceiver::new();
        for (ts, p) in [
            (23_200, packet(2, false, 0)),
            (23_200, packet(2, true, 800)),
            (23_200, packet(2, true, 800)),
            (17_632, packet(0, false, 0)),
            (17_632, packet(0, true, 800)),
            (23_200, packet(2, true, 800)),
            (17_632, packet(0, true, 800)),
        ] {
            rx.push(ts, &p).unwrap();
        }
        let keys: Vec<char> = std::iter::from_fn(|| rx.poll_digit()).collect();
        assert_eq!(keys, vec!['2', '0']);
    }
    use super::*;
    use crate::phone::g711::Law;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::process::Command;

    fn drain_events(rx: &mut EventReceiver) -> String {
        std::iter::from_fn(|| rx.poll_digit()).collect()
    }

    fn drain_tones(det: &mut ToneDetector) -> String {
        std::iter::from_fn(|| det.poll_digit()).collect()
    }

    fn ev(event: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent { event, end, volume: 10, duration }.to_bytes().unwrap()
    }

    #[test]
    fn phone_dtmf_payload_parse_and_build() {
        // RFC 4733 §2.3: event 5, E set, R set (ignored), volume 10, 800.
        let bytes = [5, 0b1100_1010, 0x03, 0x20];
        let e = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(e, TelephoneEvent { event: 5, end: true, volume: 10, duration: 800 });
        assert_eq!(e.digit(), Some('5'));
        assert_eq!(e.to_bytes().unwrap(), [5, 0b1000_1010, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(DtmfError::Length(3)));
        assert_eq!(TelephoneEvent::parse(&[0; 5]), Err(DtmfError::Length(5)));
        let loud = TelephoneEvent { volume: 64, ..e };
        assert_eq!(loud.to_bytes(), Err(DtmfError::Volume(64)));
        for event in 0..=255u8 {
            let e = TelephoneEvent { event, end: event % 2 == 0, volume: event % 64, duration: u16::from(event) * 257 };
            assert_eq!(TelephoneEvent::parse(&e.to_bytes().unwrap()), Ok(e));
            match event_digit(event) {
                Some(d) => assert_eq!(digit_event(d), Some(event)),
                None => assert!(event >= 16),
            }
        }
        assert_eq!(event_digit(10), Some('*'));
        assert_eq!(event_digit(11), Some('#'));
        assert_eq!(event_digit(15), Some('D'));
        assert_eq!(event_digit(16), None);
        assert_eq!(digit_event('b'), Some(13));
        assert_eq!(digit_event('x'), None);
    }

    #[test]
    fn phone_dtmf_events_report_each_key_once() {
        let mut rx = EventReceiver::new();
        // Key 1 at ts 1000: updates every 20 ms, end sent three times.
        for d in [160, 320, 480] {
            rx.push(1000, &ev(1, false, d)).unwrap();
        }
        assert_eq!(drain_events(&mut rx), "");
        for _ in 0..3 {
            rx.push(1000, &ev(1, true, 640)).unwrap();
        }
        assert_eq!(drain_events(&mut rx), "1");
        // '#' then '#' again: the same key twice is two events.
        rx.push(5000, &ev(11, true, 400)).unwrap();
        rx.push(5000, &ev(11, true, 400)).unwrap();
        rx.push(9000, &ev(11, false, 160)).unwrap();
        rx.push(9000, &ev(11, true, 400)).unwrap();
        assert_eq!(drain_events(&mut rx), "##");
        // A straggler of the first event, reordered: dropped.
        rx.push(1000, &ev(1, true, 640)).unwrap();
        assert_eq!(drain_events(&mut rx), "");
    }

    #[test]
    fn phone_dtmf_events_lost_end_reported_on_next_event() {
        let mut rx = EventReceiver::new();
        rx.push(100, &ev(4, false, 160)).unwrap();
        rx.push(100, &ev(4, false, 320)).unwrap();
        // Every end packet of 4 was lost; 2 starts and ends at once.
        rx.push(2000, &ev(2, true, 400)).unwrap();
        assert_eq!(drain_events(&mut rx), "42");
        // Lost end, then the stream stops: flush reports it, once.
        rx.push(4000, &ev(7, false, 160)).unwrap();
        rx.flush();
        rx.flush();
        rx.push(4000, &ev(7, true, 480)).unwrap();
        assert_eq!(drain_events(&mut rx), "7");
    }

    #[test]
    fn phone_dtmf_events_ignore_other_events_and_bad_payloads() {
        let mut rx = EventReceiver::new();
        rx.push(10, &ev(16, true, 400)).unwrap(); // flash
        rx.push(20, &ev(36, true, 400)).unwrap(); // fax CNG
        assert_eq!(rx.push(30, &[9, 0x80]), Err(DtmfError::Length(2)));
        assert_eq!(drain_events(&mut rx), "");
        rx.push(40, &ev(9, true, 400)).unwrap();
        assert_eq!(drain_events(&mut rx), "9");
    }

    #[test]
    fn phone_dtmf_events_timestamp_wraps() {
        let mut rx = EventReceiver::new();
        rx.push(u32::MAX - 100, &ev(3, true, 400)).unwrap();
        rx.push(200, &ev(6, true, 400)).unwrap();
        // Older than 200 across the wrap: a straggler.
        rx.push(u32::MAX - 100, &ev(3, true, 400)).unwrap();
        assert_eq!(drain_events(&mut rx), "36");
    }

    #[test]
    fn phone_dtmf_events_long_press_segments_are_one_key() {
        // RFC 4733 §2.5.1.3: past 65535 units the sender starts a new
        // segment at the old timestamp + 65535.
        let mut rx = EventReceiver::new();
        rx.push(1000, &ev(0, false, 40_000)).unwrap();
        rx.push(1000, &ev(0, false, u16::MAX)).unwrap();
        rx.push(1000 + 65_535, &ev(0, false, 800)).unwrap();
        rx.push(1000 + 65_535, &ev(0, true, 1600)).unwrap();
        assert_eq!(drain_events(&mut rx), "0");
    }

    /// A DTMF pair at `amplitude` per tone, `ms` long, starting at phase 0.
    fn tone(key: char, ms: usize, amplitude: f32) -> Vec<i16> {
        let (r, c) = (0..16).map(|i| (i / 4, i % 4)).find(|&(r, c)| KEYPAD[r][c] == key).expect("a key");
        let n = ms * SAMPLE_RATE as usize / 1000;
        let w = |f: f32| 2.0 * std::f32::consts::PI * f / SAMPLE_RATE as f32;
        (0..n)
            .map(|i| {
                let t = i as f32;
                let x = amplitude * ((w(ROWS[r]) * t).sin() + (w(COLS[c]) * t).sin());
                x.round().clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn silence(ms: usize) -> Vec<i16> {
        vec![0; ms * SAMPLE_RATE as usize / 1000]
    }

    fn keys(keys: &str, on_ms: usize, off_ms: usize, amplitude: f32) -> Vec<i16> {
        let mut pcm = silence(off_ms);
        for k in keys.chars() {
            pcm.extend(tone(k, on_ms, amplitude));
            pcm.extend(silence(off_ms));
        }
        pcm
    }

    fn detect(pcm: &[i16]) -> String {
        let mut det = ToneDetector::new();
        // Odd-sized pushes, as RTP frames and resampler output are.
        for chunk in pcm.chunks(77) {
            det.push(chunk);
        }
        drain_tones(&mut det)
    }

    fn add_noise(pcm: &mut [i16], amplitude: f32, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        for s in pcm {
            let n = rng.random_range(-amplitude..=amplitude);
            *s = (f32::from(*s) + n).round().clamp(-32768.0, 32767.0) as i16;
        }
    }

    #[test]
    fn phone_dtmf_tones_all_keys() {
        let all = "123A456B789C*0#D";
        assert_eq!(detect(&keys(all, 70, 60, 5000.0)), all);
        // Quiet (about -30 dBm0 per tone) and loud.
        assert_eq!(detect(&keys(all, 70, 60, 700.0)), all);
        assert_eq!(detect(&keys(all, 70, 60, 16000.0)), all);
    }

    #[test]
    fn phone_dtmf_tones_timing() {
        // Q.24: 40 ms tones and 40 ms pauses count, whatever the alignment
        // to the detector's blocks.
        for lead in 0..BLOCK {
            let mut pcm = vec![0i16; lead];
            pcm.extend(keys("5555", 40, 40, 4000.0));
            assert_eq!(detect(&pcm), "5555", "lead {lead}");
        }
        // Short blips do not.
        for lead in 0..BLOCK {
            let mut pcm = vec![0i16; lead];
            pcm.extend(keys("1234", 15, 60, 4000.0));
            assert_eq!(detect(&pcm), "", "lead {lead}");
        }
        // A long press is one key; a 5 ms dropout inside it is bridged.
        let mut pcm = tone('8', 600, 4000.0);
        pcm.extend(silence(5));
        pcm.extend(tone('8', 300, 4000.0));
        assert_eq!(detect(&pcm), "8");
    }

    #[test]
    fn phone_dtmf_tones_off_frequency_and_twist() {
        // Q.24 accepts tones up to 1.5% off; twist within 4/8 dB.
        let w = |f: f32| 2.0 * std::f32::consts::PI * f / SAMPLE_RATE as f32;
        let pair = |low: f32, high: f32, a_low: f32, a_high: f32| -> Vec<i16> {
            let mut pcm = silence(40);
            pcm.extend((0..640).map(|i| {
                let t = i as f32;
                (a_low * (w(low) * t).sin() + a_high * (w(high) * t).sin()) as i16
            }));
            pcm.extend(silence(40));
            pcm
        };
        assert_eq!(detect(&pair(697.0 * 1.015, 1209.0 * 0.985, 4000.0, 4000.0)), "1");
        assert_eq!(detect(&pair(941.0 * 0.985, 1633.0 * 1.015, 4000.0, 4000.0)), "D");
        // 6 dB normal twist and 3 dB reverse twist pass; 12 dB fails.
        assert_eq!(detect(&pair(852.0, 1477.0, 8000.0, 4000.0)), "9");
        assert_eq!(detect(&pair(852.0, 1477.0, 4000.0, 5650.0)), "9");
        assert_eq!(detect(&pair(852.0, 1477.0, 8000.0, 2000.0)), "");
    }

    #[test]
    fn phone_dtmf_tones_in_noise() {
        // White noise about 20 dB below the tones.
        let mut pcm = keys("0815#", 60, 60, 4000.0);
        add_noise(&mut pcm, 700.0, 7);
        assert_eq!(detect(&pcm), "0815#");
    }

    #[test]
    fn phone_dtmf_tones_reject_single_tones_chords_and_noise() {
        let w = |f: f32| 2.0 * std::f32::consts::PI * f / SAMPLE_RATE as f32;
        let sines = |freqs: &[f32]| -> Vec<i16> {
            (0..8000)
                .map(|i| {
                    let t = i as f32;
                    freqs.iter().map(|&f| 4000.0 * (w(f) * t).sin()).sum::<f32>() as i16
                })
                .collect()
        };
        for f in ROWS.iter().chain(&COLS) {
            assert_eq!(detect(&sines(&[*f])), "", "{f} Hz alone");
        }
        // Two row tones and one column: not a key (relative peak).
        assert_eq!(detect(&sines(&[697.0, 770.0, 1336.0])), "");
        // Dial tone (350 + 440 Hz) and a 1 kHz test tone.
        assert_eq!(detect(&sines(&[350.0, 440.0])), "");
        assert_eq!(detect(&sines(&[1000.0])), "");
        let mut noise = vec![0i16; 16000];
        add_noise(&mut noise, 8000.0, 3);
        assert_eq!(detect(&noise), "");
        // Speech-like: a 120 Hz glottal pulse train, its harmonics shaped
        // by two formants that glide through the DTMF bands.
        let voice: Vec<i16> = (0..16000)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                let f1 = 500.0 + 400.0 * (t * 3.0).sin();
                let f2 = 1400.0 + 300.0 * (t * 2.0).cos();
                let x: f32 = (1..30)
                    .map(|h| {
                        let f = 120.0 * h as f32;
                        let gain = (-((f - f1) / 150.0).powi(2)).exp() + 0.7 * (-((f - f2) / 200.0).powi(2)).exp();
                        gain * (2.0 * std::f32::consts::PI * f * t).sin()
                    })
                    .sum();
                (3000.0 * x) as i16
            })
            .collect();
        assert_eq!(detect(&voice), "");
    }

    /// Runs a tool that CI installs (`.ci/run`); missing, the test fails.
    fn tool(name: &str, args: &[&str]) {
        let out = Command::new(name)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {name} ({e}): install it (apt-get install {name}) for this test"));
        assert!(out.status.success(), "{name} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn read_raw(path: &std::path::Path) -> Vec<i16> {
        std::fs::read(path).expect("raw audio").chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
    }

    /// Key presses made by sox: each key 100 ms then 60 ms of silence,
    /// the two sines mixed, 6 dB down.
    fn sox_keys(dir: &std::path::Path, keys: &str) -> Vec<i16> {
        let mut pcm = Vec::new();
        for (i, key) in keys.chars().enumerate() {
            let (r, c) = (0..16).map(|i| (i / 4, i % 4)).find(|&(r, c)| KEYPAD[r][c] == key).expect("a key");
            let path = dir.join(format!("key{i}.raw"));
            let (low, high) = (ROWS[r].to_string(), COLS[c].to_string());
            tool(
                "sox",
                &[
                    "-n",
                    "-r",
                    "8000",
                    "-c",
                    "1",
                    "-e",
                    "signed",
                    "-b",
                    "16",
                    "-L",
                    "-t",
                    "raw",
                    path.to_str().unwrap(),
                    "synth",
                    "0.1",
                    "sine",
                    &low,
                    "sine",
                    "mix",
                    &high,
                    "gain",
                    "-6",
                    "pad",
                    "0",
                    "0.06",
                ],
            );
            pcm.extend(read_raw(&path));
        }
        pcm
    }

    #[test]
    fn phone_dtmf_tones_made_by_sox() {
        let dir = tempfile::tempdir().unwrap();
        let pcm = sox_keys(dir.path(), "147*2580369#ABCD");
        assert_eq!(detect(&pcm), "147*2580369#ABCD");
    }

    /// How in-band digits reach us: encoded to A-law (or µ-law) by the far
    /// gateway, decoded here.
    #[test]
    fn phone_dtmf_tones_through_g711() {
        let dir = tempfile::tempdir().unwrap();
        let pcm = sox_keys(dir.path(), "2468*#");
        for law in [Law::A, Law::Mu] {
            let decoded = law.decode(&law.encode(&pcm));
            assert_eq!(detect(&decoded), "2468*#", "{law:?}");
        }
        // And quiet keys with noise, through A-law.
        let mut quiet = keys("13579", 50, 50, 800.0);
        add_noise(&mut quiet, 100.0, 11);
        assert_eq!(detect(&Law::A.decode(&Law::A.encode(&quiet))), "13579");
    }

    /// Real speech (espeak-ng, resampled to 8 kHz by sox): no digits.
    #[test]
    fn phone_dtmf_tones_reject_speech() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("speech.wav");
        let raw = dir.path().join("speech.raw");
        tool(
            "espeak-ng",
            &[
                "-w",
                wav.to_str().unwrap(),
                "Hello, you have reached the helpline. Please press one for an ambulance, \
                 two for a doctor, or stay on the line. Seven eight nine, zero.",
            ],
        );
        tool(
            "sox",
            &[
                wav.to_str().unwrap(),
                "-r",
                "8000",
                "-c",
                "1",
                "-e",
                "signed",
                "-b",
                "16",
                "-L",
                "-t",
                "raw",
                raw.to_str().unwrap(),
            ],
        );
        let speech = read_raw(&raw);
        assert!(speech.len() > 8000 * 3, "espeak-ng said too little");
        assert_eq!(detect(&speech), "");
        assert_eq!(detect(&Law::A.decode(&Law::A.encode(&speech))), "");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_payload_parses_only_at_four_octets(payload in proptest::collection::vec(any::<u8>(), 0..12)) {
                let parsed = TelephoneEvent::parse(&payload);
                prop_assert_eq!(parsed.is_ok(), payload.len() == TelephoneEvent::LEN);
                if let Err(e) = parsed {
                    prop_assert_eq!(e, DtmfError::Length(payload.len()));
                }
            }

            /// Parsing then encoding gives the octets back with R (reserved,
            /// RFC 4733 §2.3.3) cleared.
            #[test]
            fn octets_round_trip_but_the_reserved_bit(octets in any::<[u8; 4]>()) {
                let e = TelephoneEvent::parse(&octets).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(e.volume <= 63);
                prop_assert_eq!(e.to_bytes(), Ok([octets[0], octets[1] & !0x40, octets[2], octets[3]]));
            }

            #[test]
            fn events_round_trip_and_loud_ones_are_refused(
                event in any::<u8>(),
                end in any::<bool>(),
                volume in any::<u8>(),
                duration in any::<u16>(),
            ) {
                let e = TelephoneEvent { event, end, volume, duration };
                match e.to_bytes() {
                    Ok(octets) => {
                        prop_assert!(volume <= 63);
                        prop_assert_eq!(TelephoneEvent::parse(&octets), Ok(e));
                    }
                    Err(err) => {
                        prop_assert!(volume > 63);
                        prop_assert_eq!(err, DtmfError::Volume(volume));
                    }
                }
                // A key's event code maps back to the key, and only keys map.
                match event_digit(event) {
                    Some(key) => prop_assert_eq!(digit_event(key), Some(event)),
                    None => prop_assert!(event > 15),
                }
            }
        }
    }
}
