//! Booting an unmodified Linux by the x86 boot protocol, entering at the kernel's 64-bit
//! entry point so that no real-mode setup code or firmware is needed.
//!
//! [`LinuxImage::parse`] checks the bzImage's setup header; [`plan`] places the kernel,
//! the initramfs and the command line in a VM's RAM and says how the vCPU starts;
//! [`LoadPlan::write`] writes them with `boot_params`, the e820 map, the identity-mapped
//! page tables and the GDT. Every size the image or the user gives is checked first, with
//! overflow-safe arithmetic, and a refusal is a [`LinuxBootError`] naming the check.
//! Nothing here is tuned to one kernel: only what the protocol's header says is used.

pub mod boot_params;
pub mod bzimage;
pub mod e820;
mod error;
pub mod layout;
pub mod page_tables;
mod plan;
mod start;

pub use bzimage::LinuxImage;
pub use error::LinuxBootError;
pub use plan::{plan, Entry, LoadPlan};
pub use start::start_batch;

#[cfg(test)]
pub(crate) mod tests {
    use super::e820::E820Kind;
    use super::{plan, LinuxBootError, LinuxImage};
    use crate::guest_memory::{GuestMemory, SliceMemory};

    /// A minimal bzImage: one setup sector, protocol 2.15, relocatable, 64-bit, preferring
    /// 16 MiB aligned to 2 MiB, needing 4 MiB there, with `kernel_len` bytes of kernel.
    pub(crate) fn synthetic(kernel_len: usize) -> Vec<u8> {
        let mut b =
            super::bzimage::minimal_setup(kernel_len as u32, 0x100_0000, 0x40_0000).to_vec();
        b.extend((0..kernel_len).map(|i| (i % 251) as u8));
        b
    }

    fn with(mut b: Vec<u8>, at: usize, v: &[u8]) -> Vec<u8> {
        b[at..at + v.len()].copy_from_slice(v);
        b
    }

    #[test]
    fn a_synthetic_bzimage_parses() {
        let b = synthetic(0x2000);
        let img = LinuxImage::parse(&b).unwrap();
        assert_eq!(img.version, 0x020f);
        assert_eq!(img.kernel().len(), 0x2000);
        assert_eq!(img.kernel()[..3], [0, 1, 2]);
        assert_eq!(img.setup_header().len(), 0x26c - 0x1f1);
        assert_eq!(img.pref_address, 0x100_0000);
        assert_eq!((img.kernel_alignment, img.init_size), (0x20_0000, 0x40_0000));
        assert_eq!((img.initrd_addr_max, img.cmdline_size), (0x7fff_ffff, 2047));
        // setup_sects 0 means 4: the kernel then starts at 5 × 512.
        let four = with(synthetic(0x2000), 0x1f1, &[0]);
        let four = [&four[..1024], &[0xee; 1536][..], &four[1024..]].concat();
        assert_eq!(LinuxImage::parse(&four).unwrap().kernel()[..2], [0, 1]);
        // A signed image carries bytes after the kernel: they are not part of it.
        let signed = [synthetic(0x2000), vec![0x55; 100]].concat();
        assert_eq!(LinuxImage::parse(&signed).unwrap().kernel().len(), 0x2000);
    }

    #[test]
    fn each_malformed_header_is_refused_naming_the_check() {
        let ok = || synthetic(0x2000);
        let cases: [(Vec<u8>, LinuxBootError); 11] = [
            (with(ok(), 0x1fe, &[0x55, 0xab]), LinuxBootError::BadBootFlag(0xab55)),
            (with(ok(), 0x202, b"HdrT"), LinuxBootError::BadMagic(0x5472_6448)),
            (
                with(ok(), 0x206, &0x020bu16.to_le_bytes()),
                LinuxBootError::OldProtocol { version: 0x020b },
            ),
            (with(ok(), 0x201, &[0x20]), LinuxBootError::BadHeaderLength(0x222)),
            (with(ok(), 0x201, &[0x90]), LinuxBootError::BadHeaderLength(0x292)),
            (with(ok(), 0x211, &[0]), LinuxBootError::NotBzImage),
            (with(ok(), 0x234, &[0]), LinuxBootError::NotRelocatable),
            (with(ok(), 0x236, &[2]), LinuxBootError::No64BitEntry),
            (with(ok(), 0x230, &0x3000u32.to_le_bytes()), LinuxBootError::BadAlignment(0x3000)),
            (with(ok(), 0x1f4, &[0, 0, 0, 0]), LinuxBootError::EmptyKernel),
            (
                with(ok(), 0x260, &0x1000u32.to_le_bytes()),
                LinuxBootError::InitSizeTooSmall { init_size: 0x1000, kernel: 0x2000 },
            ),
        ];
        for (file, want) in cases {
            assert_eq!(LinuxImage::parse(&file), Err(want), "{want}");
        }
        let short = &ok()[..0x1000];
        assert_eq!(
            LinuxImage::parse(short),
            Err(LinuxBootError::KernelTruncated { need: 0x2400, have: 0x1000 })
        );
        assert_eq!(
            LinuxImage::parse(&ok()[..0x210]),
            Err(LinuxBootError::HeaderTruncated { need: 0x26c, have: 0x210 })
        );
        assert!(matches!(LinuxImage::parse(b"MZ"), Err(LinuxBootError::HeaderTruncated { .. })));
    }

