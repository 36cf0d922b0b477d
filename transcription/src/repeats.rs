//! whisper's looping failure, undone: a decoder that reaches the end of the speech before the
//! end of its window may start the utterance over ("The pain is on the right side. The pain is
//! on the right side."), sometimes several times, the last copy cut short by the token budget.
//! [`collapse`] keeps one copy. Pure.
//!
//! Only runs of at least [`MIN_WORDS`] words repeated back to back count, compared without case
//! and punctuation: people do say "no, no" or "very very", but a caption of one utterance that
//! says the same four words or more twice in a row is, with whisper, almost always the loop.

/// The shortest run of words whose immediate repetition is taken for a loop.
pub const MIN_WORDS: usize = 4;

/// `text` with every run of [`MIN_WORDS`] or more words that is repeated back to back kept
/// once and, when there was such a run, a trailing start of one more copy dropped. Words are separated by whitespace and
/// kept as written (with their punctuation); the text comes back unchanged when nothing
/// repeats.
pub fn collapse(text: &str) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let mut keys: Vec<String> = words.iter().map(|w| key(w)).collect();
    let mut changed = false;

    // Runs repeated back to back: at each position, the longest run first.
    let mut i = 0;
    while i < words.len() {
        let longest = (words.len() - i) / 2;
        let repeated = (MIN_WORDS..=longest).rev().find(|&len| keys[i..i + len] == keys[i + len..i + 2 * len]);
        match repeated {
            Some(len) => {
                words.drain(i + len..i + 2 * len);
                keys.drain(i + len..i + 2 * len);
                changed = true;
            }
            None => i += 1,
        }
    }

    // After a loop, a last copy cut short: the tail is the start of the run just before it.
    // (Without a loop the same shape is ordinary speech that ends as it began.)
    let n = words.len();
    let cut = (MIN_WORDS..=n / 2).rev().filter(|_| changed).find(|&tail| {
        let start = n - tail;
        (tail + 1..=start).any(|len| keys[start - len..start - len + tail] == keys[start..])
    });
    if let Some(tail) = cut {
        words.truncate(n - tail);
        changed = true;
    }

    if changed { words.join(" ") } else { text.to_owned() }
}

/// A word without case and punctuation ("Red." and "red" are the same word).
fn key(word: &str) -> String {
    word.chars().filter(|c| !is_punctuation(*c)).flat_map(char::to_lowercase).collect()
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || matches!(c, '।' | '॥' | '…' | '“' | '”' | '‘' | '’' | '«' | '»' | '¿' | '¡')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doubled_utterance_is_kept_once() {
        assert_eq!(
            collapse("But the wound on his leg is swollen and red. But the wound on his leg is swollen and red."),
            "But the wound on his leg is swollen and red."
        );
    }

    #[test]
    fn several_copies_and_a_cut_last_one_are_kept_once() {
        let looped = "Give the syrup, three times a day after food. Give the syrup, three times a day after food. \
                      give the syrup three times a day after food. Give the syrup, three times";
        assert_eq!(collapse(looped), "Give the syrup, three times a day after food.");
    }

    #[test]
    fn a_repeat_inside_the_utterance_goes_too() {
        assert_eq!(
            collapse("She said take one tablet daily take one tablet daily after food"),
            "She said take one tablet daily after food"
        );
    }

    #[test]
    fn short_repeats_and_ordinary_text_stay() {
        for text in [
            "No, no, I am fine.",
            "It is very very painful since two days.",
            "The patient has a fever and a headache since two days.",
            "Take it twice. Take it at night.",
            "",
        ] {
            assert_eq!(collapse(text), text);
        }
    }

    #[test]
    fn the_end_of_a_sentence_that_echoes_its_start_is_not_a_cut_copy() {
        // The tail repeats the first words of the utterance, but not of a run right before it.
        let text = "my head hurts a lot and then later in the evening my head hurts a lot";
        assert_eq!(collapse(text), text);
    }

    #[test]
    fn hindi_in_devanagari_collapses_too() {
        assert_eq!(collapse("मरीज़ को दो दिन से बुखार है। मरीज़ को दो दिन से बुखार है।"), "मरीज़ को दो दिन से बुखार है।");
    }
}
