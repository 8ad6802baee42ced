//! The instructions that made the last MMIO exits, by where they are: a device register
//! is mostly reached by the same few instructions, from the same addresses, so the VMM
//! keeps each one's decode with what it took to find it (the paging-structure entries the
//! walk read, and the instruction's guest-physical address) and, at the next exit from
//! that address, checks instead of redoing: the entries must still hold what the walk read
//! (then a walk would give the same translation: [`WalkRecord::holds`]) and the bytes at
//! that address must still be the instruction's. Nothing is trusted that the guest could
//! have changed, so nothing ever needs to be invalidated: a remapped page, a rewritten
//! page table or new code at the address simply fails the check, and the exit takes the
//! full path (fetch, then [`super::decode_cache`]).

use super::decode::{CodeSize, Decoded};
use super::decode_cache::Key;
use super::fetch::Fetched;
use crate::guest_memory::GuestMemory;
use crate::paging::{PagingMode, WalkRecord};

/// Instructions kept.
const ENTRIES: usize = 4;

/// Where an instruction was met: the address space, the linear address of its first
/// byte, and the modes that decide the walk and the decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// CR3.
    pub cr3: u64,
    /// The instruction's linear address.
    pub linear: u64,
    /// The paging mode.
    pub mode: PagingMode,
    /// The code size.
    pub size: CodeSize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    site: Site,
    walk: WalkRecord,
    /// The instruction's guest-physical address.
    gpa: u64,
    /// Its bytes, zero past its length, and the bits its length covers.
    bytes: Key,
    mask: Key,
    decoded: Decoded,
}

/// The last [`ENTRIES`] instructions kept, replaced round robin.
#[derive(Clone, Debug, Default)]
pub struct SiteCache {
    entries: [Option<Entry>; ENTRIES],
    next: usize,
    hits: u64,
}

impl SiteCache {
    /// The decode of the instruction at `site`, if one is kept there and both its walk
    /// and its bytes still hold in `mem`.
    pub fn find(&mut self, site: &Site, mem: &impl GuestMemory) -> Option<Decoded> {
        let e = self.entries.iter().flatten().find(|e| e.site == *site)?;
        let lo = mem.read_u64(e.gpa).ok()?;
        let hi = mem.read_u64(e.gpa.wrapping_add(8)).ok()?;
        if Key(lo, hi).and(e.mask) != e.bytes || !e.walk.holds(mem) {
            return None;
        }
        self.hits = self.hits.wrapping_add(1);
        Some(e.decoded)
    }

    /// Keep `decoded`, the instruction `fetched` at `site`, unless it crosses a page (its
    /// second page's walk is not recorded).
    pub fn keep(&mut self, site: Site, fetched: &Fetched, decoded: Decoded) {
        let len = usize::from(decoded.len);
        if len > fetched.in_page {
            return;
        }
        let mask = Key::mask(decoded.len);
        let bytes = Key::of(&fetched.bytes).and(mask);
        let entry = Entry { site, walk: fetched.walk, gpa: fetched.gpa, bytes, mask, decoded };
        // One entry per site ([`SiteCache::find`] looks at the first that matches): one
        // that failed its check is replaced where it is.
        let same = self.entries.iter().position(|e| e.is_some_and(|e| e.site == site));
        let at = same.unwrap_or(self.next % ENTRIES);
        if same.is_none() {
            self.next = self.next.wrapping_add(1);
        }
        if let Some(slot) = self.entries.get_mut(at) {
            *slot = Some(entry);
        }
    }

    /// Decodes served from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }
}

#[cfg(test)]
mod tests {
    use super::{Site, SiteCache};
    use crate::guest_memory::{GuestMemory, SliceMemory};
    use crate::mmio::decode::{decode, CodeSize};
    use crate::mmio::fetch::fetch;
    use crate::paging::PagingMode;

