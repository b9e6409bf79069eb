//! Registration tokens and the agent API against the real server: tokens expire, are listed
//! without secrets and revoked, stay in their account; agents' input is validated and bounded
//! before anything is stored (issue 13, findings 11 and 13).

mod common;

use common::{nonce, now, pairs, query_string, spawn_app, App, AK, SECRET};
use keyplane_sig::alibaba::{sign_v3, V3Call};
use keyplane_sig::SecretKey;
use serde_json::{json, Value};

/// A native API call signed as `keyplane admin` signs it; (status, body).
async fn native_as(
    app: &App,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    ak: &str,
    secret: &str,
) -> (u16, Value) {
    let query = pairs(params);
    let (date, nonce) = (now(), nonce());
    let call = V3Call {
        method,
        path,
        host: &app.host,
        action: "RegistrationToken",
        version: "v1",
        query: &query,
        body: b"",
        date: &date,
        nonce: &nonce,
    };
    let headers = sign_v3(&call, ak, &SecretKey::new(secret));
    let url = format!("{}{path}?{}", app.base, query_string(&query));
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
        req = req.header(n, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn native(app: &App, method: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    native_as(app, method, path, params, AK, SECRET).await
}

async fn create_token(app: &App, params: &[(&str, &str)]) -> (String, String) {
    let (status, body) = native(app, "POST", "/api/v1/registration-tokens", params).await;
    assert_eq!(status, 200, "{body}");
    (
        body["Token"].as_str().unwrap().to_string(),
        body["TokenId"].as_str().unwrap().to_string(),
    )
}

async fn list_tokens(app: &App) -> Vec<Value> {
    let (status, body) = native(app, "GET", "/api/v1/registration-tokens", &[]).await;
    assert_eq!(status, 200, "{body}");
    body["Tokens"].as_array().unwrap().clone()
}

async fn post_json(app: &App, path: &str, bearer: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(b) = bearer {
        req = req.header("authorization", b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn register(app: &App, body: Value) -> (u16, Value) {
    post_json(
        app,
        "/agent/v1/register",
        None,
        body.to_string().into_bytes(),
    )
    .await
}

fn host(token: &str, login_user: &str) -> Value {
    json!({"Token": token, "OsType": "linux", "OsName": "Debian GNU/Linux 12", "LoginUser": login_user, "HostName": "web-1.example.com"})
}

/// How many instances the default account has in cn-hangzhou.
async fn instance_count(app: &App) -> u64 {
    let r = app
        .call("DescribeInstances", &[("RegionId", "cn-hangzhou")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["TotalCount"].as_u64().unwrap()
}

/// The refusal of a token that never existed: every dead token must look exactly like it.
async fn unknown_token_refusal(app: &App) -> (u16, Value) {
    let (status, body) = register(app, host("kprt-never-issued", "root")).await;
    assert_eq!(status, 403, "{body}");
    (status, body)
}

#[tokio::test]
async fn a_token_is_created_with_an_id_and_an_expiry_and_listed_without_its_secret() {
    let app = spawn_app().await;
    let before = chrono::Utc::now();
    let (status, body) = native(
        &app,
        "POST",
        "/api/v1/registration-tokens",
        &[
            ("Region", "cn-hangzhou"),
            ("Zone", "cn-hangzhou-h"),
            ("Name", "rack-1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["Token"].as_str().unwrap();
    let id = body["TokenId"].as_str().unwrap();
    assert!(id.starts_with("rt-") && id.len() == 23, "{id}");
    assert!(!token.contains(&id[3..]));
    let expires = chrono::DateTime::parse_from_rfc3339(body["ExpiresAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    // The default lifetime is 24 hours from the call.
    let day = chrono::Duration::hours(24);
    assert!(
        expires >= (before + day - chrono::Duration::seconds(1))
            && expires <= chrono::Utc::now() + day
    );

    let (_, short) = native(
        &app,
        "POST",
        "/api/v1/registration-tokens",
        &[("Region", "cn-hangzhou"), ("Ttl", "90s")],
    )
    .await;
    let listed = list_tokens(&app).await;
    assert_eq!(
        listed,
        vec![
            json!({"TokenId": id, "Name": "rack-1", "ExpiresAt": body["ExpiresAt"], "Used": false}),
            json!({"TokenId": short["TokenId"], "Name": "", "ExpiresAt": short["ExpiresAt"], "Used": false}),
        ]
    );
    let text = serde_json::to_string(&listed).unwrap();
    let hash = keyplane_api::agent_api::sha256_hex(token);
    assert!(!text.contains(token) && !text.contains(&hash) && !text.contains("kprt-"));

    let (status, reg) = register(&app, host(token, "ubuntu")).await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(list_tokens(&app).await[0]["Used"], json!(true));
}

#[tokio::test]
async fn a_ttl_outside_one_minute_to_thirty_days_is_refused_and_creates_nothing() {
    let app = spawn_app().await;
    for ttl in ["59s", "0m", "31d", "1y", "8 h", "-5m", "abc"] {
        let (status, body) = native(
            &app,
            "POST",
            "/api/v1/registration-tokens",
            &[("Region", "cn-hangzhou"), ("Ttl", ttl)],
        )
        .await;
        assert_eq!(status, 400, "{ttl:?}: {body}");
        assert_eq!(body["Code"], "InvalidParameter", "{ttl:?}: {body}");
        assert!(
            body["Message"].as_str().unwrap().contains("30 days"),
            "{body}"
        );
    }
    assert!(list_tokens(&app).await.is_empty());
}

#[tokio::test]
async fn an_expired_token_is_refused_exactly_like_an_unknown_one() {
    let app = spawn_app().await;
    let token = "kprt-expired-token";
    app.store
        .create_registration_token(&keyplane_store::RegistrationToken {
            token_id: keyplane_core::ids::new_registration_token_id(),
            token_hash: keyplane_api::agent_api::sha256_hex(token),
            account_id: app.account.clone(),
            region_id: "cn-hangzhou".into(),
            zone_id: "cn-hangzhou-h".into(),
            name: "old".into(),
            expires_at: chrono::Utc::now() - chrono::Duration::seconds(1),
        })
        .await
        .unwrap();
    let unknown = unknown_token_refusal(&app).await;
    let (status, body) = register(&app, host(token, "root")).await;
    assert_eq!(
        (status, &body["Code"], &body["Message"]),
        (unknown.0, &unknown.1["Code"], &unknown.1["Message"])
    );
    assert_eq!(instance_count(&app).await, 0);
    assert_eq!(list_tokens(&app).await[0]["Used"], json!(false));
}

#[tokio::test]
async fn a_revoked_token_is_refused_exactly_like_an_unknown_one_and_leaves_the_listing() {
    let app = spawn_app().await;
    let (token, id) = create_token(&app, &[("Region", "cn-hangzhou")]).await;
    let (status, body) = native(
        &app,
        "POST",
        &format!("/api/v1/registration-tokens/{id}/revoke"),
        &[],
    )
    .await;
    assert_eq!((status, &body["TokenId"]), (200, &json!(id)), "{body}");
    assert!(list_tokens(&app).await.is_empty());
    let unknown = unknown_token_refusal(&app).await;
    let (status, body) = register(&app, host(&token, "root")).await;
    assert_eq!(
        (status, &body["Code"], &body["Message"]),
        (unknown.0, &unknown.1["Code"], &unknown.1["Message"])
    );
    assert_eq!(instance_count(&app).await, 0);
    // Revoking again, or a token that never was, is a clear error.
    for target in [id.as_str(), "rt-aaaaaaaaaaaaaaaaaaaa", "not-an-id"] {
        let (status, body) = native(
            &app,
            "POST",
            &format!("/api/v1/registration-tokens/{target}/revoke"),
            &[],
        )
        .await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (400, Some("InvalidParameter")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn another_account_neither_sees_nor_revokes_a_token() {
    let app = spawn_app().await;
    let (token, id) = create_token(&app, &[("Region", "cn-hangzhou"), ("Name", "mine")]).await;
    let (_, ak, secret) = app.other_account().await;
    let (status, body) = native_as(
        &app,
        "GET",
        "/api/v1/registration-tokens",
        &[],
        &ak,
        &secret,
    )
    .await;
    assert_eq!((status, &body["Tokens"]), (200, &json!([])), "{body}");
    let path = format!("/api/v1/registration-tokens/{id}/revoke");
    let (status, body) = native_as(&app, "POST", &path, &[], &ak, &secret).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidParameter")),
        "{body}"
    );
    assert!(!body.to_string().contains("mine"));
    // The token is untouched: it is still listed for its account and still registers.
    assert_eq!(list_tokens(&app).await.len(), 1);
    let (status, body) = register(&app, host(&token, "root")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_ram_user_needs_the_describe_and_revoke_actions() {
    let app = spawn_app().await;
    let (_, id) = create_token(&app, &[("Region", "cn-hangzhou")]).await;
    let create_only = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"keyplane:CreateRegistrationToken","Resource":"*"}]}"#;
    let (ak, secret) = app.user_key("ops", Some(create_only)).await;
    let (status, body) = native_as(
        &app,
        "GET",
        "/api/v1/registration-tokens",
        &[],
        &ak,
        &secret,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let path = format!("/api/v1/registration-tokens/{id}/revoke");
    let (status, body) = native_as(&app, "POST", &path, &[], &ak, &secret).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(list_tokens(&app).await.len(), 1);

    let hangzhou = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["keyplane:DescribeRegistrationTokens","keyplane:RevokeRegistrationToken"],"Resource":"acs:ecs:cn-hangzhou:*:instance/*"}]}"#;
    let (ak, secret) = app.user_key("hz", Some(hangzhou)).await;
    let (status, body) = native_as(
        &app,
        "GET",
        "/api/v1/registration-tokens",
        &[],
        &ak,
        &secret,
    )
    .await;
    assert_eq!(
        (status, body["Tokens"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );
    let (status, body) = native_as(&app, "POST", &path, &[], &ak, &secret).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_login_user_that_is_a_path_or_an_option_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let (token, _) = create_token(&app, &[("Region", "cn-hangzhou")]).await;
    let long = "a".repeat(33);
    for user in [
        "..",
        ".",
        "-oProxyCommand",
        "-oProxyCommand=sh",
        "root$",
        "Root",
        "a/b",
        "ünï",
        long.as_str(),
    ] {
        let (status, body) = register(&app, host(&token, user)).await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (400, Some("InvalidParameter")),
            "{user:?}: {body}"
        );
        assert!(
            body["Message"].as_str().unwrap().contains("LoginUser"),
            "{body}"
        );
    }
    let mut bad = Vec::new();
    for host_name in [
        "-oProxyCommand",
        "a..b",
        "web_1",
        "web.",
        &"a".repeat(64),
        "tab\there",
    ] {
        bad.push(json!({"Token": token, "LoginUser": "root", "HostName": host_name}));
    }
    for os_name in ["Debian\u{1b}[31m", "Ubuntu\u{202e}", &"x".repeat(256)] {
        bad.push(json!({"Token": token, "LoginUser": "root", "OsName": os_name}));
    }
    bad.push(json!({"Token": token, "LoginUser": "root", "OsType": "plan9"}));
    bad.push(json!({"Token": "k".repeat(4000), "LoginUser": "root"}));
    for body in bad {
        let (status, answer) = register(&app, body.clone()).await;
        assert_eq!(
            (status, answer["Code"].as_str()),
            (400, Some("InvalidParameter")),
            "{body}: {answer}"
        );
    }
    // Nothing was stored and the token was not spent: a valid registration still works.
    assert_eq!(instance_count(&app).await, 0);
    assert_eq!(list_tokens(&app).await[0]["Used"], json!(false));
    let (status, body) = register(&app, host(&token, "deploy_user-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(instance_count(&app).await, 1);
}

/// The binding state and error of an instance, as the native listing shows them.
async fn binding(app: &App, id: &str) -> (Value, Value) {
    let (status, body) = native(
        app,
        "GET",
        "/api/v1/instances",
        &[("RegionId", "cn-hangzhou"), ("InstanceId", id)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let i = &body["Instances"][0];
    (i["BindingState"].clone(), i["BindingError"].clone())
}

#[tokio::test]
async fn an_oversized_or_malformed_report_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let (token, _) = create_token(&app, &[("Region", "cn-hangzhou")]).await;
    let (status, reg) = register(&app, host(&token, "root")).await;
    assert_eq!(status, 200, "{reg}");
    let id = reg["InstanceId"].as_str().unwrap();
    let bearer = format!("Bearer {id}:{}", reg["Credential"].as_str().unwrap());
    let clean = binding(&app, id).await;

    // 1.5 MB: under the framework's 2 MB default, so only the agent API's own bound refuses it.
    let big = json!({"AppliedSeq": null, "Fingerprints": vec!["A".repeat(15_000); 100], "PasswordLogin": true});
    let (status, body) = post_json(
        &app,
        "/agent/v1/report",
        Some(&bearer),
        big.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (413, Some("RequestTooLarge")),
        "{body}"
    );

    let cases = [
        json!({"Fingerprints": ["SHA256:".to_string() + &"A".repeat(500)], "PasswordLogin": true}),
        json!({"Fingerprints": ["SHA256:a,SHA256:b"], "PasswordLogin": true}),
        json!({"Fingerprints": vec!["SHA256:abc"; 101], "PasswordLogin": true}),
        json!({"Fingerprints": [], "PasswordLogin": true, "Error": "e".repeat(5000)}),
    ];
    for case in cases {
        let (status, body) = post_json(
            &app,
            "/agent/v1/report",
            Some(&bearer),
            case.to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            (status, body["Code"].as_str()),
            (400, Some("InvalidParameter")),
            "{body}"
        );
    }
    let (status, body) = post_json(
        &app,
        "/agent/v1/report",
        Some(&bearer),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (400, Some("InvalidParameter")),
        "{body}"
    );
    assert_eq!(binding(&app, id).await, clean);

    // A well-formed report of a key the server did not bind is stored (drift): the refusals above
    // were not merely invisible.
    let ok = json!({"Fingerprints": ["SHA256:abc"], "PasswordLogin": true});
    let (status, body) = post_json(
        &app,
        "/agent/v1/report",
        Some(&bearer),
        ok.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(binding(&app, id).await.0, json!("drifted"));
}

#[tokio::test]
async fn an_oversized_registration_is_refused_with_a_json_error() {
    let app = spawn_app().await;
    let (token, _) = create_token(&app, &[("Region", "cn-hangzhou")]).await;
    let mut body = host(&token, "root");
    body["Padding"] = json!("x".repeat(100_000));
    let (status, answer) = register(&app, body).await;
    assert_eq!(
        (status, answer["Code"].as_str()),
        (413, Some("RequestTooLarge")),
        "{answer}"
    );
    assert_eq!(instance_count(&app).await, 0);
    assert_eq!(list_tokens(&app).await[0]["Used"], json!(false));
}

#[tokio::test]
async fn a_long_poll_ends_with_the_server_answer_before_the_request_timeout() {
    // Issue 21: a poll as long as the request timeout was cut by it, an empty 503 the agent took
    // for an outage. The server now ends the wait early enough to answer "not modified" itself.
    let app = common::spawn_with(
        keyplane_api::ServerConfig {
            request_timeout: std::time::Duration::from_secs(7),
            ..Default::default()
        },
        None,
    )
    .await;
    let (token, _) = create_token(&app, &[("Region", "cn-hangzhou")]).await;
    let (status, reg) = register(&app, host(&token, "root")).await;
    assert_eq!(status, 200, "{reg}");
    let id = reg["InstanceId"].as_str().unwrap();
    let bearer = format!("Bearer {id}:{}", reg["Credential"].as_str().unwrap());
    let url = format!("{}/agent/v1/desired", app.base);
    let first = reqwest::Client::new()
        .get(&url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let poll = reqwest::Client::new()
        .get(format!("{url}?wait=60"))
        .header("authorization", &bearer)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), 304);
}

/// The value of the series `name` (with its labels, as the exposition spells them) in a scrape.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `GET /metrics` on the metrics listener: the calls as they were answered, the agents waiting
/// in a long poll, the instances by binding state and the store's sizes.
#[tokio::test]
async fn metrics_count_calls_agents_bindings_and_the_store() {
    let app = common::spawn_app().await;
    let scrape = || async {
        let r = reqwest::get(&app.metrics_url).await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let import = [
        ("RegionId", "cn-hangzhou"),
        ("KeyPairName", "metered"),
        ("PublicKeyBody", common::ED25519),
    ];
    assert_eq!(app.call("ImportKeyPair", &import).await.status, 200);
    assert_eq!(app.call("ImportKeyPair", &import).await.status, 400);
    assert_eq!(app.call("NoSuchAction", &[]).await.status, 404);
    let (token, _) = create_token(&app, &[("Region", "cn-hangzhou")]).await;
    let (status, reg) = register(&app, host(&token, "root")).await;
    assert_eq!(status, 200, "{reg}");
    let id = reg["InstanceId"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {id}:{}", reg["Credential"].as_str().unwrap());
    let url = format!("{}/agent/v1/desired", app.base);
    let first = reqwest::Client::new()
        .get(&url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let poll = tokio::spawn(async move {
        reqwest::Client::new()
            .get(format!("{url}?wait=20"))
            .header("authorization", &bearer)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap()
            .status()
    });
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape().await;
        if series(&text, "keyplane_agents_connected") == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        series(&text, "keyplane_agents_connected"),
        Some(1.0),
        "{text}"
    );
    let calls = |action: &str, result: &str| {
        series(
            &text,
            &format!(
                "keyplane_calls_total{{dialect=\"aliyun\",action=\"{action}\",result=\"{result}\"}}"
            ),
        )
    };
    assert_eq!(calls("ImportKeyPair", "OK"), Some(1.0), "{text}");
    assert_eq!(calls("ImportKeyPair", "KeyPair.AlreadyExist"), Some(1.0));
    assert_eq!(calls("unknown", "InvalidAction.NotFound"), Some(1.0));
    let count = "keyplane_call_duration_seconds_count{dialect=\"aliyun\",action=\"ImportKeyPair\"}";
    assert_eq!(series(&text, count), Some(2.0), "{text}");
    // The registered host has no binding yet.
    assert_eq!(
        series(&text, "keyplane_bindings{state=\"none\"}"),
        Some(1.0)
    );
    assert_eq!(
        series(&text, "keyplane_bindings{state=\"applied\"}"),
        Some(0.0)
    );
    assert_eq!(
        series(&text, "keyplane_store_rows{table=\"key_pairs\"}"),
        Some(1.0)
    );
    assert_eq!(series(&text, "keyplane_store_up"), Some(1.0));
    // Group commits are SQLite's own (PostgreSQL's server commits): counted only there.
    if app.store.write_stats().is_some() {
        assert!(series(&text, "keyplane_store_commits_total").unwrap() >= 1.0);
    } else {
        assert_eq!(series(&text, "keyplane_store_commits_total"), Some(0.0));
    }
    assert!(series(&text, "process_resident_memory_bytes").unwrap() > 0.0);
    // A change ends the poll; the agent is then no longer counted.
    let attach = [
        ("RegionId", "cn-hangzhou"),
        ("KeyPairName", "metered"),
        ("InstanceIds", &format!("[\"{id}\"]")),
    ];
    assert_eq!(app.call("AttachKeyPair", &attach).await.status, 200);
    assert_eq!(poll.await.unwrap(), 200);
    let text = scrape().await;
    assert_eq!(series(&text, "keyplane_agents_connected"), Some(0.0));
    assert_eq!(
        series(&text, "keyplane_bindings{state=\"pending_restart\"}"),
        Some(1.0),
        "{text}"
    );
}
