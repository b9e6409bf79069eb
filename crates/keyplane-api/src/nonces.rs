//! Signature nonces are single-use for 15 minutes.
//!
//! Checking them must not turn every read into a synchronous disk write (SPEC section 13), so the
//! set lives in memory and is written through to the store in batches every 100 ms; a restart
//! reloads the last 15 minutes, so a replay after a restart is still refused (only a replay within
//! the same 100 ms as a crash could slip through).
//!
//! Servers that share a store (PostgreSQL) cannot see each other's memory, so there every nonce is
//! also claimed in the store before the call runs: one insert per signed call, the price of
//! refusing a replay sent to another server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use keyplane_core::CoreError;
use keyplane_store::{Store, NONCE_WINDOW_MINUTES as WINDOW_MINUTES};

pub struct NonceCache {
    store: Arc<dyn Store>,
    seen: Mutex<HashMap<(String, String), DateTime<Utc>>>,
    unflushed: Mutex<Vec<(String, String, DateTime<Utc>)>>,
}

impl NonceCache {
    pub async fn load(store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let now = Utc::now();
        let since = now - chrono::Duration::minutes(WINDOW_MINUTES);
        let seen = store
            .recent_nonces(since)
            .await?
            .into_iter()
            .map(|k| (k, now))
            .collect();
        Ok(Self {
            store,
            seen: Mutex::new(seen),
            unflushed: Mutex::new(Vec::new()),
        })
    }

    /// Marks the nonce used; false if it was already used within the window.
    pub async fn use_once(&self, access_key_id: &str, nonce: &str) -> Result<bool, CoreError> {
        let now = Utc::now();
        let key = (access_key_id.to_string(), nonce.to_string());
        {
            let mut seen = self.seen.lock().expect("nonce lock");
            if let Some(at) = seen.get(&key) {
                if now - *at < chrono::Duration::minutes(WINDOW_MINUTES) {
                    return Ok(false);
                }
            }
            seen.insert(key.clone(), now);
        }
        if self.store.shared() {
            let fresh = self.store.claim_nonce(&key.0, &key.1, now).await;
            if !matches!(fresh, Ok(true)) {
                // Not ours (another server had it) or not recorded: forget it here too, so that an
                // unreachable store does not turn a retry into a replay.
                self.seen.lock().expect("nonce lock").remove(&key);
            }
            return fresh;
        }
        self.unflushed
            .lock()
            .expect("nonce lock")
            .push((key.0, key.1, now));
        Ok(true)
    }

    /// Writes the nonces used since the last flush.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut *self.unflushed.lock().expect("nonce lock"));
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.record_nonces(&batch).await {
            // Put them back so the next flush retries them.
            self.unflushed.lock().expect("nonce lock").extend(batch);
            return Err(e.into());
        }
        Ok(())
    }

    /// Forgets nonces older than the window, in memory and in the store.
    pub async fn purge(&self) {
        let cutoff = Utc::now() - chrono::Duration::minutes(WINDOW_MINUTES);
        self.seen
            .lock()
            .expect("nonce lock")
            .retain(|_, at| *at >= cutoff);
        if let Err(e) = self.store.purge_nonces(cutoff).await {
            tracing::warn!(error = %e, "purging nonces failed");
        }
    }
}
