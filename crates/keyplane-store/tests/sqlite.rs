//! The conformance story on the embedded SQLite backend, each on a fresh database file.

mod common;

use keyplane_store::{conformance, sqlite::SqliteStore};

async fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    (dir, store)
}

conformance_tests!(fresh);

#[tokio::test]
async fn reopening_the_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let account = {
        let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        let account = conformance::account(&s).await;
        let kp = conformance::key_pair(&account, "kept", "x");
        keyplane_store::Store::create_key_pair(&s, &kp, 500)
            .await
            .unwrap();
        account
    };
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert!(
        keyplane_store::Store::key_pair_by_name(&s, &account, "cn-hangzhou", "kept")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    conformance::audit(&s).await;
    drop(s);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(sqlx::query("DELETE FROM audit")
        .execute(&pool)
        .await
        .is_err());
    assert!(sqlx::query("UPDATE audit SET result = 'OK'")
        .execute(&pool)
        .await
        .is_err());
}

/// The plan SQLite picks for each hot statement, as the store builds it (`sql/store.rs`). A plan
/// that walks an account's rows instead of an ID's or a page's makes a call's cost grow with the
/// store; the planner statistics of migration 0006 are what keeps these plans on a fresh file.
#[tokio::test]
async fn hot_statements_use_the_index_that_keeps_their_cost_flat() {
    use sqlx::{Connection, Row};
    let (dir, _store) = fresh().await;
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let ids = (0..50)
        .map(|i| format!("'i-{i}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let cases = [
        // AttachKeyPair / DetachKeyPair: the batch's instances, by ID.
        (
            format!("SELECT * FROM instances WHERE account_id = 'a' AND id IN ({ids})"),
            "USING INDEX sqlite_autoindex_instances_1 (id=?)",
        ),
        // DescribeInstances with InstanceIds.
        (
            format!(
                "SELECT * FROM instances WHERE account_id = 'a' AND region_id = 'r' \
                 AND id IN ({ids}) ORDER BY seq LIMIT 101 OFFSET 0"
            ),
            "USING INDEX sqlite_autoindex_instances_1 (id=?)",
        ),
        // DescribeInstances, one page.
        (
            "SELECT * FROM instances WHERE account_id = 'a' AND region_id = 'r' \
             ORDER BY seq LIMIT 101 OFFSET 0"
                .to_string(),
            "USING INDEX instances_account_region (account_id=? AND region_id=?)",
        ),
        // DescribeKeyPairs, one page, without sorting the account's key pairs.
        (
            "SELECT * FROM key_pairs WHERE account_id = 'a' AND region_id = 'r' \
             ORDER BY seq LIMIT 51 OFFSET 0"
                .to_string(),
            "USING INDEX key_pairs_account_region (account_id=? AND region_id=?)",
        ),
    ];
    for (sql, wanted) in cases {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect();
        assert!(
            plan.iter().any(|p| p.contains(wanted)),
            "{sql}\n  planned as {plan:?}\n  wanted {wanted}"
        );
        assert!(
            !plan.iter().any(|p| p.starts_with("SCAN")),
            "{sql}: {plan:?}"
        );
    }
}

#[tokio::test]
async fn the_database_and_its_side_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    // A fresh file: created 0600 by keyplane, and SQLite's -wal/-shm follow its mode.
    let path = dir.path().join("new.db");
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    conformance::account(&s).await;
    for f in ["new.db", "new.db-wal", "new.db-shm"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
    keyplane_store::Store::close(&s).await;
    // Files an older version left world-readable (the umask's 0644) are tightened at open.
    let path = dir.path().join("old.db");
    drop(SqliteStore::open(path.to_str().unwrap()).await.unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    conformance::account(&s).await;
    for f in ["old.db", "old.db-wal", "old.db-shm"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
}
