//! The exit dispatcher: one [`Vm`] per guest, and [`Vm::handle`], which turns every
//! [`ExitMessage`] into an [`ExitReply`].
//!
//! `handle` first lets a handler for the exit reason emulate the instruction or event
//! (CPUID, port I/O, RDMSR/WRMSR, CR access, HLT, VMCALL, ...). A handler either finishes,
//! leaving VMCS writes, GPR loads and flags in a [`ReplyBuilder`], or returns a
//! [`StopReason`]. Then one place decides interrupt delivery: an event the exit cut short
//! (IDT-vectoring information) is re-injected first, otherwise the pending interrupt (the
//! PIC's through LINT0, or the local APIC's by priority: [`Platform::acknowledge`]) is
//! injected when the guest can take it, and an interrupt window is requested when it
//! cannot. A stop replaces the whole reply with a bare [`ReplyFlags::STOP_VCPU`], so a
//! half-emulated instruction never leaks into the guest, and the VM stays stopped.
//!
//! Nothing here panics on any message: every decoder is total, arithmetic is checked or
//! wrapping, and a batch that would overflow becomes a stop. HLT with interrupts enabled
//! and nothing pending replies ADVANCE_RIP | STOP_VCPU and marks the VM
//! [`RunState::Halted`]; the exit loop waits for time or input to raise an interrupt and
//! resumes the vCPU with the reply [`Vm::wake`] builds.

use core::fmt;

use protocols::vmexit::{
    exception_has_error_code, EventInjection, EventType, ExitMessage, ExitReason, ExitReply, Gprs,
    ReplyFlags, TransferMask,
};

use crate::bus::{Bus, BusError};
#[cfg(any(test, feature = "test-modes"))]
use crate::controls;
use crate::cpuid::{CpuidConfig, CpuidRegs, CpuidTable};
use crate::cr::{CrEnv, CrOutcome};
use crate::debug_regs::DrAccess;
use crate::devices::acpi_pm;
use crate::devices::ioapic;
use crate::devices::lapic::{self, Lapic, LapicConfig, TimerClock};
use crate::devices::remote::{Link, LinkError, RemoteDevice};
use crate::devices::uart16550::SerialSink;
use crate::exit_qualification::{
    reported_event, CrAccess, DecodeError, EptViolation, IoQualification,
};
use crate::guest_memory::GuestMemory;
use crate::guest_time::GuestTime;
use crate::hypercall::{self, Hypercall};
use crate::io::{self, GuestMode, IoFault};
use crate::mmio::decode_cache::DecodeCache;
use crate::mmio::site_cache::SiteCache;
use crate::mmio::{self, MmioContext, MmioError};
use crate::msr::{GuestStateMsr, MsrContext, MsrPolicy, MsrRead, MsrWrite};
use crate::paging::{PageFault, PagingMode};
use crate::platform::{MmioKey, Platform, PortKey, PORT_SLOTS};
use crate::reply::ReplyBuilder;
use protocols::devices::{DeviceSet, Kind};
use protocols::vcpu_page::Clock;
use protocols::vmm::MAX_VCPUS;
use protocols::x86::RFLAGS_IF;
use protocols::x86::{CR0_NE, CR4_VMXE, EFER_LMA};
use vcpus::VcpuState;

/// Exception vectors the dispatcher injects or reflects.
const DB: u8 = 1;
const UD: u8 = 6;
const GP: u8 = 13;
/// Interruptibility: blocking by STI or by MOV SS.
const SHADOW: u32 = 0b11;
/// Interruptibility: blocking by NMI.
const BLOCKING_BY_NMI: u32 = 1 << 3;
/// Segment access rights: CS.L (64-bit code).
const AR_L: u32 = 1 << 13;
/// Index of CS in [`protocols::vmexit::Segments`].
const SEG_CS: usize = 1;
/// IDT-vectoring information bits that describe the event (vector, type, error code,
/// valid); bit 12 is undefined there and must not reach the entry field.
const VECTORING_EVENT_BITS: u32 = 0x8000_0fff;
/// Number of basic exit reasons counted individually.
const REASONS: usize = 80;

/// [`Vm`]'s `apic_page` when the xAPIC page is mapped nowhere: no page-aligned address
/// equals it.
const NO_PAGE: u64 = u64::MAX;

/// The ACPI PM register window's last port.
const ACPI_PM_LAST: u16 = acpi_pm::BASE_PORT + acpi_pm::WINDOW_LEN as u16 - 1;

/// MMIO ranges a [`Vm`] can hold.
pub const MMIO_SLOTS: usize = 8;

