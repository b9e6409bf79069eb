//! AttachKeyPair/DetachKeyPair through the real server: the seeds' mixed batches, the two layers of
//! errors, and a bound key pair's protection.

mod common;

use common::fleet::*;
use common::*;
use keyplane_core::binding::BindingState;

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
