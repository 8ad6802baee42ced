//! The VM-exit hot path's messages: what the kernel sends the VMM on a VM exit
//! ([`ExitMessage`]), what the VMM answers ([`ExitReply`]), and why the kernel refused an
//! answer ([`BatchError`]).
//!
//! These travel as 64-bit words in the IPC buffer on every exit, so they are fixed-layout
//! `#[repr(C)]` structs with a hand-written word encoding instead of serde: 32-bit values
//! are packed in pairs, optional groups are present only when the [`TransferMask`] asks
//! for them (as NOVA's MTD), and decoding checks the exact length and every reserved bit
//! so a malformed message is an error, never a panic or a silently ignored word.

use core::fmt;

use bytemuck::{Pod, Zeroable};

use crate::vmcs::Field;
use crate::x86::MAX_INSTRUCTION_LEN;

/// Most VMCS writes one [`ExitReply`] may carry.
pub const MAX_WRITES: usize = 16;

/// Generates a bit-set newtype whose unknown bits are rejected at decode time.
macro_rules! bit_set {
    ($(#[$doc:meta])+ $name:ident($ty:ty) { $( $(#[$fdoc:meta])+ $flag:ident = $bit:expr; )+ }) => {
        $(#[$doc])+
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash, Pod, Zeroable)]
        pub struct $name($ty);

        impl $name {
            $( $(#[$fdoc])+ pub const $flag: Self = Self(1 << $bit); )+
            /// The empty set.
            pub const NONE: Self = Self(0);
            /// Every bit this ABI defines.
            pub const ALL: Self = Self(0 $( | (1 << $bit) )+);

            /// Decode raw bits; `None` if any unknown bit is set.
            pub const fn from_bits(bits: $ty) -> Option<Self> {
                if bits & !Self::ALL.0 == 0 {
                    Some(Self(bits))
                } else {
                    None
                }
            }

            /// The raw bits.
            pub const fn bits(self) -> $ty {
                self.0
            }

            /// Whether every bit of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether `self` and `other` share a bit.
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }

            /// `self` with the bits of `other` added.
            pub const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                self.union(rhs)
            }
        }

        impl core::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: Self) {
                *self = self.union(rhs);
            }
        }
    };
}

/// Generates [`ExitReason`] with its table and names from one list.
macro_rules! exit_reasons {
    ($( $(#[$doc:meta])+ $name:ident = $num:literal; )+) => {
        /// Basic exit reason (exit-reason bits 15:0), SDM Vol. 3, Appendix C.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ExitReason {
            $( $(#[$doc])+ $name = $num, )+
        }

        impl ExitReason {
            /// Every reason, sorted by number (checked at compile time).
            pub const ALL: &'static [ExitReason] = &[ $( ExitReason::$name, )+ ];

            /// The variant's name, for logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $( ExitReason::$name => stringify!($name), )+
                }
            }
        }
    };
}

exit_reasons! {
    /// Exception or NMI (see the exit-interruption information).
    ExceptionOrNmi = 0;
    /// External interrupt.
    ExternalInterrupt = 1;
    /// Triple fault.
    TripleFault = 2;
    /// INIT signal.
    InitSignal = 3;
    /// Start-up IPI.
    StartupIpi = 4;
    /// I/O system-management interrupt.
    IoSmi = 5;
    /// Other SMI.
    OtherSmi = 6;
    /// Interrupt window open.
    InterruptWindow = 7;
    /// NMI window open.
    NmiWindow = 8;
    /// Task switch.
    TaskSwitch = 9;
    /// CPUID.
    Cpuid = 10;
    /// GETSEC.
    Getsec = 11;
    /// HLT.
    Hlt = 12;
    /// INVD.
    Invd = 13;
    /// INVLPG.
    Invlpg = 14;
    /// RDPMC.
    Rdpmc = 15;
    /// RDTSC.
    Rdtsc = 16;
    /// RSM in SMM.
    Rsm = 17;
    /// VMCALL.
    Vmcall = 18;
    /// VMCLEAR.
    Vmclear = 19;
    /// VMLAUNCH.
    Vmlaunch = 20;
    /// VMPTRLD.
    Vmptrld = 21;
    /// VMPTRST.
    Vmptrst = 22;
    /// VMREAD.
    Vmread = 23;
    /// VMRESUME.
    Vmresume = 24;
    /// VMWRITE.
    Vmwrite = 25;
    /// VMXOFF.
    Vmxoff = 26;
    /// VMXON.
    Vmxon = 27;
    /// Control-register access.
    CrAccess = 28;
    /// MOV DR.
    DrAccess = 29;
    /// I/O instruction.
    IoInstruction = 30;
    /// RDMSR.
    Rdmsr = 31;
    /// WRMSR.
    Wrmsr = 32;
    /// VM-entry failure due to invalid guest state.
    EntryFailGuestState = 33;
    /// VM-entry failure due to MSR loading.
    EntryFailMsrLoad = 34;
    /// MWAIT.
    Mwait = 36;
    /// Monitor trap flag.
    MonitorTrapFlag = 37;
    /// MONITOR.
    Monitor = 39;
    /// PAUSE.
    Pause = 40;
    /// VM-entry failure due to a machine-check event.
    EntryFailMachineCheck = 41;
    /// TPR below threshold.
    TprBelowThreshold = 43;
    /// APIC access.
    ApicAccess = 44;
    /// Virtualized EOI.
    VirtualizedEoi = 45;
    /// Access to GDTR or IDTR.
    GdtrIdtrAccess = 46;
    /// Access to LDTR or TR.
    LdtrTrAccess = 47;
    /// EPT violation.
    EptViolation = 48;
    /// EPT misconfiguration.
    EptMisconfig = 49;
    /// INVEPT.
    Invept = 50;
    /// RDTSCP.
    Rdtscp = 51;
    /// VMX-preemption timer expired.
    PreemptionTimer = 52;
    /// INVVPID.
    Invvpid = 53;
    /// WBINVD or WBNOINVD.
    Wbinvd = 54;
    /// XSETBV.
    Xsetbv = 55;
    /// APIC write.
    ApicWrite = 56;
    /// RDRAND.
    Rdrand = 57;
    /// INVPCID.
    Invpcid = 58;
    /// VMFUNC.
    Vmfunc = 59;
    /// ENCLS.
    Encls = 60;
    /// RDSEED.
    Rdseed = 61;
    /// Page-modification log full.
    PmlFull = 62;
    /// XSAVES.
    Xsaves = 63;
    /// XRSTORS.
    Xrstors = 64;
    /// PCONFIG.
    Pconfig = 65;
    /// SPP-related event.
    SppEvent = 66;
    /// UMWAIT.
    Umwait = 67;
    /// TPAUSE.
    Tpause = 68;
    /// LOADIWKEY.
    Loadiwkey = 69;
    /// ENCLV.
    Enclv = 70;
    /// ENQCMD PASID-translation failure.
    EnqcmdPasidFailure = 72;
    /// ENQCMDS PASID-translation failure.
    EnqcmdsPasidFailure = 73;
    /// Bus lock.
    BusLock = 74;
    /// Instruction timeout (notify).
    InstructionTimeout = 75;
}

const _: () = {
    let mut i = 1;
    while i < ExitReason::ALL.len() {
        assert!(
            (ExitReason::ALL[i - 1] as u16) < (ExitReason::ALL[i] as u16),
            "ExitReason::ALL is unsorted"
        );
        i += 1;
    }
};

/// Every basic reason by number: decoding is one indexed load (it runs on every exit).
const BY_NUMBER: [Option<ExitReason>; 80] = {
    let mut table = [None; 80];
    let mut i = 0;
    while i < ExitReason::ALL.len() {
        table[ExitReason::ALL[i] as usize] = Some(ExitReason::ALL[i]);
        i += 1;
    }
    table
};

impl ExitReason {
    /// Decode a basic exit reason; `None` for numbers the SDM leaves unused.
    pub fn from_raw(raw: u16) -> Option<Self> {
        BY_NUMBER.get(usize::from(raw)).copied().flatten()
    }
}

/// Exit-reason bit 31: the VM entry failed; the basic reason says why.
pub const EXIT_REASON_ENTRY_FAILURE: u32 = 1 << 31;
/// Exit-reason bit 29: the exit came from VMX root operation (SMM dual monitor).
pub const EXIT_REASON_FROM_ROOT: u32 = 1 << 29;
/// Exit-reason bit 28: a monitor-trap-flag exit was pending.
pub const EXIT_REASON_PENDING_MTF: u32 = 1 << 28;
/// Exit-reason bit 27: the exit happened in enclave mode.
pub const EXIT_REASON_ENCLAVE: u32 = 1 << 27;

/// Decoding failures of the kernel-to-VMM messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The message is not exactly `expected` words long.
    BadLength {
        /// Words this message needs.
        expected: usize,
        /// Words received.
        got: usize,
    },
    /// Word `word` has bits set that this ABI reserves.
    ReservedBits {
        /// Index of the offending word.
        word: usize,
        /// The reserved bits that were set.
        bits: u64,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadLength { expected, got } => {
                write!(f, "message is {got} words, expected {expected}")
            }
            Self::ReservedBits { word, bits } => {
                write!(f, "word {word} sets reserved bits {bits:#x}")
            }
        }
    }
}

