//! Benchmark: real-time factor of whisper on short clinical utterances, and the caption delay
//! of the live service (end of speech to final caption, audio fed in real time).
//!
//! ```text
//! cargo run --release -p transcription --example bench -- MODEL.bin [THREADS]
//! ```
//! Needs espeak-ng and sox (the speech) and a ggml model (`careline model import-ct2`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use transcription::{Engine, Language, Options, Role, Transcriber, TranscriberConfig, wer};

const PHRASES: [&str; 5] = [
    "the patient has a fever and a headache since two days",
    "she has been coughing at night and feels short of breath",
    "please take one tablet of paracetamol after every meal",
    "his blood pressure is high and he feels dizzy in the morning",
    "the child has stomach pain and vomiting since yesterday",
];

fn speak(text: &str) -> Vec<f32> {
    let dir = std::env::temp_dir();
    let raw = dir.join(format!("careline-bench-{}.wav", std::process::id()));
    let wav = dir.join(format!("careline-bench-{}-16k.wav", std::process::id()));
    let ok = Command::new("espeak-ng")
        .arg("-v")
        .arg("en-us")
        .arg("-w")
        .arg(&raw)
        .arg(text)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("sox").arg(&raw).args(["-r", "16000", "-c", "1"]).arg(&wav).status().is_ok_and(|s| s.success());
    assert!(ok, "espeak-ng and sox are needed");
    let pcm = transcription::audio::read_wav(&wav).unwrap();
    let _ = std::fs::remove_file(raw);
    let _ = std::fs::remove_file(wav);
    pcm
}

fn main() {
    let mut args = std::env::args().skip(1);
    let model = PathBuf::from(args.next().expect("usage: bench MODEL.bin [THREADS]"));
    let threads: usize = args.next().map_or(2, |t| t.parse().expect("THREADS is a number"));
    let engine = Engine::load(&model).expect("loading the model");
    let clips: Vec<Vec<f32>> = PHRASES.iter().map(|p| speak(p)).collect();
    let audio_s: f64 = clips.iter().map(|c| c.len() as f64 / 16_000.0).sum();
    println!("model {}, {threads} threads, {} phrases, {audio_s:.1} s of speech", model.display(), PHRASES.len());

    // 1. Real-time factor, per utterance, with the live options and with whisper's defaults
    //    (full 30 s context, temperature fallback).
    let mut session = engine.session().unwrap();
    session.transcribe(&clips[0], &Options::live(Language::En, threads)).unwrap(); // warm-up
    for (name, options) in [
        ("live (fitted context, greedy, one segment)", Options::live(Language::En, threads)),
        ("file (full 30 s context, fallback)", Options { threads, ..Options::default() }),
    ] {
        let mut compute = Duration::ZERO;
        let mut pairs = Vec::new();
        for (clip, phrase) in clips.iter().zip(PHRASES) {
            let started = Instant::now();
            let t = session.transcribe(clip, &options).unwrap();
            compute += started.elapsed();
            pairs.push((phrase, t.text));
        }
        let w = wer::corpus_wer(pairs.iter().map(|(r, h)| (*r, h.as_str())));
        println!(
            "{name}: {:.2} s for {audio_s:.1} s, real-time factor {:.3}, WER {w:.3}",
            compute.as_secs_f64(),
            compute.as_secs_f64() / audio_s
        );
    }

    // 2. Caption delay through the service, audio pushed in real time in 20 ms frames: from
    //    the push of a phrase's last voiced sample to its final caption. Includes the VAD's
    //    hangover (500 ms of silence before an utterance ends).
    let config = TranscriberConfig {
        workers: 1,
        options: Options::live(Language::En, threads),
        partial_every_ms: None,
        ..TranscriberConfig::default()
    };
    let (transcriber, mut captions) = Transcriber::start(&engine, config).unwrap();
    let (arrived_tx, arrived_rx) = mpsc::channel();
    let collector = std::thread::spawn(move || {
        while let Some(c) = captions.blocking_recv() {
            let _ = arrived_tx.send((Instant::now(), c));
        }
    });
    let tap = transcriber.tap("bench", Role::Patient);
    let mut speech_ends = Vec::new();
    let t0 = Instant::now();
    let mut pushed = 0usize;
    let mut stream = vec![0.0f32; 16 * 500];
    for clip in &clips {
        let last_voiced = clip.iter().rposition(|x| x.abs() > 0.01).unwrap_or(0);
        speech_ends.push(stream.len() + last_voiced);
        stream.extend(clip);
        stream.extend(vec![0.0f32; 16 * 1500]);
    }
    let mut end_times = Vec::new();
    for frame in stream.chunks(320) {
        // Real time: frame n goes out at n * 20 ms.
        let due = t0 + Duration::from_micros(pushed as u64 * 1_000_000 / 16_000);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        tap.push(frame);
        pushed += frame.len();
        for &end in &speech_ends {
            if end < pushed && end >= pushed - frame.len() {
                end_times.push(Instant::now());
            }
        }
    }
    drop(tap);
    transcriber.shutdown();
    collector.join().unwrap();
    let finals: Vec<(Instant, transcription::Caption)> = arrived_rx.iter().filter(|(_, c)| c.is_final).collect();
    let delays: Vec<f64> =
        finals.iter().zip(&end_times).map(|((at, _), end)| at.duration_since(*end).as_secs_f64() * 1000.0).collect();
    for ((_, c), d) in finals.iter().zip(&delays) {
        println!("  {:>5} ms  [{}-{} ms] {}", *d as u64, c.start_ms, c.end_ms, c.text);
    }
    let mean = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
    let max = delays.iter().copied().fold(0.0, f64::max);
    println!(
        "caption delay (end of speech to final caption): mean {mean:.0} ms, max {max:.0} ms over {} utterances",
        delays.len()
    );
}
