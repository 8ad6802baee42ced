//! MMIO emulation: an EPT violation at an address a device on the MMIO bus claims is
//! finished by the VMM. It fetches the instruction at the guest's RIP through the guest's
//! page tables ([`fetch`]), decodes it with `yaxpeax-x86` ([`decode`]), performs the
//! access on the device through the bus, and writes back what the instruction changes:
//! the destination register (with x86's extension rules), the arithmetic flags of ADD,
//! OR, AND, SUB, XOR, CMP and TEST ([`flags`]; RFLAGS is in every exit message, so no
//! extra transfer group is needed), RCX/RSI/RDI of MOVS and STOS ([`string`]), and RIP.
//!
//! A read-modify-write (ALU with the device as destination, XCHG, their LOCK forms) is a
//! read and then a write of the device: the vCPU is stopped meanwhile, so it is atomic.
//! The exit's instruction length is not defined for EPT violations, so the reply gives
//! the decoded length with ADVANCE_RIP (`ExitReply::advance_len`): the kernel moves RIP
//! past the instruction and drops an STI/MOV SS interrupt shadow, as retiring it would. A
//! REP string instruction with iterations left keeps RIP (and the shadow). Decoding goes
//! through a small cache ([`decode_cache`]). Anything the decoder does not accept is
//! refused with an [`MmioError`] that names it; the dispatcher stops the VM with it (and
//! the RIP and address) rather than guess.

pub mod decode;
pub mod decode_cache;
pub mod fetch;
pub mod flags;
pub mod site_cache;
pub mod string;

use core::fmt;

use protocols::vmcs::Field;
use protocols::vmexit::{ExitMessage, ExitReason, TransferMask};
use protocols::x86::{CR0_PE, CR0_PG, EFER_LMA, EFER_LME, RFLAGS_VM};

use crate::bus::{Bus, DeviceMap};
use crate::exit_qualification::EptViolation;
use crate::guest_memory::GuestMemory;
use crate::paging::{PageFault, PagingMode};
use crate::reply::ReplyBuilder;
use decode::{Access, CodeSize, DecodeFailure, Extend, InstructionBytes, Source};
use decode_cache::DecodeCache;
use fetch::FetchError;
use site_cache::{Site, SiteCache};

/// Segment access rights: CS.L (64-bit code).
const AR_L: u32 = 1 << 13;
/// Segment access rights: CS.D (32-bit default operand size).
const AR_D: u32 = 1 << 14;
/// Index of CS in [`protocols::vmexit::Segments`].
const SEG_CS: usize = 1;

/// Why an MMIO access was not emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The exit lacks a message group emulation needs (segments for CS, CR3, the
    /// qualification).
    NeedsTransfer(TransferMask),
    /// The instruction's bytes could not be read.
    Fetch(FetchError),
    /// The bytes at RIP are no complete, valid instruction.
    Undecodable(InstructionBytes),
    /// A valid instruction this emulator does not handle.
    Unsupported(InstructionBytes),
    /// The guest fetched an instruction from the device.
    InstructionFetch,
    /// The guest's page walk touched the device (its page tables are in MMIO).
    PageWalk,
    /// The exit says the access was a write and the instruction loads, or the reverse.
    DirectionMismatch(InstructionBytes),
    /// A string instruction's other side could not be reached: not mapped by the guest's
    /// page tables (the guest would take #PF) or not RAM.
    Data(FetchError),
    /// A string instruction's other side is not mapped by the guest's page tables, or
    /// they forbid the access: the guest takes this #PF (the dispatcher injects it; the
    /// elements before it are done).
    PageFault(PageFault),
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeedsTransfer(mask) => {
                write!(f, "needs transfer-mask groups {:#x}", mask.bits())
            }
            Self::Fetch(FetchError::NotPresent { linear }) => {
                write!(f, "instruction fetch at linear {linear:#x}: not mapped by the guest")
            }
            Self::Fetch(FetchError::Memory { gpa }) => {
                write!(f, "instruction fetch at guest-physical {gpa:#x}: not RAM")
            }
            Self::Undecodable(bytes) => write!(f, "undecodable instruction {bytes}"),
            Self::Unsupported(bytes) => write!(f, "unsupported instruction {bytes}"),
            Self::InstructionFetch => f.write_str("instruction fetch from a device"),
            Self::PageWalk => f.write_str("guest page tables in device memory"),
            Self::DirectionMismatch(bytes) => {
                write!(f, "access direction disagrees with the instruction {bytes}")
            }
            Self::Data(FetchError::NotPresent { linear }) => {
                write!(f, "data access at linear {linear:#x}: not mapped by the guest")
            }
            Self::Data(FetchError::Memory { gpa }) => {
                write!(f, "data access at guest-physical {gpa:#x}: not RAM")
            }
            Self::PageFault(pf) => {
                write!(f, "page fault at linear {:#x}, error code {:#x}", pf.linear, pf.error)
            }
        }
    }
}

