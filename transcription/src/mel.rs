//! The mel filter bank that whisper's front end multiplies the power spectrum with.
//!
//! whisper was trained on log-mel spectrograms made with librosa's default filter bank
//! (`librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`): the Slaney mel scale (linear below
//! 1 kHz, logarithmic above) and Slaney area normalisation. A ggml model file carries the bank,
//! so the converter computes it here, in f64 as librosa does, and stores it as f32.

/// Sample rate whisper works at.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT window length of whisper's front end (25 ms).
pub const N_FFT: usize = 400;

/// Hz to mel on the Slaney scale (librosa's `hz_to_mel` with `htk=False`).
pub fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ { min_log_mel + (hz / MIN_LOG_HZ).ln() / log_step } else { hz / F_SP }
}

/// Mel to Hz on the Slaney scale, the inverse of [`hz_to_mel`].
pub fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel { MIN_LOG_HZ * (log_step * (mel - min_log_mel)).exp() } else { F_SP * mel }
}

/// The filter bank as `n_mels` rows of `n_fft / 2 + 1` weights (row-major), from 0 Hz to
/// Nyquist: triangles between adjacent mel-spaced centres, each scaled to unit area
/// (`2 / (right - left)` in Hz).
pub fn filter_bank(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_bins = n_fft / 2 + 1;
    let sr = f64::from(sample_rate);
    let fft_freqs: Vec<f64> = (0..n_bins).map(|k| k as f64 * sr / n_fft as f64).collect();

    // n_mels + 2 points evenly spaced in mel between 0 Hz and Nyquist.
    let (mel_lo, mel_hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let points: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (n_mels + 1) as f64)).collect();

    let mut bank = vec![0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let (left, centre, right) = (points[m], points[m + 1], points[m + 2]);
        let norm = 2.0 / (right - left);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let rising = (f - left) / (centre - left);
            let falling = (right - f) / (right - centre);
            let w = rising.min(falling).max(0.0);
            bank[m * n_bins + k] = (w * norm) as f32;
        }
    }
    bank
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)` (librosa 0.11, the bank
    /// whisper's mel_filters.npz was made with): (mel, bin, weight).
    #[allow(clippy::excessive_precision)] // as librosa prints them
    const LIBROSA: [(usize, usize, f32); 11] = [
        (0, 1, 2.486259490e-02),
        (5, 5, 9.954108857e-03),
        (5, 6, 1.490848418e-02),
        (20, 19, 1.097219996e-02),
        (20, 20, 1.389039401e-02),
        (40, 42, 5.411104765e-03),
        (40, 43, 1.473556645e-02),
        (60, 90, 1.434534322e-03),
        (60, 91, 3.441218985e-03),
        (79, 186, 3.667416750e-04),
        (79, 187, 8.330700221e-04),
    ];

    #[test]
    fn filter_bank_matches_librosa() {
        let bank = filter_bank(SAMPLE_RATE, N_FFT, 80);
        assert_eq!(bank.len(), 80 * 201);
        for (m, k, expected) in LIBROSA {
            let got = bank[m * 201 + k];
            assert!((got - expected).abs() <= expected * 1e-5, "mel {m} bin {k}: {got} != {expected}");
        }
        // librosa: 391 non-zero weights summing to 1.9990241527557373; each first bin is 0.
        assert_eq!(bank.iter().filter(|&&w| w > 0.0).count(), 391);
        let sum: f64 = bank.iter().map(|&w| f64::from(w)).sum();
        assert!((sum - 1.999_024_152_755_737_3).abs() < 1e-5, "{sum}");
        assert_eq!(bank[2], 0.0);
        assert_eq!(bank[79 * 201 + 200], 0.0);
    }

    #[test]
    fn slaney_scale_round_trips_and_bends_at_1khz() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(8000.0) - 45.245_640_471_924_965).abs() < 1e-9);
        for hz in [0.0, 123.4, 999.0, 1000.0, 2500.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
    }
}
