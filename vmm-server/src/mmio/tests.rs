//! Host tests of MMIO emulation: the decoder's view of the encodings a guest uses on
//! device registers, the register-write rules, and whole exits against a register file
//! (loads and stores, ALU results and flags, XCHG, MOVS/STOS with REP in every address
//! size); a model of the ALU opcode map run over random instructions; random bytes that
//! must never panic the emulator.

use protocols::vmcs::Field;
use protocols::vmexit::{ExitMessage, ExitReason, ExitReply, Gprs, TransferMask};

use super::decode::{
    decode, Access, CodeSize, DecodeFailure, Decoded, Extend, Gpr, Part, Source, StringKind,
    StringOp,
};
use super::fetch::FetchError;
use super::flags::{AluOp, AF, CF, OF, PF, SF, ZF};
use super::{emulate, MmioContext, MmioError};
use crate::bus::{Bus, DeviceMap};
use crate::guest_memory::GuestMemory;
use crate::paging::PageFault;
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

fn access(bytes: &[u8], size: CodeSize) -> Access {
    match decode(bytes, size) {
        Ok(d) => {
            assert_eq!(usize::from(d.len), bytes.len(), "{bytes:02x?}");
            d.access
        }
        Err(e) => panic!("{bytes:02x?}: {e:?}"),
    }
}

#[test]
fn decodes_alu_exchange_and_segment_stores() {
    use AluOp::{Add, And, Cmp, Or, Sub, Test, Xor};
    use Part::{Full, High8, Low16, Low32, Low8};
    let b64 = |bytes: &[u8]| access(bytes, CodeSize::Bits64);
    let alu_m = |op, source, width| Access::AluMemory { op, source, width };
    let alu_r = |op, dest, width| Access::AluRegister { op, dest, width };
    let eax = Source::Register(gpr(0, Low32));
    assert_eq!(b64(&[0x01, 0x03]), alu_m(Add, eax, 4), "add [rbx], eax");
    assert_eq!(b64(&[0x03, 0x03]), alu_r(Add, gpr(0, Low32), 4), "add eax, [rbx]");
    assert_eq!(b64(&[0x48, 0x83, 0x2b, 0x05]), alu_m(Sub, Source::Immediate(5), 8));
    assert_eq!(b64(&[0x48, 0x2b, 0x0b]), alu_r(Sub, gpr(1, Full), 8), "sub rcx, [rbx]");
    assert_eq!(b64(&[0x83, 0x3b, 0xff]), alu_m(Cmp, Source::Immediate(u64::MAX), 4));
    assert_eq!(b64(&[0x3a, 0x23]), alu_r(Cmp, gpr(0, High8), 1), "cmp ah, [rbx]");
    assert_eq!(b64(&[0x80, 0x23, 0x0f]), alu_m(And, Source::Immediate(0x0f), 1));
    assert_eq!(b64(&[0x66, 0x09, 0x03]), alu_m(Or, Source::Register(gpr(0, Low16)), 2));
    assert_eq!(b64(&[0x30, 0x23]), alu_m(Xor, Source::Register(gpr(0, High8)), 1));
    assert_eq!(b64(&[0x44, 0x30, 0x03]), alu_m(Xor, Source::Register(gpr(8, Low8)), 1));
    assert_eq!(b64(&[0x85, 0x03]), alu_m(Test, eax, 4), "test [rbx], eax");
    let Access::AluMemory { op: Test, source: Source::Immediate(imm), width: 1 } =
        b64(&[0xf6, 0x03, 0x80])
    else {
        panic!("test byte [rbx], 0x80");
    };
    assert_eq!(imm & 0xff, 0x80);
    let and_imm32 = [0x81, 0x23, 0x00, 0x00, 0x00, 0x80];
    assert_eq!(b64(&and_imm32), alu_m(And, Source::Immediate(0xffff_ffff_8000_0000), 4));
    // LOCK on the read-modify-write forms.
    assert_eq!(b64(&[0xf0, 0x01, 0x03]), alu_m(Add, eax, 4), "lock add [rbx], eax");
    assert_eq!(b64(&[0xf0, 0x48, 0x83, 0x2b, 0x05]), alu_m(Sub, Source::Immediate(5), 8));
    // XCHG either way round, locked or not.
    let xchg = |reg, width| Access::Exchange { reg, width };
    assert_eq!(b64(&[0x87, 0x03]), xchg(gpr(0, Low32), 4), "xchg [rbx], eax");
    assert_eq!(b64(&[0x86, 0x23]), xchg(gpr(0, High8), 1), "xchg [rbx], ah");
    assert_eq!(b64(&[0xf0, 0x48, 0x87, 0x0b]), xchg(gpr(1, Full), 8), "lock xchg [rbx], rcx");
    // MOV m16, Sreg and MOVNTI.
    let store = |source, width| Access::Store { source, width };
    assert_eq!(b64(&[0x8c, 0x1b]), store(Source::Segment(3), 2), "mov [rbx], ds");
    assert_eq!(b64(&[0x8c, 0x23]), store(Source::Segment(4), 2), "mov [rbx], fs");
    assert_eq!(b64(&[0x0f, 0xc3, 0x03]), store(eax, 4), "movnti [rbx], eax");
    // 32 and 16-bit code.
    let b32 = |bytes: &[u8]| access(bytes, CodeSize::Bits32);
    let b16 = |bytes: &[u8]| access(bytes, CodeSize::Bits16);
    assert_eq!(b32(&[0x09, 0x05, 0x30, 0, 0xe0, 0xfe]), alu_m(Or, eax, 4), "or [abs], eax");
    assert_eq!(b16(&[0x23, 0x07]), alu_r(And, gpr(0, Low16), 2), "and ax, [bx]");
    assert_eq!(b16(&[0x66, 0x87, 0x07]), xchg(gpr(0, Low32), 4), "xchg [bx], eax");
}