/// The guest state emulation reads besides the exit message, and the VM's decode cache.
#[derive(Debug)]
pub struct MmioContext<'a> {
    /// Guest IA32_EFER as the VMM tracks it.
    pub efer: u64,
    /// The instructions decoded last, by their bytes.
    pub decoded: &'a mut DecodeCache,
    /// The instructions met last, by where they are.
    pub sites: &'a mut SiteCache,
}

/// Guest EFER at an exit that did not carry it: `tracked` (the VMM's copy, whose LME and
/// NXE change only by WRMSR, which exits) with LMA as the CPU sets it, LME and CR0.PG
/// together (with unrestricted guest, CR0.PG changes without an exit).
pub const fn effective_efer(tracked: u64, cr0: u64) -> u64 {
    let active = tracked & EFER_LME != 0 && cr0 & CR0_PG != 0;
    if active {
        tracked | EFER_LMA
    } else {
        tracked & !EFER_LMA
    }
}

/// The code size of the guest at the exit, from CS (which needs the segments group or
/// CS alone).
pub fn code_size(msg: &ExitMessage, efer: u64) -> Result<CodeSize, MmioError> {
    if !msg.transfer.intersects(TransferMask::ANY_SEGMENTS) {
        return Err(MmioError::NeedsTransfer(TransferMask::CODE_SEGMENT));
    }
    let ar = msg.segments.regs.get(SEG_CS).map_or(0, |cs| cs.access_rights);
    Ok(if efer & EFER_LMA != 0 && ar & AR_L != 0 {
        CodeSize::Bits64
    } else if msg.cr0 & CR0_PE == 0 || msg.rflags & RFLAGS_VM != 0 || ar & AR_D == 0 {
        CodeSize::Bits16
    } else {
        CodeSize::Bits32
    })
}

/// Emulate the instruction behind the EPT exit `msg` at guest-physical `gpa` against
/// `devices` through `bus`, with guest RAM `mem` (the RAM side of MOVS); on success the
/// reply holds what the instruction changes: registers, RFLAGS, and RIP unless a REP
/// instruction has iterations left.
pub fn emulate<K: Copy, const N: usize, D: DeviceMap<K> + ?Sized>(
    msg: &ExitMessage,
    ctx: MmioContext<'_>,
    gpa: u64,
    mem: &mut impl GuestMemory,
    bus: &mut Bus<K, N>,
    devices: &mut D,
    reply: &mut ReplyBuilder,
) -> Result<(), MmioError> {
    let write = check_qualification(msg)?;
    let size = code_size(msg, ctx.efer)?;
    if !msg.transfer.contains(TransferMask::CR3) {
        return Err(MmioError::NeedsTransfer(TransferMask::CR3));
    }
    let bits64 = size == CodeSize::Bits64;
    let cs_base = msg.segments.regs.get(SEG_CS).map_or(0, |cs| cs.base);
    let linear = if bits64 { msg.rip } else { cs_base.wrapping_add(msg.rip) & 0xffff_ffff };
    let mode = PagingMode::from_regs(msg.cr0, msg.cr4, ctx.efer);
    let site = Site { cr3: msg.cr3, linear, mode, size };
    let decoded = match ctx.sites.find(&site, &*mem) {
        Some(d) => d,
        None => {
            let fetched =
                fetch::fetch(&*mem, mode, msg.cr3, linear, !bits64).map_err(MmioError::Fetch)?;
            let d = decode_fetched(&fetched, size, ctx.decoded)?;
            ctx.sites.keep(site, &fetched, d);
            d
        }
    };
    if write.zip(decoded.access.direction()).is_some_and(|(exit, inst)| exit != inst) {
        // The bytes as the error names them, fetched again off the exit path.
        let fetched = fetch::fetch(&*mem, mode, msg.cr3, linear, !bits64);
        let bytes = fetched.as_ref().map_or(&[][..], |f| f.bytes());
        return Err(MmioError::DirectionMismatch(InstructionBytes::new(bytes, size)));
    }
    let reg = |index: u8| msg.gprs.get(index).unwrap_or(0);
    let value_of = |source: Source| match source {
        Source::Register(src) => src.read(reg(src.index)),
        Source::Immediate(imm) => imm,
        Source::Segment(i) => {
            msg.segments.regs.get(usize::from(i)).map_or(0, |s| s.selector.into())
        }
    };
    let mut device = Device { bus, devices, gpa };
    match decoded.access {
        Access::Load { dest, width, extend } => {
            let value = device.read(width);
            let value = match extend {
                Extend::Zero => value,
                Extend::Sign => sign_extend(value, width),
            };
            reply.set_gpr(dest.index, dest.write(reg(dest.index), value));
        }
        Access::Store { source, width } => device.write(width, value_of(source)),
        Access::AluMemory { op, source, width } => {
            let (result, flags) = op.apply(device.read(width), value_of(source), width);
            if op.writes() {
                device.write(width, result);
            }
            reply.write(Field::GuestRflags, flags::merge(msg.rflags, flags));
        }
        Access::AluRegister { op, dest, width } => {
            let full = reg(dest.index);
            let (result, flags) = op.apply(dest.read(full), device.read(width), width);
            if op.writes() {
                reply.set_gpr(dest.index, dest.write(full, result));
            }
            reply.write(Field::GuestRflags, flags::merge(msg.rflags, flags));
        }
        Access::Exchange { reg: r, width } => {
            let full = reg(r.index);
            let old = device.read(width);
            device.write(width, r.read(full));
            reply.set_gpr(r.index, r.write(full, old));
        }
        Access::String(op) => {
            let at = string::Guest { msg, mode, cr3: msg.cr3, bits64 };
            if !string::emulate(&at, op, mem, &mut *device.bus, &mut *device.devices, reply)? {
                // A REP instruction with iterations left: RIP stays on it.
                return Ok(());
            }
        }
    }
    // The kernel adds the length to RIP (wrapping it in legacy modes) and drops an
    // interrupt shadow, with no VMCS write to validate.
    reply.advance_by(decoded.len);
    Ok(())
}

