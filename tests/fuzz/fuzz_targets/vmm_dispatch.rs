//! Fuzzes the VMM server's exit dispatcher (`vmm_server::dispatch::Vm`) with its device
//! models: a sequence of arbitrary exit messages, passing time, console input, guest-RAM
//! contents and wake-ups, as a hostile guest (and a confused kernel) could produce them.
//!
//! Every exit message first goes through the wire encoding, as the real VMM receives it,
//! so fields outside the transfer mask are zero. Invariants after every step: no panic;
//! the reply survives its own wire round trip; every write names a known field the VMM may
//! write, fits the field's width and appears once; ADVANCE_RIP and an explicit RIP write
//! never meet; an injection is valid, has no reserved bits, is not combined with STOP or an
//! explicit interruption-info write, and obeys its type's rules (exceptions below 32 with
//! the architectural error-code bit, interrupts only with RFLAGS.IF set and outside an
//! interrupt shadow, NMIs with vector 2, never type 7); no injection leaves the injection
//! words zero; STOP never asks for an interrupt window; a stopped VM answers every later
//! exit with a bare STOP and stays stopped; and the exit counter moves by at most one.
//!
//! Every VM maps the scratch registers as an MMIO device, so EPT violations there run the
//! instruction fetch, decoder and emulator over whatever bytes guest RAM holds at RIP
//! (string instructions get RSI/RDI aimed at the device and RAM by their own tweak); the
//! emulator may change no RFLAGS bit but the arithmetic flags.
//!
//! An input that starts with the trace magic (`vmm_server::trace`) is instead a recorded
//! exit trace: the VM is built as the VMM built it for that guest mode and host CPUID,
//! and the recorded exits (as libFuzzer mutated them) go through the same checks. Seeds
//! of this kind come from real runs (`cargo xtask trace seeds`).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use protocols::vmcs::Field;
use protocols::vmexit::{
    ExitMessage, ExitReason, ExitReply, Gprs, ReplyFlags, TransferMask, EXIT_REASON_ENTRY_FAILURE,
};
use vmm_server::devices::uart16550::SerialSink;
use vmm_server::dispatch::{RunState, Vm, VmConfig};
use vmm_server::guest_memory::GuestMemory;
use vmm_server::mmio::flags::ARITHMETIC;
use vmm_server::platform::MmioKey;
use vmm_server::testing::{assert_well_formed, host_cpuid, Ram};
use vmm_server::trace::Decoder;

/// The console: only counts bytes (what was printed is not an invariant).
struct Sink(u64);

impl SerialSink for Sink {
    fn write_byte(&mut self, _byte: u8) {
        self.0 = self.0.wrapping_add(1);
    }
}

const RAM_SIZE: usize = 0x1_0000;

#[derive(Arbitrary, Debug)]
enum Reason {
    /// One the SDM defines (an index into `ExitReason::ALL`).
    Known(u8),
    /// Anything, including entry failures and undefined numbers.
    Raw(u32),
}

/// A change to the flat 32-bit protected-mode exit the message starts from.
#[derive(Arbitrary, Debug)]
enum Tweak {
    Qualification(u64),
    /// A port-I/O qualification at a port a device claims: `(port index, size, flags)`.
    PortIo(u8, u8, u8),
    /// A MOV-CR qualification: `(cr index, access type, gpr, value)`.
    CrAccess(u8, u8, u8, u64),
    InstructionLen(u8),
    InstructionInfo(u32),
    Rip(u64),
    Rflags(u64),
    Cr0(u64),
    Cr3(u64),
    Cr4(u64),
    Gpr(u8, u64),
    Interruptibility(u32),
    IdtVectoring(u32, u32),
    ExitInterruption(u32, u32),
    GuestLinear(u64),
    GuestPhysical(u64),
    Transfer(u16),
    Efer(u64),
    EntryControls(u32),
    SegmentAccess(u8, u32),
    /// An EPT violation's information for an access at this offset into the scratch
    /// registers (mapped at [`MMIO_BASE`]), with the groups MMIO emulation reads; the
    /// instruction comes from guest RAM at RIP (poked or left zero).
    Mmio {
        offset: u8,
        write: bool,
    },
    /// [`Tweak::Mmio`] at the local APIC's page (`lapic`: `offset` within its 4 KiB) or
    /// the I/O APIC's window (`offset` within its 32 bytes).
    Apic {
        lapic: bool,
        offset: u16,
        write: bool,
    },
    /// [`Tweak::Mmio`] for a string instruction: RDI (or, `from_device`, RSI) at that
    /// offset into the scratch registers, the other at `ram` in guest RAM, RCX = `count`,
    /// and one of [`STRINGS`] poked at RIP.
    MmioString {
        offset: u8,
        ram: u16,
        from_device: bool,
        count: u8,
        instruction: u8,
    },
}

