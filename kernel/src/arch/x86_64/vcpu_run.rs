//! Running a vCPU: VMX root operation at boot, and the loop body that enters the guest,
//! reads what the exit says, and hands it to `kernel::vcpu`.
//!
//! At most one VMCS is active on a CPU at a time: switching to another vCPU VMCLEARs the
//! previous one, so a destroyed VCpu's memory is never in use by the CPU once the kernel
//! has cleared the active VMCS (which it does whenever the kernel reports a release; the
//! other CPUs clear theirs when stalled). The guest runs with the kernel lock released.

use super::bkl::Held;
use super::cpu::{self, rdmsr};
use super::memory::{self, frame_at};
use super::percpu::{self, ACTIVE_VMCS, TICK};
use super::vm_entry;
use super::vmx_insn::{self, VmxRoot};
use super::{fpu, gdt, idt, ipi, thread, vmx};
use core::cell::UnsafeCell;
use kernel::acpi::MAX_CPUS;
use kernel::frame_alloc::FrameAllocator;
use kernel::state::{Kernel, Next};
use kernel::store::Store;
use kernel::vcpu::{reinjection, ExitCore, Kick, VmxInfo, VMCS_OFFSET};
use kernel::vcpu_passthrough::HostMsrs;
use kernel::vmx::ept::{Ept, EptVpidCaps, InveptType};
use kernel::vmx::validator::Policy;
use kernel::vmx::vmcs_setup::HostState;
use protocols::object::vm::SWITCHABLE_MSRS;
use protocols::vmcs::ctl::{pin, proc2};
use protocols::vmcs::{Field, SEGMENT_FIELDS};
use protocols::vmexit::{ExitMessage, ExitReason, Gprs, TransferMask, EXIT_REASON_ENTRY_FAILURE};
use protocols::vmx_failure::{VmxError, VmxFailure, VmxInstruction};
use protocols::x86::CR0_PG;

/// Each CPU's proof of VMX root operation, while it is in it.
struct Roots([UnsafeCell<Option<VmxRoot>>; MAX_CPUS]);

// SAFETY: each CPU reaches only its own entry ([`root`], [`set_root`], [`shutdown`]).
unsafe impl Sync for Roots {}

static ROOTS: Roots = Roots([const { UnsafeCell::new(None) }; MAX_CPUS]);

/// This CPU's VMX root token, if it is in VMX root operation (one load: the block
/// holds its address).
#[inline(always)]
fn root() -> Option<&'static VmxRoot> {
    let at = percpu::get::<{ percpu::VMX_ROOT }>() as *const VmxRoot;
    // SAFETY: `at` is 0 or this CPU's entry of `ROOTS`, set by `set_root` after its one
    // write and cleared by `shutdown` before the token is taken; only this CPU touches it.
    unsafe { at.as_ref() }
}

/// This CPU entered VMX root operation.
pub fn set_root(token: VmxRoot) {
    let cell = ROOTS.0[percpu::cpu()].get();
    // SAFETY: only this CPU touches its entry, and nothing reads it before this write:
    // the block names it only afterwards.
    let stored = unsafe { (*cell).insert(token) };
    percpu::set::<{ percpu::VMX_ROOT }>(stored as *const VmxRoot as u64);
}

const MSR_EPT_VPID_CAP: u32 = 0x48c;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_PAT: u32 = 0x277;
const MSR_TSC_AUX: u32 = 0xc000_0103;

