//! Key pairs through the real server: create, import, describe, tag, delete, and the bad input that
//! must get a vendor error and change nothing.

mod common;

use common::*;
use serde_json::Value;

const R: (&str, &str) = ("RegionId", "cn-hangzhou");

async fn count(app: &App) -> u64 {
    app.call("DescribeKeyPairs", &[R]).await.body["TotalCount"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn import_then_describe_returns_the_md5_fingerprint_and_the_key() {
    let app = spawn_app().await;
    let r = app
        .call(
            "ImportKeyPair",
            &[R, ("KeyPairName", "my.kp"), ("PublicKeyBody", ED25519)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["KeyPairFingerPrint"], ED25519_MD5);
    let r = app
        .call(
            "DescribeKeyPairs",
            &[R, ("KeyPairName", "my.kp"), ("IncludePublicKey", "True")],
        )
        .await;
    let kp = &r.body["KeyPairs"]["KeyPair"][0];
    assert_eq!(kp["PublicKey"], ED25519);
    assert_eq!(kp["KeyPairFingerPrint"], ED25519_MD5);
    assert!(kp["CreationTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.body["TotalCount"], 1);
    let r = app
        .call("DescribeKeyPairs", &[R, ("KeyPairName", "my.kp")])
        .await;
    assert!(r.body["KeyPairs"]["KeyPair"][0].get("PublicKey").is_none());
}

#[tokio::test]
async fn create_returns_a_private_key_once_and_never_stores_it() {
    let app = spawn_app().await;
    let r = app
        .call("CreateKeyPair", &[R, ("KeyPairName", "made")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["PrivateKeyBody"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(r.body["KeyPairId"].as_str().unwrap().starts_with("kp-"));
    let again = app
        .call("CreateKeyPair", &[R, ("KeyPairName", "made")])
        .await;
    assert_eq!((again.status, again.code()), (400, "KeyPair.AlreadyExist"));
    let d = app
        .call("DescribeKeyPairs", &[R, ("IncludePublicKey", "true")])
        .await;
    assert!(!d.text.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn wildcards_fingerprints_paging_and_tags_filter_the_list() {
    let app = spawn_app().await;
    for name in ["web-a", "web-b", "db-a"] {
        let r = app
            .call(
                "CreateKeyPair",
                &[
                    R,
                    ("KeyPairName", name),
                    ("Tag.1.Key", "tier"),
                    ("Tag.1.Value", name),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let names = |r: &Resp| -> Vec<String> {
        r.body["KeyPairs"]["KeyPair"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["KeyPairName"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(
            &app.call("DescribeKeyPairs", &[R, ("KeyPairName", "web*")])
                .await
        ),
        ["web-a", "web-b"]
    );
    assert_eq!(
        names(
            &app.call("DescribeKeyPairs", &[R, ("KeyPairName", "*-a")])
                .await
        ),
        ["web-a", "db-a"]
    );
    assert_eq!(
        names(
            &app.call("DescribeKeyPairs", &[R, ("KeyPairName", "d*")])
                .await
        ),
        ["db-a"]
    );
    let p = app
        .call(
            "DescribeKeyPairs",
            &[R, ("PageSize", "2"), ("PageNumber", "2")],
        )
        .await;
    assert_eq!(
        (p.body["TotalCount"].as_u64(), names(&p)),
        (Some(3), vec!["db-a".to_string()])
    );
    let t = app
        .call(
            "DescribeKeyPairs",
            &[R, ("Tag.1.Key", "tier"), ("Tag.1.Value", "db-a")],
        )
        .await;
    assert_eq!(names(&t), ["db-a"]);
    assert_eq!(
        t.body["KeyPairs"]["KeyPair"][0]["Tags"]["Tag"][0]["TagKey"],
        "tier"
    );
    let fp = t.body["KeyPairs"]["KeyPair"][0]["KeyPairFingerPrint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        names(
            &app.call("DescribeKeyPairs", &[R, ("KeyPairFingerPrint", &fp)])
                .await
        ),
        ["db-a"]
    );
    let bare = fp.replace(':', "");
    assert_eq!(
        names(
            &app.call("DescribeKeyPairs", &[R, ("KeyPairFingerPrint", &bare)])
                .await
        ),
        ["db-a"]
    );
    let r = app.call("DescribeKeyPairs", &[R, ("PageSize", "51")]).await;
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"));
    let r = app
        .call("DescribeKeyPairs", &[R, ("PageNumber", "0")])
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"));
}

#[tokio::test]
async fn tag_and_untag_resources_change_the_tags_of_key_pairs() {
    let app = spawn_app().await;
    app.call(
        "ImportKeyPair",
        &[R, ("KeyPairName", "tagged"), ("PublicKeyBody", ED25519)],
    )
    .await;
    let r = app
        .call(
            "TagResources",
            &[
                R,
                ("ResourceType", "keypair"),
                ("ResourceId.1", "tagged"),
                ("Tag.1.Key", "env"),
                ("Tag.1.Value", "prod"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = app
        .call(
            "DescribeKeyPairs",
            &[R, ("Tag.1.Key", "env"), ("Tag.1.Value", "prod")],
        )
        .await;
    assert_eq!(d.body["TotalCount"], 1);
    let r = app
        .call(
            "UntagResources",
            &[
                R,
                ("ResourceType", "keypair"),
                ("ResourceId.1", "tagged"),
                ("TagKey.1", "env"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = app
        .call(
            "DescribeKeyPairs",
            &[R, ("Tag.1.Key", "env"), ("Tag.1.Value", "prod")],
        )
        .await;
    assert_eq!(d.body["TotalCount"], 0);
    let r = app
        .call(
            "TagResources",
            &[
                R,
                ("ResourceType", "keypair"),
                ("ResourceId.1", "nope"),
                ("Tag.1.Key", "env"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .call(
            "TagResources",
            &[
                R,
                ("ResourceType", "keypair"),
                ("ResourceId.1", "tagged"),
                ("Tag.1.Key", "aliyun:x"),
            ],
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidTag.Malformed"));
}

#[tokio::test]
async fn delete_key_pairs_takes_a_json_array_of_at_most_100_names() {
    let app = spawn_app().await;
    app.call(
        "ImportKeyPair",
        &[R, ("KeyPairName", "gone"), ("PublicKeyBody", ED25519)],
    )
    .await;
    for bad in ["gone", "[]", "[1]", "{\"a\":1}"] {
        let r = app
            .call("DeleteKeyPairs", &[R, ("KeyPairNames", bad)])
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "InvalidKeyPairNames.ValueNotSupported"),
            "{bad}"
        );
    }
    let many: Vec<String> = (0..101).map(|i| format!("kp{i}")).collect();
    let r = app
        .call(
            "DeleteKeyPairs",
            &[R, ("KeyPairNames", &serde_json::to_string(&many).unwrap())],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(count(&app).await, 1, "nothing changed");
    let r = app
        .call("DeleteKeyPairs", &[R, ("KeyPairNames", "[\"gone\"]")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn bad_key_pair_requests_get_the_vendor_error_and_change_nothing() {
    let app = spawn_app().await;
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("KeyPairName", "ok-name".into())], "MissingParameter"),
        (
            vec![
                ("KeyPairName", "".into()),
                ("PublicKeyBody", ED25519.into()),
            ],
            "MissingParameter",
        ),
        (
            vec![
                ("KeyPairName", "1bad".into()),
                ("PublicKeyBody", ED25519.into()),
            ],
            "InvalidKeyPairName.Malformed",
        ),
        (
            vec![
                ("KeyPairName", "x".into()),
                ("PublicKeyBody", ED25519.into()),
            ],
            "InvalidKeyPairName.Malformed",
        ),
        (
            vec![
                ("KeyPairName", "http://x".into()),
                ("PublicKeyBody", ED25519.into()),
            ],
            "InvalidKeyPairName.Malformed",
        ),
        (
            vec![
                ("KeyPairName", "opts".into()),
                ("PublicKeyBody", format!("command=\"rm -rf /\" {ED25519}")),
            ],
            "InvalidPublicKeyBody.Malformed",
        ),
        (
            vec![
                ("KeyPairName", "two".into()),
                ("PublicKeyBody", format!("{ED25519}\n{ED25519}")),
            ],
            "InvalidPublicKeyBody.Malformed",
        ),
        (
            vec![
                ("KeyPairName", "ctl".into()),
                ("PublicKeyBody", ED25519.replace("test", "te\u{1b}st")),
            ],
            "InvalidPublicKeyBody.Malformed",
        ),
        (
            vec![
                ("KeyPairName", "b64".into()),
                ("PublicKeyBody", "ssh-ed25519 AAAA!!!!".into()),
            ],
            "InvalidPublicKeyBody.Malformed",
        ),
    ];
    for (extra, code) in cases {
        let mut params: Vec<(&str, &str)> = vec![R];
        params.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let r = app.call("ImportKeyPair", &params).await;
        assert_eq!((r.status, r.code()), (400, code), "{params:?}: {}", r.text);
    }
    let r = app
        .call(
            "ImportKeyPair",
            &[
                ("RegionId", "mars-1"),
                ("KeyPairName", "kp"),
                ("PublicKeyBody", ED25519),
            ],
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "InvalidRegionId.NotFound"));
    assert_eq!(count(&app).await, 0, "nothing was created");
}

#[tokio::test]
async fn the_quota_is_500_key_pairs_per_region() {
    let app = spawn_app().await;
    for i in 0..500 {
        let kp = keyplane_store::conformance::key_pair(&app.account, &format!("kp{i}"), "x");
        app.store.create_key_pair(&kp, 500, None).await.unwrap();
    }
    let r = app
        .call(
            "ImportKeyPair",
            &[R, ("KeyPairName", "one-more"), ("PublicKeyBody", ED25519)],
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "QuotaExceed.KeyPair"));
    let r = app
        .call(
            "ImportKeyPair",
            &[
                ("RegionId", "cn-beijing"),
                ("KeyPairName", "one-more"),
                ("PublicKeyBody", ED25519),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "another region has its own quota");
}

#[tokio::test]
async fn responses_use_the_vendor_types() {
    let app = spawn_app().await;
    app.call(
        "ImportKeyPair",
        &[R, ("KeyPairName", "typed"), ("PublicKeyBody", ED25519)],
    )
    .await;
    let r = app.call("DescribeKeyPairs", &[R]).await;
    assert!(matches!(r.body["TotalCount"], Value::Number(_)));
    assert!(matches!(r.body["PageSize"], Value::Number(_)));
}

/// The audit records whose RequestId is `id`.
async fn records_of(app: &App, id: &str) -> Vec<keyplane_store::AuditRecord> {
    let all = app
        .store
        .list_audit(
            &keyplane_store::AuditFilter::default(),
            keyplane_store::Page::After {
                seq: 0,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    all.items
        .into_iter()
        .filter(|r| r.request_id == id)
        .collect()
}

/// Writes that commit their audit record in their own transaction still write exactly one record a
/// call, in both dialects: `OK` when the change is made, the vendor code when it is refused.
#[tokio::test]
async fn every_write_leaves_exactly_one_audit_record_with_its_result() {
    let app = spawn_app().await;
    let alibaba_id = |r: &Resp| r.body["RequestId"].as_str().unwrap().to_string();
    let volc_id = |r: &Resp| {
        r.body["ResponseMetadata"]["RequestId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let import = [R, ("KeyPairName", "audited"), ("PublicKeyBody", ED25519)];
    let calls = [
        (app.call("ImportKeyPair", &import).await, "OK"),
        (
            app.call("ImportKeyPair", &import).await,
            "KeyPair.AlreadyExist",
        ),
        (
            app.call(
                "RunInstances",
                &[
                    R,
                    ("ImageId", LINUX),
                    ("InstanceType", "ecs.g7.large"),
                    ("Amount", "1"),
                ],
            )
            .await,
            "OK",
        ),
        (
            app.call("DeleteKeyPairs", &[R, ("KeyPairNames", "[\"audited\"]")])
                .await,
            "OK",
        ),
    ];
    for (r, result) in &calls {
        let records = records_of(&app, &alibaba_id(r)).await;
        assert_eq!(records.len(), 1, "{}: {records:?}", r.text);
        assert_eq!(records[0].result, *result, "{}", r.text);
    }
    // The writes that commit their record with their change through the other store calls.
    app.call("ImportKeyPair", &import).await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let kp_id = app.call("DescribeKeyPairs", &[R]).await.body["KeyPairs"]["KeyPair"][0]
        ["KeyPairId"]
        .as_str()
        .unwrap()
        .to_string();
    let instance = [("InstanceId", id.as_str())];
    let tag = [
        R,
        ("ResourceType", "keypair"),
        ("ResourceId.1", kp_id.as_str()),
        ("Tag.1.Key", "team"),
        ("Tag.1.Value", "a"),
    ];
    let calls = [
        (app.call("TagResources", &tag).await, "OK"),
        (app.call("StopInstance", &instance).await, "OK"),
        (
            app.call("StopInstance", &instance).await,
            "IncorrectInstanceStatus",
        ),
        (
            app.call(
                "ModifyInstanceAttribute",
                &[("InstanceId", id.as_str()), ("InstanceName", "renamed")],
            )
            .await,
            "OK",
        ),
        (app.call("DeleteInstance", &instance).await, "OK"),
    ];
    for (r, result) in &calls {
        let records = records_of(&app, &alibaba_id(r)).await;
        assert_eq!(records.len(), 1, "{}: {records:?}", r.text);
        assert_eq!(records[0].result, *result, "{}", r.text);
    }
    let volc_import = [("KeyPairName", "audited-v"), ("PublicKey", ED25519)];
    let calls = [
        (
            app.call_volc("ImportKeyPair", &volc_import, "cn-beijing")
                .await,
            "OK",
        ),
        (
            app.call_volc("ImportKeyPair", &volc_import, "cn-beijing")
                .await,
            "InvalidKeyPairName.Duplicate",
        ),
        (
            app.call_volc(
                "DeleteKeyPair",
                &[("KeyPairName", "audited-v")],
                "cn-beijing",
            )
            .await,
            "OK",
        ),
    ];
    for (r, result) in &calls {
        let records = records_of(&app, &volc_id(r)).await;
        assert_eq!(records.len(), 1, "{}: {records:?}", r.text);
        assert_eq!(records[0].result, *result, "{}", r.text);
    }
}
