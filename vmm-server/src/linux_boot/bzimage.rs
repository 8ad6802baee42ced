//! The bzImage file: its real-mode setup sectors, whose setup header (at 0x1f1) tells the
//! boot loader how to load it, followed by the protected-mode kernel. Only the header is
//! read here; the setup code itself never runs (the guest enters at the 64-bit entry), so
//! the image must say it has one, be relocatable, and use protocol 2.12 or newer. Every
//! size the header gives is checked against the file before anything else trusts it.

use super::LinuxBootError;
pub(super) use protocols::le::{u16_at, u32_at, u64_at};

/// Where the setup header starts in the file (and in `boot_params`).
pub const SETUP_HEADER: usize = 0x1f1;
/// The end of the setup header's room in `boot_params`.
pub const SETUP_HEADER_MAX_END: usize = 0x290;
/// The setup header must reach this far: `kernel_info_offset` (protocol 2.15) ends here,
/// and every field this loader reads lies before it.
const SETUP_HEADER_MIN_END: usize = 0x268;
/// The lowest protocol with `xloadflags` (the 64-bit entry flag).
pub const MIN_VERSION: u16 = 0x020c;

/// Offsets of the setup-header fields, from the start of the file.
pub mod offset {
    /// `setup_sects`: 512-byte setup sectors after the boot sector (0 means 4).
    pub const SETUP_SECTS: usize = 0x1f1;
    /// `syssize`: the protected-mode kernel's size in 16-byte units.
    pub const SYSSIZE: usize = 0x1f4;
    /// `boot_flag`: 0xAA55.
    pub const BOOT_FLAG: usize = 0x1fe;
    /// `jump`: its second byte is the header's length past 0x202.
    pub const JUMP: usize = 0x200;
    /// `header`: "HdrS".
    pub const HEADER: usize = 0x202;
    /// `version`.
    pub const VERSION: usize = 0x206;
    /// `type_of_loader`.
    pub const TYPE_OF_LOADER: usize = 0x210;
    /// `loadflags`.
    pub const LOADFLAGS: usize = 0x211;
    /// `ramdisk_image`.
    pub const RAMDISK_IMAGE: usize = 0x218;
    /// `ramdisk_size`.
    pub const RAMDISK_SIZE: usize = 0x21c;
    /// `heap_end_ptr`.
    pub const HEAP_END_PTR: usize = 0x224;
    /// `cmd_line_ptr`.
    pub const CMD_LINE_PTR: usize = 0x228;
    /// `initrd_addr_max`.
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    /// `kernel_alignment`.
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    /// `relocatable_kernel`.
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    /// `xloadflags`.
    pub const XLOADFLAGS: usize = 0x236;
    /// `cmdline_size`.
    pub const CMDLINE_SIZE: usize = 0x238;
    /// `pref_address`.
    pub const PREF_ADDRESS: usize = 0x258;
    /// `init_size`.
    pub const INIT_SIZE: usize = 0x260;
}

/// `loadflags` bits.
pub mod loadflags {
    /// The protected-mode kernel loads at 1 MiB or above (a bzImage).
    pub const LOADED_HIGH: u8 = 1 << 0;
    /// `heap_end_ptr` is valid.
    pub const CAN_USE_HEAP: u8 = 1 << 7;
}

/// `xloadflags` bits.
pub mod xloadflags {
    /// The kernel has the 64-bit entry point at load address + 0x200.
    pub const KERNEL_64: u16 = 1 << 0;
}

/// "HdrS", little-endian.
const MAGIC: u32 = 0x5372_6448;
/// The boot sector's signature.
const BOOT_FLAG: u16 = 0xaa55;
/// Setup sectors an image that says 0 has (the protocol's default).
const DEFAULT_SETUP_SECTS: u64 = 4;
/// A sector.
const SECTOR: u64 = 512;

/// The setup sectors of the smallest bzImage this loader takes: one setup sector,
/// protocol 2.15, relocatable, 64-bit entry, `pref_address` aligned to 2 MiB, a kernel of
/// `kernel_len` bytes (a multiple of 16) to follow needing `init_size` bytes. For tests and
/// for test images that need a kernel which is not Linux.
pub fn minimal_setup(kernel_len: u32, pref_address: u64, init_size: u32) -> [u8; 1024] {
    let mut b = [0u8; 1024];
    let mut put = |at: usize, v: &[u8]| {
        if let Some(dst) = b.get_mut(at..at.saturating_add(v.len())) {
            dst.copy_from_slice(v);
        }
    };
    put(offset::SETUP_SECTS, &[1]);
    put(offset::SYSSIZE, &(kernel_len / 16).to_le_bytes());
    put(offset::BOOT_FLAG, &BOOT_FLAG.to_le_bytes());
    // A short jump over the header, whose second byte gives the header's length.
    put(offset::JUMP, &[0xeb, 0x6a]);
    put(offset::HEADER, &MAGIC.to_le_bytes());
    put(offset::VERSION, &0x020fu16.to_le_bytes());
    put(offset::LOADFLAGS, &[loadflags::LOADED_HIGH]);
    put(offset::INITRD_ADDR_MAX, &0x7fff_ffffu32.to_le_bytes());
    put(offset::KERNEL_ALIGNMENT, &0x20_0000u32.to_le_bytes());
    put(offset::RELOCATABLE_KERNEL, &[1]);
    put(offset::XLOADFLAGS, &3u16.to_le_bytes());
    put(offset::CMDLINE_SIZE, &2047u32.to_le_bytes());
    put(offset::PREF_ADDRESS, &pref_address.to_le_bytes());
    put(offset::INIT_SIZE, &init_size.to_le_bytes());
    b
}

