//! The memory-access instructions a guest uses on device registers, decoded by
//! `yaxpeax-x86` into the one mode-independent [`Access`] the emulator acts on.
//!
//! The crate has a decoder per code size (16, 32, 64-bit) with its own operand and
//! register types; one macro maps each onto [`Access`], so the rules of what is emulated
//! are written once. Accepted, with general-purpose registers: MOV in every form that
//! touches memory except loading a segment register (register, immediate and segment
//! register sources, moffs, MOVNTI), MOVZX, MOVSX, MOVSXD; ADD, OR, AND, SUB, XOR, CMP and
//! TEST with memory as destination or source; XCHG with memory; MOVS and STOS with or
//! without REP. LOCK is accepted where the architecture allows it (the read-modify-write
//! forms and XCHG) and refused elsewhere, as the CPU raises #UD there. Anything else is
//! [`DecodeFailure::Unsupported`] and the VM stops naming it, rather than being emulated
//! half right.

use core::fmt;

use super::flags::AluOp;

/// The code size the guest executes in, from CS.L, CS.D, CR0.PE and RFLAGS.VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSize {
    /// Real mode, virtual-8086 mode or a 16-bit code segment.
    Bits16,
    /// A 32-bit code segment (or compatibility mode).
    Bits32,
    /// 64-bit mode.
    Bits64,
}

/// Which part of a general-purpose register an operand names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Bits 7:0 (AL, SIL, R8B, ...).
    Low8,
    /// Bits 15:8 (AH, CH, DH, BH).
    High8,
    /// Bits 15:0.
    Low16,
    /// Bits 31:0; a write zero-extends into bits 63:32.
    Low32,
    /// All 64 bits.
    Full,
}

/// A general-purpose register operand: the register (x86 encoding, 0 = RAX .. 15 = R15)
/// and the part of it the instruction names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpr {
    /// The register number.
    pub index: u8,
    /// The part named.
    pub part: Part,
}

impl Gpr {
    /// The operand's value, read out of the full register value `full`.
    pub const fn read(self, full: u64) -> u64 {
        match self.part {
            Part::Low8 => full & 0xff,
            Part::High8 => (full >> 8) & 0xff,
            Part::Low16 => full & 0xffff,
            Part::Low32 => full & 0xffff_ffff,
            Part::Full => full,
        }
    }

    /// The full register after writing `value` to the operand: 8 and 16-bit writes keep
    /// the other bits, a 32-bit write zero-extends to 64 bits.
    pub const fn write(self, full: u64, value: u64) -> u64 {
        match self.part {
            Part::Low8 => (full & !0xff) | (value & 0xff),
            Part::High8 => (full & !0xff00) | ((value & 0xff) << 8),
            Part::Low16 => (full & !0xffff) | (value & 0xffff),
            Part::Low32 => value & 0xffff_ffff,
            Part::Full => value,
        }
    }
}

/// How a loaded value widens to its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extend {
    /// MOV (same width) and MOVZX.
    Zero,
    /// MOVSX and MOVSXD.
    Sign,
}

/// Where a stored value (or an ALU operation's other operand) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A register operand.
    Register(Gpr),
    /// An immediate, already sign- or zero-extended to 64 bits as the encoding says.
    Immediate(u64),
    /// A segment register's selector (`MOV m16, Sreg`): index in the order ES, CS, SS, DS,
    /// FS, GS.
    Segment(u8),
}

/// Which string instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringKind {
    /// MOVS: copy from seg:RSI to ES:RDI.
    Movs,
    /// STOS: store AL/AX/EAX/RAX to ES:RDI.
    Stos,
}

/// A decoded string instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringOp {
    /// MOVS or STOS.
    pub kind: StringKind,
    /// Bytes per element: 1, 2, 4 or 8.
    pub width: u8,
    /// Address size in bytes (2, 4 or 8): which part of RSI, RDI and RCX is used.
    pub address: u8,
    /// A REP prefix (F3, or F2, which the CPU treats alike for these).
    pub rep: bool,
    /// MOVS's source segment (ES, CS, SS, DS, FS, GS = 0..5); the destination is ES.
    pub segment: u8,
}

