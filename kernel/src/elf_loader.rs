//! Validation of user ELF images before anything is mapped.
//!
//! A boot module is untrusted bytes. `plan` checks everything the kernel relies on
//! (class, machine, type, every segment inside the file and inside the user half, no
//! overlaps, no writable+executable pages, entry point in an executable segment) and
//! returns a load plan; mapping it cannot then fail on the image's account.

use core::fmt;

use heapless::Vec;
use protocols::layout::{PAGE_SIZE, USER_MAP_END, USER_MIN};
use xmas_elf::header::{Class, Data, Machine, Type};
use xmas_elf::program::{ProgramHeader, Type as PhType};
use xmas_elf::ElfFile;

/// The most loadable segments an image may have.
pub const MAX_SEGMENTS: usize = 8;

const ELF_HEADER_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than an ELF header, or the program-header table runs past the end.
    Truncated,
    /// Not an ELF file at all (the parser's reason).
    NotElf(&'static str),
    /// Not a 64-bit little-endian image.
    WrongClass,
    /// Built for another machine (the `e_machine` value).
    WrongMachine(u16),
    /// Not a static executable (`ET_EXEC`).
    NotExecutable,
    /// The image or its program-header table is not 8-byte aligned.
    Misaligned,
    /// A program header has an unknown layout.
    BadProgramHeader { index: usize },
    /// No loadable segment.
    NoSegments,
    /// More loadable segments than [`MAX_SEGMENTS`].
    TooManySegments,
    /// A segment's bytes lie outside the file.
    SegmentOutsideFile { index: usize },
    /// A segment has more file bytes than memory bytes.
    FileLargerThanMemory { index: usize },
    /// A segment reaches into kernel space (the upper half) or wraps around.
    OverlapsKernel { index: usize, vaddr: u64 },
    /// A segment starts below the lowest user address (page 0 stays unmapped).
    BelowUserSpace { index: usize, vaddr: u64 },
    /// Two segments share a page.
    SegmentsOverlap { first: usize, second: usize },
    /// A segment is both writable and executable.
    WritableAndExecutable { index: usize },
    /// The entry point is not inside an executable segment.
    BadEntry(u64),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated => write!(f, "truncated ELF (headers run past the end of the module)"),
            Self::NotElf(why) => write!(f, "not an ELF image: {why}"),
            Self::WrongClass => write!(f, "not a 64-bit little-endian ELF"),
            Self::WrongMachine(m) => write!(f, "wrong machine {m:#x} (expected x86-64, 0x3e)"),
            Self::NotExecutable => write!(f, "not a static executable (ET_EXEC)"),
            Self::Misaligned => write!(f, "image or program-header table not 8-byte aligned"),
            Self::BadProgramHeader { index } => write!(f, "program header {index} is malformed"),
            Self::NoSegments => write!(f, "no loadable segment"),
            Self::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            Self::SegmentOutsideFile { index } => {
                write!(f, "segment {index} lies outside the file")
            }
            Self::FileLargerThanMemory { index } => {
                write!(f, "segment {index} has a file size above its memory size")
            }
            Self::OverlapsKernel { index, vaddr } => {
                write!(f, "segment {index} at {vaddr:#x} overlaps kernel space")
            }
            Self::BelowUserSpace { index, vaddr } => {
                write!(f, "segment {index} at {vaddr:#x} lies below {USER_MIN:#x}")
            }
            Self::SegmentsOverlap { first, second } => {
                write!(f, "segments {first} and {second} overlap")
            }
            Self::WritableAndExecutable { index } => {
                write!(f, "segment {index} is writable and executable")
            }
            Self::BadEntry(e) => write!(f, "entry point {e:#x} is not in an executable segment"),
        }
    }
}

/// One segment to map: `[vaddr, vaddr + mem_size)`, the first `file_size` bytes copied
/// from `file_offset`, the rest zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual start (may be unaligned; mapping rounds down to the page).
    pub vaddr: u64,
    /// Bytes in memory.
    pub mem_size: u64,
    /// Offset of the initialised bytes in the file.
    pub file_offset: u64,
    /// Initialised bytes.
    pub file_size: u64,
    /// Mapped writable.
    pub writable: bool,
    /// Mapped executable.
    pub executable: bool,
}

impl Segment {
    /// First page address.
    pub const fn page_start(&self) -> u64 {
        self.vaddr & !(PAGE_SIZE - 1)
    }

