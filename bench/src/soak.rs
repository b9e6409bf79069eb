//! The soak (issue 16): a steady mixed load (200 calls/s) for `minutes` — DescribeKeyPairs, AttachKeyPair and
//! DetachKeyPair of 50 instances, ImportKeyPair/DeleteKeyPairs, and agents long-polling — sampling
//! every minute the server's resident memory, open descriptors, store rows and database size (from
//! its /metrics and the SQLite files), and that minute's throughput and p99. The curves go to
//! docs/soak.svg and the table to stdout: they must be flat.
//! `keyplane-bench --soak-minutes 30` (docs/RELIABILITY.md).

use std::fmt::Write as _;
use std::time::Duration;

use keyplane_store::prelude::*;
use keyplane_store::sqlite::SqliteStore;

use crate::load::run_paced;
use crate::scenarios::{bind_call, import_or_delete, p, seed, REGION};
use crate::server::start_configured;

/// One minute of the soak.
struct Sample {
    minute: usize,
    calls_per_second: f64,
    p99_ms: f64,
    errors: usize,
    rss_mib: f64,
    fds: f64,
    db_mib: f64,
    audit_rows: f64,
    agents: f64,
}

/// The SQLite database and its WAL, in MiB.
fn db_size(db: &str) -> f64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{db}{s}")).ok())
        .map(|m| m.len() as f64)
        .sum::<f64>()
        / (1024.0 * 1024.0)
}

/// `retention`: the server's `--audit-retention` (`0` keeps every record).
pub async fn soak(
    bin: &str,
    minutes: usize,
    agents: usize,
    retention: &str,
    out: &str,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("soak.db").to_string_lossy().into_owned();
    // The agents' registration tokens go in before the server opens the file.
    let store = SqliteStore::open(&db).await?;
    drop(store);
    let flags = ["--audit-retention".to_string(), retention.to_string()];
    let server = start_configured(bin, &format!("sqlite://{db}"), "full", 0, &flags).await?;
    let groups = seed(&server.signer).await?;
    let account = SqliteStore::open(&db)
        .await?
        .default_account()
        .await?
        .unwrap_or_default();
    let tokens = crate::agents::tokens(&format!("sqlite://{db}"), &account, agents).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(agents + 16)
        .timeout(Duration::from_secs(120))
        .build()?;
    let registered = crate::agents::register(&client, &server.signer.base, &tokens).await?;
    let mut pollers = tokio::task::JoinSet::new();
    for (id, cred) in registered {
        let (c, base) = (client.clone(), server.signer.base.clone());
        let auth = format!("Bearer {id}:{cred}");
        pollers.spawn(async move {
            let mut etag = String::new();
            loop {
                let mut req = c
                    .get(format!("{base}/agent/v1/desired?wait=60"))
                    .header("authorization", &auth);
                if !etag.is_empty() {
                    req = req.header("if-none-match", &etag);
                }
                match req.send().await {
                    Ok(r) => {
                        if let Some(t) = r.headers().get("etag").and_then(|v| v.to_str().ok()) {
                            etag = t.to_string();
                        }
                        let _ = r.bytes().await;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        });
    }
    let mut samples = Vec::new();
    println!("minute  calls/s  p99 ms  errors  RSS MiB  fds  DB MiB  audit rows  agents");
    for minute in 1..=minutes {
        let (s, groups) = (server.signer.clone(), groups.clone());
        // A name per minute: a key pair imported as one minute ends is deleted in no other.
        let prefix = format!("soak{minute}");
        // A steady load, well under the most the server takes: 8 workers at 25 calls/s.
        let pace = Some(Duration::from_millis(40));
        let r = run_paced(8, Duration::from_secs(60), pace, move |w, i| {
            match (w + i) % 4 {
                0 => s.v3("DescribeKeyPairs", &p(&[("RegionId", REGION)])),
                1 => bind_call(&s, "AttachKeyPair", &groups, w + i),
                2 => bind_call(&s, "DetachKeyPair", &groups, w + i),
                // Every fourth call of a worker: an import, then the delete of what it imported.
                _ => import_or_delete(&s, &prefix, w, (w + i) / 4),
            }
        })
        .await;
        let metric = |name: &'static str| {
            let server = &server;
            async move { server.metric(name).await.unwrap_or(0.0) }
        };
        let sample = Sample {
            minute,
            calls_per_second: r.per_second,
            p99_ms: r.p99_ms,
            errors: r.errors,
            rss_mib: metric("process_resident_memory_bytes").await / (1024.0 * 1024.0),
            fds: metric("process_open_fds").await,
            db_mib: db_size(&db),
            audit_rows: metric("keyplane_store_rows{table=\"audit\"}").await,
            agents: metric("keyplane_agents_connected").await,
        };
        println!(
            "{:>6}  {:>7.0}  {:>6.2}  {:>6}  {:>7.0}  {:>3.0}  {:>6.1}  {:>10.0}  {:>6.0}",
            sample.minute,
            sample.calls_per_second,
            sample.p99_ms,
            sample.errors,
            sample.rss_mib,
            sample.fds,
            sample.db_mib,
            sample.audit_rows,
            sample.agents
        );
        if let Some(e) = &r.first_error {
            println!("        first error of the minute: {e}");
        }
        samples.push(sample);
    }
    pollers.abort_all();
    std::fs::write(out, svg(&samples))?;
    println!("curves written to {out}");
    Ok(())
}

/// One measure of a sample.
type Measure = fn(&Sample) -> f64;

/// Four small line charts, one per measure, minutes across: plain SVG, no fonts to find.
fn svg(samples: &[Sample]) -> String {
    let charts: [(&str, Measure); 4] = [
        ("resident memory, MiB", |s| s.rss_mib),
        ("open descriptors", |s| s.fds),
        ("database and WAL, MiB", |s| s.db_mib),
        ("p99 of the minute, ms", |s| s.p99_ms),
    ];
    let (w, h, pad) = (360.0, 180.0, 36.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">",
        2.0 * w,
        2.0 * h
    );
    let last = samples.len().max(2) as f64 - 1.0;
    for (n, (title, value)) in charts.iter().enumerate() {
        let (x0, y0) = ((n % 2) as f64 * w, (n / 2) as f64 * h);
        let top = samples.iter().map(value).fold(0.0, f64::max).max(1e-9) * 1.2;
        let point = |i: usize, v: f64| {
            (
                x0 + pad + (w - 2.0 * pad) * i as f64 / last,
                y0 + h - pad - (h - 2.0 * pad) * v / top,
            )
        };
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\">{title}</text><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/><text x=\"{}\" y=\"{}\">{:.0}</text><text x=\"{}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\">minute {}</text>",
            x0 + pad,
            y0 + 16.0,
            x0 + pad,
            y0 + pad,
            x0 + pad,
            y0 + h - pad,
            x0 + pad,
            y0 + h - pad,
            x0 + w - pad,
            y0 + h - pad,
            x0 + 2.0,
            y0 + pad + 4.0,
            top,
            x0 + 2.0,
            y0 + h - pad,
            x0 + w - pad - 50.0,
            y0 + h - pad + 14.0,
            samples.len()
        );
        let points: Vec<String> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (x, y) = point(i, value(s));
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    out.push_str("</svg>\n");
    out
}