#[test]
fn decodes_string_instructions() {
    let string = |kind, width, address, rep, segment| {
        Access::String(StringOp { kind, width, address, rep, segment })
    };
    use StringKind::{Movs, Stos};
    let b64 = |bytes: &[u8]| access(bytes, CodeSize::Bits64);
    assert_eq!(b64(&[0xaa]), string(Stos, 1, 8, false, 3), "stosb");
    assert_eq!(b64(&[0xf3, 0x48, 0xab]), string(Stos, 8, 8, true, 3), "rep stosq");
    assert_eq!(b64(&[0xf3, 0xa5]), string(Movs, 4, 8, true, 3), "rep movsd");
    assert_eq!(b64(&[0x67, 0xa4]), string(Movs, 1, 4, false, 3), "movsb, 32-bit addresses");
    assert_eq!(b64(&[0x64, 0x66, 0xa5]), string(Movs, 2, 8, false, 4), "movsw from fs");
    let b32 = |bytes: &[u8]| access(bytes, CodeSize::Bits32);
    assert_eq!(b32(&[0xf3, 0xa4]), string(Movs, 1, 4, true, 3), "rep movsb");
    assert_eq!(b32(&[0x26, 0xf3, 0xa5]), string(Movs, 4, 4, true, 0), "rep movsd from es");
    assert_eq!(b32(&[0x67, 0xab]), string(Stos, 4, 2, false, 3), "stosd, 16-bit addresses");
    let b16 = |bytes: &[u8]| access(bytes, CodeSize::Bits16);
    assert_eq!(b16(&[0xa5]), string(Movs, 2, 2, false, 3), "movsw");
    assert_eq!(b16(&[0x66, 0x67, 0xf3, 0xab]), string(Stos, 4, 4, true, 3), "rep stosd");
}

#[test]
fn refuses_everything_else() {
    let b64 = |bytes: &[u8]| decode(bytes, CodeSize::Bits64);
    let unsupported = Err(DecodeFailure::Unsupported);
    assert_eq!(b64(&[0x11, 0x03]), unsupported, "adc [rbx], eax");
    assert_eq!(b64(&[0xff, 0x03]), unsupported, "inc dword [rbx]");
    assert_eq!(b64(&[0xf3, 0xa7]), unsupported, "repe cmpsd");
    assert_eq!(b64(&[0xad]), unsupported, "lodsd");
    assert_eq!(b64(&[0x8b, 0xc3]), unsupported, "mov eax, ebx: no memory operand");
    assert_eq!(b64(&[0x01, 0xc3]), unsupported, "add ebx, eax: no memory operand");
    assert_eq!(b64(&[0x8e, 0x1b]), unsupported, "mov ds, [rbx]");
    assert_eq!(b64(&[0x0f, 0x10, 0x03]), unsupported, "movups xmm0, [rbx]");
    assert_eq!(b64(&[0x0f, 0xb1, 0x03]), unsupported, "cmpxchg [rbx], eax");
    // LOCK where the CPU raises #UD.
    assert_eq!(b64(&[0xf0, 0x89, 0x03]).ok(), None, "lock mov");
    assert_eq!(b64(&[0xf0, 0x39, 0x03]).ok(), None, "lock cmp");
    assert_eq!(b64(&[0xf0, 0x85, 0x03]).ok(), None, "lock test");
    assert_eq!(b64(&[0xf0, 0x03, 0x03]).ok(), None, "lock add eax, [rbx]");
    assert_eq!(b64(&[0xf0, 0xf3, 0xab]).ok(), None, "lock rep stosd");
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
        let mut sites = super::site_cache::SiteCache::default();
        let ctx = MmioContext { efer, decoded: &mut cache, sites: &mut sites };
        let result = emulate(
            msg,
            ctx,
            msg.guest_physical,
            &mut self.ram,
            &mut self.bus,
            &mut self.regs,
            &mut r,
        );
        (result, r.finish())
    }
}

