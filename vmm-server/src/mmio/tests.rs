//! Host tests of MMIO emulation: the decoder's view of the encodings a guest uses on
//! device registers, the register-write rules, and whole exits against a register file.

use protocols::vmexit::{ExitMessage, ExitReason, ExitReply, Gprs, TransferMask};

use super::decode::{decode, Access, CodeSize, DecodeFailure, Decoded, Extend, Gpr, Part, Source};
use super::fetch::FetchError;
use super::{emulate, MmioContext, MmioError};
use crate::bus::{Bus, DeviceMap};
use crate::guest_memory::GuestMemory;
use crate::reply::ReplyBuilder;
use crate::testing::Ram;

const fn gpr(index: u8, part: Part) -> Gpr {
    Gpr { index, part }
}

fn load(dest: Gpr, width: u8, extend: Extend, len: u8) -> Result<Decoded, DecodeFailure> {
    Ok(Decoded { access: Access::Load { dest, width, extend }, len })
}

fn store(source: Source, width: u8, len: u8) -> Result<Decoded, DecodeFailure> {
    Ok(Decoded { access: Access::Store { source, width }, len })
}

#[test]
fn decodes_64_bit_loads_and_stores() {
    use Extend::{Sign, Zero};
    use Part::{Full, High8, Low16, Low32, Low8};
    let b64 = |bytes: &[u8]| decode(bytes, CodeSize::Bits64);
    // mov eax, [rip + disp32]; mov eax, [abs32] through a SIB byte.
    assert_eq!(b64(&[0x8b, 0x05, 0x30, 0, 0xe0, 0xfe]), load(gpr(0, Low32), 4, Zero, 6));
    assert_eq!(b64(&[0x8b, 0x04, 0x25, 0x30, 0, 0xe0, 0xfe]), load(gpr(0, Low32), 4, Zero, 7));
    assert_eq!(b64(&[0x48, 0x8b, 0x03]), load(gpr(0, Full), 8, Zero, 3));
    assert_eq!(b64(&[0x4c, 0x8b, 0x3b]), load(gpr(15, Full), 8, Zero, 3));
    assert_eq!(b64(&[0x8a, 0x23]), load(gpr(0, High8), 1, Zero, 2), "mov ah, [rbx]");
    assert_eq!(b64(&[0x8a, 0x3b]), load(gpr(3, High8), 1, Zero, 2), "mov bh, [rbx]");
    assert_eq!(b64(&[0x40, 0x8a, 0x23]), load(gpr(4, Low8), 1, Zero, 3), "mov spl, [rbx]");
    assert_eq!(b64(&[0x44, 0x8a, 0x03]), load(gpr(8, Low8), 1, Zero, 3), "mov r8b, [rbx]");
    assert_eq!(b64(&[0x66, 0x8b, 0x0b]), load(gpr(1, Low16), 2, Zero, 3));
    // moffs: mov eax, [0xfee00030] with a 64-bit absolute address.
    let moffs = [0xa1, 0x30, 0, 0xe0, 0xfe, 0, 0, 0, 0];
    assert_eq!(b64(&moffs), load(gpr(0, Low32), 4, Zero, 9));
    assert_eq!(b64(&[0x0f, 0xb6, 0x03]), load(gpr(0, Low32), 1, Zero, 3), "movzx eax, byte");
    assert_eq!(b64(&[0x66, 0x0f, 0xb6, 0x03]), load(gpr(0, Low16), 1, Zero, 4));
    assert_eq!(b64(&[0x48, 0x0f, 0xbf, 0x03]), load(gpr(0, Full), 2, Sign, 4), "movsx rax, word");
    assert_eq!(b64(&[0x0f, 0xbe, 0x0b]), load(gpr(1, Low32), 1, Sign, 3), "movsx ecx, byte");
    assert_eq!(b64(&[0x48, 0x63, 0x03]), load(gpr(0, Full), 4, Sign, 3), "movsxd rax, dword");
    // Stores from registers and immediates.
    assert_eq!(b64(&[0x89, 0x03]), store(Source::Register(gpr(0, Low32)), 4, 2));
    assert_eq!(b64(&[0x88, 0x3b]), store(Source::Register(gpr(3, High8)), 1, 2), "mov [rbx], bh");
    assert_eq!(b64(&[0x4c, 0x89, 0x13]), store(Source::Register(gpr(10, Full)), 8, 3));
    let imm32 = [0xc7, 0x03, 0x78, 0x56, 0x34, 0x12];
    assert_eq!(b64(&imm32), store(Source::Immediate(0x1234_5678), 4, 6));
    let imm64 = [0x48, 0xc7, 0x03, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(b64(&imm64), store(Source::Immediate(u64::MAX), 8, 7), "sign-extended imm32");
    assert_eq!(b64(&[0x66, 0xc7, 0x03, 0x34, 0x12]), store(Source::Immediate(0x1234), 2, 5));
    let Ok(Decoded { access: Access::Store { source: Source::Immediate(imm), width: 1 }, len: 3 }) =
        b64(&[0xc6, 0x03, 0xab])
    else {
        panic!("mov byte [rbx], 0xab");
    };
    assert_eq!(imm & 0xff, 0xab);
}

#[test]
fn decodes_32_and_16_bit_code() {
    let b32 = |bytes: &[u8]| decode(bytes, CodeSize::Bits32);
    let b16 = |bytes: &[u8]| decode(bytes, CodeSize::Bits16);
    let eax = gpr(0, Part::Low32);
    assert_eq!(b32(&[0xa1, 0x30, 0, 0xe0, 0xfe]), load(eax, 4, Extend::Zero, 5));
    assert_eq!(
        b32(&[0x8b, 0x1d, 0x30, 0, 0xe0, 0xfe]),
        load(gpr(3, Part::Low32), 4, Extend::Zero, 6)
    );
    assert_eq!(b32(&[0x66, 0x89, 0x08]), store(Source::Register(gpr(1, Part::Low16)), 2, 3));
    assert_eq!(b16(&[0xa1, 0x30, 0]), load(gpr(0, Part::Low16), 2, Extend::Zero, 3));
    assert_eq!(b16(&[0x66, 0x8b, 0x07]), load(eax, 4, Extend::Zero, 3), "mov eax, [bx]");
    assert_eq!(b16(&[0xc6, 0x07, 0x01]).map(|d| d.len), Ok(3));
}

#[test]
fn refuses_everything_else() {
    let b64 = |bytes: &[u8]| decode(bytes, CodeSize::Bits64);
    let unsupported = Err(DecodeFailure::Unsupported);
    assert_eq!(b64(&[0x01, 0x03]), unsupported, "add [rbx], eax");
    assert_eq!(b64(&[0xf3, 0xa5]), unsupported, "rep movsd");
    assert_eq!(b64(&[0x8b, 0xc3]), unsupported, "mov eax, ebx: no memory operand");
    assert_eq!(b64(&[0x8e, 0x1b]), unsupported, "mov ds, [rbx]");
    assert_eq!(b64(&[0x8c, 0x1b]), unsupported, "mov [rbx], ds");
    assert_eq!(b64(&[0x0f, 0x10, 0x03]), unsupported, "movups xmm0, [rbx]");
    assert_eq!(b64(&[0x87, 0x03]), unsupported, "xchg [rbx], eax");
    assert_eq!(b64(&[0xf0, 0x89, 0x03]).ok(), None, "lock mov");
    assert_eq!(b64(&[0x8b, 0x04]), Err(DecodeFailure::Truncated));
    assert_eq!(b64(&[]), Err(DecodeFailure::Truncated));
}

#[test]
fn register_write_rules() {
    let full = 0x1122_3344_5566_7788;
    assert_eq!(gpr(0, Part::Low8).write(full, 0xab), 0x1122_3344_5566_77ab);
    assert_eq!(gpr(0, Part::High8).write(full, 0xab), 0x1122_3344_5566_ab88);
    assert_eq!(gpr(0, Part::Low16).write(full, 0xabcd), 0x1122_3344_5566_abcd);
    assert_eq!(gpr(0, Part::Low32).write(full, 0xffff_abcd), 0xffff_abcd);
    assert_eq!(gpr(0, Part::Full).write(full, 7), 7);
    assert_eq!(gpr(0, Part::High8).read(full), 0x77);
    assert_eq!(gpr(0, Part::Low16).read(full), 0x7788);
}

/// 64 bytes of registers behind key 0: reads return what was written.
struct Regs([u8; 64]);

impl DeviceMap<u8> for Regs {
    fn read(&mut self, _key: u8, offset: u64, data: &mut [u8]) {
        let at = offset as usize;
        data.copy_from_slice(&self.0[at..at + data.len()]);
    }
    fn write(&mut self, _key: u8, offset: u64, data: &[u8]) {
        let at = offset as usize;
        self.0[at..at + data.len()].copy_from_slice(data);
    }
}

const DEV: u64 = 0xfee0_0030;

/// An EPT violation (read or write) at `DEV` in flat 32-bit protected mode, paging off,
/// RIP 0x1000, with the groups the VMM's transfer table asks for.
fn exit(write: bool) -> ExitMessage {
    let mut m = ExitMessage {
        reason: ExitReason::EptViolation as u32,
        qualification: if write { 0x182 } else { 0x181 },
        guest_physical: DEV,
        rip: 0x1000,
        rflags: 2,
        cr0: 0x11,
        transfer: TransferMask::QUALIFICATION
            .union(TransferMask::GUEST_PHYSICAL)
            .union(TransferMask::CR3)
            .union(TransferMask::SEGMENTS),
        ..ExitMessage::default()
    };
    m.segments.regs[1].access_rights = 0xc09b;
    m
}

struct Setup {
    ram: Ram,
    bus: Bus<u8, 1>,
    regs: Regs,
}

impl Setup {
    fn new(code: &[u8]) -> Self {
        let mut ram = Ram(vec![0; 0x10000]);
        ram.write(0x1000, code).unwrap();
        let mut bus = Bus::new();
        bus.insert(0xfee0_0000, 0x40, 0).unwrap();
        Self { ram, bus, regs: Regs([0; 64]) }
    }

    fn run(&mut self, msg: &ExitMessage, efer: u64) -> (Result<(), MmioError>, ExitReply) {
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        let mut cache = super::decode_cache::DecodeCache::default();
        let ctx = MmioContext { efer, decoded: &mut cache };
        let result =
            emulate(msg, ctx, msg.guest_physical, &self.ram, &mut self.bus, &mut self.regs, &mut r);
        (result, r.finish())
    }
}

/// How far the reply moves RIP past the instruction (ADVANCE_RIP with its length).
fn advanced(r: &ExitReply) -> Option<u16> {
    r.flags.contains(protocols::vmexit::ReplyFlags::ADVANCE_RIP).then_some(r.advance_len)
}

fn gpr_of(r: &ExitReply, reg: u8) -> Option<u64> {
    (r.gpr_mask & (1 << reg) != 0).then(|| r.gprs.regs[usize::from(reg)])
}

#[test]
fn load_and_store_round_trip_in_protected_mode() {
    // mov [0xfee00030], ecx
    let mut s = Setup::new(&[0x89, 0x0d, 0x30, 0, 0xe0, 0xfe]);
    let mut m = exit(true);
    m.gprs.set(Gprs::RCX, 0xdead_beef_1234_5678);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[0x30..0x34], [0x78, 0x56, 0x34, 0x12]);
    assert_eq!(advanced(&r), Some(0x06));
    assert_eq!(r.gpr_mask, 0);
    // mov eax, [0xfee00030]: zero-extends into RAX.
    let mut s2 = Setup::new(&[0xa1, 0x30, 0, 0xe0, 0xfe]);
    s2.regs = s.regs;
    let mut m = exit(false);
    m.gprs.set(Gprs::RAX, u64::MAX);
    let (res, r) = s2.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert_eq!(gpr_of(&r, Gprs::RAX), Some(0x1234_5678));
    assert_eq!(advanced(&r), Some(0x05));
    assert_eq!(r.count, 0, "no VMCS write: the kernel moves RIP by the decoded length");
}

