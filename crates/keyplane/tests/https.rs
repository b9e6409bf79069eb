//! The real binary over HTTPS (SPEC section 11): `keyplane serve --tls-cert --tls-key`, reloaded on
//! SIGHUP, called by `keyplane ecs --ca-file`; and the clients' refusal of plain HTTP across a
//! network. Every process here is the built `keyplane`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_keyplane");
const AK: &str = "LTAIhttpstest";
const SECRET: &str = "https-test-secret";

/// A throwaway CA whose PEM is `dir/<name>.pem`.
struct Ca {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    file: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, cert.pem()).unwrap();
        Self { key, cert, file }
    }

    /// Writes a server certificate for 127.0.0.1 to `cert.pem` and `key.pem` in `dir`.
    fn issue(&self, dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    }
}

/// A running `keyplane serve`, its log lines arriving on `log`.
struct Server {
    child: Child,
    log: mpsc::Receiver<String>,
    endpoint: String,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let db = format!("sqlite://{}", dir.join("k.db").display());
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                &db,
                "--log-json",
            ])
            .args(extra)
            .env("KEYPLANE_ROOT_ACCESS_KEY_ID", AK)
            .env("KEYPLANE_ROOT_ACCESS_KEY_SECRET", SECRET)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            log,
            endpoint: String::new(),
        };
        let line = server.wait_for("keyplane serving");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["fields"]["scheme"], "https", "{line}");
        server.endpoint = format!("https://{}", v["fields"]["listen"].as_str().unwrap());
        server
    }

    /// The first log line from now on that contains `text`.
    fn wait_for(&mut self, text: &str) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(120)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("the server never logged {text:?}: {e}"),
            }
        }
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keyplane ecs DescribeRegions` with these connection flags: (success, stdout, stderr).
fn ecs(home: &Path, flags: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("ecs")
        .args(flags)
        .arg("DescribeRegions")
        .env("HOME", home)
        .env("KEYPLANE_ACCESS_KEY_ID", AK)
        .env("KEYPLANE_ACCESS_KEY_SECRET", SECRET)
        .env_remove("KEYPLANE_CA_FILE")
        .env_remove("KEYPLANE_ENDPOINT")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_calls_a_tls_server_with_its_ca_and_sees_a_reloaded_certificate_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = Ca::new(dir.path(), "first-ca");
    first_ca.issue(dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let mut server = Server::start(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let first = first_ca.file.to_str().unwrap();
    let ep = server.endpoint.clone();

    let (ok, out, err) = ecs(dir.path(), &["--endpoint", &ep, "--ca-file", first]);
    assert!(ok, "{err}");
    assert!(out.contains("\"Regions\""), "{out}");

    // Without the CA (system roots only) the certificate does not verify: a clear error, and no
    // fallback to plain HTTP.
    let (ok, _, err) = ecs(dir.path(), &["--endpoint", &ep]);
    assert!(!ok);
    assert!(err.contains("certificate"), "{err}");

    // A renewed certificate, from another CA, is served after SIGHUP.
    let second_ca = Ca::new(dir.path(), "second-ca");
    second_ca.issue(dir.path());
    server.hup();
    server.wait_for("reloaded the TLS certificate");
    let second = second_ca.file.to_str().unwrap();
    let (ok, _, err) = ecs(dir.path(), &["--endpoint", &ep, "--ca-file", second]);
    assert!(ok, "{err}");
    let (ok, _, err) = ecs(dir.path(), &["--endpoint", &ep, "--ca-file", first]);
    assert!(!ok && err.contains("certificate"), "{err}");

    // A reload of a broken file is logged and changes nothing.
    std::fs::write(&key, "garbage").unwrap();
    server.hup();
    server.wait_for("reloading the TLS certificate failed");
    let (ok, _, err) = ecs(dir.path(), &["--endpoint", &ep, "--ca-file", second]);
    assert!(ok, "{err}");
}

#[test]
fn a_certificate_without_its_key_or_an_unreadable_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.db").display());
    for (flags, expected) in [
        (vec!["--tls-cert", "/nonexistent/cert.pem"], "go together"),
        (
            vec![
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
            "/nonexistent/cert.pem",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db", &db])
            .args(&flags)
            .env_remove("KEYPLANE_TLS_CERT")
            .env_remove("KEYPLANE_TLS_KEY")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?}");
        assert!(err.contains(expected), "{flags:?}: {err}");
    }
}

#[test]
fn the_cli_and_the_agent_refuse_plain_http_across_a_network_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = ecs(dir.path(), &["--endpoint", "http://10.1.2.3:8080"]);
    assert!(!ok);
    assert!(
        err.contains("refusing plain http://") && err.contains("--insecure-http"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["agent", "--server", "http://10.1.2.3:8080", "--token", "t"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env_remove("KEYPLANE_CA_FILE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("refusing plain http://") && err.contains("--insecure-http"),
        "{err}"
    );
}