/// Why a VM stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The guest called the EXIT hypercall with this code.
    GuestExit(u64),
    /// The guest wrote this code to the debug-exit port.
    DebugExit(u32),
    /// The guest asked the keyboard controller for a system reset.
    Reset,
    /// The guest triple-faulted.
    TripleFault,
    /// HLT with interrupts disabled: nothing this VMM sends can wake it.
    HaltedForever,
    /// The guest entered ACPI S5 (soft off) through the PM1 control register.
    PowerOff,
    /// VM entry failed (basic reason and qualification as the CPU reported them).
    EntryFailure {
        /// Basic exit reason (33, 34 or 41).
        reason: u16,
        /// Exit qualification.
        qualification: u64,
    },
    /// An exit reason this VMM does not handle.
    Unhandled {
        /// The full exit reason.
        reason: u32,
    },
    /// An MSR that is live CPU state the kernel must pass through.
    UnsupportedMsr {
        /// The MSR index.
        index: u32,
        /// WRMSR rather than RDMSR.
        write: bool,
    },
    /// An exit whose qualification or instruction information did not decode.
    BadQualification {
        /// Basic exit reason.
        reason: u16,
        /// What was wrong.
        error: DecodeError,
    },
    /// The exit needs a message group the vCPU's transfer mask leaves out.
    NeedsTransfer(TransferMask),
    /// Emulation touched guest-physical memory the VMM cannot see.
    GuestMemory {
        /// The address.
        gpa: u64,
    },
    /// An access to an MMIO device that could not be emulated.
    MmioEmulation {
        /// The guest-physical address.
        gpa: u64,
        /// The guest RIP of the instruction.
        rip: u64,
        /// Why (the instruction is named where it decoded).
        error: MmioError,
    },
    /// A handler queued more VMCS writes than a reply holds (a VMM bug).
    ReplyOverflow,
    /// The IDT-vectoring information names an event that cannot be re-injected into the
    /// guest state the exit reports (the message is inconsistent).
    BadVectoring {
        /// The IDT-vectoring information.
        info: u32,
    },
    /// A notify VM exit (the guest went a whole notify window without an instruction
    /// boundary) that left the guest's state unusable: it cannot run on.
    NotifyContextLost,
    /// The device that runs as a process of its own failed (its process is gone, or it
    /// refused a request or answered what is no reply).
    DeviceModel {
        /// The device.
        kind: Kind,
        /// What went wrong.
        error: LinkError,
    },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::GuestExit(code) => write!(f, "guest exit hypercall, code {code}"),
            Self::DebugExit(code) => write!(f, "debug-exit port, code {code:#x}"),
            Self::Reset => f.write_str("guest requested a reset"),
            Self::TripleFault => f.write_str("triple fault"),
            Self::HaltedForever => {
                f.write_str("powered off (HLT with interrupts disabled: nothing can wake it)")
            }
            Self::PowerOff => f.write_str("powered off (ACPI S5)"),
            Self::EntryFailure { reason, qualification } => {
                write!(f, "VM entry failed: reason {reason}, qualification {qualification:#x}")
            }
            Self::Unhandled { reason } => match ExitReason::from_raw(reason as u16) {
                Some(r) => write!(f, "unhandled exit {} ({reason:#x})", r.name()),
                None => write!(f, "unknown exit reason {reason:#x}"),
            },
            Self::UnsupportedMsr { index, write } => write!(
                f,
                "{} of MSR {index:#x}: live CPU state, needs kernel pass-through",
                if write { "WRMSR" } else { "RDMSR" }
            ),
            Self::BadQualification { reason, error } => {
                write!(f, "exit {reason}: undecodable exit information ({error:?})")
            }
            Self::NeedsTransfer(mask) => {
                write!(f, "exit needs transfer-mask groups {:#x}", mask.bits())
            }
            Self::GuestMemory { gpa } => write!(f, "emulation touched unmapped memory {gpa:#x}"),
            Self::MmioEmulation { gpa, rip, error } => {
                write!(f, "MMIO access at {gpa:#x} from RIP {rip:#x}: {error}")
            }
            Self::ReplyOverflow => f.write_str("reply batch overflow"),
            Self::BadVectoring { info } => {
                write!(f, "IDT-vectoring information {info:#x} cannot be re-injected")
            }
            Self::NotifyContextLost => {
                f.write_str("notify VM exit: the guest went without an instruction boundary and its state is lost")
            }
            Self::DeviceModel { kind, error } => {
                write!(f, "device {} (out of process): {error}", kind.name())
            }
        }
    }
}

/// Whether the vCPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Running (or about to resume).
    Running,
    /// Stopped in HLT until an interrupt is pending; see [`Vm::wake`].
    Halted,
    /// Stopped for good.
    Stopped(StopReason),
}

/// Exit and delivery counters.
#[derive(Clone, Debug)]
pub struct Stats {
    exits: [u64; REASONS],
    /// Every exit, whatever its reason: kept as it happens, so reading it costs nothing.
    total: u64,
    /// Interrupts injected from the PIC.
    pub interrupts_injected: u64,
    /// Exceptions injected by emulation (#GP, #UD, reflected exceptions).
    pub exceptions_injected: u64,
    /// Hypercalls served.
    pub hypercalls: u64,
    /// NMIs injected (at the guest's request).
    pub nmis_injected: u64,
    /// INIT and STARTUP IPIs to a vCPU not waiting for them.
    pub ignored_start_signals: u64,
}

impl Stats {
    /// Exits with basic reason `reason`.
    pub fn exits(&self, reason: ExitReason) -> u64 {
        self.exits_raw(reason as u64)
    }

    /// Exits with the basic reason numbered `reason` (0 for a number out of range).
    pub fn exits_raw(&self, reason: u64) -> u64 {
        usize::try_from(reason).ok().and_then(|r| self.exits.get(r)).copied().unwrap_or(0)
    }

    /// All exits.
    pub const fn total_exits(&self) -> u64 {
        self.total
    }

    /// The exits by reason, for a log line: `Name count` for every reason seen, most
    /// frequent first.
    pub fn by_reason(&self) -> ExitCounts<'_> {
        ExitCounts(self)
    }
}

// Every reason fits the display's list.
const _: () = assert!(ExitReason::ALL.len() <= REASONS);

/// [`Stats::by_reason`]'s display.
pub struct ExitCounts<'a>(&'a Stats);

impl core::fmt::Display for ExitCounts<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut seen: heapless::Vec<(u64, ExitReason), REASONS> =
            ExitReason::ALL.iter().map(|&r| (self.0.exits(r), r)).filter(|(n, _)| *n > 0).collect();
        seen.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (i, (n, r)) in seen.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {n}", r.name())?;
        }
        Ok(())
    }
}

/// Test results the guest reported through the REPORT hypercall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TestReport {
    /// Reports with status 0.
    pub passed: u64,
    /// Reports with another status.
    pub failed: u64,
    /// The first failure: (test number, status).
    pub first_failure: Option<(u64, u64)>,
}

/// How a VM starts.
#[derive(Clone, Copy, Debug)]
pub struct VmConfig {
    /// CPUID policy knobs.
    pub cpuid: CpuidConfig,
    /// CR0 as the guest first sees it (reset value: CD | NW | ET).
    pub cr0: u64,
    /// CR4 as the guest first sees it.
    pub cr4: u64,
    /// CR0 bits the real register must keep set (NE; PE and PG without unrestricted guest).
    pub cr0_forced_on: u64,
    /// CR4 bits the real register must keep set (VMXE).
    pub cr4_forced_on: u64,
    /// Guest IA32_EFER at start.
    pub efer: u64,
    /// VM-entry controls at start, if the VMM knows them.
    pub entry_controls: Option<u32>,
    /// The VM's devices (the manifest's list, checked).
    pub devices: DeviceSet,
    /// Host Unix time for the RTC.
    pub unix_time: i64,
    /// The host's TSC rate and what of the preemption timer and TSC offsetting the kernel
    /// lets this VMM use (the vCPU state page's, after `VCpuConfigure`); with a rate,
    /// guest time passes with the TSC and CPUID offers the rate. All zero: no clock.
    pub clock: Clock,
    /// The UART runs as a process of its own, reached through this link (`None`: the
    /// model inside the VMM).
    pub uart_model: Option<Link>,
    /// How many vCPUs (1..=`MAX_VCPUS`): vCPU 0 starts as configured, the others wait for
    /// INIT and STARTUP from it, in real mode.
    pub vcpus: u8,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            cpuid: CpuidConfig::default(),
            cr0: 0x6000_0010,
            cr4: 0,
            cr0_forced_on: CR0_NE,
            cr4_forced_on: CR4_VMXE,
            efer: 0,
            entry_controls: None,
            devices: DeviceSet::STANDARD,
            unix_time: 0,
            clock: Clock::default(),
            uart_model: None,
            vcpus: 1,
        }
    }
}

