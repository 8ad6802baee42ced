//! The in-image syscall fuzzer's logic: its CSpace layout (shared with the root task,
//! which builds it), the seeded generator of syscalls, and the rules that keep the
//! fuzzer alive, all host-testable. The ring-3 program (`main.rs`) only issues what
//! [`Generator::syscall`] produces and counts the results.
//!
//! The fuzzer attacks its own CSpace: random invocations of every kind on random slots,
//! IPC on its endpoint and notification, retyping its untyped memory, threads and vCPUs
//! made from it, hostile message-info words and pointers. It must not end itself (no
//! `ThreadExit`; `Shutdown` is refused to it anyway), so a few slots are protected: no
//! operation deletes, revokes or moves them, none invokes the thread capabilities (a
//! thread lowering its own priority below its partner's would never run again), and no
//! word names the report endpoint or the thread capabilities, so the fuzzer can neither
//! hand them on nor make a copy it could then abuse. Blocking is allowed: a lower-priority
//! partner thread, which only runs while the fuzzer is blocked, suspends and resumes it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use protocols::ipc::{MsgInfo, MAX_LEN};
use protocols::object::{map, Invocation, ObjectType};
use protocols::syscall::Syscall;

/// Slots of the fuzzer's CSpace, filled by the root task.
pub mod slot {
    /// Its own CNode.
    pub const CNODE: u64 = 1;
    /// Its own address space.
    pub const VSPACE: u64 = 2;
    /// Untyped memory to retype ([`super::UNTYPED_BITS`]).
    pub const UNTYPED: u64 = 3;
    /// An endpoint of its own.
    pub const ENDPOINT: u64 = 4;
    /// A notification of its own.
    pub const NOTIFICATION: u64 = 5;
    /// A badged endpoint to the root task, for the final report only.
    pub const REPORT: u64 = 6;
    /// Its own thread, for the partner that unblocks it.
    pub const SELF_TCB: u64 = 7;
    /// A page of untyped memory for the partner's TCB.
    pub const PARTNER_UNTYPED: u64 = 8;
    /// The partner's TCB (made by the fuzzer at start).
    pub const PARTNER_TCB: u64 = 9;
    /// The first slot the root task leaves empty.
    pub const FIRST_FREE: u64 = 10;
}

/// log2 of the fuzzer's CNode slot count.
pub const CNODE_RADIX: u8 = 8;
/// log2 of the untyped memory it retypes.
pub const UNTYPED_BITS: u8 = 18;
/// The fuzzer's priority; its partner runs one below, the threads and vCPUs it makes
/// at most at [`MAX_CHILD_PRIORITY`], so nothing it starts can starve it.
pub const PRIORITY: u64 = 100;
/// The highest priority the fuzzer gives a thread or vCPU it makes.
pub const MAX_CHILD_PRIORITY: u64 = PRIORITY - 2;
/// Label of the report: words `[served, rejected, iterations, unblocked]`.
pub const REPORT_LABEL: u64 = 0x667a_7a72; // "fzzr"

/// Slots no operation may delete, revoke or move, or invoke (but the CNode itself).
pub const PROTECTED: [u64; 8] = [
    slot::CNODE,
    slot::VSPACE,
    slot::REPORT,
    slot::SELF_TCB,
    slot::PARTNER_UNTYPED,
    slot::PARTNER_TCB,
    slot::ENDPOINT,
    slot::NOTIFICATION,
];

/// Slots no word of any operation may name: what a copy of could end the fuzzer or reach
/// the root task.
const UNNAMEABLE: [u64; 4] =
    [slot::REPORT, slot::SELF_TCB, slot::PARTNER_UNTYPED, slot::PARTNER_TCB];

/// The start register: `seed | iterations << 32`.
pub const fn start_arg(seed: u32, iterations: u32) -> u64 {
    seed as u64 | (iterations as u64) << 32
}

/// Split the start register into `(seed, iterations)`.
pub const fn split_arg(arg: u64) -> (u32, u32) {
    (arg as u32, (arg >> 32) as u32)
}

pub use rt::rng::Rng;

/// One syscall: the number and the registers it passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Sys {
    /// `rax`.
    pub number: u64,
    /// `rdi`.
    pub rdi: u64,
    /// `rsi` (message info).
    pub rsi: u64,
    /// `rdx, r10, r8, r9`.
    pub words: [u64; 4],
    /// `r12`: the slot of a capability to send.
    pub r12: u64,
    /// `r13`: the slot a received capability goes to.
    pub r13: u64,
}