/// What the decoded instruction does to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read `width` bytes and write them, extended, to `dest`.
    Load {
        /// The destination register.
        dest: Gpr,
        /// Bytes read from the device: 1, 2, 4 or 8.
        width: u8,
        /// How the value widens to `dest`.
        extend: Extend,
    },
    /// Write the low `width` bytes of `source`.
    Store {
        /// The value's origin.
        source: Source,
        /// Bytes written to the device: 1, 2, 4 or 8.
        width: u8,
    },
    /// `op` with the device as destination: read `width` bytes, combine them with
    /// `source`, write the result back (not for CMP and TEST) and set the flags.
    AluMemory {
        /// The operation.
        op: AluOp,
        /// The other operand.
        source: Source,
        /// Operand bytes: 1, 2, 4 or 8.
        width: u8,
    },
    /// `op` with a register as destination: `dest = dest op device` (CMP and TEST only
    /// set the flags).
    AluRegister {
        /// The operation.
        op: AluOp,
        /// The destination (and first operand).
        dest: Gpr,
        /// Operand bytes: 1, 2, 4 or 8.
        width: u8,
    },
    /// XCHG: the device's value goes to `reg`, the register's to the device.
    Exchange {
        /// The register.
        reg: Gpr,
        /// Operand bytes: 1, 2, 4 or 8.
        width: u8,
    },
    /// MOVS or STOS (see [`super::string`]).
    String(StringOp),
}

impl Access {
    /// Bytes the access moves.
    pub const fn width(&self) -> u8 {
        match *self {
            Self::Load { width, .. }
            | Self::Store { width, .. }
            | Self::AluMemory { width, .. }
            | Self::AluRegister { width, .. }
            | Self::Exchange { width, .. }
            | Self::String(StringOp { width, .. }) => width,
        }
    }

    /// The direction the exit must report for the device access: `Some(true)` for a
    /// store, `Some(false)` for a read, `None` where either may be reported (the
    /// read-modify-write forms, whose first access is a read, and string instructions,
    /// whose sides are resolved by their own addresses).
    pub const fn direction(&self) -> Option<bool> {
        match *self {
            Self::Load { .. } | Self::AluRegister { .. } => Some(false),
            Self::Store { .. } => Some(true),
            Self::AluMemory { op, .. } if !op.writes() => Some(false),
            Self::AluMemory { .. } | Self::Exchange { .. } | Self::String(_) => None,
        }
    }
}

/// A decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// What it does.
    pub access: Access,
    /// Its length in bytes (1 to 15).
    pub len: u8,
}

/// Why instruction bytes were not emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeFailure {
    /// The bytes run out before the instruction ends.
    Truncated,
    /// The bytes are no valid instruction.
    Invalid,
    /// A valid instruction the emulator does not handle.
    Unsupported,
}

/// Up to 15 instruction bytes and the code size they were fetched in: what a stop
/// reports, so the instruction can be named (decoded again for display) after the fact.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InstructionBytes {
    bytes: [u8; 15],
    len: u8,
    size: CodeSize,
}

impl InstructionBytes {
    /// The first (up to 15) of `bytes`, in `size` code.
    pub fn new(bytes: &[u8], size: CodeSize) -> Self {
        let mut out = [0u8; 15];
        let len = bytes.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..len), bytes.get(..len)) {
            dst.copy_from_slice(src);
        }
        Self { bytes: out, len: len as u8, size }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl fmt::Debug for InstructionBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for InstructionBytes {
    /// The mnemonic (as the decoder names it) and the bytes, e.g. `ADD (01 05 30 00 e0 fe)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.bytes();
        let len = match self.size {
            CodeSize::Bits16 => mnemonic!(real_mode, bytes, f),
            CodeSize::Bits32 => mnemonic!(protected_mode, bytes, f),
            CodeSize::Bits64 => mnemonic!(long_mode, bytes, f),
        };
        f.write_str("(")?;
        for (i, b) in bytes.iter().take(len.unwrap_or(bytes.len())).enumerate() {
            write!(f, "{}{b:02x}", if i == 0 { "" } else { " " })?;
        }
        f.write_str(")")
    }
}

