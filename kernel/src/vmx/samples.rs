//! Capability values of the Bochs CPU models the project runs on, and a plausible host
//! state, shared by the host tests, the syscall testbed and the fuzzers.

use super::caps::VmxMsrs;
use super::vmcs_setup::HostState;
use crate::vcpu_passthrough::HostMsrs;

/// Skylake-like (Bochs corei7_skylake_x): TRUE controls, EPT, VPID, unrestricted
/// guest, EFER/PAT load and save.
pub const SKYLAKE: VmxMsrs = VmxMsrs {
    basic: 0x00d8_1000_0000_002b,
    pinbased: 0x0000_007f_0000_0016,
    procbased: 0xf7f9_fffe_0400_6172,
    procbased2: 0x0217_7fff_0000_0000,
    exit: 0x01ff_ffff_0003_6dfb,
    entry: 0x0000_f3ff_0000_11fb,
    misc: 0x0004_01e0,
    cr0_fixed0: 0x8000_0021,
    cr0_fixed1: 0xffff_ffff,
    cr4_fixed0: 0x2000,
    cr4_fixed1: 0x0037_67ff,
};
/// IA32_VMX_EPT_VPID_CAP of the same model.
pub const EPT_CAPS: u64 = 0x0000_0f01_0673_4141;
/// Its physical-address width.
pub const MAXPHYADDR: u8 = 36;

/// A TSC rate, as the kernel measures it at boot (Hz).
pub const TSC_HZ: u64 = 2_112_000_000;

/// A host state as the kernel sets it up.
pub fn host() -> HostState {
    HostState {
        cr0: 0x8005_0033,
        cr3: 0x0012_3000,
        cr4: 0x0000_26a0,
        cs: 0x08,
        ss: 0x10,
        ds: 0x10,
        es: 0x10,
        fs: 0,
        gs: 0,
        tr: 0x28,
        fs_base: 0,
        gs_base: 0,
        tr_base: 0xffff_ffff_8012_3450,
        gdtr_base: 0xffff_ffff_8012_3000,
        idtr_base: 0xffff_ffff_8012_4000,
        rip: 0xffff_ffff_8010_0000,
        rsp: 0xffff_ffff_8020_0000,
        sysenter_cs: 0,
        sysenter_esp: 0,
        sysenter_eip: 0,
        efer: 0xd01,
        pat: 0x0007_0406_0007_0406,
    }
}

/// The host's switchable MSRs as the kernel sets them (`object::vm::SWITCHABLE_MSRS`
/// order: STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE, TSC_AUX), all present.
pub fn host_msrs() -> HostMsrs {
    HostMsrs {
        values: [0x0010_0008_0000_0000, 0xffff_ffff_8010_2000, 0, 0x4700, 0, 0],
        present: 0x3f,
    }
}
