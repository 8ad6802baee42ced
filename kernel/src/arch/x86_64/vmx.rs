//! The VT-x probe at boot. Decisions are made by `kernel::vmx::caps`; this only reads
//! CPUID and the MSRs (and locks IA32_FEATURE_CONTROL if firmware left it unlocked).

use super::cpu::{cpuid, rdmsr, wrmsr};
use kernel::vmx::caps::{
    self, Absent, FeatureControl, VmxCaps, VmxMsrs, MSR_FEATURE_CONTROL, MSR_VMX_BASIC,
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
    let msrs = unsafe {
        let basic = rdmsr(MSR_VMX_BASIC);
        let procbased = rdmsr(VmxCaps::procbased_msr(basic));
        VmxMsrs {
            basic,
            pinbased: rdmsr(VmxCaps::pinbased_msr(basic)),
            procbased,
            procbased2: if VmxCaps::has_secondary(procbased) {
                rdmsr(MSR_VMX_PROCBASED_CTLS2)
            } else {
                0
            },
            exit: rdmsr(VmxCaps::exit_msr(basic)),
            entry: rdmsr(VmxCaps::entry_msr(basic)),
            misc: rdmsr(caps::MSR_VMX_MISC),
            cr0_fixed0: rdmsr(caps::MSR_VMX_CR0_FIXED0),
            cr0_fixed1: rdmsr(caps::MSR_VMX_CR0_FIXED1),
            cr4_fixed0: rdmsr(caps::MSR_VMX_CR4_FIXED0),
            cr4_fixed1: rdmsr(caps::MSR_VMX_CR4_FIXED1),
        }
    };
    crate::kprintln!(
        "vmx: IA32_VMX_BASIC {:#018x}, procbased {:#018x}, procbased2 {:#018x}",
        msrs.basic,
        msrs.procbased,
        msrs.procbased2
    );
    Ok(VmxCaps::from_all(&msrs))
}
