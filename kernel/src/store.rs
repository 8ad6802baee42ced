//! Where kernel objects live. Objects sit in memory retyped from Untyped capabilities and
//! are named by their physical address; the bare-metal kernel reaches them through its
//! physical-memory window, the host tests through [`fake::FakeStore`].

use crate::cnode::{Slot, SLOT_BITS};
use crate::endpoint::Endpoint;
use crate::notification::Notification;
use crate::paging::PhysMemory;
use crate::reply::Reply;
use crate::schedulable::Schedulable;
use crate::tcb::Tcb;
use protocols::object::ObjectType;

/// log2 of a TCB object's size.
pub const TCB_BITS: u8 = 12;
/// Offset of a TCB's own capability slots (CSpace root, VSpace, fault endpoint, IPC
/// buffer).
pub const TCB_SLOTS_OFFSET: u64 = 2048;
/// log2 of an endpoint's size.
pub const ENDPOINT_BITS: u8 = 6;
/// log2 of a notification's size.
pub const NOTIFICATION_BITS: u8 = 6;
/// log2 of a Reply object's size.
pub const REPLY_BITS: u8 = 4;
/// log2 of a frame's size.
pub const FRAME_BITS: u8 = 12;
/// Smallest VSpace: the PML4 and three tables, enough for one mapping.
pub const VSPACE_MIN_BITS: u8 = 14;
/// Smallest untyped that may be carved out.
pub const UNTYPED_MIN_BITS: u8 = 12;
/// Largest size any object may ask for.
pub const MAX_OBJECT_BITS: u8 = 47;
/// Largest CNode radix.
pub const CNODE_MAX_RADIX: u8 = 16;

/// The size in bits of one object of type `ty` with parameter `size_bits`, or `None` if
/// the parameter is out of range for that type.
pub fn object_bits(ty: ObjectType, size_bits: u8) -> Option<u8> {
    match ty {
        ObjectType::Untyped => {
            (UNTYPED_MIN_BITS..=MAX_OBJECT_BITS).contains(&size_bits).then_some(size_bits)
        }
        ObjectType::CNode => {
            (1..=CNODE_MAX_RADIX).contains(&size_bits).then(|| size_bits + SLOT_BITS)
        }
        ObjectType::Tcb => Some(TCB_BITS),
        ObjectType::Endpoint => Some(ENDPOINT_BITS),
        ObjectType::Notification => Some(NOTIFICATION_BITS),
        ObjectType::Frame => Some(FRAME_BITS),
        ObjectType::LargeFrame => Some(crate::paging::FrameSize::Large.bits()),
        ObjectType::VSpace | ObjectType::GuestSpace => {
            (VSPACE_MIN_BITS..=24).contains(&size_bits).then_some(size_bits)
        }
        ObjectType::VCpu => Some(crate::vcpu::VCPU_BITS),
        ObjectType::Reply => Some(REPLY_BITS),
    }
}

/// Access to kernel objects by address. Callers only pass addresses taken from
/// capabilities (or derived from them), so the type at each address is known.
pub trait Store: PhysMemory {
    /// The capability slot at `at`.
    fn slot(&mut self, at: u64) -> &mut Slot;
    /// The TCB at `at`.
    fn tcb(&mut self, at: u64) -> &mut Tcb;
    /// The scheduling part of the thread or vCPU at `at` (at `tcb::SCHED_OFFSET` in both).
    fn sched(&mut self, at: u64) -> &mut Schedulable;
    /// The endpoint at `at`.
    fn endpoint(&mut self, at: u64) -> &mut Endpoint;
    /// The notification at `at`.
    fn notification(&mut self, at: u64) -> &mut Notification;
    /// The Reply object at `at`.
    fn reply(&mut self, at: u64) -> &mut Reply;
    /// The kernel data of the VCpu object at `at`.
    fn vcpu(&mut self, at: u64) -> &mut crate::vcpu::VcpuData;
    /// The kernel data of the VCpu at `vcpu` and the frame at `frame` at once (two objects,
    /// never overlapping), so a reply is validated from its page into the VCpu.
    fn vcpu_and_frame(
        &mut self,
        vcpu: u64,
        frame: u64,
    ) -> (&mut crate::vcpu::VcpuData, &mut [u8; 4096]);
    /// Zero `[addr, addr + 2^bits)` and construct a fresh object of type `ty` there.
    fn create(&mut self, ty: ObjectType, addr: u64, bits: u8);
}

/// The bytes of the object of `2^bits` bytes at `addr`, page by page: `(page, byte range
/// in it)`. An object smaller than a page shares it with others, so making one must
/// clear exactly these bytes and no more.
pub fn object_bytes(addr: u64, bits: u8) -> impl Iterator<Item = (u64, core::ops::Range<usize>)> {
    let end = addr.saturating_add(1u64 << bits);
    let first = addr & !0xfff;
    (first..end).step_by(4096).map(move |page| {
        let from = addr.max(page) - page;
        let to = end.min(page + 4096) - page;
        (page, from as usize..to as usize)
    })
}

