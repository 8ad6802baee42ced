//! The PC platform: which device sits at which port and which IRQ line it drives.
//!
//! [`Platform`] owns the device models by value; [`Platform::port_bus`] builds the port
//! map that routes to them by [`PortKey`]; after every access [`Platform`] re-evaluates
//! the device interrupt lines into the PIC, so "which vector is pending" is always current
//! when the dispatcher asks. Time enters only through [`Platform::advance_time`], as PIT
//! input clocks; the RTC reads the same time (the Unix time at start plus the PIT clocks
//! since), so the two clocks a guest can compare never disagree. The local APIC keeps
//! guest-TSC time, which the caller brings it to ([`crate::guest_time`]).
//!
//! Interrupts reach the vCPU as on a PC: every device line goes to both the 8259 pair and
//! the I/O APIC (ISA IRQ n on pin n, except the PIT's IRQ 0 on pin 2, which the ACPI
//! tables declare as an override). The 8259's INTR reaches the CPU through the local
//! APIC's LINT0 while that is in ExtINT mode (virtual wire, as firmware leaves it, or the
//! APIC disabled); the I/O APIC's messages are raised at the local APIC at once, which
//! delivers by priority. [`Platform::interrupt_pending`] and [`Platform::acknowledge`]
//! are the CPU's view of both.
//!
//! Which devices the VM has, and where the UART sits, is its [`DeviceSet`] (the manifest's
//! list, from the VM's description): [`Platform::port_bus`] claims ports for the present
//! devices only, once, at start, so an absent device's ports read as unclaimed ones and
//! no exit asks whether a device exists. An absent device's model stays (the PIT's is the
//! VM's clock) but nothing reaches it, and it drives no line.
//!
//! A device that runs as a process of its own (the UART, where the manifest says so) is
//! a [`RemoteDevice`] behind [`PortKey::Remote`]: its accesses become requests, and its
//! line is the level each reply reports. The in-VMM model of its kind then stays unused.

use crate::bus::{Bus, BusDevice, BusError, DeviceMap};
use crate::devices::acpi_pm::AcpiPm;
use crate::devices::cmos_rtc::CmosRtc;
use crate::devices::debug_exit::DebugExit;
use crate::devices::i8042::{self, I8042};
use crate::devices::ioapic::{DeliveryMode, Ioapic};
use crate::devices::lapic::{Lapic, LapicConfig};
use crate::devices::pic8259::{Chip, DualPic};
use crate::devices::pit8254::{Pit8254, PIT_HZ};
use crate::devices::remote::{LinkError, RemoteDevice};
#[cfg(any(test, feature = "test-modes"))]
use crate::devices::scratch::Scratch;
use crate::devices::uart16550::{SerialSink, Uart16550};
use crate::vcpu_apics::VcpuApics;
use protocols::devices::{DeviceSet, Kind};

/// Port ranges a [`Platform`] bus can hold.
pub const PORT_SLOTS: usize = 16;

/// COM1's base port: the standard UART's.
pub const COM1: u16 = protocols::devices::COM1;
/// The PIT's IRQ line.
pub const PIT_IRQ: u8 = protocols::devices::PIT_IRQ;
/// The keyboard's IRQ line.
pub const KEYBOARD_IRQ: u8 = 1;
/// The PS/2 aux (mouse) IRQ line.
pub const AUX_IRQ: u8 = 12;
/// The I/O APIC pin the PIT's IRQ 0 drives (the ACPI tables' interrupt source override).
pub const PIT_GSI: u8 = 2;
/// The POST-code port, which Linux also writes for I/O delays.
pub const POST_PORT: u16 = 0x80;

