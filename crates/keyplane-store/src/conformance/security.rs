//! Replay protection, ClientTokens and registration tokens.

use super::*;

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
    // Expired at claim time too, without a purge (an emulator's clock moved on): a day later the
    // token runs again, with other parameters if they changed, and is then remembered with those.
    let resp = StoredResponse {
        status: 200,
        content_type: "application/json".into(),
        body: b"{}".to_vec(),
    };
    store
        .finish_token("acct", "aliyun:AttachKeyPair", "t1", &resp)
        .await
        .unwrap();
    let day_later = now + chrono::Duration::hours(crate::CLIENT_TOKEN_HOURS);
    let claim_at = |hash: &'static str, at: chrono::DateTime<Utc>| {
        store.claim_token("acct", "aliyun:AttachKeyPair", "t1", hash, at, stale)
    };
    assert_eq!(
        claim_at("h2", day_later - chrono::Duration::seconds(1))
            .await
            .unwrap(),
        TokenClaim::Done(resp.clone()),
        "remembered for a day"
    );
    assert_eq!(
        claim_at("h3", day_later).await.unwrap(),
        TokenClaim::Claimed
    );
    assert_eq!(
        claim_at("h3", day_later).await.unwrap(),
        TokenClaim::Processing
    );
    assert_eq!(
        claim_at("h2", day_later).await.unwrap(),
        TokenClaim::Mismatch
    );
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