/// Address of slot `index` of the CNode at `cnode`.
pub const fn cnode_slot(cnode: u64, index: u64) -> u64 {
    cnode + (index << SLOT_BITS)
}

/// Address of a TCB's own slot `which` (see [`TcbSlot`]).
pub const fn tcb_slot(tcb: u64, which: TcbSlot) -> u64 {
    tcb + TCB_SLOTS_OFFSET + ((which as u64) << SLOT_BITS)
}

/// The capability slots inside a TCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcbSlot {
    /// The thread's CSpace root (a CNode).
    CSpace = 0,
    /// The thread's address space.
    VSpace = 1,
    /// Where the thread's faults are sent.
    FaultEndpoint = 2,
    /// The frame holding the message words beyond the registers.
    IpcBuffer = 3,
}

impl TcbSlot {
    /// Every slot a TCB has.
    pub const ALL: [Self; 4] = [Self::CSpace, Self::VSpace, Self::FaultEndpoint, Self::IpcBuffer];
}

/// Offset of a VCpu's own capability slots (its first page holds only its
/// [`Schedulable`], at `tcb::SCHED_OFFSET`, before them).
pub const VCPU_SLOTS_OFFSET: u64 = 2048;

/// A VCpu's bindings, in its own slots (set by `VCpuConfigure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VCpuSlot {
    /// The guest's physical address space (a GuestSpace).
    GuestSpace = 0,
    /// The frame holding the exit area and the VMM's reply.
    MessageFrame = 1,
    /// Where its exits are sent.
    ExitEndpoint = 2,
}

impl VCpuSlot {
    /// Every binding slot a VCpu has.
    pub const ALL: [Self; 3] = [Self::GuestSpace, Self::MessageFrame, Self::ExitEndpoint];
}

/// Address of VCpu `vcpu`'s binding slot `which`.
pub const fn vcpu_slot(vcpu: u64, which: VCpuSlot) -> u64 {
    vcpu + VCPU_SLOTS_OFFSET + ((which as u64) << SLOT_BITS)
}

/// How many `IoPorts` ranges a VCpu can pass through to its guest.
pub const VCPU_PASS_SLOTS: usize = 4;

/// How many slots a VCpu has: its bindings, then its pass-through slots.
pub const VCPU_SLOTS: usize = VCpuSlot::ALL.len() + VCPU_PASS_SLOTS;

/// Address of VCpu `vcpu`'s pass-through slot `i` (after its binding slots): it holds a
/// copy of the `IoPorts` capability whose ports the guest reaches without exiting.
pub const fn vcpu_pass_slot(vcpu: u64, i: usize) -> u64 {
    vcpu + VCPU_SLOTS_OFFSET + (((VCpuSlot::ALL.len() + i) as u64) << SLOT_BITS)
}

const _: () = assert!(vcpu_pass_slot(0, VCPU_PASS_SLOTS) <= 4096, "slots fit the first page");
const _: () = assert!(
    crate::tcb::SCHED_OFFSET + size_of::<Schedulable>() as u64 <= VCPU_SLOTS_OFFSET,
    "a VCpu's scheduling part lies before its slots"
);

