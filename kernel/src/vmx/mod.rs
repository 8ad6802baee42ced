//! VT-x policy that needs no hardware: capability-MSR decoding and the VMCS-write
//! batch validator. The raw VMX instructions live in `arch/x86_64/vmx.rs`.

pub mod caps;
pub mod ept;
#[cfg(any(test, feature = "fuzzing"))]
pub mod samples;
pub mod validator;
pub mod vmcs_setup;
