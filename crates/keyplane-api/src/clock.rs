//! The simulated clock (SPEC section 14): what an emulator's timed rules read — transitions of
//! simulated instances, ClientToken expiry, token TTLs. It runs with the real clock, moved by an
//! offset that only an emulator's `clock advance`/`clock set` change; signature skew and the
//! replay window always use the real clock.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Default)]
pub struct Clock {
    offset_micros: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    /// Moves the clock `by` ahead.
    pub fn advance(&self, by: chrono::Duration) -> DateTime<Utc> {
        let micros = by.num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
        self.now()
    }

    /// Sets the clock to `at`, from which it runs on.
    pub fn set(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let offset = (at - Utc::now()).num_microseconds().unwrap_or(0);
        self.offset_micros.store(offset, Ordering::Relaxed);
        self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_runs_on_from_where_it_is_moved() {
        let c = Clock::default();
        assert!((c.now() - Utc::now()).num_seconds().abs() < 2);
        let ahead = c.advance(chrono::Duration::hours(25));
        assert!(
            (ahead - Utc::now() - chrono::Duration::hours(25))
                .num_seconds()
                .abs()
                < 2
        );
        let at = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        c.set(at);
        let now = c.now();
        assert!(now >= at && (now - at).num_seconds() < 2);
    }
}