/// What a port range routes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKey {
    /// One chip of the 8259 pair.
    Pic(Chip),
    /// 8254 ports 0x40-0x43.
    Pit,
    /// Port 0x61 (timer 2 gate and output).
    PortB,
    /// RTC/CMOS 0x70-0x71.
    Rtc,
    /// i8042 data port 0x60.
    I8042Data,
    /// i8042 command/status port 0x64.
    I8042Command,
    /// The 16550 (COM1 on the standard PC).
    Uart,
    /// The debug-exit port.
    DebugExit,
    /// Port 0x80: POST codes and I/O delays.
    PostCode,
    /// The ACPI PM registers (PM1 event and control, PM timer).
    AcpiPm,
    /// The device that runs as a process of its own ([`Platform::remote`]).
    Remote,
}

/// What an MMIO range routes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioKey {
    /// The local APIC's xAPIC page (at IA32_APIC_BASE while in xAPIC mode).
    Lapic,
    /// The I/O APIC's window.
    Ioapic,
    /// The scratch registers ([`Scratch`]), for tests of the MMIO path.
    #[cfg(any(test, feature = "test-modes"))]
    Scratch,
}

/// The legacy devices of one VM.
#[derive(Clone, Debug)]
pub struct Platform<S> {
    /// The UART, the VM's console.
    pub uart: Uart16550<S>,
    /// The UART's IRQ line.
    uart_irq: u8,
    /// Which devices the VM has.
    devices: DeviceSet,
    /// The 8259 pair.
    pub pic: DualPic,
    /// The local APIC of the vCPU being served.
    pub lapic: Lapic,
    /// The other vCPUs' local APICs.
    pub apics: VcpuApics,
    /// IPIs that named no APIC.
    pub dropped_ipis: u64,
    /// The I/O APIC.
    pub ioapic: Ioapic,
    /// I/O APIC messages the local APIC could not take (disabled, another destination,
    /// a delivery mode a lone vCPU has no use for).
    pub dropped_messages: u64,
    /// The ISA lines' levels as last driven into the I/O APIC (bit n: IRQ n).
    lines: u16,
    /// A write reached a device through which the guest can ask to be stopped (the
    /// i8042's reset, the debug-exit port, the ACPI PM control): the dispatcher asks
    /// those devices only then.
    pub(crate) stop_asked: bool,
    /// The interval timer.
    pub pit: Pit8254,
    /// The real-time clock.
    pub rtc: CmosRtc,
    /// The keyboard controller (reset line).
    pub i8042: I8042,
    /// The debug-exit port.
    pub debug_exit: DebugExit,
    /// The ACPI PM registers.
    pub acpi_pm: AcpiPm,
    /// The last byte written to port 0x80.
    pub post_code: u8,
    /// PIT channel 0 periods that elapsed while an earlier tick was still latched in the
    /// PIC, so the guest saw them as one interrupt.
    pub coalesced_ticks: u64,
    /// Scratch registers, reached through [`MmioKey::Scratch`] where a test maps them.
    #[cfg(any(test, feature = "test-modes"))]
    pub scratch: Scratch,
    /// Unix time when the PIT's time was 0.
    unix_start: i64,
    /// The device that runs as a process of its own, if one does (on the UART's ports
    /// and line).
    remote: Option<RemoteDevice>,
}

impl<S: SerialSink> Platform<S> {
    /// A platform of `devices` whose console writes into `sink`, whose clock reads
    /// `unix_time` and whose local APIC is configured by `lapic`. The APIC starts as
    /// firmware leaves it: enabled, in virtual-wire mode, so a guest that never touches
    /// it sees the 8259.
    pub fn new(devices: DeviceSet, sink: S, unix_time: i64, lapic: LapicConfig) -> Self {
        let mut apic = Lapic::new(lapic);
        apic.firmware_virtual_wire();
        Self {
            uart: Uart16550::new(sink),
            uart_irq: devices.uart().map_or(protocols::devices::COM1_IRQ, |(_, irq)| irq),
            devices,
            pic: DualPic::new(),
            lapic: apic,
            apics: VcpuApics::default(),
            dropped_ipis: 0,
            ioapic: Ioapic::new(),
            dropped_messages: 0,
            lines: 0,
            stop_asked: false,
            pit: Pit8254::new(),
            rtc: CmosRtc::new(unix_time),
            i8042: I8042::new(),
            debug_exit: DebugExit::new(),
            acpi_pm: AcpiPm::new(),
            post_code: 0,
            coalesced_ticks: 0,
            #[cfg(any(test, feature = "test-modes"))]
            scratch: Scratch::default(),
            unix_start: unix_time,
            remote: None,
        }
    }