    /// One past the last page (the plan guarantees no overflow).
    pub const fn page_end(&self) -> u64 {
        (self.vaddr + self.mem_size + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
    }

    /// The file bytes that land at virtual address `page + at` .. for one page: returns
    /// `(offset in page, file range)` of what to copy into the page at `page`.
    pub fn file_bytes_for_page(&self, page: u64) -> Option<(usize, core::ops::Range<usize>)> {
        let file_end = self.vaddr + self.file_size;
        let lo = page.max(self.vaddr);
        let hi = (page + PAGE_SIZE).min(file_end);
        if lo >= hi {
            return None;
        }
        let off = (lo - self.vaddr + self.file_offset) as usize;
        Some(((lo - page) as usize, off..off + (hi - lo) as usize))
    }
}

/// A validated image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Where execution starts.
    pub entry: u64,
    /// The loadable segments, in file order.
    pub segments: Vec<Segment, MAX_SEGMENTS>,
}

fn check_layout(bytes: &[u8]) -> Result<(), Error> {
    let header = bytes.get(..ELF_HEADER_SIZE).ok_or(Error::Truncated)?;
    // The parser reads headers in place and requires natural alignment.
    if !(bytes.as_ptr() as usize).is_multiple_of(8) {
        return Err(Error::Misaligned);
    }
    if header.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(Error::NotElf("bad magic"));
    }
    let word = |at: usize| -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(header.get(at..at + 8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(b)
    };
    let half = |at: usize| -> u16 {
        header.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).unwrap_or(0)
    };
    // Check the program-header table's extent ourselves so the parser never sees a
    // table that runs past the module.
    let phoff = word(32);
    let phentsize = half(54) as u64;
    let phnum = half(56) as u64;
    if phnum > 0 && phentsize != PHDR_SIZE as u64 {
        return Err(Error::BadProgramHeader { index: 0 });
    }
    if phoff % 8 != 0 {
        return Err(Error::Misaligned);
    }
    let end = phnum.checked_mul(PHDR_SIZE as u64).and_then(|n| n.checked_add(phoff));
    match end {
        Some(end) if end <= bytes.len() as u64 => Ok(()),
        _ => Err(Error::Truncated),
    }
}

fn segment(index: usize, ph: &ProgramHeader<'_>, file_len: u64) -> Result<Segment, Error> {
    let flags = ph.flags();
    let s = Segment {
        vaddr: ph.virtual_addr(),
        mem_size: ph.mem_size(),
        file_offset: ph.offset(),
        file_size: ph.file_size(),
        writable: flags.is_write(),
        executable: flags.is_execute(),
    };
    match s.file_offset.checked_add(s.file_size) {
        Some(end) if end <= file_len => {}
        _ => return Err(Error::SegmentOutsideFile { index }),
    }
    if s.file_size > s.mem_size {
        return Err(Error::FileLargerThanMemory { index });
    }
    match s.vaddr.checked_add(s.mem_size) {
        Some(end) if end <= USER_MAP_END => {}
        _ => return Err(Error::OverlapsKernel { index, vaddr: s.vaddr }),
    }
    if s.vaddr < USER_MIN {
        return Err(Error::BelowUserSpace { index, vaddr: s.vaddr });
    }
    if s.writable && s.executable {
        return Err(Error::WritableAndExecutable { index });
    }
    Ok(s)
}

/// Validate `bytes` as a static x86-64 executable for ring 3 and plan its loading.
pub fn plan(bytes: &[u8]) -> Result<Plan, Error> {
    check_layout(bytes)?;
    let elf = ElfFile::new(bytes).map_err(Error::NotElf)?;
    if elf.header.pt1.class() != Class::SixtyFour || elf.header.pt1.data() != Data::LittleEndian {
        return Err(Error::WrongClass);
    }
    match elf.header.pt2.machine().as_machine() {
        Machine::X86_64 => {}
        _ => {
            let raw = bytes.get(18..20).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
            return Err(Error::WrongMachine(raw));
        }
    }
    if elf.header.pt2.type_().as_type() != Type::Executable {
        return Err(Error::NotExecutable);
    }
    let mut segments: Vec<Segment, MAX_SEGMENTS> = Vec::new();
    for (index, ph) in elf.program_iter().enumerate() {
        let kind = ph.get_type().map_err(|_| Error::BadProgramHeader { index })?;
        if kind != PhType::Load || ph.mem_size() == 0 {
            continue;
        }
        let s = segment(index, &ph, bytes.len() as u64)?;
        for (first, other) in segments.iter().enumerate() {
            if s.page_start() < other.page_end() && other.page_start() < s.page_end() {
                return Err(Error::SegmentsOverlap { first, second: segments.len() });
            }
        }
        segments.push(s).map_err(|_| Error::TooManySegments)?;
    }
    if segments.is_empty() {
        return Err(Error::NoSegments);
    }
    let entry = elf.header.pt2.entry_point();
    let in_code =
        segments.iter().any(|s| s.executable && entry >= s.vaddr && entry - s.vaddr < s.mem_size);
    if !in_code {
        return Err(Error::BadEntry(entry));
    }
    Ok(Plan { entry, segments })
}

