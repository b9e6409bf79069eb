//! Signature nonces are single-use for as long as their request's timestamp is acceptable.
//!
//! A timestamp may be up to 15 minutes ahead of the server clock, so "15 minutes from first use"
//! is not enough: a request dated 14 minutes ahead would be accepted again 15 to 29 minutes later.
//! Each use is therefore recorded at the later of now and the signed timestamp, and remembered for
//! the window from that instant, which covers every moment the timestamp passes the skew check.
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
    /// Each use as the first 128 bits of SHA-256 over the AccessKey ID and the nonce, with the
    /// instant (Unix microseconds) it is remembered from: about 30 bytes a use instead of two
    /// strings and a timestamp (about 180). The set holds every use of the last 15 minutes, so its
    /// size follows the call rate (docs/BENCHMARKS.md, run 12); a collision of 128-bit digests,
    /// which would refuse one fresh request, is not a practical concern.
    seen: Mutex<HashMap<u128, i64>>,
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
            .map(|(ak, nonce, at)| (digest(&ak, &nonce), at.timestamp_micros()))
            .collect();
        Ok(Self {
            store,
            seen: Mutex::new(seen),
            unflushed: Mutex::new(Vec::new()),
        })
    }

    /// Marks the nonce of a request signed at `signed_at` used; false if it was already used
    /// within the window.
    pub async fn use_once(
        &self,
        access_key_id: &str,
        nonce: &str,
        signed_at: DateTime<Utc>,
    ) -> Result<bool, CoreError> {
        self.use_once_at(access_key_id, nonce, signed_at, Utc::now())
            .await
    }

    async fn use_once_at(
        &self,
        access_key_id: &str,
        nonce: &str,
        signed_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, CoreError> {
        // The instant the use is remembered from (see the module doc).
        let now = now.max(signed_at);
        let key = digest(access_key_id, nonce);
        let window = chrono::Duration::minutes(WINDOW_MINUTES)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        {
            let mut seen = self.seen.lock().expect("nonce lock");
            if let Some(at) = seen.get(&key) {
                // `<=`: the skew check accepts a timestamp exactly at the window's edge.
                if now.timestamp_micros() - *at <= window {
                    return Ok(false);
                }
            }
            seen.insert(key, now.timestamp_micros());
        }
        if self.store.shared() {
            let fresh = self.store.claim_nonce(access_key_id, nonce, now).await;
            if !matches!(fresh, Ok(true)) {
                // Not ours (another server had it) or not recorded: forget it here too, so that an
                // unreachable store does not turn a retry into a replay.
                self.seen.lock().expect("nonce lock").remove(&key);
            }
            return fresh;
        }
        self.unflushed.lock().expect("nonce lock").push((
            access_key_id.to_string(),
            nonce.to_string(),
            now,
        ));
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
        let cutoff_micros = cutoff.timestamp_micros();
        self.seen
            .lock()
            .expect("nonce lock")
            .retain(|_, at| *at >= cutoff_micros);
        if let Err(e) = self.store.purge_nonces(cutoff).await {
            tracing::warn!(error = %e, "purging nonces failed");
        }
    }
}

/// The set's key for a use: 128 bits of SHA-256 over the AccessKey ID (length-prefixed, so no two
/// pairs run together the same) and the nonce.
fn digest(access_key_id: &str, nonce: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((access_key_id.len() as u64).to_be_bytes());
    h.update(access_key_id.as_bytes());
    h.update(nonce.as_bytes());
    let d = h.finalize();
    u128::from_be_bytes(d[..16].try_into().expect("a SHA-256 digest has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        let path = dir.path().join("k.db");
        Arc::new(
            keyplane_store::sqlite::SqliteStore::open(path.to_str().unwrap())
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_request_dated_ahead_is_refused_on_replay_for_as_long_as_its_timestamp_is_acceptable()
    {
        let dir = tempfile::tempdir().unwrap();
        let cache = NonceCache::load(store(&dir).await).await.unwrap();
        let t0 = Utc::now();
        let signed = t0 + Duration::minutes(14);
        assert!(cache.use_once_at("ak", "n", signed, t0).await.unwrap());
        // 20 minutes later the timestamp is 6 minutes old, so it passes the skew check: the
        // nonce must still be known.
        let later = t0 + Duration::minutes(20);
        assert!(!cache.use_once_at("ak", "n", signed, later).await.unwrap());
        // Also after a restart, from what was written through.
        cache.flush().await.unwrap();
        let restarted = NonceCache::load(store(&dir).await).await.unwrap();
        assert!(!restarted
            .use_once_at("ak", "n", signed, later)
            .await
            .unwrap());
        // Once the timestamp is out of the window, the nonce may be forgotten.
        let past = signed + Duration::minutes(WINDOW_MINUTES) + Duration::seconds(1);
        assert!(restarted
            .use_once_at("ak", "n", signed, past)
            .await
            .unwrap());
    }

    #[test]
    fn the_access_key_and_the_nonce_cannot_run_together() {
        assert_ne!(digest("ak", "1n"), digest("ak1", "n"));
        assert_eq!(digest("ak", "n"), digest("ak", "n"));
    }

    #[tokio::test]
    async fn a_nonce_is_per_access_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = NonceCache::load(store(&dir).await).await.unwrap();
        let t0 = Utc::now();
        assert!(cache.use_once_at("ak1", "n", t0, t0).await.unwrap());
        assert!(cache.use_once_at("ak2", "n", t0, t0).await.unwrap());
        assert!(!cache.use_once_at("ak1", "n", t0, t0).await.unwrap());
    }
}
