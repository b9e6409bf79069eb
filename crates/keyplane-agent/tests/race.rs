//! The local attacker of issue 21, for real: an unprivileged user (made with `useradd`) swaps
//! `~/.ssh` for symlinks to a root-owned file and a root-only directory in a tight loop — with
//! `renameat2(RENAME_EXCHANGE)`, plain renames and a missing `~/.ssh` — while the agent, as root,
//! applies a hundred times. Nothing outside the home may change owner, mode or content, and no
//! `authorized_keys` may appear outside it. Needs root (the test command runs as root in CI).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use keyplane_agent::apply::{apply, Desired};
use keyplane_agent::AgentConfig;

/// Runs as the user: swaps `.ssh` in `home` with symlinks to the targets until `stop` exists.
const RACER: &str = r#"
import ctypes, os, random, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_renameat2, AT_FDCWD, RENAME_EXCHANGE = 316, -100, 2
home, target_file, target_dir, stop = sys.argv[1:5]
os.chdir(home)
for name, target in (("lf", target_file), ("ld", target_dir)):
    try:
        os.symlink(target, name)
    except FileExistsError:
        pass
def exchange(a, b):
    return libc.syscall(SYS_renameat2, AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE) == 0
while not os.path.exists(stop):
    link = random.choice(("lf", "ld"))
    if exchange(link, ".ssh"):
        exchange(link, ".ssh")
        continue
    # No .ssh: put the symlink there for a moment, so a path-based mkdir/chown would follow it.
    try:
        os.rename(link, ".ssh")
        os.rename(".ssh", link)
    except OSError:
        pass
    if random.random() < 0.05 and os.path.isdir(".ssh") and not os.path.islink(".ssh"):
        # Back to a missing ~/.ssh, so the agent creates it again.
        for f in os.listdir(".ssh"):
            try:
                os.unlink(os.path.join(".ssh", f))
            except OSError:
                pass
        try:
            os.rmdir(".ssh")
        except OSError:
            pass
"#;

/// Ends the racer and removes the user however the test ends (a panic included), so neither a
/// process nor an account outlives it.
struct Racer {
    child: std::process::Child,
    stop: std::path::PathBuf,
    user: String,
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.user])
            .status();
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.user])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A new unprivileged user with a home, or `None` (test skipped) when not root.
fn new_user(prefix: &str) -> Option<String> {
    if !is_root() || !Path::new("/usr/sbin/useradd").exists() {
        eprintln!("skipped: needs root and useradd (the test command runs as root)");
        return None;
    }
    let user = format!("{prefix}{}", std::process::id() % 100_000);
    let made = Command::new("useradd")
        .args(["-m", "-s", "/bin/sh", &user])
        .status()
        .unwrap();
    assert!(made.success());
    Some(user)
}

/// Starts `script` (Python) as `user` with `args`; it runs until `stop` exists.
fn start_racer(user: &str, script: &str, args: &[&std::ffi::OsStr], stop: &Path) -> Racer {
    Racer {
        child: Command::new("runuser")
            .args(["-u", user, "--", "python3", "-c", script])
            .args(args)
            .arg(stop)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        stop: stop.to_path_buf(),
        user: user.to_string(),
    }
}

/// A binding of a fixed ed25519 key for `user`, password login off.
fn binding(user: &str) -> Desired {
    Desired {
        instance_id: "i-test".into(),
        fingerprint: None,
        login_user: user.to_string(),
        public_key: Some(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f race"
                .into(),
        ),
        password_login: false,
        apply_seq: 1,
        password_hash: None,
        password_version: 0,
        grants: Vec::new(),
        revoked_keys: Vec::new(),
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn snapshot(p: &Path) -> (u32, u32, u32, Vec<String>, Option<String>) {
    let m = std::fs::symlink_metadata(p).unwrap();
    let listing = if m.is_dir() {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    } else {
        Vec::new()
    };
    let content = m.is_file().then(|| std::fs::read_to_string(p).unwrap());
    (m.uid(), m.gid(), m.mode(), listing, content)
}

#[test]
fn a_user_racing_their_ssh_directory_cannot_make_the_agent_touch_anything_outside_the_home() {
    let Some(user) = new_user("kprace") else {
        return;
    };
    let home = format!("/home/{user}");
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let target_file = work.path().join("root-file");
    std::fs::write(&target_file, "root only\n").unwrap();
    std::fs::set_permissions(&target_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let target_dir = work.path().join("root-dir");
    std::fs::create_dir(&target_dir).unwrap();
    std::fs::set_permissions(&target_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = (snapshot(&target_file), snapshot(&target_dir));
    let stop = work.path().join("stop");

    let racer = start_racer(
        &user,
        RACER,
        &[
            home.as_ref(),
            target_file.as_os_str(),
            target_dir.as_os_str(),
        ],
        &stop,
    );
    let cfg = AgentConfig {
        manage_sshd: false,
        ..AgentConfig::default()
    };
    let desired = binding(&user);
    let (mut applied, mut refused) = (0, 0);
    for _ in 0..100 {
        match apply(&cfg, &desired) {
            Ok(_) => applied += 1,
            Err(_) => refused += 1,
        }
        assert_eq!(
            (snapshot(&target_file), snapshot(&target_dir)),
            before,
            "a file outside the home changed"
        );
    }
    drop(racer);
    assert_eq!(
        (snapshot(&target_file), snapshot(&target_dir)),
        before,
        "a file outside the home changed"
    );
    eprintln!("{applied} applies went through, {refused} were refused while racing");
}

/// Runs as the user: takes away every `~/.ssh` as soon as it appears, until `stop` exists.
const THIEF: &str = r#"
import os, sys
home, stop = sys.argv[1:3]
os.chdir(home)
n = 0
while not os.path.exists(stop):
    try:
        os.rename(".ssh", f"taken-{n}")
        n += 1
    except OSError:
        pass
"#;

#[test]
fn a_user_who_takes_away_a_new_ssh_directory_never_gets_one_they_cannot_use() {
    // Found by the attacker pass: ~/.ssh made by root and chowned later could be renamed away in
    // between, leaving a root-owned 0700 directory the user could put back as ~/.ssh: sshd (which
    // reads as the user) could not enter it, and only root could remove it.
    let Some(user) = new_user("kpthief") else {
        return;
    };
    let home = format!("/home/{user}");
    let work = tempfile::tempdir().unwrap();
    let stop = work.path().join("stop");
    let racer = start_racer(&user, THIEF, &[home.as_ref()], &stop);
    let cfg = AgentConfig {
        manage_sshd: false,
        ..AgentConfig::default()
    };
    let desired = binding(&user);
    for _ in 0..300 {
        let _ = apply(&cfg, &desired);
    }
    std::fs::write(&stop, "").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut root_owned = Vec::new();
    for entry in std::fs::read_dir(&home).unwrap() {
        let entry = entry.unwrap();
        let m = std::fs::symlink_metadata(entry.path()).unwrap();
        if m.is_dir() && m.uid() == 0 {
            root_owned.push(entry.file_name());
        }
    }
    drop(racer);
    assert!(
        root_owned.is_empty(),
        "root-owned directories left in the home: {root_owned:?}"
    );
}
