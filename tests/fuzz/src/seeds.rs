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

/// A block as GRUB's EFI loader passes it: both memory maps (the kernel takes the EFI
/// one, whose loader and boot-services memory is free again), the EFI system table and
/// the ACPI 2.0 RSDP copy beside the 1.0 one.
fn uefi_like() -> Vec<u8> {
    let mut t = Vec::new();
    tag(&mut t, 1, b"\0");
    tag(&mut t, 2, b"GRUB 2.06\0");
    tag(&mut t, 3, &module(0x24_4000, 0x26_95c8, "init"));
    tag(&mut t, 6, &mmap(&[(0, 0xa_0000, 1), (0x10_0000, 0x70_0000, 1), (0x80_0000, 0x8000, 4)]));
    tag(&mut t, 12, &0xf9e_c018u64.to_le_bytes());
    tag(&mut t, 14, b"RSD PTR \0\0\0\0\0\0\0\0\0\0\0\0");
    tag(&mut t, 15, &[0x5a; 36]);
    let entries =
        [(7u32, 0u64, 0xa0u64), (2, 0x10_0000, 0x100), (4, 0x20_0000, 0x600), (10, 0x80_0000, 8)];
    tag(&mut t, 17, &kernel::multiboot2::builder::efi_map(48, &entries));
    block(&t)
}

