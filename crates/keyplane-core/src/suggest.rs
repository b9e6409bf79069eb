//! "Did you mean …?": the known name closest to a mistyped one, for error messages that say what to
//! do (an action, a parameter). Only a close match is offered: a wrong guess is worse than none.

/// The candidate closest to `word`, when it is close enough to be a likely typo: the same letters
/// in another case, or at most a third of the word's letters (and at most 3) edited away.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.is_empty() || candidates.contains(&word) {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| {
            let d = strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase());
            (d, *c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` Did you mean X?` when there is a likely X, else nothing: appended to an error message.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    nearest(word, candidates)
        .map(|c| format!(" Did you mean {c}?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: &[&str] = &[
        "AttachKeyPair",
        "DetachKeyPair",
        "DescribeKeyPairs",
        "RunInstances",
    ];

    #[test]
    fn typos_and_wrong_case_find_the_intended_name() {
        for (typo, meant) in [
            ("AttachKeypair", "AttachKeyPair"),
            ("attachkeypair", "AttachKeyPair"),
            ("AtachKeyPair", "AttachKeyPair"),
            ("DescribeKeyPair", "DescribeKeyPairs"),
            ("RunInstance", "RunInstances"),
        ] {
            assert_eq!(nearest(typo, ACTIONS), Some(meant), "{typo}");
        }
    }

    #[test]
    fn unrelated_or_exact_words_get_no_suggestion() {
        for word in ["DeleteEverything", "", "X", "CreateImage", "AttachKeyPair"] {
            assert_eq!(nearest(word, ACTIONS), None, "{word}");
        }
        assert_eq!(did_you_mean("Foo", ACTIONS), "");
        assert_eq!(
            did_you_mean("DetachKeypair", ACTIONS),
            " Did you mean DetachKeyPair?"
        );
    }
}