/// Write the mnemonic of the instruction `bytes` start with (or "undecodable") to `f`;
/// evaluates to the instruction's length when it decodes.
macro_rules! mnemonic {
    ($mode:ident, $bytes:expr, $f:expr) => {{
        use yaxpeax_x86::$mode::InstDecoder;
        match InstDecoder::default().decode_slice($bytes) {
            Ok(inst) => {
                write!($f, "{:?} ", inst.opcode())?;
                Some(usize::from(instruction_len!(inst)))
            }
            Err(_) => {
                $f.write_str("undecodable ")?;
                None
            }
        }
    }};
}
use mnemonic;

/// An instruction's length in bytes, as a `u8` (at most 15).
macro_rules! instruction_len {
    ($inst:expr) => {{
        use yaxpeax_arch::LengthedInstruction;
        u8::try_from($inst.len().to_const()).unwrap_or(u8::MAX)
    }};
}
use instruction_len;

/// Decode the instruction at the start of `bytes`, executed in `size` code.
pub fn decode(bytes: &[u8], size: CodeSize) -> Result<Decoded, DecodeFailure> {
    // Address sizes in bytes: the mode's default and the one an 0x67 prefix selects.
    match size {
        CodeSize::Bits16 => decode_in!(real_mode, bytes, (2, 4), {}),
        CodeSize::Bits32 => decode_in!(protected_mode, bytes, (4, 2), {}),
        CodeSize::Bits64 => decode_in!(long_mode, bytes, (8, 4), {
            Operand::ImmediateI64 { imm } => Some(imm as u64),
            Operand::ImmediateU64 { imm } => Some(imm),
        }),
    }
}

/// The ALU operation an opcode names, if it is one the emulator performs.
macro_rules! alu_op {
    ($opcode:expr) => {
        match $opcode {
            Opcode::ADD => Some(AluOp::Add),
            Opcode::OR => Some(AluOp::Or),
            Opcode::AND => Some(AluOp::And),
            Opcode::SUB => Some(AluOp::Sub),
            Opcode::XOR => Some(AluOp::Xor),
            Opcode::CMP => Some(AluOp::Cmp),
            Opcode::TEST => Some(AluOp::Test),
            _ => None,
        }
    };
}
use alu_op;

