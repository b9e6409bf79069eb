//! AccessKey secrets at rest: sealed with the server key (ChaCha20-Poly1305), the AccessKey ID as
//! associated data so a sealed secret cannot be moved to another key's row. The HMAC signatures
//! need the plaintext secret, so it must be recoverable: hashing is not an option.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::CoreError;

const PREFIX: &str = "v1:";

/// The server's 256-bit sealing key. Printed as a placeholder, wiped on drop.
#[derive(Clone)]
pub struct ServerKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(***)")
    }
}

impl ServerKey {
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        Self(k)
    }

    /// From its base64 form (what `to_base64` writes to the key file).
    pub fn from_base64(text: &str) -> Result<Self, CoreError> {
        let bytes = Zeroizing::new(
            B64.decode(text.trim())
                .map_err(|_| CoreError::Internal("the server key is not base64".into()))?,
        );
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CoreError::Internal("the server key must be 32 bytes".into()))?;
        Ok(Self(Zeroizing::new(arr)))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(self.0.as_ref()))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.0.as_ref()))
    }

    /// A keyed digest of `data` for `purpose` (HMAC-SHA256 under a key derived from this one):
    /// lets a secret be compared later without keeping anything that can be guessed offline.
    pub fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut derive =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.0.as_ref()).expect("any key size");
        derive.update(purpose.as_bytes());
        let subkey: Zeroizing<[u8; 32]> = Zeroizing::new(derive.finalize().into_bytes().into());
        let mut m =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(subkey.as_ref()).expect("any key size");
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// Seals `secret` for the AccessKey `key_id`: `v1:` + base64(nonce ‖ ciphertext).
    pub fn seal(&self, key_id: &str, secret: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: key_id.as_bytes(),
                },
            )
            .expect("sealing in memory cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Opens what [`ServerKey::seal`] produced for the same `key_id`.
    pub fn open(&self, key_id: &str, sealed: &str) -> Result<Zeroizing<String>, CoreError> {
        let bad = || {
            CoreError::Internal(format!(
                "the secret of AccessKey {key_id} cannot be opened with this server key"
            ))
        };
        let raw = B64
            .decode(sealed.strip_prefix(PREFIX).ok_or_else(bad)?)
            .map_err(|_| bad())?;
        if raw.len() < 12 {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        Ok(Zeroizing::new(String::from_utf8(pt).map_err(|_| bad())?))
    }

    /// Whether a stored value is sealed (older stores kept secrets as given).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_key_id() {
        let k = ServerKey::generate();
        let sealed = k.seal("LTAI1", "s3cret");
        assert!(ServerKey::is_sealed(&sealed) && !sealed.contains("s3cret"));
        assert_eq!(k.open("LTAI1", &sealed).unwrap().as_str(), "s3cret");
        assert!(
            k.open("LTAI2", &sealed).is_err(),
            "bound to its AccessKey ID"
        );
        assert!(ServerKey::generate().open("LTAI1", &sealed).is_err());
        assert_ne!(k.seal("LTAI1", "s3cret"), sealed, "a fresh nonce each time");
        let again = ServerKey::from_base64(&k.to_base64()).unwrap();
        assert_eq!(again.open("LTAI1", &sealed).unwrap().as_str(), "s3cret");
        assert_eq!(format!("{k:?}"), "ServerKey(***)");
    }
}
