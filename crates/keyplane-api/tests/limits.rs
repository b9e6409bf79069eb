//! Issue 13: list caps are enforced before any per-item work, and NextTokens are opaque, bound to
//! the caller, and refused when forged or moved to another account. Issue 16: what the server
//! keeps is bounded in time too (ClientTokens, the audit log's retention).

mod common;

use common::*;
use keyplane_sig::SecretKey;

const R: (&str, &str) = ("RegionId", "cn-hangzhou");
/// Distinct IDs in one hostile list: close to the 1 MiB body limit once form-encoded.
const HUGE: usize = 50_000;
/// The same for Volcengine's `Name.N=value` pairs, which take more bytes each.
const HUGE_VOLC: usize = 35_000;

/// A V1-signed POST with every parameter in the form body, as pop-core sends it.
async fn aliyun_form(app: &App, action: &str, params: &[(&str, &str)]) -> Resp {
    let mut params = params.to_vec();
    params.push(("Format", "JSON"));
    let all = common::v1_signed("POST", action, &params, &now(), &nonce());
    app.post_raw(
        "",
        "application/x-www-form-urlencoded",
        query_string(&all).into_bytes(),
    )
    .await
}

/// A Volcengine-signed POST whose parameters are in the form body (Action and Version in the URL).
async fn volc_form(app: &App, action: &str, form: &[(String, String)]) -> Resp {
    let query = pairs(&[("Action", action), ("Version", "2020-04-01")]);
    let body = query_string(form).into_bytes();
    let x_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let call = keyplane_sig::volc::Call {
        method: "POST",
        host: &app.host,
        query: &query,
        body: &body,
        x_date: &x_date,
        region: "cn-beijing",
        service: "ecs",
    };
    let headers = keyplane_sig::volc::sign(&call, AK, &SecretKey::new(SECRET));
    let mut req = reqwest::Client::new()
        .post(format!("{}/?{}", app.base, query_string(&query)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (n, v) in &headers {
        req = req.header(n, v);
    }
    App::read(req.send().await.unwrap()).await
}

/// `["p-0", "p-1", …]` with `n` distinct values and, after them, an element that is not a string:
/// a parser that reads the whole list before counting answers "malformed", one that stops at the
/// cap answers "too many".
fn json_list_with_bad_tail(prefix: &str, n: usize) -> String {
    let mut s = String::from("[");
    for i in 0..n {
        s.push_str(&format!("\"{prefix}-{i}\","));
    }
    s.push_str("1]");
    s
}

#[tokio::test]
async fn a_huge_alibaba_json_list_is_refused_at_its_cap() {
    let app = spawn_app().await;
    let ids = json_list_with_bad_tail("i", HUGE);
    for action in ["AttachKeyPair", "DetachKeyPair"] {
        let r = aliyun_form(
            &app,
            action,
            &[R, ("KeyPairName", "k"), ("InstanceIds", &ids)],
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (403, "InstanceKeyPairLimitExceeded"),
            "{action}: {}",
            r.text
        );
    }
    let r = aliyun_form(&app, "DescribeInstances", &[R, ("InstanceIds", &ids)]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.code(), "InstanceKeyPairLimitExceeded");
    let names = json_list_with_bad_tail("k", HUGE);
    let r = aliyun_form(&app, "DeleteKeyPairs", &[R, ("KeyPairNames", &names)]).await;
    assert_eq!(
        (r.status, r.code()),
        (403, "InstanceKeyPairLimitExceeded"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_huge_volcengine_list_is_refused_at_its_cap() {
    let app = spawn_app().await;
    let list = |name: &str, extra: &[(&str, &str)]| {
        let mut form: Vec<(String, String)> = (1..=HUGE_VOLC)
            .map(|i| (format!("{name}.{i}"), format!("v-{i}")))
            .collect();
        // Not a Volcengine list entry: reading this far would answer "malformed".
        form.push((format!("{name}.x"), "bad".into()));
        form.extend(pairs(extra));
        form
    };
    for (action, name, extra, code) in [
        (
            "DescribeInstances",
            "InstanceIds",
            &[][..],
            "LimitExceeded.MaximumInstanceIds",
        ),
        (
            "AttachKeyPair",
            "InstanceIds",
            &[("KeyPairName", "k")][..],
            "LimitExceeded.MaximumInstanceIds",
        ),
        (
            "DescribeKeyPairs",
            "KeyPairNames",
            &[][..],
            "LimitExceeded.MaximumKeyPairNames",
        ),
        (
            "DeleteKeyPairs",
            "KeyPairNames",
            &[][..],
            "LimitExceeded.MaximumKeyPairNames",
        ),
    ] {
        let r = volc_form(&app, action, &list(name, extra)).await;
        assert_eq!(
            r.body["ResponseMetadata"]["Error"]["Code"],
            code,
            "{action}: {}",
            &r.text[..r.text.len().min(400)]
        );
    }
}

/// A distinct, valid Ed25519 public key for `i`.
fn ed_key(i: u8) -> String {
    use base64::Engine as _;
    let mut blob = Vec::new();
    for f in [&b"ssh-ed25519"[..], &[i; 32][..]] {
        blob.extend_from_slice(&(f.len() as u32).to_be_bytes());
        blob.extend_from_slice(f);
    }
    format!(
        "ssh-ed25519 {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// A V3-signed call of the native API (`GET /api/v1/…`), as `keyplane admin` sends it.
async fn native_get(
    app: &App,
    path: &str,
    params: &[(&str, &str)],
    ak: &str,
    secret: &str,
) -> Resp {
    let query = pairs(params);
    let (date, nonce) = (now(), nonce());
    let call = keyplane_sig::alibaba::V3Call {
        method: "GET",
        path,
        host: &app.host,
        action: "DescribeAuditRecords",
        version: "v1",
        query: &query,
        body: b"",
        date: &date,
        nonce: &nonce,
    };
    let headers = keyplane_sig::alibaba::sign_v3(&call, ak, &SecretKey::new(secret));
    let mut req =
        reqwest::Client::new().get(format!("{}{path}?{}", app.base, query_string(&query)));
    for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
        req = req.header(n, v);
    }
    App::read(req.send().await.unwrap()).await
}

fn volc_code(r: &Resp) -> &str {
    r.body["ResponseMetadata"]["Error"]["Code"]
        .as_str()
        .unwrap_or("")
}

/// The same token with one character changed (still valid base64url).
fn edited(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    b[20] = if b[20] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

#[tokio::test]
async fn next_tokens_are_opaque_and_refused_for_another_account_or_when_edited() {
    let app = spawn_app().await;
    const VR: &str = "cn-beijing";
    for i in 0..3u8 {
        let key = ed_key(i + 1);
        let name = format!("k{i}");
        let r = app
            .call_volc(
                "ImportKeyPair",
                &[("KeyPairName", &name), ("PublicKey", &key)],
                VR,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Paging walks every key pair exactly once, with tokens that are not sequence numbers.
    let (mut seen, mut token, mut tokens) = (Vec::new(), String::new(), Vec::new());
    loop {
        let r = app
            .call_volc(
                "DescribeKeyPairs",
                &[("MaxResults", "1"), ("NextToken", &token)],
                VR,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        for kp in r.body["Result"]["KeyPairs"].as_array().unwrap() {
            seen.push(kp["KeyPairName"].as_str().unwrap().to_string());
        }
        token = r.body["Result"]["NextToken"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
        assert!(token.parse::<i64>().is_err() && !token.starts_with("kp1."));
        tokens.push(token.clone());
    }
    seen.sort();
    assert_eq!(seen, ["k0", "k1", "k2"]);
    let token = tokens[0].clone();

    let (_, other_ak, other_secret) = app.other_account().await;
    let volc_describe = |t: String, ak: String, secret: String| {
        let app = &app;
        async move {
            app.call_volc_as(
                "DescribeKeyPairs",
                &[("MaxResults", "1"), ("NextToken", &t)],
                VR,
                &ak,
                &secret,
            )
            .await
        }
    };
    let r = volc_describe(token.clone(), other_ak.clone(), other_secret.clone()).await;
    assert_eq!(
        (r.status, volc_code(&r)),
        (400, "InvalidNextToken.Malformed"),
        "another account's token"
    );
    for bad in [edited(&token), "kp1.1".to_string(), "1".to_string()] {
        let r = volc_describe(bad.clone(), AK.into(), SECRET.into()).await;
        assert_eq!(
            (r.status, volc_code(&r)),
            (400, "InvalidNextToken.Malformed"),
            "{bad}"
        );
    }
    // A token of one listing is not one of another.
    let r = app
        .call_volc("DescribeInstances", &[("NextToken", &token)], VR)
        .await;
    assert_eq!(volc_code(&r), "InvalidNextToken.Malformed");

    // Alibaba DescribeInstances (MaxResults is at least 10): the same rules.
    let ids = app.run_instances(LINUX, 12, &[]).await;
    assert_eq!(ids.len(), 12);
    let r = app
        .call("DescribeInstances", &[R, ("MaxResults", "10")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ali_token = r.body["NextToken"].as_str().unwrap().to_string();
    assert!(!ali_token.is_empty() && !ali_token.starts_with("kp1."));
    let r = app
        .call(
            "DescribeInstances",
            &[R, ("MaxResults", "10"), ("NextToken", &ali_token)],
        )
        .await;
    assert_eq!(r.body["Instances"]["Instance"].as_array().unwrap().len(), 2);
    for (t, ak, secret) in [
        (ali_token.clone(), other_ak.as_str(), other_secret.as_str()),
        (edited(&ali_token), AK, SECRET),
        (token.clone(), AK, SECRET),
    ] {
        let r = app
            .call_as(
                "DescribeInstances",
                &[R, ("MaxResults", "10"), ("NextToken", &t)],
                ak,
                secret,
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "InvalidParameter.NextToken"),
            "{t}"
        );
    }

    // The audit listing: a token for account A's records is refused to account B.
    let r = native_get(&app, "/api/v1/audit", &[("MaxResults", "1")], AK, SECRET).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let audit_token = r.body["NextToken"].as_str().unwrap().to_string();
    assert!(!audit_token.is_empty() && audit_token.parse::<i64>().is_err());
    let r = native_get(
        &app,
        "/api/v1/audit",
        &[("MaxResults", "1"), ("NextToken", &audit_token)],
        AK,
        SECRET,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (t, ak, secret) in [
        (
            audit_token.clone(),
            other_ak.as_str(),
            other_secret.as_str(),
        ),
        (edited(&audit_token), AK, SECRET),
    ] {
        let r = native_get(
            &app,
            "/api/v1/audit",
            &[("MaxResults", "1"), ("NextToken", &t)],
            ak,
            secret,
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.text);
    }

    // Across a restart with the same server key, a token still opens.
    let dir = app.stop().await;
    let app = spawn_with(keyplane_api::ServerConfig::default(), Some(dir)).await;
    let r = app
        .call_volc(
            "DescribeKeyPairs",
            &[("MaxResults", "1"), ("NextToken", &token)],
            VR,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["Result"]["KeyPairs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_overlong_name_filter_is_a_client_error_not_an_internal_one() {
    // Found by the attacker pass: a 50 KB pattern hit SQLite's pattern limit (500 InternalError).
    let app = spawn_app().await;
    let long = "a*".repeat(30_000);
    let fits = "*".repeat(keyplane_api::params::MAX_PATTERN_BYTES);
    for (action, name) in [
        ("DescribeKeyPairs", "KeyPairName"),
        ("DescribeInstances", "InstanceName"),
    ] {
        let r = aliyun_form(&app, action, &[("RegionId", "cn-hangzhou"), (name, &long)]).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "InvalidParameter"),
            "{}",
            r.text
        );
        let r = aliyun_form(&app, action, &[("RegionId", "cn-hangzhou"), (name, &fits)]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = volc_form(&app, action, &pairs(&[(name, &long)])).await;
        assert_eq!(
            (r.status, volc_code(&r)),
            (400, "InvalidParameter"),
            "{}",
            r.text
        );
    }
}

/// The minute's housekeeping forgets ClientTokens after 24 hours (a retry then runs again); the
/// second's audit purge, with a retention set, audit records older than it; without one, none.
#[tokio::test]
async fn housekeeping_forgets_old_client_tokens_and_audit_records_past_the_retention() {
    use keyplane_store::{AuditFilter, Page, StoredResponse, TokenClaim};
    let app = spawn_app().await;
    let r = app
        .call("CreateKeyPair", &[R, ("KeyPairName", "kept-record")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let now = chrono::Utc::now();
    let day_old = now - chrono::Duration::hours(25);
    let claim = |token: &'static str, at| {
        let (store, account) = (app.store.clone(), app.account.clone());
        async move {
            store
                .claim_token(&account, "RunInstances", token, "h", at, at)
                .await
                .unwrap()
        }
    };
    for (token, at) in [("old", day_old), ("fresh", now)] {
        assert!(matches!(claim(token, at).await, TokenClaim::Claimed));
        let done = StoredResponse {
            status: 200,
            content_type: "application/json".into(),
            body: b"{}".to_vec(),
        };
        app.store
            .finish_token(&app.account, "RunInstances", token, &done)
            .await
            .unwrap();
    }
    let mut old = keyplane_store::AuditRecord {
        at: now - chrono::Duration::days(2),
        account_id: app.account.clone(),
        action: "DeleteKeyPairs".into(),
        request_id: "two-days-old".into(),
        ..app
            .store
            .list_audit(&AuditFilter::default(), Page::After { seq: 0, limit: 1 })
            .await
            .unwrap()
            .items[0]
            .clone()
    };
    old.seq = 0;
    app.store.append_audit(&old).await.unwrap();
    let records = || async {
        let filter = AuditFilter {
            account_id: Some(app.account.clone()),
            ..Default::default()
        };
        let page = Page::After { seq: 0, limit: 100 };
        let listing = app.store.list_audit(&filter, page).await.unwrap();
        listing
            .items
            .into_iter()
            .map(|r| r.action)
            .collect::<Vec<_>>()
    };

    // Without a retention: the tokens go, every record stays.
    let keep =
        keyplane_api::AppState::new(app.store.clone(), keyplane_api::ServerConfig::default())
            .await
            .unwrap();
    keyplane_api::housekeeping(&keep).await;
    assert_eq!(keyplane_api::purge_audit(&keep).await, 0);
    assert_eq!(records().await, ["CreateKeyPair", "DeleteKeyPairs"]);
    assert!(
        matches!(claim("old", now).await, TokenClaim::Claimed),
        "a day-old token is forgotten"
    );
    assert!(
        matches!(claim("fresh", now).await, TokenClaim::Done(_)),
        "a fresh one replays"
    );

    // A day's retention: the two-day-old record goes, the new one stays.
    let config = keyplane_api::ServerConfig {
        audit_retention: Some(std::time::Duration::from_secs(86_400)),
        ..Default::default()
    };
    let purge = keyplane_api::AppState::new(app.store.clone(), config)
        .await
        .unwrap();
    assert_eq!(keyplane_api::purge_audit(&purge).await, 1);
    assert_eq!(records().await, ["CreateKeyPair"]);
}
