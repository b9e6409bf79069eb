//! ClientToken idempotency for every mutating call of both dialects (SPEC section 3).
//!
//! A call with a ClientToken claims `(account, dialect:action, token)` with a hash of its normalized
//! parameters before it runs. A retry of a finished call gets the first response byte for byte; the
//! same token with other parameters is a mismatch; a duplicate while the first still runs is refused
//! as processing. Only successes are kept: a call that failed changed nothing, so its token is
//! released and a retry runs again. Tokens are kept 24 hours (purged by a background task).
//! A claim still marked processing after 60 seconds is taken to be abandoned by a crash and taken
//! over by the next retry.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyplane_core::secretbox::ServerKey;
use keyplane_core::CoreError;
use keyplane_store::{StoredResponse, TokenClaim};
use sha2::{Digest, Sha256};

use crate::AppState;

/// The longest ClientToken accepted.
pub const MAX_TOKEN_LEN: usize = 64;
/// How long a claim may stay processing before it is taken to be abandoned.
pub const STALE_SECONDS: i64 = 60;
/// How long tokens are kept.
pub const RETENTION_HOURS: i64 = keyplane_store::CLIENT_TOKEN_HOURS;

/// Parameters that belong to the signature or the transport, not to what the request asks for.
const NOT_HASHED: &[&str] = &[
    "Signature",
    "SignatureNonce",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureType",
    "Timestamp",
    "AccessKeyId",
    "SecurityToken",
    "ClientToken",
];

/// 1–64 printable ASCII characters.
pub fn check_token(token: &str) -> Result<(), CoreError> {
    let ok = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(CoreError::InvalidClientToken)
    }
}

/// Parameters whose values are secrets: they enter the hash only through the server key's MAC, so
/// a stored request hash cannot be used to guess them offline.
const SECRET: &[&str] = &["Password"];