/// One virtual machine: its devices, memory and vCPUs.
pub struct Vm<M, S> {
    platform: Platform<S>,
    /// Where the LAPIC's xAPIC page is mapped on the MMIO bus ([`NO_PAGE`]: nowhere,
    /// outside xAPIC mode or without an APIC): one comparison on every MMIO exit.
    apic_page: u64,
    ports: Bus<PortKey, PORT_SLOTS>,
    mmio: Bus<MmioKey, MMIO_SLOTS>,
    /// The instructions the MMIO emulator decoded last, by their bytes.
    mmio_decoded: DecodeCache,
    /// The instructions of the last MMIO exits, by where they are.
    mmio_sites: SiteCache,
    /// For the VMM to log ([`Vm::take_notice`]).
    notice: Option<Notice>,
    /// Whether an access to unbacked guest-physical memory was reported already.
    unclaimed_reported: bool,
    memory: M,
    cpuid: CpuidTable,
    msr: MsrPolicy,
    /// The served vCPU's own state.
    cpu: VcpuState,
    /// Every vCPU's own state by index (empty with one vCPU); the served vCPU's entry is
    /// stale ([`vcpus`]).
    parked: heapless::Vec<VcpuState, { MAX_VCPUS as usize }>,
    state: RunState,
    stats: Stats,
    tests: TestReport,
    /// Guest time: the PIT's clock and the served vCPU's preemption timer.
    time: GuestTime,
}

/// The optional groups the dispatcher wants on every exit that is not CPUID or port I/O:
/// EFER (long-mode state for CR0 and EFER emulation) and the controls (to flip "IA-32e
/// mode guest").
pub const TRANSFER_MASK: TransferMask = TransferMask::EFER_PAT.union(TransferMask::CONTROLS);

/// An event the guest survives that the VMM reports once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The first access to guest-physical memory that neither RAM nor a device backs: it
    /// read all ones or was dropped, as on an undriven bus (later ones go unreported).
    UnclaimedMmio {
        /// The guest-physical address.
        gpa: u64,
        /// The guest RIP of the access.
        rip: u64,
    },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnclaimedMmio { gpa, rip } => write!(
                f,
                "access to unbacked guest-physical {gpa:#x} from RIP {rip:#x}: reads as all ones, writes dropped (reported once)"
            ),
        }
    }
}

/// A handler's verdict: done (the reply says what to do) or stop.
type Handled = Result<(), StopReason>;

impl<M: GuestMemory, S: SerialSink> Vm<M, S> {
    /// The transfer mask the dispatcher wants on every exit ([`TRANSFER_MASK`]).
    pub const TRANSFER_MASK: TransferMask = TRANSFER_MASK;

    /// A VM with the devices of `config`, CPUID derived from `host_cpuid(leaf, subleaf)`,
    /// guest RAM `memory` and a console writing into `sink`. Its buses are built here,
    /// once. Fails only if two devices collide (a checked set never does).
    pub fn new(
        config: &VmConfig,
        host_cpuid: impl FnMut(u32, u32) -> CpuidRegs,
        memory: M,
        sink: S,
    ) -> Result<Self, BusError> {
        let cpuid_config = CpuidConfig { tsc_hz: config.clock.tsc_hz, ..config.cpuid };
        let cpuid = CpuidTable::from_host(&cpuid_config, host_cpuid);
        let devices = config.devices;
        let lapic = lapic_config(&cpuid, &config.clock);
        let mut platform =
            Platform::new(devices, sink, config.unix_time, lapic).with_vcpus(config.vcpus);
        let time = GuestTime::new(&config.clock);
        let remote = config.uart_model.map(|link| RemoteDevice::new(Kind::Uart16550, link));
        if let Some(r) = remote {
            platform = platform.with_remote(r);
        }
        let mut mmio = Bus::new();
        let apic_page = platform.lapic.mmio_base().filter(|_| cpuid.has_apic());
        if let Some(base) = apic_page {
            mmio.insert(base, lapic::MMIO_SIZE, MmioKey::Lapic)?;
            if let Some(base) = devices.ioapic() {
                mmio.insert(base, ioapic::MMIO_SIZE, MmioKey::Ioapic)?;
            }
        }
        Ok(Self {
            apic_page: apic_page.unwrap_or(NO_PAGE),
            platform,
            ports: Platform::<S>::port_bus(&devices, remote.map(|r| r.kind()))?,
            mmio,
            mmio_decoded: DecodeCache::default(),
            mmio_sites: SiteCache::default(),
            notice: None,
            unclaimed_reported: false,
            memory,
            msr: MsrPolicy::new(&cpuid),
            cpu: VcpuState::new(&cpuid, config, time.fresh_timer()),
            parked: vcpus::parked(&cpuid, config, &time),
            cpuid,
            state: RunState::Running,
            stats: Stats {
                exits: [0; REASONS],
                total: 0,
                interrupts_injected: 0,
                exceptions_injected: 0,
                hypercalls: 0,
                nmis_injected: 0,
                ignored_start_signals: 0,
            },
            tests: TestReport::default(),
            time,
        })
    }

    /// VMCS writes that program the CR0/CR4 policy, for the vCPU's first entry.
    pub fn setup_reply(&self) -> ExitReply {
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        self.cpu.cr.setup_writes(&mut r);
        r.finish()
    }

    /// The vCPU's state.
    pub fn run_state(&self) -> RunState {
        self.state
    }

    /// Exit counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What the guest reported through the REPORT hypercall.
    pub fn test_report(&self) -> TestReport {
        self.tests
    }

    /// The devices.
    pub fn platform(&self) -> &Platform<S> {
        &self.platform
    }

    /// The devices, mutably (e.g. to drain the console sink).
    pub fn platform_mut(&mut self) -> &mut Platform<S> {
        &mut self.platform
    }

    /// Map `[base, base + len)` of guest-physical space to the MMIO device `key`. The
    /// range must not be RAM in the guest's EPT, or the guest never exits on it.
    pub fn insert_mmio(&mut self, base: u64, len: u64, key: MmioKey) -> Result<(), BusError> {
        self.mmio.insert(base, len, key)
    }

    /// The MMIO bus (its unclaimed-access counters).
    pub fn mmio_bus(&self) -> &Bus<MmioKey, MMIO_SLOTS> {
        &self.mmio
    }

    /// The port bus (its unclaimed-access counters).
    pub fn port_bus(&self) -> &Bus<PortKey, PORT_SLOTS> {
        &self.ports
    }

