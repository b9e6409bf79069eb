//! Typed access to Alibaba parameters: required and optional values, case-insensitive booleans
//! (`True` from Python, `true` from Node), integers, JSON-array lists and `Tag.N.Key` repeat lists.

use keyplane_core::model::Tag;
use keyplane_core::CoreError;

pub struct Params<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

/// How many `Tag.N` entries a call may carry.
pub const MAX_TAG_PARAMS: usize = 20;

impl<'a> Params<'a> {
    pub fn new(query: &'a [(String, String)], form: &'a [(String, String)]) -> Self {
        Self {
            pairs: query
                .iter()
                .chain(form.iter())
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// A parameter that is present and not empty.
    pub fn opt(&self, name: &str) -> Option<&'a str> {
        self.get(name).filter(|v| !v.is_empty())
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

    /// `Prefix.1`, `Prefix.2`, … in index order.
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
            }
        }
        found.sort_by_key(|(n, _)| *n);
        Ok(found.into_iter().map(|(_, v)| v).collect())
    }

    /// `Tag.N.Key` / `Tag.N.Value`, N from 1 to 20.
    pub fn tags(&self) -> Result<Vec<Tag>, CoreError> {
        let mut tags = Vec::new();
        for n in 1..=MAX_TAG_PARAMS {
            let key = self.get(&format!("Tag.{n}.Key"));
            let value = self.get(&format!("Tag.{n}.Value"));
            match (key, value) {
                (None, None) => continue,
                (None, Some(_)) => return Err(CoreError::missing(&format!("Tag.{n}.Key"))),
                (Some(k), v) => tags.push(Tag::parse(k, v.unwrap_or(""))?),
            }
        }
        if self
            .pairs
            .iter()
            .any(|(k, _)| k.starts_with("Tag.") && tag_index(k).is_none_or(|n| n > MAX_TAG_PARAMS))
        {
            return Err(CoreError::TooManyTags);
        }
        Ok(tags)
    }
}

fn tag_index(k: &str) -> Option<usize> {
    k.strip_prefix("Tag.")?.split('.').next()?.parse().ok()
}
