//! The `syscalls` fuzz target's harness, as a library so that more than libFuzzer can
//! run it: the fuzz target feeds it libFuzzer's inputs, and this crate's tests replay the
//! checked-in corpus (the test `cargo xtask mutants` runs against every mutant of the
//! kernel, beside the kernel's unit tests).
//!
//! - [`syscalls`]: the input format (operations naming live objects by index);
//! - [`project`]: the kernel's state as the reference model (`kernel-model`) sees it;
//! - [`harness`]: one input run on the kernel and the model, compared after every step,
//!   with the fastpath differential and the structural invariants.

pub mod harness;
pub mod project;
pub mod syscalls;