    /// Guest RAM.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Guest RAM, mutably (for the loader).
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.memory
    }

    /// The guest's CPUID.
    pub fn cpuid(&self) -> &CpuidTable {
        &self.cpuid
    }

    /// Let `ticks` PIT clocks (1.193182 MHz) pass, for a VM without a clock (one with a
    /// clock counts time from the exits' TSC stamps).
    pub fn advance_time(&mut self, ticks: u64) {
        self.platform.advance_time(ticks);
    }

    /// Guest time: the clock, the preemption timer.
    pub fn time(&self) -> &GuestTime {
        &self.time
    }

    /// The vCPU halted at `msg` with nothing pending: jump to the next timer edge (with a
    /// clock, the guest's TSC jumps too), adding the VMCS writes that takes to `out`.
    /// [`Vm::wake`] then has the interrupt to deliver.
    pub fn skip_to_next_edge(&mut self, msg: &ExitMessage, out: &mut ExitReply) {
        let mut reply = ReplyBuilder::extend(out);
        self.time.skip_to_next_edge(msg, &mut self.platform, &mut reply);
        if reply.overflowed() {
            self.state = RunState::Stopped(StopReason::ReplyOverflow);
            *out = stop_reply();
        }
    }

    /// Offer a console byte from the host; false if the UART cannot take it yet.
    pub fn console_input(&mut self, byte: u8) -> bool {
        let taken = self.platform.console_input(byte);
        self.check_remote();
        taken
    }

    /// The device out of process changed its line without an access: take the level
    /// into the interrupt controllers before the next entry.
    pub fn device_line_changed(&mut self) {
        self.platform.poll_remote();
        self.check_remote();
    }

    /// The guest went idle: pass on the console output held back.
    pub fn flush_console(&mut self) {
        self.platform.flush_console();
        self.check_remote();
    }

    /// Between exits: a failed device out of process stops the VM (its next exit gets
    /// the stopping reply).
    fn check_remote(&mut self) {
        if let Some((kind, error)) = self.platform.take_remote_failure() {
            self.state = RunState::Stopped(StopReason::DeviceModel { kind, error });
        }
    }

    /// For a halted vCPU with an interrupt now pending: the reply that resumes it with the
    /// interrupt injected. `None` while there is nothing to deliver or the vCPU is not
    /// halted. (HLT only halts with RFLAGS.IF set and RIP already past the HLT, so the
    /// injection is always allowed.)
    pub fn wake(&mut self) -> Option<ExitReply> {
        if self.state != RunState::Halted {
            return None;
        }
        let vector = self.platform.acknowledge()?;
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        r.inject(EventInjection::interrupt(vector), 0, 0);
        self.stats.interrupts_injected = self.stats.interrupts_injected.saturating_add(1);
        self.state = RunState::Running;
        Some(r.finish())
    }

    /// Handle one exit and produce the reply.
    pub fn handle(&mut self, msg: &ExitMessage) -> ExitReply {
        let mut reply = ExitReply::new();
        self.handle_into(msg, &mut reply);
        reply
    }

    /// Handle one exit, building the reply in `out` (the reply area of the vCPU state
    /// page, on the exit path).
    pub fn handle_into(&mut self, msg: &ExitMessage, out: &mut ExitReply) {
        if let Some(slot) = self.stats.exits.get_mut(usize::from(msg.reason as u16)) {
            *slot = slot.saturating_add(1);
        }
        self.stats.total = self.stats.total.saturating_add(1);
        if let RunState::Stopped(_) = self.state {
            *out = stop_reply();
            return;
        }
        self.state = RunState::Running;
        // State the message carries is fresher than anything remembered.
        if msg.transfer.contains(TransferMask::EFER_PAT) {
            self.cpu.long_mode.efer = msg.efer;
        }
        if msg.transfer.contains(TransferMask::CONTROLS) {
            self.cpu.long_mode.entry_controls = Some(msg.controls.entry);
        }
        let mut reply = ReplyBuilder::within(out);
        // One comparison unless the exit is past the next timer edge (or anchors the
        // clock): the PIT is brought up to date only when the guest could tell.
        if self.time.due(msg.exit_tsc) {
            self.time.tick(msg, &mut self.platform, &mut reply);
        }
        let handled = self.dispatch(msg, &mut reply);
        let handled = handled.and_then(|()| {
            if reply.overflowed() {
                Err(StopReason::ReplyOverflow)
            } else {
                Ok(())
            }
        });
        if let Err(reason) = handled.and_then(|()| self.deliver_interrupts(msg, &mut reply)) {
            // Nothing half-emulated reaches the guest: the reply becomes a bare stop.
            self.state = RunState::Stopped(reason);
            *out = stop_reply();
        }
    }

    fn dispatch(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let basic = msg.reason as u16;
        if msg.is_entry_failure() {
            return Err(StopReason::EntryFailure {
                reason: basic,
                qualification: msg.qualification,
            });
        }
        let Some(reason) = msg.basic_reason() else {
            return Err(StopReason::Unhandled { reason: msg.reason });
        };
        match reason {
            ExitReason::Cpuid => self.cpuid_exit(msg, reply),
            ExitReason::IoInstruction => self.io_exit(msg, reply),
            ExitReason::Rdmsr => self.rdmsr_exit(msg, reply),
            ExitReason::Wrmsr => self.wrmsr_exit(msg, reply),
            ExitReason::CrAccess => self.cr_exit(msg, reply),
            ExitReason::Hlt => self.hlt_exit(msg, reply),
            ExitReason::Vmcall => self.vmcall_exit(msg, reply),
            ExitReason::ExceptionOrNmi => self.exception_exit(msg, reply),
            ExitReason::Rdtsc => self.rdtsc_exit(msg, reply),
            ExitReason::DrAccess => self.dr_exit(msg, reply),
            ExitReason::TripleFault => Err(StopReason::TripleFault),
            // The kernel's notify window passed without an instruction boundary: the guest
            // runs on unless the CPU says its state is lost (qualification bit 0).
            ExitReason::InstructionTimeout if msg.qualification & 1 != 0 => {
                Err(StopReason::NotifyContextLost)
            }
            ExitReason::InstructionTimeout => Ok(()),
            ExitReason::EptViolation | ExitReason::EptMisconfig => self.mmio_exit(msg, reply),
            // Delivery happens below; these exits only give the VMM a chance to run it.
            ExitReason::InterruptWindow
            | ExitReason::ExternalInterrupt
            | ExitReason::PreemptionTimer
            | ExitReason::NmiWindow => Ok(()),
            // Harmless to skip under EPT: nothing for the VMM to do.
            ExitReason::Pause | ExitReason::Invd | ExitReason::Wbinvd | ExitReason::Invlpg => {
                reply.flag(ReplyFlags::ADVANCE_RIP);
                Ok(())
            }
            // Offered MONITOR/MWAIT: MWAIT may return at any time, so returning at once is
            // correct and never sleeps the host CPU.
            ExitReason::Monitor | ExitReason::Mwait if self.cpuid.has_monitor() => {
                reply.flag(ReplyFlags::ADVANCE_RIP);
                Ok(())
            }
            // Features CPUID hides: #UD, as on a CPU without them.
            ExitReason::Vmclear
            | ExitReason::Vmlaunch
            | ExitReason::Vmptrld
            | ExitReason::Vmptrst
            | ExitReason::Vmread
            | ExitReason::Vmresume
            | ExitReason::Vmwrite
            | ExitReason::Vmxoff
            | ExitReason::Vmxon
            | ExitReason::Invept
            | ExitReason::Invvpid
            | ExitReason::Vmfunc
            | ExitReason::Getsec
            | ExitReason::Xsetbv
            | ExitReason::Monitor
            | ExitReason::Mwait => {
                self.inject_exception(reply, UD, 0);
                Ok(())
            }
            // No performance counters are offered.
            ExitReason::Rdpmc => {
                self.inject_exception(reply, GP, 0);
                Ok(())
            }
            _ => Err(StopReason::Unhandled { reason: msg.reason }),
        }
    }

    fn inject_exception(&mut self, reply: &mut ReplyBuilder, vector: u8, error_code: u32) {
        reply.inject(EventInjection::exception(vector), error_code, 0);
        self.stats.exceptions_injected = self.stats.exceptions_injected.saturating_add(1);
    }

    /// A #PF the guest's own access raised while the VMM emulated it (CR2 names it).
    fn inject_page_fault(&mut self, reply: &mut ReplyBuilder, fault: PageFault) {
        reply.inject_page_fault(fault);
        self.stats.exceptions_injected = self.stats.exceptions_injected.saturating_add(1);
    }

    fn cpuid_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let reg = |r: u8| msg.gprs.get(r).unwrap_or(0) as u32;
        let out = self.cpuid.lookup(reg(Gprs::RAX), reg(Gprs::RCX));
        // CPUID writes 32-bit registers, which zero-extends them.
        reply.set_gpr(Gprs::RAX, u64::from(out.eax));
        reply.set_gpr(Gprs::RBX, u64::from(out.ebx));
        reply.set_gpr(Gprs::RCX, u64::from(out.ecx));
        reply.set_gpr(Gprs::RDX, u64::from(out.edx));
        reply.flag(ReplyFlags::ADVANCE_RIP);
        Ok(())
    }

    /// The guest's long-mode EFER as best known.
    fn efer(&self) -> u64 {
        self.cpu.long_mode.efer
    }

    fn io_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let q = IoQualification::decode(msg.qualification)
            .map_err(|error| StopReason::BadQualification { reason: msg.reason as u16, error })?;
        // The devices that show time see the exit's.
        let timed =
            matches!(q.port, 0x40..=0x43 | 0x61 | 0x70..=0x71 | acpi_pm::BASE_PORT..=ACPI_PM_LAST);
        if timed {
            self.time.catch_up(msg, &mut self.platform);
        }
        let done = if q.string {
            let mode = GuestMode {
                paging: PagingMode::from_regs(msg.cr0, msg.cr4, self.efer()),
                cpl: msg.cpl,
            };
            match self.ports.resolve(u64::from(q.port), usize::from(q.size)) {
                Some((PortKey::Remote, offset)) => {
                    self.remote_string_io(msg, q, offset, mode, reply)
                }
                _ => io::emulate(
                    msg,
                    q,
                    &mut self.ports,
                    &mut self.platform,
                    &mut self.memory,
                    mode,
                    reply,
                ),
            }
        } else {
            // The common case: no guest memory, so no paging mode to work out.
            io::emulate_port(msg, q, &mut self.ports, &mut self.platform, reply);
            Ok(true)
        };
        let done = match done {
            Ok(done) => done,
            // The guest's own fault: RIP stays on the instruction.
            Err(IoFault::PageFault(pf)) => {
                self.inject_page_fault(reply, pf);
                false
            }
            Err(IoFault::Decode(error)) => {
                return Err(StopReason::BadQualification { reason: msg.reason as u16, error })
            }
            Err(IoFault::Memory(m)) => return Err(StopReason::GuestMemory { gpa: m.gpa }),
        };
        if done {
            reply.flag(ReplyFlags::ADVANCE_RIP);
        }
        if timed {
            // Channel 0 may have been programmed: a new deadline, a new timer period.
            self.time.retime(msg, &self.platform, reply);
        }
        // Port writes are how a guest asks to be stopped (to three devices, asked only
        // when one was written).
        if !self.platform.take_stop_asked() {
            return Ok(());
        }
        if let Some((kind, error)) = self.platform.take_remote_failure() {
            return Err(StopReason::DeviceModel { kind, error });
        }
        if self.platform.i8042.take_reset_request() {
            return Err(StopReason::Reset);
        }
        if let Some(code) = self.platform.debug_exit.take_exit() {
            return Err(StopReason::DebugExit(code));
        }
        if self.platform.acpi_pm.take_power_off() {
            return Err(StopReason::PowerOff);
        }
        Ok(())
    }

    /// String I/O to the device out of process: a batch per call, through the page it
    /// shares. Out of line, so the port-I/O handler stays as small as it was.
    #[inline(never)]
    fn remote_string_io(
        &mut self,
        msg: &ExitMessage,
        q: IoQualification,
        offset: u64,
        mode: GuestMode,
        reply: &mut ReplyBuilder,
    ) -> Result<bool, IoFault> {
        let Some(device) = self.platform.remote_mut() else { return Ok(false) };
        let r = io::emulate_batched(msg, q, (device, offset), &mut self.memory, mode, reply);
        self.platform.sync_irqs();
        if self.platform.remote().is_some_and(RemoteDevice::failed) {
            self.platform.stop_asked = true;
        }
        r
    }

    /// An EPT exit is an MMIO access: the instruction is decoded and performed on the
    /// device the bus finds at the address (none: reads all ones, writes dropped, and the
    /// first such access reported); an instruction it cannot emulate stops the VM.
    fn mmio_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let gpa = msg.guest_physical;
        if !msg.transfer.contains(TransferMask::GUEST_PHYSICAL) {
            return Err(StopReason::NeedsTransfer(TransferMask::GUEST_PHYSICAL));
        }
        // The APIC's time shows in the current count and where a write starts a count
        // (its expiries are current already: they are part of the exit's deadline).
        let apic = gpa & !(lapic::MMIO_SIZE - 1) == self.apic_page;
        let write = msg.qualification & EptViolation::WRITE != 0;
        if apic && (write || gpa & 0xff0 == lapic::CURRENT_COUNT) {
            self.time.sync_lapic(msg, &mut self.platform);
        }
        // Refreshed from the message when it carries EFER (`handle_into`).
        let efer = mmio::effective_efer(self.cpu.long_mode.efer, msg.cr0);
        let ctx =
            MmioContext { efer, decoded: &mut self.mmio_decoded, sites: &mut self.mmio_sites };
        match mmio::emulate(
            msg,
            ctx,
            gpa,
            &mut self.memory,
            &mut self.mmio,
            &mut self.platform,
            reply,
        ) {
            Ok(()) => {}
            // A string instruction's RAM side faulted: the guest's #PF, RIP on it.
            Err(MmioError::PageFault(pf)) => {
                self.inject_page_fault(reply, pf);
            }
            Err(MmioError::NeedsTransfer(mask)) => return Err(StopReason::NeedsTransfer(mask)),
            Err(error) => return Err(StopReason::MmioEmulation { gpa, rip: msg.rip, error }),
        }
        if apic && write {
            self.apic_written(msg, reply);
        }
        // An address no device claims reads as all ones and drops writes, as an undriven
        // bus does; the first such access is reported (`take_notice`).
        if !self.unclaimed_reported
            && (self.mmio.unclaimed_reads() | self.mmio.unclaimed_writes()) != 0
        {
            self.unclaimed_reported = true;
            self.notice = Some(Notice::UnclaimedMmio { gpa, rip: msg.rip });
        }
        Ok(())
    }

    /// After a guest write to the APIC (by MMIO or MSR): a timer may have been programmed,
    /// an IPI sent to itself.
    fn apic_written(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) {
        self.platform.apic_written();
        self.time.retime(msg, &self.platform, reply);
        if self.platform.lapic.take_nmi() && !reply.injects() {
            reply.inject(EventInjection::nmi(), 0, 0);
            self.stats.nmis_injected = self.stats.nmis_injected.saturating_add(1);
        }
    }

    /// An RDMSR or WRMSR of the local APIC's (IA32_APIC_BASE, IA32_TSC_DEADLINE, the
    /// x2APIC registers): `None` when `index` is not the APIC's or the guest has none.
    /// A refused access is the #GP the architecture gives.
    fn apic_msr(
        &mut self,
        msg: &ExitMessage,
        index: u32,
        write: Option<u64>,
        reply: &mut ReplyBuilder,
    ) -> Option<u64> {
        if !self.cpuid.has_apic() || !Lapic::handles_msr(index) {
            return None;
        }
        self.time.sync_lapic(msg, &mut self.platform);
        let result = match write {
            None => self.platform.lapic.msr_read(index),
            Some(value) => self.platform.lapic.msr_write(index, value).map(|()| 0),
        };
        match result {
            Ok(value) => {
                if write.is_some() {
                    self.apic_moved();
                    self.apic_written(msg, reply);
                }
                reply.flag(ReplyFlags::ADVANCE_RIP);
                Some(value)
            }
            Err(_) => {
                self.inject_exception(reply, GP, 0);
                Some(0)
            }
        }
    }

    /// IA32_APIC_BASE may have moved the xAPIC page or switched modes: the MMIO bus
    /// follows (the page is mapped only in xAPIC mode).
    fn apic_moved(&mut self) {
        let now = self.platform.lapic.mmio_base().unwrap_or(NO_PAGE);
        if now == self.apic_page {
            return;
        }
        if self.apic_page != NO_PAGE {
            self.mmio.remove(self.apic_page);
            self.apic_page = NO_PAGE;
        }
        // A page over another device's range stays unmapped (the guest reaches the other
        // device, as on a PC where the APIC would shadow it: a guest's error).
        if now != NO_PAGE && self.mmio.insert(now, lapic::MMIO_SIZE, MmioKey::Lapic).is_ok() {
            self.apic_page = now;
        }
    }

    /// What the VMM should log about the last exit, once: an event the guest survives but
    /// its owner should hear of.
    pub fn take_notice(&mut self) -> Option<Notice> {
        self.notice.take()
    }

    fn rdmsr_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let index = msg.gprs.get(Gprs::RCX).unwrap_or(0) as u32;
        if let Some(value) = self.apic_msr(msg, index, None, reply) {
            if reply.has(ReplyFlags::ADVANCE_RIP) {
                reply.set_gpr(Gprs::RAX, value & 0xffff_ffff);
                reply.set_gpr(Gprs::RDX, value >> 32);
            }
            return Ok(());
        }
        let value = match self.msr.read(index) {
            MsrRead::Value(v) => v,
            MsrRead::GuestState(GuestStateMsr::Efer) => self.efer(),
            MsrRead::GuestState(m) => {
                m.read(msg).ok_or(StopReason::NeedsTransfer(m.transfer_group()))?
            }
            MsrRead::Gp => {
                self.inject_exception(reply, GP, 0);
                return Ok(());
            }
            MsrRead::Unsupported => return Err(StopReason::UnsupportedMsr { index, write: false }),
        };
        reply.set_gpr(Gprs::RAX, value & 0xffff_ffff);
        reply.set_gpr(Gprs::RDX, value >> 32);
        reply.flag(ReplyFlags::ADVANCE_RIP);
        Ok(())
    }

    fn wrmsr_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let reg = |r: u8| msg.gprs.get(r).unwrap_or(0);
        let index = reg(Gprs::RCX) as u32;
        let value = (reg(Gprs::RDX) << 32) | (reg(Gprs::RAX) & 0xffff_ffff);
        if self.apic_msr(msg, index, Some(value), reply).is_some() {
            return Ok(());
        }
        let ctx = MsrContext { cr0: self.cpu.cr.guest_cr0(msg.cr0), efer: self.efer() };
        match self.msr.write(index, value, &ctx) {
            MsrWrite::Done => {}
            MsrWrite::GuestState(m, v) => {
                reply.write(m.field(), v);
                if m == GuestStateMsr::Efer {
                    self.cpu.long_mode.efer = v;
                }
            }
            MsrWrite::Gp => {
                self.inject_exception(reply, GP, 0);
                return Ok(());
            }
            MsrWrite::Unsupported => return Err(StopReason::UnsupportedMsr { index, write: true }),
        }
        reply.flag(ReplyFlags::ADVANCE_RIP);
        Ok(())
    }

    fn cr_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let access = CrAccess::decode(msg.qualification)
            .map_err(|error| StopReason::BadQualification { reason: msg.reason as u16, error })?;
        let op64 = self.efer() & EFER_LMA != 0 && cs_long(msg).unwrap_or(true);
        // CR8 is the APIC's TPR (bits 7:4).
        self.cpu.cr.tpr = self.platform.lapic.cr8() as u8;
        let mut env = CrEnv { msg, op64, long_mode: &mut self.cpu.long_mode, mem: &self.memory };
        let outcome = self.cpu.cr.emulate(access, &mut env, reply);
        if let CrAccess::MovToCr { cr: 8, .. } = access {
            self.platform.lapic.set_cr8(self.cpu.cr.tpr.into());
        }
        match outcome {
            CrOutcome::Done => {
                reply.flag(ReplyFlags::ADVANCE_RIP);
                Ok(())
            }
            CrOutcome::Gp => {
                self.inject_exception(reply, GP, 0);
                Ok(())
            }
            CrOutcome::Ud => {
                self.inject_exception(reply, UD, 0);
                Ok(())
            }
            CrOutcome::NeedsTransfer(mask) => Err(StopReason::NeedsTransfer(mask)),
            CrOutcome::Memory(m) => Err(StopReason::GuestMemory { gpa: m.gpa }),
        }
    }

    fn hlt_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        if msg.rflags & RFLAGS_IF == 0 {
            return Err(StopReason::HaltedForever);
        }
        reply.flag(ReplyFlags::ADVANCE_RIP);
        // With an interrupt pending the HLT completes at once: delivery injects it below.
        if !self.platform.interrupt_pending() {
            reply.flag(ReplyFlags::STOP_VCPU);
            self.state = RunState::Halted;
        }
        Ok(())
    }

    /// RDTSC while the VMM emulates the TSC: the next value, one more each time.
    fn rdtsc_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let tsc = self.cpu.tsc.ok_or(StopReason::Unhandled { reason: msg.reason })?;
        self.cpu.tsc = Some(tsc.wrapping_add(1));
        reply.set_gpr(Gprs::RAX, tsc & 0xffff_ffff);
        reply.set_gpr(Gprs::RDX, tsc >> 32);
        reply.flag(ReplyFlags::ADVANCE_RIP);
        Ok(())
    }

    /// MOV to or from a debug register: the VMM's copy (docs/abi.md: debug registers are
    /// never the guest's). Qualification: DR number in bits 2:0, direction in bit 4 (1 =
    /// read), the GPR in bits 11:8.
    fn dr_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let q = msg.qualification;
        let (n, read, gpr) = ((q & 7) as u8, q & 1 << 4 != 0, (q >> 8 & 0xf) as u8);
        let long = self.efer() & EFER_LMA != 0;
        if read {
            let value = self.cpu.dr.read(n);
            reply.set_gpr(gpr, if long { value } else { value & u64::from(u32::MAX) });
        } else {
            let value = msg.gprs.get(gpr).unwrap_or(0);
            if self.cpu.dr.write(n, value, long) == DrAccess::Fault {
                self.inject_exception(reply, GP, 0);
                return Ok(());
            }
        }
        reply.flag(ReplyFlags::ADVANCE_RIP);
        Ok(())
    }

    fn vmcall_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        reply.flag(ReplyFlags::ADVANCE_RIP);
        // The hypercall ABI: only guest ring 0 may call; any other ring gets
        // STATUS_DENIED in RAX and nothing happens (docs/abi.md).
        if msg.cpl != 0 {
            reply.set_gpr(Gprs::RAX, hypercall::STATUS_DENIED);
            return Ok(());
        }
        self.stats.hypercalls = self.stats.hypercalls.saturating_add(1);
        let status = match Hypercall::decode(&msg.gprs) {
            Ok(Hypercall::PutChar(byte)) => {
                self.platform.console_byte(byte);
                if let Some((kind, error)) = self.platform.take_remote_failure() {
                    return Err(StopReason::DeviceModel { kind, error });
                }
                hypercall::STATUS_OK
            }
            Ok(Hypercall::Report { test, status }) => {
                if status == 0 {
                    self.tests.passed = self.tests.passed.saturating_add(1);
                } else {
                    self.tests.failed = self.tests.failed.saturating_add(1);
                    self.tests.first_failure.get_or_insert((test, status));
                }
                hypercall::STATUS_OK
            }
            Ok(Hypercall::Exit(code)) => return Err(StopReason::GuestExit(code)),
            Ok(call) => self.test_control(call, msg, reply)?,
            Err(hypercall::DecodeError::Unknown(_)) => hypercall::STATUS_UNKNOWN,
            Err(hypercall::DecodeError::Invalid) => hypercall::STATUS_INVALID,
        };
        reply.set_gpr(Gprs::RAX, status);
        Ok(())
    }

    /// The hypercalls with which test guests drive VT-x controls and see what the VMM
    /// saw (functions 3-8): test tooling, served only by a VMM built with `test-modes`.
    #[cfg(any(test, feature = "test-modes"))]
    fn test_control(
        &mut self,
        call: Hypercall,
        msg: &ExitMessage,
        reply: &mut ReplyBuilder,
    ) -> Result<u64, StopReason> {
        let needs = StopReason::NeedsTransfer;
        Ok(match call {
            Hypercall::ExitCount(reason) => self.stats.exits_raw(reason),
            Hypercall::InjectNmi => {
                reply.inject(EventInjection::nmi(), 0, 0);
                self.stats.nmis_injected = self.stats.nmis_injected.saturating_add(1);
                hypercall::STATUS_OK
            }
            Hypercall::RdtscExiting(tsc) => {
                controls::rdtsc_exiting(msg, tsc.is_some(), reply).map_err(needs)?;
                self.cpu.tsc = tsc;
                hypercall::STATUS_OK
            }
            Hypercall::TscOffset(offset) => {
                controls::tsc_offset(msg, offset, reply).map_err(needs)?;
                self.time.rebase(offset);
                hypercall::STATUS_OK
            }
            Hypercall::Cr3Targets { exiting, count, values } => {
                let values = values.get(..count).unwrap_or_default();
                controls::cr3_targets(msg, exiting, values, reply).map_err(needs)?;
                hypercall::STATUS_OK
            }
            Hypercall::ExceptionBitmap { bitmap, mask, matching } => {
                controls::exception_bitmap(bitmap, mask, matching, reply);
                hypercall::STATUS_OK
            }
            // A VMM in crash-on-hypercall mode panics before it gets here (the serving
            // loop looks first); for any other the call is done.
            Hypercall::CrashVmm => hypercall::STATUS_OK,
            // Served by the caller.
            Hypercall::PutChar(_) | Hypercall::Report { .. } | Hypercall::Exit(_) => {
                hypercall::STATUS_UNKNOWN
            }
        })
    }

    /// Without `test-modes` the test hypercalls are unknown functions.
    #[cfg(not(any(test, feature = "test-modes")))]
    fn test_control(
        &mut self,
        _call: Hypercall,
        _msg: &ExitMessage,
        _reply: &mut ReplyBuilder,
    ) -> Result<u64, StopReason> {
        Ok(hypercall::STATUS_UNKNOWN)
    }

    /// An exception the exception bitmap intercepted is given back to the guest (for a
    /// #PF the kernel loads CR2 with the exit's address when it sees it reflected); NMIs
    /// belong to the host.
    fn exception_exit(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        let (info, kind) = reported_event(msg.exit_intr_info)
            .map_err(|error| StopReason::BadQualification { reason: msg.reason as u16, error })?;
        let vector = info.vector();
        match kind {
            EventType::Nmi => Ok(()),
            EventType::HardwareException if vector != 2 && vector < 32 => {
                if vector == DB {
                    self.cpu.dr.debug_exception(msg.qualification);
                }
                let event = EventInjection::exception(vector);
                reply.inject(event, msg.exit_intr_error, 0);
                self.stats.exceptions_injected = self.stats.exceptions_injected.saturating_add(1);
                Ok(())
            }
            EventType::SoftwareException if matches!(vector, 3 | 4) => {
                let event = EventInjection::new(vector, EventType::SoftwareException, false);
                reply.inject(event, 0, msg.instruction_len);
                Ok(())
            }
            // ICEBP (INT1): a #DB that leaves DR6 alone.
            EventType::PrivilegedSoftwareException if vector == DB => {
                let event = EventInjection::new(DB, EventType::PrivilegedSoftwareException, false);
                reply.inject(event, 0, msg.instruction_len);
                Ok(())
            }
            _ => Err(StopReason::Unhandled { reason: msg.reason }),
        }
    }

    /// Re-deliver an event the exit interrupted, else inject the PIC's pending vector if
    /// the guest can take it now, else ask for an interrupt window.
    fn deliver_interrupts(&mut self, msg: &ExitMessage, reply: &mut ReplyBuilder) -> Handled {
        if reply.has(ReplyFlags::STOP_VCPU) {
            return Ok(());
        }
        // Most exits cut no event short and find no request in the PIC: two tests.
        let vectoring = msg.idt_vectoring_info & EventInjection::VALID != 0;
        if !vectoring && !self.platform.interrupt_pending() {
            return Ok(());
        }
        // Retiring the instruction (ADVANCE_RIP, an emulated MMIO access's too) ends an
        // STI/MOV SS shadow.
        let shadow = msg.interruptibility & SHADOW != 0 && !reply.has(ReplyFlags::ADVANCE_RIP);
        let interruptible = msg.rflags & RFLAGS_IF != 0 && !shadow;
        if vectoring && !reply.injects() {
            if let Some(event) = vectoring_event(msg, interruptible)? {
                reply.inject(event, msg.idt_vectoring_error, msg.instruction_len);
            }
        }
        if !self.platform.interrupt_pending() {
            return Ok(());
        }
        if reply.injects() || !interruptible {
            reply.flag(ReplyFlags::REQUEST_INTERRUPT_WINDOW);
            return Ok(());
        }
        let Some(vector) = self.platform.acknowledge() else { return Ok(()) };
        reply.inject(EventInjection::interrupt(vector), 0, 0);
        self.stats.interrupts_injected = self.stats.interrupts_injected.saturating_add(1);
        if self.platform.interrupt_pending() {
            reply.flag(ReplyFlags::REQUEST_INTERRUPT_WINDOW);
        }
        Ok(())
    }
}

