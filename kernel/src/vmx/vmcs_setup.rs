//! The initial VMCS of a new VCpu, as a pure function: capabilities, policy, host state
//! and the requested guest mode in, a list of `(Field, value)` writes out.
//!
//! Everything the kernel can check before the first VMLAUNCH is checked here (SDM
//! Vol. 3, 27.2 and 27.3 in current numbering, 26.2/26.3 in older editions): control
//! bits against the capability MSRs, page addresses, the host state, and a guest state
//! that passes the VM-entry checks for the requested mode. A mode the CPU cannot run is
//! refused with a typed [`StartError`] (the ABI's, so the VMM learns it) that says why, so a real-mode guest on a CPU
//! without unrestricted guest fails at VCpu creation, not at VM entry. The controls stay
//! inside the validator's [`Policy`], so every later reply batch is judged against the
//! same rules, and the returned [`VcpuState`] is the validator's view of the new VCpu.
//!
//! The guest sees CR0 and CR4 through read shadows: the bits VMX operation fixes (and
//! CR4.VMXE, which only exists for the kernel's sake) are owned by the kernel through the
//! guest/host masks, and the guest reads the values its mode would have on bare metal.

use protocols::object::vcpu_mode;
pub use protocols::vcpu_start::StartError;
use protocols::vmcs::ctl::{entry, exit, proc, proc2};
use protocols::vmcs::{Field, ALWAYS_INTERCEPTED_EXCEPTIONS, SEGMENT_FIELDS};
use protocols::vmexit::Controls;

use super::caps::{CtlMsr, VmxCaps};
use super::ept::Eptp;
use super::validator::{Policy, VcpuState};
use protocols::x86::{
    CR0_ET, CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_PAE, CR4_VMXE, EFER_LMA, EFER_LME,
    EFER_NXE, EFER_SCE, RFLAGS_FIXED1,
};

/// Room for every field [`initial_vmcs`] writes.
pub const MAX_INITIAL_WRITES: usize = 112;

/// The power-on PAT: WB, WT, UC-, UC, repeated.
const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;
/// DR7 after reset: only the always-one bit 10.
const DR7_DEFAULT: u64 = 0x400;
/// The notify window, in cycles without an instruction boundary before a notify VM exit:
/// far above any instruction that is not stuck, far below one scheduling tick.
const NOTIFY_WINDOW: u64 = 1 << 17;
/// A TSC multiplier of 1.0 (16.48 fixed point): the guest's TSC runs at the host's rate.
const TSC_MULTIPLIER_ONE: u64 = 1 << 48;
/// PAUSE-loop exiting: cycles between two PAUSEs of one loop, and how long a loop may
/// spin before it exits (the values Linux KVM starts with).
const PLE_GAP: u64 = 128;
const PLE_WINDOW: u64 = 4096;
/// Access rights (SDM 25.4.1): type in bits 3:0, S 4, DPL 6:5, P 7, L 13, D/B 14, G 15,
/// unusable 16.
const AR_CODE_16: u32 = 0x9b;
const AR_DATA_16: u32 = 0x93;
const AR_CODE_32: u32 = 0xc09b;
const AR_DATA_32: u32 = 0xc093;
const AR_CODE_64: u32 = 0xa09b;
const AR_TSS_BUSY: u32 = 0x8b;
const AR_UNUSABLE: u32 = 1 << 16;
/// Flat selectors of the 32- and 64-bit guests (entries 1 and 2 of the guest's GDT).
const GUEST_CS: u16 = 0x08;
const GUEST_DS: u16 = 0x10;

/// The host state the kernel resumes in after every VM exit (SDM 25.5). Host RSP is
/// rewritten by the entry stub on each entry; the value here only has to be canonical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HostState {
    /// CR0.
    pub cr0: u64,
    /// CR3: the kernel's page tables.
    pub cr3: u64,
    /// CR4 (with VMXE).
    pub cr4: u64,
    /// CS selector.
    pub cs: u16,
    /// SS selector.
    pub ss: u16,
    /// DS selector.
    pub ds: u16,
    /// ES selector.
    pub es: u16,
    /// FS selector.
    pub fs: u16,
    /// GS selector.
    pub gs: u16,
    /// TR selector.
    pub tr: u16,
    /// FS base.
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// TR base (the TSS).
    pub tr_base: u64,
    /// GDTR base.
    pub gdtr_base: u64,
    /// IDTR base.
    pub idtr_base: u64,
    /// Where VM exits land: the entry stub's exit label.
    pub rip: u64,
    /// Stack pointer on exit (the stub overwrites it before every entry).
    pub rsp: u64,
    /// IA32_SYSENTER_CS.
    pub sysenter_cs: u32,
    /// IA32_SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// IA32_SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// IA32_EFER, loaded on exit when the CPU can.
    pub efer: u64,
    /// IA32_PAT, loaded on exit when the CPU can.
    pub pat: u64,
}

/// The processor mode a new VCpu starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMode {
    /// IA-32e mode with 4-level paging on the guest's own tables (`GuestEntry::cr3`), CS
    /// 64-bit code; the "IA-32e mode guest" entry control is set.
    Long64,
    /// 32-bit protected mode, flat 4 GiB segments, paging off: needs unrestricted guest.
    Protected32,
    /// Real-address mode: needs unrestricted guest. The entry RIP is a linear address
    /// below 1 MiB, split into CS = the 64 KiB segment holding it and IP = the offset.
    Real,
}

impl GuestMode {
    /// Whether VMX can run the mode only with unrestricted guest.
    pub const fn needs_unrestricted_guest(self) -> bool {
        matches!(self, Self::Protected32 | Self::Real)
    }

    /// The mode's number in `VCpuStart` ([`vcpu_mode`]).
    pub const fn raw(self) -> u64 {
        match self {
            Self::Long64 => vcpu_mode::LONG64,
            Self::Protected32 => vcpu_mode::PROTECTED32,
            Self::Real => vcpu_mode::REAL,
        }
    }
}

/// Where and how the guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestEntry {
    /// The processor mode.
    pub mode: GuestMode,
    /// Entry instruction pointer (for [`GuestMode::Real`], a linear address < 1 MiB).
    pub rip: u64,
    /// Entry stack pointer (for [`GuestMode::Real`], SP with SS = 0).
    pub rsp: u64,
    /// Guest CR3: the guest-physical address of its PML4 for [`GuestMode::Long64`];
    /// loaded as is (and unused until the guest enables paging) in the other modes.
    pub cr3: u64,
    /// Exception bitmap: bit n = exception n exits.
    pub exception_bitmap: u32,
    /// Control bits the VMM wants from the first entry on (HLT exiting, ...); each must be
    /// one the [`Policy`] lets the VMM choose and the CPU allows.
    pub extra_controls: Controls,
}

/// The kernel-owned MSR areas (SDM 25.7.2, 25.8.2): 16-byte entries, used only when the
/// count is non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MsrAreas {
    /// VM-exit MSR-store area (guest MSRs saved on exit).
    pub exit_store: u64,
    /// Its entry count.
    pub exit_store_count: u32,
    /// VM-exit MSR-load area (host MSRs loaded on exit).
    pub exit_load: u64,
    /// Its entry count.
    pub exit_load_count: u32,
    /// VM-entry MSR-load area (guest MSRs loaded on entry).
    pub entry_load: u64,
    /// Its entry count.
    pub entry_load_count: u32,
}

/// The kernel-owned pages and identifiers of a VCpu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuPages {
    /// I/O bitmap A (ports 0x0000-0x7fff), host-physical.
    pub io_bitmap_a: u64,
    /// I/O bitmap B (ports 0x8000-0xffff), host-physical.
    pub io_bitmap_b: u64,
    /// MSR bitmaps, host-physical.
    pub msr_bitmap: u64,
    /// The GuestSpace's EPT pointer; `None` only for a policy without EPT.
    pub eptp: Option<Eptp>,
    /// The VPID; 0 = none (must be non-zero exactly when the policy forces VPIDs).
    pub vpid: u16,
    /// MSR load/store areas.
    pub msr_areas: MsrAreas,
    /// The CPU's physical-address width (CPUID.80000008H:EAX[7:0]).
    pub maxphyaddr: u8,
}

