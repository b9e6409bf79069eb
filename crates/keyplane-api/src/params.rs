//! Typed access to request parameters, shared by both dialects: required and optional values,
//! case-insensitive booleans (`True` from Python, `true` from Node and Volcengine), integers, and
//! `Name.N` repeat lists (Alibaba `Tag.N.Key`, Volcengine `InstanceIds.N`, `Tags.N.Key`).

use std::collections::{HashMap, HashSet};

use keyplane_core::model::Tag;
use keyplane_core::CoreError;

pub struct Params<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    /// The first value of each name, so a lookup costs the same however many pairs a body has.
    first: HashMap<&'a str, &'a str>,
}

/// The longest name filter (see [`Params::pattern`]).
pub const MAX_PATTERN_BYTES: usize = 512;

/// How many `Tag.N` entries a call may carry.
pub const MAX_TAG_PARAMS: usize = 20;

impl<'a> Params<'a> {
    pub fn new(query: &'a [(String, String)], form: &'a [(String, String)]) -> Self {
        let pairs: Vec<(&'a str, &'a str)> = query
            .iter()
            .chain(form.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut first = HashMap::with_capacity(pairs.len());
        for (k, v) in &pairs {
            first.entry(*k).or_insert(*v);
        }
        Self { pairs, first }
    }

    /// No parameter may carry a NUL character: no vendor value has one, and PostgreSQL text
    /// cannot store one, so it is refused up front, the same on every backend.
    pub fn nul_free(&self) -> Result<(), CoreError> {
        match self.pairs.iter().find(|(_, v)| v.contains('\0')) {
            Some((k, _)) => Err(CoreError::invalid(k, "contains a NUL character")),
            None => Ok(()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.first.get(name).copied()
    }

    /// A parameter that is present and not empty.
    pub fn opt(&self, name: &str) -> Option<&'a str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A name filter with `*` wildcards (DescribeKeyPairs, DescribeInstances). No name is longer
    /// than 128 characters, so a longer pattern is a mistake or an attack: the database's own
    /// pattern limit would answer it with an internal error.
    pub fn pattern(&self, name: &str) -> Result<Option<&'a str>, CoreError> {
        match self.opt(name) {
            Some(v) if v.len() > MAX_PATTERN_BYTES => Err(CoreError::invalid(
                name,
                format!("A name filter has at most {MAX_PATTERN_BYTES} bytes."),
            )),
            v => Ok(v),
        }
    }

    pub fn required(&self, name: &str) -> Result<&'a str, CoreError> {
        self.opt(name).ok_or_else(|| CoreError::missing(name))
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, CoreError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(CoreError::invalid(name, "It must be true or false.")),
        }
    }

