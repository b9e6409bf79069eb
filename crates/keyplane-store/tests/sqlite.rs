//! The conformance story on the embedded SQLite backend, each on a fresh database file.

mod common;

use keyplane_core::CoreError;
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
        keyplane_store::KeyPairs::create_key_pair(&s, &kp, 500, None)
            .await
            .unwrap();
        account
    };
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert!(
        keyplane_store::KeyPairs::key_pair_by_name(&s, &account, "cn-hangzhou", "kept")
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
    // A cutoff that does not cover a record does not let it go either.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO audit_purge (before) VALUES ('2000-01-01T00:00:00.000000Z')")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(sqlx::query("DELETE FROM audit")
        .execute(&mut *tx)
        .await
        .is_err());
}

/// The plan SQLite picks for each hot statement, as the store builds it (`src/sqlite/`). A plan
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
        // DeleteKeyPairs: is the key pair still bound, desired or in effect?
        (
            "SELECT 1 FROM instances WHERE account_id = 'a' AND effective_key_pair_id = 'kp' LIMIT 1"
                .to_string(),
            "USING COVERING INDEX instances_effective_key_pair (account_id=? AND effective_key_pair_id=?)",
        ),
        (
            "SELECT 1 FROM instances WHERE account_id = 'a' AND key_pair_id = 'kp' LIMIT 1"
                .to_string(),
            "USING COVERING INDEX instances_key_pair (account_id=? AND key_pair_id=?)",
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

/// A store from before registration tokens expired (migrations up to 0006) keeps its tokens on
/// upgrade: each gets a TokenId, an unused one expires 24 hours after the upgrade and still
/// redeems until then, a used one stays used (docs/AGENT.md, "Registration tokens").
#[tokio::test]
async fn tokens_from_before_expiry_get_an_id_and_a_day_to_live_on_upgrade() {
    let (_dir, path, pool) = migrated_before("0007").await;
    {
        let at = "2025-01-01T00:00:00.000000Z";
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ('1234', 'default', $1)")
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
        for (hash, used) in [("hash-unused", None), ("hash-used", Some(at))] {
            sqlx::query(
                "INSERT INTO registration_tokens (token_hash, account_id, region_id, zone_id, name, created_at, used_at) \
                 VALUES ($1, '1234', 'cn-hangzhou', 'cn-hangzhou-h', $1, $2, $3)",
            )
            .bind(hash)
            .bind(at)
            .bind(used)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let before = chrono::Utc::now();
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let after = chrono::Utc::now();
    let listed = keyplane_store::Agents::list_registration_tokens(&s, "1234")
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    let (unused, used) = if listed[0].name == "hash-unused" {
        (&listed[0], &listed[1])
    } else {
        (&listed[1], &listed[0])
    };
    for t in [unused, used] {
        assert!(t.token_id.starts_with("rt-") && t.token_id.len() == 23);
        assert!(t.token_id[3..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }
    assert_ne!(unused.token_id, used.token_id);
    assert!(!unused.used && used.used);
    let day = chrono::Duration::hours(24);
    let slack = chrono::Duration::seconds(1);
    assert!(unused.expires_at >= before + day - slack && unused.expires_at <= after + day + slack);
    assert!(used.expires_at < before);
    let mut host = conformance::instance(
        "1234",
        keyplane_core::model::InstanceStatus::Running,
        keyplane_core::model::OsType::Linux,
    );
    host.provider = keyplane_core::model::Provider::Host;
    assert!(
        keyplane_store::Agents::redeem_registration_token(&s, "hash-unused", &host, "c")
            .await
            .unwrap()
            .is_some()
    );
}

/// Audit records written before per-instance results existed are kept as they were, read with
/// no instance results, and still found by their own result.
#[tokio::test]
async fn audit_records_from_before_instance_results_survive_the_upgrade() {
    let (_dir, path, pool) = migrated_before("0008").await;
    {
        sqlx::query(
            "INSERT INTO audit (at, account_id, principal, access_key_id, source_ip, dialect, action, \
             resources, result, status, request_id, client_token) VALUES ('2025-01-01T00:00:00.000000Z', \
             '1234', 'root', 'LTAIx', '127.0.0.1', 'aliyun', 'AttachKeyPair', '[]', 'Forbidden.RAM', 403, 'R-old', '')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let listed = keyplane_store::AuditLog::list_audit(
        &s,
        &keyplane_store::AuditFilter {
            result: Some("Forbidden.RAM".into()),
            ..Default::default()
        },
        keyplane_store::Page::After { seq: 0, limit: 10 },
    )
    .await
    .unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.items[0].request_id, "R-old");
    assert!(listed.items[0].instance_results.is_empty());
}

/// A database file migrated by this release's migrations numbered below `first_missing`, as an
/// older release left it: the directory, the file and a pool on it to put old rows in.
async fn migrated_before(
    first_missing: &str,
) -> (tempfile::TempDir, std::path::PathBuf, sqlx::SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&all).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < first_missing {
            std::fs::copy(entry.path(), old.join(&name)).unwrap();
        }
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    (dir, path, pool)
}

/// A snapshot saved while the store is in use brings back exactly the saved key pairs and
/// instances when loaded, keeps the audit log that came after it, and is a private file.
#[tokio::test]
async fn a_snapshot_loaded_brings_back_the_saved_state_and_keeps_the_audit_log() {
    use keyplane_store::prelude::*;
    use std::os::unix::fs::PermissionsExt;
    let (dir, s) = fresh().await;
    let account = conformance::account(&s).await;
    let kp = |name| conformance::key_pair(&account, name, "md5");
    s.create_key_pair(&kp("saved"), 500, None).await.unwrap();
    let snap = dir.path().join("fixture.db");
    s.save_snapshot(&snap).await.unwrap();
    assert_eq!(
        std::fs::metadata(&snap).unwrap().permissions().mode() & 0o777,
        0o600
    );
    s.create_key_pair(&kp("after"), 500, None).await.unwrap();
    s.delete_key_pairs(&account, "cn-hangzhou", &["saved".to_string()], None)
        .await
        .unwrap();
    s.append_audit(&keyplane_store::AuditRecord {
        seq: 0,
        at: chrono::Utc::now(),
        account_id: account.clone(),
        principal: "root".into(),
        access_key_id: "LTAIx".into(),
        source_ip: String::new(),
        dialect: "aliyun".into(),
        action: "DeleteKeyPairs".into(),
        resources: vec![],
        result: "OK".into(),
        status: 200,
        request_id: "after-the-snapshot".into(),
        client_token: String::new(),
        instance_results: vec![],
        injected: Vec::new(),
    })
    .await
    .unwrap();

    s.load_snapshot(&snap).await.unwrap();
    let named = |name: &'static str| s.key_pair_by_name(&account, "cn-hangzhou", name);
    assert!(named("saved").await.unwrap().is_some());
    assert!(named("after").await.unwrap().is_none());
    let audit = s
        .list_audit(
            &keyplane_store::AuditFilter::default(),
            keyplane_store::Page::After { seq: 0, limit: 10 },
        )
        .await
        .unwrap();
    assert!(audit
        .items
        .iter()
        .any(|r| r.request_id == "after-the-snapshot"));
    // Loading again is the same state; a name that was never saved is refused.
    s.load_snapshot(&snap).await.unwrap();
    assert!(named("saved").await.unwrap().is_some());
    let missing = s.load_snapshot(&dir.path().join("none.db")).await;
    assert!(
        matches!(missing, Err(CoreError::InvalidParameter { .. })),
        "{missing:?}"
    );
}
