//! RAM users, AccessKeys, login profiles and policies.

use super::*;

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
    store
        .create_user(&user("alice", &account), None)
        .await
        .unwrap();
    assert_eq!(
        store.create_user(&user("alice", &account), None).await,
        Err(CoreError::UserAlreadyExists("alice".into()))
    );
    store
        .create_user(&user("alice", &other.account_id), None)
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
        .create_access_key(&key("LTAIa1", Some("alice")), 2, None)
        .await
        .unwrap();
    store
        .create_access_key(&key("LTAIa2", Some("alice")), 2, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .create_access_key(&key("LTAIa3", Some("alice")), 2, None)
            .await,
        Err(CoreError::AccessKeyLimit(2))
    );
    assert_eq!(
        store
            .create_access_key(&key("LTAIb1", Some("bob")), 2, None)
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
        .set_access_key_status(&account, "LTAIa1", false, None)
        .await
        .unwrap();
    assert!(!store.access_key("LTAIa1").await.unwrap().unwrap().active);
    assert_eq!(
        store
            .set_access_key_status(&other.account_id, "LTAIa1", true, None)
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
    store.create_policy(&policy, None).await.unwrap();
    assert_eq!(
        store.create_policy(&policy, None).await,
        Err(CoreError::PolicyAlreadyExists("kp-only".into()))
    );
    store
        .attach_policy(&account, "alice", "kp-only", None)
        .await
        .unwrap();
    assert_eq!(
        store
            .attach_policy(&account, "alice", "kp-only", None)
            .await,
        Err(CoreError::PolicyAlreadyAttached("kp-only".into()))
    );
    assert_eq!(
        store.attach_policy(&account, "alice", "nope", None).await,
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
        store.delete_policy(&account, "kp-only", None).await,
        Err(CoreError::PolicyInUse("kp-only".into()))
    );
    assert_eq!(
        store.delete_user(&account, "alice", None).await,
        Err(CoreError::UserHasAccessKeys("alice".into()))
    );
    assert!(store.access_key("LTAIa2").await.unwrap().is_some());
    store
        .delete_access_key(&account, "LTAIa1", None)
        .await
        .unwrap();
    store
        .delete_access_key(&account, "LTAIa2", None)
        .await
        .unwrap();
    assert_eq!(store.access_key("LTAIa1").await.unwrap(), None);
    assert_eq!(
        store.access_key("LTAIa2").await.unwrap(),
        None,
        "a deleted key is gone at once"
    );
    assert_eq!(
        store.delete_user(&account, "alice", None).await,
        Err(CoreError::UserHasPolicies("alice".into()))
    );
    store
        .detach_policy(&account, "alice", "kp-only", None)
        .await
        .unwrap();
    assert_eq!(
        store
            .detach_policy(&account, "alice", "kp-only", None)
            .await,
        Err(CoreError::PolicyNotAttached("kp-only".into()))
    );
    store
        .set_login_profile(&account, "alice", "$argon2id$hash", None)
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
    assert!(store
        .delete_login_profile(&account, "alice", None)
        .await
        .unwrap());
    assert!(!store
        .delete_login_profile(&account, "alice", None)
        .await
        .unwrap());
    assert!(store
        .login_profile(&account, "alice")
        .await
        .unwrap()
        .is_none());
    store
        .set_login_profile(&account, "alice", "$argon2id$hash", None)
        .await
        .unwrap();
    store.delete_user(&account, "alice", None).await.unwrap();
    // The user's console password goes with the user: a new user of that name has none.
    store
        .create_user(&user("alice", &account), None)
        .await
        .unwrap();
    assert!(store
        .login_profile(&account, "alice")
        .await
        .unwrap()
        .is_none());
    store.delete_user(&account, "alice", None).await.unwrap();
    store
        .delete_policy(&account, "kp-only", None)
        .await
        .unwrap();
    assert!(store.user(&account, "alice").await.unwrap().is_none());
    assert!(store
        .user(&other.account_id, "alice")
        .await
        .unwrap()
        .is_some());
}
