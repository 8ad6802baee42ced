//! Where the kernel keeps slots and how large objects are: a retype's result and where a
//! transferred capability lands depend on these, so the model states them too (once,
//! here, from the kernel's documented layout).

use protocols::object::ObjectType;

/// log2 of a slot's size.
pub const SLOT_BITS: u8 = 7;
/// Where a TCB's own slots start inside it.
pub const TCB_SLOTS_OFFSET: u64 = 2048;
/// How many slots a TCB has.
pub const TCB_SLOTS: u64 = 4;
/// Where a VCpu's own slots start inside it.
pub const VCPU_SLOTS_OFFSET: u64 = 2048;
/// How many slots a VCpu has: guest space, message frame and exit endpoint, then four
/// port pass-through slots.
pub const VCPU_SLOTS: u64 = 3 + 4;

/// A TCB's own slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcbSlot {
    /// The CSpace root.
    CSpace = 0,
    /// The address space.
    VSpace = 1,
    /// The fault endpoint.
    FaultEndpoint = 2,
    /// The IPC buffer frame.
    IpcBuffer = 3,
}

/// A VCpu's own slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VCpuSlot {
    /// The guest's address space.
    GuestSpace = 0,
    /// The frame the exit and the reply travel through.
    MessageFrame = 1,
    /// Where its exits go.
    ExitEndpoint = 2,
}

/// A VCpu's slot `which`.
pub const fn vcpu_slot(vcpu: u64, which: VCpuSlot) -> u64 {
    vcpu + VCPU_SLOTS_OFFSET + ((which as u64) << SLOT_BITS)
}

/// Slot `index` of the CNode at `cnode`.
pub const fn cnode_slot(cnode: u64, index: u64) -> u64 {
    cnode + (index << SLOT_BITS)
}

/// A TCB's slot `which`.
pub const fn tcb_slot(tcb: u64, which: TcbSlot) -> u64 {
    tcb + TCB_SLOTS_OFFSET + ((which as u64) << SLOT_BITS)
}

/// log2 of the size of an object of type `ty` asked for with `size_bits`, if valid.
pub fn object_bits(ty: ObjectType, size_bits: u8) -> Option<u8> {
    match ty {
        ObjectType::Untyped => (12..=47).contains(&size_bits).then_some(size_bits),
        ObjectType::CNode => (1..=16).contains(&size_bits).then(|| size_bits + SLOT_BITS),
        ObjectType::Tcb | ObjectType::Frame => Some(12),
        ObjectType::LargeFrame => Some(21),
        ObjectType::Endpoint | ObjectType::Notification => Some(6),
        ObjectType::VSpace | ObjectType::GuestSpace => {
            (14..=24).contains(&size_bits).then_some(size_bits)
        }
        ObjectType::VCpu => Some(15),
        ObjectType::Reply => Some(4),
    }
}
