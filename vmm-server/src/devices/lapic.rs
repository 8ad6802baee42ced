//! The local APIC of the guest's one vCPU: xAPIC registers by MMIO (a [`BusDevice`] over
//! the 4 KiB page at [`Lapic::mmio_base`]), x2APIC registers by MSR ([`Lapic::msr_read`],
//! [`Lapic::msr_write`]), IA32_APIC_BASE and IA32_TSC_DEADLINE, as Intel SDM Vol. 3
//! chapter 11 describes them.
//!
//! The model decides, the VMM acts. Interrupts enter with [`Lapic::raise`] (an IOAPIC,
//! an MSI, the LVTs, self-IPIs); the VMM asks [`Lapic::highest_deliverable`] whether one
//! beats the processor priority, injects it (or opens an interrupt window, as for the
//! PIC today) and reports it with [`Lapic::ack`], which moves it from IRR to ISR. An EOI
//! clears the highest ISR bit; a level-triggered one is kept for the IOAPIC's EOI
//! broadcast ([`Lapic::take_eoi_broadcast`]). Whether the 8259's INTR reaches the vCPU is
//! [`Lapic::ext_int_enabled`] (LINT0 in ExtINT mode, or the APIC disabled); ExtINT
//! bypasses priority, so the VMM checks it first, as KVM does.
//!
//! Time comes from the caller as guest TSC, as the PIT's comes in PIT clocks: before any
//! access the VMM calls [`Lapic::advance`] with the exit's guest TSC (due timer
//! interrupts enter IRR), and [`Lapic::next_deadline`] gives the guest TSC of the next
//! timer interrupt, for the preemption timer and for skipping a halted guest ahead.
//!
//! With one vCPU, an IPI reaches nobody else: a fixed or lowest-priority IPI to itself
//! (shorthand self or all-including-self, or a destination that matches its own ID or
//! logical ID) is raised locally, an NMI to itself is kept for [`Lapic::take_nmi`], and
//! everything else (INIT, SIPI, SMI, other destinations) is counted and dropped. Delivery
//! is instant, so the ICR's delivery-status bit always reads idle, and no spurious
//! interrupt is ever generated: the VMM re-checks priority when it injects.

mod ipi;
mod lint;
mod registers;
mod timer;
mod x2apic;

pub use ipi::{Ipi, StartSignal};
pub use lint::{LintAction, LintPin};
pub use registers::LVT_MASKED;
pub use timer::{TimerClock, TimerMode};

use crate::bus::BusDevice;
use registers::{
    Lvt, Reg, VectorSet, ICR_LOW_MASK, LVT_LEVEL, LVT_REMOTE_IRR, MODE_EXTINT, MODE_FIXED,
    MODE_NMI, SVR_ENABLE, SVR_MASK,
};
use timer::Timer;

/// IA32_TSC_DEADLINE.
pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// The first x2APIC MSR; register `offset` of the xAPIC page is MSR `0x800 + offset / 16`.
pub const X2APIC_MSR_BASE: u32 = 0x800;
/// The xAPIC page's size.
pub const MMIO_SIZE: u64 = 0x1000;
/// The current-count register's offset in the xAPIC page: the one read that shows time.
pub const CURRENT_COUNT: u64 = (registers::CURRENT_COUNT_INDEX as u64) << 4;
/// The xAPIC page after reset.
pub const DEFAULT_BASE: u64 = protocols::devices::LAPIC_BASE;

/// IA32_APIC_BASE bit 8: this is the bootstrap processor (read-only here).
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10: x2APIC mode.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11: the APIC is enabled.
pub const APIC_BASE_EN: u64 = 1 << 11;

/// The version register: version 0x14 (an integrated APIC, as KVM reports) and seven
/// LVT entries (max LVT entry 6: CMCI included), no EOI-broadcast suppression. KVM
/// reports 5 when the guest's MCG_CAP lacks CMCI; the CMCI entry is modelled anyway
/// (masked, never raised), so a guest that finds it only masks it.
pub const VERSION: u32 = 0x0006_0014;

/// ESR bit 5: an IPI was sent with an illegal vector.
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6: an interrupt with an illegal vector (0-15) was received.
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;

/// The APIC's global state, from IA32_APIC_BASE's EN and EXTD bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    /// EN=0: no APIC; INTR and NMI reach the CPU directly.
    Disabled,
    /// EN=1, EXTD=0: registers by MMIO.
    XApic,
    /// EN=1, EXTD=1: registers by MSR.
    X2Apic,
}