/// The event whose delivery the exit interrupted, checked against the rules VM entry
/// applies to injection; an event that breaks them means the message is inconsistent.
fn vectoring_event(
    msg: &ExitMessage,
    interruptible: bool,
) -> Result<Option<EventInjection>, StopReason> {
    let raw = msg.idt_vectoring_info;
    let bad = StopReason::BadVectoring { info: raw };
    let (info, kind) = match reported_event(raw) {
        Ok(event) => event,
        Err(DecodeError::NotValid) => return Ok(None),
        Err(_) => return Err(bad),
    };
    let (vector, error_code) = (info.vector(), info.delivers_error_code());
    // Only hardware exceptions deliver error codes (VM entry refuses anything else).
    let ok = match kind {
        EventType::ExternalInterrupt => interruptible && !error_code,
        EventType::Nmi => vector == 2 && msg.interruptibility & BLOCKING_BY_NMI == 0 && !error_code,
        EventType::HardwareException => {
            vector < 32 && vector != 2 && error_code == exception_has_error_code(vector)
        }
        EventType::SoftwareInterrupt
        | EventType::PrivilegedSoftwareException
        | EventType::SoftwareException => !error_code,
        EventType::Other => false,
    };
    if ok {
        Ok(Some(EventInjection::from_raw(raw & VECTORING_EVENT_BITS)))
    } else {
        Err(bad)
    }
}

