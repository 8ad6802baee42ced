//! The kernel's stacks, one set per CPU: the one every kernel entry runs on and the IST
//! stacks of NMI, #DF and #MC, each above a guard page that `memory` leaves unmapped. The
//! boot CPU's set comes first; its kernel stack is `kernel_stack_top`.
//!
//! An overflow then faults on the guard page instead of overwriting what lies below;
//! the CPU cannot push that fault's frame on the overflowed stack either, so it raises
//! #DF, which runs on its own IST stack and reports the overflow. At boot the unused part
//! of the kernel stack is painted, so the shutdown report can say how deep it ever got.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The kernel stack's size.
pub const KERNEL_STACK: u64 = 64 * 1024;
/// Each IST stack's size.
pub const IST_STACK: u64 = 16 * 1024;
const GUARD: u64 = 4096;
/// One CPU's set: the kernel stack and three IST stacks, each with its guard page.
const SET: u64 = GUARD + KERNEL_STACK + 3 * (GUARD + IST_STACK);
/// Sets: one per CPU the kernel can start.
const CPUS: usize = kernel::acpi::MAX_CPUS;
/// What the unused kernel stack is painted with.
const PAINT: u64 = 0x5a5a_5a5a_5a5a_5a5a;

core::arch::global_asm!(
    r#"
    .section .bss.stacks, "aw", @nobits
    .balign 4096
    .global kernel_stacks_start
kernel_stacks_start:
    .skip {guard}
    .global kernel_stack_bottom
kernel_stack_bottom:
    .skip {kernel}
    .global kernel_stack_top
kernel_stack_top:
    .rept 3
    .skip {guard}
    .skip {ist}
    .endr
    .skip {others}
"#,
    guard = const GUARD,
    kernel = const KERNEL_STACK,
    ist = const IST_STACK,
    others = const SET * (CPUS as u64 - 1),
);

extern "C" {
    static kernel_stacks_start: u8;
    static kernel_stack_bottom: u8;
}

/// CPU `cpu`'s guard pages: below its kernel stack, then below its three IST stacks.
fn guards_of(cpu: usize) -> [u64; 4] {
    let start = &raw const kernel_stacks_start as u64 + cpu as u64 * SET;
    let ist = |i: u64| start + GUARD + KERNEL_STACK + i * (GUARD + IST_STACK);
    [start, ist(0), ist(1), ist(2)]
}

/// Every CPU's guard pages.
pub fn guard_pages() -> impl Iterator<Item = u64> {
    (0..CPUS).flat_map(guards_of)
}

/// Whether `addr` lies in one of the guard pages.
pub fn is_guard(addr: u64) -> bool {
    guard_pages().any(|g| (g..g + GUARD).contains(&addr))
}

/// The top of CPU `cpu`'s kernel stack.
pub fn kernel_top(cpu: usize) -> u64 {
    guards_of(cpu)[0] + GUARD + KERNEL_STACK
}

/// The top of CPU `cpu`'s IST stack `i` (0-based).
pub fn ist_top(cpu: usize, i: usize) -> u64 {
    guards_of(cpu)[1 + i % 3] + GUARD + IST_STACK
}

/// Where the painted part ends (its first word above it was in use at boot).
static PAINTED_TO: AtomicU64 = AtomicU64::new(0);

/// How deep boot went (0 until the run time's painting).
static BOOT_USE: AtomicU64 = AtomicU64::new(0);

/// How deep the kernel stack went during boot.
pub fn boot_use() -> u64 {
    BOOT_USE.load(Relaxed)
}

/// Once, at the first general syscall (an entry starts at the stack's top, so boot's
/// frames are gone): note how deep boot went and paint again, so that the depth
/// reported at shutdown is the run time's own.
pub fn paint_once_running() {
    if BOOT_USE.load(Relaxed) == 0 {
        BOOT_USE.store(deepest_use().max(1), Relaxed);
        paint();
    }
}

/// Paint the kernel stack below the caller's frame (with a margin for this function's
/// own calls).
pub fn paint() {
    let bottom = &raw const kernel_stack_bottom as u64;
    let rsp: u64;
    // SAFETY: reads the stack pointer only.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
    let end = (rsp - 512) & !7;
    for at in (bottom..end).step_by(8) {
        // SAFETY: `[bottom, end)` is the kernel stack below the deepest frame in use
        // (the kernel runs with interrupts off and nothing else uses this stack), mapped
        // writable as part of the kernel's .bss.
        unsafe { core::ptr::write_volatile(at as *mut u64, PAINT) };
    }
    PAINTED_TO.store(end, Relaxed);
}

/// The deepest the kernel stack has been since `paint`, in bytes from its top.
pub fn deepest_use() -> u64 {
    let bottom = &raw const kernel_stack_bottom as u64;
    let painted = PAINTED_TO.load(Relaxed);
    if painted == 0 {
        return 0;
    }
    let first_used = (bottom..painted)
        .step_by(8)
        // SAFETY: as in `paint`: the kernel stack's own memory, read below the frames in
        // use.
        .find(|at| unsafe { core::ptr::read_volatile(*at as *const u64) } != PAINT)
        .unwrap_or(painted);
    bottom + KERNEL_STACK - first_used
}
