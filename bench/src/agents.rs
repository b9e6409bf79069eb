//! 10,000 simulated agents long-polling one server: the server's memory while they wait, and the
//! time from a RebootInstance to the agent receiving its new desired state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::load::Signer;

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").map(|v| {
                    v.trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse::<f64>()
                        .unwrap_or(0.0)
                })
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// Inserts `n` registration tokens for `account` straight into the store (a loader, not the API).
/// `url` is `sqlite://…` or `postgres://…`.
pub async fn tokens(url: &str, account: &str, n: usize) -> anyhow::Result<Vec<String>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await?;
    let mut tx = pool.begin().await?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let token = format!("bench-token-{i}");
        // Tokens have an ID and an expiry since migration 0007; without them none redeems.
        sqlx::query("INSERT INTO registration_tokens (token_hash, token_id, account_id, region_id, zone_id, name, created_at, expires_at) VALUES ($1, $2, $3, 'cn-hangzhou', 'cn-hangzhou-h', '', '2026-01-01T00:00:00.000000Z', '2999-01-01T00:00:00.000000Z')")
            .bind(hex::encode(Sha256::digest(token.as_bytes())))
            .bind(format!("rt-bench{i:012}"))
            .bind(account.to_string())
            .execute(&mut *tx)
            .await?;
        out.push(token);
    }
    tx.commit().await?;
    Ok(out)
}

/// Registers one agent per token, 64 at a time: `(instance ID, credential)` each.
pub async fn register(
    client: &reqwest::Client,
    base: &str,
    tokens: &[String],
) -> anyhow::Result<Vec<(String, String)>> {
    // Register, 64 at a time.
    let mut agents: Vec<(String, String)> = Vec::with_capacity(tokens.len());
    for chunk in tokens.chunks(64) {
        let mut calls = Vec::new();
        for token in chunk {
            let (c, base) = (client.clone(), base.to_string());
            let body = serde_json::json!({"Token": token, "OsName": "bench", "LoginUser": "root"})
                .to_string();
            calls.push(tokio::spawn(async move {
                let v: Value = c
                    .post(format!("{base}/agent/v1/register"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?
                    .json_text()
                    .await?;
                match (v["InstanceId"].as_str(), v["Credential"].as_str()) {
                    (Some(id), Some(cred)) => anyhow::Ok((id.to_string(), cred.to_string())),
                    _ => anyhow::bail!("registration refused: {v}"),
                }
            }));
        }
        for c in calls {
            agents.push(c.await??);
        }
    }
    Ok(agents)
}

/// Agents long-poll the server of `s`; the reboots go through `rebooter` (the same server, or
/// another one on the same database).
pub async fn run(
    s: &Signer,
    rebooter: &Signer,
    server_pid: u32,
    tokens: Vec<String>,
    reboots: usize,
) -> anyhow::Result<()> {
    let n = tokens.len();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n + 16)
        .timeout(Duration::from_secs(120))
        .build()?;
    let t = Instant::now();
    let agents = register(&client, &s.base, &tokens).await?;
    println!(
        "registered {n} agents in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Every agent long-polls; a reboot's arrival time is recorded against when it was sent.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let mut pollers = tokio::task::JoinSet::new();
    for (id, cred) in &agents {
        let (c, base, sent, tx) = (client.clone(), s.base.clone(), sent.clone(), tx.clone());
        let auth = format!("Bearer {id}:{cred}");
        let id = id.clone();
        pollers.spawn(async move {
            let mut etag = String::new();
            loop {
                let mut req = c
                    .get(format!("{base}/agent/v1/desired?wait=60"))
                    .header("authorization", &auth);
                if !etag.is_empty() {
                    req = req.header("if-none-match", &etag);
                }
                let Ok(resp) = req.send().await else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                if resp.status() == reqwest::StatusCode::OK {
                    etag = resp
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    if let Some(t0) = sent.lock().unwrap().remove(&id) {
                        let _ = tx.send(t0.elapsed());
                    }
                }
                let _ = resp.bytes().await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    println!(
        "{n} agents long-polling: server RSS {:.0} MiB",
        rss_mib(server_pid)
    );
    let mut latencies = Vec::new();
    for (id, _) in agents.iter().step_by((n / reboots).max(1)).take(reboots) {
        sent.lock().unwrap().insert(id.clone(), Instant::now());
        let req = rebooter.v3("RebootInstance", &[("InstanceId".to_string(), id.clone())]);
        let mut b = client.post(&req.url);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let answer = b.send().await?;
        if !answer.status().is_success() {
            eprintln!(
                "RebootInstance {id}: {} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
            continue;
        }
        answer.bytes().await?;
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            latencies.push(d.as_micros() as u64);
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "RebootInstance -> agent has its new desired state ({} reboots, {n} agents): p50 {:.2} ms  p99 {:.2} ms  ({} of {reboots} arrived)",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.len()
    );
    println!(
        "after the reboots: server RSS {:.0} MiB",
        rss_mib(server_pid)
    );
    // The agents stop here: left polling, they would retry a stopped server every second for the
    // rest of the run, load on the generator's cores that the later scenarios would pay for.
    pollers.shutdown().await;
    Ok(())
}

trait JsonText {
    async fn json_text(self) -> anyhow::Result<Value>;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.bytes().await?)?)
    }
}