/// The initial VMCS contents and the validator's view of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitialVmcs {
    writes: [(Field, u64); MAX_INITIAL_WRITES],
    len: usize,
    /// The validator's cached state of the new VCpu (controls, CR0, CR4, RFLAGS, RIP).
    pub state: VcpuState,
}

impl InitialVmcs {
    /// The VMWRITEs to make after VMCLEAR and VMPTRLD, each field once.
    pub fn writes(&self) -> &[(Field, u64)] {
        self.writes.get(..self.len).unwrap_or(&[])
    }

    /// The value written to `field`, if any.
    pub fn get(&self, field: Field) -> Option<u64> {
        self.writes().iter().find(|(f, _)| *f == field).map(|&(_, v)| v)
    }

    fn push(&mut self, field: Field, value: u64) {
        // MAX_INITIAL_WRITES covers every field written below (a test checks the
        // largest case), so a full table cannot happen; a write is never silently dropped
        // from a table that has room.
        if let Some(slot) = self.writes.get_mut(self.len) {
            *slot = (field, value);
            self.len += 1;
        }
    }
}

/// A segment register's VMCS quadruple.
#[derive(Clone, Copy)]
struct Segment {
    selector: u16,
    base: u64,
    limit: u32,
    access: u32,
}

const fn canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_ffff
}

/// Whether `addr` is `align`-aligned and `[addr, addr + len)` fits in `maxphyaddr` bits.
fn phys_ok(addr: u64, align: u64, len: u64, maxphyaddr: u8) -> bool {
    let limit = 1u64.checked_shl(maxphyaddr.min(52).into()).unwrap_or(0);
    addr.is_multiple_of(align) && addr.checked_add(len).is_some_and(|end| end <= limit)
}

fn valid_pat(pat: u64) -> bool {
    pat.to_le_bytes().iter().all(|&ty| matches!(ty, 0 | 1 | 4 | 5 | 6 | 7))
}

/// The five control fields with the capability MSR that bounds each.
fn control_fields(c: &Controls, caps: &VmxCaps) -> [(Field, u32, CtlMsr); 5] {
    [
        (Field::PinBasedControls, c.pin, caps.pinbased),
        (Field::ProcBasedControls, c.proc, caps.procbased),
        (Field::SecondaryProcBasedControls, c.proc2, caps.procbased2),
        (Field::ExitControls, c.exit, caps.exit),
        (Field::EntryControls, c.entry, caps.entry),
    ]
}

/// Add `want` to `c` where both the policy (VMM-choosable bits) and the CPU allow it.
fn optional(have: u32, want: u32, policy_vmm: u32, msr: CtlMsr) -> u32 {
    have | (want & policy_vmm & msr.may_be_one)
}

/// The controls of the new VCpu: the policy's initial controls, the bits the mode needs,
/// the EFER/PAT switching the CPU offers, and the VMM's extras.
fn controls(
    caps: &VmxCaps,
    policy: &Policy,
    guest: &GuestEntry,
) -> Result<(Controls, bool), StartError> {
    if let Some((field, bits)) = policy.unsupported(caps) {
        return Err(StartError::PolicyUnsupported { field, bits });
    }
    let mut c = policy.initial_controls(caps);
    // Unrestricted guest whenever the CPU and policy allow it, so a guest can change mode
    // as on bare metal; the real and unpaged modes cannot run without it.
    c.proc2 = optional(c.proc2, proc2::UNRESTRICTED_GUEST, policy.proc2.vmm, caps.procbased2);
    let unrestricted = c.proc2 & proc2::UNRESTRICTED_GUEST != 0;
    if guest.mode.needs_unrestricted_guest() && !unrestricted {
        return Err(if caps.unrestricted_guest() {
            StartError::NoGuestSpace
        } else {
            StartError::NeedsUnrestrictedGuest { mode: guest.mode.raw() }
        });
    }
    if guest.mode == GuestMode::Long64 {
        if !caps.entry.allows(entry::IA32E_MODE_GUEST)
            || policy.entry.vmm & entry::IA32E_MODE_GUEST == 0
        {
            return Err(StartError::PolicyUnsupported {
                field: Field::EntryControls,
                bits: entry::IA32E_MODE_GUEST,
            });
        }
        c.entry |= entry::IA32E_MODE_GUEST;
    }
    // The guest's EFER and PAT are switched where the CPU can (the policy offers the entry
    // loads only when the exit reloads the host's), and saved on exit so that a guest
    // WRMSR or long-mode switch is not undone by the next entry.
    c.entry = optional(c.entry, entry::LOAD_EFER | entry::LOAD_PAT, policy.entry.vmm, caps.entry);
    let saves = (if c.entry & entry::LOAD_EFER != 0 { exit::SAVE_EFER } else { 0 })
        | (if c.entry & entry::LOAD_PAT != 0 { exit::SAVE_PAT } else { 0 });
    c.exit = optional(c.exit, saves, policy.exit.vmm, caps.exit);

    let extra = guest.extra_controls;
    let requests = [
        (Field::PinBasedControls, extra.pin, policy.pin.vmm, &mut c.pin),
        (Field::ProcBasedControls, extra.proc, policy.proc.vmm, &mut c.proc),
        (Field::SecondaryProcBasedControls, extra.proc2, policy.proc2.vmm, &mut c.proc2),
        (Field::ExitControls, extra.exit, policy.exit.vmm, &mut c.exit),
        (Field::EntryControls, extra.entry, policy.entry.vmm, &mut c.entry),
    ];
    for (field, want, vmm, value) in requests {
        let bits = want & !vmm & !*value;
        if bits != 0 {
            return Err(StartError::ControlNotAllowed { field, bits });
        }
        *value |= want;
    }
    for (field, value, msr) in control_fields(&c, caps) {
        let bits = (value & !msr.may_be_one) | (msr.must_be_one & !value);
        if bits != 0 {
            return Err(StartError::ControlNotAllowed { field, bits });
        }
    }
    Ok((c, unrestricted))
}

/// The host-state checks of SDM 27.2.2-27.2.4 for a 64-bit host.
fn check_host(
    caps: &VmxCaps,
    c: &Controls,
    host: &HostState,
    maxphyaddr: u8,
) -> Result<(), StartError> {
    let bad = |field| Err(StartError::BadHostState(field));
    if caps.cr0_violations(host.cr0, false) != 0 {
        return bad(Field::HostCr0);
    }
    if caps.cr4_violations(host.cr4) != 0 || host.cr4 & CR4_PAE == 0 {
        return bad(Field::HostCr4);
    }
    if !phys_ok(host.cr3 & !0xfff, 1, 1, maxphyaddr) {
        return bad(Field::HostCr3);
    }
    let selectors = [
        (Field::HostCsSelector, host.cs),
        (Field::HostSsSelector, host.ss),
        (Field::HostDsSelector, host.ds),
        (Field::HostEsSelector, host.es),
        (Field::HostFsSelector, host.fs),
        (Field::HostGsSelector, host.gs),
        (Field::HostTrSelector, host.tr),
    ];
    for (field, sel) in selectors {
        if sel & 7 != 0 {
            return bad(field);
        }
    }
    if host.cs == 0 {
        return bad(Field::HostCsSelector);
    }
    if host.tr == 0 {
        return bad(Field::HostTrSelector);
    }
    let addresses = [
        (Field::HostFsBase, host.fs_base),
        (Field::HostGsBase, host.gs_base),
        (Field::HostTrBase, host.tr_base),
        (Field::HostGdtrBase, host.gdtr_base),
        (Field::HostIdtrBase, host.idtr_base),
        (Field::HostIa32SysenterEsp, host.sysenter_esp),
        (Field::HostIa32SysenterEip, host.sysenter_eip),
        (Field::HostRip, host.rip),
        (Field::HostRsp, host.rsp),
    ];
    for (field, addr) in addresses {
        if !canonical(addr) {
            return bad(field);
        }
    }
    if c.exit & exit::LOAD_EFER != 0 {
        let defined = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
        if host.efer & !defined != 0 || host.efer & (EFER_LME | EFER_LMA) != EFER_LME | EFER_LMA {
            return bad(Field::HostIa32Efer);
        }
    }
    if c.exit & exit::LOAD_PAT != 0 && !valid_pat(host.pat) {
        return bad(Field::HostIa32Pat);
    }
    Ok(())
}

