//! Fuzzes the VMM's MMIO emulator (`vmm_server::mmio`) and its device bus through the
//! dispatcher, in flat 32-bit protected mode with the scratch registers at 0xfed00000
//! (raw inputs also reach the local APIC's page and the I/O APIC's window).
//!
//! Two kinds of input:
//! - **Known encodings** (MOV, MOVZX, MOVSX, ADD, OR, AND, SUB, XOR, CMP, TEST and XCHG with
//!   the device as an operand, every form and width the model builds): the reply and the
//!   device must match a plain model written here from the opcode map and the SDM's flag
//!   definitions, independent of the VMM's decoder and flags code: the device's bytes, the
//!   register written (and only it), RFLAGS (arithmetic flags; AF 0 for the logical
//!   operations, as the VMM documents), and RIP moved by the encoding's length.
//! - **Raw bytes** as the instruction at RIP, in any code size, with any qualification and
//!   registers, against RAM filled with a pattern: no panic, a well-formed reply
//!   (`vmm_server::testing::assert_well_formed`), no RFLAGS bit but the arithmetic flags
//!   changed, and a RIP advance of 1 to 15 bytes whenever the VM runs on and the reply moves
//!   RIP.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use protocols::object::vcpu_mode;
use protocols::vmcs::Field;
use protocols::vmexit::{ExitMessage, ExitReason, ExitReply, ReplyFlags};
use protocols::x86::{
    RFLAGS_AF as AF, RFLAGS_CF as CF, RFLAGS_OF as OF, RFLAGS_PF as PF, RFLAGS_SF as SF,
    RFLAGS_ZF as ZF,
};
use vmm_server::bus::BusDevice;
use vmm_server::devices::uart16550::SerialSink;
use vmm_server::devices::{ioapic, lapic};
use vmm_server::dispatch::{RunState, Vm, VmConfig};
use vmm_server::guest_memory::GuestMemory;
use vmm_server::mmio::flags::ARITHMETIC;
use vmm_server::platform::MmioKey;
use vmm_server::testing::{assert_well_formed, host_cpuid, Ram};

const DEVICE: u64 = 0xfed0_0000;
/// The pages raw inputs may hit: the scratch registers, the local APIC, the I/O APIC.
const PAGES: [u64; 3] = [DEVICE, lapic::DEFAULT_BASE, ioapic::DEFAULT_BASE];
/// The register the model's accesses hit: 8 bytes into the 256.
const REGISTER: u64 = DEVICE + 0x30;
const RIP: u64 = 0x1000;
const RFLAGS_FIXED: u64 = 0x2;
/// The RFLAGS bits a flat 32-bit guest may have set (no VM, no reserved bits).
const VALID_RFLAGS: u64 = 0x0025_4fd5;

#[derive(Arbitrary, Debug)]
enum Input {
    Known(Known),
    Raw(Raw),
}

#[derive(Arbitrary, Debug)]
struct Known {
    op: u8,
    form: u8,
    width: u8,
    reg: u8,
    imm: u32,
    device: u64,
    regs: [u64; 8],
    rflags: u16,
}

#[derive(Arbitrary, Debug)]
struct Raw {
    code: [u8; 15],
    long_mode: bool,
    operand32: bool,
    qualification: u64,
    gpa_offset: u16,
    page: u8,
    regs: [u64; 16],
    rflags: u64,
    fill: u8,
    device: [u8; 32],
}

/// What the model expects of an instruction.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    device: u64,
    /// The register written and its new value.
    gpr: Option<(u8, u64)>,
    /// RFLAGS written (arithmetic instructions).
    rflags: Option<u64>,
    advance: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Or,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
    MovStore,
    MovLoad,
    Movzx,
    Movsx,
    Xchg,
}

const OPS: [Op; 12] = [
    Op::Add,
    Op::Or,
    Op::And,
    Op::Sub,
    Op::Xor,
    Op::Cmp,
    Op::Test,
    Op::MovStore,
    Op::MovLoad,
    Op::Movzx,
    Op::Movsx,
    Op::Xchg,
];

