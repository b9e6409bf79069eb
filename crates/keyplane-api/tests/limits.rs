//! Issue 13: list caps are enforced before any per-item work, and NextTokens are opaque, bound to
//! the caller, and refused when forged or moved to another account.

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
    let mut all = pairs(params);
    for (k, v) in [
        ("Action", action),
        ("Version", "2014-05-26"),
        ("AccessKeyId", AK),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", &nonce()),
        ("Timestamp", &now()),
        ("Format", "JSON"),
    ] {
        all.push((k.into(), v.into()));
    }
    let sts = keyplane_sig::alibaba::v1_string_to_sign("POST", &all);
    let sig = keyplane_sig::alibaba::v1_signature(&SecretKey::new(SECRET), &sts);
    all.push(("Signature".into(), sig));
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
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or_default(),
        text,
    }
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
