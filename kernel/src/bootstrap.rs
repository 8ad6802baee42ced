//! Creating the root task's kernel objects and capabilities at boot: its TCB, CSpace,
//! address space, boot-information page, every byte of free memory as untyped
//! capabilities (the kernel keeps none for itself), and the host's devices: every I/O
//! port but the kernel's own and the authority over the IRQ lines.

use crate::cap::{Cap, Mapping};
use crate::cnode::{self, SLOT_BITS};
use crate::context::UserContext;
use crate::frame_alloc::PhysRange;
use crate::irq::IRQ_NODE_BITS;
use crate::paging::FrameSize;
use crate::state::Kernel;
use crate::store::{cnode_slot, tcb_slot, Store, TcbSlot, TCB_BITS, UNTYPED_MIN_BITS};
use crate::tcb::ThreadState;
use crate::untyped;
use crate::vspace;
use protocols::bootinfo::{
    self, slot, word, BOOTINFO_ADDR, MAX_MODULES, MAX_MODULE_PAGES, MAX_UNTYPED, ROOT_CNODE_RADIX,
};
use protocols::io::ROOT_PORTS;
use protocols::object::ObjectType;
use protocols::rights::Rights;

/// Memory the boot code set aside for the root task.
#[derive(Clone, Copy, Debug)]
pub struct RootTask {
    /// A 4 KiB frame for its TCB.
    pub tcb: u64,
    /// `2^(ROOT_CNODE_RADIX + SLOT_BITS)` aligned bytes for its CNode.
    pub cnode: u64,
    /// The PML4 its image is already mapped in.
    pub vspace: u64,
    /// Contiguous pages for the page tables of its later mappings.
    pub pool: u64,
    /// How many.
    pub pool_pages: u64,
    /// The boot-information frame, already mapped read-only at `BOOTINFO_ADDR`.
    pub bootinfo: u64,
    /// `2^IRQ_NODE_BITS` aligned bytes for the kernel's IRQ node.
    pub irq_node: u64,
    /// Entry point and initial stack pointer.
    pub entry: u64,
    /// Initial stack pointer.
    pub stack: u64,
}

/// A boot module to hand over as read-only frames.
#[derive(Clone, Copy, Debug)]
pub struct BootModule<'a> {
    /// Its name.
    pub name: &'a str,
    /// Physical start (page-aligned).
    pub start: u64,
    /// Physical end.
    pub end: u64,
}

/// Why a boot module was not handed to the root task. Each is reported at boot, naming
/// the module: a VM whose image is missing must not be a mystery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleRefusal {
    /// The boot loader placed it at an address that is not page-aligned.
    Misaligned {
        /// Its physical start.
        start: u64,
    },
    /// Its name does not fit the 16 bytes the boot-information page has for it.
    NameTooLong,
    /// [`MAX_MODULES`] modules are listed already.
    TooMany,
    /// Its pages do not fit in the root CNode's module slots that are left.
    NoRoom {
        /// Pages the module needs.
        pages: u64,
        /// Module slots left.
        left: u64,
    },
}

impl core::fmt::Display for ModuleRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Misaligned { start } => write!(f, "not page-aligned (at {start:#x})"),
            Self::NameTooLong => write!(f, "its name is longer than 16 bytes"),
            Self::TooMany => write!(f, "more than {MAX_MODULES} boot modules"),
            Self::NoRoom { pages, left } => write!(
                f,
                "{} KiB do not fit: {} KiB of the {} KiB for boot modules are left",
                pages * 4,
                left * 4,
                MAX_MODULE_PAGES * 4
            ),
        }
    }
}

/// Bytes of the root CNode.
pub const ROOT_CNODE_BITS: u8 = ROOT_CNODE_RADIX + SLOT_BITS;

