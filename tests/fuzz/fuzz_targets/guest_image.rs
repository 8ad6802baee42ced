//! Fuzzes the two guest loaders: `vmm_server::guest_image` (an ELF64 test guest) and
//! `vmm_server::linux_boot` (a bzImage by the Linux boot protocol). Every input goes to
//! both, each reading it its own way, so the checked-in ELF seeds stay valid.
//!
//! ELF input: a little-endian `u32` whose low 21 bits are the guest RAM size (up to
//! 2 MiB), then the image bytes. Invariants on every accepted image: at most
//! `MAX_SEGMENTS` segments; each segment's file bytes inside the input and no more than
//! its memory size; each segment inside guest RAM without wrapping. Loading an accepted
//! image never fails, and afterwards RAM is exactly what a plain model of loading gives:
//! each segment in order writes its file bytes and then zeros up to its memory size (a
//! later segment may overwrite an earlier one), and RAM outside every segment is
//! untouched.
//!
//! Linux input: the same `u32` as guest RAM in 4 KiB pages, a `u32` initramfs length
//! (low 20 bits), a byte giving the command line's length, the command line, then the
//! bzImage (see `linux` below for the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_server::guest_image::{load, parse, Segment, MAX_SEGMENTS};

/// What loading `segments` must leave in RAM of `len` bytes that held `UNTOUCHED`: each
/// segment in order writes its file bytes, then zeros up to its memory size.
fn model(segments: &[Segment], image: &[u8], len: usize) -> Vec<u8> {
    let mut ram = vec![UNTOUCHED; len];
    for s in segments {
        let (at, file_end) = (s.gpa as usize, s.gpa as usize + s.file_len);
        ram[at..file_end].copy_from_slice(&image[s.file_offset..s.file_offset + s.file_len]);
        ram[file_end..at + s.mem_len as usize].fill(0);
    }
    ram
}

const UNTOUCHED: u8 = 0xa5;

fuzz_target!(|data: &[u8]| {
    linux::check(data);
    elf(data);
});

fn elf(data: &[u8]) {
    let Some((size, image)) = data.split_first_chunk::<4>() else { return };
    let ram_bytes = u64::from(u32::from_le_bytes(*size) & 0x1f_ffff);
    let Ok(parsed) = parse(image, ram_bytes) else { return };
    let segments = &parsed.segments;
    assert!(segments.len() <= MAX_SEGMENTS);
    for (i, s) in segments.iter().enumerate() {
        let file_end = s.file_offset.checked_add(s.file_len).expect("file range wraps");
        assert!(file_end <= image.len(), "segment {i}'s file bytes end past the input");
        assert!(s.file_len as u64 <= s.mem_len, "segment {i} has more file than memory");
        let end = s.gpa.checked_add(s.mem_len).expect("segment end wraps");
        assert!(end <= ram_bytes, "segment {i} ends at {end:#x}, RAM is {ram_bytes:#x}");
    }
    // RAM above the highest segment is never written: only that much is checked.
    let used = segments.iter().map(|s| s.gpa + s.mem_len).max().unwrap_or(0) as usize;
    let mut ram = vec![UNTOUCHED; used];
    load(&parsed, image, &mut ram).expect("an accepted image loads");
    let want = model(segments, image, used);
    if ram != want {
        let gpa = (0..used).find(|&i| ram[i] != want[i]).unwrap_or(0);
        panic!("guest-physical {gpa:#x} holds {:#x}, not {:#x}", ram[gpa], want[gpa]);
    }
}

/// The Linux loader. Invariants on every accepted bzImage: its kernel lies inside the
/// input after the setup sectors, the header is 2.12 or newer, 64-bit and relocatable,
/// `init_size` holds the kernel. On every accepted plan: the kernel at 1 MiB or above,
/// aligned as the image asks, its `init_size` inside RAM, the entry at kernel + 0x200
/// with RSI at `boot_params`; the initramfs page-aligned between the kernel's end and
/// both RAM's end and `initrd_addr_max`; the e820 map exactly RAM with the legacy hole;
/// the command line within `cmdline_size`. Writing an accepted plan never fails, touches
/// only RAM, writes no two pieces over each other, and writes `boot_params` holding the
/// image's setup header, the command line's and initramfs's places and the e820 map.
mod linux {
    use vmm_server::guest_memory::{GuestMemory, MemoryError};
    use vmm_server::linux_boot::e820::{E820Kind, HIGH_RAM_START, LOW_RAM_END};
    use vmm_server::linux_boot::{plan, LinuxImage};

    /// Guest memory that records what is written where, and checks it is inside RAM.
    struct Recorder {
        ram: u64,
        /// (address, length, the bytes when short enough to keep).
        writes: Vec<(u64, u64, Option<Vec<u8>>)>,
    }

