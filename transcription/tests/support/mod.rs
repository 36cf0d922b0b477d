//! Test support: the CTranslate2 models fetched by `transcription/scripts/fetch-models.sh`,
//! converted once per build into the target directory, and speech made with espeak-ng + sox.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Where fetch-models.sh puts the models: `$CARELINE_MODEL_CACHE`, else
/// `~/.cache/careline/models`.
pub fn model_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARELINE_MODEL_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/careline/models")
}

/// The CTranslate2 model directory `name` (tiny.en, base); panics, saying what to run, when
/// it is missing: these tests must not pass without their model.
pub fn ct2_dir(name: &str) -> PathBuf {
    let dir = model_cache().join(name);
    assert!(
        dir.join("model.bin").is_file() && dir.join("vocabulary.txt").is_file(),
        "whisper model {name} missing in {}: run transcription/scripts/fetch-models.sh \
         (or set CARELINE_MODEL_CACHE to where it put the models)",
        dir.display()
    );
    dir
}

static CONVERT: Mutex<()> = Mutex::new(());

/// The ggml file of model `name`, converted with `ct2::import` into the target directory
/// (again when the CTranslate2 model is newer).
pub fn ggml_model(name: &str) -> PathBuf {
    let dir = ct2_dir(name);
    let _guard = CONVERT.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("whisper-models");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{name}.bin"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&out), modified(&dir.join("model.bin"))) {
        (Some(converted), Some(source)) => converted >= source,
        _ => false,
    };
    if !fresh {
        let started = std::time::Instant::now();
        let imported = transcription::ct2::import(&dir, &out).expect("converting the CTranslate2 model");
        eprintln!("converted {name}: {} bytes in {:.1?}", imported.bytes, started.elapsed());
    }
    out
}

fn run(cmd: &mut Command) {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}): install espeak-ng and sox (apt-get install espeak-ng sox)")
    });
    assert!(status.success(), "{program} failed: {status}");
}

/// `text` spoken by espeak-ng's `voice`, as 16 kHz mono samples (espeak-ng writes 22.05 kHz;
/// sox resamples).
pub fn speak(text: &str, voice: &str) -> Vec<f32> {
    let dir = std::env::temp_dir().join(format!("careline-speech-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stem = format!("{:016x}", fxhash(&format!("{voice}:{text}")));
    let raw = dir.join(format!("{stem}.wav"));
    let wav = dir.join(format!("{stem}-16k.wav"));
    run(Command::new("espeak-ng").arg("-v").arg(voice).arg("-w").arg(&raw).arg(text));
    run(Command::new("sox").arg(&raw).args(["-r", "16000", "-c", "1"]).arg(&wav));
    let pcm = transcription::audio::read_wav(&wav).expect("reading espeak's speech");
    let _ = std::fs::remove_file(raw);
    let _ = std::fs::remove_file(wav);
    pcm
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `ms` of silence at 16 kHz.
pub fn silence(ms: usize) -> Vec<f32> {
    vec![0.0; 16 * ms]
}

/// English clinical phrases: the lines of `tests/phrases/bench.txt` (which the bench and the
/// whisper.cpp baseline script read).
pub const PHRASES: [&str; 5] = [
    "the patient has a fever and a headache since two days",
    "she has been coughing at night and feels short of breath",
    "please take one tablet of paracetamol after every meal",
    "his blood pressure is high and he feels dizzy in the morning",
    "the child has stomach pain and vomiting since yesterday",
];
