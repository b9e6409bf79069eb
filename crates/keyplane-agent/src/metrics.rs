//! The agent's own Prometheus metrics (`keyplane agent --metrics-listen ADDR`): how its applies
//! went and how often it lost and found the server. Off unless asked for; a tiny HTTP/1.1
//! responder on a loopback or private address, so the agent (root) carries no web framework.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The agent's counters; one per process.
#[derive(Default)]
pub struct Metrics {
    applies_ok: AtomicU64,
    applies_failed: AtomicU64,
    /// 1 when the last apply succeeded, 0 when it failed (or none ran yet).
    last_apply_ok: AtomicU64,
    /// Unix seconds of the last apply's end.
    last_apply_at: AtomicU64,
    /// Polls that failed: the server unreachable or answering badly.
    server_errors: AtomicU64,
    /// Polls that succeeded right after one or more failed.
    reconnects: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    applies_ok: AtomicU64::new(0),
    applies_failed: AtomicU64::new(0),
    last_apply_ok: AtomicU64::new(0),
    last_apply_at: AtomicU64::new(0),
    server_errors: AtomicU64::new(0),
    reconnects: AtomicU64::new(0),
};

impl Metrics {
    pub fn applied(&self, ok: bool) {
        let (count, flag) = if ok {
            (&self.applies_ok, 1)
        } else {
            (&self.applies_failed, 0)
        };
        count.fetch_add(1, Ordering::Relaxed);
        self.last_apply_ok.store(flag, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_apply_at.store(now, Ordering::Relaxed);
    }

    pub fn server_error(&self) {
        self.server_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition (Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut series = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        series(
            "keyplane_agent_applies_total",
            "counter",
            "Applies of the desired state, by result",
            &[
                ("{result=\"ok\"}", get(&self.applies_ok)),
                ("{result=\"failed\"}", get(&self.applies_failed)),
            ],
        );
        series(
            "keyplane_agent_last_apply_ok",
            "gauge",
            "1 when the last apply succeeded, else 0",
            &[("", get(&self.last_apply_ok))],
        );
        series(
            "keyplane_agent_last_apply_timestamp_seconds",
            "gauge",
            "When the last apply ended (Unix seconds; 0: none yet)",
            &[("", get(&self.last_apply_at))],
        );
        series(
            "keyplane_agent_server_errors_total",
            "counter",
            "Polls of the server that failed (unreachable, or a bad answer)",
            &[("", get(&self.server_errors))],
        );
        series(
            "keyplane_agent_reconnects_total",
            "counter",
            "Polls that succeeded after one or more failed",
            &[("", get(&self.reconnects))],
        );
        out
    }
}

/// The most of a request read: a scrape's request line and headers fit many times over.
const MAX_REQUEST: usize = 8 * 1024;

/// Answers `GET /metrics` on `listener` until the process ends; anything else is 404.
pub async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_REQUEST];
            let mut len = 0;
            // A slow or silent client gets five seconds, then the connection is dropped.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => len += n,
                    }
                }
                true
            })
            .await;
            if read != Ok(true) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let (status, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", METRICS.render())
            } else {
                ("404 Not Found", String::new())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_are_served_on_get_metrics_and_nothing_else() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));
        METRICS.applied(true);
        METRICS.server_error();
        METRICS.reconnected();
        let get = |path: &'static str| async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            out
        };
        let text = get("/metrics").await;
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(
            text.contains("keyplane_agent_applies_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("keyplane_agent_last_apply_ok 1"));
        assert!(text.contains("keyplane_agent_server_errors_total 1"));
        assert!(text.contains("keyplane_agent_reconnects_total 1"));
        assert!(get("/other").await.starts_with("HTTP/1.1 404"));
    }
}
