//! Starting processes from boot modules: the root task maps a module's frames, loads the
//! ELF image page by page into fresh frames of a new address space, and gives the process
//! a CSpace of its own.

use crate::alloc::Alloc;
use kernel::elf_loader::{self, Plan};
use protocols::bootinfo::{self, slot, ModuleDesc, BOOTINFO_ADDR};
use protocols::error::Error;
use protocols::manifest::slot as own;
use protocols::object::{map, Invocation, ObjectType};
use protocols::rights::Rights;
use rt::ipc::invoke;

/// The bytes of a position-independent program that a `global_asm!` block placed between
/// the global symbols `$start` and `$end` (for [`spawn_code`]).
macro_rules! code_between {
    ($start:ident, $end:ident) => {{
        extern "C" {
            static $start: u8;
            static $end: u8;
        }
        let start = &raw const $start;
        let end = &raw const $end;
        // SAFETY: both symbols delimit code in this image's read-only text.
        unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
    }};
}
pub(crate) use code_between;

/// Top of a new process's stack.
const STACK_TOP: u64 = 0x0000_7fff_0000_0000;
/// Its size in pages: 128 KiB, room for a VMM's exit loop (the VM's state, 9 KiB with
/// room for 8 vCPUs, lives in its frame, and a restarted VMM moves it through several)
/// on top of the Linux loader's page-sized temporaries.
const STACK_PAGES: u64 = 32;

/// A process made by [`spawn`].
#[derive(Clone, Copy)]
pub struct Process {
    /// Its TCB.
    pub tcb: u64,
    /// Its CNode (in the root task's CSpace).
    pub cnode: u64,
    /// Its address space (in the root task's CSpace).
    pub vspace: u64,
}

/// The boot module called `name`.
pub fn module(name: &str) -> Option<ModuleDesc> {
    // SAFETY: the kernel maps the boot-information page read-only at BOOTINFO_ADDR.
    let words = unsafe { core::slice::from_raw_parts(BOOTINFO_ADDR as *const u64, 512) };
    bootinfo::modules(words)?.find(|m| m.name() == name)
}

/// Map module `m` read-only into the root task; returns its bytes.
pub fn map_module(a: &mut Alloc, m: &ModuleDesc) -> Result<&'static [u8], Error> {
    let va = a.vaddr(m.pages());
    for i in 0..m.pages() {
        invoke(m.first_slot + i, Invocation::FrameMap, &[slot::VSPACE, va + i * 4096, 0])?;
    }
    // SAFETY: the pages were just mapped, read-only, and stay mapped for good.
    Ok(unsafe { core::slice::from_raw_parts(va as *const u8, m.size as usize) })
}

/// Frame capabilities the root task keeps for programs' read-only pages, all programs
/// together.
const SHARED_FRAMES: usize = 4096;

/// Boot modules already mapped into the root task, by their first frame's slot, and the
/// frames their read-only pages (code and constants) were loaded into. A module's frames
/// map only once, so processes that run the same program share one mapping of its image;
/// and a second process of the same program maps copies of the first one's read-only
/// frames instead of loading them again (every VM's VMM is one copy of its code).
#[derive(Default)]
pub struct Images {
    mapped: heapless::Vec<Image, { bootinfo::MAX_MODULES }>,
    /// The frame slots of every [`Image::shared`] range.
    frames: heapless::Vec<u64, SHARED_FRAMES>,
}

struct Image {
    first_slot: u64,
    bytes: &'static [u8],
    /// Where its read-only frames are in [`Images::frames`], once a process ran it (none
    /// if they did not fit: later processes then load their own).
    shared: Option<core::ops::Range<usize>>,
    loaded: bool,
}

impl Images {
    /// Module `m`'s index, its bytes mapped on first use.
    fn index(&mut self, a: &mut Alloc, m: &ModuleDesc) -> Result<usize, Error> {
        if let Some(i) = self.mapped.iter().position(|img| img.first_slot == m.first_slot) {
            return Ok(i);
        }
        let bytes = map_module(a, m)?;
        let image = Image { first_slot: m.first_slot, bytes, shared: None, loaded: false };
        self.mapped.push(image).map_err(|_| Error::OutOfMemory)?;
        Ok(self.mapped.len() - 1)
    }

    /// Load the segments of image `i` (planned as `plan`) into the address space `vs`.
    fn load(&mut self, a: &mut Alloc, i: usize, plan: &Plan, vs: u64) -> Result<(), Error> {
        let image = self.mapped.get(i).ok_or(Error::InvalidArgument)?;
        let (bytes, first_load) = (image.bytes, !image.loaded);
        let mut shared = image.shared.clone();
        let start = self.frames.len();
        let mut fits = first_load;
        let scratch = a.vaddr(1);
        for seg in &plan.segments {
            let rights = if seg.writable {
                map::WRITE
            } else if seg.executable {
                map::EXECUTE
            } else {
                0
            };
            let mut page = seg.page_start();
            while page < seg.page_end() {
                let copy = match shared.as_mut() {
                    Some(r) if !seg.writable => r.next().and_then(|at| self.frames.get(at)),
                    _ => None,
                };
                let f = match copy {
                    Some(&original) => {
                        let f = a.slot();
                        let all = u64::from(Rights::ALL.bits());
                        invoke(slot::CNODE, Invocation::CNodeCopy, &[original, f, all])?;
                        f
                    }
                    None => {
                        let (at, bytes) = match seg.file_bytes_for_page(page) {
                            Some((at, range)) => {
                                (at, bytes.get(range).ok_or(Error::InvalidArgument)?)
                            }
                            None => (0, &[][..]),
                        };
                        let f = filled_frame(a, scratch, at, bytes)?;
                        if fits && !seg.writable {
                            fits = self.frames.push(f).is_ok();
                        }
                        f
                    }
                };
                invoke(f, Invocation::FrameMap, &[vs, page, rights])?;
                page += 4096;
            }
        }
        let image = self.mapped.get_mut(i).ok_or(Error::InvalidArgument)?;
        if first_load {
            image.loaded = true;
            if fits {
                image.shared = Some(start..self.frames.len());
            } else {
                self.frames.truncate(start);
            }
        }
        Ok(())
    }
}

