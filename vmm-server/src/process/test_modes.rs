//! The VMM's test and campaign modes (feature `test-modes`): recording exit traces, a
//! hostile VMM that answers with forbidden batches, and a mutating VMM that answers real
//! exits with mutated replies. The production VMM is built without them.

use super::{
    host_cpuid, kernel_stopped, page, start_vcpu, start_words, LineSink, ServedVm, Start, EXIT_EP,
    VCPU,
};
use protocols::error::Error;
use protocols::object::Invocation;
use protocols::syscall::Syscall;
use protocols::vcpu_page::{self, Clock};
use protocols::vmcs::ctl::{pin, proc};
use protocols::vmcs::{activity, Field};
use protocols::vmexit::{BatchError, ExitMessage, ExitReply, ReplyFlags};
use protocols::vmm::{slot, stop};
use protocols::x86::RFLAGS_IF;
use rt::ipc::{invoke, ipc_raw, recv, Msg};
use vmm_server::devices::scratch;
use vmm_server::dispatch::{Vm, VmConfig};
use vmm_server::guest_memory::SliceMemory;
use vmm_server::mutate::{self, Rng};
use vmm_server::platform::MmioKey;
use vmm_server::serve::{answer, config};
use vmm_server::trace;

/// The exit, read in place.
fn read_exit() -> Option<&'static ExitMessage> {
    vcpu_page::exit(page(0))
}

/// Put `reply` into the reply area.
fn write_reply(reply: &ExitReply) {
    if let Some(area) = vcpu_page::reply_mut(page(0)) {
        *area = *reply;
    }
}

/// The VM of a serving VMM and, when `traced`, the recorder of its exits (the trace's
/// header carries the host CPUID leaves the VM's table was built from).
pub(super) fn traced_vm(
    ram: &'static mut [u8],
    (mode, config): (u64, &VmConfig),
    traced: bool,
    sink: LineSink,
) -> Result<(ServedVm, Option<Recorder>), Error> {
    let mut header = trace::Header { mode: mode as u8, ..trace::Header::default() };
    let host = |leaf, subleaf| {
        let regs = host_cpuid(leaf, subleaf);
        header.note(leaf, subleaf, regs);
        regs
    };
    // A traced VM keeps no clock: the trace does not carry the host's TSC rate, and its
    // replay must give the answers the VMM gave.
    let clock = if traced { Clock::default() } else { config.clock };
    let vm = Vm::new(&VmConfig { clock, ..*config }, host, SliceMemory::new(0, ram), sink)
        .map_err(|_| Error::InvalidArgument)?;
    Ok((vm, traced.then(|| Recorder::start(&header))))
}

/// The exit count at which a VMM in crash mode (`vmm::flags::CRASH`) panics, as if a bug
/// struck in the middle of the guest's work (the guest has printed some lines by then);
/// never without the flag. A multiple of the serving loop's sampling interval, where the
/// check is made.
pub(super) fn crash_at(flags: u64) -> u64 {
    const CRASH_AT: u64 = 64;
    if flags & protocols::vmm::flags::CRASH != 0 {
        CRASH_AT
    } else {
        u64::MAX
    }
}

/// Whether `msg` is the guest's CRASH_VMM hypercall (from ring 0, as every hypercall).
pub(super) fn crash_requested(msg: &protocols::vmexit::ExitMessage) -> bool {
    use protocols::vmexit::{ExitReason, Gprs};
    msg.reason == ExitReason::Vmcall as u32
        && msg.cpl == 0
        && msg.gprs.get(Gprs::RAX) == Some(vmm_server::hypercall::CRASH_VMM)
}

/// Map the scratch registers at [`scratch::TEST_BASE`] for a test guest's MMIO checks.
pub(super) fn map_scratch(vm: &mut ServedVm) -> Result<(), Error> {
    vm.insert_mmio(scratch::TEST_BASE, scratch::SIZE, MmioKey::Scratch)
        .map_err(|_| Error::InvalidArgument)
}

