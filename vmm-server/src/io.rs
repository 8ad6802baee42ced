//! Emulation of IN, OUT, INS and OUTS from an I/O-instruction exit.
//!
//! Plain IN/OUT move 1, 2 or 4 bytes between RAX and the port bus (a 4-byte IN zero-
//! extends into RAX, as a 32-bit register write does). String I/O moves up to
//! [`MAX_STRING_ITERATIONS`] elements per exit through guest memory, starting at the
//! guest-linear address the exit reports and stepping by the element size in the
//! direction RFLAGS.DF says; RSI/RDI and, with REP, RCX are updated at the instruction's
//! address size. A REP that is not finished leaves RIP alone, so the guest re-executes it
//! (taking pending interrupts in between, exactly like the CPU does between iterations).

use protocols::vmexit::{ExitMessage, Gprs};

use crate::bus::{Bus, DeviceMap};
use crate::devices::remote::RemoteDevice;
use crate::exit_qualification::{
    AddressSize, DecodeError, IoDirection, IoQualification, StringIoInfo,
};
use crate::guest_memory::{GuestMemory, MemoryError};
use crate::paging::{translate_access, AccessError, DataAccess, PageFault, PagingMode};
use crate::reply::ReplyBuilder;
use protocols::device_model::PAGE_SIZE;
use protocols::x86::RFLAGS_DF;

/// Most elements one exit moves for a REP string instruction; bounds the VMM's work per
/// exit so interrupts stay timely.
pub const MAX_STRING_ITERATIONS: u64 = 1024;

/// Why an I/O instruction could not be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoFault {
    /// The instruction information did not decode.
    Decode(DecodeError),
    /// The memory operand touched memory the VMM cannot see.
    Memory(MemoryError),
    /// The memory operand's page is absent or forbids the access: the guest takes this
    /// #PF (the registers show the elements done before it).
    PageFault(PageFault),
}

impl From<MemoryError> for IoFault {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}

/// The guest state that decides how a memory operand is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMode {
    /// Paging mode.
    pub paging: PagingMode,
    /// Current privilege level (0 when unknown).
    pub cpl: u8,
}

/// Merge `new` into `old` as a write at `size` does: 16-bit writes keep the upper bits,
/// 32-bit writes zero-extend.
fn merge(old: u64, new: u64, size: AddressSize) -> u64 {
    match size {
        AddressSize::Bits16 => (old & !0xffff) | (new & 0xffff),
        AddressSize::Bits32 => new & 0xffff_ffff,
        AddressSize::Bits64 => new,
    }
}

/// Emulate a plain IN or OUT (`q.string` clear): the value moves between RAX and `bus`,
/// a loaded RAX goes into `reply`. It always completes.
pub fn emulate_port<K: Copy, const N: usize, D: DeviceMap<K>>(
    msg: &ExitMessage,
    q: IoQualification,
    bus: &mut Bus<K, N>,
    devices: &mut D,
    reply: &mut ReplyBuilder,
) {
    let port = u64::from(q.port);
    let size = usize::from(q.size);
    let rax = msg.gprs.get(Gprs::RAX).unwrap_or(0);
    match q.direction {
        IoDirection::In => {
            let mut buf = [0u8; 4];
            bus.read(devices, port, buf.get_mut(..size).unwrap_or(&mut []));
            let value = u64::from(u32::from_le_bytes(buf));
            let rax = match q.size {
                1 => (rax & !0xff) | value,
                2 => (rax & !0xffff) | value,
                _ => value,
            };
            reply.set_gpr(Gprs::RAX, rax);
        }
        IoDirection::Out => {
            let bytes = rax.to_le_bytes();
            bus.write(devices, port, bytes.get(..size).unwrap_or(&[]));
        }
    }
}

