//! The scenarios of docs/BENCHMARKS.md, in the order they are printed.

use keyplane_store::prelude::*;
use std::time::{Duration, Instant};

use keyplane_sig::SecretKey;
use keyplane_store::{sqlite::SqliteStore, BindOp, Store};
use serde_json::Value;

use crate::load::{run, Req, Signer};
use crate::server::{server_account, start, start_with};

pub(crate) const AK: &str = "LTAI5tBenchmark000001";
pub(crate) const SK: &str = "benchmark-secret";
pub(crate) const REGION: &str = "cn-hangzhou";
pub(crate) const LINUX: &str = "aliyun_3_x64_20G_alibase_20240819.vhd";
pub(crate) const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f bench";

/// Request `i` of worker `w` in the ImportKeyPair / DeleteKeyPairs alternation: even imports a
/// key pair named after the pair, odd deletes it, so the store never grows.
pub(crate) fn import_or_delete(g: &Signer, prefix: &str, w: usize, i: usize) -> Req {
    let name = format!("{prefix}-{w}-{}", i / 2);
    if i.is_multiple_of(2) {
        g.v3(
            "ImportKeyPair",
            &p(&[
                ("RegionId", REGION),
                ("KeyPairName", &name),
                ("PublicKeyBody", KEY),
            ]),
        )
    } else {
        g.v3(
            "DeleteKeyPairs",
            &p(&[
                ("RegionId", REGION),
                ("KeyPairNames", &format!("[\"{name}\"]")),
            ]),
        )
    }
}

/// An AttachKeyPair or DetachKeyPair of `bench-kp` on the `n`th group of 50 instances (cycling).
pub(crate) fn bind_call(g: &Signer, action: &str, groups: &[Vec<String>], n: usize) -> Req {
    let ids = serde_json::to_string(&groups[n % groups.len()]).expect("IDs serialize");
    g.v3(
        action,
        &p(&[
            ("RegionId", REGION),
            ("KeyPairName", "bench-kp"),
            ("InstanceIds", &ids),
        ]),
    )
}

/// Deletes the key pairs an ImportKeyPair / DeleteKeyPairs alternation left behind (a worker
/// stopped between its import and its delete), so that the scenarios after it list the same
/// key pairs as those before it.
pub(crate) async fn delete_leftovers(g: &Signer, prefix: &str) -> anyhow::Result<()> {
    loop {
        let listing = call(
            g,
            "DescribeKeyPairs",
            &p(&[
                ("RegionId", REGION),
                ("KeyPairName", &format!("{prefix}-*")),
                ("PageSize", "50"),
            ]),
        )
        .await?;
        let names: Vec<&str> = listing["KeyPairs"]["KeyPair"]
            .as_array()
            .map(|a| a.iter().filter_map(|k| k["KeyPairName"].as_str()).collect())
            .unwrap_or_default();
        if names.is_empty() {
            return Ok(());
        }
        let names = serde_json::to_string(&names)?;
        call(
            g,
            "DeleteKeyPairs",
            &p(&[("RegionId", REGION), ("KeyPairNames", &names)]),
        )
        .await?;
    }
}

pub(crate) fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn call(s: &Signer, action: &str, params: &[(String, String)]) -> anyhow::Result<Value> {
    let req = s.v3(action, params);
    let mut b = reqwest::Client::new().post(&req.url);
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    let r = b.send().await?;
    let status = r.status();
    let v: Value = serde_json::from_str(&r.text().await?)?;
    anyhow::ensure!(status.is_success(), "{action}: {v}");
    Ok(v)
}

/// Imports the key pair `name` with the public key `key`.
pub(crate) async fn import(s: &Signer, name: &str, key: &str) -> anyhow::Result<()> {
    let params = p(&[
        ("RegionId", REGION),
        ("KeyPairName", name),
        ("PublicKeyBody", key),
    ]);
    call(s, "ImportKeyPair", &params).await.map(drop)
}

/// 1,000 instances in 20 groups of 50, and the key pair `bench-kp`.
pub(crate) async fn seed(s: &Signer) -> anyhow::Result<Vec<Vec<String>>> {
    import(s, "bench-kp", KEY).await?;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let v = call(
            s,
            "RunInstances",
            &p(&[
                ("RegionId", REGION),
                ("ImageId", LINUX),
                ("InstanceType", "ecs.g7.large"),
                ("Amount", "100"),
            ]),
        )
        .await?;
        ids.extend(
            v["InstanceIdSets"]["InstanceIdSet"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string()),
        );
    }
    Ok(ids.chunks(50).map(|c| c.to_vec()).collect())
}