fn written(r: &ExitReply, f: Field) -> Option<u64> {
    r.writes().iter().find(|w| w.field == f as u32).map(|w| w.value)
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
    // adc [abs], eax
    let mut s = Setup::new(&[0x11, 0x05, 0x30, 0, 0xe0, 0xfe]);
    let Err(MmioError::Unsupported(bytes)) = s.run(&exit(true), 0).0 else {
        panic!("adc is refused");
    };
    assert_eq!(
        format!("{}", MmioError::Unsupported(bytes)),
        "unsupported instruction ADC (11 05 30 00 e0 fe)"
    );
    // lock mov: the CPU raises #UD; the bytes are named.
    let mut s = Setup::new(&[0xf0, 0x89, 0x05, 0x30, 0, 0xe0, 0xfe]);
    let Err(e @ (MmioError::Unsupported(_) | MmioError::Undecodable(_))) = s.run(&exit(true), 0).0
    else {
        panic!("lock mov is refused");
    };
    assert!(format!("{e}").contains("(f0 89 05 30 00 e0 fe"), "{e}");
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

/// Identity-map the low 4 GiB with 1 GiB pages (tables at 0x2000 and 0x3000) and switch
/// the exit to 64-bit mode; returns the EFER to run with.
fn long_mode(s: &mut Setup, m: &mut ExitMessage) -> u64 {
    s.ram.write(0x2000, &(0x3000u64 | 7).to_le_bytes()).unwrap();
    for i in 0..4u64 {
        s.ram.write(0x3000 + i * 8, &(i << 30 | 0x87).to_le_bytes()).unwrap();
    }
    m.cr0 = 0x8001_0011;
    m.cr3 = 0x2000;
    m.cr4 = 0x20;
    m.segments.regs[1].access_rights = 0xa09b;
    0x500
}

/// RFLAGS as the exit reports it: the fixed bit, IF, and every arithmetic flag but PF set
/// (so a flag an instruction clears is seen cleared).
const RFLAGS_IN: u64 = 0x202 | CF | AF | ZF | SF | OF;

#[test]
fn alu_on_the_device_sets_the_result_and_the_flags() {
    struct Case {
        code: &'static [u8],
        device: u64,
        regs: &'static [(u8, u64)],
        write: bool,
        after: u64,
        gprs: &'static [(u8, u64)],
        flags: u64,
    }
    let cases = [
        // add [abs], ecx: 0xffffffff + 1 wraps to zero.
        Case {
            code: &[0x01, 0x0d, 0x30, 0, 0xe0, 0xfe],
            device: 0xffff_ffff,
            regs: &[(Gprs::RCX, 1)],
            write: true,
            after: 0,
            gprs: &[],
            flags: CF | PF | AF | ZF,
        },
        // sub byte [abs], 1: 0x80 - 1 overflows to 0x7f (seven bits set: odd parity).
        Case {
            code: &[0x80, 0x2d, 0x30, 0, 0xe0, 0xfe, 0x01],
            device: 0x80,
            regs: &[],
            write: true,
            after: 0x7f,
            gprs: &[],
            flags: OF | AF,
        },
        // lock or [abs], dl.
        Case {
            code: &[0xf0, 0x08, 0x15, 0x30, 0, 0xe0, 0xfe],
            device: 0x01,
            regs: &[(Gprs::RDX, 0x02)],
            write: true,
            after: 0x03,
            gprs: &[],
            flags: PF,
        },
        // xor [abs], eax with equal values; the bytes beyond the dword stay.
        Case {
            code: &[0x31, 0x05, 0x30, 0, 0xe0, 0xfe],
            device: 0x5555_5555_1234_5678,
            regs: &[(Gprs::RAX, 0x1234_5678)],
            write: false,
            after: 0x5555_5555_0000_0000,
            gprs: &[],
            flags: ZF | PF,
        },
        // cmp word [abs], ax: 0x1234 - 0x1235 borrows; the device keeps its value.
        Case {
            code: &[0x66, 0x39, 0x05, 0x30, 0, 0xe0, 0xfe],
            device: 0x1234,
            regs: &[(Gprs::RAX, 0x1235)],
            write: false,
            after: 0x1234,
            gprs: &[],
            flags: CF | PF | AF | SF,
        },
        // test dword [abs], 0x80000000.
        Case {
            code: &[0xf7, 0x05, 0x30, 0, 0xe0, 0xfe, 0, 0, 0, 0x80],
            device: 0x8000_0001,
            regs: &[],
            write: false,
            after: 0x8000_0001,
            gprs: &[],
            flags: SF | PF,
        },
        // and eax, [abs]: the result zero-extends into RAX.
        Case {
            code: &[0x23, 0x05, 0x30, 0, 0xe0, 0xfe],
            device: 0x0ff0,
            regs: &[(Gprs::RAX, 0xffff_ffff_0000_ff0f)],
            write: false,
            after: 0x0ff0,
            gprs: &[(Gprs::RAX, 0x0f00)],
            flags: PF,
        },
        // add ah, [abs]: 0x80 + 0x80, the rest of RAX kept.
        Case {
            code: &[0x02, 0x25, 0x30, 0, 0xe0, 0xfe],
            device: 0x80,
            regs: &[(Gprs::RAX, 0x1111_2222_3333_8044)],
            write: false,
            after: 0x80,
            gprs: &[(Gprs::RAX, 0x1111_2222_3333_0044)],
            flags: CF | OF | ZF | PF,
        },
        // sub ecx, [abs]: 3 - 5.
        Case {
            code: &[0x2b, 0x0d, 0x30, 0, 0xe0, 0xfe],
            device: 5,
            regs: &[(Gprs::RCX, 0xaaaa_aaaa_0000_0003)],
            write: false,
            after: 5,
            gprs: &[(Gprs::RCX, 0xffff_fffe)],
            flags: CF | SF | AF,
        },
        // cmp ecx, [abs] writes no register.
        Case {
            code: &[0x3b, 0x0d, 0x30, 0, 0xe0, 0xfe],
            device: 5,
            regs: &[(Gprs::RCX, 0xaaaa_aaaa_0000_0005)],
            write: false,
            after: 5,
            gprs: &[],
            flags: ZF | PF,
        },
    ];
    for c in cases {
        let mut s = Setup::new(c.code);
        s.regs.0[0x30..0x38].copy_from_slice(&c.device.to_le_bytes());
        let mut m = exit(c.write);
        m.rflags = RFLAGS_IN;
        for &(r, v) in c.regs {
            m.gprs.set(r, v);
        }
        let (res, r) = s.run(&m, 0);
        let name = format!("{:02x?}", c.code);
        assert_eq!(res, Ok(()), "{name}");
        assert_eq!(s.regs.0[0x30..0x38], c.after.to_le_bytes(), "{name}: device");
        assert_eq!(written(&r, Field::GuestRflags), Some(0x202 | c.flags), "{name}: flags");
        assert_eq!(advanced(&r), Some(c.code.len() as u16), "{name}: rip");
        let mask = c.gprs.iter().fold(0u16, |m, &(reg, _)| m | 1 << reg);
        assert_eq!(r.gpr_mask, mask, "{name}: registers written");
        for &(reg, v) in c.gprs {
            assert_eq!(gpr_of(&r, reg), Some(v), "{name}: register {reg}");
        }
    }
}

#[test]
fn alu_in_long_mode_with_a_64_bit_operand() {
    // lock sub qword [0xfee00030], 5 (disp32 through a SIB byte, sign-extended).
    let mut s = Setup::new(&[0xf0, 0x48, 0x83, 0x2c, 0x25, 0x30, 0, 0xe0, 0xfe, 0x05]);
    s.regs.0[0x30..0x38].copy_from_slice(&3u64.to_le_bytes());
    let mut m = exit(true);
    let efer = long_mode(&mut s, &mut m);
    m.rflags = 0x2;
    let (res, r) = s.run(&m, efer);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[0x30..0x38], (-2i64).to_le_bytes());
    assert_eq!(written(&r, Field::GuestRflags), Some(0x2 | CF | SF | AF));
    assert_eq!(advanced(&r), Some(0x0a));
    // or rax, [rbx]: the whole register.
    let mut s = Setup::new(&[0x48, 0x0b, 0x03]);
    s.regs.0[0x30..0x38].copy_from_slice(&0x8000_0000_0000_0000u64.to_le_bytes());
    let mut m = exit(false);
    let efer = long_mode(&mut s, &mut m);
    m.gprs.set(Gprs::RAX, 1);
    let (res, r) = s.run(&m, efer);
    assert_eq!(res, Ok(()));
    assert_eq!(gpr_of(&r, Gprs::RAX), Some(0x8000_0000_0000_0001));
    assert_eq!(written(&r, Field::GuestRflags), Some(0x2 | SF));
}

