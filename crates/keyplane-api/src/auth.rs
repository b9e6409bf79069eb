//! Turns a signed request into a verified caller: signature, AccessKey status, clock skew, nonce.
//! Handlers never see a request that has not passed here.

use chrono::{DateTime, NaiveDateTime, Utc};
use keyplane_sig::{alibaba, volc};
use keyplane_sig::{SecretKey, SigError};

use crate::wire::WireRequest;
use crate::AppState;

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Root,
    User(String),
}

/// Who is calling, once verified.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub access_key_id: String,
    pub principal: Principal,
    pub source_ip: Option<std::net::IpAddr>,
    /// The user's policies (empty for the root, which needs none).
    pub policies: Vec<keyplane_core::ram::Policy>,
}

/// The verified caller of `key`, with the user's policies loaded.
async fn caller(
    state: &AppState,
    key: keyplane_store::AccessKeyRecord,
    req: &WireRequest,
) -> Result<Caller, AuthError> {
    caller_for(state, key, req.peer).await
}

/// The caller acting as `key` (the console builds one for a signed-in session).
pub async fn caller_for(
    state: &AppState,
    key: keyplane_store::AccessKeyRecord,
    peer: Option<std::net::SocketAddr>,
) -> Result<Caller, AuthError> {
    let (principal, policies) = match key.user_name {
        None => (Principal::Root, Vec::new()),
        Some(user) => {
            let attached = state
                .store
                .user_policies(&key.account_id, &user)
                .await
                .map_err(AuthError::Store)?;
            let policies = attached
                .iter()
                .filter_map(|(p, _)| match keyplane_core::ram::Policy::parse(&p.document) {
                    Ok(policy) => Some(policy),
                    Err(e) => {
                        tracing::error!(policy = %p.name, error = %e, "a stored policy no longer parses; ignored (deny)");
                        None
                    }
                })
                .collect();
            (Principal::User(user), policies)
        }
    };
    Ok(Caller {
        account_id: key.account_id,
        access_key_id: key.id,
        principal,
        source_ip: peer.map(|p| p.ip()),
        policies,
    })
}

/// Why authentication failed; each dialect renders these in its own words.
#[derive(Debug)]
pub enum AuthError {
    Signature(SigError),
    UnknownAccessKey,
    AccessKeyDisabled,
    MissingTimestamp,
    Expired,
    MissingNonce,
    NonceUsed,
    /// The credential scope names a service other than `ecs`.
    WrongService(String),
    Store(keyplane_core::CoreError),
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// The stored AccessKey and its opened secret. An unknown key still costs a verification with a
/// throw-away secret, so the two failures do the same work.
async fn key_and_secret(
    state: &AppState,
    key_id: &str,
    verify: impl Fn(&SecretKey) -> Result<(), keyplane_sig::SigError>,
) -> Result<keyplane_store::AccessKeyRecord, AuthError> {
    let Some(key) = state
        .store
        .access_key(key_id)
        .await
        .map_err(AuthError::Store)?
    else {
        let _ = verify(&SecretKey::new("keyplane-unknown-access-key"));
        return Err(AuthError::UnknownAccessKey);
    };
    let secret = state
        .config
        .server_key
        .open(&key.id, &key.secret)
        .map_err(AuthError::Store)?;
    verify(&SecretKey::new(secret.as_str())).map_err(AuthError::Signature)?;
    Ok(key)
}

/// Verifies an Alibaba-signed request (V1 or V3).
pub async fn alibaba(state: &AppState, req: &WireRequest) -> Result<Caller, AuthError> {
    let view = req.sig_view();
    let claim = alibaba::claim(&view).map_err(AuthError::Signature)?;
    let key = key_and_secret(state, &claim.access_key_id, |s| {
        alibaba::verify(&view, &claim, s)
    })
    .await?;
    if !key.active {
        return Err(AuthError::AccessKeyDisabled);
    }
    let at = claim
        .timestamp
        .as_deref()
        .and_then(parse_time)
        .ok_or(AuthError::MissingTimestamp)?;
    let skew = (Utc::now() - at).abs();
    if skew > chrono::Duration::from_std(state.config.max_clock_skew).unwrap_or_default() {
        return Err(AuthError::Expired);
    }
    let nonce = claim
        .nonce
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or(AuthError::MissingNonce)?;
    if !state
        .nonces
        .use_once(&claim.access_key_id, nonce, at)
        .await
        .map_err(AuthError::Store)?
    {
        return Err(AuthError::NonceUsed);
    }
    caller(state, key, req).await
}

/// Verifies a Volcengine-signed request; returns the caller and the region of the credential scope,
/// which is the region the call acts in (Volcengine calls carry no RegionId).
pub async fn volcengine(
    state: &AppState,
    req: &WireRequest,
) -> Result<(Caller, String), AuthError> {
    let view = req.sig_view();
    let claim = volc::claim(&view).map_err(AuthError::Signature)?;
    if claim.service != "ecs" {
        return Err(AuthError::WrongService(claim.service));
    }
    let key = key_and_secret(state, &claim.access_key_id, |s| {
        volc::verify(&view, &claim, s)
    })
    .await?;
    if !key.active {
        return Err(AuthError::AccessKeyDisabled);
    }
    let at = NaiveDateTime::parse_from_str(&claim.x_date, "%Y%m%dT%H%M%SZ")
        .map(|t| t.and_utc())
        .map_err(|_| AuthError::MissingTimestamp)?;
    let skew = (Utc::now() - at).abs();
    if skew > chrono::Duration::from_std(state.config.max_clock_skew).unwrap_or_default() {
        return Err(AuthError::Expired);
    }
    Ok((caller(state, key, req).await?, claim.region))
}
