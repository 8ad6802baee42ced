//! The kernel binary: boot, hardware set-up, and the root task. The logic it relies on
//! lives in the `kernel` library; this crate is the thin bare-metal layer over it.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod root_task;
#[cfg(target_os = "none")]
use kernel::context;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the kernel runs on x86_64-unknown-none: build and boot it with `cargo xtask run`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod bare {
    use crate::arch::x86_64::memory::{self, PhysMap, PHYSMAP_SIZE};
    use crate::arch::x86_64::{exit, init_cpu, ioapic, ipi, lapic, pic, pit, reference};
    use crate::arch::x86_64::{serial::Serial, smp, thread, vcpu_run};
    use crate::{kprintln, root_task};
    use kernel::acpi::Platform;
    use kernel::bootstrap::{self, BootModule, ModuleRefusal, RootTask};
    use kernel::frame_alloc::{FrameAllocator, PhysRange};
    use kernel::multiboot2::{self, BootInfo, Firmware, RegionKind};
    use kernel::vcpu::VmxInfo;
    use protocols::bootinfo::MAX_MODULES;
    use protocols::layout::ROOT_STACK_TOP;

    /// Entered from the long-mode stub with the boot loader's `eax` and `ebx`.
    #[no_mangle]
    extern "C" fn kernel_entry(magic: u32, info_phys: u32) -> ! {
        crate::arch::x86_64::stacks::paint();
        Serial::init();
        kprintln!("kernel: booting {} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
        if let Err(why) = memory::init() {
            kprintln!("kernel: cannot set up paging: {why}; halting");
            exit::exit(false);
        }
        init_cpu(0);
        let info = match boot_info(magic, u64::from(info_phys)) {
            Ok(info) => info,
            Err(e) => {
                kprintln!("kernel: boot information refused: {e:?}; halting");
                exit::exit(false);
            }
        };
        let mut frames = match frame_allocator(&info, u64::from(info_phys)) {
            Ok(f) => f,
            Err(e) => {
                kprintln!("kernel: cannot build the frame allocator: {e:?}; halting");
                exit::exit(false);
            }
        };
        kprintln!("kernel: {} KiB of free memory", frames.free_bytes() / 1024);
        let platform = platform(&info);
        let vmx = vcpu_run::enable(&mut frames);
        if let (Some(p), Some(_)) = (&platform, &vmx) {
            smp::take_vmxon_regions(&mut frames, p);
        }
        start_init(&info, &mut frames, vmx, platform.as_ref())
    }

    /// What the firmware says of the machine; `None` (a one-CPU PC with 8259s and a PIT)
    /// where its ACPI tables are missing or refused.
    fn platform(info: &BootInfo<'_>) -> Option<Platform> {
        match info.firmware() {
            Firmware::Bios => kprintln!("kernel: firmware: BIOS"),
            Firmware::Uefi { system_table } => {
                kprintln!("kernel: firmware: UEFI (system table at {system_table:#x})")
            }
        }
        let phys = |at: u64, len: usize| PhysMap.bytes(at, len as u64);
        let p = match Platform::read(info.rsdp(), &phys) {
            Ok(p) => p,
            Err(e) => {
                kprintln!("acpi: tables not used: {e:?}; assuming one CPU, 8259 PICs and a PIT");
                return None;
            }
        };
        let ids = p.cpus.iter().map(|c| c.apic_id);
        kprintln!("acpi: {} CPUs, local APIC IDs {:?}", p.cpus.len(), Ids(ids));
        if p.cpus_ignored > 0 {
            kprintln!("acpi: {} more CPUs than the kernel supports, left off", p.cpus_ignored);
        }
        for io in &p.io_apics {
            kprintln!("acpi: I/O APIC {} at {:#x}, GSIs from {}", io.id, io.address, io.gsi_base);
        }
        kprintln!("acpi: 8259 PICs {}", if p.legacy_pics { "present" } else { "absent" });
        match p.pm_timer {
            Some(t) => kprintln!("acpi: PM timer at port {:#x}, {} bits", t.port, t.bits),
            None => kprintln!("acpi: no PM timer"),
        }
        Some(p)
    }

    /// Prints a list of numbers as `[0, 1]` without allocating.
    struct Ids<I>(I);

    impl<I: Iterator<Item = u32> + Clone> core::fmt::Debug for Ids<I> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_list().entries(self.0.clone()).finish()
        }
    }

    fn boot_info(magic: u32, phys: u64) -> Result<BootInfo<'static>, multiboot2::Error> {
        let header = PhysMap.bytes(phys, 8).ok_or(multiboot2::Error::Truncated)?;
        let mut h = [0u8; 8];
        h.copy_from_slice(header);
        let size = multiboot2::total_size(&h) as u64;
        let bytes = PhysMap.bytes(phys, size).ok_or(multiboot2::Error::Truncated)?;
        let info = BootInfo::parse(magic, bytes)?;
        kprintln!(
            "kernel: boot loader {:?}, command line {:?}",
            info.bootloader().unwrap_or("?"),
            info.cmdline().unwrap_or("")
        );
        for r in info.memory_map() {
            kprintln!(
                "kernel: memory {:#014x}..{:#014x} {:?}",
                r.base,
                r.base.saturating_add(r.len),
                r.kind
            );
        }
        for m in info.modules() {
            kprintln!("kernel: module {:?} at {:#x}..{:#x}", m.name, m.start, m.end);
        }
        Ok(info)
    }

    fn frame_allocator(
        info: &BootInfo<'_>,
        info_phys: u64,
    ) -> Result<FrameAllocator, kernel::frame_alloc::Error> {
        let usable = info
            .memory_map()
            .filter(|r| r.kind == RegionKind::Available)
            .map(|r| PhysRange::new(r.base, r.len));
        let (k_start, k_end) = memory::kernel_image();
        let mut reserved: heapless::Vec<PhysRange, 80> = heapless::Vec::new();
        let fixed = [
            PhysRange::new(0, 1 << 20),
            PhysRange { start: k_start, end: k_end },
            PhysRange::new(info_phys, info.size() as u64),
        ];
        let modules = info.modules().map(|m| PhysRange { start: m.start, end: m.end });
        // A region the map calls reserved stays reserved even where another entry
        // claims it is usable.
        let firmware = info
            .memory_map()
            .filter(|r| r.kind != RegionKind::Available)
            .map(|r| PhysRange::new(r.base, r.len));
        for r in fixed.into_iter().chain(modules).chain(firmware) {
            if reserved.push(r).is_err() {
                return Err(kernel::frame_alloc::Error::TooFragmented);
            }
        }
        FrameAllocator::new(usable, &reserved, PHYSMAP_SIZE)
    }

    fn start_init(
        info: &BootInfo<'_>,
        frames: &mut FrameAllocator,
        vmx: Option<VmxInfo>,
        platform: Option<&Platform>,
    ) -> ! {
        let loaded = info
            .module("init")
            .ok_or(root_task::Error::Missing)
            .and_then(|m| {
                PhysMap.bytes(m.start, m.end - m.start).ok_or(root_task::Error::Unreachable)
            })
            .and_then(|image| root_task::load(image, frames));
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                kprintln!("kernel: init {e}");
                crate::arch::x86_64::run_loop::no_runnable_thread()
            }
        };
        const POOL_BITS: u8 = 18;
        let blocks = (
            frames.alloc_block(12),
            frames.alloc_block(bootstrap::ROOT_CNODE_BITS),
            frames.alloc_block(POOL_BITS),
            frames.alloc(),
        );
        let (Some(tcb), Some(cnode), Some(pool), Some(irq_node)) = blocks else {
            kprintln!("kernel: not enough memory for the root task's objects; halting");
            exit::exit(false)
        };
        let rt = RootTask {
            tcb,
            cnode,
            vspace: loaded.root,
            pool,
            pool_pages: 1 << (POOL_BITS - 12),
            bootinfo: loaded.bootinfo,
            irq_node,
            entry: loaded.entry,
            stack: ROOT_STACK_TOP - 8,
        };
        let free: heapless::Vec<PhysRange, { kernel::frame_alloc::MAX_RANGES }> =
            frames.free_ranges().iter().copied().collect();
        let mut modules: heapless::Vec<BootModule<'_>, { MAX_MODULES + 1 }> = heapless::Vec::new();
        let mut refused = |m: &BootModule<'_>, why: ModuleRefusal| {
            kprintln!("kernel: boot module \"{}\" refused: {why}", m.name);
        };
        for m in info.modules().filter(|m| m.name != "init") {
            let module = BootModule { name: m.name, start: m.start, end: m.end };
            if modules.push(module).is_err() {
                refused(&module, ModuleRefusal::TooMany);
            }
        }
        // The other CPUs first: the root task learns how many are online. They idle until
        // a thread is moved to them.
        start_interrupts(info, platform);
        let tsc_hz = reference::tsc_hz();
        let cpus = start_other_cpus(info, platform, vmx.is_some());
        kprintln!("kernel: TSC at {} kHz", tsc_hz / 1000);
        let started = crate::with_kernel(|k| {
            k.kernel_half = memory::kernel_half();
            k.nx = memory::nx_enabled();
            k.vmx = vmx.map(|v| v.with_clock(tsc_hz, pit::TICK_HZ));
            k.cpus = cpus;
            k.stall = ipi::stall;
            bootstrap::start_root_task(&mut **k, &rt, &free, &modules, &mut refused)
        });
        match started {
            Ok((n, bytes)) => {
                kprintln!("kernel: init receives {n} untyped capabilities, {} KiB", bytes / 1024)
            }
            Err(e) => {
                kprintln!("kernel: cannot start the root task: {e:?}; halting");
                exit::exit(false)
            }
        }
        kprintln!("kernel: entering init in ring 3");
        crate::with_kernel(|k| thread::activate(&mut **k));
        // SAFETY: `activate` made init current with a sanitised ring-3 frame; the
        // return path pops it and `iretq`s.
        unsafe { crate::arch::x86_64::entry::return_to_user() }
    }

    /// Start the other CPUs the tables list, and say how many are online. They need the
    /// tables' list, a local APIC to send their IPIs from, and the trampoline's page free.
    fn start_other_cpus(info: &BootInfo<'_>, platform: Option<&Platform>, vmx: bool) -> usize {
        let cpus = match platform {
            Some(p) if lapic::in_use() && p.cpus.len() > 1 => {
                // The kernel keeps the whole low megabyte for itself, so free RAM there is
                // the kernel's to use.
                let page = smp::TRAMPOLINE;
                let free = info.memory_map().any(|r| {
                    r.kind == RegionKind::Available
                        && r.base <= page
                        && r.base.saturating_add(r.len) >= page + 4096
                });
                if free {
                    smp::start(p)
                } else {
                    kprintln!("smp: page {page:#x} is not free RAM; the other CPUs stay off");
                    1
                }
            }
            _ => 1,
        };
        kprintln!("smp: {cpus} CPUs online");
        if cpus > 1 && vmx {
            kprintln!("smp: {} of {} started CPUs in VMX root operation", smp::in_vmx(), cpus - 1);
        }
        cpus
    }

    /// The tick and the device IRQ lines: the local APIC timer and the I/O APIC where
    /// the machine has them, else the PIT and the 8259s; the 8259s are touched only where
    /// the ACPI tables (or their absence) say they exist.
    fn start_interrupts(info: &BootInfo<'_>, platform: Option<&Platform>) {
        let pics = platform.is_none_or(|p| p.legacy_pics);
        if pics {
            pic::init_masked();
        }
        if let Some(timer) = platform.and_then(|p| p.pm_timer) {
            reference::use_pm_timer(timer);
        }
        // `tick=pit` on the command line keeps the PIT and the 8259s (the fallback path).
        let pit_only = info.cmdline().is_some_and(|c| c.split(' ').any(|w| w == "tick=pit"));
        let lapic_tick = !pit_only && lapic::start();
        if !lapic_tick {
            if !pics {
                kprintln!("kernel: no local APIC timer, and no 8259s for the PIT's tick; halting");
                exit::exit(false);
            }
            pit::start();
            kprintln!("kernel: tick from the PIT (IRQ 0)");
        }
        let routed = lapic_tick && platform.is_some_and(|p| ioapic::start(p, lapic::id()));
        kprintln!(
            "kernel: device IRQs through {}",
            match (routed, pics) {
                (true, _) => "the I/O APIC",
                (false, true) => "the 8259 PICs",
                (false, false) => "nothing: no usable I/O APIC and no 8259s; drivers get none",
            }
        );
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        crate::end_driver_line();
        kprintln!("KERNEL PANIC: {info}");
        exit::exit(false)
    }
}

