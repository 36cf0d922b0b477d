//! G.711 companding: A-law (PCMA, RTP payload type 8) and µ-law (PCMU,
//! payload type 0), ITU-T G.711 (11/88), between 16-bit linear PCM and one
//! octet per sample.
//!
//! Why by hand: the law is a few shifts and a segment search, and owning it
//! keeps the phone leg free of a codec dependency.
//!
//! G.711 is defined on 13-bit (A-law) and 14-bit (µ-law) uniform PCM; we
//! take the top bits of a 16-bit sample by truncation, as the ITU-T G.191
//! reference tools and the Sun reference code do, so the decision levels
//! are exactly those of G.711 Tables 1 and 2. Decoding returns the centre of
//! each interval on the 16-bit scale (A-law peaks at ±32,256, µ-law at
//! ±32,124), and is identical to sox's for all 256 codes of both laws.
//!
//! sox differs on encoding: it first rounds the sample to 13 or 14 bits
//! (adding half an LSB: 4, or 2 on the 16-bit scale) and then companding,
//! so its code for `x` is ours for `x + 4` (A-law) or `x + 2` (µ-law). The
//! codes then differ by one step, only for inputs just below a decision
//! level: 1,020 of the 65,536 inputs for A-law and 508 for µ-law (the
//! tests check the relation for every input). Both are valid G.711 streams;
//! truncation keeps the error centred on the decoded value.

/// Which G.711 law a stream uses. Europe and India (our trunks) use A-law;
/// North America and Japan µ-law. The law is negotiated in SDP by payload
/// type (RFC 3551 §4.5.14: PCMU 0, PCMA 8), never detected from the audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    /// A-law, PCMA.
    A,
    /// µ-law, PCMU.
    Mu,
}

impl Law {
    /// The static RTP payload type (RFC 3551 Table 4).
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::A => 8,
            Law::Mu => 0,
        }
    }

    /// The law of a static payload type, if it is a G.711 one.
    pub const fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            8 => Some(Law::A),
            0 => Some(Law::Mu),
            _ => None,
        }
    }

    /// The code for linear 0: what a silence frame is filled with
    /// (0xD5 for A-law, 0xFF for µ-law).
    pub const fn silence(self) -> u8 {
        self.encode_sample(0)
    }

    /// Encodes one sample.
    pub const fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Law::A => alaw_encode(sample),
            Law::Mu => ulaw_encode(sample),
        }
    }

    /// Decodes one code.
    pub const fn decode_sample(self, code: u8) -> i16 {
        match self {
            Law::A => alaw_decode(code),
            Law::Mu => ulaw_decode(code),
        }
    }

    /// Encodes a block of samples, one octet each.
    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        pcm.iter().map(|&s| self.encode_sample(s)).collect()
    }

    /// Decodes a block of codes, one sample each.
    pub fn decode(self, codes: &[u8]) -> Vec<i16> {
        codes.iter().map(|&c| self.decode_sample(c)).collect()
    }

    /// Encodes into a caller's buffer, so a per-frame loop does not allocate.
    /// Encodes `min(pcm.len(), out.len())` samples and returns that count.
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) -> usize {
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = self.encode_sample(s);
        }
        pcm.len().min(out.len())
    }

    /// Decodes into a caller's buffer; decodes `min(codes.len(), out.len())`
    /// codes and returns that count.
    pub fn decode_into(self, codes: &[u8], out: &mut [i16]) -> usize {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = self.decode_sample(c);
        }
        codes.len().min(out.len())
    }
}

/// G.711 inverts the even bits of A-law codes so that idle channels (runs
/// of small values) still carry enough ones for the line's clock recovery.
const ALAW_EVEN_BITS: u8 = 0x55;

/// Encodes one 16-bit sample as A-law (G.711 Table 1).
///
/// The 13-bit magnitude is taken in one's complement for negative samples
/// (`!x`, i.e. `-x - 1`), so the law is symmetric around -½ and -1 maps to
/// the smallest negative code, as in G.711's reference encoders.
pub const fn alaw_encode(sample: i16) -> u8 {
    let (sign, magnitude) = if sample >= 0 { (0x80, sample >> 3) } else { (0x00, !sample >> 3) };
    // 0..=4095: 12 bits of magnitude; segments are octaves from 32 up.
    let m = magnitude as u16;
    let (segment, mantissa) = if m < 32 {
        (0u16, m >> 1)
    } else {
        // Highest set bit is 5..=11; segment 1..=7.
        let top = 15 - m.leading_zeros() as u16;
        let segment = top - 4;
        (segment, (m >> segment) & 0x0F)
    };
    ((sign | (segment << 4) | mantissa) as u8) ^ ALAW_EVEN_BITS
}

/// Decodes one A-law code to the centre of its interval, on the 16-bit scale.
pub const fn alaw_decode(code: u8) -> i16 {
    let a = code ^ ALAW_EVEN_BITS;
    let segment = (a >> 4) & 0x07;
    let mantissa = (a & 0x0F) as i16;
    // Segment 0 is linear from 0 (no implied leading one); the others add
    // the leading one (0x100) and the half step (0x08) before scaling.
    let magnitude = match segment {
        0 => (mantissa << 4) + 0x08,
        s => ((mantissa << 4) + 0x108) << (s - 1),
    };
    if a & 0x80 != 0 { magnitude } else { -magnitude }
}

