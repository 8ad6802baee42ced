//! The region a restartable VMM commits its VM's state to (`vmm_server::saved_state`):
//! frames in the VMM's CNode, which a restarted VMM maps again at the same address.

use protocols::error::Error;
use protocols::object::{map, Invocation, ObjectType};
use protocols::vmexit::ExitMessage;
use protocols::vmm::slot;
use rt::ipc::{invoke, retype};
use vmm_server::saved_state::{Header, StateError};

use super::ServedVm;

/// Where the region is mapped.
const REGION_VA: u64 = 0x1810_0000;
/// The most frames a region takes (room for the VM's state and the header).
pub const MAX_PAGES: u64 = 8;

/// The mapped region, holding state of type `T`.
pub struct StateRegion<T> {
    commits: u64,
    _state: core::marker::PhantomData<T>,
}

impl<T> StateRegion<T> {
    /// Frames the header and a `T` take.
    const PAGES: u64 = (Header::SIZE + size_of::<T>()).div_ceil(4096) as u64;

    /// Which program this is: the address of this function, which moves with any change
    /// to the program's code, and the size of what it commits.
    fn program() -> u64 {
        (Self::program as *const () as u64) ^ ((size_of::<T>() as u64) << 40)
    }

    /// Make the region's frames in the slots from `first` on and map them (a first
    /// start); nothing is committed yet.
    pub fn create(first: u64) -> Result<Self, Error> {
        const { assert!(Self::PAGES <= MAX_PAGES, "the VM's state fits the region") };
        retype(slot::UNTYPED, ObjectType::Frame, 0, first, Self::PAGES)?;
        Self::map(first)
    }

    /// Map the frames a crashed VMM made in the slots from `first` on (a restart). They
    /// still name the dead VMM's address space, so each is unmapped first (which leaves
    /// a dead address space alone).
    pub fn attach(first: u64) -> Result<Self, Error> {
        for i in 0..Self::PAGES {
            invoke(first + i, Invocation::FrameUnmap, &[])?;
        }
        Self::map(first)
    }

    fn map(first: u64) -> Result<Self, Error> {
        for i in 0..Self::PAGES {
            invoke(
                first + i,
                Invocation::FrameMap,
                &[slot::VSPACE, REGION_VA + i * 4096, map::WRITE],
            )?;
        }
        Ok(Self { commits: 0, _state: core::marker::PhantomData })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the region's frames are mapped writable at REGION_VA for the VMM's
        // life (`map`), and only this value reads or writes them. The bytes after the
        // header are what `commit` copied from a `T`, padding included: they are read as
        // plain memory the compiler never saw written as a `T` in this process.
        unsafe {
            core::slice::from_raw_parts((REGION_VA as *const u8).add(Header::SIZE), size_of::<T>())
        }
    }

    /// Commit `state`: a copy of its bytes, then the header that seals them.
    pub fn commit(&mut self, state: &T) {
        self.commits = self.commits.wrapping_add(1);
        let to = (REGION_VA as *mut u8).wrapping_add(Header::SIZE);
        // SAFETY: `to` is the region's state area (mapped writable, `PAGES` frames hold a
        // header and a `T`); `state` is a live `T` that does not overlap the region.
        unsafe {
            core::ptr::copy_nonoverlapping((state as *const T).cast::<u8>(), to, size_of::<T>())
        };
        let header = Header::sealed(Self::program(), self.bytes(), self.commits);
        // SAFETY: the header area is the region's first bytes, mapped writable and page
        // aligned.
        unsafe { (REGION_VA as *mut Header).write_volatile(header) };
    }

    /// Flip a bit of the committed state, as a VMM gone wrong might (test tooling: the
    /// restart after it must refuse the state).
    #[cfg(feature = "test-modes")]
    pub fn scribble(&mut self) {
        let at = (REGION_VA as *mut u8).wrapping_add(Header::SIZE + size_of::<T>() / 2);
        // SAFETY: `at` lies in the region's state area, mapped writable (see `commit`).
        unsafe { at.write_volatile(at.read_volatile() ^ 1) };
    }

    /// The state the crashed VMM committed last, if its check passes; how many commits
    /// it made.
    pub fn take(&mut self) -> Result<(T, u64), StateError> {
        // SAFETY: the header area is mapped and aligned (see `commit`).
        let header = unsafe { (REGION_VA as *const Header).read_volatile() };
        header.check(Self::program(), self.bytes())?;
        self.commits = header.commits;
        // SAFETY: the check passed: these are the bytes `commit` copied from a valid `T`,
        // by this same program (the program value moves with its code and the size of
        // `T`), unchanged since (the checksum), so they are a valid `T`. Its only
        // pointers are to memory mapped at fixed addresses that a restarted VMM maps
        // again before it takes the state (guest RAM) and to this program's code.
        let state =
            unsafe { (REGION_VA as *const u8).add(Header::SIZE).cast::<T>().read_unaligned() };
        Ok((state, header.commits))
    }
}

/// What the serving loop does with each exit it has answered, before the reply goes out.
/// The loop is compiled once for each kind, so a VM that is not restartable pays nothing.
pub trait Answered {
    /// `vm` has answered `msg`.
    fn answered(&mut self, vm: &ServedVm, msg: &ExitMessage);

    /// The VMM is about to crash on purpose (test tooling).
    #[cfg(feature = "test-modes")]
    fn crashing(&mut self) {}
}

/// A VM that is not restartable: nothing.
impl Answered for () {
    #[inline(always)]
    fn answered(&mut self, _: &ServedVm, _: &ExitMessage) {}
}

/// A restartable VM: its state is committed after each exit.
pub struct Restartable {
    region: StateRegion<ServedVm>,
    /// Crash at the guest's CRASH_VMM hypercall (`vmm::flags::CRASH_ON_HYPERCALL`).
    #[cfg(feature = "test-modes")]
    crash_on_hypercall: bool,
}

impl Restartable {
    /// Commit to `region`, with the start `flags`.
    pub fn new(region: StateRegion<ServedVm>, flags: u64) -> Self {
        let _ = flags; // only the test modes read it
        Self {
            region,
            #[cfg(feature = "test-modes")]
            crash_on_hypercall: flags & protocols::vmm::flags::CRASH_ON_HYPERCALL != 0,
        }
    }
}

impl Answered for Restartable {
    fn answered(&mut self, vm: &ServedVm, msg: &ExitMessage) {
        // Before the commit: the answer to the hypercall is lost with the VMM.
        #[cfg(feature = "test-modes")]
        if self.crash_on_hypercall && super::test_modes::crash_requested(msg) {
            panic!("crash mode: the VMM panics at the guest's CRASH_VMM hypercall, as the manifest asked");
        }
        #[cfg(not(feature = "test-modes"))]
        let _ = msg;
        self.region.commit(vm);
    }

    /// A restartable VMM that crashes at an exit count scribbles over its saved state
    /// first: the restart must refuse it.
    #[cfg(feature = "test-modes")]
    fn crashing(&mut self) {
        self.region.scribble();
    }
}
