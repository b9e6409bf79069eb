//! Alibaba Cloud RPC signatures: V1 `HMAC-SHA1` and V3 `ACS3-HMAC-SHA256`.
//!
//! Reference: `shared/wire/alibaba/REPORT.md` sections 4 and 5, checked against the vectors the
//! official SDKs' own signing code produced (`tests/fixtures/alibaba_test_vectors.json`).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::encode::pct;
use crate::{SecretKey, SigError};

/// The V3 algorithm name, first word of the `Authorization` header.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";
/// SHA-256 of the empty body, what every SDK sends for a query-only call.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub use crate::SignedRequest;

/// Which of the two schemes signed the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    V1,
    V3,
}

/// The headers a V3 signature must cover (SPEC section 6): together they fix what the call does
/// (action, API version, body), where it goes (host) and when (date, nonce), so none of them can be
/// swapped on the way without breaking the signature.
pub const V3_REQUIRED_SIGNED_HEADERS: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
];

/// Who claims to have signed, with the replay-relevant parts; not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scheme: Scheme,
    pub access_key_id: String,
    pub nonce: Option<String>,
    /// `Timestamp` (V1) or `x-acs-date` (V3), as sent.
    pub timestamp: Option<String>,
    signature: String,
    signed_headers: Vec<String>,
}

/// What the call asks to run, read only from the part of the request its scheme signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selector<'a> {
    pub action: Option<&'a str>,
    pub version: Option<&'a str>,
}

/// The action and API version of a request, from where its signature scheme covers them: the
/// `x-acs-action`/`x-acs-version` headers of a V3 call (which [`claim`] requires to be signed), the
/// `Action`/`Version` parameters otherwise (V1 signs the query and the form). A V1 call never takes
/// them from a header, which V1 does not sign: a signed read-only URL must not become another action
/// by an added header. The scheme is decided as in [`claim`]: an `Authorization` header means V3.
pub fn selector<'a>(req: &SignedRequest<'a>) -> Selector<'a> {
    if req.header("authorization").is_some() {
        Selector {
            action: req.header("x-acs-action"),
            version: req.header("x-acs-version"),
        }
    } else {
        Selector {
            action: req.param("Action"),
            version: req.param("Version"),
        }
    }
}

/// Reads the claim: an `Authorization` header means V3, a `Signature` parameter V1.
pub fn claim(req: &SignedRequest<'_>) -> Result<Claim, SigError> {
    if let Some(auth) = req.header("authorization") {
        return claim_v3(req, auth);
    }
    if let Some(sig) = req.param("Signature") {
        return claim_v1(req, sig);
    }
    Err(SigError::Missing)
}

fn claim_v1(req: &SignedRequest<'_>, signature: &str) -> Result<Claim, SigError> {
    match req.param("SignatureMethod") {
        Some("HMAC-SHA1") => {}
        Some(other) => return Err(SigError::UnsupportedMethod(other.to_string())),
        None => return Err(SigError::Incomplete("SignatureMethod")),
    }
    if let Some(v) = req.param("SignatureVersion") {
        if v != "1.0" {
            return Err(SigError::UnsupportedMethod(format!("SignatureVersion {v}")));
        }
    }
    let access_key_id = req
        .param("AccessKeyId")
        .filter(|s| !s.is_empty())
        .ok_or(SigError::Incomplete("AccessKeyId"))?;
    Ok(Claim {
        scheme: Scheme::V1,
        access_key_id: access_key_id.to_string(),
        nonce: req.param("SignatureNonce").map(str::to_string),
        timestamp: req.param("Timestamp").map(str::to_string),
        signature: signature.to_string(),
        signed_headers: Vec::new(),
    })
}

