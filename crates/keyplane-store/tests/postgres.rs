//! The conformance story on PostgreSQL, each test on a fresh database, and what only a shared
//! store must do: two servers (two `PgStore`s on one database) share nonces, ClientTokens, quotas,
//! throttles and the audit log, concurrent binds equal a serial order, and agent notifications
//! cross servers.
//!
//! Needs `KEYPLANE_TEST_POSTGRES`, a superuser URL (`scripts/test.sh` starts a throwaway cluster
//! with `scripts/postgres.sh` and sets it).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyplane_core::model::{InstanceStatus, OsType};
use keyplane_core::CoreError;
use keyplane_store::postgres::PgStore;
use keyplane_store::{
    conformance, AuditFilter, AuditRecord, BindAudit, BindOp, Page, Store, TokenClaim,
};

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
        calls.push(tokio::spawn(
            async move { s.create_key_pair(&kp, quota).await },
        ));
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
    let mut key_pairs = Vec::new();
    for n in 0..4 {
        let kp = conformance::key_pair(&account, &format!("kp-{n}"), "md5");
        a.create_key_pair(&kp, 500).await.unwrap();
        key_pairs.push(kp);
    }
    let instances: Vec<_> = (0..12)
        .map(|_| conformance::instance(&account, InstanceStatus::Running, OsType::Linux))
        .collect();
    a.insert_instances(&instances, None).await.unwrap();
    let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();

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
                seq: 0,
                at: chrono::Utc::now(),
                account_id: account.clone(),
                principal: "root".into(),
                access_key_id: "ak".into(),
                source_ip: "127.0.0.1".into(),
                dialect: "test".into(),
                action: format!("{op:?}"),
                resources: window.clone(),
                result: "OK".into(),
                status: 200,
                request_id: format!("{n}/{}", kp.id),
                client_token: String::new(),
                instance_results: Vec::new(),
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
