//! The story every backend must pass: the same calls, the same results. Backends run it from their
//! own tests (`tests/sqlite.rs`, `tests/postgres.rs`) through `tests/common/mod.rs`.

use chrono::Utc;
use keyplane_core::binding::{Binding, BindingState, Power};
use keyplane_core::model::{
    FingerprintQuery, Instance, InstanceStatus, KeyPair, OsType, Provider, Tag,
};
use keyplane_core::{ids, CoreError, InstanceFailure};

use crate::{
    parse_ts, ts, AccessKeyRecord, AuditFilter, AuditRecord, BindAudit, BindOp, InstanceFilter,
    InstanceResult, KeyPairFilter, Page, PolicyRecord, RegistrationToken, Store, StoredResponse,
    TokenClaim, User,
};

const REGION: &str = "cn-hangzhou";

/// Bootstraps a fresh store and returns its account.
pub async fn account(store: &dyn Store) -> String {
    let key = AccessKeyRecord {
        id: "LTAIconformance".into(),
        account_id: ids::new_account_id(),
        user_name: None,
        secret: "secret".into(),
        active: true,
    };
    let account = store.bootstrap(&key).await.unwrap();
    assert_eq!(
        store.bootstrap(&key).await.unwrap(),
        account,
        "bootstrap is idempotent"
    );
    assert_eq!(
        store.access_key(&key.id).await.unwrap().unwrap().account_id,
        account
    );
    account
}

pub fn key_pair(account: &str, name: &str, md5: &str) -> KeyPair {
    KeyPair {
        id: ids::new_key_pair_id(),
        account_id: account.into(),
        region_id: REGION.into(),
        name: name.into(),
        public_key: format!("ssh-ed25519 AAAA{name}"),
        fingerprint_sha256: format!("SHA256:{name}"),
        fingerprint_md5: md5.into(),
        resource_group_id: String::new(),
        description: String::new(),
        created_at: keyplane_core::model::now(),
        updated_at: None,
        tags: vec![],
    }
}

pub fn instance(account: &str, status: InstanceStatus, os: OsType) -> Instance {
    Instance {
        id: ids::new_instance_id(),
        account_id: account.into(),
        region_id: REGION.into(),
        zone_id: "cn-hangzhou-h".into(),
        name: "web".into(),
        host_name: "web".into(),
        description: String::new(),
        image_id: "img".into(),
        instance_type: "ecs.g7.large".into(),
        os_type: os,
        os_name: "os".into(),
        status,
        io_optimized: true,
        agent_installed: true,
        login_user: "root".into(),
        provider: Provider::Sim,
        has_password: false,
        password_hash: None,
        created_at: keyplane_core::model::now(),
        started_at: None,
        key_pair_name: None,
        binding: Binding::default(),
        tags: vec![Tag {
            key: "env".into(),
            value: "test".into(),
        }],
    }
}

const MD5_A: &str = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";

