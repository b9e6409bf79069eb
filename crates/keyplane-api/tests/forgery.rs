//! What is signed is what runs (SPEC section 6): a forging client that holds no secret takes a
//! victim's correctly signed request and changes what it does without touching what is signed —
//! headers a V1 signature does not cover, the path, the body's content type, the unsigned headers
//! of a V3 call that signs too little, another principal's ClientToken. Each attack must fail and
//! change nothing.

mod common;

use common::*;
use keyplane_sig::alibaba::{sign_v3, V3Call};
use keyplane_sig::SecretKey;

async fn root_access_keys(app: &App) -> usize {
    app.store
        .list_access_keys(&app.account, None)
        .await
        .unwrap()
        .len()
}

async fn send(
    app: &App,
    method: reqwest::Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, format!("{}{path_and_query}", app.base));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_signed_v1_read_cannot_be_turned_into_create_access_key_by_headers() {
    let app = spawn_app().await;
    let keys = root_access_keys(&app).await;
    let q = app.v1_query("DescribeRegions", &[], &now(), &nonce());
    let resp = send(
        &app,
        reqwest::Method::GET,
        &format!("/?{q}"),
        &[
            ("x-acs-version", "2015-05-01"),
            ("x-acs-action", "CreateAccessKey"),
        ],
    )
    .await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    // The call runs as signed: DescribeRegions.
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"Regions\""), "{text}");
    assert!(!text.contains("AccessKeySecret"), "{text}");
    assert_eq!(root_access_keys(&app).await, keys);
}

#[tokio::test]
async fn a_signed_v1_stop_cannot_be_turned_into_delete_by_a_header() {
    let app = spawn_app().await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let q = app.v1_query("StopInstance", &[("InstanceId", &id)], &now(), &nonce());
    let resp = send(
        &app,
        reqwest::Method::GET,
        &format!("/?{q}"),
        &[("x-acs-action", "DeleteInstance")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let r = app
        .call(
            "DescribeInstances",
            &[
                ("RegionId", "cn-hangzhou"),
                ("InstanceIds", &format!("[\"{id}\"]")),
            ],
        )
        .await;
    assert_eq!(r.body["TotalCount"], 1, "{}", r.text);
    assert_eq!(r.body["Instances"]["Instance"][0]["Status"], "Stopped");
}

#[tokio::test]
async fn a_signed_v1_query_is_refused_on_any_other_path() {
    let app = spawn_app().await;
    let accounts = app.store.list_accounts().await.unwrap().len();
    let q = app.v1_query("DescribeRegions", &[("Name", "evil")], &now(), &nonce());
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/accounts"),
        (reqwest::Method::GET, "/api/v1/audit"),
        (reqwest::Method::POST, "/api/v1/registration-tokens"),
    ] {
        let resp = send(&app, method, &format!("{path}?{q}"), &[]).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("IncompleteSignature"), "{path}: {text}");
    }
    assert_eq!(app.store.list_accounts().await.unwrap().len(), accounts);
}

#[tokio::test]
async fn a_v3_signature_made_for_the_vendor_path_is_refused_on_the_native_api() {
    let app = spawn_app().await;
    let accounts = app.store.list_accounts().await.unwrap().len();
    let query = pairs(&[("Name", "evil")]);
    let headers = app.v3_headers("DescribeRegions", &query, &now(), &nonce(), AK, SECRET);
    let mut req = reqwest::Client::new().post(format!(
        "{}/api/v1/accounts?{}",
        app.base,
        query_string(&query)
    ));
    for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
        req = req.header(n, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("SignatureDoesNotMatch"));
    assert_eq!(app.store.list_accounts().await.unwrap().len(), accounts);
}