/// Exits a traced VMM records (`vmm::flags::TRACE`): all of a test guest's run.
const TRACE_EXITS: u64 = 4096;

fn print_line(line: &str) {
    rt::println!("{line}");
}

/// Writes the trace of this VM's exits as `trace:` lines while it runs.
pub(super) struct Recorder {
    encoder: trace::Encoder,
    lines: trace::LineWriter<fn(&str)>,
    records: u64,
}

impl Recorder {
    fn start(header: &trace::Header) -> Self {
        let mut lines = trace::LineWriter::new(print_line as fn(&str));
        header.encode(&mut |b| lines.push(b));
        Self { encoder: trace::Encoder::new(), lines, records: 0 }
    }

    pub(super) fn record(&mut self, msg: &ExitMessage, reply: &ExitReply) {
        if self.records < TRACE_EXITS {
            let lines = &mut self.lines;
            self.encoder.record(msg, reply, &mut |b| lines.push(b));
            self.records += 1;
        }
    }

    pub(super) fn finish(self) {
        self.lines.finish(self.records, |records, bytes, hash| {
            rt::println!("trace: end {records} {bytes} {hash:08x}");
        });
    }
}

/// One batch a hostile VMM tries: its case name, the one write it sends, and the
/// error the kernel must refuse it with (naming that field).
struct Hostile {
    case: &'static str,
    field: Field,
    value: Value,
    error: BatchError,
}

/// What a hostile batch writes: a fixed value, or the control's current value (from
/// the exit message) less bits the kernel forces, so that only those bits are wrong.
#[derive(Clone, Copy)]
enum Value {
    Fixed(u64),
    CurrentWithout(u32),
}

const fn hostile(case: &'static str, field: Field, value: u64, error: BatchError) -> Hostile {
    Hostile { case, field, value: Value::Fixed(value), error }
}

const fn without(case: &'static str, field: Field, bits: u32) -> Hostile {
    Hostile { case, field, value: Value::CurrentWithout(bits), error: POLICY }
}

const NOT_WRITABLE: BatchError = BatchError::FieldNotWritable { field: 0 };
const POLICY: BatchError = BatchError::ControlPolicy { field: 0, value: 0, bits: 0 };
const CPU: BatchError = BatchError::ControlBitsRejected { field: 0, value: 0, bits: 0 };
const LIVENESS: BatchError = BatchError::Liveness { field: 0, value: 0 };
const INJECTION: BatchError = BatchError::BadInjection { info: 0 };

/// Batches a hostile VMM tries: host state and kernel-owned pointers, controls the
/// kernel relies on, and every way the liveness invariant could be broken.
const HOSTILE: [Hostile; 16] = [
    hostile("host-rip", Field::HostRip, 0x4141_4141, NOT_WRITABLE),
    hostile("host-cr3", Field::HostCr3, 0x1000, NOT_WRITABLE),
    hostile("ept-pointer", Field::EptPointer, 0x1e, NOT_WRITABLE),
    hostile("io-bitmap-a", Field::IoBitmapA, 0x2000, NOT_WRITABLE),
    hostile("msr-bitmap", Field::MsrBitmap, 0x3000, NOT_WRITABLE),
    hostile("vmcs-link-pointer", Field::VmcsLinkPointer, 0, NOT_WRITABLE),
    hostile("notify-window", Field::NotifyWindow, u32::MAX as u64, NOT_WRITABLE),
    without(
        "pin-controls-without-external-interrupt-exiting",
        Field::PinBasedControls,
        pin::EXTERNAL_INTERRUPT_EXITING,
    ),
    without("pin-controls-without-nmi-exiting", Field::PinBasedControls, pin::NMI_EXITING),
    hostile("proc-controls-reserved-bits", Field::ProcBasedControls, 0xffff_ffff, CPU),
    without("proc-controls-without-mov-dr-exiting", Field::ProcBasedControls, proc::MOV_DR_EXITING),
    hostile(
        "activity-state-wait-for-sipi",
        Field::GuestActivityState,
        activity::WAIT_FOR_SIPI,
        LIVENESS,
    ),
    hostile("activity-state-shutdown", Field::GuestActivityState, activity::SHUTDOWN, LIVENESS),
    hostile("exception-bitmap-without-ac", Field::ExceptionBitmap, 1 << 1, LIVENESS),
    hostile("exception-bitmap-without-db", Field::ExceptionBitmap, 1 << 17, LIVENESS),
    // A hardware exception with vector 32, which no exception has.
    hostile("injection-vector-32", Field::EntryInterruptionInfo, 0x8000_0320, INJECTION),
];

