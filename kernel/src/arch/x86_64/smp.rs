//! Starting the other CPUs the MADT lists, by the SDM's multiprocessor initialization
//! protocol: INIT, 10 ms, then two STARTUP IPIs naming a real-mode trampoline copied to a
//! page below 1 MiB. A CPU comes up on the boot page tables (which identity-map the
//! trampoline and mirror the kernel image), switches to the kernel's, loads its own GDT,
//! TSS and IST stacks and the shared IDT, enables its local APIC, enters VMX root
//! operation where the boot CPU did (with a VMXON region of its own, taken from memory
//! before the root task gets the rest), starts its timer, says it arrived and enters the
//! run loop, where it idles until a thread or vCPU is moved to it (`ipi.rs` has what
//! running CPUs ask of each other).

use super::memory::{self, frame_at, PHYS_OFFSET};
use super::{lapic, reference, stacks, vcpu_run, vmx_insn};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};
use kernel::acpi::{Platform, MAX_CPUS};
use kernel::frame_alloc::FrameAllocator;
use protocols::x86::{EFER_LME, EFER_NXE};

/// The trampoline's page: below 1 MiB (a STARTUP IPI names a real-mode page), in the low
/// megabyte that the frame allocator never hands out.
pub const TRAMPOLINE: u64 = 0x8000;
/// How long a started CPU has to arrive.
const ARRIVAL_US: u64 = 100_000;
/// The highest xAPIC ID an IPI can name (0xff is the broadcast).
const MAX_XAPIC_ID: u32 = 0xfe;
/// Each online CPU's local APIC ID, by index.
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

core::arch::global_asm!(
    r#"
    .pushsection .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (ap_gdt_ptr - ap_trampoline_start + {base})
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(ap_32 - ap_trampoline_start + {base})
    .code32
ap_32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl (ap_cr3 - ap_trampoline_start + {base}), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl (ap_efer - ap_trampoline_start + {base}), %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010000, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(ap_64 - ap_trampoline_start + {base})
    .code64
ap_64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq (ap_stack - ap_trampoline_start + {base}), %rsp
    movq (ap_cpu - ap_trampoline_start + {base}), %rdi
    movq (ap_entry_address - ap_trampoline_start + {base}), %rax
    callq *%rax
2:  cli
    hlt
    jmp 2b
    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
ap_gdt_ptr:
    .short ap_gdt_ptr - ap_gdt - 1
    .long ap_gdt - ap_trampoline_start + {base}
    .balign 8
    .global ap_cr3
ap_cr3: .quad 0
    .global ap_efer
ap_efer: .quad 0
    .global ap_stack
ap_stack: .quad 0
    .global ap_cpu
ap_cpu: .quad 0
    .global ap_entry_address
ap_entry_address: .quad 0
    .global ap_trampoline_end
ap_trampoline_end:
    .popsection
"#,
    base = const TRAMPOLINE,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_cr3: u8;
    static ap_efer: u8;
    static ap_stack: u8;
    static ap_cpu: u8;
    static ap_entry_address: u8;
    static boot_pml4: u8;
}

/// The index of the last CPU that arrived (0: none since the last start).
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
/// Each CPU's VMXON region (0: the CPU stays out of VMX operation).
static VMXON: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// How many started CPUs entered VMX root operation.
static IN_VMX: AtomicUsize = AtomicUsize::new(0);
/// How many CPUs run the kernel (the boot CPU, and each started one from its arrival).
static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// Take a VMXON region for each CPU the tables list besides the boot CPU (while the frame
/// allocator still has memory of its own: the root task gets the rest).
pub fn take_vmxon_regions(frames: &mut FrameAllocator, platform: &Platform) {
    for slot in VMXON.iter().skip(1).take(platform.cpus.len().saturating_sub(1)) {
        let Some(region) = frames.alloc() else { break };
        slot.store(region, Release);
    }
}

/// Where a trampoline slot lies in the copy's page.
fn slot(symbol: *const u8) -> *mut u64 {
    let offset = symbol as u64 - &raw const ap_trampoline_start as u64;
    (PHYS_OFFSET + TRAMPOLINE + offset) as *mut u64
}

