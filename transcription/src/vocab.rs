//! whisper's byte-level BPE vocabulary.
//!
//! Tokenizer files (GPT-2 style, as in CTranslate2's `vocabulary.txt`) spell every byte as a
//! printable character: bytes that are printable Latin-1 stand for themselves, the other 68
//! (controls, space, soft hyphen, ...) are shifted to U+0100 and up, in byte order. A ggml model
//! stores each token as its raw bytes, so the converter maps the characters back.

use std::collections::HashMap;

use thiserror::Error;

/// A token whose spelling is not in the byte alphabet.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("token {index} ({token:?}) has the character {ch:?}, which stands for no byte")]
pub struct BadToken {
    pub index: usize,
    pub token: String,
    pub ch: char,
}

fn stands_for_itself(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character that spells byte `b`.
pub fn byte_to_char(b: u8) -> char {
    if stands_for_itself(b) {
        return char::from(b);
    }
    // The n-th byte (in byte order) that does not stand for itself is spelled U+0100 + n.
    let n = (0..b).filter(|&x| !stands_for_itself(x)).count() as u32;
    char::from_u32(0x100 + n).expect("U+0100..U+0143 are characters")
}

/// The inverse of [`byte_to_char`] for all 256 bytes.
pub fn char_to_byte_table() -> HashMap<char, u8> {
    (0..=255u8).map(|b| (byte_to_char(b), b)).collect()
}

/// Decodes one token's spelling to its bytes; `None` names the first character that is no byte.
pub fn decode_token(table: &HashMap<char, u8>, token: &str) -> Result<Vec<u8>, char> {
    token.chars().map(|c| table.get(&c).copied().ok_or(c)).collect()
}

/// The ordinary (non-special) tokens of a `vocabulary.txt` (one token per line, by id) as raw
/// bytes: every line before `<|endoftext|>`. whisper.cpp numbers the special tokens itself.
pub fn ordinary_tokens(vocabulary: &str) -> Result<Vec<Vec<u8>>, BadToken> {
    let table = char_to_byte_table();
    vocabulary
        .lines()
        .take_while(|line| *line != "<|endoftext|>")
        .enumerate()
        .map(|(index, token)| decode_token(&table, token).map_err(|ch| BadToken { index, token: token.to_owned(), ch }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2() {
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(b'!'), '!');
        assert_eq!(byte_to_char(0), '\u{100}');
        assert_eq!(byte_to_char(b' '), '\u{120}'); // "Ġ"
        assert_eq!(byte_to_char(b'\n'), '\u{10A}'); // "Ċ"
        assert_eq!(byte_to_char(0x7F), '\u{121}');
        assert_eq!(byte_to_char(0xAD), '\u{143}'); // soft hyphen, the last one shifted
        assert_eq!(byte_to_char(0xE9), 'é');
        let table = char_to_byte_table();
        assert_eq!(table.len(), 256, "the map is a bijection");
    }

    #[test]
    fn tokens_decode_to_utf8_bytes() {
        let vocab = "!\nĠthe\nĠpatient\nÃ©\nà¤¹\n\n<|endoftext|>\n<|startoftranscript|>\n";
        let tokens = ordinary_tokens(vocab).unwrap();
        assert_eq!(tokens.len(), 6);
        assert_eq!(tokens[1], b" the");
        assert_eq!(tokens[2], b" patient");
        assert_eq!(String::from_utf8(tokens[3].clone()).unwrap(), "é");
        // Devanagari HA (U+0939) is E0 A4 B9 in UTF-8.
        assert_eq!(tokens[4], [0xE0, 0xA4, 0xB9]);
        assert!(tokens[5].is_empty(), "the multilingual vocabulary has one empty token");
    }

    #[test]
    fn a_character_outside_the_alphabet_is_an_error() {
        let err = ordinary_tokens("a\nb c\n").unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.ch, ' ');
    }
}
