//! The PostgreSQL backend, for several stateless servers over one database.
//!
//! The statement texts are the ones SQLite runs (`../sqlite/`, files of the same names). What differs is how servers stay consistent: a
//! write transaction locks the rows it will change (`SELECT … ORDER BY id FOR UPDATE`, so in one
//! global order, and never two writes waiting on each other), and a write that keeps an invariant
//! over many rows (a quota, a RAM limit) also takes its account's advisory lock. Writes to disjoint
//! rows run in parallel on any number of servers; writes to the same rows are applied one after
//! another, so any interleaving of concurrent calls equals some serial order. Reads take no lock.
//! AccessKeys are cached in memory, and every change to one is announced to every server
//! (`listen_for_key_changes`). Nonces and throttle buckets are checked in the database on every
//! call, and a change to an agent's desired state is announced with `NOTIFY`, so the agent hears it
//! whichever server it long-polls.

mod accounts;
mod agents;
mod audit;
mod grants;
mod instances;
mod key_pairs;
mod replay;
mod rows;
mod store;

use std::sync::Arc;
use std::time::Duration;

use keyplane_core::CoreError;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use tokio::sync::{mpsc, watch};

use crate::key_cache::KeyCache;
use crate::{Result, Serial};
use store::db;

type Db = Postgres;
type DbRow = sqlx::postgres::PgRow;
type SqlStore = PgStore;
/// The substring position function: `(haystack, needle)`, 0 when absent, case-sensitive.
const CONTAINS: &str = "strpos";
const BACKEND: &str = "postgres";

/// The advisory lock of [`Serial::Everything`] (any constant: keyplane owns the database).
const WRITE_LOCK: i64 = 0x6b65_7970_6c61_6e65; // "keyplane"
/// The classes of the two-key advisory locks of [`Serial::Account`] and [`Serial::Key`].
const ACCOUNT_LOCKS: i32 = 0x6b70_0001;
const KEY_LOCKS: i32 = 0x6b70_0002;
/// Row locks, appended to the SELECT that reads rows a transaction will change.
const FOR_UPDATE: &str = " FOR UPDATE";
const FOR_SHARE: &str = " FOR SHARE";
/// For a sweep that must not wait on rows a call holds: those are swept next time.
const FOR_UPDATE_SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
/// The channel a trigger announces every AccessKey change on (migration 0005).
const KEY_CHANNEL: &str = "keyplane_keys";
/// The channel that carries instance IDs whose desired state changed.
const AGENT_CHANNEL: &str = "keyplane_agents";

pub struct PgStore {
    writer: PgPool,
    reader: PgPool,
    url: String,
    keys: Arc<KeyCache>,
    /// Dropped with the store: stops its AccessKey listener.
    _stop: watch::Sender<()>,
}

