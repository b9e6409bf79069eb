//! The console sign-in throttle: failed sign-ins per source address, checked before any password
//! is hashed.
//!
//! Only failures count, so people behind one NAT who type their password right are never slowed
//! down, while a guesser is: a short bucket (a burst of [`SHORT_BURST`], then one failure per
//! [`SHORT_INTERVAL`]) and a long one ([`LONG_BURST`] failures, then one per [`LONG_INTERVAL`]),
//! which locks an address out for longer once it keeps failing. Both are GCRA buckets
//! (a theoretical arrival time per address), the algorithm `governor` uses; governor itself has no
//! way to look at a bucket without charging it, which counting only failures needs.
//! IPv6 addresses are keyed by their /64, which one host usually holds whole.
//!
//! Memory is bounded: at most [`MAX_ADDRESSES`] addresses are tracked; addresses whose buckets are
//! full again are dropped first, and while the table is full of addresses still failing, a new
//! address is refused too (fail closed: a flood from that many addresses is an attack).
//! Each server keeps its own table: with N servers a guesser gets N times the allowance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SHORT_BURST: u32 = 5;
pub const SHORT_INTERVAL: Duration = Duration::from_secs(1);
pub const LONG_BURST: u32 = 30;
pub const LONG_INTERVAL: Duration = Duration::from_secs(60);
pub const MAX_ADDRESSES: usize = 65_536;

#[derive(Clone, Copy)]
struct Buckets {
    short: Instant,
    long: Instant,
}

#[derive(Default)]
pub struct SignInGuard {
    table: Mutex<HashMap<IpAddr, Buckets>>,
}

/// When a bucket whose theoretical arrival time is `tat` takes its next failure, or `None` now.
fn wait(tat: Instant, now: Instant, burst: u32, interval: Duration) -> Option<Duration> {
    let tolerance = interval * (burst - 1);
    let ahead = tat.saturating_duration_since(now);
    (ahead > tolerance).then(|| ahead - tolerance)
}

fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl SignInGuard {
    /// Admits one sign-in attempt from `ip`, or `Err(retry_after)` while it may not try. The attempt
    /// is charged as a failure at once, so concurrent attempts cannot all pass the check before any
    /// of them has failed (the attacker pass of issue 13 got 20 guesses through a burst of 5 that
    /// way); [`SignInGuard::refund`] gives the charge back when the attempt did not fail.
    pub fn begin(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut table = self.table.lock().expect("sign-in guard lock");
        if let Some(b) = table.get(&key(ip)) {
            let short = wait(b.short, now, SHORT_BURST, SHORT_INTERVAL);
            let long = wait(b.long, now, LONG_BURST, LONG_INTERVAL);
            if let Some(w) = short.max(long) {
                return Err(w);
            }
        } else if table.len() >= MAX_ADDRESSES {
            table.retain(|_, b| b.short > now || b.long > now);
            if table.len() >= MAX_ADDRESSES {
                // Fail closed: a flood from that many addresses still failing is an attack.
                return Err(SHORT_INTERVAL);
            }
        }
        let b = table.entry(key(ip)).or_insert(Buckets {
            short: now,
            long: now,
        });
        b.short = b.short.max(now) + SHORT_INTERVAL;
        b.long = b.long.max(now) + LONG_INTERVAL;
        Ok(())
    }

    /// Gives back the charge of an attempt that did not fail: a valid credential, or one the
    /// server could not check (busy).
    pub fn refund(&self, ip: IpAddr) {
        let mut table = self.table.lock().expect("sign-in guard lock");
        if let Some(b) = table.get_mut(&key(ip)) {
            b.short = b.short.checked_sub(SHORT_INTERVAL).unwrap_or(b.short);
            b.long = b.long.checked_sub(LONG_INTERVAL).unwrap_or(b.long);
        }
    }

    /// Drops addresses whose buckets are full again, so the table follows current failures.
    pub fn forget_idle(&self) {
        let now = Instant::now();
        self.table
            .lock()
            .expect("sign-in guard lock")
            .retain(|_, b| b.short > now || b.long > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_burst_of_failures_and_others_are_not() {
        let guard = SignInGuard::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..SHORT_BURST {
            assert!(guard.begin(a).is_ok());
        }
        let retry = guard.begin(a).unwrap_err();
        assert!(retry > Duration::ZERO && retry <= SHORT_INTERVAL);
        assert!(guard.begin(b).is_ok());
    }

    #[test]
    fn attempts_still_running_count_so_a_concurrent_burst_gets_no_more_than_the_burst() {
        let guard = SignInGuard::default();
        let a: IpAddr = "192.0.2.3".parse().unwrap();
        // 60 attempts begun before any has finished: only the burst is admitted.
        let admitted = (0..60).filter(|_| guard.begin(a).is_ok()).count();
        assert_eq!(admitted, SHORT_BURST as usize);
    }

    #[test]
    fn attempts_that_did_not_fail_are_refunded() {
        let guard = SignInGuard::default();
        let a: IpAddr = "192.0.2.4".parse().unwrap();
        for _ in 0..(LONG_BURST * 3) {
            assert!(guard.begin(a).is_ok());
            guard.refund(a);
        }
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket() {
        let guard = SignInGuard::default();
        for i in 0..SHORT_BURST {
            guard
                .begin(format!("2001:db8::{i}").parse().unwrap())
                .unwrap();
        }
        assert!(guard.begin("2001:db8::ffff".parse().unwrap()).is_err());
        assert!(guard.begin("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let guard = SignInGuard::default();
        guard.table.lock().unwrap().insert(
            "192.0.2.9".parse().unwrap(),
            Buckets {
                short: Instant::now(),
                long: Instant::now(),
            },
        );
        guard.forget_idle();
        assert!(guard.table.lock().unwrap().is_empty());
    }
}
