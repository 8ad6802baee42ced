//! The `syscalls` target's input: a byte string read as a sequence of operations, each a
//! tag byte and its fields, with an encoder so seeds can be written as operations.
//!
//! A hand-rolled format rather than `arbitrary`: seeds that spawn threads, build a vCPU
//! and exchange messages must be expressible (and stay meaningful when the code changes),
//! and every byte string still decodes (missing bytes read as 0), so libFuzzer's plain
//! byte mutations explore from there. Words use a one-byte selector so the values that
//! matter here (slot indices, rights, the mapped user page, `u64::MAX`) cost one byte.

use protocols::fault::{EXIT_LABEL, FAULT_LABEL};
use protocols::object::{vm, Invocation};
use protocols::vmm::REPORT_LABEL;

/// Values a one-byte word selector names directly (selectors `0xc0..=0xfe`).
pub const CONSTANTS: [u64; 26] = [
    256,                   // one past the root CNode
    1 << 20,               // a large slot index
    u64::MAX,              // "no fault endpoint" and the largest of everything
    u64::MAX - 1,          //
    1 << 63,               //
    0x1f,                  // every right
    0x0b,                  // READ | WRITE | CALL
    0x01,                  // READ
    0x40_0000,             // the root's mapped user page
    0x40_0ff8,             // its last word
    0x40_1000,             // the page after it (unmapped)
    0x7fff_ffff_e000,      // the last mappable user page
    0x7fff_ffff_f000,      // the guard page below the kernel half
    0xffff_8000_0000_0000, // the kernel half
    0x1000,                //
    4096,                  // `DEBUG_WRITE_MAX`
    4097,                  // one more
    vm::EXIT_LABEL,        //
    REPORT_LABEL,          // the VMM's
    FAULT_LABEL,           //
    1 << 47,               //
    0x8001_0033,           // a long-mode CR0
    0x2000,                // CR4.VMXE
    0x202,                 // RFLAGS with IF
    EXIT_LABEL,            // a thread's (appended: earlier selectors keep their values)
    vm::FAILURE_LABEL,     //
];

/// Selectors below this are the value itself.
pub const SMALL_LIMIT: u8 = 0xc0;
/// The selector that is followed by eight raw little-endian bytes.
pub const RAW: u8 = 0xff;

/// The first selector that names something live (a capability of the kind
/// `selector - LIVE_FIRST`, see [`Kind`]), followed by an index byte. These selectors
/// alias constants in older inputs, which the seed writer never produced.
pub const LIVE_FIRST: u8 = 0xe0;
/// The selector naming a free slot of the current CSpace, followed by an index byte.
pub const FREE: u8 = 0xef;
/// The high bits of a word that still has to be resolved against the state: the
/// selector in bits 15:8 and the index in bits 7:0.
pub const REF_TAG: u64 = 0x5e1e_c7ed_0000_0000;

/// What a live selector looks for in the current thread's CSpace root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Any capability.
    Any = 0,
    /// Untyped memory.
    Untyped,
    /// A CNode.
    CNode,
    /// A thread.
    Tcb,
    /// An endpoint.
    Endpoint,
    /// A notification.
    Notification,
    /// A frame.
    Frame,
    /// A Reply object.
    Reply,
    /// An IRQ handler.
    IrqHandler,
    /// A vCPU.
    VCpu,
    /// An address space.
    VSpace,
    /// IRQ control.
    IrqControl,
    /// I/O ports.
    IoPorts,
    /// A guest address space.
    GuestSpace,
    /// An endpoint or a notification.
    Ipc,
}

impl Kind {
    /// Every kind, by selector offset.
    pub const ALL: [Self; 15] = [
        Self::Any,
        Self::Untyped,
        Self::CNode,
        Self::Tcb,
        Self::Endpoint,
        Self::Notification,
        Self::Frame,
        Self::Reply,
        Self::IrqHandler,
        Self::VCpu,
        Self::VSpace,
        Self::IrqControl,
        Self::IoPorts,
        Self::GuestSpace,
        Self::Ipc,
    ];
}

/// A 64-bit argument as the selector byte (and raw bytes) encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word(pub u64);

