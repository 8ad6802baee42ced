//! The syscall entry: decode the number, run it, write the status, then schedule.

use crate::layout::{tcb_slot, TcbSlot};
use crate::{Cap, State, Step};
use protocols::error::Error;
use protocols::fault::FaultMessage;
use protocols::syscall::{ShutdownStatus, Syscall};

/// A syscall's effect on the caller's registers.
pub(crate) enum Done {
    /// Success, with a result word in `rdx`.
    Value(u64),
    /// The IPC path wrote the registers itself (or the thread blocked).
    Handled,
}

/// Why a syscall stopped: an error for the caller, or a step outside the model.
pub(crate) enum Stop {
    /// The caller gets this error in `rax`.
    Error(Error),
    /// Outside the model.
    Unmodeled(&'static str),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

/// A syscall's result.
pub(crate) type R<T = Done> = Result<T, Stop>;

impl State {
    /// The current thread's syscall; `Ok(true)` when the machine shuts down.
    pub(crate) fn syscall(&mut self) -> Step<bool> {
        let cur = self.current;
        if cur == 0 || self.thread(cur).vcpu {
            return Err("no thread makes the syscall");
        }
        let c = self.thread(cur).regs;
        let result = match Syscall::from_raw(c.rax) {
            None => Err(Error::InvalidSyscall.into()),
            Some(Syscall::DebugWrite) => return Err("DebugWrite reads user memory"),
            Some(Syscall::ThreadExit) => {
                self.report(cur, FaultMessage::Exit { code: c.rdi });
                Ok(Done::Handled)
            }
            Some(Syscall::Shutdown) => {
                if !self.thread(cur).root_task {
                    Err(Error::NotPermitted.into())
                } else if ShutdownStatus::from_raw(c.rdi).is_some() {
                    return Ok(true);
                } else {
                    Err(Error::InvalidArgument.into())
                }
            }
            Some(Syscall::Yield) => {
                self.thread(cur).regs.rax = 0;
                self.preempt();
                return Ok(false);
            }
            Some(Syscall::Send) => self.send(c.rdi, c.rsi, true, false),
            Some(Syscall::NbSend) => self.send(c.rdi, c.rsi, false, false),
            Some(Syscall::Call) => self.call(c.rdi, c.rsi),
            Some(Syscall::Recv) => self.recv(c.rdi, true),
            Some(Syscall::NbRecv) => self.recv(c.rdi, false),
            Some(Syscall::Reply) => self.reply().map(|()| Done::Value(0)),
            Some(Syscall::ReplyRecv) => self.reply().and_then(|()| self.recv(c.rdi, true)),
        };
        let regs = &mut self.thread(cur).regs;
        match result {
            Ok(Done::Value(v)) => (regs.rax, regs.rdx) = (0, v),
            Ok(Done::Handled) => {}
            Err(Stop::Error(e)) => regs.rax = e as u64,
            Err(Stop::Unmodeled(why)) => return Err(why),
        }
        self.schedule();
        Ok(false)
    }

    /// The current thread's CSpace root.
    pub(crate) fn root(&self) -> Option<Cap> {
        self.cdt.get(tcb_slot(self.current, TcbSlot::CSpace))
    }

    /// Slot `cptr` of the current thread's CSpace root, which must hold a capability.
    pub(crate) fn lookup(&self, cptr: u64) -> R<(u64, Cap)> {
        let Some(Cap::CNode { addr, radix }) = self.root() else {
            return Err(Error::InvalidCapability.into());
        };
        if cptr >> radix != 0 {
            return Err(Error::InvalidCapability.into());
        }
        let at = crate::layout::cnode_slot(addr, cptr);
        match self.cdt.get(at) {
            Some(cap) => Ok((at, cap)),
            None => Err(Error::InvalidCapability.into()),
        }
    }

    /// Empty slot `index` of the CNode `cnode` (a destination).
    pub(crate) fn empty_slot(&self, cnode: Option<Cap>, index: u64) -> R<u64> {
        let Some(Cap::CNode { addr, radix }) = cnode else { return Err(Error::WrongType.into()) };
        if index >> radix != 0 {
            return Err(Error::InvalidArgument.into());
        }
        let at = crate::layout::cnode_slot(addr, index);
        if self.cdt.get(at).is_some() {
            return Err(Error::InvalidArgument.into());
        }
        Ok(at)
    }
}
