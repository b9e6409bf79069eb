//! The conformance story on PostgreSQL, each test on a fresh database, and what only a shared
//! store must do: two servers (two `PgStore`s on one database) share nonces, ClientTokens, quotas,
//! throttles and the audit log, concurrent binds equal a serial order, and agent notifications
//! cross servers.
//!
//! Needs `KEYPLANE_TEST_POSTGRES`, a superuser URL (`scripts/test.sh` starts a throwaway cluster
//! with `scripts/postgres.sh` and sets it).

mod common;

use keyplane_store::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyplane_core::model::{InstanceStatus, OsType};
use keyplane_core::CoreError;
use keyplane_store::postgres::PgStore;
use keyplane_store::{conformance, AuditFilter, AuditRecord, BindAudit, BindOp, Page, TokenClaim};

fn admin_url() -> String {
    std::env::var("KEYPLANE_TEST_POSTGRES").expect(
        "KEYPLANE_TEST_POSTGRES must name a PostgreSQL superuser URL; \
         scripts/test.sh starts a cluster and sets it",
    )
}

/// A new empty database on the test cluster; returns its URL.
async fn fresh_database() -> String {
    let admin = admin_url();
    let name = format!(
        "kp_{}",
        keyplane_core::ids::new_account_id().to_ascii_lowercase()
    );
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

async fn fresh() -> ((), PgStore) {
    let url = fresh_database().await;
    ((), PgStore::open(&url).await.unwrap())
}

conformance_tests!(fresh);

/// Two servers on one database.
async fn two() -> (PgStore, PgStore) {
    let url = fresh_database().await;
    let (a, b) = tokio::join!(PgStore::open(&url), PgStore::open(&url));
    (a.unwrap(), b.unwrap())
}

#[tokio::test]
async fn the_audit_log_refuses_updates_and_deletes() {
    let url = fresh_database().await;
    let s = PgStore::open(&url).await.unwrap();
    conformance::audit(&s).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for sql in [
        "DELETE FROM audit",
        "UPDATE audit SET result = 'OK'",
        "TRUNCATE audit",
    ] {
        assert!(sqlx::query(sql).execute(&pool).await.is_err(), "{sql}");
    }
    // A cutoff that does not cover a record does not let it go either.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('keyplane.audit_purge_before', '2000-01-01T00:00:00.000000Z', true)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    assert!(sqlx::query("DELETE FROM audit")
        .execute(&mut *tx)
        .await
        .is_err());
}

#[tokio::test]
async fn an_unreachable_database_is_service_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let e = PgStore::open("postgres://keyplane@127.0.0.1:1/keyplane")
        .await
        .err()
        .unwrap();
    assert!(matches!(e, CoreError::ServiceUnavailable), "{e:?}");
}

#[tokio::test]
async fn two_servers_share_nonces_and_client_tokens() {
    let (a, b) = two().await;
    let now = chrono::Utc::now();
    assert!(a.claim_nonce("ak", "n", now).await.unwrap());
    assert!(!b.claim_nonce("ak", "n", now).await.unwrap());

    let account = conformance::account(&a).await;
    let stale = now - chrono::Duration::minutes(5);
    let claim =
        |s: &'static PgStore| s.claim_token(&account, "CreateKeyPair", "t", "h", now, stale);
    let (a, b): (&'static PgStore, &'static PgStore) =
        (Box::leak(Box::new(a)), Box::leak(Box::new(b)));
    assert_eq!(claim(a).await.unwrap(), TokenClaim::Claimed);
    assert_eq!(claim(b).await.unwrap(), TokenClaim::Processing);
    let response = keyplane_store::StoredResponse {
        status: 200,
        content_type: "application/json".into(),
        body: b"{}".to_vec(),
    };
    a.finish_token(&account, "CreateKeyPair", "t", &response)
        .await
        .unwrap();
    assert_eq!(claim(b).await.unwrap(), TokenClaim::Done(response));
}