/// The addresses of the kernel-owned pages (SDM 27.2.1.1-27.2.1.3).
fn check_pages(caps: &VmxCaps, c: &Controls, pages: &VcpuPages) -> Result<(), StartError> {
    let w = pages.maxphyaddr;
    let page_ok = |addr| phys_ok(addr, 4096, 4096, w);
    for (field, addr, used) in [
        (Field::IoBitmapA, pages.io_bitmap_a, c.proc & proc::USE_IO_BITMAPS != 0),
        (Field::IoBitmapB, pages.io_bitmap_b, c.proc & proc::USE_IO_BITMAPS != 0),
        (Field::MsrBitmap, pages.msr_bitmap, c.proc & proc::USE_MSR_BITMAPS != 0),
    ] {
        if used && !page_ok(addr) {
            return Err(StartError::BadAddress(field));
        }
    }
    // IA32_VMX_MISC bits 27:25: recommended maximum = 512 * (N + 1) entries per list.
    let max_entries = 512 * (((caps.misc >> 25) & 7) + 1);
    let m = &pages.msr_areas;
    for (field, addr, count) in [
        (Field::ExitMsrStoreAddress, m.exit_store, m.exit_store_count),
        (Field::ExitMsrLoadAddress, m.exit_load, m.exit_load_count),
        (Field::EntryMsrLoadAddress, m.entry_load, m.entry_load_count),
    ] {
        let count = u64::from(count);
        if count != 0 && (count > max_entries || !phys_ok(addr, 16, count * 16, w)) {
            return Err(StartError::BadAddress(field));
        }
    }
    let ept = c.proc2 & proc2::ENABLE_EPT != 0;
    match pages.eptp {
        Some(p) if !ept || !phys_ok(p.root(), 4096, 4096, w) => {
            Err(StartError::BadAddress(Field::EptPointer))
        }
        None if ept => Err(StartError::NoGuestSpace),
        _ => Ok(()),
    }?;
    if (c.proc2 & proc2::ENABLE_VPID != 0) != (pages.vpid != 0) {
        return Err(StartError::VpidMismatch);
    }
    Ok(())
}

/// The guest's segment registers for `mode`, in [`SEGMENT_FIELDS`] order, plus RIP and
/// RSP as the mode represents them.
fn segments(entry: &GuestEntry) -> Result<([Segment; 8], u64, u64), StartError> {
    let ldtr = Segment { selector: 0, base: 0, limit: 0xffff, access: AR_UNUSABLE };
    let tr = Segment { selector: 0, base: 0, limit: 0xffff, access: AR_TSS_BUSY };
    let (code, data, rip, rsp) = match entry.mode {
        GuestMode::Real => {
            if entry.rip >= 0x10_0000 {
                return Err(StartError::BadEntry(Field::GuestRip));
            }
            if entry.rsp > 0xffff {
                return Err(StartError::BadEntry(Field::GuestRsp));
            }
            let cs = ((entry.rip >> 4) & 0xf000) as u16;
            let code = Segment {
                selector: cs,
                base: u64::from(cs) << 4,
                limit: 0xffff,
                access: AR_CODE_16,
            };
            let data = Segment { selector: 0, base: 0, limit: 0xffff, access: AR_DATA_16 };
            (code, data, entry.rip & 0xffff, entry.rsp)
        }
        GuestMode::Protected32 => {
            if entry.rip > u64::from(u32::MAX) {
                return Err(StartError::BadEntry(Field::GuestRip));
            }
            if entry.rsp > u64::from(u32::MAX) {
                return Err(StartError::BadEntry(Field::GuestRsp));
            }
            let code = Segment { selector: GUEST_CS, base: 0, limit: u32::MAX, access: AR_CODE_32 };
            let data = Segment { selector: GUEST_DS, base: 0, limit: u32::MAX, access: AR_DATA_32 };
            (code, data, entry.rip, entry.rsp)
        }
        GuestMode::Long64 => {
            if !canonical(entry.rip) {
                return Err(StartError::BadEntry(Field::GuestRip));
            }
            if !canonical(entry.rsp) {
                return Err(StartError::BadEntry(Field::GuestRsp));
            }
            let code = Segment { selector: GUEST_CS, base: 0, limit: u32::MAX, access: AR_CODE_64 };
            let data = Segment { selector: GUEST_DS, base: 0, limit: u32::MAX, access: AR_DATA_32 };
            (code, data, entry.rip, entry.rsp)
        }
    };
    Ok(([data, code, data, data, data, data, ldtr, tr], rip, rsp))
}

