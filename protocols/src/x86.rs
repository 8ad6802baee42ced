//! The control-register, EFER and RFLAGS bits that kernel and VMM both name, taken from
//! the `x86_64` crate's flag types so that each architectural fact is defined once.

use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;
use x86_64::registers::rflags::RFlags;

/// CR0.PE: protected mode.
pub const CR0_PE: u64 = Cr0Flags::PROTECTED_MODE_ENABLE.bits();
/// CR0.MP: monitor coprocessor.
pub const CR0_MP: u64 = Cr0Flags::MONITOR_COPROCESSOR.bits();
/// CR0.EM: x87 emulation.
pub const CR0_EM: u64 = Cr0Flags::EMULATE_COPROCESSOR.bits();
/// CR0.TS: task switched.
pub const CR0_TS: u64 = Cr0Flags::TASK_SWITCHED.bits();
/// CR0.ET: extension type.
pub const CR0_ET: u64 = Cr0Flags::EXTENSION_TYPE.bits();
/// CR0.NE: native x87 error reporting.
pub const CR0_NE: u64 = Cr0Flags::NUMERIC_ERROR.bits();
/// CR0.WP: write protect in supervisor mode.
pub const CR0_WP: u64 = Cr0Flags::WRITE_PROTECT.bits();
/// CR0.AM: alignment mask.
pub const CR0_AM: u64 = Cr0Flags::ALIGNMENT_MASK.bits();
/// CR0.NW: not write-through.
pub const CR0_NW: u64 = Cr0Flags::NOT_WRITE_THROUGH.bits();
/// CR0.CD: cache disable.
pub const CR0_CD: u64 = Cr0Flags::CACHE_DISABLE.bits();
/// CR0.PG: paging.
pub const CR0_PG: u64 = Cr0Flags::PAGING.bits();

/// CR4.PSE: 4 MiB pages in 32-bit paging.
pub const CR4_PSE: u64 = Cr4Flags::PAGE_SIZE_EXTENSION.bits();
/// CR4.PAE: physical-address extension.
pub const CR4_PAE: u64 = Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits();
/// CR4.PGE: global pages.
pub const CR4_PGE: u64 = Cr4Flags::PAGE_GLOBAL.bits();
/// CR4.VMXE: VMX enable.
pub const CR4_VMXE: u64 = Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS.bits();
/// CR4.PCIDE: process-context identifiers.
pub const CR4_PCIDE: u64 = Cr4Flags::PCID.bits();
/// CR4.SMEP.
pub const CR4_SMEP: u64 = Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION.bits();
/// CR4.SMAP.
pub const CR4_SMAP: u64 = Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION.bits();
/// CR4.PKE: protection keys.
pub const CR4_PKE: u64 = Cr4Flags::PROTECTION_KEY_USER.bits();
/// CR4.LA57: 5-level paging.
pub const CR4_LA57: u64 = Cr4Flags::L5_PAGING.bits();

/// EFER.SCE: SYSCALL enable.
pub const EFER_SCE: u64 = EferFlags::SYSTEM_CALL_EXTENSIONS.bits();
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = EferFlags::LONG_MODE_ENABLE.bits();
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = EferFlags::LONG_MODE_ACTIVE.bits();
/// EFER.NXE: no-execute enable.
pub const EFER_NXE: u64 = EferFlags::NO_EXECUTE_ENABLE.bits();

/// RFLAGS bit 1, which always reads as one.
pub const RFLAGS_FIXED1: u64 = 1 << 1;
/// RFLAGS.CF: unsigned carry or borrow out of the top bit.
pub const RFLAGS_CF: u64 = RFlags::CARRY_FLAG.bits();
/// RFLAGS.PF: the low byte of the result has an even number of set bits.
pub const RFLAGS_PF: u64 = RFlags::PARITY_FLAG.bits();
/// RFLAGS.AF: carry or borrow out of bit 3.
pub const RFLAGS_AF: u64 = RFlags::AUXILIARY_CARRY_FLAG.bits();
/// RFLAGS.ZF: the result is zero.
pub const RFLAGS_ZF: u64 = RFlags::ZERO_FLAG.bits();
/// RFLAGS.SF: the result's top bit.
pub const RFLAGS_SF: u64 = RFlags::SIGN_FLAG.bits();
/// RFLAGS.OF: signed overflow.
pub const RFLAGS_OF: u64 = RFlags::OVERFLOW_FLAG.bits();
/// RFLAGS.TF: single step.
pub const RFLAGS_TF: u64 = RFlags::TRAP_FLAG.bits();
/// RFLAGS.IF: interrupts enabled.
pub const RFLAGS_IF: u64 = RFlags::INTERRUPT_FLAG.bits();
/// RFLAGS.DF: string direction.
pub const RFLAGS_DF: u64 = RFlags::DIRECTION_FLAG.bits();
/// RFLAGS.VM: virtual-8086 mode.
pub const RFLAGS_VM: u64 = RFlags::VIRTUAL_8086_MODE.bits();
/// RFLAGS.AC: alignment check.
pub const RFLAGS_AC: u64 = RFlags::ALIGNMENT_CHECK.bits();

/// The page-fault exception's vector (#PF), whose address the CPU reports in CR2.
pub const PAGE_FAULT_VECTOR: u8 = 14;
/// #PF error code bit 0: the page was present (a protection fault).
pub const PF_PRESENT: u32 = 1 << 0;
/// #PF error code bit 1: the access was a write.
pub const PF_WRITE: u32 = 1 << 1;
/// #PF error code bit 2: the access was made in user mode (CPL 3).
pub const PF_USER: u32 = 1 << 2;

/// The longest an x86 instruction may be, in bytes (SDM Vol. 2, 2.3.11).
pub const MAX_INSTRUCTION_LEN: u16 = 15;

#[cfg(test)]
mod tests {
    /// The bit positions of the SDM, as a check that the names are the ones meant.
    #[test]
    fn bits_are_the_sdm_ones() {
        use super::*;
        assert_eq!(
            (CR0_PE, CR0_NE, CR0_WP, CR0_AM, CR0_PG),
            (1, 1 << 5, 1 << 16, 1 << 18, 1 << 31)
        );
        assert_eq!((CR4_PAE, CR4_VMXE, CR4_PCIDE, CR4_LA57), (1 << 5, 1 << 13, 1 << 17, 1 << 12));
        assert_eq!((EFER_SCE, EFER_LME, EFER_LMA, EFER_NXE), (1, 1 << 8, 1 << 10, 1 << 11));
        assert_eq!(
            (RFLAGS_TF, RFLAGS_IF, RFLAGS_DF, RFLAGS_VM),
            (1 << 8, 1 << 9, 1 << 10, 1 << 17)
        );
        assert_eq!(RFLAGS_AC, 1 << 18);
        assert_eq!(
            (RFLAGS_CF, RFLAGS_PF, RFLAGS_AF, RFLAGS_ZF, RFLAGS_SF, RFLAGS_OF),
            (1, 1 << 2, 1 << 4, 1 << 6, 1 << 7, 1 << 11)
        );
    }
}
