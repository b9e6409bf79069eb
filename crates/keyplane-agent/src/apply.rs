//! One reconcile: make the desired binding true on this host, or say exactly why not.
//!
//! Order matters for never locking a host out: the key goes in first; then a reset password, if
//! one is desired; password login goes off only when the key is in place; sshd's files change only
//! if `sshd -t` accepts them, else the last good files are put back.
//!
//! Keys only (`manage_sshd = false`): password login is sshd's own business, never the agent's, so
//! the binding is `applied` once its key is in place (and a reset password set). The report then
//! carries the password setting the binding asks for, marked as not managed, and the agent logs
//! what sshd really has; without this the binding would wait in `pending_restart` forever for a
//! change the agent was told never to make.

use crate::error::HostError;
use std::path::Path;

use keyplane_core::pubkey::PublicKey;

use crate::config::AgentConfig;
use crate::files::{atomic_write_system, lookup_user, SshDir, UserEntry};
use crate::{password, sshd, transform};

/// The desired state, as the server sends it (the wire type shared with the server).
pub use keyplane_core::agent_wire::DesiredState as Desired;

/// What is in effect on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub fingerprints: Vec<String>,
    /// sshd's effective password login; keys only, what the binding asks for (see `managed`).
    pub password_login: bool,
    /// The password reset whose hash is in the shadow file (known only right after an apply).
    pub password_version: Option<i64>,
    /// false in keys-only mode: `password_login` was not read from sshd but is the binding's.
    pub password_login_managed: bool,
    /// How each grant went, after the grants were applied (empty otherwise).
    pub grants: Vec<keyplane_core::agent_wire::GrantReport>,
}

fn user_for(cfg: &AgentConfig, desired_user: &str) -> Result<UserEntry, HostError> {
    let name = cfg.login_user.as_deref().unwrap_or(desired_user);
    lookup_user(&cfg.passwd_file, name)
}

const KEYS: &str = "authorized_keys";

/// Reads what is in effect, changing nothing. `wanted_password_login` is the password setting of
/// the binding last applied: what a keys-only agent reports, since it does not manage it.
pub fn observe(
    cfg: &AgentConfig,
    login_user: &str,
    wanted_password_login: bool,
) -> Result<Observed, HostError> {
    let user = user_for(cfg, login_user)?;
    let keys = match SshDir::open(&user, false)? {
        Some(ssh) => ssh.read(KEYS)?,
        None => String::new(),
    };
    let password_login = if cfg.manage_sshd {
        sshd::password_login(&cfg.sshd_bin, &cfg.sshd_config, &user.name)?
    } else {
        wanted_password_login
    };
    Ok(Observed {
        fingerprints: transform::managed_fingerprints(&keys),
        password_login,
        password_version: None,
        password_login_managed: cfg.manage_sshd,
        grants: Vec::new(),
    })
}

/// Keys only: says in the log that password login was left alone, and how sshd has it, so that an
/// operator reading `applied` knows what it covers.
fn log_unmanaged_password_login(cfg: &AgentConfig, user: &str, wanted: bool) {
    let on_off = |b: bool| if b { "on" } else { "off" };
    match sshd::password_login(&cfg.sshd_bin, &cfg.sshd_config, user) {
        Ok(actual) if actual == wanted => tracing::info!(
            sshd_password_login = on_off(actual),
            "keys only: the key is in place; password login is not managed and sshd already has \
             it as the binding asks"
        ),
        Ok(actual) => tracing::warn!(
            sshd_password_login = on_off(actual),
            binding_password_login = on_off(wanted),
            "keys only: the key is in place; password login is not managed (--keys-only), so \
             sshd keeps it as it is, unlike what the binding asks"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "keys only: the key is in place; password login is not managed, and sshd's setting \
             could not be read"
        ),
    }
}