#[tokio::test]
async fn a_v3_call_that_does_not_sign_its_action_is_refused_before_anything_runs() {
    let app = spawn_app().await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let query = pairs(&[("InstanceId", &id)]);
    let mut headers = app.v3_headers("StopInstance", &query, &now(), &nonce(), AK, SECRET);
    // A client that signed only `host` (the old verifier accepted it): the action is then free.
    let (date, n) = (now(), nonce());
    let body_hash = keyplane_sig::alibaba::EMPTY_SHA256;
    let canonical = keyplane_sig::alibaba::v3_canonical_request(
        "POST",
        "/",
        &query,
        &[("host", app.host.as_str())],
        body_hash,
    );
    let sig = keyplane_sig::alibaba::v3_signature(
        &SecretKey::new(SECRET),
        &keyplane_sig::alibaba::v3_string_to_sign(&canonical),
    );
    headers = vec![
        ("x-acs-action".into(), "DeleteInstance".into()),
        ("x-acs-version".into(), "2014-05-26".into()),
        ("x-acs-date".into(), date),
        ("x-acs-signature-nonce".into(), n),
        ("x-acs-content-sha256".into(), body_hash.into()),
        (
            "authorization".into(),
            format!("ACS3-HMAC-SHA256 Credential={AK},SignedHeaders=host,Signature={sig}"),
        ),
    ]
    .into_iter()
    .chain(headers.into_iter().filter(|(n, _)| n == "host"))
    .collect();
    let r = app.send_v3(&query, &headers).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "IncompleteSignature"),
        "{}",
        r.text
    );
    let r = app
        .call(
            "DescribeInstances",
            &[
                ("RegionId", "cn-hangzhou"),
                ("InstanceIds", &format!("[\"{id}\"]")),
            ],
        )
        .await;
    assert_eq!(r.body["Instances"]["Instance"][0]["Status"], "Running");
}

#[tokio::test]
async fn a_signed_form_body_cannot_be_dropped_by_changing_its_content_type() {
    // A V3 call signs its body's hash, not its Content-Type: relabelled, the same bytes would
    // otherwise be ignored and the call run without its parameters.
    let app = spawn_app().await;
    let body = b"RegionId=cn-hangzhou&KeyPairName=form-kp".to_vec();
    let call = V3Call {
        method: "POST",
        path: "/",
        host: &app.host,
        action: "CreateKeyPair",
        version: "2014-05-26",
        query: &[],
        body: &body,
        date: &now(),
        nonce: &nonce(),
    };
    let headers = sign_v3(&call, AK, &SecretKey::new(SECRET));
    let mut req = reqwest::Client::new()
        .post(format!("{}/", app.base))
        .header("content-type", "application/json")
        .body(body.clone());
    for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
        req = req.header(n, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 415);
    assert!(resp.text().await.unwrap().contains("UnsupportedMediaType"));
    let r = app
        .call("DescribeKeyPairs", &[("RegionId", "cn-hangzhou")])
        .await;
    assert_eq!(r.body["TotalCount"], 0, "{}", r.text);
}

#[tokio::test]
async fn a_ram_user_cannot_replay_roots_client_token_to_get_roots_answer() {
    let app = spawn_app().await;
    let id = app.run_instances(LINUX, 1, &[]).await.remove(0);
    let token = "root-stop-token-1";
    let r = app
        .call(
            "StopInstance",
            &[("InstanceId", &id), ("ClientToken", token)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Allowed to try StopInstance, but on no instance of this account.
    let policy = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:StopInstance","Resource":"acs:ecs:*:*:instance/i-none"}]}"#;
    let (ak, secret) = app.user_key("mallory", Some(policy)).await;
    let r = app
        .call_as(
            "StopInstance",
            &[("InstanceId", &id), ("ClientToken", token)],
            &ak,
            &secret,
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "Forbidden.RAM"), "{}", r.text);
    // And the same on Volcengine.
    let r = app
        .call_volc(
            "StartInstance",
            &[("InstanceId", &id), ("ClientToken", "root-volc-1")],
            "cn-hangzhou",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .call_volc_as(
            "StartInstance",
            &[("InstanceId", &id), ("ClientToken", "root-volc-1")],
            "cn-hangzhou",
            &ak,
            &secret,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}