impl Word {
    /// The `index`-th (modulo how many there are) slot of the current CSpace root holding
    /// a capability of kind `kind`: a mutation of the index still names one.
    pub fn live(kind: Kind, index: u8) -> Self {
        Self(REF_TAG | u64::from(LIVE_FIRST + kind as u8) << 8 | u64::from(index))
    }

    /// The `index`-th (modulo their number) free slot of the current CSpace root.
    pub fn free(index: u8) -> Self {
        Self(REF_TAG | u64::from(FREE) << 8 | u64::from(index))
    }

    /// What a word to resolve names: `(kind, index)`, kind `None` for a free slot.
    pub fn reference(self) -> Option<(Option<Kind>, u8)> {
        if self.0 & !0xffff != REF_TAG {
            return None;
        }
        let sel = (self.0 >> 8) as u8;
        let kind = match sel {
            FREE => None,
            s => Some(*Kind::ALL.get(usize::from(s.checked_sub(LIVE_FIRST)?))?),
        };
        Some((kind, self.0 as u8))
    }
}

/// Message info as `(label, flags)`: flags bits 2:0 and 7:5 are the length's low and high
/// three bits (0-63; beyond 4 the words continue in the IPC buffer), bit 3 the grant flag,
/// bit 4 sets a reserved bit (invalid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// The label.
    pub label: Word,
    /// Length, grant and the reserved bit.
    pub flags: u8,
}

impl Info {
    /// The `rsi` word.
    pub fn raw(self) -> u64 {
        let f = u64::from(self.flags);
        let len = (f & 7) | (f >> 5) << 3;
        let grant = if f & 8 != 0 { protocols::ipc::GRANT_BIT } else { 0 };
        let reserved = if f & 0x10 != 0 { 0x100 } else { 0 };
        (self.label.0 << 12) | len | grant | reserved
    }
}

/// One step of the sequence. Unless said otherwise an operation is made by whatever
/// thread is current, through the syscall entry (fastpath first when `fast`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Any syscall: number (any byte, so invalid ones too), `rdi`, `rsi`, the four message
    /// words, and `r12`/`r13` (capability transfer slots).
    Syscall {
        number: u8,
        rdi: Word,
        info: Info,
        words: [Word; 4],
        r12: Word,
        r13: Word,
        fast: bool,
    },
    /// `Call` on `slot` with a well-formed invocation label (`which` indexes
    /// `Invocation::ALL`; `0xff` names label 0, which no invocation has).
    Invoke { which: u8, slot: Word, len: u8, words: [Word; 4] },
    /// `UntypedRetype` on `untyped`: `ty` (11 and above are invalid), size bits, first
    /// destination, count.
    Retype { untyped: Word, ty: u8, bits: u8, dst: Word, count: u8 },
    /// Four syscalls that make a thread: retype a TCB into `dst`, configure it with the
    /// given CSpace, VSpace and fault-endpoint slots, set its priority, resume it.
    Spawn { dst: Word, cspace: Word, vspace: Word, fault: Word, priority: u8 },
    /// The syscalls that make a running vCPU in slots `base..base+5` (VCpu, GuestSpace,
    /// exit endpoint, message frame, guest RAM): retype, map the RAM, configure with
    /// `mask` (transfer groups), start in `mode` with `controls` at `priority`.
    VcpuSetup { base: Word, mode: u8, priority: u8, mask: u16, controls: u32 },
    /// The current vCPU leaves the guest (ignored when the current thread is not a vCPU).
    /// `kind`: 0-5 an exit the VMM sees, 6 an external interrupt (a timer tick while the
    /// guest ran), 7 a VMX instruction failing (the vCPU stops and its VMM is told). `real` takes CR0/CR4/RFLAGS from the VMCS as the
    /// kernel last set it, as the hardware would report them.
    Exit {
        kind: u8,
        reason: Word,
        qualification: Word,
        len: u8,
        real: bool,
        cr0: Word,
        cr4: Word,
        rflags: Word,
        rip: Word,
        interruptibility: u8,
        gprs: [Word; 2],
    },
    /// The VMM writes a reply batch into the frame in `frame` (a slot of the current
    /// thread's CSpace): header words, GPRs, then writes of `Field::ALL[i]` (or raw).
    ReplyArea {
        frame: Word,
        flags: u8,
        count: u8,
        gpr_mask: u16,
        injection: Word,
        gprs: [Word; 2],
        writes: Vec<(u8, Word)>,
    },
    /// Raw words into the reply area.
    ReplyRaw { frame: Word, words: Vec<Word> },
    /// A timer tick: the current thread is preempted.
    Tick,
    /// The current thread takes an exception in ring 3.
    Fault { vector: u8, error: Word, addr: Word },
    /// Device interrupts on the lines in `lines` (only those unmasked at the interrupt
    /// controller fire), also while no thread runs.
    Irq { lines: u16 },
    /// A chain of `depth` two-slot CNodes retyped from `untyped`, each holding the only
    /// capability to the next, its top in slot `dst` (built in `dst + 1`): deleting it
    /// takes more than one kernel entry once it is a few hundred deep.
    Chain { untyped: Word, dst: Word, depth: u8 },
    /// The next steps happen on CPU `which` (modulo the CPUs online), which first takes a
    /// reschedule IPI: it runs whatever it should.
    Cpu { which: u8 },
}