/// Guest general-purpose registers, indexed by their x86 encoding (the number exit
/// qualifications and instruction information use): rax, rcx, rdx, rbx, rsp, rbp, rsi,
/// rdi, r8-r15. Slot 4 is the guest RSP, which the CPU keeps in the VMCS.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Gprs {
    /// The registers, in encoding order.
    pub regs: [u64; 16],
}

impl Gprs {
    /// Index of RAX.
    pub const RAX: u8 = 0;
    /// Index of RCX.
    pub const RCX: u8 = 1;
    /// Index of RDX.
    pub const RDX: u8 = 2;
    /// Index of RBX.
    pub const RBX: u8 = 3;
    /// Index of RSP (kept in the VMCS; see [`Field::GuestRsp`]).
    pub const RSP: u8 = 4;
    /// Index of RBP.
    pub const RBP: u8 = 5;
    /// Index of RSI.
    pub const RSI: u8 = 6;
    /// Index of RDI.
    pub const RDI: u8 = 7;
    /// Index of R8; R9-R15 follow.
    pub const R8: u8 = 8;

    /// Register `reg`, or `None` if `reg` > 15.
    pub fn get(&self, reg: u8) -> Option<u64> {
        self.regs.get(usize::from(reg)).copied()
    }

    /// Set register `reg`; `false` if `reg` > 15.
    pub fn set(&mut self, reg: u8, value: u64) -> bool {
        match self.regs.get_mut(usize::from(reg)) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    /// The guest RSP.
    pub const fn rsp(&self) -> u64 {
        self.regs[Self::RSP as usize]
    }
}

bit_set! {
    /// Which groups an [`ExitMessage`] carries besides the fields every exit has. The VMM
    /// chooses per VCpu and per exit reason ([`crate::vcpu_page`]), so that common exits
    /// stay small: each group costs the kernel VMREADs.
    TransferMask(u64) {
        /// Selector, base, limit and access rights of ES, CS, SS, DS, FS, GS, LDTR, TR.
        SEGMENTS = 0;
        /// GDTR and IDTR base and limit.
        DESCRIPTOR_TABLES = 1;
        /// Guest IA32_EFER and IA32_PAT.
        EFER_PAT = 2;
        /// Guest DR7 and IA32_DEBUGCTL (DR0-DR3 and DR6 are not VMCS state).
        DEBUG_CONTROLS = 3;
        /// Pending debug exceptions.
        PENDING_DEBUG = 4;
        /// Activity state.
        ACTIVITY_STATE = 5;
        /// IA32_SYSENTER_CS/ESP/EIP.
        SYSENTER = 6;
        /// PDPTE0-3.
        PDPTES = 7;
        /// The current pin-based, processor-based, exit and entry controls, so a VMM can
        /// change a bit without knowing which ones the CPU and kernel require.
        CONTROLS = 8;
        /// The exit qualification.
        QUALIFICATION = 9;
        /// The VM-exit instruction information.
        INSTRUCTION_INFO = 10;
        /// The guest-linear address.
        GUEST_LINEAR = 11;
        /// The guest-physical address.
        GUEST_PHYSICAL = 12;
        /// Guest CR3.
        CR3 = 13;
        /// IDT-vectoring information and error code (the event an exit cut short).
        VECTORING = 14;
        /// VM-exit interruption information and error code.
        INTERRUPTION = 15;
        /// CS's base and access rights alone, in CS's place among the segments (its
        /// selector and limit and the other segments are not written): what an
        /// instruction emulator needs, the code size and the base, for 2 VMREADs instead
        /// of [`Self::SEGMENTS`]' 32.
        CODE_SEGMENT = 16;
    }
}

impl TransferMask {
    /// The groups that fill [`ExitMessage::segments`], all or CS alone.
    pub const ANY_SEGMENTS: Self = Self::SEGMENTS.union(Self::CODE_SEGMENT);
}

impl TransferMask {
    /// Words the optional groups in this mask add to an [`ExitMessage`].
    pub const fn extra_words(self) -> usize {
        let groups: [(Self, usize); 9] = [
            (Self::ANY_SEGMENTS, 18),
            (Self::DESCRIPTOR_TABLES, 3),
            (Self::EFER_PAT, 2),
            (Self::DEBUG_CONTROLS, 2),
            (Self::PENDING_DEBUG, 1),
            (Self::ACTIVITY_STATE, 1),
            (Self::SYSENTER, 3),
            (Self::PDPTES, 4),
            (Self::CONTROLS, 3),
        ];
        let mut total = 0;
        let mut i = 0;
        while i < groups.len() {
            if self.intersects(groups[i].0) {
                total += groups[i].1;
            }
            i += 1;
        }
        total
    }
}

/// One guest segment register as the VMCS holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Segment {
    /// Base address.
    pub base: u64,
    /// Limit, in bytes.
    pub limit: u32,
    /// Access rights in the VMCS format (bit 16 = unusable).
    pub access_rights: u32,
    /// Selector.
    pub selector: u16,
    /// Zero (the rest of the 8-byte slot).
    pub reserved: [u16; 3],
}

/// The eight guest segment registers, in VMCS encoding order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Segments {
    /// ES, CS, SS, DS, FS, GS, LDTR, TR.
    pub regs: [Segment; 8],
}

/// GDTR or IDTR.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct DescriptorTable {
    /// Base address.
    pub base: u64,
    /// Limit.
    pub limit: u32,
    /// Zero (the rest of the 8-byte slot).
    pub reserved: u32,
}

/// Current VM-execution, exit and entry controls (the [`TransferMask::CONTROLS`] group).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct Controls {
    /// Pin-based controls.
    pub pin: u32,
    /// Primary processor-based controls.
    pub proc: u32,
    /// Secondary processor-based controls.
    pub proc2: u32,
    /// VM-exit controls.
    pub exit: u32,
    /// VM-entry controls.
    pub entry: u32,
}

/// What the kernel tells the VMM about a VM exit, read in place from the vCPU's message
/// frame ([`crate::vcpu_page`]). Always present: the reason, instruction length, RIP,
/// RFLAGS, CR0, CR4, interruptibility, CPL and the GPRs. Every other field only when
/// [`ExitMessage::transfer`] names its group: the base fields of an absent group read as
/// zero, the optional groups (segments and the rest) keep whatever an earlier exit left.
/// The layout has no padding (checked by `Pod`); docs/abi.md gives its offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct ExitMessage {
    /// Full exit reason: basic reason in bits 15:0, flags such as
    /// [`EXIT_REASON_ENTRY_FAILURE`] above.
    pub reason: u32,
    /// VM-exit instruction length.
    pub instruction_len: u32,
    /// [`TransferMask::QUALIFICATION`]: exit qualification.
    pub qualification: u64,
    /// [`TransferMask::INSTRUCTION_INFO`]: VM-exit instruction information.
    pub instruction_info: u32,
    /// Guest interruptibility state.
    pub interruptibility: u32,
    /// [`TransferMask::GUEST_LINEAR`]: guest-linear address.
    pub guest_linear: u64,
    /// [`TransferMask::GUEST_PHYSICAL`]: guest-physical address.
    pub guest_physical: u64,
    /// Guest RIP.
    pub rip: u64,
    /// Guest RFLAGS.
    pub rflags: u64,
    /// Guest CR0.
    pub cr0: u64,
    /// [`TransferMask::CR3`]: guest CR3.
    pub cr3: u64,
    /// Guest CR4.
    pub cr4: u64,
    /// [`TransferMask::VECTORING`]: IDT-vectoring information.
    pub idt_vectoring_info: u32,
    /// [`TransferMask::VECTORING`]: IDT-vectoring error code.
    pub idt_vectoring_error: u32,
    /// [`TransferMask::INTERRUPTION`]: VM-exit interruption information.
    pub exit_intr_info: u32,
    /// [`TransferMask::INTERRUPTION`]: VM-exit interruption error code.
    pub exit_intr_error: u32,
    /// Which groups below are filled.
    pub transfer: TransferMask,
    /// The guest's current privilege level (guest SS.DPL, which the CPU keeps equal to
    /// the CPL in every mode), always sent: a VMM must never guess it.
    pub cpl: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// [`TransferMask::ACTIVITY_STATE`].
    pub activity_state: u32,
    /// Guest GPRs; slot 4 holds the guest RSP.
    pub gprs: Gprs,
    /// [`TransferMask::SEGMENTS`], or CS's base and access rights alone with
    /// [`TransferMask::CODE_SEGMENT`].
    pub segments: Segments,
    /// [`TransferMask::DESCRIPTOR_TABLES`]: GDTR.
    pub gdtr: DescriptorTable,
    /// [`TransferMask::DESCRIPTOR_TABLES`]: IDTR.
    pub idtr: DescriptorTable,
    /// [`TransferMask::EFER_PAT`]: IA32_EFER.
    pub efer: u64,
    /// [`TransferMask::EFER_PAT`]: IA32_PAT.
    pub pat: u64,
    /// [`TransferMask::DEBUG_CONTROLS`]: DR7.
    pub dr7: u64,
    /// [`TransferMask::DEBUG_CONTROLS`]: IA32_DEBUGCTL.
    pub debugctl: u64,
    /// [`TransferMask::PENDING_DEBUG`].
    pub pending_debug: u64,
    /// [`TransferMask::CONTROLS`] (the kernel's own copy: no VMREAD).
    pub controls: Controls,
    /// [`TransferMask::SYSENTER`]: IA32_SYSENTER_CS.
    pub sysenter_cs: u32,
    /// [`TransferMask::SYSENTER`]: IA32_SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// [`TransferMask::SYSENTER`]: IA32_SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// [`TransferMask::PDPTES`].
    pub pdptes: [u64; 4],
    /// The time-stamp counter as the kernel took the exit (its first instruction after
    /// the VM exit), always sent: with [`Self::entry_tsc`] it splits a round trip into the
    /// kernel's legs and the VMM's.
    pub exit_tsc: u64,
    /// The time-stamp counter just before the VM entry this exit ended.
    pub entry_tsc: u64,
}