/// µ-law adds this bias (33 on the 14-bit scale) before the segment search so
/// that the segment boundaries fall on powers of two (G.711 Table 2a).
const ULAW_BIAS: i32 = 33;
/// The largest biased magnitude that still fits in segment 7; above it the
/// encoder saturates, as G.711 does for overload.
const ULAW_CLIP: i32 = 8159;

/// Encodes one 16-bit sample as µ-law (G.711 Table 2).
///
/// Works on the top 14 bits (`sample >> 2`) and, like sox and the Sun
/// reference, takes the magnitude of negative samples as `-(sample >> 2)`.
/// G.191's reference encoder uses one's complement there instead; the two
/// give different codes only for negative samples within 4 LSB of a decision
/// level, by one step, and every decoder accepts both.
pub const fn ulaw_encode(sample: i16) -> u8 {
    let v = (sample >> 2) as i32;
    let (mask, magnitude) = if v < 0 { (0x7Fu8, -v) } else { (0xFFu8, v) };
    let biased = if magnitude > ULAW_CLIP { ULAW_CLIP } else { magnitude } + ULAW_BIAS;
    // biased is 33..=8192; 8192 (the clip plus the bias) is overload, the
    // top code of the sign.
    if biased > 0x1FFF {
        return 0x7F ^ mask;
    }
    // Highest bit 5..=12: segment 0..=7.
    let top = 31 - (biased as u32).leading_zeros() as i32;
    let segment = top - 5;
    let mantissa = (biased >> (segment + 1)) & 0x0F;
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// Decodes one µ-law code to the centre of its interval, on the 16-bit scale.
pub const fn ulaw_decode(code: u8) -> i16 {
    // µ-law codes are transmitted inverted (all ones is +0).
    let u = !code;
    let segment = (u >> 4) & 0x07;
    let mantissa = (u & 0x0F) as i16;
    // On the 16-bit scale the bias is 4 × 33 = 132.
    let biased = ((mantissa << 3) + 132) << segment;
    if u & 0x80 != 0 { 132 - biased } else { biased - 132 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// Runs sox with `args`; a missing sox fails the test, because CI
    /// installs it (`.ci/run`) and a skipped comparison proves nothing.
    pub(crate) fn sox(args: &[&str]) {
        let out = Command::new("sox")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run sox ({e}): install it (apt-get install sox) to test G.711"));
        assert!(out.status.success(), "sox {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn read_i16(path: &Path) -> Vec<i16> {
        let bytes = std::fs::read(path).expect("sox output");
        bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
    }

    fn write_i16(path: &Path, pcm: &[i16]) {
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(path, bytes).expect("write raw");
    }

    /// Equal slices, or the first few differences with their index (a
    /// whole 64k-element slice in a message helps nobody).
    fn assert_same<T: PartialEq + std::fmt::Debug>(ours: &[T], theirs: &[T], what: &str) {
        let diff: Vec<_> = ours.iter().zip(theirs).enumerate().filter(|(_, (a, b))| a != b).take(5).collect();
        assert!(diff.is_empty(), "{what}: (index, (ours, sox)) {diff:?}");
        assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    }

    /// sox rounds 16-bit samples to 13 (A-law) or 14 (µ-law) bits before
    /// companding: half an LSB of that scale, on the 16-bit scale.
    fn sox_half_lsb(law: Law) -> i16 {
        match law {
            Law::A => 4,
            Law::Mu => 2,
        }
    }

    fn sox_name(law: Law) -> &'static str {
        match law {
            Law::A => "a-law",
            Law::Mu => "u-law",
        }
    }

    /// Encodes `input` (raw s16le) with sox. `-D`: sox otherwise dithers
    /// when it lowers precision (16 bits to 13 or 14), adding random LSBs, so
    /// its own output would differ from run to run.
    fn sox_encode(law: Law, input: &Path, output: &Path) {
        let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
        sox(&[
            "-D",
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
            i,
            "-e",
            sox_name(law),
            "-t",
            "raw",
            o,
        ]);
    }

    fn sox_decode(law: Law, input: &Path, output: &Path) {
        let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
        sox(&[
            "-D",
            "-r",
            "8000",
            "-c",
            "1",
            "-e",
            sox_name(law),
            "-t",
            "raw",
            i,
            "-e",
            "signed",
            "-b",
            "16",
            "-L",
            "-t",
            "raw",
            o,
        ]);
    }

    #[test]
    fn phone_g711_tone_matches_sox() {
        let dir = tempfile::tempdir().unwrap();
        let tone = dir.path().join("tone.raw");
        let t = tone.to_str().unwrap();
        sox(&[
            "-n", "-r", "8000", "-c", "1", "-e", "signed", "-b", "16", "-L", "-t", "raw", t, "synth", "0.5", "sine",
            "440",
        ]);
        let pcm = read_i16(&tone);
        assert_eq!(pcm.len(), 4000);
        for law in [Law::A, Law::Mu] {
            let coded = dir.path().join("tone.g711");
            sox_encode(law, &tone, &coded);
            let theirs = std::fs::read(&coded).unwrap();
            // sox rounds before companding (see the module docs).
            let shifted: Vec<i16> = pcm.iter().map(|&x| x.saturating_add(sox_half_lsb(law))).collect();
            assert_same(&law.encode(&shifted), &theirs, &format!("{law:?} encode"));

            let back = dir.path().join("back.raw");
            sox_decode(law, &coded, &back);
            assert_same(&law.decode(&theirs), &read_i16(&back), &format!("{law:?} decode"));
        }
    }

    /// Every 16-bit input and every code, against sox: the tone covers only
    /// the codes a 440 Hz sine hits.
    #[test]
    fn phone_g711_all_inputs_and_codes_match_sox() {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let input = dir.path().join("all.raw");
        write_i16(&input, &all);
        let codes: Vec<u8> = (0..=255).collect();
        let code_file = dir.path().join("codes.g711");
        std::fs::write(&code_file, &codes).unwrap();
        for law in [Law::A, Law::Mu] {
            let coded = dir.path().join("all.g711");
            sox_encode(law, &input, &coded);
            let theirs = std::fs::read(&coded).unwrap();
            // Index i is the input i16::MIN + i. sox's code for x is ours
            // for x plus half an LSB of the 13- or 14-bit scale.
            let shifted: Vec<i16> = all.iter().map(|&x| x.saturating_add(sox_half_lsb(law))).collect();
            assert_same(&law.encode(&shifted), &theirs, &format!("{law:?} encode of every input"));
            // Where they differ, the codes are neighbours in value.
            let ours = law.encode(&all);
            let mut levels: Vec<i16> = (0..=255).map(|c| law.decode_sample(c)).collect();
            levels.sort_unstable();
            levels.dedup();
            let rank = |c: u8| levels.binary_search(&law.decode_sample(c)).unwrap_or(usize::MAX);
            let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            for (&a, &b) in ours.iter().zip(&theirs) {
                assert!(rank(a).abs_diff(rank(b)) <= 1, "{law:?}: {a:#04x} vs sox {b:#04x}");
            }
            let expected = if law == Law::A { 1_020 } else { 508 };
            assert_eq!(differing, expected, "{law:?}: inputs whose code differs from sox");

            let back = dir.path().join("codes.raw");
            sox_decode(law, &code_file, &back);
            assert_same(&law.decode(&codes), &read_i16(&back), &format!("{law:?} decode of every code"));
        }
    }

    #[test]
    fn phone_g711_every_code_round_trips() {
        for law in [Law::A, Law::Mu] {
            for code in 0..=255u8 {
                let linear = law.decode_sample(code);
                let again = law.encode_sample(linear);
                // µ-law has two zeros (+0 0xFF, -0 0x7F); -0 decodes to 0
                // and encodes as +0. Every other code is its own image.
                if law == Law::Mu && code == 0x7F {
                    assert_eq!(again, 0xFF);
                } else {
                    assert_eq!(again, code, "{law:?} code {code:#04x} -> {linear}");
                }
            }
        }
    }

    #[test]
    fn phone_g711_decode_is_monotonic_and_encode_is_nearest_below() {
        for law in [Law::A, Law::Mu] {
            // Decoded values, ordered by the value: strictly increasing
            // except µ-law's two zeros.
            let mut values: Vec<i16> = (0..=255).map(|c| law.decode_sample(c)).collect();
            values.sort_unstable();
            values.dedup();
            assert_eq!(values.len(), if law == Law::Mu { 255 } else { 256 });
            // Encoding is monotonic in the input, and the error is at most
            // half a step, which is 1/32 of the segment's start (G.711's
            // 4-bit mantissa), plus the overload above the top level.
            let mut previous = i16::MIN;
            for x in i16::MIN..=i16::MAX {
                let y = law.decode_sample(law.encode_sample(x));
                assert!(y >= previous, "{law:?} not monotonic at {x}");
                previous = y;
                let err = (i32::from(x) - i32::from(y)).abs();
                assert!(err <= (i32::from(x).abs() + 132) / 32 + 16, "{law:?} {x} -> {y}");
            }
        }
    }

    #[test]
    fn phone_g711_known_codes() {
        // Values from G.711's tables: silence, and the overload points.
        assert_eq!(Law::A.silence(), 0xD5);
        assert_eq!(Law::Mu.silence(), 0xFF);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(Law::from_payload_type(8), Some(Law::A));
        assert_eq!(Law::from_payload_type(0), Some(Law::Mu));
        assert_eq!(Law::from_payload_type(101), None);
        let mut out = [0u8; 3];
        assert_eq!(Law::A.encode_into(&[0, 1000], &mut out), 2);
        let mut pcm = [0i16; 1];
        assert_eq!(Law::Mu.decode_into(&[0xFF, 0x00], &mut pcm), 1);
    }
}