impl Op {
    /// The same operation with every word passed through `f` (to resolve live
    /// references before it runs).
    pub fn map_words(&self, mut f: impl FnMut(Word) -> Word) -> Op {
        let mut op = self.clone();
        let mut g = |w: &mut Word| *w = f(*w);
        match &mut op {
            Op::Syscall { rdi, info, words, r12, r13, .. } => {
                g(rdi);
                g(&mut info.label);
                words.iter_mut().for_each(&mut g);
                g(r12);
                g(r13);
            }
            Op::Invoke { slot, words, .. } => {
                g(slot);
                words.iter_mut().for_each(&mut g);
            }
            Op::Retype { untyped, dst, .. } => {
                g(untyped);
                g(dst);
            }
            Op::Spawn { dst, cspace, vspace, fault, .. } => {
                [dst, cspace, vspace, fault].into_iter().for_each(&mut g);
            }
            Op::VcpuSetup { base, .. } => g(base),
            Op::Exit { reason, qualification, cr0, cr4, rflags, rip, gprs, .. } => {
                [reason, qualification, cr0, cr4, rflags, rip].into_iter().for_each(&mut g);
                gprs.iter_mut().for_each(&mut g);
            }
            Op::ReplyArea { frame, injection, gprs, writes, .. } => {
                g(frame);
                g(injection);
                gprs.iter_mut().for_each(&mut g);
                writes.iter_mut().for_each(|(_, w)| g(w));
            }
            Op::ReplyRaw { frame, words } => {
                g(frame);
                words.iter_mut().for_each(&mut g);
            }
            Op::Fault { error, addr, .. } => {
                g(error);
                g(addr);
            }
            Op::Chain { untyped, dst, .. } => {
                g(untyped);
                g(dst);
            }
            Op::Tick | Op::Irq { .. } | Op::Cpu { .. } => {}
        }
        op
    }
}