/// The `--only` filter: scenarios whose name contains it run, the others are skipped (the signed
/// ceiling and DescribeKeyPairs of each pass always run).
pub static ONLY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub(crate) fn wanted(name: &str) -> bool {
    ONLY.get().is_none_or(|only| name.contains(only.as_str()))
}

pub(crate) fn line(name: &str, r: impl std::fmt::Display) {
    println!("{name:<46} {r}");
}

async fn api_scenarios(s: &Signer, groups: &[Vec<String>], seconds: u64, c: usize, label: &str) {
    let d = Duration::from_secs(seconds);
    let sig = || Signer {
        base: s.base.clone(),
        host: s.host.clone(),
        ak: s.ak.clone(),
        secret: SecretKey::new(SK),
    };
    // The signed ceiling of this pass: signature, replay check, AccessKey and envelope, no store
    // read; every other call of the pass is held to it (SPEC section 12).
    let g = sig();
    let ceiling = run(c, d, move |_, _| g.v3("DescribeRegions", &[])).await;
    line(&format!("{label}DescribeRegions, signed (V3)"), &ceiling);
    let g = sig();
    let describe = run(c, d, move |_, _| {
        g.v3(
            "DescribeKeyPairs",
            &p(&[("RegionId", REGION), ("PageSize", "50")]),
        )
    })
    .await;
    line(&format!("{label}DescribeKeyPairs (V3)"), &describe);
    if ceiling.per_second > 0.0 {
        println!(
            "{:<46} {:.0} % of the signed ceiling",
            format!("{label}DescribeKeyPairs / DescribeRegions"),
            100.0 * describe.per_second / ceiling.per_second
        );
    }
    if wanted("DescribeKeyPairs (Volcengine)") {
        let g = sig();
        line(
            &format!("{label}DescribeKeyPairs (Volcengine)"),
            run(c, d, move |_, _| g.volc("DescribeKeyPairs", &[], REGION)).await,
        );
    }
    if wanted("DescribeInstances, 100 per page (V1)") {
        let g = sig();
        line(
            &format!("{label}DescribeInstances, 100 per page (V1)"),
            run(c, d, move |_, _| {
                g.v1(
                    "DescribeInstances",
                    &p(&[("RegionId", REGION), ("PageSize", "100")]),
                )
            })
            .await,
        );
    }
    for action in ["AttachKeyPair", "DetachKeyPair"] {
        let name = format!("{action}, 50 instances (V3)");
        if wanted(&name) {
            let (g, groups2) = (sig(), groups.to_vec());
            line(
                &format!("{label}{name}"),
                run(c, d, move |w, i| bind_call(&g, action, &groups2, w + i)).await,
            );
        }
    }
    if wanted("ImportKeyPair / DeleteKeyPairs alternating (V3)") {
        let g = sig();
        line(
            &format!("{label}ImportKeyPair / DeleteKeyPairs alternating (V3)"),
            run(c, d, move |w, i| import_or_delete(&g, "imp", w, i)).await,
        );
        if let Err(e) = delete_leftovers(s, "imp").await {
            println!("deleting the alternation's leftovers failed: {e}");
        }
    }
}