    /// The same platform with `vcpus` vCPUs (the others' APICs as after RESET).
    pub fn with_vcpus(self, vcpus: u8) -> Self {
        Self { apics: VcpuApics::new(self.lapic.config(), vcpus), ..self }
    }

    /// The same platform with its UART out of process, reached as `remote`.
    pub fn with_remote(self, remote: RemoteDevice) -> Self {
        Self { remote: Some(remote), ..self }
    }

    /// The device out of process, if any.
    pub fn remote(&self) -> Option<&RemoteDevice> {
        self.remote.as_ref()
    }

    /// The port map of `devices`: each present device's ranges, where the set places
    /// them, each with the key of the model behind it ([`PortKey::Remote`] for the kind
    /// `remote`, which runs out of process).
    pub fn port_bus(
        devices: &DeviceSet,
        remote: Option<Kind>,
    ) -> Result<Bus<PortKey, PORT_SLOTS>, BusError> {
        let mut bus = Bus::new();
        for d in devices.iter() {
            let keys: [Option<PortKey>; 2] = match d.kind {
                Kind::Pic8259 => {
                    [Some(PortKey::Pic(Chip::Master)), Some(PortKey::Pic(Chip::Slave))]
                }
                Kind::Pit8254 => [Some(PortKey::Pit), Some(PortKey::PortB)],
                Kind::I8042 => [Some(PortKey::I8042Data), Some(PortKey::I8042Command)],
                Kind::CmosRtc => [Some(PortKey::Rtc), None],
                Kind::PostCode => [Some(PortKey::PostCode), None],
                Kind::AcpiPm => [Some(PortKey::AcpiPm), None],
                Kind::Uart16550 => [Some(PortKey::Uart), None],
                Kind::DebugExit => [Some(PortKey::DebugExit), None],
                Kind::Lapic | Kind::Ioapic => [None, None],
            };
            let keys = if remote == Some(d.kind) { [Some(PortKey::Remote), None] } else { keys };
            for (range, key) in d.ports.iter().zip(keys) {
                if let (Some((first, last)), Some(key)) = (*range, key) {
                    let len = u64::from(last).saturating_sub(u64::from(first)).saturating_add(1);
                    bus.insert(u64::from(first), len, key)?;
                }
            }
        }
        Ok(bus)
    }

    /// Which devices the VM has.
    pub fn devices(&self) -> &DeviceSet {
        &self.devices
    }

    /// Whether an interrupt waits that the vCPU takes once interruptible: the 8259's,
    /// where it reaches the CPU, or the APIC's highest, where it beats the priority.
    #[inline]
    pub fn interrupt_pending(&self) -> bool {
        self.pic_reaches_cpu() || self.lapic.highest_deliverable().is_some()
    }

    /// Whether the 8259 asks for the CPU and its INTR reaches it (LINT0 in ExtINT mode).
    #[inline]
    fn pic_reaches_cpu(&self) -> bool {
        self.pic.pending_vector().is_some() && self.lapic.ext_int_enabled()
    }

    /// The CPU takes the next interrupt (its INTA cycle): the 8259's comes first, as its
    /// ExtINT bypasses the APIC's priority; then the APIC's highest deliverable vector
    /// moves to its ISR. `None` when nothing is pending.
    pub fn acknowledge(&mut self) -> Option<u8> {
        if self.pic_reaches_cpu() {
            return Some(self.pic.acknowledge());
        }
        let vector = self.lapic.highest_deliverable()?;
        self.lapic.ack(vector);
        Some(vector)
    }

