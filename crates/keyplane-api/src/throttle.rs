//! Throttling per AccessKey and action, a token bucket (GCRA) kept in memory per server.
//! Each dialect renders a refusal its own way (Alibaba `Throttling`, Volcengine 429
//! `FlowLimitExceeded`, which the Volcengine SDK backs off on).

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

pub struct Throttle {
    limiter: Option<DefaultKeyedRateLimiter<(String, String)>>,
}

impl Throttle {
    /// `per_second` calls per AccessKey and action, bursts of `burst`; 0 turns throttling off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(1)).expect("at least one");
            governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self { limiter }
    }

    /// Whether the call may go ahead.
    pub fn allow(&self, access_key_id: &str, action: &str) -> bool {
        match &self.limiter {
            None => true,
            Some(l) => l
                .check_key(&(access_key_id.to_string(), action.to_string()))
                .is_ok(),
        }
    }

    /// Drops the state of idle keys so memory follows the active callers, not all callers ever.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
        }
    }
}
