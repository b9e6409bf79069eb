//! Signature nonces are single-use for 15 minutes.
//!
//! Checking them must not turn every read into a synchronous disk write (SPEC section 13), so the
//! set lives in memory and is written through to the store in batches every 100 ms; a restart
//! reloads the last 15 minutes, so a replay after a restart is still refused (only a replay within
//! the same 100 ms as a crash could slip through). Each server keeps its own set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use keyplane_store::Store;

pub struct NonceCache {
    store: Arc<dyn Store>,
    seen: Mutex<HashMap<(String, String), DateTime<Utc>>>,
    unflushed: Mutex<Vec<(String, String, DateTime<Utc>)>>,
}

const WINDOW_MINUTES: i64 = 15;

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
    pub fn use_once(&self, access_key_id: &str, nonce: &str) -> bool {
        let now = Utc::now();
        let key = (access_key_id.to_string(), nonce.to_string());
        {
            let mut seen = self.seen.lock().expect("nonce lock");
            if let Some(at) = seen.get(&key) {
                if now - *at < chrono::Duration::minutes(WINDOW_MINUTES) {
                    return false;
                }
            }
            seen.insert(key.clone(), now);
        }
        self.unflushed
            .lock()
            .expect("nonce lock")
            .push((key.0, key.1, now));
        true
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