/// Parses `ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`.
fn claim_v3(req: &SignedRequest<'_>, auth: &str) -> Result<Claim, SigError> {
    let (algorithm, rest) = auth
        .trim()
        .split_once(' ')
        .ok_or(SigError::Incomplete("Authorization"))?;
    if algorithm != V3_ALGORITHM {
        return Err(SigError::UnsupportedMethod(algorithm.to_string()));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential
        .filter(|s| !s.is_empty())
        .ok_or(SigError::Incomplete("Credential"))?;
    let signed_headers: Vec<String> = signed_headers
        .ok_or(SigError::Incomplete("SignedHeaders"))?
        .split(';')
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if V3_REQUIRED_SIGNED_HEADERS
        .iter()
        .any(|required| !signed_headers.iter().any(|h| h == required))
    {
        return Err(SigError::Incomplete("SignedHeaders"));
    }
    let signature = signature.ok_or(SigError::Incomplete("Signature"))?;
    Ok(Claim {
        scheme: Scheme::V3,
        access_key_id: credential.to_string(),
        nonce: req.header("x-acs-signature-nonce").map(str::to_string),
        timestamp: req.header("x-acs-date").map(str::to_string),
        signature: signature.to_string(),
        signed_headers,
    })
}

/// Recomputes the claimed signature with `secret` and compares in constant time.
pub fn verify(req: &SignedRequest<'_>, claim: &Claim, secret: &SecretKey) -> Result<(), SigError> {
    match claim.scheme {
        Scheme::V1 => {
            let params: Vec<(String, String)> = req
                .query
                .iter()
                .chain(req.form.iter())
                .filter(|(n, _)| n != "Signature")
                .cloned()
                .collect();
            let sts = v1_string_to_sign(req.method, req.path, &params);
            let expected = v1_signature(secret, &sts);
            if bool::from(expected.as_bytes().ct_eq(claim.signature.as_bytes())) {
                Ok(())
            } else {
                Err(SigError::Mismatch {
                    string_to_sign: sts,
                })
            }
        }
        Scheme::V3 => {
            let payload_hash = req
                .header("x-acs-content-sha256")
                .ok_or(SigError::Incomplete("x-acs-content-sha256"))?;
            if !payload_hash.eq_ignore_ascii_case(&hex::encode(Sha256::digest(req.body))) {
                return Err(SigError::PayloadHashMismatch);
            }
            let mut headers = Vec::with_capacity(claim.signed_headers.len());
            for name in &claim.signed_headers {
                // A header the client says it signed but did not send cannot verify.
                let value = req
                    .header(name)
                    .ok_or(SigError::Incomplete("SignedHeaders"))?;
                headers.push((name.as_str(), value));
            }
            let canonical =
                v3_canonical_request(req.method, req.path, req.query, &headers, payload_hash);
            let sts = v3_string_to_sign(&canonical);
            let expected = v3_signature(secret, &sts);
            let given = claim.signature.to_ascii_lowercase();
            if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
                Ok(())
            } else {
                Err(SigError::Mismatch {
                    string_to_sign: sts,
                })
            }
        }
    }
}

/// `pct(k)=pct(v)` pairs sorted by name (then value), joined with `&`.
fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params.iter().map(|(k, v)| (pct(k), pct(v))).collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// V1 StringToSign = `METHOD&pct(path)&pct(CanonicalizedQueryString)`. The vendor's path is always
/// `/` (`%2F`); the server puts the path the request really took, so a V1 signature made for `/` is
/// never valid on another path.
pub fn v1_string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    format!("{method}&{}&{}", pct(path), pct(&canonical_query(params)))
}

/// V1 Signature = Base64(HMAC-SHA1(secret + "&", StringToSign)).
pub fn v1_signature(secret: &SecretKey, string_to_sign: &str) -> String {
    let key = format!("{}&", secret.expose());
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// V3 CanonicalRequest: method, URI, query, `name:value\n` headers, SignedHeaders, payload hash.
pub fn v3_canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    signed_headers: &[(&str, &str)],
    payload_hash: &str,
) -> String {
    let mut canonical_headers = String::new();
    for (name, value) in signed_headers {
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let names: Vec<&str> = signed_headers.iter().map(|(n, _)| *n).collect();
    format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_query(query),
        names.join(";")
    )
}

/// V3 StringToSign = `ACS3-HMAC-SHA256\n` + hex(SHA-256(CanonicalRequest)).
pub fn v3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{V3_ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// V3 Signature = lower-case hex HMAC-SHA256(secret, StringToSign).
pub fn v3_signature(secret: &SecretKey, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What a V3 client call needs to be signed.
pub struct V3Call<'a> {
    pub method: &'a str,
    /// The request path: `/` for the vendor APIs, `/api/v1/…` for keyplane's native API.
    pub path: &'a str,
    pub host: &'a str,
    pub action: &'a str,
    pub version: &'a str,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
    pub date: &'a str,
    pub nonce: &'a str,
}

/// Signs a call as the Tea SDK does; returns the headers to send (Host included).
pub fn sign_v3(
    call: &V3Call<'_>,
    access_key_id: &str,
    secret: &SecretKey,
) -> Vec<(String, String)> {
    let payload_hash = hex::encode(Sha256::digest(call.body));
    let mut headers: Vec<(&str, &str)> = vec![
        ("host", call.host),
        ("x-acs-action", call.action),
        ("x-acs-content-sha256", &payload_hash),
        ("x-acs-date", call.date),
        ("x-acs-signature-nonce", call.nonce),
        ("x-acs-version", call.version),
    ];
    headers.sort();
    let canonical =
        v3_canonical_request(call.method, call.path, call.query, &headers, &payload_hash);
    let signature = v3_signature(secret, &v3_string_to_sign(&canonical));
    let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    out.push((
        "authorization".into(),
        format!(
            "{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={signature}",
            names.join(";")
        ),
    ));
    out
}
