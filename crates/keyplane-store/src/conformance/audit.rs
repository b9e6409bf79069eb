//! The audit log, and writes that commit their record with their change.

use super::*;

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
