//! `*` wildcards of DescribeKeyPairs and DescribeInstances names (`*kp`, `kp*`, `*kp*`, `a*b`).

/// Whether `text` matches `pattern`, where `*` matches any run of characters (including none).
pub fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_match_like_the_vendor_documents() {
        let cases = [
            ("kp", "kp", true),
            ("kp", "kp1", false),
            ("kp*", "kp1", true),
            ("*kp", "my-kp", true),
            ("*kp*", "a-kp-b", true),
            ("a*b*c", "a1b2c", true),
            ("a*b*c", "acb", false),
            ("*", "", true),
            ("ab*ba", "aba", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(matches(p, t), want, "{p} ~ {t}");
        }
    }
}