/// The local APIC of a VM with this CPUID and clock: ID and x2APIC support as CPUID
/// says, its timer at the crystal clock CPUID reports (without a known TSC rate, a
/// nominal rate, so the model stays consistent while time does not run).
fn lapic_config(cpuid: &CpuidTable, clock: &Clock) -> LapicConfig {
    let (tsc_hz, bus_hz) = (clock.tsc_hz, cpuid.crystal_hz());
    LapicConfig {
        apic_id: cpuid.lookup(1, 0).ebx >> 24,
        bsp: true,
        x2apic: cpuid.has_x2apic(),
        phys_addr_bits: cpuid.phys_addr_bits(),
        clock: TimerClock::new(tsc_hz, bus_hz).unwrap_or(TimerClock::NOMINAL),
    }
}

/// A reply that stops the vCPU and changes nothing else.
fn stop_reply() -> ExitReply {
    let mut r = ExitReply::new();
    r.flags = ReplyFlags::STOP_VCPU;
    r
}

/// CS.L when the message carries CS.
fn cs_long(msg: &ExitMessage) -> Option<bool> {
    if !msg.transfer.intersects(TransferMask::ANY_SEGMENTS) {
        return None;
    }
    msg.segments.regs.get(SEG_CS).map(|cs| cs.access_rights & AR_L != 0)
}

#[cfg(test)]
mod tests;
mod vcpus;
