//! Grants on the host (SPEC section 15): each granted user's authorized_keys gets a section of its
//! own, one line per grant, written with OpenSSH's `expiry-time=` when the grant has a deadline so
//! sshd refuses the key after it even if this agent is not running; lines past their deadline are
//! dropped at the next pass. Keys revoked in the account go to a `RevokedKeys` file that the sshd
//! drop-in names, so a copy of such a key in anyone's authorized_keys is refused too.
//!
//! The same guarantees as the vendor key: everything inside a user's home is done through file
//! descriptors ([`SshDir`]), hand-written lines are kept, nothing is written for a user that does
//! not exist (no user is ever created), and sshd's files change only if `sshd -t` accepts them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use keyplane_core::agent_wire::{DesiredGrant, GrantReport};
use keyplane_core::pubkey::PublicKey;

use crate::apply::Desired;
use crate::config::AgentConfig;
use crate::error::HostError;
use crate::files::{atomic_write_system, lookup_user, SshDir};
use crate::transform;

const KEYS: &str = "authorized_keys";
/// The users this agent has written a grants section for, one per line: a user whose last grant
/// ended still has a section to remove.
const USERS_FILE: &str = "grant-users";

/// The file of revoked keys sshd reads, beside sshd_config.
pub fn revoked_keys_path(cfg: &AgentConfig) -> std::path::PathBuf {
    cfg.sshd_config.with_file_name("keyplane_revoked_keys")
}

/// Writes the revoked keys (one OpenSSH line each) where sshd reads them; the path to name in the
/// drop-in, or `None` when nothing is revoked (the drop-in then names no file).
pub fn write_revoked_keys(cfg: &AgentConfig, keys: &[String]) -> Result<Option<String>, HostError> {
    let path = revoked_keys_path(cfg);
    if keys.is_empty() {
        return Ok(None);
    }
    let mut lines: Vec<String> = keys
        .iter()
        .filter_map(|k| PublicKey::parse(k).ok())
        .map(|k| k.to_openssh())
        .collect();
    lines.sort();
    lines.dedup();
    let text = lines.join("\n") + "\n";
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        atomic_write_system(&path, text.as_bytes(), 0o644)?;
    }
    Ok(Some(path.to_string_lossy().into_owned()))
}

/// Whether the vendor-bound key of the login user is among the revoked ones: sshd then refuses it,
/// so password login must not be off on its account.
pub fn vendor_key_revoked(desired: &Desired) -> bool {
    let Some(key) = desired
        .public_key
        .as_deref()
        .and_then(|k| PublicKey::parse(k).ok())
    else {
        return false;
    };
    let fp = key.sha256_fingerprint();
    desired
        .revoked_keys
        .iter()
        .filter_map(|k| PublicKey::parse(k).ok())
        .any(|k| k.sha256_fingerprint() == fp)
}

/// `expiry-time="YYYYMMDDHHMMSSZ"` of a deadline (OpenSSH's format, UTC).
fn expiry_option(at: DateTime<Utc>) -> String {
    format!("expiry-time=\"{}\"", at.format("%Y%m%d%H%M%SZ"))
}