#[test]
fn exchange_swaps_register_and_device() {
    // xchg [abs], ecx: the register zero-extends, no flags.
    let mut s = Setup::new(&[0x87, 0x0d, 0x30, 0, 0xe0, 0xfe]);
    s.regs.0[0x30..0x34].copy_from_slice(&0x1122_3344u32.to_le_bytes());
    let mut m = exit(false);
    m.gprs.set(Gprs::RCX, 0xdead_beef_5566_7788);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[0x30..0x34], 0x5566_7788u32.to_le_bytes());
    assert_eq!(gpr_of(&r, Gprs::RCX), Some(0x1122_3344));
    assert_eq!(written(&r, Field::GuestRflags), None);
    assert_eq!(advanced(&r), Some(0x06));
    // lock xchg [abs], ch, reported as a write.
    let mut s = Setup::new(&[0xf0, 0x86, 0x2d, 0x30, 0, 0xe0, 0xfe]);
    s.regs.0[0x30] = 0xaa;
    let mut m = exit(true);
    m.gprs.set(Gprs::RCX, 0x1234);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[0x30..0x32], [0x12, 0]);
    assert_eq!(gpr_of(&r, Gprs::RCX), Some(0xaa34));
    assert_eq!(advanced(&r), Some(0x07));
}

#[test]
fn segment_register_store() {
    // mov [abs], fs
    let mut s = Setup::new(&[0x8c, 0x25, 0x30, 0, 0xe0, 0xfe]);
    s.regs.0[0x30..0x34].copy_from_slice(&[0xff; 4]);
    let mut m = exit(true);
    m.segments.regs[4].selector = 0x1234;
    assert_eq!(s.run(&m, 0).0, Ok(()));
    assert_eq!(s.regs.0[0x30..0x34], [0x34, 0x12, 0xff, 0xff]);
}

