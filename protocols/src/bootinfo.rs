//! What the kernel hands the root task at boot: fixed capability slots in its CSpace and
//! a read-only page describing its untyped memory.

/// Slots of the root task's CSpace that the kernel fills.
pub mod slot {
    /// The root task's own TCB.
    pub const TCB: u64 = 1;
    /// Its CSpace root CNode.
    pub const CNODE: u64 = 2;
    /// Its address space.
    pub const VSPACE: u64 = 3;
    /// The boot-information frame (mapped read-only at [`super::BOOTINFO_ADDR`]).
    pub const BOOTINFO: u64 = 4;
    /// The first untyped capability; they occupy consecutive slots.
    pub const FIRST_UNTYPED: u64 = 32;
    /// The first slot the kernel leaves empty for the root task's own use.
    pub const FIRST_FREE: u64 = FIRST_UNTYPED + super::MAX_UNTYPED as u64;
}

/// log2 of the root CNode's slot count.
pub const ROOT_CNODE_RADIX: u8 = 10;
/// The most untyped capabilities the kernel hands out.
pub const MAX_UNTYPED: usize = 200;
/// Where the boot-information page is mapped.
pub const BOOTINFO_ADDR: u64 = 0x0000_7fff_fff0_0000;
/// First word of the page.
pub const MAGIC: u64 = 0x626f_6f74_696e_666f; // "bootinfo"

/// Word offsets in the page: `[MAGIC, count, (base, size_bits) × count]`.
pub mod word {
    /// [`super::MAGIC`].
    pub const MAGIC: usize = 0;
    /// How many untyped capabilities follow.
    pub const UNTYPED_COUNT: usize = 1;
    /// The first `(base, size_bits)` pair; untyped `i` is in slot `FIRST_UNTYPED + i`.
    pub const UNTYPED_LIST: usize = 2;
}

/// One untyped region as listed in the boot-information page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UntypedDesc {
    /// Physical base.
    pub base: u64,
    /// log2 of its size.
    pub size_bits: u8,
}

/// Read the untyped list from the page's words; `None` if the page is malformed.
pub fn untypeds(words: &[u64]) -> Option<impl Iterator<Item = UntypedDesc> + '_> {
    if words.get(word::MAGIC) != Some(&MAGIC) {
        return None;
    }
    let n = usize::try_from(*words.get(word::UNTYPED_COUNT)?).ok()?;
    if n > MAX_UNTYPED {
        return None;
    }
    let list = words.get(word::UNTYPED_LIST..word::UNTYPED_LIST + 2 * n)?;
    Some(list.chunks_exact(2).map(|p| UntypedDesc { base: p[0], size_bits: p[1] as u8 }))
}

#[cfg(test)]
mod tests {
    use super::{untypeds, UntypedDesc, MAGIC};

    #[test]
    fn parses_and_rejects() {
        let words = [MAGIC, 2, 0x10_0000, 20, 0x20_0000, 21];
        let list: Vec<_> = untypeds(&words).unwrap().collect();
        assert_eq!(list[1], UntypedDesc { base: 0x20_0000, size_bits: 21 });
        assert!(untypeds(&[0, 0]).is_none());
        assert!(untypeds(&[MAGIC, 3, 1, 2]).is_none(), "count runs past the page");
        assert!(untypeds(&[MAGIC, 100_000]).is_none());
    }
}