/// [`decode`] with the decoder for code size `$mode`; `$addr` its (default, prefixed)
/// address sizes; `$extra` are the immediate operand kinds only that mode has.
macro_rules! decode_in {
    ($mode:ident, $bytes:expr, ($addr:expr, $addr_prefixed:expr), { $($extra:tt)* }) => {{
        use yaxpeax_x86::$mode::{register_class as RegisterClass, DecodeError, InstDecoder, Opcode, Operand, RegSpec, Segment};

        let gpr = |reg: RegSpec| -> Option<Gpr> {
            let (num, class) = (reg.num(), reg.class());
            let part = if class == RegisterClass::B && (4..8).contains(&num) {
                return Some(Gpr { index: num.wrapping_sub(4), part: Part::High8 });
            } else if class == RegisterClass::B || gpr_class_rb!($mode, class) {
                Part::Low8
            } else if class == RegisterClass::W {
                Part::Low16
            } else if class == RegisterClass::D {
                Part::Low32
            } else if gpr_class_q!($mode, class) {
                Part::Full
            } else {
                return None;
            };
            (num < 16).then_some(Gpr { index: num, part })
        };
        let immediate = |op: Operand| -> Option<u64> {
            match op {
                Operand::ImmediateI8 { imm } => Some(imm as u64),
                Operand::ImmediateU8 { imm } => Some(u64::from(imm)),
                Operand::ImmediateI16 { imm } => Some(imm as u64),
                Operand::ImmediateU16 { imm } => Some(u64::from(imm)),
                Operand::ImmediateI32 { imm } => Some(imm as u64),
                Operand::ImmediateU32 { imm } => Some(u64::from(imm)),
                $($extra)*
                _ => None,
            }
        };
        let inst = InstDecoder::default().decode_slice($bytes).map_err(|e| match e {
            DecodeError::ExhaustedInput => DecodeFailure::Truncated,
            _ => DecodeFailure::Invalid,
        })?;
        let len = instruction_len!(inst);
        let width = inst
            .mem_size()
            .and_then(|s| s.bytes_size())
            .filter(|w| matches!(w, 1 | 2 | 4 | 8))
            .ok_or(DecodeFailure::Unsupported)?;
        if inst.operand_count() != 2 {
            return Err(DecodeFailure::Unsupported);
        }
        let (dst, src) = (inst.operand(0), inst.operand(1));
        let source = |op: Operand| -> Option<Source> {
            match op {
                Operand::Register { reg } => gpr(reg).map(Source::Register),
                op => immediate(op).map(Source::Immediate),
            }
        };
        let string = |kind: StringKind| {
            // The segment MOVS reads from: DS unless overridden (the destination is ES).
            let segment = match inst.segment_override_for_op(1) {
                Some(Segment::ES) => 0,
                Some(Segment::CS) => 1,
                Some(Segment::SS) => 2,
                Some(Segment::FS) => 4,
                Some(Segment::GS) => 5,
                Some(Segment::DS) | None => 3,
            };
            let address = if inst.prefixes.address_size() { $addr_prefixed } else { $addr };
            Access::String(StringOp { kind, width, address, rep: inst.prefixes.rep_any(), segment })
        };
        let unsupported = DecodeFailure::Unsupported;
        let access = match (inst.opcode(), dst, src) {
            (Opcode::MOV, Operand::Register { reg }, src) if src.is_memory() => {
                Access::Load { dest: gpr(reg).ok_or(unsupported)?, width, extend: Extend::Zero }
            }
            (Opcode::MOVZX, Operand::Register { reg }, src) if src.is_memory() => {
                Access::Load { dest: gpr(reg).ok_or(unsupported)?, width, extend: Extend::Zero }
            }
            (Opcode::MOVSX | Opcode::MOVSXD, Operand::Register { reg }, src) if src.is_memory() => {
                Access::Load { dest: gpr(reg).ok_or(unsupported)?, width, extend: Extend::Sign }
            }
            (Opcode::MOV, dst, Operand::Register { reg }) if dst.is_memory() && reg.class() == RegisterClass::S => {
                (reg.num() < 6).then_some(()).ok_or(unsupported)?;
                Access::Store { source: Source::Segment(reg.num()), width }
            }
            (Opcode::MOV | Opcode::MOVNTI, dst, src) if dst.is_memory() => {
                Access::Store { source: source(src).ok_or(unsupported)?, width }
            }
            (opcode, dst, src) if dst.is_memory() && alu_op!(opcode).is_some() => {
                let op = alu_op!(opcode).ok_or(unsupported)?;
                Access::AluMemory { op, source: source(src).ok_or(unsupported)?, width }
            }
            (opcode, Operand::Register { reg }, src) if src.is_memory() && alu_op!(opcode).is_some() => {
                let op = alu_op!(opcode).ok_or(unsupported)?;
                Access::AluRegister { op, dest: gpr(reg).ok_or(unsupported)?, width }
            }
            (Opcode::XCHG, mem, Operand::Register { reg }) | (Opcode::XCHG, Operand::Register { reg }, mem)
                if mem.is_memory() =>
            {
                Access::Exchange { reg: gpr(reg).ok_or(unsupported)?, width }
            }
            (Opcode::MOVS, _, _) => string(StringKind::Movs),
            (Opcode::STOS, _, Operand::Register { reg }) if reg.num() == 0 => string(StringKind::Stos),
            _ => return Err(unsupported),
        };
        // LOCK is valid only on a read-modify-write of memory; anywhere else it is #UD.
        let lockable = match access {
            Access::AluMemory { op, .. } => op.writes(),
            Access::Exchange { .. } => true,
            _ => false,
        };
        if inst.prefixes.lock() && !lockable {
            return Err(unsupported);
        }
        Ok(Decoded { access, len })
    }};
}
use decode_in;

/// Whether `$class` is the REX byte-register class (64-bit mode only).
macro_rules! gpr_class_rb {
    (long_mode, $class:expr) => {
        $class == RegisterClass::RB
    };
    ($mode:ident, $class:expr) => {
        false
    };
}
use gpr_class_rb;

/// Whether `$class` is the 64-bit register class (64-bit mode only).
macro_rules! gpr_class_q {
    (long_mode, $class:expr) => {
        $class == RegisterClass::Q
    };
    ($mode:ident, $class:expr) => {
        false
    };
}
use gpr_class_q;
