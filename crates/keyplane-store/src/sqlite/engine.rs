//! The SQLite engine: rusqlite connections owned by keyplane, no driver thread per connection.
//!
//! - **Reads** run on the calling thread with a pooled read-only connection and its cache of
//!   prepared statements: no hand-off at all. A read is an indexed page of a local WAL database
//!   (tens of microseconds), shorter than handing it to another thread would cost, so it runs in
//!   place on the runtime's worker; the longest (a `COUNT(*)` over a very large filter, only when a
//!   page cannot tell its total) blocks that one worker for its duration.
//! - **Writes** queue to the one writer thread, which **group-commits**: it takes every call
//!   waiting, and the calls that arrive while those run, for up to [`LATE_JOIN`] (a call that joins
//!   late shares the fsync instead of paying its own), [`MAX_GROUP`] in all; it runs each in a
//!   `SAVEPOINT` of one transaction (a call that fails
//!   rolls back to its savepoint and changes nothing; the others keep their changes), commits once
//!   (one fsync with `synchronous=FULL`), and only then answers every call of the group. No call is
//!   acknowledged before its data is durable; a failed commit fails every call of its group.
//!
//! docs/BENCHMARKS.md has why (the driver's per-statement hand-offs were the limit) and the group
//! size distribution under load.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use keyplane_core::CoreError;
use rusqlite::{Connection, OpenFlags};

use crate::Result;

/// The most calls one commit carries: enough to amortise the fsync, few enough that the first call
/// of a group does not wait long for the last.
pub(crate) const MAX_GROUP: usize = 64;
/// How long after a group starts a call arriving may still join it: about one fsync. Short calls
/// (an ImportKeyPair) then fill a group; long ones (a 50-instance bind) do not hold the first call
/// of the group back for the late ones.
const LATE_JOIN: std::time::Duration = std::time::Duration::from_millis(1);
/// Idle read connections kept; more are opened under load and closed when returned past this.
const IDLE_READERS: usize = 8;
/// Prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 128;

/// What a queued write does on the writer's connection, inside its savepoint (or, given the error
/// that kept it from running, nothing); it returns whether it failed (so its savepoint is rolled
/// back) and how to answer once the group's commit is known.
type Job = Box<dyn FnOnce(std::result::Result<&Connection, CoreError>) -> (bool, Answer) + Send>;
/// Answers a call: `None` when its group committed, else the commit's error.
type Answer = Box<dyn FnOnce(Option<CoreError>) + Send>;

pub(crate) struct Engine {
    path: String,
    full_sync: bool,
    readers: Mutex<Vec<Connection>>,
    writes: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) groups: Arc<GroupStats>,
}

/// How many calls each commit carried, for docs/BENCHMARKS.md: a histogram by powers of two.
#[derive(Default)]
pub(crate) struct GroupStats {
    /// `buckets[k]` counts commits of 2^k..2^(k+1)-1 calls.
    buckets: [AtomicU64; 8],
    calls: AtomicU64,
    failed: AtomicU64,
}

impl GroupStats {
    fn record(&self, size: usize) {
        let k = (usize::BITS - 1 - size.max(1).leading_zeros()) as usize;
        self.buckets[k.min(7)].fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(size as u64, Ordering::Relaxed);
    }

    fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// `(commits, calls, [(smallest size of the bucket, commits)])`.
    pub(crate) fn snapshot(&self) -> (u64, u64, Vec<(usize, u64)>) {
        let buckets: Vec<(usize, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(k, n)| (1 << k, n.load(Ordering::Relaxed)))
            .collect();
        let commits = buckets.iter().map(|(_, n)| n).sum();
        (commits, self.calls.load(Ordering::Relaxed), buckets)
    }
}

/// A SQLite error as the API sees it: a file that cannot be written (read-only, full, gone) is
/// `ServiceUnavailable` (retry; nothing was written; `/healthz` reports it), anything else internal.
pub(crate) fn db(e: rusqlite::Error) -> CoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        use rusqlite::ErrorCode::*;
        if matches!(f.code, ReadOnly | SystemIoFailure | DiskFull | CannotOpen) {
            tracing::error!(backend = "sqlite", error = %e, "the database cannot be written (read-only or full?)");
            return CoreError::ServiceUnavailable;
        }
    }
    CoreError::Internal(format!("sqlite: {e}"))
}

