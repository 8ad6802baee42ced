//! What the VMM process does with each exit around the dispatcher: the CPU state each
//! guest mode starts in, the one-time VMCS set-up merged into the first reply, and waking
//! a halted vCPU at the next timer edge instead of stopping it. A vCPU halted with no
//! timer edge ahead keeps its stopping reply unsent until console input raises an
//! interrupt: [`wake_parked`] then turns that reply into one that resumes it.
//!
//! It is plain logic so that the ring-3 exit loop and the trace replayer (`trace`,
//! `cargo xtask trace replay`) share it: a replayed trace gets exactly the answers the
//! VMM gave, not those of a re-implementation that could drift.

use crate::devices::uart16550::SerialSink;
use crate::dispatch::{RunState, Vm, VmConfig, TRANSFER_MASK};
use crate::guest_memory::GuestMemory;
use crate::pending_input::PendingInput;
use protocols::object::vcpu_mode;
use protocols::vcpu_page::{TransferTable, TABLE_REASONS};
use protocols::vmexit::{ExitMessage, ExitReason, ExitReply, ReplyFlags, TransferMask};

/// What the dispatcher reads of most exits: every base field, its own groups
/// ([`TRANSFER_MASK`]) and SYSENTER (the MSRs the VMCS holds).
const MOST: TransferMask = TransferMask::QUALIFICATION
    .union(TransferMask::INSTRUCTION_INFO)
    .union(TransferMask::GUEST_LINEAR)
    .union(TransferMask::GUEST_PHYSICAL)
    .union(TransferMask::CR3)
    .union(TransferMask::VECTORING)
    .union(TransferMask::INTERRUPTION)
    .union(TRANSFER_MASK)
    .union(TransferMask::SYSENTER);

/// What port I/O reads: the qualification, and for string I/O the instruction
/// information, the linear address and CR3 (to walk the guest's tables). An instruction
/// exit never interrupts an event delivery, so no vectoring information.
const PORT_IO: TransferMask = TransferMask::QUALIFICATION
    .union(TransferMask::INSTRUCTION_INFO)
    .union(TransferMask::GUEST_LINEAR)
    .union(TransferMask::CR3);

/// What an EPT exit reads: the qualification, the guest-physical address, the vectoring
/// information (an access cut short an event delivery), CR3 and CS alone (the MMIO
/// emulator walks the guest's tables and decodes in CS's code size), and the controls
/// (no VMREAD). Not EFER: its LME and NXE change only by WRMSR, which exits to the VMM,
/// and LMA follows from LME and CR0.PG (`mmio::effective_efer`); MMIO is the hot exit.
const EPT: TransferMask = TransferMask::QUALIFICATION
    .union(TransferMask::GUEST_PHYSICAL)
    .union(TransferMask::VECTORING)
    .union(TransferMask::CR3)
    .union(TransferMask::CODE_SEGMENT)
    .union(TransferMask::CONTROLS);

/// The transfer table this VMM puts in its vCPU state page (`VCpuConfigure` gets the
/// controls, which cost no VMREAD, for every exit): CPUID needs nothing beyond the
/// always-sent fields (reason, length, RIP, RFLAGS, CR0, CR4, interruptibility, CPL,
/// GPRs), port I/O only [`PORT_IO`], EPT exits [`EPT`], every other exit [`MOST`]. Each group left out is
/// VMREADs the kernel does not make.
pub fn transfer_table() -> TransferTable {
    let mut t = TransferTable { by_reason: [MOST; TABLE_REASONS] };
    if let Some(cpuid) = t.by_reason.get_mut(ExitReason::Cpuid as usize) {
        *cpuid = TransferMask::NONE;
    }
    if let Some(io) = t.by_reason.get_mut(ExitReason::IoInstruction as usize) {
        *io = PORT_IO;
    }
    for reason in [ExitReason::EptViolation, ExitReason::EptMisconfig] {
        if let Some(ept) = t.by_reason.get_mut(reason as usize) {
            *ept = EPT;
        }
    }
    t
}

