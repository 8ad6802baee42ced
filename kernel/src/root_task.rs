//! Loading the root task `init` from its boot module into a fresh address space.

use crate::arch::x86_64::memory::{self, PhysMap};
use crate::arch::x86_64::thread::Thread;
use core::fmt;
use kernel::context::UserContext;
use kernel::elf_loader::{self, Plan};
use kernel::frame_alloc::FrameAllocator;
use kernel::paging::{self, map_page, PhysMemory, NO_EXECUTE, USER, WRITABLE};
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

/// Validate and load `image`, returning the frame of the new thread's TCB.
pub fn load(image: &[u8], frames: &mut FrameAllocator) -> Result<u64, Error> {
    let plan = elf_loader::plan(image).map_err(Error::BadImage)?;
    let mem = &mut PhysMap;
    let root = paging::new_table(mem, frames)?;
    memory::share_kernel_half(mem, root);
    map_segments(&plan, image, root, frames)?;
    let nx = if memory::nx_enabled() { NO_EXECUTE } else { 0 };
    let mut page = ROOT_STACK_TOP - ROOT_STACK_SIZE;
    while page < ROOT_STACK_TOP {
        let f = paging::new_table(mem, frames)?;
        map_page(mem, frames, root, page, f, USER | WRITABLE | nx)?;
        page += PAGE_SIZE;
    }
    let tcb = frames.alloc().ok_or(paging::Error::OutOfMemory)?;
    // The stack pointer is 16-byte aligned minus the return-address slot, as after a call.
    let context = UserContext::new_user(plan.entry, ROOT_STACK_TOP - 8);
    Thread::create(tcb, root, context, "init", true);
    crate::kprintln!(
        "kernel: init loaded: entry {:#x}, {} segments, stack top {:#x}",
        plan.entry,
        plan.segments.len(),
        ROOT_STACK_TOP
    );
    Ok(tcb)
}

fn map_segments(
    plan: &Plan,
    image: &[u8],
    root: u64,
    frames: &mut FrameAllocator,
) -> Result<(), Error> {
    let mem = &mut PhysMap;
    let nx = if memory::nx_enabled() { NO_EXECUTE } else { 0 };
    for seg in &plan.segments {
        let mut flags = USER;
        if seg.writable {
            flags |= WRITABLE;
        }
        if !seg.executable {
            flags |= nx;
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
            map_page(mem, frames, root, page, frame, flags)?;
            page += PAGE_SIZE;
        }
    }
    Ok(())
}
