//! Files the agent writes as root on behalf of a user, inside that user's home.
//!
//! The user owns the home and can rename, replace or swap anything in it at any moment, including
//! between two of our system calls. So nothing here resolves a path under the home twice: the home
//! is opened once (its path is root's: the passwd entry), `.ssh` is opened (or made) relative to that
//! descriptor without following a symlink, and every later step — reading the key file, creating
//! the temp file, `fchown`/`fchmod`, the rename, the fsync — acts on those descriptors. A path the
//! user swaps after we opened it changes nothing we do (the attacker pass of issue 21 turned the
//! path-based `chown` into a root escalation, and the path-based rename into a write anywhere).
//!
//! Reading is bounded and typed: the key file is opened `O_NONBLOCK|O_NOFOLLOW` (a FIFO cannot
//! hang us) and must be a regular file, with one link, owned by the user or root, of at most
//! [`MAX_KEYS_FILE`] bytes; anything else is an error that changes nothing.

use crate::error::HostError;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::io::Errno;

/// The largest authorized_keys file read (a real one holds a few keys, a few KiB).
pub const MAX_KEYS_FILE: u64 = 1024 * 1024;

/// A login user from the passwd database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Looks `name` up in a passwd file (`/etc/passwd`).
pub fn lookup_user(passwd: &Path, name: &str) -> Result<UserEntry, HostError> {
    let text = std::fs::read_to_string(passwd)
        .map_err(|e| HostError::Io(format!("cannot read {}: {e}", passwd.display())))?;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[0] == name {
            let uid = f[2]
                .parse()
                .map_err(|_| HostError::Invalid(format!("bad uid for {name}")))?;
            let gid = f[3]
                .parse()
                .map_err(|_| HostError::Invalid(format!("bad gid for {name}")))?;
            let home = PathBuf::from(f[5]);
            if f[5].is_empty() || !home.is_dir() {
                return Err(HostError::Invalid(format!(
                    "the login user {name} has no home directory"
                )));
            }
            return Ok(UserEntry {
                name: name.into(),
                uid,
                gid,
                home,
            });
        }
    }
    Err(HostError::Invalid(format!(
        "the login user {name} does not exist"
    )))
}

const HOME_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What sshd's StrictModes demands of the home, `.ssh` and the key file (OpenSSH `safe_path`):
/// owned by root or the user, and writable by neither group nor others. `None` when it holds.
fn strict_modes_problem(stat: &rustix::fs::Stat, user: &UserEntry, what: &str) -> Option<String> {
    if stat.st_uid != 0 && stat.st_uid != user.uid {
        return Some(format!(
            "{what} is owned by uid {}, neither {} nor root",
            stat.st_uid, user.name
        ));
    }
    if stat.st_mode & 0o022 != 0 {
        return Some(format!(
            "{what} is writable by group or others (mode {:o})",
            stat.st_mode & 0o7777
        ));
    }
    None
}

/// The user's `~/.ssh`, opened: every file operation below goes through it.
pub struct SshDir {
    user: UserEntry,
    home: OwnedFd,
    dir: OwnedFd,
}

