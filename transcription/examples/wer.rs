//! Corpus word error rate, computed exactly as the tests and the bench do
//! ([`transcription::wer::corpus_wer`]), for transcripts made elsewhere (whisper.cpp's CLI in
//! `scripts/whisper-cpp-baseline.sh`).
//!
//! ```text
//! cargo run --release -p transcription --example wer < PAIRS.tsv
//! ```
//! Each input line is `reference<TAB>hypothesis`; prints one line per pair, then the corpus WER.

use std::io::BufRead;

use transcription::wer;

fn main() {
    let mut pairs = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("reading stdin");
        if line.trim().is_empty() {
            continue;
        }
        let (reference, hypothesis) = line.split_once('\t').unwrap_or((line.as_str(), ""));
        pairs.push((reference.to_owned(), hypothesis.to_owned()));
    }
    for (r, h) in &pairs {
        println!("{:.2}  {r:?} -> {h:?}", wer::wer(r, h));
    }
    let corpus = wer::corpus_wer(pairs.iter().map(|(r, h)| (r.as_str(), h.as_str())));
    println!("corpus WER {corpus:.3} over {} phrases", pairs.len());
}
