//! The agent's refusals: a login user that does not exist or has no home gets nothing written, and
//! a malformed or oversized answer from the server is ignored with an error (a stand-in server on
//! loopback plays the broken server here, since a real keyplane never sends one).

use keyplane_agent::apply::{apply, Desired};
use keyplane_agent::client::Client;
use keyplane_agent::AgentConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn desired(user: &str) -> Desired {
    Desired {
        login_user: user.into(),
        public_key: Some(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f k"
                .into(),
        ),
        password_login: false,
        apply_seq: 1,
        password_hash: None,
        password_version: 0,
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
    assert!(apply(&cfg, &desired("nobody"))
        .unwrap_err()
        .contains("does not exist"));
    assert!(apply(&cfg, &desired("ghost"))
        .unwrap_err()
        .contains("no home"));
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
fn password_login_is_never_touched_when_the_key_cannot_be_put_in_place() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let secret = d.path().join("shadow");
    std::fs::write(&secret, "root:hash\n").unwrap();
    // authorized_keys is a symlink to a sensitive file: the key cannot be put in place.
    std::os::unix::fs::symlink(&secret, home.join(".ssh/authorized_keys")).unwrap();
    let m = std::fs::metadata(&home).unwrap();
    let passwd = d.path().join("passwd");
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
    let dropins = d.path().join("sshd_config.d");
    let sshd_config = d.path().join("sshd_config");
    std::fs::write(
        &sshd_config,
        format!("Include {}/*.conf\n", dropins.display()),
    )
    .unwrap();
    let cfg = AgentConfig {
        passwd_file: passwd,
        sshd_config: sshd_config.clone(),
        sshd_dropin_dir: dropins.clone(),
        sshd_bin: "/bin/false".into(),
        reload_command: "false".into(),
        ..AgentConfig::default()
    };
    let err = apply(&cfg, &desired("alice")).unwrap_err();
    assert!(err.contains("symlink"), "{err}");
    assert!(
        !dropins.exists(),
        "no sshd drop-in was written: password login stays as it was"
    );
    assert_eq!(
        std::fs::read_to_string(&sshd_config).unwrap(),
        format!("Include {}/*.conf\n", dropins.display())
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root:hash\n",
        "never written through"
    );
}