/// Reads the input; past its end every byte is 0.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Read `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Whether every byte was read.
    pub fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at = self.at.saturating_add(1);
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    fn word(&mut self) -> Word {
        let sel = self.byte();
        Word(match sel {
            RAW => self.u64(),
            s if s < SMALL_LIMIT => u64::from(s),
            s if (LIVE_FIRST..=FREE).contains(&s) => {
                REF_TAG | u64::from(s) << 8 | u64::from(self.byte())
            }
            s => CONSTANTS[usize::from(s - SMALL_LIMIT) % CONSTANTS.len()],
        })
    }

    fn words<const N: usize>(&mut self) -> [Word; N] {
        core::array::from_fn(|_| self.word())
    }

    /// The next operation.
    pub fn op(&mut self) -> Op {
        match self.byte() % 14 {
            0 => Op::Syscall {
                number: self.byte(),
                rdi: self.word(),
                info: Info { label: self.word(), flags: self.byte() },
                words: self.words(),
                r12: self.word(),
                r13: self.word(),
                fast: self.byte() & 1 != 0,
            },
            1 => Op::Invoke {
                which: self.byte(),
                slot: self.word(),
                len: self.byte(),
                words: self.words(),
            },
            2 => Op::Retype {
                untyped: self.word(),
                ty: self.byte(),
                bits: self.byte(),
                dst: self.word(),
                count: self.byte(),
            },
            3 => Op::Spawn {
                dst: self.word(),
                cspace: self.word(),
                vspace: self.word(),
                fault: self.word(),
                priority: self.byte(),
            },
            4 => Op::VcpuSetup {
                base: self.word(),
                mode: self.byte(),
                priority: self.byte(),
                mask: self.u16(),
                controls: self.u32(),
            },
            5 => Op::Exit {
                kind: self.byte(),
                reason: self.word(),
                qualification: self.word(),
                len: self.byte(),
                real: self.byte() & 1 != 0,
                cr0: self.word(),
                cr4: self.word(),
                rflags: self.word(),
                rip: self.word(),
                interruptibility: self.byte(),
                gprs: self.words(),
            },
            6 => {
                let frame = self.word();
                let flags = self.byte();
                let count = self.byte();
                let gpr_mask = self.u16();
                let injection = self.word();
                let gprs = self.words();
                let n = usize::from(count % 20);
                let writes = (0..n).map(|_| (self.byte(), self.word())).collect();
                Op::ReplyArea { frame, flags, count, gpr_mask, injection, gprs, writes }
            }
            7 => {
                let frame = self.word();
                let n = usize::from(self.byte() % 52);
                Op::ReplyRaw { frame, words: (0..n).map(|_| self.word()).collect() }
            }
            8 => Op::Tick,
            9 => Op::Fault { vector: self.byte(), error: self.word(), addr: self.word() },
            11 => Op::Irq { lines: self.u16() },
            12 => Op::Chain { untyped: self.word(), dst: self.word(), depth: self.byte() },
            13 => Op::Cpu { which: self.byte() },
            // A second tag for the most common operation, so mutations land on it often.
            _ => Op::Invoke {
                which: self.byte(),
                slot: self.word(),
                len: self.byte(),
                words: self.words(),
            },
        }
    }
}

/// The first input byte: bit 0 selects a testbed with VT-x.
pub fn vmx_flag(first: u8) -> bool {
    first & 1 != 0
}

/// Builds inputs operation by operation (for the seed corpus).
#[derive(Default)]
pub struct Writer {
    /// The encoded input.
    pub bytes: Vec<u8>,
}

impl Writer {
    /// A new input; `vmx` picks the testbed with VT-x.
    pub fn new(vmx: bool) -> Self {
        Self { bytes: vec![u8::from(vmx)] }
    }

    fn byte(&mut self, b: u8) {
        self.bytes.push(b);
    }

    fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn word(&mut self, w: Word) {
        if w.reference().is_some() {
            self.byte((w.0 >> 8) as u8);
            self.byte(w.0 as u8);
        } else if w.0 < u64::from(SMALL_LIMIT) {
            self.byte(w.0 as u8);
        } else if let Some(i) = CONSTANTS.iter().position(|c| *c == w.0) {
            self.byte(SMALL_LIMIT + i as u8);
        } else {
            self.byte(RAW);
            self.bytes.extend_from_slice(&w.0.to_le_bytes());
        }
    }

