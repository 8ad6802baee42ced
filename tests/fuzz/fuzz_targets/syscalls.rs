//! Fuzzes the whole syscall layer against the reference model: the harness lives in
//! `tests/oracle` (crate `fuzz-oracles`), whose tests also replay this target's
//! checked-in corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzz_oracles::harness::run(data));
