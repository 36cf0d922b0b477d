//! Benchmark: word error rate and real-time factor of whisper on short clinical utterances
//! under several decodings, on the bench phrases, on a held-out set of other clinical phrases
//! and on a validation set written after the live decoding was chosen (`tests/phrases/`), and
//! the caption delay of the live service (end of speech to
//! final caption, audio fed in real time).
//!
//! ```text
//! cargo run --release -p transcription --example bench -- MODEL.bin [THREADS]
//! ```
//! Needs espeak-ng and sox (the speech) and a ggml model (`careline model import-ct2`), or a
//! CTranslate2 model directory (as `scripts/fetch-models.sh` leaves), converted first.
//! `BENCH_PROMPT="..."` decodes with that prompt instead of [`CLINICAL_PROMPT`] in the rows
//! marked "prompt".

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use transcription::engine::CLINICAL_PROMPT;
use transcription::{Engine, Language, Options, Role, Transcriber, TranscriberConfig, wer};

fn phrases(text: &'static str) -> Vec<&'static str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

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
    let mut model = PathBuf::from(args.next().expect("usage: bench MODEL.bin|CT2-DIR [THREADS]"));
    if model.is_dir() {
        let out = std::env::temp_dir().join(format!("careline-bench-{}.bin", std::process::id()));
        transcription::ct2::import(&model, &out).expect("converting the CTranslate2 model");
        model = out;
    }
    let threads: usize = args.next().map_or(2, |t| t.parse().expect("THREADS is a number"));
    let prompt = std::env::var("BENCH_PROMPT").unwrap_or_else(|_| CLINICAL_PROMPT.to_owned());
    let engine = Engine::load(&model).expect("loading the model");
    let sets = [
        ("bench", phrases(include_str!("../tests/phrases/bench.txt"))),
        ("held-out", phrases(include_str!("../tests/phrases/held-out.txt"))),
        ("validation", phrases(include_str!("../tests/phrases/validation.txt"))),
    ];
    println!("model {}, {threads} threads, prompt {prompt:?}", model.display());

    // 1. WER and real-time factor per decoding, utterance by utterance (as the service does).
    let live = Options::live(Language::En, threads);
    let full = Options { fit_margin_ms: None, ..live.clone() };
    let margin_1s = Options { fit_margin_ms: Some(1000), ..live.clone() };
    let prompted = |o: &Options| Options { prompt: Some(prompt.clone()), ..o.clone() };
    let decodings = [
        ("Options::live (fitted, 2 s margin, beam 5)", live.clone()),
        ("fitted, beam 5, prompt", prompted(&live)),
        ("fitted, beam 5, temperature fallback", Options { temperature_fallback: true, ..live.clone() }),
        ("fitted, greedy (partial captions)", live.greedy()),
        ("fitted, greedy, prompt", prompted(&live.greedy())),
        ("fitted with 1 s margin, beam 5", margin_1s.clone()),
        ("fitted with 1 s margin, greedy", margin_1s.greedy()),
        ("full context, beam 5", full.clone()),
        ("full context, beam 5, prompt", prompted(&full)),
        ("full context, greedy", full.greedy()),
        ("full context, greedy, prompt", prompted(&full.greedy())),
        ("file (segments, fallback)", Options { threads, ..Options::default() }),
    ];
    let mut session = engine.session().unwrap();
    for (set, list) in &sets {
        let clips: Vec<Vec<f32>> = list.iter().map(|p| speak(p)).collect();
        let audio_s: f64 = clips.iter().map(|c| c.len() as f64 / 16_000.0).sum();
        println!("\n== {set}: {} phrases, {audio_s:.1} s of speech", list.len());
        session.transcribe(&clips[0], &live).unwrap(); // warm-up
        for (name, options) in &decodings {
            let mut compute = Duration::ZERO;
            let mut pairs = Vec::new();
            for (clip, phrase) in clips.iter().zip(list) {
                let started = Instant::now();
                let t = session.transcribe(clip, options).unwrap();
                compute += started.elapsed();
                pairs.push((*phrase, t.text));
            }
            let w = wer::corpus_wer(pairs.iter().map(|(r, h)| (*r, h.as_str())));
            println!(
                "{name}: {:.2} s, real-time factor {:.3}, WER {w:.3}",
                compute.as_secs_f64(),
                compute.as_secs_f64() / audio_s
            );
            for (r, h) in &pairs {
                let e = wer::wer(r, h);
                if e > 0.0 {
                    println!("    {e:.2} {h:?}");
                }
            }
        }
    }

    // 2. Caption delay through the service, audio pushed in real time in 20 ms frames: from
    //    the push of a phrase's last voiced sample to its final caption. Includes the VAD's
    //    hangover (500 ms of silence before an utterance ends). With and without partial
    //    captions (the server asks for one a second: they compete for the worker).
    let clips: Vec<Vec<f32>> = sets[0].1.iter().map(|p| speak(p)).collect();
    for (name, options) in [("Options::live", live.clone()), ("full context, beam 5", full.clone())] {
        for partial_every_ms in [None, Some(1000)] {
            let (mean, max, n, w) = caption_delay(&engine, &clips, &sets[0].1, options.clone(), partial_every_ms);
            println!(
                "caption delay, {name}, partials {}: mean {mean:.0} ms, max {max:.0} ms over {n} utterances; WER of the finals {w:.3}",
                partial_every_ms.map_or("off".to_owned(), |ms| format!("every {ms} ms"))
            );
        }
    }
}

/// Feeds `clips` (1.5 s of silence after each) through a [`Transcriber`] in real time and
/// returns the mean and max delay from the end of each phrase's speech to its final caption
/// (ms), the number of finals, and their corpus WER against `phrases`.
fn caption_delay(
    engine: &Engine,
    clips: &[Vec<f32>],
    phrases: &[&str],
    options: Options,
    partial_every_ms: Option<u64>,
) -> (f64, f64, usize, f64) {
    let config = TranscriberConfig { workers: 1, options, partial_every_ms, ..TranscriberConfig::default() };
    let (transcriber, mut captions) = Transcriber::start(engine, config).unwrap();
    let (arrived_tx, arrived_rx) = mpsc::channel();
    let collector = std::thread::spawn(move || {
        while let Some(c) = captions.blocking_recv() {
            let _ = arrived_tx.send((Instant::now(), c));
        }
    });
    let tap = transcriber.tap("bench", Role::Patient);
    let mut speech_ends = Vec::new();
    let mut stream = vec![0.0f32; 16 * 500];
    for clip in clips {
        let last_voiced = clip.iter().rposition(|x| x.abs() > 0.01).unwrap_or(0);
        speech_ends.push(stream.len() + last_voiced);
        stream.extend(clip);
        stream.extend(vec![0.0f32; 16 * 1500]);
    }
    let t0 = Instant::now();
    let mut pushed = 0usize;
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
    let w = wer::corpus_wer(phrases.iter().zip(&finals).map(|(r, (_, c))| (*r, c.text.as_str())));
    (mean, max, delays.len(), w)
}