    impl GuestMemory for Recorder {
        fn read(&self, gpa: u64, _: &mut [u8]) -> Result<(), MemoryError> {
            Err(MemoryError { gpa })
        }

        fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
            let end = gpa.checked_add(data.len() as u64).ok_or(MemoryError { gpa })?;
            assert!(end <= self.ram, "write {gpa:#x}..{end:#x} past RAM {:#x}", self.ram);
            let kept = (data.len() <= 4096).then(|| data.to_vec());
            self.writes.push((gpa, data.len() as u64, kept));
            Ok(())
        }
    }

    pub fn check(data: &[u8]) {
        let Some((ram, rest)) = data.split_first_chunk::<4>() else { return };
        let Some((initrd, rest)) = rest.split_first_chunk::<4>() else { return };
        let Some((&cmdline_len, rest)) = rest.split_first() else { return };
        let Some((cmdline, file)) = rest.split_at_checked(usize::from(cmdline_len)) else {
            return;
        };
        let ram = u64::from(u32::from_le_bytes(*ram)) << 12;
        let initrd_len = u64::from(u32::from_le_bytes(*initrd) & 0xf_ffff);
        let Ok(image) = LinuxImage::parse(file) else { return };
        let kernel = image.kernel();
        let file_range = file.as_ptr_range();
        assert!(file_range.contains(&kernel.as_ptr()) && kernel.len() < file.len());
        assert!(kernel.as_ptr() as usize - file.as_ptr() as usize >= 1024, "after the setup");
        assert!(image.version >= 0x020c && image.xloadflags & 1 == 1);
        assert!(image.kernel_alignment.is_power_of_two());
        assert!(u64::from(image.init_size) >= kernel.len() as u64);
        let Ok(p) = plan(&image, ram, cmdline, initrd_len) else { return };
        let align = u64::from(image.kernel_alignment);
        assert!(p.kernel >= HIGH_RAM_START && p.kernel % align == 0, "kernel at {:#x}", p.kernel);
        assert_eq!(p.kernel_end, p.kernel + u64::from(image.init_size));
        assert!(p.kernel_end <= ram);
        assert_eq!(p.entry.rip, p.kernel + 0x200);
        assert_eq!(p.entry.rsi, p.boot_params);
        assert!(p.cmdline_len <= u64::from(image.cmdline_size));
        if p.initrd_len > 0 {
            let top = ram.min(u64::from(image.initrd_addr_max) + 1);
            assert!(p.initrd % 4096 == 0 && p.initrd >= p.kernel_end);
            assert!(p.initrd + p.initrd_len <= top, "initrd at {:#x} past {top:#x}", p.initrd);
        }
        let e = p.e820;
        assert_eq!((e[0].addr, e[0].size, e[0].kind), (0, LOW_RAM_END, E820Kind::Ram));
        assert_eq!(e[1].kind, E820Kind::Reserved);
        assert_eq!((e[2].addr, e[2].addr + e[2].size), (HIGH_RAM_START, ram));

        let initrd = vec![0x11; initrd_len as usize];
        let mut mem = Recorder { ram, writes: Vec::new() };
        p.write(&image, cmdline, &initrd, &mut mem).expect("an accepted plan writes");
        let mut spans: Vec<(u64, u64)> =
            mem.writes.iter().filter(|w| w.1 > 0).map(|w| (w.0, w.0 + w.1)).collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "writes overlap: {:#x?} and {:#x?}", w[0], w[1]);
        }
        let page = mem.writes.iter().find(|w| w.0 == p.boot_params).and_then(|w| w.2.clone());
        let page = page.expect("boot_params written");
        assert_eq!(page, p.zero_page(&image));
        let header = image.setup_header();
        let owned = |at: usize| matches!(at, 0x210..=0x211 | 0x218..=0x21f | 0x224..=0x22b);
        for (i, &b) in header.iter().enumerate() {
            let at = 0x1f1 + i;
            assert!(owned(at) || page[at] == b, "boot_params {at:#x} is not the header's");
        }
        let u32_at = |at: usize| u32::from_le_bytes(page[at..at + 4].try_into().unwrap());
        assert_eq!(u64::from(u32_at(0x228)), p.cmdline);
        assert_eq!((u64::from(u32_at(0x218)), u64::from(u32_at(0x21c))), (p.initrd, p.initrd_len));
        assert_eq!(page[0x1e8], 3, "three e820 entries");
        let line = mem.writes.iter().find(|w| w.0 == p.cmdline).and_then(|w| w.2.clone());
        assert_eq!(line.as_deref(), Some(cmdline), "the command line is written");
    }
}
