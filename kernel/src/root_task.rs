//! Loading the root task `init` from its boot module into a fresh address space. Its
//! kernel objects and capabilities are made by `kernel::bootstrap`.

use crate::arch::x86_64::memory::{self, PhysMap};
use core::fmt;
use kernel::elf_loader::{self, Plan};
use kernel::frame_alloc::FrameAllocator;
use kernel::paging::{self, map_page, FrameSize, PhysMemory, NO_EXECUTE, USER, WRITABLE};
use protocols::bootinfo::BOOTINFO_ADDR;
use protocols::layout::{PAGE_SIZE, ROOT_STACK_SIZE, ROOT_STACK_TOP};

/// Why the root task could not be started.
#[derive(Debug)]
pub enum Error {
    /// The boot modules hold no module named `init`.
    Missing,
    /// The module lies outside the kernel's physical window.
    Unreachable,
    /// The image was refused.
    BadImage(elf_loader::Error),
    /// Mapping failed (out of memory).
    Map(paging::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "no boot module named \"init\""),
            Self::Unreachable => write!(f, "module lies outside physical memory the kernel maps"),
            Self::BadImage(e) => write!(f, "refused: {e}"),
            Self::Map(e) => write!(f, "cannot map: {e:?}"),
        }
    }
}

impl From<paging::Error> for Error {
    fn from(e: paging::Error) -> Self {
        Self::Map(e)
    }
}

/// The loaded image.
pub struct Loaded {
    /// Its PML4.
    pub root: u64,
    /// Its entry point.
    pub entry: u64,
    /// The boot-information frame mapped read-only at `BOOTINFO_ADDR`.
    pub bootinfo: u64,
}

fn nx() -> u64 {
    if memory::nx_enabled() {
        NO_EXECUTE
    } else {
        0
    }
}

/// Validate `image` and map it, a stack and the boot-information page into a new
/// address space.
pub fn load(image: &[u8], frames: &mut FrameAllocator) -> Result<Loaded, Error> {
    let plan = elf_loader::plan(image).map_err(Error::BadImage)?;
    let mem = &mut PhysMap;
    let root = paging::new_table(mem, frames)?;
    memory::share_kernel_half(mem, root);
    map_segments(&plan, image, root, frames)?;
    let mut page = ROOT_STACK_TOP - ROOT_STACK_SIZE;
    while page < ROOT_STACK_TOP {
        let f = paging::new_table(mem, frames)?;
        map_page(mem, frames, root, page, f, USER | WRITABLE | nx(), FrameSize::Small)?;
        page += PAGE_SIZE;
    }
    let bootinfo = paging::new_table(mem, frames)?;
    map_page(mem, frames, root, BOOTINFO_ADDR, bootinfo, USER | nx(), FrameSize::Small)?;
    crate::kprintln!(
        "kernel: init loaded: entry {:#x}, {} segments, stack top {:#x}",
        plan.entry,
        plan.segments.len(),
        ROOT_STACK_TOP
    );
    Ok(Loaded { root, entry: plan.entry, bootinfo })
}

fn map_segments(
    plan: &Plan,
    image: &[u8],
    root: u64,
    frames: &mut FrameAllocator,
) -> Result<(), Error> {
    let mem = &mut PhysMap;
    for seg in &plan.segments {
        let mut flags = USER;
        if seg.writable {
            flags |= WRITABLE;
        }
        if !seg.executable {
            flags |= nx();
        }
        let mut page = seg.page_start();
        while page < seg.page_end() {
            // `new_table` hands out a zeroed frame, which is what the bss part needs.
            let frame = paging::new_table(mem, frames)?;
            if let Some((at, range)) = seg.file_bytes_for_page(page) {
                let src = image.get(range).ok_or(Error::BadImage(elf_loader::Error::Truncated))?;
                if let Some(dst) = mem.frame(frame).get_mut(at..at + src.len()) {
                    dst.copy_from_slice(src);
                }
            }
            map_page(mem, frames, root, page, frame, flags, FrameSize::Small)?;
            page += PAGE_SIZE;
        }
    }
    Ok(())
}
