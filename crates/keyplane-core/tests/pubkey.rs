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
