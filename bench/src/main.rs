//! `keyplane-bench`: starts a release `keyplane serve` on a fresh SQLite store (and, with
//! `--postgres`, on PostgreSQL), loads it, and drives
//! each scenario of docs/BENCHMARKS.md with a load generator that signs every request as the SDKs do
//! (Alibaba V3, V1, Volcengine), over kept-alive connections. It prints one line per scenario:
//! throughput and latency percentiles. No pass/fail: the numbers go into docs/BENCHMARKS.md.

mod agents;
mod load;
mod moto;
mod overload;
mod scenarios;
mod server;
mod soak;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The keyplane binary to measure (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/keyplane")]
    keyplane: String,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Instances in the big store (0 skips the big-store scenarios).
    #[arg(long, default_value_t = 1_000_000)]
    big_instances: usize,
    /// Simulated agents long-polling (0 skips the scenario).
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// A moto server to compare with (e.g. http://127.0.0.1:5000); skipped when absent.
    #[arg(long)]
    moto: Option<String>,
    /// A PostgreSQL superuser URL (a cluster with its default durability settings): repeats the
    /// scenarios on PostgreSQL, with two servers on one database; skipped when absent.
    #[arg(long)]
    postgres: Option<String>,
    /// Runs only the scenarios whose name contains this text (for step runs and profiles).
    #[arg(long)]
    only: Option<String>,
    /// Runs only the overload scenarios, each this many seconds (docs/RELIABILITY.md).
    #[arg(long)]
    overload_seconds: Option<u64>,
    /// Runs only the soak, this many minutes, with `--agents` agents (docs/RELIABILITY.md).
    #[arg(long)]
    soak_minutes: Option<usize>,
    /// The soak server's `--audit-retention`: short enough that the purge runs within the soak
    /// and the database size levels off (`0` keeps every record: it then grows linearly).
    #[arg(long, default_value = "10m")]
    soak_audit_retention: String,
    /// Where the soak writes its curves.
    #[arg(long, default_value = "docs/soak.svg")]
    soak_svg: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(minutes) = args.soak_minutes {
        return soak::soak(
            &args.keyplane,
            minutes,
            args.agents,
            &args.soak_audit_retention,
            &args.soak_svg,
        )
        .await;
    }
    if let Some(seconds) = args.overload_seconds {
        return overload::overload(&args.keyplane, seconds).await;
    }
    if let Some(only) = args.only.clone() {
        let _ = scenarios::ONLY.set(only);
    }
    scenarios::run_all(
        &args.keyplane,
        args.seconds,
        args.concurrency,
        args.big_instances,
        args.agents,
        args.moto.as_deref(),
        args.postgres.as_deref(),
    )
    .await
}
