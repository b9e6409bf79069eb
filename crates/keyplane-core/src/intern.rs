//! Strings that live as long as the process, for the few values set at run time that travel where
//! the types hold `&'static str` (error codes): each distinct value is leaked once, and the number
//! of distinct values is capped so a caller cannot grow the process without bound.

use std::collections::HashSet;
use std::sync::Mutex;

/// The most distinct strings kept.
pub const MAX_STRINGS: usize = 4096;

static STRINGS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// `s` as a `&'static str`: the same pointer for the same text; `None` once [`MAX_STRINGS`]
/// distinct strings are kept.
pub fn intern(s: &str) -> Option<&'static str> {
    let mut guard = STRINGS.lock().unwrap_or_else(|p| p.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(kept) = set.get(s) {
        return Some(kept);
    }
    if set.len() >= MAX_STRINGS {
        return None;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    Some(leaked)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_text_is_the_same_string() {
        let a = super::intern("Throttling.User").unwrap();
        let b = super::intern(&String::from("Throttling.User")).unwrap();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "Throttling.User");
    }
}
