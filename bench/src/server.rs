//! The keyplane server a benchmark measures: a release binary on a free port, with the bench's
//! root AccessKey, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keyplane_sig::SecretKey;
use keyplane_store::prelude::*;

use crate::load::Signer;
use crate::scenarios::{AK, SK};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub child: Child,
    pub signer: Signer,
    /// `GET /metrics` of this server.
    pub metrics: String,
}

impl Server {
    /// The value of one series of the server's metrics, now.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        Self::probe(&self.metrics).value(series).await
    }

    /// A reader of the metrics at `url`, to move into a sampling task.
    pub fn probe(url: &str) -> Probe {
        Probe {
            url: url.to_string(),
            client: reqwest::Client::new(),
        }
    }
}

/// Reads a server's `/metrics`.
pub struct Probe {
    url: String,
    client: reqwest::Client,
}

impl Probe {
    async fn text(&self) -> Option<String> {
        self.client
            .get(&self.url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    pub async fn value(&self, series: &str) -> Option<f64> {
        series_value(&self.text().await?, series)
    }

    /// Resident bytes and open descriptors.
    pub async fn sample(&self) -> Option<(f64, f64)> {
        let text = self.text().await?;
        Some((
            series_value(&text, "process_resident_memory_bytes")?,
            series_value(&text, "process_open_fds")?,
        ))
    }
}

/// The value of `series` (its name and labels as the exposition spells them) in `text`.
fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

pub async fn start(bin: &str, db: &str) -> anyhow::Result<Server> {
    start_with(bin, &format!("sqlite://{db}"), "full").await
}

/// A server on the database `url`; servers on one PostgreSQL database share this server key.
pub async fn start_with(bin: &str, url: &str, sync: &str) -> anyhow::Result<Server> {
    start_throttled(bin, url, sync, 0).await
}

/// [`start_with`], its throttle allowing `per_second` calls per AccessKey and action (0: off).
pub async fn start_throttled(
    bin: &str,
    url: &str,
    sync: &str,
    per_second: u32,
) -> anyhow::Result<Server> {
    start_configured(bin, url, sync, per_second, &[]).await
}

/// [`start_throttled`] with `extra` flags for `keyplane serve`.
pub async fn start_configured(
    bin: &str,
    url: &str,
    sync: &str,
    per_second: u32,
    extra: &[String],
) -> anyhow::Result<Server> {
    let port = free_port();
    let metrics_port = free_port();
    let data = std::env::temp_dir().join(format!("keyplane-bench-{port}"));
    // --data-dir is PostgreSQL's: with SQLite the server's files live beside the database.
    let data_dir = if url.starts_with("sqlite://") {
        vec![]
    } else {
        vec![
            "--data-dir".to_string(),
            data.to_string_lossy().into_owned(),
        ]
    };
    let child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            url,
            "--throttle-per-second",
            &per_second.to_string(),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--sqlite-synchronous",
            sync,
            // 10,000 agents hold 10,000 connections: the default limit would leave no slot for
            // the reboots (SPEC section 12's agent scenario needs more than the agents).
            "--max-connections",
            "16000",
        ])
        .args(data_dir)
        .args(extra)
        .env(
            "KEYPLANE_SERVER_KEY",
            "YmVuY2htYXJrLXNlcnZlci1rZXktMzItYnl0ZXMhISE=",
        )
        .env("KEYPLANE_ROOT_ACCESS_KEY_ID", AK)
        .env("KEYPLANE_ROOT_ACCESS_KEY_SECRET", SK)
        // Warnings, and the store's group-commit summary at shutdown (docs/BENCHMARKS.md).
        .env("KEYPLANE_LOG", "warn,keyplane_store=info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            let signer = Signer {
                base,
                host: format!("127.0.0.1:{port}"),
                ak: AK.into(),
                secret: SecretKey::new(SK),
            };
            let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
            return Ok(Server {
                child,
                signer,
                metrics,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("keyplane did not start")
}

/// The default account of the server on the PostgreSQL database `url`.
pub async fn server_account(url: &str) -> anyhow::Result<String> {
    let store = keyplane_store::postgres::PgStore::open(url).await?;
    Ok(store.default_account().await?.unwrap_or_default())
}
