//! The agent's refusals: a login user that does not exist or has no home gets nothing written, and
//! a malformed or oversized answer from the server is ignored with an error (a stand-in server on
//! loopback plays the broken server here, since a real keyplane never sends one).

use keyplane_agent::apply::{apply, Desired};
use keyplane_agent::client::{Client, ControlPlane};
use keyplane_agent::{AgentConfig, HostError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn desired(user: &str) -> Desired {
    Desired {
        instance_id: "i-test".into(),
        fingerprint: None,
        login_user: user.into(),
        public_key: Some(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f k"
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

#[test]
fn a_missing_user_or_home_fails_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let passwd = d.path().join("passwd");
    let ghost_home = d.path().join("ghost");
    std::fs::write(
        &passwd,
        format!("ghost:x:4242:4242::{}:/bin/sh\n", ghost_home.display()),
    )
    .unwrap();
    let cfg = AgentConfig {
        passwd_file: passwd,
        sshd_config: d.path().join("sshd_config"),
        sshd_dropin_dir: d.path().join("sshd_config.d"),
        ..AgentConfig::default()
    };
    let nobody = apply(&cfg, &desired("nobody")).unwrap_err();
    assert!(matches!(&nobody, HostError::Invalid(m) if m.contains("does not exist")));
    let ghost = apply(&cfg, &desired("ghost")).unwrap_err();
    assert!(matches!(&ghost, HostError::Invalid(m) if m.contains("no home")));
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "only the passwd file: nothing written"
    );
}

/// A one-shot HTTP server answering `response` to the first request.
async fn broken_server(response: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(&response).await;
    });
    format!("http://{addr}")
}

fn http(body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn malformed_or_oversized_answers_are_ignored() {
    for (what, body) in [
        ("not JSON", b"<html>proxy error</html>".to_vec()),
        ("JSON of the wrong shape", br#"{"PublicKey": 42}"#.to_vec()),
        ("oversized", vec![b' '; 100 * 1024]),
    ] {
        let url = broken_server(http(&body)).await;
        let client = Client::new(&url).unwrap();
        let err = client.desired(None, 0).await.unwrap_err().to_string();
        assert!(err.contains("ignored"), "{what}: {err}");
    }
}

#[test]
fn password_login_is_never_turned_off_when_the_key_cannot_be_put_in_place() {
    let mut host = Host::new();
    // sshd refuses every configuration here: whatever the apply writes to sshd is put back.
    host.cfg.sshd_bin = "/bin/false".into();
    host.cfg.reload_command = "false".into();
    let ssh = host.home().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    let secret = host.dir.path().join("shadow");
    std::fs::write(&secret, "root:hash\n").unwrap();
    // authorized_keys is a symlink to a sensitive file: the key cannot be put in place.
    std::os::unix::fs::symlink(&secret, ssh.join("authorized_keys")).unwrap();
    let sshd_config = std::fs::read_to_string(&host.cfg.sshd_config).unwrap();
    let err = apply(&host.cfg, &desired("alice")).unwrap_err();
    assert!(
        matches!(&err, HostError::Refused(m) if m.contains("symlink")),
        "{err}"
    );
    // The apply asked for password login off; without a usable key it may only go on (here the
    // drop-in is put back as it was: none).
    assert!(
        host.dropin()
            .is_none_or(|d| !d.contains("PasswordAuthentication no")),
        "password login was never turned off"
    );
    assert_eq!(
        std::fs::read_to_string(&host.cfg.sshd_config).unwrap(),
        sshd_config
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root:hash\n",
        "never written through"
    );
}

/// Keys only: the key is put in place and nothing of sshd is written, run or needed; the report
/// carries the binding's password setting, marked as not managed, so the binding can be applied.
#[test]
fn keys_only_puts_the_key_in_place_without_sshd_and_reports_the_bindings_password_setting() {
    let mut host = Host::new();
    host.cfg.manage_sshd = false;
    host.cfg.sshd_bin = host.dir.path().join("no-such-sshd");
    host.cfg.reload_command = "false".into();
    let sshd_config = std::fs::read_to_string(&host.cfg.sshd_config).unwrap();
    let observed = apply(&host.cfg, &desired("alice")).unwrap();
    assert_eq!(observed.fingerprints.len(), 1, "the key is in place");
    assert!(!observed.password_login && !observed.password_login_managed);
    assert!(host.dropin().is_none(), "no drop-in");
    assert_eq!(
        std::fs::read_to_string(&host.cfg.sshd_config).unwrap(),
        sshd_config
    );
    let detach = Desired {
        public_key: None,
        password_login: true,
        apply_seq: 2,
        ..desired("alice")
    };
    let observed = apply(&host.cfg, &detach).unwrap();
    assert!(observed.fingerprints.is_empty() && observed.password_login);
    assert!(host.dropin().is_none());
}

/// A host whose login user is the current user, with a home in a temp directory, sshd's files
/// there too, and `sshd -t`/reload that always succeed.
struct Host {
    dir: tempfile::TempDir,
    cfg: AgentConfig,
}

impl Host {
    fn new() -> Self {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        let m = std::fs::metadata(&home).unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            format!(
                "alice:x:{}:{}::{}:/bin/sh\n",
                m.uid(),
                m.gid(),
                home.display()
            ),
        )
        .unwrap();
        let dropins = dir.path().join("sshd_config.d");
        let sshd_config = dir.path().join("sshd_config");
        std::fs::write(
            &sshd_config,
            format!("Include {}/*.conf\n", dropins.display()),
        )
        .unwrap();
        let cfg = AgentConfig {
            passwd_file: passwd,
            sshd_config,
            sshd_dropin_dir: dropins,
            sshd_bin: "/bin/true".into(),
            reload_command: "true".into(),
            ..AgentConfig::default()
        };
        Self { dir, cfg }
    }

    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }

    fn dropin(&self) -> Option<String> {
        std::fs::read_to_string(self.cfg.dropin_path()).ok()
    }
}