/// Turns a seed into a reproducible stream of syscalls. It learns from the results what
/// objects it made where ([`Generator::result`]), so later operations find a thread to
/// configure or a frame to map more often than blind guessing would.
pub struct Generator {
    rng: Rng,
    /// Objects made, as `(type, slot)`; a ring of the latest.
    made: [(u8, u64); MADE],
    made_count: usize,
}

/// How many made objects the generator remembers.
const MADE: usize = 64;

/// Where the fuzzer maps frames it makes (the stack and the program are far from here).
const MAP_BASE: u64 = 0x5000_0000;

/// The objects the root task gave, as a starting memory.
const GIVEN: [(ObjectType, u64); 5] = [
    (ObjectType::CNode, slot::CNODE),
    (ObjectType::VSpace, slot::VSPACE),
    (ObjectType::Untyped, slot::UNTYPED),
    (ObjectType::Endpoint, slot::ENDPOINT),
    (ObjectType::Notification, slot::NOTIFICATION),
];

impl Generator {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut g = Self { rng: Rng::new(seed), made: [(0, 0); MADE], made_count: 0 };
        for (ty, at) in GIVEN {
            g.remember(ty, at);
        }
        g
    }

    fn remember(&mut self, ty: ObjectType, at: u64) {
        if let Some(m) = self.made.get_mut(self.made_count % MADE) {
            *m = (ty as u8, at);
        }
        self.made_count = self.made_count.wrapping_add(1);
    }

    /// Learn from the status of `s`, the last syscall: what a successful retype made.
    pub fn result(&mut self, s: &Sys, status: u64) {
        let retype = MsgInfo::from_raw(s.rsi)
            .is_some_and(|i| i.label == Invocation::UntypedRetype as u64 && i.len >= 4);
        if status != 0 || s.number != Syscall::Call as u64 || !retype {
            return;
        }
        let [ty, _, first, count] = s.words;
        if let Some(ty) = ObjectType::from_raw(ty) {
            for i in 0..count.min(4) {
                self.remember(ty, first.wrapping_add(i));
            }
        }
    }

    /// A slot that held an object of type `ty` (if one was made), else any slot.
    fn slot_of(&mut self, ty: ObjectType) -> u64 {
        let known = self.made.len().min(self.made_count);
        let start = self.rng.below(known as u64) as usize;
        let hit = (0..known)
            .map(|i| (start + i) % known)
            .filter_map(|i| self.made.get(i))
            .find(|(t, _)| *t == ty as u8)
            .map(|(_, at)| *at);
        match hit {
            Some(at) if !self.rng.one_in(8) => at,
            _ => self.slot(),
        }
    }

    /// A slot, mostly among the ones in use.
    fn slot(&mut self) -> u64 {
        match self.rng.below(16) {
            0 => self.rng.bits(),
            1 => 1u64 << CNODE_RADIX,
            2..=4 => self.rng.below(1 << CNODE_RADIX),
            5..=8 => {
                let known = self.made.len().min(self.made_count) as u64;
                let i = self.rng.below(known) as usize;
                self.made.get(i).map_or(0, |(_, at)| *at)
            }
            _ => self.rng.below(40),
        }
    }

    /// A word: small numbers, slots, boundaries, anything.
    fn word(&mut self) -> u64 {
        match self.rng.below(8) {
            0 => self.rng.bits(),
            1 => [0, u64::MAX, 1 << 63, 0xffff_ffff, 1 << 47][self.rng.below(5) as usize % 5],
            2 | 3 => self.slot(),
            _ => self.rng.below(64),
        }
    }

    fn rights(&mut self) -> u64 {
        if self.rng.one_in(16) {
            self.rng.bits() & 0xfff
        } else {
            self.rng.below(32)
        }
    }

    fn child_priority(&mut self) -> u64 {
        if self.rng.one_in(8) {
            // Above the fuzzer's own: refused.
            PRIORITY + 1 + self.rng.below(155)
        } else {
            self.rng.below(MAX_CHILD_PRIORITY + 1)
        }
    }

    /// The type of object `inv` works on.
    fn target_type(inv: Invocation) -> Option<ObjectType> {
        Some(match inv {
            Invocation::UntypedRetype => ObjectType::Untyped,
            Invocation::CNodeCopy
            | Invocation::CNodeMint
            | Invocation::CNodeMove
            | Invocation::CNodeDelete
            | Invocation::CNodeRevoke => ObjectType::CNode,
            Invocation::TcbConfigure
            | Invocation::TcbWriteRegisters
            | Invocation::TcbResume
            | Invocation::TcbSuspend
            | Invocation::TcbSetPriority
            | Invocation::TcbSetIpcBuffer => ObjectType::Tcb,
            Invocation::FrameMap
            | Invocation::FrameUnmap
            | Invocation::FrameAddress
            | Invocation::FrameMapGuest => ObjectType::Frame,
            Invocation::VCpuConfigure | Invocation::VCpuStart => ObjectType::VCpu,
            Invocation::ReplySave => ObjectType::Reply,
            _ => return None,
        })
    }

    /// Words that make sense for `inv` (and now and then, nonsense).
    fn invocation_words(&mut self, inv: Invocation) -> [u64; 4] {
        let mut w = [self.word(), self.word(), self.word(), self.word()];
        if self.rng.one_in(10) {
            return w;
        }
        match inv {
            Invocation::UntypedRetype => {
                // Mostly the small objects a thread, IPC and mappings need; now and then
                // the big ones (and type 9, which does not exist).
                let common = [
                    ObjectType::Tcb,
                    ObjectType::Endpoint,
                    ObjectType::Notification,
                    ObjectType::Frame,
                ];
                let ty = match self.rng.below(2) {
                    0 => common.get(self.rng.below(4) as usize).map_or(2, |t| *t as u64),
                    _ => self.rng.below(11),
                };
                let r = &mut self.rng;
                let bits = match ObjectType::from_raw(ty) {
                    Some(ObjectType::Untyped) => 12 + r.below(3),
                    Some(ObjectType::CNode) => 1 + r.below(6),
                    Some(ObjectType::VSpace | ObjectType::GuestSpace) => 14 + r.below(2),
                    _ => r.below(3),
                };
                w = [ty, bits, slot::FIRST_FREE + r.below(200), 1 + r.below(4)];
            }
            Invocation::CNodeCopy | Invocation::CNodeMint | Invocation::CNodeMove => {
                w[0] = self.slot();
                w[1] = slot::FIRST_FREE + self.rng.below(200);
                w[2] = self.rights();
                w[3] = self.rng.below(4);
            }
            // Revoking the untyped frees everything made from it, so making goes on.
            Invocation::CNodeRevoke if self.rng.one_in(4) => w[0] = slot::UNTYPED,
            Invocation::CNodeDelete | Invocation::CNodeRevoke => w[0] = self.slot(),
            Invocation::TcbConfigure => {
                w[0] = self.slot_of(ObjectType::CNode);
                w[1] = self.slot_of(ObjectType::VSpace);
                w[2] = match self.rng.below(3) {
                    0 => u64::MAX,
                    _ => self.slot_of(ObjectType::Endpoint),
                };
            }
            // Page 0 is never mapped: a thread started here faults at once.
            Invocation::TcbWriteRegisters => w[0] &= 0xfff,
            Invocation::TcbSetPriority => w[0] = self.child_priority(),
            Invocation::FrameMap => {
                w[0] = self.slot_of(ObjectType::VSpace);
                w[1] = if self.rng.one_in(8) {
                    self.word()
                } else {
                    MAP_BASE + self.rng.below(64) * 4096
                };
                w[2] = self.rng.below(4) & (map::WRITE | map::EXECUTE);
            }
            Invocation::FrameMapGuest => {
                w[0] = self.slot_of(ObjectType::GuestSpace);
                w[1] = self.rng.below(512) * 4096;
                w[2] = self.rng.below(4);
            }
            Invocation::VCpuConfigure => {
                w[0] = self.slot_of(ObjectType::GuestSpace);
                w[1] = self.slot_of(ObjectType::Endpoint);
                w[2] = self.slot_of(ObjectType::Frame);
                w[3] = self.rng.bits() & 0x1ff;
            }
            Invocation::VCpuStart => {
                let mode = self.rng.below(4);
                let controls = self.rng.bits() & 0xffff_ffff;
                w[0] = mode | self.child_priority() << 8 | controls << 16;
            }
            _ => {}
        }
        w
    }

    /// The next syscall, already made safe by [`protect`].
    pub fn syscall(&mut self) -> Sys {
        let mut s = Sys::default();
        let info = |label: u64, len: u64, r: &mut Rng| {
            // Now and then a long message (the fuzzer has no IPC buffer: it arrives cut).
            let len = if r.one_in(16) { r.below(MAX_LEN as u64 + 1) } else { len.min(4) };
            let mut m = MsgInfo::new(label, len as u8);
            m.grant = r.one_in(8);
            let mut raw = m.to_raw();
            if r.one_in(32) {
                // Reserved bits or a length above the limit.
                raw |= 1 << (8 + r.below(4)) | (MAX_LEN as u64 + 1 + r.below(63));
            }
            raw
        };
        match self.rng.below(32) {
            // Invocations, the bulk.
            0..=15 => {
                s.number = Syscall::Call as u64;
                let all = Invocation::ALL;
                let inv = all.get(self.rng.below(all.len() as u64) as usize).copied();
                let inv = inv.unwrap_or(Invocation::CNodeCopy);
                s.rdi = match Self::target_type(inv) {
                    // The given untyped holds the most: retype from it half the time.
                    Some(ObjectType::Untyped) if self.rng.one_in(2) => slot::UNTYPED,
                    Some(ty) if !self.rng.one_in(8) => self.slot_of(ty),
                    _ => self.slot(),
                };
                let label = if self.rng.one_in(32) { self.rng.below(64) } else { inv as u64 };
                let len = if self.rng.one_in(16) { self.rng.below(8) } else { 4 };
                s.rsi = info(label, len, &mut self.rng);
                s.words = self.invocation_words(inv);
            }
            // IPC on the fuzzer's own objects (and on whatever else is in a slot).
            16..=26 => {
                let numbers = [
                    Syscall::NbSend,
                    Syscall::NbRecv,
                    Syscall::Send,
                    Syscall::NbRecv,
                    Syscall::Call,
                    Syscall::Recv,
                    Syscall::Reply,
                    Syscall::ReplyRecv,
                ];
                let n = numbers.get(self.rng.below(8) as usize).copied().unwrap_or(Syscall::NbSend);
                s.number = n as u64;
                s.rdi = match self.rng.below(4) {
                    0 => self.slot_of(ObjectType::Endpoint),
                    1 => self.slot_of(ObjectType::Notification),
                    _ => self.slot(),
                };
                // A wait on the notification right after a signal returns at once.
                if n == Syscall::Recv && self.rng.one_in(2) {
                    s.rdi = slot::NOTIFICATION;
                }
                let len = self.rng.below(6);
                // Label 1 on a reply resumes a faulted thread (see `protect`).
                let label = if self.rng.one_in(4) { 1 } else { self.rng.below(1 << 20) };
                s.rsi = info(label, len, &mut self.rng);
                s.words = [self.word(), self.word(), self.word(), self.word()];
                s.r12 = self.slot();
                s.r13 = self.slot();
            }
            27 | 28 => {
                s.number = Syscall::DebugWrite as u64;
                let bad = [
                    0,
                    0x1000,
                    0xffff_ffff_8010_0000,
                    0xffff_8000_0000_0000,
                    u64::MAX - 3,
                    1 << 47,
                ];
                s.rdi = bad[self.rng.below(bad.len() as u64) as usize % bad.len()];
                s.rsi = match self.rng.below(4) {
                    0 => 4097 + self.rng.below(1 << 20),
                    _ => 1 + self.rng.below(64),
                };
                // A valid pointer writes nothing: the console stays readable.
                if self.rng.one_in(4) {
                    s.rdi = MAP_BASE;
                    s.rsi = 0;
                }
            }
            29 => s.number = Syscall::Yield as u64,
            30 => {
                s.number = Syscall::Shutdown as u64;
                s.rdi = self.rng.below(3);
            }
            // Numbers no syscall has.
            _ => s.number = 11 + self.rng.below(1 << 16),
        }
        protect(&mut s);
        s
    }
}