/// MOVS and STOS encodings a [`Tweak::MmioString`] puts at RIP: each width, with and
/// without REP, with an address-size and a segment prefix.
const STRINGS: [&[u8]; 12] = [
    &[0xa4],
    &[0xf3, 0xa4],
    &[0x66, 0xa5],
    &[0xf3, 0xa5],
    &[0xf3, 0x48, 0xa5],
    &[0x67, 0xf3, 0xa5],
    &[0x26, 0xa5],
    &[0xaa],
    &[0xf3, 0xaa],
    &[0xf3, 0x66, 0xab],
    &[0xf3, 0xab],
    &[0xf2, 0x48, 0xab],
];

/// Where every fuzzed VM maps its scratch registers (the MMIO test device), clear of the
/// I/O APIC's page and the local APIC's.
const MMIO_BASE: u64 = 0xfed0_0000;
/// The local APIC's xAPIC page and the I/O APIC's window, as every VM has them.
const LAPIC: u64 = vmm_server::devices::lapic::DEFAULT_BASE;
const IOAPIC: u64 = vmm_server::devices::ioapic::DEFAULT_BASE;

#[derive(Arbitrary, Debug)]
enum Op {
    Exit { reason: Reason, tweaks: Vec<Tweak> },
    Time(u16),
    Console(u8),
    Poke { gpa: u16, bytes: Vec<u8> },
    Wake,
}

#[derive(Arbitrary, Debug)]
struct Input {
    cr0: Option<u64>,
    efer: Option<u64>,
    entry_controls: Option<u32>,
    debug_exit_port: Option<u16>,
    ops: Vec<Op>,
}

const PORTS: [u64; 16] = [
    0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x60, 0x61, 0x64, 0x70, 0x71, 0x80, 0x3f8,
    0x3fd,
];

