//! The fuzz targets in the test suite, on stable: every file of `fuzz/corpus/<target>/` (the
//! seeds, and what the long runs kept) and of `fuzz/regressions/<target>/` (each crash found, kept
//! after its fix), then a bounded number of mutations of them. The coverage-guided long runs are
//! `fuzz/` under cargo-fuzz (docs/RELIABILITY.md).

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutations per target in the suite: enough to shake out a shallow bug, bounded to seconds.
const ROUNDS: usize = 3_000;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

/// One mutation, as libFuzzer's simplest ones: flip, insert, delete, duplicate a run, or splice
/// in a piece of another input.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let at = if out.is_empty() {
            0
        } else {
            rng.gen_range(0..out.len())
        };
        match rng.gen_range(0..6) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.gen_range(0..8),
            1 => out.insert(at, rng.gen()),
            2 if !out.is_empty() => {
                let end = (at + rng.gen_range(1..16)).min(out.len());
                out.drain(at..end);
            }
            3 if !out.is_empty() => {
                let end = (at + rng.gen_range(1..32)).min(out.len());
                let run = out[at..end].to_vec();
                out.splice(at..at, run);
            }
            4 if !other.is_empty() => {
                let from = rng.gen_range(0..other.len());
                let end = (from + rng.gen_range(1..64)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            _ => out.insert(
                at,
                *b"\n\"[]{}:,&=%.\\ \0"
                    .get(rng.gen_range(0..15))
                    .unwrap_or(&b'x'),
            ),
        }
    }
    out
}

#[test]
fn every_target_survives_its_corpus_its_regressions_and_mutations_of_them() {
    let dir = fuzz_dir();
    for (name, target) in keyplane_fuzz::TARGETS {
        let corpus = inputs(&dir.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seeds");
        for input in corpus
            .iter()
            .chain(&inputs(&dir.join("regressions").join(name)))
        {
            target(input);
        }
        // A seed of its own per target, so that a failure reproduces from its name alone.
        let seed = name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let mut rng = StdRng::seed_from_u64(seed);
        for round in 0..ROUNDS {
            let input = &corpus[round % corpus.len()];
            let other = &corpus[rng.gen_range(0..corpus.len())];
            let mutated = mutate(&mut rng, input, other);
            let result = std::panic::catch_unwind(|| target(&mutated));
            assert!(
                result.is_ok(),
                "{name}: round {round} failed on {:?}",
                String::from_utf8_lossy(&mutated)
            );
        }
    }
}

/// The request seeds are requests the verifiers accept: the harness rebuilds what the SDKs sent
/// faithfully enough for a signature to check, so mutations start from the accepting path.
#[test]
fn the_signed_seeds_verify() {
    use keyplane_fuzz::request::{Request, SECRET, VOLC_SECRET};
    use keyplane_sig::{alibaba, volc, SecretKey};
    let dir = fuzz_dir().join("corpus");
    let secret = SecretKey::new(SECRET);
    let verified = |target: &str, check: &dyn Fn(&Request) -> bool| {
        inputs(&dir.join(target))
            .iter()
            .filter(|i| check(&Request::parse(i)))
            .count()
    };
    let ali = |r: &Request| {
        let req = r.signed();
        alibaba::claim(&req).is_ok_and(|c| alibaba::verify(&req, &c, &secret).is_ok())
    };
    let vol = |r: &Request| {
        let req = r.signed();
        let secret = SecretKey::new(VOLC_SECRET);
        volc::claim(&req).is_ok_and(|c| volc::verify(&req, &c, &secret).is_ok())
    };
    assert!(
        verified("alibaba_v3", &ali) >= 5,
        "the V3 test vectors verify"
    );
    assert!(
        verified("alibaba_v1", &ali) >= 8,
        "the V1 test vectors verify"
    );
    assert!(
        verified("volcengine", &vol) >= 10,
        "the Volcengine test vectors verify"
    );
}