/// Writes words in order; a slice shorter than the message is a bug the tests catch,
/// so extra words are dropped rather than panicking the kernel.
struct Writer<'a> {
    out: &'a mut [u64],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, word: u64) {
        if let Some(slot) = self.out.get_mut(self.pos) {
            *slot = word;
        }
        self.pos = self.pos.saturating_add(1);
    }
}

/// Reads words in order after the caller has checked the exact length.
struct Reader<'a> {
    words: core::slice::Iter<'a, u64>,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(words: &'a [u64]) -> Self {
        Self { words: words.iter(), pos: 0 }
    }

    fn take(&mut self) -> u64 {
        self.pos = self.pos.saturating_add(1);
        self.words.next().copied().unwrap_or(0)
    }

    /// A word whose high half is reserved.
    fn take_low(&mut self) -> Result<u32, WireError> {
        let word = self.take();
        match hi(word) {
            0 => Ok(lo(word)),
            _ => Err(WireError::ReservedBits {
                word: self.pos.saturating_sub(1),
                bits: word & !0xffff_ffff,
            }),
        }
    }
}

const fn lo(word: u64) -> u32 {
    word as u32
}

const fn hi(word: u64) -> u32 {
    (word >> 32) as u32
}

const fn pair(low: u32, high: u32) -> u64 {
    low as u64 | (high as u64) << 32
}

fn check_len(words: &[u64], expected: usize) -> Result<(), WireError> {
    if words.len() == expected {
        Ok(())
    } else {
        Err(WireError::BadLength { expected, got: words.len() })
    }
}

impl ExitMessage {
    /// Words of the always-present part.
    pub const BASE_WORDS: usize = 13 + 16;
    /// Most words a message takes (every optional group present).
    pub const SIZE: usize = Self::BASE_WORDS + TransferMask::ALL.extra_words();
    /// Index of the transfer-mask word, which tells a reader the message's length; its
    /// high half carries the CPL.
    pub const TRANSFER_WORD: usize = 12;
    /// Where the CPL sits in the transfer-mask word.
    pub const CPL_SHIFT: u32 = 32;

    /// Words this message takes on the wire.
    pub const fn wire_len(&self) -> usize {
        Self::BASE_WORDS + self.transfer.extra_words()
    }

    /// The basic exit reason, if the SDM defines it.
    pub fn basic_reason(&self) -> Option<ExitReason> {
        ExitReason::from_raw(self.reason as u16)
    }

    /// Whether this "exit" reports a failed VM entry.
    pub const fn is_entry_failure(&self) -> bool {
        self.reason & EXIT_REASON_ENTRY_FAILURE != 0
    }

    /// Encode into `out`; returns the number of words used ([`Self::wire_len`]).
    pub fn to_words(&self, out: &mut [u64; Self::SIZE]) -> usize {
        let mut w = Writer { out, pos: 0 };
        w.put(pair(self.reason, self.instruction_len));
        w.put(self.qualification);
        w.put(pair(self.instruction_info, self.interruptibility));
        w.put(self.guest_linear);
        w.put(self.guest_physical);
        w.put(self.rip);
        w.put(self.rflags);
        w.put(self.cr0);
        w.put(self.cr3);
        w.put(self.cr4);
        w.put(pair(self.idt_vectoring_info, self.idt_vectoring_error));
        w.put(pair(self.exit_intr_info, self.exit_intr_error));
        w.put(self.transfer.bits() | u64::from(self.cpl) << Self::CPL_SHIFT);
        for reg in self.gprs.regs {
            w.put(reg);
        }
        let t = self.transfer;
        if t.intersects(TransferMask::ANY_SEGMENTS) {
            for seg in &self.segments.regs {
                w.put(seg.base);
                w.put(pair(seg.limit, seg.access_rights));
            }
            for four in self.segments.regs.chunks(4) {
                w.put(four.iter().rev().fold(0, |acc, s| acc << 16 | u64::from(s.selector)));
            }
        }
        if t.contains(TransferMask::DESCRIPTOR_TABLES) {
            w.put(self.gdtr.base);
            w.put(self.idtr.base);
            w.put(pair(self.gdtr.limit, self.idtr.limit));
        }
        if t.contains(TransferMask::EFER_PAT) {
            w.put(self.efer);
            w.put(self.pat);
        }
        if t.contains(TransferMask::DEBUG_CONTROLS) {
            w.put(self.dr7);
            w.put(self.debugctl);
        }
        if t.contains(TransferMask::PENDING_DEBUG) {
            w.put(self.pending_debug);
        }
        if t.contains(TransferMask::ACTIVITY_STATE) {
            w.put(u64::from(self.activity_state));
        }
        if t.contains(TransferMask::SYSENTER) {
            w.put(u64::from(self.sysenter_cs));
            w.put(self.sysenter_esp);
            w.put(self.sysenter_eip);
        }
        if t.contains(TransferMask::PDPTES) {
            for pdpte in self.pdptes {
                w.put(pdpte);
            }
        }
        if t.contains(TransferMask::CONTROLS) {
            let c = &self.controls;
            w.put(pair(c.pin, c.proc));
            w.put(pair(c.proc2, c.exit));
            w.put(u64::from(c.entry));
        }
        w.pos
    }

