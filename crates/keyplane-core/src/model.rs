//! The resources: key pairs, instances, images, regions, and the small enums they carry.

use chrono::{DateTime, Utc};

use crate::binding::Binding;
use crate::CoreError;

/// Key pairs allowed per account and region (the vendor's quota).
pub const KEY_PAIR_QUOTA: usize = 500;
/// Tags allowed per resource.
pub const MAX_TAGS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl Tag {
    /// Tag keys: non-empty, ≤ 128, not `aliyun`/`acs:` prefixed, no URL; values ≤ 128, not `acs:`.
    pub fn parse(key: &str, value: &str) -> Result<Self, CoreError> {
        let url = |s: &str| s.contains("http://") || s.contains("https://");
        if key.is_empty() || key.chars().count() > 128 || url(key) {
            return Err(CoreError::InvalidTag(format!("tag key {key:?}")));
        }
        if key.starts_with("aliyun") || key.starts_with("acs:") {
            return Err(CoreError::InvalidTag(format!("reserved tag key {key:?}")));
        }
        if value.chars().count() > 128 || value.starts_with("acs:") || url(value) {
            return Err(CoreError::InvalidTag(format!("tag value {value:?}")));
        }
        Ok(Self {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub id: String,
    pub account_id: String,
    pub region_id: String,
    pub name: String,
    /// OpenSSH one-line form, re-serialized from the parsed key.
    pub public_key: String,
    pub fingerprint_sha256: String,
    pub fingerprint_md5: String,
    pub resource_group_id: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    /// Set when an attribute (the description) changes after creation.
    pub updated_at: Option<DateTime<Utc>>,
    pub tags: Vec<Tag>,
}

impl KeyPair {
    /// Whether `fp` names this key in any of the forms the dialects use.
    pub fn has_fingerprint(&self, fp: &str) -> bool {
        let bare_md5 = self.fingerprint_md5.replace(':', "");
        let fp = fp.trim();
        fp == self.fingerprint_sha256
            || fp.eq_ignore_ascii_case(&self.fingerprint_md5)
            || fp.eq_ignore_ascii_case(&format!("MD5:{}", self.fingerprint_md5))
            || fp.eq_ignore_ascii_case(&bare_md5)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsType {
    Linux,
    Windows,
}

impl OsType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Windows => "windows",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "linux" => Some(Self::Linux),
            "windows" => Some(Self::Windows),
            _ => None,
        }
    }
}

/// The instance status model; each dialect renders it in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceStatus {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    Rebooting,
}

impl InstanceStatus {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Rebooting,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Running => "Running",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Rebooting => "Rebooting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Where an instance lives: simulated by the server, or a real host running the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Sim,
    Host,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sim" => Some(Self::Sim),
            "host" => Some(Self::Host),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub account_id: String,
    pub region_id: String,
    pub zone_id: String,
    pub name: String,
    pub host_name: String,
    pub description: String,
    pub image_id: String,
    pub instance_type: String,
    pub os_type: OsType,
    pub os_name: String,
    pub status: InstanceStatus,
    pub io_optimized: bool,
    pub agent_installed: bool,
    pub login_user: String,
    pub provider: Provider,
    pub has_password: bool,
    /// The SHA-512 crypt hash of the password set at creation or by the last reset, if keyplane
    /// set one; never the plaintext.
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    /// The bound key pair's name, denormalized: key pair names never change once created.
    pub key_pair_name: Option<String>,
    pub binding: Binding,
    pub tags: Vec<Tag>,
}

/// A catalog image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: &'static str,
    pub name: &'static str,
    pub os_type: OsType,
    pub os_name: &'static str,
    pub platform: &'static str,
    pub agent_installed: bool,
    pub size_gib: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub id: &'static str,
    pub local_name: &'static str,
    pub zones: &'static [&'static str],
}

impl Region {
    /// The zone a call names (it must be one of this region's), or the region's first zone.
    pub fn zone(&self, named: Option<&str>) -> Result<&'static str, crate::CoreError> {
        match named {
            Some(z) => self
                .zones
                .iter()
                .find(|x| **x == z)
                .copied()
                .ok_or_else(|| crate::CoreError::ZoneNotFound(z.into())),
            None => Ok(self.zones[0]),
        }
    }
}

/// A fingerprint filter in any form the dialects accept, normalized to one of the stored forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerprintQuery {
    Sha256(String),
    Md5(String),
    /// Nothing stored can match it.
    Unmatchable,
}

impl FingerprintQuery {
    /// `SHA256:…`, `MD5:aa:bb…`, `aa:bb:…` or bare 32-hex, case-insensitive for MD5.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        if raw.starts_with("SHA256:") {
            return Self::Sha256(raw.to_string());
        }
        let hex: String = raw
            .trim_start_matches("MD5:")
            .trim_start_matches("md5:")
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Self::Unmatchable;
        }
        let pairs: Vec<&str> = (0..16).map(|i| &hex[i * 2..i * 2 + 2]).collect();
        Self::Md5(pairs.join(":"))
    }
}

/// The current time at the microsecond precision every store keeps.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_filters_accept_every_vendor_form() {
        let colon = "d5:92:4e:54:74:19:04:9e:9c:2d:2c:20:a5:63:7c:cb";
        for form in [
            colon.to_string(),
            colon.to_uppercase(),
            format!("MD5:{colon}"),
            colon.replace(':', ""),
        ] {
            assert_eq!(
                FingerprintQuery::parse(&form),
                FingerprintQuery::Md5(colon.into())
            );
        }
        assert_eq!(
            FingerprintQuery::parse("ab:cd"),
            FingerprintQuery::Unmatchable
        );
    }

    #[test]
    fn tags_follow_the_vendor_rules() {
        assert!(Tag::parse("env", "").is_ok());
        assert!(Tag::parse("", "v").is_err());
        assert!(Tag::parse("aliyun-x", "v").is_err());
        assert!(Tag::parse("acs:x", "v").is_err());
        assert!(Tag::parse("k", "https://x").is_err());
        assert!(Tag::parse(&"k".repeat(129), "v").is_err());
    }
}
