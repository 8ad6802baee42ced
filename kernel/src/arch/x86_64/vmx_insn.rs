//! The raw VMX instructions (Intel SDM Vol. 3, chapter 31), typed.
//!
//! Each instruction's status flags are captured inside the same `asm!` statement as the
//! instruction (`setc`/`setz`), so no compiler-generated code can run between them and
//! clobber CF/ZF. VMfailInvalid and VMfailValid become a [`VmxError`]; on VMfailValid the
//! VM-instruction error field is read at once and decoded into an [`InstructionError`]
//! (both types are the ABI's, `protocols::vmx_failure`, so a VMM can be told of a failure).
//!
//! VMX root operation is a capability: [`enable`] hands out the only [`VmxRoot`] token,
//! and [`disable`] takes it back. Instructions that merely need VMX operation (VMREAD,
//! VMPTRST, INVEPT, INVVPID) take `&VmxRoot` and are safe; those that make the CPU own a
//! caller's memory (VMXON, VMCLEAR, VMPTRLD) or can change the state the kernel resumes
//! in after a VM exit (VMWRITE) are `unsafe` and say what the caller vouches for.

use core::arch::asm;
use core::fmt;

use super::cpu::{cpuid, rdmsr, read_cr0, read_cr4, write_cr0, write_cr4, wrmsr};
use kernel::vmx::caps::{
    self, Absent, FeatureControl, MSR_FEATURE_CONTROL, MSR_VMX_BASIC, MSR_VMX_CR0_FIXED0,
    MSR_VMX_CR0_FIXED1, MSR_VMX_CR4_FIXED0, MSR_VMX_CR4_FIXED1,
};
use kernel::vmx::ept::{EptVpidCaps, Eptp, InveptType, InvvpidType};
use protocols::vmcs::Field;
pub use protocols::vmx_failure::{InstructionError, VmxError};
use protocols::x86::CR4_VMXE;

/// IA32_VMX_BASIC bit 48: VMXON, VMCS and related addresses are limited to 32 bits.
const BASIC_32BIT_ADDRESSES: u64 = 1 << 48;
const RFLAGS_CF: u64 = 1 << 0;
const RFLAGS_ZF: u64 = 1 << 6;

/// Why [`enable`] could not enter VMX operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableError {
    /// VT-x is absent or disabled by firmware.
    Absent(Absent),
    /// IA32_VMX_CR0_FIXED0/1 cannot both be met: these bits are required and forbidden.
    Cr0Fixed(u64),
    /// IA32_VMX_CR4_FIXED0/1 cannot both be met (or CR4.VMXE is not allowed).
    Cr4Fixed(u64),
    /// The VMXON region is not 4 KiB aligned, or above 4 GiB on a CPU limited to 32-bit
    /// VMX addresses.
    BadRegion(u64),
    /// VMXON itself failed (CR4.VMXE has been cleared again).
    Vmxon(VmxError),
}

impl fmt::Display for EnableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absent(why) => write!(f, "{why}"),
            Self::Cr0Fixed(bits) => write!(f, "CR0 bits {bits:#x} are both required and forbidden"),
            Self::Cr4Fixed(bits) => write!(f, "CR4 bits {bits:#x} cannot be set for VMX"),
            Self::BadRegion(phys) => write!(f, "VMXON region {phys:#x} is not usable"),
            Self::Vmxon(e) => write!(f, "VMXON failed: {e}"),
        }
    }
}

/// Proof that this CPU is in VMX root operation. [`enable`] makes the only one; it is
/// neither `Clone` nor `Copy`, and [`disable`] consumes it.
#[derive(Debug)]
pub struct VmxRoot {
    #[allow(
        dead_code,
        reason = "read through `revision`, for VMCS regions not stamped by the kernel's VCpu code"
    )]
    revision: u32,
    #[allow(dead_code, reason = "read through `vmxon_region` once a shutdown path frees it")]
    region: u64,
}

#[allow(dead_code, reason = "API for VCpu set-up and shutdown; not every caller exists yet")]
impl VmxRoot {
    /// The VMCS revision identifier every VMCS region must carry.
    pub const fn revision(&self) -> u32 {
        self.revision
    }

    /// The VMXON region's physical address (to be freed after [`disable`]).
    pub const fn vmxon_region(&self) -> u64 {
        self.region
    }