/// Enter VMX root operation if the CPU can; returns what the kernel needs to make VCpus.
pub fn enable(frames: &mut FrameAllocator) -> Option<VmxInfo> {
    let caps = vmx::probe().ok()?;
    let region = frames.alloc()?;
    // SAFETY: the frame was just taken from the allocator and is dedicated to VMXON for
    // the kernel's lifetime; the kernel is single-threaded.
    let root = match unsafe { vmx_insn::enable(region, frame_at(region)) } {
        Ok(r) => r,
        Err(e) => {
            crate::kprintln!("vmx: cannot enter VMX operation: {e}");
            return None;
        }
    };
    let policy = Policy::new(&caps, true, false);
    if let Some((field, bits)) = policy.unsupported(&caps) {
        if field == Field::SecondaryProcBasedControls && bits & proc2::ENABLE_EPT != 0 {
            crate::kprintln!("vmx: VMs disabled: this CPU lacks EPT, which every guest needs");
        } else {
            crate::kprintln!("vmx: VMs disabled: this CPU lacks control bits {bits:#x} of {field}");
        }
        return None;
    }
    // SAFETY: the EPT/VPID capability MSR exists when EPT or VPID may be enabled, which
    // `Policy::unsupported` just confirmed for EPT.
    let ept = EptVpidCaps::from_raw(unsafe { rdmsr(MSR_EPT_VPID_CAP) });
    ipi::use_ept(ept.raw());
    let maxphyaddr = (cpu::cpuid(0x8000_0008, 0).0 & 0xff) as u8;
    // SAFETY: EFER and PAT exist on every x86-64 CPU.
    let (efer, pat) = unsafe { (rdmsr(MSR_EFER), rdmsr(MSR_PAT)) };
    let host = HostState {
        cr0: cpu::read_cr0(),
        cr3: memory::kernel_root(),
        cr4: cpu::read_cr4(),
        cs: gdt::KERNEL_CS,
        ss: gdt::KERNEL_DS,
        ds: gdt::KERNEL_DS,
        es: gdt::KERNEL_DS,
        fs: 0,
        gs: 0,
        tr: gdt::TSS_SELECTOR,
        fs_base: 0,
        gs_base: super::percpu::base(0),
        tr_base: gdt::tss_base(0),
        gdtr_base: gdt::gdt_base(0),
        idtr_base: idt::idt_base(),
        rip: vm_entry::host_rip(),
        rsp: 0xffff_ffff_8000_0000,
        sysenter_cs: 0,
        sysenter_esp: 0,
        sysenter_eip: 0,
        efer,
        pat,
    };
    set_root(root);
    crate::kprintln!("vmx: VMX root operation entered; VCpus available");
    // The TSC rate follows once the tick is calibrated (`main`).
    Some(VmxInfo {
        caps,
        policy,
        ept,
        host,
        maxphyaddr,
        host_msrs: host_msrs(),
        tsc_hz: 0,
        backstop: 0,
    })
}

/// The kernel's values of the MSRs a VCpu may switch (set by `syscall::init`, never
/// changed afterwards), and which of them this CPU has: IA32_TSC_AUX exists only with
/// RDTSCP or RDPID, the others on every x86-64 CPU.
fn host_msrs() -> HostMsrs {
    let rdtscp = cpu::cpuid(0x8000_0001, 0).3 & (1 << 27) != 0;
    let rdpid = cpu::cpuid(0, 0).0 >= 7 && cpu::cpuid(7, 0).2 & (1 << 22) != 0;
    let mut m = HostMsrs::default();
    for (i, (&index, value)) in SWITCHABLE_MSRS.iter().zip(m.values.iter_mut()).enumerate() {
        if index == MSR_TSC_AUX && !(rdtscp || rdpid) {
            continue;
        }
        // SAFETY: every MSR of the list but TSC_AUX exists on an x86-64 CPU, and TSC_AUX
        // was just found to exist.
        *value = unsafe { rdmsr(index) };
        m.present |= 1 << i;
    }
    m
}

fn vmread(root: &VmxRoot, f: Field) -> u64 {
    vmx_insn::vmread_or_zero(root, f)
}

/// Carry out what the kernel asked of the hardware: reschedule IPIs to the CPUs a
/// wake-up concerns; and after a mapping or a VCpu went, the other CPUs stalled (which
/// flushes their TLBs and EPT translations and clears their active VMCS) and then the
/// same here: flush the TLB, clear the active VMCS, invalidate EPT translations.
#[inline]
pub fn flush<S: Store>(k: &mut Kernel<S>) {
    // Usually nothing: then neither the VMX token nor anything else is touched.
    if k.tlb_stale || k.vmcs_released || k.ept_stale || k.reschedule != 0 {
        flush_now(k);
    }
}

