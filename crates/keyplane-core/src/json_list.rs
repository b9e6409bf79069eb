//! The JSON string lists of the Alibaba dialect (`InstanceIds`, `KeyPairNames`), parsed with their
//! cap enforced while parsing.
//!
//! A request body may hold a million bytes of list; de-duplicating all of it before looking at
//! the cap made one call cost seconds of CPU (issue 13). Here each element is checked against a
//! hash set as it is read, and parsing stops at the first distinct element past the cap, so a list
//! of any length costs no more than one at the cap plus its duplicates, each O(1).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};

/// Why a list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListError {
    /// Not a JSON array of non-empty strings, or empty.
    Malformed,
    /// More than the cap of distinct values.
    TooMany,
}

/// How the values are read.
#[derive(Debug, Clone, Copy)]
pub struct ListRule {
    /// The most distinct values accepted.
    pub max: usize,
    /// Whether surrounding whitespace is dropped before the value is checked and compared.
    pub trim: bool,
}

/// Parses a JSON array of non-empty strings into its distinct values, in first-seen order.
pub fn parse(raw: &str, rule: ListRule) -> Result<Vec<String>, ListError> {
    let too_many = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(raw);
    let parsed = de.deserialize_seq(Bounded {
        rule,
        too_many: &too_many,
    });
    if too_many.get() {
        return Err(ListError::TooMany);
    }
    let values = parsed.map_err(|_| ListError::Malformed)?;
    de.end().map_err(|_| ListError::Malformed)?;
    if values.is_empty() {
        return Err(ListError::Malformed);
    }
    Ok(values)
}

/// At most the first `n` strings of a JSON array, without reading past them (for the audit
/// record, which names a bounded number of resources). `None` when `raw` does not start as a
/// JSON array of strings.
pub fn first(raw: &str, n: usize) -> Option<Vec<String>> {
    struct Prefix<'a> {
        n: usize,
        out: &'a RefCell<Vec<String>>,
        done: &'a Cell<bool>,
    }
    impl<'de> Visitor<'de> for Prefix<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while self.out.borrow().len() < self.n {
                match seq.next_element::<String>()? {
                    Some(v) => self.out.borrow_mut().push(v),
                    None => break,
                }
            }
            self.done.set(true);
            Ok(())
        }
    }
    let (out, done) = (RefCell::new(Vec::new()), Cell::new(false));
    let mut de = serde_json::Deserializer::from_str(raw);
    // Stopping early leaves the rest unread, which serde_json reports as an unclosed array: what
    // counts is whether the visitor got its values, not that error.
    let _ = de.deserialize_seq(Prefix {
        n,
        out: &out,
        done: &done,
    });
    done.get().then(|| out.into_inner())
}

struct Bounded<'a> {
    rule: ListRule,
    too_many: &'a Cell<bool>,
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of non-empty strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        while let Some(raw) = seq.next_element::<String>()? {
            let value = if self.rule.trim { raw.trim() } else { &raw };
            if value.is_empty() {
                return Err(A::Error::custom("an empty value"));
            }
            if seen.contains(value) {
                continue;
            }
            if out.len() == self.rule.max {
                // The first distinct value past the cap: stop reading here.
                self.too_many.set(true);
                return Err(A::Error::custom("too many values"));
            }
            seen.insert(value.to_string());
            out.push(value.to_string());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: ListRule = ListRule { max: 3, trim: true };

    #[test]
    fn distinct_values_in_first_seen_order() {
        assert_eq!(
            parse(r#"["b", "a ", "b", "a"]"#, RULE),
            Ok(vec!["b".to_string(), "a".to_string()])
        );
        assert_eq!(
            parse(r#"["a","a","a","a","b","c"]"#, RULE).unwrap().len(),
            3
        );
        for bad in [
            "",
            "a",
            "[]",
            "{}",
            "[1]",
            r#"[""]"#,
            r#"[" "]"#,
            r#"["a""#,
            r#"["a"] x"#,
            "null",
        ] {
            assert_eq!(parse(bad, RULE), Err(ListError::Malformed), "{bad}");
        }
        let untrimmed = ListRule {
            max: 3,
            trim: false,
        };
        assert_eq!(parse(r#"["a"," a"]"#, untrimmed).unwrap().len(), 2);
        assert_eq!(parse(r#"["a","b","c","d"]"#, RULE), Err(ListError::TooMany));
    }

    #[test]
    fn parsing_stops_at_the_first_distinct_value_past_the_cap() {
        // Whatever follows the fourth distinct value is never read: a tail that is not JSON at
        // all, or a megabyte of further values, ends in the same refusal.
        assert_eq!(
            parse(r#"["a","b","c","d", this is not json"#, RULE),
            Err(ListError::TooMany)
        );
        let mut huge = String::from(r#"["a","b","c""#);
        for i in 0..100_000 {
            huge.push_str(&format!(",\"i-{i}\""));
        }
        huge.push_str(", {broken");
        assert_eq!(parse(&huge, RULE), Err(ListError::TooMany));
        // Duplicates before the cap are read (each one is a hash lookup), then the cap applies.
        assert_eq!(
            parse(r#"["a","a","b","c","d", not json"#, RULE),
            Err(ListError::TooMany)
        );
    }

    #[test]
    fn first_reads_only_the_values_asked_for() {
        assert_eq!(
            first(r#"["a","b", not json"#, 2),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(first(r#"["a"]"#, 5), Some(vec!["a".to_string()]));
        assert_eq!(first("i-1", 5), None);
        assert_eq!(first("[1]", 5), None);
    }
}