impl SshDir {
    /// Opens `~/.ssh`, creating it (0700, owned by the user) when missing and `create` is set.
    /// `Ok(None)` when it is missing and not to be created. A symlink, a non-directory or a
    /// directory owned by someone other than the user or root is refused.
    pub fn open(user: &UserEntry, create: bool) -> Result<Option<Self>, HostError> {
        // The home path is root's (the passwd entry, in a root-owned parent such as /home), so it
        // is opened as sshd opens it, a symlinked home included; what the user controls starts
        // inside it. It must be the user's (or root's), not someone else's.
        let home = rustix::fs::openat(CWD, &user.home, HOME_FLAGS, Mode::empty())
            .map_err(|e| cannot_open(&format!("the home {}", user.home.display()), e))?;
        let home_owner = rustix::fs::fstat(&home).map_err(HostError::io)?.st_uid;
        if home_owner != user.uid && home_owner != 0 {
            return Err(HostError::Refused(format!(
                "the home {} is owned by uid {home_owner}, not by {}",
                user.home.display(),
                user.name
            )));
        }
        let shown = ssh_path(user);
        let dir = match rustix::fs::openat(&home, ".ssh", DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                make_ssh_dir(user, &home, &shown)?;
                rustix::fs::openat(&home, ".ssh", DIR_FLAGS, Mode::empty())
                    .map_err(|e| cannot_open(&shown.display(), e))?
            }
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(cannot_open(&shown.display(), e)),
        };
        let stat = rustix::fs::fstat(&dir).map_err(HostError::io)?;
        if stat.st_uid != user.uid && stat.st_uid != 0 {
            return Err(HostError::Refused(format!(
                "{} is owned by uid {}, not by {}",
                shown.display(),
                stat.st_uid,
                user.name
            )));
        }
        // Only the user's own directory is set to 0700; a root-owned one (an administrator's
        // choice) keeps its mode, and the StrictModes check says whether sshd can use it.
        if stat.st_uid == user.uid && stat.st_mode & 0o777 != 0o700 {
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o700))
                .map_err(|e| HostError::Io(format!("chmod {}: {e}", shown.display())))?;
        }
        Ok(Some(Self {
            user: user.clone(),
            home,
            dir,
        }))
    }

    /// Reads `name` in this directory; a missing file reads as empty. Refused: anything but a
    /// regular file with one link owned by the user or root, and files over [`MAX_KEYS_FILE`].
    pub fn read(&self, name: &str) -> Result<String, HostError> {
        let shown = ssh_path(&self.user).join(name);
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(String::new()),
            Err(e) => return Err(cannot_open(&shown.display(), e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(HostError::io)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(HostError::Refused(format!(
                "{} is not a regular file",
                shown.display()
            )));
        }
        if stat.st_nlink != 1 {
            return Err(HostError::Refused(format!(
                "{} has {} hard links; refusing to read it",
                shown.display(),
                stat.st_nlink
            )));
        }
        if stat.st_uid != self.user.uid && stat.st_uid != 0 {
            return Err(HostError::Refused(format!(
                "{} is owned by uid {}, not by {}",
                shown.display(),
                stat.st_uid,
                self.user.name
            )));
        }
        if stat.st_size as u64 > MAX_KEYS_FILE {
            return Err(HostError::Refused(format!(
                "{} is larger than {MAX_KEYS_FILE} bytes",
                shown.display()
            )));
        }
        let mut text = String::new();
        // The size may grow after the fstat: the read is bounded again.
        File::from(fd)
            .take(MAX_KEYS_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| HostError::Io(format!("cannot read {}: {e}", shown.display())))?;
        if text.len() as u64 > MAX_KEYS_FILE {
            return Err(HostError::Refused(format!(
                "{} is larger than {MAX_KEYS_FILE} bytes",
                shown.display()
            )));
        }
        Ok(text)
    }

    /// Replaces `name` with `bytes` (mode 0600, owned by the user): a temp file made in this
    /// directory, written, fsynced, renamed over `name` and the directory fsynced, all through
    /// its descriptor.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), HostError> {
        let shown = ssh_path(&self.user).join(name);
        let tmp = format!(".{name}.keyplane-{:016x}", rand::random::<u64>());
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        let result = (|| -> Result<(), Errno> {
            let fd = rustix::fs::openat(&self.dir, &tmp, flags, Mode::from_raw_mode(0o600))?;
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(self.user.uid)),
                Some(rustix::fs::Gid::from_raw(self.user.gid)),
            )?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))?;
            let mut file = File::from(fd);
            file.write_all(bytes)
                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
            rustix::fs::fsync(file.as_fd())?;
            rustix::fs::renameat(&self.dir, &tmp, &self.dir, name)?;
            rustix::fs::fsync(&self.dir)
        })();
        if let Err(e) = result {
            let _ = rustix::fs::unlinkat(&self.dir, &tmp, rustix::fs::AtFlags::empty());
            return Err(HostError::Io(format!(
                "cannot write {}: {e}",
                shown.display()
            )));
        }
        Ok(())
    }

    /// Why sshd (StrictModes) would refuse the key file `name`, if it would: the home, `.ssh`
    /// and the file must be owned by the user or root and not writable by group or others.
    pub fn strict_modes_problem(&self, name: &str) -> Result<Option<String>, HostError> {
        let home = rustix::fs::fstat(&self.home).map_err(HostError::io)?;
        let dir = rustix::fs::fstat(&self.dir).map_err(HostError::io)?;
        let file = rustix::fs::statat(&self.dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| HostError::Io(format!("cannot check {name}: {e}")))?;
        let home_shown = format!("the home {}", self.user.home.display());
        let file_shown = format!("~/.ssh/{name}");
        let unreachable = |stat: &rustix::fs::Stat, what: &str, bits: u32, verb: &str| {
            (!user_may(stat, &self.user, bits)).then(|| {
                format!(
                    "{} cannot {verb} {what} (mode {:o})",
                    self.user.name,
                    stat.st_mode & 0o7777
                )
            })
        };
        Ok(strict_modes_problem(&home, &self.user, &home_shown)
            .or_else(|| strict_modes_problem(&dir, &self.user, "~/.ssh"))
            .or_else(|| strict_modes_problem(&file, &self.user, &file_shown))
            // sshd reads the file as the user: it must be able to get there and read it.
            .or_else(|| unreachable(&home, &home_shown, 1, "enter"))
            .or_else(|| unreachable(&dir, "~/.ssh", 1, "enter"))
            .or_else(|| unreachable(&file, &file_shown, 4, "read")))
    }
}