fn mask(width: u8) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * u32::from(width))) - 1
    }
}

fn sign_extend(v: u64, width: u8) -> u64 {
    let shift = 64 - 8 * u32::from(width);
    (((v << shift) as i64) >> shift) as u64
}

/// The SDM's definitions, on u128 so that carries are plain bits.
fn alu(op: Op, a: u64, b: u64, width: u8) -> (u64, u64) {
    let m = mask(width);
    let (a, b) = (a & m, b & m);
    let bits = 8 * u32::from(width);
    let sign = 1u64 << (bits - 1);
    let (result, cf, of, af) = match op {
        Op::Add => {
            let wide = u128::from(a) + u128::from(b);
            let r = wide as u64 & m;
            let of = (a & sign == b & sign) && (r & sign != a & sign);
            (r, wide >> bits != 0, of, (a ^ b ^ r) & 0x10 != 0)
        }
        Op::Sub | Op::Cmp => {
            let r = a.wrapping_sub(b) & m;
            let of = (a & sign != b & sign) && (r & sign != a & sign);
            (r, a < b, of, (a ^ b ^ r) & 0x10 != 0)
        }
        Op::Or => (a | b, false, false, false),
        Op::And | Op::Test => (a & b, false, false, false),
        Op::Xor => (a ^ b, false, false, false),
        _ => unreachable!("not an ALU operation"),
    };
    let mut flags = 0;
    for (on, bit) in [(cf, CF), (of, OF), (af, AF), (result == 0, ZF), (result & sign != 0, SF)] {
        if on {
            flags |= bit;
        }
    }
    if (result as u8).count_ones().is_multiple_of(2) {
        flags |= PF;
    }
    (result, flags)
}