    /// Append `op`.
    pub fn op(&mut self, op: &Op) -> &mut Self {
        match op {
            Op::Syscall { number, rdi, info, words, r12, r13, fast } => {
                self.byte(0);
                self.byte(*number);
                self.word(*rdi);
                self.word(info.label);
                self.byte(info.flags);
                words.iter().for_each(|w| self.word(*w));
                self.word(*r12);
                self.word(*r13);
                self.byte(u8::from(*fast));
            }
            Op::Invoke { which, slot, len, words } => {
                self.byte(1);
                self.byte(*which);
                self.word(*slot);
                self.byte(*len);
                words.iter().for_each(|w| self.word(*w));
            }
            Op::Retype { untyped, ty, bits, dst, count } => {
                self.byte(2);
                self.word(*untyped);
                self.byte(*ty);
                self.byte(*bits);
                self.word(*dst);
                self.byte(*count);
            }
            Op::Spawn { dst, cspace, vspace, fault, priority } => {
                self.byte(3);
                [dst, cspace, vspace, fault].iter().for_each(|w| self.word(**w));
                self.byte(*priority);
            }
            Op::VcpuSetup { base, mode, priority, mask, controls } => {
                self.byte(4);
                self.word(*base);
                self.byte(*mode);
                self.byte(*priority);
                self.u16(*mask);
                self.u32(*controls);
            }
            Op::Exit {
                kind,
                reason,
                qualification,
                len,
                real,
                cr0,
                cr4,
                rflags,
                rip,
                interruptibility,
                gprs,
            } => {
                self.byte(5);
                self.byte(*kind);
                self.word(*reason);
                self.word(*qualification);
                self.byte(*len);
                self.byte(u8::from(*real));
                [cr0, cr4, rflags, rip].iter().for_each(|w| self.word(**w));
                self.byte(*interruptibility);
                gprs.iter().for_each(|w| self.word(*w));
            }
            Op::ReplyArea { frame, flags, count, gpr_mask, injection, gprs, writes } => {
                self.byte(6);
                self.word(*frame);
                self.byte(*flags);
                // The decoder reads `count % 20` writes: keep the two in step.
                self.byte(*count);
                self.u16(*gpr_mask);
                self.word(*injection);
                gprs.iter().for_each(|w| self.word(*w));
                for (field, value) in writes.iter().take(usize::from(count % 20)) {
                    self.byte(*field);
                    self.word(*value);
                }
            }
            Op::ReplyRaw { frame, words } => {
                self.byte(7);
                self.word(*frame);
                self.byte(words.len().min(51) as u8);
                words.iter().take(51).for_each(|w| self.word(*w));
            }
            Op::Tick => self.byte(8),
            Op::Cpu { which } => {
                self.byte(13);
                self.byte(*which);
            }
            Op::Fault { vector, error, addr } => {
                self.byte(9);
                self.byte(*vector);
                self.word(*error);
                self.word(*addr);
            }
            Op::Irq { lines } => {
                self.byte(11);
                self.u16(*lines);
            }
            Op::Chain { untyped, dst, depth } => {
                self.byte(12);
                self.word(*untyped);
                self.word(*dst);
                self.byte(*depth);
            }
        }
        self
    }
}

/// The index of `inv` in `Invocation::ALL` (for seeds).
pub fn which(inv: Invocation) -> u8 {
    Invocation::ALL.iter().position(|i| *i == inv).unwrap_or(0) as u8
}

#[cfg(test)]
mod tests {
    use super::{Info, Op, Reader, Word, Writer};

    #[test]
    fn operations_round_trip() {
        let ops = [
            Op::Syscall {
                number: 6,
                rdi: Word(20),
                info: Info { label: Word(0x766d_6578), flags: 4 },
                words: [Word(1), Word(u64::MAX), Word(0x1234_5678_9abc), Word(0)],
                r12: Word(3),
                r13: Word(1 << 20),
                fast: true,
            },
            Op::ReplyArea {
                frame: Word(43),
                flags: 1,
                count: 2,
                gpr_mask: 1,
                injection: Word(0),
                gprs: [Word(7), Word(8)],
                writes: vec![(3, Word(0x1000)), (200, Word(5))],
            },
            Op::Tick,
            Op::Cpu { which: 1 },
            Op::Irq { lines: 0x10 },
            Op::Invoke {
                which: 3,
                slot: Word::live(super::Kind::Endpoint, 7),
                len: 2,
                words: [Word::free(200), Word(1), Word(2), Word(3)],
            },
        ];
        let mut w = Writer::new(true);
        for op in &ops {
            w.op(op);
        }
        let mut r = Reader::new(&w.bytes[1..]);
        for op in &ops {
            assert_eq!(&r.op(), op);
        }
        assert!(r.done());
    }
}
