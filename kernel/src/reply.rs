//! Reply objects: a reply a server has put aside.
//!
//! A thread that receives a `Call` owes its caller one reply, held in the thread's
//! `caller` link (the implicit reply capability, which the next `Reply`/`ReplyRecv`
//! uses). `ReplySave` moves that obligation into a Reply object, so the server can take
//! other calls first and answer this one later with `Send` on the reply capability, or
//! hand the capability to another thread that answers instead. Either way the caller
//! sees one ordinary reply. Deleting the object's last capability releases the caller
//! with `ObjectDeleted`, so no caller waits for a reply nobody can send any more.

use crate::state::{Done, Kernel};
use crate::store::Store;
use crate::tcb::ThreadState;
use protocols::error::Error;

/// A Reply object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Reply {
    /// The caller waiting in `ThreadState::BlockedSavedReply` for this reply (0: none).
    pub caller: u64,
}

impl<S: Store> Kernel<S> {
    /// `ReplySave`: move the reply the current thread owes into the Reply object at
    /// `reply`.
    pub(crate) fn reply_save(&mut self, reply: u64) -> Result<Done, Error> {
        let cur = self.current;
        let caller = self.store.sched(cur).caller;
        if caller == 0
            || self.store.sched(caller).state != (ThreadState::BlockedReply { server: cur })
        {
            return Err(Error::WouldBlock);
        }
        if self.store.reply(reply).caller != 0 {
            return Err(Error::InUse);
        }
        self.store.sched(cur).caller = 0;
        self.store.sched(caller).state = ThreadState::BlockedSavedReply { reply };
        self.store.reply(reply).caller = caller;
        Ok(Done::Value(0))
    }

    /// `Send` on a reply capability: answer the saved caller with the current thread's
    /// message (for a vCPU, its VMCS-write batch). An empty object is no error: the
    /// caller may have been suspended meanwhile, which the replier cannot know.
    pub(crate) fn reply_send(&mut self, reply: u64) -> Result<Done, Error> {
        match self.take_saved_caller(reply) {
            Some(caller) => self.answer(caller).map(|()| Done::Value(0)),
            None => Ok(Done::Value(0)),
        }
    }

    /// The last capability to the Reply object at `reply` is gone: release its caller.
    pub(crate) fn reply_deleted(&mut self, reply: u64) {
        if let Some(caller) = self.take_saved_caller(reply) {
            self.release(caller, Error::ObjectDeleted as u64);
        }
    }

    /// Empty the Reply object at `reply`: the caller that was waiting on it, if any.
    fn take_saved_caller(&mut self, reply: u64) -> Option<u64> {
        let caller = core::mem::take(&mut self.store.reply(reply).caller);
        let waits = caller != 0
            && self.store.sched(caller).state == (ThreadState::BlockedSavedReply { reply });
        waits.then_some(caller)
    }
}
