//! The audit log, and writes that commit their record with their change.

use super::*;
use crate::InstanceChange;

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
    every_other_write_commits_its_record(store, &account, &record, &actions).await;
}

/// The rest of the writes a call makes: each appends the record it is given when it succeeds, and
/// leaves none when it fails.
async fn every_other_write_commits_its_record<F, Fut>(
    store: &dyn Store,
    account: &str,
    record: &dyn Fn(&str, &str) -> AuditRecord,
    actions: &F,
) where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let kp = key_pair(account, "tagged", "md5-3");
    store.create_key_pair(&kp, 500, None).await.unwrap();
    let ids = [kp.id.clone()];
    let tag = |k: &str| Tag {
        key: k.into(),
        value: "v".into(),
    };
    let r = |a: &str, id: &str| Some(record(a, id));
    store
        .tag_key_pairs(account, &ids, &[tag("a")], r("TagResources", "T1").as_ref())
        .await
        .unwrap();
    let missing = ["kp-missing".to_string()];
    assert!(store
        .tag_key_pairs(
            account,
            &missing,
            &[tag("b")],
            r("TagResources", "T2").as_ref(),
        )
        .await
        .is_err());
    assert_eq!(actions("TagResources").await, ["T1"]);
    store
        .untag_key_pairs(account, &ids, None, r("UntagResources", "U1").as_ref())
        .await
        .unwrap();
    assert!(store
        .untag_key_pairs(account, &missing, None, r("UntagResources", "U2").as_ref())
        .await
        .is_err());
    assert_eq!(actions("UntagResources").await, ["U1"]);
    store
        .set_key_pair_attribute(
            account,
            &kp.id,
            crate::KeyPairAttribute::Description,
            "d",
            r("ModifyKeyPairAttribute", "M1").as_ref(),
        )
        .await
        .unwrap();
    assert!(store
        .set_key_pair_attribute(
            account,
            "kp-missing",
            crate::KeyPairAttribute::Description,
            "d",
            r("ModifyKeyPairAttribute", "M2").as_ref(),
        )
        .await
        .is_err());
    assert_eq!(actions("ModifyKeyPairAttribute").await, ["M1"]);

    let inst = instance(account, InstanceStatus::Running, OsType::Linux);
    store
        .insert_instances(std::slice::from_ref(&inst), None, None)
        .await
        .unwrap();
    store
        .power(
            account,
            &inst.id,
            Power::Stop,
            None,
            r("StopInstance", "P1").as_ref(),
        )
        .await
        .unwrap();
    // Stopping a stopped instance is refused: no change, no record.
    assert!(store
        .power(
            account,
            &inst.id,
            Power::Stop,
            None,
            r("StopInstance", "P2").as_ref(),
        )
        .await
        .is_err());
    assert_eq!(actions("StopInstance").await, ["P1"]);
    let rename = InstanceChange {
        name: Some("renamed".into()),
        ..Default::default()
    };
    store
        .modify_instance(
            account,
            &inst.id,
            &rename,
            r("ModifyInstanceAttribute", "A1").as_ref(),
        )
        .await
        .unwrap();
    assert!(store
        .modify_instance(
            account,
            "i-missing",
            &rename,
            r("ModifyInstanceAttribute", "A2").as_ref(),
        )
        .await
        .is_err());
    assert_eq!(actions("ModifyInstanceAttribute").await, ["A1"]);
    assert!(store
        .delete_instance(
            account,
            "i-missing",
            true,
            r("DeleteInstance", "D1").as_ref(),
        )
        .await
        .is_err());
    store
        .delete_instance(account, &inst.id, false, r("DeleteInstance", "D2").as_ref())
        .await
        .unwrap();
    assert_eq!(actions("DeleteInstance").await, ["D2"]);

    let user = User {
        account_id: account.into(),
        name: "audited".into(),
        id: "2000000000000001".into(),
        display_name: String::new(),
        comments: String::new(),
        created_at: keyplane_core::model::now(),
    };
    store
        .create_user(&user, r("CreateUser", "C1").as_ref())
        .await
        .unwrap();
    assert!(store
        .create_user(&user, r("CreateUser", "C2").as_ref())
        .await
        .is_err());
    assert_eq!(actions("CreateUser").await, ["C1"]);
    let name = user.name.as_str();
    store
        .set_login_profile(
            account,
            name,
            "$6$x$y",
            r("CreateLoginProfile", "L1").as_ref(),
        )
        .await
        .unwrap();
    assert!(store
        .set_login_profile(
            account,
            "nobody",
            "$6$x$y",
            r("CreateLoginProfile", "L2").as_ref(),
        )
        .await
        .is_err());
    assert_eq!(actions("CreateLoginProfile").await, ["L1"]);
    assert!(store
        .delete_login_profile(account, name, r("DeleteLoginProfile", "L3").as_ref())
        .await
        .unwrap());
    let l4 = r("DeleteLoginProfile", "L4");
    let none_left = store.delete_login_profile(account, name, l4.as_ref());
    assert!(
        !none_left.await.unwrap(),
        "nothing to delete: no change, no record"
    );
    assert_eq!(actions("DeleteLoginProfile").await, ["L3"]);
    let key = AccessKeyRecord {
        id: "LTAIaudited".into(),
        account_id: account.into(),
        user_name: Some(name.into()),
        secret: "sealed".into(),
        active: true,
    };
    store
        .create_access_key(&key, 2, r("CreateAccessKey", "K1").as_ref())
        .await
        .unwrap();
    assert!(store
        .create_access_key(&key, 2, r("CreateAccessKey", "K2").as_ref())
        .await
        .is_err());
    assert_eq!(actions("CreateAccessKey").await, ["K1"]);
    store
        .set_access_key_status(account, &key.id, false, r("UpdateAccessKey", "K3").as_ref())
        .await
        .unwrap();
    assert!(store
        .set_access_key_status(
            account,
            "LTAInone",
            false,
            r("UpdateAccessKey", "K4").as_ref(),
        )
        .await
        .is_err());
    assert_eq!(actions("UpdateAccessKey").await, ["K3"]);
    let policy = PolicyRecord {
        account_id: account.into(),
        name: "audited".into(),
        document: r#"{"Version":"1","Statement":[]}"#.into(),
        description: String::new(),
        created_at: keyplane_core::model::now(),
        attachment_count: 0,
    };
    store
        .create_policy(&policy, r("CreatePolicy", "Q1").as_ref())
        .await
        .unwrap();
    assert!(store
        .create_policy(&policy, r("CreatePolicy", "Q2").as_ref())
        .await
        .is_err());
    assert_eq!(actions("CreatePolicy").await, ["Q1"]);
    store
        .attach_policy(
            account,
            name,
            &policy.name,
            r("AttachPolicyToUser", "Q3").as_ref(),
        )
        .await
        .unwrap();
    assert!(store
        .attach_policy(
            account,
            name,
            &policy.name,
            r("AttachPolicyToUser", "Q4").as_ref(),
        )
        .await
        .is_err());
    assert_eq!(actions("AttachPolicyToUser").await, ["Q3"]);
    // Refused while attached; then detached, deleted.
    assert!(store
        .delete_policy(account, &policy.name, r("DeletePolicy", "Q5").as_ref())
        .await
        .is_err());
    store
        .detach_policy(
            account,
            name,
            &policy.name,
            r("DetachPolicyFromUser", "Q6").as_ref(),
        )
        .await
        .unwrap();
    assert!(store
        .detach_policy(
            account,
            name,
            &policy.name,
            r("DetachPolicyFromUser", "Q7").as_ref(),
        )
        .await
        .is_err());
    assert_eq!(actions("DetachPolicyFromUser").await, ["Q6"]);
    store
        .delete_policy(account, &policy.name, r("DeletePolicy", "Q8").as_ref())
        .await
        .unwrap();
    assert_eq!(actions("DeletePolicy").await, ["Q8"]);
    // Refused while the user has an AccessKey; then the key, then the user.
    assert!(store
        .delete_user(account, name, r("DeleteUser", "X1").as_ref())
        .await
        .is_err());
    store
        .delete_access_key(account, &key.id, r("DeleteAccessKey", "X2").as_ref())
        .await
        .unwrap();
    assert!(store
        .delete_access_key(account, &key.id, r("DeleteAccessKey", "X3").as_ref())
        .await
        .is_err());
    assert_eq!(actions("DeleteAccessKey").await, ["X2"]);
    store
        .delete_user(account, name, r("DeleteUser", "X4").as_ref())
        .await
        .unwrap();
    assert_eq!(actions("DeleteUser").await, ["X4"]);
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
        injected: Vec::new(),
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

