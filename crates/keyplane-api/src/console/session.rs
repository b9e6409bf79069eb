//! Console sessions: kept in the memory of the server that signed the browser in, and bound to
//! the credential they started with as the store holds it, so a change made through any server
//! sharing the store ends them.
//!
//! - A password session keeps the SHA-256 of the user's stored argon2 hash. Every hash has its own
//!   random salt, so setting the password again (CreateLoginProfile, UpdateLoginProfile, even to the
//!   same password) changes it; DeleteLoginProfile removes it; DeleteUser removes it with the user
//!   (the store cascades), and a new user of the same name has a new hash or none. Each use reads
//!   the hash again and compares.
//! - An AccessKey session reads its AccessKey on each use: disabled or deleted ends it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keyplane_core::{ids, CoreError};
use keyplane_store::AccessKeyRecord;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;

pub const TTL: Duration = Duration::from_secs(3600);

/// What a session was started with, as the store held it then.
#[derive(Clone)]
pub enum Binding {
    AccessKey,
    /// The SHA-256 of the login profile's argon2 hash.
    Password([u8; 32]),
}

impl Binding {
    pub fn password(stored_hash: &str) -> Self {
        Self::Password(Sha256::digest(stored_hash.as_bytes()).into())
    }

    fn digest(&self) -> &[u8] {
        match self {
            Self::AccessKey => &[],
            Self::Password(d) => d,
        }
    }
}

#[derive(Clone)]
pub struct Session {
    pub key: AccessKeyRecord,
    pub principal: String,
    pub csrf: String,
    pub binding: Binding,
    expires: Instant,
}

impl Session {
    /// Whether what the session started with is still what the store holds.
    pub async fn still_valid(&self, state: &AppState) -> Result<bool, CoreError> {
        match &self.binding {
            Binding::AccessKey => Ok(state
                .store
                .access_key(&self.key.id)
                .await?
                .is_some_and(|k| k.active && k.account_id == self.key.account_id)),
            Binding::Password(digest) => {
                let Some(user) = &self.key.user_name else {
                    return Ok(false);
                };
                let stored = state
                    .store
                    .login_profile(&self.key.account_id, user)
                    .await?;
                Ok(stored.is_some_and(|h| {
                    bool::from(Binding::password(&h).digest().ct_eq(digest.as_slice()))
                }))
            }
        }
    }
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session; returns its ID and CSRF token.
    pub fn insert(
        &self,
        key: AccessKeyRecord,
        principal: String,
        binding: Binding,
    ) -> (String, String) {
        let (id, csrf) = (
            ids::new_access_key_secret() + &ids::new_access_key_secret(),
            ids::new_access_key_secret(),
        );
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.expires > Instant::now());
        map.insert(
            id.clone(),
            Session {
                key,
                principal,
                csrf: csrf.clone(),
                binding,
                expires: Instant::now() + TTL,
            },
        );
        (id, csrf)
    }

    /// The unexpired session `id`, as it was signed in (check [`Session::still_valid`] before use).
    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.map.lock().expect("sessions lock");
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn remove(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }
}
