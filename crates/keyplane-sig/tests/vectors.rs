//! The signature vectors produced by the official SDKs' own signing code, replayed through the
//! server-side verifier from the raw HTTP request exactly as it was sent.

use keyplane_sig::alibaba::{self, Scheme, SignedRequest};
use keyplane_sig::{params::decode_form, SecretKey, SigError};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/alibaba_test_vectors.json")).unwrap()
}

struct Wire {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn wire(v: &Value) -> Wire {
    let http = &v["http"];
    let target = http["target"].as_str().unwrap();
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = http["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_ascii_lowercase(),
                h[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let body = http["body"].as_str().unwrap().as_bytes().to_vec();
    let is_form = headers
        .iter()
        .any(|(n, v)| n == "content-type" && v.starts_with("application/x-www-form-urlencoded"));
    Wire {
        method: http["method"].as_str().unwrap().to_string(),
        path: path.to_string(),
        query: decode_form(q.as_bytes()).unwrap(),
        form: if is_form {
            decode_form(&body).unwrap()
        } else {
            vec![]
        },
        headers,
        body,
    }
}

fn request(w: &Wire) -> SignedRequest<'_> {
    SignedRequest {
        method: &w.method,
        path: &w.path,
        query: &w.query,
        form: &w.form,
        headers: &w.headers,
        body: &w.body,
    }
}

#[test]
fn every_wire_vector_verifies_from_the_raw_request() {
    let all = vectors();
    let list = all["wire_vectors"].as_array().unwrap();
    assert_eq!(list.len(), 13);
    for v in list {
        let w = wire(v);
        let req = request(&w);
        let claim = alibaba::claim(&req).unwrap();
        let expected_scheme = if v["scheme"].as_str().unwrap().starts_with("V3") {
            Scheme::V3
        } else {
            Scheme::V1
        };
        assert_eq!(claim.scheme, expected_scheme, "{}", v["id"]);
        assert_eq!(claim.access_key_id, v["access_key_id"].as_str().unwrap());
        let secret = SecretKey::new(v["access_key_secret"].as_str().unwrap());
        alibaba::verify(&req, &claim, &secret).unwrap_or_else(|e| panic!("{}: {e:?}", v["id"]));
    }
}

#[test]
fn a_wrong_secret_is_a_mismatch_that_echoes_the_sdk_string_to_sign() {
    let all = vectors();
    for v in all["wire_vectors"].as_array().unwrap() {
        let w = wire(v);
        let req = request(&w);
        let claim = alibaba::claim(&req).unwrap();
        match alibaba::verify(&req, &claim, &SecretKey::new("wrong")) {
            Err(SigError::Mismatch { string_to_sign }) => {
                assert_eq!(
                    string_to_sign,
                    v["string_to_sign"].as_str().unwrap(),
                    "{}",
                    v["id"]
                )
            }
            other => panic!("{}: {other:?}", v["id"]),
        }
    }
}

#[test]
fn a_tampered_parameter_no_longer_verifies() {
    let all = vectors();
    let v = &all["wire_vectors"][0];
    let mut w = wire(v);
    w.query[0].1.push('x');
    let req = request(&w);
    let claim = alibaba::claim(&req).unwrap();
    let secret = SecretKey::new(v["access_key_secret"].as_str().unwrap());
    assert!(matches!(
        alibaba::verify(&req, &claim, &secret),
        Err(SigError::Mismatch { .. })
    ));
}

#[test]
fn a_body_that_does_not_match_its_signed_hash_is_refused() {
    let all = vectors();
    let v = all["wire_vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "tea-v3-form-body")
        .unwrap();
    let mut w = wire(v);
    w.body.push(b'x');
    let req = request(&w);
    let claim = alibaba::claim(&req).unwrap();
    let secret = SecretKey::new("testsecret");
    assert_eq!(
        alibaba::verify(&req, &claim, &secret),
        Err(SigError::PayloadHashMismatch)
    );
}

#[test]
fn function_vectors_match_the_sdk_signing_functions() {
    let all = vectors();
    for v in all["function_vectors"].as_array().unwrap() {
        let id = v["id"].as_str().unwrap();
        let method = v["method"].as_str().unwrap();
        let secret = SecretKey::new(v["secret"].as_str().unwrap());
        if let Some(params) = v.get("params").and_then(Value::as_object) {
            let params: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let sts = alibaba::v1_string_to_sign(method, "/", &params);
            assert_eq!(sts, v["string_to_sign"].as_str().unwrap(), "{id}");
            assert_eq!(alibaba::v1_signature(&secret, &sts), v["signature"], "{id}");
        } else if let Some(query) = v.get("query").and_then(Value::as_object) {
            let query: Vec<(String, String)> = query
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let mut headers: Vec<(&str, &str)> = v["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                .collect();
            headers.sort();
            let hash = v["headers"]["x-acs-content-sha256"].as_str().unwrap();
            let canonical = alibaba::v3_canonical_request(method, "/", &query, &headers, hash);
            assert_eq!(canonical, v["canonical_request"].as_str().unwrap(), "{id}");
            let sts = alibaba::v3_string_to_sign(&canonical);
            assert_eq!(sts, v["string_to_sign"].as_str().unwrap(), "{id}");
            let sig = alibaba::v3_signature(&secret, &sts);
            assert!(v["authorization"].as_str().unwrap().ends_with(&sig), "{id}");
        } else {
            // fn-core-v1-get_signed_url: the old SDK's URL composer; its StringToSign is V1's.
            let sts = v["string_to_sign"].as_str().unwrap();
            assert_eq!(alibaba::v1_signature(&secret, sts), v["signature"], "{id}");
        }
    }
}

#[test]
fn the_client_signer_produces_requests_the_verifier_accepts() {
    let query = vec![("RegionId".to_string(), "cn-hangzhou".to_string())];
    let secret = SecretKey::new("s3cret");
    let call = alibaba::V3Call {
        method: "POST",
        path: "/",
        host: "127.0.0.1:8080",
        action: "DescribeRegions",
        version: "2014-05-26",
        query: &query,
        body: b"",
        date: "2024-01-01T00:00:00Z",
        nonce: "n1",
    };
    let headers = alibaba::sign_v3(&call, "AK1", &secret);
    let req = SignedRequest {
        method: "POST",
        path: "/",
        query: &query,
        form: &[],
        headers: &headers,
        body: b"",
    };
    let claim = alibaba::claim(&req).unwrap();
    assert_eq!(claim.nonce.as_deref(), Some("n1"));
    alibaba::verify(&req, &claim, &secret).unwrap();
    assert!(alibaba::verify(&req, &claim, &SecretKey::new("other")).is_err());
}

#[test]
fn a_request_without_any_signature_is_missing() {
    let req = SignedRequest {
        method: "GET",
        path: "/",
        query: &[],
        form: &[],
        headers: &[],
        body: b"",
    };
    assert_eq!(alibaba::claim(&req).unwrap_err(), SigError::Missing);
}

type Pairs = Vec<(String, String)>;

/// A correctly signed V3 request for `path`, as (query, headers).
fn signed_v3(path: &str, action: &str) -> (Pairs, Pairs) {
    let query = vec![("RegionId".to_string(), "cn-hangzhou".to_string())];
    let call = alibaba::V3Call {
        method: "POST",
        path,
        host: "127.0.0.1:8080",
        action,
        version: "2014-05-26",
        query: &query,
        body: b"",
        date: "2024-01-01T00:00:00Z",
        nonce: "n1",
    };
    let headers = alibaba::sign_v3(&call, "AK1", &SecretKey::new("s3cret"));
    (query, headers)
}

#[test]
fn a_v3_signature_must_cover_action_version_host_date_nonce_and_body_hash() {
    for left_out in alibaba::V3_REQUIRED_SIGNED_HEADERS {
        let (query, mut headers) = signed_v3("/", "DescribeRegions");
        let auth = headers
            .iter_mut()
            .find(|(n, _)| n == "authorization")
            .unwrap();
        // Re-list the signed headers without one of the required ones.
        let (head, rest) = auth.1.split_once("SignedHeaders=").unwrap();
        let (list, tail) = rest.split_once(',').unwrap();
        let shorter: Vec<&str> = list.split(';').filter(|h| *h != left_out).collect();
        auth.1 = format!("{head}SignedHeaders={},{tail}", shorter.join(";"));
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: &query,
            form: &[],
            headers: &headers,
            body: b"",
        };
        assert_eq!(
            alibaba::claim(&req).unwrap_err(),
            SigError::Incomplete("SignedHeaders"),
            "{left_out}"
        );
    }
}

#[test]
fn a_v3_signature_made_for_one_path_fails_on_another() {
    let (query, headers) = signed_v3("/", "DescribeRegions");
    let req = SignedRequest {
        method: "POST",
        path: "/api/v1/accounts",
        query: &query,
        form: &[],
        headers: &headers,
        body: b"",
    };
    let claim = alibaba::claim(&req).unwrap();
    assert!(matches!(
        alibaba::verify(&req, &claim, &SecretKey::new("s3cret")),
        Err(SigError::Mismatch { .. })
    ));
}

/// A V1 request signed for `/`, as the SDKs sign it.
fn signed_v1(action: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("AccessKeyId", "AK1"),
        ("Action", action),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "n1"),
        ("SignatureVersion", "1.0"),
        ("Timestamp", "2024-01-01T00:00:00Z"),
        ("Version", "2014-05-26"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sts = alibaba::v1_string_to_sign("GET", "/", &params);
    let sig = alibaba::v1_signature(&SecretKey::new("s3cret"), &sts);
    params.push(("Signature".into(), sig));
    params
}

#[test]
fn a_v1_signature_made_for_the_root_path_fails_on_another() {
    let query = signed_v1("DescribeRegions");
    for (path, ok) in [("/", true), ("/api/v1/accounts", false), ("//", false)] {
        let req = SignedRequest {
            method: "GET",
            path,
            query: &query,
            form: &[],
            headers: &[],
            body: b"",
        };
        let claim = alibaba::claim(&req).unwrap();
        assert_eq!(
            alibaba::verify(&req, &claim, &SecretKey::new("s3cret")).is_ok(),
            ok,
            "{path}"
        );
    }
}

#[test]
fn a_v1_call_takes_its_action_and_version_from_the_signed_parameters_never_a_header() {
    let query = signed_v1("DescribeRegions");
    let headers = vec![
        ("x-acs-action".to_string(), "CreateAccessKey".to_string()),
        ("x-acs-version".to_string(), "2015-05-01".to_string()),
    ];
    let req = SignedRequest {
        method: "GET",
        path: "/",
        query: &query,
        form: &[],
        headers: &headers,
        body: b"",
    };
    let s = alibaba::selector(&req);
    assert_eq!(
        (s.action, s.version),
        (Some("DescribeRegions"), Some("2014-05-26"))
    );
    // A V3 call names them in its (signed) headers.
    let (query, headers) = signed_v3("/", "StopInstance");
    let req = SignedRequest {
        method: "POST",
        path: "/",
        query: &query,
        form: &[],
        headers: &headers,
        body: b"",
    };
    assert_eq!(alibaba::selector(&req).action, Some("StopInstance"));
}