    /// Whether the last port writes reached a device through which the guest asks to be
    /// stopped; clears it.
    #[inline]
    pub fn take_stop_asked(&mut self) -> bool {
        core::mem::take(&mut self.stop_asked)
    }

    /// Whether an IRQ 0 edge would reach the vCPU: unmasked at the 8259 with the virtual
    /// wire up, or unmasked at the I/O APIC.
    pub fn pit_routed(&self) -> bool {
        let pic = self.pic.master().imr() & 1 << PIT_IRQ == 0 && self.lapic.ext_int_enabled();
        pic || self.ioapic.entry(PIT_GSI).is_some_and(|e| e & crate::devices::ioapic::MASKED == 0)
    }

    /// Drive the PIC inputs from the present devices' interrupt outputs (an absent
    /// device's line may be another's).
    pub fn sync_irqs(&mut self) {
        if self.devices.has(Kind::Uart16550) {
            match self.remote {
                Some(r) => self.set_irq(self.uart_irq, r.level()),
                None => self.sync_uart_irq(),
            }
        }
        if self.devices.has(Kind::I8042) {
            self.sync_i8042_irqs();
        }
    }

    fn sync_uart_irq(&mut self) {
        self.set_irq(self.uart_irq, self.uart.irq_level());
    }

    fn sync_i8042_irqs(&mut self) {
        self.set_irq(KEYBOARD_IRQ, self.i8042.irq1_level());
        self.set_irq(AUX_IRQ, self.i8042.irq12_level());
    }

    /// Drive ISA line `irq` into both interrupt controllers. The lines are resynchronised
    /// after every device access and most change nothing: then neither controller is
    /// asked (a level the I/O APIC already has is no event for it).
    #[inline]
    fn set_irq(&mut self, irq: u8, level: bool) {
        self.pic.set_irq(irq, level);
        let bit = 1u16.checked_shl(u32::from(irq)).unwrap_or(0);
        if (self.lines & bit != 0) == level {
            return;
        }
        self.lines ^= bit;
        self.ioapic.set_irq(if irq == PIT_IRQ { PIT_GSI } else { irq }, level);
        if self.ioapic.has_message() {
            self.route_ioapic();
        }
    }

    /// Raise the I/O APIC's waiting messages at the local APICs they name (a message
    /// for no APIC, or in a mode the vCPUs have no use for, is dropped and counted).
    fn route_ioapic(&mut self) {
        while let Some(m) = self.ioapic.take_message() {
            let ours = self.lapic.accepts(m.destination, m.logical);
            let taken = match m.delivery {
                DeliveryMode::Fixed | DeliveryMode::LowestPriority if ours => {
                    self.lapic.raise(m.vector, m.trigger).is_ok()
                }
                DeliveryMode::Nmi if ours => {
                    self.lapic.raise_nmi();
                    true
                }
                _ => false,
            };
            if !self.apics.route_message(&m, taken) {
                self.dropped_messages = self.dropped_messages.wrapping_add(1);
            }
        }
    }

    /// After the guest wrote the local APIC: a level-triggered vector's EOI goes to the
    /// I/O APIC, which may send its pin again.
    pub fn apic_written(&mut self) {
        while let Some(vector) = self.lapic.take_eoi_broadcast() {
            self.ioapic.eoi(vector);
        }
        if let Some(ipi) = self.lapic.take_outgoing() {
            if !self.apics.route_ipi(&ipi) {
                self.dropped_ipis = self.dropped_ipis.wrapping_add(1);
            }
        }
        if self.ioapic.has_message() {
            self.route_ioapic();
        }
    }