/// The decode of the instruction bytes `fetched` in `size`, through the byte-keyed cache;
/// an error names the bytes.
fn decode_fetched(
    fetched: &fetch::Fetched,
    size: CodeSize,
    cache: &mut DecodeCache,
) -> Result<decode::Decoded, MmioError> {
    let bytes = || InstructionBytes::new(fetched.bytes(), size);
    match cache.decode(&fetched.bytes, fetched.len, size) {
        Ok(d) => Ok(d),
        Err(DecodeFailure::Truncated) => {
            Err(fetched.stopped.map_or(MmioError::Undecodable(bytes()), MmioError::Fetch))
        }
        Err(DecodeFailure::Invalid) => Err(MmioError::Undecodable(bytes())),
        Err(DecodeFailure::Unsupported) => Err(MmioError::Unsupported(bytes())),
    }
}

/// For an EPT violation: refuse fetches and page-walk accesses, and say whether the
/// access was a write (`None` for an EPT misconfiguration, which reports no direction).
fn check_qualification(msg: &ExitMessage) -> Result<Option<bool>, MmioError> {
    // The basic reason's bits compared directly: the dispatcher decoded it already.
    if msg.reason as u16 != ExitReason::EptViolation as u16 {
        return Ok(None);
    }
    if !msg.transfer.contains(TransferMask::QUALIFICATION) {
        return Err(MmioError::NeedsTransfer(TransferMask::QUALIFICATION));
    }
    let q = EptViolation::decode(msg.qualification);
    if q.fetch {
        return Err(MmioError::InstructionFetch);
    }
    if q.linear_valid && !q.translated {
        return Err(MmioError::PageWalk);
    }
    Ok(Some(q.write))
}

/// The device register the exit hit, on its bus.
struct Device<'a, K: Copy, const N: usize, D: ?Sized> {
    bus: &'a mut Bus<K, N>,
    devices: &'a mut D,
    gpa: u64,
}

impl<K: Copy, const N: usize, D: DeviceMap<K> + ?Sized> Device<'_, K, N, D> {
    /// Read `width` bytes, zero-extended.
    fn read(&mut self, width: u8) -> u64 {
        let mut raw = [0u8; 8];
        if let Some(data) = raw.get_mut(..usize::from(width)) {
            self.bus.read(self.devices, self.gpa, data);
        }
        u64::from_le_bytes(raw)
    }

    /// Write the low `width` bytes of `value`.
    fn write(&mut self, width: u8, value: u64) {
        let raw = value.to_le_bytes();
        if let Some(data) = raw.get(..usize::from(width)) {
            self.bus.write(self.devices, self.gpa, data);
        }
    }
}

/// `value`'s low `width` bytes, sign-extended to 64 bits.
const fn sign_extend(value: u64, width: u8) -> u64 {
    match width {
        1 => value as u8 as i8 as i64 as u64,
        2 => value as u16 as i16 as i64 as u64,
        4 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

#[cfg(test)]
mod tests;
