//! An AccessKey secret that cannot leak through `Debug` or linger in memory.

use zeroize::Zeroizing;

/// The secret half of an AccessKey. Printed as a placeholder, wiped on drop.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<String>);

impl SecretKey {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The raw secret, for computing an HMAC or storing it encrypted; never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let s = SecretKey::new("very-secret");
        assert_eq!(format!("{s:?}"), "SecretKey(***)");
    }
}