/// Key pairs: create, unique names, quota, lookups, filters, tags, delete.
pub async fn key_pairs(store: &dyn Store) {
    let account = account(store).await;
    let a = key_pair(&account, "alpha-kp", MD5_A);
    store.create_key_pair(&a, 3, None).await.unwrap();
    assert_eq!(
        store
            .create_key_pair(&key_pair(&account, "alpha-kp", MD5_A), 3, None)
            .await,
        Err(CoreError::KeyPairAlreadyExists("alpha-kp".into()))
    );
    store
        .create_key_pair(&key_pair(&account, "beta-kp", "x"), 3, None)
        .await
        .unwrap();
    store
        .create_key_pair(&key_pair(&account, "gamma", "y"), 3, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .create_key_pair(&key_pair(&account, "delta", "z"), 3, None)
            .await,
        Err(CoreError::KeyPairQuotaExceeded(3))
    );
    let got = store
        .key_pair_by_name(&account, REGION, "alpha-kp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, a);
    assert_eq!(
        store
            .key_pair_by_id(&account, &a.id)
            .await
            .unwrap()
            .unwrap(),
        a
    );
    assert!(store
        .key_pair_by_id("0000000000000000", &a.id)
        .await
        .unwrap()
        .is_none());

    let filter = |f: KeyPairFilter| KeyPairFilter {
        account_id: account.clone(),
        region_id: REGION.into(),
        ..f
    };
    let all = Page::Offset {
        offset: 0,
        limit: 50,
    };
    let list = store
        .list_key_pairs(&filter(Default::default()), all)
        .await
        .unwrap();
    assert_eq!(list.total, 3);
    let wild = store
        .list_key_pairs(
            &filter(KeyPairFilter {
                name: Some("*-kp".into()),
                ..Default::default()
            }),
            all,
        )
        .await
        .unwrap();
    assert_eq!(
        wild.items
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>(),
        ["alpha-kp", "beta-kp"]
    );
    // Only `*` is a wildcard: the pattern characters of GLOB and LIKE match themselves.
    for pattern in ["alpha_kp", "alpha%", "alph?-kp", "[a]lpha-kp", "alpha\\*"] {
        let none = store
            .list_key_pairs(
                &filter(KeyPairFilter {
                    name: Some(pattern.into()),
                    ..Default::default()
                }),
                all,
            )
            .await
            .unwrap();
        assert_eq!(none.total, 0, "{pattern} matched {:?}", none.items);
    }
    let by_fp = store
        .list_key_pairs(
            &filter(KeyPairFilter {
                fingerprint: Some(FingerprintQuery::Md5(MD5_A.into())),
                ..Default::default()
            }),
            all,
        )
        .await
        .unwrap();
    assert_eq!(by_fp.items.len(), 1);
    let page2 = store
        .list_key_pairs(
            &filter(Default::default()),
            Page::Offset {
                offset: 2,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!((page2.total, page2.items.len()), (3, 1));
    let other = store
        .list_key_pairs(
            &KeyPairFilter {
                account_id: "0000000000000000".into(),
                region_id: REGION.into(),
                ..Default::default()
            },
            all,
        )
        .await
        .unwrap();
    assert_eq!(other.total, 0, "another account sees nothing");

    let tag = Tag {
        key: "team".into(),
        value: "ops".into(),
    };
    store
        .tag_key_pairs(
            &account,
            std::slice::from_ref(&a.id),
            std::slice::from_ref(&tag),
        )
        .await
        .unwrap();
    let tagged = store
        .list_key_pairs(
            &filter(KeyPairFilter {
                tags: vec![tag.clone()],
                ..Default::default()
            }),
            all,
        )
        .await
        .unwrap();
    assert_eq!(tagged.items.len(), 1);
    assert_eq!(tagged.items[0].tags, vec![tag]);
    let too_many: Vec<Tag> = (0..21)
        .map(|i| Tag {
            key: format!("k{i}"),
            value: String::new(),
        })
        .collect();
    assert_eq!(
        store
            .tag_key_pairs(&account, std::slice::from_ref(&a.id), &too_many)
            .await,
        Err(CoreError::TooManyTags)
    );
    store
        .untag_key_pairs(&account, std::slice::from_ref(&a.id), None)
        .await
        .unwrap();
    assert!(store
        .key_pair_by_id(&account, &a.id)
        .await
        .unwrap()
        .unwrap()
        .tags
        .is_empty());

    store
        .delete_key_pairs(
            &account,
            REGION,
            &["beta-kp".into(), "no-such".into()],
            None,
        )
        .await
        .unwrap();
    assert!(store
        .key_pair_by_name(&account, REGION, "beta-kp")
        .await
        .unwrap()
        .is_none());
}

/// Instances, bindings and power: the batch rules, one transaction, boots apply bindings.
pub async fn bindings(store: &dyn Store) {
    let account = account(store).await;
    let kp = key_pair(&account, "bind-kp", MD5_A);
    store.create_key_pair(&kp, 500, None).await.unwrap();
    let running = instance(&account, InstanceStatus::Running, OsType::Linux);
    let stopped = instance(&account, InstanceStatus::Stopped, OsType::Linux);
    let windows = instance(&account, InstanceStatus::Running, OsType::Windows);
    let mut legacy = instance(&account, InstanceStatus::Running, OsType::Linux);
    legacy.io_optimized = false;
    let mut elsewhere = instance(&account, InstanceStatus::Running, OsType::Linux);
    elsewhere.region_id = "cn-beijing".into();
    store
        .insert_instances(
            &[
                running.clone(),
                stopped.clone(),
                windows.clone(),
                legacy.clone(),
                elsewhere.clone(),
            ],
            None,
            None,
        )
        .await
        .unwrap();
    let ids: Vec<String> = [&running, &stopped, &windows, &legacy, &elsewhere]
        .iter()
        .map(|i| i.id.clone())
        .chain(["i-doesnotexist".to_string()])
        .collect();
    // The caller decided one instance before the store (a RAM refusal); the store decides the
    // rest and writes every instance's result into the record, in the caller's order.
    let mut record = audit_record(&account, "AttachKeyPair");
    record.instance_results = std::iter::once(("i-refused", "Forbidden.RAM"))
        .chain(ids.iter().map(|id| (id.as_str(), "")))
        .map(|(id, result)| InstanceResult {
            instance_id: id.into(),
            result: result.into(),
        })
        .collect();
    let audit = BindAudit {
        record: &record,
        failure_code: |f| match f {
            InstanceFailure::Windows => "Windows",
            InstanceFailure::NotIoOptimized => "IoOptimize",
            InstanceFailure::NotFound => "NotFound",
            _ => "Other",
        },
    };
    let outcomes = store
        .bind(&account, REGION, &kp, &ids, BindOp::Attach, Some(audit))
        .await
        .unwrap();
    let written = store
        .list_audit(
            &AuditFilter {
                account_id: Some(account.clone()),
                result: Some("Windows".into()),
                ..Default::default()
            },
            Page::After { seq: 0, limit: 10 },
        )
        .await
        .unwrap();
    assert_eq!(written.total, 1);
    let written: Vec<(&str, &str)> = written.items[0]
        .instance_results
        .iter()
        .map(|r| (r.instance_id.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(
        written,
        [
            ("i-refused", "Forbidden.RAM"),
            (running.id.as_str(), "OK"),
            (stopped.id.as_str(), "OK"),
            (windows.id.as_str(), "Windows"),
            (legacy.id.as_str(), "IoOptimize"),
            (elsewhere.id.as_str(), "NotFound"),
            ("i-doesnotexist", "NotFound"),
        ]
    );
    let results: Vec<_> = outcomes.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        results,
        vec![
            Ok(()),
            Ok(()),
            Err(InstanceFailure::Windows),
            Err(InstanceFailure::NotIoOptimized),
            Err(InstanceFailure::NotFound),
            Err(InstanceFailure::NotFound),
        ]
    );
    let r = store
        .instance(&account, &running.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.binding.state, BindingState::PendingRestart);
    assert_eq!(r.key_pair_name.as_deref(), Some("bind-kp"));
    assert!(!r.binding.desired_password_login);
    assert_eq!(r.tags.len(), 1);
    assert_eq!(store.key_pair_usage(&account, &kp.id).await.unwrap(), 2);
    assert_eq!(
        store
            .delete_key_pairs(&account, REGION, &["bind-kp".into()], None)
            .await,
        Err(CoreError::KeyPairInUse("bind-kp".into()))
    );

    let rebooted = store
        .power(&account, &running.id, Power::Reboot, None)
        .await
        .unwrap();
    assert_eq!(rebooted.status, InstanceStatus::Running);
    assert_eq!(rebooted.binding.state, BindingState::Applied);
    assert_eq!(
        store
            .power(&account, &stopped.id, Power::Stop, None)
            .await
            .unwrap_err(),
        CoreError::IncorrectInstanceStatus
    );
    // A delayed start: transitional until completed.
    let later = Utc::now() + chrono::Duration::seconds(60);
    let starting = store
        .power(&account, &stopped.id, Power::Start, Some(later))
        .await
        .unwrap();
    assert_eq!(starting.status, InstanceStatus::Starting);
    let listed = store
        .list_instances(
            &InstanceFilter {
                account_id: account.clone(),
                region_id: REGION.into(),
                status: Some(InstanceStatus::Starting),
                ..Default::default()
            },
            Page::Offset {
                offset: 0,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(store.complete_transitions(Utc::now()).await.unwrap(), 0);
    assert_eq!(store.complete_transitions(later).await.unwrap(), 1);
    let started = store
        .instance(&account, &stopped.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (started.status, started.binding.state),
        (InstanceStatus::Running, BindingState::Applied)
    );

    let detach = store
        .bind(
            &account,
            REGION,
            &kp,
            std::slice::from_ref(&running.id),
            BindOp::Detach,
            None,
        )
        .await
        .unwrap();
    assert_eq!(detach[0].1, Ok(()));
    let d = store
        .instance(&account, &running.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.binding.state, d.key_pair_name),
        (BindingState::PendingRestart, None)
    );
    assert!(d.binding.desired_password_login);

    assert_eq!(
        store.delete_instance(&account, &running.id, false).await,
        Err(CoreError::IncorrectInstanceStatus)
    );
    store
        .delete_instance(&account, &running.id, true)
        .await
        .unwrap();
    assert!(store
        .instance(&account, &running.id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .instance("0000000000000000", &stopped.id)
        .await
        .unwrap()
        .is_none());
}

/// Listing instances: filters and keyset pages that never repeat or skip a row.
pub async fn instance_listing(store: &dyn Store) {
    let account = account(store).await;
    let mut all = Vec::new();
    for n in 0..25 {
        let mut i = instance(&account, InstanceStatus::Running, OsType::Linux);
        i.name = format!("node-{n:02}");
        all.push(i);
    }
    store.insert_instances(&all, None, None).await.unwrap();
    let base = InstanceFilter {
        account_id: account.clone(),
        region_id: REGION.into(),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut seq = 0;
    loop {
        let page = store
            .list_instances(&base, Page::After { seq, limit: 10 })
            .await
            .unwrap();
        assert_eq!(page.total, 25);
        seen.extend(page.items.iter().map(|i| i.id.clone()));
        match page.next_seq {
            Some(s) => seq = s,
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(|i| i.id.clone()).collect::<Vec<_>>());
    // The total is the same whether a page is full, partial, past the end or the whole listing.
    for (page, items) in [
        (
            Page::Offset {
                offset: 0,
                limit: 10,
            },
            10,
        ),
        (
            Page::Offset {
                offset: 20,
                limit: 10,
            },
            5,
        ),
        (
            Page::Offset {
                offset: 40,
                limit: 10,
            },
            0,
        ),
        (
            Page::Offset {
                offset: 0,
                limit: 100,
            },
            25,
        ),
        (Page::After { seq: 0, limit: 100 }, 25),
    ] {
        let listing = store.list_instances(&base, page).await.unwrap();
        assert_eq!(
            (listing.total, listing.items.len()),
            (25, items),
            "{page:?}"
        );
    }
    let named = store
        .list_instances(
            &InstanceFilter {
                name: Some("node-1*".into()),
                ..base.clone()
            },
            Page::Offset {
                offset: 0,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(named.total, 10);
    let by_ids = store
        .list_instances(
            &InstanceFilter {
                ids: Some(vec![all[3].id.clone()]),
                ..base.clone()
            },
            Page::Offset {
                offset: 0,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(by_ids.items[0].id, all[3].id);
    let none = store
        .list_instances(
            &InstanceFilter {
                ids: Some(vec![]),
                ..base.clone()
            },
            Page::Offset {
                offset: 0,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    let tagged = store
        .list_instances(
            &InstanceFilter {
                tags: vec![Tag {
                    key: "env".into(),
                    value: "test".into(),
                }],
                ..base
            },
            Page::Offset {
                offset: 0,
                limit: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!((tagged.total, tagged.items.len()), (25, 5));
}

/// Nonces survive in the store until purged.
pub async fn nonces(store: &dyn Store) {
    let now = Utc::now();
    store
        .record_nonces(&[
            ("ak".into(), "n1".into(), now),
            ("ak".into(), "n1".into(), now),
        ])
        .await
        .unwrap();
    let recent = store
        .recent_nonces(now - chrono::Duration::minutes(15))
        .await
        .unwrap();
    assert!(recent.contains(&("ak".into(), "n1".into(), parse_ts(&ts(now)).unwrap())));
    assert_eq!(
        store
            .purge_nonces(now + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        1
    );
    assert!(store
        .recent_nonces(now - chrono::Duration::minutes(15))
        .await
        .unwrap()
        .is_empty());
    // A nonce recorded for a request dated ahead keeps its own (later) instant.
    let ahead = now + chrono::Duration::minutes(14);
    store
        .record_nonces(&[("ak".into(), "n2".into(), ahead)])
        .await
        .unwrap();
    let recent = store.recent_nonces(now).await.unwrap();
    assert!(recent.contains(&("ak".into(), "n2".into(), parse_ts(&ts(ahead)).unwrap())));
    store
        .purge_nonces(ahead + chrono::Duration::seconds(1))
        .await
        .unwrap();
}

/// A nonce claimed once is refused until the window has passed (every server of a shared store
/// claims here).
pub async fn nonce_claims(store: &dyn Store) {
    let now = Utc::now();
    assert!(store.claim_nonce("ak", "c1", now).await.unwrap());
    assert!(!store.claim_nonce("ak", "c1", now).await.unwrap());
    assert!(store.claim_nonce("other-ak", "c1", now).await.unwrap());
    let later = now + chrono::Duration::minutes(crate::NONCE_WINDOW_MINUTES + 1);
    assert!(store.claim_nonce("ak", "c1", later).await.unwrap());
    assert!(!store.claim_nonce("ak", "c1", later).await.unwrap());
    // A request dated 14 minutes ahead is claimed at its timestamp, so a replay 20 minutes after
    // the first use (its timestamp still acceptable) is refused.
    let ahead = now + chrono::Duration::minutes(14);
    assert!(store.claim_nonce("ak", "c2", ahead.max(now)).await.unwrap());
    let replay_at = now + chrono::Duration::minutes(20);
    assert!(!store
        .claim_nonce("ak", "c2", ahead.max(replay_at))
        .await
        .unwrap());
}

/// ClientTokens: first claim runs, a retry gets the stored response, other parameters mismatch,
/// a concurrent duplicate is processing, an abandoned claim is taken over, a release lets a retry run.
pub async fn client_tokens(store: &dyn Store) {
    let now = Utc::now();
    let stale = now - chrono::Duration::seconds(60);
    let claim = |token: &'static str, hash: &'static str| {
        store.claim_token("acct", "aliyun:AttachKeyPair", token, hash, now, stale)
    };
    assert_eq!(claim("t1", "h1").await.unwrap(), TokenClaim::Claimed);
    assert_eq!(claim("t1", "h1").await.unwrap(), TokenClaim::Processing);
    assert_eq!(claim("t1", "h2").await.unwrap(), TokenClaim::Mismatch);
    let resp = StoredResponse {
        status: 200,
        content_type: "application/json".into(),
        body: b"{\"RequestId\":\"X\"}".to_vec(),
    };
    store
        .finish_token("acct", "aliyun:AttachKeyPair", "t1", &resp)
        .await
        .unwrap();
    assert_eq!(
        claim("t1", "h1").await.unwrap(),
        TokenClaim::Done(resp.clone())
    );
    // Scoped per account and action.
    assert_eq!(
        store
            .claim_token("other", "aliyun:AttachKeyPair", "t1", "h9", now, stale)
            .await
            .unwrap(),
        TokenClaim::Claimed
    );
    assert_eq!(
        store
            .claim_token("acct", "aliyun:DetachKeyPair", "t1", "h9", now, stale)
            .await
            .unwrap(),
        TokenClaim::Claimed
    );
    assert_eq!(claim("t2", "h1").await.unwrap(), TokenClaim::Claimed);
    store
        .release_token("acct", "aliyun:AttachKeyPair", "t2")
        .await
        .unwrap();
    assert_eq!(claim("t2", "h1").await.unwrap(), TokenClaim::Claimed);
    // A claim left processing past the stale time (a crash) is taken over.
    let later = now + chrono::Duration::seconds(120);
    assert_eq!(
        store
            .claim_token(
                "acct",
                "aliyun:AttachKeyPair",
                "t2",
                "h1",
                later,
                later - chrono::Duration::seconds(60)
            )
            .await
            .unwrap(),
        TokenClaim::Claimed
    );
    assert!(
        store
            .purge_tokens(now + chrono::Duration::hours(25))
            .await
            .unwrap()
            >= 4
    );
    assert_eq!(
        claim("t1", "h2").await.unwrap(),
        TokenClaim::Claimed,
        "purged after the retention time"
    );
}

/// Descriptions change and say when.
pub async fn descriptions(store: &dyn Store) {
    let account = account(store).await;
    let kp = key_pair(&account, "described", "x");
    store.create_key_pair(&kp, 500, None).await.unwrap();
    store
        .set_key_pair_description(&account, &kp.id, "web servers")
        .await
        .unwrap();
    let got = store
        .key_pair_by_id(&account, &kp.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.description, "web servers");
    assert!(got.updated_at.is_some());
    assert_eq!(
        store
            .set_key_pair_description("0000000000000000", &kp.id, "x")
            .await,
        Err(CoreError::KeyPairNotFound(kp.id.clone()))
    );
}

/// Accounts, users, AccessKeys, policies: the RAM objects and their conflicts.
pub async fn ram(store: &dyn Store) {
    let account = account(store).await;
    let other = AccessKeyRecord {
        id: "LTAIother".into(),
        account_id: ids::new_account_id(),
        user_name: None,
        secret: "s".into(),
        active: true,
    };
    store.create_account("second", &other).await.unwrap();
    let accounts = store.list_accounts().await.unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[1].1, "second");
    let user = |name: &str, acct: &str| User {
        account_id: acct.into(),
        name: name.into(),
        id: ids::new_account_id(),
        display_name: name.into(),
        comments: String::new(),
        created_at: keyplane_core::model::now(),
    };
    store.create_user(&user("alice", &account)).await.unwrap();
    assert_eq!(
        store.create_user(&user("alice", &account)).await,
        Err(CoreError::UserAlreadyExists("alice".into()))
    );
    store
        .create_user(&user("alice", &other.account_id))
        .await
        .unwrap();
    assert_eq!(store.list_users(&account).await.unwrap().len(), 1);
    let key = |id: &str, u: Option<&str>| AccessKeyRecord {
        id: id.into(),
        account_id: account.clone(),
        user_name: u.map(str::to_string),
        secret: "sealed".into(),
        active: true,
    };
    store
        .create_access_key(&key("LTAIa1", Some("alice")), 2)
        .await
        .unwrap();
    store
        .create_access_key(&key("LTAIa2", Some("alice")), 2)
        .await
        .unwrap();
    assert_eq!(
        store
            .create_access_key(&key("LTAIa3", Some("alice")), 2)
            .await,
        Err(CoreError::AccessKeyLimit(2))
    );
    assert_eq!(
        store
            .create_access_key(&key("LTAIb1", Some("bob")), 2)
            .await,
        Err(CoreError::UserNotFound("bob".into()))
    );
    assert_eq!(
        store
            .list_access_keys(&account, Some("alice"))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.list_access_keys(&account, None).await.unwrap().len(),
        1,
        "the root's own"
    );
    // Read first, so a backend that keeps keys it read has this one: a change must still show.
    assert!(store.access_key("LTAIa1").await.unwrap().unwrap().active);
    store
        .set_access_key_status(&account, "LTAIa1", false)
        .await
        .unwrap();
    assert!(!store.access_key("LTAIa1").await.unwrap().unwrap().active);
    assert_eq!(
        store
            .set_access_key_status(&other.account_id, "LTAIa1", true)
            .await,
        Err(CoreError::AccessKeyNotFound("LTAIa1".into())),
        "another account's key is not found"
    );
    let policy = PolicyRecord {
        account_id: account.clone(),
        name: "kp-only".into(),
        document: r#"{"Version":"1","Statement":[]}"#.into(),
        description: "d".into(),
        created_at: keyplane_core::model::now(),
        attachment_count: 0,
    };
    store.create_policy(&policy).await.unwrap();
    assert_eq!(
        store.create_policy(&policy).await,
        Err(CoreError::PolicyAlreadyExists("kp-only".into()))
    );
    store
        .attach_policy(&account, "alice", "kp-only")
        .await
        .unwrap();
    assert_eq!(
        store.attach_policy(&account, "alice", "kp-only").await,
        Err(CoreError::PolicyAlreadyAttached("kp-only".into()))
    );
    assert_eq!(
        store.attach_policy(&account, "alice", "nope").await,
        Err(CoreError::PolicyNotFound("nope".into()))
    );
    assert_eq!(
        store
            .policy(&account, "kp-only")
            .await
            .unwrap()
            .unwrap()
            .attachment_count,
        1
    );
    assert_eq!(
        store.user_policies(&account, "alice").await.unwrap()[0]
            .0
            .name,
        "kp-only"
    );
    assert!(store
        .user_policies(&other.account_id, "alice")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.delete_policy(&account, "kp-only").await,
        Err(CoreError::PolicyInUse("kp-only".into()))
    );
    assert_eq!(
        store.delete_user(&account, "alice").await,
        Err(CoreError::UserHasAccessKeys("alice".into()))
    );
    assert!(store.access_key("LTAIa2").await.unwrap().is_some());
    store.delete_access_key(&account, "LTAIa1").await.unwrap();
    store.delete_access_key(&account, "LTAIa2").await.unwrap();
    assert_eq!(store.access_key("LTAIa1").await.unwrap(), None);
    assert_eq!(
        store.access_key("LTAIa2").await.unwrap(),
        None,
        "a deleted key is gone at once"
    );
    assert_eq!(
        store.delete_user(&account, "alice").await,
        Err(CoreError::UserHasPolicies("alice".into()))
    );
    store
        .detach_policy(&account, "alice", "kp-only")
        .await
        .unwrap();
    assert_eq!(
        store.detach_policy(&account, "alice", "kp-only").await,
        Err(CoreError::PolicyNotAttached("kp-only".into()))
    );
    store
        .set_login_profile(&account, "alice", "$argon2id$hash")
        .await
        .unwrap();
    assert_eq!(
        store
            .login_profile(&account, "alice")
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$hash")
    );
    assert!(store.delete_login_profile(&account, "alice").await.unwrap());
    assert!(!store.delete_login_profile(&account, "alice").await.unwrap());
    assert!(store
        .login_profile(&account, "alice")
        .await
        .unwrap()
        .is_none());
    store
        .set_login_profile(&account, "alice", "$argon2id$hash")
        .await
        .unwrap();
    store.delete_user(&account, "alice").await.unwrap();
    // The user's console password goes with the user: a new user of that name has none.
    store.create_user(&user("alice", &account)).await.unwrap();
    assert!(store
        .login_profile(&account, "alice")
        .await
        .unwrap()
        .is_none());
    store.delete_user(&account, "alice").await.unwrap();
    store.delete_policy(&account, "kp-only").await.unwrap();
    assert!(store.user(&account, "alice").await.unwrap().is_none());
    assert!(store
        .user(&other.account_id, "alice")
        .await
        .unwrap()
        .is_some());
}

/// A minimal audit record of `action` in `account`.
fn audit_record(account: &str, action: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: keyplane_core::model::now(),
        account_id: account.into(),
        principal: "root".into(),
        access_key_id: "LTAIx".into(),
        source_ip: "127.0.0.1".into(),
        dialect: "aliyun".into(),
        action: action.into(),
        resources: Vec::new(),
        result: "OK".into(),
        status: 200,
        request_id: "R".into(),
        client_token: String::new(),
        instance_results: Vec::new(),
    }
}

/// A write given its call's audit record commits both or neither: the record is there when the
/// change is, and a refused write leaves no record of success behind.
pub async fn audited_writes(store: &dyn Store) {
    let account = account(store).await;
    let actions = |action: &'static str| {
        let account = account.clone();
        async move {
            let filter = AuditFilter {
                account_id: Some(account),
                action: Some(action.into()),
                ..Default::default()
            };
            let page = Page::After { seq: 0, limit: 100 };
            let listing = store.list_audit(&filter, page).await.unwrap();
            listing
                .items
                .into_iter()
                .map(|r| r.request_id)
                .collect::<Vec<_>>()
        }
    };
    let record = |action: &str, request_id: &str| AuditRecord {
        request_id: request_id.into(),
        ..audit_record(&account, action)
    };

    let kp = key_pair(&account, "audited", "md5");
    store
        .create_key_pair(&kp, 500, Some(&record("ImportKeyPair", "R1")))
        .await
        .unwrap();
    let again = store
        .create_key_pair(&kp, 500, Some(&record("ImportKeyPair", "R2")))
        .await;
    assert!(matches!(again, Err(CoreError::KeyPairAlreadyExists(_))));
    assert_eq!(actions("ImportKeyPair").await, ["R1"]);

    let host = instance(&account, InstanceStatus::Running, OsType::Linux);
    store
        .insert_instances(
            std::slice::from_ref(&host),
            None,
            Some(&record("RunInstances", "R3")),
        )
        .await
        .unwrap();
    let twice = store
        .insert_instances(
            std::slice::from_ref(&host),
            None,
            Some(&record("RunInstances", "R4")),
        )
        .await;
    assert!(twice.is_err(), "the same instance ID twice");
    assert_eq!(actions("RunInstances").await, ["R3"]);
    let bound = store
        .bind(
            &account,
            REGION,
            &kp,
            std::slice::from_ref(&host.id),
            BindOp::Attach,
            None,
        )
        .await
        .unwrap();
    assert!(bound[0].1.is_ok());

    let names = [kp.name.clone()];
    let in_use = store
        .delete_key_pairs(
            &account,
            REGION,
            &names,
            Some(&record("DeleteKeyPairs", "R5")),
        )
        .await;
    assert!(matches!(in_use, Err(CoreError::KeyPairInUse(_))));
    assert!(actions("DeleteKeyPairs").await.is_empty());
    let other = key_pair(&account, "unbound", "md5-2");
    store.create_key_pair(&other, 500, None).await.unwrap();
    store
        .delete_key_pairs(
            &account,
            REGION,
            std::slice::from_ref(&other.name),
            Some(&record("DeleteKeyPairs", "R6")),
        )
        .await
        .unwrap();
    assert_eq!(actions("DeleteKeyPairs").await, ["R6"]);
}

/// The audit log appends, filters, pages.
pub async fn audit(store: &dyn Store) {
    let record = |n: i64, action: &str, result: &str| AuditRecord {
        seq: 0,
        at: keyplane_core::model::now(),
        account_id: "acct".into(),
        principal: if n % 2 == 0 {
            "root".into()
        } else {
            "user/alice".into()
        },
        access_key_id: "LTAIx".into(),
        source_ip: "127.0.0.1".into(),
        dialect: "aliyun".into(),
        action: action.into(),
        resources: vec![format!("acs:ecs:cn-hangzhou:acct:instance/i-{n}")],
        result: result.into(),
        status: if result == "OK" { 200 } else { 403 },
        request_id: format!("R{n}"),
        client_token: String::new(),
        instance_results: Vec::new(),
    };
    for n in 0..15 {
        let action = if n < 10 {
            "AttachKeyPair"
        } else {
            "DeleteKeyPairs"
        };
        store
            .append_audit(&record(
                n,
                action,
                if n == 3 { "Forbidden.RAM" } else { "OK" },
            ))
            .await
            .unwrap();
    }
    let all = store
        .list_audit(&AuditFilter::default(), Page::After { seq: 0, limit: 10 })
        .await
        .unwrap();
    assert_eq!((all.total, all.items.len()), (15, 10));
    assert!(all.next_seq.is_some());
    assert_eq!(
        all.items[3].resources,
        vec!["acs:ecs:cn-hangzhou:acct:instance/i-3".to_string()]
    );
    let denied = store
        .list_audit(
            &AuditFilter {
                result: Some("Forbidden.RAM".into()),
                ..Default::default()
            },
            Page::After { seq: 0, limit: 10 },
        )
        .await
        .unwrap();
    assert_eq!(denied.items[0].request_id, "R3");

    // A batch that answered OK while one of its instances was refused is found by that
    // instance's result, and only by the exact code.
    let partial = AuditRecord {
        instance_results: vec![
            InstanceResult {
                instance_id: "i-a".into(),
                result: "OK".into(),
            },
            InstanceResult {
                instance_id: "i-b".into(),
                result: "Forbidden.RAM".into(),
            },
        ],
        ..record(15, "AttachKeyPair", "OK")
    };
    store.append_audit(&partial).await.unwrap();
    let by_result = |code: &str| AuditFilter {
        result: Some(code.into()),
        ..Default::default()
    };
    let page = Page::After { seq: 0, limit: 100 };
    let denied = store
        .list_audit(&by_result("Forbidden.RAM"), page)
        .await
        .unwrap();
    let ids: Vec<&str> = denied.items.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["R3", "R15"]);
    assert_eq!(denied.items[1].instance_results, partial.instance_results);
    for near_miss in ["Forbidden", "forbidden.ram", "RAM", "\"Forbidden.RAM\""] {
        let none = store.list_audit(&by_result(near_miss), page).await.unwrap();
        assert_eq!(none.total, 0, "{near_miss}");
    }
    let ok = store.list_audit(&by_result("OK"), page).await.unwrap();
    assert_eq!(ok.total, 15);
    let deletes = store
        .list_audit(
            &AuditFilter {
                action: Some("DeleteKeyPairs".into()),
                account_id: Some("acct".into()),
                ..Default::default()
            },
            Page::After { seq: 0, limit: 100 },
        )
        .await
        .unwrap();
    assert_eq!(deletes.total, 5);
    let other = store
        .list_audit(
            &AuditFilter {
                account_id: Some("other".into()),
                ..Default::default()
            },
            Page::After { seq: 0, limit: 100 },
        )
        .await
        .unwrap();
    assert_eq!(other.total, 0);
}

/// Registration tokens: listed without secrets per account, redeemed once, and refused alike
/// once expired or revoked; another account can neither see nor revoke them.
pub async fn registration_tokens(store: &dyn Store) {
    let account = account(store).await;
    let other = AccessKeyRecord {
        id: "LTAIotheraccount".into(),
        account_id: ids::new_account_id(),
        user_name: None,
        secret: "secret".into(),
        active: true,
    };
    store.create_account("other", &other).await.unwrap();
    let token = |name: &str, account: &str, expires: chrono::DateTime<Utc>| RegistrationToken {
        token_id: ids::new_registration_token_id(),
        token_hash: format!("hash-{name}"),
        account_id: account.into(),
        region_id: REGION.into(),
        zone_id: "cn-hangzhou-h".into(),
        name: name.into(),
        expires_at: expires,
    };
    let later = Utc::now() + chrono::Duration::hours(1);
    let live = token("live", &account, later);
    let expired = token(
        "expired",
        &account,
        Utc::now() - chrono::Duration::seconds(1),
    );
    let revoked = token("revoked", &account, later);
    let theirs = token("theirs", &other.account_id, later);
    for t in [&live, &expired, &revoked, &theirs] {
        store.create_registration_token(t).await.unwrap();
    }
    let host = |account: &str| {
        let mut i = instance(account, InstanceStatus::Running, OsType::Linux);
        i.provider = Provider::Host;
        i
    };

    // Another account's token is "no such token", and revoking twice is "no such token".
    assert!(!store
        .revoke_registration_token(&account, &theirs.token_id)
        .await
        .unwrap());
    assert!(store
        .revoke_registration_token(&account, &revoked.token_id)
        .await
        .unwrap());
    assert!(!store
        .revoke_registration_token(&account, &revoked.token_id)
        .await
        .unwrap());

    let listed = store.list_registration_tokens(&account).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|t| t.token_id.as_str()).collect();
    assert_eq!(ids, [live.token_id.as_str(), expired.token_id.as_str()]);
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].used,
            listed[0].region_id.as_str()
        ),
        ("live", false, REGION)
    );
    assert_eq!(
        listed[0].expires_at.timestamp_micros(),
        live.expires_at.timestamp_micros()
    );
    let theirs_listed = store
        .list_registration_tokens(&other.account_id)
        .await
        .unwrap();
    assert_eq!(theirs_listed.len(), 1);
    assert_eq!(theirs_listed[0].token_id, theirs.token_id);

    // Expired, revoked and unknown tokens redeem alike: None, and no instance appears.
    for hash in ["hash-expired", "hash-revoked", "hash-unknown"] {
        let h = host(&account);
        assert_eq!(
            store
                .redeem_registration_token(hash, &h, "cred")
                .await
                .unwrap(),
            None,
            "{hash}"
        );
        assert!(store.instance(&account, &h.id).await.unwrap().is_none());
    }
    let h = host("ignored");
    let inst = store
        .redeem_registration_token("hash-live", &h, "cred")
        .await
        .unwrap()
        .expect("a live token redeems");
    assert_eq!(
        (inst.account_id.as_str(), inst.name.as_str()),
        (account.as_str(), "live")
    );
    assert!(store
        .redeem_registration_token("hash-live", &host(&account), "cred")
        .await
        .unwrap()
        .is_none());
    let listed = store.list_registration_tokens(&account).await.unwrap();
    assert!(listed[0].used && !listed[1].used);
    // Revoking a used token hides it from the listing; the host it registered stays.
    assert!(store
        .revoke_registration_token(&account, &live.token_id)
        .await
        .unwrap());
    assert_eq!(
        store
            .list_registration_tokens(&account)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.instance(&account, &inst.id).await.unwrap().is_some());
}
