//! Benchmark: word error rate and real-time factor of whisper on short clinical utterances
//! under several decodings, on the bench phrases, on a held-out set of other clinical phrases
//! and on a validation set written after the live decoding was chosen (`tests/phrases/`), and
//! the caption delay of the live service (end of speech to
//! final caption, audio fed in real time).
//!
//! ```text
//! cargo run --release -p transcription --example bench -- MODEL.bin [THREADS] [delay]
//! ```
//! `delay` measures the caption delay only.
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
    let delay_only = args.next().is_some_and(|a| a == "delay");
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
    for (set, list) in sets.iter().filter(|_| !delay_only) {
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
    //    captions (the server asks for one a second: they compete for the worker), and with
    //    several speakers at once on the one worker (the load of several consults).
    let clips: Vec<Vec<f32>> = sets[0].1.iter().map(|p| speak(p)).collect();
    for (name, options) in [("Options::live", live.clone()), ("full context, beam 5", full.clone())] {
        for partial_every_ms in [None, Some(1000)] {
            report_delay(&engine, &clips, &sets[0].1, name, options.clone(), partial_every_ms, 1);
        }
    }
    for speakers in [2, 4, 8, 12, 16] {
        report_delay(&engine, &clips, &sets[0].1, "Options::live", live.clone(), Some(1000), speakers);
    }
}

fn report_delay(
    engine: &Engine,
    clips: &[Vec<f32>],
    phrases: &[&str],
    name: &str,
    options: Options,
    partial_every_ms: Option<u64>,
    speakers: usize,
) {
    let (mean, max, n, w) = caption_delay(engine, clips, phrases, options, partial_every_ms, speakers);
    println!(
        "caption delay, {name}, partials {}, {speakers} speaker(s): mean {mean:.0} ms, max {max:.0} ms over {n} utterances; WER of the finals {w:.3}",
        partial_every_ms.map_or("off".to_owned(), |ms| format!("every {ms} ms"))
    );
}

/// Feeds `clips` (1.5 s of silence after each) through a [`Transcriber`] with one worker in
/// real time, as `speakers` participants each saying them all, their starts spread evenly over
/// one phrase's time. Returns the mean and max delay from the end of each phrase's speech to
/// its final caption (ms), the number of finals, and their corpus WER against `phrases`.
fn caption_delay(
    engine: &Engine,
    clips: &[Vec<f32>],
    phrases: &[&str],
    options: Options,
    partial_every_ms: Option<u64>,
    speakers: usize,
) -> (f64, f64, usize, f64) {
    let config = TranscriberConfig { workers: 1, options, partial_every_ms, ..TranscriberConfig::default() };
    let (transcriber, mut captions) = Transcriber::start(engine, config).unwrap();
    let (arrived_tx, arrived_rx) = mpsc::channel();
    let collector = std::thread::spawn(move || {
        while let Some(c) = captions.blocking_recv() {
            let _ = arrived_tx.send((Instant::now(), c));
        }
    });
    let cycle = clips.iter().map(|c| c.len() + 16 * 1500).sum::<usize>() / clips.len();
    let mut streams = Vec::new();
    for s in 0..speakers {
        let mut audio = vec![0.0f32; 16 * 500 + s * cycle / speakers];
        let mut speech_ends = Vec::new();
        for clip in clips {
            let last_voiced = clip.iter().rposition(|x| x.abs() > 0.01).unwrap_or(0);
            speech_ends.push(audio.len() + last_voiced);
            audio.extend(clip);
            audio.extend(vec![0.0f32; 16 * 1500]);
        }
        streams.push((transcriber.tap(format!("bench-{s}"), Role::Patient), audio, speech_ends, Vec::new()));
    }
    let longest = streams.iter().map(|(_, audio, _, _)| audio.len()).max().unwrap_or(0);
    let t0 = Instant::now();
    for start in (0..longest).step_by(320) {
        // Real time: the frame at sample n goes out at n / 16 kHz.
        let due = t0 + Duration::from_micros(start as u64 * 1_000_000 / 16_000);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let end = start + 320;
        for (tap, audio, speech_ends, end_times) in &mut streams {
            if start < audio.len() {
                tap.push(&audio[start..end.min(audio.len())]);
                if speech_ends.iter().any(|&e| e >= start && e < end) {
                    end_times.push(Instant::now());
                }
            }
        }
    }
    let end_times: Vec<Vec<Instant>> = streams.into_iter().map(|(_, _, _, end_times)| end_times).collect();
    transcriber.shutdown();
    collector.join().unwrap();
    let (mut delays, mut pairs) = (Vec::new(), Vec::new());
    let finals: Vec<(Instant, transcription::Caption)> = arrived_rx.iter().filter(|(_, c)| c.is_final).collect();
    for (s, ends) in end_times.iter().enumerate() {
        let name = format!("bench-{s}");
        let mine = finals.iter().filter(|(_, c)| c.participant == name);
        for (((at, c), end), phrase) in mine.zip(ends).zip(phrases) {
            let delay = at.duration_since(*end).as_secs_f64() * 1000.0;
            if speakers == 1 {
                println!("  {:>5} ms  [{}-{} ms] {}", delay as u64, c.start_ms, c.end_ms, c.text);
            }
            delays.push(delay);
            pairs.push((*phrase, c.text.as_str()));
        }
    }
    let mean = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
    let max = delays.iter().copied().fold(0.0, f64::max);
    (mean, max, delays.len(), wer::corpus_wer(pairs.iter().copied()))
}