    /// Zero a VMCS region and stamp it with the revision identifier (bit 31 clear: an
    /// ordinary, not a shadow, VMCS), ready for VMCLEAR.
    pub fn stamp_vmcs(&self, region: &mut [u8; 4096]) {
        stamp(region, self.revision);
    }
}

fn stamp(region: &mut [u8; 4096], revision: u32) {
    region.fill(0);
    let id = (revision & 0x7fff_ffff).to_le_bytes();
    region[..4].copy_from_slice(&id);
}

/// Turn the flags a VMX instruction left into its outcome.
fn outcome(cf: u8, zf: u8) -> Result<(), VmxError> {
    if cf != 0 {
        Err(VmxError::FailInvalid)
    } else if zf != 0 {
        Err(VmxError::FailValid(last_error()))
    } else {
        Ok(())
    }
}

/// The outcome of a VMLAUNCH/VMRESUME that fell through, from the RFLAGS the entry stub
/// returned.
pub fn entry_failure(_root: &VmxRoot, rflags: u64) -> VmxError {
    if rflags & RFLAGS_CF != 0 {
        VmxError::FailInvalid
    } else if rflags & RFLAGS_ZF != 0 {
        VmxError::FailValid(last_error())
    } else {
        VmxError::FailValid(InstructionError::Unknown(0))
    }
}