#[inline(never)]
fn flush_now<S: Store>(k: &mut Kernel<S>) {
    let reschedule = core::mem::take(&mut k.reschedule);
    if k.tlb_stale || k.vmcs_released || k.ept_stale {
        ipi::stall_others(k.cpus);
    }
    ipi::send_reschedule(reschedule);
    if core::mem::take(&mut k.tlb_stale) {
        // SAFETY: reloading CR3 with its own value only drops non-global TLB entries.
        unsafe { cpu::write_cr3(cpu::read_cr3()) }
    }
    let Some(root) = root() else { return };
    if core::mem::take(&mut k.vmcs_released) {
        clear_active(root);
    }
    if core::mem::take(&mut k.ept_stale) {
        if let Some(vmx) = k.vmx {
            // All-context invalidation ignores the pointer; any well-formed one will do.
            if let Ok(any) = Ept::from_root(0, vmx.ept).eptp(false) {
                let _ = vmx_insn::invept(root, vmx.ept, InveptType::AllContext, any);
            }
        }
    }
}

/// Fill the optional groups the VMM asked for (and only those: each costs VMREADs); the
/// controls come from the kernel's copy, without a VMREAD.
fn read_groups(root: &VmxRoot, mask: TransferMask, msg: &mut ExitMessage) {
    // Most exits ask for none of them: one test instead of eight.
    if !mask.intersects(GUEST_STATE_GROUPS) {
        return;
    }
    if mask.contains(TransferMask::SEGMENTS) {
        for (seg, (selector, base, limit, access)) in
            msg.segments.regs.iter_mut().zip(SEGMENT_FIELDS)
        {
            seg.selector = vmread(root, selector) as u16;
            seg.limit = vmread(root, limit) as u32;
            seg.access_rights = vmread(root, access) as u32;
            seg.base = vmread(root, base);
        }
    } else if mask.contains(TransferMask::CODE_SEGMENT) {
        // What decoding needs: the code size (access rights) and the base.
        if let Some(cs) = msg.segments.regs.get_mut(CS) {
            cs.access_rights = vmread(root, Field::GuestCsAccessRights) as u32;
            cs.base = vmread(root, Field::GuestCsBase);
        }
    }
    if mask.contains(TransferMask::DESCRIPTOR_TABLES) {
        msg.gdtr.base = vmread(root, Field::GuestGdtrBase);
        msg.gdtr.limit = vmread(root, Field::GuestGdtrLimit) as u32;
        msg.idtr.base = vmread(root, Field::GuestIdtrBase);
        msg.idtr.limit = vmread(root, Field::GuestIdtrLimit) as u32;
    }
    if mask.contains(TransferMask::EFER_PAT) {
        msg.efer = vmread(root, Field::GuestIa32Efer);
        msg.pat = vmread(root, Field::GuestIa32Pat);
    }
    if mask.contains(TransferMask::DEBUG_CONTROLS) {
        msg.dr7 = vmread(root, Field::GuestDr7);
        msg.debugctl = vmread(root, Field::GuestIa32Debugctl);
    }
    if mask.contains(TransferMask::PENDING_DEBUG) {
        msg.pending_debug = vmread(root, Field::GuestPendingDebugExceptions);
    }
    if mask.contains(TransferMask::ACTIVITY_STATE) {
        msg.activity_state = vmread(root, Field::GuestActivityState) as u32;
    }
    if mask.contains(TransferMask::SYSENTER) {
        msg.sysenter_cs = vmread(root, Field::GuestIa32SysenterCs) as u32;
        msg.sysenter_esp = vmread(root, Field::GuestIa32SysenterEsp);
        msg.sysenter_eip = vmread(root, Field::GuestIa32SysenterEip);
    }
    if mask.contains(TransferMask::PDPTES) {
        let f = [Field::GuestPdpte0, Field::GuestPdpte1, Field::GuestPdpte2, Field::GuestPdpte3];
        for (d, f) in msg.pdptes.iter_mut().zip(f) {
            *d = vmread(root, f);
        }
    }
}

/// CS's index in the message's segments.
const CS: usize = 1;

/// The groups [`read_groups`] fills, each with VMREADs of guest state.
const GUEST_STATE_GROUPS: TransferMask = TransferMask::SEGMENTS
    .union(TransferMask::CODE_SEGMENT)
    .union(TransferMask::DESCRIPTOR_TABLES)
    .union(TransferMask::EFER_PAT)
    .union(TransferMask::DEBUG_CONTROLS)
    .union(TransferMask::PENDING_DEBUG)
    .union(TransferMask::ACTIVITY_STATE)
    .union(TransferMask::SYSENTER)
    .union(TransferMask::PDPTES);