/// The retention purge deletes records older than its cutoff, oldest first and at most its limit
/// at a time, and nothing newer.
pub async fn audit_retention(store: &dyn Store) {
    let account = account(store).await;
    let now = keyplane_core::model::now();
    let at = |hours_ago: i64, request_id: &str| AuditRecord {
        at: now - chrono::Duration::hours(hours_ago),
        request_id: request_id.into(),
        ..audit_record(&account, "DeleteKeyPairs")
    };
    for r in [at(3, "old-1"), at(2, "old-2"), at(2, "old-3"), at(0, "new")] {
        store.append_audit(&r).await.unwrap();
    }
    let left = || async {
        let filter = AuditFilter {
            account_id: Some(account.clone()),
            ..Default::default()
        };
        let page = Page::After { seq: 0, limit: 100 };
        let listing = store.list_audit(&filter, page).await.unwrap();
        listing
            .items
            .into_iter()
            .map(|r| r.request_id)
            .collect::<Vec<_>>()
    };
    let cutoff = now - chrono::Duration::minutes(90);
    assert_eq!(store.purge_audit(cutoff, 1).await.unwrap(), 1);
    assert_eq!(left().await, ["old-2", "old-3", "new"]);
    assert_eq!(store.purge_audit(cutoff, 100).await.unwrap(), 2);
    assert_eq!(left().await, ["new"]);
    assert_eq!(store.purge_audit(cutoff, 100).await.unwrap(), 0);
    // The log still refuses to lose a record the purge did not name: see the backends' tests.
    store.append_audit(&at(0, "after")).await.unwrap();
    assert_eq!(left().await, ["new", "after"]);
}