/// Applies `desired`; on success, what is now in effect.
pub fn apply(cfg: &AgentConfig, desired: &Desired) -> Result<Observed, HostError> {
    let user = user_for(cfg, &desired.login_user)?;
    let key = match &desired.public_key {
        Some(k) => Some(PublicKey::parse(k).map_err(|e| {
            HostError::Invalid(format!("the server sent a key that is not valid: {e}"))
        })?),
        None => None,
    };
    // Any problem with the key file (a FIFO, a root-only ~/.ssh, bad modes…) must not stop the
    // rest: a password reset and password login turned on are how people get back in, so they
    // still happen, and only then is the apply reported failed.
    let key_problem = put_key(&user, key.as_ref()).err();
    let password_version = match &desired.password_hash {
        Some(hash) if desired.password_version > 0 => {
            password::set(&cfg.chpasswd_bin, &cfg.shadow_file, &user.name, hash).map_err(|e| {
                HostError::Command(format!("the password reset was not applied: {e}"))
            })?;
            Some(desired.password_version)
        }
        _ => None,
    };
    if cfg.manage_sshd {
        // Never lock the host out: without a key sshd accepts, password login stays (or goes) on;
        // a vendor key that is revoked is no key sshd accepts.
        let revoked = crate::grants::vendor_key_revoked(desired);
        let password_login = desired.password_login || key_problem.is_some() || revoked;
        let revoked_file = crate::grants::write_revoked_keys(cfg, &desired.revoked_keys)?;
        if let Err(e) = set_sshd(cfg, password_login, revoked_file.as_deref()) {
            return Err(match key_problem {
                Some(k) => k.and(e),
                None => e,
            });
        }
    }
    if let Some(why) = key_problem {
        return Err(if cfg.manage_sshd {
            why.and("password login was left on")
        } else {
            why.and("password login is not managed (keys only)")
        });
    }
    let mut observed = observe(cfg, &desired.login_user, desired.password_login)?;
    observed.password_version = password_version;
    if !cfg.manage_sshd {
        log_unmanaged_password_login(cfg, &user.name, desired.password_login);
    }
    Ok(observed)
}

/// Makes `key` (or, with `None`, no managed key) what the user's authorized_keys holds, and checks
/// that sshd will accept it: the line is there, and the home, `~/.ssh` and the file pass what
/// sshd checks (StrictModes, and that the user can reach and read the file).
fn put_key(user: &UserEntry, key: Option<&PublicKey>) -> Result<(), HostError> {
    let ssh = SshDir::open(user, true)?
        .ok_or_else(|| HostError::Io("~/.ssh could not be created".into()))?;
    let old = ssh.read(KEYS)?;
    let line = key.map(PublicKey::to_openssh);
    let new = transform::authorized_keys(&old, line.as_deref());
    if new != old {
        ssh.write(KEYS, new.as_bytes())?;
    }
    let Some(k) = key else {
        return Ok(());
    };
    if !transform::managed_fingerprints(&ssh.read(KEYS)?).contains(&k.sha256_fingerprint()) {
        return Err(HostError::Io(
            "the key is not in authorized_keys after the write".into(),
        ));
    }
    match ssh.strict_modes_problem(KEYS)? {
        Some(why) => Err(HostError::Refused(format!(
            "sshd would refuse the key: {why}"
        ))),
        None => Ok(()),
    }
}

/// Writes the drop-in (or the managed block of sshd_config) with password login and, when keys are
/// revoked, the `RevokedKeys` file (already written), tests it, reloads; restores the last good
/// file when sshd refuses it.
pub fn set_sshd(
    cfg: &AgentConfig,
    password_login: bool,
    revoked_keys: Option<&str>,
) -> Result<(), HostError> {
    let config = std::fs::read_to_string(&cfg.sshd_config)
        .map_err(|e| HostError::Io(format!("cannot read {}: {e}", cfg.sshd_config.display())))?;
    let (path, new) = if transform::includes_dir(&config, &cfg.sshd_dropin_dir.to_string_lossy()) {
        std::fs::create_dir_all(&cfg.sshd_dropin_dir).map_err(HostError::io)?;
        (
            cfg.dropin_path(),
            transform::dropin(password_login, revoked_keys),
        )
    } else {
        (
            cfg.sshd_config.clone(),
            transform::sshd_config_block(&config, password_login, revoked_keys),
        )
    };
    let old = match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(HostError::Io(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    if old.as_deref() == Some(new.as_bytes()) {
        // Unchanged bytes: no write, no reload. sshd must still accept what is there.
        return sshd::test_config(&cfg.sshd_bin, &cfg.sshd_config);
    }
    atomic_write_system(&path, new.as_bytes(), 0o644)?;
    if let Err(e) = sshd::test_config(&cfg.sshd_bin, &cfg.sshd_config) {
        restore(&path, old.as_deref())?;
        return Err(e.and("the last good configuration was restored"));
    }
    sshd::reload(&cfg.reload_command)
}

fn restore(path: &Path, old: Option<&[u8]>) -> Result<(), HostError> {
    match old {
        Some(bytes) => atomic_write_system(path, bytes, 0o644),
        None => std::fs::remove_file(path)
            .map_err(|e| HostError::Io(format!("cannot remove {}: {e}", path.display()))),
    }
}