/// A hash of what the request asks for: `context` (dialect, region) and the sorted parameters.
pub fn request_hash(key: &ServerKey, context: &str, pairs: &[(&str, &str)]) -> String {
    let mut kept: Vec<&(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| !NOT_HASHED.contains(k))
        .collect();
    kept.sort();
    let mut h = Sha256::new();
    h.update(context.as_bytes());
    for (k, v) in kept {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        if SECRET.contains(k) {
            h.update(key.mac("client-token-parameter", v.as_bytes()));
        } else {
            h.update(v.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// The outcome of trying to claim a token.
pub enum Claimed {
    /// Run the request, then call [`finish`].
    Run,
    /// Answer with this (a stored response, or an idempotency error to render).
    Stored(Response),
    Refused(CoreError),
}

/// Where a ClientToken lives: per account, dialect, action and principal. Two principals of one
/// account never share a token: a RAM user who re-sends root's token must not be handed root's
/// stored answer (or have root's call run for it). Root keeps the scope it had before tokens were
/// per principal, so a retry that straddles an upgrade still finds its first result.
pub fn scope(dialect: &str, action: &str, caller: &crate::auth::Caller) -> String {
    match &caller.principal {
        crate::auth::Principal::Root => format!("{dialect}:{action}"),
        crate::auth::Principal::User(name) => format!("{dialect}:{action}:user/{name}"),
    }
}

pub async fn claim(
    state: &AppState,
    account: &str,
    scope: &str,
    token: &str,
    hash: &str,
) -> Claimed {
    // The simulated clock: an emulator's `clock advance` expires tokens (SPEC section 14).
    let now = state.clock.now();
    let stale = now - chrono::Duration::seconds(STALE_SECONDS);
    match state
        .store
        .claim_token(account, scope, token, hash, now, stale)
        .await
    {
        Ok(TokenClaim::Claimed) => Claimed::Run,
        Ok(TokenClaim::Done(stored)) => Claimed::Stored(replay(stored)),
        Ok(TokenClaim::Processing) => Claimed::Refused(CoreError::IdempotentProcessing),
        Ok(TokenClaim::Mismatch) => Claimed::Refused(CoreError::IdempotentParameterMismatch),
        Err(e) => Claimed::Refused(e),
    }
}

/// Keeps a successful response for retries (without any private key), or releases the token.
pub async fn finish(
    state: &AppState,
    account: &str,
    scope: &str,
    token: &str,
    response: Response,
) -> Response {
    if !response.status().is_success() {
        if let Err(e) = state.store.release_token(account, scope, token).await {
            tracing::warn!(error = %e, "releasing a ClientToken failed");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response(),
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        content_type: content_type.clone(),
        body: redact_private_key(&bytes, &content_type),
    };
    if let Err(e) = state
        .store
        .finish_token(account, scope, token, &stored)
        .await
    {
        tracing::warn!(error = %e, "recording a ClientToken response failed");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut r = (status, stored.body).into_response();
    if let Ok(v) = HeaderValue::from_str(&stored.content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// The private key of CreateKeyPair is returned once and never stored, not even for a retry:
/// a retried CreateKeyPair gets the first result without it.
fn redact_private_key(body: &[u8], content_type: &str) -> Vec<u8> {
    if content_type.contains("json") {
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) {
            strip(&mut v);
            return v.to_string().into_bytes();
        }
    }
    let text = String::from_utf8_lossy(body);
    if let (Some(a), Some(b)) = (
        text.find("<PrivateKeyBody>"),
        text.find("</PrivateKeyBody>"),
    ) {
        return format!("{}{}", &text[..a], &text[b + "</PrivateKeyBody>".len()..]).into_bytes();
    }
    body.to_vec()
}

fn strip(v: &mut serde_json::Value) {
    if let Some(map) = v.as_object_mut() {
        map.remove("PrivateKeyBody");
        map.remove("PrivateKey");
        for child in map.values_mut() {
            strip(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_1_to_64_printable_ascii_characters() {
        assert!(check_token("abc-123_XYZ").is_ok());
        assert!(check_token(&"a".repeat(64)).is_ok());
        for bad in ["", &"a".repeat(65), "tök", "a b", "a\u{7}"] {
            assert_eq!(
                check_token(bad),
                Err(CoreError::InvalidClientToken),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_hash_ignores_signature_parameters_and_order() {
        let key = ServerKey::generate();
        let a = request_hash(
            &key,
            "aliyun",
            &[("KeyPairName", "k"), ("Signature", "x"), ("Timestamp", "1")],
        );
        let b = request_hash(
            &key,
            "aliyun",
            &[("SignatureNonce", "n"), ("KeyPairName", "k")],
        );
        assert_eq!(a, b);
        assert_ne!(a, request_hash(&key, "aliyun", &[("KeyPairName", "j")]));
        assert_ne!(a, request_hash(&key, "volc", &[("KeyPairName", "k")]));
    }

    #[test]
    fn a_password_enters_the_hash_only_through_the_server_key() {
        let (k1, k2) = (ServerKey::generate(), ServerKey::generate());
        let p = [("InstanceId", "i-1"), ("Password", "Secret-123")];
        assert_eq!(
            request_hash(&k1, "aliyun", &p),
            request_hash(&k1, "aliyun", &p)
        );
        assert_ne!(
            request_hash(&k1, "aliyun", &p),
            request_hash(&k2, "aliyun", &p),
            "without the key the hash says nothing about the password"
        );
        assert_ne!(
            request_hash(&k1, "aliyun", &p),
            request_hash(
                &k1,
                "aliyun",
                &[("InstanceId", "i-1"), ("Password", "Secret-124")]
            )
        );
    }

    #[test]
    fn stored_responses_never_keep_a_private_key() {
        let json = br#"{"RequestId":"R","KeyPairName":"k","PrivateKeyBody":"-----BEGIN RSA PRIVATE KEY-----"}"#;
        let out = String::from_utf8(redact_private_key(json, "application/json")).unwrap();
        assert!(!out.contains("PRIVATE") && out.contains("KeyPairName"));
        let volc = br#"{"ResponseMetadata":{},"Result":{"PrivateKey":"-----BEGIN"}}"#;
        assert!(
            !String::from_utf8(redact_private_key(volc, "application/json"))
                .unwrap()
                .contains("BEGIN")
        );
        let xml = b"<R><KeyPairName>k</KeyPairName><PrivateKeyBody>-----BEGIN</PrivateKeyBody></R>";
        assert_eq!(
            redact_private_key(xml, "text/xml"),
            b"<R><KeyPairName>k</KeyPairName></R>".to_vec()
        );
    }
}