/// Emulate the I/O instruction of `msg` (decoded as `q`): port accesses go to `bus`,
/// string data to and from guest memory through `mode`'s page tables. GPR updates go
/// into `reply`; returns whether the instruction completed (so RIP should advance).
pub fn emulate<K: Copy, const N: usize, D: DeviceMap<K>>(
    msg: &ExitMessage,
    q: IoQualification,
    bus: &mut Bus<K, N>,
    devices: &mut D,
    mem: &mut impl GuestMemory,
    mode: GuestMode,
    reply: &mut ReplyBuilder,
) -> Result<bool, IoFault> {
    let port = u64::from(q.port);
    let size = usize::from(q.size);
    if !q.string {
        emulate_port(msg, q, bus, devices, reply);
        return Ok(true);
    }
    let mut buf = [0u8; 4];
    let data = buf.get_mut(..size).unwrap_or(&mut []);
    let Some(op) = StringOp::of(msg, q)? else { return Ok(true) };
    let iterations = op.count.min(MAX_STRING_ITERATIONS);
    let mut done = 0u64;
    let mut result = Ok(());
    while done < iterations {
        let linear = op.linear(done);
        let step_result = match q.direction {
            // The destination is checked before the port is read, so a faulting INS has
            // no device side effect (a UART byte is not consumed twice on restart).
            IoDirection::In => resolve(mem, msg, mode, linear, data.len(), true).and_then(|gpas| {
                bus.read(devices, port, data);
                store(mem, &gpas, data)
            }),
            IoDirection::Out => {
                resolve(mem, msg, mode, linear, data.len(), false).and_then(|gpas| {
                    load(mem, &gpas, data)?;
                    bus.write(devices, port, data);
                    Ok(())
                })
            }
        };
        if let Err(e) = step_result {
            result = Err(e);
            break;
        }
        done = done.wrapping_add(1);
    }
    op.finish(done, result, reply)
}

/// The geometry of one string I/O instruction: how many elements, where each lies, and
/// the registers it leaves behind.
struct StringOp {
    rep: bool,
    address_size: AddressSize,
    mask: u64,
    rcx: u64,
    /// Elements the instruction asks for.
    count: u64,
    /// RDI for INS, RSI for OUTS.
    index_reg: u8,
    index: u64,
    /// The segment base (the exit reports the first element's linear address).
    seg_base: u64,
    step: u64,
    backwards: bool,
}

impl StringOp {
    /// The instruction of `msg`; `None` when it moves nothing (a REP with RCX 0).
    fn of(msg: &ExitMessage, q: IoQualification) -> Result<Option<Self>, IoFault> {
        let info = StringIoInfo::decode(msg.instruction_info).map_err(IoFault::Decode)?;
        let address_size = info.address_size;
        let mask = address_size.mask();
        let rcx = msg.gprs.get(Gprs::RCX).unwrap_or(0);
        let count = if q.rep { rcx & mask } else { 1 };
        if count == 0 {
            return Ok(None);
        }
        let index_reg = match q.direction {
            IoDirection::In => Gprs::RDI,
            IoDirection::Out => Gprs::RSI,
        };
        let index = msg.gprs.get(index_reg).unwrap_or(0);
        Ok(Some(Self {
            rep: q.rep,
            address_size,
            mask,
            rcx,
            count,
            index_reg,
            index,
            seg_base: msg.guest_linear.wrapping_sub(index & mask),
            step: u64::from(q.size),
            backwards: msg.rflags & RFLAGS_DF != 0,
        }))
    }

    /// Where element `n` lies, as a linear address.
    fn linear(&self, n: u64) -> u64 {
        let delta = n.wrapping_mul(self.step);
        let offset = if self.backwards {
            self.index.wrapping_sub(delta)
        } else {
            self.index.wrapping_add(delta)
        } & self.mask;
        let linear = self.seg_base.wrapping_add(offset);
        if self.address_size == AddressSize::Bits64 {
            linear
        } else {
            linear & 0xffff_ffff
        }
    }

    /// After `done` elements: the registers reflect them, as after an interrupted REP;
    /// `result` is how the last one went. Whether the instruction completed.
    fn finish(
        &self,
        done: u64,
        result: Result<(), IoFault>,
        reply: &mut ReplyBuilder,
    ) -> Result<bool, IoFault> {
        let moved = done.wrapping_mul(self.step);
        let new_index = if self.backwards {
            self.index.wrapping_sub(moved)
        } else {
            self.index.wrapping_add(moved)
        };
        reply.set_gpr(self.index_reg, merge(self.index, new_index, self.address_size));
        let remaining = self.count.wrapping_sub(done);
        if self.rep {
            reply.set_gpr(Gprs::RCX, merge(self.rcx, remaining, self.address_size));
        }
        result?;
        Ok(!self.rep || remaining == 0)
    }
}

