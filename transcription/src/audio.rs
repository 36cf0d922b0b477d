//! Audio in whisper's format: 16 kHz mono f32. WAV files are read with hound, mixed down to
//! mono and resampled with a windowed-sinc interpolator ([`resample`], pure).

use std::f64::consts::PI;
use std::path::Path;

use thiserror::Error;

use crate::mel::SAMPLE_RATE;

#[derive(Debug, Error)]
pub enum AudioError {
    #[error("reading {path}: {source}")]
    Wav { path: String, source: hound::Error },
    #[error("{path}: {bits}-bit {format:?} samples are not supported")]
    Format { path: String, bits: u16, format: hound::SampleFormat },
}

/// Reads a WAV file (8/16/24/32-bit integer or 32-bit float PCM, any rate and channel count)
/// as 16 kHz mono samples in [-1, 1].
pub fn read_wav(path: &Path) -> Result<Vec<f32>, AudioError> {
    let p = || path.display().to_string();
    let mut reader = hound::WavReader::open(path).map_err(|source| AudioError::Wav { path: p(), source })?;
    let spec = reader.spec();
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader.samples::<f32>().collect::<Result<_, _>>(),
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader.samples::<i32>().map(|s| s.map(|s| s as f32 * scale)).collect::<Result<_, _>>()
        }
        (format, bits) => return Err(AudioError::Format { path: p(), bits, format }),
    }
    .map_err(|source| AudioError::Wav { path: p(), source })?;
    let mono = mix_down(&interleaved, usize::from(spec.channels.max(1)));
    Ok(resample(&mono, spec.sample_rate, SAMPLE_RATE))
}

/// Averages interleaved channels to one.
pub fn mix_down(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect()
}

/// Converts 16-bit PCM to f32 in [-1, 1).
pub fn i16_to_f32(pcm: &[i16]) -> Vec<f32> {
    pcm.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// Band-limited resampling: each output sample is the input convolved with a Hann-windowed
/// sinc low-pass at the lower Nyquist frequency (16 zero crossings each side). Slow for long
/// audio compared with polyphase filters, but simple and exact enough for speech files.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == to_hz || input.is_empty() {
        return input.to_vec();
    }
    const ZERO_CROSSINGS: f64 = 16.0;
    let ratio = f64::from(to_hz) / f64::from(from_hz);
    // Cut-off relative to the input rate, a little below the lower Nyquist frequency.
    let cutoff = ratio.min(1.0) * 0.95;
    let half_width = ZERO_CROSSINGS / cutoff; // in input samples
    let out_len = ((input.len() as f64) * ratio).round() as usize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let t = n as f64 / ratio; // position in input samples
        let lo = (t - half_width).ceil().max(0.0) as usize;
        let hi = ((t + half_width).floor() as usize).min(input.len() - 1);
        let mut acc = 0.0f64;
        for (k, &x) in input.iter().enumerate().take(hi + 1).skip(lo) {
            let d = k as f64 - t;
            let arg = d * cutoff;
            let sinc = if arg.abs() < 1e-9 { 1.0 } else { (PI * arg).sin() / (PI * arg) };
            let window = 0.5 + 0.5 * (PI * d / half_width).cos();
            acc += f64::from(x) * sinc * window * cutoff;
        }
        out.push(acc as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, secs: f64) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n).map(|i| (2.0 * PI * freq * i as f64 / f64::from(rate)).sin() as f32 * 0.5).collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn resampling_keeps_a_tone_and_its_length() {
        let input = sine(440.0, 22_050, 1.0);
        let out = resample(&input, 22_050, 16_000);
        assert_eq!(out.len(), 16_000);
        let expected = sine(440.0, 16_000, 1.0);
        // Away from the edges the resampled tone matches a tone made at 16 kHz.
        let err: f64 =
            out[1000..15_000].iter().zip(&expected[1000..15_000]).map(|(a, b)| f64::from(a - b).abs()).sum::<f64>()
                / 14_000.0;
        assert!(err < 0.01, "mean error {err}");
        assert!((rms(&out[1000..15_000]) - 0.5 / 2f64.sqrt()).abs() < 0.01);
    }

    #[test]
    fn resampling_removes_what_is_above_the_new_nyquist() {
        // 9 kHz is above the Nyquist frequency of 16 kHz audio: it must be filtered out, not aliased.
        let input = sine(9_000.0, 44_100, 0.5);
        let out = resample(&input, 44_100, 16_000);
        assert!(rms(&out[500..7500]) < 0.01, "aliased energy {}", rms(&out[500..7500]));
    }

    #[test]
    fn stereo_mixes_to_mono() {
        assert_eq!(mix_down(&[1.0, 0.0, 0.5, 0.5], 2), vec![0.5, 0.5]);
        assert_eq!(i16_to_f32(&[-32768, 16384]), vec![-1.0, 0.5]);
    }
}
