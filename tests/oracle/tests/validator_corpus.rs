//! The `vmcs_validator` target's checked-in corpus, replayed, and then a fixed series of
//! pseudo-random inputs (the same every run): every accepted batch keeps the invariants,
//! every refusal names what the reply holds. With the syscalls replay, this is what
//! `cargo xtask mutants` runs against the validator's mutants beside its unit tests.

use arbitrary::{Arbitrary, Unstructured};
use fuzz_oracles::validator::{run, Input};
use std::path::Path;

/// libFuzzer hands a typed target the whole input this way: whether it made an input,
/// and whether the validator accepted its batch.
fn replay(data: &[u8]) -> Option<bool> {
    Input::arbitrary_take_rest(Unstructured::new(data)).ok().map(run)
}

#[test]
fn the_checked_in_corpus_keeps_the_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/vmcs_validator");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "the corpus is gone");
    for path in inputs {
        eprintln!("replaying {}", path.display());
        replay(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
}

#[test]
fn a_fixed_series_of_random_inputs_keeps_the_invariants() {
    let mut x = 0x5eed_0f7a_11da_7e00_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..3000 {
        let len = 64 + (next() % 448) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        eprintln!("input {i}");
        match replay(&data) {
            Some(true) => accepted += 1,
            Some(false) => refused += 1,
            None => {}
        }
    }
    // Both outcomes, often: a series that only ever refuses would check nothing.
    assert!(accepted > 300 && refused > 300, "{accepted} accepted, {refused} refused");
}
