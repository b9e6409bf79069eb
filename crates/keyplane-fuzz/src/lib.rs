//! keyplane's fuzz targets, as plain functions of the fuzzer's bytes: every parser that reads what
//! a client or a host sends, and the agent's text transforms with their properties.
//!
//! Two runners share them. `fuzz/` (cargo-fuzz, libFuzzer, nightly) runs each for long, coverage
//! guided (docs/RELIABILITY.md has the command and the runs); `tests/replay.rs` (stable, in the
//! test suite) replays the corpus and every crash kept as a regression, then mutates the corpus for
//! a bounded number of rounds. A target panics only on a real failure: a crash, or a property
//! that does not hold.

pub mod request;

use keyplane_core::pubkey::PublicKey;
use keyplane_sig::{alibaba, volc, SecretKey};

/// A target: the fuzzer's bytes in, a panic on failure.
pub type Target = fn(&[u8]);

/// The fuzz targets by name: `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("alibaba_v3", alibaba_v3),
    ("alibaba_v1", alibaba_v1),
    ("volcengine", volcengine),
    ("form", form),
    ("json_list", json_list),
    ("name_list", name_list),
    ("public_key", public_key),
    ("ram_policy", ram_policy),
    ("authorized_keys", authorized_keys),
    ("sshd_config", sshd_config),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// An Alibaba V3 (`ACS3-HMAC-SHA256`) request: its claim, the action it selects, its canonical
/// request and its verification with the wrong secret and with the right one.
pub fn alibaba_v3(data: &[u8]) {
    let r = request::Request::parse(data);
    let req = r.signed();
    let _ = alibaba::selector(&req);
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let canonical = alibaba::v3_canonical_request(&r.method, &r.path, &r.query, &headers, "x");
    let _ = alibaba::v3_string_to_sign(&canonical);
    if let Ok(claim) = alibaba::claim(&req) {
        let _ = alibaba::verify(&req, &claim, &SecretKey::new(request::SECRET));
        let _ = alibaba::verify(&req, &claim, &SecretKey::new(""));
    }
}

/// An Alibaba V1 (`Signature` parameter, HMAC-SHA1) request: its claim, its string to sign over
/// the query and the form, and its verification.
pub fn alibaba_v1(data: &[u8]) {
    let mut r = request::Request::parse(data);
    r.headers.retain(|(n, _)| n != "authorization");
    let req = r.signed();
    let _ = alibaba::selector(&req);
    let mut all = r.query.clone();
    all.extend(r.form.iter().cloned());
    let _ = alibaba::v1_string_to_sign(&r.method, &r.path, &all);
    if let Ok(claim) = alibaba::claim(&req) {
        let _ = alibaba::verify(&req, &claim, &SecretKey::new(request::SECRET));
    }
}

/// A Volcengine (`HMAC-SHA256`) request: its claim, canonical request and verification.
pub fn volcengine(data: &[u8]) {
    let r = request::Request::parse(data);
    let req = r.signed();
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let canonical = volc::canonical_request(&r.method, &r.path, &r.query, &headers, "x");
    let _ = volc::string_to_sign(
        "20240101T000000Z",
        "20240101/cn-beijing/ecs/request",
        &canonical,
    );
    if let Ok(claim) = volc::claim(&req) {
        let _ = volc::verify(&req, &claim, &SecretKey::new(request::VOLC_SECRET));
    }
}

/// Form and query decoding. Property: what decodes re-encodes (RFC 3986) to a form that decodes
/// to the same pairs.
pub fn form(data: &[u8]) {
    let Ok(pairs) = keyplane_sig::params::decode_form(data) else {
        return;
    };
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                keyplane_sig::encode::pct(k),
                keyplane_sig::encode::pct(v)
            )
        })
        .collect();
    let again = keyplane_sig::params::decode_form(encoded.join("&").as_bytes())
        .expect("an encoded form decodes");
    assert_eq!(again, pairs, "decode(encode(decode(x))) == decode(x)");
}

/// The Alibaba JSON lists (`InstanceIds`, `KeyPairNames`). Properties: a parsed list respects
/// its cap and has no duplicate; the audit log's bounded reading of it agrees with the parse.
pub fn json_list(data: &[u8]) {
    use keyplane_core::json_list::{first, parse, ListRule};
    let raw = text(data);
    for (max, trim) in [(1, false), (50, true), (100, false)] {
        if let Ok(list) = parse(&raw, ListRule { max, trim }) {
            assert!(list.len() <= max, "at most {max}");
            let mut seen = std::collections::HashSet::new();
            assert!(list.iter().all(|v| seen.insert(v)), "no duplicates");
        }
    }
    if let Ok(ids) = keyplane_core::binding::parse_id_list(&raw, 50) {
        assert!(!ids.is_empty() && ids.len() <= 50);
    }
    // The audit log's reading of a list is its first values as sent: distinct, they are where the
    // full parse starts.
    let all = parse(
        &raw,
        ListRule {
            max: usize::MAX,
            trim: false,
        },
    );
    if let (Some(head), Ok(all)) = (first(&raw, 3), all) {
        assert!(head.len() <= 3);
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<&String> = head.iter().filter(|v| seen.insert(*v)).collect();
        let start: Vec<&String> = all.iter().take(distinct.len()).collect();
        assert_eq!(distinct, start, "first() reads what parse() reads");
    }
}

