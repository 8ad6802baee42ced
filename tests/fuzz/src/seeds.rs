//! The checked-in seed corpus, as code: `examples/make_seeds.rs` writes these files to
//! `corpus/<target>/`, so every seed can be regenerated and reviewed.
//!
//! Byte-oriented targets get real-looking inputs built with the kernel's own test
//! builders (and the real `init` ELF when it has been built). Targets that decode their
//! input with `arbitrary` get a few fixed pseudo-random byte strings: `arbitrary` has no
//! encoder, and any bytes decode to some operation sequence that libFuzzer then grows.

use kernel::elf_loader::sample::image;
use kernel::multiboot2::builder::{block, tag};
use kernel::multiboot2::BOOTLOADER_MAGIC;

use crate::multiboot2_mode::{BUILT, RAW_WITH_MAGIC};

/// One seed file: its name in the target's corpus folder and its bytes.
pub type Seed = (String, Vec<u8>);

const X86_64: u16 = 0x3e;
/// `hlt` bytes standing in for code.
const CODE: &[u8] = &[0xf4; 16];

fn mmap(entries: &[(u64, u64, u32)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&24u32.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    for (base, len, kind) in entries {
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&kind.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
    }
    body
}

fn module(start: u32, end: u32, name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&start.to_le_bytes());
    body.extend_from_slice(&end.to_le_bytes());
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body
}

/// A block like the one GRUB hands the kernel under QEMU: command line, boot loader name,
/// the `init` module and a PC memory map.
fn grub_like() -> Vec<u8> {
    let mut t = Vec::new();
    tag(&mut t, 1, b"\0");
    tag(&mut t, 2, b"GRUB 2.12\0");
    tag(&mut t, 3, &module(0x11_a000, 0x12_4000, "init"));
    tag(
        &mut t,
        6,
        &mmap(&[
            (0, 0x9_fc00, 1),
            (0x9_fc00, 0x400, 2),
            (0xf_0000, 0x1_0000, 2),
            (0x10_0000, 0x7ee_0000, 1),
            (0x7fe_0000, 0x2_0000, 2),
            (0xfffc_0000, 0x4_0000, 2),
        ]),
    );
    // Tags the kernel skips (framebuffer info, ACPI RSDP) still have to be walked past.
    tag(&mut t, 8, &[0u8; 24]);
    tag(&mut t, 14, b"RSD PTR \0\0\0\0\0\0\0\0\0\0\0\0");
    block(&t)
}

/// A block with several modules, two memory maps and a larger entry size.
fn many_modules() -> Vec<u8> {
    let mut t = Vec::new();
    tag(&mut t, 1, b"console=serial loglevel=9\0");
    for (i, name) in ["init", "vmm", "guest", "manifest"].iter().enumerate() {
        let start = 0x20_0000 + 0x1_0000 * i as u32;
        tag(&mut t, 3, &module(start, start + 0x8000, name));
    }
    let mut wide = Vec::new();
    wide.extend_from_slice(&32u32.to_le_bytes());
    wide.extend_from_slice(&0u32.to_le_bytes());
    for (base, len, kind) in [(0u64, 0x8_0000u64, 1u32), (0x10_0000, 0x100_0000, 1)] {
        wide.extend_from_slice(&base.to_le_bytes());
        wide.extend_from_slice(&len.to_le_bytes());
        wide.extend_from_slice(&kind.to_le_bytes());
        wide.extend_from_slice(&[0u8; 12]);
    }
    tag(&mut t, 6, &wide);
    tag(&mut t, 6, &mmap(&[(0x1_0000_0000, 0x4000_0000, 1), (0xfee0_0000, 0x1000, 4)]));
    block(&t)
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

/// Seeds for the `multiboot2` target.
pub fn multiboot2() -> Vec<Seed> {
    let mut wrong_magic = vec![RAW_WITH_MAGIC];
    wrong_magic.extend_from_slice(&0x2bad_b002u32.to_le_bytes());
    wrong_magic.extend_from_slice(&grub_like());
    let mut right_magic = vec![RAW_WITH_MAGIC];
    right_magic.extend_from_slice(&BOOTLOADER_MAGIC.to_le_bytes());
    right_magic.extend_from_slice(&block(&[]));
    vec![
        ("grub-like".into(), with_mode(0, &grub_like())),
        ("many-modules".into(), with_mode(0, &many_modules())),
        ("empty-block".into(), right_magic),
        ("multiboot1-magic".into(), wrong_magic),
        ("built-random".into(), with_mode(BUILT, &pseudo_random(1, 384))),
    ]
}

/// The real `init` with its section table and debug information dropped: the bytes up
/// to the end of its last loadable segment, which is all `plan` reads.
pub fn trimmed_elf(elf: &[u8]) -> Option<Vec<u8>> {
    let word = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let half = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = usize::try_from(word(32)?).ok()?;
    let phnum = usize::from(half(56)?);
    let mut end = phoff + 56 * phnum;
    for i in 0..phnum {
        let ph = phoff + 56 * i;
        end = end.max(usize::try_from(word(ph + 8)? + word(ph + 32)?).ok()?);
    }
    let mut out = elf.get(..end)?.to_vec();
    // e_shoff, e_shnum, e_shstrndx: no section table any more.
    out.get_mut(40..48)?.fill(0);
    out.get_mut(60..64)?.fill(0);
    Some(out)
}

/// Seeds for the `elf_loader` target; `init` is the built root task, if any.
pub fn elf_loader(init: Option<&[u8]>) -> Vec<Seed> {
    let mut seeds: Vec<Seed> = vec![
        (
            "code-and-data".into(),
            image(0x40_0000, X86_64, &[(0x40_0000, 5, CODE, 16), (0x40_1000, 6, b"data", 0x2000)]),
        ),
        (
            "three-segments".into(),
            image(
                0x40_1004,
                X86_64,
                &[
                    (0x40_0000, 4, b"rodata", 6),
                    (0x40_1000, 5, CODE, 0x20),
                    (0x40_3000, 6, &[], 0x8000),
                ],
            ),
        ),
        (
            "top-of-user-space".into(),
            image(0x7fff_fffe_e000, X86_64, &[(0x7fff_fffe_e000, 5, CODE, 0x1000)]),
        ),
        ("writable-and-executable".into(), image(0x40_0000, X86_64, &[(0x40_0000, 7, CODE, 16)])),
        (
            "kernel-half".into(),
            image(0xffff_ffff_8010_0000, X86_64, &[(0xffff_ffff_8010_0000, 5, CODE, 16)]),
        ),
    ];
    if let Some(init) = init.and_then(trimmed_elf) {
        seeds.push(("init".into(), init));
    }
    seeds
}

/// Seeds for a target that decodes its input with `arbitrary`.
pub fn structured(salt: u64) -> Vec<Seed> {
    [64usize, 256, 1024]
        .iter()
        .enumerate()
        .map(|(i, &len)| (format!("random-{len}"), pseudo_random(salt * 16 + i as u64, len)))
        .collect()
}

/// Every target's seeds, by target name.
pub fn all(init: Option<&[u8]>) -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("multiboot2", multiboot2()),
        ("elf_loader", elf_loader(init)),
        ("frame_alloc", structured(1)),
        ("paging", structured(2)),
        ("protocols_messages", structured(3)),
        ("vmcs_validator", structured(4)),
        ("vmm_dispatch", structured(5)),
    ]
}

/// Deterministic bytes (xorshift64*), so regenerating the corpus changes nothing.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}
