//! Key pairs, bindings, instance listings and descriptions: the resources the vendor APIs change.

use super::*;

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
            None,
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
            .tag_key_pairs(&account, std::slice::from_ref(&a.id), &too_many, None)
            .await,
        Err(CoreError::TooManyTags)
    );
    store
        .untag_key_pairs(&account, std::slice::from_ref(&a.id), None, None)
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
        .power(&account, &running.id, Power::Reboot, None, None)
        .await
        .unwrap();
    assert_eq!(rebooted.status, InstanceStatus::Running);
    assert_eq!(rebooted.binding.state, BindingState::Applied);
    assert_eq!(
        store
            .power(&account, &stopped.id, Power::Stop, None, None)
            .await
            .unwrap_err(),
        CoreError::IncorrectInstanceStatus
    );
    // A delayed start: transitional until completed.
    let later = Utc::now() + chrono::Duration::seconds(60);
    let starting = store
        .power(&account, &stopped.id, Power::Start, Some(later), None)
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
        store
            .delete_instance(&account, &running.id, false, None)
            .await,
        Err(CoreError::IncorrectInstanceStatus)
    );
    store
        .delete_instance(&account, &running.id, true, None)
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

/// Descriptions change and say when.
pub async fn descriptions(store: &dyn Store) {
    let account = account(store).await;
    let kp = key_pair(&account, "described", "x");
    store.create_key_pair(&kp, 500, None).await.unwrap();
    store
        .set_key_pair_attribute(
            &account,
            &kp.id,
            crate::KeyPairAttribute::Description,
            "web servers",
            None,
        )
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
            .set_key_pair_attribute(
                "0000000000000000",
                &kp.id,
                crate::KeyPairAttribute::Description,
                "x",
                None
            )
            .await,
        Err(CoreError::KeyPairNotFound(kp.id.clone()))
    );
}
