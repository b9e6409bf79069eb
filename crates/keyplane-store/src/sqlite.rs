//! The embedded SQLite backend (the default): WAL, migrations at open, and two pools.
//!
//! All writes go through a one-connection pool, so write transactions queue in the pool instead of
//! failing with `SQLITE_BUSY` when a deferred transaction tries to upgrade; reads use their own pool
//! and never wait for a writer (WAL). The queries themselves are shared with PostgreSQL (`sql/`).

#[path = "sql/accounts.rs"]
mod accounts;
#[path = "sql/agents.rs"]
mod agents;
#[path = "sql/audit.rs"]
mod audit;
#[path = "sql/instances.rs"]
mod instances;
#[path = "sql/key_pairs.rs"]
mod key_pairs;
#[path = "sql/replay.rs"]
mod replay;
#[path = "sql/rows.rs"]
mod rows;
#[path = "sql/store.rs"]
mod store;

use std::str::FromStr;
use std::time::Duration;

use keyplane_core::CoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};
use tokio::sync::mpsc;

use crate::{Result, Serial};
use store::db;

type Db = Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;
type SqlStore = SqliteStore;
/// No row locks: the single writer already excludes every other write.
const FOR_UPDATE: &str = "";
const FOR_SHARE: &str = "";
const FOR_UPDATE_SKIP_LOCKED: &str = "";
/// The substring position function: `(haystack, needle)`, 0 when absent, case-sensitive.
const CONTAINS: &str = "instr";
const BACKEND: &str = "sqlite";

/// The database holds sealed AccessKeys and everything else: only its owner may read it, whatever
/// the umask. The file is created 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm`
/// files the database file's mode), and files left readable by an older version are tightened.
fn private_files(path: &str) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = path.split('?').next().unwrap_or(path);
    if file.is_empty() || file.starts_with(":memory:") {
        return Ok(());
    }
    let fail = |e: std::io::Error| CoreError::Internal(format!("securing {file}: {e}"));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(e)),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let name = format!("{file}{suffix}");
        let Ok(meta) = std::fs::metadata(&name) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %name, "the file was readable by others; now mode 0600");
            std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600))
                .map_err(fail)?;
        }
    }
    Ok(())
}

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    keys: crate::key_cache::KeyCache,
    /// The directory of the database file, whose free space `/healthz` reports on.
    dir: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and runs the migrations, with
    /// `synchronous=FULL`.
    pub async fn open(path: &str) -> Result<Self> {
        Self::open_with(path, true).await
    }

    /// As [`SqliteStore::open`]; `full_sync` false uses `synchronous=NORMAL`: in WAL mode a commit
    /// then survives a crash of the process but not of the machine (a power cut can lose the last
    /// commits, never corrupt the file).
    pub async fn open_with(path: &str, full_sync: bool) -> Result<Self> {
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                // The database holds AccessKeys: only its owner may enter the directory.
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| CoreError::Internal(format!("create {dir:?}: {e}")))?;
            }
        }
        private_files(path)?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged call survives a power cut, not only a process crash.
            .synchronous(if full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Migrations run on a connection of their own: SQLite reads its planner statistics
        // (migration 0006) when a connection opens, so the pools open after them.
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(db)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&migrator)
            .await
            .map_err(|e| CoreError::Internal(format!("migrations: {e}")))?;
        migrator.close().await;
        // A connection to a local file does not go stale, and sqlx's test before each acquire is one
        // more thread hand-off per statement (docs/BENCHMARKS.md, run 9).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(db)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(db)?;
        let file = path.split('?').next().unwrap_or(path);
        let dir = match std::path::Path::new(file).parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        Ok(Self {
            writer,
            reader,
            keys: Default::default(),
            dir,
        })
    }

    /// The single writer connection serializes every write: nothing more to hold.
    async fn begin(&self, _serial: Serial<'_>) -> Result<Transaction<'static, Sqlite>> {
        self.writer.begin().await.map_err(db)
    }

    /// Nonces are claimed in memory with SQLite (one process owns the file); this is for the
    /// conformance suite, which claims through the store on both backends.
    async fn begin_unlocked_fast(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer.begin().await.map_err(db)
    }

    /// One process owns the file: nonces, throttles and agent wake-ups stay in its memory.
    fn shared_impl(&self) -> bool {
        false
    }

    /// The bytes an unprivileged writer may still use on the database's file system.
    fn free_bytes_impl(&self) -> Option<u64> {
        let v = rustix::fs::statvfs(&self.dir).ok()?;
        Some(v.f_bavail.saturating_mul(v.f_frsize))
    }

    /// Every AccessKey change goes through this process, so it may keep the keys it read.
    fn key_cache(&self) -> Option<&crate::key_cache::KeyCache> {
        Some(&self.keys)
    }

    async fn throttle_impl(&self, _: &str, _: &str, _: u32, _: u32) -> Result<bool> {
        Ok(true)
    }

    async fn announce_impl(&self, _: &[String]) -> Result<()> {
        Ok(())
    }

    async fn announcements_impl(&self) -> Result<Option<mpsc::UnboundedReceiver<String>>> {
        Ok(None)
    }
}

/// A key pair or instance name: exact, or with `*` as GLOB's wildcard and GLOB's other specials
/// made literal.
fn push_name_pattern(qb: &mut QueryBuilder<'_, Sqlite>, name: &str) {
    if !name.contains('*') {
        qb.push(" AND name = ").push_bind(name.to_string());
        return;
    }
    let glob: String = name
        .chars()
        .map(|c| match c {
            '?' => "[?]".to_string(),
            '[' => "[[]".to_string(),
            c => c.to_string(),
        })
        .collect();
    qb.push(" AND name GLOB ").push_bind(glob);
}
