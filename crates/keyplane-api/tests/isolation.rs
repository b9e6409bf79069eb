//! Nobody acts where they don't belong: a RAM user without policies reaches no action of either
//! dialect (Describe calls answer with nothing), and another account's key cannot see, change or
//! learn of this account's resources, in each dialect and each action.

mod common;

use common::*;
use keyplane_api::actions::names;
use keyplane_api::{aliyun, volc};

/// Plausible Alibaba parameters for every action, naming this account's real resources.
fn params<'a>(kp: &'a str, inst: &'a str, ids_json: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("KeyPairNames", "[\"fleet\"]"),
        ("PublicKeyBody", ED25519),
        ("InstanceIds", ids_json),
        ("InstanceId.1", inst),
        ("Tag.1.Key", "k"),
        ("TagKey.1", "k"),
        ("ResourceType", "keypair"),
        ("ResourceId.1", kp),
    ];
    p.extend(common_params(kp, inst));
    p
}

/// The same for the Volcengine dialect's spellings.
fn volc_params<'a>(kp: &'a str, inst: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("KeyPairNames.1", kp),
        ("PublicKey", ED25519),
        ("InstanceIds.1", inst),
        ("Count", "1"),
    ];
    p.extend(common_params(kp, inst));
    p
}

fn common_params<'a>(kp: &'a str, inst: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("RegionId", "cn-hangzhou"),
        ("KeyPairName", kp),
        ("InstanceId", inst),
        ("ImageId", LINUX),
        ("InstanceType", "ecs.g7.large"),
        ("InstanceTypeId", "ecs.g7.large"),
        ("Description", "desc"),
        ("Force", "true"),
    ]
}

async fn snapshot(app: &App) -> (u64, u64, String) {
    let kps = app
        .call("DescribeKeyPairs", &[("RegionId", "cn-hangzhou")])
        .await;
    let inst = app
        .call("DescribeInstances", &[("RegionId", "cn-hangzhou")])
        .await;
    let state = app
        .store
        .instance(
            &app.account,
            inst.body["Instances"]["Instance"][0]["InstanceId"]
                .as_str()
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    (
        kps.body["TotalCount"].as_u64().unwrap(),
        inst.body["TotalCount"].as_u64().unwrap(),
        format!("{:?}{:?}", state.status, state.binding),
    )
}

async fn world(app: &App) -> (String, String) {
    app.call(
        "ImportKeyPair",
        &[
            ("RegionId", "cn-hangzhou"),
            ("KeyPairName", "fleet"),
            ("PublicKeyBody", ED25519),
        ],
    )
    .await;
    let ids = app.run_instances(LINUX, 1, &[]).await;
    ("fleet".into(), ids[0].clone())
}

fn empty_listing(body: &serde_json::Value) -> bool {
    // Every list in the answer is empty, in either envelope.
    fn lists_empty(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(m) => m.values().all(lists_empty),
            _ => true,
        }
    }
    lists_empty(body)
}

#[tokio::test]
async fn a_user_without_policies_reaches_no_action_of_either_dialect() {
    let app = spawn_app().await;
    let (kp, inst) = world(&app).await;
    let ids = format!("[\"{inst}\"]");
    let (ak, sk) = app.user_key("nobody", None).await;
    let before = snapshot(&app).await;
    for action in names(aliyun::ACTIONS) {
        let r = app
            .call_as(action, &params(&kp, &inst, &ids), &ak, &sk)
            .await;
        if action.starts_with("Describe") {
            assert_eq!(r.status, 200, "{action}: {}", r.text);
            assert!(
                empty_listing(&r.body),
                "{action} showed something: {}",
                r.text
            );
        } else {
            assert_eq!(
                (r.status, r.code()),
                (403, "Forbidden.RAM"),
                "{action}: {}",
                r.text
            );
        }
    }
    for action in names(volc::ACTIONS) {
        let r = app
            .call_volc_as(action, &volc_params(&kp, &inst), "cn-hangzhou", &ak, &sk)
            .await;
        if action.starts_with("Describe") {
            assert_eq!(r.status, 200, "{action}: {}", r.text);
            assert!(
                empty_listing(&r.body["Result"]),
                "{action} showed something: {}",
                r.text
            );
        } else {
            assert_eq!(r.status, 403, "{action}: {}", r.text);
            assert_eq!(
                r.body["ResponseMetadata"]["Error"]["Code"], "AccessDenied",
                "{action}"
            );
        }
    }
    assert_eq!(snapshot(&app).await, before, "nothing changed");
    let denied = app
        .store
        .list_audit(
            &keyplane_store::AuditFilter {
                principal: Some("user/nobody".into()),
                ..Default::default()
            },
            keyplane_store::Page::After {
                seq: 0,
                limit: 1000,
            },
        )
        .await
        .unwrap();
    let non_describe = names(aliyun::ACTIONS)
        .into_iter()
        .chain(names(volc::ACTIONS))
        .filter(|a| !a.starts_with("Describe"))
        .count();
    assert_eq!(
        denied.total as usize, non_describe,
        "every denied call is in the audit log"
    );
}

