//! Talking to sshd: `sshd -t` before any reload, `sshd -T` to read what is in effect, and the
//! reload command.

use crate::error::HostError;
use std::path::Path;
use std::process::Command;

/// `sshd -t -f CONFIG`: whether sshd accepts the configuration, else its complaint.
pub fn test_config(sshd: &Path, config: &Path) -> Result<(), HostError> {
    let out = Command::new(sshd)
        .arg("-t")
        .arg("-f")
        .arg(config)
        .output()
        .map_err(|e| HostError::Command(format!("cannot run {}: {e}", sshd.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HostError::Command(format!(
            "sshd -t failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `sshd -T` for the login user: whether password login is in effect (both password and
/// keyboard-interactive must be off for it to count as off).
pub fn password_login(sshd: &Path, config: &Path, user: &str) -> Result<bool, HostError> {
    let out = Command::new(sshd)
        .arg("-T")
        .arg("-f")
        .arg(config)
        .arg("-C")
        .arg(format!("user={user},host=localhost,addr=127.0.0.1"))
        .output()
        .map_err(|e| HostError::Command(format!("cannot run {}: {e}", sshd.display())))?;
    if !out.status.success() {
        return Err(HostError::Command(format!(
            "sshd -T failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse_password_login(&String::from_utf8_lossy(&out.stdout)))
}

/// From `sshd -T` output.
pub fn parse_password_login(text: &str) -> bool {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "yes".into())
    };
    value("passwordauthentication ") == "yes" || value("kbdinteractiveauthentication ") == "yes"
}

/// Runs the reload command (`sh -c`), after `sshd -t` passed.
pub fn reload(command: &str) -> Result<(), HostError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .map_err(|e| HostError::Command(format!("cannot run the reload command: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HostError::Command(format!(
            "the reload command failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn password_login_is_off_only_when_both_methods_are_off() {
        use super::parse_password_login as p;
        assert!(!p(
            "port 22\npasswordauthentication no\nkbdinteractiveauthentication no\n"
        ));
        assert!(p(
            "passwordauthentication no\nkbdinteractiveauthentication yes\n"
        ));
        assert!(p(
            "passwordauthentication yes\nkbdinteractiveauthentication no\n"
        ));
        assert!(p("port 22\n"), "sshd's default is yes");
    }
}
