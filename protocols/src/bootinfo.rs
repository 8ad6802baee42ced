//! What the kernel hands the root task at boot: fixed capability slots in its CSpace (its
//! own objects, the host's I/O ports and IRQ lines, untyped memory, the boot modules) and
//! a read-only page describing its untyped memory and modules.

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
    /// The IRQ control capability: makes one `IrqHandler` per line (`IrqControlGet`).
    pub const IRQ_CONTROL: u64 = 5;
    /// The first `IoPorts` capability; slot `FIRST_IO_PORTS + i` covers
    /// `io::ROOT_PORTS[i]` (every port but the PICs' and the PIT's, which the kernel keeps).
    pub const FIRST_IO_PORTS: u64 = 8;
    /// The first untyped capability; they occupy consecutive slots.
    pub const FIRST_UNTYPED: u64 = 32;
    /// The first frame capability of the boot modules' pages (read-only copies of every
    /// module but `init`), consecutive, module after module.
    pub const FIRST_MODULE_FRAME: u64 = FIRST_UNTYPED + super::MAX_UNTYPED as u64;
    /// The first slot the kernel leaves empty for the root task's own use.
    pub const FIRST_FREE: u64 = FIRST_MODULE_FRAME + super::MAX_MODULE_PAGES as u64;
}

/// log2 of the root CNode's slot count.
pub const ROOT_CNODE_RADIX: u8 = 14;
/// The priority the kernel starts the root task at: the highest there is.
pub const ROOT_PRIORITY: u8 = u8::MAX;
/// The most untyped capabilities the kernel hands out.
pub const MAX_UNTYPED: usize = 200;
/// The most boot-module pages handed to the root task as frames: 24 MiB, room for a
/// distribution's Linux kernel and an initramfs beside the system's own programs.
pub const MAX_MODULE_PAGES: usize = 6144;
/// The most boot modules listed.
pub const MAX_MODULES: usize = 16;
/// Where the boot-information page is mapped.
pub const BOOTINFO_ADDR: u64 = 0x0000_7fff_fff0_0000;
/// First word of the page.
pub const MAGIC: u64 = 0x626f_6f74_696e_666f; // "bootinfo"

/// Word offsets in the page.
pub mod word {
    /// [`super::MAGIC`].
    pub const MAGIC: usize = 0;
    /// How many untyped capabilities follow.
    pub const UNTYPED_COUNT: usize = 1;
    /// How many modules are listed.
    pub const MODULE_COUNT: usize = 2;
    /// What VT-x support the kernel offers ([`super::vmx`] bits).
    pub const VMX_FEATURES: usize = 3;
    /// How many CPUs are online (threads and vCPUs run on CPUs `0..CPUS`).
    pub const CPUS: usize = 4;
    /// The first `(base, size_bits)` pair; untyped `i` is in slot `FIRST_UNTYPED + i`.
    pub const UNTYPED_LIST: usize = 8;
    /// The module list: per module `[name (16 bytes, NUL-padded) as 2 words, first frame
    /// slot, size in bytes]`.
    pub const MODULE_LIST: usize = UNTYPED_LIST + 2 * super::MAX_UNTYPED;
    /// Words per module entry.
    pub const MODULE_WORDS: usize = 4;
}

/// Bits of the [`word::VMX_FEATURES`] word.
pub mod vmx {
    /// VCpus can be made (VT-x present and usable).
    pub const VCPUS: u64 = 1 << 0;
    /// EPT is available (every guest needs it).
    pub const EPT: u64 = 1 << 1;
    /// Unrestricted guest: real-mode and unpaged protected-mode guests can run.
    pub const UNRESTRICTED_GUEST: u64 = 1 << 2;
}

/// A boot module handed to the root task as frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleDesc {
    /// Its name (the boot loader's module command line), NUL-padded.
    pub name: [u8; 16],
    /// The slot of its first page's frame capability.
    pub first_slot: u64,
    /// Its size in bytes.
    pub size: u64,
}

impl ModuleDesc {
    /// The name as text.
    pub fn name(&self) -> &str {
        let end = self.name.iter().position(|b| *b == 0).unwrap_or(16);
        core::str::from_utf8(self.name.get(..end).unwrap_or_default()).unwrap_or("")
    }

    /// Pages it spans.
    pub const fn pages(&self) -> u64 {
        self.size.div_ceil(4096)
    }
}

/// Read the module list; `None` if the page is malformed.
pub fn modules(words: &[u64]) -> Option<impl Iterator<Item = ModuleDesc> + '_> {
    if words.get(word::MAGIC) != Some(&MAGIC) {
        return None;
    }
    let n = usize::try_from(*words.get(word::MODULE_COUNT)?).ok()?;
    if n > MAX_MODULES {
        return None;
    }
    let list = words.get(word::MODULE_LIST..word::MODULE_LIST + word::MODULE_WORDS * n)?;
    Some(list.chunks_exact(word::MODULE_WORDS).map(|m| {
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(&m[0].to_le_bytes());
        name[8..].copy_from_slice(&m[1].to_le_bytes());
        ModuleDesc { name, first_slot: m[2], size: m[3] }
    }))
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
    fn modules_parse() {
        let mut words = vec![0u64; 512];
        words[0] = MAGIC;
        words[super::word::MODULE_COUNT] = 1;
        let at = super::word::MODULE_LIST;
        words[at] = u64::from_le_bytes(*b"vmm\0\0\0\0\0");
        words[at + 2] = 300;
        words[at + 3] = 5000;
        let m: Vec<_> = super::modules(&words).unwrap().collect();
        assert_eq!((m[0].name(), m[0].first_slot, m[0].pages()), ("vmm", 300, 2));
        words[super::word::MODULE_COUNT] = 99;
        assert!(super::modules(&words).is_none());
    }

    #[test]
    fn parses_and_rejects() {
        let mut words = vec![0u64; 16];
        words[..2].copy_from_slice(&[MAGIC, 2]);
        words[8..12].copy_from_slice(&[0x10_0000, 20, 0x20_0000, 21]);
        let list: Vec<_> = untypeds(&words).unwrap().collect();
        assert_eq!(list[1], UntypedDesc { base: 0x20_0000, size_bits: 21 });
        assert!(untypeds(&[0, 0]).is_none());
        assert!(
            untypeds(&[MAGIC, 3, 0, 0, 0, 0, 0, 0, 1, 2]).is_none(),
            "count runs past the page"
        );
        assert!(untypeds(&[MAGIC, 100_000]).is_none());
    }
}