#[test]
fn narrow_loads_merge_and_sign_extend() {
    let mut s = Setup::new(&[0x8a, 0x25, 0x30, 0, 0xe0, 0xfe]); // mov ah, [abs]
    s.regs.0[0x30] = 0x9a;
    let mut m = exit(false);
    m.gprs.set(Gprs::RAX, 0x1111_2222_3333_4444);
    assert_eq!(s.run(&m, 0).1.gprs.regs[0], 0x1111_2222_3333_9a44);
    // movsx ecx, byte [abs]
    let mut s = Setup::new(&[0x0f, 0xbe, 0x0d, 0x30, 0, 0xe0, 0xfe]);
    s.regs.0[0x30] = 0x9a;
    m.gprs.set(Gprs::RCX, u64::MAX);
    let (_, r) = s.run(&m, 0);
    assert_eq!(gpr_of(&r, Gprs::RCX), Some(0xffff_ff9a));
    assert_eq!(advanced(&r), Some(0x07));
}

#[test]
fn long_mode_with_paging_and_an_interrupt_shadow() {
    // Identity-mapped 2 MiB page through tables at 0x2000..0x4000.
    let mut s = Setup::new(&[0x48, 0x8b, 0x1c, 0x25, 0x30, 0, 0xe0, 0xfe]); // mov rbx, [abs]
    s.ram.write(0x2000, &(0x3000u64 | 3).to_le_bytes()).unwrap();
    s.ram.write(0x3000, &(0x4000u64 | 3).to_le_bytes()).unwrap();
    s.ram.write(0x4000, &0x83u64.to_le_bytes()).unwrap();
    s.regs.0[0x30..0x38].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    let mut m = exit(false);
    m.cr0 = 0x8000_0011;
    m.cr3 = 0x2000;
    m.cr4 = 0x20;
    m.interruptibility = 1;
    m.segments.regs[1].access_rights = 0xa09b;
    let (res, r) = s.run(&m, 0x500);
    assert_eq!(res, Ok(()));
    assert_eq!(gpr_of(&r, Gprs::RBX), Some(0x0102_0304_0506_0708));
    assert_eq!(advanced(&r), Some(0x08));
    // ADVANCE_RIP makes the kernel drop the interrupt shadow, as retiring would.
    // The same RIP unmapped: a fetch error names the linear address.
    m.rip = 0x40_0000;
    assert_eq!(
        s.run(&m, 0x500).0,
        Err(MmioError::Fetch(FetchError::NotPresent { linear: 0x40_0000 }))
    );
}

