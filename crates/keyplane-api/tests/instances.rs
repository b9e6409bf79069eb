//! Simulated instances through the real server: the status model, transitions, listings, launch
//! checks, and the binding applied at the next boot surviving a restart.

mod common;

use common::fleet::*;
use common::*;
use keyplane_core::binding::BindingState;

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