#[test]
fn direction_must_match_for_reads_and_stores_only() {
    // cmp [abs], eax only reads: a write exit is inconsistent.
    let mut s = Setup::new(&[0x39, 0x05, 0x30, 0, 0xe0, 0xfe]);
    assert!(matches!(s.run(&exit(true), 0).0, Err(MmioError::DirectionMismatch(_))));
    // add [abs], eax may be reported either way (its first access is the read).
    let mut s = Setup::new(&[0x01, 0x05, 0x30, 0, 0xe0, 0xfe]);
    assert_eq!(s.run(&exit(false), 0).0, Ok(()));
    assert_eq!(s.run(&exit(true), 0).0, Ok(()));
}

#[test]
fn rep_stos_fills_the_device_and_finishes() {
    // rep stosd, flat 32-bit: four dwords from 0xfee00010 up.
    let mut s = Setup::new(&[0xf3, 0xab]);
    let mut m = exit(true);
    m.guest_physical = 0xfee0_0010;
    m.gprs.set(Gprs::RDI, 0xfee0_0010);
    m.gprs.set(Gprs::RCX, 4);
    m.gprs.set(Gprs::RAX, 0xa5a5_0102);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[0x10..0x20], 0xa5a5_0102u32.to_le_bytes().repeat(4)[..]);
    assert_eq!((s.regs.0[0x0f], s.regs.0[0x20]), (0, 0));
    assert_eq!(gpr_of(&r, Gprs::RCX), Some(0));
    assert_eq!(gpr_of(&r, Gprs::RDI), Some(0xfee0_0020));
    assert_eq!(gpr_of(&r, Gprs::RSI), None);
    assert_eq!(advanced(&r), Some(0x02));
    assert_eq!(written(&r, Field::GuestRflags), None);
}

#[test]
fn a_long_rep_stays_on_the_instruction() {
    // rep stosb downwards (DF set) from the device's last byte: one batch per exit.
    let mut s = Setup::new(&[0xf3, 0xaa]);
    let mut m = exit(true);
    m.rflags = 0x602;
    m.interruptibility = 1;
    m.guest_physical = 0xfee0_003f;
    m.gprs.set(Gprs::RDI, 0xfee0_003f);
    m.gprs.set(Gprs::RCX, 100);
    m.gprs.set(Gprs::RAX, 0x5a);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert!(s.regs.0.iter().all(|&b| b == 0x5a));
    assert_eq!(gpr_of(&r, Gprs::RCX), Some(100 - super::string::REP_BATCH));
    assert_eq!(gpr_of(&r, Gprs::RDI), Some(0xfee0_003f - super::string::REP_BATCH));
    assert_eq!(advanced(&r), None, "RIP stays");
    assert_eq!(written(&r, Field::GuestInterruptibility), None, "not retired: shadow kept");
    // RCX already zero: the instruction ends without an access.
    let mut s = Setup::new(&[0xf3, 0xaa]);
    m.gprs.set(Gprs::RCX, 0);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert!(s.regs.0.iter().all(|&b| b == 0));
    assert_eq!(advanced(&r), Some(0x02));
}

