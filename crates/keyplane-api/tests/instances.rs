//! Simulated instances and AttachKeyPair/DetachKeyPair through the real server: the seeds' mixed
//! batches, the two layers of errors, the status model, and the binding applied at the next boot.

mod common;

use common::*;
use keyplane_core::binding::BindingState;

const R: (&str, &str) = ("RegionId", "cn-hangzhou");

/// Parameters, expected HTTP status, expected vendor code.
type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);

async fn with_key(app: &App) {
    let r = app
        .call(
            "ImportKeyPair",
            &[R, ("KeyPairName", "fleet"), ("PublicKeyBody", ED25519)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn ids_json(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap()
}

async fn state(app: &App, id: &str) -> BindingState {
    app.store
        .instance(&app.account, id)
        .await
        .unwrap()
        .unwrap()
        .binding
        .state
}

#[tokio::test]
async fn a_mixed_batch_succeeds_where_it_can_and_reports_each_failure() {
    let app = spawn_app().await;
    with_key(&app).await;
    let running = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let stopped = app.run_instances(LINUX, 1, &[]).await.remove(0);
    assert_eq!(
        app.call("StopInstance", &[("InstanceId", &stopped)])
            .await
            .status,
        200
    );
    let windows = app.run_instances(WINDOWS, 1, &[]).await.remove(0);
    let legacy = app
        .run_instances(LINUX, 1, &[("IoOptimized", "none")])
        .await
        .remove(0);
    let no_agent = app.run_instances(NO_AGENT, 1, &[]).await.remove(0);
    let ids = [
        running.as_str(),
        stopped.as_str(),
        windows.as_str(),
        legacy.as_str(),
        no_agent.as_str(),
        "i-doesnotexist00000000",
    ];
    let r = app
        .call(
            "AttachKeyPair",
            &[
                R,
                ("KeyPairName", "fleet"),
                ("InstanceIds", &ids_json(&ids)),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["TotalCount"], "6");
    assert_eq!(r.body["FailCount"], "4");
    assert_eq!(r.body["KeyPairName"], "fleet");
    let results = r.body["Results"]["Result"].as_array().unwrap();
    let codes: Vec<&str> = results
        .iter()
        .map(|x| x["Code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "200",
            "200",
            "DependencyViolation.WindowsInstance",
            "DependencyViolation.IoOptimize",
            "InvalidResetAuthenticationAgent.NotFound",
            "InvalidInstanceId.NotFound"
        ]
    );
    assert_eq!(results[0]["Success"], "true");
    assert_eq!(results[0]["Message"], "successful");
    assert_eq!(results[2]["Success"], "false");

    assert_eq!(state(&app, &running).await, BindingState::PendingRestart);
    assert_eq!(state(&app, &windows).await, BindingState::None);
    let d = app
        .call("DescribeInstances", &[R, ("KeyPairName", "fleet")])
        .await;
    assert_eq!(d.body["TotalCount"], 2);

    // The key takes effect at the next reboot (Running) or start (Stopped).
    assert_eq!(
        app.call("RebootInstance", &[("InstanceId", &running)])
            .await
            .status,
        200
    );
    assert_eq!(state(&app, &running).await, BindingState::Applied);
    assert_eq!(state(&app, &stopped).await, BindingState::PendingRestart);
    assert_eq!(
        app.call("StartInstance", &[("InstanceId", &stopped)])
            .await
            .status,
        200
    );
    assert_eq!(state(&app, &stopped).await, BindingState::Applied);
    let inst = app
        .store
        .instance(&app.account, &running)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !inst.binding.effective_password_login,
        "password login is off with a key bound"
    );
}

#[tokio::test]
async fn attach_replaces_and_detach_turns_password_login_back_on() {
    let app = spawn_app().await;
    with_key(&app).await;
    app.call("CreateKeyPair", &[R, ("KeyPairName", "second")])
        .await;
    let id = app
        .run_instances(LINUX, 1, &[("KeyPairName", "fleet")])
        .await
        .remove(0);
    assert_eq!(
        state(&app, &id).await,
        BindingState::Applied,
        "bound at creation"
    );
    let r = app
        .call(
            "AttachKeyPair",
            &[
                R,
                ("KeyPairName", "second"),
                ("InstanceIds", &ids_json(&[&id])),
            ],
        )
        .await;
    assert_eq!(r.body["FailCount"], "0");
    let d = app
        .call(
            "DescribeInstances",
            &[R, ("InstanceIds", &ids_json(&[&id]))],
        )
        .await;
    assert_eq!(d.body["Instances"]["Instance"][0]["KeyPairName"], "second");
    let r = app
        .call(
            "DetachKeyPair",
            &[
                R,
                ("KeyPairName", "second"),
                ("InstanceIds", &ids_json(&[&id])),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["FailCount"], "0");
    let d = app
        .call(
            "DescribeInstances",
            &[R, ("InstanceIds", &ids_json(&[&id]))],
        )
        .await;
    assert_eq!(
        d.body["Instances"]["Instance"][0]["KeyPairName"], "",
        "KeyPairName is always present"
    );
    app.call("RebootInstance", &[("InstanceId", &id)]).await;
    let inst = app
        .store
        .instance(&app.account, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(inst.binding.effective_password_login);
    assert_eq!(inst.binding.state, BindingState::None);
}

#[tokio::test]
async fn request_level_errors_fail_the_whole_call_and_change_nothing() {
    let app = spawn_app().await;
    with_key(&app).await;
    let ids = app.run_instances(LINUX, 2, &[]).await;
    let one = ids_json(&[&ids[0]]);
    let fifty_one: Vec<String> = (0..51).map(|i| format!("i-{i:020}")).collect();
    let mut fifty_with_dupe: Vec<String> = (0..49).map(|i| format!("i-{i:020}")).collect();
    fifty_with_dupe.push(ids[0].clone());
    fifty_with_dupe.push(ids[0].clone());
    let cases: Vec<Case> = vec![
        (
            vec![("KeyPairName", "fleet"), ("InstanceIds", &one)],
            400,
            "MissingParameter",
        ),
        (vec![R, ("InstanceIds", &one)], 400, "MissingParameter"),
        (vec![R, ("KeyPairName", "fleet")], 400, "MissingParameter"),
        (
            vec![R, ("KeyPairName", "fleet"), ("InstanceIds", "")],
            400,
            "MissingParameter",
        ),
        (
            vec![R, ("KeyPairName", "fleet"), ("InstanceIds", "i-abc")],
            400,
            "InvalidInstanceIds.ValueNotSupported",
        ),
        (
            vec![R, ("KeyPairName", "fleet"), ("InstanceIds", "{\"a\":1}")],
            400,
            "InvalidInstanceIds.ValueNotSupported",
        ),
        (
            vec![R, ("KeyPairName", "fleet"), ("InstanceIds", "[1,2]")],
            400,
            "InvalidInstanceIds.ValueNotSupported",
        ),
        (
            vec![R, ("KeyPairName", "fleet"), ("InstanceIds", "[]")],
            400,
            "InvalidInstanceIds.ValueNotSupported",
        ),
        (
            vec![
                ("RegionId", "mars-1"),
                ("KeyPairName", "fleet"),
                ("InstanceIds", &one),
            ],
            404,
            "InvalidRegionId.NotFound",
        ),
        (
            vec![R, ("KeyPairName", "nope"), ("InstanceIds", &one)],
            400,
            "InvalidKeyPairName.NotFound",
        ),
    ];
    let big = serde_json::to_string(&fifty_one).unwrap();
    for (params, status, code) in cases.iter().chain(
        [(
            vec![R, ("KeyPairName", "fleet"), ("InstanceIds", big.as_str())],
            403,
            "InstanceKeyPairLimitExceeded",
        )]
        .iter(),
    ) {
        for action in ["AttachKeyPair", "DetachKeyPair"] {
            let r = app.call(action, params).await;
            assert_eq!(
                (r.status, r.code()),
                (*status, *code),
                "{action} {params:?}: {}",
                r.text
            );
        }
    }
    for id in &ids {
        assert_eq!(state(&app, id).await, BindingState::None, "nothing changed");
    }
    // An ID given twice counts once: 50 distinct IDs are allowed.
    let r = app
        .call(
            "AttachKeyPair",
            &[
                R,
                ("KeyPairName", "fleet"),
                (
                    "InstanceIds",
                    &serde_json::to_string(&fifty_with_dupe).unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["TotalCount"], "50");
}

#[tokio::test]
async fn a_bound_key_pair_cannot_be_deleted() {
    let app = spawn_app().await;
    with_key(&app).await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    app.call(
        "AttachKeyPair",
        &[
            R,
            ("KeyPairName", "fleet"),
            ("InstanceIds", &ids_json(&[&id])),
        ],
    )
    .await;
    let r = app
        .call("DeleteKeyPairs", &[R, ("KeyPairNames", "[\"fleet\"]")])
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "InvalidParameter.KeypairAlreadyAttachedInstance")
    );
    app.call("RebootInstance", &[("InstanceId", &id)]).await;
    app.call(
        "DetachKeyPair",
        &[
            R,
            ("KeyPairName", "fleet"),
            ("InstanceIds", &ids_json(&[&id])),
        ],
    )
    .await;
    // Unbound but not yet rebooted: the host still has the key, so it is still in use.
    let r = app
        .call("DeleteKeyPairs", &[R, ("KeyPairNames", "[\"fleet\"]")])
        .await;
    assert_eq!(r.status, 400);
    app.call("RebootInstance", &[("InstanceId", &id)]).await;
    let r = app
        .call("DeleteKeyPairs", &[R, ("KeyPairNames", "[\"fleet\"]")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn the_status_model_refuses_transitions_it_does_not_allow() {
    let app = spawn_app().await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let r = app.call("StartInstance", &[("InstanceId", &id)]).await;
    assert_eq!((r.status, r.code()), (403, "IncorrectInstanceStatus"));
    let r = app.call("DeleteInstance", &[("InstanceId", &id)]).await;
    assert_eq!((r.status, r.code()), (403, "IncorrectInstanceStatus"));
    assert_eq!(
        app.call("StopInstance", &[("InstanceId", &id)])
            .await
            .status,
        200
    );
    let r = app.call("RebootInstance", &[("InstanceId", &id)]).await;
    assert_eq!((r.status, r.code()), (403, "IncorrectInstanceStatus"));
    let s = app
        .call("DescribeInstanceStatus", &[R, ("InstanceId.1", &id)])
        .await;
    assert_eq!(
        s.body["InstanceStatuses"]["InstanceStatus"][0]["Status"],
        "Stopped"
    );
    assert_eq!(
        app.call("DeleteInstance", &[("InstanceId", &id)])
            .await
            .status,
        200
    );
    let r = app.call("StopInstance", &[("InstanceId", &id)]).await;
    assert_eq!((r.status, r.code()), (404, "InvalidInstanceId.NotFound"));
}

#[tokio::test]
async fn a_transition_delay_shows_the_transitional_statuses() {
    let config = keyplane_api::ServerConfig {
        transition_delay: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let app = spawn_with(config, None).await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let status = |r: Resp| {
        r.body["Instances"]["Instance"][0]["Status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let q = [R, ("InstanceIds", &*ids_json(&[&id]))];
    assert_eq!(status(app.call("DescribeInstances", &q).await), "Pending");
    let r = app.call("StopInstance", &[("InstanceId", &id)]).await;
    assert_eq!(r.code(), "IncorrectInstanceStatus", "not while Pending");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(status(app.call("DescribeInstances", &q).await), "Running");
    app.call("StopInstance", &[("InstanceId", &id)]).await;
    assert_eq!(status(app.call("DescribeInstances", &q).await), "Stopping");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(status(app.call("DescribeInstances", &q).await), "Stopped");
}

#[tokio::test]
async fn describe_instances_filters_and_pages_both_ways() {
    let app = spawn_app().await;
    let ids = app
        .run_instances(
            LINUX,
            25,
            &[
                ("InstanceName", "web"),
                ("Tag.1.Key", "env"),
                ("Tag.1.Value", "prod"),
            ],
        )
        .await;
    app.run_instances(
        WINDOWS,
        2,
        &[("InstanceName", "win"), ("ZoneId", "cn-hangzhou-i")],
    )
    .await;
    let total = |r: &Resp| r.body["TotalCount"].as_u64().unwrap();
    assert_eq!(total(&app.call("DescribeInstances", &[R]).await), 27);
    assert_eq!(
        total(
            &app.call("DescribeInstances", &[R, ("InstanceName", "w*")])
                .await
        ),
        27
    );
    assert_eq!(
        total(
            &app.call("DescribeInstances", &[R, ("InstanceName", "win")])
                .await
        ),
        2
    );
    assert_eq!(
        total(
            &app.call("DescribeInstances", &[R, ("ZoneId", "cn-hangzhou-i")])
                .await
        ),
        2
    );
    assert_eq!(
        total(
            &app.call(
                "DescribeInstances",
                &[R, ("Tag.1.Key", "env"), ("Tag.1.Value", "prod")]
            )
            .await
        ),
        25
    );
    assert_eq!(
        total(
            &app.call("DescribeInstances", &[R, ("Status", "Running")])
                .await
        ),
        27
    );
    assert_eq!(
        total(
            &app.call("DescribeInstances", &[R, ("InstanceIds", "[]")])
                .await
        ),
        0
    );
    let r = app
        .call("DescribeInstances", &[R, ("Status", "Flying")])
        .await;
    assert_eq!((r.status, r.code()), (404, "InvalidStatus.NotFound"));
    let p = app
        .call("DescribeInstances", &[R, ("PageSize", "100")])
        .await;
    assert_eq!(
        p.body["Instances"]["Instance"].as_array().unwrap().len(),
        27
    );
    // NextToken paging visits every instance once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let mut params = vec![R, ("MaxResults", "10")];
        if !token.is_empty() {
            params.push(("NextToken", &token));
        }
        let r = app.call("DescribeInstances", &params).await;
        for i in r.body["Instances"]["Instance"].as_array().unwrap() {
            seen.push(i["InstanceId"].as_str().unwrap().to_string());
        }
        token = r.body["NextToken"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 27);
    assert_eq!(&seen[..25], &ids[..]);
    let r = app
        .call("DescribeInstances", &[R, ("NextToken", "garbage")])
        .await;
    assert_eq!(r.status, 400);
    let other_region = app
        .call("DescribeInstances", &[("RegionId", "cn-beijing")])
        .await;
    assert_eq!(total(&other_region), 0);
}

#[tokio::test]
async fn run_instances_checks_its_input() {
    let app = spawn_app().await;
    let base = [R, ("InstanceType", "ecs.g7.large")];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("ImageId", "nope")], "InvalidImageId.NotFound"),
        (
            vec![("ImageId", LINUX), ("ZoneId", "cn-beijing-a")],
            "InvalidZoneId.NotFound",
        ),
        (
            vec![("ImageId", LINUX), ("Amount", "101")],
            "InvalidParameter",
        ),
        (
            vec![("ImageId", LINUX), ("Amount", "0")],
            "InvalidParameter",
        ),
        (
            vec![("ImageId", LINUX), ("KeyPairName", "nope")],
            "InvalidKeyPairName.NotFound",
        ),
        (
            vec![("ImageId", LINUX), ("IoOptimized", "maybe")],
            "InvalidParameter",
        ),
        (
            vec![("ImageId", LINUX), ("DryRun", "true")],
            "DryRunOperation",
        ),
        (vec![], "MissingParameter"),
    ];
    for (extra, code) in cases {
        let mut params = base.to_vec();
        params.extend(extra);
        let r = app.call("RunInstances", &params).await;
        assert_eq!(r.code(), code, "{params:?}");
    }
    let d = app.call("DescribeInstances", &[R]).await;
    assert_eq!(d.body["TotalCount"], 0, "nothing was created");
}

#[tokio::test]
async fn a_restart_of_the_server_loses_nothing() {
    let app = spawn_app().await;
    with_key(&app).await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    app.call(
        "AttachKeyPair",
        &[
            R,
            ("KeyPairName", "fleet"),
            ("InstanceIds", &ids_json(&[&id])),
        ],
    )
    .await;
    let dir = app.stop().await;
    let app = spawn_with(Default::default(), Some(dir)).await;
    assert_eq!(state(&app, &id).await, BindingState::PendingRestart);
    let d = app
        .call("DescribeInstances", &[R, ("KeyPairName", "fleet")])
        .await;
    assert_eq!(d.body["TotalCount"], 1);
    app.call("RebootInstance", &[("InstanceId", &id)]).await;
    assert_eq!(state(&app, &id).await, BindingState::Applied);
}