    /// After an access to `key`: only that device's outputs can have moved, except that
    /// the PIC itself (an EOI, a new mask or mode) must see every line again.
    fn sync_after(&mut self, key: PortKey) {
        match key {
            PortKey::Uart => self.sync_uart_irq(),
            PortKey::Remote => {
                let level = self.remote.is_some_and(|r| r.level());
                self.set_irq(self.uart_irq, level);
            }
            PortKey::I8042Data | PortKey::I8042Command => self.sync_i8042_irqs(),
            PortKey::Pic(_) => self.sync_irqs(),
            PortKey::Pit
            | PortKey::PortB
            | PortKey::Rtc
            | PortKey::DebugExit
            | PortKey::PostCode
            | PortKey::AcpiPm => {}
        }
    }

    /// Let `ticks` PIT input clocks pass; every rising edge of channel 0 is an IRQ 0 edge.
    pub fn advance_time(&mut self, ticks: u64) {
        self.pit.advance(ticks);
        let edges = self.pit.take_rising_edges(0);
        if edges > 0 {
            self.set_irq(PIT_IRQ, false);
            self.set_irq(PIT_IRQ, true);
            self.coalesced_ticks = self.coalesced_ticks.saturating_add(edges.saturating_sub(1));
        }
        self.set_irq(PIT_IRQ, self.pit.out(0));
    }

    /// Offer a console byte from the host; false if the UART cannot take it now.
    pub fn console_input(&mut self, byte: u8) -> bool {
        let taken = match &mut self.remote {
            Some(r) => r.input(byte),
            None => self.uart.receive(byte),
        };
        self.sync_irqs();
        taken
    }

    /// A byte for the VM's console from elsewhere than its UART (the putchar
    /// hypercall): it goes where the UART's output goes, in order with it.
    pub fn console_byte(&mut self, byte: u8) {
        match &mut self.remote {
            Some(r) => r.console(&[byte]),
            None => self.uart.sink_mut().write_byte(byte),
        }
    }

    /// The guest went idle: pass on the console output held back (an unfinished line).
    pub fn flush_console(&mut self) {
        match &mut self.remote {
            Some(r) => r.console(&[]),
            None => self.uart.sink_mut().flush(),
        }
    }

    /// The device out of process changed its line without an access: ask for the level.
    pub fn poll_remote(&mut self) {
        if let Some(r) = &mut self.remote {
            r.poll();
        }
        self.sync_irqs();
    }

    /// The failure of the device out of process, once: the VM must stop.
    pub fn take_remote_failure(&mut self) -> Option<(Kind, LinkError)> {
        let r = self.remote.as_mut()?;
        Some((r.kind(), r.take_failure()?))
    }

    /// The device out of process, for a string-I/O batch.
    pub fn remote_mut(&mut self) -> Option<&mut RemoteDevice> {
        self.remote.as_mut()
    }
}

impl<S> Platform<S> {
    /// An access to the device out of process; a failed one asks the dispatcher to look
    /// (and stop the VM).
    fn remote_access(&mut self, f: impl FnOnce(&mut RemoteDevice)) {
        if let Some(r) = &mut self.remote {
            f(r);
            self.stop_asked |= r.failed();
        }
    }
}

/// Split `data` byte-wise over consecutive ports of a device with per-port methods.
fn each_byte(offset: u64, data: &mut [u8], mut f: impl FnMut(u64) -> u8) {
    let mut off = offset;
    for b in data.iter_mut() {
        *b = f(off);
        off = off.wrapping_add(1);
    }
}