    /// Decode a message of exactly [`Self::wire_len`] words.
    pub fn from_words(words: &[u64]) -> Result<Self, WireError> {
        let raw_mask = match words.get(Self::TRANSFER_WORD) {
            Some(&raw) => raw,
            None => {
                return Err(WireError::BadLength { expected: Self::BASE_WORDS, got: words.len() })
            }
        };
        let cpl_bits = 3u64 << Self::CPL_SHIFT;
        let transfer =
            TransferMask::from_bits(raw_mask & !cpl_bits).ok_or(WireError::ReservedBits {
                word: Self::TRANSFER_WORD,
                bits: raw_mask & !(TransferMask::ALL.bits() | cpl_bits),
            })?;
        let cpl = ((raw_mask & cpl_bits) >> Self::CPL_SHIFT) as u8;
        let mut m = Self { transfer, cpl, ..Self::default() };
        check_len(words, m.wire_len())?;
        let mut r = Reader::new(words);
        let w = r.take();
        (m.reason, m.instruction_len) = (lo(w), hi(w));
        m.qualification = r.take();
        let w = r.take();
        (m.instruction_info, m.interruptibility) = (lo(w), hi(w));
        m.guest_linear = r.take();
        m.guest_physical = r.take();
        m.rip = r.take();
        m.rflags = r.take();
        m.cr0 = r.take();
        m.cr3 = r.take();
        m.cr4 = r.take();
        let w = r.take();
        (m.idt_vectoring_info, m.idt_vectoring_error) = (lo(w), hi(w));
        let w = r.take();
        (m.exit_intr_info, m.exit_intr_error) = (lo(w), hi(w));
        r.take(); // The transfer mask, decoded above.
        for reg in &mut m.gprs.regs {
            *reg = r.take();
        }
        if transfer.intersects(TransferMask::ANY_SEGMENTS) {
            for seg in &mut m.segments.regs {
                seg.base = r.take();
                let w = r.take();
                (seg.limit, seg.access_rights) = (lo(w), hi(w));
            }
            for four in m.segments.regs.chunks_mut(4) {
                let mut w = r.take();
                for seg in four {
                    seg.selector = w as u16;
                    w >>= 16;
                }
            }
        }
        if transfer.contains(TransferMask::DESCRIPTOR_TABLES) {
            m.gdtr.base = r.take();
            m.idtr.base = r.take();
            let w = r.take();
            (m.gdtr.limit, m.idtr.limit) = (lo(w), hi(w));
        }
        if transfer.contains(TransferMask::EFER_PAT) {
            m.efer = r.take();
            m.pat = r.take();
        }
        if transfer.contains(TransferMask::DEBUG_CONTROLS) {
            m.dr7 = r.take();
            m.debugctl = r.take();
        }
        if transfer.contains(TransferMask::PENDING_DEBUG) {
            m.pending_debug = r.take();
        }
        if transfer.contains(TransferMask::ACTIVITY_STATE) {
            m.activity_state = r.take_low()?;
        }
        if transfer.contains(TransferMask::SYSENTER) {
            m.sysenter_cs = r.take_low()?;
            m.sysenter_esp = r.take();
            m.sysenter_eip = r.take();
        }
        if transfer.contains(TransferMask::PDPTES) {
            for pdpte in &mut m.pdptes {
                *pdpte = r.take();
            }
        }
        if transfer.contains(TransferMask::CONTROLS) {
            let w = r.take();
            (m.controls.pin, m.controls.proc) = (lo(w), hi(w));
            let w = r.take();
            (m.controls.proc2, m.controls.exit) = (lo(w), hi(w));
            m.controls.entry = r.take_low()?;
        }
        Ok(m)
    }
}

/// How the VM-entry interruption-information field names an event (bits 10:8).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// External interrupt.
    ExternalInterrupt = 0,
    /// Non-maskable interrupt (vector 2).
    Nmi = 2,
    /// Hardware exception (vector 0-31).
    HardwareException = 3,
    /// Software interrupt (INT n).
    SoftwareInterrupt = 4,
    /// Privileged software exception (INT1).
    PrivilegedSoftwareException = 5,
    /// Software exception (INT3, INTO).
    SoftwareException = 6,
    /// Other event (a pending monitor trap flag, vector 0).
    Other = 7,
}

impl EventType {
    /// Decode bits 10:8; `None` for the reserved type 1.
    pub const fn from_raw(raw: u8) -> Option<Self> {
        Some(match raw {
            0 => Self::ExternalInterrupt,
            2 => Self::Nmi,
            3 => Self::HardwareException,
            4 => Self::SoftwareInterrupt,
            5 => Self::PrivilegedSoftwareException,
            6 => Self::SoftwareException,
            7 => Self::Other,
            _ => return None,
        })
    }

    /// Whether VM entry takes the instruction length from the entry-instruction-length
    /// field (the event is delivered as if an instruction raised it).
    pub const fn uses_instruction_length(self) -> bool {
        matches!(
            self,
            Self::SoftwareInterrupt | Self::PrivilegedSoftwareException | Self::SoftwareException
        )
    }
}

/// An event in the VM-entry interruption-information format (SDM Vol. 3, 25.8.3):
/// vector in bits 7:0, type in 10:8, deliver-error-code in 11, valid in 31. The same
/// format describes exit-interruption and IDT-vectoring information.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash, Pod, Zeroable)]
pub struct EventInjection(u32);

impl EventInjection {
    /// Bit 11: push an error code.
    pub const DELIVER_ERROR_CODE: u32 = 1 << 11;
    /// Bit 12 (exit information only): NMI unblocking due to IRET.
    pub const NMI_UNBLOCKING: u32 = 1 << 12;
    /// Bit 31: the field holds an event.
    pub const VALID: u32 = 1 << 31;
    /// Bits 30:12, which must be zero for injection.
    pub const RESERVED: u32 = 0x7fff_f000;
    /// No event.
    pub const NONE: Self = Self(0);

    /// A valid event.
    pub const fn new(vector: u8, kind: EventType, deliver_error_code: bool) -> Self {
        let dec = if deliver_error_code { Self::DELIVER_ERROR_CODE } else { 0 };
        Self(Self::VALID | dec | (kind as u32) << 8 | vector as u32)
    }

    /// A hardware exception, with the error-code bit set for the vectors that push one.
    pub const fn exception(vector: u8) -> Self {
        Self::new(vector, EventType::HardwareException, exception_has_error_code(vector))
    }

    /// An external interrupt.
    pub const fn interrupt(vector: u8) -> Self {
        Self::new(vector, EventType::ExternalInterrupt, false)
    }

    /// An NMI.
    pub const fn nmi() -> Self {
        Self::new(2, EventType::Nmi, false)
    }

    /// Wrap a raw interruption-information word (no checks; see the kernel validator).
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw word.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Bit 31.
    pub const fn is_valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    /// Bits 7:0.
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }

    /// Bits 10:8; `None` for the reserved type.
    pub const fn event_type(self) -> Option<EventType> {
        EventType::from_raw((self.0 >> 8) as u8 & 7)
    }

    /// Bit 11.
    pub const fn delivers_error_code(self) -> bool {
        self.0 & Self::DELIVER_ERROR_CODE != 0
    }
}

/// Whether hardware exception `vector` pushes an error code (#DF, #TS, #NP, #SS, #GP,
/// #PF, #AC, #CP).
pub const fn exception_has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

/// One VMCS write of a reply batch; `field` is a raw encoding because the VMM may send
/// anything and the kernel's validator decides.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Pod, Zeroable)]
pub struct VmcsWrite {
    /// The field's SDM encoding.
    pub field: u32,
    /// Zero (alignment of `value`).
    pub reserved: u32,
    /// The value to write.
    pub value: u64,
}

impl VmcsWrite {
    /// Words on the wire.
    pub const SIZE: usize = 2;

    /// A write of a known field.
    pub const fn new(field: Field, value: u64) -> Self {
        Self { field: field as u32, reserved: 0, value }
    }

    /// The typed field, if the encoding is known.
    pub fn typed_field(&self) -> Option<Field> {
        Field::from_raw(self.field)
    }

    /// Encode: the field's encoding (high half zero), then the value.
    pub const fn to_words(&self) -> [u64; Self::SIZE] {
        [self.field as u64, self.value]
    }
}

bit_set! {
    /// What the kernel does besides the writes when it applies an [`ExitReply`].
    ReplyFlags(u32) {
        /// Add the exit's instruction length to guest RIP, or [`ExitReply::advance_len`]
        /// where that is not zero (and drop the STI/MOV SS interrupt shadow, as retiring
        /// the instruction would).
        ADVANCE_RIP = 0;
        /// Inject [`ExitReply::injection`] on the next VM entry.
        INJECT_EVENT = 1;
        /// Set interrupt-window exiting so the guest exits once it can take an interrupt.
        /// One-shot: the kernel clears it again at that interrupt-window exit.
        REQUEST_INTERRUPT_WINDOW = 2;
        /// Apply the batch but do not resume; the vCPU stays stopped.
        STOP_VCPU = 3;
        /// With an injected #PF: load the guest's CR2 with [`ExitReply::fault_address`],
        /// the address of a fault the VMM raised while emulating (VMX does not switch CR2,
        /// so the kernel does).
        PAGE_FAULT_ADDRESS = 4;
    }
}

/// The VMM's answer to an [`ExitMessage`]: a batch of VMCS writes, GPR updates and flags
/// that the kernel validates as a whole and applies all-or-nothing before resuming.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ExitReply {
    /// What to do besides the writes.
    pub flags: ReplyFlags,
    /// How many entries of `writes` are used.
    pub count: u32,
    /// The event to inject when [`ReplyFlags::INJECT_EVENT`] is set (zero otherwise).
    pub injection: EventInjection,
    /// Its error code, if it delivers one.
    pub injection_error: u32,
    /// Its instruction length, for software interrupts and exceptions.
    pub injection_len: u32,
    /// Which `gprs` to load (bit n = register n; bit 4 writes the guest RSP).
    pub gpr_mask: u16,
    /// With [`ReplyFlags::ADVANCE_RIP`]: the length (1-15) of the instruction to skip,
    /// for exits that report none (an EPT violation whose instruction the VMM decoded);
    /// zero to use the exit's own instruction length. Zero without the flag.
    pub advance_len: u16,
    /// With [`ReplyFlags::PAGE_FAULT_ADDRESS`]: the guest's CR2 for the injected #PF.
    /// Without the flag it is not part of the reply (nothing reads it), as the writes
    /// past `count` are not.
    pub fault_address: u64,
    /// New GPR values, selected by `gpr_mask`.
    pub gprs: Gprs,
    /// VMCS writes; only the first `count` are meaningful.
    pub writes: [VmcsWrite; MAX_WRITES],
}