/// VMREAD without the token, for the error paths that only run after a VMX instruction
/// reported VMfailValid (so VMX operation and a current VMCS are certain).
fn vmread_raw(encoding: u32) -> (u64, u8, u8) {
    let (value, cf, zf): (u64, u8, u8);
    // SAFETY: only called in VMX root operation with a current VMCS (see above); VMREAD
    // writes nothing but its register operand and the flags captured here.
    unsafe {
        asm!(
            "vmread {value}, {enc}",
            "setc {cf}",
            "setz {zf}",
            enc = in(reg) u64::from(encoding),
            value = out(reg) value,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
    }
    (value, cf, zf)
}

fn last_error() -> InstructionError {
    match vmread_raw(Field::VmInstructionError.encoding()) {
        (n, 0, 0) => InstructionError::from_number(n as u32),
        _ => InstructionError::Unknown(0),
    }
}

/// Enter VMX root operation: check VT-x and IA32_FEATURE_CONTROL (locking it if firmware
/// left it unlocked), apply IA32_VMX_CR0/CR4_FIXED0/1 to CR0 and CR4, set CR4.VMXE, stamp
/// the VMXON region with the revision from IA32_VMX_BASIC, and execute VMXON.
///
/// # Safety
/// `region` must be the kernel's mapping of the frame at physical address `region_phys`,
/// dedicated to VMX until [`disable`] returns (the CPU may use it at any time), and no
/// other code may change CR0/CR4 concurrently.
pub unsafe fn enable(region_phys: u64, region: &mut [u8; 4096]) -> Result<VmxRoot, EnableError> {
    let (_, _, ecx, _) = cpuid(1, 0);
    if ecx & (1 << 5) == 0 {
        return Err(EnableError::Absent(Absent::NoCpuid));
    }
    // SAFETY: IA32_FEATURE_CONTROL and the VMX capability MSRs exist whenever CPUID
    // reports VMX; the lock write is allowed while the MSR is unlocked.
    let (basic, cr0_fixed, cr4_fixed) = unsafe {
        let fc = rdmsr(MSR_FEATURE_CONTROL);
        if caps::feature_control(fc).map_err(EnableError::Absent)? == FeatureControl::NeedsLock {
            wrmsr(MSR_FEATURE_CONTROL, caps::feature_control_locked(fc));
        }
        (
            rdmsr(MSR_VMX_BASIC),
            (rdmsr(MSR_VMX_CR0_FIXED0), rdmsr(MSR_VMX_CR0_FIXED1)),
            (rdmsr(MSR_VMX_CR4_FIXED0), rdmsr(MSR_VMX_CR4_FIXED1)),
        )
    };
    let too_high = basic & BASIC_32BIT_ADDRESSES != 0 && region_phys >> 32 != 0;
    if !region_phys.is_multiple_of(4096) || too_high {
        return Err(EnableError::BadRegion(region_phys));
    }
    let conflict = cr0_fixed.0 & !cr0_fixed.1;
    if conflict != 0 {
        return Err(EnableError::Cr0Fixed(conflict));
    }
    let cr4_required = cr4_fixed.0 | CR4_VMXE;
    let conflict = cr4_required & !cr4_fixed.1;
    if conflict != 0 {
        return Err(EnableError::Cr4Fixed(conflict));
    }
    let (old_cr0, old_cr4) = (read_cr0(), read_cr4());
    let cr0 = (old_cr0 | cr0_fixed.0) & cr0_fixed.1;
    let cr4 = (old_cr4 | cr4_required) & cr4_fixed.1;
    // SAFETY: FIXED0 bits (PE, NE, PG on every VMX CPU) are already set in a 64-bit kernel
    // with native x87 errors; FIXED1 only clears bits VMX cannot run with. VMXE only
    // enables the VMX instructions.
    unsafe {
        if cr0 != old_cr0 {
            write_cr0(cr0);
        }
        write_cr4(cr4);
    }
    let revision = (basic & 0x7fff_ffff) as u32;
    stamp(region, revision);
    // SAFETY: the caller dedicates the stamped region at `region_phys` to VMX.
    if let Err(e) = unsafe { vmxon(region_phys) } {
        // SAFETY: VMXON failed, so the CPU is not in VMX operation and VMXE may be cleared.
        unsafe { write_cr4(old_cr4) }
        return Err(EnableError::Vmxon(e));
    }
    Ok(VmxRoot { revision, region: region_phys })
}

/// Leave VMX operation (VMXOFF) and clear CR4.VMXE. On failure the CPU is still in VMX
/// operation and the token comes back.
#[allow(dead_code, reason = "VMXOFF at shutdown (DESIGN.md, VMX life cycle); no shutdown path yet")]
pub fn disable(root: VmxRoot) -> Result<(), (VmxRoot, VmxError)> {
    let (cf, zf): (u8, u8);
    // SAFETY: the token proves VMX root operation; VMXOFF touches no Rust memory.
    unsafe {
        asm!("vmxoff", "setc {cf}", "setz {zf}", cf = out(reg_byte) cf, zf = out(reg_byte) zf,
             options(nostack));
    }
    if let Err(e) = outcome(cf, zf) {
        return Err((root, e));
    }
    // SAFETY: outside VMX operation CR4.VMXE may be cleared; nothing else changes.
    unsafe { write_cr4(read_cr4() & !CR4_VMXE) }
    Ok(())
}

/// Run a VMX instruction whose operand is a 64-bit physical address in memory (VMXON,
/// VMCLEAR, VMPTRLD) and turn the flags it leaves into the outcome. Expands to an unsafe
/// operation: the caller's `unsafe` block states why the address may be used.
macro_rules! pointer_instruction {
    ($mnemonic:literal, $phys:expr) => {{
        let phys: u64 = $phys;
        let (cf, zf): (u8, u8);
        asm!(
            concat!($mnemonic, " qword ptr [{ptr}]"),
            "setc {cf}",
            "setz {zf}",
            ptr = in(reg) &raw const phys,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
        outcome(cf, zf)
    }};
}

/// VMXON with the region at `phys`.
///
/// # Safety
/// CR4.VMXE is set, and `phys` is a stamped region dedicated to VMX.
unsafe fn vmxon(phys: u64) -> Result<(), VmxError> {
    // SAFETY: the caller vouches for CR4.VMXE and the region; the operand is a local u64.
    unsafe { pointer_instruction!("vmxon", phys) }
}

/// VMCLEAR: write the VMCS at `phys` back to memory, make it inactive and its launch state
/// clear (so the next entry must be VMLAUNCH).
///
/// # Safety
/// `phys` is a VMCS region (stamped with [`VmxRoot::stamp_vmcs`]) that belongs to the
/// caller's VCpu and is used for nothing else: the CPU writes it.
pub unsafe fn vmclear(_root: &VmxRoot, phys: u64) -> Result<(), VmxError> {
    // SAFETY: the token proves VMX operation; the caller vouches for the region.
    unsafe { pointer_instruction!("vmclear", phys) }
}

/// VMPTRLD: make the VMCS at `phys` current and active.
///
/// # Safety
/// As for [`vmclear`]: `phys` is the caller's VCpu's VMCS region.
pub unsafe fn vmptrld(_root: &VmxRoot, phys: u64) -> Result<(), VmxError> {
    // SAFETY: the token proves VMX operation; the caller vouches for the region.
    unsafe { pointer_instruction!("vmptrld", phys) }
}

/// VMPTRST: the current VMCS's physical address (all ones if there is none), for
/// diagnostics.
#[allow(dead_code, reason = "VMPTRST for diagnostics (issue 4); not called yet")]
pub fn vmptrst(_root: &VmxRoot) -> u64 {
    let mut current: u64 = 0;
    // SAFETY: the token proves VMX operation; VMPTRST stores 8 bytes into `current`.
    unsafe {
        asm!("vmptrst qword ptr [{ptr}]", ptr = in(reg) &raw mut current, options(nostack));
    }
    current
}

/// VMREAD a field of the current VMCS, or 0 if the VMREAD fails: the kernel reads only
/// fields every VMCS has, and takes 0 for a failure; one conditional move instead of
/// testing the flags.
pub fn vmread_or_zero(_root: &VmxRoot, field: Field) -> u64 {
    let value: u64;
    // SAFETY: the token proves VMX operation; VMREAD writes nothing but its register
    // operand, which the CMOVBE replaces with 0 when CF or ZF says the VMREAD failed.
    unsafe {
        asm!(
            "vmread {value}, {enc}",
            "cmovbe {value}, {zero}",
            enc = in(reg) u64::from(field.encoding()),
            zero = in(reg) 0u64,
            value = out(reg) value,
            options(nostack),
        );
    }
    value
}

/// VMWRITE a field of the current VMCS.
///
/// # Safety
/// The value must keep the kernel's invariants: host-state fields describe the kernel's
/// real state, and kernel-owned pointers (EPT, bitmaps, MSR areas, link pointer) name
/// memory the VCpu owns. Values from `kernel::vmx::vmcs_setup::initial_vmcs` and from a
/// `ValidatedBatch` meet this.
pub unsafe fn vmwrite(_root: &VmxRoot, field: Field, value: u64) -> Result<(), VmxError> {
    let (cf, zf): (u8, u8);
    // SAFETY: the token proves VMX operation; the caller vouches for the value.
    unsafe {
        asm!(
            "vmwrite {enc}, {value}",
            "setc {cf}",
            "setz {zf}",
            enc = in(reg) u64::from(field.encoding()),
            value = in(reg) value,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
    }
    outcome(cf, zf)
}

/// The 128-bit descriptor of INVEPT and INVVPID.
#[repr(C, align(16))]
struct InvDescriptor([u64; 2]);

/// INVEPT: drop cached translations derived from `eptp` (single context) or from every
/// EPT (all context). Refused without executing if the CPU lacks the type.
pub fn invept(
    _root: &VmxRoot,
    caps: EptVpidCaps,
    kind: InveptType,
    eptp: Eptp,
) -> Result<(), VmxError> {
    if !caps.invept(kind) {
        return Err(VmxError::Unsupported);
    }
    let desc = InvDescriptor([eptp.raw(), 0]);
    let (cf, zf): (u8, u8);
    // SAFETY: the token proves VMX operation and the type is supported; INVEPT only reads
    // the descriptor and invalidates TLB entries.
    unsafe {
        asm!(
            "invept {kind}, xmmword ptr [{desc}]",
            "setc {cf}",
            "setz {zf}",
            kind = in(reg) kind as u64,
            desc = in(reg) desc.0.as_ptr(),
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack, readonly),
        );
    }
    outcome(cf, zf)
}

/// INVVPID: drop cached linear translations tagged with `vpid` (for one `address`, or all
/// of them), or of every VPID. Refused without executing if the CPU lacks the type.
#[allow(dead_code, reason = "for VCpus with VPIDs; the kernel assigns none yet")]
pub fn invvpid(
    _root: &VmxRoot,
    caps: EptVpidCaps,
    kind: InvvpidType,
    vpid: u16,
    address: u64,
) -> Result<(), VmxError> {
    if !caps.invvpid(kind) {
        return Err(VmxError::Unsupported);
    }
    let desc = InvDescriptor([u64::from(vpid), address]);
    let (cf, zf): (u8, u8);
    // SAFETY: the token proves VMX operation and the type is supported; INVVPID only reads
    // the descriptor and invalidates TLB entries.
    unsafe {
        asm!(
            "invvpid {kind}, xmmword ptr [{desc}]",
            "setc {cf}",
            "setz {zf}",
            kind = in(reg) kind as u64,
            desc = in(reg) desc.0.as_ptr(),
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack, readonly),
        );
    }
    outcome(cf, zf)
}
