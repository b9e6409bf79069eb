//! Instance login passwords (RunInstances and ModifyInstanceAttribute `Password`): the vendors'
//! rules, and the salted SHA-512 crypt hash that is all keyplane keeps or sends (SPEC section 3,
//! "Password reset"). The plaintext lives only in the request being handled.

use sha_crypt::{sha512_simple, Sha512Params};
use zeroize::Zeroizing;

use crate::model::OsType;
use crate::CoreError;

/// The special characters both vendors list for instance passwords.
pub const SPECIALS: &str = "()`~!@#$%^&*-_+=|{}[]:;'<>,.?/";

/// Whose rule a password is checked against: the two vendors differ only in the prefixes they refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// 8–30 characters, three of the four classes; a Windows password may not start with `/`.
    Alibaba,
    /// The same, and no password may start with `/` or `$6$` (it would read as a crypt hash).
    Volcengine,
}

/// Checks `password` against the vendor rule for an instance of `os`; the error says which part failed.
pub fn check(password: &str, os: OsType, rule: Rule) -> Result<(), CoreError> {
    let bad = |why: &str| Err(CoreError::InvalidInstancePassword(why.to_string()));
    if !password.is_ascii() {
        return bad("it may contain only ASCII letters, digits and the listed special characters");
    }
    if !(8..=30).contains(&password.len()) {
        return bad("it must have 8 to 30 characters");
    }
    if let Some(c) = password
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !SPECIALS.contains(*c))
    {
        let shown = if c.is_ascii_graphic() {
            format!("{c:?}")
        } else {
            "a space or control character".into()
        };
        return bad(&format!("{shown} is not an allowed character"));
    }
    let classes = [
        password.bytes().any(|b| b.is_ascii_uppercase()),
        password.bytes().any(|b| b.is_ascii_lowercase()),
        password.bytes().any(|b| b.is_ascii_digit()),
        password.chars().any(|c| SPECIALS.contains(c)),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        return bad("it needs three of: upper case, lower case, digits, special characters");
    }
    let slash_refused = rule == Rule::Volcengine || os == OsType::Windows;
    if slash_refused && password.starts_with('/') {
        return bad("it may not start with /");
    }
    if rule == Rule::Volcengine && password.starts_with("$6$") {
        return bad("it may not start with $6$");
    }
    Ok(())
}

/// A salted SHA-512 crypt hash (`$6$…`), what `chpasswd -e` and /etc/shadow take.
pub fn hash(password: &str) -> Result<String, CoreError> {
    let password = Zeroizing::new(password.to_string());
    let params = Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|_| CoreError::Internal("SHA-512 crypt parameters".into()))?;
    sha512_simple(&password, &params)
        .map_err(|_| CoreError::Internal("SHA-512 crypt failed".into()))
}