/// The base fields read by VMREAD only when asked for (the others come from the
/// kernel's own reads or copy).
const BASE_READ_GROUPS: TransferMask = TransferMask::QUALIFICATION
    .union(TransferMask::INSTRUCTION_INFO)
    .union(TransferMask::GUEST_LINEAR)
    .union(TransferMask::GUEST_PHYSICAL)
    .union(TransferMask::CR3)
    .union(TransferMask::VECTORING)
    .union(TransferMask::INTERRUPTION);

/// `instruction` failed: the vCPU stops and its VMM is told why.
fn fail<S: Store>(
    k: &mut Kernel<S>,
    instruction: VmxInstruction,
    field: Option<Field>,
    error: VmxError,
) -> Next {
    k.vcpu_failed(VmxFailure { instruction, field, error })
}

/// VMCLEAR the VMCS active on this CPU, if any.
fn clear_active(root: &VmxRoot) {
    let active = percpu::get::<ACTIVE_VMCS>();
    if active != 0 {
        percpu::set::<ACTIVE_VMCS>(0);
        // SAFETY: `active` is a VMCS this CPU loaded; clearing it only writes it back.
        let _ = unsafe { vmx_insn::vmclear(root, active) };
    }
}

/// For a stall: clear this CPU's active VMCS and drop every EPT translation it holds
/// (the stalling CPU may be about to free the VCpu or a guest's page).
pub fn drop_vmx_state(ept: Option<EptVpidCaps>) {
    let Some(root) = root() else { return };
    clear_active(root);
    if let Some(ept) = ept {
        if let Ok(any) = Ept::from_root(0, ept).eptp(false) {
            let _ = vmx_insn::invept(root, ept, InveptType::AllContext, any);
        }
    }
}

