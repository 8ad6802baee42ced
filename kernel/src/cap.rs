//! Capabilities: a reference to a kernel object plus the rights and badge of this copy.
//!
//! A capability is plain data stored in a slot; the kernel alone creates and changes
//! them. Deriving a copy can only narrow rights, and a badge can be set exactly once.

use crate::paging::FrameSize;
use protocols::rights::Rights;

/// A frame's current mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The VSpace object's address.
    pub vspace: u64,
    /// The virtual address.
    pub vaddr: u64,
}

/// One capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cap {
    /// An empty slot.
    #[default]
    Null,
    /// `2^size_bits` bytes of memory at `base`; `free` is the offset of the first byte
    /// not yet retyped.
    Untyped { base: u64, size_bits: u8, free: u64 },
    /// A CNode of `2^radix` slots.
    CNode { addr: u64, radix: u8 },
    /// A thread.
    Tcb { addr: u64 },
    /// An endpoint, with the badge its messages carry.
    Endpoint { addr: u64, badge: u64, rights: Rights },
    /// A notification, with the bits a signal through it sets.
    Notification { addr: u64, badge: u64, rights: Rights },
    /// A frame of 4 KiB or 2 MiB.
    Frame { addr: u64, size: FrameSize, rights: Rights, mapped: Option<Mapping> },
    /// An address space; `size_bits` covers its PML4 and its page-table pool.
    VSpace { addr: u64, size_bits: u8 },
    /// A virtual CPU.
    VCpu { addr: u64 },
    /// A guest-physical address space (EPT PML4 and its table pool).
    GuestSpace { addr: u64, size_bits: u8 },
    /// Host I/O ports `first..=last`, accessed through the kernel (no object behind it).
    IoPorts { first: u16, last: u16 },
    /// The authority to make IRQ handler capabilities (the root task's alone).
    IrqControl,
    /// One IRQ line: bind it to a notification, acknowledge it.
    IrqHandler { irq: u8 },
    /// A Reply object: a caller's reply put aside.
    Reply { addr: u64 },
    /// What is left in a slot whose capability was the last one to a CNode, TCB or VCpu
    /// while the kernel empties that object's `count` slots (from address `first`;
    /// `done` of them so far). `next` is the slot of the zombie below it on the kernel's
    /// finalisation stack (0: none). Never usable; see `finalise`.
    Zombie { first: u64, count: u32, done: u32, next: u64 },
}

impl Cap {
    /// The object this capability names: `(address, type tag)`; `None` for Null.
    pub fn object(&self) -> Option<(u64, u8)> {
        Some(match *self {
            Self::Null => return None,
            // Nested untypeds can share a base address; the size tells them apart.
            Self::Untyped { base, size_bits, .. } => (base, 0x80 | size_bits),
            Self::CNode { addr, .. } => (addr, 1),
            Self::Tcb { addr } => (addr, 2),
            Self::Endpoint { addr, .. } => (addr, 3),
            Self::Notification { addr, .. } => (addr, 4),
            Self::Frame { addr, .. } => (addr, 5),
            Self::VSpace { addr, .. } => (addr, 6),
            Self::VCpu { addr } => (addr, 7),
            Self::GuestSpace { addr, .. } => (addr, 8),
            // Not memory: the "address" only has to tell the resources apart.
            Self::IoPorts { first, last } => ((u64::from(first) << 16) | u64::from(last), 9),
            Self::IrqControl => (0, 10),
            Self::IrqHandler { irq } => (u64::from(irq), 11),
            Self::Reply { addr } => (addr, 12),
            Self::Zombie { first, .. } => (first, 13),
        })
    }

    /// Whether both name the same object.
    pub fn same_object(&self, other: &Self) -> bool {
        self.object().is_some() && self.object() == other.object()
    }

    /// The rights this copy carries (all rights for types without per-copy rights).
    pub fn rights(&self) -> Rights {
        match *self {
            Self::Endpoint { rights, .. }
            | Self::Notification { rights, .. }
            | Self::Frame { rights, .. } => rights,
            Self::Null | Self::Zombie { .. } => Rights::NONE,
            _ => Rights::ALL,
        }
    }

    /// A copy with rights narrowed to `mask`. Untyped memory cannot be copied (each
    /// region has exactly one capability, so retyping can never overlap); a frame copy
    /// starts unmapped.
    pub fn derive(&self, mask: Rights) -> Result<Self, DeriveError> {
        Ok(match *self {
            Self::Null => return Err(DeriveError::Empty),
            Self::Untyped { .. } => return Err(DeriveError::UntypedCopy),
            Self::Zombie { .. } => return Err(DeriveError::Finalising),
            Self::Endpoint { addr, badge, rights } => {
                Self::Endpoint { addr, badge, rights: rights.intersect(mask) }
            }
            Self::Notification { addr, badge, rights } => {
                Self::Notification { addr, badge, rights: rights.intersect(mask) }
            }
            Self::Frame { addr, size, rights, .. } => {
                Self::Frame { addr, size, rights: rights.intersect(mask), mapped: None }
            }
            other => other,
        })
    }

