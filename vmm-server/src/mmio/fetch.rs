//! Fetching the bytes of the instruction that made an MMIO access, from guest RAM through
//! the guest's own page tables.
//!
//! An x86 instruction is at most 15 bytes and may cross a page boundary; the two pages
//! are translated separately (they need not be adjacent in guest-physical memory). Bytes
//! past the instruction's end may lie in a page that is not mapped, so a failure on the
//! second page is only reported when the decoder needs bytes from it.

use crate::guest_memory::GuestMemory;
use crate::paging::{translate, translate_recorded, PagingMode, TranslateError, WalkRecord};

/// The longest x86 instruction.
pub const MAX_INSTRUCTION: usize = 15;

const PAGE: u64 = 0x1000;
const PAGE_OFFSET: u64 = 0xfff;

/// Why instruction bytes could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The guest's page tables do not map this linear address of the instruction.
    NotPresent {
        /// The linear address.
        linear: u64,
    },
    /// The instruction (or a page table on the way) lies at guest-physical memory the
    /// VMM does not see as RAM.
    Memory {
        /// The guest-physical address.
        gpa: u64,
    },
}

impl From<TranslateError> for FetchError {
    fn from(e: TranslateError) -> Self {
        match e {
            TranslateError::NotPresent { linear } => Self::NotPresent { linear },
            TranslateError::Memory(m) => Self::Memory { gpa: m.gpa },
        }
    }
}

/// Instruction bytes as fetched: those read, and why reading stopped early, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The buffer; the first `len` bytes are valid.
    pub bytes: [u8; MAX_INSTRUCTION],
    /// Bytes read.
    pub len: usize,
    /// The error that ended the fetch before 15 bytes (a later page not readable).
    pub stopped: Option<FetchError>,
    /// The first byte's guest-physical address.
    pub gpa: u64,
    /// How many of the bytes lie in the first byte's page.
    pub in_page: usize,
    /// The first page's walk.
    pub walk: WalkRecord,
}

impl Fetched {
    /// The bytes read.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// Read up to 15 instruction bytes at `linear` under paging `mode` with root `cr3`.
/// Outside 64-bit code (`wrap32`) linear addresses wrap at 4 GiB. Fails only when not
/// even the first byte can be read.
pub fn fetch(
    mem: &impl GuestMemory,
    mode: PagingMode,
    cr3: u64,
    linear: u64,
    wrap32: bool,
) -> Result<Fetched, FetchError> {
    let mut out = Fetched {
        bytes: [0; MAX_INSTRUCTION],
        len: 0,
        stopped: None,
        gpa: 0,
        in_page: 0,
        walk: WalkRecord::default(),
    };
    while out.len < MAX_INSTRUCTION {
        let at = linear.wrapping_add(out.len as u64);
        let at = if wrap32 { at & 0xffff_ffff } else { at };
        let in_page = PAGE.wrapping_sub(at & PAGE_OFFSET);
        let chunk = (MAX_INSTRUCTION.wrapping_sub(out.len) as u64).min(in_page) as usize;
        let end = out.len.saturating_add(chunk);
        let first = out.len == 0;
        let t = if first {
            translate_recorded(mem, mode, cr3, at, &mut out.walk)
        } else {
            translate(mem, mode, cr3, at)
        };
        let read = t.map_err(FetchError::from).and_then(|t| {
            if first {
                out.gpa = t.gpa;
                out.in_page = chunk;
            }
            let buf = out.bytes.get_mut(out.len..end).unwrap_or_default();
            mem.read(t.gpa, buf).map_err(|m| FetchError::Memory { gpa: m.gpa })
        });
        match read {
            Ok(()) => out.len = end,
            Err(e) if out.len == 0 => return Err(e),
            Err(e) => {
                out.stopped = Some(e);
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{fetch, FetchError, MAX_INSTRUCTION};
    use crate::guest_memory::{GuestMemory, SliceMemory};
    use crate::paging::PagingMode;

    #[test]
    fn reads_fifteen_bytes_without_paging() {
        let mut ram: Vec<u8> = (0..0x2000u32).map(|i| i as u8).collect();
        let m = SliceMemory::new(0, &mut ram);
        let f = fetch(&m, PagingMode::Disabled, 0, 0x100, true).unwrap();
        assert_eq!(f.len, MAX_INSTRUCTION);
        assert_eq!(f.bytes()[0], 0x00);
        assert_eq!(f.bytes()[14], 0x0e);
        assert_eq!(f.stopped, None);
        // Across a page boundary, physically contiguous.
        let f = fetch(&m, PagingMode::Disabled, 0, 0xffa, true).unwrap();
        assert_eq!(f.bytes(), &(0xfau32..0x109).map(|i| i as u8).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn crossing_into_a_missing_page_keeps_what_was_read() {
        let mut ram = vec![0x90u8; 0x1000];
        let m = SliceMemory::new(0, &mut ram);
        let f = fetch(&m, PagingMode::Disabled, 0, 0xffc, true).unwrap();
        assert_eq!(f.len, 4);
        assert_eq!(f.stopped, Some(FetchError::Memory { gpa: 0x1000 }));
        assert_eq!(
            fetch(&m, PagingMode::Disabled, 0, 0x1000, true),
            Err(FetchError::Memory { gpa: 0x1000 })
        );
    }

    #[test]
    fn pages_are_translated_one_by_one() {
        let mut ram = vec![0u8; 0x10000];
        let mut m = SliceMemory::new(0, &mut ram);
        // 4-level tables at 0x1000..0x4000; linear page 0x40_0000 -> 0x8000 and
        // 0x40_1000 -> 0x6000 (not adjacent); 0x40_2000 not present.
        m.write(0x1000, &(0x2000u64 | 3).to_le_bytes()).unwrap();
        m.write(0x2000, &(0x3000u64 | 3).to_le_bytes()).unwrap();
        m.write(0x3000 + 2 * 8, &(0x4000u64 | 3).to_le_bytes()).unwrap();
        m.write(0x4000, &(0x8000u64 | 3).to_le_bytes()).unwrap();
        m.write(0x4008, &(0x6000u64 | 3).to_le_bytes()).unwrap();
        m.write(0x8ffe, &[0x8b, 0x05]).unwrap();
        m.write(0x6000, &[0x30, 0x00, 0xe0, 0xfe]).unwrap();
        let f = fetch(&m, PagingMode::Long4, 0x1000, 0x40_0ffe, false).unwrap();
        assert_eq!(f.bytes()[..6], [0x8b, 0x05, 0x30, 0x00, 0xe0, 0xfe]);
        assert_eq!(f.len, MAX_INSTRUCTION);
        let f = fetch(&m, PagingMode::Long4, 0x1000, 0x40_1ffe, false).unwrap();
        assert_eq!((f.len, f.stopped), (2, Some(FetchError::NotPresent { linear: 0x40_2000 })));
        assert_eq!(
            fetch(&m, PagingMode::Long4, 0x1000, 0x40_2000, false),
            Err(FetchError::NotPresent { linear: 0x40_2000 })
        );
    }
}