/// A host stand-in: objects in hash maps, frames in a sparse byte store.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake {
    use super::{Slot, Store};
    use crate::endpoint::Endpoint;
    use crate::notification::Notification;
    use crate::paging::PhysMemory;
    use crate::reply::Reply;
    use crate::schedulable::{Kind, Schedulable};
    use crate::tcb::Tcb;
    use protocols::object::ObjectType;
    use std::collections::HashMap;

    /// A fast hasher for object addresses: the store is looked up on every step of
    /// every fuzz input, where SipHash's resistance to chosen keys buys nothing.
    /// Addresses are aligned, so the product is folded down to give the low bits (which
    /// pick the bucket) entropy.
    #[derive(Clone, Copy, Default)]
    pub struct AddrHasher(u64);

    impl std::hash::Hasher for AddrHasher {
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.write_u64(u64::from(*b));
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        fn finish(&self) -> u64 {
            self.0 ^ (self.0 >> 29)
        }
    }

    /// A map keyed by object address.
    pub type AddrMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<AddrHasher>>;

    /// Every object the kernel creates, keyed by address.
    #[derive(Clone, Default)]
    pub struct FakeStore {
        pub slots: AddrMap<Slot>,
        pub tcbs: AddrMap<Box<Tcb>>,
        /// The scheduling parts of VCpus (a TCB's is in the TCB).
        pub vcpu_heads: AddrMap<Schedulable>,
        pub endpoints: AddrMap<Endpoint>,
        pub notifications: AddrMap<Notification>,
        pub replies: AddrMap<Reply>,
        pub vcpus: AddrMap<Box<crate::vcpu::VcpuData>>,
        pub frames: AddrMap<Box<[u8; 4096]>>,
        pub created: Vec<(ObjectType, u64, u8)>,
    }

    /// Remove the keys of `map` in `[addr, end)`, all multiples of `step`: key by key
    /// for a small object, so that making many stays linear.
    fn drop_keys<V>(map: &mut AddrMap<V>, addr: u64, end: u64, step: u64) {
        let from = addr.next_multiple_of(step);
        if end.saturating_sub(from) / step < map.len() as u64 {
            for a in (from..end).step_by(step as usize) {
                map.remove(&a);
            }
        } else {
            map.retain(|a, _| !(addr..end).contains(a));
        }
    }

    impl PhysMemory for FakeStore {
        fn frame(&mut self, phys: u64) -> &mut [u8; 4096] {
            // As strict as the bare-metal store, which refuses an unaligned frame.
            assert!(phys.is_multiple_of(4096), "frame {phys:#x} is not page-aligned");
            self.frames.entry(phys).or_insert_with(|| Box::new([0; 4096]))
        }
    }

    impl Store for FakeStore {
        fn slot(&mut self, at: u64) -> &mut Slot {
            self.slots.entry(at).or_default()
        }
        fn tcb(&mut self, at: u64) -> &mut Tcb {
            // Stricter than memory: a VCpu is not a thread.
            assert!(!self.vcpu_heads.contains_key(&at), "{at:#x} is a VCpu, not a TCB");
            self.tcbs.entry(at).or_insert_with(|| Box::new(Tcb::default()))
        }
        fn sched(&mut self, at: u64) -> &mut Schedulable {
            if self.vcpu_heads.contains_key(&at) {
                return self.vcpu_heads.entry(at).or_default();
            }
            &mut self.tcb(at).sched
        }
        fn endpoint(&mut self, at: u64) -> &mut Endpoint {
            self.endpoints.entry(at).or_default()
        }
        fn notification(&mut self, at: u64) -> &mut Notification {
            self.notifications.entry(at).or_default()
        }
        fn reply(&mut self, at: u64) -> &mut Reply {
            self.replies.entry(at).or_default()
        }
        fn vcpu(&mut self, at: u64) -> &mut crate::vcpu::VcpuData {
            self.vcpus.entry(at).or_default()
        }
        fn vcpu_and_frame(
            &mut self,
            vcpu: u64,
            frame: u64,
        ) -> (&mut crate::vcpu::VcpuData, &mut [u8; 4096]) {
            assert!(frame.is_multiple_of(4096), "frame {frame:#x} is not page-aligned");
            let page = self.frames.entry(frame).or_insert_with(|| Box::new([0; 4096]));
            (self.vcpus.entry(vcpu).or_default(), page)
        }
        fn create(&mut self, ty: ObjectType, addr: u64, bits: u8) {
            let end = addr + (1u64 << bits);
            // Slots lie on 128-byte boundaries and frames on pages.
            drop_keys(&mut self.slots, addr, end, 128);
            drop_keys(&mut self.frames, addr, end, 4096);
            self.tcbs.remove(&addr);
            self.endpoints.remove(&addr);
            self.notifications.remove(&addr);
            self.replies.remove(&addr);
            self.vcpus.remove(&addr);
            self.vcpu_heads.remove(&addr);
            if ty == ObjectType::VCpu {
                self.vcpu_heads.insert(addr, Schedulable::new(Kind::VCpu));
            }
            self.created.push((ty, addr, bits));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_sizes_never_overflow() {
        use protocols::object::ObjectType;
        for ty in 0..11 {
            let ty = ObjectType::from_raw(ty).unwrap();
            for bits in 0..=u8::MAX {
                if let Some(b) = super::object_bits(ty, bits) {
                    assert!(b <= 47, "{ty:?} {bits}");
                }
            }
        }
    }

    use super::object_bytes;

    #[test]
    fn small_objects_clear_only_their_bytes() {
        let endpoint: Vec<_> = object_bytes(0x8030a40, 6).collect();
        assert_eq!(endpoint, [(0x8030000, 0xa40..0xa80)]);
        let tcb: Vec<_> = object_bytes(0x5000, 12).collect();
        assert_eq!(tcb, [(0x5000, 0..4096)]);
        let vcpu: Vec<_> = object_bytes(0x10000, 15).map(|(p, r)| (p, r.len())).collect();
        assert_eq!(vcpu.len(), 8);
        assert!(vcpu.iter().all(|&(p, n)| n == 4096 && p % 4096 == 0));
    }
}
