//! MOVS and STOS on device memory: STOS and MOVS into a device, MOVS out of one into RAM
//! (or between two devices).
//!
//! Each side of an element is found by its own address (seg:RSI, ES:RDI through the
//! guest's page tables): an address a device on the bus claims goes to the device, any
//! other to guest RAM. So the exit's direction and address only say that some side is a
//! device, and a copy between RAM and a device works either way round.
//!
//! With REP, up to [`REP_BATCH`] elements are moved per exit and RCX, RSI and RDI record
//! the progress; RIP stays on the instruction until RCX reaches zero, so the guest runs
//! it again (and takes interrupts in between, as a REP instruction may), as KVM does.
//! The CPU's checks the VMM cannot raise are not made: a segment limit or a
//! non-canonical address would #GP; a page the guest's tables do not map, or forbid the
//! access to, would #PF, which needs CR2 to inject, so the VM stops naming the address.

use protocols::vmexit::{ExitMessage, Gprs};
use protocols::x86::RFLAGS_DF;

use super::decode::{Gpr, Part, StringKind, StringOp};
use super::fetch::FetchError;
use super::MmioError;
use crate::bus::{Bus, DeviceMap};
use crate::guest_memory::GuestMemory;
use crate::paging::{translate_access, AccessError, DataAccess, PagingMode};
use crate::reply::ReplyBuilder;

/// Elements a REP string instruction moves per exit: few enough that interrupts wait
/// little, enough that a copy to a device takes one exit per cache line or so.
pub const REP_BATCH: u64 = 64;

/// Index of ES in [`protocols::vmexit::Segments`] (MOVS and STOS write through ES).
const SEG_ES: u8 = 0;
/// Index of FS, the first segment with a base in 64-bit mode.
const SEG_FS: u8 = 4;

const PAGE: u64 = 0x1000;
const PAGE_OFFSET: u64 = 0xfff;

/// The guest state a string instruction's addresses are computed from.
pub struct Guest<'a> {
    /// The exit: registers, RFLAGS, segments, CR0, CPL.
    pub msg: &'a ExitMessage,
    /// The guest's paging mode.
    pub mode: PagingMode,
    /// Guest CR3.
    pub cr3: u64,
    /// 64-bit code: only FS and GS have a base, linear addresses do not wrap at 4 GiB.
    pub bits64: bool,
}

/// Perform `op` (one element, or a batch of a REP instruction) and queue RCX, RSI and RDI;
/// returns whether the instruction is finished (RIP moves past it).
pub fn emulate<K: Copy, const N: usize, D: DeviceMap<K> + ?Sized>(
    g: &Guest<'_>,
    op: StringOp,
    mem: &mut impl GuestMemory,
    bus: &mut Bus<K, N>,
    devices: &mut D,
    reply: &mut ReplyBuilder,
) -> Result<bool, MmioError> {
    let reg = |index: u8| g.msg.gprs.get(index).unwrap_or(0);
    let part = part(op.address);
    let (rcx, rsi, rdi) = (
        Gpr { index: Gprs::RCX, part },
        Gpr { index: Gprs::RSI, part },
        Gpr { index: Gprs::RDI, part },
    );
    let (mut count, mut si, mut di) =
        (rcx.read(reg(rcx.index)), rsi.read(reg(rsi.index)), rdi.read(reg(rdi.index)));
    let width = u64::from(op.width);
    let step = if g.msg.rflags & RFLAGS_DF != 0 { width.wrapping_neg() } else { width };
    let address_mask = super::flags::mask(op.address);
    let iterations = if op.rep { count.min(REP_BATCH) } else { 1 };
    let mut data = [0u8; 8];
    let data = data.get_mut(..usize::from(op.width)).unwrap_or_default();
    // A #PF ends the batch at its element: the registers show the elements before it,
    // as after a fault on hardware, and the dispatcher injects it.
    let mut fault = None;
    for _ in 0..iterations {
        let mut element = || -> Result<(), MmioError> {
            if op.kind == StringKind::Stos {
                let rax = Gpr { index: Gprs::RAX, part: part_for_width(op.width) };
                let value = rax.read(reg(rax.index)).to_le_bytes();
                data.copy_from_slice(value.get(..data.len()).unwrap_or_default());
            } else {
                g.access(mem, bus, devices, g.linear(op.segment, si), Dir::Read(&mut *data))?;
            }
            g.access(mem, bus, devices, g.linear(SEG_ES, di), Dir::Write(&*data))
        };
        match element() {
            Ok(()) => {}
            Err(MmioError::PageFault(pf)) => {
                fault = Some(pf);
                break;
            }
            Err(e) => return Err(e),
        }
        if op.kind == StringKind::Movs {
            si = si.wrapping_add(step) & address_mask;
        }
        di = di.wrapping_add(step) & address_mask;
        count = count.wrapping_sub(1);
    }
    reply.set_gpr(rdi.index, rdi.write(reg(rdi.index), di));
    if op.kind == StringKind::Movs {
        reply.set_gpr(rsi.index, rsi.write(reg(rsi.index), si));
    }
    if op.rep {
        reply.set_gpr(rcx.index, rcx.write(reg(rcx.index), count));
    }
    if let Some(pf) = fault {
        return Err(MmioError::PageFault(pf));
    }
    Ok(!op.rep || count == 0)
}

