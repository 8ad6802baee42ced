//! The instructions the MMIO emulator decoded last, by their bytes: a device register is
//! usually reached by the same few instructions (a driver's accessor, a polling loop), and
//! decoding is the largest part of an MMIO exit in the VMM. An x86 instruction's meaning
//! is fixed by its bytes up to its length in a given code size, so a cached decode is
//! reused only when the bytes now at RIP begin with exactly those bytes in that code size:
//! code that changed, or another instruction at the same address, is decoded afresh.

use super::decode::{self, CodeSize, DecodeFailure, Decoded};

/// Instructions kept.
const ENTRIES: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Entry {
    size: CodeSize,
    bytes: [u8; 16],
    decoded: Decoded,
}

/// The last [`ENTRIES`] instructions decoded, replaced round robin.
#[derive(Clone, Debug, Default)]
pub struct DecodeCache {
    entries: [Option<Entry>; ENTRIES],
    next: usize,
    hits: u64,
}

impl DecodeCache {
    /// [`decode::decode`] of `bytes` in `size`, from the cache when it holds them.
    pub fn decode(&mut self, bytes: &[u8], size: CodeSize) -> Result<Decoded, DecodeFailure> {
        for e in self.entries.iter().flatten() {
            let len = usize::from(e.decoded.len);
            if e.size == size && bytes.get(..len).is_some_and(|b| Some(b) == e.bytes.get(..len)) {
                self.hits = self.hits.wrapping_add(1);
                return Ok(e.decoded);
            }
        }
        let decoded = decode::decode(bytes, size)?;
        let mut kept = [0u8; 16];
        let len = usize::from(decoded.len).min(kept.len());
        if let (Some(to), Some(from)) = (kept.get_mut(..len), bytes.get(..len)) {
            to.copy_from_slice(from);
        }
        if let Some(slot) = self.entries.get_mut(self.next % ENTRIES) {
            *slot = Some(Entry { size, bytes: kept, decoded });
        }
        self.next = self.next.wrapping_add(1);
        Ok(decoded)
    }

    /// Decodes served from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }
}

#[cfg(test)]
mod tests {
    use super::{DecodeCache, ENTRIES};
    use crate::mmio::decode::{decode, CodeSize, DecodeFailure};

    #[test]
    fn a_cached_decode_is_the_decoders_and_needs_the_same_bytes() {
        let mut c = DecodeCache::default();
        // mov eax, [rbx + 0x10], then whatever follows it in memory.
        let load = [0x8b, 0x43, 0x10, 0xc3, 0x90];
        let want = decode(&load, CodeSize::Bits64);
        assert_eq!(c.decode(&load, CodeSize::Bits64), want);
        assert_eq!(c.hits(), 0);
        // The bytes past the instruction do not matter; its own bytes and the size do.
        assert_eq!(c.decode(&[0x8b, 0x43, 0x10, 0xcc], CodeSize::Bits64), want);
        assert_eq!(c.hits(), 1);
        let other = [0x8b, 0x43, 0x18];
        assert_eq!(c.decode(&other, CodeSize::Bits64), decode(&other, CodeSize::Bits64));
        assert_eq!(c.hits(), 1, "a different displacement is decoded");
        // 8b 43 10 in 16-bit code is mov ax, [bp + di + 0x10]: another instruction.
        assert_eq!(c.decode(&load, CodeSize::Bits16), decode(&load, CodeSize::Bits16));
        assert_eq!(c.hits(), 1);
        // A truncated copy of a cached instruction is no hit.
        assert_eq!(c.decode(&load[..2], CodeSize::Bits64), Err(DecodeFailure::Truncated));
    }

    #[test]
    fn old_entries_make_room_round_robin() {
        let mut c = DecodeCache::default();
        let insn = |disp: u8| [0x8b, 0x43, disp];
        for d in 0..=ENTRIES as u8 {
            c.decode(&insn(d), CodeSize::Bits64).unwrap();
        }
        assert_eq!(c.hits(), 0);
        c.decode(&insn(ENTRIES as u8), CodeSize::Bits64).unwrap();
        assert_eq!(c.hits(), 1, "the newest stays");
        c.decode(&insn(0), CodeSize::Bits64).unwrap();
        assert_eq!(c.hits(), 1, "the oldest went");
    }
}
