//! What an emulator's controls need of a store (SPEC section 14): deleting an account with all it
//! holds, and moving a held transition's completion.

use super::*;
use keyplane_core::binding::Power;

/// An account deleted takes its key pairs, instances, tags and AccessKeys with it and leaves
/// every other account, and its own audit records, as they were.
pub async fn account_deletion(store: &dyn Store) {
    let keep = account(store).await;
    let gone_key = AccessKeyRecord {
        id: "LTAIdoomed".into(),
        account_id: ids::new_account_id(),
        user_name: None,
        secret: "secret".into(),
        active: true,
    };
    store.create_account("doomed", &gone_key).await.unwrap();
    let gone = gone_key.account_id.clone();
    for account in [&keep, &gone] {
        let mut kp = key_pair(account, "shared-name", "md5");
        kp.tags = vec![Tag {
            key: "k".into(),
            value: "v".into(),
        }];
        store.create_key_pair(&kp, 500, None).await.unwrap();
        let mut host = instance(account, InstanceStatus::Running, OsType::Linux);
        host.tags = kp.tags.clone();
        store
            .insert_instances(std::slice::from_ref(&host), None, None)
            .await
            .unwrap();
        store
            .append_audit(&audit_record(account, "ImportKeyPair"))
            .await
            .unwrap();
    }
    store.delete_account(&gone).await.unwrap();

    let names: Vec<String> = store
        .list_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, name, _)| name)
        .collect();
    assert!(!names.contains(&"doomed".to_string()), "{names:?}");
    assert!(store.access_key("LTAIdoomed").await.unwrap().is_none());
    assert!(store
        .key_pair_by_name(&gone, REGION, "shared-name")
        .await
        .unwrap()
        .is_none());
    let page = Page::After { seq: 0, limit: 100 };
    let left = |account: String| async move {
        let filter = InstanceFilter {
            account_id: account,
            region_id: REGION.into(),
            ..Default::default()
        };
        store
            .list_instances(&filter, page)
            .await
            .unwrap()
            .items
            .len()
    };
    assert_eq!(left(gone.clone()).await, 0);
    assert_eq!(
        left(keep.clone()).await,
        1,
        "the other account keeps its instance"
    );
    let kept = store
        .key_pair_by_name(&keep, REGION, "shared-name")
        .await
        .unwrap()
        .expect("the other account keeps its key pair");
    assert_eq!(kept.tags.len(), 1);
    let records = AuditFilter {
        account_id: Some(gone),
        ..Default::default()
    };
    assert_eq!(
        store.list_audit(&records, page).await.unwrap().items.len(),
        1,
        "the audit log is append-only"
    );
}

/// A transition held far in the future completes once rescheduled to now, and only the named
/// instances of the named account move.
pub async fn held_transitions(store: &dyn Store) {
    let account = account(store).await;
    let held = instance(&account, InstanceStatus::Running, OsType::Linux);
    store
        .insert_instances(std::slice::from_ref(&held), None, None)
        .await
        .unwrap();
    let never = crate::held_until();
    let now = Utc::now();
    let during = store
        .power(&account, &held.id, Power::Reboot, Some(never), None)
        .await
        .unwrap();
    assert_eq!(during.status, InstanceStatus::Rebooting);
    assert_eq!(store.complete_transitions(now).await.unwrap(), 0);
    let ids = [held.id.clone()];
    assert_eq!(
        store
            .reschedule_transitions("another", &ids, now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .reschedule_transitions(&account, &ids, now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.complete_transitions(now).await.unwrap(), 1);
    let after = store.instance(&account, &held.id).await.unwrap().unwrap();
    assert_eq!(after.status, InstanceStatus::Running);
    assert_eq!(
        store
            .reschedule_transitions(&account, &ids, now)
            .await
            .unwrap(),
        0,
        "nothing left to move"
    );
}