impl Default for ExitReply {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitReply {
    /// Words of the fixed header.
    pub const HEADER_WORDS: usize = 3;
    /// Most words a reply takes.
    pub const SIZE: usize = Self::HEADER_WORDS + 16 + VmcsWrite::SIZE * MAX_WRITES;

    /// An empty reply: resume the guest unchanged.
    pub const fn new() -> Self {
        Self {
            flags: ReplyFlags::NONE,
            count: 0,
            gpr_mask: 0,
            advance_len: 0,
            fault_address: 0,
            injection: EventInjection::NONE,
            injection_error: 0,
            injection_len: 0,
            gprs: Gprs { regs: [0; 16] },
            writes: [VmcsWrite { field: 0, reserved: 0, value: 0 }; MAX_WRITES],
        }
    }

    /// Append a VMCS write.
    pub fn write(&mut self, field: Field, value: u64) -> Result<(), BatchError> {
        self.write_raw(field as u32, value)
    }

    /// Append a write of a raw encoding (for tests and fuzzers; a VMM uses [`Self::write`]).
    pub fn write_raw(&mut self, field: u32, value: u64) -> Result<(), BatchError> {
        let slot = self
            .writes
            .get_mut(self.count as usize)
            .ok_or(BatchError::TooManyWrites { count: self.count.saturating_add(1) })?;
        *slot = VmcsWrite { field, reserved: 0, value };
        self.count = self.count.saturating_add(1);
        Ok(())
    }

    /// Load `value` into GPR `reg` (x86 encoding order) on resume.
    pub fn set_gpr(&mut self, reg: u8, value: u64) -> Result<(), BatchError> {
        if !self.gprs.set(reg, value) {
            return Err(BatchError::BadGprMask {
                mask: 1u64.checked_shl(u32::from(reg)).unwrap_or(0),
            });
        }
        self.gpr_mask |= 1 << reg;
        Ok(())
    }

    /// Inject `event` on resume.
    pub fn inject(&mut self, event: EventInjection, error_code: u32, instruction_len: u32) {
        self.flags |= ReplyFlags::INJECT_EVENT;
        self.injection = event;
        self.injection_error = error_code;
        self.injection_len = instruction_len;
    }

    /// The used writes (empty if `count` is out of range; the validator reports that).
    pub fn writes(&self) -> &[VmcsWrite] {
        self.writes.get(..self.count as usize).unwrap_or(&[])
    }

    /// Words this reply takes on the wire.
    pub const fn wire_len(&self) -> usize {
        Self::HEADER_WORDS
            + self.flags.contains(ReplyFlags::PAGE_FAULT_ADDRESS) as usize
            + self.gpr_mask.count_ones() as usize
            + VmcsWrite::SIZE * self.count as usize
    }

    /// [`ReplyFlags::PAGE_FAULT_ADDRESS`] in `flags` comes with an injected #PF
    /// (`injection`), or is not there. (Without the flag, [`Self::fault_address`] is not
    /// part of the reply, whatever it holds.)
    pub fn check_fault_address(
        flags: ReplyFlags,
        injection: EventInjection,
    ) -> Result<(), BatchError> {
        if !flags.contains(ReplyFlags::PAGE_FAULT_ADDRESS) {
            return Ok(());
        }
        let page_fault = flags.contains(ReplyFlags::INJECT_EVENT)
            && injection.is_valid()
            && injection.event_type() == Some(EventType::HardwareException)
            && injection.vector() == crate::x86::PAGE_FAULT_VECTOR;
        if page_fault {
            Ok(())
        } else {
            Err(BatchError::BadInjection { info: injection.raw() })
        }
    }

    /// An [`Self::advance_len`] of `len` with `flags` is well-formed: zero, or 1-15 with
    /// [`ReplyFlags::ADVANCE_RIP`].
    pub fn check_advance(flags: ReplyFlags, len: u16) -> Result<(), BatchError> {
        if len == 0 || (flags.contains(ReplyFlags::ADVANCE_RIP) && len <= MAX_INSTRUCTION_LEN) {
            Ok(())
        } else {
            Err(BatchError::BadAdvance { len: len.into() })
        }
    }

    /// Encode into `out`: `[flags | count << 32, gpr_mask | advance_len << 16 |
    /// injection << 32, injection_error | injection_len << 32]`, the fault address with
    /// [`ReplyFlags::PAGE_FAULT_ADDRESS`], then the selected GPRs in register order, then
    /// `count` writes of two words each. Returns the words used.
    pub fn to_words(&self, out: &mut [u64; Self::SIZE]) -> usize {
        let mut w = Writer { out, pos: 0 };
        w.put(pair(self.flags.bits(), self.count));
        let masks = u32::from(self.gpr_mask) | u32::from(self.advance_len) << 16;
        w.put(pair(masks, self.injection.raw()));
        w.put(pair(self.injection_error, self.injection_len));
        if self.flags.contains(ReplyFlags::PAGE_FAULT_ADDRESS) {
            w.put(self.fault_address);
        }
        for (i, reg) in self.gprs.regs.iter().enumerate() {
            if self.gpr_mask & (1 << i) != 0 {
                w.put(*reg);
            }
        }
        for write in self.writes() {
            for word in write.to_words() {
                w.put(word);
            }
        }
        w.pos
    }

    /// Decode a reply of exactly [`Self::wire_len`] words. Unknown flags, more than
    /// [`MAX_WRITES`] writes, GPR bits above 15, an injection without
    /// [`ReplyFlags::INJECT_EVENT`] and reserved bits are all refused here; the values
    /// themselves are the kernel validator's business.
    pub fn from_words(words: &[u64]) -> Result<Self, BatchError> {
        let bad_len = |expected: usize| BatchError::BadLength {
            expected: expected as u32,
            got: u32::try_from(words.len()).unwrap_or(u32::MAX),
        };
        let header = words.get(..Self::HEADER_WORDS).ok_or(bad_len(Self::HEADER_WORDS))?;
        let (w0, w1, w2) = match *header {
            [a, b, c] => (a, b, c),
            _ => return Err(bad_len(Self::HEADER_WORDS)),
        };
        let mut reply = Self::new();
        reply.flags =
            ReplyFlags::from_bits(lo(w0)).ok_or(BatchError::BadFlags { flags: lo(w0) })?;
        reply.count = hi(w0);
        if reply.count as usize > MAX_WRITES {
            return Err(BatchError::TooManyWrites { count: reply.count });
        }
        reply.gpr_mask = lo(w1) as u16;
        reply.advance_len = (lo(w1) >> 16) as u16;
        Self::check_advance(reply.flags, reply.advance_len)?;
        reply.injection = EventInjection::from_raw(hi(w1));
        (reply.injection_error, reply.injection_len) = (lo(w2), hi(w2));
        if !reply.flags.contains(ReplyFlags::INJECT_EVENT) && (w2 != 0 || hi(w1) != 0) {
            return Err(BatchError::BadInjection { info: hi(w1) });
        }
        let expected = reply.wire_len();
        if words.len() != expected {
            return Err(bad_len(expected));
        }
        let mut r = Reader::new(words.get(Self::HEADER_WORDS..).unwrap_or(&[]));
        if reply.flags.contains(ReplyFlags::PAGE_FAULT_ADDRESS) {
            reply.fault_address = r.take();
        }
        Self::check_fault_address(reply.flags, reply.injection)?;
        for (i, reg) in reply.gprs.regs.iter_mut().enumerate() {
            if reply.gpr_mask & (1 << i) != 0 {
                *reg = r.take();
            }
        }
        for write in reply.writes.iter_mut().take(reply.count as usize) {
            let raw = r.take();
            if hi(raw) != 0 {
                let word = Self::HEADER_WORDS + r.pos.saturating_sub(1);
                return Err(BatchError::ReservedBits {
                    word: word as u32,
                    bits: raw & !0xffff_ffff,
                });
            }
            *write = VmcsWrite { field: lo(raw), reserved: 0, value: r.take() };
        }
        Ok(reply)
    }
}

/// Why the kernel refused a reply batch. Nothing of a refused batch is applied and the
/// vCPU stays stopped; the error goes back to the VMM as [`BatchError::to_words`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// The field is host state, a kernel-owned pointer, or read-only exit information.
    FieldNotWritable {
        /// The field's encoding.
        field: u32,
    },
    /// No VMCS field has this encoding.
    UnknownField {
        /// The encoding sent.
        raw: u32,
    },
    /// The CPU's capability MSRs forbid this control value: `bits` are set but not
    /// allowed, or required but clear.
    ControlBitsRejected {
        /// The control field's encoding.
        field: u32,
        /// The value written.
        value: u64,
        /// The offending bits.
        bits: u64,
    },
    /// Kernel policy forbids this control value: `bits` are forced on by the kernel but
    /// clear, or never available to a VMM but set.
    ControlPolicy {
        /// The control field's encoding.
        field: u32,
        /// The value written.
        value: u64,
        /// The offending bits.
        bits: u64,
    },
    /// The batch holds more than [`MAX_WRITES`] writes.
    TooManyWrites {
        /// The count sent.
        count: u32,
    },
    /// The GPR mask names registers beyond the 16 GPRs.
    BadGprMask {
        /// The mask sent.
        mask: u64,
    },
    /// The event to inject has a reserved type, a vector its type does not allow, a
    /// wrong deliver-error-code bit, reserved bits, a bad error code or length, or was
    /// sent without [`ReplyFlags::INJECT_EVENT`].
    BadInjection {
        /// The interruption-information word.
        info: u32,
    },
    /// The guest state would fail a VM-entry check (fixed CR0/CR4 bits, reserved RFLAGS
    /// bits, an injection the guest's interruptibility forbids, ...).
    InvalidGuestState {
        /// The field whose value fails the check.
        field: u32,
    },
    /// The value does not fit the field's width.
    ValueTooWide {
        /// The field's encoding.
        field: u32,
        /// The value written.
        value: u64,
    },
    /// The batch writes this field twice, or writes it and sets a flag that writes it.
    DuplicateField {
        /// The field's encoding.
        field: u32,
    },
    /// Unknown flags, or flags that contradict each other.
    BadFlags {
        /// The flags sent.
        flags: u32,
    },
    /// The reply is not as long as its header says.
    BadLength {
        /// Words the header implies.
        expected: u32,
        /// Words received.
        got: u32,
    },
    /// A word has reserved bits set.
    ReservedBits {
        /// Index of the word.
        word: u32,
        /// The reserved bits that were set.
        bits: u64,
    },
    /// The value would let the guest keep the CPU from the kernel (the liveness
    /// invariant of docs/abi.md): an activity state other than active or HLT, an
    /// exception bitmap without #DB or #AC.
    Liveness {
        /// The field's encoding.
        field: u32,
        /// The value written.
        value: u64,
    },
    /// [`ExitReply::advance_len`] is above 15, or set without
    /// [`ReplyFlags::ADVANCE_RIP`].
    BadAdvance {
        /// The length sent.
        len: u32,
    },
}