/// The CPU state a guest in `mode` (`object::vcpu_mode`) starts with, as the kernel sets
/// up its VMCS for that mode.
pub fn config(mode: u64) -> VmConfig {
    let mut base = VmConfig::default();
    // The test guests use MONITOR/MWAIT, which exit to this VMM (never sleep the CPU).
    base.cpuid.allow_mwait = true;
    match mode {
        // PG | WP | NE | ET | MP | PE, CR4.PAE, EFER.LME | LMA: IA-32e mode.
        vcpu_mode::LONG64 => VmConfig { cr0: 0x8001_0033, cr4: 0x20, efer: 0x500, ..base },
        // CD | NW | ET | PE: protected mode, paging off.
        vcpu_mode::PROTECTED32 => VmConfig { cr0: 0x6000_0011, ..base },
        _ => base,
    }
}

/// The reply to `msg`: the dispatcher's, plus the VM's set-up writes on the `first` exit,
/// and for a vCPU that halted, the timer interrupt that wakes it.
pub fn answer<M: GuestMemory, S: SerialSink>(
    vm: &mut Vm<M, S>,
    msg: &ExitMessage,
    first: bool,
) -> ExitReply {
    let mut reply = ExitReply::new();
    answer_into(vm, msg, first, &mut reply);
    reply
}

/// [`answer`], building the reply in `out` (the reply area of the vCPU state page).
/// Inline: it is the VMM's hot loop's one call per exit.
#[inline(always)]
pub fn answer_into<M: GuestMemory, S: SerialSink>(
    vm: &mut Vm<M, S>,
    msg: &ExitMessage,
    first: bool,
    out: &mut ExitReply,
) {
    vm.handle_into(msg, out);
    if first {
        for w in vm.setup_reply().writes() {
            let _ = out.write_raw(w.field, w.value);
        }
    }
    if vm.run_state() == RunState::Halted {
        // A guest that halts waits for something: show what it printed last (a prompt
        // ends without a newline).
        vm.flush_console();
        wake_from_halt(vm, msg, out);
    }
}

fn wake_from_halt<M: GuestMemory, S: SerialSink>(
    vm: &mut Vm<M, S>,
    msg: &ExitMessage,
    reply: &mut ExitReply,
) {
    vm.skip_to_next_edge(msg, reply);
    wake_parked(vm, reply);
}

/// For a vCPU still halted after its reply `reply` was built (no timer edge woke it):
/// if an interrupt is pending now, turn the reply into one that resumes the vCPU with it
/// injected, and say so. The VMM keeps such a reply unsent (a saved reply) and calls this
/// after each burst of console input.
pub fn wake_parked<M: GuestMemory, S: SerialSink>(
    vm: &mut Vm<M, S>,
    reply: &mut ExitReply,
) -> bool {
    let Some(w) = vm.wake() else { return false };
    reply.flags = ReplyFlags::from_bits(reply.flags.bits() & !ReplyFlags::STOP_VCPU.bits())
        .unwrap_or(reply.flags);
    reply.inject(w.injection, w.injection_error, w.injection_len);
    true
}

/// Offer the console input waiting in `pending` to the guest's UART; what it cannot take
/// yet stays for the next offer.
pub fn offer_input<M: GuestMemory, S: SerialSink>(vm: &mut Vm<M, S>, pending: &mut PendingInput) {
    if !pending.is_empty() {
        pending.offer(|b| vm.console_input(b));
    }
}

#[cfg(test)]
mod tests {
    use super::{answer, config};
    use crate::cpuid::CpuidRegs;
    use crate::devices::uart16550::SerialSink;
    use crate::dispatch::Vm;
    use crate::guest_memory::SliceMemory;
    use protocols::object::vcpu_mode;
    use protocols::vmexit::{ExitMessage, ExitReason, ReplyFlags};

    struct Null;
    impl SerialSink for Null {
        fn write_byte(&mut self, _: u8) {}
    }

    fn host(_: u32, _: u32) -> CpuidRegs {
        CpuidRegs::default()
    }

