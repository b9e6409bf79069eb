//! Files the agent writes as root on behalf of a user: never through a symlink under the home,
//! always atomically (temp file in the same directory, fsync, owner and mode, rename, fsync dir).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A login user from the passwd database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks `name` up in a passwd file (`/etc/passwd`).
pub fn lookup_user(passwd: &Path, name: &str) -> Result<UserEntry, String> {
    let text =
        fs::read_to_string(passwd).map_err(|e| format!("cannot read {}: {e}", passwd.display()))?;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[0] == name {
            let uid = f[2].parse().map_err(|_| format!("bad uid for {name}"))?;
            let gid = f[3].parse().map_err(|_| format!("bad gid for {name}"))?;
            let home = PathBuf::from(f[5]);
            if f[5].is_empty() || !home.is_dir() {
                return Err(format!("the login user {name} has no home directory"));
            }
            return Ok(UserEntry {
                name: name.into(),
                uid,
                gid,
                home,
            });
        }
    }
    Err(format!("the login user {name} does not exist"))
}

/// Refuses `path` if it is a symlink (checked without following it).
fn not_a_symlink(path: &Path) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symlink; refusing to follow it",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// `~/.ssh`, created 0700 and owned by the user when missing; refused when it is a symlink or not
/// owned by the user.
pub fn ssh_dir(user: &UserEntry) -> Result<PathBuf, String> {
    let dir = user.home.join(".ssh");
    not_a_symlink(&dir)?;
    if !dir.exists() {
        fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    let meta = fs::symlink_metadata(&dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if meta.uid() != user.uid && user.uid != 0 {
        return Err(format!("{} is not owned by {}", dir.display(), user.name));
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// Reads a file without following a symlink; a missing file reads as empty.
pub fn read_nofollow(path: &Path) -> Result<String, String> {
    not_a_symlink(path)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    match file {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot open {}: {e}", path.display())),
    }
}

/// Replaces `path` with `bytes` atomically, with the owner and mode given. The final rename
/// replaces a symlink rather than writing through it; the check before is for a clear error.
pub fn atomic_write(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    not_a_symlink(path)?;
    let dir = path.parent().ok_or("no parent directory")?;
    let tmp = dir.join(format!(
        ".{}.keyplane-{:08x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        rand::random::<u32>()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(home: &Path) -> UserEntry {
        let m = fs::metadata(home).unwrap();
        UserEntry {
            name: "me".into(),
            uid: m.uid(),
            gid: m.gid(),
            home: home.to_path_buf(),
        }
    }

    #[test]
    fn writes_are_atomic_with_the_mode_asked_for() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("authorized_keys");
        atomic_write(&p, b"one\n", 0o600, None).unwrap();
        atomic_write(&p, b"two\n", 0o600, None).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn symlinks_under_the_home_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("shadow");
        fs::write(&secret, "root:secret\n").unwrap();
        let home = d.path().join("home");
        fs::create_dir(&home).unwrap();
        // ~/.ssh as a symlink to somewhere else.
        std::os::unix::fs::symlink(d.path(), home.join(".ssh")).unwrap();
        assert!(ssh_dir(&user(&home)).unwrap_err().contains("symlink"));
        fs::remove_file(home.join(".ssh")).unwrap();
        // ~/.ssh/authorized_keys as a symlink to a sensitive file.
        let ssh = ssh_dir(&user(&home)).unwrap();
        assert_eq!(
            fs::metadata(&ssh).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let keys = ssh.join("authorized_keys");
        std::os::unix::fs::symlink(&secret, &keys).unwrap();
        assert!(read_nofollow(&keys).unwrap_err().contains("symlink"));
        assert!(atomic_write(&keys, b"pwned\n", 0o600, None)
            .unwrap_err()
            .contains("symlink"));
        assert_eq!(
            fs::read_to_string(&secret).unwrap(),
            "root:secret\n",
            "never written through"
        );
    }

    #[test]
    fn users_without_an_entry_or_a_home_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let passwd = d.path().join("passwd");
        fs::write(
            &passwd,
            format!(
                "alice:x:1000:1000::{}:/bin/sh\nghost:x:1001:1001::/nonexistent:/bin/sh\n",
                d.path().display()
            ),
        )
        .unwrap();
        assert_eq!(lookup_user(&passwd, "alice").unwrap().uid, 1000);
        assert!(lookup_user(&passwd, "bob")
            .unwrap_err()
            .contains("does not exist"));
        assert!(lookup_user(&passwd, "ghost")
            .unwrap_err()
            .contains("no home"));
    }
}
