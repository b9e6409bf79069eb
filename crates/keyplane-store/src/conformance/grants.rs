//! Grants and revoked key pairs (SPEC section 15).

use super::*;
use crate::GrantFilter;
use keyplane_core::grant::{Grant, GrantState};

fn grant(account: &str, inst: &Instance, kp: &KeyPair, user: &str, immediate: bool) -> Grant {
    Grant {
        id: format!("g-{}", ids::new_key_pair_id()),
        account_id: account.into(),
        region_id: REGION.into(),
        instance_id: inst.id.clone(),
        key_pair_id: kp.id.clone(),
        key_pair_name: kp.name.clone(),
        public_key: String::new(),
        os_user: user.into(),
        expires_at: None,
        immediate,
        apply_seq: 0,
        created_at: Utc::now(),
        revoked_at: None,
        result: String::new(),
        error: None,
    }
}

/// Grants are listed with their key pair and instance; a revoked key pair takes its grants with
/// it and cannot be granted again until unrevoked; an agent's results are kept per grant.
pub async fn grants(store: &dyn Store) {
    let account = account(store).await;
    let kp = key_pair(&account, "granted", "md5");
    store.create_key_pair(&kp, 500, None).await.unwrap();
    let mut host = instance(&account, InstanceStatus::Running, OsType::Linux);
    host.provider = keyplane_core::model::Provider::Host;
    store
        .insert_instances(std::slice::from_ref(&host), None, None)
        .await
        .unwrap();
    let (deploy, ops) = (
        grant(&account, &host, &kp, "deploy", true),
        grant(&account, &host, &kp, "ops", false),
    );
    store
        .create_grants(
            &[deploy.clone(), ops.clone()],
            Some(&audit_record(&account, "GrantAccess")),
        )
        .await
        .unwrap();
    let filter = GrantFilter {
        account_id: account.clone(),
        instance_id: Some(host.id.clone()),
        ..Default::default()
    };
    let listed = store.list_grants(&filter).await.unwrap();
    assert_eq!(listed.len(), 2);
    let (g, now) = listed.iter().find(|(g, _)| g.os_user == "deploy").unwrap();
    assert_eq!(
        (g.key_pair_name.as_str(), g.public_key.as_str()),
        ("granted", kp.public_key.as_str())
    );
    assert!(!now.simulated);
    assert_eq!(
        g.state(now, Utc::now()),
        GrantState::PendingRestart,
        "not reported yet"
    );
    store
        .record_grant_results(
            &host.id,
            &[
                (deploy.id.clone(), None),
                (ops.id.clone(), Some("no such user".into())),
            ],
        )
        .await
        .unwrap();
    let listed = store.list_grants(&filter).await.unwrap();
    let state = |user: &str| {
        let (g, now) = listed.iter().find(|(g, _)| g.os_user == user).unwrap();
        g.state(now, Utc::now())
    };
    assert_eq!(state("deploy"), GrantState::Applied);
    assert_eq!(
        state("ops"),
        GrantState::PendingRestart,
        "not in effect before a restart"
    );
    // Another account sees none of them.
    let other = GrantFilter {
        account_id: "another".into(),
        ..Default::default()
    };
    assert!(store.list_grants(&other).await.unwrap().is_empty());
    assert!(matches!(
        store
            .revoke_grant("another", &deploy.id, Utc::now(), None)
            .await,
        Err(CoreError::GrantNotFound(_))
    ));
    assert_eq!(
        store
            .revoke_grant(&account, &deploy.id, Utc::now(), None)
            .await
            .unwrap(),
        host.id
    );
    // Revoking the key pair ends the rest and blocks new grants until it is lifted.
    let on = store.revoke_key_pair(&kp, Utc::now(), None).await.unwrap();
    assert_eq!(on, vec![host.id.clone()]);
    assert!(store.key_pair_revoked(&account, &kp.id).await.unwrap());
    assert_eq!(
        store.revoked_keys(&account).await.unwrap(),
        vec![kp.public_key.clone()]
    );
    let again = store
        .create_grants(&[grant(&account, &host, &kp, "deploy", true)], None)
        .await;
    assert!(
        matches!(again, Err(CoreError::KeyPairRevoked(_))),
        "{again:?}"
    );
    let listed = store.list_grants(&filter).await.unwrap();
    assert!(listed
        .iter()
        .all(|(g, now)| g.state(now, Utc::now()) == GrantState::Revoked));
    assert!(store
        .unrevoke_key_pair(&account, &kp.id, None)
        .await
        .unwrap());
    assert!(!store
        .unrevoke_key_pair(&account, &kp.id, None)
        .await
        .unwrap());
    assert!(store.revoked_keys(&account).await.unwrap().is_empty());
    store
        .create_grants(&[grant(&account, &host, &kp, "deploy", true)], None)
        .await
        .unwrap();
    // A deadline passed is marked once, for the audit log.
    let mut short = grant(&account, &host, &kp, "deploy", true);
    short.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
    store
        .create_grants(std::slice::from_ref(&short), None)
        .await
        .unwrap();
    let expired = store.expire_grants(Utc::now()).await.unwrap();
    assert_eq!(
        expired.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        [short.id.as_str()]
    );
    assert!(store.expire_grants(Utc::now()).await.unwrap().is_empty());
    store
        .record_grant_results(&host.id, &[(short.id.clone(), None)])
        .await
        .unwrap();
    assert!(
        store.expire_grants(Utc::now()).await.unwrap().is_empty(),
        "a late report does not undo it"
    );
}
