//! Opaque NextTokens: the store's keyset cursor (a sequence shared by every account, so a bare
//! number told one account how busy the others were) sealed with a key derived from the server
//! key, the call, the account and the principal as associated data.
//!
//! A token therefore reveals nothing, cannot be edited by hand, and opens only for the caller and
//! the listing it was issued for; any other token is the dialect's invalid-NextToken error. The key
//! is derived from the server key alone, so tokens stay valid across a restart and on every
//! server that shares the key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use keyplane_core::secretbox::ServerKey;
use keyplane_core::CoreError;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::auth::Caller;

/// Separates this key from every other use of the server key.
const PURPOSE: &str = "keyplane NextToken v1";
const NONCE_LEN: usize = 12;
/// Nonce, an 8-byte position and the 16-byte tag (36 bytes), in unpadded URL-safe base64.
const TOKEN_LEN: usize = 48;

/// Who a token is for: the listing (dialect and action, or `audit`) and the caller.
pub struct Scope<'a> {
    pub listing: &'a str,
    pub caller: &'a Caller,
    /// Anything else the position depends on (the audit listing's account).
    pub extra: &'a str,
}

impl Scope<'_> {
    fn aad(&self) -> Vec<u8> {
        format!(
            "{}\0{}\0{}\0{}",
            self.listing,
            self.caller.account_id,
            self.caller.principal_name(),
            self.extra
        )
        .into_bytes()
    }
}

fn cipher(key: &ServerKey) -> ChaCha20Poly1305 {
    let sub = Zeroizing::new(key.mac(PURPOSE, b""));
    ChaCha20Poly1305::new(Key::from_slice(sub.as_ref()))
}

/// The token for the next page at `position`, or `""` when there is no next page.
pub fn seal(key: &ServerKey, scope: &Scope<'_>, position: Option<i64>) -> String {
    let Some(position) = position else {
        return String::new();
    };
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher(key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &position.to_be_bytes(),
                aad: &scope.aad(),
            },
        )
        .expect("sealing in memory cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    B64.encode(out)
}

/// The position a token stands for; no token (or an empty one) is the first page.
pub fn open(key: &ServerKey, scope: &Scope<'_>, token: Option<&str>) -> Result<i64, CoreError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    if token.len() != TOKEN_LEN {
        return Err(CoreError::InvalidNextToken);
    }
    let raw = B64.decode(token).map_err(|_| CoreError::InvalidNextToken)?;
    let (nonce, ct) = raw.split_at(NONCE_LEN.min(raw.len()));
    let pt = cipher(key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &scope.aad(),
            },
        )
        .map_err(|_| CoreError::InvalidNextToken)?;
    let bytes: [u8; 8] = pt
        .as_slice()
        .try_into()
        .map_err(|_| CoreError::InvalidNextToken)?;
    Ok(i64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;

    fn caller(account: &str, principal: Principal) -> Caller {
        Caller {
            account_id: account.into(),
            access_key_id: "LTAI".into(),
            principal,
            source_ip: None,
            policies: vec![],
        }
    }

    #[test]
    fn a_token_opens_only_for_its_caller_and_listing_under_the_same_key() {
        let key = ServerKey::generate();
        let (a, b) = (caller("1", Principal::Root), caller("2", Principal::Root));
        let user = caller("1", Principal::User("u".into()));
        let scope = |c, listing| Scope {
            listing,
            caller: c,
            extra: "",
        };
        let t = seal(&key, &scope(&a, "volc.DescribeKeyPairs"), Some(42));
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(!t.contains("42"));
        assert_eq!(
            open(&key, &scope(&a, "volc.DescribeKeyPairs"), Some(&t)),
            Ok(42)
        );
        let again = ServerKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(
            open(&again, &scope(&a, "volc.DescribeKeyPairs"), Some(&t)),
            Ok(42)
        );
        for (k, s) in [
            (&key, scope(&b, "volc.DescribeKeyPairs")),
            (&key, scope(&user, "volc.DescribeKeyPairs")),
            (&key, scope(&a, "volc.DescribeInstances")),
            (&ServerKey::generate(), scope(&a, "volc.DescribeKeyPairs")),
        ] {
            assert_eq!(open(k, &s, Some(&t)), Err(CoreError::InvalidNextToken));
        }
        let s = scope(&a, "volc.DescribeKeyPairs");
        assert_eq!(seal(&key, &s, None), "");
        assert_eq!(open(&key, &s, None), Ok(0));
        assert_eq!(open(&key, &s, Some("")), Ok(0));
        for bad in [
            "kp1.5",
            "5",
            "garbage",
            &"A".repeat(TOKEN_LEN),
            &"é".repeat(24),
        ] {
            assert_eq!(
                open(&key, &s, Some(bad)),
                Err(CoreError::InvalidNextToken),
                "{bad}"
            );
        }
    }
}
