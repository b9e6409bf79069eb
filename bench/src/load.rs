//! The load generator: `concurrency` workers, each on its own kept-alive connection, sending
//! requests built (and signed) per call by a closure for a fixed time; latencies in microseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyplane_sig::alibaba::{sign_v3, v1_signature, v1_string_to_sign, V3Call};
use keyplane_sig::encode::pct;
use keyplane_sig::{volc, SecretKey};

/// One request: method, path and query, headers.
pub struct Req {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct Signer {
    pub base: String,
    pub host: String,
    pub ak: String,
    pub secret: SecretKey,
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn qs(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Signer {
    /// An Alibaba V3 (ACS3-HMAC-SHA256) request, as the Tea SDKs send it.
    pub fn v3(&self, action: &str, params: &[(String, String)]) -> Req {
        let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let n = nonce();
        let call = V3Call {
            method: "POST",
            path: "/",
            host: &self.host,
            action,
            version: "2014-05-26",
            query: params,
            body: b"",
            date: &date,
            nonce: &n,
        };
        let headers = sign_v3(&call, &self.ak, &self.secret)
            .into_iter()
            .filter(|(k, _)| k != "host")
            .collect();
        Req {
            url: format!("{}/?{}", self.base, qs(params)),
            headers,
        }
    }

    /// An Alibaba V1 (HMAC-SHA1) request, as the old SDK sends it.
    pub fn v1(&self, action: &str, params: &[(String, String)]) -> Req {
        let mut all = params.to_vec();
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        for (k, v) in [
            ("Action", action.to_string()),
            ("Version", "2014-05-26".into()),
            ("AccessKeyId", self.ak.clone()),
            ("SignatureMethod", "HMAC-SHA1".into()),
            ("SignatureVersion", "1.0".into()),
            ("SignatureNonce", nonce()),
            ("Timestamp", ts),
            ("Format", "JSON".into()),
        ] {
            all.push((k.into(), v));
        }
        let sig = v1_signature(&self.secret, &v1_string_to_sign("POST", "/", &all));
        all.push(("Signature".into(), sig));
        Req {
            url: format!("{}/?{}", self.base, qs(&all)),
            headers: vec![],
        }
    }

    /// A Volcengine (HMAC-SHA256) request in `region`.
    pub fn volc(&self, action: &str, params: &[(String, String)], region: &str) -> Req {
        let mut all = params.to_vec();
        all.push(("Action".into(), action.into()));
        all.push(("Version".into(), "2020-04-01".into()));
        let x_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let call = volc::Call {
            method: "POST",
            host: &self.host,
            query: &all,
            body: b"",
            x_date: &x_date,
            region,
            service: "ecs",
        };
        let headers = volc::sign(&call, &self.ak, &self.secret);
        Req {
            url: format!("{}/?{}", self.base, qs(&all)),
            headers,
        }
    }
}

/// Throughput and latency of one run.
pub struct Result {
    pub calls: usize,
    pub errors: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// The 99th percentile of the calls that succeeded (what an overloaded server still serves).
    pub ok_p99_ms: f64,
    /// Answers by HTTP status (0: no answer, the connection failed).
    pub statuses: std::collections::BTreeMap<u16, usize>,
    pub first_error: Option<String>,
}

impl std::fmt::Display for Result {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} calls/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  ({} calls, {} errors{})",
            self.per_second,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.calls,
            self.errors,
            self.first_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        )
    }
}

/// Sends `make(worker, i)` from `concurrency` workers for `duration`, each as fast as it can.
pub async fn run<F>(concurrency: usize, duration: Duration, make: F) -> Result
where
    F: Fn(usize, usize) -> Req + Send + Sync + 'static,
{
    run_paced(concurrency, duration, None, make).await
}

/// [`run`], each worker sending at most one call per `pace` (a steady load, not the most the
/// server takes).
pub async fn run_paced<F>(
    concurrency: usize,
    duration: Duration,
    pace: Option<Duration>,
    make: F,
) -> Result
where
    F: Fn(usize, usize) -> Req + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            // One connection per worker, kept alive.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let (mut lat, mut errors, mut first_error) = (Vec::new(), 0usize, None);
            let (mut ok_lat, mut statuses) = (Vec::new(), std::collections::BTreeMap::new());
            let mut i = 0;
            let mut next = tokio::time::Instant::now();
            while start.elapsed() < duration {
                if let Some(pace) = pace {
                    tokio::time::sleep_until(next).await;
                    next += pace;
                }
                let req = make(w, i);
                i += 1;
                let mut b = client.post(&req.url);
                for (k, v) in &req.headers {
                    b = b.header(k, v);
                }
                let t = Instant::now();
                match b.send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
                        let body = r.bytes().await.unwrap_or_default();
                        lat.push(t.elapsed().as_micros() as u32);
                        if ok {
                            ok_lat.push(t.elapsed().as_micros() as u32);
                        } else {
                            errors += 1;
                            first_error.get_or_insert_with(|| {
                                String::from_utf8_lossy(&body).chars().take(200).collect()
                            });
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        *statuses.entry(0).or_insert(0) += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, first_error, ok_lat, statuses)
        }));
    }
    let (mut all, mut errors, mut first_error) = (Vec::new(), 0, None);
    let (mut ok_all, mut statuses) = (Vec::new(), std::collections::BTreeMap::new());
    for t in tasks {
        let (lat, e, fe, ok_lat, st) = t.await.expect("worker");
        all.extend(lat);
        ok_all.extend(ok_lat);
        for (k, n) in st {
            *statuses.entry(k).or_insert(0) += n;
        }
        errors += e;
        first_error = first_error.or(fe);
    }
    ok_all.sort_unstable();
    let ok_p99_ms = ok_all
        .get(((ok_all.len() as f64 * 0.99) as usize).min(ok_all.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0) as f64
        / 1000.0;
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Result {
        calls: all.len(),
        errors,
        per_second: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        ok_p99_ms,
        statuses,
        first_error,
    }
}