/// Install the root task and make it the current thread. Returns how many untyped
/// capabilities it received and how many bytes they cover; each module it cannot hand
/// over goes to `refused` with the reason (the others are still handed over).
pub fn start_root_task<S: Store>(
    k: &mut Kernel<S>,
    rt: &RootTask,
    free: &[PhysRange],
    modules: &[BootModule<'_>],
    refused: &mut dyn FnMut(&BootModule<'_>, ModuleRefusal),
) -> Result<(usize, u64), vspace::Error> {
    let vmx_features = k.vmx.map_or(0, |v| {
        let mut f = bootinfo::vmx::VCPUS;
        if v.caps.ept() {
            f |= bootinfo::vmx::EPT;
        }
        if v.caps.unrestricted_guest() {
            f |= bootinfo::vmx::UNRESTRICTED_GUEST;
        }
        f
    });
    let s = &mut k.store;
    s.create(ObjectType::Tcb, rt.tcb, TCB_BITS);
    s.create(ObjectType::CNode, rt.cnode, ROOT_CNODE_BITS);
    let at = |i| cnode_slot(rt.cnode, i);
    let mapping = Mapping { vspace: rt.vspace, vaddr: BOOTINFO_ADDR };
    let roots = [
        (slot::TCB, Cap::Tcb { addr: rt.tcb }),
        (slot::CNODE, Cap::CNode { addr: rt.cnode, radix: ROOT_CNODE_RADIX }),
        (slot::VSPACE, Cap::VSpace { addr: rt.vspace, size_bits: 12 }),
        (
            slot::BOOTINFO,
            Cap::Frame {
                addr: rt.bootinfo,
                size: FrameSize::Small,
                rights: Rights::READ,
                mapped: Some(mapping),
            },
        ),
    ];
    for (i, cap) in roots {
        let _ = cnode::insert_root(s, at(i), cap);
    }
    let mut words = [0u64; 512];
    words[word::MAGIC] = bootinfo::MAGIC;
    words[word::CPUS] = k.cpus as u64;
    let (mut count, mut bytes) = (0usize, 0u64);
    let all = free.iter().flat_map(|r| untyped::blocks(r.start, r.end, UNTYPED_MIN_BITS, 47));
    for (base, bits) in all.take(MAX_UNTYPED) {
        let cap = Cap::Untyped { base, size_bits: bits, free: 0 };
        let _ = cnode::insert_root(s, at(slot::FIRST_UNTYPED + count as u64), cap);
        let w = word::UNTYPED_LIST + 2 * count;
        words[w] = base;
        words[w + 1] = u64::from(bits);
        count += 1;
        bytes += 1u64 << bits;
    }
    words[word::UNTYPED_COUNT] = count as u64;
    let mut next = 0u64;
    let mut listed = 0usize;
    for m in modules {
        let pages = (m.end.saturating_sub(m.start)).div_ceil(4096);
        let left = MAX_MODULE_PAGES as u64 - next;
        let refusal = if m.start % 4096 != 0 {
            Some(ModuleRefusal::Misaligned { start: m.start })
        } else if m.name.len() > 16 {
            Some(ModuleRefusal::NameTooLong)
        } else if listed == MAX_MODULES {
            Some(ModuleRefusal::TooMany)
        } else if pages > left {
            Some(ModuleRefusal::NoRoom { pages, left })
        } else {
            None
        };
        if let Some(why) = refusal {
            refused(m, why);
            continue;
        }
        for p in 0..pages {
            let cap = Cap::Frame {
                addr: m.start + p * 4096,
                size: FrameSize::Small,
                rights: Rights::READ,
                mapped: None,
            };
            let _ = cnode::insert_root(s, at(slot::FIRST_MODULE_FRAME + next + p), cap);
        }
        let mut name = [0u8; 16];
        for (d, c) in name.iter_mut().zip(m.name.bytes()) {
            *d = c;
        }
        let w = word::MODULE_LIST + word::MODULE_WORDS * listed;
        let (lo, hi) = name.split_at(8);
        words[w] = u64::from_le_bytes(lo.try_into().unwrap_or_default());
        words[w + 1] = u64::from_le_bytes(hi.try_into().unwrap_or_default());
        words[w + 2] = slot::FIRST_MODULE_FRAME + next;
        words[w + 3] = m.end - m.start;
        next += pages;
        listed += 1;
    }
    words[word::MODULE_COUNT] = listed as u64;
    words[word::VMX_FEATURES] = vmx_features;
    let page = s.frame(rt.bootinfo);
    for (chunk, w) in page.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    for (which, i) in [(TcbSlot::CSpace, slot::CNODE), (TcbSlot::VSpace, slot::VSPACE)] {
        let cap = s.slot(at(i)).cap;
        let _ = cnode::insert_child(s, at(i), tcb_slot(rt.tcb, which), cap);
    }
    hand_over_devices(k, rt.cnode, rt.irq_node);
    let t = k.store.tcb(rt.tcb);
    t.root_task = true;
    t.sched.priority = protocols::bootinfo::ROOT_PRIORITY;
    t.context = UserContext::new_user(rt.entry, rt.stack);
    t.sched.state = ThreadState::Ready;
    k.vspaces.add(rt.vspace, rt.pool, rt.pool_pages)?;
    k.current = rt.tcb;
    Ok((count, bytes))
}

/// Set up the IRQ node at `irq_node` and give the root task (CNode `cnode`) the IRQ
/// control capability and one `IoPorts` capability per range of `io::ROOT_PORTS`.
pub fn hand_over_devices<S: Store>(k: &mut Kernel<S>, cnode: u64, irq_node: u64) {
    k.store.create(ObjectType::CNode, irq_node, IRQ_NODE_BITS);
    k.irqs.node = irq_node;
    let _ = cnode::insert_root(&mut k.store, cnode_slot(cnode, slot::IRQ_CONTROL), Cap::IrqControl);
    for (i, &(first, last)) in ROOT_PORTS.iter().enumerate() {
        let at = cnode_slot(cnode, slot::FIRST_IO_PORTS + i as u64);
        let _ = cnode::insert_root(&mut k.store, at, Cap::IoPorts { first, last });
    }
}

#[cfg(test)]
mod tests {
    use super::{start_root_task, BootModule, ModuleRefusal, RootTask};
    use crate::cap::Cap;
    use crate::frame_alloc::PhysRange;
    use crate::paging::PhysMemory;
    use crate::state::Kernel;
    use crate::store::fake::FakeStore;
    use crate::store::{cnode_slot, Store};
    use protocols::bootinfo::{slot, untypeds};

    /// Where the tests put the root task's objects.
    fn root_task() -> RootTask {
        RootTask {
            tcb: 0x1000,
            cnode: 0x2_0000,
            vspace: 0x8000,
            pool: 0x9000,
            pool_pages: 4,
            bootinfo: 0xa000,
            irq_node: 0xb000,
            entry: 0x40_0000,
            stack: 0x7fff_0000,
        }
    }

    #[test]
    fn every_free_byte_becomes_untyped_and_is_listed() {
        let mut k = Kernel::new(FakeStore::default(), [0; 256], true);
        let rt = root_task();
        let free = [
            PhysRange { start: 0x10_3000, end: 0x20_0000 },
            PhysRange { start: 0x100_0000, end: 0x200_0000 },
        ];
        let modules = [super::BootModule { name: "vmm", start: 0x300_0000, end: 0x300_1800 }];
        let mut refused = |m: &BootModule<'_>, why| panic!("{} refused: {why}", m.name);
        let (n, bytes) = start_root_task(&mut k, &rt, &free, &modules, &mut refused).unwrap();
        assert_eq!(bytes, (0x20_0000 - 0x10_3000) + 0x100_0000);
        assert_eq!(k.current, 0x1000);
        assert!(k.store.tcb(0x1000).root_task);
        let page = *k.store.frame(0xa000);
        let words: Vec<u64> =
            page.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        let listed: Vec<_> = untypeds(&words).unwrap().collect();
        assert_eq!(listed.len(), n);
        for (i, d) in listed.iter().enumerate() {
            let cap = k.store.slot(cnode_slot(0x2_0000, slot::FIRST_UNTYPED + i as u64)).cap;
            assert_eq!(cap, Cap::Untyped { base: d.base, size_bits: d.size_bits, free: 0 });
        }
        assert_eq!(k.current_root(), Some(0x8000));
        let m: Vec<_> = protocols::bootinfo::modules(&words).unwrap().collect();
        assert_eq!(
            (m[0].name(), m[0].size, m[0].first_slot),
            ("vmm", 0x1800, slot::FIRST_MODULE_FRAME)
        );
        let second = k.store.slot(cnode_slot(0x2_0000, slot::FIRST_MODULE_FRAME + 1)).cap;
        assert_eq!(
            second,
            Cap::Frame {
                addr: 0x300_1000,
                size: crate::paging::FrameSize::Small,
                rights: protocols::rights::Rights::READ,
                mapped: None,
            }
        );
        let root = |k: &mut Kernel<FakeStore>, i| k.store.slot(cnode_slot(0x2_0000, i)).cap;
        assert_eq!(root(&mut k, slot::IRQ_CONTROL), Cap::IrqControl);
        for (i, (first, last)) in protocols::io::ROOT_PORTS.into_iter().enumerate() {
            let cap = root(&mut k, slot::FIRST_IO_PORTS + i as u64);
            assert_eq!(cap, Cap::IoPorts { first, last });
        }
        assert_eq!(k.irqs.node, 0xb000);
    }

    /// Every module that cannot be handed over is reported with its reason; those after
    /// it still are handed over.
    #[test]
    fn modules_that_do_not_fit_are_refused_by_name() {
        let mut k = Kernel::new(FakeStore::default(), [0; 256], true);
        let rt = root_task();
        let room = protocols::bootinfo::MAX_MODULE_PAGES as u64 * 4096;
        let m = |name, start, len| BootModule { name, start, end: start + len };
        let mut modules = vec![
            m("big", 0x1000_0000, room - 0x1000),
            m("linux", 0x3000_0000, 0x2000),
            m("odd", 0x4000_0800, 0x1000),
            m("a-name-of-seventeen", 0x5000_0000, 0x1000),
            m("small", 0x6000_0000, 0x1000),
        ];
        for i in 0..protocols::bootinfo::MAX_MODULES {
            modules.push(m("tiny", 0x7000_0000 + i as u64 * 0x1000, 0));
        }
        let mut seen = Vec::new();
        let mut refused = |m: &BootModule<'_>, why| seen.push((m.name.to_string(), why));
        start_root_task(&mut k, &rt, &[], &modules, &mut refused).unwrap();
        assert_eq!(
            seen[..3],
            [
                ("linux".to_string(), ModuleRefusal::NoRoom { pages: 2, left: 1 }),
                ("odd".to_string(), ModuleRefusal::Misaligned { start: 0x4000_0800 }),
                ("a-name-of-seventeen".to_string(), ModuleRefusal::NameTooLong),
            ]
        );
        // "big", "small" and 14 "tiny" fill the 16 entries; the last two are too many.
        assert_eq!(seen.len(), 5);
        assert_eq!(
            seen[3..],
            [("tiny".into(), ModuleRefusal::TooMany), ("tiny".into(), ModuleRefusal::TooMany)]
        );
        let page = *k.store.frame(0xa000);
        let words: Vec<u64> =
            page.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        let listed: Vec<_> =
            protocols::bootinfo::modules(&words).unwrap().map(|m| m.name().to_string()).collect();
        assert_eq!(listed[..2], ["big".to_string(), "small".to_string()]);
        assert_eq!(listed.len(), protocols::bootinfo::MAX_MODULES);
    }
}