/// How an interrupt is triggered, which TMR records for the IOAPIC's EOI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered: TMR clear.
    Edge,
    /// Level-triggered: TMR set, and its EOI is broadcast.
    Level,
}

/// Why [`Lapic::raise`] did not accept an interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaiseError {
    /// Vectors 0-15 are illegal; the ESR records it.
    IllegalVector,
    /// The APIC is disabled in IA32_APIC_BASE or by SVR bit 8.
    Disabled,
}

/// Why an MSR access must fault (the caller injects #GP) or is not the APIC's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrError {
    /// Not an MSR of the local APIC: the caller's own policy decides.
    NotApic,
    /// An x2APIC MSR outside x2APIC mode.
    NotX2Apic,
    /// An x2APIC MSR index with no register behind it (APR, DFR and ICR high included).
    Reserved,
    /// A read of a write-only register (EOI, SELF IPI).
    WriteOnly,
    /// A write to a read-only register.
    ReadOnly,
    /// A reserved bit set in the value written (SDM 11.12.1.3).
    ReservedBits,
    /// An IA32_APIC_BASE write into the invalid state (EN=0, EXTD=1), from x2APIC to
    /// xAPIC, or from disabled to x2APIC (SDM 11.12.5).
    IllegalTransition,
}

/// An end of interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eoi {
    /// The vector whose ISR bit was cleared.
    pub vector: u8,
    /// It was level-triggered (TMR set): the IOAPIC needs the EOI.
    pub level: bool,
}

/// The model's configuration, from the VM's CPUID and clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LapicConfig {
    /// The x2APIC ID (its low 8 bits are the xAPIC ID); CPUID leaf 1 must agree.
    pub apic_id: u32,
    /// Whether this is the bootstrap processor (IA32_APIC_BASE bit 8).
    pub bsp: bool,
    /// Whether CPUID offers x2APIC: otherwise EXTD is a reserved bit.
    pub x2apic: bool,
    /// The guest's MAXPHYADDR: IA32_APIC_BASE bits above it are reserved.
    pub phys_addr_bits: u8,
    /// The TSC and bus rates the timer runs at.
    pub clock: TimerClock,
}

/// The local APIC.
#[derive(Clone, Debug)]
pub struct Lapic {
    config: LapicConfig,
    mode: ApicMode,
    /// IA32_APIC_BASE bits 12 and up.
    base: u64,
    /// The guest TSC time was last brought to.
    now: u64,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: VectorSet,
    tmr: VectorSet,
    irr: VectorSet,
    /// The ESR as the guest reads it: the errors latched by its last write.
    esr: u32,
    /// Errors since the last ESR write.
    esr_pending: u32,
    lvt: [u32; 7],
    icr_low: u32,
    icr_high: u32,
    timer: Timer,
    /// LINT0 and LINT1 levels last driven, for edge detection.
    lint_levels: [bool; 2],
    /// Level-triggered vectors EOI'd and not yet taken by the IOAPIC.
    eoi_broadcast: VectorSet,
    nmi_pending: bool,
    dropped_writes: u64,
    dropped_ipis: u64,
    /// An IPI for other APICs, until the platform takes it.
    outgoing: Option<Ipi>,
    /// An INIT, and a STARTUP's vector, another vCPU sent, until the VMM takes them.
    start_signals: (bool, Option<u8>),
}

impl Lapic {
    /// An APIC as after RESET: xAPIC mode at [`DEFAULT_BASE`], software-disabled, every
    /// LVT masked (SDM 11.4.7.1). A VM without firmware wants
    /// [`Lapic::firmware_virtual_wire`] next.
    pub fn new(config: LapicConfig) -> Self {
        Self {
            config,
            mode: ApicMode::XApic,
            base: DEFAULT_BASE,
            now: 0,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xff,
            isr: VectorSet::default(),
            tmr: VectorSet::default(),
            irr: VectorSet::default(),
            esr: 0,
            esr_pending: 0,
            lvt: [LVT_MASKED; 7],
            icr_low: 0,
            icr_high: 0,
            timer: Timer::new(config.clock),
            lint_levels: [false; 2],
            eoi_broadcast: VectorSet::default(),
            nmi_pending: false,
            dropped_writes: 0,
            dropped_ipis: 0,
            outgoing: None,
            start_signals: (false, None),
        }
    }