fn message(reason: &Reason, tweaks: &[Tweak]) -> ExitMessage {
    let reason = match *reason {
        Reason::Known(i) => ExitReason::ALL[usize::from(i) % ExitReason::ALL.len()] as u32,
        Reason::Raw(r) => r,
    };
    let mut m = ExitMessage {
        reason,
        instruction_len: 2,
        rip: 0x1000,
        rflags: 0x202,
        cr0: 0x31,
        transfer: Vm::<Ram, Sink>::TRANSFER_MASK,
        ..ExitMessage::default()
    };
    for t in tweaks.iter().take(16) {
        match *t {
            Tweak::Qualification(q) => m.qualification = q,
            Tweak::PortIo(port, size, flags) => {
                let port = PORTS[usize::from(port) % PORTS.len()];
                let size = [0u64, 1, 3][usize::from(size) % 3];
                m.qualification = port << 16 | u64::from(flags & 0x78) | size;
            }
            Tweak::CrAccess(cr, access, gpr, value) => {
                let cr = [0u64, 3, 4, 8][usize::from(cr) % 4];
                let gpr = gpr % 16;
                m.qualification = cr | u64::from(access % 4) << 4 | u64::from(gpr) << 8;
                m.gprs.set(gpr, value);
            }
            Tweak::InstructionLen(l) => m.instruction_len = u32::from(l),
            Tweak::InstructionInfo(i) => m.instruction_info = i,
            Tweak::Rip(v) => m.rip = v,
            Tweak::Rflags(v) => m.rflags = v,
            Tweak::Cr0(v) => m.cr0 = v,
            Tweak::Cr3(v) => m.cr3 = v,
            Tweak::Cr4(v) => m.cr4 = v,
            Tweak::Gpr(r, v) => {
                m.gprs.set(r % 16, v);
            }
            Tweak::Interruptibility(v) => m.interruptibility = v,
            Tweak::IdtVectoring(info, error) => {
                (m.idt_vectoring_info, m.idt_vectoring_error) = (info, error);
            }
            Tweak::ExitInterruption(info, error) => {
                (m.exit_intr_info, m.exit_intr_error) = (info, error);
            }
            Tweak::GuestLinear(v) => m.guest_linear = v,
            Tweak::GuestPhysical(v) => m.guest_physical = v,
            Tweak::Transfer(t) => {
                m.transfer = TransferMask::from_bits(u64::from(t) & TransferMask::ALL.bits())
                    .unwrap_or_default();
            }
            Tweak::Efer(v) => m.efer = v,
            Tweak::EntryControls(v) => m.controls.entry = v,
            Tweak::SegmentAccess(i, ar) => m.segments.regs[usize::from(i) % 8].access_rights = ar,
            Tweak::Mmio { offset, write } => mmio(&mut m, offset, write),
            Tweak::Apic { lapic, offset, write } => {
                mmio(&mut m, 0, write);
                m.guest_physical = if lapic {
                    LAPIC + u64::from(offset & 0xfff)
                } else {
                    IOAPIC + u64::from(offset & 0x1f)
                };
            }
            Tweak::MmioString { offset, ram, from_device, count, .. } => {
                mmio(&mut m, offset, !from_device);
                let (device, ram) = (MMIO_BASE + u64::from(offset), u64::from(ram));
                let (rsi, rdi) = if from_device { (device, ram) } else { (ram, device) };
                m.gprs.set(Gprs::RSI, rsi);
                m.gprs.set(Gprs::RDI, rdi);
                m.gprs.set(Gprs::RCX, u64::from(count));
            }
        }
    }
    // What the VMM really receives: the decoded wire form (groups outside the transfer
    // mask are zero; reserved high halves cleared so the message decodes).
    m.activity_state = 0;
    m.sysenter_cs = 0;
    let mut words = [0u64; ExitMessage::SIZE];
    let n = m.to_words(&mut words);
    ExitMessage::from_words(&words[..n]).expect("an encoded exit message decodes")
}

/// The EPT-violation information of an access at `offset` into the scratch registers,
/// with the groups MMIO emulation reads.
fn mmio(m: &mut ExitMessage, offset: u8, write: bool) {
    m.guest_physical = MMIO_BASE + u64::from(offset);
    m.qualification = if write { 0x182 } else { 0x181 };
    m.transfer = m.transfer.union(
        TransferMask::QUALIFICATION
            .union(TransferMask::GUEST_PHYSICAL)
            .union(TransferMask::CR3)
            .union(TransferMask::SEGMENTS),
    );
}

fn bare_stop() -> ExitReply {
    let mut r = ExitReply::new();
    r.flags = ReplyFlags::STOP_VCPU;
    r
}

