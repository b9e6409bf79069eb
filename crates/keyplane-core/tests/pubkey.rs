//! The key material rules of SPEC section 3, and fingerprints against the vendor vectors.

use base64::Engine as _;
use keyplane_core::pubkey::{generate_rsa_2048, PublicKey};

const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDBS3GvlkFKpV6gzQMxGIhrIj7I3oIN4dP4eI9S4yNOqjWzjVzr/Ey9a/X8A7bYebeCkLGZjWtddOeBGWAyrKyCPPba6v4DiK00SxM2VrY7GO6qyKCM2CijhNrJCQGZynXC3dLWG6Ome8J6qL283K/KtrUQN3lyXRIyIuhKS+p+o7lyhmDUqPS3jGypI8Lq+SoKAlLagBhu+7Jvx7xxsJS37G+8zZHf+3BkA1Y1tbvNzP4zENkzbVpKCS9nvN/Gm9mKbnq0e1kApK6hSnBX+97xV64Evu2Kgh37AlSQX9ECoHhD8HE6cczSOpCDD4aXeUlH/0Jx01NvjDCXYuR70NDh test@rsa";
const ED: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN9gNeKySbL3MUv0aK94NY7akFL/u8wiGq5+p7UWr8/f test@ed";
// `ssh-keygen -t dsa` output, and an RSA-1024 key.
const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACBAPh8uXz0/pO5Cx8/bXMnz/qrXszi1NWn7TLaESeo5CIFbSgLVuUZ3QhXIxUBNwfLExl7KOz5kaNI/lRSQAOVXtOvcwcRt5Ua6LoypWaN9ZntHkCSD5nvcL7zhGA2ZSqhEe/5clnJKcmjwiP8Aq6A3RUrl3Ac/z7/mEzoXpj/yxcc dsa";

