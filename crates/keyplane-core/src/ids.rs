//! Resource identifiers: a vendor-looking prefix plus 20 lowercase alphanumerics, and request IDs.
//!
//! Identifiers come from the thread's CSPRNG (ChaCha, seeded and reseeded from the OS): drawing
//! each character from the OS itself cost one `getrandom` system call per character, 5% of the
//! server's time under an ImportKeyPair load. Secrets are drawn from a generator seeded by one
//! OS read of their own, so no secret shares a generator with anything a caller can see.

use rand::{rngs::OsRng, rngs::StdRng, Rng, SeedableRng};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn suffix_from(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn random_suffix(len: usize) -> String {
    suffix_from(&mut rand::thread_rng(), len)
}

/// A new request ID in the vendors' form (an upper-case UUID version 4).
pub fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::thread_rng().gen())
        .into_uuid()
        .to_string()
        .to_uppercase()
}

/// A new key pair ID, `kp-` and 20 characters.
pub fn new_key_pair_id() -> String {
    format!("kp-{}", random_suffix(20))
}

/// A new instance ID, `i-` and 20 characters.
pub fn new_instance_id() -> String {
    format!("i-{}", random_suffix(20))
}

/// A new registration token ID, `rt-` and 20 characters: the public handle that lists and revokes
/// a token (the token itself is a separate secret).
pub fn new_registration_token_id() -> String {
    format!("rt-{}", random_suffix(20))
}

/// A new 16-digit account ID that does not start with 0.
pub fn new_account_id() -> String {
    let mut rng = rand::thread_rng();
    let first = rng.gen_range(1..10);
    let rest: String = (0..15)
        .map(|_| char::from(b'0' + rng.gen_range(0..10)))
        .collect();
    format!("{first}{rest}")
}

/// A fresh AccessKey ID in the vendor's look (`LTAI` + 20 alphanumerics).
pub fn new_access_key_id() -> String {
    format!("LTAI{}", random_suffix(20))
}

/// A fresh AccessKey secret: 30 alphanumerics, about 155 bits.
pub fn new_access_key_secret() -> String {
    let mut rng = StdRng::from_rng(OsRng).expect("the OS random source");
    suffix_from(&mut rng, 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape() {
        let kp = new_key_pair_id();
        assert!(kp.starts_with("kp-") && kp.len() == 23);
        let i = new_instance_id();
        assert!(i.starts_with("i-") && i.len() == 22);
        assert!(i[2..].bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(new_account_id().len(), 16);
        assert_ne!(new_instance_id(), new_instance_id());
        let rt = new_registration_token_id();
        assert!(rt.starts_with("rt-") && rt.len() == 23);
    }
}
