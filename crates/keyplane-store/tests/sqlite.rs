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
