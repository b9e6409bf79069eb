//! SSH public keys: the import rules of SPEC section 3, fingerprints, and key generation.
//!
//! What is stored is re-serialized from the parsed key, never the raw input, because it will be
//! written into authorized_keys on real hosts: an options prefix or a second line must never pass.

use base64::Engine as _;
use md5::{Digest, Md5};
use ssh_key::public::{KeyData, RsaPublicKey};
use ssh_key::{EcdsaCurve, HashAlg, Mpint};

use crate::CoreError;

/// The largest key text accepted (an RSA-16384 key in RFC 4716 form fits well inside it).
pub const MAX_KEY_TEXT: usize = 16 * 1024;
/// The smallest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted: OpenSSH's `SSH_RSA_MAXIMUM_MODULUS_SIZE`.
pub const MAX_RSA_BITS: usize = 16384;
/// The largest RSA public exponent accepted: OpenSSL's `OPENSSL_RSA_MAX_PUBEXP_BITS`.
pub const MAX_RSA_EXPONENT_BITS: usize = 64;

const KEY_ALGORITHMS: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A parsed, accepted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: ssh_key::PublicKey,
}

fn invalid(reason: &str) -> CoreError {
    CoreError::InvalidPublicKey(reason.to_string())
}

impl PublicKey {
    /// Parses exactly one key, in OpenSSH one-line form or RFC 4716 form.
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        if text.len() > MAX_KEY_TEXT {
            return Err(invalid("the key text is too long"));
        }
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if text.is_empty() {
            return Err(invalid("the key text is empty"));
        }
        let line = if text.starts_with("---- BEGIN SSH2 PUBLIC KEY ----") {
            rfc4716_to_openssh(text)?
        } else {
            text.to_string()
        };
        Self::parse_line(&line)
    }

    fn parse_line(line: &str) -> Result<Self, CoreError> {
        if line.chars().any(|c| c.is_control()) {
            return Err(invalid("control characters or several lines"));
        }
        let mut fields = line.split_ascii_whitespace();
        let algorithm = fields.next().unwrap_or_default();
        if !KEY_ALGORITHMS.contains(&algorithm) {
            return Err(invalid("unsupported key type or an options prefix"));
        }
        let _blob = fields.next().ok_or_else(|| invalid("no key data"))?;
        let comment: Vec<&str> = fields.collect();
        if comment
            .iter()
            .any(|w| KEY_ALGORITHMS.contains(w) || w.starts_with("AAAA"))
        {
            return Err(invalid("more than one key"));
        }
        let key = ssh_key::PublicKey::from_openssh(line)
            .map_err(|_| invalid("the key data is not a valid SSH public key"))?;
        check_algorithm(key.key_data())?;
        let mut key = key;
        key.set_comment(comment.join(" "));
        Ok(Self { key })
    }

    /// The OpenSSH one-line form, re-serialized from the parsed key.
    pub fn to_openssh(&self) -> String {
        self.key
            .to_openssh()
            .expect("a parsed key always re-encodes")
    }

    /// The SSH wire blob that every fingerprint is computed over.
    fn blob(&self) -> Vec<u8> {
        self.key.to_bytes().expect("a parsed key always re-encodes")
    }

    /// `SHA256:…`, the canonical identity (what `ssh-keygen -l` prints).
    pub fn sha256_fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// MD5 as colon-separated lower-case hex (Alibaba `KeyPairFingerPrint`, `ssh-keygen -E md5`).
    pub fn md5_fingerprint(&self) -> String {
        let digest = Md5::digest(self.blob());
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// The checks sshd makes before it will use a key, so that a key keyplane accepts is one every
/// host will too (and a key no host can use is refused at import, not at the first login).
fn check_algorithm(data: &KeyData) -> Result<(), CoreError> {
    match data {
        KeyData::Rsa(rsa) => check_rsa(rsa),
        KeyData::Ecdsa(k) => check_ecdsa(k),
        // ssh-key reads exactly 32 bytes for an Ed25519 key; a blob of another length fails to
        // parse (or leaves trailing bytes, which fail too).
        KeyData::Ed25519(_) => Ok(()),
        _ => Err(invalid("unsupported key type")),
    }
}

/// The number of significant bits of a big-endian magnitude with no leading zero byte.
fn bit_len(magnitude: &[u8]) -> usize {
    magnitude
        .first()
        .map_or(0, |b| magnitude.len() * 8 - b.leading_zeros() as usize)
}

/// RSA as OpenSSH and OpenSSL take it: the modulus 2048 (SPEC 3; OpenSSH's own floor is 1024)
/// to 16384 bits (`SSH_RSA_MAXIMUM_MODULUS_SIZE`, which is also OpenSSL's
/// `OPENSSL_RSA_MAX_MODULUS_BITS`) and odd; the exponent odd, at least 3, at most 64 bits
/// (`OPENSSL_RSA_MAX_PUBEXP_BITS`, which OpenSSL enforces for moduli over 3072 bits; keyplane
/// applies it to every size) and below the modulus. ssh-key already refuses an mpint with a
/// redundant leading zero byte, so every length below is the value's own.
fn check_rsa(rsa: &RsaPublicKey) -> Result<(), CoreError> {
    let n = rsa
        .n
        .as_positive_bytes()
        .ok_or_else(|| invalid("the RSA modulus is negative"))?;
    let bits = bit_len(n);
    if bits < MIN_RSA_BITS {
        return Err(invalid("RSA keys must have at least 2048 bits"));
    }
    if bits > MAX_RSA_BITS {
        return Err(invalid("RSA keys must have at most 16384 bits"));
    }
    if n.last().is_none_or(|b| b & 1 == 0) {
        return Err(invalid("the RSA modulus is even"));
    }
    let e = rsa
        .e
        .as_positive_bytes()
        .ok_or_else(|| invalid("the RSA exponent is negative"))?;
    let e_bits = bit_len(e);
    if e_bits > MAX_RSA_EXPONENT_BITS {
        return Err(invalid("the RSA exponent has more than 64 bits"));
    }
    let e_value = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if e_value < 3 || e_value & 1 == 0 {
        return Err(invalid("the RSA exponent must be odd and at least 3"));
    }
    Ok(())
}

/// ECDSA: the point must decode and lie on the named curve (ssh-key has already checked that
/// the curve name inside the blob matches the key type and the point's size).
fn check_ecdsa(key: &ssh_key::public::EcdsaPublicKey) -> Result<(), CoreError> {
    let point = key.as_sec1_bytes();
    let on_curve = match key.curve() {
        EcdsaCurve::NistP256 => p256::PublicKey::from_sec1_bytes(point).is_ok(),
        EcdsaCurve::NistP384 => p384::PublicKey::from_sec1_bytes(point).is_ok(),
        EcdsaCurve::NistP521 => p521::PublicKey::from_sec1_bytes(point).is_ok(),
    };
    if on_curve {
        Ok(())
    } else {
        Err(invalid("the ECDSA point is not on its curve"))
    }
}

/// Joins an RFC 4716 block into the OpenSSH one-line form; the `Comment` header becomes the comment.
fn rfc4716_to_openssh(text: &str) -> Result<String, CoreError> {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let end = lines
        .iter()
        .position(|l| *l == "---- END SSH2 PUBLIC KEY ----")
        .ok_or_else(|| invalid("RFC 4716 block without an end line"))?;
    if lines[end + 1..].iter().any(|l| !l.trim().is_empty()) {
        return Err(invalid("more than one key"));
    }
    let (mut comment, mut body) = (String::new(), String::new());
    let mut in_header = true;
    let mut continued: Option<String> = None;
    for line in &lines[1..end] {
        if let Some(mut acc) = continued.take() {
            acc.push_str(line.trim_end_matches('\\'));
            if line.ends_with('\\') {
                continued = Some(acc);
            } else {
                take_header(&acc, &mut comment);
            }
            continue;
        }
        if in_header && line.contains(':') {
            if line.ends_with('\\') {
                continued = Some(line.trim_end_matches('\\').to_string());
            } else {
                take_header(line, &mut comment);
            }
            continue;
        }
        in_header = false;
        body.push_str(line.trim());
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .map_err(|_| invalid("broken base64"))?;
    let name_len = blob
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| invalid("the key data is too short"))?;
    let name = blob
        .get(4..4 + name_len)
        .and_then(|n| std::str::from_utf8(n).ok())
        .ok_or_else(|| invalid("a length field points past the end"))?;
    Ok(format!("{name} {body} {comment}").trim_end().to_string())
}

fn take_header(line: &str, comment: &mut String) {
    if let Some((tag, value)) = line.split_once(':') {
        if tag.trim().eq_ignore_ascii_case("Comment") {
            *comment = value.trim().trim_matches('"').to_string();
        }
    }
}

/// A key pair generated by CreateKeyPair; the private half is handed out once and dropped.
pub struct GeneratedKeyPair {
    pub public: PublicKey,
    /// PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`), zeroized on drop.
    pub private_pem: zeroize::Zeroizing<String>,
}

/// Generates an RSA-2048 key pair (CPU-heavy: call it off the async executor).
pub fn generate_rsa_2048() -> Result<GeneratedKeyPair, CoreError> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| CoreError::Internal(format!("RSA generation: {e}")))?;
    let pem = private
        .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| CoreError::Internal(format!("PEM encoding: {e}")))?;
    let public = RsaPublicKey {
        e: Mpint::from_positive_bytes(&private.e().to_bytes_be())
            .map_err(|e| CoreError::Internal(e.to_string()))?,
        n: Mpint::from_positive_bytes(&private.n().to_bytes_be())
            .map_err(|e| CoreError::Internal(e.to_string()))?,
    };
    let key = ssh_key::PublicKey::new(KeyData::Rsa(public), "");
    Ok(GeneratedKeyPair {
        public: PublicKey { key },
        private_pem: zeroize::Zeroizing::new(pem.to_string()),
    })
}
