//! Key pair names, parsed rather than validated: a [`KeyPairName`] exists only if it obeys the rule
//! of the dialect that created it (SPEC section 3, "Names"). Lookups accept any stored name. Also the
//! instance attributes ModifyInstanceAttribute changes: name, description and host name.

use crate::error::InstanceAttribute;
use crate::model::OsType;
use crate::CoreError;

/// A key pair name that passed its creating dialect's rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPairName(String);

/// Which operation's rule applies: Alibaba ImportKeyPair also allows `.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    AlibabaCreate,
    AlibabaImport,
    /// 2–64 characters, `.`-separated segments of letters, digits and `-`; no leading, trailing or
    /// doubled `-`/`.`. `_` is accepted too: the vendor's own examples use it (`ssh_key_pair`).
    Volcengine,
}

impl KeyPairName {
    /// Alibaba: 2–128 characters, first a letter, not `http://`/`https://`, then letters, digits,
    /// `:`, `_`, `-` (and `.` on import).
    pub fn parse(raw: &str, rule: NameRule) -> Result<Self, CoreError> {
        let bad = || CoreError::InvalidKeyPairName(raw.to_string());
        if rule == NameRule::Volcengine {
            let len = raw.chars().count();
            let segment_ok = |seg: &str| {
                !seg.is_empty()
                    && seg.split('-').all(|part| {
                        !part.is_empty()
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
            };
            if !(2..=64).contains(&len) || !raw.split('.').all(segment_ok) {
                return Err(bad());
            }
            return Ok(Self(raw.to_string()));
        }
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

/// A key pair description (Volcengine rule): empty, or starting with a letter (any script), of
/// letters, digits, spaces and `. _ - = , ， 。`, at most 255 characters.
pub fn parse_description(raw: &str) -> Result<String, CoreError> {
    let ok = raw.is_empty()
        || (raw.chars().count() <= 255
            && raw.chars().next().is_some_and(char::is_alphabetic)
            && raw
                .chars()
                .all(|c| c.is_alphanumeric() || " ._-=,，。".contains(c)));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(CoreError::InvalidDescription)
    }
}

fn bad_attribute(attribute: InstanceAttribute, reason: &str) -> CoreError {
    CoreError::InvalidInstanceAttribute {
        attribute,
        reason: reason.to_string(),
    }
}

/// An instance name (both vendors): 2–128 characters, starting with a letter (any script), of
/// letters, digits and `. : _ -`; so never `http://` or `https://`.
pub fn parse_instance_name(raw: &str) -> Result<String, CoreError> {
    let bad = |why| Err(bad_attribute(InstanceAttribute::InstanceName, why));
    if !(2..=128).contains(&raw.chars().count()) {
        return bad("it must have 2 to 128 characters");
    }
    if !raw.chars().next().is_some_and(char::is_alphabetic) {
        return bad("it must start with a letter");
    }
    if !raw
        .chars()
        .all(|c| c.is_alphanumeric() || ".:_-".contains(c))
    {
        return bad("it may contain only letters, digits and . : _ -");
    }
    Ok(raw.to_string())
}

/// An Alibaba instance description: 2–256 characters, not starting with `http://` or `https://`.
pub fn parse_instance_description(raw: &str) -> Result<String, CoreError> {
    let bad = |why| Err(bad_attribute(InstanceAttribute::Description, why));
    if !(2..=256).contains(&raw.chars().count()) {
        return bad("it must have 2 to 256 characters");
    }
    if raw.starts_with("http://") || raw.starts_with("https://") {
        return bad("it may not start with http:// or https://");
    }
    if raw.chars().any(char::is_control) {
        return bad("it may not contain control characters");
    }
    Ok(raw.to_string())
}

/// A host name. Linux: 2 to `linux_max` characters, dot-separated segments of letters, digits and
/// `-`, no segment starting or ending with `-`. Windows: 2–15 letters, digits and `-`, not all digits.
pub fn parse_host_name(raw: &str, os: OsType, linux_max: usize) -> Result<String, CoreError> {
    let bad = |why: String| Err(bad_attribute(InstanceAttribute::HostName, &why));
    let max = match os {
        OsType::Linux => linux_max,
        OsType::Windows => 15,
    };
    if !(2..=max).contains(&raw.len()) {
        return bad(format!("it must have 2 to {max} characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return bad("it may contain only letters, digits, - and .".into());
    }
    if os == OsType::Windows && (raw.contains('.') || raw.bytes().all(|b| b.is_ascii_digit())) {
        return bad("a Windows host name has no dots and is not all digits".into());
    }
    let segments_ok = raw
        .split('.')
        .all(|s| !s.is_empty() && !s.starts_with('-') && !s.ends_with('-') && !s.contains("--"));
    if !segments_ok {
        return bad("dots and hyphens may not begin or end it or follow each other".into());
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_attributes_follow_the_vendor_rules() {
        for ok in ["web-1", "Web.prod_1:a", "服务器1"] {
            assert_eq!(parse_instance_name(ok).as_deref(), Ok(ok));
        }
        for bad in ["a", "1web", "-web", "web 1", "http://x", &"w".repeat(129)] {
            assert!(parse_instance_name(bad).is_err(), "{bad}");
        }
        assert!(parse_instance_description("the web tier").is_ok());
        for bad in [
            "a",
            "http://x.example",
            "https://x",
            "line\nbreak",
            &"d".repeat(257),
        ] {
            assert!(parse_instance_description(bad).is_err(), "{bad}");
        }
        for ok in ["web-1", "web.prod-1.local", "ab"] {
            assert!(parse_host_name(ok, OsType::Linux, 64).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "-web",
            "web-",
            "a..b",
            "a--b",
            ".ab",
            "ab.",
            "a_b",
            "a b",
            &"h".repeat(65),
        ] {
            assert!(parse_host_name(bad, OsType::Linux, 64).is_err(), "{bad}");
        }
        assert!(parse_host_name("win-1", OsType::Windows, 64).is_ok());
        for bad in ["win.1", "12345", "a-very-long-windows-name"] {
            assert!(parse_host_name(bad, OsType::Windows, 64).is_err(), "{bad}");
        }
    }

    #[test]
    fn volcengine_names_are_dot_separated_segments() {
        for ok in ["ab", "my-key", "web.prod-1", "ssh_key_pair", "A1.b2.c3"] {
            assert!(KeyPairName::parse(ok, NameRule::Volcengine).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "-ab",
            "ab-",
            "a..b",
            "a--b",
            ".ab",
            "ab.",
            "a b",
            "a:b",
            "新建",
            &"k".repeat(65),
        ] {
            assert!(
                KeyPairName::parse(bad, NameRule::Volcengine).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn descriptions_follow_the_volcengine_rule() {
        for ok in ["", "web servers", "新的 描述", "a.b_c-d=e,f，g。"] {
            assert!(parse_description(ok).is_ok(), "{ok}");
        }
        for bad in ["1abc", " lead", "a/b", "x<script>", &"a".repeat(256)] {
            assert!(parse_description(bad).is_err(), "{bad}");
        }
    }

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
