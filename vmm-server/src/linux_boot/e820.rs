//! The e820 memory map the guest kernel reads from `boot_params`: exactly the VM's RAM,
//! with the PC's legacy hole (640 KiB to 1 MiB: VGA memory and the BIOS ROMs) reserved, as
//! a guest of a PC expects. Nothing else is listed, so the kernel never believes in memory
//! the VM does not have.

/// Where conventional memory ends and the legacy hole starts.
pub const LOW_RAM_END: u64 = 0xa_0000;
/// Where RAM resumes above the legacy hole.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Bytes of one entry in `boot_params.e820_table`.
pub const ENTRY_SIZE: usize = 20;

/// What a range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Kind {
    /// Usable RAM.
    Ram = 1,
    /// Reserved: not RAM the kernel may use.
    Reserved = 2,
}

/// One range of guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What it is.
    pub kind: E820Kind,
}

impl E820Entry {
    /// The entry as `boot_params` holds it: address, size, type.
    pub fn to_bytes(self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        let (addr, rest) = b.split_at_mut(8);
        let (size, kind) = rest.split_at_mut(8);
        addr.copy_from_slice(&self.addr.to_le_bytes());
        size.copy_from_slice(&self.size.to_le_bytes());
        kind.copy_from_slice(&(self.kind as u32).to_le_bytes());
        b
    }
}

/// The map of a VM with `ram_bytes` of RAM from guest-physical 0; `None` if the RAM does
/// not reach past 1 MiB (there would be no RAM for a kernel above the hole).
pub fn map(ram_bytes: u64) -> Option<[E820Entry; 3]> {
    let high = ram_bytes.checked_sub(HIGH_RAM_START).filter(|&n| n > 0)?;
    Some([
        E820Entry { addr: 0, size: LOW_RAM_END, kind: E820Kind::Ram },
        E820Entry {
            addr: LOW_RAM_END,
            size: HIGH_RAM_START.checked_sub(LOW_RAM_END)?,
            kind: E820Kind::Reserved,
        },
        E820Entry { addr: HIGH_RAM_START, size: high, kind: E820Kind::Ram },
    ])
}

#[cfg(test)]
mod tests {
    use super::{map, E820Entry, E820Kind};

    #[test]
    fn the_map_is_the_ram_with_the_legacy_hole_reserved() {
        let m = map(128 << 20).unwrap();
        let ranges: Vec<_> = m.iter().map(|e| (e.addr, e.addr + e.size, e.kind)).collect();
        assert_eq!(
            ranges,
            [
                (0, 0xa_0000, E820Kind::Ram),
                (0xa_0000, 0x10_0000, E820Kind::Reserved),
                (0x10_0000, 128 << 20, E820Kind::Ram),
            ]
        );
        assert_eq!(map(0x10_0000), None);
        assert_eq!(map(0), None);
        assert!(map(0x10_1000).is_some());
    }

    #[test]
    fn an_entry_encodes_as_address_size_type() {
        let e = E820Entry { addr: 0x10_0000, size: 0x20_0000, kind: E820Kind::Reserved };
        let b = e.to_bytes();
        assert_eq!(&b[0..8], &0x10_0000u64.to_le_bytes());
        assert_eq!(&b[8..16], &0x20_0000u64.to_le_bytes());
        assert_eq!(&b[16..20], &2u32.to_le_bytes());
    }
}