/// Run the current vCPU until its next exit that the VMM must see (or a tick). Every way
/// here has flushed already ([`super::run_loop`]); the fastpath leaves nothing to flush.
pub fn run(k: &mut Held) -> Next {
    let Some(root) = root() else {
        // This CPU is not in VMX operation (or left it at shutdown).
        return fail(&mut **k, VmxInstruction::Vmptrld, None, VmxError::Unsupported);
    };
    thread::deactivate();
    let v = k.current;
    // Ports whose pass-through capability went exit again from this entry on.
    k.refresh_pass_through(v);
    let vmcs = v + VMCS_OFFSET;
    let active = percpu::get::<ACTIVE_VMCS>();
    // Only asked, never moved: the initial VMCS is nearly 2 KiB, and this is the hot path.
    let fresh = k.store.vcpu(v).init.is_some();
    if active != vmcs || fresh {
        if active != 0 && active != vmcs {
            // SAFETY: `active` is a VMCS this code loaded; clearing it only writes it back.
            let _ = unsafe { vmx_insn::vmclear(root, active) };
        }
        if active != vmcs {
            // A VMCS stops being the active one only by VMCLEAR (when another is loaded,
            // or in `flush` after any VCpu was destroyed), which makes it clear again.
            k.store.vcpu(v).launched = false;
        }
        if fresh {
            // SAFETY: the VMCS region belongs to the VCpu object, stamped at creation.
            if let Err(e) = unsafe { vmx_insn::vmclear(root, vmcs) } {
                return fail(k, VmxInstruction::Vmclear, None, e);
            }
            k.store.vcpu(v).launched = false;
        }
        // SAFETY: as above; the region is cleared or was cleared when last switched out.
        if let Err(e) = unsafe { vmx_insn::vmptrld(root, vmcs) } {
            return fail(k, VmxInstruction::Vmptrld, None, e);
        }
        percpu::set::<ACTIVE_VMCS>(vmcs);
    }
    if fresh {
        let data = k.store.vcpu(v);
        let written = data.init.as_ref().map_or(Ok(()), |init| {
            init.writes().iter().try_for_each(|&(f, val)| {
                // SAFETY: the initial VMCS was computed by `initial_vmcs` for this CPU.
                unsafe { vmx_insn::vmwrite(root, f, val) }.map_err(|e| (f, e))
            })
        });
        data.init = None;
        if let Err((f, e)) = written {
            return fail(k, VmxInstruction::Vmwrite, Some(f), e);
        }
    }
    if active != vmcs || fresh {
        // The host state names this CPU's tables and block (the initial VMCS names the
        // boot CPU's).
        let me = percpu::cpu();
        let host = [
            (Field::HostGsBase, percpu::base(me)),
            (Field::HostTrBase, gdt::tss_base(me)),
            (Field::HostGdtrBase, gdt::gdt_base(me)),
        ];
        for (f, val) in host {
            // SAFETY: this CPU's own GS block, TSS and GDT, which live as long as it runs.
            if let Err(e) = unsafe { vmx_insn::vmwrite(root, f, val) } {
                return fail(k, VmxInstruction::Vmwrite, Some(f), e);
            }
        }
    }
    let data = k.store.vcpu(v);
    for &(f, val) in data.pending() {
        // SAFETY: the writes passed the batch validator.
        if let Err(e) = unsafe { vmx_insn::vmwrite(root, f, val) } {
            return fail(k, VmxInstruction::Vmwrite, Some(f), e);
        }
    }
    data.pending.clear();
    if core::mem::take(&mut data.msr_areas_changed) {
        let count = u64::from(data.msr_count);
        for f in [Field::EntryMsrLoadCount, Field::ExitMsrStoreCount, Field::ExitMsrLoadCount] {
            // SAFETY: the kernel's own MSR areas, whose addresses the VMCS already holds;
            // every entry names a listed MSR with a value WRMSR accepts.
            if let Err(e) = unsafe { vmx_insn::vmwrite(root, f, count) } {
                return fail(k, VmxInstruction::Vmwrite, Some(f), e);
            }
        }
    }
    if data.kick == Kick::Asked {
        // The guest leaves before its first instruction: a zero VMX-preemption timer.
        data.kick_saved_timer = vmread(root, Field::PreemptionTimerValue);
        let pin = u64::from(data.cached.controls.pin | pin::PREEMPTION_TIMER);
        for (f, val) in [(Field::PinBasedControls, pin), (Field::PreemptionTimerValue, 0)] {
            // SAFETY: `VCpuKick` checked that the CPU has the preemption timer; the value
            // field takes any 32-bit number.
            if let Err(e) = unsafe { vmx_insn::vmwrite(root, f, val) } {
                return fail(k, VmxInstruction::Vmwrite, Some(f), e);
            }
        }
        data.kick = Kick::Armed;
    } else if !data.backstop && data.cached.controls.pin & pin::PREEMPTION_TIMER == 0 {
        if let Err((f, e)) = arm_backstop(k, root, v) {
            return fail(k, VmxInstruction::Vmwrite, Some(f), e);
        }
    }
    let data = k.store.vcpu(v);
    if cpu::read_cr2() != data.cr2 {
        // SAFETY: CR2 only reports page-fault addresses; the kernel never reads it but
        // in its fault handlers, which record it at once.
        unsafe { cpu::write_cr2(data.cr2) };
    }
    let launched = data.launched;
    thread::release_fpu(&mut **k);
    fpu::restore(&k.store.vcpu(v).fpu);
    super::exit_trace::entering_guest();
    let gprs: *mut Gprs = &mut k.store.vcpu(v).gprs;
    let ((entered, entry_tsc, exit_tsc), released) = k.unlocked(|| {
        let entry_tsc = cpu::rdtsc();
        // SAFETY: the current VMCS was set up by `initial_vmcs` with this CPU's host
        // state, and interrupts are disabled in the kernel. The VCpu's memory stays: a CPU
        // that would change or delete it stalls this one first, which waits for the exit.
        let entered = unsafe { vm_entry::enter(root, &mut *gprs, launched) };
        (entered, entry_tsc, cpu::rdtsc())
    });
    if released && percpu::get::<ACTIVE_VMCS>() != vmcs {
        // Stalled while taking the lock again: the VMCS was cleared (and the vCPU perhaps
        // moved or deleted: only a stall does either). The exit is dropped; the guest
        // meets it again when it runs (a trap-like exit, such as a monitor trap, is lost).
        return k.schedule();
    }
    let data = k.store.vcpu(v);
    fpu::save(&mut data.fpu);
    if let Err(e) = entered {
        let entry = if launched { VmxInstruction::Vmresume } else { VmxInstruction::Vmlaunch };
        return fail(k, entry, None, e);
    }
    let reason = vmread(root, Field::ExitReason) as u32;
    super::exit_trace::exit_taken(reason & 0xffff);
    if data.kick == Kick::Armed {
        // The VMM's own timer controls again. An exit the kernel keeps (an interrupt of
        // the host's) has not reached the VMM: the kick waits for the next entry.
        let external = reason & 0xffff == ExitReason::ExternalInterrupt as u32;
        data.kick = if external { Kick::Asked } else { Kick::None };
        if !external {
            // The VMM sees this exit (so the timer check below leaves it alone): its
            // count starts afresh with its reply (`TimerCount`).
            data.timer.over = 0;
            data.timer.reduced = true;
        }
        // The VMM's controls replace the backstop's too.
        data.backstop = false;
        data.timer.loaded = data.kick_saved_timer as u32;
        let pin = u64::from(data.cached.controls.pin);
        for (f, val) in
            [(Field::PinBasedControls, pin), (Field::PreemptionTimerValue, data.kick_saved_timer)]
        {
            // SAFETY: the values the VMM's validated controls had before the kick.
            if let Err(e) = unsafe { vmx_insn::vmwrite(root, f, val) } {
                return fail(k, VmxInstruction::Vmwrite, Some(f), e);
            }
        }
    }
    // A VM entry that failed its checks (bit 31) leaves the launch state as it was: a
    // VMCS whose VMLAUNCH failed must be launched again, not resumed.
    if reason & EXIT_REASON_ENTRY_FAILURE == 0 {
        data.launched = true;
    }
    // VM exits leave CR2 as the guest had it.
    data.cr2 = cpu::read_cr2();
    data.gprs.set(Gprs::RSP, vmread(root, Field::GuestRsp));
    let cr0 = vmread(root, Field::GuestCr0);
    if (cr0 ^ data.cached.cr0) & CR0_PG != 0 {
        // Paging went on or off without an exit (CR0.PG is the guest's own under
        // unrestricted guest), and long mode with it: the exit recorded EFER.LMA in the
        // "IA-32e mode guest" entry control, which the validator's view must follow.
        data.cached.controls.entry = vmread(root, Field::EntryControls) as u32;
    }
    // A timer expiry is the kernel's, as a tick, where the timer was its backstop or the
    // VMM's count goes on beyond it (`TimerCount::over`); never a kick's (see above).
    let basic = reason & 0xffff;
    if basic == ExitReason::ExternalInterrupt as u32
        || (basic == ExitReason::PreemptionTimer as u32 && data.kernel_timer())
    {
        return kept_exit(k, root, v, basic, (entry_tsc, exit_tsc));
    }
    if let Some(proc) = k.proc_controls_after_exit(reason) {
        // SAFETY: only interrupt-window exiting goes, which every CPU allows to be 0.
        if let Err(e) = unsafe { vmx_insn::vmwrite(root, Field::ProcBasedControls, proc.into()) } {
            return fail(k, VmxInstruction::Vmwrite, Some(Field::ProcBasedControls), e);
        }
    }
    // The kernel's own reads: what it validates the reply against, and what reflecting a
    // #PF needs. The groups the VMM asked for for this reason go straight into its page.
    // Without a message frame the exit reaches no VMM: nothing beyond the kernel's own.
    let mut area = k.exit_area(v, reason);
    let groups = area.as_ref().map_or(TransferMask::NONE, |a| a.0);
    let exception = reason & 0xffff == ExitReason::ExceptionOrNmi as u32;
    let read_if = |want: bool, f: Field| if want { vmread(root, f) } else { 0 };
    let core = ExitCore {
        reason,
        instruction_len: vmread(root, Field::ExitInstructionLength) as u32,
        qualification: read_if(
            exception || groups.contains(TransferMask::QUALIFICATION),
            Field::ExitQualification,
        ),
        exit_intr_info: read_if(
            exception || groups.contains(TransferMask::INTERRUPTION),
            Field::ExitInterruptionInfo,
        ) as u32,
        interruptibility: vmread(root, Field::GuestInterruptibility) as u32,
        rip: vmread(root, Field::GuestRip),
        rflags: vmread(root, Field::GuestRflags),
        cr0,
        cr4: vmread(root, Field::GuestCr4),
    };
    if let Some((_, m, data)) = area.as_mut() {
        (m.reason, m.instruction_len, m.interruptibility) =
            (reason, core.instruction_len, core.interruptibility);
        (m.rip, m.rflags, m.cr0, m.cr4) = (core.rip, core.rflags, core.cr0, core.cr4);
        // Base fields outside the groups read as zero, never as an earlier exit's.
        let has = |g: TransferMask| groups.contains(g);
        if !groups.intersects(BASE_READ_GROUPS) {
            // Most exits (CPUID, MSRs, HLT) ask for none: one test, then zeros.
            (m.qualification, m.instruction_info, m.guest_linear) = (0, 0, 0);
            (m.guest_physical, m.cr3) = (0, 0);
            (m.idt_vectoring_info, m.idt_vectoring_error) = (0, 0);
            (m.exit_intr_info, m.exit_intr_error) = (0, 0);
        } else {
            m.qualification = if has(TransferMask::QUALIFICATION) { core.qualification } else { 0 };
            m.instruction_info =
                read_if(has(TransferMask::INSTRUCTION_INFO), Field::ExitInstructionInfo) as u32;
            m.guest_linear = read_if(has(TransferMask::GUEST_LINEAR), Field::GuestLinearAddress);
            m.guest_physical =
                read_if(has(TransferMask::GUEST_PHYSICAL), Field::GuestPhysicalAddress);
            m.cr3 = read_if(has(TransferMask::CR3), Field::GuestCr3);
            let vectoring = has(TransferMask::VECTORING);
            m.idt_vectoring_info = read_if(vectoring, Field::IdtVectoringInfo) as u32;
            m.idt_vectoring_error = read_if(vectoring, Field::IdtVectoringErrorCode) as u32;
            let interruption = has(TransferMask::INTERRUPTION);
            m.exit_intr_info = if interruption { core.exit_intr_info } else { 0 };
            m.exit_intr_error = read_if(interruption, Field::ExitInterruptionErrorCode) as u32;
        }
        m.transfer = groups;
        (m.exit_tsc, m.entry_tsc) = (exit_tsc, entry_tsc);
        // The CPU keeps SS.DPL equal to the CPL in every mode (SDM 25.4.1).
        m.cpl = (vmread(root, Field::GuestSsAccessRights) >> 5 & 3) as u8;
        // Two distinct places: a copy, not a move that must allow for overlap.
        m.gprs.regs.copy_from_slice(&data.gprs.regs);
        if has(TransferMask::CONTROLS) {
            // The kernel's own copy: every control value the VMCS holds came through it.
            m.controls = data.cached.controls;
        }
        read_groups(root, groups, m);
    }
    k.vcpu_exited(&core)
}