/// `VCpuStart` at the test guest's entry: the first start of a test mode's vCPU, or a
/// fresh one after a batch left it stopped.
fn start_test_guest(mode: u64, entry: u64) -> Result<(), Error> {
    start_vcpu(VCPU, &start_words(mode, &Start::test_guest(mode, entry), false))
}

/// Hostile mode: answer exits with forbidden batches, one per case; each must be
/// refused with the expected error naming its field. Returns how many were not.
pub(super) fn attack(ram: &mut [u8], mode: u64, entry: u64) -> Result<(u64, u64, u64), Error> {
    let mut missed = 0u64;
    for (i, h) in HOSTILE.iter().enumerate() {
        if i > 0 {
            // The previous refusal left the vCPU stopped: start it afresh.
            start_test_guest(mode, entry)?;
        }
        if kernel_stopped(&recv(EXIT_EP)?) {
            return Ok((stop::OTHER, missed, HOSTILE.len() as u64));
        }
        let value = match h.value {
            Value::Fixed(v) => v,
            Value::CurrentWithout(bits) => {
                let Some(msg) = read_exit() else {
                    say!("malformed exit message");
                    return Ok((stop::OTHER, missed, HOSTILE.len() as u64));
                };
                let c = msg.controls;
                let now = if h.field == Field::PinBasedControls { c.pin } else { c.proc };
                u64::from(now & !bits)
            }
        };
        let mut reply = ExitReply::new();
        let _ = reply.write(h.field, value);
        write_reply(&reply);
        let (status, r) = ipc_raw(Syscall::Reply, 0, &Msg::default(), 0, 0);
        let (code, field) = (r.msg.words[0] as u32, r.msg.words[1]);
        let named = Field::from_raw(field as u32).map_or("no field", Field::name);
        let error = BatchError::name_of(code);
        let case = h.case;
        if status == Error::BatchRejected as u64
            && code == h.error.code()
            && field == h.field as u64
        {
            rt::println!("hostile: {case} refused: {error} ({named})");
        } else if status == Error::BatchRejected as u64 {
            rt::println!("hostile: {case} refused for the wrong reason: {error} ({named})");
            missed += 1;
        } else {
            rt::println!("hostile: {case} APPLIED (status {status})");
            missed += 1;
        }
    }
    start_test_guest(mode, entry)?;
    // A `jmp $` in the last page of the guest's RAM, which the test guests leave alone
    // (they run flat: a linear address is the physical one).
    let spin = ram.len().saturating_sub(PAGE) as u64;
    if let Some(code) = ram.get_mut(spin as usize..).and_then(|r| r.get_mut(..JMP_SELF.len())) {
        code.copy_from_slice(&JMP_SELF);
    }
    let cases = [
        (Keep::Halt, None, "halted with interrupts off and no timer"),
        (Keep::Spin(spin), Some(u32::MAX), "spinning with interrupts off and a timer of 2^32 - 1"),
    ];
    for (keep, timer, what) in cases {
        if !keep_the_cpu(keep, timer)? {
            // An exit (or a refusal) ended the case: the vCPU waits for no kick.
            missed += 1;
            break;
        }
        rt::println!("hostile: a guest {what} gave the CPU back");
        // The guest keeps at it: a kick brings its next exit here.
        invoke(VCPU, Invocation::VCpuKick, &[])?;
    }
    invoke(slot::CNODE, Invocation::CNodeDelete, &[VCPU])?;
    Ok((stop::EXITED, missed, HOSTILE.len() as u64 + cases.len() as u64))
}

