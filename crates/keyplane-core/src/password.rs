//! Console passwords of RAM users (CreateLoginProfile), kept only as argon2id hashes.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::CoreError;

/// 8–32 printable ASCII characters with at least three of: upper case, lower case, digits, symbols.
pub fn check_rules(password: &str) -> Result<(), CoreError> {
    let bad = |why: &str| Err(CoreError::InvalidPassword(why.to_string()));
    if !(8..=32).contains(&password.len()) {
        return bad("it must have 8 to 32 characters");
    }
    if !password.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("it may contain only printable ASCII characters without spaces");
    }
    let classes = [
        password.bytes().any(|b| b.is_ascii_uppercase()),
        password.bytes().any(|b| b.is_ascii_lowercase()),
        password.bytes().any(|b| b.is_ascii_digit()),
        password.bytes().any(|b| b.is_ascii_punctuation()),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        return bad("it needs three of: upper case, lower case, digits, symbols");
    }
    Ok(())
}

/// A PHC-format argon2id hash with a random salt (CPU-heavy: call it off the async executor).
pub fn hash(password: &str) -> Result<String, CoreError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CoreError::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches `stored` (constant time inside argon2).
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Whether `password` matches `stored`; with no stored hash (an unknown user, a user without a
/// console password, an AccessKey sign-in) it verifies against a dummy hash of the same
/// parameters and answers `false`, so every refusal costs one full argon2 verification and the
/// time taken tells nothing about which case it was.
pub fn verify_or_dummy(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hash("dummy-password-never-matches").expect("hashing the dummy password")
    });
    match stored {
        Some(stored) => verify(password, stored),
        None => {
            let _ = verify(password, &DUMMY);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_round_trip() {
        assert!(check_rules("Passw0rd!").is_ok());
        for bad in [
            "short1A",
            "alllowercase",
            "NoDigitsOrSymbols",
            "has space 1A",
            &"Aa1".repeat(11),
        ] {
            assert!(check_rules(bad).is_err(), "{bad}");
        }
        let h = hash("Passw0rd!").unwrap();
        assert!(h.starts_with("$argon2id$") && !h.contains("Passw0rd!"));
        assert!(verify("Passw0rd!", &h));
        assert!(!verify("Passw0rd?", &h));
        assert!(verify_or_dummy("Passw0rd!", Some(&h)));
        assert!(!verify_or_dummy("dummy-password-never-matches", None));
    }
}