impl BatchError {
    /// Words on the wire.
    pub const SIZE: usize = 3;

    /// The stable numeric code (ABI; append-only).
    pub const fn code(&self) -> u32 {
        match self {
            Self::FieldNotWritable { .. } => 1,
            Self::UnknownField { .. } => 2,
            Self::ControlBitsRejected { .. } => 3,
            Self::ControlPolicy { .. } => 4,
            Self::TooManyWrites { .. } => 5,
            Self::BadGprMask { .. } => 6,
            Self::BadInjection { .. } => 7,
            Self::InvalidGuestState { .. } => 8,
            Self::ValueTooWide { .. } => 9,
            Self::DuplicateField { .. } => 10,
            Self::BadFlags { .. } => 11,
            Self::BadLength { .. } => 12,
            Self::ReservedBits { .. } => 13,
            Self::Liveness { .. } => 14,
            Self::BadAdvance { .. } => 15,
        }
    }

    /// A short, stable name for logs.
    pub const fn name(&self) -> &'static str {
        Self::name_of(self.code())
    }

    /// The name of the error with numeric code `code` (what a refused VMM receives).
    pub const fn name_of(code: u32) -> &'static str {
        match code {
            1 => "field not writable",
            2 => "unknown field",
            3 => "control bits rejected by the CPU",
            4 => "control bits rejected by kernel policy",
            5 => "too many writes",
            6 => "bad GPR mask",
            7 => "bad event injection",
            8 => "invalid guest state",
            9 => "value too wide for field",
            10 => "field written twice",
            11 => "bad reply flags",
            12 => "bad reply length",
            13 => "reserved bits set",
            14 => "would keep the CPU from the kernel",
            15 => "bad RIP advance length",
            _ => "unknown batch error",
        }
    }

    /// The offending field's encoding, for the errors that name one.
    pub const fn field(&self) -> Option<u32> {
        match *self {
            Self::FieldNotWritable { field }
            | Self::ControlBitsRejected { field, .. }
            | Self::ControlPolicy { field, .. }
            | Self::InvalidGuestState { field }
            | Self::ValueTooWide { field, .. }
            | Self::DuplicateField { field }
            | Self::Liveness { field, .. } => Some(field),
            Self::UnknownField { raw } => Some(raw),
            // The event is what VM entry would inject: name the field that holds it.
            Self::BadInjection { .. } => Some(Field::EntryInterruptionInfo as u32),
            _ => None,
        }
    }

    /// `(code, small argument, value, bits)` — the uniform shape the words carry.
    const fn parts(&self) -> (u32, u32, u64, u64) {
        match *self {
            Self::FieldNotWritable { field } => (1, field, 0, 0),
            Self::UnknownField { raw } => (2, raw, 0, 0),
            Self::ControlBitsRejected { field, value, bits } => (3, field, value, bits),
            Self::ControlPolicy { field, value, bits } => (4, field, value, bits),
            Self::TooManyWrites { count } => (5, count, 0, 0),
            Self::BadGprMask { mask } => (6, 0, mask, 0),
            Self::BadInjection { info } => (7, info, 0, 0),
            Self::InvalidGuestState { field } => (8, field, 0, 0),
            Self::ValueTooWide { field, value } => (9, field, value, 0),
            Self::DuplicateField { field } => (10, field, 0, 0),
            Self::BadFlags { flags } => (11, flags, 0, 0),
            Self::BadLength { expected, got } => (12, expected, got as u64, 0),
            Self::ReservedBits { word, bits } => (13, word, 0, bits),
            Self::Liveness { field, value } => (14, field, value, 0),
            Self::BadAdvance { len } => (15, len, 0, 0),
        }
    }

    /// Encode: `[code | arg << 32, value, bits]`.
    pub const fn to_words(&self) -> [u64; Self::SIZE] {
        let (code, arg, value, bits) = self.parts();
        [pair(code, arg), value, bits]
    }

    /// Decode; `None` for an unknown code, a wrong length, or words a variant leaves
    /// unused that are not zero.
    pub fn from_words(words: &[u64]) -> Option<Self> {
        let [w0, value, bits] = *words else { return None };
        let arg = hi(w0);
        let e = match lo(w0) {
            1 => Self::FieldNotWritable { field: arg },
            2 => Self::UnknownField { raw: arg },
            3 => Self::ControlBitsRejected { field: arg, value, bits },
            4 => Self::ControlPolicy { field: arg, value, bits },
            5 => Self::TooManyWrites { count: arg },
            6 => Self::BadGprMask { mask: value },
            7 => Self::BadInjection { info: arg },
            8 => Self::InvalidGuestState { field: arg },
            9 => Self::ValueTooWide { field: arg, value },
            10 => Self::DuplicateField { field: arg },
            11 => Self::BadFlags { flags: arg },
            12 => Self::BadLength { expected: arg, got: u32::try_from(value).ok()? },
            13 => Self::ReservedBits { word: arg, bits },
            14 => Self::Liveness { field: arg, value },
            15 => Self::BadAdvance { len: arg },
            _ => return None,
        };
        // Canonical form only: a word a variant does not use must be zero.
        if e.to_words() == [w0, value, bits] {
            Some(e)
        } else {
            None
        }
    }
}

