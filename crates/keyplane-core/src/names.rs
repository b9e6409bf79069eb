//! Key pair names, parsed rather than validated: a [`KeyPairName`] exists only if it obeys the rule
//! of the dialect that created it (SPEC section 3, "Names"). Lookups accept any stored name.

use crate::CoreError;

/// A key pair name that passed its creating dialect's rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPairName(String);

/// Which operation's rule applies: Alibaba ImportKeyPair also allows `.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    AlibabaCreate,
    AlibabaImport,
}

impl KeyPairName {
    /// Alibaba: 2–128 characters, first a letter, not `http://`/`https://`, then letters, digits,
    /// `:`, `_`, `-` (and `.` on import).
    pub fn parse(raw: &str, rule: NameRule) -> Result<Self, CoreError> {
        let bad = || CoreError::InvalidKeyPairName(raw.to_string());
        let len = raw.chars().count();
        if !(2..=128).contains(&len) || raw.starts_with("http://") || raw.starts_with("https://") {
            return Err(bad());
        }
        let mut chars = raw.chars();
        if !chars.next().is_some_and(char::is_alphabetic) {
            return Err(bad());
        }
        let allowed = |c: char| {
            c.is_alphanumeric()
                || matches!(c, ':' | '_' | '-')
                || (c == '.' && rule == NameRule::AlibabaImport)
        };
        if !chars.all(allowed) {
            return Err(bad());
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyPairName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibaba_names_follow_the_documented_rule() {
        use NameRule::*;
        let cases = [
            ("my-kp", AlibabaCreate, true),
            ("a", AlibabaCreate, false),
            ("1kp", AlibabaCreate, false),
            ("_kp", AlibabaCreate, false),
            ("kp:prod_1-a", AlibabaCreate, true),
            ("kp.1", AlibabaCreate, false),
            ("kp.1", AlibabaImport, true),
            ("新建-kp", AlibabaCreate, true),
            ("http://x", AlibabaCreate, false),
            ("kp with space", AlibabaCreate, false),
            ("kp/slash", AlibabaImport, false),
        ];
        for (raw, rule, ok) in cases {
            assert_eq!(KeyPairName::parse(raw, rule).is_ok(), ok, "{raw} {rule:?}");
        }
        assert!(KeyPairName::parse(&"k".repeat(128), AlibabaCreate).is_ok());
        assert!(KeyPairName::parse(&"k".repeat(129), AlibabaCreate).is_err());
    }
}
