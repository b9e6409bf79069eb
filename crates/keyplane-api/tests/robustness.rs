//! No input makes the server fail: every action, fed hostile values for every parameter it reads,
//! answers with a vendor error or a success, never a 5xx.

mod common;

use common::*;
use keyplane_api::actions::names;
use keyplane_api::aliyun::ACTIONS;
use keyplane_api::volc::ACTIONS as VOLC_ACTIONS;

const NAMES: &[&str] = &[
    "RegionId",
    "KeyPairName",
    "KeyPairNames",
    "PublicKeyBody",
    "InstanceIds",
    "InstanceId",
    "InstanceId.1",
    "ImageId",
    "InstanceType",
    "ZoneId",
    "Amount",
    "PageNumber",
    "PageSize",
    "MaxResults",
    "NextToken",
    "IncludePublicKey",
    "IoOptimized",
    "Status",
    "Tag.1.Key",
    "Tag.1.Value",
    "Tag.21.Key",
    "ResourceType",
    "ResourceId.1",
    "TagKey.1",
    "All",
    "DryRun",
    "Force",
    "ForceStop",
    "Filter.1.Key",
    "Filter.1.Value",
    "KeyPairFingerPrint",
    "InstanceName",
    "AcceptLanguage",
    "OSType",
];

const VALUES: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "99999999999999999999999",
    "1e9",
    "true",
    "[",
    "[]",
    "[null]",
    "[\"\"]",
    "{\"a\":[1,{}]}",
    "*",
    "**",
    "?[",
    "\u{0}",
    "ключ",
    "🔑🔑",
    "ssh-rsa",
    "ssh-ed25519 AAAA",
    "---- BEGIN SSH2 PUBLIC KEY ----",
    "%",
    "cn-hangzhou",
    "Running",
    "keypair",
    "i-",
    "kp1.-5",
    "kp1.99999999999999999999",
];

#[tokio::test]
async fn no_parameter_value_makes_any_action_fail_with_a_server_error() {
    let app = spawn_app().await;
    app.call(
        "ImportKeyPair",
        &[
            ("RegionId", "cn-hangzhou"),
            ("KeyPairName", "seed"),
            ("PublicKeyBody", ED25519),
        ],
    )
    .await;
    let mut calls = 0;
    for action in names(ACTIONS) {
        for (i, value) in VALUES.iter().enumerate() {
            // Every parameter at once with one hostile value, and a rotating mix with a valid region.
            let all: Vec<(&str, &str)> = NAMES.iter().map(|n| (*n, *value)).collect();
            let mixed: Vec<(&str, &str)> = NAMES
                .iter()
                .enumerate()
                .map(|(j, n)| {
                    (
                        *n,
                        if *n == "RegionId" {
                            "cn-hangzhou"
                        } else {
                            VALUES[(i + j) % VALUES.len()]
                        },
                    )
                })
                .collect();
            for params in [all, mixed] {
                let r = app.call(action, &params).await;
                calls += 1;
                assert!(
                    r.status < 500,
                    "{action} {params:?} -> {} {}",
                    r.status,
                    r.text
                );
                if r.status != 200 {
                    assert!(
                        !r.code().is_empty(),
                        "{action}: an error without a Code: {}",
                        r.text
                    );
                }
            }
        }
    }
    assert!(calls > 900);
}

#[tokio::test]
async fn describe_instances_filters_by_creation_window_and_refuses_unknown_filters() {
    let app = spawn_app().await;
    app.run_instances(LINUX, 2, &[]).await;
    let r = |k: &'static str, v: &'static str| {
        [
            ("RegionId", "cn-hangzhou"),
            ("Filter.1.Key", k),
            ("Filter.1.Value", v),
        ]
    };
    let total = |resp: Resp| resp.body["TotalCount"].as_u64();
    assert_eq!(
        total(
            app.call(
                "DescribeInstances",
                &r("CreationStartTime", "2020-01-01T00:00Z")
            )
            .await
        ),
        Some(2)
    );
    assert_eq!(
        total(
            app.call(
                "DescribeInstances",
                &r("CreationEndTime", "2020-01-01T00:00Z")
            )
            .await
        ),
        Some(0)
    );
    assert_eq!(
        total(
            app.call(
                "DescribeInstances",
                &r("ExpiredStartTime", "2020-01-01T00:00Z")
            )
            .await
        ),
        Some(2)
    );
    let bad = app
        .call("DescribeInstances", &r("Colour", "2020-01-01T00:00Z"))
        .await;
    assert_eq!((bad.status, bad.code()), (404, "InvalidFilterKey.NotFound"));
    let bad = app
        .call("DescribeInstances", &r("CreationStartTime", "yesterday"))
        .await;
    assert_eq!((bad.status, bad.code()), (400, "InvalidParameter"));
    let dry = app
        .call(
            "DescribeInstances",
            &[("RegionId", "cn-hangzhou"), ("DryRun", "true")],
        )
        .await;
    assert_eq!(dry.code(), "DryRunOperation");
}

#[tokio::test]
async fn no_parameter_value_makes_any_volcengine_action_fail_with_a_server_error() {
    let app = spawn_app().await;
    app.call_volc(
        "ImportKeyPair",
        &[("KeyPairName", "seed"), ("PublicKey", ED25519)],
        "cn-beijing",
    )
    .await;
    let mut calls = 0;
    for action in names(VOLC_ACTIONS) {
        for (i, value) in VALUES.iter().enumerate() {
            let all: Vec<(&str, &str)> = NAMES.iter().map(|n| (*n, *value)).collect();
            let mixed: Vec<(&str, &str)> = NAMES
                .iter()
                .enumerate()
                .map(|(j, n)| (*n, VALUES[(i + j) % VALUES.len()]))
                .collect();
            for params in [all, mixed] {
                let r = app.call_volc(action, &params, "cn-beijing").await;
                calls += 1;
                assert!(
                    r.status < 500,
                    "{action} {params:?} -> {} {}",
                    r.status,
                    r.text
                );
                assert!(
                    r.body["ResponseMetadata"]["RequestId"].is_string(),
                    "{action}: {}",
                    r.text
                );
                if r.status != 200 {
                    assert!(
                        r.body["ResponseMetadata"]["Error"]["Code"].is_string(),
                        "{action}: {}",
                        r.text
                    );
                    assert!(r.body.get("Result").is_none());
                }
            }
        }
    }
    assert!(calls > 1000);
}
