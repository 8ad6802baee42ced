//! The oracles of the fuzz targets that judge the kernel's semantics, as a library so that
//! more than libFuzzer can run them: the fuzz targets feed them libFuzzer's inputs, and
//! this crate's tests replay the checked-in corpora (the tests `cargo xtask mutants` runs
//! against every mutant of the kernel, beside the kernel's unit tests).
//!
//! - [`syscalls`]: the `syscalls` target's input format (operations naming live objects
//!   by index);
//! - [`project`]: the kernel's state as the reference model (`kernel-model`) sees it;
//! - [`harness`]: one `syscalls` input run on the kernel and the model, compared after
//!   every step, with the fastpath differential and the structural invariants;
//! - [`validator`]: one `vmcs_validator` input (hostile VMM replies against arbitrary
//!   CPUs, policies and vCPU states), every accepted batch checked against invariants
//!   restated from the SDM.

pub mod harness;
pub mod project;
pub mod syscalls;
pub mod validator;