/// Emulate string I/O (`q.string` set) to a device out of process (`device`, the port at
/// `offset` in its range) a batch at a time: the elements of one exit (up to
/// [`MAX_STRING_ITERATIONS`], and a page of bytes) go in one request through the page the
/// device shares, instead of a call per element. An element whose memory faults ends the
/// batch before it, so the device sees exactly the elements the guest completed (an INS
/// checks every destination before the device is read). Registers and the result are
/// [`emulate`]'s.
pub fn emulate_batched(
    msg: &ExitMessage,
    q: IoQualification,
    (device, offset): (&mut RemoteDevice, u64),
    mem: &mut impl GuestMemory,
    mode: GuestMode,
    reply: &mut ReplyBuilder,
) -> Result<bool, IoFault> {
    let Some(op) = StringOp::of(msg, q)? else { return Ok(true) };
    let write = q.direction == IoDirection::Out;
    let size = usize::from(q.size);
    let per_page = PAGE_SIZE.checked_div(size).unwrap_or(0) as u64;
    let iterations = op.count.min(MAX_STRING_ITERATIONS).min(per_page);
    let mut buf = [0u8; PAGE_SIZE];
    let mut done = 0u64;
    let mut result = Ok(());
    // Every element's memory first: an OUTS loads it, an INS only checks it.
    while done < iterations {
        let at = usize::try_from(done).unwrap_or(0).wrapping_mul(size);
        let element = buf.get_mut(at..at.wrapping_add(size)).unwrap_or(&mut []);
        let step_result = resolve(mem, msg, mode, op.linear(done), size, !write).and_then(|gpas| {
            if write {
                load(mem, &gpas, element)
            } else {
                Ok(())
            }
        });
        if let Err(e) = step_result {
            result = Err(e);
            break;
        }
        done = done.wrapping_add(1);
    }
    let bytes =
        buf.get_mut(..usize::try_from(done).unwrap_or(0).wrapping_mul(size)).unwrap_or(&mut []);
    if !bytes.is_empty() {
        if write {
            device.write_string(offset, q.size, bytes);
        } else {
            device.read_string(offset, q.size, bytes);
            for (n, element) in (0u64..).zip(bytes.chunks(size.max(1))) {
                // Checked above; memory that vanished since is the VMM's to report.
                let gpas = resolve(mem, msg, mode, op.linear(n), size, true)?;
                store(mem, &gpas, element)?;
            }
        }
    }
    op.finish(done, result, reply)
}

/// Guest-physical addresses of an element of `len` (at most 4) bytes at `linear`: one
/// per byte, so an element straddling a page boundary uses both translations. Applies the
/// guest's permission rules for a write (`write`) at `mode.cpl`, and probes that the
/// memory is there, so the access that follows cannot fail half-way.
fn resolve(
    mem: &impl GuestMemory,
    msg: &ExitMessage,
    mode: GuestMode,
    linear: u64,
    len: usize,
    write: bool,
) -> Result<[u64; 4], IoFault> {
    let access = DataAccess::new(write, mode.cpl, msg.cr0);
    let check = |lin: u64| -> Result<u64, IoFault> {
        let gpa =
            translate_access(mem, mode.paging, msg.cr3, lin, access).map_err(|e| match e {
                AccessError::PageFault(pf) => IoFault::PageFault(pf),
                AccessError::Memory(m) => IoFault::Memory(m),
            })?;
        let mut probe = [0u8; 1];
        mem.read(gpa, &mut probe)?;
        Ok(gpa)
    };
    let mut gpas = [0u64; 4];
    let first = check(linear)?;
    let same_page = (linear & 0xfff).saturating_add(len as u64) <= 0x1000;
    for (i, g) in gpas.iter_mut().enumerate().take(len) {
        *g = if same_page {
            first.wrapping_add(i as u64)
        } else {
            check(linear.wrapping_add(i as u64))?
        };
    }
    Ok(gpas)
}

/// Read the bytes at `gpas` into `data`.
fn load(mem: &impl GuestMemory, gpas: &[u64; 4], data: &mut [u8]) -> Result<(), IoFault> {
    for (byte, &gpa) in data.iter_mut().zip(gpas) {
        let mut one = [0u8; 1];
        mem.read(gpa, &mut one)?;
        *byte = one[0];
    }
    Ok(())
}