/// Make `s` unable to end the fuzzer or reach the root task (see the module doc).
pub fn protect(s: &mut Sys) {
    let swap = |v: &mut u64| {
        if UNNAMEABLE.contains(v) {
            *v = slot::ENDPOINT;
        }
    };
    let call = s.number == Syscall::Call as u64;
    let label = MsgInfo::from_raw(s.rsi).map(|i| i.label);
    let invocation = label.and_then(Invocation::from_raw);
    // Targets: the thread capabilities and the report endpoint are never invoked.
    if call
        || s.number == Syscall::Send as u64
        || s.number == Syscall::NbSend as u64
        || s.number == Syscall::Recv as u64
        || s.number == Syscall::NbRecv as u64
        || s.number == Syscall::ReplyRecv as u64
    {
        swap(&mut s.rdi);
    }
    s.words.iter_mut().for_each(swap);
    swap(&mut s.r12);
    // Never delete, revoke or move away a protected slot: the first word of these
    // invocations names a slot of the fuzzer's CNode.
    let destructive = matches!(
        invocation,
        Some(Invocation::CNodeDelete | Invocation::CNodeRevoke | Invocation::CNodeMove)
    );
    let revoke = invocation == Some(Invocation::CNodeRevoke);
    if call && destructive {
        if let Some(w0) = s.words.first_mut() {
            // The untyped memory may be revoked (every object made from it goes), but
            // never deleted or moved away: then nothing more could be made.
            if PROTECTED.contains(w0) || (*w0 == slot::UNTYPED && !revoke) {
                *w0 = slot::FIRST_FREE + (*w0 % 16);
            }
        }
    }
    // Threads the fuzzer makes share its address space: they may only ever start (or be
    // resumed after a fault, by a reply labelled `RESUME_AT`) in page 0, which is never
    // mapped, so they fault at once and never run the fuzzer's own code.
    let reply = s.number == Syscall::Reply as u64 || s.number == Syscall::ReplyRecv as u64;
    let starts = (call && invocation == Some(Invocation::TcbWriteRegisters))
        || (reply && label == Some(RESUME_AT));
    if starts {
        if let Some(rip) = s.words.first_mut() {
            *rip &= 0xfff;
        }
    }
}

