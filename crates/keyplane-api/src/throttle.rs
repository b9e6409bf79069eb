//! Throttling per AccessKey and action, a token bucket (GCRA). One server keeps its buckets in
//! memory; servers that share a store (PostgreSQL) keep them in the store, so a caller gets the
//! same allowance however a load balancer spreads its calls.
//! Each dialect renders a refusal its own way (Alibaba `Throttling`, Volcengine 429
//! `FlowLimitExceeded`, which the Volcengine SDK backs off on).

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota};
use keyplane_core::CoreError;
use keyplane_store::Store;

pub struct Throttle {
    rate: Option<(u32, u32)>,
    local: Option<DefaultKeyedRateLimiter<(String, String)>>,
    shared: Option<Arc<dyn Store>>,
}

impl Throttle {
    /// `per_second` calls per AccessKey and action, bursts of `burst`; 0 turns throttling off.
    pub fn new(per_second: u32, burst: u32, store: &Arc<dyn Store>) -> Self {
        let Some(rate) = NonZeroU32::new(per_second) else {
            return Self {
                rate: None,
                local: None,
                shared: None,
            };
        };
        let burst = burst.max(1);
        if store.shared() {
            return Self {
                rate: Some((per_second, burst)),
                local: None,
                shared: Some(store.clone()),
            };
        }
        let quota = Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).expect("nonzero"));
        Self {
            rate: Some((per_second, burst)),
            local: Some(governor::RateLimiter::keyed(quota)),
            shared: None,
        }
    }

    /// `Throttled` when the call must wait; `ServiceUnavailable` when shared buckets are out of
    /// reach.
    pub async fn check(&self, access_key_id: &str, action: &str) -> Result<(), CoreError> {
        let allowed = match (&self.local, &self.shared, self.rate) {
            (Some(l), _, _) => l
                .check_key(&(access_key_id.to_string(), action.to_string()))
                .is_ok(),
            (None, Some(store), Some((per_second, burst))) => {
                store
                    .throttle(access_key_id, action, per_second, burst)
                    .await?
            }
            _ => true,
        };
        if allowed {
            Ok(())
        } else {
            Err(CoreError::Throttled)
        }
    }

    /// Drops the state of idle keys so memory follows the active callers, not all callers ever.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.local {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buckets kept in memory follow the callers active now: every AccessKey and action ever
    /// seen would otherwise stay for the life of the process (the maintenance loop calls
    /// `forget_idle` every minute).
    #[tokio::test]
    async fn idle_buckets_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store: Arc<dyn Store> = Arc::new(
            keyplane_store::sqlite::SqliteStore::open(path.to_str().unwrap())
                .await
                .unwrap(),
        );
        // 1,000 calls a second with no burst: a bucket is back to full 1 ms after its call.
        let throttle = Throttle::new(1000, 1, &store);
        let local = throttle.local.as_ref().unwrap();
        for n in 0..1000 {
            throttle
                .check(&format!("LTAI{n}"), "DescribeRegions")
                .await
                .unwrap();
        }
        assert_eq!(local.len(), 1000);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        throttle.forget_idle();
        assert_eq!(local.len(), 0);
        // A caller that comes back starts with a full bucket, as a new one would.
        assert!(throttle.check("LTAI1", "DescribeRegions").await.is_ok());
    }
}
