//! The state a restartable VMM commits after each exit it answers, for the VMM started
//! after a crash to take up (`vmm::flags::RESTARTABLE` and `RESTARTED`).
//!
//! The region is a run of frames in the VMM's CNode, which outlives the VMM process: a
//! [`Header`] and then the committed bytes. The bytes are the VM's state exactly as the
//! VMM program holds it, so only the same program can read them; the header names the
//! format, the program that wrote them and their length, and carries a checksum. A
//! restart refuses a region that fails any of these (nothing committed yet, another
//! program, a VMM that scribbled over its state before it died) and stops the VM instead
//! of running on bad state.
//!
//! A commit happens only between exits, after the reply is built and before it is sent,
//! so the committed state is always that of a whole exit: a VMM that dies while it serves
//! an exit leaves the state of the exit before, and the guest, which had not retired the
//! exiting instruction, executes it again and exits again to the new VMM.

use bytemuck::{Pod, Zeroable};

/// "vmstate\0": the first word of a committed region.
pub const MAGIC: u64 = u64::from_le_bytes(*b"vmstate\0");
/// The header's format.
pub const VERSION: u32 = 1;

/// The region's first bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    /// [`MAGIC`] once a commit happened; zero before.
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// Zero.
    pub reserved: u32,
    /// Which program wrote the bytes (its own choice of a value that changes with its
    /// code: a restarted VMM runs the same program, so the values match).
    pub program: u64,
    /// How many bytes follow the header.
    pub len: u64,
    /// [`checksum`] of those bytes.
    pub checksum: u64,
    /// How many commits were made (for the log).
    pub commits: u64,
}

impl Header {
    /// Bytes a header takes at the start of the region.
    pub const SIZE: usize = size_of::<Self>();

    /// The header for `bytes` as `program` commits them, its `commits`th commit.
    pub fn sealed(program: u64, bytes: &[u8], commits: u64) -> Self {
        Self {
            magic: MAGIC,
            version: VERSION,
            reserved: 0,
            program,
            len: bytes.len() as u64,
            checksum: checksum(bytes),
            commits,
        }
    }

    /// Whether `bytes` are what `program` committed under this header.
    pub fn check(&self, program: u64, bytes: &[u8]) -> Result<(), StateError> {
        if self.magic == 0 {
            return Err(StateError::NothingCommitted);
        }
        if self.magic != MAGIC || self.version != VERSION || self.reserved != 0 {
            return Err(StateError::Format { magic: self.magic, version: self.version });
        }
        if self.program != program {
            return Err(StateError::Program { expected: program, found: self.program });
        }
        if self.len != bytes.len() as u64 {
            return Err(StateError::Length { expected: bytes.len() as u64, found: self.len });
        }
        let sum = checksum(bytes);
        if sum != self.checksum {
            return Err(StateError::Checksum { expected: self.checksum, found: sum });
        }
        Ok(())
    }
}

/// Why a restarted VMM refuses the saved state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// The VMM died before it committed anything (before the guest's first exit).
    NothingCommitted,
    /// The header is not one this format writes.
    Format {
        /// The first word found.
        magic: u64,
        /// The version found.
        version: u32,
    },
    /// Another program wrote the state.
    Program {
        /// This program's value.
        expected: u64,
        /// The writer's.
        found: u64,
    },
    /// The state is not as long as this program's.
    Length {
        /// This program's.
        expected: u64,
        /// The header's.
        found: u64,
    },
    /// The bytes changed after the commit that sealed them.
    Checksum {
        /// The header's.
        expected: u64,
        /// The bytes'.
        found: u64,
    },
}

impl core::fmt::Display for StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NothingCommitted => f.write_str("no state was committed before the crash"),
            Self::Format { magic, version } => {
                write!(f, "not a saved state (magic {magic:#x}, version {version})")
            }
            Self::Program { expected, found } => {
                write!(f, "written by another program ({found:#x}, this one is {expected:#x})")
            }
            Self::Length { expected, found } => {
                write!(f, "{found} bytes where this program keeps {expected}")
            }
            Self::Checksum { expected, found } => {
                write!(f, "corrupt: checksum {found:#x} where the last commit sealed {expected:#x}")
            }
        }
    }
}

/// A 64-bit checksum of `bytes`, a word at a time (a commit happens on every exit): each
/// word is mixed in by a multiply and a rotation, so a change to any bit, or swapped
/// words, changes it.
pub fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(x)).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    for (d, s) in tail.iter_mut().zip(words.remainder()) {
        *d = *s;
    }
    (h ^ u64::from_le_bytes(tail)).wrapping_mul(K).rotate_left(29)
}

#[cfg(test)]
mod tests {
    use super::{checksum, Header, StateError, MAGIC};

    const PROGRAM: u64 = 0x40_1234;

    fn state() -> Vec<u8> {
        (0..5000u32).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn a_committed_state_passes_its_check() {
        let bytes = state();
        let h = Header::sealed(PROGRAM, &bytes, 12);
        assert_eq!((h.magic, h.len, h.commits), (MAGIC, 5000, 12));
        assert_eq!(h.check(PROGRAM, &bytes), Ok(()));
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let bytes = state();
        let h = Header::sealed(PROGRAM, &bytes, 1);
        for at in (0..bytes.len()).step_by(97).chain([0, 4999]) {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                assert!(
                    matches!(h.check(PROGRAM, &bad), Err(StateError::Checksum { .. })),
                    "byte {at} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn swapped_words_are_refused() {
        let bytes = state();
        let h = Header::sealed(PROGRAM, &bytes, 1);
        let mut swapped = bytes.clone();
        swapped[0..8].copy_from_slice(&bytes[8..16]);
        swapped[8..16].copy_from_slice(&bytes[0..8]);
        assert_ne!(checksum(&swapped), checksum(&bytes));
        assert!(h.check(PROGRAM, &swapped).is_err());
    }

    #[test]
    fn each_header_fault_is_named() {
        let bytes = state();
        let good = Header::sealed(PROGRAM, &bytes, 1);
        assert_eq!(Header::default().check(PROGRAM, &bytes), Err(StateError::NothingCommitted));
        let bad = Header { version: 2, ..good };
        assert_eq!(
            bad.check(PROGRAM, &bytes),
            Err(StateError::Format { magic: MAGIC, version: 2 })
        );
        let bad = Header { magic: 1, ..good };
        assert!(matches!(bad.check(PROGRAM, &bytes), Err(StateError::Format { magic: 1, .. })));
        let other = StateError::Program { expected: PROGRAM + 1, found: PROGRAM };
        assert_eq!(good.check(PROGRAM + 1, &bytes), Err(other));
        let short = &bytes[..4096];
        let len = StateError::Length { expected: 4096, found: 5000 };
        assert_eq!(good.check(PROGRAM, short), Err(len));
        for e in [StateError::NothingCommitted, other, len] {
            assert!(!e.to_string().is_empty());
        }
        let corrupt = StateError::Checksum { expected: 1, found: 2 };
        assert!(corrupt.to_string().starts_with("corrupt"));
    }
}