    /// A CPUID exit with only the always-sent fields gets the reply a full message gets.
    #[test]
    fn cpuid_needs_nothing_beyond_the_always_sent_fields() {
        use super::transfer_table;
        use protocols::vmexit::{Gprs, TransferMask};
        let t = transfer_table();
        assert_eq!(t.for_reason(ExitReason::Cpuid as u32, TransferMask::NONE), TransferMask::NONE);
        assert!(t
            .for_reason(ExitReason::IoInstruction as u32, TransferMask::NONE)
            .contains(TransferMask::QUALIFICATION));
        assert!(t
            .for_reason(ExitReason::CrAccess as u32, TransferMask::NONE)
            .contains(TransferMask::CONTROLS | TransferMask::EFER_PAT));
        let mut ram = vec![0u8; 0x1_0000];
        let mut replies = Vec::new();
        for full in [true, false] {
            let mut vm =
                Vm::new(&config(vcpu_mode::LONG64), host, SliceMemory::new(0, &mut ram), Null)
                    .unwrap();
            let mut m = ExitMessage {
                reason: ExitReason::Cpuid as u32,
                instruction_len: 2,
                rip: 0x1000,
                rflags: 0x2,
                ..ExitMessage::default()
            };
            m.gprs.set(Gprs::RAX, 0x4000_0000);
            if full {
                m.transfer = TransferMask::ALL;
                (m.efer, m.cr3, m.qualification) = (0x500, 0x10_0000, 0);
            }
            replies.push(vm.handle(&m));
        }
        assert_eq!(replies[0], replies[1]);
    }

    /// Built in place over whatever an earlier reply left in the area, a reply means what
    /// a fresh one means: the same header, writes and named registers.
    #[test]
    fn a_reply_built_in_place_means_what_a_fresh_one_means() {
        use super::answer_into;
        use protocols::vmexit::{ExitReply, Gprs};
        let mut ram = vec![0u8; 0x1_0000];
        let mut vm =
            Vm::new(&config(vcpu_mode::LONG64), host, SliceMemory::new(0, &mut ram), Null).unwrap();
        let mut m = ExitMessage {
            reason: ExitReason::Cpuid as u32,
            instruction_len: 2,
            rflags: 0x2,
            ..ExitMessage::default()
        };
        m.gprs.set(Gprs::RAX, 0);
        let fresh = answer(&mut vm, &m, true);
        let mut dirty: ExitReply = bytemuck::cast([0xa5u8; size_of::<ExitReply>()]);
        answer_into(&mut vm, &m, true, &mut dirty);
        let meaning = |r: &ExitReply| {
            let regs: Vec<u64> =
                (0..16).filter(|i| r.gpr_mask & 1 << i != 0).map(|i| r.gprs.regs[i]).collect();
            let head = (r.flags, r.count, r.gpr_mask, r.advance_len, r.injection);
            (head, (r.injection_error, r.injection_len), regs, r.writes().to_vec())
        };
        assert_eq!(meaning(&dirty), meaning(&fresh));
        assert!(fresh.count > 0 && fresh.gpr_mask != 0, "the set-up writes and CPUID's registers");
    }

    #[test]
    fn modes_start_as_the_kernel_sets_them_up() {
        assert_eq!(config(vcpu_mode::LONG64).efer, 0x500);
        assert_eq!(config(vcpu_mode::PROTECTED32).cr0 & 1, 1);
        assert!(config(vcpu_mode::REAL).cpuid.allow_mwait);
    }

    #[test]
    fn only_the_first_reply_carries_the_setup() {
        let mut ram = vec![0u8; 0x1_0000];
        let mut vm =
            Vm::new(&config(vcpu_mode::PROTECTED32), host, SliceMemory::new(0, &mut ram), Null)
                .unwrap();
        let setup = vm.setup_reply().writes().len();
        let cpuid = ExitMessage {
            reason: ExitReason::Cpuid as u32,
            instruction_len: 2,
            rflags: 0x202,
            transfer: Vm::<SliceMemory<'_>, Null>::TRANSFER_MASK,
            ..ExitMessage::default()
        };
        let first = answer(&mut vm, &cpuid, true);
        let later = answer(&mut vm, &cpuid, false);
        assert!(setup > 0);
        assert_eq!(first.writes().len(), later.writes().len() + setup);
        assert!(first.flags.contains(ReplyFlags::ADVANCE_RIP));
    }
}