impl<S: SerialSink> DeviceMap<PortKey> for Platform<S> {
    fn read(&mut self, key: PortKey, offset: u64, data: &mut [u8]) {
        match key {
            PortKey::Pic(chip) => self.pic.read_bytes(chip, offset, data),
            PortKey::Pit => self.pit.read(offset, data),
            PortKey::PortB => each_byte(offset, data, |_| self.pit.read_port_b()),
            PortKey::Rtc => {
                let secs = i64::try_from(self.pit.now() / PIT_HZ).unwrap_or(i64::MAX);
                self.rtc.set_host_time(self.unix_start.saturating_add(secs));
                self.rtc.read(offset, data);
            }
            PortKey::I8042Data => {
                self.i8042.read(i8042::DATA, data);
                // The line drops while the controller loads the next byte, so a queued
                // byte is a fresh edge for the PIC.
                self.set_irq(KEYBOARD_IRQ, false);
                self.set_irq(AUX_IRQ, false);
            }
            PortKey::I8042Command => self.i8042.read(i8042::COMMAND, data),
            PortKey::Uart => self.uart.read(offset, data),
            PortKey::Remote => self.remote_access(|r| r.read(offset, data)),
            PortKey::DebugExit => self.debug_exit.read(offset, data),
            PortKey::PostCode => data.fill(self.post_code),
            PortKey::AcpiPm => {
                self.acpi_pm.set_time(self.pit.now());
                self.acpi_pm.read(offset, data);
            }
        }
        self.sync_after(key);
    }

    fn write(&mut self, key: PortKey, offset: u64, data: &[u8]) {
        match key {
            PortKey::Pic(chip) => self.pic.write_bytes(chip, offset, data),
            PortKey::Pit => self.pit.write(offset, data),
            PortKey::PortB => {
                if let Some(&v) = data.first() {
                    self.pit.write_port_b(v);
                }
            }
            PortKey::Rtc => self.rtc.write(offset, data),
            PortKey::I8042Data => {
                // The output port's reset line is written through the data port.
                self.i8042.write(i8042::DATA, data);
                self.stop_asked = true;
            }
            PortKey::I8042Command => {
                self.i8042.write(i8042::COMMAND, data);
                self.stop_asked = true;
            }
            PortKey::Uart => self.uart.write(offset, data),
            PortKey::Remote => self.remote_access(|r| r.write(offset, data)),
            PortKey::DebugExit => {
                self.debug_exit.write(offset, data);
                self.stop_asked = true;
            }
            PortKey::PostCode => {
                if let Some(&v) = data.first() {
                    self.post_code = v;
                }
            }
            PortKey::AcpiPm => {
                self.acpi_pm.set_time(self.pit.now());
                self.acpi_pm.write(offset, data);
                self.stop_asked = true;
            }
        }
        self.sync_after(key);
    }
}

impl<S: SerialSink> DeviceMap<MmioKey> for Platform<S> {
    fn read(&mut self, key: MmioKey, offset: u64, data: &mut [u8]) {
        match key {
            MmioKey::Lapic => self.lapic.read(offset, data),
            MmioKey::Ioapic => self.ioapic.read(offset, data),
            #[cfg(any(test, feature = "test-modes"))]
            MmioKey::Scratch => self.scratch.read(offset, data),
        }
    }