/// Hand-built ELF images for tests and fuzz seeds.
#[cfg(any(test, feature = "fuzzing"))]
pub mod sample {
    /// `(vaddr, flags, file bytes, mem_size)` per segment; flags use PF_X=1, PF_W=2, PF_R=4.
    pub fn image(entry: u64, machine: u16, segs: &[(u64, u32, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64u64;
        let mut data_off = phoff + 56 * segs.len() as u64;
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out.extend_from_slice(&machine.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&entry.to_le_bytes());
        out.extend_from_slice(&phoff.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // flags
        for v in [64u16, 56, segs.len() as u16, 64, 0, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut payload = Vec::new();
        for (vaddr, flags, bytes, mem) in segs {
            out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&data_off.to_le_bytes());
            out.extend_from_slice(&vaddr.to_le_bytes());
            out.extend_from_slice(&vaddr.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&mem.to_le_bytes());
            out.extend_from_slice(&4096u64.to_le_bytes());
            payload.extend_from_slice(bytes);
            data_off += bytes.len() as u64;
        }
        out.extend_from_slice(&payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::sample::image;
    use super::{plan, Error};

    const X86_64: u16 = 0x3e;
    const CODE: &[u8] = &[0xf4; 16];

    #[test]
    fn accepts_a_well_formed_image() {
        let img =
            image(0x40_0000, X86_64, &[(0x40_0000, 5, CODE, 16), (0x40_1000, 6, b"data", 0x2000)]);
        let p = plan(&img).unwrap();
        assert_eq!(p.entry, 0x40_0000);
        assert_eq!(p.segments.len(), 2);
        assert!(p.segments[1].writable && !p.segments[1].executable);
        assert_eq!(p.segments[1].page_end(), 0x40_3000);
        let (at, range) = p.segments[1].file_bytes_for_page(0x40_1000).unwrap();
        assert_eq!(&img[range], b"data");
        assert_eq!(at, 0);
        assert_eq!(p.segments[1].file_bytes_for_page(0x40_2000), None);
    }

    #[test]
    fn refuses_each_malformation() {
        let good = image(0x40_0000, X86_64, &[(0x40_0000, 5, CODE, 16)]);
        assert_eq!(plan(&good[..40]), Err(Error::Truncated));
        assert_eq!(plan(&good[..100]), Err(Error::Truncated));
        assert_eq!(plan(&good[..good.len() - 1]), Err(Error::SegmentOutsideFile { index: 0 }));
        assert_eq!(plan(b"MZ\x90\0"), Err(Error::Truncated));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(plan(&bad), Err(Error::NotElf("bad magic")));
        assert_eq!(
            plan(&image(0x40_0000, 0x28, &[(0x40_0000, 5, CODE, 16)])),
            Err(Error::WrongMachine(0x28))
        );
        assert_eq!(
            plan(&image(0xffff_ffff_8010_0000, X86_64, &[(0xffff_ffff_8010_0000, 5, CODE, 16)])),
            Err(Error::OverlapsKernel { index: 0, vaddr: 0xffff_ffff_8010_0000 })
        );
        assert_eq!(
            plan(&image(0x7fff_ffff_f000, X86_64, &[(0x7fff_ffff_f000, 5, CODE, 0x2000)])),
            Err(Error::OverlapsKernel { index: 0, vaddr: 0x7fff_ffff_f000 })
        );
        assert_eq!(
            plan(&image(0x10, X86_64, &[(0x10, 5, CODE, 16)])),
            Err(Error::BelowUserSpace { index: 0, vaddr: 0x10 })
        );
        assert_eq!(
            plan(&image(0x40_0000, X86_64, &[(0x40_0000, 7, CODE, 16)])),
            Err(Error::WritableAndExecutable { index: 0 })
        );
        assert_eq!(
            plan(&image(0x40_0000, X86_64, &[(0x40_0000, 5, CODE, 16), (0x40_0800, 6, b"x", 1)])),
            Err(Error::SegmentsOverlap { first: 0, second: 1 })
        );
        assert_eq!(
            plan(&image(0x50_0000, X86_64, &[(0x40_0000, 5, CODE, 16)])),
            Err(Error::BadEntry(0x50_0000))
        );
        assert_eq!(
            plan(&image(0x40_0000, X86_64, &[(0x40_0000, 5, CODE, 8)])),
            Err(Error::FileLargerThanMemory { index: 0 })
        );
        let mut dynamic = good.clone();
        dynamic[16] = 3; // ET_DYN
        assert_eq!(plan(&dynamic), Err(Error::NotExecutable));
    }

    #[test]
    fn never_panics_on_mutations() {
        let good =
            image(0x40_0000, X86_64, &[(0x40_0000, 5, CODE, 16), (0x40_1000, 6, b"data", 0x2000)]);
        for len in 0..good.len() {
            let _ = plan(&good[..len]);
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let _ = plan(&b);
            }
        }
    }
}
