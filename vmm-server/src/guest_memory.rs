//! Access to guest-physical memory from the VMM.
//!
//! The ring-3 binary maps the guest's RAM Frames into its own address space; this trait is
//! the safe seam over that mapping, so emulation code (string I/O, page walks, PDPTE
//! loads) never touches a raw pointer and can be tested against a plain byte array. An
//! access that leaves the RAM the VMM can see fails as a whole: emulation then stops the
//! VM instead of reading garbage.

/// An access touched guest-physical memory the VMM cannot see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryError {
    /// The first guest-physical address that was out of range.
    pub gpa: u64,
}

/// Guest-physical memory as the VMM sees it.
pub trait GuestMemory {
    /// Fill `buf` from guest-physical `gpa`; all or nothing.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError>;
    /// Store `data` at guest-physical `gpa`; all or nothing.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError>;

    /// Read a little-endian u64.
    fn read_u64(&self, gpa: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read a little-endian u32.
    fn read_u32(&self, gpa: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// One contiguous block of guest RAM starting at guest-physical `base`.
#[derive(Debug)]
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a mut [u8],
}

impl<'a> SliceMemory<'a> {
    /// Guest RAM `bytes` at guest-physical `base`.
    pub fn new(base: u64, bytes: &'a mut [u8]) -> Self {
        Self { base, bytes }
    }

    /// The byte range of `[gpa, gpa + len)` inside `bytes`, if it is all there.
    fn range(&self, gpa: u64, len: usize) -> Result<core::ops::Range<usize>, MemoryError> {
        let start = gpa
            .checked_sub(self.base)
            .and_then(|off| usize::try_from(off).ok())
            .ok_or(MemoryError { gpa })?;
        let end = start.checked_add(len).ok_or(MemoryError { gpa })?;
        if end > self.bytes.len() {
            let first_missing = self.bytes.len().max(start);
            let gpa = self.base.saturating_add(first_missing as u64);
            return Err(MemoryError { gpa });
        }
        Ok(start..end)
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let range = self.range(gpa, buf.len())?;
        let src = self.bytes.get(range).ok_or(MemoryError { gpa })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let range = self.range(gpa, data.len())?;
        let dst = self.bytes.get_mut(range).ok_or(MemoryError { gpa })?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{GuestMemory, MemoryError, SliceMemory};

    #[test]
    fn reads_and_writes_inside_the_block_only() {
        let mut ram = [0u8; 16];
        let mut m = SliceMemory::new(0x1000, &mut ram);
        m.write(0x1008, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(m.read_u64(0x1008), Ok(0x0807_0605_0403_0201));
        assert_eq!(m.read_u32(0x100c), Ok(0x0807_0605));
        assert_eq!(m.write(0x100c, &[0; 8]), Err(MemoryError { gpa: 0x1010 }));
        assert_eq!(m.read_u32(0xfff), Err(MemoryError { gpa: 0xfff }));
        assert_eq!(m.read_u32(u64::MAX), Err(MemoryError { gpa: u64::MAX }));
        assert_eq!(m.read_u64(0x1008), Ok(0x0807_0605_0403_0201), "failed writes change nothing");
        let mut empty = [0u8; 0];
        assert!(m.read(0x1010, &mut empty).is_ok());
    }
}