    #[test]
    fn every_truncation_is_refused_and_nothing_panics() {
        let b = synthetic(0x400);
        for cut in 0..b.len() {
            assert!(LinuxImage::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert!(LinuxImage::parse(&b).is_ok());
        // Fields at their extremes.
        let huge = with(with(synthetic(0x400), 0x258, &[0xff; 8]), 0x260, &[0xff; 4]);
        let img = LinuxImage::parse(&huge).unwrap();
        assert!(matches!(plan(&img, u64::MAX, b"", 0), Err(LinuxBootError::KernelPastRam { .. })));
    }

    #[test]
    fn the_plan_places_kernel_initrd_and_command_line() {
        let b = synthetic(0x2000);
        let img = LinuxImage::parse(&b).unwrap();
        let ram = 64 << 20;
        let p = plan(&img, ram, b"console=ttyS0", 0x12345).unwrap();
        assert_eq!(p.kernel, 0x100_0000, "the preferred address");
        assert_eq!(p.kernel_end, 0x140_0000);
        assert_eq!(p.entry.rip, 0x100_0200, "the 64-bit entry");
        assert_eq!(p.entry.rsi, p.boot_params);
        assert_eq!((p.entry.cs, p.entry.ds, p.entry.gdt_limit), (0x10, 0x18, 31));
        assert_eq!(p.initrd, (ram - 0x12345) & !0xfff, "as high as RAM allows, page-aligned");
        assert!(p.initrd + p.initrd_len <= ram);
        assert_eq!(p.e820[2].addr + p.e820[2].size, ram, "e820 says exactly the RAM");
        assert_eq!(p.e820[1].kind, E820Kind::Reserved);
        // initrd_addr_max caps the initramfs below the end of RAM.
        let low = with(synthetic(0x2000), 0x22c, &0x1ff_ffffu32.to_le_bytes());
        let p = plan(&LinuxImage::parse(&low).unwrap(), ram, b"", 0x1000).unwrap();
        assert_eq!(p.initrd, 0x1ff_f000);
        // A preferred address below 1 MiB or unaligned is moved up, aligned.
        let odd = with(synthetic(0x2000), 0x258, &0x1234u64.to_le_bytes());
        let p = plan(&LinuxImage::parse(&odd).unwrap(), ram, b"", 0).unwrap();
        assert_eq!((p.kernel, p.initrd, p.initrd_len), (0x20_0000, 0, 0));
    }

    #[test]
    fn each_plan_that_does_not_fit_is_refused_naming_the_check() {
        let b = synthetic(0x2000);
        let img = LinuxImage::parse(&b).unwrap();
        let mib = 1u64 << 20;
        assert_eq!(plan(&img, mib, b"", 0), Err(LinuxBootError::RamTooSmall(mib)));
        assert_eq!(
            plan(&img, 16 * mib, b"", 0),
            Err(LinuxBootError::KernelPastRam { end: 0x140_0000, ram: 16 * mib })
        );
        assert_eq!(
            plan(&img, 64 * mib, &[b'x'; 2048], 0),
            Err(LinuxBootError::CmdlineTooLong { len: 2048, max: 2047 })
        );
        assert!(plan(&img, 64 * mib, &[b'x'; 2047], 0).is_ok());
        assert_eq!(plan(&img, 64 * mib, b"a\0b", 0), Err(LinuxBootError::CmdlineHasNul));
        assert_eq!(
            plan(&img, 64 * mib, b"", 65 * mib),
            Err(LinuxBootError::InitrdLargerThanRam { len: 65 * mib, ram: 64 * mib })
        );
        assert_eq!(
            plan(&img, 64 * mib, b"", 60 * mib),
            Err(LinuxBootError::InitrdDoesNotFit { len: 60 * mib, room: 44 * mib })
        );
        assert!(plan(&img, 64 * mib, b"", 44 * mib).is_ok());
    }

    #[test]
    fn writing_the_plan_puts_every_piece_where_it_says() {
        let b = synthetic(0x2000);
        let img = LinuxImage::parse(&b).unwrap();
        let initrd: Vec<u8> = (0..0x3000).map(|i| (i * 7) as u8).collect();
        let cmdline = b"console=ttyS0 nolapic";
        let ram_bytes = 32u64 << 20;
        let p = plan(&img, ram_bytes, cmdline, initrd.len() as u64).unwrap();
        let mut ram = vec![0xa5u8; ram_bytes as usize];
        let mut mem = SliceMemory::new(0, &mut ram);
        p.write(&img, cmdline, &initrd, &mut mem).unwrap();
        let mut buf = vec![0u8; 0x3000];
        mem.read(p.kernel, &mut buf[..0x2000]).unwrap();
        assert_eq!(&buf[..0x2000], img.kernel());
        mem.read(p.initrd, &mut buf).unwrap();
        assert_eq!(buf, initrd);
        let mut line = [0u8; 22];
        mem.read(p.cmdline, &mut line).unwrap();
        assert_eq!(&line, b"console=ttyS0 nolapic\0");
        let mut page = [0u8; 4096];
        mem.read(p.boot_params, &mut page).unwrap();
        assert_eq!(page, p.zero_page(&img));
        assert_eq!(mem.read_u32(p.boot_params + 0x228), Ok(p.cmdline as u32));
        assert_eq!(mem.read_u64(p.entry.gdt_base + 0x10), Ok(0x00af_9b00_0000_ffff));
        assert_eq!(mem.read_u64(p.entry.cr3).map(|e| e & !0xfff), Ok(p.page_tables + 0x1000));
        // Bytes other than the plan's are refused; so is RAM too small for the plan.
        assert_eq!(p.write(&img, b"console", &initrd, &mut mem), Err(LinuxBootError::PlanMismatch));
        let mut small = vec![0u8; 0x10_0000];
        let mut small = SliceMemory::new(0, &mut small);
        assert_eq!(
            p.write(&img, cmdline, &initrd, &mut small),
            Err(LinuxBootError::OutsideRam(0x100_0000))
        );
    }

    /// The Debian cloud kernel the `linux` image boots, when the build tool has fetched
    /// it (`cargo xtask build --image linux` puts it in target/linux/), or the bzImage
    /// `LINUX_BZIMAGE` names.
    #[test]
    fn a_real_debian_kernel_parses_and_plans() {
        let path =
            std::env::var_os("LINUX_BZIMAGE").map(std::path::PathBuf::from).unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/linux/vmlinuz")
            });
        let Ok(bytes) = std::fs::read(&path) else {
            println!("SKIP: no bzImage at {}", path.display());
            return;
        };
        let img = LinuxImage::parse(&bytes).unwrap();
        println!(
            "{}: protocol {}.{:02}, {} bytes, kernel {:#x} bytes, pref_address {:#x}, \
             alignment {:#x}, init_size {:#x}, initrd_addr_max {:#x}, cmdline_size {}, \
             xloadflags {:#x}",
            path.display(),
            img.version >> 8,
            img.version & 0xff,
            bytes.len(),
            img.kernel().len(),
            img.pref_address,
            img.kernel_alignment,
            img.init_size,
            img.initrd_addr_max,
            img.cmdline_size,
            img.xloadflags
        );
        assert!(img.version >= 0x020c);
        let p = plan(&img, 128 << 20, b"console=ttyS0 nolapic acpi=off", 2 << 20).unwrap();
        assert_eq!(p.entry.rip, p.kernel + 0x200);
        assert!(p.initrd >= p.kernel_end);
        assert!(plan(&img, 32 << 20, b"", 0).is_err(), "init_size does not fit in 32 MiB");
    }
}
