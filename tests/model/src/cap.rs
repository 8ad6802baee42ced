//! Capabilities as the ABI describes them: an object, and for endpoints, notifications
//! and frames the rights and badge of this copy.

use protocols::rights::Rights;

/// One capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Untyped memory: `2^bits` bytes at `base`, the first `free` of them used.
    Untyped { base: u64, bits: u8, free: u64 },
    /// A CNode of `2^radix` slots.
    CNode { addr: u64, radix: u8 },
    /// A thread.
    Tcb { addr: u64 },
    /// An endpoint.
    Endpoint { addr: u64, badge: u64, rights: Rights },
    /// A notification.
    Notification { addr: u64, badge: u64, rights: Rights },
    /// A frame (2 MiB if `large`, else 4 KiB), and where it is mapped.
    Frame { addr: u64, large: bool, rights: Rights, mapped: Option<(u64, u64)> },
    /// An address space.
    VSpace { addr: u64, bits: u8 },
    /// A vCPU.
    VCpu { addr: u64 },
    /// A guest address space.
    GuestSpace { addr: u64, bits: u8 },
    /// I/O ports `first..=last`.
    IoPorts { first: u16, last: u16 },
    /// The authority to hand out IRQ handlers.
    IrqControl,
    /// One IRQ line.
    IrqHandler { irq: u8 },
    /// A Reply object.
    Reply { addr: u64 },
}

/// What a capability names, for "is this the last capability to it".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    /// Memory: its address and kind (nested untyped regions share an address).
    At(u64, u8),
    /// Ports.
    Ports(u16, u16),
    /// IRQ control.
    IrqControl,
    /// An IRQ line.
    Irq(u8),
}

impl Cap {
    /// The object named.
    pub fn object(&self) -> Object {
        match *self {
            Self::Untyped { base, bits, .. } => Object::At(base, 0x80 | bits),
            Self::CNode { addr, .. } => Object::At(addr, 1),
            Self::Tcb { addr } => Object::At(addr, 2),
            Self::Endpoint { addr, .. } => Object::At(addr, 3),
            Self::Notification { addr, .. } => Object::At(addr, 4),
            Self::Frame { addr, .. } => Object::At(addr, 5),
            Self::VSpace { addr, .. } => Object::At(addr, 6),
            Self::VCpu { addr } => Object::At(addr, 7),
            Self::GuestSpace { addr, .. } => Object::At(addr, 8),
            Self::Reply { addr } => Object::At(addr, 12),
            Self::IoPorts { first, last } => Object::Ports(first, last),
            Self::IrqControl => Object::IrqControl,
            Self::IrqHandler { irq } => Object::Irq(irq),
        }
    }

    /// The address of the kernel object named, if it is one.
    pub fn object_addr(&self) -> Option<u64> {
        match self.object() {
            Object::At(a, _) => Some(a),
            _ => None,
        }
    }

    /// A copy with rights cut to `mask`; untyped memory is never copied; a frame copy is
    /// unmapped.
    pub fn derive(&self, mask: Rights) -> Option<Self> {
        Some(match *self {
            Self::Untyped { .. } => return None,
            Self::Endpoint { addr, badge, rights } => {
                Self::Endpoint { addr, badge, rights: rights.intersect(mask) }
            }
            Self::Notification { addr, badge, rights } => {
                Self::Notification { addr, badge, rights: rights.intersect(mask) }
            }
            Self::Frame { addr, large, rights, .. } => {
                Self::Frame { addr, large, rights: rights.intersect(mask), mapped: None }
            }
            other => other,
        })
    }

    /// A badged copy: only of an endpoint or notification that has no badge yet, and
    /// never with badge 0 (which means "none").
    pub fn mint(&self, mask: Rights, badge: u64) -> Option<Self> {
        if badge == 0 {
            return None;
        }
        match self.derive(mask)? {
            Self::Endpoint { addr, badge: 0, rights } => {
                Some(Self::Endpoint { addr, badge, rights })
            }
            Self::Notification { addr, badge: 0, rights } => {
                Some(Self::Notification { addr, badge, rights })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cap;
    use protocols::rights::Rights;

    #[test]
    fn a_badge_is_set_once_and_rights_only_shrink() {
        let ep = Cap::Endpoint { addr: 64, badge: 0, rights: Rights::READ };
        assert_eq!(ep.derive(Rights::ALL), Some(ep));
        let m = ep.mint(Rights::ALL, 5).unwrap();
        assert_eq!(m, Cap::Endpoint { addr: 64, badge: 5, rights: Rights::READ });
        assert_eq!(m.mint(Rights::ALL, 6), None);
        assert_eq!(ep.mint(Rights::ALL, 0), None);
    }
}