/// How long a call waits for a database connection before it answers ServiceUnavailable: long
/// enough for a pool of 16 busy connections to free one under load (a call holds one for
/// milliseconds), short enough that callers are not held while the database is away.
pub const CONNECTION_WAIT: Duration = Duration::from_secs(2);

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and runs the migrations;
    /// several servers may do this at once (the migrator takes its own lock).
    pub async fn open(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // An unreachable database must answer ServiceUnavailable soon, not hang the call: sqlx
            // retries a refused connection until this deadline (docs/RELIABILITY.md).
            .acquire_timeout(CONNECTION_WAIT)
            .connect(url)
            .await
            .map_err(db)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| CoreError::Internal(format!("migrations: {e}")))?;
        let keys = Arc::new(KeyCache::paused());
        // Listening before the store is used, so its cache serves from the first call; if that
        // fails the cache stays paused and the listener keeps trying in the background.
        let listener = listen(url, KEY_CHANNEL).await;
        if listener.is_some() {
            keys.resume();
        }
        let (stop, stopped) = watch::channel(());
        tokio::spawn(listen_for_key_changes(
            url.to_string(),
            listener,
            Arc::downgrade(&keys),
            stopped,
        ));
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            url: url.to_string(),
            keys,
            _stop: stop,
        })
    }

    /// A write transaction holding what `serial` names (see [`Serial`]) for its whole life; the
    /// rows it changes it locks itself, in ID order.
    async fn begin(&self, serial: Serial<'_>) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        let (class, key) = match serial {
            Serial::Rows => return Ok(tx),
            Serial::Everything => {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                return Ok(tx);
            }
            Serial::Account(account) => (ACCOUNT_LOCKS, account),
            Serial::Key(key) => (KEY_LOCKS, key),
        };
        // Two 32-bit keys: a class and the text's hash. A collision only serializes two writes
        // that need not be; the two-key space never meets the one-key WRITE_LOCK.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(class)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Ok(tx)
    }

    fn shared_impl(&self) -> bool {
        true
    }

    /// The database server's disks are its own to watch.
    fn free_bytes_impl(&self) -> Option<u64> {
        None
    }

    /// Kept current across servers by `listen_for_key_changes`.
    fn key_cache(&self) -> Option<&KeyCache> {
        Some(&self.keys)
    }

    /// A write outside the write lock whose commit does not wait for the WAL flush: a nonce claim
    /// is on the path of every signed call, and an fsync per call was what limited PostgreSQL
    /// reads (docs/BENCHMARKS.md). The claim is still atomic and at once visible to every server;
    /// a crash of PostgreSQL itself (not of a keyplane server) can forget the last fraction of a
    /// second of claims, never corrupt anything.
    async fn begin_unlocked_fast(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query("SET LOCAL synchronous_commit TO OFF")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Ok(tx)
    }

    /// A shared GCRA bucket: one statement moves the bucket's theoretical arrival time forward by
    /// one emission interval unless that would exceed the burst, on the database's clock so that
    /// servers with different clocks agree.
    async fn throttle_impl(
        &self,
        access_key_id: &str,
        action: &str,
        per_second: u32,
        burst: u32,
    ) -> Result<bool> {
        let interval = 1_000_000 / i64::from(per_second.max(1));
        let tolerance = interval * i64::from(burst.max(1));
        let allowed: Option<i64> = sqlx::query_scalar(
            "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT AS us) \
             INSERT INTO throttle (access_key_id, action, tat_us) \
             SELECT $1, $2, now.us + $3 FROM now \
             ON CONFLICT (access_key_id, action) DO UPDATE \
             SET tat_us = GREATEST(throttle.tat_us, (SELECT us FROM now)) + $3 \
             WHERE GREATEST(throttle.tat_us, (SELECT us FROM now)) + $3 - (SELECT us FROM now) <= $4 \
             RETURNING tat_us",
        )
        .bind(access_key_id)
        .bind(action)
        .bind(interval)
        .bind(tolerance)
        .fetch_optional(&self.writer)
        .await
        .map_err(db)?;
        Ok(allowed.is_some())
    }

    /// IDs go comma-separated, as few notifications as the 8,000-byte payload limit allows.
    async fn announce_impl(&self, instance_ids: &[String]) -> Result<()> {
        let mut payloads = vec![String::new()];
        for id in instance_ids {
            let last = payloads.last_mut().expect("one at least");
            if last.len() + id.len() + 1 > 7000 {
                payloads.push(id.clone());
            } else {
                if !last.is_empty() {
                    last.push(',');
                }
                last.push_str(id);
            }
        }
        for payload in payloads.iter().filter(|p| !p.is_empty()) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(AGENT_CHANNEL)
                .bind(payload)
                .execute(&self.writer)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    /// Listens on its own connection; after a lost connection it reconnects and, since changes
    /// may have been missed meanwhile, sends `"*"` (wake every waiting agent to re-read).
    async fn announcements_impl(&self) -> Result<Option<mpsc::UnboundedReceiver<String>>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut listener = PgListener::connect(&self.url).await.map_err(db)?;
        listener.listen(AGENT_CHANNEL).await.map_err(db)?;
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        for id in n.payload().split(',') {
                            if tx.send(id.to_string()).is_err() {
                                return;
                            }
                        }
                    }
                    // The connection was lost; `try_recv` reconnects on the next call.
                    Ok(None) => {
                        if tx.send("*".to_string()).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "agent notifications: listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}

/// Keeps `keys` current: every change to `access_keys` on any server is announced on KEY_CHANNEL
/// (a trigger, migration 0005) and empties the cache. While the listener is not connected the
/// cache is paused, since a change could go unheard; it resumes, empty, once listening again.
async fn listen_for_key_changes(
    url: String,
    mut listener: Option<PgListener>,
    keys: std::sync::Weak<KeyCache>,
    mut stopped: watch::Receiver<()>,
) {
    loop {
        let Some(l) = listener.as_mut() else {
            if let Some(cache) = keys.upgrade() {
                cache.pause();
            }
            listener = listen(&url, KEY_CHANNEL).await;
            match (&listener, keys.upgrade()) {
                (_, None) => return,
                (Some(_), Some(cache)) => cache.resume(),
                (None, Some(_)) => tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped.changed() => return,
                },
            }
            continue;
        };
        let heard = tokio::select! {
            heard = l.try_recv() => heard,
            _ = stopped.changed() => return,
        };
        match (heard, keys.upgrade()) {
            (_, None) => return,
            (Ok(Some(_)), Some(cache)) => cache.forget_all(),
            // The connection was lost: changes may be missed until a new one listens.
            (Ok(None) | Err(_), Some(_)) => listener = None,
        }
    }
}

/// A listener on `channel` on its own connection, or None (logged) when that fails.
async fn listen(url: &str, channel: &str) -> Option<PgListener> {
    let mut listener = PgListener::connect(url)
        .await
        .map_err(|e| tracing::warn!(error = %e, channel, "cannot connect to listen"))
        .ok()?;
    listener
        .listen(channel)
        .await
        .map_err(|e| tracing::warn!(error = %e, channel, "LISTEN failed"))
        .ok()?;
    Some(listener)
}

/// A key pair or instance name: exact, or with `*` as LIKE's `%` and LIKE's own specials escaped.
fn push_name_pattern(qb: &mut QueryBuilder<'_, Postgres>, name: &str) {
    if !name.contains('*') {
        qb.push(" AND name = ").push_bind(name.to_string());
        return;
    }
    let like: String = name
        .chars()
        .map(|c| match c {
            '\\' => "\\\\".to_string(),
            '%' => "\\%".to_string(),
            '_' => "\\_".to_string(),
            '*' => "%".to_string(),
            c => c.to_string(),
        })
        .collect();
    qb.push(" AND name LIKE ")
        .push_bind(like)
        .push(" ESCAPE '\\'");
}