/// One exit through the dispatcher, with every per-exit invariant.
fn exit_step<M: GuestMemory>(vm: &mut Vm<M, Sink>, msg: &ExitMessage) {
    let before = vm.run_state();
    let exits = vm.stats().total_exits();
    let r = vm.handle(msg);
    assert_well_formed(msg, &r);
    let after = vm.run_state();
    assert!(vm.stats().total_exits() - exits <= 1, "one exit counted twice");
    if let RunState::Stopped(_) = before {
        assert_eq!(r, bare_stop(), "a stopped VM resumed");
        assert_eq!(after, before, "a stopped VM changed its stop reason");
    }
    if let RunState::Stopped(_) = after {
        assert_eq!(r, bare_stop(), "a stop reply carries emulation results");
    }
    if r.flags.contains(ReplyFlags::STOP_VCPU) {
        assert_ne!(after, RunState::Running, "STOP sent but the VM runs");
    }
    if msg.reason & EXIT_REASON_ENTRY_FAILURE != 0 {
        assert!(matches!(after, RunState::Stopped(_)), "ran on after a failed entry");
    }
    // MMIO emulation changes only the arithmetic flags of RFLAGS.
    let ept = [ExitReason::EptViolation as u32, ExitReason::EptMisconfig as u32];
    if ept.contains(&msg.reason) {
        if let Some(w) = r.writes().iter().find(|w| w.field == Field::GuestRflags as u32) {
            assert_eq!((w.value ^ msg.rflags) & !ARITHMETIC, 0, "MMIO changed RFLAGS {w:?}");
        }
    }
}

/// A recorded exit trace (`vmm_server::trace`, seeds from `cargo xtask trace seeds`):
/// the VM built as the VMM built it for the trace's mode and host CPUID, then every
/// recorded exit (mutated by libFuzzer, so near-real sequences) with the same checks.
fn replay_trace(data: &[u8]) {
    let Ok((header, records)) = Decoder::new(data) else { return };
    let config = vmm_server::serve::config(u64::from(header.mode));
    let host = |leaf, subleaf| header.host_cpuid(leaf, subleaf);
    let Ok(mut vm) = Vm::new(&config, host, Ram(vec![0; RAM_SIZE]), Sink(0)) else { return };
    for record in records.take(256) {
        let Ok(record) = record else { return };
        exit_step(&mut vm, &record.exit);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(&vmm_server::trace::MAGIC) {
        return replay_trace(data);
    }
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let mut config = VmConfig::default();
    config.cr0 = input.cr0.unwrap_or(config.cr0);
    config.efer = input.efer.unwrap_or(config.efer);
    config.entry_controls = input.entry_controls.or(config.entry_controls);
    if let Some(port) = input.debug_exit_port {
        config.devices = config.devices.with_debug_exit(port);
    }
    let Ok(mut vm) = Vm::new(&config, host_cpuid, Ram(vec![0; RAM_SIZE]), Sink(0)) else {
        return; // The debug-exit port collides with a device: a configuration error.
    };
    vm.insert_mmio(MMIO_BASE, vmm_server::devices::scratch::SIZE, MmioKey::Scratch)
        .expect("the MMIO bus is empty");
    let setup = vm.setup_reply();
    assert_well_formed(&ExitMessage::default(), &setup);

    for op in input.ops.iter().take(64) {
        match op {
            Op::Exit { reason, tweaks } => {
                let msg = message(reason, tweaks);
                for t in tweaks.iter().take(16) {
                    if let Tweak::MmioString { instruction, .. } = *t {
                        let code = STRINGS[usize::from(instruction) % STRINGS.len()];
                        let _ = vm.memory_mut().write(msg.rip, code);
                    }
                }
                exit_step(&mut vm, &msg)
            }
            Op::Time(ticks) => vm.advance_time(u64::from(*ticks)),
            Op::Console(byte) => {
                let _ = vm.console_input(*byte);
            }
            Op::Poke { gpa, bytes } => {
                let len = bytes.len().min(RAM_SIZE - usize::from(*gpa));
                let _ = vm.memory_mut().write(u64::from(*gpa), &bytes[..len]);
            }
            Op::Wake => {
                let before = vm.run_state();
                if let Some(r) = vm.wake() {
                    assert_eq!(before, RunState::Halted, "woke a vCPU that was not halted");
                    // HLT only halts with IF set, and RIP is past the HLT already.
                    let msg = ExitMessage { rflags: 0x202, ..ExitMessage::default() };
                    assert_well_formed(&msg, &r);
                    assert!(r.flags.contains(ReplyFlags::INJECT_EVENT));
                    assert_eq!(vm.run_state(), RunState::Running);
                } else {
                    assert_eq!(vm.run_state(), before, "a failed wake changed the state");
                }
            }
        }
    }
});