    const CR3: u64 = 0x1000;
    /// 4-level tables at 0x1000-0x4fff map linear 0x40_0000 (4 KiB page) to `CODE`.
    const LINEAR: u64 = 0x40_0000;
    const CODE: u64 = 0x6000;
    const OTHER: u64 = 0x7000;
    const PTE: u64 = 0x4000;
    /// mov eax, [rbx + 0x10]; and mov [rbx + 0x10], eax.
    const LOAD: [u8; 3] = [0x8b, 0x43, 0x10];
    const STORE: [u8; 3] = [0x89, 0x43, 0x10];

    fn tables(m: &mut SliceMemory<'_>) {
        for (at, v) in [(0x1000, 0x2003), (0x2000, 0x3003), (0x3000 + 2 * 8, 0x4003u64)] {
            m.write(at, &u64::to_le_bytes(v)).unwrap();
        }
        m.write(PTE, &(CODE | 3).to_le_bytes()).unwrap();
        m.write(CODE + 0x10, &LOAD).unwrap();
        m.write(OTHER + 0x10, &STORE).unwrap();
    }

    fn site(linear: u64) -> Site {
        Site { cr3: CR3, linear, mode: PagingMode::Long4, size: CodeSize::Bits64 }
    }

    /// The full path: fetch, decode, keep.
    fn slow(c: &mut SiteCache, m: &SliceMemory<'_>, s: Site) {
        let f = fetch(m, s.mode, s.cr3, s.linear, false).unwrap();
        let d = decode(f.bytes(), s.size).unwrap();
        c.keep(s, &f, d);
    }

    #[test]
    fn a_kept_instruction_is_found_while_its_walk_and_bytes_hold() {
        let mut ram = vec![0u8; 0x10000];
        let mut m = SliceMemory::new(0, &mut ram);
        tables(&mut m);
        let mut c = SiteCache::default();
        let s = site(LINEAR + 0x10);
        assert_eq!(c.find(&s, &m), None, "nothing kept yet");
        slow(&mut c, &m, s);
        let load = decode(&LOAD, CodeSize::Bits64).ok();
        assert_eq!(c.find(&s, &m), load);
        assert_eq!(c.hits(), 1);
        // Another address space, address or code size is another site.
        assert_eq!(c.find(&Site { cr3: 0x9000, ..s }, &m), None);
        assert_eq!(c.find(&site(LINEAR + 0x11), &m), None);
        assert_eq!(c.find(&Site { size: CodeSize::Bits32, ..s }, &m), None);
        // New code at the address: not found (the full path decodes it).
        m.write(CODE + 0x10, &STORE).unwrap();
        assert_eq!(c.find(&s, &m), None);
        m.write(CODE + 0x10, &LOAD).unwrap();
        assert_eq!(c.find(&s, &m), load);
        // The page remapped to other code: the walk no longer holds.
        m.write(PTE, &(OTHER | 3).to_le_bytes()).unwrap();
        assert_eq!(c.find(&s, &m), None);
        slow(&mut c, &m, s);
        assert_eq!(c.find(&s, &m), decode(&STORE, CodeSize::Bits64).ok());
        // A page-table entry higher up changed (even to an equal mapping): walked again.
        m.write(0x1000, &0x2007u64.to_le_bytes()).unwrap();
        assert_eq!(c.find(&s, &m), None);
    }

    #[test]
    fn an_instruction_across_a_page_is_not_kept() {
        let mut ram = vec![0u8; 0x10000];
        let mut m = SliceMemory::new(0, &mut ram);
        tables(&mut m);
        // The next page (linear 0x401000) maps to 0x8000; the load's last byte is there.
        m.write(PTE + 8, &0x8003u64.to_le_bytes()).unwrap();
        m.write(CODE + 0xffe, &LOAD[..2]).unwrap();
        m.write(0x8000, &LOAD[2..]).unwrap();
        let mut c = SiteCache::default();
        let s = site(LINEAR + 0xffe);
        slow(&mut c, &m, s);
        assert_eq!(c.find(&s, &m), None);
    }
}
