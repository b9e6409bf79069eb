//! The listener under attack (issue 13, findings 2 and 3): HTTPS with a certificate reloaded in
//! place, and clients that open connections and then say nothing (slowloris), sit idle, or open
//! more connections than the server allows.
//!
//! The outer `tokio::time::timeout`s only keep a broken server from hanging the test run; no
//! assertion depends on how fast anything is.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::spawn_with;
use keyplane_api::tls::TlsCerts;
use keyplane_api::ServerConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A throwaway CA, for one test.
struct Ca {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { key, cert }
    }

    /// A server certificate for 127.0.0.1 and localhost, written as `cert.pem` and `key.pem`
    /// into `dir`; returns its DER.
    fn issue(&self, dir: &Path) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

fn tls_config(dir: &Path) -> ServerConfig {
    let certs = TlsCerts::load(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    ServerConfig {
        tls: Some(certs),
        https: true,
        ..ServerConfig::default()
    }
}

/// The certificate a fresh TLS connection to `addr` is shown, verified against `ca`.
async fn presented_certificate(addr: &str, ca: &Ca) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert.der().to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn client_trusting(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_tls_server_answers_a_client_that_trusts_its_ca_and_no_other() {
    let ca = Ca::new("keyplane test CA");
    let certs = tempfile::tempdir().unwrap();
    ca.issue(certs.path());
    let app = spawn_with(tls_config(certs.path()), None).await;
    let base = format!("https://{}", app.host);

    let trusting = client_trusting(&ca);
    let health = trusting
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // A signed vendor call over TLS, with the peer address still reaching the handler.
    let query = common::pairs(&[("RegionId", "cn-hangzhou")]);
    let headers = app.v3_headers(
        "DescribeKeyPairs",
        &query,
        &common::now(),
        &common::nonce(),
        common::AK,
        common::SECRET,
    );
    let mut req = trusting.post(format!("{base}/?{}", common::query_string(&query)));
    for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
        req = req.header(n, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // A client that trusts another CA refuses the server: a certificate error, not an answer.
    let other = client_trusting(&Ca::new("another CA"));
    let err = other
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_err();
    let chain = format!("{:?}", anyhow::Error::from(err));
    assert!(chain.contains("UnknownIssuer"), "{chain}");

    // Plain HTTP to the TLS listener gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", app.host))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    app.stop().await;
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_a_failed_reload_keeps_the_old() {
    let ca = Ca::new("keyplane test CA");
    let certs = tempfile::tempdir().unwrap();
    let first = ca.issue(certs.path());
    let config = tls_config(certs.path());
    let handle = config.tls.clone().unwrap();
    let app = spawn_with(config, None).await;
    assert_eq!(presented_certificate(&app.host, &ca).await, first);

    let second = ca.issue(certs.path());
    handle.reload().unwrap();
    assert_eq!(presented_certificate(&app.host, &ca).await, second);

    // A renewal caught half-written: the reload fails and the server keeps its certificate.
    std::fs::write(
        certs.path().join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = handle.reload().unwrap_err();
    assert!(format!("{err:#}").contains("key.pem"), "{err:#}");
    assert_eq!(presented_certificate(&app.host, &ca).await, second);
    // A key that belongs to another certificate is refused too.
    let third = tempfile::tempdir().unwrap();
    ca.issue(third.path());
    std::fs::copy(third.path().join("key.pem"), certs.path().join("key.pem")).unwrap();
    let err = handle.reload().unwrap_err();
    assert!(format!("{err:#}").contains("does not fit"), "{err:#}");
    assert_eq!(presented_certificate(&app.host, &ca).await, second);
    app.stop().await;
}

#[test]
fn missing_or_empty_certificate_files_are_clear_start_up_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = TlsCerts::load(&dir.path().join("no.pem"), &dir.path().join("no.key")).unwrap_err();
    assert!(format!("{err:#}").contains("no.pem"), "{err:#}");
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let err =
        TlsCerts::load(&dir.path().join("empty.pem"), &dir.path().join("no.key")).unwrap_err();
    assert!(
        format!("{err:#}").contains("holds no PEM certificate"),
        "{err:#}"
    );
}

/// Reads until the server closes the connection; fails the test if it never does.
async fn read_until_closed(conn: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open; it sent {:?}",
        String::from_utf8_lossy(&seen)
    );
    seen
}

fn short_header_timeout() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_line_is_closed() {
    let app = spawn_with(short_header_timeout(), None).await;
    let mut slow = TcpStream::connect(&app.host).await.unwrap();
    slow.write_all(b"GET /healthz HT").await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    // The server still answers others.
    let mut other = TcpStream::connect(&app.host).await.unwrap();
    assert!(healthz_on(&mut other).await.starts_with("HTTP/1.1 200"));
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_with(short_header_timeout(), None).await;
    let mut conn = TcpStream::connect(&app.host).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: keyplane\r\n\r\n")
        .await
        .unwrap();
    // One answer, then nothing more asked: the server closes the idle connection.
    let answer = String::from_utf8(read_until_closed(&mut conn).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"));
    app.stop().await;
}

/// Sends one keep-alive request and reads its whole answer (healthz: "ok\n" is its body).
async fn healthz_on(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: keyplane\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"ok\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(seen).unwrap()
}

#[tokio::test]
async fn past_the_connection_limit_a_client_waits_until_a_slot_frees() {
    let config = ServerConfig {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(600),
        ..ServerConfig::default()
    };
    let app = spawn_with(config, None).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(&app.host).await.unwrap();
        assert!(healthz_on(&mut c).await.starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    // The third connection is made (the kernel's backlog takes it) but not served...
    let mut third = TcpStream::connect(&app.host).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: keyplane\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served past the limit: {early:?}");
    // ...until one of the two closes; then it is.
    drop(held.pop());
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !seen.ends_with(b"ok\n") {
            let n = third.read(&mut buf).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the waiting connection was never served");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answers_is_disconnected() {
    // Found by the attacker pass: pipelined requests whose answers are never read parked the
    // connection on a full socket buffer, where no read timeout applies, for ever.
    let config = ServerConfig {
        write_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    };
    let app = spawn_with(config, None).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let conn = socket.connect(app.host.parse().unwrap()).await.unwrap();
    let (mut reader, mut writer) = conn.into_split();
    // Far more answer bytes (2,000 × the console script) than the socket buffers on both sides hold.
    const REQUESTS: usize = 2_000;
    let one = b"GET /console/app.js HTTP/1.1\r\nHost: keyplane\r\n\r\n";
    let pipelined = one.repeat(REQUESTS);
    tokio::spawn(async move {
        let _ = writer.write_all(&pipelined).await;
    });
    // Not reading: the server's writes stall and, past the write timeout, it gives up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0usize;
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 65536];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection was still open after 60 s");
    let script = include_bytes!("../../../web/console/app.js").len();
    assert!(
        got < REQUESTS * script,
        "all {REQUESTS} answers were delivered ({got} bytes): the stalled connection was kept"
    );
    // The server still answers others.
    let mut other = TcpStream::connect(&app.host).await.unwrap();
    assert!(healthz_on(&mut other).await.starts_with("HTTP/1.1 200"));
    app.stop().await;
}
