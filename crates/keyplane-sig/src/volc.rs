//! Volcengine's `HMAC-SHA256` signature ("SignerV4"), server side.
//!
//! Reference: `shared/wire/volcengine/REPORT.md` section 2, checked against the vectors the
//! official SDK's own signer produced (`tests/fixtures/volcengine_test_vectors.json`). The canonical
//! request is rebuilt from the headers the client lists in `SignedHeaders` (they differ per SDK),
//! with values trimmed and `:80`/`:443` dropped from `host`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::encode::pct;
use crate::{SecretKey, SigError, SignedRequest};

pub const ALGORITHM: &str = "HMAC-SHA256";

/// Who claims to have signed, for which day, region and service; not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// `X-Date` as sent (`YYYYMMDDTHHMMSSZ`).
    pub x_date: String,
    signed_headers: Vec<String>,
    signature: String,
}

/// Parses `HMAC-SHA256 Credential=AK/YYYYMMDD/region/service/request, SignedHeaders=a;b, Signature=hex`.
pub fn claim(req: &SignedRequest<'_>) -> Result<Claim, SigError> {
    let auth = req.header("authorization").ok_or(SigError::Missing)?;
    let rest = auth
        .trim()
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| SigError::UnsupportedMethod(auth.split(' ').next().unwrap_or("").into()))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or(SigError::Incomplete("Credential"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [ak, date, region, service, "request"] = parts[..] else {
        return Err(SigError::Incomplete("Credential"));
    };
    if ak.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigError::Incomplete("Credential"));
    }
    let signed_headers: Vec<String> = signed
        .ok_or(SigError::Incomplete("SignedHeaders"))?
        .split(';')
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    // The documented rule: host and x-date are always signed, so neither can be swapped in transit.
    for required in ["host", "x-date"] {
        if !signed_headers.iter().any(|h| h == required) {
            return Err(SigError::Incomplete("SignedHeaders"));
        }
    }
    let x_date = req.header("x-date").ok_or(SigError::Incomplete("X-Date"))?;
    if !x_date.starts_with(date) {
        return Err(SigError::Incomplete("X-Date"));
    }
    Ok(Claim {
        access_key_id: ak.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        x_date: x_date.to_string(),
        signed_headers,
        signature: signature
            .ok_or(SigError::Incomplete("Signature"))?
            .to_ascii_lowercase(),
    })
}

/// Recomputes the signature with `secret` and compares in constant time.
pub fn verify(req: &SignedRequest<'_>, claim: &Claim, secret: &SecretKey) -> Result<(), SigError> {
    let body_hash = hex::encode(Sha256::digest(req.body));
    if let Some(sent) = req.header("x-content-sha256") {
        if !sent.trim().eq_ignore_ascii_case(&body_hash) {
            return Err(SigError::PayloadHashMismatch);
        }
    }
    let mut headers = Vec::with_capacity(claim.signed_headers.len());
    for name in &claim.signed_headers {
        let value = req
            .header(name)
            .ok_or(SigError::Incomplete("SignedHeaders"))?
            .trim();
        let value = if name == "host" {
            strip_default_port(value)
        } else {
            value
        };
        headers.push((name.as_str(), value));
    }
    let canonical = canonical_request(req.method, req.path, req.query, &headers, &body_hash);
    let scope = format!("{}/{}/{}/request", claim.date, claim.region, claim.service);
    let sts = string_to_sign(&claim.x_date, &scope, &canonical);
    let expected = signature(secret, &claim.date, &claim.region, &claim.service, &sts);
    if bool::from(expected.as_bytes().ct_eq(claim.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SigError::Mismatch {
            string_to_sign: sts,
        })
    }
}

fn strip_default_port(host: &str) -> &str {
    host.strip_suffix(":80")
        .or_else(|| host.strip_suffix(":443"))
        .unwrap_or(host)
}

/// method, path, sorted RFC 3986 query, `name:value\n` headers, SignedHeaders, body hash.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(&str, &str)],
    body_hash: &str,
) -> String {
    let mut pairs: Vec<(String, String)> = query.iter().map(|(k, v)| (pct(k), pct(v))).collect();
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical_headers = String::new();
    for (n, v) in headers {
        canonical_headers.push_str(&format!("{n}:{v}\n"));
    }
    let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    let path = if path.is_empty() { "/" } else { path };
    format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{}\n{body_hash}",
        query.join("&"),
        names.join(";")
    )
}

pub fn string_to_sign(x_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{x_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// kDate → kRegion → kService → kSigning, then hex HMAC of the string to sign.
pub fn signature(secret: &SecretKey, date: &str, region: &str, service: &str, sts: &str) -> String {
    let k_date = hmac(secret.expose().as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "request");
    hex::encode(hmac(&k_signing, sts))
}

/// What a client call needs to be signed.
pub struct Call<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
    /// `YYYYMMDDTHHMMSSZ`
    pub x_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// Signs like the old Python SDK (`host;x-content-sha256;x-date`); returns the headers to send.
pub fn sign(call: &Call<'_>, access_key_id: &str, secret: &SecretKey) -> Vec<(String, String)> {
    let body_hash = hex::encode(Sha256::digest(call.body));
    let headers = [
        ("host", strip_default_port(call.host)),
        ("x-content-sha256", body_hash.as_str()),
        ("x-date", call.x_date),
    ];
    let canonical = canonical_request(call.method, "/", call.query, &headers, &body_hash);
    let date = &call.x_date[..8.min(call.x_date.len())];
    let scope = format!("{date}/{}/{}/request", call.region, call.service);
    let sts = string_to_sign(call.x_date, &scope, &canonical);
    let sig = signature(secret, date, call.region, call.service, &sts);
    vec![
        ("x-content-sha256".into(), body_hash.clone()),
        ("x-date".into(), call.x_date.into()),
        (
            "authorization".into(),
            format!(
                "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders=host;x-content-sha256;x-date, Signature={sig}"
            ),
        ),
    ]
}