#[test]
fn refusals_are_typed() {
    // add [abs], eax
    let mut s = Setup::new(&[0x01, 0x05, 0x30, 0, 0xe0, 0xfe]);
    let Err(MmioError::Unsupported(bytes)) = s.run(&exit(true), 0).0 else {
        panic!("add is refused");
    };
    assert_eq!(
        format!("{}", MmioError::Unsupported(bytes)),
        "unsupported instruction ADD (01 05 30 00 e0 fe)"
    );
    // A load the exit calls a write.
    let mut s = Setup::new(&[0xa1, 0x30, 0, 0xe0, 0xfe]);
    assert!(matches!(s.run(&exit(true), 0).0, Err(MmioError::DirectionMismatch(_))));
    // Executing from the device, and a page walk through it.
    let mut m = exit(false);
    m.qualification = 0x184;
    assert_eq!(s.run(&m, 0).0, Err(MmioError::InstructionFetch));
    m.qualification = 0x81;
    assert_eq!(s.run(&m, 0).0, Err(MmioError::PageWalk));
    // No CS: the code size is unknown.
    let mut m = exit(false);
    let segments = TransferMask::ANY_SEGMENTS.bits();
    m.transfer = TransferMask::from_bits(m.transfer.bits() & !segments).unwrap();
    assert_eq!(s.run(&m, 0).0, Err(MmioError::NeedsTransfer(TransferMask::CODE_SEGMENT)));
    // An instruction cut off by the end of RAM is a fetch error at the missing byte.
    let mut m = exit(false);
    m.rip = 0xfffe;
    s.ram.write(0xfffe, &[0x8b, 0x05]).unwrap();
    assert_eq!(s.run(&m, 0).0, Err(MmioError::Fetch(FetchError::Memory { gpa: 0x1_0000 })));
    // RIP in no RAM at all.
    m.rip = 0x2_0000;
    assert_eq!(s.run(&m, 0).0, Err(MmioError::Fetch(FetchError::Memory { gpa: 0x2_0000 })));
}

/// Any bytes, any exit: emulation returns, and a success always sets RIP.
#[test]
fn pseudo_random_instructions_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..20_000u32 {
        let mut code = [0u8; 15];
        for b in code.iter_mut() {
            *b = next() as u8;
        }
        let mut s = Setup::new(&code);
        let mut m = exit(next() & 1 == 0);
        m.segments.regs[1].access_rights = [0xc09b, 0xa09b, 0x009b][(i % 3) as usize];
        m.guest_physical = 0xfee0_0000 + (next() & 0x3f);
        let efer = if i % 3 == 1 { 0x500 } else { 0 };
        if efer != 0 {
            m.cr0 = 0x8000_0011;
            m.cr4 = 0x20;
            m.cr3 = 0x2000;
            s.ram.write(0x2000, &(0x3000u64 | 3).to_le_bytes()).unwrap();
            s.ram.write(0x3000, &(0x4000u64 | 3).to_le_bytes()).unwrap();
            s.ram.write(0x4000, &0x83u64.to_le_bytes()).unwrap();
        }
        let (res, r) = s.run(&m, efer);
        if res.is_ok() {
            assert!(advanced(&r).is_some_and(|len| (1..=15).contains(&len)));
        }
    }
}
