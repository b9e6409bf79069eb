//! The native API's registration tokens (`/api/v1/registration-tokens`): one-time tokens that let
//! `keyplane agent` register a real host, with a lifetime, a listing and revocation.
//!
//! A token is a secret shown once; the store keeps only its SHA-256 and a public `TokenId`
//! (`rt-` + 20 lowercase alphanumerics) by which it is listed and revoked. Tokens belong to the
//! caller's account: another account's token is "no such token". RAM actions:
//! `keyplane:CreateRegistrationToken`, `keyplane:DescribeRegistrationTokens` and
//! `keyplane:RevokeRegistrationToken`, on the instances of the token's region
//! (`acs:ecs:REGION:ACCOUNT:instance/*`), as a token makes an instance there.

use chrono::{DurationRound, SecondsFormat, Utc};
use keyplane_core::{ids, CoreError};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::params::Params;
use crate::AppState;

/// Without `Ttl`, a token lives a day: long enough to hand to whoever installs the host.
const DEFAULT_TTL_SECS: i64 = 24 * 3600;
const MIN_TTL_SECS: i64 = 60;
const MAX_TTL_SECS: i64 = 30 * 24 * 3600;

const TTL_RULE: &str =
    "A number and a unit (s, m, h or d), e.g. 90s, 15m, 8h or 30d, from 1 minute to 30 days.";

/// `90s`, `15m`, `8h`, `30d` → seconds, within 1 minute .. 30 days.
pub fn parse_ttl(text: &str) -> Result<i64, CoreError> {
    keyplane_core::duration::parse_secs(text)
        .filter(|secs| (MIN_TTL_SECS..=MAX_TTL_SECS).contains(secs))
        .ok_or_else(|| CoreError::invalid("Ttl", TTL_RULE))
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `POST /api/v1/registration-tokens?Region=&Zone=&Name=&Ttl=` → `{"Token", "TokenId", "ExpiresAt"}`.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    p: &Params<'_>,
) -> Result<Map<String, Value>, CoreError> {
    let region_id = p.required("Region")?;
    let region = keyplane_core::catalog::region(region_id)
        .ok_or_else(|| CoreError::RegionNotFound(region_id.into()))?;
    let zone = region.zone(p.opt("Zone"))?;
    let name = p.opt("Name").unwrap_or_default();
    if name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "Name",
            "At most 128 characters, no control characters.",
        ));
    }
    let ttl = p.opt("Ttl").map(parse_ttl).transpose()?;
    caller.check(
        "keyplane:CreateRegistrationToken",
        &caller.instance_arn(region.id, "*"),
    )?;
    let token = format!(
        "kprt-{}{}",
        ids::new_access_key_secret(),
        ids::new_access_key_secret()
    );
    // Whole seconds, so the listing shows the same ExpiresAt as this answer.
    let expires_at = (Utc::now() + chrono::Duration::seconds(ttl.unwrap_or(DEFAULT_TTL_SECS)))
        .duration_trunc(chrono::Duration::seconds(1))
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let token_id = ids::new_registration_token_id();
    state
        .store
        .create_registration_token(&keyplane_store::RegistrationToken {
            token_id: token_id.clone(),
            token_hash: crate::agent_api::sha256_hex(&token),
            account_id: caller.account_id.clone(),
            region_id: region.id.into(),
            zone_id: zone.into(),
            name: name.into(),
            expires_at,
        })
        .await?;
    Ok(crate::reply::obj([
        ("Token", json!(token)),
        ("TokenId", json!(token_id)),
        ("ExpiresAt", json!(rfc3339(expires_at))),
    ]))
}

/// `GET /api/v1/registration-tokens` → `{"Tokens": [{"TokenId", "Name", "ExpiresAt", "Used"}]}`:
/// the account's tokens not revoked, in the regions the caller may see; never a secret.
pub async fn list(state: &AppState, caller: &Caller) -> Result<Map<String, Value>, CoreError> {
    const ACTION: &str = "keyplane:DescribeRegistrationTokens";
    if !caller.may_attempt(ACTION) {
        return Err(forbidden(caller, ACTION));
    }
    let tokens: Vec<Value> = state
        .store
        .list_registration_tokens(&caller.account_id)
        .await?
        .into_iter()
        .filter(|t| caller.allowed(ACTION, &caller.instance_arn(&t.region_id, "*")))
        .map(|t| {
            json!({
                "TokenId": t.token_id,
                "Name": t.name,
                "ExpiresAt": rfc3339(t.expires_at),
                "Used": t.used,
            })
        })
        .collect();
    Ok(crate::reply::obj([("Tokens", Value::Array(tokens))]))
}

/// `POST /api/v1/registration-tokens/{TokenId}/revoke` → `{"TokenId"}`: the token no longer
/// registers anything (a host it registered stays) and leaves the listing.
pub async fn revoke(
    state: &AppState,
    caller: &Caller,
    token_id: &str,
) -> Result<Map<String, Value>, CoreError> {
    const ACTION: &str = "keyplane:RevokeRegistrationToken";
    let well_formed = token_id.strip_prefix("rt-").is_some_and(|s| {
        s.len() == 20
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !well_formed {
        return Err(CoreError::invalid(
            "TokenId",
            "A registration token ID is rt- and 20 lowercase letters or digits.",
        ));
    }
    if !caller.may_attempt(ACTION) {
        return Err(forbidden(caller, ACTION));
    }
    let not_found = || {
        CoreError::invalid(
            "TokenId",
            format!("The account has no registration token {token_id}."),
        )
    };
    let token = state
        .store
        .list_registration_tokens(&caller.account_id)
        .await?
        .into_iter()
        .find(|t| t.token_id == token_id)
        .ok_or_else(not_found)?;
    caller.check(ACTION, &caller.instance_arn(&token.region_id, "*"))?;
    if !state
        .store
        .revoke_registration_token(&caller.account_id, token_id)
        .await?
    {
        return Err(not_found());
    }
    Ok(crate::reply::obj([("TokenId", json!(token_id))]))
}

fn forbidden(caller: &Caller, action: &str) -> CoreError {
    CoreError::Forbidden {
        action: action.into(),
        resource: caller.instance_arn("*", "*"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_is_a_number_and_a_unit_within_a_minute_and_thirty_days() {
        for (text, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("8h", 28800),
            ("30d", 2_592_000),
            ("1m", 60),
            ("60s", 60),
        ] {
            assert_eq!(parse_ttl(text), Ok(secs), "{text}");
        }
        for text in [
            "",
            "s",
            "59s",
            "31d",
            "721h",
            "0m",
            "-5m",
            "+5m",
            "5",
            "5 m",
            "5M",
            "1.5h",
            "1h30m",
            "99999999999d",
            "１m",
            "m１",
        ] {
            assert!(parse_ttl(text).is_err(), "{text:?}");
        }
    }
}
