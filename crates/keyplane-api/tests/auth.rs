//! Authentication against the real server: both signatures, clock skew, nonce replay, unknown keys,
//! and the request-level refusals that happen before any action runs.

mod common;

use common::*;

#[tokio::test]
async fn a_v3_signed_call_succeeds_and_carries_a_request_id() {
    let app = spawn_app().await;
    let r = app.call("DescribeRegions", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["RequestId"].as_str().unwrap();
    assert_eq!(id, id.to_uppercase());
    assert!(r.body.get("Code").is_none(), "no top-level Code on success");
}

#[tokio::test]
async fn a_v1_signed_call_succeeds() {
    let app = spawn_app().await;
    let r = app.call_v1("DescribeRegions", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_wrong_secret_is_signature_does_not_match_with_a_colon_in_the_message() {
    let app = spawn_app().await;
    let r = app.call_as("DescribeRegions", &[], AK, "wrong").await;
    assert_eq!((r.status, r.code()), (400, "SignatureDoesNotMatch"));
    assert!(r.body["Message"]
        .as_str()
        .unwrap()
        .contains("server string to sign is:ACS3-HMAC-SHA256\n"));
}

#[tokio::test]
async fn an_unknown_access_key_is_404() {
    let app = spawn_app().await;
    let r = app
        .call_as("DescribeRegions", &[], "LTAInobody", SECRET)
        .await;
    assert_eq!((r.status, r.code()), (404, "InvalidAccessKeyId.NotFound"));
}

#[tokio::test]
async fn a_request_without_a_signature_is_refused() {
    let app = spawn_app().await;
    let r = app.get("Action=DescribeRegions&Version=2014-05-26").await;
    assert_eq!((r.status, r.code()), (400, "MissingParameter"));
}

#[tokio::test]
async fn a_timestamp_more_than_15_minutes_off_is_expired() {
    let app = spawn_app().await;
    let old = (chrono::Utc::now() - chrono::Duration::minutes(16))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let q = app.v1_query("DescribeRegions", &[], &old, &nonce());
    let r = app.get(&q).await;
    assert_eq!((r.status, r.code()), (400, "InvalidTimeStamp.Expired"));
    let headers = app.v3_headers("DescribeRegions", &[], &old, &nonce(), AK, SECRET);
    let r = app.send_v3(&[], &headers).await;
    assert_eq!((r.status, r.code()), (400, "InvalidTimeStamp.Expired"));
}

#[tokio::test]
async fn the_same_request_replayed_is_refused_even_after_a_restart() {
    let app = spawn_app().await;
    let q = app.v1_query("DescribeRegions", &[], &now(), "fixed-nonce-1");
    assert_eq!(app.get(&q).await.status, 200);
    let r = app.get(&q).await;
    assert_eq!((r.status, r.code()), (400, "SignatureNonceUsed"));
    let headers = app.v3_headers("DescribeRegions", &[], &now(), "fixed-nonce-2", AK, SECRET);
    assert_eq!(app.send_v3(&[], &headers).await.status, 200);
    assert_eq!(
        app.send_v3(&[], &headers).await.code(),
        "SignatureNonceUsed"
    );

    let dir = app.stop().await;
    let app = spawn_with(Default::default(), Some(dir)).await;
    assert_eq!(app.get(&q).await.code(), "SignatureNonceUsed");
    // The new server listens on another port (a signed Host): re-sign with the same nonce.
    let headers = app.v3_headers("DescribeRegions", &[], &now(), "fixed-nonce-2", AK, SECRET);
    assert_eq!(
        app.send_v3(&[], &headers).await.code(),
        "SignatureNonceUsed"
    );
}

#[tokio::test]
async fn a_tampered_parameter_fails_the_signature() {
    let app = spawn_app().await;
    let q = app.v1_query(
        "DescribeZones",
        &[("RegionId", "cn-hangzhou")],
        &now(),
        &nonce(),
    );
    let r = app.get(&q.replace("cn-hangzhou", "cn-beijing")).await;
    assert_eq!(r.code(), "SignatureDoesNotMatch");
}

#[tokio::test]
async fn an_unknown_action_or_version_gets_a_vendor_error() {
    let app = spawn_app().await;
    let r = app.call("FlyToTheMoon", &[]).await;
    assert_eq!((r.status, r.code()), (404, "InvalidAction.NotFound"));
    assert!(!r.body["Message"].as_str().unwrap().contains("Did you mean"));
    // A typo names the action that was likely meant.
    let r = app.call("AttachKeypair", &[]).await;
    assert_eq!((r.status, r.code()), (404, "InvalidAction.NotFound"));
    assert!(r.body["Message"]
        .as_str()
        .unwrap()
        .ends_with("Did you mean AttachKeyPair?"));
    let q = app.v1_query(
        "DescribeRegions",
        &[("Version", "2099-01-01")],
        &now(),
        &nonce(),
    );
    let r = app.get(&q).await;
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"));
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_refused_before_anything_runs() {
    let app = spawn_app().await;
    let body = vec![b'a'; 1024 * 1024 + 1];
    let r = app
        .post_raw(
            "Action=DescribeRegions",
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
    assert_eq!((r.status, r.code()), (413, "RequestEntityTooLarge"));
}

#[tokio::test]
async fn a_parameter_that_is_not_utf8_is_refused() {
    let app = spawn_app().await;
    let r = app
        .get("Action=DescribeRegions&Version=2014-05-26&KeyPairName=%FF%FE")
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"));
    assert!(r.body["Message"].as_str().unwrap().contains("KeyPairName"));
}

#[tokio::test]
async fn format_xml_renders_success_and_errors_as_xml() {
    let app = spawn_app().await;
    let r = app.call_v1("DescribeRegions", &[("Format", "XML")]).await;
    assert_eq!(r.status, 200);
    assert!(r.text.starts_with("<?xml"), "{}", r.text);
    assert!(r.text.contains("<DescribeRegionsResponse><RequestId>"));
    assert!(r
        .text
        .contains("<Regions><Region><RegionId>cn-hangzhou</RegionId>"));
    let r = app.call_v1("DescribeZones", &[("Format", "XML")]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text.contains("<Error><RequestId>") && r.text.contains("<Code>MissingParameter</Code>")
    );
}

#[tokio::test]
async fn format_xml_renders_the_listings_written_straight_from_rows() {
    let app = spawn_app().await;
    let r = app
        .call(
            "ImportKeyPair",
            &[
                ("RegionId", "cn-hangzhou"),
                ("KeyPairName", "xml-kp"),
                ("PublicKeyBody", ED25519),
                ("Tag.1.Key", "team"),
                ("Tag.1.Value", "r&d"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids = app.run_instances(LINUX, 1, &[]).await;
    let r = app
        .call_v1(
            "DescribeKeyPairs",
            &[("RegionId", "cn-hangzhou"), ("Format", "XML")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains("<DescribeKeyPairsResponse><RequestId>")
            && r.text
                .contains("<KeyPairs><KeyPair><KeyPairName>xml-kp</KeyPairName>")
            && r.text.contains("<TotalCount>1</TotalCount>")
            && r.text.contains(
                "<Tags><Tag><TagKey>team</TagKey><TagValue>r&amp;d</TagValue></Tag></Tags>"
            ),
        "{}",
        r.text
    );
    let r = app
        .call_v1(
            "DescribeInstances",
            &[("RegionId", "cn-hangzhou"), ("Format", "XML")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains(&format!(
            "<Instances><Instance><InstanceId>{}</InstanceId>",
            ids[0]
        )) && r.text.contains("<OperationLocks></OperationLocks>"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_v1_post_with_everything_in_the_form_body_is_accepted() {
    // pop-core's POST: every parameter, the signature included, in the body; nothing in the query.
    let app = spawn_app().await;
    let all = v1_signed(
        "POST",
        "DescribeZones",
        &[("RegionId", "cn-beijing"), ("Format", "JSON")],
        &now(),
        "form-body-nonce",
    );
    let body = query_string(&all).into_bytes();
    let resp = reqwest::Client::new()
        .post(format!("{}/", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["Zones"]["Zone"][0]["ZoneId"], "cn-beijing-a");
}

#[tokio::test]
async fn a_browser_at_the_servers_address_is_sent_to_the_console_and_an_api_client_is_not() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let r = client
        .get(format!("{}/", app.base))
        .header("accept", page)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/");
    // No HTML wanted, or a query string, or a signature: the API answers with its own error.
    for (path, accept) in [
        ("/", "*/*"),
        ("/?Action=DescribeRegions", page),
        ("/?", "application/json"),
    ] {
        let r = client
            .get(format!("{}{path}", app.base))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path} {accept}");
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(body["Code"].is_string(), "{path}: {body}");
    }
    let r = client
        .get(format!("{}/", app.base))
        .header("accept", page)
        .header("authorization", "ACS3-HMAC-SHA256 Credential=x")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 303);
}

/// An action Volcengine does not have is refused as the vendor does, before its region is looked
/// at and before the throttle: never `InvalidRegion`, never throttled, never audited.
#[tokio::test]
async fn an_unknown_volcengine_action_is_refused_before_its_region_and_the_throttle() {
    let config = keyplane_api::ServerConfig {
        throttle_per_second: 1,
        throttle_burst: 1,
        ..Default::default()
    };
    let app = spawn_with(config, None).await;
    for _ in 0..3 {
        let r = app.call_volc("NoSuchAction", &[], "xx-nowhere-1").await;
        let error = &r.body["ResponseMetadata"]["Error"];
        assert_eq!(error["Code"], "InvalidActionOrVersion", "{}", r.text);
    }
    let audit = app
        .store
        .list_audit(
            &keyplane_store::AuditFilter::default(),
            keyplane_store::Page::After { seq: 0, limit: 100 },
        )
        .await
        .unwrap();
    assert!(audit.items.is_empty(), "{:?}", audit.items);
}
