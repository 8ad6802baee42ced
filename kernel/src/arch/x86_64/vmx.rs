//! The VT-x probe at boot. Decisions are made by `kernel::vmx::caps`; this only reads
//! CPUID and the MSRs (and locks IA32_FEATURE_CONTROL if firmware left it unlocked).

use super::cpu::{cpuid, rdmsr, wrmsr};
use kernel::vmx::caps::{
    self, Absent, FeatureControl, VmxCaps, MSR_FEATURE_CONTROL, MSR_VMX_BASIC,
    MSR_VMX_PROCBASED_CTLS2,
};

/// Probe VT-x and print the one-line verdict.
pub fn probe() -> Result<VmxCaps, Absent> {
    let result = probe_inner();
    match &result {
        Ok(c) => crate::kprintln!("vmx: present, {c}"),
        Err(why) => crate::kprintln!("vmx: absent: {why}; no VM can run on this machine"),
    }
    result
}

fn probe_inner() -> Result<VmxCaps, Absent> {
    let (_, _, ecx, _) = cpuid(1, 0);
    if ecx & (1 << 5) == 0 {
        return Err(Absent::NoCpuid);
    }
    // SAFETY: IA32_FEATURE_CONTROL exists whenever CPUID reports VMX.
    let fc = unsafe { rdmsr(MSR_FEATURE_CONTROL) };
    if caps::feature_control(fc)? == FeatureControl::NeedsLock {
        // SAFETY: the MSR is unlocked, so writing the lock and VMXON-enable bits is allowed.
        unsafe { wrmsr(MSR_FEATURE_CONTROL, caps::feature_control_locked(fc)) }
    }
    // SAFETY: the VMX capability MSRs exist whenever CPUID reports VMX; the TRUE and
    // secondary MSRs are read only when IA32_VMX_BASIC / the primary controls say so.
    let (basic, procbased, procbased2) = unsafe {
        let basic = rdmsr(MSR_VMX_BASIC);
        let procbased = rdmsr(VmxCaps::procbased_msr(basic));
        let procbased2 =
            if VmxCaps::has_secondary(procbased) { rdmsr(MSR_VMX_PROCBASED_CTLS2) } else { 0 };
        (basic, procbased, procbased2)
    };
    crate::kprintln!(
        "vmx: IA32_VMX_BASIC {basic:#018x}, procbased {procbased:#018x}, procbased2 {procbased2:#018x}"
    );
    Ok(VmxCaps::from_msrs(basic, procbased, procbased2))
}
