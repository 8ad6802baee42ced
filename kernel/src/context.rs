//! The saved user register state of a thread, laid out exactly as the entry stubs push it.
//!
//! The CPU (interrupts, exceptions) or the `syscall` stub builds this frame directly in the
//! thread's save area, so the kernel never copies registers on entry; the exit path pops
//! the same layout and returns with `iretq`.

/// User code selector (GDT index 4, RPL 3).
pub const USER_CS: u64 = 0x23;
/// User data/stack selector (GDT index 3, RPL 3).
pub const USER_SS: u64 = 0x1b;
/// RFLAGS for new threads: interrupts enabled, reserved bit 1.
pub const USER_RFLAGS: u64 = 0x202;
/// RFLAGS bits a user thread may hold: the arithmetic flags, TF, DF, OF, AC, ID
/// (never IF-clearing, IOPL, NT, RF or VM).
pub const USER_RFLAGS_MASK: u64 = 0x0025_0fd5;
/// The `vector` value of a frame built by the `syscall` stub.
pub const SYSCALL_VECTOR: u64 = 0x100;

/// General-purpose registers plus the interrupt frame, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserContext {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector, or [`SYSCALL_VECTOR`].
    pub vector: u64,
    /// Error code pushed by the CPU (0 where it pushes none).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Size of the frame; the entry stubs depend on it.
pub const CONTEXT_SIZE: usize = core::mem::size_of::<UserContext>();

impl UserContext {
    /// A fresh ring-3 context starting at `entry` with stack pointer `stack`.
    pub fn new_user(entry: u64, stack: u64) -> Self {
        Self {
            rip: entry,
            rsp: stack,
            cs: USER_CS,
            ss: USER_SS,
            rflags: USER_RFLAGS,
            ..Self::default()
        }
    }

    /// Make the frame safe to return to ring 3 with `iretq`, whatever was written into
    /// it: user selectors, interrupts on, no privileged flags.
    pub fn sanitize(&mut self) {
        self.cs = USER_CS;
        self.ss = USER_SS;
        self.rflags = (self.rflags & USER_RFLAGS_MASK) | USER_RFLAGS;
    }
}

#[cfg(test)]
mod tests {
    use super::{UserContext, CONTEXT_SIZE, USER_CS, USER_RFLAGS};

    #[test]
    fn layout_matches_the_stubs() {
        assert_eq!(CONTEXT_SIZE, 22 * 8);
        assert_eq!(CONTEXT_SIZE % 16, 0, "the CPU pushes to a 16-byte aligned top");
        assert_eq!(core::mem::offset_of!(UserContext, rax), 14 * 8);
        assert_eq!(core::mem::offset_of!(UserContext, rip), 17 * 8);
        assert_eq!(core::mem::offset_of!(UserContext, cs), 18 * 8);
    }

    #[test]
    fn sanitize_drops_privileged_flags() {
        let mut c = UserContext::new_user(0x40_0000, 0x7000);
        c.rflags = 0x3000 | 0x4000 | 0x2_0000 | 0x1; // IOPL3, NT, VM, CF
        c.cs = 0x08;
        c.sanitize();
        assert_eq!(c.rflags, USER_RFLAGS | 0x1);
        assert_eq!(c.cs, USER_CS);
    }
}
