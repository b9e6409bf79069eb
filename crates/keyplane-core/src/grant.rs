//! Grants (SPEC section 15): a key pair given to a named OS user on an instance, beside the vendor
//! binding of the login user, optionally until a deadline. What a grant is, the rules its inputs
//! follow, and how its state is derived, for the server, the store and the agent alike.

use chrono::{DateTime, Utc};

use crate::CoreError;

/// The shortest and longest TTL of a grant.
pub const MIN_TTL_SECS: i64 = 60;
pub const MAX_TTL_SECS: i64 = 90 * 86_400;
/// Instances one grant call names.
pub const MAX_INSTANCES: usize = 50;

const TTL_RULE: &str =
    "A number and a unit (s, m, h or d), e.g. 90s, 15m, 8h or 30d, from 1 minute to 90 days.";

/// `--ttl`: seconds within [`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`].
pub fn parse_ttl(text: &str) -> Result<i64, CoreError> {
    crate::duration::parse_secs(text)
        .filter(|s| (MIN_TTL_SECS..=MAX_TTL_SECS).contains(s))
        .ok_or_else(|| CoreError::invalid("Ttl", TTL_RULE))
}

/// A POSIX user name as `useradd` accepts it by default: a lower-case letter or `_` first, then
/// lower-case letters, digits, `_` and `-`, at most 32 characters (a trailing `$` for machine
/// accounts is not accepted: they do not log in).
pub fn check_os_user(name: &str) -> Result<(), CoreError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 32
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(
            "OsUser",
            "A user name: a lower-case letter or _ first, then lower-case letters, digits, _ and -, at most 32.",
        ))
    }
}

/// Where a grant stands (SPEC section 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    PendingRestart,
    Applied,
    Failed,
    Expired,
    Revoked,
}

impl GrantState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingRestart => "pending_restart",
            Self::Applied => "applied",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// A grant as stored, with what its state is derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub account_id: String,
    pub region_id: String,
    pub instance_id: String,
    pub key_pair_id: String,
    /// The key pair's name and public key (joined in when read).
    pub key_pair_name: String,
    pub public_key: String,
    pub os_user: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// `--now`: in effect without a restart.
    pub immediate: bool,
    /// The instance's apply sequence when the grant was made: a later start or reboot brings it
    /// into effect.
    pub apply_seq: i64,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// What the host's agent last reported: `applied`, `failed`, or empty.
    pub result: String,
    pub error: Option<String>,
}

/// What a grant's state is derived from besides the grant: its instance's now.
#[derive(Debug, Clone, Copy)]
pub struct InstanceNow {
    pub apply_seq: i64,
    /// A simulated instance (no agent): in effect means applied.
    pub simulated: bool,
    pub started_at: Option<DateTime<Utc>>,
}

impl Grant {
    /// Whether the grant is to be on the host: not ended, and either immediate or made before
    /// the instance's last start or reboot.
    pub fn in_effect(&self, inst: &InstanceNow, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none()
            && self.expires_at.is_none_or(|t| t > now)
            && (self.immediate
                || inst.apply_seq > self.apply_seq
                || (inst.simulated && inst.started_at.is_some_and(|s| s > self.created_at)))
    }

    pub fn state(&self, inst: &InstanceNow, now: DateTime<Utc>) -> GrantState {
        if self.revoked_at.is_some() {
            GrantState::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            GrantState::Expired
        } else if !self.in_effect(inst, now) {
            GrantState::PendingRestart
        } else if inst.simulated {
            GrantState::Applied
        } else {
            match self.result.as_str() {
                "applied" => GrantState::Applied,
                "failed" => GrantState::Failed,
                _ => GrantState::PendingRestart,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_and_user_names_follow_their_rules() {
        assert_eq!(parse_ttl("1m").unwrap(), 60);
        assert_eq!(parse_ttl("90d").unwrap(), 90 * 86_400);
        for bad in ["59s", "91d", "0m", "", "1h30m"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        for good in ["deploy", "_svc", "a", "web-1", "x2_y"] {
            assert!(check_os_user(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Root",
            "1user",
            "-x",
            "a b",
            "a/b",
            "..",
            "user$",
            &"a".repeat(33),
        ] {
            assert!(check_os_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_grant_state_follows_revocation_expiry_restart_and_the_report() {
        let t0 = Utc::now();
        let g = Grant {
            id: "g".into(),
            account_id: "a".into(),
            region_id: "r".into(),
            instance_id: "i".into(),
            key_pair_id: "kp".into(),
            key_pair_name: "k".into(),
            public_key: String::new(),
            os_user: "deploy".into(),
            expires_at: Some(t0 + chrono::Duration::hours(1)),
            immediate: false,
            apply_seq: 3,
            created_at: t0,
            revoked_at: None,
            result: String::new(),
            error: None,
        };
        let host = |seq| InstanceNow {
            apply_seq: seq,
            simulated: false,
            started_at: None,
        };
        assert_eq!(g.state(&host(3), t0), GrantState::PendingRestart);
        assert_eq!(
            g.state(&host(4), t0),
            GrantState::PendingRestart,
            "not reported yet"
        );
        let reported = Grant {
            result: "applied".into(),
            ..g.clone()
        };
        assert_eq!(reported.state(&host(4), t0), GrantState::Applied);
        let later = t0 + chrono::Duration::hours(1);
        assert_eq!(reported.state(&host(4), later), GrantState::Expired);
        let now = Grant {
            immediate: true,
            result: "failed".into(),
            ..g.clone()
        };
        assert_eq!(now.state(&host(3), t0), GrantState::Failed);
        let sim = InstanceNow {
            apply_seq: 0,
            simulated: true,
            started_at: Some(t0 + chrono::Duration::seconds(1)),
        };
        assert_eq!(
            g.state(&sim, t0),
            GrantState::Applied,
            "a simulated reboot applies it"
        );
        let revoked = Grant {
            revoked_at: Some(t0),
            ..g
        };
        assert_eq!(revoked.state(&sim, t0), GrantState::Revoked);
    }
}