/// The part of RCX, RSI and RDI an address size uses (and of RAX an element width).
const fn part(bytes: u8) -> Part {
    match bytes {
        2 => Part::Low16,
        4 => Part::Low32,
        _ => Part::Full,
    }
}

/// The part of RAX STOS stores for an element width.
const fn part_for_width(width: u8) -> Part {
    match width {
        1 => Part::Low8,
        w => part(w),
    }
}

/// One side of an element: the bytes to fill, or the bytes to store.
enum Dir<'b> {
    Read(&'b mut [u8]),
    Write(&'b [u8]),
}

impl Guest<'_> {
    /// The linear address of `offset` in segment `segment`.
    fn linear(&self, segment: u8, offset: u64) -> u64 {
        let base = self.msg.segments.regs.get(usize::from(segment)).map_or(0, |s| s.base);
        if !self.bits64 {
            base.wrapping_add(offset) & 0xffff_ffff
        } else if segment >= SEG_FS {
            base.wrapping_add(offset)
        } else {
            offset
        }
    }

    /// Read or write the element at `linear`, page by page (an element may cross into a
    /// page that is not the next one physically), each part from the device that claims
    /// it or from RAM.
    fn access<K: Copy, const N: usize, D: DeviceMap<K> + ?Sized>(
        &self,
        mem: &mut impl GuestMemory,
        bus: &mut Bus<K, N>,
        devices: &mut D,
        linear: u64,
        mut dir: Dir<'_>,
    ) -> Result<(), MmioError> {
        let len = match &dir {
            Dir::Read(d) => d.len(),
            Dir::Write(d) => d.len(),
        };
        let mut done = 0usize;
        while done < len {
            let at = linear.wrapping_add(done as u64);
            let at = if self.bits64 { at } else { at & 0xffff_ffff };
            let chunk = (PAGE.wrapping_sub(at & PAGE_OFFSET) as usize).min(len.wrapping_sub(done));
            let end = done.wrapping_add(chunk);
            let access = DataAccess::new(matches!(dir, Dir::Write(_)), self.msg.cpl, self.msg.cr0);
            let gpa =
                translate_access(&*mem, self.mode, self.cr3, at, access).map_err(|e| match e {
                    AccessError::PageFault(pf) => MmioError::PageFault(pf),
                    AccessError::Memory(m) => MmioError::Data(FetchError::Memory { gpa: m.gpa }),
                })?;
            let device = bus.resolve(gpa, chunk).is_some();
            let memory = |e: crate::guest_memory::MemoryError| {
                MmioError::Data(FetchError::Memory { gpa: e.gpa })
            };
            match &mut dir {
                Dir::Read(d) => {
                    let part = d.get_mut(done..end).unwrap_or_default();
                    if device {
                        bus.read(devices, gpa, part);
                    } else {
                        mem.read(gpa, part).map_err(memory)?;
                    }
                }
                Dir::Write(d) => {
                    let part = d.get(done..end).unwrap_or_default();
                    if device {
                        bus.write(devices, gpa, part);
                    } else {
                        mem.write(gpa, part).map_err(memory)?;
                    }
                }
            }
            done = end;
        }
        Ok(())
    }
}