#[test]
fn movs_between_ram_and_the_device() {
    // rep movsw from the device into RAM.
    let mut s = Setup::new(&[0x66, 0xf3, 0xa5]);
    s.regs.0[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
    let mut m = exit(false);
    m.guest_physical = 0xfee0_0000;
    m.gprs.set(Gprs::RSI, 0xfee0_0000);
    m.gprs.set(Gprs::RDI, 0x3000);
    m.gprs.set(Gprs::RCX, 3);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    let mut ram = [0u8; 8];
    s.ram.read(0x3000, &mut ram).unwrap();
    assert_eq!(ram, [1, 2, 3, 4, 5, 6, 0, 0]);
    assert_eq!(gpr_of(&r, Gprs::RSI), Some(0xfee0_0006));
    assert_eq!(gpr_of(&r, Gprs::RDI), Some(0x3006));
    assert_eq!(gpr_of(&r, Gprs::RCX), Some(0));
    assert_eq!(advanced(&r), Some(0x03));
    // movsd from RAM into the device, downwards; RCX is not touched without REP.
    let mut s = Setup::new(&[0xa5]);
    s.ram.write(0x3004, &[0xa, 0xb, 0xc, 0xd]).unwrap();
    let mut m = exit(true);
    m.rflags = 0x602;
    m.guest_physical = 0xfee0_0020;
    m.gprs.set(Gprs::RSI, 0x3004);
    m.gprs.set(Gprs::RDI, 0xfee0_0020);
    m.gprs.set(Gprs::RCX, 7);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[0x20..0x24], [0xa, 0xb, 0xc, 0xd]);
    assert_eq!(gpr_of(&r, Gprs::RSI), Some(0x3000));
    assert_eq!(gpr_of(&r, Gprs::RDI), Some(0xfee0_001c));
    assert_eq!(gpr_of(&r, Gprs::RCX), None);
    assert_eq!(advanced(&r), Some(0x01));
}

#[test]
fn string_addresses_follow_the_address_size_and_segments() {
    // Big real mode: stosb to ES.base + DI; only DI moves.
    let mut s = Setup::new(&[0xaa]);
    let mut m = exit(true);
    m.cr0 = 0x10;
    m.segments.regs[1].access_rights = 0x93;
    m.segments.regs[0].base = 0xfee0_0000;
    m.guest_physical = 0xfee0_0020;
    m.gprs.set(Gprs::RDI, 0xffff_0000_0000_0020);
    m.gprs.set(Gprs::RAX, 0x5a);
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[0x20], 0x5a);
    assert_eq!(gpr_of(&r, Gprs::RDI), Some(0xffff_0000_0000_0021));
    assert_eq!(advanced(&r), Some(0x01));
    // 16-bit addresses wrap within the segment: DI 0xffff + 1 is 0.
    m.gprs.set(Gprs::RDI, 0xffff);
    m.segments.regs[0].base = 0xfedf_0001;
    m.guest_physical = 0xfee0_0000;
    let (res, r) = s.run(&m, 0);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[0], 0x5a);
    assert_eq!(gpr_of(&r, Gprs::RDI), Some(0));
    // 64-bit code with a 32-bit address: EDI is used and RDI zero-extends.
    let mut s = Setup::new(&[0x67, 0xaa]);
    let mut m = exit(true);
    let efer = long_mode(&mut s, &mut m);
    m.guest_physical = 0xfee0_0008;
    m.gprs.set(Gprs::RDI, 0xffff_ffff_fee0_0008);
    m.gprs.set(Gprs::RAX, 0x77);
    let (res, r) = s.run(&m, efer);
    assert_eq!(res, Ok(()));
    assert_eq!(s.regs.0[8], 0x77);
    assert_eq!(gpr_of(&r, Gprs::RDI), Some(0xfee0_0009));
    // 64-bit movsq from FS: its base applies (DS's would not).
    let mut s = Setup::new(&[0x64, 0x48, 0xa5]);
    let mut m = exit(false);
    let efer = long_mode(&mut s, &mut m);
    m.segments.regs[3].base = 0x9999_0000;
    m.segments.regs[4].base = 0xfee0_0000;
    s.regs.0[0x10..0x18].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
    m.guest_physical = 0xfee0_0010;
    m.gprs.set(Gprs::RSI, 0x10);
    m.gprs.set(Gprs::RDI, 0x4000);
    let (res, r) = s.run(&m, efer);
    assert_eq!(res, Ok(()));
    let mut ram = [0u8; 8];
    s.ram.read(0x4000, &mut ram).unwrap();
    assert_eq!(u64::from_le_bytes(ram), 0x0102_0304_0506_0708);
    assert_eq!((gpr_of(&r, Gprs::RSI), gpr_of(&r, Gprs::RDI)), (Some(0x18), Some(0x4008)));
}