#[test]
fn a_key_sshd_would_refuse_for_bad_modes_fails_with_the_reason_and_keeps_password_login() {
    use std::os::unix::fs::PermissionsExt;
    let host = Host::new();
    std::fs::set_permissions(host.home(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = apply(&host.cfg, &desired("alice")).unwrap_err();
    assert!(
        matches!(&err, HostError::Refused(m) if m.contains("sshd would refuse the key") && m.contains("writable by group or others")),
        "{err}"
    );
    // No lockout: password login is on, whatever the binding asked.
    let dropin = host.dropin().unwrap();
    assert!(dropin.contains("PasswordAuthentication yes"), "{dropin}");
}

#[test]
fn a_fifo_a_hard_link_a_directory_or_a_huge_key_file_fails_and_keeps_password_login() {
    let host = Host::new();
    let ssh = host.home().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    let keys = ssh.join("authorized_keys");
    let other = host.dir.path().join("other");
    std::fs::write(&other, "root:secret\n").unwrap();
    type Make = fn(&std::path::Path, &std::path::Path);
    let cases: [(&str, Make); 4] = [
        ("fifo", |k, _| {
            std::process::Command::new("mkfifo")
                .arg(k)
                .status()
                .unwrap();
        }),
        ("hard link", |k, o| std::fs::hard_link(o, k).unwrap()),
        ("directory", |k, _| std::fs::create_dir(k).unwrap()),
        ("sparse 1 GiB", |k, _| {
            std::fs::File::create(k).unwrap().set_len(1 << 30).unwrap()
        }),
    ];
    for (what, make) in cases {
        make(&keys, &other);
        let err = apply(&host.cfg, &desired("alice")).unwrap_err();
        assert!(!err.to_string().is_empty(), "{what}");
        assert!(
            host.dropin()
                .is_none_or(|d| d.contains("PasswordAuthentication yes")),
            "{what}: password login never turned off"
        );
        assert_eq!(
            std::fs::read_to_string(&other).unwrap(),
            "root:secret\n",
            "{what}"
        );
        if keys.is_dir() {
            std::fs::remove_dir(&keys).unwrap();
        } else {
            std::fs::remove_file(&keys).unwrap();
        }
    }
    // Once the path is free again, the next change is served: the key goes in and password
    // login goes off (what `sshd -T` then reports is /bin/true's silence here, so the result of
    // the final check is not asserted).
    let _ = apply(&host.cfg, &desired("alice"));
    assert!(host
        .dropin()
        .is_some_and(|d| d.contains("PasswordAuthentication no")));
    assert!(std::fs::read_to_string(&keys)
        .unwrap()
        .contains("ssh-ed25519"));
}

/// A server that streams an endless chunked body: the client must give up at its limit.
#[tokio::test]
async fn an_endless_answer_is_abandoned_at_the_limit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            )
            .await;
        let chunk = format!("{:x}\r\n{}\r\n", 8192, " ".repeat(8192));
        // Up to 3 GB if nobody stops reading; the client stops after 64 KiB.
        for _ in 0..(3u64 << 30) / 8192 {
            if s.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let client = Client::new(&format!("http://{addr}")).unwrap();
    let err = format!("{:#}", client.desired(None, 0).await.unwrap_err());
    assert!(err.contains("larger than"), "{err}");
}

/// A proxy that ends a long poll with its own 503 after the wait: no change, not an outage.
#[tokio::test]
async fn a_long_poll_ended_by_a_proxy_timeout_is_no_change() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let _ = s
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
    });
    let client = Client::new(&format!("http://{addr}")).unwrap();
    assert!(client.desired(None, 1).await.unwrap().is_none());
}

#[test]
fn an_unusable_key_file_still_lets_a_detach_turn_password_login_back_on() {
    // Found by the attacker pass: bound (password off), then the user puts a FIFO at
    // authorized_keys; the detach stopped at the unreadable file and left password login off.
    let host = Host::new();
    let _ = apply(&host.cfg, &desired("alice"));
    assert!(host
        .dropin()
        .is_some_and(|d| d.contains("PasswordAuthentication no")));
    let keys = host.home().join(".ssh/authorized_keys");
    std::fs::remove_file(&keys).unwrap();
    std::process::Command::new("mkfifo")
        .arg(&keys)
        .status()
        .unwrap();
    let detach = Desired {
        public_key: None,
        password_login: true,
        apply_seq: 2,
        ..desired("alice")
    };
    let err = apply(&host.cfg, &detach).unwrap_err();
    assert!(
        matches!(&err, HostError::Refused(m) if m.contains("not a regular file")),
        "{err}"
    );
    assert!(host
        .dropin()
        .is_some_and(|d| d.contains("PasswordAuthentication yes")));
}