#[tokio::test]
async fn the_key_pair_quota_holds_across_servers() {
    let (a, b) = two().await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let account = conformance::account(&*a).await;
    let quota = 10;
    let mut calls = Vec::new();
    for n in 0..30 {
        let s = if n % 2 == 0 { a.clone() } else { b.clone() };
        let kp = conformance::key_pair(&account, &format!("kp-{n}"), "md5");
        calls.push(tokio::spawn(async move {
            s.create_key_pair(&kp, quota, None).await
        }));
    }
    let mut created = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(()) => created += 1,
            Err(CoreError::KeyPairQuotaExceeded(10)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(created, quota);
}

#[tokio::test]
async fn throttle_buckets_are_shared() {
    let (a, b) = two().await;
    // One call a second with bursts of three: the fourth call, on either server, is refused.
    let mut allowed = Vec::new();
    for n in 0..4 {
        let s = if n % 2 == 0 { &a } else { &b };
        allowed.push(s.throttle("ak", "DescribeKeyPairs", 1, 3).await.unwrap());
    }
    assert_eq!(allowed, [true, true, true, false]);
    // Buckets are per AccessKey and action.
    assert!(b.throttle("ak", "AttachKeyPair", 1, 3).await.unwrap());
    assert!(b.throttle("other", "DescribeKeyPairs", 1, 3).await.unwrap());
}

#[tokio::test]
async fn concurrent_binds_through_two_servers_equal_a_serial_order() {
    let (a, b) = two().await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let account = conformance::account(&*a).await;
    let (key_pairs, ids) = seed(&a, &account, 4, 12).await;

    // 40 calls over overlapping windows of instances, half attach and a quarter detach, spread
    // over both servers; each writes its audit record in its own transaction.
    let mut calls = Vec::new();
    for n in 0..40usize {
        let s = if n % 2 == 0 { a.clone() } else { b.clone() };
        let kp = key_pairs[n % key_pairs.len()].clone();
        let window: Vec<String> = (0..6)
            .map(|k| ids[(n + k * 2) % ids.len()].clone())
            .collect();
        let op = if n % 4 == 3 {
            BindOp::Detach
        } else {
            BindOp::Attach
        };
        let account = account.clone();
        calls.push(tokio::spawn(async move {
            let audit = AuditRecord {
                action: format!("{op:?}"),
                resources: window.clone(),
                ..audit_record(&account, &format!("{n}/{}", kp.id))
            };
            let audit = BindAudit {
                record: &audit,
                failure_code: |_| "Failed",
            };
            s.bind(&account, "cn-hangzhou", &kp, &window, op, Some(audit))
                .await
                .unwrap();
        }));
    }
    for c in calls {
        c.await.unwrap();
    }

    // Replay the calls serially in the order they committed (the audit order).
    let log = a
        .list_audit(
            &AuditFilter {
                account_id: Some(account.clone()),
                ..Default::default()
            },
            Page::After { seq: 0, limit: 100 },
        )
        .await
        .unwrap();
    assert_eq!(log.items.len(), 40, "every call recorded exactly once");
    let mut expected: HashMap<String, Option<String>> =
        ids.iter().map(|id| (id.clone(), None)).collect();
    for r in &log.items {
        let kp = r.request_id.split_once('/').unwrap().1.to_string();
        for id in &r.resources {
            let slot = expected.get_mut(id).unwrap();
            if r.action == "Attach" {
                *slot = Some(kp.clone());
            } else if slot.as_deref() == Some(kp.as_str()) {
                *slot = None;
            }
        }
    }
    for id in &ids {
        let inst = b.instance(&account, id).await.unwrap().unwrap();
        assert_eq!(inst.binding.desired_key_pair_id, expected[id], "{id}");
    }
}

#[tokio::test]
async fn an_announcement_on_one_server_reaches_the_other() {
    let (a, b) = two().await;
    let mut heard = b.announcements().await.unwrap().expect("a shared store");
    a.announce(&["i-one".to_string(), "i-two".to_string()])
        .await
        .unwrap();
    for want in ["i-one", "i-two"] {
        let got = tokio::time::timeout(Duration::from_secs(30), heard.recv())
            .await
            .expect("delivered")
            .unwrap();
        assert_eq!(got, want);
    }
}

/// Many attaches of different key pairs to the same 50 instances, through two servers: every
/// instance ends bound to one key pair, the one of the last call in the audit order, and each
/// instance's own results in the audit agree.
#[tokio::test]
async fn racing_attaches_to_the_same_instances_leave_them_all_on_one_key_pair() {
    let (a, b) = two().await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let account = conformance::account(&*a).await;
    let (key_pairs, mut ids) = seed(&a, &account, 5, 50).await;
    let mut calls = Vec::new();
    for n in 0..30 {
        let s = if n % 2 == 0 { a.clone() } else { b.clone() };
        let kp = key_pairs[n % key_pairs.len()].clone();
        let account = account.clone();
        // Each client names the instances in its own order; the store locks them in one.
        ids.rotate_left(7);
        let ids = ids.clone();
        calls.push(tokio::spawn(async move {
            let mut record = audit_record(&account, &format!("{n}/{}", kp.id));
            record.instance_results = ids
                .iter()
                .map(|id| keyplane_store::InstanceResult {
                    instance_id: id.clone(),
                    result: String::new(),
                })
                .collect();
            let audit = BindAudit {
                record: &record,
                failure_code: |_| "Failed",
            };
            let out = s
                .bind(
                    &account,
                    "cn-hangzhou",
                    &kp,
                    &ids,
                    BindOp::Attach,
                    Some(audit),
                )
                .await
                .unwrap();
            assert!(out.iter().all(|(_, r)| r.is_ok()));
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    let log = a
        .list_audit(
            &AuditFilter {
                account_id: Some(account.clone()),
                ..Default::default()
            },
            Page::After { seq: 0, limit: 100 },
        )
        .await
        .unwrap();
    assert_eq!(log.items.len(), 30);
    assert!(log
        .items
        .iter()
        .all(|r| r.instance_results.len() == 50
            && r.instance_results.iter().all(|x| x.result == "OK")));
    let last = log.items.last().unwrap();
    let winner = last.request_id.split_once('/').unwrap().1;
    for id in &ids {
        let inst = b.instance(&account, id).await.unwrap().unwrap();
        assert_eq!(
            inst.binding.desired_key_pair_id.as_deref(),
            Some(winner),
            "{id}"
        );
    }
}

fn audit_record(account: &str, request_id: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: chrono::Utc::now(),
        account_id: account.into(),
        principal: "root".into(),
        access_key_id: "ak".into(),
        source_ip: "127.0.0.1".into(),
        dialect: "test".into(),
        action: "Attach".into(),
        resources: Vec::new(),
        result: "OK".into(),
        status: 200,
        request_id: request_id.into(),
        client_token: String::new(),
        instance_results: Vec::new(),
        injected: Vec::new(),
    }
}

/// Waits until some backend of the database waits on a lock; true if one did within `patience`.
async fn someone_waits_on_a_lock(watcher: &sqlx::PgPool, patience: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(watcher)
        .await
        .unwrap();
        if waiting > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A transaction that holds what a write on account A's instance X holds (X's row and A's
/// account lock) blocks a write of X, and nothing else: not a write of another instance of A, not
/// a write of account B.
#[tokio::test]
async fn a_write_waits_only_for_the_rows_and_account_it_shares() {
    let url = fresh_database().await;
    let store = Arc::new(PgStore::open(&url).await.unwrap());
    let a = conformance::account(&*store).await;
    let b_key = keyplane_store::AccessKeyRecord {
        id: "LTAIaccountb".into(),
        account_id: keyplane_core::ids::new_account_id(),
        user_name: None,
        secret: "secret".into(),
        active: true,
    };
    store.create_account("b", &b_key).await.unwrap();
    let b = b_key.account_id.clone();
    let running =
        |account: &str| conformance::instance(account, InstanceStatus::Running, OsType::Linux);
    let (x, y, z) = (running(&a), running(&a), running(&b));
    store
        .insert_instances(&[x.clone(), y.clone(), z.clone()], None, None)
        .await
        .unwrap();
    let (kp_a, kp_b) = (
        conformance::key_pair(&a, "kp-a", "md5"),
        conformance::key_pair(&b, "kp-b", "md5"),
    );
    store.create_key_pair(&kp_a, 500, None).await.unwrap();
    store.create_key_pair(&kp_b, 500, None).await.unwrap();

    // The paused writer: X's row and account A's lock, held until it rolls back.
    let mut paused = sqlx::PgConnection::connect(&url).await.unwrap();
    use sqlx::Connection;
    sqlx::query("BEGIN").execute(&mut paused).await.unwrap();
    sqlx::query("SELECT id FROM instances WHERE id = $1 FOR UPDATE")
        .bind(&x.id)
        .execute(&mut paused)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(0x6b70_0001_i32)
        .bind(&a)
        .execute(&mut paused)
        .await
        .unwrap();

    // Generous bounds that only a deadlock would reach: a hang detector, not a timing claim.
    let bound = Duration::from_secs(60);
    let attach = |s: Arc<PgStore>,
                  account: String,
                  kp: keyplane_core::model::KeyPair,
                  id: String| async move {
        s.bind(&account, "cn-hangzhou", &kp, &[id], BindOp::Attach, None)
            .await
            .unwrap()
    };
    tokio::time::timeout(
        bound,
        attach(store.clone(), a.clone(), kp_a.clone(), y.id.clone()),
    )
    .await
    .expect("another instance of the same account is not blocked");
    tokio::time::timeout(
        bound,
        attach(store.clone(), b.clone(), kp_b.clone(), z.id.clone()),
    )
    .await
    .expect("another account's instance is not blocked");
    tokio::time::timeout(
        bound,
        store.create_key_pair(&conformance::key_pair(&b, "kp-b2", "md5"), 500, None),
    )
    .await
    .expect("another account's quota is not blocked")
    .unwrap();

    // The same instance waits, and reads what the paused writer committed: here, the paused
    // writer attaches kp-a to X, and a detach of kp-a that started meanwhile must detach it (had
    // the detach read X before the attach committed, it would change nothing and leave kp-a).
    sqlx::query("UPDATE instances SET key_pair_id = $1, key_pair_name = 'kp-a' WHERE id = $2")
        .bind(&kp_a.id)
        .bind(&x.id)
        .execute(&mut paused)
        .await
        .unwrap();
    let watcher = sqlx::PgPool::connect(&url).await.unwrap();
    let detach = {
        let (s, a, kp, id) = (store.clone(), a.clone(), kp_a.clone(), x.id.clone());
        tokio::spawn(async move {
            s.bind(&a, "cn-hangzhou", &kp, &[id], BindOp::Detach, None)
                .await
                .unwrap()
        })
    };
    assert!(
        someone_waits_on_a_lock(&watcher, bound).await,
        "the detach waits for X"
    );
    assert!(!detach.is_finished());
    sqlx::query("COMMIT").execute(&mut paused).await.unwrap();
    let out = tokio::time::timeout(bound, detach).await.unwrap().unwrap();
    assert_eq!(out[0].1, Ok(()));
    let after = store.instance(&a, &x.id).await.unwrap().unwrap();
    assert_eq!(after.binding.desired_key_pair_id, None, "no lost update");
}

/// Each server caches AccessKeys, and a change made through any server (or by hand in SQL)
/// reaches every server's cache.
#[tokio::test]
async fn an_access_key_change_on_one_server_reaches_the_others_cache() {
    let url = fresh_database().await;
    let (a, b) = tokio::join!(PgStore::open(&url), PgStore::open(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let account = conformance::account(&a).await;
    let key = keyplane_store::AccessKeyRecord {
        id: "LTAIcached".into(),
        account_id: account,
        user_name: None,
        secret: "secret".into(),
        active: true,
    };
    b.insert_access_key(&key).await.unwrap();
    // Polls until `a` reads `active`: bounded only to turn a lost notification into a failure.
    let a_sees = |active: bool| {
        let a = &a;
        async move {
            for _ in 0..3000 {
                if a.access_key("LTAIcached").await.unwrap().unwrap().active == active {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    };
    assert!(a_sees(true).await);

    // A change that announces nothing (triggers off for that session) is not seen: `a` answers
    // from its cache. (The announcement of the insert above may still be on its way and empty the
    // cache once; it comes only once, so a second round shows the cache.)
    let mut raw = sqlx::PgConnection::connect(&url).await.unwrap();
    use sqlx::Connection;
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut raw)
        .await
        .unwrap();
    let mut cached = false;
    for _ in 0..5 {
        sqlx::query("UPDATE access_keys SET status = 'Active' WHERE id = 'LTAIcached'")
            .execute(&mut raw)
            .await
            .unwrap();
        assert!(a.access_key("LTAIcached").await.unwrap().unwrap().active);
        sqlx::query("UPDATE access_keys SET status = 'Inactive' WHERE id = 'LTAIcached'")
            .execute(&mut raw)
            .await
            .unwrap();
        if a.access_key("LTAIcached").await.unwrap().unwrap().active {
            cached = true;
            break;
        }
    }
    assert!(cached, "the server answers from its cache");
    // ...and any announced change, here made through the other server, empties it.
    b.insert_access_key(&keyplane_store::AccessKeyRecord {
        active: false,
        ..key.clone()
    })
    .await
    .unwrap();
    assert!(a_sees(false).await);
    // By hand, with triggers on, too.
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE access_keys SET status = 'Active' WHERE id = 'LTAIcached'")
        .execute(&mut raw)
        .await
        .unwrap();
    assert!(a_sees(true).await);
}

/// `key_pairs` key pairs and `instances` running Linux instances in `account`; their IDs.
async fn seed(
    store: &PgStore,
    account: &str,
    key_pairs: usize,
    instances: usize,
) -> (Vec<keyplane_core::model::KeyPair>, Vec<String>) {
    let mut kps = Vec::new();
    for n in 0..key_pairs {
        let kp = conformance::key_pair(account, &format!("kp-{n}"), "md5");
        store.create_key_pair(&kp, 500, None).await.unwrap();
        kps.push(kp);
    }
    let made: Vec<_> = (0..instances)
        .map(|_| conformance::instance(account, InstanceStatus::Running, OsType::Linux))
        .collect();
    store.insert_instances(&made, None, None).await.unwrap();
    (kps, made.into_iter().map(|i| i.id).collect())
}

/// Snapshots are the embedded store's: PostgreSQL refuses them clearly and changes nothing.
#[tokio::test]
async fn snapshots_are_refused_with_a_clear_error() {
    let url = fresh_database().await;
    let s = PgStore::open(&url).await.unwrap();
    let path = std::env::temp_dir().join("keyplane-pg-snapshot-refused.db");
    for e in [
        s.save_snapshot(&path).await.unwrap_err(),
        s.load_snapshot(&path).await.unwrap_err(),
    ] {
        assert!(
            matches!(&e, CoreError::InvalidParameter { reason, .. } if reason.contains("pg_dump")),
            "{e:?}"
        );
    }
    assert!(!path.exists());
}