/// A guest page.
const PAGE: usize = 4096;
/// `jmp $`.
const JMP_SELF: [u8; 2] = [0xeb, 0xfe];

/// How a hostile guest tries to keep its CPU with interrupts off.
#[derive(Clone, Copy)]
enum Keep {
    /// In the HLT activity state.
    Halt,
    /// Spinning in a `jmp $` at this address.
    Spin(u64),
}

/// The last hostile cases, which the kernel must accept: at the vCPU's next exit, clear
/// the guest's RFLAGS.IF, set the VMM's preemption timer to `timer` (off with `None`),
/// make the guest halt or spin, and yield to it. A CPU delivers the host's tick as an
/// exit whatever the guest's IF (an emulator may not: the kernel's backstop covers that,
/// and it counts a VMM's timer one tick at a time), so the kernel regains the CPU and this
/// VMM, at the guest's priority, runs again while the guest keeps at it. False (said) if
/// the batch was refused or the guest exited meanwhile.
fn keep_the_cpu(keep: Keep, timer: Option<u32>) -> Result<bool, Error> {
    if kernel_stopped(&recv(EXIT_EP)?) {
        return Ok(false);
    }
    let Some(msg) = read_exit() else {
        say!("malformed exit message");
        return Ok(false);
    };
    let mut reply = ExitReply::new();
    let _ = reply.write(Field::GuestRflags, msg.rflags & !RFLAGS_IF);
    match keep {
        Keep::Halt => {
            let _ = reply.write(Field::GuestActivityState, activity::HLT);
        }
        Keep::Spin(rip) => {
            let _ = reply.write(Field::GuestActivityState, activity::ACTIVE);
            let _ = reply.write(Field::GuestRip, rip);
        }
    }
    let pin = msg.controls.pin & !pin::PREEMPTION_TIMER;
    match timer {
        Some(value) => {
            let _ = reply.write(Field::PinBasedControls, (pin | pin::PREEMPTION_TIMER).into());
            let _ = reply.write(Field::PreemptionTimerValue, value.into());
        }
        None => {
            let _ = reply.write(Field::PinBasedControls, pin.into());
        }
    }
    write_reply(&reply);
    let (status, _) = ipc_raw(Syscall::Reply, 0, &Msg::default(), 0, 0);
    if status != 0 {
        rt::println!("hostile: keeping the CPU refused (status {status})");
        return Ok(false);
    }
    // The guest (this VMM's equal) runs now. This VMM runs again once the kernel takes
    // the CPU back from it; the guest must still be at it then (no exit of its waits
    // here), or the CPU came back through an exit of the guest's, which proves nothing.
    rt::syscall::yield_now();
    match rt::ipc::nb_recv(EXIT_EP) {
        Err(Error::WouldBlock) => Ok(true),
        Ok(_) => {
            let reason = read_exit().map_or(u32::MAX, |m| m.reason);
            rt::println!("hostile: the guest left its loop (exit reason {reason}) before the kernel took its CPU back");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Exits a mutating VMM answers (`vmm::flags::MUTATE`) before it stops.
const MUTATED_EXITS: u64 = 48;
/// The mutations' seed: fixed, so every run sends the same batches.
const MUTATION_SEED: u64 = 0x5eed_0fba_7c4e_5500;

/// Mutating mode: answer real exits with mutated real replies; count what the kernel
/// accepts and refuses, what it accepted but the CPU then refused at VM entry (guest
/// state the kernel leaves to the CPU's checks: an exit with reason bit 31), and the
/// batches it accepted although it must refuse them (reported as the exit code). A
/// refused or stopping batch leaves the vCPU stopped: it starts again from the entry
/// point with a fresh device model.
pub(super) fn mutated(
    ram: &'static mut [u8],
    mode: u64,
    entry: u64,
) -> Result<(u64, u64, u64), Error> {
    let mut rng = Rng::new(MUTATION_SEED);
    let (mut sent, mut accepted, mut refused, mut wrong) = (0u64, 0u64, 0u64, 0u64);
    let mut cpu_refused = 0u64;
    // Arm the VMX-preemption timer in every batch (a guest a mutation sent into a
    // loop without exits still comes back) unless this CPU refuses it.
    let (mut watchdog, mut timer_refusals) = (true, 0);
    'restart: while sent < MUTATED_EXITS {
        let sink = LineSink::new(rt::console::write);
        let mut vm = Vm::new(&config(mode), host_cpuid, SliceMemory::new(0, &mut *ram), sink)
            .map_err(|_| Error::InvalidArgument)?;
        let mut first = true;
        if kernel_stopped(&recv(EXIT_EP)?) {
            return Ok((stop::OTHER, wrong, sent));
        }
        while sent < MUTATED_EXITS {
            let Some(msg) = read_exit() else {
                say!("malformed exit message (mutating)");
                return Ok((stop::OTHER, wrong, sent));
            };
            if msg.is_entry_failure() && !first {
                // The last accepted batch failed the CPU's own entry checks: stop
                // the vCPU and start afresh.
                cpu_refused += 1;
                let mut stop_it = ExitReply::new();
                stop_it.flags = ReplyFlags::STOP_VCPU;
                write_reply(&stop_it);
                let _ = ipc_raw(Syscall::Reply, 0, &Msg::default(), 0, 0);
                start_test_guest(mode, entry)?;
                continue 'restart;
            }
            let real = answer(&mut vm, msg, core::mem::take(&mut first));
            let m = mutate::mutate(&mut rng, msg, &real, watchdog);
            write_reply(&m.reply);
            sent += 1;
            let (status, r) = ipc_raw(Syscall::Reply, 0, &Msg::default(), 0, 0);
            if status == 0 {
                accepted += 1;
                if m.must_refuse {
                    wrong += 1;
                    say!("batch {sent} accepted but must be refused: {:x?}", m.reply);
                }
                if !m.stops {
                    if sent < MUTATED_EXITS && kernel_stopped(&recv(EXIT_EP)?) {
                        // The CPU refused an entry after a batch the kernel accepted:
                        // the kernel should have refused it.
                        wrong += 1;
                        start_test_guest(mode, entry)?;
                        continue 'restart;
                    }
                    continue;
                }
            } else {
                refused += 1;
                let field = r.msg.words[1];
                let timer = [Field::PinBasedControls as u64, Field::PreemptionTimerValue as u64];
                if watchdog && !m.must_refuse && timer.contains(&field) {
                    timer_refusals += 1;
                    if timer_refusals == 2 {
                        say!("this CPU refuses the VMX-preemption timer; no watchdog");
                        watchdog = false;
                    }
                }
                if status != Error::BatchRejected as u64 {
                    wrong += 1;
                    say!("batch {sent} refused with error {status}, not as a batch");
                }
            }
            if sent < MUTATED_EXITS {
                start_test_guest(mode, entry)?;
            }
            continue 'restart;
        }
    }
    // Whatever the last batch did to the guest, it never runs again.
    invoke(slot::CNODE, Invocation::CNodeDelete, &[VCPU])?;
    say!(
        "{sent} mutated batches: {accepted} accepted ({cpu_refused} then refused by the CPU), {refused} refused by the kernel, {wrong} accepted wrongly"
    );
    Ok((stop::EXITED, wrong, sent))
}
