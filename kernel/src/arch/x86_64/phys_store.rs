//! The kernel-object store on bare metal: objects are read and written in place through
//! the physical-memory window, at the addresses their capabilities name.

use super::memory::{frame_at, PhysMap, PHYS_OFFSET};
use kernel::cnode::{Slot, SLOT_BITS};
use kernel::endpoint::Endpoint;
use kernel::notification::Notification;
use kernel::paging::PhysMemory;
use kernel::reply::Reply;
use kernel::schedulable::{Kind, Schedulable};
use kernel::store::{object_bytes, tcb_slot, vcpu_slot, Store, TcbSlot, VCpuSlot, VCPU_SLOTS};
use kernel::tcb::{Tcb, SCHED_OFFSET};
use kernel::vcpu::{VcpuData, DATA_OFFSET};
use protocols::object::ObjectType;

/// The store. The kernel is single-threaded and holds at most one borrow from it at a
/// time, so the `&mut` references it hands out never alias.
pub struct PhysStore;

/// A typed reference to the object at physical address `phys`.
///
/// # Safety
/// `phys` must hold a live, initialised `T` (created by `Store::create` or at boot),
/// suitably aligned, inside the physical window, and no other reference to it may exist.
unsafe fn object<T>(phys: u64) -> &'static mut T {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *((PHYS_OFFSET + phys) as *mut T) }
}

impl PhysMemory for PhysStore {
    fn frame(&mut self, phys: u64) -> &mut [u8; 4096] {
        // SAFETY: `&mut self` is unique and the kernel holds one borrow at a time.
        unsafe { frame_at(phys) }
    }
}

impl Store for PhysStore {
    fn slot(&mut self, at: u64) -> &mut Slot {
        // SAFETY: slot addresses come from CNode/TCB capabilities the kernel made; every
        // slot was initialised when its object was created, and `&mut self` is unique.
        unsafe { object(at) }
    }

    fn tcb(&mut self, at: u64) -> &mut Tcb {
        // SAFETY: as for `slot`: `at` is the address of a TCB object.
        unsafe { object(at) }
    }

    fn sched(&mut self, at: u64) -> &mut Schedulable {
        // SAFETY: as for `slot`: `at` is the address of a TCB or a VCpu, and both hold
        // their `Schedulable` at `SCHED_OFFSET` (a TCB's field; written so for a VCpu).
        unsafe { object(at + SCHED_OFFSET) }
    }

    fn endpoint(&mut self, at: u64) -> &mut Endpoint {
        // SAFETY: as for `slot`: `at` is the address of an endpoint object.
        unsafe { object(at) }
    }

    fn notification(&mut self, at: u64) -> &mut Notification {
        // SAFETY: as for `slot`: `at` is the address of a notification object.
        unsafe { object(at) }
    }

    fn reply(&mut self, at: u64) -> &mut Reply {
        // SAFETY: as for `slot`: `at` is the address of a Reply object.
        unsafe { object(at) }
    }

    fn vcpu(&mut self, at: u64) -> &mut VcpuData {
        // SAFETY: as for `slot`: `at` is the address of a VCpu object, whose data page
        // was initialised when it was created.
        unsafe { object(at + DATA_OFFSET) }
    }

    fn vcpu_and_frame(&mut self, vcpu: u64, frame: u64) -> (&mut VcpuData, &mut [u8; 4096]) {
        // SAFETY: as for `vcpu` and `frame`; a VCpu and a Frame are distinct objects
        // (retyping never hands out memory twice), so the two borrows never overlap.
        unsafe { (object(vcpu + DATA_OFFSET), frame_at(frame)) }
    }

    fn create(&mut self, ty: ObjectType, addr: u64, bits: u8) {
        // Untyped memory is zeroed when something is made from it, not when carved.
        if ty != ObjectType::Untyped {
            for (page, bytes) in object_bytes(addr, bits) {
                if let Some(b) = PhysMap.frame(page).get_mut(bytes) {
                    b.fill(0);
                }
            }
        }
        let init_slots = |first: u64, n: u64| {
            for i in 0..n {
                let p = (PHYS_OFFSET + first + (i << SLOT_BITS)) as *mut Slot;
                // SAFETY: the slot lies in the object just zeroed, which the retype gave
                // to the kernel exclusively; writing initialises it.
                unsafe { p.write(Slot::default()) }
            }
        };
        match ty {
            ObjectType::Tcb => {
                // SAFETY: a fresh, exclusively owned, 4 KiB-aligned TCB object.
                unsafe { ((PHYS_OFFSET + addr) as *mut Tcb).write(Tcb::default()) }
                init_slots(tcb_slot(addr, TcbSlot::CSpace), TcbSlot::ALL.len() as u64);
            }
            ObjectType::CNode => init_slots(addr, 1u64 << (bits - SLOT_BITS)),
            ObjectType::Endpoint => {
                // SAFETY: a fresh, exclusively owned, aligned endpoint object.
                unsafe { ((PHYS_OFFSET + addr) as *mut Endpoint).write(Endpoint::default()) }
            }
            ObjectType::Notification => {
                // SAFETY: a fresh, exclusively owned, aligned notification object.
                unsafe {
                    ((PHYS_OFFSET + addr) as *mut Notification).write(Notification::default())
                }
            }
            ObjectType::VCpu => {
                let head = (PHYS_OFFSET + addr + SCHED_OFFSET) as *mut Schedulable;
                // SAFETY: a fresh, exclusively owned, aligned VCpu object; its scheduling
                // part lies where a TCB's does and its data page follows the VMCS.
                unsafe {
                    head.write(Schedulable::new(Kind::VCpu));
                    ((PHYS_OFFSET + addr + DATA_OFFSET) as *mut VcpuData)
                        .write(VcpuData::default());
                }
                init_slots(vcpu_slot(addr, VCpuSlot::GuestSpace), VCPU_SLOTS as u64);
            }
            ObjectType::Reply => {
                // SAFETY: a fresh, exclusively owned, aligned Reply object.
                unsafe { ((PHYS_OFFSET + addr) as *mut Reply).write(Reply::default()) }
            }
            ObjectType::Untyped
            | ObjectType::Frame
            | ObjectType::LargeFrame
            | ObjectType::VSpace
            | ObjectType::GuestSpace => {}
        }
    }
}
