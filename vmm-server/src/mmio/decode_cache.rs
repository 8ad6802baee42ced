//! The instructions the MMIO emulator decoded last, by their bytes: a device register is
//! usually reached by the same few instructions (a driver's accessor, a polling loop), and
//! decoding is the largest part of an MMIO exit in the VMM. An x86 instruction's meaning
//! is fixed by its bytes up to its length in a given code size, so a cached decode is
//! reused only when the bytes now at RIP begin with exactly those bytes in that code size:
//! code that changed, or another instruction at the same address, is decoded afresh.

use super::decode::{self, CodeSize, DecodeFailure, Decoded};
use super::fetch::MAX_INSTRUCTION;

/// Instructions kept.
const ENTRIES: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Entry {
    size: CodeSize,
    /// The instruction's bytes as [`Key`], zero past its length.
    bytes: Key,
    /// The bits of a [`Key`] its length covers.
    mask: Key,
    decoded: Decoded,
}

/// Up to 15 instruction bytes, little-endian, in two words: compared with four operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Key(pub(super) u64, pub(super) u64);

impl Key {
    pub(super) fn of(bytes: &[u8; MAX_INSTRUCTION]) -> Self {
        let mut all = [0u8; 16];
        if let Some(to) = all.first_chunk_mut::<MAX_INSTRUCTION>() {
            *to = *bytes;
        }
        let (lo, hi) = all.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        Self(word(lo), word(hi))
    }

    /// The bits of the first `len` (at most 15) bytes.
    pub(super) fn mask(len: u8) -> Self {
        let bits = 8 * u32::from(len.min(15));
        let low = |bits: u32| 1u64.checked_shl(bits).map_or(u64::MAX, |b| b.wrapping_sub(1));
        Self(low(bits), low(bits.saturating_sub(64)))
    }

    pub(super) fn and(self, mask: Self) -> Self {
        Self(self.0 & mask.0, self.1 & mask.1)
    }
}

/// The last [`ENTRIES`] instructions decoded, replaced round robin.
#[derive(Clone, Debug, Default)]
pub struct DecodeCache {
    entries: [Option<Entry>; ENTRIES],
    next: usize,
    hits: u64,
}

impl DecodeCache {
    /// [`decode::decode`] of the first `len` of `bytes` (the bytes fetched at RIP) in
    /// `size`, from the cache when it holds them.
    pub fn decode(
        &mut self,
        bytes: &[u8; MAX_INSTRUCTION],
        len: usize,
        size: CodeSize,
    ) -> Result<Decoded, DecodeFailure> {
        let all = Key::of(bytes);
        for e in self.entries.iter().flatten() {
            if e.size == size && usize::from(e.decoded.len) <= len && all.and(e.mask) == e.bytes {
                self.hits = self.hits.wrapping_add(1);
                return Ok(e.decoded);
            }
        }
        let decoded = decode::decode(bytes.get(..len).unwrap_or_default(), size)?;
        let mask = Key::mask(decoded.len);
        if let Some(slot) = self.entries.get_mut(self.next % ENTRIES) {
            *slot = Some(Entry { size, bytes: all.and(mask), mask, decoded });
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
    use crate::mmio::decode::{decode, CodeSize, DecodeFailure, Decoded};
    use crate::mmio::fetch::MAX_INSTRUCTION;

    /// `bytes` as fetched: padded to 15, with their count.
    fn fetched(
        c: &mut DecodeCache,
        bytes: &[u8],
        size: CodeSize,
    ) -> Result<Decoded, DecodeFailure> {
        let mut all = [0u8; MAX_INSTRUCTION];
        all[..bytes.len()].copy_from_slice(bytes);
        c.decode(&all, bytes.len(), size)
    }

    #[test]
    fn a_cached_decode_is_the_decoders_and_needs_the_same_bytes() {
        let mut c = DecodeCache::default();
        // mov eax, [rbx + 0x10], then whatever follows it in memory.
        let load = [0x8b, 0x43, 0x10, 0xc3, 0x90];
        let want = decode(&load, CodeSize::Bits64);
        assert_eq!(fetched(&mut c, &load, CodeSize::Bits64), want);
        assert_eq!(c.hits(), 0);
        // The bytes past the instruction do not matter; its own bytes and the size do.
        assert_eq!(fetched(&mut c, &[0x8b, 0x43, 0x10, 0xcc], CodeSize::Bits64), want);
        assert_eq!(c.hits(), 1);
        let other = [0x8b, 0x43, 0x18];
        assert_eq!(fetched(&mut c, &other, CodeSize::Bits64), decode(&other, CodeSize::Bits64));
        assert_eq!(c.hits(), 1, "a different displacement is decoded");
        // 8b 43 10 in 16-bit code is mov ax, [bp + di + 0x10]: another instruction.
        assert_eq!(fetched(&mut c, &load, CodeSize::Bits16), decode(&load, CodeSize::Bits16));
        assert_eq!(c.hits(), 1);
        // A 10-byte store: its immediate's last byte is in the second word.
        let store = [0xc7, 0x04, 0x25, 0x30, 0, 0xe0, 0xfe, 0x78, 0x56, 0x34, 0x12];
        let want_store = decode(&store, CodeSize::Bits64);
        assert_eq!(fetched(&mut c, &store, CodeSize::Bits64), want_store);
        let hits = c.hits();
        assert_eq!(fetched(&mut c, &store, CodeSize::Bits64), want_store);
        assert_eq!(c.hits(), hits + 1);
        let mut other = store;
        other[10] = 0x13;
        assert_eq!(fetched(&mut c, &other, CodeSize::Bits64), decode(&other, CodeSize::Bits64));
        assert_ne!(decode(&other, CodeSize::Bits64), want_store);
        assert_eq!(c.hits(), hits + 1, "the last immediate byte differs: decoded");
        // A truncated copy of a cached instruction is no hit.
        assert_eq!(fetched(&mut c, &load[..2], CodeSize::Bits64), Err(DecodeFailure::Truncated));
    }

    #[test]
    fn old_entries_make_room_round_robin() {
        let mut c = DecodeCache::default();
        let insn = |disp: u8| [0x8b, 0x43, disp];
        for d in 0..=ENTRIES as u8 {
            fetched(&mut c, &insn(d), CodeSize::Bits64).unwrap();
        }
        assert_eq!(c.hits(), 0);
        fetched(&mut c, &insn(ENTRIES as u8), CodeSize::Bits64).unwrap();
        assert_eq!(c.hits(), 1, "the newest stays");
        fetched(&mut c, &insn(0), CodeSize::Bits64).unwrap();
        assert_eq!(c.hits(), 1, "the oldest went");
    }
}
