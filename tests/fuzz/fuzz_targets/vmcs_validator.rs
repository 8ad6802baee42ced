//! Fuzzes the kernel's VMCS-write batch validator against hostile VMM replies: the
//! harness and its invariants live in `tests/oracle` (crate `fuzz-oracles`, module
//! `validator`), whose tests also replay this target's checked-in corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: fuzz_oracles::validator::Input| {
    fuzz_oracles::validator::run(input);
});
