//! Host I/O ports and legacy IRQ lines: what the kernel keeps for itself and what it hands
//! to the root task as `IoPorts` and `IrqHandler` capabilities.
//!
//! Port I/O is never opened to ring 3 (IOPL stays 0 and the TSS has no I/O permission
//! bitmap, seL4's x86 model): the kernel performs each access on the holder's behalf after
//! checking the port against the capability's range. The ports the kernel drives itself
//! (the PICs and the PIT) are in no capability at all, so no invocation can reach them.

/// The width of one port access (`IoPortIn`/`IoPortOut`'s width word, in bytes).
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortWidth {
    /// `in al, dx` / `out dx, al`.
    Byte = 1,
    /// `in ax, dx` / `out dx, ax`.
    Word = 2,
    /// `in eax, dx` / `out dx, eax`.
    Dword = 4,
}

impl PortWidth {
    /// Decode a width word; `None` for anything but 1, 2 or 4.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            1 => Some(Self::Byte),
            2 => Some(Self::Word),
            4 => Some(Self::Dword),
            _ => None,
        }
    }

    /// Bytes per access.
    pub const fn bytes(self) -> u16 {
        self as u16
    }

    /// Whether `value` fits in an access of this width.
    pub const fn fits(self, value: u64) -> bool {
        value >> (8 * self as u64) == 0
    }
}

/// Port ranges (inclusive) the kernel keeps: the master PIC, the PIT, the slave PIC.
pub const KERNEL_PORTS: [(u16, u16); 3] = [(0x20, 0x21), (0x40, 0x43), (0xa0, 0xa1)];

/// The root task's `IoPorts` capabilities, one per range, in slots
/// `bootinfo::slot::FIRST_IO_PORTS..`: every port but [`KERNEL_PORTS`].
pub const ROOT_PORTS: [(u16, u16); 4] =
    [(0x0000, 0x001f), (0x0022, 0x003f), (0x0044, 0x009f), (0x00a2, 0xffff)];

/// Which of [`ROOT_PORTS`] covers `first..=last`, if one does.
pub fn root_range_covering(first: u16, last: u16) -> Option<usize> {
    ROOT_PORTS.iter().position(|&(f, l)| f <= first && last <= l)
}

/// The legacy interrupt lines (two cascaded 8259 PICs).
pub const IRQ_LINES: u8 = 16;
/// IRQ 0, the PIT: the kernel's scheduling tick, never handed out.
pub const IRQ_TIMER: u8 = 0;
/// IRQ 2, the slave PIC's cascade input: it never fires on its own.
pub const IRQ_CASCADE: u8 = 2;

#[cfg(test)]
mod tests {
    use super::{root_range_covering, PortWidth, KERNEL_PORTS, ROOT_PORTS};

    #[test]
    fn widths_are_strict() {
        assert_eq!(PortWidth::from_raw(2), Some(PortWidth::Word));
        for bad in [0, 3, 8, u64::MAX] {
            assert_eq!(PortWidth::from_raw(bad), None, "{bad}");
        }
        assert!(PortWidth::Byte.fits(0xff) && !PortWidth::Byte.fits(0x100));
        assert!(PortWidth::Dword.fits(0xffff_ffff) && !PortWidth::Dword.fits(1 << 32));
    }

    #[test]
    fn root_ranges_are_every_port_but_the_kernels() {
        for port in 0..=u16::MAX {
            let kernel = KERNEL_PORTS.iter().any(|&(f, l)| (f..=l).contains(&port));
            let root = ROOT_PORTS.iter().filter(|&&(f, l)| (f..=l).contains(&port)).count();
            assert_eq!(root, usize::from(!kernel), "port {port:#x}");
        }
        assert_eq!(root_range_covering(0x3f8, 0x3ff), Some(3));
        assert_eq!(root_range_covering(0x1f, 0x22), None, "across the master PIC");
    }
}