    /// What PC firmware does before an OS runs (SeaBIOS's values): software-enable the
    /// APIC and put it in virtual-wire mode, LINT0 ExtINT and LINT1 NMI, both
    /// level-triggered and unmasked, so the 8259 reaches the CPU through LINT0.
    pub fn firmware_virtual_wire(&mut self) {
        self.svr |= SVR_ENABLE;
        self.set_lvt(Lvt::Lint0, LVT_LEVEL | MODE_EXTINT << 8);
        self.set_lvt(Lvt::Lint1, LVT_LEVEL | MODE_NMI << 8);
    }

    /// The register state a transition to disabled leaves: everything but the ID and
    /// IA32_APIC_BASE back to its reset value (SDM 11.12.5.1: nothing else is preserved
    /// across it). The pins' levels are the outside world's and stay.
    fn reset_registers(&mut self) {
        let fresh = Self::new(self.config);
        *self = Self {
            mode: self.mode,
            base: self.base,
            now: self.now,
            lint_levels: self.lint_levels,
            dropped_writes: self.dropped_writes,
            dropped_ipis: self.dropped_ipis,
            ..fresh
        };
    }

    // ---- Global state: IA32_APIC_BASE ----

    /// How it was made.
    pub fn config(&self) -> LapicConfig {
        self.config
    }

    /// The APIC ID (the x2APIC ID; its low 8 bits are the xAPIC ID).
    pub fn apic_id(&self) -> u32 {
        self.config.apic_id
    }

    /// The APIC's mode.
    pub fn mode(&self) -> ApicMode {
        self.mode
    }

    /// IA32_APIC_BASE as RDMSR returns it.
    pub fn apic_base(&self) -> u64 {
        let mut v = self.base;
        if self.config.bsp {
            v |= APIC_BASE_BSP;
        }
        match self.mode {
            ApicMode::Disabled => v,
            ApicMode::XApic => v | APIC_BASE_EN,
            ApicMode::X2Apic => v | APIC_BASE_EN | APIC_BASE_EXTD,
        }
    }

    /// A WRMSR to IA32_APIC_BASE. Bits 7:0, 9, EXTD without x2APIC support and bits at
    /// or above MAXPHYADDR are reserved; BSP is read-only (writes of either value are
    /// ignored). The legal transitions are disabled <-> xAPIC, xAPIC -> x2APIC and
    /// x2APIC -> disabled; leaving for disabled resets every register but the ID.
    pub fn set_apic_base(&mut self, value: u64) -> Result<(), MsrError> {
        let bits = u32::from(self.config.phys_addr_bits.clamp(32, 52));
        let addr_mask = (1u64 << bits).wrapping_sub(1) & !0xfff;
        let mut allowed = addr_mask | APIC_BASE_BSP | APIC_BASE_EN;
        if self.config.x2apic {
            allowed |= APIC_BASE_EXTD;
        }
        if value & !allowed != 0 {
            return Err(MsrError::ReservedBits);
        }
        let next = match (value & APIC_BASE_EN != 0, value & APIC_BASE_EXTD != 0) {
            (false, false) => ApicMode::Disabled,
            (true, false) => ApicMode::XApic,
            (true, true) => ApicMode::X2Apic,
            (false, true) => return Err(MsrError::IllegalTransition),
        };
        match (self.mode, next) {
            (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic) => {
                return Err(MsrError::IllegalTransition)
            }
            _ => {}
        }
        self.base = value & addr_mask;
        if next != self.mode {
            if next == ApicMode::Disabled {
                self.reset_registers();
            }
            self.mode = next;
        }
        Ok(())
    }

    /// Where the xAPIC page is, while the registers are reached by MMIO (xAPIC mode
    /// only): the VMM keeps its MMIO bus range there.
    pub fn mmio_base(&self) -> Option<u64> {
        (self.mode == ApicMode::XApic).then_some(self.base)
    }

    fn hw_enabled(&self) -> bool {
        self.mode != ApicMode::Disabled
    }

    /// Whether the APIC is enabled both in IA32_APIC_BASE and by SVR bit 8.
    pub fn enabled(&self) -> bool {
        self.hw_enabled() && self.svr & SVR_ENABLE != 0
    }

