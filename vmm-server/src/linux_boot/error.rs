//! Why a Linux guest cannot be booted. Each variant names the one check that failed, so
//! the VMM's message tells the user which part of the bzImage, the initramfs or the
//! command line is wrong and by how much.

use core::fmt;

use crate::guest_memory::MemoryError;

/// A check of the bzImage, the command line, the initramfs or guest RAM that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxBootError {
    /// The file ends before the setup header does.
    HeaderTruncated {
        /// Bytes the header needs.
        need: u64,
        /// Bytes in the file.
        have: u64,
    },
    /// The boot sector's flag at 0x1fe is not 0xAA55.
    BadBootFlag(u16),
    /// The setup header's magic at 0x202 is not "HdrS": not a Linux kernel image.
    BadMagic(u32),
    /// The boot protocol is older than 2.12 (no 64-bit entry flag, no `init_size`).
    OldProtocol {
        /// The image's version, major in the high byte.
        version: u16,
    },
    /// The setup header's own length (0x202 + the byte at 0x201) is shorter than the
    /// fields this loader reads, or longer than `boot_params` has room for.
    BadHeaderLength(u64),
    /// `loadflags` lacks LOADED_HIGH: a zImage, which loads below 1 MiB.
    NotBzImage,
    /// `relocatable_kernel` is 0: the kernel would insist on its link-time address.
    NotRelocatable,
    /// `xloadflags` lacks XLF_KERNEL_64: there is no 64-bit entry point.
    No64BitEntry,
    /// `kernel_alignment` is zero or not a power of two.
    BadAlignment(u32),
    /// `syssize` is zero: no protected-mode kernel.
    EmptyKernel,
    /// The setup sectors or the protected-mode kernel (`syssize`) run past the file's end.
    KernelTruncated {
        /// Bytes the header says the image holds.
        need: u64,
        /// Bytes in the file.
        have: u64,
    },
    /// `init_size` is smaller than the protected-mode kernel it must hold.
    InitSizeTooSmall {
        /// `init_size`.
        init_size: u32,
        /// The protected-mode kernel's length.
        kernel: u64,
    },
    /// Guest RAM does not reach past 1 MiB, where the kernel and the e820 RAM range start.
    RamTooSmall(u64),
    /// The kernel's load address plus `init_size` lies past guest RAM (or wraps).
    KernelPastRam {
        /// The end of the memory the kernel needs.
        end: u64,
        /// Guest RAM size.
        ram: u64,
    },
    /// The command line is longer than the kernel's `cmdline_size` or the room this
    /// loader keeps for it.
    CmdlineTooLong {
        /// Its length.
        len: u64,
        /// The most allowed.
        max: u64,
    },
    /// The command line holds a NUL byte, which would end it early.
    CmdlineHasNul,
    /// The initramfs alone is larger than guest RAM.
    InitrdLargerThanRam {
        /// Its length.
        len: u64,
        /// Guest RAM size.
        ram: u64,
    },
    /// The initramfs fits in neither the RAM above the kernel nor below `initrd_addr_max`.
    InitrdDoesNotFit {
        /// Its length.
        len: u64,
        /// Free bytes between the kernel's end and the highest address it may reach.
        room: u64,
    },
    /// The bytes handed to [`super::LoadPlan::write`] are not the ones it was planned for.
    PlanMismatch,
    /// Writing to guest RAM failed at this guest-physical address.
    OutsideRam(u64),
}

impl From<MemoryError> for LinuxBootError {
    fn from(e: MemoryError) -> Self {
        Self::OutsideRam(e.gpa)
    }
}

impl fmt::Display for LinuxBootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::HeaderTruncated { need, have } => write!(
                f,
                "bzImage truncated: the setup header needs {need} bytes, the file has {have}"
            ),
            Self::BadBootFlag(v) => write!(f, "bzImage boot flag is {v:#06x}, not 0xaa55"),
            Self::BadMagic(v) => write!(f, "bzImage header magic is {v:#010x}, not \"HdrS\""),
            Self::OldProtocol { version } => write!(
                f,
                "bzImage boot protocol {}.{:02} is older than 2.12",
                version >> 8,
                version & 0xff
            ),
            Self::BadHeaderLength(end) => {
                write!(f, "bzImage setup header ends at {end:#x}, outside 0x268..=0x290")
            }
            Self::NotBzImage => f.write_str("not a bzImage: loadflags lacks LOADED_HIGH"),
            Self::NotRelocatable => f.write_str("bzImage is not relocatable"),
            Self::No64BitEntry => f.write_str("bzImage has no 64-bit entry (XLF_KERNEL_64)"),
            Self::BadAlignment(a) => {
                write!(f, "bzImage kernel_alignment {a:#x} is not a power of two")
            }
            Self::EmptyKernel => f.write_str("bzImage syssize is 0: no protected-mode kernel"),
            Self::KernelTruncated { need, have } => write!(
                f,
                "bzImage truncated: the header says {need} bytes of setup and kernel, the \
                 file has {have}"
            ),
            Self::InitSizeTooSmall { init_size, kernel } => write!(
                f,
                "bzImage init_size {init_size:#x} is smaller than its {kernel:#x}-byte kernel"
            ),
            Self::RamTooSmall(ram) => {
                write!(f, "guest RAM of {ram:#x} bytes does not reach past 1 MiB")
            }
            Self::KernelPastRam { end, ram } => write!(
                f,
                "the kernel needs guest RAM up to {end:#x} (load address + init_size), the \
                 VM has {ram:#x}"
            ),
            Self::CmdlineTooLong { len, max } => {
                write!(f, "command line of {len} bytes is longer than {max}")
            }
            Self::CmdlineHasNul => f.write_str("command line holds a NUL byte"),
            Self::InitrdLargerThanRam { len, ram } => write!(
                f,
                "initramfs of {len:#x} bytes is larger than the VM's {ram:#x} bytes of RAM"
            ),
            Self::InitrdDoesNotFit { len, room } => write!(
                f,
                "initramfs of {len:#x} bytes does not fit in the {room:#x} bytes between the \
                 kernel and initrd_addr_max or the end of RAM"
            ),
            Self::PlanMismatch => {
                f.write_str("the kernel, command line or initramfs differ from the plan")
            }
            Self::OutsideRam(gpa) => write!(f, "guest-physical {gpa:#x} is outside guest RAM"),
        }
    }
}
