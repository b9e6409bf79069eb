//! The JSON of `/agent/v1`, defined once for the server and the agent. The names are the wire's
//! (PascalCase); every field an older peer may not send has a default, so an agent and a server of
//! different releases keep understanding each other (docs/AGENT.md).

use serde::{Deserialize, Serialize};

/// `POST /agent/v1/register`: a host redeems a one-time token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registration {
    pub token: String,
    /// `linux` (the agent's) or `windows`; empty means linux.
    #[serde(default)]
    pub os_type: String,
    #[serde(default)]
    pub os_name: String,
    /// Empty means root.
    #[serde(default)]
    pub login_user: String,
    #[serde(default)]
    pub host_name: String,
}

/// The answer to a registration: the host's instance and the credential it polls with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registered {
    pub instance_id: String,
    #[serde(default)]
    pub region_id: String,
    pub credential: String,
}

/// `GET /agent/v1/desired`: what the host must have. Its ETag is a digest of this JSON text, so
/// the field order is part of the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DesiredState {
    #[serde(default)]
    pub instance_id: String,
    pub login_user: String,
    /// The bound key (an OpenSSH line), if any.
    pub public_key: Option<String>,
    /// Its SHA-256 fingerprint.
    #[serde(default)]
    pub fingerprint: Option<String>,
    pub password_login: bool,
    /// Raised by every start or reboot: the host applies when it is newer than what it applied.
    pub apply_seq: i64,
    /// After a password reset: its SHA-512 crypt hash and version.
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub password_version: i64,
    /// The grants in effect on this host (SPEC section 15), applied as soon as they change,
    /// without a restart. Left out of the text when empty, so the text of a host without grants
    /// (and its ETag) is what every earlier release sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<DesiredGrant>,
    /// Public keys (OpenSSH lines) revoked in the account: sshd refuses them for every user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_keys: Vec<String>,
}

/// One grant a host must have: `public_key` in `os_user`'s authorized_keys until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DesiredGrant {
    pub grant_id: String,
    pub os_user: String,
    pub public_key: String,
    /// RFC 3339, UTC; `None`: no deadline.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// How one grant went on the host: `error` is `None` when it is in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantReport {
    pub grant_id: String,
    #[serde(default)]
    pub error: Option<String>,
}

/// `POST /agent/v1/report`: what is in effect on the host, after an apply (`applied_seq`) or a
/// check (`None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub applied_seq: Option<i64>,
    #[serde(default)]
    pub fingerprints: Vec<String>,
    pub password_login: bool,
    #[serde(default)]
    pub password_version: Option<i64>,
    /// False when the agent keeps its hands off sshd (keys only): `password_login` is then the
    /// binding's, not read from sshd. Servers that do not know the field ignore it.
    #[serde(default = "managed")]
    pub password_login_managed: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// The grants the agent applied or could not, after it changed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantReport>,
}

fn managed() -> bool {
    true
}

/// The answer to a report: the binding's state as the server now derives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportAnswer {
    pub binding_state: String,
    #[serde(default)]
    pub binding_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The desired state's text is what its ETag digests: the same fields in the same order as
    /// every release before this type sent.
    #[test]
    fn the_desired_state_keeps_its_text() {
        let d = DesiredState {
            instance_id: "i-1".into(),
            login_user: "root".into(),
            public_key: Some("ssh-ed25519 AAAA k".into()),
            fingerprint: Some("SHA256:x".into()),
            password_login: false,
            apply_seq: 3,
            password_hash: None,
            password_version: 0,
            grants: Vec::new(),
            revoked_keys: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"InstanceId":"i-1","LoginUser":"root","PublicKey":"ssh-ed25519 AAAA k","Fingerprint":"SHA256:x","PasswordLogin":false,"ApplySeq":3,"PasswordHash":null,"PasswordVersion":0}"#
        );
    }

    /// A report from an agent older than `PasswordLoginManaged` reads as managed.
    #[test]
    fn an_older_agents_report_reads() {
        let r: Report = serde_json::from_str(
            r#"{"AppliedSeq":1,"Fingerprints":["SHA256:x"],"PasswordLogin":false,"PasswordVersion":null,"Error":null}"#,
        )
        .unwrap();
        assert!(r.password_login_managed);
        assert_eq!(r.fingerprints, ["SHA256:x"]);
    }
}