    // ---- Time ----

    /// Bring the APIC to guest TSC `now` (earlier values are ignored): a timer that
    /// expired raises its LVT vector, unless masked. Returns whether it raised one.
    pub fn advance(&mut self, now: u64) -> bool {
        self.now = self.now.max(now);
        self.settle_timer()
    }

    /// Let a due expiry happen at `self.now`, with the LVT as it is.
    fn settle_timer(&mut self) -> bool {
        let lvt = self.lvt_value(Lvt::Timer);
        if !self.timer.expire(TimerMode::from_lvt(lvt), self.now) {
            return false;
        }
        lvt & LVT_MASKED == 0 && self.raise(lvt as u8, Trigger::Edge).is_ok()
    }

    /// The guest TSC at which the timer will next raise an interrupt: `None` when none is
    /// coming (no count, masked, or the APIC disabled). A value at or before the current
    /// time means "now".
    pub fn next_deadline(&self) -> Option<u64> {
        let lvt = self.lvt_value(Lvt::Timer);
        if !self.enabled() || lvt & LVT_MASKED != 0 {
            return None;
        }
        self.timer.next_expiry(TimerMode::from_lvt(lvt))
    }

    /// The timer's clock (its bus rate is what a CPUID timing leaf would report).
    pub fn timer_clock(&self) -> &TimerClock {
        self.timer.clock()
    }

    // ---- Acceptance, priority, injection ----

    /// Accept `vector` into IRR, recording its trigger mode in TMR. Vectors 0-15 are
    /// refused and set the ESR's receive-illegal-vector bit (raising the error LVT);
    /// a disabled APIC accepts nothing but keeps what IRR and ISR hold (SDM 11.4.7.2).
    pub fn raise(&mut self, vector: u8, trigger: Trigger) -> Result<(), RaiseError> {
        if !self.enabled() {
            return Err(RaiseError::Disabled);
        }
        if vector < 16 {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return Err(RaiseError::IllegalVector);
        }
        self.irr.set(vector);
        match trigger {
            Trigger::Edge => self.tmr.clear(vector),
            Trigger::Level => self.tmr.set(vector),
        }
        Ok(())
    }