/// Produce the initial VMCS of a VCpu that will start in `guest.mode` at `guest.rip`, or
/// say why this CPU, policy or request cannot run it. Pure: nothing is written.
pub fn initial_vmcs(
    caps: &VmxCaps,
    policy: &Policy,
    host: &HostState,
    guest: &GuestEntry,
    pages: &VcpuPages,
) -> Result<InitialVmcs, StartError> {
    // What the CPU cannot do at all comes first, so the message names the real cause.
    if guest.mode.needs_unrestricted_guest() && !caps.unrestricted_guest() {
        return Err(StartError::NeedsUnrestrictedGuest { mode: guest.mode.raw() });
    }
    if !caps.ept() {
        return Err(StartError::NeedsEpt);
    }
    if policy.proc2.forced & proc2::ENABLE_EPT == 0 {
        return Err(StartError::NoGuestSpace);
    }
    let (c, unrestricted) = controls(caps, policy, guest)?;
    check_host(caps, &c, host, pages.maxphyaddr)?;
    check_pages(caps, &c, pages)?;

    // CR0 and CR4: the guest's view of its mode, plus what VMX operation fixes.
    let (cr0_view, cr4_view, efer) = match guest.mode {
        GuestMode::Long64 => {
            (CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG, CR4_PAE, EFER_LME | EFER_LMA)
        }
        GuestMode::Protected32 => (CR0_PE | CR0_ET | CR0_NE, 0, 0),
        GuestMode::Real => (CR0_ET, 0, 0),
    };
    let relaxed = if unrestricted { CR0_PE | CR0_PG } else { 0 };
    let cr0_owned = (caps.cr0_fixed0 & !relaxed) | (!caps.cr0_fixed1 & 0xffff_ffff);
    let cr0 = cr0_view | (caps.cr0_fixed0 & !relaxed);
    if caps.cr0_violations(cr0, unrestricted) != 0 {
        return Err(StartError::FixedBits(Field::GuestCr0));
    }
    let cr4_owned = caps.cr4_fixed0 | CR4_VMXE | (!caps.cr4_fixed1 & 0xffff_ffff);
    let cr4 = cr4_view | caps.cr4_fixed0;
    if caps.cr4_violations(cr4) != 0 {
        return Err(StartError::FixedBits(Field::GuestCr4));
    }
    if guest.cr3 >> pages.maxphyaddr.min(63) != 0 {
        return Err(StartError::BadEntry(Field::GuestCr3));
    }
    let (segs, rip, rsp) = segments(guest)?;
    let rflags = RFLAGS_FIXED1;

    let mut out = InitialVmcs {
        writes: [(Field::GuestRip, 0); MAX_INITIAL_WRITES],
        len: 0,
        state: VcpuState {
            controls: c,
            cr0,
            cr4,
            rflags,
            rip,
            interruptibility: 0,
            exit_instruction_len: 0,
        },
    };
    let mut w = |field: Field, value: u64| out.push(field, value);

    // Execution, exit and entry controls.
    w(Field::PinBasedControls, c.pin.into());
    w(Field::ProcBasedControls, c.proc.into());
    if c.proc & proc::ACTIVATE_SECONDARY_CONTROLS != 0 {
        w(Field::SecondaryProcBasedControls, c.proc2.into());
    }
    w(Field::ExitControls, c.exit.into());
    w(Field::EntryControls, c.entry.into());
    w(Field::ExceptionBitmap, (guest.exception_bitmap | ALWAYS_INTERCEPTED_EXCEPTIONS).into());
    w(Field::PageFaultErrorCodeMask, 0);
    w(Field::PageFaultErrorCodeMatch, 0);
    w(Field::Cr3TargetCount, 0);
    w(Field::TscOffset, 0);
    // Fields that exist only with a control the CPU offers: whatever the VMCS region
    // held must never be what a control the VMM may turn on reads.
    if c.proc2 & proc2::INSTRUCTION_TIMEOUT != 0 {
        w(Field::NotifyWindow, NOTIFY_WINDOW);
    }
    if caps.procbased2.allows(proc2::USE_TSC_SCALING) {
        w(Field::TscMultiplier, TSC_MULTIPLIER_ONE);
    }
    if caps.procbased2.allows(proc2::ENABLE_XSAVES) {
        // Zero: XSAVES/XRSTORS of the guest's own supervisor state never exit.
        w(Field::XssExitingBitmap, 0);
    }
    if caps.procbased2.allows(proc2::ENCLS_EXITING) {
        w(Field::EnclsExitingBitmap, u64::MAX);
    }
    if caps.procbased2.allows(proc2::ENCLV_EXITING) {
        w(Field::EnclvExitingBitmap, u64::MAX);
    }
    if caps.procbased2.allows(proc2::PAUSE_LOOP_EXITING) {
        w(Field::PleGap, PLE_GAP);
        w(Field::PleWindow, PLE_WINDOW);
    }
    w(Field::IoBitmapA, pages.io_bitmap_a);
    w(Field::IoBitmapB, pages.io_bitmap_b);
    w(Field::MsrBitmap, pages.msr_bitmap);
    if let Some(eptp) = pages.eptp {
        w(Field::EptPointer, eptp.raw());
    }
    if pages.vpid != 0 {
        w(Field::Vpid, pages.vpid.into());
    }
    let m = pages.msr_areas;
    w(Field::ExitMsrStoreCount, m.exit_store_count.into());
    w(Field::ExitMsrStoreAddress, m.exit_store);
    w(Field::ExitMsrLoadCount, m.exit_load_count.into());
    w(Field::ExitMsrLoadAddress, m.exit_load);
    w(Field::EntryMsrLoadCount, m.entry_load_count.into());
    w(Field::EntryMsrLoadAddress, m.entry_load);
    w(Field::EntryInterruptionInfo, 0);
    w(Field::EntryExceptionErrorCode, 0);
    w(Field::EntryInstructionLength, 0);
    w(Field::Cr0GuestHostMask, cr0_owned);
    w(Field::Cr0ReadShadow, cr0_view);
    w(Field::Cr4GuestHostMask, cr4_owned);
    w(Field::Cr4ReadShadow, cr4_view);
    w(Field::VmcsLinkPointer, u64::MAX);

    // Host state.
    w(Field::HostCr0, host.cr0);
    w(Field::HostCr3, host.cr3);
    w(Field::HostCr4, host.cr4);
    w(Field::HostCsSelector, host.cs.into());
    w(Field::HostSsSelector, host.ss.into());
    w(Field::HostDsSelector, host.ds.into());
    w(Field::HostEsSelector, host.es.into());
    w(Field::HostFsSelector, host.fs.into());
    w(Field::HostGsSelector, host.gs.into());
    w(Field::HostTrSelector, host.tr.into());
    w(Field::HostFsBase, host.fs_base);
    w(Field::HostGsBase, host.gs_base);
    w(Field::HostTrBase, host.tr_base);
    w(Field::HostGdtrBase, host.gdtr_base);
    w(Field::HostIdtrBase, host.idtr_base);
    w(Field::HostIa32SysenterCs, host.sysenter_cs.into());
    w(Field::HostIa32SysenterEsp, host.sysenter_esp);
    w(Field::HostIa32SysenterEip, host.sysenter_eip);
    w(Field::HostRip, host.rip);
    w(Field::HostRsp, host.rsp);
    if c.exit & exit::LOAD_EFER != 0 {
        w(Field::HostIa32Efer, host.efer);
    }
    if c.exit & exit::LOAD_PAT != 0 {
        w(Field::HostIa32Pat, host.pat);
    }

    // Guest state.
    w(Field::GuestCr0, cr0);
    w(Field::GuestCr3, guest.cr3);
    w(Field::GuestCr4, cr4);
    w(Field::GuestDr7, DR7_DEFAULT);
    w(Field::GuestIa32Debugctl, 0);
    for ((sel, base, limit, access), s) in SEGMENT_FIELDS.into_iter().zip(segs) {
        w(sel, s.selector.into());
        w(base, s.base);
        w(limit, s.limit.into());
        w(access, s.access.into());
    }
    w(Field::GuestGdtrBase, 0);
    w(Field::GuestGdtrLimit, 0xffff);
    w(Field::GuestIdtrBase, 0);
    w(Field::GuestIdtrLimit, 0xffff);
    w(Field::GuestRip, rip);
    w(Field::GuestRsp, rsp);
    w(Field::GuestRflags, rflags);
    w(Field::GuestInterruptibility, 0);
    w(Field::GuestActivityState, 0);
    w(Field::GuestPendingDebugExceptions, 0);
    w(Field::GuestIa32SysenterCs, 0);
    w(Field::GuestIa32SysenterEsp, 0);
    w(Field::GuestIa32SysenterEip, 0);
    // The EFER and PAT fields exist only where some control switches them.
    if caps.entry.allows(entry::LOAD_EFER) || caps.exit.allows(exit::SAVE_EFER) {
        w(Field::GuestIa32Efer, efer);
    }
    if caps.entry.allows(entry::LOAD_PAT) || caps.exit.allows(exit::SAVE_PAT) {
        w(Field::GuestIa32Pat, PAT_DEFAULT);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed test is a panic")]
mod tests {
    use std::collections::HashMap;

    use super::{
        initial_vmcs, GuestEntry, GuestMode, HostState, InitialVmcs, MsrAreas, StartError,
        VcpuPages, MAX_INITIAL_WRITES,
    };
    use crate::vmx::caps::{VmxCaps, VmxMsrs};
    use crate::vmx::ept::{Ept, EptVpidCaps};
    use crate::vmx::validator::{decode_reply, Policy};
    use protocols::object::vcpu_mode;
    use protocols::vmcs::ctl::{entry, exit, pin, proc, proc2};
    use protocols::vmcs::Field;
    use protocols::vmexit::{Controls, ExitReply};

    use crate::vmx::samples::{host, EPT_CAPS, MAXPHYADDR, SKYLAKE};

    fn caps() -> VmxCaps {
        VmxCaps::from_all(&SKYLAKE)
    }

    /// Lynnfield-like: EPT and VPID but no unrestricted guest.
    fn lynnfield() -> VmxCaps {
        VmxCaps::from_all(&VmxMsrs { procbased2: SKYLAKE.procbased2 & !(1 << 39), ..SKYLAKE })
    }

    /// Penryn-like: no secondary controls at all, so no EPT.
    fn penryn() -> VmxCaps {
        VmxCaps::from_all(&VmxMsrs {
            procbased: SKYLAKE.procbased & !(1 << 63),
            procbased2: 0,
            ..SKYLAKE
        })
    }

    fn pages(caps: &VmxCaps) -> VcpuPages {
        let eptp = caps.ept().then(|| {
            Ept::from_root(0x20_0000, EptVpidCaps::from_raw(EPT_CAPS)).eptp(false).unwrap()
        });
        VcpuPages {
            io_bitmap_a: 0x30_0000,
            io_bitmap_b: 0x30_1000,
            msr_bitmap: 0x30_2000,
            eptp,
            vpid: if caps.vpid() { 1 } else { 0 },
            msr_areas: MsrAreas::default(),
            maxphyaddr: MAXPHYADDR,
        }
    }

    fn entry_for(mode: GuestMode) -> GuestEntry {
        let (rip, rsp, cr3) = match mode {
            GuestMode::Long64 => (0x10_4000, 0x10_8000, 0x10_0000),
            GuestMode::Protected32 => (0x10_0000, 0x10_8000, 0),
            GuestMode::Real => (0x1000, 0x0ff0, 0),
        };
        GuestEntry {
            mode,
            rip,
            rsp,
            cr3,
            exception_bitmap: 1 << 18,
            extra_controls: Controls {
                proc: proc::HLT_EXITING | proc::RDTSC_EXITING,
                ..Controls::default()
            },
        }
    }

    fn setup(caps: &VmxCaps, mode: GuestMode) -> Result<InitialVmcs, StartError> {
        let policy = Policy::new(caps, caps.ept(), caps.vpid());
        initial_vmcs(caps, &policy, &host(), &entry_for(mode), &pages(caps))
    }

    // ---- A model of the VM-entry checks (SDM 27.2/27.3; 26.2/26.3 in older editions)
    // that can be made from the VMCS contents alone. Each failure names the check.

    struct Vmcs<'a> {
        f: HashMap<Field, u64>,
        caps: &'a VmxCaps,
    }

    impl Vmcs<'_> {
        fn get(&self, field: Field) -> u64 {
            *self.f.get(&field).unwrap_or_else(|| panic!("{field} was never written"))
        }
    }

    fn canonical(a: u64) -> bool {
        let top = a >> 47;
        top == 0 || top == 0x1_ffff
    }

    /// G must match the limit: limit[11:0] not all ones → G = 0; limit[31:20] non-zero → G = 1.
    fn granularity_ok(limit: u64, ar: u64) -> bool {
        let g = ar & (1 << 15) != 0;
        !((limit & 0xfff != 0xfff && g) || (limit >> 20 != 0 && !g))
    }

    fn check_vm_entry(v: &Vmcs) -> Result<(), String> {
        let caps = v.caps;
        let ctl = |field| v.get(field) as u32;
        let (pinc, procc, exitc, entryc) = (
            ctl(Field::PinBasedControls),
            ctl(Field::ProcBasedControls),
            ctl(Field::ExitControls),
            ctl(Field::EntryControls),
        );
        let secondary = procc & proc::ACTIVATE_SECONDARY_CONTROLS != 0;
        let proc2c = if secondary { ctl(Field::SecondaryProcBasedControls) } else { 0 };
        let err = |s: &str| Err(s.to_string());

        // 27.2.1.1: controls against the capability MSRs and each other.
        for (name, value, msr) in [
            ("pin", pinc, caps.pinbased),
            ("proc", procc, caps.procbased),
            ("proc2", proc2c, caps.procbased2),
            ("exit", exitc, caps.exit),
            ("entry", entryc, caps.entry),
        ] {
            if value & !msr.may_be_one != 0 || msr.must_be_one & !value != 0 {
                return Err(format!("{name} controls {value:#x} violate the capability MSR"));
            }
        }
        if v.get(Field::Cr3TargetCount) > 4 {
            return err("CR3-target count > 4");
        }
        let page = |f| v.get(f) & 0xfff == 0 && v.get(f) >> MAXPHYADDR == 0;
        if procc & proc::USE_IO_BITMAPS != 0 && !(page(Field::IoBitmapA) && page(Field::IoBitmapB))
        {
            return err("I/O bitmap address");
        }
        if procc & proc::USE_MSR_BITMAPS != 0 && !page(Field::MsrBitmap) {
            return err("MSR bitmap address");
        }
        if pinc & pin::VIRTUAL_NMIS != 0 && pinc & pin::NMI_EXITING == 0 {
            return err("virtual NMIs without NMI exiting");
        }
        let ug = proc2c & proc2::UNRESTRICTED_GUEST != 0;
        let ept = proc2c & proc2::ENABLE_EPT != 0;
        if ug && !ept {
            return err("unrestricted guest without EPT");
        }
        if ept
            && Ept::check_eptp(
                v.get(Field::EptPointer),
                EptVpidCaps::from_raw(EPT_CAPS),
                MAXPHYADDR,
            )
            .is_none()
        {
            return err("EPT pointer");
        }
        if proc2c & proc2::ENABLE_VPID != 0 && v.get(Field::Vpid) == 0 {
            return err("VPID 0");
        }
        // 27.2.1.2/27.2.1.3: a 64-bit host; nothing injected.
        if exitc & exit::HOST_ADDRESS_SPACE_SIZE == 0 {
            return err("host address-space size must be 1 for a 64-bit kernel");
        }
        if v.get(Field::EntryInterruptionInfo) & (1 << 31) != 0 {
            return err("unexpected event injection");
        }

        // 27.2.2-27.2.4: host state.
        if caps.cr0_violations(v.get(Field::HostCr0), false) != 0 {
            return err("host CR0 fixed bits");
        }
        let host_cr4 = v.get(Field::HostCr4);
        if caps.cr4_violations(host_cr4) != 0 || host_cr4 & (1 << 5) == 0 {
            return err("host CR4 fixed bits / PAE");
        }
        for f in [
            Field::HostCsSelector,
            Field::HostSsSelector,
            Field::HostDsSelector,
            Field::HostEsSelector,
            Field::HostFsSelector,
            Field::HostGsSelector,
            Field::HostTrSelector,
        ] {
            if v.get(f) & 7 != 0 {
                return Err(format!("{f}: RPL/TI must be 0"));
            }
        }
        if v.get(Field::HostCsSelector) == 0 || v.get(Field::HostTrSelector) == 0 {
            return err("host CS/TR selector 0");
        }
        for f in [
            Field::HostFsBase,
            Field::HostGsBase,
            Field::HostTrBase,
            Field::HostGdtrBase,
            Field::HostIdtrBase,
            Field::HostIa32SysenterEsp,
            Field::HostIa32SysenterEip,
            Field::HostRip,
        ] {
            if !canonical(v.get(f)) {
                return Err(format!("{f} not canonical"));
            }
        }
        if exitc & exit::LOAD_EFER != 0 && v.get(Field::HostIa32Efer) & 0x500 != 0x500 {
            return err("host EFER.LMA/LME must match the 64-bit host");
        }

        // 27.3.1.1: control registers, debug state, MSRs.
        let ia32e = entryc & entry::IA32E_MODE_GUEST != 0;
        let cr0 = v.get(Field::GuestCr0);
        let cr4 = v.get(Field::GuestCr4);
        if caps.cr0_violations(cr0, ug) != 0 {
            return err("guest CR0 fixed bits");
        }
        if cr0 & (1 << 31) != 0 && cr0 & 1 == 0 {
            return err("guest CR0.PG without PE");
        }
        if caps.cr4_violations(cr4) != 0 {
            return err("guest CR4 fixed bits");
        }
        if ia32e && (cr0 & (1 << 31) == 0 || cr4 & (1 << 5) == 0) {
            return err("IA-32e mode guest needs CR0.PG and CR4.PAE");
        }
        if !ia32e && cr4 & (1 << 17) != 0 {
            return err("CR4.PCIDE outside IA-32e mode");
        }
        if v.get(Field::GuestCr3) >> MAXPHYADDR != 0 {
            return err("guest CR3 beyond MAXPHYADDR");
        }
        if entryc & entry::LOAD_DEBUG_CONTROLS != 0 && v.get(Field::GuestDr7) >> 32 != 0 {
            return err("DR7[63:32]");
        }
        if entryc & entry::LOAD_EFER != 0 {
            let efer = v.get(Field::GuestIa32Efer);
            let lma = efer & (1 << 10) != 0;
            if lma != ia32e || (cr0 & (1 << 31) != 0 && lma != (efer & (1 << 8) != 0)) {
                return err("guest EFER.LMA/LME vs IA-32e mode guest and CR0.PG");
            }
        }

        // 27.3.1.2: segment registers.
        let seg = |i: usize| {
            let (s, b, l, a) = protocols::vmcs::SEGMENT_FIELDS[i];
            (v.get(s), v.get(b), v.get(l), v.get(a))
        };
        let (es, cs, ss, ds, fs, gs, ldtr, tr) =
            (seg(0), seg(1), seg(2), seg(3), seg(4), seg(5), seg(6), seg(7));
        let usable = |ar: u64| ar & (1 << 16) == 0;
        let rflags = v.get(Field::GuestRflags);
        if rflags & (1 << 17) != 0 {
            return err("virtual-8086 guests are not modelled");
        }
        if tr.0 & 4 != 0 || (usable(ldtr.3) && ldtr.0 & 4 != 0) {
            return err("TR/LDTR TI flag");
        }
        if !ug && ss.0 & 3 != cs.0 & 3 {
            return err("SS.RPL != CS.RPL");
        }
        if !canonical(tr.1) || !canonical(fs.1) || !canonical(gs.1) {
            return err("TR/FS/GS base not canonical");
        }
        if usable(ldtr.3) && !canonical(ldtr.1) {
            return err("LDTR base not canonical");
        }
        if cs.1 >> 32 != 0 {
            return err("CS base[63:32]");
        }
        for (name, s) in [("SS", ss), ("DS", ds), ("ES", es)] {
            if usable(s.3) && s.1 >> 32 != 0 {
                return Err(format!("{name} base[63:32]"));
            }
        }
        let cs_type = cs.3 & 0xf;
        let cs_dpl = (cs.3 >> 5) & 3;
        let ss_dpl = (ss.3 >> 5) & 3;
        if !(matches!(cs_type, 9 | 11 | 13 | 15) || (ug && cs_type == 3)) {
            return err("CS type");
        }
        if usable(ss.3) && !matches!(ss.3 & 0xf, 3 | 7) {
            return err("SS type");
        }
        for (name, s) in [("DS", ds), ("ES", es), ("FS", fs), ("GS", gs)] {
            if usable(s.3) {
                let ty = s.3 & 0xf;
                if ty & 1 == 0 || (ty & 8 != 0 && ty & 2 == 0) {
                    return Err(format!("{name} type"));
                }
                if !ug && ty <= 11 && (s.3 >> 5) & 3 < s.0 & 3 {
                    return Err(format!("{name} DPL < RPL"));
                }
            }
        }
        match cs_type {
            3 if cs_dpl != 0 => return err("CS type 3 needs DPL 0"),
            9 | 11 if cs_dpl != ss_dpl => return err("CS DPL != SS DPL"),
            13 | 15 if cs_dpl > ss_dpl => return err("conforming CS DPL > SS DPL"),
            _ => {}
        }
        if !ug && ss_dpl != ss.0 & 3 {
            return err("SS DPL != RPL");
        }
        if (cs_type == 3 || cr0 & 1 == 0) && ss_dpl != 0 {
            return err("SS DPL must be 0 in real mode");
        }
        for (name, s, is_cs) in [
            ("CS", cs, true),
            ("SS", ss, false),
            ("DS", ds, false),
            ("ES", es, false),
            ("FS", fs, false),
            ("GS", gs, false),
        ] {
            if is_cs || usable(s.3) {
                if s.3 & (1 << 4) == 0 || s.3 & (1 << 7) == 0 {
                    return Err(format!("{name} S/P"));
                }
                if s.3 & 0xf00 != 0 || s.3 >> 17 != 0 {
                    return Err(format!("{name} reserved access-rights bits"));
                }
                if !granularity_ok(s.2, s.3) {
                    return Err(format!("{name} limit vs G"));
                }
            }
        }
        if ia32e && cs.3 & (1 << 13) != 0 && cs.3 & (1 << 14) != 0 {
            return err("64-bit CS with D/B = 1");
        }
        let tr_type = tr.3 & 0xf;
        if (ia32e && tr_type != 11) || (!ia32e && !matches!(tr_type, 3 | 11)) {
            return err("TR type");
        }
        if tr.3 & (1 << 4) != 0
            || tr.3 & (1 << 7) == 0
            || tr.3 & 0xf00 != 0
            || !usable(tr.3)
            || tr.3 >> 17 != 0
            || !granularity_ok(tr.2, tr.3)
        {
            return err("TR access rights");
        }
        if usable(ldtr.3)
            && (ldtr.3 & 0xf != 2
                || ldtr.3 & (1 << 4) != 0
                || ldtr.3 & (1 << 7) == 0
                || !granularity_ok(ldtr.2, ldtr.3))
        {
            return err("LDTR access rights");
        }

        // 27.3.1.3: descriptor tables.
        for (b, l) in [
            (Field::GuestGdtrBase, Field::GuestGdtrLimit),
            (Field::GuestIdtrBase, Field::GuestIdtrLimit),
        ] {
            if !canonical(v.get(b)) || v.get(l) >> 16 != 0 {
                return Err(format!("{b}/{l}"));
            }
        }

        // 27.3.1.4: RIP and RFLAGS.
        let rip = v.get(Field::GuestRip);
        let long_cs = ia32e && cs.3 & (1 << 13) != 0;
        if (!long_cs && rip >> 32 != 0) || (long_cs && !canonical(rip)) {
            return err("guest RIP");
        }
        let reserved = !0x003f_ffffu64 | 1 << 15 | 1 << 5 | 1 << 3;
        if rflags & reserved != 0 || rflags & 2 == 0 {
            return err("RFLAGS reserved bits");
        }

        // 27.3.1.5: non-register state.
        if v.get(Field::GuestActivityState) != 0 || v.get(Field::GuestInterruptibility) != 0 {
            return err("activity / interruptibility");
        }
        if v.get(Field::GuestPendingDebugExceptions) != 0 {
            return err("pending debug exceptions");
        }
        if v.get(Field::VmcsLinkPointer) != u64::MAX {
            return err("VMCS link pointer must be all ones");
        }
        Ok(())
    }

    fn check(caps: &VmxCaps, init: &InitialVmcs) -> Result<(), String> {
        let mut f = HashMap::new();
        for &(field, value) in init.writes() {
            assert!(value <= field.width().max_value(), "{field} = {value:#x} is too wide");
            assert!(f.insert(field, value).is_none(), "{field} written twice");
        }
        check_vm_entry(&Vmcs { f, caps })
    }

    /// The initial controls and guest state also pass the kernel's own reply validator, so
    /// the first exit's batch is judged against a consistent cached state.
    fn validator_accepts(caps: &VmxCaps, init: &InitialVmcs) {
        let policy = Policy::new(caps, caps.ept(), caps.vpid());
        let mut reply = ExitReply::new();
        for field in [
            Field::PinBasedControls,
            Field::ProcBasedControls,
            Field::SecondaryProcBasedControls,
            Field::ExitControls,
            Field::EntryControls,
            Field::GuestCr0,
            Field::GuestCr4,
            Field::GuestRflags,
        ] {
            if let Some(v) = init.get(field) {
                reply.write(field, v).unwrap();
            }
        }
        if let Some(efer) = init.get(Field::GuestIa32Efer) {
            reply.write(Field::GuestIa32Efer, efer).unwrap();
        }
        let batch = decode_reply(&reply, caps, &policy, &init.state).unwrap();
        assert_eq!(batch.next, init.state);
    }

    #[test]
    fn long64_passes_the_entry_checks() {
        let init = setup(&caps(), GuestMode::Long64).unwrap();
        check(&caps(), &init).unwrap();
        validator_accepts(&caps(), &init);
        let entryc = init.get(Field::EntryControls).unwrap() as u32;
        assert_ne!(entryc & entry::IA32E_MODE_GUEST, 0);
        assert_ne!(entryc & entry::LOAD_EFER, 0);
        assert_eq!(init.get(Field::GuestIa32Efer), Some(0x500), "LME | LMA");
        assert_eq!(init.get(Field::GuestCsAccessRights), Some(0xa09b), "L = 1, D = 0");
        assert_eq!(init.get(Field::GuestTrAccessRights), Some(0x8b));
        assert_eq!(init.get(Field::GuestLdtrAccessRights), Some(0x10000));
        assert_eq!(init.get(Field::GuestCr0), Some(0x8001_0033));
        assert_eq!(init.get(Field::GuestCr4), Some(0x2020), "PAE | VMXE");
        assert_eq!(init.get(Field::Cr4ReadShadow), Some(0x20), "VMXE hidden");
        assert_ne!(init.get(Field::Cr4GuestHostMask).unwrap() & 1 << 13, 0, "VMXE owned");
        assert_eq!(init.get(Field::GuestCr3), Some(0x10_0000));
        assert_eq!(init.get(Field::GuestRip), Some(0x10_4000));
        assert_eq!(init.get(Field::VmcsLinkPointer), Some(u64::MAX));
        assert_eq!(init.get(Field::GuestActivityState), Some(0));
        assert_eq!(init.get(Field::ExceptionBitmap), Some(1 << 18 | 1 << 17 | 1 << 1), "#AC, #DB");
        let proc2c = init.get(Field::SecondaryProcBasedControls).unwrap() as u32;
        let have = |bits| caps().procbased2.allows(bits);
        assert_eq!(proc2c & proc2::WBINVD_EXITING != 0, have(proc2::WBINVD_EXITING));
        assert_eq!(
            init.get(Field::NotifyWindow).is_some(),
            have(proc2::INSTRUCTION_TIMEOUT),
            "the notify window exists exactly where the CPU has notify exits"
        );
        for (field, bits) in [
            (Field::TscMultiplier, proc2::USE_TSC_SCALING),
            (Field::XssExitingBitmap, proc2::ENABLE_XSAVES),
            (Field::PleWindow, proc2::PAUSE_LOOP_EXITING),
        ] {
            assert_eq!(init.get(field).is_some(), have(bits), "{field:?} written when it exists");
        }
        let exitc = init.get(Field::ExitControls).unwrap() as u32;
        assert_ne!(exitc & exit::SAVE_EFER, 0, "a guest EFER change survives the exit");
        assert_ne!(exitc & exit::HOST_ADDRESS_SPACE_SIZE, 0);
        let procc = init.get(Field::ProcBasedControls).unwrap() as u32;
        assert_ne!(procc & proc::HLT_EXITING, 0, "extra controls applied");
        assert_ne!(procc & proc::CR8_LOAD_EXITING, 0, "policy-forced bits kept");
        assert_ne!(procc & proc::MOV_DR_EXITING, 0, "debug registers are never the guest's");
        assert_ne!(procc & proc::RDPMC_EXITING, 0, "nor are the counters");
        assert_eq!(init.get(Field::EptPointer), Some(0x20_001e));
        assert_eq!(init.get(Field::Vpid), Some(1));
        assert_eq!(init.get(Field::HostRip), Some(host().rip));
    }

    #[test]
    fn protected32_passes_the_entry_checks() {
        let init = setup(&caps(), GuestMode::Protected32).unwrap();
        check(&caps(), &init).unwrap();
        validator_accepts(&caps(), &init);
        assert_eq!(init.get(Field::EntryControls).unwrap() as u32 & entry::IA32E_MODE_GUEST, 0);
        assert_eq!(init.get(Field::GuestCsAccessRights), Some(0xc09b));
        assert_eq!(init.get(Field::GuestSsAccessRights), Some(0xc093));
        assert_eq!(init.get(Field::GuestCsLimit), Some(0xffff_ffff));
        assert_eq!(init.get(Field::GuestCr0), Some(0x31), "PE | ET | NE, no PG");
        assert_eq!(init.get(Field::GuestIa32Efer), Some(0));
        let proc2c = init.get(Field::SecondaryProcBasedControls).unwrap() as u32;
        assert_ne!(proc2c & proc2::UNRESTRICTED_GUEST, 0);
        assert_eq!(init.get(Field::Cr0GuestHostMask), Some(0x20), "PE and PG are the guest's");
    }

    #[test]
    fn real_mode_passes_the_entry_checks() {
        let init = setup(&caps(), GuestMode::Real).unwrap();
        check(&caps(), &init).unwrap();
        validator_accepts(&caps(), &init);
        assert_eq!(init.get(Field::GuestCsSelector), Some(0));
        assert_eq!(init.get(Field::GuestCsBase), Some(0));
        assert_eq!(init.get(Field::GuestCsAccessRights), Some(0x9b));
        assert_eq!(init.get(Field::GuestDsAccessRights), Some(0x93));
        assert_eq!(init.get(Field::GuestCsLimit), Some(0xffff));
        assert_eq!(init.get(Field::GuestRip), Some(0x1000));
        assert_eq!(init.get(Field::GuestCr0), Some(0x30), "ET | NE (forced), no PE/PG");
        assert_eq!(init.get(Field::Cr0ReadShadow), Some(0x10), "the guest sees reset CR0");
        assert_eq!(init.get(Field::GuestCr4), Some(0x2000));
        assert_eq!(init.get(Field::Cr4ReadShadow), Some(0));

        // An entry above 64 KiB gets the segment holding it: F000:FFF0 for the reset vector.
        let policy = Policy::new(&caps(), true, true);
        let reset = GuestEntry { rip: 0xf_fff0, ..entry_for(GuestMode::Real) };
        let init = initial_vmcs(&caps(), &policy, &host(), &reset, &pages(&caps())).unwrap();
        check(&caps(), &init).unwrap();
        assert_eq!(init.get(Field::GuestCsSelector), Some(0xf000));
        assert_eq!(init.get(Field::GuestCsBase), Some(0xf_0000), "selector << 4");
        assert_eq!(init.get(Field::GuestRip), Some(0xfff0));
    }

    #[test]
    fn lynnfield_runs_long64_only() {
        let caps = lynnfield();
        let init = setup(&caps, GuestMode::Long64).unwrap();
        check(&caps, &init).unwrap();
        validator_accepts(&caps, &init);
        let proc2c = init.get(Field::SecondaryProcBasedControls).unwrap() as u32;
        assert_eq!(proc2c & proc2::UNRESTRICTED_GUEST, 0);
        assert_eq!(init.get(Field::Cr0GuestHostMask), Some(0x8000_0021), "PE, NE, PG owned");

        let real = setup(&caps, GuestMode::Real).unwrap_err();
        assert_eq!(real, StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::REAL });
        assert_eq!(
            real.to_string(),
            "real-mode guest needs unrestricted guest, which this CPU lacks"
        );
        let p32 = setup(&caps, GuestMode::Protected32).unwrap_err();
        assert_eq!(p32, StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::PROTECTED32 });
        assert!(p32.to_string().starts_with("unpaged protected-mode guest needs unrestricted"));
    }

    #[test]
    fn penryn_runs_nothing_and_says_why() {
        let caps = penryn();
        assert_eq!(setup(&caps, GuestMode::Long64), Err(StartError::NeedsEpt));
        assert!(StartError::NeedsEpt.to_string().contains("EPT"));
        assert_eq!(
            setup(&caps, GuestMode::Real),
            Err(StartError::NeedsUnrestrictedGuest { mode: vcpu_mode::REAL })
        );
    }

    #[test]
    fn a_vcpu_without_guest_space_is_refused() {
        let caps = caps();
        let no_space = Policy::new(&caps, false, true);
        let long = entry_for(GuestMode::Long64);
        assert_eq!(
            initial_vmcs(&caps, &no_space, &host(), &long, &pages(&caps)),
            Err(StartError::NoGuestSpace)
        );
        let policy = Policy::new(&caps, true, true);
        let mut p = pages(&caps);
        p.eptp = None;
        assert_eq!(initial_vmcs(&caps, &policy, &host(), &long, &p), Err(StartError::NoGuestSpace));
    }

    #[test]
    fn controls_outside_the_policy_are_refused() {
        let caps = caps();
        let policy = Policy::new(&caps, true, true);
        let mut e = entry_for(GuestMode::Long64);
        e.extra_controls.proc2 = proc2::VIRTUALIZE_APIC_ACCESSES;
        assert_eq!(
            initial_vmcs(&caps, &policy, &host(), &e, &pages(&caps)),
            Err(StartError::ControlNotAllowed {
                field: Field::SecondaryProcBasedControls,
                bits: proc2::VIRTUALIZE_APIC_ACCESSES
            })
        );
        // Allowed by policy but not by this CPU.
        let no_hlt = VmxCaps::from_all(&VmxMsrs {
            procbased: SKYLAKE.procbased & !(u64::from(proc::HLT_EXITING) << 32),
            ..SKYLAKE
        });
        let policy = Policy::new(&no_hlt, true, true);
        let e = entry_for(GuestMode::Long64);
        assert_eq!(
            initial_vmcs(&no_hlt, &policy, &host(), &e, &pages(&no_hlt)),
            Err(StartError::ControlNotAllowed {
                field: Field::ProcBasedControls,
                bits: proc::HLT_EXITING
            })
        );
    }

    #[test]
    fn vpid_must_match_the_policy() {
        let caps = caps();
        let policy = Policy::new(&caps, true, true);
        let e = entry_for(GuestMode::Long64);
        let mut p = pages(&caps);
        p.vpid = 0;
        assert_eq!(initial_vmcs(&caps, &policy, &host(), &e, &p), Err(StartError::VpidMismatch));
        let no_vpid = Policy::new(&caps, true, false);
        let init = initial_vmcs(&caps, &no_vpid, &host(), &e, &p).unwrap();
        assert_eq!(init.get(Field::Vpid), None);
        check(&caps, &init).unwrap();
        p.vpid = 3;
        assert_eq!(initial_vmcs(&caps, &no_vpid, &host(), &e, &p), Err(StartError::VpidMismatch));
    }

    #[test]
    fn bad_pages_and_areas_are_named() {
        let caps = caps();
        let policy = Policy::new(&caps, true, true);
        let e = entry_for(GuestMode::Long64);
        let run = |p: &VcpuPages| initial_vmcs(&caps, &policy, &host(), &e, p);
        let good = pages(&caps);
        assert_eq!(
            run(&VcpuPages { io_bitmap_b: 0x30_1800, ..good }),
            Err(StartError::BadAddress(Field::IoBitmapB))
        );
        assert_eq!(
            run(&VcpuPages { msr_bitmap: 1 << 36, ..good }),
            Err(StartError::BadAddress(Field::MsrBitmap))
        );
        let areas = MsrAreas { exit_store: 0x40_0008, exit_store_count: 2, ..MsrAreas::default() };
        assert_eq!(
            run(&VcpuPages { msr_areas: areas, ..good }),
            Err(StartError::BadAddress(Field::ExitMsrStoreAddress))
        );
        let too_many =
            MsrAreas { entry_load: 0x40_0000, entry_load_count: 513, ..MsrAreas::default() };
        assert_eq!(
            run(&VcpuPages { msr_areas: too_many, ..good }),
            Err(StartError::BadAddress(Field::EntryMsrLoadAddress))
        );
        let areas = MsrAreas {
            exit_store: 0x40_0000,
            exit_store_count: 2,
            exit_load: 0x40_1000,
            exit_load_count: 1,
            entry_load: 0x40_0000,
            entry_load_count: 2,
        };
        let init = run(&VcpuPages { msr_areas: areas, ..good }).unwrap();
        assert_eq!(init.get(Field::ExitMsrStoreCount), Some(2));
        assert_eq!(init.get(Field::EntryMsrLoadAddress), Some(0x40_0000));
    }

    #[test]
    fn bad_host_state_is_named() {
        let caps = caps();
        let policy = Policy::new(&caps, true, true);
        let e = entry_for(GuestMode::Long64);
        let p = pages(&caps);
        let run = |h: HostState| initial_vmcs(&caps, &policy, &h, &e, &p);
        let bad = |f| Err(StartError::BadHostState(f));
        assert_eq!(run(HostState { cr0: 0x8000_0011, ..host() }), bad(Field::HostCr0));
        assert_eq!(run(HostState { cr4: 0x20, ..host() }), bad(Field::HostCr4));
        assert_eq!(run(HostState { cr4: 0x2000, ..host() }), bad(Field::HostCr4));
        assert_eq!(run(HostState { ss: 0x13, ..host() }), bad(Field::HostSsSelector));
        assert_eq!(run(HostState { tr: 0, ..host() }), bad(Field::HostTrSelector));
        assert_eq!(run(HostState { rip: 1 << 47, ..host() }), bad(Field::HostRip));
        assert_eq!(run(HostState { efer: 0x100, ..host() }), bad(Field::HostIa32Efer));
        assert_eq!(run(HostState { pat: 0x2, ..host() }), bad(Field::HostIa32Pat));
    }

    #[test]
    fn bad_entry_values_are_named() {
        let caps = caps();
        let policy = Policy::new(&caps, true, true);
        let run = |e: GuestEntry| initial_vmcs(&caps, &policy, &host(), &e, &pages(&caps));
        let bad = |f| Err(StartError::BadEntry(f));
        let real = entry_for(GuestMode::Real);
        assert_eq!(run(GuestEntry { rip: 0x10_0000, ..real }), bad(Field::GuestRip));
        assert_eq!(run(GuestEntry { rsp: 0x1_0000, ..real }), bad(Field::GuestRsp));
        let p32 = entry_for(GuestMode::Protected32);
        assert_eq!(run(GuestEntry { rip: 1 << 32, ..p32 }), bad(Field::GuestRip));
        let long = entry_for(GuestMode::Long64);
        assert_eq!(run(GuestEntry { rip: 1 << 47, ..long }), bad(Field::GuestRip));
        assert_eq!(run(GuestEntry { rsp: 1 << 63, ..long }), bad(Field::GuestRsp));
        assert_eq!(run(GuestEntry { cr3: 1 << 40, ..long }), bad(Field::GuestCr3));
        let high = GuestEntry { rip: 0xffff_8000_0000_1000, rsp: 0xffff_8000_0000_8000, ..long };
        check(&caps, &run(high).unwrap()).unwrap();
    }

    #[test]
    fn fixed_bits_the_mode_cannot_meet_are_refused() {
        // A CPU whose CR0 FIXED1 forbids WP cannot give a 64-bit guest its usual CR0.
        let no_wp = VmxCaps::from_all(&VmxMsrs { cr0_fixed1: 0xfffe_ffff, ..SKYLAKE });
        let policy = Policy::new(&no_wp, true, true);
        let host = HostState { cr0: 0x8004_0033, ..host() };
        let e = entry_for(GuestMode::Long64);
        assert_eq!(
            initial_vmcs(&no_wp, &policy, &host, &e, &pages(&no_wp)),
            Err(StartError::FixedBits(Field::GuestCr0))
        );
        let real = entry_for(GuestMode::Real);
        let init = initial_vmcs(&no_wp, &policy, &host, &real, &pages(&no_wp)).unwrap();
        check(&no_wp, &init).unwrap();
    }

    #[test]
    fn every_mode_fits_the_write_table() {
        for mode in [GuestMode::Long64, GuestMode::Protected32, GuestMode::Real] {
            let init = setup(&caps(), mode).unwrap();
            assert!(init.writes().len() < MAX_INITIAL_WRITES, "{mode:?}");
        }
    }

    #[test]
    fn the_checker_catches_broken_state() {
        // The model must fail on what it is there to catch, or the passes above mean
        // nothing.
        let caps = caps();
        let init = setup(&caps, GuestMode::Long64).unwrap();
        let broken = [
            (Field::GuestCsAccessRights, 0xe09b, "64-bit CS with D/B = 1"),
            (Field::GuestTrAccessRights, 0x83, "TR type"),
            (Field::VmcsLinkPointer, 0, "VMCS link pointer must be all ones"),
            (Field::GuestCr4, 0x2000, "IA-32e mode guest needs CR0.PG and CR4.PAE"),
            (Field::GuestCr0, 0x8001_0013, "guest CR0 fixed bits"),
            (Field::GuestIa32Efer, 0x100, "guest EFER.LMA/LME vs IA-32e mode guest and CR0.PG"),
            (Field::GuestRip, 1 << 47, "guest RIP"),
            (Field::GuestSsAccessRights, 0xc091, "SS type"),
        ];
        for (field, value, why) in broken {
            let mut f: HashMap<Field, u64> = init.writes().iter().copied().collect();
            f.insert(field, value);
            assert_eq!(check_vm_entry(&Vmcs { f, caps: &caps }), Err(why.to_string()), "{field}");
        }
        let real = setup(&caps, GuestMode::Real).unwrap();
        let mut f: HashMap<Field, u64> = real.writes().iter().copied().collect();
        f.insert(
            Field::SecondaryProcBasedControls,
            u64::from(proc2::ENABLE_EPT | proc2::ENABLE_VPID),
        );
        assert_eq!(
            check_vm_entry(&Vmcs { f, caps: &caps }),
            Err("guest CR0 fixed bits".to_string()),
            "real mode without unrestricted guest"
        );
    }
}
