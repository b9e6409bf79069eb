//! Prometheus metrics (SPEC sections 10 and 11): `keyplane serve --metrics-listen ADDR` serves
//! `GET /metrics` in the text format on a listener of its own, never on the API's.
//!
//! Counted as calls happen: calls by dialect, action and result code, with their latency, and the
//! agents waiting in a long poll. Read at each scrape: the store's binding states and table sizes,
//! its group commits (SQLite), and the process's memory and open files. docs/RELIABILITY.md lists
//! the series.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    dialect: String,
    action: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    dialect: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabels {
    /// The smallest number of calls a commit of this bucket carried (1, 2, 4, …).
    calls_from: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

type Latency = Family<ActionLabels, Histogram, fn() -> Histogram>;

/// 0.25 ms to about 4 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The binding states of SPEC section 7, each reported even when no instance is in it.
const BINDING_STATES: &[&str] = &["none", "pending_restart", "applied", "failed", "drifted"];

pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Latency,
    agents_waiting: Arc<AtomicI64>,
    agents_gauge: Gauge,
    bindings: Family<StateLabels, Gauge>,
    rows: Family<TableLabels, Gauge>,
    commits: Counter,
    committed_calls: Counter,
    failed_commits: Counter,
    commit_sizes: Family<SizeLabels, Counter>,
    store_up: Gauge,
    resident_bytes: Gauge,
    open_fds: Gauge,
    /// One scrape at a time: each sets the gauges it then encodes.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "keyplane_calls",
            "API calls by dialect, action and result code (OK, or the vendor error code)",
            calls.clone(),
        );
        let latency: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "keyplane_call_duration_seconds",
            "Time from reading a call to its answer, by dialect and action",
            latency.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let agents_gauge = gauge(
            &mut registry,
            "keyplane_agents_connected",
            "Agents waiting in a long poll on this server",
        );
        let bindings = Family::<StateLabels, Gauge>::default();
        registry.register(
            "keyplane_bindings",
            "Instances by binding state (all servers of the store)",
            bindings.clone(),
        );
        let rows = Family::<TableLabels, Gauge>::default();
        registry.register(
            "keyplane_store_rows",
            "Rows of the store's tables that grow with use: instances, key pairs, nonces, ClientTokens, audit",
            rows.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let commits = counter(
            &mut registry,
            "keyplane_store_commits",
            "SQLite group commits since the server started",
        );
        let committed_calls = counter(
            &mut registry,
            "keyplane_store_committed_calls",
            "Write calls carried by those commits",
        );
        let failed_commits = counter(
            &mut registry,
            "keyplane_store_failed_commits",
            "SQLite group commits that failed (every call of the group answered an error)",
        );
        let commit_sizes = Family::<SizeLabels, Counter>::default();
        registry.register(
            "keyplane_store_commit_groups",
            "SQLite group commits by the number of calls they carried (calls_from..2*calls_from-1)",
            commit_sizes.clone(),
        );
        let store_up = gauge(
            &mut registry,
            "keyplane_store_up",
            "1 when the store answered this scrape's queries, else 0",
        );
        let resident_bytes = gauge(
            &mut registry,
            "process_resident_memory_bytes",
            "Resident memory of the server process",
        );
        let open_fds = gauge(
            &mut registry,
            "process_open_fds",
            "Open file descriptors of the server process (connections included)",
        );
        Metrics {
            registry,
            calls,
            latency,
            agents_waiting: Arc::default(),
            agents_gauge,
            bindings,
            rows,
            commits,
            committed_calls,
            failed_commits,
            commit_sizes,
            store_up,
            resident_bytes,
            open_fds,
            scrape: tokio::sync::Mutex::new(()),
        }
    }
}

impl Metrics {
    /// Counts one answered call. `action` is a name from the dialect's table, or `unknown`: a
    /// made-up action name must not become a series of its own.
    pub fn call(&self, dialect: &str, action: &str, result: &str, took: Duration) {
        let result = match result {
            r if r.starts_with("OK") => "OK",
            r => r,
        };
        self.calls
            .get_or_create(&CallLabels {
                dialect: dialect.to_string(),
                action: action.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&ActionLabels {
                dialect: dialect.to_string(),
                action: action.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Marks an agent as waiting in a long poll until the returned guard is dropped.
    pub fn agent_waiting(&self) -> AgentWaiting {
        self.agents_waiting.fetch_add(1, Ordering::Relaxed);
        AgentWaiting(self.agents_waiting.clone())
    }

    /// The text exposition of every series, the gauges read now.
    pub async fn render(&self, state: &AppState) -> String {
        let _one = self.scrape.lock().await;
        self.agents_gauge
            .set(self.agents_waiting.load(Ordering::Relaxed));
        match state.store.gauges().await {
            Ok(g) => {
                self.store_up.set(1);
                for s in BINDING_STATES {
                    let n = g
                        .binding_states
                        .iter()
                        .find(|(k, _)| k == s)
                        .map_or(0, |(_, n)| *n);
                    self.bindings
                        .get_or_create(&StateLabels {
                            state: s.to_string(),
                        })
                        .set(n as i64);
                }
                for (table, n) in &g.rows {
                    self.rows
                        .get_or_create(&TableLabels {
                            table: table.to_string(),
                        })
                        .set(*n as i64);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: the store did not answer");
                self.store_up.set(0);
            }
        }
        if let Some(w) = state.store.write_stats() {
            // The store counts since it opened; the counters catch up to it.
            let catch_up = |c: &Counter, total: u64| {
                c.inc_by(total.saturating_sub(c.get()));
            };
            catch_up(&self.commits, w.commits);
            catch_up(&self.committed_calls, w.calls);
            catch_up(&self.failed_commits, w.failed_commits);
            for (from, n) in w.sizes {
                let labels = SizeLabels {
                    calls_from: from.to_string(),
                };
                catch_up(&self.commit_sizes.get_or_create(&labels), n);
            }
        }
        let (rss, fds) = process_usage();
        self.resident_bytes.set(rss as i64);
        self.open_fds.set(fds as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// An agent's long poll, counted while it waits.
pub struct AgentWaiting(Arc<AtomicI64>);

impl Drop for AgentWaiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resident bytes and open descriptors, from `/proc/self` (0 where there is none).
fn process_usage() -> (u64, u64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    (rss, fds)
}

/// `GET /metrics`.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The metrics listener's routes: `/metrics` only.
pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}
