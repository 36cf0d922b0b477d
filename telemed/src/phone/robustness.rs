//! Random input to every parser and state machine of the phone leg: none
//! may panic, and the jitter buffer keeps its bounds. Seeded, so a failure
//! reproduces; each case runs many seeds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::dtmf::{EventReceiver, TelephoneEvent, ToneDetector};
use super::g711::Law;
use super::jitter::{Config, FRAME_SAMPLES, FrameKind, JitterBuffer, Pushed};
use super::rtp;

fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = rng.random_range(0..=max);
    (0..len).map(|_| rng.random()).collect()
}

#[test]
fn phone_random_telephone_events() {
    let mut rng = StdRng::seed_from_u64(4733);
    let mut rx = EventReceiver::new();
    let mut digits = 0usize;
    for i in 0..50_000u32 {
        // Mostly well-formed payloads (so the receiver's state is
        // exercised), some of any length.
        let payload = if rng.random_bool(0.8) {
            let mut p: [u8; 4] = rng.random();
            p[0] %= 20;
            p.to_vec()
        } else {
            bytes(&mut rng, 8)
        };
        let parsed = TelephoneEvent::parse(&payload);
        assert_eq!(parsed.is_ok(), payload.len() == 4);
        if let Ok(e) = parsed {
            // Building what was parsed gives the payload back, R cleared.
            let mut expect = payload.clone();
            expect[1] &= !0x40;
            assert_eq!(e.to_bytes().ok(), Some([expect[0], expect[1], expect[2], expect[3]]));
        }
        // Timestamps near each other, with some far jumps and wraps.
        let ts = if rng.random_bool(0.05) { rng.random() } else { (i / 8).wrapping_mul(800) };
        assert_eq!(rx.push(ts, &payload).is_ok(), payload.len() == 4);
        if rng.random_bool(0.01) {
            rx.flush();
        }
        while rx.poll_digit().is_some() {
            digits += 1;
        }
    }
    // One report per event at most: far fewer digits than packets.
    assert!(digits > 0 && digits < 50_000 / 2, "{digits}");
}

#[test]
fn phone_random_rtp_datagrams() {
    let mut rng = StdRng::seed_from_u64(3550);
    let good = rtp::build(
        &rtp::Header {
            payload_type: 8,
            sequence_number: 1,
            timestamp: 160,
            ssrc: 7,
            csrc: vec![1, 2],
            ..rtp::Header::default()
        },
        &[0xD5; 160],
    )
    .unwrap_or_default();
    assert!(!good.is_empty());
    for _ in 0..50_000 {
        let datagram = match rng.random_range(0..3) {
            // Noise.
            0 => bytes(&mut rng, 64),
            // Noise that looks like RTP version 2, with any flags.
            1 => {
                let mut d = bytes(&mut rng, 64);
                if let Some(b) = d.first_mut() {
                    *b = 0x80 | (*b & 0x3F);
                }
                d
            }
            // A valid packet with a few octets flipped and a random cut.
            _ => {
                let mut d = good.clone();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..d.len());
                    d[i] = rng.random();
                }
                d.truncate(rng.random_range(0..=d.len()));
                d
            }
        };
        if let Ok(p) = rtp::parse(&datagram) {
            assert_eq!(p.header.version, 2);
            assert!(p.payload.len() <= datagram.len());
        }
    }
}

#[test]
fn phone_random_audio_into_the_tone_detector_and_g711() {
    let mut rng = StdRng::seed_from_u64(711);
    let mut det = ToneDetector::new();
    for _ in 0..200 {
        let codes = bytes(&mut rng, 400);
        for law in [Law::A, Law::Mu] {
            let pcm = law.decode(&codes);
            assert_eq!(law.encode(&pcm).len(), codes.len());
            det.push(&pcm);
        }
        let extreme: Vec<i16> =
            (0..rng.random_range(0..300)).map(|_| if rng.random() { i16::MAX } else { i16::MIN }).collect();
        det.push(&extreme);
    }
    // Random codes are noise: no keys.
    assert_eq!(det.poll_digit(), None);
}

#[test]
fn phone_random_jitter_buffer_sequences() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = Config {
            target_depth: rng.random_range(0..5),
            max_depth: rng.random_range(0..10),
            conceal_frames: rng.random_range(0..5),
        };
        let law = if rng.random() { Law::A } else { Law::Mu };
        let mut jb = JitterBuffer::new(law, config);
        let max_depth = config.max_depth.max(config.target_depth.max(1));
        // A stream with loss, reordering, duplicates, jumps and junk.
        let mut seq: u16 = rng.random();
        let mut ts: u32 = rng.random();
        let mut pushed = 0u64;
        for _ in 0..5_000 {
            match rng.random_range(0..100) {
                0..=59 => {
                    let (s, t) = match rng.random_range(0..20) {
                        0 => (rng.random(), rng.random()),
                        1 => (seq.wrapping_sub(rng.random_range(0..40)), ts),
                        2 => (seq, ts.wrapping_add(rng.random_range(0..200_000))),
                        _ => (seq, ts),
                    };
                    let len = if rng.random_bool(0.02) { rng.random_range(0..400) } else { FRAME_SAMPLES };
                    let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    let r = jb.push(s, t, &payload);
                    assert_eq!(r == Pushed::Malformed, len != FRAME_SAMPLES);
                    if r != Pushed::Malformed {
                        pushed += 1;
                    }
                    if rng.random_bool(0.9) {
                        seq = seq.wrapping_add(1);
                        ts = ts.wrapping_add(160);
                    }
                    if rng.random_bool(0.01) {
                        // The sender's silence.
                        ts = ts.wrapping_add(rng.random_range(0..80_000));
                    }
                }
                60..=97 => {
                    let frame = jb.pop();
                    if frame.kind == FrameKind::Silence {
                        assert!(frame.pcm.iter().all(|&s| s == 0));
                    }
                }
                _ => jb.reset(),
            }
            assert!(jb.depth() <= max_depth, "seed {seed}: depth {}", jb.depth());
        }
        // Every packet is counted once: played, dropped (duplicate, late,
        // overflow, flushed by a reset), or still queued.
        let s = jb.stats();
        assert_eq!(s.received, pushed);
        let accounted = s.played + s.duplicate + s.late + s.overflow + s.flushed + jb.depth() as u64;
        assert_eq!(accounted, s.received, "seed {seed}: {s:?}");
        assert!(s.resets > 0 && s.played > 0, "seed {seed}: {s:?}");
        assert_eq!(s.concealed > 0, config.conceal_frames > 0, "seed {seed}: {s:?}");
    }
}