#[tokio::test]
async fn another_accounts_key_cannot_see_or_touch_this_accounts_resources() {
    let app = spawn_app().await;
    let (kp, inst) = world(&app).await;
    let ids = format!("[\"{inst}\"]");
    let (_other, ak, sk) = app.other_account().await;
    // Give the other account a key pair of the same name, so requests get past the key pair lookup.
    app.call_as(
        "ImportKeyPair",
        &[
            ("RegionId", "cn-hangzhou"),
            ("KeyPairName", "fleet"),
            ("PublicKeyBody", ED25519),
        ],
        &ak,
        &sk,
    )
    .await;
    let before = snapshot(&app).await;
    let own = [
        ("RegionId", "cn-hangzhou"),
        ("KeyPairName", "fleet"),
        ("PublicKeyBody", ED25519),
    ];
    for action in names(aliyun::ACTIONS) {
        // The other account's own DeleteKeyPairs removes its own "fleet": bring it back each time.
        app.call_as("ImportKeyPair", &own, &ak, &sk).await;
        let r = app
            .call_as(action, &params(&kp, &inst, &ids), &ak, &sk)
            .await;
        assert!(
            !r.text.contains(&inst) || matches!(action, "AttachKeyPair" | "DetachKeyPair"),
            "{action} leaked: {}",
            r.text
        );
        if matches!(action, "AttachKeyPair" | "DetachKeyPair") {
            assert_eq!(
                r.body["Results"]["Result"][0]["Code"], "InvalidInstanceId.NotFound",
                "{action}: {}",
                r.text
            );
        }
        if matches!(
            action,
            "StartInstance"
                | "StopInstance"
                | "RebootInstance"
                | "DeleteInstance"
                | "ModifyInstanceAttribute"
        ) {
            assert_eq!(
                (r.status, r.code()),
                (404, "InvalidInstanceId.NotFound"),
                "{action}"
            );
        }
    }
    for action in names(volc::ACTIONS) {
        app.call_as("ImportKeyPair", &own, &ak, &sk).await;
        let r = app
            .call_volc_as(action, &volc_params(&kp, &inst), "cn-hangzhou", &ak, &sk)
            .await;
        if matches!(
            action,
            "AttachKeyPair"
                | "DetachKeyPair"
                | "StartInstances"
                | "StopInstances"
                | "RebootInstances"
        ) {
            assert_eq!(
                r.body["Result"]["OperationDetails"][0]["Error"]["Code"],
                "InvalidInstance.NotFound",
                "{action}: {}",
                r.text
            );
        } else if matches!(
            action,
            "StartInstance"
                | "StopInstance"
                | "RebootInstance"
                | "DeleteInstance"
                | "ModifyInstanceAttribute"
        ) {
            assert_eq!(
                r.body["ResponseMetadata"]["Error"]["Code"], "InvalidInstance.NotFound",
                "{action}"
            );
        } else if action.starts_with("Describe") {
            assert!(!r.text.contains(&inst), "{action} leaked: {}", r.text);
        }
    }
    assert_eq!(
        snapshot(&app).await,
        before,
        "nothing of this account changed"
    );
    let mine = app
        .call("DescribeKeyPairs", &[("RegionId", "cn-hangzhou")])
        .await;
    assert_eq!(
        mine.body["TotalCount"], 1,
        "the other account's same-named key pair is its own"
    );
}

#[tokio::test]
async fn sql_metacharacters_and_unicode_in_names_are_data() {
    let app = spawn_app().await;
    for name in [
        "kp'; DROP TABLE key_pairs; --",
        "kp\" OR 1=1",
        "ключ-пара",
        "kp%_*?[",
        "🔑",
    ] {
        let r = app
            .call(
                "DescribeKeyPairs",
                &[("RegionId", "cn-hangzhou"), ("KeyPairName", name)],
            )
            .await;
        assert_eq!(
            (r.status, r.body["TotalCount"].as_u64()),
            (200, Some(0)),
            "{name}"
        );
        let r = app
            .call(
                "ImportKeyPair",
                &[
                    ("RegionId", "cn-hangzhou"),
                    ("KeyPairName", name),
                    ("PublicKeyBody", ED25519),
                ],
            )
            .await;
        assert!(r.status == 400 || r.status == 200, "{name}: {}", r.text);
    }
    let r = app
        .call(
            "ImportKeyPair",
            &[
                ("RegionId", "cn-hangzhou"),
                ("KeyPairName", "ключ-пара"),
                ("PublicKeyBody", ED25519),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "a second import of the same name");
    let all = app
        .call(
            "DescribeKeyPairs",
            &[("RegionId", "cn-hangzhou"), ("PageSize", "50")],
        )
        .await;
    assert_eq!(
        all.body["KeyPairs"]["KeyPair"][0]["KeyPairName"],
        "ключ-пара"
    );
}
