//! The x86-64 hardware layer: the only place with `unsafe` and assembly.

pub mod bkl;
pub mod boot;
pub mod cpu;
pub mod entry;
pub mod exit;
pub mod exit_trace;
pub mod fpu;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod ipi;
pub mod irq_lines;
pub mod lapic;
pub mod memory;
pub mod percpu;
pub mod phys_store;
pub mod pic;
pub mod pit;
pub mod reference;
pub mod run_loop;
pub mod serial;
pub mod smp;
pub mod stacks;
pub mod syscall;
pub mod thread;
pub mod trap;
pub mod vcpu_run;
pub mod vm_entry;
pub mod vmx;
pub mod vmx_insn;

use cpu::cr4;

/// Bring CPU `cpu` (0: the boot CPU) into the kernel's state: its tables, SSE for user
/// code, SMEP/SMAP where the CPU has them (the kernel reaches user memory only through
/// the physical window), and `syscall`.
pub fn init_cpu(cpu: usize) {
    gdt::init(cpu);
    percpu::init(cpu);
    if cpu == 0 {
        idt::init();
    } else {
        idt::load();
    }
    fpu::init();
    let (_, ebx, _, _) = cpu::cpuid(7, 0);
    let mut extra = 0;
    if ebx & (1 << 7) != 0 {
        extra |= cr4::SMEP;
    }
    if ebx & (1 << 20) != 0 {
        extra |= cr4::SMAP;
    }
    // SAFETY: SMEP/SMAP only restrict the kernel's access to user pages, which it never
    // makes directly.
    unsafe { cpu::write_cr4(cpu::read_cr4() | extra) }
    syscall::init();
    if cpu != 0 {
        return;
    }
    crate::kprintln!(
        "kernel: cpu ready (SMEP {}, SMAP {}, NX {})",
        extra & cr4::SMEP != 0,
        extra & cr4::SMAP != 0,
        memory::nx_enabled()
    );
}
