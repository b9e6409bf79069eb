//! Overload (issue 16): far more calls than the server will serve, for a while, then none. It must
//! shed with the vendor's throttling error (one AccessKey past its allowance) or queue within a
//! bound (many callers past what the CPU serves), keep its memory bounded and the latency of the
//! calls it accepts within its budget, and serve normally the moment the load stops.
//! `keyplane-bench --overload-seconds 60` (docs/RELIABILITY.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::load::{run, Signer};
use crate::scenarios::{p, KEY, REGION};
use crate::server::{start_throttled, Server};

/// The highest resident memory and descriptor count the server reached while `load` ran, sampled
/// from its metrics every half second.
async fn peak_during<T>(
    server: &Server,
    load: impl std::future::Future<Output = T>,
) -> (T, f64, f64) {
    let done = Arc::new(AtomicBool::new(false));
    let url = server.metrics.clone();
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut rss, mut fds) = (0f64, 0f64);
            let probe = Server::probe(&url);
            while !done.load(Ordering::Relaxed) {
                if let Some((r, f)) = probe.sample().await {
                    rss = rss.max(r);
                    fds = fds.max(f);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (rss, fds)
        })
    };
    let out = load.await;
    done.store(true, Ordering::Relaxed);
    let (rss, fds) = sampler.await.unwrap_or_default();
    (out, rss, fds)
}

/// How long after the load stops until a call is answered 200.
async fn recovery(s: &Signer) -> Duration {
    let t = Instant::now();
    let client = reqwest::Client::new();
    loop {
        let req = s.v3("DescribeKeyPairs", &p(&[("RegionId", REGION)]));
        let mut b = client.post(&req.url);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        if b.send().await.is_ok_and(|r| r.status().is_success()) || t.elapsed().as_secs() > 30 {
            return t.elapsed();
        }
    }
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

async fn pass(server: &Server, label: &str, connections: usize, seconds: u64) {
    let before = server
        .metric("process_resident_memory_bytes")
        .await
        .unwrap_or(0.0);
    let s = server.signer.clone();
    let load = run(connections, Duration::from_secs(seconds), move |_, _| {
        s.v3("DescribeKeyPairs", &p(&[("RegionId", REGION)]))
    });
    let (r, rss, fds) = peak_during(server, load).await;
    let back = recovery(&server.signer).await;
    let after = server
        .metric("process_resident_memory_bytes")
        .await
        .unwrap_or(0.0);
    let secs = seconds as f64;
    let by = |status: u16| r.statuses.get(&status).copied().unwrap_or(0) as f64 / secs;
    let other: usize = r
        .statuses
        .iter()
        .filter(|(k, _)| !matches!(k, 200 | 400))
        .map(|(_, n)| n)
        .sum();
    println!(
        "{label}: {connections} connections, offered {:.0} calls/s: accepted {:.0}/s (p99 {:.2} ms), \
         throttled {:.0}/s, other answers {other}; RSS {:.0} MiB before, {:.0} peak, {:.0} after; \
         peak descriptors {fds:.0}; first 200 {:.1} ms after the load stopped",
        r.per_second,
        by(200),
        r.ok_p99_ms,
        by(400),
        mib(before),
        mib(rss),
        mib(after),
        back.as_secs_f64() * 1000.0,
    );
}

pub async fn overload(bin: &str, seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // One AccessKey far past its allowance: the throttle (1,000/s per action, the default) sheds.
    let db = dir.path().join("throttled.db");
    let server = start_throttled(bin, &format!("sqlite://{}", db.display()), "full", 1000).await?;
    crate::scenarios::import(&server.signer, "overload", KEY).await?;
    pass(
        &server,
        "overload, one AccessKey, throttle 1000/s",
        256,
        seconds,
    )
    .await;
    drop(server);
    // No throttle and more connections than the CPU serves: the calls queue.
    let db = dir.path().join("open.db");
    let server = start_throttled(bin, &format!("sqlite://{}", db.display()), "full", 0).await?;
    crate::scenarios::import(&server.signer, "overload", KEY).await?;
    pass(&server, "overload, no throttle", 512, seconds).await;
    Ok(())
}