#[test]
fn string_data_faults_are_typed() {
    // The RAM side unmapped by the guest's tables (above 4 GiB), and outside RAM.
    let mut s = Setup::new(&[0x48, 0xa5]);
    let mut m = exit(false);
    let efer = long_mode(&mut s, &mut m);
    m.gprs.set(Gprs::RSI, 0xfee0_0000);
    m.gprs.set(Gprs::RDI, 0x1_0000_0000);
    assert_eq!(
        s.run(&m, efer).0,
        Err(MmioError::PageFault(PageFault { linear: 0x1_0000_0000, error: 2 })),
        "not present, a write"
    );
    m.gprs.set(Gprs::RDI, 0x8000_0000);
    assert_eq!(s.run(&m, efer).0, Err(MmioError::Data(FetchError::Memory { gpa: 0x8000_0000 })));
    // A user-mode copy into a read-only page: the first GiB through a page directory at
    // 0x4000 (a 2 MiB page at 0 for the code) and a page table at 0x5000 that maps linear
    // 0x40_0000 (user, read-only) and 0x40_1000 (the device, user, writable).
    let mut m = exit(false);
    let efer = long_mode(&mut s, &mut m);
    s.ram.write(0x3000, &(0x4000u64 | 7).to_le_bytes()).unwrap();
    s.ram.write(0x4000, &0x87u64.to_le_bytes()).unwrap();
    s.ram.write(0x4000 + 2 * 8, &(0x5000u64 | 7).to_le_bytes()).unwrap();
    s.ram.write(0x5000, &(0x6000u64 | 5).to_le_bytes()).unwrap();
    s.ram.write(0x5008, &(0xfee0_0000u64 | 7).to_le_bytes()).unwrap();
    m.cpl = 3;
    m.gprs.set(Gprs::RSI, 0x40_1000);
    m.gprs.set(Gprs::RDI, 0x40_0000);
    // A #PF for the guest: present, write, user.
    let fault = PageFault { linear: 0x40_0000, error: 7 };
    assert_eq!(s.run(&m, efer).0, Err(MmioError::PageFault(fault)));
    // The kernel may write it with CR0.WP clear.
    m.cpl = 0;
    m.cr0 &= !0x1_0000;
    assert_eq!(s.run(&m, efer).0, Ok(()));
}

/// A REP MOVSB from the device into RAM that runs into an unmapped page: the elements
/// before the fault are done, the registers say so, and the fault names the first byte
/// that could not be written (RIP stays: the reply does not advance it).
#[test]
fn a_rep_copy_that_faults_keeps_the_elements_before_it() {
    let mut s = Setup::new(&[0xf3, 0xa4]);
    let mut m = exit(false);
    let efer = long_mode(&mut s, &mut m);
    // Linear 0x40_0000 (RAM at 0x6000) mapped, 0x40_1000 not; 0x40_2000 is the device.
    s.ram.write(0x3000, &(0x4000u64 | 7).to_le_bytes()).unwrap();
    s.ram.write(0x4000, &0x87u64.to_le_bytes()).unwrap();
    s.ram.write(0x4000 + 2 * 8, &(0x5000u64 | 7).to_le_bytes()).unwrap();
    s.ram.write(0x5000, &(0x6000u64 | 7).to_le_bytes()).unwrap();
    s.ram.write(0x5010, &(0xfee0_0000u64 | 7).to_le_bytes()).unwrap();
    s.regs.0[..4].copy_from_slice(&[1, 2, 3, 4]);
    m.gprs.set(Gprs::RSI, 0x40_2000);
    m.gprs.set(Gprs::RDI, 0x40_0ffe);
    m.gprs.set(Gprs::RCX, 4);
    let (res, r) = s.run(&m, efer);
    assert_eq!(res, Err(MmioError::PageFault(PageFault { linear: 0x40_1000, error: 2 })));
    assert_eq!(gpr_of(&r, Gprs::RCX), Some(2));
    assert_eq!((gpr_of(&r, Gprs::RSI), gpr_of(&r, Gprs::RDI)), (Some(0x40_2002), Some(0x40_1000)));
    assert_eq!(advanced(&r), None);
    let mut copied = [0u8; 2];
    s.ram.read(0x6ffe, &mut copied).unwrap();
    assert_eq!(copied, [1, 2]);
}