fn set(symbol: *const u8, value: u64) {
    // SAFETY: the slot lies in the trampoline's copy, in the low megabyte the kernel owns
    // and reaches through the physical window; no CPU runs the trampoline meanwhile.
    unsafe { slot(symbol).write_volatile(value) }
}

/// The first Rust a started CPU runs, on its own kernel stack and the boot page tables.
extern "C" fn ap_entry(cpu: usize) -> ! {
    // SAFETY: the boot CPU built the kernel's tables before it started this one, which
    // runs on the boot tables and leaves the trampoline behind for good.
    unsafe { memory::enter() };
    super::init_cpu(cpu);
    lapic::enable_here();
    let region = VMXON.get(cpu).map_or(0, |r| r.load(Acquire));
    if region != 0 {
        // SAFETY: the region was taken from the frame allocator for this CPU alone and is
        // never freed; nothing else on this CPU changes CR0/CR4 meanwhile.
        if let Ok(root) = unsafe { vmx_insn::enable(region, frame_at(region)) } {
            vcpu_run::set_root(root);
            IN_VMX.fetch_add(1, Release);
        }
    }
    lapic::start_timer_here();
    ONLINE.fetch_add(1, Release);
    ARRIVED.store(cpu, Release);
    // Nothing runs here yet: the run loop idles until a thread is moved to this CPU.
    crate::with_kernel(|k| {
        let next = k.schedule();
        super::run_loop::resume(k, next)
    });
    // SAFETY: `resume` made a thread current here with a sanitised ring-3 frame.
    unsafe { super::entry::return_to_user() }
}

/// CPU `cpu`'s local APIC ID (where IPIs to it go).
pub fn apic_id(cpu: usize) -> u32 {
    APIC_IDS.get(cpu).map_or(0, |a| a.load(Relaxed))
}

/// How many CPUs run the kernel now.
#[inline(always)]
pub fn online() -> usize {
    ONLINE.load(Acquire)
}

/// How many started CPUs entered VMX root operation.
pub fn in_vmx() -> usize {
    IN_VMX.load(Acquire)
}

/// Start every CPU the tables list besides this one; returns how many are online, this
/// one included.
pub fn start(platform: &Platform) -> usize {
    let me = lapic::id();
    APIC_IDS[0].store(me, Relaxed);
    let start = &raw const ap_trampoline_start;
    let len = &raw const ap_trampoline_end as usize - start as usize;
    // SAFETY: the trampoline's page lies in the low megabyte, which the frame allocator
    // never hands out, so nothing else lives there; the source is the kernel's rodata.
    unsafe { core::ptr::copy_nonoverlapping(start, (PHYS_OFFSET + TRAMPOLINE) as *mut u8, len) }
    let nx = if memory::nx_enabled() { EFER_NXE } else { 0 };
    set(&raw const ap_cr3, &raw const boot_pml4 as u64);
    set(&raw const ap_efer, EFER_LME | nx);
    set(&raw const ap_entry_address, ap_entry as *const () as u64);
    let mut online = 1;
    for cpu in platform.cpus.iter().filter(|c| c.apic_id != me) {
        if online == MAX_CPUS {
            break;
        }
        if cpu.apic_id > MAX_XAPIC_ID {
            crate::kprintln!(
                "smp: CPU with APIC ID {} left off: no xAPIC IPI reaches it",
                cpu.apic_id
            );
            continue;
        }
        set(&raw const ap_stack, stacks::kernel_top(online));
        APIC_IDS[online].store(cpu.apic_id, Relaxed);
        set(&raw const ap_cpu, online as u64);
        ARRIVED.store(0, Release);
        lapic::send_init(cpu.apic_id);
        reference::delay_us(10_000);
        for _ in 0..2 {
            lapic::send_startup(cpu.apic_id, (TRAMPOLINE >> 12) as u8);
            reference::delay_us(200);
        }
        if reference::wait_us(ARRIVAL_US, || ARRIVED.load(Acquire) == online) {
            online += 1;
        } else {
            crate::kprintln!("smp: CPU with APIC ID {} did not start", cpu.apic_id);
        }
    }
    online
}