/// An exit the kernel keeps: a host interrupt (`basic` 1), or an expiry of its own timer
/// (52). The timer's count is kept (`timer_after_kept_exit`), an event the exit cut short
/// goes in again, the interrupt is let in, and the CPU reschedules (a tick, or its own
/// expiry, preempts). Out of line: the hot path is the exits the VMM sees.
#[inline(never)]
fn kept_exit(k: &mut Held, root: &VmxRoot, v: u64, basic: u32, tsc: (u64, u64)) -> Next {
    let expired = basic == ExitReason::PreemptionTimer as u32;
    if let Err((f, e)) = timer_after_kept_exit(k, root, v, expired, tsc) {
        return fail(k, VmxInstruction::Vmwrite, Some(f), e);
    }
    if let Some(info) = reinjection(vmread(root, Field::IdtVectoringInfo) as u32) {
        // The interrupt cut an event's delivery short: it goes in again at the next
        // entry (the VMM never sees this exit).
        let error = vmread(root, Field::IdtVectoringErrorCode);
        let len = vmread(root, Field::ExitInstructionLength);
        let writes = [
            (Field::EntryInterruptionInfo, u64::from(info)),
            (Field::EntryExceptionErrorCode, error),
            (Field::EntryInstructionLength, len),
        ];
        for (f, val) in writes {
            // SAFETY: the event the CPU itself was delivering, as it reported it.
            if let Err(e) = unsafe { vmx_insn::vmwrite(root, f, val) } {
                return fail(k, VmxInstruction::Vmwrite, Some(f), e);
            }
        }
    }
    // The interrupt is still pending: let it in, in the kernel, then reschedule.
    // SAFETY: the kernel's interrupt handlers run on the kernel stack and only
    // acknowledge the line and note the tick.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
    let tick = percpu::get::<TICK>() != 0 || basic == ExitReason::PreemptionTimer as u32;
    percpu::set::<TICK>(0);
    // Not a tick: a device, or another CPU asking this one to reschedule.
    if tick {
        k.preempt()
    } else {
        k.schedule()
    }
}