/// A checked bzImage, borrowing the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxImage<'a> {
    /// The setup header as the file has it (file offsets `0x1f1..header_end`), which
    /// `boot_params` starts from.
    setup_header: &'a [u8],
    /// The protected-mode kernel: `syssize × 16` bytes after the setup sectors (a signed
    /// image carries more bytes after it, which are not loaded).
    kernel: &'a [u8],
    /// Boot protocol version, major in the high byte.
    pub version: u16,
    /// `loadflags`.
    pub loadflags: u8,
    /// `xloadflags`.
    pub xloadflags: u16,
    /// `kernel_alignment`: the load address's alignment (a power of two).
    pub kernel_alignment: u32,
    /// `pref_address`: where the kernel prefers to be loaded.
    pub pref_address: u64,
    /// `init_size`: the memory the kernel needs from its load address to start up.
    pub init_size: u32,
    /// `initrd_addr_max`: the highest address the initramfs's last byte may have.
    pub initrd_addr_max: u32,
    /// `cmdline_size`: the longest command line, without its NUL.
    pub cmdline_size: u32,
}

impl<'a> LinuxImage<'a> {
    /// Check the setup header of `bytes` and find the protected-mode kernel.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LinuxBootError> {
        let have = bytes.len() as u64;
        let truncated = |need: usize| LinuxBootError::HeaderTruncated { need: need as u64, have };
        // The fixed part up to `version`, which says how much more there is.
        let get16 = |at: usize| u16_at(bytes, at).ok_or(truncated(at.saturating_add(2)));
        let flag = get16(offset::BOOT_FLAG)?;
        if flag != BOOT_FLAG {
            return Err(LinuxBootError::BadBootFlag(flag));
        }
        let magic = u32_at(bytes, offset::HEADER).ok_or(truncated(offset::HEADER + 4))?;
        if magic != MAGIC {
            return Err(LinuxBootError::BadMagic(magic));
        }
        let version = get16(offset::VERSION)?;
        if version < MIN_VERSION {
            return Err(LinuxBootError::OldProtocol { version });
        }
        // The jump's displacement byte is the header's length past 0x202.
        let jump_len = bytes.get(offset::JUMP + 1).copied().ok_or(truncated(offset::JUMP + 2))?;
        let header_end = usize::from(jump_len).saturating_add(offset::HEADER);
        if !(SETUP_HEADER_MIN_END..=SETUP_HEADER_MAX_END).contains(&header_end) {
            return Err(LinuxBootError::BadHeaderLength(header_end as u64));
        }
        let setup_header = bytes.get(SETUP_HEADER..header_end).ok_or(truncated(header_end))?;
        // From here every field lies inside `setup_header`, so inside the file.
        let h = |at: usize| at.saturating_sub(SETUP_HEADER);
        let read8 = |at: usize| setup_header.get(h(at)).copied().unwrap_or(0);
        let read16 = |at: usize| u16_at(setup_header, h(at)).unwrap_or(0);
        let read32 = |at: usize| u32_at(setup_header, h(at)).unwrap_or(0);
        let loadflags = read8(offset::LOADFLAGS);
        if loadflags & loadflags::LOADED_HIGH == 0 {
            return Err(LinuxBootError::NotBzImage);
        }
        if read8(offset::RELOCATABLE_KERNEL) == 0 {
            return Err(LinuxBootError::NotRelocatable);
        }
        let xloadflags = read16(offset::XLOADFLAGS);
        if xloadflags & xloadflags::KERNEL_64 == 0 {
            return Err(LinuxBootError::No64BitEntry);
        }
        let kernel_alignment = read32(offset::KERNEL_ALIGNMENT);
        if !kernel_alignment.is_power_of_two() {
            return Err(LinuxBootError::BadAlignment(kernel_alignment));
        }
        let syssize = u64::from(read32(offset::SYSSIZE));
        if syssize == 0 {
            return Err(LinuxBootError::EmptyKernel);
        }
        let sects = match read8(offset::SETUP_SECTS) {
            0 => DEFAULT_SETUP_SECTS,
            n => u64::from(n),
        };
        // The boot sector plus the setup sectors, then the kernel: all small enough that
        // u64 cannot overflow (255 × 512 and 2^32 × 16).
        let setup_len = sects.saturating_add(1).saturating_mul(SECTOR);
        let kernel_len = syssize.saturating_mul(16);
        let need = setup_len.saturating_add(kernel_len);
        let range = usize::try_from(setup_len)
            .ok()
            .zip(usize::try_from(need).ok())
            .and_then(|(start, end)| bytes.get(start..end));
        let kernel = range.ok_or(LinuxBootError::KernelTruncated { need, have })?;
        let init_size = read32(offset::INIT_SIZE);
        if u64::from(init_size) < kernel_len {
            return Err(LinuxBootError::InitSizeTooSmall { init_size, kernel: kernel_len });
        }
        Ok(Self {
            setup_header,
            kernel,
            version,
            loadflags,
            xloadflags,
            kernel_alignment,
            pref_address: u64_at(setup_header, h(offset::PREF_ADDRESS)).unwrap_or(0),
            init_size,
            initrd_addr_max: read32(offset::INITRD_ADDR_MAX),
            cmdline_size: read32(offset::CMDLINE_SIZE),
        })
    }

    /// The setup header's bytes (file offsets `0x1f1..`), to copy into `boot_params`.
    pub fn setup_header(&self) -> &'a [u8] {
        self.setup_header
    }

    /// The protected-mode kernel, which is loaded at the plan's kernel address.
    pub fn kernel(&self) -> &'a [u8] {
        self.kernel
    }
}