/// Whether `hash` is a whole SHA-512 crypt hash: `$6$[rounds=N$]salt$hash`, the salt 1 to 16 and
/// the hash exactly 86 characters of crypt's alphabet (`./0-9A-Za-z`), N from 1,000 to
/// 999,999,999 as glibc takes it. Anything less (`$6$`, `$6$$`) would lock the password while a
/// reset is reported applied, so an agent refuses it.
pub fn is_crypt_hash(hash: &str) -> bool {
    let crypt64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    let Some(rest) = hash.strip_prefix("$6$") else {
        return false;
    };
    let rest = match rest.strip_prefix("rounds=") {
        None => rest,
        Some(r) => {
            let Some((n, after)) = r.split_once('$') else {
                return false;
            };
            let valid = !n.starts_with('0')
                && n.bytes().all(|b| b.is_ascii_digit())
                && n.parse::<u64>()
                    .is_ok_and(|n| (1_000..=999_999_999).contains(&n));
            if !valid {
                return false;
            }
            after
        }
    };
    match rest.split_once('$') {
        Some((salt, digest)) => {
            (1..=16).contains(&salt.len()) && crypt64(salt) && digest.len() == 86 && crypt64(digest)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendor_rule_accepts_three_classes_of_eight_to_thirty_characters() {
        for ok in [
            "Abcdef12",
            "abc123!@",
            "ABC123()",
            "Test123456&$",
            "password@123",
            "aA1`~!@#$%^&*-_+=|{}[]:;'<>,.?",
        ] {
            assert_eq!(check(ok, OsType::Linux, Rule::Alibaba), Ok(()), "{ok}");
            assert_eq!(check(ok, OsType::Linux, Rule::Volcengine), Ok(()), "{ok}");
        }
    }

    #[test]
    fn every_broken_rule_is_refused_with_its_reason() {
        let cases = [
            ("Ab1!xyz", "8 to 30"),
            ("Ab1!Ab1!Ab1!Ab1!Ab1!Ab1!Ab1!Ab1", "8 to 30"),
            ("abcdefgh12", "three of"),
            ("ABCDEFGH!!", "three of"),
            ("Abc 1234!", "not an allowed character"),
            ("Abc\"1234!", "not an allowed character"),
            ("Abc\\1234!", "not an allowed character"),
            ("Abc\t1234!", "not an allowed character"),
            ("Pässword12!", "ASCII"),
            ("密码Password1!", "ASCII"),
        ];
        for (pw, why) in cases {
            for rule in [Rule::Alibaba, Rule::Volcengine] {
                match check(pw, OsType::Linux, rule) {
                    Err(CoreError::InvalidInstancePassword(r)) => {
                        assert!(r.contains(why), "{pw}: {r}")
                    }
                    other => panic!("{pw}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_prefixes_each_vendor_refuses() {
        assert_eq!(check("/Abcdef12", OsType::Linux, Rule::Alibaba), Ok(()));
        assert!(check("/Abcdef12", OsType::Windows, Rule::Alibaba).is_err());
        assert!(check("/Abcdef12", OsType::Linux, Rule::Volcengine).is_err());
        assert!(check("$6$Abcdef12", OsType::Linux, Rule::Volcengine).is_err());
        assert_eq!(check("$6$Abcdef12", OsType::Linux, Rule::Alibaba), Ok(()));
    }

    #[test]
    fn the_hash_is_salted_sha512_crypt_that_verifies() {
        let a = hash("Abcdef12!").unwrap();
        let b = hash("Abcdef12!").unwrap();
        assert!(a.starts_with("$6$") && is_crypt_hash(&a), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(!a.contains("Abcdef12!"));
        assert!(sha_crypt::sha512_check("Abcdef12!", &a).is_ok());
        assert!(sha_crypt::sha512_check("Abcdef12?", &a).is_err());
        assert!(!is_crypt_hash("Abcdef12!"));
        assert!(!is_crypt_hash("$6$abc\n"));
    }

    #[test]
    fn only_whole_sha512_crypt_hashes_pass() {
        let digest = "a".repeat(86);
        for ok in [
            format!("$6$salt${digest}"),
            format!("$6$rounds=5000$saltsaltsaltsalt${digest}"),
            format!("$6$./Az09${digest}"),
        ] {
            assert!(is_crypt_hash(&ok), "{ok}");
        }
        for bad in [
            "$6$".to_string(),
            "$6$$".to_string(),
            "$6$salt$".to_string(),
            format!("$6$${digest}"),
            format!("$6$salt${}", "a".repeat(85)),
            format!("$6$salt${}", "a".repeat(87)),
            format!("$6$salt_x${digest}"),
            format!("$6$saltsaltsaltsalts${digest}"),
            format!("$6$rounds=999$salt${digest}"),
            format!("$6$rounds=05000$salt${digest}"),
            format!("$6$rounds=$salt${digest}"),
            format!("$5$salt${digest}"),
            format!("$6$salt${digest}\nroot:x"),
        ] {
            assert!(!is_crypt_hash(&bad), "{bad}");
        }
    }
}
