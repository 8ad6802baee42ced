//! IPC buffers: the message words beyond the registers.
//!
//! A thread's IPC buffer is a frame bound with `TcbSetIpcBuffer`; the TCB holds a copy
//! of its capability, so the frame cannot be reused while bound and revoking the
//! original unbinds it. A long message is copied frame to frame at the rendezvous; where
//! either side has no buffer it is cut to the register words.

use crate::cap::Cap;
use crate::state::Kernel;
use crate::store::{tcb_slot, Store, TcbSlot};
use protocols::ipc::{IPC_BUFFER_WORDS, MSG_REGS};

impl<S: Store> Kernel<S> {
    /// The physical address of `tcb`'s IPC buffer, if it has one.
    fn ipc_buffer(&mut self, tcb: u64) -> Option<u64> {
        match self.store.slot(tcb_slot(tcb, TcbSlot::IpcBuffer)).cap {
            Cap::Frame { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// Copy words `MSG_REGS..len` of a message from `from`'s IPC buffer to `to`'s; the
    /// length delivered (the register words only, if either has no buffer).
    pub(crate) fn copy_long_message(&mut self, from: u64, to: u64, len: u8) -> u8 {
        let (Some(src), Some(dst)) = (self.ipc_buffer(from), self.ipc_buffer(to)) else {
            return MSG_REGS as u8;
        };
        let words = usize::from(len).saturating_sub(MSG_REGS).min(IPC_BUFFER_WORDS);
        let mut staged = [0u8; IPC_BUFFER_WORDS * 8];
        let bytes = words * 8;
        // Both ranges lie inside a frame: IPC_BUFFER_WORDS words are less than a page.
        if let (Some(d), Some(s)) = (staged.get_mut(..bytes), self.store.frame(src).get(..bytes)) {
            d.copy_from_slice(s);
        }
        if let (Some(d), Some(s)) = (self.store.frame(dst).get_mut(..bytes), staged.get(..bytes)) {
            d.copy_from_slice(s);
        }
        (MSG_REGS + words) as u8
    }
}