    fn write(&mut self, key: MmioKey, offset: u64, data: &[u8]) {
        match key {
            MmioKey::Lapic => self.lapic.write(offset, data),
            MmioKey::Ioapic => {
                // An entry unmasked or re-armed may send at once.
                self.ioapic.write(offset, data);
                if self.ioapic.has_message() {
                    self.route_ioapic();
                }
            }
            #[cfg(any(test, feature = "test-modes"))]
            MmioKey::Scratch => self.scratch.write(offset, data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Platform, PortKey};
    use crate::bus::Bus;
    use crate::devices::lapic::{LapicConfig, TimerClock};
    use crate::devices::pic8259::{port, Chip};
    use protocols::devices::DeviceSet;

    const LAPIC: LapicConfig = LapicConfig {
        apic_id: 0,
        bsp: true,
        x2apic: true,
        phys_addr_bits: 36,
        clock: TimerClock::NOMINAL,
    };

    fn platform() -> Platform<Vec<u8>> {
        let mut p = Platform::new(DeviceSet::STANDARD, Vec::new(), 0, LAPIC);
        for (chip, base, icw3) in [(Chip::Master, 0x30, 4), (Chip::Slave, 0x38, 2)] {
            for (off, v) in
                [(port::COMMAND, 0x11), (port::DATA, base), (port::DATA, icw3), (port::DATA, 1)]
            {
                p.pic.write(chip, off, v);
            }
        }
        p
    }

    #[test]
    fn the_standard_port_map() {
        let bus = Platform::<Vec<u8>>::port_bus(&DeviceSet::STANDARD, None).unwrap();
        assert_eq!(bus.resolve(0x3fd, 1), Some((PortKey::Uart, 5)));
        assert_eq!(bus.resolve(0xa1, 1), Some((PortKey::Pic(Chip::Slave), 1)));
        assert_eq!(bus.resolve(0x43, 1), Some((PortKey::Pit, 3)));
        assert_eq!(bus.resolve(0x61, 1), Some((PortKey::PortB, 0)));
        assert_eq!(bus.resolve(0x64, 1), Some((PortKey::I8042Command, 0)));
        assert_eq!(bus.resolve(0xf4, 4), Some((PortKey::DebugExit, 0)));
        assert_eq!(bus.resolve(0x2f8, 1), None, "no COM2");
        let onto_the_uart = DeviceSet::STANDARD.with_debug_exit(0x3f8);
        assert!(Platform::<Vec<u8>>::port_bus(&onto_the_uart, None).is_err(), "overlap refused");
    }

    /// A VM with its UART at COM2 on IRQ 3 and no i8042: COM1's and the i8042's ports are
    /// unclaimed, the UART's interrupt arrives on line 3, and line 1, the absent i8042's,
    /// is the UART's to drive without interference.
    #[test]
    fn a_moved_uart_and_an_absent_device() {
        use protocols::devices::{Device, Kind};
        let list = [
            Device::standard(Kind::Pic8259),
            Device::standard(Kind::Lapic),
            Device {
                ports: Some((0x2f8, 0x2ff)),
                irq: Some(3),
                ..Device::standard(Kind::Uart16550)
            },
        ];
        let set = DeviceSet::check(&list).unwrap();
        let mut bus = Platform::<Vec<u8>>::port_bus(&set, None).unwrap();
        assert_eq!(bus.resolve(0x2fd, 1), Some((PortKey::Uart, 5)));
        for port in [0x3f8, 0x60, 0x64, 0x40, 0x70, 0x80, 0xf4, 0x600] {
            assert_eq!(bus.resolve(port, 1), None, "port {port:#x} is absent");
        }
        let mut p = Platform::new(set, Vec::new(), 0, LAPIC);
        for (chip, base, icw3) in [(Chip::Master, 0x30, 4), (Chip::Slave, 0x38, 2)] {
            for (off, v) in
                [(port::COMMAND, 0x11), (port::DATA, base), (port::DATA, icw3), (port::DATA, 1)]
            {
                p.pic.write(chip, off, v);
            }
        }
        let mut b = [0];
        bus.read(&mut p, 0x3fd, &mut b);
        assert_eq!(b, [0xff], "COM1 reads as an undriven bus");
        bus.write(&mut p, 0x2f9, &[0x01]); // IER: receive interrupt
        assert!(p.console_input(b'k'));
        assert_eq!(p.pic.pending_vector(), Some(0x33), "IRQ 3");
        // On line 1, where the absent i8042 would drive its line low on every resync.
        let list = [list[0], list[1], Device { irq: Some(1), ..list[2] }];
        let mut p = Platform::new(DeviceSet::check(&list).unwrap(), Vec::new(), 0, LAPIC);
        for (off, v) in
            [(port::COMMAND, 0x11), (port::DATA, 0x30), (port::DATA, 4), (port::DATA, 1)]
        {
            p.pic.write(Chip::Master, off, v);
        }
        bus.write(&mut p, 0x2f9, &[0x01]);
        assert!(p.console_input(b'k'));
        p.sync_irqs();
        assert_eq!(p.pic.pending_vector(), Some(0x31), "IRQ 1");
        assert_ne!(p.lines & 1 << 1, 0, "line 1 stays high at the I/O APIC after a resync");
    }

    #[test]
    fn uart_interrupt_reaches_the_pic() {
        let mut p = platform();
        let mut bus = Platform::<Vec<u8>>::port_bus(&DeviceSet::STANDARD, None).unwrap();
        bus.write(&mut p, 0x3f9, &[0x01]); // IER: receive interrupt
        assert_eq!(p.pic.pending_vector(), None);
        assert!(p.console_input(b'k'));
        assert_eq!(p.pic.pending_vector(), Some(0x34));
    }

    #[test]
    fn pit_ticks_become_irq0_edges() {
        let mut p = platform();
        let mut bus = Platform::<Vec<u8>>::port_bus(&DeviceSet::STANDARD, None).unwrap();
        bus.write(&mut p, 0x43, &[0x34]);
        bus.write(&mut p, 0x40, &[100]);
        bus.write(&mut p, 0x40, &[0]);
        p.advance_time(99);
        assert_eq!(p.pic.pending_vector(), None);
        p.advance_time(1);
        assert_eq!(p.pic.acknowledge(), 0x30);
        p.pic.write(Chip::Master, port::COMMAND, 0x20);
        // Three periods at once: one interrupt, two coalesced.
        p.advance_time(300);
        assert_eq!(p.pic.acknowledge(), 0x30);
        assert_eq!(p.coalesced_ticks, 2);
    }

    #[test]
    fn the_rtc_reads_the_pits_time() {
        let mut p = Platform::new(DeviceSet::STANDARD, Vec::new(), 1_700_000_000, LAPIC);
        let mut bus = Platform::<Vec<u8>>::port_bus(&DeviceSet::STANDARD, None).unwrap();
        let seconds = |p: &mut Platform<Vec<u8>>, bus: &mut Bus<PortKey, 16>| {
            bus.write(p, 0x70, &[0x00]);
            let mut b = [0];
            bus.read(p, 0x71, &mut b);
            b[0]
        };
        // 1_700_000_000 is 22:13:20 UTC: 0x20 seconds in BCD.
        assert_eq!(seconds(&mut p, &mut bus), 0x20);
        p.advance_time(super::PIT_HZ * 15 - 1);
        assert_eq!(seconds(&mut p, &mut bus), 0x34);
        p.advance_time(1);
        assert_eq!(seconds(&mut p, &mut bus), 0x35);
    }

    #[test]
    fn port_b_and_post_code() {
        let mut p = platform();
        let mut bus = Platform::<Vec<u8>>::port_bus(&DeviceSet::STANDARD, None).unwrap();
        bus.write(&mut p, 0x80, &[0x42]);
        let mut b = [0];
        bus.read(&mut p, 0x80, &mut b);
        assert_eq!(b, [0x42]);
        bus.write(&mut p, 0x61, &[0x01]);
        bus.read(&mut p, 0x61, &mut b);
        assert_eq!(b[0] & 0x01, 0x01);
    }

    #[test]
    fn keyboard_bytes_are_separate_edges() {
        let mut p = platform();
        let mut bus = Platform::<Vec<u8>>::port_bus(&DeviceSet::STANDARD, None).unwrap();
        bus.write(&mut p, 0x60, &[0xff]); // keyboard reset: two answer bytes
        assert_eq!(p.pic.acknowledge(), 0x31);
        p.pic.write(Chip::Master, port::COMMAND, 0x20);
        let mut b = [0];
        bus.read(&mut p, 0x60, &mut b);
        assert_eq!(b, [0xfa]);
        assert_eq!(p.pic.acknowledge(), 0x31, "the second byte raises IRQ 1 again");
        bus.read(&mut p, 0x60, &mut b);
        assert_eq!(b, [0xaa]);
    }
}