/// Seeds for the `acpi` target: the VMM's tables for two CPUs as raw memory (the RSDP at
/// address 0), and `arbitrary` machines.
pub fn acpi() -> Vec<Seed> {
    use vmm_server::acpi::{build, AcpiConfig};
    let mut memory = vec![0u8; 0x1000];
    let mut raw = vec![0u8];
    if build(&AcpiConfig::standard(&[0, 1]), 0, &mut memory).is_ok() {
        raw.extend_from_slice(&memory);
    }
    let mut seeds = vec![("vmm-tables-two-cpus".into(), raw)];
    for i in 0..4 {
        let built = with_mode(crate::acpi_mode::BUILT, &pseudo_random(40 + i, 96));
        seeds.push((format!("built-random-{i}"), built));
    }
    seeds
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
        ("uefi-like".into(), with_mode(0, &uefi_like())),
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

/// A bzImage with the header fields the Linux loader reads: `setup_sects` setup sectors
/// (0 meaning 4), protocol 2.15, relocatable, 64-bit, preferring 16 MiB aligned to 2 MiB,
/// needing `init_size` there, with `kernel_len` bytes of kernel.
fn bzimage(setup_sects: u8, kernel_len: usize, init_size: u32, xloadflags: u16) -> Vec<u8> {
    let sectors = if setup_sects == 0 { 4 } else { usize::from(setup_sects) };
    let mut b = vec![0u8; (sectors + 1) * 512];
    let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    put(0x1f1, &[setup_sects]);
    put(0x1f4, &((kernel_len / 16) as u32).to_le_bytes());
    put(0x1fe, &0xaa55u16.to_le_bytes());
    put(0x200, &[0xeb, 0x6a]);
    put(0x202, b"HdrS");
    put(0x206, &0x020fu16.to_le_bytes());
    put(0x211, &[0x01]);
    put(0x22c, &0x7fff_ffffu32.to_le_bytes());
    put(0x230, &0x20_0000u32.to_le_bytes());
    put(0x234, &[1]);
    put(0x236, &xloadflags.to_le_bytes());
    put(0x238, &2047u32.to_le_bytes());
    put(0x258, &0x100_0000u64.to_le_bytes());
    put(0x260, &init_size.to_le_bytes());
    b.extend(pseudo_random(u64::from(init_size), kernel_len));
    b
}

/// A `guest_image` input for the Linux loader: RAM in MiB, the initramfs's length, the
/// command line, the bzImage.
fn linux_input(ram_mib: u32, initrd_len: u32, cmdline: &str, image: &[u8]) -> Vec<u8> {
    let mut b = (ram_mib << 8).to_le_bytes().to_vec();
    b.extend(initrd_len.to_le_bytes());
    b.push(cmdline.len() as u8);
    b.extend(cmdline.as_bytes());
    b.extend(image);
    b
}

/// Seeds for `guest_image` besides the checked-in ELF guests: bzImages for the Linux
/// loader, one shaped like Debian's cloud kernel (39 setup sectors, every xloadflag,
/// 51.5 MiB of `init_size`) in a 128 MiB VM.
pub fn guest_image() -> Vec<Seed> {
    let cmdline = "console=ttyS0 nolapic acpi=off";
    vec![
        (
            "linux-minimal".into(),
            linux_input(32, 0x3000, cmdline, &bzimage(1, 0x800, 0x40_0000, 1)),
        ),
        ("linux-setup-sects-0".into(), linux_input(64, 0, "", &bzimage(0, 0x400, 0x20_0000, 3))),
        (
            "linux-debian-like".into(),
            linux_input(128, 0xf_f000, cmdline, &bzimage(39, 0x1000, 0x337_8000, 0x7f)),
        ),
    ]
}

/// Seeds for a target that decodes its input with `arbitrary`.
pub fn structured(salt: u64) -> Vec<Seed> {
    [64usize, 256, 1024]
        .iter()
        .enumerate()
        .map(|(i, &len)| (format!("random-{len}"), pseudo_random(salt * 16 + i as u64, len)))
        .collect()
}

/// Seeds for the `syscalls` target: short scenarios that reach the interesting states
/// (two threads talking, revocation, nested untyped, a vCPU round trip, faults), which
/// random bytes would take long to find.
pub fn syscalls() -> Vec<Seed> {
    use crate::syscalls::{which, Info, Op, Word, Writer};
    use protocols::object::{vcpu_mode, Invocation as I, ObjectType as T};
    use protocols::syscall::Syscall as S;
    const CNODE: u64 = 2;
    const VSPACE: u64 = 3;
    const UNTYPED: u64 = 4;
    let w = |v: u64| Word(v);
    let inv = |i: I, slot: u64, words: &[u64]| {
        let mut ws = [Word(0); 4];
        for (d, s) in ws.iter_mut().zip(words) {
            *d = Word(*s);
        }
        Op::Invoke { which: which(i), slot: Word(slot), len: words.len() as u8, words: ws }
    };
    let sys = |n: S, slot: u64, label: u64, words: &[u64]| {
        let mut ws = [Word(0); 4];
        for (d, s) in ws.iter_mut().zip(words) {
            *d = Word(*s);
        }
        let info = Info { label: Word(label), flags: words.len() as u8 };
        Op::Syscall {
            number: n as u8,
            rdi: Word(slot),
            info,
            words: ws,
            r12: w(0),
            r13: w(0),
            fast: true,
        }
    };
    let retype = |ty: T, bits: u8, dst: u64, count: u8| Op::Retype {
        untyped: w(UNTYPED),
        ty: ty as u8,
        bits,
        dst: w(dst),
        count,
    };
    let spawn = |dst: u64, fault: u64, priority: u8| Op::Spawn {
        dst: w(dst),
        cspace: w(CNODE),
        vspace: w(VSPACE),
        fault: w(fault),
        priority,
    };
    let all = 0x1f;
    let mut seeds = Vec::new();
    let mut add = |name: &str, vmx: bool, ops: &[crate::syscalls::Op]| {
        let mut wr = Writer::new(vmx);
        for op in ops {
            wr.op(op);
        }
        seeds.push((name.to_string(), wr.bytes));
    };
    // A server thread receives a badged call and replies (fastpath both ways), then a
    // capability travels with the grant right.
    let mut grant = sys(S::Send, 21, 5, &[1]);
    if let Op::Syscall { info, r12, .. } = &mut grant {
        info.flags |= 8;
        *r12 = w(22);
    }
    add(
        "ipc",
        false,
        &[
            retype(T::Endpoint, 0, 20, 1),
            inv(I::CNodeMint, CNODE, &[20, 21, all, 0xbeef]),
            spawn(30, u64::MAX, 100),
            sys(S::Yield, 0, 0, &[]),
            sys(S::Recv, 20, 0, &[]),
            sys(S::Call, 21, 7, &[11, 22, 33]),
            sys(S::ReplyRecv, 20, 9, &[555]),
            retype(T::Notification, 0, 22, 1),
            grant,
            sys(S::Yield, 0, 0, &[]),
        ],
    );
    // Two CPUs: a server moved to CPU 1 answers a call from CPU 0 (the slow path both
    // ways, a reschedule IPI each way); a thread spinning there is given new registers,
    // moved back and suspended from CPU 0.
    let cpu = |which: u8| Op::Cpu { which };
    add(
        "two-cpus",
        false,
        &[
            retype(T::Endpoint, 0, 20, 1),
            inv(I::CNodeMint, CNODE, &[20, 21, all, 0xbeef]),
            spawn(30, u64::MAX, 100),
            inv(I::TcbSetAffinity, 30, &[1]),
            cpu(1),
            sys(S::Recv, 20, 0, &[]),
            cpu(0),
            sys(S::Call, 21, 7, &[11, 22, 33]),
            cpu(1),
            sys(S::ReplyRecv, 20, 9, &[555]),
            cpu(0),
            spawn(31, u64::MAX, 50),
            inv(I::TcbSetAffinity, 31, &[1]),
            cpu(1),
            cpu(0),
            inv(I::TcbWriteRegisters, 31, &[0x40_1000, 0, 5]),
            inv(I::TcbSetAffinity, 31, &[0]),
            inv(I::TcbSetAffinity, 31, &[1]),
            cpu(1),
            cpu(0),
            inv(I::TcbSuspend, 31, &[]),
            inv(I::TcbSetAffinity, 1, &[1]),
            cpu(1),
            sys(S::Yield, 0, 0, &[]),
        ],
    );
    // Copies with fewer rights and a badge, then the original revoked.
    add(
        "revoke",
        false,
        &[
            retype(T::Notification, 0, 20, 1),
            inv(I::CNodeMint, CNODE, &[20, 21, all, 1]),
            inv(I::CNodeCopy, CNODE, &[21, 22, 1]),
            inv(I::CNodeCopy, CNODE, &[22, 23, all]),
            sys(S::Send, 21, 0, &[]),
            sys(S::NbRecv, 20, 0, &[]),
            inv(I::CNodeRevoke, CNODE, &[20]),
            sys(S::Send, 22, 0, &[]),
        ],
    );
    // Deep CNode chains: a delete that stops at a preemption point, met by a copy and
    // continued; a thread whose CSpace is a chain; a revoke of the untyped finishing the
    // rest.
    add(
        "deep-chain",
        false,
        &[
            Op::Chain { untyped: w(UNTYPED), dst: w(20), depth: 250 },
            Op::Chain { untyped: w(UNTYPED), dst: w(30), depth: 200 },
            inv(I::CNodeDelete, CNODE, &[20]),
            inv(I::CNodeCopy, CNODE, &[20, 22, all]),
            inv(I::CNodeDelete, CNODE, &[20]),
            Op::Spawn {
                dst: w(40),
                cspace: w(30),
                vspace: w(VSPACE),
                fault: w(u64::MAX),
                priority: 1,
            },
            inv(I::CNodeDelete, CNODE, &[30]),
            inv(I::CNodeDelete, CNODE, &[40]),
            inv(I::CNodeRevoke, CNODE, &[UNTYPED]),
            retype(T::CNode, 1, 20, 1),
        ],
    );
    // A nested untyped filled with TCBs, revoked and filled again.
    add(
        "untyped",
        false,
        &[
            retype(T::Endpoint, 0, 15, 1),
            retype(T::Untyped, 14, 16, 1),
            inv(I::UntypedRetype, 16, &[T::Tcb as u64, 0, 20, 3]),
            inv(I::UntypedRetype, 16, &[T::Tcb as u64, 0, 23, 2]),
            inv(I::CNodeRevoke, CNODE, &[16]),
            inv(I::UntypedRetype, 16, &[T::CNode as u64, 4, 20, 1]),
            inv(I::CNodeMove, 20, &[15, 3]),
            inv(I::CNodeDelete, CNODE, &[20]),
        ],
    );
    // Large frames: retyped past a small object (aligned up to 2 MiB), mapped as 2 MiB
    // pages, refused over a table and under a large page, unmapped, remapped, revoked.
    add(
        "large-frames",
        false,
        &[
            retype(T::Endpoint, 0, 15, 1),
            retype(T::LargeFrame, 0, 16, 1),
            retype(T::LargeFrame, 0, 17, 1),
            retype(T::VSpace, 14, 18, 1),
            inv(I::FrameMap, 16, &[VSPACE, 0x80_0000, map_write()]),
            inv(I::FrameMap, 16, &[VSPACE, 0x40_0000, 0]),
            inv(I::CNodeCopy, CNODE, &[16, 19, all]),
            inv(I::FrameMap, 19, &[18, 0x20_0000, 0]),
            inv(I::FrameMap, 19, &[18, 0x30_0000, 0]),
            inv(I::FrameUnmap, 16, &[]),
            inv(I::FrameMap, 16, &[VSPACE, 0xa0_0000, map_write()]),
            inv(I::CNodeRevoke, CNODE, &[16]),
            inv(I::CNodeDelete, CNODE, &[16]),
            inv(I::CNodeRevoke, CNODE, &[UNTYPED]),
        ],
    );
    // A large frame in a guest space: a 2 MiB EPT leaf, then a 4 KiB frame refused under
    // it, unmapped by deletion.
    add(
        "large-guest-frames",
        true,
        &[
            retype(T::GuestSpace, 14, 16, 1),
            retype(T::Frame, 0, 17, 1),
            retype(T::LargeFrame, 0, 18, 1),
            inv(I::FrameMapGuest, 18, &[16, 0x20_0000, map_write()]),
            inv(I::FrameMapGuest, 17, &[16, 0x20_1000, 0]),
            inv(I::FrameMapGuest, 17, &[16, 0x40_0000, 0]),
            inv(I::FrameMapGuest, 18, &[16, 0x40_0000, 0]),
            inv(I::CNodeDelete, CNODE, &[18]),
            inv(I::FrameMapGuest, 17, &[16, 0x20_1000, 0]),
        ],
    );
    // Frames mapped into a new address space and the root's, a thread on it, faults.
    add(
        "frames-and-faults",
        false,
        &[
            retype(T::VSpace, 14, 17, 1),
            retype(T::Frame, 0, 18, 2),
            inv(I::FrameMap, 18, &[17, 0x40_0000, map_write()]),
            inv(I::FrameMap, 19, &[VSPACE, 0x7fff_ffff_e000, 0]),
            retype(T::Endpoint, 0, 20, 1),
            Op::Spawn { dst: w(30), cspace: w(CNODE), vspace: w(17), fault: w(20), priority: 100 },
            sys(S::Recv, 20, 0, &[]),
            Op::Fault { vector: 14, error: w(6), addr: w(0x1000) },
            sys(S::Reply, 0, 1, &[0x40_0000]),
            inv(I::CNodeRevoke, CNODE, &[17]),
            inv(I::CNodeDelete, CNODE, &[17]),
            sys(S::DebugWrite, 0x40_0000, 0, &[]),
        ],
    );
    // A vCPU: an exit reaches the VMM, a valid batch resumes the guest, a tick, a
    // forbidden batch is refused, and the vCPU is deleted while it waits.
    let exit = |reason: u64, kind: u8| Op::Exit {
        kind,
        reason: w(reason),
        qualification: w(0),
        len: 2,
        real: true,
        cr0: w(0),
        cr4: w(0),
        rflags: w(0),
        rip: w(0),
        interruptibility: 0,
        gprs: [w(1), w(2)],
    };
    let reply = |flags: u8, writes: Vec<(u8, Word)>| Op::ReplyArea {
        frame: w(43),
        flags,
        count: writes.len() as u8,
        gpr_mask: 1,
        injection: w(0),
        gprs: [w(0x1234), w(0)],
        writes,
    };
    let field = |f: protocols::vmcs::Field| {
        protocols::vmcs::Field::ALL.iter().position(|x| *x == f).unwrap_or(0) as u8
    };
    use protocols::vmcs::Field as F;
    // Index 10 of `ExitReason::ALL` is CPUID in SDM order (0, 1, 2, ... 10).
    let cpuid = protocols::vmexit::ExitReason::ALL
        .iter()
        .position(|r| *r == protocols::vmexit::ExitReason::Cpuid)
        .unwrap_or(0) as u64;
    add(
        "vcpu",
        true,
        &[
            Op::VcpuSetup {
                base: w(40),
                mode: vcpu_mode::REAL as u8,
                priority: 50,
                mask: 0,
                controls: 0,
            },
            sys(S::Recv, 42, 0, &[]),
            exit(cpuid, 0),
            reply(1, vec![]),
            sys(S::ReplyRecv, 42, 0, &[]),
            exit(0, 6),
            exit(cpuid, 0),
            reply(0, vec![(field(F::GuestRip), w(0x2000)), (field(F::HostRip), w(0x4141_4000))]),
            sys(S::ReplyRecv, 42, 0, &[]),
            inv(I::VCpuStart, 40, &[vcpu_mode::REAL | 50 << 8, 0x1000, 0x8000, 0]),
            sys(S::Recv, 42, 0, &[]),
            exit(cpuid, 0),
            inv(I::CNodeDelete, CNODE, &[40]),
            inv(I::CNodeRevoke, CNODE, &[UNTYPED]),
        ],
    );
    // A VMM's replies and what becomes of the vCPU: an exit queued while the VMM sleeps,
    // a reply that stops the vCPU, one refused by its header, one through a Reply object,
    // a VMX failure (the vCPU's last word), and a reply after the message frame is gone.
    let start = |slot: u64| inv(I::VCpuStart, slot, &[vcpu_mode::REAL | 50 << 8, 0x1000, 0x8000, 0]);
    add(
        "vcpu-replies",
        true,
        &[
            Op::VcpuSetup {
                base: w(40),
                mode: vcpu_mode::REAL as u8,
                priority: 50,
                mask: 0,
                controls: 0,
            },
            inv(I::IrqControlGet, 5, &[4, 25]),
            retype(T::Notification, 0, 26, 1),
            inv(I::IrqHandlerSetNotification, 25, &[26]),
            inv(I::IrqHandlerAck, 25, &[]),
            sys(S::Recv, 26, 0, &[]),
            exit(cpuid, 0),
            Op::Irq { lines: 0x10 },
            sys(S::Recv, 42, 0, &[]),
            reply(1 << 3, vec![]),
            sys(S::Reply, 0, 0, &[]),
            start(40),
            sys(S::Recv, 42, 0, &[]),
            exit(cpuid, 0),
            reply(1 << 4, vec![]),
            sys(S::Reply, 0, 0, &[]),
            start(40),
            retype(T::Reply, 0, 27, 1),
            sys(S::Recv, 42, 0, &[]),
            exit(cpuid, 0),
            inv(I::ReplySave, 27, &[]),
            reply(1, vec![]),
            sys(S::Send, 27, 0, &[]),
            inv(I::IrqHandlerAck, 25, &[]),
            sys(S::Recv, 26, 0, &[]),
            exit(3, 7),
            Op::Irq { lines: 0x10 },
            sys(S::Recv, 42, 0, &[]),
            start(40),
            sys(S::Recv, 42, 0, &[]),
            exit(cpuid, 0),
            inv(I::CNodeRevoke, CNODE, &[43]),
            sys(S::Reply, 0, 0, &[]),
        ],
    );
    // A driver: ports carved from the root's range and used, an IRQ line bound to a
    // notification, the thread idles until the interrupt wakes it.
    add(
        "irq-and-ports",
        false,
        &[
            inv(I::IoPortsCarve, 11, &[0x3f8, 0x3ff, 24]),
            inv(I::IoPortOut, 24, &[0x3f9, 1, 0x01]),
            inv(I::IoPortIn, 24, &[0x3fd, 1]),
            inv(I::IrqControlGet, 5, &[4, 25]),
            retype(T::Notification, 0, 26, 1),
            inv(I::IrqHandlerSetNotification, 25, &[26]),
            inv(I::IrqHandlerAck, 25, &[]),
            sys(S::Recv, 26, 0, &[]),
            Op::Irq { lines: 0x10 },
            inv(I::IrqHandlerAck, 25, &[]),
            inv(I::CNodeRevoke, CNODE, &[26]),
            Op::Irq { lines: 0x10 },
        ],
    );
    model_seeds(&mut add);
    seeds
}

/// Scenarios for the parts of the model the first seeds do not reach: each right and its
/// refusal, re-minting, a transfer through a capability without the grant right, the
/// fastpath with a higher-priority thread ready, Reply objects, IPC buffers, an IRQ bound
/// to a notification, and operands named by kind rather than by slot.
fn model_seeds(add: &mut impl FnMut(&str, bool, &[crate::syscalls::Op])) {
    use crate::syscalls::{which, Info, Kind, Op, Word};
    use protocols::object::{Invocation as I, ObjectType as T};
    use protocols::syscall::Syscall as S;
    const TCB: u64 = 1;
    const CNODE: u64 = 2;
    const VSPACE: u64 = 3;
    const UNTYPED: u64 = 4;
    const IRQ_CONTROL: u64 = protocols::bootinfo::slot::IRQ_CONTROL;
    let (read, write, grant, call, all) = (1u64, 2u64, 4u64, 8u64, 0x1fu64);
    let w = |v: u64| Word(v);
    let words = |ws: &[u64]| {
        let mut out = [Word(0); 4];
        for (d, s) in out.iter_mut().zip(ws) {
            *d = Word(*s);
        }
        out
    };
    let inv = |i: I, slot: u64, ws: &[u64]| Op::Invoke {
        which: which(i),
        slot: Word(slot),
        len: ws.len() as u8,
        words: words(ws),
    };
    // A syscall with the message length in `len` (beyond 4: the IPC buffer), the grant
    // flag, and the transfer slots.
    let msg = |n: S, slot: Word, label: u64, len: u8, ws: &[u64], r12: u64, r13: u64, g: bool| {
        let flags = (len & 7) | (len >> 3) << 5 | if g { 8 } else { 0 };
        Op::Syscall {
            number: n as u8,
            rdi: slot,
            info: Info { label: Word(label), flags },
            words: words(ws),
            r12: Word(r12),
            r13: Word(r13),
            fast: true,
        }
    };
    let sys = |n: S, slot: u64, label: u64, ws: &[u64]| {
        msg(n, Word(slot), label, ws.len() as u8, ws, 0, 0, false)
    };
    let retype = |ty: T, bits: u8, dst: u64, count: u8| Op::Retype {
        untyped: w(UNTYPED),
        ty: ty as u8,
        bits,
        dst: w(dst),
        count,
    };
    let spawn = |dst: u64, priority: u8| Op::Spawn {
        dst: w(dst),
        cspace: w(CNODE),
        vspace: w(VSPACE),
        fault: w(u64::MAX),
        priority,
    };
    // Each endpoint right alone: sends, calls and receives through copies that lack the
    // right they need are refused.
    add(
        "rights",
        false,
        &[
            retype(T::Endpoint, 0, 20, 1),
            inv(I::CNodeCopy, CNODE, &[20, 21, read]),
            inv(I::CNodeCopy, CNODE, &[20, 22, write | grant]),
            inv(I::CNodeCopy, CNODE, &[20, 23, call]),
            sys(S::NbSend, 21, 1, &[1]),
            sys(S::Send, 21, 1, &[1]),
            sys(S::NbSend, 22, 2, &[2]),
            sys(S::Call, 22, 3, &[3]),
            sys(S::NbRecv, 22, 0, &[]),
            sys(S::NbRecv, 21, 0, &[]),
            retype(T::Notification, 0, 24, 1),
            inv(I::CNodeCopy, CNODE, &[24, 25, read]),
            sys(S::NbSend, 25, 0, &[]),
            sys(S::Send, 24, 0, &[]),
            sys(S::NbRecv, 25, 0, &[]),
            sys(S::Call, 23, 4, &[4]),
        ],
    );
    // Badges: minted once, kept by copies, refused a second time and as 0.
    add(
        "remint",
        false,
        &[
            retype(T::Endpoint, 0, 20, 1),
            inv(I::CNodeMint, CNODE, &[20, 21, all, 5]),
            inv(I::CNodeMint, CNODE, &[21, 22, all, 6]),
            inv(I::CNodeCopy, CNODE, &[21, 23, write]),
            inv(I::CNodeMint, CNODE, &[23, 24, all, 7]),
            inv(I::CNodeMint, CNODE, &[20, 25, all, 0]),
            retype(T::Notification, 0, 26, 1),
            inv(I::CNodeMint, CNODE, &[26, 27, all, 3]),
            inv(I::CNodeMint, CNODE, &[27, 28, all, 9]),
            Op::Invoke {
                which: which(I::CNodeMint),
                slot: w(CNODE),
                len: 4,
                words: [Word::live(Kind::Ipc, 1), Word::free(0), w(all), w(11)],
            },
            sys(S::Send, 27, 0, &[]),
            sys(S::NbRecv, 26, 0, &[]),
        ],
    );
    // A server waits with a receive slot; a capability sent through a copy without the
    // grant right does not travel, one sent with it does.
    add(
        "grant",
        false,
        &[
            retype(T::Endpoint, 0, 20, 1),
            retype(T::Notification, 0, 22, 1),
            inv(I::CNodeCopy, CNODE, &[20, 21, read | write | call]),
            spawn(30, 100),
            sys(S::Yield, 0, 0, &[]),
            msg(S::Recv, w(20), 0, 0, &[], 0, 40, false),
            msg(S::Send, w(21), 1, 1, &[1], 22, 0, true),
            sys(S::Yield, 0, 0, &[]),
            msg(S::Recv, w(20), 0, 0, &[], 0, 41, false),
            msg(S::Send, w(20), 2, 1, &[2], 22, 0, true),
            sys(S::Yield, 0, 0, &[]),
            msg(S::Recv, w(20), 0, 0, &[], 0, 42, false),
            msg(S::Call, w(20), 3, 1, &[3], 21, 0, true),
        ],
    );
    // A call through the fastpath to a receiver of lower priority than a thread that is
    // ready: the slow path must run, and the ready thread next.
    add(
        "fastpath-priority",
        false,
        &[
            retype(T::Endpoint, 0, 20, 1),
            spawn(30, 100),
            sys(S::Yield, 0, 0, &[]),
            sys(S::Recv, 20, 0, &[]),
            inv(I::TcbSetPriority, 30, &[50]),
            spawn(31, 80),
            sys(S::Call, 20, 1, &[1, 2]),
            sys(S::Recv, 20, 0, &[]),
            sys(S::ReplyRecv, 20, 2, &[3]),
        ],
    );
    // A server puts a reply aside in a Reply object, takes another call, answers the
    // first through the object, and a reply held by a deleted object wakes its caller.
    add(
        "reply-object",
        false,
        &[
            retype(T::Endpoint, 0, 20, 1),
            retype(T::Reply, 0, 21, 2),
            spawn(30, 100),
            sys(S::Yield, 0, 0, &[]),
            sys(S::Recv, 20, 0, &[]),
            sys(S::Call, 20, 1, &[1, 2]),
            inv(I::ReplySave, 21, &[]),
            inv(I::ReplySave, 22, &[]),
            sys(S::Send, 21, 7, &[9]),
            sys(S::Send, 21, 8, &[10]),
            sys(S::Recv, 20, 0, &[]),
            sys(S::Call, 20, 2, &[3]),
            inv(I::ReplySave, 21, &[]),
            inv(I::CNodeDelete, CNODE, &[21]),
            sys(S::Recv, 20, 0, &[]),
            sys(S::Call, 20, 3, &[4]),
            inv(I::ReplySave, 22, &[]),
            inv(I::TcbSuspend, TCB, &[]),
            sys(S::Send, 22, 0, &[]),
        ],
    );
    // Long messages: both sides with IPC buffers, then the receiver without one (the
    // message is cut to the registers); a read-only frame is refused as a buffer.
    add(
        "ipc-buffers",
        false,
        &[
            retype(T::Endpoint, 0, 20, 1),
            retype(T::Frame, 0, 40, 2),
            inv(I::CNodeCopy, CNODE, &[40, 42, read]),
            spawn(30, 100),
            inv(I::TcbSetIpcBuffer, 30, &[40]),
            inv(I::TcbSetIpcBuffer, TCB, &[41]),
            inv(I::TcbSetIpcBuffer, 30, &[42]),
            sys(S::Yield, 0, 0, &[]),
            sys(S::Recv, 20, 0, &[]),
            msg(S::Call, w(20), 1, 10, &[1, 2, 3, 4], 0, 0, false),
            msg(S::ReplyRecv, w(20), 2, 64, &[5, 6, 7, 8], 0, 0, false),
            inv(I::TcbSetIpcBuffer, 30, &[u64::MAX]),
            msg(S::Send, w(20), 3, 9, &[9], 0, 0, false),
            inv(I::CNodeRevoke, CNODE, &[41]),
            inv(I::CNodeDelete, CNODE, &[40]),
        ],
    );
    // An IRQ line bound to a notification, with and without a badge, acknowledged,
    // fired, received, and its handler deleted.
    add(
        "irq-notification",
        false,
        &[
            retype(T::Notification, 0, 20, 1),
            inv(I::IrqControlGet, IRQ_CONTROL, &[3, 21]),
            inv(I::IrqControlGet, IRQ_CONTROL, &[3, 22]),
            inv(I::IrqControlGet, IRQ_CONTROL, &[0, 22]),
            inv(I::IrqHandlerSetNotification, 21, &[20]),
            inv(I::IrqHandlerAck, 21, &[]),
            Op::Irq { lines: 1 << 3 },
            sys(S::NbRecv, 20, 0, &[]),
            inv(I::CNodeMint, CNODE, &[20, 23, write, 0x40]),
            inv(I::IrqHandlerSetNotification, 21, &[23]),
            inv(I::IrqHandlerAck, 21, &[]),
            Op::Irq { lines: 1 << 3 },
            sys(S::Recv, 20, 0, &[]),
            inv(I::CNodeDelete, CNODE, &[21]),
            inv(I::IrqControlGet, IRQ_CONTROL, &[3, 21]),
        ],
    );
    // Operands named by kind: whatever earlier steps made, mutated indices still name a
    // capability of the kind an operation wants.
    let live = |k: Kind, i: u8| Word::live(k, i);
    add(
        "live-operands",
        false,
        &[
            Op::Retype {
                untyped: live(Kind::Untyped, 0),
                ty: 3,
                bits: 0,
                dst: Word::free(20),
                count: 2,
            },
            Op::Retype {
                untyped: live(Kind::Untyped, 0),
                ty: 4,
                bits: 0,
                dst: Word::free(20),
                count: 1,
            },
            Op::Invoke {
                which: which(I::CNodeMint),
                slot: w(CNODE),
                len: 4,
                words: [live(Kind::Endpoint, 0), Word::free(20), w(all), w(0x77)],
            },
            Op::Invoke {
                which: which(I::CNodeCopy),
                slot: live(Kind::CNode, 0),
                len: 3,
                words: [live(Kind::Ipc, 2), Word::free(21), w(read | write), w(0)],
            },
            Op::Spawn {
                dst: Word::free(20),
                cspace: live(Kind::CNode, 0),
                vspace: live(Kind::VSpace, 0),
                fault: live(Kind::Endpoint, 1),
                priority: 100,
            },
            sys(S::Yield, 0, 0, &[]),
            msg(S::Recv, live(Kind::Endpoint, 0), 0, 0, &[], 0, 0, false),
            msg(S::Call, live(Kind::Endpoint, 0), 5, 2, &[1, 2], 0, 0, false),
            Op::Fault { vector: 14, error: w(2), addr: w(0x1000) },
            msg(S::NbSend, live(Kind::Notification, 0), 0, 0, &[], 0, 0, false),
            Op::Invoke {
                which: which(I::CNodeRevoke),
                slot: w(CNODE),
                len: 1,
                words: [live(Kind::Endpoint, 0), w(0), w(0), w(0)],
            },
        ],
    );
}

fn map_write() -> u64 {
    protocols::object::map::WRITE
}

/// Every target's seeds, by target name.
pub fn all(init: Option<&[u8]>) -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("multiboot2", multiboot2()),
        ("acpi", acpi()),
        ("elf_loader", elf_loader(init)),
        ("guest_image", guest_image()),
        ("frame_alloc", structured(1)),
        ("paging", structured(2)),
        ("protocols_messages", structured(3)),
        ("vmcs_validator", structured(4)),
        ("vmm_dispatch", structured(5)),
        ("syscalls", syscalls()),
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

#[cfg(test)]
mod tests {
    use vmm_server::linux_boot::{plan, LinuxImage};

    /// Each Linux seed reaches the end of the target's Linux path (parse, plan), read as
    /// the target reads it: RAM pages, initramfs length, command line, bzImage.
    #[test]
    fn the_linux_seeds_are_accepted_bzimages_that_fit() {
        for (name, b) in super::guest_image() {
            let ram = u64::from(u32::from_le_bytes(b[0..4].try_into().unwrap())) << 12;
            let initrd = u64::from(u32::from_le_bytes(b[4..8].try_into().unwrap()) & 0xf_ffff);
            let len = usize::from(b[8]);
            let (cmdline, file) = b[9..].split_at(len);
            let image = LinuxImage::parse(file).unwrap_or_else(|e| panic!("{name}: {e}"));
            plan(&image, ram, cmdline, initrd).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
