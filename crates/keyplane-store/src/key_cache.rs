//! AccessKeys as last read, for a store that one process owns (SQLite). Every signed call looks its
//! AccessKey up, and on SQLite that was one of the three statements of a DescribeKeyPairs
//! (docs/BENCHMARKS.md, run 10). Every change to an AccessKey goes through this process's store,
//! which empties the cache after it commits; a generation number keeps a read that raced with such a
//! change from putting the old row back. Stores shared by several servers (PostgreSQL) do not cache:
//! another server's change would not reach this one.

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
        self.lock().keys.get(id).cloned()
    }

    /// Keeps `key` unless an AccessKey changed since `generation` was read.
    pub(crate) fn put(&self, generation: u64, key: AccessKeyRecord) {
        let mut inner = self.lock();
        if inner.generation != generation {
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
