//! The `syscalls` target's checked-in corpus, replayed: every input runs on the kernel
//! and the reference model without a difference or a broken invariant. This is what
//! `cargo xtask mutants` adds to the kernel's unit tests, so a mutant the model or the
//! invariants notice on these inputs is killed even where no unit test looks.

use std::path::Path;

#[test]
fn the_checked_in_corpus_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/syscalls");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 17, "the corpus lost inputs: {}", inputs.len());
    for path in inputs {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("replaying {}", path.display());
        fuzz_oracles::harness::run(&data);
    }
}