/// Writes a field encoding with its name when the encoding is known.
struct FieldName(u32);

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Field::from_raw(self.0) {
            Some(field) => write!(f, "{field}"),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match *self {
            Self::FieldNotWritable { field }
            | Self::InvalidGuestState { field }
            | Self::DuplicateField { field } => write!(f, ": {}", FieldName(field)),
            Self::UnknownField { raw } => write!(f, ": {raw:#x}"),
            Self::ControlBitsRejected { field, value, bits }
            | Self::ControlPolicy { field, value, bits } => {
                write!(f, ": {} = {value:#x}, offending bits {bits:#x}", FieldName(field))
            }
            Self::ValueTooWide { field, value } | Self::Liveness { field, value } => {
                write!(f, ": {} = {value:#x}", FieldName(field))
            }
            Self::TooManyWrites { count } => write!(f, ": {count} > {MAX_WRITES}"),
            Self::BadGprMask { mask } => write!(f, ": {mask:#x}"),
            Self::BadInjection { info } => {
                write!(f, ": {} = {info:#x}", FieldName(Field::EntryInterruptionInfo as u32))
            }
            Self::BadFlags { flags } => write!(f, ": {flags:#x}"),
            Self::BadLength { expected, got } => write!(f, ": {got} words, expected {expected}"),
            Self::ReservedBits { word, bits } => write!(f, ": word {word}, bits {bits:#x}"),
            Self::BadAdvance { len } => write!(f, ": {len} (1-15, with ADVANCE_RIP)"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed test is a panic")]
mod tests {
    use super::{
        BatchError, EventInjection, EventType, ExitMessage, ExitReason, ExitReply, Gprs,
        ReplyFlags, TransferMask, VmcsWrite, WireError, MAX_WRITES,
    };
    use crate::vmcs::Field;

    #[test]
    fn exit_reasons_match_the_sdm() {
        let golden = [
            (ExitReason::ExceptionOrNmi, 0),
            (ExitReason::ExternalInterrupt, 1),
            (ExitReason::TripleFault, 2),
            (ExitReason::InterruptWindow, 7),
            (ExitReason::Cpuid, 10),
            (ExitReason::Hlt, 12),
            (ExitReason::Vmcall, 18),
            (ExitReason::CrAccess, 28),
            (ExitReason::IoInstruction, 30),
            (ExitReason::Rdmsr, 31),
            (ExitReason::Wrmsr, 32),
            (ExitReason::EntryFailGuestState, 33),
            (ExitReason::EptViolation, 48),
            (ExitReason::EptMisconfig, 49),
            (ExitReason::PreemptionTimer, 52),
            (ExitReason::Xsetbv, 55),
        ];
        for (reason, num) in golden {
            assert_eq!(reason as u16, num);
            assert_eq!(ExitReason::from_raw(num), Some(reason));
        }
        for &r in ExitReason::ALL {
            assert_eq!(ExitReason::from_raw(r as u16), Some(r));
        }
        for unused in [35, 38, 42, 71, 76, u16::MAX] {
            assert_eq!(ExitReason::from_raw(unused), None);
        }
    }

    fn sample_message() -> ExitMessage {
        let mut m = ExitMessage {
            reason: 30,
            instruction_len: 2,
            qualification: 0x03f8_0008,
            instruction_info: 0x11,
            interruptibility: 0x1,
            guest_linear: 0x1000,
            guest_physical: 0x2000,
            rip: 0xffff_8000_0000_1234,
            rflags: 0x202,
            cr0: 0x8000_0031,
            cr3: 0x3000,
            cr4: 0x2020,
            idt_vectoring_info: 0x8000_0b0e,
            idt_vectoring_error: 0x2,
            exit_intr_info: 0x8000_0020,
            exit_intr_error: 0x5,
            cpl: 3,
            ..ExitMessage::default()
        };
        for (i, reg) in m.gprs.regs.iter_mut().enumerate() {
            *reg = 0x100 + i as u64;
        }
        m
    }

    #[test]
    fn exit_message_base_golden_words() {
        let m = sample_message();
        let mut out = [0; ExitMessage::SIZE];
        let n = m.to_words(&mut out);
        assert_eq!(n, ExitMessage::BASE_WORDS);
        assert_eq!(n, 29);
        let golden: [u64; 13] = [
            0x0000_0002_0000_001e,
            0x03f8_0008,
            0x0000_0001_0000_0011,
            0x1000,
            0x2000,
            0xffff_8000_0000_1234,
            0x202,
            0x8000_0031,
            0x3000,
            0x2020,
            0x0000_0002_8000_0b0e,
            0x0000_0005_8000_0020,
            // No optional group; CPL 3 in the high half.
            0x0000_0003_0000_0000,
        ];
        assert_eq!(out[..13], golden);
        assert_eq!(out[13], 0x100);
        assert_eq!(out[28], 0x10f);
        // Words are little-endian in the IPC buffer: the reason comes first.
        assert_eq!(out[0].to_le_bytes(), [0x1e, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(ExitMessage::from_words(&out[..n]), Ok(m));
        assert_eq!(m.basic_reason(), Some(ExitReason::IoInstruction));
        assert!(!m.is_entry_failure());
        assert_eq!(m.gprs.rsp(), 0x104);
    }

    #[test]
    fn exit_message_optional_groups_round_trip() {
        let mut m = sample_message();
        m.transfer = TransferMask::ALL;
        for (i, seg) in m.segments.regs.iter_mut().enumerate() {
            let i = i as u64;
            seg.base = 0x1_0000 * i;
            seg.limit = 0xffff + i as u32;
            seg.access_rights = 0x93 + i as u32;
            seg.selector = 0x8 * i as u16 + 1;
        }
        m.gdtr.base = 0x5000;
        m.gdtr.limit = 0x27;
        m.idtr.base = 0x6000;
        m.idtr.limit = 0xfff;
        (m.efer, m.pat) = (0xd01, 0x0007_0406_0007_0406);
        (m.dr7, m.debugctl) = (0x400, 0x1);
        m.pending_debug = 0x4000;
        m.activity_state = 1;
        (m.sysenter_cs, m.sysenter_esp, m.sysenter_eip) = (0x10, 0x7000, 0x8000);
        m.pdptes = [1, 2, 3, 4];
        m.controls.pin = 0x9;
        m.controls.proc = 0xb600_0000;
        m.controls.proc2 = 0x82;
        m.controls.exit = 0x20_0200;
        m.controls.entry = 0x8200;
        let mut out = [0; ExitMessage::SIZE];
        let n = m.to_words(&mut out);
        assert_eq!(n, ExitMessage::SIZE);
        assert_eq!(n, m.wire_len());
        // Segment 0 then the packed selectors: ES, CS, SS, DS in one word.
        assert_eq!(out[29], 0);
        assert_eq!(out[30], 0x0000_0093_0000_ffff);
        assert_eq!(out[45], 0x0019_0011_0009_0001);
        assert_eq!(out[46], 0x0039_0031_0029_0021);
        assert_eq!(ExitMessage::from_words(&out), Ok(m));

        // A subset: the groups left out decode as zero.
        m.transfer = TransferMask::CONTROLS | TransferMask::EFER_PAT;
        let n = m.to_words(&mut out);
        assert_eq!(n, 29 + 3 + 2);
        assert_eq!(
            out[29..n],
            [0xd01, 0x0007_0406_0007_0406, 0xb600_0000_0000_0009, 0x0020_0200_0000_0082, 0x8200]
        );
        let back = ExitMessage::from_words(&out[..n]).unwrap();
        assert_eq!(back.controls, m.controls);
        assert_eq!(back.efer, 0xd01);
        assert_eq!(back.segments, Default::default());
        assert_eq!(back.pdptes, [0; 4]);
    }

    #[test]
    fn exit_message_rejects_malformed_words() {
        let m = sample_message();
        let mut out = [0; ExitMessage::SIZE];
        let n = m.to_words(&mut out);
        assert_eq!(
            ExitMessage::from_words(&out[..n - 1]),
            Err(WireError::BadLength { expected: 29, got: 28 })
        );
        assert_eq!(
            ExitMessage::from_words(&out[..n + 1]),
            Err(WireError::BadLength { expected: 29, got: 30 })
        );
        assert!(ExitMessage::from_words(&[]).is_err());
        out[12] = 1 << 40;
        assert_eq!(
            ExitMessage::from_words(&out[..n]),
            Err(WireError::ReservedBits { word: 12, bits: 1 << 40 })
        );
        // The activity-state word's high half is reserved.
        out[12] = TransferMask::ACTIVITY_STATE.bits();
        out[29] = 1 << 32 | 1;
        assert_eq!(
            ExitMessage::from_words(&out[..30]),
            Err(WireError::ReservedBits { word: 29, bits: 1 << 32 })
        );
    }

    #[test]
    fn event_injection_golden_encodings() {
        assert_eq!(EventInjection::exception(14).raw(), 0x8000_0b0e);
        assert_eq!(EventInjection::exception(6).raw(), 0x8000_0306);
        assert_eq!(EventInjection::nmi().raw(), 0x8000_0202);
        assert_eq!(EventInjection::interrupt(0x20).raw(), 0x8000_0020);
        let int80 = EventInjection::new(0x80, EventType::SoftwareInterrupt, false);
        assert_eq!(int80.raw(), 0x8000_0480);
        assert_eq!(int80.event_type(), Some(EventType::SoftwareInterrupt));
        assert_eq!(int80.vector(), 0x80);
        assert!(int80.is_valid() && !int80.delivers_error_code());
        assert_eq!(EventInjection::from_raw(0x8000_0100).event_type(), None);
        assert!(!EventInjection::NONE.is_valid());
    }

    #[test]
    fn vmcs_write_golden_bytes() {
        let w = VmcsWrite::new(Field::GuestRip, 0x1122_3344_5566_7788);
        let bytes: Vec<u8> = w.to_words().iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(
            bytes,
            [0x1e, 0x68, 0, 0, 0, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(w.typed_field(), Some(Field::GuestRip));
    }

    fn sample_reply() -> ExitReply {
        let mut r = ExitReply::new();
        r.flags = ReplyFlags::ADVANCE_RIP;
        r.set_gpr(Gprs::RAX, 0x11).unwrap();
        r.set_gpr(Gprs::RBX, 0x33).unwrap();
        r.write(Field::GuestCr0, 0x8000_0031).unwrap();
        r.write(Field::ExceptionBitmap, 1 << 14).unwrap();
        r.inject(EventInjection::exception(13), 0x18, 0);
        r
    }

    #[test]
    fn exit_reply_golden_words() {
        let r = sample_reply();
        let mut out = [0; ExitReply::SIZE];
        let n = r.to_words(&mut out);
        assert_eq!(n, r.wire_len());
        let golden: [u64; 9] = [
            0x0000_0002_0000_0003,
            0x8000_0b0d_0000_0009,
            0x0000_0000_0000_0018,
            0x11,
            0x33,
            0x6800,
            0x8000_0031,
            0x4004,
            0x4000,
        ];
        assert_eq!(out[..n], golden);
        assert_eq!(ExitReply::from_words(&out[..n]), Ok(r));
        assert_eq!(ExitReply::SIZE, 51);
        assert_eq!(ExitReply::from_words(&[0, 0, 0]), Ok(ExitReply::new()));
    }

    #[test]
    fn exit_reply_rejects_malformed_words() {
        let r = sample_reply();
        let mut out = [0; ExitReply::SIZE];
        let n = r.to_words(&mut out);
        let decode = |words: &[u64]| ExitReply::from_words(words);
        assert_eq!(decode(&out[..n - 1]), Err(BatchError::BadLength { expected: 9, got: 8 }));
        assert_eq!(decode(&out[..2]), Err(BatchError::BadLength { expected: 3, got: 2 }));
        let mut bad = out;
        bad[0] |= 1 << 5;
        assert_eq!(decode(&bad[..n]), Err(BatchError::BadFlags { flags: 0x23 }));
        let mut bad = out;
        bad[0] = (MAX_WRITES as u64 + 1) << 32;
        assert_eq!(decode(&bad[..n]), Err(BatchError::TooManyWrites { count: 17 }));
        let mut bad = out;
        bad[1] |= 16 << 16;
        assert_eq!(decode(&bad[..n]), Err(BatchError::BadAdvance { len: 16 }));
        let mut bad = out;
        bad[1] |= 3 << 16;
        assert_eq!(decode(&bad[..n]).map(|r| r.advance_len), Ok(3), "with ADVANCE_RIP");
        bad[0] &= !u64::from(ReplyFlags::ADVANCE_RIP.bits());
        assert_eq!(decode(&bad[..n]), Err(BatchError::BadAdvance { len: 3 }));
        let mut bad = out;
        bad[0] &= !u64::from(ReplyFlags::INJECT_EVENT.bits());
        assert_eq!(decode(&bad[..n]), Err(BatchError::BadInjection { info: 0x8000_0b0d }));
        let mut bad = out;
        bad[5] |= 1 << 32;
        assert_eq!(decode(&bad[..n]), Err(BatchError::ReservedBits { word: 5, bits: 1 << 32 }));
    }

    #[test]
    fn exit_reply_builder_limits() {
        let mut r = ExitReply::new();
        for i in 0..MAX_WRITES {
            r.write(Field::GuestRip, i as u64).unwrap();
        }
        assert_eq!(r.write(Field::GuestRip, 0), Err(BatchError::TooManyWrites { count: 17 }));
        assert_eq!(r.writes().len(), MAX_WRITES);
        assert!(r.set_gpr(16, 0).is_err());
        r.count = 1000;
        assert!(r.writes().is_empty());
    }

    fn every_batch_error() -> [BatchError; 15] {
        [
            BatchError::FieldNotWritable { field: 0x6c16 },
            BatchError::UnknownField { raw: 0x1234 },
            BatchError::ControlBitsRejected { field: 0x4002, value: 0x8000_0000, bits: 1 << 31 },
            BatchError::ControlPolicy { field: 0x401e, value: 0x2000, bits: 0x2000 },
            BatchError::TooManyWrites { count: 17 },
            BatchError::BadGprMask { mask: 1 << 20 },
            BatchError::BadInjection { info: 0x8000_0100 },
            BatchError::InvalidGuestState { field: 0x6800 },
            BatchError::ValueTooWide { field: 0x0800, value: 0x1_0000 },
            BatchError::DuplicateField { field: 0x681e },
            BatchError::BadFlags { flags: 0x10 },
            BatchError::BadLength { expected: 9, got: 8 },
            BatchError::ReservedBits { word: 5, bits: 1 << 32 },
            BatchError::Liveness { field: 0x4826, value: 3 },
            BatchError::BadAdvance { len: 16 },
        ]
    }

    #[test]
    fn batch_error_codes_are_stable_and_round_trip() {
        for (i, e) in every_batch_error().iter().enumerate() {
            assert_eq!(e.code() as usize, i + 1, "codes are dense and start at 1");
            assert_eq!(BatchError::from_words(&e.to_words()), Some(*e));
            assert!(!e.name().is_empty());
        }
        assert_eq!(
            BatchError::FieldNotWritable { field: 0x6c16 }.to_words(),
            [0x0000_6c16_0000_0001, 0, 0]
        );
        assert_eq!(BatchError::from_words(&[16, 0, 0]), None);
        assert_eq!(BatchError::from_words(&[1, 5, 0]), None, "unused words must be zero");
        assert_eq!(BatchError::from_words(&[1, 0]), None);
        assert_eq!(BatchError::from_words(&[12 | 9 << 32, 1 << 40, 0]), None);
    }

    #[test]
    fn batch_error_display_names_the_field() {
        let e = BatchError::FieldNotWritable { field: Field::HostRip as u32 };
        assert_eq!(e.to_string(), "field not writable: HostRip (0x6c16)");
        let e = BatchError::ControlPolicy { field: 0x401e, value: 0x2002, bits: 0x2000 };
        assert_eq!(
            e.to_string(),
            "control bits rejected by kernel policy: SecondaryProcBasedControls (0x401e) = 0x2002, offending bits 0x2000"
        );
        assert_eq!(BatchError::UnknownField { raw: 0x1 }.to_string(), "unknown field: 0x1");
        assert_eq!(e.field(), Some(0x401e));
        assert_eq!(BatchError::BadFlags { flags: 1 }.field(), None);
    }

    #[test]
    fn transfer_mask_rejects_unknown_bits() {
        assert_eq!(TransferMask::from_bits(1 << 17), None);
        assert_eq!(TransferMask::from_bits(0x1_ffff), Some(TransferMask::ALL));
        // CS alone takes the segments' place on the wire.
        let cs = TransferMask::CODE_SEGMENT;
        assert_eq!(cs.extra_words(), TransferMask::SEGMENTS.extra_words());
        assert_eq!(TransferMask::ALL.extra_words(), ExitMessage::SIZE - ExitMessage::BASE_WORDS);
        assert_eq!(ReplyFlags::from_bits(0x20), None);
    }

    #[test]
    fn a_fault_address_travels_only_with_an_injected_page_fault() {
        let pf = EventInjection::exception(crate::x86::PAGE_FAULT_VECTOR);
        let mut r = ExitReply::new();
        r.inject(pf, 2, 0);
        r.flags = r.flags.union(ReplyFlags::PAGE_FAULT_ADDRESS);
        r.fault_address = 0xdead_b000;
        let mut out = [0; ExitReply::SIZE];
        let n = r.to_words(&mut out);
        assert_eq!((n, out[3]), (4, 0xdead_b000), "one word after the header");
        assert_eq!(ExitReply::from_words(&out[..n]), Ok(r));
        // The flag with another event, or with none.
        let gp = EventInjection::exception(13);
        assert_eq!(
            ExitReply::check_fault_address(r.flags, gp),
            Err(BatchError::BadInjection { info: gp.raw() })
        );
        let alone = ReplyFlags::PAGE_FAULT_ADDRESS;
        assert!(ExitReply::check_fault_address(alone, pf).is_err());
        assert_eq!(ExitReply::check_fault_address(ReplyFlags::INJECT_EVENT, pf), Ok(()));
        // Without the flag the address is not part of the reply: not on the wire.
        let mut stale = ExitReply::new();
        stale.fault_address = 8;
        let n = stale.to_words(&mut out);
        assert_eq!(n, ExitReply::HEADER_WORDS);
        assert_eq!(ExitReply::from_words(&out[..n]).map(|r| r.fault_address), Ok(0));
    }
}