/// Volcengine's `Name.N` lists from form-decoded parameters. Property: a list read strictly is
/// within its cap and has no empty value.
pub fn name_list(data: &[u8]) {
    let Ok(pairs) = keyplane_sig::params::decode_form(data) else {
        return;
    };
    let p = keyplane_api::params::Params::new(&pairs, &[]);
    for name in ["InstanceIds", "KeyPairNames"] {
        if let Ok(Some(list)) = p.strict_list(name, 100) {
            assert!(list.len() <= 100);
            assert!(list.iter().all(|v| !v.is_empty()));
        }
        if let Ok(Some(list)) = p.strict_list_distinct(name, 100) {
            let distinct: std::collections::HashSet<_> = list.iter().collect();
            assert!(distinct.len() <= 100);
        }
    }
    let _ = p.tags();
    let _ = p.tags_named("Tags");
    let _ = p.nul_free();
}

/// Public keys (OpenSSH and RFC 4716). Property: a key that parses prints as an OpenSSH line
/// that parses to the same key.
pub fn public_key(data: &[u8]) {
    let Ok(key) = PublicKey::parse(&text(data)) else {
        return;
    };
    let line = key.to_openssh();
    let again = PublicKey::parse(&line).expect("its own OpenSSH line parses");
    assert_eq!(again.sha256_fingerprint(), key.sha256_fingerprint());
    assert_eq!(again.md5_fingerprint(), key.md5_fingerprint());
}

/// RAM policy documents, evaluated against a few requests: no document may panic the evaluator.
pub fn ram_policy(data: &[u8]) {
    use keyplane_core::ram::{self, Context, Policy};
    let Ok(policy) = Policy::parse(&text(data)) else {
        return;
    };
    let ctx = Context {
        source_ip: "192.0.2.1".parse().ok(),
        now: chrono::DateTime::UNIX_EPOCH,
        os_user: Some("deploy".into()),
    };
    let policies = [policy];
    for (action, resource) in [
        ("ecs:AttachKeyPair", "acs:ecs:cn-hangzhou:123:instance/i-1"),
        ("ecs:DescribeKeyPairs", "acs:ecs:*:123:keypair/k"),
        ("ram:CreateUser", "acs:ram:*:123:user/u"),
    ] {
        let _ = ram::evaluate(&policies, action, resource, &ctx);
        let _ = ram::may_attempt(&policies, action, &ctx);
    }
}

/// Whether `kept`'s lines are `from`'s lines, some left out, none changed or moved (a line's
/// `\r` before its newline aside, which the agent drops).
fn is_subsequence(kept: &str, from: &str) -> bool {
    let mut lines = from.lines().map(|l| l.trim_end_matches('\r'));
    kept.lines().all(|k| lines.any(|l| l == k))
}

/// authorized_keys with the managed key (the first line of the input, if it is a key) put in
/// the rest of the input. Properties: applying twice is applying once; the result is a person's
/// lines, taken from the input unchanged and in order, followed by the managed section with the
/// key; the fingerprints read back are the key's.
pub fn authorized_keys(data: &[u8]) {
    use keyplane_agent::transform::{self, BEGIN, END};
    let input = text(data);
    let (first, old) = input.split_once('\n').unwrap_or((input.as_str(), ""));
    let key = PublicKey::parse(first).ok();
    let line = key.as_ref().map(PublicKey::to_openssh);
    let once = transform::authorized_keys(old, line.as_deref());
    assert_eq!(
        transform::authorized_keys(&once, line.as_deref()),
        once,
        "idempotent"
    );
    let persons = transform::authorized_keys(old, None);
    assert!(
        is_subsequence(&persons, old),
        "a person's lines are kept as they are"
    );
    match (&key, &line) {
        (Some(key), Some(line)) => {
            assert_eq!(once, format!("{persons}{BEGIN}\n{line}\n{END}\n"));
            assert_eq!(
                transform::managed_fingerprints(&once),
                [key.sha256_fingerprint()]
            );
        }
        _ => {
            assert_eq!(once, persons);
            assert!(transform::managed_fingerprints(&once).is_empty());
        }
    }
    // The grants section (SPEC section 15) beside it: idempotent, the vendor's section and a
    // person's lines untouched, and removable without a trace.
    let granted: Vec<String> = line
        .iter()
        .map(|l| format!("{l} {}gr-1", transform::GRANT_TAG))
        .collect();
    let with = transform::grants_section(&once, &granted);
    assert_eq!(
        transform::grants_section(&with, &granted),
        with,
        "idempotent"
    );
    assert_eq!(
        transform::managed_fingerprints(&with),
        transform::managed_fingerprints(&once),
        "the vendor's key is untouched"
    );
    let without = transform::grants_section(&with, &[]);
    assert_eq!(transform::grants_section(&without, &[]), without);
    assert!(is_subsequence(&without, &once) || without == once);
}

/// sshd_config with the managed block at the top. Properties: applying twice is applying once,
/// for either setting, and switching the setting back restores the same file; the rest of the
/// file follows the block unchanged.
pub fn sshd_config(data: &[u8]) {
    use keyplane_agent::transform::sshd_config_block;
    let old = text(data);
    for on in [true, false] {
        let once = sshd_config_block(&old, on, None);
        assert_eq!(sshd_config_block(&once, on, None), once, "idempotent");
        assert_eq!(
            sshd_config_block(&sshd_config_block(&once, !on, None), on, None),
            once,
            "switching back restores the file"
        );
        let _ = keyplane_agent::transform::includes_dir(&old, "/etc/ssh/sshd_config.d");
    }
}