/// An exit the kernel keeps (a host interrupt, or an expiry of its own: `expired`): the
/// backstop starts afresh at the next entry; the VMM's count goes on from what is left,
/// not afresh (`TimerCount`).
fn timer_after_kept_exit(
    k: &mut Held,
    root: &VmxRoot,
    v: u64,
    expired: bool,
    (entry_tsc, exit_tsc): (u64, u64),
) -> Result<(), (Field, VmxError)> {
    let (cap, shift) =
        k.vmx.as_ref().map_or((0, 0), |x| (x.backstop, x.caps.preemption_timer_shift()));
    let data = k.store.vcpu(v);
    if data.backstop {
        // Armed again at the next entry if it expired; else the CPU reloads it.
        data.backstop = !expired;
        return Ok(());
    }
    if !data.timer_counted() {
        return Ok(());
    }
    let left = if expired { 0 } else { data.timer.left(entry_tsc, exit_tsc, shift) };
    data.timer.count(left.saturating_add(data.timer.over), cap);
    data.timer.reduced = true;
    let (field, value) = (Field::PreemptionTimerValue, data.timer.loaded.into());
    // SAFETY: the value field takes any 32-bit number.
    unsafe { vmx_insn::vmwrite(root, field, value) }.map_err(|e| (field, e))
}

