//! Word error rate: (substitutions + deletions + insertions) / words in the reference, after
//! normalising both texts (case, punctuation, small numbers written as digits).

/// Lower-cases, drops punctuation (apostrophes inside words too: "don't" = "dont"), and
/// spells the numbers 0 to 20 as words, so "2 days." and "two days" agree.
pub fn normalize(text: &str) -> Vec<String> {
    const NUMBERS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| if c.is_alphanumeric() || c.is_whitespace() || is_mark(c) { c } else { ' ' })
        .collect::<String>()
        .to_lowercase();
    cleaned
        .split_whitespace()
        .map(|w| match w.parse::<usize>() {
            Ok(n) if n < NUMBERS.len() => NUMBERS[n].to_owned(),
            _ => w.to_owned(),
        })
        .collect()
}

/// Combining marks (Devanagari vowel signs, virama, nukta...) belong to the word.
fn is_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{0900}'..='\u{0903}' | '\u{093A}'..='\u{094F}' | '\u{0951}'..='\u{0957}' | '\u{0962}'..='\u{0963}')
}

/// Edit distance between two word sequences.
pub fn edit_distance<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut cur = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        cur[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = prev[j] + usize::from(r != h);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[hypothesis.len()]
}

/// Word error rate of `hypothesis` against `reference` (0 is perfect; can exceed 1 when the
/// hypothesis has many extra words). An empty reference gives 0 for an empty hypothesis, else 1.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (normalize(reference), normalize(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    edit_distance(&r, &h) as f64 / r.len() as f64
}

/// Word error rate over several pairs: total edits over total reference words.
pub fn corpus_wer<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let (mut edits, mut words) = (0, 0);
    for (reference, hypothesis) in pairs {
        let (r, h) = (normalize(reference), normalize(hypothesis));
        edits += edit_distance(&r, &h);
        words += r.len();
    }
    if words == 0 { 0.0 } else { edits as f64 / words as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_punctuation_and_digits() {
        assert_eq!(
            normalize("The patient's fever, since 2 days."),
            ["the", "patients", "fever", "since", "two", "days"]
        );
        assert_eq!(normalize("बुखार है।"), ["बुखार", "है"]);
        assert_eq!(wer("the patient has a fever", "The patient has a fever."), 0.0);
    }

    #[test]
    fn counts_substitutions_deletions_and_insertions() {
        // one substitution (has -> from) in 5 words
        assert!((wer("the patient has a fever", "the patient from a fever") - 0.2).abs() < 1e-12);
        // one deletion
        assert!((wer("the patient has a fever", "the patient a fever") - 0.2).abs() < 1e-12);
        // two insertions
        assert!((wer("a fever", "a high fever today") - 1.0).abs() < 1e-12);
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(wer("", "hello"), 1.0);
        assert_eq!(wer("hello", ""), 1.0);
        assert_eq!(edit_distance(&["a", "b", "c"], &["b", "c", "d"]), 2);
    }

    #[test]
    fn corpus_wer_weights_by_length() {
        let pairs = [("one two three four", "one two three four"), ("a b", "a c")];
        assert!((corpus_wer(pairs) - 1.0 / 6.0).abs() < 1e-12);
    }
}