    /// Record an internal error in the ESR and raise the error LVT's vector, unless
    /// masked. An illegal vector there would recurse: it is recorded and dropped.
    fn error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let lvt = self.lvt_value(Lvt::Error);
        let vector = lvt as u8;
        if lvt & LVT_MASKED == 0 && vector >= 16 && self.enabled() {
            self.irr.set(vector);
            self.tmr.clear(vector);
        }
    }

    /// The processor-priority register: TPR if its class is at least that of the
    /// highest in-service vector, else that vector's class (SDM 11.8.3.1).
    pub fn ppr(&self) -> u8 {
        let isrv = self.isr.highest().unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    /// The task-priority register.
    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// CR8, which is TPR bits 7:4 (SDM 11.8.6).
    pub fn cr8(&self) -> u64 {
        u64::from(self.tpr >> 4)
    }

    /// A MOV to CR8: TPR bits 7:4 from its bits 3:0, bits 3:0 cleared. The caller has
    /// made the #GP check for bits 63:4.
    pub fn set_cr8(&mut self, value: u64) {
        self.tpr = ((value & 0xf) as u8) << 4;
    }

    /// The highest pending vector whose priority class beats the PPR's: what the VMM
    /// injects next (or opens an interrupt window for). A software-disabled APIC still
    /// delivers what IRR held (SDM 11.4.7.2); a hardware-disabled one delivers nothing.
    #[inline]
    pub fn highest_deliverable(&self) -> Option<u8> {
        if self.irr.is_empty() || !self.hw_enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (v >> 4 > self.ppr() >> 4).then_some(v)
    }

    /// The VMM injected `vector`: it moves from IRR to ISR (the CPU's INTA). Returns
    /// whether it was pending.
    pub fn ack(&mut self, vector: u8) -> bool {
        if !self.irr.contains(vector) {
            return false;
        }
        self.irr.clear(vector);
        self.isr.set(vector);
        true
    }

    /// An end of interrupt: clears the highest ISR bit. A level-triggered vector's EOI is
    /// also kept for [`Lapic::take_eoi_broadcast`] and clears the remote IRR of a LINT
    /// pin delivering that vector.
    pub fn eoi(&mut self) -> Option<Eoi> {
        let vector = self.isr.highest()?;
        self.isr.clear(vector);
        let level = self.tmr.contains(vector);
        if level {
            self.eoi_broadcast.set(vector);
            for pin in [Lvt::Lint0, Lvt::Lint1] {
                if self.lvt_value(pin) as u8 == vector {
                    self.set_lvt_bits(pin, LVT_REMOTE_IRR, false);
                }
            }
        }
        Some(Eoi { vector, level })
    }

    /// A level-triggered vector whose EOI the IOAPIC has not yet seen (the highest).
    pub fn take_eoi_broadcast(&mut self) -> Option<u8> {
        let v = self.eoi_broadcast.highest()?;
        self.eoi_broadcast.clear(v);
        Some(v)
    }

    /// Whether a self-NMI (by ICR) is waiting to be injected; clears it.
    pub fn take_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi_pending)
    }

    /// The spurious-interrupt vector (SVR bits 7:0).
    pub fn spurious_vector(&self) -> u8 {
        self.svr as u8
    }

    /// xAPIC writes dropped for their width or alignment.
    pub fn dropped_writes(&self) -> u64 {
        self.dropped_writes
    }

    /// IPIs dropped: for other CPUs, or INIT, SIPI and SMI.
    pub fn dropped_ipis(&self) -> u64 {
        self.dropped_ipis
    }

    // ---- LVT storage ----

    fn lvt_value(&self, lvt: Lvt) -> u32 {
        self.lvt.get(lvt as usize).copied().unwrap_or(LVT_MASKED)
    }

    fn set_lvt(&mut self, lvt: Lvt, value: u32) {
        if let Some(slot) = self.lvt.get_mut(lvt as usize) {
            *slot = value;
        }
    }

    fn set_lvt_bits(&mut self, lvt: Lvt, bits: u32, on: bool) {
        let v = self.lvt_value(lvt);
        self.set_lvt(lvt, if on { v | bits } else { v & !bits });
    }

    /// A guest write of an LVT entry: the writable bits change, the read-only ones stay,
    /// and a software-disabled APIC keeps every entry masked (SDM 11.4.7.2).
    fn write_lvt(&mut self, lvt: Lvt, value: u32) {
        let old = self.lvt_value(lvt);
        let mut new = (value & lvt.writable()) | (old & lvt.read_only());
        if self.svr & SVR_ENABLE == 0 {
            new |= LVT_MASKED;
        }
        if lvt == Lvt::Timer {
            // Expiries up to now happened under the old entry.
            self.settle_timer();
            self.timer.change_mode(TimerMode::from_lvt(old), TimerMode::from_lvt(new));
        }
        self.set_lvt(lvt, new);
    }

    fn timer_mode(&self) -> TimerMode {
        TimerMode::from_lvt(self.lvt_value(Lvt::Timer))
    }

    // ---- Registers ----

    /// The logical destination register: written in xAPIC mode, derived from the ID in
    /// x2APIC mode (cluster ID = ID bits 31:4, one bit of 16 from bits 3:0; SDM 11.12.10.2).
    fn ldr(&self) -> u32 {
        if self.mode == ApicMode::X2Apic {
            let id = self.config.apic_id;
            ((id >> 4) << 16) | (1u32 << (id & 0xf))
        } else {
            self.ldr
        }
    }

    /// Read register `reg` as the current mode shows it.
    fn read_reg(&self, reg: Reg) -> u32 {
        let x2 = self.mode == ApicMode::X2Apic;
        match reg {
            Reg::Id if x2 => self.config.apic_id,
            Reg::Id => (self.config.apic_id & 0xff) << 24,
            Reg::Version => VERSION,
            Reg::Tpr => u32::from(self.tpr),
            // The arbitration priority exists only on P6 and Pentium APICs, which used
            // the APIC bus; later ones (and KVM) read 0.
            Reg::Apr => 0,
            Reg::Ppr => u32::from(self.ppr()),
            Reg::Eoi | Reg::SelfIpi => 0,
            Reg::Ldr => self.ldr(),
            Reg::Dfr => self.dfr,
            Reg::Svr => self.svr,
            Reg::Isr(i) => self.isr.register(i),
            Reg::Tmr(i) => self.tmr.register(i),
            Reg::Irr(i) => self.irr.register(i),
            Reg::Esr => self.esr,
            Reg::Lvt(lvt) => self.lvt_value(lvt),
            Reg::IcrLow => self.icr_low,
            Reg::IcrHigh => self.icr_high,
            Reg::InitialCount => self.timer.initial(),
            Reg::CurrentCount => self.timer.current_count(self.timer_mode(), self.now),
            Reg::DivideConfig => self.timer.divide_config(),
        }
    }

    /// Write register `reg`, masking the value to its writable bits; read-only
    /// registers ignore it. (The x2APIC path has refused reserved bits already.)
    fn write_reg(&mut self, reg: Reg, value: u32) {
        match reg {
            Reg::Tpr => self.tpr = value as u8,
            Reg::Eoi => {
                let _ = self.eoi();
            }
            Reg::Ldr => self.ldr = value & 0xff00_0000,
            Reg::Dfr => self.dfr = value | 0x0fff_ffff,
            Reg::Svr => {
                self.svr = value & SVR_MASK;
                if value & SVR_ENABLE == 0 {
                    for slot in &mut self.lvt {
                        *slot |= LVT_MASKED;
                    }
                }
            }
            Reg::Esr => self.esr = core::mem::take(&mut self.esr_pending),
            Reg::Lvt(lvt) => self.write_lvt(lvt, value),
            Reg::IcrLow => {
                self.icr_low = value & ICR_LOW_MASK;
                self.send_ipi();
            }
            Reg::IcrHigh => self.icr_high = value & 0xff00_0000,
            Reg::InitialCount => {
                self.settle_timer();
                self.timer.set_initial(self.timer_mode(), value, self.now);
            }
            Reg::DivideConfig => {
                self.settle_timer();
                self.timer.set_divide(value, self.now);
            }
            Reg::SelfIpi => self.deliver_ipi(MODE_FIXED, value as u8),
            Reg::Id
            | Reg::Version
            | Reg::Apr
            | Reg::Ppr
            | Reg::Isr(_)
            | Reg::Tmr(_)
            | Reg::Irr(_)
            | Reg::CurrentCount => {}
        }
    }

    /// The register at xAPIC page offset `offset` (16-byte aligned). SELF IPI is
    /// x2APIC-only.
    #[inline]
    fn xapic_reg(offset: u64) -> Option<Reg> {
        let index = u32::try_from(offset >> 4).ok()?;
        Reg::from_index(index).filter(|r| *r != Reg::SelfIpi)
    }
}

