//! Single-instruction wrappers: port I/O, MSRs, control registers, CPUID.
//!
//! Each is `unsafe` only where the instruction can break the kernel's invariants; the
//! callers in `arch` document why their use is sound.

use core::arch::asm;
use protocols::io::PortWidth;

/// `cpuid` leaf/subleaf → (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Write a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device the kernel owns, and the write must not break it.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Read a byte from an I/O port.
///
/// # Safety
/// As for [`outb`]: reads can have device side effects.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the caller vouches for the port.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Read an I/O port of any width.
///
/// # Safety
/// As for [`inb`].
pub unsafe fn port_in(port: u16, width: PortWidth) -> u32 {
    // SAFETY: the caller vouches for the port; each form only reads it.
    unsafe {
        match width {
            PortWidth::Byte => u32::from(inb(port)),
            PortWidth::Word => {
                let v: u16;
                asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags));
                u32::from(v)
            }
            PortWidth::Dword => {
                let v: u32;
                asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags));
                v
            }
        }
    }
}

/// Write an I/O port of any width (the value is truncated to the width).
///
/// # Safety
/// As for [`outb`].
pub unsafe fn port_out(port: u16, width: PortWidth, value: u32) {
    // SAFETY: the caller vouches for the port and the value.
    unsafe {
        match width {
            PortWidth::Byte => outb(port, value as u8),
            PortWidth::Word => {
                asm!("out dx, ax", in("dx") port, in("ax") value as u16, options(nomem, nostack, preserves_flags))
            }
            PortWidth::Dword => {
                asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
            }
        }
    }
}

/// Read an MSR.
///
/// # Safety
/// The MSR must exist (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller vouches that the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Write an MSR.
///
/// # Safety
/// The MSR must exist and the value must keep the kernel's invariants.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for MSR and value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

macro_rules! control_register {
    ($read:ident, $write:ident, $reg:literal) => {
        /// Read the control register.
        pub fn $read() -> u64 {
            let v: u64;
            // SAFETY: reading a control register has no side effects in ring 0.
            unsafe { asm!(concat!("mov {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) }
            v
        }

        /// Write the control register.
        ///
        /// # Safety
        /// The value must keep paging, protection and the kernel's mappings intact.
        pub unsafe fn $write(v: u64) {
            // SAFETY: the caller vouches for the value.
            unsafe { asm!(concat!("mov ", $reg, ", {}"), in(reg) v, options(nostack, preserves_flags)) }
        }
    };
}

control_register!(read_cr0, write_cr0, "cr0");
control_register!(read_cr3, write_cr3, "cr3");
control_register!(read_cr4, write_cr4, "cr4");

/// The faulting address of the last page fault.
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Set CR2 (the guest's, before VM entry: VMX does not switch it).
///
/// # Safety
/// Nothing may rely on CR2 naming the kernel's last page fault afterwards.
pub unsafe fn write_cr2(v: u64) {
    // SAFETY: the caller vouches that nobody reads the old value.
    unsafe { asm!("mov cr2, {}", in(reg) v, options(nomem, nostack, preserves_flags)) }
}

/// Sleep until an interrupt has been taken, then continue with interrupts disabled
/// again. `sti` takes effect after `hlt`, so an interrupt pending at `sti` wakes the
/// `hlt` instead of being taken before it and sleeping through.
pub fn wait_for_interrupt() {
    // SAFETY: the interrupt handlers run on the current (kernel) stack and only note
    // what arrived; the kernel's state is not touched until this returns.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

/// Stop until the next interrupt, with interrupts disabled: halts for good unless an
/// NMI arrives.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli/hlt only stop this CPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// CR0 bits.
pub mod cr0 {
    /// Monitor coprocessor: WAIT honours TS.
    pub const MP: u64 = 1 << 1;
    /// x87 emulation (must be clear for SSE).
    pub const EM: u64 = 1 << 2;
    /// Native x87 error reporting.
    pub const NE: u64 = 1 << 5;
}

/// CR4 bits.
pub mod cr4 {
    /// Global pages.
    pub const PGE: u64 = 1 << 7;
    /// FXSAVE/FXRSTOR and SSE.
    pub const OSFXSR: u64 = 1 << 9;
    /// Unmasked SIMD exceptions.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}