/// Write `data` to the bytes at `gpas`.
fn store(mem: &mut impl GuestMemory, gpas: &[u64; 4], data: &[u8]) -> Result<(), IoFault> {
    for (&byte, &gpa) in data.iter().zip(gpas) {
        mem.write(gpa, &[byte])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{emulate, GuestMode, IoFault, MAX_STRING_ITERATIONS};
    use crate::bus::{Bus, BusDevice, DeviceMap};
    use crate::exit_qualification::IoQualification;
    use crate::guest_memory::{GuestMemory, SliceMemory};
    use crate::paging::{PageFault, PagingMode};
    use crate::reply::ReplyBuilder;
    use protocols::vmexit::ExitReply;
    use protocols::vmexit::{ExitMessage, Gprs};

    /// A port device that returns an incrementing byte and logs writes.
    #[derive(Default)]
    struct Counter {
        next: u8,
        written: Vec<u8>,
    }

    impl BusDevice for Counter {
        fn read(&mut self, _offset: u64, data: &mut [u8]) {
            for b in data {
                *b = self.next;
                self.next = self.next.wrapping_add(1);
            }
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.written.extend_from_slice(data);
        }
    }

    impl DeviceMap<()> for Counter {
        fn read(&mut self, _key: (), offset: u64, data: &mut [u8]) {
            BusDevice::read(self, offset, data);
        }
        fn write(&mut self, _key: (), offset: u64, data: &[u8]) {
            BusDevice::write(self, offset, data);
        }
    }

    const FLAT: GuestMode = GuestMode { paging: PagingMode::Disabled, cpl: 0 };

    fn setup() -> (Bus<(), 1>, Counter) {
        let mut bus = Bus::new();
        bus.insert(0x1f0, 8, ()).unwrap();
        (bus, Counter::default())
    }

    fn msg(qual: u64, info: u32, linear: u64, regs: &[(u8, u64)]) -> ExitMessage {
        let mut m = ExitMessage {
            qualification: qual,
            instruction_info: info,
            guest_linear: linear,
            rflags: 2,
            cr0: 0x11,
            ..Default::default()
        };
        for &(r, v) in regs {
            m.gprs.set(r, v);
        }
        m
    }

    fn gpr(r: &ReplyBuilder, reg: u8) -> Option<u64> {
        let reply = r.reply();
        (reply.gpr_mask & (1 << reg) != 0).then(|| reply.gprs.regs[usize::from(reg)])
    }

    /// [`emulate`] with a reply area of its own, for tests that only look at the outcome.
    fn emulate_alone<K: Copy, const N: usize, D: DeviceMap<K>>(
        m: &ExitMessage,
        q: IoQualification,
        bus: &mut Bus<K, N>,
        dev: &mut D,
        mem: &mut impl GuestMemory,
        mode: GuestMode,
    ) -> Result<bool, IoFault> {
        emulate(m, q, bus, dev, mem, mode, &mut ReplyBuilder::within(&mut ExitReply::new()))
    }
    #[test]
    fn in_merges_into_rax_by_size() {
        let (mut bus, mut dev) = setup();
        let mut ram = [0u8; 0];
        let mut mem = SliceMemory::new(0, &mut ram);
        dev.next = 0x80;
        for (qual, expect) in [
            (0x01f0_0008u64, 0xffff_ffff_ffff_ff80u64), // in al
            (0x01f0_0009, 0xffff_ffff_ffff_8281),       // in ax
            (0x01f0_000b, 0x0000_0000_8685_8483),       // in eax zero-extends
        ] {
            let m = msg(qual, 0, 0, &[(Gprs::RAX, u64::MAX)]);
            let mut area = ExitReply::new();
            let mut r = ReplyBuilder::within(&mut area);
            let q = IoQualification::decode(qual).unwrap();
            assert_eq!(emulate(&m, q, &mut bus, &mut dev, &mut mem, FLAT, &mut r), Ok(true));
            assert_eq!(gpr(&r, Gprs::RAX), Some(expect));
        }
        // An unclaimed port reads all-ones.
        let m = msg(0x0300_0008, 0, 0, &[(Gprs::RAX, 0)]);
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        emulate(
            &m,
            IoQualification::decode(0x0300_0008).unwrap(),
            &mut bus,
            &mut dev,
            &mut mem,
            FLAT,
            &mut r,
        )
        .unwrap();
        assert_eq!(gpr(&r, Gprs::RAX), Some(0xff));
    }

    #[test]
    fn out_sends_the_low_bytes_of_rax() {
        let (mut bus, mut dev) = setup();
        let mut ram = [0u8; 0];
        let mut mem = SliceMemory::new(0, &mut ram);
        let m = msg(0x01f0_0001, 0, 0, &[(Gprs::RAX, 0x1122_3344)]);
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        let q = IoQualification::decode(0x01f0_0001).unwrap();
        assert_eq!(emulate(&m, q, &mut bus, &mut dev, &mut mem, FLAT, &mut r), Ok(true));
        assert_eq!(dev.written, [0x44, 0x33]);
        assert_eq!(r.reply().gpr_mask, 0, "OUT changes no register");
    }

    #[test]
    fn rep_insw_fills_memory_and_updates_rdi_rcx() {
        let (mut bus, mut dev) = setup();
        let mut ram = vec![0u8; 0x100];
        let mut mem = SliceMemory::new(0, &mut ram);
        // rep insw, 32-bit address size (info bits 9:7 = 1), ES base 0x10, EDI 0x20.
        let qual = 0x01f0_0039;
        let m = msg(qual, 1 << 7, 0x30, &[(Gprs::RDI, 0xdead_0000_0000_0020), (Gprs::RCX, 3)]);
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        let q = IoQualification::decode(qual).unwrap();
        assert_eq!(emulate(&m, q, &mut bus, &mut dev, &mut mem, FLAT, &mut r), Ok(true));
        let mut got = [0u8; 6];
        mem.read(0x30, &mut got).unwrap();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
        assert_eq!(gpr(&r, Gprs::RDI), Some(0x26), "32-bit writes zero-extend");
        assert_eq!(gpr(&r, Gprs::RCX), Some(0));
    }

    #[test]
    fn outsb_backwards_with_16_bit_wrap() {
        let (mut bus, mut dev) = setup();
        let mut ram = vec![0u8; 0x2_0000];
        ram[0x1_0000] = b'a';
        ram[0x1_ffff] = b'b';
        let mut mem = SliceMemory::new(0, &mut ram);
        // rep outsb, 16-bit addressing, DS base 0x10000, SI = 0 then wraps to 0xffff.
        let qual = 0x01f0_0030;
        let mut m =
            msg(qual, 3 << 15, 0x1_0000, &[(Gprs::RSI, 0xabcd_0000), (Gprs::RCX, 0x5555_0002)]);
        m.rflags |= 1 << 10;
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        let q = IoQualification::decode(qual).unwrap();
        assert_eq!(emulate(&m, q, &mut bus, &mut dev, &mut mem, FLAT, &mut r), Ok(true));
        assert_eq!(dev.written, b"ab");
        assert_eq!(gpr(&r, Gprs::RSI), Some(0xabcd_fffe));
        assert_eq!(gpr(&r, Gprs::RCX), Some(0x5555_0000), "CX only");
    }

    #[test]
    fn long_rep_is_split_and_rip_stays() {
        let (mut bus, mut dev) = setup();
        let mut ram = vec![0u8; 0x1000];
        let mut mem = SliceMemory::new(0, &mut ram);
        let qual = 0x01f0_0030; // rep outsb
        let m = msg(qual, 2 << 7, 0, &[(Gprs::RSI, 0), (Gprs::RCX, 3000)]);
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        let q = IoQualification::decode(qual).unwrap();
        assert_eq!(emulate(&m, q, &mut bus, &mut dev, &mut mem, FLAT, &mut r), Ok(false));
        assert_eq!(dev.written.len() as u64, MAX_STRING_ITERATIONS);
        assert_eq!(gpr(&r, Gprs::RCX), Some(3000 - MAX_STRING_ITERATIONS));
        // REP with a zero count does nothing and completes.
        let m = msg(qual, 2 << 7, 0, &[(Gprs::RCX, 0)]);
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        assert_eq!(emulate(&m, q, &mut bus, &mut dev, &mut mem, FLAT, &mut r), Ok(true));
        assert_eq!(r.reply().gpr_mask, 0);
    }

    #[test]
    fn faults_are_reported_with_progress_kept() {
        let (mut bus, mut dev) = setup();
        let mut ram = vec![0u8; 0x10];
        let mut mem = SliceMemory::new(0, &mut ram);
        let qual = 0x01f0_0038; // rep insb
        let m = msg(qual, 2 << 7, 0xe, &[(Gprs::RDI, 0xe), (Gprs::RCX, 5)]);
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        let q = IoQualification::decode(qual).unwrap();
        let out = emulate(&m, q, &mut bus, &mut dev, &mut mem, FLAT, &mut r);
        assert!(matches!(out, Err(IoFault::Memory(_))));
        assert_eq!(gpr(&r, Gprs::RCX), Some(3));
        assert_eq!(gpr(&r, Gprs::RDI), Some(0x10));
        // Bad instruction information.
        let m = msg(qual, 3 << 7, 0, &[(Gprs::RCX, 1)]);
        assert!(matches!(
            emulate_alone(&m, q, &mut bus, &mut dev, &mut mem, FLAT),
            Err(IoFault::Decode(_))
        ));
    }

    #[test]
    fn paged_string_io_checks_user_and_write_permission() {
        let (mut bus, mut dev) = setup();
        let mut ram = vec![0u8; 0x10000];
        let mut mem = SliceMemory::new(0, &mut ram);
        // 4-level tables: linear 0x0 -> PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000.
        for (at, v) in [
            (0x1000u64, 0x2007u64),
            (0x2000, 0x3007),
            (0x3000, 0x4007),
            (0x4000, 0x8005),
            (0x4008, 0x9003),
        ] {
            mem.write(at, &v.to_le_bytes()).unwrap();
        }
        let long = |cpl| GuestMode { paging: PagingMode::Long4, cpl };
        let qual = 0x01f0_0018; // insb (no REP)
        let mut m = msg(qual, 2 << 7, 0x10, &[(Gprs::RDI, 0x10)]);
        m.cr3 = 0x1000;
        m.cr0 = 0x8001_0011; // PG, WP
        let q = IoQualification::decode(qual).unwrap();
        // A read-only user page: writes fault with WP set, even for the kernel.
        let out = emulate_alone(&m, q, &mut bus, &mut dev, &mut mem, long(0));
        // (INS writes memory: error code present | write.)
        assert_eq!(out, Err(IoFault::PageFault(PageFault { linear: 0x10, error: 3 })));
        // A writable supervisor page: fine for CPL 0, a fault for CPL 3.
        m.guest_linear = 0x1010;
        m.gprs.set(Gprs::RDI, 0x1010);
        assert_eq!(emulate_alone(&m, q, &mut bus, &mut dev, &mut mem, long(0)), Ok(true));
        assert_eq!(mem.read_u32(0x9010).unwrap() & 0xff, 0);
        let out = emulate_alone(&m, q, &mut bus, &mut dev, &mut mem, long(3));
        assert_eq!(out, Err(IoFault::PageFault(PageFault { linear: 0x1010, error: 7 })));
        // Unmapped.
        m.guest_linear = 0x5000;
        m.gprs.set(Gprs::RDI, 0x5000);
        let out = emulate_alone(&m, q, &mut bus, &mut dev, &mut mem, long(0));
        assert_eq!(out, Err(IoFault::PageFault(PageFault { linear: 0x5000, error: 2 })));
    }

    #[test]
    fn an_element_straddling_pages_uses_both_translations() {
        let (mut bus, mut dev) = setup();
        let mut ram = vec![0u8; 0x10000];
        let mut mem = SliceMemory::new(0, &mut ram);
        // Linear page 0 -> 0x8000, page 1 -> 0x5000.
        for (at, v) in [
            (0x1000u64, 0x2003u64),
            (0x2000, 0x3003),
            (0x3000, 0x4003),
            (0x4000, 0x8003),
            (0x4008, 0x5003),
        ] {
            mem.write(at, &v.to_le_bytes()).unwrap();
        }
        let qual = 0x01f0_001b; // insd
        let mut m = msg(qual, 2 << 7, 0xffe, &[(Gprs::RDI, 0xffe)]);
        m.cr3 = 0x1000;
        m.cr0 = 0x8000_0011;
        let q = IoQualification::decode(qual).unwrap();
        let mode = GuestMode { paging: PagingMode::Long4, cpl: 0 };
        assert_eq!(emulate_alone(&m, q, &mut bus, &mut dev, &mut mem, mode), Ok(true));
        let mut a = [0u8; 2];
        let mut b = [0u8; 2];
        mem.read(0x8ffe, &mut a).unwrap();
        mem.read(0x5000, &mut b).unwrap();
        assert_eq!((a, b), ([0, 1], [2, 3]));
    }
}