    /// An integer in `min..=max`, or the default when absent.
    pub fn int(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, CoreError> {
        match self.opt(name) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(CoreError::invalid(
                    name,
                    format!("It must be an integer from {min} to {max}."),
                )),
            },
        }
    }

    /// `Prefix.1`, `Prefix.2`, … in index order. More than `max` entries (a repeated index) is
    /// refused as soon as it is seen, before any sorting.
    pub fn repeat(&self, prefix: &str, max: usize) -> Result<Vec<&'a str>, CoreError> {
        let mut found: Vec<(usize, &'a str)> = Vec::new();
        for (k, v) in &self.pairs {
            if let Some(n) = k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) {
                let n: usize = n
                    .parse()
                    .map_err(|_| CoreError::invalid(k, "Unknown list index."))?;
                if n == 0 || n > max {
                    return Err(CoreError::invalid(k, format!("At most {max} entries.")));
                }
                found.push((n, v));
                if found.len() > max {
                    return Err(CoreError::invalid(k, format!("At most {max} entries.")));
                }
            }
        }
        found.sort_by_key(|(n, _)| *n);
        Ok(found.into_iter().map(|(_, v)| v).collect())
    }

    /// Alibaba `Tag.N.Key` / `Tag.N.Value`, N from 1 to 20.
    pub fn tags(&self) -> Result<Vec<Tag>, CoreError> {
        self.tags_named("Tag")
    }

    /// `{prefix}.N.Key` / `{prefix}.N.Value`, N from 1 to 20 (Volcengine says `Tags`).
    pub fn tags_named(&self, prefix: &str) -> Result<Vec<Tag>, CoreError> {
        let mut tags = Vec::new();
        // Most calls carry no tags: one pass over the parameters instead of 40 formatted lookups
        // (which were 5% of a DescribeKeyPairs under load).
        let tagged = |k: &str| {
            k.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
        };
        if !self.pairs.iter().any(|(k, _)| tagged(k)) {
            return Ok(tags);
        }
        for n in 1..=MAX_TAG_PARAMS {
            let key = self.get(&format!("{prefix}.{n}.Key"));
            let value = self.get(&format!("{prefix}.{n}.Value"));
            match (key, value) {
                (None, None) => continue,
                (None, Some(_)) => return Err(CoreError::missing(&format!("{prefix}.{n}.Key"))),
                (Some(k), v) => tags.push(Tag::parse(k, v.unwrap_or(""))?),
            }
        }
        let dotted = format!("{prefix}.");
        let index =
            |k: &str| -> Option<usize> { k.strip_prefix(&dotted)?.split('.').next()?.parse().ok() };
        if self
            .pairs
            .iter()
            .any(|(k, _)| k.starts_with(&dotted) && index(k).is_none_or(|n| n > MAX_TAG_PARAMS))
        {
            return Err(CoreError::TooManyTags);
        }
        Ok(tags)
    }

    /// A strict `Prefix.N` list: indexes exactly 1..=n with no gap, no empty value. `None` when absent.
    /// Errors say which: a bad index or empty value is `Err(false)`, more than `max` is `Err(true)`,
    /// returned at the first entry past the cap, before any sorting or checking of the rest.
    pub fn strict_list(&self, prefix: &str, max: usize) -> Result<Option<Vec<&'a str>>, bool> {
        self.strict_list_capped(prefix, max, false)
    }

    /// [`Params::strict_list`] whose cap counts distinct values (a value may repeat), for calls
    /// that de-duplicate their list: refused at the first distinct value past the cap.
    pub fn strict_list_distinct(
        &self,
        prefix: &str,
        max: usize,
    ) -> Result<Option<Vec<&'a str>>, bool> {
        self.strict_list_capped(prefix, max, true)
    }

    fn strict_list_capped(
        &self,
        prefix: &str,
        max: usize,
        distinct: bool,
    ) -> Result<Option<Vec<&'a str>>, bool> {
        let dotted = format!("{prefix}.");
        let mut found: Vec<(usize, &'a str)> = Vec::new();
        let mut seen: HashSet<&'a str> = HashSet::new();
        for (k, v) in &self.pairs {
            if let Some(rest) = k.strip_prefix(&dotted) {
                let n: usize = rest.parse().map_err(|_| false)?;
                if v.is_empty() {
                    return Err(false);
                }
                found.push((n, v));
                let count = if distinct {
                    seen.insert(v);
                    seen.len()
                } else {
                    found.len()
                };
                if count > max {
                    return Err(true);
                }
            } else if *k == prefix && !v.is_empty() {
                // `InstanceIds=a` without an index is not the Volcengine form.
                return Err(false);
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        found.sort_by_key(|(n, _)| *n);
        if found.iter().enumerate().any(|(i, (n, _))| *n != i + 1) {
            return Err(false);
        }
        Ok(Some(found.into_iter().map(|(_, v)| v).collect()))
    }

    /// Every pair, for hashing a request.
    pub fn pairs(&self) -> &[(&'a str, &'a str)] {
        &self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn strict_lists_refuse_gaps_zero_and_empty_values() {
        let ok = p(&[("InstanceIds.2", "b"), ("InstanceIds.1", "a")]);
        assert_eq!(
            Params::new(&ok, &[]).strict_list("InstanceIds", 100),
            Ok(Some(vec!["a", "b"]))
        );
        assert_eq!(
            Params::new(&[], &[]).strict_list("InstanceIds", 100),
            Ok(None)
        );
        for bad in [
            p(&[("InstanceIds.0", "a")]),
            p(&[("InstanceIds.1", "a"), ("InstanceIds.3", "c")]),
            p(&[("InstanceIds.1", "")]),
            p(&[("InstanceIds.x", "a")]),
            p(&[("InstanceIds.1", "a"), ("InstanceIds.1", "b")]),
        ] {
            assert_eq!(
                Params::new(&bad, &[]).strict_list("InstanceIds", 100),
                Err(false),
                "{bad:?}"
            );
        }
        let many: Vec<(String, String)> = (1..=101)
            .map(|i| (format!("InstanceIds.{i}"), format!("i-{i}")))
            .collect();
        assert_eq!(
            Params::new(&many, &[]).strict_list("InstanceIds", 100),
            Err(true)
        );
    }

    /// `n` valid entries `Prefix.1..=n` and then one that is not a list entry at all.
    fn list_then_bad(
        prefix: &str,
        n: usize,
        value: impl Fn(usize) -> String,
    ) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = (1..=n)
            .map(|i| (format!("{prefix}.{i}"), value(i)))
            .collect();
        v.push((format!("{prefix}.x"), "bad".into()));
        v
    }

    #[test]
    fn lists_stop_at_the_first_entry_past_the_cap() {
        // The bad entry after the 101st is never reached: the answer is "too many", not
        // "malformed", so nothing past the cap was parsed, sorted or compared.
        let many = list_then_bad("InstanceIds", 101, |i| format!("i-{i}"));
        let p = Params::new(&many, &[]);
        assert_eq!(p.strict_list("InstanceIds", 100), Err(true));
        assert_eq!(p.strict_list_distinct("InstanceIds", 100), Err(true));
        // Distinct counting lets a value repeat, and still stops at the 101st distinct one.
        let repeated = list_then_bad("InstanceIds", 300, |i| format!("i-{}", i % 2));
        assert_eq!(
            Params::new(&repeated, &[]).strict_list_distinct("InstanceIds", 100),
            Err(false),
            "two distinct values are within the cap; the bad entry is then reached"
        );
        let mut ok = repeated;
        ok.pop();
        assert_eq!(
            Params::new(&ok, &[])
                .strict_list_distinct("InstanceIds", 100)
                .map(|l| l.map(|l| l.len())),
            Ok(Some(300))
        );
        // A repeated index in a `repeat` list is refused once there are more entries than the cap.
        let same: Vec<(String, String)> = (0..1000)
            .map(|i| ("ImageIds.1".to_string(), format!("img-{i}")))
            .collect();
        assert!(Params::new(&same, &[]).repeat("ImageIds", 100).is_err());
    }

    #[test]
    fn a_lookup_finds_the_first_value_of_a_name() {
        let pairs = p(&[("A", "1"), ("B", "2"), ("A", "3")]);
        let form = p(&[("B", "4"), ("C", "5")]);
        let params = Params::new(&pairs, &form);
        assert_eq!(
            (
                params.get("A"),
                params.get("B"),
                params.get("C"),
                params.get("D")
            ),
            (Some("1"), Some("2"), Some("5"), None)
        );
    }
}
