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
    use crate::arch::x86_64::{exit, init_cpu, serial::Serial, thread, vmx};
    use crate::{kprintln, root_task};
    use kernel::frame_alloc::{FrameAllocator, PhysRange};
    use kernel::multiboot2::{self, BootInfo, RegionKind};

    /// Entered from the long-mode stub with the boot loader's `eax` and `ebx`.
    #[no_mangle]
    extern "C" fn kernel_entry(magic: u32, info_phys: u32) -> ! {
        Serial::init();
        kprintln!("kernel: booting {} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
        if let Err(why) = memory::init() {
            kprintln!("kernel: cannot set up paging: {why}; halting");
            exit::exit(false);
        }
        init_cpu();
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
        let _vmx = vmx::probe();
        start_init(&info, &mut frames)
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
        let mut reserved: heapless::Vec<PhysRange, 40> = heapless::Vec::new();
        let fixed = [
            PhysRange::new(0, 1 << 20),
            PhysRange { start: k_start, end: k_end },
            PhysRange::new(info_phys, info.size() as u64),
        ];
        for r in fixed
            .into_iter()
            .chain(info.modules().map(|m| PhysRange { start: m.start, end: m.end }))
        {
            if reserved.push(r).is_err() {
                return Err(kernel::frame_alloc::Error::TooFragmented);
            }
        }
        FrameAllocator::new(usable, &reserved, PHYSMAP_SIZE)
    }

    fn start_init(info: &BootInfo<'_>, frames: &mut FrameAllocator) -> ! {
        let result = info
            .module("init")
            .ok_or(root_task::Error::Missing)
            .and_then(|m| {
                PhysMap.bytes(m.start, m.end - m.start).ok_or(root_task::Error::Unreachable)
            })
            .and_then(|image| root_task::load(image, frames));
        match result {
            Ok(tcb) => {
                thread::switch_to(tcb);
                kprintln!("kernel: entering init in ring 3");
                // SAFETY: `switch_to` made the new thread current with a sanitised ring-3
                // frame; the return path pops it and `iretq`s.
                unsafe { crate::arch::x86_64::entry::return_to_user() }
            }
            Err(e) => {
                kprintln!("kernel: init {e}");
                crate::no_runnable_thread()
            }
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        kprintln!("KERNEL PANIC: {info}");
        exit::exit(false)
    }
}

/// Nothing is left to run: say so and stop the machine with a failing verdict (a healthy
/// system ends through the root task's shutdown call).
#[cfg(target_os = "none")]
pub fn no_runnable_thread() -> ! {
    kprintln!("kernel: no runnable thread left; halting");
    arch::x86_64::exit::exit(false)
}