#[cfg(target_os = "none")]
pub use arch::x86_64::bkl::with_kernel;

/// The machine as the kernel's logic sees it: `DebugWrite`'s console, ports, IRQ lines.
#[cfg(target_os = "none")]
pub struct Console;

/// What the kernel knows of the console driver's output on the shared COM1.
#[cfg(target_os = "none")]
static SHARED: spin::Mutex<kernel::console_share::SharedConsole> =
    spin::Mutex::new(kernel::console_share::SharedConsole::new());

/// Before the kernel's closing lines: end a console driver's half-sent line, so they
/// start on a line of their own.
#[cfg(target_os = "none")]
pub fn end_driver_line() {
    // `try_lock`: a panic may have struck while the lock was held.
    let end = SHARED.try_lock().map(|mut s| s.end_driver_line()).unwrap_or_default();
    arch::x86_64::serial::Serial::write_bytes(end);
}

#[cfg(target_os = "none")]
impl kernel::state::Platform for Console {
    fn debug_write(&mut self, bytes: &[u8]) {
        arch::x86_64::serial::Serial::write_bytes(bytes);
    }
    fn port_in(&mut self, port: u16, width: protocols::io::PortWidth) -> u32 {
        // SAFETY: the caller's IoPorts capability covers the port, and no capability
        // covers the PICs or the PIT, whose state the kernel depends on.
        unsafe { arch::x86_64::cpu::port_in(port, width) }
    }
    fn port_out(&mut self, port: u16, width: protocols::io::PortWidth, value: u32) {
        // SAFETY: as for `port_in`.
        unsafe { arch::x86_64::cpu::port_out(port, width, value) }
        SHARED.lock().driver_wrote(port, width, value);
    }
    fn mask_irq(&mut self, irq: u8) {
        arch::x86_64::irq_lines::mask(irq);
    }
    fn unmask_irq(&mut self, irq: u8) {
        arch::x86_64::irq_lines::unmask(irq);
    }
}