fn rsa_line(bits: usize) -> String {
    // A syntactically valid ssh-rsa blob with an n of the given size.
    let mut blob = Vec::new();
    let put = |blob: &mut Vec<u8>, bytes: &[u8]| {
        blob.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        blob.extend_from_slice(bytes);
    };
    put(&mut blob, b"ssh-rsa");
    put(&mut blob, &[1, 0, 1]);
    let mut n = vec![0xc3u8; bits / 8];
    n.insert(0, 0);
    put(&mut blob, &n);
    format!(
        "ssh-rsa {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

#[test]
fn fingerprints_match_the_vendor_vectors() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/fingerprint_vectors.json")).unwrap();
    for v in vectors.as_array().unwrap() {
        let key = PublicKey::parse(v["public_key_body"].as_str().unwrap()).unwrap();
        assert_eq!(key.md5_fingerprint(), v["md5_fingerprint_colon_hex"]);
        assert_eq!(key.sha256_fingerprint(), v["openssh_sha256"]);
    }
}

#[test]
fn accepted_keys_are_reserialized_with_their_comment() {
    assert_eq!(PublicKey::parse(RSA).unwrap().to_openssh(), RSA);
    assert_eq!(
        PublicKey::parse(&format!("{ED}\n")).unwrap().to_openssh(),
        ED
    );
    let no_comment = ED.rsplit_once(' ').unwrap().0;
    assert_eq!(
        PublicKey::parse(no_comment).unwrap().to_openssh(),
        no_comment
    );
}

#[test]
fn rfc4716_input_is_accepted_with_its_comment() {
    let b64 = RSA.split(' ').nth(1).unwrap();
    let mut block = String::from(
        "---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"test@rsa\"\nx-note: long \\\n value\n",
    );
    for chunk in b64.as_bytes().chunks(70) {
        block.push_str(std::str::from_utf8(chunk).unwrap());
        block.push('\n');
    }
    block.push_str("---- END SSH2 PUBLIC KEY ----\n");
    assert_eq!(PublicKey::parse(&block).unwrap().to_openssh(), RSA);
}

#[test]
fn bad_key_material_is_refused() {
    let b64 = RSA.split(' ').nth(1).unwrap();
    let truncated = {
        let mut blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        blob.truncate(100);
        format!(
            "ssh-rsa {}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    };
    let cases = [
        ("options prefix", format!("command=\"/bin/sh\" {RSA}")),
        ("two keys on a line", format!("{RSA} {ED}")),
        ("two keys on two lines", format!("{RSA}\n{ED}")),
        ("control character", RSA.replacen("test", "te\u{7}st", 1)),
        ("DSA", DSA.to_string()),
        ("RSA 1024", rsa_line(1024)),
        ("broken base64", format!("ssh-rsa {}!!", &b64[..40])),
        ("length past the end", truncated),
        ("type mismatch", format!("ssh-ed25519 {b64}")),
        ("empty", String::new()),
        ("oversized", format!("{RSA} {}", "a".repeat(20_000))),
        (
            "certificate",
            "ssh-rsa-cert-v01@openssh.com AAAA".to_string(),
        ),
    ];
    for (what, text) in cases {
        assert!(PublicKey::parse(&text).is_err(), "{what} was accepted");
    }
    assert!(PublicKey::parse(&rsa_line(2048)).is_ok());
}

#[test]
fn generated_keys_are_rsa_2048_with_a_pkcs1_private_key() {
    let kp = generate_rsa_2048().unwrap();
    assert!(kp
        .private_pem
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let line = kp.public.to_openssh();
    assert!(line.starts_with("ssh-rsa "));
    assert_eq!(PublicKey::parse(&line).unwrap(), kp.public);
}

/// An SSH wire blob from its fields, each as an SSH `string` (an mpint is a string too).
fn blob_line(algorithm: &str, fields: &[&[u8]]) -> String {
    let mut blob = Vec::new();
    for f in std::iter::once(algorithm.as_bytes()).chain(fields.iter().copied()) {
        blob.extend_from_slice(&(f.len() as u32).to_be_bytes());
        blob.extend_from_slice(f);
    }
    format!(
        "{algorithm} {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// An unsigned big-endian magnitude as a canonical SSH mpint (a zero byte before a high bit).
fn mpint(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = magnitude.iter().copied().skip_while(|b| *b == 0).collect();
    match trimmed.first() {
        Some(b) if *b >= 0x80 => [&[0u8][..], &trimmed].concat(),
        _ => trimmed,
    }
}

/// An odd modulus of exactly `bits` bits.
fn modulus(bits: usize) -> Vec<u8> {
    let mut n = vec![0xc3u8; bits.div_ceil(8)];
    let spare = n.len() * 8 - bits;
    n[0] = (n[0] >> spare) | (0x80 >> spare);
    n
}

fn rsa_key(e: &[u8], n: &[u8]) -> String {
    blob_line("ssh-rsa", &[e, n])
}

#[test]
fn rsa_parameters_are_checked_as_openssh_and_openssl_do() {
    let e65537 = mpint(&[1, 0, 1]);
    let n2048 = mpint(&modulus(2048));
    assert!(PublicKey::parse(&rsa_key(&e65537, &n2048)).is_ok());
    assert!(PublicKey::parse(&rsa_key(&e65537, &mpint(&modulus(16384)))).is_ok());
    assert!(PublicKey::parse(&rsa_key(&mpint(&[3]), &n2048)).is_ok());
    let e64 = mpint(&[0x80, 0, 0, 0, 0, 0, 0, 1]);
    assert!(PublicKey::parse(&rsa_key(&e64, &n2048)).is_ok(), "64 bits");

    let mut even = modulus(2048);
    *even.last_mut().unwrap() &= 0xfe;
    let mut e40000 = vec![0x55u8; 5000];
    *e40000.last_mut().unwrap() = 1;
    let negative_n: Vec<u8> = modulus(2048); // high bit set, no zero byte: a negative mpint
    let padded_n = [&[0u8, 0u8][..], &n2048].concat();
    let cases = [
        (
            "88000-bit modulus",
            rsa_key(&e65537, &mpint(&modulus(88_000))),
        ),
        (
            "16392-bit modulus",
            rsa_key(&e65537, &mpint(&modulus(16_392))),
        ),
        ("2047-bit modulus", rsa_key(&e65537, &mpint(&modulus(2047)))),
        ("even modulus", rsa_key(&e65537, &mpint(&even))),
        ("negative modulus", rsa_key(&e65537, &negative_n)),
        ("zero-padded modulus", rsa_key(&e65537, &padded_n)),
        ("e = 1", rsa_key(&mpint(&[1]), &n2048)),
        ("empty e (zero)", rsa_key(&[], &n2048)),
        ("even e", rsa_key(&mpint(&[1, 0, 0]), &n2048)),
        ("negative e", rsa_key(&[0x81], &n2048)),
        (
            "65-bit e",
            rsa_key(&mpint(&[1, 0, 0, 0, 0, 0, 0, 0, 1]), &n2048),
        ),
        ("40000-bit e", rsa_key(&mpint(&e40000), &n2048)),
    ];
    for (what, text) in cases {
        assert!(
            matches!(
                PublicKey::parse(&text),
                Err(keyplane_core::CoreError::InvalidPublicKey(_))
            ),
            "{what} was accepted"
        );
    }
}

#[test]
fn ecdsa_points_must_lie_on_the_named_curve() {
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    let g256 = p256::AffinePoint::GENERATOR.to_encoded_point(false);
    let g384 = p384::AffinePoint::GENERATOR.to_encoded_point(false);
    let g521 = p521::AffinePoint::GENERATOR.to_encoded_point(false);
    let ecdsa = |alg: &str, curve: &str, point: &[u8]| {
        blob_line(&format!("ecdsa-sha2-{alg}"), &[curve.as_bytes(), point])
    };
    for (name, point) in [
        ("nistp256", g256.as_bytes()),
        ("nistp384", g384.as_bytes()),
        ("nistp521", g521.as_bytes()),
    ] {
        assert!(
            PublicKey::parse(&ecdsa(name, name, point)).is_ok(),
            "{name} generator"
        );
        let mut off = point.to_vec();
        *off.last_mut().unwrap() ^= 1;
        assert!(
            PublicKey::parse(&ecdsa(name, name, &off)).is_err(),
            "{name} point off the curve"
        );
    }
    let compressed = p256::AffinePoint::GENERATOR.to_encoded_point(true);
    assert!(PublicKey::parse(&ecdsa("nistp256", "nistp256", compressed.as_bytes())).is_ok());
    let cases = [
        (
            "curve name mismatch",
            ecdsa("nistp256", "nistp384", g256.as_bytes()),
        ),
        (
            "point of another curve",
            ecdsa("nistp256", "nistp256", g384.as_bytes()),
        ),
        ("identity point", ecdsa("nistp256", "nistp256", &[0])),
        ("x = y = 1", {
            let mut p = vec![4u8];
            p.extend([0u8; 31].iter().chain(&[1]).chain(&[0u8; 31]).chain(&[1]));
            ecdsa("nistp256", "nistp256", &p)
        }),
    ];
    for (what, text) in cases {
        assert!(PublicKey::parse(&text).is_err(), "{what} was accepted");
    }
}

#[test]
fn ed25519_keys_are_exactly_32_bytes() {
    assert!(PublicKey::parse(&blob_line("ssh-ed25519", &[&[9u8; 32]])).is_ok());
    for len in [0, 31, 33, 64] {
        assert!(
            PublicKey::parse(&blob_line("ssh-ed25519", &[&vec![9u8; len]])).is_err(),
            "{len} bytes"
        );
    }
}
