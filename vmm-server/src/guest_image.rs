//! Reading a guest image: an ELF64 file whose PT_LOAD segments are placed at their
//! physical addresses in guest RAM. The image comes from outside, so every offset and
//! length is checked against the file and against guest RAM.

use heapless::Vec;
use protocols::le::{u16_at, u32_at, u64_at};

/// The most loadable segments.
pub const MAX_SEGMENTS: usize = 8;

/// One segment: `file_len` bytes from `file_offset` at guest-physical `gpa`, then zeros
/// up to `mem_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address.
    pub gpa: u64,
    /// Offset in the file.
    pub file_offset: usize,
    /// Bytes from the file.
    pub file_len: usize,
    /// Bytes in memory.
    pub mem_len: u64,
}

/// A checked guest image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestImage {
    /// Entry point.
    pub entry: u64,
    /// What to load.
    pub segments: Vec<Segment, MAX_SEGMENTS>,
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Not an ELF64 little-endian file, or its headers run past the end.
    NotElf64,
    /// A segment's bytes lie outside the file.
    OutsideFile,
    /// A segment does not fit in guest RAM.
    OutsideRam,
    /// More than [`MAX_SEGMENTS`] segments.
    TooManySegments,
}

/// Check `bytes` for a guest RAM of `ram_bytes` starting at guest-physical 0.
pub fn parse(bytes: &[u8], ram_bytes: u64) -> Result<GuestImage, ImageError> {
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err(ImageError::NotElf64);
    }
    let entry = u64_at(bytes, 24).ok_or(ImageError::NotElf64)?;
    let phoff = usize::try_from(u64_at(bytes, 32).ok_or(ImageError::NotElf64)?)
        .map_err(|_| ImageError::NotElf64)?;
    let phentsize = usize::from(u16_at(bytes, 54).ok_or(ImageError::NotElf64)?);
    let phnum = usize::from(u16_at(bytes, 56).ok_or(ImageError::NotElf64)?);
    if phentsize < 56 && phnum > 0 {
        return Err(ImageError::NotElf64);
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(ImageError::NotElf64)?;
        let ph = bytes
            .get(at..at.checked_add(56).ok_or(ImageError::NotElf64)?)
            .ok_or(ImageError::NotElf64)?;
        if u32_at(ph, 0) != Some(1) {
            continue;
        }
        let get = |o| u64_at(ph, o).ok_or(ImageError::NotElf64);
        let (offset, paddr, filesz, memsz) = (get(8)?, get(24)?, get(32)?, get(40)?);
        if memsz == 0 {
            continue;
        }
        let file_end = offset.checked_add(filesz).ok_or(ImageError::OutsideFile)?;
        if file_end > bytes.len() as u64 || filesz > memsz {
            return Err(ImageError::OutsideFile);
        }
        match paddr.checked_add(memsz) {
            Some(end) if end <= ram_bytes => {}
            _ => return Err(ImageError::OutsideRam),
        }
        let seg = Segment {
            gpa: paddr,
            file_offset: offset as usize,
            file_len: filesz as usize,
            mem_len: memsz,
        };
        segments.push(seg).map_err(|_| ImageError::TooManySegments)?;
    }
    Ok(GuestImage { entry, segments })
}

/// Copy the image into guest RAM (`ram` is guest-physical 0..len).
pub fn load(image: &GuestImage, bytes: &[u8], ram: &mut [u8]) -> Result<(), ImageError> {
    for s in &image.segments {
        let start = usize::try_from(s.gpa).map_err(|_| ImageError::OutsideRam)?;
        let mem_end =
            start.checked_add(usize::try_from(s.mem_len).map_err(|_| ImageError::OutsideRam)?);
        let dst = ram
            .get_mut(start..mem_end.ok_or(ImageError::OutsideRam)?)
            .ok_or(ImageError::OutsideRam)?;
        let src = bytes
            .get(
                s.file_offset
                    ..s.file_offset.checked_add(s.file_len).ok_or(ImageError::OutsideFile)?,
            )
            .ok_or(ImageError::OutsideFile)?;
        let (head, tail) = dst.split_at_mut(src.len().min(dst.len()));
        head.copy_from_slice(src.get(..head.len()).ok_or(ImageError::OutsideFile)?);
        tail.fill(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{load, parse, ImageError};

    fn image(paddr: u64, payload: &[u8], memsz: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[24..32].copy_from_slice(&paddr.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = &mut b[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes());
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn loads_at_physical_addresses() {
        let b = image(0x7c00, b"\xf4\xeb\xfd", 8);
        let img = parse(&b, 0x10_0000).unwrap();
        assert_eq!(img.entry, 0x7c00);
        let mut ram = vec![0xaau8; 0x10_0000];
        load(&img, &b, &mut ram).unwrap();
        assert_eq!(&ram[0x7c00..0x7c08], b"\xf4\xeb\xfd\0\0\0\0\0");
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert_eq!(parse(&image(0xf_fff0, b"x", 32), 0x10_0000), Err(ImageError::OutsideRam));
        assert_eq!(parse(&image(0, b"xy", 1), 0x10_0000), Err(ImageError::OutsideFile));
        assert_eq!(parse(b"MZ", 0x1000), Err(ImageError::NotElf64));
        let b = image(0x1000, b"abc", 3);
        for cut in 0..b.len() {
            let _ = parse(&b[..cut], 0x10_0000);
        }
        assert_eq!(parse(&image(u64::MAX - 1, b"x", 8), u64::MAX), Err(ImageError::OutsideRam));
    }
}
