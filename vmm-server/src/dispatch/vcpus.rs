//! A VM's several vCPUs. The dispatcher's fields hold the state of the vCPU being served
//! (its control registers, long-mode state, debug registers, emulated TSC, timer; the
//! platform's `lapic`); each other vCPU's waits in `parked` (and `Platform::apics`) and
//! is swapped in when that vCPU exits ([`Vm::serve_vcpu`]), so one vCPU costs nothing.
//! vCPU 0 is the bootstrap processor; the others start when it sends them INIT and then
//! STARTUP ([`Vm::take_start`]), in real mode at the STARTUP page, as on a PC.

use super::Vm;
use crate::cpuid::CpuidTable;
use crate::cr::{CrState, LongModeState};
use crate::debug_regs::DebugRegs;
use crate::devices::lapic::StartSignal;
use crate::devices::uart16550::SerialSink;
use crate::dispatch::VmConfig;
use crate::guest_memory::GuestMemory;
use crate::guest_time::{GuestTime, VcpuTimer};
use crate::reply::ReplyBuilder;
use crate::vcpu_apics::VcpuMask;
use protocols::vmcs::Field;
use protocols::vmexit::ExitReply;
use protocols::vmm::MAX_VCPUS;

/// Where a vCPU is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// Running (or halted in its guest).
    Running,
    /// Not started: an application processor after RESET, waiting for INIT.
    WaitingForInit,
    /// INIT received: waiting for STARTUP.
    WaitingForStartup,
}

/// What of a VM is one vCPU's own, besides its local APIC.
#[derive(Clone, Debug)]
pub struct VcpuState {
    pub(super) cr: CrState,
    pub(super) long_mode: LongModeState,
    /// While RDTSC exits: the TSC value the next RDTSC returns.
    pub(super) tsc: Option<u64>,
    /// The guest's debug registers (MOV DR always exits).
    pub(super) dr: DebugRegs,
    /// Its timer, while it is not the one served (the served one's is in `GuestTime`).
    timer: VcpuTimer,
    power: Power,
}

impl VcpuState {
    /// The bootstrap processor's, as `config` starts it.
    pub(super) fn new(cpuid: &CpuidTable, config: &VmConfig, timer: VcpuTimer) -> Self {
        Self {
            cr: CrState::new(
                cpuid,
                config.cr0,
                config.cr4,
                config.cr0_forced_on,
                config.cr4_forced_on,
            ),
            long_mode: LongModeState { efer: config.efer, entry_controls: config.entry_controls },
            tsc: None,
            dr: DebugRegs::default(),
            timer,
            power: Power::Running,
        }
    }

    /// An application processor's after RESET: real mode, paging off (CD | NW | ET).
    fn application_processor(cpuid: &CpuidTable, config: &VmConfig, timer: VcpuTimer) -> Self {
        let reset = VmConfig { cr0: 0x6000_0010, cr4: 0, efer: 0, entry_controls: None, ..*config };
        Self { power: Power::WaitingForInit, ..Self::new(cpuid, &reset, timer) }
    }
}

/// The state of every vCPU of a VM of `config.vcpus` (none kept with one vCPU). Entry 0,
/// vCPU 0's, is the served one's placeholder.
pub(super) fn parked(
    cpuid: &CpuidTable,
    config: &VmConfig,
    time: &GuestTime,
) -> heapless::Vec<VcpuState, { MAX_VCPUS as usize }> {
    let mut all = heapless::Vec::new();
    if config.vcpus > 1 {
        for _ in 0..config.vcpus.min(MAX_VCPUS) {
            let _ = all.push(VcpuState::application_processor(cpuid, config, time.fresh_timer()));
        }
    }
    all
}

impl<M: GuestMemory, S: SerialSink> Vm<M, S> {
    /// How many vCPUs the VM has.
    pub fn vcpus(&self) -> usize {
        self.parked.len().max(1)
    }

    /// The vCPU being served.
    pub fn served_vcpu(&self) -> usize {
        self.platform.apics.current()
    }

    /// Serve vCPU `index` from now on (its exit is next): its state is swapped in. False
    /// for a vCPU the VM does not have, or one not started.
    pub fn serve_vcpu(&mut self, index: usize) -> bool {
        let current = self.served_vcpu();
        if index == current {
            return true;
        }
        if self.parked.get(index).is_none_or(|v| v.power != Power::Running) {
            return false;
        }
        if !self.platform.apics.switch(&mut self.platform.lapic, index) {
            return false;
        }
        self.time.swap_timer(&mut self.cpu.timer);
        if let Some(next) = self.parked.get_mut(index) {
            core::mem::swap(&mut self.cpu, next);
        }
        self.parked.swap(index, current);
        self.time.swap_timer(&mut self.cpu.timer);
        // CPUID leaf 1 tells each vCPU its own APIC ID.
        self.cpuid.set_apic_id(self.platform.lapic.apic_id() as u8);
        true
    }

    /// The vCPUs given an interrupt while not served since the last call: the VMM makes
    /// each exit (`VCpuKick`) so that the interrupt is injected.
    pub fn take_kicks(&mut self) -> VcpuMask {
        self.platform.apics.take_kicks()
    }

    /// An application processor to start now, `(vCPU, STARTUP vector)`: it received INIT
    /// and then STARTUP. An INIT or STARTUP a vCPU cannot take (a running one, a STARTUP
    /// without INIT) changes nothing, as a STARTUP outside wait-for-SIPI does on a PC.
    pub fn take_start(&mut self) -> Option<(usize, u8)> {
        while let Some((index, signal)) = self.platform.apics.take_start_signal() {
            let Some(v) = self.parked.get_mut(index) else { continue };
            match (signal, v.power) {
                (StartSignal::Init, Power::WaitingForInit) => v.power = Power::WaitingForStartup,
                (StartSignal::Startup(vector), Power::WaitingForStartup) => {
                    v.power = Power::Running;
                    return Some((index, vector));
                }
                _ => {
                    self.stats.ignored_start_signals =
                        self.stats.ignored_start_signals.saturating_add(1);
                }
            }
        }
        None
    }

    /// The batch `VCpuStart` applies before vCPU `index` first enters its guest: its
    /// control-register policy, and CS:IP = `vector << 8`:0 (a STARTUP's real-mode
    /// entry).
    pub fn start_batch(&self, index: usize, vector: u8) -> Option<ExitReply> {
        let v = self.parked.get(index)?;
        let mut area = ExitReply::new();
        let mut r = ReplyBuilder::within(&mut area);
        v.cr.setup_writes(&mut r);
        let page = u64::from(vector);
        r.write(Field::GuestCsSelector, page << 8);
        r.write(Field::GuestCsBase, page << 12);
        r.write(Field::GuestRip, 0);
        Some(r.finish())
    }
}