/// The encoding of `k` (32-bit code, memory operand `[disp32]` = the register) and what
/// the model expects of it.
fn model(k: &Known) -> (Vec<u8>, Expected, bool) {
    let op = OPS[usize::from(k.op) % OPS.len()];
    let extends = matches!(op, Op::Movzx | Op::Movsx);
    // MOVZX and MOVSX read a byte or a word into a 32-bit register.
    let width = if extends {
        [1u8, 2][usize::from(k.width) % 2]
    } else {
        [1u8, 2, 4][usize::from(k.width) % 3]
    };
    let reg = k.reg % 8;
    let mut code = Vec::new();
    if width == 2 && !extends {
        code.push(0x66);
    }
    let byte = width == 1;
    let w = u8::from(!byte);
    // Forms: 0 memory destination with a register, 1 register destination, 2 immediate
    // (imm8 for bytes, else full), 3 imm8 sign-extended (83, not for bytes).
    let form = match op {
        Op::Add | Op::Or | Op::And | Op::Sub | Op::Xor | Op::Cmp => {
            let f = k.form % 4;
            if byte && f == 3 {
                2
            } else {
                f
            }
        }
        Op::Test => [0, 2][usize::from(k.form % 2)],
        _ => 0,
    };
    let digit = match op {
        Op::Add => 0,
        Op::Or => 1,
        Op::And => 4,
        Op::Sub => 5,
        Op::Xor => 6,
        Op::Cmp => 7,
        _ => 0,
    };
    let (opcode, modrm_reg): (Vec<u8>, u8) = match (op, form) {
        (Op::Test, 0) => (vec![0x84 | w], reg),
        (Op::Test, _) => (vec![0xf6 | w], 0),
        (Op::MovStore, _) => (vec![0x88 | w], reg),
        (Op::MovLoad, _) => (vec![0x8a | w], reg),
        (Op::Xchg, _) => (vec![0x86 | w], reg),
        (Op::Movzx | Op::Movsx, _) => {
            let base = if op == Op::Movzx { 0xb6 } else { 0xbe };
            // Source byte or word; destination 32 bits (no 0x66 when the source is a word).
            (vec![0x0f, base | u8::from(width == 2)], reg)
        }
        (_, 0 | 1) => (vec![digit << 3 | form << 1 | w], reg),
        (_, 2) => (vec![0x80 | w], digit),
        _ => (vec![0x83], digit),
    };
    code.extend(opcode);
    code.push(modrm_reg << 3 | 5);
    code.extend(REGISTER.to_le_bytes()[..4].iter());
    let imm_len = match form {
        2 if matches!(op, Op::Add | Op::Or | Op::And | Op::Sub | Op::Xor | Op::Cmp | Op::Test) => {
            usize::from(width.min(4))
        }
        3 => 1,
        _ => 0,
    };
    let imm_len = if byte && imm_len > 0 { 1 } else { imm_len };
    code.extend(&k.imm.to_le_bytes()[..imm_len]);
    let imm = match imm_len {
        1 => sign_extend(u64::from(k.imm as u8), 1),
        2 => sign_extend(u64::from(k.imm as u16), 2),
        4 => sign_extend(u64::from(k.imm), 4),
        _ => 0,
    };

    // The register operand: for bytes AL..BL are 0..3 and AH..BH bits 15:8 of 0..3.
    let (index, shift) = if byte && reg >= 4 && !extends { (reg - 4, 8) } else { (reg, 0) };
    let full = k.regs[usize::from(index)];
    let reg_value = (full >> shift) & mask(width);
    let write_reg = |value: u64, w: u8| -> u64 {
        match w {
            1 => (full & !(0xff << shift)) | (value & 0xff) << shift,
            2 => (full & !0xffff) | (value & 0xffff),
            _ => value & 0xffff_ffff,
        }
    };
    let dev_mask = mask(width);
    let mut e = Expected { device: k.device, gpr: None, rflags: None, advance: code.len() as u16 };
    let rflags_in = (u64::from(k.rflags) & VALID_RFLAGS) | RFLAGS_FIXED;
    let mut writes_device = false;
    match op {
        Op::MovStore => {
            e.device = (k.device & !dev_mask) | reg_value;
            writes_device = true;
        }
        Op::MovLoad => e.gpr = Some((index, write_reg(k.device & dev_mask, width))),
        Op::Movzx => e.gpr = Some((reg, k.device & dev_mask)),
        Op::Movsx => e.gpr = Some((reg, sign_extend(k.device & dev_mask, width) & 0xffff_ffff)),
        Op::Xchg => {
            e.device = (k.device & !dev_mask) | reg_value;
            e.gpr = Some((index, write_reg(k.device & dev_mask, width)));
            writes_device = true;
        }
        _ => {
            let device = k.device & dev_mask;
            let memory_dest = form != 1;
            let other = if form >= 2 { imm & dev_mask } else { reg_value };
            let (a, b) = if memory_dest { (device, other) } else { (reg_value, device) };
            let (result, flags) = alu(op, a, b, width);
            e.rflags = Some((rflags_in & !ARITHMETIC) | flags);
            if !matches!(op, Op::Cmp | Op::Test) {
                if memory_dest {
                    e.device = (k.device & !dev_mask) | result;
                    writes_device = true;
                } else {
                    e.gpr = Some((index, write_reg(result, width)));
                }
            }
        }
    }
    (code, e, writes_device)
}

/// The console: discards what the guest prints.
struct Sink;

impl SerialSink for Sink {
    fn write_byte(&mut self, _byte: u8) {}
}

fn vm(ram: Vec<u8>) -> Vm<Ram, Sink> {
    let config: VmConfig = vmm_server::serve::config(vcpu_mode::PROTECTED32);
    let mut v = Vm::new(&config, host_cpuid, Ram(ram), Sink).expect("a VM");
    v.insert_mmio(DEVICE, vmm_server::devices::scratch::SIZE, MmioKey::Scratch).expect("mapped");
    v
}