async fn ceiling(seconds: u64, c: usize) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route("/", axum::routing::post(|| async { "{}" }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    line(
        "ceiling: trivial HTTP handler, same generator",
        run(c, Duration::from_secs(seconds), move |_, _| {
            crate::load::Req {
                url: format!("{base}/"),
                headers: vec![],
            }
        })
        .await,
    );
    server.abort();
    Ok(())
}

/// The store's own transaction rate for the same write (a 50-instance bind), no HTTP.
async fn raw_store(db: &str, seconds: u64) -> anyhow::Result<()> {
    let store = SqliteStore::open(db).await?;
    raw_bind(
        &store,
        seconds,
        "ceiling: store.bind(50 instances), one writer",
    )
    .await
}

async fn raw_bind(store: &dyn Store, seconds: u64, label: &str) -> anyhow::Result<()> {
    let account = store.default_account().await?.unwrap();
    let kp = store
        .key_pair_by_name(&account, REGION, "bench-kp")
        .await?
        .unwrap();
    let listing = store
        .list_instances(
            &keyplane_store::InstanceFilter {
                account_id: account.clone(),
                region_id: REGION.into(),
                ..Default::default()
            },
            keyplane_store::Page::Offset {
                offset: 0,
                limit: 1000,
            },
        )
        .await?;
    let ids: Vec<String> = listing.items.iter().map(|i| i.id.clone()).collect();
    let groups: Vec<&[String]> = ids.chunks(50).collect();
    let (start, mut n) = (Instant::now(), 0usize);
    while start.elapsed() < Duration::from_secs(seconds) {
        let op = if n % 2 == 0 {
            BindOp::Attach
        } else {
            BindOp::Detach
        };
        store
            .bind(&account, REGION, &kp, groups[n % groups.len()], op, None)
            .await?;
        n += 1;
    }
    line(
        label,
        format!(
            "{:>9.0} transactions/s",
            n as f64 / start.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Grows the store with rows of other accounts: `instances` instances and 100,000 key pairs.
async fn load_big(db: &str, instances: usize) -> anyhow::Result<()> {
    let t = Instant::now();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db}")).await?;
    let mut tx = pool.begin().await?;
    let accounts = 200;
    for a in 0..accounts {
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES (?, 'filler', '2026-01-01T00:00:00.000000Z')")
            .bind(format!("9{a:015}"))
            .execute(&mut *tx)
            .await?;
    }
    for k in 0..100_000usize {
        sqlx::query(
            "INSERT INTO key_pairs (id, account_id, region_id, name, public_key, fingerprint_sha256, fingerprint_md5, created_at) \
             VALUES (?, ?, 'cn-hangzhou', ?, 'ssh-ed25519 AAAA', ?, ?, '2026-01-01T00:00:00.000000Z')",
        )
        .bind(format!("kp-filler{k:012}"))
        .bind(format!("9{:015}", k % accounts))
        .bind(format!("filler-{k}"))
        .bind(format!("SHA256:filler{k}"))
        .bind(format!("00:{k:08}"))
        .execute(&mut *tx)
        .await?;
    }
    for i in 0..instances {
        sqlx::query(
            "INSERT INTO instances (id, account_id, region_id, zone_id, name, host_name, image_id, instance_type, os_type, os_name, \
             status, io_optimized, agent_installed, login_user, provider, has_password, created_at, desired_password_login, \
             effective_password_login, binding_state) VALUES (?, ?, 'cn-hangzhou', 'cn-hangzhou-h', 'filler', 'filler', ?, 't', \
             'linux', 'Linux', 'Running', 1, 1, 'root', 'sim', 0, '2026-01-01T00:00:00.000000Z', 1, 1, 'none')",
        )
        .bind(format!("i-filler{i:013}"))
        .bind(format!("9{:015}", i % accounts))
        .bind(LINUX)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    println!(
        "loaded {instances} instances and 100000 key pairs of 200 other accounts in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn run_all(
    bin: &str,
    seconds: u64,
    c: usize,
    big: usize,
    agents: usize,
    moto: Option<&str>,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!(
        "keyplane-bench {} · {} cores · {} · {}s per scenario · {} connections",
        chrono::Utc::now().format("%Y-%m-%d"),
        std::thread::available_parallelism()?.get(),
        cpu,
        seconds,
        c
    );
    ceiling(seconds, c).await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db").to_string_lossy().to_string();
    let groups = {
        let server = start(bin, &db).await?;
        let groups = seed(&server.signer).await?;
        api_scenarios(&server.signer, &groups, seconds, c, "").await;
        let s = &server.signer;
        if let Some(m) = moto {
            crate::moto::moto(m, s, seconds, c).await;
        }
        groups
    };
    if wanted("AttachKeyPair, 50 instances, synchronous=NORMAL") {
        // The same writes without an fsync per commit, to show what durability costs.
        let server = start_with(bin, &format!("sqlite://{db}"), "normal").await?;
        let s = &server.signer;
        let (g, groups2) = (
            Signer {
                base: s.base.clone(),
                host: s.host.clone(),
                ak: s.ak.clone(),
                secret: SecretKey::new(SK),
            },
            groups.clone(),
        );
        line(
            "AttachKeyPair, 50 instances, synchronous=NORMAL",
            run(c, Duration::from_secs(seconds), move |w, i| {
                bind_call(&g, "AttachKeyPair", &groups2, w + i)
            })
            .await,
        );
    }
    if wanted("store.bind") {
        raw_store(&db, seconds).await?;
    }
    if agents > 0 {
        let account = SqliteStore::open(&db)
            .await?
            .default_account()
            .await?
            .unwrap_or_default();
        let tokens = crate::agents::tokens(&format!("sqlite://{db}"), &account, agents).await?;
        let server = start(bin, &db).await?;
        let s = &server.signer;
        crate::agents::run(s, s, server.child.id(), tokens, 200).await?;
    }
    if big > 0 {
        load_big(&db, big).await?;
        let server = start(bin, &db).await?;
        api_scenarios(&server.signer, &groups, seconds, c, "big store: ").await;
    }
    if let Some(admin) = postgres {
        postgres_pass(bin, admin, seconds, c, big, agents).await?;
    }
    Ok(())
}

/// The same scenarios on PostgreSQL, then what only PostgreSQL has: two servers on one database,
/// and agents on one server hearing reboots issued on the other.
async fn postgres_pass(
    bin: &str,
    admin: &str,
    seconds: u64,
    c: usize,
    big: usize,
    agents: usize,
) -> anyhow::Result<()> {
    let name = format!("keyplane_bench_{}", std::process::id());
    let pool = sqlx::PgPool::connect(admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await?;
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let server = start_with(bin, &url, "full").await?;
    let groups = seed(&server.signer).await?;
    api_scenarios(&server.signer, &groups, seconds, c, "postgres: ").await;
    {
        let store = keyplane_store::postgres::PgStore::open(&url).await?;
        raw_bind(
            &store,
            seconds,
            "postgres ceiling: store.bind(50 instances)",
        )
        .await?;
    }
    // Two servers on one database, the generator's connections split between them.
    let second = start_with(bin, &url, "full").await?;
    let (a, b) = (server.signer.clone(), second.signer.clone());
    line(
        "postgres, 2 servers: DescribeKeyPairs (V3)",
        run(c, Duration::from_secs(seconds), move |w, _| {
            let s = if w % 2 == 0 { &a } else { &b };
            s.v3(
                "DescribeKeyPairs",
                &p(&[("RegionId", REGION), ("PageSize", "50")]),
            )
        })
        .await,
    );
    let (a, b, groups2) = (server.signer.clone(), second.signer.clone(), groups.clone());
    line(
        "postgres, 2 servers: AttachKeyPair, 50 (V3)",
        run(c, Duration::from_secs(seconds), move |w, i| {
            let s = if w % 2 == 0 { &a } else { &b };
            bind_call(s, "AttachKeyPair", &groups2, w + i)
        })
        .await,
    );
    if agents > 0 {
        let account = server_account(&url).await?;
        let tokens = crate::agents::tokens(&url, &account, agents).await?;
        println!("postgres: agents long-poll server A, reboots go to server B");
        crate::agents::run(
            &server.signer,
            &second.signer,
            server.child.id(),
            tokens,
            200,
        )
        .await?;
    }
    drop(second);
    if big > 0 {
        let t = Instant::now();
        let pool = sqlx::PgPool::connect(&url).await?;
        for sql in BIG_POSTGRES {
            sqlx::query(sql)
                .bind(big as i64)
                .bind(LINUX)
                .execute(&pool)
                .await?;
        }
        println!(
            "postgres: loaded {big} instances and 100000 key pairs of 200 other accounts in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        api_scenarios(&server.signer, &groups, seconds, c, "postgres big store: ").await;
    }
    Ok(())
}

/// The big store on PostgreSQL, loaded by the database itself (`$1` instances, `$2` the image).
const BIG_POSTGRES: &[&str] = &[
    "INSERT INTO accounts (id, name, created_at) SELECT '9' || lpad(a::text, 15, '0'), 'filler',      '2026-01-01T00:00:00.000000Z' FROM generate_series(0, 199) a WHERE $1::BIGINT >= 0 AND $2::TEXT <> ''",
    "INSERT INTO key_pairs (id, account_id, region_id, name, public_key, fingerprint_sha256, fingerprint_md5, created_at)      SELECT 'kp-filler' || lpad(k::text, 12, '0'), '9' || lpad((k % 200)::text, 15, '0'), 'cn-hangzhou',      'filler-' || k, 'ssh-ed25519 AAAA', 'SHA256:filler' || k, '00:' || lpad(k::text, 8, '0'),      '2026-01-01T00:00:00.000000Z' FROM generate_series(0, 99999) k WHERE $1::BIGINT >= 0 AND $2::TEXT <> ''",
    "INSERT INTO instances (id, account_id, region_id, zone_id, name, host_name, image_id, instance_type, os_type,      os_name, status, io_optimized, agent_installed, login_user, provider, has_password, created_at,      desired_password_login, effective_password_login, binding_state)      SELECT 'i-filler' || lpad(i::text, 13, '0'), '9' || lpad((i % 200)::text, 15, '0'), 'cn-hangzhou',      'cn-hangzhou-h', 'filler', 'filler', $2, 't', 'linux', 'Linux', 'Running', TRUE, TRUE, 'root', 'sim',      FALSE, '2026-01-01T00:00:00.000000Z', TRUE, TRUE, 'none' FROM generate_series(0, $1 - 1) i",
    "ANALYZE",
];