/// A fresh frame holding `bytes` at `offset`, left unmapped: returns its slot.
fn filled_frame(a: &mut Alloc, scratch: u64, offset: usize, bytes: &[u8]) -> Result<u64, Error> {
    let f = a.make(ObjectType::Frame, 0)?;
    invoke(f, Invocation::FrameMap, &[slot::VSPACE, scratch, map::WRITE])?;
    // SAFETY: the frame is mapped writable at `scratch` just above; offset + len fit in
    // the page (the loader's plan guarantees it).
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (scratch + offset as u64) as *mut u8,
            bytes.len(),
        )
    };
    invoke(f, Invocation::FrameUnmap, &[])?;
    Ok(f)
}

/// Load the program in module `program` as a new process with a CNode of `2^radix`
/// slots whose slots 1 and 2 hold its own CNode and VSpace, start it at `priority` with
/// `rdi = arg`, faults going to `fault_ep` (a slot, or `u64::MAX`).
pub fn spawn(
    a: &mut Alloc,
    images: &mut Images,
    program: &ModuleDesc,
    radix: u64,
    priority: u64,
    fault_ep: u64,
    arg: u64,
) -> Result<Process, Error> {
    let cn = a.make(ObjectType::CNode, radix)?;
    let all = u64::from(Rights::ALL.bits());
    invoke(cn, Invocation::CNodeCopy, &[cn, own::CNODE, all])?;
    spawn_in(a, images, program, cn, (priority, fault_ep, arg))
}

/// Load the program in module `program` as a new process with the CNode `cn` (whose
/// slot 2 gets the new address space), to start at `priority` with `rdi = arg`, faults
/// going to `fault_ep`: a process of its own, or a fresh one on a crashed process's CNode.
pub fn spawn_in(
    a: &mut Alloc,
    images: &mut Images,
    program: &ModuleDesc,
    cn: u64,
    (priority, fault_ep, arg): (u64, u64, u64),
) -> Result<Process, Error> {
    let i = images.index(a, program)?;
    let image = images.mapped.get(i).map_or(&[][..], |img| img.bytes);
    let plan = elf_loader::plan(image).map_err(|_| Error::InvalidArgument)?;
    let vs = a.make(ObjectType::VSpace, 17)?;
    images.load(a, i, &plan, vs)?;
    for i in 0..STACK_PAGES {
        let f = a.make(ObjectType::Frame, 0)?;
        invoke(f, Invocation::FrameMap, &[vs, STACK_TOP - (i + 1) * 4096, map::WRITE])?;
    }
    let all = u64::from(Rights::ALL.bits());
    invoke(cn, Invocation::CNodeCopy, &[vs, own::VSPACE, all])?;
    let tcb = a.make(ObjectType::Tcb, 0)?;
    invoke(tcb, Invocation::TcbConfigure, &[cn, vs, fault_ep])?;
    invoke(tcb, Invocation::TcbWriteRegisters, &[plan.entry, STACK_TOP - 8, arg])?;
    invoke(tcb, Invocation::TcbSetPriority, &[priority])?;
    Ok(Process { tcb, cnode: cn, vspace: vs })
}

/// Make the process runnable.
pub fn start(p: &Process) -> Result<(), Error> {
    invoke(p.tcb, Invocation::TcbResume, &[]).map(|_| ())
}

/// Where a [`spawn_code`] process's code is mapped and starts.
pub const CODE_ENTRY: u64 = 0x40_0000;

/// Start `code` (position-independent, at most a page, needing no stack) as a process
/// with an address space of its own, holding nothing but that page, and the CSpace in
/// slot `cnode`; at `priority`, faults going to `fault_ep` (a slot, or `u64::MAX`).
/// Returns its TCB's slot.
pub fn spawn_code(
    a: &mut Alloc,
    code: &[u8],
    cnode: u64,
    priority: u64,
    fault_ep: u64,
) -> Result<u64, Error> {
    let vs = a.make(ObjectType::VSpace, 16)?;
    let (page, va) = a.page()?;
    // SAFETY: `va` is a fresh writable page mapped just above; at most a page is copied.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), va as *mut u8, code.len().min(4096)) };
    invoke(page, Invocation::FrameUnmap, &[])?;
    invoke(page, Invocation::FrameMap, &[vs, CODE_ENTRY, map::EXECUTE])?;
    let tcb = a.make(ObjectType::Tcb, 0)?;
    invoke(tcb, Invocation::TcbConfigure, &[cnode, vs, fault_ep])?;
    invoke(tcb, Invocation::TcbWriteRegisters, &[CODE_ENTRY, 0, 0])?;
    invoke(tcb, Invocation::TcbSetPriority, &[priority])?;
    invoke(tcb, Invocation::TcbResume, &[])?;
    Ok(tcb)
}