/// Whether `e` is a unique-constraint violation (an INSERT of something that exists).
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl Engine {
    /// Opens the writer (its thread) and one reader on `path`, whose schema is already migrated.
    pub(crate) fn open(path: &str, full_sync: bool) -> Result<Self> {
        let writer_conn = connect(path, full_sync, false)?;
        let first_reader = connect(path, full_sync, true)?;
        let groups = Arc::new(GroupStats::default());
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = groups.clone();
        let writer = std::thread::Builder::new()
            .name("keyplane-sqlite-writer".into())
            .spawn(move || write_loop(writer_conn, rx, &stats))
            .map_err(|e| CoreError::Internal(format!("starting the SQLite writer: {e}")))?;
        Ok(Self {
            path: path.to_string(),
            full_sync,
            readers: Mutex::new(vec![first_reader]),
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            groups,
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Runs `f` with a read-only connection, on this thread.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => connect(&self.path, self.full_sync, true)?,
        };
        // One read transaction for all the call's statements: one snapshot, and one shared-memory
        // lock and unlock (each an fcntl) instead of one per statement.
        let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
        let out = run("BEGIN").map_err(db).and_then(|_| f(&conn));
        if let Err(e) = run("COMMIT") {
            // Not back to the pool: a connection left inside a transaction would fail its next use.
            tracing::warn!(error = %e, "ending a SQLite read transaction failed");
            return out;
        }
        let mut idle = lock(&self.readers);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        out
    }

    /// Queues `f` for the writer: it runs in its own savepoint of the next group, and its result
    /// is returned once that group's commit is durable (or the commit's error, if it failed).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let result = conn.and_then(f);
            let failed = result.is_err();
            let answer: Answer = Box::new(move |commit: Option<CoreError>| {
                let _ = answer.send(match (commit, result) {
                    (Some(e), Ok(_)) => Err(e),
                    (_, result) => result,
                });
            });
            (failed, answer)
        });
        let sent = lock(&self.writes)
            .as_ref()
            .map(|w| w.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(CoreError::ServiceUnavailable);
        }
        answered
            .await
            .unwrap_or_else(|_| Err(CoreError::Internal("a write panicked".into())))
    }

    /// Stops the writer after the writes queued so far and closes every connection: the last one
    /// closed checkpoints the WAL and removes the side files.
    pub(crate) fn close(&self) {
        lock(&self.writes).take();
        if let Some(writer) = lock(&self.writer).take() {
            let _ = blocking(|| writer.join());
        }
        lock(&self.readers).clear();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The pools hold connections and a sender: a panic elsewhere leaves nothing half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` here; on a multi-threaded runtime the worker first hands its other tasks away.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn connect(path: &str, full_sync: bool, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(db)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db)?;
    // FULL: an acknowledged call survives a power cut, not only a process crash.
    let sync = if full_sync { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = {sync};"
    ))
    .map_err(db)?;
    if !read_only {
        // WAL is a property of the file (the migrations set it); set again for a file made here.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(db)?;
    }
    Ok(conn)
}

/// The writer thread: one group per loop, until every sender is gone and the queue is empty.
fn write_loop(conn: Connection, jobs: mpsc::Receiver<Job>, stats: &GroupStats) {
    while let Ok(first) = jobs.recv() {
        commit_group(&conn, first, &jobs, stats);
    }
}

/// Runs `first` and the calls waiting behind it, then those arriving within [`LATE_JOIN`], up to
/// [`MAX_GROUP`], in one transaction; commits once, counts the group, and answers them all.
fn commit_group(conn: &Connection, first: Job, jobs: &mpsc::Receiver<Job>, stats: &GroupStats) {
    let started = std::time::Instant::now();
    let mut group = vec![first];
    while group.len() < MAX_GROUP {
        match jobs.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        let e = db(e);
        stats.record(group.len());
        stats.failed();
        for job in group {
            let (_, answer) = job(Err(clone_error(&e)));
            answer(None);
        }
        return;
    }
    let mut answers: Vec<Answer> = group
        .into_iter()
        .map(|job| run_in_savepoint(conn, job))
        .collect();
    while answers.len() < MAX_GROUP && started.elapsed() < LATE_JOIN {
        match jobs.try_recv() {
            Ok(job) => answers.push(run_in_savepoint(conn, job)),
            Err(_) => break,
        }
    }
    let commit = control(conn, "COMMIT").map_err(db).err();
    if commit.is_some() {
        let _ = control(conn, "ROLLBACK");
        stats.failed();
    }
    // Counted before the answers go out, so a caller that has its answer sees its group counted.
    stats.record(answers.len());
    for answer in answers {
        answer(commit.as_ref().map(clone_error));
    }
}

/// Runs one call in its savepoint and rolls the savepoint back if the call failed or panicked.
fn run_in_savepoint(conn: &Connection, job: Job) -> Answer {
    if let Err(e) = control(conn, "SAVEPOINT call") {
        let (_, answer) = job(Err(db(e)));
        return answer;
    }
    let ran = catch_unwind(AssertUnwindSafe(|| job(Ok(conn))));
    let (failed, answer): (bool, Answer) = match ran {
        Ok(out) => out,
        // The job's answer channel went with it: the caller sees an internal error.
        Err(_) => (true, Box::new(|_| {})),
    };
    let undone = if failed {
        control(conn, "ROLLBACK TO call")
    } else {
        Ok(())
    };
    if let Err(e) = undone.and_then(|()| control(conn, "RELEASE call")) {
        tracing::error!(error = %e, "SQLite savepoint release failed");
    }
    answer
}

/// A transaction or savepoint statement, prepared once per connection: four of them frame every
/// call, and parsing each anew was a visible part of the writer's time.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn clone_error(e: &CoreError) -> CoreError {
    match e {
        CoreError::ServiceUnavailable => CoreError::ServiceUnavailable,
        other => CoreError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(engine: &Engine, name: &str) -> i64 {
        engine
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM t WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .map_err(db)
            })
            .unwrap()
    }

    /// Calls queued while the writer is busy commit as one group; the one that fails rolls back
    /// to its savepoint (its own insert is gone) and the others of the group keep theirs.
    #[tokio::test]
    async fn a_failed_call_in_a_group_changes_nothing_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db").to_string_lossy().to_string();
        let engine = Arc::new(Engine::open(&path, true).unwrap());
        engine
            .write(|c| {
                c.execute_batch("CREATE TABLE t (name TEXT PRIMARY KEY)")
                    .map_err(db)
            })
            .await
            .unwrap();
        let before = engine.groups.snapshot();

        // The first call holds the writer until released, so the next three queue behind it
        // (and, released past the late-join time, it commits alone).
        let (release, hold) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let first = tokio::spawn({
            let engine = engine.clone();
            async move {
                engine
                    .write(move |c| {
                        started.send(()).unwrap();
                        hold.recv().unwrap();
                        c.execute("INSERT INTO t VALUES ('first')", []).map_err(db)
                    })
                    .await
            }
        });
        while running.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        let insert = |name: &'static str, fail: bool| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .write(move |c| {
                        c.execute("INSERT INTO t VALUES (?1)", [name]).map_err(db)?;
                        if fail {
                            return Err(CoreError::TooManyTags);
                        }
                        Ok(())
                    })
                    .await
            })
        };
        let (b, c, d) = (insert("b", false), insert("c", true), insert("d", false));
        // On this single-threaded runtime a spawned call sends its job when first polled, which
        // yielding lets it do: all three are queued before the writer is released.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        std::thread::sleep(LATE_JOIN);
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        assert!(b.await.unwrap().is_ok());
        assert!(matches!(c.await.unwrap(), Err(CoreError::TooManyTags)));
        assert!(d.await.unwrap().is_ok());
        assert_eq!(
            [
                count(&engine, "b"),
                count(&engine, "c"),
                count(&engine, "d")
            ],
            [1, 0, 1]
        );
        // Two commits: the first call alone, then the three in one group (the 2–3 bucket).
        let (commits, calls, sizes) = engine.groups.snapshot();
        assert_eq!((commits - before.0, calls - before.1), (2, 4));
        assert_eq!(sizes[1].1 - before.2[1].1, 1);
    }
}
