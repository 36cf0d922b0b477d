//! CPU per bridged phone line in the mixer ([`telemed::mixer`]): each
//! 20 ms the line's voice is encoded to Opus once (with its 16 kHz tap) and
//! what it hears, one or more browsers' Opus at 48 kHz, is decoded to 8 kHz
//! and mixed, as `Line::speak` and `Line::hear` do. The SFU's forwarding
//! and the G.711 leg are not in it (the relay's cost is `relay_load`).
//!
//! `cargo run --release -p telemed --example line_cost -- [SPEAKERS] [SECONDS]`

use std::time::Instant;

use telemed::mixer::{Ear, FRAME, InletConfig, OPUS_FRAME_TICKS, Voice};

fn main() {
    let mut args = std::env::args().skip(1);
    let speakers: usize = args.next().map_or(1, |a| a.parse().expect("SPEAKERS is a number"));
    let seconds: usize = args.next().map_or(60, |a| a.parse().expect("SECONDS is a number"));
    let frames = seconds * 50;

    // A browser's speech-like signal: two tones with a syllable-rate envelope,
    // encoded as Chromium does (48 kHz, 20 ms), once, before timing.
    let mut encoder = opus_rs::OpusEncoder::new(48_000, 1, opus_rs::Application::Voip).unwrap();
    let mut out = vec![0u8; 1500];
    let browser: Vec<Vec<u8>> = (0..250)
        .map(|n| {
            let pcm: Vec<f32> = (0..960)
                .map(|i| {
                    let t = (n * 960 + i) as f32 / 48_000.0;
                    let envelope = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
                    envelope
                        * 0.2
                        * ((2.0 * std::f32::consts::PI * 220.0 * t).sin()
                            + (2.0 * std::f32::consts::PI * 1_100.0 * t).sin())
                })
                .collect();
            let len = encoder.encode(&pcm, 960, &mut out).unwrap();
            out[..len].to_vec()
        })
        .collect();
    let caller: Vec<[i16; FRAME]> = (0..250)
        .map(|n| {
            let mut f = [0i16; FRAME];
            for (i, s) in f.iter_mut().enumerate() {
                let t = (n * FRAME + i) as f32 / 8_000.0;
                *s = (8_000.0 * (2.0 * std::f32::consts::PI * 300.0 * t).sin()) as i16;
            }
            f
        })
        .collect();

    let mut voice = Voice::new(0, 0);
    let mut ear = Ear::new(InletConfig::default());
    ear.set_live(0..speakers, false);
    let mut bytes = 0usize;
    let mut energy = 0f64;
    let started = Instant::now();
    for n in 0..frames {
        for slot in 0..speakers {
            ear.push(slot, n as u32 * OPUS_FRAME_TICKS, &browser[n % browser.len()]);
        }
        bytes += voice.encode(&caller[n % caller.len()]).unwrap().payload.len();
        let mix = ear.mix().unwrap();
        energy += mix.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_frame = elapsed / frames as f64;
    println!(
        "{speakers} speaker(s), {seconds} s of audio in {elapsed:.3} s: {:.1} µs per 20 ms frame, {:.2}% of a core per line",
        per_frame * 1e6,
        per_frame / 0.020 * 100.0
    );
    println!(
        "voice {:.1} kb/s; mix RMS {:.0}; {:?}",
        bytes as f64 * 8.0 / seconds as f64 / 1000.0,
        (energy / (frames * FRAME) as f64).sqrt(),
        ear.stats()
    );
}