/// A model of the ALU encodings (opcodes 00-3D, 80/81/83, 84/85, F6/F7 /0 with a disp32
/// operand, byte, word and dword) written from the opcode map, not the decoder: random
/// instructions, registers and device values through the whole emulator must give the
/// model's device bytes, registers, RFLAGS and RIP.
#[test]
fn alu_encodings_match_a_model() {
    use super::flags::tests::reference;
    let mut seed = 0x0123_4567_89ab_cdefu64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // The ALU group's /digit (ADC and SBB left out) and TEST.
    let ops = [(0, AluOp::Add), (1, AluOp::Or), (4, AluOp::And), (5, AluOp::Sub)];
    let ops = [ops.as_slice(), &[(6, AluOp::Xor), (7, AluOp::Cmp), (8, AluOp::Test)]].concat();
    for _ in 0..20_000 {
        let (digit, op) = ops[(next() % ops.len() as u64) as usize];
        let word = next() & 1 == 0;
        let reg = (next() % 8) as u8;
        let form = next() % 5; // r/m,reg; reg,r/m; imm8 (80/F6); imm (81/F7); imm8 (83)
        let form = if op == AluOp::Test { [0, 2, 3][(form % 3) as usize] } else { form };
        let byte = form == 2 || (form < 2 && next() & 1 == 0);
        let width: u8 = if byte {
            1
        } else if word {
            2
        } else {
            4
        };
        let mut code = Vec::new();
        if word && !byte {
            code.push(0x66);
        }
        let (opcode, modrm_reg) = match (op, form) {
            (AluOp::Test, 0) => (0x84 | u8::from(!byte), reg),
            (AluOp::Test, _) => (0xf6 | u8::from(!byte), 0),
            (_, 0 | 1) => (digit << 3 | (form as u8) << 1 | u8::from(!byte), reg),
            (_, 2) => (0x80, digit),
            (_, 3) => (0x81, digit),
            _ => (0x83, digit),
        };
        code.extend([opcode, modrm_reg << 3 | 5, 0x30, 0, 0xe0, 0xfe]);
        let imm_bytes = match form {
            2 | 4 => 1,
            3 => usize::from(width),
            _ => 0,
        };
        let imm = next();
        code.extend(&imm.to_le_bytes()[..imm_bytes]);
        let imm = match imm_bytes {
            1 => imm as u8 as i8 as u64,
            2 => imm as u16 as i16 as u64,
            _ => imm as u32 as i32 as u64,
        };

        let mut s = Setup::new(&code);
        let device = next();
        s.regs.0[0x30..0x38].copy_from_slice(&device.to_le_bytes());
        let mut m = exit(false);
        m.rflags = RFLAGS_IN;
        for r in 0..8 {
            m.gprs.set(r, next());
        }
        // The register operand: AL..BL are 0..3, AH..BH bits 15:8 of 0..3.
        let (index, shift) = if byte && reg >= 4 { (reg - 4, 8) } else { (reg, 0) };
        let full = m.gprs.get(index).unwrap();
        let reg_value = full >> shift;
        let memory_dest = form != 1;
        let other = if form >= 2 { imm } else { reg_value };
        let (a, b) = if memory_dest { (device, other) } else { (reg_value, device) };
        let (result, flags) = reference(op, a, b, width);
        m.qualification = if memory_dest && op.writes() && next() & 1 == 0 { 0x182 } else { 0x181 };

        let (res, r) = s.run(&m, 0);
        let name = format!("{op:?} {code:02x?}");
        assert_eq!(res, Ok(()), "{name}");
        let mut dev = device;
        let mut gpr_mask = 0u16;
        if op.writes() && memory_dest {
            let mask = super::flags::mask(width);
            dev = (device & !mask) | result;
        } else if op.writes() {
            gpr_mask = 1 << index;
            let expect = match width {
                4 => result,
                w => {
                    let mask = super::flags::mask(w) << shift;
                    (full & !mask) | (result << shift)
                }
            };
            assert_eq!(gpr_of(&r, index), Some(expect), "{name}: register");
        }
        assert_eq!(r.gpr_mask, gpr_mask, "{name}");
        assert_eq!(s.regs.0[0x30..0x38], dev.to_le_bytes(), "{name}: device");
        let rflags = (RFLAGS_IN & !super::flags::ARITHMETIC) | flags;
        assert_eq!(written(&r, Field::GuestRflags), Some(rflags), "{name}: flags");
        assert_eq!(advanced(&r), Some(code.len() as u16), "{name}");
    }
}

#[test]
fn lma_follows_lme_and_paging_without_an_efer_transfer() {
    use super::effective_efer;
    use protocols::x86::{CR0_PE, CR0_PG, EFER_LMA, EFER_LME, EFER_NXE};
    let lme = EFER_LME | EFER_NXE;
    assert_eq!(effective_efer(lme, CR0_PE | CR0_PG), lme | EFER_LMA, "paging on: active");
    assert_eq!(effective_efer(lme | EFER_LMA, CR0_PE), lme, "paging off: inactive");
    assert_eq!(effective_efer(EFER_NXE, CR0_PE | CR0_PG), EFER_NXE, "no LME: legacy paging");
}
