//! Capability rights. A derived capability can only have a subset of its parent's.

/// A set of rights, as a bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rights(u8);

impl Rights {
    /// Read memory / receive on an endpoint.
    pub const READ: Self = Self(1 << 0);
    /// Write memory / send on an endpoint.
    pub const WRITE: Self = Self(1 << 1);
    /// Transfer capabilities along with a message.
    pub const GRANT: Self = Self(1 << 2);
    /// Make a call (send and wait for the reply) on an endpoint.
    pub const CALL: Self = Self(1 << 3);
    /// Map a frame executable.
    pub const EXECUTE: Self = Self(1 << 4);
    /// Every right.
    pub const ALL: Self = Self(0b1_1111);
    /// No right at all.
    pub const NONE: Self = Self(0);

    /// Decode a raw mask; `None` when unknown bits are set.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !Self::ALL.0 == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// The raw mask.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every right in `other` is also in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Every right of either set.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The rights both sets have: how derivation narrows a capability.
    pub const fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Rights;

    #[test]
    fn derivation_never_widens() {
        let parent = Rights::from_bits(0b0101).unwrap();
        let child = parent.intersect(Rights::ALL);
        assert_eq!(child, parent);
        assert!(!child.contains(Rights::WRITE));
        assert!(Rights::ALL.contains(child));
        assert_eq!(Rights::from_bits(0x20), None);
    }
}