impl BusDevice for Lapic {
    /// Each byte reads as the byte at its position in the 16-byte slot's 32-bit
    /// register: so 1-, 2- and 4-byte reads inside a register see its bytes (as on KVM),
    /// and bytes 4-15 of a slot, reserved offsets and write-only registers read 0.
    /// Outside xAPIC mode the page is not the APIC's and reads all-ones, as KVM does.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if self.mode != ApicMode::XApic {
            data.fill(0xff);
            return;
        }
        // The common case, an aligned 32-bit read of a register: one register read.
        if let (Ok(word), 0) = (<&mut [u8; 4]>::try_from(&mut *data), offset & 0xf) {
            *word = Self::xapic_reg(offset).map_or(0, |reg| self.read_reg(reg)).to_le_bytes();
            return;
        }
        let mut at = offset;
        for b in data.iter_mut() {
            let within = at & 0xf;
            *b = match Self::xapic_reg(at & !0xf) {
                Some(reg) if within < 4 => {
                    let bytes = self.read_reg(reg).to_le_bytes();
                    bytes.get(within as usize).copied().unwrap_or(0)
                }
                _ => 0,
            };
            at = at.wrapping_add(1);
        }
    }

    /// Only 32-bit writes at 16-byte-aligned offsets reach a register (SDM 11.4.1: the
    /// registers are accessed with aligned 32-bit stores; KVM drops the others too); the
    /// rest are dropped and counted. Writes to reserved offsets are ignored.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let value = <[u8; 4]>::try_from(data).ok().map(u32::from_le_bytes);
        let (Some(value), ApicMode::XApic, 0) = (value, self.mode, offset & 0xf) else {
            self.dropped_writes = self.dropped_writes.wrapping_add(1);
            return;
        };
        if let Some(reg) = Self::xapic_reg(offset) {
            self.write_reg(reg, value);
        }
    }
}

#[cfg(test)]
mod tests;
