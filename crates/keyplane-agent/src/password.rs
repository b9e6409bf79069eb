//! Setting the login user's password from the SHA-512 crypt hash the server sent: through the
//! system's own `chpasswd -e` (which keeps /etc/shadow's locking and format), then read back from
//! the shadow file, so a reset is reported applied only when the hash is really there.

use crate::error::HostError;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use keyplane_core::instance_password::is_crypt_hash;

/// The user's hash in a shadow file (`name:hash:…`), if the user has an entry.
pub fn shadow_hash(shadow: &Path, user: &str) -> Result<Option<String>, HostError> {
    let text = std::fs::read_to_string(shadow)
        .map_err(|e| HostError::Io(format!("cannot read {}: {e}", shadow.display())))?;
    Ok(text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(user)).then(|| f.next().unwrap_or_default().to_string())
    }))
}

/// Makes `hash` the user's password unless it already is; errors say what failed.
pub fn set(chpasswd: &Path, shadow: &Path, user: &str, hash: &str) -> Result<(), HostError> {
    if !is_crypt_hash(hash) {
        return Err(HostError::Invalid(
            "the server sent a password hash that is not SHA-512 crypt".into(),
        ));
    }
    if shadow_hash(shadow, user)?.as_deref() == Some(hash) {
        return Ok(());
    }
    // The hash goes through stdin: never on a command line other users can read.
    let mut child = Command::new(chpasswd)
        .arg("-e")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HostError::Command(format!("cannot run {}: {e}", chpasswd.display())))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(format!("{user}:{hash}\n").as_bytes())
        .map_err(|e| HostError::Command(format!("writing to chpasswd failed: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| HostError::Command(format!("chpasswd did not finish: {e}")))?;
    if !out.status.success() {
        return Err(HostError::Command(format!(
            "chpasswd failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if shadow_hash(shadow, user)?.as_deref() != Some(hash) {
        return Err(HostError::Io(format!(
            "chpasswd succeeded but {} does not hold the new password",
            shadow.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_entry_of_the_user_is_found_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let shadow = dir.path().join("shadow");
        std::fs::write(
            &shadow,
            "root:*:19000:0:99999:7:::\nalice:$6$s$h:19000::::::\nalicia:!:1::::::\n",
        )
        .unwrap();
        assert_eq!(
            shadow_hash(&shadow, "alice").unwrap().as_deref(),
            Some("$6$s$h")
        );
        assert_eq!(shadow_hash(&shadow, "ali").unwrap(), None);
    }

    #[test]
    fn a_hash_of_another_shape_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let shadow = dir.path().join("shadow");
        std::fs::write(&shadow, "alice:!:1::::::\n").unwrap();
        let never = dir.path().join("no-such-chpasswd");
        for bad in ["plaintext", "$1$md5$x", "$6$a$b\nroot:$6$x", "$6$", "$6$$"] {
            let e = set(&never, &shadow, "alice", bad).unwrap_err();
            assert!(
                matches!(&e, HostError::Invalid(m) if m.contains("not SHA-512 crypt")),
                "{e}"
            );
        }
    }
}