/// The reply label that resumes a faulted thread at the address in word 0 (the kernel's
/// `ipc::RESUME_AT`).
const RESUME_AT: u64 = 1;

#[cfg(test)]
mod tests {
    use super::{protect, slot, split_arg, start_arg, Generator, Sys, PROTECTED, UNNAMEABLE};
    use protocols::ipc::MsgInfo;
    use protocols::object::Invocation;
    use protocols::syscall::Syscall;

    fn invocation(s: &Sys) -> Option<Invocation> {
        MsgInfo::from_raw(s.rsi).and_then(|i| Invocation::from_raw(i.label))
    }

    #[test]
    fn a_seed_replays_the_same_syscalls() {
        let run = |seed| {
            let mut g = Generator::new(seed);
            (0..500).map(|_| g.syscall()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        assert_eq!(split_arg(start_arg(7, 4096)), (7, 4096));
    }

    #[test]
    fn nothing_ends_the_fuzzer_or_reaches_the_root_task() {
        let mut g = Generator::new(1);
        let mut kinds = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let s = g.syscall();
            assert_ne!(s.number, Syscall::ThreadExit as u64);
            for w in s.words.iter().chain([&s.r12]) {
                assert!(!UNNAMEABLE.contains(w), "{s:?} names a protected capability");
            }
            if s.number == Syscall::Call as u64 || s.number == Syscall::Send as u64 {
                assert!(!UNNAMEABLE.contains(&s.rdi), "{s:?}");
            }
            let label = MsgInfo::from_raw(s.rsi).map(|i| i.label);
            let reply = s.number == Syscall::Reply as u64 || s.number == Syscall::ReplyRecv as u64;
            if reply && label == Some(1) {
                assert!(s.words[0] < 0x1000, "{s:?} resumes a thread outside page 0");
            }
            if s.number == Syscall::Call as u64
                && invocation(&s) == Some(Invocation::TcbWriteRegisters)
            {
                assert!(s.words[0] < 0x1000, "{s:?} starts a thread outside page 0");
            }
            if let (true, Some(inv)) = (s.number == Syscall::Call as u64, invocation(&s)) {
                kinds.insert(inv as u64);
                if matches!(
                    inv,
                    Invocation::CNodeDelete | Invocation::CNodeRevoke | Invocation::CNodeMove
                ) {
                    assert!(!PROTECTED.contains(&s.words[0]), "{s:?} destroys a protected slot");
                }
            }
        }
        assert_eq!(kinds.len(), Invocation::ALL.len(), "every invocation is tried");
    }

    #[test]
    fn protection_rewrites_only_what_it_must() {
        let revoke = |w0| Sys {
            number: Syscall::Call as u64,
            rdi: slot::CNODE,
            rsi: MsgInfo::new(Invocation::CNodeRevoke as u64, 1).to_raw(),
            words: [w0, 0, 0, 0],
            ..Sys::default()
        };
        let mut s = revoke(slot::VSPACE);
        protect(&mut s);
        assert!(!PROTECTED.contains(&s.words[0]));
        let mut ok = revoke(slot::UNTYPED);
        protect(&mut ok);
        assert_eq!(ok, revoke(slot::UNTYPED), "revoking the untyped is fair game");
    }
}
