//! The embedded SQLite backend (the default): one file in WAL mode, migrations at open, and
//! keyplane's own engine ([`engine`]): reads on the calling thread, writes group-committed by one
//! writer thread. One process owns the file (the server holds a lock beside it), so nonces,
//! throttles and agent wake-ups stay in that process's memory and AccessKeys are cached.
//!
//! The queries are those of the PostgreSQL backend (`../postgres/`), topic by topic in files of the same
//! names, run through rusqlite ([`sql`]) without the row locks PostgreSQL needs: the single writer
//! already serializes every write.

mod accounts;
mod agents;
mod audit;
mod common;
mod engine;
mod grants;
mod instances;
mod key_pairs;
mod replay;
mod rows;
mod snapshot;
mod sql;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keyplane_core::CoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::key_cache::KeyCache;
use crate::{Result, Store, StoreGauges, WriteStats, COUNTED_TABLES};
use engine::{db, Engine};

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
    engine: Engine,
    keys: KeyCache,
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
        let file = path.split('?').next().unwrap_or(path).to_string();
        if let Some(dir) = std::path::Path::new(&file).parent() {
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
        private_files(&file)?;
        migrate(&file, full_sync).await?;
        let engine = Engine::open(&file, full_sync)?;
        let dir = match std::path::Path::new(&file).parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        Ok(Self {
            engine,
            keys: KeyCache::default(),
            dir,
        })
    }

    /// After any write to `access_keys`, committed or not: a cached key must never outlive a change.
    fn forget_access_keys(&self) {
        self.keys.forget_all();
    }
}

/// Runs the migrations with sqlx's migrator (it made the bookkeeping table of every existing
/// database), on a connection of its own that is closed before the engine opens: SQLite reads its
/// planner statistics (migration 0006) when a connection opens.
async fn migrate(file: &str, full_sync: bool) -> Result<()> {
    let fail = |e: sqlx::Error| {
        if let sqlx::Error::Database(d) = &e {
            let code = d.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
            if matches!(code & 0xff, 8 | 10 | 13 | 14) {
                return CoreError::ServiceUnavailable;
            }
        }
        CoreError::Internal(format!("sqlite: {e}"))
    };
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{file}"))
        .map_err(fail)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if full_sync {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let migrator = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(fail)?;
    sqlx::migrate!("./migrations/sqlite")
        .run(&migrator)
        .await
        .map_err(|e| CoreError::Internal(format!("migrations: {e}")))?;
    migrator.close().await;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    /// One process owns the file: nonces, throttles and agent wake-ups stay in its memory.
    fn shared(&self) -> bool {
        false
    }

    /// The bytes an unprivileged writer may still use on the database's file system.
    fn free_bytes(&self) -> Option<u64> {
        let v = rustix::fs::statvfs(&self.dir).ok()?;
        Some(v.f_bavail.saturating_mul(v.f_frsize))
    }

    async fn gauges(&self) -> Result<StoreGauges> {
        self.engine.read(|c| {
            let mut stmt = c.prepare_cached(crate::BINDING_STATE_COUNTS).map_err(db)?;
            let binding_states = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db)?;
            let mut rows = Vec::new();
            for table in COUNTED_TABLES {
                let n: i64 = c
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                    .map_err(db)?;
                rows.push((*table, n as u64));
            }
            Ok(StoreGauges {
                binding_states,
                rows,
            })
        })
    }

    fn write_stats(&self) -> Option<WriteStats> {
        let (commits, calls, sizes) = self.engine.groups.snapshot();
        Some(WriteStats {
            commits,
            calls,
            failed_commits: self.engine.groups.failures(),
            sizes,
        })
    }

    fn snapshot_dir(&self) -> Option<std::path::PathBuf> {
        Some(self.dir.join("snapshots"))
    }

    async fn save_snapshot(&self, path: &std::path::Path) -> Result<()> {
        let (src, dest) = (self.engine.path().to_string(), path.to_path_buf());
        tokio::task::spawn_blocking(move || snapshot::save(&src, &dest))
            .await
            .map_err(|e| CoreError::Internal(format!("saving a snapshot: {e}")))?
    }

    async fn load_snapshot(&self, path: &std::path::Path) -> Result<()> {
        let schema = self.engine.read(snapshot::schema)?;
        let snap = snapshot::open(path, schema)?;
        let loaded = self.engine.write(move |c| snapshot::load(c, &snap)).await;
        // The AccessKeys may have changed, loaded or not (a failed commit).
        self.forget_access_keys();
        loaded
    }

    async fn close(&self) {
        let (commits, calls, sizes) = self.engine.groups.snapshot();
        if commits > 0 {
            let sizes: Vec<String> = sizes
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(from, n)| format!("{from}+:{n}"))
                .collect();
            tracing::info!(commits, calls, sizes = %sizes.join(" "), "SQLite group commits");
        }
        self.engine.close();
    }
}