    /// A copy with a badge: only for endpoint and notification capabilities that have
    /// none yet, and a badge of 0 means "unbadged", so it is refused.
    pub fn mint(&self, mask: Rights, badge: u64) -> Result<Self, DeriveError> {
        if badge == 0 {
            return Err(DeriveError::BadBadge);
        }
        match self.derive(mask)? {
            Self::Endpoint { addr, badge: 0, rights } => Ok(Self::Endpoint { addr, badge, rights }),
            Self::Notification { addr, badge: 0, rights } => {
                Ok(Self::Notification { addr, badge, rights })
            }
            Self::Endpoint { addr, rights, .. } if planted!(RemintChangesBadge) => {
                Ok(Self::Endpoint { addr, badge, rights })
            }
            Self::Endpoint { .. } | Self::Notification { .. } => Err(DeriveError::AlreadyBadged),
            _ => Err(DeriveError::NotBadgeable),
        }
    }
}

/// Why a capability could not be derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeriveError {
    /// The source slot is empty.
    Empty,
    /// Untyped capabilities are moved, never copied.
    UntypedCopy,
    /// Only endpoints and notifications carry badges.
    NotBadgeable,
    /// The capability already has a badge.
    AlreadyBadged,
    /// Badge 0 is reserved for "no badge".
    BadBadge,
    /// The slot holds an object being finalised, not a capability.
    Finalising,
}

#[cfg(test)]
mod tests {
    use super::{Cap, DeriveError};
    use protocols::rights::Rights;

    #[test]
    fn derivation_narrows_and_never_widens() {
        let ep = Cap::Endpoint { addr: 0x1000, badge: 0, rights: Rights::READ };
        let copy = ep.derive(Rights::ALL).unwrap();
        assert_eq!(copy.rights(), Rights::READ, "asking for more than the parent has");
        assert_eq!(ep.derive(Rights::NONE).unwrap().rights(), Rights::NONE);
        assert!(copy.same_object(&ep));
    }

    #[test]
    fn badges_are_set_once() {
        let ep = Cap::Endpoint { addr: 0x1000, badge: 0, rights: Rights::ALL };
        let minted = ep.mint(Rights::ALL, 7).unwrap();
        assert_eq!(minted, Cap::Endpoint { addr: 0x1000, badge: 7, rights: Rights::ALL });
        assert_eq!(minted.mint(Rights::ALL, 8), Err(DeriveError::AlreadyBadged));
        assert_eq!(ep.mint(Rights::ALL, 0), Err(DeriveError::BadBadge));
        assert_eq!(Cap::Tcb { addr: 0 }.mint(Rights::ALL, 1), Err(DeriveError::NotBadgeable));
    }

    #[test]
    fn untyped_is_never_copied() {
        let ut = Cap::Untyped { base: 0, size_bits: 20, free: 0 };
        assert_eq!(ut.derive(Rights::ALL), Err(DeriveError::UntypedCopy));
        assert_eq!(Cap::Null.derive(Rights::ALL), Err(DeriveError::Empty));
    }

    #[test]
    fn identity_tells_apart_objects_that_share_an_address() {
        // Nested untyped regions can start at one address; the size tells them apart.
        let outer = Cap::Untyped { base: 0x10000, size_bits: 16, free: 0 };
        let inner = Cap::Untyped { base: 0x10000, size_bits: 12, free: 0 };
        assert!(outer.same_object(&outer) && !outer.same_object(&inner));
        // Port ranges are told apart by both ends.
        let keyboard = Cap::IoPorts { first: 0x60, last: 0x64 };
        assert!(keyboard.same_object(&Cap::IoPorts { first: 0x60, last: 0x64 }));
        assert!(!keyboard.same_object(&Cap::IoPorts { first: 0x61, last: 0x64 }));
        assert!(!keyboard.same_object(&Cap::IoPorts { first: 0x60, last: 0x65 }));
        // Objects of different types at one address are different objects.
        assert!(!Cap::Tcb { addr: 0x5000 }.same_object(&Cap::VCpu { addr: 0x5000 }));
        // An empty slot names nothing, not even what another empty slot names.
        assert!(!Cap::Null.same_object(&Cap::Null));
    }

    #[test]
    fn an_empty_slot_and_a_zombie_carry_no_rights() {
        assert_eq!(Cap::Null.rights(), Rights::NONE);
        let zombie = Cap::Zombie { first: 0x1000, count: 4, done: 0, next: 0 };
        assert_eq!(zombie.rights(), Rights::NONE);
        assert_eq!(Cap::Tcb { addr: 0x1000 }.rights(), Rights::ALL);
    }
}