/// The VMM's timer is off: arm the kernel's backstop in it, one tick from each entry
/// (`VcpuData::backstop`), where the CPU has the timer and the TSC rate is known. Out of
/// line: armed once, it stays until the VMM writes the timer or it expires.
#[cold]
#[inline(never)]
fn arm_backstop(k: &mut Held, root: &VmxRoot, v: u64) -> Result<(), (Field, VmxError)> {
    let units = k.vmx.as_ref().map_or(0, |x| x.backstop);
    if units == 0 {
        return Ok(());
    }
    let data = k.store.vcpu(v);
    let pin = u64::from(data.cached.controls.pin | pin::PREEMPTION_TIMER);
    for (f, val) in [(Field::PinBasedControls, pin), (Field::PreemptionTimerValue, units.into())] {
        // SAFETY: `units` is non-zero only where the CPU has the preemption timer, and
        // the value field takes any 32-bit number.
        unsafe { vmx_insn::vmwrite(root, f, val) }.map_err(|e| (f, e))?;
    }
    data.backstop = true;
    data.timer.loaded = units;
    Ok(())
}

/// Leave VMX operation at shutdown: VMCLEAR the active VMCS, VMXOFF, clear CR4.VMXE.
pub fn shutdown() {
    percpu::set::<{ percpu::VMX_ROOT }>(0);
    // SAFETY: see `root`: the block no longer names the entry, and this is the last VMX
    // code on this CPU.
    let Some(root) = (unsafe { (*ROOTS.0[percpu::cpu()].get()).take() }) else { return };
    clear_active(&root);
    match vmx_insn::disable(root) {
        Ok(()) => crate::kprintln!("vmx: VMX operation left (VMXOFF, CR4.VMXE clear)"),
        Err((_, e)) => crate::kprintln!("vmx: VMXOFF failed: {e}"),
    }
}