fn deadline(g: &DesiredGrant) -> Option<DateTime<Utc>> {
    g.expires_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The line of a grant: its options, the key (without its comment), and a comment naming it.
fn line(g: &DesiredGrant) -> Result<String, HostError> {
    let key = PublicKey::parse(&g.public_key)
        .map_err(|e| HostError::Invalid(format!("the server sent a key that is not valid: {e}")))?;
    let openssh = key.to_openssh();
    let mut parts: Vec<&str> = openssh.splitn(3, ' ').take(2).collect();
    let option = deadline(g).map(expiry_option);
    if let Some(o) = &option {
        parts.insert(0, o);
    }
    Ok(format!(
        "{} {}{}",
        parts.join(" "),
        transform::GRANT_TAG,
        g.grant_id
    ))
}

fn remembered_users(cfg: &AgentConfig) -> BTreeSet<String> {
    std::fs::read_to_string(cfg.state_dir.join(USERS_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .filter(|u| keyplane_core::grant::check_os_user(u).is_ok())
        .collect()
}

fn remember_users(cfg: &AgentConfig, users: &BTreeSet<String>) {
    let text: String = users.iter().map(|u| format!("{u}\n")).collect();
    if let Err(e) = atomic_write_system(&cfg.state_dir.join(USERS_FILE), text.as_bytes(), 0o600) {
        tracing::warn!(error = %e, "remembering the granted users failed");
    }
}

/// Makes the grants of `desired` (those not past their deadline at `now`) what each user's grants
/// section holds, and the revoked keys what sshd refuses; how each grant went. `password_login` is
/// the setting last applied, kept as it is unless the login user's own key is revoked.
pub fn apply(
    cfg: &AgentConfig,
    desired: &Desired,
    password_login: bool,
    now: DateTime<Utc>,
) -> Vec<GrantReport> {
    if cfg.manage_sshd {
        if let Err(e) = put_revoked(cfg, desired, password_login) {
            tracing::warn!(error = %e, "the revoked keys could not be put in place");
        }
    } else if !desired.revoked_keys.is_empty() {
        tracing::warn!(
            "keys only: revoked keys are not enforced, sshd is not the agent's to change"
        );
    }
    let mut by_user: BTreeMap<String, Vec<&DesiredGrant>> = BTreeMap::new();
    for g in desired
        .grants
        .iter()
        .filter(|g| deadline(g).is_none_or(|t| t > now))
    {
        by_user.entry(g.os_user.clone()).or_default().push(g);
    }
    let mut users = remembered_users(cfg);
    users.extend(by_user.keys().cloned());
    let mut reports = Vec::new();
    let mut still = BTreeSet::new();
    for user in &users {
        let grants = by_user.get(user).map(Vec::as_slice).unwrap_or_default();
        match put_user(cfg, user, grants) {
            Ok(()) => {
                if !grants.is_empty() {
                    still.insert(user.clone());
                }
                reports.extend(grants.iter().map(|g| GrantReport {
                    grant_id: g.grant_id.clone(),
                    error: None,
                }));
            }
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "a grant could not be applied");
                if !grants.is_empty() {
                    still.insert(user.clone());
                }
                reports.extend(grants.iter().map(|g| GrantReport {
                    grant_id: g.grant_id.clone(),
                    error: Some(e.to_string()),
                }));
            }
        }
    }
    remember_users(cfg, &still);
    reports
}

/// Puts the revoked keys where sshd reads them and names the file in sshd's settings (or no file
/// when none is revoked). Password login stays as sshd has it now (`password_login`, the setting
/// last applied, or on if sshd has it on), and goes on if the login user's own key is revoked:
/// this pass never turns it off.
fn put_revoked(
    cfg: &AgentConfig,
    desired: &Desired,
    password_login: bool,
) -> Result<(), HostError> {
    let file = write_revoked_keys(cfg, &desired.revoked_keys)?;
    let user = cfg.login_user.as_deref().unwrap_or(&desired.login_user);
    let on_now = crate::sshd::password_login(&cfg.sshd_bin, &cfg.sshd_config, user).unwrap_or(true);
    let keep_on = password_login || on_now || vendor_key_revoked(desired);
    crate::apply::set_sshd(cfg, keep_on, file.as_deref())
}

/// Writes `user`'s grants section (removing it when `grants` is empty).
fn put_user(cfg: &AgentConfig, user: &str, grants: &[&DesiredGrant]) -> Result<(), HostError> {
    let entry = match lookup_user(&cfg.passwd_file, user) {
        Ok(u) => u,
        // No such user: nothing is written, and there is nothing to remove.
        Err(e) if grants.is_empty() => {
            tracing::debug!(user, error = %e, "no grants section to remove");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let lines = grants
        .iter()
        .map(|g| line(g))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(ssh) = SshDir::open(&entry, !lines.is_empty())? else {
        return Ok(());
    };
    let old = ssh.read(KEYS)?;
    let new = transform::grants_section(&old, &lines);
    if new != old {
        ssh.write(KEYS, new.as_bytes())?;
    }
    if lines.is_empty() {
        return Ok(());
    }
    let written = transform::granted_ids(&ssh.read(KEYS)?);
    if grants.iter().any(|g| !written.contains(&g.grant_id)) {
        return Err(HostError::Io(
            "a granted key is not in authorized_keys after the write".into(),
        ));
    }
    match ssh.strict_modes_problem(KEYS)? {
        Some(why) => Err(HostError::Refused(format!(
            "sshd would refuse the key: {why}"
        ))),
        None => Ok(()),
    }
}

/// Whether no earlier run left a grants section or a revoked key behind (then a host without
/// grants needs no pass at start).
pub fn nothing_left(cfg: &AgentConfig) -> bool {
    remembered_users(cfg).is_empty() && !revoked_keys_path(cfg).exists()
}

/// What a pass of [`apply`] depends on: the grants and revoked keys sent, and which of the
/// grants' deadlines have passed.
pub fn fingerprint(
    desired: &Desired,
    now: DateTime<Utc>,
) -> (Vec<DesiredGrant>, Vec<String>, usize) {
    let passed = desired
        .grants
        .iter()
        .filter(|g| deadline(g).is_some_and(|t| t <= now))
        .count();
    (desired.grants.clone(), desired.revoked_keys.clone(), passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f alice@laptop";

    #[test]
    fn a_grant_line_carries_its_deadline_and_its_id_not_the_keys_comment() {
        let g = DesiredGrant {
            grant_id: "gr-1".into(),
            os_user: "deploy".into(),
            public_key: K.into(),
            expires_at: Some("2026-12-01T08:30:05Z".into()),
        };
        assert_eq!(
            line(&g).unwrap(),
            "expiry-time=\"20261201083005Z\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f keyplane-grant:gr-1"
        );
        let forever = DesiredGrant {
            expires_at: None,
            ..g
        };
        assert!(line(&forever).unwrap().starts_with("ssh-ed25519 "));
        let text = transform::grants_section("hand@key\n", &[line(&forever).unwrap()]);
        assert_eq!(transform::granted_ids(&text), ["gr-1"]);
        assert!(text.starts_with("hand@key\n"));
        assert_eq!(
            transform::grants_section(&text, &[]),
            "hand@key\n",
            "removed, the rest kept"
        );
    }
}
