//! AccessKeys as last read. Every signed call looks its AccessKey up, and on SQLite that was one of
//! the three statements of a DescribeKeyPairs (docs/BENCHMARKS.md, run 10). The cache is emptied
//! after every change to an AccessKey: on SQLite every change goes through this process's store; on
//! PostgreSQL a trigger announces every change (`NOTIFY`) and each server's listener empties its
//! cache, and while that listener is not connected the cache is paused (every lookup reads the
//! database), since a change could go unheard. A generation number keeps a read that raced with a
//! change from putting the old row back.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::AccessKeyRecord;

/// Enough for every key of a large installation; past it the cache starts over rather than grow.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub(crate) struct KeyCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    keys: HashMap<String, AccessKeyRecord>,
    /// Not trusted now: changes might not be heard (PostgreSQL's listener is not connected).
    paused: bool,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds plain data: a panic elsewhere cannot leave it half-changed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation to hand to [`KeyCache::put`]; read it before reading the database.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    pub(crate) fn get(&self, id: &str) -> Option<AccessKeyRecord> {
        let inner = self.lock();
        if inner.paused {
            return None;
        }
        inner.keys.get(id).cloned()
    }

    /// Keeps `key` unless an AccessKey changed since `generation` was read.
    pub(crate) fn put(&self, generation: u64, key: AccessKeyRecord) {
        let mut inner = self.lock();
        if inner.paused || inner.generation != generation {
            return;
        }
        if inner.keys.len() >= MAX_KEYS {
            inner.keys.clear();
        }
        inner.keys.insert(key.id.clone(), key);
    }

    /// After any change to an AccessKey has committed.
    pub(crate) fn forget_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.keys.clear();
    }

    /// A cache that starts paused, for a store whose changes are heard only once connected.
    pub(crate) fn paused() -> Self {
        let cache = Self::default();
        cache.pause();
        cache
    }

    /// Stops serving and keeping keys: changes may now go unheard.
    pub(crate) fn pause(&self) {
        let mut inner = self.lock();
        inner.paused = true;
        inner.generation += 1;
        inner.keys.clear();
    }

    /// Serves again, from empty: every change from now on is heard. A read that began before is
    /// not kept (the generation moves on).
    pub(crate) fn resume(&self) {
        let mut inner = self.lock();
        inner.paused = false;
        inner.generation += 1;
        inner.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, active: bool) -> AccessKeyRecord {
        AccessKeyRecord {
            id: id.into(),
            account_id: "a".into(),
            user_name: None,
            secret: "sealed".into(),
            active,
        }
    }

    #[test]
    fn a_read_that_raced_with_a_change_is_not_kept() {
        let cache = KeyCache::default();
        let before = cache.generation();
        // A change commits and empties the cache while the read is in flight...
        cache.forget_all();
        // ...so the row the read saw before the change must not come back.
        cache.put(before, key("LTAI1", true));
        assert_eq!(cache.get("LTAI1"), None);
        let now = cache.generation();
        cache.put(now, key("LTAI1", false));
        assert_eq!(cache.get("LTAI1"), Some(key("LTAI1", false)));
        cache.forget_all();
        assert_eq!(cache.get("LTAI1"), None);
    }

    #[test]
    fn a_paused_cache_serves_and_keeps_nothing_until_resumed() {
        let cache = KeyCache::paused();
        let g = cache.generation();
        cache.put(g, key("LTAI1", true));
        assert_eq!(cache.get("LTAI1"), None);
        // A read from before the resume is not kept after it either.
        cache.resume();
        cache.put(g, key("LTAI1", true));
        assert_eq!(cache.get("LTAI1"), None);
        let g = cache.generation();
        cache.put(g, key("LTAI1", true));
        assert!(cache.get("LTAI1").is_some());
        cache.pause();
        assert_eq!(cache.get("LTAI1"), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = KeyCache::default();
        let g = cache.generation();
        for i in 0..=MAX_KEYS {
            cache.put(g, key(&format!("LTAI{i}"), true));
        }
        assert!(cache.lock().keys.len() <= MAX_KEYS);
        assert!(cache.get(&format!("LTAI{MAX_KEYS}")).is_some());
    }
}