/// Makes a missing `~/.ssh`, 0700, as the user would: for any other user than root, `mkdir` runs
/// with the user's own uid and gid, so the directory is the user's from the start. A directory
/// made by root and given away later could be renamed by the user in between and left root-owned
/// in the home, where sshd (reading as the user) cannot enter it: a lasting lockout.
fn make_ssh_dir(user: &UserEntry, home: &OwnedFd, shown: &Path) -> Result<(), HostError> {
    if user.uid == 0 {
        return match rustix::fs::mkdirat(home, ".ssh", Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(HostError::Io(format!(
                "cannot create {}: {e}",
                shown.display()
            ))),
        };
    }
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("mkdir")
        .args(["-m", "0700", "--"])
        .arg(shown)
        .uid(user.uid)
        .gid(user.gid)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| HostError::Command(format!("cannot run mkdir as {}: {e}", user.name)))?;
    if out.status.success() {
        return Ok(());
    }
    // It may have appeared meanwhile; the open that follows decides.
    match rustix::fs::statat(home, ".ssh", rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(()),
        Err(_) => Err(HostError::Io(format!(
            "cannot create {} as {}: {}",
            shown.display(),
            user.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The user's `~/.ssh`, as messages show it: every step opens it through the home's descriptor,
/// never by this path.
fn ssh_path(user: &UserEntry) -> PathBuf {
    user.home.join(".ssh")
}

/// Whether the user may use `stat`'s file with the permission `bits` (4 read, 1 search), by its
/// mode bits (owner, primary group, others; supplementary groups and ACLs are not counted, so
/// this errs towards "no", which is safe: a key then reported failed, password login kept on).
fn user_may(stat: &rustix::fs::Stat, user: &UserEntry, bits: u32) -> bool {
    if user.uid == 0 {
        return true;
    }
    let shift = if stat.st_uid == user.uid {
        6
    } else if stat.st_gid == user.gid {
        3
    } else {
        0
    };
    stat.st_mode & (bits << shift) == bits << shift
}

/// Why `what` could not be opened, said plainly: a swapped path (a symlink where a file or
/// directory was expected) is refused, anything else is an I/O error.
fn cannot_open(what: &dyn std::fmt::Display, e: Errno) -> HostError {
    match e {
        Errno::LOOP => HostError::Refused(format!(
            "cannot open {what}: it is a symlink; refusing to follow it"
        )),
        // What O_DIRECTORY|O_NOFOLLOW gives for a symlink, as for a file.
        Errno::NOTDIR => HostError::Refused(format!(
            "cannot open {what}: it is a symlink or not a directory; refusing to follow it"
        )),
        e => HostError::Io(format!("cannot open {what}: {e}")),
    }
}

/// Replaces a root-owned system file (sshd's drop-in) atomically: temp file in the same
/// directory, fsync, mode, rename, fsync the directory. Only for directories no user can write.
pub fn atomic_write_system(path: &Path, bytes: &[u8], mode: u32) -> Result<(), HostError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .ok_or_else(|| HostError::Io(format!("{} has no parent directory", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.keyplane-{:08x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        rand::random::<u32>()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| HostError::Io(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// Whether `e` is a refusal that says `what`.
    fn refused(e: &HostError, what: &str) -> bool {
        matches!(e, HostError::Refused(m) if m.contains(what))
    }

    fn user(home: &Path) -> UserEntry {
        let m = std::fs::metadata(home).unwrap();
        UserEntry {
            name: "me".into(),
            uid: m.uid(),
            gid: m.gid(),
            home: home.to_path_buf(),
        }
    }

    fn home() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        (d, home)
    }

    #[test]
    fn writes_are_atomic_with_mode_0600() {
        let (_d, home) = home();
        let ssh = SshDir::open(&user(&home), true).unwrap().unwrap();
        ssh.write("authorized_keys", b"one\n").unwrap();
        ssh.write("authorized_keys", b"two\n").unwrap();
        let p = home.join(".ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(home.join(".ssh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::read_dir(home.join(".ssh")).unwrap().count(),
            1,
            "no temp file left behind"
        );
        assert_eq!(ssh.read("authorized_keys").unwrap(), "two\n");
        assert_eq!(ssh.strict_modes_problem("authorized_keys").unwrap(), None);
    }

    #[test]
    fn symlinks_under_the_home_are_refused_and_never_followed() {
        let (d, home) = home();
        let secret = d.path().join("shadow");
        std::fs::write(&secret, "root:secret\n").unwrap();
        std::os::unix::fs::symlink(d.path(), home.join(".ssh")).unwrap();
        let e = SshDir::open(&user(&home), true).err().unwrap();
        assert!(refused(&e, "symlink"), "{e}");
        std::fs::remove_file(home.join(".ssh")).unwrap();
        let ssh = SshDir::open(&user(&home), true).unwrap().unwrap();
        std::os::unix::fs::symlink(&secret, home.join(".ssh/authorized_keys")).unwrap();
        assert!(refused(
            &ssh.read("authorized_keys").unwrap_err(),
            "symlink"
        ));
        // The write replaces the link itself, never what it points to.
        ssh.write("authorized_keys", b"mine\n").unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root:secret\n");
    }

    #[test]
    fn fifos_hard_links_directories_and_huge_files_are_refused_without_blocking() {
        let (d, home) = home();
        let ssh = SshDir::open(&user(&home), true).unwrap().unwrap();
        let keys = home.join(".ssh/authorized_keys");
        // A FIFO: opening it must not wait for a writer.
        rustix::fs::mknodat(
            CWD,
            &keys,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(refused(
            &ssh.read("authorized_keys").unwrap_err(),
            "not a regular file"
        ));
        std::fs::remove_file(&keys).unwrap();
        // A hard link to another file.
        let other = d.path().join("other");
        std::fs::write(&other, "secret\n").unwrap();
        std::fs::hard_link(&other, &keys).unwrap();
        assert!(refused(
            &ssh.read("authorized_keys").unwrap_err(),
            "hard links"
        ));
        std::fs::remove_file(&keys).unwrap();
        // A directory.
        std::fs::create_dir(&keys).unwrap();
        assert!(refused(
            &ssh.read("authorized_keys").unwrap_err(),
            "not a regular file"
        ));
        std::fs::remove_dir(&keys).unwrap();
        // A sparse file of 1 GiB, 4 KiB on disk.
        let f = File::create(&keys).unwrap();
        f.set_len(1 << 30).unwrap();
        assert!(refused(&ssh.read("authorized_keys").unwrap_err(), "larger"));
    }

    #[test]
    fn a_home_or_ssh_dir_others_can_write_is_what_sshd_refuses() {
        let (_d, home) = home();
        let ssh = SshDir::open(&user(&home), true).unwrap().unwrap();
        ssh.write("authorized_keys", b"k\n").unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = ssh
            .strict_modes_problem("authorized_keys")
            .unwrap()
            .unwrap();
        assert!(why.contains("writable by group or others"), "{why}");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(ssh.strict_modes_problem("authorized_keys").unwrap(), None);
    }

    #[test]
    fn what_the_user_may_read_or_enter_follows_owner_group_and_other_bits() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "k\n").unwrap();
        let stat_of = |mode: u32| {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            rustix::fs::stat(&f).unwrap()
        };
        let owner = std::fs::metadata(&f).unwrap().uid();
        let me = UserEntry {
            name: "owner".into(),
            uid: owner.max(1),
            gid: u32::MAX - 1,
            home: d.path().to_path_buf(),
        };
        let stranger = UserEntry {
            name: "stranger".into(),
            uid: 54_321,
            gid: 54_321,
            home: d.path().to_path_buf(),
        };
        // Others: only the o bits count for a stranger.
        assert!(user_may(&stat_of(0o604), &stranger, 4));
        assert!(!user_may(&stat_of(0o640), &stranger, 4));
        assert!(!user_may(&stat_of(0o600), &stranger, 4));
        if owner != 0 {
            // The owner's bits count for the owner (as root, the test user would be root).
            assert!(user_may(&stat_of(0o400), &me, 4));
            assert!(!user_may(&stat_of(0o044), &me, 4));
        }
        // Root may do anything.
        let root = UserEntry { uid: 0, ..stranger };
        assert!(user_may(&stat_of(0o000), &root, 4));
    }

    #[test]
    fn users_without_an_entry_or_a_home_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let passwd = d.path().join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "alice:x:1000:1000::{}:/bin/sh\nghost:x:1001:1001::/nonexistent:/bin/sh\n",
                d.path().display()
            ),
        )
        .unwrap();
        assert_eq!(lookup_user(&passwd, "alice").unwrap().uid, 1000);
        assert!(
            matches!(lookup_user(&passwd, "bob"), Err(HostError::Invalid(m)) if m.contains("does not exist"))
        );
        assert!(
            matches!(lookup_user(&passwd, "ghost"), Err(HostError::Invalid(m)) if m.contains("no home"))
        );
    }
}
