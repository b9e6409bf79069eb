//! An emulator's snapshots (SPEC section 14) on SQLite: saved with SQLite's online backup API from
//! a read transaction of its own (one consistent state while calls go on), and loaded as one
//! write of the writer's queue, so every call sees the state before the load or the state saved.

use std::path::Path;

use keyplane_core::CoreError;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::engine::db;
use crate::Result;

/// Tables a load leaves as they are: the append-only audit log (a load is history too), the
/// signature nonces (they guard against replays now, whatever the state), and SQLite's and the
/// migrations' bookkeeping.
const KEPT: &[&str] = &[
    "audit",
    "audit_purge",
    "nonces",
    "nonce_log",
    "_sqlx_migrations",
];

/// Writes a copy of the database at `src` to `dest`, created 0600 (it holds sealed secrets):
/// first under a temporary name, then renamed, so a snapshot file is whole or absent.
pub(crate) fn save(src: &str, dest: &Path) -> Result<()> {
    let io = |e: std::io::Error| CoreError::Internal(format!("snapshot {dest:?}: {e}"));
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io)?;
    }
    let source = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
    let mut copy = Connection::open(&partial).map_err(db)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut copy).map_err(db)?;
        // Every page in one step: one read transaction, so one consistent state.
        backup.step(-1).map_err(db)?;
    }
    // A snapshot is one self-contained file, not a WAL database with side files.
    copy.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(db)?;
    drop(copy);
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&partial, dest).map_err(io)
}

/// The snapshot at `path`, opened to be loaded: refused unless its schema is the database's.
pub(crate) fn open(path: &Path, schema: i64) -> Result<Connection> {
    if !path.is_file() {
        return Err(CoreError::invalid("Name", "No snapshot has this name."));
    }
    let snap = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
    let version: i64 = snap
        .query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |r| {
            r.get(0)
        })
        .map_err(db)?;
    if version != schema {
        return Err(CoreError::invalid(
            "Name",
            format!(
                "The snapshot was saved by a server of another schema (migration {version}, this \
                 server's is {schema}): save it again with this version."
            ),
        ));
    }
    Ok(snap)
}

/// The newest migration applied to `c`.
pub(crate) fn schema(c: &Connection) -> Result<i64> {
    c.query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |r| {
        r.get(0)
    })
    .map_err(db)
}

/// Replaces every table but [`KEPT`] on `c` (inside the writer's transaction) with the
/// snapshot's rows. Foreign keys are checked at the commit, on the whole new state.
pub(crate) fn load(c: &Connection, snap: &Connection) -> Result<()> {
    c.execute_batch("PRAGMA defer_foreign_keys = ON")
        .map_err(db)?;
    let tables: Vec<String> = snap
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .and_then(|mut s| {
            s.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(db)?
        .into_iter()
        .filter(|t| !KEPT.contains(&t.as_str()))
        .collect();
    // Every delete before any insert: a cascade from a parent deleted later would take the
    // children just copied with it.
    for t in &tables {
        c.execute(&format!("DELETE FROM \"{t}\""), []).map_err(db)?;
    }
    for t in &tables {
        let mut select = snap
            .prepare(&format!("SELECT * FROM \"{t}\""))
            .map_err(db)?;
        let columns: Vec<String> = select
            .column_names()
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect();
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let mut insert = c
            .prepare(&format!(
                "INSERT INTO \"{t}\" ({}) VALUES ({})",
                columns.join(", "),
                marks.join(", ")
            ))
            .map_err(db)?;
        let mut rows = select.query([]).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let values = (0..columns.len())
                .map(|i| row.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<Value>>>()
                .map_err(db)?;
            insert
                .execute(rusqlite::params_from_iter(values))
                .map_err(db)?;
        }
    }
    Ok(())
}