/// An EPT violation at `gpa` from flat 32-bit (or 64-bit) code at [`RIP`].
fn exit(gpa: u64, qualification: u64, long_mode: bool, operand32: bool) -> ExitMessage {
    let mut m = ExitMessage {
        reason: ExitReason::EptViolation as u32,
        qualification,
        guest_physical: gpa,
        rip: RIP,
        rflags: RFLAGS_FIXED,
        cr0: 0x11,
        transfer: vmm_server::serve::transfer_table().by_reason[ExitReason::EptViolation as usize],
        ..ExitMessage::default()
    };
    let ar = if long_mode {
        0xa09b
    } else if operand32 {
        0xc09b
    } else {
        0x009b
    };
    m.segments.regs[1].access_rights = ar;
    m
}

fn rflags_written(r: &ExitReply) -> Option<u64> {
    let raw = Field::GuestRflags as u32;
    r.writes().iter().find(|w| w.field == raw).map(|w| w.value)
}

fn known(k: &Known) {
    let (code, want, writes) = model(k);
    let mut v = vm(vec![0; 0x2000]);
    v.memory_mut().write(RIP, &code).expect("code in RAM");
    let mut m = exit(REGISTER, if writes { 0x182 } else { 0x181 }, false, true);
    m.rflags = (u64::from(k.rflags) & VALID_RFLAGS) | RFLAGS_FIXED;
    for (i, r) in k.regs.iter().enumerate() {
        m.gprs.set(i as u8, *r);
    }
    v.platform_mut().scratch.write(0x30, &k.device.to_le_bytes());
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    let name = format!("{code:02x?}");
    assert_eq!(v.run_state(), RunState::Running, "{name}: refused");
    let mut device = [0u8; 8];
    device.copy_from_slice(&v.platform().scratch.bytes()[0x30..0x38]);
    let gprs: Vec<(u8, u64)> = (0..16u8)
        .filter(|i| r.gpr_mask & (1 << i) != 0)
        .map(|i| (i, r.gprs.regs[usize::from(i)]))
        .collect();
    let got = Expected {
        device: u64::from_le_bytes(device),
        gpr: gprs.first().copied(),
        rflags: rflags_written(&r),
        advance: if r.flags.contains(ReplyFlags::ADVANCE_RIP) { r.advance_len } else { 0 },
    };
    assert!(gprs.len() <= 1, "{name}: more than one register written: {gprs:x?}");
    assert_eq!(got, want, "{name}");
}

fn raw(x: &Raw) {
    let mut ram = vec![x.fill; 0x2000];
    ram[RIP as usize..RIP as usize + 15].copy_from_slice(&x.code);
    let mut v = vm(ram);
    v.platform_mut().scratch.write(0, &x.device);
    let page = PAGES[usize::from(x.page) % PAGES.len()];
    let gpa = page + u64::from(x.gpa_offset & 0xfff);
    let mut m = exit(gpa, x.qualification, x.long_mode, x.operand32);
    if x.long_mode {
        // IA-32e mode needs paging: none here, so the fetch fails cleanly; still no panic.
        m.cr0 |= 1 << 31;
    }
    m.rflags = (x.rflags & VALID_RFLAGS) | RFLAGS_FIXED;
    for (i, r) in x.regs.iter().enumerate() {
        m.gprs.set(i as u8, *r);
    }
    let r = v.handle(&m);
    assert_well_formed(&m, &r);
    if let Some(after) = rflags_written(&r) {
        assert_eq!(after & !ARITHMETIC, m.rflags & !ARITHMETIC, "only arithmetic flags change");
    }
    if v.run_state() == RunState::Running && r.flags.contains(ReplyFlags::ADVANCE_RIP) {
        assert!((1..=15).contains(&r.advance_len), "advance {}", r.advance_len);
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Known(k) => known(&k),
        Input::Raw(x) => raw(&x),
    }
});
